"""A real local HTTP server that speaks the X API v2 stream's wire format, and misbehaves on command.

Each connection to a stream endpoint plays the next script queued with ``expect(...)``: a
list of steps (below). The body is sent with chunked transfer encoding, as X does; tweets
are newline-delimited JSON ended by "\\r\\n", cut into chunks so that lines (and even a
"\\r\\n") are split across chunks. A script that ends without ``Drop``/``Stall``
closes the stream cleanly; ``Unchunked`` answers with a body that is not chunk-encoded. The
filter rules endpoints keep their rules in ``rules``.

    with FakeXApi(token="t0k3n") as api:
        api.expect([Status(503)], [Tweets(api.tweets(5)), KeepAlive(), Drop(b'{"data":')])
        ... point TWITTER_API_URL at api.url ...
        assert api.sent == [...]   # the tweet lines that were sent completely
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import threading
import urllib.parse
from collections import deque

@dataclasses.dataclass
class Status:
    """Answer with this HTTP status and an X-style problem body (must be the only step)."""

    code: int
    body: dict | None = None


@dataclasses.dataclass
class Tweets:
    lines: list[bytes]


@dataclasses.dataclass
class KeepAlive:
    count: int = 1


@dataclasses.dataclass
class Raw:
    """Bytes sent as they are, e.g. garbage or a line without its ending."""

    data: bytes


@dataclasses.dataclass
class Drop:
    """Send this (a line cut short) and drop the connection without ending the body."""

    partial: bytes


@dataclasses.dataclass
class Stall:
    """Send nothing for this long (or until the server stops), then drop the connection."""

    seconds: float


@dataclasses.dataclass
class Hold:
    """Send a keep-alive every ``interval`` seconds until the client goes or the server stops."""

    interval: float = 0.05


@dataclasses.dataclass
class Unchunked:
    """Answer 200 with ``data`` as a body that is not chunk-encoded (must be the only step):
    with a Content-Length of ``length`` (more than the data promises more to come), or, when
    ``length`` is None, a body that ends when the connection closes. Then keep the connection
    open for ``hold`` seconds (or until the server stops) and drop it."""

    data: bytes
    length: int | None = None
    hold: float = 0
    headers: dict = dataclasses.field(default_factory=dict)


def problem(code: int) -> dict:
    """The error bodies X sends (shapes from its docs)."""
    return {
        401: {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
        403: {"title": "Client Forbidden", "reason": "client-not-enrolled",
              "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys "
              "and tokens from a Twitter developer App that is attached to a Project.",
              "type": "https://api.twitter.com/2/problems/client-forbidden"},
        429: {"title": "ConnectionException", "connection_issue": "TooManyConnections",
              "detail": "This stream is currently at the maximum allowed connection limit.",
              "type": "https://api.twitter.com/2/problems/streaming-connection"},
    }.get(code, {"title": "Service Unavailable", "detail": "Service Unavailable", "status": code})


OPERATIONAL_DISCONNECT = json.dumps({"errors": [{
    "title": "operational-disconnect", "disconnect_type": "UpstreamOperationalDisconnect",
    "detail": "This stream has been disconnected upstream for operational reasons.",
    "type": "https://api.twitter.com/2/problems/operational-disconnect"}]}).encode()


def make_tweet(number: int) -> bytes:
    """One tweet line in the v2 shape with its author in includes.users (invented)."""
    tweet_id = str(1_900_000_000_000_000_000 + number)
    user = {"id": str(2_000 + number % 7), "name": f"Test User {number % 7}", "username": f"tester{number % 7}"}
    return json.dumps({
        "data": {"id": tweet_id, "text": f"tweet number {number} ✓", "author_id": user["id"],
                 "created_at": "2026-11-25T12:00:00.000Z", "lang": "en", "edit_history_tweet_ids": [tweet_id]},
        "includes": {"users": [user]},
    }, ensure_ascii=False).encode()


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


class FakeXApi:
    def __init__(self, token: str) -> None:
        self.token = token
        self.scripts: deque[list] = deque()
        self.requests: list[Request] = []
        self.sent: list[bytes] = []  # tweet lines sent completely, in order
        self.rules: dict[str, dict] = {}
        self.split_lines = 0  # how often a chunk boundary fell inside a line / inside "\r\n"
        self.split_crlf = 0
        self._next_tweet = 0
        self._next_rule_id = 1_000
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeXApi":
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def expect(self, *scripts: list) -> None:
        """Queue one script per connection to come."""
        self.scripts.extend(scripts)

    def tweets(self, count: int) -> list[bytes]:
        """The next ``count`` tweets, numbered on from the last call."""
        with self._lock:
            first, self._next_tweet = self._next_tweet, self._next_tweet + count
        return [make_tweet(number) for number in range(first, first + count)]

    def add_rule(self, value: str, tag: str | None = None) -> str:
        with self._lock:
            rule_id, self._next_rule_id = str(self._next_rule_id), self._next_rule_id + 1
        self.rules[rule_id] = {"id": rule_id, "value": value, **({"tag": tag} if tag else {})}
        return rule_id

    def stream_requests(self) -> list[Request]:
        return [request for request in self.requests if request.path.endswith("/stream")]


class _Handler(http.server.BaseHTTPRequestHandler):
    api: FakeXApi
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each chunk leaves at once, as from a real streaming server

    def log_message(self, format, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.api.requests.append(Request(self.command, url.path, dict(urllib.parse.parse_qsl(url.query)),
                                         dict(self.headers), body))
        if self.headers.get("Authorization") != f"Bearer {self.api.token}":
            return self._json(401, problem(401))
        if url.path == "/2/tweets/search/stream/rules":
            return self._rules(body)
        if url.path not in ("/2/tweets/sample/stream", "/2/tweets/search/stream"):
            return self._json(404, {"title": "Not Found Error", "detail": self.path})
        try:
            script = self.api.scripts.popleft()
        except IndexError:
            return self._json(503, {"title": "fake X API: no connection was scripted"})
        if script and isinstance(script[0], Status):
            return self._json(script[0].code, script[0].body or problem(script[0].code))
        if script and isinstance(script[0], Unchunked):
            return self._unchunked(script[0])
        self._stream(script)

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _rules(self, body: bytes) -> None:
        api = self.api
        if self.command == "GET":
            rules = list(api.rules.values())
            return self._json(200, {**({"data": rules} if rules else {}), "meta": {"result_count": len(rules)}})
        request = json.loads(body)
        if "add" in request:
            invalid = [rule for rule in request["add"] if "(" in rule["value"] and ")" not in rule["value"]]
            if invalid:
                return self._json(200, {"errors": [{"value": rule["value"], "title": "UnprocessableEntity",
                                                    "details": ["Unbalanced parentheses (at position 1)"],
                                                    "type": "https://api.twitter.com/2/problems/invalid-rules"}
                                                   for rule in invalid],
                                        "meta": {"summary": {"created": 0, "invalid": len(invalid)}}})
            added = [api.rules[api.add_rule(rule["value"], rule.get("tag"))] for rule in request["add"]]
            return self._json(201, {"data": added, "meta": {"summary": {"created": len(added), "not_created": 0}}})
        ids = request["delete"]["ids"]
        for rule_id in ids:
            api.rules.pop(rule_id, None)
        return self._json(200, {"meta": {"summary": {"deleted": len(ids), "not_deleted": 0}}})

    def _stream(self, script: list) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for step in script:
                if isinstance(step, Tweets):
                    self._send_lines(step.lines)
                elif isinstance(step, KeepAlive):
                    for _ in range(step.count):
                        self._chunk(b"\r\n")
                elif isinstance(step, Raw):
                    self._chunk(step.data)
                elif isinstance(step, Drop):
                    self._chunk(step.partial)
                    return self._drop()
                elif isinstance(step, Stall):
                    self.api.stopping.wait(step.seconds)
                    return self._drop()
                elif isinstance(step, Hold):
                    while not self.api.stopping.wait(step.interval):
                        self._chunk(b"\r\n")
                    return self._drop()
            self.wfile.write(b"0\r\n\r\n")  # the end of a chunked body: a clean close
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away, as clients do

    def _unchunked(self, step: Unchunked) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if step.length is not None:
            self.send_header("Content-Length", str(step.length))
        for name, value in step.headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(step.data)
            self.wfile.flush()
            self.api.stopping.wait(step.hold)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self._drop()

    def _send_lines(self, lines: list[bytes]) -> None:
        """Send each line and "\r\n", chunked three ways in turn: the line cut in two, its
        "\r\n" cut in two, two lines in one chunk. A line counts as sent once all of it is out."""
        buffer, complete = b"", []  # bytes not sent yet; the lines that end in them
        for number, line in enumerate(lines):
            way = number % 3
            if way == 0:
                half = len(line) // 2
                self._chunk(buffer + line[:half])
                self.api.sent.extend(complete)
                buffer, complete = line[half:] + b"\r\n", [line]
                self.api.split_lines += 1
            elif way == 1:
                self._chunk(buffer + line + b"\r")
                self.api.sent.extend(complete)
                buffer, complete = b"\n", [line]
                self.api.split_crlf += 1
            else:
                buffer += line + b"\r\n"
                complete.append(line)
        if buffer:
            self._chunk(buffer)
            self.api.sent.extend(complete)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _drop(self) -> None:
        """Cut the connection mid-body, as a network failure would."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

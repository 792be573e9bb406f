"""Publish tweets from the X API v2 stream to Kafka, live or from a recorded stream.

Live, it reads the sampled stream (X Enterprise plans) or, with --filter, the filtered
stream (pay-per-use plans), reconnects the way X asks, and publishes each tweet as X sent
it: key = tweet id, value = the JSON line (`data` with its `includes`). --replay publishes
a recorded stream through the same code and needs no X account:

    $ python twitter-stream.py --replay --max-tweets 50
    twitter-stream.py: published 50 of 50 tweets to 'sample' in 0.1 s (441 tweets/s; failed 0, skipped 0, reconnects 0)
    $ python twitter-stream.py
    twitter-stream.py: TWITTER_BEARER_TOKEN is not set: copy your app's Bearer Token from https://developer.x.com into .env as TWITTER_BEARER_TOKEN=... (or try --replay, which needs no token)
    $ echo $?
    2

The bearer token comes only from TWITTER_BEARER_TOKEN (environment or .env), never from
the command line. Ctrl-C stops reading, waits for Kafka's acknowledgements, reports and
exits 130 (SIGTERM: 143).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import math
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import requests
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from urllib3.exceptions import ReadTimeoutError

import config

PROG = "twitter-stream.py"
log = logging.getLogger("twitter-stream")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_SIGNAL_BASE = 128  # like a shell: killed by SIGINT -> 130, by SIGTERM -> 143

SAMPLE_PATH = "/2/tweets/sample/stream"
FILTER_PATH = "/2/tweets/search/stream"
RULES_PATH = "/2/tweets/search/stream/rules"
DEFAULT_TWEET_FIELDS = "created_at,lang,author_id"
DEFAULT_EXPANSIONS = "author_id"  # puts the author (with username) in includes.users
DEFAULT_USER_FIELDS = "name,username"
RULE_TAG = "kafka-python-tutorial"  # marks the filter rules this script added
USER_AGENT = "kafka-python-tutorial/1.0 (twitter-stream.py)"
DEFAULT_REPLAY_FILE = Path(__file__).resolve().with_name("data") / "sample-stream.jsonl"
MISSING_TOKEN = (
    "TWITTER_BEARER_TOKEN is not set: copy your app's Bearer Token from https://developer.x.com "
    "into .env as TWITTER_BEARER_TOKEN=... (or try --replay, which needs no token)"
)

CONNECT_TIMEOUT_S = 10
# X sends a keep-alive at least every 20 s: a read that waits longer means the stream stalled.
STALL_TIMEOUT_S = 21
RULES_TIMEOUT_S = 30
ERROR_BODY_BYTES = 4096

# Reconnect delays as X's "handling disconnections" guide asks (tweepy uses the same numbers).
CLEAN, NETWORK, HTTP, RATE_LIMITED = "clean close", "network", "http", "rate limited"
NETWORK_STEP_S, NETWORK_MAX_S = 0.25, 16
HTTP_FIRST_S, HTTP_MAX_S = 5, 320
RATE_LIMITED_FIRST_S = 60
RATE_LIMITED_MAX_S = 960  # X names no ceiling; 16 min outlasts its 15-minute connect window
RETRYABLE_STATUS = {408, 420, 429} | set(range(500, 600))

# Backpressure: at most this many tweets handed to the producer and not yet acknowledged.
# When Kafka is slow or down, publish() blocks here and the stream is not read further, so
# nothing is dropped and memory stays bounded (~10 MB of tweets).
MAX_IN_FLIGHT = 10_000
# Fuller batches, waited for up to 20 ms: about twice the throughput of kafka-python's
# defaults into a local broker, for a latency nobody reading tweets will notice.
PRODUCER_TUNING = {"linger_ms": 20, "batch_size": 512 * 1024}
CLOSE_TIMEOUT_S = 10
STATUS_INTERVAL_TTY_S, STATUS_INTERVAL_LOG_S = 0.5, 10

KEEP_ALIVE, TWEET, ERRORS, OTHER, MALFORMED = "keep-alive", "tweet", "errors", "other", "malformed"


class Parsed(NamedTuple):
    kind: str
    tweet_id: str | None = None
    detail: object = None  # the errors list, the keys of an unknown message, or what is malformed


class Fatal(Exception):
    """An expected failure: main prints the message as one line and exits with exit_code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Stop(BaseException):
    """Raised by SIGINT/SIGTERM in the main thread, so that even a blocked read ends."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def parse_line(line: bytes) -> Parsed:
    """Classify one line of the stream, parsing just enough to publish it."""
    if not line.strip():
        return Parsed(KEEP_ALIVE)
    try:
        message = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not text
        return Parsed(MALFORMED, detail=f"not JSON: {exc}")
    if not isinstance(message, dict):
        return Parsed(MALFORMED, detail="not a JSON object")
    data = message.get("data")
    if data is not None:
        tweet_id = data.get("id") if isinstance(data, dict) else None
        if not (isinstance(tweet_id, str) and tweet_id.isdigit()):
            return Parsed(MALFORMED, detail="data without a tweet id")
        # "errors" beside "data" (e.g. a deleted quoted tweet) travel along in the value.
        return Parsed(TWEET, tweet_id)
    if "errors" in message:
        return Parsed(ERRORS, detail=message["errors"])
    return Parsed(OTHER, detail=sorted(message))  # X may add message types: skip, don't die


def describe_errors(errors: object) -> str:
    """X's list of problems as one line, e.g. 'operational-disconnect: This stream has been ...'."""
    if not isinstance(errors, list):
        return repr(errors)[:200]
    described = []
    for error in errors:
        if isinstance(error, dict):
            parts = [error.get("title"), error.get("detail"), *(error.get("details") or [])]
            parts += [f"rule {error['value']!r}"] if "value" in error else []  # a rejected filter rule
            described.append(": ".join(str(part) for part in parts if part))
        else:
            described.append(repr(error)[:200])
    return "; ".join(described)


def is_disconnect(errors: object) -> bool:
    """Whether an in-stream errors object announces that X ends the connection."""
    return isinstance(errors, list) and any(
        isinstance(error, dict)
        and (error.get("title") == "operational-disconnect" or "disconnect_type" in error)
        for error in errors
    )


def backoff_delay(kind: str, attempt: int) -> float:
    """Seconds to wait before the ``attempt``-th (1, 2, ...) reconnect in a row after ``kind``."""
    if kind == CLEAN:
        return 0.0
    if kind == NETWORK:
        return min(NETWORK_STEP_S * attempt, NETWORK_MAX_S)
    if kind == RATE_LIMITED:
        return min(RATE_LIMITED_FIRST_S * 2 ** (attempt - 1), RATE_LIMITED_MAX_S)
    return min(HTTP_FIRST_S * 2 ** (attempt - 1), HTTP_MAX_S)


def stream_path(filtered: bool) -> str:
    return FILTER_PATH if filtered else SAMPLE_PATH


def stream_params(tweet_fields: str, expansions: str, user_fields: str) -> dict[str, str]:
    params = {"tweet.fields": tweet_fields, "expansions": expansions, "user.fields": user_fields}
    return {name: value for name, value in params.items() if value}


def build_rules(wanted: list[str], active: list[dict], tag: str = RULE_TAG) -> list[dict]:
    """The filter rules to add: the wanted ones that are not active yet, tagged as ours."""
    active_values = {rule.get("value") for rule in active}
    return [{"value": value, "tag": tag} for value in dict.fromkeys(wanted) if value not in active_values]


def error_detail(response: requests.Response) -> str:
    """What X's error body says, e.g. 'client-not-enrolled: ...' (reads at most 4 KB)."""
    try:
        problem = json.loads(next(response.iter_content(ERROR_BODY_BYTES), b"") or b"null")
    except (ValueError, requests.RequestException):
        return ""
    if not isinstance(problem, dict):
        return ""
    parts = dict.fromkeys(str(part) for part in (problem.get("reason") or problem.get("title"),
                                                 problem.get("detail")) if part)
    return ": ".join(parts)[:300]


def check_status(response: requests.Response, what: str) -> str | None:
    """None for 200; the reconnect class of a retryable status; Fatal for the rest."""
    status = response.status_code
    if status == 200:
        return None
    if status in RETRYABLE_STATUS:
        return RATE_LIMITED if status == 429 else HTTP
    detail = error_detail(response)
    says = f" X says: {detail}" if detail else ""
    if status == 401:
        raise Fatal(f"X rejected the bearer token (HTTP 401): check TWITTER_BEARER_TOKEN in .env; "
                    f"it must be your app's Bearer Token.{says}")
    if status == 403 and what == SAMPLE_PATH:
        raise Fatal(f"X refused the sampled stream (HTTP 403): it needs an Enterprise plan; pay-per-use "
                    f"plans have the filtered stream (--filter RULE), and --replay needs no plan.{says}")
    if status == 403:
        raise Fatal(f"X refused {what} (HTTP 403): your plan or app has no access to the filtered stream "
                    f"(pay-per-use and Enterprise plans have it).{says}")
    raise Fatal(f"X answered HTTP {status} to {what}.{says}")


def rules_request(session: requests.Session, base_url: str, method: str, **kwargs) -> dict:
    try:
        response = session.request(method, base_url + RULES_PATH, timeout=(CONNECT_TIMEOUT_S, RULES_TIMEOUT_S),
                                   **kwargs)
    except requests.RequestException as exc:
        raise Fatal(f"cannot reach X at {base_url}: {exc}") from None
    with response:
        if response.status_code not in (200, 201):
            check_status(response, "the filter rules")  # raises for 401, 403, other 4xx
            raise Fatal(f"X answered HTTP {response.status_code} to {method} {RULES_PATH}; try again later")
        try:
            return response.json()
        except ValueError:
            raise Fatal(f"X answered {method} {RULES_PATH} with something that is not JSON") from None


def add_rules(session: requests.Session, base_url: str, wanted: list[str]) -> list[str]:
    """Make the wanted filter rules active; return the ids of those this run added."""
    active = rules_request(session, base_url, "GET").get("data", [])
    others = [rule for rule in active if rule.get("value") not in wanted]
    if others:
        log.warning("%d other filter rule(s) are active for this app: their tweets arrive too", len(others))
    to_add = build_rules(wanted, active)
    if not to_add:
        return []
    answer = rules_request(session, base_url, "POST", json={"add": to_add})
    added = [rule["id"] for rule in answer.get("data", [])]
    if answer.get("errors"):
        delete_rules(session, base_url, added)
        raise Fatal(f"X did not accept the filter rules: {describe_errors(answer['errors'])}", EXIT_USAGE)
    log.info("added filter rules %s", ", ".join(rule["value"] for rule in to_add))
    return added


def delete_rules(session: requests.Session, base_url: str, ids: list[str]) -> None:
    if ids:
        rules_request(session, base_url, "POST", json={"delete": {"ids": ids}})
        log.info("removed the %d filter rule(s) this run added", len(ids))


def live_stream(session: requests.Session, base_url: str, path: str, params: dict, stats: Stats, *,
                stall_timeout: float, sleep: Callable[[float], None]) -> Iterator[tuple[Parsed, bytes]]:
    """The stream's lines, parsed, for ever: reconnects as X asks, and raises Fatal for 401/403."""
    failures: collections.Counter[str] = collections.Counter()
    while True:
        kind, got_tweet = NETWORK, False
        try:
            response = session.get(base_url + path, params=params, stream=True,
                                   timeout=(CONNECT_TIMEOUT_S, stall_timeout))
        except requests.RequestException as exc:  # refused, DNS, TLS, connect timeout
            reason = f"cannot connect to X: {exc}"
        else:
            with response:  # leaving the block closes this connection before the next one opens
                kind = check_status(response, path)
                if kind is not None:
                    detail = error_detail(response)
                    reason = f"X answered HTTP {response.status_code}" + (f" ({detail})" if detail else "")
                else:
                    log.info("connected to %s%s", base_url, path)
                    try:
                        # iter_lines() splits on "\r\n" (and "\n"), joins lines split across
                        # network chunks, and turns a keep-alive into b"".
                        for line in response.iter_lines():
                            parsed = parse_line(line)
                            if parsed.kind == TWEET and not got_tweet:
                                got_tweet = True
                                failures.clear()  # the connection works: the schedule starts over
                            yield parsed, line
                            if parsed.kind == ERRORS and is_disconnect(parsed.detail):
                                reason = "X ended the stream (operational disconnect)"
                                break
                        else:
                            reason = "X closed the stream"
                        # At once after a clean close, unless the connection gave nothing:
                        # then a server that closes straight away would have us loop tightly.
                        kind = CLEAN if got_tweet else NETWORK
                    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                        kind = NETWORK
                        if exc.args and isinstance(exc.args[0], ReadTimeoutError):
                            reason = f"no tweet and no keep-alive for {stall_timeout:g} s: the stream stalled"
                        else:
                            reason = f"the connection broke: {exc}"
        failures[kind] += 1
        delay = backoff_delay(kind, failures[kind])
        stats.reconnects += 1
        log.warning("%s; reconnecting in %g s", reason, delay)
        sleep(delay)


def replay_file(path: Path, loop: bool) -> Iterator[tuple[Parsed, bytes]]:
    """The lines of a recorded stream, parsed, once or (loop) for ever."""
    while True:
        tweets = 0
        with path.open("rb") as file:
            for raw in file:
                line = raw.rstrip(b"\r\n")
                parsed = parse_line(line)
                tweets += parsed.kind == TWEET
                yield parsed, line
        if not loop:
            return
        if not tweets:
            raise Fatal(f"{path} holds no tweets to replay", EXIT_USAGE)


@dataclasses.dataclass
class Stats:
    received: int = 0  # tweets read and handed to the producer
    published: int = 0  # acknowledged by Kafka
    failed: int = 0
    skipped: int = 0  # malformed lines, error objects, unknown messages
    reconnects: int = 0

    def line(self, elapsed: float) -> str:
        rate = self.published / elapsed if elapsed > 0 else 0.0
        return (f"received {self.received}, published {self.published}, failed {self.failed}, "
                f"skipped {self.skipped}, {rate:,.0f} tweets/s, reconnects {self.reconnects}")


class StatusLine:
    """The status on stderr: redrawn in place on a terminal, a plain line every 10 s otherwise."""

    def __init__(self, stats: Stats, started: float, stream=None) -> None:
        self.stats, self.started = stats, started
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = STATUS_INTERVAL_TTY_S if self.tty else STATUS_INTERVAL_LOG_S
        self.next_at = started + self.interval

    def tick(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.interval
        text = self.stats.line(now - self.started)
        if self.tty:
            self.stream.write(f"\r\x1b[K{text}")  # \x1b[K: clear the rest of the old line
            self.stream.flush()
        else:
            print(f"{PROG}: {text}", file=self.stream, flush=True)

    def clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")


class Publisher:
    """Hands tweets to the producer, with at most max_in_flight of them unacknowledged."""

    def __init__(self, producer: KafkaProducer, topic: str, source: str, stats: Stats,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.producer, self.topic, self.stats = producer, topic, stats
        self.source_header = ("source", source.encode())
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self.first_error: Exception | None = None
        self._stamp_ms, self._stamp = -1, b""

    def publish(self, tweet_id: str, value: bytes) -> None:
        if self.first_error is not None:
            raise Fatal(f"Kafka did not acknowledge a tweet: {self.first_error}")
        self.slots.acquire()  # blocks while max_in_flight tweets wait for Kafka: backpressure
        received_at = self._received_at()
        try:
            future = self.producer.send(self.topic, value=value, key=tweet_id.encode(),
                                        headers=[self.source_header, ("received_at", received_at)])
        except KafkaError as exc:
            self.slots.release()
            raise Fatal(f"Kafka did not take the tweet: {exc}") from None
        self.stats.received += 1
        # Run in the producer's I/O thread once the broker answered (or the send timed out).
        future.add_callback(self._acknowledged)
        future.add_errback(self._failed)

    def _received_at(self) -> bytes:
        """Now in UTC, to the millisecond (ISO 8601), as the received_at header's value.

        Made once per millisecond: at thousands of tweets a second, formatting the time for
        each one cost ~10% of the throughput (bench/README.md).
        """
        now_ms = time.time_ns() // 1_000_000
        if now_ms != self._stamp_ms:
            moment = datetime.fromtimestamp(now_ms // 1000, timezone.utc).replace(microsecond=now_ms % 1000 * 1000)
            self._stamp_ms, self._stamp = now_ms, moment.isoformat(timespec="milliseconds").encode()
        return self._stamp

    def _acknowledged(self, _metadata) -> None:
        self.stats.published += 1
        self.slots.release()

    def _failed(self, error: Exception) -> None:
        self.stats.failed += 1
        self.first_error = self.first_error or error
        self.slots.release()


def run(options: argparse.Namespace, settings: config.Settings, *, producer: KafkaProducer,
        session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic) -> int:
    """Read the stream (or the replay file) and publish every tweet until told to stop."""
    stats = Stats()
    source = "replay" if options.replay is not None else "filter" if options.filter else "sample"
    publisher = Publisher(producer, settings.topic, source, stats)
    added_rules: list[str] = []
    if options.replay is not None:
        lines = replay_file(Path(options.replay), options.loop)
    else:
        if options.filter:
            added_rules = add_rules(session, settings.twitter_api_url, options.filter)
        lines = live_stream(session, settings.twitter_api_url, stream_path(bool(options.filter)),
                            stream_params(options.tweet_fields, options.expansions, options.user_fields),
                            stats, stall_timeout=options.stall_timeout, sleep=sleep)
    started = clock()
    deadline = started + options.duration if options.duration else math.inf
    status = StatusLine(stats, started)
    exit_code, error = EXIT_OK, None
    try:
        try:
            for parsed, line in lines:
                if parsed.kind == TWEET:
                    publisher.publish(parsed.tweet_id, line)
                    if stats.received == options.max_tweets:
                        break
                    if options.rate:  # the n-th tweet goes out n/rate seconds after the start
                        ahead = started + stats.received / options.rate - clock()
                        if ahead > 0:
                            sleep(min(ahead, max(deadline - clock(), 0)))
                elif parsed.kind == MALFORMED:
                    stats.skipped += 1
                    log.warning("skipped a malformed line (%s): %.80r", parsed.detail, line)
                elif parsed.kind == ERRORS:
                    stats.skipped += 1
                    log.warning("X sent an error: %s", describe_errors(parsed.detail))
                elif parsed.kind == OTHER:
                    stats.skipped += 1
                    log.info("skipped a message without data (keys %s)", parsed.detail)
                now = clock()
                if now >= deadline:
                    break
                status.tick(now)
        finally:
            lines.close()  # closes the HTTP response
            if added_rules and not options.keep_rules:
                try:
                    delete_rules(session, settings.twitter_api_url, added_rules)
                except Fatal as exc:
                    log.warning("could not remove the filter rules %s: %s", added_rules, exc)
    except Stop as stop:
        exit_code = EXIT_SIGNAL_BASE + stop.signum
        status.clear()
        print(f"{PROG}: {signal.Signals(stop.signum).name}: stopped reading, waiting for Kafka", file=sys.stderr)
    except Fatal as exc:
        error = exc
    try:
        producer.flush()  # every send ends acknowledged or failed (delivery timeout: 2 min)
    except Stop as stop:  # a second Ctrl-C: stop waiting, say what is not acknowledged
        exit_code = EXIT_SIGNAL_BASE + stop.signum
    status.clear()
    if error is None or stats.received or stats.skipped or stats.reconnects:
        elapsed = clock() - started
        rate = stats.published / elapsed if elapsed > 0 else 0.0
        print(f"{PROG}: published {stats.published} of {stats.received} tweets to {settings.topic!r} "
              f"in {elapsed:.1f} s ({rate:,.0f} tweets/s; failed {stats.failed}, skipped {stats.skipped}, "
              f"reconnects {stats.reconnects})", file=sys.stderr)
    if error is not None:
        raise error
    if stats.failed and exit_code == EXIT_OK:
        raise Fatal(f"Kafka did not acknowledge {stats.failed} tweet(s): {publisher.first_error}")
    return exit_code


class Signals:
    """SIGINT/SIGTERM raise Stop in the main thread, so that even a blocked read ends.

    Until undefer(), a signal is only noted: cut off midway, kafka-python's bootstrap leaves
    its I/O loop half torn down and complains at exit.
    """

    def __init__(self) -> None:
        self.deferred, self.pending, self.previous = True, None, {}

    def __enter__(self) -> "Signals":
        if threading.current_thread() is threading.main_thread():  # the only place Python allows it
            self.previous = {signum: signal.signal(signum, self.handle) for signum in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def handle(self, signum: int, _frame) -> None:
        if not self.deferred:
            raise Stop(signum)
        self.pending = signum
        print(f"{PROG}: stopping once Kafka answers or {config.BOOTSTRAP_TIMEOUT_MS // 1000} s have passed",
              file=sys.stderr)

    def undefer(self) -> None:
        self.deferred = False
        if self.pending is not None:
            raise Stop(self.pending)


def positive(kind: type) -> Callable[[str], float]:
    def convert(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its error message
    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish tweets from the X API v2 stream to Kafka (or replay a recorded stream).",
        epilog="The bearer token is read from TWITTER_BEARER_TOKEN (environment or .env), "
        "never from the command line.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--filter", action="append", metavar="RULE",
                      help="read the filtered stream with this rule, e.g. 'kafka lang:en' (repeatable; "
                      "pay-per-use plans have this stream; without it: the sampled stream, Enterprise only)")
    mode.add_argument("--replay", nargs="?", const=str(DEFAULT_REPLAY_FILE), metavar="FILE",
                      help="publish a recorded stream instead of connecting to X; no token needed "
                      "(default FILE: data/sample-stream.jsonl)")
    parser.add_argument("--keep-rules", action="store_true",
                        help="with --filter: leave the rules this run added in place when it ends")
    parser.add_argument("--rate", type=positive(float), metavar="N",
                        help="with --replay: N tweets per second (default: as fast as Kafka takes them)")
    parser.add_argument("--loop", action="store_true", help="with --replay: start again at the end of the file")
    parser.add_argument("--max-tweets", type=positive(int), metavar="N",
                        help="stop after N tweets, once Kafka has acknowledged them")
    parser.add_argument("--duration", type=positive(float), metavar="SECONDS",
                        help="stop after this many seconds, once Kafka has acknowledged every tweet "
                        "(live: checked as lines arrive, at least every 20 s)")
    parser.add_argument("--tweet-fields", default=DEFAULT_TWEET_FIELDS, metavar="FIELDS",
                        help=f"tweet.fields X should send (default {DEFAULT_TWEET_FIELDS})")
    parser.add_argument("--expansions", default=DEFAULT_EXPANSIONS, metavar="FIELDS",
                        help=f"expansions X should send (default {DEFAULT_EXPANSIONS})")
    parser.add_argument("--user-fields", default=DEFAULT_USER_FIELDS, metavar="FIELDS",
                        help=f"user.fields of the expanded users (default {DEFAULT_USER_FIELDS})")
    parser.add_argument("--stall-timeout", type=positive(float), default=STALL_TIMEOUT_S, metavar="SECONDS",
                        help=f"reconnect when neither a tweet nor a keep-alive came for this long "
                        f"(default {STALL_TIMEOUT_S}; X sends a keep-alive every 20 s)")
    config.add_common_arguments(parser)
    return parser


def make_session(token: config.Secret) -> requests.Session:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token.reveal()}", "User-Agent": USER_AGENT})
    return session


def fail(message: str, exit_code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return exit_code


def main(argv: list[str] | None = None, *, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.replay is None and (options.rate or options.loop):
        parser.error("--rate and --loop go with --replay")
    if options.keep_rules and not options.filter:
        parser.error("--keep-rules goes with --filter")
    config.setup_logging(options.log_level)
    try:
        # config checks the topic name, from KAFKA_TOPIC here and from --topic in the parser.
        settings = config.load().override(bootstrap_servers=options.bootstrap_server, topic=options.topic)
    except config.ConfigError as exc:
        return fail(str(exc), EXIT_USAGE)
    if options.replay is not None and not Path(options.replay).is_file():
        return fail(f"no such file to replay: {options.replay}", EXIT_USAGE)
    if options.replay is None:
        if settings.twitter_bearer_token is None:
            return fail(MISSING_TOKEN, EXIT_USAGE)
        if not settings.twitter_api_url.startswith(("https://", "http://")):
            return fail(f"TWITTER_API_URL must start with https://, not {settings.twitter_api_url!r}", EXIT_USAGE)
    with Signals() as signals:  # from here on, Ctrl-C ends with a report instead of a traceback
        try:
            producer = KafkaProducer(**config.producer_kwargs(settings, **PRODUCER_TUNING))
        except KafkaTimeoutError as error:
            return fail(config.unreachable_message(settings, error),
                        EXIT_ERROR if signals.pending is None else EXIT_SIGNAL_BASE + signals.pending)
        except KafkaError as exc:
            return fail(f"cannot connect to Kafka at {settings.bootstrap_servers}: {exc}", EXIT_ERROR)
        session = None if options.replay is not None else make_session(settings.twitter_bearer_token)
        try:
            signals.undefer()
            return run(options, settings, producer=producer, session=session, sleep=sleep, clock=clock)
        except Fatal as exc:
            return fail(str(exc), exc.exit_code)
        except Stop as stop:  # before anything was published (e.g. while adding filter rules)
            return EXIT_SIGNAL_BASE + stop.signum
        finally:
            if session is not None:
                session.close()
            try:
                producer.close(timeout=CLOSE_TIMEOUT_S)
            except (KafkaError, Stop) as exc:  # after a second Ctrl-C; run() reported what is unacknowledged
                log.warning("closing the producer: %r", exc)


if __name__ == "__main__":
    sys.exit(main())

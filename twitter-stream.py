"""Publish tweets from the X API v2 stream to Kafka, live or from a recorded stream.

Live, it reads the sampled stream (X Enterprise plans) or, with --filter, the filtered
stream (pay-per-use plans), reconnects the way X asks, and publishes each tweet as X sent
it: key = tweet id, value = the JSON line (`data` with its `includes`). --replay publishes
a recorded stream through the same code and needs no X account:

    $ python twitter-stream.py --replay --max-tweets 50
    published 50 of 50 tweets to 'tweets' in 0.1 s (441 tweets/s; failed 0, skipped 0, reconnects 0)

    $ python twitter-stream.py
    twitter-stream.py: error: TWITTER_BEARER_TOKEN is not set: copy your app's Bearer Token from https://developer.x.com into .env as TWITTER_BEARER_TOKEN=... (or try --replay, which needs no token)
    $ echo $?
    2

The bearer token comes only from TWITTER_BEARER_TOKEN (environment or .env), never from the
command line, and is never printed. Exit status: 0 when every tweet read was acknowledged,
1 on errors, 2 for bad flags, 130 after Ctrl-C and 143 after SIGTERM: it stops reading, waits
(at most 10 s) for Kafka's answers and prints the summary first.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import json.scanner
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import cli

with cli.needs_packages("twitter-stream.py"):  # without the packages: one line, not a traceback
    import requests
    import urllib3
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, MessageSizeTooLargeError

    import config

PROG = "twitter-stream.py"
log = logging.getLogger("twitter-stream")
# What main() passes to KafkaProducer (bench/ reads it; a test checks that the two agree).
PRODUCER_TUNING = {"linger_ms": 20, "batch_size": 512 * 1024}
# Backpressure: at most this many tweets unacknowledged. When Kafka is slow or down, the stream
# is not read further: nothing is dropped, and memory stays bounded (~10 MB of tweets).
MAX_IN_FLIGHT = 10_000


def main(argv: list[str] | None = None, *, sleep: Callable[[float], None] | None = None,
         clock: Callable[[], float] = time.monotonic) -> int:
    args = parse_args(argv)
    with cli.Run(PROG, args.log_level) as run:  # Ctrl-C, SIGTERM, one-line errors: see cli.py
        settings = config.load()  # tweets go to a topic of their own: "tweets" (TWITTER_TOPIC)
        settings = run.settings = settings.override(bootstrap_servers=args.bootstrap_server,
                                                    topic=args.topic or settings.tweets_topic)
        check_source(args, settings)  # a token, or a file to replay: before we wait for Kafka
        run.connecting(f"Kafka at {settings.bootstrap_servers}", config.BOOTSTRAP_TIMEOUT_S)

        # 1. The producer. acks="all" and idempotence: a tweet counts as published once every
        #    in-sync replica has it, and a retried send is never stored twice.
        producer = KafkaProducer(
            **config.connection_kwargs(settings),  # where Kafka is, and how to log in
            acks="all",
            enable_idempotence=True,
            # Tweets come in bursts of small records that nobody reads within milliseconds:
            # waiting up to 20 ms fills 512 KB batches (default 16 KB), so the sending thread
            # wakes once per thousand tweets, not once per tweet: ~2x the tweets/s.
            linger_ms=20,
            batch_size=512 * 1024,
            compression_type=args.compression,  # None: uncompressed (see --help)
        )
        run.connected()

        # 2. The source: X's stream (reconnecting as X asks), or a recorded one.
        report = Report()
        deliveries = report.deliveries  # counts Kafka's answers (see cli.Deliveries)
        source = "replay" if args.replay is not None else "filter" if args.filter else "sample"
        source_header = ("source", source.encode())
        utc = cli.UtcClock()
        pace = Pace(args, run, report, clock, sleep or run.sleep)  # --rate, --duration, status line
        failure = None
        try:
            with contextlib.closing(open_source(args, settings, run, report, pace.sleep)) as lines:
                for parsed, line in lines:
                    if parsed.kind != TWEET:
                        report.skip(parsed, line)  # keep-alives, X's errors, malformed lines
                        if pace.time_is_up():
                            break
                        continue
                    # Backpressure: while MAX_IN_FLIGHT tweets await Kafka's answer, read no
                    # further. The stream waits in the network's buffers; memory stays bounded.
                    if deliveries.pending >= MAX_IN_FLIGHT:
                        wait_for_room(deliveries, run, MAX_IN_FLIGHT)
                    if not pace.next_turn():  # --rate, --duration, Ctrl-C
                        break
                    # 3. Send: key = the tweet id (a tweet read twice goes to the same partition),
                    #    value = the line as X sent it. send() only adds the tweet to a batch;
                    #    Kafka's answer comes later, and `deliveries` counts it.
                    try:
                        future = producer.send(
                            settings.topic, key=parsed.tweet_id.encode(), value=line,
                            headers=[source_header, ("received_at", utc.now().encode())])
                    except MessageSizeTooLargeError:  # checked before sending: skip it
                        report.too_big(parsed.tweet_id, len(line))
                        continue
                    deliveries.track(future)
                    if (deliveries.sent == args.max_tweets or report.kafka_error is not None
                            or pace.time_is_up()):
                        break
        except cli.Failure as error:  # 401/403 while streaming: report what was sent, then why
            failure = error
        except KafkaError as error:
            failure = cli.Failure(f"Kafka did not take a tweet: {error}")
        pace.status.clear()
        if run.signal is not None:
            run.say(f"{signal.Signals(run.signal).name}: stopped reading, waiting for Kafka")

        # 4. Wait for Kafka's answer to every tweet (at most 10 s after Ctrl-C), then report.
        cli.finish(producer, deliveries, run)
        if failure is None or deliveries.sent or report.skipped or report.reconnects:
            run.say(report.summary(settings.topic, clock() - pace.started))
        if failure is not None:
            raise failure
        if deliveries.failed:
            raise cli.Failure(f"Kafka did not acknowledge {deliveries.failed} tweet(s): "
                              f"{report.kafka_error or deliveries.first_error}")
    return run.exit_code


# ---- The X API: stream, reconnects, rules -----------------------------------------------

SAMPLE_PATH = "/2/tweets/sample/stream"
FILTER_PATH = "/2/tweets/search/stream"
RULES_PATH = "/2/tweets/search/stream/rules"
DEFAULT_TWEET_FIELDS = "created_at,lang,author_id"
DEFAULT_EXPANSIONS = "author_id"  # puts the author (with username) in includes.users
DEFAULT_USER_FIELDS = "name,username"
RULE_TAG = "kafka-python-tutorial"  # marks the filter rules this script added
USER_AGENT = "kafka-python-tutorial/1.0 (twitter-stream.py)"
DEFAULT_REPLAY_FILE = Path(__file__).resolve().with_name("data") / "sample-stream.jsonl"
MISSING_TOKEN = ("TWITTER_BEARER_TOKEN is not set: copy your app's Bearer Token from "
                 "https://developer.x.com into .env as TWITTER_BEARER_TOKEN=... (or try --replay, "
                 "which needs no token)")
CONNECT_TIMEOUT_S = 10
STALL_TIMEOUT_S = 21  # X sends a keep-alive at least every 20 s: a longer wait is a stall
RULES_TIMEOUT_S = 30
ERROR_BODY_BYTES = 4096

# Reconnect delays as X's "handling disconnections" guide asks (tweepy uses the same numbers).
CLEAN, NETWORK, HTTP, RATE_LIMITED = "clean close", "network", "http", "rate limited"
NETWORK_STEP_S, NETWORK_MAX_S = 0.25, 16
HTTP_FIRST_S, HTTP_MAX_S = 5, 320
RATE_LIMITED_FIRST_S, RATE_LIMITED_MAX_S = 60, 960  # X names no ceiling; 16 min > its 15-min window
RETRYABLE_STATUS = {408, 420, 429} | set(range(500, 600))
# A clean close after a connection this young is "in a row" with the one before: only the
# first such close reconnects at once (a server that closes after every tweet is no reason
# to connect 20 times a second).
STEADY_S = 60
# Anything that can go wrong while reading a response body (a broken or stalled connection,
# bad chunking, a gzip body that is not gzip) is a reason to reconnect, never a traceback.
READ_ERRORS = (urllib3.exceptions.HTTPError, requests.RequestException, http.client.HTTPException,
               OSError)


def open_source(args: argparse.Namespace, settings: config.Settings, run: cli.Run,
                report: "Report", sleep: Callable[[float], None]) -> Iterator[tuple[Parsed, bytes]]:
    """The lines to publish, parsed: from the replay file or from X (which adds the filter
    rules first, and removes those it added when closed)."""
    if args.replay is not None:
        yield from replay_file(Path(args.replay), args.loop, run, report)
        return
    session = make_session(settings.twitter_bearer_token)
    added: list[str] = []
    try:
        if args.filter:
            added = add_rules(session, settings.twitter_api_url, args.filter)
        yield from live_stream(session, settings.twitter_api_url, stream_path(bool(args.filter)),
                               stream_params(args.tweet_fields, args.expansions, args.user_fields),
                               run, report, stall_timeout=args.stall_timeout, sleep=sleep)
    finally:
        if added and not args.keep_rules:
            try:
                delete_rules(session, settings.twitter_api_url, added)
            except cli.Failure as error:
                log.warning("could not remove the filter rules %s: %s", added, error)
        session.close()


def live_stream(session: requests.Session, base_url: str, path: str, params: dict, run: cli.Run,
                report: "Report", *, stall_timeout: float,
                sleep: Callable[[float], None]) -> Iterator[tuple[Parsed, bytes]]:
    """The stream's lines, parsed, until a signal: reconnects as X asks; Failure for 401/403."""
    failures: collections.Counter[str] = collections.Counter()  # in a row, per kind
    while not run.stopping:
        kind, opened = NETWORK, time.monotonic()
        try:
            response = session.get(base_url + path, params=params, stream=True,
                                   timeout=(CONNECT_TIMEOUT_S, stall_timeout))
        except requests.RequestException as error:  # refused, DNS, TLS, connect timeout
            reason = f"cannot connect to X: {error}"
        else:
            with response:  # leaving the block closes this connection before the next one opens
                kind = check_status(response, path)
                if kind is not None:
                    detail = error_detail(response)
                    reason = f"X answered HTTP {response.status_code}" + (f" ({detail})" if detail else "")
                else:
                    log.info("connected to %s%s", base_url, path)
                    kind, reason = yield from read_stream(response, run, failures, stall_timeout)
        if run.stopping:
            return
        if kind == CLEAN and time.monotonic() - opened >= STEADY_S:
            failures[CLEAN] = 0  # it had been up a while: this close is not one in a row
        failures[kind] += 1
        delay = backoff_delay(kind, failures[kind])
        report.reconnects += 1
        log.warning("%s; reconnecting in %g s", config.redact(reason), delay)
        sleep(delay)


def read_stream(response: requests.Response, run: cli.Run, failures: collections.Counter,
                stall_timeout: float) -> Iterator[tuple[Parsed, bytes]]:
    """Yield one connection's lines, parsed; return how it ended: (kind, reason)."""
    got_tweet = False
    try:
        for line in split_lines(read_chunks(response, run), last=False):
            parsed = parse_line(line)
            if parsed.kind == TWEET and not got_tweet:
                got_tweet = True
                for kind in (NETWORK, HTTP, RATE_LIMITED):  # it works: those schedules start over
                    failures[kind] = 0
            yield parsed, line
            if parsed.kind == ERRORS and is_disconnect(parsed.detail):
                return (CLEAN if got_tweet else NETWORK), "X ended the stream (operational disconnect)"
    except urllib3.exceptions.ReadTimeoutError:
        return NETWORK, f"no tweet and no keep-alive for {stall_timeout:g} s: the stream stalled"
    except READ_ERRORS as error:
        return NETWORK, f"the connection broke ({type(error).__name__}: {error})"
    # At once after a clean close, unless the connection gave nothing: a server that closes
    # straight away would have us loop tightly.
    return (CLEAN if got_tweet else NETWORK), "X closed the stream"


def read_chunks(response: requests.Response, run: cli.Run) -> Iterator[bytes]:
    """The body as it arrives: read1() returns what is there, never waits for more (requests'
    iter_lines() waits for 512 bytes, so a tweet followed by a pause stayed unpublished)."""
    while True:
        try:
            with run.interruptible():  # only the wait for bytes: Ctrl-C ends it at once
                chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
        except cli.Interrupted:
            return
        if not chunk:
            return
        yield chunk


def replay_file(path: Path, loop: bool, run: cli.Run,
                report: "Report | None" = None) -> Iterator[tuple[Parsed, bytes]]:
    """The lines of a recorded stream, parsed, once or (loop) until a signal. After the first
    pass, ``report`` counts what it skips without saying it again."""
    while True:
        got_tweet = False
        try:
            with path.open("rb") as file:
                for line in split_lines(file_chunks(file, run)):
                    parsed = parse_line(line)
                    got_tweet = got_tweet or parsed.kind == TWEET
                    yield parsed, line
        except OSError as error:  # gone or unreadable since the start
            raise cli.Failure(f"cannot read {path}: {error.strerror or error}") from None
        if not loop or run.stopping:
            return
        if report is not None:
            report.told_once = True
        if not got_tweet:
            raise cli.Failure(f"{path} holds no tweets to replay", cli.EXIT_USAGE)


def file_chunks(file, run: cli.Run) -> Iterator[bytes]:
    """The file in pieces, until its end or a signal."""
    while not run.stopping:
        chunk = file.read(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def backoff_delay(kind: str, attempt: int) -> float:
    """Seconds to wait before the ``attempt``-th (1, 2, ...) reconnect in a row after ``kind``."""
    if kind == CLEAN:  # at once; clean closes in a row then back off like network errors
        return 0.0 if attempt <= 1 else backoff_delay(NETWORK, attempt - 1)
    if kind == NETWORK:
        return min(NETWORK_STEP_S * attempt, NETWORK_MAX_S)
    if kind == RATE_LIMITED:
        return min(RATE_LIMITED_FIRST_S * 2 ** min(attempt - 1, 10), RATE_LIMITED_MAX_S)
    return min(HTTP_FIRST_S * 2 ** min(attempt - 1, 10), HTTP_MAX_S)


def check_status(response: requests.Response, what: str) -> str | None:
    """None for 200; the reconnect kind of a retryable status; Failure for the rest."""
    status = response.status_code
    if status == 200:
        return None
    if status in RETRYABLE_STATUS:
        return RATE_LIMITED if status == 429 else HTTP
    detail = error_detail(response)
    says = f" X says: {detail}" if detail else ""
    if status == 401:
        raise cli.Failure(f"X rejected the bearer token (HTTP 401): check TWITTER_BEARER_TOKEN in "
                          f".env; it must be your app's Bearer Token.{says}")
    if status == 403 and what == SAMPLE_PATH:
        raise cli.Failure(f"X refused the sampled stream (HTTP 403): it needs an Enterprise plan; "
                          f"pay-per-use plans have the filtered stream (--filter RULE), and --replay "
                          f"needs no plan.{says}")
    if status == 403:
        raise cli.Failure(f"X refused {what} (HTTP 403): your plan or app has no access to the "
                          f"filtered stream (pay-per-use and Enterprise plans have it).{says}")
    raise cli.Failure(f"X answered HTTP {status} to {what}.{says}")


def error_detail(response: requests.Response) -> str:
    """What X's error body says, e.g. 'client-not-enrolled: ...' (reads at most 4 KB)."""
    try:
        problem = json.loads(next(response.iter_content(ERROR_BODY_BYTES), b"") or b"null")
    except (ValueError, RecursionError, requests.RequestException):
        return ""
    if not isinstance(problem, dict):
        return ""
    parts = dict.fromkeys(str(part) for part in (problem.get("reason") or problem.get("title"),
                                                 problem.get("detail")) if part)
    return cli.printable(": ".join(parts)[:300])


def stream_path(filtered: bool) -> str:
    return FILTER_PATH if filtered else SAMPLE_PATH


def stream_params(tweet_fields: str, expansions: str, user_fields: str) -> dict[str, str]:
    params = {"tweet.fields": tweet_fields, "expansions": expansions, "user.fields": user_fields}
    return {name: value for name, value in params.items() if value}


def make_session(token: config.Secret) -> requests.Session:
    session = requests.Session()  # reveal(): from now on config.redact() masks the token
    session.headers.update({"Authorization": f"Bearer {token.reveal()}", "User-Agent": USER_AGENT})
    return session


def build_rules(wanted: list[str], active: list[dict], tag: str = RULE_TAG) -> list[dict]:
    """The filter rules to add: the wanted ones that are not active yet, tagged as ours."""
    active_values = {rule.get("value") for rule in active if isinstance(rule, dict)}
    return [{"value": value, "tag": tag} for value in dict.fromkeys(wanted) if value not in active_values]


def add_rules(session: requests.Session, base_url: str, wanted: list[str]) -> list[str]:
    """Make the wanted filter rules active; return the ids of those this run added."""
    active = rules_request(session, base_url, "GET").get("data") or []
    others = [rule for rule in active if isinstance(rule, dict) and rule.get("value") not in wanted]
    if others:
        log.warning("%d other filter rule(s) are active for this app: their tweets arrive too", len(others))
    to_add = build_rules(wanted, active)
    if not to_add:
        return []
    answer = rules_request(session, base_url, "POST", json={"add": to_add})
    added = [rule["id"] for rule in answer.get("data") or [] if isinstance(rule, dict) and "id" in rule]
    if answer.get("errors"):
        delete_rules(session, base_url, added)
        raise cli.Failure(f"X did not accept the filter rules: {describe_errors(answer['errors'])}",
                          cli.EXIT_USAGE)
    log.info("added filter rules %s", ", ".join(rule["value"] for rule in to_add))
    return added


def delete_rules(session: requests.Session, base_url: str, ids: list[str]) -> None:
    if ids:
        rules_request(session, base_url, "POST", json={"delete": {"ids": ids}})
        log.info("removed the %d filter rule(s) this run added", len(ids))


def rules_request(session: requests.Session, base_url: str, method: str, **kwargs) -> dict:
    try:
        response = session.request(method, base_url + RULES_PATH,
                                   timeout=(CONNECT_TIMEOUT_S, RULES_TIMEOUT_S), **kwargs)
    except requests.RequestException as error:
        raise cli.Failure(f"cannot reach X at {base_url}: {error}") from None
    with response:
        if response.status_code not in (200, 201):
            check_status(response, "the filter rules")  # raises for 401, 403, other 4xx
            raise cli.Failure(f"X answered HTTP {response.status_code} to {method} {RULES_PATH}; "
                              f"try again later")
        try:
            answer = response.json()
        except (ValueError, RecursionError, requests.RequestException):
            answer = None
    if not isinstance(answer, dict):
        raise cli.Failure(f"X answered {method} {RULES_PATH} with something that is not a JSON object")
    return answer


# ---- Lines of the stream -------------------------------------------------------------------

KEEP_ALIVE, TWEET, ERRORS, OTHER, MALFORMED = "keep-alive", "tweet", "errors", "other", "malformed"
CHUNK_BYTES = 64 * 1024  # at most this much is read at a time
# A line may grow to 2 MiB (twice Kafka's default largest message) before it is dropped.
MAX_LINE_BYTES = 2 * 1024 * 1024
TOO_LONG = b"<a line too long to keep>"  # split_lines() yields this very object for one
_decoder = json.JSONDecoder()
_scan_json = json.scanner.make_scanner(_decoder)  # the C scanner that json.loads() runs


def decode_json(text: str) -> object:
    """json.loads(text), ~25% cheaper for a line of X's stream ("{...}", no space around): it
    skips the two whitespace regexes around the scan. Anything else takes the whole way, with
    the same result or the same error."""
    if text[:1] == "{" and text[-1:] == "}":
        try:
            value, end = _scan_json(text, 0)
        except StopIteration:  # a value missing inside ('{"a": }'): json.loads says which
            pass
        else:
            if end == len(text):
                return value
    return _decoder.decode(text)


class Parsed(NamedTuple):
    kind: str
    tweet_id: str | None = None
    detail: object = None  # the errors list, the keys of an unknown message, or what is malformed


def split_lines(chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES, last: bool = True) -> Iterator[bytes]:
    """The lines in ``chunks`` (cut anywhere), without their "\\n" or "\\r\\n" (a keep-alive is
    b""). A line longer than ``limit`` is not kept: TOO_LONG stands for it, yielded as soon as
    it is too long, and the rest of it is skipped up to its end. ``last``: also the last line
    if it has no end (in a file; on a stream it was cut off)."""
    head: list[bytes] = []  # the start of a line whose end has not come yet
    size, dropping = 0, False
    for chunk in chunks:
        *ended, rest = chunk.split(b"\n")
        if ended:
            if dropping:
                dropping = False
                del ended[0]  # the end of the line that was too long
            elif head:
                head.append(ended[0])
                ended[0] = b"".join(head)
            head, size = [], 0
            for line in ended:
                if len(line) > limit:
                    yield TOO_LONG
                else:
                    yield line[:-1] if line[-1:] == b"\r" else line
        if rest and not dropping:
            head.append(rest)
            size += len(rest)
            if size > limit:
                head, size, dropping = [], 0, True
                yield TOO_LONG
    if head and last:  # the last line, without its end
        line = b"".join(head)
        yield line[:-1] if line[-1:] == b"\r" else line


def parse_line(line: bytes) -> Parsed:
    """Classify one line of the stream, parsing just enough to publish it."""
    if line is TOO_LONG:
        return Parsed(MALFORMED, detail=f"longer than {MAX_LINE_BYTES:,} bytes: dropped")
    if not line.strip():
        return Parsed(KEEP_ALIVE)
    try:
        message = decode_json(line.decode())  # X sends UTF-8; json.loads would guess
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, nested beyond reason
        return Parsed(MALFORMED, detail=f"not JSON: {str(error)[:200]}")
    if not isinstance(message, dict):
        return Parsed(MALFORMED, detail="not a JSON object")
    data = message.get("data")
    if data is not None:
        tweet_id = data.get("id") if isinstance(data, dict) else None
        if not (isinstance(tweet_id, str) and tweet_id.isascii() and tweet_id.isdigit()):
            return Parsed(MALFORMED, detail="data without a tweet id")
        # "errors" beside "data" (e.g. a deleted quoted tweet) travel along in the value.
        return Parsed(TWEET, tweet_id)
    if "errors" in message:
        return Parsed(ERRORS, detail=message["errors"])
    return Parsed(OTHER, detail=sorted(message))  # X may add message types: skip, don't die


def describe_errors(errors: object) -> str:
    """X's list of problems as one line, e.g. 'operational-disconnect: This stream has been ...'."""
    described = []
    for error in errors if isinstance(errors, list) else [errors]:
        if not isinstance(error, dict):
            described.append(repr(error)[:200])
            continue
        details = error.get("details")
        parts = [error.get("title"), error.get("detail"), *(details if isinstance(details, list) else [details])]
        parts += [f"rule {error['value']!r}"] if "value" in error else []  # a rejected filter rule
        described.append(": ".join(str(part)[:200] for part in parts if part))
    return cli.printable("; ".join(described))


def is_disconnect(errors: object) -> bool:
    """Whether an in-stream errors object announces that X ends the connection."""
    return isinstance(errors, list) and any(
        isinstance(error, dict)
        and (error.get("title") == "operational-disconnect" or "disconnect_type" in error)
        for error in errors)


# ---- Plumbing: counting, the status line, the command line ---------------------------------

STATUS_INTERVAL_TTY_S, STATUS_INTERVAL_LOG_S = 0.5, 10


class Report:
    """What happened: Kafka's answers (``deliveries``), what was skipped, the reconnects."""

    def __init__(self) -> None:
        self.deliveries = cli.Deliveries(on_error=self._failed)
        self.skipped = self.too_large = self.reconnects = 0
        self.kafka_error: BaseException | None = None  # a failure other than "too large": stop
        # --replay --loop: the file's lines were told once. Telling them again on every pass
        # says nothing new, and cost 2% of the tweets/s.
        self.told_once = False

    def skip(self, parsed: Parsed, line: bytes) -> None:
        if parsed.kind == KEEP_ALIVE:
            return
        self.skipped += 1
        if line is TOO_LONG:
            self.too_large += 1
        if self.told_once:
            return
        if line is TOO_LONG:
            log.warning("skipped a line longer than %s bytes, up to its end", f"{MAX_LINE_BYTES:,}")
        elif parsed.kind == MALFORMED:
            log.warning("skipped a malformed line (%s): %.80r", parsed.detail, line)
        elif parsed.kind == ERRORS:
            log.warning("X sent an error: %s", describe_errors(parsed.detail))
        else:
            log.info("skipped a message without data (keys %s)", cli.printable(str(parsed.detail)[:200]))

    def too_big(self, tweet_id: str, size: int) -> None:
        self.skipped += 1
        self.too_large += 1
        log.warning("skipped tweet %s: %s bytes, more than the producer sends (max_request_size)",
                    tweet_id, f"{size:,}")

    def _failed(self, _record, error: BaseException) -> None:  # on kafka-python's I/O thread
        if isinstance(error, MessageSizeTooLargeError):
            log.warning("Kafka refused a tweet, or its batch, as too large: %s", error)
        elif self.kafka_error is None:
            self.kafka_error = error

    def line(self, elapsed: float) -> str:
        deliveries = self.deliveries
        rate = deliveries.acked / elapsed if elapsed > 0 else 0.0
        return (f"received {deliveries.sent}, published {deliveries.acked}, failed {deliveries.failed}, "
                f"skipped {self.skipped}, {rate:,.0f} tweets/s, reconnects {self.reconnects}")

    def summary(self, topic: str, elapsed: float) -> str:
        deliveries = self.deliveries
        rate = deliveries.acked / elapsed if elapsed > 0 else 0.0
        too_large = f" ({self.too_large} too large)" if self.too_large else ""
        return (f"published {deliveries.acked} of {deliveries.sent} tweets to {topic!r} in "
                f"{elapsed:.1f} s ({rate:,.0f} tweets/s; failed {deliveries.failed}, skipped "
                f"{self.skipped}{too_large}, reconnects {self.reconnects}){deliveries.unanswered()}")


def wait_for_room(deliveries: cli.Deliveries, run: cli.Run, limit: int) -> None:
    """Wait while ``limit`` tweets await Kafka's answer: in short sleeps, which a signal does
    not cut short (it only sets run.signal), so no exception can land in a lock of ours."""
    while deliveries.pending >= limit and not run.stopping:
        time.sleep(0.002)


class Pace:
    """When the next tweet may go, and when to stop: --rate, --duration, a signal; and the
    status line, redrawn as time passes."""

    def __init__(self, args: argparse.Namespace, run: cli.Run, report: Report,
                 clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.run, self.deliveries, self.clock, self.sleep = run, report.deliveries, clock, sleep
        self.started = clock()
        self.deadline = self.started + args.duration if args.duration else math.inf
        self.pacer = cli.Pacer(args.rate, clock) if args.rate else None
        self.status = StatusLine(report, self.started)

    def next_turn(self) -> bool:
        """Wait for the next tweet's turn; False when it is time to stop instead."""
        if self.pacer is not None:  # the n-th tweet goes out n/rate seconds after the start
            wait = min(self.pacer.delay(self.deliveries.sent), self.deadline - self.clock())
            if wait > 0:
                self.sleep(wait)
            if self.clock() >= self.deadline:
                return False
        return not self.run.stopping

    def time_is_up(self) -> bool:
        now = self.clock()
        if now >= self.deadline:
            return True
        self.status.tick(now)
        return False


class StatusLine:
    """The status on stderr: redrawn in place on a terminal, a plain line every 10 s otherwise."""

    def __init__(self, report: Report, started: float, stream=None) -> None:
        self.report, self.started = report, started
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = STATUS_INTERVAL_TTY_S if self.tty else STATUS_INTERVAL_LOG_S
        self.next_at = started + self.interval

    def tick(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.interval
        text = self.report.line(now - self.started)
        with contextlib.suppress(OSError, ValueError):  # stderr closed: nobody to tell
            if self.tty:
                self.stream.write(f"\r\x1b[K{text}")  # \x1b[K: clear the rest of the old line
                self.stream.flush()
            else:
                print(text, file=self.stream, flush=True)

    def clear(self) -> None:
        if self.tty:
            with contextlib.suppress(OSError, ValueError):
                self.stream.write("\r\x1b[K")
                self.stream.flush()


def check_source(args: argparse.Namespace, settings: config.Settings) -> None:
    """Usage errors (exit 2) about where the tweets come from."""
    if args.replay is not None:
        path = Path(args.replay)
        if path.is_dir():
            raise cli.Failure(f"{path} is a directory: --replay takes a file (a recorded stream, "
                              f"one JSON object per line)", cli.EXIT_USAGE)
        try:
            path.open("rb").close()
        except FileNotFoundError:
            raise cli.Failure(f"no such file to replay: {path}", cli.EXIT_USAGE) from None
        except OSError as error:
            raise cli.Failure(f"cannot read the file to replay: {error}", cli.EXIT_USAGE) from None
    elif settings.twitter_bearer_token is None:
        raise cli.Failure(MISSING_TOKEN, cli.EXIT_USAGE)
    elif not settings.twitter_api_url.startswith(("https://", "http://")):
        raise cli.Failure(f"TWITTER_API_URL must start with https://, not "
                          f"{settings.twitter_api_url!r}", cli.EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish tweets from the X API v2 stream to Kafka (or replay a recorded stream).",
        epilog="The bearer token is read from TWITTER_BEARER_TOKEN (environment or .env), "
        "never from the command line.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--filter", action="append", metavar="RULE",
                      help="read the filtered stream with this rule, e.g. 'kafka lang:en' (repeatable; "
                      "pay-per-use plans have this stream; without it: the sampled stream, Enterprise only)")
    mode.add_argument("--replay", nargs="?", const=str(DEFAULT_REPLAY_FILE), metavar="FILE",
                      help="publish a recorded stream instead of connecting to X; no token needed "
                      "(default FILE: data/sample-stream.jsonl)")
    parser.add_argument("--keep-rules", action="store_true",
                        help="with --filter: leave the rules this run added in place when it ends")
    parser.add_argument("--rate", type=cli.rate_type, metavar="N",
                        help="with --replay: N tweets per second (default: as fast as Kafka takes them)")
    parser.add_argument("--loop", action="store_true", help="with --replay: start again at the end of the file")
    parser.add_argument("--max-tweets", type=cli.whole_number(1), metavar="N",
                        help="stop after N tweets, once Kafka has acknowledged them")
    parser.add_argument("--duration", type=cli.seconds_type, metavar="SECONDS",
                        help="stop after this many seconds, once Kafka has acknowledged every tweet "
                        "(live: checked as lines arrive, at least every 20 s)")
    parser.add_argument("--tweet-fields", default=DEFAULT_TWEET_FIELDS, metavar="FIELDS",
                        help=f"tweet.fields X should send (default {DEFAULT_TWEET_FIELDS})")
    parser.add_argument("--expansions", default=DEFAULT_EXPANSIONS, metavar="FIELDS",
                        help=f"expansions X should send (default {DEFAULT_EXPANSIONS})")
    parser.add_argument("--user-fields", default=DEFAULT_USER_FIELDS, metavar="FIELDS",
                        help=f"user.fields of the expanded users (default {DEFAULT_USER_FIELDS})")
    parser.add_argument("--compression", choices=("gzip", "snappy", "lz4", "zstd"), metavar="CODEC",
                        help="compress each batch: gzip, snappy, lz4 or zstd (default: none); "
                        "every consumer of the topic needs the codec too")
    parser.add_argument("--stall-timeout", type=cli.seconds_type, default=STALL_TIMEOUT_S, metavar="SECONDS",
                        help=f"reconnect when neither a tweet nor a keep-alive came for this long "
                        f"(default {STALL_TIMEOUT_S}; X sends a keep-alive every 20 s)")
    config.add_common_arguments(
        parser, topic_help=f"env TWITTER_TOPIC, default {config.DEFAULT_TWEETS_TOPIC!r}")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.replay is None and (args.rate or args.loop):
        parser.error("--rate and --loop go with --replay")
    if args.keep_rules and not args.filter:
        parser.error("--keep-rules goes with --filter")
    return args


if __name__ == "__main__":
    sys.exit(main())

"""twitter-stream.py: pure helpers, the CLI, and the whole path from a (fake, but real HTTP)
X API through the script into the real broker.

The fake X API (testkit/fake_x_api.py) is a local HTTP server reached through TWITTER_API_URL.
Tests that reconnect call main() in-process with a recording ``sleep``, so a 60 s backoff is
asserted, not waited for.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import example, given, strategies as st
from kafka.errors import KafkaTimeoutError, KafkaConnectionError
from kafka.future import Future

import cli

import config
import kafkatools
from scripts import load_script
from testkit.fake_x_api import (OPERATIONAL_DISCONNECT, Drop, FakeXApi, Hold, KeepAlive, Raw, Stall,
                                Status, Tweets, Unchunked)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "twitter-stream.py"
SAMPLE_FILE = ROOT / "data" / "sample-stream.jsonl"
TOKEN = "AAAAAAAAAAAAAAAAAAAAAtest-bearer-token-never-printed"
DEEP = b"[" * 100_000 + b"]" * 100_000  # nested deeper than any Python (3.10-3.13) will parse


ts = load_script("twitter-stream.py", "twitter_stream")


class RecordingSleep:
    """Stands in for time.sleep: records each delay, waits for none of them."""

    def __init__(self, limit: int = 20) -> None:
        self.delays: list[float] = []
        self.limit = limit

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if len(self.delays) > self.limit:  # a reconnect loop gone wrong must not spin for ever
            raise AssertionError(f"too many reconnects: {self.delays}")


class FakeClock:
    """A clock that moves only when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def api():
    with FakeXApi(token=TOKEN) as server:
        yield server


@pytest.fixture
def live_env(monkeypatch, api, bootstrap_servers, topic):
    """The environment of a user with a token, pointed at the fake X API and the test broker."""
    monkeypatch.setenv("TWITTER_API_URL", api.url)
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", TOKEN)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers)
    monkeypatch.setenv("TWITTER_TOPIC", topic)  # where twitter-stream.py publishes by default
    return dict(os.environ)


def tweet_id(line: bytes) -> bytes:
    return json.loads(line)["data"]["id"].encode()


def assert_published(records, lines: list[bytes], source: str) -> None:
    """The topic holds exactly these tweets, once each, in order, keyed and labelled."""
    assert [record.value for record in records] == lines
    assert [record.key for record in records] == [tweet_id(line) for line in lines]
    for record in records:
        headers = dict(record.headers)
        assert headers["source"] == source.encode()
        received_at = headers["received_at"].decode()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", received_at), received_at
        moment = datetime.fromisoformat(received_at.replace("Z", "+00:00"))  # 3.10 takes no "Z"
        assert abs(moment - datetime.now(timezone.utc)).total_seconds() < 600


# --- pure helpers -------------------------------------------------------------------------

@pytest.mark.parametrize("line, kind", [
    (b"", ts.KEEP_ALIVE),
    (b"\r", ts.KEEP_ALIVE),
    (b'{"data":{"id":"42","text":"hi"},"includes":{"users":[]}}', ts.TWEET),
    (b'{"includes":{},"data":{"text":"hi","id":"42"},"errors":[{"title":"Not Found Error"}]}', ts.TWEET),
    (OPERATIONAL_DISCONNECT, ts.ERRORS),
    (b'{"matching_rules":[]}', ts.OTHER),
    (b'{"data":{"id":"42","text":"cut', ts.MALFORMED),
    (b"\x00\xff garbage", ts.MALFORMED),
    (b"[1, 2]", ts.MALFORMED),
    (b'{"data":{"text":"no id"}}', ts.MALFORMED),
    (b'{"data":"nope"}', ts.MALFORMED),
    (DEEP, ts.MALFORMED),  # was a RecursionError traceback
    (b'{"data":{"id":"1","x":' + DEEP + b"}}", ts.MALFORMED),
    ('{"data":{"id":"١٢"}}'.encode(), ts.MALFORMED),  # digits, but not ASCII ones: no tweet id
    (ts.TOO_LONG, ts.MALFORMED),
])
def test_parse_line_classifies_every_kind_of_line(line, kind):
    parsed = ts.parse_line(line)
    assert parsed.kind == kind
    assert parsed.tweet_id == ("42" if kind == ts.TWEET else None)


def test_only_an_operational_disconnect_ends_the_connection():
    assert ts.is_disconnect(ts.parse_line(OPERATIONAL_DISCONNECT).detail)
    assert not ts.is_disconnect([{"title": "Not Found Error", "detail": "gone"}])
    assert ts.describe_errors([{"title": "Not Found Error", "detail": "gone"}]) == "Not Found Error: gone"


def test_backoff_schedule_is_the_one_x_asks_for():
    delays = {kind: [ts.backoff_delay(kind, attempt) for attempt in range(1, 10)]
              for kind in (ts.CLEAN, ts.NETWORK, ts.HTTP, ts.RATE_LIMITED)}
    # After a clean close, at once; clean closes in a row then back off like network errors.
    assert delays[ts.CLEAN] == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert delays[ts.NETWORK] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25]
    assert ts.backoff_delay(ts.NETWORK, 64) == 16 == ts.backoff_delay(ts.NETWORK, 1000)
    assert delays[ts.HTTP] == [5, 10, 20, 40, 80, 160, 320, 320, 320]
    assert delays[ts.RATE_LIMITED] == [60, 120, 240, 480, 960, 960, 960, 960, 960]
    assert ts.backoff_delay(ts.HTTP, 10**6) == 320 and ts.backoff_delay(ts.RATE_LIMITED, 10**6) == 960


def test_build_rules_adds_only_missing_rules_tagged_as_ours():
    active = [{"id": "1", "value": "cats"}]
    assert ts.build_rules(["cats", "dogs lang:en", "dogs lang:en"], active) == [
        {"value": "dogs lang:en", "tag": ts.RULE_TAG}]
    assert ts.build_rules(["cats"], active) == []


def test_stream_path_and_params():
    assert ts.stream_path(False) == "/2/tweets/sample/stream"
    assert ts.stream_path(True) == "/2/tweets/search/stream"
    assert ts.stream_params("created_at", "author_id", "") == {"tweet.fields": "created_at",
                                                               "expansions": "author_id"}


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at these offsets (taken modulo its length), as a network would."""
    points = sorted({0, len(data), *(point % (len(data) + 1) for point in cuts)})
    return [data[start:end] for start, end in zip(points, points[1:])]


@given(lines=st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b and not b.endswith(b"\r")),
                      max_size=20),
       cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_split_lines_rejoins_lines_split_anywhere_across_chunks(lines, cuts):
    """The live path reads whatever has arrived: split_lines() cuts the wire format into lines
    whatever the chunk boundaries, a "\\r\\n" split in two included."""
    data = b"".join(line + b"\r\n" for line in lines)
    assert list(ts.split_lines(cut(data, cuts))) == lines
    assert all(ts.parse_line(line).kind == ts.KEEP_ALIVE for line in lines if not line.strip())


@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30),
       limit=st.integers(min_value=1, max_value=50))
def test_split_lines_of_any_bytes_cut_anywhere_is_the_same_and_bounded(data, cuts, limit):
    """Any bytes, cut anywhere: the lines of the whole, no line longer than the limit (counting
    its "\\r") kept, one TOO_LONG for each that is, and nothing raised."""
    *ended, last = data.split(b"\n")
    expected = [ts.TOO_LONG if len(line) > limit else line.removesuffix(b"\r")
                for line in ended + ([last] if last else [])]
    got = list(ts.split_lines(cut(data, cuts), limit))
    assert [None if line is ts.TOO_LONG else line for line in got] == [
        None if line is ts.TOO_LONG else line for line in expected]
    # On a stream, a last line without its end was cut off: it is not published.
    complete = list(ts.split_lines(cut(data, cuts), limit, last=False))
    assert complete == got[:len(ended)] + (got[len(ended):] if len(ended) < len(got) and len(last) > limit
                                           else [])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["data", "id", "errors", "includes", "title", "detail", "details", "value",
                         "disconnect_type", "x"]) | st.text(max_size=5), children, max_size=4),
    max_leaves=20)


@given(value=json_values, depth=st.integers(min_value=0, max_value=3000))
def test_parse_line_takes_any_json_however_deep_without_raising(value, depth):
    for line in (json.dumps(value).encode(), b"[" * depth + json.dumps(value).encode() + b"]" * depth,
                 json.dumps({"data": value}).encode(), json.dumps({"errors": value}).encode()):
        parsed = ts.parse_line(line)
        assert parsed.kind in (ts.KEEP_ALIVE, ts.TWEET, ts.ERRORS, ts.OTHER, ts.MALFORMED)
        if parsed.kind == ts.TWEET:
            assert parsed.tweet_id.isascii() and parsed.tweet_id.isdigit()
        if parsed.kind == ts.ERRORS:
            described = ts.describe_errors(parsed.detail)
            assert isinstance(described, str) and described.isprintable()
            ts.is_disconnect(parsed.detail)


def json_loads_or_error(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        return type(error), str(error)


@given(text=st.one_of(
    json_values.map(json.dumps), json_values.map(lambda value: json.dumps({"data": value})),
    st.tuples(json_values.map(lambda value: json.dumps({"x": value})), st.text(max_size=5), st.text(max_size=5))
    .map(lambda parts: parts[1] + parts[0] + parts[2]),  # "{...}" with anything before or after
    st.tuples(json_values.map(lambda value: json.dumps({"x": value})), st.text(max_size=5))
    .map(lambda parts: parts[0] + parts[1] + "}"),  # an object, then more that ends in "}"
    st.text(max_size=30).map(lambda inner: "{" + inner + "}"), st.text(max_size=30)))
@example('{"a": }')  # the scanner raises StopIteration for a value missing inside the object
@example('{"a": 1} {"b": 2}')
def test_decode_json_is_json_loads(text):
    try:
        decoded = ts.decode_json(text)
    except (ValueError, RecursionError) as error:
        decoded = type(error), str(error)
    assert decoded == json_loads_or_error(text)  # the same value, or the same error


@given(data=st.binary(max_size=200))
def test_parse_line_takes_any_bytes_without_raising(data):
    assert ts.parse_line(data).kind in (ts.KEEP_ALIVE, ts.TWEET, ts.ERRORS, ts.OTHER, ts.MALFORMED)


class FakeRun:
    """What wait_for_room() looks at: run.stopping."""

    def __init__(self) -> None:
        self.signal = None

    @property
    def stopping(self) -> bool:
        return self.signal is not None


def test_backpressure_waits_while_too_many_tweets_await_kafka_and_ends_on_a_signal():
    deliveries, run = cli.Deliveries(), FakeRun()
    futures = [Future() for _ in range(3)]
    for future in futures:
        deliveries.track(future)
    waiter = threading.Thread(target=ts.wait_for_room, args=(deliveries, run), kwargs={"limit": 3})
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive(), "a fourth tweet was taken while three were unacknowledged"
    futures[0].success(None)
    waiter.join(10)
    assert not waiter.is_alive() and (deliveries.sent, deliveries.acked) == (3, 1)
    futures[1].failure(KafkaTimeoutError("Expiring 1 record(s)"))
    deliveries.track(Future())
    deliveries.track(Future())
    waiter = threading.Thread(target=ts.wait_for_room, args=(deliveries, run), kwargs={"limit": 3})
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()
    run.signal = signal.SIGINT  # a signal only sets a flag: the bounded wait notices it
    waiter.join(10)
    assert not waiter.is_alive()



def test_a_replay_file_that_goes_away_mid_loop_is_one_line(tmp_path):
    replay = tmp_path / "one.jsonl"
    replay.write_bytes(b'{"data":{"id":"7"}}\r\n')
    lines = ts.replay_file(replay, loop=True, run=FakeRun())
    assert next(lines)[0] == ts.Parsed(ts.TWEET, "7")
    replay.unlink()
    with pytest.raises(cli.Failure, match=f"cannot read {replay}: No such file or directory"):
        next(lines)

def test_a_delivery_failure_other_than_too_large_stops_reading():
    report = ts.Report()
    too_large, expired = Future(), Future()
    report.deliveries.track(too_large)
    report.deliveries.track(expired)
    too_large.failure(ts.MessageSizeTooLargeError("too large"))
    assert report.kafka_error is None  # one tweet too large: carry on
    expired.failure(KafkaTimeoutError("Expiring 1 record(s)"))
    assert isinstance(report.kafka_error, KafkaTimeoutError) and report.deliveries.failed == 2


def test_status_line_is_redrawn_on_a_terminal_and_logged_otherwise():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    report = ts.Report()
    report.deliveries.sent, report.deliveries.acked = 5, 4
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        status = ts.StatusLine(report, started=0.0, stream=stream)
        status.tick(0.1)  # too soon
        status.tick(20.0)
    assert terminal.getvalue().startswith("\r\x1b[Kreceived 5, published 4, failed 0, skipped 0")
    assert "\n" not in terminal.getvalue()
    assert pipe.getvalue() == "received 5, published 4, failed 0, skipped 0, 0 tweets/s, reconnects 0\n"


def test_producer_tuning_is_what_main_passes_to_the_producer(monkeypatch, capsys):
    """bench/ reads PRODUCER_TUNING; main() spells the settings out at the producer's call."""
    calls = []

    def producer(**kwargs):
        calls.append(kwargs)
        raise KafkaConnectionError("no broker")

    monkeypatch.setattr(ts, "KafkaProducer", producer)
    assert ts.main(["--replay"]) == cli.EXIT_ERROR
    assert calls[0].items() >= {**ts.PRODUCER_TUNING, "acks": "all", "enable_idempotence": True}.items()
    assert capsys.readouterr().err == "twitter-stream.py: error: KafkaConnectionError: no broker\n"


# --- the command line -----------------------------------------------------------------------

def test_help_runs_as_a_script():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--replay" in result.stdout and "TWITTER_BEARER_TOKEN" in result.stdout
    assert "token" not in " ".join(a for a in result.stdout.split() if a.startswith("--"))


def test_missing_token_is_one_line_saying_how_to_set_it(monkeypatch, capsys):
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", "")  # wins over a developer's own .env
    assert ts.main([]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TWITTER_BEARER_TOKEN=" in err and ".env" in err
    assert err.startswith("twitter-stream.py: error: TWITTER_BEARER_TOKEN is not set")


def test_a_missing_replay_file_is_one_line_and_exit_2(capsys):
    assert ts.main(["--replay", "no/such/file.jsonl"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "twitter-stream.py: error: no such file to replay: no/such/file.jsonl\n"


def test_a_replay_directory_is_named_as_one(tmp_path, capsys):
    assert ts.main(["--replay", str(tmp_path)]) == cli.EXIT_USAGE  # said "no such file to replay"
    assert capsys.readouterr().err == (f"twitter-stream.py: error: {tmp_path} is a directory: --replay "
                                       f"takes a file (a recorded stream, one JSON object per line)\n")


def test_a_bad_topic_name_is_a_usage_error(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ts.main(["--replay", "--topic", "bad topic!"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "--topic='bad topic!' is not a valid topic name" in capsys.readouterr().err
    monkeypatch.setenv("KAFKA_TOPIC", "bad topic!")
    assert ts.main(["--replay"]) == cli.EXIT_USAGE
    assert "KAFKA_TOPIC='bad topic!' is not a valid topic name" in capsys.readouterr().err


def test_options_that_need_another_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ts.main(["--loop"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "--rate and --loop go with --replay" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--rate", "1e-11"], "argument --rate: must be at least"),  # was an OverflowError traceback
    (["--rate", "nan"], "argument --rate: must be a number above 0, not nan"),  # was accepted
    (["--rate", "inf"], "argument --rate: must be a number above 0, not inf"),
    (["--duration", "nan"], "argument --duration: must be a number above 0, not nan"),
    (["--duration", "1e300"], "argument --duration: must be at most"),
    (["--stall-timeout", "nan"], "argument --stall-timeout: must be a number above 0, not nan"),
    (["--max-tweets", "0"], "argument --max-tweets: must be a whole number of 1 or more, not 0"),
    (["--max-tweets", "١٢"], "argument --max-tweets: must be a whole number of 1 or more, not ١٢"),
])
def test_numbers_out_of_range_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ts.main(["--replay", *argv])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_unreachable_broker_is_one_line_naming_it(monkeypatch, capsys, caplog):
    monkeypatch.setattr(ts.config, "BOOTSTRAP_TIMEOUT_MS", 500)
    assert ts.main(["--replay", "--bootstrap-server", "127.0.0.1:1"]) == cli.EXIT_ERROR
    assert capsys.readouterr().err == (
        "twitter-stream.py: error: cannot reach Kafka at 127.0.0.1:1 (KafkaTimeoutError: Unable to "
        "bootstrap from ['127.0.0.1:1']); is Kafka running? start one with: make kafka\n")
    assert [record for record in caplog.records if record.name.startswith("kafka")] == []


def test_ctrl_c_while_connecting_to_kafka_exits_130_even_if_kafka_then_fails(monkeypatch, capsys):
    def producer(**kwargs):  # Ctrl-C arrives while the producer waits for Kafka, which then fails
        os.kill(os.getpid(), signal.SIGINT)
        raise KafkaConnectionError("no broker")

    monkeypatch.setattr(ts, "KafkaProducer", producer)
    assert ts.main(["--replay"]) == 130  # was 1
    err = capsys.readouterr().err
    assert "SIGINT: stopping once Kafka answers" in err and "Traceback" not in err

# --- replay into the real broker -------------------------------------------------------------

def test_shipped_file_is_what_the_generator_makes():
    generator = load_script("data/make_sample_tweets.py", "make_sample_tweets")
    assert b"".join(line + b"\r\n" for line in generator.stream_lines()) == SAMPLE_FILE.read_bytes()


def test_replay_of_the_shipped_file_lands_exactly_its_valid_tweets(bootstrap_servers, topic, capsys, caplog):
    lines = SAMPLE_FILE.read_bytes().split(b"\r\n")
    tweets = [line for line in lines if ts.parse_line(line).kind == ts.TWEET]
    assert len(tweets) == 300 and lines.count(b"") > 10  # keep-alives, and the last line's end
    assert ts.main(["--replay", "--bootstrap-server", bootstrap_servers, "--topic", topic]) == cli.EXIT_OK
    assert_published(kafkatools.read_all(bootstrap_servers, topic, len(tweets)), tweets, "replay")
    assert "published 300 of 300 tweets" in capsys.readouterr().err
    assert "skipped a malformed line" in caplog.text and "operational-disconnect" in caplog.text


def test_replay_rate_and_loop(tmp_path, bootstrap_servers, topic, capsys, caplog):
    tweets = [json.dumps({"data": {"id": str(n), "text": f"t{n}"}}).encode() for n in (11, 12, 13)]
    replay = tmp_path / "three.jsonl"
    replay.write_bytes(b"\r\n".join([tweets[0], b"", tweets[1], b"{oops", tweets[2]]) + b"\r\n")
    clock = FakeClock()
    argv = ["--replay", str(replay), "--loop", "--rate", "100", "--max-tweets", "7",
            "--bootstrap-server", bootstrap_servers, "--topic", topic]
    assert ts.main(argv, sleep=clock.sleep, clock=clock) == cli.EXIT_OK
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 7), (tweets * 3)[:7], "replay")
    assert clock.slept == pytest.approx([0.01] * 6)  # the 7th tweet is the last: no wait after it
    # Two passes reach "{oops" (the third stops at 11): both count, only the first warns.
    assert caplog.text.count("skipped a malformed line") == 1
    assert "skipped 2," in capsys.readouterr().err


def test_duration_stops_a_looping_replay_once_all_is_acknowledged(tmp_path, bootstrap_servers, topic, capsys):
    replay = tmp_path / "one.jsonl"
    replay.write_bytes(b'{"data":{"id":"7","text":"again"}}\r\n')
    clock = FakeClock()
    argv = ["--replay", str(replay), "--loop", "--rate", "100", "--duration", "0.5",
            "--bootstrap-server", bootstrap_servers, "--topic", topic]
    assert ts.main(argv, sleep=clock.sleep, clock=clock) == cli.EXIT_OK
    assert sum(clock.slept) == pytest.approx(0.5)
    records = kafkatools.read_all(bootstrap_servers, topic, 50)
    assert len(records) == 50 and f"published 50 of 50 tweets to '{topic}'" in capsys.readouterr().err


def big_tweet(tweet_id: int, size: int) -> bytes:
    return json.dumps({"data": {"id": str(tweet_id), "text": "x" * size}}).encode()


def test_replay_skips_deep_and_oversized_lines_and_carries_on(tmp_path, bootstrap_servers, topic, capsys, caplog):
    tweets = [json.dumps({"data": {"id": str(n), "text": f"t{n}"}}).encode() for n in (1, 2, 3, 4)]
    replay = tmp_path / "hostile.jsonl"
    # Deep nesting was a RecursionError traceback; a 5 MB line, or a 1.2 MB tweet (more than the
    # producer's 1 MiB max_request_size), ended the whole run with exit 1.
    replay.write_bytes(b"\r\n".join([tweets[0], DEEP, tweets[1], big_tweet(5, 5_000_000), tweets[2],
                                      big_tweet(6, 1_200_000), tweets[3]]) + b"\r\n")
    argv = ["--replay", str(replay), "--bootstrap-server", bootstrap_servers, "--topic", topic]
    assert ts.main(argv) == cli.EXIT_OK
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 4), tweets, "replay")
    err = capsys.readouterr().err
    assert f"published 4 of 4 tweets to '{topic}'" in err and "skipped 3 (2 too large), reconnects 0)" in err
    assert "Traceback" not in err
    assert "skipped a malformed line (not JSON: maximum recursion depth" in caplog.text
    assert "skipped a line longer than 2,097,152 bytes" in caplog.text
    assert "skipped tweet 6: 1,200,0" in caplog.text


def test_a_signal_mid_replay_counts_every_tweet_it_sent(tmp_path, bootstrap_servers, topic, capsys):
    """The summary said "published 33412 of 33412" while the topic held 33413: a Ctrl-C landed
    between send() and the line that counted it."""
    def interrupt_when_busy():
        kafkatools.wait_for(lambda: kafkatools.end_offset(bootstrap_servers, topic) >= 2000, 60)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_when_busy, daemon=True)
    interrupter.start()
    argv = ["--replay", "--loop", "--max-tweets", "1000000", "--bootstrap-server", bootstrap_servers,
            "--topic", topic]
    assert ts.main(argv) == 130
    interrupter.join(10)
    err = capsys.readouterr().err
    published, sent = map(int, re.search(r"published (\d+) of (\d+) tweets", err).groups())
    assert "SIGINT: stopped reading, waiting for Kafka" in err and "may or may not" not in err
    assert published == sent == len(kafkatools.read_all(bootstrap_servers, topic, sent)) >= 2000


def test_a_signal_while_kafka_holds_back_ends_the_wait_and_reports(tmp_path, monkeypatch, capsys):
    """The old code raised from the signal handler inside BoundedSemaphore.acquire() and hung."""
    class HeldProducer:  # takes tweets, never answers
        def __init__(self, **kwargs):
            self.sent = self.flushes = 0

        def send(self, topic, key, value, headers):
            self.sent += 1
            return Future()

        def flush(self, timeout=None):
            self.flushes += 1
            time.sleep(timeout or 0)

        def close(self, timeout=None):
            pass

    producers = []
    monkeypatch.setattr(ts, "KafkaProducer", lambda **kwargs: producers.append(HeldProducer()) or producers[-1])
    monkeypatch.setattr(ts, "MAX_IN_FLIGHT", 3)

    def interrupt_twice():  # once while it waits for room, once while it waits for Kafka's answers
        kafkatools.wait_for(lambda: producers and producers[0].sent == 3, 30)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)
        kafkatools.wait_for(lambda: producers[0].flushes > 0, 30)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_twice, daemon=True)
    interrupter.start()
    started = time.monotonic()
    assert ts.main(["--replay", "--loop"]) == 130
    assert time.monotonic() - started < 8
    interrupter.join(10)
    err = capsys.readouterr().err
    assert producers[0].sent == 3
    assert "waiting up to 10 s for Kafka to acknowledge 3 record(s)" in err
    assert ("published 0 of 3 tweets to 'tweets'" in err
            and "; 3 not acknowledged: may or may not be in the topic\n" in err)


# --- live, against the fake X API and the real broker ------------------------------------------

def test_live_stream_publishes_every_tweet_once_in_order(api, live_env, bootstrap_servers, topic, capsys):
    first, second = api.tweets(30), api.tweets(30)
    api.expect([KeepAlive(), Tweets(first[:10]), KeepAlive(2), Tweets(first[10:])], [Tweets(second), Hold()])
    sleep = RecordingSleep()
    assert ts.main(["--max-tweets", "60"], sleep=sleep) == cli.EXIT_OK
    assert api.split_lines > 0 and api.split_crlf > 0  # lines and "\r\n"s were cut across chunks
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 60), first + second, "sample")
    assert api.sent == first + second
    assert sleep.delays == [0]  # X closed the first connection cleanly: reconnect at once
    request = api.stream_requests()[0]
    assert request.path == "/2/tweets/sample/stream"
    assert request.query == {"tweet.fields": "created_at,lang,author_id", "expansions": "author_id",
                             "user.fields": "name,username"}
    assert request.headers["User-Agent"].startswith("kafka-python-tutorial")
    assert "published 60 of 60 tweets" in capsys.readouterr().err


def test_every_fault_gets_the_reconnect_delay_x_asks_for(api, live_env, bootstrap_servers, topic, capsys, caplog):
    tweets = api.tweets(10)
    api.expect(
        [Status(503)],
        [Status(503)],
        [Status(429)],
        [Tweets(tweets[:3]), Drop(tweets[3][:40])],
        [KeepAlive(), Stall(10)],
        [Tweets(tweets[3:5]), Raw(b"\x00\xff garbage {\r\n"), Tweets(tweets[5:6]),
         Raw(b'{"errors":[{"title":"Not Found Error","detail":"a quoted tweet is gone"}]}\r\n'),
         Raw(OPERATIONAL_DISCONNECT + b"\r\n"), Hold()],
        [Tweets(tweets[6:]), Hold()],
    )
    sleep = RecordingSleep()
    assert ts.main(["--max-tweets", "10", "--stall-timeout", "0.5"], sleep=sleep) == cli.EXIT_OK
    # HTTP 5xx: 5 s doubling; 429: from 60 s; after tweets flowed again the schedule restarts:
    # a dropped connection and a stall are network errors (0.25 s steps); after the operational
    # disconnect (which followed tweets) X is asked again at once.
    assert sleep.delays == [5, 10, 60, 0.25, 0.5, 0]
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 10), tweets, "sample")
    assert api.sent == tweets
    err = capsys.readouterr().err
    assert "published 10 of 10 tweets" in err and "skipped 3, reconnects 6" in err
    for reason in ("HTTP 503", "HTTP 429 (ConnectionException", "connection broke", "stalled",
                   "skipped a malformed line", "Not Found Error: a quoted tweet is gone", "operational disconnect"):
        assert reason in caplog.text


@pytest.mark.parametrize("status, token, message", [
    (401, "wrong-token-also-secret", "X rejected the bearer token (HTTP 401): check TWITTER_BEARER_TOKEN"),
    (403, TOKEN, "X refused the sampled stream (HTTP 403): it needs an Enterprise plan"),
])
def test_401_and_403_exit_at_once_with_their_likely_cause(status, token, message, api, live_env, monkeypatch,
                                                          capsys, caplog):
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", token)
    api.expect([Status(status)])
    sleep = RecordingSleep()
    started = time.monotonic()
    assert ts.main([], sleep=sleep) == cli.EXIT_ERROR
    assert time.monotonic() - started < 10 and sleep.delays == []
    out, err = capsys.readouterr()
    assert err.startswith(f"twitter-stream.py: error: {message}") and err.count("\n") == 1
    assert ("X says: Unauthorized\n" if status == 401 else "--filter RULE") in err
    assert token not in out + err + caplog.text


@pytest.mark.parametrize("keep_rules", [False, True])
def test_filter_adds_missing_rules_and_removes_only_its_own(keep_rules, api, live_env, bootstrap_servers, topic):
    others = api.add_rule("cats")  # a rule someone else made: used, never removed
    tweets = api.tweets(3)
    api.expect([Tweets(tweets), Hold()])
    argv = ["--filter", "cats", "--filter", "dogs lang:en", "--max-tweets", "3"]
    assert ts.main(argv + (["--keep-rules"] if keep_rules else []), sleep=RecordingSleep()) == cli.EXIT_OK
    posts = [json.loads(request.body) for request in api.requests if request.method == "POST"]
    assert posts[0] == {"add": [{"value": "dogs lang:en", "tag": ts.RULE_TAG}]}
    assert api.stream_requests()[0].path == "/2/tweets/search/stream"
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 3), tweets, "filter")
    assert sorted(rule["value"] for rule in api.rules.values()) == (["cats", "dogs lang:en"] if keep_rules
                                                                     else ["cats"])
    assert others in api.rules


def test_a_rule_x_rejects_is_a_usage_error(api, live_env, capsys):
    assert ts.main(["--filter", "(cats"], sleep=RecordingSleep()) == cli.EXIT_USAGE
    assert capsys.readouterr().err == ("twitter-stream.py: error: X did not accept the filter rules: "
                                       "UnprocessableEntity: Unbalanced parentheses (at position 1): "
                                       "rule '(cats'\n")
    assert api.stream_requests() == [] and api.rules == {}


def test_hostile_lines_on_the_stream_are_skipped_and_it_reads_on(api, live_env, bootstrap_servers, topic, capsys,
                                                                 caplog):
    tweets = api.tweets(6)
    api.expect([Tweets(tweets[:2]), Raw(DEEP + b"\r\n"), Tweets(tweets[2:4]),
                Raw(big_tweet(7, 5_000_000) + b"\r\n"), Raw(big_tweet(8, 1_200_000) + b"\r\n"),
                Tweets(tweets[4:]), Hold()])
    sleep = RecordingSleep()
    assert ts.main(["--max-tweets", "6"], sleep=sleep) == cli.EXIT_OK
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 6), tweets, "sample")
    assert sleep.delays == []
    err = capsys.readouterr().err
    assert "published 6 of 6 tweets" in err and "skipped 3 (2 too large), reconnects 0)" in err
    assert "recursion depth" in caplog.text and "longer than 2,097,152 bytes" in caplog.text


def test_a_complete_line_is_published_at_once_whatever_the_framing(api, live_env, bootstrap_servers, topic):
    """Not chunk-encoded, a tweet followed by a pause waited for 512 bytes more, then counted as
    a stall."""
    first, second = api.tweets(2)
    api.expect([Unchunked(first + b"\r\n", length=len(first) + 1000, hold=30)],  # more promised
               [Unchunked(second + b"\r\n", length=None, hold=30)])  # a body that ends at close
    for tweet in (first, second):
        sleep = RecordingSleep()
        started = time.monotonic()
        assert ts.main(["--max-tweets", "1", "--stall-timeout", "10"], sleep=sleep) == cli.EXIT_OK
        assert time.monotonic() - started < 5 and sleep.delays == []
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 2), [first, second], "sample")


def test_a_body_that_cannot_be_decoded_is_a_reason_to_reconnect(api, live_env, bootstrap_servers, topic, caplog,
                                                                capsys):
    tweets = api.tweets(3)
    garbage = b"\x1f\x8b\x08\x00 this is not gzip at all " * 20
    api.expect([Unchunked(garbage, length=len(garbage), headers={"Content-Encoding": "gzip"})],
               [Unchunked(gzip.compress(b"".join(tweet + b"\r\n" for tweet in tweets[:2])),
                          headers={"Content-Encoding": "gzip"})],  # gzip that is gzip works
               [Tweets(tweets[2:]), Hold()])
    sleep = RecordingSleep()
    assert ts.main(["--max-tweets", "3"], sleep=sleep) == cli.EXIT_OK  # was a ContentDecodingError traceback
    assert sleep.delays == [0.25, 0]  # network schedule; then a clean close after tweets
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 3), tweets, "sample")
    assert "the connection broke (DecodeError" in caplog.text and "Traceback" not in capsys.readouterr().err


def test_clean_closes_in_a_row_back_off(api, live_env, bootstrap_servers, topic):
    """A stream that closed cleanly after each tweet was reconnected ~21 times a second."""
    tweets = api.tweets(8)
    api.expect(*[[Tweets([tweet])] for tweet in tweets[:5]], [Tweets(tweets[5:]), Hold()])
    sleep = RecordingSleep()
    assert ts.main(["--max-tweets", "8"], sleep=sleep) == cli.EXIT_OK
    assert sleep.delays == [0, 0.25, 0.5, 0.75, 1.0]
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 8), tweets, "sample")


def test_an_error_body_that_echoes_the_token_never_shows_it(api, live_env, capsys, caplog):
    echo = {"title": "Unauthorized", "detail": f"Authorization: Bearer {TOKEN} is not valid"}
    api.expect([Status(503, echo)], [Status(401, echo)])
    sleep = RecordingSleep()
    assert ts.main([], sleep=sleep) == cli.EXIT_ERROR
    assert sleep.delays == [5]
    out, err = capsys.readouterr()
    summary, error = err.splitlines(keepends=True)
    assert summary.startswith("published 0 of 0 tweets") and summary.endswith("reconnects 1)\n")
    assert error == ("twitter-stream.py: error: X rejected the bearer token (HTTP 401): check TWITTER_BEARER_TOKEN "
                   "in .env; it must be your app's Bearer Token. X says: Unauthorized: Authorization: Bearer "
                   "******** is not valid\n")
    assert TOKEN not in out + err + caplog.text and "Bearer ******** is not valid" in caplog.text


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_reading_flushes_and_reports(signum, exit_code, api, live_env, bootstrap_servers, topic,
                                                    tmp_path):
    tweets = api.tweets(5)
    api.expect([Tweets(tweets), Hold()])
    out_file, err_file = tmp_path / "stdout", tmp_path / "stderr"  # files: a full pipe would block DEBUG logging
    # DEBUG: everything the script, requests, urllib3 and kafka-python log must still hide the token.
    with out_file.open("w") as out, err_file.open("w") as err:
        process = subprocess.Popen([sys.executable, str(SCRIPT), "--log-level", "DEBUG"], env=live_env,
                                   stdout=out, stderr=err)
        try:
            assert len(kafkatools.read_all(bootstrap_servers, topic, 5)) == 5
            process.send_signal(signum)
            process.wait(timeout=60)
        finally:
            process.kill()
    out, err = out_file.read_text(), err_file.read_text()
    assert process.returncode == exit_code, err[-2000:]
    assert "stopped reading, waiting for Kafka" in err and "published 5 of 5 tweets" in err
    assert "Traceback" not in err and "connected to" in err
    assert TOKEN not in out + err
    assert_published(kafkatools.read_all(bootstrap_servers, topic, 5), tweets, "sample")


def test_tweets_go_to_a_topic_of_their_own_by_default(monkeypatch):
    monkeypatch.delenv("TWITTER_TOPIC", raising=False)
    assert config.load({}, env_file=None).tweets_topic == "tweets"
    assert config.load({"TWITTER_TOPIC": "x-stream"}, env_file=None).tweets_topic == "x-stream"
    with pytest.raises(config.ConfigError, match="TWITTER_TOPIC"):
        config.load({"TWITTER_TOPIC": "no/slash"}, env_file=None)

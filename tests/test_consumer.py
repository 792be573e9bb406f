"""consumer.py: how records are shown, the command line, and real reads from the test broker."""

from __future__ import annotations

import base64
import io
import json
import re
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, strategies as st
from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord

import cli
import consumer
import kafkatools
import producer
from scripts import ROOT, start_script, script_env

DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads() raises RecursionError on it (3.10-3.13)
TEXT_LINE = re.compile(r"partition=(\d+) offset=(\d+) key=(.*) timestamp=(\S+) value=(.*)")
TWEET = {"data": {"id": "1", "text": "hello\nworld", "author_id": "42"},
         "includes": {"users": [{"id": "42", "username": "ada", "name": "Ada"}]}}


def record(key=b"k", value=b"v", headers=(), offset=7, timestamp=1795640463123) -> ConsumerRecord:
    return ConsumerRecord("sample", 2, 0, offset, timestamp, 0, key, value, list(headers),
                          None, -1, -1, -1)


def run_main(capsys, *args: str) -> tuple[int, list[str], str]:
    status = consumer.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def send(bootstrap_servers: str, topic: str, *records: dict) -> None:
    """Write with a bare kafka-python producer: consumer.py must read any client's records."""
    client = KafkaProducer(bootstrap_servers=bootstrap_servers)
    try:
        for fields in records:
            client.send(topic, **fields).get(timeout=30)
    finally:
        client.close()


def committed(bootstrap_servers: str, group: str) -> dict[TopicPartition, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return {tp: meta.offset for tp, meta in admin.list_group_offsets(group)[group].items()}
    finally:
        admin.close()


# --- how a record is shown --------------------------------------------------------------

def test_text_line_shows_partition_offset_key_timestamp_value():
    line = consumer.text_line(record(key=b"alice", value=b'{"type": "payment", "amount": 5}'))
    assert line == ('partition=2 offset=7 key=alice timestamp=2026-11-25T21:01:03.123Z '
                    'value={"type": "payment", "amount": 5}')


@pytest.mark.parametrize("value, shown", [
    (json.dumps(TWEET).encode(), "@ada: hello\\nworld"),
    (json.dumps({"data": {"text": "no users", "author_id": "7"}}).encode(), "7: no users"),
    (json.dumps({"data": {"id": "1"}}).encode(), '{"data": {"id": "1"}}'),
    # A consumer shows what is stored: JSON is not parsed and written again (only a tweet is).
    (b'{\n  "amount": 1.50,  "n": 1E2}', '{\\n  "amount": 1.50,  "n": 1E2}'),
    (b"12345678901234567890.0", "12345678901234567890.0"),
    (b"  42  ", "  42  "),
    (b"-0", "-0"),
    (b"1e400", "1e400"),
    (b'{"a": 1, "a": 2}', '{"a": 1, "a": 2}'),
    (b"[" * 1200 + b"]" * 1200, "[" * 1200 + "]" * 1200),  # not a tweet: shown as is, never parsed
    (b'{"data": ' + DEEP + b"}", '{"data": ' + DEEP.decode() + "}"),  # too deep for json.loads()
    ("naïve café ☕".encode(), "naïve café ☕"),
    (b"\xff\xfe\x00bin", "\\xff\\xfe\\x00bin"),
    (b"red \x1b[31malert\x1b[0m\r\n", "red \\x1b[31malert\\x1b[0m\\r\\n"),
    (b"", ""),
    (None, "null"),
])
def test_values_are_shown_safely_on_one_line(value, shown):
    assert consumer.show_value(value) == shown


def test_keys_and_missing_timestamps():
    assert cli.show_bytes(None) == "null"
    assert cli.show_bytes(b"sensor-1\t\xc3") == "sensor-1\\t\\xc3"
    assert consumer.format_timestamp(-1) == "null"
    assert consumer.format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert consumer.format_timestamp(2**50) == "1125899906842624"  # the year 37648: the number


def test_json_lines_are_like_kcat_and_mark_base64():
    [line] = consumer.json_lines([record(key=None, value=b"\xff\x00", headers=[("trace", b"abc"),
                                                                             ("raw", b"\x80")])])
    assert json.loads(line) == {
        "topic": "sample", "partition": 2, "offset": 7, "timestamp": 1795640463123,
        "key": None, "value": {"base64": "/wA="},
        "headers": [["trace", "abc"], ["raw", {"base64": "gA=="}]],
    }


@given(key=st.none() | st.binary(), value=st.none() | st.binary(),
       header=st.tuples(st.text(), st.binary()))
def test_any_bytes_print_on_one_line_and_json_keeps_them(key, value, header):
    line = consumer.text_line(record(key=key, value=value, headers=[header]))
    assert line.isprintable()  # no newline, no terminal escape: one safe line per record
    [line] = consumer.json_lines([record(key=key, value=value, headers=[header])])
    shown = json.loads(line)

    def original(data):
        return base64.b64decode(data["base64"]) if isinstance(data, dict) else (
            None if data is None else data.encode("utf-8"))
    assert (original(shown["key"]), original(shown["value"])) == (key, value)
    assert original(shown["headers"][0][1]) == header[1]


class OverEagerConsumer:
    """poll() hands over more records than asked for, which a real fetch may do too. Like
    kafka-python, it answers an async commit in a later poll(), newest answer first."""

    def __init__(self, batches, *, failing=(), answer_at=()):
        self.batches, self.commits, self.synced = list(batches), [], []
        self.failing = set(failing)  # which async commits (by number) fail
        self.answer_at = set(answer_at)  # which polls answer them (and any poll with nothing new)
        self.answers, self.polls = [], 0

    def poll(self, timeout_ms, max_records=None):
        self.polls += 1
        batch = self.batches.pop(0) if self.batches else {}
        while self.answers and (not batch or self.polls in self.answer_at):
            callback, offsets, number = self.answers.pop()
            callback(offsets, Exception("rebalancing") if number in self.failing else None)
        return batch

    def commit_async(self, offsets, callback):
        self.commits.append({tp.partition: meta.offset for tp, meta in offsets.items()})
        self.answers.append((callback, offsets, len(self.commits)))

    def commit(self, offsets, timeout_ms=None):
        self.synced.append({tp.partition: meta.offset for tp, meta in offsets.items()})


def offsets_only(records):
    return [str(record.offset) for record in records]


def test_max_messages_commits_exactly_after_the_last_printed_record():
    tp0, tp1 = TopicPartition("sample", 0), TopicPartition("sample", 1)
    batch = {tp0: [record(offset=o) for o in (10, 11, 12)],
             tp1: [record(offset=o) for o in (20, 21, 22)]}
    fake, out = OverEagerConsumer([batch]), io.StringIO()
    printed = consumer.consume(fake, offsets_only, out, cli.Run(consumer.PROG), max_messages=4)
    assert printed == 4 and out.getvalue().split() == ["10", "11", "12", "20"]
    assert fake.commits == [{0: 13, 1: 21}]  # the next offset to read, per partition
    assert fake.synced == [{0: 13, 1: 21}]  # not answered yet: the last commit waits for it


def test_the_last_commit_repeats_only_what_kafka_did_not_confirm():
    tp0, tp1 = TopicPartition("sample", 0), TopicPartition("sample", 1)
    # Commits 1 and 2 are answered in the same poll, newest first; commit 3 fails.
    fake = OverEagerConsumer([{tp0: [record(offset=0)], tp1: [record(offset=0)]},
                              {tp0: [record(offset=1)]}, {tp1: [record(offset=1)]}],
                             answer_at={3}, failing={3})
    printed = consumer.consume(fake, offsets_only, io.StringIO(), cli.Run(consumer.PROG),
                               timeout_ms=1)
    assert printed == 4 and fake.answers == []
    assert fake.commits == [{0: 1, 1: 1}, {0: 2}, {1: 2}]
    assert fake.synced == [{1: 2}]  # partition 0's offset 2 was confirmed: not again


def test_a_poll_asks_for_at_most_max_poll_records_then_for_what_is_left():
    asked = []

    class Recording(OverEagerConsumer):
        def poll(self, timeout_ms, max_records=None):
            asked.append(max_records)
            return super().poll(timeout_ms, max_records)

    tp0 = TopicPartition("sample", 0)
    whole = [record(offset=o) for o in range(consumer.MAX_POLL_RECORDS)]
    fake = Recording([{tp0: whole}, {tp0: [record(offset=consumer.MAX_POLL_RECORDS)]}])
    printed = consumer.consume(fake, offsets_only, io.StringIO(), cli.Run(consumer.PROG),
                               max_messages=consumer.MAX_POLL_RECORDS + 1)
    # Not all of --max-messages at once: one commit per poll must stay a small share of the work.
    assert (printed, asked) == (consumer.MAX_POLL_RECORDS + 1, [consumer.MAX_POLL_RECORDS, 1])
    assert fake.commits == [{0: consumer.MAX_POLL_RECORDS}, {0: consumer.MAX_POLL_RECORDS + 1}]
    assert fake.synced == [{0: consumer.MAX_POLL_RECORDS + 1}]


def test_without_a_group_to_keep_nothing_is_committed():
    fake = OverEagerConsumer([{TopicPartition("sample", 0): [record(offset=0)]}])
    consumer.consume(fake, offsets_only, io.StringIO(), cli.Run(consumer.PROG), max_messages=1, commit=False)
    assert fake.commits == fake.synced == []


def test_choose_group():
    assert consumer.choose_group(None, "tutorial", False) == ("tutorial", True)
    assert consumer.choose_group("mine", "tutorial", True) == ("mine", True)
    group, commit = consumer.choose_group(None, "tutorial", True)
    assert group.startswith("replay-") and commit is False
    assert consumer.choose_group(None, "tutorial", True)[0] != group


# --- command line -----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--format", "xml"], "invalid choice: 'xml'"),
    (["--max-messages", "0"], "--max-messages: must be a whole number of 1 or more, not 0"),
    (["--timeout-ms", "-5"], "--timeout-ms: must be a whole number of 1 or more, not -5"),
    (["--max-messages", "\u0661"], "--max-messages: must be a whole number"),  # not ASCII
    (["--password", "x"], "unrecognized arguments: --password"),  # secrets: .env only
])
def test_bad_flags_are_usage_errors(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        consumer.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_runs_as_a_script():
    result = subprocess.run([sys.executable, "consumer.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "--from-beginning" in result.stdout and "throwaway group" in result.stdout


# --- against the real broker ------------------------------------------------------------

@pytest.mark.broker
def test_prints_what_producer_py_sent_with_keys_and_per_key_order(bootstrap_servers, make_topic,
                                                                  capsys, monkeypatch):
    topic = make_topic(partitions=3)
    sent = [(f"user-{i % 4}", f"event {i}") for i in range(30)]
    lines = "".join(f"{key}:{value}\n" for key, value in sent).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines)))
    assert producer.main(["--bootstrap-server", bootstrap_servers, "--topic", topic, "--stdin",
                          "--key-separator", ":", "--quiet"]) == 0
    capsys.readouterr()
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--group", kafkatools.unique_topic("group"), "--max-messages", "30",
                                "--format", "json")
    assert status == 0 and err.strip() == "Processed a total of 30 messages"
    printed = [json.loads(line) for line in out]
    assert sorted((p["key"], p["value"]) for p in printed) == sorted(sent)
    for key in {key for key, _ in sent}:  # one key, one partition: in the order sent
        assert [p["value"] for p in printed if p["key"] == key] == [v for k, v in sent if k == key]
    records = kafkatools.read_all(bootstrap_servers, topic, expected=30)
    assert sorted((p["topic"], p["partition"], p["offset"], p["timestamp"]) for p in printed) == \
        [(r.topic, r.partition, r.offset, r.timestamp) for r in records]


@pytest.mark.broker
def test_example_events_show_as_readable_lines(bootstrap_servers, topic, capsys):
    assert producer.main(["--bootstrap-server", bootstrap_servers, "--topic", topic]) == 0
    deliveries = [line for line in capsys.readouterr().out.splitlines() if line.startswith("delivered")]
    status, out, _ = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                              "--from-beginning", "--max-messages", "6")
    assert status == 0
    records = kafkatools.read_all(bootstrap_servers, topic, expected=6)
    assert [TEXT_LINE.fullmatch(line)[5] for line in out] == [r.value.decode() for r in records]  # as stored
    shown = [TEXT_LINE.fullmatch(line).groups() for line in out]
    assert [f"delivered partition={p} offset={o} key={k}" for p, o, k, _, _ in shown] == deliveries
    records = kafkatools.read_all(bootstrap_servers, topic, expected=6)
    assert [json.loads(value) for *_, value in shown] == [json.loads(r.value) for r in records]


@pytest.mark.broker
def test_a_group_continues_without_repeat_or_gap_and_from_beginning_replays(bootstrap_servers,
                                                                            make_topic, capsys):
    topic = make_topic(partitions=2)
    send(bootstrap_servers, topic, *({"key": b"k%d" % i, "value": b"%d" % i, "partition": i % 2}
                                     for i in range(10)))
    group = kafkatools.unique_topic("group")
    common = ("--bootstrap-server", bootstrap_servers, "--topic", topic, "--format", "json")

    def offsets(lines):
        return [(r["partition"], r["offset"]) for r in map(json.loads, lines)]

    status, first, _ = run_main(capsys, *common, "--group", group, "--max-messages", "4")
    assert status == 0 and len(first) == 4
    # poll() may hand over more than 4; exactly what was printed is committed, per partition.
    expected = {}
    for partition, offset in offsets(first):
        expected[TopicPartition(topic, partition)] = max(offset + 1, expected.get(
            TopicPartition(topic, partition), 0))
    assert {tp: o for tp, o in committed(bootstrap_servers, group).items() if tp in expected} == expected

    status, second, err = run_main(capsys, *common, "--group", group, "--timeout-ms", "1000")
    assert status == 0 and err.strip() == "Processed a total of 6 messages"
    assert sorted(offsets(first) + offsets(second)) == sorted((i % 2, i // 2) for i in range(10))

    status, replay, _ = run_main(capsys, *common, "--from-beginning", "--max-messages", "10")
    assert status == 0 and sorted(offsets(replay)) == sorted(offsets(first) + offsets(second))

    status, again, err = run_main(capsys, *common, "--from-beginning", "--group", group,
                                  "--timeout-ms", "500")
    assert status == 0 and again == [] and err.strip() == "Processed a total of 0 messages"


@pytest.mark.broker
def test_timeout_ms_stops_when_nothing_arrives(bootstrap_servers, topic, capsys):
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--timeout-ms", "300")
    assert (status, out, err.strip()) == (0, [], "Processed a total of 0 messages")


@pytest.mark.broker
def test_prints_records_from_any_client_text_and_json(bootstrap_servers, topic, capsys):
    send(bootstrap_servers, topic,
         {"value": json.dumps(TWEET).encode()},
         {"key": b"bin\xff", "value": b"\xff\x00 \x1b[31mred", "headers": [("trace", b"\x01")]},
         {"key": b"k", "value": None})
    common = ("--bootstrap-server", bootstrap_servers, "--topic", topic, "--from-beginning",
              "--max-messages", "3")
    status, out, _ = run_main(capsys, *common)
    assert status == 0
    assert [TEXT_LINE.fullmatch(line).group(3, 5) for line in out] == [
        ("null", "@ada: hello\\nworld"), ("bin\\xff", "\\xff\\x00 \\x1b[31mred"), ("k", "null")]
    status, out, _ = run_main(capsys, *common, "--format", "json")
    assert [(r["key"], r["value"], r["headers"]) for r in map(json.loads, out)] == [
        (None, json.dumps(TWEET), []),
        ({"base64": base64.b64encode(b"bin\xff").decode()},
         {"base64": base64.b64encode(b"\xff\x00 \x1b[31mred").decode()},
         [["trace", "\x01"]]),
        ("k", None, []),
    ]


@pytest.mark.broker
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_closes_cleanly_and_keeps_the_groups_place(bootstrap_servers, topic, capsys,
                                                            signum, status):
    send(bootstrap_servers, topic, *({"value": b"%d" % i} for i in range(5)))
    group = kafkatools.unique_topic("group")
    script = start_script("consumer.py", "--topic", topic, "--group", group,
                    env=script_env(bootstrap_servers))
    script.wait_for_stdout(5)
    script.process.send_signal(signum)
    assert script.finish() == status
    assert script.stderr == ["Processed a total of 5 messages"]
    send(bootstrap_servers, topic, {"value": b"after"})
    status, out, _ = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                              "--group", group, "--max-messages", "1")
    assert status == 0 and TEXT_LINE.fullmatch(out[0]).group(2, 5) == ("5", "after")


RECORDS = st.tuples(st.none() | st.binary(), st.none() | st.binary() | st.text().map(str.encode),
                    st.lists(st.tuples(st.text(), st.none() | st.binary()), max_size=3),
                    st.integers(0, 2**63 - 1), st.integers(-1, 2**50))


@given(topic=st.from_regex(r"[a-zA-Z0-9._-]{1,20}", fullmatch=True), partition=st.integers(0, 10_000),
       records=st.lists(RECORDS, min_size=1, max_size=5))
def test_json_lines_are_exactly_what_json_dumps_makes(topic, partition, records):
    shown = [ConsumerRecord(topic, partition, 0, offset, timestamp, 0, key, value, headers, None, -1, -1, -1)
             for key, value, headers, offset, timestamp in records]
    assert consumer.json_lines(shown) == [json.dumps({
        "topic": topic, "partition": partition, "offset": offset, "timestamp": timestamp,
        "key": consumer.json_bytes(key), "value": consumer.json_bytes(value),
        "headers": [[name, consumer.json_bytes(data)] for name, data in headers]})
        for key, value, headers, offset, timestamp in records]


@pytest.mark.broker
def test_a_timestamp_past_the_year_9999_is_shown_as_a_number(bootstrap_servers, capsys):
    # Kafka 4.x refuses timestamps over an hour ahead by default; a topic (or an older broker)
    # may take any 64-bit one.
    topic = kafkatools.create_topic(bootstrap_servers, kafkatools.unique_topic(),
                                    configs={"message.timestamp.after.max.ms": str(2**63 - 1)})
    send(bootstrap_servers, topic, {"value": b"far", "timestamp_ms": 2**50}, {"value": b"after"})
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--from-beginning", "--max-messages", "2")
    assert status == 0, err
    assert [TEXT_LINE.fullmatch(line).group(4, 5) for line in out][0] == ("1125899906842624", "far")
    assert TEXT_LINE.fullmatch(out[1])[5] == "after"


@pytest.mark.broker
def test_a_poison_record_is_shown_and_the_group_moves_on(bootstrap_servers, topic, capsys):
    deep = DEEP
    tweet_like = b'{"data": ' + deep + b"}"
    send(bootstrap_servers, topic, {"value": b"before"}, {"value": deep}, {"value": tweet_like},
         {"value": b"after"})
    group = kafkatools.unique_topic("group")
    common = ("--bootstrap-server", bootstrap_servers, "--topic", topic, "--group", group)
    status, out, err = run_main(capsys, *common, "--max-messages", "4")
    assert status == 0, err
    assert [TEXT_LINE.fullmatch(line)[5] for line in out] == [
        "before", deep.decode(), tweet_like.decode(), "after"]
    status, out, err = run_main(capsys, *common, "--timeout-ms", "500")
    assert (status, out) == (0, [])  # committed past it: the group is not stuck


@pytest.mark.broker
def test_waiting_for_a_topic_does_not_create_it(bootstrap_servers, capsys):
    topic = kafkatools.unique_topic("not-yet")
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--timeout-ms", "1500")
    assert (status, out) == (0, [])
    assert err.splitlines() == [
        f"topic '{topic}' does not exist (yet): waiting for it; python producer.py creates it",
        "Processed a total of 0 messages"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()


@pytest.mark.broker
def test_a_reader_that_goes_away_ends_it_quietly(bootstrap_servers, topic):
    send(bootstrap_servers, topic, *({"value": b"%d" % i} for i in range(50)))
    result = subprocess.run(
        f"set -o pipefail; {sys.executable} consumer.py --topic {topic} --from-beginning | head -2",
        shell=True,
        cwd=ROOT, env=script_env(bootstrap_servers), capture_output=True, text=True, timeout=60,
        executable="/bin/bash")
    assert [TEXT_LINE.fullmatch(line)[5] for line in result.stdout.splitlines()] == ["0", "1"]
    assert result.returncode == 141  # pipefail: consumer.py's status, 128 + SIGPIPE as a C tool's
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["data", "text", "includes", "users", "id",
                                                              "author_id", "username"]), inner, max_size=4),
                           max_leaves=12)


@given(st.one_of(
    json_values.map(lambda value: json.dumps({"data": value}).encode()),
    st.integers(1, 3000).map(lambda depth: b'{"data": ' + b"[" * depth + b"]" * depth + b"}"),
    st.integers(1, 3000).map(lambda depth: b'{"data": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"),
    st.binary(max_size=200).map(lambda tail: b'{"data"' + tail)))
def test_any_value_that_looks_like_a_tweet_shows_on_one_line(value):
    shown = consumer.show_value(value)
    assert shown.isprintable()
    tweet = consumer.tweet_line(value)  # never raises, however deep the nesting
    # A tweet as '@user: text'; anything else exactly as stored.
    assert shown == (cli.printable(tweet) if tweet is not None else cli.show_bytes(value))


@pytest.mark.broker
def test_ctrl_c_while_the_broker_does_not_answer_ends_within_seconds(tmp_path):
    with kafkatools.own_broker(tmp_path / "kafka") as (bootstrap, pid):
        topic = kafkatools.create_topic(bootstrap, kafkatools.unique_topic())
        send(bootstrap, topic, {"value": b"one"})
        script = start_script("consumer.py", "--topic", topic, "--group", kafkatools.unique_topic("g"),
                              env=script_env(bootstrap))
        script.wait_for_stdout(1)
        with kafkatools.frozen(pid):
            script.process.send_signal(signal.SIGINT)
            began = time.monotonic()
            assert script.finish(timeout_s=30) == 130
            took = time.monotonic() - began
    assert took < 8, took  # leaving the group waits at most 5 s (kafka-python's default: 30)
    # If the broker stopped before the commit of the printed record, it says so.
    assert script.stderr[-1] == "Processed a total of 1 messages"
    assert script.stderr[:-1] in ([], [
        "WARNING consumer: Kafka did not answer the last commit: the records printed since "
        "the one before will show again next time"])

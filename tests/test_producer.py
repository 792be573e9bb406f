"""producer.py: pure helpers, the command line, and real sends to the test broker."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from kafka.admin import KafkaAdminClient
from kafka.future import Future

import kafkatools
import producer
from scripts import ROOT, start_script, closed_port, script_env

DELIVERED = re.compile(r"delivered partition=(\d+) offset=(\d+) key=(.*)")
SUMMARY = re.compile(r"sent (\d+), acknowledged (\d+), failed (\d+) in [\d.]+ s \([\d.]+ events/s\)")


def run_main(capsys, *args: str) -> tuple[int, list[str], str]:
    status = producer.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def delivered(lines: list[str]) -> set[tuple[int, int, str]]:
    return {(int(m[1]), int(m[2]), m[3]) for m in map(DELIVERED.fullmatch, lines) if m}


def use_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# --- pure helpers -----------------------------------------------------------------------

def test_example_events_cycle_kinds_and_keep_a_key_per_user_or_sensor():
    now = datetime(2026, 11, 25, 20, 41, 3, 123000, tzinfo=timezone.utc)
    events = [producer.example_event(number, now, f"id-{number}") for number in range(6)]
    assert [key for key, _ in events] == ["alice", "alice", "sensor-1", "bob", "bob", "sensor-2"]
    assert [event["type"] for _, event in events] == ["payment", "click", "temperature"] * 2
    payment = events[0][1]
    assert payment["event_id"] == "id-0" and payment["time"] == "2026-11-25T20:41:03.123Z"
    assert payment["user"] == "alice" and payment["currency"] == "EUR"
    assert events[2][1]["sensor"] == "sensor-1" and 18 <= events[2][1]["celsius"] <= 26
    assert producer.example_event(0, now, "same") == producer.example_event(0, now, "same")


def test_example_messages_are_plain_json_bytes():
    messages = list(producer.example_messages(4))
    assert [m.label for m in messages] == ["event 1", "event 2", "event 3", "event 4"]
    assert messages[0].key == b"alice"
    assert json.loads(messages[0].value.decode("utf-8"))["type"] == "payment"


@pytest.mark.parametrize("line, separator, expected", [
    (b"hello\n", None, (None, b"hello")),
    (b"hello\r\n", None, (None, b"hello")),
    (b"alice:pays:5\n", b":", (b"alice", b"pays:5")),
    (b":no key\n", b":", (b"", b"no key")),
    (b"\xff\xfe=\x00\x01", b"=", (b"\xff\xfe", b"\x00\x01")),
])
def test_parse_line(line, separator, expected):
    assert producer.parse_line(line, separator) == expected


def test_parse_line_without_the_separator_is_an_error():
    with pytest.raises(ValueError, match="no key separator ':'"):
        producer.parse_line(b"just a value\n", b":")


def test_stdin_messages_skip_empty_lines_and_number_by_line():
    stream = io.BytesIO(b"a:1\n\n\r\nb:2\nnothing\nc:3")
    items = list(producer.stdin_messages(stream, b":"))
    assert items == [
        producer.Message("line 1", b"a", b"1"),
        producer.Message("line 4", b"b", b"2"),
        producer.Rejected("line 5", "no key separator ':' in it"),
        producer.Message("line 6", b"c", b"3"),
    ]


def test_show_escapes_what_would_break_the_line():
    assert producer.show(None) == "null"
    assert producer.show("café".encode()) == "café"
    assert producer.show(b"a\nb\x1b[31m\xff") == "a\\nb\\x1b[31m\\xff"


def test_pause_before_keeps_the_rate():
    assert producer.pause_before(5, None, started=100.0, now=100.0) == 0.0
    assert producer.pause_before(5, 10.0, started=100.0, now=100.2) == pytest.approx(0.3)
    assert producer.pause_before(5, 10.0, started=100.0, now=101.0) == 0.0  # behind: no wait


def test_summary():
    assert producer.summary(6, 6, 0, 0.5) == "sent 6, acknowledged 6, failed 0 in 0.50 s (12.0 events/s)"
    assert producer.summary(5, 3, 1, 1.0).endswith("; 1 not acknowledged: may or may not be in the topic")


def test_deliveries_count_the_brokers_answers():
    out, err = io.StringIO(), io.StringIO()
    deliveries = producer.Deliveries(out, err)
    acked, failed = Future(), Future()
    deliveries.track(acked, producer.Message("event 1", b"alice", b"{}"))
    deliveries.track(failed, producer.Message("event 2", None, b"x" * 2000))
    deliveries.reject("line 3", "no key separator ':' in it")
    assert (deliveries.sent, deliveries.pending) == (3, 2)
    acked.success(type("Metadata", (), {"partition": 2, "offset": 41})())
    failed.failure(producer.MessageSizeTooLargeError())
    assert deliveries.wait(timeout_s=0)
    assert (deliveries.acked, deliveries.failed) == (1, 2)
    assert out.getvalue() == "delivered partition=2 offset=41 key=alice\n"
    assert "event 2 (key=null, 2,000 bytes) not delivered: the broker refused it" in err.getvalue()
    assert "line 3 not sent: no key separator" in err.getvalue()


# --- command line -----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--count", "-1"], "--count: must be 0 or more, not -1"),
    (["--count", "many"], "--count: must be 0 or more"),
    (["--rate", "0"], "--rate: must be a number above 0"),
    (["--stdin", "--count", "3"], "--count applies to the example events"),
    (["--key-separator", ":"], "--key-separator needs --stdin"),
    (["--topic", "no/slashes"], "not a valid topic name"),
])
def test_bad_flags_are_usage_errors(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        producer.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_environment_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("KAFKA_SASL_PASSWORD", raising=False)
    assert producer.main([]) == 2
    assert capsys.readouterr().err.startswith("error: KAFKA_SECURITY_PROTOCOL=SASL_SSL needs")


def test_help_runs_as_a_script():
    result = subprocess.run([sys.executable, "producer.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "--key-separator SEP" in result.stdout and "--bootstrap-server" in result.stdout


# --- against the real broker ------------------------------------------------------------

@pytest.mark.broker
def test_every_example_event_is_acknowledged_and_really_in_the_topic(bootstrap_servers, make_topic, capsys):
    topic = make_topic(partitions=3)
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--count", "12")
    assert status == 0, err
    assert SUMMARY.fullmatch(out[-1]).groups() == ("12", "12", "0")
    records = kafkatools.read_all(bootstrap_servers, topic, expected=12)
    assert delivered(out) == {(r.partition, r.offset, r.key.decode()) for r in records}
    partition_of = {}
    for record in records:
        event = json.loads(record.value)  # plain UTF-8 JSON: any Kafka client can read it
        assert {"event_id", "type", "time"} <= event.keys()
        assert record.key.decode() == event.get("user", event.get("sensor"))
        assert partition_of.setdefault(record.key, record.partition) == record.partition


@pytest.mark.broker
def test_a_missing_topic_is_created_and_said_so(bootstrap_servers, capsys):
    topic = kafkatools.unique_topic()
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--count", "1")
    assert status == 0
    assert err.strip() == f"created topic '{topic}' with 3 partitions"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        assert len(admin.describe_topics([topic])[0]["partitions"]) == 3
    finally:
        admin.close()


@pytest.mark.broker
def test_stdin_lines_go_out_byte_for_byte(bootstrap_servers, topic, capsys, monkeypatch):
    use_stdin(monkeypatch, b"alice:hello\r\n\nbob:caf\xc3\xa9\n\xff\xfe:bin\xff\nno separator\ncarol:last")
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--stdin", "--key-separator", ":")
    assert status == 1  # one line was not sent
    assert err.strip() == "error: line 5 not sent: no key separator ':' in it"
    assert SUMMARY.fullmatch(out[-1]).groups() == ("5", "4", "1")
    records = kafkatools.read_all(bootstrap_servers, topic, expected=4)
    assert [(r.key, r.value) for r in records] == [
        (b"alice", b"hello"), (b"bob", "café".encode()), (b"\xff\xfe", b"bin\xff"), (b"carol", b"last")]


@pytest.mark.broker
def test_a_message_over_1_mib_is_reported_and_the_others_are_delivered(bootstrap_servers, topic,
                                                                        capsys, monkeypatch):
    use_stdin(monkeypatch, b"small-1\n" + b"x" * (2 * 1024 * 1024) + b"\nsmall-2\n")
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--stdin")
    assert status == 1
    assert err.strip() == f"error: line 2 (2,097,152 bytes) not sent: too large ({producer.SIZE_LIMITS})"
    assert SUMMARY.fullmatch(out[-1]).groups() == ("3", "2", "1")
    records = kafkatools.read_all(bootstrap_servers, topic, expected=2)
    assert [r.value for r in records] == [b"small-1", b"small-2"]


@pytest.mark.broker
def test_a_message_the_topic_refuses_is_reported_and_nothing_hangs(bootstrap_servers, capsys, monkeypatch):
    # The broker (not the producer) refuses it: kafka-python splits the batch and retries,
    # which trips its flush() (see producer.finish). Whatever shared the batch is either
    # delivered or reported; every acknowledged message is in the topic.
    topic = kafkatools.unique_topic()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        admin.create_topics({topic: {"configs": {"max.message.bytes": "1000"}}}, wait_for_metadata=True)
    finally:
        admin.close()
    use_stdin(monkeypatch, b"small-1\n" + b"y" * 5000 + b"\nsmall-2\n")
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--stdin")
    assert status == 1
    assert "error: line 2 (key=null, 5,000 bytes) not delivered: the broker refused it" in err
    sent, acked, failed = map(int, SUMMARY.fullmatch(out[-1]).groups())
    assert sent == 3 and acked + failed == 3 and failed >= 1
    records = kafkatools.read_all(bootstrap_servers, topic, expected=acked, timeout_s=5)
    assert len(records) == acked and b"y" * 5000 not in [r.value for r in records]


@pytest.mark.broker
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_sending_and_loses_no_acknowledged_event(bootstrap_servers, topic, signum, status):
    script = start_script("producer.py", "--topic", topic, "--count", "0", "--rate", "100",
                    env=script_env(bootstrap_servers))
    script.wait_for_stdout(5)
    script.process.send_signal(signum)
    assert script.finish() == status, script.stderr
    sent, acked, failed = map(int, SUMMARY.fullmatch(script.stdout[-1]).groups())
    assert sent == acked >= 5 and failed == 0
    records = kafkatools.read_all(bootstrap_servers, topic, expected=acked)
    # Every acknowledged event is there, exactly once (idempotence: no duplicate from a retry).
    assert delivered(script.stdout) == {(r.partition, r.offset, r.key.decode()) for r in records}
    assert len(records) == acked


@pytest.mark.broker
def test_ctrl_c_while_waiting_for_stdin(bootstrap_servers, topic):
    script = start_script("producer.py", "--topic", topic, "--stdin", env=script_env(bootstrap_servers),
                    stdin=subprocess.PIPE)
    script.process.stdin.write("first\nsecond\n")
    script.process.stdin.flush()
    script.wait_for_stdout(2)
    script.process.send_signal(signal.SIGINT)  # it is blocked reading the next line
    assert script.finish() == 130
    assert SUMMARY.fullmatch(script.stdout[-1]).groups() == ("2", "2", "0")
    script.process.stdin.close()


def test_an_unreachable_broker_is_one_line_and_exit_1(tmp_path):
    # Both scripts at once: each waits for config.BOOTSTRAP_TIMEOUT_MS (10 s) before giving up.
    address = f"127.0.0.1:{closed_port()}"
    env = script_env(address)
    scripts = [start_script(name, env=env) for name in ("producer.py", "consumer.py")]
    for script in scripts:
        assert script.finish(timeout_s=15) == 1  # the issue asks for "within 15 s"
        assert script.stderr == [
            f"error: cannot reach Kafka at {address} (KafkaTimeoutError: Unable to bootstrap "
            f"from ['{address}']); is Kafka running? start one with: make kafka"]
        assert script.stdout == []

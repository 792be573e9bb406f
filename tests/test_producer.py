"""producer.py: pure helpers, the command line, and real sends to the test broker."""

from __future__ import annotations

import io
import itertools
import json
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from kafka.admin import KafkaAdminClient
from kafka.future import Future

import kafkatools
import cli
import producer
from bench import cases
from scripts import ROOT, start_script, closed_port, script_env

DELIVERED = re.compile(r"delivered partition=(\d+) offset=(\d+) key=(.*)")
SUMMARY = re.compile(r"sent (\d+), acknowledged (\d+), failed (\d+)(?:, not sent (\d+))? in [\d.]+ s \([\d.]+ events/s\)(?:; (\d+) not acknowledged: may or may not be in the topic)?")


def summary(err: str | list[str]) -> tuple[int, ...]:
    """(sent, acknowledged, failed, not sent, not acknowledged) from the summary: the last line on stderr."""
    lines = err.splitlines() if isinstance(err, str) else err
    return tuple(int(n or 0) for n in SUMMARY.fullmatch(lines[-1]).groups())


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
    now = "2026-11-25T20:41:03.123Z"
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


def test_stdin_messages_skip_empty_lines_number_by_line_and_report_the_rejected():
    stream = io.BytesIO(b"a:1\n\n\r\nb:2\nnothing\nc:3")
    err = io.StringIO()
    report = producer.Report(cli.Run("producer.py"), err=err)
    items = list(producer.stdin_messages(stream, b":", cli.Run("producer.py"), report))
    assert items == [
        producer.Message("line", 1, b"a", b"1"),
        producer.Message("line", 4, b"b", b"2"),
        producer.Message("line", 6, b"c", b"3"),
    ]
    assert report.rejected == 1 and report.deliveries.sent == 0  # never sent, so not counted as sent
    assert err.getvalue() == "producer.py: error: line 5 not sent: no key separator ':' in it\n"


def test_summary_says_what_was_not_sent_and_what_is_unanswered():
    report = producer.Report(cli.Run("producer.py"), err=io.StringIO())
    report.started -= 0.5
    for _ in range(3):
        report.deliveries.track(Future())
    report.deliveries.acked = 2
    report.not_sent("line 4", "no key separator")
    assert summary(report.summary()) == (3, 2, 0, 1, 1)
    assert not report.all_acknowledged


def test_report_counts_and_prints_the_brokers_answers():
    out, err = io.StringIO(), io.StringIO()
    report = producer.Report(cli.Run("producer.py"), out=out, err=err)
    acked, failed = Future(), Future()
    report.deliveries.track(acked, producer.Message("event", 1, b"alice", b"{}"))
    report.deliveries.track(failed, producer.Message("event", 2, None, b"x" * 2000))
    assert (report.deliveries.sent, report.deliveries.pending) == (2, 2)
    acked.success(type("Metadata", (), {"partition": 2, "offset": 41})())
    failed.failure(producer.MessageSizeTooLargeError())
    assert (report.deliveries.acked, report.deliveries.failed, report.deliveries.pending) == (1, 1, 0)
    assert out.getvalue() == "delivered partition=2 offset=41 key=alice\n"
    assert "producer.py: error: event 2 (key=null, 2,000 bytes) not delivered: the broker refused it" \
        in err.getvalue()


# --- command line -----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--count", "-1"], "--count: must be a whole number of 0 or more, not -1"),
    (["--count", "many"], "--count: must be a whole number of 0 or more"),
    (["--count", "\u0661\u0662"], "--count: must be a whole number"),  # Arabic-Indic digits: not ASCII
    (["--rate", "0"], "--rate: must be a number above 0"),
    (["--rate", "nan"], "--rate: must be a number above 0, not nan"),
    (["--rate", "inf"], "--rate: must be a number above 0, not inf"),
    (["--rate", "1e-11"], "--rate: must be at least"),
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
    assert capsys.readouterr().err.startswith("producer.py: error: KAFKA_SECURITY_PROTOCOL=SASL_SSL needs")


def test_help_runs_as_a_script():
    result = subprocess.run([sys.executable, "producer.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "--key-separator SEP" in result.stdout and "--bootstrap-server" in result.stdout


# --- against the real broker ------------------------------------------------------------

@pytest.mark.broker
def test_the_producer_is_made_durable_at_its_call(bootstrap_servers, topic, capsys, monkeypatch):
    made = []

    class RecordingProducer(producer.KafkaProducer):  # the real one, noting how it was made
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(producer, "KafkaProducer", RecordingProducer)
    assert run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic)[0] == 0
    assert made[0]["acks"] == "all" and made[0]["enable_idempotence"] is True
    # The benchmark's reference for "the same batching" uses what producer.py really uses.
    assert {name: made[0][name] for name in cases.PRODUCER_PY_TUNING} == cases.PRODUCER_PY_TUNING


@pytest.mark.broker
def test_every_example_event_is_acknowledged_and_really_in_the_topic(bootstrap_servers, make_topic, capsys):
    topic = make_topic(partitions=3)
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--count", "12")
    assert status == 0, err
    assert summary(err) == (12, 12, 0, 0, 0)
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
    assert err.splitlines()[0] == f"created topic '{topic}' with 3 partitions"
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
    assert err.splitlines()[0] == "producer.py: error: line 5 not sent: no key separator ':' in it"
    assert summary(err) == (4, 4, 0, 1, 0)  # the rejected line was never sent
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
    assert err.splitlines()[0] == \
        f"producer.py: error: line 2 (2,097,152 bytes) not sent: too large ({producer.SIZE_LIMITS})"
    assert summary(err) == (2, 2, 0, 1, 0)
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
    assert "producer.py: error: line 2 (key=null, 5,000 bytes) not delivered: the broker refused it" in err
    sent, acked, failed, _, _ = summary(err)
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
    sent, acked, failed, not_sent, unanswered = summary(script.stderr)
    assert sent == acked >= 5 and failed == not_sent == unanswered == 0
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
    assert summary(script.stderr) == (2, 2, 0, 0, 0)
    script.process.stdin.close()


def test_an_unreachable_broker_is_one_line_and_exit_1(tmp_path):
    # Both scripts at once: each waits for config.BOOTSTRAP_TIMEOUT_MS (10 s) before giving up.
    address = f"127.0.0.1:{closed_port()}"
    env = script_env(address)
    scripts = [start_script(name, env=env) for name in ("producer.py", "consumer.py")]
    for script in scripts:
        assert script.finish(timeout_s=15) == 1  # the issue asks for "within 15 s"
        name = script.process.args[1]
        assert script.stderr == [
            f"waiting for Kafka at {address} (at most 10 s) ...",  # so that it does not look like a hang
            f"{name}: error: cannot reach Kafka at {address} (KafkaTimeoutError: Unable to "
            f"bootstrap from ['{address}']); is Kafka running? start one with: make kafka"]
        assert script.stdout == []


def test_internal_topics_and_a_closed_stdin_are_usage_errors(capsys):
    assert producer.main(["--bootstrap-server", f"127.0.0.1:{closed_port()}",
                          "--topic", "__consumer_offsets"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "producer.py: error: '__consumer_offsets' is one of Kafka's internal topics: "
        "producer.py does not write there")
    result = subprocess.run(f"{sys.executable} producer.py --stdin <&-", shell=True, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "producer.py: error: --stdin: standard input is closed"


@pytest.mark.broker
def test_a_reader_that_goes_away_stops_it_at_once_still_counting(bootstrap_servers, topic):
    result = subprocess.run(
        f"set -o pipefail; {sys.executable} producer.py --topic {topic} --count 1000 | head -1",
        shell=True, executable="/bin/bash", cwd=ROOT, env=script_env(bootstrap_servers),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 141, result.stderr  # 128 + SIGPIPE, as a C tool reports it
    assert DELIVERED.fullmatch(result.stdout.strip())
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    sent, acked, failed, _, unanswered = summary(result.stderr)
    assert sent == acked + unanswered and failed == 0
    assert len(kafkatools.read_all(bootstrap_servers, topic, expected=acked)) >= acked


@pytest.mark.broker
def test_a_line_read_before_ctrl_c_is_still_sent(bootstrap_servers, topic):
    # One line per 5 s: the second line has been read and waits for its turn when Ctrl-C comes.
    script = start_script("producer.py", "--topic", topic, "--stdin", "--rate", "0.2",
                          env=script_env(bootstrap_servers), stdin=subprocess.PIPE)
    script.process.stdin.write("first\nsecond\n")
    script.process.stdin.flush()
    script.wait_for_stdout(1)
    script.process.send_signal(signal.SIGINT)
    assert script.finish() == 130
    assert summary(script.stderr) == (2, 2, 0, 0, 0)
    assert [r.value for r in kafkatools.read_all(bootstrap_servers, topic, expected=2)] == \
        [b"first", b"second"]
    script.process.stdin.close()


@pytest.mark.broker
def test_sigterm_while_the_broker_does_not_answer_waits_at_most_10_s(tmp_path):
    with kafkatools.own_broker(tmp_path / "kafka") as (bootstrap, pid):
        topic = kafkatools.create_topic(bootstrap, kafkatools.unique_topic())
        script = start_script("producer.py", "--topic", topic, "--count", "0", "--rate", "200",
                              env=script_env(bootstrap))
        script.wait_for_stdout(5)
        with kafkatools.frozen(pid):
            # Frozen: no acknowledgement for 0.5 s, while events go on being sent at 200/s.
            seen = [len(script.stdout), time.monotonic()]

            def no_answers() -> bool:
                if len(script.stdout) != seen[0]:
                    seen[:] = [len(script.stdout), time.monotonic()]
                return time.monotonic() - seen[1] >= 0.5

            kafkatools.wait_for(no_answers, 10, what="the broker to stop answering")
            script.process.send_signal(signal.SIGTERM)
            began = time.monotonic()
            assert script.finish(timeout_s=20) == 143
            took = time.monotonic() - began
    assert took < 13, took
    assert any(line.startswith("waiting up to 10 s for Kafka to acknowledge") for line in script.stderr)
    sent, acked, failed, _, unanswered = summary(script.stderr)
    assert unanswered > 0 and sent == acked + failed + unanswered
    assert not any("Traceback" in line or "Exception ignored" in line for line in script.stderr)


@pytest.mark.broker
def test_compressed_batches_arrive_whole(bootstrap_servers, topic, capsys):
    status, out, err = run_main(capsys, "--bootstrap-server", bootstrap_servers, "--topic", topic,
                                "--count", "50", "--compression", "gzip", "--quiet")
    assert status == 0 and summary(err) == (50, 50, 0, 0, 0)
    records = kafkatools.read_all(bootstrap_servers, topic, expected=50)
    assert len(records) == 50 and all(json.loads(r.value)["event_id"] for r in records)


def test_random_ids_are_version_4_uuids_and_unique():
    ids = list(itertools.islice(producer.random_ids(), 2000))
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122

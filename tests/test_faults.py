"""Faults, with real processes and real signals: acknowledged data is never lost.

Each test runs the scripts as a user would (subprocesses, environment variables) against a
Kafka of its own, started through the `broker` package, so that it can kill -9 a node or a
script and restart it. Every test checks the exact contents of the topic afterwards, and
prints one line "fault: ..." with what was sent, acknowledged, found and duplicated (shown
with `pytest -s`, and collected in the note of the issue that added these tests).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

import kafkatools
import cli
import consumer
import producer
from broker import cluster
from scripts import ROOT, load_script

REPLAY_FILE = ROOT / "data" / "sample-stream.jsonl"
SCRIPT_TIMEOUT_S = 180

pytestmark = pytest.mark.broker


class OwnKafka:
    """A Kafka that a test may kill -9 and restart on the same data."""

    def __init__(self, data_dir: Path, nodes: int = 1, sasl: bool = False, environ=None) -> None:
        self.data_dir, self.nodes, self.sasl = data_dir, nodes, sasl
        self.environ = {**os.environ, **(environ or {})}
        self.port = cluster.free_port(span=3 * nodes)
        self.cluster = self.start()

    def start(self) -> cluster.Cluster:
        self.cluster = cluster.start(self.data_dir, port=self.port, nodes=self.nodes,
                                     sasl=self.sasl, environ=self.environ)
        return self.cluster

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def kill9(self, node_id: int = 1) -> None:
        # What `python -m broker kill --node N` does: SIGKILL the pid of this data dir's node.
        node = cluster.kill_node(self.data_dir, node_id)
        kafkatools.wait_for(lambda: cluster.port_is_free(node.port), 30, what="the killed node's port")

    def stop(self) -> None:
        cluster.stop(self.data_dir, wipe=True)


@pytest.fixture
def own_kafka(tmp_path):
    kafka = OwnKafka(tmp_path / "kafka")
    yield kafka
    kafka.stop()


def script(name: str, *args: str, bootstrap: str, env: dict | None = None) -> subprocess.Popen:
    environment = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(ROOT / name), *args], cwd=ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def report(test: str, sent: int, acknowledged: int, found: int, duplicated: int) -> None:
    print(f"\nfault: {test}: sent {sent}, acknowledged {acknowledged}, found {found}, "
          f"duplicated {duplicated}")


def replay_tweets() -> list[bytes]:
    """The tweet lines of the shipped replay file, in order, as twitter-stream publishes them."""
    lines = REPLAY_FILE.read_bytes().split(b"\n")
    tweets = []
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and isinstance(message.get("data"), dict):
            tweets.append(line.rstrip(b"\r"))
    return tweets


def event_ids(records) -> Counter:
    return Counter(json.loads(record.value)["event_id"] for record in records)


def produce_through(kafka: OwnKafka, topic: str, count: int, records_before_fault: int,
                    fault, label: str) -> None:
    """Run producer.py --count COUNT at 4000/s, apply ``fault`` mid-way, and check that
    producer.py exits 0 and that every event is in the topic exactly once."""
    process = script("producer.py", "--count", str(count), "--rate", "4000", "--quiet",
                     "--topic", topic, bootstrap=kafka.bootstrap)
    kafkatools.wait_for(lambda: kafkatools.end_offset(kafka.bootstrap, topic) >= records_before_fault,
                        60, interval_s=0.2, what=f"{records_before_fault} events in the topic")
    fault()
    stdout, stderr = process.communicate(timeout=SCRIPT_TIMEOUT_S)
    assert process.returncode == 0, stderr
    assert f"sent {count}, acknowledged {count}, failed 0" in stdout + stderr
    records = kafkatools.read_all(kafka.bootstrap, topic, expected=count, timeout_s=60)
    ids = event_ids(records)
    duplicated = sum(n - 1 for n in ids.values())
    report(label, count, count, len(records), duplicated)
    # Every event is a fresh uuid: COUNT distinct ids in COUNT records is no loss, no repeat.
    assert len(records) == count and len(ids) == count and duplicated == 0


# --- 1. kill -9 the broker in the middle of producer.py ------------------------------------

def test_broker_killed_during_production_loses_and_duplicates_nothing(own_kafka):
    topic = kafkatools.create_topic(own_kafka.bootstrap, kafkatools.unique_topic("fault-produce"))
    count = 20_000
    produce_through(own_kafka, topic, count, records_before_fault=3000,
                    fault=lambda: (own_kafka.kill9(), own_kafka.start()),
                    label="broker kill -9 during producer.py")


# --- 3. kill -9 consumer.py and restart it in the same group -------------------------------

def test_consumer_killed_and_restarted_in_its_group_skips_nothing(bootstrap_servers, topic):
    # consumer.py commits after each poll of up to MAX_POLL_RECORDS printed records: enough
    # records for three of them, so that it is killed with some committed and some not.
    count = 3 * consumer.MAX_POLL_RECORDS
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap_servers)
    for i in range(count):
        producer.send(topic, json.dumps({"n": i}).encode())
    producer.flush()
    producer.close()
    group = kafkatools.unique_topic("fault-group")
    args = ("--topic", topic, "--group", group, "--from-beginning", "--format", "json")

    first = script("consumer.py", *args, bootstrap=bootstrap_servers)
    printed_first: list[int] = []
    # Read its output as it comes; kill it -9 mid-stream, once it has committed some.
    deadline = time.monotonic() + SCRIPT_TIMEOUT_S
    while not (len(printed_first) % 1000 == 0 and committed_offset(bootstrap_servers, group, topic)):
        assert time.monotonic() < deadline, "consumer.py committed nothing"
        line = first.stdout.readline() if len(printed_first) < count else ""
        if line:
            printed_first.append(json.loads(line)["offset"])
    first.kill()
    # stdout.read(), not communicate(): that reads the pipe itself and would skip what
    # readline() has buffered already.
    rest = first.stdout.read()
    first.wait(timeout=30)
    # A kill in the middle of a write leaves its last line cut short: only whole lines count.
    printed_first += [json.loads(line)["offset"] for line in rest.split("\n")[:-1]]
    assert first.returncode == -signal.SIGKILL

    committed = committed_offset(bootstrap_servers, group, topic)
    assert 0 < committed <= len(printed_first)  # it committed only what it had printed

    # The killed member holds its partition until its session times out (45 s), so the
    # restarted one may wait that long before it gets any record: no --timeout-ms here.
    second = script("consumer.py", *args, "--max-messages", str(count - committed),
                    bootstrap=bootstrap_servers)
    out, err = second.communicate(timeout=SCRIPT_TIMEOUT_S)
    assert second.returncode == 0, err
    printed_second = [json.loads(line)["offset"] for line in out.splitlines()]

    seen = Counter(printed_first + printed_second)
    report("consumer.py kill -9 and restart", count, count, len(seen), sum(n - 1 for n in seen.values()))
    assert printed_second == list(range(committed, count))  # on from its committed offset
    assert set(seen) == set(range(count))  # no gap: every offset printed at least once


def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of partition 0 (asked with OffsetFetch; joins nothing)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        consumer.close(autocommit=False)


# --- 2. kill -9 the broker in the middle of twitter-stream.py --replay ---------------------

def test_broker_killed_during_replay_loses_and_duplicates_nothing(own_kafka):
    topic = kafkatools.create_topic(own_kafka.bootstrap, kafkatools.unique_topic("fault-replay"))
    count = 20_000
    process = script("twitter-stream.py", "--replay", "--loop", "--rate", "4000",
                     "--max-tweets", str(count), "--topic", topic, bootstrap=own_kafka.bootstrap)
    kafkatools.wait_for(lambda: kafkatools.end_offset(own_kafka.bootstrap, topic) >= 3000,
                        60, interval_s=0.2, what="3000 tweets in the topic")
    own_kafka.kill9()
    own_kafka.start()  # on the same data, a few seconds later
    _, stderr = process.communicate(timeout=SCRIPT_TIMEOUT_S)
    assert process.returncode == 0, stderr

    tweets = replay_tweets()
    expected = [tweets[i % len(tweets)] for i in range(count)]
    records = kafkatools.read_all(own_kafka.bootstrap, topic, expected=count, timeout_s=60)
    found = [record.value for record in records]
    # The replay loops, so tweets repeat by design: a duplicate is a record beyond the count.
    duplicated = max(0, len(found) - count)
    report("broker kill -9 during twitter-stream.py --replay", count, count, len(found), duplicated)
    assert found == expected  # every tweet, once, in order
    assert f"published {count} of {count} tweets" in stderr


# --- 4. a 3-node cluster loses a node while producing ------------------------------------

def test_a_node_killed_in_a_three_node_cluster_loses_nothing(tmp_path):
    from kafka.admin import KafkaAdminClient, NewTopic

    kafka = OwnKafka(tmp_path / "cluster", nodes=3)
    try:
        topic = kafkatools.unique_topic("fault-cluster")
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                      topic_configs={"min.insync.replicas": "2"})])
        admin.close()
        count = 10_000
        # Node 2 is not restarted: two replicas of three are enough for min ISR 2.
        produce_through(kafka, topic, count, records_before_fault=500,
                        fault=lambda: kafka.kill9(node_id=2),
                        label="3-node cluster, one node kill -9 during producer.py")
    finally:
        kafka.stop()


# --- 5. SASL/SCRAM: right credentials connect, a wrong password is one clear line -----------

SASL_USER, SASL_PASSWORD = "tutorial-user", "correct-horse-battery-staple"


@pytest.fixture
def sasl_kafka(tmp_path):
    kafka = OwnKafka(tmp_path / "sasl", sasl=True,
                     environ={"KAFKA_SASL_USERNAME": SASL_USER, "KAFKA_SASL_PASSWORD": SASL_PASSWORD})
    yield kafka
    kafka.stop()


def sasl_env(password: str) -> dict:
    return {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": SASL_USER, "KAFKA_SASL_PASSWORD": password}


def test_the_scripts_connect_with_scram_credentials(sasl_kafka):
    topic = kafkatools.create_topic(sasl_kafka.bootstrap, kafkatools.unique_topic("sasl"))
    bootstrap = sasl_kafka.cluster.sasl_bootstrap
    produced = script("producer.py", "--count", "4", "--topic", topic, bootstrap=bootstrap,
                      env=sasl_env(SASL_PASSWORD))
    out, err = produced.communicate(timeout=SCRIPT_TIMEOUT_S)
    assert produced.returncode == 0, err
    replayed = script("twitter-stream.py", "--replay", "--max-tweets", "5", "--topic", topic,
                      bootstrap=bootstrap, env=sasl_env(SASL_PASSWORD))
    assert replayed.wait(timeout=SCRIPT_TIMEOUT_S) == 0, replayed.stderr.read()
    consumed = script("consumer.py", "--topic", topic, "--from-beginning", "--max-messages", "9",
                      "--format", "json", bootstrap=bootstrap, env=sasl_env(SASL_PASSWORD))
    out, err = consumed.communicate(timeout=SCRIPT_TIMEOUT_S)
    assert consumed.returncode == 0, err
    assert [json.loads(line)["offset"] for line in out.splitlines()] == list(range(9))
    assert SASL_PASSWORD not in out + err


@pytest.mark.parametrize("name", ["producer.py", "consumer.py", "twitter-stream.py"])
def test_a_wrong_password_is_one_line_and_never_shown(sasl_kafka, name):
    wrong = "wrong-password-never-printed"
    args = {"producer.py": ["--count", "1"], "consumer.py": ["--max-messages", "1"],
            "twitter-stream.py": ["--replay", "--max-tweets", "1"]}[name]
    process = script(name, *args, bootstrap=sasl_kafka.cluster.sasl_bootstrap, env=sasl_env(wrong))
    out, err = process.communicate(timeout=SCRIPT_TIMEOUT_S)
    assert process.returncode == 1
    # One line says why, at once: the broker refuses the SCRAM login, and the probe before the
    # client is made (diagnose.py) hears it, where kafka-python would wait for its timeout.
    [error] = err.splitlines()
    assert out == "", err
    assert error.startswith(f"{name}: error: ") and "SASL" in error and SASL_USER in error
    assert "KAFKA_SASL_PASSWORD" in error
    assert wrong not in err and "Traceback" not in err


# --- 7. property-based: arbitrary bytes never crash the stream line parser -----------------

twitter_stream = load_script("twitter-stream.py", "twitter_stream")




@hypothesis_settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                              lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.sampled_from(["data", "errors", "id", "includes"]),
                                                inner, max_size=3),
                              max_leaves=10).map(lambda value: json.dumps(value).encode())))
def test_the_stream_line_parser_never_crashes(line):
    parsed = twitter_stream.parse_line(line)
    assert parsed.kind in {twitter_stream.KEEP_ALIVE, twitter_stream.TWEET, twitter_stream.ERRORS,
                           twitter_stream.OTHER, twitter_stream.MALFORMED}
    if parsed.kind == twitter_stream.TWEET:
        assert parsed.tweet_id.isdigit()


@hypothesis_settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.one_of(st.none(), st.binary(min_size=1, max_size=3)))
def test_the_stdin_key_value_parser_never_crashes(data, separator):
    report = producer.Report(cli.Run("producer.py"), out=io.StringIO(), err=io.StringIO())
    lines = list(producer.stdin_messages(io.BytesIO(data), separator, cli.Run("producer.py"), report))
    for item in lines:
        assert item.value is not None and b"\n" not in item.value
        if separator is None:
            assert item.key is None
    assert report.rejected == 0 or separator is not None
    # Nothing accepted is lost: every line with content is either sent or reported.
    assert len(lines) + report.rejected == sum(1 for line in data.split(b"\n") if line.strip(b"\r"))


# --- 6. bad input: a clear line and exit 2, never a traceback -------------------------------

@pytest.mark.parametrize("name", ["producer.py", "consumer.py", "twitter-stream.py"])
@pytest.mark.parametrize("servers", ["127.0.0.1:notaport", ",", "127.0.0.1:99999", "no-port"])
def test_a_malformed_bootstrap_string_is_a_usage_error(name, servers):
    extra = ["--replay"] if name == "twitter-stream.py" else []
    by_flag = subprocess.run([sys.executable, str(ROOT / name), *extra, "--bootstrap-server", servers],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert by_flag.returncode == 2
    assert by_flag.stderr.splitlines()[-1].endswith(
        "names no broker (HOST:PORT, e.g. 127.0.0.1:9092)" if servers == "," else
        f"{servers!r} is not HOST:PORT (e.g. 127.0.0.1:9092)")
    by_env = subprocess.run([sys.executable, str(ROOT / name), *extra], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": servers})
    assert by_env.returncode == 2
    assert len(by_env.stderr.splitlines()) == 1 and "KAFKA_BOOTSTRAP_SERVERS=" in by_env.stderr
    assert "Traceback" not in by_flag.stderr + by_env.stderr


def test_consumer_on_a_topic_that_does_not_exist_says_so_and_waits(bootstrap_servers):
    missing = kafkatools.unique_topic("missing")
    process = script("consumer.py", "--topic", missing, "--timeout-ms", "1000", bootstrap=bootstrap_servers)
    out, err = process.communicate(timeout=SCRIPT_TIMEOUT_S)
    assert process.returncode == 0 and out == ""
    assert err.splitlines() == [
        f"topic {missing!r} does not exist (yet): waiting for it; python producer.py creates it",
        "Processed a total of 0 messages",
    ]

"""trends.py: hashtags per minute, counted exactly once (Kafka transactions), against a real broker.

The counts are checked against an independent count of what really is in the input topic,
made here with json and re alone, so a looped replay (or a rewritten twitter-stream.py) that
publishes something else is counted right too.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone

import pytest
from kafka import KafkaConsumer, TopicPartition

import kafkatools
from kafkatools import wait_for
from scripts import ROOT, load_script, script_env, start_script

trends = load_script("trends.py", "trends")

REPLAY_TWEETS = 20_000
REPLAY_RATE = 2_500  # tweets/s: the replay lasts 8 s, so the kills land while tweets arrive
RESTART_WITHIN_S = 10.0


# ---- pure helpers ----------------------------------------------------------------------------

def test_hashtags_are_word_characters_lowercased_once_per_tweet():
    assert trends.hashtags("#Kafka and #kafka, #Python3! #straße #東京 #_x # #-no") == {
        "kafka", "python3", "straße", "東京", "_x"}
    assert trends.hashtags("no tags here, just a # sign") == set()


@pytest.mark.parametrize("created_at, timestamp_ms, minute", [
    ("2026-11-25T18:00:17.577Z", 0, "2026-11-25T18:00:00Z"),
    ("2026-11-25T19:59:59.999+02:00", 0, "2026-11-25T17:59:00Z"),  # to UTC
    ("2026-11-25T18:01:00", 0, "2026-11-25T18:01:00Z"),  # no zone: UTC, as X sends it
    (None, 1_795_640_463_123, "2026-11-25T21:01:00Z"),  # no created_at: the record's timestamp
    ("yesterday", 1_795_640_463_123, "2026-11-25T21:01:00Z"),
    # Times that name no minute of the years 1-9999 in UTC: never an error, never a stuck group.
    ("9999-12-31T23:59:59-01:00", 1_795_640_463_123, "2026-11-25T21:01:00Z"),
    ("0001-01-01T00:00:00+01:00", 1_795_640_463_123, "2026-11-25T21:01:00Z"),
    ("0999-05-01T10:11:12Z", 0, "0999-05-01T10:11:00Z"),
    (None, 2**50, "1970-01-01T00:00:00Z"), (None, 2**63 - 1, "1970-01-01T00:00:00Z"),
    (17, -1, "1970-01-01T00:00:00Z"),
])
def test_minute_of_a_tweet(created_at, timestamp_ms, minute):
    assert trends.minute_of(created_at, timestamp_ms) == minute


@pytest.mark.parametrize("value", [
    b"not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000,  # the last: RecursionError
    b"[]", b'{"data": "x"}', b'{"data": {"id": "1"}}', b'{"errors": [{"title": "x"}]}', None,
])
def test_what_is_not_a_tweet_is_skipped(value):
    assert trends.parse_tweet(value) is None


def test_a_batch_counts_each_tweet_once_per_tag_and_keeps_the_counts_apart():
    class Record:
        topic, partition, timestamp = "t", 0, 0

        def __init__(self, offset, value):
            self.offset, self.value = offset, value

    def tweet(text, created_at="2026-11-25T18:00:17.577Z"):
        return json.dumps({"data": {"id": "1", "text": text, "created_at": created_at}}).encode()

    counts = {"2026-11-25T18:00:00Z #kafka": trends.Count("2026-11-25T18:00:00Z", "kafka", 5)}
    totals = trends.Totals()
    batch = {0: [Record(0, tweet("#Kafka #kafka #python")), Record(1, b"{oops"),
                 Record(2, tweet("#kafka", "2026-11-25T18:01:02Z"))]}
    updates = trends.count_batch(batch, counts, totals)
    assert {key: count.count for key, count in updates.items()} == {
        "2026-11-25T18:00:00Z #kafka": 6, "2026-11-25T18:00:00Z #python": 1,
        "2026-11-25T18:01:00Z #kafka": 1}
    assert counts["2026-11-25T18:00:00Z #kafka"].count == 5  # unchanged until Kafka has the update
    assert (totals.tweets, totals.hashtags, totals.skipped) == (2, 3, 1)


def test_help_runs_as_a_script():
    result = subprocess.run([sys.executable, "trends.py", "--help"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert "--at-least-once" in result.stdout and "--output-topic" in result.stdout


def test_a_bad_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        trends.main(["--timeout-ms", "0"])
    assert stopped.value.code == 2
    assert "trends.py: error: argument --timeout-ms" in capsys.readouterr().err


# ---- against the broker ----------------------------------------------------------------------

def replay(bootstrap: str, topic: str, *args: str) -> None:
    """twitter-stream.py --replay into ``topic``, to its end."""
    process = start_script("twitter-stream.py", "--replay", "--topic", topic, "--log-level", "ERROR",
                           *args, env=script_env(bootstrap))
    assert process.finish(timeout_s=60) == 0, process.stderr


def expected_counts(bootstrap: str, topic: str, tweets: int) -> Counter:
    """An independent count of the hashtags per minute of the tweets in ``topic``."""
    expected: Counter = Counter()
    records = kafkatools.read_all(bootstrap, topic, tweets)
    assert len(records) >= tweets
    for record in records:
        tweet = json.loads(record.value)["data"]
        moment = datetime.fromisoformat(tweet["created_at"].replace("Z", "+00:00"))
        minute = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:00Z")
        for tag in {tag.lower() for tag in re.findall(r"#(\w+)", tweet["text"])}:
            expected[f"{minute} #{tag}"] += 1
    return expected


def committed_counts(bootstrap: str, topic: str) -> Counter:
    """The latest count of each key in ``topic``, as a read_committed reader sees them."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        counts: Counter = Counter()
        deadline = time.monotonic() + 30
        while any(consumer.position(p) < end[p] for p in partitions):
            assert time.monotonic() < deadline, "the output topic could not be read to its end"
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    value = json.loads(record.value)
                    assert record.key.decode() == f"{value['window_start']} #{value['hashtag']}"
                    counts[record.key.decode()] = value["count"]
        return counts
    finally:
        consumer.close()


def test_counts_of_the_bundled_replay_are_exact(bootstrap_servers, make_topic, capsys):
    tweets, output = make_topic(3), kafkatools.unique_topic("trends")
    replay(bootstrap_servers, tweets)
    expected = expected_counts(bootstrap_servers, tweets, 300)
    assert trends.main(["--bootstrap-server", bootstrap_servers, "--topic", tweets,
                        "--output-topic", output, "--group", output, "--from-beginning",
                        "--timeout-ms", "1500"]) == 0
    out, err = capsys.readouterr()
    assert committed_counts(bootstrap_servers, output) == expected
    minute, (top, count) = "2026-11-25T18:00:00Z", max(expected.items(), key=lambda kv: kv[1])
    assert f"{top.split()[1]} {count}" in out.splitlines()[-1] and out.startswith(minute)
    assert "counted 300 tweets" in err
    # A second run of the group has nothing left to count, and leaves the counts as they are.
    assert trends.main(["--bootstrap-server", bootstrap_servers, "--topic", tweets,
                        "--output-topic", output, "--group", output, "--timeout-ms", "500"]) == 0
    assert "counted 0 tweets" in capsys.readouterr().err
    assert committed_counts(bootstrap_servers, output) == expected


def count_through_kills(bootstrap: str, kills: int, *mode: str) -> tuple[Counter, Counter, list[float]]:
    """Count a looped replay with trends.py, kill -9 it ``kills`` times at random moments while
    the tweets arrive, restart it each time; then let it finish. Returns the expected counts,
    the final committed ones, and how long each restart took to count again."""
    tweets, output = kafkatools.unique_topic("tweets"), kafkatools.unique_topic("trends")
    env = script_env(bootstrap)
    kafkatools.create_topic(bootstrap, tweets, 3)
    args = ("--topic", tweets, "--output-topic", output, "--group", output, "--from-beginning", *mode)
    publisher = start_script("twitter-stream.py", "--replay", "--loop", "--max-tweets",
                             str(REPLAY_TWEETS), "--rate", str(REPLAY_RATE), "--topic", tweets,
                             "--log-level", "ERROR", env=env)
    counter = start_script("trends.py", *args, env=env)
    recoveries = []
    for kill in range(kills):
        # Let it write a random number of records more (some land inside an open transaction).
        written = kafkatools.end_offset(bootstrap, output)
        step = random.randint(3, 25)
        wait_for(lambda: kafkatools.end_offset(bootstrap, output) >= written + step, 30,
                 what=f"trends.py to write {step} records (kill {kill + 1})")
        # It is counting; now a moment chosen at random within one poll-count-commit cycle
        # (a transaction of 500 tweets takes ~100 ms), not the one just after a write.
        time.sleep(random.uniform(0, 0.15))
        counter.process.kill()  # SIGKILL: no finally, no close, no abort
        counter.finish()
        written, restarted = kafkatools.end_offset(bootstrap, output), time.monotonic()
        counter = start_script("trends.py", *args, env=env)
        # + 2: a transaction it commits is at least one count and the commit marker; the
        # abort marker that init_transactions() may write for the killed one does not do.
        wait_for(lambda: kafkatools.end_offset(bootstrap, output) >= written + 2, RESTART_WITHIN_S,
                 interval_s=0.1, what="the restarted trends.py to count again")
        recoveries.append(time.monotonic() - restarted)
    assert publisher.finish(timeout_s=60) == 0, publisher.stderr
    counter.process.terminate()  # it has counted what came so far; the last run finishes it
    counter.finish()
    last = start_script("trends.py", *args, "--timeout-ms", "2000", env=env)
    assert last.finish(timeout_s=60) == 0, last.stderr
    return (expected_counts(bootstrap, tweets, REPLAY_TWEETS), committed_counts(bootstrap, output),
            recoveries)


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def test_kill_9_at_random_moments_neither_loses_nor_double_counts(bootstrap_servers, capsys):
    expected, counted, recoveries = count_through_kills(bootstrap_servers, 3)
    assert counted == expected
    assert max(recoveries) < RESTART_WITHIN_S
    report(capsys, f"exactly-once: {sum(expected.values())} hashtags counted exactly through 3 "
                   f"kill -9; counting again {', '.join(f'{s:.1f}' for s in recoveries)} s after "
                   f"each restart")


def test_at_least_once_overcounts_after_a_kill(bootstrap_servers, capsys):
    expected, counted, _ = count_through_kills(bootstrap_servers, 3, "--at-least-once")
    assert set(counted) == set(expected)
    assert all(counted[key] >= expected[key] for key in expected)  # never fewer: at least once
    overcount = sum(counted.values()) - sum(expected.values())
    assert overcount >= 0
    report(capsys, f"at-least-once: {overcount} hashtags counted twice after 3 kill -9 "
                   f"({sum(expected.values())} in the tweets, {sum(counted.values())} counted)")


def test_unreachable_broker_is_one_line(capsys):
    from scripts import closed_port

    assert trends.main(["--bootstrap-server", f"127.0.0.1:{closed_port()}"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("waiting for Kafka at 127.0.0.1:")  # said after 1.5 s
    assert lines[1].startswith("trends.py: error: cannot reach Kafka at 127.0.0.1:") and len(lines) == 2


def test_ctrl_c_stops_it_cleanly_with_its_summary(bootstrap_servers, make_topic):
    tweets, output = make_topic(1), kafkatools.unique_topic("trends")
    counter = start_script("trends.py", "--topic", tweets, "--output-topic", output, "--group", output,
                           env=script_env(bootstrap_servers))
    wait_for(lambda: any("restored 0 counts" in line for line in counter.stderr), 30,
             what="trends.py to start counting")
    counter.process.send_signal(signal.SIGINT)
    assert counter.finish() == 130
    assert counter.stderr[-1] == "counted 0 tweets (0 hashtags) in 0 transactions; skipped 0"

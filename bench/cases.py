"""The benchmark cases, each a function of a Context that returns table rows.

Every case runs the real scripts as subprocesses (the same command a learner types), times
the whole command with a monotonic clock, and checks in Kafka that the work was really done
(the topic holds every record) before it counts a run. The references of a case are measured
in the same run, interleaved with the script (script, bare, kcat, script, bare, kcat, ...), so
that drift from other work on the machine hits them alike.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import pty
import re
import select
import shutil
import statistics
import subprocess
import sys
import time
import tty
from pathlib import Path
from typing import Callable

from bench import report, topics
from bench.report import MB, Row, percentile, ratio, ratio_text, target_text

ROOT = Path(__file__).resolve().parent.parent
PRODUCER = ROOT / "producer.py"
CONSUMER = ROOT / "consumer.py"
TWITTER_STREAM = ROOT / "twitter-stream.py"
TRENDS = ROOT / "trends.py"
BARE_PY = ROOT / "bench" / "bare.py"
REPLAY_FILE = ROOT / "data" / "sample-stream.jsonl"

# The reference sizes (BENCH_SCALE multiplies the counts and the latency run's duration).
PRODUCE_EVENTS = 200_000
CONSUME_EVENTS = 200_000
LATENCY_RATE = 1_000  # events/s
LATENCY_DURATION_S = 30
LATENCY_WARMUP_S = 1  # the first second's events (connections, metadata) are left out
TWEETS = 100_000
TUNING_EVENTS = 50_000
TRENDS_TWEETS = 20_000
TRENDS_IDLE_MS = 1_000  # trends.py --timeout-ms: it stops after this long without a tweet

# Targets (reported next to the figures, never asserted).
PRODUCER_TARGET = 1.0  # × the bare kafka-python loop with kafka-python's defaults (what a reader writes)
PRODUCER_TUNED_TARGET = 0.7  # × the bare loop with producer.py's own batching
CONSUMER_TARGET = 0.85
TWITTER_TARGET = 0.8  # × the bare loop with twitter-stream.py's tuning
TWEETS_TARGET = 6_000  # tweets/s: the full firehose's average rate
LATENCY_P99_TARGET_MS = 50

SAMPLE_RECORDS = 1_000  # producer.py's events that the references send again, in a cycle
PROBE_KEY = b"bench-probe"
STREAM_BLOCK_BYTES = 64 * 1024  # the fake stream server writes tweets in chunks of this size
FAKE_TOKEN = "bench-token-for-the-local-fake-stream"
PURE_CRC_BLOCKER = "crc32c.py"
LINGER_TRADE_OFF = {"linger_ms": 20, "batch_size": 512 * 1024}  # what twitter-stream.py uses
# What producer.py passes to KafkaProducer (tests/test_producer.py checks that they agree).
PRODUCER_PY_TUNING = {"linger_ms": 5, "batch_size": 256 * 1024}
BARE = "bare kafka-python loop"
BARE_TUNED = "bare loop, producer.py's batching"
# Slack for a command: generous, so that a slow machine reports slow figures, not failures.
MIN_TIMEOUT_S = 120
MIN_RATE_FOR_TIMEOUT = 500  # records/s: below this a run counts as hung


@dataclasses.dataclass
class Context:
    bootstrap: str
    out: Path  # bench/out: logs and input files, git-ignored
    runs: int
    scale: float
    kcat: str | None
    env: dict[str, str]  # for every subprocess
    python: str = sys.executable
    notes: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    log: Callable[[str], None] = print
    _sample: list[tuple[bytes, bytes]] | None = None  # producer.py's events, read back from Kafka
    _event_bytes: float = math.nan

    def count(self, full: int) -> int:
        return max(1, round(full * self.scale))

    def timeout(self, records: int) -> float:
        return max(MIN_TIMEOUT_S, records / MIN_RATE_FOR_TIMEOUT)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def fail(self, text: str) -> float:
        self.failures.append(text)
        self.log(f"  FAILED: {text}")
        return math.nan


def timed(ctx: Context, name: str, command: list, *, stdin: Path | None = None, env: dict | None = None,
          timeout: float = MIN_TIMEOUT_S) -> float:
    """Run ``command`` with stdout to /dev/null; its wall time in seconds, or NaN if it failed."""
    logs = ctx.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{name}.log"
    command = [str(part) for part in command]
    with log_file.open("wb") as stderr, (stdin.open("rb") if stdin else open(os.devnull, "rb")) as source:
        began = time.perf_counter()
        try:
            result = subprocess.run(command, stdin=source, stdout=subprocess.DEVNULL, stderr=stderr,
                                    cwd=ROOT, env=env or ctx.env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return ctx.fail(f"{name}: still running after {timeout:.0f} s, killed (log: {log_file})")
        elapsed = time.perf_counter() - began
    if result.returncode != 0:
        return ctx.fail(f"{name}: exit code {result.returncode} (log: {log_file})")
    ctx.log(f"  {name}: {elapsed:.2f} s")
    return elapsed


def checked_rate(ctx: Context, name: str, seconds: float, topic: str, expected: int) -> float:
    """expected/seconds, if the topic really holds ``expected`` records; NaN otherwise."""
    if math.isnan(seconds):
        return math.nan
    held = topics.record_count(ctx.bootstrap, topic)
    if held != expected:
        return ctx.fail(f"{name}: the topic holds {held} records, not {expected}")
    return expected / seconds


def kcat_producer(ctx: Context, topic: str) -> list:
    # The same durability as the scripts: acks=all, idempotence (librdkafka's names).
    return [ctx.kcat, "-P", "-b", ctx.bootstrap, "-t", topic, "-K", "\t",
            "-X", "acks=all", "-X", "enable.idempotence=true"]


def bare_producer(ctx: Context, topic: str, count: int, input_file: Path, **options) -> list:
    command = [ctx.python, BARE_PY, "produce", "--bootstrap-server", ctx.bootstrap, "--topic", topic,
               "--count", count, "--input", input_file]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", value]
    return command


def no_kcat(ctx: Context) -> bool:
    if ctx.kcat is None:
        ctx.note("kcat is not installed (Debian/Ubuntu: `apt-get install kcat`; macOS: `brew install kcat`): "
                 "its rows are left out.")
        return True
    return False


def missing_script(ctx: Context, *scripts: Path) -> bool:
    missing = [script.name for script in scripts if not script.is_file()]
    if missing:
        ctx.note(f"{', '.join(missing)} not found: the rows that run it are left out.")
    return bool(missing)


def events_file(ctx: Context, count: int) -> Path:
    """``count`` of producer.py's own events, as KEY<TAB>VALUE lines: what the references send.

    The events come from a first producer.py run, so that bare.py and kcat send exactly the
    bytes the script sends (size included); they are reused in a cycle to make up ``count``.
    """
    if ctx._sample is None:
        topic = topics.create_topic(ctx.bootstrap, "sample")
        command = [ctx.python, PRODUCER, "--bootstrap-server", ctx.bootstrap, "--topic", topic,
                   "--count", SAMPLE_RECORDS, "--quiet"]
        if math.isnan(timed(ctx, "sample-events", command)):
            raise RuntimeError("producer.py could not write the sample events")
        ctx._sample = topics.sample_records(ctx.bootstrap, topic, SAMPLE_RECORDS)
        topics.delete_topics(ctx.bootstrap, [topic])
        ctx._event_bytes = statistics.fmean(len(key) + len(value) for key, value in ctx._sample)
        ctx.note(f"Events: producer.py's own JSON events, {ctx._event_bytes:.0f} bytes each on average "
                 f"(key + value); the bare loop and kcat send the same records again ({SAMPLE_RECORDS:,} of them, "
                 f"in a cycle). MB/s counts those key + value bytes (10^6 bytes), not protocol overhead.")
    return topics.write_records(ctx.out / f"events-{count}.tsv", ctx._sample, count)


def tweets_file(ctx: Context) -> tuple[Path, list[bytes]]:
    """The shipped sample stream's tweet lines (malformed lines and error objects left out)."""
    lines = []
    for line in REPLAY_FILE.read_bytes().splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and isinstance(message.get("data"), dict) and "id" in message["data"]:
            lines.append(line)
    records = [(json.loads(line)["data"]["id"].encode(), line) for line in lines]
    return topics.write_records(ctx.out / "tweets.tsv", records, len(records)), lines


def pure_crc_env(ctx: Context) -> dict[str, str]:
    """An environment in which kafka-python cannot import the `crc32c` C extension."""
    blocker_dir = ctx.out / "pure-python-crc"
    blocker_dir.mkdir(parents=True, exist_ok=True)
    (blocker_dir / PURE_CRC_BLOCKER).write_text(
        '"""Put first on PYTHONPATH by the benchmark: kafka-python falls back to its pure-Python CRC-32C."""\n'
        'raise ImportError("crc32c is hidden by bench/ to measure the pure-Python CRC-32C")\n')
    env = dict(ctx.env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocker_dir), env.get("PYTHONPATH")]))
    return env


def twitter_tuning() -> dict:
    """twitter-stream.py's PRODUCER_TUNING, read from the script so the reference stays in step."""
    spec = importlib.util.spec_from_file_location("twitter_stream_for_bench", TWITTER_STREAM)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return dict(module.PRODUCER_TUNING)


# ---- 1. producing --------------------------------------------------------------------------

def produce(ctx: Context) -> list[Row]:
    case = f"1. produce {ctx.count(PRODUCE_EVENTS):,} events"
    if missing_script(ctx, PRODUCER):
        return []
    count = ctx.count(PRODUCE_EVENTS)
    input_file = events_file(ctx, count)
    subjects = {
        "producer.py": lambda topic: [ctx.python, PRODUCER, "--bootstrap-server", ctx.bootstrap, "--topic", topic,
                                      "--count", count, "--quiet"],
        BARE: lambda topic: bare_producer(ctx, topic, count, input_file),
        BARE_TUNED: lambda topic: bare_producer(ctx, topic, count, input_file, **PRODUCER_PY_TUNING),
    }
    if not no_kcat(ctx):
        subjects["kcat -P"] = lambda topic: kcat_producer(ctx, topic)
    rates: dict[str, list[float]] = {subject: [] for subject in subjects}
    for run in range(ctx.runs):
        for subject, command in subjects.items():
            topic = topics.create_topic(ctx.bootstrap, "produce")
            name = f"produce-{subject.split()[0]}-{run + 1}"
            stdin = input_file if subject.startswith("kcat") else None
            seconds = timed(ctx, name, command(topic), stdin=stdin, timeout=ctx.timeout(count))
            rates[subject].append(checked_rate(ctx, name, seconds, topic, count))
            topics.delete_topics(ctx.bootstrap, [topic])
    rows = throughput_rows(ctx, case, rates, "events/s", "producer.py", PRODUCER_TARGET)
    script, tuned = rows[0], next(row for row in rows if row.subject == BARE_TUNED)
    tuned_ratio = ratio(script, tuned)
    script.ratio += f", {ratio_text(script, tuned, 'same batching')}"
    script.target += "; " + target_text(f"≥ {PRODUCER_TUNED_TARGET}× same batching",
                                        None if math.isnan(tuned_ratio) else tuned_ratio >= PRODUCER_TUNED_TARGET)
    return rows


def throughput_rows(ctx: Context, case: str, rates: dict[str, list[float]], unit: str, script: str,
                    goal: float) -> list[Row]:
    """events/s and MB/s rows; the script's ratios against the references, and its target."""
    rows = {subject: Row(case, subject, unit, values) for subject, values in rates.items()}
    bare = rows[BARE]
    kcat = next((row for subject, row in rows.items() if subject.startswith("kcat")), None)
    for row in rows.values():
        parts = [ratio_text(row, bare, "bare") if row is not bare else "",
                 ratio_text(row, kcat, "kcat") if kcat is not None and row is not kcat else ""]
        row.ratio = ", ".join(part for part in parts if part)
    script_row = rows[script]
    script_ratio = ratio(script_row, bare)
    script_row.target = target_text(f"≥ {goal}× bare", None if math.isnan(script_ratio) else script_ratio >= goal)
    megabytes = [Row(case, subject, "MB/s", [value * ctx._event_bytes / MB for value in row.values])
                 for subject, row in rows.items()]
    return list(rows.values()) + megabytes


# ---- 2. consuming --------------------------------------------------------------------------

def consume(ctx: Context) -> list[Row]:
    case = f"2. consume {ctx.count(CONSUME_EVENTS):,} events"
    if missing_script(ctx, PRODUCER, CONSUMER):
        return []
    count = ctx.count(CONSUME_EVENTS)
    input_file = events_file(ctx, count)
    topic = topics.create_topic(ctx.bootstrap, "consume")
    fill = (kcat_producer(ctx, topic) if ctx.kcat else bare_producer(ctx, topic, count, input_file))
    filled = timed(ctx, "consume-fill", fill, stdin=input_file if ctx.kcat else None, timeout=ctx.timeout(count))
    if math.isnan(checked_rate(ctx, "consume-fill", filled, topic, count)):
        return []

    def consumer_py(group: str) -> list:
        return [ctx.python, CONSUMER, "--bootstrap-server", ctx.bootstrap, "--topic", topic, "--group", group,
                "--from-beginning", "--max-messages", count, "--format", "json"]

    subjects = {
        "consumer.py --format json > /dev/null": consumer_py,
        "bare kafka-python loop": lambda group: [ctx.python, BARE_PY, "consume", "--bootstrap-server", ctx.bootstrap,
                                                 "--topic", topic, "--count", count, "--group", group],
    }
    if not no_kcat(ctx):
        subjects["kcat -C -e > /dev/null"] = lambda group: [ctx.kcat, "-C", "-b", ctx.bootstrap, "-t", topic,
                                                            "-o", "beginning", "-e", "-q", "-c", count]
    rates: dict[str, list[float]] = {subject: [] for subject in subjects}
    for run in range(ctx.runs):
        for subject, command in subjects.items():
            group = topics.unique_name("group")
            name = f"consume-{subject.split()[0]}-{run + 1}"
            seconds = timed(ctx, name, command(group), timeout=ctx.timeout(count))
            rates[subject].append(count / seconds)
            if subject.startswith("consumer.py") and not math.isnan(seconds):
                done = topics.committed(ctx.bootstrap, topic, group)
                if done != count:
                    ctx.note(f"consumer.py committed offset {done:,} after reading {count:,} records "
                             f"(run {run + 1}): expected {count:,}.")
    topics.delete_topics(ctx.bootstrap, [topic])
    return throughput_rows(ctx, case, rates, "events/s", "consumer.py --format json > /dev/null", CONSUMER_TARGET)


# ---- 3. end-to-end latency -----------------------------------------------------------------

class TerminalLines:
    """Lines a child prints on a pseudo-terminal, each with the wall-clock time it was read.

    A terminal, not a pipe: that is where a learner sees consumer.py's output, and Python
    flushes stdout at each line only there (into a pipe it would buffer 8 KB).
    """

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, b""

    def read(self, timeout_s: float) -> tuple[float, list[bytes]]:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return time.time(), []
        try:
            data = os.read(self.fd, 1 << 16)
        except OSError:  # EIO: the child has exited and the terminal is closed
            data = b""
        now = time.time()
        if not data:
            raise EOFError
        *lines, self.pending = (self.pending + data).split(b"\n")
        return now, [line.rstrip(b"\r") for line in lines]


def record_timestamp(line: bytes) -> float | None:
    """The record's timestamp (ms) in one line of `consumer.py --format json`, if it is one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    value = record.get("timestamp")
    return float(value) if isinstance(value, (int, float)) else None


def measure_latency(ctx: Context, name: str, sender: Callable[[str], list],
                    count: int) -> list[tuple[float, float]] | None:
    """(sent at, latency) in ms of ``count`` events, from send() to consumer.py's printed line.

    None if the run failed (the reason is in ctx.failures).
    """
    topic = topics.create_topic(ctx.bootstrap, "latency")
    group = topics.unique_name("latency")
    log_dir = ctx.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    terminal, child_side = pty.openpty()
    tty.setraw(child_side)  # no "\n" -> "\r\n", no echo
    consumer_command = [str(part) for part in (
        ctx.python, CONSUMER, "--bootstrap-server", ctx.bootstrap, "--topic", topic, "--group", group,
        "--from-beginning", "--format", "json", "--max-messages", count + 1)]
    processes: list[subprocess.Popen] = []
    with (log_dir / f"{name}-consumer.log").open("wb") as consumer_log, \
            (log_dir / f"{name}-sender.log").open("wb") as sender_log:
        try:
            processes.append(subprocess.Popen(consumer_command, stdin=subprocess.DEVNULL, stdout=child_side,
                                              stderr=consumer_log, cwd=ROOT, env=ctx.env))
            os.close(child_side)
            lines = TerminalLines(terminal)
            # A probe record first: once consumer.py prints it, it has joined its group and caught
            # up, so the measured events do not wait for a rebalance.
            topics.send_one(ctx.bootstrap, topic, PROBE_KEY, b'{"probe": true}')
            if not wait_for_probe(lines, deadline=time.monotonic() + MIN_TIMEOUT_S):
                ctx.fail(f"{name}: consumer.py did not print the probe record (log: {consumer_log.name})")
                return None
            processes.append(subprocess.Popen([str(part) for part in sender(topic)], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=sender_log, cwd=ROOT, env=ctx.env))
            latencies = []
            deadline = time.monotonic() + count / LATENCY_RATE * 3 + MIN_TIMEOUT_S
            try:
                while len(latencies) < count and time.monotonic() < deadline:
                    now, got = lines.read(timeout_s=1.0)
                    for line in got:
                        sent = record_timestamp(line)
                        if sent is not None:
                            latencies.append((sent, now * 1000 - sent))
            except EOFError:
                pass
            if processes[1].wait(timeout=MIN_TIMEOUT_S) != 0:
                ctx.fail(f"{name}: the sender exited with {processes[1].returncode} (log: {sender_log.name})")
                return None
            if len(latencies) < count:
                ctx.fail(f"{name}: consumer.py printed {len(latencies)} of {count} events")
                return None
            return latencies
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            os.close(terminal)
            topics.delete_topics(ctx.bootstrap, [topic])


def wait_for_probe(lines: TerminalLines, deadline: float) -> bool:
    try:
        while time.monotonic() < deadline:
            _, got = lines.read(timeout_s=1.0)
            if any(b"probe" in line for line in got):
                return True
    except EOFError:
        pass
    return False


def latency(ctx: Context) -> list[Row]:
    duration = LATENCY_DURATION_S * ctx.scale
    count = max(1, round(LATENCY_RATE * duration))
    warmup = min(count // 2, LATENCY_RATE * LATENCY_WARMUP_S)
    case = f"3. end-to-end latency, {LATENCY_RATE:,} events/s for {duration:g} s"
    if missing_script(ctx, PRODUCER, CONSUMER):
        return []
    input_file = events_file(ctx, SAMPLE_RECORDS)  # bare.py cycles through it
    # producer.py with its own batching (linger 5 ms, the Java client's default), then the same
    # events from the bare loop with kafka-python's linger 0 and with more linger: what batching
    # costs, and buys, at this rate.
    senders = {
        "producer.py → consumer.py (linger 5 ms, batch 256 KB)": lambda topic: [
            ctx.python, PRODUCER, "--bootstrap-server", ctx.bootstrap, "--topic", topic,
            "--count", count, "--rate", LATENCY_RATE, "--quiet"],
        "bare producer, kafka-python defaults (linger 0) → consumer.py": lambda topic: bare_producer(
            ctx, topic, count, input_file, rate=LATENCY_RATE),
        "bare producer, linger 20 ms, batch 512 KB → consumer.py": lambda topic: bare_producer(
            ctx, topic, count, input_file, rate=LATENCY_RATE, **LINGER_TRADE_OFF),
    }
    short_names = dict(zip(senders, ("script", "linger0", "linger20")))
    figures: dict[str, dict[str, list[float]]] = {
        sender: {"p50": [], "p95": [], "p99": [], "rate": []} for sender in senders}
    for run in range(ctx.runs):
        for sender, command in senders.items():
            name = f"latency-{short_names[sender]}-{run + 1}"
            events = measure_latency(ctx, name, command, count) or []
            measured = sorted(latency for _, latency in events[warmup:])
            for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
                figures[sender][label].append(percentile(measured, fraction))
            # The rate the sender really kept after the warm-up, from the records' own send times.
            kept = events[warmup:]
            span_s = (kept[-1][0] - kept[0][0]) / 1000 if len(kept) > 1 else 0
            figures[sender]["rate"].append((len(kept) - 1) / span_s if span_s > 0 else math.nan)
            ctx.log(f"  {name}: " + (f"{len(events)} events, p99 {figures[sender]['p99'][-1]:.1f} ms"
                                     if events else "failed"))
    ctx.note(f"Latency: the time from kafka-python's send() (the record's CreateTime, set in send(), in "
             f"whole ms) to the moment the harness reads consumer.py's printed line from a "
             f"pseudo-terminal (where a learner sees it). Same machine, same clock. The first "
             f"{warmup:,} events (the first second) are left out as warm-up; the rest ({count - warmup:,} "
             f"per run) are ranked: nearest-rank p50/p95/p99 per run, then the median of the runs. "
             f"Truncation to whole ms makes each latency up to 1 ms too high.")
    rows = []
    for sender, values in figures.items():
        rows.append(Row(case, f"{sender}: send rate kept", "events/s", values["rate"]))
        for label in ("p50", "p95", "p99"):
            row = Row(case, f"{sender}: {label}", "ms", values[label])
            if label == "p99" and sender.startswith("producer.py"):
                met = None if not row.valid else row.median <= LATENCY_P99_TARGET_MS
                row.target = target_text(f"≤ {LATENCY_P99_TARGET_MS} ms", met)
            rows.append(row)
    return rows


# ---- 4. twitter-stream.py ------------------------------------------------------------------

def stream_blocks(lines: list[bytes], count: int) -> list[bytes]:
    """``count`` tweet lines (the sample's, in a cycle), "\\r\\n"-ended, in blocks of ~64 KB."""
    blocks, block = [], bytearray()
    for number in range(count):
        block += lines[number % len(lines)] + b"\r\n"
        if len(block) >= STREAM_BLOCK_BYTES:
            blocks.append(bytes(block))
            block.clear()
    if block:
        blocks.append(bytes(block))
    return blocks


def twitter(ctx: Context) -> list[Row]:
    count = ctx.count(TWEETS)
    case = f"4. twitter-stream.py, {count:,} tweets, acks=all"
    from testkit.fake_x_api import FakeXApi, Raw  # the tests' real HTTP fake of X's stream

    input_file, lines = tweets_file(ctx)
    blocks = stream_blocks(lines, count)
    tuning = twitter_tuning()
    live_env = dict(ctx.env, TWITTER_BEARER_TOKEN=FAKE_TOKEN)

    def from_stream(topic: str, run: int) -> float:
        with FakeXApi(token=FAKE_TOKEN) as api:
            api.expect([Raw(block) for block in blocks])
            env = dict(live_env, TWITTER_API_URL=api.url)
            command = [ctx.python, TWITTER_STREAM, "--bootstrap-server", ctx.bootstrap, "--topic", topic,
                       "--max-tweets", count]
            return timed(ctx, f"twitter-live-{run}", command, env=env, timeout=ctx.timeout(count))

    def from_replay(topic: str, run: int) -> float:
        command = [ctx.python, TWITTER_STREAM, "--replay", "--loop", "--max-tweets", count,
                   "--bootstrap-server", ctx.bootstrap, "--topic", topic]
        return timed(ctx, f"twitter-replay-{run}", command, timeout=ctx.timeout(count))

    def bare(topic: str, run: int) -> float:
        return timed(ctx, f"twitter-bare-{run}", bare_producer(ctx, topic, count, input_file, **tuning),
                     timeout=ctx.timeout(count))

    def bare_with_headers(topic: str, run: int) -> float:
        command = bare_producer(ctx, topic, count, input_file, **tuning) + ["--headers"]
        return timed(ctx, f"twitter-bare-headers-{run}", command, timeout=ctx.timeout(count))

    subjects = {
        "twitter-stream.py ← local stream server (HTTP, chunked)": from_stream,
        "twitter-stream.py --replay --loop": from_replay,
        "bare loop, same tweets, tuning and headers": bare_with_headers,
        "bare kafka-python loop, same tweets and tuning": bare,
    }
    rates: dict[str, list[float]] = {subject: [] for subject in subjects}
    for run in range(1, ctx.runs + 1):
        for subject, measure in subjects.items():
            topic = topics.create_topic(ctx.bootstrap, "tweets")
            rates[subject].append(checked_rate(ctx, subject, measure(topic, run), topic, count))
            topics.delete_topics(ctx.bootstrap, [topic])
    rows = [Row(case, subject, "tweets/s", values) for subject, values in rates.items()]
    same_job, reference = rows[-2], rows[-1]
    same_job.ratio = ratio_text(same_job, reference, "bare")
    for row in rows[:-2]:
        same = ratio(row, same_job)
        row.ratio = f"{ratio_text(row, same_job, 'bare with headers')}, {ratio_text(row, reference, 'bare')}"
        row.target = "; ".join([
            target_text(f"≥ {TWEETS_TARGET:,} tweets/s", None if not row.valid else row.median >= TWEETS_TARGET),
            target_text(f"≥ {TWITTER_TARGET}× bare with headers",
                        None if math.isnan(same) else same >= TWITTER_TARGET)])
    tweet_bytes = statistics.fmean(len(line) for line in lines)
    ctx.note(f"twitter-stream.py: the shipped sample's {len(lines)} tweets ({tweet_bytes:.0f} bytes each on "
             f"average), in a cycle. Live: the tests' fake X API (testkit/fake_x_api.py, a real local HTTP "
             f"server) writes them as fast as it can, in chunked ~64 KB blocks; --replay reads "
             f"data/sample-stream.jsonl itself (whose malformed line and error object are skipped on each pass, logged on the first "
             f"only). Whole-command wall time (Python start and Kafka connect included), "
             f"every tweet acknowledged. The bare loop sends the same tweets with the script's producer "
             f"settings ({', '.join(f'{k}={v}' for k, v in tuning.items())}), once with the script's two "
             f"headers (source, received_at: the same records) and once without.")
    return rows


# ---- 6. producer tuning --------------------------------------------------------------------

def tuning(ctx: Context) -> list[Row]:
    count = ctx.count(TUNING_EVENTS)
    case = f"6. kafka-python producer settings, {count:,} tweets, acks=all"
    input_file, _ = tweets_file(ctx)
    settings: dict[str, tuple[dict, dict]] = {
        "kafka-python defaults (linger 0, batch 16 KB)": ({}, ctx.env),
        "linger 5 ms": ({"linger_ms": 5}, ctx.env),
        "batch 512 KB": ({"batch_size": 512 * 1024}, ctx.env),
        "linger 20 ms, batch 512 KB (twitter-stream.py)": (LINGER_TRADE_OFF, ctx.env),
        "linger 20 ms, batch 512 KB, gzip": ({**LINGER_TRADE_OFF, "compression": "gzip"}, ctx.env),
    }
    if report.crc32c_implementation().startswith("C") and "pure-python-crc" not in ctx.env.get("PYTHONPATH", ""):
        settings["defaults, pure-Python CRC-32C (no `crc32c` package)"] = ({}, pure_crc_env(ctx))
    rates: dict[str, list[float]] = {label: [] for label in settings}
    for run in range(1, ctx.runs + 1):
        for number, (label, (options, env)) in enumerate(settings.items(), start=1):
            topic = topics.create_topic(ctx.bootstrap, "tuning")
            name = f"tuning-{number}-{run}"
            seconds = timed(ctx, name, bare_producer(ctx, topic, count, input_file, **options), env=env,
                            timeout=ctx.timeout(count))
            rates[label].append(checked_rate(ctx, name, seconds, topic, count))
            topics.delete_topics(ctx.bootstrap, [topic])
    rows = [Row(case, f"bare loop: {label}", "tweets/s", values) for label, values in rates.items()]
    for row in rows[1:]:
        row.ratio = ratio_text(row, rows[0], "defaults")
    return rows


# ---- 5. broker start -----------------------------------------------------------------------

def broker_start(ctx: Context) -> list[Row]:
    from broker import cluster

    times = []
    for run in range(1, ctx.runs + 1):
        data_dir = ctx.out / f"broker-start-{run}"
        shutil.rmtree(data_dir, ignore_errors=True)
        command = [ctx.python, "-m", "broker", "start", "--data-dir", data_dir, "--port", cluster.free_port()]
        try:
            times.append(timed(ctx, f"broker-start-{run}", command, timeout=cluster.START_TIMEOUT_S + 30))
        finally:
            subprocess.run([ctx.python, "-m", "broker", "stop", "--wipe", "--data-dir", str(data_dir)],
                           cwd=ROOT, env=ctx.env, capture_output=True, check=False)
    ctx.note("Broker start: `python -m broker start` on a new data dir (format + JVM start + the first "
             "answer to an ApiVersions request), jars already cached; stopped and wiped after each run.")
    return [Row("5. broker start to ready (jars cached)", "python -m broker start, fresh data dir", "s", times)]


# ---- 7. trends.py: exactly once vs at-least-once -------------------------------------------

def trends(ctx: Context) -> list[Row]:
    """trends.py counting the same tweets with transactions and with --at-least-once, each run
    from the beginning into a new output topic, interleaved."""
    if missing_script(ctx, TRENDS):
        return []
    count = ctx.count(TRENDS_TWEETS)
    case = f"7. trends.py, {count:,} tweets counted per minute and hashtag"
    input_file, _ = tweets_file(ctx)
    tweets = topics.create_topic(ctx.bootstrap, "trends-tweets", partitions=3)
    if math.isnan(timed(ctx, "trends-fill", bare_producer(ctx, tweets, count, input_file),
                        timeout=ctx.timeout(count))):
        return []
    modes = {"exactly once (transactions)": [], "--at-least-once (no transactions)": ["--at-least-once"]}
    rates: dict[str, list[float]] = {label: [] for label in modes}
    for run in range(1, ctx.runs + 1):
        for number, (label, flags) in enumerate(modes.items(), start=1):
            output, name = topics.unique_name("trends"), f"trends-{number}-{run}"
            command = [ctx.python, TRENDS, "--bootstrap-server", ctx.bootstrap, "--topic", tweets,
                       "--output-topic", output, "--group", output, "--from-beginning",
                       "--timeout-ms", TRENDS_IDLE_MS, *flags]
            seconds = timed(ctx, name, command, timeout=ctx.timeout(count))
            rates[label].append(trends_rate(ctx, name, seconds, count))
            topics.delete_topics(ctx.bootstrap, [output])
    topics.delete_topics(ctx.bootstrap, [tweets])
    rows = [Row(case, f"trends.py, {label}", "tweets/s", values) for label, values in rates.items()]
    rows[0].ratio = ratio_text(rows[0], rows[1], "at-least-once")
    ctx.note(f"trends.py: the shipped sample's tweets in a cycle, in a topic of 3 partitions; each run "
             f"counts all {count:,} from the beginning into a new compacted output topic. The rate is "
             f"trends.py's own (tweets / time from each poll that returned tweets to its commit), so "
             f"Python start, restoring and the {TRENDS_IDLE_MS} ms idle wait at the end are left out. "
             f"A transaction per poll of up to 500 tweets.")
    return rows


def trends_rate(ctx: Context, name: str, seconds: float, expected: int) -> float:
    """The tweets/s of trends.py's summary line, if it counted all ``expected`` tweets."""
    if math.isnan(seconds):
        return math.nan
    summary = (ctx.out / "logs" / f"{name}.log").read_text(errors="replace")
    match = re.search(r"counted (\d+) tweets .*?, ([\d,]+) tweets/s", summary)
    if not match or int(match[1]) != expected:
        return ctx.fail(f"{name}: did not count {expected} tweets (log: bench/out/logs/{name}.log)")
    return float(match[2].replace(",", ""))


# ---- profiles (--profile) ------------------------------------------------------------------

def profiles(ctx: Context) -> list[Row]:
    """Each script once under pyinstrument: text reports in bench/out/profile-*.txt.

    pyinstrument samples the main thread only: the script's own code and the time it waits on
    kafka-python. kafka-python's I/O thread (batching, checksums, the socket) does not show;
    `py-spy record -f raw` samples every thread (bench/README.md).
    """
    count = ctx.count(PRODUCE_EVENTS)
    reports = []

    def profile(name: str, script_and_args: list) -> None:
        report_file = ctx.out / f"profile-{name}.txt"
        command = [ctx.python, "-m", "pyinstrument", "--renderer", "text", "--no-color", "--outfile", report_file,
                   *script_and_args]
        if not math.isnan(timed(ctx, f"profile-{name}", command, timeout=ctx.timeout(count) * 3)):
            reports.append(os.path.relpath(report_file, ROOT))

    if not missing_script(ctx, PRODUCER, CONSUMER):
        topic = topics.create_topic(ctx.bootstrap, "profile")
        profile("producer", [PRODUCER, "--bootstrap-server", ctx.bootstrap, "--topic", topic, "--count", count,
                             "--quiet"])
        profile("consumer", [CONSUMER, "--bootstrap-server", ctx.bootstrap, "--topic", topic, "--from-beginning",
                             "--max-messages", count, "--format", "json"])
        topics.delete_topics(ctx.bootstrap, [topic])
    topic = topics.create_topic(ctx.bootstrap, "profile")
    profile("twitter-stream", [TWITTER_STREAM, "--replay", "--loop", "--max-tweets", ctx.count(TWEETS),
                               "--bootstrap-server", ctx.bootstrap, "--topic", topic])
    topics.delete_topics(ctx.bootstrap, [topic])
    if reports:
        ctx.note(f"Profiles (pyinstrument, main thread only): {', '.join(reports)}.")
    return []


# Run order: the broker case first (before the harness's own broker adds load); then the rest.
CASES: dict[str, Callable[[Context], list[Row]]] = {
    "broker": broker_start,
    "produce": produce,
    "consume": consume,
    "latency": latency,
    "twitter": twitter,
    "tuning": tuning,
    "trends": trends,
}
TABLE_ORDER = ("produce", "consume", "latency", "twitter", "broker", "tuning", "trends")

"""The references the scripts are measured against: bare kafka-python loops.

Each does the least a kafka-python program can do for the job, with the same client settings
the scripts write at their clients' calls (acks=all, idempotence, a consumer group with
manual commits), so "script / bare" is the cost of our own code:

    $ python bench/bare.py produce --bootstrap-server 127.0.0.1:9092 --topic t --count 200000 \\
          --input bench/out/events.tsv
    bare.py: sent 200000, failed 0 in 9.412 s (21,250 records/s)
    $ python bench/bare.py consume --bootstrap-server 127.0.0.1:9092 --topic t --count 200000
    bare.py: received 200000 in 2.011 s (99,453 records/s)
    $ python bench/bare.py produce --topic t --count 10 --input missing.tsv
    bare.py: cannot read missing.tsv: [Errno 2] No such file or directory: 'missing.tsv'

The input file has one record a line, "KEY<TAB>VALUE", the format `kcat -P -K '\\t'` reads,
so the bare loop and kcat send the very same bytes. Records are reused in a cycle to make
up --count. Exit codes: 0 ok, 1 a record failed or too few arrived, 2 usage.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

# Run as `python bench/bare.py`: the repository root (for config.py) is one level up.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cli  # noqa: E402
import config  # noqa: E402

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.errors import KafkaError  # noqa: E402

PROG = "bare.py"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
POLL_TIMEOUT_MS = 1000
# A run that receives nothing for this long has failed (the topic is short, or the broker gone).
IDLE_LIMIT_S = 30


def read_records(path: Path) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs from a "KEY<TAB>VALUE" file; a line without a tab has no key."""
    records = []
    for line in path.read_bytes().splitlines():
        key, tab, value = line.partition(b"\t")
        records.append((key, value) if tab else (b"", key))
    return records


def produce(bootstrap: str, topic: str, count: int, records: list[tuple[bytes, bytes]],
            rate: float | None = None, headers: bool = False, **tuning) -> int:
    """Send ``count`` records (cycling through ``records``); return how many failed."""
    settings = config.load().override(bootstrap_servers=bootstrap)
    producer = KafkaProducer(**config.connection_kwargs(settings), acks="all", enable_idempotence=True,
                             **tuning)
    began = time.perf_counter()
    futures = []
    clock = cli.UtcClock()  # with --headers: the received_at header twitter-stream.py sends
    try:
        for number, (key, value) in enumerate(itertools.islice(itertools.cycle(records), count)):
            if rate:  # the n-th record goes out n/rate seconds after the start
                ahead = began + number / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            futures.append(producer.send(topic, value=value, key=key or None, headers=[
                ("source", b"replay"), ("received_at", clock.now().encode())] if headers else None))
        producer.flush()
    finally:
        producer.close()
    # flush() alone does not prove delivery: each future says whether its record made it.
    failed = sum(1 for future in futures if future.failed())
    elapsed = time.perf_counter() - began
    print(f"{PROG}: sent {count}, failed {failed} in {elapsed:.3f} s ({count / elapsed:,.0f} records/s)",
          file=sys.stderr)
    return failed


def consume(bootstrap: str, topic: str, count: int, group: str) -> int:
    """Poll ``topic`` from the beginning until ``count`` records arrived; return how many did."""
    settings = config.load().override(bootstrap_servers=bootstrap, group_id=group)
    consumer = KafkaConsumer(topic, **config.connection_kwargs(settings), group_id=settings.group_id,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    began = last_seen = time.perf_counter()
    received = 0
    try:
        while received < count and time.perf_counter() - last_seen < IDLE_LIMIT_S:
            for records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                received += len(records)
                last_seen = time.perf_counter()
        consumer.commit()  # what consumer.py does too, if less often
    finally:
        consumer.close()
    elapsed = time.perf_counter() - began
    print(f"{PROG}: received {received} in {elapsed:.3f} s ({received / elapsed:,.0f} records/s)",
          file=sys.stderr)
    return received


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Bare kafka-python loops: the benchmarks' reference.")
    commands = parser.add_subparsers(dest="command", required=True)
    producer = commands.add_parser("produce", help="send records from a file, acks=all, idempotent")
    consumer = commands.add_parser("consume", help="read records, print nothing, commit at the end")
    for command in (producer, consumer):
        command.add_argument("--bootstrap-server", default=config.DEFAULT_BOOTSTRAP_SERVERS,
                             help=f"Kafka broker (default {config.DEFAULT_BOOTSTRAP_SERVERS})")
        command.add_argument("--topic", required=True, help="topic to write or read")
        command.add_argument("--count", type=int, required=True, help="how many records")
    producer.add_argument("--input", type=Path, required=True, help="KEY<TAB>VALUE lines to send, in a cycle")
    producer.add_argument("--rate", type=float, help="records per second (default: as fast as it goes)")
    producer.add_argument("--linger-ms", type=int, help="KafkaProducer linger_ms (default: kafka-python's)")
    producer.add_argument("--batch-size", type=int, help="KafkaProducer batch_size (default: kafka-python's)")
    producer.add_argument("--headers", action="store_true",
                          help="send twitter-stream.py's two headers (source, received_at) with each record")
    producer.add_argument("--compression", choices=("gzip", "snappy", "lz4", "zstd"),
                          help="KafkaProducer compression_type (default: none)")
    consumer.add_argument("--group", default="bench-bare", help="consumer group (default bench-bare)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    config.setup_logging("WARNING")
    try:
        if options.command == "consume":
            received = consume(options.bootstrap_server, options.topic, options.count, options.group)
            return EXIT_OK if received >= options.count else EXIT_ERROR
        try:
            records = read_records(options.input)
        except OSError as exc:
            print(f"{PROG}: cannot read {options.input}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not records:
            print(f"{PROG}: {options.input} holds no records", file=sys.stderr)
            return EXIT_USAGE
        tuning = {name: value for name, value in (("linger_ms", options.linger_ms),
                                                  ("batch_size", options.batch_size),
                                                  ("compression_type", options.compression))
                  if value is not None}
        failed = produce(options.bootstrap_server, options.topic, options.count, records,
                         options.rate, options.headers, **tuning)
        return EXIT_ERROR if failed else EXIT_OK
    except KafkaError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_ERROR

if __name__ == "__main__":
    sys.exit(main())

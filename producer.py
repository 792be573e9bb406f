"""Send events to Kafka and print each one as the broker acknowledges it.

By default it sends six example events (a payment, a website click, a temperature reading,
...) as JSON to the topic ``sample``, keyed by user or sensor: Kafka puts all events with the
same key into the same partition, where they stay in order. With ``--stdin`` each line of
standard input is one message.

    $ python producer.py
    created topic 'sample' with 3 partitions
    delivered partition=0 offset=0 key=alice
    delivered partition=1 offset=0 key=sensor-1
    ...
    sent 6, acknowledged 6, failed 0 in 0.13 s (46.4 events/s)

    $ printf 'alice:signed up\\nbob:logged in\\n' | python producer.py --stdin --key-separator :
    delivered partition=0 offset=4 key=alice
    delivered partition=0 offset=5 key=bob
    sent 2, acknowledged 2, failed 0 in 0.11 s (18.0 events/s)

    $ python producer.py --count -1
    usage: producer.py [-h] ...
    producer.py: error: argument --count: must be a whole number of 0 or more, not -1

Deliveries go to stdout, the summary and errors to stderr. Exit status: 0 when every event
was acknowledged, 1 when one was not (or Kafka is unreachable), 2 for bad flags, 130 after
Ctrl-C and 143 after SIGTERM: it stops sending, waits (at most 10 s) for the broker's answers
and prints the summary first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
import zlib
from typing import BinaryIO, Iterator, NamedTuple

import cli

with cli.needs_packages("producer.py"):  # a Python without kafka-python gets one line, not a traceback
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError

    import config

PROG = "producer.py"
COMPRESSION_TYPES = ("gzip", "snappy", "lz4", "zstd")  # what Kafka offers
TOPIC_PARTITIONS = 3  # enough to see keys spread over partitions, each key in order within one


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with cli.Run(PROG, args.log_level) as run:  # Ctrl-C, SIGTERM, one-line errors: see cli.py
        settings = run.settings = config.load().override(bootstrap_servers=args.bootstrap_server,
                                                         topic=args.topic)
        run.connecting(f"Kafka at {settings.bootstrap_servers}", config.BOOTSTRAP_TIMEOUT_S)

        # 1. The topic: create it if it is missing, with partitions of our choosing.
        if ensure_topic(settings, settings.topic):
            run.say(f"created topic {settings.topic!r} with {TOPIC_PARTITIONS} partitions")

        # 2. The producer. acks="all": the partition's leader answers only once every
        #    in-sync replica (each copy that is up to date, see "Kafka as a cluster") has the
        #    event, so an acknowledged event survives the loss of a broker.
        #    enable_idempotence: when an answer is lost and the producer retries, the broker
        #    drops the duplicate. Both are kafka-python 3's defaults; they are the lesson.
        producer = KafkaProducer(
            **config.connection_kwargs(settings),  # where Kafka is, and how to log in
            acks="all",
            enable_idempotence=True,
            # A producer collects events into one batch per partition and sends a batch when
            # it is full or has waited linger_ms. Waiting 5 ms (the Java client's default)
            # fills batches; 256 KB ones (default 16 KB) wake the sending thread once per
            # batch instead of once per event: ~2x the events/s (see README "Performance").
            linger_ms=5,
            batch_size=256 * 1024,
            compression_type=args.compression,  # None: uncompressed (see --help)
        )
        run.connected()

        # 3. Send. send() only puts the event in a batch and returns a future; the broker's
        #    answer comes later, on kafka-python's I/O thread, where `report` counts it and
        #    prints "delivered partition=.. offset=..".
        report = Report(run, quiet=args.quiet)
        for message in messages(args, run, report):
            try:
                future = producer.send(settings.topic, key=message.key, value=message.value)
            except MessageSizeTooLargeError:  # checked before sending: it never left
                report.not_sent(f"{message.label} ({len(message.value):,} bytes)",
                                f"too large ({SIZE_LIMITS})")
                continue
            report.deliveries.track(future, message)
            if run.stopping:  # Ctrl-C: send nothing more, but wait for what was sent
                break

        # 4. Wait for the broker's answer to every event (flush alone proves nothing: each
        #    answer is counted), then close. After Ctrl-C it waits at most 10 s.
        cli.finish(producer, report.deliveries, run)
        run.say(report.summary())
        if not report.all_acknowledged:
            run.exit_code = cli.EXIT_ERROR
    return run.exit_code


def ensure_topic(settings: config.Settings, topic: str) -> bool:
    """Create ``topic`` if it is missing; True if we did.

    Brokers can also create a topic on first use (auto.create.topics.enable), with their
    default of 1 partition; managed clusters usually turn that off. Creating it ourselves
    lets us choose the partitions, and say what happened.
    """
    if topic.startswith("__"):
        raise cli.Failure(f"{topic!r} is one of Kafka's internal topics: producer.py does not "
                          f"write there", cli.EXIT_USAGE)
    admin = KafkaAdminClient(**config.connection_kwargs(settings))
    try:
        if topic in admin.list_topics():
            return False
        admin.create_topics([NewTopic(topic, num_partitions=TOPIC_PARTITIONS)],
                            wait_for_metadata=True)
        return True
    except TopicAlreadyExistsError:
        return False  # created by someone else a moment ago
    except KafkaError as error:
        raise cli.Failure(f"topic {topic!r} does not exist and could not be created ({error}); "
                          f"create it in your cluster, then try again") from None
    finally:
        admin.close()


# ---- What is sent: example events, or the lines of stdin ---------------------------------

EVENT_TYPES = ("payment", "click", "temperature")
USERS = ("alice", "bob", "carol")
SENSORS = ("sensor-1", "sensor-2")
PAGES = ("/", "/pricing", "/docs", "/signup")
DEFAULT_COUNT = 6


class Message(NamedTuple):
    kind: str  # "event" or "line"
    number: int  # from 1
    key: bytes | None
    value: bytes

    @property
    def label(self) -> str:  # how errors name it: "event 3", "line 7"
        return f"{self.kind} {self.number}"


def example_event(number: int, time_text: str, event_id: str) -> tuple[str, dict]:
    """The key and the JSON-ready body of example event ``number`` (same number, same fields)."""
    kind = EVENT_TYPES[number % len(EVENT_TYPES)]
    turn = number // len(EVENT_TYPES)
    fields = zlib.crc32(event_id.encode())  # varied, yet the same for the same id
    event = {"event_id": event_id, "type": kind, "time": time_text}
    if kind == "temperature":
        key = SENSORS[turn % len(SENSORS)]
        event.update(sensor=key, celsius=round(18 + fields % 81 / 10, 1))
    else:
        key = USERS[turn % len(USERS)]
        if kind == "payment":
            event.update(user=key, amount=round(5 + fields % 19_501 / 100, 2), currency="EUR")
        else:
            event.update(user=key, page=PAGES[turn % len(PAGES)])
    return key, event


def example_messages(count: int) -> Iterator[Message]:
    """``count`` example events (0: without end), each made when it is about to be sent."""
    ids, clock = random_ids(), cli.UtcClock()
    for number in itertools.count() if count == 0 else range(count):
        key, event = example_event(number, clock.now(), next(ids))
        # Plain UTF-8 bytes: any Kafka client in any language can read them.
        yield Message("event", number + 1, key.encode(), json.dumps(event).encode())


def random_ids() -> Iterator[str]:
    """Random (version 4) UUIDs as text, like str(uuid.uuid4()), from one generator seeded once:
    uuid4() reads os.urandom for each id, a system call that hands the GIL to kafka-python's
    I/O thread and back, and uuid.UUID() checks what is right by construction (~2 us an id)."""
    bits = random.Random().getrandbits
    while True:
        digits = f"{bits(128):032x}"
        yield (f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{'89ab'[bits(2)]}{digits[17:20]}-"
               f"{digits[20:]}")


def parse_line(line: bytes, separator: bytes | None) -> tuple[bytes | None, bytes]:
    """(key, value) of one --stdin line; ValueError when ``separator`` is not in it."""
    line = line.removesuffix(b"\n").removesuffix(b"\r")
    if separator is None:
        return None, line
    key, found, value = line.partition(separator)
    if not found:
        raise ValueError(f"no key separator {separator.decode()!r} in it")
    return key, value


def stdin_messages(stream: BinaryIO, separator: bytes | None, run: cli.Run,
                   report: "Report") -> Iterator[Message]:
    """One message per line, bytes as read (UTF-8 or not). Empty lines are skipped, so a
    trailing blank line does not become an empty event; a line without the separator is
    reported and not sent. Ctrl-C while waiting for a line ends the input."""
    for number in itertools.count(1):
        try:
            with run.interruptible():
                line = stream.readline()
        except cli.Interrupted:
            return
        if not line:
            return
        if not line.strip(b"\r\n"):
            continue
        try:
            key, value = parse_line(line, separator)
        except ValueError as error:
            report.not_sent(f"line {number}", str(error))
            continue
        yield Message("line", number, key, value)


def messages(args: argparse.Namespace, run: cli.Run, report: "Report") -> Iterator[Message]:
    """What to send, paced to --rate. A message read before Ctrl-C still goes out."""
    if args.stdin:
        separator = args.key_separator.encode() if args.key_separator else None
        source = stdin_messages(sys.stdin.buffer, separator, run, report)
    else:
        source = example_messages(DEFAULT_COUNT if args.count is None else args.count)
    if args.rate is None:
        yield from source
        return
    pacer = cli.Pacer(args.rate)
    for index, message in enumerate(source):
        run.sleep(pacer.delay(index))
        yield message


# ---- Counting and printing the broker's answers ------------------------------------------

SIZE_LIMITS = ("Kafka takes up to 1 MiB per message by default: the producer's "
               "max_request_size, the broker's message.max.bytes, the topic's max.message.bytes")


class Report:
    """The deliveries (printed to stdout as they are acknowledged), errors and the summary."""

    def __init__(self, run: cli.Run, quiet: bool = False, out=None, err=None) -> None:
        self.run, self.out, self.err = run, out or sys.stdout, err or sys.stderr
        self.deliveries = cli.Deliveries(on_ack=None if quiet else self._delivered,
                                         on_error=self._failed)
        self.rejected = 0
        self.started = time.monotonic()

    @property
    def all_acknowledged(self) -> bool:
        return not self.rejected and self.deliveries.acked == self.deliveries.sent

    def not_sent(self, label: str, reason: str) -> None:
        self.rejected += 1
        print(f"{PROG}: error: {label} not sent: {reason}", file=self.err, flush=True)

    def _delivered(self, message: Message, metadata) -> None:
        if self.run.reader_is_gone:
            return
        try:
            print(f"delivered partition={metadata.partition} offset={metadata.offset} "
                  f"key={cli.show_bytes(message.key)}", file=self.out, flush=True)
        except (BrokenPipeError, ValueError):  # `| head`: the reader is gone
            self.run.reader_gone()

    def _failed(self, message: Message, error: BaseException) -> None:
        print(f"{PROG}: error: {message.label} (key={cli.show_bytes(message.key)}, "
              f"{len(message.value):,} bytes) not delivered: {describe(error)}",
              file=self.err, flush=True)

    def summary(self) -> str:
        deliveries, elapsed = self.deliveries, time.monotonic() - self.started
        rate = deliveries.acked / elapsed if elapsed > 0 else 0.0
        line = (f"sent {deliveries.sent}, acknowledged {deliveries.acked}, failed "
                f"{deliveries.failed}")
        line += f", not sent {self.rejected}" if self.rejected else ""
        return f"{line} in {elapsed:.2f} s ({rate:.1f} events/s){deliveries.unanswered()}"


def describe(error: BaseException) -> str:
    """Why the broker did not take a message."""
    if isinstance(error, MessageSizeTooLargeError):
        # The broker refuses whole batches, so a small message can share a big one's fate.
        return f"the broker refused it, or a message in the same batch, as too large ({SIZE_LIMITS})"
    return str(error)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Send example events (or the lines of stdin) to a Kafka topic "
        "and print each delivery the broker acknowledges.")
    config.add_common_arguments(parser)
    parser.add_argument("--count", type=cli.whole_number(0), metavar="N",
                        help=f"example events to send, 0 = until Ctrl-C (default {DEFAULT_COUNT})")
    parser.add_argument("--rate", type=cli.rate_type, metavar="N",
                        help="events per second (default: as fast as Kafka takes them)")
    parser.add_argument("--stdin", action="store_true",
                        help="send each line of standard input as one message, byte for byte "
                        "(UTF-8 or not); empty lines are skipped")
    parser.add_argument("--key-separator", metavar="SEP",
                        help="with --stdin: the part of a line before the first SEP is the key "
                        "(like kafka-console-producer's parse.key); a line without SEP is an "
                        "error and is not sent")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the summary, not every delivery")
    parser.add_argument("--compression", choices=COMPRESSION_TYPES, metavar="CODEC",
                        help=f"compress each batch: {', '.join(COMPRESSION_TYPES)} (default: none; "
                        "as kafka-console-producer's --compression-codec). Every consumer of the "
                        "topic needs the codec too")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stdin and args.count is not None:
        parser.error("--count applies to the example events, not to --stdin")
    if args.key_separator is not None and (not args.stdin or not args.key_separator):
        parser.error("--key-separator needs --stdin and a non-empty separator")
    if args.stdin and sys.stdin is None:  # started with stdin closed (<&-)
        parser.error("--stdin: standard input is closed")
    return args


if __name__ == "__main__":
    sys.exit(main())

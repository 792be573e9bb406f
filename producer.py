"""Send events to Kafka and print each one as the broker acknowledges it.

By default it sends a handful of example events (a payment, a website click, a
temperature reading, ...) as JSON to the topic ``sample``. Each event has a key, the
user or the sensor: Kafka puts all events with the same key into the same partition,
so they stay in order. With ``--stdin`` each line of standard input is one message.

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
    producer.py: error: argument --count: must be 0 or more, not -1

Exit status: 0 when every event was acknowledged, 1 when one was not (or Kafka is
unreachable), 2 for bad flags, 130 after Ctrl-C and 143 after SIGTERM; on either
signal it stops sending, waits for the broker's answers and prints the summary first.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import random
import signal
import sys
import threading
import time
import uuid
import zlib
from datetime import datetime, timezone
from typing import BinaryIO, Iterator, NamedTuple, TextIO

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import (KafkaError, KafkaTimeoutError, MessageSizeTooLargeError,
                          TopicAlreadyExistsError, UnknownError)

import config

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number
DEFAULT_COUNT = 6
# Partitions of a topic we create: enough to see keys spread over them (and each key keep
# its order within one). Replication: the broker's default, so 1 node or 3 both work.
TOPIC_PARTITIONS = 3
EVENT_TYPES = ("payment", "click", "temperature")
USERS = ("alice", "bob", "carol")
SENSORS = ("sensor-1", "sensor-2")
PAGES = ("/", "/pricing", "/docs", "/signup")
# flush() may have to be repeated, see finish(); after this many tries we report instead.
FLUSH_ATTEMPTS = 5
SIZE_LIMITS = ("Kafka takes up to 1 MiB per message by default: the producer's "
               "max_request_size, the broker's message.max.bytes, the topic's max.message.bytes")

log = logging.getLogger("producer")


class Message(NamedTuple):
    label: str  # how errors name it: "event 3", "line 7"
    key: bytes | None
    value: bytes


class Rejected(NamedTuple):
    label: str
    reason: str


class TopicUnavailable(Exception):
    """The topic does not exist and we could not create it."""


class Interrupted(BaseException):
    """Raised by Stopper where it is safe to stop at once (BaseException: no library swallows it)."""


def example_event(number: int, now: datetime, event_id: str) -> tuple[str, dict]:
    """The key and the JSON-ready body of example event ``number`` (same number, same fields)."""
    kind = EVENT_TYPES[number % len(EVENT_TYPES)]
    turn = number // len(EVENT_TYPES)
    # Varied, yet the same for the same event: read off the id's checksum. (Seeding a
    # random.Random per event costs ~5 us, a third of the time it takes to make one.)
    fields = zlib.crc32(event_id.encode())
    event = {"event_id": event_id, "type": kind,
             "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    if kind == "temperature":
        key = SENSORS[turn % len(SENSORS)]
        event.update(sensor=key, celsius=round(18 + fields % 81 / 10, 1))
    elif kind == "payment":
        key = USERS[turn % len(USERS)]
        event.update(user=key, amount=round(5 + fields % 19_501 / 100, 2), currency="EUR")
    else:
        key = USERS[turn % len(USERS)]
        event.update(user=key, page=PAGES[turn % len(PAGES)])
    return key, event


def example_messages(count: int) -> Iterator[Message]:
    """``count`` example events (0: without end), each made when it is about to be sent."""
    # Random ids from one generator seeded once: uuid.uuid4() reads os.urandom for every id,
    # a system call that hands the GIL to kafka-python's I/O thread and back, which cost
    # a quarter of the script's time at full speed. Unique, but not for cryptography.
    ids = random.Random()
    for number in itertools.count() if count == 0 else range(count):
        event_id = str(uuid.UUID(int=ids.getrandbits(128), version=4))
        key, event = example_event(number, datetime.now(timezone.utc), event_id)
        # Plain UTF-8 bytes: any Kafka client in any language can read them.
        yield Message(f"event {number + 1}", key.encode(), json.dumps(event).encode())


def parse_line(line: bytes, separator: bytes | None) -> tuple[bytes | None, bytes]:
    """(key, value) of one --stdin line; ValueError when ``separator`` is not in it."""
    line = line.removesuffix(b"\n").removesuffix(b"\r")
    if separator is None:
        return None, line
    key, found, value = line.partition(separator)
    if not found:
        raise ValueError(f"no key separator {separator.decode()!r} in it")
    return key, value


def stdin_messages(stream: BinaryIO, separator: bytes | None) -> Iterator[Message | Rejected]:
    """One message per line. Bytes go out as read (UTF-8 or not); empty lines are skipped,
    so a trailing blank line does not become an empty event."""
    for number, line in enumerate(stream, start=1):
        if not line.strip(b"\r\n"):
            continue
        try:
            key, value = parse_line(line, separator)
        except ValueError as error:
            yield Rejected(f"line {number}", str(error))
        else:
            yield Message(f"line {number}", key, value)


def show(data: bytes | None) -> str:
    """Bytes as readable text on one line: control characters and bad UTF-8 escaped."""
    if data is None:
        return "null"
    text = data.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def describe(error: BaseException) -> str:
    """Why the broker did not take a message."""
    if isinstance(error, MessageSizeTooLargeError):
        # The broker refuses whole batches, so a small message can share a big one's fate.
        return f"the broker refused it, or a message in the same batch, as too large ({SIZE_LIMITS})"
    return str(error)


def pause_before(index: int, rate: float | None, started: float, now: float) -> float:
    """Seconds to wait before message ``index`` so that ``rate`` per second holds on average."""
    return 0.0 if rate is None else max(0.0, started + index / rate - now)


def summary(sent: int, acked: int, failed: int, elapsed: float) -> str:
    rate = acked / elapsed if elapsed > 0 else 0.0
    line = f"sent {sent}, acknowledged {acked}, failed {failed} in {elapsed:.2f} s ({rate:.1f} events/s)"
    if sent - acked - failed:
        line += f"; {sent - acked - failed} not acknowledged: may or may not be in the topic"
    return line


class Deliveries:
    """Counts and prints the broker's answers. Callbacks run on kafka-python's I/O thread."""

    def __init__(self, out: TextIO, err: TextIO, quiet: bool = False) -> None:
        self.out, self.err, self.quiet = out, err, quiet
        self.sent = self.acked = 0
        self.undelivered = 0  # failed at the broker
        self.rejected = 0  # refused before sending (too large)
        self._answered = threading.Condition()

    @property
    def failed(self) -> int:
        return self.undelivered + self.rejected

    @property
    def pending(self) -> int:
        return self.sent - self.acked - self.failed

    def track(self, future, message: Message) -> None:
        with self._answered:
            self.sent += 1
        future.add_callback(self._on_ack, message).add_errback(self._on_error, message)

    def reject(self, label: str, reason: str) -> None:
        """A message we could not even hand to the producer counts as sent and failed."""
        with self._answered:
            self.sent += 1
            self.rejected += 1
        print(f"error: {label} not sent: {reason}", file=self.err, flush=True)

    def wait(self, timeout_s: float) -> bool:
        with self._answered:
            return self._answered.wait_for(lambda: self.pending == 0, timeout_s)

    def _on_ack(self, message: Message, metadata) -> None:
        if not self.quiet:
            print(f"delivered partition={metadata.partition} offset={metadata.offset} "
                  f"key={show(message.key)}", file=self.out, flush=True)
        with self._answered:
            self.acked += 1
            self._wake_if_done()

    def _on_error(self, message: Message, error: BaseException) -> None:
        print(f"error: {message.label} (key={show(message.key)}, {len(message.value):,} bytes) "
              f"not delivered: {describe(error)}", file=self.err, flush=True)
        with self._answered:
            self.undelivered += 1
            self._wake_if_done()

    def _wake_if_done(self) -> None:
        # Called with the lock held. Only wait() listens, and only for "nothing pending":
        # a notify_all() per acknowledgement cost ~10% of the throughput.
        if self.pending == 0:
            self._answered.notify_all()


class Stopper:
    """Handles SIGINT/SIGTERM while in a ``with`` block: the send loop stops after the
    current message.

    It raises Interrupted only while we wait (for a line on stdin, for the next --rate
    tick), never inside producer.send(), where a half-sent event would go uncounted.
    A second signal raises wherever we are: the user does not want to wait any longer.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._waiting = False
        self._wait = Waiting(self)
        self._previous: dict = {}

    def __enter__(self) -> "Stopper":
        self._previous = {signum: signal.signal(signum, self) for signum in EXIT_ON_SIGNAL}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def __call__(self, signum: int, frame) -> None:
        again = self.signum is not None
        self.signum = signum
        if self._waiting or again:
            raise Interrupted

    def waiting(self) -> "Waiting":
        """``with stopper.waiting():`` around a wait that a signal may interrupt."""
        return self._wait


class Waiting:
    """Stopper.waiting()'s context manager. A class, made once: it is entered once per
    message, and a @contextmanager generator would cost more than making the message."""

    def __init__(self, stopper: Stopper) -> None:
        self.stopper = stopper

    def __enter__(self) -> None:
        self.stopper._waiting = True
        if self.stopper.signum is not None:  # it came just before we started to wait
            self.stopper._waiting = False
            raise Interrupted

    def __exit__(self, *exc_info) -> None:
        self.stopper._waiting = False


def ensure_topic(admin: KafkaAdminClient, topic: str) -> bool:
    """Create ``topic`` if it is missing; True if we did.

    Brokers can also create a topic on first use (auto.create.topics.enable), with their
    default of 1 partition; managed clusters usually turn that off. Creating it ourselves
    lets us choose the partitions and say what happened.
    """
    if topic in admin.list_topics():
        return False
    try:
        admin.create_topics({topic: {"num_partitions": TOPIC_PARTITIONS}}, wait_for_metadata=True)
    except TopicAlreadyExistsError:
        return False  # created by someone else a moment ago
    except KafkaError as error:
        raise TopicUnavailable(f"topic {topic!r} does not exist and could not be created "
                               f"({error}); create it in your cluster, then try again") from error
    return True


def run(producer: KafkaProducer, topic: str, messages: Iterator[Message | Rejected],
        deliveries: Deliveries, stopper: Stopper, rate: float | None = None) -> None:
    """Send ``messages`` (a Rejected one is only reported), then wait for every answer."""
    started = time.monotonic()
    try:
        for index in itertools.count():
            if stopper.signum is not None:
                break
            with stopper.waiting():
                item = next(messages, None)
                if rate is not None:  # even sleep(0) hands the GIL to the I/O thread: slow
                    time.sleep(pause_before(index, rate, started, time.monotonic()))
            if item is None:
                break
            if isinstance(item, Rejected):
                deliveries.reject(item.label, item.reason)
                continue
            try:
                future = producer.send(topic, key=item.key, value=item.value)
            except MessageSizeTooLargeError:  # max_request_size is checked before sending
                deliveries.reject(f"{item.label} ({len(item.value):,} bytes)",
                                  f"too large ({SIZE_LIMITS})")
                continue
            deliveries.track(future, item)
    except Interrupted:
        pass
    finish(producer, deliveries)


def finish(producer: KafkaProducer, deliveries: Deliveries) -> None:
    """flush(), then check that the broker answered for every event: flush alone proves nothing."""
    try:
        for _ in range(FLUSH_ATTEMPTS):
            try:
                producer.flush()
            except UnknownError:
                # kafka-python 3.0.12 raises "Future not done" when the broker refused a batch
                # as too large and the producer split it to retry the parts (Java's KAFKA-9312).
                log.debug("flush() again: a batch was split")
            if deliveries.wait(timeout_s=1.0):
                return
    except Interrupted:
        log.warning("stopped waiting for %d unacknowledged events", deliveries.pending)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer.py",
        description="Send example events (or the lines of stdin) to a Kafka topic and "
        "print each delivery the broker acknowledges.")
    config.add_common_arguments(parser)
    parser.add_argument("--count", type=count_type, metavar="N",
                        help=f"example events to send, 0 = until Ctrl-C (default {DEFAULT_COUNT})")
    parser.add_argument("--rate", type=rate_type, metavar="N",
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
    return parser


def count_type(text: str) -> int:
    if not text.lstrip("-").isdigit() or int(text) < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return int(text)


def rate_type(text: str) -> float:
    with contextlib.suppress(ValueError):
        if 0 < float(text) < float("inf"):
            return float(text)
    raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stdin and args.count is not None:
        parser.error("--count applies to the example events, not to --stdin")
    if args.key_separator is not None and (not args.stdin or not args.key_separator):
        parser.error("--key-separator needs --stdin and a non-empty separator")
    config.setup_logging(args.log_level)
    try:
        settings = config.load().override(bootstrap_servers=args.bootstrap_server, topic=args.topic)
    except config.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        admin = KafkaAdminClient(**config.connection_kwargs(settings))
        try:
            created = ensure_topic(admin, settings.topic)
        finally:
            admin.close()
        producer = KafkaProducer(**config.producer_kwargs(settings))
    except KafkaTimeoutError as error:
        print(f"error: {config.unreachable_message(settings, error)}", file=sys.stderr)
        return EXIT_ERROR
    except (TopicUnavailable, KafkaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C while connecting: nothing was sent yet
        return EXIT_ON_SIGNAL[signal.SIGINT]
    if created:
        print(f"created topic {settings.topic!r} with {TOPIC_PARTITIONS} partitions", file=sys.stderr)

    separator = args.key_separator.encode() if args.key_separator else None
    messages = (stdin_messages(sys.stdin.buffer, separator) if args.stdin
                else example_messages(DEFAULT_COUNT if args.count is None else args.count))
    deliveries = Deliveries(sys.stdout, sys.stderr, quiet=args.quiet)
    started = time.monotonic()
    with Stopper() as stopper:
        try:
            run(producer, settings.topic, messages, deliveries, stopper, rate=args.rate)
        finally:
            try:
                producer.close(timeout=0 if deliveries.pending else None)
            except (KafkaTimeoutError, Interrupted):
                pass  # we gave up on the pending events; the summary counts them
    print(summary(deliveries.sent, deliveries.acked, deliveries.failed,
                  time.monotonic() - started), flush=True)
    if stopper.signum is not None:
        return EXIT_ON_SIGNAL[stopper.signum]
    return EXIT_OK if deliveries.acked == deliveries.sent else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

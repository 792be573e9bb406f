"""Read events from a Kafka topic and print one line per event, like kafka-console-consumer.

It joins the consumer group from the settings (``tutorial``), reads the topic ``sample``
and waits for more; Ctrl-C stops it. The group remembers how far it got (its committed
offsets), so the next run continues where this one stopped.

    $ python consumer.py
    partition=0 offset=0 key=alice timestamp=2026-11-25T20:41:03.123Z value={"event_id": ...}
    ...
    ^CProcessed a total of 6 messages

    $ python consumer.py --from-beginning --max-messages 1 --format json
    {"topic": "sample", "partition": 0, "offset": 0, "timestamp": 1795640463123, ...}
    Processed a total of 1 messages

    $ python consumer.py --format xml
    usage: consumer.py [-h] ...
    consumer.py: error: argument --format: invalid choice: 'xml' (choose from text, json)

Exit status: 0 when it stopped by itself (--max-messages, --timeout-ms), 1 on errors
(Kafka unreachable), 2 for bad flags, 130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Callable, TextIO

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

import config

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number
FORMATS = ("text", "json")
# How long one poll() may wait: also how soon we notice Ctrl-C or the end of --timeout-ms.
POLL_MS = 200
REPLAY_GROUP_PREFIX = "replay-"

log = logging.getLogger("consumer")


class Interrupted(BaseException):
    """A second Ctrl-C: stop waiting for Kafka at once."""


def printable(text: str) -> str:
    """``text`` on one line: newlines, tabs and terminal escape codes become \\n, \\t, \\x1b."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def show_bytes(data: bytes | None) -> str:
    """Key or value as text; bytes that are not UTF-8 show as \\xff escapes, never a crash."""
    return "null" if data is None else printable(data.decode("utf-8", "backslashreplace"))


def tweet_line(event: object) -> str | None:
    """'@username: text' for a tweet as twitter-stream.py publishes it, else None."""
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None
    includes = event.get("includes")
    users = includes.get("users") if isinstance(includes, dict) else None
    author = data.get("author_id")
    username = next((user.get("username") for user in users or ()
                     if isinstance(user, dict) and user.get("id") == author), None)
    return f"@{username}: {data['text']}" if username else f"{author or '?'}: {data['text']}"


def show_value(data: bytes | None) -> str:
    """A value on one line: a tweet as '@user: text', other JSON compacted, anything else as is."""
    if data is None:
        return "null"
    try:
        event = json.loads(data)
    except ValueError:  # not JSON, or not even UTF-8
        return show_bytes(data)
    tweet = tweet_line(event)
    return printable(tweet if tweet is not None else json.dumps(event, ensure_ascii=False))


def format_timestamp(milliseconds: int) -> str:
    if milliseconds < 0:  # a record written without a timestamp
        return "null"
    moment = datetime.fromtimestamp(milliseconds / 1000, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text_line(record: ConsumerRecord) -> str:
    return (f"partition={record.partition} offset={record.offset} key={show_bytes(record.key)} "
            f"timestamp={format_timestamp(record.timestamp)} value={show_value(record.value)}")


def json_bytes(data: bytes | None) -> str | dict | None:
    """A string when ``data`` is UTF-8, else {"base64": "..."}: no byte is lost either way."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def json_line(record: ConsumerRecord) -> str:
    """One object per line, like kcat -J, ready for jq."""
    return json.dumps({
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "timestamp": record.timestamp, "key": json_bytes(record.key),
        "value": json_bytes(record.value),
        "headers": [[name, json_bytes(value)] for name, value in record.headers],
    })


def choose_group(group: str | None, configured: str, from_beginning: bool) -> tuple[str, bool]:
    """The group to join, and whether to commit offsets in it."""
    if from_beginning and group is None:
        # Like kafka-console-consumer: a fresh group has no committed offsets, so it starts
        # at the earliest one. It commits nothing; no one will use this group again.
        return f"{REPLAY_GROUP_PREFIX}{uuid.uuid4().hex[:12]}", False
    return group or configured, True


class Stop:
    """SIGINT/SIGTERM handler: note the signal; run() stops after the current poll()."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise Interrupted
        self.signum = signum


def run(consumer: KafkaConsumer, render: Callable[[ConsumerRecord], str], out: TextIO,
        stop: Stop, *, max_messages: int | None = None, timeout_ms: int | None = None,
        commit: bool = True) -> int:
    """Print records until ``max_messages``, ``timeout_ms`` of silence or a signal; return the count."""
    printed = 0
    quiet_since = time.monotonic()
    try:
        while stop.signum is None and (max_messages is None or printed < max_messages):
            wanted = None if max_messages is None else max_messages - printed
            batches = consumer.poll(timeout_ms=POLL_MS, max_records=wanted)
            if not batches:
                if timeout_ms is not None and time.monotonic() - quiet_since >= timeout_ms / 1000:
                    break
                continue
            offsets = {}
            for partition, records in batches.items():
                records = records[:max_messages - printed] if max_messages else records
                if not records:
                    continue
                for record in records:
                    print(render(record), file=out)
                printed += len(records)
                # The next offset to read: the one after the last record we printed.
                offsets[partition] = OffsetAndMetadata(records[-1].offset + 1, "",
                                                       records[-1].leader_epoch)
            out.flush()
            # At-least-once: commit only what has been printed, after it was printed. A crash
            # in between shows these records again next time; none is ever skipped.
            if commit:
                consumer.commit(offsets)
            quiet_since = time.monotonic()
    except Interrupted:
        log.warning("stopped at once; records printed since the last commit will show again")
    return printed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consumer.py",
        description="Print the events of a Kafka topic, one per line, as a member of a "
        "consumer group. A new group starts at the earliest event; a group that has "
        "committed offsets continues after them.")
    config.add_common_arguments(parser)
    parser.add_argument("--group", help=f"consumer group to join (env KAFKA_GROUP_ID, "
                        f"default {config.DEFAULT_GROUP_ID!r})")
    parser.add_argument("--from-beginning", action="store_true",
                        help="start at the earliest event. Without --group this joins a fresh, "
                        "throwaway group (replay-...) and so replays the whole topic; with a "
                        "--group that has committed offsets it continues from them")
    parser.add_argument("--max-messages", type=positive_int, metavar="N",
                        help="exit after N messages; the group then continues after the N-th")
    parser.add_argument("--timeout-ms", type=positive_int, metavar="MS",
                        help="exit when no message arrives for MS milliseconds (joining the "
                        "group counts too, as in kafka-console-consumer)")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text: one readable line per event (default); json: one object per "
                        "line (topic, partition, offset, timestamp, key, value, headers) like "
                        "kcat -J; a key or value that is not UTF-8 becomes {\"base64\": \"...\"}")
    return parser


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, not {text}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config.setup_logging(args.log_level)
    try:
        settings = config.load().override(bootstrap_servers=args.bootstrap_server, topic=args.topic)
    except config.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    group, commit = choose_group(args.group, settings.group_id, args.from_beginning)
    # Kafka's default is "latest" (only events that arrive from now on); a learner who runs
    # the producer first expects to see its events. Either way this applies only to a group
    # without committed offsets: one that has them continues after them.
    kwargs = config.consumer_kwargs(settings, group_id=group, auto_offset_reset="earliest")
    try:
        consumer = KafkaConsumer(**kwargs)
    except KafkaTimeoutError as error:
        print(f"error: {config.unreachable_message(settings, error)}", file=sys.stderr)
        return EXIT_ERROR
    except KafkaError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ON_SIGNAL[signal.SIGINT]
    if hasattr(sys.stdout, "reconfigure"):  # a terminal that is not UTF-8 gets \u escapes
        sys.stdout.reconfigure(errors="backslashreplace")
    stop = Stop()
    previous = {signum: signal.signal(signum, stop) for signum in EXIT_ON_SIGNAL}
    status = EXIT_OK
    try:
        # Learn the topic's partitions before joining the group. Otherwise the first
        # assignment is made without them and the group rebalances again at once, and
        # in kafka-python 3.0.12 that second join now and then never completes.
        if not consumer.partitions_for_topic(settings.topic):  # kafka-python 3 gives set() or None
            # Like kafka-console-consumer, wait for it: a producer may be about to create it.
            print(f"topic {settings.topic!r} does not exist (yet): waiting for it; "
                  f"python producer.py creates it", file=sys.stderr)
        consumer.subscribe([settings.topic])
        printed = run(consumer, json_line if args.format == "json" else text_line, sys.stdout,
                      stop, max_messages=args.max_messages, timeout_ms=args.timeout_ms,
                      commit=commit)
        print(f"Processed a total of {printed} messages", file=sys.stderr)
    except KafkaError as error:
        print(f"error: {error}", file=sys.stderr)
        status = EXIT_ERROR
    finally:
        try:
            consumer.close(autocommit=False)  # we committed each batch as soon as it was printed
        except Interrupted:
            pass
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_ON_SIGNAL[stop.signum] if stop.signum is not None else status


if __name__ == "__main__":
    sys.exit(main())

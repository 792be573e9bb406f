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

Events go to stdout, the count and errors to stderr. Exit status: 0 when it stopped by
itself (--max-messages, --timeout-ms), 1 on errors (Kafka unreachable), 2 for bad flags,
130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import time
import uuid
from json.encoder import encode_basestring_ascii as json_string
from typing import Callable, TextIO

import cli

with cli.needs_packages("consumer.py"):  # a Python without kafka-python gets one line, not a traceback
    from kafka import KafkaConsumer
    from kafka.consumer.fetcher import ConsumerRecord
    from kafka.errors import KafkaTimeoutError
    from kafka.structs import OffsetAndMetadata

    import config

PROG = "consumer.py"
log = logging.getLogger("consumer")
POLL_MS = 200  # how long one poll() may wait: also how soon we notice Ctrl-C or --timeout-ms
CLOSE_MS = 5_000
MAX_POLL_RECORDS = 10_000  # at most this many records per poll, printed then committed together
COMMIT_S, COMMIT_AFTER_SIGNAL_S = 30, 5


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli.Run(PROG, args.log_level) as run:  # Ctrl-C, SIGTERM, one-line errors: see cli.py
        settings = run.settings = config.load().override(bootstrap_servers=args.bootstrap_server,
                                                         topic=args.topic)
        group, commit = choose_group(args.group, settings.group_id, args.from_beginning)
        run.connecting(f"Kafka at {settings.bootstrap_servers}", config.BOOTSTRAP_TIMEOUT_S)

        # 1. The consumer, a member of `group`: the group's members share the topic's
        #    partitions, and the group keeps the offset where it stopped in each.
        consumer = KafkaConsumer(
            **config.connection_kwargs(settings),  # where Kafka is, and how to log in
            group_id=group,
            # We commit by hand, after printing (step 3). A background timer would also
            # commit the offsets of events polled but not printed yet, which a crash loses.
            enable_auto_commit=False,
            # Where a group without committed offsets starts. Kafka's default, "latest", shows
            # only events sent from now on; a learner expects what producer.py sent before.
            auto_offset_reset="earliest",
            # Waiting for a topic that does not exist yet must not create it: the broker would,
            # with 1 partition, and producer.py would then not make it with 3.
            allow_auto_create_topics=False,
            # Each poll's records are printed, then committed: a round trip to Kafka. When far
            # behind, larger polls (kafka-python's default is 500) make that cost per record
            # small; the price: after a crash, up to that many printed records show again.
            max_poll_records=MAX_POLL_RECORDS,
        )
        run.connected()
        try:
            printed = 0
            if wait_for_topic(consumer, settings.topic, run, args.timeout_ms):
                consumer.subscribe([settings.topic])
                # 2. Poll, print, commit: see consume() just below.
                render = json_lines if args.format == "json" else text_lines
                printed = consume(consumer, render, sys.stdout, run, max_messages=args.max_messages,
                                  timeout_ms=args.timeout_ms, commit=commit)
        finally:
            # Leave the group (each batch is committed already), waiting at most 5 s for a
            # broker that does not answer (kafka-python's default: 30 s).
            consumer.close(autocommit=False, timeout_ms=CLOSE_MS)
        run.say(f"Processed a total of {printed} messages")
    return run.exit_code


def consume(consumer: KafkaConsumer, render: Callable[[list[ConsumerRecord]], list[str]], out: TextIO,
            run: cli.Run, *, max_messages: int | None = None, timeout_ms: int | None = None,
            commit: bool = True) -> int:
    """Print records until ``max_messages``, ``timeout_ms`` of silence or a signal; return the count."""
    printed = 0
    commits = Commits()
    quiet_since = time.monotonic()
    while not run.stopping and (max_messages is None or printed < max_messages):
        # poll() returns what has arrived, per partition ({} after POLL_MS without any).
        wanted = None if max_messages is None else min(max_messages - printed, MAX_POLL_RECORDS)
        batches = consumer.poll(timeout_ms=POLL_MS, max_records=wanted)
        if not batches:
            if timeout_ms is not None and time.monotonic() - quiet_since >= timeout_ms / 1000:
                break
            if run.stdout_closed():  # `| head`: the reader went away while we waited
                break
            continue
        lines, offsets = [], {}
        for partition, records in batches.items():
            records = records[:max_messages - printed - len(lines)] if max_messages else records
            if records:
                lines += render(records)
                # What we commit is the next offset to read: the one after the last printed.
                offsets[partition] = OffsetAndMetadata(records[-1].offset + 1, "",
                                                       records[-1].leader_epoch)
        out.write("\n".join(lines) + "\n")  # one write per batch: a print() each costs ~10%
        out.flush()
        printed += len(lines)
        # 3. At-least-once: commit only what has been printed, after it was printed. A crash
        #    in between shows these records again next time; none is ever skipped.
        #    commit_async() does not wait for Kafka's answer: we print the next batch meanwhile.
        if commit:
            consumer.commit_async(offsets, callback=commits.answered)
            commits.sent(offsets)
        quiet_since = time.monotonic()
    # The last commit waits for the answer (and repeats any that failed): consumer.commit().
    unanswered = commits.unanswered()
    if unanswered:
        commit_printed(consumer, unanswered, run)
    return printed


class Commits:
    """The offsets committed with commit_async(), and those Kafka has confirmed."""

    def __init__(self) -> None:
        self.sent_offsets: dict = {}
        self.confirmed: dict = {}

    def sent(self, offsets: dict) -> None:
        self.sent_offsets.update(offsets)

    def answered(self, offsets: dict, result) -> None:
        # Called by kafka-python within poll(), on this thread: newest answer first, when several
        # came in since the last poll. A failed commit stays unanswered; a later one covers it.
        if isinstance(result, Exception):
            log.debug("an offset commit failed (a later one covers it): %s", result)
            return
        for partition, offset in offsets.items():
            known = self.confirmed.get(partition)
            if known is None or known.offset < offset.offset:
                self.confirmed[partition] = offset

    def unanswered(self) -> dict:
        return {partition: offset for partition, offset in self.sent_offsets.items()
                if self.confirmed.get(partition) != offset}


def commit_printed(consumer: KafkaConsumer, offsets: dict, run: cli.Run) -> None:
    """consumer.commit(offsets), in steps of a second so that Ctrl-C is noticed while a broker
    does not answer: 30 s in all (kafka-python's request timeout), at most 5 s after a signal.
    An offset left uncommitted after a signal only means its records show again next time."""
    deadline = time.monotonic() + COMMIT_S
    while True:
        try:
            return consumer.commit(offsets, timeout_ms=1000)
        except KafkaTimeoutError:
            if run.stopping:
                deadline = min(deadline, (run.stopped_at or time.monotonic()) + COMMIT_AFTER_SIGNAL_S)
            if time.monotonic() >= deadline or run.impatient:
                if not run.stopping:
                    raise
                log.warning("Kafka did not answer the last commit: the records printed since the "
                            "one before will show again next time")
                return


def wait_for_topic(consumer: KafkaConsumer, topic: str, run: cli.Run, timeout_ms: int | None) -> bool:
    """Learn the topic's partitions before joining the group, waiting while it does not exist
    (like kafka-console-consumer: a producer may be about to create it); False if it still
    does not after ``timeout_ms`` or a signal.

    Knowing them first also saves a rebalance: otherwise the group's first assignment is made
    without them and redone at once, and in kafka-python 3.0.12 that second join now and
    then never completes.
    """
    # kafka-python 3.0.12 does not hand allow_auto_create_topics on to the metadata requests
    # it makes, so the broker would create the topic we ask about: set it where it is read.
    consumer._manager.cluster.config["allow_auto_create_topics"] = False
    if consumer.partitions_for_topic(topic):
        return True
    run.say(f"topic {topic!r} does not exist (yet): waiting for it; python producer.py creates it")
    deadline = time.monotonic() + (timeout_ms / 1000 if timeout_ms else float("inf"))
    while not run.stopping and time.monotonic() < deadline:
        run.sleep(0.5)
        if consumer.partitions_for_topic(topic):
            return True
    return False


def choose_group(group: str | None, configured: str, from_beginning: bool) -> tuple[str, bool]:
    """The group to join, and whether to commit offsets in it."""
    if from_beginning and group is None:
        # Like kafka-console-consumer: a fresh group has no committed offsets, so it starts
        # at the earliest one. It commits nothing; no one will use this group again.
        return f"replay-{uuid.uuid4().hex[:12]}", False
    return group or configured, True


# ---- How a record is shown ----------------------------------------------------------------

def text_lines(records: list[ConsumerRecord]) -> list[str]:
    return [text_line(record) for record in records]


def text_line(record: ConsumerRecord) -> str:
    return (f"partition={record.partition} offset={record.offset} key={cli.show_bytes(record.key)} "
            f"timestamp={format_timestamp(record.timestamp)} value={show_value(record.value)}")


def show_value(data: bytes | None) -> str:
    """A value as stored, on one line; only a tweet (as twitter-stream.py publishes it) is
    shown the friendlier way, as '@user: text'."""
    if data is not None and data.startswith(b'{"data"'):
        tweet = tweet_line(data)
        if tweet is not None:
            return cli.printable(tweet)
    return cli.show_bytes(data)


def tweet_line(data: bytes) -> str | None:
    """'@username: text' for a tweet as twitter-stream.py publishes it, else None."""
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep to parse
        return None
    tweet = event.get("data") if isinstance(event, dict) else None
    if not isinstance(tweet, dict) or not isinstance(tweet.get("text"), str):
        return None
    includes = event.get("includes")
    users = includes.get("users") if isinstance(includes, dict) else None
    author = tweet.get("author_id")
    username = next((user.get("username") for user in users if isinstance(user, dict)
                     and user.get("id") == author), None) if isinstance(users, list) else None
    return f"@{username}: {tweet['text']}" if username else f"{author or '?'}: {tweet['text']}"


def format_timestamp(milliseconds: int) -> str:
    return "null" if milliseconds < 0 else cli.utc_text(milliseconds)  # < 0: written without one


def json_lines(records: list[ConsumerRecord]) -> list[str]:
    """One object per record, like kcat -J, ready for jq: exactly what json.dumps() would make
    of {"topic": .., "partition": .., ...}, but written directly (4x cheaper per record).
    The records come from one partition: the start of their lines is made once."""
    start = f'{{"topic": {json_string(records[0].topic)}, "partition": {records[0].partition}, "offset": '
    return [f'{start}{record.offset}, "timestamp": {record.timestamp}, "key": {json_value(record.key)}, '
            f'"value": {json_value(record.value)}, "headers": {json_headers(record.headers)}}}'
            for record in records]


def json_headers(headers: list[tuple[str, bytes | None]]) -> str:
    return json.dumps([[name, json_bytes(value)] for name, value in headers]) if headers else "[]"


def json_value(data: bytes | None) -> str:
    """``data`` as JSON text: a string when it is UTF-8, else {"base64": "..."}."""
    if data is None:
        return "null"
    try:
        return json_string(data.decode("utf-8"))
    except UnicodeDecodeError:
        return json.dumps(json_bytes(data))


def json_bytes(data: bytes | None) -> str | dict | None:
    """A string when ``data`` is UTF-8, else {"base64": "..."}: no byte is lost either way."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
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
    parser.add_argument("--max-messages", type=cli.whole_number(1), metavar="N",
                        help="exit after N messages; the group then continues after the N-th")
    parser.add_argument("--timeout-ms", type=cli.whole_number(1), metavar="MS",
                        help="exit when no message arrives for MS milliseconds (joining the "
                        "group counts too, as in kafka-console-consumer)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text: one readable line per event (default); json: one object per "
                        "line (topic, partition, offset, timestamp, key, value, headers) like "
                        "kcat -J; a key or value that is not UTF-8 becomes {\"base64\": \"...\"}")
    return parser


if __name__ == "__main__":
    sys.exit(main())

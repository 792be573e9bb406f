"""Count the hashtags of the tweets in Kafka per minute, exactly once, and publish the counts.

It reads the tweets twitter-stream.py publishes (topic ``tweets``), counts each hashtag per
minute of the tweet's ``created_at`` and writes the running count to the topic ``trends``,
one record per update: key ``2026-11-25T18:00:00Z #kafka``, value
``{"window_start": "2026-11-25T18:00:00Z", "hashtag": "kafka", "count": 7}``. Reading a tweet,
counting it and writing the new count happen in one Kafka transaction, so a crash (even
``kill -9``) never counts a tweet twice or forgets one. On stdout it shows the top hashtags of
each minute as it fills.

    $ python trends.py --from-beginning --timeout-ms 3000
    restored 0 counts from 'trends' in 0.02 s; counting 'tweets' as group 'trends'
    2026-11-25T18:00:00Z  #streaming 30  #kafka 26  #python 24
    counted 300 tweets (80 hashtags) in 1 transactions, 2,140 tweets/s; skipped 0

    $ python trends.py --at-least-once      # the same, without transactions: see README

    $ python trends.py --timeout-ms 0
    usage: trends.py [-h] ...
    trends.py: error: argument --timeout-ms: must be a whole number of 1 or more, not 0

Minutes go to stdout, the summary and errors to stderr. Exit status: 0 when it stopped by
itself (--timeout-ms), 1 on errors (Kafka unreachable, another trends.py took over the
group), 2 for bad flags, 130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from datetime import datetime, timezone
from typing import NamedTuple

import cli

with cli.needs_packages("trends.py"):  # a Python without kafka-python gets one line, not a traceback
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, ProducerFencedError, TopicAlreadyExistsError
    from kafka.structs import OffsetAndMetadata

    import config

PROG = "trends.py"
DEFAULT_GROUP = "trends"
POLL_MS = 200  # how long one poll() may wait: also how soon we notice Ctrl-C or --timeout-ms
TWEETS_PER_TRANSACTION = 500  # one poll() at most: more per commit is faster, less is fresher

log = logging.getLogger("trends")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli.Run(PROG, args.log_level) as run:  # Ctrl-C, SIGTERM, one-line errors: see cli.py
        settings = config.load()  # it reads the tweets where twitter-stream.py puts them
        settings = run.settings = settings.override(bootstrap_servers=args.bootstrap_server,
                                                    topic=args.topic or settings.tweets_topic)
        args.output_topic = args.output_topic or settings.trends_topic
        exactly_once = not args.at_least_once
        run.connecting(f"Kafka at {settings.bootstrap_servers}", config.BOOTSTRAP_TIMEOUT_S)

        # 1. The output topic, compacted: Kafka keeps at least the latest record of each key
        #    (minute and hashtag), so the topic stays as small as the counts themselves.
        ensure_output_topic(settings, args.output_topic)

        # 2. The producer. With a transactional_id, everything it sends between
        #    begin_transaction() and commit_transaction() becomes visible together, or not at
        #    all. The id is the same every run (one per group): init_transactions() then aborts
        #    whatever a killed run left half done, and fences that run out if it still lives.
        producer = KafkaProducer(
            **config.connection_kwargs(settings),
            acks="all",
            enable_idempotence=True,
            transactional_id=f"{PROG}-{args.group}" if exactly_once else None,
            linger_ms=5,
        )
        run.connected()
        try:
            if exactly_once:
                producer.init_transactions()

            # 3. The counts so far, read back from the output topic (read_committed: only what
            #    committed transactions wrote). The topic is the state's changelog, as in
            #    Kafka Streams: nothing is kept on this machine, so a restart anywhere resumes.
            started = time.monotonic()
            counts = restore_counts(settings, args.output_topic, run)
            run.say(f"restored {len(counts)} counts from {args.output_topic!r} in "
                    f"{time.monotonic() - started:.2f} s; counting {settings.topic!r} as group "
                    f"{args.group!r}{'' if exactly_once else ' (at-least-once)'}")

            # 4. The consumer of the tweets. It takes every partition itself (assign(), no
            #    group membership): the counts of one minute come from all partitions, so one
            #    trends.py counts them all. A restarted one starts at once; a killed group
            #    member keeps its partitions until Kafka gives up on it (45 s). The group only
            #    keeps the committed offsets, and a second trends.py of the same group is
            #    fenced by the transactional_id. (Static membership, group_instance_id, works
            #    in kafka-python 3.0.12 too: a restarted static member had its partitions in
            #    0.3 s, a dynamic one in 44 s. assign() needs no coordination at all.)
            consumer = KafkaConsumer(
                **config.connection_kwargs(settings),
                group_id=args.group,
                enable_auto_commit=False,  # offsets are committed with the counts (step 5)
                # Where a group without committed offsets starts: like kafka-console-consumer,
                # at new tweets only, unless --from-beginning.
                auto_offset_reset="earliest" if args.from_beginning else "latest",
                isolation_level="read_committed",
                allow_auto_create_topics=False,
            )
            try:
                totals = Totals()
                partitions = wait_for_partitions(consumer, settings.topic, run, args.timeout_ms)
                if partitions:
                    consumer.assign(partitions)
                    # 5. Poll, count, and in one transaction write the new counts *and* the
                    #    offsets after the tweets counted: see count_tweets() just below.
                    totals = count_tweets(consumer, producer, counts, Board(sys.stdout, run), run,
                                          args.output_topic, exactly_once=exactly_once,
                                          timeout_ms=args.timeout_ms)
            finally:
                consumer.close(autocommit=False)
        except ProducerFencedError:
            raise cli.Failure(f"another trends.py with --group {args.group} took over: this one "
                              f"stops (its last transaction was aborted)") from None
        finally:
            producer.close(timeout=cli.GRACE_S)
        run.say(totals.summary(exactly_once))
    return run.exit_code


def count_tweets(consumer: KafkaConsumer, producer: KafkaProducer, counts: dict, board: "Board",
                 run: cli.Run, output_topic: str, *, exactly_once: bool = True,
                 timeout_ms: int | None = None) -> "Totals":
    """Count until ``timeout_ms`` without tweets or a signal."""
    totals = Totals()
    quiet_since = time.monotonic()
    while not run.stopping:
        polled = time.monotonic()
        batches = consumer.poll(timeout_ms=POLL_MS, max_records=TWEETS_PER_TRANSACTION)
        if not batches:
            if timeout_ms is not None and time.monotonic() - quiet_since >= timeout_ms / 1000:
                break
            board.show_due()
            continue
        # The new counts, kept apart from `counts` until Kafka has them.
        updates = count_batch(batches, counts, totals)
        # What we commit is the next offset to read in each partition. (A leader epoch of None
        # would hang commit_transaction(): kafka-python 3.0.12 cannot encode it in the
        # TxnOffsetCommit request, and retries that request for ever.)
        offsets = {partition: OffsetAndMetadata(records[-1].offset + 1, "", -1 if records[-1].leader_epoch
                                                is None else records[-1].leader_epoch)
                   for partition, records in batches.items()}
        if exactly_once:
            # The transaction covers the new counts and the offsets together: either both
            # are committed, or neither is and the tweets are counted again after a restart,
            # from the counts as they were before them.
            producer.begin_transaction()
            send_counts(producer, output_topic, updates)
            producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
            producer.commit_transaction()  # sends what is still batched first, as flush() does
        else:
            # At-least-once: write the counts, wait until Kafka has every one, then commit the
            # offsets. A crash in between counts those tweets again: the counts grow too much.
            futures = send_counts(producer, output_topic, updates)
            producer.flush()
            failed = next((future.exception for future in futures if future.failed()), None)
            if failed is not None:  # flush() alone proves nothing: check every answer
                raise cli.Failure(f"Kafka did not take a count: {failed}")
            consumer.commit(offsets)
        counts.update(updates)  # committed: now they are the counts
        quiet_since = time.monotonic()
        totals.transactions += 1
        totals.busy_s += quiet_since - polled
        board.changed(updates)
    board.show_due(everything=True)
    return totals


def send_counts(producer: KafkaProducer, topic: str, updates: dict[str, "Count"]) -> list:
    """One record per changed count, keyed by minute and hashtag: a compacted topic keeps the
    latest count of each, and a reader that wants it current needs only the last one."""
    return [producer.send(topic, key=key.encode(), value=json.dumps(
        {"window_start": count.window_start, "hashtag": count.hashtag, "count": count.count},
        ensure_ascii=False).encode()) for key, count in updates.items()]


def ensure_output_topic(settings: config.Settings, topic: str) -> None:
    """Create ``topic``, compacted, if it is missing (one partition: the counts in order)."""
    admin = KafkaAdminClient(**config.connection_kwargs(settings))
    try:
        if topic not in admin.list_topics():
            admin.create_topics([NewTopic(topic, num_partitions=1,
                                          topic_configs={"cleanup.policy": "compact"})],
                                wait_for_metadata=True)
    except TopicAlreadyExistsError:
        pass  # created by someone else a moment ago
    except KafkaError as error:
        raise cli.Failure(f"topic {topic!r} does not exist and could not be created ({error})") from None
    finally:
        admin.close()


def restore_counts(settings: config.Settings, topic: str, run: cli.Run) -> dict[str, "Count"]:
    """The latest committed count of each key in ``topic``: read it from the start to its end.

    read_committed hides what aborted transactions wrote, and ends at the last stable offset
    (before any transaction still open), so the counts are exactly those of the offsets the
    group has committed. init_transactions() ran before this, so no open transaction of ours
    is left to wait for.
    """
    reader = KafkaConsumer(**config.connection_kwargs(settings), isolation_level="read_committed",
                           enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        end = reader.end_offsets(partitions)  # with read_committed: the last stable offsets
        counts: dict[str, Count] = {}
        while not run.stopping and any(reader.position(p) < end[p] for p in partitions):
            for records in reader.poll(timeout_ms=POLL_MS).values():
                for record in records:
                    count = parse_count(record.value)
                    if count is None:
                        log.warning("skipped a record that is not a count: %s offset %d",
                                    record.topic, record.offset)
                    else:
                        counts[count.key] = count  # a later record of a key replaces it
        if run.stopping:
            raise cli.Failure("stopped while restoring the counts") from None
        return counts
    finally:
        reader.close()


def wait_for_partitions(consumer: KafkaConsumer, topic: str, run: cli.Run,
                        timeout_ms: int | None) -> list[TopicPartition]:
    """The partitions of ``topic``, waiting while it does not exist (twitter-stream.py creates
    it); none after ``timeout_ms`` or a signal."""
    # As in consumer.py: kafka-python 3.0.12 does not pass allow_auto_create_topics on to the
    # metadata requests it makes, so set it where it is read.
    consumer._manager.cluster.config["allow_auto_create_topics"] = False
    deadline = time.monotonic() + (timeout_ms / 1000 if timeout_ms else float("inf"))
    said = False
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if run.stopping or time.monotonic() >= deadline:
            return []
        if not said:
            run.say(f"topic {topic!r} does not exist (yet): waiting for it; "
                    f"python twitter-stream.py --replay creates it")
            said = True
        run.sleep(0.5)


# ---- Counting ------------------------------------------------------------------------------

HASHTAG = re.compile(r"#(\w+)")  # \w: letters and digits of any script, and _
WARN_SKIPPED = 3  # records that are not tweets named one by one; after that only counted


class Count(NamedTuple):
    window_start: str  # the minute, '2026-11-25T18:00:00Z'
    hashtag: str  # lowercased, without '#'
    count: int

    @property
    def key(self) -> str:
        return f"{self.window_start} #{self.hashtag}"


class Totals:
    def __init__(self) -> None:
        self.tweets = self.hashtags = self.skipped = self.transactions = 0
        self.busy_s = 0.0  # from each poll() that returned tweets to their commit: not idle time

    def summary(self, exactly_once: bool) -> str:
        rate = f", {self.tweets / self.busy_s:,.0f} tweets/s" if self.busy_s > 0 else ""
        unit = "transactions" if exactly_once else "commits"
        return (f"counted {self.tweets} tweets ({self.hashtags} hashtags) in "
                f"{self.transactions} {unit}{rate}; skipped {self.skipped}")


def count_batch(batches: dict, counts: dict[str, Count], totals: Totals) -> dict[str, Count]:
    """The counts that the tweets in ``batches`` change, with their new values."""
    updates: dict[str, Count] = {}
    for records in batches.values():
        for record in records:
            tweet = parse_tweet(record.value)
            if tweet is None:
                totals.skipped += 1
                if totals.skipped <= WARN_SKIPPED:
                    log.warning("skipped a record that is not a tweet: %s partition %d offset %d%s",
                                record.topic, record.partition, record.offset,
                                "; the summary counts any more" if totals.skipped == WARN_SKIPPED else "")
                continue
            text, created_at = tweet
            window = minute_of(created_at, record.timestamp)
            tags = hashtags(text)
            totals.tweets += 1
            totals.hashtags += len(tags)
            for tag in tags:
                key = f"{window} #{tag}"
                before = updates.get(key) or counts.get(key)
                updates[key] = Count(window, tag, (before.count if before else 0) + 1)
    return updates


def parse_tweet(value: bytes | None) -> tuple[str, str | None] | None:
    """(text, created_at) of a tweet as twitter-stream.py publishes it; None if it is not one."""
    if value is None:
        return None
    try:
        event = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep to parse
        return None
    tweet = event.get("data") if isinstance(event, dict) else None
    if not isinstance(tweet, dict) or not isinstance(tweet.get("text"), str):
        return None
    created_at = tweet.get("created_at")
    return tweet["text"], created_at if isinstance(created_at, str) else None


def hashtags(text: str) -> set[str]:
    """The distinct hashtags of ``text``, lowercased: each counts once per tweet."""
    return {tag.lower() for tag in HASHTAG.findall(text)}


def minute_of(created_at: str | None, timestamp_ms: int) -> str:
    """The UTC minute of ``created_at`` ('2026-11-25T18:00:17.577Z' -> '2026-11-25T18:00:00Z'),
    or of the record's timestamp when the tweet has no (valid) created_at. A time that names no
    minute of the years 1-9999 (no timestamp, or a hostile one) counts in 1970-01-01T00:00."""
    try:
        moment = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return utc_minute(moment.astimezone(timezone.utc))
    except (AttributeError, ValueError, OverflowError):  # none, not ISO 8601, or out of range
        pass
    try:
        return utc_minute(datetime.fromtimestamp(max(timestamp_ms, 0) / 1000, timezone.utc))
    except (ValueError, OverflowError, OSError):
        return utc_minute(datetime.fromtimestamp(0, timezone.utc))


def utc_minute(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M}:00Z"  # %Y would not pad the year 999


def parse_count(value: bytes | None) -> Count | None:
    """A record of the output topic as a Count; None if it is not one."""
    try:
        data = json.loads(value) if value is not None else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    window, tag, count = data.get("window_start"), data.get("hashtag"), data.get("count")
    if not (isinstance(window, str) and isinstance(tag, str) and type(count) is int):
        return None
    return Count(window, tag, count)


# ---- What the terminal shows ---------------------------------------------------------------

TOP = 3  # hashtags per minute line
SHOW_EVERY_S = 1.0  # a minute that keeps changing is shown again at most this often


class Board:
    """Shows a minute's top hashtags when it changed: at once the first time, then at most
    once per SHOW_EVERY_S (a replay changes a minute hundreds of times a second), and once
    more at the end with its final counts."""

    def __init__(self, out, run: cli.Run) -> None:
        self.out, self.run = out, run
        self.top: dict[str, dict[str, int]] = {}  # minute -> hashtag -> count
        self.shown_at: dict[str, float] = {}
        self.due: set[str] = set()

    def changed(self, updates: dict[str, Count]) -> None:
        for count in updates.values():
            self.top.setdefault(count.window_start, {})[count.hashtag] = count.count
            self.due.add(count.window_start)
        self.show_due()

    def show_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        ready = sorted(minute for minute in self.due
                       if everything or now - self.shown_at.get(minute, -SHOW_EVERY_S) >= SHOW_EVERY_S)
        if not ready or self.run.reader_is_gone:
            return
        lines = []
        for minute in ready:
            best = sorted(self.top[minute].items(), key=lambda item: (-item[1], item[0]))[:TOP]
            lines.append(f"{minute}  " + "  ".join(f"#{tag} {count}" for tag, count in best))
            self.shown_at[minute] = now
            self.due.discard(minute)
        try:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            self.run.reader_gone()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Count the hashtags of the tweets in a Kafka topic per minute, exactly once "
        "(Kafka transactions), and write the running counts to a compacted topic.")
    config.add_common_arguments(
        parser, topic_help=f"the tweets: env TWITTER_TOPIC, default {config.DEFAULT_TWEETS_TOPIC!r}")
    parser.add_argument("--output-topic", type=topic_argument,
                        help=f"where the counts go, created compacted if missing (env TRENDS_TOPIC, "
                        f"default {config.DEFAULT_TRENDS_TOPIC!r}); it also holds the state a "
                        f"restart resumes from, so use one per --group")
    parser.add_argument("--group", default=DEFAULT_GROUP,
                        help=f"consumer group whose committed offsets say which tweets are "
                        f"counted (default {DEFAULT_GROUP!r})")
    parser.add_argument("--from-beginning", action="store_true",
                        help="a group without committed offsets starts at the earliest tweet "
                        "(default: at new tweets only); a group that has committed offsets "
                        "always continues after them")
    parser.add_argument("--timeout-ms", type=cli.whole_number(1), metavar="MS",
                        help="exit when no tweet arrives for MS milliseconds")
    parser.add_argument("--at-least-once", action="store_true",
                        help="no transactions: write the counts, then commit the offsets. "
                        "Faster, but a crash in between counts some tweets twice")
    return parser


def topic_argument(value: str) -> str:
    try:
        return config.check_topic(value, "--output-topic")
    except config.ConfigError as error:  # argparse turns this into a usage error (exit 2)
        raise argparse.ArgumentTypeError(str(error)) from None


if __name__ == "__main__":
    sys.exit(main())

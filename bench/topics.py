"""Kafka-side helpers of the harness: fresh topics, what a run really wrote, sample records.

They run between measurements, never during one: every client here is closed before the
next timed command starts, so none of its threads competes for the two cores.
"""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

import config

METADATA_TIMEOUT_S = 30
POLL_TIMEOUT_MS = 500


def client_kwargs(bootstrap: str) -> dict:
    """The connection settings the scripts use (security protocol, SASL from the environment)."""
    return config.connection_kwargs(config.load().override(bootstrap_servers=bootstrap))


def unique_name(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    """A new, empty topic (one partition, like the tutorial's auto-created topic)."""
    name = unique_name(prefix)
    admin = KafkaAdminClient(**client_kwargs(bootstrap))
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()
    return name


def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Drop the topics a case filled, so a long run does not fill the disk."""
    if not names:
        return
    admin = KafkaAdminClient(**client_kwargs(bootstrap))
    try:
        admin.delete_topics(names)
    finally:
        admin.close()


def record_count(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (its end offsets: our topics start at 0, never compact)."""
    consumer = KafkaConsumer(**client_kwargs(bootstrap))
    try:
        partitions = _partitions(consumer, topic)
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def committed(bootstrap: str, topic: str, group: str) -> int:
    """The group's committed offsets on the topic, added up (0 if it committed nothing)."""
    consumer = KafkaConsumer(**client_kwargs(bootstrap), group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(partition) or 0 for partition in _partitions(consumer, topic))
    finally:
        consumer.close()


def sample_records(bootstrap: str, topic: str, limit: int) -> list[tuple[bytes, bytes]]:
    """The first ``limit`` (key, value) pairs of the topic."""
    consumer = KafkaConsumer(**client_kwargs(bootstrap), enable_auto_commit=False)
    try:
        partitions = _partitions(consumer, topic)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + METADATA_TIMEOUT_S
        while len(records) < limit and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                records.extend((record.key or b"", record.value or b"") for record in batch)
        return records[:limit]
    finally:
        consumer.close()


def write_records(path: Path, records: list[tuple[bytes, bytes]], count: int) -> Path:
    """``count`` lines of "KEY<TAB>VALUE", cycling through ``records`` (for kcat -K and bare.py)."""
    for key, value in records:
        if b"\n" in key + value or b"\t" in key:
            raise ValueError(f"a record cannot be written as one KEY<TAB>VALUE line: {key!r} {value[:60]!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        for key, value in itertools.islice(itertools.cycle(records), count):
            file.write(key + b"\t" + value + b"\n")
    return path


def send_one(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(**client_kwargs(bootstrap))
    try:
        producer.send(topic, key=key, value=value).get(timeout=METADATA_TIMEOUT_S)
    finally:
        producer.close()


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    deadline = time.monotonic() + METADATA_TIMEOUT_S
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, partition) for partition in sorted(partitions)]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} has no partitions after {METADATA_TIMEOUT_S} s")
        time.sleep(0.1)

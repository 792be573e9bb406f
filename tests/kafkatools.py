"""Helpers the tests share for looking at what really is in a topic."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError


def unique_topic(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                      topic_configs=configs or {})])
    finally:
        admin.close()
    return name


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Every record of ``topic`` from the start, once ``expected`` have arrived.

    Polls until at least ``expected`` records were read (then reads on until the end
    offsets, so extra records are seen too) or ``timeout_s`` passes. No consumer group:
    it assigns all partitions itself and commits nothing.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout_s
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                time.sleep(0.1)
        if partitions is None:
            return []
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        records: list = []
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if len(records) >= expected:
                end = consumer.end_offsets(assignment)
                if all(consumer.position(tp) >= end[tp] for tp in assignment):
                    break
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def wait_for(condition, timeout_s: float = 30.0, interval_s: float = 0.05, what: str = "condition"):
    """Return condition()'s first truthy value; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def end_offset(bootstrap: str, topic: str, partition: int = 0) -> int:
    """How many records partition ``partition`` of ``topic`` holds (its end offset); 0 on error."""
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, bootstrap_timeout_ms=2000)
    except KafkaError:  # a broker being killed or restarted: "not yet"
        return 0
    try:
        tp = TopicPartition(topic, partition)
        return consumer.end_offsets([tp])[tp]
    except KafkaError:
        return 0
    finally:
        consumer.close()


@contextlib.contextmanager
def own_broker(data_dir):
    """A one-node Kafka of the test's own, which it may freeze (see frozen()); its bootstrap
    address and the node's pid."""
    from broker import cluster

    kafka = cluster.start(data_dir=data_dir, port=cluster.free_port())
    try:
        yield kafka.bootstrap, kafka.nodes[0].pid
    finally:
        cluster.stop(data_dir=data_dir)


@contextlib.contextmanager
def frozen(pid: int):
    """The broker stops answering (SIGSTOP) while its connections stay open, as a hung or
    overloaded one does; it goes on when the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)

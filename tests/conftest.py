"""A real Apache Kafka broker for the whole test session.

KAFKA_BOOTSTRAP_SERVERS set: the tests use that broker (and start nothing).
Otherwise one is started with the project's own `broker` package on a free port, in a
temporary data dir, and stopped at the end of the session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kafkatools  # noqa: E402


# What the session broker was, for the line at the end of the test report.
BROKER_USED: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for line in BROKER_USED:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def bootstrap_servers(tmp_path_factory) -> str:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        BROKER_USED.append(f"integration tests ran against the broker at {given}")
        yield given
        return
    from broker import cluster

    data_dir = tmp_path_factory.mktemp("kafka")
    node = cluster.start(data_dir=data_dir, port=cluster.free_port())
    BROKER_USED.append(
        f"integration tests ran against Apache Kafka {node.kafka_version} at {node.bootstrap} "
        f"(jars: {node.jars_source})"
    )
    try:
        yield node.bootstrap
    finally:
        cluster.stop(data_dir=data_dir)


@pytest.fixture
def topic(bootstrap_servers) -> str:
    """A fresh, empty, single-partition topic for one test."""
    return kafkatools.create_topic(bootstrap_servers, kafkatools.unique_topic())


@pytest.fixture
def make_topic(bootstrap_servers):
    """make_topic(partitions=N): a fresh topic with N partitions."""

    def make(partitions: int = 1) -> str:
        return kafkatools.create_topic(bootstrap_servers, kafkatools.unique_topic(), partitions)

    return make

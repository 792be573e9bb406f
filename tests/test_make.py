"""The Makefile's targets as a learner runs them: `make help`, `make kafka-status`, `make demo`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import ROOT


def make(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    # The venv running the tests, as it is: `-o install` keeps make from reinstalling it.
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("KAFKA_", "MAKE"))}
    environment.update(env or {})
    return subprocess.run(["make", "--no-print-directory", "-o", "install", f"VENV={sys.prefix}",
                           *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=timeout)


def test_help_is_plain_text():
    result = make("help")
    assert result.returncode == 0, result.stderr
    assert "  make kafka         start Kafka on 127.0.0.1:9092" in result.stdout
    assert "$" not in result.stdout and "(" in result.stdout


def test_kafka_status_when_stopped_is_an_answer_not_a_make_error(tmp_path):
    result = make("kafka-status", env={"KAFKA_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert result.stdout == f"not running (data dir {tmp_path})\n"
    assert result.stderr == ""


def test_kafka_kill_without_a_node_says_how():
    result = make("kafka-kill")
    assert result.returncode == 2
    assert "say which node: make kafka-kill NODE=2" in result.stderr


@pytest.mark.broker
def test_demo_uses_the_kafka_that_answers_and_shows_just_what_it_sent(bootstrap_servers, tmp_path):
    port = bootstrap_servers.split(",")[0].rsplit(":", 1)[1]
    result = make("demo", f"PORT={port}", env={"KAFKA_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"using the Kafka that already answers at 127.0.0.1:{port} "
                        f"(started elsewhere, not from {tmp_path})")
    topic = re.search(r"created topic '(demo-\d{8}-\d{6})' with 3 partitions",
                      result.stdout + result.stderr)[1]
    assert sum(line.startswith("delivered ") for line in lines) == 6
    printed = [line for line in lines if line.startswith("partition=")]
    assert len(printed) == 6 and "Processed a total of 6 messages" in result.stderr.splitlines()
    assert f"--topic {topic}" in result.stdout
    assert not Path(tmp_path, "cluster.json").exists()  # nothing was started

"""Run the README's commands against the test broker, so the tutorial cannot rot.

How the README marks what runs:

- Every ```bash block is run, in README order, as one `bash -e -o pipefail` script, in the
  repository root, with the venv's `python` first on PATH. Blocks share the broker, so later
  blocks see what earlier ones did, just as a reader's terminal would.
- The ```text block right after it (only blank lines between) is its output: every line of it
  must appear in what the commands printed (stdout and stderr), after masking what differs
  from run to run: numbers (also 2,411 or 0.43) become 0, UUIDs <uuid>, a leading ^C (the
  terminal's echo of Ctrl-C) goes, runs of spaces count as one, and the test's topic and
  group read as `sample` and `tutorial`. A line `...` stands for lines left out. Any other
  fence (```console, ```json, ```dotenv, ```mermaid, a ```text block after prose) is shown
  only.
- A ```python block is run the same way, as `python -` with the block on stdin.
- Commands get the replacements that point them at the test's broker, topics and group (the
  reverse of the masking of the output; python -m kafka.admin has no environment variables):
  127.0.0.1:9092 becomes the broker's address; the words `sample` and `tutorial` (whole
  words, not part of a file name such as data/sample-stream.jsonl) the test's topic and group;
  and the topics the README names (README_TOPICS: "greetings", "tweets", "trends", as whole
  words or `"name"` in Python) fresh topics, which read as their README names in the output.
- An HTML comment on the line before a ```bash block changes how it runs:
    <!-- readme-test: skip (reason) -->           not run; the reason is required
    <!-- readme-test: exit N -->                  must exit with N instead of 0
    <!-- readme-test: interrupt after N lines --> one command: after N lines on stdout it
                                                  gets SIGINT (Ctrl-C) and must exit with 130
    <!-- readme-test: own kafka -->               runs against a Kafka of the test's own, not
                                                  the shared one: KAFKA_PORT and KAFKA_DATA_DIR
                                                  (read by `python -m broker` and the Makefile)
                                                  name a free port and a temporary data dir,
                                                  KAFKA_BOOTSTRAP_SERVERS its first node, and
                                                  that data dir reads as `.kafka` in the output.
                                                  The blocks start and stop it themselves
                                                  (`make kafka NODES=3` ...); the test wipes it.
    <!-- readme-test: tls kafka -->               runs against a Kafka with TLS of the test's own
                                                  (`python -m broker start --sasl --tls`): the
                                                  block's ports 9292-9295 and its data dir
                                                  .kafka-tls become the test's, and that data
                                                  dir reads as `.kafka-tls` in the output.
    <!-- readme-test: .env above -->              the variables of the last ```dotenv block
                                                  above are set, as a .env file would set them
                                                  (after the same replacements), so the README
                                                  never writes your .env.
  Directives combine, separated by commas: `<!-- readme-test: exit 1, tls kafka, .env above -->`.
- The README's commands name no topic or group: the test sets KAFKA_TOPIC and KAFKA_GROUP_ID
  to fresh names, and TWITTER_BEARER_TOKEN to nothing (no real X account is ever used).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import kafkatools
from broker import cluster
from scripts import ROOT, Process

README = ROOT / "README.md"
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")  # 7, 0.43, 2,411, and so 127.0.0.1 too
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
INTERRUPTED = 130
RUNNABLE = ("bash", "python")
PYTHON_BROKER = "127.0.0.1:9092"
README_TOPICS = ("greetings", "tweets", "trends")
SHOWN_NAME = r"(?<![\w./-]){}(?![\w/.-])"  # `sample`, not data/sample-stream.jsonl or sample.py
OWN_NODES_MAX = 3  # the "own kafka" blocks start at most this many nodes (two ports each)
TLS_PORTS = re.compile(r"\b929([2-5])\b")  # `tls kafka`: 9292 (PLAINTEXT) to 9295 (SASL_SSL)
TLS_DATA_DIR = ".kafka-tls"


@dataclass
class Block:
    line: int  # where the ```bash fence is, 1-based, for error messages
    code: str
    directive: str | None
    output: list[str] | None  # the ```text block that follows, if any
    dotenv: dict[str, str] | None = None  # the variables of the last ```dotenv block above


def fences(lines: list[str]):
    """(language, first line number, body lines) of each fenced block."""
    index = 0
    while index < len(lines):
        match = re.fullmatch(r"```(\S*)\s*", lines[index])
        if not match:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].rstrip() == "```")
        yield match[1], index, lines[index + 1:end]
        index = end + 1


def blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    found: list[Block] = []
    previous = None  # (language, index of the closing fence) of the block before
    dotenv = None
    for language, start, body in fences(lines):
        if language == "dotenv":
            dotenv = dict(line.split("=", 1) for line in body if line.strip() and not line.startswith("#"))
        if language in RUNNABLE:
            before = next((line for line in reversed(lines[:start]) if line.strip()), "")
            directive = DIRECTIVE.fullmatch(before.strip())
            code = "\n".join(body)
            if language == "python":
                code = f"python - <<'README_PY'\n{code}\nREADME_PY"
            found.append(Block(start + 1, code, directive and directive[1], None, dotenv))
        elif language == "text" and previous and previous[0] in RUNNABLE \
                and not "".join(lines[previous[1] + 1:start]).strip():
            found[-1].output = body
        previous = (language, start + len(body) + 1)
    return found


def mask(line: str, names: dict[str, str]) -> str:
    for real, shown in names.items():
        line = line.replace(real, shown)
    line = UUID.sub("<uuid>", line.removeprefix("^C"))
    # Runs of spaces count as one: pprint (python -m kafka.admin) indents by a name's length.
    return " ".join(NUMBER.sub("0", line).split())


def missing_lines(shown: list[str], printed: list[str], names: dict[str, str]) -> list[str]:
    """The shown lines (masked) that the run did not print, counting repeats."""
    wanted = Counter(mask(line, names) for line in shown if line.strip() and line.strip() != "...")
    return list((wanted - Counter(mask(line, names) for line in printed)).elements())


def test_blocks_and_directives_are_found():
    text = "\n".join([
        "<!-- readme-test: skip (no) -->", "```bash", "make kafka", "```", "",
        "```text", "started", "```", "",
        "```bash", "python producer.py", "```", "", "```text", "sent 1", "```",
        "prose", "```text", "not output", "```",
        "<!-- readme-test: exit 2 -->", "```bash", "python producer.py --count -1", "```",
        "```python", "print(1)", "```", "```text", "1", "```",
    ])
    assert blocks(text) == [
        Block(2, "make kafka", "skip (no)", ["started"]),
        Block(10, "python producer.py", None, ["sent 1"]),
        Block(22, "python producer.py --count -1", "exit 2", None),
        Block(25, "python - <<'README_PY'\nprint(1)\nREADME_PY", None, ["1"]),
    ]


def test_masking_keeps_the_words_and_drops_what_varies():
    names = {"test-1a2b": "sample"}
    assert missing_lines(["created topic 'sample' with 3 partitions", "...",
                          "^Csent 3, acknowledged 3, failed 0 in 0.43 s (6.9 events/s)"],
                         ["created topic 'test-1a2b' with 3 partitions",
                          "sent 12, acknowledged 12, failed 0 in 1.02 s (11.8 events/s)"],
                         names) == []
    assert missing_lines(["published 300 tweets (979 tweets/s)"],
                         ["published 300 tweets (2,411 tweets/s)"], names) == []
    assert missing_lines(["key=alice"], ["key=bob"], names) == ["key=alice"]


def test_shown_names_in_commands_are_whole_words():
    command = "kafka.admin -t sample -p sample:0 -g tutorial --replay data/sample-stream.jsonl"
    for real, shown in {"test-1a2b": "sample", "group-3c": "tutorial"}.items():
        command = re.sub(SHOWN_NAME.format(shown), real, command)
    assert command == "kafka.admin -t test-1a2b -p test-1a2b:0 -g group-3c --replay data/sample-stream.jsonl"


@pytest.mark.broker
def test_the_readme_commands_work_as_shown(bootstrap_servers, tmp_path):
    topic, group = kafkatools.unique_topic("readme"), kafkatools.unique_topic("readme-group")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("KAFKA_", "TWITTER_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap_servers, KAFKA_TOPIC=topic,
               KAFKA_GROUP_ID=group, KAFKA_SECURITY_PROTOCOL="PLAINTEXT",
               TWITTER_BEARER_TOKEN="", PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # One range of free ports: the own cluster's nodes, then the four of the TLS Kafka.
    own_data_dir, own_port = tmp_path / "own-kafka", cluster.free_port(span=2 * OWN_NODES_MAX + 4)
    own_env = dict(env, KAFKA_PORT=str(own_port), KAFKA_DATA_DIR=str(own_data_dir),
                   KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{own_port}")
    tls_data_dir, tls_port = tmp_path / "tls-kafka", own_port + 2 * OWN_NODES_MAX

    def tls_kafka(text: str) -> str:
        text = TLS_PORTS.sub(lambda match: str(tls_port + int(match[1]) - 2), text)
        return text.replace(TLS_DATA_DIR, str(tls_data_dir))

    names = {topic: "sample", group: "tutorial", str(own_data_dir): ".kafka",
             str(tls_data_dir): TLS_DATA_DIR}
    try:
        ran = run_blocks(env, own_env, names, tls_kafka)
    finally:
        cluster.stop(own_data_dir, wipe=True)
        cluster.stop(tls_data_dir, wipe=True)
    assert ran >= 8, "the README's tutorial commands were not found"


def run_blocks(env: dict[str, str], own_env: dict[str, str], names: dict[str, str],
               tls_kafka=lambda text: text) -> int:
    ran = 0
    fresh = {name: kafkatools.unique_topic(name) for name in README_TOPICS}
    env = dict(env, TWITTER_TOPIC=fresh["tweets"], TRENDS_TOPIC=fresh["trends"])
    names = {**names, **{topic: name for name, topic in fresh.items()}}
    for block in blocks(README.read_text()):
        block_env = own_env if block.directive == "own kafka" else env
        block.code = block.code.replace(PYTHON_BROKER, block_env["KAFKA_BOOTSTRAP_SERVERS"])
        for real, shown in names.items():
            if shown in ("sample", "tutorial", *README_TOPICS):
                block.code = re.sub(SHOWN_NAME.format(shown), real, block.code)
        where = f"README.md line {block.line}: {block.code!r}"
        directive = block.directive or ""
        if directive.startswith("skip"):
            assert re.fullmatch(r"skip \(.+\)", directive), f"{where}: say why it is skipped"
            continue
        block_env, parts = env, [part.strip() for part in directive.split(",")]
        if "own kafka" in parts:
            block_env = own_env
        if "tls kafka" in parts:
            block.code = tls_kafka(block.code)
        if ".env above" in parts:
            assert block.dotenv, f"{where}: no ```dotenv block above it"
            block_env = dict(block_env, **{name: tls_kafka(value) if "tls kafka" in parts else value
                                           for name, value in block.dotenv.items()})
        directive = ", ".join(part for part in parts
                              if part not in ("own kafka", "tls kafka", ".env above"))
        if match := re.fullmatch(r"interrupt after (\d+) lines?", directive):
            process = Process(["bash", "-c", f"exec {block.code.strip()}"], env=block_env)
            process.wait_for_stdout(int(match[1]), timeout_s=60)
            process.process.send_signal(signal.SIGINT)
            status, expected = process.finish(timeout_s=60), INTERRUPTED
            printed = process.stdout + process.stderr
        else:
            match = re.fullmatch(r"exit (\d+)", directive)
            assert match or not directive, f"{where}: unknown directive {directive!r}"
            result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=ROOT,
                                    env=block_env, capture_output=True, text=True, timeout=120)
            status, expected = result.returncode, int(match[1]) if match else 0
            printed = (result.stdout + result.stderr).splitlines()
        assert status == expected, f"{where}: exit status {status}, not {expected}:\n" + \
            "\n".join(printed)
        missing = missing_lines(block.output or [], printed, names)
        assert not missing, f"{where}: did not print (masked) {missing}; it printed:\n" + \
            "\n".join(printed)
        ran += 1
    return ran

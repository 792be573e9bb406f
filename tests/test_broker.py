"""The `broker` package: a real Apache Kafka started, stopped and inspected from Python."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

import kafkatools
from broker import cluster, jars

ROOT = Path(__file__).resolve().parent.parent


def broker_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**OUR_ENVIRON, **(env or {})},
    )


# The CLI's defaults and hints follow KAFKA_PORT, KAFKA_DATA_DIR and MAKELEVEL (set when the
# tests run under `make test`): a test sets them itself when it wants them.
OUR_ENVIRON = {name: value for name, value in os.environ.items()
               if name not in ("KAFKA_PORT", "KAFKA_DATA_DIR", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


def java_processes_for(data_dir: Path) -> list[str]:
    """Command lines of live kafka.Kafka JVMs running from ``data_dir``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "kafka.Kafka" in text and str(data_dir.resolve()) in text:
            found.append(text)
    return found


# --- pure helpers -------------------------------------------------------------------------

def test_server_properties_single_node_is_kraft_on_loopback(tmp_path):
    text = cluster.server_properties(1, cluster.node_ports(9092, nodes=1, sasl=False), tmp_path)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["default.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert "zookeeper.connect" not in props
    assert "sasl.enabled.mechanisms" not in props


def test_server_properties_of_a_three_node_cluster_with_sasl(tmp_path):
    ports = cluster.node_ports(9092, nodes=3, sasl=True)
    assert ports == [(9092, 9093, 9098), (9094, 9095, 9099), (9096, 9097, 9100)]
    props = dict(line.split("=", 1)
                 for line in cluster.server_properties(2, ports, tmp_path).splitlines())
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9094,SASL_PLAINTEXT://127.0.0.1:9099"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["default.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"


SHA_HEX = hashlib.sha512(b"kafka").hexdigest()


@pytest.mark.parametrize(
    "published",
    [
        f"{SHA_HEX}  kafka_2.13-4.4.0.tgz\n",  # sha512sum
        "kafka_2.13-4.4.0.tgz: "  # gpg --print-md SHA512: upper case, grouped, wrapped
        + " ".join(SHA_HEX.upper()[i:i + 8] for i in range(0, 64, 8))
        + "\n                      "
        + " ".join(SHA_HEX.upper()[i:i + 8] for i in range(64, 128, 8)) + "\n",
    ],
    ids=["sha512sum", "gpg"],
)
def test_expected_sha512_reads_both_published_formats(published):
    assert jars.expected_sha512(published) == SHA_HEX


def test_expected_sha512_rejects_a_file_without_a_digest():
    with pytest.raises(jars.JarsError, match="no SHA-512 digest"):
        jars.expected_sha512("<html>404 Not Found</html>")


def test_version_is_read_from_the_kafka_jar_name():
    names = ["kafka-clients-4.4.0.jar", "kafka_2.13-4.4.0.jar", "scala-library-2.13.18.jar"]
    assert jars.version_of([Path(n) for n in names]) == "4.4.0"
    assert jars.version_of([Path("kafka-clients-4.4.0.jar")]) is None


def test_kafka_answers_is_false_where_nothing_listens():
    assert cluster.kafka_answers(cluster.free_port()) is False
    assert cluster.live_brokers(cluster.free_port()) is None


def test_a_cluster_id_starting_with_a_dash_is_drawn_again():
    # 0xF8 makes the first base64 character "-" (index 62), which kafka-storage would
    # read as an option: the id must come from the second draw.
    draws = iter([b"\xf8" + bytes(15), b"\x12" * 16])
    cluster_id = cluster._random_cluster_id(lambda size: next(draws))
    assert not cluster_id.startswith("-")
    assert cluster_id == base64.urlsafe_b64encode(uuid.UUID(bytes=b"\x12" * 16, version=4).bytes
                                                  ).decode().rstrip("=")
    assert next(draws, None) is None  # exactly two draws


def test_cluster_ids_are_22_url_safe_characters_and_never_an_option():
    ids = [cluster._random_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)
    assert not any(i.startswith("-") for i in ids)  # ~31 of 2000 would without the redraw
    assert len(set(ids)) == len(ids)


def test_nodes_in_counts_the_formatted_node_dirs(tmp_path):
    assert cluster.nodes_in(tmp_path) == 0
    for node in (1, 2, 3):
        (tmp_path / f"node-{node}" / "data").mkdir(parents=True)
        (tmp_path / f"node-{node}" / "data" / "meta.properties").write_text("node.id=1\n")
    (tmp_path / "node-4").mkdir()  # made, never formatted
    assert cluster.nodes_in(tmp_path) == 3


def test_a_cluster_data_dir_refuses_a_smaller_start_in_one_line(tmp_path):
    for node in (1, 2, 3):
        (tmp_path / f"node-{node}" / "data").mkdir(parents=True)
        (tmp_path / f"node-{node}" / "data" / "meta.properties").write_text("")
    result = broker_cli("start", "--nodes", "1", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == (f"error: {tmp_path} holds a cluster of 3 nodes: start all of them "
                             "with --nodes 3, or delete it first with python -m broker stop --wipe\n")
    under_make = broker_cli("start", "--nodes", "2", "--data-dir", str(tmp_path),
                            env={"MAKELEVEL": "1"})
    assert under_make.stderr == (f"error: {tmp_path} holds a cluster of 3 nodes: start all of them "
                                 "with make kafka NODES=3, or delete it first with make kafka-stop WIPE=1\n")


# --- against the session broker -----------------------------------------------------------

@pytest.mark.broker
def test_round_trip_through_the_broker(bootstrap_servers, topic):
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers)
    sent = [f"message {i}".encode() for i in range(5)]
    for value in sent:
        producer.send(topic, value, key=b"k")
    producer.flush()
    producer.close()
    records = kafkatools.read_all(bootstrap_servers, topic, expected=len(sent))
    assert [r.value for r in records] == sent
    assert [r.offset for r in records] == list(range(5))


# --- the CLI, each with a broker of its own -----------------------------------------------

@pytest.mark.broker
def test_start_status_restart_stop_lifecycle(tmp_path):
    data_dir = tmp_path / "kafka"
    port = cluster.free_port()
    bootstrap = f"127.0.0.1:{port}"

    before = broker_cli("status", "--data-dir", str(data_dir))
    assert before.returncode == 3 and before.stdout.startswith("not running")

    started = broker_cli("start", "--port", str(port), "--data-dir", str(data_dir))
    assert started.returncode == 0, started.stderr
    assert f"is ready at {bootstrap}" in started.stdout
    version = started.stdout.split()[2]
    assert version == jars.find().version

    again = broker_cli("start", "--port", str(port), "--data-dir", str(data_dir))
    assert again.returncode == 0 and again.stdout.startswith("already running")
    assert len(java_processes_for(data_dir)) == 1

    status = broker_cli("status", "--data-dir", str(data_dir))
    assert status.returncode == 0
    assert f"bootstrap {bootstrap}" in status.stdout and f"Apache Kafka {version}" in status.stdout
    pid = int(status.stdout.split("pid ")[1].split(",")[0])
    assert java_processes_for(data_dir) and str(pid) in status.stdout

    topic = kafkatools.create_topic(bootstrap, kafkatools.unique_topic("restart"))
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(3):
        producer.send(topic, f"kept {i}".encode()).get(timeout=30)
    producer.close()

    stopped = broker_cli("stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0 and stopped.stdout == f"stopped Kafka (pid {pid})\n"
    assert java_processes_for(data_dir) == []
    assert broker_cli("status", "--data-dir", str(data_dir)).returncode == 3

    # A restart on the same data dir keeps the topic and its messages (no re-format).
    assert broker_cli("start", "--port", str(port), "--data-dir", str(data_dir)).returncode == 0
    records = kafkatools.read_all(bootstrap, topic, expected=3)
    assert [r.value for r in records] == [b"kept 0", b"kept 1", b"kept 2"]

    wiped = broker_cli("stop", "--wipe", "--data-dir", str(data_dir))
    assert wiped.returncode == 0 and "deleted" in wiped.stdout
    assert not data_dir.exists() and java_processes_for(data_dir) == []
    nothing = broker_cli("stop", "--data-dir", str(data_dir))
    assert nothing.returncode == 0 and nothing.stdout == "Kafka was not running\n"


def test_a_port_in_use_is_a_one_line_error(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = broker_cli("start", "--port", str(port), "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: port {port} on 127.0.0.1 is already in use by another program "
        "(another Kafka?): stop it, or choose another with --port\n"
    )


def test_a_port_in_use_under_make_names_make_s_variable(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = broker_cli("start", "--data-dir", str(tmp_path),
                            env={"MAKELEVEL": "1", "KAFKA_PORT": str(port)})
    assert result.returncode == 1
    assert result.stderr == (
        f"error: port {port} on 127.0.0.1 is already in use by another program "
        f"(another Kafka?): stop it, or choose another with PORT=, e.g. make kafka PORT={port + 100}\n"
    )


@pytest.mark.broker
def test_reuse_takes_a_kafka_that_already_answers(bootstrap_servers, tmp_path):
    port = bootstrap_servers.split(",")[0].rsplit(":", 1)[1]
    reused = broker_cli("start", "--reuse", "--port", port, "--data-dir", str(tmp_path))
    assert reused.returncode == 0, reused.stderr
    assert reused.stdout == (f"using the Kafka that already answers at 127.0.0.1:{port} "
                             f"(started elsewhere, not from {tmp_path})\n")
    assert java_processes_for(tmp_path) == []
    refused = broker_cli("start", "--port", port, "--data-dir", str(tmp_path))
    assert refused.returncode == 1 and "already in use" in refused.stderr


def test_kill_of_a_node_that_is_not_running_is_one_line(tmp_path):
    result = broker_cli("kill", "--node", "2", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == f"error: node 2 of {tmp_path} is not running (running nodes: none)\n"


def test_missing_java_says_how_to_get_it(tmp_path):
    env = {"PATH": str(Path(sys.executable).parent), "JAVA_HOME": ""}
    result = broker_cli("start", "--port", str(cluster.free_port()), "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: java was not found. Kafka needs Java 17 or newer")
    assert "apt-get install openjdk-17-jre-headless" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.broker
def test_a_broker_that_dies_at_start_is_reported_with_its_log(tmp_path):
    # A heap the JVM refuses: Java exits at once, as a broker with a broken setup would.
    result = broker_cli("start", "--port", str(cluster.free_port()), "--data-dir", str(tmp_path),
                        "--heap", "1k")
    assert result.returncode == 1
    first, *rest = result.stderr.splitlines()
    assert first.startswith("error: Kafka node 1 exited during start (exit code 1)")
    assert "--- last lines of the broker log ---" in rest
    assert any("heap" in line.lower() for line in rest)
    assert java_processes_for(tmp_path) == []


@pytest.mark.broker
def test_a_three_node_cluster_kill_restart_and_the_node_count_it_keeps(tmp_path):
    data_dir = tmp_path / "cluster"
    port = cluster.free_port(span=6)
    try:
        started = broker_cli("start", "--nodes", "3", "--port", str(port), "--data-dir", str(data_dir))
        assert started.returncode == 0, started.stderr
        assert len(java_processes_for(data_dir)) == 3

        # A start that asks for another cluster than the running one says so, and changes nothing.
        for args, why in [(["--nodes", "1"], "with 3 nodes: stop it first (python -m broker stop) "
                                             "to start 1 node"),
                          (["--sasl"], "without SASL: stop it first (python -m broker stop), or "
                                       "start a second one beside it")]:
            refused = broker_cli("start", *args, "--data-dir", str(data_dir),
                                 env={"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"})
            assert refused.returncode == 1 and refused.stdout == ""
            assert refused.stderr.startswith(f"error: Kafka already runs from {data_dir} {why}")
        assert len(java_processes_for(data_dir)) == 3

        node_2 = json.loads((data_dir / "cluster.json").read_text())["nodes"][1]
        killed = broker_cli("kill", "--node", "2", "--data-dir", str(data_dir))
        assert killed.returncode == 0, killed.stderr
        first, second = killed.stdout.splitlines()
        assert first == f"killed Kafka node 2 (pid {node_2['pid']}) with SIGKILL"
        assert re.fullmatch(r"nodes 1, 3 count node 2 as gone \(after \d+\.\d s\)", second)
        assert all(str(data_dir / "node-2") not in p for p in java_processes_for(data_dir))
        for alive in (port, port + 4):
            assert cluster.live_brokers(alive) == {1, 3}

        # A plain start brings the killed node back.
        again = broker_cli("start", "--data-dir", str(data_dir))
        assert again.returncode == 0, again.stderr
        assert len(java_processes_for(data_dir)) == 3
        kafkatools.wait_for(lambda: cluster.live_brokers(port) == {1, 2, 3}, 60,
                            what="node 2 back in the cluster")

        # Stopped, the data dir still knows it holds three nodes: a plain start starts them all.
        assert broker_cli("stop", "--data-dir", str(data_dir)).returncode == 0
        plain = broker_cli("start", "--port", str(port), "--data-dir", str(data_dir))
        assert plain.returncode == 0, plain.stderr
        assert f"is ready at 127.0.0.1:{port},127.0.0.1:{port + 2},127.0.0.1:{port + 4}" in plain.stdout
        assert len(java_processes_for(data_dir)) == 3
    finally:
        broker_cli("stop", "--wipe", "--data-dir", str(data_dir))
    assert java_processes_for(data_dir) == []


# --- the download route (no mvn): a local server with an archive of the release's layout ---

class _Archive(http.server.SimpleHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _release_archive(version: str, libs: list[Path]) -> bytes:
    """A .tgz laid out like Apache's: kafka_2.13-V/libs/*.jar (the same jars Maven gave us)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for jar in libs:
            tar.add(jar, arcname=f"kafka_2.13-{version}/libs/{jar.name}")
    return buffer.getvalue()


@pytest.fixture
def release_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Archive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.broker
def test_without_mvn_kafka_is_downloaded_verified_and_started(tmp_path, release_server):
    maven = jars.find({**os.environ, "KAFKA_HOME": ""})
    version = maven.version
    archive = _release_archive(version, [Path(p) for p in maven.classpath.split(os.pathsep)])
    name = f"/{version}/kafka_2.13-{version}.tgz"
    _Archive.files = {name: archive,
                      name + ".sha512": f"{hashlib.sha512(archive).hexdigest()}  kafka.tgz\n".encode()}
    env = {
        "KAFKA_DOWNLOAD_URL": f"http://127.0.0.1:{release_server.server_address[1]}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"), "KAFKA_HOME": "", "KAFKA_VERSION": version,
    }
    port = cluster.free_port()
    data_dir = tmp_path / "kafka"
    try:
        started = broker_cli("start", "--port", str(port), "--data-dir", str(data_dir), env=env)
        assert started.returncode == 0, started.stderr
        assert f"Apache Kafka {version} is ready at 127.0.0.1:{port}" in started.stdout
        libs = tmp_path / "cache" / "kafka-python-tutorial" / f"kafka_2.13-{version}" / "libs"
        assert (libs / f"kafka_2.13-{version}.jar").is_file()
        assert str(libs) in java_processes_for(data_dir)[0]
    finally:
        broker_cli("stop", "--wipe", "--data-dir", str(data_dir))


def test_a_download_that_does_not_match_its_sha512_is_refused(tmp_path, release_server):
    name = "/9.9.9/kafka_2.13-9.9.9.tgz"
    _Archive.files = {name: b"not the real thing",
                      name + ".sha512": f"{SHA_HEX}  kafka_2.13-9.9.9.tgz\n".encode()}
    environ = {"KAFKA_DOWNLOAD_URL": f"http://127.0.0.1:{release_server.server_address[1]}",
               "XDG_CACHE_HOME": str(tmp_path), "KAFKA_VERSION": "9.9.9", "PATH": ""}
    with pytest.raises(jars.JarsError, match="does not match its published SHA-512"):
        jars.find(environ)
    assert list((tmp_path / "kafka-python-tutorial").iterdir()) == []

"""Start, stop and inspect a local Apache Kafka in KRaft mode (no ZooKeeper).

Each node is one JVM that is both broker and controller, listening on 127.0.0.1 only:
node i (0-based) takes the Kafka port ``port + 2*i`` and the controller port next to it,
so a single node is the familiar 9092/9093. Everything of a cluster lives in its data
dir: ``cluster.json`` (what runs), and per node ``node-N/`` with ``server.properties``,
the partition data (``data/``) and the broker log ``server.log``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

from broker import jars as jars_module
from broker import tls

HOST = "127.0.0.1"  # not "localhost": it may resolve to ::1, and not 0.0.0.0: keep it private
DEFAULT_PORT = 9092
DEFAULT_DATA_DIR = Path(".kafka")
DEFAULT_HEAP = "512m"  # a tutorial broker needs little; Java would otherwise take 1/4 of RAM
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 60
MIN_JAVA = 17
STATE_FILE = "cluster.json"
SASL_MECHANISM = "SCRAM-SHA-512"
# The TLS listener (--tls) also takes PLAIN, what Confluent Cloud hands out: over TLS only,
# since PLAIN sends the password itself.
TLS_SASL_MECHANISMS = (SASL_MECHANISM, "PLAIN")
# A PLAIN user name goes into a JAAS option name (user_<name>): Kafka's parser takes these.
PLAIN_USER_NAME = re.compile(r"[A-Za-z0-9_-]+")
LOG4J_CONFIG = Path(__file__).resolve().with_name("log4j2.properties")
JAVA_HELP = (
    f"Kafka needs Java {MIN_JAVA} or newer: install it with "
    "'sudo apt-get install openjdk-17-jre-headless' (Debian/Ubuntu), "
    "'brew install openjdk@17' (macOS), or from https://adoptium.net"
)


class BrokerError(RuntimeError):
    """Kafka could not be started or stopped; the message is one line for the user."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    pid: int
    log_file: str
    sasl_port: int | None = None  # SASL_PLAINTEXT with SCRAM-SHA-512, with --sasl
    tls_port: int | None = None  # SASL_SSL with SCRAM-SHA-512 and PLAIN, with --tls

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class Cluster:
    data_dir: str
    kafka_version: str
    jars_source: str
    nodes: tuple[Node, ...]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def sasl_bootstrap(self) -> str | None:
        ports = [node.sasl_port for node in self.nodes if node.sasl_port]
        return ",".join(f"{HOST}:{port}" for port in ports) or None

    @property
    def tls_bootstrap(self) -> str | None:
        ports = [node.tls_port for node in self.nodes if node.tls_port]
        return ",".join(f"{HOST}:{port}" for port in ports) or None

    @property
    def ca_file(self) -> str | None:
        """The certificate a client of the TLS listener trusts (KAFKA_SSL_CAFILE)."""
        return str(tls.ca_file(Path(self.data_dir))) if self.tls_bootstrap else None

    def listeners(self) -> list[str]:
        """One line per protocol: which one is spoken on which addresses."""
        lines = [f"PLAINTEXT {self.bootstrap}"]
        if self.sasl_bootstrap:
            lines.append(f"SASL_PLAINTEXT (SCRAM-SHA-512) {self.sasl_bootstrap}")
        if self.tls_bootstrap:
            lines.append(f"SASL_SSL ({', '.join(TLS_SASL_MECHANISMS)}) {self.tls_bootstrap}, "
                         f"certificate for 127.0.0.1 and localhost; trust {_shown(self.ca_file)}")
        return lines


def free_port(start: int = 20000, end: int = 60000, span: int = 2) -> int:
    """A port P such that P..P+span-1 are all free on 127.0.0.1 (for tests)."""
    for port in range(start + os.getpid() % 1000 * 10, end, span):
        if all(port_is_free(port + offset) for offset in range(span)):
            return port
    raise BrokerError("no free ports on 127.0.0.1")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Kafka's own listeners do: connections of a node that just stopped linger in
        # TIME_WAIT on its ports and must not count as "in use" for a restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def node_ports(port: int, nodes: int, sasl: bool) -> list[tuple[int, int, int | None]]:
    """(Kafka port, controller port, SASL port or None) of each node.

    Node i takes port+2i and port+2i+1, so one node is Kafka's familiar 9092/9093; SASL
    listeners follow all of those (9094 for one node).
    """
    return [
        (port + 2 * i, port + 2 * i + 1, port + 2 * nodes + i if sasl else None)
        for i in range(nodes)
    ]


def tls_ports(port: int, nodes: int) -> list[int]:
    """The SASL_SSL port of each node (--tls): after the SASL ones (9095 for one node)."""
    return [port + 3 * nodes + i for i in range(nodes)]


def server_properties(node_id: int, ports: list[tuple[int, int, int | None]], log_dir: Path,
                      tls_port: int | None = None, keystore: Path | None = None,
                      plain_user: tuple[str, str] | None = None) -> str:
    """The broker's configuration: single-host KRaft with a static controller quorum.

    A static quorum (controller.quorum.voters) rather than `format --standalone`: the
    voters' addresses live in this file, not in the metadata log, so a restart on other
    ports still finds its controllers.

    tls_port: also a SASL_SSL listener there, with the PEM ``keystore`` (key + certificates)
    and the PLAIN user ``plain_user`` (name, password): PLAIN's users are listed in its JAAS
    line, so this file then holds a password (the caller keeps it private, mode 0600).
    """
    broker_port, controller_port, sasl_port = ports[node_id - 1]
    voters = ",".join(f"{i}@{HOST}:{c}" for i, (_, c, _) in enumerate(ports, start=1))
    replication = min(3, len(ports))
    listeners = [f"PLAINTEXT://{HOST}:{broker_port}"]
    if sasl_port:
        listeners.append(f"SASL_PLAINTEXT://{HOST}:{sasl_port}")
    if tls_port:
        listeners.append(f"SASL_SSL://{HOST}:{tls_port}")
    settings: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": ",".join(listeners + [f"CONTROLLER://{HOST}:{controller_port}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                          "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "log.dirs": log_dir,
        "num.partitions": 1,
        # New topics (producer.py creates its own) get a copy on up to three nodes, so a
        # cluster's topics survive the loss of a node, as "Kafka as a cluster" shows.
        "default.replication.factor": replication,
        # Internal topics: Kafka's defaults want 3 replicas, which one node cannot give.
        "offsets.topic.replication.factor": replication,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min(2, replication),
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min(2, replication),
        # Fewer internal partitions: a faster first start, and nothing a tutorial misses.
        "offsets.topic.num.partitions": 3,
        "transaction.state.log.num.partitions": 3,
        "share.coordinator.state.topic.num.partitions": 3,
        # A first consumer in a group gets its partitions at once instead of after 3 s.
        "group.initial.rebalance.delay.ms": 0,
    }
    if sasl_port:
        # The users' SCRAM credentials live in the cluster metadata (see add_scram_user);
        # the broker side of SCRAM needs no password of its own.
        settings["sasl.enabled.mechanisms"] = SASL_MECHANISM
        settings[f"listener.name.sasl_plaintext.{SASL_MECHANISM.lower()}.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        )
    if tls_port:
        prefix = "listener.name.sasl_ssl."
        settings[f"{prefix}sasl.enabled.mechanisms"] = ",".join(TLS_SASL_MECHANISMS)
        settings[f"{prefix}{SASL_MECHANISM.lower()}.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        )
        users = ""
        if plain_user:
            users = f" user_{plain_user[0]}={_jaas_quoted(plain_user[1])}"
        settings[f"{prefix}plain.sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required{users};"
        )
        # Kafka reads PEM directly: one file with the private key and the certificate chain.
        settings[f"{prefix}ssl.keystore.type"] = "PEM"
        settings[f"{prefix}ssl.keystore.location"] = keystore
    return "".join(f"{key}={_properties_escaped(str(value))}\n" for key, value in settings.items())


def _jaas_quoted(value: str) -> str:
    """``value`` as a quoted JAAS option value (Kafka's JaasConfig reads \\ and \\" in it)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _properties_escaped(value: str) -> str:
    """``value`` as java.util.Properties reads it back: Kafka loads the file as ISO-8859-1, so
    every character beyond ASCII is written as \\uXXXX (a UTF-16 pair beyond U+FFFF)."""
    escaped = value.replace("\\", "\\\\")
    if escaped.isascii():
        return escaped
    units = escaped.encode("utf-16-be")
    return "".join(
        chr(unit) if unit < 0x80 else f"\\u{unit:04x}"
        for unit in (int.from_bytes(units[i:i + 2], "big") for i in range(0, len(units), 2))
    )


def java_major_version(java: str) -> int | None:
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        return None
    major = int(match[1])
    return int(match[2]) if major == 1 and match[2] else major  # "1.8" is Java 8


def find_java(environ: Mapping[str, str] = os.environ) -> str:
    java_home = environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError(f"java was not found. {JAVA_HELP}")
    major = java_major_version(java)
    if major is None or major < MIN_JAVA:
        raise BrokerError(f"{java} is Java {major or '(unknown)'}. {JAVA_HELP}")
    return java


def kafka_answers(port: int, timeout_s: float = 2.0) -> bool:
    """True if a Kafka broker answers an ApiVersions request on HOST:port.

    Hand-written (20 bytes on the wire) so that `python -m broker` needs no client
    library; the broker opens its client port only once it has caught up with the
    controller, so an answer here means it is ready for producers and consumers.
    """
    api_key, api_version, correlation_id, client_id = 18, 0, 7, b"broker-probe"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id))
    request = header + client_id
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            reply = b""
            while len(reply) < 10:  # size, correlation id, error code
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    _, got_correlation_id, error_code = struct.unpack(">iih", reply[:10])
    return got_correlation_id == correlation_id and error_code == 0


def _state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def _cmdline(pid: int) -> str | None:
    """The command line of a live process, or None if there is none with that pid."""
    try:
        # A zombie (exited, not yet reaped by its parent) has an empty command line.
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() or None
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): ask ps
        result = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False
        )
        return result.stdout.strip() or None


def _is_our_broker(pid: int, node_dir: Path) -> bool:
    # The pid file may be stale and its pid reused by something else: check it is
    # kafka.Kafka with this node's server.properties before we call it ours (or kill it).
    cmdline = _cmdline(pid)
    return bool(cmdline) and "kafka.Kafka" in cmdline and str(node_dir.resolve()) in cmdline


def status(data_dir: Path = DEFAULT_DATA_DIR) -> Cluster | None:
    """The cluster running from ``data_dir``, or None. Nodes that died are left out."""
    try:
        state = json.loads(_state_path(data_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    nodes = tuple(
        Node(**node)
        for node in state["nodes"]
        if _is_our_broker(node["pid"], data_dir / f"node-{node['node_id']}")
    )
    if not nodes:
        return None
    return Cluster(state["data_dir"], state["kafka_version"], state["jars_source"], nodes)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _format(java: str, jars: jars_module.Jars, node_dir: Path, cluster_id: str) -> None:
    if (node_dir / "data" / "meta.properties").exists():
        return  # formatted before: keep the data (formatting again would fail anyway)
    result = subprocess.run(
        [java, "-cp", jars.classpath, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
         f"-Dkafka.logs.dir={node_dir}", "-Dkafka.log.file=format.log",
         "kafka.tools.StorageTool", "format",
         "-t", cluster_id, "-c", str(node_dir / "server.properties")],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise BrokerError(f"kafka-storage format failed: {reason[-1] if reason else result.returncode}")


def nodes_in(data_dir: Path) -> int:
    """How many nodes the cluster in ``data_dir`` has (formatted node-N dirs); 0 if none yet."""
    return len(list(Path(data_dir).glob("node-*/data/meta.properties")))


def how(cli: str, make: str, environ: Mapping[str, str] = os.environ) -> str:
    """The way to say a fix to whoever runs us: make's syntax under make, else the flag's."""
    return make if environ.get("MAKELEVEL") else cli


def start(
    data_dir: Path = DEFAULT_DATA_DIR,
    port: int = DEFAULT_PORT,
    nodes: int | None = None,
    heap: str = DEFAULT_HEAP,
    timeout_s: float = START_TIMEOUT_S,
    sasl: bool = False,
    environ: Mapping[str, str] = os.environ,
    tls_listener: bool = False,
) -> Cluster:
    """Start the cluster (or return the one already running) once it answers requests.

    nodes: how many; None means as many as the data dir already holds (1 for a new one).
    A cluster whose nodes partly died (kill --node) gets them started again.
    sasl: also listen with SASL_PLAINTEXT + SCRAM-SHA-512, for the user named by
    KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD (the variables the scripts read too).
    tls_listener (needs sasl): also listen with SASL_SSL, for that user with PLAIN and
    SCRAM-SHA-512, with a certificate for 127.0.0.1 and localhost signed by a CA made for
    this data dir (see broker/tls.py; ``Cluster.ca_file`` is the file clients trust).
    """
    data_dir = Path(data_dir).resolve()
    held = nodes_in(data_dir)
    running = status(data_dir)
    if running is not None:
        _check_matches(running, nodes, sasl, environ, tls_listener)
        return _restart_missing(running, heap, timeout_s, environ)
    if nodes is None:
        nodes = held or 1
    elif nodes < held:
        raise BrokerError(
            f"{data_dir} holds a cluster of {held} nodes: start all of them with "
            + how(f"--nodes {held}", f"make kafka NODES={held}", environ)
            + ", or delete it first with "
            + how("python -m broker stop --wipe", "make kafka-stop WIPE=1", environ)
        )
    if sasl and not (environ.get("KAFKA_SASL_USERNAME") and environ.get("KAFKA_SASL_PASSWORD")):
        raise BrokerError("--sasl needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD in the "
                          "environment: the user it creates")
    plain_user = None
    if tls_listener:
        if not sasl:
            raise BrokerError("--tls needs --sasl: the TLS listener speaks SASL_SSL")
        plain_user = (environ["KAFKA_SASL_USERNAME"], environ["KAFKA_SASL_PASSWORD"])
        if not PLAIN_USER_NAME.fullmatch(plain_user[0]):
            raise BrokerError(f"KAFKA_SASL_USERNAME={plain_user[0]!r}: --tls takes a user name of "
                              "letters, digits, '-' and '_' only (it becomes a PLAIN user)")
    ports = node_ports(port, nodes, sasl)
    secure_ports = tls_ports(port, nodes) if tls_listener else [None] * nodes
    for taken in [p for triple in ports for p in triple if p and not port_is_free(p)] + \
            [p for p in secure_ports if p and not port_is_free(p)]:
        raise BrokerError(
            f"port {taken} on {HOST} is already in use by another program "
            f"(another Kafka?): stop it, or choose another with "
            + how("--port", f"PORT=, e.g. make kafka PORT={port + 100}", environ)
        )
    java, jars = _java_and_jars(environ)

    cluster_id_file = data_dir / "cluster-id"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not cluster_id_file.exists():
        cluster_id_file.write_text(_random_cluster_id())
    cluster_id = cluster_id_file.read_text().strip()
    try:
        keystore = tls.ensure(data_dir) if tls_listener else None
    except tls.TlsError as error:
        raise BrokerError(str(error)) from None

    launched: list[tuple[Node, subprocess.Popen]] = []
    for node_id in range(1, nodes + 1):
        node_dir = data_dir / f"node-{node_id}"
        node_dir.mkdir(exist_ok=True)
        # Only its owner may read it: with --tls it holds the PLAIN user's password.
        tls.write_private(node_dir / "server.properties", server_properties(
            node_id, ports, node_dir / "data", secure_ports[node_id - 1], keystore, plain_user,
        ).encode("ascii"))
        _format(java, jars, node_dir, cluster_id)
        process = _launch(java, jars, node_dir, heap)
        broker_port, controller_port, sasl_port = ports[node_id - 1]
        node = Node(node_id, broker_port, controller_port, process.pid,
                    str(node_dir / "server.log"), sasl_port, secure_ports[node_id - 1])
        launched.append((node, process))
    cluster = Cluster(str(data_dir), jars.version, jars.source, tuple(n for n, _ in launched))
    _state_path(data_dir).write_text(json.dumps(asdict(cluster), indent=2))
    _wait_until_ready(data_dir, launched, timeout_s)
    if sasl:
        add_scram_user(cluster.bootstrap, environ["KAFKA_SASL_USERNAME"],
                       environ["KAFKA_SASL_PASSWORD"])
    return cluster


def _check_matches(running: Cluster, nodes: int | None, sasl: bool,
                   environ: Mapping[str, str], tls_listener: bool = False) -> None:
    """A start that asks for another cluster than the running one must not pass for done."""
    where = _shown(running.data_dir)
    stop_first = how("python -m broker stop", "make kafka-stop", environ)
    if sasl and not running.sasl_bootstrap:
        raise BrokerError(
            f"Kafka already runs from {where} without SASL: stop it first ({stop_first}), or "
            "start a second one beside it with --data-dir .kafka-sasl --port 9192"
        )
    if tls_listener and not running.tls_bootstrap:
        raise BrokerError(
            f"Kafka already runs from {where} without TLS: stop it first ({stop_first}), or "
            "start a second one beside it with --data-dir .kafka-tls --port 9292"
        )
    held = nodes_in(Path(running.data_dir))
    if nodes is not None and nodes != held:
        raise BrokerError(
            f"Kafka already runs from {where} with {held} node{'s' if held > 1 else ''}: "
            f"stop it first ({stop_first}) to start {nodes} node{'s' if nodes > 1 else ''}"
        )


def _shown(path: str | Path) -> str:
    """A path below the current directory as a relative one: shorter, and copy-pasteable."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def _java_and_jars(environ: Mapping[str, str]) -> tuple[str, jars_module.Jars]:
    java = find_java(environ)
    try:
        return java, jars_module.find(environ)
    except jars_module.JarsError as error:
        raise BrokerError(str(error)) from None


def _restart_missing(running: Cluster, heap: str, timeout_s: float,
                     environ: Mapping[str, str]) -> Cluster:
    """Start again the nodes of a running cluster that died or were killed."""
    data_dir = Path(running.data_dir)
    state = json.loads(_state_path(data_dir).read_text())
    alive = {node.node_id for node in running.nodes}
    dead = [Node(**node) for node in state["nodes"] if node["node_id"] not in alive]
    if not dead:
        return running
    java, jars = _java_and_jars(environ)
    launched = []
    for node in dead:
        process = _launch(java, jars, data_dir / f"node-{node.node_id}", heap)
        launched.append((Node(**{**asdict(node), "pid": process.pid}), process))
    nodes = tuple(sorted(running.nodes + tuple(node for node, _ in launched),
                         key=lambda node: node.node_id))
    cluster = Cluster(running.data_dir, running.kafka_version, running.jars_source, nodes)
    _state_path(data_dir).write_text(json.dumps(asdict(cluster), indent=2))
    _wait_until_ready(data_dir, launched, timeout_s)
    return cluster


def _wait_until_ready(data_dir: Path, launched: list[tuple[Node, subprocess.Popen]],
                      timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = list(launched)
    while waiting:
        node, process = waiting[0]
        if process.poll() is not None:
            stop(data_dir)
            # The JVM's own complaints (bad options, no memory) are in kafka.out; Kafka's
            # (bad config, a data dir in use) in server.log.
            out = Path(node.log_file).with_name("kafka.out")
            log = out if _tail(out) else Path(node.log_file)
            raise BrokerError(
                f"Kafka node {node.node_id} exited during start (exit code {process.returncode}); "
                f"see {log}",
                log_tail=_tail(log),
            )
        if kafka_answers(node.port):
            waiting.pop(0)
        elif time.monotonic() > deadline:
            log_tail = _tail(Path(node.log_file))
            stop(data_dir)
            raise BrokerError(
                f"Kafka did not answer on {node.address} within {timeout_s:.0f} s; "
                f"see {node.log_file}",
                log_tail=log_tail,
            )
        else:
            time.sleep(0.1)


def add_scram_user(bootstrap: str, username: str, password: str) -> None:
    """Create (or update) a SCRAM-SHA-512 user, through the admin API over PLAINTEXT.

    Not `kafka-storage format --add-scram name=...,password=...`: that would put the
    password on a command line, where `ps` shows it to every user of the machine.
    """
    # Only --sasl needs a client library: plain `python -m broker` runs on the stdlib alone.
    from kafka.admin import KafkaAdminClient
    from kafka.admin._users import UserScramCredentialUpsertion

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        errors = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(username, SASL_MECHANISM, password)]
        )
    finally:
        admin.close()
    if errors.get(username):
        raise BrokerError(f"could not create the SCRAM user {username!r}: {errors[username]}")


RESERVED_IDS = {bytes(16), bytes(15) + b"\x01"}  # Kafka's Uuid.ZERO_UUID and Uuid.ONE_UUID


def _random_cluster_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """What `kafka-storage.sh random-uuid` prints: a random (version 4) UUID, URL-safe base64.

    As Kafka's own Uuid.randomUuid(), draw again when the id starts with "-" (about 1 in 64:
    `kafka-storage format -t -x...` would read it as an option) or is one Kafka reserves.
    """
    while True:
        raw = uuid.UUID(bytes=random_bytes(16), version=4).bytes
        cluster_id = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if raw not in RESERVED_IDS and not cluster_id.startswith("-"):
            return cluster_id


def _launch(java: str, jars: jars_module.Jars, node_dir: Path, heap: str) -> subprocess.Popen:
    command = [
        java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={node_dir}",
        "-cp", jars.classpath, "kafka.Kafka", str(node_dir / "server.properties"),
    ]
    with open(node_dir / "kafka.out", "wb") as out:
        # A session of its own: Ctrl-C in the terminal that ran `make kafka` later
        # must not reach the broker, which outlives the command that started it.
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(data_dir: Path = DEFAULT_DATA_DIR, wipe: bool = False,
         timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM every node and wait until they are gone. True if anything was running."""
    data_dir = Path(data_dir).resolve()
    cluster = status(data_dir)
    nodes = cluster.nodes if cluster else ()
    for node in nodes:
        _signal(node.pid, signal.SIGTERM)  # Kafka's shutdown hook closes the logs cleanly
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        while _cmdline(node.pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if _cmdline(node.pid) is not None:
            _signal(node.pid, signal.SIGKILL)
    _state_path(data_dir).unlink(missing_ok=True)
    if wipe and data_dir.exists():
        shutil.rmtree(data_dir)
    return bool(nodes)


def kill_node(data_dir: Path = DEFAULT_DATA_DIR, node_id: int = 1,
              timeout_s: float = STOP_TIMEOUT_S) -> Node:
    """SIGKILL one node of the cluster in ``data_dir``, as a power cut would, and wait until
    it is gone. Only a pid that is this data dir's kafka.Kafka is killed (see status)."""
    data_dir = Path(data_dir).resolve()
    running = status(data_dir)
    node = next((n for n in running.nodes if n.node_id == node_id), None) if running else None
    if node is None:
        alive = ", ".join(str(n.node_id) for n in running.nodes) if running else "none"
        raise BrokerError(f"node {node_id} of {_shown(data_dir)} is not running "
                          f"(running nodes: {alive})")
    _signal(node.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while _cmdline(node.pid) is not None:
        if time.monotonic() > deadline:
            raise BrokerError(f"node {node_id} (pid {node.pid}) did not exit after SIGKILL")
        time.sleep(0.05)
    return node


def live_brokers(port: int, timeout_s: float = 2.0) -> set[int] | None:
    """The ids of the brokers that the node on HOST:port counts as alive (unfenced), from a
    Metadata request; None if it does not answer. Hand-written like kafka_answers."""
    api_key, api_version, correlation_id, client_id = 3, 4, 8, b"broker-probe"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id))
    request = header + client_id + struct.pack(">ib", 0, 0)  # no topics, no auto-creation
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            reply = b""
            while len(reply) < 4 or len(reply) < 4 + struct.unpack(">i", reply[:4])[0]:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    got_correlation_id, _throttle, count = struct.unpack(">iii", reply[4:16])
    if got_correlation_id != correlation_id:
        return None
    ids, offset = set(), 16
    for _ in range(count):  # node_id, host, port, rack
        (node_id,) = struct.unpack(">i", reply[offset:offset + 4])
        (host_length,) = struct.unpack(">h", reply[offset + 4:offset + 6])
        offset += 6 + host_length + 4
        (rack_length,) = struct.unpack(">h", reply[offset:offset + 2])
        offset += 2 + max(rack_length, 0)
        ids.add(node_id)
    return ids


def wait_until_gone(data_dir: Path, node_id: int, timeout_s: float = 60) -> float:
    """Wait until every running node of the cluster counts ``node_id`` as gone (the controller
    fences a broker that missed its heartbeats for broker.session.timeout.ms, 9 s); the
    seconds it took."""
    began = time.monotonic()
    while True:
        running = status(data_dir)
        others = [node for node in running.nodes if node.node_id != node_id] if running else []
        if all(node_id not in (live_brokers(node.port) or {node_id}) for node in others):
            return time.monotonic() - began
        if time.monotonic() - began > timeout_s:
            raise BrokerError(f"the cluster still counts node {node_id} as alive after "
                              f"{timeout_s:.0f} s")
        time.sleep(0.2)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass

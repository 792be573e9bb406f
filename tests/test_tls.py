"""The managed-cluster path, proven locally: SASL_SSL against a real Kafka with TLS.

One Kafka for the whole module, started as a learner starts it (`python -m broker start
--sasl --tls`): a SASL_SSL listener with PLAIN and SCRAM-SHA-512 and a certificate from a CA
made for its data dir. The scripts connect through it with both mechanisms, by 127.0.0.1 and
by localhost; each broken setup (a CA that does not sign the certificate, no CA file, a
certificate for another name, the wrong protocol for the port, a wrong password) is one line
naming the thing to fix, exit status 1, within 3 s; and at DEBUG no form of the
password is ever printed. The password has a non-ASCII letter, a backslash and quotes.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import config
import diagnose
from broker import cluster, tls
from scripts import ROOT

USER = "tutorial-user"
PASSWORD = "Pl\u00e4in\\Secr'et\"-42"  # "Secr" is in every form it can be printed in
SCRIPT_TIMEOUT_S = 60
DEFINITE_S = 3.0  # how long a definite TLS, protocol or login error may take


# --- pure helpers ----------------------------------------------------------------------------

def test_server_properties_with_a_tls_listener(tmp_path):
    ports = cluster.node_ports(9092, nodes=1, sasl=True)
    assert cluster.tls_ports(9092, nodes=1) == [9095]
    text = cluster.server_properties(1, ports, tmp_path / "data", 9095, tmp_path / "broker.pem",
                                     (USER, PASSWORD))
    assert text.isascii()  # Kafka reads the file as ISO-8859-1
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,"
                                             "SASL_SSL://127.0.0.1:9095")
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"]
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"  # SASL_PLAINTEXT: no PLAIN in clear
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512,PLAIN"
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    # java.util.Properties unescapes \\ and \uXXXX; JAAS then unescapes \\ and \"
    assert props["listener.name.sasl_ssl.plain.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required '
        'user_tutorial-user="Pl\\u00e4in\\\\\\\\Secr\'et\\\\"-42";')


def test_a_tls_start_on_a_cluster_running_without_it_says_so():
    node = cluster.Node(1, 9092, 9093, os.getpid(), "server.log", sasl_port=9094)
    running = cluster.Cluster("/tmp/somewhere", "4.4.0", "maven", (node,))
    with pytest.raises(cluster.BrokerError, match="without TLS: stop it first"):
        cluster._check_matches(running, None, True, {}, tls_listener=True)


def test_the_ca_is_made_once_and_kept_private(tmp_path):
    keystore = tls.ensure(tmp_path)
    ca = tls.ca_file(tmp_path).read_bytes()
    assert tls.ensure(tmp_path) == keystore and tls.ca_file(tmp_path).read_bytes() == ca
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    for private in ("ca.key", "broker.pem"):
        assert stat.S_IMODE((tmp_path / "tls" / private).stat().st_mode) == 0o600
    assert keystore.read_text().count("BEGIN CERTIFICATE") == 2  # broker, then CA
    assert "BEGIN PRIVATE KEY" in keystore.read_text()  # PKCS#8, unencrypted: what Kafka reads


@pytest.mark.parametrize("secret", [PASSWORD, "Pl\u00e4in-Secret-42", "tab\tSecr\u00e9t", "plain-Secret"])
def test_redact_masks_every_form_of_a_secret_in_a_sasl_dump(secret):
    config.Secret(secret).reveal()
    core = "Secr"
    for extra in (b"", b"'", b'"'):  # what else the request holds decides how repr() quotes it
        request = b"\x00\x00\x00C\x00$" + extra + b"\x00" + USER.encode() + b"\x00" + secret.encode() + b"\x00"
        for shown in (repr(bytearray(request)), repr(request), repr(secret), repr("x'" + secret),
                      str({"sasl_plain_password": secret}), json.dumps(secret),
                      json.dumps(secret, ensure_ascii=False), secret.encode("unicode_escape").decode()):
            assert core not in config.redact(f"Send: {shown}"), shown


# --- one Kafka with TLS for the module ---------------------------------------------------------

class TlsKafka:
    def __init__(self, data_dir: Path, start_output: str, running: cluster.Cluster) -> None:
        self.data_dir, self.start_output, self.cluster = data_dir, start_output, running
        self.plaintext = running.bootstrap
        self.sasl_plaintext = running.sasl_bootstrap
        self.tls_port = running.nodes[0].tls_port
        self.ca_file = running.ca_file


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tls") / ".kafka-tls"
    port = cluster.free_port(span=4)
    env = {**os.environ, "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": PASSWORD}
    for name in ("KAFKA_PORT", "KAFKA_DATA_DIR", "MAKELEVEL"):
        env.pop(name, None)
    started = subprocess.run(
        [sys.executable, "-m", "broker", "start", "--sasl", "--tls", "--data-dir", str(data_dir),
         "--port", str(port)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    try:
        yield TlsKafka(data_dir, started.stdout, cluster.status(data_dir))
    finally:
        cluster.stop(data_dir, wipe=True)


def run_script(name: str, *args: str, bootstrap: str, **env: str) -> tuple[int, str, str, float]:
    """(exit status, stdout, stderr, seconds) of ``python <name> args`` with SASL settings."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("KAFKA_")}
    environment.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_SASL_USERNAME=USER,
                       KAFKA_SASL_PASSWORD=PASSWORD, KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                       PYTHONUNBUFFERED="1")
    environment.update(env)
    began = time.monotonic()
    result = subprocess.run([sys.executable, name, *args], cwd=ROOT, env=environment,
                            capture_output=True, text=True, errors="backslashreplace",
                            timeout=SCRIPT_TIMEOUT_S)
    return result.returncode, result.stdout, result.stderr, time.monotonic() - began


@pytest.mark.broker  # the module's Kafka with TLS
def test_start_and_status_say_which_listener_speaks_what(tls_kafka):
    ca = tls_kafka.ca_file
    assert ca == str(tls_kafka.data_dir / "tls" / "ca.pem")
    lines = tls_kafka.start_output.splitlines()
    assert lines[0].startswith("Apache Kafka ") and " is ready (started in " in lines[0]
    assert lines[1:] == [
        f"  PLAINTEXT {tls_kafka.plaintext}",
        f"  SASL_PLAINTEXT (SCRAM-SHA-512) {tls_kafka.sasl_plaintext}",
        f"  SASL_SSL (SCRAM-SHA-512, PLAIN) 127.0.0.1:{tls_kafka.tls_port}, certificate for "
        f"127.0.0.1 and localhost; trust {ca}",
    ]
    status = subprocess.run([sys.executable, "-m", "broker", "status", "--data-dir",
                             str(tls_kafka.data_dir)], cwd=ROOT, capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout.splitlines()[1:] == lines[1:]
    properties = tls_kafka.data_dir / "node-1" / "server.properties"
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600  # it holds the PLAIN password


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.broker  # the module's Kafka with TLS
def test_producer_and_consumer_over_tls(tls_kafka, mechanism, host):
    topic = f"tls-{mechanism.lower()}-{host.replace('.', '-')}-{os.urandom(4).hex()}"
    bootstrap = f"{host}:{tls_kafka.tls_port}"
    common = dict(bootstrap=bootstrap, KAFKA_SASL_MECHANISM=mechanism,
                  KAFKA_SSL_CAFILE=tls_kafka.ca_file, KAFKA_TOPIC=topic)
    status, out, err, _ = run_script("producer.py", "--count", "3", **common)
    assert status == 0, err
    assert "sent 3, acknowledged 3, failed 0" in err
    status, out, err, _ = run_script("consumer.py", "--from-beginning", "--max-messages", "3",
                                     "--format", "json", **common)
    assert status == 0, err
    assert sorted(json.loads(line)["partition"] >= 0 for line in out.splitlines()) == [True] * 3


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
@pytest.mark.broker  # the module's Kafka with TLS
def test_no_form_of_the_password_is_printed_at_debug(tls_kafka, mechanism):
    topic = f"tls-debug-{os.urandom(4).hex()}"
    common = dict(bootstrap=f"127.0.0.1:{tls_kafka.tls_port}", KAFKA_SASL_MECHANISM=mechanism,
                  KAFKA_SSL_CAFILE=tls_kafka.ca_file, KAFKA_TOPIC=topic)
    printed = ""
    for name, args in [("producer.py", ["--count", "1"]),
                       ("consumer.py", ["--from-beginning", "--max-messages", "1"])]:
        status, out, err, _ = run_script(name, *args, "--log-level", "DEBUG", **common)
        assert status == 0, err[-3000:]
        printed += out + err
    assert "SaslAuthenticateRequest" in printed  # the requests were logged ...
    assert "Secr" not in printed  # ... and no form of the password in them


# --- broken setups: one line that names the thing to fix ---------------------------------------

@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory) -> str:
    """A CA that did not sign the broker's certificate."""
    return str(tls.make_ca(tmp_path_factory.mktemp("foreign-ca"), "some other CA"))


@pytest.fixture(scope="module")
def wrong_name_server(tls_kafka, tmp_path_factory):
    """A TLS server whose certificate, signed by the broker's own CA, is for another name:
    what a client sees when it connects by a name the certificate was not issued for."""
    key, cert = tls.issue(tls_kafka.data_dir / "tls", "kafka.example.com", ["DNS:kafka.example.com"])
    chain = tmp_path_factory.mktemp("wrong-name") / "server.pem"
    tls.write_private(chain, key + cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed: the module is done
            try:
                with context.wrap_socket(connection, server_side=True) as secure:
                    secure.recv(1)
            except (OSError, ssl.SSLError):
                pass  # the client refused our certificate, as it should

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


CASES = {
    # name: (settings, the words the line must hold)
    "a CA that did not sign the certificate": (
        lambda k, foreign, _: dict(bootstrap=f"127.0.0.1:{k.tls_port}", KAFKA_SSL_CAFILE=foreign),
        ["presented a certificate that KAFKA_SSL_CAFILE=", "does not trust",
         "self-signed certificate in certificate chain", "set KAFKA_SSL_CAFILE"]),
    "no KAFKA_SSL_CAFILE": (
        lambda k, *_: dict(bootstrap=f"127.0.0.1:{k.tls_port}"),
        ["presented a certificate that this machine's CAs do not trust", "set KAFKA_SSL_CAFILE"]),
    "a certificate for another name": (
        lambda k, _, wrong_name: dict(bootstrap=wrong_name, KAFKA_SSL_CAFILE=k.ca_file),
        ["is not for the name '127.0.0.1'", "IP address mismatch", "KAFKA_BOOTSTRAP_SERVERS"]),
    "SASL_PLAINTEXT on the TLS port": (
        lambda k, *_: dict(bootstrap=f"127.0.0.1:{k.tls_port}", KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                           KAFKA_SASL_MECHANISM="SCRAM-SHA-512"),
        ["speaks only TLS: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (it is SASL_PLAINTEXT)"]),
    "SASL_SSL on a plaintext port": (
        lambda k, *_: dict(bootstrap=k.sasl_plaintext, KAFKA_SSL_CAFILE=k.ca_file),
        ["does not speak TLS (it answers in plaintext): check KAFKA_SECURITY_PROTOCOL "
         "(SASL_PLAINTEXT there?)"]),
    "PLAIN where the port offers only SCRAM": (
        lambda k, *_: dict(bootstrap=k.sasl_plaintext, KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                           KAFKA_SASL_MECHANISM="PLAIN"),
        ["does not offer the SASL mechanism PLAIN on this port (it offers SCRAM-SHA-512): "
         "set KAFKA_SASL_MECHANISM"]),
    "a CA file that is not PEM": (
        lambda k, *_: dict(bootstrap=f"127.0.0.1:{k.tls_port}", KAFKA_SSL_CAFILE=str(ROOT / "README.md")),
        ["KAFKA_SSL_CAFILE=", "README.md holds no CA certificate that can be read", "PEM"]),
    "a wrong SCRAM password": (
        lambda k, *_: dict(bootstrap=f"localhost:{k.tls_port}", KAFKA_SSL_CAFILE=k.ca_file,
                           KAFKA_SASL_MECHANISM="SCRAM-SHA-512", KAFKA_SASL_PASSWORD="Wr\u00f6ng\\Secr-et"),
        [f"refused the login of user '{USER}' (Authentication failed during authentication due to "
         "invalid credentials with SASL mechanism SCRAM-SHA-512): check KAFKA_SASL_USERNAME and "
         "KAFKA_SASL_PASSWORD"]),
    "a wrong PLAIN password": (
        lambda k, *_: dict(bootstrap=f"127.0.0.1:{k.tls_port}", KAFKA_SSL_CAFILE=k.ca_file,
                           KAFKA_SASL_PASSWORD="Wr\u00f6ng\\Secr-et"),
        [f"refused the login of user '{USER}' (PLAIN: Authentication failed: Invalid username "
         "or password): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name, args", [("producer.py", ["--count", "1"]),
                                        ("consumer.py", ["--max-messages", "1"])])
@pytest.mark.broker  # the module's Kafka with TLS
def test_a_broken_setup_is_one_line_naming_what_to_fix(tls_kafka, foreign_ca, wrong_name_server,
                                                       case, name, args):
    settings, words = CASES[case]
    env = settings(tls_kafka, foreign_ca, wrong_name_server)
    status, out, err, took = run_script(name, *args, "--log-level", "WARNING", **env)
    assert status == 1, err
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"{name}: error: "), err
    for word in words:
        assert word in err, err
    assert took <= DEFINITE_S, f"{case}: {took:.1f} s"
    assert "Secr" not in err and "Traceback" not in err


@pytest.mark.broker  # the module's Kafka with TLS
def test_a_wrong_password_at_debug_is_never_printed(tls_kafka):
    status, out, err, _ = run_script("producer.py", "--count", "1", "--log-level", "DEBUG",
                                     bootstrap=f"127.0.0.1:{tls_kafka.tls_port}",
                                     KAFKA_SSL_CAFILE=tls_kafka.ca_file,
                                     KAFKA_SASL_PASSWORD="Wr\u00f6ng\\Secr-et")
    assert status == 1 and "refused the login" in err.splitlines()[-1]
    assert "Secr" not in out + err


def test_a_refused_login_the_probe_cannot_see_is_told_after_the_bootstrap_timeout(monkeypatch):
    """If the probe finds nothing wrong but the client still cannot log in, the line says what
    is most likely: the SASL settings."""
    monkeypatch.setattr(diagnose, "probe", lambda settings: diagnose.FINE)
    settings = config.load({"KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9092",
                            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                            "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": PASSWORD}, env_file=None)
    assert config.unreachable_message(settings, TimeoutError()) == (
        f"Kafka at kafka.example.com:9092 did not accept the SASL login of user '{USER}' "
        f"(SCRAM-SHA-512): check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM")


@pytest.mark.broker  # the module's Kafka with TLS
def test_nothing_listening_is_said_after_the_bootstrap_timeout(tls_kafka):
    """A broker may be starting: nothing listening is worth the usual wait."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    status, _, err, took = run_script("producer.py", "--count", "1",
                                      bootstrap=f"127.0.0.1:{closed}", KAFKA_SSL_CAFILE=tls_kafka.ca_file)
    assert status == 1 and took >= config.BOOTSTRAP_TIMEOUT_S
    assert err.splitlines()[-1] == (
        f"producer.py: error: nothing listens at 127.0.0.1:{closed} (connection refused): check "
        f"KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-server), host and port")


def test_an_unknown_host_name_is_told_at_once_and_a_dns_failure_is_waited_for(monkeypatch):
    settings = config.load({"KAFKA_BOOTSTRAP_SERVERS": "pkc-typo.example.com:9092",
                            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": USER,
                            "KAFKA_SASL_PASSWORD": PASSWORD}, env_file=None)

    def unknown(address, timeout):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unknown)
    finding = diagnose.probe(settings)
    assert finding.problem and not finding.worth_waiting
    assert finding.message == ("cannot find the host 'pkc-typo.example.com' of pkc-typo.example.com:9092 "
                               "(name or service not known): check KAFKA_BOOTSTRAP_SERVERS (or "
                               "--bootstrap-server)")

    def no_dns(address, timeout):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "create_connection", no_dns)
    assert diagnose.probe(settings).worth_waiting


@pytest.mark.broker  # the module's Kafka with TLS
def test_the_probe_finds_nothing_wrong_with_a_good_setup(tls_kafka):
    for mechanism in ("PLAIN", "SCRAM-SHA-512"):
        settings = config.load({"KAFKA_BOOTSTRAP_SERVERS": f"localhost:{tls_kafka.tls_port}",
                                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": mechanism,
                                "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": PASSWORD,
                                "KAFKA_SSL_CAFILE": tls_kafka.ca_file}, env_file=None)
        assert diagnose.probe(settings) == diagnose.FINE


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
@pytest.mark.broker  # the module's Kafka with TLS
def test_twitter_stream_replays_over_tls(tls_kafka, mechanism):
    topic = f"tls-replay-{os.urandom(4).hex()}"
    status, out, err, _ = run_script("twitter-stream.py", "--replay", "--max-tweets", "5",
                                     bootstrap=f"localhost:{tls_kafka.tls_port}",
                                     KAFKA_SASL_MECHANISM=mechanism, KAFKA_SSL_CAFILE=tls_kafka.ca_file,
                                     TWITTER_TOPIC=topic)
    assert status == 0, err
    assert f"published 5 of 5 tweets to '{topic}'" in out + err and "Secr" not in out + err

"""Why a script cannot connect to Kafka, in one line that names the thing to fix.

kafka-python 3.0.12 retries a failed connection until its bootstrap timeout (10 s here) and
then raises the same ``KafkaTimeoutError`` whatever went wrong: a CA it does not trust, a
certificate for another host name, a port that speaks TLS when it should not (or the other
way round), a refused login, or nothing listening at all. The cause shows only in its DEBUG
log. So, before a client is made for a cluster with TLS or SASL (``cli.Run.connecting``), and
again when one gave up (``config.unreachable_message``), one short probe of the first
bootstrap server tells the causes apart:

1. a TCP connection: does anything listen?
2. with SSL/SASL_SSL, a TLS handshake made as kafka-python makes it (same CA file, host
   name checked): is the certificate trusted, and is it for this host name? Without TLS, an
   ApiVersions request: does the port answer Kafka in plaintext, or does it speak only TLS?
3. with SASL, the SASL handshake: does the broker offer the mechanism? Then the login itself
   (PLAIN, or SCRAM's exchange), which the broker answers with an error if it refuses it.

    $ KAFKA_SSL_CAFILE=other-ca.pem python producer.py
    producer.py: error: Kafka at 127.0.0.1:9095 presented a certificate that KAFKA_SSL_CAFILE=
    other-ca.pem does not trust (self-signed certificate in certificate chain): set ...

The happy path costs one extra connection: a TLS handshake and two to four small requests.
The requests are written by hand, as broker/cluster.py's kafka_answers() is, in versions
every Kafka since 1.0 answers; the password is sent only the way the client itself would
send it (inside TLS with SASL_SSL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config import Settings

PROBE_TIMEOUT_S = 2.0
CLIENT_ID = b"tutorial-probe"
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
# getaddrinfo's answers for a name that does not exist (others, like EAI_AGAIN, may pass).
UNKNOWN_NAME = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}


@dataclass(frozen=True)
class Finding:
    problem: bool  # True: the probe found what is wrong; False: nothing it can tell
    message: str = ""
    worth_waiting: bool = False  # e.g. nothing listens: a broker may be starting


FINE = Finding(False)


def check_before_connecting(settings: Settings) -> None:
    """Raise cli.Failure with the one line to print if the probe finds a definite problem
    (not one that may go away, as nothing listening: then the client waits as usual)."""
    import cli

    finding = probe(settings)
    if finding.problem and not finding.worth_waiting:
        raise cli.Failure(finding.message)


def probe(settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> Finding:
    """What is wrong with connecting to the first bootstrap server, if the probe can tell."""
    server = settings.bootstrap_list[0]
    host, _, port_text = server.rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    where = f"Kafka at {server}"
    protocol = settings.security_protocol
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror as error:  # the name is unknown, or DNS did not answer (yet)
        return Finding(True, f"cannot find the host {host!r} of {server} ({_reason(error)}): "
                             f"check KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-server)",
                       worth_waiting=error.errno not in UNKNOWN_NAME)
    except OSError as error:
        return Finding(True, f"nothing listens at {server} ({_reason(error)}): check "
                             f"KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-server), host and port",
                       worth_waiting=True)
    try:
        if protocol in ("SSL", "SASL_SSL"):
            finding, secure = _tls_handshake(sock, (host, port), settings, where)
            if secure is None:
                return finding
            sock = secure  # from now on, every byte goes through TLS
        elif not _answers_api_versions(sock):
            if _speaks_tls(host, port, timeout_s):
                wanted = "SASL_SSL" if protocol == "SASL_PLAINTEXT" else "SSL or SASL_SSL"
                return Finding(True, f"{where} speaks only TLS: set KAFKA_SECURITY_PROTOCOL="
                                     f"{wanted} (it is {protocol}), and KAFKA_SSL_CAFILE if its CA "
                                     f"is not a public one")
            return FINE  # something that is neither: let the client tell
        if protocol.startswith("SASL_"):
            return _sasl_login(sock, settings, where)
        return FINE
    except (OSError, struct.error, ValueError):
        return FINE  # a timeout or a garbled answer mid-way: nothing definite
    finally:
        sock.close()


def _tls_handshake(sock: socket.socket, address: tuple[str, int], settings: Settings,
                   where: str) -> tuple[Finding, ssl.SSLSocket | None]:
    host, cafile = address[0], settings.ssl_cafile
    try:
        context = client_context(cafile)
    except ssl.SSLError as error:
        return Finding(True, f"KAFKA_SSL_CAFILE={cafile} holds no CA certificate that can be read "
                             f"({error.reason or error}): it must be PEM text (-----BEGIN "
                             f"CERTIFICATE-----)"), None
    try:
        return FINE, context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as error:
        reason = (error.verify_message or str(error)).rstrip(".")
        if "mismatch" in reason.lower():  # "Hostname mismatch", "IP address mismatch"
            return Finding(True, (
                f"the certificate of {where} is not for the name {host!r} ({reason}): connect "
                f"with a name it was issued for (KAFKA_BOOTSTRAP_SERVERS), e.g. the one your "
                f"provider gives, not an IP address or an alias")), None
        trusted = f"KAFKA_SSL_CAFILE={cafile} does" if cafile else "this machine's CAs do"
        return Finding(True, (
            f"{where} presented a certificate that {trusted} not trust ({reason}): set "
            f"KAFKA_SSL_CAFILE to this cluster's CA certificate (`python -m broker status` "
            f"names the local one's)")), None
    except ssl.SSLError as error:  # e.g. WRONG_VERSION_NUMBER, UNEXPECTED_EOF_WHILE_READING
        return _not_tls(address, where, settings, error.reason or str(error)), None
    except (ConnectionError, EOFError) as error:
        return _not_tls(address, where, settings, _reason(error)), None
    except OSError:  # a timeout: a slow network, not a definite answer
        return FINE, None


# How a TLS handshake ends when the other side does not speak TLS (it answered in plaintext,
# or closed the connection on bytes it did not understand).
NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE",
                   "closed", "reset", "EOF")


def _not_tls(address: tuple[str, int], where: str, settings: Settings, reason: str) -> Finding:
    """The TLS handshake failed for ``reason``: a plaintext port, or TLS that will not agree."""
    instead = "SASL_PLAINTEXT" if settings.security_protocol == "SASL_SSL" else "PLAINTEXT"
    try:
        with socket.create_connection(address, timeout=PROBE_TIMEOUT_S) as plain:
            plaintext_kafka = _answers_api_versions(plain)
    except (OSError, struct.error):
        plaintext_kafka = False
    if plaintext_kafka or any(word.lower() in reason.lower() for word in NOT_TLS_REASONS):
        what = "it answers in plaintext" if plaintext_kafka else f"TLS handshake: {reason}"
        return Finding(True, (
            f"{where} does not speak TLS ({what}): check KAFKA_SECURITY_PROTOCOL ({instead} "
            f"there?) and the port in KAFKA_BOOTSTRAP_SERVERS"))
    return Finding(True, f"the TLS handshake with {where} failed ({reason}): check "
                         f"KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL and KAFKA_SSL_CAFILE")


def client_context(cafile: str | None) -> ssl.SSLContext:
    """The TLS settings kafka-python 3.0.12 uses (kafka/net/transport.py): TLS 1.2 or newer,
    the host name checked, the CA file if one is given, else the system's CAs."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    if cafile:
        context.load_verify_locations(cafile)
    else:
        context.load_default_certs()
    return context


def _speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    """Whether a TLS handshake succeeds at host:port, whoever signed its certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only: is it TLS?
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def _sasl_login(sock: socket.socket, settings: Settings, where: str) -> Finding:
    mechanism = settings.sasl_mechanism or "PLAIN"
    error_code, offered = _sasl_handshake(sock, mechanism)
    if error_code == UNSUPPORTED_SASL_MECHANISM:
        return Finding(True, (
            f"{where} does not offer the SASL mechanism {mechanism} on this port (it offers "
            f"{', '.join(offered) or 'none'}): set KAFKA_SASL_MECHANISM"))
    if error_code != 0 or settings.sasl_password is None:
        return FINE
    user, password = settings.sasl_username or "", settings.sasl_password.reveal()
    if mechanism == "PLAIN":  # the user name and password, as kafka-python sends them (RFC 4616)
        error_code, error_message, _ = _sasl_authenticate(
            sock, b"\0" + user.encode() + b"\0" + password.encode())
    else:
        error_code, error_message = _scram_login(sock, mechanism, user, password)
    if error_code == SASL_AUTHENTICATION_FAILED:
        detail = error_message or "authentication failed"
        detail = detail if mechanism in detail else f"{mechanism}: {detail}"
        return Finding(True, (
            f"{where} refused the login of user {user!r} ({detail}): check KAFKA_SASL_USERNAME "
            f"and KAFKA_SASL_PASSWORD"))
    return FINE


def _scram_login(sock: socket.socket, mechanism: str, user: str, password: str) -> tuple[int, str | None]:
    """SCRAM's client side (RFC 5802, 7677), as kafka-python's sasl/scram.py does it, with the
    standard library's PBKDF2 and HMAC: (error code, error message) of the last answer.

    kafka-python sees only the connection the broker closes after a wrong proof; asked with
    SaslAuthenticate, the broker first answers it with SASL_AUTHENTICATION_FAILED.
    """
    digest = mechanism.removeprefix("SCRAM-").replace("-", "").lower()  # sha256, sha512
    nonce = secrets.token_urlsafe(24)
    first_bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={nonce}"
    error_code, error_message, answer = _sasl_authenticate(sock, f"n,,{first_bare}".encode())
    if error_code != 0:
        return error_code, error_message
    server_first = answer.decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    if not fields["r"].startswith(nonce):
        raise ValueError("not our SCRAM exchange")
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(fields["s"]),
                                 int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    final_bare = f"c=biws,r={fields['r']}"  # biws: base64 of "n,,", no channel binding
    signature = hmac.new(hashlib.new(digest, client_key).digest(),
                         f"{first_bare},{server_first},{final_bare}".encode(), digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    error_code, error_message, _ = _sasl_authenticate(sock, f"{final_bare},p={proof}".encode())
    return error_code, error_message


# --- the requests, by hand: size, header (api key, version, correlation id, client id), body

def _request(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, api_key, len(CLIENT_ID)) + CLIENT_ID
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    size, correlation_id = struct.unpack(">ii", _read(sock, 8))
    if correlation_id != api_key:
        raise ValueError("not a Kafka answer")
    return _read(sock, size - 4)


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError("closed by the server")
        data += chunk
    return data


def _answers_api_versions(sock: socket.socket) -> bool:
    try:
        reply = _request(sock, API_VERSIONS, 0, b"")
    except (OSError, ValueError, struct.error):
        return False
    return struct.unpack(">h", reply[:2])[0] == 0


def _sasl_handshake(sock: socket.socket, mechanism: str) -> tuple[int, list[str]]:
    """(error code, the mechanisms the broker offers) of SaslHandshake v1."""
    name = mechanism.encode()
    reply = _request(sock, SASL_HANDSHAKE, 1, struct.pack(">h", len(name)) + name)
    error_code, count = struct.unpack(">hi", reply[:6])
    offered, offset = [], 6
    for _ in range(max(count, 0)):
        (length,) = struct.unpack(">h", reply[offset:offset + 2])
        offered.append(reply[offset + 2:offset + 2 + length].decode(errors="replace"))
        offset += 2 + length
    return error_code, offered


def _sasl_authenticate(sock: socket.socket, auth_bytes: bytes) -> tuple[int, str | None, bytes]:
    """(error code, error message, the broker's auth bytes) of SaslAuthenticate v0."""
    reply = _request(sock, SASL_AUTHENTICATE, 0, struct.pack(">i", len(auth_bytes)) + auth_bytes)
    error_code, length = struct.unpack(">hh", reply[:4])
    message = reply[4:4 + length].decode(errors="replace") if length >= 0 else None
    offset = 4 + max(length, 0)
    (size,) = struct.unpack(">i", reply[offset:offset + 4])
    return error_code, message, reply[offset + 4:offset + 4 + max(size, 0)]


def _reason(error: OSError) -> str:
    return (error.strerror or str(error) or type(error).__name__).lower()

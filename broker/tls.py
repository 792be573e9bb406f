"""The certificates of the local TLS listener (``python -m broker start --sasl --tls``).

Made once per data dir with the openssl command-line tool (no hand-written crypto), kept in
``<data dir>/tls/``, which only its owner may read:

- ``ca.pem``: the certificate of a CA made for this data dir alone; the one file a client
  trusts (``KAFKA_SSL_CAFILE``). Its private key ``ca.key`` never leaves the directory.
- ``broker.pem``: what Kafka reads as its PEM keystore: the broker's private key (PKCS#8,
  unencrypted, as Kafka wants it), its certificate for 127.0.0.1 and localhost, and the CA.

``issue()`` also makes certificates with other names, which the tests use for a certificate
that does not match the host.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

TLS_DIR = "tls"
CA_CERT, CA_KEY, KEYSTORE = "ca.pem", "ca.key", "broker.pem"
# The names a client may use for the local broker: kafka-python checks them (check_hostname).
BROKER_NAMES = ("IP:127.0.0.1", "DNS:localhost")
CA_DAYS, CERT_DAYS = 3650, 825  # 825 days: the longest validity macOS and browsers accept


class TlsError(RuntimeError):
    """The certificates could not be made; the message is one line for the user."""


def openssl() -> str:
    found = shutil.which("openssl")
    if not found:
        raise TlsError("--tls needs the openssl command to make its certificates: install it "
                       "with 'sudo apt-get install openssl' (Debian/Ubuntu) or 'brew install openssl'")
    return found


def ensure(data_dir: Path) -> Path:
    """The PEM keystore of the broker in ``data_dir``, made (with its CA) on the first call."""
    tls_dir = Path(data_dir) / TLS_DIR
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    if not (tls_dir / CA_CERT).exists():
        # A name of its own (a CN holds 64 characters at most, so not the data dir's path).
        make_ca(tls_dir, f"kafka-python-tutorial local CA {secrets.token_hex(4)}")
    keystore = tls_dir / KEYSTORE
    if not keystore.exists():
        key, cert = issue(tls_dir, "localhost", BROKER_NAMES)
        write_private(keystore, key + cert + (tls_dir / CA_CERT).read_bytes())
    return keystore


def ca_file(data_dir: Path) -> Path:
    return Path(data_dir) / TLS_DIR / CA_CERT


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA in ``directory`` (ca.pem, ca.key); returns the certificate's path."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _run([openssl(), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
          "-days", str(CA_DAYS), "-subj", f"/CN={name}",
          "-keyout", str(directory / CA_KEY), "-out", str(directory / CA_CERT),
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    os.chmod(directory / CA_KEY, 0o600)
    return directory / CA_CERT


def issue(ca_dir: Path, common_name: str, names: tuple[str, ...] | list[str]) -> tuple[bytes, bytes]:
    """(private key, certificate) PEM for a server with the subjectAltName ``names``
    (``IP:...``, ``DNS:...``), signed by the CA in ``ca_dir``. Nothing is left on disk."""
    with tempfile.TemporaryDirectory(dir=ca_dir) as work_dir:  # beside the CA: same permissions
        work = Path(work_dir)
        extensions = work / "server.ext"
        extensions.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={','.join(names)}\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n")
        _run([openssl(), "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={common_name}",
              "-keyout", str(work / "server.key"), "-out", str(work / "server.csr")])
        _run([openssl(), "x509", "-req", "-sha256", "-days", str(CERT_DAYS),
              "-in", str(work / "server.csr"), "-CA", str(ca_dir / CA_CERT),
              "-CAkey", str(ca_dir / CA_KEY), "-set_serial", f"0x{secrets.token_hex(16)}",
              "-extfile", str(extensions), "-out", str(work / "server.crt")])
        return (work / "server.key").read_bytes(), (work / "server.crt").read_bytes()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode otherwise
        out.write(data)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise TlsError(f"openssl {command[1]} failed: {reason[-1] if reason else result.returncode}")

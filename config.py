"""Settings shared by producer.py, consumer.py and twitter-stream.py.

Every setting comes from the environment, or from a git-ignored ``.env`` file
next to this module (copy ``.env.example``); a variable that is set in the
environment wins over the same name in ``.env``. Command-line flags of the
scripts win over both (``Settings.override``).

    >>> import config
    >>> settings = config.load({"KAFKA_TOPIC": "payments", "KAFKA_SASL_PASSWORD": "s3cret"})
    >>> settings.topic, settings.bootstrap_servers
    ('payments', '127.0.0.1:9092')
    >>> settings.sasl_password          # secrets never show in a repr or a log line
    Secret('********')

Nothing happens at import: ``load()`` reads the environment when it is called.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any, Mapping

from dotenv import dotenv_values

ENV_FILE = Path(__file__).resolve().with_name(".env")

# The broker that `make kafka` (python -m broker start) runs. 127.0.0.1 rather than
# "localhost": localhost may resolve to ::1 first, where the broker does not listen.
DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
DEFAULT_TOPIC = "sample"
DEFAULT_TWEETS_TOPIC = "tweets"  # twitter-stream.py's: tweets in a topic of their own
DEFAULT_TRENDS_TOPIC = "trends"  # trends.py's counts
DEFAULT_GROUP_ID = "tutorial"
DEFAULT_TWITTER_API_URL = "https://api.x.com"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# kafka-python waits 30 s by default before it gives up on an unreachable broker.
# A learner with no broker running should hear about it sooner than that.
BOOTSTRAP_TIMEOUT_MS = 10_000
BOOTSTRAP_TIMEOUT_S = BOOTSTRAP_TIMEOUT_MS / 1000

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# What Kafka accepts as a topic name (org.apache.kafka.common.internals.Topic).
TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


# Every secret value handed to a library: RedactSecretsFilter masks them in log lines.
_REVEALED: set[str] = set()


class Secret:
    """A string that does not show itself: repr() and str() are masked.

    Use ``.reveal()`` only where the value is handed to a client library.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        _REVEALED.add(self._value)
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclasses.dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    topic: str = DEFAULT_TOPIC
    tweets_topic: str = DEFAULT_TWEETS_TOPIC
    trends_topic: str = DEFAULT_TRENDS_TOPIC
    group_id: str = DEFAULT_GROUP_ID
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    twitter_bearer_token: Secret | None = None
    twitter_api_url: str = DEFAULT_TWITTER_API_URL

    def override(self, **values: Any) -> "Settings":
        """A copy with the given values; None means "not given on the command line"."""
        given = {name: value for name, value in values.items() if value is not None}
        return dataclasses.replace(self, **given)

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]


def load(environ: Mapping[str, str] | None = None, env_file: Path | None = ENV_FILE) -> Settings:
    """Read the settings from ``environ`` (default: os.environ) over ``env_file``."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        try:
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        except UnicodeDecodeError:
            raise ConfigError(f"{env_file} is not UTF-8 text: save it as UTF-8") from None
    values.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = values.get(name, "").strip()
        return value or None

    def secret(name: str) -> Secret | None:
        value = get(name)
        return Secret(value) if value else None

    protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    mechanism = get("KAFKA_SASL_MECHANISM")
    if mechanism is not None:
        mechanism = mechanism.upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"KAFKA_SASL_MECHANISM={mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
            )
    elif protocol.startswith("SASL_"):
        mechanism = "PLAIN"  # what managed clusters (Confluent Cloud, Aiven, ...) hand out most
    if protocol.startswith("SASL_"):
        # Without both, kafka-python fails later with a far less helpful message.
        missing = [name for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD") if not get(name)]
        if missing:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)} "
                f"(put them in .env, see .env.example)"
            )
    cafile = get("KAFKA_SSL_CAFILE")
    if cafile is not None and not Path(cafile).is_file():
        raise ConfigError(f"KAFKA_SSL_CAFILE={cafile!r} is not a file")
    return Settings(
        bootstrap_servers=check_bootstrap(
            get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP_SERVERS, "KAFKA_BOOTSTRAP_SERVERS"
        ),
        topic=check_topic(get("KAFKA_TOPIC") or DEFAULT_TOPIC, "KAFKA_TOPIC"),
        tweets_topic=check_topic(get("TWITTER_TOPIC") or DEFAULT_TWEETS_TOPIC, "TWITTER_TOPIC"),
        trends_topic=check_topic(get("TRENDS_TOPIC") or DEFAULT_TRENDS_TOPIC, "TRENDS_TOPIC"),
        group_id=get("KAFKA_GROUP_ID") or DEFAULT_GROUP_ID,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=get("KAFKA_SASL_USERNAME"),
        sasl_password=secret("KAFKA_SASL_PASSWORD"),
        ssl_cafile=cafile,
        twitter_bearer_token=secret("TWITTER_BEARER_TOKEN"),
        twitter_api_url=(get("TWITTER_API_URL") or DEFAULT_TWITTER_API_URL).rstrip("/"),
    )


def check_bootstrap(servers: str, source: str = "bootstrap servers") -> str:
    """``servers`` if it is a comma-separated list of HOST:PORT, else ConfigError naming ``source``.

    kafka-python would otherwise fail deep inside with a ValueError or an IndexError.
    """
    entries = [entry.strip() for entry in servers.split(",") if entry.strip()]
    for entry in entries:
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{source}={servers!r}: {entry!r} is not HOST:PORT (e.g. 127.0.0.1:9092)")
    if not entries:
        raise ConfigError(f"{source}={servers!r} names no broker (HOST:PORT, e.g. 127.0.0.1:9092)")
    return servers


def check_topic(name: str, source: str = "topic") -> str:
    """``name`` if Kafka accepts it as a topic name, else ConfigError naming ``source``."""
    if not TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(
            f"{source}={name!r} is not a valid topic name "
            f"(1-249 characters: letters, digits, '.', '_', '-')"
        )
    return name


def unreachable_message(settings: Settings, error: Exception) -> str:
    """The one line to print when no broker answered (kafka-python's KafkaTimeoutError).

    kafka-python 3 reports an untrusted certificate, a wrong port or protocol and a refused
    SASL login as the same bootstrap timeout as a broker that is not there at all: a short
    probe (diagnose.py) tells them apart.
    """
    plaintext = settings.security_protocol == "PLAINTEXT"
    # Probe with TLS or SASL (a managed cluster); in plaintext only if something listens
    # (a TLS-only port?): with nothing there, there is nothing to tell apart.
    if not plaintext or accepts_connections(settings.bootstrap_list):
        import diagnose  # only then is it needed

        finding = diagnose.probe(settings)
        if finding.problem:
            return finding.message
    if settings.security_protocol.startswith("SASL_"):  # it listens, speaks the protocol
        return (
            f"Kafka at {settings.bootstrap_servers} did not accept the SASL login of user "
            f"{settings.sasl_username!r} ({settings.sasl_mechanism}): check KAFKA_SASL_USERNAME, "
            f"KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    hint = ("is Kafka running? start one with: make kafka" if plaintext
            else "check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SSL_CAFILE")
    return f"cannot reach Kafka at {settings.bootstrap_servers} ({error}); {hint}"


def accepts_connections(servers: list[str], timeout_s: float = 2.0) -> bool:
    """Whether anything listens at one of the host:port ``servers``."""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments every kafka-python client (producer, consumer, admin) takes."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "security_protocol": settings.security_protocol,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
    }
    if settings.security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = (
            settings.sasl_password.reveal() if settings.sasl_password else None
        )
    if settings.ssl_cafile:
        kwargs["ssl_cafile"] = settings.ssl_cafile
    return kwargs


def add_common_arguments(parser: argparse.ArgumentParser,
                         topic_help: str = f"env KAFKA_TOPIC, default {DEFAULT_TOPIC!r}") -> None:
    """The flags every script has, named as in Kafka's console tools."""
    parser.add_argument(
        "--bootstrap-server",
        metavar="HOST:PORT[,HOST:PORT]",
        type=_bootstrap_argument,
        help=f"Kafka broker(s) to connect to (env KAFKA_BOOTSTRAP_SERVERS, "
        f"default {DEFAULT_BOOTSTRAP_SERVERS})",
    )
    parser.add_argument(
        "--topic",
        type=_topic_argument,
        help=f"topic to use ({topic_help})",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=LOG_LEVELS,
        help="diagnostics on stderr (default WARNING)",
    )


def _bootstrap_argument(value: str) -> str:
    try:
        return check_bootstrap(value, "--bootstrap-server")
    except ConfigError as error:  # argparse turns this into a usage error (exit 2)
        raise argparse.ArgumentTypeError(str(error)) from None


def _topic_argument(value: str) -> str:
    try:
        return check_topic(value, "--topic")
    except ConfigError as error:  # argparse turns this into a usage error (exit 2)
        raise argparse.ArgumentTypeError(str(error)) from None


def redact(text: str) -> str:
    """``text`` with every secret handed to a library masked, in each form it may be printed:
    as typed, escaped as Python shows a string or bytes (inside any repr: 'Pl\\xc3\\xa4in',
    bytearray(b'\\x00user\\x00Pl\\xc3\\xa4in'), with \\\\ for a backslash and \\' for a quote)
    or JSON shows a string (\\u00e4)."""
    for value in _REVEALED:
        for form in _printed_forms(value):
            text = text.replace(form, "********")
    if "auth_bytes=" in text:  # a SASL request, as kafka-python logs it at DEBUG
        text = text.split("auth_bytes=")[0] + "auth_bytes=<redacted>)"
    return text


def _printed_forms(value: str) -> list[str]:
    forms = {value, value.encode("unicode_escape").decode(), json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1]}
    # What repr() writes between the quotes, of the string and of its UTF-8 bytes. It quotes
    # with ' unless the text holds a ' and no ", and escapes a ' only inside '...'; inside a
    # longer repr (a whole SASL request) the secret may be written either way: mask both.
    for shown, quote, start in ((value, '"', 1), (value.encode(), b'"', 2)):  # start: after b'
        forms.add(repr(shown)[start:-1])
        forms.add(repr(shown + quote)[start:-2])  # with a " as well, repr quotes with '
    return sorted(forms, key=len, reverse=True)  # longest first: a form may contain another


class RedactSecretsFilter(logging.Filter):
    """Masks secrets in log lines. At DEBUG kafka-python logs its whole configuration
    (sasl_plain_password included) and every request it sends, and a SASL request carries
    the credentials (auth_bytes=b'\\x00user\\x00password' for PLAIN)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # on the handler: it sees every logger's records
        if not any(isinstance(existing, RedactSecretsFilter) for existing in handler.filters):
            handler.addFilter(RedactSecretsFilter())
    if level != "DEBUG":
        # kafka-python logs every retry and reconnect at INFO/WARNING, and at ERROR each failed
        # connect while the broker is down and "Topic ... not found" while a new topic is being
        # auto-created; the scripts report what matters themselves, so keep the library quiet
        # unless debugging.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)

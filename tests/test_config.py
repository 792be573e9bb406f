"""config.py: settings from the environment and .env, flags on top, kwargs for kafka-python."""

from __future__ import annotations

import argparse
import io
import logging

import pytest

import config


def load(**environ: str) -> config.Settings:
    return config.load(environ, env_file=None)


def test_defaults_reach_the_broker_that_make_kafka_starts():
    settings = load()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert (settings.topic, settings.group_id) == ("sample", "tutorial")
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.sasl_password is None and settings.twitter_bearer_token is None


def test_environment_wins_over_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("KAFKA_TOPIC=from-file\nKAFKA_GROUP_ID=file-group\n")
    settings = config.load({"KAFKA_TOPIC": "from-env"}, env_file=env_file)
    assert (settings.topic, settings.group_id) == ("from-env", "file-group")


def test_flags_win_over_environment_and_none_means_not_given():
    settings = load(KAFKA_TOPIC="env-topic", KAFKA_BOOTSTRAP_SERVERS="a:1, b:2")
    overridden = settings.override(topic="flag-topic", bootstrap_servers=None)
    assert overridden.topic == "flag-topic"
    assert overridden.bootstrap_list == ["a:1", "b:2"]


def test_secrets_never_show():
    settings = load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="me",
                    KAFKA_SASL_PASSWORD="hunter2", TWITTER_BEARER_TOKEN="AAAA-token")
    for text in (repr(settings), str(settings), f"{settings.sasl_password}"):
        assert "hunter2" not in text and "AAAA-token" not in text
    assert settings.sasl_password.reveal() == "hunter2"


def test_sasl_ssl_becomes_kafka_python_arguments(tmp_path):
    cafile = tmp_path / "ca.pem"
    cafile.write_text("not checked here")
    settings = load(KAFKA_BOOTSTRAP_SERVERS="broker.example.com:9093",
                    KAFKA_SECURITY_PROTOCOL="sasl_ssl", KAFKA_SASL_MECHANISM="scram-sha-512",
                    KAFKA_SASL_USERNAME="me", KAFKA_SASL_PASSWORD="hunter2",
                    KAFKA_SSL_CAFILE=str(cafile))
    kwargs = config.connection_kwargs(settings)
    assert kwargs == {
        "bootstrap_servers": ["broker.example.com:9093"], "security_protocol": "SASL_SSL",
        "bootstrap_timeout_ms": config.BOOTSTRAP_TIMEOUT_MS, "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "me", "sasl_plain_password": "hunter2", "ssl_cafile": str(cafile),
    }


def test_sasl_mechanism_defaults_to_plain():
    settings = load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="me",
                    KAFKA_SASL_PASSWORD="pw")
    assert settings.sasl_mechanism == "PLAIN"


@pytest.mark.parametrize("environ, named", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "me"}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
    ({"KAFKA_TOPIC": "no spaces"}, "KAFKA_TOPIC"),
])
def test_bad_settings_name_the_variable(environ, named):
    with pytest.raises(config.ConfigError, match=named):
        config.load(environ, env_file=None)


def test_connection_kwargs_are_only_where_and_how_to_connect():
    # The settings a lesson is about (acks, idempotence, auto-commit) are written at the
    # client's call in each script, where a learner sees them; config.py only says where.
    assert set(config.connection_kwargs(load())) == {
        "bootstrap_servers", "security_protocol", "bootstrap_timeout_ms"}


def test_an_env_file_that_is_not_utf8_is_one_line(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("KAFKA_TOPIC=caf\u00e9\n", encoding="utf-16")
    with pytest.raises(config.ConfigError, match=r"\.env is not UTF-8 text: save it as UTF-8"):
        config.load({}, env_file=env_file)
    env_file.write_text("KAFKA_TOPIC=caf\u00e9\n", encoding="latin-1")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load({}, env_file=env_file)


def test_redact_masks_a_secret_in_every_form_it_is_printed():
    secret = config.Secret("Pl\u00e4in\\Secret-42")
    secret.reveal()
    for form in ["Pl\u00e4in\\Secret-42", repr("Pl\u00e4in\\Secret-42"), repr("Pl\u00e4in\\Secret-42".encode()),
                 "b'\\x00user\\x00" + repr("Pl\u00e4in\\Secret-42".encode())[2:]]:
        assert "Secret-42" not in config.redact(f"Send: {form} end"), form


@pytest.mark.parametrize("name, valid", [
    ("sample", True), ("a.b_c-D9", True), ("x" * 249, True),
    ("", False), (".", False), ("..", False), ("x" * 250, False), ("tweets/raw", False),
])
def test_topic_names(name, valid):
    if valid:
        assert config.check_topic(name) == name
    else:
        with pytest.raises(config.ConfigError):
            config.check_topic(name)


def test_common_arguments():
    parser = argparse.ArgumentParser()
    config.add_common_arguments(parser)
    args = parser.parse_args(["--bootstrap-server", "h:1", "--topic", "t", "--log-level", "debug"])
    assert (args.bootstrap_server, args.topic, args.log_level) == ("h:1", "t", "DEBUG")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--topic", "bad topic"])
    assert exit_info.value.code == 2


def test_unreachable_message_says_how_to_start_kafka():
    message = config.unreachable_message(load(), TimeoutError("Unable to bootstrap"))
    assert "127.0.0.1:9092" in message and "make kafka" in message
    managed = load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="p")
    assert "make kafka" not in config.unreachable_message(managed, TimeoutError())


def test_debug_logs_never_show_a_secret():
    from kafka.protocol.sasl import SaslAuthenticateRequest

    password = load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="me",
                    KAFKA_SASL_PASSWORD="hunter2").sasl_password
    kwargs = config.connection_kwargs(  # reveals the password to kafka-python
        load(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="me", KAFKA_SASL_PASSWORD="hunter2"))
    assert kwargs["sasl_plain_password"] == password.reveal() == "hunter2"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(config.RedactSecretsFilter())
    logger = logging.getLogger("kafka.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:  # what kafka-python logs at DEBUG: its configuration, and each request it sends
        logger.debug("Starting KafkaAdminClient with configuration: %s", kwargs)
        logger.debug("%s Request %d: %s", "<conn>", 7, SaslAuthenticateRequest(b"\x00me\x00secret2"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    lines = stream.getvalue().splitlines()
    assert "hunter2" not in lines[0] and "'sasl_plain_password': '********'" in lines[0]
    assert lines[1] == "<conn> Request 7: SaslAuthenticateRequest(auth_bytes=<redacted>)"

"""cli.py: the one mechanism every script uses for signals, exit codes and one-line errors."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
import io
import os
import signal
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st
from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from kafka.future import Future

import cli
import config
from scripts import ROOT


def run_with(error: BaseException | None, settings=None) -> tuple[int, str]:
    err = io.StringIO()
    with cli.Run("demo.py", err=err) as run:
        run.settings = settings
        if error is not None:
            raise error
    return run.exit_code, err.getvalue()


@pytest.mark.parametrize("error, code, line", [
    (None, 0, ""),
    (cli.Failure("the topic is gone"), 1, "demo.py: error: the topic is gone\n"),
    (cli.Failure("bad flag", cli.EXIT_USAGE), 2, "demo.py: error: bad flag\n"),
    (config.ConfigError("KAFKA_TOPIC='a/b' is not a valid topic name"), 2,
     "demo.py: error: KAFKA_TOPIC='a/b' is not a valid topic name\n"),
    (KafkaConnectionError("111 ECONNREFUSED"), 1, "demo.py: error: KafkaConnectionError: 111 ECONNREFUSED\n"),
])
def test_expected_failures_are_one_line_and_an_exit_code(error, code, line):
    assert run_with(error) == (code, line)


def test_a_bootstrap_timeout_names_the_broker_and_how_to_start_one():
    settings = config.load({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, env_file=None)
    code, line = run_with(KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:1']"), settings)
    assert code == 1
    assert line.startswith("demo.py: error: cannot reach Kafka at 127.0.0.1:1 ")
    assert line.endswith("is Kafka running? start one with: make kafka\n")


def test_a_bug_is_not_hidden():
    with pytest.raises(ZeroDivisionError):
        run_with(ZeroDivisionError("a bug shows its traceback"))


def test_secrets_are_masked_in_what_a_script_prints():
    token = config.Secret("AAAA-bearer-token-from-x")
    token.reveal()
    code, line = run_with(cli.Failure("X says: token Bearer AAAA-bearer-token-from-x rejected"))
    assert code == 1 and "AAAA-bearer" not in line and "********" in line


def test_a_signal_raises_only_inside_an_interruptible_wait():
    with cli.Run("demo.py", err=io.StringIO()) as run:
        os.kill(os.getpid(), signal.SIGTERM)  # outside a wait: only noted
        assert run.stopping and run.signal == signal.SIGTERM and not run.impatient
        with pytest.raises(cli.Interrupted):
            with run.interruptible():  # the signal came before the wait: raise at once
                pass
        os.kill(os.getpid(), signal.SIGINT)  # a second signal: never raises, ends the waiting
        assert run.impatient
    assert run.exit_code == 143


def test_the_first_signal_interrupts_a_wait():
    with cli.Run("demo.py", err=io.StringIO()) as run:
        with pytest.raises(cli.Interrupted):
            with run.interruptible():
                signal.raise_signal(signal.SIGINT)
                raise AssertionError("not interrupted")
    assert run.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_run_sleep_ends_early_on_a_signal():
    with cli.Run("demo.py", err=io.StringIO()) as run:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        previous = signal.signal(signal.SIGALRM, lambda *_: run._on_signal(signal.SIGTERM, None))
        try:
            began = cli.time.monotonic()
            run.sleep(30)
            assert cli.time.monotonic() - began < 5
        finally:
            signal.signal(signal.SIGALRM, previous)
    assert run.exit_code == 143


def test_deliveries_count_every_answer_once():
    acked_records, failed_records = [], []
    deliveries = cli.Deliveries(on_ack=lambda record, _: acked_records.append(record),
                                on_error=lambda record, error: failed_records.append((record, str(error))))
    futures = [Future() for _ in range(3)]
    for number, future in enumerate(futures):
        deliveries.track(future, number)
    assert (deliveries.sent, deliveries.pending) == (3, 3)
    futures[0].success("metadata")
    futures[2].failure(KafkaTimeoutError("expired"))
    assert (deliveries.acked, deliveries.failed, deliveries.pending) == (1, 1, 1)
    assert acked_records == [0] and failed_records == [(2, "KafkaTimeoutError: expired")]
    assert deliveries.unanswered() == "; 1 not acknowledged: may or may not be in the topic"


def test_pacer_keeps_the_rate_and_catches_up():
    now = [100.0]
    pacer = cli.Pacer(10.0, clock=lambda: now[0])
    assert pacer.delay(0) == 0.0
    now[0] = 100.2
    assert pacer.delay(5) == pytest.approx(0.3)
    now[0] = 101.0
    assert pacer.delay(5) == 0.0  # behind: no wait
    assert cli.Pacer(None).delay(1000) == 0.0


@pytest.mark.parametrize("convert, text", [
    (cli.whole_number(0), "-1"), (cli.whole_number(0), "\u0661\u0662"), (cli.whole_number(1), "0"),
    (cli.whole_number(0), "1.5"), (cli.positive_number, "nan"), (cli.positive_number, "inf"),
    (cli.positive_number, "0"), (cli.rate_type, "1e-11"), (cli.seconds_type, "1e12"),
])
def test_number_flags_refuse_what_would_misbehave(convert, text):
    with pytest.raises(argparse.ArgumentTypeError):
        convert(text)


def test_utc_text_ends_in_z_to_the_millisecond():
    assert cli.utc_text(0) == "1970-01-01T00:00:00.000Z"
    assert cli.utc_text(1795640463123) == "2026-11-25T21:01:03.123Z"
    assert cli.utc_text(253402300799999) == "9999-12-31T23:59:59.999Z"
    assert cli.UtcClock().now().endswith("Z")


@given(st.integers(-(2**63), 2**63 - 1))
def test_utc_text_names_any_kafka_timestamp(ms):
    # Kafka keeps any 64-bit timestamp a topic allows: past the year 9999, the number itself.
    text = cli.utc_text(ms)
    if text == str(ms):
        assert not 0 <= ms < 253402300800000
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert moment == datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)


def test_printable_escapes_what_would_break_a_line():
    assert cli.printable("café ☕") == "café ☕"
    assert cli.show_bytes(b"a\nb\x1b[31m\xff") == "a\\nb\\x1b[31m\\xff"
    assert cli.show_bytes(None) == "null"


@pytest.mark.parametrize("script", ["producer.py", "consumer.py", "twitter-stream.py"])
def test_a_python_without_the_packages_says_what_to_do(script, tmp_path):
    # The interpreter that made the venv, without the venv's packages: "a second terminal".
    bare_python = getattr(sys, "_base_executable", None) or sys.executable
    result = subprocess.run([bare_python, "-S", script, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30, env={"PATH": os.environ.get("PATH", "")})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{script}: error: this Python ({bare_python}) lacks the package "
        f"'{'requests' if script == 'twitter-stream.py' else 'kafka'}': run "
        f"'source .venv/bin/activate' first (or 'make install')")

"""The plumbing the tutorial's scripts share, so that each script can be the Kafka lesson.

Nothing here is about Kafka's API: it is what makes a command-line tool dependable, done
once for producer.py, consumer.py, twitter-stream.py and trends.py:

- ``Run``: a ``with`` block around a script's work. It sets up logging, turns Ctrl-C and
  SIGTERM into a flag the script checks (and into ``Interrupted`` only inside a wait that is
  safe to cut short), turns an expected failure into one line on stderr and the exit code
  (0 ok, 1 error, 2 usage, 130 Ctrl-C, 143 SIGTERM, 141 when the reader of stdout went away),
  and masks secrets in everything it prints.
- ``Deliveries``: counts the broker's answers to ``producer.send()``, and ``finish()`` waits
  for them: without end normally, for at most ``GRACE_S`` after a signal.
- small helpers: ``printable()`` text, ``Pacer`` for ``--rate``, argparse number types.

    def main(argv=None) -> int:
        with cli.Run("demo.py") as run:      # on stderr: "demo.py: error: the topic is gone"
            raise cli.Failure("the topic is gone")
        return run.exit_code                 # 1
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import math
import os
import re
import select
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, TextIO

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE (head, less)
# After Ctrl-C or SIGTERM, how long a script waits for Kafka's answers before it gives up on
# them and says so (docker stop, too, waits 10 s before it kills).
GRACE_S = 10.0
# While connecting: say what we wait for if Kafka has not answered after this long.
SLOW_CONNECT_S = 1.5
ASCII_DIGITS = re.compile(r"[0-9]+")


class Failure(Exception):
    """An expected failure: Run prints the message as one line and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(BaseException):
    """The first Ctrl-C/SIGTERM, raised only inside ``run.interruptible()`` (see Run)."""


@contextlib.contextmanager
def needs_packages(prog: str) -> Iterator[None]:
    """``with needs_packages("producer.py"): import kafka ...``: a Python without the
    tutorial's packages (a terminal where .venv is not active) gets one line saying what
    to do, not a ModuleNotFoundError traceback."""
    try:
        yield
    except ModuleNotFoundError as missing:
        sys.exit(f"{prog}: error: this Python ({sys.executable}) lacks the package "
                 f"{missing.name!r}: run 'source .venv/bin/activate' first (or 'make install')")


class Run:
    """``with Run(prog, log_level) as run:`` around a script's work; then ``return run.exit_code``.

    Signals: Ctrl-C and SIGTERM only set ``run.signal``; the script checks ``run.stopping``
    and winds down (flushes, commits, reports). An exception thrown from a signal handler
    could land anywhere, inside a lock or between ``producer.send()`` and the line that counts
    it, so ``Interrupted`` is raised only inside ``with run.interruptible():``, around a wait
    that holds no lock of ours (a sleep, reading stdin or a socket). A second signal never
    raises: it sets ``run.impatient``, and every wait for Kafka ends at once.
    """

    def __init__(self, prog: str, log_level: str = "WARNING", err: TextIO | None = None) -> None:
        self.prog = prog
        self.log_level = log_level
        self.err = err or sys.stderr
        self.signal: int | None = None
        self.stopped_at: float | None = None  # when the first signal came (time.monotonic())
        self.reader_is_gone = False  # stdout's reader went away (| head): stop, quietly
        self.impatient = False  # a second signal: stop waiting for anything
        self.exit_code = EXIT_OK
        self.settings = None  # config.Settings, once loaded: names the broker in errors
        self._interruptible = False
        self._guard = _Interruptible(self)
        self._previous: dict = {}
        self._connecting: threading.Timer | None = None

    # -- the with block --------------------------------------------------------------------
    def __enter__(self) -> "Run":
        import config  # config needs python-dotenv: imported once the script's imports worked

        config.setup_logging(self.log_level)
        # What exists by now (modules, classes, functions: ~35,000 objects) lives as long as the
        # script. Frozen, the garbage collector stops scanning it again and again while records
        # come and go: 3% of consumer.py's time at 100,000 records/s (bench/README.md).
        gc.freeze()
        if hasattr(sys.stdout, "reconfigure"):  # a terminal that is not UTF-8 gets \u escapes
            sys.stdout.reconfigure(errors="backslashreplace")
        if threading.current_thread() is threading.main_thread():  # Python allows no other
            self._previous = {signum: signal.signal(signum, self._on_signal)
                              for signum in EXIT_ON_SIGNAL}
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        self.connected()
        gc.unfreeze()  # collectable again: what a test process made around this run
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        handled = self._exit_code_for(error) if error is not None else None
        if handled is not None:
            self.exit_code = handled
        if self.signal is not None and self.exit_code in (EXIT_OK, EXIT_ERROR):
            self.exit_code = EXIT_ON_SIGNAL[self.signal]
        elif self.reader_is_gone and self.exit_code in (EXIT_OK, EXIT_ERROR):
            self.exit_code = EXIT_BROKEN_PIPE
        return error is None or handled is not None

    def _exit_code_for(self, error: BaseException) -> int | None:
        import config
        from kafka.errors import KafkaError, KafkaTimeoutError

        if isinstance(error, Interrupted):
            return EXIT_ON_SIGNAL[self.signal or signal.SIGINT]
        if isinstance(error, BrokenPipeError):
            self.reader_gone()
            return EXIT_BROKEN_PIPE
        if isinstance(error, config.ConfigError):
            self.error(str(error))
            return EXIT_USAGE
        if isinstance(error, Failure):
            self.error(str(error))
            return error.exit_code
        if isinstance(error, KafkaTimeoutError) and "bootstrap" in str(error) and self.settings:
            self.error(config.unreachable_message(self.settings, error))
            return EXIT_ERROR
        if isinstance(error, KafkaError):
            name, text = type(error).__name__, str(error)  # kafka-python's str() may name it already
            self.error(text if text.startswith(name) else f"{name}: {text}")
            return EXIT_ERROR
        return None  # a bug: let the traceback show

    # -- signals ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame) -> None:
        if self.signal is not None:
            self.impatient = True
            return
        self.signal, self.stopped_at = signum, time.monotonic()
        if self._interruptible:
            self._interruptible = False
            raise Interrupted(signum)
        if self._connecting is not None:
            self.say(f"{signal.Signals(signum).name}: stopping once Kafka answers "
                     f"(at most {self._connect_timeout_s:g} s)")

    @property
    def stopping(self) -> bool:
        return self.signal is not None or self.reader_is_gone

    def stdout_closed(self) -> bool:
        """Whether the reader of stdout went away, asked without writing: an idle consumer
        learns it only this way (a pipe whose reader closed reports POLLERR)."""
        if not self.reader_is_gone:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                poller = select.poll()
                poller.register(sys.stdout.fileno(), 0)  # 0: errors and hang-ups only
                if poller.poll(0):
                    self.reader_gone()
        return self.reader_is_gone

    def reader_gone(self) -> None:
        """The reader of stdout went away (``| head``): stop as a Unix tool does, at once and
        quietly, and let Python's final flush of stdout go nowhere instead of printing a
        BrokenPipeError."""
        self.reader_is_gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())

    def interruptible(self) -> "_Interruptible":
        """``with run.interruptible():`` around a wait that a signal may cut short."""
        return self._guard

    def sleep(self, seconds: float) -> None:
        """time.sleep() that the first signal ends early."""
        if seconds > 0 and not self.stopping:
            try:
                with self._guard:
                    time.sleep(seconds)
            except Interrupted:
                pass

    # -- connecting ------------------------------------------------------------------------
    def connecting(self, what: str, timeout_s: float) -> None:
        """Say what we wait for if ``what`` has not answered after SLOW_CONNECT_S; the
        script calls connected() when it has (Run's end does too). With TLS or SASL, first
        probe Kafka once (diagnose.py): a definite mistake is a Failure now, not a timeout."""
        self._connect_timeout_s = timeout_s
        self._connecting = threading.Timer(
            SLOW_CONNECT_S, self.say, [f"waiting for {what} (at most {timeout_s:g} s) ..."])
        self._connecting.daemon = True
        self._connecting.start()
        if self.settings is not None and self.settings.security_protocol != "PLAINTEXT":
            # TLS or SASL (a managed cluster): a wrong CA, host name, port or password is
            # told now, in one line, where kafka-python would retry until its timeout.
            import diagnose

            diagnose.check_before_connecting(self.settings)

    def connected(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None

    # -- output ----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A diagnostic or summary line on stderr, secrets masked."""
        import config

        try:
            print(config.redact(text), file=self.err, flush=True)
        except (BrokenPipeError, ValueError):  # stderr closed: nobody to tell
            pass

    def error(self, text: str) -> None:
        self.say(f"{self.prog}: error: {text}")


class _Interruptible:
    """Run.interruptible()'s context manager: a class made once, not a @contextmanager
    generator per call, because it can be entered once per record."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def __enter__(self) -> None:
        if self.run.signal is not None:  # it came just before we started to wait
            raise Interrupted(self.run.signal)
        self.run._interruptible = True

    def __exit__(self, *exc_info) -> None:
        self.run._interruptible = False


class Deliveries:
    """Counts the broker's answers to ``producer.send()``.

    kafka-python calls a future's callbacks on its I/O thread; each counter is written by one
    thread only (``sent`` by the main thread, the others by the I/O thread), so no lock is
    needed, and ``pending`` is exact once the I/O thread is done.
    """

    def __init__(self, on_ack: Callable[[Any, Any], None] | None = None,
                 on_error: Callable[[Any, BaseException], None] | None = None) -> None:
        self.sent = self.acked = self.failed = 0
        self.first_error: BaseException | None = None
        self.on_ack, self.on_error = on_ack, on_error
        self.gave_up = False  # after finish() stopped waiting: answers no longer count

    @property
    def pending(self) -> int:
        return self.sent - self.acked - self.failed

    def track(self, future, record: Any = None) -> None:
        """Count ``future``'s answer when it comes; ``record`` goes to on_ack/on_error."""
        self.sent += 1
        if record is None:  # bound methods: no functools.partial per record (~0.7 µs less each)
            future.add_callback(self._acked).add_errback(self._failed)
        else:  # one partial for both (add_both() makes two)
            answered = functools.partial(self._answered, record)
            future.add_callback(answered).add_errback(answered)

    def _acked(self, metadata: Any) -> None:
        self._answered(None, metadata)

    def _failed(self, error: BaseException) -> None:
        self._answered(None, error)

    def _answered(self, record: Any, answer: Any) -> None:
        if self.gave_up:
            return
        if isinstance(answer, BaseException):
            self.failed += 1
            self.first_error = self.first_error or answer
            if self.on_error is not None:
                self.on_error(record, answer)
        else:
            self.acked += 1
            if self.on_ack is not None:
                self.on_ack(record, answer)

    def unanswered(self) -> str:
        """The end of a summary line: what is neither acknowledged nor failed, if anything."""
        return f"; {self.pending} not acknowledged: may or may not be in the topic" if self.pending else ""


def finish(producer, deliveries: Deliveries, run: Run, grace_s: float = GRACE_S) -> None:
    """Send what the producer still holds and wait for the broker's answer to every record:
    flush() alone proves nothing, each answer is counted. Normally this waits as long as the
    producer may retry (its delivery timeout); after a signal, at most ``grace_s``, saying so;
    after a second signal, not at all. Then the producer is closed.
    """
    from kafka.errors import KafkaTimeoutError, UnknownError

    deadline = math.inf
    while deliveries.pending and not run.impatient:
        if run.signal is not None and deadline == math.inf:
            deadline = time.monotonic() + grace_s
            run.say(f"waiting up to {grace_s:g} s for Kafka to acknowledge {deliveries.pending} "
                    f"record(s) (Ctrl-C again to stop waiting)")
        if time.monotonic() >= deadline:
            break
        try:
            producer.flush(timeout=0.2)  # in short steps, so that a signal is noticed
        except KafkaTimeoutError:
            pass
        except UnknownError:
            # kafka-python 3.0.12 raises "Future not done" when the broker refused a batch as
            # too large and the producer split it to retry the parts (Java's KAFKA-9312).
            pass
        else:
            time.sleep(0.001)  # every batch is done; its callbacks are being run
    if deliveries.pending:
        deliveries.gave_up = True
        close_now(producer)
    else:
        producer.close()


def close_now(producer) -> None:
    """Close ``producer`` without waiting for the records it still holds.

    kafka-python 3.0.12's close(timeout=0) raises from its flush() and leaves the producer
    open (its __del__ then prints "Exception ignored ..."), where Java's close(Duration.ZERO)
    aborts what is left; so abort the unsent batches first, as Java does.
    """
    from kafka.errors import KafkaError

    with contextlib.suppress(KafkaError, AttributeError):
        producer._accumulator.abort_incomplete_batches()
    with contextlib.suppress(KafkaError):
        producer.close(timeout=0)


class Pacer:
    """``--rate``: how long to wait before the n-th record so that ``rate`` per second holds
    on average (a late record is sent at once, and the ones after it catch up)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self.started = clock()

    def delay(self, index: int) -> float:
        if self.rate is None:
            return 0.0
        return max(0.0, self.started + index / self.rate - self.clock())


class UtcClock:
    """Now in UTC as ISO 8601 text to the millisecond, '2026-11-25T18:00:00.112Z'. The text is
    made once per millisecond: at thousands of records a second, formatting the time for
    each one cost ~10% of the throughput (bench/README.md)."""

    def __init__(self) -> None:
        self._ms, self._text = -1, ""

    def now(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            self._ms, self._text = ms, utc_text(ms)
        return self._text


def utc_text(ms: int) -> str:
    """Milliseconds since 1970 as '1970-01-01T00:00:00.000Z'. A time after the year 9999 (Kafka
    keeps any 64-bit timestamp a topic allows) is shown as the number itself, never an error."""
    try:
        return f"{_utc_second(ms // 1000)}{ms % 1000:03d}Z"
    except (ValueError, OverflowError, OSError):  # beyond what datetime can name
        return str(ms)


@functools.lru_cache(maxsize=1024)  # records come in order: most share their second
def _utc_second(seconds: int) -> str:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}."


def printable(text: str) -> str:
    """``text`` on one line: newlines, tabs and terminal escape codes become \\n, \\t, \\x1b."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def show_bytes(data: bytes | None) -> str:
    """A key or value as text: bytes that are not UTF-8 show as \\xff escapes, never a crash."""
    return "null" if data is None else printable(data.decode("utf-8", "backslashreplace"))


def whole_number(minimum: int) -> Callable[[str], int]:
    """argparse type: ASCII digits only, at least ``minimum`` (int() would take '١٢')."""

    def convert(text: str) -> int:
        if not ASCII_DIGITS.fullmatch(text) or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number of {minimum} or more, not {text}")
        return int(text)

    convert.__name__ = "whole number"
    return convert


# The longest pause a --rate or --duration may ask for: ten years. time.sleep() overflows on
# 1e11 s, and a nan would silently turn pacing off.
MAX_SECONDS = 10 * 365 * 24 * 3600


def positive_number(text: str) -> float:
    """argparse type: a finite number above 0 (no nan, no inf)."""
    with contextlib.suppress(ValueError):
        value = float(text)
        if math.isfinite(value) and value > 0:
            return value
    raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")


def rate_type(text: str) -> float:
    """argparse type for --rate: per second, so that one record's wait stays below MAX_SECONDS."""
    value = positive_number(text)
    if 1 / value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at least {1 / MAX_SECONDS:.1e} per second, not {text}")
    return value


def seconds_type(text: str) -> float:
    value = positive_number(text)
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SECONDS} seconds, not {text}")
    return value

"""Run the tutorial's scripts as real processes, the way a learner does, for signal tests."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from kafkatools import wait_for

ROOT = Path(__file__).resolve().parent.parent


def load_script(file_name: str, module_name: str):
    """Import a script whose file name is not a module name (twitter-stream.py), once."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / file_name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def script_env(bootstrap_servers: str, **extra: str) -> dict[str, str]:
    """The environment of a script run: ours, pointed at the test broker."""
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap_servers, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A command run in the repository root; stdout and stderr are collected line by line
    as they arrive, so a test can wait for some output, then send a signal."""

    def __init__(self, argv: list[str], *, env: dict[str, str], stdin=subprocess.DEVNULL):
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=stdin,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="backslashreplace")
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._collect, args=pipe, daemon=True)
                         for pipe in ((self.process.stdout, self.stdout),
                                      (self.process.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(pipe, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line.rstrip("\n"))

    def wait_for_stdout(self, count: int, timeout_s: float = 30) -> None:
        wait_for(lambda: len(self.stdout) >= count or self.process.poll() is not None,
                 timeout_s, what=f"{count} lines of output")
        assert len(self.stdout) >= count, (self.stdout, self.stderr)

    def finish(self, timeout_s: float = 30) -> int:
        """Wait for the exit (at most ``timeout_s``) and return the exit status."""
        try:
            status = self.process.wait(timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        for reader in self._readers:
            reader.join(timeout_s)
        return status


def start_script(script: str, *args: str, env: dict[str, str], stdin=subprocess.DEVNULL) -> Process:
    """``python <script> args...`` with the interpreter that runs the tests."""
    return Process([sys.executable, script, *args], env=env, stdin=stdin)

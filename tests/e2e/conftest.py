"""Real processes, started the way a person starts them, driven over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pdfqa.settings import Settings

BIN = Path(sys.executable).parent
STARTUP_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFQA_")}
    env.update(
        PDFQA_DATABASE_URL=settings.database_url,
        PDFQA_REDIS_URL=settings.redis_url,
        PDFQA_DATA_DIR=str(settings.data_dir),
        PDFQA_QUEUE_NAME=f"{settings.queue_name}:e2e:{os.urandom(4).hex()}",
        PDFQA_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Process:
    """A child process whose output goes to a log file the test prints on failure."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


def wait_healthy(base: str, proc: Process) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            pytest.fail(f"the server exited early:\n{proc.output()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not become healthy:\n{proc.output()}")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in reversed(started):
        p.stop()

"""Real processes, started the way a person starts them, driven over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pdfqa.settings import Settings

BIN = Path(sys.executable).parent
STARTUP_S = 300.0  # a first start exports the ONNX model: minutes on a busy machine


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
        PDFQA_SCRYPT_LOG_N="14",  # see tests/conftest.py: the suite's speed, not the product's
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


def start_serve(
    settings: Settings, processes: list[Process], log: Path, **env: str
) -> tuple[Process, str]:
    """``pdfqa serve`` as ``make run`` starts it, healthy: the process and its base URL."""
    port = free_port()
    server = Process(
        [str(BIN / "pdfqa"), "serve", "--port", str(port)], environment(settings, **env), log
    )
    processes.append(server)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, server)
    return server, base


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in reversed(started):
        p.stop()


LINE_BREAK = re.compile(r"\r\n|\r|\n")
Event = tuple[str, dict[str, Any]]


def register(http: httpx.Client) -> dict[str, str]:
    """A new account, logged in: the bearer header."""
    email, password = f"e2e-{uuid.uuid4().hex[:8]}@example.com", "a long password"
    r = http.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    r = http.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def sse_lines(chunks: Iterator[str]) -> Iterator[str]:
    """Lines as the SSE spec cuts them: at CR, LF or CRLF only.

    Not ``httpx.Response.iter_lines``: it splits like ``str.splitlines``, also at U+2028, U+0085
    and the like, which JSON leaves unescaped and a model may well write.
    """
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        while match := LINE_BREAK.search(buffer):
            if match[0] == "\r" and match.end() == len(buffer):
                break  # perhaps the first half of a CRLF: wait for the next chunk
            yield buffer[: match.start()]
            buffer = buffer[match.end() :]
    if buffer:
        yield buffer


def progress(http: httpx.Client, url: str, headers: dict[str, str]) -> list[Event]:
    """Read an upload's progress stream until ``ready`` or ``failed``."""
    events: list[Event] = []
    name = ""
    with http.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=300)) as r:
        assert r.status_code == 200
        for line in sse_lines(r.iter_text()):
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                if name in ("ready", "failed"):
                    break
    return events


def upload_ready(
    http: httpx.Client, headers: dict[str, str], path: Path, proc: Process
) -> tuple[str, list[Event]]:
    """Upload a PDF and follow its progress until it is ready; the upload id and the events."""
    with path.open("rb") as f:
        r = http.post(
            "/api/v1/uploads", files={"file": (path.name, f, "application/pdf")}, headers=headers
        )
    assert r.status_code == 202, r.text
    upload_id: str = r.json()["id"]
    events = progress(http, f"/api/v1/uploads/{upload_id}/events", headers)
    assert events[-1][0] == "ready", (events, proc.output())
    return upload_id, events

"""Browser tests: Debian's Chromium driven by Playwright, against ``pdfqa serve`` started as
``make run`` starts it (a real process, the real worker, PostgreSQL, Redis, the local embedder).

FAKE AT THE PAID EDGE: the ``generating`` server's language model is an OpenAI-compatible
``/v1/chat/completions`` endpoint served by a thread in this process (:class:`FakeChat`). It
streams a fixed, cited answer a piece at a time, so a test can see tokens arrive before the
answer is complete and stop one mid-way. The ``extractive`` server has no language model.

Each server gets its own database (dropped afterwards), data directory and arq queue; the
embedding model is shared with the rest of the session through a ``models`` symlink.
Chromium must be installed at /usr/bin/chromium (``.ci/run`` installs it): the tests fail,
rather than skip, when it is missing, and never download a browser.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from pdfqa.settings import Settings
from tests.conftest import _drop
from tests.e2e.conftest import BIN, Process, environment, free_port, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(
    os.environ.get("PDFQA_SCREENSHOTS") or Path(tempfile.gettempdir()) / "pdfqa-screenshots"
)
"""Where the screenshots go: a temporary folder, unless ``make screenshots`` names
docs/screenshots (a test run never changes a tracked file)."""
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "a long password"

ANSWER = [
    "DeepSeek-R1",
    " is",
    " trained",
    " with",
    " large-scale",
    " reinforcement",
    " learning",
    " [1],",
    " starting",
    " from",
    " a",
    " cold-start",
    " of",
    " curated",
    " long",
    " chain-of-thought",
    " examples",
    " [2].",
    " Its",
    " precursor,",
    " DeepSeek-R1-Zero,",
    " used",
    " reinforcement",
    " learning",
    " alone",
    " [1].",
]
PIECE_DELAY_S = 0.08
"""Pacing of the fake model's stream: the answer takes about two seconds to arrive."""
SLOW_WORD = "slowly"
"""A question containing this word is answered at a crawl (for "stop generating")."""
PAUSE_WORD = "ponder"
"""A question containing this word makes the model go quiet mid-answer for :data:`PAUSE_S`."""
PAUSE_S = 2.0
HEARTBEAT_S = 0.2
"""The ``generating`` server's keep-alive interval: a pause sends several keep-alives."""


def chunk(content: str, role: bool = False) -> bytes:
    delta = {"role": "assistant"} if role else {"content": content}
    body = {
        "id": "chatcmpl-web",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-chat",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeChat(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that streams :data:`ANSWER` at a readable pace."""

    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = body["messages"][-1]["content"]
        if not body.get("stream"):  # the follow-up rewrite: keep the question as it is
            reply = {
                "id": "chatcmpl-web",
                "object": "chat.completion",
                "created": 0,
                "model": "fake-chat",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": question.rsplit("Last question:", 1)[-1].strip(),
                        },
                        "finish_reason": "stop",
                    }
                ],
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        asked = question.rsplit("Question:", 1)[-1]
        slow = SLOW_WORD in asked
        pause_at = len(ANSWER) // 2 if PAUSE_WORD in asked else -1
        pieces, delay = (ANSWER * 4, 0.4) if slow else (ANSWER, PIECE_DELAY_S)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            self.wfile.write(chunk("", role=True))
            for i, piece in enumerate(pieces):
                self.wfile.write(chunk(piece))
                self.wfile.flush()
                time.sleep(PAUSE_S if i == pause_at else delay)
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: "stop generating"


@pytest.fixture(scope="session")
def fake_chat_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-chat", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Server:
    base: str
    process: Process


def serve(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, name: str, **extra: str
) -> Iterator[Server]:
    """``pdfqa serve`` with a database, data directory and queue of its own."""
    data_dir = tmp_path_factory.mktemp(name)
    models = settings.data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    (data_dir / "models").symlink_to(models, target_is_directory=True)
    database_url = f"{settings.database_url}_{name}"
    port = free_port()
    process = Process(
        [str(BIN / "pdfqa"), "serve", "--port", str(port)],
        environment(
            msgspec.structs.replace(settings, database_url=database_url),
            PDFQA_DATA_DIR=str(data_dir),
            **extra,
        ),
        data_dir / "serve.log",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, process)
        yield Server(base=base, process=process)
    finally:
        process.stop()
        # Playwright's sync API owns this thread's event loop: drop the database from another.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _drop(database_url.rpartition("/")[2])).result()


@pytest.fixture(scope="module")
def generating(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, fake_chat_url: str
) -> Iterator[Server]:
    """A server whose answers a (fake) language model writes."""
    yield from serve(
        settings,
        tmp_path_factory,
        "web",
        PDFQA_CHAT_MODEL="fake-chat",
        PDFQA_CHAT_BASE_URL=fake_chat_url,
        PDFQA_CHAT_MAX_RETRIES="0",
        PDFQA_SSE_HEARTBEAT_S=str(HEARTBEAT_S),
    )


@pytest.fixture(scope="module")
def extractive(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server without a language model, accepting uploads of at most 1 MiB."""
    yield from serve(settings, tmp_path_factory, "webx", PDFQA_MAX_UPLOAD_BYTES=str(1024 * 1024))


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Module-scoped: while it runs, Playwright's sync API owns this thread's event loop, so it
    must be gone before any later asyncio code (other tests, session teardown) runs."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install Debian's package "
            "(apt-get install chromium; .ci/run does it). The tests never download a browser."
        )
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


class Console:
    """JavaScript errors a page reported (a failed request for an expected 401 is not one)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda err: self.errors.append(f"uncaught: {err}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console: {msg.text}")
                if msg.type == "error" and "Failed to load resource" not in msg.text
                else None
            ),
        )
        return page


def new_context(browser: Browser, server: Server, **options: Any) -> BrowserContext:
    options.setdefault("viewport", LAPTOP)
    context = browser.new_context(base_url=server.base, service_workers="block", **options)
    context.set_default_timeout(30_000)
    return context


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png")

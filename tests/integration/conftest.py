"""The app through Litestar's test client with its real lifespan, plus a burst arq worker."""

from __future__ import annotations

import concurrent.futures
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.api.app import create_app
from pdfqa.jobs.worker import embedded_worker
from pdfqa.queue import QueueKind
from pdfqa.resources import Resources
from pdfqa.settings import Settings

T = TypeVar("T")


@pytest.fixture
def app(settings: Settings) -> Litestar:
    # A queue of its own per test, so one test's leftover jobs never run in another's worker.
    return create_app(
        msgspec.structs.replace(
            settings, queue_name=f"{settings.queue_name}:{uuid.uuid4().hex[:8]}"
        )
    )


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, timeout=60) as client:
        yield client


@pytest.fixture
def resources(client: AsyncTestClient[Litestar]) -> Resources:
    """The app's open resources. They live on the app's event loop: use them via :func:`on_app`."""
    res: Resources = client.app.state.resources
    return res


def on_app(
    client: AsyncTestClient[Litestar], fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> T:
    """Run ``fn`` on the app's event loop (Litestar's test client runs the app in a portal)."""
    return client.blocking_portal.call(functools.partial(fn, *args, **kwargs))


def start_on_app(
    client: AsyncTestClient[Litestar], fn: Callable[..., Awaitable[T]], *args: Any
) -> concurrent.futures.Future[T]:
    """Start ``fn`` on the app's event loop without waiting for it."""
    return client.blocking_portal.start_task_soon(functools.partial(fn, *args))


async def login(client: AsyncTestClient[Litestar], email: str | None = None) -> dict[str, str]:
    """Register a new user and return the bearer header for it."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery"
    r = await client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    client.cookies.clear()  # tests authenticate with the bearer token unless they say otherwise
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def upload(
    client: AsyncTestClient[Litestar], headers: dict[str, str], path: Path, name: str | None = None
) -> dict[str, Any]:
    data = await anyio.Path(path).read_bytes()
    files = {"file": (name or path.name, data, "application/pdf")}
    r = await client.post("/api/v1/uploads", files=files, headers=headers)
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def ingest_ready(
    client: AsyncTestClient[Litestar], pdf: bytes, name: str = "board.pdf"
) -> tuple[dict[str, str], dict[str, Any]]:
    """Register a new user, upload ``pdf`` as ``name``, run its ingestion job and return the
    user's bearer header and the upload, checked to be ``ready``."""
    headers = await login(client)
    r = await client.post(
        "/api/v1/uploads", files={"file": (name, pdf, "application/pdf")}, headers=headers
    )
    assert r.status_code == 202, r.text
    upload_id = r.json()["id"]
    assert on_app(client, run_jobs, client.app.state.resources, "ingest") == 1
    body: dict[str, Any] = (
        await client.get(f"/api/v1/uploads/{upload_id}", headers=headers)
    ).json()
    assert body["status"] == "ready", body
    return headers, body


INGESTION_KINDS: tuple[QueueKind, ...] = ("ingest", "ocr")


async def run_jobs(resources: Resources, *kinds: QueueKind) -> int:
    """Run queues dry with real arq workers in burst mode; returns the jobs completed.

    Ingestion first (it hands scanned pages to OCR), then OCR, unless told which kinds;
    ``"default"`` runs the short jobs (a delete's clean-up)."""
    done = 0
    for kind in kinds or INGESTION_KINDS:
        worker = embedded_worker(resources, kind, burst=True, poll_delay=0.05)
        await worker.main()
        done += int(worker.jobs_complete)
    return done

"""``pdfqa serve`` (as ``make run`` starts it) and ``arq`` workers (as ``make worker`` does)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec
import pytest

from pdfqa.settings import Settings
from tests.e2e.conftest import (
    BIN,
    Process,
    environment,
    free_port,
    register,
    upload_ready,
    wait_healthy,
)

pytestmark = pytest.mark.e2e

T = TypeVar("T")


def on_new_loop(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def count_points(settings: Settings, data_dir: Path, upload_id: str) -> int:
    """Count an upload's points through pdfqa's own vector store (whichever embedded engine)."""
    import httpx

    from pdfqa.embeddings import create_embedder
    from pdfqa.store.vectors import open_vector_store

    # The processes ran with the product's default engine, as `make run` does.
    local = msgspec.structs.replace(
        settings, data_dir=data_dir, embedded_vectors=Settings().embedded_vectors
    )
    async with httpx.AsyncClient() as http:
        embedder = create_embedder(local, http)
        await embedder.start()
        store = open_vector_store(local, embedder.name, embedder.dimensions)
        try:
            return await store.count(upload_id=upload_id)
        finally:
            await embedder.aclose()
            await store.aclose()


def test_pdfqa_serve_runs_the_whole_product_in_one_process(
    settings: Settings, corpus: Path, processes: list[Process], tmp_path: Path
) -> None:
    port = free_port()
    server = Process(
        [str(BIN / "pdfqa"), "serve", "--port", str(port)],
        environment(settings),
        tmp_path / "serve.log",
    )
    processes.append(server)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, server)
    with httpx.Client(base_url=base, timeout=30) as http:
        ready = http.get("/ready")
        assert ready.status_code == 200, ready.text
        headers = register(http)
        upload_id, events = upload_ready(http, headers, corpus / "DeepSeek_R1.pdf", server)
        assert events[-1][1]["pages_total"] == 22
        assert [n for n, _ in events[:-1]] == ["progress"] * (len(events) - 1)

        body = http.get(f"/api/v1/uploads/{upload_id}", headers=headers).json()
        assert body["status"] == "ready"
        assert body["pages_done"] == 22
        assert body["chunks"] == events[-1][1]["chunks"]
    assert f"http://127.0.0.1:{port}/" in server.output()  # the URL a person opens
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal as its exit status.
    assert server.stop() in (0, -15)
    assert "Application shutdown complete" in server.output()


def test_a_separate_arq_worker_processes_jobs_the_api_enqueued(
    settings: Settings, corpus: Path, processes: list[Process], tmp_path: Path
) -> None:
    """API and worker as two processes. Local-mode Qdrant allows one process per folder, so the
    API here never touches vectors (no /ready, no delete) and the test reads the folder after the
    worker has exited; in production this topology uses a Qdrant server (see the README)."""
    data_dir = tmp_path / "data"
    env = environment(settings, PDFQA_DATA_DIR=str(data_dir))
    port = free_port()
    api = Process(
        [str(BIN / "pdfqa"), "serve", "--port", str(port), "--no-worker"], env, tmp_path / "api.log"
    )
    worker = Process([str(BIN / "pdfqa"), "worker"], env, tmp_path / "worker.log")
    processes.extend([api, worker])
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, api)
    with httpx.Client(base_url=base, timeout=30) as http:
        headers = register(http)
        upload_id, events = upload_ready(http, headers, corpus / "quivr_sample.pdf", worker)
        chunks = events[-1][1]["chunks"]
        job_id = http.get(f"/api/v1/uploads/{upload_id}", headers=headers).json()["job_id"]
        job = http.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        assert job["status"] == "complete"
        assert job["result"]["chunks"] == chunks
    assert worker.stop() == 0, worker.output()
    assert "ingest" in worker.output()

    # The worker has exited, so this process may open the embedded store it wrote.
    assert on_new_loop(count_points(settings, data_dir, upload_id)) == chunks


def test_the_arq_command_serves_the_queue_end_to_end(
    settings: Settings, corpus: Path, processes: list[Process], tmp_path: Path
) -> None:
    """``arq pdfqa.jobs.worker.WorkerSettings``, arq's own command: the settings are resolved
    from the environment (and the deployment's id from PostgreSQL) when arq reads them, and the
    worker ingests what the API enqueued."""
    data_dir = tmp_path / "data"
    env = environment(settings, PDFQA_DATA_DIR=str(data_dir))
    port = free_port()
    api = Process(
        [str(BIN / "pdfqa"), "serve", "--port", str(port), "--no-worker"], env, tmp_path / "api.log"
    )
    processes.append(api)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, api)  # the API created the database and the deployment id first
    worker = Process(
        [str(BIN / "arq"), "pdfqa.jobs.worker.WorkerSettings"], env, tmp_path / "arq.log"
    )
    processes.append(worker)
    with httpx.Client(base_url=base, timeout=30) as http:
        headers = register(http)
        upload_id, events = upload_ready(http, headers, corpus / "quivr_sample.pdf", worker)
        chunks = events[-1][1]["chunks"]
        assert chunks > 0
        body = http.get(f"/api/v1/uploads/{upload_id}", headers=headers).json()
        assert body["status"] == "ready"
        job = http.get(f"/api/v1/jobs/{body['job_id']}", headers=headers).json()
        assert job["status"] == "complete"
        assert job["result"]["chunks"] == chunks
    assert worker.stop() == 0, worker.output()
    out = worker.output()
    # arq's own log lines, on this deployment's queue (not arq's default one).
    assert "Starting worker for 1 functions: ingest" in out, out
    assert f"serving {env['PDFQA_QUEUE_NAME']}:" in out, out
    assert on_new_loop(count_points(settings, data_dir, upload_id)) == chunks


def test_pdfqa_migrate_creates_the_database_and_is_idempotent(
    settings: Settings, tmp_path: Path
) -> None:
    name = f"pdfqa_migrate_{uuid.uuid4().hex[:8]}"
    dsn = settings.database_url.rsplit("/", 1)[0] + "/" + name
    env = environment(settings, PDFQA_DATABASE_URL=dsn)
    try:
        for _ in range(2):  # the second run finds everything applied
            done = subprocess.run(
                [str(BIN / "pdfqa"), "migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        assert "none (up to date)" in done.stderr
        tables = on_new_loop(_tables(dsn))
        assert {
            "users",
            "sessions",
            "uploads",
            "conversations",
            "messages",
            "feedback",
            "schema_migrations",
        } <= tables
    finally:
        on_new_loop(_drop(settings.database_url.rsplit("/", 1)[0] + "/postgres", name))


async def _tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def _drop(admin_dsn: str, name: str) -> int:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(
            await conn.fetchval(
                "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', $1::text)", name
            )
        )
        return 0
    finally:
        await conn.close()

"""An upload's life against the real PostgreSQL and Redis: the reconciler repairs lost, foreign
and given-up jobs; an interrupted ingestion resumes from its checkpoint with the exact chunk
count; failure reasons are the real ones, without internals; streams end when they should."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from arq.constants import retry_key_prefix
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa import lifecycle, queue
from pdfqa.api.app import create_app
from pdfqa.ingest import Stopped
from pdfqa.jobs.worker import embedded_worker
from pdfqa.queue import Queues
from pdfqa.resources import Resources
from pdfqa.settings import Settings
from pdfqa.store import upload_jobs
from tests.conftest import _drop
from tests.integration.conftest import login, on_app, run_jobs, start_on_app, upload

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
def lifecycle_settings(settings: Settings) -> Iterator[Settings]:
    """A database of this module's own: the reconciler looks at every unfinished upload, and
    other modules leave some behind."""
    name = f"pdfqa_lifecycle_{uuid.uuid4().hex[:8]}"
    yield msgspec.structs.replace(
        settings, database_url=settings.database_url.rsplit("/", 1)[0] + "/" + name
    )
    asyncio.run(_drop(name))


@pytest.fixture
def app(lifecycle_settings: Settings) -> Litestar:
    settings = lifecycle_settings
    # Its own queue prefix; a low memory limit so that bomb.pdf fails fast; small batches so that
    # a short document has several checkpoints.
    return create_app(
        msgspec.structs.replace(
            settings,
            queue_name=f"{settings.queue_name}:{uuid.uuid4().hex[:8]}",
            extract_memory_mb=384,
            embed_batch_size=8,
            max_streams_per_user=2,
        )
    )


async def status_of(res: Resources, upload_id: UUID) -> tuple[str, str | None]:
    async with res.db.acquire() as conn:
        row = await conn.fetchrow("SELECT status, error FROM uploads WHERE id = $1", upload_id)
    assert row is not None
    return row["status"], row["error"]


async def test_a_job_lost_with_redis_data_is_queued_again_by_the_reconciler(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    uid = UUID(accepted["id"])
    # What a Redis restart without persistence (or a FLUSHDB) does to the job.
    on_app(
        client,
        queue.clear_job,
        resources.redis,
        resources.queues.name("ingest"),
        accepted["job_id"],
    )
    assert on_app(client, run_jobs, resources) == 0  # nothing to run: the job is gone
    report = on_app(client, lifecycle.reconcile, resources, idle_s=0)
    assert report.requeued == 1
    assert on_app(client, run_jobs, resources) == 1
    assert on_app(client, status_of, resources, uid) == ("ready", None)


async def _foreign_worker_takes(res: Resources, queue_name: str) -> int:
    """A worker of another deployment (another database, another id) misconfigured to read
    this deployment's queue: it takes the job and finishes it without touching anything."""
    foreign = dataclasses.replace(res, queues=Queues(prefix="elsewhere", deployment=uuid.uuid4()))
    worker = embedded_worker(foreign, queue_name=queue_name, burst=True, poll_delay=0.05)
    await worker.main()
    return int(worker.jobs_complete)


async def test_a_job_taken_by_another_deployment_is_repaired_by_the_reconciler(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    uid = UUID(accepted["id"])
    assert on_app(client, _foreign_worker_takes, resources, resources.queues.name("ingest")) == 1
    assert on_app(client, status_of, resources, uid) == ("queued", None)  # untouched
    state = on_app(
        client, queue.liveness, resources.redis, resources.queues.name("ingest"), accepted["job_id"]
    )
    assert state == "finished"
    assert on_app(client, lifecycle.reconcile, resources, idle_s=0).requeued == 1
    assert on_app(client, run_jobs, resources) == 1
    assert on_app(client, status_of, resources, uid) == ("ready", None)


def test_queue_names_and_job_ids_are_scoped_by_deployment() -> None:
    a, b = Queues("pdfqa:queue", uuid.uuid4()), Queues("pdfqa:queue", uuid.uuid4())
    upload_id = uuid.uuid4()
    assert a.name("ingest") != b.name("ingest")
    assert a.job_id("ingest", upload_id) != b.job_id("ingest", upload_id)


async def _give_up(res: Resources, upload_id: UUID, job_id: str) -> None:
    """The upload has used its attempts and arq's retry counter is past its limit, so arq fails
    the job without ever calling pdfqa (what happens after repeated worker deaths)."""
    async with res.db.acquire() as conn:
        await upload_jobs.begin_attempt(conn, upload_id)
        await conn.execute(
            "UPDATE upload_jobs SET attempts = $2 WHERE upload_id = $1",
            upload_id,
            res.settings.ingest_max_attempts,
        )
    await res.redis.set(retry_key_prefix + job_id, res.settings.ingest_max_attempts + 1)


async def test_when_retries_are_exhausted_the_upload_fails_with_a_reason(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    uid = UUID(accepted["id"])
    on_app(client, _give_up, resources, uid, accepted["job_id"])
    on_app(client, run_jobs, resources)  # arq gives up: pdfqa is not called
    assert on_app(client, status_of, resources, uid) == ("queued", None)
    report = on_app(client, lifecycle.reconcile, resources, idle_s=0)
    assert report.failed == 1
    status, error = on_app(client, status_of, resources, uid)
    assert status == "failed"
    assert error is not None
    assert "interrupted 3 times" in error
    r = await client.get(f"/api/v1/uploads/{uid}", headers=headers)
    assert r.json()["error"] == error


async def _stop_after_pages(res: Resources, upload_id: UUID, pages: int) -> Any:
    """Run an ingestion and ask it to stop (as a shutdown does) once ``pages`` pages are safe."""
    stop = asyncio.Event()

    async def watch() -> None:
        while True:
            async with res.db.acquire() as conn:
                done = await conn.fetchval(
                    "SELECT pages_done FROM uploads WHERE id = $1", upload_id
                )
            if done >= pages:
                stop.set()
                return
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        await lifecycle.ingest_upload(res, upload_id, stop=stop)
    except Stopped:
        return "stopped"
    finally:
        watcher.cancel()
    return "finished"


async def test_an_interrupted_ingestion_resumes_with_the_exact_chunk_count(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    whole = await upload(client, headers, corpus / "DeepSeek_R1.pdf")
    assert on_app(client, run_jobs, resources) == 1
    expected = (await client.get(f"/api/v1/uploads/{whole['id']}", headers=headers)).json()
    assert expected["status"] == "ready"

    accepted = await upload(client, headers, corpus / "DeepSeek_R1.pdf", name="again.pdf")
    uid = UUID(accepted["id"])
    assert on_app(client, _stop_after_pages, resources, uid, 5) == "stopped"
    body = (await client.get(f"/api/v1/uploads/{uid}", headers=headers)).json()
    assert body["status"] == "processing"
    assert 5 <= body["pages_done"] < 22
    stored = on_app(client, resources.vectors.count, upload_id=accepted["id"])
    assert 0 < stored < expected["chunks"]

    result = on_app(client, lifecycle.ingest_upload, resources, uid)
    assert result.status == "ready"
    assert result.resumed_from_page >= 5
    assert result.chunks == expected["chunks"]
    assert on_app(client, resources.vectors.count, upload_id=accepted["id"]) == expected["chunks"]
    # A graceful stop does not use up an attempt.
    record = on_app(client, _job_record, resources, uid)
    assert record.attempts == 1
    assert record.checkpoint is None


async def _job_record(res: Resources, upload_id: UUID) -> upload_jobs.JobRecord:
    async with res.db.acquire() as conn:
        record = await upload_jobs.get(conn, upload_id)
    assert record is not None
    return record


async def test_a_pdf_bomb_fails_with_the_memory_limit_as_its_reason(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "bad" / "bomb.pdf")
    on_app(client, run_jobs, resources)
    status, error = on_app(client, status_of, resources, UUID(accepted["id"]))
    assert status == "failed"
    assert error is not None
    assert "memory" in error
    assert "internal error" not in error


async def _kept_until(res: Resources, upload_id: UUID) -> Any:
    async with res.db.acquire() as conn:
        return await conn.fetchval(
            "SELECT expires_at - now() FROM kept_files WHERE upload_id = $1", upload_id
        )


@pytest.mark.parametrize("retention_s", [0, 3600])
async def test_a_failed_uploads_file_is_kept_for_the_retention_period_only(
    lifecycle_settings: Settings, corpus: Path, retention_s: int
) -> None:
    settings = msgspec.structs.replace(
        lifecycle_settings,
        queue_name=f"{lifecycle_settings.queue_name}:{uuid.uuid4().hex[:8]}",
        failed_file_retention_s=retention_s,
    )
    async with AsyncTestClient(app=create_app(settings), timeout=60) as client:
        res: Resources = client.app.state.resources
        headers = await login(client)
        accepted = await upload(client, headers, corpus / "bad" / "truncated.pdf")
        uid = UUID(accepted["id"])
        assert on_app(client, res.files.exists, accepted["id"])
        on_app(client, run_jobs, res)
        assert on_app(client, status_of, res, uid)[0] == "failed"
        kept = on_app(client, _kept_until, res, uid)
        if retention_s:  # kept for an admin's retry, until the retention ends
            assert on_app(client, res.files.exists, accepted["id"])
            assert 3500 < kept.total_seconds() <= 3600
        else:
            assert not on_app(client, res.files.exists, accepted["id"])
            assert kept is None
        # The owner deleting it takes the file at once either way.
        assert (await client.delete(f"/api/v1/uploads/{uid}", headers=headers)).status_code == 204
        on_app(client, run_jobs, res, "default")
        assert not on_app(client, res.files.exists, accepted["id"])
        assert on_app(client, _kept_until, res, uid) is None


async def test_a_missing_file_is_reported_as_such_without_paths(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    on_app(client, resources.files.delete, accepted["id"])
    on_app(client, run_jobs, resources)
    status, error = on_app(client, status_of, resources, UUID(accepted["id"]))
    assert status == "failed"
    assert error == lifecycle.MISSING_FILE
    assert "/" not in error
    assert "backing service" not in error


async def _events_until_end(client: Client, url: str, headers: dict[str, str]) -> list[str]:
    names: list[str] = []
    async with client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                names.append(line.split(":", 1)[1].strip())
            elif line.startswith("data:"):
                json.loads(line.split(":", 1)[1])
    return names


async def _when_streaming(res: Resources, count: int) -> None:
    """Wait until ``count`` streams listen (a test client reads a stream only once it ends)."""
    for _ in range(1000):
        if res.hub.open_streams >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the stream never opened")


async def _delete_once_streaming(res: Resources, uid: UUID) -> None:
    await _when_streaming(res, 1)
    async with res.db.acquire() as conn:
        owner = await conn.fetchval("SELECT user_id FROM uploads WHERE id = $1", uid)
    await lifecycle.delete(res, owner, uid)


async def test_a_stream_ends_when_its_upload_is_deleted(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    uid = UUID(accepted["id"])
    deleting = start_on_app(client, _delete_once_streaming, resources, uid)
    names = await _events_until_end(client, f"/api/v1/uploads/{uid}/events", headers)
    deleting.result(timeout=30)
    # "progress" first, unless the deletion won the race to the first read.
    assert names in (["progress", "deleted"], ["deleted"])


async def _close_once_streaming(res: Resources) -> None:
    await _when_streaming(res, 1)
    await res.hub.close()


async def test_shutting_down_ends_open_streams_with_a_final_event(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    closing = start_on_app(client, _close_once_streaming, resources)
    names = await _events_until_end(client, f"/api/v1/uploads/{accepted['id']}/events", headers)
    closing.result(timeout=30)
    assert names[-1] == "closing"


async def _hold_streams(res: Resources, user_id: UUID, n: int, release: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(n):
            await stack.enter_async_context(res.hub.listen(uuid.uuid4(), user_id))
        await release.wait()


async def _owner(res: Resources, uid: UUID) -> UUID:
    async with res.db.acquire() as conn:
        value: UUID = await conn.fetchval("SELECT user_id FROM uploads WHERE id = $1", uid)
    return value


async def test_open_streams_are_capped_per_user(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    owner = on_app(client, _owner, resources, UUID(accepted["id"]))
    release = on_app(client, _event)
    holding = start_on_app(client, _hold_streams, resources, owner, 2, release)  # the cap is 2
    on_app(client, _when_streaming, resources, 2)
    r = await client.get(f"/api/v1/uploads/{accepted['id']}/events", headers=headers)
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    on_app(client, _set, release)
    holding.result(timeout=30)
    assert resources.hub.open_streams == 0


async def _event() -> asyncio.Event:
    return asyncio.Event()


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_ready_reports_the_embedded_worker(lifecycle_settings: Settings) -> None:
    settings = lifecycle_settings
    app = create_app(
        msgspec.structs.replace(
            settings,
            queue_name=f"{settings.queue_name}:{uuid.uuid4().hex[:8]}",
            embedded_worker=True,
        )
    )
    async with AsyncTestClient(app=app, timeout=60) as client:
        for _ in range(100):
            r = await client.get("/ready")
            if r.json()["checks"].get("worker") == "ok":
                break
            await asyncio.sleep(0.1)
        assert r.json()["checks"]["worker"] == "ok", r.text


async def _stop_while_a_page_never_comes(res: Resources) -> tuple[str, list[int], bool]:
    """Feed the pipeline three pages, then set ``stop`` and never deliver the fourth (a page a
    busy machine takes forever to read). The pipeline must not wait for it."""
    from pdfqa.extract import PageChunks, PageText
    from pdfqa.ingest import Progress, chunk_spec, ingest_pages

    stop = asyncio.Event()
    abandoned = asyncio.Event()
    reported: list[int] = []
    text = " ".join(f"Sentence {i} about the quarterly revenue of the company." for i in range(40))

    chunker = chunk_spec(res).chunker(chunk_spec(res).counter())

    def pages(first: int, state: Any) -> Any:
        async def gen() -> Any:
            for n in range(first, 4):  # cut here as the extraction child would
                cut = chunker.add_page(n, text)
                page = PageText(number=n, text=text, method="pdfium")
                yield PageChunks(page, cut, chunker.snapshot())
            stop.set()  # a SIGTERM arrives while page 4 is being read...
            try:
                await asyncio.Event().wait()  # ...and page 4 never comes
            finally:
                abandoned.set()
            yield PageChunks(PageText(number=4, text=text, method="pdfium"))

        return gen()

    async def report(p: Progress) -> None:
        reported.append(p.checkpoint.pages_done if p.checkpoint else 0)

    try:
        await ingest_pages(
            res,
            upload_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            pages=pages,
            pages_total=10,
            report=report,
            stop=stop,
        )
    except Stopped:
        return "stopped", reported, abandoned.is_set()
    return "finished", reported, abandoned.is_set()


async def test_a_stop_does_not_wait_for_the_page_being_read(
    client: Client, resources: Resources
) -> None:
    outcome, reported, abandoned = on_app(
        client, asyncio.wait_for, _stop_while_a_page_never_comes(resources), 60
    )
    assert outcome == "stopped"
    assert abandoned  # the read of page 4 was dropped, not waited for
    assert reported[-1] == 3  # the last report is the checkpoint after page 3, all of it safe

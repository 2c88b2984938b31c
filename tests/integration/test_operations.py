"""Operating pdfqa: separate queues with their own workers, the jobs dashboard (states, retry,
abort, 403 for others), Prometheus metrics, and the retrieval cache. Real PostgreSQL and Redis;
a database of this module's own (its default worker runs the reconciler, which looks at every
unfinished upload)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa import dashboard, lifecycle, retrieval, workers
from pdfqa.api.app import create_app
from pdfqa.jobs.worker import Supervisor
from pdfqa.queue import QueueKind
from pdfqa.resources import Resources
from pdfqa.settings import Settings
from tests.conftest import _drop, metric_samples, metric_value
from tests.integration.conftest import login, on_app, run_jobs, start_on_app, upload
from tests.integration.test_conversations import ask_sse, conversation

Client = AsyncTestClient[Litestar]
ADMIN = "ops-admin@example.com"
ADMIN2 = "ops-admin2@example.com"


@pytest.fixture(scope="module")
def ops_settings(settings: Settings) -> Iterator[Settings]:
    name = f"pdfqa_ops_{uuid.uuid4().hex[:8]}"
    yield msgspec.structs.replace(
        settings,
        database_url=settings.database_url.rsplit("/", 1)[0] + "/" + name,
        admin_emails=f"{ADMIN},{ADMIN2}",
        # Small batches: a long PDF reports progress (and can be caught running) early.
        embed_batch_size=8,
    )
    asyncio.run(_drop(name))


@pytest.fixture
async def client(ops_settings: Settings) -> AsyncIterator[Client]:
    configured = msgspec.structs.replace(
        ops_settings, queue_name=f"{ops_settings.queue_name}:{uuid.uuid4().hex[:8]}"
    )
    async with AsyncTestClient(app=create_app(configured), timeout=120) as client:
        yield client


@pytest.fixture
def resources(client: Client) -> Resources:
    res: Resources = client.app.state.resources
    return res


async def _until(check: Any, what: str, limit_s: float = 60.0) -> Any:
    """Poll ``check()`` (async) until it returns something truthy; fail after ``limit_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {what} within {limit_s} s")


async def _start(res: Resources, kinds: tuple[QueueKind, ...]) -> Supervisor:
    supervisor = Supervisor(res, kinds=kinds, poll_delay=0.05)
    asyncio.get_running_loop().create_task(supervisor.run())
    return supervisor


def _jobs(body: dict[str, Any], upload_id: str) -> dict[str, Any] | None:
    return next((j for j in body["jobs"] if j.get("upload_id") == upload_id), None)


async def test_two_workers_two_queues_and_short_jobs_never_wait(
    client: Client, resources: Resources, corpus: Path
) -> None:
    admin = await login(client, ADMIN)
    user = await login(client)
    # Only the default queue is served: ingestions wait, a delete's clean-up does not.
    default = on_app(client, _start, resources, ("default",))
    first = await upload(client, user, corpus / "quivr_sample.pdf")
    second = await upload(client, user, corpus / "table.pdf")
    r = await client.delete(f"/api/v1/uploads/{first['id']}", headers=user)
    assert r.status_code == 204
    on_app(
        client,
        _until,
        lambda: _gone(resources, first["id"]),
        "the delete's clean-up on the default queue",
    )
    body = (await client.get(f"/api/v1/uploads/{second['id']}", headers=user)).json()
    assert body["status"] == "queued"  # nobody serves the ingest queue yet
    ingest = on_app(client, _start, resources, ("ingest",))
    try:
        beats = on_app(client, _until, lambda: _two_workers(resources), "two heartbeats")
        assert {b.queue for b in beats} == {"ingest", "default"}
        assert len({b.worker_id for b in beats}) == 2
        r = await client.get("/api/v1/admin/workers", headers=admin)
        assert r.status_code == 200
        listed = {w["worker_id"]: w for w in r.json()}
        assert {w["queue"] for w in listed.values()} == {"ingest", "default"}
        for w in listed.values():
            assert w["concurrency"] >= 1
            assert w["pid"] > 0
            assert w["beat_at"] > 0
        on_app(client, _until, lambda: _status(resources, second["id"], "ready"), "the ingestion")
        r = await client.get("/api/v1/admin/workers", headers=admin)
        ingest_worker = next(w for w in r.json() if w["queue"] == "ingest")
        assert ingest_worker["jobs_complete"] >= 1
        r = await client.get("/api/v1/admin/workers", headers=user)
        assert r.status_code == 403
    finally:
        on_app(client, ingest.stop)
        on_app(client, default.stop)
    # A worker that stops removes its own record at once.
    assert on_app(client, workers.read, resources.redis, resources.queues) == []


async def _gone(res: Resources, upload_id: str) -> bool:
    return not await res.files.exists(upload_id)


async def _two_workers(res: Resources) -> list[workers.Heartbeat] | None:
    beats = await workers.read(res.redis, res.queues)
    return beats if len(beats) == 2 else None


async def _status(res: Resources, upload_id: str, *statuses: str) -> bool:
    async with res.db.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM uploads WHERE id = $1", UUID(upload_id))
    return status in statuses


async def _pages_done(res: Resources, upload_id: str) -> bool:
    async with res.db.acquire() as conn:
        done = await conn.fetchval("SELECT pages_done FROM uploads WHERE id = $1", UUID(upload_id))
    return bool(done)


async def test_dashboard_states_failure_abort_retry_and_403(
    client: Client, resources: Resources, corpus: Path
) -> None:
    admin = await login(client, ADMIN2)
    user = await login(client)
    big = await upload(client, user, corpus / "DeepSeek_R1.pdf")

    r = await client.get("/api/v1/admin/jobs", headers=admin)
    assert r.status_code == 200, r.text
    job = _jobs(r.json(), big["id"])
    assert job is not None
    assert (job["state"], job["redis"], job["function"], job["queue"]) == (
        "queued",
        "queued",
        "ingest",
        "ingest",
    )
    ingest_queue = next(q for q in r.json()["queues"] if q["queue"] == "ingest")
    assert ingest_queue["waiting"] >= 1
    assert ingest_queue["queued"] >= 1

    # In progress: a worker takes it; the dashboard says so, with Redis agreeing.
    running = start_on_app(client, run_jobs, resources)
    on_app(client, _until, lambda: _pages_done(resources, big["id"]), "the job to start")
    job = _jobs((await client.get("/api/v1/admin/jobs", headers=admin)).json(), big["id"])
    assert job is not None
    assert job["state"] == "in_progress"
    assert job["redis"] == "running"
    assert job["tries"] == 1
    assert job["started_at"]

    # Abort: the upload fails as stopped by an administrator, the worker goes on.
    for path in (f"/api/v1/admin/jobs/{job['id']}/abort", f"/api/v1/admin/jobs/{job['id']}/retry"):
        r = await client.post(path, headers=user)
        assert r.status_code == 403
    r = await client.post(f"/api/v1/admin/jobs/{job['id']}/abort", headers=admin)
    assert r.status_code == 202, r.text
    running.result(timeout=120)
    body = (await client.get(f"/api/v1/uploads/{big['id']}", headers=user)).json()
    assert body["status"] == "failed"
    assert body["error"] == dashboard.ABORTED
    assert on_app(client, resources.vectors.count, upload_id=big["id"]) == 0
    r = await client.post(f"/api/v1/admin/jobs/{job['id']}/abort", headers=admin)
    assert r.status_code == 409  # finished: nothing to abort

    # Retry: the aborted ingestion (its file kept) runs again to the end.
    r = await client.post(f"/api/v1/admin/jobs/{job['id']}/retry", headers=admin)
    assert r.status_code == 202, r.text
    job = _jobs((await client.get("/api/v1/admin/jobs", headers=admin)).json(), big["id"])
    assert job is not None
    assert job["state"] == "queued"
    assert job["error"] is None
    assert on_app(client, run_jobs, resources) == 1
    job = _jobs((await client.get("/api/v1/admin/jobs", headers=admin)).json(), big["id"])
    assert job is not None
    assert job["state"] == "complete", job
    assert job["finished_at"]
    assert job["pages_total"]
    assert job["tries"] == 1
    r = await client.post(f"/api/v1/admin/jobs/{job['id']}/retry", headers=admin)
    assert r.status_code == 409  # not failed

    # A failure with its error: its file is kept for the retention period, so an admin can
    # retry it (it runs again, and fails again for the same reason).
    bad = await upload(client, user, corpus / "bad" / "truncated.pdf")
    on_app(client, run_jobs, resources)
    job = _jobs((await client.get("/api/v1/admin/jobs", headers=admin)).json(), bad["id"])
    assert job is not None
    assert job["state"] == "failed"
    assert job["error"]
    first_error, first_finished = job["error"], job["finished_at"]
    assert on_app(client, resources.files.exists, bad["id"])
    r = await client.post(f"/api/v1/admin/jobs/{job['id']}/retry", headers=admin)
    assert r.status_code == 202, r.text
    queued = _jobs((await client.get("/api/v1/admin/jobs", headers=admin)).json(), bad["id"])
    assert queued is not None
    assert (queued["state"], queued["error"]) == ("queued", None)
    assert on_app(client, run_jobs, resources) == 1
    job = _jobs((await client.get("/api/v1/admin/jobs", headers=admin)).json(), bad["id"])
    assert job is not None
    assert (job["state"], job["error"]) == ("failed", first_error)
    assert job["finished_at"] > first_finished

    # Once its retention has passed, the reconciler deletes the file; a retry is refused.
    assert on_app(client, _expire_kept_file, resources, UUID(bad["id"])) == "UPDATE 1"
    report = on_app(client, lifecycle.reconcile, resources)
    assert report.files_deleted == 1
    assert not on_app(client, resources.files.exists, bad["id"])
    r = await client.post(f"/api/v1/admin/jobs/{job['id']}/retry", headers=admin)
    assert r.status_code == 409
    assert "uploaded again" in r.json()["detail"]

    # A short job shows on the default queue: queued, then complete.
    r = await client.delete(f"/api/v1/uploads/{big['id']}", headers=user)
    assert r.status_code == 204
    body = (await client.get("/api/v1/admin/jobs", headers=admin)).json()
    purge = [j for j in body["jobs"] if j["function"] == "purge_upload"]
    assert [j["state"] for j in purge] == ["queued"]
    assert on_app(client, run_jobs, resources, "default") == 1
    body = (await client.get("/api/v1/admin/jobs", headers=admin)).json()
    purge = [j for j in body["jobs"] if j["function"] == "purge_upload"]
    assert [j["state"] for j in purge] == ["complete"]
    r = await client.post(f"/api/v1/admin/jobs/{purge[0]['id']}/retry", headers=admin)
    assert r.status_code == 409  # it did not fail
    default_queue = next(q for q in body["queues"] if q["queue"] == "default")
    assert default_queue["complete"] == 1
    assert default_queue["waiting"] == 0

    for path in ("/api/v1/admin/jobs", "/api/v1/admin/workers", "/api/v1/admin/events"):
        assert (await client.get(path, headers=user)).status_code == 403
    r = await client.post(f"/api/v1/admin/jobs/{uuid.uuid4()}:ingest:x/retry", headers=admin)
    assert r.status_code == 404


async def _expire_kept_file(res: Resources, upload_id: UUID) -> str:
    async with res.db.acquire() as conn:
        status: str = await conn.execute(
            "UPDATE kept_files SET expires_at = now() - interval '1 second' WHERE upload_id = $1",
            upload_id,
        )
    return status


async def test_metrics_move_with_an_ingestion_and_a_question(
    client: Client, resources: Resources, corpus: Path
) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    before = metric_samples(r.text)
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    waiting = metric_samples((await client.get("/metrics")).text)
    assert metric_value(waiting, "pdfqa_queue_depth", queue="ingest") == 1
    on_app(client, run_jobs, resources)
    conv = await conversation(client, headers, accepted["id"])
    question = "What is Quivr?"
    events = await ask_sse(client, headers, conv["id"], question)
    assert events[-1][0] == "done"
    # The same question in a new conversation (no history to rewrite it): a cache hit.
    again = await conversation(client, headers, accepted["id"])
    await ask_sse(client, headers, again["id"], question)
    after = metric_samples((await client.get("/metrics")).text)

    def moved(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert moved("pdfqa_jobs_total", function="ingest", outcome="complete") == 1
    assert moved("pdfqa_job_duration_seconds_count", function="ingest", outcome="complete") == 1
    assert moved("pdfqa_ingested_pages_total") >= 1
    assert moved("pdfqa_ingested_chunks_total") >= 1
    assert moved("pdfqa_embedding_batch_seconds_count", provider="local") >= 1
    assert moved("pdfqa_retrieval_seconds_count") == 2
    assert moved("pdfqa_time_to_first_token_seconds_count") == 2
    assert moved("pdfqa_cache_requests_total", cache="retrieval", result="miss") == 1
    assert moved("pdfqa_cache_requests_total", cache="retrieval", result="hit") == 1
    assert metric_value(after, "pdfqa_queue_depth", queue="ingest") == 0
    # Litestar's request metrics, by route template (group_path): no ids in the labels.
    paths = {
        dict(labels).get("path")
        for (name, labels) in after
        if name.startswith("pdfqa_http_requests_total")
    }
    assert "/api/v1/conversations/{conversation_id}/messages" in paths, paths
    assert not any(accepted["id"] in (p or "") or conv["id"] in (p or "") for p in paths)

    bad = await upload(client, headers, corpus / "bad" / "truncated.pdf")
    on_app(client, run_jobs, resources)
    assert (await client.get(f"/api/v1/uploads/{bad['id']}", headers=headers)).json()[
        "status"
    ] == "failed"
    final = metric_samples((await client.get("/metrics")).text)
    failures = sum(
        v - before.get(k, 0.0) for k, v in final.items() if k[0] == "pdfqa_ingestion_failures_total"
    )
    assert failures == 1


async def _retrieve(res: Resources, user_id: UUID, upload_id: UUID) -> retrieval.Retrieval:
    return await retrieval.retrieve(
        res, user_id=user_id, upload_names={upload_id: "x.pdf"}, query="quivr features"
    )


async def _cache_hits(res: Resources, user_id: UUID, upload_id: UUID) -> list[bool]:
    """Three retrievals around an invalidation: which came from the cache."""
    from pdfqa import metrics

    hits = []
    for step in range(3):
        if step == 2:
            await retrieval.invalidate(res, upload_id)
        before = metrics.CACHE.labels("retrieval", "hit")._value.get()
        await _retrieve(res, user_id, upload_id)
        hits.append(metrics.CACHE.labels("retrieval", "hit")._value.get() > before)
    return hits


async def test_the_retrieval_cache_is_invalidated_by_a_re_ingestion_or_a_delete(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    on_app(client, run_jobs, resources)
    body = (await client.get(f"/api/v1/uploads/{accepted['id']}", headers=headers)).json()
    uid, owner = UUID(accepted["id"]), UUID(body["user_id"])
    assert on_app(client, _cache_hits, resources, owner, uid) == [False, True, False]
    # A delete invalidates too (through the lifecycle, not by hand).
    on_app(client, _retrieve, resources, owner, uid)
    r = await client.delete(f"/api/v1/uploads/{accepted['id']}", headers=headers)
    assert r.status_code == 204
    from pdfqa import metrics

    misses = metrics.CACHE.labels("retrieval", "miss")._value.get()
    on_app(client, _retrieve, resources, owner, uid)
    assert metrics.CACHE.labels("retrieval", "miss")._value.get() == misses + 1

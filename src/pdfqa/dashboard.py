"""The jobs dashboard (the role Flower plays for Celery), from pdfqa's records plus Redis.

- Ingestion jobs come from PostgreSQL (an upload *is* its job: status, attempts, timings,
  error), checked against Redis for the unfinished ones (is the job running, waiting, gone?).
- Short jobs (the ``default`` queue) come from Redis: waiting ones from the queue's sorted set
  (``ZRANGE``, bounded), running ones from the workers' heartbeats, finished ones from a capped
  list each worker appends to (:func:`record_finished`).
- Workers come from their own heartbeats (:mod:`pdfqa.workers`).

Nothing here scans keys (no ``KEYS``, no ``SCAN``): every read names its keys.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

import msgspec
from arq.jobs import Job

from pdfqa import lifecycle, queue, workers
from pdfqa.errors import Conflict, NotFound
from pdfqa.queue import QUEUE_KINDS, QueueKind, deserialize
from pdfqa.resources import Resources
from pdfqa.store import uploads

__all__ = [
    "ABORTED",
    "JobView",
    "JobsOverview",
    "QueueView",
    "abort",
    "overview",
    "record_finished",
    "retry",
]

log = logging.getLogger(__name__)

JobState = Literal["queued", "in_progress", "complete", "failed"]
RECENT_KEEP = 200
"""Finished short jobs each queue's list keeps."""
ABORTED = "Stopped by an administrator."
_UPLOAD_STATE: dict[str, JobState] = {
    "queued": "queued",
    "processing": "in_progress",
    "ready": "complete",
    "failed": "failed",
}


class JobView(msgspec.Struct, frozen=True):
    id: str
    queue: QueueKind
    function: str
    state: JobState
    tries: int
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    upload_id: str | None = None
    upload_name: str | None = None
    owner: str | None = None
    pages_done: int | None = None
    pages_total: int | None = None
    redis: str | None = None
    """What Redis says of an unfinished ingestion job: running, queued, finished or missing."""


class QueueView(msgspec.Struct, frozen=True):
    queue: QueueKind
    name: str
    """The arq queue's Redis key."""
    waiting: int
    """Jobs in the queue's sorted set (not yet taken by a worker)."""
    queued: int
    in_progress: int
    complete: int
    failed: int


class JobsOverview(msgspec.Struct, frozen=True):
    queues: list[QueueView]
    jobs: list[JobView]


def _recent_key(res: Resources, kind: QueueKind) -> str:
    return f"{res.queues.prefix}:{res.queues.deployment}:recent:{kind}"


def _counts_key(res: Resources, kind: QueueKind) -> str:
    return f"{res.queues.prefix}:{res.queues.deployment}:job-counts:{kind}"


def _ts(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


async def record_finished(
    res: Resources,
    kind: QueueKind,
    *,
    job_id: str,
    function: str,
    outcome: str,
    tries: int,
    enqueued_at: float | None,
    started_at: float,
    error: str | None,
    keep: bool = True,
) -> None:
    """A worker notes a finished job: counted per outcome; kept in the queue's recent list."""
    state: JobState = "complete" if outcome == "complete" else "failed"
    view = JobView(
        id=job_id,
        queue=kind,
        function=function,
        state=state,
        tries=tries,
        enqueued_at=_ts(enqueued_at),
        started_at=_ts(started_at),
        finished_at=_ts(time.time()),
        error=error,
    )
    async with res.redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(_counts_key(res, kind), outcome, 1)
        if keep:
            pipe.lpush(_recent_key(res, kind), msgspec.json.encode(view))
            pipe.ltrim(_recent_key(res, kind), 0, RECENT_KEEP - 1)
        await pipe.execute()


async def overview(res: Resources, *, limit: int = 100) -> JobsOverview:
    """Every queue's counts and its latest jobs (at most ``limit`` of each state group)."""
    redis = res.redis
    names = {k: res.queues.name(k) for k in QUEUE_KINDS}
    async with redis.pipeline(transaction=False) as pipe:
        for kind in QUEUE_KINDS:
            pipe.zcard(names[kind])
            pipe.hgetall(_counts_key(res, kind))
            pipe.lrange(_recent_key(res, kind), 0, limit - 1)
            pipe.zrange(names[kind], 0, limit - 1)
        replies = await pipe.execute()
    beats = await workers.read(redis, res.queues)
    async with res.db.acquire() as conn:
        counts = await uploads.status_counts(conn)
        unfinished = await uploads.recent_jobs(conn, ["queued", "processing"], limit)
        finished = await uploads.recent_jobs(conn, ["ready", "failed"], limit)
    views: list[JobView] = []
    queue_views: list[QueueView] = []
    for i, kind in enumerate(QUEUE_KINDS):
        waiting, outcome_counts, recent, queued_ids = replies[4 * i : 4 * i + 4]
        running = [j for b in beats if b.queue == kind for j in b.running]
        if kind == "ingest":
            queue_views.append(
                QueueView(
                    queue=kind,
                    name=names[kind],
                    waiting=int(waiting),
                    queued=counts["queued"],
                    in_progress=counts["processing"],
                    complete=counts["ready"],
                    failed=counts["failed"],
                )
            )
            continue
        outcomes = {k.decode(): int(v) for k, v in outcome_counts.items()}
        queue_views.append(
            QueueView(
                queue=kind,
                name=names[kind],
                waiting=int(waiting),
                queued=int(waiting),
                in_progress=len(running),
                complete=outcomes.get("complete", 0),
                failed=sum(v for k, v in outcomes.items() if k != "complete"),
            )
        )
        for job_id in [*running, *(j.decode() for j in queued_ids)]:
            info = await Job(
                job_id, redis, _queue_name=names[kind], _deserializer=deserialize
            ).info()
            if info is None:
                continue
            views.append(
                JobView(
                    id=job_id,
                    queue=kind,
                    function=info.function,
                    state="in_progress" if job_id in running else "queued",
                    tries=int(getattr(info, "job_try", None) or 0),
                    enqueued_at=info.enqueue_time,
                )
            )
        views.extend(msgspec.json.decode(r, type=JobView) for r in recent)
    views.extend(await _ingest_views(res, [*unfinished, *finished]))
    return JobsOverview(queues=queue_views, jobs=views)


async def _ingest_views(res: Resources, rows: list[uploads.JobRow]) -> list[JobView]:
    ingest_queue = res.queues.name("ingest")
    views = []
    for row in rows:
        u = row.upload
        redis_state = None
        if u.status in ("queued", "processing"):
            redis_state = await queue.liveness(res.redis, ingest_queue, u.job_id)
        views.append(
            JobView(
                id=u.job_id,
                queue="ingest",
                function=lifecycle.INGEST,
                state=_UPLOAD_STATE[u.status],
                tries=row.attempts,
                enqueued_at=u.created_at,
                started_at=u.started_at,
                finished_at=u.finished_at,
                error=u.error,
                upload_id=str(u.id),
                upload_name=u.name,
                owner=row.owner_email,
                pages_done=u.pages_done,
                pages_total=u.pages_total,
                redis=redis_state,
            )
        )
    return views


def _parse(res: Resources, job_id: str) -> tuple[str, str]:
    """(function, key) of one of this deployment's job ids; NotFound for any other."""
    deployment, _, rest = job_id.partition(":")
    function, _, key = rest.partition(":")
    if deployment != str(res.queues.deployment) or not function or not key:
        raise NotFound("No such job.")
    return function, key


def _upload_id(key: str) -> UUID:
    try:
        return UUID(key)
    except ValueError:
        raise NotFound("No such job.") from None


async def retry(res: Resources, job_id: str) -> JobView | None:
    """Run a failed job again: a failed ingestion starts over from its stored file; a failed
    short job is queued again. Conflict (409) when the job has not failed or its file is gone."""
    function, key = _parse(res, job_id)
    if function == lifecycle.INGEST:
        upload_id = _upload_id(key)
        async with res.db.acquire() as conn:
            upload = await uploads.get_any(conn, upload_id)
        if upload is None:
            raise NotFound("No such job.")
        if upload.status != "failed":
            raise Conflict(f"Only a failed ingestion can be retried (this one is {upload.status}).")
        if not await res.files.exists(str(upload_id)):
            raise Conflict(
                "The file of this upload is no longer stored; it must be uploaded again."
            )
        async with res.db.acquire() as conn, conn.transaction():
            if await uploads.requeue_failed(conn, upload_id) is None:
                raise Conflict("The upload changed meanwhile; reload and try again.")
        await queue.clear_job(res.redis, res.queues.name("ingest"), job_id)
        await lifecycle.enqueue_ingest(res, upload_id)
        log.info("admin retry of the ingestion of upload %s", upload_id)
        return None
    if function == lifecycle.PURGE:
        upload_id = _upload_id(key)
        default = res.queues.name("default")
        job = Job(job_id, res.redis, _queue_name=default, _deserializer=deserialize)
        finished = await job.result_info()
        if finished is None or finished.success:
            raise Conflict("Only a failed job can be retried.")
        await queue.clear_job(res.redis, default, job_id)
        await queue.enqueue(res.redis, default, function, job_id, str(upload_id))
        return None
    raise Conflict("This kind of job cannot be retried.")


async def abort(res: Resources, job_id: str) -> None:
    """Stop an ingestion that is queued or running: the upload fails with :data:`ABORTED` (its
    file kept like any failed upload's, so it can be retried) and the job is aborted. 409 when
    it has finished."""
    function, key = _parse(res, job_id)
    if function != lifecycle.INGEST:
        raise Conflict("Only ingestion jobs can be aborted.")
    upload_id = _upload_id(key)
    async with res.db.acquire() as conn:
        upload = await uploads.get_any(conn, upload_id)
    if upload is None:
        raise NotFound("No such job.")
    if upload.status not in ("queued", "processing"):
        raise Conflict(
            f"Only a queued or running ingestion can be aborted (this one is {upload.status})."
        )
    await lifecycle.fail(res, upload_id, ABORTED)
    job = Job(job_id, res.redis, _queue_name=res.queues.name("ingest"), _deserializer=deserialize)
    with contextlib.suppress(TimeoutError, Exception):
        # Waits until the worker has cancelled it (or for a queued job, until marked aborted).
        await job.abort(timeout=5)
    await lifecycle.remove_vectors(res, upload_id)  # whatever the job stored meanwhile
    log.info("admin abort of the ingestion of upload %s", upload_id)

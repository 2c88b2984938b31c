"""The arq worker's composition root.

``arq pdfqa.jobs.worker.WorkerSettings`` (``make worker``) reads the environment only when arq
asks for ``WorkerSettings``; the embedded mode builds the same settings with
:func:`worker_settings` and shares the API's open resources with the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from arq import func
from arq.connections import RedisSettings
from arq.worker import Worker, create_worker

from pdfqa.jobs.ingest import MAX_TRIES, ingest
from pdfqa.jobs.serde import deserialize, serialize
from pdfqa.resources import Resources, open_resources
from pdfqa.settings import Settings, load_settings
from pdfqa.store import uploads
from pdfqa.uploads import enqueue_ingest

__all__ = ["embedded_worker", "requeue_pending", "stop_worker", "worker_settings"]

log = logging.getLogger(__name__)

KEEP_RESULT_S = 7 * 24 * 3600
POLL_DELAY_S = 0.1
"""How often an idle worker looks for jobs (arq's default, 0.5 s, is felt on every upload)."""


def worker_settings(settings: Settings) -> dict[str, Any]:
    """Everything arq's ``Worker`` needs, as the dict form arq accepts for ``WorkerSettings``."""
    return {
        "functions": [
            func(ingest, name="ingest", max_tries=MAX_TRIES, timeout=settings.job_timeout_s + 60)
        ],
        "queue_name": settings.queue_name,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "ctx": {"settings": settings},
        "max_jobs": settings.worker_concurrency,
        "job_timeout": settings.job_timeout_s + 60,
        "keep_result": KEEP_RESULT_S,
        "poll_delay": POLL_DELAY_S,
        "allow_abort_jobs": True,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
    }


async def _startup(ctx: dict[str, Any]) -> None:
    if "resources" in ctx:  # embedded: the API process already opened them
        return
    stack = contextlib.AsyncExitStack()
    ctx["resources"] = await stack.enter_async_context(open_resources(ctx["settings"]))
    ctx["exit_stack"] = stack
    await requeue_pending(ctx["resources"])


async def _shutdown(ctx: dict[str, Any]) -> None:
    stack: contextlib.AsyncExitStack | None = ctx.pop("exit_stack", None)
    if stack is not None:
        await stack.aclose()


async def requeue_pending(res: Resources) -> int:
    """Enqueue every unfinished upload again (a no-op for those whose job still exists).

    Covers a Redis that lost its data or a crash between the database insert and the enqueue.
    """
    async with res.db.acquire() as conn:
        pending = await uploads.pending(conn)
    count = 0
    for upload in pending:
        job = await enqueue_ingest(res.redis, upload.id, res.settings.queue_name)
        count += job is not None
    if count:
        log.info("re-enqueued %d unfinished uploads", count)
    return count


def embedded_worker(res: Resources, **overrides: Any) -> Worker:
    """A worker inside another process (the API, a test), sharing its resources and Redis pool.

    Stop it with :func:`stop_worker`, not ``Worker.close`` (which would close the shared pool).
    """
    settings = dict(worker_settings(res.settings))
    settings["ctx"] = {"settings": res.settings, "resources": res}
    settings.update(overrides)
    worker: Worker = create_worker(settings, redis_pool=res.redis, handle_signals=False)
    return worker


async def stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Cancel the worker's running jobs (arq retries them later) and its polling loop."""
    worker.handle_sig(signal.SIGTERM)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if worker.tasks:
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    with contextlib.suppress(Exception):
        await worker.pool.delete(worker.health_check_key)


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        return worker_settings(load_settings(os.environ))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

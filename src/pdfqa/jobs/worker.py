"""The arq worker's composition root, its supervisor and the separate ``pdfqa worker`` process.

:func:`worker_settings` is everything arq's ``Worker`` needs; :class:`Supervisor` runs one over a
process's open resources (the API's, in the embedded mode; its own, in ``pdfqa worker``):

- it restarts the worker with backoff when Redis fails under it, and reports whether it is
  alive (``/ready``); a separate worker that cannot reach Redis for ``worker_give_up_s`` stops
  with :class:`WorkerGaveUp` (``pdfqa worker`` then exits with status 1, for its supervisor);
- it runs the reconciler (``lifecycle.reconcile``) at start and every ``reconcile_interval_s``;
- :meth:`Supervisor.stop` is the graceful shutdown: no new jobs, running ones stop at a page
  boundary and record their progress (arq queues them again), and whatever is still running
  after ``shutdown_timeout_s`` is cancelled (arq runs it again too).

:data:`WorkerSettings` serves the same queue under arq's own command,
``arq pdfqa.jobs.worker.WorkerSettings``: arq's signal handling and no supervisor (arq exits on a
lost Redis, for its supervisor to restart it), the same job, leases and reconciler. It is
resolved from the ``PDFQA_*`` environment when arq first reads it, never at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import ItemsView, Iterator, KeysView
from typing import Any

import redis.exceptions
from arq import func
from arq.worker import Worker, create_worker

from pdfqa import lifecycle
from pdfqa.jobs.ingest import ingest
from pdfqa.queue import QueueKind, Queues, deserialize, serialize
from pdfqa.resources import Resources, open_resources, redis_settings
from pdfqa.settings import Settings, load_settings

__all__ = [
    "Supervisor",
    "WorkerGaveUp",
    "WorkerSettings",
    "embedded_worker",
    "reconcile_forever",
    "run_worker",
    "worker_settings",
]

log = logging.getLogger(__name__)

KEEP_RESULT_S = 24 * 3600
POLL_DELAY_S = 0.1
"""How often an idle worker looks for jobs (arq's default, 0.5 s, is felt on every upload)."""
HEALTHY_RUN_S = 30.0
"""A worker that ran this long before failing had recovered: backoff and give-up start over."""
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class WorkerGaveUp(RuntimeError):
    """Redis stayed unreachable for ``worker_give_up_s``: the process should exit non-zero."""


def worker_settings(res: Resources) -> dict[str, Any]:
    """Everything arq's ``Worker`` needs, for this deployment's ingestion queue."""
    return {
        **_queue_settings(res.settings, res.queues, "ingest"),
        "ctx": {"settings": res.settings, "resources": res},
    }


def _queue_settings(settings: Settings, queues: Queues, kind: QueueKind) -> dict[str, Any]:
    """arq's settings for one queue of a deployment (without the resources: see the callers)."""
    # arq's own limit sits above ours: the job fails the upload itself on its last attempt.
    max_tries = settings.ingest_max_attempts + 1
    return {
        "functions": [
            func(
                ingest,
                name=lifecycle.INGEST,
                max_tries=max_tries,
                timeout=settings.job_timeout_s + 60,
            )
        ],
        "queue_name": queues.name(kind),
        "redis_settings": redis_settings(settings),
        "max_jobs": settings.worker_concurrency,
        "job_timeout": settings.job_timeout_s + 60,
        "keep_result": KEEP_RESULT_S,
        "poll_delay": POLL_DELAY_S,
        "allow_abort_jobs": True,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
    }


def embedded_worker(res: Resources, **overrides: Any) -> Worker:
    """An arq worker sharing ``res`` (and its Redis pool); tests run one with ``burst=True``.

    Its jobs stop at a page boundary once ``res.stopping`` is set.
    """
    settings = dict(worker_settings(res))
    settings["ctx"] = {**settings["ctx"], "stop": res.stopping}
    settings.update(overrides)
    worker: Worker = create_worker(settings, redis_pool=res.redis, handle_signals=False)
    return worker


class Supervisor:
    """Runs, restarts and stops an arq worker over open resources (see the module doc)."""

    def __init__(self, res: Resources, *, give_up_s: float | None = None, **overrides: Any) -> None:
        self.res = res
        self.give_up_s = give_up_s
        self.overrides = overrides
        self.alive = False
        """True while the worker's polling loop runs."""
        self.last_error: str | None = None
        self.restarts = 0
        self._stop = asyncio.Event()
        self._workers: list[Worker] = []
        self._current: Worker | None = None
        self._main: asyncio.Task[None] | None = None

    def liveness(self) -> str:
        """``ok`` or why the worker is not running (for ``/ready``)."""
        if self.alive:
            return "ok"
        return f"error: worker not running ({self.last_error or 'starting'})"

    async def run(self) -> None:
        """Run until :meth:`stop`; raises :class:`WorkerGaveUp` when Redis stays away too long."""
        reconciler = asyncio.create_task(self._reconcile_forever(), name="reconciler")
        failing_since: float | None = None
        delay = 1.0
        try:
            while not self._stop.is_set():
                worker = self._new_worker()
                started = time.monotonic()
                try:
                    self._main = asyncio.create_task(worker.main(), name="arq-worker")
                    self.alive = True
                    await self._main
                    if worker.burst:
                        return
                except asyncio.CancelledError:
                    if not self._stop.is_set():
                        raise
                    return
                except Exception as exc:  # a Redis error (or WatchError, ...): restart it
                    self.alive = False
                    self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                    now = time.monotonic()
                    if now - started > HEALTHY_RUN_S:  # it had recovered: a new outage
                        failing_since, delay = None, 1.0
                    failing_since = failing_since or now
                    if self.give_up_s is not None and now - failing_since > self.give_up_s:
                        raise WorkerGaveUp(
                            f"Redis unreachable for {now - failing_since:.0f} s"
                        ) from exc
                    log.error("worker stopped by %r; restarting in %.0f s", exc, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    delay = min(delay * 2, 30.0)
                    self.restarts += 1
                    continue
        finally:
            self.alive = False
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler

    async def stop(self) -> None:
        """Stop taking jobs; let running ones reach a page boundary; cancel what is left."""
        timeout = self.res.settings.shutdown_timeout_s
        self._stop.set()
        stop_jobs: asyncio.Event = self.res.stopping
        stop_jobs.set()
        for worker in self._workers:
            worker.allow_pick_jobs = False
        running = [t for w in self._workers for t in w.tasks.values() if not t.done()]
        if running:
            log.info(
                "waiting up to %.0f s for %d running job(s) to checkpoint", timeout, len(running)
            )
            _, still = await asyncio.wait(running, timeout=timeout)
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        if self._main is not None and not self._main.done():
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                await self._main
        for worker in self._workers:
            with contextlib.suppress(Exception):
                await worker.pool.delete(worker.health_check_key)

    def _new_worker(self) -> Worker:
        worker = embedded_worker(self.res, **self.overrides)
        self._workers = [w for w in self._workers if any(not t.done() for t in w.tasks.values())]
        self._workers.append(worker)
        self._current = worker
        return worker

    async def _reconcile_forever(self) -> None:
        await reconcile_forever(self.res)


async def reconcile_forever(res: Resources) -> None:
    """Run the reconciler at once and then every ``reconcile_interval_s``, until cancelled."""
    interval = res.settings.reconcile_interval_s
    while True:
        try:
            report = await lifecycle.reconcile(res)
            if report.requeued or report.failed:
                log.info(
                    "reconciler: %d re-queued, %d failed (of %d checked)",
                    report.requeued,
                    report.failed,
                    report.checked,
                )
        except Exception as exc:
            log.warning("reconciler: pass failed (%r); next in %.0f s", exc, interval)
        await asyncio.sleep(interval)


async def _run(settings: Settings, queue: QueueKind) -> int:
    loop = asyncio.get_running_loop()
    async with open_resources(settings) as res:
        supervisor = Supervisor(
            res, give_up_s=settings.worker_give_up_s, queue_name=res.queues.name(queue)
        )
        log.info("worker serving %s", res.queues.name(queue))
        stopping: asyncio.Task[None] | None = None

        def on_signal(sig: signal.Signals) -> None:
            nonlocal stopping
            log.info("%s: stopping the worker gracefully", sig.name)
            if stopping is None:
                stopping = asyncio.create_task(supervisor.stop())

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await supervisor.run()
        except WorkerGaveUp as exc:
            log.critical("worker gives up: %s", exc)
            return 1
        finally:
            if stopping is not None:
                await stopping
    return 0


def run_worker(settings: Settings, queue: QueueKind = "ingest") -> int:
    """``pdfqa worker [--queue KIND]``: run a supervised worker over one of this deployment's
    queues until SIGTERM (0) or until it gives up (1)."""
    try:
        return asyncio.run(_run(settings, queue))
    except REDIS_ERRORS as exc:  # Redis was not there at start (after arq's own retries)
        log.critical("worker cannot start: Redis unreachable: %r", exc)
        return 1


# --- the `arq` command --------------------------------------------------------------------------


async def _arq_startup(ctx: dict[str, Any]) -> None:
    """arq's ``on_startup``: open this process's resources and start the reconciler."""
    stack = contextlib.AsyncExitStack()
    res = await stack.enter_async_context(open_resources(ctx["settings"]))
    ctx.update(resources=res, stop=res.stopping, exit_stack=stack)
    ctx["reconciler"] = asyncio.create_task(reconcile_forever(res), name="reconciler")
    log.info("arq worker serving %s", res.queues.name("ingest"))


async def _arq_shutdown(ctx: dict[str, Any]) -> None:
    """arq's ``on_shutdown``: stop the reconciler, close the resources."""
    reconciler: asyncio.Task[None] | None = ctx.get("reconciler")
    if reconciler is not None:
        reconciler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reconciler
    stack: contextlib.AsyncExitStack | None = ctx.get("exit_stack")
    if stack is not None:
        await stack.aclose()


async def _deployment(settings: Settings) -> Queues:
    """This deployment's queue names (creating the database and its id if needed)."""
    from pdfqa.store import db
    from pdfqa.store.deployment import deployment_id

    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
            return Queues(prefix=settings.queue_name, deployment=await deployment_id(conn))
    finally:
        await pool.close()


def arq_command_settings(settings: Settings, kind: QueueKind = "ingest") -> dict[str, Any]:
    """What ``arq pdfqa.jobs.worker.WorkerSettings`` runs: one queue, resources opened by arq's
    ``on_startup``. Reads the deployment's id from PostgreSQL (on a loop of its own: arq has
    not started one yet)."""
    pdfqa_log = logging.getLogger("pdfqa")
    if not pdfqa_log.handlers:  # arq's command configures its own loggers only
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        pdfqa_log.addHandler(handler)
        pdfqa_log.setLevel(settings.log_level.upper())
    loop = asyncio.new_event_loop()
    try:
        queues = loop.run_until_complete(_deployment(settings))
    finally:
        loop.close()
    return {
        **_queue_settings(settings, queues, kind),
        "ctx": {"settings": settings},
        "on_startup": _arq_startup,
        "on_shutdown": _arq_shutdown,
    }


class _LazyWorkerSettings(dict[str, Any]):
    """arq's ``WorkerSettings`` as a mapping (arq accepts a dict), filled from the environment
    the first time arq reads it, so importing this module does nothing."""

    def _resolved(self) -> _LazyWorkerSettings:
        if not super().__len__():
            self.update(arq_command_settings(load_settings(os.environ)))
        return self

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        return super(_LazyWorkerSettings, self._resolved()).items()

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return super(_LazyWorkerSettings, self._resolved()).keys()

    def __getitem__(self, key: str) -> Any:
        return super(_LazyWorkerSettings, self._resolved()).__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return super(_LazyWorkerSettings, self._resolved()).get(key, default)

    def __iter__(self) -> Iterator[str]:
        return super(_LazyWorkerSettings, self._resolved()).__iter__()

    def __len__(self) -> int:
        return super(_LazyWorkerSettings, self._resolved()).__len__()

    def __contains__(self, key: object) -> bool:
        return super(_LazyWorkerSettings, self._resolved()).__contains__(key)


WorkerSettings: dict[str, Any] = _LazyWorkerSettings()
"""``arq pdfqa.jobs.worker.WorkerSettings``: this deployment's ingestion queue (see module doc)."""

"""The arq workers' composition root, their supervisor and the separate ``pdfqa worker`` process.

:func:`worker_settings` is everything arq's ``Worker`` needs for one queue (``ingest``: the
ingestion job; ``ocr``: the OCR of scanned pages; ``default``: the short jobs); :class:`Supervisor`
runs one worker per queue it serves over a process's open resources (the API's, in the embedded
mode, which serves every queue; its own, in ``pdfqa worker [--queue NAME ...]``):

- it restarts each worker with backoff when Redis fails under it, and reports whether they
  are alive (``/ready``); a separate worker that cannot reach Redis for ``worker_give_up_s`` stops
  with :class:`WorkerGaveUp` (``pdfqa worker`` then exits with status 1, for its supervisor);
- serving ``default``, it queues the reconciler's job (``lifecycle.reconcile``) at start and
  every ``reconcile_interval_s`` (one per interval for the whole deployment);
- each of its workers writes its own heartbeat (``pdfqa.workers``) for the jobs dashboard;
- :meth:`Supervisor.stop` is the graceful shutdown: no new jobs, running ones stop at a page
  boundary and record their progress (arq queues them again), and whatever is still running
  after ``shutdown_timeout_s`` is cancelled (arq runs it again too).

:data:`WorkerSettings` (the ``ingest`` queue), :data:`DefaultWorkerSettings` and
:data:`OcrWorkerSettings` serve the same queues under arq's own command, ``arq
pdfqa.jobs.worker.WorkerSettings``: arq's signal handling and no supervisor (arq exits on a lost
Redis, for its supervisor to restart it), the same jobs, leases and reconciler. They are resolved
from the ``PDFQA_*`` environment when arq first reads them, never at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, ItemsView, Iterator, KeysView, Sequence
from datetime import datetime
from typing import Any

import redis.exceptions
import structlog
from arq import Retry, func
from arq.worker import Worker, create_worker
from opentelemetry.trace import SpanKind

from pdfqa import dashboard, lifecycle, metrics, queue, tracing, workers
from pdfqa.jobs.ingest import ingest, ocr
from pdfqa.jobs.short import purge_upload, reconcile
from pdfqa.queue import QUEUE_KINDS, QueueKind, Queues, deserialize, serialize
from pdfqa.resources import Resources, open_resources, redis_settings
from pdfqa.settings import Settings, load_settings

__all__ = [
    "DefaultWorkerSettings",
    "OcrWorkerSettings",
    "Supervisor",
    "WorkerGaveUp",
    "WorkerSettings",
    "embedded_worker",
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


SHORT_JOB_TIMEOUT_S = 300
RECONCILE_KEEP_S = 300
"""The reconciler's results are kept briefly: one job per interval would pile up otherwise."""


def instrumented(fn: Callable[..., Awaitable[Any]], name: str, kind: QueueKind) -> Any:
    """A job function with its metrics (runs, durations, outcomes), its span (a child of the
    enqueueing request's, when the job carries a trace context), its log context and its
    record for the jobs dashboard."""

    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        parent = tracing.extract(kwargs.pop(tracing.TRACE_KWARG, None))
        job_id = str(ctx.get("job_id", ""))
        upload_id = str(args[0]) if args and name != lifecycle.RECONCILE else None
        outcome = "complete"
        started = time.perf_counter()
        with (
            tracing.tracer.start_as_current_span(
                f"job {name}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "job.id": job_id,
                    "job.try": int(ctx.get("job_try", 1)),
                    **({"upload.id": upload_id} if upload_id else {}),
                },
            ),
            structlog.contextvars.bound_contextvars(
                job_id=job_id, **({"upload_id": upload_id} if upload_id else {})
            ),
        ):
            try:
                return await fn(ctx, *args, **kwargs)
            except Retry:
                outcome = "retry"
                raise
            except asyncio.CancelledError:
                outcome = "aborted"
                raise
            except BaseException:
                outcome = "failed"
                raise
            finally:
                took = time.perf_counter() - started
                metrics.JOBS.labels(name, outcome).inc()
                metrics.JOB_SECONDS.labels(name, outcome).observe(took)
                error = sys.exc_info()[1]
                with contextlib.suppress(Exception):
                    await dashboard.record_finished(
                        ctx["resources"],
                        kind,
                        job_id=job_id,
                        function=name,
                        outcome=outcome,
                        tries=int(ctx.get("job_try", 1)),
                        enqueued_at=_enqueued(ctx),
                        started_at=time.time() - took,
                        error=None if error is None else repr(error)[:300],
                        # Ingestion jobs are listed from their uploads; the reconciler's many
                        # runs only counted.
                        keep=kind != "ingest" and name != lifecycle.RECONCILE,
                    )

    run.__name__ = run.__qualname__ = name
    return run


def _enqueued(ctx: dict[str, Any]) -> float | None:
    at = ctx.get("enqueue_time")
    return at.timestamp() if isinstance(at, datetime) else None


def _job_timeout(settings: Settings, kind: QueueKind) -> float:
    if kind == "ocr":
        return settings.ocr_job_timeout_s + 60
    if kind == "ingest":
        return settings.job_timeout_s + 60
    return SHORT_JOB_TIMEOUT_S


def _functions(settings: Settings, kind: QueueKind) -> list[Any]:
    if kind in ("ingest", "ocr"):
        job, name = (ingest, lifecycle.INGEST) if kind == "ingest" else (ocr, lifecycle.OCR)
        # arq's own limit sits above ours: the job fails the upload itself on its last attempt.
        return [
            func(
                instrumented(job, name, kind),
                name=name,
                max_tries=settings.ingest_max_attempts + 1,
                timeout=_job_timeout(settings, kind),
            )
        ]
    return [
        func(
            instrumented(purge_upload, lifecycle.PURGE, kind),
            name=lifecycle.PURGE,
            max_tries=5,
            timeout=SHORT_JOB_TIMEOUT_S,
        ),
        func(
            instrumented(reconcile, lifecycle.RECONCILE, kind),
            name=lifecycle.RECONCILE,
            max_tries=1,
            timeout=SHORT_JOB_TIMEOUT_S,
            keep_result=RECONCILE_KEEP_S,
        ),
    ]


def worker_settings(res: Resources, kind: QueueKind = "ingest") -> dict[str, Any]:
    """Everything arq's ``Worker`` needs, for one of this deployment's queues."""
    return {
        **_queue_settings(res.settings, res.queues, kind),
        "ctx": {"settings": res.settings, "resources": res},
    }


def _queue_settings(settings: Settings, queues: Queues, kind: QueueKind) -> dict[str, Any]:
    """arq's settings for one queue of a deployment (without the resources: see the callers)."""
    queue_name = queues.name(kind)
    return {
        "functions": _functions(settings, kind),
        "queue_name": queue_name,
        # arq's health key is one per queue, overwritten by each worker: one of its own instead
        # (the dashboard reads pdfqa.workers' heartbeats, not this).
        "health_check_key": f"{queue_name}:health-check:{uuid.uuid4().hex[:8]}",
        "redis_settings": redis_settings(settings),
        "max_jobs": {"ingest": settings.worker_concurrency, "ocr": settings.ocr_concurrency}.get(
            kind, 10
        ),
        "job_timeout": _job_timeout(settings, kind),
        "keep_result": KEEP_RESULT_S,
        "poll_delay": POLL_DELAY_S,
        "allow_abort_jobs": True,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
    }


def embedded_worker(res: Resources, kind: QueueKind = "ingest", **overrides: Any) -> Worker:
    """An arq worker of one queue sharing ``res`` (and its Redis pool); tests run one with
    ``burst=True``.

    Its jobs stop at a page boundary once ``res.stopping`` is set.
    """
    settings = dict(worker_settings(res, kind))
    settings["ctx"] = {**settings["ctx"], "stop": res.stopping}
    settings.update(overrides)
    worker: Worker = create_worker(settings, redis_pool=res.redis, handle_signals=False)
    return worker


class Supervisor:
    """Runs, restarts and stops one arq worker per queue over open resources (module doc)."""

    def __init__(
        self,
        res: Resources,
        *,
        kinds: Sequence[QueueKind] = QUEUE_KINDS,
        give_up_s: float | None = None,
        **overrides: Any,
    ) -> None:
        self.res = res
        self.kinds = tuple(dict.fromkeys(kinds))
        self.give_up_s = give_up_s
        self.overrides = overrides
        self._alive: dict[QueueKind, bool] = dict.fromkeys(self.kinds, False)
        self.last_error: str | None = None
        self.restarts = 0
        self._stop = asyncio.Event()
        self._workers: list[Worker] = []
        self._mains: dict[QueueKind, asyncio.Task[None]] = {}
        self._current: dict[QueueKind, tuple[str, Worker]] = {}
        self._started = time.time()

    @property
    def alive(self) -> bool:
        """True while the polling loop of every queue's worker runs."""
        return all(self._alive.values())

    def liveness(self) -> str:
        """``ok`` or why a worker is not running (for ``/ready``)."""
        if self.alive:
            return "ok"
        down = [k for k, up in self._alive.items() if not up]
        return f"error: worker not running ({', '.join(down)}: {self.last_error or 'starting'})"

    async def run(self) -> None:
        """Run until :meth:`stop`; raises :class:`WorkerGaveUp` when Redis stays away too long."""
        helpers = [asyncio.create_task(self._heartbeats(), name="heartbeats")]
        if "default" in self.kinds:
            helpers.append(asyncio.create_task(self._reconcile_forever(), name="reconciler"))
        serving = [asyncio.create_task(self._serve(k), name=f"serve:{k}") for k in self.kinds]
        try:
            # The first to raise (WorkerGaveUp) ends them all; otherwise all end at stop().
            done, _ = await asyncio.wait(serving, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in [*serving, *helpers]:
                task.cancel()
            await asyncio.gather(*serving, *helpers, return_exceptions=True)
            for worker_id, _ in self._current.values():
                with contextlib.suppress(Exception):
                    await workers.forget(self.res.redis, self.res.queues, worker_id)

    async def _serve(self, kind: QueueKind) -> None:
        failing_since: float | None = None
        delay = 1.0
        try:
            while not self._stop.is_set():
                worker = self._new_worker(kind)
                started = time.monotonic()
                try:
                    main = asyncio.create_task(worker.main(), name=f"arq-worker:{kind}")
                    self._mains[kind] = main
                    self._alive[kind] = True
                    await main
                    if worker.burst:
                        return
                except asyncio.CancelledError:
                    if not self._stop.is_set():
                        raise
                    return
                except Exception as exc:  # a Redis error (or WatchError, ...): restart it
                    self._alive[kind] = False
                    self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                    now = time.monotonic()
                    if now - started > HEALTHY_RUN_S:  # it had recovered: a new outage
                        failing_since, delay = None, 1.0
                    failing_since = failing_since or now
                    if self.give_up_s is not None and now - failing_since > self.give_up_s:
                        raise WorkerGaveUp(
                            f"Redis unreachable for {now - failing_since:.0f} s"
                        ) from exc
                    log.error("%s worker stopped by %r; restarting in %.0f s", kind, exc, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    delay = min(delay * 2, 30.0)
                    self.restarts += 1
                    continue
        finally:
            self._alive[kind] = False

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
        for main in self._mains.values():
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                    await main
        for worker in self._workers:
            with contextlib.suppress(Exception):
                await worker.pool.delete(worker.health_check_key)
        for worker_id, _ in self._current.values():
            with contextlib.suppress(Exception):
                await workers.forget(self.res.redis, self.res.queues, worker_id)

    def _new_worker(self, kind: QueueKind) -> Worker:
        worker = embedded_worker(self.res, kind, **self.overrides)
        self._workers = [w for w in self._workers if any(not t.done() for t in w.tasks.values())]
        self._workers.append(worker)
        previous = self._current.get(kind)
        self._current[kind] = (previous[0] if previous else workers.new_worker_id(kind), worker)
        return worker

    async def _heartbeats(self) -> None:
        """Each worker's own health record, every ``workers.HEARTBEAT_S``."""
        while True:
            for kind, (worker_id, worker) in list(self._current.items()):
                if not self._alive.get(kind):
                    continue
                record = workers.Heartbeat(
                    worker_id=worker_id,
                    queue=kind,
                    host=worker_id.split(":", 1)[0],
                    pid=os.getpid(),
                    concurrency=worker.max_jobs,
                    started_at=self._started,
                    beat_at=time.time(),
                    running=[j for j, t in worker.tasks.items() if not t.done()],
                    jobs_complete=worker.jobs_complete,
                    jobs_failed=worker.jobs_failed,
                    jobs_retried=worker.jobs_retried,
                )
                try:
                    await workers.beat(self.res.redis, self.res.queues, record)
                except Exception as exc:  # Redis away: the worker's own loop notices too
                    log.debug("heartbeat of %s failed: %r", worker_id, exc)
            await asyncio.sleep(workers.HEARTBEAT_S)

    async def _reconcile_forever(self) -> None:
        await queue_reconciler_forever(self.res)


async def queue_reconciler_forever(res: Resources) -> None:
    """Queue the reconciler's job now and once per interval (one per interval across the
    deployment: its job id names the interval), until cancelled."""
    interval = res.settings.reconcile_interval_s
    key = f"start-{uuid.uuid4().hex[:8]}"
    while True:
        try:
            await queue.enqueue(
                res.redis,
                res.queues.name("default"),
                lifecycle.RECONCILE,
                res.queues.job_id(lifecycle.RECONCILE, key),
            )
        except Exception as exc:
            log.warning("reconciler: could not queue a pass (%r); next in %.0f s", exc, interval)
        await asyncio.sleep(interval)
        key = str(int(time.time() // interval))


async def _run(settings: Settings, kinds: Sequence[QueueKind]) -> int:
    loop = asyncio.get_running_loop()
    async with open_resources(settings) as res:
        supervisor = Supervisor(res, kinds=kinds, give_up_s=settings.worker_give_up_s)
        log.info("worker serving queue(s): %s", ", ".join(res.queues.name(k) for k in kinds))
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


def run_worker(settings: Settings, kinds: Sequence[QueueKind] = QUEUE_KINDS) -> int:
    """``pdfqa worker``: run a supervised worker per queue until SIGTERM (0) or until it gives
    up (1)."""
    try:
        return asyncio.run(_run(settings, kinds))
    except REDIS_ERRORS as exc:  # Redis was not there at start (after arq's own retries)
        log.critical("worker cannot start: Redis unreachable: %r", exc)
        return 1


# --- the `arq` command --------------------------------------------------------------------------


async def _arq_startup(ctx: dict[str, Any]) -> None:
    """arq's ``on_startup``: open this process's resources (and, serving ``default``, queue the
    reconciler's passes)."""
    from pdfqa.tracing import configure as configure_tracing

    settings: Settings = ctx["settings"]
    configure_tracing(settings, service="pdfqa-worker")
    stack = contextlib.AsyncExitStack()
    res = await stack.enter_async_context(open_resources(settings))
    ctx.update(resources=res, stop=res.stopping, exit_stack=stack)
    if ctx["queue_kind"] == "default":
        ctx["reconciler"] = asyncio.create_task(queue_reconciler_forever(res), name="reconciler")
    log.info("arq worker serving %s", res.queues.name(ctx["queue_kind"]))


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
    from pdfqa import logs

    logs.configure(settings)  # arq's command configures its own loggers only
    loop = asyncio.new_event_loop()
    try:
        queues = loop.run_until_complete(_deployment(settings))
    finally:
        loop.close()
    return {
        **_queue_settings(settings, queues, kind),
        "ctx": {"settings": settings, "queue_kind": kind},
        "on_startup": _arq_startup,
        "on_shutdown": _arq_shutdown,
    }


class _LazyWorkerSettings(dict[str, Any]):
    """arq's ``WorkerSettings`` as a mapping (arq accepts a dict), filled from the environment
    the first time arq reads it, so importing this module does nothing."""

    def __init__(self, kind: QueueKind) -> None:
        super().__init__()
        self._kind: QueueKind = kind

    def _resolved(self) -> _LazyWorkerSettings:
        if not super().__len__():
            self.update(arq_command_settings(load_settings(os.environ), self._kind))
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


WorkerSettings: dict[str, Any] = _LazyWorkerSettings("ingest")
"""``arq pdfqa.jobs.worker.WorkerSettings``: this deployment's ``ingest`` queue."""
DefaultWorkerSettings: dict[str, Any] = _LazyWorkerSettings("default")
"""``arq pdfqa.jobs.worker.DefaultWorkerSettings``: this deployment's ``default`` queue."""
OcrWorkerSettings: dict[str, Any] = _LazyWorkerSettings("ocr")
"""``arq pdfqa.jobs.worker.OcrWorkerSettings``: this deployment's ``ocr`` queue."""

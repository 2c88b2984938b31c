"""The arq workers' composition root, their supervisor and the separate ``pdfqa worker`` process.

:func:`worker_settings` is everything arq's ``Worker`` needs for one kind of queue (``ingest``,
``ocr``); :class:`Supervisor` runs one worker per kind over a process's open resources (the
API's, in the embedded mode; its own, in ``pdfqa worker [--queue KIND]``):

- it restarts each worker with backoff when Redis fails under it, and reports whether they
  are alive (``/ready``); a separate worker that cannot reach Redis for ``worker_give_up_s`` stops
  with :class:`WorkerGaveUp` (``pdfqa worker`` then exits with status 1, for its supervisor);
- it runs the reconciler (``lifecycle.reconcile``) at start and every ``reconcile_interval_s``;
- :meth:`Supervisor.stop` is the graceful shutdown: no new jobs, running ones stop at a page
  boundary and record their progress (arq queues them again), and whatever is still running
  after ``shutdown_timeout_s`` is cancelled (arq runs it again too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import redis.exceptions
from arq import func
from arq.worker import Worker, create_worker

from pdfqa import lifecycle
from pdfqa.jobs.ingest import ingest, ocr
from pdfqa.queue import QUEUE_KINDS, QueueKind, deserialize, serialize
from pdfqa.resources import Resources, open_resources, redis_settings
from pdfqa.settings import Settings

__all__ = ["Supervisor", "WorkerGaveUp", "embedded_worker", "run_worker", "worker_settings"]

log = logging.getLogger(__name__)

KEEP_RESULT_S = 24 * 3600
POLL_DELAY_S = 0.1
"""How often an idle worker looks for jobs (arq's default, 0.5 s, is felt on every upload)."""
HEALTHY_RUN_S = 30.0
"""A worker that ran this long before failing had recovered: backoff and give-up start over."""
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class WorkerGaveUp(RuntimeError):
    """Redis stayed unreachable for ``worker_give_up_s``: the process should exit non-zero."""


def worker_settings(res: Resources, kind: QueueKind = "ingest") -> dict[str, Any]:
    """Everything arq's ``Worker`` needs, for this deployment's queue of one kind."""
    settings = res.settings
    # arq's own limit sits above ours: the job fails the upload itself on its last attempt.
    max_tries = settings.ingest_max_attempts + 1
    if kind == "ocr":
        job, name, timeout = ocr, lifecycle.OCR, settings.ocr_job_timeout_s + 60
        max_jobs = settings.ocr_concurrency
    else:
        job, name, timeout = ingest, lifecycle.INGEST, settings.job_timeout_s + 60
        max_jobs = settings.worker_concurrency
    return {
        "functions": [func(job, name=name, max_tries=max_tries, timeout=timeout)],
        "queue_name": res.queues.name(kind),
        "redis_settings": redis_settings(settings),
        "ctx": {"settings": settings, "resources": res},
        "max_jobs": max_jobs,
        "job_timeout": timeout,
        "keep_result": KEEP_RESULT_S,
        "poll_delay": POLL_DELAY_S,
        "allow_abort_jobs": True,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
    }


def embedded_worker(res: Resources, kind: QueueKind = "ingest", **overrides: Any) -> Worker:
    """An arq worker sharing ``res`` (and its Redis pool); tests run one with ``burst=True``.

    Its jobs stop at a page boundary once ``res.stopping`` is set.
    """
    settings = dict(worker_settings(res, kind))
    settings["ctx"] = {**settings["ctx"], "stop": res.stopping}
    settings.update(overrides)
    worker: Worker = create_worker(settings, redis_pool=res.redis, handle_signals=False)
    return worker


class Supervisor:
    """Runs, restarts and stops one arq worker per queue kind over open resources (see the
    module doc); ``kinds`` defaults to every kind."""

    def __init__(
        self,
        res: Resources,
        *,
        give_up_s: float | None = None,
        kinds: tuple[QueueKind, ...] = QUEUE_KINDS,
        **overrides: Any,
    ) -> None:
        self.res = res
        self.give_up_s = give_up_s
        self.kinds = kinds
        self.overrides = overrides
        self.restarts = 0
        self._alive: dict[QueueKind, bool] = dict.fromkeys(kinds, False)
        self._errors: dict[QueueKind, str] = {}
        self._stop = asyncio.Event()
        self._workers: list[Worker] = []
        self._mains: dict[QueueKind, asyncio.Task[None]] = {}

    @property
    def alive(self) -> bool:
        """True while every worker's polling loop runs."""
        return all(self._alive.values())

    @property
    def last_error(self) -> str | None:
        return "; ".join(f"{k}: {e}" for k, e in self._errors.items()) or None

    def liveness(self) -> str:
        """``ok`` or why a worker is not running (for ``/ready``)."""
        if self.alive:
            return "ok"
        down = [k for k, up in self._alive.items() if not up]
        return f"error: worker not running ({', '.join(down)}: {self.last_error or 'starting'})"

    async def run(self) -> None:
        """Run until :meth:`stop`; raises :class:`WorkerGaveUp` when Redis stays away too long."""
        reconciler = asyncio.create_task(self._reconcile_forever(), name="reconciler")
        try:
            async with asyncio.TaskGroup() as group:
                for kind in self.kinds:
                    group.create_task(self._run_kind(kind), name=f"arq-supervisor:{kind}")
        except BaseExceptionGroup as group_error:
            gave_up = group_error.subgroup(WorkerGaveUp)
            if gave_up is not None:
                raise gave_up.exceptions[0] from None
            raise
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler

    async def _run_kind(self, kind: QueueKind) -> None:
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
                    self._errors.pop(kind, None)
                    await main
                    if worker.burst:
                        return
                except asyncio.CancelledError:
                    if not self._stop.is_set():
                        raise
                    return
                except Exception as exc:  # a Redis error (or WatchError, ...): restart it
                    self._alive[kind] = False
                    self._errors[kind] = f"{type(exc).__name__}: {exc}"[:200]
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

    def _new_worker(self, kind: QueueKind) -> Worker:
        worker = embedded_worker(self.res, kind, **self.overrides)
        self._workers = [w for w in self._workers if any(not t.done() for t in w.tasks.values())]
        self._workers.append(worker)
        return worker

    async def _reconcile_forever(self) -> None:
        interval = self.res.settings.reconcile_interval_s
        while True:
            try:
                report = await lifecycle.reconcile(self.res)
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


async def _run(settings: Settings, kinds: tuple[QueueKind, ...]) -> int:
    loop = asyncio.get_running_loop()
    async with open_resources(settings) as res:
        supervisor = Supervisor(res, give_up_s=settings.worker_give_up_s, kinds=kinds)
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


def run_worker(settings: Settings, kinds: tuple[QueueKind, ...] = QUEUE_KINDS) -> int:
    """``pdfqa worker``: run supervised workers (one per kind) until SIGTERM (0) or until they
    give up (1)."""
    try:
        return asyncio.run(_run(settings, kinds))
    except REDIS_ERRORS as exc:  # Redis was not there at start (after arq's own retries)
        log.critical("worker cannot start: Redis unreachable: %r", exc)
        return 1

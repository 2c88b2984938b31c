"""The job queue, low level: codec, queue names, job ids, enqueueing, job liveness and leases.

Everything that enqueues (the upload service, the reconciler) and every worker goes through this
module; nothing above it builds an arq key or a job id by hand.

**Scoping.** Two deployments may share one Redis. Queue names and job ids therefore carry the
deployment's id (a UUID kept in the deployment's own database, see ``store.deployment``), so
neither takes the other's work: ``<prefix>:<deployment>:<kind>`` and
``<deployment>:<function>:<upload id>``. A queue name is a function of (deployment, kind):
``ingest`` carries the long ingestion jobs, ``ocr`` the OCR of scanned pages (slow: a scan never
delays the text PDFs behind it), ``default`` the short ones (an upload's clean-up after a delete,
the reconciler), so a burst of 1,000-page PDFs never delays them. Adding a kind is one word in
:data:`QueueKind`.

**Leases.** arq marks a running job with an in-progress key that lives as long as the job
timeout (an hour), so a dead worker's job would wait that long. A running job renews that key
for :data:`LEASE_S` at a time instead (:func:`hold_lease`); when its worker dies, the key
expires within :data:`LEASE_S` and another worker's poll takes the job again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, get_args
from uuid import UUID

import msgspec
from arq.connections import ArqRedis
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import Job
from opentelemetry.trace import SpanKind

from pdfqa import tracing

__all__ = [
    "LEASE_S",
    "QUEUE_KINDS",
    "JobLiveness",
    "QueueKind",
    "Queues",
    "clear_job",
    "deserialize",
    "enqueue",
    "hold_lease",
    "liveness",
    "serialize",
]

log = logging.getLogger(__name__)

QueueKind = Literal["ingest", "default", "ocr"]
"""The kinds of queue a deployment has: long ingestion jobs, short ones, and OCR."""
QUEUE_KINDS: tuple[QueueKind, ...] = get_args(QueueKind)
"""Every kind, in the order ``pdfqa serve``'s embedded worker starts them."""
JobLiveness = Literal["running", "queued", "finished", "missing"]

LEASE_S = 20.0
"""How long a running job's in-progress mark lives without being renewed."""


# --- codec: msgpack through msgspec, never pickle ---------------------------------------------


def _encode_extra(obj: Any) -> Any:
    if isinstance(obj, BaseException):
        return repr(obj)  # a failed job's result: stored as its repr for the jobs API
    raise NotImplementedError(f"cannot serialize {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_encode_extra)
_decoder = msgspec.msgpack.Decoder()


def serialize(obj: dict[str, Any]) -> bytes:
    """arq's job serializer."""
    return _encoder.encode(obj)


def deserialize(data: bytes) -> dict[str, Any]:
    """arq's job deserializer."""
    result: dict[str, Any] = _decoder.decode(data)
    return result


# --- names -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queues:
    """The queue names and job ids of one deployment."""

    prefix: str
    """``PDFQA_QUEUE_NAME``: the common start of this deployment's queue names."""
    deployment: UUID
    """The deployment's id, kept in its own database."""

    def name(self, kind: QueueKind) -> str:
        """The arq queue of one kind of job in this deployment."""
        return f"{self.prefix}:{self.deployment}:{kind}"

    def job_id(self, function: str, key: UUID | str) -> str:
        """The deterministic job id of ``function`` for one upload (or another ``key``):
        enqueueing twice is a no-op."""
        return f"{self.deployment}:{function}:{key}"

    def kind(self, name: str) -> QueueKind:
        """The kind of one of this deployment's queue names; ValueError for any other name."""
        for kind in QUEUE_KINDS:
            if self.name(kind) == name:
                return kind
        raise ValueError(f"not a queue of this deployment: {name}")


# --- enqueueing and liveness ------------------------------------------------------------------


async def enqueue(
    redis: ArqRedis, queue: str, function: str, job_id: str, *args: Any
) -> Job | None:
    """Enqueue ``function(*args)`` under ``job_id``; None when that job exists already.

    The current trace context travels in the job (``tracing.TRACE_KWARG``), when there is one.
    """
    carrier = tracing.inject()
    kwargs: dict[str, Any] = {tracing.TRACE_KWARG: carrier} if carrier else {}
    with tracing.tracer.start_as_current_span(
        f"enqueue {function}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "arq",
            "messaging.destination.name": queue,
            "job.id": job_id,
        },
    ):
        if carrier:  # the job's parent is the enqueue span
            carrier = tracing.inject()
            kwargs = {tracing.TRACE_KWARG: carrier}
        return await redis.enqueue_job(function, *args, _job_id=job_id, _queue_name=queue, **kwargs)


async def liveness(redis: ArqRedis, queue: str, job_id: str) -> JobLiveness:
    """Whether a job is running (its lease held), waiting in its queue, finished, or gone."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(in_progress_key_prefix + job_id)
        pipe.exists(result_key_prefix + job_id)
        pipe.exists(job_key_prefix + job_id)
        pipe.zscore(queue, job_id)
        running, finished, defined, score = await pipe.execute()
    if running:
        return "running"
    if finished:
        return "finished"
    if defined and score is not None:
        return "queued"
    return "missing"


async def clear_job(redis: ArqRedis, queue: str, job_id: str) -> None:
    """Forget everything arq keeps about a job, so that it can be enqueued again afresh."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(
            job_key_prefix + job_id,
            result_key_prefix + job_id,
            retry_key_prefix + job_id,
            in_progress_key_prefix + job_id,
        )
        pipe.zrem(queue, job_id)
        await pipe.execute()


@contextlib.asynccontextmanager
async def hold_lease(redis: ArqRedis, job_id: str, lease_s: float = LEASE_S) -> AsyncIterator[None]:
    """Keep a running job's in-progress mark alive for ``lease_s`` at a time while inside.

    If this process dies the mark expires within ``lease_s`` and another worker takes the job.
    A failed renewal (Redis away) is logged and tried again; the job itself goes on.
    """
    key = in_progress_key_prefix + job_id
    lease_ms = int(lease_s * 1000)

    async def renew() -> None:
        while True:
            try:
                # SET, not PEXPIRE: a Redis that lost its data mid-job gets the mark back, so
                # the reconciler does not queue a job that is still running.
                await redis.set(key, b"1", px=lease_ms)
            except Exception as exc:  # Redis away: the next renewal may work
                log.warning("job %s: could not renew its lease: %r", job_id, exc)
            await asyncio.sleep(lease_s / 4)

    task = asyncio.create_task(renew(), name=f"lease:{job_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""Worker heartbeats: each worker process writes its own health record, for the jobs dashboard.

arq keeps one health key per queue, overwritten by every worker of that queue; the dashboard
needs every worker. So each worker (one per queue a process serves) writes its own record
every :data:`HEARTBEAT_S` under its own key, which expires after :data:`HEARTBEAT_TTL_S`
unrenewed, and adds its id to a sorted set scored by the time of its last beat. Readers take
the ids seen lately from that set and ``MGET`` their records: no ``KEYS`` scan, ever.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import msgspec
from arq.connections import ArqRedis

from pdfqa.queue import QueueKind, Queues

__all__ = ["HEARTBEAT_S", "HEARTBEAT_TTL_S", "Heartbeat", "beat", "forget", "new_worker_id", "read"]

HEARTBEAT_S = 2.0
"""How often a worker writes its record."""
HEARTBEAT_TTL_S = 3 * HEARTBEAT_S
"""A record not renewed for this long is gone: its worker is dead or stopped."""
INDEX_KEEP_S = 600.0
"""Ids not seen for this long are pruned from the index."""


class Heartbeat(msgspec.Struct, frozen=True):
    """One worker's health record."""

    worker_id: str
    queue: QueueKind
    host: str
    pid: int
    concurrency: int
    started_at: float
    """Unix time the worker started."""
    beat_at: float
    """Unix time of this record."""
    running: list[str]
    """Job ids running now."""
    jobs_complete: int
    jobs_failed: int
    jobs_retried: int


def new_worker_id(kind: QueueKind) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{kind}:{uuid.uuid4().hex[:6]}"


def _index(queues: Queues) -> str:
    return f"{queues.prefix}:{queues.deployment}:workers"


def _key(queues: Queues, worker_id: str) -> str:
    return f"{queues.prefix}:{queues.deployment}:worker:{worker_id}"


async def beat(redis: ArqRedis, queues: Queues, record: Heartbeat) -> None:
    """Write one worker's record (and prune ids long unseen from the index)."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(
            _key(queues, record.worker_id),
            msgspec.json.encode(record),
            px=int(HEARTBEAT_TTL_S * 1000),
        )
        pipe.zadd(_index(queues), {record.worker_id: now})
        pipe.zremrangebyscore(_index(queues), "-inf", now - INDEX_KEEP_S)
        await pipe.execute()


async def forget(redis: ArqRedis, queues: Queues, worker_id: str) -> None:
    """A worker that stops cleanly removes its record at once."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(_key(queues, worker_id))
        pipe.zrem(_index(queues), worker_id)
        await pipe.execute()


async def read(redis: ArqRedis, queues: Queues) -> list[Heartbeat]:
    """The live workers' records (those beaten within ``HEARTBEAT_TTL_S``), by queue and id."""
    ids = await redis.zrangebyscore(_index(queues), time.time() - HEARTBEAT_TTL_S, "+inf")
    if not ids:
        return []
    names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
    raw = await redis.mget([_key(queues, i) for i in names])
    records = [msgspec.json.decode(r, type=Heartbeat) for r in raw if r is not None]
    return sorted(records, key=lambda h: (h.queue, h.worker_id))

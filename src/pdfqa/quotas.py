"""Per-user quotas: storage, uploads per hour, questions per minute.

Rates are fixed-window counters in Redis (``INCR`` + ``EXPIRE NX`` in one transaction, shared by
every API process); the window's remaining time is the ``Retry-After``. Storage is the sum of the
user's uploads that are not ``failed`` (a failed upload's file is only kept a while, for an
admin's retry: ``failed_file_retention_s``), checked before the body is read and enforced while
it streams.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
from arq.connections import ArqRedis

from pdfqa.errors import RateLimited
from pdfqa.settings import Settings

__all__ = ["hit", "key", "storage_used"]


async def hit(redis: ArqRedis, key: str, *, limit: int, window_s: int, what: str) -> None:
    """Count one event under ``key``; :class:`RateLimited` past ``limit`` per window."""
    if limit <= 0:
        return
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    if int(count) > limit:
        raise RateLimited(
            f"You can make at most {limit} {what}; try again in {int(ttl)} s.",
            retry_after=int(ttl) if int(ttl) > 0 else window_s,
        )


def key(settings: Settings, name: str, user_id: UUID) -> str:
    """The counter of ``name`` events of one user, per deployment (prefixed by its queue name)."""
    return f"{settings.queue_name}:quota:{name}:{user_id}"


async def storage_used(conn: asyncpg.Connection, user_id: UUID) -> int:
    """Bytes of the user's uploads that keep their file (every status but ``failed``)."""
    used = await conn.fetchval(
        "SELECT coalesce(sum(size), 0) FROM uploads WHERE user_id = $1 AND status <> 'failed'",
        user_id,
    )
    return int(used)

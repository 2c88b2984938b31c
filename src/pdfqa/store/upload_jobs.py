"""The ``upload_jobs`` table: attempts made at an upload's ingestion and its last checkpoint."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import msgspec

__all__ = ["JobRecord", "begin_attempt", "get", "release_attempt", "save_checkpoint"]


class JobRecord(msgspec.Struct, frozen=True):
    attempts: int
    checkpoint: bytes | None


async def begin_attempt(conn: asyncpg.Connection, upload_id: UUID) -> JobRecord:
    """Count one more attempt at the upload's ingestion; the record after counting."""
    row = await conn.fetchrow(
        "INSERT INTO upload_jobs (upload_id, attempts) VALUES ($1, 1)"
        " ON CONFLICT (upload_id) DO UPDATE SET attempts = upload_jobs.attempts + 1,"
        " updated_at = now() RETURNING attempts, checkpoint",
        upload_id,
    )
    return JobRecord(attempts=row["attempts"], checkpoint=row["checkpoint"])


async def release_attempt(conn: asyncpg.Connection, upload_id: UUID) -> None:
    """Take back an attempt that was stopped on purpose (a graceful shutdown), not by a fault."""
    await conn.execute(
        "UPDATE upload_jobs SET attempts = greatest(attempts - 1, 0), updated_at = now()"
        " WHERE upload_id = $1",
        upload_id,
    )


async def get(conn: asyncpg.Connection, upload_id: UUID) -> JobRecord | None:
    row = await conn.fetchrow(
        "SELECT attempts, checkpoint FROM upload_jobs WHERE upload_id = $1", upload_id
    )
    return (
        None if row is None else JobRecord(attempts=row["attempts"], checkpoint=row["checkpoint"])
    )


async def save_checkpoint(conn: asyncpg.Connection, upload_id: UUID, data: bytes | None) -> None:
    """Store (or, with None, drop) the state a resumed ingestion starts from."""
    await conn.execute(
        "UPDATE upload_jobs SET checkpoint = $2, updated_at = now() WHERE upload_id = $1",
        upload_id,
        data,
    )

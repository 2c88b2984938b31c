"""The ``uploads`` table: one row per uploaded PDF and its ingestion state."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg
import msgspec

__all__ = [
    "JobRow",
    "Upload",
    "UploadStatus",
    "add_ocr_page",
    "delete",
    "expired_kept_files",
    "forget_kept_files",
    "get",
    "get_any",
    "get_by_job",
    "insert",
    "keep_file",
    "list_for_user",
    "mark_failed",
    "mark_ready",
    "recent_jobs",
    "requeue_failed",
    "set_progress",
    "start_processing",
    "status_counts",
    "touch",
    "unfinished",
    "unfinished_for_user",
]

UploadStatus = Literal["queued", "processing", "ready", "failed"]


class Upload(msgspec.Struct, frozen=True):
    """An uploaded PDF as the API shows it (the columns of ``uploads``, in order)."""

    id: UUID
    user_id: UUID
    name: str
    size: int
    sha256: str
    status: UploadStatus
    job_id: str
    pages_total: int | None
    pages_done: int
    pages_skipped: int
    chunks: int
    pages_ocr: int
    """Pages read by OCR (scanned or image-only pages, or a text layer of garbage)."""
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _upload(row: asyncpg.Record | None) -> Upload | None:
    return None if row is None else Upload(**dict(row))


async def insert(
    conn: asyncpg.Connection,
    *,
    upload_id: UUID,
    user_id: UUID,
    name: str,
    size: int,
    sha256: str,
    job_id: str,
) -> Upload:
    row = await conn.fetchrow(
        "INSERT INTO uploads (id, user_id, name, size, sha256, job_id)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        upload_id,
        user_id,
        name,
        size,
        sha256,
        job_id,
    )
    upload = _upload(row)
    assert upload is not None
    return upload


async def get(
    conn: asyncpg.Connection, upload_id: UUID, user_id: UUID | None = None
) -> Upload | None:
    """One upload; with ``user_id``, only if it belongs to that user."""
    if user_id is None:
        row = await conn.fetchrow("SELECT * FROM uploads WHERE id = $1", upload_id)
    else:
        row = await conn.fetchrow(
            "SELECT * FROM uploads WHERE id = $1 AND user_id = $2", upload_id, user_id
        )
    return _upload(row)


async def get_many(conn: asyncpg.Connection, upload_ids: list[UUID], user_id: UUID) -> list[Upload]:
    """The user's uploads among ``upload_ids``, in one query (missing or foreign ones left out)."""
    rows = await conn.fetch(
        "SELECT * FROM uploads WHERE id = ANY($1::uuid[]) AND user_id = $2", upload_ids, user_id
    )
    return [u for u in map(_upload, rows) if u is not None]


async def get_by_job(conn: asyncpg.Connection, job_id: str, user_id: UUID) -> Upload | None:
    row = await conn.fetchrow(
        "SELECT * FROM uploads WHERE job_id = $1 AND user_id = $2", job_id, user_id
    )
    return _upload(row)


async def list_for_user(
    conn: asyncpg.Connection,
    user_id: UUID,
    limit: int,
    after: tuple[datetime, UUID] | None = None,
) -> list[Upload]:
    """A page of the user's uploads, newest first, strictly after the key ``after``."""
    at, last = after or (None, None)
    rows = await conn.fetch(
        "SELECT * FROM uploads WHERE user_id = $1"
        " AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))"
        " ORDER BY created_at DESC, id DESC LIMIT $4",
        user_id,
        at,
        last,
        limit,
    )
    return [Upload(**dict(r)) for r in rows]


async def unfinished_for_user(conn: asyncpg.Connection, user_id: UUID) -> list[Upload]:
    """The user's uploads still ``queued`` or ``processing``, oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM uploads WHERE user_id = $1 AND status IN ('queued', 'processing')"
        " ORDER BY created_at, id",
        user_id,
    )
    return [Upload(**dict(r)) for r in rows]


async def unfinished(conn: asyncpg.Connection, idle_s: float) -> list[tuple[Upload, int]]:
    """Uploads ``queued`` or ``processing`` untouched for ``idle_s``, with the attempts made."""
    rows = await conn.fetch(
        "SELECT u.*, coalesce(j.attempts, 0) AS attempts FROM uploads u"
        " LEFT JOIN upload_jobs j ON j.upload_id = u.id"
        " WHERE u.status IN ('queued', 'processing')"
        " AND u.updated_at < now() - make_interval(secs => $1) ORDER BY u.created_at",
        idle_s,
    )
    found = []
    for r in rows:
        fields = dict(r)
        attempts = fields.pop("attempts")
        found.append((Upload(**fields), attempts))
    return found


async def start_processing(
    conn: asyncpg.Connection,
    upload_id: UUID,
    *,
    pages_done: int = 0,
    pages_skipped: int = 0,
    chunks: int = 0,
) -> Upload | None:
    """Mark an upload ``processing`` from the given progress (0 for a fresh start, or a
    checkpoint's); None when it is gone or already finished."""
    row = await conn.fetchrow(
        "UPDATE uploads SET status = 'processing', pages_done = $2, pages_skipped = $3,"
        " chunks = $4, error = NULL, started_at = coalesce(started_at, now()),"
        " finished_at = NULL, updated_at = now()"
        " WHERE id = $1 AND status IN ('queued', 'processing') RETURNING *",
        upload_id,
        pages_done,
        pages_skipped,
        chunks,
    )
    return _upload(row)


async def touch(conn: asyncpg.Connection, upload_id: UUID) -> None:
    """Mark an unfinished upload as seen now (the reconciler just gave it a job)."""
    await conn.execute(
        "UPDATE uploads SET updated_at = now()"
        " WHERE id = $1 AND status IN ('queued', 'processing')",
        upload_id,
    )


async def set_progress(
    conn: asyncpg.Connection,
    upload_id: UUID,
    *,
    pages_total: int,
    pages_done: int,
    pages_skipped: int,
    chunks: int,
) -> bool:
    """Record progress; False when the upload no longer exists or is no longer processing."""
    status = await conn.execute(
        "UPDATE uploads SET pages_total = $2, pages_done = $3, pages_skipped = $4, chunks = $5,"
        " updated_at = now() WHERE id = $1 AND status = 'processing'",
        upload_id,
        pages_total,
        pages_done,
        pages_skipped,
        chunks,
    )
    return bool(status == "UPDATE 1")


async def mark_ready(
    conn: asyncpg.Connection,
    upload_id: UUID,
    *,
    pages_total: int,
    pages_skipped: int,
    chunks: int,
    pages_ocr: int = 0,
) -> Upload | None:
    row = await conn.fetchrow(
        "UPDATE uploads SET status = 'ready', pages_total = $2, pages_done = $2,"
        " pages_skipped = $3, chunks = $4, pages_ocr = $5, error = NULL, finished_at = now(),"
        " updated_at = now() WHERE id = $1 AND status = 'processing' RETURNING *",
        upload_id,
        pages_total,
        pages_skipped,
        chunks,
        pages_ocr,
    )
    return _upload(row)


async def add_ocr_page(
    conn: asyncpg.Connection, upload_id: UUID, *, read: bool, chunks: int, skipped: bool
) -> Upload | None:
    """Count one page the OCR job finished (read, or skipped); None when the upload is gone or
    no longer processing."""
    row = await conn.fetchrow(
        "UPDATE uploads SET pages_done = pages_done + 1, pages_ocr = pages_ocr + $2,"
        " pages_skipped = pages_skipped + $3, chunks = chunks + $4, updated_at = now()"
        " WHERE id = $1 AND status = 'processing' RETURNING *",
        upload_id,
        int(read),
        int(skipped),
        chunks,
    )
    return _upload(row)


async def mark_failed(conn: asyncpg.Connection, upload_id: UUID, reason: str) -> Upload | None:
    row = await conn.fetchrow(
        "UPDATE uploads SET status = 'failed', error = $2, finished_at = now(), updated_at = now()"
        " WHERE id = $1 AND status IN ('queued', 'processing') RETURNING *",
        upload_id,
        reason,
    )
    return _upload(row)


async def delete(conn: asyncpg.Connection, upload_id: UUID, user_id: UUID) -> Upload | None:
    row = await conn.fetchrow(
        "DELETE FROM uploads WHERE id = $1 AND user_id = $2 RETURNING *",
        upload_id,
        user_id,
    )
    return _upload(row)


# --- the jobs dashboard (admins only: every user's uploads) -------------------------------------


class JobRow(msgspec.Struct, frozen=True):
    """An upload seen as its ingestion job."""

    upload: Upload
    attempts: int
    owner_email: str


async def status_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """How many uploads are in each status."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM uploads GROUP BY status")
    counts = dict.fromkeys(("queued", "processing", "ready", "failed"), 0)
    counts.update({row["status"]: int(row["n"]) for row in rows})
    return counts


async def recent_jobs(conn: asyncpg.Connection, statuses: list[str], limit: int) -> list[JobRow]:
    """The uploads in ``statuses`` most recently changed, with attempts and owner."""
    rows = await conn.fetch(
        "SELECT u.*, coalesce(j.attempts, 0) AS attempts, w.email AS owner_email"
        " FROM uploads u JOIN users w ON w.id = u.user_id"
        " LEFT JOIN upload_jobs j ON j.upload_id = u.id"
        " WHERE u.status = ANY($1::text[]) ORDER BY u.updated_at DESC LIMIT $2",
        statuses,
        limit,
    )
    out = []
    for row in rows:
        data = dict(row)
        attempts, email = data.pop("attempts"), data.pop("owner_email")
        out.append(JobRow(upload=Upload(**data), attempts=attempts, owner_email=email))
    return out


async def get_any(conn: asyncpg.Connection, upload_id: UUID) -> Upload | None:
    """An upload whoever owns it (admins)."""
    return _upload(await conn.fetchrow("SELECT * FROM uploads WHERE id = $1", upload_id))


async def requeue_failed(conn: asyncpg.Connection, upload_id: UUID) -> Upload | None:
    """A failed upload back to ``queued`` from scratch (an admin's retry); None unless failed."""
    row = await conn.fetchrow(
        "UPDATE uploads SET status = 'queued', error = NULL, pages_done = 0, pages_skipped = 0,"
        " chunks = 0, started_at = NULL, finished_at = NULL, updated_at = now()"
        " WHERE id = $1 AND status = 'failed' RETURNING *",
        upload_id,
    )
    if row is not None:
        await conn.execute(
            "UPDATE upload_jobs SET attempts = 0, checkpoint = NULL, updated_at = now()"
            " WHERE upload_id = $1",
            upload_id,
        )
        await conn.execute("DELETE FROM kept_files WHERE upload_id = $1", upload_id)
    return _upload(row)


async def keep_file(conn: asyncpg.Connection, upload_id: UUID, seconds: float) -> None:
    """Record that a failed upload's file stays stored for ``seconds`` (for a retry)."""
    await conn.execute(
        "INSERT INTO kept_files (upload_id, expires_at)"
        " VALUES ($1, now() + make_interval(secs => $2))"
        " ON CONFLICT (upload_id) DO UPDATE SET expires_at = excluded.expires_at",
        upload_id,
        float(seconds),
    )


async def expired_kept_files(conn: asyncpg.Connection, limit: int) -> list[UUID]:
    """Failed uploads whose kept file has expired, oldest expiry first."""
    rows = await conn.fetch(
        "SELECT k.upload_id FROM kept_files k JOIN uploads u ON u.id = k.upload_id"
        " WHERE k.expires_at < now() AND u.status = 'failed' ORDER BY k.expires_at LIMIT $1",
        limit,
    )
    return [r["upload_id"] for r in rows]


async def forget_kept_files(conn: asyncpg.Connection, upload_ids: list[UUID]) -> None:
    """The files of these uploads are deleted (or being ingested again): no longer kept."""
    await conn.execute("DELETE FROM kept_files WHERE upload_id = ANY($1::uuid[])", upload_ids)

"""The ``ocr_handoffs`` and ``ocr_lines`` tables: pages handed from ingestion to OCR, and what
OCR read on each (its lines, with boxes as fractions of the page)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from uuid import UUID

import asyncpg
import msgspec

from pdfqa.extract.pages import OcrLine

__all__ = [
    "HandoffStatus",
    "OcrLine",
    "OcrState",
    "begin_attempt",
    "finish_page",
    "hand_off",
    "handed_off",
    "lines",
    "pending_pages",
    "release_attempt",
    "state",
]

HandoffStatus = Literal["pending", "done", "skipped"]


class OcrState(msgspec.Struct, frozen=True):
    """Where an upload's OCR stands."""

    pending: int
    done: int
    skipped: int
    chunks: int
    """Chunks stored from OCR'd pages."""
    first_error: str | None
    """Why the first skipped page was skipped."""


async def hand_off(conn: asyncpg.Connection, upload_id: UUID, pages: Sequence[int]) -> None:
    """Record the pages that need OCR (again: a no-op for pages recorded already)."""
    await conn.execute(
        "INSERT INTO ocr_handoffs (upload_id, page) SELECT $1, unnest($2::int[])"
        " ON CONFLICT DO NOTHING",
        upload_id,
        list(pages),
    )


async def handed_off(conn: asyncpg.Connection, upload_ids: Sequence[UUID]) -> dict[UUID, int]:
    """Of these uploads, the ones handed to OCR, with the OCR attempts made on each."""
    rows = await conn.fetch(
        "SELECT h.upload_id, coalesce(max(j.ocr_attempts), 0) AS attempts"
        " FROM ocr_handoffs h LEFT JOIN upload_jobs j ON j.upload_id = h.upload_id"
        " WHERE h.upload_id = ANY($1::uuid[]) GROUP BY h.upload_id",
        list(upload_ids),
    )
    return {r["upload_id"]: r["attempts"] for r in rows}


async def begin_attempt(conn: asyncpg.Connection, upload_id: UUID) -> int:
    """Count one more attempt at the upload's OCR; the attempts after counting."""
    attempts: int = await conn.fetchval(
        "INSERT INTO upload_jobs (upload_id, ocr_attempts) VALUES ($1, 1)"
        " ON CONFLICT (upload_id) DO UPDATE SET ocr_attempts = upload_jobs.ocr_attempts + 1,"
        " updated_at = now() RETURNING ocr_attempts",
        upload_id,
    )
    return attempts


async def release_attempt(conn: asyncpg.Connection, upload_id: UUID) -> None:
    """Take back an OCR attempt that was stopped on purpose (a graceful shutdown)."""
    await conn.execute(
        "UPDATE upload_jobs SET ocr_attempts = greatest(ocr_attempts - 1, 0), updated_at = now()"
        " WHERE upload_id = $1",
        upload_id,
    )


async def pending_pages(conn: asyncpg.Connection, upload_id: UUID) -> list[int]:
    rows = await conn.fetch(
        "SELECT page FROM ocr_handoffs WHERE upload_id = $1 AND status = 'pending' ORDER BY page",
        upload_id,
    )
    return [r["page"] for r in rows]


async def state(conn: asyncpg.Connection, upload_id: UUID) -> OcrState:
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
        " count(*) FILTER (WHERE status = 'done') AS done,"
        " count(*) FILTER (WHERE status = 'skipped') AS skipped,"
        " coalesce(sum(chunks), 0) AS chunks,"
        " (array_agg(error ORDER BY page) FILTER (WHERE error IS NOT NULL))[1] AS first_error"
        " FROM ocr_handoffs WHERE upload_id = $1",
        upload_id,
    )
    return OcrState(**dict(row))


async def finish_page(
    conn: asyncpg.Connection,
    upload_id: UUID,
    page: int,
    *,
    status: HandoffStatus,
    chunks: int = 0,
    error: str | None = None,
    found: Sequence[OcrLine] = (),
) -> bool:
    """Record a page's outcome and replace its lines; False if it was no longer pending (a
    duplicate job got there first) or the upload is gone. Call inside a transaction."""
    result = await conn.execute(
        "UPDATE ocr_handoffs SET status = $3, chunks = $4, error = $5, updated_at = now()"
        " WHERE upload_id = $1 AND page = $2 AND status = 'pending'",
        upload_id,
        page,
        status,
        chunks,
        error,
    )
    if result != "UPDATE 1":
        return False
    await conn.execute("DELETE FROM ocr_lines WHERE upload_id = $1 AND page = $2", upload_id, page)
    if found:
        await conn.executemany(
            "INSERT INTO ocr_lines (upload_id, page, line, text, x0, y0, x1, y1, score)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                (upload_id, page, i, ln.text, ln.x0, ln.y0, ln.x1, ln.y1, ln.score)
                for i, ln in enumerate(found)
            ],
        )
    return True


async def lines(conn: asyncpg.Connection, upload_id: UUID, page: int) -> list[OcrLine]:
    """The recognised lines of one page, in reading order."""
    rows = await conn.fetch(
        "SELECT text, x0, y0, x1, y1, score FROM ocr_lines"
        " WHERE upload_id = $1 AND page = $2 ORDER BY line",
        upload_id,
        page,
    )
    return [OcrLine(**dict(r)) for r in rows]

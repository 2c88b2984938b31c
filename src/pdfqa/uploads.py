"""Uploads as a service: accept a stream, read, list, delete, job state.

The request never parses the PDF: it checks the magic number while streaming the bytes to the
file store (hashing as they pass), then hands the stored file to ``pdfqa.lifecycle``, which
records it and queues its ingestion (and owns every later change of its status).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from arq.jobs import Job, JobStatus

from pdfqa import lifecycle, quotas
from pdfqa.errors import NotAPdf, NotFound, TooLarge
from pdfqa.extract.pages import OcrLine
from pdfqa.pagination import DEFAULT_LIMIT, decode_cursor, encode_cursor
from pdfqa.pdf_header import HEADER_WINDOW, NOT_A_PDF, pdf_header_offset
from pdfqa.queue import deserialize
from pdfqa.resources import Resources
from pdfqa.sanitize import display_name, has_control
from pdfqa.store import ocr, uploads
from pdfqa.store.uploads import Upload

__all__ = [
    "PageOcr",
    "page_ocr",
    "JobState",
    "UploadPage",
    "accept_upload",
    "delete_upload",
    "get_upload",
    "job_state",
    "list_uploads",
]

log = logging.getLogger(__name__)

HEAD_BYTES = HEADER_WINDOW + 8
"""Bytes of the file's start that the header check reads."""


class JobState(msgspec.Struct, frozen=True):
    """An arq job as the jobs API shows it."""

    job_id: str
    status: Literal["deferred", "queued", "in_progress", "complete", "failed", "not_found"]
    function: str | None = None
    tries: int | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: str | None = None


def clean_name(name: str | None) -> str:
    """A display name for an uploaded file: no path, NFC, no control or format characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return display_name(base) or "document.pdf"


async def accept_upload(
    res: Resources, user_id: UUID, name: str | None, data: AsyncIterator[memoryview]
) -> Upload:
    """Store the streamed file, record it and queue it; :class:`NotAPdf` / :class:`TooLarge`."""
    settings = res.settings
    await quotas.hit(
        res.redis,
        quotas.key(settings, "uploads", user_id),
        limit=settings.uploads_per_hour,
        window_s=3600,
        what="uploads an hour",
    )
    limit = settings.max_upload_bytes
    too_large = f"The file is larger than the {_mb(limit)} limit."
    if settings.max_storage_bytes > 0:
        async with res.db.acquire() as conn:
            room = settings.max_storage_bytes - await quotas.storage_used(conn, user_id)
        quota = (
            f"Your storage quota of {_mb(settings.max_storage_bytes)} is used up"
            f" ({_mb(max(room, 0))} left); delete some documents first."
        )
        if room <= 0:
            raise TooLarge(quota)
        if room < limit:
            limit, too_large = room, quota
    upload_id = uuid.uuid4()
    writer = await res.files.writer(str(upload_id))
    size = 0
    head = b""
    try:
        async for piece in data:
            size += len(piece)
            if size > limit:
                raise TooLarge(too_large)
            if len(head) < HEAD_BYTES:
                head += bytes(piece[: HEAD_BYTES - len(head)])
                if len(head) >= HEAD_BYTES and pdf_header_offset(head) is None:
                    raise NotAPdf(NOT_A_PDF)
            await writer.write(piece)
        if size == 0:
            raise NotAPdf("The file is empty.")
        if pdf_header_offset(head) is None:
            raise NotAPdf(NOT_A_PDF)
        stored = await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    return await lifecycle.create(
        res,
        upload_id=upload_id,
        user_id=user_id,
        name=clean_name(name),
        size=stored.size,
        sha256=stored.sha256,
    )


async def get_upload(res: Resources, user_id: UUID, upload_id: UUID) -> Upload:
    async with res.db.acquire() as conn:
        upload = await uploads.get(conn, upload_id, user_id)
    if upload is None:
        raise NotFound("No such upload.")
    return upload


class PageOcr(msgspec.Struct, frozen=True):
    """What OCR recognised on one page: its lines in reading order, each with a box as fractions
    of the page's width and height from its top-left corner (empty: the page was not OCR'd)."""

    page: int
    lines: list[OcrLine]


async def page_ocr(res: Resources, user_id: UUID, upload_id: UUID, page: int) -> PageOcr:
    """The OCR lines of one page of the user's upload; NotFound for a page it does not have."""
    async with res.db.acquire() as conn:
        upload = await uploads.get(conn, upload_id, user_id)
        if upload is None:
            raise NotFound("No such upload.")
        if not 1 <= page <= (upload.pages_total or 0):
            raise NotFound("The upload has no such page.")
        found = await ocr.lines(conn, upload_id, page)
    return PageOcr(page=page, lines=found)


class UploadPage(msgspec.Struct, frozen=True):
    """A page of uploads, newest first; ``next_cursor`` fetches the next (null: no more)."""

    items: list[Upload]
    next_cursor: str | None


async def list_uploads(
    res: Resources, user_id: UUID, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> UploadPage:
    after = decode_cursor(cursor)
    async with res.db.acquire() as conn:
        items = await uploads.list_for_user(
            conn, user_id, limit + 1, (after.at, after.id) if after else None
        )
    more = len(items) > limit
    items = items[:limit]
    last = items[-1] if more else None
    return UploadPage(
        items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None
    )


async def delete_upload(res: Resources, user_id: UUID, upload_id: UUID) -> None:
    """Remove the row, the file and every vector; abort the job if it is still running."""
    await lifecycle.delete(res, user_id, upload_id)


async def job_state(res: Resources, user_id: UUID, job_id: str) -> JobState:
    """The arq job behind one of the caller's uploads."""
    if len(job_id) > 200 or has_control(job_id):
        raise NotFound("No such job.")
    async with res.db.acquire() as conn:
        upload = await uploads.get_by_job(conn, job_id, user_id)
    if upload is None:
        raise NotFound("No such job.")
    job = Job(job_id, res.redis, _queue_name=res.queues.name("ingest"), _deserializer=deserialize)
    status = await job.status()
    if status == JobStatus.not_found:
        return JobState(job_id=job_id, status="not_found")
    result_info = await job.result_info()
    if result_info is not None:
        return JobState(
            job_id=job_id,
            status="complete" if result_info.success else "failed",
            function=result_info.function,
            tries=result_info.job_try,
            enqueued_at=result_info.enqueue_time,
            started_at=result_info.start_time,
            finished_at=result_info.finish_time,
            result=result_info.result if result_info.success else None,
            error=None if result_info.success else str(result_info.result),
        )
    info = await job.info()
    return JobState(
        job_id=job_id,
        status=status.value,
        function=info.function if info else None,
        tries=info.job_try if info else None,
        enqueued_at=info.enqueue_time if info else None,
    )


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"

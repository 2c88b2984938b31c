"""An upload's life, in one place: every status change, the clean-up, and the reconciler.

    queued ──(a worker starts the job)──> processing ──> ready
       │                                      │    └───> failed (with a reason a person can act on)
       │                                      └──(pages need OCR)──> processing, on the OCR queue
       │                                                               ├──> ready
       │                                                               └──> failed
       └──────── deleted at any point: the row, the file, the vectors, the jobs, open streams

**OCR.** The ingestion indexes the pages with a usable text layer and hands the others to the
OCR job (:func:`ocr_upload`, on the ``ocr`` queue) through ``ocr_handoffs`` rows, written in the
same transaction that ends the ingestion's part; the OCR job marks each page done (or skipped)
in the transaction that counts it in the upload's progress, so a worker that dies loses at most
the page it was reading. An upload with handoffs is the OCR job's: the reconciler checks that
job instead of the ingestion's.

PostgreSQL is the truth. The queue only carries work: :func:`reconcile` (run by every worker at
start and every ``reconcile_interval_s``) finds uploads that are ``queued`` or ``processing``
without a live job (the job vanished with a Redis that lost its data, finished elsewhere, was
given up by arq, or was never enqueued) and enqueues them again, or fails them once they have
used up ``ingest_max_attempts``. A job whose worker died is not its business: its lease expires
within ``queue.LEASE_S`` and another worker takes it, resuming from the last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

import msgspec
from arq.jobs import Job

from pdfqa import metrics, progress, queue, retrieval
from pdfqa.errors import NotFound, UpstreamUnavailable
from pdfqa.extract import ExtractLimits, PageChunks, PageText, open_pdf
from pdfqa.ingest import (
    NO_TEXT_AFTER_OCR,
    Checkpoint,
    PipelineResult,
    Progress,
    StageTimes,
    Stopped,
    chunk_spec,
    fingerprint,
    index_page,
    ingest_pages,
)
from pdfqa.resources import Resources
from pdfqa.store import ocr, upload_jobs, uploads
from pdfqa.store.uploads import Upload

__all__ = [
    "INGEST",
    "OCR",
    "IngestResult",
    "MISSING_FILE",
    "PURGE",
    "RECONCILE",
    "ReconcileReport",
    "UploadGone",
    "create",
    "delete",
    "enqueue_ingest",
    "enqueue_ocr",
    "fail",
    "ingest_upload",
    "purge",
    "ocr_upload",
    "reconcile",
    "remove_vectors",
]

log = logging.getLogger(__name__)

INGEST = "ingest"
"""The name of the ingestion job function (queue ``ingest``)."""
PURGE = "purge_upload"
"""The name of the job that deletes a deleted upload's file and vectors (queue ``default``)."""
RECONCILE = "reconcile"
"""The name of the reconciler's job (queue ``default``)."""
OCR = "ocr"
"""The name of the OCR job function (on the ``ocr`` queue)."""
OCR_OFF = "OCR is turned off on this server."
RECONCILE_IDLE_S = 10.0
"""An unfinished upload untouched for this long is checked for a live job."""
RECONCILE_LOCK = 0x7064_6671_62
"""The advisory lock one reconciliation pass holds (any constant, the same in every process)."""
MISSING_FILE = "The uploaded file is no longer in storage; please upload it again."

_checkpoint_encoder = msgspec.msgpack.Encoder()
_checkpoint_decoder = msgspec.msgpack.Decoder(Checkpoint)


class UploadGone(Exception):
    """The upload was deleted while it was being ingested; the job stops and cleans up."""


class IngestResult(msgspec.Struct, frozen=True):
    """What one ingestion did (also the arq job's result)."""

    upload_id: str
    status: str
    pages_total: int = 0
    pages_skipped: int = 0
    chunks: int = 0
    error: str | None = None
    times: StageTimes | None = None
    resumed_from_page: int = 0
    pages_ocr: int = 0
    """Pages handed to OCR (the ingestion's result) or read by it (the OCR job's)."""


class ReconcileReport(msgspec.Struct, frozen=True):
    checked: int = 0
    requeued: int = 0
    failed: int = 0
    files_deleted: int = 0
    """Kept files of failed uploads deleted, their retention over."""


# --- birth and death ---------------------------------------------------------------------------


async def enqueue_ingest(res: Resources, upload_id: UUID) -> None:
    """Queue an upload's ingestion under its deterministic job id (a no-op if it is there)."""
    await queue.enqueue(
        res.redis,
        res.queues.name("ingest"),
        INGEST,
        res.queues.job_id(INGEST, upload_id),
        str(upload_id),
        str(res.queues.deployment),
    )


async def enqueue_ocr(res: Resources, upload_id: UUID) -> None:
    """Queue an upload's OCR job on the ``ocr`` queue (a no-op if it is there)."""
    await queue.enqueue(
        res.redis,
        res.queues.name("ocr"),
        OCR,
        res.queues.job_id(OCR, upload_id),
        str(upload_id),
        str(res.queues.deployment),
    )


async def create(
    res: Resources, *, upload_id: UUID, user_id: UUID, name: str, size: int, sha256: str
) -> Upload:
    """Record a stored file as ``queued`` and queue its ingestion.

    All or nothing: if either step fails, the row and the file are removed and
    :class:`UpstreamUnavailable` is raised (the API answers 503).
    """
    try:
        async with res.db.acquire() as conn:
            upload = await uploads.insert(
                conn,
                upload_id=upload_id,
                user_id=user_id,
                name=name,
                size=size,
                sha256=sha256,
                job_id=res.queues.job_id(INGEST, upload_id),
            )
        await enqueue_ingest(res, upload_id)
    except Exception as exc:
        log.warning("upload %s could not be recorded and queued: %r", upload_id, exc)
        await res.files.delete(str(upload_id))
        with contextlib.suppress(Exception):
            async with res.db.acquire() as conn:
                await uploads.delete(conn, upload_id, user_id)
        raise UpstreamUnavailable("The upload could not be queued; please try again.") from exc
    with contextlib.suppress(Exception):  # a courtesy to the user's open multiplexed streams
        await progress.publish_added(res.redis, user_id, upload_id)
    return upload


async def delete(res: Resources, user_id: UUID, upload_id: UUID) -> None:
    """Remove the row, abort its job, end its open streams; the file and the vectors go in a
    short job on the ``default`` queue (:func:`purge`; done here when it cannot be queued)."""
    async with res.db.acquire() as conn:
        upload = await uploads.delete(conn, upload_id, user_id)
    if upload is None:
        raise NotFound("No such upload.")
    if upload.status in ("queued", "processing"):
        with contextlib.suppress(Exception):  # the worker also notices the row is gone
            await Job(upload.job_id, res.redis, _queue_name=res.queues.name("ingest")).abort(
                timeout=0
            )
        with contextlib.suppress(Exception):
            await Job(
                res.queues.job_id(OCR, upload_id), res.redis, _queue_name=res.queues.name("ocr")
            ).abort(timeout=0)
    with contextlib.suppress(Exception):  # a courtesy: streams also end on their next read
        await progress.publish(res.redis, upload_id, progress.Deleted())
    with contextlib.suppress(Exception):  # the purge job invalidates again
        await retrieval.invalidate(res, upload_id)
    try:
        await queue.enqueue(
            res.redis,
            res.queues.name("default"),
            PURGE,
            res.queues.job_id(PURGE, upload_id),
            str(upload_id),
        )
    except Exception as exc:
        log.warning("upload %s: clean-up not queued (%r); done now", upload_id, exc)
        await purge(res, upload_id)


async def purge(res: Resources, upload_id: UUID) -> None:
    """Delete a deleted upload's file and every vector."""
    await res.files.delete(str(upload_id))
    await remove_vectors(res, upload_id)


async def remove_vectors(res: Resources, upload_id: UUID) -> None:
    """Delete every vector of an upload (and every cached retrieval that saw them)."""
    await res.vectors.delete_upload(str(upload_id))
    await retrieval.invalidate(res, upload_id)


async def fail(res: Resources, upload_id: UUID, reason: str) -> IngestResult:
    """Record that an upload failed and why; then drop any vectors it got, as best it can.

    The failure is written first: whatever happens to the clean-up, the upload never stays
    ``processing``. ``reason`` is shown to the user: no paths, no internals. The file is kept
    for ``failed_file_retention_s`` (an admin may retry the ingestion; the reconciler deletes it
    once expired), or deleted at once when that is 0.
    """
    retention = res.settings.failed_file_retention_s
    async with res.db.acquire() as conn, conn.transaction():
        failed = await uploads.mark_failed(conn, upload_id, reason)
        await upload_jobs.save_checkpoint(conn, upload_id, None)
        if failed is not None and retention > 0:
            await uploads.keep_file(conn, upload_id, retention)
    if failed is not None:
        metrics.INGEST_FAILURES.labels(metrics.failure_kind(reason)).inc()
    with contextlib.suppress(Exception):  # the row is the truth; the event is a courtesy
        await progress.publish(res.redis, upload_id, progress.Failed(reason=reason))
    try:
        await remove_vectors(res, upload_id)
    except Exception:
        log.warning("upload %s: could not remove its vectors", upload_id, exc_info=True)
    if failed is not None and retention <= 0:
        await delete_failed_file(res, upload_id)
    return IngestResult(upload_id=str(upload_id), status="failed", error=reason)


async def delete_failed_file(res: Resources, upload_id: UUID) -> bool:
    """Delete the stored file of a failed upload (its row keeps the reason); never raises."""
    try:
        await res.files.delete(str(upload_id))
    except Exception:
        log.warning("upload %s: could not delete its file", upload_id, exc_info=True)
        return False
    return True


async def delete_expired_files(res: Resources, *, batch: int = 100) -> int:
    """Delete the kept files of failed uploads whose retention has passed; how many."""
    deleted = 0
    while True:
        async with res.db.acquire() as conn:
            expired = await uploads.expired_kept_files(conn, batch)
        gone = [upload_id for upload_id in expired if await delete_failed_file(res, upload_id)]
        if gone:
            async with res.db.acquire() as conn:
                await uploads.forget_kept_files(conn, gone)
        deleted += len(gone)
        if len(expired) < batch or not gone:
            return deleted


def interrupted_reason(attempts: int) -> str:
    return (
        f"Ingestion was interrupted {attempts} times (a worker stopped or a backing service "
        "failed each time); please upload the file again, and tell the operator if it recurs."
    )


# --- ingestion ---------------------------------------------------------------------------------


async def ingest_upload(
    res: Resources, upload_id: UUID, *, stop: asyncio.Event | None = None
) -> IngestResult:
    """Make one upload searchable, or mark it failed with a reason a person can act on.

    Resumes from the upload's checkpoint when it has one. Raises :class:`UploadGone` if the
    upload disappears (its vectors are removed), ``ingest.Stopped`` when ``stop`` was set (the
    attempt is not counted; progress is recorded), and lets infrastructure errors propagate so
    the job queue can retry them.
    """
    async with res.db.acquire() as conn, conn.transaction():
        current = await uploads.get(conn, upload_id)
        if current is None:
            raise UploadGone(str(upload_id))
        if current.status not in ("queued", "processing"):
            # Finished already (a duplicate delivery): nothing to do.
            return IngestResult(upload_id=str(upload_id), status=current.status)
        handed = upload_id in await ocr.handed_off(conn, [upload_id])
        if not handed:
            record = await upload_jobs.begin_attempt(conn, upload_id)
    if handed:
        # The text pass is over and the OCR job owns the upload (this is a duplicate delivery,
        # or the hand-off's enqueueing failed): make sure that job exists.
        await enqueue_ocr(res, upload_id)
        return IngestResult(upload_id=str(upload_id), status="processing")
    if record.attempts > res.settings.ingest_max_attempts:
        return await fail(res, upload_id, interrupted_reason(record.attempts - 1))
    resume = _usable_checkpoint(res, record.checkpoint)
    async with res.db.acquire() as conn:
        upload = await uploads.start_processing(
            conn,
            upload_id,
            pages_done=resume.pages_done - len(resume.ocr_pages) if resume else 0,
            pages_skipped=resume.pages_skipped if resume else 0,
            chunks=resume.chunks if resume else 0,
        )
    if upload is None:
        raise UploadGone(str(upload_id))
    if resume is None:
        # A fresh start from a clean slate: deterministic ids would overwrite, but a changed
        # chunking could leave stale points behind.
        await remove_vectors(res, upload_id)
    else:
        log.info("upload %s: resuming after page %d", upload_id, resume.pages_done)

    async def report(p: Progress) -> None:
        await _record_progress(res, upload_id, p)

    try:
        async with (
            res.files.local_copy(str(upload_id)) as path,
            open_pdf(path, ExtractLimits.from_settings(res.settings), chunk_spec(res)) as doc,
        ):
            result = await ingest_pages(
                res,
                upload_id=upload_id,
                user_id=upload.user_id,
                pages=doc.chunks,
                pages_total=doc.page_count,
                report=report,
                resume=resume,
                stop=stop,
            )
    except UploadGone:
        await remove_vectors(res, upload_id)
        raise
    except Stopped:
        async with res.db.acquire() as conn:
            await upload_jobs.release_attempt(conn, upload_id)
        raise
    if result.ocr_pages:
        return await _hand_off(res, upload_id, result)
    async with res.db.acquire() as conn, conn.transaction():
        done = await uploads.mark_ready(
            conn,
            upload_id,
            pages_total=result.pages_total,
            pages_skipped=result.pages_skipped,
            chunks=result.chunks,
        )
        await upload_jobs.save_checkpoint(conn, upload_id, None)
    if done is None:
        await remove_vectors(res, upload_id)
        raise UploadGone(str(upload_id))
    await retrieval.invalidate(res, upload_id)  # a re-ingestion: its passages may differ
    with contextlib.suppress(Exception):
        await progress.publish(
            res.redis,
            upload_id,
            progress.Ready(
                pages_total=result.pages_total,
                chunks=result.chunks,
                pages_skipped=result.pages_skipped,
            ),
        )
    return IngestResult(
        upload_id=str(upload_id),
        status="ready",
        pages_total=result.pages_total,
        pages_skipped=result.pages_skipped,
        chunks=result.chunks,
        times=result.times,
        resumed_from_page=resume.pages_done if resume else 0,
    )


async def _hand_off(res: Resources, upload_id: UUID, result: PipelineResult) -> IngestResult:
    """The text pass is over: record the pages that need OCR and queue the OCR job."""
    pages = result.ocr_pages
    async with res.db.acquire() as conn, conn.transaction():
        alive = await uploads.set_progress(
            conn,
            upload_id,
            pages_total=result.pages_total,
            pages_done=result.pages_total - len(pages),
            pages_skipped=result.pages_skipped,
            chunks=result.chunks,
        )
        if alive:
            await ocr.hand_off(conn, upload_id, pages)
            await upload_jobs.save_checkpoint(conn, upload_id, None)
    if not alive:
        await remove_vectors(res, upload_id)
        raise UploadGone(str(upload_id))
    log.info("upload %s: %d page(s) handed to OCR", upload_id, len(pages))
    await enqueue_ocr(res, upload_id)
    return IngestResult(
        upload_id=str(upload_id),
        status="processing",
        pages_total=result.pages_total,
        pages_skipped=result.pages_skipped,
        chunks=result.chunks,
        times=result.times,
        pages_ocr=len(pages),
    )


# --- OCR ---------------------------------------------------------------------------------------


async def ocr_upload(
    res: Resources, upload_id: UUID, *, stop: asyncio.Event | None = None
) -> IngestResult:
    """Read an upload's handed-off pages with OCR, index them, and finish the upload.

    Each page is recorded as it is stored (``pages_done`` moves); a page OCR cannot read is
    counted in ``pages_skipped``. A resumed job reads only the pages still pending. Raises like
    :func:`ingest_upload` (``UploadGone``, ``Stopped``, infrastructure errors to retry).
    """
    async with res.db.acquire() as conn, conn.transaction():
        current = await uploads.get(conn, upload_id)
        if current is None:
            raise UploadGone(str(upload_id))
        if current.status != "processing":
            return IngestResult(upload_id=str(upload_id), status=current.status)
        attempts = await ocr.begin_attempt(conn, upload_id)
        pending = await ocr.pending_pages(conn, upload_id)
    if attempts > res.settings.ingest_max_attempts:
        return await fail(res, upload_id, interrupted_reason(attempts - 1))
    try:
        if pending and not res.settings.ocr:
            for number in pending:
                await _store_ocr_page(
                    res, current.user_id, upload_id, PageChunks(_skipped(number, OCR_OFF))
                )
        elif pending:
            limits = ExtractLimits.for_ocr(res.settings, len(pending))
            async with (
                res.files.local_copy(str(upload_id)) as path,
                open_pdf(path, limits, chunk_spec(res)) as doc,
            ):
                async for item in doc.some_chunks(pending):
                    await _store_ocr_page(res, current.user_id, upload_id, item)
                    if stop is not None and stop.is_set():
                        raise Stopped(str(upload_id))
    except UploadGone:
        await remove_vectors(res, upload_id)
        raise
    except Stopped:
        async with res.db.acquire() as conn:
            await ocr.release_attempt(conn, upload_id)
        raise
    return await _finish_ocr(res, upload_id)


def _skipped(number: int, reason: str) -> PageText:
    return PageText(number=number, text="", method="ocr", error=reason)


async def _store_ocr_page(res: Resources, user_id: UUID, upload_id: UUID, item: PageChunks) -> None:
    """Index one OCR'd page, then record it (and its lines) with the upload's progress."""
    page = item.page
    assert page is not None  # some_chunks() yields pages only
    chunks = 0
    if page.error is None and item.chunks:
        chunks = await index_page(
            res, upload_id=upload_id, user_id=user_id, page=page.number, chunks=item.chunks
        )
    elif page.error is not None:
        log.warning("upload %s: OCR of page %d skipped: %s", upload_id, page.number, page.error)
    else:  # read, but the image holds no text (a photo, a blank scan): nothing to index
        log.info("upload %s: OCR found no text on page %d", upload_id, page.number)
    read = page.error is None
    async with res.db.acquire() as conn, conn.transaction():
        first = await ocr.finish_page(
            conn,
            upload_id,
            page.number,
            status="done" if read else "skipped",
            chunks=chunks,
            error=page.error,
            found=page.lines,
        )
        row = None
        if first:
            row = await uploads.add_ocr_page(
                conn, upload_id, read=read, chunks=chunks, skipped=not read
            )
    if first and row is None:
        raise UploadGone(str(upload_id))
    if row is not None:
        event = progress.Progress(
            pages_done=row.pages_done, pages_total=row.pages_total or 0, chunks=row.chunks
        )
        with contextlib.suppress(Exception):  # progress is best effort; the row is the truth
            await progress.publish(res.redis, upload_id, event)


async def _finish_ocr(res: Resources, upload_id: UUID) -> IngestResult:
    done: Upload | None = None
    async with res.db.acquire() as conn, conn.transaction():
        state = await ocr.state(conn, upload_id)
        current = await uploads.get(conn, upload_id)
        if current is None:
            raise UploadGone(str(upload_id))
        if state.pending or current.status != "processing":
            # Another delivery of this job is reading the rest (or finished it): not ours.
            return IngestResult(upload_id=str(upload_id), status=current.status)
        if current.chunks > 0:
            done = await uploads.mark_ready(
                conn,
                upload_id,
                pages_total=current.pages_total or 0,
                pages_skipped=current.pages_skipped,
                chunks=current.chunks,
                pages_ocr=current.pages_ocr,
            )
            await upload_jobs.save_checkpoint(conn, upload_id, None)
    if current.chunks == 0:
        reason = NO_TEXT_AFTER_OCR
        if state.done == 0 and state.first_error:
            reason = f"OCR could not read any page ({_lower(state.first_error)})."
        return await fail(res, upload_id, reason)
    if done is None:
        await remove_vectors(res, upload_id)
        raise UploadGone(str(upload_id))
    with contextlib.suppress(Exception):
        await progress.publish(
            res.redis,
            upload_id,
            progress.Ready(
                pages_total=done.pages_total or 0,
                chunks=done.chunks,
                pages_skipped=done.pages_skipped,
                pages_ocr=done.pages_ocr,
            ),
        )
    return IngestResult(
        upload_id=str(upload_id),
        status="ready",
        pages_total=done.pages_total or 0,
        pages_skipped=done.pages_skipped,
        chunks=done.chunks,
        pages_ocr=done.pages_ocr,
    )


def _lower(reason: str) -> str:
    reason = reason.rstrip(".")
    return reason[:1].lower() + reason[1:]


def _usable_checkpoint(res: Resources, data: bytes | None) -> Checkpoint | None:
    if data is None:
        return None
    try:
        checkpoint = _checkpoint_decoder.decode(data)
    except msgspec.DecodeError:
        log.warning("ignoring an unreadable checkpoint")
        return None
    if checkpoint.fingerprint != fingerprint(res):
        log.info("ignoring a checkpoint made with other chunking settings or another embedder")
        return None
    return checkpoint


async def _record_progress(res: Resources, upload_id: UUID, p: Progress) -> None:
    """Write progress (and its checkpoint) to PostgreSQL, then tell the listeners."""
    async with res.db.acquire() as conn, conn.transaction():
        alive = await uploads.set_progress(
            conn,
            upload_id,
            pages_total=p.pages_total,
            pages_done=p.pages_done,
            pages_skipped=p.pages_skipped,
            chunks=p.chunks,
        )
        if alive and p.checkpoint is not None:
            await upload_jobs.save_checkpoint(
                conn, upload_id, _checkpoint_encoder.encode(p.checkpoint)
            )
    if not alive:
        raise UploadGone(str(upload_id))
    event = progress.Progress(pages_done=p.pages_done, pages_total=p.pages_total, chunks=p.chunks)
    with contextlib.suppress(Exception):  # progress is best effort; the row is the truth
        await progress.publish(res.redis, upload_id, event)


# --- reconciliation ----------------------------------------------------------------------------


async def reconcile(res: Resources, *, idle_s: float = RECONCILE_IDLE_S) -> ReconcileReport:
    """Give every unfinished upload without a live job a new job, or fail it (see module doc).

    One pass at a time across all workers of the deployment (a transaction-scoped advisory
    lock): two passes could otherwise both re-enqueue a job while a worker starts it.
    """
    async with res.db.acquire() as lock, lock.transaction():
        if not await lock.fetchval("SELECT pg_try_advisory_xact_lock($1)", RECONCILE_LOCK):
            return ReconcileReport()
        return await _reconcile(res, idle_s)


async def _reconcile(res: Resources, idle_s: float) -> ReconcileReport:
    async with res.db.acquire() as conn:
        candidates = await uploads.unfinished(conn, idle_s)
        in_ocr = await ocr.handed_off(conn, [upload.id for upload, _ in candidates])
    requeued = failed = 0
    for upload, ingest_attempts in candidates:
        # An upload handed to OCR is the OCR job's (and counts that job's attempts).
        function = OCR if upload.id in in_ocr else INGEST
        attempts = in_ocr.get(upload.id, ingest_attempts)
        job_queue = res.queues.name("ocr" if function == OCR else "ingest")
        job_id = res.queues.job_id(function, upload.id)
        state = await queue.liveness(res.redis, job_queue, job_id)
        if state in ("running", "queued"):
            continue
        if attempts >= res.settings.ingest_max_attempts:
            log.warning(
                "upload %s: no live job (%s) and %d attempts made: failing it",
                upload.id,
                state,
                attempts,
            )
            await fail(res, upload.id, interrupted_reason(attempts))
            failed += 1
            continue
        log.warning(
            "upload %s: %s without a live %s job (%s): queued again",
            upload.id,
            upload.status,
            function,
            state,
        )
        await queue.clear_job(res.redis, job_queue, job_id)
        await (enqueue_ocr if function == OCR else enqueue_ingest)(res, upload.id)
        async with res.db.acquire() as conn:
            await uploads.touch(conn, upload.id)
        requeued += 1
    return ReconcileReport(
        checked=len(candidates),
        requeued=requeued,
        failed=failed,
        files_deleted=await delete_expired_files(res),
    )

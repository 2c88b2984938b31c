"""Pages -> chunks -> embeddings -> vectors, as one pipeline over the interfaces.

Three stages overlap: the extraction child process reads page *n+1* while the chunker (a thread)
cuts page *n* and the embedder works on an earlier batch; upserts happen as batches finish. With
a remote embedder several batches are in flight at once (``Embedder.max_concurrency``). Progress
(``pages_done``: pages whose every chunk is stored) is written to PostgreSQL and published on
Redis as it moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID

import msgspec

from pdfqa import progress
from pdfqa.chunking import Chunk, Chunker
from pdfqa.errors import IngestError
from pdfqa.extract import ExtractLimits, PageText, open_pdf
from pdfqa.resources import Resources
from pdfqa.sparse import SparseVector, sparse_document
from pdfqa.store import uploads
from pdfqa.store.vectors import ChunkPoint

__all__ = [
    "IngestResult",
    "StageTimes",
    "UploadGone",
    "fail_upload",
    "ingest_upload",
    "remove_vectors",
]

log = logging.getLogger(__name__)

NO_TEXT = (
    "No extractable text was found: the PDF seems to hold only images (scanned pages need OCR, "
    "which pdfqa does not do yet)."
)
PROGRESS_EVERY_S = 0.25


class UploadGone(Exception):
    """The upload was deleted while it was being ingested; the job stops and cleans up."""


class StageTimes(msgspec.Struct):
    """Seconds each stage spent working (they overlap, so they add up to more than the total)."""

    extract: float = 0.0
    chunk: float = 0.0
    embed: float = 0.0
    upsert: float = 0.0
    total: float = 0.0


class IngestResult(msgspec.Struct, frozen=True):
    """What one ingestion did (also the arq job's result)."""

    upload_id: str
    status: str
    pages_total: int = 0
    pages_skipped: int = 0
    chunks: int = 0
    error: str | None = None
    times: StageTimes | None = None


@dataclass
class _Batch:
    seq: int
    chunks: list[Chunk]
    pages_complete: int
    """Pages fully chunked once this batch (and all before it) is stored."""


@dataclass
class _Tracker:
    """Turns batches finishing out of order into a monotonic ``pages_done``."""

    pages_total: int
    done: set[int] = field(default_factory=set)
    marks: dict[int, int] = field(default_factory=dict)
    next_seq: int = 0
    pages_done: int = 0
    chunks: int = 0
    skipped: int = 0

    def finish(self, batch: _Batch) -> None:
        self.done.add(batch.seq)
        self.marks[batch.seq] = batch.pages_complete
        self.chunks += len(batch.chunks)
        while self.next_seq in self.done:
            self.pages_done = max(self.pages_done, self.marks.pop(self.next_seq))
            self.done.discard(self.next_seq)
            self.next_seq += 1


async def ingest_upload(res: Resources, upload_id: UUID) -> IngestResult:
    """Make one upload searchable, or mark it failed with a reason a person can act on.

    Raises :class:`UploadGone` if the upload disappears mid-way (its vectors are removed), and
    lets infrastructure errors propagate so the job queue can retry them.
    """
    async with res.db.acquire() as conn:
        upload = await uploads.start_processing(conn, upload_id)
    if upload is None:
        raise UploadGone(str(upload_id))
    try:
        pages_total, skipped, chunks, times = await _run(res, upload)
    except IngestError as exc:
        log.info("upload %s failed: %s", upload_id, exc)
        return await fail_upload(res, upload_id, str(exc))
    except UploadGone:
        await remove_vectors(res, upload_id)
        raise
    async with res.db.acquire() as conn:
        done = await uploads.mark_ready(
            conn, upload_id, pages_total=pages_total, pages_skipped=skipped, chunks=chunks
        )
    if done is None:
        await remove_vectors(res, upload_id)
        raise UploadGone(str(upload_id))
    await progress.publish(
        res.redis,
        upload_id,
        progress.Ready(pages_total=pages_total, chunks=chunks, pages_skipped=skipped),
    )
    return IngestResult(
        upload_id=str(upload_id),
        status="ready",
        pages_total=pages_total,
        pages_skipped=skipped,
        chunks=chunks,
        times=times,
    )


async def remove_vectors(res: Resources, upload_id: UUID) -> None:
    """Delete every vector of an upload (opening the embedder's collection first)."""
    await res.vectors.ensure_collection(res.embedder.name, res.embedder.dimensions)
    await res.vectors.delete_upload(str(upload_id))


async def fail_upload(res: Resources, upload_id: UUID, reason: str) -> IngestResult:
    """Record that an upload failed and why; then drop any vectors it got, as best it can.

    The failure is written first: whatever happens to the clean-up, the upload never stays
    ``processing``.
    """
    async with res.db.acquire() as conn:
        await uploads.mark_failed(conn, upload_id, reason)
    with contextlib.suppress(Exception):  # the row is the truth; the event is a courtesy
        await progress.publish(res.redis, upload_id, progress.Failed(reason=reason))
    try:
        await remove_vectors(res, upload_id)
    except Exception:
        log.warning("upload %s: could not remove its vectors", upload_id, exc_info=True)
    await delete_failed_file(res, upload_id)
    return IngestResult(upload_id=str(upload_id), status="failed", error=reason)


async def delete_failed_file(res: Resources, upload_id: UUID) -> None:
    """Delete the stored file of a failed upload (its row keeps the reason); never raises."""
    try:
        await res.files.delete(str(upload_id))
    except Exception:
        log.warning("upload %s: could not delete its file", upload_id, exc_info=True)


async def _run(res: Resources, upload: uploads.Upload) -> tuple[int, int, int, StageTimes]:
    started = time.perf_counter()
    upload_id = str(upload.id)

    # A retried job starts from a clean slate: deterministic ids would overwrite, but a changed
    # chunking could leave stale points behind. This runs while the extraction child starts.
    preparing = asyncio.ensure_future(remove_vectors(res, upload.id))
    try:
        async with (
            res.files.local_copy(upload_id) as path,
            open_pdf(path, ExtractLimits.from_settings(res.settings)) as doc,
        ):
            await preparing
            pipeline = _Pipeline(res, upload, doc.page_count)
            await pipeline.run(doc.pages())
    finally:
        if not preparing.done():
            preparing.cancel()
        with contextlib.suppress(BaseException):
            await preparing
    if pipeline.tracker.chunks == 0:
        raise IngestError(NO_TEXT)
    pipeline.times.total = time.perf_counter() - started
    t = pipeline.tracker
    return t.pages_total, t.skipped, t.chunks, pipeline.times


class _Pipeline:
    """extract -> chunk (producer) -> embed (N workers) -> upsert (one writer), all overlapping."""

    def __init__(self, res: Resources, upload: uploads.Upload, pages_total: int) -> None:
        settings = res.settings
        embedder = res.embedder
        self.res = res
        self.upload = upload
        self.times = StageTimes()
        self.tracker = _Tracker(pages_total=pages_total)
        self.reporter = _Reporter(res, upload.id, self.tracker)
        self.batch_size = settings.embed_batch_size
        self.embedders = max(1, embedder.max_concurrency)
        self.chunker = Chunker(
            res.count_tokens,
            target_tokens=min(settings.chunk_tokens, embedder.max_tokens - 2),
            overlap_tokens=settings.chunk_overlap_tokens,
            max_tokens=embedder.max_tokens - 2,
        )
        self.to_embed: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=self.embedders * 2)
        self.to_store: asyncio.Queue[tuple[_Batch, list[ChunkPoint]] | None] = asyncio.Queue(
            maxsize=2
        )

    async def run(self, pages: AsyncIterator[PageText]) -> None:
        await self.reporter.report(force=True)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.produce(pages))
            embedding = [tasks.create_task(self.embed()) for _ in range(self.embedders)]
            tasks.create_task(self.store())
            await asyncio.gather(*embedding)
            await self.to_store.put(None)

    async def produce(self, pages: AsyncIterator[PageText]) -> None:
        pending: list[Chunk] = []
        seq = 0
        total = self.tracker.pages_total

        async def cut(final: bool) -> None:
            nonlocal pending, seq
            while len(pending) >= self.batch_size or (final and pending):
                batch, pending = pending[: self.batch_size], pending[self.batch_size :]
                mark = total if final else self.chunker.pages_complete
                if pending:  # a page is done only when none of its chunks still waits
                    mark = min(mark, pending[0].pages[0] - 1)
                await self.to_embed.put(_Batch(seq, batch, mark))
                seq += 1

        while True:
            t0 = time.perf_counter()
            page = await anext(pages, None)
            self.times.extract += time.perf_counter() - t0
            if page is None:
                break
            if page.error is not None:
                self.tracker.skipped += 1
                log.warning(
                    "upload %s: page %d skipped: %s", self.upload.id, page.number, page.error
                )
            t0 = time.perf_counter()
            pending += await asyncio.to_thread(self.chunker.add_page, page.number, page.text)
            self.times.chunk += time.perf_counter() - t0
            await cut(final=False)
        pending += self.chunker.finish()
        if pending:
            await cut(final=True)
        else:  # the trailing pages hold no text of their own: they are done now
            await self.to_embed.put(_Batch(seq, [], total))
        for _ in range(self.embedders):
            await self.to_embed.put(None)

    async def embed(self) -> None:
        upload_id, user_id = str(self.upload.id), str(self.upload.user_id)
        while (batch := await self.to_embed.get()) is not None:
            points: list[ChunkPoint] = []
            if batch.chunks:
                texts = [c.text for c in batch.chunks]
                t0 = time.perf_counter()
                dense = await self.res.embedder.embed_documents(texts)
                self.times.embed += time.perf_counter() - t0
                sparse = await asyncio.to_thread(_sparse_all, texts)
                points = [
                    ChunkPoint(
                        upload_id=upload_id,
                        user_id=user_id,
                        chunk_index=chunk.index,
                        pages=chunk.pages,
                        text=chunk.text,
                        dense=vector,
                        sparse=sparse_vector,
                    )
                    for chunk, vector, sparse_vector in zip(
                        batch.chunks, dense, sparse, strict=True
                    )
                ]
            await self.to_store.put((batch, points))

    async def store(self) -> None:
        while (item := await self.to_store.get()) is not None:
            batch, points = item
            if points:
                t0 = time.perf_counter()
                await self.res.vectors.upsert(points)
                self.times.upsert += time.perf_counter() - t0
            self.tracker.finish(batch)
            await self.reporter.report()


def _sparse_all(texts: list[str]) -> list[SparseVector]:
    return [sparse_document(t) for t in texts]


class _Reporter:
    """Writes progress to PostgreSQL and Redis, at most every ``PROGRESS_EVERY_S``."""

    def __init__(self, res: Resources, upload_id: UUID, tracker: _Tracker) -> None:
        self._res = res
        self._upload_id = upload_id
        self._tracker = tracker
        self._last = 0.0
        self._sent = (-1, -1)

    async def report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        state = (self._tracker.pages_done, self._tracker.chunks)
        if state == self._sent or (not force and now - self._last < PROGRESS_EVERY_S):
            return
        self._last, self._sent = now, state
        t = self._tracker
        async with self._res.db.acquire() as conn:
            alive = await uploads.set_progress(
                conn,
                self._upload_id,
                pages_total=t.pages_total,
                pages_done=t.pages_done,
                pages_skipped=t.skipped,
                chunks=t.chunks,
            )
        if not alive:
            raise UploadGone(str(self._upload_id))
        event = progress.Progress(
            pages_done=t.pages_done, pages_total=t.pages_total, chunks=t.chunks
        )
        with contextlib.suppress(Exception):  # progress is best effort; the row is the truth
            await progress.publish(self._res.redis, self._upload_id, event)

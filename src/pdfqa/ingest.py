"""Pages -> chunks -> embeddings -> points, as one pipeline over the interfaces.

Three stages overlap: the extraction child process reads and cuts page *n+1* (cleanup, chunks
and their keyword vectors: every pass over the document's text happens in that sandboxed child,
never in this process) while the embedder works on an earlier batch; upserts happen as batches
finish. With a remote embedder several batches are in flight at once
(``Embedder.max_concurrency``).

The pipeline knows nothing of an upload's status: it reports :class:`Progress` through a
callback, each carrying the :class:`Checkpoint` that is safe to resume from (every chunk before
it is stored). ``pdfqa.lifecycle`` owns everything else. Point ids derive from the upload id and
the chunk index, and a resumed run restores the chunker's exact state, so a resumed ingestion
stores the same points, and as many, as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import msgspec

from pdfqa import metrics
from pdfqa.chunking import Chunk, ChunkerState, ChunkSpec
from pdfqa.errors import IngestError
from pdfqa.extract import PageChunks
from pdfqa.resources import Resources
from pdfqa.store.vectors import ChunkPoint
from pdfqa.tracing import tracer

__all__ = [
    "NO_TEXT",
    "NO_TEXT_AFTER_OCR",
    "NO_TEXT_BLANK",
    "OCR_CHUNK_BASE",
    "index_page",
    "Checkpoint",
    "PipelineResult",
    "Progress",
    "ReportProgress",
    "StageTimes",
    "Stopped",
    "chunk_spec",
    "fingerprint",
    "ingest_pages",
    "unwrap",
]

log = logging.getLogger(__name__)

NO_TEXT = (
    "No extractable text was found: the PDF seems to hold only images, and OCR is turned off "
    "on this server."
)
NO_TEXT_BLANK = "No text was found: the PDF's pages are blank (nothing on them for OCR to read)."
NO_TEXT_AFTER_OCR = (
    "No text was found, even with OCR: the pages hold no legible text (blank, too faint or "
    "too small to read, or in a script the OCR model does not read)."
)


class Stopped(Exception):
    """The pipeline stopped at a page boundary because it was asked to (a shutdown); the last
    progress it reported holds the checkpoint to resume from."""


class StageTimes(msgspec.Struct):
    """Seconds each stage spent working (they overlap, so they add up to more than the total)."""

    extract: float = 0.0
    chunk: float = 0.0
    embed: float = 0.0
    upsert: float = 0.0
    total: float = 0.0


class Checkpoint(msgspec.Struct, frozen=True):
    """Where a resumed ingestion starts: after page ``pages_done``, every chunk before
    ``chunks`` stored, the chunker as it was then, and the chunks cut but not yet stored."""

    fingerprint: str
    """The chunking settings and embedder it was made with; another one starts over."""
    pages_done: int
    pages_skipped: int
    chunks: int
    chunker: ChunkerState
    pending: list[Chunk]
    ocr_pages: list[int] = []
    """Pages before ``pages_done`` that need OCR (handed to the OCR job at the end)."""


class Progress(msgspec.Struct, frozen=True):
    """How far the pipeline is; ``checkpoint`` is None before the first page is safe.

    ``pages_done`` leaves out the pages waiting for OCR: they are done when OCR has read them."""

    pages_done: int
    pages_total: int
    pages_skipped: int
    chunks: int
    checkpoint: Checkpoint | None


ReportProgress = Callable[[Progress], Awaitable[None]]
"""Called as progress moves (the pipeline waits for it: a raise stops the pipeline)."""


class PipelineResult(msgspec.Struct, frozen=True):
    pages_total: int
    pages_skipped: int
    chunks: int
    times: StageTimes
    ocr_pages: list[int] = []
    """Pages that need OCR: their text layer was not indexed."""


@dataclass
class _Batch:
    seq: int
    chunks: list[Chunk]


@dataclass
class _Tracker:
    """Turns batches finishing out of order into the latest checkpoint that is safe."""

    pages_total: int
    pages_done: int = 0
    chunks: int = 0
    skipped: int = 0
    ocr_pages: list[int] = field(default_factory=list)
    safe: Checkpoint | None = None
    done: set[int] = field(default_factory=set)
    next_seq: int = 0
    candidates: list[tuple[int, Checkpoint]] = field(default_factory=list)
    """(s, checkpoint): the checkpoint is safe once every batch before ``s`` is stored."""

    def finish(self, batch: _Batch) -> None:
        self.done.add(batch.seq)
        self.chunks += len(batch.chunks)
        while self.next_seq in self.done:
            self.done.discard(self.next_seq)
            self.next_seq += 1
        self._promote()

    def offer(self, seq: int, checkpoint: Checkpoint) -> None:
        self.candidates.append((seq, checkpoint))
        self._promote()

    def _promote(self) -> None:
        while self.candidates and self.candidates[0][0] <= self.next_seq:
            _, self.safe = self.candidates.pop(0)
            self.pages_done = self.safe.pages_done


CHECKPOINT_FORMAT = 2
"""Bumped when a checkpoint's contents change meaning (2: chunks carry their keyword vectors)."""


def fingerprint(res: Resources) -> str:
    """What a checkpoint depends on: its format, the embedder and the chunk sizes."""
    s = res.settings
    return (
        f"{CHECKPOINT_FORMAT}:{res.embedder.name}:{s.chunk_tokens}:{s.chunk_overlap_tokens}:"
        f"{res.embedder.max_tokens}"
    )


def chunk_spec(res: Resources) -> ChunkSpec:
    """How the extraction child cuts chunks for this embedder (two word pieces are its own)."""
    limit = res.embedder.max_tokens - 2
    return ChunkSpec(
        tokenizer=str(res.tokenizer),
        target_tokens=min(res.settings.chunk_tokens, limit),
        overlap_tokens=res.settings.chunk_overlap_tokens,
        max_tokens=limit,
    )


async def ingest_pages(
    res: Resources,
    *,
    upload_id: UUID,
    user_id: UUID,
    pages: Callable[[int, ChunkerState | None], AsyncIterator[PageChunks]],
    pages_total: int,
    report: ReportProgress,
    resume: Checkpoint | None = None,
    stop: asyncio.Event | None = None,
) -> PipelineResult:
    """Turn an upload's pages into stored points; ``pages(n, state)`` yields pages from ``n``
    on, cut into chunks by a chunker resumed from ``state``, then the chunks held at the end
    (:meth:`pdfqa.extract.PdfDocument.chunks`).

    Raises :class:`IngestError` (no text, or the extraction's reason), :class:`Stopped` when
    ``stop`` is set (at the next page boundary, after storing what was cut), and whatever the
    stores or ``report`` raise: never an ``ExceptionGroup`` (see :func:`unwrap`).
    """
    started = time.perf_counter()
    pipeline = _Pipeline(res, upload_id, user_id, pages_total, report, resume, stop)
    first = 1 if resume is None else resume.pages_done + 1
    try:
        await pipeline.run(pages(first, None if resume is None else resume.chunker))
    except BaseExceptionGroup as group:
        raise unwrap(group) from None
    if pipeline.stopped:
        raise Stopped(str(upload_id))
    t = pipeline.tracker
    if t.chunks == 0 and not t.ocr_pages:
        raise IngestError(NO_TEXT if not res.settings.ocr else NO_TEXT_BLANK)
    pipeline.times.total = time.perf_counter() - started
    return PipelineResult(
        pages_total=t.pages_total,
        pages_skipped=t.skipped,
        chunks=t.chunks,
        times=pipeline.times,
        ocr_pages=list(t.ocr_pages),
    )


def unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped a task group: its first leaf that is not a cancellation.

    A task group wraps even a single failure; callers classify errors by type (retry what is
    transient, show an :class:`IngestError`'s reason), so they must see the error itself.
    """
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, asyncio.CancelledError):
            return leaf
    return leaves[0] if leaves else group


class _Pipeline:
    """extract -> chunk (producer) -> embed (N workers) -> upsert (one writer), all overlapping."""

    def __init__(  # noqa: PLR0917 - private, called once
        self,
        res: Resources,
        upload_id: UUID,
        user_id: UUID,
        pages_total: int,
        report: ReportProgress,
        resume: Checkpoint | None,
        stop: asyncio.Event | None,
    ) -> None:
        settings = res.settings
        self.res = res
        self.upload_id, self.user_id = upload_id, user_id
        self.times = StageTimes()
        self.tracker = _Tracker(pages_total=pages_total)
        self.reporter = _Reporter(report, self.tracker)
        self.stop = stop
        self.stopped = False
        self.fingerprint = fingerprint(res)
        self.batch_size = settings.embed_batch_size
        self.embedders = max(1, res.embedder.max_concurrency)
        self.chunker = ChunkerState()
        """The child's chunker after the last page read."""
        self.pending: list[Chunk] = []
        self.emitted = 0
        """Chunks cut so far (stored, in flight or pending), counting a checkpoint's."""
        if resume is not None:
            self.chunker = resume.chunker
            self.pending = list(resume.pending)
            self.emitted = resume.chunks + len(resume.pending)
            t = self.tracker
            t.pages_done, t.chunks, t.skipped, t.safe = (
                resume.pages_done,
                resume.chunks,
                resume.pages_skipped,
                resume,
            )
            t.ocr_pages = list(resume.ocr_pages)
        self.to_embed: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=self.embedders * 2)
        self.to_store: asyncio.Queue[tuple[_Batch, list[ChunkPoint]] | None] = asyncio.Queue(
            maxsize=2
        )

    async def run(self, pages: AsyncIterator[PageChunks]) -> None:
        await self.reporter.report(force=True)
        async with asyncio.TaskGroup() as tasks:
            work = [
                tasks.create_task(self.produce(pages)),
                *(tasks.create_task(self.embed()) for _ in range(self.embedders)),
            ]
            tasks.create_task(self.store())
            await self._until_done_or_stopped(work)
            await self.to_store.put(None)
        await self.reporter.report(force=True)

    async def _until_done_or_stopped(self, work: list[asyncio.Task[None]]) -> None:
        """Wait for extraction and embedding to finish, or for ``stop``.

        On ``stop`` they are cancelled at once, wherever they are (a page being read, a batch
        being embedded): their work is not stored, and the checkpoint, which only ever covers
        stored chunks, stays where it was. Only the upserts already handed to the store
        finish (milliseconds each), so a shutdown never waits for the machine's CPU to get
        through a page or a batch, however busy it is.
        """
        if self.stop is None:
            await asyncio.gather(*work)
            return
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(work)
            while pending:
                done, pending = await asyncio.wait(
                    {*pending, stopped}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stopped)
                for task in done:
                    if task is not stopped:
                        task.result()  # an error: the task group ends the pipeline with it
                if stopped in done:
                    self.stopped = True
                    for task in work:
                        task.cancel()
                    await asyncio.gather(*work, return_exceptions=True)
                    return
        finally:
            stopped.cancel()

    async def produce(self, pages: AsyncIterator[PageChunks]) -> None:
        seq = 0

        async def cut(final: bool) -> None:
            nonlocal seq
            while len(self.pending) >= self.batch_size or (final and self.pending):
                batch = self.pending[: self.batch_size]
                self.pending = self.pending[self.batch_size :]
                await self.to_embed.put(_Batch(seq, batch))
                seq += 1

        while True:
            if self.stop is not None and self.stop.is_set():
                self.stopped = True
                break
            t0 = time.perf_counter()
            with tracer.start_as_current_span("extract page") as span:
                item = await anext(pages, None)
                if item is not None:
                    # The child read and cut the page: how many chunks it let out, how long
                    # cutting them took there.
                    if item.page is not None:
                        span.set_attribute("page", item.page.number)
                    span.set_attribute("chunks", len(item.chunks))
                    span.set_attribute("chunk_ms", round(item.chunk_s * 1000, 3))
            waited = time.perf_counter() - t0
            if item is None:
                self.times.extract += waited
                break
            # The wait covers the child's cutting too: each stage gets its own share.
            self.times.chunk += item.chunk_s
            self.times.extract += max(0.0, waited - item.chunk_s)
            self.pending += item.chunks
            self.emitted += len(item.chunks)
            page = item.page
            if page is None:  # the chunks held after the last page
                break
            metrics.INGEST_PAGES.inc()
            if page.error is not None:
                self.tracker.skipped += 1
                log.warning(
                    "upload %s: page %d skipped: %s", self.upload_id, page.number, page.error
                )
            if page.needs_ocr:  # OCR reads the whole page; the child did not index its text
                self.tracker.ocr_pages.append(page.number)
            if item.chunker is not None:
                self.chunker = item.chunker
            await cut(final=False)
            # Safe to resume after this page once every batch sent so far is stored.
            self.tracker.offer(
                seq,
                Checkpoint(
                    fingerprint=self.fingerprint,
                    pages_done=page.number,
                    pages_skipped=self.tracker.skipped,
                    chunks=self.emitted - len(self.pending),
                    chunker=self.chunker,
                    pending=list(self.pending),
                    ocr_pages=list(self.tracker.ocr_pages),
                ),
            )
        if not self.stopped:
            await cut(final=True)
        for _ in range(self.embedders):
            await self.to_embed.put(None)

    async def embed(self) -> None:
        upload_id, user_id = str(self.upload_id), str(self.user_id)
        while (batch := await self.to_embed.get()) is not None:
            if self.stop is not None and self.stop.is_set():
                # Stopping: drop what is not embedded yet. The checkpoint stays at the last page
                # whose batches were all stored, so nothing dropped is lost: the job resumes.
                self.stopped = True
                continue
            points: list[ChunkPoint] = []
            if batch.chunks:
                texts = [c.text for c in batch.chunks]
                t0 = time.perf_counter()
                with tracer.start_as_current_span("embed batch", attributes={"chunks": len(texts)}):
                    dense = await self.res.embedder.embed_documents(texts)
                took = time.perf_counter() - t0
                self.times.embed += took
                metrics.EMBED_BATCH.labels(self.res.settings.embedding_provider).observe(took)
                points = [
                    ChunkPoint(
                        upload_id=upload_id,
                        user_id=user_id,
                        chunk_index=chunk.index,
                        pages=chunk.pages,
                        text=chunk.text,
                        dense=vector,
                        sparse=chunk.sparse,
                    )
                    for chunk, vector in zip(batch.chunks, dense, strict=True)
                ]
            await self.to_store.put((batch, points))

    async def store(self) -> None:
        while (item := await self.to_store.get()) is not None:
            batch, points = item
            if points:
                t0 = time.perf_counter()
                with tracer.start_as_current_span(
                    "upsert batch", attributes={"points": len(points)}
                ):
                    await self.res.vectors.upsert(points)
                self.times.upsert += time.perf_counter() - t0
                metrics.INGEST_CHUNKS.inc(len(points))
            self.tracker.finish(batch)
            await self.reporter.report()


PROGRESS_EVERY_S = 0.25


class _Reporter:
    """Calls the progress callback when progress moved, at most every ``PROGRESS_EVERY_S``."""

    def __init__(self, report: ReportProgress, tracker: _Tracker) -> None:
        self._report = report
        self._tracker = tracker
        self._last = 0.0
        self._sent: tuple[int, int, int] = (-1, -1, -1)

    async def report(self, *, force: bool = False) -> None:
        t = self._tracker
        now = time.monotonic()
        waiting = len(t.safe.ocr_pages) if t.safe is not None else 0
        state = (t.pages_done, t.chunks, t.skipped)
        if state == self._sent or (not force and now - self._last < PROGRESS_EVERY_S):
            return
        self._last, self._sent = now, state
        await self._report(
            Progress(
                pages_done=t.pages_done - waiting,
                pages_total=t.pages_total,
                pages_skipped=t.skipped,
                chunks=t.chunks,
                checkpoint=t.safe,
            )
        )


OCR_CHUNK_BASE = 1 << 40
"""OCR'd pages' chunks are numbered from here (``+ page * 2**16 + i``), apart from the text
pass's, so re-reading a page overwrites exactly its own points."""
_OCR_CHUNKS_PER_PAGE = 1 << 16


async def index_page(
    res: Resources, *, upload_id: UUID, user_id: UUID, page: int, chunks: list[Chunk]
) -> int:
    """Embed and store one page's chunks on their own (an OCR'd page, cut by the OCR child);
    the chunks stored."""
    settings, embedder = res.settings, res.embedder
    chunks = chunks[:_OCR_CHUNKS_PER_PAGE]
    base = OCR_CHUNK_BASE + page * _OCR_CHUNKS_PER_PAGE
    for start in range(0, len(chunks), settings.embed_batch_size):
        batch = chunks[start : start + settings.embed_batch_size]
        dense = await embedder.embed_documents([c.text for c in batch])
        await res.vectors.upsert(
            [
                ChunkPoint(
                    upload_id=str(upload_id),
                    user_id=str(user_id),
                    chunk_index=base + start + i,
                    pages=[page],
                    text=chunk.text,
                    dense=vector,
                    sparse=chunk.sparse,
                )
                for i, (chunk, vector) in enumerate(zip(batch, dense, strict=True))
            ]
        )
    return len(chunks)

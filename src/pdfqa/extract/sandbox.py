"""The sandbox: a child process that reads a PDF page by page, and its pipe protocol.

``open_pdf(path, limits)`` returns a :class:`PdfDocument`, an async context manager. Entering it
starts a child process (``spawn`` context: the worker has threads, so never plain ``fork``) that
opens the file with pypdfium2 under ``RLIMIT_AS``/``RLIMIT_CPU`` and reports the page count or a
reason to refuse the file (``pages.check_document``); leaving it kills the child, whatever
happened.

``PdfDocument.pages()`` yields one :class:`PageText` per page, in order. The parent asks for
page *n+1* when it hands out page *n*, so the child works one page ahead and never further
(backpressure), and the parent waits for replies with ``loop.add_reader`` (never blocking the
event loop). A page that takes longer than ``page_timeout_s``, exhausts the child's memory or
crashes it is yielded with ``error`` set and empty text, and a fresh child resumes at the next
page; too many failures in a row (or the first pages all failing) raise :class:`IngestError`.

What the child does with a page is ``pages.TextReader``'s business, or ``ocr.OcrReader``'s in
the OCR job (``ExtractLimits.for_ocr``: more memory, CPU per page, a lower priority). Messages
on the pipe are msgpack (msgspec), never pickle.

Given a :class:`~pdfqa.chunking.ChunkSpec`, the child also cuts the text into chunks (cleanup,
chunking and keyword vectors: every pass over the document's text), so nothing a PDF says is
processed in the parent, whose event loop serves the API and renews the job's lease: a page
crafted to make that work slow costs the child its page deadline and CPU limit, and nothing
else. ``PdfDocument.chunks()`` yields each page with the chunks it let out of the chunker and
the chunker's state after it (a checkpoint to resume from; a fresh child after a failed page
resumes from the last one), then the chunks held after the last page;
``PdfDocument.some_chunks()`` cuts each page on its own (the OCR job's pages).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import signal
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

import msgspec

from pdfqa.chunking import Chunk, ChunkerState, ChunkSpec
from pdfqa.errors import IngestError
from pdfqa.extract.ocr import OcrConfig, OcrReader
from pdfqa.extract.pages import PDFIUM_ERRORS, PageText, TextReader, check_document, failed
from pdfqa.pdf_header import HEADER_WINDOW, NOT_A_PDF, pdf_header_offset

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from pdfqa.settings import Settings

__all__ = ["ExtractLimits", "PageChunks", "PageText", "PdfDocument", "open_pdf"]

MAX_FAILED_IN_A_ROW: Final = 5
"""More consecutive failed pages than this abort the document."""
FIRST_PAGES: Final = 3
"""If the first ``min(FIRST_PAGES, page_count)`` pages all fail, the document is aborted."""
MIN_OPEN_TIMEOUT_S: Final = 30.0
"""Lower bound of the wall-clock limit for starting a child and opening the file."""
OCR_OPEN_TIMEOUT_S: Final = 120.0
"""... and for an OCR child, which loads its models as it starts."""
OCR_START_CPU_S: Final = 60
"""CPU seconds an OCR child may spend loading its models, beyond its pages' share."""
OCR_MODELS_FAILED: Final = (
    "The scanned pages could not be read: the server's OCR models failed to load. The operator "
    "should check PDFQA_OCR_REC_MODEL and PDFQA_OCR_DET_MODEL (the worker's log has the details)."
)
"""The reason given when an OCR child cannot load its models (details go to the log)."""
STARVED_TIMEOUT_FACTOR: Final = 10
"""An idle-priority OCR child starved of CPU has its page deadline moved by the time it waited,
up to this many times ``page_timeout_s`` in all (a child that hangs still ends)."""


class ExtractLimits(msgspec.Struct, frozen=True):
    """Resource limits of the extraction child process."""

    memory_mb: int
    """Address-space limit (``RLIMIT_AS``) of each child, in MiB."""
    cpu_s: int
    """CPU seconds for the whole document, shared by all children that work on it."""
    page_timeout_s: float
    """Wall-clock limit for one page, enforced by the parent (it kills the child)."""
    max_pages: int
    """Documents with more pages are refused with "too many pages"."""
    tables: bool = True
    """Render ruled tables with pdfplumber (slower; much better for financial tables)."""
    ocr_threshold: float | None = None
    """Flag pages that need OCR (``PageText.needs_ocr``), with this many characters per square
    inch as the least a page with an image must hold; None: OCR is off, flag nothing."""
    ocr: OcrConfig | None = None
    """Read pages with OCR instead of their text layer (the OCR job's children)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractLimits:
        """Take the limits from the ``extract_*``, ``page_timeout_s`` and ``max_pages`` settings."""
        return cls(
            memory_mb=settings.extract_memory_mb,
            cpu_s=settings.extract_cpu_s,
            page_timeout_s=settings.page_timeout_s,
            max_pages=settings.max_pages,
            tables=settings.extract_tables,
            ocr_threshold=settings.ocr_min_chars_per_sq_in if settings.ocr else None,
        )

    @classmethod
    def for_ocr(cls, settings: Settings, pages: int) -> ExtractLimits:
        """The OCR children's limits: ``ocr_*`` settings, CPU for ``pages`` pages in all."""
        config = OcrConfig(
            scale=settings.ocr_scale,
            page_cpu_s=settings.ocr_page_cpu_s,
            nice=settings.ocr_nice,
            idle=settings.ocr_idle_priority,
            threads=settings.ocr_threads,
            language=settings.ocr_language,
            det_model=str(settings.ocr_det_model) if settings.ocr_det_model else None,
            rec_model=str(settings.ocr_rec_model) if settings.ocr_rec_model else None,
            rec_keys=str(settings.ocr_rec_keys) if settings.ocr_rec_keys else None,
            ocr_version=settings.ocr_version,
        )
        return cls(
            memory_mb=settings.ocr_memory_mb,
            cpu_s=settings.ocr_page_cpu_s * max(1, pages) + OCR_START_CPU_S,
            page_timeout_s=settings.ocr_page_timeout_s,
            max_pages=settings.max_pages,
            tables=False,
            ocr=config,
        )


class PageChunks(msgspec.Struct, frozen=True):
    """A page the child read, with the chunks cut from the text that page let through."""

    page: PageText | None
    """None for the last item of :meth:`PdfDocument.chunks`: what the chunker held at the end."""
    chunks: list[Chunk] = []
    """The chunks now complete, from this page or the pages before it (running headers and
    footers are found by comparing neighbouring pages, so a page's chunks come a few pages
    later)."""
    chunker: ChunkerState | None = None
    """The chunker's state after this page: resuming from it cuts exactly what is left."""
    chunk_s: float = 0.0
    """Seconds the child spent cleaning and chunking for this item."""


# --- the pipe protocol ------------------------------------------------------------------------
# parent -> child


class _Read(msgspec.Struct, tag="read"):
    number: int


class _Finish(msgspec.Struct, tag="finish"):
    """Cut what the chunker still holds (after the last page)."""


_Request = _Read | _Finish

# child -> parent


class _Opened(msgspec.Struct, tag="opened"):
    page_count: int


class _Refused(msgspec.Struct, tag="refused"):
    reason: str


class _Page(msgspec.Struct, tag="page"):
    page: PageText
    cpu_s: float
    """CPU time the child has used so far."""
    chunks: list[Chunk] = []
    chunker: ChunkerState | None = None
    chunk_s: float = 0.0


class _Rest(msgspec.Struct, tag="rest"):
    chunks: list[Chunk]
    chunk_s: float


_Reply = _Opened | _Refused | _Page | _Rest


class _Timeout(msgspec.Struct):
    pass


class _Died(msgspec.Struct):
    exitcode: int | None


def open_pdf(path: Path, limits: ExtractLimits, chunking: ChunkSpec | None = None) -> PdfDocument:
    """Return an (unopened) :class:`PdfDocument` for ``path``; use it with ``async with``.

    ``chunking`` is needed for :meth:`PdfDocument.chunks` and :meth:`PdfDocument.some_chunks`.
    """
    return PdfDocument(path, limits, chunking)


class PdfDocument:
    """A PDF being extracted by a child process; an async context manager.

    ``__aenter__`` raises :class:`IngestError` when the file is empty, not a PDF, corrupt,
    password-protected, has no pages, more than ``max_pages`` pages or a broken page tree.
    ``page_count`` is known after it. ``__aexit__`` kills the child.
    """

    page_count: int

    def __init__(
        self, path: Path, limits: ExtractLimits, chunking: ChunkSpec | None = None
    ) -> None:
        self._path = path
        self._limits = limits
        self._chunking = chunking
        self._chunker: ChunkerState | None = None
        """The chunker's last state, for a new child to start from."""
        self._state_file: str | None = None
        self._frames: _Frames | None = None
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._decoder: msgspec.msgpack.Decoder[_Reply] = msgspec.msgpack.Decoder(_Reply)
        self._encoder = msgspec.msgpack.Encoder()
        self._cpu_done = 0.0  # CPU seconds used by children that are gone
        self._cpu_now = 0.0  # CPU seconds used by the current child
        self._sent_cpu = 0.0  # the current child's CPU seconds when the awaited page was asked
        self._iterating = False
        self.page_count = 0

    async def __aenter__(self) -> PdfDocument:
        head = await asyncio.to_thread(_read_head, self._path)
        if not head:
            raise IngestError("The file is empty.")
        if pdf_header_offset(head) is None:
            raise IngestError(NOT_A_PDF)
        try:
            self.page_count = await self._start(first_page=1)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    def pages(self, start: int = 1) -> AsyncIterator[PageText]:
        """Yield every page ``start..page_count`` in order; call once, inside ``async with``.

        ``start`` above 1 resumes an ingestion from its checkpoint.
        """
        self._begin(chunked=False)
        return _texts(self._pages(list(range(max(1, start), self.page_count + 1))))

    def some_pages(self, numbers: Sequence[int]) -> AsyncIterator[PageText]:
        """Yield the pages ``numbers`` (ascending), each exactly once, a failed one with its
        ``error``; never aborts the document (the OCR job's way of reading)."""
        self._begin(chunked=False)
        return _texts(self._pages(self._wanted(numbers), abort=False))

    def chunks(
        self, start: int = 1, resume: ChunkerState | None = None
    ) -> AsyncIterator[PageChunks]:
        """Like :meth:`pages`, each page with the chunks it lets out of the child's chunker;
        then one item with ``page=None`` and the chunks held after the last page.

        ``resume`` is the chunker's state after page ``start - 1`` (a checkpoint's).
        """
        self._begin(chunked=True)
        self._chunker = resume
        return self._chunked(list(range(max(1, start), self.page_count + 1)), resume is not None)

    def some_chunks(self, numbers: Sequence[int]) -> AsyncIterator[PageChunks]:
        """Like :meth:`some_pages`, each page cut into chunks on its own (OCR'd pages)."""
        self._begin(chunked=True)
        return self._pages(self._wanted(numbers), abort=False)

    def _wanted(self, numbers: Sequence[int]) -> list[int]:
        return sorted({n for n in numbers if 1 <= n <= self.page_count})

    def _begin(self, *, chunked: bool) -> None:
        if self._conn is None and self.page_count == 0:
            raise RuntimeError("pages() needs an open PdfDocument (use `async with`)")
        if self._iterating:
            raise RuntimeError("pages() can be iterated only once")
        if chunked and self._chunking is None:
            raise RuntimeError("chunks() needs a ChunkSpec (open_pdf(..., chunking=...))")
        self._iterating = True

    async def _chunked(self, numbers: list[int], resumed: bool) -> AsyncIterator[PageChunks]:
        if resumed:
            await self._stop()  # the child that opened the file has a fresh chunker: a new one
        async for item in self._pages(numbers):
            yield item
        yield await self._finish()

    async def _finish(self) -> PageChunks:
        """The chunks the child's chunker holds after the last page."""
        if self._conn is None:
            await self._start(first_page=self.page_count + 1)
        self._send(_Finish())
        loop = asyncio.get_running_loop()
        reply = await self._receive(loop.time() + self._limits.page_timeout_s)
        if isinstance(reply, _Rest):
            return PageChunks(page=None, chunks=reply.chunks, chunk_s=reply.chunk_s)
        await self._stop()
        if isinstance(reply, _Timeout):
            reason = f"took longer than {_seconds(self._limits.page_timeout_s)}"
        elif isinstance(reply, _Died):
            reason = self._death_reason(0, reply.exitcode).removeprefix("opening the PDF ")
        else:
            reason = "could not be completed"
        raise IngestError(f"Cutting the last pages' text into passages {reason}.")

    async def _pages(self, numbers: list[int], *, abort: bool = True) -> AsyncIterator[PageChunks]:
        limits = self._limits
        failed_in_a_row = 0
        failed_total = 0
        sent_at: float | None = None  # when the request for `number` went to the live child
        loop = asyncio.get_running_loop()
        for position, number in enumerate(numbers):
            if self._conn is None:
                await self._start(first_page=number)
            if sent_at is None:
                self._send(number)
                sent_at = loop.time()
                self._sent_cpu = self._child_cpu()
            reply = await self._receive_page(sent_at)
            sent_at = None
            cut: list[Chunk] = []
            if isinstance(reply, _Page):
                self._cpu_now = reply.cpu_s
                if reply.chunker is not None:
                    self._chunker = reply.chunker
                if position + 1 < len(numbers):
                    self._send(numbers[position + 1])  # the child reads ahead by one page
                    sent_at = loop.time()
                    self._sent_cpu = reply.cpu_s
                if reply.page.error is None:
                    failed_in_a_row = 0
                    yield PageChunks(reply.page, reply.chunks, reply.chunker, reply.chunk_s)
                    continue
                reason = reply.page.error
                cut = reply.chunks  # earlier pages' chunks, let out as this one went in
            elif isinstance(reply, _Timeout):
                reason = f"page {number} took longer than {_seconds(limits.page_timeout_s)}"
            elif isinstance(reply, _Died):
                reason = self._death_reason(number, reply.exitcode)
            else:
                reason = f"page {number} could not be read"
            if not isinstance(reply, _Page):
                await self._stop()
            failed_in_a_row += 1
            failed_total += 1
            if abort and (
                failed_in_a_row > MAX_FAILED_IN_A_ROW
                or failed_total == number >= min(FIRST_PAGES, self.page_count)
            ):
                raise IngestError(_sentence(reason))
            # A page the child never finished was not fed to its chunker: the next child
            # resumes from the state after the page before it.
            yield PageChunks(failed(number, reason), cut, self._chunker)

    # --- child management -------------------------------------------------------------------

    async def _start(self, first_page: int) -> int:
        limits = self._limits
        ctx = get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        budget = max(1, math.ceil(limits.cpu_s - self._cpu_done))
        self._cpu_now = 0.0
        # The chunker's state (a few pages' text: megabytes on hostile pages) goes through a
        # file: passed with the process's arguments, it would be written into the spawn pipe
        # while this event loop waits for the child to start and read it.
        state = None
        if self._chunker is not None:
            state = await asyncio.to_thread(_write_state, self._chunker)
            self._state_file = state
        proc = ctx.Process(
            target=_child_main,
            args=(
                _ChildJob(
                    path=str(self._path),
                    memory_mb=limits.memory_mb,
                    cpu_s=budget,
                    max_pages=limits.max_pages,
                    check_pages=first_page == 1 and limits.ocr is None,
                    tables=limits.tables,
                    ocr_threshold=limits.ocr_threshold,
                    ocr=limits.ocr,
                    chunking=self._chunking,
                    chunker_file=state,
                ),
                child_conn,
            ),
            name=f"pdfqa-extract:{self._path.name}",
            daemon=True,
        )
        proc.start()
        child_conn.close()
        self._proc, self._conn = proc, parent_conn
        self._frames = _Frames(parent_conn.fileno())
        loop = asyncio.get_running_loop()
        least = OCR_OPEN_TIMEOUT_S if limits.ocr is not None else MIN_OPEN_TIMEOUT_S
        reply = await self._receive(loop.time() + max(least, limits.page_timeout_s))
        if isinstance(reply, _Opened):
            return reply.page_count
        await self._stop()
        if isinstance(reply, _Refused):
            raise IngestError(reply.reason)
        if isinstance(reply, _Timeout):
            raise IngestError("The PDF took too long to open.")
        if isinstance(reply, _Died):
            raise IngestError(_sentence(self._death_reason(0, reply.exitcode)))
        raise IngestError("The PDF could not be opened.")

    def _child_cpu(self) -> float:
        used = _cpu_seconds(self._proc.pid) if self._proc is not None else None
        return used or 0.0

    async def _receive_page(self, sent_at: float) -> _Reply | _Timeout | _Died:
        """The reply for the page requested at ``sent_at``, within ``page_timeout_s``.

        An idle-priority OCR child only runs when nothing else wants the CPU, so its deadline
        moves by the time it waited for the CPU, up to :data:`STARVED_TIMEOUT_FACTOR` times the
        limit: a busy worker delays a scan but never makes it skip pages. The wait is the wall
        time since the request less the child's progress: the CPU time it used meanwhile divided
        by its inference threads (they run in parallel: a 2-thread child that had the CPU for
        3 s shows 6 s of CPU time). Work on one thread only looks like waiting, so an unstarved
        page gets at most ``threads`` times the limit.
        """
        limits = self._limits
        deadline = sent_at + limits.page_timeout_s
        if limits.ocr is None or not limits.ocr.idle or self._proc is None:
            return await self._receive(deadline)
        loop = asyncio.get_running_loop()
        hard = sent_at + limits.page_timeout_s * STARVED_TIMEOUT_FACTOR
        threads = limits.ocr.threads or os.cpu_count() or 1  # onnxruntime's default: per core
        while True:
            reply = await self._receive(deadline)
            now = loop.time()
            used = _cpu_seconds(self._proc.pid)
            if not isinstance(reply, _Timeout) or used is None or now >= hard:
                return reply
            starved = (now - sent_at) - (used - self._sent_cpu) / threads
            moved = min(hard, sent_at + limits.page_timeout_s + max(0.0, starved))
            if moved <= now + 0.5:  # it had its time: a real timeout
                return reply
            deadline = moved

    def _send(self, request: int | _Finish) -> None:
        assert self._conn is not None
        message = _Read(request) if isinstance(request, int) else request
        # A few bytes into a pipe the child drains: this never blocks.
        self._conn.send_bytes(self._encoder.encode(message))

    async def _receive(self, deadline: float) -> _Reply | _Timeout | _Died:
        proc, frames = self._proc, self._frames
        assert proc is not None
        assert frames is not None
        try:
            data = await frames.read(deadline)
        except (EOFError, OSError):
            await _reap(proc)
            return _Died(proc.exitcode)
        if data is None:
            return _Timeout()
        if len(data) < _DECODE_ON_LOOP:
            return self._decoder.decode(data)
        return await asyncio.to_thread(self._decoder.decode, data)

    def _death_reason(self, number: int, exitcode: int | None) -> str:
        what = f"page {number}" if number else "opening the PDF"
        limits = self._limits
        if exitcode == -signal.SIGXCPU:
            return f"{what} used up the CPU-time limit of {limits.cpu_s} s for the document"
        if exitcode == -signal.SIGABRT:
            # pdfium aborts when an allocation fails, which under RLIMIT_AS means the limit was
            # hit (often by one huge allocation, so the child's peak size says nothing).
            return f"{what} needed more than {limits.memory_mb} MB of memory"
        return f"{what} crashed the PDF reader (exit code {exitcode})"

    async def _stop(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = self._frames = None
        if self._state_file is not None:  # the child reads and removes it; unless it died first
            # A metadata operation of microseconds, on a cancellation path: not worth a thread.
            Path(self._state_file).unlink(missing_ok=True)  # noqa: ASYNC240
            self._state_file = None
        self._cpu_done += self._cpu_now
        self._cpu_now = 0.0
        if conn is not None:
            conn.close()
        if proc is None:
            return
        if proc.exitcode is None:
            proc.kill()
            with contextlib.suppress(asyncio.CancelledError):
                await _reap(proc)
        if proc.exitcode is not None:
            proc.close()


_DECODE_ON_LOOP: Final = 256 << 10
"""Replies this large or larger (pages of hostile length) are decoded off the event loop."""


class _Frames:
    """Messages from the child, read without ever blocking the event loop.

    The child writes with ``Connection.send_bytes`` (a 4-byte big-endian length, or -1 and an
    8-byte length, then the bytes). A reply larger than the pipe's buffer (a long page's text,
    its chunks and the chunker's state) arrives in pieces: ``recv_bytes`` on a descriptor the
    loop made non-blocking would fail half-way through it, and on a blocking one would stall the
    loop until the child had written all of it. Here each piece is read as it comes.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        os.set_blocking(fd, False)

    async def read(self, deadline: float) -> bytes | None:
        """The next message; None if none is complete by ``deadline`` (loop time); raises
        ``EOFError`` when the child closed its end."""
        loop = asyncio.get_running_loop()
        while (message := self._take()) is None:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                if not await _readable(self._fd, deadline - loop.time()):
                    return None
                continue
            if not data:
                raise EOFError("the extraction child closed the pipe")
            self._buffer += data
        return message

    def _take(self) -> bytes | None:
        buffer = self._buffer
        if len(buffer) < 4:
            return None
        (size,) = struct.unpack("!i", buffer[:4])
        start = 4
        if size == -1:
            if len(buffer) < 12:
                return None
            (size,) = struct.unpack("!Q", buffer[4:12])
            start = 12
        end = start + size
        if len(buffer) < end:
            return None
        message = bytes(buffer[start:end])
        del buffer[:end]
        return message


_READ_SIZE: Final = 1 << 20


def _write_state(state: ChunkerState) -> str:
    fd, path = tempfile.mkstemp(prefix="pdfqa-chunker-", suffix=".msgpack")
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.msgpack.encode(state))
    return path


def _read_state(path: str) -> ChunkerState:
    file = Path(path)
    try:
        return msgspec.msgpack.decode(file.read_bytes(), type=ChunkerState)
    finally:
        file.unlink(missing_ok=True)


def _cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) process ``pid`` has used; None where unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


async def _readable(fd: int, within: float) -> bool:
    """Wait until ``fd`` is readable (data, EOF or process exit); False on timeout."""
    if within <= 0:
        return False
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, within)
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
    return True


async def _reap(proc: BaseProcess) -> None:
    """Wait (off the loop) until an exiting child is reaped, so ``exitcode`` is set."""
    await _readable(proc.sentinel, 5.0)
    # The sentinel closes while the kernel is still tearing the process down: a short join.
    if proc.exitcode is None:
        await asyncio.to_thread(proc.join, 5.0)


async def _texts(items: AsyncIterator[PageChunks]) -> AsyncIterator[PageText]:
    async for item in items:
        if item.page is not None:
            yield item.page


def _read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(HEADER_WINDOW + 8)


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _sentence(reason: str) -> str:
    return f"{reason[0].upper()}{reason[1:]}."


# --- the child process ------------------------------------------------------------------------


class _ChildJob(msgspec.Struct, frozen=True):
    path: str
    memory_mb: int
    cpu_s: int
    max_pages: int
    check_pages: bool
    tables: bool
    ocr_threshold: float | None
    ocr: OcrConfig | None
    chunking: ChunkSpec | None
    chunker_file: str | None
    """Where the chunker's state to resume from is (the child removes the file)."""


def _child_main(job: _ChildJob, conn: Connection) -> None:
    """Entry point of the extraction child: open ``path``, then answer page requests until EOF."""
    _limit(resource.RLIMIT_CORE, 0, 0)
    _limit(resource.RLIMIT_AS, job.memory_mb << 20, job.memory_mb << 20)
    _limit(resource.RLIMIT_CPU, job.cpu_s, job.cpu_s + 2)

    import pypdfium2 as pdfium

    encoder = msgspec.msgpack.Encoder()
    try:
        pdf = pdfium.PdfDocument(job.path)
    except pdfium.PdfiumError as exc:
        reason = PDFIUM_ERRORS.get(exc.err_code or 0, "The PDF is corrupt and cannot be opened.")
        conn.send_bytes(encoder.encode(_Refused(reason)))
        return
    count = len(pdf)
    refusal = check_document(pdf, count, job.max_pages) if job.check_pages else None
    if refusal is not None:
        conn.send_bytes(encoder.encode(_Refused(refusal)))
        return
    reader: TextReader | OcrReader
    if job.ocr is not None:
        try:
            reader = OcrReader(pdf, job.ocr, cpu_hard_s=job.cpu_s)
        except Exception as exc:  # a model that cannot load: every page would fail alike
            # The details (paths, the runtime's message) are for the operator's log; the
            # person who uploaded gets what happened and who can fix it.
            sys.stderr.write(f"pdfqa OCR child: the OCR models could not be loaded: {exc!r}\n")
            conn.send_bytes(encoder.encode(_Refused(OCR_MODELS_FAILED)))
            return
    else:
        reader = TextReader(pdf, job.path, tables=job.tables, ocr_threshold=job.ocr_threshold)
    state = _read_state(job.chunker_file) if job.chunker_file is not None else None
    cutter = _Cutter(job.chunking, state, each_page=job.ocr is not None)
    conn.send_bytes(encoder.encode(_Opened(count)))
    _serve(job, reader, cutter, conn)


def _serve(
    job: _ChildJob, reader: TextReader | OcrReader, cutter: _Cutter, conn: Connection
) -> None:
    """Answer the parent's requests until it closes the pipe."""
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(_Request)
    while True:
        try:
            request = decoder.decode(conn.recv_bytes())
        except (EOFError, OSError):  # the parent is gone (even killed): nothing left to do
            return
        if isinstance(request, _Finish):
            started = time.perf_counter()
            rest = cutter.finish()
            conn.send_bytes(encoder.encode(_Rest(rest, time.perf_counter() - started)))
            continue
        number = request.number
        try:
            page = reader.read(number)
        except MemoryError:
            page = failed(number, f"page {number} needed more than {job.memory_mb} MB of memory")
        except Exception as exc:  # a broken page must not take the document down
            page = failed(number, f"page {number} could not be read ({exc})")
        # Chunking errors are not caught: the child dies, and the parent skips the page and
        # resumes a new child from the chunker's state before it.
        started = time.perf_counter()
        chunks = cutter.add(page)
        took = time.perf_counter() - started
        reply = _Page(page, time.process_time(), chunks, cutter.state(), took)
        conn.send_bytes(encoder.encode(reply))


class _Cutter:
    """The child's chunker: one for the whole document, or one per page (OCR'd pages)."""

    def __init__(self, spec: ChunkSpec | None, state: ChunkerState | None, *, each_page: bool):
        self._spec = spec
        self._count = spec.counter() if spec is not None else None
        self._chunker = (
            spec.chunker(self._count, state)
            if spec is not None and self._count is not None and not each_page
            else None
        )

    def add(self, page: PageText) -> list[Chunk]:
        if self._spec is None or self._count is None:
            return []
        # A page for OCR is read by the OCR job; its text layer is missing or garbage.
        text = "" if page.error is not None or page.needs_ocr else page.text
        if self._chunker is not None:
            return self._chunker.add_page(page.number, text)
        if not text:
            return []
        chunker = self._spec.chunker(self._count)
        return [*chunker.add_page(page.number, text), *chunker.finish()]

    def finish(self) -> list[Chunk]:
        return self._chunker.finish() if self._chunker is not None else []

    def state(self) -> ChunkerState | None:
        return self._chunker.snapshot() if self._chunker is not None else None


def _limit(which: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))

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
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

import msgspec

from pdfqa.errors import IngestError
from pdfqa.extract.ocr import OcrConfig, OcrReader
from pdfqa.extract.pages import PDFIUM_ERRORS, PageText, TextReader, check_document, failed
from pdfqa.pdf_header import HEADER_WINDOW, NOT_A_PDF, pdf_header_offset

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from pdfqa.settings import Settings

__all__ = ["ExtractLimits", "PageText", "PdfDocument", "open_pdf"]

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


# --- the pipe protocol (child -> parent); the parent sends bare page numbers -------------------


class _Opened(msgspec.Struct, tag="opened"):
    page_count: int


class _Refused(msgspec.Struct, tag="refused"):
    reason: str


class _Page(msgspec.Struct, tag="page"):
    page: PageText
    cpu_s: float
    """CPU time the child has used so far."""


_Reply = _Opened | _Refused | _Page


class _Timeout(msgspec.Struct):
    pass


class _Died(msgspec.Struct):
    exitcode: int | None


def open_pdf(path: Path, limits: ExtractLimits) -> PdfDocument:
    """Return an (unopened) :class:`PdfDocument` for ``path``; use it with ``async with``."""
    return PdfDocument(path, limits)


class PdfDocument:
    """A PDF being extracted by a child process; an async context manager.

    ``__aenter__`` raises :class:`IngestError` when the file is empty, not a PDF, corrupt,
    password-protected, has no pages, more than ``max_pages`` pages or a broken page tree.
    ``page_count`` is known after it. ``__aexit__`` kills the child.
    """

    page_count: int

    def __init__(self, path: Path, limits: ExtractLimits) -> None:
        self._path = path
        self._limits = limits
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
        self._begin()
        return self._pages(list(range(max(1, start), self.page_count + 1)))

    def some_pages(self, numbers: Sequence[int]) -> AsyncIterator[PageText]:
        """Yield the pages ``numbers`` (ascending), each exactly once, a failed one with its
        ``error``; never aborts the document (the OCR job's way of reading)."""
        self._begin()
        wanted = sorted({n for n in numbers if 1 <= n <= self.page_count})
        return self._pages(wanted, abort=False)

    def _begin(self) -> None:
        if self._conn is None and self.page_count == 0:
            raise RuntimeError("pages() needs an open PdfDocument (use `async with`)")
        if self._iterating:
            raise RuntimeError("pages() can be iterated only once")
        self._iterating = True

    async def _pages(self, numbers: list[int], *, abort: bool = True) -> AsyncIterator[PageText]:
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
            if isinstance(reply, _Page):
                self._cpu_now = reply.cpu_s
                if position + 1 < len(numbers):
                    self._send(numbers[position + 1])  # the child reads ahead by one page
                    sent_at = loop.time()
                    self._sent_cpu = reply.cpu_s
                if reply.page.error is None:
                    failed_in_a_row = 0
                    yield reply.page
                    continue
                reason = reply.page.error
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
            yield failed(number, reason)

    # --- child management -------------------------------------------------------------------

    async def _start(self, first_page: int) -> int:
        limits = self._limits
        ctx = get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        budget = max(1, math.ceil(limits.cpu_s - self._cpu_done))
        self._cpu_now = 0.0
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
                ),
                child_conn,
            ),
            name=f"pdfqa-extract:{self._path.name}",
            daemon=True,
        )
        proc.start()
        child_conn.close()
        self._proc, self._conn = proc, parent_conn
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

    def _send(self, number: int) -> None:
        assert self._conn is not None
        # A few bytes into a pipe the child drains: this never blocks.
        self._conn.send_bytes(self._encoder.encode(number))

    async def _receive(self, deadline: float) -> _Reply | _Timeout | _Died:
        conn, proc = self._conn, self._proc
        assert conn is not None
        assert proc is not None
        loop = asyncio.get_running_loop()
        if not conn.poll(0) and not await _readable(conn.fileno(), deadline - loop.time()):
            return _Timeout()
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            await _reap(proc)
            return _Died(proc.exitcode)
        return self._decoder.decode(data)

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
        self._proc = self._conn = None
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


def _child_main(job: _ChildJob, conn: Connection) -> None:
    """Entry point of the extraction child: open ``path``, then answer page requests until EOF."""
    _limit(resource.RLIMIT_CORE, 0, 0)
    _limit(resource.RLIMIT_AS, job.memory_mb << 20, job.memory_mb << 20)
    _limit(resource.RLIMIT_CPU, job.cpu_s, job.cpu_s + 2)

    import pypdfium2 as pdfium

    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(int)
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
    conn.send_bytes(encoder.encode(_Opened(count)))
    while True:
        try:
            number = decoder.decode(conn.recv_bytes())
        except (EOFError, OSError):  # the parent is gone (even killed): nothing left to do
            return
        try:
            page = reader.read(number)
        except MemoryError:
            page = failed(number, f"page {number} needed more than {job.memory_mb} MB of memory")
        except Exception as exc:  # a broken page must not take the document down
            page = failed(number, f"page {number} could not be read ({exc})")
        conn.send_bytes(encoder.encode(_Page(page, time.process_time())))


def _limit(which: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))

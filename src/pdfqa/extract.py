"""Page-by-page text extraction in a sandboxed child process.

``open_pdf(path, limits)`` returns a :class:`PdfDocument`, an async context manager. Entering it
starts a child process (``spawn`` context: the worker has threads, so never plain ``fork``) that
opens the file with pypdfium2 under ``RLIMIT_AS``/``RLIMIT_CPU`` and reports the page count or a
reason to refuse the file; leaving it kills the child, whatever happened.

``PdfDocument.pages()`` yields one :class:`PageText` per page, in order. The parent asks for
page *n+1* when it hands out page *n*, so the child works one page ahead and never further
(backpressure), and the parent waits for replies with ``loop.add_reader`` (never blocking the
event loop). A page that takes longer than ``page_timeout_s``, exhausts the child's memory or
crashes it is yielded with ``error`` set and empty text, and a fresh child resumes at the next
page; too many failures in a row (or the first pages all failing) raise :class:`IngestError`.

Text comes from pdfium (fast, ~100+ pages/s). Pages whose pdfium objects and text look like a
ruled table (many path objects and several lines of numbers) go through pdfplumber's
``find_tables`` as well, and each table is rendered as rows (``label | 2021: 17,455 | 2020: ...``)
in place of pdfium's flattened text for that region. pdfplumber opens the file once per child,
lazily, on the first such page.

Messages on the pipe are msgpack (msgspec), never pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import resource
import signal
import time
from collections.abc import AsyncIterator
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import msgspec

from pdfqa.errors import IngestError
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
MAX_PAGE_CHARS: Final = 1_000_000
"""Text beyond this many characters on one page is dropped (a hostile page could hold GBs)."""


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

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractLimits:
        """Take the limits from the ``extract_*``, ``page_timeout_s`` and ``max_pages`` settings."""
        return cls(
            memory_mb=settings.extract_memory_mb,
            cpu_s=settings.extract_cpu_s,
            page_timeout_s=settings.page_timeout_s,
            max_pages=settings.max_pages,
            tables=settings.extract_tables,
        )


class PageText(msgspec.Struct, frozen=True):
    """The text of one page."""

    number: int
    """1-based page number."""
    text: str
    """Whitespace-normalised text; ``""`` for a page without a text layer or a skipped page."""
    method: str
    """``"pdfium"``, or ``"pdfplumber"`` when tables on the page were rendered by pdfplumber."""
    tables: int = 0
    """Tables rendered into ``text`` by pdfplumber."""
    error: str | None = None
    """Why the page was skipped (timeout, memory, crash); ``text`` is then ``""``."""


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
        if self._conn is None and self.page_count == 0:
            raise RuntimeError("pages() needs an open PdfDocument (use `async with`)")
        if self._iterating:
            raise RuntimeError("pages() can be iterated only once")
        self._iterating = True
        return self._pages(max(1, start))

    async def _pages(self, start: int) -> AsyncIterator[PageText]:
        limits = self._limits
        failed_in_a_row = 0
        failed_total = 0
        sent_at: float | None = None  # when the request for `number` went to the live child
        loop = asyncio.get_running_loop()
        for number in range(start, self.page_count + 1):
            if self._conn is None:
                await self._start(first_page=number)
            if sent_at is None:
                self._send(number)
                sent_at = loop.time()
            reply = await self._receive(sent_at + limits.page_timeout_s)
            sent_at = None
            if isinstance(reply, _Page):
                self._cpu_now = reply.cpu_s
                if number < self.page_count:
                    self._send(number + 1)  # the child reads ahead by exactly one page
                    sent_at = loop.time()
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
            if failed_in_a_row > MAX_FAILED_IN_A_ROW or failed_total == number >= min(
                FIRST_PAGES, self.page_count
            ):
                raise IngestError(_sentence(reason))
            yield _failed(number, reason)

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
                    check_pages=first_page == 1,
                    tables=limits.tables,
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
        reply = await self._receive(loop.time() + max(MIN_OPEN_TIMEOUT_S, limits.page_timeout_s))
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

_PDFIUM_ERRORS: Final = {
    2: "The PDF file could not be read.",
    3: "The file is not a valid PDF or is corrupt.",
    4: "The PDF is password-protected.",
    5: "The PDF uses an unsupported encryption scheme.",
}


class _ChildJob(msgspec.Struct, frozen=True):
    path: str
    memory_mb: int
    cpu_s: int
    max_pages: int
    check_pages: bool
    tables: bool


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
        reason = _PDFIUM_ERRORS.get(exc.err_code or 0, "The PDF is corrupt and cannot be opened.")
        conn.send_bytes(encoder.encode(_Refused(reason)))
        return
    count = len(pdf)
    refusal = _check_document(pdf, count, job.max_pages) if job.check_pages else None
    if refusal is not None:
        conn.send_bytes(encoder.encode(_Refused(refusal)))
        return
    conn.send_bytes(encoder.encode(_Opened(count)))
    pages = _Extractor(pdf, job.path, job.tables)
    while True:
        try:
            number = decoder.decode(conn.recv_bytes())
        except (EOFError, OSError):  # the parent is gone (even killed): nothing left to do
            return
        try:
            page = pages.extract(number)
        except MemoryError:
            page = _failed(number, f"page {number} needed more than {job.memory_mb} MB of memory")
        except Exception as exc:  # a broken page must not take the document down
            page = _failed(number, f"page {number} could not be read ({exc})")
        conn.send_bytes(encoder.encode(_Page(page, time.process_time())))


def _failed(number: int, reason: str) -> PageText:
    return PageText(number=number, text="", method="pdfium", error=reason)


def _limit(which: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def _check_document(pdf: Any, count: int, max_pages: int) -> str | None:
    if count == 0:
        return "The PDF has no pages."
    if count > max_pages:
        return f"The PDF has too many pages ({count}; the limit is {max_pages})."
    missing = []
    for index in range(count):  # reads page dictionaries only, not their content (~50 µs each)
        try:
            pdf.get_page_size(index)
        except Exception:  # pdfium raises PdfiumError, nothing else is expected
            missing.append(index + 1)
    if missing:
        return (
            f"The PDF is damaged: {len(missing)} of its {count} pages cannot be found, "
            f"starting with page {missing[0]} (the file is truncated or its page tree is broken)."
        )
    return None


_NUMBER: Final = re.compile(r"^[($€£]*-?\d[\d,]*(?:\.\d+)?\)?%?$")
_SPACES: Final = re.compile(r"[ \t\f\v\u00a0]+")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SOFT_HYPHEN: Final = re.compile(r"[\ufffe\u00ad]\r?\n?")
_BLANK_LINES: Final = re.compile(r"\n{3,}")
_YEAR: Final = re.compile(r"^(?:19|20)\d\d$")

TABLE_MIN_PATHS: Final = 10
"""Table detector: a page needs this many top-level path objects (rules, cell shading) ..."""
TABLE_MIN_NUMERIC_LINES: Final = 3
"""... and this many text lines holding at least two numbers to go to pdfplumber."""


def normalize(text: str) -> str:
    """Light cleanup of pdfium text: line ends, soft hyphens, runs of spaces, blank lines."""
    text = _SOFT_HYPHEN.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def looks_like_table(paths: int, text: str) -> bool:
    """The table detector: many vector paths and several lines of numbers."""
    if paths < TABLE_MIN_PATHS:
        return False
    numeric = 0
    for line in text.splitlines():
        if sum(1 for tok in line.split() if _NUMBER.match(tok)) >= 2:
            numeric += 1
            if numeric >= TABLE_MIN_NUMERIC_LINES:
                return True
    return False


class _Extractor:
    """Per-child extraction state: the pdfium document and, once needed, a pdfplumber one."""

    def __init__(self, pdf: Any, path: str, tables: bool) -> None:
        self._pdf = pdf
        self._path = path
        self._tables = tables
        self._plumber: Any = None

    def extract(self, number: int) -> PageText:
        import pypdfium2.raw as pdfium_c

        page = self._pdf[number - 1]
        try:
            textpage = page.get_textpage()
            try:
                raw_text = textpage.get_text_range()
                paths = 0
                if self._tables and len(raw_text) > 40:
                    for i in range(pdfium_c.FPDFPage_CountObjects(page.raw)):
                        obj = pdfium_c.FPDFPage_GetObject(page.raw, i)
                        if pdfium_c.FPDFPageObj_GetType(obj) == pdfium_c.FPDF_PAGEOBJ_PATH:
                            paths += 1
                if looks_like_table(paths, raw_text):
                    tabled = self._with_tables(number, page, textpage)
                    if tabled is not None:
                        return tabled
                return PageText(number, normalize(raw_text)[:MAX_PAGE_CHARS], "pdfium")
            finally:
                textpage.close()
        finally:
            page.close()

    def _with_tables(self, number: int, page: Any, textpage: Any) -> PageText | None:
        """pdfium text outside the tables, with pdfplumber's tables rendered in their place."""
        import pdfplumber

        if self._plumber is None:
            self._plumber = pdfplumber.open(self._path)
        plumber_page = self._plumber.pages[number - 1]
        try:
            found = plumber_page.find_tables()
            tables = [(t.bbox, rendered) for t in found if (rendered := _render(plumber_page, t))]
        except Exception:  # pdfplumber failing on a page falls back to pdfium text
            return None
        finally:
            plumber_page.close()
        if not tables:
            return None
        width, height = page.get_width(), page.get_height()
        parts: list[str] = []
        cursor = 0.0  # pdfplumber's y axis points down from the top of the page
        count = 0
        for (x0, top, x1, bottom), rendered in sorted(tables, key=lambda t: t[0][1]):
            if top < cursor:
                continue
            parts.append(textpage.get_text_bounded(0, height - top, width, height - cursor))
            parts.append(textpage.get_text_bounded(0, height - bottom, x0, height - top))
            parts.append(rendered)
            parts.append(textpage.get_text_bounded(x1, height - bottom, width, height - top))
            cursor = bottom
            count += 1
        parts.append(textpage.get_text_bounded(0, 0, width, height - cursor))
        text = "\n".join(p for p in (normalize(p) for p in parts) if p)
        return PageText(number, text[:MAX_PAGE_CHARS], "pdfplumber", tables=count)


def _render(page: Any, table: Any) -> str:
    """Render a pdfplumber table as ``label | header: value | ...`` lines; "" if it is not one."""
    rows: list[tuple[str, list[tuple[float, str]]]] = []
    for row, texts in zip(table.rows, table.extract(), strict=False):
        cells = _merge_cells(row.cells, texts)
        if not cells:
            continue
        label = ""
        if not _NUMBER.match(cells[0][1].replace(" ", "")):
            label = cells.pop(0)[1]
        rows.append((label, cells))
    valued = [cells for _, cells in rows if cells]
    if len(rows) < 2 or not valued:
        return ""
    if sum(len(label) for label, _ in rows) / len(rows) > 80:
        return ""  # rules around prose, not a table
    columns = max(len(cells) for cells in valued)
    headers = _headers_above(page, table.bbox, [x for x, _ in max(valued, key=len)], columns)
    lines = []
    for label, cells in rows:
        values = [f"{headers[_nearest(headers, x)][1]}: {v}" if headers else v for x, v in cells]
        lines.append(" | ".join([label, *values]) if label else " | ".join(values))
    return "\n".join(line for line in lines if line)


def _merge_cells(cells: list[Any], texts: list[str | None]) -> list[tuple[float, str]]:
    """Drop empty cells; glue a lone ``$`` to the next cell and a lone ``%`` to the previous."""
    out: list[tuple[float, str]] = []
    carry = ""
    for bbox, raw in zip(cells, texts, strict=False):
        value = " ".join((raw or "").split()).replace("$ ", "$")
        if not value or bbox is None:
            continue
        if value in {"$", "€", "£"}:
            carry = value
            continue
        if value in {"%", ")", ")%"} and out:
            x, prev = out[-1]
            out[-1] = (x, prev + value)
            continue
        out.append(((bbox[0] + bbox[2]) / 2, f"{carry}{value}" if carry else value))
        carry = ""
    return out


def _headers_above(
    page: Any, bbox: tuple[float, float, float, float], xs: list[float], columns: int
) -> list[tuple[float, str]]:
    """Column headers: the nearest line of year-like words just above the table, if it fits."""
    x0, top, x1, _ = bbox
    if top <= 1:
        return []
    words = page.crop((x0, max(0.0, top - 60), x1, top)).extract_words()
    lines: dict[int, list[tuple[float, str]]] = {}
    for w in words:
        if _YEAR.match(w["text"]):
            lines.setdefault(round(w["bottom"]), []).append(((w["x0"] + w["x1"]) / 2, w["text"]))
    for _, found in sorted(lines.items(), reverse=True):
        if len(found) == columns or (len(found) >= 2 and len(found) == len(xs)):
            return sorted(found)
    return []


def _nearest(headers: list[tuple[float, str]], x: float) -> int:
    return min(range(len(headers)), key=lambda i: abs(headers[i][0] - x))

"""What one page says, read with pypdfium2 inside the sandboxed child; and the document checks.

Text comes from pdfium (fast, ~100+ pages/s). Pages that look like ruled tables go through
pdfplumber as well (``tables``), which opens the file once per child, lazily, on the first such
page.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from pdfqa.extract.tables import count_paths, find_tables, looks_like_table

__all__ = [
    "MAX_PAGE_CHARS",
    "PDFIUM_ERRORS",
    "OcrLine",
    "PageText",
    "TextReader",
    "check_document",
    "failed",
    "normalize",
]

MAX_PAGE_CHARS: Final = 1_000_000
"""Text beyond this many characters on one page is dropped (a hostile page could hold GBs)."""

PDFIUM_ERRORS: Final = {
    2: "The PDF file could not be read.",
    3: "The file is not a valid PDF or is corrupt.",
    4: "The PDF is password-protected.",
    5: "The PDF uses an unsupported encryption scheme.",
}
"""pdfium's error codes on opening a document, as reasons a person can act on."""


class OcrLine(msgspec.Struct, frozen=True):
    """One line OCR recognised: its text, its box (``x0, y0, x1, y1`` as fractions of the page's
    width and height from the top-left corner of the page as shown) and the recogniser's
    confidence (0-1)."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    score: float


class PageText(msgspec.Struct, frozen=True):
    """The text of one page."""

    number: int
    """1-based page number."""
    text: str
    """Whitespace-normalised text; ``""`` for a page without a text layer or a skipped page."""
    method: str
    """``"pdfium"``, ``"pdfplumber"`` when tables on the page were rendered by pdfplumber, or
    ``"ocr"``."""
    tables: int = 0
    """Tables rendered into ``text`` by pdfplumber."""
    error: str | None = None
    """Why the page was skipped (timeout, memory, crash); ``text`` is then ``""``."""
    needs_ocr: bool = False
    """The text layer is missing, too thin for the page or garbage: OCR should read the page
    (``text`` is then what pdfium found, which the pipeline does not index)."""
    lines: list[OcrLine] = []
    """What OCR recognised, line by line (``method == "ocr"`` only)."""


def failed(number: int, reason: str) -> PageText:
    """A skipped page."""
    return PageText(number=number, text="", method="pdfium", error=reason)


def check_document(pdf: Any, count: int, max_pages: int) -> str | None:
    """Why an opened document is refused (no pages, too many, a broken page tree), or None."""
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


_SPACES: Final = re.compile(r"[ \t\f\v\u00a0]+")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SOFT_HYPHEN: Final = re.compile(r"[\ufffe\u00ad]\r?\n?")
_BLANK_LINES: Final = re.compile(r"\n{3,}")


def normalize(text: str) -> str:
    """Light cleanup of pdfium text: line ends, soft hyphens, runs of spaces, blank lines."""
    text = _SOFT_HYPHEN.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


class TextReader:
    """Per-child text extraction state: the pdfium document and, once needed, a pdfplumber one."""

    def __init__(
        self, pdf: Any, path: str, *, tables: bool, ocr_threshold: float | None = None
    ) -> None:
        self._pdf = pdf
        self._path = path
        self._tables = tables
        self._ocr_threshold = ocr_threshold
        self._plumber: Any = None

    def read(self, number: int) -> PageText:
        page = self._pdf[number - 1]
        try:
            textpage = page.get_textpage()
            try:
                raw_text = textpage.get_text_range()
                if self._ocr_threshold is not None and self._needs_ocr(page, raw_text):
                    text = normalize(raw_text)[:MAX_PAGE_CHARS]
                    return PageText(number, text, "pdfium", needs_ocr=True)
                paths = count_paths(page) if self._tables and len(raw_text) > 40 else 0
                if looks_like_table(paths, raw_text):
                    tabled = self._with_tables(number, page, textpage)
                    if tabled is not None:
                        return tabled
                return PageText(number, normalize(raw_text)[:MAX_PAGE_CHARS], "pdfium")
            finally:
                textpage.close()
        finally:
            page.close()

    def _needs_ocr(self, page: Any, raw_text: str) -> bool:
        from pdfqa.extract.ocr import is_garbage, min_chars, needs_ocr, page_objects

        assert self._ocr_threshold is not None
        width, height = page.get_width(), page.get_height()
        chars = sum(1 for c in raw_text if not c.isspace())
        if chars >= min_chars(width, height, self._ocr_threshold) and not is_garbage(raw_text):
            return False  # the common case, without walking the page's objects
        images, drawings = page_objects(page)
        return needs_ocr(
            raw_text,
            width_pt=width,
            height_pt=height,
            images=images,
            drawings=drawings,
            min_chars_per_sq_in=self._ocr_threshold,
        )

    def _with_tables(self, number: int, page: Any, textpage: Any) -> PageText | None:
        """pdfium text outside the tables, with pdfplumber's tables rendered in their place."""
        import pdfplumber

        if self._plumber is None:
            self._plumber = pdfplumber.open(self._path)
        plumber_page = self._plumber.pages[number - 1]
        try:
            tables = find_tables(plumber_page)
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

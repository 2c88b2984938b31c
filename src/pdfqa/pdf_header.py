"""The one check that bytes start like a PDF, shared by the upload path and extraction.

PDF readers (Acrobat, pdfium, pdf.js) look for the ``%PDF-x.y`` header within the first 1024
bytes, so some real files carry a few bytes of junk before it; this accepts the same window.
What it refuses is a header behind markup: an HTML, SVG or XML document with ``%PDF-`` tucked
into its first kilobyte (a polyglot that a browser would render as a page) is not a PDF.
"""

from __future__ import annotations

import re

__all__ = ["HEADER_WINDOW", "NOT_A_PDF", "pdf_header_offset"]

HEADER_WINDOW = 1024
"""Readers accept the header anywhere in the first 1024 bytes."""
NOT_A_PDF = "The file is not a PDF (it does not start with a %PDF- header)."
_HEADER = re.compile(rb"%PDF-[0-9]\.[0-9]")


def pdf_header_offset(head: bytes) -> int | None:
    """Where the ``%PDF-x.y`` header starts in ``head`` (the file's first bytes), or None.

    None also when the header lies beyond :data:`HEADER_WINDOW` or follows a ``<`` (markup).
    """
    found = _HEADER.search(head, 0, HEADER_WINDOW + 8)
    if found is None or found.start() > HEADER_WINDOW - 5:
        return None
    if b"<" in head[: found.start()]:
        return None
    return found.start()

"""Reading PDFs page by page, in sandboxed child processes.

- ``sandbox``: the child process, its pipe protocol and its limits (memory, CPU, time); the
  child also cuts the text into chunks (``pdfqa.chunking``);
- ``pages``: pypdfium2 text and the document checks;
- ``tables``: which pages hold ruled tables, and pdfplumber's tables rendered as rows.

The ``%PDF-`` header check lives in ``pdfqa.pdf_header`` (the upload service uses it too).
"""

from pdfqa.extract.pages import PageText, normalize
from pdfqa.extract.sandbox import ExtractLimits, PageChunks, PdfDocument, open_pdf
from pdfqa.extract.tables import looks_like_table

__all__ = [
    "ExtractLimits",
    "PageChunks",
    "PageText",
    "PdfDocument",
    "looks_like_table",
    "normalize",
    "open_pdf",
]

"""Sources (the passages an answer may use) and citations (the ones it did use, as ``[n]``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

__all__ = ["Citation", "Reading", "Source", "cited", "reading_note"]

_MARK = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


class Source(msgspec.Struct, frozen=True):
    """A retrieved passage, numbered for the answer to cite as ``[n]``."""

    n: int
    """The number the answer cites it by, from 1."""
    chunk_id: str
    upload_id: str
    upload_name: str
    page: int
    """The first page of the passage (where a viewer opens)."""
    pages: list[int]
    text: str
    """The passage that matched (what a viewer highlights)."""
    score: float
    context: str = ""
    """What the reader (the model, or the extractive answerer) received for this source: the
    passage with its neighbours on the same page (``PDFQA_CONTEXT_TOKENS``); "" in answers
    stored before contexts were given."""


class Reading(msgspec.Struct, frozen=True):
    """A document still being read when the answer was given: it comes from the pages stored so
    far (``pages_done`` of ``pages_total``; 0 while the page count is unknown)."""

    upload_id: str
    upload_name: str
    pages_done: int
    pages_total: int
    note: str
    """For people: "pages 1\u2013140 of 307 read so far" (with an en dash)."""


def reading_note(pages_done: int, pages_total: int) -> str:
    if pages_done <= 0:
        return "not read yet: no page is searchable so far"
    pages = "page 1" if pages_done == 1 else f"pages 1\u2013{pages_done}"
    of = f" of {pages_total}" if pages_total else ""
    return f"{pages}{of} read so far"


class Citation(msgspec.Struct, frozen=True):
    """A source the answer cited."""

    n: int
    chunk_id: str
    upload_id: str
    upload_name: str
    page: int
    pages: list[int]


def cited(answer: str, sources: Sequence[Source]) -> list[Citation]:
    """The sources the answer cites with ``[n]`` or ``[n, m]``, in order of first mention."""
    by_number = {s.n: s for s in sources}
    seen: list[int] = []
    for match in _MARK.finditer(answer):
        for part in match.group(1).split(","):
            n = int(part)
            if n in by_number and n not in seen:
                seen.append(n)
    return [
        Citation(
            n=n,
            chunk_id=by_number[n].chunk_id,
            upload_id=by_number[n].upload_id,
            upload_name=by_number[n].upload_name,
            page=by_number[n].page,
            pages=by_number[n].pages,
        )
        for n in seen
    ]

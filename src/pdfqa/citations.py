"""Sources (the passages an answer may use) and citations (the ones it did use, as ``[n]``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

__all__ = ["Citation", "Source", "cited"]

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
    score: float


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

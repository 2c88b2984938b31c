"""Page text cleanup before chunking: running headers and footers out, hyphenated line breaks
joined.

* **Running headers and footers** ("Chapter 4: Function reference 20", a report's title and
  date, page numbers) repeat at the top or bottom of neighbouring pages. A line among the first
  or last :data:`EDGE_LINES` of a page is one when the same line, with its numbers masked, is
  also at an edge of at least :data:`REPEATS` other pages within :data:`WINDOW` pages before or
  after it. Nothing else is consulted (no word lists), so the result is a pure function of the
  document: the same pages always give the same text, however they are fed. A page whose every
  line would go keeps them all: such lines are its content, not a frame around it.
* **Hyphenated line breaks** ("infor-\\nmation") are joined when a lowercase letter ends the line
  before the hyphen and another starts the next one.

:class:`RunningLines` is streaming: it holds up to ``WINDOW`` pages back (pages are released
once the pages after them are seen) and its state is a :class:`CleanupState` ``Struct``, so an
interrupted ingestion can resume from a page boundary.
"""

from __future__ import annotations

import re
from collections import Counter

import msgspec

__all__ = [
    "EDGE_LINES",
    "REPEATS",
    "WINDOW",
    "CleanupState",
    "RunningLines",
    "join_hyphens",
]

EDGE_LINES = 2
"""How many lines at the top and at the bottom of a page may be running headers/footers."""
WINDOW = 4
"""How many pages before and after a page are compared with it."""
REPEATS = 2
"""A header/footer line is at an edge of at least this many other pages in the window."""
MAX_LINE = 100
"""Longer lines are text, never headers or footers."""

_HYPHEN_BREAK = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


def join_hyphens(text: str) -> str:
    """Join words split by a hyphen at a line break ("infor-\\nmation" -> "information")."""
    return _HYPHEN_BREAK.sub("", text)


class CleanupState(msgspec.Struct, frozen=True):
    """What :class:`RunningLines` holds between pages: the recent pages, not yet all released."""

    pages: list[tuple[int, str]] = msgspec.field(default_factory=list)
    released: int = 0
    """The last page number handed out."""


class RunningLines:
    """Feed pages in order with :meth:`add`; they come back cleaned, ``WINDOW`` pages later,
    and the rest from :meth:`finish`."""

    def __init__(self, state: CleanupState | None = None) -> None:
        state = state or CleanupState()
        self._pages: list[tuple[int, str]] = list(state.pages)
        self._released = state.released

    def snapshot(self) -> CleanupState:
        return CleanupState(pages=list(self._pages), released=self._released)

    @property
    def released(self) -> int:
        """The last page number handed out (0 before the first)."""
        return self._released

    def add(self, number: int, text: str) -> list[tuple[int, str]]:
        """Take one page (raw text); return the pages now cleaned, in order."""
        self._pages.append((number, text))
        return self._release(final=False)

    def finish(self) -> list[tuple[int, str]]:
        """Return every page still held, cleaned."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for i, (number, _text) in enumerate(self._pages):
            if number <= self._released:
                continue
            if not final and len(self._pages) - 1 - i < WINDOW:
                break
            out.append((number, self._clean(i)))
            self._released = number
        # Keep what later pages still compare against: WINDOW pages back from the next one.
        keep = [p for p in self._pages if p[0] > self._released]
        back = [p for p in self._pages if p[0] <= self._released][-WINDOW:]
        self._pages = back + keep
        return out

    def _clean(self, i: int) -> str:
        number, text = self._pages[i]
        lines = text.split("\n")
        edges = _edge_indexes(lines)
        if not edges:
            return join_hyphens(text)
        seen: Counter[str] = Counter()
        for other, other_text in self._pages:
            if other != number and abs(other - number) <= WINDOW:
                other_lines = other_text.split("\n")
                seen.update({_signature(other_lines[j]) for j in _edge_indexes(other_lines)})
        drop = {j for j in edges if seen[_signature(lines[j])] >= REPEATS}
        if all(j in drop for j, line in enumerate(lines) if line.strip()):
            drop = set()  # a header frames a page's text; with no text besides, it is the text
        kept = [line for j, line in enumerate(lines) if j not in drop]
        return join_hyphens("\n".join(kept).strip())


def _edge_indexes(lines: list[str]) -> list[int]:
    """Indexes of the first and last ``EDGE_LINES`` non-blank, short lines of a page."""
    filled = [j for j, line in enumerate(lines) if line.strip()]
    edge = filled[:EDGE_LINES] + filled[-EDGE_LINES:]
    return sorted({j for j in edge if len(lines[j]) <= MAX_LINE})


def _signature(line: str) -> str:
    return _SPACE.sub(" ", _DIGITS.sub("#", line.strip().lower()))

"""Page text -> chunks that fit the embedder, keeping the page numbers of every piece.

Text is cut at paragraph and sentence boundaries (lines, for tables), packed greedily up to
``target_tokens`` word pieces, and each chunk repeats up to ``overlap_tokens`` of whole sentences
from the end of the previous one. A chunk may span a page break (a paragraph continues on the
next page); it then lists both pages. Nothing exceeds ``max_tokens``, so no chunk has a tail the
embedder cannot see (all-MiniLM-L6-v2 reads 256 word pieces, two of them special tokens).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

__all__ = ["Chunk", "Chunker", "TokenCounter", "word_piece_counter"]

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Counts the word pieces of each text (without special tokens)."""

_PARAGRAPH = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? (optionally closed by a quote or bracket) before whitespace and a
# capital, digit or opening mark; abbreviations like "e.g." followed by lowercase stay whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[•])")
_SPACES = re.compile(r"[ \t\f\v]+")
# Dot leaders of tables of contents (". . . . . 12"): noise for both kinds of vectors.
_LEADER = re.compile(r"(?:\s?[.\u2026]){4,}")
# A table-of-contents entry: a title, a dot leader, a page number. It only points to where the
# answer is, and its titles outrank the sections themselves, so it is not indexed.
_TOC_ENTRY = re.compile(r"(?:\s?[.\u2026]){4,}\s*[0-9ivxlc]{1,4}\s*$", re.IGNORECASE)


class Chunk(msgspec.Struct, frozen=True):
    """A piece of a document's text, ready to embed."""

    index: int
    """Position within the upload, from 0."""
    pages: list[int]
    """The 1-based pages the text came from, ascending."""
    text: str
    tokens: int


@dataclass
class _Unit:
    text: str
    page: int
    tokens: int
    line: bool = False
    """A table row or heading: kept on its own line when joined."""


@dataclass
class Chunker:
    """Feed pages in order with :meth:`add_page`; call :meth:`finish` after the last one."""

    count_tokens: TokenCounter
    target_tokens: int = 200
    overlap_tokens: int = 32
    max_tokens: int = 254
    _units: list[_Unit] = field(default_factory=list)
    _size: int = 0
    _next_index: int = 0
    _last_page: int = 0
    _carried: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.target_tokens <= self.max_tokens:
            raise ValueError("target_tokens must be between 1 and max_tokens")
        if not 0 <= self.overlap_tokens < self.target_tokens:
            raise ValueError("overlap_tokens must be smaller than target_tokens")
        if self.target_tokens + self.overlap_tokens > self.max_tokens:
            raise ValueError("target_tokens + overlap_tokens must not exceed max_tokens")

    @property
    def pages_complete(self) -> int:
        """The highest page whose text is entirely inside chunks already returned."""
        if not self._units:
            return self._last_page
        return self._units[0].page - 1

    def add_page(self, number: int, text: str) -> list[Chunk]:
        """Take one page; return the chunks it completes."""
        self._last_page = number
        pieces = _split(text)
        if not pieces:
            return []
        counts = self.count_tokens([p for p, _ in pieces])
        out: list[Chunk] = []
        for (piece, line), tokens in zip(pieces, counts, strict=True):
            for unit in self._fit(piece, number, tokens, line):
                if self._units and self._size + unit.tokens > self.target_tokens:
                    out.append(self._emit())
                self._units.append(unit)
                self._size += unit.tokens
        return out

    def finish(self) -> list[Chunk]:
        """Return the last, partial chunk, if any text is left."""
        if not self._units or self._size == self._carried:
            self._units.clear()
            self._size = 0
            return []
        chunk = self._emit()
        self._units.clear()
        self._size = 0
        return [chunk]

    def snapshot(self) -> bytes:
        """The state between two pages, as bytes that :meth:`restore` takes back.

        A checkpoint of an ingestion stores it, so a resumed job cuts the remaining pages exactly
        as an uninterrupted one would. Generic over the private fields (``_name``), so a change to
        the chunker's internals needs no change here.
        """
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if _private(f)}
        return msgspec.msgpack.encode(state)

    def restore(self, data: bytes) -> None:
        """Continue from a :meth:`snapshot` (taken with the same settings)."""
        hints = typing.get_type_hints(type(self))
        state = msgspec.msgpack.decode(data, type=dict[str, typing.Any])
        for f in dataclasses.fields(self):
            if _private(f) and f.name in state:
                setattr(self, f.name, msgspec.convert(state[f.name], hints[f.name]))

    def _fit(self, piece: str, page: int, tokens: int, line: bool) -> list[_Unit]:
        """Split a sentence longer than the target into word windows that fit."""
        if tokens <= self.target_tokens:
            return [_Unit(piece, page, tokens, line)]
        words = piece.split()
        counts = self.count_tokens(words)
        units: list[_Unit] = []
        current: list[str] = []
        size = 0
        for whole, whole_n in zip(words, counts, strict=True):
            word, n = whole, whole_n
            if n > self.target_tokens:
                # A pathological "word" (a long unbroken string): a word piece covers at least
                # one character, so this many characters always fit.
                word = whole[: self.target_tokens]
                n = self.count_tokens([word])[0]
            if current and size + n > self.target_tokens:
                units.append(_Unit(" ".join(current), page, size))
                current, size = [], 0
            current.append(word)
            size += n
        if current:
            units.append(_Unit(" ".join(current), page, size))
        return units

    def _emit(self) -> Chunk:
        units = self._units
        chunk = Chunk(
            index=self._next_index,
            pages=sorted({u.page for u in units}),
            text=_join(units),
            tokens=self._size,
        )
        self._next_index += 1
        # Carry whole trailing units, up to the overlap budget, into the next chunk.
        carried: list[_Unit] = []
        size = 0
        for unit in reversed(units):
            if size + unit.tokens > self.overlap_tokens:
                break
            carried.insert(0, unit)
            size += unit.tokens
        self._units = carried
        self._size = size
        self._carried = size
        return chunk


def _private(f: dataclasses.Field[typing.Any]) -> bool:
    return f.name.startswith("_")


def _split(text: str) -> list[tuple[str, bool]]:
    """Paragraphs, then sentences; short lines (table rows, headings) stay lines (flag True)."""
    pieces: list[tuple[str, bool]] = []
    for paragraph in _PARAGRAPH.split(text):
        lines = [
            _SPACES.sub(" ", _LEADER.sub(" … ", line)).strip()
            for line in paragraph.splitlines()
            if not _TOC_ENTRY.search(line)
        ]
        lines = [line for line in lines if line]
        if not lines:
            continue
        if _is_prose(lines):
            joined = " ".join(lines)
            pieces.extend((s.strip(), False) for s in _SENTENCE_END.split(joined) if s.strip())
        else:
            pieces.extend((line, True) for line in lines)
    return pieces


def _is_prose(lines: list[str]) -> bool:
    """Lines wrapped from running text, as opposed to rows of a table or a list of headings."""
    if len(lines) == 1:
        return True
    long_lines = sum(1 for line in lines if len(line) >= 50)
    return long_lines * 2 >= len(lines)


def _join(units: list[_Unit]) -> str:
    parts = [units[0].text]
    for before, unit in itertools.pairwise(units):
        parts.append("\n" if before.line or unit.line else " ")
        parts.append(unit.text)
    return "".join(parts)


def word_piece_counter(tokenizer_json: Path) -> TokenCounter:
    """A :data:`TokenCounter` backed by a Hugging Face ``tokenizer.json`` (fast, GIL-free)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: Sequence[str]) -> list[int]:
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    return count

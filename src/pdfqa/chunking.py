"""Page text -> chunks that fit the embedder, each on exactly one page.

Pages are cleaned first (:mod:`pdfqa.cleanup`). Text is cut at paragraph and sentence boundaries
(lines, for tables), packed greedily up to about equal shares of the page below
``target_tokens`` word pieces, and each chunk repeats up to ``overlap_tokens`` of whole
sentences from the end of the previous one on the same page. A chunk never spans a page break,
so the page a source cites always holds its text. Nothing exceeds ``max_tokens``, so no chunk
has a tail the embedder cannot see (all-MiniLM-L6-v2 reads 256 word pieces, two of them special
tokens).

Each chunk carries its keyword (BM25) vector too (:func:`pdfqa.sparse.sparse_document`), so
every pass over a document's text happens where the chunker runs: in the sandboxed extraction
child (:mod:`pdfqa.extract.sandbox`), never in the worker's event-loop process.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from pdfqa.cleanup import CleanupState, RunningLines
from pdfqa.sparse import SparseVector, sparse_document

__all__ = [
    "Chunk",
    "ChunkSpec",
    "Chunker",
    "ChunkerState",
    "TokenCounter",
    "word_piece_counter",
]

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Counts the word pieces of each text (without special tokens)."""

_PARAGRAPH = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? (optionally closed by a quote or bracket) before whitespace and a
# capital, digit or opening mark; abbreviations like "e.g." followed by lowercase stay whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[•])")
_SPACES = re.compile(r"[ \t\f\v]+")
# Dot leaders of tables of contents (". . . . . 12"): noise for both kinds of vectors.
_LEADER = re.compile(r"(?:\s?[.\u2026]){4,}")
# The end of a table-of-contents entry's leader, matched only against the last characters
# before its page number (see _is_toc_entry): four dots, each after at most one space.
_LEADER_END = re.compile(r"(?:\s?[.\u2026]){4}\Z")
_PAGE_NUMBER_CHARS = "0123456789ivxlcIVXLC"


class Chunk(msgspec.Struct, frozen=True):
    """A piece of a document's text, ready to embed."""

    index: int
    """Position within the upload, from 0."""
    pages: list[int]
    """The 1-based pages the text came from, ascending."""
    text: str
    tokens: int
    sparse: SparseVector
    """The text's keyword vector (BM25 term weights), computed beside the chunk."""


class ChunkSpec(msgspec.Struct, frozen=True):
    """How to cut chunks, as a value a child process can rebuild its :class:`Chunker` from."""

    tokenizer: str
    """Path of the Hugging Face ``tokenizer.json`` whose word pieces are counted."""
    target_tokens: int
    overlap_tokens: int
    max_tokens: int

    def counter(self) -> TokenCounter:
        """Load the tokenizer (once per process: it takes ~50 ms)."""
        return word_piece_counter(Path(self.tokenizer))

    def chunker(self, count: TokenCounter, state: ChunkerState | None = None) -> Chunker:
        """A new chunker counting with ``count``, resumed from ``state`` when given."""
        chunker = Chunker(
            count,
            target_tokens=self.target_tokens,
            overlap_tokens=self.overlap_tokens,
            max_tokens=self.max_tokens,
        )
        if state is not None:
            chunker.restore(state)
        return chunker


@dataclass
class _Unit:
    text: str
    page: int
    tokens: int
    line: bool = False
    """A table row or heading: kept on its own line when joined."""


class ChunkerState(msgspec.Struct, frozen=True):
    """Everything a :class:`Chunker` carries between pages, to resume at a page boundary."""

    next_index: int = 0
    last_page: int = 0
    cleanup: CleanupState = msgspec.field(default_factory=CleanupState)


@dataclass
class Chunker:
    """Feed pages in order with :meth:`add_page`; call :meth:`finish` after the last one.

    Pages pass through :class:`~pdfqa.cleanup.RunningLines` first (running headers and footers
    out, hyphenated line breaks joined), so a page's chunks come out a few pages after it went
    in. A chunk never spans two pages: every chunk's text is on the one page it names. A page's
    text is cut into chunks of about equal size (none above ``target_tokens``), so a page's tail
    is not left as a scrap.
    """

    count_tokens: TokenCounter
    target_tokens: int = 200
    overlap_tokens: int = 32
    max_tokens: int = 254
    _units: list[_Unit] = field(default_factory=list)
    _size: int = 0
    _next_index: int = 0
    _last_page: int = 0
    _carried: int = 0
    _cleaner: RunningLines = field(default_factory=RunningLines)

    def __post_init__(self) -> None:
        if not 0 < self.target_tokens <= self.max_tokens:
            raise ValueError("target_tokens must be between 1 and max_tokens")
        if not 0 <= self.overlap_tokens < self.target_tokens:
            raise ValueError("overlap_tokens must be smaller than target_tokens")
        if self.target_tokens + self.overlap_tokens > self.max_tokens:
            raise ValueError("target_tokens + overlap_tokens must not exceed max_tokens")

    def snapshot(self) -> ChunkerState:
        """The state after the pages fed so far (taken between pages)."""
        return ChunkerState(
            next_index=self._next_index,
            last_page=self._last_page,
            cleanup=self._cleaner.snapshot(),
        )

    def restore(self, state: ChunkerState) -> None:
        """Continue from ``state``, as if the pages before it had been fed to this chunker."""
        self._next_index = state.next_index
        self._last_page = state.last_page
        self._cleaner = RunningLines(state.cleanup)
        self._units, self._size, self._carried = [], 0, 0

    @property
    def pages_complete(self) -> int:
        """The highest page whose text is entirely inside chunks already returned."""
        return self._cleaner.released

    def add_page(self, number: int, text: str) -> list[Chunk]:
        """Take one page; return the chunks of the pages it lets out of the cleanup window."""
        self._last_page = number
        out: list[Chunk] = []
        for page, clean in self._cleaner.add(number, text):
            out += self._chunk_page(page, clean)
        return out

    def finish(self) -> list[Chunk]:
        """Return the chunks of the pages still held."""
        out: list[Chunk] = []
        for page, clean in self._cleaner.finish():
            out += self._chunk_page(page, clean)
        return out

    def _chunk_page(self, number: int, text: str) -> list[Chunk]:
        pieces = _split(text)
        if not pieces:
            return []
        counts = self.count_tokens([p for p, _ in pieces])
        units = [
            unit
            for (piece, line), tokens in zip(pieces, counts, strict=True)
            for unit in self._fit(piece, number, tokens, line)
        ]
        total = sum(u.tokens for u in units)
        parts = -(-total // self.target_tokens)
        target = min(self.target_tokens, -(-total // parts) + self.overlap_tokens // 2)
        out: list[Chunk] = []
        for unit in units:
            if self._units and self._size + unit.tokens > target:
                out.append(self._emit())
            self._units.append(unit)
            self._size += unit.tokens
        if self._units and self._size > self._carried:
            out.append(self._emit())
        self._units, self._size, self._carried = [], 0, 0
        return out

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
            text=(text := _join(units)),
            tokens=self._size,
            sparse=sparse_document(text),
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


def _split(text: str) -> list[tuple[str, bool]]:
    """Paragraphs, then sentences; short lines (table rows, headings) stay lines (flag True)."""
    pieces: list[tuple[str, bool]] = []
    for paragraph in _PARAGRAPH.split(text):
        lines = [
            _SPACES.sub(" ", _LEADER.sub(" … ", line)).strip()
            for line in paragraph.splitlines()
            if not _is_toc_entry(line)
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


def _is_toc_entry(line: str) -> bool:
    """A table-of-contents entry: a title, a dot leader, a page number ("Risk factors .... 12").

    It only points to where the answer is, and its titles outrank the sections themselves, so
    it is not indexed. Checked from the end of the line, in time linear in its length: a
    pattern anchored at the end but tried from every offset (as ``re.search`` does) costs the
    square of the line's length on a line of dot leaders, and a PDF page can hold a
    million-character line of them.
    """
    body = line.rstrip()
    before_number = body.rstrip(_PAGE_NUMBER_CHARS)
    if not 1 <= len(body) - len(before_number) <= 4:
        return False
    return _LEADER_END.search(before_number.rstrip()[-8:]) is not None


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

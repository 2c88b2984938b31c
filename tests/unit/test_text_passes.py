"""Every regular expression and text pass over a document's text costs time linear in its input.

A PDF page may hold a million-character line, and a pattern that backtracks from every offset
of one (``(?:\\s?\\.){4,}\\s*\\d{1,4}\\s*$`` on a line of dot leaders took 5 s for 4,000 pairs
and minutes for 40,000) freezes whatever runs it. hypothesis builds adversarial lines (dot
leaders, long runs of one character or of a short unit, no spaces, with an ending that makes a
match fail), and each pattern and each pass is timed on one such line and on one eight times
longer: a linear cost grows about 8 times, a quadratic one 64 times. The bound is 24.

The patterns are found by walking the modules (every compiled ``re.Pattern`` at module level),
so a new one is covered as soon as it is written; a test checks that these modules compile no
pattern inline, where the walk would miss it.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import pdfqa
from pdfqa import answer, chunking, cleanup, sparse, words
from pdfqa.chunking import ChunkSpec
from pdfqa.context import join_overlapping
from pdfqa.embeddings import bundled_model_dir
from pdfqa.extract import pages
from pdfqa.kinds import offered

MODULES = [
    "pdfqa.chunking",
    "pdfqa.cleanup",
    "pdfqa.words",
    "pdfqa.sparse",
    "pdfqa.citations",
    "pdfqa.kinds",
    "pdfqa.context",
    "pdfqa.answer",
    "pdfqa.retrieval",
    "pdfqa.sanitize",
    "pdfqa.extract.pages",
    "pdfqa.extract.tables",
    "pdfqa.extract.ocr",
]
"""Every module whose code reads a document's text (ingestion, retrieval and answers)."""

SHORT = 1_000
GROWTH = 8
MAX_RATIO = 24.0
"""A linear cost grows ~GROWTH times; a quadratic one GROWTH**2 (64)."""


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    found = []
    for name in MODULES:
        module: ModuleType = importlib.import_module(name)
        for attr, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                found.append((f"{name}.{attr}", value))
    return found


PATTERNS = _patterns()


def _every_use(pattern: re.Pattern[str]) -> Callable[[str], object]:
    def run(text: str) -> object:
        return (
            pattern.search(text),
            pattern.match(text),
            pattern.fullmatch(text),
            pattern.findall(text),
            pattern.sub(" ", text),
            pattern.split(text),
        )

    return run


def _chunk_page(text: str) -> object:
    chunker = SPEC.chunker(COUNT)
    return [*chunker.add_page(1, text), *chunker.add_page(2, text), *chunker.finish()]


def _running_lines(text: str) -> object:
    lines = cleanup.RunningLines()
    for number in range(1, 4):
        lines.add(number, f"{text}\n{text[:50]}\n{text}")
    return lines.finish()


SPEC = ChunkSpec(str(bundled_model_dir() / "tokenizer.json"), 200, 32, 254)
COUNT = SPEC.counter()

PASSES: list[tuple[str, Callable[[str], object]]] = [
    ("extract.pages.normalize", pages.normalize),
    ("chunking._split", chunking._split),
    ("chunking._is_toc_entry", chunking._is_toc_entry),
    ("cleanup.RunningLines", _running_lines),
    ("cleanup.join_hyphens", cleanup.join_hyphens),
    ("words.tokenize", lambda t: list(words.tokenize(t))),
    ("words.specific_terms", words.specific_terms),
    ("words.content_words", words.content_words),
    ("words.page_references", words.page_references),
    ("words.is_follow_up", words.is_follow_up),
    ("sparse.sparse_document", sparse.sparse_document),
    ("answer.escape_passage", answer.escape_passage),
    ("answer.pieces", answer.pieces),
    ("answer._sentences", answer._sentences),
    ("kinds.offered count", lambda t: [offered(t, k, "q") for k in ("count", "amount", "name")]),
    (
        "kinds.offered others",
        lambda t: [offered(t, k, "q") for k in ("email", "percent", "person")],
    ),
    ("context.join_overlapping", lambda t: join_overlapping(t, t[len(t) // 2 :])),
]
"""The passes over a document's text that the patterns are used in, run whole."""


def _seconds(fn: Callable[[str], object], text: str) -> float:
    """The least time of three measurements, each repeated for at least 2 ms."""
    best = float("inf")
    for _ in range(3):
        runs = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < 0.002 or runs == 0:
            fn(text)
            runs += 1
        best = min(best, elapsed / runs)
    return best


def _line(unit: str, tail: str, length: int) -> str:
    return unit * (length // len(unit)) + tail


def _growth(fn: Callable[[str], object], unit: str, tail: str) -> float:
    short = _seconds(fn, _line(unit, tail, SHORT))
    long = _seconds(fn, _line(unit, tail, SHORT * GROWTH))
    return long / short


UNITS = st.text(alphabet=" .\u2026#\n\t,-_1aA[]$%('x:/&", min_size=1, max_size=3)
TAILS = st.sampled_from(["", "x", "!", " ", "1", "a", "\n", "]"])
PROPERTY = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # a failure is slow to shrink, and needs no shrinking
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize(("name", "pattern"), PATTERNS, ids=[n for n, _ in PATTERNS])
@PROPERTY
@given(unit=UNITS, tail=TAILS)
@example(unit=". ", tail="!")  # a dot leader that is not a table-of-contents entry
@example(unit="#", tail="!")  # a run of one character, no word after it
@example(unit=" ", tail="")  # trailing whitespace
@example(unit="a", tail="@")  # no spaces at all
def test_every_pattern_costs_linear_time(
    name: str, pattern: re.Pattern[str], unit: str, tail: str
) -> None:
    ratio = _growth(_every_use(pattern), unit, tail)
    assert ratio <= MAX_RATIO, f"{name} on {unit!r}*n+{tail!r}: x{GROWTH} input, x{ratio:.0f} time"


@pytest.mark.parametrize(("name", "fn"), PASSES, ids=[n for n, _ in PASSES])
@PROPERTY
@given(unit=UNITS, tail=TAILS)
@example(unit=". ", tail="!")
@example(unit="#", tail="!")
@example(unit=" ", tail="")
def test_every_text_pass_costs_linear_time(
    name: str, fn: Callable[[str], object], unit: str, tail: str
) -> None:
    ratio = _growth(fn, unit, tail)
    assert ratio <= MAX_RATIO, f"{name} on {unit!r}*n+{tail!r}: x{GROWTH} input, x{ratio:.0f} time"


def test_the_page_chunker_is_covered_on_a_page_of_dot_leaders() -> None:
    # The whole chunker (tokenizer included) on the page that froze the service: a line of
    # ". " pairs with no page number after it.
    ratio = _growth(_chunk_page, ". ", "!")
    assert ratio <= MAX_RATIO, f"x{GROWTH} input, x{ratio:.0f} time"


def test_no_module_that_reads_document_text_compiles_a_pattern_inline() -> None:
    # An inline re.sub(r"...", ...) would escape the walk above.
    inline = re.compile(r"\bre\.(?:search|match|fullmatch|findall|finditer|sub|subn|split)\(")
    root = Path(pdfqa.__file__).parent
    for name in MODULES:
        path = root / (name.removeprefix("pdfqa.").replace(".", "/") + ".py")
        lines = path.read_text().splitlines()
        found = [n for n, line in enumerate(lines, 1) if inline.search(line)]
        assert not found, f"{path.name}: patterns compiled inline on lines {found}"
    assert len(PATTERNS) >= 30  # the walk found the modules' patterns


def test_table_of_contents_entries_are_those_the_old_pattern_found() -> None:
    old = re.compile(r"(?:\s?[.\u2026]){4,}\s*[0-9ivxlc]{1,4}\s*$", re.IGNORECASE)

    @settings(max_examples=3000, deadline=None, derandomize=True, database=None)
    @given(st.text(alphabet=" .\u2026\t0129ivxlcIXCabz", max_size=24))
    def same(line: str) -> None:
        assert chunking._is_toc_entry(line) == (old.search(line) is not None), repr(line)

    same()
    assert chunking._is_toc_entry("Risk factors . . . . . . 12")
    assert chunking._is_toc_entry("Preface\u2026\u2026\u2026\u2026 xiv")
    assert not chunking._is_toc_entry("Revenue grew 12% to $4.5 billion.")

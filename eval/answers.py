"""The answer measures of ``../shared/benchmarks/README.md``: what a person reads.

* **short answers**: answerable questions whose ``answer_format`` is ``Int``, ``Float`` or
  ``Str`` and whose answer has at most 40 characters, and ``List`` questions (every item must
  appear);
* **extractable**: the normalized answer appears, as whole words, in the text layer of one of
  the question's evidence pages (an extractive answer can only ever reach those);
* **answer hit**: the normalized answer appears as whole words in the answer's text before its
  closing note (citation marks removed: "p. 4" must not count as the answer "4");
* **context recall**: for extractable questions, the answer appears in the text the reader
  received for the first five sources.

Normalized: lower case, a space before ``%`` dropped ("58.6 %" is "58.6%"), runs of characters
other than letters, digits, ``.`` and ``%`` turned into one space, and dots that end or start a
word dropped ("2021." is the word "2021").
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from pathlib import Path

__all__ = [
    "AnswerTally",
    "Gold",
    "answer_text",
    "short_buckets",
    "contains",
    "gold",
    "gold_items",
    "holds",
    "normalize",
    "page_text",
]

SHORT = 40
_OTHER = re.compile(r"[^a-z0-9.%]+")
_SPACED_PERCENT = re.compile(r"(?<=\d)\s+%")  # "58.6 %" is "58.6%"
_CITATION = re.compile(r"\[\d+\]\s*\([^)]*\)|\[\d+(?:\s*,\s*\d+)*\]")


def normalize(text: str) -> str:
    words = _OTHER.sub(" ", _SPACED_PERCENT.sub("%", text.lower())).split()
    return " ".join(w for w in (w.strip(".") for w in words) if w)


def gold_items(answer: str, answer_format: str) -> list[str] | None:
    """The items that must all appear; None when the question has no short answer."""
    if answer_format == "List":
        try:
            items = ast.literal_eval(answer)
        except (ValueError, SyntaxError):
            return None
        if not isinstance(items, list):
            return None
        found = [normalize(str(i)) for i in items]
        return [i for i in found if i] or None
    if answer_format in ("Int", "Float", "Str") and len(answer) <= SHORT:
        item = normalize(answer)
        return [item] if item else None
    return None


Gold = list[list[str]]
"""Acceptable answers, each a list of items that must all appear."""


def gold(answer: str, answer_format: str) -> Gold | None:
    """The acceptable answers; None when the question has no short answer. ``Any`` (our set):
    ``answer`` is a JSON list of forms, any one of which will do ("17.5 billion", "17,455")."""
    if answer_format == "Any":
        forms = [normalize(str(f)) for f in json.loads(answer)]
        return [[f] for f in forms if f] or None
    items = gold_items(answer, answer_format)
    return None if items is None else [items]


def holds(text: str, answers: Gold) -> bool:
    """Whether ``text`` holds one of the acceptable answers."""
    return any(contains(text, items) for items in answers)


def contains(text: str, items: Sequence[str]) -> bool:
    padded = f" {normalize(text)} "
    return all(f" {item} " in padded for item in items)


def answer_text(answer: str, note: str) -> str:
    """An extractive answer's text before its closing note, without citation marks."""
    body = answer.split(note, 1)[0]
    return _CITATION.sub(" ", body)


@cache
def page_text(path: Path, page: int) -> str:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        if not 1 <= page <= len(pdf):
            return ""
        textpage = pdf[page - 1].get_textpage()
        return str(textpage.get_text_range())
    finally:
        pdf.close()


def short_buckets(qset: str, answer_format: str, extractable: bool) -> list[str]:
    """The rows a short answer counts in: its set's short answers (and of its format), and the
    extractable ones (and of its format) when its answer is written on an evidence page."""
    out = [f"{qset}|short", f"{qset}|short {answer_format}"]
    if extractable:
        out += [f"{qset}|extractable", f"{qset}|extractable {answer_format}"]
    return out


class AnswerTally:
    """Hits per row (a pipeline and a measure) and bucket (all, extractable, a format)."""

    def __init__(self) -> None:
        self.hits: dict[tuple[str, str], list[float]] = defaultdict(list)

    def add(self, row: str, buckets: Sequence[str], hit: bool) -> None:
        for bucket in buckets:
            self.hits[row, bucket].append(float(hit))

    def cell(self, row: str, bucket: str) -> tuple[int, float]:
        values = self.hits.get((row, bucket), [])
        return len(values), (sum(values) / len(values) if values else 0.0)

    def rows(self) -> list[str]:
        return list(dict.fromkeys(row for row, _ in self.hits))

"""What a question asks for, and whether a sentence offers that kind of thing.

"How many ..." wants a count, "What percentage ..." a percentage, "When ..." a year or a date,
"Who ..." a person's name, "What is the email ..." an address. A sentence that shares the
question's words but offers nothing of the kind asked for (no number for "how many") does not
answer it, however well it matches; one that offers it, beside the question's words, likely
does. :func:`kind_of` reads the question, :func:`offered` finds what a sentence offers (the
figures, names or addresses the question does not already say), so the extractive answer can
prefer, and emphasise, what was asked.

Every pattern here runs on passages at question time: each is linear in its input
(``tests/unit/test_text_passes.py`` checks).
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["Kind", "kind_of", "offered"]

Kind = Literal[
    "email",
    "phone",
    "percent",
    "count",
    "year",
    "amount",
    "number",
    "person",
    "place",
    "list",
    "name",
    "other",
]

_ASKS: list[tuple[Kind, re.Pattern[str]]] = [
    ("email", re.compile(r"\be-?mail\b")),
    ("phone", re.compile(r"\b(?:phone|telephone|fax|hotline)\b|\bnumber (?:shall|should) i call")),
    ("percent", re.compile(r"\bpercent(?:age)?s?\b|\bproportion\b|\bwhat share\b|%")),
    ("count", re.compile(r"\bhow many\b|\bnumber of\b|\bcount\b")),
    ("year", re.compile(r"\b(?:what|which|in which) year\b|\bwhen\b|\bwhat date\b")),
    (
        "amount",
        re.compile(
            r"\bhow much\b|\b(?:amount|cost|price|revenue|expenses?|income|sales|earnings|"
            r"spend|spent|paid|worth|fee|salary|budget|in millions|in billions)\b"
        ),
    ),
    ("number", re.compile(r"\bhow (?:long|big|large|old|far|tall|high|fast|heavy)\b")),
    ("person", re.compile(r"^who\b|\bwho (?:is|was|are|were)\b|\b(?:presenter|author)\b")),
    (
        "place",
        re.compile(
            r"^where\b|\bwhere (?:is|was|are|were|did|does|do)\b|"
            r"\bwhich (?:city|cities|country|countries|state|place|location)\b"
        ),
    ),
    (
        "list",
        re.compile(
            r"^(?:list|enumerate)\b|\blist (?:all|the|every)\b|\b(?:in|as a) list\b|"
            r"\blist format\b|^(?:what|which) are the\b|^name (?:all|the)\b"
        ),
    ),
    ("name", re.compile(r"^(?:which|what)\b")),
]

# Lookbehinds keep each pattern from starting inside a run it cannot end (linear time).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\d)(?:\+?\d{1,3}[\s.-])?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)")
_PERCENT = re.compile(r"(?<![\d,.])\d[\d,]*(?:\.\d+)?\s?(?:%|percent\b)")
_NUMBER = re.compile(r"(?<![\w.-])[$€£]?\d[\d,]*(?:\.\d+)?(?![\w])")  # not "COVID-19"
_YEAR = re.compile(r"(?<!\d)(?:1[6-9]|20)\d\d(?!\d)")
_MONTH = re.compile(
    r"\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?\s?\d{0,2}",
    re.IGNORECASE,
)
_AMOUNT = re.compile(
    r"[$€£]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|thousand|bn|m)\b)?"
    r"|(?<![\d,.])\d[\d,]*(?:\.\d+)?\s?(?:million|billion|thousand)\b",
    re.IGNORECASE,
)
_COUNT_WORD = re.compile(
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"dozens?|hundreds?|thousands?)\b",
    re.IGNORECASE,
)
# Capitalised words in a row (a name), not at the start of the sentence: "David Lubliner",
# "Berlin School of Experimental Psychology", "YOLACT".
_NAME = re.compile(
    r"(?<=[\s(\"'\u201c])[A-Z][\w&'\u2019.-]*"
    r"(?:\s+(?:(?:of|de|von|van|and|the|for|&)\s+)?[A-Z][\w&'\u2019.-]*)*"
)
# An item of a list: after a bullet, or after a line break the answer's list marks ("\n- ").
_ITEM = re.compile(r"(?:\n- |[\u2022\u25aa\u25cf]\s*)([^\n\u2022\u25aa\u25cf]{2,200})")
_ACRONYM = re.compile(r"\b[A-Z][A-Za-z0-9]*[A-Z0-9][A-Za-z0-9-]*\b")


def kind_of(question: str) -> Kind:
    """The kind of thing ``question`` asks for (``other``: a description, an explanation)."""
    lower = " ".join(question.lower().split())
    for kind, pattern in _ASKS:
        if pattern.search(lower):
            return kind
    return "other"


def offered(sentence: str, kind: Kind, question: str) -> list[tuple[int, int]]:
    """Spans of ``sentence`` that offer ``kind`` and that ``question`` does not already say
    (for a list: its items, when it has two or more)."""
    if kind == "list":
        items = [m.span(1) for m in _ITEM.finditer(sentence)]
        return items if len(items) >= 2 else []
    asked = question.lower()
    spans: list[tuple[int, int]] = []
    for pattern in _PATTERNS.get(kind, ()):
        for match in pattern.finditer(sentence):
            value = match.group().strip(" .,;:")
            if not value or value.lower() in asked:
                continue
            if kind == "count" and _YEAR.fullmatch(value.lstrip("$€£")):
                continue  # "2021" is a year, not a count
            spans.append((match.start(), match.start() + len(match.group().rstrip(" .,;:"))))
    # A span inside a longer one ("17.5" in "$17.5 billion") is that one.
    out: list[tuple[int, int]] = []
    reach = -1
    for start, stop in sorted(set(spans), key=lambda span: (span[0], -span[1])):
        if stop > reach:
            out.append((start, stop))
            reach = stop
    return out


_PATTERNS: dict[Kind, tuple[re.Pattern[str], ...]] = {
    "email": (_EMAIL,),
    "phone": (_PHONE,),
    "count": (_NUMBER, _COUNT_WORD),
    "percent": (_PERCENT,),
    "year": (_YEAR, _MONTH),
    "amount": (_AMOUNT, _PERCENT, _NUMBER),
    "number": (_PERCENT, _NUMBER),
    "person": (_NAME,),
    "place": (_NAME,),
    "name": (_ACRONYM, _NAME),
}

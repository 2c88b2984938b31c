"""Writing the answer: streamed by a language model, or extracted from the passages.

Both paths produce the same typed events, in the same order: ``sources`` (the passages, at once),
``token`` events (the answer in pieces), then ``done`` with the citations the answer actually
made, or ``error`` when the model endpoint fails part-way.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Sequence
from functools import cache
from importlib import resources
from uuid import UUID

import msgspec

from pdfqa import kinds, words
from pdfqa.citations import Citation, Reading, Source
from pdfqa.context import CHARS_PER_TOKEN
from pdfqa.llm import ChatMessage

__all__ = [
    "EXTRACTIVE_NOTE",
    "NOT_FOUND",
    "AnswerEvent",
    "Done",
    "Error",
    "Sources",
    "Token",
    "confidence_label",
    "escape_passage",
    "extractive_answer",
    "model_texts",
    "not_found_answer",
    "says_not_found",
    "prompt",
    "rewrite_messages",
]

NOT_FOUND = "I couldn't find this in the selected documents."
EXTRACTIVE_NOTE = "Quoted passages."
"""The one note of an extractive answer (the web chat's badge says why: no language model)."""
EXTRACT_SENTENCES = 4
KIND_BONUS = 1.5
"""What a matching sentence gains for offering the kind of thing asked for (a number for "how
many"), in units of a rare question word's weight."""
KIND_PENALTY = 1.0
"""What it loses for offering none of it, when an exact kind is asked for (a count, a year...)."""
_ASKING_TERMS = frozenset(words.stem(w) for w in ("many", "much"))
"""Words of "how many" / "how much": the kind asked for, not a subject to match."""
_EXACT_KINDS = frozenset(("email", "phone", "percent", "count", "year", "amount", "number"))
MAX_TABLE_ROWS = 8
"""Longest table quoted in an extractive answer, in rows."""

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")


class Sources(msgspec.Struct, tag="sources", frozen=True):
    sources: list[Source]
    confidence: float
    """Retrieval's confidence (0-1) that the sources hold the answer."""
    reading: list[Reading] = []
    """Documents still being read: the answer comes from their pages stored so far."""


class Token(msgspec.Struct, tag="token", frozen=True):
    text: str


class Done(msgspec.Struct, tag="done", frozen=True):
    message_id: UUID
    citations: list[Citation]
    mode: str
    confidence: float
    reading: list[Reading] = []


class Error(msgspec.Struct, tag="error", frozen=True):
    detail: str


AnswerEvent = Sources | Token | Done | Error


@cache
def _prompt_text(name: str) -> str:
    return (resources.files("pdfqa") / "prompts" / f"{name}.md").read_text(encoding="utf-8")


_CITATION_LIKE = re.compile(r"\[(\s*\d+\s*)\]")
# A header's "#"s are matched from the first of a run only (the lookbehind): tried from every
# "#" of a long run, the pattern would cost the square of the run's length.
_ROLE_LIKE = re.compile(r"(?:(?<!#)#+[ \t]*)?\b(system|assistant|user|instructions?)[ \t]*:", re.I)


def escape_passage(text: str) -> str:
    """Passage text as inert data inside the prompt's delimiters.

    ``&``, ``<`` and ``>`` are escaped (so no tag, chat-template token such as ``<|im_end|>``
    or delimiter can be spelled), ``[n]`` becomes ``(n)`` (a passage cannot cite, or pose as,
    another passage) and anything shaped like a role header (``System:``, ``### Instruction:``)
    is marked as quoted text.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _CITATION_LIKE.sub(r"(\1)", text)
    return _ROLE_LIKE.sub(lambda m: "(quoted) " + m.group(0), text)


def _attribute(value: str) -> str:
    return escape_passage(value).replace('"', "&quot;").replace("\n", " ")


def prompt(
    question: str,
    sources: Sequence[Source],
    history: Sequence[tuple[str, str]],
    *,
    nonce: str | None = None,
    budget_tokens: int = 2048,
) -> list[ChatMessage]:
    """The chat for a grounded answer: rules, earlier turns, delimited passages, the question.

    Each passage sits between ``<passage-NONCE n=".." document=".." page="..">`` and
    ``</passage-NONCE>``, where NONCE is random for every prompt, so text inside a PDF cannot
    guess it to close its passage or open a forged one; the text itself is escaped
    (:func:`escape_passage`). The system prompt tells the model the passages are untrusted data.
    A passage is its source's context (the passage widened on its page) while the passages fit
    ``budget_tokens`` in all, best sources first; past it, the matching passage alone (a small
    local model's context window holds the prompt and the answer).
    """
    tag = f"passage-{nonce or secrets.token_hex(8)}"
    texts = model_texts(sources, budget_tokens)
    passages = "\n\n".join(
        f'<{tag} n="{s.n}" document="{_attribute(s.upload_name)}"'
        f' page="{"-".join(map(str, _span(s.pages)))}">\n'
        f"{escape_passage(text)}\n</{tag}>"
        for s, text in zip(sources, texts, strict=True)
    )
    rules = _prompt_text("answer").replace("{tag}", tag)
    messages = [ChatMessage(role="system", content=rules)]
    for asked, answered in history[-3:]:
        messages.append(ChatMessage(role="user", content=asked))
        messages.append(ChatMessage(role="assistant", content=answered))
    messages.append(
        ChatMessage(role="user", content=f"Passages:\n\n{passages}\n\nQuestion: {question}")
    )
    return messages


def model_texts(sources: Sequence[Source], budget_tokens: int) -> list[str]:
    """The text a language model gets for each source: its context while the texts so far fit
    ``budget_tokens`` in all (best sources first), else its matching passage."""
    room = budget_tokens * CHARS_PER_TOKEN
    texts: list[str] = []
    for s in sources:
        text = s.context if s.context and len(s.context) <= room else s.text
        room -= len(text)
        texts.append(text)
    return texts


def rewrite_messages(question: str, history: Sequence[tuple[str, str]]) -> list[ChatMessage]:
    """The chat that turns a follow-up into a stand-alone question."""
    turns = "\n".join(f"User: {q}\nAssistant: {a[:500]}" for q, a in history[-3:])
    return [
        ChatMessage(role="system", content=_prompt_text("rewrite")),
        ChatMessage(role="user", content=f"Conversation:\n{turns}\n\nLast question: {question}"),
    ]


def _span(pages: Sequence[int]) -> list[int]:
    return [pages[0], pages[-1]] if len(pages) > 1 and pages[0] != pages[-1] else [pages[0]]


def confidence_label(confidence: float, threshold: float) -> str:
    """``low`` below the "not found" threshold, ``high`` at twice it or more, else ``medium``."""
    if confidence < threshold:
        return "low"
    return "high" if confidence >= 2 * threshold else "medium"


def says_not_found(answer: str) -> bool:
    """Whether a model's answer is the prompt's "not found" reply (straight or curly quote)."""
    said = " ".join(answer.replace("\u2019", "'").split()).lower()
    return said.startswith(NOT_FOUND.lower().rstrip("."))


def not_found_answer(confidence: float, threshold: float) -> str:
    """The "not found" answer: said plainly, with the confidence; the sources stay listed."""
    return (
        f"{NOT_FOUND} The closest passages are listed as sources, but none seems to answer the "
        f"question (confidence: {confidence_label(confidence, threshold)}, {confidence:.2f})."
    )


def extractive_answer(
    question: str, sources: Sequence[Source], confidence: float = 1.0, threshold: float = 0.0
) -> str:
    """The sentences of the best passages that best answer the question, each cited.

    The best sentence comes first, its figures (or, without figures, its names) that the
    question does not already say emphasised as ``**...**``; up to three more follow, best
    first. Table rows are shown as a small Markdown table. One note at the end says these are
    quoted passages and how confident retrieval is.

    A sentence scores by the question's terms it contains, each weighted by how rare it is among
    the candidate sentences (a word that every passage repeats, such as the subject's name,
    tells them apart the least), with a small preference for better-ranked passages. What the
    question asks for (:func:`pdfqa.kinds.kind_of`: a count, a percentage, a year, a name...)
    weighs too: a matching sentence that offers that kind of thing gains, one that offers
    nothing of it (no number for "how many") loses. Headings, reference-list entries and
    fragments ("MK-ToD [78]") are never offered as answers.
    """
    kind = kinds.kind_of(question)
    candidates = _candidates(sources, kind, question)
    label = confidence_label(confidence, threshold)
    note = f"{EXTRACTIVE_NOTE} Confidence: {label} ({confidence:.2f})."
    if not candidates:
        return note
    wanted = words.terms(question) - _ASKING_TERMS
    df = {t: sum(1 for *_, found in candidates if t in found) for t in wanted}
    weight = {t: math.log(1 + len(candidates) / n) for t, n in df.items() if n}
    scored = []
    for rank, position, end, sentence, source, found in candidates:
        matched = wanted & found
        score = sum(weight.get(t, 0.0) for t in matched)
        if matched:
            score += _kind_score(sentence, found, kind, question)
        scored.append((score - 0.25 * rank, rank, position, end, sentence, source))
    best: list[tuple[str, Source]] = []
    taken: dict[int, set[int]] = {}  # the lines of each source already quoted
    for _, rank, position, end, sentence, source in sorted(
        scored, key=lambda item: (-item[0], item[1], item[2])
    ):
        lines = set(range(position, end + 1))
        if lines & taken.setdefault(rank, set()):
            continue  # a sentence continued over lines already quoted, or quoted in another
        taken[rank] |= lines
        best.append((sentence, source))
        if len(best) == EXTRACT_SENTENCES:
            break
    blocks: list[str] = []
    for i, (sentence, source) in enumerate(best):
        cite = f"[{source.n}] ({source.upload_name}, p. {source.page})"
        if " | " in sentence:
            blocks.append(f"{_table(sentence)}\n{cite}")
        elif i == 0 and kind == "list" and kinds.offered(sentence, kind, question):
            blocks.append(f"{_as_list(sentence)}\n{cite}")
        elif i == 0:
            blocks.append(f"{_emphasise(sentence, question, kind)} {cite}")
        else:
            blocks.append(f'- "{sentence}" {cite}')
    return "\n\n".join(
        [blocks[0], "\n".join(blocks[1:]), note] if len(blocks) > 1 else [blocks[0], note]
    )


_Candidate = tuple[int, int, int, str, Source, set[str]]
"""(rank of its source, first and last position in it, sentence, source, its index terms)"""


def _candidates(sources: Sequence[Source], kind: kinds.Kind, question: str) -> list[_Candidate]:
    """The sentences of the best sources that could answer: no heading, fragment, reference or
    question of the document's own. A sentence cut off at a line break, or ending in a colon
    ("We perform IA support across 4 areas:"), goes on with the lines after it."""
    out: list[_Candidate] = []
    for rank, source in enumerate(sources[:4]):
        sentences = _sentences(source.context or source.text)
        for position, first in enumerate(sentences):
            sentence, end = _completed(sentences, position, longer=kind == "list")
            found = words.terms(sentence)
            if not found or _REFERENCE.search(first) or first.rstrip().endswith("?"):
                continue
            bare = _CITATION_MARK.sub("", _NUMBERING.sub("", sentence))
            short = len(bare.split()) < 6 and not _FIGURE_DIGITS.search(bare)
            if short and not (kind in _EXACT_KINDS and kinds.offered(sentence, kind, question)):
                continue  # a heading ("1.1.1 Tools") or a fragment says nothing by itself
            out.append((rank, position, end, sentence, source, found))
    return out


CONTINUED_LINES = 4
"""Lines an unfinished sentence may take from the lines after it."""
CONTINUED_CHARS = 400
LIST_LINES = 16
"""... and when the question asks for a list."""
LIST_CHARS = 1_200


def _completed(sentences: Sequence[str], position: int, *, longer: bool = False) -> tuple[str, int]:
    """The sentence at ``position``, continued over the next lines while it is unfinished, and
    the position of the last line it took (``longer``: a list is asked for, so a list after a
    heading may run on further)."""
    lines, chars = (LIST_LINES, LIST_CHARS) if longer else (CONTINUED_LINES, CONTINUED_CHARS)
    sentence = sentences[position]
    if " | " in sentence:
        return sentence, position
    taken = 0
    while (
        not _FINISHED.search(sentence)
        and position + 1 + taken < len(sentences)
        and taken < lines
        and len(sentence) < chars
    ):
        following = sentences[position + 1 + taken]
        if " | " in following:
            break
        joiner = "\n- " if sentence.endswith(":") or (taken and "\n- " in sentence) else " "
        sentence = f"{sentence}{joiner}{following}"
        taken += 1
    return sentence, position + taken


def _kind_score(sentence: str, found: set[str], kind: kinds.Kind, question: str) -> float:
    """What a matching sentence gains or loses for what it offers of the kind asked for."""
    if kind == "other":
        numbers = sum(1 for w in found if any(c.isdigit() for c in w))
        return 0.1 * min(numbers, 3)
    if kinds.offered(sentence, kind, question):
        return KIND_BONUS
    return -KIND_PENALTY if kind in _EXACT_KINDS else 0.0


# A piece starts after a non-space (or at the start): tried from inside a run of whitespace
# with nothing after it, "\s*\S+" would cost the square of the run's length.
_PIECE = re.compile(r"(?<!\s)\s*\S+")
_FINISHED = re.compile(r"[.!?][\"')\]\u201d]?\s*$")
_CITATION_MARK = re.compile(r"\[\d{1,3}(?:\s*[,\u2013-]\s*\d{1,3})*\]")
# A reference-list entry: "[12] A. Author, B. Author. Title. In Proceedings ..., 2020." or
# "Author, A. et al. (2020). Title. arXiv:2001.0001".
_REFERENCE = re.compile(
    r"^\s*\[\d{1,3}\]\s+[A-Z]|\bet al\.,?\s*[(\[]?(?:19|20)\d\d|\barXiv\b|"
    r"\bIn Proceedings\b|\bpp\.\s*\d|\bdoi:\s*10\.",
)
_FIGURE_DIGITS = re.compile(r"\d[\d,.]*\d|\d%")
_NUMBERING = re.compile(r"^\s*(?:\d+\.)*\d+\.?\s+")
# A figure, not the digits of a name ("R1", "Qwen-32B"): no letter, digit or joiner before it.
_FIGURE = re.compile(
    r"(?:[$€£]\s?)?(?<![\w.,-])\d[\d,.]*\s?(?:%|percent|million|billion|thousand|bn|m)?", re.I
)
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][\w&.-]*(?:\s+[A-Z][\w&.-]*)*")


def _emphasise(sentence: str, question: str, kind: kinds.Kind = "other") -> str:
    """``sentence`` with what the question asks for in bold: what it offers of the kind asked
    (:func:`pdfqa.kinds.offered`), else the figures the question does not state, else names."""
    asked = question.lower()
    spans = kinds.offered(sentence, kind, question) if kind != "other" else []
    if not spans:
        figures = [m for m in _FIGURE.finditer(sentence) if _bare(m.group()) not in asked]
        matches = figures or [m for m in _NAME.finditer(sentence) if m.group().lower() not in asked]
        spans = [(m.start() + len(m.group()) - len(m.group().lstrip()), m.end()) for m in matches]
    out, last = [], 0
    for start, stop in _disjoint(spans)[:3]:
        text = sentence[start:stop].rstrip(" .,;:")
        end = start + len(text)
        if not text.strip():
            continue
        out += [sentence[last:start], f"**{text}**"]
        last = end
    out.append(sentence[last:])
    return "".join(out)


def _as_list(sentence: str) -> str:
    """A sentence that holds a list ("HIT Applications • Patient registration • Billing"), as
    its lead-in and one Markdown item a line."""
    spans = kinds.offered(sentence, "list", "")
    lead = sentence[: spans[0][0]].rstrip(" \n-\u2022\u25aa\u25cf:") if spans else sentence
    items = [sentence[a:b].strip(" ;,") for a, b in spans]
    return "\n".join([f"{lead}:" if lead else "", *(f"- {item}" for item in items if item)]).strip()


def _disjoint(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` in order, leaving out any that overlaps one before it."""
    out: list[tuple[int, int]] = []
    for start, stop in sorted(spans, key=lambda span: (span[0], -span[1])):
        if not out or start >= out[-1][1]:
            out.append((start, stop))
    return out


def _bare(text: str) -> str:
    return text.strip().rstrip(".,;:").lower()


def _table(rows: str) -> str:
    """Table rows (``label | 2021: $17,455 | 2020: $11,139``) as a small Markdown table."""
    cells = [[c.strip() for c in row.split(" | ")] for row in rows.splitlines() if row.strip()]
    headers: list[str] = []
    body: list[list[str]] = []
    for row in cells:
        values = [row[0]]
        for j, cell in enumerate(row[1:], start=1):
            label, sep, value = cell.partition(": ")
            if sep and len(label) <= 30:
                if j >= len(headers):
                    headers += [""] * (j + 1 - len(headers))
                headers[j] = headers[j] or label
                values.append(value)
            else:
                values.append(cell)
        body.append(values)
    width = max(len(r) for r in body)
    headers = (headers + [""] * width)[:width]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join((r + [""] * width)[:width]) + " |" for r in body]
    return "\n".join(lines)


def _sentences(text: str) -> list[str]:
    """Sentences of prose; consecutive table rows (``a | b``) stay together as one block."""
    out: list[str] = []
    rows: list[str] = []
    for line in text.splitlines():
        if " | " in line:
            rows.append(line.strip())
            continue
        if rows:
            out.append("\n".join(rows[:MAX_TABLE_ROWS]))
            rows = []
        out += [s.strip() for s in _SENTENCE.split(line) if len(s.strip()) > 3]
    if rows:
        out.append("\n".join(rows[:MAX_TABLE_ROWS]))
    return out


def pieces(text: str) -> list[str]:
    """Split an answer into token-like pieces (a word and the space before it) for streaming."""
    return _PIECE.findall(text) or [text]

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

from pdfqa.citations import Citation, Source
from pdfqa.llm import ChatMessage

__all__ = [
    "EXTRACTIVE_LABEL",
    "NOT_FOUND",
    "AnswerEvent",
    "Done",
    "Error",
    "Sources",
    "Token",
    "escape_passage",
    "extractive_answer",
    "prompt",
    "rewrite_messages",
]

NOT_FOUND = "I couldn't find this in the selected documents."
EXTRACTIVE_LABEL = (
    "Extracted passages (no language model is configured, so these are the documents' own "
    "words, not a written answer):\n"
)
EXTRACT_SENTENCES = 4

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_TERM = re.compile(r"[a-z0-9][a-z0-9$%.,'\-]*")
_STOP = frozenset(
    """
    a an and are as at be by can did do does for from had has have how i in is it its of on
    or our say says that the their there these this to was were what when where which who why
    will with would you your about tell me please give list describe
    """.split()
)


class Sources(msgspec.Struct, tag="sources", frozen=True):
    sources: list[Source]


class Token(msgspec.Struct, tag="token", frozen=True):
    text: str


class Done(msgspec.Struct, tag="done", frozen=True):
    message_id: UUID
    citations: list[Citation]
    mode: str


class Error(msgspec.Struct, tag="error", frozen=True):
    detail: str


AnswerEvent = Sources | Token | Done | Error


@cache
def _prompt_text(name: str) -> str:
    return (resources.files("pdfqa") / "prompts" / f"{name}.md").read_text(encoding="utf-8")


_CITATION_LIKE = re.compile(r"\[(\s*\d+\s*)\]")
_ROLE_LIKE = re.compile(r"(#+[ \t]*)?\b(system|assistant|user|instructions?)[ \t]*:", re.I)


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
) -> list[ChatMessage]:
    """The chat for a grounded answer: rules, earlier turns, delimited passages, the question.

    Each passage sits between ``<passage-NONCE n=".." document=".." page="..">`` and
    ``</passage-NONCE>``, where NONCE is random for every prompt, so text inside a PDF cannot
    guess it to close its passage or open a forged one; the text itself is escaped
    (:func:`escape_passage`). The system prompt tells the model the passages are untrusted data.
    """
    tag = f"passage-{nonce or secrets.token_hex(8)}"
    passages = "\n\n".join(
        f'<{tag} n="{s.n}" document="{_attribute(s.upload_name)}"'
        f' page="{"-".join(map(str, _span(s.pages)))}">\n{escape_passage(s.text)}\n</{tag}>'
        for s in sources
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


def rewrite_messages(question: str, history: Sequence[tuple[str, str]]) -> list[ChatMessage]:
    """The chat that turns a follow-up into a stand-alone question."""
    turns = "\n".join(f"User: {q}\nAssistant: {a[:500]}" for q, a in history[-3:])
    return [
        ChatMessage(role="system", content=_prompt_text("rewrite")),
        ChatMessage(role="user", content=f"Conversation:\n{turns}\n\nLast question: {question}"),
    ]


def _span(pages: Sequence[int]) -> list[int]:
    return [pages[0], pages[-1]] if len(pages) > 1 and pages[0] != pages[-1] else [pages[0]]


def extractive_answer(question: str, sources: Sequence[Source]) -> str:
    """The sentences of the best passages that best match the question, each cited, labelled.

    A sentence scores by the question's terms it contains, each weighted by how rare it is among
    the candidate sentences (a word that every passage repeats, such as the subject's name,
    tells them apart the least), with a small preference for better-ranked passages.
    """
    terms = _terms(question)
    candidates: list[tuple[int, int, str, Source, set[str]]] = []
    for rank, source in enumerate(sources[:4]):
        for position, sentence in enumerate(_sentences(source.text)):
            words = _terms(sentence)
            if not words:
                continue
            if len(sentence.split()) < 6 and not any(c.isdigit() for c in sentence):
                continue  # a heading says nothing by itself
            candidates.append((rank, position, sentence, source, words))
    if not candidates:
        return EXTRACTIVE_LABEL
    df = {t: sum(1 for *_, words in candidates if t in words) for t in terms}
    weight = {t: math.log(1 + len(candidates) / n) for t, n in df.items() if n}
    scored = []
    for rank, position, sentence, source, words in candidates:
        matched = terms & words
        score = sum(weight.get(t, 0.0) for t in matched)
        if matched:
            numbers = sum(1 for w in words if any(c.isdigit() for c in w))
            score += 0.1 * min(numbers, 3)
        scored.append((score - 0.25 * rank, rank, position, sentence, source))
    best = sorted(scored, key=lambda item: (-item[0], item[1], item[2]))[:EXTRACT_SENTENCES]
    best.sort(key=lambda item: (item[1], item[2]))  # in passage order, then reading order
    lines = [
        f'- "{sentence}" [{source.n}] ({source.upload_name}, p. {source.page})'
        for _, _, _, sentence, source in best
    ]
    return EXTRACTIVE_LABEL + "\n".join(lines)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 3]


def _terms(text: str) -> set[str]:
    words = {w.strip(".,'-") for w in _TERM.findall(text.lower())}
    return {w for w in words if w and w not in _STOP}


def pieces(text: str) -> list[str]:
    """Split an answer into token-like pieces (a word and the space before it) for streaming."""
    return re.findall(r"\s*\S+", text) or [text]

"""Word handling in one place: tokens for the sparse index, stop words, the terms an answer is
matched on, the specific terms of a question and whether a question is a follow-up.

* :func:`tokenize` yields the index terms of a text: NFKC-normalised, lowercased, stop words
  dropped, each word reduced to its Snowball (Porter 2) stem, so "revenues" finds "revenue" and
  "operating" finds "operations". Numbers keep their written form and also yield a normalised
  one ("17,455" -> "17455"); compounds also yield their parts ("non-gaap" -> "non", "gaap").
* :func:`terms` is the set of those index terms (the extractive answer's matching).
* :func:`specific_terms` are a question's numbers, years and capitalised names.
* :func:`is_follow_up` says whether a question leans on the one before it.
* :func:`page_references` are the pages a question names ("on page 14", "the 6th page").

One English stop-word list serves all of them; it is short on purpose: words like "not", "no",
"above", "below", "over" and "under" carry meaning and stay in.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import cache

import Stemmer

__all__ = [
    "STOP_WORDS",
    "content_words",
    "asked",
    "is_follow_up",
    "named_numbers",
    "page_references",
    "specific_terms",
    "stem",
    "terms",
    "tokenize",
    "words",
]

# fmt: off
STOP_WORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "been", "being", "but", "by", "can", "could",
    "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his", "i", "if", "in",
    "into", "is", "it", "its", "itself", "me", "my", "of", "on", "or", "our", "ours", "she", "so",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "to", "too", "us", "was", "we", "were", "what", "when", "where", "which", "while", "who",
    "whom", "why", "will", "with", "would", "you", "your", "how", "about", "should", "it's",
))
"""English function words: no index term, no answer term, never a name when capitalised."""

_ASKING = frozenset((
    "tell", "give", "list", "describe", "explain", "summarize", "summarise", "please", "show",
    "name", "according", "among", "compare",
))
"""Verbs a question opens with; capitalised at its start, they are not names."""

_FOLLOW_UP_OPENERS = (
    "and ", "what about", "how about", "also", "how so", "what else", "then", "so ", "but ",
    "why?", "why so", "why not?",
)
_PRONOUNS = frozenset((
    "it", "its", "they", "them", "their", "he", "she", "his", "her", "him", "same", "former",
    "latter",
))
"""Words that point back to something said before (not "this" or "that": "this report" names
the document being asked about)."""
_NOT_CONTENT = frozenset((
    "many", "much", "more", "most", "less", "some", "any", "other", "also", "else", "all",
    "does", "did", "done", "just", "only", "very", "there", "here", "not", "now",
))
"""Words that say nothing of what a question is about."""
FOLLOW_UP_CONTENT = 2
"""A question with a pronoun and this many content words or fewer leans on the one before."""
# fmt: on

# A token is a run of letters/digits, optionally joined to more runs by one of - . , / & _
# ("10-k", "17,455", "1.2", "s&p", "u.s"), optionally led by "$" and trailed by "%". A joiner
# followed by a space or the end ("2021." or "sales, net") is not part of the token.
_TOKEN = re.compile(r"\$?[^\W_]+(?:[-.,/&_][^\W_]+)*%?")
_NUMBER = re.compile(r"\$?\d+(?:[.,]\d+)*%?")
_COMPOUND_SPLIT = re.compile(r"[-/&_]")
_NUMBER_PUNCTUATION = str.maketrans("", "", "$,%")
# PDF text often spells a hyphen as U+2010 or the non-breaking U+2011.
_HYPHENS = str.maketrans({"\u2010": "-", "\u2011": "-"})
_POSSESSIVE = re.compile(r"['\u2019]s\b")
_QUESTION_NUMBER = re.compile(r"\$?\d[\d,.]*%?")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9&\-']+")
_CONTENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{2,}")
_LOWER_WORD = re.compile(r"[a-z']+")
# A figure, alone or after letters it is written against ("FY2021", "Q4"): the figure itself.
_NAMED_NUMBER = re.compile(r"(?<![\d.,])(?:[A-Za-z]{1,4}[-_']?)?(\d[\d,]*(?:\.\d+)?)(?![\d])")
_CHAT_MARKUP = frozenset(("user", "assistant", "conversation", "question", "last", "sys", "inst"))
"""Words of a chat transcript's own markup, which a rewritten question must not count on."""


@cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def stem(word: str) -> str:
    """The Snowball English stem of one lowercased word."""
    result: str = _stemmer().stemWord(word)
    return result


def words(text: str) -> Iterator[str]:
    """The lowercased, NFKC-normalised tokens of ``text``, unstemmed, stop words included."""
    normalised = unicodedata.normalize("NFKC", text).translate(_HYPHENS).lower()
    for match in _TOKEN.finditer(normalised):
        yield match.group()


def tokenize(text: str) -> Iterator[str]:
    """Yield the index terms of ``text`` in order (see the module docstring)."""
    for token in words(text):
        if _is_noise(token):
            continue
        if _NUMBER.fullmatch(token):
            yield token
            plain = token.translate(_NUMBER_PUNCTUATION)
            if plain != token and plain:
                yield plain
        elif _COMPOUND_SPLIT.search(token):
            yield token
            for part in _COMPOUND_SPLIT.split(token):
                if part != token and not _is_noise(part):
                    yield stem(part)
        elif token.isalpha():
            yield stem(token)
        else:  # "u.s", "covid19": stemming would cut them ("u.s" -> "u.")
            yield token


def terms(text: str) -> set[str]:
    """The distinct index terms of ``text``."""
    return set(tokenize(text))


def _is_noise(token: str) -> bool:
    return token in STOP_WORDS or (len(token) == 1 and not token.isdigit())


def specific_terms(question: str) -> set[str]:
    """Numbers, years and capitalised names (lowercased): what a passage must name to answer."""
    question = _POSSESSIVE.sub("", question)
    found = {m.group(0).strip(".,").lower() for m in _QUESTION_NUMBER.finditer(question)}
    found = {t for t in found if len(t.strip("$%")) >= 2}
    for i, word in enumerate(_WORD.findall(question)):
        lower = word.lower()
        ordinary = lower in STOP_WORDS or lower in _ASKING
        if word[0].isupper() and not ordinary and (i > 0 or word.isupper()):
            found.add(lower)
    return found


def asked(question: str) -> str:
    """The question itself, without what follows its last "?" when something does (an
    instruction on the answer's form: "Round your answer to two decimals.", "Answer in
    millions.", whose words no passage needs to hold)."""
    end = question.rfind("?")
    return question[: end + 1] if 0 <= end < len(question.rstrip()) - 1 else question


def named_numbers(question: str) -> set[str]:
    """The figures a question names that a document answering it must hold: years, amounts,
    codes ("2024", "700,000", "FY2021" -> "2021"), read in the question itself (up to its first
    "?": what follows is an instruction on the answer's form) and of three digits or more (a
    "3" or a "25" is too common to tell anything, and page numbers are not looked for)."""
    end = question.find("?")
    asked = question[: end + 1] if end >= 0 else question
    pages = {str(n) for n in page_references(asked)}
    found: set[str] = set()
    for match in _NAMED_NUMBER.finditer(asked):
        number = match.group(1).rstrip(".,")
        digits = sum(c.isdigit() for c in number)
        if digits >= 3 and number not in pages:
            found.add(number)
    return found


def content_words(text: str) -> set[str]:
    """Lowercased words of three characters or more that are not stop words (unstemmed)."""
    found = {w.lower() for w in _CONTENT.findall(text)}
    return found - STOP_WORDS - _CHAT_MARKUP


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the one before it rather than standing on its own.

    It does when it opens like a follow-up ("and in 2020?", "what about Japan?", "why?"), when
    it points back with a pronoun and says little of its own (at most
    :data:`FOLLOW_UP_CONTENT` content words: "what are its risks?", "who founded it?"), or when
    it holds one content word at most and nothing specific ("how much?", "tell me more",
    "what is the revenue?"). A question with enough words of its own
    stands alone whatever pronoun it holds ("How do they stop the model from mixing
    languages?"), and "this report" or "the document" point at the document, not at the
    question before: asked mid-conversation, such a question is searched for exactly as if it
    were asked first.
    """
    lower = question.strip().lower()
    if lower.startswith(_FOLLOW_UP_OPENERS):
        return True
    tokens = _LOWER_WORD.findall(lower)
    own = content_words(question) - _PRONOUNS - _NOT_CONTENT - _ASKING
    if any(w in _PRONOUNS for w in tokens):
        return len(own) <= FOLLOW_UP_CONTENT
    return len(own) <= 1 and not specific_terms(question)


_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10,
}  # fmt: skip
_PAGE_REFERENCE = re.compile(
    r"\bpages?\s+(\d{1,4})(?:\s*(?:-|\u2013|to|and|&)\s*(\d{1,4}))?\b"
    r"|\bp{1,2}\.\s*(\d{1,4})\b"
    r"|\b(\d{1,4})(?:st|nd|rd|th)\s+page\b"
    rf"|\b({'|'.join(_ORDINALS)})\s+page\b",
    re.IGNORECASE,
)
MAX_PAGE_REFERENCES = 5


def page_references(question: str) -> list[int]:
    """The page numbers ``question`` names, in order, at most :data:`MAX_PAGE_REFERENCES`:
    "page 14", "pages 10 and 11", "pages 3-5", "p. 7", "the 6th page", "the second page"."""
    found: list[int] = []
    for match in _PAGE_REFERENCE.finditer(question):
        first, last, short, nth, word = match.groups()
        start = _ORDINALS[word.lower()] if word else int(first or short or nth)
        end = min(int(last), start + MAX_PAGE_REFERENCES - 1) if last else start
        found.extend(n for n in range(start, end + 1) if n >= 1 and n not in found)
    return found[:MAX_PAGE_REFERENCES]

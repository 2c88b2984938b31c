"""BM25-style sparse vectors for the keyword half of hybrid retrieval.

Dense embeddings blur exact figures, names and codes ("17,455", "10-K", "ROE"), which is what
questions about financial filings hinge on. This module turns text into sparse vectors whose
dot product with a query vector is BM25 once the vector store multiplies in the inverse
document frequency (Qdrant's ``Modifier.IDF`` on the sparse vector config, which qdrant-client's
local mode honours as well):

* documents carry BM25's saturated term frequency ``tf*(k1+1) / (tf + k1*(1-b+b*len/avg_len))``;
* queries carry ``1.0`` per distinct term;
* indices are a stable 32-bit hash of the token (``blake2b``), never Python's salted ``hash()``,
  so vectors written by one process match queries built by another.

Pure functions, no state: cheap enough to run on the event loop for a query, and run next to
the embedder for documents.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator

import msgspec

__all__ = [
    "AVG_DOC_LEN",
    "B",
    "K1",
    "SparseVector",
    "sparse_document",
    "sparse_query",
    "term_index",
    "tokenize",
]

K1 = 1.2
"""BM25 term-frequency saturation."""
B = 0.75
"""BM25 length normalisation."""
AVG_DOC_LEN = 100.0
"""Fixed average document length in tokens: a 200-word-piece chunk keeps ~100 non-stop-words.

A constant (not a corpus statistic) so a document's vector never changes after it is written.
"""

# A small list on purpose: words like "not", "no", "above", "below", "over", "under" carry
# meaning in financial text and stay in.
# fmt: off
_STOP_WORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "been", "being", "but", "by", "can", "could",
    "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his", "i", "if", "in",
    "into", "is", "it", "its", "itself", "me", "my", "of", "on", "or", "our", "ours", "she", "so",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "to", "too", "us", "was", "we", "were", "what", "when", "where", "which", "while", "who",
    "whom", "why", "will", "with", "would", "you", "your",
))
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


class SparseVector(msgspec.Struct, frozen=True):
    """Parallel lists of dimension indices (unique, ascending, each < 2**32) and their values."""

    indices: list[int]
    values: list[float]


def tokenize(text: str) -> Iterator[str]:
    """Yield the index terms of ``text`` in order.

    Lowercased and NFKC-normalised (ligatures, full-width digits), stop words dropped. Numbers
    keep their written form and also yield a normalised one ("17,455" -> "17455", "$1.2" ->
    "1.2", "12%" -> "12"); compounds keep their written form and also yield their parts
    ("non-gaap" -> "non", "gaap"), so a query for either form matches.
    """
    normalised = unicodedata.normalize("NFKC", text).translate(_HYPHENS).lower()
    for match in _TOKEN.finditer(normalised):
        token = match.group()
        if _is_noise(token):
            continue
        yield token
        if _NUMBER.fullmatch(token):
            plain = token.translate(_NUMBER_PUNCTUATION)
            if plain != token and plain:
                yield plain
        elif _COMPOUND_SPLIT.search(token):
            for part in _COMPOUND_SPLIT.split(token):
                if part != token and not _is_noise(part):
                    yield part


def _is_noise(token: str) -> bool:
    return token in _STOP_WORDS or (len(token) == 1 and not token.isdigit())


def term_index(token: str) -> int:
    """The stable, non-negative 32-bit sparse dimension of ``token``."""
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "little")


def _term_frequencies(text: str) -> tuple[Counter[int], int]:
    counts: Counter[int] = Counter()
    length = 0
    for token in tokenize(text):
        counts[term_index(token)] += 1
        length += 1
    return counts, length


def sparse_document(text: str) -> SparseVector:
    """BM25 document-side weights of ``text`` (IDF is left to the vector store)."""
    counts, length = _term_frequencies(text)
    norm = K1 * (1.0 - B + B * length / AVG_DOC_LEN)
    indices = sorted(counts)
    values = [counts[i] * (K1 + 1.0) / (counts[i] + norm) for i in indices]
    return SparseVector(indices=indices, values=values)


def sparse_query(text: str) -> SparseVector:
    """Query-side weights of ``text``: 1.0 per distinct term."""
    counts, _ = _term_frequencies(text)
    indices = sorted(counts)
    return SparseVector(indices=indices, values=[1.0] * len(indices))

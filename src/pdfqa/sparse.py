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

Tokens come from :func:`pdfqa.words.tokenize`. Pure functions, no state: cheap enough to run
on the event loop for a query, and run next to the embedder for documents.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import msgspec

from pdfqa.words import tokenize

__all__ = [
    "AVG_DOC_LEN",
    "B",
    "K1",
    "SparseVector",
    "sparse_document",
    "sparse_query",
    "term_index",
]

K1 = 1.2
"""BM25 term-frequency saturation."""
B = 0.75
"""BM25 length normalisation."""
AVG_DOC_LEN = 100.0
"""Fixed average document length in tokens: a 200-word-piece chunk keeps ~100 non-stop-words.

A constant (not a corpus statistic) so a document's vector never changes after it is written.
"""


class SparseVector(msgspec.Struct, frozen=True):
    """Parallel lists of dimension indices (unique, ascending, each < 2**32) and their values."""

    indices: list[int]
    values: list[float]


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

import math
import subprocess
import sys

import pytest

from pdfqa.sparse import (
    AVG_DOC_LEN,
    K1,
    B,
    SparseVector,
    sparse_document,
    sparse_query,
    term_index,
)
from pdfqa.words import tokenize


def bm25_tf(tf: int, length: int) -> float:
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / AVG_DOC_LEN))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Revenue was $17,455 million", ["revenu", "$17,455", "17455", "million"]),
        ("fiscal 2021.", ["fiscal", "2021"]),
        ("the Form 10-K of the company", ["form", "10-k", "10", "compani"]),
        ("ROE rose 12.5%, EPS $1.2", ["roe", "rose", "12.5%", "12.5", "ep", "$1.2", "1.2"]),
        ("Non\u2011GAAP", ["non-gaap", "non", "gaap"]),  # non-breaking hyphen from a PDF
        ("\ufb01nancial", ["financi"]),  # the "fi" ligature
        ("it is what it is", []),
        ("1,234.56 sales, net", ["1,234.56", "1234.56", "sale", "net"]),
        ("U.S. revenues", ["u.s", "revenu"]),  # stems only whole words
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert list(tokenize(text)) == expected


def test_term_index_is_stable_across_processes() -> None:
    # Pinned values: vectors written by one process must match queries built by another,
    # so a change of hash function is a breaking change to every stored collection.
    assert term_index("10-k") == 494208743
    assert term_index("17455") == 4214485167
    script = "from pdfqa.sparse import term_index; print(term_index('10-k'))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert out.stdout.strip() == "494208743"


def test_term_index_range() -> None:
    for token in ("a", "revenue", "$17,455", "\u00e9t\u00e9", "x" * 1000):
        assert 0 <= term_index(token) < 2**32


def test_document_values_are_bm25_saturated_tf() -> None:
    vector = sparse_document("revenue revenue growth")
    weights = dict(zip(vector.indices, vector.values, strict=True))
    assert weights == {
        term_index("revenu"): pytest.approx(bm25_tf(2, 3)),
        term_index("growth"): pytest.approx(bm25_tf(1, 3)),
    }
    assert vector.indices == sorted(vector.indices)


def test_document_weight_saturates_and_normalises_length() -> None:
    def weight(text: str, term: str) -> float:
        vector = sparse_document(text)
        return vector.values[vector.indices.index(term_index(term))]

    once, thrice, many = (weight(" ".join(["margin"] * n), "margin") for n in (1, 3, 50))
    assert once < thrice < many < K1 + 1
    short = weight("margin growth", "margin")
    long = weight("margin " + " ".join(f"word{i}" for i in range(300)), "margin")
    assert long < short


def test_query_is_one_per_distinct_term() -> None:
    vector = sparse_query("ROE roe ROE and 10-K")
    assert vector.values == [1.0] * len(vector.indices)
    assert sorted(vector.indices) == vector.indices
    assert set(vector.indices) == {term_index(t) for t in ("roe", "10-k", "10")}


def test_written_and_plain_numbers_share_a_dimension() -> None:
    document = set(sparse_document("Total revenue $17,455 million").indices)
    assert set(sparse_query("17455").indices) <= document
    assert set(sparse_query("17,455").indices) & document


def test_empty_text() -> None:
    assert sparse_document("") == SparseVector(indices=[], values=[])
    assert sparse_query("the of and") == SparseVector(indices=[], values=[])


def test_values_are_finite() -> None:
    vector = sparse_document("x " * 10_000 + "10-K")
    assert all(math.isfinite(v) and v > 0 for v in vector.values)

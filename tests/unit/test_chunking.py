"""The chunker: page numbers kept, the embedder's input limit respected, sensible boundaries."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from pdfqa.chunking import Chunker, ChunkerState, TokenCounter, word_piece_counter
from pdfqa.embeddings import bundled_model_dir


@pytest.fixture(scope="module")
def count() -> TokenCounter:
    return word_piece_counter(bundled_model_dir() / "tokenizer.json")


def sentences(n: int, page: int) -> str:
    return " ".join(
        f"Sentence number {i} on page {page} talks about revenue growth." for i in range(n)
    )


def test_every_chunk_fits_the_embedder_and_keeps_its_pages(count: TokenCounter) -> None:
    chunker = Chunker(count, target_tokens=60, overlap_tokens=12, max_tokens=254)
    chunks = []
    for page in range(1, 6):
        chunks += chunker.add_page(page, sentences(12, page))
    chunks += chunker.finish()
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        real = count([c.text])[0]
        assert real == c.tokens <= 60 + 12
        assert c.pages == sorted(c.pages)
        for page in c.pages:  # a chunk names exactly the pages its text came from
            assert f"on page {page}" in c.text
        for other in set(range(1, 6)) - set(c.pages):
            assert f"on page {other} " not in c.text
    covered = {p for c in chunks for p in c.pages}
    assert covered == {1, 2, 3, 4, 5}


def test_chunks_end_at_sentence_boundaries_and_overlap(count: TokenCounter) -> None:
    chunker = Chunker(count, target_tokens=50, overlap_tokens=15, max_tokens=254)
    chunks = chunker.add_page(1, sentences(20, 1)) + chunker.finish()
    assert len(chunks) > 3
    for c in chunks:
        assert c.text.endswith("growth.")
        assert c.text.startswith("Sentence number")
    for a, b in itertools.pairwise(chunks):
        last_sentence = a.text.rsplit("Sentence number", 1)[1]
        assert last_sentence in b.text  # the next chunk repeats the previous one's tail


def test_a_chunk_never_spans_a_page_break(count: TokenCounter) -> None:
    # Even a sentence cut by the page break: each page's words are cited on their own page.
    chunker = Chunker(count, target_tokens=200, overlap_tokens=20, max_tokens=254)
    chunks = chunker.add_page(7, "The company reported") + chunker.add_page(8, "strong results.")
    chunks += chunker.finish()
    assert [(c.pages, c.text) for c in chunks] == [
        ([7], "The company reported"),
        ([8], "strong results."),
    ]


def test_a_page_is_cut_into_even_shares(count: TokenCounter) -> None:
    chunker = Chunker(count, target_tokens=100, overlap_tokens=0, max_tokens=254)
    chunks = chunker.add_page(1, sentences(14, 1)) + chunker.finish()  # ~170 word pieces
    assert len(chunks) == 2
    assert abs(chunks[0].tokens - chunks[1].tokens) <= 15  # no scrap of a tail


def test_snapshot_and_restore_resume_at_a_page_boundary(count: TokenCounter) -> None:
    pages = [(n, f"Annual Report 2021\n{sentences(8, n)}\nPage {n}") for n in range(1, 13)]
    whole = Chunker(count, target_tokens=80, overlap_tokens=10)
    expected = [c for n, t in pages for c in whole.add_page(n, t)] + whole.finish()
    first = Chunker(count, target_tokens=80, overlap_tokens=10)
    got = [c for n, t in pages[:5] for c in first.add_page(n, t)]
    state = msgspec.json.decode(msgspec.json.encode(first.snapshot()), type=ChunkerState)
    second = Chunker(count, target_tokens=80, overlap_tokens=10)
    second.restore(state)
    got += [c for n, t in pages[5:] for c in second.add_page(n, t)] + second.finish()
    assert got == expected
    assert all("Annual Report" not in c.text and "Page " not in c.text for c in got)


def test_an_unbroken_run_of_text_is_cut_to_fit(count: TokenCounter) -> None:
    chunker = Chunker(count, target_tokens=40, overlap_tokens=0, max_tokens=254)
    blob = "x" * 5000 + " " + " ".join(["word"] * 300)
    chunks = chunker.add_page(3, blob) + chunker.finish()
    assert chunks
    assert all(count([c.text])[0] <= 40 for c in chunks)
    assert all(c.pages == [3] for c in chunks)


def test_table_rows_stay_on_their_own_lines(count: TokenCounter) -> None:
    table = (
        "Revenue | 2021: 17,455 | 2020: 11,139\n"
        "Net loss | 2021: (496) | 2020: (6,768)\n"
        "EBITDA | 2021: (774)"
    )
    chunker = Chunker(count)
    chunks = chunker.add_page(2, table) + chunker.finish()
    assert chunks[0].text.splitlines() == table.splitlines()


def test_empty_pages_produce_nothing_but_count_as_done(count: TokenCounter) -> None:
    chunker = Chunker(count)
    assert chunker.add_page(1, "") == []
    assert chunker.add_page(2, "   \n\n ") == []
    assert chunker.pages_complete == 0  # held for the header/footer comparison
    assert chunker.finish() == []
    assert chunker.pages_complete == 2


def test_bad_budgets_are_refused(count: TokenCounter) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        Chunker(count, target_tokens=240, overlap_tokens=30, max_tokens=254)
    with pytest.raises(ValueError, match="overlap"):
        Chunker(count, target_tokens=40, overlap_tokens=40)

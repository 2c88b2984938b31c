"""The reader's text for a source: its passage widened by its neighbours on the same page."""

from __future__ import annotations

import pytest

from pdfqa.chunking import ChunkSpec, TokenCounter
from pdfqa.context import around, join_overlapping
from pdfqa.embeddings import bundled_model_dir
from pdfqa.store.vectors import Hit


@pytest.fixture(scope="module")
def count() -> TokenCounter:
    return ChunkSpec(str(bundled_model_dir() / "tokenizer.json"), 60, 20, 254).counter()


def page(n: int, sentences: int = 30) -> str:
    return " ".join(
        f"Sentence {i} of page {n} reports figure {i * 7 + n}." for i in range(sentences)
    )


def hits_of(count: TokenCounter, pages: dict[int, str]) -> dict[tuple[str, int], Hit]:
    chunker = ChunkSpec(str(bundled_model_dir() / "tokenizer.json"), 60, 20, 254).chunker(count)
    cut = [c for n, text in pages.items() for c in chunker.add_page(n, text)]
    cut += chunker.finish()
    return {
        ("up", c.index): Hit(
            chunk_id=str(c.index),
            upload_id="up",
            user_id="u",
            chunk_index=c.index,
            pages=c.pages,
            text=c.text,
            score=0.0,
        )
        for c in cut
    }


def test_a_whole_page_comes_back_from_its_overlapping_chunks(count: TokenCounter) -> None:
    chunks = hits_of(count, {1: page(1)})
    assert len(chunks) > 4
    text = ""
    for key in sorted(chunks):
        text = join_overlapping(text, chunks[key].text)
    assert text == page(1)  # every sentence once, in order: the repeated ones given once


def test_context_widens_on_the_same_page_only_within_the_budget(count: TokenCounter) -> None:
    chunks = hits_of(count, {1: page(1), 2: page(2), 3: page(3)})
    on_two = sorted(k for k, h in chunks.items() if h.pages == [2])
    middle = chunks[on_two[len(on_two) // 2]]
    wide = around(middle, chunks, budget_chars=100_000)
    assert wide == page(2)  # the whole page, nothing of pages 1 or 3
    narrow = around(middle, chunks, budget_chars=len(middle.text) + 10)
    assert narrow == middle.text  # no neighbour fits
    some = around(middle, chunks, budget_chars=3 * len(middle.text))
    assert middle.text in some
    assert len(middle.text) < len(some) <= 3 * len(middle.text)
    assert "of page 1 " not in some
    assert "of page 3 " not in some
    # The chunk after the passage is taken first.
    after = chunks["up", middle.chunk_index + 1]
    first_added = around(middle, chunks, budget_chars=len(middle.text) + len(after.text))
    assert first_added == join_overlapping(middle.text, after.text)


def test_texts_without_an_overlap_are_joined_with_a_space() -> None:
    assert join_overlapping("Revenue grew.", "Costs fell.") == "Revenue grew. Costs fell."
    assert join_overlapping("", "Costs fell.") == "Costs fell."
    assert join_overlapping("a | b", "c | d\nrow") == "a | b c | d\nrow"

"""Every chunk's text is on the page it names, over every PDF of ../shared/corpus and
../shared/benchmarks (the pages' text layer as pdfium reads it, the chunker and its cleanup as
ingestion runs them; pdfplumber's table rendering only ever draws on its own page)."""

from __future__ import annotations

import re
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from pdfqa.chunking import Chunker, TokenCounter, word_piece_counter
from pdfqa.cleanup import join_hyphens
from pdfqa.embeddings import bundled_model_dir
from pdfqa.extract import normalize

SHARED = Path(__file__).resolve().parents[3] / "shared"
PDFS = sorted(
    p
    for p in [*SHARED.glob("corpus/*.pdf"), *SHARED.glob("benchmarks/**/*.pdf")]
    if p.stat().st_size < 20_000_000
)
_WORD = re.compile(r"[^\W_]+")


@pytest.fixture(scope="module")
def count() -> TokenCounter:
    return word_piece_counter(bundled_model_dir() / "tokenizer.json")


def test_the_shared_pdfs_are_there() -> None:
    assert len(PDFS) >= 40


@pytest.mark.parametrize("path", PDFS, ids=[p.name[:40] for p in PDFS])
def test_every_chunk_is_on_the_page_it_names(path: Path, count: TokenCounter) -> None:
    pdf = pdfium.PdfDocument(str(path))
    try:
        pages: dict[int, str] = {}
        for number in range(1, min(len(pdf), 400) + 1):
            page = pdf[number - 1]
            textpage = page.get_textpage()
            pages[number] = normalize(textpage.get_text_range())
            textpage.close()
            page.close()
    finally:
        pdf.close()
    chunker = Chunker(count)
    chunks = [c for n, t in pages.items() for c in chunker.add_page(n, t)] + chunker.finish()
    words = {n: set(_WORD.findall(join_hyphens(t).lower())) for n, t in pages.items()}
    for chunk in chunks:
        assert len(chunk.pages) == 1, chunk
        (page,) = chunk.pages
        missing = set(_WORD.findall(chunk.text.lower())) - words[page]
        assert not missing, (page, sorted(missing)[:5], chunk.text[:200])

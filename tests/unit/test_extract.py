"""Tests of pdfqa.extract against the shared corpus (real PDFs, real child processes)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from pdfqa.errors import IngestError
from pdfqa.extract import ExtractLimits, PageText, normalize, open_pdf
from pdfqa.settings import Settings

CORPUS = Path(__file__).parents[3] / "shared" / "corpus"
BAD = CORPUS / "bad"
LIMITS = ExtractLimits(memory_mb=1536, cpu_s=600, page_timeout_s=30.0, max_pages=5000)


async def read_all(path: Path, limits: ExtractLimits = LIMITS) -> list[PageText]:
    async with open_pdf(path, limits) as doc:
        pages = [page async for page in doc.pages()]
        assert len(pages) == doc.page_count
    return pages


def test_limits_from_settings() -> None:
    settings = Settings(extract_memory_mb=700, extract_cpu_s=60, page_timeout_s=2.5, max_pages=9)
    assert ExtractLimits.from_settings(settings) == ExtractLimits(
        memory_mb=700, cpu_s=60, page_timeout_s=2.5, max_pages=9, ocr_threshold=0.25
    )


def test_normalize_is_light() -> None:
    raw = "adip\ufffeiscing  elit\r\n\r\n\r\n\r\nnext\tline \x01"
    assert normalize(raw) == "adipiscing elit\n\nnext line"


async def test_deepseek_pages_in_order_with_text() -> None:
    pages = await read_all(CORPUS / "DeepSeek_R1.pdf")
    assert [p.number for p in pages] == list(range(1, 23))
    assert all(p.error is None for p in pages)
    assert "Incentivizing Reasoning Capability in LLMs" in pages[0].text
    assert pages[2].text.startswith("1. Introduction")
    assert "\r" not in pages[2].text
    assert not multiprocessing.active_children()  # the child is gone after `async with`


async def test_table_pdf_tables_are_images() -> None:
    # table.pdf's two tables are raster images: only their captions are text.
    [page] = await read_all(CORPUS / "table.pdf")
    assert "【表２】" in page.text
    assert (page.method, page.tables) == ("pdfium", 0)


async def test_10k_financial_table_rendered_with_year_headers() -> None:
    async with open_pdf(CORPUS / "lyft_2021.pdf", LIMITS) as doc:
        async for page in doc.pages():
            if page.number == 63:
                break
    assert page.method == "pdfplumber"
    assert page.tables >= 2
    assert "Revenue | 2021: $3,208,323 | 2020: $2,364,681 | 2019: $3,615,960" in page.text
    assert "Net loss | 2021: $(1,009,359)" in page.text
    assert page.text.count("1,649,532") == 1  # the table's numbers are not repeated as flat text
    assert not multiprocessing.active_children()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.pdf", "The file is empty."),
        ("not_a_pdf.pdf", "The file is not a PDF (it does not start with a %PDF- header)."),
        ("garbage.pdf", "The file is not a valid PDF or is corrupt."),
        ("password.pdf", "The PDF is password-protected."),
        ("cyclic.pdf", "1 of its 2 pages cannot be found"),
        ("truncated.pdf", "15 of its 22 pages cannot be found, starting with page 8"),
        ("bomb.pdf", "Page 1 needed more than 1536 MB of memory."),
    ],
)
async def test_bad_files_are_refused(name: str, reason: str) -> None:
    with pytest.raises(IngestError) as info:
        await read_all(BAD / name)
    assert reason in str(info.value)
    assert not multiprocessing.active_children()


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("pdf_encrypted.pdf", "This document is a placeholder"),  # empty user password
        ("pdf_with_forms.pdf", "user fillable PDF form"),
        ("pdf_with_annotations.pdf", "Example of File Attachment"),
        ("file_scanned.pdf", ""),  # no text layer: an empty page, not an error
        ("file_image.pdf", ""),
    ],
)
async def test_odd_but_valid_files(name: str, phrase: str) -> None:
    [page] = await read_all(BAD / name)
    assert page.error is None
    if phrase:
        assert phrase in page.text
    else:
        assert page.text == ""


async def test_bomb_kills_only_the_child_and_the_next_document_works() -> None:
    with pytest.raises(IngestError, match="needed more than 256 MB of memory"):
        await read_all(BAD / "bomb.pdf", ExtractLimits(256, 60, 30.0, 10))
    pages = await read_all(BAD / "pdf_with_forms.pdf")
    assert "PDF Form Example" in pages[0].text


async def test_page_timeouts_skip_pages_then_give_up() -> None:
    limits = ExtractLimits(memory_mb=1536, cpu_s=60, page_timeout_s=0.001, max_pages=100)
    seen: list[PageText] = []

    async def collect() -> None:
        async with open_pdf(CORPUS / "DeepSeek_R1.pdf", limits) as doc:
            async for page in doc.pages():
                seen.append(page)

    with pytest.raises(IngestError, match=r"^Page 3 took longer than 0.001 s\.$"):
        await collect()
    assert [(p.number, p.text, p.error) for p in seen] == [
        (1, "", "page 1 took longer than 0.001 s"),
        (2, "", "page 2 took longer than 0.001 s"),
    ]
    assert not multiprocessing.active_children()
    assert len(await read_all(BAD / "pdf_encrypted.pdf")) == 1


async def test_too_many_pages() -> None:
    limits = ExtractLimits(memory_mb=1536, cpu_s=60, page_timeout_s=30.0, max_pages=4999)
    with pytest.raises(IngestError, match=r"too many pages \(5000; the limit is 4999\)"):
        await read_all(BAD / "long_5000_pages.pdf", limits)


async def test_5000_pages_are_accepted_and_stream() -> None:
    async with open_pdf(BAD / "long_5000_pages.pdf", LIMITS) as doc:
        assert doc.page_count == 5000
        pages = doc.pages()
        first = [await anext(pages) for _ in range(3)]
    assert [p.text for p in first] == [
        "Page 1 of the long document. The code word for this page is w00000.",
        "Page 2 of the long document. The code word for this page is w07919.",
        "Page 3 of the long document. The code word for this page is w15838.",
    ]
    assert not multiprocessing.active_children()


async def test_pages_needs_an_open_document() -> None:
    doc = open_pdf(CORPUS / "DeepSeek_R1.pdf", LIMITS)
    with pytest.raises(RuntimeError, match="open PdfDocument"):
        doc.pages()

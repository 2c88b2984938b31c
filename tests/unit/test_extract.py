"""Tests of pdfqa.extract against the shared corpus (real PDFs, real child processes)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import uvloop

from pdfqa.chunking import Chunk, ChunkSpec
from pdfqa.embeddings import bundled_model_dir
from pdfqa.errors import IngestError
from pdfqa.extract import ExtractLimits, PageText, normalize, open_pdf
from pdfqa.settings import Settings
from pdfqa.sparse import sparse_document
from tests.pdfs import text_pdf

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


# --- chunks cut in the child ------------------------------------------------------------------

SPEC = ChunkSpec(str(bundled_model_dir() / "tokenizer.json"), 200, 32, 254)


def cut_here(pages: list[PageText]) -> list[Chunk]:
    """What the child must cut: the pages fed, in order, to a chunker in this process."""
    chunker = SPEC.chunker(SPEC.counter())
    out = [c for p in pages for c in chunker.add_page(p.number, p.text)]
    return out + chunker.finish()


async def test_the_child_cuts_what_a_chunker_here_would() -> None:
    pages = await read_all(CORPUS / "DeepSeek_R1.pdf")
    async with open_pdf(CORPUS / "DeepSeek_R1.pdf", LIMITS, SPEC) as doc:
        items = [item async for item in doc.chunks()]
    assert [i.page.number if i.page else None for i in items] == [*range(1, 23), None]
    chunks = [c for item in items for c in item.chunks]
    assert chunks == cut_here(pages)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks[:20]:
        assert chunk.sparse == sparse_document(chunk.text)
    assert not multiprocessing.active_children()


async def test_chunks_resume_from_the_state_after_a_page() -> None:
    path = CORPUS / "DeepSeek_R1.pdf"
    async with open_pdf(path, LIMITS, SPEC) as doc:
        whole = [c async for item in doc.chunks() for c in item.chunks]
    async with open_pdf(path, LIMITS, SPEC) as doc:
        first: list[Chunk] = []
        async for item in doc.chunks():
            first += item.chunks
            if item.page is not None and item.page.number == 9:
                state = item.chunker
                break
    assert state is not None
    assert state.last_page == 9
    async with open_pdf(path, LIMITS, SPEC) as doc:  # another process, from the state alone
        rest = [c async for item in doc.chunks(10, state) for c in item.chunks]
    assert first + rest == whole


async def test_a_killed_child_is_replaced_from_the_chunkers_last_state() -> None:
    path = CORPUS / "DeepSeek_R1.pdf"
    pages = await read_all(path)
    items = []
    async with open_pdf(path, LIMITS, SPEC) as doc:
        async for item in doc.chunks():
            items.append(item)
            if item.page is not None and item.page.number == 5:
                for child in multiprocessing.active_children():
                    os.kill(child.pid or 0, signal.SIGKILL)  # reading page 6, or about to
    failed = [i.page.number for i in items if i.page is not None and i.page.error is not None]
    assert len(failed) == 1
    assert "crashed the PDF reader" in str(items[failed[0] - 1].page)
    read = [p for p in pages if p.number not in failed]  # a page never read is never fed
    assert [c for item in items for c in item.chunks] == cut_here(read)


async def test_chunks_need_a_chunk_spec() -> None:
    async with open_pdf(CORPUS / "DeepSeek_R1.pdf", LIMITS) as doc:
        with pytest.raises(RuntimeError, match="ChunkSpec"):
            doc.chunks()


def test_a_reply_larger_than_the_pipe_buffer_arrives_whole_under_uvloop(tmp_path: Path) -> None:
    # pdfqa serve runs on uvloop, whose add_reader leaves the pipe non-blocking: a reply
    # longer than the pipe's buffer arrives in pieces, and was once taken for a dead child.
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(text_pdf([f"Sentence {i} of a very long page." for i in range(40)] * 400))

    async def read() -> list[PageText]:
        async with open_pdf(pdf, LIMITS) as doc:
            return [page async for page in doc.pages()]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        [page] = runner.run(read())
    assert page.error is None
    assert len(page.text) > 500_000


async def test_a_message_that_arrives_in_pieces_is_read_whole_without_blocking() -> None:
    from multiprocessing.connection import Pipe

    from pdfqa.extract.sandbox import _Frames

    parent, child = Pipe(duplex=True)
    frames = _Frames(parent.fileno())  # non-blocking: a read never waits for the rest
    big = os.urandom(3 << 20)  # far beyond the pipe's buffer
    writer = asyncio.create_task(asyncio.to_thread(child.send_bytes, big))
    loop = asyncio.get_running_loop()
    assert await frames.read(loop.time() + 30) == big
    await writer
    child.send_bytes(b"next")
    assert await frames.read(loop.time() + 30) == b"next"
    assert await frames.read(loop.time() + 0.05) is None  # nothing more: a timeout, not an error
    child.close()
    with pytest.raises(EOFError):
        await frames.read(loop.time() + 30)
    parent.close()

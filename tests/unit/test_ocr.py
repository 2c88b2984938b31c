"""OCR: which pages need it, and what rapidocr reads on them (real child processes, the real
bundled models; OCR is CPU-heavy, so the documents here are one or two pages)."""

from __future__ import annotations

import difflib
import io
import re
from pathlib import Path

import msgspec
import pytest

from pdfqa.extract import ExtractLimits, PageText, open_pdf
from pdfqa.extract.ocr import (
    BUNDLED_LANGUAGES,
    OcrConfig,
    engine_params,
    is_garbage,
    merge,
    needs_ocr,
)
from pdfqa.extract.pages import OcrLine
from pdfqa.settings import Settings
from tests.pdfs import mixed_pdf

CORPUS = Path(__file__).parents[3] / "shared" / "corpus"
BAD = CORPUS / "bad"
TEXT_LIMITS = ExtractLimits(
    memory_mb=1536, cpu_s=600, page_timeout_s=30.0, max_pages=5000, ocr_threshold=0.25
)
LETTER = {"width_pt": 612.0, "height_pt": 792.0, "min_chars_per_sq_in": 0.25}


def ocr_limits(pages: int = 1, **changes: object) -> ExtractLimits:
    return ExtractLimits.for_ocr(msgspec.structs.replace(Settings(), **changes), pages)


def test_garbage_is_told_from_text() -> None:
    assert is_garbage("\ufffd" * 30 + "ab")
    assert is_garbage("".join(chr(0xE000 + i) for i in range(40)))  # private-use glyph codes
    assert not is_garbage("An ordinary sentence of text, plainly readable by anyone at all.")
    assert not is_garbage("Ünïcödé façade — naïve résumé, 東京 and Ελληνικά are fine too.")
    assert not is_garbage("\ufffd\ufffd")  # too few characters to judge


def test_which_pages_need_ocr() -> None:
    assert needs_ocr("", images=1, drawings=0, **LETTER)  # a scan
    assert needs_ocr("", images=0, drawings=60, **LETTER)  # text turned into outlines
    assert not needs_ocr("", images=0, drawings=0, **LETTER)  # a blank page
    assert needs_ocr("Page 3", images=1, drawings=0, **LETTER)  # a stamp on a scan
    assert not needs_ocr("Chapter 3", images=0, drawings=2, **LETTER)  # a sparse title page
    assert not needs_ocr("word " * 120, images=1, drawings=0, **LETTER)  # text beside a figure
    assert needs_ocr("\ufffd" * 100, images=0, drawings=0, **LETTER)  # a broken font encoding
    # A slide drawn on a huge page over a background picture: its title is its text layer.
    slide = {**LETTER, "width_pt": 1920.0, "height_pt": 1080.0}
    assert not needs_ocr("EmergentAGI Inc. 08/08/24 Graph RAG", images=1, drawings=0, **slide)


def test_ocr_adds_to_a_thin_text_layer_and_replaces_garbage() -> None:
    lines = [
        OcrLine("Page 3", 0.4, 0.9, 0.6, 0.95, 0.99),
        OcrLine("Dear Pete,", 0.1, 0.1, 0.3, 0.12, 0.98),
    ]
    assert merge("Page 3", lines) == "Page 3\nDear Pete,"
    assert merge("\ufffd" * 40, lines) == "Page 3\nDear Pete,"
    assert merge("", lines) == "Page 3\nDear Pete,"


def test_ocr_limits_come_from_the_ocr_settings() -> None:
    limits = ocr_limits(3, ocr_memory_mb=2000, ocr_page_cpu_s=50, ocr_page_timeout_s=9.0)
    assert (limits.memory_mb, limits.page_timeout_s, limits.tables) == (2000, 9.0, False)
    assert limits.cpu_s == 3 * 50 + 60
    assert limits.ocr is not None
    assert limits.ocr.page_cpu_s == 50
    assert ExtractLimits.from_settings(Settings(ocr=False)).ocr_threshold is None


def test_the_bundled_models_are_used_by_path_and_other_languages_are_refused() -> None:
    params = engine_params(OcrConfig())
    for key in ("Det.model_path", "Rec.model_path", "Cls.model_path"):
        assert Path(params[key]).is_file(), key  # in rapidocr's wheel: nothing to download
    assert "en" in BUNDLED_LANGUAGES
    assert "german" in BUNDLED_LANGUAGES
    with pytest.raises(ValueError, match="PDFQA_OCR_REC_MODEL"):
        engine_params(OcrConfig(language="korean"))


@pytest.mark.parametrize("name", ["file_scanned.pdf", "file_image.pdf"])
async def test_scanned_and_image_only_pages_are_flagged(name: str) -> None:
    async with open_pdf(BAD / name, TEXT_LIMITS) as doc:
        pages = [page async for page in doc.pages()]
    assert pages
    assert all(p.needs_ocr for p in pages), [(p.number, p.text[:40]) for p in pages]


async def test_text_pages_are_not_flagged() -> None:
    async with open_pdf(CORPUS / "DeepSeek_R1.pdf", TEXT_LIMITS) as doc:
        flagged = [page.number async for page in doc.pages() if page.needs_ocr]
    assert flagged == []


async def test_with_ocr_off_nothing_is_flagged() -> None:
    limits = msgspec.structs.replace(TEXT_LIMITS, ocr_threshold=None)
    async with open_pdf(BAD / "file_scanned.pdf", limits) as doc:
        assert not any([page.needs_ocr async for page in doc.pages()])


def _letters(text: str) -> str:
    return re.sub(r"\s+", "", text)


def character_accuracy(truth: str, read: str) -> float:
    """Share of the true characters (whitespace aside) that OCR read, in order."""
    a, b = _letters(truth), _letters(read)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / max(1, len(a))


def image_of_page(path: Path, index: int, scale: float = 2.0) -> tuple[bytes, str]:
    """A one-page PDF holding only an image of page ``index`` of ``path``; and its true text."""
    import pypdfium2 as pdfium

    source = pdfium.PdfDocument(path)
    page = source[index]
    textpage = page.get_textpage()
    truth = textpage.get_text_range()
    width, height = page.get_size()
    bitmap = page.render(scale=scale)
    out = pdfium.PdfDocument.new()
    target = out.new_page(width, height)
    image = pdfium.PdfImage.new(out)
    image.set_bitmap(bitmap)
    image.set_matrix(pdfium.PdfMatrix().scale(width, height))
    target.insert_obj(image)
    target.gen_content()
    buffer = io.BytesIO()
    out.save(buffer)
    return buffer.getvalue(), truth


async def ocr_pages(path: Path, numbers: list[int], limits: ExtractLimits) -> list[PageText]:
    async with open_pdf(path, limits) as doc:
        return [page async for page in doc.some_pages(numbers)]


async def test_ocr_character_accuracy_on_a_page_of_known_text(tmp_path: Path) -> None:
    # A page of prose from the corpus, rendered to an image: OCR must read its text back.
    data, truth = image_of_page(CORPUS / "DeepSeek_R1.pdf", 2)
    path = tmp_path / "rendered.pdf"
    path.write_bytes(data)
    [page] = await ocr_pages(path, [1], ocr_limits())
    assert page.error is None, page.error
    assert page.method == "ocr"
    assert page.lines
    accuracy = character_accuracy(truth, page.text)
    print(f"\nOCR character accuracy: {accuracy:.2%} of {len(_letters(truth))} characters")
    assert accuracy >= 0.95
    for line in page.lines:
        assert 0.0 <= line.x0 < line.x1 <= 1.0
        assert 0.0 <= line.y0 < line.y1 <= 1.0
    # Reading order: the section heading comes before the body text under it.
    assert page.text.index("Introduction") < page.text.index("Large Language Models")


async def test_a_mixed_pdf_has_its_image_page_read_and_boxes_on_the_text(tmp_path: Path) -> None:
    lines = ["Quarterly inventory of the Lisbon warehouse", "Seventeen crates of walnuts"]
    path = tmp_path / "mixed.pdf"
    path.write_bytes(mixed_pdf([(["A page with a text layer"], False), (lines, True)]))
    async with open_pdf(path, TEXT_LIMITS) as doc:
        flagged = [page.number async for page in doc.pages() if page.needs_ocr]
    assert flagged == [2]
    [page] = await ocr_pages(path, [2], ocr_limits())
    assert "Lisbon warehouse" in page.text
    assert "walnuts" in page.text
    first = next(line for line in page.lines if "Lisbon" in line.text)
    # text_pdf writes its first line 50 pt from the left and 12 pt below 780 pt on 612 x 792.
    assert first.x0 == pytest.approx(50 / 612, abs=0.03)
    assert first.y0 == pytest.approx((792 - 790) / 792, abs=0.05)


async def test_a_page_that_runs_out_of_time_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(mixed_pdf([(["Too slow to read"], True), (["Also too slow"], True)]))
    pages = await ocr_pages(path, [1, 2], ocr_limits(ocr_page_timeout_s=0.01))
    assert [p.number for p in pages] == [1, 2]
    assert all(p.error and "took longer than" in p.error for p in pages)

"""An operator's own OCR recognition model, as the README tells them to add a language the
bundled model does not read (``PDFQA_OCR_REC_MODEL``, ``PDFQA_OCR_LANGUAGE``): the model file is
the one used, and a bad file fails the page with a reason, never the worker. No other model can
be downloaded here, so the operator's "own" model is a copy of the bundled one under another
name and another language: what is tested is that path, not a new language's accuracy."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from pdfqa.errors import IngestError
from pdfqa.extract import ExtractLimits, PageText, open_pdf
from pdfqa.extract.ocr import engine_params
from pdfqa.settings import Settings

BAD = Path(__file__).parents[3] / "shared" / "corpus" / "bad"


def bundled_rec_model() -> Path:
    import rapidocr

    return next((Path(rapidocr.__file__).parent / "models").glob("PP-OCRv6_rec_small*.onnx"))


def limits(model: Path) -> ExtractLimits:
    settings = msgspec.structs.replace(
        Settings(), ocr_language="korean", ocr_rec_model=model, ocr_page_timeout_s=120.0
    )
    return ExtractLimits.for_ocr(settings, 1)


async def read(model: Path) -> PageText:
    async with open_pdf(BAD / "file_scanned.pdf", limits(model)) as doc:
        pages = [page async for page in doc.some_pages([1])]
    return pages[0]


async def test_an_operators_recognition_model_is_the_one_used(tmp_path: Path) -> None:
    model = tmp_path / "operator_rec.onnx"
    shutil.copyfile(bundled_rec_model(), model)
    config = limits(model).ocr
    assert config is not None
    assert engine_params(config)["Rec.model_path"] == str(model)
    page = await read(model)
    assert page.error is None, page.error
    assert page.method == "ocr"
    assert "facsimile" in page.text.lower(), page.text[:300]


async def test_a_broken_recognition_model_fails_with_a_reason(tmp_path: Path) -> None:
    model = tmp_path / "broken_rec.onnx"
    model.write_bytes(b"not an onnx model")
    with pytest.raises(IngestError) as refused:
        await read(model)
    reason = str(refused.value)
    assert "PDFQA_OCR_REC_MODEL" in reason  # who can fix it, and with what
    assert str(tmp_path) not in reason  # no server paths for the person who uploaded

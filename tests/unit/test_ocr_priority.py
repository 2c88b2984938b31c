"""OCR children run at Linux's idle scheduling class: a busy machine delays a scan's pages but
never makes them time out (real child processes and the real bundled models)."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import msgspec
import pytest

from pdfqa.extract import ExtractLimits, open_pdf
from pdfqa.settings import Settings

BAD = Path(__file__).parents[3] / "shared" / "corpus" / "bad"
PAGE_TIMEOUT_S = 6.0
BUSY_S = 15.0
"""Longer than the page limit: without the idle class's deadline the page would time out."""

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's SCHED_IDLE")


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_a_starved_ocr_page_waits_for_the_cpu_instead_of_timing_out() -> None:
    settings = msgspec.structs.replace(Settings(), ocr_page_timeout_s=PAGE_TIMEOUT_S)
    limits = ExtractLimits.for_ocr(settings, 1)
    assert limits.ocr is not None
    assert limits.ocr.idle
    ctx = multiprocessing.get_context("spawn")
    async with open_pdf(BAD / "file_scanned.pdf", limits) as doc:  # the models are loaded
        # Every core busy at normal priority: the idle-class OCR child gets no CPU until they end.
        busy = [ctx.Process(target=_busy, args=(BUSY_S,)) for _ in range(os.cpu_count() or 1)]
        for process in busy:
            process.start()
        try:
            started = time.monotonic()
            pages = [page async for page in doc.some_pages([1])]
            took = time.monotonic() - started
        finally:
            for process in busy:
                process.join()
    assert took > PAGE_TIMEOUT_S, "the page was never starved: this test proved nothing"
    assert [p.number for p in pages] == [1]
    assert pages[0].error is None, pages[0].error
    assert pages[0].method == "ocr"
    assert pages[0].lines  # read by OCR, not skipped


async def test_without_the_idle_class_ocr_is_only_niced() -> None:
    settings = msgspec.structs.replace(Settings(), ocr_idle_priority=False)
    limits = ExtractLimits.for_ocr(settings, 1)
    assert limits.ocr is not None
    assert not limits.ocr.idle

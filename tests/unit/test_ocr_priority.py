"""OCR children run at Linux's idle scheduling class: a busy machine delays a scan's pages but
never makes them time out (real child processes and the real bundled models)."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import msgspec
import pytest

from pdfqa.extract import ExtractLimits, PageText, open_pdf
from pdfqa.settings import Settings

BAD = Path(__file__).parents[3] / "shared" / "corpus" / "bad"
MIN_PAGE_TIMEOUT_S = 6.0
BUSY_FACTOR = 2.5
"""The cores stay busy this many times the page limit: without the idle class's deadline the
page would time out."""

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's SCHED_IDLE")


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def _read_page_one(limits: ExtractLimits, busy_s: float = 0.0) -> tuple[PageText, float]:
    ctx = multiprocessing.get_context("spawn")
    async with open_pdf(BAD / "file_scanned.pdf", limits) as doc:  # the models are loaded
        # Every core busy at normal priority: the idle-class OCR child gets no CPU until they end.
        cores = (os.cpu_count() or 1) if busy_s else 0
        busy = [ctx.Process(target=_busy, args=(busy_s,)) for _ in range(cores)]
        for process in busy:
            process.start()
        try:
            started = time.monotonic()
            pages = [page async for page in doc.some_pages([1])]
            took = time.monotonic() - started
        finally:
            for process in busy:
                process.join()
    assert [p.number for p in pages] == [1]
    return pages[0], took


async def test_a_starved_ocr_page_waits_for_the_cpu_instead_of_timing_out() -> None:
    # The page limit is set from this machine's own speed: twice what the page takes unloaded.
    generous = msgspec.structs.replace(Settings(), ocr_page_timeout_s=300.0)
    page, alone = await _read_page_one(ExtractLimits.for_ocr(generous, 1))
    assert page.error is None, page.error
    timeout_s = max(MIN_PAGE_TIMEOUT_S, 2 * alone)
    settings = msgspec.structs.replace(Settings(), ocr_page_timeout_s=timeout_s)
    limits = ExtractLimits.for_ocr(settings, 1)
    assert limits.ocr is not None
    assert limits.ocr.idle
    page, took = await _read_page_one(limits, busy_s=BUSY_FACTOR * timeout_s)
    assert took > timeout_s, "the page was never starved: this test proved nothing"
    assert page.error is None, f"{page.error} (alone it took {alone:.1f} s)"
    assert page.method == "ocr"
    assert page.lines  # read by OCR, not skipped


async def test_without_the_idle_class_ocr_is_only_niced() -> None:
    settings = msgspec.structs.replace(Settings(), ocr_idle_priority=False)
    limits = ExtractLimits.for_ocr(settings, 1)
    assert limits.ocr is not None
    assert not limits.ocr.idle

"""Extraction speed and memory: pypdfium2 only vs the hybrid vs pdfplumber only.

Run: ``.venv/bin/python bench/extract.py`` (about 1-2 minutes; figures are noisy on a shared box).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DOCS = ["uber_2021.pdf", "lyft_2021.pdf"]
PLUMBER_SAMPLE = 12  # pages per document for the pdfplumber-only estimate
EMBEDDER_PAGES_S = 5.0  # the local embedder's rate on a 10-K (~25 chunks/s)


def pdfium_only(path: Path) -> tuple[int, float, int, int]:
    """Plain pypdfium2 text, in process: pages, seconds, chars, detector hits."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    from pdfqa.extract import looks_like_table

    t0 = time.perf_counter()
    pdf = pdfium.PdfDocument(path)
    chars = hits = 0
    for i in range(len(pdf)):
        page = pdf[i]
        textpage = page.get_textpage()
        text = textpage.get_text_range()
        chars += len(text)
        paths = sum(
            1
            for j in range(pdfium_c.FPDFPage_CountObjects(page.raw))
            if pdfium_c.FPDFPageObj_GetType(pdfium_c.FPDFPage_GetObject(page.raw, j))
            == pdfium_c.FPDF_PAGEOBJ_PATH
        )
        hits += looks_like_table(paths, text)
        textpage.close()
        page.close()
    n = len(pdf)
    pdf.close()
    return n, time.perf_counter() - t0, chars, hits


def plumber_sample(path: Path) -> tuple[int, float]:
    """pdfplumber extract_text + extract_tables on evenly spaced pages: pages, seconds/page."""
    import pdfplumber

    with pdfplumber.open(path) as pdf:
        n = len(pdf.pages)
        step = max(1, n // PLUMBER_SAMPLE)
        t0 = time.perf_counter()
        done = 0
        for page in pdf.pages[::step][:PLUMBER_SAMPLE]:
            page.extract_text()
            page.extract_tables()
            page.close()
            done += 1
            if time.perf_counter() - t0 > 25:
                break
        return n, (time.perf_counter() - t0) / done


async def hybrid(path: Path, limits: object) -> tuple[int, float, float, int, int, int]:
    """The real pipeline: pages, wall s, child CPU s, chars, pdfplumber pages, tables."""
    from pdfqa.extract import ExtractLimits, open_pdf

    assert isinstance(limits, ExtractLimits)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    chars = routed = tables = 0
    async with open_pdf(path, limits) as doc:
        async for page in doc.pages():
            chars += len(page.text)
            routed += page.method == "pdfplumber"
            tables += page.tables
        n = doc.page_count
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return n, wall, cpu, chars, routed, tables


def rss_mb(pid: int) -> float:
    with Path(f"/proc/{pid}/status").open() as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def long_document(limits: object) -> None:
    from pdfqa.extract import ExtractLimits, open_pdf

    assert isinstance(limits, ExtractLimits)
    path = CORPUS / "bad" / "long_5000_pages.pdf"
    samples: dict[int, tuple[float, float]] = {}
    t0 = time.perf_counter()
    async with open_pdf(path, limits) as doc:
        async for page in doc.pages():
            if page.number in {10, 1000, 2500, 5000}:
                proc = doc._proc  # the benchmark peeks at the child
                assert proc is not None
                assert proc.pid is not None
                samples[page.number] = (rss_mb(os.getpid()), rss_mb(proc.pid))
    wall = time.perf_counter() - t0
    print(f"\nlong_5000_pages.pdf: 5000 pages in {wall:.1f} s ({5000 / wall:.0f} pages/s)")
    print("  page   parent RSS MB   child RSS MB")
    for number, (parent, child) in sorted(samples.items()):
        print(f"  {number:>4}   {parent:>13.1f}   {child:>12.1f}")
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS: parent {peak_self:.1f} MB (whole bench process), child {peak_child:.1f} MB")


async def main() -> None:
    from pdfqa.extract import ExtractLimits

    limits = ExtractLimits(memory_mb=1536, cpu_s=1800, page_timeout_s=30.0, max_pages=5000)
    cores = os.cpu_count() or 1
    rows = []
    for name in DOCS:
        path = CORPUS / name
        n, t_fast, chars_fast, hits = pdfium_only(path)
        _, wall, cpu, chars, routed, tables = await hybrid(path, limits)
        _, plumber_s = plumber_sample(path)
        rows.append(
            (name, n, t_fast, chars_fast, hits, wall, cpu, chars, routed, tables, plumber_s)
        )
    head = (
        f"{'document':<16}{'pages':>6}  {'method':<22}{'seconds':>8}{'pages/s':>9}"
        f"{'chars':>10}{'routed':>8}{'tables':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, n, t_fast, chars_fast, hits, wall, cpu, chars, routed, tables, plumber_s in rows:
        print(
            f"{name:<16}{n:>6}  {'(a) pypdfium2 only':<22}{t_fast:>8.1f}{n / t_fast:>9.0f}"
            f"{chars_fast:>10}{'-':>8}{'-':>8}"
        )
        print(
            f"{'':<16}{'':>6}  {'(b) hybrid (child)':<22}{wall:>8.1f}{n / wall:>9.1f}"
            f"{chars:>10}{routed:>8}{tables:>8}"
        )
        print(
            f"{'':<16}{'':>6}  {'(c) pdfplumber only *':<22}{plumber_s * n:>8.1f}"
            f"{1 / plumber_s:>9.1f}{'':>10}{n:>8}{'':>8}"
        )
        share = cpu / n * EMBEDDER_PAGES_S  # cores busy extracting at the embedder's pace
        print(
            f"{'':<16}{'':>6}  detector hits {hits}; hybrid child CPU {cpu:.1f} s "
            f"({cpu / n * 1000:.0f} ms/page): at {EMBEDDER_PAGES_S:g} pages/s extraction uses "
            f"{share:.2f} of {cores} cores, leaving {cores - share:.2f} for the embedder"
        )
    print(f"* pdfplumber extract_text + extract_tables on {PLUMBER_SAMPLE} sampled pages, x pages")
    await long_document(limits)


if __name__ == "__main__":  # the spawn context re-imports __main__ in each child
    sys.exit(asyncio.run(main()))

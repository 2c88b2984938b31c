"""``make bench`` (OCR part): OCR pages/s, and what a scan being read does to the text PDFs.

Starts ``pdfqa serve`` as ``make run`` does (a throw-away database and data directory; its
embedded workers take the ``ingest`` and ``ocr`` queues), then:

1. baseline: uploads a text PDF (DeepSeek_R1.pdf, 22 pages) ``--rounds`` times, alone, and
   times upload -> ready;
2. uploads a 100-page scan (pages of uber_2021.pdf rendered to JPEG images, no text layer), waits
   until OCR is reading it, and uploads the text PDF again ``--rounds`` times while it is;
3. then, with nothing else queued, reads the scan's progress for ``--ocr-seconds``: OCR
   pages/s (while the text PDFs run, the niced OCR child gets little CPU by design, so the rate
   is measured apart);
4. deletes the scan (its OCR job is aborted) and stops the server.

Both figures depend on what else the machine runs: the load average is printed with them.

Goal (issue 11): the text PDF is ready within 20% of its baseline while the scan is read.
Nothing is asserted: it prints figures. On a machine shared with other work, they move.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.ingest import (
    CORPUS,
    Server,
    free_port,
    login,
    reset_database,
    until_done,
    upload,
)

TEXT = CORPUS / "DeepSeek_R1.pdf"
SOURCE = CORPUS / "uber_2021.pdf"


def build_scan(path: Path, pages: int, scale: float = 1.5) -> None:
    """``pages`` pages of SOURCE as JPEG images on otherwise empty pages."""
    import pypdfium2 as pdfium

    source = pdfium.PdfDocument(SOURCE)
    out = pdfium.PdfDocument.new()
    for index in range(pages):
        page = source[index % len(source)]
        width, height = page.get_size()
        image = page.render(scale=scale, grayscale=True).to_pil()
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=75)
        buffer.seek(0)
        target = out.new_page(width, height)
        obj = pdfium.PdfImage.new(out)
        obj.load_jpeg(buffer, inline=True)
        obj.set_matrix(pdfium.PdfMatrix().scale(width, height))
        target.insert_obj(obj)
        target.gen_content()
    out.save(path)


async def text_ready(http: httpx.AsyncClient, headers: dict[str, str]) -> float:
    t0 = time.perf_counter()
    upload_id, _ = await upload(http, headers, TEXT)
    done = await until_done(http, headers, upload_id)
    if done["event"] != "ready":
        raise SystemExit(f"the text PDF did not become ready: {done}")
    return time.perf_counter() - t0


async def state(http: httpx.AsyncClient, headers: dict[str, str], upload_id: str) -> dict[str, Any]:
    r = await http.get(f"/api/v1/uploads/{upload_id}", headers=headers)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


async def measure(
    env: dict[str, str], workdir: Path, scan: Path, rounds: int, ocr_seconds: float
) -> dict[str, Any]:
    server = Server(env, free_port(), workdir / "serve-ocr.log")
    server.wait()
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=120) as http:
            headers = await login(http)
            await text_ready(http, headers)  # warm-up: models loaded, caches filled
            baseline = [await text_ready(http, headers) for _ in range(rounds)]
            print(f"  baseline: {', '.join(f'{s:.1f}' for s in baseline)} s", flush=True)
            scan_id, _ = await upload(http, headers, scan)
            # Wait until OCR is reading: the text pass is over and the first page is stored.
            while True:
                body = await state(http, headers, scan_id)
                if body["status"] != "processing" and body["status"] != "queued":
                    raise SystemExit(f"the scan ended before OCR was measured: {body}")
                if body["pages_ocr"] >= 1:
                    break
                await asyncio.sleep(1)
            load_during = os.getloadavg()[0]
            during = [await text_ready(http, headers) for _ in range(rounds)]
            print(f"  during the scan: {', '.join(f'{s:.1f}' for s in during)} s", flush=True)
            start_pages = (await state(http, headers, scan_id))["pages_done"]
            started = time.perf_counter()
            await asyncio.sleep(ocr_seconds)
            body = await state(http, headers, scan_id)
            elapsed = time.perf_counter() - started
            read = body["pages_done"] - start_pages
            load_ocr = os.getloadavg()[0]
            await http.delete(f"/api/v1/uploads/{scan_id}", headers=headers)
    finally:
        server.stop()
    return {
        "baseline": baseline,
        "during": during,
        "ocr_pages": read,
        "ocr_seconds": elapsed,
        "scan_status": body["status"],
        "load_during": load_during,
        "load_ocr": load_ocr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=100, help="pages of the scan")
    parser.add_argument("--rounds", type=int, default=3, help="text PDF uploads per phase")
    parser.add_argument("--ocr-seconds", type=float, default=120, help="OCR rate window")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pdfqa-bench-ocr-"))
    # The OCR settings pass through (PDFQA_OCR_THREADS=1 ...), so an operator can bench theirs.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PDFQA_") or k.startswith("PDFQA_OCR_")
    }
    env.update(
        PDFQA_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/pdfqa_bench_ocr",
        PDFQA_DATA_DIR=str(workdir / "data"),
        PDFQA_QUEUE_NAME=f"pdfqa:bench-ocr:{os.getpid()}",
        PDFQA_LOG_LEVEL="WARNING",
        PDFQA_UPLOADS_PER_HOUR="0",
    )
    print(f"pdfqa OCR bench ({os.cpu_count()} cores); logs in {workdir}", flush=True)
    asyncio.run(reset_database("pdfqa_bench_ocr"))
    scan = workdir / f"scan_{args.pages}.pdf"
    build_scan(scan, args.pages)
    print(f"built a {args.pages}-page scan ({scan.stat().st_size / 1e6:.1f} MB)", flush=True)
    result = asyncio.run(measure(env, workdir, scan, args.rounds, args.ocr_seconds))
    base = statistics.median(result["baseline"])
    during = statistics.median(result["during"])
    rate = result["ocr_pages"] / result["ocr_seconds"]
    print()
    print(
        f"OCR: {result['ocr_pages']} pages in {result['ocr_seconds']:.0f} s = {rate:.2f} pages/s "
        f"({1 / rate if rate else float('inf'):.1f} s/page; load average "
        f"{result['load_ocr']:.1f}; the scan was {result['scan_status']})"
    )
    print(
        f"text PDF ({TEXT.name}) upload->ready: alone {base:.1f} s, during the scan "
        f"{during:.1f} s, ratio {during / base:.2f} (goal <= 1.20; load average "
        f"{result['load_during']:.1f})"
    )


if __name__ == "__main__":
    main()

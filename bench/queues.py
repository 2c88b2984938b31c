"""``make bench`` (queues): what separate queues buy while a burst of long PDFs is ingested.

Starts ``pdfqa serve`` as ``make run`` does (a throw-away database and data directory; its
embedded worker serves the ``ingest``, ``ocr`` and ``default`` queues, each an arq worker of its
own), once per ingestion concurrency (``PDFQA_WORKER_CONCURRENCY`` 1 and 2), and measures:

- idle: time to first token of an extractive answer, one question at a time;
- a burst: ``BURST`` copies of uber_2021.pdf (307 pages each) uploaded at once; meanwhile
  - deletes: ``DELETES`` small uploads deleted one after another; the figure is the time from
    the ``DELETE`` request until the clean-up job on the ``default`` queue has removed the file;
  - a small PDF (10 pages) uploaded after the burst: the time until it is ready, which is its wait
    behind the burst on the ``ingest`` queue (first in, first out) plus its own ingestion;
  - time to first token again, the API sharing the process and the cores with the ingestion;
- the burst's pages per second.

Only one process can open the embedded vector engine, so every topology measured here is one
process; separate API and worker processes need a Qdrant server (see the README's "Scaling out").
Nothing is asserted: it prints figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import httpx

from bench.ingest import (
    ADMIN_DSN,
    CORPUS,
    Server,
    free_port,
    login,
    reset_database,
    until_done,
    upload,
)
from bench.tracing import QUESTIONS, first_token

BURST = int(os.environ.get("PDFQA_BENCH_QUEUES_BURST", "3"))
DELETES = 5
QUESTIONS_EACH = 10


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


async def until_gone(path: Path, limit_s: float = 600) -> float:
    t0 = time.perf_counter()
    while await asyncio.to_thread(path.exists):
        if time.perf_counter() - t0 > limit_s:
            raise RuntimeError(f"{path.name} still there after {limit_s} s")
        await asyncio.sleep(0.005)
    return time.perf_counter() - t0


async def ask(http: httpx.AsyncClient, headers: dict[str, str], conv: str, n: int) -> list[float]:
    return [
        await first_token(http, headers, conv, f"{QUESTIONS[i % len(QUESTIONS)]} ({n}.{i})")
        for i in range(QUESTIONS_EACH)
    ]


@dataclasses.dataclass
class Figures:
    idle: list[float]
    busy: list[float]
    deletes: list[float]
    late_s: float
    pages: int
    burst_s: float


async def timed(work: Awaitable[object]) -> float:
    t0 = time.perf_counter()
    await work
    return time.perf_counter() - t0


def fresh_data_dir(workdir: Path, concurrency: int) -> Path:
    data = workdir / f"c{concurrency}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    models = Path("data/models").resolve()
    if models.is_dir():  # the model exported by an earlier run (make run, make bench)
        (data / "models").symlink_to(models, target_is_directory=True)
    return data


async def run(concurrency: int, workdir: Path) -> Figures:
    database = f"pdfqa_bench_queues_{concurrency}"
    await reset_database(database)
    data = fresh_data_dir(workdir, concurrency)
    base, _, _ = ADMIN_DSN.rpartition("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFQA_")}
    env.update(
        PDFQA_DATABASE_URL=f"{base}/{database}",
        PDFQA_DATA_DIR=str(data),
        PDFQA_QUEUE_NAME=f"pdfqa:bench-queues:{os.urandom(4).hex()}",
        PDFQA_WORKER_CONCURRENCY=str(concurrency),
        PDFQA_UPLOADS_PER_HOUR="0",
        PDFQA_QUESTIONS_PER_MINUTE="0",
        PDFQA_MAX_STORAGE_BYTES="0",
        PDFQA_RETRIEVAL_CACHE_TTL_S="0",
        PDFQA_SCRYPT_LOG_N="14",
    )
    server = Server(env, free_port(), workdir / f"serve-c{concurrency}.log")
    server.wait()
    files = data / "files"
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=120) as http:
            headers = await login(http)
            # The first is asked about; the others are deleted during the burst.
            small = [
                (await upload(http, headers, CORPUS / "quivr_sample.pdf"))[0]
                for _ in range(1 + DELETES)
            ]
            for upload_id in small:
                await until_done(http, headers, upload_id)
            r = await http.post(
                "/api/v1/conversations", json={"upload_ids": small[:1]}, headers=headers
            )
            conv = r.json()["id"]
            await ask(http, headers, conv, 0)  # warm-up
            idle = await ask(http, headers, conv, 1)

            t0 = time.perf_counter()
            burst = [
                (await upload(http, headers, CORPUS / "uber_2021.pdf"))[0] for _ in range(BURST)
            ]
            late, _ = await upload(http, headers, CORPUS / "quivr_sample.pdf")
            late_ready = asyncio.create_task(timed(until_done(http, headers, late)))
            deletes = []
            for upload_id in small[1:]:
                r = await http.delete(f"/api/v1/uploads/{upload_id}", headers=headers)
                r.raise_for_status()
                deletes.append(await until_gone(files / f"{upload_id}.pdf"))
            busy = await ask(http, headers, conv, 2)
            pages = 0
            for upload_id in burst:
                done = await until_done(http, headers, upload_id)
                pages += int(done.get("pages_total") or 0)
            burst_s = time.perf_counter() - t0
            late_s = await late_ready
    finally:
        server.stop()
    return Figures(idle, busy, deletes, late_s, pages, burst_s)


async def main(workdir: Path) -> None:
    print(
        f"queues: a burst of {BURST} x uber_2021.pdf (307 pages) in one `pdfqa serve` "
        "(API and embedded worker), per ingestion concurrency"
    )
    for concurrency in (1, 2):
        r = await run(concurrency, workdir)
        print(f"  PDFQA_WORKER_CONCURRENCY={concurrency}:")
        print(
            f"    burst: {r.pages} pages in {r.burst_s:.1f} s ({r.pages / r.burst_s:.1f} pages/s)"
        )
        print(f"    a delete's clean-up (default queue) during the burst: {ms(r.deletes)}")
        print(
            "    a 10-page upload queued behind the burst (ingest queue): ready after "
            f"{r.late_s:.1f} s"
        )
        print(f"    first token: idle {ms(r.idle)}; during the burst {ms(r.busy)}", flush=True)


if __name__ == "__main__":
    folder = Path(os.environ.get("PDFQA_BENCH_DIR") or tempfile.mkdtemp(prefix="pdfqa-queues-"))
    folder.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(folder))

"""``make bench`` (tracing): the cost of tracing on the two latencies a person feels.

Runs the app twice in this process under uvicorn on loopback, first with tracing off (no SDK
provider: the no-op tracer, no middleware), then on, exporting every span to an in-memory
exporter through the batch processor an OTLP deployment uses (plus the asyncpg, redis and
httpx instrumentations and Litestar's OpenTelemetryPlugin). Each run, on a fresh database:

- upload acknowledgement: ``POST /api/v1/uploads`` of a 41 kB PDF, one at a time (no worker
  runs meanwhile, so ingestion never competes for the CPU);
- time to first token: an extractive answer over SSE, one question at a time, the retrieval
  cache off (every question takes the whole path).

Prints p50 and mean of each, and tracing's overhead. Goal (issue 10): <= 5%.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path

import httpx
import uvicorn
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.ingest import ADMIN_DSN, CORPUS, free_port, login, reset_database, upload
from pdfqa import tracing
from pdfqa.api.app import create_app
from pdfqa.jobs.worker import embedded_worker
from pdfqa.settings import Settings

ROUNDS = int(os.environ.get("PDFQA_BENCH_TRACING_ROUNDS", "60"))
WARMUP = 5
QUESTIONS = [
    "What is Quivr?",
    "Which file types can be uploaded?",
    "How does the assistant answer questions?",
    "What are the main features?",
    "Who is the product for?",
    "How are documents stored?",
]


async def first_token(http: httpx.AsyncClient, headers: dict[str, str], conv: str, q: str) -> float:
    t0 = time.perf_counter()
    async with http.stream(
        "POST",
        f"/api/v1/conversations/{conv}/messages",
        json={"question": q},
        headers={**headers, "Accept": "text/event-stream"},
    ) as r:
        r.raise_for_status()
        took = None
        async for line in r.aiter_lines():
            if took is None and line.startswith("event: token"):
                took = time.perf_counter() - t0
        assert took is not None, "no token came"
        return took


async def phase(name: str, workdir: Path) -> tuple[list[float], list[float]]:
    database = f"pdfqa_bench_tracing_{name}"
    await reset_database(database)
    base, _, _ = ADMIN_DSN.rpartition("/")
    settings = Settings(
        database_url=f"{base}/{database}",
        data_dir=workdir,
        embedded_worker=False,
        queue_name=f"pdfqa:bench-tracing:{uuid.uuid4().hex[:8]}",
        uploads_per_hour=0,
        questions_per_minute=0,
        max_storage_bytes=0,
        retrieval_cache_ttl_s=0,
        scrypt_log_n=14,
        page_timeout_s=300.0,  # a loaded machine must not fail the one document
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            headers = await login(http)
            doc, _ = await upload(http, headers, CORPUS / "quivr_sample.pdf")
            res = server.config.loaded_app.app.state.resources  # type: ignore[union-attr]
            await embedded_worker(res, burst=True, poll_delay=0.05).main()
            r = await http.post(
                "/api/v1/conversations", json={"upload_ids": [doc]}, headers=headers
            )
            conv = r.json()["id"]
            for i in range(WARMUP):
                await first_token(http, headers, conv, QUESTIONS[i % len(QUESTIONS)])
                await upload(http, headers, CORPUS / "quivr_sample.pdf")
            ttft = [
                await first_token(http, headers, conv, f"{QUESTIONS[i % len(QUESTIONS)]} ({i})")
                for i in range(ROUNDS)
            ]
            acks = [
                (await upload(http, headers, CORPUS / "quivr_sample.pdf"))[1] for _ in range(ROUNDS)
            ]
    finally:
        server.should_exit = True
        await serving
    return acks, ttft


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.median(values) * 1000, statistics.fmean(values) * 1000


async def main() -> None:
    workdir = Path(os.environ.get("PDFQA_BENCH_DIR", "data"))
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start
    off = await phase("off", workdir)
    spans = InMemorySpanExporter()
    tracing.configure(Settings(), service="pdfqa-bench", processor=BatchSpanProcessor(spans))
    on = await phase("on", workdir)
    exported = len(spans.get_finished_spans())
    print(
        f"tracing overhead ({ROUNDS} rounds each, one at a time; {exported} spans exported when on)"
    )
    for label, i in (("upload acknowledgement", 0), ("time to first token", 1)):
        (p50_off, mean_off), (p50_on, mean_on) = summary(off[i]), summary(on[i])
        print(
            f"  {label}: off p50 {p50_off:.1f} ms (mean {mean_off:.1f}); "
            f"on p50 {p50_on:.1f} ms (mean {mean_on:.1f}); "
            f"overhead p50 {100 * (p50_on / p50_off - 1):+.1f}%, mean {100 * (mean_on / mean_off - 1):+.1f}%"
        )
    tracing.disable()


if __name__ == "__main__":
    asyncio.run(main())

"""``make bench`` (tracing): the cost of tracing on the two latencies a person feels.

Runs the app under uvicorn on loopback in three modes: tracing off (no SDK provider: the no-op
tracer, no middleware); on, exporting every span to an in-memory exporter through the batch
processor an OTLP deployment uses (plus the asyncpg, redis and httpx instrumentations and
Litestar's OpenTelemetryPlugin); and on with 10% of traces sampled (``OTEL_TRACES_SAMPLER=
parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=0.1``, the OpenTelemetry SDK's own
settings). Each phase runs in a fresh process on a fresh database, the modes alternating
``PDFQA_BENCH_TRACING_REPEATS`` times; the bench's HTTP client is not traced. Each phase:

- upload acknowledgement: ``POST /api/v1/uploads`` of a 41 kB PDF, one at a time (no worker
  runs meanwhile, so ingestion never competes for the CPU);
- time to first token: an extractive answer over SSE, one question at a time, the retrieval
  cache off (every question takes the whole path).

Prints p50 and mean of each, and tracing's overhead in ms and %. Goal (issue 10): <= 5%.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
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
            if tracing.enabled():  # the server's cost is measured, not the client's
                HTTPXClientInstrumentor.uninstrument_client(http)
            headers = await login(http)
            doc, _ = await upload(http, headers, CORPUS / "quivr_sample.pdf")
            res = server.config.loaded_app.app.state.resources  # type: ignore[union-attr]
            await embedded_worker(res, burst=True, poll_delay=0.05).main()
            r = await http.post(
                "/api/v1/conversations", json={"upload_ids": [doc]}, headers=headers
            )
            assert r.status_code == 201, r.text
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


MODES = {
    "off": {},
    "on": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on, 10% sampled": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
}
REPEATS = int(os.environ.get("PDFQA_BENCH_TRACING_REPEATS", "2"))


async def child(mode: str, workdir: Path) -> None:
    """One phase in this (fresh) process; prints its figures as JSON on the last line."""
    spans = InMemorySpanExporter()
    if mode != "off":  # the sampler comes from OTEL_TRACES_SAMPLER, as an operator sets it
        tracing.configure(Settings(), service="pdfqa-bench", processor=BatchSpanProcessor(spans))
    acks, ttft = await phase(mode.split(",", maxsplit=1)[0], workdir)
    tracing.disable()
    exported = len(spans.get_finished_spans())
    print(json.dumps({"acks": acks, "ttft": ttft, "spans": exported}))


def run_child(mode: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(MODES[mode])
    out = subprocess.run(
        [sys.executable, "-m", "bench.tracing", "--child", mode],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Each phase in a fresh process (no phase inherits another's warm caches), the modes
    alternating ``REPEATS`` times, so drift in the machine's load falls on every mode alike."""
    workdir = Path(os.environ.get("PDFQA_BENCH_DIR", "data"))
    workdir.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        asyncio.run(child(sys.argv[2], workdir))
        return
    runs: dict[str, dict[str, list[float]]] = {m: {"acks": [], "ttft": []} for m in MODES}
    spans: dict[str, int] = dict.fromkeys(MODES, 0)
    for _ in range(REPEATS):
        for mode in MODES:
            result = run_child(mode)
            runs[mode]["acks"] += result["acks"]
            runs[mode]["ttft"] += result["ttft"]
            spans[mode] += result["spans"]
    print(
        f"tracing overhead ({ROUNDS} requests of each kind per phase, {REPEATS} phases per mode, "
        "alternating, each in a fresh process; the bench's own HTTP client is not traced)"
    )
    for label, key in (("upload acknowledgement", "acks"), ("time to first token", "ttft")):
        p50_off, mean_off = summary(runs["off"][key])
        print(f"  {label}: off p50 {p50_off:.2f} ms (mean {mean_off:.2f})")
        for mode in list(MODES)[1:]:
            p50, mean = summary(runs[mode][key])
            print(
                f"    {mode}: p50 {p50:.2f} ms (mean {mean:.2f}); overhead p50 "
                f"{p50 - p50_off:+.2f} ms ({100 * (p50 / p50_off - 1):+.1f}%), mean "
                f"{100 * (mean / mean_off - 1):+.1f}%; {spans[mode]} spans exported"
            )


if __name__ == "__main__":
    main()

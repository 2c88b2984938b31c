"""``make bench`` (answers): how fast sources and first tokens come, and how many streams one
API process holds.

Starts ``pdfqa serve`` as ``make run`` does (embedded engine, extractive answers, a throw-away
database), ingests the two 10-K filings several times over until more than 10,000 chunks are
indexed, then:

- asks the eval questions about the 10-Ks one at a time over SSE and prints p50/p99 of the time
  from the request to the ``sources`` event and to the first ``token``, with the query-vector
  cache cold, then warm;
- opens 50, 100, 200 and 400 answer streams at once and counts the ones that did not end with
  ``done``.

Goals (issue 3): sources p50 <= 150 ms, first extractive token p50 <= 300 ms, 200 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.ingest import CORPUS, Server, free_port, login, reset_database, until_done, upload

QUESTIONS = Path(__file__).resolve().parents[1] / "eval" / "questions.jsonl"
COPIES = {"uber_2021.pdf": 4, "lyft_2021.pdf": 4}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def ask(
    http: httpx.AsyncClient, headers: dict[str, str], conversation: str, question: str
) -> dict[str, Any]:
    t0 = time.perf_counter()
    marks: dict[str, Any] = {"question": question}
    try:
        await _ask(http, headers, conversation, question, marks, t0)
    except httpx.HTTPError as exc:  # a dropped connection is a failed stream, counted
        marks["error"] = f"{type(exc).__name__}: {exc}"
    return marks


async def _ask(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    conversation: str,
    question: str,
    marks: dict[str, Any],
    t0: float,
) -> None:
    name = ""
    async with http.stream(
        "POST",
        f"/api/v1/conversations/{conversation}/messages",
        json={"question": question},
        headers={**headers, "Accept": "text/event-stream"},
        timeout=httpx.Timeout(30, read=120),
    ) as r:
        if r.status_code != 200:
            marks["error"] = f"HTTP {r.status_code}"
            return
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                now = time.perf_counter() - t0
                if name == "sources":
                    marks["sources"] = now
                    marks["n_sources"] = len(json.loads(line.split(":", 1)[1])["sources"])
                elif name == "token" and "token" not in marks:
                    marks["token"] = now
                elif name == "done":
                    marks["done"] = now
                    marks["mode"] = json.loads(line.split(":", 1)[1])["mode"]
                elif name == "error":
                    marks["error"] = line


async def run(env: dict[str, str], workdir: Path) -> None:
    port = free_port()
    server = Server(env, port, workdir / "serve.log")
    server.wait()
    try:
        async with httpx.AsyncClient(
            base_url=server.base, timeout=120, limits=httpx.Limits(max_connections=500)
        ) as http:
            headers = await login(http)
            ids: dict[str, list[str]] = {}
            total = 0
            t0 = time.perf_counter()
            for name, copies in COPIES.items():
                for _ in range(copies):
                    upload_id, _ = await upload(http, headers, CORPUS / name)
                    done = await until_done(http, headers, upload_id)
                    total += done.get("chunks", 0)
                    ids.setdefault(name, []).append(upload_id)
            print(
                f"indexed {total} chunks in {sum(map(len, ids.values()))} uploads ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )

            questions = [
                json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()
            ]
            questions = [q for q in questions if q["doc"] in COPIES]
            conversations = {}
            for name, uploads in ids.items():
                r = await http.post(
                    "/api/v1/conversations", json={"upload_ids": [uploads[0]]}, headers=headers
                )
                conversations[name] = r.json()["id"]
            for label in ("cold cache", "warm cache"):
                marks = [
                    await ask(http, headers, conversations[q["doc"]], q["question"])
                    for q in questions
                ]
                errors = [m for m in marks if "error" in m or "done" not in m]
                src = [m["sources"] * 1000 for m in marks if "sources" in m]
                tok = [m["token"] * 1000 for m in marks if "token" in m]
                print(
                    f"{label}: {len(marks)} questions, {len(errors)} errors; sources p50 {statistics.median(src):.0f} ms, "
                    f"p99 {percentile(src, 0.99):.0f} ms; first token p50 {statistics.median(tok):.0f} ms, p99 {percentile(tok, 0.99):.0f} ms",
                    flush=True,
                )

            for concurrency in (50, 100, 200, 400):
                picks = [questions[i % len(questions)] for i in range(concurrency)]
                t0 = time.perf_counter()
                marks = await asyncio.gather(
                    *(ask(http, headers, conversations[q["doc"]], q["question"]) for q in picks)
                )
                elapsed = time.perf_counter() - t0
                failed = [m for m in marks if "error" in m or "done" not in m]
                tok = [m["token"] * 1000 for m in marks if "token" in m] or [0.0]
                print(
                    f"{concurrency} concurrent streams: {concurrency - len(failed)} completed, {len(failed)} failed, "
                    f"all done in {elapsed:.1f} s, first token p50 {statistics.median(tok):.0f} ms",
                    flush=True,
                )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pdfqa-bench-answers-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFQA_")}
    env.update(
        PDFQA_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/pdfqa_bench_answers",
        PDFQA_DATA_DIR=str(workdir / "data"),
        PDFQA_QUEUE_NAME=f"pdfqa:bench-answers:{os.getpid()}",
        PDFQA_LOG_LEVEL="WARNING",
        PDFQA_QUESTIONS_PER_MINUTE="0",  # the bench asks hundreds at once, on purpose
        PDFQA_EXTRACT_TABLES="false",  # retrieval speed does not depend on it; ingestion is faster
    )
    print(f"pdfqa answer bench ({os.cpu_count()} cores); logs in {workdir}", flush=True)
    asyncio.run(reset_database("pdfqa_bench_answers"))
    asyncio.run(run(env, workdir))


if __name__ == "__main__":
    main()

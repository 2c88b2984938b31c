"""``make load``: one ``pdfqa serve`` under concurrent uploaders and askers, on loopback only.

- 50 uploaders, each its own account, upload a small PDF, follow its progress stream until it
  ends, and upload again, for ``--seconds`` (60);
- at the same time 100 askers ask questions over SSE about two documents indexed beforehand;
- then every accepted upload must end ``ready`` or ``failed`` with a reason (bounded wait);
- then 200 answer streams at once.

Prints the counts, any 5xx, the p50/p99 of upload acknowledgement and of time to first token,
and exits 1 if a 5xx happened, an upload stayed unfinished, or a login or an answer stream
failed. Every failure is counted (a dropped connection included), never raised.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.answers import ask as ask_marks
from bench.ingest import CORPUS, Server, free_port, login, multipart, reset_database

SMALL = ["quivr_sample.pdf", "table.pdf", "multimodal.pdf"]
QUESTIONS = [
    "What is this document about?",
    "What does the table show?",
    "Which method does the paper propose?",
    "What were the results?",
    "Who are the authors?",
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Tally:
    def __init__(self) -> None:
        self.acks: list[float] = []
        self.ttft: list[float] = []
        self.status: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.accepted: dict[str, dict[str, str]] = {}  # upload id -> headers
        self.asked = 0
        self.answered = 0

    def count(self, status: int) -> None:
        self.status[status] = self.status.get(status, 0) + 1

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.status.items() if s >= 500)


async def follow(http: httpx.AsyncClient, headers: dict[str, str], upload_id: str) -> str:
    name = ""
    async with http.stream(
        "GET",
        f"/api/v1/uploads/{upload_id}/events",
        headers=headers,
        timeout=httpx.Timeout(10, read=300),
    ) as r:
        if r.status_code != 200:
            return f"HTTP {r.status_code}"
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name in ("ready", "failed", "deleted", "closing"):
                return name
    return "ended early"


async def account(http: httpx.AsyncClient, tally: Tally) -> dict[str, str] | None:
    """An uploader's account, made before the timed window (logins are not what is measured)."""
    try:
        return await login(http)
    except (httpx.HTTPError, KeyError, ValueError) as exc:  # counted, never raised
        tally.error(f"login: {type(exc).__name__}")
        return None


async def uploader(
    http: httpx.AsyncClient, tally: Tally, headers: dict[str, str] | None, until: float, n: int
) -> None:
    if headers is None:
        return
    i = n
    while time.monotonic() < until:
        path = CORPUS / SMALL[i % len(SMALL)]
        i += 1
        body, boundary = multipart(path)
        t0 = time.perf_counter()
        try:
            r = await http.post(
                "/api/v1/uploads",
                content=body,
                headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
        except httpx.HTTPError as exc:
            tally.error(f"upload: {type(exc).__name__}")
            continue
        tally.count(r.status_code)
        if r.status_code != 202:
            await asyncio.sleep(0.5)
            continue
        tally.acks.append(time.perf_counter() - t0)
        upload_id = r.json()["id"]
        tally.accepted[upload_id] = headers
        try:
            await follow(http, headers, upload_id)
        except httpx.HTTPError as exc:
            tally.error(f"progress stream: {type(exc).__name__}")


async def ask(
    http: httpx.AsyncClient, headers: dict[str, str], conversation: str, question: str, tally: Tally
) -> bool:
    """One question over SSE (``make bench``'s client); True when it ended with ``done``."""
    tally.asked += 1
    marks = await ask_marks(http, headers, conversation, question)
    error = str(marks.get("error", ""))
    if error.startswith("HTTP "):
        tally.count(int(error.split()[1]))
    else:
        tally.count(200)
    if "token" in marks:
        tally.ttft.append(marks["token"])
    if "done" in marks and not error:
        tally.answered += 1
        return True
    tally.error(f"answer: {error.split(':', maxsplit=1)[0] or 'ended without done'}")
    return False


async def asker(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    conversation: str,
    tally: Tally,
    until: float,
    n: int,
) -> None:
    i = n
    while time.monotonic() < until:
        await ask(http, headers, conversation, QUESTIONS[i % len(QUESTIONS)], tally)
        i += 1


async def prepare(http: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """An account with two ready documents and a conversation over them."""
    headers = await login(http)
    ids = []
    for name in ("DeepSeek_R1.pdf", "quivr_sample.pdf"):
        body, boundary = multipart(CORPUS / name)
        r = await http.post(
            "/api/v1/uploads",
            content=body,
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        r.raise_for_status()
        ids.append(r.json()["id"])
        assert await follow(http, headers, ids[-1]) == "ready"
    r = await http.post("/api/v1/conversations", json={"upload_ids": ids}, headers=headers)
    r.raise_for_status()
    return headers, r.json()["id"]


async def unfinished(http: httpx.AsyncClient, tally: Tally, within: float) -> list[dict[str, Any]]:
    """Wait until every accepted upload is ready or failed (with a reason); what is left."""
    deadline = time.monotonic() + within
    users: dict[str, dict[str, str]] = {}
    for headers in tally.accepted.values():
        users[headers["Authorization"]] = headers
    while True:
        left: list[dict[str, Any]] = []
        for headers in users.values():
            for u in await all_uploads(http, headers):
                if u["id"] not in tally.accepted:
                    continue
                if u["status"] not in ("ready", "failed") or (
                    u["status"] == "failed" and not u["error"]
                ):
                    left.append(u)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(1)


async def all_uploads(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every upload of a user, following the list's cursors."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/api/v1/uploads", headers=headers, params=params)).json()
        found += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return found


async def run(
    env: dict[str, str], workdir: Path, seconds: float, uploaders: int, askers: int
) -> int:
    port = free_port()
    server = Server(env, port, workdir / "serve.log")
    server.wait()
    tally = Tally()
    try:
        async with httpx.AsyncClient(
            base_url=server.base, timeout=60, limits=httpx.Limits(max_connections=1000)
        ) as http:
            headers, conversation = await prepare(http)
            accounts = await asyncio.gather(*(account(http, tally) for _ in range(uploaders)))
            print(f"{uploaders} uploaders and {askers} askers for {seconds:.0f} s ...", flush=True)
            until = time.monotonic() + seconds
            await asyncio.gather(
                *(uploader(http, tally, h, until, n) for n, h in enumerate(accounts)),
                *(asker(http, headers, conversation, tally, until, n) for n in range(askers)),
            )
            left = await unfinished(http, tally, within=300)
            finals: dict[str, int] = {}
            for h in {h["Authorization"]: h for h in tally.accepted.values()}.values():
                for u in await all_uploads(http, h):
                    if u["id"] in tally.accepted:
                        finals[u["status"]] = finals.get(u["status"], 0) + 1
            print(
                f"uploads: {len(tally.accepted)} accepted; final states {finals}; "
                f"{len(left)} unfinished after the run"
            )
            print(
                f"upload acknowledgement: p50 {percentile(tally.acks, 0.5) * 1000:.0f} ms, "
                f"p99 {percentile(tally.acks, 0.99) * 1000:.0f} ms ({len(tally.acks)} uploads)"
            )
            print(
                f"questions: {tally.asked} asked, {tally.answered} answered; time to first token "
                f"p50 {percentile(tally.ttft, 0.5) * 1000:.0f} ms, p99 {percentile(tally.ttft, 0.99) * 1000:.0f} ms"
            )
            print(
                f"HTTP statuses: {dict(sorted(tally.status.items()))}; client errors: {tally.errors}"
            )

            streams = Tally()
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(
                    ask(http, headers, conversation, QUESTIONS[i % len(QUESTIONS)], streams)
                    for i in range(200)
                )
            )
            ok = sum(results)
            print(
                f"200 concurrent answer streams: {ok} completed, {200 - ok} failed in "
                f"{time.perf_counter() - t0:.1f} s; first token p50 "
                f"{percentile(streams.ttft, 0.5) * 1000:.0f} ms, p99 {percentile(streams.ttft, 0.99) * 1000:.0f} ms; "
                f"errors {streams.errors}"
            )
            logins = sum(n for what, n in tally.errors.items() if what.startswith("login"))
            failed_answers = tally.asked - tally.answered  # a reset stream counts, not only 5xx
            bad = (
                tally.server_errors
                + streams.server_errors
                + len(left)
                + (200 - ok)
                + logins
                + failed_answers
            )
            print("PASS" if not bad else f"FAIL ({bad} problems)")
            return 0 if not bad else 1
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--uploaders", type=int, default=50)
    parser.add_argument("--askers", type=int, default=100)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pdfqa-load-"))
    database = os.environ.get("PDFQA_LOAD_DATABASE", "pdfqa_load")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFQA_")}
    env.update(
        PDFQA_DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{database}",
        PDFQA_REDIS_URL=os.environ.get("PDFQA_REDIS_URL", "redis://127.0.0.1:6379/0"),
        PDFQA_DATA_DIR=str(workdir / "data"),
        PDFQA_QUEUE_NAME=f"pdfqa:load:{os.getpid()}",
        PDFQA_HOST="127.0.0.1",
        PDFQA_LOG_LEVEL="WARNING",
        # A load test, on purpose: the per-user quotas and the per-address limit on /auth (50
        # accounts log in from one address) would turn it into a test of those limits.
        PDFQA_UPLOADS_PER_HOUR="0",
        PDFQA_QUESTIONS_PER_MINUTE="0",
        PDFQA_AUTH_RATE_PER_MINUTE="100000",
        # 51 accounts are made before the timed window; at the product's scrypt cost (128 MiB,
        # ~0.3 s idle, seconds on a busy machine) that alone took minutes. Logins are not measured.
        PDFQA_SCRYPT_LOG_N="14",
    )
    print(f"pdfqa load test ({os.cpu_count()} cores, loopback only); logs in {workdir}", flush=True)
    asyncio.run(reset_database(database))
    raise SystemExit(asyncio.run(run(env, workdir, args.seconds, args.uploaders, args.askers)))


if __name__ == "__main__":
    main()

"""A page crafted to make text processing slow stalls nothing but its own extraction child.

The page is one line of 40,000 ". " pairs with no page number after it (about 80 KB of text in
a 81 KB PDF): before chunking moved into the sandboxed child, a table-of-contents pattern tried
from every offset of that line held the GIL for about 8 minutes in ``pdfqa serve``'s own
process, so ``/health``, the progress streams and the job's lease renewal all stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from pdfqa.settings import Settings
from tests.e2e.conftest import Process, register, start_serve
from tests.pdfs import text_pdf

pytestmark = pytest.mark.e2e

HEALTH_WITHIN_S = 0.1


def test_the_api_answers_while_a_page_of_dot_leaders_is_ingested(
    settings: Settings, processes: list[Process], tmp_path: Path
) -> None:
    server, base = start_serve(settings, processes, tmp_path / "serve.log")
    pdf = tmp_path / "leaders.pdf"
    pdf.write_bytes(
        text_pdf(["Revenue grew to 17,455 million dollars in 2021.", ". " * 40_000 + "!"])
    )
    with httpx.Client(base_url=base, timeout=30) as http:
        headers = register(http)
        with pdf.open("rb") as f:
            r = http.post(
                "/api/v1/uploads", files={"file": (pdf.name, f, "application/pdf")}, headers=headers
            )
        assert r.status_code == 202, r.text
        upload = f"/api/v1/uploads/{r.json()['id']}"

        latencies: list[float] = []
        status = "queued"
        deadline = time.monotonic() + 120
        while status in ("queued", "processing") and time.monotonic() < deadline:
            started = time.perf_counter()
            health = http.get("/health", timeout=HEALTH_WITHIN_S * 50)
            latencies.append(time.perf_counter() - started)
            assert health.status_code == 200
            status = http.get(upload, headers=headers).json()["status"]
            time.sleep(0.02)

        body = http.get(upload, headers=headers).json()
    print(f"/health: {len(latencies)} requests, slowest {max(latencies) * 1000:.1f} ms")
    assert body["status"] == "ready", (body, server.output())
    assert body["chunks"] >= 1
    assert len(latencies) >= 3  # asked while the page was being read, not only after
    assert max(latencies) < HEALTH_WITHIN_S, sorted(latencies)[-5:]

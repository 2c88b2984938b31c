"""Scanned pages, end to end through the API and real workers (ingest, then the OCR queue):
they become searchable on their page, their OCR lines are served with boxes, a page OCR cannot
read is skipped, a PDF with no legible text fails with that reason, and the reconciler keeps the
OCR stage from ever being stuck. OCR is CPU-heavy: every document here is one to three pages.

The module has a database of its own: the reconciler looks at every unfinished upload."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa import lifecycle, queue
from pdfqa.api.app import create_app
from pdfqa.resources import Resources
from pdfqa.retrieval import retrieve
from pdfqa.settings import Settings
from tests.conftest import _drop
from tests.integration.conftest import login, on_app, run_jobs, upload
from tests.pdfs import mixed_pdf

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
def ocr_settings(settings: Settings) -> Iterator[Settings]:
    name = f"pdfqa_ocr_{uuid.uuid4().hex[:8]}"
    yield msgspec.structs.replace(
        settings, database_url=settings.database_url.rsplit("/", 1)[0] + "/" + name
    )
    asyncio.run(_drop(name))


@pytest.fixture
def app(ocr_settings: Settings, request: pytest.FixtureRequest) -> Litestar:
    changes: dict[str, Any] = getattr(request, "param", {})
    return create_app(
        msgspec.structs.replace(
            ocr_settings, queue_name=f"{ocr_settings.queue_name}:{uuid.uuid4().hex[:8]}", **changes
        )
    )


async def upload_bytes(client: Client, headers: dict[str, str], name: str, data: bytes) -> str:
    r = await client.post(
        "/api/v1/uploads", files={"file": (name, data, "application/pdf")}, headers=headers
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def pages_found(res: Resources, user_id: UUID, upload_id: str, query: str) -> list[int]:
    found = await retrieve(res, user_id=user_id, upload_names={UUID(upload_id): "x"}, query=query)
    return [source.page for source in found.sources]


async def owner(client: Client, headers: dict[str, str], upload_id: str) -> UUID:
    body = (await client.get(f"/api/v1/uploads/{upload_id}", headers=headers)).json()
    return UUID(body["user_id"])


MIXED = [
    (["Annual report of the Harbour Rowing Club", "Membership grew to 412 rowers"], False),
    (["Minutes of the spring regatta", "The cedar boathouse roof was repaired in April"], True),
    (["Treasurer's note", "Dues remain at forty euros a season"], False),
    (["Appendix on river safety", "Lifejackets are checked before every outing"], True),
]


async def test_a_mixed_pdf_has_every_pages_text_found_on_its_page(client: Client) -> None:
    res: Resources = client.app.state.resources
    headers = await login(client)
    uid = await upload_bytes(client, headers, "mixed.pdf", mixed_pdf(MIXED))
    assert on_app(client, run_jobs, res, "ingest") == 1
    body = (await client.get(f"/api/v1/uploads/{uid}", headers=headers)).json()
    # The text pages are indexed; the scanned ones wait for OCR, not counted as done.
    assert (body["status"], body["pages_done"], body["pages_total"]) == ("processing", 2, 4)
    assert on_app(client, run_jobs, res, "ocr") == 1
    body = (await client.get(f"/api/v1/uploads/{uid}", headers=headers)).json()
    assert body["status"] == "ready", body
    assert (body["pages_ocr"], body["pages_skipped"], body["pages_done"]) == (2, 0, 4)
    me = await owner(client, headers, uid)
    for number, (lines, _) in enumerate(MIXED, start=1):
        found = on_app(client, pages_found, res, me, uid, lines[1])
        assert found[:1] == [number], (lines[1], found)
    # The OCR'd page's lines, with boxes on the page; a text page has none.
    r = await client.get(f"/api/v1/uploads/{uid}/pages/2/ocr", headers=headers)
    assert r.status_code == 200
    lines = r.json()["lines"]
    assert any("boathouse" in line["text"] for line in lines), lines
    assert all(
        0 <= line["x0"] < line["x1"] <= 1 and 0 <= line["y0"] < line["y1"] <= 1 for line in lines
    )
    r = await client.get(f"/api/v1/uploads/{uid}/pages/1/ocr", headers=headers)
    assert r.json() == {"page": 1, "lines": []}
    assert (
        await client.get(f"/api/v1/uploads/{uid}/pages/9/ocr", headers=headers)
    ).status_code == 404
    other = await login(client)
    assert (
        await client.get(f"/api/v1/uploads/{uid}/pages/2/ocr", headers=other)
    ).status_code == 404


@pytest.mark.parametrize(
    ("name", "question", "phrase"),
    [
        # A 1972 letter, scanned: only its image says what it is about.
        (
            "file_scanned.pdf",
            "How does a photocell produce the video signal in facsimile?",
            "raster scan",
        ),
        (
            "file_image.pdf",
            "What should you ask the U.S. Attorney's Office about the format?",
            "Attorney",
        ),
    ],
)
async def test_corpus_scans_become_ready_and_answer_from_their_page(
    client: Client, corpus: Path, name: str, question: str, phrase: str
) -> None:
    res: Resources = client.app.state.resources
    headers = await login(client)
    uid = (await upload(client, headers, corpus / "bad" / name))["id"]
    assert on_app(client, run_jobs, res) == 2
    body = (await client.get(f"/api/v1/uploads/{uid}", headers=headers)).json()
    assert body["status"] == "ready", body
    assert body["pages_ocr"] == body["pages_total"] >= 1
    found = on_app(
        client,
        retrieve,
        res,
        user_id=await owner(client, headers, uid),
        upload_names={UUID(uid): name},
        query=question,
    )
    assert found.sources[0].page == 1
    assert phrase.lower() in found.sources[0].text.lower()


@pytest.mark.parametrize("app", [{"ocr_page_timeout_s": 0.01}], indirect=True)
async def test_pages_ocr_cannot_read_are_skipped_and_a_scan_without_any_fails(
    client: Client,
) -> None:
    res: Resources = client.app.state.resources
    headers = await login(client)
    mixed = await upload_bytes(client, headers, "mixed.pdf", mixed_pdf(MIXED[:2]))
    scan = await upload_bytes(client, headers, "scan.pdf", mixed_pdf([MIXED[1]]))
    assert on_app(client, run_jobs, res) == 4
    body = (await client.get(f"/api/v1/uploads/{mixed}", headers=headers)).json()
    assert (body["status"], body["pages_skipped"], body["pages_ocr"]) == ("ready", 1, 0)
    body = (await client.get(f"/api/v1/uploads/{scan}", headers=headers)).json()
    assert body["status"] == "failed"
    assert body["error"].startswith("OCR could not read any page (page 1 took longer than")


@pytest.mark.parametrize("app", [{"ocr": False}], indirect=True)
async def test_with_ocr_off_a_scan_fails_saying_so(client: Client, corpus: Path) -> None:
    res: Resources = client.app.state.resources
    headers = await login(client)
    uid = (await upload(client, headers, corpus / "bad" / "file_scanned.pdf"))["id"]
    assert on_app(client, run_jobs, res) == 1
    body = (await client.get(f"/api/v1/uploads/{uid}", headers=headers)).json()
    assert body["status"] == "failed"
    assert "OCR is turned off" in body["error"]


async def test_the_reconciler_requeues_a_lost_ocr_job_and_fails_one_out_of_attempts(
    client: Client,
) -> None:
    res: Resources = client.app.state.resources
    headers = await login(client)
    lost = await upload_bytes(client, headers, "lost.pdf", mixed_pdf(MIXED[:2]))
    spent = await upload_bytes(client, headers, "spent.pdf", mixed_pdf(MIXED[:2]))
    assert on_app(client, run_jobs, res, "ingest") == 2
    for uid in (lost, spent):  # what a Redis that lost its data does to the OCR jobs
        job_id = res.queues.job_id(lifecycle.OCR, UUID(uid))
        on_app(client, queue.clear_job, res.redis, res.queues.name("ocr"), job_id)

    async def use_up_attempts() -> None:
        async with res.db.acquire() as conn:
            await conn.execute(
                "UPDATE upload_jobs SET ocr_attempts = $2 WHERE upload_id = $1",
                UUID(spent),
                res.settings.ingest_max_attempts,
            )

    on_app(client, use_up_attempts)
    assert on_app(client, run_jobs, res, "ocr") == 0  # nothing to run: the jobs are gone
    report = on_app(client, lifecycle.reconcile, res, idle_s=0)
    assert (report.requeued, report.failed) == (1, 1)
    assert on_app(client, run_jobs, res, "ocr") == 1
    assert (await client.get(f"/api/v1/uploads/{lost}", headers=headers)).json()[
        "status"
    ] == "ready"
    body = (await client.get(f"/api/v1/uploads/{spent}", headers=headers)).json()
    assert body["status"] == "failed"
    assert "interrupted" in body["error"]
    # Nothing left for the reconciler.
    assert on_app(client, lifecycle.reconcile, res, idle_s=0).checked == 0

"""Ask while it is being read: a conversation over an upload still ``processing`` is answered
from the pages stored so far, and says how far the document was read.

A real ingestion of a 307-page 10-K (the shared corpus's uber_2021.pdf) runs on the app's loop;
the test stops it with the pipeline's own ``stop`` event once a few dozen pages are stored (the
way a worker's shutdown stops it: progress and checkpoint recorded, the upload stays
``processing``), asks, then lets a real arq worker resume it to the end and asks again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from pdfqa.ingest import Stopped
from pdfqa.lifecycle import ingest_upload
from pdfqa.progress import RESYNC, Progress
from pdfqa.resources import Resources
from tests.integration.conftest import login, on_app, run_jobs, upload
from tests.integration.test_conversations import SSE, conversation, parse_sse

Client = AsyncTestClient[Litestar]
ENOUGH_PAGES = 12


def retrieval_cache(result: str) -> float:
    """How many retrieval cache look-ups had ``result`` (``hit``, ``miss``), from /metrics'
    registry."""
    value = REGISTRY.get_sample_value(
        "pdfqa_cache_requests_total", {"cache": "retrieval", "result": result}
    )
    assert value is not None
    return value


async def _ingest_until(resources: Resources, upload_id: UUID, pages: int) -> int:
    """Ingest for real, and stop (the way a worker's shutdown does) once the hub has relayed
    ``pages`` stored pages; the pages stored by then."""
    stop = asyncio.Event()
    async with resources.hub.listen(upload_id, uuid4()) as live:
        task = asyncio.create_task(ingest_upload(resources, upload_id, stop=stop))
        while True:
            item = await live.get()
            if isinstance(item, Progress) and item.pages_done >= pages:
                stop.set()
                break
            assert isinstance(item, Progress) or item is RESYNC, item
    with pytest.raises(Stopped):
        await task
    return item.pages_done


async def test_a_question_is_answered_from_the_pages_read_so_far(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "uber_2021.pdf")
    upload_id = accepted["id"]
    # Still queued: it may join a conversation already.
    conv = await conversation(client, headers, upload_id)

    reached = on_app(client, _ingest_until, resources, UUID(upload_id), ENOUGH_PAGES)
    state = (await client.get(f"/api/v1/uploads/{upload_id}", headers=headers)).json()
    assert state["status"] == "processing"
    done, total = state["pages_done"], state["pages_total"]
    assert ENOUGH_PAGES <= reached <= done < total == 307

    question = "What is the address of Uber's principal executive offices?"
    events = parse_sse(
        (
            await client.post(
                f"/api/v1/conversations/{conv['id']}/messages",
                json={"question": question},
                headers={**headers, **SSE},
            )
        ).text
    )
    names = [n for n, _ in events]
    assert names[0] == "sources", names
    assert names[-1] == "done", names
    sources = events[0][1]["sources"]
    assert sources, "the pages read so far are searchable"
    assert all(max(s["pages"]) <= done for s in sources), [s["pages"] for s in sources]
    assert any(s["page"] == 1 for s in sources)  # the cover page names the offices
    expected = [
        {
            "upload_id": upload_id,
            "upload_name": "uber_2021.pdf",
            "pages_done": done,
            "pages_total": 307,
            "note": f"pages 1\u2013{done} of 307 read so far",
        }
    ]
    assert events[0][1]["reading"] == expected
    assert events[-1][1]["reading"] == expected
    # Asked again while the document is still being read: searched again, never served from the
    # retrieval cache (the next pages would make a cached result stale).
    hits = retrieval_cache("hit")
    misses = retrieval_cache("miss")
    again = await client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"question": question},
        headers=headers,
    )
    assert again.status_code == 200, again.text
    assert again.json()["reading"] == expected
    assert retrieval_cache("hit") == hits
    assert retrieval_cache("miss") == misses
    # The first question names the conversation.
    detail = (await client.get(f"/api/v1/conversations/{conv['id']}", headers=headers)).json()
    assert detail["title"] == question
    assert detail["messages"][0]["reading"] == expected

    # A real worker resumes the ingestion from its checkpoint; the conversation picks up the rest.
    assert on_app(client, run_jobs, resources) == 1
    state = (await client.get(f"/api/v1/uploads/{upload_id}", headers=headers)).json()
    assert state["status"] == "ready"
    r = await client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"question": "What were Uber's total revenues in 2021?"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reading"] == []
    assert any(s["page"] > done for s in body["sources"]), [s["page"] for s in body["sources"]]
    # Once it is read, the same question comes from the cache.
    hits = retrieval_cache("hit")
    r = await client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"question": "What were Uber's total revenues in 2021?"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert retrieval_cache("hit") == hits + 1

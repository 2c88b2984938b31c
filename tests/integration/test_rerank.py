"""A reranker re-orders retrieval's candidates, only ever sees the asker's passages, and never
fails a question.

FAKE AT THE PAID EDGE: the rerank endpoint is an ``httpx.MockTransport`` that answers like
Jina's and Cohere's ``POST /v1/rerank`` (vLLM, llama.cpp's server and Infinity serve the same),
scoring a passage by whether it names the board's chair. Everything else is real: PostgreSQL,
Redis, the arq worker, the extraction children, the bundled MiniLM and Qdrant in local mode.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import generate_latest

from pdfqa.api.app import create_app
from pdfqa.resources import Resources
from pdfqa.retrieval import Retrieval, Tuning, retrieve
from pdfqa.settings import Settings
from tests.conftest import metric_samples, metric_value
from tests.integration.conftest import ingest_ready, on_app
from tests.pdfs import mixed_pdf

Client = AsyncTestClient[Litestar]

BOARD = [
    (
        ["Minutes of the harbour board", "The board meets on the first Monday of every month."],
        False,
    ),
    (["Meeting dates", "The board met on 4 March 2021 and again on 2 June 2021."], False),
    (["Budget", "Dredging the channel cost 41,200 euros in 2021."], False),
    (["Signatures", "Signed by the chair, Ines Moreau, on 9 July 2021."], False),
]
OTHER = [(["Another board", "The chair of the other board, Zed Quill, met the mayor."], False)]
QUESTION = "When did the board meet?"


class FakeReranker:
    """Scores 1 for a passage that names the chair, else 0; can be told to fail."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.failing = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url == "http://fake-rerank.test/v1/rerank"
        assert request.headers["authorization"] == "Bearer rerank-key"
        body = json.loads(request.content)
        self.requests.append(body)
        if self.failing:
            return httpx.Response(503, json={"error": "model is loading"})
        scores = [1.0 if "chair" in doc else 0.0 for doc in body["documents"]]
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        # Results come best first, as the real APIs send them, not in the documents' order.
        return httpx.Response(
            200, json={"results": [{"index": i, "relevance_score": scores[i]} for i in ranked]}
        )


@pytest.fixture
def fake() -> FakeReranker:
    return FakeReranker()


@pytest.fixture
async def client(settings: Settings, fake: FakeReranker) -> AsyncIterator[Client]:
    configured = msgspec.structs.replace(
        settings,
        rerank_model="fake-reranker",
        rerank_base_url="http://fake-rerank.test/v1",
        rerank_api_key="rerank-key",
        queue_name=f"{settings.queue_name}:rerank",
    )
    app = create_app(configured, http_transport=httpx.MockTransport(fake))
    async with AsyncTestClient(app=app, timeout=60) as client:
        yield client


async def ingest(client: Client, pages: list[tuple[list[str], bool]]) -> tuple[UUID, UUID]:
    _, body = await ingest_ready(client, mixed_pdf(pages))
    return UUID(body["user_id"]), UUID(body["id"])


def ask(
    client: Client, user_id: UUID, upload_id: UUID, *, tuning: Tuning | None = None, cache: bool
) -> Retrieval:
    res: Resources = client.app.state.resources
    return on_app(
        client,
        retrieve,
        res,
        user_id=user_id,
        upload_names={upload_id: "board.pdf"},
        query=QUESTION,
        tuning=tuning,
        cache=cache,
    )


def failures() -> float:
    return metric_value(metric_samples(generate_latest().decode()), "pdfqa_rerank_failures_total")


async def test_the_reranker_orders_the_sources_and_sees_only_the_askers_passages(
    client: Client, fake: FakeReranker
) -> None:
    user_id, upload_id = await ingest(client, BOARD)
    other_user, _ = await ingest(client, OTHER)  # another user's chair, on the same store
    assert other_user != user_id

    fused = ask(client, user_id, upload_id, tuning=Tuning(rerank=False), cache=False)
    assert not fake.requests  # turned off for this question: no request at all
    # On the words alone, a page about meetings comes first, not the signatures.
    assert fused.sources[0].page in {1, 2}, [s.page for s in fused.sources]

    found = ask(client, user_id, upload_id, cache=False)
    (request,) = fake.requests
    assert request["model"] == "fake-reranker"
    assert request["query"] == QUESTION
    documents = request["documents"]
    assert isinstance(documents, list)
    assert request["top_n"] == len(documents)
    # Every candidate of this upload went (the board has four one-passage pages), and nothing of
    # the other user's, although it names a chair too.
    assert len(documents) == 4
    assert not any("Zed" in d for d in documents)
    assert {s.text for s in found.sources} == set(documents)
    # The reranker's choice leads, with its own score; the rest follow in the fused order.
    assert found.sources[0].page == 4
    assert found.sources[0].score == 1.0
    assert [s.page for s in found.sources[1:]] == [
        p for p in (s.page for s in fused.sources) if p != 4
    ]
    assert all(s.score == 0.0 for s in found.sources[1:])
    assert sorted(s.page for s in found.sources) == [1, 2, 3, 4]  # still one source per page


async def test_a_failing_reranker_leaves_the_fused_order_and_is_not_cached(
    client: Client, fake: FakeReranker
) -> None:
    user_id, upload_id = await ingest(client, BOARD)
    fused = ask(client, user_id, upload_id, tuning=Tuning(rerank=False), cache=False)

    fake.failing = True
    before = failures()
    for _ in range(2):
        found = ask(client, user_id, upload_id, cache=True)
        assert [s.page for s in found.sources] == [s.page for s in fused.sources]
        assert [s.score for s in found.sources] == [s.score for s in fused.sources]
    # Both questions asked the endpoint: an answer without its reranking was not cached.
    assert len(fake.requests) == 2
    assert failures() == before + 2

    fake.failing = False
    found = ask(client, user_id, upload_id, cache=True)
    assert found.sources[0].page == 4
    assert len(fake.requests) == 3
    again = ask(client, user_id, upload_id, cache=True)
    assert len(fake.requests) == 3  # this one came from the cache
    assert again == found


async def test_a_question_through_the_api_is_reranked(client: Client, fake: FakeReranker) -> None:
    headers, upload = await ingest_ready(client, mixed_pdf(BOARD))
    r = await client.post(
        "/api/v1/conversations", json={"upload_ids": [upload["id"]]}, headers=headers
    )
    conversation = r.json()["id"]
    r = await client.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"question": QUESTION},
        headers={**headers, "Accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(fake.requests) == 1
    assert body["sources"][0]["page"] == 4
    assert "Ines Moreau" in body["sources"][0]["text"]

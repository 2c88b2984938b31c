"""The rerank client: what it sends, how it reads an answer, and the failures it names.

FAKE AT THE PAID EDGE: each endpoint is an ``httpx.MockTransport`` answering like Jina's and
Cohere's ``POST /v1/rerank``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from pdfqa.errors import UpstreamUnavailable
from pdfqa.rerank import Reranker, create_reranker
from pdfqa.settings import Settings

SETTINGS = Settings(
    rerank_model="bge-reranker-v2-m3",
    openai_base_url="http://models.test/v1/",
    openai_api_key="shared-key",
)
PASSAGES = ["alpha", "beta", "gamma"]


async def scores(
    handler: Callable[[httpx.Request], httpx.Response], settings: Settings = SETTINGS
) -> list[float]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        reranker = create_reranker(settings, http)
        assert reranker is not None
        return await reranker.scores("which letter?", PASSAGES)


def answer(results: object, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, json={"results": results})


async def test_scores_come_back_in_the_passages_order_whatever_order_the_answer_has() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "id": "r1",
                "results": [  # best first, with the extra fields real servers add
                    {"index": 2, "relevance_score": 0.9, "document": {"text": "gamma"}},
                    {"index": 0, "relevance_score": -1.5},
                    {"index": 1, "relevance_score": 0.1},
                ],
                "usage": {"total_tokens": 12},
            },
        )

    assert await scores(handler) == [-1.5, 0.1, 0.9]
    (request,) = seen
    # The base URL's trailing slash does not double; the shared key is used when none is set.
    assert str(request.url) == "http://models.test/v1/rerank"
    assert request.headers["authorization"] == "Bearer shared-key"
    assert json.loads(request.content) == {
        "model": "bge-reranker-v2-m3",
        "query": "which letter?",
        "documents": PASSAGES,
        "top_n": 3,
    }


async def test_its_own_url_and_key_win_over_the_shared_ones() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer([{"index": i, "relevance_score": 1.0} for i in range(3)])(request)

    own = Settings(
        rerank_model="m",
        rerank_base_url="http://rerank.test",
        rerank_api_key="own-key",
        openai_base_url="http://models.test/v1",
    )
    assert await scores(handler, own) == [1.0, 1.0, 1.0]
    assert str(seen[0].url) == "http://rerank.test/rerank"
    assert seen[0].headers["authorization"] == "Bearer own-key"


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (answer([], status=503), "failed (HTTP 503)"),
        (answer([{"index": 0, "relevance_score": 1.0}]), "scored 1 of 3"),
        (
            answer([{"index": i % 2, "relevance_score": 1.0} for i in range(3)]),
            "names passage 0 of 3",
        ),
        (answer([{"index": 3, "relevance_score": 1.0}]), "names passage 3 of 3"),
        (answer([{"index": 0, "score": 1.0}]), "not a ranking"),
        (lambda _r: httpx.Response(200, text="<html>proxy error</html>"), "not JSON"),
    ],
)
async def test_an_answer_that_is_not_a_ranking_of_these_passages_is_a_failure(
    handler: Callable[[httpx.Request], httpx.Response], reason: str
) -> None:
    with pytest.raises(UpstreamUnavailable, match=re.escape(reason)):
        await scores(handler)


async def test_unreachable_and_slow_endpoints_are_failures_a_person_can_read() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(UpstreamUnavailable, match="could not be reached"):
        await scores(refused)
    with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
        await scores(slow)


async def test_off_by_default_and_a_model_without_an_endpoint_is_a_configuration_error() -> None:
    async with httpx.AsyncClient() as http:
        assert create_reranker(Settings(), http) is None
        with pytest.raises(ValueError, match="PDFQA_RERANK_BASE_URL"):
            Reranker(Settings(rerank_model="m"), http)
        # No passages, no request.
        reranker = create_reranker(SETTINGS, http)
        assert reranker is not None
        assert await reranker.scores("q", []) == []

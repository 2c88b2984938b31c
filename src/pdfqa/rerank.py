"""An optional second ranking of the fused candidates by a cross-encoder behind a rerank API.

Hybrid retrieval with the bundled MiniLM finds the page that answers a question among its
candidates far more often than it ranks that page first (``make eval``: the evidence page is among
the fused candidates for 92% of the benchmark's questions, in the top five for 73%). A
cross-encoder reads the question and each passage together and ranks them better; it is too slow
to ship in the embedded default, but most model servers offer one behind the same rerank API
(Jina's and Cohere's ``POST /rerank``, also served by vLLM, llama.cpp's server, Infinity and
LocalAI): ``{"model", "query", "documents", "top_n"}`` in, ``{"results": [{"index",
"relevance_score"}]}`` out.

With ``PDFQA_RERANK_MODEL`` set, :func:`pdfqa.retrieval.retrieve` sends the question and its
``rerank_candidates`` best passages (only ever the asker's own) and orders them by the scores.
When the endpoint fails, retrieval keeps the fused order (and counts the failure): an answer never
waits on, or fails because of, an optional model.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import msgspec

from pdfqa.errors import UpstreamUnavailable
from pdfqa.settings import Settings

__all__ = ["Reranker", "create_reranker"]


class _Result(msgspec.Struct):
    index: int
    relevance_score: float


class _Response(msgspec.Struct):
    results: list[_Result]


_decoder = msgspec.json.Decoder(_Response)


class Reranker:
    """Scores passages for a query with the configured rerank endpoint."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        base = settings.rerank_base_url or settings.openai_base_url
        if not base:
            raise ValueError(
                "PDFQA_RERANK_MODEL needs PDFQA_RERANK_BASE_URL (or PDFQA_OPENAI_BASE_URL)"
            )
        self.model = settings.rerank_model or ""
        self._url = base.rstrip("/") + "/rerank"
        self._key = settings.rerank_api_key or settings.openai_api_key
        self._timeout = settings.rerank_timeout_s
        self._http = http

    async def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage, in the passages' order (higher is more relevant).

        Raises :class:`UpstreamUnavailable` when the endpoint cannot be reached, answers with an
        error status or with something that is not a ranking of these passages.
        """
        if not passages:
            return []
        try:
            response = await self._http.post(
                self._url,
                json={
                    "model": self.model,
                    "query": query,
                    "documents": list(passages),
                    "top_n": len(passages),
                },
                headers={"Authorization": f"Bearer {self._key}"},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as err:
            raise UpstreamUnavailable("The reranker did not answer in time.") from err
        except httpx.HTTPError as err:
            raise UpstreamUnavailable("The reranker could not be reached.") from err
        if response.status_code >= 400:
            raise UpstreamUnavailable(f"The reranker failed (HTTP {response.status_code}).")
        try:
            results = _decoder.decode(response.content).results
        except msgspec.ValidationError as err:
            raise UpstreamUnavailable(f"The reranker's answer is not a ranking: {err}") from err
        except msgspec.DecodeError as err:
            raise UpstreamUnavailable("The reranker's answer is not JSON.") from err
        found: dict[int, float] = {}
        for result in results:
            if not 0 <= result.index < len(passages) or result.index in found:
                raise UpstreamUnavailable(
                    f"The reranker's answer names passage {result.index} of {len(passages)}."
                )
            found[result.index] = result.relevance_score
        if len(found) != len(passages):
            raise UpstreamUnavailable(
                f"The reranker scored {len(found)} of {len(passages)} passages."
            )
        return [found[i] for i in range(len(passages))]


def create_reranker(settings: Settings, http: httpx.AsyncClient) -> Reranker | None:
    """The configured reranker, or None (the default): the fused order stands."""
    if not settings.rerank_model:
        return None
    return Reranker(settings, http)

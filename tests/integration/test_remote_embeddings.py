"""Ingestion with an OpenAI-compatible embeddings endpoint.

FAKE AT THE PAID EDGE: the endpoint is an ``httpx.MockTransport`` that answers like OpenAI's
``/v1/embeddings``, with latency, out-of-order completion and one 429. Everything else is real:
PostgreSQL, Redis, the arq worker, the extraction children and Qdrant in local mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from pathlib import Path

import httpx
import msgspec
from litestar.testing import AsyncTestClient

from pdfqa.api.app import create_app
from pdfqa.settings import Settings
from tests.integration.conftest import login, on_app, run_jobs, upload

DIMS = 48


class FakeEmbeddings:
    """An OpenAI-compatible embeddings server: hashed bag of words, random latency, one 429."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.throttled = 0
        self.rng = random.Random(7)

    def vector(self, text: str) -> list[float]:
        v = [0.0] * DIMS
        for word in text.lower().split():
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMS] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings"
        assert request.headers["authorization"] == "Bearer test-key"
        body = json.loads(request.content)
        self.requests += 1
        if self.requests == 3:
            self.throttled += 1
            return httpx.Response(
                429, headers={"retry-after-ms": "1"}, json={"error": {"message": "slow down"}}
            )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(
                self.rng.uniform(0.0, 0.05)
            )  # network latency: batches finish out of order
        finally:
            self.in_flight -= 1
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return httpx.Response(
            200,
            json={
                "object": "list",
                "model": body["model"],
                "data": [
                    {"object": "embedding", "index": i, "embedding": self.vector(t)}
                    for i, t in enumerate(inputs)
                ],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )


async def test_a_remote_embedder_runs_batches_concurrently_and_survives_a_429(
    settings: Settings, corpus: Path
) -> None:
    fake = FakeEmbeddings()
    remote = msgspec.structs.replace(
        settings,
        embedding_provider="openai",
        openai_base_url="http://fake-openai.test/v1",
        openai_api_key="test-key",
        embedding_model="fake-embed-48",
        embed_batch_size=8,
        embed_concurrency=3,
        queue_name=f"{settings.queue_name}:remote",
    )
    app = create_app(remote, http_transport=httpx.MockTransport(fake))
    async with AsyncTestClient(app=app, timeout=120) as client:
        resources = client.app.state.resources
        headers = await login(client)
        accepted = await upload(client, headers, corpus / "DeepSeek_R1.pdf")
        assert on_app(client, run_jobs, resources) == 1

        body = (await client.get(f"/api/v1/uploads/{accepted['id']}", headers=headers)).json()
        assert body["status"] == "ready", body
        assert body["pages_done"] == body["pages_total"] == 22
        points = on_app(client, resources.vectors.scroll, upload_id=accepted["id"])
        assert [p.chunk_index for p in points] == list(range(body["chunks"]))
        assert fake.throttled == 1  # the SDK retried it; nothing was lost
        assert 2 <= fake.max_in_flight <= 3  # several batches in flight, never above the setting
        assert fake.requests >= body["chunks"] // 8 + 2  # the probe, every batch, the retry

"""Embedders: the bundled model on every backend, and the OpenAI-compatible client.

The local tests run the real model. The OpenAI tests use a fake: the endpoint is an
``httpx.MockTransport`` behind a real ``httpx.AsyncClient`` (the paid HTTP edge), while the
``openai`` SDK, its retries and our error mapping run for real.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from pdfqa.embeddings import (
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    create_embedder,
    onnx_cache_dir,
)
from pdfqa.errors import UpstreamUnavailable
from pdfqa.settings import Settings

TEXTS = [
    "The cat sat on the mat and purred.",
    "A kitten was resting on the rug.",
    "Quarterly revenue grew 12% driven by freight bookings.",
    "Lyft had 4,453 employees at the end of 2021 in about 119 offices.",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def torch_vectors(data_dir: Path) -> np.ndarray:
    import asyncio

    async def run() -> list[list[float]]:
        embedder = LocalEmbedder(Settings(data_dir=data_dir, local_embedding_backend="torch"))
        await embedder.start()
        try:
            return await embedder.embed_documents(TEXTS)
        finally:
            await embedder.aclose()

    return np.asarray(asyncio.run(run()))


@pytest.fixture(scope="module", params=["onnx-int8", "onnx"])
def onnx_vectors(request: pytest.FixtureRequest, data_dir: Path) -> np.ndarray:
    import asyncio

    async def run() -> list[list[float]]:
        settings = Settings(data_dir=data_dir, local_embedding_backend=request.param)
        embedder = LocalEmbedder(settings)
        await embedder.start()
        try:
            return await embedder.embed_documents(TEXTS)
        finally:
            await embedder.aclose()

    return np.asarray(asyncio.run(run()))


def check_vectors(vectors: np.ndarray) -> None:
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    # the two cat sentences are closer to each other than to anything else
    assert sims[0, 1] > sims[0, 2] + 0.3
    assert sims[0, 1] > sims[0, 3] + 0.3


def test_torch_vectors_are_normalised_and_semantic(torch_vectors: np.ndarray) -> None:
    check_vectors(torch_vectors)


def test_onnx_vectors_are_normalised_semantic_and_agree_with_torch(
    onnx_vectors: np.ndarray, torch_vectors: np.ndarray
) -> None:
    check_vectors(onnx_vectors)
    agreement = (onnx_vectors * torch_vectors).sum(axis=1)
    assert agreement.min() > 0.98


async def test_export_is_cached_and_reused(onnx_vectors: np.ndarray, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, local_embedding_backend="onnx-int8")
    from pdfqa.embeddings import bundled_model_dir

    model = onnx_cache_dir(settings, "onnx-int8", bundled_model_dir()) / "model.onnx"
    assert model.is_file()
    before = model.stat().st_mtime_ns
    embedder = LocalEmbedder(settings)
    await embedder.start()
    await embedder.start()  # idempotent
    vector = await embedder.embed_query(TEXTS[0])
    await embedder.aclose()
    assert model.stat().st_mtime_ns == before
    assert [p.name for p in model.parent.parent.iterdir() if p.name.startswith(".")] == []
    assert len(vector) == 384


async def test_local_embedder_shape(data_dir: Path) -> None:
    async with httpx.AsyncClient() as client:
        embedder = create_embedder(Settings(data_dir=data_dir), client)
    assert isinstance(embedder, LocalEmbedder)
    assert (embedder.name, embedder.dimensions, embedder.max_tokens) == (
        "all-minilm-l6-v2",
        384,
        256,
    )
    assert embedder.max_concurrency == 1


# --------------------------------------------------------------------------- OpenAI (fake)

Handler = Callable[[httpx.Request], httpx.Response]


def embedding_response(request: httpx.Request, dims: int = 3) -> httpx.Response:
    body = json.loads(request.content)
    data = [
        {"object": "embedding", "index": i, "embedding": [float(i + 1)] + [0.0] * (dims - 1)}
        for i in range(len(body["input"]))
    ]
    # out of order on purpose: the embedder must sort by index
    return httpx.Response(
        200,
        json={
            "object": "list",
            "data": data[::-1],
            "model": body["model"],
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        },
    )


def remote(client: httpx.AsyncClient, dims: int | None = None) -> Embedder:
    return create_embedder(openai_settings(dims), client)


def openai_settings(dims: int | None = None) -> Settings:
    return Settings(
        embedding_provider="openai",
        embedding_model="nomic-embed-text",
        embedding_dimensions=dims,
        openai_base_url="http://llm.invalid/v1",
        openai_api_key="sk-test",
        embed_concurrency=3,
    )


@pytest.fixture
async def client_and_log() -> AsyncIterator[
    tuple[httpx.AsyncClient, list[httpx.Request], list[Handler]]
]:
    seen: list[httpx.Request] = []
    handlers: list[Handler] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        handler = handlers.pop(0) if handlers else embedding_response
        return handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        yield client, seen, handlers


async def test_openai_request_body_and_normalised_vectors(
    client_and_log: tuple[httpx.AsyncClient, list[httpx.Request], list[Handler]],
) -> None:
    client, seen, _ = client_and_log
    embedder = remote(client, dims=3)
    assert isinstance(embedder, OpenAIEmbedder)
    await embedder.start()
    assert seen == []  # dimensions configured: no probe
    vectors = await embedder.embed_documents(["alpha", "beta"])
    request = seen[0]
    assert request.url == "http://llm.invalid/v1/embeddings"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert json.loads(request.content) == {
        "model": "nomic-embed-text",
        "input": ["alpha", "beta"],
        "encoding_format": "float",
    }
    assert vectors == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]  # index order, unit length
    assert (embedder.name, embedder.max_concurrency, embedder.max_tokens) == (
        "nomic-embed-text",
        3,
        8191,
    )
    await embedder.aclose()
    assert not client.is_closed


async def test_openai_dimensions_probed(
    client_and_log: tuple[httpx.AsyncClient, list[httpx.Request], list[Handler]],
) -> None:
    client, seen, handlers = client_and_log
    handlers.append(lambda r: embedding_response(r, dims=768))
    embedder = remote(client)
    await embedder.start()
    assert embedder.dimensions == 768
    assert len(seen) == 1
    await embedder.start()  # idempotent
    assert len(seen) == 1


async def test_openai_429_is_retried_by_the_sdk(
    client_and_log: tuple[httpx.AsyncClient, list[httpx.Request], list[Handler]],
) -> None:
    client, seen, handlers = client_and_log
    handlers.append(
        lambda _: httpx.Response(429, headers={"Retry-After": "0", "retry-after-ms": "1"})
    )
    embedder = remote(client, dims=3)
    vector = await embedder.embed_query("hello")
    assert vector == [1.0, 0.0, 0.0]
    assert len(seen) == 2


async def test_openai_persistent_500_becomes_upstream_unavailable(
    client_and_log: tuple[httpx.AsyncClient, list[httpx.Request], list[Handler]],
) -> None:
    client, seen, handlers = client_and_log
    handlers.extend([lambda _: httpx.Response(500, headers={"retry-after-ms": "1"}, json={})] * 10)
    embedder = remote(client, dims=3)
    with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
        await embedder.embed_documents(["x"])
    assert len(seen) == 5  # first try + the SDK's 4 retries


async def test_openai_unreachable_becomes_upstream_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        embedder = OpenAIEmbedder(openai_settings(dims=3), client, max_retries=0)
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            await embedder.embed_query("x")

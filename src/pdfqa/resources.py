"""Opens and closes every pool and client; the API lifespan and the worker use the same code."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
from arq.connections import ArqRedis, RedisSettings, create_pool

from pdfqa.chunking import TokenCounter, word_piece_counter
from pdfqa.embeddings import Embedder, bundled_model_dir, create_embedder
from pdfqa.jobs.serde import deserialize, serialize
from pdfqa.llm import ChatModel, create_chat_model
from pdfqa.settings import Settings
from pdfqa.store import db
from pdfqa.store.files import FileStore, LocalFileStore
from pdfqa.store.vectors import VectorStore, open_vector_store

__all__ = ["Resources", "open_resources"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """Everything a request handler or a job needs, opened once per process."""

    settings: Settings
    db: asyncpg.Pool
    redis: ArqRedis
    http: httpx.AsyncClient
    files: FileStore
    vectors: VectorStore
    embedder: Embedder
    count_tokens: TokenCounter
    chat: ChatModel | None
    """The language model that writes answers; None: answers are extracted passages."""


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    migrate: bool = True,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Resources]:
    """Open the pools and clients (and apply migrations); close them in reverse order on exit.

    ``http_transport`` replaces the network under the shared HTTP client (the model endpoints):
    tests pass an ``httpx.MockTransport`` there, the one seam for faking a paid API.
    """
    async with contextlib.AsyncExitStack() as stack:
        if migrate:
            await db.ensure_database(settings.database_url)
        pool = await db.create_pool(settings.database_url)
        stack.push_async_callback(pool.close)
        if migrate:
            async with pool.acquire() as conn:
                await db.migrate(conn)
        redis = await create_pool(
            RedisSettings.from_dsn(settings.redis_url),
            job_serializer=serialize,
            job_deserializer=deserialize,
            default_queue_name=settings.queue_name,
        )
        stack.push_async_callback(redis.aclose)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=10.0), transport=http_transport
        )
        stack.push_async_callback(http.aclose)
        embedder = create_embedder(settings, http)
        stack.push_async_callback(embedder.aclose)
        await embedder.start()
        # After the embedder: its name and (probed) size fix the store's collection.
        vectors = open_vector_store(settings, embedder.name, embedder.dimensions)
        stack.push_async_callback(vectors.aclose)
        yield Resources(
            settings=settings,
            db=pool,
            redis=redis,
            http=http,
            files=LocalFileStore(settings.data_dir / "files"),
            vectors=vectors,
            embedder=embedder,
            count_tokens=word_piece_counter(bundled_model_dir() / "tokenizer.json"),
            chat=create_chat_model(settings, http),
        )

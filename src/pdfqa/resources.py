"""Opens and closes every pool and client; the API lifespan and the worker use the same code."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import redis.exceptions
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from pdfqa.embeddings import Embedder, bundled_model_dir, create_embedder
from pdfqa.llm import ChatModel, create_chat_model
from pdfqa.progress import Hub
from pdfqa.queue import Queues, deserialize, serialize
from pdfqa.rerank import Reranker, create_reranker
from pdfqa.settings import Settings
from pdfqa.store import db
from pdfqa.store.deployment import deployment_id
from pdfqa.store.files import FileStore, LocalFileStore
from pdfqa.store.vectors import VectorStore, open_vector_store

__all__ = ["Resources", "open_resources", "redis_settings"]

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
    tokenizer: Path
    """The ``tokenizer.json`` chunks are measured with (the extraction child loads it)."""
    chat: ChatModel | None
    """The language model that writes answers; None: answers are extracted passages."""
    queues: Queues
    """This deployment's queue names and job ids."""
    hub: Hub
    """Progress events from Redis, fanned out to this process's open streams."""
    reranker: Reranker | None = None
    """The cross-encoder that re-orders retrieval's candidates; None: the fused order stands."""
    stopping: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set when the process begins to shut down: jobs stop at a page boundary, streams end."""


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's Redis settings for ``redis_url``, with redis-py's retry and backoff turned on:
    a blip of a second or two is absorbed; a longer outage surfaces as a ConnectionError."""
    base = RedisSettings.from_dsn(settings.redis_url)
    return dataclasses.replace(
        base,
        conn_timeout=2,
        conn_retries=3,
        retry_on_timeout=True,
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
    )


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
        pool = await db.create_pool(
            settings.database_url,
            # Half the pool opened up front: a burst of requests then finds connections ready
            # instead of queueing behind connection set-ups (and the acquire timeout).
            min_size=max(1, settings.db_pool_size // 2),
            max_size=settings.db_pool_size,
            acquire_timeout_s=settings.db_acquire_timeout_s,
            command_timeout_s=settings.db_command_timeout_s,
            statement_timeout_s=settings.db_statement_timeout_s,
        )
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            if migrate:
                await db.migrate(conn)
            deployment = await deployment_id(conn)
        queues = Queues(prefix=settings.queue_name, deployment=deployment)
        redis = await create_pool(
            redis_settings(settings),
            job_serializer=serialize,
            job_deserializer=deserialize,
            default_queue_name=queues.name("ingest"),
        )
        stack.push_async_callback(redis.aclose)
        hub = Hub(redis, max_per_user=settings.max_streams_per_user)
        stack.push_async_callback(hub.close)
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
        files: FileStore
        if settings.file_store == "s3":
            from pdfqa.store.s3files import open_s3_store

            files = await stack.enter_async_context(open_s3_store(settings))
        else:
            files = LocalFileStore(settings.data_dir / "files")
        yield Resources(
            settings=settings,
            db=pool,
            redis=redis,
            http=http,
            files=files,
            vectors=vectors,
            embedder=embedder,
            tokenizer=bundled_model_dir() / "tokenizer.json",
            chat=create_chat_model(settings, http),
            reranker=create_reranker(settings, http),
            queues=queues,
            hub=hub,
        )

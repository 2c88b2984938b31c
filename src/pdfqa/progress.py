"""Upload progress events, published by the worker through Redis pub/sub.

The API relays them to browsers as server-sent events; nothing polls the database for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from uuid import UUID

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from pdfqa.store.uploads import Upload

__all__ = [
    "Failed",
    "Progress",
    "Ready",
    "UploadEvent",
    "channel",
    "event_for",
    "listen",
    "publish",
]


class Progress(msgspec.Struct, tag="progress", frozen=True):
    pages_done: int
    pages_total: int
    chunks: int = 0


class Ready(msgspec.Struct, tag="ready", frozen=True):
    pages_total: int
    chunks: int
    pages_skipped: int = 0


class Failed(msgspec.Struct, tag="failed", frozen=True):
    reason: str


UploadEvent = Progress | Ready | Failed

_decoder: msgspec.json.Decoder[UploadEvent] = msgspec.json.Decoder(UploadEvent)


def channel(upload_id: UUID) -> str:
    return f"pdfqa:upload:{upload_id}:events"


def event_for(upload: Upload) -> UploadEvent:
    """The event that describes an upload's current state (for clients that connect late)."""
    if upload.status == "ready":
        return Ready(
            pages_total=upload.pages_total or 0,
            chunks=upload.chunks,
            pages_skipped=upload.pages_skipped,
        )
    if upload.status == "failed":
        return Failed(reason=upload.error or "Ingestion failed.")
    return Progress(
        pages_done=upload.pages_done, pages_total=upload.pages_total or 0, chunks=upload.chunks
    )


async def publish(redis: Redis, upload_id: UUID, event: UploadEvent) -> None:
    await redis.publish(channel(upload_id), msgspec.json.encode(event))


@contextlib.asynccontextmanager
async def listen(redis: Redis, upload_id: UUID) -> AsyncIterator[AsyncIterator[UploadEvent]]:
    """Subscribe to an upload's events; the subscription is live before this yields.

    Read the upload's current state *after* entering, so no event can fall between the read and
    the subscription.
    """
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel(upload_id))
        yield _events(pubsub)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _events(pubsub: PubSub) -> AsyncIterator[UploadEvent]:
    async for message in pubsub.listen():
        if message.get("type") == "message":
            yield _decoder.decode(message["data"])

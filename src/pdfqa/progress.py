"""Upload progress events, published by the worker through Redis pub/sub.

The API relays them to browsers as server-sent events through one :class:`Hub` per process
(one Redis connection, fanned out in memory); nothing polls the database for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from pdfqa.errors import Busy
from pdfqa.store.uploads import Upload

__all__ = [
    "RESYNC",
    "Added",
    "Closing",
    "Deleted",
    "Failed",
    "Hub",
    "HubItem",
    "Progress",
    "Ready",
    "Tagged",
    "TooManyStreams",
    "UploadEvent",
    "channel",
    "event_for",
    "publish",
    "publish_added",
    "user_channel",
]

log = logging.getLogger(__name__)


class Progress(msgspec.Struct, tag="progress", frozen=True):
    pages_done: int
    pages_total: int
    chunks: int = 0


class Ready(msgspec.Struct, tag="ready", frozen=True):
    pages_total: int
    chunks: int
    pages_skipped: int = 0
    pages_ocr: int = 0


class Failed(msgspec.Struct, tag="failed", frozen=True):
    reason: str


class Deleted(msgspec.Struct, tag="deleted", frozen=True):
    """The upload was deleted: the stream ends."""


class Closing(msgspec.Struct, tag="closing", frozen=True):
    """The server is shutting down: the stream ends; reconnect to another server or later."""

    retry_ms: int = 2000


class Added(msgspec.Struct, tag="added", frozen=True):
    """A new upload of the user's (on the user's channel): its own events follow on its channel."""

    upload_id: UUID


UploadEvent = Progress | Ready | Failed | Deleted

RESYNC = object()
"""Sent by the hub after a reconnect: events may have been missed, re-read the state."""
HubItem = UploadEvent | Closing | object
SUBSCRIBE_TIMEOUT_S = 15.0

_decoder: msgspec.json.Decoder[UploadEvent | Added] = msgspec.json.Decoder(UploadEvent | Added)


def channel(upload_id: UUID) -> str:
    return f"pdfqa:upload:{upload_id}:events"


def user_channel(user_id: UUID) -> str:
    """Where a user's new uploads are announced (:class:`Added`)."""
    return f"pdfqa:user:{user_id}:uploads"


class Tagged(msgspec.Struct, frozen=True):
    """An event of one upload on a multiplexed stream: sent as the event's own name, with
    ``upload_id`` added to its data."""

    upload_id: UUID
    event: UploadEvent

    def __sse__(self) -> tuple[str, dict[str, Any]]:
        body = msgspec.to_builtins(self.event)
        assert isinstance(body, dict)
        body.pop("type", None)
        body["upload_id"] = str(self.upload_id)
        return str(type(self.event).__struct_config__.tag), body


def event_for(upload: Upload) -> UploadEvent:
    """The event that describes an upload's current state (for clients that connect late)."""
    if upload.status == "ready":
        return Ready(
            pages_total=upload.pages_total or 0,
            chunks=upload.chunks,
            pages_skipped=upload.pages_skipped,
            pages_ocr=upload.pages_ocr,
        )
    if upload.status == "failed":
        return Failed(reason=upload.error or "Ingestion failed.")
    return Progress(
        pages_done=upload.pages_done, pages_total=upload.pages_total or 0, chunks=upload.chunks
    )


async def publish(redis: Redis, upload_id: UUID, event: UploadEvent) -> None:
    await redis.publish(channel(upload_id), msgspec.json.encode(event))


async def publish_added(redis: Redis, user_id: UUID, upload_id: UUID) -> None:
    await redis.publish(user_channel(user_id), msgspec.json.encode(Added(upload_id=upload_id)))


class TooManyStreams(Busy):
    """The caller already has as many open progress streams as allowed."""


class _Listener:
    """One open stream: a queue, and whether its items are tagged with their channel."""

    __slots__ = ("queue", "tagged")

    def __init__(self, tagged: bool) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.tagged = tagged

    def deliver(self, name: str | None, item: HubItem) -> None:
        self.queue.put_nowait((name, item) if self.tagged else item)


class Many:
    """A multiplexed stream's subscriptions (see :meth:`Hub.listen_many`).

    ``queue`` yields ``(channel name or None, item)``; ``None`` goes with :data:`RESYNC` and
    :class:`Closing`, which concern every channel.
    """

    def __init__(self, hub: Hub, listener: _Listener) -> None:
        self._hub = hub
        self._listener = listener
        self.channels: set[str] = set()

    @property
    def queue(self) -> asyncio.Queue[tuple[str | None, HubItem]]:
        return self._listener.queue

    async def add(self, name: str) -> None:
        """Subscribe one more channel (live before this returns)."""
        if name in self.channels:
            return
        self.channels.add(name)
        await self._hub._add(name, self._listener)

    async def drop(self, name: str) -> None:
        if name in self.channels:
            self.channels.discard(name)
            await self._hub._remove(name, self._listener)


class Hub:
    """One Redis pub/sub connection per process, fanned out in memory to every open stream.

    A stream subscribes through :meth:`listen` (one upload) or :meth:`listen_many` (channels
    added as it goes); the first listener of a channel subscribes it, the last one unsubscribes
    it. When the connection drops, the hub reconnects with backoff, subscribes again and sends
    every listener :data:`RESYNC` (events may have been missed: re-read the state).
    :meth:`close` (shutdown) ends every stream with :class:`Closing`.
    """

    def __init__(self, redis: Redis, *, max_per_user: int) -> None:
        self._redis = redis
        self._max_per_user = max_per_user
        self._listeners: dict[str, set[_Listener]] = {}
        self._per_user: dict[UUID, int] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = asyncio.Event()

    def _all_listeners(self) -> set[_Listener]:
        return {listener for group in self._listeners.values() for listener in group}

    async def close(self) -> None:
        """End every stream with :class:`Closing` and stop reading."""
        self._closed = True
        for listener in self._all_listeners():
            listener.deliver(None, Closing())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_pubsub()

    def start(self) -> None:
        """Connect now rather than on the first stream (the API does at start)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="progress-hub")

    @property
    def open_streams(self) -> int:
        return sum(self._per_user.values())

    @property
    def channels(self) -> int:
        """Channels subscribed now (for tests and metrics)."""
        return len(self._listeners)

    def check_capacity(self, user_id: UUID) -> None:
        """Raise :class:`TooManyStreams` if the user may not open another stream now."""
        if self._per_user.get(user_id, 0) >= self._max_per_user:
            raise TooManyStreams(
                f"You have {self._max_per_user} progress streams open already; close one first."
            )

    @contextlib.asynccontextmanager
    async def _stream(self, user_id: UUID, tagged: bool) -> AsyncIterator[_Listener]:
        self.check_capacity(user_id)
        self.start()
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        listener = _Listener(tagged)
        try:
            if self._closed:
                listener.deliver(None, Closing())
            yield listener
        finally:
            self._per_user[user_id] -= 1
            if not self._per_user[user_id]:
                del self._per_user[user_id]
            for name in [n for n, group in self._listeners.items() if listener in group]:
                await self._remove(name, listener)

    @contextlib.asynccontextmanager
    async def listen(self, upload_id: UUID, user_id: UUID) -> AsyncIterator[asyncio.Queue[HubItem]]:
        """A queue of an upload's events, live (subscribed) before this yields.

        Read the upload's current state *after* entering, so nothing falls in between. Raises
        :class:`TooManyStreams` past the per-user cap.
        """
        async with self._stream(user_id, tagged=False) as listener:
            if not self._closed:
                await self._add(channel(upload_id), listener)
            yield listener.queue

    @contextlib.asynccontextmanager
    async def listen_many(self, user_id: UUID) -> AsyncIterator[Many]:
        """One stream over several channels, added with :meth:`Many.add` as it goes; it counts
        as one stream against the per-user cap."""
        async with self._stream(user_id, tagged=True) as listener:
            yield Many(self, listener)

    async def _add(self, name: str, listener: _Listener) -> None:
        self._listeners.setdefault(name, set()).add(listener)
        if not self._closed:
            await self._subscribe(name)

    async def _remove(self, name: str, listener: _Listener) -> None:
        group = self._listeners.get(name)
        if group is None:
            return
        group.discard(listener)
        if not group:
            del self._listeners[name]
            self._confirmed.pop(name, None)
            if self._pubsub is not None and not self._closed:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(name)

    async def _subscribe(self, name: str) -> None:
        confirmed = self._confirmed.get(name)
        if confirmed is None:
            await asyncio.wait_for(self._connected.wait(), SUBSCRIBE_TIMEOUT_S)
            assert self._pubsub is not None
            confirmed = asyncio.get_running_loop().create_future()
            self._confirmed[name] = confirmed
            await self._pubsub.subscribe(name)
        await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT_S)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._connected.clear()
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _run(self) -> None:
        delay = 0.5
        first = True
        while not self._closed:
            try:
                pubsub = self._redis.pubsub()
                self._pubsub = pubsub
                # A channel of its own keeps the connection open with no stream listening.
                await pubsub.subscribe(f"pdfqa:hub:{uuid4()}", *self._listeners)
                self._connected.set()
                if not first:
                    log.info("progress hub: reconnected to Redis")
                    for listener in self._all_listeners():
                        listener.deliver(None, RESYNC)
                first = False
                delay = 0.5
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "progress hub: Redis connection lost (%r); retrying in %.1f s", exc, delay
                )
                await self._drop_pubsub()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _dispatch(self, message: dict[str, Any]) -> None:
        name = message.get("channel")
        if isinstance(name, bytes):
            name = name.decode()
        kind = message.get("type")
        if kind == "subscribe":
            future = self._confirmed.get(str(name))
            if future is not None and not future.done():
                future.set_result(None)
            return
        if kind != "message":
            return
        try:
            event = _decoder.decode(message["data"])
        except msgspec.DecodeError:
            log.warning("progress hub: an undecodable event on %s", name)
            return
        for listener in self._listeners.get(str(name), ()):
            listener.deliver(str(name), event)

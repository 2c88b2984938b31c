"""Server-sent events: typed events in, SSE messages out, with heartbeats on quiet streams and a
final ``closing`` event when the server shuts down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

from pdfqa.progress import Closing

__all__ = ["HEARTBEAT_S", "event_stream", "with_heartbeat"]

HEARTBEAT_S = 15.0

_encoder = msgspec.json.Encoder()


def message(event: msgspec.Struct) -> ServerSentEventMessage:
    """An SSE message whose ``event:`` is the Struct's tag and ``data:`` its JSON (tag omitted);
    a Struct with an ``__sse__()`` method names its event and data itself."""
    custom = getattr(event, "__sse__", None)
    if custom is not None:
        name, data = custom()
        return ServerSentEventMessage(event=name, data=_encoder.encode(data).decode())
    tag = type(event).__struct_config__.tag
    body = msgspec.to_builtins(event)
    retry = None
    if isinstance(body, dict):
        body.pop("type", None)
        retry = body.get("retry_ms") if tag == "closing" else None
    return ServerSentEventMessage(event=str(tag), data=_encoder.encode(body).decode(), retry=retry)


class _Ending:
    """When a stream must end for a shutdown: ``grace_s`` after ``stop`` is set."""

    def __init__(self, stop: asyncio.Event | None, grace_s: float) -> None:
        self._stop = stop
        self._grace_s = grace_s
        self._stopping: asyncio.Future[Any] | None = None
        self._deadline: float | None = None
        self._loop = asyncio.get_running_loop()

    def over(self) -> bool:
        return self._deadline is not None and self._loop.time() >= self._deadline

    async def wait(self, task: asyncio.Future[Any], interval: float) -> bool:
        """True once ``task`` is done; False after ``interval`` idle or at the deadline."""
        while True:
            waits: set[asyncio.Future[Any]] = {task}
            timeout = interval
            if self._stop is not None and self._deadline is None:
                if self._stop.is_set():
                    self._deadline = self._loop.time() + self._grace_s
                else:
                    if self._stopping is None:
                        self._stopping = asyncio.ensure_future(self._stop.wait())
                    waits.add(self._stopping)
            if self._deadline is not None:
                timeout = min(interval, max(0.0, self._deadline - self._loop.time()))
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
            if task in done:
                return True
            if self._stopping is None or self._stopping not in done:
                return False
            # The shutdown began just now: wait again, now with its deadline.

    async def close(self) -> None:
        if self._stopping is not None:
            self._stopping.cancel()
            with contextlib.suppress(BaseException):
                await self._stopping


async def with_heartbeat(
    events: AsyncIterator[msgspec.Struct],
    interval: float = HEARTBEAT_S,
    *,
    stop: asyncio.Event | None = None,
    grace_s: float = 0.0,
) -> AsyncIterator[ServerSentEventMessage]:
    """Relay ``events`` as SSE messages; send a comment line whenever ``interval`` passes idle.

    Once ``stop`` is set (the server is shutting down), the stream may go on for ``grace_s``
    (an answer being written gets the chance to finish); then the producer is cancelled and the
    stream ends with a :class:`~pdfqa.progress.Closing` event, so that no client sees a stream
    cut off without a final event.
    """
    ending = _Ending(stop, grace_s)
    pending: asyncio.Task[msgspec.Struct] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            if not await ending.wait(pending, interval):
                if ending.over():
                    yield message(Closing())
                    return
                # A comment line only: no `data:` line, which a client would hand to its parser.
                yield ServerSentEventMessage(comment="keep-alive", data=None)
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield message(event)
            if isinstance(event, Closing):
                return
    finally:
        await ending.close()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


def event_stream(
    events: AsyncIterator[msgspec.Struct],
    *,
    heartbeat_s: float = HEARTBEAT_S,
    stop: asyncio.Event | None = None,
    grace_s: float = 0.0,
) -> ServerSentEvent:
    """The SSE response for a stream of tagged Structs (see :func:`with_heartbeat`)."""
    return ServerSentEvent(
        with_heartbeat(events, heartbeat_s, stop=stop, grace_s=grace_s),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

"""Server-sent events: typed events in, SSE messages out, with heartbeats on quiet streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

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


async def with_heartbeat(
    events: AsyncIterator[msgspec.Struct], interval: float = HEARTBEAT_S
) -> AsyncIterator[ServerSentEventMessage]:
    """Relay ``events`` as SSE messages; send a comment line whenever ``interval`` passes idle."""
    pending: asyncio.Task[msgspec.Struct] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
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
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


def event_stream(events: AsyncIterator[msgspec.Struct]) -> ServerSentEvent:
    """The SSE response for a stream of tagged Structs."""
    return ServerSentEvent(
        with_heartbeat(events),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

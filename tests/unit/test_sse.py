"""The SSE relay: typed events become messages, quiet streams get heartbeats, and a client that
goes away stops the producer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from pdfqa.answer import Token
from pdfqa.api.sse import message, with_heartbeat


class Tick(msgspec.Struct, tag="tick", frozen=True):
    n: int


def test_a_message_names_the_event_by_its_tag_and_carries_the_fields() -> None:
    encoded = message(Tick(n=3)).encode().decode()
    assert "event: tick" in encoded
    assert 'data: {"n":3}' in encoded
    assert "type" not in encoded


async def test_quiet_streams_get_comment_heartbeats_and_events_still_arrive() -> None:
    release = asyncio.Event()

    async def slow() -> AsyncIterator[msgspec.Struct]:
        await release.wait()
        yield Token(text="late")

    stream = with_heartbeat(slow(), interval=0.01)
    first = await anext(stream)
    second = await anext(stream)
    assert first.comment == "keep-alive"
    assert second.comment == "keep-alive"
    # On the wire a keep-alive is one comment line and nothing else: no empty `data:` line,
    # which a browser parser would try to read as JSON.
    assert first.encode() == b": keep-alive\r\n\r\n"
    release.set()
    # Heartbeats may still be pending; the event must come through after them.
    while (item := await anext(stream)).comment is not None:
        pass
    assert item.event == "token"
    await stream.aclose()


async def test_closing_the_stream_stops_the_producer() -> None:
    produced: list[int] = []
    finished = asyncio.Event()

    async def endless() -> AsyncIterator[msgspec.Struct]:
        try:
            n = 0
            while True:
                n += 1
                produced.append(n)
                yield Tick(n=n)
                await asyncio.sleep(0)
        finally:
            finished.set()

    stream = with_heartbeat(endless(), interval=5)
    for _ in range(3):
        await anext(stream)
    await stream.aclose()  # what the server does when the client disconnects
    # The producer was closed (its finally ran), so it cannot produce anything more.
    await asyncio.wait_for(finished.wait(), 1)
    assert len(produced) <= 4


async def test_on_shutdown_a_stream_that_does_not_finish_in_its_grace_ends_with_closing() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck() -> AsyncIterator[msgspec.Struct]:
        yield Token(text="first")
        stop.set()  # the server begins to shut down while the answer is being written
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        yield Token(text="never")

    stream = with_heartbeat(stuck(), interval=5, stop=stop, grace_s=0.05)
    items = [item async for item in stream]
    assert [i.event for i in items] == ["token", "closing"]
    assert items[-1].retry == 2000  # the browser's EventSource waits this long to reconnect
    assert cancelled.is_set()  # the producer was stopped, not left running


async def test_on_shutdown_a_stream_that_finishes_in_its_grace_ends_normally() -> None:
    stop = asyncio.Event()
    go_on = asyncio.Event()

    async def answer() -> AsyncIterator[msgspec.Struct]:
        yield Token(text="a")
        stop.set()
        await go_on.wait()  # released by the consumer below, well within the grace
        yield Token(text="b")

    stream = with_heartbeat(answer(), interval=5, stop=stop, grace_s=60)
    first = await anext(stream)
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    go_on.set()
    second = await pending
    rest = [item async for item in stream]
    assert [first.event, second.event] == ["token", "token"]
    assert rest == []


async def test_a_stream_opened_after_the_shutdown_began_closes_at_once() -> None:
    stop = asyncio.Event()
    stop.set()

    async def never() -> AsyncIterator[msgspec.Struct]:
        await asyncio.Event().wait()
        yield Token(text="never")

    items = [item async for item in with_heartbeat(never(), interval=5, stop=stop)]
    assert [i.event for i in items] == ["closing"]

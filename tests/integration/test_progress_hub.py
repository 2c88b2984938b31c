"""The progress hub against a Redis of the test's own that is stopped and started again.

The machine's Redis is never stopped: ``own_redis`` runs ``redis-server`` on a free port.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from redis.asyncio import Redis

from pdfqa import progress
from pdfqa.progress import RESYNC, Hub

WITHIN_S = 60.0
"""A bound for the reconnect (backoff 0.5 s doubling); the test waits on events, not on time."""


async def publish(url: str, upload_id: uuid.UUID, event: progress.UploadEvent) -> None:
    """Publish from a client of its own, as a worker would."""
    client = Redis.from_url(url)
    try:
        await progress.publish(client, upload_id, event)
    finally:
        await client.aclose()


async def test_a_stream_keeps_delivering_after_redis_goes_away_and_comes_back(
    own_redis: tuple[int, Any],
) -> None:
    port, control = own_redis
    url = f"redis://127.0.0.1:{port}/0"
    redis = Redis.from_url(url)
    hub = Hub(redis, max_per_user=4)
    upload_id, user_id = uuid.uuid4(), uuid.uuid4()
    try:
        async with hub.listen(upload_id, user_id) as events:
            before = progress.Progress(pages_done=1, pages_total=3)
            await publish(url, upload_id, before)
            assert await asyncio.wait_for(events.get(), WITHIN_S) == before

            await asyncio.to_thread(control, "stop")
            await asyncio.to_thread(control, "start")  # empty: it lost every subscription

            # The hub reconnected and subscribed again, then told the stream it may have
            # missed events (the API re-reads the upload's state on this).
            assert await asyncio.wait_for(events.get(), WITHIN_S) is RESYNC
            after = progress.Ready(pages_total=3, chunks=7)
            await publish(url, upload_id, after)
            assert await asyncio.wait_for(events.get(), WITHIN_S) == after
            assert hub.open_streams == 1
    finally:
        await hub.close()
        await redis.aclose()
    assert hub.open_streams == 0

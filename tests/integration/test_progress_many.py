"""One multiplexed progress stream for all of a user's unfinished uploads (``/uploads/events``),
through the app: real PostgreSQL, Redis pub/sub, the arq worker and the progress hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.progress import channel, user_channel
from pdfqa.resources import Resources
from pdfqa.uploads import accept_upload
from tests.integration.conftest import login, on_app, run_jobs, start_on_app, upload

Client = AsyncTestClient[Litestar]


async def _subscribed(resources: Resources, channels: list[str]) -> None:
    """Until every channel has a subscriber (the condition lives in Redis: no event to await)."""
    async with asyncio.timeout(30):
        while True:
            counts = {
                (k.decode() if isinstance(k, bytes) else k): n
                for k, n in await resources.redis.pubsub_numsub(*channels)
            }
            if all(counts.get(c) for c in channels):
                return
            await asyncio.sleep(0.01)


async def _chunks(data: bytes) -> AsyncIterator[memoryview]:
    yield memoryview(data)


async def _add_and_run(
    resources: Resources, channels: list[str], user_id: UUID, others: list[UUID], data: bytes
) -> tuple[str, int]:
    """Once the stream is live: upload one more file for the user (and one for each of
    ``others``), wait until the stream has followed the user's, then run every job."""
    await _subscribed(resources, channels)
    for other in others:
        await accept_upload(resources, other, "theirs.pdf", _chunks(data))
    late = await accept_upload(resources, user_id, "late.pdf", _chunks(data))
    await _subscribed(resources, [channel(late.id)])  # the stream took it on
    return str(late.id), await run_jobs(resources)


async def _read_all(client: Client, headers: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The multiplexed stream, to its end (the test client hands over a response once it is
    complete; the stream ends when none of the user's uploads is unfinished)."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async with client.stream("GET", "/api/v1/uploads/events", headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
    return events


async def test_one_stream_carries_every_unfinished_upload_and_new_ones(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    data = (corpus / "table.pdf").read_bytes()
    first = [
        (await upload(client, headers, corpus / "table.pdf", name=f"table-{i}.pdf"))["id"]
        for i in range(6)
    ]
    broken = (await upload(client, headers, corpus / "bad" / "password.pdf"))["id"]
    user_id = UUID(
        (await client.get(f"/api/v1/uploads/{broken}", headers=headers)).json()["user_id"]
    )
    channels = [user_channel(user_id), *(channel(UUID(i)) for i in [*first, broken])]
    worker = start_on_app(client, _add_and_run, resources, channels, user_id, [], data)
    events = await _read_all(client, headers)
    later, jobs = worker.result(timeout=120)
    assert jobs == len(first) + 2

    ended = {d["upload_id"]: n for n, d in events if n in ("ready", "failed", "deleted")}
    assert ended == {**dict.fromkeys(first, "ready"), broken: "failed", later: "ready"}
    for upload_id in [*first, later]:
        mine = [(n, d) for n, d in events if d["upload_id"] == upload_id]
        assert mine[0][0] == "progress"  # its state when it joined the stream
        assert mine[-1][0] == "ready"
        assert mine[-1][1]["pages_total"] == 1
        done = [d["pages_done"] for n, d in mine if n == "progress"]
        assert done == sorted(done)
    reason = next(d["reason"] for n, d in events if n == "failed")
    assert "password" in reason
    # One stream for eight uploads; once it ended nothing is left subscribed or counted.
    assert on_app(client, _hub_state, resources) == (0, 0)


async def _hub_state(resources: Resources) -> tuple[int, int]:
    async with asyncio.timeout(10):
        while resources.hub.open_streams or resources.hub.channels:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return resources.hub.open_streams, resources.hub.channels


async def _count_streams_while_subscribed(
    resources: Resources, channels: list[str]
) -> tuple[int, int]:
    await _subscribed(resources, channels)
    streams, subscribed = resources.hub.open_streams, resources.hub.channels
    await run_jobs(resources)
    return streams, subscribed


async def test_six_unfinished_uploads_use_one_stream_and_its_channels(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    ids = [
        (await upload(client, headers, corpus / "table.pdf", name=f"t{i}.pdf"))["id"]
        for i in range(6)
    ]
    user_id = UUID(
        (await client.get(f"/api/v1/uploads/{ids[0]}", headers=headers)).json()["user_id"]
    )
    channels = [user_channel(user_id), *(channel(UUID(i)) for i in ids)]
    counted = start_on_app(client, _count_streams_while_subscribed, resources, channels)
    await _read_all(client, headers)
    # Before (one EventSource per upload): 6 streams. Now: 1 stream, 7 channels on one Redis
    # connection (the user's announcements and each upload's events).
    assert counted.result(timeout=120) == (1, 7)


async def test_the_stream_is_the_users_own_and_ends_at_once_when_all_is_finished(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    other = await login(client)
    other_id = UUID(
        (
            await client.get(
                f"/api/v1/uploads/{(await upload(client, other, corpus / 'table.pdf'))['id']}",
                headers=other,
            )
        ).json()["user_id"]
    )
    done = (await upload(client, headers, corpus / "table.pdf"))["id"]
    user_id = UUID((await client.get(f"/api/v1/uploads/{done}", headers=headers)).json()["user_id"])
    assert on_app(client, run_jobs, resources) == 2
    # Nothing unfinished: the stream ends at once, empty.
    assert await _read_all(client, headers) == []

    pending = (await upload(client, headers, corpus / "table.pdf", name="pending.pdf"))["id"]
    channels = [user_channel(user_id), channel(UUID(pending))]
    data = (corpus / "table.pdf").read_bytes()
    worker = start_on_app(client, _add_and_run, resources, channels, user_id, [other_id], data)
    events = await _read_all(client, headers)
    later, _ = worker.result(timeout=120)
    seen = {d["upload_id"] for _, d in events}
    assert seen == {pending, later}  # not the finished one, nor the other user's new upload


async def test_the_stream_needs_a_session(client: Client) -> None:
    r = await client.get("/api/v1/uploads/events")
    assert r.status_code == 401

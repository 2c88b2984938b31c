"""``/api/v1/admin``: the jobs dashboard (jobs, workers, retry, abort, a live SSE feed).

Every handler answers 403 to a user who is not an admin (``accounts.require_admin``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import PathParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.status_codes import HTTP_202_ACCEPTED

from pdfqa import accounts, dashboard, workers
from pdfqa.api.deps import CurrentUser, Deps
from pdfqa.api.sse import event_stream
from pdfqa.dashboard import JobsOverview
from pdfqa.resources import Resources
from pdfqa.workers import Heartbeat

__all__ = ["JobsAdminController"]

FEED_EVERY_S = 2.0
"""How often the live feed sends a snapshot."""

JobId = Annotated[str, PathParameter(max_length=200, description="A job id from the list.")]


class Snapshot(msgspec.Struct, frozen=True, tag="snapshot"):
    jobs: JobsOverview
    workers: list[Heartbeat]


class Done(msgspec.Struct, frozen=True):
    job_id: str
    action: str


class JobsAdminController(Controller):
    path = "/admin"
    tags = ["admin"]

    @get("/jobs")
    async def jobs(
        self,
        resources: Deps,
        user: CurrentUser,
        limit: Annotated[int, QueryParameter(ge=1, le=500, description="Jobs per group.")] = 100,
    ) -> JobsOverview:
        """Each queue's counts and its latest jobs: ingestions (from the uploads) and short jobs
        (from Redis), with their state, tries, timings and error."""
        accounts.require_admin(resources.settings, user)
        return await dashboard.overview(resources, limit=limit)

    @get("/workers")
    async def workers(self, resources: Deps, user: CurrentUser) -> list[Heartbeat]:
        """Live workers: queue, heartbeat, concurrency, running jobs and counts."""
        accounts.require_admin(resources.settings, user)
        return await workers.read(resources.redis, resources.queues)

    @post("/jobs/{job_id:str}/retry", status_code=HTTP_202_ACCEPTED)
    async def retry(self, job_id: JobId, resources: Deps, user: CurrentUser) -> Done:
        """Run a failed job again (409 unless it failed; for an ingestion, its file must be
        stored still)."""
        accounts.require_admin(resources.settings, user)
        await dashboard.retry(resources, job_id)
        return Done(job_id=job_id, action="retry")

    @post("/jobs/{job_id:str}/abort", status_code=HTTP_202_ACCEPTED)
    async def abort(self, job_id: JobId, resources: Deps, user: CurrentUser) -> Done:
        """Stop a queued or running ingestion: its upload fails as stopped by an administrator
        (409 when it has finished)."""
        accounts.require_admin(resources.settings, user)
        await dashboard.abort(resources, job_id)
        return Done(job_id=job_id, action="abort")

    @get("/events")
    async def events(self, resources: Deps, user: CurrentUser) -> ServerSentEvent:
        """``snapshot`` events (jobs and workers) every two seconds, for the admin page."""
        accounts.require_admin(resources.settings, user)
        return event_stream(_feed(resources))


async def _feed(res: Resources) -> AsyncIterator[Snapshot]:
    while not res.stopping.is_set():
        overview, beats = await asyncio.gather(
            dashboard.overview(res, limit=50), workers.read(res.redis, res.queues)
        )
        yield Snapshot(jobs=overview, workers=beats)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(res.stopping.wait(), FEED_EVERY_S)

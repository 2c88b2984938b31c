"""``/api/v1/uploads`` and ``/api/v1/jobs``: upload, list, read, download, delete, progress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath
from litestar.response import ServerSentEvent, Stream
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from pdfqa import progress
from pdfqa import uploads as service
from pdfqa.api.deps import CurrentUser, Deps, PageCursor, PageLimit
from pdfqa.api.headers import content_disposition
from pdfqa.api.multipart import file_part
from pdfqa.api.sse import event_stream
from pdfqa.errors import NotFound
from pdfqa.pagination import DEFAULT_LIMIT
from pdfqa.store import uploads as upload_store
from pdfqa.store.uploads import Upload
from pdfqa.uploads import JobState

__all__ = ["JobsController", "UploadsController"]


class Accepted(msgspec.Struct, frozen=True):
    id: UUID
    name: str
    size: int
    status: str
    job_id: str
    created_at: datetime


class UploadsController(Controller):
    path = "/uploads"
    tags = ["uploads"]

    @post("/", status_code=HTTP_202_ACCEPTED)
    async def create(
        self, request: Request[Any, Any, Any], resources: Deps, user: CurrentUser
    ) -> Accepted:
        """Upload a PDF (multipart field ``file``); ingestion runs in the background."""
        part = await file_part(request)
        upload = await service.accept_upload(resources, user.id, part.filename, part.data)
        return Accepted(
            id=upload.id,
            name=upload.name,
            size=upload.size,
            status=upload.status,
            job_id=upload.job_id,
            created_at=upload.created_at,
        )

    @get("/")
    async def index(
        self,
        resources: Deps,
        user: CurrentUser,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
    ) -> service.UploadPage:
        """The caller's uploads, newest first, a page at a time (``cursor``: ``next_cursor``)."""
        return await service.list_uploads(resources, user.id, limit, cursor)

    @get("/{upload_id:uuid}")
    async def show(self, upload_id: FromPath[UUID], resources: Deps, user: CurrentUser) -> Upload:
        """One upload with its ingestion status and progress."""
        return await service.get_upload(resources, user.id, upload_id)

    @get("/{upload_id:uuid}/pages/{page:int}/ocr")
    async def page_ocr(
        self, upload_id: FromPath[UUID], page: FromPath[int], resources: Deps, user: CurrentUser
    ) -> service.PageOcr:
        """The lines OCR recognised on one page, with boxes as fractions of the page (0-1, from
        its top-left corner), for highlighting; no lines when the page was not OCR'd."""
        return await service.page_ocr(resources, user.id, upload_id, page)

    @get("/{upload_id:uuid}/file", media_type="application/pdf")
    async def file(self, upload_id: FromPath[UUID], resources: Deps, user: CurrentUser) -> Stream:
        """The PDF itself."""
        upload = await service.get_upload(resources, user.id, upload_id)
        if upload.status == "failed" or not await resources.files.exists(str(upload.id)):
            raise NotFound("The file is not kept: its upload failed or was removed.")
        return Stream(
            resources.files.read(str(upload.id)),
            media_type="application/pdf",
            headers={
                "Content-Disposition": content_disposition("attachment", upload.name),
                "Content-Length": str(upload.size),
                # Even if a browser were made to render the bytes as something else, they would
                # run in an opaque origin with no scripts, never as the app's origin.
                "Content-Security-Policy": "sandbox",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, no-store",
            },
        )

    @delete("/{upload_id:uuid}", status_code=HTTP_204_NO_CONTENT)
    async def remove(self, upload_id: FromPath[UUID], resources: Deps, user: CurrentUser) -> None:
        """Delete the upload, its file and all its vectors."""
        await service.delete_upload(resources, user.id, upload_id)

    @get("/events")
    async def all_events(self, resources: Deps, user: CurrentUser) -> ServerSentEvent:
        """Progress of all your unfinished uploads on one stream (and of those you add while it
        is open): ``progress``, ``ready``, ``failed`` and ``deleted`` events whose data carries
        ``upload_id``; each upload's current state first. It ends once none of your uploads is
        unfinished (at once if none is); ``closing`` when the server shuts down (reconnect)."""
        resources.hub.check_capacity(user.id)  # 429 before the stream starts
        return event_stream(_all_progress(resources, user))

    @get("/{upload_id:uuid}/events")
    async def events(
        self, upload_id: FromPath[UUID], resources: Deps, user: CurrentUser
    ) -> ServerSentEvent:
        """Progress as server-sent events: ``progress`` ..., then ``ready``, ``failed`` or
        ``deleted``; ``closing`` when the server shuts down (reconnect)."""
        await service.get_upload(resources, user.id, upload_id)  # 404 before the stream starts
        resources.hub.check_capacity(user.id)  # 429 before the stream starts
        return event_stream(
            _progress(resources, user, upload_id),
            heartbeat_s=resources.settings.sse_heartbeat_s,
            stop=resources.stopping,
        )


async def _progress(
    resources: Deps, user: CurrentUser, upload_id: UUID
) -> AsyncIterator[msgspec.Struct]:
    try:
        async with resources.hub.listen(upload_id, user.id) as live:
            # Subscribed first, read second: nothing published in between is lost.
            current = await _current(resources, user, upload_id)
            yield current
            if not isinstance(current, progress.Progress):
                return
            while True:
                item = await live.get()
                if item is progress.RESYNC:  # the hub reconnected: events may have been missed
                    item = await _current(resources, user, upload_id)
                if not isinstance(item, msgspec.Struct):
                    continue
                yield item
                if not isinstance(item, progress.Progress):
                    return
    except TimeoutError:
        # Redis did not confirm the subscription in time: say so and end; the client reconnects.
        yield progress.Closing()


async def _all_progress(resources: Deps, user: CurrentUser) -> AsyncIterator[msgspec.Struct]:
    """The multiplexed stream: subscribe the user's channel (new uploads), then each unfinished
    upload's channel, and only then read their state; drop an upload once it has ended, and end
    when none is left."""
    try:
        async with resources.hub.listen_many(user.id) as live:
            await live.add(progress.user_channel(user.id))
            watching: dict[str, UUID] = {}

            async def follow(upload_id: UUID) -> AsyncIterator[msgspec.Struct]:
                name = progress.channel(upload_id)
                watching[name] = upload_id
                await live.add(name)
                current = await _current(resources, user, upload_id)
                yield progress.Tagged(upload_id=upload_id, event=current)
                if not isinstance(current, progress.Progress):
                    watching.pop(name, None)
                    await live.drop(name)

            async def resync() -> AsyncIterator[msgspec.Struct]:
                async with resources.db.acquire() as conn:
                    pending = await upload_store.unfinished_for_user(conn, user.id)
                known = set(watching.values())
                for upload_id in [*known, *(u.id for u in pending if u.id not in known)]:
                    async for event in follow(upload_id):
                        yield event

            async for event in resync():
                yield event
            while watching:
                name, item = await live.queue.get()
                if isinstance(item, progress.Closing):
                    yield item
                    return
                if item is progress.RESYNC:
                    async for event in resync():
                        yield event
                elif isinstance(item, progress.Added):
                    async for event in follow(item.upload_id):
                        yield event
                elif name in watching and isinstance(item, msgspec.Struct):
                    upload_id = watching[name]
                    yield progress.Tagged(upload_id=upload_id, event=item)  # type: ignore[arg-type]
                    if not isinstance(item, progress.Progress):
                        watching.pop(name, None)
                        await live.drop(name)
    except TimeoutError:
        yield progress.Closing()


async def _current(resources: Deps, user: CurrentUser, upload_id: UUID) -> progress.UploadEvent:
    try:
        return progress.event_for(await service.get_upload(resources, user.id, upload_id))
    except NotFound:
        return progress.Deleted()


class JobsController(Controller):
    path = "/jobs"
    tags = ["jobs"]

    @get("/{job_id:str}")
    async def show(self, job_id: FromPath[str], resources: Deps, user: CurrentUser) -> JobState:
        """The background job's state, for the caller's own jobs."""
        return await service.job_state(resources, user.id, job_id)

"""``/api/v1/conversations``, ``/messages/{id}/feedback`` and ``/feedback/export``."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pdfqa import conversations as service
from pdfqa.answer import Done, Error, Sources, Token
from pdfqa.api.deps import CurrentUser, Deps, PageCursor, PageLimit
from pdfqa.api.sse import event_stream
from pdfqa.citations import Citation, Reading, Source
from pdfqa.errors import UpstreamUnavailable
from pdfqa.pagination import DEFAULT_LIMIT
from pdfqa.sanitize import check_text
from pdfqa.store.conversations import Conversation, Feedback

__all__ = ["ConversationsController", "FeedbackController"]


MAX_TITLE = 200
MAX_COMMENT = 2000


class NewConversation(msgspec.Struct, frozen=True):
    upload_ids: Annotated[list[UUID], msgspec.Meta(max_length=service.MAX_UPLOADS)]
    title: Annotated[str, msgspec.Meta(max_length=MAX_TITLE)] | None = None

    def __post_init__(self) -> None:
        if self.title is not None:
            check_text(self.title, "title", multiline=False)


class ConversationChange(msgspec.Struct, frozen=True):
    """What to change: the title, the documents (the whole new list), or both."""

    title: Annotated[str, msgspec.Meta(max_length=MAX_TITLE)] | None = None
    upload_ids: Annotated[list[UUID], msgspec.Meta(max_length=service.MAX_UPLOADS)] | None = None

    def __post_init__(self) -> None:
        if self.title is not None:
            check_text(self.title, "title", multiline=False)


class Question(msgspec.Struct, frozen=True):
    question: Annotated[str, msgspec.Meta(max_length=service.MAX_QUESTION)]

    def __post_init__(self) -> None:
        check_text(self.question, "question")


class Answer(msgspec.Struct, frozen=True):
    """A whole answer, for API clients that do not read event streams."""

    message_id: UUID
    answer: str
    mode: str
    sources: list[Source]
    citations: list[Citation]
    confidence: float
    """Retrieval's confidence (0-1) that the sources hold the answer."""
    reading: list[Reading]
    """Documents still being read: the answer comes from the pages read so far."""


class Vote(msgspec.Struct, frozen=True):
    vote: Literal["up", "down"]
    comment: Annotated[str, msgspec.Meta(max_length=MAX_COMMENT)] | None = None

    def __post_init__(self) -> None:
        if self.comment is not None:
            check_text(self.comment, "comment")


class ConversationsController(Controller):
    path = "/conversations"
    tags = ["conversations"]

    @post("/", status_code=HTTP_201_CREATED)
    async def create(
        self, data: JSONBody[NewConversation], resources: Deps, user: CurrentUser
    ) -> Conversation:
        """Start a conversation over one or several of your uploads (ready, or still being read:
        answers then come from the pages read so far). Without a title, the first question
        names it."""
        return await service.create_conversation(resources, user.id, data.upload_ids, data.title)

    @get("/")
    async def index(
        self,
        resources: Deps,
        user: CurrentUser,
        limit: PageLimit = DEFAULT_LIMIT,
        cursor: PageCursor = None,
        q: Annotated[str | None, Parameter(max_length=200)] = None,
    ) -> service.ConversationPage:
        """Your conversations, most recently active first, a page at a time; ``q`` keeps those
        whose title or one of whose questions contains it (any case)."""
        return await service.list_conversations(resources, user.id, limit, cursor, q)

    @get("/{conversation_id:uuid}")
    async def show(
        self, conversation_id: FromPath[UUID], resources: Deps, user: CurrentUser
    ) -> service.ConversationDetail:
        """A conversation with its messages, their sources, citations and your votes."""
        return await service.get_conversation(resources, user.id, conversation_id)

    @patch("/{conversation_id:uuid}")
    async def change(
        self,
        conversation_id: FromPath[UUID],
        data: JSONBody[ConversationChange],
        resources: Deps,
        user: CurrentUser,
    ) -> Conversation:
        """Rename a conversation (``title``) and/or set its documents (``upload_ids``, the whole
        new list: add or remove some); earlier answers keep their sources."""
        return await service.update_conversation(
            resources, user.id, conversation_id, title=data.title, upload_ids=data.upload_ids
        )

    @delete("/{conversation_id:uuid}", status_code=HTTP_204_NO_CONTENT)
    async def remove(
        self, conversation_id: FromPath[UUID], resources: Deps, user: CurrentUser
    ) -> None:
        """Delete a conversation and its messages."""
        await service.delete_conversation(resources, user.id, conversation_id)

    @post("/{conversation_id:uuid}/messages", status_code=200)
    async def ask(
        self,
        conversation_id: FromPath[UUID],
        data: JSONBody[Question],
        request: Request[Any, Any, Any],
        resources: Deps,
        user: CurrentUser,
    ) -> Response[Any]:
        """Ask a question. ``Accept: text/event-stream`` streams ``sources``, ``token``... and
        ``done`` (or ``error``) events, or ``closing`` when the server shuts down before the
        answer is complete (ask again); otherwise the whole answer comes as one JSON document."""
        events = await service.ask(resources, user.id, conversation_id, data.question)
        if "text/event-stream" in request.headers.get("accept", ""):
            # On SIGTERM an answer being written gets half the shutdown limit to finish; then
            # its stream ends with `closing`, before the server's own graceful timeout cuts it.
            return event_stream(
                events,
                heartbeat_s=resources.settings.sse_heartbeat_s,
                stop=resources.stopping,
                grace_s=resources.settings.shutdown_timeout_s / 2,
            )
        sources: list[Source] = []
        text: list[str] = []
        async for event in events:
            if isinstance(event, Sources):
                sources = event.sources
            elif isinstance(event, Token):
                text.append(event.text)
            elif isinstance(event, Error):
                raise UpstreamUnavailable(event.detail)
            elif isinstance(event, Done):
                return Response(
                    Answer(
                        message_id=event.message_id,
                        answer="".join(text).strip(),
                        mode=event.mode,
                        sources=sources,
                        citations=event.citations,
                        confidence=event.confidence,
                        reading=event.reading,
                    )
                )
        raise UpstreamUnavailable("The answer ended without completing.")


class FeedbackController(Controller):
    path = "/"
    tags = ["feedback"]

    @put("/messages/{message_id:uuid}/feedback")
    async def vote(
        self, message_id: FromPath[UUID], data: JSONBody[Vote], resources: Deps, user: CurrentUser
    ) -> Feedback:
        """Like or dislike an answer (voting again replaces the vote)."""
        return await service.put_feedback(resources, user.id, message_id, data.vote, data.comment)

    @delete("/messages/{message_id:uuid}/feedback", status_code=HTTP_204_NO_CONTENT)
    async def unvote(self, message_id: FromPath[UUID], resources: Deps, user: CurrentUser) -> None:
        """Withdraw your vote."""
        await service.delete_feedback(resources, user.id, message_id)

    @get("/feedback/export", media_type="application/x-ndjson")
    async def export(self, resources: Deps, user: CurrentUser) -> Response[bytes]:
        """Your votes as JSON lines: question, answer, vote, comment and the retrieved chunk ids."""
        records = await service.export_feedback(resources, user.id)
        body = b"".join(msgspec.json.encode(r) + b"\n" for r in records)
        return Response(
            body,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="pdfqa-feedback.jsonl"'},
        )

"""Conversations as a service: ask questions about a set of your uploads, keep the answers, vote
on them.

An upload still being read may be part of a conversation: answers come from the pages stored so
far, and say how far each such document was read (:class:`~pdfqa.citations.Reading`); the next
question sees whatever has been read since.

:func:`ask` yields the answer as events (see :mod:`pdfqa.answer`); the message is stored only
once its answer is complete, so an upstream failure or a client that goes away leaves nothing
half-saved.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode

from pdfqa import answer as answering
from pdfqa import metrics, quotas, words
from pdfqa.answer import AnswerEvent, Done, Error, Sources, Token
from pdfqa.citations import Reading, cited, reading_note
from pdfqa.errors import Conflict, InvalidInput, NotFound, UpstreamUnavailable
from pdfqa.pagination import DEFAULT_LIMIT, decode_cursor, encode_cursor
from pdfqa.resources import Resources
from pdfqa.retrieval import retrieve, standalone_query
from pdfqa.sanitize import display_name
from pdfqa.store import conversations as store
from pdfqa.store import uploads as upload_store
from pdfqa.store.conversations import Conversation, Feedback, FeedbackRecord, Message
from pdfqa.store.uploads import Upload
from pdfqa.tracing import tracer

__all__ = [
    "ConversationDetail",
    "ConversationPage",
    "ask",
    "create_conversation",
    "delete_conversation",
    "delete_feedback",
    "export_feedback",
    "get_conversation",
    "list_conversations",
    "put_feedback",
    "update_conversation",
]

log = logging.getLogger(__name__)

MAX_UPLOADS = 20
MAX_QUESTION = 4000
HISTORY_TURNS = 3
REWRITE_TOKENS = 64
TITLE_CHARS = 80
ASKABLE = ("queued", "processing", "ready")
"""Statuses an upload may have to be in a conversation: still being read is fine."""


class ConversationDetail(msgspec.Struct, frozen=True):
    """A conversation with its messages, their citations and votes."""

    id: UUID
    title: str
    upload_ids: list[UUID]
    created_at: datetime
    updated_at: datetime
    messages: list[Message]
    title_auto: bool = False
    """Named after its documents until its first question names it."""


async def _askable_uploads(conn: Any, user_id: UUID, upload_ids: Sequence[UUID]) -> list[Upload]:
    """The distinct uploads, in the order asked, checked: each the caller's and not failed
    (404 / 409 otherwise)."""
    wanted = list(dict.fromkeys(upload_ids))
    if not wanted:
        raise InvalidInput("Choose at least one document.")
    if len(wanted) > MAX_UPLOADS:
        raise InvalidInput(f"A conversation can cover at most {MAX_UPLOADS} documents.")
    by_id = {u.id: u for u in await upload_store.get_many(conn, wanted, user_id)}
    found = []
    for upload_id in wanted:
        upload = by_id.get(upload_id)
        if upload is None:
            raise NotFound(f"No such upload: {upload_id}.")
        if upload.status not in ASKABLE:
            raise Conflict(f"{upload.name} cannot be asked about: its upload {upload.status}.")
        found.append(upload)
    return found


async def create_conversation(
    res: Resources, user_id: UUID, upload_ids: Sequence[UUID], title: str | None
) -> Conversation:
    """Start a conversation over some of the caller's uploads (ready or still being read).

    Without a title it is named after its documents until its first question names it.
    """
    async with res.db.acquire() as conn:
        found = await _askable_uploads(conn, user_id, upload_ids)
        wanted = [u.id for u in found]
        names = [u.name for u in found]
        default = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
        clean = display_name(title or "", limit=200)
        return await store.create(
            conn, uuid.uuid4(), user_id, clean or default, wanted, title_auto=not clean
        )


async def update_conversation(
    res: Resources,
    user_id: UUID,
    conversation_id: UUID,
    *,
    title: str | None = None,
    upload_ids: Sequence[UUID] | None = None,
) -> Conversation:
    """Rename a conversation and/or replace its documents (add or remove some)."""
    async with res.db.acquire() as conn:
        if await store.get(conn, conversation_id, user_id) is None:
            raise NotFound("No such conversation.")
        if title is not None:
            clean = display_name(title, limit=200)
            if not clean:
                raise InvalidInput("A title cannot be empty.")
            await store.rename(conn, conversation_id, user_id, clean)
        if upload_ids is not None:
            wanted = [u.id for u in await _askable_uploads(conn, user_id, upload_ids)]
            await store.set_uploads(conn, conversation_id, wanted)
        found = await store.get(conn, conversation_id, user_id)
    if found is None:
        raise NotFound("No such conversation.")
    return found


def title_for(question: str) -> str:
    """A conversation's title made from its first question: one line, cut at a word."""
    line = display_name(question, limit=1000)
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1]
    if " " in cut[TITLE_CHARS // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.-") + "\u2026"


class ConversationPage(msgspec.Struct, frozen=True):
    """A page of conversations; ``next_cursor`` fetches the next (null: no more)."""

    items: list[Conversation]
    next_cursor: str | None


async def list_conversations(
    res: Resources,
    user_id: UUID,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    search: str | None = None,
) -> ConversationPage:
    """The caller's conversations, most recently active first; ``search`` keeps those whose
    title or one of whose questions contains it."""
    after = decode_cursor(cursor)
    search = display_name(search or "", limit=200) or None
    async with res.db.acquire() as conn:
        items = await store.list_for_user(
            conn, user_id, limit + 1, (after.at, after.id) if after else None, search
        )
    more = len(items) > limit
    items = items[:limit]
    last = items[-1] if more else None
    return ConversationPage(
        items=items, next_cursor=encode_cursor(last.updated_at, last.id) if last else None
    )


async def get_conversation(
    res: Resources, user_id: UUID, conversation_id: UUID
) -> ConversationDetail:
    async with res.db.acquire() as conn:
        conversation = await store.get(conn, conversation_id, user_id)
        if conversation is None:
            raise NotFound("No such conversation.")
        messages = await store.messages(conn, conversation_id, user_id)
    return ConversationDetail(
        id=conversation.id,
        title=conversation.title,
        upload_ids=conversation.upload_ids,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        messages=messages,
        title_auto=conversation.title_auto,
    )


async def delete_conversation(res: Resources, user_id: UUID, conversation_id: UUID) -> None:
    async with res.db.acquire() as conn:
        if not await store.delete(conn, conversation_id, user_id):
            raise NotFound("No such conversation.")


async def ask(
    res: Resources, user_id: UUID, conversation_id: UUID, question: str
) -> AsyncIterator[AnswerEvent]:
    """Answer a question in a conversation, as events; store the message once it is complete.

    Raises :class:`NotFound` / :class:`InvalidInput` before the first event; failures after it
    become a final :class:`~pdfqa.answer.Error` event.
    """
    question = question.strip()
    if not question:
        raise InvalidInput("Ask a question.")
    if len(question) > MAX_QUESTION:
        raise InvalidInput(f"A question can have at most {MAX_QUESTION} characters.")
    # Three short queries on one connection, none growing with the conversation: the last
    # turns only (every message, with its sources, made each question slower than the last and
    # held a pooled connection while megabytes were decoded).
    async with res.db.acquire() as conn:
        conversation = await store.get(conn, conversation_id, user_id)
        if conversation is None:
            raise NotFound("No such conversation.")
        earlier = await store.recent_messages(conn, conversation_id, user_id, HISTORY_TURNS)
        uploads = await upload_store.get_many(conn, conversation.upload_ids, user_id)
    order = {u: i for i, u in enumerate(conversation.upload_ids)}
    uploads.sort(key=lambda u: order[u.id])
    usable = [u for u in uploads if u.status in ASKABLE]
    names = {u.id: u.name for u in usable}
    if not names:
        raise Conflict("None of this conversation's documents is available any more.")
    await quotas.hit(
        res.redis,
        quotas.key(res.settings, "questions", user_id),
        limit=res.settings.questions_per_minute,
        window_s=60,
        what="questions a minute",
    )
    return _answer(
        res,
        user_id=user_id,
        conversation=conversation,
        question=question,
        earlier=earlier,
        names=names,
        reading=[_reading(u) for u in usable if u.status != "ready"],
        first=not earlier,
    )


def _reading(upload: Upload) -> Reading:
    return Reading(
        upload_id=str(upload.id),
        upload_name=upload.name,
        pages_done=upload.pages_done,
        pages_total=upload.pages_total or 0,
        note=reading_note(upload.pages_done, upload.pages_total or 0),
    )


async def _answer(  # noqa: PLR0915 - one stream, its spans and its error events
    res: Resources,
    *,
    user_id: UUID,
    conversation: Conversation,
    question: str,
    earlier: list[Message],
    names: dict[UUID, str],
    reading: list[Reading],
    first: bool,
) -> AsyncIterator[AnswerEvent]:
    started = time.perf_counter()
    history = [(m.question, m.answer) for m in earlier]
    chunks: list[str] = []
    # Spans are started and ended by hand: a generator's ``yield`` must never sit inside an
    # attached context (the consumer resumes it elsewhere). Each await runs under ``use_span``.
    root = tracer.start_span("answer question", attributes={"uploads": len(names)})
    streaming: Span | None = None
    try:
        with trace.use_span(root, end_on_exit=False):
            query = await _standalone(res, question, earlier, history)
            found = await retrieve(
                res, user_id=user_id, upload_names=names, query=query, cache=not reading
            )
        # The sources are always shown, "not found" included: the person can check them.
        sources = found.sources
        threshold = res.settings.min_confidence
        yield Sources(sources=sources, confidence=found.confidence, reading=reading)
        mode: Literal["generated", "extractive", "not_found"]
        if not found.relevant:
            mode = "not_found"
            stream = _replay(answering.not_found_answer(found.confidence, threshold))
        elif res.chat is not None:
            messages = answering.prompt(
                question, sources, history, budget_tokens=res.settings.chat_context_tokens
            )
            mode, stream = "generated", res.chat.stream(messages)
        else:
            mode = "extractive"
            extracted = answering.extractive_answer(query, sources, found.confidence, threshold)
            stream = _replay(extracted)
        root.set_attribute("answer.mode", mode)
        streaming = tracer.start_span(
            "stream answer", context=trace.set_span_in_context(root), attributes={"mode": mode}
        )
        while True:
            with trace.use_span(streaming, end_on_exit=False):
                piece = await anext(stream, None)
            if piece is None:
                break
            if not chunks:
                metrics.TTFT.observe(time.perf_counter() - started)
                streaming.add_event("first token")
            chunks.append(piece)
            yield Token(text=piece)
        streaming.end()
        text = "".join(chunks).strip()
        if mode == "generated" and answering.says_not_found(text):
            mode = "not_found"  # the model found no answer in the passages: said as such
            root.set_attribute("answer.mode", mode)
        message = Message(
            id=uuid.uuid4(),
            conversation_id=conversation.id,
            question=question,
            query=query,
            answer=text,
            mode=mode,
            sources=sources,
            citations=cited(text, sources),
            created_at=datetime.now(UTC),
            reading=reading,
        )
        with trace.use_span(root, end_on_exit=False):
            async with res.db.acquire() as conn:
                await store.insert_message(conn, message)
                if first and conversation.title_auto:
                    await store.title_from_question(conn, conversation.id, title_for(question))
    except UpstreamUnavailable as err:
        log.warning("answer failed upstream: %s", err)
        root.set_status(StatusCode.ERROR, str(err))
        yield Error(detail=str(err))
        return
    except Exception as exc:
        # Whatever broke, the stream ends with an error event (never a cut-off stream), and the
        # traceback goes to the log.
        log.exception("answering failed")
        root.record_exception(exc)
        root.set_status(StatusCode.ERROR)
        yield Error(detail="The answer failed because of an internal error; please try again.")
        return
    finally:
        if streaming is not None and streaming.is_recording():
            streaming.end()
        root.end()
    yield Done(
        message_id=message.id,
        citations=message.citations,
        mode=mode,
        confidence=found.confidence,
        reading=reading,
    )


async def _standalone(
    res: Resources, question: str, earlier: list[Message], history: list[tuple[str, str]]
) -> str:
    """The follow-up rewritten to stand alone: by the model if there is one, else by rule.

    A question that stands on its own (:func:`pdfqa.words.is_follow_up`) is searched for as it
    is, by either: carrying the earlier questions' words into it would search for them too.
    """
    if not earlier or not words.is_follow_up(question):
        return question
    by_rule = standalone_query(question, [m.query for m in earlier])
    if res.chat is None:
        return by_rule
    reply = await res.chat.complete(
        answering.rewrite_messages(question, history), max_tokens=REWRITE_TOKENS, stop=["\n"]
    )
    rewritten = reply.strip().strip('"').strip()
    # A small model may answer with prompt markup or chatter instead of a question: keep its
    # rewrite only if it is about what was said (shares a content word with it).
    said = words.content_words(" ".join([question, *(q for q, _ in history)]))
    if 0 < len(rewritten) <= 2 * len(question) + 300 and words.content_words(rewritten) & said:
        return rewritten
    return by_rule


async def _replay(text: str) -> AsyncIterator[str]:
    for piece in answering.pieces(text):
        yield piece


async def put_feedback(
    res: Resources,
    user_id: UUID,
    message_id: UUID,
    vote: Literal["up", "down"],
    comment: str | None,
) -> Feedback:
    """Vote on an answer (a second vote replaces the first)."""
    async with res.db.acquire() as conn:
        message = await store.get_message(conn, message_id, user_id)
        if message is None:
            raise NotFound("No such message.")
        return await store.put_feedback(
            conn, message, user_id, vote, (comment or "").strip() or None
        )


async def delete_feedback(res: Resources, user_id: UUID, message_id: UUID) -> None:
    async with res.db.acquire() as conn:
        if await store.get_message(conn, message_id, user_id) is None:
            raise NotFound("No such message.")
        await store.delete_feedback(conn, message_id, user_id)


async def export_feedback(res: Resources, user_id: UUID) -> list[FeedbackRecord]:
    async with res.db.acquire() as conn:
        return await store.export_feedback(conn, user_id)

"""Conversations, their messages (complete answers only) and feedback on answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg
import msgspec

from pdfqa.citations import Citation, Reading, Source

__all__ = [
    "Conversation",
    "Feedback",
    "FeedbackRecord",
    "Message",
    "create",
    "delete",
    "delete_feedback",
    "export_feedback",
    "get",
    "get_message",
    "insert_message",
    "list_for_user",
    "messages",
    "put_feedback",
    "rename",
    "set_uploads",
    "title_from_question",
]

Mode = Literal["generated", "extractive", "not_found"]
Vote = Literal["up", "down"]


class Conversation(msgspec.Struct, frozen=True):
    id: UUID
    user_id: UUID
    title: str
    upload_ids: list[UUID]
    created_at: datetime
    updated_at: datetime
    title_auto: bool = False
    """Named after its documents until its first question names it (renaming ends this)."""


class Feedback(msgspec.Struct, frozen=True):
    vote: Vote
    comment: str | None
    updated_at: datetime


class Message(msgspec.Struct, frozen=True):
    """A question with its complete answer."""

    id: UUID
    conversation_id: UUID
    question: str
    query: str
    """The stand-alone query retrieval used (follow-ups are rewritten)."""
    answer: str
    mode: Mode
    sources: list[Source]
    citations: list[Citation]
    created_at: datetime
    feedback: Feedback | None = None
    reading: list[Reading] = []
    """Documents still being read when it was answered, and how far."""


class FeedbackRecord(msgspec.Struct, frozen=True):
    """One vote as exported: enough to replay the question as an evaluation case."""

    message_id: UUID
    conversation_id: UUID
    vote: Vote
    comment: str | None
    question: str
    answer: str
    chunk_ids: list[str]
    created_at: datetime
    updated_at: datetime


_CONVERSATION = """
    SELECT c.id, c.user_id, c.title, c.title_auto, c.created_at, c.updated_at,
           coalesce(array_agg(cu.upload_id ORDER BY cu.position)
                    FILTER (WHERE cu.upload_id IS NOT NULL), '{}') AS upload_ids
    FROM conversations c LEFT JOIN conversation_uploads cu ON cu.conversation_id = c.id
"""


def _conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(
        id=row["id"],
        user_id=row["user_id"],
        title=row["title"],
        upload_ids=list(row["upload_ids"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        title_auto=row["title_auto"],
    )


async def create(
    conn: asyncpg.Connection,
    conversation_id: UUID,
    user_id: UUID,
    title: str,
    uploads: list[UUID],
    *,
    title_auto: bool = False,
) -> Conversation:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO conversations (id, user_id, title, title_auto) VALUES ($1, $2, $3, $4)",
            conversation_id,
            user_id,
            title,
            title_auto,
        )
        await conn.executemany(
            "INSERT INTO conversation_uploads (conversation_id, upload_id, position)"
            " VALUES ($1, $2, $3)",
            [(conversation_id, upload_id, i) for i, upload_id in enumerate(uploads)],
        )
    found = await get(conn, conversation_id, user_id)
    assert found is not None
    return found


async def get(
    conn: asyncpg.Connection, conversation_id: UUID, user_id: UUID
) -> Conversation | None:
    row = await conn.fetchrow(
        _CONVERSATION + " WHERE c.id = $1 AND c.user_id = $2 GROUP BY c.id",
        conversation_id,
        user_id,
    )
    return None if row is None else _conversation(row)


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_for_user(
    conn: asyncpg.Connection,
    user_id: UUID,
    limit: int,
    after: tuple[datetime, UUID] | None = None,
    search: str | None = None,
) -> list[Conversation]:
    """A page of the user's conversations, most recently active first, after the key ``after``;
    with ``search``, only those whose title or one of whose questions contains it (any case)."""
    at, last = after or (None, None)
    rows = await conn.fetch(
        _CONVERSATION + " WHERE c.user_id = $1"
        " AND ($2::timestamptz IS NULL OR (c.updated_at, c.id) < ($2, $3))"
        " AND ($5::text IS NULL OR c.title ILIKE $5 OR EXISTS ("
        "   SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.question ILIKE $5))"
        " GROUP BY c.id ORDER BY c.updated_at DESC, c.id DESC LIMIT $4",
        user_id,
        at,
        last,
        limit,
        _like(search) if search else None,
    )
    return [_conversation(r) for r in rows]


async def rename(
    conn: asyncpg.Connection, conversation_id: UUID, user_id: UUID, title: str
) -> bool:
    status = await conn.execute(
        "UPDATE conversations SET title = $3, title_auto = false WHERE id = $1 AND user_id = $2",
        conversation_id,
        user_id,
        title,
    )
    return bool(status == "UPDATE 1")


async def title_from_question(conn: asyncpg.Connection, conversation_id: UUID, title: str) -> None:
    """Name a conversation after its first question, unless it was named otherwise."""
    await conn.execute(
        "UPDATE conversations SET title = $2, title_auto = false WHERE id = $1 AND title_auto",
        conversation_id,
        title,
    )


async def set_uploads(conn: asyncpg.Connection, conversation_id: UUID, uploads: list[UUID]) -> None:
    """Replace the conversation's documents (in this order)."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM conversation_uploads WHERE conversation_id = $1", conversation_id
        )
        await conn.executemany(
            "INSERT INTO conversation_uploads (conversation_id, upload_id, position)"
            " VALUES ($1, $2, $3)",
            [(conversation_id, upload_id, i) for i, upload_id in enumerate(uploads)],
        )
        await conn.execute(
            "UPDATE conversations SET updated_at = now() WHERE id = $1", conversation_id
        )


async def delete(conn: asyncpg.Connection, conversation_id: UUID, user_id: UUID) -> bool:
    status = await conn.execute(
        "DELETE FROM conversations WHERE id = $1 AND user_id = $2", conversation_id, user_id
    )
    return bool(status == "DELETE 1")


async def insert_message(conn: asyncpg.Connection, message: Message) -> None:
    """Store a complete answer and touch the conversation (it moves to the top of the list).

    One statement, so the conversation's row is locked only while the server runs it, never
    across a round trip: answers finishing at once in one conversation do not queue behind each
    other's connections.
    """
    await conn.execute(
        "WITH inserted AS ("
        " INSERT INTO messages (id, conversation_id, question, query, answer, mode, sources,"
        " citations, created_at, reading) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " RETURNING conversation_id)"
        " UPDATE conversations SET updated_at = now()"
        " WHERE id = (SELECT conversation_id FROM inserted)",
        message.id,
        message.conversation_id,
        message.question,
        message.query,
        message.answer,
        message.mode,
        msgspec.to_builtins(message.sources),
        msgspec.to_builtins(message.citations),
        message.created_at,
        msgspec.to_builtins(message.reading),
    )


_MESSAGE = """
    SELECT m.id, m.conversation_id, m.question, m.query, m.answer, m.mode, m.sources,
           m.citations, m.created_at, m.reading, f.vote, f.comment, f.updated_at AS voted_at
    FROM messages m JOIN conversations c ON c.id = m.conversation_id
    LEFT JOIN feedback f ON f.message_id = m.id
"""


def _message(row: asyncpg.Record) -> Message:
    feedback = None
    if row["vote"] is not None:
        feedback = Feedback(vote=row["vote"], comment=row["comment"], updated_at=row["voted_at"])
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        question=row["question"],
        query=row["query"],
        answer=row["answer"],
        mode=row["mode"],
        sources=msgspec.convert(row["sources"], list[Source]),
        citations=msgspec.convert(row["citations"], list[Citation]),
        created_at=row["created_at"],
        feedback=feedback,
        reading=msgspec.convert(row["reading"], list[Reading]),
    )


async def messages(conn: asyncpg.Connection, conversation_id: UUID, user_id: UUID) -> list[Message]:
    rows = await conn.fetch(
        _MESSAGE + " WHERE m.conversation_id = $1 AND c.user_id = $2 ORDER BY m.created_at, m.id",
        conversation_id,
        user_id,
    )
    return [_message(r) for r in rows]


async def recent_messages(
    conn: asyncpg.Connection, conversation_id: UUID, user_id: UUID, limit: int
) -> list[Message]:
    """The conversation's last ``limit`` messages, oldest first (a follow-up's history): a read
    that stays the same size however long the conversation grows."""
    rows = await conn.fetch(
        _MESSAGE + " WHERE m.conversation_id = $1 AND c.user_id = $2"
        " ORDER BY m.created_at DESC, m.id DESC LIMIT $3",
        conversation_id,
        user_id,
        limit,
    )
    return [_message(r) for r in reversed(rows)]


async def get_message(conn: asyncpg.Connection, message_id: UUID, user_id: UUID) -> Message | None:
    row = await conn.fetchrow(_MESSAGE + " WHERE m.id = $1 AND c.user_id = $2", message_id, user_id)
    return None if row is None else _message(row)


async def put_feedback(
    conn: asyncpg.Connection, message: Message, user_id: UUID, vote: Vote, comment: str | None
) -> Feedback:
    """Record or replace the caller's vote on an answer, with a snapshot of what was retrieved."""
    row = await conn.fetchrow(
        "INSERT INTO feedback (message_id, user_id, vote, comment, question, answer, chunk_ids)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (message_id) DO UPDATE SET vote = EXCLUDED.vote, comment = EXCLUDED.comment,"
        " updated_at = now() RETURNING vote, comment, updated_at",
        message.id,
        user_id,
        vote,
        comment,
        message.question,
        message.answer,
        [s.chunk_id for s in message.sources],
    )
    assert row is not None
    return Feedback(vote=row["vote"], comment=row["comment"], updated_at=row["updated_at"])


async def delete_feedback(conn: asyncpg.Connection, message_id: UUID, user_id: UUID) -> bool:
    status = await conn.execute(
        "DELETE FROM feedback WHERE message_id = $1 AND user_id = $2", message_id, user_id
    )
    return bool(status == "DELETE 1")


async def export_feedback(conn: asyncpg.Connection, user_id: UUID) -> list[FeedbackRecord]:
    rows = await conn.fetch(
        "SELECT f.message_id, m.conversation_id, f.vote, f.comment, f.question, f.answer,"
        " f.chunk_ids, f.created_at, f.updated_at FROM feedback f"
        " JOIN messages m ON m.id = f.message_id WHERE f.user_id = $1"
        " ORDER BY f.updated_at, f.message_id",
        user_id,
    )
    return [FeedbackRecord(**dict(r)) for r in rows]

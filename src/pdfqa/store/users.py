"""Users and their login sessions (tokens are stored only as SHA-256 hashes)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from pdfqa.errors import Conflict

__all__ = [
    "User",
    "create_session",
    "create_user",
    "delete_session",
    "delete_sessions",
    "get_by_email",
    "get_user",
    "list_users",
    "purge_sessions",
    "session_user",
    "set_admin",
    "set_password",
]

FIRST_USER_LOCK = 0x7064_6671_75
"""Advisory lock held while a user is created: exactly one first user becomes an admin."""


class User(msgspec.Struct, frozen=True):
    id: UUID
    email: str
    created_at: datetime
    is_admin: bool = False
    """An administrator: the first registered user, a promoted one, or one named in
    ``PDFQA_ADMIN_EMAILS`` (the last is applied by ``accounts``, not stored)."""


class UserWithHash(msgspec.Struct, frozen=True):
    user: User
    password_hash: str


async def create_user(
    conn: asyncpg.Connection,
    user_id: UUID,
    email: str,
    password_hash: str,
    *,
    is_admin: bool = False,
) -> User:
    """Insert a user; :class:`Conflict` when the e-mail (case-insensitively) is taken.

    The first user of a deployment is an admin whatever ``is_admin`` says (decided under an
    advisory lock, so two first registrations at once make one admin, not two).
    """
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", FIRST_USER_LOCK)
            row = await conn.fetchrow(
                "INSERT INTO users (id, email, password_hash, is_admin)"
                " VALUES ($1, $2, $3, $4 OR NOT EXISTS (SELECT 1 FROM users))"
                " RETURNING id, email, created_at, is_admin",
                user_id,
                email,
                password_hash,
                is_admin,
            )
    except asyncpg.UniqueViolationError as exc:
        raise Conflict("An account with this e-mail address already exists.") from exc
    assert row is not None
    return User(**dict(row))


async def get_by_email(conn: asyncpg.Connection, email: str) -> UserWithHash | None:
    row = await conn.fetchrow(
        "SELECT id, email, created_at, is_admin, password_hash FROM users"
        " WHERE lower(email) = lower($1)",
        email,
    )
    if row is None:
        return None
    return UserWithHash(
        user=User(
            id=row["id"], email=row["email"], created_at=row["created_at"], is_admin=row["is_admin"]
        ),
        password_hash=row["password_hash"],
    )


async def create_session(
    conn: asyncpg.Connection, token_hash: bytes, user_id: UUID, ttl_s: int
) -> None:
    await conn.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at)"
        " VALUES ($1, $2, now() + make_interval(secs => $3))",
        token_hash,
        user_id,
        float(ttl_s),
    )


SESSION_TOUCH_S = 60.0
"""Longest a session's ``last_seen_at`` lags behind its use (at most a tenth of the idle limit)."""


async def session_user(conn: asyncpg.Connection, token_hash: bytes, idle_s: int) -> User | None:
    """The user a live session token belongs to (unexpired, used within ``idle_s``).

    Using the session moves its ``last_seen_at``, but at most once per :data:`SESSION_TOUCH_S`:
    a write (a commit, a row lock) on every request made every request of one session queue
    behind the others on that row, holding pooled connections while it waited.
    """
    row = await conn.fetchrow(
        "WITH s AS ("
        "  SELECT user_id FROM sessions"
        "  WHERE token_hash = $1 AND expires_at > now()"
        "    AND last_seen_at > now() - make_interval(secs => $2)"
        "), touched AS ("
        "  UPDATE sessions SET last_seen_at = now()"
        "  WHERE token_hash = $1 AND last_seen_at < now() - make_interval(secs => $3)"
        "    AND EXISTS (SELECT 1 FROM s)"
        ")"
        " SELECT u.id, u.email, u.created_at, u.is_admin FROM s JOIN users u ON u.id = s.user_id",
        token_hash,
        float(idle_s),
        min(SESSION_TOUCH_S, idle_s / 10),
    )
    return None if row is None else User(**dict(row))


async def delete_session(conn: asyncpg.Connection, token_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)


async def delete_sessions(
    conn: asyncpg.Connection, user_id: UUID, keep: bytes | None = None
) -> int:
    """End every session of a user (but ``keep``, if given); returns how many ended."""
    result = await conn.execute(
        "DELETE FROM sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR token_hash <> $2)",
        user_id,
        keep,
    )
    return int(result.rsplit(" ", 1)[-1])


async def purge_sessions(conn: asyncpg.Connection, idle_s: int) -> int:
    """Delete sessions past their expiry or idle timeout; returns how many."""
    result = await conn.execute(
        "DELETE FROM sessions WHERE expires_at <= now()"
        " OR last_seen_at <= now() - make_interval(secs => $1)",
        float(idle_s),
    )
    return int(result.rsplit(" ", 1)[-1])


async def set_password(conn: asyncpg.Connection, user_id: UUID, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def get_user(conn: asyncpg.Connection, user_id: UUID) -> User | None:
    row = await conn.fetchrow(
        "SELECT id, email, created_at, is_admin FROM users WHERE id = $1", user_id
    )
    return None if row is None else User(**dict(row))


async def list_users(conn: asyncpg.Connection, limit: int = 500) -> list[User]:
    """The first ``limit`` users, oldest first (the admin page's list)."""
    rows = await conn.fetch(
        "SELECT id, email, created_at, is_admin FROM users ORDER BY created_at, id LIMIT $1",
        limit,
    )
    return [User(**dict(row)) for row in rows]


async def set_admin(conn: asyncpg.Connection, user_id: UUID, is_admin: bool) -> User | None:
    """Promote or demote a user; None when there is no such user."""
    row = await conn.fetchrow(
        "UPDATE users SET is_admin = $2 WHERE id = $1 RETURNING id, email, created_at, is_admin",
        user_id,
        is_admin,
    )
    return None if row is None else User(**dict(row))

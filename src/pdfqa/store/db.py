"""The asyncpg pool and the schema migrations (numbered SQL files applied in order)."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import msgspec

__all__ = ["Pool", "create_pool", "ensure_database", "migrate"]

log = logging.getLogger(__name__)

# Any constant works: it only has to be the same in every process that migrates.
MIGRATION_LOCK = 0x7064_6671_61

_json_encoder = msgspec.json.Encoder()


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` when it does not exist yet (needs CREATEDB rights)."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    name = unquote(urlsplit(dsn).path.lstrip("/")) or "postgres"
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        # Identifiers cannot be bound as parameters; quote_ident-equivalent via format('%I').
        statement = await admin.fetchval("SELECT format('CREATE DATABASE %I', $1::text)", name)
        try:
            await admin.execute(statement)
            log.info("created database %s", name)
        except asyncpg.DuplicateDatabaseError:
            pass
    finally:
        await admin.close()


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("pdfqa.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not applied yet, under an advisory lock; return the names applied."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in _migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied.append(name)
            log.info("applied migration %s", name)
    return applied


async def _keep_state(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release: pdfqa never leaves session state behind (no
    session-level advisory locks, cursors, LISTEN or SET), and the query costs a round trip on
    every release."""


def _encode_json(value: object) -> str:
    return _json_encoder.encode(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    """``jsonb`` columns read and write through msgspec."""
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_json,
        decoder=msgspec.json.decode,
        format="text",
    )


class Pool(asyncpg.Pool):  # type: ignore[misc]
    """asyncpg's pool whose ``acquire`` waits at most ``acquire_timeout`` unless told otherwise,
    so a starved or unreachable database answers ``TimeoutError`` (a 503) instead of hanging."""

    __slots__ = ("_acquire_timeout",)

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    acquire_timeout_s: float = 5.0,
    command_timeout_s: float | None = 30.0,
    statement_timeout_s: float | None = 30.0,
) -> asyncpg.Pool:
    """Open the pool (with the fail-fast limits); the caller closes it."""
    server_settings = {}
    if statement_timeout_s:
        server_settings["statement_timeout"] = str(int(statement_timeout_s * 1000))
    pool = Pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        reset=_keep_state,
        init=_init_connection,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        command_timeout=command_timeout_s,
        server_settings=server_settings,
        timeout=acquire_timeout_s,
    )
    pool._acquire_timeout = acquire_timeout_s
    await pool
    return pool

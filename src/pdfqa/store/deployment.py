"""The ``deployment`` table: one row, the id that scopes this deployment's queues on Redis."""

from __future__ import annotations

from uuid import UUID

import asyncpg

__all__ = ["deployment_id"]


async def deployment_id(conn: asyncpg.Connection) -> UUID:
    """This deployment's id (created by the migrations, the same for every process)."""
    value: UUID = await conn.fetchval("SELECT id FROM deployment")
    return value

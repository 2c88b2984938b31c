"""Cursor pagination of the list endpoints: opaque cursors over (timestamp, id) keys.

A cursor is the sort key of the last item of a page, base64url-encoded; the next page is every
item strictly after it in the list's order (keyset pagination: no OFFSET, stable under inserts).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

import msgspec

from pdfqa.errors import InvalidInput

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Cursor", "decode_cursor", "encode_cursor"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    at: datetime
    id: UUID


def encode_cursor(at: datetime, id_: UUID) -> str:
    raw = msgspec.json.encode(Cursor(at=at, id=id_))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Cursor | None:
    """The cursor's key; :class:`InvalidInput` for anything this module did not make."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInput("The cursor is not valid; start again from the first page.") from exc

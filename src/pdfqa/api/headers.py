"""Header values built from user data."""

from __future__ import annotations

import unicodedata
from typing import Literal
from urllib.parse import quote

__all__ = ["content_disposition"]


def content_disposition(kind: Literal["inline", "attachment"], filename: str) -> str:
    """``kind; filename="ascii fallback"; filename*=UTF-8''percent-encoded`` (RFC 6266/5987).

    Old clients read the quoted ASCII fallback (accents dropped, anything else ``_``); every
    current browser reads ``filename*``, which keeps the name exactly (``文档.pdf``, ``😀.pdf``).
    """
    decomposed = unicodedata.normalize("NFKD", filename)
    ascii_name = (
        "".join(
            c
            if 0x20 <= ord(c) < 0x7F and c not in '"\\'
            else ("" if unicodedata.combining(c) else "_")
            for c in decomposed
        ).strip()
        or "document.pdf"
    )
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"

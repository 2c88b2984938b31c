"""Text that crosses the boundary: control characters refused, display names made harmless.

PostgreSQL refuses NUL in text, terminals and log viewers act on other C0 controls, and Unicode
format characters (bidi overrides such as U+202E, zero-width joiners) make a displayed name read
differently from what it is. Request bodies are checked here (:func:`check_text`, called from the
request Structs' ``__post_init__``, so a bad character is a 400 before any handler runs); names
that are shown back to people go through :func:`display_name`.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["check_text", "display_name", "has_control"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""C0 controls and DEL, except tab, line feed and carriage return (which free text may hold)."""
_CONTROL_ANY = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s+")
"""Every C0 control: none belongs in a one-line value (an e-mail, a name, a title)."""


def has_control(value: str, *, multiline: bool = True) -> bool:
    """Whether ``value`` holds a control character (tab and newlines allowed when multiline)."""
    return bool((_CONTROL if multiline else _CONTROL_ANY).search(value))


def check_text(value: str, field: str, *, multiline: bool = True) -> None:
    """``ValueError`` naming ``field`` if ``value`` holds NUL or another control character.

    Raised inside a msgspec ``__post_init__``, the error becomes a validation error, which the
    API answers with ``400``.
    """
    if has_control(value, multiline=multiline):
        raise ValueError(f"{field} contains a control character (such as NUL); remove it")


def display_name(name: str, *, limit: int = 255) -> str:
    """NFC-normalised, without control or format (``Cf``: bidi, zero-width) characters, one line."""
    name = unicodedata.normalize("NFC", name)
    kept = []
    for char in name:
        category = unicodedata.category(char)
        if category == "Cf":
            continue
        kept.append(" " if category in ("Cc", "Zl", "Zp") else char)
    return _WHITESPACE.sub(" ", "".join(kept)).strip()[:limit].strip()

"""The session cookie: ``HttpOnly``, ``SameSite=Lax``; ``Secure`` and ``__Host-`` over HTTPS.

``PDFQA_COOKIE_SECURE=auto`` (the default) makes the cookie ``Secure`` and names it
``__Host-pdfqa_session`` (which browsers only accept from a secure origin, for path ``/``, with
no ``Domain``, so a sibling subdomain can neither set nor shadow it) whenever the request came
over HTTPS or the host is not localhost; ``always`` and ``never`` force the choice.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie

from pdfqa.settings import Settings

__all__ = ["PLAIN_NAME", "SECURE_NAME", "clear_cookies", "read_session", "session_cookie"]

PLAIN_NAME = "pdfqa_session"
SECURE_NAME = "__Host-pdfqa_session"
_LOCAL = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_secure(settings: Settings, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether this request's session cookie is a ``Secure``, ``__Host-`` one."""
    if settings.cookie_secure != "auto":
        return settings.cookie_secure == "always"
    if connection.url.scheme == "https":
        return True
    host = (connection.url.hostname or "").lower()
    return host not in _LOCAL and not host.endswith(".localhost")


def session_cookie(
    settings: Settings, connection: ASGIConnection[Any, Any, Any, Any], token: str
) -> Cookie:
    secure = is_secure(settings, connection)
    return Cookie(
        key=SECURE_NAME if secure else PLAIN_NAME,
        value=token,
        httponly=True,
        secure=secure,
        samesite="lax",
        max_age=settings.session_ttl_s,
        path="/",
    )


def clear_cookies(
    settings: Settings, connection: ASGIConnection[Any, Any, Any, Any]
) -> list[Cookie]:
    secure = is_secure(settings, connection)
    return [
        Cookie(
            key=SECURE_NAME if secure else PLAIN_NAME,
            value="",
            max_age=0,
            path="/",
            httponly=True,
            secure=secure,
            samesite="lax",
        )
    ]


def read_session(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The session token from either cookie name (the secure one first)."""
    cookies = connection.cookies
    return cookies.get(SECURE_NAME) or cookies.get(PLAIN_NAME)

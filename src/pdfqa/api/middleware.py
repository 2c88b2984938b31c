"""ASGI middleware of pdfqa's own, where Litestar has none: security headers on every response,
an idle-read timeout on request bodies, and Litestar's rate limiter with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from pdfqa.errors import RequestTimeout

__all__ = [
    "RetryAfterRateLimit",
    "auth_rate_limit",
    "body_idle_timeout",
    "request_id",
    "security_headers",
]

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(app: ASGIApp) -> ASGIApp:
    """Every request gets an id (the client's ``X-Request-ID`` when well formed), echoed in the
    response and bound to every log line written while the request runs."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            await app(scope, receive, send_with_id)

    return middleware


HSTS = b"max-age=31536000; includeSubDomains"


def security_headers(app: ASGIApp) -> ASGIApp:
    """``nosniff`` and a same-origin referrer policy everywhere; HSTS on HTTPS requests."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"SAMEORIGIN"),
                ]
                if https:
                    extra.append((b"strict-transport-security", HSTS))
                headers.extend(h for h in extra if h[0] not in names)
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def body_idle_timeout(seconds: float) -> Any:
    """Middleware factory: a body that sends nothing for ``seconds`` ends the request with 408.

    Only reads of the body are timed; once it is complete, ``receive`` (which then waits for
    the client to disconnect, for as long as a stream lasts) is passed through untouched.
    """

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            body_done = False

            async def timed_receive() -> ReceiveMessage:
                nonlocal body_done
                if body_done:
                    return await receive()
                try:
                    async with asyncio.timeout(seconds):
                        message = await receive()
                except TimeoutError:
                    raise RequestTimeout(
                        f"The request body stalled for {seconds:g} s; send it again."
                    ) from None
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                return message

            await app(scope, timed_receive, send)

        return middleware

    return factory


class RetryAfterRateLimit(RateLimitMiddleware):
    """Litestar's rate limiter, whose 429 also says ``Retry-After`` (RFC 9110)."""

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        headers = super().create_response_headers(cache_object)
        if len(cache_object.history) >= self.max_requests:  # only on the 429 itself
            reset = int(headers[self.config.rate_limit_reset_header_key])
            headers["Retry-After"] = str(max(1, reset))
        return headers


def _is_auth(request: Any) -> bool:
    return str(request.url.path).startswith("/api/v1/auth/") and request.method == "POST"


def auth_rate_limit(per_minute: int) -> RateLimitConfig:
    """Per client address, on the ``/api/v1/auth`` endpoints, in the app's ``rate_limit`` store."""
    return RateLimitConfig(
        rate_limit=("minute", per_minute),
        check_throttle_handler=_is_auth,
        middleware_class=RetryAfterRateLimit,
        store="rate_limit",
    )

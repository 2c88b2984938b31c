"""Domain errors -> RFC 9457 problem details, in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import redis.exceptions
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from pdfqa.errors import (
    Busy,
    Conflict,
    Forbidden,
    IngestError,
    InvalidInput,
    NotAPdf,
    NotFound,
    PdfqaError,
    RateLimited,
    RequestTimeout,
    TooLarge,
    Unauthorized,
    UpstreamUnavailable,
    WrongMediaType,
)

__all__ = ["UNAVAILABLE", "problem_details_plugin", "to_problem"]

log = logging.getLogger(__name__)

# Most specific first: the first matching class decides.
STATUS: list[tuple[type[PdfqaError], int, str]] = [
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict"),
    (TooLarge, 413, "Too large"),
    (NotAPdf, 415, "Not a PDF"),
    (WrongMediaType, 415, "Unsupported media type"),
    (RequestTimeout, 408, "Request timeout"),
    (InvalidInput, 400, "Invalid input"),
    (Unauthorized, 401, "Unauthorized"),
    (Busy, 429, "Too many at once"),
    (Forbidden, 403, "Forbidden"),
    (RateLimited, 429, "Too many requests"),
    (IngestError, 422, "Unprocessable PDF"),
    (UpstreamUnavailable, 503, "Service unavailable"),
]


def to_problem(exc: PdfqaError) -> ProblemDetailsException:
    """The problem-details exception for a domain error."""
    for kind, status, title in STATUS:
        if isinstance(exc, kind):
            headers = (
                {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
            )
            return ProblemDetailsException(
                status_code=status, title=title, detail=str(exc), headers=headers
            )
    return ProblemDetailsException(status_code=500, title="Internal error", detail=str(exc))


UNAVAILABLE: tuple[type[Exception], ...] = (
    TimeoutError,  # a pool acquire or a command past its timeout
    ConnectionError,  # refused, reset
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.QueryCanceledError,  # statement_timeout
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""Backing services failing or too slow: 503, so clients retry instead of seeing a 500."""


def unavailable(exc: Exception) -> ProblemDetailsException:
    log.warning("a backing service failed: %r", exc)
    return ProblemDetailsException(
        status_code=503,
        title="Service unavailable",
        detail="A backing service is unavailable or too slow right now; please try again shortly.",
        headers={"Retry-After": "5"},
    )


def problem_details_plugin() -> ProblemDetailsPlugin:
    mapping: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
        PdfqaError: to_problem
    }
    mapping.update(dict.fromkeys(UNAVAILABLE, unavailable))
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            enable_for_all_http_exceptions=True,
            exception_to_problem_detail_map=mapping,
        )
    )

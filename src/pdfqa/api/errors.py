"""Domain errors -> RFC 9457 problem details, in one place."""

from __future__ import annotations

from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from pdfqa.errors import (
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

__all__ = ["problem_details_plugin", "to_problem"]

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


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            enable_for_all_http_exceptions=True,
            exception_to_problem_detail_map={PdfqaError: to_problem},
        )
    )

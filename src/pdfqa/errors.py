"""The domain error tree.

Services and stores raise these; the API maps them to HTTP problem details in one place
(``pdfqa.api.errors``), the worker records them as an upload's failure reason.

    PdfqaError
    ├── NotFound              the thing does not exist, or is not the caller's
    ├── Conflict              the thing is in the wrong state (e-mail taken, upload not ready)
    ├── InvalidInput          the caller sent something we cannot accept
    │   ├── TooLarge          over a configured size limit or quota
    │   ├── NotAPdf           the bytes are not a PDF
    │   ├── WrongMediaType    the body is not of the media type the endpoint reads (JSON)
    │   └── RequestTimeout    the client stopped sending its body part-way
    ├── Unauthorized          no valid credentials
    ├── Busy                  the caller holds too many of something at once (open streams)
    ├── Forbidden             the request may not do this (cross-site, registration closed)
    ├── RateLimited           too many attempts or requests; ``retry_after`` says when to retry
    ├── IngestError           a PDF could not be made searchable (the reason is shown to the user)
    └── UpstreamUnavailable   a dependency (database, Redis, vector store, model endpoint) failed
"""

from __future__ import annotations

__all__ = [
    "Busy",
    "Conflict",
    "Forbidden",
    "IngestError",
    "InvalidInput",
    "NotAPdf",
    "NotFound",
    "PdfqaError",
    "RateLimited",
    "RequestTimeout",
    "TooLarge",
    "Unauthorized",
    "UpstreamUnavailable",
    "WrongMediaType",
]


class PdfqaError(Exception):
    """Base of every error pdfqa raises on purpose; ``str(err)`` is safe to show a user."""


class NotFound(PdfqaError):
    """The resource does not exist or belongs to someone else (never say which)."""


class Conflict(PdfqaError):
    """The resource exists but its state forbids the operation."""


class InvalidInput(PdfqaError):
    """The request is malformed or violates a rule."""


class TooLarge(InvalidInput):
    """The input is over a configured size limit."""


class NotAPdf(InvalidInput):
    """The bytes do not start like a PDF file."""


class WrongMediaType(InvalidInput):
    """The body's media type is not the one the endpoint reads."""


class RequestTimeout(InvalidInput):
    """The client went quiet while sending its body."""


class Forbidden(PdfqaError):
    """The caller may not do this (a cross-site request, closed registration, not an admin)."""


class RateLimited(PdfqaError):
    """Too many attempts or requests in a window; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class Unauthorized(PdfqaError):
    """Missing, invalid, expired or revoked credentials."""


class Busy(PdfqaError):
    """The caller already holds as many of a limited thing (open streams) as allowed."""


class IngestError(PdfqaError):
    """A PDF could not be ingested; the message is the reason shown on the upload."""


class UpstreamUnavailable(PdfqaError):
    """A backing service or model endpoint failed or timed out."""

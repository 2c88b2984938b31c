"""The domain error tree.

Services and stores raise these; the API maps them to HTTP problem details in one place
(``pdfqa.api.errors``), the worker records them as an upload's failure reason.

    PdfqaError
    ├── NotFound              the thing does not exist, or is not the caller's
    ├── Conflict              the thing is in the wrong state (e-mail taken, upload not ready)
    ├── InvalidInput          the caller sent something we cannot accept
    │   ├── TooLarge          over a configured size limit
    │   └── NotAPdf           the bytes are not a PDF
    ├── Unauthorized          no valid credentials
    ├── Busy                  the caller holds too many of something at once (open streams)
    ├── IngestError           a PDF could not be made searchable (the reason is shown to the user)
    └── UpstreamUnavailable   a dependency (database, Redis, vector store, model endpoint) failed
"""

from __future__ import annotations

__all__ = [
    "Busy",
    "Conflict",
    "IngestError",
    "InvalidInput",
    "NotAPdf",
    "NotFound",
    "PdfqaError",
    "TooLarge",
    "Unauthorized",
    "UpstreamUnavailable",
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


class Unauthorized(PdfqaError):
    """Missing, invalid, expired or revoked credentials."""


class Busy(PdfqaError):
    """The caller already holds as many of a limited thing (open streams) as allowed."""


class IngestError(PdfqaError):
    """A PDF could not be ingested; the message is the reason shown on the upload."""


class UpstreamUnavailable(PdfqaError):
    """A backing service or model endpoint failed or timed out."""

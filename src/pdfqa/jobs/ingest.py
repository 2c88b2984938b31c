"""The ingestion job: a thin wrapper that calls :func:`pdfqa.ingest.ingest_upload`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import redis.exceptions
from arq import Retry

from pdfqa.errors import UpstreamUnavailable
from pdfqa.ingest import IngestResult, UploadGone, fail_upload, ingest_upload
from pdfqa.resources import Resources

__all__ = ["MAX_TRIES", "TRANSIENT", "ingest"]

log = logging.getLogger(__name__)

MAX_TRIES = 3
TRANSIENT = (
    UpstreamUnavailable,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    redis.exceptions.ConnectionError,
)
"""Failures of infrastructure, worth another try; anything else fails the upload at once."""


async def ingest(ctx: dict[str, Any], upload_id: str) -> dict[str, Any]:
    """arq job: ingest one upload; returns an :class:`IngestResult` as a dict."""
    res: Resources = ctx["resources"]
    uid = UUID(upload_id)
    try:
        async with asyncio.timeout(res.settings.job_timeout_s):
            result = await ingest_upload(res, uid)
    except UploadGone:
        result = IngestResult(upload_id=upload_id, status="deleted")
    except TimeoutError:
        result = await fail_upload(
            res, uid, f"Ingestion took longer than {res.settings.job_timeout_s} s."
        )
    except TRANSIENT as exc:
        if ctx["job_try"] < MAX_TRIES:
            log.warning("upload %s: transient failure, retrying: %r", upload_id, exc)
            raise Retry(defer=5 * ctx["job_try"]) from exc
        result = await fail_upload(res, uid, f"A backing service was unavailable: {exc}")
    except Exception:
        log.exception("upload %s: unexpected error", upload_id)
        result = await fail_upload(res, uid, "An internal error stopped the ingestion.")
    return msgspec.to_builtins(result)  # type: ignore[no-any-return]

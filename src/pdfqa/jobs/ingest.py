"""The ingestion and OCR jobs: thin wrappers over :func:`pdfqa.lifecycle.ingest_upload` and
:func:`pdfqa.lifecycle.ocr_upload`.

Each holds the job's lease while it runs, retries what is transient (arq re-runs the job, which
resumes from its checkpoint) and turns everything else into a failed upload with a reason a
person can act on. Details go to the log, never into the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import redis.exceptions
from arq import Retry

from pdfqa import lifecycle, queue
from pdfqa.errors import IngestError, UpstreamUnavailable
from pdfqa.ingest import Stopped
from pdfqa.lifecycle import IngestResult, UploadGone
from pdfqa.resources import Resources

__all__ = ["TRANSIENT", "ingest", "ocr", "reason_for"]

log = logging.getLogger(__name__)

TRANSIENT = (
    UpstreamUnavailable,
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.QueryCanceledError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""Failures of infrastructure, worth another try; anything else fails the upload at once."""

UNAVAILABLE = (
    "A backing service (the database, Redis, the vector store or the embedding endpoint) stayed "
    "unavailable through {n} attempts; please upload the file again later."
)
INTERNAL = "An internal error stopped the ingestion; the operator can find the details in the logs."


def reason_for(exc: BaseException, attempts: int) -> str:
    """The reason shown on a failed upload: what happened, never a path or a traceback."""
    if isinstance(exc, IngestError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return lifecycle.MISSING_FILE
    if isinstance(exc, TRANSIENT):
        return UNAVAILABLE.format(n=attempts)
    return INTERNAL


Work = Callable[..., Awaitable[IngestResult]]


async def ingest(ctx: dict[str, Any], upload_id: str, deployment: str | None = None) -> Any:
    """arq job: ingest one upload; returns an :class:`IngestResult` as a dict."""
    res: Resources = ctx["resources"]
    return await _run(
        ctx, upload_id, deployment, lifecycle.ingest_upload, res.settings.job_timeout_s
    )


async def ocr(ctx: dict[str, Any], upload_id: str, deployment: str | None = None) -> Any:
    """arq job (``ocr`` queue): OCR an upload's handed-off pages; an :class:`IngestResult`."""
    res: Resources = ctx["resources"]
    return await _run(
        ctx, upload_id, deployment, lifecycle.ocr_upload, res.settings.ocr_job_timeout_s
    )


async def _run(
    ctx: dict[str, Any], upload_id: str, deployment: str | None, work: Work, timeout_s: int
) -> Any:
    res: Resources = ctx["resources"]
    if deployment is not None and deployment != str(res.queues.deployment):
        # Another deployment's job on our queue (a misconfiguration): touch nothing. That
        # deployment's reconciler sees the job gone and queues it again.
        log.error("job for deployment %s taken by deployment %s", deployment, res.queues.deployment)
        return {"upload_id": upload_id, "status": "foreign"}
    uid = UUID(upload_id)
    stop: asyncio.Event | None = ctx.get("stop")
    deadline = asyncio.timeout(timeout_s)
    try:
        async with queue.hold_lease(res.redis, ctx["job_id"]), deadline:
            result = await work(res, uid, stop=stop)
    except UploadGone:
        result = IngestResult(upload_id=upload_id, status="deleted")
    except Stopped:
        log.info("upload %s: stopped at a page boundary for shutdown; will resume", upload_id)
        raise Retry(defer=0) from None
    except TimeoutError as exc:
        if not deadline.expired():
            return await _transient(ctx, res, uid, exc)
        result = await lifecycle.fail(res, uid, f"Ingestion took longer than {timeout_s} s.")
    except TRANSIENT as exc:
        return await _transient(ctx, res, uid, exc)
    except FileNotFoundError as exc:
        # Deleted meanwhile, or lost by the store: no bug to trace, the path is the detail.
        log.warning("upload %s: its file is missing from the file store: %s", upload_id, exc)
        result = await lifecycle.fail(res, uid, lifecycle.MISSING_FILE)
    except IngestError as exc:
        log.info("upload %s failed: %s", upload_id, exc)
        result = await lifecycle.fail(res, uid, str(exc))
    except Exception:
        log.exception("upload %s: unexpected error", upload_id)
        result = await lifecycle.fail(res, uid, INTERNAL)
    return msgspec.to_builtins(result)


async def _transient(ctx: dict[str, Any], res: Resources, uid: UUID, exc: BaseException) -> Any:
    """Retry later (arq re-runs the job, which resumes), or fail once the attempts are used."""
    if ctx["job_try"] < res.settings.ingest_max_attempts:
        log.warning("upload %s: transient failure, retrying: %r", uid, exc)
        raise Retry(defer=min(30, 5 * ctx["job_try"])) from exc
    log.error("upload %s: transient failures used up its attempts: %r", uid, exc)
    result = await lifecycle.fail(res, uid, reason_for(exc, ctx["job_try"]))
    return msgspec.to_builtins(result)

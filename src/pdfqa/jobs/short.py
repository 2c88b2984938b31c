"""The short jobs, on the ``default`` queue: an upload's clean-up after a delete, and the
reconciler. A burst of long ingestions on the ``ingest`` queue never delays them."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import msgspec

from pdfqa import lifecycle
from pdfqa.resources import Resources

__all__ = ["purge_upload", "reconcile"]

log = logging.getLogger(__name__)


async def purge_upload(ctx: dict[str, Any], upload_id: str) -> dict[str, str]:
    """arq job: delete a deleted upload's file and vectors (its row is gone already)."""
    res: Resources = ctx["resources"]
    await lifecycle.purge(res, UUID(upload_id))
    return {"upload_id": upload_id, "status": "purged"}


async def reconcile(ctx: dict[str, Any]) -> Any:
    """arq job: one reconciliation pass (see :func:`pdfqa.lifecycle.reconcile`)."""
    res: Resources = ctx["resources"]
    report = await lifecycle.reconcile(res)
    if report.requeued or report.failed:
        log.info(
            "reconciler: %d re-queued, %d failed (of %d checked)",
            report.requeued,
            report.failed,
            report.checked,
        )
    return msgspec.to_builtins(report)

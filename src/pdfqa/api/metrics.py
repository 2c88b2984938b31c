"""``/metrics``: Prometheus text format, by Litestar's ``PrometheusController`` (HTTP requests,
counted by its middleware with ``group_path=True``: route templates, never ids) plus pdfqa's own
(:mod:`pdfqa.metrics`), with the queue depths read from Redis at each scrape."""

from __future__ import annotations

import contextlib

from litestar import Response, get
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from pdfqa import metrics
from pdfqa.api.deps import Deps
from pdfqa.queue import QUEUE_KINDS

__all__ = ["MetricsController", "prometheus_config"]


def prometheus_config() -> PrometheusConfig:
    return PrometheusConfig(
        app_name="pdfqa",
        prefix="pdfqa_http",
        group_path=True,
        exclude=["^/metrics$", "^/static/"],
    )


class MetricsController(PrometheusController):
    path = "/metrics"

    @get(include_in_schema=False, tags=["ops"])
    async def get(self, resources: Deps) -> Response[bytes]:
        """The metrics, the queue depths refreshed first."""
        with contextlib.suppress(Exception):  # Redis away: the other metrics still answer
            async with resources.redis.pipeline(transaction=False) as pipe:
                for kind in QUEUE_KINDS:
                    pipe.zcard(resources.queues.name(kind))
                depths = await pipe.execute()
            for kind, depth in zip(QUEUE_KINDS, depths, strict=True):
                metrics.QUEUE_DEPTH.labels(kind).set(depth)
        response: Response[bytes] = await PrometheusController.get.fn(self)
        return response

"""pdfqa's own Prometheus metrics (``prometheus-client``); Litestar's ``PrometheusConfig``
counts the HTTP requests. Both live in the default registry and ``/metrics`` serves it.

A separate ``pdfqa worker`` exposes its metrics on its own port (``PDFQA_WORKER_METRICS_PORT``,
``prometheus_client.start_http_server``); the API's ``/metrics`` shows the API process's
metrics, those of its embedded worker included. The queue depth is read from Redis (``ZCARD``
of each queue) when ``/metrics`` is scraped.

Rates are left to PromQL, as Prometheus intends: pages/s ingested is
``rate(pdfqa_ingested_pages_total[1m])``, a cache's hit rate is
``rate(pdfqa_cache_requests_total{result="hit"}[5m]) / rate(pdfqa_cache_requests_total[5m])``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CACHE",
    "EMBED_BATCH",
    "INGEST_CHUNKS",
    "INGEST_FAILURES",
    "INGEST_PAGES",
    "JOBS",
    "JOB_SECONDS",
    "QUEUE_DEPTH",
    "RERANK",
    "RERANK_FAILURES",
    "RETRIEVAL",
    "TTFT",
    "cache_result",
    "failure_kind",
    "timed",
]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

QUEUE_DEPTH = Gauge(
    "pdfqa_queue_depth", "Jobs waiting in each queue (read from Redis at scrape time).", ["queue"]
)
JOBS = Counter(
    "pdfqa_jobs",
    "Jobs run, by function and outcome (complete, retry, failed, aborted).",
    ["function", "outcome"],
)
JOB_SECONDS = Histogram(
    "pdfqa_job_duration_seconds",
    "Wall-clock time of one job run, by function and outcome.",
    ["function", "outcome"],
    buckets=JOB_BUCKETS,
)
INGEST_PAGES = Counter("pdfqa_ingested_pages", "PDF pages ingested (rate(): pages/s).")
INGEST_CHUNKS = Counter("pdfqa_ingested_chunks", "Chunks embedded and stored (rate(): chunks/s).")
INGEST_FAILURES = Counter(
    "pdfqa_ingestion_failures", "Uploads that failed, by kind of reason.", ["reason"]
)
EMBED_BATCH = Histogram(
    "pdfqa_embedding_batch_seconds",
    "Time to embed one batch of chunks.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
RETRIEVAL = Histogram(
    "pdfqa_retrieval_seconds",
    "Time to retrieve a question's passages (embedding included).",
    buckets=LATENCY_BUCKETS,
)
RERANK = Histogram(
    "pdfqa_rerank_seconds",
    "Time the rerank endpoint took to score one question's candidates (PDFQA_RERANK_MODEL).",
    buckets=LATENCY_BUCKETS,
)
RERANK_FAILURES = Counter(
    "pdfqa_rerank_failures",
    "Rerank requests that failed; the question kept the fused order.",
)
TTFT = Histogram(
    "pdfqa_time_to_first_token_seconds",
    "From a question's arrival to the first token of its answer.",
    buckets=LATENCY_BUCKETS,
)
CACHE = Counter(
    "pdfqa_cache_requests",
    "Redis cache look-ups, by cache and result (hit, miss).",
    ["cache", "result"],
)

# Labels known up front, so that their series exist (at 0) from the first scrape.
for _cache in ("query_embedding", "retrieval"):
    for _result in ("hit", "miss"):
        CACHE.labels(_cache, _result)


def cache_result(cache: str, hit: bool) -> None:
    CACHE.labels(cache, "hit" if hit else "miss").inc()


@contextmanager
def timed(histogram: Histogram, *labels: str) -> Iterator[None]:
    """Observe the time spent inside (when it ends without an exception, too)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        target = histogram.labels(*labels) if labels else histogram
        target.observe(time.perf_counter() - start)


_FAILURE_KINDS = (
    ("no longer in storage", "missing_file"),
    ("interrupted", "interrupted"),
    ("stayed unavailable", "unavailable"),
    ("took longer than", "timeout"),
    ("internal error", "internal"),
    ("administrator", "aborted"),
    ("too many pages", "too_many_pages"),
    ("password", "encrypted"),
    ("no text", "no_text"),
)


def failure_kind(reason: str) -> str:
    """A label of few values for a failure's reason (the reason itself is free text)."""
    lowered = reason.lower()
    for needle, kind in _FAILURE_KINDS:
        if needle in lowered:
            return kind
    return "invalid_pdf"

"""Traces and structured logs, through the real app, worker, PostgreSQL and Redis.

Tracing is process-wide in OpenTelemetry (one global provider): this module turns it on with
an in-memory exporter and turns pdfqa's side of it off again at the end (instrumentations
removed, no context injected), so other modules run as with tracing off.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from litestar import Litestar
from litestar.testing import AsyncTestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pdfqa import logs, queue, tracing
from pdfqa.api.app import create_app
from pdfqa.resources import Resources
from pdfqa.settings import Settings
from tests.integration.conftest import login, on_app, run_jobs, upload
from tests.integration.test_conversations import ask_sse, conversation

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = tracing.configure(
        Settings(), service="pdfqa-test", processor=SimpleSpanProcessor(spans)
    )
    assert provider is not None
    assert tracing.enabled()
    yield spans
    tracing.disable()


@pytest.fixture
async def client(settings: Settings, exporter: InMemorySpanExporter) -> AsyncIterator[Client]:
    configured = msgspec.structs.replace(
        settings, queue_name=f"{settings.queue_name}:{uuid.uuid4().hex[:8]}"
    )
    async with AsyncTestClient(app=create_app(configured), timeout=60) as client:
        exporter.clear()
        yield client


def _trace(spans: list[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def _names(spans: list[ReadableSpan]) -> set[str]:
    return {s.name for s in spans}


async def test_one_trace_from_the_upload_request_through_redis_into_the_job(
    client: Client, exporter: InMemorySpanExporter, corpus: Path
) -> None:
    resources: Resources = client.app.state.resources
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    assert on_app(client, run_jobs, resources) == 1
    spans = list(exporter.get_finished_spans())
    request = [
        s
        for s in spans
        if s.kind == trace.SpanKind.SERVER and s.name.startswith("POST /api/v1/uploads")
    ]
    assert len(request) == 1, [s.name for s in spans if s.kind == trace.SpanKind.SERVER]
    assert request[0].context is not None
    one = _trace(spans, request[0].context.trace_id)
    names = _names(one)
    # The request, its enqueue, and the worker's job with its stages: one trace.
    assert {"enqueue ingest", "job ingest", "extract page"} <= names, names
    assert {"embed batch", "upsert batch"} <= names, names
    # Pages are cut into chunks in the extraction child: each page's span says how many.
    pages = [s for s in one if s.name == "extract page"]
    assert sum(int((s.attributes or {}).get("chunks", 0)) for s in pages) >= 1
    assert all("chunk_ms" in (s.attributes or {}) for s in pages)
    job = next(s for s in one if s.name == "job ingest")
    enqueue = next(s for s in one if s.name == "enqueue ingest")
    assert job.parent is not None
    assert enqueue.context is not None
    assert job.parent.span_id == enqueue.context.span_id
    assert job.attributes is not None
    assert job.attributes["upload.id"] == accepted["id"]
    # The official instrumentations: PostgreSQL and Redis calls inside the same trace.
    systems = {str((s.attributes or {}).get("db.system")) for s in one}
    assert {"postgresql", "redis"} <= systems, systems


async def test_a_questions_spans(
    client: Client, exporter: InMemorySpanExporter, corpus: Path
) -> None:
    resources: Resources = client.app.state.resources
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
    on_app(client, run_jobs, resources)
    conv = await conversation(client, headers, accepted["id"])
    exporter.clear()
    events = await ask_sse(client, headers, conv["id"], "What is Quivr?")
    assert events[-1][0] == "done"
    spans = list(exporter.get_finished_spans())
    request = next(
        s
        for s in spans
        if s.kind == trace.SpanKind.SERVER and s.name.startswith("POST /api/v1/conversations")
    )
    assert request.context is not None
    one = _trace(spans, request.context.trace_id)
    names = _names(one)
    assert {"answer question", "retrieve", "stream answer"} <= names, names
    # exclude_spans: no span per SSE message sent.
    assert not any(s.name.endswith("http send") for s in one), names
    streaming = next(s for s in one if s.name == "stream answer")
    assert any(e.name == "first token" for e in streaming.events)


async def test_a_job_carrying_a_trace_context_runs_in_a_worker_with_tracing_off(
    settings: Settings, exporter: InMemorySpanExporter, corpus: Path
) -> None:
    """The job's extra keyword argument is taken and ignored where tracing is off."""
    configured = msgspec.structs.replace(
        settings, queue_name=f"{settings.queue_name}:{uuid.uuid4().hex[:8]}"
    )
    async with AsyncTestClient(app=create_app(configured), timeout=60) as client:
        resources: Resources = client.app.state.resources
        headers = await login(client)
        accepted = await upload(client, headers, corpus / "quivr_sample.pdf")
        # Delete the plain job; queue it again as a traced API would (traceparent inside).
        job_id = resources.queues.job_id("ingest", accepted["id"])
        name = resources.queues.name("ingest")
        on_app(client, queue.clear_job, resources.redis, name, job_id)
        carrier = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
        on_app(
            client,
            resources.redis.enqueue_job,
            "ingest",
            accepted["id"],
            str(resources.queues.deployment),
            _job_id=job_id,
            _queue_name=name,
            trace_context=carrier,
        )
        with tracing.switched_off():
            assert on_app(client, run_jobs, resources) == 1
        body = (await client.get(f"/api/v1/uploads/{accepted['id']}", headers=headers)).json()
        assert body["status"] == "ready"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure(Settings(log_format="auto"), stream=stream)  # not a terminal: JSON
    yield stream
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_json_logs_bound_to_request_trace_job_and_upload(
    client: Client, log_lines: io.StringIO, corpus: Path
) -> None:
    resources: Resources = client.app.state.resources
    headers = await login(client)
    r = await client.get("/api/v1/uploads", headers={**headers, "X-Request-ID": "req-42"})
    assert r.headers["x-request-id"] == "req-42"
    assert len((await client.get("/health")).headers["x-request-id"]) == 32  # made up
    bad = await upload(client, headers, corpus / "bad" / "truncated.pdf")
    on_app(client, run_jobs, resources)
    lines = _json_lines(log_lines)
    assert lines, "nothing was logged"
    failed = [line for line in lines if "failed" in line["event"] and bad["id"] in line["event"]]
    assert failed, [line["event"] for line in lines]
    line = failed[0]
    assert line["upload_id"] == bad["id"]
    assert line["job_id"] == resources.queues.job_id("ingest", bad["id"])
    assert len(line["trace_id"]) == 32
    assert line["level"] == "info"
    assert line["logger"].startswith("pdfqa")
    # A line written while a request runs carries its id.
    with structlog.contextvars.bound_contextvars(request_id="req-7"):
        logging.getLogger("pdfqa.test").warning("inside a request")
    last = _json_lines(log_lines)[-1]
    assert (last["event"], last["request_id"], last["level"]) == (
        "inside a request",
        "req-7",
        "warning",
    )

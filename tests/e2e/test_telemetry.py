"""Telemetry as an operator turns it on, in real processes: traces exported over OTLP/HTTP to a
collector (here a local receiver that decodes the protobuf requests, as a collector does) and
printed by the console exporter, and a separate worker's Prometheus metrics on its own port."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pdfqa.settings import Settings
from tests.conftest import metric_samples, metric_value
from tests.e2e.conftest import (
    BIN,
    Process,
    environment,
    free_port,
    register,
    upload_ready,
    wait_healthy,
)

pytestmark = pytest.mark.e2e


class ExportedSpan:
    def __init__(self, service: str, trace_id: str, name: str) -> None:
        self.service, self.trace_id, self.name = service, trace_id, name

    def __repr__(self) -> str:
        return f"{self.service}:{self.name}:{self.trace_id[:8]}"


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: ``POST /v1/traces`` with an ``ExportTraceServiceRequest``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.spans: list[ExportedSpan] = []
        self.paths: set[str] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self) -> list[ExportedSpan]:
        with self.lock:
            return list(self.spans)


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                spans += [
                    ExportedSpan(attributes["service.name"], s.trace_id.hex(), s.name)
                    for s in scope.spans
                ]
        with self.server.lock:
            self.server.spans += spans
            self.server.paths.add(self.path)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_traces_reach_an_otlp_collector_and_the_console_and_a_worker_serves_its_metrics(
    settings: Settings,
    corpus: Path,
    processes: list[Process],
    tmp_path: Path,
    collector: Collector,
) -> None:
    # One data directory: the API stores the file, the worker reads it; the API never opens the
    # embedded vector store (a Qdrant server in production; see test_processes).
    env = environment(
        settings, PDFQA_DATA_DIR=str(tmp_path / "data"), PDFQA_OTLP_ENDPOINT=collector.url
    )
    port, metrics_port = free_port(), free_port()
    api = Process(
        [str(BIN / "pdfqa"), "serve", "--port", str(port), "--no-worker"],
        {**env, "PDFQA_TRACE_CONSOLE": "true"},
        tmp_path / "api.log",
    )
    worker = Process(
        [str(BIN / "pdfqa"), "worker", "--queue", "ingest"],
        {**env, "PDFQA_WORKER_METRICS_PORT": str(metrics_port)},
        tmp_path / "worker.log",
    )
    processes.extend([api, worker])
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, api)
    with httpx.Client(base_url=base, timeout=30) as http:
        headers = register(http)
        _, events = upload_ready(http, headers, corpus / "quivr_sample.pdf", worker)
    chunks = events[-1][1]["chunks"]

    # The worker's own metrics, on its own port, in Prometheus's text format.
    page = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    samples = metric_samples(page)
    jobs = metric_value(samples, "pdfqa_jobs_total", function="ingest", outcome="complete")
    assert jobs == 1.0, sorted(k for k in samples if k[0].startswith("pdfqa_"))
    assert metric_value(samples, "pdfqa_ingested_chunks_total") == chunks
    assert metric_value(samples, "pdfqa_ingested_pages_total") >= 1

    # Both processes export in batches (every few seconds, and at exit): stopping them flushes
    # what is left, so every span has arrived once both have exited. (uvicorn ends by raising
    # the SIGTERM it caught again: the API's exit status is the signal's.)
    assert worker.stop() == 0, worker.output()[-3000:]
    api.stop()
    assert "Application shutdown complete" in api.output(), api.output()[-3000:]
    spans = collector.received()
    assert collector.paths == {"/v1/traces"}
    by_service = {s.service for s in spans}
    assert by_service == {"pdfqa-api", "pdfqa-worker"}, spans
    upload_spans = [
        s for s in spans if s.service == "pdfqa-api" and s.name.startswith("POST /api/v1/uploads")
    ]
    assert upload_spans, spans
    trace_id = upload_spans[0].trace_id
    in_worker = {s.name for s in spans if s.trace_id == trace_id and s.service == "pdfqa-worker"}
    assert {"job ingest", "extract page", "embed batch"} <= in_worker, in_worker
    # The console exporter printed the same spans as JSON in the API's output.
    assert f'"trace_id": "0x{trace_id}"' in api.output()
    # And the worker, without the console exporter, printed none.
    assert '"trace_id": "0x' not in worker.output()

"""OpenTelemetry traces: off by default, at no cost; OTLP or the console when configured.

Off (no ``PDFQA_OTLP_ENDPOINT``, no ``PDFQA_TRACE_CONSOLE``): no SDK tracer provider is set,
so every span below comes from the API's no-op tracer, no instrumentation is installed and the
app gets no tracing middleware. On: :func:`configure` sets a provider with a batch exporter and
instruments asyncpg, redis and httpx with their official instrumentations; the app adds
Litestar's ``OpenTelemetryPlugin``.

The trace context crosses Redis inside the arq job: :func:`inject` puts the W3C
``traceparent`` of the enqueueing span into the job's keyword arguments, :func:`extract` reads
it back in the worker (a worker with tracing off just starts no recording span; the job works
the same).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from pdfqa.settings import Settings

__all__ = [
    "TRACE_KWARG",
    "configure",
    "disable",
    "enabled",
    "extract",
    "flush",
    "inject",
    "switched_off",
    "tracer",
]

log = logging.getLogger(__name__)

TRACE_KWARG = "trace_context"
"""The job keyword argument that carries the W3C trace context."""

tracer = trace.get_tracer("pdfqa")
"""pdfqa's own spans (a proxy: no-op until a provider is set)."""


class _State:
    provider: TracerProvider | None = None


def enabled() -> bool:
    """Whether this process records spans."""
    return _State.provider is not None


def configure(
    settings: Settings, *, service: str = "pdfqa", processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """Turn tracing on as the settings say (or with ``processor``, tests' in-memory exporter).

    Once per process: OpenTelemetry's global provider cannot be replaced. Returns the provider,
    or None when tracing stays off.
    """
    if _State.provider is not None:
        return _State.provider
    exporters: list[SpanExporter] = []
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        exporters.append(OTLPSpanExporter(endpoint=endpoint))
    if settings.trace_console:
        exporters.append(ConsoleSpanExporter())
    if not exporters and processor is None:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name or service})
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _State.provider = provider
    _instrument()
    log.info("tracing on (%s)", ", ".join(type(e).__name__ for e in exporters) or "in-process")
    return provider


def _instrument() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()


def disable() -> None:
    """Stop tracing in this process (tests): instrumentations removed, provider shut down."""
    provider, _State.provider = _State.provider, None
    if provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().uninstrument()
    HTTPXClientInstrumentor().uninstrument()
    provider.shutdown()


def flush(timeout_s: float = 5.0) -> None:
    """Export the spans still buffered (blocking: call it off the event loop). A process ends
    through here as well as through the provider's exit hook, which a signal can skip (uvicorn
    ends by raising the SIGTERM it caught again)."""
    if _State.provider is not None:
        _State.provider.force_flush(int(timeout_s * 1000))


@contextlib.contextmanager
def switched_off() -> Iterator[None]:
    """As a process with tracing off sees it: no context injected or extracted (tests)."""
    provider, _State.provider = _State.provider, None
    try:
        yield
    finally:
        _State.provider = provider


def inject() -> dict[str, str]:
    """The current trace context as a carrier (empty when nothing is being traced)."""
    carrier: dict[str, str] = {}
    if _State.provider is not None:
        propagate.inject(carrier)
    return carrier


def extract(carrier: dict[str, Any] | None) -> context.Context | None:
    """The context a job's carrier names; None without one (or with tracing off here)."""
    if not carrier or _State.provider is None:
        return None
    return propagate.extract({str(k): str(v) for k, v in carrier.items()})

"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import httpx
from litestar import Litestar, Router
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from pdfqa import errors
from pdfqa.api.admin import JobsAdminController
from pdfqa.api.auth import AdminController, AuthController
from pdfqa.api.conversations import ConversationsController, FeedbackController
from pdfqa.api.crosssite import json_only, same_origin
from pdfqa.api.deps import provide_resources, provide_user
from pdfqa.api.docs import docs_plugins
from pdfqa.api.errors import problem_details_plugin
from pdfqa.api.health import health, ready
from pdfqa.api.meta import MetaController
from pdfqa.api.metrics import MetricsController, prometheus_config
from pdfqa.api.middleware import auth_rate_limit, body_idle_timeout, request_id, security_headers
from pdfqa.api.uploads import JobsController, UploadsController
from pdfqa.api.web import static_files_router, web_router
from pdfqa.jobs.worker import Supervisor
from pdfqa.resources import open_resources
from pdfqa.settings import Settings, csv, load_settings
from pdfqa.tracing import configure as configure_tracing
from pdfqa.tracing import flush as flush_traces

__all__ = ["app_from_environment", "create_app"]

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 1024 * 1024
"""Room for the multipart envelope around a file at the size limit."""

QUIET_STATUSES = {*range(400, 500)}
"""Client errors are answered, not logged with a traceback; every other exception is."""
QUIET_ERRORS = {
    kind
    for kind in vars(errors).values()
    if isinstance(kind, type) and issubclass(kind, errors.PdfqaError)
} - {errors.PdfqaError, errors.UpstreamUnavailable}


def create_app(
    settings: Settings, *, http_transport: httpx.AsyncBaseTransport | None = None
) -> Litestar:
    """Build the app; its lifespan opens the resources (and, embedded, runs a worker).

    ``http_transport`` is the testing seam for the model endpoints (see ``open_resources``).
    """

    # Litestar's rate limiter keeps its counters in a store: Redis, so that every API process
    # shares them. The client connects lazily and is closed by the lifespan.
    limiter_redis = Redis.from_url(settings.redis_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with (
            contextlib.aclosing(limiter_redis),
            open_resources(settings, http_transport=http_transport) as resources,
        ):
            app.state.resources = resources
            resources.hub.start()
            supervisor = task = None
            if settings.embedded_worker:
                supervisor = Supervisor(resources)
                task = asyncio.create_task(supervisor.run(), name="embedded-worker")
            app.state.supervisor = supervisor

            async def begin_shutdown() -> None:
                """SIGTERM: end the progress streams now, stop taking jobs, checkpoint."""
                resources.stopping.set()
                await resources.hub.close()
                if supervisor is not None:
                    await supervisor.stop()

            shutting_down: list[asyncio.Task[None]] = []
            restore = _chain_sigterm(
                lambda: shutting_down.append(asyncio.create_task(begin_shutdown()))
            )
            try:
                yield
            finally:
                restore()
                if shutting_down:
                    await asyncio.gather(*shutting_down, return_exceptions=True)
                resources.stopping.set()
                if supervisor is not None and task is not None:
                    await supervisor.stop()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await asyncio.to_thread(flush_traces)  # the last requests' spans

    api = Router(
        "/api/v1",
        route_handlers=[
            AuthController,
            AdminController,
            JobsAdminController,
            JobsController,
            ConversationsController,
            FeedbackController,
            MetaController,
        ],
        dependencies={"user": Provide(provide_user)},
    )
    uploads = Router(
        "/api/v1",
        route_handlers=[UploadsController],
        dependencies={"user": Provide(provide_user)},
        request_max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD,
    )
    hosts = csv(settings.allowed_hosts)
    plugins: list[Any] = [problem_details_plugin()]
    provider = configure_tracing(settings, service="pdfqa-api")
    if provider is not None:  # off: no middleware at all
        from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

        plugins.append(
            OpenTelemetryPlugin(
                OpenTelemetryConfig(
                    tracer_provider=provider,
                    exclude_spans=["receive", "send"],  # not one span per SSE message
                    exclude=["^/metrics$", "^/static/", "^/health$"],
                )
            )
        )
    metrics_config = prometheus_config()
    return Litestar(
        route_handlers=[
            health,
            ready,
            MetricsController,
            api,
            uploads,
            web_router(),
            static_files_router(),
        ],
        dependencies={"resources": Provide(provide_resources, sync_to_thread=False)},
        guards=[same_origin, json_only],
        middleware=[
            request_id,
            metrics_config.middleware,
            security_headers,
            body_idle_timeout(settings.body_idle_timeout_s),
            auth_rate_limit(settings.auth_rate_per_minute).middleware,
        ],
        stores={
            "rate_limit": RedisStore(limiter_redis, namespace=f"{settings.queue_name}:ratelimit")
        },
        allowed_hosts=AllowedHostsConfig(allowed_hosts=hosts, www_redirect=False)
        if hosts
        else None,
        lifespan=[lifespan],
        plugins=plugins,
        logging_config=LoggingConfig(
            # The root logger is pdfqa's (``pdfqa.logs``: JSON lines); Litestar's records go
            # there too instead of to a handler and format of its own.
            configure_root_logger=False,
            loggers={"litestar": {"level": "INFO", "propagate": True}},
            log_exceptions="always",
            disable_stack_trace={*QUIET_STATUSES, *QUIET_ERRORS},
        ),
        openapi_config=OpenAPIConfig(
            title="pdfqa",
            version="0.1.0",
            description="Chat with your PDFs: uploads, background ingestion, cited answers.",
            path="/api/docs",
            render_plugins=docs_plugins(settings.api_docs),
        ),
        debug=False,
    )


def _chain_sigterm(on_term: Callable[[], None]) -> Callable[[], None]:
    """Run ``on_term`` on the loop when SIGTERM arrives, before the server's own handler.

    uvicorn ends the server only once every connection is closed (or its graceful timeout
    passed): ending the endless progress streams at the signal lets it finish in time. Returns
    the function that puts the previous handler back. Outside the main thread (tests), a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(on_term)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)

    return restore


def app_from_environment() -> Litestar:
    """The app configured by ``PDFQA_*`` variables (uvicorn's factory for several processes)."""
    return create_app(load_settings(os.environ))

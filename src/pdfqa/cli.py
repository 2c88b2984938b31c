"""``pdfqa serve | worker | migrate``: the command-line edge, where the environment is read."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from pdfqa.settings import Settings, load_settings

__all__ = ["main"]

log = logging.getLogger("pdfqa")

KEEP_ALIVE_S = 75
"""Seconds an idle client connection stays open (above the 60 s idle limit of common proxies)."""


def _configure_logging(settings: Settings) -> None:
    from pdfqa import logs

    logs.configure(settings)


def serve(settings: Settings, processes: int = 1) -> None:
    import uvicorn

    if processes > 1 and settings.embedded_worker:
        raise SystemExit("--processes above 1 needs --no-worker (run `pdfqa worker` separately)")
    mode = "with an embedded worker" if settings.embedded_worker else "API only"
    if settings.qdrant_url:
        vectors = f"Qdrant at {settings.qdrant_url}"
    elif settings.embedded_vectors == "edge":
        vectors = f"embedded qdrant-edge in {settings.data_dir / 'edge'}"
    else:
        vectors = f"qdrant-client local mode in {settings.data_dir / 'qdrant'}"
    print(  # noqa: T201 - the one line a person running `make run` looks for
        f"pdfqa is starting on http://{settings.host}:{settings.port}/ ({mode}; {vectors})",
        flush=True,
    )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "loop": "uvloop",
        "http": "httptools",
        # SIGTERM: open requests get this long; progress streams end at once (see create_app).
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_timeout_s)),
        # An idle connection is kept longer than clients keep theirs (httpx: 5 s, uvicorn's
        # default too; proxies: 60 s), so the server never closes one just as a client sends
        # a request on it, which the client sees as a reset connection (make load saw one).
        "timeout_keep_alive": KEEP_ALIVE_S,
        # uvicorn's records go through pdfqa's handler (JSON lines off a terminal; see logs).
        "log_config": None,
    }
    if processes > 1:
        # Each process builds its own app from the same environment.
        uvicorn.run(
            "pdfqa.api.app:app_from_environment", factory=True, workers=processes, **options
        )
    else:
        from pdfqa.api.app import create_app

        uvicorn.run(create_app(settings), **options)


def worker(settings: Settings, queues: Sequence[str] | None = None) -> None:
    from pdfqa.jobs.worker import run_worker
    from pdfqa.queue import QUEUE_KINDS

    kinds = [k for k in QUEUE_KINDS if not queues or k in queues]
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        # Each worker process serves its own metrics; Prometheus scrapes every worker.
        start_http_server(settings.worker_metrics_port, addr=settings.host)
        log.info(
            "worker metrics on http://%s:%d/metrics", settings.host, settings.worker_metrics_port
        )
    from pdfqa.tracing import configure as configure_tracing

    configure_tracing(settings, service="pdfqa-worker")
    sys.exit(run_worker(settings, kinds))


def migrate(settings: Settings) -> None:
    from pdfqa.store import db

    async def run() -> list[str]:
        await db.ensure_database(settings.database_url)
        pool = await db.create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await db.migrate(conn)
        finally:
            await pool.close()

    applied = asyncio.run(run())
    log.info("migrations applied: %s", ", ".join(applied) or "none (up to date)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pdfqa", description="Chat with your PDFs.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the API (and, by default, a worker)")
    serve_cmd.add_argument("--host", help="address to bind (PDFQA_HOST)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (PDFQA_PORT)")
    serve_cmd.add_argument(
        "--no-worker", action="store_true", help="do not run the embedded worker"
    )
    serve_cmd.add_argument(
        "--processes", type=int, default=1, help="API processes (with --no-worker; default 1)"
    )
    from pdfqa.queue import QUEUE_KINDS

    worker_cmd = commands.add_parser(
        "worker", help="run supervised arq workers (exit 1 when Redis stays unreachable)"
    )
    worker_cmd.add_argument(
        "--queue",
        action="append",
        choices=QUEUE_KINDS,
        help="serve this queue (repeatable); default: every queue (" + ", ".join(QUEUE_KINDS) + ")",
    )
    commands.add_parser("migrate", help="create the database if needed and apply migrations")
    args = parser.parse_args(argv)

    environ = dict(os.environ)
    if args.command == "serve":
        if args.host:
            environ["PDFQA_HOST"] = args.host
        if args.port:
            environ["PDFQA_PORT"] = str(args.port)
        if args.no_worker:
            environ["PDFQA_EMBEDDED_WORKER"] = "false"
    settings = load_settings(environ)
    _configure_logging(settings)
    if args.command == "serve":
        os.environ.update({k: v for k, v in environ.items() if k.startswith("PDFQA_")})
        serve(settings, args.processes)
    elif args.command == "worker":
        worker(settings, args.queue)
    else:
        migrate(settings)


if __name__ == "__main__":
    main()

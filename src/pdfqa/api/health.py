"""``/health`` (the process lives) and ``/ready`` (its dependencies answer)."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from pdfqa.api.deps import Deps
from pdfqa.jobs.worker import Supervisor

__all__ = ["health", "ready"]

CHECK_TIMEOUT_S = 3.0


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    checks: dict[str, str]


@get("/health", tags=["ops"])
async def health() -> dict[str, str]:
    """200 while the process is alive."""
    return {"status": "ok"}


@get("/ready", tags=["ops"])
async def ready(resources: Deps, state: State) -> Response[Readiness]:
    """Whether PostgreSQL, Redis and the vector store answer and the embedded worker runs
    (503 naming the failing dependency and its error if not; 503 while shutting down)."""

    async def database() -> None:
        async with resources.db.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def redis() -> None:
        await resources.redis.ping()

    checks = {"database": database(), "redis": redis(), "vector_store": resources.vectors.ping()}
    results = await asyncio.gather(
        *(asyncio.wait_for(c, CHECK_TIMEOUT_S) for c in checks.values()), return_exceptions=True
    )
    report = {
        name: "ok" if not isinstance(r, BaseException) else _describe(r)
        for name, r in zip(checks, results, strict=True)
    }
    supervisor: Supervisor | None = getattr(state, "supervisor", None)
    if supervisor is not None:
        report["worker"] = supervisor.liveness()
    if resources.stopping.is_set():
        report["process"] = "error: shutting down"
    ok = all(v == "ok" for v in report.values())
    return Response(
        Readiness(ready=ok, checks=report),
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


def _describe(exc: BaseException) -> str:
    """``error: <kind>: <message>`` (a timeout has no message of its own)."""
    if isinstance(exc, TimeoutError):
        return f"error: no answer within {CHECK_TIMEOUT_S:g} s"
    return f"error: {type(exc).__name__}: {exc!s}"[:300]

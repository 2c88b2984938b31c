"""Routes of the web interface: ``/`` and its pages, and ``/static`` for the assets."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader, State
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from pdfqa import accounts
from pdfqa.api.cookies import read_session
from pdfqa.errors import Unauthorized

__all__ = ["CONTENT_SECURITY_POLICY", "static_files_router", "web_router"]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; worker-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Every script, style and font comes from this server: the pages work offline."""

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def _web_dir() -> Path:
    return Path(str(resources.files("pdfqa.api.web")))


@cache
def _page(name: str) -> str:
    return (_web_dir() / "pages" / f"{name}.html").read_text(encoding="utf-8")


def _html(name: str) -> Response[str]:
    return Response(_page(name), media_type="text/html; charset=utf-8", headers=_HEADERS)


@get("/", include_in_schema=False)
async def home() -> Redirect:
    return Redirect("/library")


@get("/login", include_in_schema=False)
async def login() -> Response[str]:
    return _html("login")


async def _signed_in(name: str, request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """The page, or (no session, or an ended one) a redirect to the login page, which returns
    here afterwards: a logged-out visit never shows the app, nor makes a request that fails."""
    token = read_session(request)
    try:
        await accounts.authenticate(state.resources, token)
    except Unauthorized:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = {"next": here, **({"expired": "1"} if token else {})}
        return Redirect(f"/login?{urlencode(query)}", headers={"Cache-Control": "no-store"})
    return _html(name)


@get("/library", include_in_schema=False)
async def library(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    return await _signed_in("library", request, state)


@get("/chat", include_in_schema=False)
async def chat(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    return await _signed_in("chat", request, state)


@get("/account", include_in_schema=False)
async def account() -> Response[str]:
    return _html("account")


@get("/admin", include_in_schema=False)
async def admin() -> Response[str]:
    """The jobs dashboard (its data answers 403 to anyone but an admin)."""
    return _html("admin")


def web_router() -> Router:
    """The pages: ``/`` (to the library), ``/login``, ``/library``, ``/chat``, ``/account`` and
    ``/admin``."""
    return Router(
        "/", route_handlers=[home, login, library, chat, account, admin], include_in_schema=False
    )


def static_files_router() -> Router:
    """``/static``: styles, ES modules and the vendored pdf.js, all served by the app."""
    return create_static_files_router(
        "/static",
        directories=[_web_dir() / "static"],
        cache_control=CacheControlHeader(no_cache=True),
        name="web-static",
    )

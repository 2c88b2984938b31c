"""Cross-site request checks, as Litestar guards on every route.

* :func:`same_origin` refuses an unsafe request (POST, PUT, PATCH, DELETE) that a browser says
  comes from another site: ``Sec-Fetch-Site`` other than ``same-origin``/``none``, or else an
  ``Origin`` whose host differs from the request's own ``Host`` (and from
  ``PDFQA_TRUSTED_ORIGINS``). Requests without either header are not from a browser page (curl,
  SDKs) and pass; browsers send one or both on every unsafe request. This holds for login too
  (login CSRF), and covers what ``SameSite=Lax`` does not: sibling subdomains and other ports.
* :func:`json_only` answers ``415`` when an endpoint that reads a JSON body receives anything
  but ``application/json``. A cross-site page can only send JSON after a CORS preflight, which
  this app never grants, so this is a second, independent barrier.

Why no CSRF token (Litestar's ``CSRFConfig``): with the two checks above, every browser that
could carry the session cookie across sites either announces the request's origin or cannot
send JSON without a preflight; a double-submit token would add a round trip and state to every
client for no request it would stop. The one write that is not JSON, the multipart upload, is
covered by the origin check and by ``SameSite=Lax``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from pdfqa.errors import Forbidden, WrongMediaType
from pdfqa.settings import csv

__all__ = ["json_only", "same_origin"]

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CROSS_SITE = "This request came from another site; it is only accepted from pdfqa's own pages."


def _origin_host(origin: str) -> str | None:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.netloc.lower()


def same_origin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Refuse an unsafe request a browser marks as coming from another origin (403)."""
    if connection.scope.get("method") not in UNSAFE:
        return
    headers = connection.headers
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        raise Forbidden(CROSS_SITE)
    origin = headers.get("origin")
    if origin is None:
        return
    host = _origin_host(origin)
    own = headers.get("host", "").lower()
    settings = connection.app.state.resources.settings
    trusted = {_origin_host(o) for o in csv(settings.trusted_origins)}
    if host is None or (host != own and host not in trusted):
        raise Forbidden(CROSS_SITE)


def json_only(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """``415`` unless a JSON-reading endpoint's body is ``application/json``."""
    if connection.scope.get("method") not in UNSAFE:
        return
    if "data" not in handler.parsed_fn_signature.parameters:
        return
    media_type = connection.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise WrongMediaType("Send the body as JSON with Content-Type: application/json.")

"""Dependencies every handler draws on: the process's resources and the logged-in user."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from pdfqa import accounts
from pdfqa.resources import Resources
from pdfqa.store.users import User

__all__ = [
    "SESSION_COOKIE",
    "CurrentUser",
    "Deps",
    "credentials",
    "provide_resources",
    "provide_user",
]

SESSION_COOKIE = "pdfqa_session"

Deps = NamedDependency[Resources]
"""Handler parameter ``resources: Deps``: the process's open pools and clients."""
CurrentUser = NamedDependency[User]
"""Handler parameter ``user: CurrentUser``: the logged-in user (401 without credentials)."""


def provide_resources(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


def credentials(request: Request[Any, Any, Any]) -> str | None:
    """The bearer token, or the session cookie the browser holds."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(SESSION_COOKIE)


async def provide_user(request: Request[Any, Any, Any], resources: Deps) -> User:
    return await accounts.authenticate(resources, credentials(request))

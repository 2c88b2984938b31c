"""Dependencies every handler draws on: the process's resources and the logged-in user."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import Parameter

from pdfqa import accounts
from pdfqa.api.cookies import PLAIN_NAME, read_session
from pdfqa.pagination import MAX_LIMIT
from pdfqa.resources import Resources
from pdfqa.store.users import User

__all__ = [
    "SESSION_COOKIE",
    "CurrentUser",
    "PageCursor",
    "PageLimit",
    "Deps",
    "by_cookie",
    "credentials",
    "provide_resources",
    "provide_user",
]

SESSION_COOKIE = PLAIN_NAME

Deps = NamedDependency[Resources]
"""Handler parameter ``resources: Deps``: the process's open pools and clients."""
PageLimit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="Items per page.")]
PageCursor = Annotated[
    str | None, Parameter(max_length=200, description="``next_cursor`` of the previous page.")
]
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
    return read_session(request)


def by_cookie(request: Request[Any, Any, Any]) -> bool:
    """Whether the request authenticates with the session cookie (no bearer token)."""
    return not request.headers.get("authorization") and read_session(request) is not None


async def provide_user(request: Request[Any, Any, Any], resources: Deps) -> User:
    return await accounts.authenticate(resources, credentials(request))

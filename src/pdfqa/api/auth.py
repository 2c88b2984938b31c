"""``/api/v1/auth``: register, log in (token + HTTP-only cookie), log out."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import Cookie
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pdfqa import accounts
from pdfqa.api.deps import SESSION_COOKIE, CurrentUser, Deps, credentials
from pdfqa.store.users import User

__all__ = ["AuthController"]


class Credentials(msgspec.Struct, frozen=True):
    email: str
    password: str


class LoginOut(msgspec.Struct, frozen=True):
    token: str
    user: User


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post("/register", status_code=HTTP_201_CREATED)
    async def register(self, data: JSONBody[Credentials], resources: Deps) -> User:
        """Create an account."""
        return await accounts.register(resources, data.email, data.password)

    @post("/login", status_code=HTTP_200_OK)
    async def login(self, data: JSONBody[Credentials], resources: Deps) -> Response[LoginOut]:
        """Exchange credentials for a token; also sets the browser's session cookie."""
        user, token = await accounts.login(resources, data.email, data.password)
        cookie = Cookie(
            key=SESSION_COOKIE,
            value=token,
            httponly=True,
            samesite="lax",
            max_age=resources.settings.session_ttl_s,
            path="/",
        )
        return Response(LoginOut(token=token, user=user), cookies=[cookie])

    @post("/logout", status_code=HTTP_204_NO_CONTENT)
    async def logout(
        self, request: Request[Any, Any, Any], resources: Deps, user: CurrentUser
    ) -> Response[None]:
        """Revoke the token (or cookie) this request carries."""
        token = credentials(request)
        if token:
            await accounts.logout(resources, token)
        return Response(
            None,
            status_code=HTTP_204_NO_CONTENT,
            cookies=[Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/", httponly=True)],
        )

"""``/api/v1/auth``: register, log in (token + HTTP-only cookie), who is logged in, log out (here or
everywhere), change the password; ``/api/v1/admin/users``: an admin creates, lists, promotes and
demotes accounts."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pdfqa import accounts
from pdfqa.api.cookies import clear_cookies, session_cookie
from pdfqa.api.deps import CurrentUser, Deps, credentials
from pdfqa.sanitize import check_text
from pdfqa.store.users import User

__all__ = ["AdminController", "AuthController"]

Email = Annotated[str, msgspec.Meta(max_length=254)]
Password = Annotated[str, msgspec.Meta(max_length=accounts.MAX_PASSWORD)]


class Credentials(msgspec.Struct, frozen=True):
    email: Email
    password: Password

    def __post_init__(self) -> None:
        check_text(self.email, "email", multiline=False)
        check_text(self.password, "password", multiline=False)


class PasswordChange(msgspec.Struct, frozen=True):
    current_password: Password
    new_password: Password

    def __post_init__(self) -> None:
        check_text(self.new_password, "new_password", multiline=False)


class LoginOut(msgspec.Struct, frozen=True):
    token: str
    user: User


class AdminFlag(msgspec.Struct, frozen=True):
    is_admin: bool


class LoggedOut(msgspec.Struct, frozen=True):
    sessions_ended: int


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post("/register", status_code=HTTP_201_CREATED)
    async def register(self, data: JSONBody[Credentials], resources: Deps) -> User:
        """Create an account (if registration is open to the address)."""
        return await accounts.register(resources, data.email, data.password)

    @post("/login", status_code=HTTP_200_OK)
    async def login(
        self, data: JSONBody[Credentials], request: Request[Any, Any, Any], resources: Deps
    ) -> Response[LoginOut]:
        """Exchange credentials for a token; also sets the browser's session cookie."""
        user, token = await accounts.login(
            resources, data.email, data.password, client_address(request)
        )
        cookie = session_cookie(resources.settings, request, token)
        return Response(LoginOut(token=token, user=user), cookies=[cookie])

    @get("/me")
    async def me(self, user: CurrentUser) -> User:
        """The account this request is logged in as."""
        return user

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
            cookies=clear_cookies(resources.settings, request),
        )

    @post("/logout-everywhere", status_code=HTTP_200_OK)
    async def logout_everywhere(
        self, request: Request[Any, Any, Any], resources: Deps, user: CurrentUser
    ) -> Response[LoggedOut]:
        """End every session of this account, on every device (this one included)."""
        ended = await accounts.logout_everywhere(resources, user.id)
        return Response(
            LoggedOut(sessions_ended=ended), cookies=clear_cookies(resources.settings, request)
        )

    @post("/password", status_code=HTTP_204_NO_CONTENT)
    async def change_password(
        self,
        data: JSONBody[PasswordChange],
        request: Request[Any, Any, Any],
        resources: Deps,
        user: CurrentUser,
    ) -> None:
        """Change the password; every other session ends, this one stays."""
        await accounts.change_password(
            resources, user, data.current_password, data.new_password, credentials(request)
        )


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]

    @post("/users", status_code=HTTP_201_CREATED)
    async def create_user(
        self, data: JSONBody[Credentials], resources: Deps, user: CurrentUser
    ) -> User:
        """An admin creates an account, even with registration closed."""
        accounts.require_admin(resources.settings, user)
        return await accounts.create_user(resources, data.email, data.password)

    @get("/users")
    async def list_users(self, resources: Deps, user: CurrentUser) -> list[User]:
        """Every account (oldest first, at most 500), with its admin flag."""
        accounts.require_admin(resources.settings, user)
        return await accounts.list_users(resources)

    @put("/users/{user_id:uuid}/admin")
    async def set_admin(
        self, user_id: FromPath[UUID], data: JSONBody[AdminFlag], resources: Deps, user: CurrentUser
    ) -> User:
        """Promote (``{"is_admin": true}``) or demote a user. Not oneself, nor a user
        ``PDFQA_ADMIN_EMAILS`` names (409)."""
        return await accounts.set_admin(resources, user, user_id, data.is_admin)

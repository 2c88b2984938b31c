"""Admins: the first registered user, users named in PDFQA_ADMIN_EMAILS, users an admin
promotes; every admin endpoint answers 403 to everyone else. A database of this module's own,
so that "the first registered user" is one this module registers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.api.app import create_app
from pdfqa.settings import Settings
from tests.conftest import _drop

Client = AsyncTestClient[Litestar]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def admin_settings(settings: Settings) -> Iterator[Settings]:
    name = f"pdfqa_admins_{uuid.uuid4().hex[:8]}"
    yield msgspec.structs.replace(
        settings,
        database_url=settings.database_url.rsplit("/", 1)[0] + "/" + name,
        queue_name=f"{settings.queue_name}:{uuid.uuid4().hex[:8]}",
        admin_emails="boss@corp.example",
    )
    asyncio.run(_drop(name))


@pytest.fixture
async def client(admin_settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(admin_settings), timeout=60) as client:
        yield client


async def account(client: Client, email: str) -> tuple[dict[str, Any], dict[str, str]]:
    r = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    body = r.json()
    return body["user"], {"Authorization": f"Bearer {body['token']}"}


async def test_first_user_named_users_and_promotion(client: Client) -> None:
    first, first_h = await account(client, "first@example.com")
    second, second_h = await account(client, "second@example.com")
    boss, boss_h = await account(client, "Boss@corp.example")
    assert first["is_admin"] is True
    assert second["is_admin"] is False
    assert boss["is_admin"] is True  # named by the setting (case-insensitively)

    admin_paths: list[tuple[str, str, Any]] = [
        ("GET", "/api/v1/admin/users", None),
        ("PUT", f"/api/v1/admin/users/{second['id']}/admin", {"is_admin": True}),
        ("POST", "/api/v1/admin/users", {"email": "x@example.com", "password": PASSWORD}),
    ]
    for method, path, body in admin_paths:
        r = await client.request(method, path, json=body, headers=second_h)
        assert r.status_code == 403, (path, r.status_code, r.text)
        r = await client.request(method, path, json=body, headers={})
        assert r.status_code == 401, (path, r.status_code)

    r = await client.get("/api/v1/admin/users", headers=first_h)
    assert r.status_code == 200
    flags = {u["email"]: u["is_admin"] for u in r.json()}
    assert flags == {
        "first@example.com": True,
        "second@example.com": False,
        "Boss@corp.example": True,
    }

    # The settings-named admin promotes the second user; the promotion holds for new requests.
    r = await client.put(
        f"/api/v1/admin/users/{second['id']}/admin", json={"is_admin": True}, headers=boss_h
    )
    assert r.status_code == 200, r.text
    assert r.json()["is_admin"] is True
    r = await client.get("/api/v1/admin/users", headers=second_h)
    assert r.status_code == 200

    # Demotion: not oneself, not a user the setting names; another admin can.
    r = await client.put(
        f"/api/v1/admin/users/{second['id']}/admin", json={"is_admin": False}, headers=second_h
    )
    assert r.status_code == 409
    r = await client.put(
        f"/api/v1/admin/users/{boss['id']}/admin", json={"is_admin": False}, headers=first_h
    )
    assert r.status_code == 409
    assert "PDFQA_ADMIN_EMAILS" in r.json()["detail"]
    r = await client.put(
        f"/api/v1/admin/users/{second['id']}/admin", json={"is_admin": False}, headers=first_h
    )
    assert r.status_code == 200
    assert r.json()["is_admin"] is False
    r = await client.get("/api/v1/admin/users", headers=second_h)
    assert r.status_code == 403
    r = await client.put(
        f"/api/v1/admin/users/{uuid.uuid4()}/admin", json={"is_admin": True}, headers=first_h
    )
    assert r.status_code == 404

"""Accounts, sessions and the rule that every /api/v1 route but two needs credentials."""

from __future__ import annotations

import re
import uuid

from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.api.deps import SESSION_COOKIE
from tests.integration.conftest import login, on_app

Client = AsyncTestClient[Litestar]
PUBLIC = {"/api/v1/auth/register", "/api/v1/auth/login"}
JSON = {"content-type": "application/json"}


async def test_every_api_route_but_register_and_login_requires_credentials(client: Client) -> None:
    checked = 0
    for route in client.app.routes:
        if not route.path.startswith("/api/v1") or route.path in PUBLIC:
            continue
        path = re.sub(r"\{\w+:uuid\}", str(uuid.uuid4()), route.path)
        path = re.sub(r"\{\w+:str\}", "x", path)
        path = re.sub(r"\{\w+:int\}", "1", path)
        for method in route.methods - {"OPTIONS", "HEAD"}:
            r = await client.request(method, path, headers=JSON)
            assert r.status_code == 401, (method, route.path, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")
            checked += 1
    assert checked >= 15


async def test_register_login_use_cookie_and_logout(client: Client) -> None:
    email = f"Mixed.Case-{uuid.uuid4().hex[:8]}@Example.com"
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": "long enough pw"}
    )
    assert r.status_code == 201
    assert r.json()["email"] == email
    assert "password" not in r.text

    r = await client.post(
        "/api/v1/auth/register", json={"email": email.lower(), "password": "another one!"}
    )
    assert r.status_code == 409

    r = await client.post(
        "/api/v1/auth/login", json={"email": email.upper(), "password": "nope nope"}
    )
    assert r.status_code == 401

    r = await client.post(
        "/api/v1/auth/login", json={"email": email.lower(), "password": "long enough pw"}
    )
    assert r.status_code == 200
    token = r.json()["token"]
    set_cookie = r.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in set_cookie
    assert "HttpOnly" in set_cookie
    assert "SameSite=lax" in set_cookie or "samesite=lax" in set_cookie.lower()

    # The cookie alone authenticates (the browser's way) ...
    assert (await client.get("/api/v1/uploads")).status_code == 200
    client.cookies.clear()
    # ... and so does the bearer token (the API client's way).
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/uploads", headers=bearer)).status_code == 200
    r = await client.get("/api/v1/auth/me", headers=bearer)
    assert r.status_code == 200
    assert r.json()["email"] == email
    assert "password" not in r.text

    assert (await client.post("/api/v1/auth/logout", headers=bearer)).status_code == 204
    r = await client.get("/api/v1/uploads", headers=bearer)
    assert r.status_code == 401


async def test_weak_passwords_and_bad_emails_are_refused(client: Client) -> None:
    r = await client.post("/api/v1/auth/register", json={"email": "a@b.co", "password": "short"})
    assert r.status_code == 400
    assert "at least" in r.json()["detail"]
    r = await client.post(
        "/api/v1/auth/register", json={"email": "nope", "password": "long enough pw"}
    )
    assert r.status_code == 400
    r = await client.post("/api/v1/auth/register", json={"email": "x@y.z"})
    assert r.status_code == 400


async def test_passwords_and_tokens_are_stored_hashed(client: Client) -> None:
    headers = await login(client)
    token = headers["Authorization"].removeprefix("Bearer ")
    pool = client.app.state.resources.db
    hashes = on_app(client, pool.fetch, "SELECT password_hash FROM users")
    sessions = on_app(client, pool.fetch, "SELECT token_hash FROM sessions")
    assert all(h["password_hash"].startswith("scrypt$") for h in hashes)
    assert all(token.encode() not in bytes(s["token_hash"]) for s in sessions)


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    r = await client.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "ready": True,
        "checks": {"database": "ok", "redis": "ok", "vector_store": "ok"},
    }
    r = await client.get("/api/docs/openapi.json")
    assert r.status_code == 200
    assert "/api/v1/uploads" in r.json()["paths"]

"""The web pages' session check: a logged-out visit is redirected before any of the app is sent
(no flash of the library, no API request that fails with 401 in the browser's console)."""

from __future__ import annotations

import uuid

from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa.api.cookies import PLAIN_NAME

Client = AsyncTestClient[Litestar]


async def test_signed_in_pages_redirect_to_login_without_a_session(client: Client) -> None:
    for path, target in [
        ("/library", "/login?next=%2Flibrary"),
        ("/chat?c=abc&docs=1", "/login?next=%2Fchat%3Fc%3Dabc%26docs%3D1"),
    ]:
        r = await client.get(path, follow_redirects=False)
        assert r.status_code in (302, 303), (path, r.status_code)
        assert r.headers["location"] == target
        assert "pdfqa" not in r.text  # nothing of the page itself
    # An ended session (the cookie is still there) says so on the login page.
    client.cookies.set(PLAIN_NAME, "not-a-live-token")
    r = await client.get("/chat", follow_redirects=False)
    assert r.headers["location"] == "/login?next=%2Fchat&expired=1"
    client.cookies.clear()
    # The login page itself is always served.
    r = await client.get("/login", follow_redirects=False)
    assert r.status_code == 200
    assert "Log in" in r.text


async def test_signed_in_pages_are_served_with_a_live_session(client: Client) -> None:
    credentials = {
        "email": f"page-{uuid.uuid4().hex[:8]}@example.com",
        "password": "a long password",
    }
    assert (await client.post("/api/v1/auth/register", json=credentials)).status_code == 201
    assert (await client.post("/api/v1/auth/login", json=credentials)).status_code == 200
    for path, marker in [("/library", 'id="uploads"'), ("/chat", 'id="conversations"')]:
        r = await client.get(path, follow_redirects=False)
        assert r.status_code == 200, (path, r.status_code)
        assert marker in r.text
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert (await client.post("/api/v1/auth/logout")).status_code in (200, 204)
    r = await client.get("/library", follow_redirects=False)
    assert r.status_code in (302, 303)

"""Hostile users against the real app: cross-site writes, media types, malformed input, files,
login throttling, sessions, registration rules, quotas and pagination.

Real PostgreSQL, Redis (Litestar's rate-limit store included), worker and Qdrant (local mode).
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from pdfqa import accounts
from pdfqa.api.app import create_app
from pdfqa.resources import Resources
from pdfqa.settings import Settings
from tests.integration.conftest import login, on_app, run_jobs, upload
from tests.integration.test_conversations import parse_sse
from tests.pdfs import text_pdf

Client = AsyncTestClient[Litestar]
PASSWORD = "correct horse battery"


@contextlib.asynccontextmanager
async def app_with(settings: Settings, **changes: Any) -> AsyncIterator[Client]:
    configured = msgspec.structs.replace(
        settings, queue_name=f"{settings.queue_name}:{uuid.uuid4().hex[:8]}", **changes
    )
    async with AsyncTestClient(app=create_app(configured), timeout=60) as client:
        yield client


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


async def cookie_login(client: Client) -> str:
    """Register and log in; the client keeps the session cookie. Returns the e-mail."""
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    r = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return email


# --- Cross-site requests and media types ----------------------------------------------------


async def test_foreign_origin_cookie_writes_are_refused(client: Client) -> None:
    await cookie_login(client)
    body = {"upload_ids": [str(uuid.uuid4())]}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.local:8080"},  # another port
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain
    ):
        r = await client.post("/api/v1/conversations", json=body, headers=headers)
        assert "another site" in problem(r, 403)["detail"]
    r = await client.post(
        "/api/v1/uploads",
        files={"file": ("a.pdf", text_pdf(["x"]), "application/pdf")},
        headers={"Origin": "https://evil.example"},
    )
    problem(r, 403)
    # Login CSRF: a foreign page cannot log the browser in either.
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": "a@example.com", "password": PASSWORD},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    problem(r, 403)
    # The app's own pages pass (404: the upload id is made up, but the request got through).
    own = {"Origin": "http://testserver.local", "Sec-Fetch-Site": "same-origin"}
    r = await client.post("/api/v1/conversations", json=body, headers=own)
    problem(r, 404)


async def test_json_endpoints_accept_only_application_json(client: Client) -> None:
    await cookie_login(client)
    raw = b'{"upload_ids": []}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        r = await client.post("/api/v1/conversations", content=raw, headers=headers)
        problem(r, 415)
    r = await client.post(
        "/api/v1/auth/login",
        content=b'{"email": "a@example.com", "password": "correct horse"}',
        headers={"content-type": "text/plain"},
    )
    problem(r, 415)
    assert "set-cookie" not in r.headers


# --- Malformed input --------------------------------------------------------------------------


async def test_malformed_multipart_is_a_400(client: Client) -> None:
    headers = await login(client)
    pdf = text_pdf(["hello"])
    cases = {
        "no boundary": (b"--x\r\n", "multipart/form-data"),
        "bad part header": (
            b"--b\r\nContent-Disposition form-data; name=file\r\n\r\n%PDF-1.4\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        "10 KB filename": (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="'
            + b"a" * 10_000
            + b'.pdf"\r\n\r\n'
            + pdf
            + b"\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        "300-character filename": (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="'
            + b"a" * 300
            + b'.pdf"\r\n\r\n'
            + pdf
            + b"\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        "truncated": (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n' + pdf,
            "multipart/form-data; boundary=b",
        ),
        "not multipart": (pdf, "application/pdf"),
    }
    for name, (body, content_type) in cases.items():
        r = await client.post(
            "/api/v1/uploads", content=body, headers={**headers, "content-type": content_type}
        )
        if name == "300-character filename":
            assert r.status_code == 202, r.text  # a long name is cut, not an error
            assert len(r.json()["name"]) <= 255
            continue
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        problem(r, r.status_code)


async def test_control_characters_in_json_are_a_400(client: Client) -> None:
    headers = await login(client)
    for path, body in (
        ("/api/v1/auth/register", {"email": "a\x00b@example.com", "password": PASSWORD}),
        ("/api/v1/auth/login", {"email": "a\x00b@example.com", "password": PASSWORD}),
        ("/api/v1/auth/login", {"email": "a@example.com", "password": "pass\x00word!"}),
        ("/api/v1/conversations", {"upload_ids": [str(uuid.uuid4())], "title": "t\x00"}),
        ("/api/v1/conversations", {"upload_ids": [str(uuid.uuid4())], "title": "t\x1b[31m"}),
        ("/api/v1/conversations", {"upload_ids": ["not-a-uuid"]}),
        ("/api/v1/conversations", {"upload_ids": [str(uuid.uuid4())], "title": "x" * 201}),
        (f"/api/v1/conversations/{uuid.uuid4()}/messages", {"question": "why\x00?"}),
        (f"/api/v1/conversations/{uuid.uuid4()}/messages", {"question": "x" * 4001}),
    ):
        r = await client.post(path, json=body, headers=headers)
        problem(r, 400)
    for body in ({"vote": "up", "comment": "bad\x00"}, {"vote": "up", "comment": "x" * 2001}):
        r = await client.put(
            f"/api/v1/messages/{uuid.uuid4()}/feedback", json=body, headers=headers
        )
        problem(r, 400)
    r = await client.post(
        "/api/v1/conversations", content=b"{not json", headers={**headers, **JSON}
    )
    problem(r, 400)
    r = await client.post("/api/v1/conversations", content=b"\xff\xfe", headers={**headers, **JSON})
    problem(r, 400)
    # A NUL or a huge id in a path segment is "no such job", not a database error.
    for job in ("ingest:%00x", "x" * 500, "%E2%80%AE"):
        r = await client.get(f"/api/v1/jobs/{job}", headers=headers)
        problem(r, 404)
    r = await client.get("/api/v1/uploads?limit=0", headers=headers)
    problem(r, 400)
    r = await client.get("/api/v1/uploads?cursor=not-a-cursor", headers=headers)
    problem(r, 400)


JSON = {"content-type": "application/json"}


# --- Files ------------------------------------------------------------------------------------


async def test_the_header_check_refuses_polyglots_and_accepts_what_readers_accept(
    client: Client,
) -> None:
    headers = await login(client)
    html = b"<html><script>alert(document.cookie)</script></html>\n"
    polyglot = text_pdf(["hello"], prefix=html)
    r = await client.post(
        "/api/v1/uploads", files={"file": ("p.pdf", polyglot, "application/pdf")}, headers=headers
    )
    assert "%PDF-" in problem(r, 415)["detail"]
    late = text_pdf(["hello"], prefix=b"\0" * 1100)
    r = await client.post(
        "/api/v1/uploads", files={"file": ("l.pdf", late, "application/pdf")}, headers=headers
    )
    problem(r, 415)
    junk = text_pdf(["hello"], prefix=b"junk before the header\n")
    r = await client.post(
        "/api/v1/uploads", files={"file": ("j.pdf", junk, "application/pdf")}, headers=headers
    )
    assert r.status_code == 202, r.text


async def test_names_are_cleaned_and_downloads_keep_non_latin_names(client: Client) -> None:
    headers = await login(client)
    pdf = text_pdf(["hello"])
    for sent, shown in (
        ("文档.pdf", "文档.pdf"),
        ("😀.pdf", "😀.pdf"),
        ("Cafe\u0301.pdf", "Café.pdf"),  # NFC
        ("invoice\u202egpj.pdf", "invoicegpj.pdf"),  # a bidi override removed
        ("a\u200bb.pdf", "ab.pdf"),  # zero-width space removed
    ):
        accepted = await upload_bytes(client, headers, pdf, sent)
        assert accepted["name"] == shown
        r = await client.get(f"/api/v1/uploads/{accepted['id']}/file", headers=headers)
        assert r.status_code == 200, r.text
        assert r.content == pdf
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "sandbox"
        disposition = r.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="')
        disposition.encode("ascii")  # the header itself is plain ASCII
        star = disposition.split("filename*=UTF-8''", 1)[1]
        assert urllib.parse.unquote(star) == shown


async def upload_bytes(
    client: Client, headers: dict[str, str], data: bytes, name: str
) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/uploads", files={"file": (name, data, "application/pdf")}, headers=headers
    )
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_failed_uploads_file_is_not_served(
    client: Client, resources: Resources, corpus: Path
) -> None:
    headers = await login(client)
    accepted = await upload(client, headers, corpus / "bad" / "truncated.pdf")
    assert await anyio.Path(
        resources.settings.data_dir / "files" / f"{accepted['id']}.pdf"
    ).exists()
    on_app(client, run_jobs, resources)
    body = (await client.get(f"/api/v1/uploads/{accepted['id']}", headers=headers)).json()
    assert body["status"] == "failed", body
    # Kept for an admin's retry (PDFQA_FAILED_FILE_RETENTION_S; test_lifecycle.py), never served.
    assert on_app(client, resources.files.exists, accepted["id"])
    r = await client.get(f"/api/v1/uploads/{accepted['id']}/file", headers=headers)
    problem(r, 404)


async def test_security_headers_and_docs_off_by_default(client: Client) -> None:
    r = await client.get("/health")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in r.headers  # plain HTTP
    assert (await client.get("/api/docs/openapi.json")).status_code == 200
    r = await client.get("/api/docs/swagger")
    assert r.status_code == 404


async def test_docs_on_use_only_vendored_assets(settings: Settings) -> None:
    async with app_with(settings, api_docs=True) as client:
        r = await client.get("/api/docs")
        assert r.status_code == 200
        assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in r.text
        assert "cdn." not in r.text
        assert "https://" not in r.text.split("<body", 1)[0]
        r = await client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
        assert r.status_code == 200


async def test_hsts_and_secure_host_cookie_over_https(settings: Settings) -> None:
    app = create_app(
        msgspec.structs.replace(
            settings, cookie_secure="auto", queue_name=f"{settings.queue_name}:tls"
        )
    )
    async with AsyncTestClient(app=app, base_url="https://pdfqa.example", timeout=60) as client:
        r = await client.get("/health")
        assert r.headers["strict-transport-security"].startswith("max-age=")
        email = f"tls-{uuid.uuid4().hex[:8]}@example.com"
        await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-pdfqa_session=")
        for attribute in ("Secure", "HttpOnly", "Path=/"):
            assert attribute in cookie
        assert "Domain" not in cookie
        r = await client.get("/api/v1/uploads")  # the __Host- cookie authenticates
        assert r.status_code == 200


# --- Authentication ---------------------------------------------------------------------------


async def test_brute_force_gets_429_and_the_owner_logs_in_after_the_window(
    settings: Settings,
) -> None:
    async with app_with(settings, login_attempts=3, login_window_s=2) as client:
        email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
        r = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201
        wrong = {"email": email, "password": "wrong password"}
        codes = [
            (await client.post("/api/v1/auth/login", json=wrong)).status_code for _ in range(3)
        ]
        assert codes == [401, 401, 401]
        r = await client.post("/api/v1/auth/login", json=wrong)
        retry_after = int(problem(r, 429) and r.headers["retry-after"])
        assert 1 <= retry_after <= 2
        # Locked, even with the right password, from this address...
        right = {"email": email, "password": PASSWORD}
        problem(await client.post("/api/v1/auth/login", json=right), 429)
        # ...but not from another one: the owner elsewhere is never locked out.
        res: Resources = client.app.state.resources
        user, _ = on_app(client, accounts.login, res, email, PASSWORD, "198.51.100.7")
        assert user.email == email
        # And when the window ends, the owner logs in from this address too.
        deadline = time.monotonic() + retry_after + 5
        while (r := await client.post("/api/v1/auth/login", json=right)).status_code == 429:
            assert time.monotonic() < deadline, "the lock-out outlived its window"
            await anyio.sleep(float(r.headers["retry-after"]))
        assert r.status_code == 200, r.text


async def test_auth_endpoints_are_rate_limited_per_client_address(settings: Settings) -> None:
    async with app_with(settings, auth_rate_per_minute=4) as client:
        codes = []
        for _ in range(6):
            r = await client.post(
                "/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
            )
            codes.append(r.status_code)
        assert codes[:4] == [401] * 4
        assert codes[4:] == [429, 429]
        assert 1 <= int(r.headers["retry-after"]) <= 60
        problem(r, 429)
        # Other endpoints are not throttled by it.
        assert (await client.get("/health")).status_code == 200


async def test_scrypt_at_owasp_minimum_and_rehash_on_login(client: Client) -> None:
    assert Settings().scrypt_log_n == 17
    assert accounts.hash_password("x" * 8).startswith("scrypt$131072$8$1$")
    res: Resources = client.app.state.resources
    email = f"old-{uuid.uuid4().hex[:8]}@example.com"
    await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})

    async def stored() -> str:
        async with res.db.acquire() as conn:
            value: str = await conn.fetchval(
                "SELECT password_hash FROM users WHERE email = $1", email
            )
            return value

    async def weaken() -> None:
        async with res.db.acquire() as conn:
            await conn.execute(
                "UPDATE users SET password_hash = $2 WHERE email = $1",
                email,
                accounts.hash_password(PASSWORD, log_n=12),
            )

    on_app(client, weaken)
    assert on_app(client, stored).startswith("scrypt$4096$")
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200
    assert on_app(client, stored).startswith(f"scrypt${2**res.settings.scrypt_log_n}$8$1$")
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200  # the new hash verifies


async def test_idle_sessions_end_and_are_purged(client: Client) -> None:
    headers = await login(client)
    res: Resources = client.app.state.resources
    assert (await client.get("/api/v1/uploads", headers=headers)).status_code == 200

    async def idle() -> None:
        async with res.db.acquire() as conn:
            await conn.execute(
                "UPDATE sessions SET last_seen_at = now() - make_interval(secs => $1)",
                float(res.settings.session_idle_s + 1),
            )

    async def count() -> int:
        async with res.db.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM sessions"))

    on_app(client, idle)
    r = await client.get("/api/v1/uploads", headers=headers)
    assert "expired" in problem(r, 401)["detail"]
    await login(client)  # a login purges dead rows
    assert on_app(client, count) == 1


async def test_using_a_session_moves_its_last_use_at_most_once_a_minute(client: Client) -> None:
    """Every request of a session used to rewrite its row; now a fresh one is only read (one
    session's concurrent requests no longer queue on its row lock)."""
    headers = await login(client)
    res: Resources = client.app.state.resources

    async def row() -> tuple[str, float]:
        async with res.db.acquire() as conn:
            record = await conn.fetchrow(
                "SELECT xmin::text AS version,"
                " extract(epoch FROM now() - last_seen_at)::float8 AS age FROM sessions"
                " WHERE user_id = (SELECT user_id FROM sessions ORDER BY created_at DESC LIMIT 1)"
            )
            assert record is not None
            return record["version"], record["age"]

    async def age_by(seconds: float) -> None:
        async with res.db.acquire() as conn:
            await conn.execute(
                "UPDATE sessions SET last_seen_at = last_seen_at - make_interval(secs => $1)",
                seconds,
            )

    assert (await client.get("/api/v1/uploads", headers=headers)).status_code == 200
    before = on_app(client, row)
    for _ in range(3):
        assert (await client.get("/api/v1/uploads", headers=headers)).status_code == 200
    assert on_app(client, row)[0] == before[0]  # not written: the same row version

    on_app(client, age_by, 120.0)
    assert (await client.get("/api/v1/uploads", headers=headers)).status_code == 200
    version, age = on_app(client, row)
    assert version != before[0]
    assert age < 60  # moved to the time of use


async def test_logout_everywhere_and_password_change(client: Client) -> None:
    email = f"multi-{uuid.uuid4().hex[:8]}@example.com"
    await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    tokens = []
    for _ in range(3):
        r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        tokens.append({"Authorization": f"Bearer {r.json()['token']}"})
    client.cookies.clear()

    new = "a brand new passphrase"
    r = await client.post(
        "/api/v1/auth/password",
        json={"current_password": "wrong one!", "new_password": new},
        headers=tokens[0],
    )
    problem(r, 403)
    r = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=tokens[0],
    )
    assert r.status_code == 204, r.text
    assert (await client.get("/api/v1/uploads", headers=tokens[0])).status_code == 200
    assert (await client.get("/api/v1/uploads", headers=tokens[1])).status_code == 401
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    problem(r, 401)
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": new})
    assert r.status_code == 200
    other = {"Authorization": f"Bearer {r.json()['token']}"}
    client.cookies.clear()

    r = await client.post("/api/v1/auth/logout-everywhere", headers=tokens[0])
    assert r.status_code == 200
    assert r.json() == {"sessions_ended": 2}
    for headers in (tokens[0], other):
        assert (await client.get("/api/v1/uploads", headers=headers)).status_code == 401


async def test_registration_rules_and_admin_created_accounts(settings: Settings) -> None:
    admin = f"admin-{uuid.uuid4().hex[:8]}@corp.example"
    async with app_with(settings, registration_domains="corp.example", admin_emails=admin) as c:
        r = await c.post(
            "/api/v1/auth/register", json={"email": "x@gmail.example", "password": PASSWORD}
        )
        assert "corp.example" in problem(r, 403)["detail"]
        r = await c.post("/api/v1/auth/register", json={"email": admin, "password": PASSWORD})
        assert r.status_code == 201
    async with app_with(settings, registration="closed", admin_emails=admin) as c:
        email = f"new-{uuid.uuid4().hex[:8]}@corp.example"
        r = await c.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert "closed" in problem(r, 403)["detail"]
        r = await c.post("/api/v1/auth/login", json={"email": admin, "password": PASSWORD})
        token = {"Authorization": f"Bearer {r.json()['token']}"}
        c.cookies.clear()
        r = await c.post(
            "/api/v1/admin/users", json={"email": email, "password": PASSWORD}, headers=token
        )
        assert r.status_code == 201, r.text
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200
        user = {"Authorization": f"Bearer {r.json()['token']}"}
        c.cookies.clear()
        r = await c.post(
            "/api/v1/admin/users",
            json={"email": f"z-{email}", "password": PASSWORD},
            headers=user,
        )
        problem(r, 403)


# --- Quotas and pagination --------------------------------------------------------------------


async def test_storage_and_upload_rate_quotas(settings: Settings) -> None:
    pdf = text_pdf(["hello"] * 20)
    async with app_with(settings, max_storage_bytes=2 * len(pdf) + 10) as client:
        headers = await login(client)
        await upload_bytes(client, headers, pdf, "a.pdf")
        await upload_bytes(client, headers, pdf, "b.pdf")
        r = await client.post(
            "/api/v1/uploads", files={"file": ("c.pdf", pdf, "application/pdf")}, headers=headers
        )
        assert "quota" in problem(r, 413)["detail"]
    async with app_with(settings, uploads_per_hour=2) as client:
        headers = await login(client)
        await upload_bytes(client, headers, pdf, "a.pdf")
        await upload_bytes(client, headers, pdf, "b.pdf")
        r = await client.post(
            "/api/v1/uploads", files={"file": ("c.pdf", pdf, "application/pdf")}, headers=headers
        )
        assert "2 uploads an hour" in problem(r, 429)["detail"]
        assert int(r.headers["retry-after"]) > 3000


async def test_question_rate_limit(settings: Settings) -> None:
    pdf = text_pdf(["The revenue of Example Corp was 42 million dollars in 2021."] * 5)
    async with app_with(settings, questions_per_minute=2) as client:
        headers = await login(client)
        accepted = await upload_bytes(client, headers, pdf, "r.pdf")
        on_app(client, run_jobs, client.app.state.resources)
        r = await client.post(
            "/api/v1/conversations", json={"upload_ids": [accepted["id"]]}, headers=headers
        )
        conversation = r.json()["id"]
        path = f"/api/v1/conversations/{conversation}/messages"
        question = {"question": "What was the revenue of Example Corp in 2021?"}
        for _ in range(2):
            assert (await client.post(path, json=question, headers=headers)).status_code == 200
        r = await client.post(path, json=question, headers=headers)
        assert "questions a minute" in problem(r, 429)["detail"]
        assert 1 <= int(r.headers["retry-after"]) <= 60


async def test_lists_are_cursor_paginated(client: Client) -> None:
    headers = await login(client)
    pdf = text_pdf(["hello"])
    ids = [(await upload_bytes(client, headers, pdf, f"{i}.pdf"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(f"/api/v1/uploads{query}", headers=headers)).json()
        seen += [u["id"] for u in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first, each once
    other = await login(client)
    page = (await client.get("/api/v1/uploads?limit=2", headers=other)).json()
    assert page == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("limit", [1, 200])
async def test_page_limit_bounds(client: Client, limit: int) -> None:
    headers = await login(client)
    r = await client.get(f"/api/v1/conversations?limit={limit}", headers=headers)
    assert r.status_code == 200
    r = await client.get(f"/api/v1/conversations?limit={limit * 1000}", headers=headers)
    problem(r, 400)


async def test_a_stream_that_breaks_for_any_reason_ends_with_an_error_event(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    headers = await login(client)
    pdf = text_pdf(["The revenue of Example Corp was 42 million dollars in 2021."] * 5)
    accepted = await upload_bytes(client, headers, pdf, "r.pdf")
    on_app(client, run_jobs, client.app.state.resources)
    r = await client.post(
        "/api/v1/conversations", json={"upload_ids": [accepted["id"]]}, headers=headers
    )
    conversation = r.json()["id"]

    def broken(*_: object) -> None:
        raise RuntimeError("a bug after the tokens went out")

    # Our own code failing after the answer streamed (not a fake of anything external).
    monkeypatch.setattr("pdfqa.conversations.cited", broken)
    r = await client.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"question": "What was the revenue of Example Corp in 2021?"},
        headers={**headers, "Accept": "text/event-stream"},
    )
    events = parse_sse(r.text)
    assert events[0][0] == "sources"
    assert "token" in [name for name, _ in events]
    assert events[-1][0] == "error", events[-1]
    assert "internal error" in events[-1][1]["detail"]
    logged = [rec for rec in caplog.records if rec.exc_info and rec.levelname == "ERROR"]
    assert any("a bug after the tokens went out" in str(rec.exc_info[1]) for rec in logged)
    detail = (await client.get(f"/api/v1/conversations/{conversation}", headers=headers)).json()
    assert detail["messages"] == []  # nothing half-saved

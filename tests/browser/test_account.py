"""The account page in Chromium, against ``pdfqa serve`` without a language model: who is logged
in, a password change that ends the other sessions, and "log out everywhere"."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import PASSWORD, PHONE, Console, Server, new_context, screenshot
from tests.browser.helpers import new_email, register

pytestmark = pytest.mark.browser

NEW_PASSWORD = "another long password"


def api_login(http: httpx.Client, email: str, password: str) -> httpx.Response:
    return http.post("/api/v1/auth/login", json={"email": email, "password": password})


def test_change_password_and_log_out_everywhere(browser: Browser, extractive: Server) -> None:
    console = Console()
    context = new_context(browser, extractive)
    page = console.watch(context.new_page())
    email = new_email("ada")
    register(page, email)
    with httpx.Client(base_url=extractive.base, timeout=30) as http:
        r = api_login(http, email, PASSWORD)
        assert r.status_code == 200, r.text
        other_device = {"Authorization": f"Bearer {r.json()['token']}"}
        assert http.get("/api/v1/auth/me", headers=other_device).json()["email"] == email

        page.get_by_role("link", name="Account").click()
        expect(page).to_have_url(re.compile(r"/account$"))
        expect(page.locator("#account-email")).to_have_text(email)

        # A wrong current password: the reason, and nothing changes.
        page.get_by_label("Current password").fill("not my password")
        page.get_by_label("New password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        expect(page.locator("#password-error")).to_contain_text("current password is wrong")
        assert http.get("/api/v1/auth/me", headers=other_device).status_code == 200

        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_label("New password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        expect(page.locator("#password-done")).to_contain_text("Password changed")
        expect(page.locator("#password-error")).to_be_hidden()
        # The other device's session ended; this page's did not; only the new password works.
        assert http.get("/api/v1/auth/me", headers=other_device).status_code == 401
        assert api_login(http, email, PASSWORD).status_code == 401
        r = api_login(http, email, NEW_PASSWORD)
        assert r.status_code == 200, r.text
        other_device = {"Authorization": f"Bearer {r.json()['token']}"}
        page.reload()
        expect(page.locator("#account-email")).to_have_text(email)

        phone = console.watch(new_context(browser, extractive, viewport=PHONE).new_page())
        phone.goto("/login")
        phone.get_by_label("E-mail").fill(email)
        phone.get_by_label("Password").fill(NEW_PASSWORD)
        phone.get_by_role("button", name="Log in").click()
        expect(phone).to_have_url(re.compile(r"/library$"))
        phone.goto("/account")
        expect(phone.locator("#account-email")).to_have_text(email)
        assert phone.evaluate("document.documentElement.scrollWidth <= innerWidth")
        nav = phone.get_by_role("navigation", name="Main")
        assert nav.evaluate("(el) => el.scrollWidth <= el.clientWidth"), "links cut off"
        for name in ("Documents", "Chat", "Account", "Log out"):
            box = phone.get_by_role("banner").get_by_text(name, exact=True).bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= PHONE["width"]
        screenshot(phone, "account-phone")

        # Cancel keeps every session; confirming ends them all, this one included.
        page.get_by_role("button", name="Log out everywhere").click()
        page.locator("#confirm-everywhere").get_by_role("button", name="Cancel").click()
        assert http.get("/api/v1/auth/me", headers=other_device).status_code == 200
        page.get_by_role("button", name="Log out everywhere").click()
        page.locator("#confirm-everywhere").get_by_role("button", name="Log out everywhere").click()
        expect(page).to_have_url(re.compile(r"/login\?logged_out=1$"))
        expect(page.get_by_text("You are logged out.")).to_be_visible()
        assert http.get("/api/v1/auth/me", headers=other_device).status_code == 401
        phone.reload()
        expect(phone).to_have_url(re.compile(r"/login\?next="))
    assert console.errors == []
    context.close()

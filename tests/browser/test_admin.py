"""The jobs dashboard in Chromium, against ``pdfqa serve`` (its embedded worker serves both
queues): live updates over SSE without a reload, a failure with its error, its retry run
again, and the page refused to a user who is not an admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from pdfqa.queue import QUEUE_KINDS
from tests.browser.conftest import Console, Server, new_context, screenshot, serve
from tests.browser.helpers import api_user, new_email, register

pytestmark = pytest.mark.browser

ADMIN = new_email("admin")


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    yield from serve(settings, tmp_path_factory, "webadmin", PDFQA_ADMIN_EMAILS=ADMIN)


def test_the_admin_page_follows_jobs_and_workers_live(
    browser: Browser, server: Server, corpus: Path
) -> None:
    console = Console()
    context = new_context(browser, server)
    page = console.watch(context.new_page())
    register(page, ADMIN)
    page.goto("/admin")
    expect(page.locator("#live")).to_contain_text("live")
    expect(page.locator("#queues tr[data-queue=ingest]")).to_be_visible()
    expect(page.locator("#queues tr[data-queue=default]")).to_be_visible()
    expect(page.locator("#queues tr[data-queue=ocr]")).to_be_visible()
    # The embedded worker: one worker per queue, each with its own heartbeat.
    expect(page.locator("#workers tr")).to_have_count(len(QUEUE_KINDS))
    for kind in QUEUE_KINDS:
        expect(page.locator("#workers")).to_contain_text(kind)

    with httpx.Client(base_url=server.base, timeout=60) as http:
        user = api_user(http, new_email("uploader"))
        files = {"file": ("quivr_sample.pdf", (corpus / "quivr_sample.pdf").read_bytes())}
        good = http.post("/api/v1/uploads", files=files, headers=user).json()
        bad_bytes = (corpus / "bad" / "truncated.pdf").read_bytes()
        bad = http.post(
            "/api/v1/uploads", files={"file": ("truncated.pdf", bad_bytes)}, headers=user
        ).json()
    # No reload: the feed brings both jobs to their end.
    good_row = page.locator(f'#jobs tr[data-job="{good["job_id"]}"]')
    expect(good_row).to_have_attribute("data-state", "complete", timeout=120_000)
    expect(good_row).to_contain_text("quivr_sample.pdf")
    bad_row = page.locator(f'#jobs tr[data-job="{bad["job_id"]}"]')
    expect(bad_row).to_have_attribute("data-state", "failed", timeout=120_000)
    expect(bad_row.locator(".error-text")).not_to_be_empty()
    expect(page.locator("#queues tr[data-queue=ingest] td").nth(4)).to_have_text("1")
    screenshot(page, "admin-jobs")
    # Its file is kept for a while after the failure: the retry runs the job again, which
    # fails again (the file is truncated), with a new end time and no error for the admin.
    first_end = bad_row.get_attribute("data-finished")
    assert first_end
    bad_row.get_by_role("button", name="Retry").click()
    expect(bad_row).not_to_have_attribute("data-finished", first_end, timeout=120_000)
    expect(bad_row).to_have_attribute("data-state", "failed", timeout=120_000)
    expect(page.locator("#admin-error")).to_be_empty()
    assert console.errors == []
    context.close()

    other = new_context(browser, server)
    page = other.new_page()
    register(page, new_email("someone"))
    page.goto("/admin")
    expect(page.locator("#admin-error")).to_contain_text("administrator")
    other.close()

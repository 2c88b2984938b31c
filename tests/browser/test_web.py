"""The web interface in Chromium, against ``pdfqa serve`` with a (fake, see conftest) language
model: a person registers, uploads, watches the progress, asks, reads the streamed answer, opens
the cited page, votes, comes back later; another person never sees any of it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    ANSWER,
    PASSWORD,
    PAUSE_S,
    PAUSE_WORD,
    PHONE,
    Console,
    Server,
    new_context,
    screenshot,
)
from tests.browser.helpers import (
    RECORD_ANSWER,
    RECORD_PROGRESS,
    api_user,
    inked_pixels,
    new_email,
    register,
    wait_ready,
)

pytestmark = pytest.mark.browser

FULL_ANSWER = "".join(ANSWER)
PAGES = 22  # DeepSeek_R1.pdf


def upload_and_watch(page: Page, corpus: Path) -> None:
    page.evaluate(RECORD_PROGRESS)
    page.locator("#file-input").set_input_files(corpus / "DeepSeek_R1.pdf")
    card = page.locator("li.upload", has_text="DeepSeek_R1.pdf")
    expect(card).to_have_attribute("data-status", re.compile("queued|processing"))
    expect(card.locator(".bar-text")).to_have_text(
        re.compile(rf"^([1-9]|1[0-9]|2[01]) of {PAGES} pages$"), timeout=60_000
    )
    expect(card).to_have_attribute("data-status", "processing")
    screenshot(page, "library-progress")
    expect(card).to_have_attribute("data-status", "ready", timeout=120_000)
    expect(card.locator("progress")).to_have_attribute("value", str(PAGES))
    expect(card).to_contain_text(f"{PAGES} pages")
    expect(card).to_contain_text("Ready to ask")
    seen = page.evaluate("window.__progress")
    done = [value for value, total in seen if total == PAGES]
    assert done == sorted(done), seen  # the bar only moves forward
    assert done[-1] == PAGES, seen
    assert any(0 < value < PAGES for value in done), seen  # ...page by page, not in one jump
    screenshot(page, "library")


def ask_and_watch_the_stream(page: Page) -> None:
    page.evaluate(RECORD_ANSWER)
    question = page.get_by_label("Your question")
    question.fill("How was DeepSeek-R1 trained?")
    question.press("Enter")  # Enter submits
    streaming = page.locator("article.msg[data-state=streaming]")
    # Tokens on screen while the answer is still streaming, sources already listed.
    expect(streaming.locator(".answer")).to_contain_text("DeepSeek-R1 is trained")
    expect(streaming.locator(".answer")).to_have_attribute("aria-busy", "true")
    expect(streaming.locator(".sources")).to_be_visible()
    expect(page.get_by_role("button", name="Stop generating")).to_be_visible()
    answer = page.locator("article.msg").last
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer.locator(".answer")).to_have_text(FULL_ANSWER)
    expect(page.get_by_role("button", name="Stop generating")).to_be_hidden()
    lengths = page.evaluate("window.__lengths")
    partial = {n for n in lengths if 0 < n < len(FULL_ANSWER)}
    assert len(partial) >= 3, lengths  # it arrived in pieces


def open_citation(page: Page, source: dict[str, object]) -> None:
    answer = page.locator("article.msg").last
    answer.get_by_role("button", name=re.compile(r"^Source 2: DeepSeek_R1\.pdf")).click()
    viewer = page.get_by_role("complementary", name="DeepSeek_R1.pdf")
    expect(viewer).to_be_visible()
    expect(viewer).to_have_attribute("data-state", "ready")
    expect(viewer).to_have_attribute("data-page", str(source["page"]))
    expect(page.locator("#viewer-page")).to_have_text(f"Page {source['page']} of {PAGES}")
    highlights = viewer.get_attribute("data-highlights")
    assert highlights is not None
    assert int(highlights) > 0  # the cited passage is marked on the page
    expect(page.locator("#viewer-highlights > div").first).to_be_visible()
    inked = inked_pixels(page)
    assert inked > 1000, inked  # pdf.js drew the page's text


def test_register_upload_ask_cite_vote_and_come_back(
    browser: Browser, generating: Server, corpus: Path
) -> None:
    console = Console()
    context = new_context(browser, generating)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = console.watch(context.new_page())
    email = new_email("ada")

    # A first visit lands on the login page, from which a person creates an account.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Flibrary$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("button", name="Create account")).to_be_enabled()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(re.compile(r"/library$"))
    expect(page.get_by_text("No documents yet")).to_be_visible()

    upload_and_watch(page, corpus)

    # Ask about it: a new conversation over the ready document.
    page.get_by_role("link", name="Ask about DeepSeek_R1.pdf").click()
    expect(page.get_by_role("checkbox", name=re.compile("DeepSeek_R1.pdf"))).to_be_checked()
    page.get_by_label("Title (optional)").fill("How R1 learns")
    page.get_by_role("button", name="Start conversation").click()
    expect(page).to_have_url(re.compile(r"/chat\?c="))
    expect(page.get_by_role("heading", name="How R1 learns")).to_be_visible()
    expect(page.locator("#extractive-note")).to_be_hidden()
    conversation_id = page.url.rsplit("c=", 1)[1]

    ask_and_watch_the_stream(page)
    detail = page.request.get(f"/api/v1/conversations/{conversation_id}").json()
    message = detail["messages"][-1]
    assert message["answer"] == FULL_ANSWER
    source = next(s for s in message["sources"] if s["n"] == 2)
    answer = page.locator(f"article.msg[data-message-id='{message['id']}']")

    open_citation(page, source)
    screenshot(page, "chat")

    # Copy the answer.
    answer.get_by_role("button", name="Copy the answer").click()
    expect(answer.get_by_role("status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == FULL_ANSWER

    # Like it; the vote is still there after a reload.
    like = answer.get_by_role("button", name="Like this answer", exact=True)
    like.click()
    expect(like).to_have_attribute("aria-pressed", "true")
    page.reload()
    answer = page.locator(f"article.msg[data-message-id='{message['id']}']")
    expect(answer.get_by_role("button", name="Like this answer", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(answer.get_by_role("button", name="Dislike this answer", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )
    detail = page.request.get(f"/api/v1/conversations/{conversation_id}").json()
    assert detail["messages"][-1]["feedback"]["vote"] == "up"

    # Stop generating: the answer stops and nothing is stored.
    question = page.get_by_label("Your question")
    question.fill("Explain it slowly, step by step.")
    question.press("Enter")
    streaming = page.locator("article.msg[data-state=streaming]")
    expect(streaming.locator(".answer")).to_contain_text("DeepSeek-R1")
    page.get_by_role("button", name="Stop generating").click()
    stopped = page.locator("article.msg[data-state=stopped]")
    expect(stopped).to_contain_text("not saved")
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    detail = page.request.get(f"/api/v1/conversations/{conversation_id}").json()
    assert len(detail["messages"]) == 1

    # At phone width the same page is one column.
    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("article.msg")).to_have_count(1)
    screenshot(page, "chat-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Come back to it later from the conversation list.
    page.goto("/library")
    page.get_by_role("link", name="Chat").click()
    page.get_by_role("link", name="How R1 learns").click()
    expect(page).to_have_url(re.compile(rf"c={conversation_id}$"))
    expect(page.locator("article.msg .answer")).to_have_text(FULL_ANSWER)

    # The session expires (the token is revoked): the next step returns to the login page,
    # and logging in again comes back to where the person was.
    token = next(c["value"] for c in context.cookies() if c["name"] == "pdfqa_session")
    httpx.post(
        f"{generating.base}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    ).raise_for_status()
    page.get_by_role("link", name="Documents").click()
    expect(page).to_have_url(re.compile(r"/login\?.*expired=1"))
    expect(page.locator("#auth-notice")).to_contain_text("session has expired")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/library$"))
    expect(page.locator("li.upload")).to_have_count(1)

    # Log out.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login\?logged_out=1$"))
    page.goto("/chat")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fchat$"))

    assert console.errors == []
    context.close()


def test_another_users_documents_never_appear(
    browser: Browser, generating: Server, corpus: Path
) -> None:
    with httpx.Client(base_url=generating.base, timeout=30) as http:
        alice = api_user(http, new_email("alice"))
        with (corpus / "quivr_sample.pdf").open("rb") as f:
            r = http.post("/api/v1/uploads", files={"file": f}, headers=alice)
        assert r.status_code == 202, r.text
        upload_id = r.json()["id"]
        wait_ready(http, upload_id, alice)
        r = http.post(
            "/api/v1/conversations",
            json={"upload_ids": [upload_id], "title": "Alice's secrets"},
            headers=alice,
        )
        assert r.status_code == 201, r.text
        conversation_id = r.json()["id"]

    console = Console()
    context = new_context(browser, generating)
    page = console.watch(context.new_page())
    register(page, new_email("bob"))
    expect(page.get_by_text("No documents yet")).to_be_visible()
    expect(page.locator("li.upload")).to_have_count(0)

    page.get_by_role("link", name="Chat").click()
    expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
    expect(page.locator("#no-docs")).to_be_visible()
    expect(page.locator("#doc-choices li")).to_have_count(0)
    expect(page.locator("#no-conversations")).to_be_visible()

    page.goto(f"/chat?c={conversation_id}")
    expect(page.locator("#chat-error")).to_contain_text("does not exist, or it is not yours")
    expect(page.get_by_text("Alice's secrets")).to_have_count(0)
    assert page.request.get(f"/api/v1/uploads/{upload_id}/file").status == 404
    assert "quivr_sample" not in page.content()
    assert console.errors == []
    context.close()


def test_an_answer_quiet_for_longer_than_the_keep_alive_still_arrives(
    browser: Browser, generating: Server, corpus: Path
) -> None:
    """The model goes quiet mid-answer for several keep-alive intervals (the ``generating``
    server sends a keep-alive comment every 0.2 s): the browser's SSE parser skips them and the
    whole answer arrives, with no error on the page or in the console."""
    email = new_email("quiet")
    question = f"How was DeepSeek-R1 trained? Take time to {PAUSE_WORD}."
    with httpx.Client(base_url=generating.base, timeout=30) as http:
        headers = api_user(http, email)
        with (corpus / "DeepSeek_R1.pdf").open("rb") as f:
            r = http.post("/api/v1/uploads", files={"file": f}, headers=headers)
        assert r.status_code == 202, r.text
        upload_id = r.json()["id"]
        wait_ready(http, upload_id, headers)
        r = http.post("/api/v1/conversations", json={"upload_ids": [upload_id]}, headers=headers)
        assert r.status_code == 201, r.text
        conversation_id = r.json()["id"]
        # The same question over the API: the stream really carries keep-alives in the pause.
        with http.stream(
            "POST",
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"question": question},
            headers={**headers, "Accept": "text/event-stream"},
        ) as stream:
            lines = [line for line in stream.iter_lines() if line]
        assert lines.count(": keep-alive") >= int(PAUSE_S / 0.2) // 2, lines
        assert lines[-2] == "event: done", lines[-4:]

    console = Console()
    context = new_context(browser, generating)
    page = console.watch(context.new_page())
    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/library$"))
    page.goto(f"/chat?c={conversation_id}")
    box = page.get_by_label("Your question")
    box.fill(question)
    box.press("Enter")
    answer = page.locator("article.msg").last
    expect(answer).to_have_attribute("data-state", "streaming")
    expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    expect(answer.locator(".answer")).to_have_text(FULL_ANSWER)
    expect(page.locator("#chat-error")).to_be_empty()
    detail = page.request.get(f"/api/v1/conversations/{conversation_id}").json()
    assert [m["answer"] for m in detail["messages"]] == [FULL_ANSWER, FULL_ANSWER]
    assert console.errors == []
    context.close()

"""Issue 12 in Chromium, against ``pdfqa serve`` with the (fake, see conftest) language model:
the library (one progress stream, dates, order, filter, open in the viewer), conversations you
can find again, asking while a document is still being read, the viewer's zoom / find / text
layer, and the small fixes (answer in view, logged-out visits, the phone layout)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import PHONE, Console, Server, new_context, screenshot
from tests.browser.helpers import api_user, highlight_boxes, new_email, register, wait_ready

pytestmark = pytest.mark.browser

# Counts the EventSources a page has open at once (and the most it ever had).
COUNT_STREAMS = """() => {
  const Native = window.EventSource;
  window.__streams = { open: 0, max: 0, urls: [] };
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      window.__streams.urls.push(String(url));
      window.__streams.open += 1;
      window.__streams.max = Math.max(window.__streams.max, window.__streams.open);
      const close = this.close.bind(this);
      let closed = false;
      this.close = () => {
        if (!closed) { closed = true; window.__streams.open -= 1; }
        close();
      };
    }
  };
}"""

NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth - window.innerWidth"


def pdf_file(path: Path, name: str) -> dict[str, Any]:
    return {"name": name, "mimeType": "application/pdf", "buffer": path.read_bytes()}


def test_library_one_stream_dates_order_filter_and_open_in_the_viewer(
    browser: Browser, generating: Server, corpus: Path
) -> None:
    console = Console()
    context = new_context(browser, generating)
    context.add_init_script(f"({COUNT_STREAMS})()")
    page = console.watch(context.new_page())
    register(page, new_email("lin"))

    # Seven uploads at once: their progress comes over one stream, never one per upload.
    names = [f"table-{i}.pdf" for i in range(1, 8)]
    page.locator("#file-input").set_input_files([pdf_file(corpus / "table.pdf", n) for n in names])
    cards = page.locator("li.upload")
    expect(cards).to_have_count(7)
    for name in names:
        card = page.locator("li.upload", has_text=name)
        expect(card).to_have_attribute("data-status", "ready", timeout=120_000)
        expect(card).to_contain_text("1 page")
        expect(card.locator("time.date")).to_have_text(re.compile(r"^· Today, "))
    streams = page.evaluate("window.__streams")
    assert streams["max"] == 1, streams
    assert streams["urls"]
    assert all(u.endswith("/api/v1/uploads/events") for u in streams["urls"])
    assert streams["open"] == 0, streams  # closed once nothing is left to follow

    # Newest first: the live order is the API's order, and a reload shows the same.
    listed = [u["id"] for u in page.request.get("/api/v1/uploads?limit=50").json()["items"]]
    live = cards.evaluate_all("(cards) => cards.map((c) => c.dataset.id)")
    assert live == listed
    page.reload()
    expect(cards).to_have_count(7)
    assert cards.evaluate_all("(cards) => cards.map((c) => c.dataset.id)") == listed

    # The filter box narrows the list by name.
    page.get_by_label("Filter documents by name").fill("TABLE-3")
    expect(page.locator("li.upload:visible")).to_have_count(1)
    expect(page.locator("li.upload:visible")).to_contain_text("table-3.pdf")
    screenshot(page, "library-filter")
    page.get_by_label("Filter documents by name").fill("no such document")
    expect(page.locator("li.upload:visible")).to_have_count(0)
    expect(page.locator("#no-match")).to_contain_text("no such document")
    page.get_by_label("Filter documents by name").fill("")
    expect(page.locator("li.upload:visible")).to_have_count(7)

    # A document's name opens it in the viewer; focus moves in, Escape closes it and returns.
    opener = page.get_by_role("button", name="Open table-5.pdf")
    opener.click()
    viewer = page.get_by_role("complementary", name="table-5.pdf")
    expect(viewer).to_be_visible()
    expect(viewer).to_have_attribute("data-state", "ready")
    expect(page.locator("#viewer-page")).to_have_text("Page 1 of 1")
    assert page.evaluate("document.getElementById('viewer').contains(document.activeElement)")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(opener).to_be_focused()

    # A failed upload stays in the library with its reason, but is not offered in the chat.
    page.locator("#file-input").set_input_files(corpus / "bad" / "password.pdf")
    failed = page.locator("li.upload", has_text="password.pdf")
    expect(failed).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(failed.get_by_role("button", name="Open password.pdf")).to_be_disabled()
    page.get_by_role("link", name="Chat").click()
    expect(page.locator("#doc-choices li")).to_have_count(7)
    expect(page.locator("#doc-choices")).not_to_contain_text("password.pdf")
    assert console.errors == []
    context.close()


def test_conversations_titled_renamed_grouped_searched_and_edited(
    browser: Browser, generating: Server, corpus: Path
) -> None:
    email = new_email("noor")
    with httpx.Client(base_url=generating.base, timeout=30) as http:
        headers = api_user(http, email)
        ids = {}
        for name in ("DeepSeek_R1.pdf", "quivr_sample.pdf"):
            with (corpus / name).open("rb") as f:
                r = http.post("/api/v1/uploads", files={"file": f}, headers=headers)
            assert r.status_code == 202, r.text
            ids[name] = r.json()["id"]
        for upload_id in ids.values():
            wait_ready(http, upload_id, headers)

    console = Console()
    context = new_context(browser, generating)
    page = console.watch(context.new_page())
    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill("a long password")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/library$"))

    # Untitled: named after the document, then after its first question.
    page.get_by_role("link", name="Chat").click()
    page.get_by_role("checkbox", name=re.compile("DeepSeek_R1.pdf")).check()
    page.get_by_role("button", name="Start conversation").click()
    expect(page.get_by_role("heading", name="DeepSeek_R1.pdf", exact=True)).to_be_visible()
    question = page.get_by_label("Your question")
    question.fill("How is DeepSeek-R1 trained?")
    question.press("Enter")
    expect(page.locator("article.msg").last).to_have_attribute("data-state", "done")
    expect(page.get_by_role("heading", name="How is DeepSeek-R1 trained?")).to_be_visible()
    sidebar = page.locator("#conversations")
    expect(sidebar.get_by_role("heading", name="Today")).to_be_visible()
    expect(
        sidebar.get_by_role("link", name=re.compile("How is DeepSeek-R1 trained"))
    ).to_contain_text("Today, ")

    # Rename it.
    page.get_by_role("button", name="Rename").click()
    page.get_by_label("Conversation title").fill("R1 training notes")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="R1 training notes")).to_be_visible()
    expect(sidebar.get_by_role("link", name=re.compile("R1 training notes"))).to_be_visible()
    conversation_id = page.url.rsplit("c=", 1)[1]
    detail = page.request.get(f"/api/v1/conversations/{conversation_id}").json()
    assert detail["title"] == "R1 training notes"

    # Add a document, then remove the first one.
    page.get_by_role("button", name="Documents").click()
    page.get_by_role("checkbox", name=re.compile("quivr_sample.pdf")).check()
    page.get_by_role("button", name="Save documents").click()
    expect(page.locator("#thread-docs")).to_contain_text("DeepSeek_R1.pdf, quivr_sample.pdf")
    page.get_by_role("button", name="Documents").click()
    page.get_by_role("checkbox", name=re.compile("DeepSeek_R1.pdf")).uncheck()
    page.get_by_role("button", name="Save documents").click()
    expect(page.locator("#thread-docs")).to_contain_text("About quivr_sample.pdf ·")
    detail = page.request.get(f"/api/v1/conversations/{conversation_id}").json()
    assert detail["upload_ids"] == [ids["quivr_sample.pdf"]]

    # A second conversation; search finds each by title or by a question asked in it.
    page.get_by_role("link", name="New", exact=True).click()
    page.get_by_role("checkbox", name=re.compile("quivr_sample.pdf")).check()
    page.get_by_label("Title (optional)").fill("Quivr questions")
    page.get_by_role("button", name="Start conversation").click()
    expect(page.get_by_role("heading", name="Quivr questions")).to_be_visible()
    search = page.get_by_label("Search conversations")
    search.fill("training notes")
    expect(sidebar.get_by_role("link")).to_have_count(1)
    expect(sidebar.get_by_role("link")).to_contain_text("R1 training notes")
    search.fill("deepseek-r1 TRAINED")  # the question, not the title
    expect(sidebar.get_by_role("link")).to_have_count(1)
    expect(sidebar.get_by_role("link")).to_contain_text("R1 training notes")
    search.fill("nothing like this")
    expect(sidebar.get_by_role("link")).to_have_count(0)
    expect(page.locator("#no-matches")).to_be_visible()
    search.fill("")
    expect(sidebar.get_by_role("link")).to_have_count(2)
    screenshot(page, "conversations")

    # Deleting asks first.
    page.get_by_role("button", name="Delete conversation").click()
    dialog = page.get_by_role("dialog", name="Delete this conversation?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(sidebar.get_by_role("link")).to_have_count(2)
    page.get_by_role("button", name="Delete conversation").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(sidebar.get_by_role("link")).to_have_count(1)
    assert console.errors == []
    context.close()


def _progress_reaches(
    http: httpx.Client, upload_id: str, headers: dict[str, str], pages: int
) -> int:
    """Read the upload's progress stream until ``pages`` pages are stored; the count then."""
    name = ""
    with http.stream(
        "GET",
        f"/api/v1/uploads/{upload_id}/events",
        headers=headers,
        timeout=httpx.Timeout(10, read=120),
    ) as r:
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                assert name == "progress", (name, data)
                if data["pages_done"] >= pages:
                    return int(data["pages_done"])
    raise AssertionError("the stream ended before enough pages were read")


def test_ask_while_a_300_page_document_is_still_being_read(
    browser: Browser, generating: Server, corpus: Path
) -> None:
    """A real ingestion of the 307-page 10-K; the question is asked as soon as a few pages are
    stored. Reading the rest takes minutes on this machine (embedding ~1,500 passages), so the
    answer comes while it is still being read; the test reads the figures from the server."""
    email = new_email("mae")
    with httpx.Client(base_url=generating.base, timeout=30) as http:
        headers = api_user(http, email)
        with (corpus / "uber_2021.pdf").open("rb") as f:
            r = http.post("/api/v1/uploads", files={"file": f}, headers=headers)
        assert r.status_code == 202, r.text
        upload_id = r.json()["id"]
        _progress_reaches(http, upload_id, headers, 4)

        console = Console()
        context = new_context(browser, generating)
        page = console.watch(context.new_page())
        page.goto("/login")
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password").fill("a long password")
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/library$"))
        page.get_by_role("link", name="Chat").click()
        choice = page.get_by_role("checkbox", name=re.compile("uber_2021.pdf"))
        expect(choice).to_be_enabled()
        expect(page.locator("#doc-choices")).to_contain_text("being read")
        choice.check()
        page.get_by_role("button", name="Start conversation").click()
        expect(page.locator("#thread-reading")).to_contain_text("uber_2021.pdf is still being read")
        question = page.get_by_label("Your question")
        question.fill("Where are Uber's principal executive offices?")
        question.press("Enter")
        answer = page.locator("article.msg").last
        expect(answer).to_have_attribute("data-state", "done")
        expect(answer).to_have_attribute("data-reading", "partial")
        conversation_id = page.url.rsplit("c=", 1)[1]
        message = page.request.get(f"/api/v1/conversations/{conversation_id}").json()["messages"][
            -1
        ]
        reading = message["reading"][0]
        done = reading["pages_done"]
        assert 4 <= done < reading["pages_total"] == 307, reading
        expect(answer.locator(".reading-note")).to_have_text(
            f"Answered while reading: uber_2021.pdf, pages 1\u2013{done} of 307 read so far."
        )
        assert message["sources"], "sources come from the pages already read"
        assert all(max(s["pages"]) <= done for s in message["sources"])
        screenshot(page, "chat-reading")

        # The conversation picks up the rest: the "being read" line follows the progress stream
        # and goes once the document is ready; the next answer carries no note.
        wait_ready(http, upload_id, headers)
        expect(page.locator("#thread-reading")).to_be_hidden(timeout=60_000)
        question.fill("What were Uber's revenues in 2021?")
        question.press("Enter")
        expect(page.locator("article.msg")).to_have_count(2)
        last = page.locator("article.msg").last
        expect(last).to_have_attribute("data-state", "done")
        expect(last.locator(".reading-note")).to_be_hidden()
        assert console.errors == []
        context.close()


def test_viewer_zoom_fit_find_text_layer_focus_and_small_fixes(
    browser: Browser, generating: Server, corpus: Path
) -> None:
    # A logged-out visit goes to the login page before anything of the app is sent: no flash of
    # the Documents page, and no request that fails with 401.
    console = Console()
    context = new_context(browser, generating)
    page = console.watch(context.new_page())
    statuses: list[tuple[int, str]] = []
    page.on("response", lambda r: statuses.append((r.status, r.url)))
    page.goto("/library")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Flibrary$"))
    assert not [s for s in statuses if s[0] >= 400], statuses
    assert not [s for s in statuses if s[0] == 200 and s[1].endswith("/library")], statuses
    assert page.get_by_role("heading", name="Documents").count() == 0

    register(page, new_email("ida"))
    page.locator("#file-input").set_input_files(corpus / "DeepSeek_R1.pdf")
    card = page.locator("li.upload", has_text="DeepSeek_R1.pdf")
    expect(card).to_have_attribute("data-status", "ready", timeout=120_000)
    card.get_by_role("link", name="Ask about DeepSeek_R1.pdf").click()
    page.get_by_role("button", name="Start conversation").click()
    # Enough earlier answers that the page would have to scroll.
    question = page.get_by_label("Your question")
    for text in ("What is DeepSeek-R1?", "How is it trained?"):
        question.fill(text)
        question.press("Enter")
        expect(page.locator("article.msg").last).to_have_attribute("data-state", "done")
    answer = page.locator("article.msg").last
    # After the answer: its question and the start of the answer are in view, not the sources.
    in_view = page.evaluate(
        """() => {
          const pane = document.getElementById("main").getBoundingClientRect();
          const msg = [...document.querySelectorAll("article.msg")].at(-1);
          const q = msg.querySelector(".question").getBoundingClientRect();
          const a = msg.querySelector(".answer").getBoundingClientRect();
          return q.top >= pane.top - 1 && q.bottom <= pane.bottom && a.top < pane.bottom;
        }"""
    )
    assert in_view
    expect(answer.locator(".sources")).not_to_have_attribute("open", "")

    # A citation opened by keyboard moves focus into the viewer; Escape closes it.
    cite = answer.get_by_role("button", name=re.compile(r"^Source 2: DeepSeek_R1\.pdf"))
    cite.focus()
    page.keyboard.press("Enter")
    viewer = page.get_by_role("complementary", name="DeepSeek_R1.pdf")
    expect(viewer).to_have_attribute("data-state", "ready")
    assert page.evaluate("document.getElementById('viewer').contains(document.activeElement)")
    assert int(viewer.get_attribute("data-highlights") or 0) > 0
    fit_width = highlight_boxes(page)

    # Zoom: buttons, Ctrl+wheel; fit page and fit width; the highlight stays on the passage.
    scale = float(viewer.get_attribute("data-scale") or 0)
    page.get_by_role("button", name="Zoom in").click()
    expect(viewer).not_to_have_attribute("data-scale", f"{scale:.4f}")
    expect(viewer).to_have_attribute("data-state", "ready")
    zoomed = float(viewer.get_attribute("data-scale") or 0)
    assert zoomed > scale
    expect(page.locator("#viewer-zoom")).to_have_text(re.compile(r"^\d+%$"))
    for got, want in zip(highlight_boxes(page), fit_width, strict=True):
        assert got == pytest.approx(want, abs=0.01)
    screenshot(page, "viewer-zoom")
    page.locator("#viewer-body").hover()
    page.keyboard.down("Control")
    page.mouse.wheel(0, 400)  # Ctrl+wheel down: zoom out
    page.keyboard.up("Control")
    expect(viewer).not_to_have_attribute("data-scale", f"{zoomed:.4f}")
    expect(viewer).to_have_attribute("data-state", "ready")
    assert float(viewer.get_attribute("data-scale") or 0) < zoomed
    page.get_by_role("button", name="Fit page").click()
    expect(page.get_by_role("button", name="Fit page")).to_have_attribute("aria-pressed", "true")
    expect(viewer).to_have_attribute("data-state", "ready")
    fits = page.evaluate(
        """() => {
          const body = document.getElementById("viewer-body");
          const canvas = document.getElementById("viewer-canvas");
          return canvas.offsetHeight <= body.clientHeight && canvas.offsetWidth <= body.clientWidth;
        }"""
    )
    assert fits
    for got, want in zip(highlight_boxes(page), fit_width, strict=True):
        assert got == pytest.approx(want, abs=0.01)
    page.get_by_role("button", name="Fit width").click()
    expect(page.get_by_role("button", name="Fit width")).to_have_attribute("aria-pressed", "true")

    # The text layer: the page's words are there to select and copy.
    # (Waited for: after "Fit width" the layer is drawn again, empty for a moment.)
    expect(page.locator("#viewer-page-wrap .textLayer span").first).to_be_attached()
    expect(page.locator("#viewer-page-wrap .textLayer")).to_contain_text("DeepSeek")

    # Find in document, with pdf.js's find controller: count, next match on another page.
    find = page.get_by_role("searchbox", name="Find in document")
    find.fill("reinforcement learning")
    count = page.locator("#viewer-find-count")
    expect(count).to_have_text(re.compile(r"^\d+ of \d+$"))
    current, total = (int(n) for n in count.inner_text().split(" of "))
    assert total > 5
    expect(page.locator("#viewer-page-wrap .textLayer .highlight").first).to_be_attached()
    find.press("Enter")
    expect(count).to_have_text(f"{current % total + 1} of {total}")
    page.get_by_role("button", name="Previous match").click()
    expect(count).to_have_text(f"{current} of {total}")
    find.fill("zyxwvut nothing")
    expect(page.locator("#viewer-find-count")).to_have_text("Not found")

    # The page list turns to any page.
    page.get_by_label("Go to page").select_option("5")
    expect(viewer).to_have_attribute("data-page", "5")
    page.locator("#viewer-body").focus()
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(cite).to_be_focused()

    # At phone width: no sideways scroll; chips whole; the answer gets most of the screen.
    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("article.msg")).to_have_count(2)
    assert page.evaluate(NO_SIDEWAYS_SCROLL) <= 0
    chrome = page.evaluate(
        """() => ["header.topbar", ".sidebar", "#ask-form"]
          .map((s) => document.querySelector(s).getBoundingClientRect().height)
          .reduce((a, b) => a + b, 0)"""
    )
    assert chrome < 0.45 * PHONE["height"], chrome
    chips = page.evaluate(
        """() => {
          const strip = document.querySelector(".sidebar").getBoundingClientRect();
          return [...document.querySelectorAll("#conversations a")].map((a) => {
            const r = a.getBoundingClientRect();
            return r.top >= strip.top && r.bottom <= strip.bottom;
          });
        }"""
    )
    assert chips
    assert all(chips), chips
    screenshot(page, "chat-phone-answer")
    page.goto("/library")
    expect(page.locator("li.upload")).to_have_count(1)
    assert page.evaluate(NO_SIDEWAYS_SCROLL) <= 0
    assert console.errors == []
    context.close()

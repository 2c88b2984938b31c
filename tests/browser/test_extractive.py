"""The web interface in Chromium, against ``pdfqa serve`` without a language model and with a
one-megabyte upload limit: errors a person can act on, drag and drop, a progress stream that
reconnects, and answers clearly marked as quoted passages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.browser.conftest import Console, Server, new_context, screenshot
from tests.browser.helpers import drop_file, highlight_boxes, inked_pixels, new_email, register

pytestmark = pytest.mark.browser


def test_errors_reconnects_and_extractive_answers(
    browser: Browser, extractive: Server, corpus: Path
) -> None:
    console = Console()
    context = new_context(browser, extractive)
    page = console.watch(context.new_page())
    register(page, new_email("grace"))
    expect(page.get_by_text("PDF files up to 1.0 MB each.")).to_be_visible()

    # Several files at once: not a PDF, over the limit, and a scanned letter (read by OCR, on
    # the OCR queue: slow on a busy machine, hence the long wait on its status).
    page.locator("#file-input").set_input_files(
        [
            corpus / "bad" / "not_a_pdf.pdf",
            corpus / "DeepSeek_R1.pdf",
            corpus / "bad" / "file_scanned.pdf",
        ]
    )
    not_pdf = page.locator("li.upload", has_text="not_a_pdf.pdf")
    expect(not_pdf).to_have_attribute("data-status", "rejected")
    expect(not_pdf.get_by_role("alert")).to_contain_text("not a PDF")
    too_large = page.locator("li.upload", has_text="DeepSeek_R1.pdf")
    expect(too_large).to_have_attribute("data-status", "rejected")
    expect(too_large.get_by_role("alert")).to_contain_text("too large")
    scanned = page.locator("li.upload", has_text="file_scanned.pdf")
    expect(scanned).to_have_attribute("data-status", "ready", timeout=300_000)
    expect(scanned).to_contain_text("1 page read by OCR")
    screenshot(page, "library-errors")
    not_pdf.get_by_role("button", name="Dismiss not_a_pdf.pdf").click()
    expect(not_pdf).to_have_count(0)

    # Delete asks first; cancelling keeps the upload.
    scanned.get_by_role("button", name="Delete file_scanned.pdf").click()
    dialog = page.get_by_role("dialog", name="Delete this document?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(scanned).to_have_count(1)
    scanned.get_by_role("button", name="Delete file_scanned.pdf").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(scanned).to_have_count(0)

    # The progress stream's first two connections are lost: the page says so and reconnects.
    attempts: list[str] = []

    def flaky(route: Route) -> None:
        attempts.append(route.request.url)
        if len(attempts) <= 2:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/uploads/events", flaky)
    drop_file(page, "#dropzone", corpus / "quivr_sample.pdf")
    card = page.locator("li.upload", has_text="quivr_sample.pdf")
    expect(card).to_contain_text("Connection lost. Reconnecting…")
    expect(card).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(card).to_contain_text("10 pages")
    # Reconnecting asks the API for the upload first: if it is still being read the stream is
    # opened again (a third attempt), if it is already ready the card simply shows it.
    assert attempts, attempts

    # Without a language model the chat says so, and answers are quoted passages.
    card.get_by_role("link", name="Ask about quivr_sample.pdf").click()
    page.get_by_role("button", name="Start conversation").click()
    expect(page).to_have_url(re.compile(r"/chat\?c="))
    note = page.get_by_role("note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("No language model is configured")
    page.get_by_label("Your question").fill("What tools do you need to process the files?")
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator("article.msg").last
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer).to_have_attribute("data-mode", "extractive")
    expect(answer).to_contain_text("Quoted passages: no language model is configured")
    expect(answer.locator(".answer")).to_contain_text("Quoted passages. Confidence:")
    expect(answer.locator(".sources summary")).to_contain_text("confidence")
    expect(answer.locator(".cite").first).to_be_visible()
    page.evaluate("document.getElementById('main').scrollTop = 0")
    screenshot(page, "chat-extractive")
    assert console.errors == []
    context.close()


def test_a_citation_on_an_ocrd_page_highlights_the_recognised_lines(
    browser: Browser, extractive: Server, corpus: Path
) -> None:
    console = Console()
    context = new_context(browser, extractive)
    page = console.watch(context.new_page())
    register(page, new_email("hedy"))
    page.locator("#file-input").set_input_files(corpus / "bad" / "file_scanned.pdf")
    card = page.locator("li.upload", has_text="file_scanned.pdf")
    expect(card).to_have_attribute("data-status", "ready", timeout=300_000)
    card.get_by_role("link", name="Ask about file_scanned.pdf").click()
    page.get_by_role("button", name="Start conversation").click()
    question = page.get_by_label("Your question")
    question.fill("How does a photocell produce the video signal in facsimile?")
    question.press("Enter")
    answer = page.locator("article.msg").last
    expect(answer).to_have_attribute("data-state", "done")
    answer.get_by_role("button", name=re.compile(r"^Source 1: file_scanned\.pdf")).first.click()
    viewer = page.get_by_role("complementary", name="file_scanned.pdf")
    expect(viewer).to_have_attribute("data-state", "ready")
    expect(page.locator("#viewer-page")).to_have_text("Page 1 of 1")
    # The page is an image with no text layer: the recognised lines' boxes are the highlight.
    expect(viewer).to_have_attribute("data-ocr", "true")
    assert int(viewer.get_attribute("data-highlights") or 0) > 0
    boxes = highlight_boxes(page)
    assert boxes
    for left, top, width, height in boxes:  # on the page, each a line's size, not the page's
        assert left >= 0, boxes
        assert left + width <= 1.001, boxes
        assert top >= 0, boxes
        assert top + height <= 1.001, boxes
        assert 0 < height < 0.1, boxes
    # They stay on the same lines at another zoom.
    scale = float(viewer.get_attribute("data-scale") or 0)
    page.get_by_role("button", name="Zoom in").click()
    expect(viewer).not_to_have_attribute("data-scale", f"{scale:.4f}")
    expect(viewer).to_have_attribute("data-state", "ready")
    expect(viewer).to_have_attribute("data-ocr", "true")
    for got, want in zip(highlight_boxes(page), boxes, strict=True):
        assert got == pytest.approx(want, abs=0.01)
    screenshot(page, "viewer-ocr")
    # The scan itself is drawn (a CCITT fax image: pdf.js needs its WebAssembly decoders).
    inked = inked_pixels(page)
    assert inked > 1000, inked
    assert console.errors == []
    context.close()

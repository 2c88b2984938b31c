"""Steps the browser tests share: registering through the pages, dropping files, the API."""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD

# Records every distinct (value, max) the first upload's progress bar shows.
RECORD_PROGRESS = """() => {
  window.__progress = [];
  new MutationObserver(() => {
    const bar = document.querySelector("li.upload progress");
    if (!bar || !bar.hasAttribute("value")) return;
    const last = window.__progress.at(-1);
    const now = [bar.value, bar.max];
    if (!last || last[0] !== now[0] || last[1] !== now[1]) window.__progress.push(now);
  }).observe(document.getElementById("uploads"),
             { subtree: true, childList: true, attributes: true });
}"""

# Records the length of the answer being streamed each time its text changes.
RECORD_ANSWER = """() => {
  window.__lengths = [];
  new MutationObserver(() => {
    const answer = document.querySelector("article.msg[data-state=streaming] .answer");
    if (answer) window.__lengths.push(answer.textContent.length);
  }).observe(document.getElementById("messages"),
             { subtree: true, childList: true, characterData: true });
}"""


def new_email(who: str) -> str:
    return f"{who}-{uuid.uuid4().hex[:8]}@example.com"


def register(page: Page, email: str) -> None:
    """Create an account on the register page and land in the library."""
    page.goto("/login?mode=register")
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/library$"))
    # The library's script has taken over (its listeners are attached before it asks the server
    # for the upload limit it shows): a file chosen earlier would go nowhere.
    expect(page.locator("#limit-note")).to_contain_text("PDF files up to")


def drop_file(page: Page, selector: str, path: Path) -> None:
    """Drag a file from the desktop and drop it on ``selector``."""
    transfer = page.evaluate_handle(
        """([name, data]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type: "application/pdf" }));
          return transfer;
        }""",
        [path.name, base64.b64encode(path.read_bytes()).decode()],
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    expect(page.locator(selector)).to_have_class(re.compile("dragging"))
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def api_user(http: httpx.Client, email: str) -> dict[str, str]:
    """Register and log in through the API; the bearer header."""
    credentials = {"email": email, "password": PASSWORD}
    assert http.post("/api/v1/auth/register", json=credentials).status_code == 201
    r = http.post("/api/v1/auth/login", json=credentials)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def wait_ready(http: httpx.Client, upload_id: str, headers: dict[str, str]) -> None:
    """Read the upload's progress stream until it ends; it must end ``ready``."""
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
            elif line.startswith("data:") and name in ("ready", "failed"):
                assert name == "ready", json.loads(line.split(":", 1)[1])
                return
    raise AssertionError("the progress stream ended without ready")


def highlight_boxes(page: Page) -> list[list[float]]:
    """The viewer's highlight boxes relative to the drawn page: [left, top, width, height] as
    fractions of the page's width and height."""
    boxes: list[list[float]] = page.evaluate(
        """() => {
          const wrap = document.getElementById("viewer-canvas").getBoundingClientRect();
          return [...document.querySelectorAll("#viewer-highlights > div")].map((d) => {
            const r = d.getBoundingClientRect();
            return [(r.left - wrap.left) / wrap.width, (r.top - wrap.top) / wrap.height,
                    r.width / wrap.width, r.height / wrap.height];
          });
        }"""
    )
    return boxes


def inked_pixels(page: Page) -> int:
    """How many of the viewer canvas's pixels are dark: what pdf.js drew of the page."""
    dark: int = page.evaluate(
        """() => {
          const canvas = document.getElementById("viewer-canvas");
          const context = canvas.getContext("2d");
          const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
          let dark = 0;
          for (let i = 0; i < pixels.length; i += 4) if (pixels[i] < 128) dark++;
          return dark;
        }"""
    )
    return dark

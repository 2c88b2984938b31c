// One question and its answer: the text with clickable [n] citations, the sources, the mode,
// like / dislike, copy. Everything a document or a model wrote goes in as text nodes.
import { api } from "./api.js";
import { $, h } from "./dom.js";

const MARK = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;
const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  up: "M7 10v11H3V10h4Zm2 11h8.3a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 18.7 10H14l.9-4.3A1.7 1.7 0 0 0 12 4.8L9 10v11Z",
  down: "M7 14V3H3v11h4Zm2-11h8.3a2 2 0 0 1 2 1.6l1.4 7a2 2 0 0 1-2 2.4H14l.9 4.3a1.7 1.7 0 0 1-2.9 1.5L9 14V3Z",
  copy: "M8 8h11v13H8V8Zm-3 8H4V3h11v1",
};
const MODES = {
  extractive: "Quoted passages: no language model is configured",
  not_found: "Not found in the selected documents",
};

function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "1.8");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  return svg;
}

async function copyText(text) {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      // fall back below (permissions, insecure context)
    }
  }
  const area = h("textarea", { value: text, readOnly: true, class: "visually-hidden" });
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

export class AnswerView {
  /** ``message``: {id, question, answer, mode, sources, feedback}; ``onCite(source, button)``. */
  constructor(message, { onCite, sourcesOpen = true }) {
    this.id = message.id || null;
    this.text = message.answer || "";
    this.sources = message.sources || [];
    this.feedback = message.feedback || null;
    this.onCite = onCite;
    this.answer = h("div", { class: "answer", "aria-live": "polite", "aria-atomic": "false" });
    this.badge = h("p", { class: "mode-badge", hidden: true }, h("span", { class: "badge" }));
    this.reading = h("p", { class: "reading-note", hidden: true });
    this.sourceList = h("ol");
    this.sourceBox = h("details", { class: "sources", hidden: true, open: sourcesOpen },
      h("summary", {}), this.sourceList);
    this.up = h("button", { class: "button small ghost vote", type: "button", "aria-pressed": "false",
      "aria-label": "Like this answer", dataset: { vote: "up" } }, icon("up"), "Like");
    this.down = h("button", { class: "button small ghost vote", type: "button", "aria-pressed": "false",
      "aria-label": "Dislike this answer", dataset: { vote: "down" } }, icon("down"), "Dislike");
    this.copy = h("button", { class: "button small ghost copy", type: "button",
      "aria-label": "Copy the answer" }, icon("copy"), "Copy");
    this.status = h("span", { class: "status", role: "status" });
    this.foot = h("div", { class: "answer-foot" }, this.up, this.down, this.copy, this.status);
    this.el = h("article", { class: "msg" },
      h("p", { class: "question", text: message.question }),
      h("div", { class: "answer-card" }, this.badge, this.reading, this.answer, this.sourceBox, this.foot));
    if (this.id) this.el.dataset.messageId = this.id;
    this.answer.addEventListener("click", (e) => this.cite(e));
    this.sourceList.addEventListener("click", (e) => this.cite(e));
    this.up.addEventListener("click", () => this.vote("up"));
    this.down.addEventListener("click", () => this.vote("down"));
    this.copy.addEventListener("click", () => this.copyAnswer());
    this.setSources(this.sources);
    this.setMode(message.mode);
    this.setReading(message.reading);
    this.renderText();
    this.renderVote();
  }

  /** Documents still being read when this was answered: say how far ("pages 1–140 of 307"). */
  setReading(reading) {
    const partial = reading || [];
    this.reading.hidden = !partial.length;
    this.el.dataset.reading = partial.length ? "partial" : "";
    this.reading.textContent = partial.length
      ? `Answered while reading: ${partial.map((r) => `${r.upload_name}, ${r.note}`).join("; ")}.`
      : "";
  }

  setStreaming(streaming) {
    this.answer.setAttribute("aria-busy", String(streaming));
    this.el.dataset.state = streaming ? "streaming" : "done";
    this.up.disabled = this.down.disabled = streaming || !this.id;
    this.copy.disabled = streaming;
  }

  setSources(sources, confidence) {
    this.sources = sources;
    this.sourceBox.hidden = !sources.length;
    const sure = typeof confidence === "number" ? ` · confidence ${confidence.toFixed(2)}` : "";
    $("summary", this.sourceBox).textContent = `Sources (${sources.length})${sure}`;
    this.sourceList.replaceChildren(...sources.map((s) => h("li", {},
      h("button", { class: "source", type: "button", dataset: { n: s.n } },
        h("span", { class: "where", text: `[${s.n}] ${s.upload_name} · p. ${pageSpan(s.pages)}` }),
        h("span", { class: "snippet", text: s.text.slice(0, 240) })))));
    this.renderText();
  }

  setMode(mode) {
    const label = MODES[mode];
    this.badge.hidden = !label;
    this.el.dataset.mode = mode || "";
    if (label) $(".badge", this.badge).textContent = label;
  }

  appendText(piece) {
    this.text += piece;
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.renderText();
      });
    }
  }

  renderText() {
    const byNumber = new Map(this.sources.map((s) => [s.n, s]));
    const parts = [];
    let last = 0;
    const text = this.text.replace(/^\s+/, "");
    for (const match of text.matchAll(MARK)) {
      parts.push(text.slice(last, match.index));
      for (const n of match[1].split(",").map((x) => Number(x.trim()))) {
        const source = byNumber.get(n);
        parts.push(source
          ? h("button", { class: "cite", type: "button", dataset: { n },
              "aria-label": `Source ${n}: ${source.upload_name}, page ${source.page}`, text: `[${n}]` })
          : `[${n}]`);
      }
      last = match.index + match[0].length;
    }
    parts.push(text.slice(last));
    // **emphasis** (the figure an extractive answer found) becomes <strong>; all else is text.
    const rich = parts.flatMap((p) => typeof p !== "string" ? [p]
      : p.split(/\*\*([^*\n]+)\*\*/).map((t, i) => i % 2 ? h("strong", { text: t }) : t));
    this.answer.replaceChildren(...rich.filter((p) => p !== ""));
  }

  finish({ message_id, mode }) {
    cancelAnimationFrame(this.frame);
    this.frame = null;
    this.id = message_id;
    this.el.dataset.messageId = message_id;
    this.setMode(mode);
    this.renderText();
    this.setStreaming(false);
  }

  fail(detail) {
    this.renderText();
    this.setStreaming(false);
    this.el.dataset.state = "failed";
    this.answer.append(h("p", { class: "error", role: "alert", text: detail }));
  }

  stopped() {
    this.renderText();
    this.setStreaming(false);
    this.el.dataset.state = "stopped";
    this.status.textContent = "Stopped. This answer was not saved.";
  }

  cite(event) {
    const button = event.target.closest("button[data-n]");
    if (!button) return;
    const source = this.sources.find((s) => s.n === Number(button.dataset.n));
    if (source) this.onCite(source, button);
  }

  renderVote() {
    const vote = this.feedback?.vote;
    this.up.setAttribute("aria-pressed", String(vote === "up"));
    this.down.setAttribute("aria-pressed", String(vote === "down"));
    this.el.dataset.vote = vote || "";
    this.setStreaming(false);
  }

  async vote(vote) {
    if (!this.id) return;
    const path = `/messages/${encodeURIComponent(this.id)}/feedback`;
    try {
      if (this.feedback?.vote === vote) {
        await api(path, { method: "DELETE" });
        this.feedback = null;
        this.status.textContent = "Vote withdrawn.";
      } else {
        this.feedback = await api(path, { method: "PUT", json: { vote } });
        this.status.textContent = "Thanks for the feedback.";
      }
      this.renderVote();
    } catch (err) {
      this.status.textContent = `The vote was not saved: ${err.message}`;
    }
  }

  async copyAnswer() {
    await copyText(this.text.trim());
    this.status.textContent = "Copied.";
  }
}

export function pageSpan(pages) {
  if (!pages?.length) return "";
  const first = pages[0];
  const last = pages[pages.length - 1];
  return first === last ? String(first) : `${first}–${last}`;
}

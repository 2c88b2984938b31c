// The PDF viewer beside the chat: pdf.js (vendored, served by the app) renders the cited page
// to a canvas, and the cited passage is highlighted where the page's text positions match it;
// on a page read by OCR (no usable text layer), where the recognised lines' boxes match it.
import { api } from "./api.js";
import { $ } from "./dom.js";

const PDFJS = "/static/vendor/pdfjs/pdf.min.mjs";
const WORKER = "/static/vendor/pdfjs/pdf.worker.min.mjs";
const SHINGLE = 3; // words in a row that must match the passage for a word to count

let pdfjsPromise = null;

function pdfjs() {
  pdfjsPromise ??= import(PDFJS).then((lib) => {
    lib.GlobalWorkerOptions.workerSrc = WORKER;
    return lib;
  });
  return pdfjsPromise;
}

function words(text) {
  return text.normalize("NFKC").toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
}

/** Indexes of the text items most of whose words belong to a run of the passage's words. */
export function matchingItems(items, passage) {
  const target = words(passage);
  if (target.length < SHINGLE) return [];
  const shingles = new Set();
  for (let i = 0; i + SHINGLE <= target.length; i++) shingles.add(target.slice(i, i + SHINGLE).join(" "));
  const sequence = [];
  items.forEach((item, index) => {
    for (const word of words(item.str || "")) sequence.push({ word, index });
  });
  const hit = new Uint8Array(sequence.length);
  for (let i = 0; i + SHINGLE <= sequence.length; i++) {
    const key = sequence.slice(i, i + SHINGLE).map((s) => s.word).join(" ");
    if (shingles.has(key)) hit.fill(1, i, i + SHINGLE);
  }
  const total = new Map();
  const hits = new Map();
  sequence.forEach(({ index }, i) => {
    total.set(index, (total.get(index) || 0) + 1);
    hits.set(index, (hits.get(index) || 0) + hit[i]);
  });
  return [...total.keys()].filter((index) => hits.get(index) / total.get(index) >= 0.5);
}

export class Viewer {
  constructor({ layout, onClose }) {
    this.layout = layout;
    this.onClose = onClose;
    this.root = $("#viewer");
    this.canvas = $("#viewer-canvas");
    this.wrap = $("#viewer-page-wrap");
    this.marks = $("#viewer-highlights");
    this.body = $("#viewer-body");
    this.status = $("#viewer-status");
    this.documents = new Map(); // upload id -> Promise<PDFDocumentProxy>
    this.sequence = 0;
    this.task = null;
    $("#viewer-close").addEventListener("click", () => this.close());
    $("#viewer-prev").addEventListener("click", () => this.go(this.pageNumber - 1));
    $("#viewer-next").addEventListener("click", () => this.go(this.pageNumber + 1));
    this.root.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.close();
      else if (e.key === "ArrowLeft" && e.target === this.body) this.go(this.pageNumber - 1);
      else if (e.key === "ArrowRight" && e.target === this.body) this.go(this.pageNumber + 1);
    });
    let resizing;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => !this.root.hidden && this.doc && this.render(), 200);
    });
  }

  /** Open ``uploadId`` at ``page`` and highlight ``passage`` there. */
  async open({ uploadId, name, page, passage }) {
    this.root.hidden = false;
    this.layout.classList.add("viewing");
    $("#viewer-title").textContent = name;
    this.root.dataset.upload = uploadId;
    this.root.dataset.state = "loading";
    this.passage = passage || "";
    this.status.textContent = "Opening the document…";
    if (window.matchMedia("(max-width: 760px)").matches) $("#viewer-close").focus();
    const sequence = ++this.sequence;
    try {
      const lib = await pdfjs();
      if (!this.documents.has(uploadId)) {
        const url = `/api/v1/uploads/${encodeURIComponent(uploadId)}/file`;
        const loading = lib.getDocument({ url, isEvalSupported: false, withCredentials: true }).promise;
        loading.catch(() => this.documents.delete(uploadId));
        this.documents.set(uploadId, loading);
      }
      const doc = await this.documents.get(uploadId);
      if (sequence !== this.sequence) return;
      this.doc = doc;
      this.lib = lib;
      this.pageNumber = Math.min(Math.max(1, page), doc.numPages);
      await this.render();
    } catch (err) {
      if (sequence !== this.sequence) return;
      this.root.dataset.state = "error";
      this.status.textContent = `The document could not be opened: ${err.message || err}`;
    }
  }

  go(number) {
    if (!this.doc || number < 1 || number > this.doc.numPages) return;
    this.pageNumber = number;
    this.render();
  }

  async render() {
    const sequence = ++this.sequence;
    const number = this.pageNumber;
    this.root.dataset.state = "loading";
    this.task?.cancel();
    const page = await this.doc.getPage(number);
    if (sequence !== this.sequence) return;
    const available = Math.max(240, this.body.clientWidth - 32);
    const scale = Math.min(2, available / page.getViewport({ scale: 1 }).width);
    const viewport = page.getViewport({ scale });
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.floor(viewport.width * ratio);
    this.canvas.height = Math.floor(viewport.height * ratio);
    this.canvas.style.width = `${Math.floor(viewport.width)}px`;
    this.canvas.style.height = `${Math.floor(viewport.height)}px`;
    this.marks.replaceChildren();
    this.task = page.render({
      canvas: this.canvas,
      viewport,
      transform: ratio === 1 ? undefined : [ratio, 0, 0, ratio, 0, 0],
    });
    try {
      await this.task.promise;
    } catch (err) {
      if (err?.name === "RenderingCancelledException") return;
      throw err;
    }
    if (sequence !== this.sequence) return;
    const count = await this.highlight(page, viewport);
    if (sequence !== this.sequence) return;
    $("#viewer-page").textContent = `Page ${number} of ${this.doc.numPages}`;
    $("#viewer-prev").disabled = number <= 1;
    $("#viewer-next").disabled = number >= this.doc.numPages;
    this.root.dataset.page = String(number);
    this.root.dataset.highlights = String(count);
    this.root.dataset.state = "ready";
    this.status.textContent = count
      ? ""
      : this.passage ? "The cited passage could not be located on this page." : "";
    const first = this.marks.firstElementChild;
    if (first) this.body.scrollTop = Math.max(0, first.offsetTop - 80);
    else this.body.scrollTop = 0;
  }

  async highlight(page, viewport) {
    if (!this.passage) return 0;
    const content = await page.getTextContent();
    const items = content.items;
    const marks = [];
    const matched = matchingItems(items, this.passage);
    if (!matched.length) return this.highlightOcr(viewport);
    for (const index of matched) {
      const item = items[index];
      const tx = this.lib.Util.transform(viewport.transform, item.transform);
      const height = Math.hypot(tx[2], tx[3]);
      const width = item.width * viewport.scale;
      if (!width || !height) continue;
      const mark = document.createElement("div");
      mark.style.left = `${tx[4]}px`;
      mark.style.top = `${tx[5] - height}px`;
      mark.style.width = `${width}px`;
      mark.style.height = `${height * 1.2}px`;
      marks.push(mark);
    }
    this.marks.replaceChildren(...marks);
    return marks.length;
  }

  /** Highlight the OCR'd lines of the page that match the passage (boxes: page fractions). */
  async highlightOcr(viewport) {
    const uploadId = this.root.dataset.upload;
    const number = this.pageNumber;
    let lines = [];
    try {
      const found = await api(`/uploads/${encodeURIComponent(uploadId)}/pages/${number}/ocr`);
      lines = found.lines || [];
    } catch {
      return 0; // no OCR lines to offer: the "could not be located" note stays
    }
    if (!lines.length || number !== this.pageNumber) return 0;
    const items = lines.map((line) => ({ str: line.text }));
    const marks = [];
    for (const index of matchingItems(items, this.passage)) {
      const { x0, y0, x1, y1 } = lines[index];
      const mark = document.createElement("div");
      mark.className = "ocr";
      mark.style.left = `${x0 * viewport.width}px`;
      mark.style.top = `${y0 * viewport.height}px`;
      mark.style.width = `${(x1 - x0) * viewport.width}px`;
      mark.style.height = `${(y1 - y0) * viewport.height}px`;
      marks.push(mark);
    }
    this.marks.replaceChildren(...marks);
    this.root.dataset.ocr = marks.length ? "true" : "false";
    return marks.length;
  }

  close() {
    const wasOpen = !this.root.hidden;
    this.sequence++;
    this.task?.cancel();
    this.root.hidden = true;
    this.layout.classList.remove("viewing");
    delete this.root.dataset.page;
    if (wasOpen) this.onClose?.();
  }
}

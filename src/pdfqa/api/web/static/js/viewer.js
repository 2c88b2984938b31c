// The PDF viewer beside the chat (and over the library): pdf.js (vendored, served by the app)
// renders one page to a canvas with a selectable text layer over it; zoom (buttons, Ctrl+wheel,
// pinch), fit width / fit page, a page list, and find in document with pdf.js's own find
// controller and text highlighter. The cited passage is highlighted where the page's text
// positions match it (drawPassageHighlight), recomputed from the viewport at every zoom; on a
// page read by OCR (no usable text layer), where the recognised lines' boxes match it
// (highlightOcr).
import { api } from "./api.js";
import { $, h } from "./dom.js";

const PDFJS = "/static/vendor/pdfjs/pdf.min.mjs";
const PDFJS_VIEWER = "/static/vendor/pdfjs/pdf_viewer.mjs";
const WORKER = "/static/vendor/pdfjs/pdf.worker.min.mjs";
const WASM = "/static/vendor/pdfjs/wasm/"; // pdf.js's image decoders (JBIG2, CCITT, JPEG 2000)
const SHINGLE = 3; // words in a row that must match the passage for a word to count
const CSS_UNITS = 96 / 72; // "100%" is the page at its printed size
const MIN_ZOOM = 0.25;
const MAX_ZOOM = 5;
const STEPS = [0.25, 0.33, 0.5, 0.67, 0.75, 0.9, 1, 1.1, 1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5];
const FIND_STATE = { FOUND: 0, NOT_FOUND: 1, WRAPPED: 2, PENDING: 3 };

let pdfjsPromise = null;

/** pdf.js and its viewer components (which read the library from globalThis.pdfjsLib). */
function pdfjs() {
  pdfjsPromise ??= import(PDFJS).then(async (lib) => {
    lib.GlobalWorkerOptions.workerSrc = WORKER;
    globalThis.pdfjsLib = lib;
    const components = await import(PDFJS_VIEWER);
    return { lib, components };
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

/**
 * THE CITED PASSAGE'S HIGHLIGHT, and only that: boxes over the text items of ``page`` that match
 * ``passage``, placed in ``container`` (which overlays the page) in the CSS pixels of
 * ``viewport``. Called on every render, so the boxes follow every zoom. Returns how many.
 */
export async function drawPassageHighlight({ lib, page, viewport, passage, container }) {
  container.replaceChildren();
  if (!passage) return 0;
  const content = await page.getTextContent();
  const items = content.items;
  const marks = [];
  for (const index of matchingItems(items, passage)) {
    const item = items[index];
    const tx = lib.Util.transform(viewport.transform, item.transform);
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
  container.replaceChildren(...marks);
  return marks.length;
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
    this.pageList = $("#viewer-page-list");
    this.documents = new Map(); // upload id -> Promise<PDFDocumentProxy>
    this.sequence = 0;
    this.task = null;
    this.textLayer = null;
    this.fit = "width"; // "width", "page", or null (this.zoom is the person's own)
    this.zoom = 1;
    this.scale = 1;
    $("#viewer-close").addEventListener("click", () => this.close());
    $("#viewer-prev").addEventListener("click", () => this.go(this.pageNumber - 1));
    $("#viewer-next").addEventListener("click", () => this.go(this.pageNumber + 1));
    $("#viewer-zoom-in").addEventListener("click", () => this.step(1));
    $("#viewer-zoom-out").addEventListener("click", () => this.step(-1));
    $("#viewer-fit-width").addEventListener("click", () => this.setFit("width"));
    $("#viewer-fit-page").addEventListener("click", () => this.setFit("page"));
    this.pageList.addEventListener("change", () => this.go(Number(this.pageList.value)));
    $("#viewer-find").addEventListener("submit", (e) => {
      e.preventDefault();
      this.find(false); // Enter: the next match
    });
    $("#viewer-find-prev").addEventListener("click", () => this.find(true));
    $("#viewer-find-input").addEventListener("input", () => this.find(false, true));
    this.root.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        this.close();
      } else if (e.target === this.body && (e.key === "ArrowLeft" || e.key === "PageUp" && e.ctrlKey)) {
        this.go(this.pageNumber - 1);
      } else if (e.target === this.body && (e.key === "ArrowRight" || e.key === "PageDown" && e.ctrlKey)) {
        this.go(this.pageNumber + 1);
      } else if ((e.ctrlKey || e.metaKey) && (e.key === "+" || e.key === "=")) {
        e.preventDefault();
        this.step(1);
      } else if ((e.ctrlKey || e.metaKey) && e.key === "-") {
        e.preventDefault();
        this.step(-1);
      } else if ((e.ctrlKey || e.metaKey) && e.key === "f") {
        e.preventDefault();
        $("#viewer-find-input").focus();
      }
    });
    this.setUpGestures();
    let resizing;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => !this.root.hidden && this.doc && this.fit && this.render("keep"), 200);
    });
  }

  // Ctrl+wheel (and a trackpad's pinch, which browsers send as Ctrl+wheel) and a two-finger
  // pinch on a touch screen zoom around the page; the page is drawn again at the new size.
  setUpGestures() {
    this.body.addEventListener("wheel", (e) => {
      if (!e.ctrlKey || !this.doc) return;
      e.preventDefault();
      this.setZoom(this.zoom * Math.exp(-e.deltaY * 0.002));
    }, { passive: false });
    const touches = new Map();
    let start = 0;
    let startZoom = 1;
    const distance = () => {
      const [a, b] = [...touches.values()];
      return Math.hypot(a.x - b.x, a.y - b.y);
    };
    this.body.addEventListener("pointerdown", (e) => {
      if (e.pointerType !== "touch") return;
      touches.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (touches.size === 2) {
        start = distance();
        startZoom = this.zoom;
      }
    });
    this.body.addEventListener("pointermove", (e) => {
      if (!touches.has(e.pointerId)) return;
      touches.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (touches.size === 2 && start > 0) {
        // A cheap preview while the fingers move; drawn properly when they lift.
        const ratio = distance() / start;
        this.wrap.style.transform = `scale(${ratio})`;
        this.wrap.style.transformOrigin = "top center";
        this.pinchZoom = startZoom * ratio;
      }
    });
    const end = (e) => {
      touches.delete(e.pointerId);
      if (touches.size < 2 && this.pinchZoom) {
        this.wrap.style.transform = "";
        const zoom = this.pinchZoom;
        this.pinchZoom = null;
        start = 0;
        this.setZoom(zoom);
      }
    };
    this.body.addEventListener("pointerup", end);
    this.body.addEventListener("pointercancel", end);
  }

  /** Open ``uploadId`` at ``page`` and highlight ``passage`` there; focus moves into it. */
  async open({ uploadId, name, page, passage }) {
    this.root.hidden = false;
    this.layout.classList.add("viewing");
    $("#viewer-title").textContent = name;
    this.root.dataset.upload = uploadId;
    this.root.dataset.state = "loading";
    this.passage = passage || "";
    this.status.textContent = "Opening the document…";
    // Keyboard focus goes into the viewer (so Escape closes it and arrows turn pages).
    this.body.focus({ preventScroll: true });
    const sequence = ++this.sequence;
    try {
      const { lib, components } = await pdfjs();
      if (!this.documents.has(uploadId)) {
        const url = `/api/v1/uploads/${encodeURIComponent(uploadId)}/file`;
        // wasmUrl: pdf.js decodes JBIG2 and CCITT scans and JPEG 2000 images with its WebAssembly
        // decoders; without them a scanned page is drawn blank.
        const loading = lib.getDocument({
          url, isEvalSupported: false, withCredentials: true, wasmUrl: WASM,
        }).promise;
        loading.catch(() => this.documents.delete(uploadId));
        this.documents.set(uploadId, loading);
      }
      const doc = await this.documents.get(uploadId);
      if (sequence !== this.sequence) return;
      this.lib = lib;
      this.components = components;
      if (this.doc !== doc) {
        this.doc = doc;
        this.setUpFind(doc);
        this.pageList.replaceChildren(...Array.from({ length: doc.numPages }, (_, i) =>
          h("option", { value: String(i + 1), text: `Page ${i + 1} of ${doc.numPages}` })));
      }
      this.pageNumber = Math.min(Math.max(1, page), doc.numPages);
      await this.render("passage");
    } catch (err) {
      if (sequence !== this.sequence) return;
      this.root.dataset.state = "error";
      this.status.textContent = `The document could not be opened: ${err.message || err}`;
    }
  }

  // --- find in document (pdf.js's PDFFindController and TextHighlighter) -------------------

  setUpFind(doc) {
    const { EventBus, PDFFindController } = this.components;
    const viewer = this;
    this.eventBus = new EventBus();
    // The find controller asks which page is shown, and turns to the page of a match.
    const linkService = {
      get pagesCount() { return viewer.doc?.numPages || 0; },
      get page() { return viewer.pageNumber || 1; },
      set page(n) { viewer.go(n, "none"); },
    };
    // The count is reported once every page has been searched: "3 of 12" never grows under
    // the person's eyes (or a test's), and "Searching…" shows until then.
    this.findController = new PDFFindController({
      linkService,
      eventBus: this.eventBus,
      updateMatchesCountOnProgress: false,
    });
    this.findController.setDocument(doc);
    const count = $("#viewer-find-count");
    const show = ({ state, matchesCount }) => {
      const query = $("#viewer-find-input").value.trim();
      const { current = 0, total = 0 } = matchesCount || {};
      this.root.dataset.findMatches = String(total);
      if (!query) count.textContent = "";
      else if (state === FIND_STATE.PENDING) count.textContent = "Searching…";
      else if (state === FIND_STATE.NOT_FOUND || !total) count.textContent = "Not found";
      else count.textContent = `${current} of ${total}`;
    };
    this.eventBus.on("updatefindcontrolstate", show);
    this.eventBus.on("updatefindmatchescount", ({ matchesCount }) =>
      show({ state: FIND_STATE.FOUND, matchesCount }));
    $("#viewer-find-input").value = "";
    count.textContent = "";
  }

  find(previous, typing = false) {
    if (!this.eventBus) return;
    const query = $("#viewer-find-input").value;
    if (typing) $("#viewer-find-count").textContent = query.trim() ? "Searching…" : "";
    this.eventBus.dispatch("find", {
      source: this,
      type: typing ? "" : "again",
      query,
      caseSensitive: false,
      entireWord: false,
      highlightAll: true,
      findPrevious: previous,
      matchDiacritics: false,
    });
  }

  // --- zoom -----------------------------------------------------------------------------

  step(direction) {
    const current = this.zoom;
    const next = direction > 0
      ? STEPS.find((s) => s > current + 0.001) ?? MAX_ZOOM
      : [...STEPS].reverse().find((s) => s < current - 0.001) ?? MIN_ZOOM;
    this.setZoom(next);
  }

  setZoom(zoom) {
    this.fit = null;
    this.zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom));
    if (this.doc) this.render("keep");
  }

  setFit(fit) {
    this.fit = fit;
    if (this.doc) this.render("keep");
  }

  go(number, scroll = "top") {
    if (!this.doc || number < 1 || number > this.doc.numPages) return;
    this.pageNumber = number;
    this.render(scroll);
  }

  /** The scale that shows ``page`` as the person asked: fit width, fit page, or a zoom. */
  scaleFor(page) {
    const natural = page.getViewport({ scale: 1 });
    const width = Math.max(120, this.body.clientWidth - 32);
    const height = Math.max(120, this.body.clientHeight - 32);
    if (this.fit === "width") return width / natural.width;
    if (this.fit === "page") return Math.min(width / natural.width, height / natural.height);
    return this.zoom * CSS_UNITS;
  }

  /** Draw the page; ``scroll``: "passage" (to the highlight), "keep", "top" or "none". */
  async render(scroll = "top") {
    const sequence = ++this.sequence;
    const number = this.pageNumber;
    this.root.dataset.state = "loading";
    this.task?.cancel();
    const before = {
      x: this.body.scrollLeft / Math.max(1, this.body.scrollWidth),
      y: this.body.scrollTop / Math.max(1, this.body.scrollHeight),
    };
    const page = await this.doc.getPage(number);
    if (sequence !== this.sequence) return;
    const scale = this.scaleFor(page);
    this.scale = scale;
    this.zoom = scale / CSS_UNITS;
    const viewport = page.getViewport({ scale });
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.floor(viewport.width * ratio);
    this.canvas.height = Math.floor(viewport.height * ratio);
    this.canvas.style.width = `${Math.floor(viewport.width)}px`;
    this.canvas.style.height = `${Math.floor(viewport.height)}px`;
    this.wrap.style.setProperty("--scale-factor", String(scale));
    this.marks.replaceChildren();
    this.showZoom();
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
    await this.renderTextLayer(page, viewport, number);
    if (sequence !== this.sequence) return;
    let count = await drawPassageHighlight({
      lib: this.lib, page, viewport, passage: this.passage, container: this.marks,
    });
    if (sequence !== this.sequence) return;
    if (!count && this.passage) count = await this.highlightOcr(viewport);
    if (sequence !== this.sequence) return;
    $("#viewer-page").textContent = `Page ${number} of ${this.doc.numPages}`;
    $("#viewer-prev").disabled = number <= 1;
    $("#viewer-next").disabled = number >= this.doc.numPages;
    this.pageList.value = String(number);
    this.root.dataset.page = String(number);
    this.root.dataset.highlights = String(count);
    this.root.dataset.scale = scale.toFixed(4);
    this.root.dataset.state = "ready";
    this.status.textContent = count
      ? ""
      : this.passage ? "The cited passage could not be located on this page." : "";
    if (scroll === "passage") {
      const first = this.marks.firstElementChild;
      this.body.scrollTop = first ? Math.max(0, first.offsetTop - 80) : 0;
    } else if (scroll === "keep") {
      this.body.scrollLeft = before.x * this.body.scrollWidth;
      this.body.scrollTop = before.y * this.body.scrollHeight;
    } else if (scroll === "top") {
      this.body.scrollTop = 0;
    }
  }

  /** pdf.js's selectable text layer, with the find controller's matches on it. */
  async renderTextLayer(page, viewport, number) {
    this.textLayer?.cancel();
    this.textLayer?.div.remove();
    const { TextLayerBuilder } = this.components;
    const TextHighlighter = this.highlighterClass(page);
    const highlighter = TextHighlighter
      ? new TextHighlighter({ findController: this.findController, eventBus: this.eventBus, pageIndex: number - 1 })
      : null;
    const builder = new TextLayerBuilder({ pdfPage: page, highlighter });
    this.textLayer = builder;
    this.wrap.append(builder.div);
    try {
      await builder.render({ viewport });
    } catch (err) {
      if (err?.name !== "AbortException") throw err;
    }
  }

  /** pdf_viewer.mjs does not export TextHighlighter (the find controller's marks on a text
   * layer); its PDFPageView makes one, so we take the class from a page view that is never
   * shown (no container; a no-op l10n, so no locale files are fetched). */
  highlighterClass(page) {
    if (this.highlighter !== undefined) return this.highlighter;
    this.highlighter = null;
    try {
      const { PDFPageView } = this.components;
      const probe = new PDFPageView({
        container: null,
        eventBus: this.eventBus,
        id: 1,
        scale: 1,
        defaultViewport: page.getViewport({ scale: 1 }),
        layerProperties: { findController: this.findController },
        l10n: { translate: async () => {}, get: async () => "", getLanguage: () => "en", getDirection: () => "ltr" },
      });
      this.highlighter = probe._textHighlighter?.constructor || null;
    } catch (err) {
      console.warn("find: matches will not be marked on the page", err);
      this.highlighter = null;
    }
    return this.highlighter;
  }

  showZoom() {
    $("#viewer-zoom").textContent = `${Math.round(this.zoom * 100)}%`;
    $("#viewer-fit-width").setAttribute("aria-pressed", String(this.fit === "width"));
    $("#viewer-fit-page").setAttribute("aria-pressed", String(this.fit === "page"));
    $("#viewer-zoom-in").disabled = this.zoom >= MAX_ZOOM - 0.001;
    $("#viewer-zoom-out").disabled = this.zoom <= MIN_ZOOM + 0.001;
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

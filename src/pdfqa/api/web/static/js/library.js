// The document library: upload (button or drag and drop, several at once), live progress per
// upload from its server-sent event stream, status, error reason, delete with confirmation.
import { api, apiAll, ApiError } from "./api.js";
import { initChrome } from "./chrome.js";
import { $, confirmWith, formatBytes, h, showError } from "./dom.js";

const list = $("#uploads");
const items = new Map(); // upload id (or a local key while sending) -> item
let maxBytes = Infinity;
const RETRY_MS = [1000, 2000, 4000, 8000, 15000];

const LABELS = {
  uploading: "Uploading",
  queued: "Queued",
  processing: "Reading",
  ready: "Ready",
  failed: "Failed",
  rejected: "Not uploaded",
};

function plural(n, word) {
  return `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
}

function createCard(item) {
  const card = h("li", { class: "upload" },
    h("p", { class: "upload-name", text: item.name }),
    h("p", { class: "upload-meta" },
      h("span", { class: "badge" }), " ", h("span", { class: "facts" })),
    h("div", { class: "upload-actions" },
      h("a", { class: "button small ask-link", href: "#", hidden: true, text: "Ask" }),
      h("button", { class: "button small danger delete", type: "button" })),
    h("div", { class: "bar" },
      h("progress", { max: 1, value: 0, "aria-label": `Progress of ${item.name}` }),
      h("span", { class: "bar-text", "aria-live": "polite" })),
    h("p", { class: "reason error", role: "alert", hidden: true }));
  $(".delete", card).addEventListener("click", () => remove(item));
  item.card = card;
  return card;
}

function render(item) {
  const card = item.card;
  const status = item.status;
  card.dataset.status = status;
  if (item.id) card.dataset.id = item.id;
  const badge = $(".badge", card);
  badge.className = `badge ${status}`;
  badge.textContent = LABELS[status] || status;
  const facts = [formatBytes(item.size)];
  if (item.pagesTotal) facts.push(plural(item.pagesTotal, "page"));
  if (status === "ready") facts.push(plural(item.chunks, "passage"));
  if (status === "ready" && item.pagesOcr) facts.push(`${plural(item.pagesOcr, "page")} read by OCR`);
  if (item.pagesSkipped) facts.push(`${plural(item.pagesSkipped, "page")} skipped`);
  $(".facts", card).textContent = `· ${facts.join(" · ")}`;

  const progress = $("progress", card);
  const text = $(".bar-text", card);
  $(".bar", card).hidden = status === "failed" || status === "rejected";
  if (status === "uploading") {
    progress.removeAttribute("value");
    text.textContent = "Sending the file…";
  } else if (status === "ready") {
    progress.max = item.pagesTotal || 1;
    progress.value = progress.max;
    text.textContent = "Ready to ask";
  } else if (item.pagesTotal) {
    progress.max = item.pagesTotal;
    progress.value = item.pagesDone;
    text.textContent = `${item.pagesDone} of ${plural(item.pagesTotal, "page")}`;
  } else {
    progress.max = 1;
    progress.value = 0;
    text.textContent = "Waiting for a worker…";
  }
  if (item.connection === "reconnecting" && status !== "ready") {
    text.textContent = "Connection lost. Reconnecting…";
  }
  const reason = $(".reason", card);
  reason.textContent = item.error || "";
  reason.hidden = !item.error;
  const ask = $(".ask-link", card);
  ask.hidden = status !== "ready";
  if (item.id) ask.href = `/chat?docs=${encodeURIComponent(item.id)}`;
  ask.setAttribute("aria-label", `Ask about ${item.name}`);
  const remove = $(".delete", card);
  remove.textContent = status === "rejected" ? "Dismiss" : "Delete";
  remove.setAttribute("aria-label", `${remove.textContent} ${item.name}`);
  $("#empty").hidden = items.size > 0;
}

function fromUpload(upload) {
  return {
    id: upload.id,
    name: upload.name,
    size: upload.size,
    status: upload.status,
    pagesDone: upload.pages_done ?? 0,
    pagesTotal: upload.pages_total ?? 0,
    pagesSkipped: upload.pages_skipped ?? 0,
    pagesOcr: upload.pages_ocr ?? 0,
    chunks: upload.chunks ?? 0,
    error: upload.error || "",
  };
}

function add(item, { first = false } = {}) {
  items.set(item.id || item.key, item);
  const card = createCard(item);
  if (first) list.prepend(card);
  else list.append(card);
  render(item);
  if (item.status === "queued" || item.status === "processing") watch(item);
}

// Progress: one EventSource per unfinished upload. Its first event is the current state, so a
// reconnect loses nothing. On any error we close it and reconnect ourselves with a back-off,
// after asking the API for the upload (which also notices an expired session).
function watch(item) {
  stopWatching(item);
  const source = new EventSource(`/api/v1/uploads/${encodeURIComponent(item.id)}/events`);
  item.source = source;
  source.addEventListener("open", () => {
    item.attempt = 0;
    item.connection = "live";
    render(item);
  });
  source.addEventListener("progress", (e) => {
    const data = JSON.parse(e.data);
    Object.assign(item, {
      status: data.pages_total ? "processing" : "queued",
      pagesDone: data.pages_done,
      pagesTotal: data.pages_total,
      chunks: data.chunks,
    });
    render(item);
  });
  source.addEventListener("ready", (e) => {
    const data = JSON.parse(e.data);
    stopWatching(item);
    Object.assign(item, {
      status: "ready",
      pagesDone: data.pages_total,
      pagesTotal: data.pages_total,
      chunks: data.chunks,
      pagesSkipped: data.pages_skipped,
      pagesOcr: data.pages_ocr ?? 0,
      connection: "done",
    });
    render(item);
  });
  source.addEventListener("failed", (e) => {
    const data = JSON.parse(e.data);
    stopWatching(item);
    Object.assign(item, { status: "failed", error: data.reason, connection: "done" });
    render(item);
  });
  source.addEventListener("deleted", () => stopWatching(item));
  source.addEventListener("error", () => {
    if (item.source !== source) return;
    stopWatching(item);
    item.connection = "reconnecting";
    render(item);
    const delay = RETRY_MS[Math.min(item.attempt || 0, RETRY_MS.length - 1)];
    item.attempt = (item.attempt || 0) + 1;
    item.retry = setTimeout(() => reconnect(item), delay);
  });
}

async function reconnect(item) {
  if (!items.has(item.id)) return;
  try {
    const upload = await api(`/uploads/${encodeURIComponent(item.id)}`);
    Object.assign(item, fromUpload(upload));
    if (item.status === "queued" || item.status === "processing") {
      watch(item);
    } else {
      item.connection = "done";
    }
    render(item);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      forget(item);
      return;
    }
    const delay = RETRY_MS[Math.min(item.attempt || 0, RETRY_MS.length - 1)];
    item.attempt = (item.attempt || 0) + 1;
    item.retry = setTimeout(() => reconnect(item), delay);
  }
}

function stopWatching(item) {
  item.source?.close();
  item.source = null;
  clearTimeout(item.retry);
}

function forget(item) {
  stopWatching(item);
  items.delete(item.id || item.key);
  item.card.remove();
  $("#empty").hidden = items.size > 0;
}

async function remove(item) {
  if (item.status === "rejected") {
    forget(item);
    return;
  }
  const confirmed = await confirmWith($("#confirm-delete"), () => {
    $("#confirm-text").textContent =
      `“${item.name}” and everything read from it will be deleted. Conversations about it keep their answers.`;
  });
  if (!confirmed) return;
  try {
    await api(`/uploads/${encodeURIComponent(item.id)}`, { method: "DELETE" });
    forget(item);
    list.querySelector(".delete")?.focus();
  } catch (err) {
    showError($("#library-error"), `Could not delete “${item.name}”: ${err.message}`);
  }
}

let localKeys = 0;

async function send(file) {
  const item = { key: `local-${++localKeys}`, name: file.name, size: file.size, status: "uploading" };
  add(item, { first: true });
  if (file.size > maxBytes) {
    Object.assign(item, {
      status: "rejected",
      error: `This file is too large: ${formatBytes(file.size)}; the limit is ${formatBytes(maxBytes)}.`,
    });
    render(item);
    return;
  }
  const body = new FormData();
  body.append("file", file, file.name);
  try {
    const accepted = await api("/uploads", { method: "POST", body });
    items.delete(item.key);
    Object.assign(item, {
      id: accepted.id, name: accepted.name, size: accepted.size, status: accepted.status,
      pagesDone: 0, pagesTotal: 0, chunks: 0,
    });
    items.set(item.id, item);
    render(item);
    watch(item);
  } catch (err) {
    Object.assign(item, { status: "rejected", error: err.message });
    render(item);
  }
}

function sendAll(files) {
  showError($("#library-error"), "");
  for (const file of files) send(file);
}

function setUpDropzone() {
  const zone = $("#dropzone");
  const input = $("#file-input");
  input.addEventListener("change", () => {
    sendAll([...input.files]);
    input.value = "";
  });
  // Dropping anywhere on the page uploads; the zone lights up while something is dragged.
  let depth = 0;
  document.addEventListener("dragenter", (e) => {
    if (!e.dataTransfer?.types.includes("Files")) return;
    depth += 1;
    zone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("dragging");
  });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    if (e.dataTransfer?.files.length) sendAll([...e.dataTransfer.files]);
  });
}

async function start() {
  initChrome();
  setUpDropzone();
  try {
    const [meta, uploads] = await Promise.all([api("/meta"), apiAll("/uploads")]);
    maxBytes = meta.max_upload_bytes;
    $("#limit-note").textContent = `PDF files up to ${formatBytes(maxBytes)} each.`;
    for (const upload of uploads) add(fromUpload(upload));
    $("#empty").hidden = items.size > 0;
  } catch (err) {
    if (err.status !== 401) showError($("#library-error"), err.message);
  }
}

start();

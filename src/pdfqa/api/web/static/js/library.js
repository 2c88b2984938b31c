// The document library: upload (button or drag and drop, several at once), live progress of
// every unfinished upload over ONE server-sent event stream, status, date, error reason, a
// filter box, open any document in the viewer, delete with confirmation.
import { api, apiAll, ApiError } from "./api.js";
import { initChrome } from "./chrome.js";
import { $, confirmWith, formatBytes, formatDate, h, showError } from "./dom.js";
import { Viewer } from "./viewer.js";

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

let opener = null;
const viewer = new Viewer({ layout: document.body, onClose: () => opener?.focus() });

function createCard(item) {
  const card = h("li", { class: "upload" },
    h("p", { class: "upload-name" },
      h("button", { class: "link open", type: "button", text: item.name })),
    h("p", { class: "upload-meta" },
      h("span", { class: "badge" }), " ", h("span", { class: "facts" }), " ",
      h("time", { class: "date" })),
    h("div", { class: "upload-actions" },
      h("a", { class: "button small ask-link", href: "#", hidden: true, text: "Ask" }),
      h("button", { class: "button small danger delete", type: "button" })),
    h("div", { class: "bar" },
      h("progress", { max: 1, value: 0, "aria-label": `Progress of ${item.name}` }),
      h("span", { class: "bar-text", "aria-live": "polite" })),
    h("p", { class: "reason error", role: "alert", hidden: true }));
  $(".delete", card).addEventListener("click", () => remove(item));
  $(".open", card).addEventListener("click", (e) => {
    if (!item.id || item.status === "failed" || item.status === "rejected") return;
    opener = e.currentTarget;
    viewer.open({ uploadId: item.id, name: item.name, page: 1, passage: "" });
  });
  item.card = card;
  return card;
}

// Newest first, the same order as the API's list (created_at, then id, descending), live and
// after a reload; files still being sent (no id yet) stay on top.
function stamp(iso) {
  // "2026-11-26T17:10:00.5Z" -> "2026-11-26T17:10:00.500000": comparable as text to the
  // microsecond (the API's order), which Date (milliseconds) is not.
  const m = /^([^.Z+]*)(?:\.(\d+))?/.exec(iso);
  return m ? `${m[1]}.${(m[2] || "").padEnd(6, "0")}` : iso;
}

function before(a, b) {
  if (!a.createdAt || !b.createdAt) return !a.createdAt && !!b.createdAt;
  const [x, y] = [stamp(a.createdAt), stamp(b.createdAt)];
  if (x !== y) return x > y;
  return a.id > b.id;
}

function place(item) {
  const byCard = new Map([...items.values()].map((other) => [other.card, other]));
  const next = [...list.children].find((card) => {
    const other = byCard.get(card);
    return card !== item.card && other && before(item, other);
  });
  if (next) list.insertBefore(item.card, next);
  else list.append(item.card);
}

function render(item) {
  const card = item.card;
  const status = item.status;
  card.dataset.status = status;
  if (item.id) card.dataset.id = item.id;
  const open = $(".open", card);
  open.textContent = item.name;
  const openable = Boolean(item.id) && status !== "failed" && status !== "rejected";
  open.disabled = !openable;
  open.setAttribute("aria-label", `Open ${item.name}`);
  const date = $(".date", card);
  date.hidden = !item.createdAt;
  if (item.createdAt) {
    date.dateTime = item.createdAt;
    date.textContent = `· ${formatDate(item.createdAt)}`;
  }
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
  applyFilter();
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
    createdAt: upload.created_at,
  };
}

function add(item) {
  items.set(item.id || item.key, item);
  createCard(item);
  place(item);
  render(item);
}

// --- The filter box -----------------------------------------------------------------------

function applyFilter() {
  const query = $("#filter").value.trim().toLocaleLowerCase();
  let shown = 0;
  for (const item of items.values()) {
    const match = !query || item.name.toLocaleLowerCase().includes(query);
    item.card.hidden = !match;
    if (match) shown += 1;
  }
  const none = $("#no-match");
  none.hidden = !query || shown > 0 || items.size === 0;
  if (!none.hidden) none.textContent = `No document’s name contains “${$("#filter").value.trim()}”.`;
}

// Progress: ONE EventSource for all the user's unfinished uploads (/uploads/events), whatever
// their number: the browser's per-host connection limit is never used up by progress. Each
// event names its upload; on (re)connecting the server first sends every unfinished upload's
// current state, so a reconnect loses nothing. On an error we close it and reconnect ourselves
// with a back-off, after asking the API for the list (which also notices an expired session).
const stream = { source: null, attempt: 0, retry: null };

function unfinished(item) {
  return Boolean(item.id) && (item.status === "queued" || item.status === "processing");
}

function follow() {
  if (stream.source || stream.retry) return;
  if (![...items.values()].some(unfinished)) return;
  const source = new EventSource("/api/v1/uploads/events");
  stream.source = source;
  source.addEventListener("open", () => {
    stream.attempt = 0;
    for (const item of items.values()) {
      if (item.connection === "reconnecting") {
        item.connection = "live";
        render(item);
      }
    }
  });
  source.addEventListener("progress", (e) => update(e, (item, data) => Object.assign(item, {
    status: data.pages_total ? "processing" : "queued",
    pagesDone: data.pages_done,
    pagesTotal: data.pages_total,
    chunks: data.chunks,
  })));
  source.addEventListener("ready", (e) => update(e, (item, data) => Object.assign(item, {
    status: "ready",
    pagesDone: data.pages_total,
    pagesTotal: data.pages_total,
    chunks: data.chunks,
    pagesSkipped: data.pages_skipped,
    pagesOcr: data.pages_ocr ?? 0,
    connection: "done",
  })));
  source.addEventListener("failed", (e) => update(e, (item, data) => Object.assign(item, {
    status: "failed", error: data.reason, connection: "done",
  })));
  source.addEventListener("deleted", (e) => {
    const item = items.get(JSON.parse(e.data).upload_id);
    if (item) forget(item);
    settle();
  });
  source.addEventListener("error", () => {
    if (stream.source !== source) return;
    source.close();
    stream.source = null;
    for (const item of items.values()) {
      if (unfinished(item)) {
        item.connection = "reconnecting";
        render(item);
      }
    }
    const delay = RETRY_MS[Math.min(stream.attempt, RETRY_MS.length - 1)];
    stream.attempt += 1;
    stream.retry = setTimeout(reconnect, delay);
  });
}

async function update(event, apply) {
  const data = JSON.parse(event.data);
  let item = items.get(data.upload_id);
  if (!item) {
    // An upload from another tab or client: show it too.
    try {
      item = fromUpload(await api(`/uploads/${encodeURIComponent(data.upload_id)}`));
    } catch {
      return;
    }
    if (items.has(item.id)) item = items.get(item.id);
    else add(item);
  }
  apply(item, data);
  render(item);
  settle();
}

/** Close the stream once nothing is left to follow. */
function settle() {
  if (stream.source && ![...items.values()].some(unfinished)) {
    stream.source.close();
    stream.source = null;
  }
}

// Before opening the stream again, ask the API for every upload that was unfinished (a 401 goes
// to the login page): one that ended while the connection was down is shown as it is now, since
// the stream only carries unfinished uploads.
async function reconnect() {
  stream.retry = null;
  try {
    for (const item of [...items.values()].filter(unfinished)) {
      let upload;
      try {
        upload = await api(`/uploads/${encodeURIComponent(item.id)}`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          forget(item);
          continue;
        }
        throw err;
      }
      Object.assign(item, fromUpload(upload));
      item.connection = unfinished(item) ? "reconnecting" : "done";
      render(item);
    }
  } catch (err) {
    const delay = RETRY_MS[Math.min(stream.attempt, RETRY_MS.length - 1)];
    stream.attempt += 1;
    stream.retry = setTimeout(reconnect, delay);
    return;
  }
  follow();
}

function forget(item) {
  items.delete(item.id || item.key);
  item.card.remove();
  $("#empty").hidden = items.size > 0;
  applyFilter();
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
  add(item);
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
    if (items.has(accepted.id)) {
      // The stream announced it first (it is another tab's view of this upload): keep one card.
      items.get(accepted.id).card.remove();
    }
    Object.assign(item, {
      id: accepted.id, name: accepted.name, size: accepted.size, status: accepted.status,
      pagesDone: 0, pagesTotal: 0, chunks: 0, createdAt: accepted.created_at,
    });
    items.set(item.id, item);
    place(item);
    render(item);
    follow();
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
  $("#filter").addEventListener("input", applyFilter);
  try {
    const [meta, uploads] = await Promise.all([api("/meta"), apiAll("/uploads")]);
    maxBytes = meta.max_upload_bytes;
    $("#limit-note").textContent = `PDF files up to ${formatBytes(maxBytes)} each.`;
    for (const upload of uploads) add(fromUpload(upload));
    $("#empty").hidden = items.size > 0;
    follow();
  } catch (err) {
    if (err.status !== 401) showError($("#library-error"), err.message);
  }
}

start();

// The chat: conversations on the left, the thread in the middle, the PDF viewer on the right.
// Questions are POSTed with Accept: text/event-stream and the answer is read as it streams.
import { AnswerView } from "./answer.js";
import { api, apiAll, ApiError } from "./api.js";
import { initChrome } from "./chrome.js";
import { $, confirmWith, formatDate, h, recencyGroup, showError } from "./dom.js";
import { readEvents } from "./sse.js";
import { Viewer } from "./viewer.js";

const state = {
  meta: null,
  uploads: new Map(),
  conversations: [],
  current: null, // the open conversation (without its messages)
  controller: null, // AbortController of the answer being streamed
  search: "", // the conversation search box's query
  found: null, // conversations matching it (null: no search)
  progress: null, // EventSource of /uploads/events while a document is still being read
};

const ASKABLE = new Set(["queued", "processing", "ready"]);
const GROUPS = ["Today", "Previous 7 days", "Older"];

let lastCite = null;
const viewer = new Viewer({
  layout: $("#layout"),
  onClose: () => {
    document.querySelectorAll(".cite.active").forEach((b) => b.classList.remove("active"));
    lastCite?.focus();
  },
});

function openSource(source, button) {
  document.querySelectorAll(".cite.active").forEach((b) => b.classList.remove("active"));
  if (button.classList.contains("cite")) button.classList.add("active");
  lastCite = button;
  viewer.open({ uploadId: source.upload_id, name: source.upload_name, page: source.page, passage: source.text });
}

function params() {
  return new URLSearchParams(location.search);
}

function navigate(url) {
  history.pushState(null, "", url);
  route();
}

// --- Conversations list -------------------------------------------------------------------

function conversationLink(c, current) {
  return h("li", {},
    h("a", { href: `/chat?c=${encodeURIComponent(c.id)}`, title: c.title,
      "aria-current": c.id === current ? "page" : undefined, dataset: { id: c.id } },
      h("span", { class: "conv-title", text: c.title }),
      h("time", { class: "conv-date", dateTime: c.updated_at, text: formatDate(c.updated_at) })));
}

// Grouped by recency (Today / Previous 7 days / Older), most recently active first; a search
// shows its matches (title or any question) in the same order.
function renderConversations() {
  const current = state.current?.id;
  const list = state.found ?? state.conversations;
  const rows = [];
  for (const group of GROUPS) {
    const members = list.filter((c) => recencyGroup(c.updated_at) === group);
    if (!members.length) continue;
    rows.push(h("li", { class: "conv-group", role: "presentation" }, h("h3", { text: group })));
    rows.push(...members.map((c) => conversationLink(c, current)));
  }
  $("#conversations").replaceChildren(...rows);
  $("#no-conversations").hidden = state.found !== null || state.conversations.length > 0;
  $("#no-matches").hidden = state.found === null || state.found.length > 0;
}

async function loadConversations() {
  state.conversations = await apiAll("/conversations");
  if (state.search) await searchConversations();
  renderConversations();
}

let searching = null;
async function searchConversations() {
  const query = state.search;
  if (!query) {
    state.found = null;
    return;
  }
  searching?.abort();
  const controller = new AbortController();
  searching = controller;
  try {
    const page = await api(`/conversations?${new URLSearchParams({ q: query, limit: "200" })}`,
      { signal: controller.signal });
    if (state.search === query) state.found = page.items;
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  }
}

let searchTimer = null;
function onSearch() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    state.search = $("#conv-search").value.trim();
    await searchConversations().catch(fail);
    renderConversations();
  }, 200);
}

// --- Starting a conversation --------------------------------------------------------------

function docLabel(u) {
  if (u.status === "ready") return ` · ${u.pages_total} pages`;
  if (u.status === "processing" && u.pages_total) return ` · being read: ${u.pages_done} of ${u.pages_total} pages`;
  return " · waiting to be read";
}

/** Checkboxes for the uploads a conversation may include: ready or still being read. */
function docChoices(chosen) {
  return [...state.uploads.values()].filter((u) => ASKABLE.has(u.status)).map((u) =>
    h("li", {}, h("label", {},
      h("input", { type: "checkbox", name: "upload", value: u.id, checked: chosen.has(u.id) }),
      h("span", { text: u.name }), h("span", { class: "muted small", text: docLabel(u) }))));
}

function showStart() {
  state.current = null;
  followReading();
  renderConversations();
  $("#thread").hidden = true;
  $("#start").hidden = false;
  document.title = "Chat · pdfqa";
  const chosen = new Set((params().get("docs") || "").split(",").filter(Boolean));
  const choices = docChoices(chosen);
  $("#doc-choices").replaceChildren(...choices);
  $("#no-docs").hidden = choices.length > 0;
}

async function startConversation(event) {
  event.preventDefault();
  const error = $("#start-error");
  const ids = [...document.querySelectorAll("#doc-choices input:checked")].map((i) => i.value);
  if (!ids.length) {
    showError(error, "Choose at least one document.");
    return;
  }
  showError(error, "");
  const title = $("#title").value.trim();
  try {
    const conversation = await api("/conversations", {
      method: "POST", json: title ? { upload_ids: ids, title } : { upload_ids: ids },
    });
    $("#title").value = "";
    state.conversations.unshift(conversation);
    navigate(`/chat?c=${encodeURIComponent(conversation.id)}`);
  } catch (err) {
    showError(error, err.message);
  }
}

// --- A conversation -----------------------------------------------------------------------

async function openConversation(id) {
  showError($("#chat-error"), "");
  let detail;
  try {
    detail = await api(`/conversations/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 400)) {
      showStart();
      showError($("#chat-error"), "This conversation does not exist, or it is not yours.");
      return;
    }
    throw err;
  }
  state.current = detail;
  renderConversations();
  $("#start").hidden = true;
  $("#thread").hidden = false;
  closeEditors();
  renderThreadHead();
  // Earlier answers keep their sources folded; their [n] citations still open the viewer.
  const views = detail.messages.map((m) => new AnswerView(m, { onCite: openSource, sourcesOpen: false }));
  $("#messages").replaceChildren(...views.map((v) => v.el));
  // The last question at the top of the view, with the start of its answer below it.
  if (views.length) showQuestion(views[views.length - 1]);
  followReading();
  $("#question").focus({ preventScroll: true });
}

function renderThreadHead() {
  const detail = state.current;
  $("#thread-title").textContent = detail.title;
  document.title = `${detail.title} · pdfqa`;
  const names = detail.upload_ids.map((u) => state.uploads.get(u)?.name || "a deleted document");
  $("#thread-docs").textContent = `About ${names.join(", ")} · started ${formatDate(detail.created_at)}`;
  const reading = detail.upload_ids.map((u) => state.uploads.get(u))
    .filter((u) => u && (u.status === "queued" || u.status === "processing"));
  const line = $("#thread-reading");
  line.hidden = !reading.length;
  line.textContent = reading.map((u) => u.pages_total
    ? `${u.name} is still being read: ${u.pages_done} of ${u.pages_total} pages so far; answers use the pages read.`
    : `${u.name} is waiting to be read.`).join(" ");
}

/** Scroll an answer's question to the top of the conversation pane (not past its start). */
function showQuestion(view) {
  const pane = $("#main");
  const top = view.el.getBoundingClientRect().top - pane.getBoundingClientRect().top + pane.scrollTop;
  pane.scrollTop = Math.max(0, top - 8);
}

// While a document of the open conversation is still being read, one multiplexed progress
// stream keeps its state (and so the "read so far" line) current.
function followReading() {
  const ids = new Set(state.current?.upload_ids || []);
  const unfinished = [...ids].some((id) => {
    const u = state.uploads.get(id);
    return u && (u.status === "queued" || u.status === "processing");
  });
  if (!unfinished) {
    state.progress?.close();
    state.progress = null;
    return;
  }
  if (state.progress) return;
  const source = new EventSource("/api/v1/uploads/events");
  state.progress = source;
  const update = (status) => (e) => {
    const data = JSON.parse(e.data);
    const u = state.uploads.get(data.upload_id);
    if (!u) return;
    if (status === "progress") {
      Object.assign(u, { status: data.pages_total ? "processing" : "queued",
        pages_done: data.pages_done, pages_total: data.pages_total });
    } else if (status === "ready") {
      Object.assign(u, { status: "ready", pages_done: data.pages_total, pages_total: data.pages_total });
    } else {
      Object.assign(u, { status: "failed" });
    }
    if (state.current && state.current.upload_ids.includes(data.upload_id)) renderThreadHead();
    followReading();
  };
  source.addEventListener("progress", update("progress"));
  source.addEventListener("ready", update("ready"));
  source.addEventListener("failed", update("failed"));
}

// --- Renaming, changing the documents, deleting ------------------------------------------

function closeEditors() {
  $("#rename-form").hidden = true;
  $("#thread-title").hidden = false;
  $("#docs-form").hidden = true;
  $("#edit-docs").setAttribute("aria-expanded", "false");
}

function startRename() {
  closeEditors();
  $("#thread-title").hidden = true;
  $("#rename-form").hidden = false;
  const input = $("#rename-input");
  input.value = state.current.title;
  input.focus();
  input.select();
}

async function saveRename(event) {
  event.preventDefault();
  const title = $("#rename-input").value.trim();
  if (!title) return;
  try {
    const changed = await api(`/conversations/${encodeURIComponent(state.current.id)}`,
      { method: "PATCH", json: { title } });
    applyChange(changed);
    closeEditors();
    $("#rename-conversation").focus();
  } catch (err) {
    showError($("#chat-error"), err.message);
  }
}

function applyChange(changed) {
  Object.assign(state.current, { title: changed.title, upload_ids: changed.upload_ids });
  for (const list of [state.conversations, state.found || []]) {
    const i = list.findIndex((c) => c.id === changed.id);
    if (i >= 0) list[i] = changed;
  }
  renderThreadHead();
  renderConversations();
  followReading();
}

function editDocuments() {
  const open = $("#docs-form").hidden;
  closeEditors();
  if (!open) return;
  $("#docs-choices").replaceChildren(...docChoices(new Set(state.current.upload_ids)));
  showError($("#docs-error"), "");
  $("#docs-form").hidden = false;
  $("#edit-docs").setAttribute("aria-expanded", "true");
  $("#docs-choices input")?.focus();
}

async function saveDocuments(event) {
  event.preventDefault();
  const ids = [...document.querySelectorAll("#docs-choices input:checked")].map((i) => i.value);
  if (!ids.length) {
    showError($("#docs-error"), "Keep at least one document.");
    return;
  }
  // Documents not offered (deleted or failed since) cannot be kept; the order is kept.
  const order = [...state.current.upload_ids, ...ids];
  const upload_ids = [...new Set(order)].filter((id) => ids.includes(id));
  try {
    const changed = await api(`/conversations/${encodeURIComponent(state.current.id)}`,
      { method: "PATCH", json: { upload_ids } });
    applyChange(changed);
    closeEditors();
    $("#edit-docs").focus();
  } catch (err) {
    showError($("#docs-error"), err.message);
  }
}

function setAsking(asking) {
  $("#ask").disabled = asking;
  $("#stop").hidden = !asking;
  $("#ask-form").dataset.state = asking ? "streaming" : "idle";
}

async function ask(event) {
  event.preventDefault();
  const input = $("#question");
  const question = input.value.trim();
  if (!question || state.controller || !state.current) return;
  input.value = "";
  const view = new AnswerView({ question, answer: "", sources: [] },
    { onCite: openSource, sourcesOpen: false });
  view.setStreaming(true);
  $("#messages").append(view.el);
  showQuestion(view);
  const controller = new AbortController();
  state.controller = controller;
  setAsking(true);
  let finished = false;
  try {
    const response = await api(`/conversations/${encodeURIComponent(state.current.id)}/messages`, {
      method: "POST", json: { question }, accept: "text/event-stream", signal: controller.signal,
    });
    for await (const { event: name, data } of readEvents(response.body)) {
      if (name === "sources") {
        view.setSources(data.sources, data.confidence);
        view.setReading(data.reading);
      } else if (name === "token") view.appendText(data.text);
      else if (name === "done") {
        view.finish(data);
        finished = true;
      } else if (name === "error") {
        view.fail(data.detail);
        finished = true;
      } else if (name === "closing") {
        view.fail("The server restarted before the answer was complete. Ask again in a moment.");
        finished = true;
      }
    }
    if (!finished) view.fail("The connection was lost before the answer was complete. Ask again.");
  } catch (err) {
    if (err.name === "AbortError") view.stopped();
    else view.fail(err.message);
  } finally {
    state.controller = null;
    setAsking(false);
    // The question stays at the top with the start of its answer: no jump to the sources' end.
    showQuestion(view);
    input.focus({ preventScroll: true });
  }
  const wasUntitled = state.current?.title_auto;
  loadConversations().then(() => {
    const fresh = state.conversations.find((c) => c.id === state.current?.id);
    if (wasUntitled && fresh && state.current) {
      Object.assign(state.current, { title: fresh.title, title_auto: fresh.title_auto });
      renderThreadHead();
    }
  }).catch(() => {});
}

function stop() {
  state.controller?.abort();
}

async function deleteConversation() {
  const current = state.current;
  if (!current || !(await confirmWith($("#confirm-delete")))) return;
  try {
    await api(`/conversations/${encodeURIComponent(current.id)}`, { method: "DELETE" });
    state.conversations = state.conversations.filter((c) => c.id !== current.id);
    if (state.found) state.found = state.found.filter((c) => c.id !== current.id);
    navigate("/chat");
  } catch (err) {
    showError($("#chat-error"), err.message);
  }
}

// --- Wiring -------------------------------------------------------------------------------

async function route() {
  stop();
  viewer.close();
  const id = params().get("c");
  if (id) await openConversation(id);
  else showStart();
}

function onKeydown(event) {
  // Enter sends, Shift+Enter starts a new line (and an IME composition is left alone).
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("#ask-form").requestSubmit();
  }
}

async function start() {
  initChrome();
  $("#start-form").addEventListener("submit", startConversation);
  $("#ask-form").addEventListener("submit", ask);
  $("#question").addEventListener("keydown", onKeydown);
  $("#stop").addEventListener("click", stop);
  $("#delete-conversation").addEventListener("click", deleteConversation);
  $("#rename-conversation").addEventListener("click", startRename);
  $("#rename-form").addEventListener("submit", saveRename);
  $("#rename-cancel").addEventListener("click", () => {
    closeEditors();
    $("#rename-conversation").focus();
  });
  $("#rename-input").addEventListener("keydown", (e) => {
    if (e.key === "Escape") $("#rename-cancel").click();
  });
  $("#edit-docs").addEventListener("click", editDocuments);
  $("#docs-form").addEventListener("submit", saveDocuments);
  $("#docs-cancel").addEventListener("click", () => {
    closeEditors();
    $("#edit-docs").focus();
  });
  $("#conv-search").addEventListener("input", onSearch);
  $("#conversations").addEventListener("click", (e) => {
    const link = e.target.closest("a[data-id]");
    if (!link || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(link.getAttribute("href"));
  });
  $("#new-conversation").addEventListener("click", (e) => {
    e.preventDefault();
    navigate("/chat");
  });
  window.addEventListener("popstate", () => route().catch(fail));
  const [meta, uploads] = await Promise.all([api("/meta"), apiAll("/uploads")]);
  state.meta = meta;
  $("#extractive-note").hidden = meta.answers !== "extractive";
  state.uploads = new Map(uploads.map((u) => [u.id, u]));
  await loadConversations();
  await route();
}

function fail(err) {
  if (err?.status !== 401) showError($("#chat-error"), err.message || String(err));
}

start().catch(fail);

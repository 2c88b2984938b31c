// The chat: conversations on the left, the thread in the middle, the PDF viewer on the right.
// Questions are POSTed with Accept: text/event-stream and the answer is read as it streams.
import { AnswerView } from "./answer.js";
import { api, apiAll, ApiError } from "./api.js";
import { initChrome } from "./chrome.js";
import { $, confirmWith, h, showError } from "./dom.js";
import { readEvents } from "./sse.js";
import { Viewer } from "./viewer.js";

const state = {
  meta: null,
  uploads: new Map(),
  conversations: [],
  current: null, // the open conversation (without its messages)
  controller: null, // AbortController of the answer being streamed
};

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

function renderConversations() {
  const current = state.current?.id;
  $("#conversations").replaceChildren(...state.conversations.map((c) => h("li", {},
    h("a", { href: `/chat?c=${encodeURIComponent(c.id)}`, text: c.title, title: c.title,
      "aria-current": c.id === current ? "page" : undefined, dataset: { id: c.id } }))));
  $("#no-conversations").hidden = state.conversations.length > 0;
}

async function loadConversations() {
  state.conversations = await apiAll("/conversations");
  renderConversations();
}

// --- Starting a conversation --------------------------------------------------------------

function showStart() {
  state.current = null;
  renderConversations();
  $("#thread").hidden = true;
  $("#start").hidden = false;
  document.title = "Chat · pdfqa";
  const chosen = new Set((params().get("docs") || "").split(",").filter(Boolean));
  const uploads = [...state.uploads.values()];
  $("#doc-choices").replaceChildren(...uploads.map((u) => {
    const ready = u.status === "ready";
    const note = ready ? ` · ${u.pages_total} pages` : ` · ${u.status}`;
    return h("li", {}, h("label", {},
      h("input", { type: "checkbox", name: "upload", value: u.id, disabled: !ready,
        checked: ready && chosen.has(u.id) }),
      h("span", { text: u.name }), h("span", { class: "muted small", text: note })));
  }));
  $("#no-docs").hidden = uploads.some((u) => u.status === "ready");
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
  $("#thread-title").textContent = detail.title;
  document.title = `${detail.title} · pdfqa`;
  const names = detail.upload_ids.map((u) => state.uploads.get(u)?.name || "a deleted document");
  $("#thread-docs").textContent = `About ${names.join(", ")}`;
  // Earlier answers keep their sources folded; their [n] citations still open the viewer.
  const views = detail.messages.map((m) => new AnswerView(m, { onCite: openSource, sourcesOpen: false }));
  $("#messages").replaceChildren(...views.map((v) => v.el));
  scrollToEnd();
  $("#question").focus();
}

function scrollToEnd() {
  const pane = $("#main");
  pane.scrollTop = pane.scrollHeight;
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
  const view = new AnswerView({ question, answer: "", sources: [] }, { onCite: openSource });
  view.setStreaming(true);
  $("#messages").append(view.el);
  scrollToEnd();
  const controller = new AbortController();
  state.controller = controller;
  setAsking(true);
  let finished = false;
  try {
    const response = await api(`/conversations/${encodeURIComponent(state.current.id)}/messages`, {
      method: "POST", json: { question }, accept: "text/event-stream", signal: controller.signal,
    });
    for await (const { event: name, data } of readEvents(response.body)) {
      if (name === "sources") view.setSources(data.sources, data.confidence);
      else if (name === "token") view.appendText(data.text);
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
      scrollToEnd();
    }
    if (!finished) view.fail("The connection was lost before the answer was complete. Ask again.");
  } catch (err) {
    if (err.name === "AbortError") view.stopped();
    else view.fail(err.message);
  } finally {
    state.controller = null;
    setAsking(false);
    input.focus();
  }
  loadConversations().catch(() => {});
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

// The jobs dashboard: a live feed of snapshots (queues, workers, jobs) over server-sent events,
// and the retry / abort actions. Admins only: anyone else gets the API's 403 as a message.
import { api, ApiError, problemDetail, toLogin } from "./api.js";
import { initChrome } from "./chrome.js";
import { readEvents } from "./sse.js";

const $ = (id) => document.getElementById(id);

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function time(value) {
  if (!value) return "";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return d.toLocaleTimeString();
}

function showError(message) {
  const el = $("admin-error");
  el.textContent = message;
  el.hidden = !message;
}

function renderQueues(queues) {
  $("queues").replaceChildren(
    ...queues.map((q) => {
      const tr = document.createElement("tr");
      tr.dataset.queue = q.queue;
      tr.append(cell(q.queue), cell(q.waiting), cell(q.queued), cell(q.in_progress), cell(q.complete), cell(q.failed));
      return tr;
    }),
  );
}

function renderWorkers(workers) {
  $("no-workers").hidden = workers.length > 0;
  $("workers").replaceChildren(
    ...workers.map((w) => {
      const tr = document.createElement("tr");
      tr.dataset.worker = w.worker_id;
      tr.append(
        cell(w.worker_id),
        cell(w.queue),
        cell(time(w.beat_at)),
        cell(w.concurrency),
        cell(w.running.length),
        cell(`${w.jobs_complete} / ${w.jobs_failed} / ${w.jobs_retried}`),
      );
      return tr;
    }),
  );
}

async function act(job, action) {
  showError("");
  try {
    await api(`/admin/jobs/${encodeURIComponent(job.id)}/${action}`, { method: "POST", json: {} });
  } catch (err) {
    showError(err.message);
  }
}

function renderJobs(jobs) {
  $("jobs").replaceChildren(
    ...jobs.map((job) => {
      const tr = document.createElement("tr");
      tr.dataset.job = job.id;
      tr.dataset.state = job.state;
      tr.dataset.finished = job.finished_at || "";
      const progress = job.pages_total ? ` (${job.pages_done}/${job.pages_total} pages)` : "";
      tr.append(
        cell(job.function),
        cell(job.queue),
        cell(job.state + progress, `state state-${job.state}`),
        cell(job.tries),
        cell(job.upload_name || ""),
        cell(time(job.started_at)),
        cell(time(job.finished_at)),
        cell(job.error || "", "error-text"),
      );
      const actions = document.createElement("td");
      if (job.state === "failed" && job.function !== "reconcile") {
        const b = document.createElement("button");
        b.className = "button ghost";
        b.type = "button";
        b.textContent = "Retry";
        b.addEventListener("click", () => act(job, "retry"));
        actions.append(b);
      }
      if (job.function === "ingest" && (job.state === "queued" || job.state === "in_progress")) {
        const b = document.createElement("button");
        b.className = "button ghost";
        b.type = "button";
        b.textContent = "Abort";
        b.addEventListener("click", () => act(job, "abort"));
        actions.append(b);
      }
      tr.append(actions);
      return tr;
    }),
  );
}

async function follow() {
  for (;;) {
    let response;
    try {
      response = await fetch("/api/v1/admin/events", {
        headers: { Accept: "text/event-stream" },
        credentials: "same-origin",
      });
    } catch {
      $("live").textContent = "reconnecting…";
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (response.status === 401) return toLogin();
    if (!response.ok) {
      showError(await problemDetail(response));
      $("live").textContent = "";
      return;
    }
    $("live").textContent = "live";
    for await (const { event, data } of readEvents(response.body)) {
      if (event !== "snapshot") continue;
      renderQueues(data.jobs.queues);
      renderWorkers(data.workers);
      renderJobs(data.jobs.jobs);
      $("live").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    }
    $("live").textContent = "reconnecting…";
    await new Promise((r) => setTimeout(r, 1000));
  }
}

initChrome();
follow().catch((err) => showError(err instanceof ApiError ? err.message : String(err)));

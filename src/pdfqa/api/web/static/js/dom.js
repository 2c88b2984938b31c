// Building the DOM without HTML strings: every text goes in as a text node, so nothing a
// document or a user wrote can become markup.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "on") for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && !key.startsWith("aria") && key !== "role") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function showError(el, message) {
  el.textContent = message || "";
  el.hidden = !message;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Ask for confirmation in a <dialog>; resolves true when the person presses the button whose
 * value is ``accept``. */
export function confirmWith(dialog, setup = () => {}, accept = "delete") {
  setup(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === accept), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

const DAY_MS = 24 * 60 * 60 * 1000;
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });

/** "Today, 14:05", "Yesterday, 09:12" or "3 Nov 2026, 17:40" (local time). */
export function formatDate(iso, now = new Date()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const time = timeFormat.format(date);
  if (date.getTime() >= midnight) return `Today, ${time}`;
  if (date.getTime() >= midnight - DAY_MS) return `Yesterday, ${time}`;
  return `${dateFormat.format(date)}, ${time}`;
}

/** "Today", "Previous 7 days" or "Older": where a date falls for a recency-grouped list. */
export function recencyGroup(iso, now = new Date()) {
  const date = new Date(iso).getTime();
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  if (date >= midnight) return "Today";
  if (date >= midnight - 7 * DAY_MS) return "Previous 7 days";
  return "Older";
}

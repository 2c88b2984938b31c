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

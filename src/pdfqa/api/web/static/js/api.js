// The JSON API, through the browser's HTTP-only session cookie (no token in JavaScript).
// Any 401 means the session is gone: back to the login page, then back here.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function toLogin(reason) {
  const here = location.pathname + location.search;
  const query = new URLSearchParams({ next: here });
  if (reason) query.set(reason, "1");
  location.assign(`/login?${query}`);
}

export async function problemDetail(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string" && body.detail) return body.detail;
    if (body && typeof body.title === "string") return body.title;
  } catch {
    // not JSON: fall through
  }
  return `The server answered ${response.status} ${response.statusText}.`.trim();
}

/** fetch() under /api/v1; JSON in and out; errors become ApiError with the problem's detail. */
export async function api(path, { method = "GET", json, body, signal, accept, redirectOn401 = true } = {}) {
  const headers = { Accept: accept || "application/json" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(`/api/v1${path}`, { method, headers, body, signal, credentials: "same-origin" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
  }
  if (response.status === 401 && redirectOn401) {
    // "Log in first." (no session) vs "Your session has expired; log in again."
    const detail = await problemDetail(response);
    toLogin(/expired/i.test(detail) ? "expired" : null);
    throw new ApiError(401, detail);
  }
  if (!response.ok) throw new ApiError(response.status, await problemDetail(response));
  if (accept === "text/event-stream") return response;
  if (response.status === 204) return null;
  return response.json();
}

/** Every item of a cursor-paginated list endpoint ({items, next_cursor}), page after page. */
export async function apiAll(path, { limit = 200 } = {}) {
  const items = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`${path}?${query}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

export async function logout() {
  try {
    await api("/auth/logout", { method: "POST", redirectOn401: false });
  } finally {
    location.assign("/login?logged_out=1");
  }
}

// Log in, or create an account and log in. The server sets an HTTP-only session cookie.
import { api, ApiError } from "./api.js";
import { $, showError } from "./dom.js";

const params = new URLSearchParams(location.search);
const registering = params.get("mode") === "register";

function nextPage() {
  const next = params.get("next") || "/library";
  // Only paths on this site: never an absolute or protocol-relative URL.
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/library";
}

function setUp() {
  const title = registering ? "Create an account" : "Log in";
  document.title = `${title} · pdfqa`;
  $("#auth-title").textContent = title;
  $("#auth-submit").textContent = registering ? "Create account" : "Log in";
  $("#password").autocomplete = registering ? "new-password" : "current-password";
  $("#password-hint").hidden = !registering;
  const other = new URLSearchParams(params);
  if (registering) other.delete("mode");
  else other.set("mode", "register");
  const link = $("#switch-mode");
  link.href = `/login${other.size ? `?${other}` : ""}`;
  link.textContent = registering ? "Log in" : "Create an account";
  $("#switch-text").textContent = registering ? "Already have an account?" : "New here?";
  const notice = $("#auth-notice");
  if (params.has("expired")) notice.textContent = "Your session has expired. Please log in again.";
  else if (params.has("logged_out")) notice.textContent = "You are logged out.";
  notice.hidden = !notice.textContent;
  $("#email").focus();
}

async function submit(event) {
  event.preventDefault();
  const error = $("#auth-error");
  const email = $("#email").value.trim();
  const password = $("#password").value;
  if (!email || !password) {
    showError(error, "Enter your e-mail and password.");
    return;
  }
  const button = $("#auth-submit");
  button.disabled = true;
  showError(error, "");
  try {
    const credentials = { email, password };
    if (registering) await api("/auth/register", { method: "POST", json: credentials, redirectOn401: false });
    await api("/auth/login", { method: "POST", json: credentials, redirectOn401: false });
    location.assign(nextPage());
  } catch (err) {
    const detail = err instanceof ApiError && err.status === 401 ? "Wrong e-mail or password." : err.message;
    showError(error, detail);
    button.disabled = false;
  }
}

setUp();
$("#auth-form").addEventListener("submit", submit);
// The button starts disabled, so nothing submits the form natively (credentials in a URL)
// before this module has taken over.
$("#auth-submit").disabled = false;

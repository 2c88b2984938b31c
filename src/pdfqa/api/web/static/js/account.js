// The account page: who is logged in, change the password (other sessions end), log out on every
// device.
import { api, ApiError } from "./api.js";
import { initChrome } from "./chrome.js";
import { $, confirmWith, showError } from "./dom.js";

async function changePassword(event) {
  event.preventDefault();
  const error = $("#password-error");
  const done = $("#password-done");
  const current = $("#current-password").value;
  const fresh = $("#new-password").value;
  showError(done, "");
  if (!current || !fresh) {
    showError(error, "Enter your current password and a new one.");
    return;
  }
  if (fresh.length < 8) {
    showError(error, "The new password needs at least 8 characters.");
    return;
  }
  const button = $("#password-submit");
  button.disabled = true;
  showError(error, "");
  try {
    await api("/auth/password", {
      method: "POST",
      json: { current_password: current, new_password: fresh },
    });
    $("#password-form").reset();
    showError(done, "Password changed. Every other session has ended.");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showError(error, err.message);
  } finally {
    button.disabled = false;
  }
}

async function logoutEverywhere() {
  if (!(await confirmWith($("#confirm-everywhere"), () => {}, "confirm"))) return;
  const error = $("#sessions-error");
  showError(error, "");
  try {
    await api("/auth/logout-everywhere", { method: "POST", redirectOn401: false });
    location.assign("/login?logged_out=1");
  } catch (err) {
    showError(error, err.message);
  }
}

async function start() {
  initChrome();
  const me = await api("/auth/me");
  $("#account-email").textContent = me.email;
  $("#password-form").addEventListener("submit", changePassword);
  $("#logout-everywhere").addEventListener("click", logoutEverywhere);
  // Both start disabled, so nothing submits natively before this module has taken over.
  $("#password-submit").disabled = false;
  $("#logout-everywhere").disabled = false;
}

start().catch((err) => {
  if (!(err instanceof ApiError && err.status === 401)) showError($("#password-error"), err.message);
});

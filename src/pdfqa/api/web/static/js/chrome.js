// The parts every signed-in page shares: the log-out button.
import { logout } from "./api.js";

export function initChrome() {
  document.getElementById("logout")?.addEventListener("click", () => logout());
}

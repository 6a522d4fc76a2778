// Tranche console: one page, no library, ES modules served by the
// controller. Everything it shows comes from the public REST API (/api/v1)
// with the token the user typed, kept in this tab's sessionStorage only;
// live views follow the SSE event log (api.js). This module is the entry:
// login, logout and routing.
import { $, h, main } from "/ui/dom.js";
import { api, session, stream, follow, hooks, disposeView } from "/ui/api.js";
import { fleetView, appsView, appView, rolloutView, eventsView, memberView } from "/ui/views.js";

const TOKEN_KEY = "tranche.token";

// ---- login ----
async function login(token) {
  const who = await api("GET", "/whoami", undefined, token);
  Object.assign(session, { token, name: who.name, role: who.role, app: who.app });
  sessionStorage.setItem(TOKEN_KEY, token);
  stream.last = who.lastEventSeq;
  stream.generation++;
  follow(stream.generation);
  $("#nav").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = `${who.name} · ${who.role}${who.app ? " · " + who.app : ""}`;
}

function logout(message) {
  session.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  stream.generation++;
  if (stream.abort) stream.abort.abort();
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  $("#stream-state").hidden = true;
  $("#who").textContent = "";
  showLogin(message);
}

function showLogin(message) {
  disposeView();
  const error = h("p", { id: "login-error", class: "error", role: "alert" }, message || "");
  const input = h("input", {
    id: "token", type: "password", autocomplete: "off", spellcheck: "false", required: true,
    "aria-describedby": "token-help",
  });
  const form = h("form", { class: "card login", id: "login" },
    h("h1", {}, "Log in"),
    h("label", { for: "token", style: "display:block" }, "API token"),
    input,
    h("p", { id: "token-help", class: "muted" },
      "A token from ", h("code", {}, "tranche token create --role viewer"),
      " (or the admin token of a --dev controller, in tranche-data/admin.token). It stays in this tab only."),
    h("button", { type: "submit", id: "login-submit" }, "Log in"),
    error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const token = input.value.trim();
    try {
      await login(token);
      if (!location.hash || location.hash === "#/login") location.hash = "#/fleet";
      else route();
    } catch (err) {
      error.textContent = err.status === 401
        ? `The controller did not accept this token (${err.message}). Check it for a typo, or ask for a new one.`
        : `Cannot log in: ${err.message}`;
      input.focus();
    }
  });
  main().replaceChildren(form);
  input.focus();
}

// ---- routing: #/fleet, #/fleet/APP, #/apps, #/app/APP, #/rollout/APP, #/events, #/member/ID ----
async function route() {
  if (!session.token) { showLogin(); return; }
  const [, view, ...rest] = (location.hash || "#/fleet").slice(1).split("/");
  const arg = decodeURIComponent(rest.join("/"));
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").slice(2);
    a.toggleAttribute("aria-current", target === view || (target === "apps" && (view === "app" || view === "rollout")));
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  switch (view) {
    case "apps": await appsView(); break;
    case "app": await appView(arg); break;
    case "rollout": await rolloutView(arg); break;
    case "events": await eventsView(); break;
    case "member": await memberView(rest.map(decodeURIComponent).join("/")); break;
    default: await fleetView(arg);
  }
  document.body.dataset.view = view || "fleet";
}

async function start() {
  hooks.unauthorized = () => logout("The controller no longer accepts this token; log in again.");
  window.addEventListener("hashchange", () => { route(); main().focus({ preventScroll: true }); });
  $("#logout").addEventListener("click", () => logout("Logged out."));
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    try { await login(saved); } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(err.status === 401 ? "Your saved token is no longer accepted; log in again." : `Cannot log in: ${err.message}`);
      return;
    }
  }
  route();
}

start();

// The console's session and its link to the controller: the REST API with
// the user's token, the one event stream views subscribe to, and the life
// of a view (mounted, redrawn on the events it cares about, disposed).
import { $, main, throttled } from "/ui/dom.js";

const ROLE_RANK = { viewer: 0, operator: 1, admin: 2 };
// What the page does when the controller stops accepting the token (set by console.js).
export const hooks = { unauthorized: () => {} };

// ---- session and API ----
export const session = { token: null, name: "", role: "viewer", app: null };
export const canOperate = () => ROLE_RANK[session.role] >= ROLE_RANK.operator;

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(method, path, body, token) {
  const headers = { Authorization: `Bearer ${token || session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, `cannot reach the controller (${e.message})`);
  }
  let doc = null;
  try { doc = await res.json(); } catch { /* an empty or non-JSON answer */ }
  if (!res.ok) {
    if (res.status === 401 && !token) hooks.unauthorized();
    throw new ApiError(res.status, (doc && doc.error && doc.error.message) || `HTTP ${res.status}`);
  }
  return doc;
}

export const enc = (s) => s.split("/").map(encodeURIComponent).join("/");

// ---- the event stream: one for the page, views subscribe ----
export const stream = { last: 0, listeners: new Set(), abort: null, generation: 0 };

function setLive(live) {
  const el = $("#stream-state");
  el.hidden = false;
  el.dataset.live = String(live);
  el.textContent = live ? "live" : "reconnecting";
}

export async function follow(generation) {
  let pause = 1000;
  while (session.token && generation === stream.generation) {
    const ctrl = new AbortController();
    stream.abort = ctrl;
    try {
      const res = await fetch(`/api/v1/events?follow=1&since=${stream.last}`, {
        headers: { Authorization: `Bearer ${session.token}` }, signal: ctrl.signal, cache: "no-store",
      });
      if (res.status === 401) { hooks.unauthorized(); return; }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setLive(true);
      pause = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;  // a keepalive comment
          let event;
          try { event = JSON.parse(data); } catch { continue; }
          if (typeof event.seq === "number") stream.last = Math.max(stream.last, event.seq);
          for (const f of stream.listeners) f(event);
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
    }
    if (generation !== stream.generation) return;
    setLive(false);
    // The controller restarting or draining: back off, at most 10 s.
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 10000);
  }
}

// ---- views ----
// A view renders into <main> and may subscribe to events; leaving it
// unsubscribes, so no listener or timer of an old view lives on.
let current = { dispose() {} };
export function disposeView() { current.dispose(); current = { dispose() {} }; }

// What has the keyboard's focus, so that a view drawn again from fresh
// data gives it back to the same control.
function focusedControl() {
  const el = document.activeElement;
  if (!el || !main().contains(el) || el === main()) return null;
  if (el.id) return `#${CSS.escape(el.id)}`;
  if (el.dataset.action) {
    return `[data-action="${CSS.escape(el.dataset.action)}"]` +
      (el.dataset.path !== undefined ? `[data-path="${CSS.escape(el.dataset.path)}"]` : "");
  }
  return null;
}

// Makes `listener` the current view's only subscription to the event stream.
export function subscribe(listener) {
  disposeView();
  stream.listeners.add(listener);
  current = { dispose: () => stream.listeners.delete(listener) };
}

export function mountView(draw, onEvent) {
  const render = async () => {
    const focused = focusedControl();
    await draw();
    const again = focused && main().querySelector(focused);
    if (again) again.focus();
  };
  const refresh = throttled(render, 300);
  subscribe((e) => { if (onEvent(e)) refresh(); });
  return render();
}

// The console's DOM helpers: elements built from text only (never markup
// from the server), notices, times, and a throttle for live redraws.

// ---- DOM helpers: text only, never markup from the server ----
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;  // CSSOM: the CSP refuses style attributes
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
export const $ = (sel) => document.querySelector(sel);
export const main = () => $("#main");
export const badge = (text, extra) => h("span", { class: `badge s-${text}`, ...extra }, text);

export function toast(text, bad) {
  const p = h("p", { class: bad ? "bad" : "" }, text);
  $("#toast").append(p);
  setTimeout(() => p.remove(), bad ? 8000 : 4000);
}

export function when(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function timeLeft(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  if (!(ms > 0)) return "expiring";
  const m = Math.round(ms / 60000);
  return m < 60 ? `${m}m left` : `${Math.floor(m / 60)}h${m % 60 ? (m % 60) + "m" : ""} left`;
}

// At most one call of fn per `ms`, the last request always honoured: live
// views refresh on events without turning a burst into a burst of GETs.
export function throttled(fn, ms) {
  let timer = null, again = false, last = 0;
  const run = () => {
    timer = null; again = false; last = Date.now();
    Promise.resolve(fn()).catch(() => {});
  };
  return () => {
    if (timer) { again = true; return; }
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(run, wait);
  };
}

export function heading(text, ...rest) {
  document.title = `${text} · Tranche`;
  return h("h1", {}, text, ...rest);
}

export function failure(err) {
  return h("p", { class: "error", role: "alert" }, err.message);
}

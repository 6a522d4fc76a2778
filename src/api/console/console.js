// Tranche console: one page, no library. Everything it shows comes from the
// public REST API (/api/v1) with the token the user typed, kept in this tab's
// sessionStorage only; live views follow the SSE event log, read with fetch()
// because EventSource cannot send an Authorization header.
"use strict";

(() => {
  const TOKEN_KEY = "tranche.token";
  const ROLE_RANK = { viewer: 0, operator: 1, admin: 2 };
  const FINISHED = new Set(["Succeeded", "Failed", "Aborted", "Superseded"]);

  // ---- DOM helpers: text only, never markup from the server ----
  function h(tag, attrs, ...children) {
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
  const $ = (sel) => document.querySelector(sel);
  const main = () => $("#main");
  const badge = (text, extra) => h("span", { class: `badge s-${text}`, ...extra }, text);

  function toast(text, bad) {
    const p = h("p", { class: bad ? "bad" : "" }, text);
    $("#toast").append(p);
    setTimeout(() => p.remove(), bad ? 8000 : 4000);
  }

  function when(iso) {
    if (!iso) return "-";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  function timeLeft(iso) {
    const ms = new Date(iso).getTime() - Date.now();
    if (!(ms > 0)) return "expiring";
    const m = Math.round(ms / 60000);
    return m < 60 ? `${m}m left` : `${Math.floor(m / 60)}h${m % 60 ? (m % 60) + "m" : ""} left`;
  }

  // At most one call of fn per `ms`, the last request always honoured: live
  // views refresh on events without turning a burst into a burst of GETs.
  function throttled(fn, ms) {
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

  // ---- session and API ----
  const session = { token: null, name: "", role: "viewer", app: null };
  const canOperate = () => ROLE_RANK[session.role] >= ROLE_RANK.operator;

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body, token) {
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
      if (res.status === 401 && !token) logout("The controller no longer accepts this token; log in again.");
      throw new ApiError(res.status, (doc && doc.error && doc.error.message) || `HTTP ${res.status}`);
    }
    return doc;
  }

  const enc = (s) => s.split("/").map(encodeURIComponent).join("/");

  // ---- the event stream: one for the page, views subscribe ----
  const stream = { last: 0, listeners: new Set(), abort: null, generation: 0 };

  function setLive(live) {
    const el = $("#stream-state");
    el.hidden = false;
    el.dataset.live = String(live);
    el.textContent = live ? "live" : "reconnecting";
  }

  async function follow(generation) {
    let pause = 1000;
    while (session.token && generation === stream.generation) {
      const ctrl = new AbortController();
      stream.abort = ctrl;
      try {
        const res = await fetch(`/api/v1/events?follow=1&since=${stream.last}`, {
          headers: { Authorization: `Bearer ${session.token}` }, signal: ctrl.signal, cache: "no-store",
        });
        if (res.status === 401) { logout("The controller no longer accepts this token; log in again."); return; }
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

  // ---- views ----
  // A view renders into <main> and may subscribe to events; leaving it
  // unsubscribes, so no listener or timer of an old view lives on.
  let current = { dispose() {} };
  function disposeView() { current.dispose(); current = { dispose() {} }; }

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

  function mountView(draw, onEvent) {
    disposeView();
    const render = async () => {
      const focused = focusedControl();
      await draw();
      const again = focused && main().querySelector(focused);
      if (again) again.focus();
    };
    const refresh = throttled(render, 300);
    const listener = (e) => { if (onEvent(e)) refresh(); };
    stream.listeners.add(listener);
    current = { dispose: () => stream.listeners.delete(listener) };
    return render();
  }

  function heading(text, ...rest) {
    document.title = `${text} · Tranche`;
    return h("h1", {}, text, ...rest);
  }

  function failure(err) {
    return h("p", { class: "error", role: "alert" }, err.message);
  }

  // Fleet: hosts with their members as blocks, filterable by application.
  async function fleetView(filterApp) {
    const render = async () => {
      let apps, hosts, members;
      try {
        const query = filterApp ? `?app=${encodeURIComponent(filterApp)}` : "";
        [apps, hosts, members] = await Promise.all([
          api("GET", "/applications"), api("GET", "/hosts"), api("GET", `/members${query}`)]);
      } catch (err) { main().replaceChildren(heading("Fleet"), failure(err)); return; }
      const select = h("select", { id: "app-filter", onchange: (e) => {
        location.hash = e.target.value ? `#/fleet/${encodeURIComponent(e.target.value)}` : "#/fleet";
      } }, h("option", { value: "" }, "all applications"),
      apps.items.map((a) => h("option", { value: a.name, selected: a.name === filterApp }, a.name)));
      const byHost = new Map();
      for (const m of members.items) {
        const key = m.host || "";
        if (!byHost.has(key)) byHost.set(key, []);
        byHost.get(key).push(m);
      }
      const block = (m) => h("a", {
        class: `block s-${m.state}`, href: `#/member/${m.id}`, "data-member": m.id, "data-state": m.state,
        title: `${m.id}: ${m.state} (version ${m.version})`, "aria-label": `${m.id} ${m.state}`,
      });
      const cards = hosts.items.map((host) => {
        const mine = byHost.get(host.id) || [];
        return h("section", { class: "card host", "data-host": host.id, "aria-label": `host ${host.hostname}` },
          h("h2", {}, host.hostname, " ", badge(host.state), host.connected ? "" : h("small", {}, " (disconnected)")),
          h("div", {}, h("small", {}, `${host.id} · slots ${host.members} / ${host.slots} used · last seen ${when(host.lastSeen)}`)),
          h("div", {}, Object.entries(host.labels || {}).map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`))),
          h("div", { class: "blocks" }, mine.length ? mine.map(block) : h("small", {}, "no members")));
      });
      const unplaced = byHost.get("") || [];
      if (unplaced.length) {
        cards.push(h("section", { class: "card host" }, h("h2", {}, "Not placed yet"),
          h("div", { class: "blocks" }, unplaced.map(block))));
      }
      const states = [...new Set(members.items.map((m) => m.state))].sort();
      main().replaceChildren(
        heading("Fleet"),
        h("div", { class: "toolbar" }, h("label", {}, "Application", select),
          h("span", { class: "legend", "aria-hidden": "true" },
            states.map((s) => h("span", {}, h("span", { class: `block s-${s}` }), s)))),
        hosts.items.length ? h("div", { class: "grid" }, cards) : h("p", {}, "No hosts have joined yet."));
    };
    return mountView(render, (e) => e.type === "MemberStateChanged" || e.type === "HostStateChanged" ||
      e.type === "ApplicationDeployed" || e.type === "ApplicationUndeployed");
  }

  async function appsView() {
    const render = async () => {
      let apps;
      try { apps = await api("GET", "/applications"); } catch (err) {
        main().replaceChildren(heading("Applications"), failure(err)); return;
      }
      main().replaceChildren(heading("Applications"), apps.items.length ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Name", "Revision", "Deployed", "Clusters", "Active / desired", "Updated", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, apps.items.map((a) => h("tr", {},
          h("td", {}, h("a", { href: `#/app/${encodeURIComponent(a.name)}` }, a.name)),
          h("td", {}, a.revision), h("td", {}, a.deployed ? "yes" : "no"), h("td", {}, a.clusters),
          h("td", {}, `${a.active} / ${a.desired}`), h("td", {}, when(a.updatedAt)),
          h("td", {}, h("a", { href: `#/rollout/${encodeURIComponent(a.name)}` }, "rollout"))))))) :
        h("p", {}, "No applications yet: ", h("code", {}, "tranche apply -f manifest.yaml")));
    };
    return mountView(render, (e) => e.type === "RevisionCreated" || e.type === "ApplicationDeployed" ||
      e.type === "ApplicationUndeployed" || e.type === "MemberStateChanged");
  }

  // One setting of a node: effective value, where it comes from, and for an
  // operator a switch that makes it explicit.
  function settingCell(app, path, name, s, options, withSwitch) {
    const from = s.explicit !== null && s.explicit !== undefined
      ? `explicit${s.expiresAt ? ", " + timeLeft(s.expiresAt) : ""}`
      : s.source === "default" ? "default" : `from ${s.source || app}`;
    const cell = h("td", {
      class: "setting", "data-setting": name, "data-effective": s.effective,
      "data-source": s.explicit !== null && s.explicit !== undefined ? "explicit" : (s.source || "application"),
    }, badge(s.effective), s.allAtOnce ? " all at once" : "", h("small", {}, from));
    if (!withSwitch || !canOperate()) return cell;
    const label = path ? `${app}/${path}` : app;
    const put = async (value) => {
      const body = { path, [name]: value };
      if (options.recursive.checked) body.propagate = true;
      if (options.duration.value.trim()) body.for = options.duration.value.trim();
      try {
        const answer = await api("PUT", `/applications/${encodeURIComponent(app)}/operational-state`, body);
        toast(answer.message || `${name} of ${label}: ${value}`);
      } catch (err) { toast(`${name} of ${label}: ${err.message}`, true); }
    };
    if (name === "maintenance") {
      cell.append(h("select", {
        class: "switch", "data-action": name, "data-path": path, "aria-label": `maintenance of ${label}`,
        onchange: (e) => put(e.target.value),
      }, ["off", "restart", "replace"].map((v) => h("option", { value: v, selected: v === s.effective }, v))));
    } else {
      const on = s.effective === "on";
      cell.append(h("button", {
        type: "button", class: "switch secondary", role: "switch", "aria-checked": String(on),
        "data-action": name, "data-path": path, "aria-label": `${name} of ${label}`,
        onclick: () => put(on ? "off" : "on"),
      }, on ? "Turn off" : "Turn on"));
    }
    return cell;
  }

  // A line diff of two texts (longest common subsequence), for revisions.
  function lineDiff(a, b) {
    const x = a.split("\n"), y = b.split("\n");
    if (x.length * y.length > 4e6) return [{ op: " ", text: "(too large to compare here)" }];
    const n = x.length, m = y.length, lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    const out = [];
    let i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { out.push({ op: " ", text: x[i] }); i++; j++; }
      else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) out.push({ op: "+", text: y[j++] });
      else out.push({ op: "-", text: x[i++] });
    }
    return out;
  }

  async function showDiff(app, revision, target) {
    if (target.childElementCount) { target.replaceChildren(); return; }
    try {
      const [after, before] = await Promise.all([
        api("GET", `/applications/${encodeURIComponent(app)}/revisions/${revision}`),
        revision > 1 ? api("GET", `/applications/${encodeURIComponent(app)}/revisions/${revision - 1}`)
          : Promise.resolve({ manifest: {} })]);
      const lines = lineDiff(JSON.stringify(before.manifest, null, 2), JSON.stringify(after.manifest, null, 2));
      const changed = lines.map((l, k) => (l.op !== " " ? k : -1)).filter((k) => k >= 0);
      const keep = new Set(changed.flatMap((k) => [k - 2, k - 1, k, k + 1, k + 2]));
      target.replaceChildren(h("pre", { class: "diff", "aria-label": `changes of revision ${revision}` },
        changed.length ? lines.filter((_, k) => keep.has(k)).map((l) =>
          h("span", { class: l.op === "+" ? "add" : l.op === "-" ? "del" : "" }, `${l.op} ${l.text}\n`))
          : "(no change to the manifest)"));
    } catch (err) { target.replaceChildren(failure(err)); }
  }

  async function appView(app) {
    const options = {
      duration: h("input", { id: "for", size: 8, placeholder: "e.g. 2h", "aria-describedby": "for-help" }),
      recursive: h("input", { id: "recursive", type: "checkbox" }),
    };
    const render = async () => {
      let doc, revisions;
      try {
        [doc, revisions] = await Promise.all([api("GET", `/applications/${encodeURIComponent(app)}`),
          api("GET", `/applications/${encodeURIComponent(app)}/revisions`)]);
      } catch (err) { main().replaceChildren(heading(app), failure(err)); return; }
      const rows = [];
      for (const node of doc.tree) {
        const depth = node.path ? node.path.split("/").length : 0;
        const members = node.members;
        rows.push(h("tr", { "data-path": node.path, "data-kind": node.kind },
          h("td", { class: `indent-${Math.min(depth, 4)}` }, h("strong", {}, node.name), " ", h("small", {}, node.kind),
            node.version ? h("small", {}, ` · ${node.version}`) : ""),
          ["autoscaling", "autohealing", "maintenance"].map((s) => settingCell(app, node.path, s, node[s], options, true)),
          h("td", {}, members ? `${members.items.length} of ${node.load && node.load.scaledDesired != null ? node.load.scaledDesired + " (autoscaled)" : members.desired} (${members.min}..${members.max})` : "")));
        for (const m of members ? members.items : []) {
          const op = m.operational || {};
          rows.push(h("tr", { class: "member", "data-member": m.id },
            h("td", { class: `indent-${Math.min(depth + 1, 4)}` }, h("a", { href: `#/member/${m.id}` }, m.id.split("/").pop()),
              " ", badge(m.state), m.healingDelayedSince ? h("small", {}, " healing delayed") : ""),
            ["autoscaling", "autohealing", "maintenance"].map((s) =>
              op[s] ? settingCell(app, op.path, s, op[s], options, false) : h("td", {})),
            h("td", {}, h("small", {}, `${m.host || "-"} · rev ${m.revision}`))));
        }
      }
      const history = revisions.items.map((r) => {
        const diff = h("div", {});
        return [h("tr", { "data-revision": r.revision },
          h("td", {}, r.revision, r.current ? h("small", {}, " (current)") : ""), h("td", {}, when(r.createdAt)),
          h("td", {}, r.author), h("td", {}, r.summary),
          h("td", {}, h("button", { type: "button", class: "secondary", "aria-expanded": "false",
            onclick: (e) => { e.target.setAttribute("aria-expanded", String(!diff.childElementCount)); showDiff(app, r.revision, diff); } }, "Changes"),
          " ", !r.current && canOperate() ? h("button", { type: "button", class: "secondary", "data-action": "undo",
            onclick: async () => {
              if (!confirm(`Roll ${app} back to revision ${r.revision}? This is a new revision and a rollout.`)) return;
              try {
                await api("POST", `/applications/${encodeURIComponent(app)}/rollout/undo`, { toRevision: r.revision });
                location.hash = `#/rollout/${encodeURIComponent(app)}`;
              } catch (err) { toast(`undo: ${err.message}`, true); }
            } }, `Undo to ${r.revision}`) : "")),
        h("tr", {}, h("td", { colspan: 5 }, diff))];
      });
      main().replaceChildren(
        heading(app, " ", h("small", {}, `revision ${doc.revision}${doc.deployed ? "" : " · not deployed"}`)),
        h("p", {}, doc.description || "", " ", h("a", { href: `#/rollout/${encodeURIComponent(app)}` }, "Rollout"), " · ",
          h("a", { href: `#/fleet/${encodeURIComponent(app)}` }, "Members on hosts")),
        canOperate() ? h("div", { class: "toolbar card" },
          h("label", {}, "Switch for", options.duration),
          h("small", { id: "for-help" }, "empty: until changed; 30s, 2h, 1h30m: reverts by itself"),
          h("label", {}, options.recursive, "recursive (clear explicit values below)")) : "",
        h("h2", {}, "Operational state"),
        h("div", { class: "scroll" }, h("table", { id: "tree" },
          h("thead", {}, h("tr", {}, ["Node", "Autoscaling", "Autohealing", "Maintenance", "Members"].map((t) => h("th", {}, t)))),
          h("tbody", {}, rows))),
        h("h2", {}, "Revisions"),
        h("div", { class: "scroll" }, h("table", { id: "revisions" },
          h("thead", {}, h("tr", {}, ["Revision", "Created", "Author", "Summary", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, history))));
    };
    return mountView(render, (e) => e.app === app && e.type !== "LoadStateChanged");
  }

  async function rolloutView(app) {
    const render = async () => {
      let r, members;
      try {
        [r, members] = await Promise.all([api("GET", `/applications/${encodeURIComponent(app)}/rollout`),
          api("GET", `/members?app=${encodeURIComponent(app)}`)]);
      } catch (err) {
        main().replaceChildren(heading(`Rollout of ${app}`),
          err.status === 404 ? h("p", { id: "no-rollout" }, `${app} has had no rollout yet. This page follows the event stream: one started now (tranche update ${app}/CLUSTER --version V) shows here.`)
            : failure(err));
        return;
      }
      const control = (action, label, cls) => h("button", {
        type: "button", class: cls || "", "data-action": action,
        onclick: async (e) => {
          e.target.disabled = true;
          try {
            const answer = await api("POST", `/applications/${encodeURIComponent(app)}/rollout/${action}`);
            toast(answer.message || `${action}: done`);
          } catch (err) { toast(`${action}: ${err.message}`, true); e.target.disabled = false; }
        },
      }, label);
      const buttons = [];
      if (canOperate() && !FINISHED.has(r.phase)) {
        if (r.phase === "CanaryPaused") buttons.push(control("promote", "Promote canary"));
        if (r.phase === "Progressing") buttons.push(control("pause", "Pause", "secondary"));
        if (r.phase === "Paused") buttons.push(control("resume", "Resume"));
        buttons.push(control("abort", "Abort", "danger"));
      }
      const clusters = (r.clusters || []).map((c) => {
        const pct = c.total ? Math.round((100 * c.updated) / c.total) : 0;
        return h("tr", { "data-cluster": c.path },
          h("td", {}, h("strong", {}, c.path), h("small", {}, ` ${c.method} · ${c.strategy}`)),
          h("td", {}, badge(c.status)),
          h("td", {}, h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": c.total,
            "aria-valuenow": c.updated, "aria-label": `${c.path} updated` }, h("span", { style: `width:${pct}%` })),
          h("small", {}, `${c.updated} / ${c.total} updated`),
          // The members themselves: a block each, outlined once on the target revision.
          h("div", { class: "blocks" }, members.items.filter((m) => `${app}/${m.cluster}` === c.path || m.cluster === c.path)
            .map((m) => h("a", {
              class: `block s-${m.state}${m.revision === r.targetRevision ? " target" : ""}`, href: `#/member/${m.id}`,
              "data-member": m.id, title: `${m.id}: ${m.state}, revision ${m.revision}`,
              "aria-label": `${m.id} ${m.state} revision ${m.revision}`,
            })))),
          h("td", {}, c.available), h("td", {}, `${c.failures} / ${c.maxFailures}`),
          h("td", {}, h("small", {}, c.waitingFor || "")));
      });
      main().replaceChildren(
        heading(`Rollout of ${app}`),
        h("div", { class: `card${r.phase === "CanaryPaused" ? " gate" : ""}` },
          h("p", { class: "phase", "aria-live": "polite" }, "Phase ",
            h("strong", { id: "phase", "data-phase": r.phase, class: `badge s-${r.phase}` }, r.phase),
            h("small", {}, ` · rollout ${r.id} · revision ${r.fromRevision} → ${r.toRevision}` +
              (r.targetRevision !== r.toRevision ? ` (now heading to ${r.targetRevision})` : ""))),
          r.reason ? h("p", { id: "reason" }, h("strong", {}, "Why: "), r.reason) : "",
          r.phase === "CanaryPaused" ? h("p", {}, "The canary members run the new revision; promote to roll out the rest.") : "",
          h("p", {}, h("small", {}, `by ${r.author} · started ${when(r.startedAt)} · ${r.finishedAt ? "finished " + when(r.finishedAt) : Math.round(r.elapsedSeconds) + " s so far"}`)),
          buttons.length ? h("div", { class: "toolbar" }, buttons) : ""),
        h("p", { class: "legend" }, h("span", {}, h("span", { class: "block target s-Active" }), `on revision ${r.targetRevision}`),
          h("span", {}, h("span", { class: "block s-Active" }), "on an earlier revision")),
        h("div", { class: "scroll" }, h("table", { id: "clusters" },
          h("thead", {}, h("tr", {}, ["Cluster", "Status", "Progress", "Available", "Failures", "Waiting for"].map((t) => h("th", {}, t)))),
          h("tbody", {}, clusters))),
        h("p", {}, h("a", { href: `#/app/${encodeURIComponent(app)}` }, `${app}: tree and revisions`)));
    };
    return mountView(render, (e) => e.app === app && e.type !== "LoadStateChanged");
  }

  async function eventsView() {
    const list = h("ol", { class: "events", id: "events", "aria-live": "off" });
    const filter = h("input", { id: "event-filter", type: "search", placeholder: "type, path, member or words" });
    const followBox = h("input", { id: "event-follow", type: "checkbox", checked: true });
    const matches = (li) => !filter.value || li.dataset.text.includes(filter.value.toLowerCase());
    const item = (e) => {
      const li = h("li", { "data-seq": e.seq, "data-type": e.type },
        h("span", {}, `#${e.seq}`), h("small", {}, new Date(e.time).toLocaleTimeString()), badge(e.type),
        h("span", {}, e.member ? h("a", { href: `#/member/${e.member}` }, e.member) : e.path || e.app,
          typeof e.to === "string" ? ` → ${e.to}` : "", " ", h("small", {}, e.message)));
      li.dataset.text = `${e.type} ${e.app} ${e.path} ${e.member || ""} ${e.message}`.toLowerCase();
      li.hidden = !matches(li);
      return li;
    };
    filter.addEventListener("input", () => { for (const li of list.children) li.hidden = !matches(li); });
    main().replaceChildren(heading("Events"),
      h("div", { class: "toolbar" }, h("label", {}, "Filter", filter), h("label", {}, followBox, "follow live")), list);
    disposeView();
    const listener = (e) => {
      if (!followBox.checked) return;
      list.prepend(item(e));
      while (list.childElementCount > 500) list.lastElementChild.remove();
    };
    stream.listeners.add(listener);
    current = { dispose: () => stream.listeners.delete(listener) };
    try {
      const from = Math.max(0, stream.last - 200);
      const recent = await api("GET", `/events?since=${from}&limit=200`);
      // Events the stream brought meanwhile are already listed: merge by seq.
      const shown = new Set([...list.children].map((li) => Number(li.dataset.seq)));
      list.append(...recent.items.filter((e) => !shown.has(e.seq)).map(item));
      list.replaceChildren(...[...list.children].sort((a, b) => Number(b.dataset.seq) - Number(a.dataset.seq)));
    } catch (err) { list.before(failure(err)); }
  }

  async function memberView(id) {
    const out = h("div", {});
    const show = async (hook) => {
      out.replaceChildren(h("p", { class: "muted" }, "Asking the member's agent…"));
      try {
        const logs = await api("GET", `/members/${enc(id)}/logs${hook ? "?hook=" + hook : ""}`);
        out.replaceChildren(
          h("h2", {}, hook ? `Output of the ${hook} hook` : "Output", " ", h("small", {}, "(the last 64 KiB)")),
          h("h3", {}, "stdout"), h("pre", { id: "logs-stdout", tabindex: 0 }, logs.stdout || "(empty)"),
          h("h3", {}, "stderr"), h("pre", { id: "logs-stderr", tabindex: 0 }, logs.stderr || "(empty)"));
      } catch (err) { out.replaceChildren(failure(err)); }
    };
    const render = async () => {
      let m;
      try { m = await api("GET", `/members/${enc(id)}`); } catch (err) {
        main().replaceChildren(heading(id), failure(err)); return;
      }
      const fields = [["State", badge(m.state)], ["Host", m.host || "-"], ["Revision", m.revision],
        ["Version", m.version], ["Healthy", String(m.healthy)], ["PID", m.pid ?? "-"],
        ["Ports", Object.entries(m.ports || {}).map(([k, v]) => `${k}:${v}`).join(", ") || "-"],
        ["Updated", when(m.updatedAt)]];
      if (m.healingDelayedSince) fields.push(["Healing delayed since", when(m.healingDelayedSince)]);
      if (m.loadBalancer) fields.push(["Load balancer", `${m.loadBalancer.backend}: ${m.loadBalancer.state}`]);
      const [app] = id.split("/");
      main().replaceChildren(heading(id),
        h("p", {}, h("a", { href: `#/app/${encodeURIComponent(app)}` }, app)),
        h("div", { class: "card" }, h("table", { id: "member" }, h("tbody", {},
          fields.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))))),
        h("div", { class: "toolbar" },
          h("button", { type: "button", class: "secondary", onclick: () => show("") }, "Output"),
          h("button", { type: "button", class: "secondary", onclick: () => show("update") }, "Update hook output"),
          h("button", { type: "button", class: "secondary", onclick: () => show("maintenance") }, "Maintenance hook output")),
        out);
    };
    await mountView(render, (e) => e.member === id);
    show("");
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
})();

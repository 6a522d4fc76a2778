// The console's views, each drawn from the REST API into <main> and redrawn
// when an event it cares about arrives: fleet, applications, one
// application (tree, switches, revisions), its rollout, events, a member.
import { h, main, badge, toast, when, timeLeft, heading, failure } from "/ui/dom.js";
import { api, canOperate, enc, stream, mountView, subscribe } from "/ui/api.js";

const FINISHED = new Set(["Succeeded", "Failed", "Aborted", "Superseded"]);
// Members drawn per cluster in the application and rollout views; the rest
// are counted, not drawn (a cluster may hold 100,000).
const MEMBER_ROWS = 50;
const MEMBER_BLOCKS = 500;

// "3 Active, 1 Starting · 3 available, 4 healthy": a cluster's counts.
function memberCounts(m) {
  const states = Object.entries(m.states || {}).map(([s, n]) => `${n} ${s}`).join(", ") || "none";
  const more = [`${m.available} available`, `${m.healthy} healthy`];
  if (m.updating) more.push(`${m.updating} updating`);
  if (m.healingDelayed) more.push(`healing delayed for ${m.healingDelayed}`);
  return `${states} · ${more.join(", ")}`;
}

// Fleet: hosts with their members as blocks, filterable by application.
export async function fleetView(filterApp) {
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
        h("div", {}, h("small", {}, `${host.id} · agent ${host.agentVersion || "unknown"}${host.protocol ? ` (protocol ${host.protocol})` : ""} · slots ${host.members} / ${host.slots} used · last seen ${when(host.lastSeen)}`)),
        host.refused ? h("div", { class: "refused" }, h("small", {}, `agent refused: ${host.refused}`)) : "",
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

export async function appsView() {
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

export async function appView(app) {
  const options = {
    duration: h("input", { id: "for", size: 8, placeholder: "e.g. 2h", "aria-describedby": "for-help" }),
    recursive: h("input", { id: "recursive", type: "checkbox" }),
  };
  const render = async () => {
    let doc, revisions, pages, settings;
    try {
      [doc, revisions] = await Promise.all([api("GET", `/applications/${encodeURIComponent(app)}`),
        api("GET", `/applications/${encodeURIComponent(app)}/revisions`)]);
      // The application's view has each cluster's counts; its members come a
      // page at a time from /members, at most MEMBER_ROWS of each cluster.
      const clusters = doc.tree.filter((n) => n.members && n.members.count > 0);
      pages = new Map(await Promise.all(clusters.map(async (n) => [n.path, await api("GET",
        `/members?app=${encodeURIComponent(app)}&cluster=${encodeURIComponent(n.path)}&limit=${MEMBER_ROWS}`)])));
      // Each listed member's own switches: explicit and effective values of every node.
      settings = clusters.length ? await api("GET", `/applications/${encodeURIComponent(app)}/operational-state`) : { nodes: [] };
    } catch (err) { main().replaceChildren(heading(app), failure(err)); return; }
    const opOf = new Map(settings.nodes.map((n) => [n.path, n]));
    const rows = [];
    for (const node of doc.tree) {
      const depth = node.path ? node.path.split("/").length : 0;
      const members = node.members;
      rows.push(h("tr", { "data-path": node.path, "data-kind": node.kind },
        h("td", { class: `indent-${Math.min(depth, 4)}` }, h("strong", {}, node.name), " ", h("small", {}, node.kind),
          node.version ? h("small", {}, ` · ${node.version}`) : ""),
        ["autoscaling", "autohealing", "maintenance"].map((s) => settingCell(app, node.path, s, node[s], options, true)),
        h("td", { "data-count": members ? members.count : "" }, members ? [
          `${members.count} of ${node.load && node.load.scaledDesired != null ? node.load.scaledDesired + " (autoscaled)" : members.desired} (${members.min}..${members.max})`,
          h("br", {}), h("small", { "data-states": "" }, memberCounts(members))] : "")));
      const page = pages.get(node.path);
      for (const m of page ? page.items : []) {
        const op = opOf.get(m.id.slice(app.length + 1)) || {};
        rows.push(h("tr", { class: "member", "data-member": m.id },
          h("td", { class: `indent-${Math.min(depth + 1, 4)}` }, h("a", { href: `#/member/${m.id}` }, m.id.split("/").pop()),
            " ", badge(m.state), m.healingDelayedSince ? h("small", {}, " healing delayed") : ""),
          ["autoscaling", "autohealing", "maintenance"].map((s) =>
            op[s] ? settingCell(app, op.path, s, op[s], options, false) : h("td", {})),
          h("td", {}, h("small", {}, `${m.host || "-"} · rev ${m.revision}`))));
      }
      if (page && page.continue !== null) {
        rows.push(h("tr", { class: "member more" }, h("td", { colspan: 5, class: `indent-${Math.min(depth + 1, 4)}` },
          h("small", {}, `${members.count - page.items.length} more members: `,
            h("a", { href: `#/fleet/${encodeURIComponent(app)}` }, "all on their hosts")))));
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

export async function rolloutView(app) {
  const render = async () => {
    let r, pages;
    try {
      r = await api("GET", `/applications/${encodeURIComponent(app)}/rollout`);
      // Each cluster's members, at most MEMBER_BLOCKS of them (the bar counts them all).
      pages = new Map(await Promise.all((r.clusters || []).map(async (c) => [c.path, await api("GET",
        `/members?app=${encodeURIComponent(app)}&cluster=${encodeURIComponent(c.path)}&limit=${MEMBER_BLOCKS}`)])));
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
    // Batches of at most batchSize members: which one is moving, of how many.
    const batches = (c) => {
      const size = Math.max(c.batchSize || 1, 1);
      const count = Math.max(Math.ceil(c.total / size), 1);
      const current = Math.min(Math.floor(c.updated / size) + (c.updated < c.total ? 1 : 0), count);
      return `batch ${current} of ${count} (${size} at a time)`;
    };
    const clusters = (r.clusters || []).map((c) => {
      const pct = c.total ? Math.round((100 * c.updated) / c.total) : 0;
      return h("tr", { "data-cluster": c.path },
        h("td", {}, h("strong", {}, c.path), h("small", {}, ` ${c.method} · ${c.strategy}`)),
        h("td", {}, badge(c.status)),
        h("td", {}, h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": c.total,
          "aria-valuenow": c.updated, "aria-label": `${c.path} updated` }, h("span", { style: `width:${pct}%` })),
        h("small", { "data-batches": "" }, `${c.updated} / ${c.total} updated · ${batches(c)}`),
        // The members themselves: a block each, outlined once on the target revision.
        h("div", { class: "blocks" }, pages.get(c.path).items
          .map((m) => h("a", {
            class: `block s-${m.state}${m.revision === r.targetRevision ? " target" : ""}`, href: `#/member/${m.id}`,
            "data-member": m.id, title: `${m.id}: ${m.state}, revision ${m.revision}`,
            "aria-label": `${m.id} ${m.state} revision ${m.revision}`,
          })),
          pages.get(c.path).continue !== null ? h("small", {}, ` and more (${MEMBER_BLOCKS} drawn)`) : "")),
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

export async function eventsView() {
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
  subscribe((e) => {
    if (!followBox.checked) return;
    list.prepend(item(e));
    while (list.childElementCount > 500) list.lastElementChild.remove();
  });
  try {
    const from = Math.max(0, stream.last - 200);
    const recent = await api("GET", `/events?since=${from}&limit=200`);
    // Events the stream brought meanwhile are already listed: merge by seq.
    const shown = new Set([...list.children].map((li) => Number(li.dataset.seq)));
    list.append(...recent.items.filter((e) => !shown.has(e.seq)).map(item));
    list.replaceChildren(...[...list.children].sort((a, b) => Number(b.dataset.seq) - Number(a.dataset.seq)));
  } catch (err) { list.before(failure(err)); }
}

export async function memberView(id) {
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

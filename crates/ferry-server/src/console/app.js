// ferry's console: one page, no framework, no network but this server. Every value from the API
// is put into the page as text (never as HTML).

const state = { token: sessionStorage.getItem("ferry-token"), me: null, render: 0 };
const main = () => document.getElementById("main");

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// An answer that came back after the operator went to another page: dropped, not rendered.
class Stale extends Error {}

async function api(path, opts = {}) {
  const at = state.render;
  const headers = { Authorization: "Bearer " + state.token };
  if (opts.body && typeof opts.body === "string" && !opts.raw) headers["Content-Type"] = "application/json";
  const r = await fetch("/api/v1" + path, { ...opts, headers: { ...headers, ...(opts.headers || {}) } });
  const text = await r.text();
  let v;
  try { v = JSON.parse(text); } catch { v = text; }
  if (at !== state.render) throw new Stale();
  if (r.status === 401 && path !== "/sessions") { signOut(); throw new Error("signed out"); }
  if (!r.ok) throw new Error((v && v.error) || text || r.statusText);
  return v;
}

const post = (path, body) => api(path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });

function table(rows, cols, empty = "Nothing yet.") {
  if (!rows || rows.length === 0) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, cols.map(([title]) => h("th", {}, title)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map(([, get]) => h("td", {}, get(r)))))));
}

const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "—");
const show = (v) => (v == null ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));

function page(title, ...body) {
  main().replaceChildren(h("h1", {}, title), ...body);
}

function failure(e) {
  main().replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error" }, String(e.message || e)));
}

// ---- sign-in ----

function signInPage() {
  document.getElementById("nav").replaceChildren();
  document.getElementById("who").replaceChildren();
  const err = h("p", { class: "error", id: "signin-error" });
  const name = h("input", { id: "name", placeholder: "operator", autocomplete: "username" });
  const password = h("input", { id: "password", type: "password", placeholder: "password", autocomplete: "current-password" });
  const token = h("input", { id: "token", placeholder: "or an API token", autocomplete: "off" });
  const go = async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      let candidate = token.value.trim();
      if (!candidate) {
        const r = await fetch("/api/v1/sessions", { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ name: name.value, password: password.value }) });
        const v = await r.json();
        if (!r.ok) throw new Error(v.error);
        candidate = v.token;
      }
      const r = await fetch("/api/v1/me", { headers: { Authorization: "Bearer " + candidate } });
      const me = await r.json();
      if (!r.ok) throw new Error(me.error);
      state.token = candidate;
      state.me = me;
      sessionStorage.setItem("ferry-token", state.token);
      location.hash = "#/";
      route();
    } catch (e) {
      state.token = null;
      err.textContent = String(e.message || e);
    }
  };
  page("Sign in", h("form", { class: "card", id: "signin", onsubmit: go },
    h("p", {}, name), h("p", {}, password), h("p", {}, token), h("p", {}, h("button", { type: "submit", id: "signin-button" }, "Sign in")), err));
}

async function signOut() {
  if (state.token) {
    try { await fetch("/api/v1/sessions", { method: "DELETE", headers: { Authorization: "Bearer " + state.token } }); } catch {}
  }
  state.token = null;
  state.me = null;
  sessionStorage.removeItem("ferry-token");
  signInPage();
}

// ---- pages ----

const ADMIN_PAGES = [
  ["", "Readiness"], ["directories", "Directories"], ["profiles", "Sync profiles"], ["cycles", "Cycles"], ["whatif", "What-If"], ["translation", "Translation table"],
  ["logs", "Message logs"], ["psks", "Pre-shared keys"], ["runbooks", "Runbooks"], ["batches", "Batches"],
  ["agents", "Agents"], ["failed", "Failed communications"], ["environments", "Environments"], ["moves", "Environment moves"], ["audit", "Audit"],
];
const TENANT_PAGES = [["environments", "Environments"], ["moves", "Environment moves"], ["audit", "Audit"]];

function nav(current) {
  const pages = state.me.role === "admin" ? ADMIN_PAGES : TENANT_PAGES;
  document.getElementById("nav").replaceChildren(...pages.map(([p, t]) => h("a", { href: "#/" + p, class: p === current ? "active" : false }, t)));
  document.getElementById("who").replaceChildren(
    `${state.me.name} (${state.me.tenant ? "admin of " + state.me.tenant : "ferry admin"}) `,
    h("button", { class: "secondary", id: "signout", onclick: signOut }, "Sign out"));
}

async function readiness() {
  const [dirs, profiles, tr, psks, ep, runbooks, batches, agents] = await Promise.all([
    api("/directories"), api("/profiles"), api("/translation?limit=1"), api("/psks"), api("/agent-endpoint").catch(() => null),
    api("/runbooks"), api("/batches"), api("/agents"),
  ]);
  const line = (ok, text, href) => h("li", {}, h("span", { class: ok ? "ok" : "bad" }, ok ? "✓ " : "✗ "), h("a", { href: "#/" + href }, text));
  const ran = profiles.some((p) => p.last_cycle && p.last_cycle.status === "succeeded");
  page("Readiness", h("ul", { class: "check", id: "readiness" },
    line(dirs.length >= 2, `Source and target directories configured (${dirs.length})`, "directories"),
    line(ran, "A sync cycle ran end to end", "profiles"),
    line(tr.total > 0, `Translation table populated (${tr.total} entries)`, "translation"),
    line(psks.some((k) => !k.retired_at), "A pre-shared key for agents", "psks"),
    line(!!(ep && ep.certificate_sha256), "The server certificate for agents" + (ep && ep.certificate_sha256 ? ` (SHA-256 ${ep.certificate_sha256.slice(0, 16)}…)` : ""), "psks"),
    line(runbooks.length > 0, `Runbooks (${runbooks.length})`, "runbooks"),
    line(batches.length > 0, `Batches (${batches.length})`, "batches"),
    line(agents.length > 0, `Agents registered (${agents.length})`, "agents")));
}

async function directories() {
  const v = await api("/directories");
  page("Directories", table(v, [["Name", (d) => d.name], ["Kind", (d) => d.kind], ["Where", (d) => d.location],
    ["Last import", (d) => (d.state ? when(d.state.imported_at) : "never")]]));
}

async function profiles() {
  const v = await api("/profiles");
  const run = (name) => async () => { await post(`/profiles/${encodeURIComponent(name)}/run?wait=true`); route(); };
  page("Sync profiles", table(v, [["Profile", (p) => p.name], ["Source → target", (p) => `${p.source} → ${p.target}`], ["Mode", (p) => p.mode],
    ["Schedule", (p) => p.schedule || "on demand"], ["Last cycle", (p) => (p.last_cycle ? `${p.last_cycle.status} ${when(p.last_cycle.finished_at)}` : "none")],
    ["", (p) => h("button", { onclick: run(p.name) }, "Run now")]]));
}

async function cycles() {
  const v = await api("/cycles?limit=100");
  const n = (c, k) => (c.counts ? c.counts[k] : "—");
  page("Cycles", table(v, [["Cycle", (c) => c.id], ["Profile", (c) => c.profile], ["Trigger", (c) => c.trigger], ["Status", (c) => c.status],
    ["Started", (c) => when(c.started_at)], ["Source", (c) => n(c, "source_objects")], ["Target", (c) => n(c, "target_objects")],
    ["Matched", (c) => n(c, "matched")], ["Unmatched", (c) => n(c, "unmatched")], ["Ambiguous", (c) => n(c, "ambiguous")], ["Export", (c) => show(c.export)]]));
}

async function whatif() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const profiles = await api("/profiles");
  if (profiles.length === 0) return page("What-If", h("p", { class: "muted" }, "No sync profiles."));
  const name = params.get("profile") || profiles[0].name;
  const status = params.get("status") || "";
  const q = new URLSearchParams({ limit: "200" });
  if (status) q.set("status", status);
  let v;
  try { v = await api(`/profiles/${encodeURIComponent(name)}/whatif?${q}`); } catch (e) {
    return page("What-If", h("p", { class: "muted" }, `${name}: ${e.message}`));
  }
  const go = (p, st) => { location.hash = `#/whatif?profile=${encodeURIComponent(p)}&status=${st}`; };
  const profileSel = h("select", { id: "whatif-profile", onchange: (e) => go(e.target.value, status) },
    profiles.map((p) => h("option", { value: p.name, selected: p.name === name }, p.name)));
  const statusSel = h("select", { id: "whatif-status", onchange: (e) => go(name, e.target.value) },
    ["", "matched", "unmatched", "ambiguous", "conflict"].map((x) => h("option", { value: x, selected: x === status }, x || "all decisions")));
  const msg = h("p", { id: "whatif-message" });
  const approve = async () => {
    try { await post(`/profiles/${encodeURIComponent(name)}/approve`, { plan_hash: v.plan.hash }); route(); }
    catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  const c = v.plan.counts;
  page("What-If",
    h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, profileSel, statusSel),
    h("p", { id: "whatif-summary" }, `Plan of cycle ${v.plan.cycle_id}: ${c.matched} matched, ${c.unmatched} unmatched, ${c.ambiguous} ambiguous, ${v.writes_total} writes. `,
      v.approved ? h("span", { class: "ok" }, "Approved: the next cycle exports.") : v.needs_approval ? h("button", { id: "whatif-approve", onclick: approve }, "Approve") : h("span", { class: "muted" }, "Nothing to approve.")),
    msg,
    h("p", { class: "muted" }, `${v.decisions_total} decisions`),
    table(v.decisions, [["Kind", (d) => d.kind], ["Status", (d) => d.status], ["Source", (d) => d.source_upn || d.source_name],
      ["Target", (d) => show(d.target_upn || d.target_name)], ["Candidates", (d) => (d.candidates || []).join(", ")]], "No decisions."),
    v.writes.length ? h("h2", {}, "Writes") : "",
    v.writes.length ? h("pre", {}, v.writes.map((w) => JSON.stringify(w)).join("\n")) : "");
}

async function translation() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const q = params.get("q") || "";
  const offset = Number(params.get("offset") || 0);
  const v = await api(`/translation?limit=50&offset=${offset}&q=${encodeURIComponent(q)}`);
  const box = h("input", { id: "search", value: q, placeholder: "name, UPN, mail, id…" });
  const go = (o) => { location.hash = `#/translation?q=${encodeURIComponent(box.value)}&offset=${o}`; };
  page("Translation table",
    h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); go(0); } }, box, h("button", { type: "submit" }, "Search"),
      h("span", { class: "muted" }, `${v.total} entries`)),
    table(v.entries, [["Kind", (e) => e.kind], ["Source", (e) => e.source_upn || e.source_name], ["Target", (e) => e.target_upn || e.target_name],
      ["Source SID", (e) => show(e.source_sid)], ["Target SID", (e) => show(e.target_sid)], ["Rule", (e) => show(e.rule)]]),
    h("p", {}, offset > 0 ? h("button", { class: "secondary", onclick: () => go(Math.max(0, offset - 50)) }, "Previous") : "",
      " ", offset + 50 < v.total ? h("button", { class: "secondary", onclick: () => go(offset + 50) }, "Next") : ""));
}

async function logs() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const level = params.get("level") || "";
  const q = new URLSearchParams({ limit: "200" });
  if (level) q.set("level", level);
  const v = await api(`/logs?${q}`);
  const sel = h("select", { id: "log-level", onchange: (e) => { location.hash = `#/logs?level=${e.target.value}`; } },
    ["", "error", "warning", "info"].map((x) => h("option", { value: x, selected: x === level }, x || "every level")));
  page("Message logs", h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, sel),
    table(v, [["When", (l) => when(l.at)], ["Level", (l) => l.level], ["Profile", (l) => show(l.profile)],
      ["Object", (l) => show(l.object_name || l.object_id)], ["Message", (l) => l.message]]));
}

async function psks() {
  const ep = await api("/agent-endpoint").catch(() => null);
  const name = h("input", { id: "psk-name", placeholder: "wave-1" });
  const out = h("p", { id: "psk-created" });
  const list = h("div", { id: "psk-list" });
  const load = async () => {
    const v = await api("/psks");
    list.replaceChildren(table(v, [["Name", (k) => k.name], ["Created", (k) => when(k.created_at)], ["Retired", (k) => when(k.retired_at)]]));
  };
  const create = async (e) => {
    e.preventDefault();
    try {
      const k = await post("/psks", { name: name.value });
      // The key stays on the page until the operator leaves it: it is not shown again.
      out.replaceChildren("Shown this once: ", h("code", {}, k.key));
      name.value = "";
      await load();
    } catch (err) { out.replaceChildren(h("span", { class: "error" }, err.message)); }
  };
  page("Pre-shared keys",
    h("p", {}, "Agents connect to ", h("code", {}, ep ? show(ep.url) : "—"), ", certificate SHA-256 ", h("code", {}, ep ? show(ep.certificate_sha256) : "—")),
    h("form", { class: "inline", onsubmit: create }, name, h("button", { type: "submit", id: "psk-create" }, "Create")), out, list);
  await load();
}

async function simpleList(title, path, cols) {
  page(title, table(await api(path), cols));
}

async function environments() {
  const v = await api("/environments");
  page("Environments", table(v, [["Id", (e) => e.id], ["Name", (e) => e.name], ["Tenant", (e) => e.tenant], ["Type", (e) => e.type],
    ["URL", (e) => e.url], ["Dataverse", (e) => (e.org_id ? "yes" : "no")], ["Users", (e) => e.system_users.length]]));
}

async function moves() {
  const [list, approvals] = await Promise.all([api("/moves"), state.me.tenant ? api("/moves/approvals") : Promise.resolve([])]);
  const msg = h("div", { id: "move-message" });
  const act = (path) => async () => {
    try { await post(path); route(); } catch (e) { msg.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  const upload = (m) => {
    const input = h("input", { type: "file", accept: ".csv" });
    input.addEventListener("change", async () => {
      const f = input.files[0];
      if (!f) return;
      try {
        const r = await api(`/environments/${encodeURIComponent(m.environment)}/usermapping?file_name=${encodeURIComponent(f.name)}`,
          { method: "PUT", body: await f.text(), raw: true, headers: { "Content-Type": "text/csv" } });
        msg.replaceChildren(h("p", { class: "ok" }, `${r.users} users uploaded`));
      } catch (e) {
        msg.replaceChildren(h("ul", { class: "error" }, e.message.split("\n").map((l) => h("li", {}, l))));
      }
    });
    return input;
  };
  const errorsOf = (m) => async () => {
    const csv = await api(`/moves/${m.migration_id}/errors`);
    const rows = String(csv).trim().split(/\r?\n/).slice(1).map((l) => l.split(","));
    msg.replaceChildren(h("h2", {}, "Validation errors"), table(rows, [["Line", (r) => r[0]], ["Source", (r) => r[1]], ["Destination", (r) => r[2]], ["Code", (r) => r[3]]]));
  };
  const actions = (m) => {
    if (m.side === "target" && m.state === "submitted")
      return [h("button", { onclick: act(`/moves/${m.migration_id}/approve`), class: "approve" }, "Approve"), " ",
        h("button", { class: "secondary", onclick: act(`/moves/${m.migration_id}/reject`) }, "Reject")];
    if (m.side !== "source") return [];
    const out = [];
    if (["approved", "mapping-uploaded", "validation-failed", "validated", "validation-expired"].includes(m.state)) out.push(upload(m), " ");
    if (["mapping-uploaded", "validation-failed", "validated", "validation-expired"].includes(m.state))
      out.push(h("button", { class: "secondary", onclick: act(`/moves/${m.migration_id}/prepare`) }, "Validate"), " ");
    if (m.state === "validation-failed") out.push(h("button", { class: "secondary", onclick: errorsOf(m) }, "Show errors"), " ");
    if (m.state === "validated") out.push(h("button", { onclick: act(`/moves/${m.migration_id}/migrate`) }, "Move environment"), " ");
    if (!["completed", "cancelled", "rejected", "expired"].includes(m.state))
      out.push(h("button", { class: "secondary", onclick: act(`/moves/${m.migration_id}/cancel`) }, "Cancel move"));
    return out;
  };
  const cols = [["MigrationId", (m) => m.migration_id], ["Side", (m) => m.side], ["Environment", (m) => m.environment],
    ["From → to", (m) => `${m.source_tenant} → ${m.target_tenant}`], ["Status", (m) => m.status], ["", actions]];
  page("Environment moves",
    state.me.tenant ? h("h2", {}, "Waiting for your approval") : "", state.me.tenant ? table(approvals, cols, "No requests waiting.") : "",
    h("h2", {}, "Requests"), table(list, cols, "No move requests."), msg);
}

async function audit() {
  const v = await api("/audit?limit=200");
  page("Audit", table(v, [["When", (a) => when(a.at)], ["Who", (a) => a.actor], ["Tenant", (a) => show(a.tenant)],
    ["What", (a) => a.action], ["On", (a) => a.subject], ["Detail", (a) => a.detail]]));
}

const ROUTES = {
  "": readiness, directories, profiles, cycles, whatif, translation, logs, psks,
  runbooks: () => simpleList("Runbooks", "/runbooks", [["Name", (r) => r.name], ["Source", (r) => show(r.source_directories)], ["Target", (r) => show(r.target_directories)], ["Prerequisites", (r) => show(r.prerequisites)]]),
  batches: () => simpleList("Batches", "/batches", [["Name", (b) => b.name], ["Runbooks", (b) => show(b.runbooks)], ["Available from", (b) => show(b.available_from)], ["Enforced after", (b) => show(b.enforced_after)]]),
  agents: () => simpleList("Agents", "/agents", [["Host", (a) => a.hostname], ["OS", (a) => a.os], ["State", (a) => a.state], ["Last contact", (a) => when(a.last_contact)]]),
  failed: async () => {
    const v = await api("/reports/failed-communications");
    page("Failed communications", table(v.failures, [["When", (f) => when(f.at)], ["Code", (f) => f.code], ["Reason", (f) => f.reason], ["Address", (f) => show(f.address)]], "No failed communications."),
      h("h2", {}, "Silent agents"), table(v.silent, [["Host", (a) => show(a.hostname)], ["Last contact", (a) => when(a.last_contact)]], "None."));
  },
  environments, moves, audit,
};

async function route() {
  if (!state.token) return signInPage();
  if (!state.me) {
    try { state.me = await api("/me"); } catch { return signInPage(); }
  }
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  const allowed = (state.me.role === "admin" ? ADMIN_PAGES : TENANT_PAGES).map(([p]) => p);
  const target = allowed.includes(path) ? path : allowed[0];
  nav(target);
  main().replaceChildren(h("p", { class: "muted" }, "Loading…"));
  state.render += 1;
  try { await ROUTES[target](); } catch (e) { if (!(e instanceof Stale)) failure(e); }
}

// A page left before its answers came back has nothing to show: its answers are dropped quietly.
window.addEventListener("unhandledrejection", (e) => {
  if (e.reason instanceof Stale) e.preventDefault();
});
window.addEventListener("hashchange", route);
route();

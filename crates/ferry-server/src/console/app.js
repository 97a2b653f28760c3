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
  for (const c of children.flat(Infinity)) {
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
  if (opts.total) return { items: v, total: Number(r.headers.get("X-Total-Count") || 0), next: r.headers.get("X-Next-After") };
  return v;
}

const post = (path, body) => api(path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });
const put = (path, body) => api(path, { method: "PUT", body: JSON.stringify(body) });
const del = (path) => api(path, { method: "DELETE" });
const enc = encodeURIComponent;
const params = () => new URLSearchParams(location.hash.split("?")[1] || "");
// Viewers see every page an admin sees and no control that changes anything.
const canChange = () => state.me && state.me.role !== "viewer";

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// Stacked bars: one bar per item, one segment per series ([key, label, class]).
function stackedBars(id, items, series, label, axes = {}) {
  if (items.length === 0) return h("p", { class: "muted" }, "Nothing to chart yet.");
  const W = 720, H = 200, pad = 40, bw = Math.max(4, Math.min(40, (W - pad) / items.length - 4));
  const max = Math.max(1, ...items.map((it) => series.reduce((a, [k]) => a + (it[k] || 0), 0)));
  const bars = items.map((it, i) => {
    let y = H - pad;
    const x = pad + i * (bw + 4);
    const segs = series.map(([k, name, cls]) => {
      const v = it[k] || 0;
      const hgt = ((H - 2 * pad) * v) / max;
      y -= hgt;
      return svg("rect", { x, y, width: bw, height: hgt, class: cls }, svg("title", {}, `${label(it)}: ${v} ${name}`));
    });
    return svg("g", {}, segs);
  });
  const legend = series.map(([, name, cls], i) => svg("g", {}, svg("rect", { x: pad + i * 130, y: 4, width: 10, height: 10, class: cls }),
    svg("text", { x: pad + i * 130 + 14, y: 13, class: "legend" }, name)));
  return svg("svg", { id, class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": series.map(([, n]) => n).join(" / ") },
    svg("line", { x1: pad, y1: H - pad, x2: W, y2: H - pad, class: "axis" }),
    svg("line", { x1: pad, y1: pad, x2: pad, y2: H - pad, class: "axis" }),
    svg("text", { x: pad - 4, y: pad + 4, class: "legend tick", "text-anchor": "end" }, String(max)),
    svg("text", { x: pad - 4, y: H - pad, class: "legend tick", "text-anchor": "end" }, "0"),
    svg("text", { x: 12, y: H / 2, class: "axis-label y-label", transform: `rotate(-90 12 ${H / 2})`, "text-anchor": "middle" }, axes.y || "count"),
    svg("text", { x: (W + pad) / 2, y: H - 8, class: "axis-label x-label", "text-anchor": "middle" }, axes.x || ""),
    legend, bars);
}

// Horizontal bars for counts by name (devices by state): `word` names each key on the chart; the
// axes are labelled (states down, devices across).
function countBars(id, counts, word = (k) => k, axes = { x: "devices", y: "state" }) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return h("p", { class: "muted" }, "No devices yet.");
  const W = 720, row = 24, top = 20, left = 170, max = Math.max(1, ...entries.map(([, v]) => v));
  const H = top + entries.length * row + 30, span = W - left - 60;
  return svg("svg", { id, class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${axes.x} by ${axes.y}` },
    svg("text", { x: 0, y: 13, class: "axis-label y-label" }, axes.y),
    svg("line", { x1: left, y1: top, x2: left, y2: top + entries.length * row, class: "axis" }),
    svg("line", { x1: left, y1: top + entries.length * row, x2: left + span, y2: top + entries.length * row, class: "axis" }),
    svg("text", { x: left, y: H - 12, class: "legend tick", "text-anchor": "middle" }, "0"),
    svg("text", { x: left + span, y: H - 12, class: "legend tick", "text-anchor": "middle" }, String(max)),
    svg("text", { x: left + span / 2, y: H - 2, class: "axis-label x-label", "text-anchor": "middle" }, axes.x),
    entries.map(([k, v], i) => svg("g", {},
      svg("text", { x: 0, y: top + i * row + 16, class: "legend" }, word(k)),
      svg("rect", { x: left, y: top + i * row + 4, width: Math.max(2, (span * v) / max), height: row - 8, class: "state-" + k.replace(/[^a-z]/g, "") },
        svg("title", {}, `${word(k)}: ${v}`)),
      svg("text", { x: left + 6 + (span * v) / max, y: top + i * row + 16, class: "legend" }, String(v)))));
}

// ---- form helpers ----

function input(id, value, attrs = {}) {
  return h("input", { id, name: id, value: value == null ? "" : value, ...attrs });
}
function area(id, value, attrs = {}) {
  const t = h("textarea", { id, name: id, rows: 3, ...attrs });
  t.value = value == null ? "" : value;
  return t;
}
function checkbox(id, checked) {
  return h("input", { id, name: id, type: "checkbox", checked: !!checked });
}
function choice(id, options, value) {
  return h("select", { id, name: id }, options.map((o) => {
    const [v, t] = Array.isArray(o) ? o : [o, o];
    return h("option", { value: v, selected: v === value }, t);
  }));
}
// A filter's control with its visible name beside it (a list's search box, kind, profile…).
const labelled = (text, control) => h("label", { class: "inline" }, text, " ", control);
function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", {}, label), control, hint ? h("small", { class: "muted" }, hint) : "");
}
const lines = (t) => t.split(/\r?\n/).map((x) => x.trim()).filter(Boolean);
const orNull = (t) => (t.trim() === "" ? null : t.trim());
const numOrNull = (t) => (t.trim() === "" ? null : Number(t));

// An error from the API names the field first (`device_state.join: …`, or serde's ``missing field
// `path` ``): the message is shown next to that field, which is marked; with no such field, in
// the form's message box.
function formError(form, box, e) {
  const msg = String(e.message || e);
  form.querySelectorAll(".invalid").forEach((x) => x.classList.remove("invalid"));
  form.querySelectorAll(".field-error").forEach((x) => x.remove());
  // The field's path: serde's missing field, else a `path: ` of the message (axum puts its own
  // words first; the configuration's checks prefix the entry: `sync_profile[0].`, `users.`).
  const missing = /missing field `([^`]+)`/.exec(msg);
  const paths = missing ? [missing[1]] : msg.split(": ").slice(0, -1).map((x) => x.trim()).filter((x) => /^[A-Za-z_][\w.\[\]-]*$/.test(x));
  const find = (name) => {
    const rule = /^match\[(\d+)\]/.exec(name);
    return (rule && form.querySelectorAll(".rule")[Number(rule[1])])
      || form.querySelector(`[data-field="${CSS.escape(name)}"]`) || form.querySelector(`[name="${CSS.escape(name.replace(/\./g, "-"))}"]`);
  };
  // `bad.schedule`, `sync_profile[0].schedule`: the whole path, then without its leading parts.
  const hit = paths.flatMap((p) => p.split(".").map((_, i, all) => [p, all.slice(i).join(".")])).find(([, x]) => find(x));
  const el = hit && find(hit[1]);
  if (!el) {
    box.replaceChildren(h("p", { class: "error" }, msg));
    return;
  }
  box.replaceChildren(h("p", { class: "error" }, "Not saved: see the marked field."));
  el.classList.add("invalid");
  const at = el.closest("label.field") || el;
  // Beside its field the message needs no path: `bad.schedule: x` reads `x`.
  const at0 = missing ? -1 : msg.indexOf(hit[0] + ": ");
  const note = h("p", { class: "error field-error", role: "alert" }, at0 < 0 ? msg : msg.slice(at0 + hit[0].length + 2));
  if (at === el) el.after(note); else at.append(note);
  if (el.focus) el.focus();
}

// Saves a file fetched with the operator's token (a link cannot carry it).
async function download(path, fileName) {
  const r = await fetch("/api/v1" + path, { headers: { Authorization: "Bearer " + state.token } });
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  const url = URL.createObjectURL(await r.blob());
  const a = h("a", { href: url, download: fileName });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// A cell that is a date keeps it on one line.
const dated = (v) => (typeof v === "string" && DATE_FORMAT.test(v) ? h("span", { class: "date" }, v) : v);

function table(rows, cols, empty = "Nothing yet.") {
  if (!rows || rows.length === 0) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, cols.map(([title]) => h("th", {}, title)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map(([, get]) => h("td", {}, dated(get(r))))))));
}

// The console's one date format: `2026-12-07 05:57:14 UTC`, date, time to the second, time zone.
// Times the server keeps in milliseconds are shown in UTC; a batch's times in the zone they were
// set in (`localTime`). `DATE_FORMAT` is what the Chromium test holds every date on every page to.
const DATE_FORMAT = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S+$/;
const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "—");
// A local date and time as the API sends it (`2030-01-01T18:00`) in the zone `tz`.
function localTime(s, tz) {
  if (!s) return "—";
  const [d, t = "00:00"] = String(s).split("T");
  return `${d} ${(t + ":00:00").slice(0, 8)} ${tz || "UTC"}`;
}
const plural = (n, one) => `${n} ${one}${n === 1 ? "" : "s"}`;
const show = (v) => (v == null ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));

function page(title, ...body) {
  main().replaceChildren(h("h1", {}, title), ...body.flat(Infinity).filter((x) => x != null && x !== false && x !== ""));
}

function failure(e) {
  main().replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error" }, String(e.message || e)));
}

// ---- sign-in ----

function signInPage() {
  document.getElementById("nav").replaceChildren();
  document.getElementById("who").replaceChildren();
  const err = h("p", { class: "error", id: "signin-error" });
  const name = h("input", { id: "name", autocomplete: "username" });
  const password = h("input", { id: "password", type: "password", autocomplete: "current-password" });
  const token = h("input", { id: "token", autocomplete: "off" });
  // Where the install's admin token is, as the server says (the page's <meta>): its file's path.
  const source = (document.querySelector('meta[name="ferry-admin-token"]') || {}).content || "";
  const hint = source === "FERRY_ADMIN_TOKEN"
    ? ["The install's admin token is the server's ", h("code", {}, "FERRY_ADMIN_TOKEN"), " environment variable."]
    : source ? ["The install's admin token is in ", h("code", { id: "admin-token-file" }, source), " on the server (readable by the server's user only)."] : "";
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
  page("Sign in", h("form", { class: "card signin", id: "signin", onsubmit: go },
    field("Operator", name), field("Password", password),
    h("p", { class: "or muted" }, "or"),
    field("API token", token, "an operator's token, or the install's admin token"),
    h("p", {}, h("button", { type: "submit", id: "signin-button" }, "Sign in")), err,
    hint ? h("p", { class: "muted", id: "signin-hint" }, hint) : ""));
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

// The navigation, grouped as the seed's work is: the directory work first, then the devices', the
// environments' and the settings. Each page: [route, title, who may use it].
const NAV = [
  ["", [["", "Overview", "any"]]],
  ["Identity", [["directories", "Directories", "admin"], ["profiles", "Sync profiles", "admin"], ["cycles", "Cycles", "admin"], ["whatif", "What-If", "admin"],
    ["translation", "Translation table", "admin"], ["report", "Object report", "admin"], ["logs", "Message logs", "admin"]]],
  ["Devices", [["psks", "Keys and certificate", "admin"], ["runbooks", "Runbooks", "admin"], ["batches", "Batches", "admin"],
    ["dashboard", "Migration dashboard", "admin"], ["agents", "Agents", "admin"], ["failed", "Failed communications", "admin"]]],
  ["Environments", [["environments", "Environments", "any"], ["moves", "Environment moves", "any"]]],
  ["Settings", [["operators", "Operators", "admin"], ["audit", "Audit", "any"]]],
];
// Pages reached from others (not in the navigation).
const HIDDEN_PAGES = ["agent", "preflight"];

// A tenant's admin uses its environments, their moves and its audit lines; everyone else every page.
const mayUse = (who) => who === "any" || state.me.role !== "tenant-admin";
const navOf = () => NAV.map(([group, pages]) => [group, pages.filter(([, , who]) => mayUse(who))]).filter(([, pages]) => pages.length);
const pagesOf = () => navOf().flatMap(([, pages]) => pages);

function nav(current) {
  document.getElementById("nav").replaceChildren(...navOf().map(([group, pages]) => h("section", { class: "nav-group", "data-group": group || "overview" },
    group ? h("h2", {}, group) : "",
    pages.map(([p, t]) => h("a", { href: "#/" + p, class: p === current ? "active" : false }, t)))));
  const who = state.me.role === "viewer" ? "viewer, read-only" : state.me.tenant ? "admin of " + state.me.tenant : "ferry admin";
  document.getElementById("who").replaceChildren(h("span", { id: "who-name" }, state.me.name), h("span", { class: "muted" }, ` (${who})`), " ",
    h("button", { class: "secondary", id: "signout", onclick: signOut }, "Sign out"));
}

// The seed's "Checklist" and "Agent Preparation", ticked from ferry's state.
// `draw` puts the checklist on the page (the overview collects it instead).
// `pre`: answers the caller asked for too (the overview: `profiles`, `batches` with their
// devices by state, `errors` with the latest five), so that a page asks each once.
async function readiness(draw = page, pre = {}) {
  const [dirs, profiles, tr, psks, ep, runbooks, batches, agents, warnings, errors] = await Promise.all([
    api("/directories"), pre.profiles || api("/profiles"), api("/translation?limit=1"), api("/psks"), api("/agent-endpoint").catch(() => null),
    api("/runbooks"), pre.batches || api("/batches?computers=false"), api("/agents?limit=1", { total: true }), api("/logs?level=warning&limit=1", { total: true }),
    pre.errors || api("/logs?level=error&limit=1", { total: true }),
  ]);
  const graph = dirs.filter((d) => d.kind === "graph");
  const tokens = (await Promise.all(graph.map((d) => api(`/directories/${enc(d.name)}/enrolment-tokens`).catch(() => []))))
    .flat().filter((t) => !t.revoked_at && t.expires_at > Date.now());
  const mark = (ok) => (ok === null ? h("span", { class: "muted" }, "– ") : h("span", { class: ok ? "ok" : "bad" }, ok ? "✓ " : "✗ "));
  const line = (ok, text, href, note) => h("li", {}, mark(ok), href ? h("a", { href: "#/" + href }, text) : text, note ? h("span", { class: "muted" }, " — " + note) : "");
  const users = profiles.filter((p) => p.object_types.includes("user"));
  const ended = profiles.filter((p) => p.last_cycle && p.last_cycle.status === "succeeded" && p.last_cycle.phase === "done");
  const exported = ended.some((p) => /^(exported|not needed)/.test(p.last_cycle.export || ""));
  const planned = profiles.filter((p) => p.last_cycle);
  const keys = psks.filter((k) => !k.retired_at);
  // The tenant pre-flight of every Entra ID directory that is a target (of a sync profile or a
  // batch): ✓ when all pass, ✗ with the first blocking finding, – when there is none.
  const targets = new Set([...profiles.map((p) => p.target), ...batches.map((b) => b.target_directory)]);
  const entra = graph.filter((d) => targets.has(d.name));
  const checks = await Promise.all(entra.map((d) => api(`/directories/${enc(d.name)}/preflight`)
    .catch((e) => ({ directory: d.name, ok: false, findings: [{ severity: "blocking", message: String(e.message || e) }] }))));
  const failed = checks.find((r) => !r.ok);
  const firstBad = failed && failed.findings.find((f) => f.severity === "blocking");
  const tenantOk = entra.length === 0 ? null : !failed;
  const tenantNote = entra.length === 0 ? "no Entra ID target: not needed"
    : failed ? `${failed.directory}: ${firstBad ? firstBad.message : "not ok"}` : `${entra.map((d) => d.name).join(", ")}: pre-flight passed`;
  const tenantHref = entra.length === 0 ? null : `preflight?directory=${enc((failed || checks[0]).directory)}`;
  draw("Readiness",
    h("h2", {}, "Checklist"),
    h("ul", { class: "check", id: "readiness" },
      line(dirs.length >= 2, "Create and configure Directories", "directories", `${dirs.length} configured`),
      line(graph.length === 0 ? null : tokens.length > 0, "Create the Entra join Bulk Enrolment Token", "directories",
        graph.length === 0 ? "no Entra ID directory: not needed" : `${tokens.length} valid`),
      line(users.length > 0, "Create and configure Sync Profile for Users", "profiles", `${users.length} for users`),
      line(profiles.some((p) => p.schedule && p.enabled), "Enable the schedule", "profiles"),
      line(null, "Obtain and apply a software licence", null, "ferry is open source: no licence needed"),
      line(exported, "Run an end-to-end Import/Sync/Export", "cycles"),
      // Errors fail the line; warnings (unmatched users, say) are for the engineer to review.
      line(ended.length > 0 && errors.total === 0, "Check Message Logs for Warnings and Errors", "logs?level=warning",
        `${errors.total} errors, ${warnings.total - errors.total} warnings to review`),
      line(planned.length > 0 && !profiles.some((p) => p.awaiting_approval), "Confirm the What If report", "whatif",
        profiles.filter((p) => p.awaiting_approval).map((p) => p.name + " awaits approval").join(", ")),
      line(tr.total > 0, "Spot check the Translation Table", "translation", `${tr.total} entries`),
      line(tr.total > 0, "Spot check the Single Object Report", "report")),
    h("h2", {}, "Agent Preparation"),
    h("ul", { class: "check", id: "agent-readiness" },
      line(keys.length > 0 && !!(ep && ep.certificate_sha256), "Create a pre shared key and Certificate", "psks",
        `${keys.length} active key(s)` + (ep && ep.certificate_sha256 ? `, certificate SHA-256 ${ep.certificate_sha256.slice(0, 16)}…` : ", no certificate")),
      line(runbooks.length > 0 && batches.length > 0, "Create Runbooks and Batches – including prerequisite Runbooks", "runbooks",
        `${runbooks.length} runbook(s), ${batches.length} batch(es)`),
      line(!!(ep && ep.url), "Confirm a working ferry server endpoint URL", "psks", ep && ep.url ? ep.url : "the agent endpoint is not served"),
      line(tenantOk, "Confirm Microsoft 365 tenant Entra join and Intune Enrol settings", tenantHref, tenantNote),
      line(agents.total > 0, "Confirm Agent Installation with prerequisites", "agents", `${agents.total} agent(s)`),
      line(agents.total > 0, "Confirm Agent Registration and profile harvests", "agents"),
      line(null, "Test with non-production users and computers", "batches", "a first batch of test computers")));
}

// ---- overview ----

// A device's state in the seed's words. A device of a batch that has not started reads by the
// batch's times: "scheduled" before Available From, "available" from then, "enforced" from
// Enforced After (it starts within 15 minutes when nobody is signed in).
const STATE_WORDS = {
  "no agent yet": "no agent yet", "pending-approval": "awaiting approval", replaced: "replaced", offered: "available",
  running: "migrating", succeeded: "migrated", verified: "migrated and verified", "verification-failed": "migrated, verification failed",
  failed: "failed", "rolled-back": "rolled back", "recovery-required": "needs recovery", unreachable: "unreachable",
};
function deviceState(st, times = {}, now = Date.now()) {
  if (STATE_WORDS[st]) return STATE_WORDS[st];
  // enrolled, idle (or assigned, waiting): not started yet.
  if (times.enforced_after && now >= times.enforced_after) return "enforced";
  if (times.available_from && now >= times.available_from) return "available";
  if (times.enforced_after) return "scheduled";
  return st === "enrolled" ? "registered" : st;
}

// The landing page: how far the seed's checklist is, each profile's last cycle, each batch's
// devices by state and the next Enforced After, the environment moves waiting for this operator,
// the latest errors; then the checklist itself (`readiness`).
async function overview() {
  if (state.me.role === "tenant-admin") return tenantOverview();
  // Every batch's devices by state in one request (one pass over the agents, not one per batch).
  let checklist = [];
  const pre = { profiles: api("/profiles"), batches: api("/batches?computers=false&states=true"), errors: api("/logs?level=error&limit=5", { total: true }) };
  const [, profiles, batches, moves, errors] = await Promise.all([
    readiness((title, ...body) => { checklist = body.flat(Infinity).filter((x) => x instanceof Node); }, pre), pre.profiles, pre.batches, api("/moves"), pre.errors,
  ]);
  const times = (b) => ({ available_from: b.available_at, enforced_after: b.enforced_at });
  // The checklist `readiness` made: its lines, ticked or not.
  const lines = checklist.flatMap((el) => [...(el.querySelectorAll ? el.querySelectorAll("li") : [])]);
  const done = lines.filter((li) => li.querySelector(".ok")).length;
  const open = lines.filter((li) => li.querySelector(".bad")).length;
  const now = Date.now();
  const next = batches.filter((b) => b.enforced_at && b.enforced_at > now).sort((a, b) => a.enforced_at - b.enforced_at)[0];
  const card = (id, title, ...body) => h("section", { class: "card tile", id }, h("h2", {}, title), ...body);
  const stateLine = (b) => {
    const words = {};
    for (const [k, v] of Object.entries(b.states || {})) { const w = deviceState(k, times(b), now); words[w] = (words[w] || 0) + v; }
    return Object.entries(words).sort((a, b) => b[1] - a[1]).map(([w, v]) => `${v} ${w}`).join(", ") || "no computers";
  };
  const waiting = moves.filter((m) => !["completed", "cancelled", "rejected", "expired"].includes(m.state));
  page("Overview",
    h("div", { class: "tiles" },
      card("overview-readiness", "Readiness",
        h("p", { class: "figure" }, `${done} of ${done + open}`), h("progress", { max: done + open, value: done }, `${done} of ${done + open}`),
        h("p", { class: "muted" }, `steps of the migration checklist done; ${open} to do, ${lines.length - done - open} to confirm by hand or not needed. `, h("a", { href: "#/?at=checklist", onclick: (e) => { e.preventDefault(); document.getElementById("checklist").scrollIntoView(); } }, "Checklist"))),
      card("overview-next", "Next Enforced After",
        next ? [h("p", { class: "figure date" }, localTime(next.enforced_after, next.time_zone)),
          h("p", { class: "muted" }, "batch ", h("a", { href: `#/dashboard?batch=${enc(next.name)}` }, next.name), `: ${plural(next.computer_count, "computer")}`)]
          : h("p", { class: "muted" }, batches.length ? "No batch is enforced after now." : "No batches yet.")),
      card("overview-errors-count", "Errors",
        h("p", { class: errors.total ? "figure bad" : "figure ok" }, errors.total ? String(errors.total) : "none"),
        h("p", { class: "muted" }, "in the message logs. ", h("a", { href: "#/logs?level=error" }, "Message logs")))),
    h("h2", {}, "Sync profiles: last cycle"),
    h("div", { id: "overview-cycles" }, table(profiles, [["Profile", (p) => p.name], ["Source → target", (p) => `${p.source} → ${p.target}`],
      ["Last cycle", (p) => (p.last_cycle ? h("span", { class: p.last_cycle.status === "failed" ? "bad" : "" }, `${p.last_cycle.status}, ${p.last_cycle.phase}`) : "none yet")],
      ["Finished", (p) => when(p.last_cycle && (p.last_cycle.finished_at || p.last_cycle.started_at))],
      ["Matched / unmatched / ambiguous", (p) => (p.last_cycle && p.last_cycle.counts ? `${p.last_cycle.counts.matched} / ${p.last_cycle.counts.unmatched} / ${p.last_cycle.counts.ambiguous}` : "—")],
      ["What-If", (p) => (p.awaiting_approval ? h("a", { href: `#/whatif?profile=${enc(p.name)}` }, "awaits approval") : "nothing to approve")]], "No sync profiles yet.")),
    h("h2", {}, "Batches: devices by state"),
    h("div", { id: "overview-batches" }, table(batches, [["Batch", (b) => h("a", { href: `#/dashboard?batch=${enc(b.name)}` }, b.name)], ["Computers", (b) => String(b.computer_count)],
      ["Devices by state", stateLine],
      ["Available From", (b) => localTime(b.available_from, b.time_zone)],
      ["Enforced After", (b) => localTime(b.enforced_after, b.time_zone)],
      ["Halted", (b) => (b.halted ? h("span", { class: "bad" }, "yes: resume it on its dashboard") : "no")]], "No batches yet.")),
    h("h2", {}, "Environment moves"),
    h("div", { id: "overview-moves" }, waiting.length === 0 ? h("p", { class: "muted" }, "No environment move is under way.")
      : [h("p", { class: "muted" }, "A move is acted on by its tenants' admins; these wait for one:"),
        table(waiting, [["Environment", (m) => m.environment], ["From → to", (m) => `${m.source_tenant} → ${m.target_tenant}`], ["Status", (m) => m.status],
          ["Waiting for", (m) => moveWaitsFor(m)], ["Submitted", (m) => when(m.submitted_at)]])]),
    h("h2", {}, "Recent errors"),
    h("div", { id: "overview-errors" }, table(errors.items, [["When", (l) => when(l.at)], ["Profile", (l) => show(l.profile)], ["Message", (l) => l.message]], "No errors in the message logs.")),
    h("h2", { id: "checklist" }, "Migration checklist"),
    h("div", { class: "columns" }, h("div", {}, checklist.slice(0, 2)), h("div", {}, checklist.slice(2))));
}

// Who acts next on an environment move (the seed's steps).
function moveWaitsFor(m) {
  if (m.state === "submitted") return `${m.target_tenant}'s admin: approve or reject`;
  if (["approved", "validation-failed", "validation-expired"].includes(m.state)) return `${m.source_tenant}'s admin: upload usermapping.csv and validate`;
  if (m.state === "mapping-uploaded") return `${m.source_tenant}'s admin: validate`;
  if (m.state === "validated") return `${m.source_tenant}'s admin: move the environment`;
  return "the server";
}

// A tenant's admin: the moves waiting for it.
async function tenantOverview() {
  const [moves, approvals] = await Promise.all([api("/moves"), api("/moves/approvals")]);
  const mine = [...approvals, ...moves.filter((m) => m.side === "source" && ["approved", "mapping-uploaded", "validation-failed", "validated", "validation-expired"].includes(m.state))];
  page("Overview", h("h2", {}, "Environment moves waiting for you"),
    h("div", { id: "overview-moves" }, table(mine, [["Environment", (m) => m.environment], ["From → to", (m) => `${m.source_tenant} → ${m.target_tenant}`],
      ["Status", (m) => m.status], ["Next step", (m) => moveWaitsFor(m)], ["Submitted", (m) => when(m.submitted_at)]], "Nothing waits for you.")),
    h("p", {}, h("a", { href: "#/moves" }, "All environment moves")));
}

// Operators: who may sign in, with which role; a ferry admin adds one (its token shown once).
async function operators() {
  const v = await api("/operators");
  const out = h("div", { id: "operator-created" });
  const role = choice("op-role", [["admin", "ferry admin"], ["viewer", "viewer (read-only)"], ["tenant", "admin of one tenant"]], "viewer");
  const name = input("op-name", "", { "data-field": "name", autocomplete: "off" });
  const tenant = input("op-tenant", "", { "data-field": "tenant" });
  const password = input("op-password", "", { type: "password", autocomplete: "new-password", "data-field": "password" });
  const box = h("div", { id: "operator-form-message" });
  const form = h("form", { class: "card wide", id: "operator-form" }, h("h2", {}, "Add an operator"),
    h("div", { class: "grid" }, field("Name", name), field("Role", role), field("Tenant", tenant, "for an admin of one tenant"),
      field("Password", password, "at least 12 characters; empty: sign in with the token only")),
    h("p", {}, h("button", { type: "submit", id: "operator-save" }, "Add operator")), box);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), viewer: role.value === "viewer" };
    if (role.value === "tenant") body.tenant = tenant.value.trim();
    if (password.value) body.password = password.value;
    try {
      if (!body.name) throw new Error("name: give the operator a name");
      const c = await post("/operators", body);
      await route();
      document.getElementById("operator-created").replaceChildren(h("p", {}, `${c.name}'s token, shown this once: `, h("code", {}, c.token)));
    } catch (err) { formError(form, box, err); }
  });
  const roleWord = (r) => (r === "admin" ? "ferry admin" : r === "viewer" ? "viewer (read-only)" : r.replace(/^tenant-admin:?/, "admin of "));
  // The install's `admin` token is replaced in its file, not here; every other operator may be
  // given a new token (and password, if it had one) or removed.
  const shown = (c) => document.getElementById("operator-created").replaceChildren(h("p", {}, `${c.name}'s new token, shown this once: `, h("code", {}, c.token),
    c.password ? [" and password: ", h("code", {}, c.password)] : "", ". The old ones no longer work."));
  const failed = (err) => out.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
  const rotate = (o) => async () => {
    if (!confirm(`Give ${o.name} a new token${o.has_password ? " and password" : ""}? The old ones stop working and ${o.name} is signed out.`)) return;
    try { const c = await post(`/operators/${enc(o.name)}/rotate`, {}); await route(); shown(c); } catch (err) { failed(err); }
  };
  const remove = (o) => async () => {
    if (!confirm(`Remove operator ${o.name}? Its token, password and sessions stop working.`)) return;
    try { await del(`/operators/${enc(o.name)}`); await route(); } catch (err) { failed(err); }
  };
  const actions = (o) => (o.name === "admin" ? h("span", { class: "muted" }, "the install's token") : h("span", { class: "inline" },
    h("button", { class: "secondary", onclick: rotate(o), "data-operator": o.name, "data-action": "rotate" }, "Rotate"), " ",
    h("button", { class: "secondary", onclick: remove(o), "data-operator": o.name, "data-action": "remove" }, "Remove")));
  const cols = [["Name", (o) => o.name], ["Role", (o) => roleWord(o.role)], ["Added", (o) => when(o.created_at)],
    ["Password", (o) => (o.has_password ? "set" : "token only")], ["Signed in", (o) => (o.has_session ? "yes" : "no")]];
  page("Operators", table(v, canChange() ? [...cols, ["", actions]] : cols, "No operators."),
    out, canChange() ? form : "");
}

// The tenant pre-flight of a directory (`?directory=`) or a batch (`?batch=`): each finding, its
// devices and users, and the fix; "Check again" reads Microsoft Graph again.
async function preflight(refresh = false) {
  const dir = params().get("directory");
  const batch = params().get("batch");
  const path = batch ? `/batches/${enc(batch)}/preflight` : `/directories/${enc(dir || "")}/preflight`;
  const r = await api(path + (refresh ? "?refresh=true" : ""));
  const marks = { ok: ["ok", "✓"], warning: ["muted", "!"], blocking: ["bad", "✗"] };
  page(`Tenant pre-flight: ${batch ? "batch " + batch : dir}`,
    h("p", { id: "preflight-summary", class: r.ok ? "ok" : "bad" },
      `${r.ok ? "✓ passes" : "✗ devices are held back"} — target ${r.directory}, checked ${when(r.checked_at)} `,
      h("button", { id: "preflight-refresh", onclick: () => preflight(true).catch(failure) }, "Check again")),
    h("div", { id: "preflight-findings" }, table(r.findings, [
      ["", (f) => h("span", { class: (marks[f.severity] || marks.ok)[0] }, (marks[f.severity] || marks.ok)[1])],
      ["Check", (f) => f.check],
      ["Finding", (f) => f.message],
      ["Devices", (f) => (f.all_devices ? "all" : f.devices.join(", "))],
      ["Fix in the tenant", (f) => f.fix || ""],
    ], "No check applies: the runbooks neither join Entra ID nor enrol in Intune.")));
}

// ---- directories ----

const KINDS = [["file", "File (JSON or CSV snapshot)"], ["ldap", "LDAP / Active Directory"], ["graph", "Microsoft Entra ID (Graph)"]];
const OBJECT_TYPES = ["user", "group", "device"];

function typesPicker(prefix, chosen) {
  return h("span", { class: "types", "data-field": "object_types" }, OBJECT_TYPES.map((t) =>
    h("label", { class: "inline" }, checkbox(`${prefix}-${t}`, chosen.includes(t)), " " + t)));
}
const typesOf = (form, prefix) => OBJECT_TYPES.filter((t) => form.querySelector(`#${prefix}-${t}`).checked);

function directoryForm(existing, onSaved) {
  const s = existing ? existing.settings : { kind: "file", object_types: ["user", "group", "device"] };
  const box = h("div", { id: "dir-form-message" });
  const kind = choice("dir-kind", KINDS, s.kind);
  const name = input("dir-name", existing ? existing.name : "", { placeholder: "contoso-ad", required: true, "data-field": "name" });
  if (existing) name.setAttribute("readonly", "");
  const fields = h("div", { class: "grid" });
  const secretHint = existing && existing.has_credential ? "set; leave empty to keep it" : "write-only: never shown again";
  const build = () => {
    const k = kind.value;
    const v = (x) => (s.kind === k && s[x] != null ? s[x] : "");
    const common = [field("Object types", typesPicker("dir-types", s.object_types || ["user", "group", "device"]))];
    if (k === "file")
      fields.replaceChildren(field("Snapshot path", input("dir-path", v("path"), { "data-field": "path", placeholder: "/srv/ferry/contoso.json" }), "on the server; relative to ferry.toml's folder"),
        field("Format", choice("dir-format", [["", "from the extension"], "json", "csv"], v("format"))), ...common);
    if (k === "ldap")
      fields.replaceChildren(field("URL", input("dir-url", v("url"), { "data-field": "url", placeholder: "ldaps://dc1.contoso.com:636" })),
        field("Base DN", input("dir-base", v("base_dn"), { "data-field": "base_dn", placeholder: "dc=contoso,dc=com" })),
        field("Bind DN", input("dir-bind", v("bind_dn"), { "data-field": "bind_dn" }), "empty: anonymous"),
        field("Bind password", input("dir-secret", "", { type: "password", autocomplete: "new-password", placeholder: secretHint, "data-field": "bind_password" })),
        field("Flavor", choice("dir-flavor", ["auto", "ad", "openldap"], v("flavor") || "auto")),
        field("User filter", input("dir-user-filter", v("user_filter"))), field("Group filter", input("dir-group-filter", v("group_filter"))),
        field("Full import every", input("dir-full", v("full_import_every"), { placeholder: "24h", "data-field": "full_import_every" })), ...common);
    if (k === "graph")
      fields.replaceChildren(field("Tenant id", input("dir-tenant", v("tenant_id"), { "data-field": "tenant_id", placeholder: "fabrikam.onmicrosoft.com" })),
        field("Client id", input("dir-client", v("client_id"), { "data-field": "client_id" })),
        field("Client secret", input("dir-secret", "", { type: "password", autocomplete: "new-password", placeholder: secretHint, "data-field": "client_secret" })),
        field("Cloud", choice("dir-cloud", ["public", "gcc", "gcc-high", "dod", "china"], v("cloud") || "public")),
        field("Full import every", input("dir-full", v("full_import_every"), { placeholder: "24h", "data-field": "full_import_every" })), ...common);
  };
  kind.addEventListener("change", build);
  build();
  const form = h("form", { class: "card wide", id: "dir-form" });
  const val = (id) => { const el = form.querySelector("#" + id); return el ? el.value.trim() : ""; };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const k = kind.value;
    // Keys the form does not show are kept as they were.
    const body = s.kind === k ? { ...s } : {};
    Object.assign(body, { name: name.value.trim(), kind: k, object_types: typesOf(form, "dir-types") });
    const set = (key, v) => { if (v === "" || v == null) delete body[key]; else body[key] = v; };
    if (k === "file") { set("path", val("dir-path")); set("format", val("dir-format")); }
    if (k === "ldap") {
      set("url", val("dir-url")); set("base_dn", val("dir-base")); set("bind_dn", val("dir-bind")); set("flavor", val("dir-flavor"));
      set("user_filter", val("dir-user-filter")); set("group_filter", val("dir-group-filter")); set("full_import_every", val("dir-full"));
      set("bind_password", form.querySelector("#dir-secret").value);
    }
    if (k === "graph") {
      set("tenant_id", val("dir-tenant")); set("client_id", val("dir-client")); set("cloud", val("dir-cloud")); set("full_import_every", val("dir-full"));
      set("client_secret", form.querySelector("#dir-secret").value);
    }
    try {
      if (!body.name) throw new Error("name: give the directory a name");
      await put(`/directories/${enc(body.name)}`, body);
      onSaved();
    } catch (err) { formError(form, box, err); }
  });
  form.append(h("h2", {}, existing ? `Edit ${existing.name}` : "Add a directory"), h("div", { class: "grid" }, field("Name", name), field("Kind", kind)), fields,
    h("p", {}, h("button", { type: "submit", id: "dir-save" }, existing ? "Save" : "Add directory")), box);
  return form;
}

async function directories() {
  const v = await api("/directories");
  const out = h("div", { id: "dir-result" });
  const formSlot = h("div", {});
  const test = (d) => async () => {
    out.replaceChildren(h("p", { class: "muted" }, `Testing ${d.name}…`));
    try {
      const r = await post(`/directories/${enc(d.name)}/test`);
      out.replaceChildren(h("h2", {}, `${d.name}: ${r.ok ? "connection works" : "connection failed"}`),
        h("ol", { class: r.ok ? "" : "error" }, r.checks.map((c) => h("li", {}, c))),
        r.counts.length ? h("p", {}, r.counts.map((c) => `${c.count} ${c.kind}(s)`).join(", ")) : "");
    } catch (e) { out.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  const remove = (d) => async () => {
    if (!confirm(`Remove directory ${d.name}?`)) return;
    try { await del(`/directories/${enc(d.name)}`); route(); } catch (e) { out.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  const edit = (d) => () => formSlot.replaceChildren(directoryForm(d, route));
  const actions = (d) => canChange() ? [h("button", { class: "secondary", onclick: test(d) }, "Test connection"), " ",
    d.origin === "console" ? [h("button", { class: "secondary", onclick: edit(d) }, "Edit"), " ", h("button", { class: "secondary", onclick: remove(d) }, "Remove")]
      : h("span", { class: "muted" }, "in ferry.toml")] : "";
  page("Directories", table(v, [["Name", (d) => d.name], ["Kind", (d) => d.kind], ["Where", (d) => d.location], ["Objects", (d) => d.object_types.join(", ")],
    ["Credential", (d) => (d.kind === "file" ? "—" : d.has_credential ? "set" : "none")],
    ["Last import", (d) => (d.state ? `${when(d.state.last_import)}, ${d.state.objects} objects` : "never")], ["", actions]], "No directories yet: add the source and the target."),
    out, formSlot);
  if (canChange()) formSlot.replaceChildren(directoryForm(null, route));
}

// ---- sync profiles ----

// The transforms a match rule may apply to the source value, as the configuration names them
// (`ferry-core`'s `Transform`): [key, label, the values it takes].
const TRANSFORMS = [["lowercase", "lower case", []], ["uppercase", "upper case", []], ["trim", "trim spaces", []],
  ["replace_suffix", "replace the suffix", ["from", "to"]], ["replace_prefix", "replace the prefix", ["from", "to"]],
  ["regex_replace", "replace a pattern", ["pattern", "replacement"]], ["prefix", "add a prefix", ["prefix"]], ["suffix", "add a suffix", ["suffix"]]];

// One transform of a rule: chosen from the list, with its values.
function transformRow(t) {
  const [key, vals] = typeof t === "string" ? [t, []] : t ? [Object.keys(t)[0], [].concat(Object.values(t)[0])] : ["replace_suffix", []];
  const kind = choice("", TRANSFORMS.map(([k, label]) => [k, label]), key);
  kind.classList.add("t-kind");
  kind.setAttribute("aria-label", "transform");
  const args = h("span", { class: "t-args" });
  const draw = (values) => {
    const spec = (TRANSFORMS.find(([k]) => k === kind.value) || [, , []])[2];
    args.replaceChildren(...spec.map((label, i) => h("label", { class: "inline" }, label + " ", input("", values[i] || "", { class: "t-arg", "aria-label": label }))));
  };
  kind.addEventListener("change", () => draw([]));
  draw(vals);
  const row = h("span", { class: "transform" }, kind, args, h("button", { type: "button", class: "secondary small", onclick: () => row.remove(), title: "remove this transform" }, "×"));
  return row;
}
const transformValue = (row) => {
  const k = row.querySelector(".t-kind").value;
  const vals = [...row.querySelectorAll(".t-arg")].map((x) => x.value);
  return vals.length === 0 ? k : { [k]: vals.length === 1 ? vals[0] : vals };
};

function ruleRow(r = {}) {
  const transforms = h("span", { class: "transforms" }, (r.transforms || []).map(transformRow));
  const row = h("div", { class: "rule" },
    h("label", { class: "inline" }, "Source attribute ", input("", r.source_attribute || "", { class: "rule-source", placeholder: "mail, upn, employeeId…" })),
    h("label", { class: "inline" }, "→ target attribute ", input("", r.target_attribute || "", { class: "rule-target", placeholder: "mail" })),
    h("label", { class: "inline" }, "Object types ", input("", (r.object_types || []).join(","), { class: "rule-types", placeholder: "empty: all", size: 12 })),
    h("label", { class: "inline" }, h("input", { type: "checkbox", class: "rule-case", checked: !!r.case_sensitive }), " case-sensitive"),
    h("button", { type: "button", class: "secondary", onclick: () => row.remove() }, "Remove rule"),
    h("div", { class: "rule-transforms" }, h("span", { class: "muted" }, "Transforms of the source value, in order: "), transforms,
      h("button", { type: "button", class: "secondary small add-transform", onclick: () => transforms.append(transformRow()) }, "Add a transform")));
  return row;
}

const PROFILE_MODES = [["match-only", "match only"], ["create", "create unmatched"], ["update", "create and update"]];
const modeWord = (v) => (PROFILE_MODES.find(([k]) => k === v) || [v, v])[1];

function profileForm(existing, dirs, onSaved) {
  const s = existing ? existing.settings : { mode: "match-only", object_types: ["user", "group"], enabled: true, match: [] };
  const box = h("div", { id: "profile-form-message" });
  const names = dirs.map((d) => d.name);
  const name = input("profile-name", existing ? existing.name : "", { "data-field": "name", placeholder: "users" });
  if (existing) name.setAttribute("readonly", "");
  const rules = h("div", { id: "profile-rules", "data-field": "match" }, (s.match || []).map(ruleRow));
  const form = h("form", { class: "card wide", id: "profile-form" },
    h("h2", {}, existing ? `Edit ${existing.name}` : "Add a sync profile"),
    h("div", { class: "grid" }, field("Name", name),
      field("Source", choice("profile-source", names, s.source || names[0])), field("Target", choice("profile-target", names, s.target || names[1] || names[0])),
      field("Mode", choice("profile-mode", PROFILE_MODES, s.mode)),
      field("Object types", typesPicker("profile-types", s.object_types || [])),
      field("Schedule", input("profile-schedule", s.schedule || "", { placeholder: "15m (empty: on demand)", "data-field": "schedule" })),
      field("Schedule enabled", checkbox("profile-enabled", s.enabled !== false))),
    h("h3", {}, "Match rules, in order"), h("p", { class: "muted" }, "The first rule that finds exactly one target decides; with no rules ferry matches users by UPN, then mail, and groups and devices by name."),
    rules, h("p", {}, h("button", { type: "button", class: "secondary", id: "profile-add-rule", onclick: () => rules.append(ruleRow()) }, "Add a rule")),
    h("p", {}, h("button", { type: "submit", id: "profile-save" }, existing ? "Save" : "Add profile")), box);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { ...s, name: name.value.trim(), source: form.querySelector("#profile-source").value, target: form.querySelector("#profile-target").value,
      mode: form.querySelector("#profile-mode").value, object_types: typesOf(form, "profile-types"), enabled: form.querySelector("#profile-enabled").checked };
    const sched = form.querySelector("#profile-schedule").value.trim();
    if (sched) body.schedule = sched; else delete body.schedule;
    try {
      if (!body.name) throw new Error("name: give the profile a name");
      body.match = [...rules.querySelectorAll(".rule")].map((row, i) => {
        const r = { source_attribute: row.querySelector(".rule-source").value.trim(), target_attribute: row.querySelector(".rule-target").value.trim(),
          case_sensitive: row.querySelector(".rule-case").checked };
        const types = row.querySelector(".rule-types").value.split(",").map((x) => x.trim()).filter(Boolean);
        if (types.length) r.object_types = types;
        const t = [...row.querySelectorAll(".transform")].map(transformValue);
        if (t.length) r.transforms = t;
        return r;
      });
      await put(`/profiles/${enc(body.name)}`, body);
      onSaved();
    } catch (err) { formError(form, box, err); }
  });
  return form;
}

async function profiles() {
  const [v, dirs] = await Promise.all([api("/profiles"), api("/directories")]);
  const msg = h("div", { id: "profile-message" });
  const formSlot = h("div", {});
  const run = (p) => async (e) => {
    e.target.disabled = true;
    msg.replaceChildren(h("p", { class: "muted" }, `Running ${p.name}…`));
    try { await post(`/profiles/${enc(p.name)}/run?wait=true`); route(); } catch (err) { msg.replaceChildren(h("p", { class: "error" }, err.message)); e.target.disabled = false; }
  };
  const remove = (p) => async () => {
    if (!confirm(`Remove sync profile ${p.name}?`)) return;
    try { await del(`/profiles/${enc(p.name)}`); route(); } catch (e) { msg.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  const actions = (p) => canChange() ? [h("button", { onclick: run(p), class: "run" }, "Run now"), " ",
    p.origin === "console" ? [h("button", { class: "secondary", onclick: () => formSlot.replaceChildren(profileForm(p, dirs, route)) }, "Edit"), " ",
      h("button", { class: "secondary", onclick: remove(p) }, "Remove")] : h("span", { class: "muted" }, "in ferry.toml")] : "";
  page("Sync profiles", table(v, [["Profile", (p) => p.name], ["Source → target", (p) => `${p.source} → ${p.target}`], ["Mode", (p) => modeWord(p.mode)],
    ["Schedule", (p) => (p.schedule ? `every ${p.schedule}${p.enabled ? "" : " (paused)"}` : "on demand")],
    ["Match rules", (p) => h("ol", { class: "rules" }, p.rules.map((r) => h("li", {}, r)))],
    ["Last cycle", (p) => (p.last_cycle ? h("a", { href: "#/cycles" }, `${p.last_cycle.status} ${when(p.last_cycle.finished_at)}`) : "none")],
    ["What-If", (p) => (p.awaiting_approval ? h("a", { href: `#/whatif?profile=${enc(p.name)}` }, "awaits approval") : "—")], ["", actions]], "No sync profiles yet."),
    msg, formSlot);
  if (canChange()) formSlot.replaceChildren(dirs.length ? profileForm(null, dirs, route) : h("p", { class: "muted" }, "Add directories first."));
}

// ---- cycles, What-If, translation, report, logs ----

async function cycles() {
  const v = await api("/cycles?limit=100");
  const n = (c, k) => (c.counts ? c.counts[k] : "—");
  const chartable = v.filter((c) => c.counts).slice(0, 40).reverse().map((c) => ({ id: c.id, profile: c.profile, ...c.counts }));
  page("Cycles",
    h("h2", {}, "Matched and unmatched over cycles"),
    stackedBars("chart-cycles", chartable, [["matched", "matched", "seg-ok"], ["unmatched", "unmatched", "seg-bad"], ["ambiguous", "ambiguous", "seg-warn"]],
      (c) => `cycle ${c.id} (${c.profile})`, { x: "sync cycles, oldest first", y: "objects" }),
    table(v, [["Cycle", (c) => c.id], ["Profile", (c) => c.profile], ["Trigger", (c) => c.trigger], ["Status", (c) => (c.progress ? `${c.status}: ${c.progress}` : c.status)],
      ["Started", (c) => when(c.started_at)], ["Source", (c) => n(c, "source_objects")], ["Target", (c) => n(c, "target_objects")],
      ["Matched", (c) => n(c, "matched")], ["Unmatched", (c) => n(c, "unmatched")], ["Ambiguous", (c) => n(c, "ambiguous")], ["Export", (c) => show(c.export)],
      ["", (c) => h("a", { href: `#/logs?cycle=${c.id}` }, "logs")]]));
}

async function whatif() {
  const p = params();
  const profiles = await api("/profiles");
  if (profiles.length === 0) return page("What-If", h("p", { class: "muted" }, "No sync profiles."));
  const name = p.get("profile") || profiles[0].name;
  const status = p.get("status") || "";
  const after = p.get("after") || "";
  const [kind, term] = [p.get("kind") || "", p.get("q") || ""];
  const q = new URLSearchParams({ limit: "100", writes_limit: status === "writes" ? "200" : "0" });
  // The decisions' filters (status, kind, a search term), for the list and its export.
  const filters = (n) => {
    if (status && status !== "writes") n.set("status", status);
    if (kind) n.set("kind", kind);
    if (term) n.set("q", term);
    return n;
  };
  if (status !== "writes") filters(q);
  // A search's matches counted up to 1,000 with the page, the exact total after it.
  if (term && status !== "writes") q.set("total_upto", "1000");
  // The page's route for other filters (`to`: profile, status, kind, q) or other parameters.
  const filtered = (to = {}, extra = {}) => {
    const f = { profile: name, status, kind, q: term, ...to };
    const n = new URLSearchParams();
    for (const [k, x] of Object.entries(f)) if (x || k === "status") n.set(k, x);
    // A cursor may be 0 (the plan's first write).
    for (const [k, x] of Object.entries(extra)) if (x != null) n.set(k, x);
    return `#/whatif?${n}`;
  };
  // Keyset pages (`after`: the server's cursor), sorted by kind or status; by name within one
  // status (the server indexes names per status).
  const whatifRoute = (extra = {}) => filtered({}, extra);
  const sort = sortOf(p, "kind", "asc", whatifRoute);
  if (!status && !["kind", "status"].includes(sort.by)) sort.by = "kind";
  if (status !== "writes") sort.params(q);
  if (after) q.set("after", after);
  const writesAfter = p.get("writes_after") || "";
  if (status === "writes" && writesAfter) q.set("writes_after", writesAfter);
  let v;
  try { v = await api(`/profiles/${enc(name)}/whatif?${q}`); } catch (e) {
    return page("What-If", h("p", { class: "muted" }, `${name}: ${e.message}`));
  }
  const go = (pr, st) => { location.hash = filtered({ profile: pr, status: st }); };
  const profileSel = h("select", { id: "whatif-profile", onchange: (e) => go(e.target.value, status) },
    profiles.map((x) => h("option", { value: x.name, selected: x.name === name }, x.name)));
  const kindSel = h("select", { id: "whatif-kind", onchange: (e) => { location.hash = filtered({ kind: e.target.value }); } },
    ["", "user", "group", "device"].map((x) => h("option", { value: x, selected: x === kind }, x || "every kind")));
  const box = h("input", { id: "whatif-search", value: term, placeholder: "name, UPN, mail or SID" });
  const search = (e) => { e.preventDefault(); location.hash = filtered({ q: box.value }); };
  const statusSel = h("select", { id: "whatif-status", onchange: (e) => go(name, e.target.value) },
    [["", "all decisions"], ["matched", "matched"], ["unmatched", "unmatched"], ["ambiguous", "ambiguous"], ["conflict", "conflict"], ["refused", "refused (privileged)"], ["excluded", "excluded"], ["error", "override errors"], ["writes", "writes"]]
      .map(([x, t]) => h("option", { value: x, selected: x === status }, t)));
  const msg = h("p", { id: "whatif-message" });
  const approve = async () => {
    try { await post(`/profiles/${enc(name)}/approve`, { plan_hash: v.plan.hash }); route(); }
    catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  const c = v.plan.counts;
  const expMsg = h("span", { id: "whatif-export-message" });
  // Every decision the status filter finds, in the order shown, each with the write it authorises.
  const exp = async () => {
    const n = filters(sort.params(new URLSearchParams()));
    try { await download(`/profiles/${enc(name)}/whatif/export?${n}`, `whatif-${name}.csv`); } catch (e) { expMsg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  const overrides = await api(`/profiles/${enc(name)}/overrides`);
  const ov = overrideTools(profiles.find((x) => x.name === name), overrides);
  const candidates = (d) => candidateList(d, v.candidates, ov);
  const review = status || kind || term || after ? [] : await whatifReview(name, profiles.find((x) => x.name === name), v, ov);
  const named = status ? "source_name" : null;
  const body = status === "writes"
    ? [listTable("whatif-writes", {
      total: v.writes_total, noun: "writes", rows: v.writes, empty: "No writes.",
      first: writesAfter ? filtered() : null, next: v.writes_next != null ? filtered({}, { writes_after: v.writes_next }) : null,
      cols: writeCols })]
    : [...review, status ? ov.panel : "",
      listTable("whatif-decisions", {
        total: v.decisions_total, exact: v.decisions_total_exact, noun: "decisions", rows: v.decisions, empty: "No decisions.", sort,
        first: after ? sort.keep() : null, next: v.decisions_next ? sort.keep({ after: v.decisions_next }) : null,
        cols: [["Kind", (d) => d.kind, "kind"], ["Status", (d) => d.status, status ? null : "status"], ["Source", (d) => (sort.by === "source_name" ? d.source_name : d.source_upn || d.source_name), named],
          ["Target", (d) => show(sort.by === "target_name" ? d.target_name : d.target_upn || d.target_name), named && "target_name"],
          ["Rule", (d) => show(d.rule_name ?? (d.rule == null ? null : v.plan.rules[d.rule])), named && "rule"], ["Candidates", candidates],
          ["", (d) => [h("a", { href: `#/report?q=${enc(d.source_id)}` }, "report"), " ", ov.actions(d)]]],
      }),
      ov.list];
  page("What-If",
    h("form", { class: "inline", onsubmit: search }, labelled("Profile", profileSel), labelled("Show", statusSel),
      status === "writes" ? "" : [labelled("Kind", kindSel), labelled("Search", box), h("button", { type: "submit", id: "whatif-search-go" }, "Search"),
        h("button", { type: "button", class: "secondary", id: "whatif-export", onclick: exp }, "Export CSV")], expMsg),
    h("p", { id: "whatif-summary" }, `Plan of cycle ${v.plan.cycle_id}: ${c.matched} matched, ${c.unmatched} unmatched, ${c.ambiguous} ambiguous, ${c.excluded || 0} excluded, ${c.errors || 0} override errors, ${v.writes_total} writes. `,
      v.approved ? h("span", { class: "ok" }, "Approved: the next cycle exports.")
        : v.needs_approval ? (canChange() ? h("button", { id: "whatif-approve", onclick: approve }, approveLabel(v)) : h("span", { class: "muted" }, "Awaits an admin's approval."))
          : h("span", { class: "muted" }, "Nothing to approve.")),
    msg, ...body);
  if (v.decisions_total_exact === false) {
    q.set("limit", "1");
    q.delete("total_upto");
    exactTotal("whatif-decisions", `/profiles/${enc(name)}/whatif?${q}`, (all) => all.decisions_total, "decisions", v.decisions.length);
  }
}

// What Approve authorises, in its words: the plan it names (its hash as the CLI shows it) and
// its number of writes.
function approveLabel(v) {
  const n = v.writes_total;
  return `Approve plan ${v.plan.hash.slice(0, 12)}: ${n} ${n === 1 ? "write" : "writes"} to the target`;
}

// A write as an engineer reads it: what is created with which values, what changes from what.
function writeText(w) {
  const vals = (xs) => (xs && xs.length ? xs.join("; ") : "(none)");
  if (w.op === "create") {
    const attrs = Object.entries(w.attributes || {}).map(([k, x]) => `${k} = ${vals(x)}`);
    if ((w.members || []).length) attrs.push(`${w.members.length} member(s)`);
    return attrs.join(", ") || "(no attributes)";
  }
  return (w.changes || []).map((c) => (c.attribute === "members"
    ? `members: +${Math.max(0, c.new.length - c.old.length)}`
    : `${c.attribute}: ${vals(c.old)} → ${vals(c.new)}`)).join(", ");
}

// A plan's writes: the columns of the What-If's list of them and of its review.
const writeCols = [["Operation", (w) => w.op], ["Kind", (w) => show(w.kind)], ["Object", (w) => show(w.name || w.target_id || w.source_id)],
  ["Write", (w) => writeText(w)]];

function writesTable(writes) {
  return table(writes, writeCols, "No writes.");
}

// An ambiguous decision's candidates by name, UPN and the value that tied them, each with "pin";
// a conflict's other sources by name. `all` is the answer's `candidates` (every decision's).
function candidateList(d, all, ov) {
  const mine = (all || []).filter((c) => c.source_id === d.source_id);
  if (mine.length === 0) return (d.candidates || []).join(", ");
  return h("ul", { class: "candidates" }, mine.map((c) => h("li", {},
    h("span", { class: "candidate-name" }, c.name ?? `${c.id} (no longer in ${c.directory})`),
    c.upn ? [" · ", c.upn] : "",
    c.attribute ? h("span", { class: "muted" }, ` · ${c.attribute}: ${c.values.length ? c.values.join("; ") : "—"}`) : "",
    d.status === "ambiguous" && ov && canChange()
      ? [" ", h("button", { class: "secondary pin-candidate", title: `Pin to ${c.name || c.id}`, onclick: () => ov.pin(d, c.id, c.name || c.id) }, "pin")] : "")));
}

// The What-If's review (no status chosen), in the order an engineer approves: what Approve
// authorises — the writes, counted by kind — then the decisions needing attention (ambiguous,
// unmatched, conflicts, broken pins), then the rest. Each section reads its first page.
async function whatifReview(name, profile, v, ov) {
  const base = `/profiles/${enc(name)}/whatif`;
  const link = (st, text) => h("a", { href: `#/whatif?profile=${enc(name)}&status=${st}` }, text);
  const byKind = Object.entries(v.plan.counts.by_kind || {});
  const count = (k) => byKind.reduce((a, [, c]) => a + (c[k] || 0), 0);
  const attention = [["ambiguous", "ambiguous", "ambiguous"], ["unmatched", "unmatched", "unmatched"], ["conflict", "conflict", "in conflict"], ["error", "errors", "broken pins"]]
    .map(([st, key, label]) => ({ st, label, n: count(key) }));
  const SHOWN = 20;
  const [writes, ...pages] = await Promise.all([
    v.writes_total ? api(`${base}?limit=1&writes_limit=${SHOWN}`) : null,
    ...attention.map((a) => (a.n ? api(`${base}?status=${a.st}&limit=${SHOWN}&writes_limit=1`) : null))]);
  const more = (n, st, what) => (n > SHOWN ? h("p", {}, link(st, `All ${n} ${what}`)) : "");

  const kinds = Object.entries(v.plan.counts.writes_by_kind || {});
  const authorises = h("section", { id: "whatif-writes", class: "review" },
    h("h2", {}, "What Approve authorises"),
    v.writes_total === 0
      ? h("p", { class: "muted" }, `Nothing: this plan writes nothing to ${profile ? profile.target : "the target"} (mode ${v.plan.mode}).`)
      : [h("p", {}, `${v.writes_total} ${v.writes_total === 1 ? "write" : "writes"} to ${profile ? profile.target : "the target"}, by kind:`),
        table(kinds, [["Kind", ([k]) => k], ["Creates", ([, c]) => c.creates], ["Updates", ([, c]) => c.updates],
          ["Member changes", ([, c]) => (c.member_changes ? `${c.member_changes} (+${c.members_added} members)` : 0)],
          ["Writes", ([, c]) => c.creates + c.updates + c.member_changes]], `${v.plan.counts.creates} creates, ${v.plan.counts.updates} updates.`),
        h("h3", {}, v.writes_total > SHOWN ? `The first ${SHOWN} writes` : "The writes"),
        writesTable(writes ? writes.writes : []), more(v.writes_total, "writes", "writes")]);

  const who = (d) => [h("span", {}, d.source_name), d.source_upn ? h("div", { class: "muted" }, d.source_upn) : ""];
  const reportLink = (d) => h("a", { href: `#/report?q=${enc(d.source_id)}` }, "report");
  const sections = attention.map((a, i) => {
    const pg = pages[i];
    if (!pg) return "";
    const cols = {
      ambiguous: [["Source", who], ["Tied by rule", (d) => show(d.rule_name)], ["Candidates", (d) => candidateList(d, pg.candidates, ov)], ["", reportLink]],
      unmatched: [["Source", who], ["Mail", (d) => show(d.source_mail)], ["Kind", (d) => d.kind], ["", (d) => [reportLink(d), " ", ov.actions(d)]]],
      conflict: [["Source", who], ["Target", (d) => show(d.target_upn || d.target_name)], ["Rule", (d) => show(d.rule_name)],
        ["Also claimed by", (d) => candidateList(d, pg.candidates, ov)], ["", (d) => [reportLink(d), " ", ov.actions(d)]]],
      error: [["Source", who], ["Why", (d) => show(d.rule_name)], ["", (d) => [reportLink(d), " ", ov.actions(d)]]],
    }[a.st];
    return h("div", { class: `attention attention-${a.st}` }, h("h3", {}, `${a.n} ${a.label}`), table(pg.decisions, cols), more(a.n, a.st, a.label));
  });
  const needs = attention.filter((a) => a.n);
  const decide = h("section", { id: "whatif-attention", class: "review" },
    h("h2", {}, "Needs your decision"),
    needs.length === 0 ? h("p", { class: "ok" }, "Nothing: no ambiguous, unmatched or conflicting object, no broken pin.")
      : h("p", {}, needs.map((a, i) => [i ? " · " : "", link(a.st, `${a.n} ${a.label}`)])),
    ov.panel, sections);
  const rest = [["matched", "matched"], ["excluded", "excluded"], ["refused", "refused (privileged)"]].map(([k, label]) => ({ k, label, n: count(k) }));
  const others = h("section", { id: "whatif-rest", class: "review" }, h("h2", {}, "The rest"),
    h("p", {}, rest.map((r, i) => [i ? " · " : "", r.n ? link(r.k, `${r.n} ${r.label}`) : `0 ${r.label}`])));
  return [authorises, decide, others, h("h3", {}, "Every decision")];
}

// Operators' overrides on the What-If: pin an ambiguous decision to one of its candidates, search
// the target directory and pin an unmatched one, exclude, remove an override. Overrides of the
// configuration are listed, read-only. A change takes effect at the next cycle.
function overrideTools(profile, overrides) {
  const panel = h("div", { id: "override-panel" });
  const base = `/profiles/${enc(profile.name)}/overrides`;
  const mine = new Map(overrides.filter((o) => o.origin === "operator").map((o) => [o.source, o]));
  // After a change the page is drawn again (the list of overrides with it), with the message.
  const done = (text) => { state.flash = text; route(); };
  if (state.flash) {
    panel.replaceChildren(h("p", { class: "ok", id: "override-message" }, state.flash, " ",
      h("button", { class: "secondary", id: "override-run", onclick: async () => {
        try { await post(`/profiles/${enc(profile.name)}/run?wait=true`); route(); }
        catch (e) { panel.append(h("p", { class: "error" }, e.message)); }
      } }, "Run a cycle now")));
    state.flash = null;
  }
  const form = (title, body, submit) => {
    const reason = h("input", { id: "override-reason", placeholder: "reason (shown wherever the rule is)", size: 40 });
    const err = h("p", { class: "error", id: "override-error" });
    panel.replaceChildren(h("form", { class: "card wide", id: "override-form", onsubmit: async (e) => {
      e.preventDefault();
      try { done(await submit(reason.value.trim() || null)); } catch (x) { err.replaceChildren(x.message); }
    } }, h("h3", {}, title), body, h("p", { class: "inline" }, h("label", { for: "override-reason" }, "Reason"), " ", reason, " ", h("button", { type: "submit", id: "override-save" }, "Save"), " ",
      h("button", { type: "button", class: "secondary", onclick: () => panel.replaceChildren() }, "Cancel")), err));
    panel.scrollIntoView();
  };
  const who = (d) => d.source_upn || d.source_name;
  const pin = (d, target, label) => form(`Pin ${who(d)} to ${label || target}`, "", async (reason) => {
    const o = await post(base, { source: d.source_id, target, reason });
    return `Pinned ${o.source_name} to ${o.target_name}; it takes effect at the next cycle.`;
  });
  const search = (d) => {
    const box = h("input", { id: "override-search", placeholder: `a ${d.kind} of ${profile.target}: name, UPN, mail, SID, id`, size: 40 });
    const found = h("div", { id: "override-found" });
    const find = async () => {
      try {
        const v = await api(`/report/object?q=${enc(box.value.trim())}`);
        const hits = v.objects.filter((r) => r.directory === profile.target && r.object.kind === d.kind);
        found.replaceChildren(hits.length === 0 ? h("p", { class: "muted" }, "No such object in the target directory.")
          : table(hits, [["Name", (r) => r.object.name], ["UPN", (r) => show(r.object.upn)], ["Mail", (r) => show(r.object.mail)], ["Id", (r) => r.object.id],
            ["", (r) => h("button", { class: "secondary pick-target", onclick: () => pin(d, r.object.id, r.object.name) }, "pick")]]));
      } catch (e) { found.replaceChildren(h("p", { class: "error" }, e.message)); }
    };
    panel.replaceChildren(h("div", { class: "card wide" }, h("h3", {}, `Pin ${who(d)} to a ${d.kind} of ${profile.target}`),
      h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); find(); } }, h("label", { for: "override-search" }, "Target object"), box, h("button", { type: "submit", id: "override-find" }, "Find"),
        h("button", { type: "button", class: "secondary", onclick: () => panel.replaceChildren() }, "Cancel")), found));
    box.focus();
  };
  const exclude = (d) => form(`Exclude ${who(d)} from ${profile.name}`, h("p", { class: "muted" }, "It leaves the translation table and the unmatched warnings."), async (reason) => {
    const o = await post(base, { source: d.source_id, exclude: true, reason });
    return `Excluded ${o.source_name}; it takes effect at the next cycle.`;
  });
  const remove = (source, label) => async () => {
    if (!confirm(`Remove the override of ${label}? The rules decide it again at the next cycle.`)) return;
    try { await del(`${base}/${enc(source)}`); done(`Removed the override of ${label}; it takes effect at the next cycle.`); }
    catch (e) { panel.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  const actions = (d) => {
    if (!canChange()) return "";
    if (mine.has(d.source_id)) return h("button", { class: "secondary unpin", onclick: remove(d.source_id, who(d)) }, "remove override");
    if (overrides.some((o) => o.source === d.source_id)) return h("span", { class: "muted" }, "override in the configuration");
    return [d.status === "unmatched" || d.status === "error" ? [h("button", { class: "secondary pin-search", onclick: () => search(d) }, "pin…"), " "] : "",
      d.status !== "excluded" ? h("button", { class: "secondary exclude", onclick: () => exclude(d) }, "exclude…") : ""];
  };
  const list = [h("h2", {}, `Overrides of ${profile.name}`),
    table(overrides, [["Source", (o) => o.source_name ? `${o.source_name} (${o.source})` : `${o.source} (not found)`],
      ["Override", (o) => (o.exclude ? "excluded" : `→ ${o.target_name ? `${o.target_name} (${o.target})` : `${o.target} (not found)`}`)],
      ["By", (o) => o.operator], ["Reason", (o) => show(o.reason)],
      ["", (o) => (o.origin === "config" ? h("span", { class: "muted" }, "in the configuration")
        : canChange() ? h("button", { class: "secondary unpin", onclick: remove(o.source, o.source_name || o.source) }, "remove") : "")]],
    "No overrides: the rules decide every object.")];
  return { panel, actions, pin, list };
}

async function translation() {
  const p = params();
  const [q, kind, profile, after] = [p.get("q") || "", p.get("kind") || "", p.get("profile") || "", p.get("after") || ""];
  const f = new URLSearchParams({ limit: "50", q });
  if (kind) f.set("kind", kind);
  if (profile) f.set("profile", profile);
  const sort = sortOf(p, "kind", "asc", (extra) => route(extra));
  sort.params(f);
  // A search's matches are counted up to 1,000 with the page (a common term's page comes in
  // milliseconds); beyond that the exact total follows on its own request.
  const [v, profiles] = await Promise.all([api(`/translation?${f}&total_upto=1000${after ? "&after=" + enc(after) : ""}`), api("/profiles")]);
  const box = h("input", { id: "search", value: q, placeholder: "name, UPN, mail or SID", "aria-label": "search" });
  const kinds = h("select", { id: "translation-kind", "aria-label": "kind" }, ["", "user", "group", "device"].map((x) => h("option", { value: x, selected: x === kind }, x || "every kind")));
  const prof = h("select", { id: "translation-profile", "aria-label": "profile" }, h("option", { value: "" }, "every profile"),
    profiles.map((x) => h("option", { value: x.name, selected: x.name === profile }, x.name)));
  const route = (extra = {}) => {
    const n = new URLSearchParams();
    for (const [k, el] of [["q", box], ["kind", kinds], ["profile", prof]]) if (el.value) n.set(k, el.value);
    for (const [k, x] of Object.entries(extra)) n.set(k, x);
    return `#/translation?${n}`;
  };
  const go = (e) => { e && e.preventDefault(); location.hash = sort.keep(); };
  kinds.addEventListener("change", go);
  prof.addEventListener("change", go);
  const msg = h("span", { id: "export-message" });
  // Exports are of the list as filtered (profile, kind, search), every page of it.
  const filters = () => { const n = new URLSearchParams(); for (const [k, el] of [["q", box], ["kind", kinds], ["profile", prof]]) if (el.value) n.set(k, el.value); return n; };
  const exp = (format, file) => async () => {
    const n = sort.params(filters());
    n.set("format", format);
    try { await download(`/translation/export?${n}`, file); } catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  page("Translation table",
    h("form", { class: "inline", onsubmit: go }, labelled("Search", box), labelled("Kind", kinds), labelled("Profile", prof), h("button", { type: "submit" }, "Search")),
    h("p", { class: "inline" }, "Export: ", h("button", { class: "secondary", id: "export-csv", onclick: exp("csv", "translation.csv") }, "CSV"), " ",
      h("button", { class: "secondary", onclick: exp("json", "translation.json") }, "JSON"), " ",
      h("button", { class: "secondary", onclick: exp("sidmap", "sidmap.json") }, "SID map"), " ",
      h("button", { class: "secondary", onclick: exp("usermapping", "usermapping.csv") }, "usermapping.csv"), " ", msg),
    listTable("translation", {
      total: v.total, exact: v.total_exact, noun: "entries", rows: v.entries, first: after ? sort.keep() : null, next: v.next ? sort.keep({ after: v.next }) : null, sort,
      cols: [["Profile", (e) => e.profile, "profile"], ["Kind", (e) => e.kind, "kind"],
        ["Source", (e) => [h("a", { href: `#/report?q=${enc(e.source_id)}` }, e.source_name), e.source_upn && e.source_upn !== e.source_name ? h("div", { class: "muted" }, e.source_upn) : ""], "source_name"],
        ["Target", (e) => [e.target_name, e.target_upn && e.target_upn !== e.target_name ? h("div", { class: "muted" }, e.target_upn) : ""], "target_name"],
        ["Source SID", (e) => show(e.source_sid), "source_sid"], ["Target SID", (e) => show(e.target_sid), "target_sid"], ["Rule", (e) => show(e.rule), "rule"]],
    }));
  if (!v.total_exact) {
    f.set("limit", "1");
    exactTotal("translation", `/translation?${f}`, (all) => all.total, "entries", v.entries.length);
  }
}

// A list's table with its total, what this page shows of it, and its pager: `first` and `next`
// are console routes (keyset pages: the server gives the next page's cursor), null when there is
// none. Shared by the list pages; `id` names its parts (`{id}-total`, `{id}-next`, `{id}-first`).
// A column `[title, get, key]` with a `key` sorts the list on the server: its header is a button
// to the route `sort.href(key, order)` (ascending first, then the other way), and the sorted
// column's header says how (`aria-sort`). `sort` is `{ by, order, href }` (see `sortOf`).
function listTable(id, { total, exact = true, noun, rows, cols, first, next, sort, empty = "Nothing found." }) {
  const th = ([title, , key]) => {
    if (!sort || !key) return h("th", {}, title);
    const on = sort.by === key;
    const order = on && sort.order === "asc" ? "desc" : "asc";
    return h("th", { "aria-sort": on ? (sort.order === "asc" ? "ascending" : "descending") : null },
      h("button", { type: "button", class: "sort", "data-sort": key, title: `sort by ${title.toLowerCase()}, ${order === "asc" ? "ascending" : "descending"}`,
        onclick: () => { location.hash = sort.href(key, order); } }, title, on ? (sort.order === "asc" ? " ▲" : " ▼") : ""));
  };
  return h("div", { class: "list", id: id + "-list" },
    h("p", { class: "muted", id: id + "-total" }, exact ? totalText(total, noun, rows.length) : `More than ${total} ${noun} (counting…), ${rows.length} on this page`),
    !rows || rows.length === 0 ? h("p", { class: "muted" }, empty) : h("table", {},
      h("thead", {}, h("tr", {}, cols.map(th))),
      h("tbody", {}, rows.map((r) => h("tr", {}, cols.map(([, get]) => h("td", {}, dated(get(r)))))))),
    first || next ? h("p", { class: "inline pager" },
      first ? h("a", { href: first, id: id + "-first" }, "First page") : "", " ",
      next ? h("a", { href: next, id: id + "-next" }, "Next page") : "") : "");
}

// A list's exact total, asked once its page is drawn with one counted only up to a cap
// (`total_upto`): `path` is the list without the cap, `pick` reads the total from the answer,
// drawn into `{id}-total` if the page is still shown.
function exactTotal(id, path, pick, noun, shown) {
  const route = location.hash;
  api(path).then((all) => {
    const el = document.getElementById(id + "-total");
    if (el && location.hash === route) el.textContent = totalText(pick(all), noun, shown);
  }).catch(() => {});
}

// A list's total and how many of it a page shows.
function totalText(total, noun, shown) {
  return `${total} ${noun}` + (shown < total ? `, ${shown} on this page` : "");
}

// A list's sort as the page's route keeps it (`sort`, `order`), `by` and `order` when it has
// none, and the API's parameters for it; `route(extra)` is the page's route with other parameters.
function sortOf(p, by, order, route) {
  const s = { by: p.get("sort") || by, order: p.get("order") === "asc" || p.get("order") === "desc" ? p.get("order") : order };
  s.href = (key, o) => route({ sort: key, order: o });
  s.params = (n) => { n.set("sort", s.by); n.set("order", s.order); return n; };
  // The route of another page of this sort (Next page keeps it; a new filter starts over).
  s.keep = (extra = {}) => route({ sort: s.by, order: s.order, ...extra });
  return s;
}

// The report's decision: since when (the cycle that made the current decision, and the first).
function reportSince(p) {
  const d = p.decision;
  const at = (c, ms) => `cycle ${c}${ms ? ", " + when(ms) : ""}`;
  return d.changed_cycle === d.first_cycle ? at(d.first_cycle, p.first_at)
    : [at(d.changed_cycle, p.decided_at), h("div", { class: "muted" }, `first decided in ${at(d.first_cycle, p.first_at)}`)];
}

// The object on the other side of a decision, as an engineer checks it: kind, name, UPN, mail,
// SID and id, and its directory.
function reportCounterpart(p) {
  const c = p.counterpart;
  if (!c) return "—";
  const o = c.object;
  return h("div", { class: "counterpart" }, h("strong", {}, o.name), ` (${o.kind} in ${c.directory})`,
    [["UPN", o.upn], ["Mail", o.mail], ["SID", o.sid], ["Id", o.id]].filter(([, x]) => x).map(([k, x]) => h("div", { class: "muted" }, `${k}: ${x}`)));
}

// Overrides from the report: pin an ambiguous object to a candidate, search and pin or exclude
// an unmatched one (the What-If's tools, for the profiles the report names).
async function reportTools(v) {
  const names = [...new Set(v.objects.flatMap((r) => r.profiles.filter((p) => p.side === "source").map((p) => p.profile)))];
  if (!canChange() || names.length === 0) return { actions: () => "", of: () => null, panel: "" };
  const profiles = await api("/profiles");
  const lists = await Promise.all(names.map((n) => api(`/profiles/${enc(n)}/overrides`)));
  // Each profile's tools draw their forms into their own panel; all of them sit in one place.
  const byProfile = new Map();
  names.forEach((n, i) => {
    const profile = profiles.find((x) => x.name === n);
    if (profile) byProfile.set(n, overrideTools(profile, lists[i]));
  });
  const panel = h("div", { id: "report-override" }, [...byProfile.values()].map((t) => t.panel));
  const of = (p) => (p.side === "source" ? byProfile.get(p.profile) : null);
  return { panel, of, actions: (p) => (of(p) ? of(p).actions(p.decision) : "") };
}

// An ambiguous object's candidates (or a conflict's other sources), with what tied them and "pin".
function reportCandidates(p, tools) {
  const t = tools.of(p);
  const ambiguous = p.decision.status === "ambiguous";
  return h("div", { class: "candidates" },
    h("h3", {}, ambiguous ? `Candidates in ${p.profile}` : `Also claimed in ${p.profile} by`),
    h("p", { class: "muted" }, p.rule ? `Tied by rule ${p.rule}.` : ""),
    table(p.candidates, [["Name", (c) => c.name ?? `(no longer in ${c.directory})`], ["UPN", (c) => show(c.upn)], ["Mail", (c) => show(c.mail)],
      ["Tied by", (c) => (c.attribute ? `${c.attribute}: ${c.values.length ? c.values.join("; ") : "—"}` : "—")], ["SID", (c) => show(c.sid)], ["Id", (c) => c.id],
      ["", (c) => (ambiguous && t ? h("button", { class: "secondary pin-candidate", onclick: () => t.pin(p.decision, c.id, c.name || c.id) }, "pin") : "")]]));
}

// The seed's "Single Object Report": everything ferry knows about one object.
// Called by the router with nothing; with the answer of a look at every object once the quick
// one (through the translation table) found fewer.
async function report(every = null) {
  const q = params().get("q") || "";
  const box = h("input", { id: "report-q", value: q, placeholder: "name, UPN, mail, object id or SID" });
  const form = h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); location.hash = `#/report?q=${enc(box.value.trim())}`; } },
    h("label", { for: "report-q" }, "Object"), box, h("button", { type: "submit", id: "report-go" }, "Find"));
  if (!q) return page("Single object report", form, h("p", { class: "muted" }, "Look up a user, group or device by any of its names or ids."));
  const v = every || await api(`/report/object?q=${enc(q)}`);
  const tools = await reportTools(v);
  const attrs = (o) => table([["Kind", o.kind], ["Id", o.id], ["DN", o.dn], ["Name", o.name], ["UPN", o.upn], ["Mail", o.mail], ["SID", o.sid],
    ["uid / gid", o.uid_number == null ? null : `${o.uid_number} / ${show(o.gid_number)}`], ["Members", (o.members || []).length || null],
    ...(o.attrs || []).map(([k, x]) => [k, x])].filter(([, x]) => x != null && x !== ""), [["Attribute", (r) => r[0]], ["Value", (r) => show(r[1])]]);
  page("Single object report", form, tools.panel,
    v.objects.length === 0 ? h("p", { class: "muted", id: "report-none" }, `Nothing found for “${q}”.`) : "",
    v.objects.map((r) => h("section", { class: "report" },
      h("h2", {}, `${r.object.name} in ${r.directory}`), attrs(r.object),
      h("h3", {}, "Decisions"), table(r.profiles, [["Profile", (p) => p.profile], ["Side", (p) => p.side], ["Status", (p) => p.decision.status],
        ["Rule", (p) => show(p.rule)], ["Since", reportSince], ["Counterpart", reportCounterpart], ["", (p) => tools.actions(p)]], "In no profile."),
      r.profiles.filter((p) => (p.candidates || []).length).map((p) => reportCandidates(p, tools)),
      r.profiles.filter((p) => (p.identity || []).length).map((p) => h("div", { class: "identity" },
        h("h3", {}, `Both sides in ${p.profile}`),
        table(p.identity, [["Attribute", (x) => x.attribute], ["Source", (x) => (x.source.length ? x.source.join("; ") : "—")],
          ["Target", (x) => (x.target.length ? x.target.join("; ") : "—")]]))),
      h("h3", {}, "History"), table(r.history, [["Cycle", (x) => x.cycle_id], ["When", (x) => when(x.at)], ["Profile", (x) => x.profile], ["Change", (x) => x.change]], "No changes recorded."),
      h("h3", {}, "Message logs"), table(r.logs, [["When", (l) => when(l.at)], ["Level", (l) => l.level], ["Message", (l) => l.message]], "No messages."))),
    h("p", { class: "muted", id: "report-every" }, v.every_object ? "Every stored object looked at." : "Found through the translation table; looking at every stored object too…"));
  if (!v.every_object) {
    // The quick answer names the objects of decisions; an object in none (an unmatched target
    // with the same mail) is found by looking at every object, a moment later.
    const at = location.hash;
    const all = await api(`/report/object?q=${enc(q)}&every=true`).catch((e) => e);
    if (location.hash !== at) return;
    if (all instanceof Error) document.getElementById("report-every").replaceChildren(h("span", { class: "error" }, all.message));
    else if (all.objects.length > v.objects.length) await report(all);
    else document.getElementById("report-every").textContent = "Every stored object looked at: nothing more.";
  }
}

async function logs() {
  const p = params();
  const [level, profile, object, cycle, after] = [p.get("level") || "", p.get("profile") || "", p.get("object") || "", p.get("cycle") || "", p.get("after") || ""];
  const q = new URLSearchParams({ limit: "200" });
  if (level) q.set("level", level);
  if (profile) q.set("profile", profile);
  if (object) q.set("object", object);
  if (cycle) q.set("cycle", cycle);
  // Newest first (or oldest), paged by id (`after`), every page counted: the total is every
  // entry the filters find, not the page.
  const sort = sortOf(p, "at", "desc", (extra) => route(extra));
  sort.params(q);
  const [v, profiles] = await Promise.all([api(`/logs?${q}${after ? "&after=" + enc(after) : ""}`, { total: true }), api("/profiles")]);
  const sel = h("select", { id: "log-level", "aria-label": "level" }, ["", "error", "warning", "info"].map((x) => h("option", { value: x, selected: x === level }, x || "every level")));
  const prof = h("select", { id: "log-profile", "aria-label": "profile" }, h("option", { value: "" }, "every profile"),
    profiles.map((x) => h("option", { value: x.name, selected: x.name === profile }, x.name)));
  const obj = h("input", { id: "log-object", value: object, placeholder: "object id", "aria-label": "object id" });
  const route = (extra = {}) => {
    const n = new URLSearchParams();
    for (const [k, el] of [["level", sel], ["profile", prof], ["object", obj]]) if (el.value) n.set(k, el.value);
    if (cycle) n.set("cycle", cycle);
    for (const [k, x] of Object.entries(extra)) n.set(k, x);
    return `#/logs?${n}`;
  };
  const apply = (e) => { e && e.preventDefault(); location.hash = sort.keep(); };
  sel.addEventListener("change", apply);
  prof.addEventListener("change", apply);
  const rows = v.items;
  const msg = h("span", { id: "logs-export-message" });
  // The export is of the filtered list, every page of it.
  const exp = async () => {
    const n = new URLSearchParams(q);
    n.delete("limit");
    try { await download(`/logs/export?${n}`, "logs.csv"); } catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  page("Message logs", h("form", { class: "inline", onsubmit: apply }, labelled("Level", sel), labelled("Profile", prof), labelled("Object id", obj), h("button", { type: "submit" }, "Filter"),
    cycle ? h("span", { class: "muted" }, `cycle ${cycle}`) : "",
    h("button", { type: "button", class: "secondary", id: "logs-export", onclick: exp }, "Export CSV"), msg),
    listTable("logs", {
      total: v.total, noun: "entries", rows, empty: "No messages.",
      first: after ? sort.keep() : null, next: v.next ? sort.keep({ after: v.next }) : null, sort,
      cols: [["When", (l) => when(l.at), "at"], ["Level", (l) => h("span", { class: "level-" + l.level }, l.level)], ["Profile", (l) => show(l.profile)], ["Code", (l) => show(l.code)],
        ["Object", (l) => (l.object_id ? h("a", { href: `#/report?q=${enc(l.object_id)}` }, l.object_name || l.object_id) : "—")], ["Message", (l) => l.message]],
    }));
}

// ---- devices ----

async function psks() {
  const ep = await api("/agent-endpoint").catch(() => null);
  const name = h("input", { id: "psk-name", placeholder: "wave-1", "data-field": "name" });
  const out = h("p", { id: "psk-created" });
  const list = h("div", { id: "psk-list" });
  const load = async () => {
    const v = await api("/psks");
    const retire = (k) => async () => {
      if (!confirm(`Retire ${k.name}? It enrolls no new agents; enrolled agents keep working.`)) return;
      try { await post(`/psks/${enc(k.name)}/retire`); await load(); } catch (e) { out.replaceChildren(h("span", { class: "error" }, e.message)); }
    };
    list.replaceChildren(table(v, [["Name", (k) => k.name], ["Created", (k) => when(k.created_at)], ["Retired", (k) => when(k.retired_at)],
      ["", (k) => (!k.retired_at && canChange() ? h("button", { class: "secondary retire", onclick: retire(k) }, "Retire") : "")]], "No pre-shared keys yet."));
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
  page("Keys and certificate",
    h("h2", {}, "Agent endpoint and certificate"),
    h("p", {}, "Agents connect to ", h("code", { id: "agent-url" }, ep ? show(ep.url) : "—"), ", certificate SHA-256 ", h("code", { id: "cert-sha" }, ep ? show(ep.certificate_sha256) : "—")),
    h("h2", {}, "Pre-shared keys"),
    canChange() ? h("form", { class: "inline", onsubmit: create }, h("label", { for: "psk-name" }, "New key's name"), name, h("button", { type: "submit", id: "psk-create" }, "Create")) : "", out, list);
  await load();
}

// A list of scripts (pre-/post-migration, Linux app commands) as repeatable rows.
function scriptsEditor(id, scripts) {
  const box = h("div", { id, class: "scripts", "data-field": id.replace(/^rb-/, "").replace(/-/g, "_") });
  const row = (s = {}) => {
    const r = h("div", { class: "script" },
      h("label", { class: "inline" }, "Name ", input("", s.name || "", { class: "s-name", placeholder: "map drives" })),
      h("label", { class: "inline" }, "Interpreter ", choice("", ["powershell", "cmd", "sh", "bash"], s.interpreter || "powershell")),
      h("label", { class: "inline" }, "Timeout (seconds) ", input("", s.timeout_seconds || 600, { class: "s-timeout", type: "number", min: 1, size: 6 })),
      h("label", { class: "inline" }, h("input", { type: "checkbox", class: "s-required", checked: s.required !== false }), " required"),
      h("button", { type: "button", class: "secondary", onclick: () => r.remove() }, "Remove"),
      h("label", { class: "field script-body" }, h("span", {}, "Script"), area("", s.body || "", { class: "s-body" })));
    return r;
  };
  box.append(...(scripts || []).map(row));
  const add = h("button", { type: "button", class: "secondary", onclick: () => box.append(row()) }, "Add a script");
  const value = () => [...box.querySelectorAll(".script")].map((r) => ({ name: r.querySelector(".s-name").value.trim(), interpreter: r.querySelector("select").value,
    body: r.querySelector(".s-body").value, timeout_seconds: Number(r.querySelector(".s-timeout").value || 600), required: r.querySelector(".s-required").checked }));
  return { el: h("div", {}, box, add), value };
}

const JOINS = [["none", "none"], ["ad", "Active Directory"], ["entra-id", "Microsoft Entra ID"]];
const PERMISSION_MODES = [["none", "Don't update permissions"], ["add", "Add target, keep source"], ["add-and-remove", "Replace source with target"]];
// The words the runbook form uses for a join and a permission mode.
const joinWord = (v) => (JOINS.find(([k]) => k === v) || [v, v])[1];
const permissionWord = (v) => (PERMISSION_MODES.find(([k]) => k === v) || [v, v])[1];

// Every section of the seed's "Create Runbooks", as form sections.
function runbookForm(existing, dirs, runbooks, onSaved) {
  const r = existing || { name: "", source_directories: [], target_directories: [], prerequisites: [], startup: {}, user_experience: {}, device_state: {},
    permission_updates: {}, app_reconfiguration: {}, completion: {} };
  const st = r.startup || {}, ux = r.user_experience || {}, ds = r.device_state || {}, pu = r.permission_updates || {}, ar = r.app_reconfiguration || {}, co = r.completion || {};
  const box = h("div", { id: "runbook-form-message" });
  const multi = (id, names, chosen, fieldName) => h("span", { class: "types", id, "data-field": fieldName }, names.length === 0 ? h("span", { class: "muted" }, "none yet") :
    names.map((n) => h("label", { class: "inline" }, h("input", { type: "checkbox", value: n, checked: chosen.includes(n) }), " " + n)));
  const picked = (id) => [...document.querySelectorAll(`#${id} input:checked`)].map((x) => x.value);
  const dirNames = dirs.map((d) => d.name);
  const pre = scriptsEditor("rb-pre-migration-scripts", st.pre_migration_scripts);
  const post_ = scriptsEditor("rb-post-migration-scripts", co.post_migration_scripts);
  const cmds = scriptsEditor("rb-commands", ar.commands);
  const name = input("rb-name", r.name, { "data-field": "name", placeholder: "Pre-Req: agent prerequisites, or Wave 1 workstations" });
  if (existing) name.setAttribute("readonly", "");
  const section = (title, ...body) => h("fieldset", {}, h("legend", {}, title), ...body);
  const form = h("form", { class: "card wide", id: "runbook-form" },
    h("h2", {}, existing ? `Edit ${r.name}` : "Create a runbook"),
    section("General", h("div", { class: "grid" }, field("Name", name, "include “Pre-Req” in a prerequisite's name")),
      field("Source directories", multi("rb-source", dirNames, r.source_directories, "source_directories")),
      field("Target directories", multi("rb-target", dirNames, r.target_directories, "target_directories")),
      field("Prerequisite runbooks", multi("rb-prereq", runbooks.map((x) => x.name).filter((n) => n !== r.name), r.prerequisites, "prerequisites"))),
    section("Startup", h("div", { class: "grid" },
      field("User interaction", choice("rb-interaction", [["show-progress", "Show Progress"], ["silent", "Silent Mode"]], st.user_interaction || "show-progress")),
      field("Do not run startup", checkbox("rb-no-startup", st.do_not_run_startup)),
      field("Admin fallback account", input("rb-fallback", st.admin_fallback_account, { "data-field": "startup.admin_fallback_account", placeholder: ".\\ferry-fallback" })),
      field("Prevent login while migrating", checkbox("rb-prevent-login", st.prevent_login)),
      field("Lock screen image", input("rb-lock-image", st.lock_screen_image, { placeholder: "path or URL on the device" })),
      field("Legal notice title", input("rb-legal-title", st.legal_notice ? st.legal_notice.title : "", { "data-field": "startup.legal_notice" })),
      field("Legal notice text", area("rb-legal-text", st.legal_notice ? st.legal_notice.text : ""))),
      h("h3", {}, "Pre-migration scripts"), pre.el),
    section("User experience", h("div", { class: "grid" },
      field("Message", area("rb-message", ux.message, { "data-field": "user_experience.message" })),
      field("Maximum snoozes", input("rb-snoozes", ux.max_snoozes, { type: "number", min: 0, "data-field": "user_experience.max_snoozes" }), "empty: until Enforced After"),
      field("Snooze minutes", input("rb-snooze-minutes", ux.snooze_minutes, { type: "number", min: 1, "data-field": "user_experience.snooze_minutes" })),
      field("Restart when done", checkbox("rb-restart", ux.restart_when_done)))),
    section("Device state", h("div", { class: "grid" },
      field("Remove from", choice("rb-remove-from", JOINS, ds.remove_from || "none")),
      field("Domain join", h("span", { "data-field": "device_state.join" }, choice("rb-join", JOINS, ds.join || "none"))),
      field("Enrol in Intune", checkbox("rb-intune", ds.enrol_in_intune)),
      field("Bulk enrolment token", input("rb-token", ds.bulk_enrolment_token, { placeholder: "latest", "data-field": "device_state.bulk_enrolment_token" })),
      field("Leave command (Linux)", input("rb-leave", ds.leave_command, { placeholder: "realm leave" })),
      field("Join command (Linux)", input("rb-joincmd", ds.join_command, { placeholder: "realm join fabrikam.test" })))),
    section("Permission updates", h("div", { class: "grid" },
      field("Mode", choice("rb-perm-mode", PERMISSION_MODES, pu.mode || "none")),
      field("Paths", area("rb-paths", (pu.paths || []).join("\n"), { "data-field": "permission_updates.paths" }), "one per line; empty: the profiles' folders"),
      field("Ignore", area("rb-ignore", (pu.ignore || []).join("\n"), { "data-field": "permission_updates.ignore" }), "glob patterns, one per line"))),
    section("App reconfiguration", h("div", { class: "grid" },
      field("Reconfigure applications", checkbox("rb-reconfigure", ar.reconfigure_applications)),
      field("Make OneDrive files cloud only", checkbox("rb-onedrive", ar.onedrive_cloud_only))),
      h("h3", {}, "Commands (Linux)"), cmds.el),
    section("Completion", h("div", { class: "grid" }, field("Do not run completion", checkbox("rb-no-completion", co.do_not_run_completion))),
      h("h3", {}, "Post-migration scripts"), post_.el),
    h("p", {}, h("button", { type: "submit", id: "runbook-save" }, existing ? "Save" : "Create runbook")), box);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = (id) => form.querySelector("#" + id).value;
    const c = (id) => form.querySelector("#" + id).checked;
    const title = v("rb-legal-title").trim(), text = v("rb-legal-text");
    const body = {
      name: v("rb-name").trim(), source_directories: picked("rb-source"), target_directories: picked("rb-target"), prerequisites: picked("rb-prereq"),
      startup: { user_interaction: v("rb-interaction"), do_not_run_startup: c("rb-no-startup"), admin_fallback_account: orNull(v("rb-fallback")),
        pre_migration_scripts: pre.value(), legal_notice: title || text.trim() ? { title, text } : null, prevent_login: c("rb-prevent-login"), lock_screen_image: orNull(v("rb-lock-image")) },
      user_experience: { message: orNull(v("rb-message")), max_snoozes: numOrNull(v("rb-snoozes")), snooze_minutes: numOrNull(v("rb-snooze-minutes")), restart_when_done: c("rb-restart") },
      device_state: { remove_from: v("rb-remove-from"), join: v("rb-join"), enrol_in_intune: c("rb-intune"), bulk_enrolment_token: orNull(v("rb-token")),
        leave_command: orNull(v("rb-leave")), join_command: orNull(v("rb-joincmd")) },
      permission_updates: { mode: v("rb-perm-mode"), paths: lines(v("rb-paths")), ignore: lines(v("rb-ignore")) },
      app_reconfiguration: { reconfigure_applications: c("rb-reconfigure"), onedrive_cloud_only: c("rb-onedrive"), commands: cmds.value() },
      completion: { do_not_run_completion: c("rb-no-completion"), post_migration_scripts: post_.value() },
    };
    try {
      if (!body.name) throw new Error("name: give the runbook a name");
      await put(`/runbooks/${enc(body.name)}`, body);
      onSaved();
    } catch (err) { formError(form, box, err); }
  });
  return form;
}

async function runbooks() {
  const [v, dirs] = await Promise.all([api("/runbooks"), api("/directories")]);
  const msg = h("div", { id: "runbook-message" });
  const formSlot = h("div", {});
  const remove = (r) => async () => {
    if (!confirm(`Delete runbook ${r.name}?`)) return;
    try { await del(`/runbooks/${enc(r.name)}`); route(); } catch (e) { msg.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  const joins = (r) => `Remove from: ${joinWord(r.device_state.remove_from)} → Join: ${joinWord(r.device_state.join)}`;
  page("Runbooks", table(v, [["Name", (r) => r.name], ["Source → target", (r) => `${r.source_directories.join(", ")} → ${r.target_directories.join(", ")}`],
    ["Prerequisites", (r) => r.prerequisites.join(", ") || "—"], ["Device state", joins], ["Permissions", (r) => permissionWord(r.permission_updates.mode)],
    ["", (r) => (r.origin === "file" ? h("span", { class: "muted configured" }, "in ferry.toml")
      : canChange() ? [h("button", { class: "secondary", onclick: () => { formSlot.replaceChildren(runbookForm(r, dirs, v, route)); formSlot.scrollIntoView(); } }, "Edit"), " ",
        h("button", { class: "secondary", onclick: remove(r) }, "Delete")] : "")]], "No runbooks yet."), msg, formSlot);
  if (canChange()) formSlot.replaceChildren(runbookForm(null, dirs, v, route));
}

function batchForm(existing, dirs, runbooks, onSaved) {
  const b = existing || { name: "", source_directory: dirs[0] ? dirs[0].name : "", target_directory: dirs[1] ? dirs[1].name : "", runbooks: [], time_zone: "UTC" };
  const box = h("div", { id: "batch-form-message" });
  const names = dirs.map((d) => d.name);
  const name = input("batch-name", b.name, { "data-field": "name", placeholder: "wave-1" });
  if (existing) name.setAttribute("readonly", "");
  const rbs = h("span", { class: "types", id: "batch-runbooks", "data-field": "runbooks" }, runbooks.length === 0 ? h("span", { class: "muted" }, "create runbooks first") :
    runbooks.map((r) => h("label", { class: "inline" }, h("input", { type: "checkbox", value: r.name, checked: b.runbooks.includes(r.name) }), " " + r.name)));
  const form = h("form", { class: "card wide", id: "batch-form" },
    h("h2", {}, existing ? `Edit ${b.name}` : "Create a batch"),
    h("div", { class: "grid" }, field("Name", name),
      field("Source directory", choice("batch-source", names, b.source_directory)), field("Target directory", choice("batch-target", names, b.target_directory)),
      field("Runbooks", rbs), field("Add missing prerequisites", checkbox("batch-prereqs", true)),
      field("Available From", input("batch-available", b.available_from, { type: "datetime-local", "data-field": "available_from" }), "the user is offered the migration"),
      field("Enforced After", input("batch-enforced", b.enforced_after, { type: "datetime-local", "data-field": "enforced_after", required: true }), "it runs without asking"),
      field("Time zone", input("batch-tz", b.time_zone || "UTC", { "data-field": "time_zone", placeholder: "Europe/London" })),
      field("Add computers", area("batch-computers", "", { placeholder: "one host name per line" }), `${existing ? existing.computer_count : 0} in the batch`),
      field("Canary", input("batch-canary", b.canary == null ? "" : String(b.canary), { "data-field": "canary", placeholder: "5 or 10%" }),
        "these first computers by name must be verified before the rest start"),
      field("Max failure rate", input("batch-max-failure", String(b.max_failure_rate || 0), { type: "number", min: "0", max: "1", step: "0.01", "data-field": "max_failure_rate" }),
        "share of finished devices that may fail before the batch halts itself (0: the first failure)"),
      field("Max concurrent", input("batch-max-concurrent", b.max_concurrent == null ? "" : String(b.max_concurrent), { type: "number", min: "1", "data-field": "max_concurrent" }),
        "devices migrating at once (empty: no limit)")),
    h("p", {}, h("button", { type: "submit", id: "batch-save" }, existing ? "Save" : "Create batch")), box);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = (id) => form.querySelector("#" + id).value;
    const body = { name: v("batch-name").trim(), source_directory: v("batch-source"), target_directory: v("batch-target"),
      runbooks: [...form.querySelectorAll("#batch-runbooks input:checked")].map((x) => x.value), enforced_after: v("batch-enforced"), time_zone: v("batch-tz").trim() || "UTC" };
    if (v("batch-available")) body.available_from = v("batch-available");
    const canary = v("batch-canary").trim();
    if (canary) body.canary = /^\d+$/.test(canary) ? Number(canary) : canary;
    if (v("batch-max-failure")) body.max_failure_rate = Number(v("batch-max-failure"));
    if (v("batch-max-concurrent")) body.max_concurrent = Number(v("batch-max-concurrent"));
    try {
      if (!body.name) throw new Error("name: give the batch a name");
      const saved = await put(`/batches/${enc(body.name)}?add_prerequisites=${form.querySelector("#batch-prereqs").checked}`, body);
      const add = lines(v("batch-computers"));
      const after = add.length ? await post(`/batches/${enc(body.name)}/computers`, { add }) : saved;
      const warnings = [...(saved.warnings || []), ...(after.warnings || [])];
      onSaved(warnings);
    } catch (err) { formError(form, box, err); }
  });
  return form;
}

async function batches() {
  const [v, dirs, rbs] = await Promise.all([api("/batches?computers=false"), api("/directories"), api("/runbooks")]);
  const msg = h("div", { id: "batch-message" });
  const formSlot = h("div", {});
  const saved = (warnings) => {
    route().then(() => {
      if (warnings.length) document.getElementById("batch-message").replaceChildren(h("h2", {}, "Warnings"), h("ul", { class: "warn", id: "batch-warnings" }, warnings.map((w) => h("li", {}, w))));
    });
  };
  const whatifOf = (b) => async () => {
    try {
      const w = await api(`/batches/${enc(b.name)}/whatif`);
      msg.replaceChildren(h("h2", {}, `What-If of ${b.name}`),
        w.assignment ? h("p", {}, `Runbooks in order: ${w.assignment.runbooks.join(" → ")}; enforced after ${when(w.assignment.enforced_after)}`) : "",
        table(w.devices, [["Computer", (d) => d.computer], ["Agent", (d) => (d.agent_id ? h("a", { href: `#/agent?id=${d.agent_id}` }, String(d.agent_id)) : "not enrolled")],
          ["Profiles re-permissioned", (d) => d.remap.map((p) => `${p.profile} → ${p.target_name || p.target_sid || p.target_uid || "?"}`).join(", ") || "—"],
          ["Not translated", (d) => d.no_target.join(", ") || "—"],
          ["Ready", (d) => (d.ready == null ? h("span", { class: "muted" }, "no pre-flight yet") : h("span", { class: d.ready ? "ok" : "bad" }, d.ready ? "ready" : "not ready"))],
          ["Warnings", (d) => h("span", { class: d.warnings.length ? "bad" : "" }, d.warnings.join("; ") || "—")]], "No computers in the batch."));
    } catch (e) { msg.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  const remove = (b) => async () => {
    if (!confirm(`Delete batch ${b.name}?`)) return;
    try { await del(`/batches/${enc(b.name)}`); route(); } catch (e) { msg.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  page("Batches", table(v, [["Name", (b) => b.name], ["Source → target", (b) => `${b.source_directory} → ${b.target_directory}`], ["Runbooks", (b) => b.runbooks.join(", ")],
    ["Computers", (b) => b.computer_count], ["Available From", (b) => localTime(b.available_from, b.time_zone)], ["Enforced After", (b) => localTime(b.enforced_after, b.time_zone)],
    ["", (b) => [h("button", { class: "secondary whatif", onclick: whatifOf(b) }, "Device What-If"), " ", h("a", { href: `#/dashboard?batch=${enc(b.name)}` }, "Dashboard"), " ",
      h("a", { href: `#/preflight?batch=${enc(b.name)}` }, "Tenant pre-flight"), " ",
      b.origin === "file" ? h("span", { class: "muted configured" }, "in ferry.toml")
        : canChange() ? [h("button", { class: "secondary", onclick: () => formSlot.replaceChildren(batchForm(b, dirs, rbs, saved)) }, "Edit"), " ",
          h("button", { class: "secondary", onclick: remove(b) }, "Delete")] : ""]]], "No batches yet."), msg, formSlot);
  if (canChange()) formSlot.replaceChildren(dirs.length >= 1 ? batchForm(null, dirs, rbs, saved) : h("p", { class: "muted" }, "Add directories first."));
}

// Per batch: devices by state, live, in the seed's words; every computer of the batch, those no
// agent has enrolled from yet too; the batch's times. Polls every three seconds while shown.
async function dashboard() {
  const v = await api("/batches?computers=false");
  if (v.length === 0) return page("Migration dashboard", h("p", { class: "muted" }, "No batches yet: create one on the Batches page."));
  const name = params().get("batch") || v[0].name;
  const b = v.find((x) => x.name === name) || v[0];
  const stateFilter = params().get("state") || "";
  const after = params().get("after") || "";
  const dashRoute = (extra = {}) => {
    const n = new URLSearchParams({ batch: name });
    if (stateFilter) n.set("state", stateFilter);
    for (const [k, x] of Object.entries(extra)) n.set(k, x);
    return `#/dashboard?${n}`;
  };
  const sort = sortOf(params(), "id", "asc", dashRoute);
  const at = state.render;
  const sel = h("select", { id: "dash-batch", onchange: (e) => { location.hash = `#/dashboard?batch=${enc(e.target.value)}`; } },
    v.map((x) => h("option", { value: x.name, selected: x.name === name }, x.name)));
  const chart = h("div", { id: "dash-chart" });
  const times = h("p", { id: "dash-times" });
  const summary = h("p", { id: "dash-summary" });
  const wave = h("div", { id: "dash-wave" });
  const list = h("div", { id: "dash-agents" });
  const stamp = h("span", { class: "muted", id: "dash-updated" });
  const expMsg = h("span", { id: "dash-export-message" });
  // Every computer of the batch the state filter finds, in the order shown: its agents as sorted,
  // then those with no agent yet.
  const exp = async () => {
    const n = sort.params(new URLSearchParams());
    if (stateFilter) n.set("state", stateFilter);
    try { await download(`/batches/${enc(name)}/computers/export?${n}`, `computers-${name}.csv`); } catch (e) { expMsg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  const draw = async () => {
    const q = sort.params(new URLSearchParams({ limit: "200" }));
    if (stateFilter && stateFilter !== "no agent yet") q.set("state", stateFilter);
    if (after) q.set("after", after);
    const p = await api(`/batches/${enc(name)}/progress?${q}`);
    const now = Date.now();
    const word = (st) => deviceState(st, p, now);
    times.replaceChildren(h("span", {}, "Available From ", h("strong", {}, localTime(b.available_from, b.time_zone))), " · ",
      h("span", {}, "Enforced After ", h("strong", {}, localTime(b.enforced_after, b.time_zone))),
      h("span", { class: "muted" }, p.enforced_after && now < p.enforced_after
        ? (p.available_from && now >= p.available_from ? " — users may start it now; it runs without asking from Enforced After." : " — devices are scheduled.")
        : " — enforced: a device starts within 15 minutes when nobody is signed in."));
    chart.replaceChildren(countBars("chart-states", p.states, word, { x: "computers", y: "state" }));
    const w = p.wave, parts = [];
    if (w.halted) {
      const resume = async () => {
        try { await post(`/batches/${enc(name)}/resume`); await draw(); } catch (e) { wave.append(h("p", { class: "bad" }, e.message)); }
      };
      parts.push(h("p", { class: "bad", id: "dash-halted" }, `Halted ${when(w.halted.at)}: ${w.halted.reason}. No new device starts until an operator resumes the batch. `,
        canChange() ? h("button", { id: "dash-resume", onclick: resume }, "Resume batch") : ""));
    }
    if (w.canary.length) parts.push(h("p", { id: "dash-canary" }, `Canary (starts first): ${w.canary.join(", ")}; ${w.canary_succeeded} of ${w.canary.length} finished well, ${w.canary_failed} failed.`));
    if (w.resumed) parts.push(h("p", { class: "muted" }, `Last resumed by ${w.resumed.by} ${when(w.resumed.at)} after: ${w.resumed.halt}`));
    wave.replaceChildren(...parts);
    const done = (p.states.succeeded || 0) + (p.states.verified || 0), failed = p.states.failed || 0;
    summary.replaceChildren(`${plural(p.computers, "computer")}: ${done} migrated, ${failed} failed, ${p.computers - done - failed} to go. Show: `,
      ...["", ...Object.keys(p.states)].map((s) =>
        h("a", { href: `#/dashboard?batch=${enc(name)}&state=${enc(s)}`, class: "filter" + (s === stateFilter ? " active-filter" : "") }, s ? word(s) : "all")));
    // The agents' page (sorted as asked, keyset pages), then — on the first page — the computers
    // without one (named as they were added to the batch).
    const pending = (!stateFilter || stateFilter === "no agent yet") && !after
      ? p.no_agent.map((c) => ({ hostname: c, state: "no agent yet", none: true })) : [];
    const rows = [...(stateFilter === "no agent yet" ? [] : p.agents), ...pending];
    const more = (p.states["no agent yet"] || 0) - p.no_agent.length;
    const sortable = stateFilter !== "no agent yet";
    list.replaceChildren(listTable("dash", {
      total: stateFilter ? (p.states[stateFilter] || 0) : p.computers, noun: "computers", rows, empty: "No computers in this batch.",
      sort: sortable ? sort : null, first: after ? sort.keep() : null, next: sortable && p.agents_next ? sort.keep({ after: p.agents_next }) : null,
      cols: [["Computer", (a) => (a.none ? h("span", { class: "no-agent" }, a.hostname) : h("a", { href: `#/agent?id=${a.id}` }, a.hostname)), "hostname"],
        ["State", (a) => h("span", { class: "state state-" + a.state.replace(/[^a-z]/g, "") }, word(a.state)), "state"],
        ["Step", (a) => (a.none ? "install the agent" : show(a.last_step))], ["Progress", (a) => (a.progress == null ? "—" : h("progress", { max: 100, value: a.progress }, `${a.progress}%`))],
        ["Last contact", (a) => h("span", { class: a.silent ? "bad" : "" }, when(a.last_contact)), "last_contact"]],
    }),
    more > 0 && pending.length ? h("p", { class: "muted" }, `and ${more} more computers with no agent yet`) : "");
    stamp.textContent = `updated ${when(Date.now())}`;
  };
  page(`Migration dashboard`, h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, h("label", { for: "dash-batch" }, "Batch"), sel, stamp), times, wave, summary, chart,
    h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, h("button", { type: "button", class: "secondary", id: "dash-export", onclick: exp }, "Export CSV"), expMsg), list);
  await draw();
  const timer = setInterval(async () => {
    if (state.render !== at) return clearInterval(timer);
    try { await draw(); } catch (e) { if (!(e instanceof Stale)) stamp.textContent = "update failed: " + e.message; }
  }, 3000);
}

async function agents() {
  const p = params();
  const [search, st, after] = [p.get("q") || "", p.get("state") || "", p.get("after") || ""];
  // Keyset pages (`after`: the server's cursor of the page before); the total counts every match.
  const q = new URLSearchParams({ limit: "100" });
  if (search) q.set("search", search);
  if (st) q.set("state", st);
  if (after) q.set("after", after);
  const sort = sortOf(p, "id", "asc", (extra) => routeTo(extra));
  sort.params(q);
  const [v, held] = await Promise.all([api(`/agents?${q}`, { total: true }), api("/enrollment-requests")]);
  const box = h("input", { id: "agent-search", value: search, placeholder: "host name or device id", "aria-label": "search" });
  const states = h("select", { id: "agent-state", "aria-label": "state" }, ["", "enrolled", "idle", "offered", "running", "succeeded", "failed", "replaced"]
    .map((x) => h("option", { value: x, selected: x === st }, x || "every state")));
  const routeTo = (extra = {}) => {
    const n = new URLSearchParams();
    if (box.value) n.set("q", box.value);
    if (states.value) n.set("state", states.value);
    for (const [k, x] of Object.entries(extra)) n.set(k, x);
    return `#/agents?${n}`;
  };
  const go = () => { location.hash = sort.keep(); };
  states.addEventListener("change", go);
  const out = h("p", { id: "enrollment-message" });
  // Enrollments held for an operator: a device claiming an enrolled one's id or name without its key.
  const decide = (r, verb) => async () => {
    const what = verb === "approve"
      ? `Approve ${r.hostname}? Its key starts working and the agents it claims are replaced.`
      : `Refuse ${r.hostname}? Its key never works; the enrolled agent keeps working.`;
    if (!confirm(what)) return;
    try { await post(`/enrollment-requests/${r.id}/${verb}`); await route(); } catch (e) { out.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  const pending = held.length === 0 ? "" : [h("h2", {}, `Waiting for approval (${held.length})`),
    h("div", { id: "enrollment-requests" }, table(held, [["Host", (r) => r.hostname], ["Device id", (r) => r.device_id], ["Address", (r) => show(r.address)],
      ["Asked", (r) => when(r.created_at)], ["Why it waits", (r) => h("span", { class: "bad" }, r.reason)],
      ["", (r) => (canChange() ? [h("button", { class: "approve", onclick: decide(r, "approve") }, "Approve"), " ",
        h("button", { class: "secondary refuse", onclick: decide(r, "refuse") }, "Refuse")] : "")]])), out];
  const msg = h("span", { id: "agents-export-message" });
  // Every agent the filters find, in the order shown.
  const exp = async () => {
    const n = sort.params(new URLSearchParams());
    if (search) n.set("search", search);
    if (st) n.set("state", st);
    try { await download(`/agents/export?${n}`, "agents.csv"); } catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  page("Agents", pending, h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); go(); } }, labelled("Search", box), labelled("State", states), h("button", { type: "submit" }, "Search"),
    h("button", { type: "button", class: "secondary", id: "agents-export", onclick: exp }, "Export CSV"), msg),
    listTable("agents", {
      total: v.total, noun: "agents", rows: v.items, empty: "No agents yet.",
      first: after ? sort.keep() : null, next: v.next ? sort.keep({ after: v.next }) : null, sort,
      cols: [["Host", (a) => [h("a", { href: `#/agent?id=${a.id}` }, a.hostname), a.mismatch ? h("span", { class: "bad mismatch", title: a.mismatch }, " ⚠ claims differ") : ""], "hostname"],
        ["OS", (a) => a.os], ["Batch", (a) => show(a.batch)], ["State", (a) => a.state, "state"],
        ["Step", (a) => show(a.last_step)], ["Version", (a) => a.agent_version], ["Last contact", (a) => h("span", { class: a.silent ? "bad" : "" }, when(a.last_contact)), "last_contact"]],
    }));
}

// One device: facts, harvested profiles, every run's steps, and a run's log.
async function agent() {
  const id = Number(params().get("id"));
  const a = await api(`/agents/${id}`);
  const runs = [...new Set(a.events.map((e) => e.run))];
  const logBox = h("pre", { id: "agent-log" }, "Choose a run to read its log.");
  const showLog = (run) => async () => { logBox.textContent = (await api(`/agents/${id}/runs/${enc(run)}/log`)) || "(empty)"; };
  page(`Agent ${a.hostname}`,
    table([["Device id", a.device_id], ["OS", `${a.os} ${a.facts.os_version || ""}`], ["State", a.state], ["Enrolled", when(a.enrolled_at)],
      ["Last contact", when(a.last_contact)], ["Address", show(a.last_address)], ["Agent version", a.agent_version], ["Joined to", show(a.facts.joined_to)]],
      [["", (r) => r[0]], ["", (r) => r[1]]]),
    h("h2", {}, "Profiles"), table(a.profiles, [["Name", (p) => p.name], ["SID", (p) => show(p.sid)], ["uid", (p) => show(p.uid)], ["Home", (p) => p.home]], "No profiles harvested."),
    checksOf("Pre-flight", "agent-preflight", a.preflight, "No pre-flight reported yet."),
    checksOf(a.verification ? `Verification after the ${a.verification.after} ${a.verification.run}` : "Verification", "agent-verification", a.verification,
      "No post-flight yet: it follows the device's run or rollback."),
    runs.map((run) => [h("h2", {}, `Run ${run} `, h("button", { class: "secondary", onclick: showLog(run) }, "Log")),
      table(a.events.filter((e) => e.run === run), [["When", (e) => when(e.at)], ["Step", (e) => e.step], ["Status", (e) => e.status],
        ["Progress", (e) => show(e.progress)], ["Message", (e) => e.message]])]),
    runs.length ? logBox : h("p", { class: "muted" }, "No runs yet."));
}

// A pre-flight's or post-flight's checks: each with its result and what was found.
function checksOf(title, id, v, none) {
  if (!v) return [h("h2", {}, title), h("p", { class: "muted", id }, none)];
  const mark = (c) => h("span", { class: c.ok ? "ok" : c.blocking ? "bad" : "muted" }, c.ok ? "✓ passed" : c.blocking ? "✗ failed" : "! warning");
  return [h("h2", {}, `${title} (${when(v.at)})`),
    h("div", { id }, table(v.checks, [["Check", (c) => c.check], ["Result", mark], ["Found", (c) => c.detail]]))];
}

async function failed() {
  const p = params();
  const [code, after] = [p.get("code") || "", p.get("after") || ""];
  const route = (extra = {}) => {
    const n = new URLSearchParams();
    if (codes.value.trim()) n.set("code", codes.value.trim());
    for (const [k, x] of Object.entries(extra)) n.set(k, x);
    return `#/failed?${n}`;
  };
  const q = new URLSearchParams({ limit: "100" });
  if (code) q.set("code", code);
  if (after) q.set("after", after);
  const sort = sortOf(p, "at", "desc", (extra) => route(extra));
  sort.params(q);
  const v = await api(`/reports/failed-communications?${q}`);
  const msg = h("span", { id: "failed-export-message" });
  // Every refusal the code filter finds, in the order shown.
  const exp = async () => {
    const n = sort.params(new URLSearchParams());
    if (code) n.set("code", code);
    try { await download(`/reports/failed-communications/export?${n}`, "failed-communications.csv"); } catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  // Filtered by the refusal's code (`bad_psk`, …): those of this page are offered.
  const codes = h("input", { id: "failed-code", value: code, placeholder: "code, e.g. bad_psk", "aria-label": "code", list: "failed-codes" });
  const seen = h("datalist", { id: "failed-codes" }, [...new Set(v.failures.map((f) => f.code))].map((c) => h("option", { value: c })));
  page("Failed communications", h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); location.hash = sort.keep(); } }, labelled("Code", codes), seen, h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", class: "secondary", id: "failed-export", onclick: exp }, "Export CSV"), msg),
    listTable("failed", {
      total: v.failures_total, noun: "refusals", rows: v.failures, empty: "No failed communications.",
      first: after ? sort.keep() : null, next: v.failures_next ? sort.keep({ after: v.failures_next }) : null, sort,
      cols: [["Last seen", (f) => when(f.at), "at"], ["Code", (f) => f.code], ["Reason", (f) => f.reason], ["Address", (f) => show(f.address), "address"],
        ["Times", (f) => String(f.count)], ["First seen", (f) => when(f.first_at)]],
    }),
    h("h2", {}, "Silent agents"), table(v.silent, [["Host", (a) => h("a", { href: `#/agent?id=${a.id}` }, a.hostname)], ["Last contact", (a) => when(a.last_contact)]], "None."));
}

// ---- environment moves ----

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
    if (!canChange()) return [];
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
  const p = params();
  const [action, actor, after] = [p.get("action") || "", p.get("actor") || "", p.get("after") || ""];
  const actionBox = h("input", { id: "audit-action", value: action, placeholder: "action, e.g. sync.run", "aria-label": "action" });
  const actorBox = h("input", { id: "audit-actor", value: actor, placeholder: "operator", "aria-label": "operator" });
  const filters = () => {
    const n = new URLSearchParams();
    if (actionBox.value.trim()) n.set("action", actionBox.value.trim());
    if (actorBox.value.trim()) n.set("actor", actorBox.value.trim());
    return n;
  };
  const route = (extra = {}) => {
    const n = filters();
    for (const [k, x] of Object.entries(extra)) n.set(k, x);
    return `#/audit?${n}`;
  };
  const sort = sortOf(p, "at", "desc", (extra) => route(extra));
  const q = sort.params(new URLSearchParams({ limit: "200" }));
  if (action) q.set("action", action);
  if (actor) q.set("actor", actor);
  if (after) q.set("after", after);
  const v = await api(`/audit?${q}`, { total: true });
  const msg = h("span", { id: "audit-export-message" });
  // The export is of the filtered trail, every page of it, in the order shown.
  const exp = async () => {
    const n = sort.params(new URLSearchParams());
    if (action) n.set("action", action);
    if (actor) n.set("actor", actor);
    try { await download(`/audit/export?${n}`, "audit.csv"); } catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  page("Audit", h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); location.hash = sort.keep(); } }, labelled("Action", actionBox), labelled("Operator", actorBox), h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", class: "secondary", id: "audit-export", onclick: exp }, "Export CSV"), msg),
    listTable("audit", {
      total: v.total, noun: "lines", rows: v.items, empty: "No audit lines.",
      first: after ? sort.keep() : null, next: v.next ? sort.keep({ after: v.next }) : null, sort,
      cols: [["When", (a) => when(a.at), "at"], ["Who", (a) => a.actor], ["Tenant", (a) => show(a.tenant)],
        ["What", (a) => a.action], ["On", (a) => a.subject], ["Detail", (a) => a.detail], ["From", (a) => show(a.address)]],
    }));
}

const ROUTES = {
  "": overview, operators, directories, profiles, cycles, whatif, translation, report, logs, psks, runbooks, batches, dashboard,
  agents, agent, preflight, failed, environments, moves, audit,
};

async function route() {
  if (!state.token) return signInPage();
  if (!state.me) {
    try { state.me = await api("/me"); } catch { return signInPage(); }
  }
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  const allowed = pagesOf().map(([p]) => p);
  const target = allowed.includes(path) || (state.me.role !== "tenant-admin" && HIDDEN_PAGES.includes(path)) ? path : allowed[0];
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

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
  if (opts.total) return { items: v, total: Number(r.headers.get("X-Total-Count") || 0) };
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
function stackedBars(id, items, series, label) {
  if (items.length === 0) return h("p", { class: "muted" }, "Nothing to chart yet.");
  const W = 720, H = 180, pad = 28, bw = Math.max(4, Math.min(40, (W - pad) / items.length - 4));
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
    svg("text", { x: 2, y: pad + 4, class: "legend" }, String(max)), legend, bars);
}

// Horizontal bars for counts by name (devices by state).
function countBars(id, counts) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return h("p", { class: "muted" }, "No devices yet.");
  const W = 720, row = 24, max = Math.max(1, ...entries.map(([, v]) => v));
  return svg("svg", { id, class: "chart", viewBox: `0 0 ${W} ${entries.length * row + 4}`, role: "img", "aria-label": "devices by state" },
    entries.map(([k, v], i) => svg("g", {},
      svg("text", { x: 0, y: i * row + 16, class: "legend" }, k),
      svg("rect", { x: 140, y: i * row + 4, width: Math.max(2, ((W - 220) * v) / max), height: row - 8, class: "state-" + k.replace(/[^a-z]/g, "") }),
      svg("text", { x: 146 + ((W - 220) * v) / max, y: i * row + 16, class: "legend" }, String(v)))));
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
function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", {}, label), control, hint ? h("small", { class: "muted" }, hint) : "");
}
const lines = (t) => t.split(/\r?\n/).map((x) => x.trim()).filter(Boolean);
const orNull = (t) => (t.trim() === "" ? null : t.trim());
const numOrNull = (t) => (t.trim() === "" ? null : Number(t));

// An error from the API names the field first (`device_state.join: …`): shown by the form, and the
// field it names is marked.
function formError(form, box, e) {
  const msg = String(e.message || e);
  box.replaceChildren(h("p", { class: "error" }, msg));
  form.querySelectorAll(".invalid").forEach((x) => x.classList.remove("invalid"));
  const name = msg.split(":")[0].trim();
  const el = form.querySelector(`[data-field="${CSS.escape(name)}"]`) || form.querySelector(`[name="${CSS.escape(name.replace(/\./g, "-"))}"]`);
  if (el) el.classList.add("invalid");
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

function table(rows, cols, empty = "Nothing yet.") {
  if (!rows || rows.length === 0) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, cols.map(([title]) => h("th", {}, title)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map(([, get]) => h("td", {}, get(r)))))));
}

const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "—");
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
  ["report", "Object report"], ["logs", "Message logs"], ["psks", "Pre-shared keys"], ["runbooks", "Runbooks"], ["batches", "Batches"], ["dashboard", "Migration dashboard"],
  ["agents", "Agents"], ["failed", "Failed communications"], ["environments", "Environments"], ["moves", "Environment moves"], ["audit", "Audit"],
];
const TENANT_PAGES = [["environments", "Environments"], ["moves", "Environment moves"], ["audit", "Audit"]];
// Pages reached from others (not in the navigation).
const HIDDEN_PAGES = ["agent", "preflight"];

const pagesOf = () => (state.me.role === "tenant-admin" ? TENANT_PAGES : ADMIN_PAGES);

function nav(current) {
  document.getElementById("nav").replaceChildren(...pagesOf().map(([p, t]) => h("a", { href: "#/" + p, class: p === current ? "active" : false }, t)));
  const who = state.me.role === "viewer" ? "viewer, read-only" : state.me.tenant ? "admin of " + state.me.tenant : "ferry admin";
  document.getElementById("who").replaceChildren(`${state.me.name} (${who}) `,
    h("button", { class: "secondary", id: "signout", onclick: signOut }, "Sign out"));
}

// The seed's "Checklist" and "Agent Preparation", ticked from ferry's state.
async function readiness() {
  const [dirs, profiles, tr, psks, ep, runbooks, batches, agents, warnings, errors] = await Promise.all([
    api("/directories"), api("/profiles"), api("/translation?limit=1"), api("/psks"), api("/agent-endpoint").catch(() => null),
    api("/runbooks"), api("/batches?computers=false"), api("/agents?limit=1", { total: true }), api("/logs?level=warning&limit=1", { total: true }), api("/logs?level=error&limit=1", { total: true }),
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
  page("Readiness",
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

function ruleRow(r = {}) {
  const row = h("div", { class: "rule" },
    input("", r.source_attribute || "", { class: "rule-source", placeholder: "source attribute (mail, upn, employeeId…)" }),
    " → ", input("", r.target_attribute || "", { class: "rule-target", placeholder: "target attribute" }),
    input("", (r.object_types || []).join(","), { class: "rule-types", placeholder: "types: user,group (empty: all)" }),
    input("", r.transforms && r.transforms.length ? JSON.stringify(r.transforms) : "", { class: "rule-transforms", placeholder: 'transforms, e.g. [{"replace_suffix":["@a.com","@b.com"]}]' }),
    h("label", { class: "inline" }, h("input", { type: "checkbox", class: "rule-case", checked: !!r.case_sensitive }), " case-sensitive"),
    h("button", { type: "button", class: "secondary", onclick: () => row.remove() }, "Remove"));
  return row;
}

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
      field("Mode", choice("profile-mode", [["match-only", "match only"], ["create", "create unmatched"], ["update", "create and update"]], s.mode)),
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
        const t = row.querySelector(".rule-transforms").value.trim();
        if (t) {
          try { r.transforms = JSON.parse(t); } catch { throw new Error(`match[${i}].transforms: not JSON`); }
        }
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
  page("Sync profiles", table(v, [["Profile", (p) => p.name], ["Source → target", (p) => `${p.source} → ${p.target}`], ["Mode", (p) => p.mode],
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
      (c) => `cycle ${c.id} (${c.profile})`),
    table(v, [["Cycle", (c) => c.id], ["Profile", (c) => c.profile], ["Trigger", (c) => c.trigger], ["Status", (c) => c.status],
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
  const offset = Number(p.get("offset") || 0);
  const q = new URLSearchParams({ limit: "100", offset: String(offset), writes_limit: status === "writes" ? "200" : "0" });
  if (status && status !== "writes") q.set("status", status);
  let v;
  try { v = await api(`/profiles/${enc(name)}/whatif?${q}`); } catch (e) {
    return page("What-If", h("p", { class: "muted" }, `${name}: ${e.message}`));
  }
  const go = (pr, st, o = 0) => { location.hash = `#/whatif?profile=${enc(pr)}&status=${st}&offset=${o}`; };
  const profileSel = h("select", { id: "whatif-profile", onchange: (e) => go(e.target.value, status) },
    profiles.map((x) => h("option", { value: x.name, selected: x.name === name }, x.name)));
  const statusSel = h("select", { id: "whatif-status", onchange: (e) => go(name, e.target.value) },
    [["", "all decisions"], ["matched", "matched"], ["unmatched", "unmatched"], ["ambiguous", "ambiguous"], ["conflict", "conflict"], ["refused", "refused (privileged)"], ["excluded", "excluded"], ["error", "override errors"], ["writes", "writes"]]
      .map(([x, t]) => h("option", { value: x, selected: x === status }, t)));
  const msg = h("p", { id: "whatif-message" });
  const approve = async () => {
    try { await post(`/profiles/${enc(name)}/approve`, { plan_hash: v.plan.hash }); route(); }
    catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  const c = v.plan.counts;
  const overrides = await api(`/profiles/${enc(name)}/overrides`);
  const ov = overrideTools(profiles.find((x) => x.name === name), overrides);
  const candidates = (d) => (d.candidates || []).map((t, i) => [i ? ", " : "", t,
    d.status === "ambiguous" && canChange() ? [" ", h("button", { class: "secondary pin-candidate", title: `Pin to ${t}`, onclick: () => ov.pin(d, t) }, "pin")] : ""]);
  const body = status === "writes"
    ? [h("p", { class: "muted" }, `${v.writes_total} writes`), table(v.writes, [["Operation", (w) => w.op], ["Kind", (w) => show(w.kind)], ["Object", (w) => show(w.name || w.target_id || w.source_id)], ["Write", (w) => JSON.stringify(w.attributes || w.changes || w)]], "No writes.")]
    : [h("p", { class: "muted" }, `${v.decisions_total} decisions`), ov.panel,
      table(v.decisions, [["Kind", (d) => d.kind], ["Status", (d) => d.status], ["Source", (d) => d.source_upn || d.source_name],
        ["Target", (d) => show(d.target_upn || d.target_name)], ["Rule", (d) => show(d.rule == null ? null : v.plan.rules[d.rule])], ["Candidates", candidates],
        ["", (d) => [h("a", { href: `#/report?q=${enc(d.source_id)}` }, "report"), " ", ov.actions(d)]]], "No decisions."),
      h("p", {}, offset > 0 ? h("button", { class: "secondary", onclick: () => go(name, status, Math.max(0, offset - 100)) }, "Previous") : "",
        " ", offset + 100 < v.decisions_total ? h("button", { class: "secondary", onclick: () => go(name, status, offset + 100) }, "Next") : ""),
      ov.list];
  page("What-If",
    h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, profileSel, statusSel),
    h("p", { id: "whatif-summary" }, `Plan of cycle ${v.plan.cycle_id}: ${c.matched} matched, ${c.unmatched} unmatched, ${c.ambiguous} ambiguous, ${c.excluded || 0} excluded, ${c.errors || 0} override errors, ${v.writes_total} writes. `,
      v.approved ? h("span", { class: "ok" }, "Approved: the next cycle exports.")
        : v.needs_approval ? (canChange() ? h("button", { id: "whatif-approve", onclick: approve }, "Approve") : h("span", { class: "muted" }, "Awaits an admin's approval."))
          : h("span", { class: "muted" }, "Nothing to approve.")),
    msg, ...body);
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
    } }, h("h3", {}, title), body, h("p", { class: "inline" }, reason, " ", h("button", { type: "submit", id: "override-save" }, "Save"), " ",
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
      h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); find(); } }, box, h("button", { type: "submit", id: "override-find" }, "Find"),
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
  const [v, profiles] = await Promise.all([api(`/translation?${f}${after ? "&after=" + enc(after) : ""}`), api("/profiles")]);
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
  const go = (e) => { e && e.preventDefault(); location.hash = route(); };
  kinds.addEventListener("change", go);
  prof.addEventListener("change", go);
  const msg = h("span", { id: "export-message" });
  // Exports are of the list as filtered (profile, kind, search), every page of it.
  const filters = () => { const n = new URLSearchParams(); for (const [k, el] of [["q", box], ["kind", kinds], ["profile", prof]]) if (el.value) n.set(k, el.value); return n; };
  const exp = (format, file) => async () => {
    const n = filters();
    n.set("format", format);
    try { await download(`/translation/export?${n}`, file); } catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  page("Translation table",
    h("form", { class: "inline", onsubmit: go }, box, kinds, prof, h("button", { type: "submit" }, "Search")),
    h("p", { class: "inline" }, "Export: ", h("button", { class: "secondary", id: "export-csv", onclick: exp("csv", "translation.csv") }, "CSV"), " ",
      h("button", { class: "secondary", onclick: exp("json", "translation.json") }, "JSON"), " ",
      h("button", { class: "secondary", onclick: exp("sidmap", "sidmap.json") }, "SID map"), " ",
      h("button", { class: "secondary", onclick: exp("usermapping", "usermapping.csv") }, "usermapping.csv"), " ", msg),
    listTable("translation", {
      total: v.total, noun: "entries", rows: v.entries, first: after ? route() : null, next: v.next ? route({ after: v.next }) : null,
      cols: [["Profile", (e) => e.profile], ["Kind", (e) => e.kind], ["Source", (e) => h("a", { href: `#/report?q=${enc(e.source_id)}` }, e.source_upn || e.source_name)],
        ["Target", (e) => e.target_upn || e.target_name], ["Source SID", (e) => show(e.source_sid)], ["Target SID", (e) => show(e.target_sid)], ["Rule", (e) => show(e.rule)]],
    }));
}

// A list's table with its total, what this page shows of it, and its pager: `first` and `next`
// are console routes (keyset pages: the server gives the next page's cursor), null when there is
// none. Shared by the list pages; `id` names its parts (`{id}-total`, `{id}-next`, `{id}-first`).
function listTable(id, { total, noun, rows, cols, first, next, empty = "Nothing found." }) {
  return h("div", { class: "list", id: id + "-list" },
    h("p", { class: "muted", id: id + "-total" }, `${total} ${noun}` + (rows.length < total ? `, ${rows.length} on this page` : "")),
    table(rows, cols, empty),
    first || next ? h("p", { class: "inline pager" },
      first ? h("a", { href: first, id: id + "-first" }, "First page") : "", " ",
      next ? h("a", { href: next, id: id + "-next" }, "Next page") : "") : "");
}

// The seed's "Single Object Report": everything ferry knows about one object.
async function report() {
  const q = params().get("q") || "";
  const box = h("input", { id: "report-q", value: q, placeholder: "name, UPN, mail, object id or SID" });
  const form = h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); location.hash = `#/report?q=${enc(box.value.trim())}`; } },
    box, h("button", { type: "submit", id: "report-go" }, "Find"));
  if (!q) return page("Single object report", form, h("p", { class: "muted" }, "Look up a user, group or device by any of its names or ids."));
  const v = await api(`/report/object?q=${enc(q)}`);
  const attrs = (o) => table([["Kind", o.kind], ["Id", o.id], ["DN", o.dn], ["Name", o.name], ["UPN", o.upn], ["Mail", o.mail], ["SID", o.sid],
    ["uid / gid", o.uid_number == null ? null : `${o.uid_number} / ${show(o.gid_number)}`], ["Members", (o.members || []).length || null],
    ...(o.attrs || []).map(([k, x]) => [k, x])].filter(([, x]) => x != null && x !== ""), [["Attribute", (r) => r[0]], ["Value", (r) => show(r[1])]]);
  page("Single object report", form,
    v.objects.length === 0 ? h("p", { class: "muted", id: "report-none" }, `Nothing found for “${q}”.`) : "",
    v.objects.map((r) => h("section", { class: "report" },
      h("h2", {}, `${r.object.name} in ${r.directory}`), attrs(r.object),
      h("h3", {}, "Decisions"), table(r.profiles, [["Profile", (p) => p.profile], ["Side", (p) => p.side], ["Status", (p) => p.decision.status],
        ["Rule", (p) => show(p.rule)], ["Counterpart", (p) => (p.counterpart ? `${p.counterpart.object.name} (${p.counterpart.directory})` : "—")]], "In no profile."),
      r.profiles.filter((p) => (p.identity || []).length).map((p) => h("div", { class: "identity" },
        h("h3", {}, `Both sides in ${p.profile}`),
        table(p.identity, [["Attribute", (x) => x.attribute], ["Source", (x) => (x.source.length ? x.source.join("; ") : "—")],
          ["Target", (x) => (x.target.length ? x.target.join("; ") : "—")]]))),
      h("h3", {}, "History"), table(r.history, [["Cycle", (x) => x.cycle_id], ["When", (x) => when(x.at)], ["Profile", (x) => x.profile], ["Change", (x) => x.change]], "No changes recorded."),
      h("h3", {}, "Message logs"), table(r.logs, [["When", (l) => when(l.at)], ["Level", (l) => l.level], ["Message", (l) => l.message]], "No messages."))));
}

async function logs() {
  const p = params();
  const [level, profile, object, cycle, before] = [p.get("level") || "", p.get("profile") || "", p.get("object") || "", p.get("cycle") || "", p.get("before") || ""];
  const q = new URLSearchParams({ limit: "200" });
  if (level) q.set("level", level);
  if (profile) q.set("profile", profile);
  if (object) q.set("object", object);
  if (cycle) q.set("cycle", cycle);
  // Newest first, paged by id (`before`), every page counted: the total is every entry the
  // filters find, not the page.
  const [v, profiles] = await Promise.all([api(`/logs?${q}${before ? "&before=" + enc(before) : ""}`, { total: true }), api("/profiles")]);
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
  const apply = (e) => { e && e.preventDefault(); location.hash = route(); };
  sel.addEventListener("change", apply);
  prof.addEventListener("change", apply);
  const rows = v.items;
  const last = rows.length ? rows[rows.length - 1].id : null;
  const msg = h("span", { id: "logs-export-message" });
  // The export is of the filtered list, every page of it.
  const exp = async () => {
    const n = new URLSearchParams(q);
    n.delete("limit");
    try { await download(`/logs/export?${n}`, "logs.csv"); } catch (e) { msg.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  page("Message logs", h("form", { class: "inline", onsubmit: apply }, sel, prof, obj, h("button", { type: "submit" }, "Filter"),
    cycle ? h("span", { class: "muted" }, `cycle ${cycle}`) : "",
    h("button", { type: "button", class: "secondary", id: "logs-export", onclick: exp }, "Export CSV"), msg),
    listTable("logs", {
      total: v.total, noun: "entries", rows, empty: "No messages.",
      first: before ? route() : null, next: last != null && rows.length === 200 && last > 1 ? route({ before: String(last) }) : null,
      cols: [["When", (l) => when(l.at)], ["Level", (l) => h("span", { class: "level-" + l.level }, l.level)], ["Profile", (l) => show(l.profile)], ["Code", (l) => show(l.code)],
        ["Object", (l) => (l.object_id ? h("a", { href: `#/report?q=${enc(l.object_id)}` }, l.object_name || l.object_id) : "—")], ["Message", (l) => l.message]],
    }));
}

// ---- devices ----

async function psks() {
  const ep = await api("/agent-endpoint").catch(() => null);
  const name = h("input", { id: "psk-name", placeholder: "wave-1" });
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
  page("Pre-shared keys",
    h("p", {}, "Agents connect to ", h("code", { id: "agent-url" }, ep ? show(ep.url) : "—"), ", certificate SHA-256 ", h("code", { id: "cert-sha" }, ep ? show(ep.certificate_sha256) : "—")),
    canChange() ? h("form", { class: "inline", onsubmit: create }, name, h("button", { type: "submit", id: "psk-create" }, "Create")) : "", out, list);
  await load();
}

// A list of scripts (pre-/post-migration, Linux app commands) as repeatable rows.
function scriptsEditor(id, scripts) {
  const box = h("div", { id, class: "scripts", "data-field": id.replace(/^rb-/, "").replace(/-/g, "_") });
  const row = (s = {}) => {
    const r = h("div", { class: "script" },
      input("", s.name || "", { class: "s-name", placeholder: "name" }),
      choice("", ["powershell", "cmd", "sh", "bash"], s.interpreter || "powershell"),
      input("", s.timeout_seconds || 600, { class: "s-timeout", type: "number", min: 1, title: "timeout (s)" }),
      h("label", { class: "inline" }, h("input", { type: "checkbox", class: "s-required", checked: s.required !== false }), " required"),
      h("button", { type: "button", class: "secondary", onclick: () => r.remove() }, "Remove"),
      area("", s.body || "", { class: "s-body", placeholder: "script" }));
    return r;
  };
  box.append(...(scripts || []).map(row));
  const add = h("button", { type: "button", class: "secondary", onclick: () => box.append(row()) }, "Add a script");
  const value = () => [...box.querySelectorAll(".script")].map((r) => ({ name: r.querySelector(".s-name").value.trim(), interpreter: r.querySelector("select").value,
    body: r.querySelector(".s-body").value, timeout_seconds: Number(r.querySelector(".s-timeout").value || 600), required: r.querySelector(".s-required").checked }));
  return { el: h("div", {}, box, add), value };
}

const JOINS = [["none", "none"], ["ad", "Active Directory"], ["entra-id", "Microsoft Entra ID"]];

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
      field("Mode", choice("rb-perm-mode", [["none", "Don't update permissions"], ["add", "Add target, keep source"], ["add-and-remove", "Replace source with target"]], pu.mode || "none")),
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
  const joins = (r) => `${r.device_state.remove_from} → ${r.device_state.join}`;
  page("Runbooks", table(v, [["Name", (r) => r.name], ["Source → target", (r) => `${r.source_directories.join(", ")} → ${r.target_directories.join(", ")}`],
    ["Prerequisites", (r) => r.prerequisites.join(", ") || "—"], ["Leave → join", joins], ["Permissions", (r) => r.permission_updates.mode],
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
    ["Computers", (b) => b.computer_count], ["Available From", (b) => show(b.available_from)], ["Enforced After", (b) => `${b.enforced_after} ${b.time_zone}`],
    ["", (b) => [h("button", { class: "secondary whatif", onclick: whatifOf(b) }, "Device What-If"), " ", h("a", { href: `#/dashboard?batch=${enc(b.name)}` }, "Dashboard"), " ",
      h("a", { href: `#/preflight?batch=${enc(b.name)}` }, "Tenant pre-flight"), " ",
      b.origin === "file" ? h("span", { class: "muted configured" }, "in ferry.toml")
        : canChange() ? [h("button", { class: "secondary", onclick: () => formSlot.replaceChildren(batchForm(b, dirs, rbs, saved)) }, "Edit"), " ",
          h("button", { class: "secondary", onclick: remove(b) }, "Delete")] : ""]]], "No batches yet."), msg, formSlot);
  if (canChange()) formSlot.replaceChildren(dirs.length >= 1 ? batchForm(null, dirs, rbs, saved) : h("p", { class: "muted" }, "Add directories first."));
}

// Per batch: devices by state, live. Polls every three seconds while the page is shown.
async function dashboard() {
  const v = await api("/batches?computers=false");
  if (v.length === 0) return page("Migration dashboard", h("p", { class: "muted" }, "No batches yet: create one on the Batches page."));
  const name = params().get("batch") || v[0].name;
  const stateFilter = params().get("state") || "";
  const at = state.render;
  const sel = h("select", { id: "dash-batch", onchange: (e) => { location.hash = `#/dashboard?batch=${enc(e.target.value)}`; } },
    v.map((b) => h("option", { value: b.name, selected: b.name === name }, b.name)));
  const chart = h("div", { id: "dash-chart" });
  const summary = h("p", { id: "dash-summary" });
  const wave = h("div", { id: "dash-wave" });
  const list = h("div", { id: "dash-agents" });
  const stamp = h("span", { class: "muted", id: "dash-updated" });
  const draw = async () => {
    const q = new URLSearchParams({ limit: "200" });
    if (stateFilter) q.set("state", stateFilter);
    const p = await api(`/batches/${enc(name)}/progress?${q}`);
    chart.replaceChildren(countBars("chart-states", p.states));
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
    const done = p.states.succeeded || 0, failed = p.states.failed || 0;
    summary.replaceChildren(`${p.computers} computers: ${done} succeeded, ${failed} failed, ${p.computers - done - failed} to go. Filter: `,
      ...["", ...Object.keys(p.states).filter((s) => s !== "no agent yet")].map((s) =>
        h("a", { href: `#/dashboard?batch=${enc(name)}&state=${enc(s)}`, class: s === stateFilter ? "active-filter" : "" }, (s || "all") + " ")));
    list.replaceChildren(table(p.agents, [["Computer", (a) => h("a", { href: `#/agent?id=${a.id}` }, a.hostname)], ["State", (a) => a.state],
      ["Step", (a) => show(a.last_step)], ["Progress", (a) => (a.progress == null ? "—" : h("progress", { max: 100, value: a.progress }, `${a.progress}%`))],
      ["Last contact", (a) => h("span", { class: a.silent ? "bad" : "" }, when(a.last_contact))]], "No agents of this batch have enrolled yet."));
    stamp.textContent = `updated ${when(Date.now())}`;
  };
  page(`Migration dashboard`, h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, sel, stamp), wave, summary, chart, list);
  await draw();
  const timer = setInterval(async () => {
    if (state.render !== at) return clearInterval(timer);
    try { await draw(); } catch (e) { if (!(e instanceof Stale)) stamp.textContent = "update failed: " + e.message; }
  }, 3000);
}

async function agents() {
  const p = params();
  const [search, st, after] = [p.get("q") || "", p.get("state") || "", p.get("after") || ""];
  // Keyset pages by id (`after`: the last id of the page before); the total counts every match.
  const q = new URLSearchParams({ limit: "100" });
  if (search) q.set("search", search);
  if (st) q.set("state", st);
  if (after) q.set("after", after);
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
  const go = () => { location.hash = routeTo(); };
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
  const last = v.items.length === 100 ? v.items[v.items.length - 1].id : null;
  page("Agents", pending, h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); go(); } }, box, states, h("button", { type: "submit" }, "Search")),
    listTable("agents", {
      total: v.total, noun: "agents", rows: v.items, empty: "No agents yet.",
      first: after ? routeTo() : null, next: last != null ? routeTo({ after: String(last) }) : null,
      cols: [["Host", (a) => [h("a", { href: `#/agent?id=${a.id}` }, a.hostname), a.mismatch ? h("span", { class: "bad mismatch", title: a.mismatch }, " ⚠ claims differ") : ""]],
        ["OS", (a) => a.os], ["Batch", (a) => show(a.batch)], ["State", (a) => a.state],
        ["Step", (a) => show(a.last_step)], ["Version", (a) => a.agent_version], ["Last contact", (a) => h("span", { class: a.silent ? "bad" : "" }, when(a.last_contact))]],
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
  const v = await api("/reports/failed-communications");
  page("Failed communications", table(v.failures, [["Last seen", (f) => when(f.at)], ["Code", (f) => f.code], ["Reason", (f) => f.reason], ["Address", (f) => show(f.address)],
    ["Times", (f) => String(f.count)], ["First seen", (f) => when(f.first_at)]], "No failed communications."),
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
  const v = await api("/audit?limit=200");
  page("Audit", table(v, [["When", (a) => when(a.at)], ["Who", (a) => a.actor], ["Tenant", (a) => show(a.tenant)],
    ["What", (a) => a.action], ["On", (a) => a.subject], ["Detail", (a) => a.detail], ["From", (a) => show(a.address)]]));
}

const ROUTES = {
  "": readiness, directories, profiles, cycles, whatif, translation, report, logs, psks, runbooks, batches, dashboard,
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

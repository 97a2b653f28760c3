//! The whole admin API against the committed document (docs/openapi.json), property-based.
//!
//! A server runs in-process with real state (file directories, two profiles run once, tenants,
//! operators, environments and moves, a pre-shared key, enrolled and held devices, a runbook, a
//! batch with a run, a bulk enrolment token, an override, a console directory and profile). For
//! every operation of the document, proptest generates requests from the document: path
//! parameters (names of objects that exist, and hostile ones), query parameters (extreme and
//! non-numeric integers among them) and bodies from the request schema (valid, wrong types,
//! missing and extra fields, huge values, bodies that are not JSON, wrong content types, over
//! the size limit). A third of the requests mostly make sense (names that exist, valid values),
//! to get past the refusals into the handlers. Each request is sent as the install's admin, the
//! tenant admins of a move's two sides, a viewer and nobody (no token), over a plain socket (no
//! client normalises `..` or `%00` away). Operations run reads first, removals last.
//!
//! A case fails on: a 5xx; a connection dropped or left without an answer; a panic anywhere in
//! the process (the server runs in it); a status the document does not give for the operation;
//! an answer whose content type or JSON body does not conform to the document (strictly: no
//! field the document does not name); a 2xx to nobody, to a tenant admin on a ferry admin's
//! part, or to a viewer changing something; a 2xx to a body the document forbids.
//!
//! `FERRY_API_FUZZ_CASES` (default 48) cases an operation; `FERRY_API_FUZZ_SEED` replays a run
//! (every failure names its seed; without it the seed is new each run); `FERRY_API_FUZZ_OPS` (a
//! substring of `METHOD /path`) limits the run to some operations; `FERRY_API_FUZZ_TRACE` prints
//! every request and answer, `FERRY_API_FUZZ_VERBOSE` the statuses each operation got.
//!
//! A body the request schema forbids is never taken, an array where the document says object
//! included (serde would read a struct from an array of its fields; `api::Object` refuses it).

#![allow(clippy::unwrap_used)] // setup fails loudly on purpose

mod support;

use ferry_core::snapshot::render_json;
use ferry_demo as sample;
use ferry_server::settings::Settings;
use ferry_server::{AgentEndpoint, Server, ServerOptions};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::schema::Doc;

// ---------------------------------------------------------------------------------------------
// Panics anywhere in the process (the server's tasks included) are recorded.

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            if let Ok(mut p) = PANICS.lock() {
                p.push(format!("thread `{thread}`: {info}"));
            }
            previous(info);
        }));
    });
}

fn panics_since(n: usize) -> Vec<String> {
    PANICS
        .lock()
        .map(|p| p[n.min(p.len())..].to_vec())
        .unwrap_or_default()
}

fn panic_count() -> usize {
    PANICS.lock().map(|p| p.len()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The document's operations.

#[derive(Clone, Debug)]
struct Param {
    name: String,
    in_path: bool,
    required: bool,
    schema: Value,
}

#[derive(Clone, Debug)]
struct Op {
    method: String,
    template: String,
    params: Vec<Param>,
    /// (content type, schema, required)
    body: Option<(String, Value, bool)>,
    responses: Map<String, Value>,
    secured: bool,
}

impl Op {
    fn id(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
    /// The parts of the API a tenant admin uses (`Operator` extractors); the rest needs a ferry
    /// admin (THREAT-MODEL.md).
    fn tenant_admin_may(&self) -> bool {
        let t = self.template.as_str();
        t.starts_with("/environments")
            || t.starts_with("/moves")
            || t == "/me"
            || t == "/sessions"
            || t == "/audit"
            || t == "/audit/export"
            || (t == "/tenants" && self.method == "GET")
    }
    fn changes(&self) -> bool {
        self.method != "GET" && self.template != "/sessions"
    }
}

fn operations(doc: &Value) -> Vec<Op> {
    let global_security = doc.get("security").is_some_and(|s| {
        s.as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x.as_object().is_some_and(|o| !o.is_empty()))
        })
    });
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, o) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let params = o
                .get("parameters")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| Param {
                    name: p["name"].as_str().unwrap().to_string(),
                    in_path: p["in"] == "path",
                    required: p["required"].as_bool().unwrap_or(false),
                    schema: p.get("schema").cloned().unwrap_or(json!({})),
                })
                .collect();
            let body = o.get("requestBody").map(|b| {
                let (ct, c) = b["content"].as_object().unwrap().iter().next().unwrap();
                (
                    ct.clone(),
                    c.get("schema").cloned().unwrap_or(json!({})),
                    b["required"].as_bool().unwrap_or(false),
                )
            });
            let secured = match o.get("security").and_then(Value::as_array) {
                Some(s) => s
                    .iter()
                    .any(|x| x.as_object().is_some_and(|o| !o.is_empty())),
                None => global_security,
            };
            ops.push(Op {
                method: method.to_uppercase(),
                template: template.clone(),
                params,
                body,
                responses: o["responses"].as_object().unwrap().clone(),
                secured,
            });
        }
    }
    // Reads first, then creations and changes, then ends (cancel, reject, refuse, retire,
    // revoke), removals last: the state the fuzzer set up (and its callers) lasts as long as
    // it can.
    let rank = |o: &Op| match o.method.as_str() {
        "GET" => 0,
        "POST"
            if ["/cancel", "/reject", "/refuse", "/retire", "/revoke"]
                .iter()
                .any(|e| o.template.ends_with(e)) =>
        {
            3
        }
        "POST" => 1,
        "PUT" => 2,
        _ => 4,
    };
    ops.sort_by(|a, b| (rank(a), &a.template).cmp(&(rank(b), &b.template)));
    ops
}

/// The operation the router gives `method path` (static segments before parameters, as axum's
/// router picks), or the status the router answers itself: 404 (no such path), 405 (the path is
/// another operation's, without this method).
fn route<'a>(ops: &'a [Op], method: &str, path: &str) -> Result<&'a Op, u16> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<(Vec<bool>, &str)> = None;
    for op in ops {
        let t: Vec<&str> = op.template.trim_start_matches('/').split('/').collect();
        if t.len() != segs.len() {
            continue;
        }
        let mut statics = Vec::new();
        let mut ok = true;
        for (i, (a, b)) in t.iter().zip(&segs).enumerate() {
            if a.starts_with('{') {
                // axum gives a parameter an empty segment, except the last one (`/x/` is not
                // `/x/{id}`).
                if b.is_empty() && i + 1 == t.len() {
                    ok = false;
                }
                statics.push(false);
            } else if a == b {
                statics.push(true);
            } else {
                ok = false;
            }
        }
        if ok && best.as_ref().is_none_or(|(s, _)| statics > *s) {
            best = Some((statics, op.template.as_str()));
        }
    }
    let Some((_, template)) = best else {
        return Err(404);
    };
    ops.iter()
        .find(|o| o.template == template && o.method == method)
        .ok_or(405)
}

// ---------------------------------------------------------------------------------------------
// A plain HTTP/1.1 client: the request goes out byte for byte as generated.

#[derive(Clone)]
struct Req {
    method: String,
    /// What the fuzzer meant (its template), for the failure message.
    op: String,
    path: String,
    query: String,
    content_type: Option<String>,
    body: Vec<u8>,
    /// What kind of body: `valid`, `wrong type at …`, …
    note: String,
    /// Why the body breaks the document's request schema (none: it does not, or is not JSON).
    breaks: Option<String>,
}

impl Req {
    fn target(&self) -> String {
        if self.query.is_empty() {
            format!("/api/v1{}", self.path)
        } else {
            format!("/api/v1{}?{}", self.path, self.query)
        }
    }
}

fn clip(b: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > n {
        format!(
            "{}… ({} bytes in all)",
            s.chars().take(n).collect::<String>(),
            b.len()
        )
    } else {
        s.into_owned()
    }
}

impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}  (made for {})",
            self.method,
            clip(self.target().as_bytes(), 300),
            self.op
        )?;
        if let Some(ct) = &self.content_type {
            write!(f, "\n      Content-Type: {ct}")?;
        }
        if !self.body.is_empty() || self.note != "no body" {
            write!(f, "\n      body ({}): {}", self.note, clip(&self.body, 600))?;
        }
        if let Some(b) = &self.breaks {
            write!(
                f,
                "\n      (the body breaks the document: {})",
                clip(b.as_bytes(), 300)
            )?;
        }
        Ok(())
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn send(addr: SocketAddr, req: &Req, token: Option<&str>) -> Result<Answer, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.set_write_timeout(Some(Duration::from_secs(60))).ok();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.method,
        req.target(),
        req.body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(ct) = &req.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&req.body);
    // A server that refuses a body without reading it all closes the connection under the rest
    // of it: the answer is read whatever the write says.
    let wrote = s.write_all(&out);
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let parsed = parse_answer(&raw);
    match (parsed, wrote, read) {
        (Ok(a), _, _) => Ok(a),
        (Err(e), w, r) => Err(format!(
            "{e} (write: {w:?}, read: {r:?}, {} bytes: {})",
            raw.len(),
            clip(&raw, 200)
        )),
    }
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the connection closed without a complete answer")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "a head that is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("a bad status line `{status_line}`"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let nl = rest[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("the connection closed inside a chunked body")?;
            let size = std::str::from_utf8(&rest[at..at + nl])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or("a bad chunk size")?;
            at += nl + 2;
            if size == 0 {
                break;
            }
            if rest.len() < at + size + 2 {
                return Err("the connection closed inside a chunk".into());
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
        body
    } else if let Some(n) = header("content-length") {
        let n: usize = n.parse().map_err(|_| "a bad Content-Length")?;
        if rest.len() < n {
            return Err(format!(
                "the connection closed after {} of {n} bytes of the body",
                rest.len()
            ));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// What exists (for names that reach past the 404s), and hostile strings.

#[derive(Default, Clone)]
struct World {
    pools: BTreeMap<&'static str, Vec<String>>,
    /// Make requests that mostly make sense (names that exist, valid enumerations and bodies),
    /// to get past the refusals into the handlers' own work.
    sane: bool,
}

impl World {
    fn add(&mut self, pool: &'static str, v: impl Into<String>) {
        let v = v.into();
        let p = self.pools.entry(pool).or_default();
        if !p.contains(&v) {
            p.push(v);
        }
    }
    fn pool(&self, name: &str) -> Option<Vec<String>> {
        self.pools.get(name).filter(|p| !p.is_empty()).cloned()
    }
    fn names(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .pools
            .iter()
            .filter(|(k, _)| !matches!(**k, "dates" | "passwords" | "base64" | "csv"))
            .flat_map(|(_, v)| v.clone())
            .collect();
        all.sort();
        all.dedup();
        all
    }
    /// The pool a parameter or property of this name draws from.
    fn pool_for(&self, template: &str, name: &str) -> Option<Vec<String>> {
        let key = match name {
            "profile" => "profiles",
            "name" if template == "/sessions" => "sign_in_names",
            "batch" => "batches",
            "environment" => "environments",
            "cycle" | "before" => "cycles",
            "source_directory" | "target_directory" | "source_directories"
            | "target_directories" | "directories" | "directory" | "source" | "target"
                if !template.contains("/overrides") =>
            {
                "directories"
            }
            "source" | "target" | "q" | "object" | "search" => "objects",
            "runbooks" | "prerequisites" => "runbooks",
            "target_tenant" | "tenant" => "tenants",
            "add" | "remove" | "device" | "hostname" => "computers",
            "plan_hash" => "plan_hashes",
            "password" => "passwords",
            "created" | "expires" | "available_from" | "enforced_after" => "dates",
            "time_zone" => "time_zones",
            "content_base64" => "base64",
            "kind" if template.contains("enrolment-tokens") => "token_kinds",
            "kind" => "kinds",
            "state" | "status" => "states",
            "level" => "levels",
            "format" => "formats",
            "file_name" => "file_names",
            "owner" | "created_by" | "modified_by" | "email" | "package_upn" => "emails",
            "schedule" | "timeout" | "full_import_every" => "durations",
            "mode" => "modes",
            "url" | "graph_url" | "login_url" => "urls",
            _ => {
                // A path parameter: the collection before it.
                let segs: Vec<&str> = template.split('/').collect();
                let i = segs.iter().position(|s| *s == format!("{{{name}}}"))?;
                match *segs.get(i.checked_sub(1)?)? {
                    "profiles" => "profiles",
                    "directories" => "directories",
                    "batches" => "batches",
                    "runbooks" => "runbooks",
                    "psks" => "psks",
                    "operators" => "operators",
                    "environments" => "environments",
                    "moves" => "moves",
                    "tenants" => "tenants",
                    "cycles" => "cycles",
                    "agents" => "agents",
                    "runs" => "runs",
                    "enrollment-requests" => "enrollment_requests",
                    "enrolment-tokens" => "enrolment_tokens",
                    "overrides" => "objects",
                    _ => return None,
                }
            }
        };
        self.pool(key)
    }
}

fn hostile() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        ".",
        "..",
        "../..",
        "../../etc/passwd",
        "%00",
        "\0",
        "a\0b",
        "a/b",
        "a\\b",
        "Smith, Ann",
        "=cmd|' /C calc'!A0",
        "+SUM(1+1)",
        "-2+3",
        "@SUM(A1)",
        "ünïcødé",
        "名前",
        "😀",
        "\u{202e}txt.exe",
        "\r\nX-Injected: 1",
        "' OR '1'='1",
        "<script>alert(1)</script>",
        "${jndi:ldap://127.0.0.1:9/x}",
        "CON",
        "-1",
        "0",
        "9223372036854775808",
        "18446744073709551615",
        "null",
        "true",
        "[]",
        "{}",
        "admin",
        "config",
        "session:admin",
        "tenant-admin:contoso",
        "viewer",
        "*",
        "(cn=*)",
        "usermapping.csv",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    v.push("x".repeat(5000));
    v.push("a".repeat(65));
    v.push("ß".repeat(300));
    v
}

/// Path segments sent as they are (not percent-encoded): bad escapes, encoded NUL, dot
/// segments spelled with escapes, an encoded slash.
const RAW_SEGMENTS: &[&str] = &[
    "%",
    "%zz",
    "%ff",
    "%00",
    "%2e%2e",
    "%2E",
    "a%2Fb",
    "%C0%AE",
    "%E2%80%AE",
    "a;b=c",
    "~",
];

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn select<T: Clone + std::fmt::Debug + 'static>(v: Vec<T>) -> BoxedStrategy<T> {
    prop::sample::select(v).boxed()
}

/// A string: a name that exists (of the kind `hint` says, or any), a hostile one, or a made-up
/// one.
fn string_for(w: &World, template: &str, hint: &str) -> BoxedStrategy<String> {
    let fresh = || "[a-z][a-z0-9-]{2,10}".boxed();
    if w.sane {
        return match w.pool_for(template, hint) {
            Some(p) => Union::new_weighted(vec![(6, select(p)), (1, fresh())]).boxed(),
            None => fresh(),
        };
    }
    let mut u: Vec<(u32, BoxedStrategy<String>)> = Vec::new();
    if let Some(p) = w.pool_for(template, hint) {
        u.push((8, select(p)));
    }
    let names = w.names();
    if !names.is_empty() {
        u.push((2, select(names)));
    }
    u.push((3, select(hostile())));
    u.push((2, "[a-zA-Z0-9 ._@-]{0,16}".boxed()));
    u.push((
        1,
        prop::collection::vec(any::<char>(), 0..24)
            .prop_map(|c| c.into_iter().collect())
            .boxed(),
    ));
    Union::new_weighted(u).boxed()
}

const BAD_INTEGERS: &[&str] = &[
    "-1",
    "0",
    "1",
    "2147483648",
    "-2147483649",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "99999999999999999999999",
    "1.5",
    "1e3",
    "0x10",
    " 1",
    "+1",
    "abc",
    "",
    "٣",
    "NaN",
];

/// An integer as a URL writes it (path or query).
fn integer_text(w: &World, template: &str, hint: &str) -> BoxedStrategy<String> {
    if w.sane {
        return match w.pool_for(template, hint) {
            Some(p) => Union::new_weighted(vec![
                (3, select(p)),
                (1, (0i64..60).prop_map(|i| i.to_string()).boxed()),
            ])
            .boxed(),
            None => (0i64..60).prop_map(|i| i.to_string()).boxed(),
        };
    }
    let mut u: Vec<(u32, BoxedStrategy<String>)> = vec![
        (3, (0i64..60).prop_map(|i| i.to_string()).boxed()),
        (
            3,
            select(BAD_INTEGERS.iter().map(|s| s.to_string()).collect()),
        ),
    ];
    if let Some(p) = w.pool_for(template, hint) {
        u.push((5, select(p)));
    }
    Union::new_weighted(u).boxed()
}

fn types_of(s: &Value) -> Vec<String> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// A JSON value from a schema of the document: mostly what it describes, with names that exist
/// and hostile or extreme values in its strings and numbers.
fn value_for(
    doc: &Doc,
    w: &World,
    template: &str,
    schema: &Value,
    hint: &str,
    depth: usize,
) -> BoxedStrategy<Value> {
    let s = doc.resolve(schema);
    if depth > 6 {
        return Just(Value::Null).boxed();
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if w.sane {
            return select(e.clone());
        }
        return Union::new_weighted(vec![
            (8, select(e.clone())),
            (
                1,
                string_for(w, template, hint)
                    .prop_map(Value::String)
                    .boxed(),
            ),
        ])
        .boxed();
    }
    for k in ["oneOf", "anyOf"] {
        if let Some(b) = s.get(k).and_then(Value::as_array) {
            let branches: Vec<BoxedStrategy<Value>> = b
                .iter()
                .map(|b| value_for(doc, w, template, b, hint, depth + 1))
                .collect();
            return Union::new(branches).boxed();
        }
    }
    if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
        let parts: Vec<BoxedStrategy<Value>> = parts
            .iter()
            .map(|p| value_for(doc, w, template, p, hint, depth + 1))
            .collect();
        return parts
            .prop_map(|vs| {
                let mut m = Map::new();
                for v in vs {
                    if let Value::Object(o) = v {
                        m.extend(o);
                    }
                }
                Value::Object(m)
            })
            .boxed();
    }
    let mut types = types_of(s);
    if types.is_empty() {
        types.push(if s.get("properties").is_some() {
            "object".into()
        } else {
            "any".into()
        });
    }
    let per_type: Vec<BoxedStrategy<Value>> = types
        .iter()
        .map(|t| match t.as_str() {
            "null" => Just(Value::Null).boxed(),
            "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
            "string" => string_for(w, template, hint)
                .prop_map(Value::String)
                .boxed(),
            "integer" if w.sane => integer_text(w, template, hint)
                .prop_map(|t| t.parse::<i64>().map(Value::from).unwrap_or_default())
                .boxed(),
            "integer" => {
                let mut u: Vec<(u32, BoxedStrategy<Value>)> = vec![
                    (4, (0i64..100).prop_map(Value::from).boxed()),
                    (
                        2,
                        select(vec![
                            json!(-1),
                            json!(0),
                            json!(i32::MAX),
                            json!(i32::MIN),
                            json!(i64::MAX),
                            json!(i64::MIN),
                            json!(u64::MAX),
                            json!(1.5),
                            json!(1e300),
                        ]),
                    ),
                ];
                if let Some(p) = w.pool_for(template, hint) {
                    let ints: Vec<Value> = p
                        .iter()
                        .filter_map(|s| s.parse::<i64>().ok())
                        .map(Value::from)
                        .collect();
                    if !ints.is_empty() {
                        u.push((4, select(ints)));
                    }
                }
                Union::new_weighted(u).boxed()
            }
            "number" => select(vec![json!(0.0), json!(-1.5), json!(1e300), json!(42)]),
            "array" => {
                let items = s.get("items").cloned().unwrap_or(json!({}));
                prop::collection::vec(value_for(doc, w, template, &items, hint, depth + 1), 0..4)
                    .prop_map(Value::Array)
                    .boxed()
            }
            "object" => object_for(doc, w, template, s, depth),
            _ => select(vec![
                json!(null),
                json!(1),
                json!("x"),
                json!([]),
                json!({}),
            ]),
        })
        .collect();
    Union::new(per_type).boxed()
}

fn object_for(
    doc: &Doc,
    w: &World,
    template: &str,
    s: &Value,
    depth: usize,
) -> BoxedStrategy<Value> {
    let required: Vec<String> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (name, ps) in props {
            let v = value_for(doc, w, template, ps, name, depth + 1);
            let n = name.clone();
            if required.contains(name) {
                fields.push(v.prop_map(move |v| Some((n.clone(), v))).boxed());
            } else {
                fields.push(
                    prop::option::weighted(0.6, v)
                        .prop_map(move |v| v.map(|v| (n.clone(), v)))
                        .boxed(),
                );
            }
        }
    }
    let extra: BoxedStrategy<Vec<(String, Value)>> = match s.get("additionalProperties") {
        Some(ap) if ap.is_object() => prop::collection::vec(
            (
                "[a-zA-Z]{1,8}",
                value_for(doc, w, template, ap, "", depth + 1),
            ),
            0..3,
        )
        .boxed(),
        _ => Just(Vec::new()).boxed(),
    };
    (fields, extra)
        .prop_map(|(fields, extra)| {
            let mut m = Map::new();
            for (k, v) in extra.into_iter().chain(fields.into_iter().flatten()) {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

/// `[[directory]]` and `[[sync_profile]]` entries (the document says only "an object" of them).
fn directory_entry(w: &World) -> BoxedStrategy<Value> {
    let path = select(
        [
            "fabrikam.json",
            "contoso.json",
            "missing.json",
            "../outside.json",
            "/etc/passwd",
            "",
            "data/ferry.db",
        ]
        .map(Value::from)
        .to_vec(),
    );
    let file = (
        path,
        prop::option::of(select(vec![json!("json"), json!("csv"), json!("xml")])),
    )
        .prop_map(|(p, f)| {
            let mut v = json!({"kind": "file", "path": p});
            if let Some(f) = f {
                v["format"] = f;
            }
            v
        });
    let ldap = (
        select(
            [
                "ldap://127.0.0.1:9",
                "ldaps://127.0.0.1:9",
                "http://127.0.0.1:9",
                "ldap://",
                "",
            ]
            .map(Value::from)
            .to_vec(),
        ),
        prop::option::of(select(
            ["1s", "0s", "99999999999999d", "-1s", "x"].map(Value::from).to_vec(),
        )),
        prop::option::of(select(
            ["pw", "", "bind_password_file"].map(Value::from).to_vec(),
        )),
        prop::option::of(select(vec![json!(0), json!(1), json!(u32::MAX), json!(-1)])),
    )
        .prop_map(|(url, timeout, pw, page)| {
            let mut v = json!({"kind": "ldap", "url": url, "base_dn": "dc=contoso,dc=test", "bind_dn": "cn=admin,dc=contoso,dc=test"});
            if let Some(t) = timeout {
                v["timeout"] = t;
            }
            match pw.as_ref().and_then(Value::as_str) {
                Some("bind_password_file") => v["bind_password_file"] = json!("/etc/shadow"),
                Some(_) => v["bind_password"] = pw.unwrap_or_default(),
                None => {}
            }
            if let Some(p) = page {
                v["page_size"] = p;
            }
            v
        });
    let graph = (
        select(
            ["http://127.0.0.1:9", "https://graph.invalid", "", "file:///etc/passwd"]
                .map(Value::from)
                .to_vec(),
        ),
        any::<bool>(),
    )
        .prop_map(|(url, secret)| {
            let mut v = json!({"kind": "graph", "tenant_id": "fabrikam.onmicrosoft.com", "client_id": "c", "graph_url": url, "login_url": url});
            if secret {
                v["client_secret"] = json!("s");
            }
            v
        });
    let names = string_for(w, "/directories/{name}", "name");
    (
        Union::new(vec![file.boxed(), ldap.boxed(), graph.boxed()]),
        names,
    )
        .prop_map(|(mut v, n)| {
            v["name"] = Value::String(n);
            v
        })
        .boxed()
}

fn profile_entry(w: &World) -> BoxedStrategy<Value> {
    let dirs = string_for(w, "/profiles/{name}", "directories");
    (
        string_for(w, "/profiles/{name}", "name"),
        dirs.clone(),
        dirs,
        select(
            ["match-only", "create", "update", "delete", ""]
                .map(Value::from)
                .to_vec(),
        ),
        prop::option::of(select(
            ["15m", "1s", "0s", "99999999999999999d", "18446744073709551615s", "-5m", "m"]
                .map(Value::from)
                .to_vec(),
        )),
        prop::option::of(select(vec![
            json!(["user"]),
            json!(["user", "group", "device"]),
            json!([]),
            json!(["nothing"]),
        ])),
        prop::option::of(select(vec![
            json!([{"source_attribute": "mail", "target_attribute": "mail"}]),
            json!([{"source_attribute": "mail", "target_attribute": "mail", "transforms": [{"replace_suffix": ["@contoso.test", "@fabrikam.test"]}]}]),
            json!([{"source_attribute": "", "target_attribute": ""}]),
            json!([]),
        ])),
        prop::option::of(select(vec![json!(0), json!(1000), json!(u32::MAX), json!(-1)])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(n, s, t, mode, sched, types, rules, min_id, enabled)| {
            let mut v = json!({"name": n, "source": s, "target": t, "mode": mode});
            if let Some(x) = sched {
                v["schedule"] = x;
            }
            if let Some(x) = types {
                v["object_types"] = x;
            }
            if let Some(x) = rules {
                v["match"] = x;
            }
            if let Some(x) = min_id {
                v["min_id"] = x;
            }
            if let Some(x) = enabled {
                v["enabled"] = json!(x);
            }
            v
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Bodies and their mutations.

#[derive(Clone, Debug)]
enum BodyPlan {
    None,
    /// Content type, bytes, what they are.
    Ready(Option<String>, Vec<u8>, String),
    /// A JSON value, whether to give it the path's name, the shape, and two choices for it.
    Json(Value, bool, Shape, u32, u32),
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Valid,
    WrongType,
    Missing,
    Extra,
    Huge,
    NotJson,
    WrongContentType,
    Empty,
    OverLimit,
}

fn shape() -> BoxedStrategy<Shape> {
    use Shape::*;
    Union::new_weighted(vec![
        (10, Just(Valid).boxed()),
        (3, Just(WrongType).boxed()),
        (2, Just(Missing).boxed()),
        (2, Just(Extra).boxed()),
        (1, Just(Huge).boxed()),
        (2, Just(NotJson).boxed()),
        (1, Just(WrongContentType).boxed()),
        (1, Just(Empty).boxed()),
        (1, Just(OverLimit).boxed()),
    ])
    .boxed()
}

/// JSON pointers of every node of `v` (the root is "").
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn wrong_values() -> Vec<Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!(-1e300),
        json!("a string"),
        json!(""),
        json!([]),
        json!([1, "x"]),
        json!({}),
        json!({"a": {"b": [null]}}),
    ]
}

const NOT_JSON: &[&[u8]] = &[
    b"{",
    b"nul",
    b"{\"name\": }",
    b"{\"a\":1}}",
    b"\xff\xfe{\x00}",
    b"'single'",
    b"{\"name\": \"\\ud800\"}",
    b"1e999999",
    b"name=x&kind=file",
    b"<xml/>",
];

/// A JSON body of `shape`, from the valid `base`: (content type, bytes, what it is).
fn json_body(base: Value, shape: Shape, pick: u32, alt: u32) -> (Option<String>, Vec<u8>, String) {
    let ct = Some("application/json".to_string());
    let bytes = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let mut v = base;
    let mut ptrs = Vec::new();
    pointers(&v, String::new(), &mut ptrs);
    let pick_of = |ptrs: &[String]| ptrs[pick as usize % ptrs.len()].clone();
    match shape {
        Shape::Valid => (ct, bytes(&v), "valid".into()),
        Shape::WrongType => {
            let at = pick_of(&ptrs);
            let wv = wrong_values();
            let new = wv[alt as usize % wv.len()].clone();
            if let Some(x) = v.pointer_mut(&at) {
                *x = new;
            }
            (ct, bytes(&v), format!("a wrong value at `{at}`"))
        }
        Shape::Missing => {
            let fields: Vec<&String> = ptrs
                .iter()
                .filter(|p| {
                    let (parent, _) = p.rsplit_once('/').unwrap_or(("", ""));
                    !p.is_empty() && v.pointer(parent).is_some_and(Value::is_object)
                })
                .collect();
            if fields.is_empty() {
                return (ct, bytes(&v), "valid (no field to leave out)".into());
            }
            let at = fields[pick as usize % fields.len()].clone();
            let (parent, key) = at.rsplit_once('/').unwrap_or(("", ""));
            let key = key.replace("~1", "/").replace("~0", "~");
            if let Some(Value::Object(m)) = v.pointer_mut(parent) {
                m.remove(&key);
            }
            (ct, bytes(&v), format!("`{at}` left out"))
        }
        Shape::Extra => {
            let objects: Vec<&String> = ptrs
                .iter()
                .filter(|p| v.pointer(p).is_some_and(Value::is_object))
                .collect();
            let wv = wrong_values();
            let new = wv[alt as usize % wv.len()].clone();
            let at = if objects.is_empty() {
                String::new()
            } else {
                objects[pick as usize % objects.len()].clone()
            };
            match v.pointer_mut(&at) {
                Some(Value::Object(m)) => {
                    m.insert("fuzz_extra".into(), new);
                }
                _ => v = json!({"fuzz_extra": new}),
            }
            (ct, bytes(&v), format!("an extra field in `{at}`"))
        }
        Shape::Huge => {
            let strings: Vec<&String> = ptrs
                .iter()
                .filter(|p| v.pointer(p).is_some_and(Value::is_string))
                .collect();
            let arrays: Vec<&String> = ptrs
                .iter()
                .filter(|p| v.pointer(p).is_some_and(Value::is_array))
                .collect();
            let note;
            if !arrays.is_empty() && alt.is_multiple_of(2) {
                let at = arrays[pick as usize % arrays.len()].clone();
                if let Some(Value::Array(a)) = v.pointer_mut(&at) {
                    let item = a.first().cloned().unwrap_or(json!("x"));
                    *a = vec![item; 5000];
                }
                note = format!("5000 items at `{at}`");
            } else if !strings.is_empty() {
                let at = strings[pick as usize % strings.len()].clone();
                if let Some(x) = v.pointer_mut(&at) {
                    *x = Value::String(
                        if alt.is_multiple_of(3) { "ü" } else { "x" }.repeat(200_000),
                    );
                }
                note = format!("a string of 200000 characters at `{at}`");
            } else {
                v = Value::String("x".repeat(200_000));
                note = "a string of 200000 characters".into();
            }
            (ct, bytes(&v), note)
        }
        Shape::NotJson => {
            let b = match alt as usize % (NOT_JSON.len() + 2) {
                i if i < NOT_JSON.len() => NOT_JSON[i].to_vec(),
                i if i == NOT_JSON.len() => {
                    // Truncated.
                    let full = bytes(&v);
                    full[..full.len() / 2].to_vec()
                }
                _ => "[".repeat(10_000).into_bytes(),
            };
            (ct, b, "not JSON".into())
        }
        Shape::WrongContentType => {
            let cts = [
                None,
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                Some("application/xml"),
                Some("multipart/form-data; boundary=x"),
                Some("application/json; charset=utf-16"),
                Some("application/jsonx"),
                Some("text/csv"),
            ];
            let c = cts[alt as usize % cts.len()].map(String::from);
            let note = format!("Content-Type {c:?}");
            (c, bytes(&v), note)
        }
        Shape::Empty => {
            if alt.is_multiple_of(2) {
                (ct, Vec::new(), "empty".into())
            } else {
                (None, Vec::new(), "empty, no content type".into())
            }
        }
        Shape::OverLimit => {
            let mut b = b"{\"name\": \"".to_vec();
            b.extend(std::iter::repeat_n(b'x', (2 << 20) + 4096));
            b.extend_from_slice(b"\"}");
            (ct, b, "over 2 MiB".into())
        }
    }
}

const CSV_BODIES: &[&str] = &[
    "Source,Destination\nann@contoso.test,ann@fabrikam.test\n",
    "source,destination\r\nann@contoso.test,ann@fabrikam.test\r\nboss@contoso.test,boss@fabrikam.test\r\n",
    "\u{feff}Source,Destination\nann@contoso.test,ann@contoso.test\n",
    "ann@contoso.test;ann@fabrikam.test\n",
    "a,b,c\n1,2,3\n",
    "Source,Destination\n=cmd|' /C calc'!A0,\"Smith, Ann\"@fabrikam.test\n",
    "Source,Destination\n\"unterminated,x\n",
    "source,target,exclude,reason\nu0001,,true,fuzz\n",
    "source,target\nu0001,u0002\nu0001,u0003\n",
    "source,exclude\nnobody,yes\n",
    "source,source\na,b\n",
    "nothing\n",
    "",
    "\n\n\n",
];

/// CSV bodies: the fixed ones, and override files naming objects that exist.
fn csv_seeds(w: &World) -> Vec<String> {
    let mut v: Vec<String> = CSV_BODIES.iter().map(|s| s.to_string()).collect();
    let objects = w.pool("objects").unwrap_or_default();
    for (i, o) in objects.iter().enumerate() {
        v.push(format!("source,exclude,reason\n{o},true,fuzz\n"));
        if let Some(t) = objects.get(i + 1) {
            v.push(format!("source,target\n{o},{t}\n"));
        }
    }
    if w.sane {
        // Files that pass the file rules.
        v.retain(|c| c.contains("@") || c.starts_with("source,"));
    }
    v
}

fn csv_body(base: String, shape: Shape, alt: u32) -> (Option<String>, Vec<u8>, String) {
    let ct = Some("text/csv".to_string());
    match shape {
        Shape::Huge => {
            let mut b = base.clone();
            let line = base.lines().nth(1).unwrap_or("a,b").to_string();
            for i in 0..20_000 {
                b.push_str(&format!("{i}{line}\n"));
            }
            (ct, b.into_bytes(), "20000 more lines".into())
        }
        Shape::NotJson => (
            ct,
            b"Source,Destination\n\xff\xfe,\xc0\xae\n".to_vec(),
            "not UTF-8".into(),
        ),
        Shape::Empty => (ct, Vec::new(), "empty".into()),
        Shape::WrongContentType => {
            let c = [None, Some("application/json"), Some("text/plain")][alt as usize % 3];
            (
                c.map(String::from),
                base.into_bytes(),
                format!("Content-Type {c:?}"),
            )
        }
        Shape::OverLimit => {
            let mut b = base.into_bytes();
            b.extend(std::iter::repeat_n(b'x', (2 << 20) + 4096));
            (ct, b, "over 2 MiB".into())
        }
        _ => (ct, base.into_bytes(), "CSV".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Requests of one operation.

/// (the segment as sent, its value when it was percent-encoded from one)
type Seg = (String, Option<String>);

fn path_param(w: &World, op: &Op, p: &Param) -> BoxedStrategy<Seg> {
    let integer = types_of(&p.schema).iter().any(|t| t == "integer");
    let made = if integer {
        integer_text(w, &op.template, &p.name)
    } else {
        string_for(w, &op.template, &p.name)
    };
    if w.sane {
        return made.prop_map(|s| (encode(&s), Some(s))).boxed();
    }
    Union::new_weighted(vec![
        (8, made.prop_map(|s| (encode(&s), Some(s))).boxed()),
        (
            2,
            select(hostile())
                .prop_map(|s| (encode(&s), Some(s)))
                .boxed(),
        ),
        (
            1,
            select(RAW_SEGMENTS.iter().map(|s| s.to_string()).collect())
                .prop_map(|s| (s, None))
                .boxed(),
        ),
    ])
    .boxed()
}

fn query_value(w: &World, op: &Op, p: &Param) -> BoxedStrategy<String> {
    let types = types_of(&p.schema);
    if types.iter().any(|t| t == "integer") {
        integer_text(w, &op.template, &p.name)
    } else if types.iter().any(|t| t == "boolean") {
        select(
            ["true", "false", "1", "0", "yes", "TRUE", ""]
                .map(String::from)
                .to_vec(),
        )
    } else {
        string_for(w, &op.template, &p.name)
    }
}

/// Requests of `op`: one in three mostly makes sense, the rest is wild.
fn requests(doc: &Doc, w: &World, op: &Op) -> BoxedStrategy<Req> {
    let sane = World {
        sane: true,
        ..w.clone()
    };
    let wild = World {
        sane: false,
        ..w.clone()
    };
    Union::new_weighted(vec![
        (1, requests_of(doc, &sane, op)),
        (2, requests_of(doc, &wild, op)),
    ])
    .boxed()
}

fn requests_of(doc: &Doc, w: &World, op: &Op) -> BoxedStrategy<Req> {
    let path_params: Vec<BoxedStrategy<Seg>> = op
        .params
        .iter()
        .filter(|p| p.in_path)
        .map(|p| path_param(w, op, p))
        .collect();
    let names: Vec<String> = op
        .params
        .iter()
        .filter(|p| p.in_path)
        .map(|p| p.name.clone())
        .collect();
    let query: Vec<BoxedStrategy<Option<(String, String)>>> = op
        .params
        .iter()
        .filter(|p| !p.in_path)
        .map(|p| {
            let n = p.name.clone();
            let v = query_value(w, op, p).prop_map(move |v| (n.clone(), v));
            match (p.required, w.sane) {
                (true, true) => v.prop_map(Some).boxed(),
                (true, false) => prop::option::weighted(0.9, v).boxed(),
                _ => prop::option::weighted(0.5, v).boxed(),
            }
        })
        .collect();
    // Now and then an unknown parameter, or one given twice.
    let query_extra = if w.sane {
        Just(0u8).boxed()
    } else {
        select(vec![0u8, 0, 0, 0, 0, 0, 1, 2])
    };
    let body: BoxedStrategy<BodyPlan> = match &op.body {
        None => Just(BodyPlan::None).boxed(),
        Some((ct, _, _)) if ct == "text/csv" => (
            select(csv_seeds(w)),
            if w.sane {
                Just(Shape::Valid).boxed()
            } else {
                shape()
            },
            any::<u32>(),
        )
            .prop_map(|(b, s, alt)| {
                let (c, b, n) = csv_body(b, s, alt);
                BodyPlan::Ready(c, b, n)
            })
            .boxed(),
        Some((_, schema, _)) => {
            let s = doc.resolve(schema);
            let free_form = s.get("properties").is_none()
                && s.get("$ref").is_none()
                && types_of(s) == ["object"];
            let base = if free_form && op.template.starts_with("/directories/") {
                directory_entry(w)
            } else if free_form && op.template == "/profiles/{name}" {
                profile_entry(w)
            } else {
                value_for(doc, w, &op.template, schema, "", 0)
            };
            let (align, shape) = if w.sane {
                (Just(true).boxed(), Just(Shape::Valid).boxed())
            } else {
                (any::<bool>().boxed(), shape())
            };
            (base, align, shape, any::<u32>(), any::<u32>())
                .prop_map(|(v, align, s, pick, alt)| BodyPlan::Json(v, align, s, pick, alt))
                .boxed()
        }
    };
    let op2 = op.clone();
    let schema = op.body.as_ref().map(|b| b.1.clone());
    let root = doc.root.clone();
    (path_params, query, query_extra, body)
        .prop_map(move |(segs, query, extra, body)| {
            let mut path = op2.template.clone();
            let mut last_value = None;
            for ((sent, value), name) in segs.iter().zip(&names) {
                path = path.replace(&format!("{{{name}}}"), sent);
                last_value = Some((name.clone(), value.clone()));
            }
            let mut q: Vec<String> = query
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            match extra {
                1 => q.push("fuzz_unknown=1".into()),
                2 if !q.is_empty() => q.push(q[0].clone()),
                _ => {}
            }
            let (content_type, body, note, breaks) = match body {
                BodyPlan::None => (None, Vec::new(), "no body".to_string(), None),
                BodyPlan::Ready(c, b, n) => (c, b, n, None),
                BodyPlan::Json(mut v, align, s, pick, alt) => {
                    // The body's `name`/`id` as the path's, most of the time, to get past the
                    // "differs from the URL" check.
                    if align
                        && let Some((name, Some(value))) = &last_value
                        && let Some(m) = v.as_object_mut()
                        && m.contains_key(name)
                    {
                        m.insert(name.clone(), Value::String(value.clone()));
                    }
                    let (c, b, n) = json_body(v, s, pick, alt);
                    let breaks = match (serde_json::from_slice::<Value>(&b), &schema) {
                        (Ok(v), Some(schema)) => {
                            let e = Doc::new(&root).validate(schema, &v, false);
                            (!e.is_empty()).then(|| e.join("; "))
                        }
                        _ => None,
                    };
                    (c, b, n, breaks)
                }
            };
            Req {
                method: op2.method.clone(),
                op: op2.id(),
                path,
                query: q.join("&"),
                content_type,
                body,
                note,
                breaks,
            }
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Judging an answer.

#[derive(Clone)]
struct Caller {
    name: &'static str,
    token: Option<String>,
}

fn essence(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn judge(doc: &Doc, ops: &[Op], req: &Req, caller: &Caller, a: &Answer) -> Result<(), String> {
    if a.status >= 500 {
        return Err(format!("a server error, {}", a.status));
    }
    let op = match route(ops, &req.method, &req.path) {
        Ok(op) => op,
        Err(expected) => {
            // Not an operation of the document (an empty segment, or another operation's
            // path): the router's own refusal.
            if a.status != expected && !(expected == 405 && a.status == 404) {
                return Err(format!(
                    "the router should refuse this path with {expected}, not {}",
                    a.status
                ));
            }
            if !a.body.is_empty() {
                let v: Value = serde_json::from_slice(&a.body)
                    .map_err(|e| format!("the router's refusal is not JSON: {e}"))?;
                let e = doc.validate(&json!({"$ref": "#/components/schemas/ErrorBody"}), &v, true);
                if !e.is_empty() {
                    return Err(format!(
                        "the router's refusal breaks ErrorBody: {}",
                        e.join("; ")
                    ));
                }
            }
            return Ok(());
        }
    };
    let code = a.status.to_string();
    let Some(spec) = op.responses.get(&code) else {
        let mut documented: Vec<&String> = op.responses.keys().collect();
        documented.sort();
        return Err(format!(
            "status {code} is not documented for {} (the document gives {documented:?})",
            op.id()
        ));
    };
    let ok = (200..300).contains(&a.status);
    if op.secured && caller.token.is_none() && a.status != 401 {
        return Err(format!("no token, and the answer is {code}, not 401"));
    }
    if ok && op.secured && caller.name.starts_with("tenant admin") && !op.tenant_admin_may() {
        return Err(format!(
            "a tenant admin was answered {code} on a ferry admin's part of the API"
        ));
    }
    if ok && caller.name == "viewer" && op.changes() {
        return Err(format!("a viewer was answered {code} to a change"));
    }
    if ok && let Some(why) = &req.breaks {
        return Err(format!(
            "{code} to a body the document's request schema forbids ({why})"
        ));
    }
    let content = spec.get("content").and_then(Value::as_object);
    let Some(content) = content.filter(|c| !c.is_empty()) else {
        if !a.body.is_empty() {
            return Err(format!(
                "the document gives {code} no body, and the answer has {} bytes",
                a.body.len()
            ));
        }
        return Ok(());
    };
    let got = essence(a.header("content-type").unwrap_or_default());
    let Some((_, media)) = content.iter().find(|(ct, _)| essence(ct) == got) else {
        return Err(format!(
            "Content-Type `{got}` is not documented for {code} (the document gives {:?})",
            content.keys().collect::<Vec<_>>()
        ));
    };
    if got == "application/json" || got.ends_with("+json") {
        let v: Value =
            serde_json::from_slice(&a.body).map_err(|e| format!("the body is not JSON: {e}"))?;
        if let Some(schema) = media.get("schema") {
            let e = doc.validate(schema, &v, true);
            if !e.is_empty() {
                return Err(format!(
                    "the body breaks the documented schema {}: {}",
                    schema,
                    clip(e.join("; ").as_bytes(), 1500)
                ));
            }
        }
    } else if media
        .get("schema")
        .is_some_and(|s| types_of(s) == ["string"])
        && std::str::from_utf8(&a.body).is_err()
    {
        return Err("the body is documented as a string and is not UTF-8".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The server and its state.

async fn api(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    m: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http
        .request(m, format!("{url}/api/v1{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    let t = resp.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

fn local(offset_hours: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(offset_hours))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

struct Setup {
    server: Server,
    world: World,
    callers: Vec<Caller>,
}

async fn set_up(dir: &std::path::Path) -> Setup {
    use reqwest::Method as M;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = sample::generate(60, true, 5);
    std::fs::write(dir.join("contoso.json"), render_json(&s.source)).unwrap();
    std::fs::write(dir.join("fabrikam.json"), render_json(&s.target)).unwrap();
    std::fs::write(
        dir.join("ferry.toml"),
        format!(
            "[server.auth]\nlockout_after = 100000\naddress_lockout_after = 100000\n\n\
             [[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n\
             [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
             [[directory]]\nname = \"fabrikam-entra\"\nkind = \"graph\"\ntenant_id = \"fabrikam.onmicrosoft.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\ngraph_url = \"http://127.0.0.1:9\"\nlogin_url = \"http://127.0.0.1:9\"\ntimeout = \"2s\"\n\n\
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{rules}\n\
             [[sync_profile]]\nname = \"provision\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"create\"\n{rules}",
            rules = sample::QUICKSTART_RULES
        ),
    )
    .unwrap();
    let server = Server::start(
        ServerOptions {
            settings: Settings::load(&dir.join("ferry.toml")).unwrap(),
            data_dir: dir.join("data"),
            database_url: None,
            admin_token: None,
            secret_key: None,
            scheduler: false,
            agent: Some(AgentEndpoint {
                listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
                cert: None,
                names: vec![],
                public_url: None,
            }),
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let url = format!("http://{}", server.addr);
    let agent_url = format!("https://{}/agent/v1", server.agent_addr.unwrap());
    let http = reqwest::Client::new();
    let pem = std::fs::read(dir.join("data/agent-tls/cert.pem")).unwrap();
    let agent = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let admin = server.admin_token.clone();
    let call = |t: &str, m: M, p: &str, b: Option<Value>| {
        let (http, url, t, p) = (http.clone(), url.clone(), t.to_string(), p.to_string());
        async move { api(&http, &url, &t, m, &p, b).await }
    };
    let must = |(s, v): (u16, Value), want: u16, what: &str| {
        assert_eq!(s, want, "setting up, {what}: {v}");
        v
    };
    let mut w = World::default();

    // Both profiles run once: a translation table, a What-If with writes awaiting approval.
    for p in ["users", "provision"] {
        let v = must(
            call(
                &admin,
                M::POST,
                &format!("/profiles/{p}/run?wait=true"),
                None,
            )
            .await,
            202,
            "a cycle",
        );
        w.add("cycles", v["cycle_id"].to_string());
        w.add("profiles", p);
    }
    let v = must(
        call(&admin, M::GET, "/profiles/provision/whatif", None).await,
        200,
        "the What-If",
    );
    if let Some(h) = v["plan"]["hash"].as_str().or(v["plan_hash"].as_str()) {
        w.add("plan_hashes", h);
    }
    for d in ["contoso", "fabrikam", "fabrikam-entra"] {
        w.add("directories", d);
    }
    for o in s.source.iter().take(4).chain(s.target.iter().take(2)) {
        w.add("objects", o.id.clone());
        if let Some(u) = &o.upn {
            w.add("objects", u.clone());
            w.add("emails", u.clone());
        }
    }
    // An override, so that the list and its removal have one.
    let src = s.source[0].id.clone();
    must(
        call(
            &admin,
            M::POST,
            "/profiles/users/overrides",
            Some(json!({"source": src, "exclude": true, "reason": "set up by the fuzzer"})),
        )
        .await,
        201,
        "an override",
    );

    // Tenants, a tenant admin of each, a viewer, an operator to remove, one with a password.
    for (id, d) in [("contoso", "contoso"), ("fabrikam", "fabrikam")] {
        must(
            call(
                &admin,
                M::PUT,
                &format!("/tenants/{id}"),
                Some(json!({"id": id, "name": id, "domains": [format!("{id}.test")], "directories": [d]})),
            )
            .await,
            200,
            "a tenant",
        );
        w.add("tenants", id);
    }
    let token = |v: Value| v["token"].as_str().unwrap().to_string();
    let ta = token(must(
        call(
            &admin,
            M::POST,
            "/operators",
            Some(json!({"name": "fuzz-ta", "tenant": "contoso"})),
        )
        .await,
        201,
        "a tenant admin",
    ));
    let ta_fab = token(must(
        call(
            &admin,
            M::POST,
            "/operators",
            Some(json!({"name": "fuzz-ta-fabrikam", "tenant": "fabrikam"})),
        )
        .await,
        201,
        "a tenant admin",
    ));
    let viewer = token(must(
        call(
            &admin,
            M::POST,
            "/operators",
            Some(json!({"name": "fuzz-viewer", "viewer": true})),
        )
        .await,
        201,
        "a viewer",
    ));
    must(
        call(
            &admin,
            M::POST,
            "/operators",
            Some(json!({"name": "victim", "tenant": "contoso"})),
        )
        .await,
        201,
        "an operator",
    );
    must(
        call(
            &admin,
            M::POST,
            "/operators",
            Some(json!({"name": "ivan", "password": "ivan's long password"})),
        )
        .await,
        201,
        "an operator with a password",
    );
    for o in ["victim", "ivan", "admin"] {
        w.add("operators", o);
    }
    // Someone to sign in as, whom no other operation names (a rotation would change the
    // password).
    must(
        call(
            &admin,
            M::POST,
            "/operators",
            Some(json!({"name": "sam", "password": "sam's long password"})),
        )
        .await,
        201,
        "an operator who signs in",
    );
    w.add("sign_in_names", "sam");
    w.add("passwords", "sam's long password");
    w.add("passwords", "short");

    // Environments: `legal` with no move; `hr` whose move awaits the target's approval;
    // `sales` approved; `finance` approved, its user mapping uploaded and prepared (an error
    // file).
    let mapping = "Source,Destination\nann@contoso.test,ann@fabrikam.test\nnobody@contoso.test,nobody@fabrikam.test\n";
    for env in ["legal", "hr", "sales", "finance"] {
        must(
            call(
                &ta,
                M::PUT,
                &format!("/environments/{env}"),
                Some(json!({
                    "id": env, "tenant": "contoso", "name": env, "url": format!("https://{env}.crm.test"),
                    "org_id": "0a1b2c3d-0000-4000-8000-000000000001", "type": "production",
                    "components": [{"kind": "flow", "name": "Notify", "enabled": true}],
                    "system_users": [
                        {"id": "11111111-1111-4111-8111-111111111111", "email": "ann@contoso.test"},
                        {"id": "33333333-3333-4333-8333-333333333333", "email": "app@contoso.test", "application_user": true}
                    ]
                })),
            )
            .await,
            200,
            "an environment",
        );
        w.add("environments", env);
        must(
            call(
                &ta,
                M::POST,
                &format!("/environments/{env}/records"),
                Some(json!([{"id": "r1", "owner": "ann@contoso.test", "created_by": "ann@contoso.test", "modified_by": "system"}])),
            )
            .await,
            200,
            "records",
        );
        if env == "legal" {
            continue;
        }
        let v = must(
            call(
                &ta,
                M::POST,
                &format!("/environments/{env}/moves"),
                Some(json!({"target_tenant": "fabrikam"})),
            )
            .await,
            201,
            "a move",
        );
        let sid = v["migration_id"].as_str().unwrap().to_string();
        w.add("moves", sid.clone());
        // The target's id of it.
        let theirs = must(call(&ta_fab, M::GET, "/moves", None).await, 200, "moves");
        let tid = theirs
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["environment"] == env)
            .unwrap()["migration_id"]
            .as_str()
            .unwrap()
            .to_string();
        w.add("moves", tid.clone());
        if env == "hr" {
            continue;
        }
        must(
            call(&ta_fab, M::POST, &format!("/moves/{tid}/approve"), None).await,
            200,
            "an approval",
        );
        if env == "sales" {
            continue;
        }
        let r = http
            .put(format!(
                "{url}/api/v1/environments/{env}/usermapping?file_name=usermapping.csv"
            ))
            .bearer_auth(&ta)
            .header("content-type", "text/csv")
            .body(mapping)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
        must(
            call(&ta, M::POST, &format!("/moves/{sid}/prepare"), None).await,
            202,
            "a preparation",
        );
        for _ in 0..500 {
            let v = must(
                call(&ta, M::GET, &format!("/moves/{sid}/status"), None).await,
                200,
                "a move's status",
            );
            if !v["status"]
                .as_str()
                .unwrap_or_default()
                .ends_with("Running")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Devices: a key, two enrolled agents, a held enrollment, a runbook, a batch due now with a
    // run, and a bulk enrolment token.
    let psk = must(
        call(&admin, M::POST, "/psks", Some(json!({"name": "wave-1"}))).await,
        201,
        "a pre-shared key",
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    w.add("psks", "wave-1");
    let enroll = |device_id: &str, host: &str| {
        let (agent, agent_url, psk) = (agent.clone(), agent_url.clone(), psk.clone());
        let body = json!({"protocol": 1, "psk": psk, "profiles": [],
            "device": {"device_id": device_id, "hostname": host, "os": "linux", "os_version": "Debian 12", "agent_version": "0.1.0"}});
        async move {
            let r = agent
                .post(format!("{agent_url}/enroll"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, pc1) = enroll("id-pc-1", "PC-1").await;
    assert_eq!(st, 200, "{pc1}");
    let (st, pc2) = enroll("id-pc-2", "PC-2").await;
    assert_eq!(st, 200, "{pc2}");
    for a in [&pc1, &pc2] {
        w.add("agents", a["agent_id"].to_string());
    }
    w.add("computers", "PC-1");
    w.add("computers", "PC-2");
    for impostor in ["impostor-1", "impostor-2", "impostor-3", "impostor-4"] {
        let (st, held) = enroll(impostor, "pc-1").await;
        assert_eq!(st, 202, "{held}");
        w.add(
            "enrollment_requests",
            held["held"]["request_id"].to_string(),
        );
    }
    must(
        call(
            &admin,
            M::PUT,
            "/runbooks/Main",
            Some(json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
                "permission_updates": {"mode": "add-and-remove", "paths": ["/home"]}})),
        )
        .await,
        200,
        "a runbook",
    );
    w.add("runbooks", "Main");
    must(
        call(
            &admin,
            M::PUT,
            "/batches/Cutover",
            Some(json!({"name": "Cutover", "source_directory": "contoso", "target_directory": "fabrikam",
                "runbooks": ["Main"], "enforced_after": local(-1), "time_zone": "UTC"})),
        )
        .await,
        200,
        "a batch",
    );
    w.add("batches", "Cutover");
    must(
        call(
            &admin,
            M::POST,
            "/batches/Cutover/computers",
            Some(json!({"add": ["PC-1"]})),
        )
        .await,
        200,
        "a batch's computers",
    );
    let key = pc1["node_key"].as_str().unwrap().to_string();
    let r = agent
        .post(format!("{agent_url}/checkin"))
        .bearer_auth(&key)
        .json(&json!({"protocol": 1}))
        .send()
        .await
        .unwrap();
    let c: Value = r.json().await.unwrap();
    if let Some(run) = c["migration"]["run"].as_str() {
        w.add("runs", run);
    } else if !c["migration"]["run"].is_null() {
        w.add("runs", c["migration"]["run"].to_string());
    }
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD.encode(b"ppkg");
    let t = must(
        call(
            &admin,
            M::POST,
            "/directories/fabrikam-entra/enrolment-tokens",
            Some(
                json!({"kind": "ppkg", "package_upn": "package_1@fabrikam.onmicrosoft.com",
                "expires": local(24 * 90)[..10].to_string(), "content_base64": content}),
            ),
        )
        .await,
        201,
        "a bulk enrolment token",
    );
    w.add("enrolment_tokens", t["id"].to_string());
    w.add("base64", content);
    w.add("emails", "package_1@fabrikam.onmicrosoft.com");
    w.add("base64", "not base64!");

    // A directory and a profile of the console (which the API may change and remove).
    must(
        call(
            &admin,
            M::PUT,
            "/directories/console-dir",
            Some(json!({"name": "console-dir", "kind": "file", "path": "fabrikam.json"})),
        )
        .await,
        201,
        "a console directory",
    );
    w.add("directories", "console-dir");
    must(
        call(
            &admin,
            M::PUT,
            "/profiles/console-profile",
            Some(json!({"name": "console-profile", "source": "contoso", "target": "console-dir", "mode": "match-only"})),
        )
        .await,
        201,
        "a console profile",
    );
    w.add("profiles", "console-profile");

    // Values of the document's enumerations and formats that names do not cover.
    for (pool, vals) in [
        (
            "dates",
            vec![
                local(-24 * 30),
                local(24 * 30),
                local(0)[..10].to_string(),
                local(24 * 30)[..10].to_string(),
                local(24 * 90)[..10].to_string(),
                local(-24 * 10)[..10].to_string(),
                "2026-02-30".into(),
                "9999-12-31T23:59".into(),
                "0000-01-01".into(),
                "-009999-01-01".into(),
                "2026-13-01".into(),
                "yesterday".into(),
                "2026-06-01T12:00:00Z".into(),
                "2026-06-01T12:00:00+25:00".into(),
            ],
        ),
        (
            "time_zones",
            vec![
                "UTC".into(),
                "Europe/Paris".into(),
                "America/St_Johns".into(),
                "Not/AZone".into(),
                "".into(),
                "../../etc/localtime".into(),
            ],
        ),
        (
            "kinds",
            vec![
                "user".into(),
                "group".into(),
                "device".into(),
                "ppkg".into(),
                "bprt".into(),
                "flow".into(),
                "canvas-app".into(),
            ],
        ),
        (
            "states",
            vec![
                "pending".into(),
                "approved".into(),
                "refused".into(),
                "active".into(),
                "revoked".into(),
                "succeeded".into(),
                "failed".into(),
                "running".into(),
                "matched".into(),
                "unmatched".into(),
                "held".into(),
                "waiting".into(),
            ],
        ),
        (
            "token_kinds",
            vec!["ppkg".into(), "bprt".into(), "PPKG".into()],
        ),
        (
            "levels",
            vec!["info".into(), "warn".into(), "error".into(), "debug".into()],
        ),
        (
            "formats",
            vec![
                "csv".into(),
                "json".into(),
                "usermapping".into(),
                "passwd".into(),
                "xml".into(),
            ],
        ),
        (
            "file_names",
            vec![
                "usermapping.csv".into(),
                "UserMapping.csv".into(),
                "usermapping.txt".into(),
            ],
        ),
        (
            "durations",
            vec!["15m".into(), "0s".into(), "99999999999999999d".into()],
        ),
        (
            "modes",
            vec!["match-only".into(), "create".into(), "update".into()],
        ),
        (
            "urls",
            vec![
                "https://sales.crm.test".into(),
                "http://127.0.0.1:9".into(),
                "javascript:alert(1)".into(),
            ],
        ),
    ] {
        for v in vals {
            w.add(pool, v);
        }
    }
    let callers = vec![
        Caller {
            name: "admin",
            token: Some(admin.clone()),
        },
        Caller {
            name: "tenant admin (contoso, source)",
            token: Some(ta),
        },
        Caller {
            name: "tenant admin (fabrikam, target)",
            token: Some(ta_fab),
        },
        Caller {
            name: "viewer",
            token: Some(viewer),
        },
        Caller {
            name: "no token",
            token: None,
        },
    ];
    Setup {
        server,
        world: w,
        callers,
    }
}

// ---------------------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// A 32-byte seed for one operation's runner.
fn seed_bytes(seed: u64, op: &str) -> [u8; 32] {
    let mut x = seed
        ^ op.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

#[test]
fn the_whole_api_conforms_to_the_committed_document() {
    record_panics();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let setup = rt.block_on(set_up(tmp.path()));
    let set_up_in = started.elapsed();
    let addr = setup.server.addr;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
    )
    .unwrap();
    let root: Value = serde_json::from_str(&text).unwrap();
    let doc = Doc::new(&root);
    let ops = operations(&root);
    let cases = env_u64("FERRY_API_FUZZ_CASES").unwrap_or(48) as u32;
    let seed = env_u64("FERRY_API_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
    });
    let only = std::env::var("FERRY_API_FUZZ_OPS").unwrap_or_default();
    let trace = std::env::var("FERRY_API_FUZZ_TRACE").is_ok();
    eprintln!(
        "api fuzz: seed {seed} (FERRY_API_FUZZ_SEED={seed} replays it), {cases} cases an operation (FERRY_API_FUZZ_CASES), state set up in {set_up_in:.1?}"
    );
    let sent = Arc::new(Mutex::new(0u64));
    // Statuses seen, by operation (as routed) and caller: how far past the refusals it got.
    let seen: Arc<Mutex<BTreeMap<String, BTreeMap<u16, u64>>>> = Arc::default();
    let mut failures: Vec<String> = Vec::new();
    let mut ran = 0;
    for op in &ops {
        if !only.is_empty() && !op.id().contains(&only) {
            continue;
        }
        ran += 1;
        let t0 = Instant::now();
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases,
                failure_persistence: None,
                max_shrink_iters: 64,
                max_shrink_time: 20_000,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed, &op.id())),
        );
        let strategy = requests(&doc, &setup.world, op);
        // An operation that takes no token (signing in) is the same for every caller.
        let callers: Vec<Caller> = if op.secured {
            setup.callers.clone()
        } else {
            setup
                .callers
                .iter()
                .filter(|c| c.token.is_none())
                .cloned()
                .collect()
        };
        let sent2 = Arc::clone(&sent);
        let seen2 = Arc::clone(&seen);
        let result = runner.run(&strategy, |req| {
            for caller in &callers {
                let before = panic_count();
                let answer = send(addr, &req, caller.token.as_deref());
                if let Ok(mut n) = sent2.lock() {
                    *n += 1;
                }
                let panics = panics_since(before);
                if trace {
                    match &answer {
                        Ok(a) => eprintln!(
                            "{} {req:?}\n  → {} {}",
                            caller.name,
                            a.status,
                            clip(&a.body, 300)
                        ),
                        Err(e) => eprintln!("{} {req:?}\n  → {e}", caller.name),
                    }
                }
                if let (Ok(a), Ok(mut seen)) = (&answer, seen2.lock()) {
                    let key = match route(&ops, &req.method, &req.path) {
                        Ok(o) => format!("{} as {}", o.id(), caller.name),
                        Err(_) => format!("(the router's) as {}", caller.name),
                    };
                    *seen.entry(key).or_default().entry(a.status).or_default() += 1;
                }
                let verdict = match &answer {
                    _ if !panics.is_empty() => {
                        Err(format!("the server panicked: {}", panics.join("\n")))
                    }
                    Err(e) => Err(format!("no answer: {e}")),
                    Ok(a) => judge(&doc, &ops, &req, caller, a),
                };
                if let Err(why) = verdict {
                    let shown = match &answer {
                        Ok(a) => format!(
                            "{} {}\n      {}",
                            a.status,
                            a.header("content-type").unwrap_or("(no content type)"),
                            clip(&a.body, 1500)
                        ),
                        Err(_) => "(none)".into(),
                    };
                    return Err(TestCaseError::fail(format!(
                        "{why}\n    caller: {}\n    request: {req:?}\n    answer: {shown}",
                        caller.name
                    )));
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, req)) => failures.push(format!(
                "{}: {why}\n    (minimal request: {req:?})\n    replay: FERRY_API_FUZZ_SEED={seed} FERRY_API_FUZZ_OPS='{}'",
                op.id(),
                op.id()
            )),
            Err(e) => failures.push(format!("{}: {e}", op.id())),
        }
        let took = t0.elapsed();
        if took > Duration::from_secs(5) {
            eprintln!("api fuzz: {} took {took:.1?}", op.id());
        }
        // The fuzzer's own callers must still be who they were.
        for c in setup.callers.iter().filter(|c| c.token.is_some()) {
            let me = Req {
                method: "GET".into(),
                op: "GET /me".into(),
                path: "/me".into(),
                query: String::new(),
                content_type: None,
                body: Vec::new(),
                note: "no body".into(),
                breaks: None,
            };
            match send(addr, &me, c.token.as_deref()) {
                Ok(a) if a.status == 200 => {}
                Ok(a) => panic!(
                    "after {}, the fuzzer's {} no longer works ({}): fix the fuzzer's name pools",
                    op.id(),
                    c.name,
                    a.status
                ),
                Err(e) => panic!("after {}: GET /me: {e}", op.id()),
            }
        }
    }
    let n = *sent.lock().unwrap();
    let seen = seen.lock().unwrap();
    let mut unreached = Vec::new();
    for op in &ops {
        let statuses: BTreeMap<u16, u64> = seen
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{} as ", op.id())))
            .flat_map(|(_, v)| v.iter().map(|(s, n)| (*s, *n)))
            .fold(BTreeMap::new(), |mut m, (s, n)| {
                *m.entry(s).or_default() += n;
                m
            });
        if std::env::var("FERRY_API_FUZZ_VERBOSE").is_ok() {
            eprintln!("  {}: {statuses:?}", op.id());
        }
        if !statuses.keys().any(|s| (200..300).contains(s)) && !statuses.is_empty() {
            unreached.push(op.id());
        }
    }
    if !unreached.is_empty() {
        eprintln!(
            "api fuzz: never answered 2xx (the fuzzer did not get past the refusals): {}",
            unreached.join(", ")
        );
    }
    eprintln!(
        "api fuzz: {ran} operations × {} callers × {cases} cases: {n} requests in {:.1?} (seed {seed})",
        setup.callers.len(),
        started.elapsed()
    );
    rt.block_on(setup.server.stop()).unwrap();
    let _ = sent;
    assert!(
        failures.is_empty(),
        "{} operations failed (seed {seed}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(ran > 0, "FERRY_API_FUZZ_OPS={only} names no operation");
}

// ---------------------------------------------------------------------------------------------
// The fuzzer's own parts.

#[test]
fn the_validator_catches_what_it_must() {
    let root = json!({"components": {"schemas": {
        "A": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "format": "int32", "minimum": 0}, "s": {"type": ["string", "null"]}}},
        "B": {"allOf": [{"$ref": "#/components/schemas/A"}, {"type": "object", "properties": {"b": {"type": "boolean"}}}]},
        "U": {"oneOf": [{"type": "object", "required": ["op"], "properties": {"op": {"type": "string", "enum": ["x"]}}}, {"type": "null"}]},
        "M": {"type": "object", "additionalProperties": {"type": "integer"}},
        "C": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}, "additionalProperties": false},
    }}});
    let d = Doc::new(&root);
    let r = |n: &str| json!({"$ref": format!("#/components/schemas/{n}")});
    let ok = |s: &Value, v: Value| {
        assert!(
            d.validate(s, &v, true).is_empty(),
            "{s} {v}: {:?}",
            d.validate(s, &v, true)
        )
    };
    let bad = |s: &Value, v: Value, what: &str| {
        let e = d.validate(s, &v, true).join("; ");
        assert!(e.contains(what), "{s} {v}: {e}");
    };
    ok(&r("A"), json!({"n": 1, "s": null}));
    bad(&r("A"), json!({"s": "x"}), "required `n`");
    bad(&r("A"), json!({"n": "1"}), "not of type");
    bad(&r("A"), json!({"n": -1}), "minimum");
    bad(&r("A"), json!({"n": 1u64 << 40}), "int32");
    bad(
        &r("A"),
        json!({"n": 1, "extra": 1}),
        "`extra` is not in the document",
    );
    assert!(
        d.validate(&r("A"), &json!({"n": 1, "extra": 1}), false)
            .is_empty()
    );
    ok(&r("B"), json!({"n": 1, "b": true}));
    bad(
        &r("B"),
        json!({"n": 1, "c": true}),
        "`c` is not in the document",
    );
    ok(&r("U"), json!(null));
    ok(&r("U"), json!({"op": "x"}));
    bad(&r("U"), json!({"op": "y"}), "matches none");
    ok(&r("M"), json!({"anything": 3}));
    bad(&r("M"), json!({"anything": "3"}), "not of type");
    bad(
        &r("C"),
        json!({"a": {"n": 1}, "z": 0}),
        "`z` is not allowed",
    );
    bad(
        &r("C"),
        json!({"a": {"n": 1, "q": 0}}),
        "`q` is not in the document",
    );
    bad(
        &json!({"type": "string", "pattern": "x"}),
        json!("x"),
        "`pattern` is not supported",
    );
}

#[test]
fn the_plain_client_reads_chunked_and_sized_answers_and_sees_a_dropped_one() {
    let a = parse_answer(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!((a.status, a.body.as_slice()), (200, &b"abcde"[..]));
    let a = parse_answer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").unwrap();
    assert_eq!((a.status, a.body.as_slice()), (404, &b"{}"[..]));
    assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}").is_err());
    assert!(parse_answer(b"").is_err());
    assert!(parse_answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab").is_err());
}

#[test]
fn the_router_model_prefers_static_segments() {
    let root: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ops = operations(&root);
    assert_eq!(
        route(&ops, "GET", "/moves/approvals").unwrap().template,
        "/moves/approvals"
    );
    assert_eq!(route(&ops, "DELETE", "/moves/approvals").err(), Some(405));
    assert_eq!(
        route(&ops, "DELETE", "/moves/x").unwrap().template,
        "/moves/{id}"
    );
    assert_eq!(route(&ops, "GET", "/moves/x/y").err(), Some(404));
    assert_eq!(
        route(&ops, "GET", "/moves//status").unwrap().template,
        "/moves/{id}/status"
    );
    assert_eq!(route(&ops, "DELETE", "/operators/").err(), Some(404));
    assert_eq!(ops.len(), 79);
}

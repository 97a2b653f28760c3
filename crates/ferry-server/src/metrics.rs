//! `GET /metrics`: the server's work in Prometheus' text exposition format (0.0.4), on the admin
//! listener, for a ferry admin or viewer token.
//!
//! Names carry the `ferry_` prefix and base units (seconds, bytes), counters end in `_total`, and
//! no label ever names a device, agent, user, SID or address: labels are routes (the API's path
//! templates), status classes, states, profile and batch names (operators' configuration), and
//! refusal codes. Counters of what happens (requests, check-ins, cycle stages, Graph calls) live
//! here; what is (agents by state, a profile's last counts, moves by state, bulk token expiry) is
//! read from the store at each scrape, so every server on a shared database reports the same.

use crate::state::AppState;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds of the request latency buckets, in seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the cycle stage buckets, in seconds.
const STAGE_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// A histogram: counts per bucket (not cumulative), their sum and count.
#[derive(Clone, Debug)]
struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Histogram {
            buckets,
            counts: vec![0; buckets.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.buckets.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Which listener answered: the admin API and console, or the agent endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Listener {
    Admin,
    Agent,
}

impl Listener {
    fn as_str(self) -> &'static str {
        match self {
            Listener::Admin => "admin",
            Listener::Agent => "agent",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RouteKey {
    listener: Listener,
    method: &'static str,
    route: String,
}

/// What a check-in was answered: a run to start, a batch assigned but not due, nothing, or
/// refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckinResult {
    Migration,
    Assignment,
    Blocked,
    Nothing,
    Refused,
}

impl CheckinResult {
    fn as_str(self) -> &'static str {
        match self {
            CheckinResult::Migration => "migration",
            CheckinResult::Assignment => "assignment",
            CheckinResult::Blocked => "blocked",
            CheckinResult::Nothing => "nothing",
            CheckinResult::Refused => "refused",
        }
    }
}

/// This server's counters since it started.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    /// (requests by status class 1..=5, latency) per route.
    http: BTreeMap<RouteKey, ([u64; 5], Histogram)>,
    checkins: BTreeMap<CheckinResult, u64>,
    /// Refused agent calls (any call) by refusal code.
    refusals: BTreeMap<&'static str, u64>,
    /// Cycle stage durations by (profile, stage).
    stages: BTreeMap<(String, &'static str), Histogram>,
    /// Finished cycles by (profile, `succeeded` | `failed`).
    cycles: BTreeMap<(String, &'static str), u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(HTTP_BUCKETS)
    }
}

/// A request's method as a label: the standard ones, `other` for the rest (a method is chosen by
/// the client, and a label must not grow with what clients send).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request answered: `route` is the matched path template (`/api/v1/batches/{name}`), or
    /// `None` for a path no route matched (counted as `unmatched`, never by its path).
    pub fn request(
        &self,
        listener: Listener,
        method: &axum::http::Method,
        route: Option<&str>,
        status: u16,
        seconds: f64,
    ) {
        let key = RouteKey {
            listener,
            method: method_label(method),
            route: route.unwrap_or("unmatched").to_string(),
        };
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let mut c = self.counters();
        let (by_class, h) = c.http.entry(key).or_default();
        by_class[class] += 1;
        h.observe(seconds);
    }

    pub fn checkin(&self, r: CheckinResult) {
        *self.counters().checkins.entry(r).or_default() += 1;
    }

    /// An agent call refused, by its refusal code (`forbidden`, `bad_request`, …).
    pub fn refusal(&self, code: &'static str) {
        *self.counters().refusals.entry(code).or_default() += 1;
    }

    /// A stage of a cycle of `profile` took `seconds` (`import`, `plan`, `compare`, `store`,
    /// `export`, and `cycle` for the whole).
    pub fn stage(&self, profile: &str, stage: &'static str, seconds: f64) {
        self.counters()
            .stages
            .entry((profile.to_string(), stage))
            .or_insert_with(|| Histogram::new(STAGE_BUCKETS))
            .observe(seconds);
    }

    pub fn cycle_finished(&self, profile: &str, succeeded: bool) {
        let r = if succeeded { "succeeded" } else { "failed" };
        *self
            .counters()
            .cycles
            .entry((profile.to_string(), r))
            .or_default() += 1;
    }
}

/// Prometheus' text format, written family by family.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        for (b, n) in h.buckets.iter().zip(&h.counts) {
            cumulative += n;
            let le = number(*b);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &l, cumulative as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &l, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the format asks.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The whole exposition: this server's counters, then what the store says now.
pub async fn render(st: &AppState) -> crate::api::ApiResult<String> {
    let mut t = Text::default();
    t.family(
        "ferry_build_info",
        "gauge",
        "The running build: its version, always 1.",
    );
    t.sample(
        "ferry_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    t.family(
        "ferry_process_start_time_seconds",
        "gauge",
        "When this server started, in seconds since the Unix epoch.",
    );
    t.sample(
        "ferry_process_start_time_seconds",
        &[],
        st.started_at_ms as f64 / 1000.0,
    );
    {
        let c = st.metrics.counters();
        t.family(
            "ferry_http_requests_total",
            "counter",
            "HTTP requests answered, by listener, method, route template and status class.",
        );
        for (k, (by_class, _)) in &c.http {
            for (i, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                let class = format!("{}xx", i + 1);
                t.sample(
                    "ferry_http_requests_total",
                    &[
                        ("listener", k.listener.as_str()),
                        ("method", k.method),
                        ("route", &k.route),
                        ("status", &class),
                    ],
                    *n as f64,
                );
            }
        }
        t.family(
            "ferry_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request, by listener, method and route template.",
        );
        for (k, (_, h)) in &c.http {
            t.histogram(
                "ferry_http_request_duration_seconds",
                &[
                    ("listener", k.listener.as_str()),
                    ("method", k.method),
                    ("route", &k.route),
                ],
                h,
            );
        }
        t.family(
            "ferry_agent_checkins_total",
            "counter",
            "Agent check-ins, by what they were answered (migration, assignment, blocked, nothing, refused).",
        );
        for r in [
            CheckinResult::Migration,
            CheckinResult::Assignment,
            CheckinResult::Blocked,
            CheckinResult::Nothing,
            CheckinResult::Refused,
        ] {
            let n = c.checkins.get(&r).copied().unwrap_or(0);
            t.sample(
                "ferry_agent_checkins_total",
                &[("result", r.as_str())],
                n as f64,
            );
        }
        t.family(
            "ferry_agent_refusals_total",
            "counter",
            "Agent endpoint calls refused, by refusal code.",
        );
        for (code, n) in &c.refusals {
            t.sample("ferry_agent_refusals_total", &[("code", code)], *n as f64);
        }
        t.family(
            "ferry_sync_cycles_total",
            "counter",
            "Sync cycles this server ran to their end, by profile and result.",
        );
        for ((p, r), n) in &c.cycles {
            t.sample(
                "ferry_sync_cycles_total",
                &[("profile", p), ("result", r)],
                *n as f64,
            );
        }
        t.family(
            "ferry_sync_stage_duration_seconds",
            "histogram",
            "Time a stage of a sync cycle took (import, plan, compare, store, export; cycle for the whole), by profile.",
        );
        for ((p, s), h) in &c.stages {
            t.histogram(
                "ferry_sync_stage_duration_seconds",
                &[("profile", p), ("stage", s)],
                h,
            );
        }
    }
    graph(&mut t);
    stored(&mut t, st).await?;
    Ok(t.0)
}

/// Microsoft Graph calls of this process.
fn graph(t: &mut Text) {
    let g = ferry_directory::graph::STATS.counts();
    t.family(
        "ferry_graph_requests_total",
        "counter",
        "Requests to Microsoft Graph, by status class of the answer (`none`: no answer).",
    );
    for (i, n) in g.requests.iter().enumerate() {
        let class = if i == 0 {
            "none".to_string()
        } else {
            format!("{i}xx")
        };
        t.sample(
            "ferry_graph_requests_total",
            &[("status", &class)],
            *n as f64,
        );
    }
    t.family(
        "ferry_graph_throttled_total",
        "counter",
        "Graph requests (or $batch items) answered 429/503/504 and retried.",
    );
    t.sample("ferry_graph_throttled_total", &[], g.throttled as f64);
    t.family(
        "ferry_graph_retry_after_seconds_total",
        "counter",
        "Seconds of waiting throttled Graph requests were asked for (Retry-After, or backoff).",
    );
    t.sample(
        "ferry_graph_retry_after_seconds_total",
        &[],
        g.waited_ms as f64 / 1000.0,
    );
}

/// What the store says now: agents, batches, profiles' last cycles, moves, bulk tokens.
async fn stored(t: &mut Text, st: &AppState) -> crate::api::ApiResult<()> {
    t.family(
        "ferry_agents",
        "gauge",
        "Enrolled agents, by the state they last reported.",
    );
    for (state, n) in st.store.agent_states(None).await? {
        t.sample("ferry_agents", &[("state", &state)], n as f64);
    }
    t.family(
        "ferry_batch_devices",
        "gauge",
        "Live (not replaced) agents of each batch, by the state they last reported.",
    );
    // Every batch's from one read of the live agents (as the overview reads them), not one per
    // batch.
    let snap = st.devices.snapshot();
    for (b, states) in snap.states_by_batch(st.store.live_agent_states().await?) {
        for (state, n) in states {
            t.sample(
                "ferry_batch_devices",
                &[("batch", b), ("state", &state)],
                n as f64,
            );
        }
    }
    // Each profile's last finished cycle says what the directories held and how it matched.
    let settings = st.settings.get();
    let mut last = Vec::new();
    for p in &settings.config.profiles {
        let cycles = st.store.cycles(Some(&p.name), 20).await?;
        if let Some(c) = cycles.into_iter().find(|c| c.counts.is_some()) {
            last.push((p.name.clone(), c));
        }
    }
    t.family(
        "ferry_sync_last_cycle_timestamp_seconds",
        "gauge",
        "When each profile's last cycle with results finished (or started, if still running).",
    );
    for (p, c) in &last {
        let at = c.finished_at.unwrap_or(c.started_at);
        t.sample(
            "ferry_sync_last_cycle_timestamp_seconds",
            &[("profile", p)],
            at as f64 / 1000.0,
        );
    }
    t.family(
        "ferry_sync_objects",
        "gauge",
        "Objects each profile's last cycle read, by side (source, target).",
    );
    for (p, c) in &last {
        if let Some(n) = &c.counts {
            t.sample(
                "ferry_sync_objects",
                &[("profile", p), ("side", "source")],
                n.source_objects as f64,
            );
            t.sample(
                "ferry_sync_objects",
                &[("profile", p), ("side", "target")],
                n.target_objects as f64,
            );
        }
    }
    t.family(
        "ferry_sync_decisions",
        "gauge",
        "Decisions of each profile's last cycle, by status (matched entries are the translation table).",
    );
    for (p, c) in &last {
        if let Some(n) = &c.counts {
            for (status, v) in [
                ("matched", n.matched),
                ("unmatched", n.unmatched),
                ("ambiguous", n.ambiguous),
                ("refused", n.refused),
                ("excluded", n.excluded),
                ("error", n.errors),
            ] {
                t.sample(
                    "ferry_sync_decisions",
                    &[("profile", p), ("status", status)],
                    v as f64,
                );
            }
        }
    }
    t.family(
        "ferry_translation_entries",
        "gauge",
        "Translation table entries of each profile (its last cycle's matches).",
    );
    for (p, c) in &last {
        if let Some(n) = &c.counts {
            t.sample(
                "ferry_translation_entries",
                &[("profile", p)],
                n.matched as f64,
            );
        }
    }
    t.family(
        "ferry_env_moves",
        "gauge",
        "Environment move requests, by state.",
    );
    let mut moves: BTreeMap<&str, u64> = BTreeMap::new();
    let now = st.clock.now_ms();
    let all: Vec<ferry_core::envmove::Move> =
        crate::moves::all(st, ferry_store::DocKind::EnvMove).await?;
    for m in &all {
        *moves.entry(m.request.state_at(now).as_str()).or_default() += 1;
    }
    for (state, n) in moves {
        t.sample("ferry_env_moves", &[("state", state)], n as f64);
    }
    t.family(
        "ferry_enrolment_token_expiry_timestamp_seconds",
        "gauge",
        "When the newest unrevoked bulk enrolment token of each Entra directory expires.",
    );
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    for tok in st.store.enrolment_tokens(None).await? {
        if tok.revoked_at.is_none() {
            let e = newest
                .entry(tok.directory.clone())
                .or_insert(tok.expires_at);
            *e = (*e).max(tok.expires_at);
        }
    }
    for (d, at) in newest {
        t.sample(
            "ferry_enrolment_token_expiry_timestamp_seconds",
            &[("directory", &d)],
            at as f64 / 1000.0,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_histograms_cumulative() {
        // Catches: a profile named with a quote breaking the exposition, and buckets written
        // per bucket rather than cumulative (Prometheus rejects a falling bucket series).
        let mut t = Text::default();
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        t.histogram("x_seconds", &[("profile", "Smith, \"Ann\"\n\\")], &h);
        assert!(
            t.0.contains(r#"x_seconds_bucket{profile="Smith, \"Ann\"\n\\",le="0.1"} 1"#),
            "{}",
            t.0
        );
        assert!(t.0.contains(r#"le="1"} 2"#), "{}", t.0);
        assert!(t.0.contains(r#"le="+Inf"} 3"#), "{}", t.0);
        assert!(t.0.contains("x_seconds_sum{profile="), "{}", t.0);
        assert!(t.0.contains("} 7.55\n"), "{}", t.0);
    }

    #[test]
    fn unknown_methods_and_unmatched_paths_add_no_label_values() {
        // Catches: a scanner's invented methods and paths each adding a series (unbounded).
        let m = Metrics::default();
        for i in 0..100 {
            let method = axum::http::Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
            m.request(Listener::Admin, &method, None, 404, 0.001);
        }
        let c = m.counters();
        assert_eq!(c.http.len(), 1);
        let (k, (by_class, h)) = c.http.iter().next().unwrap();
        assert_eq!((k.method, k.route.as_str()), ("other", "unmatched"));
        assert_eq!(by_class[3], 100);
        assert_eq!(h.count, 100);
    }
}

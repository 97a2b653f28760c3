//! A typed client of ferry's admin API (`/api/v1`), used by the CLI, the integration tests and the
//! benchmarks. One async method per endpoint, answering the wire types the server writes
//! ([`ferry_core::wire`] and the other `ferry-core` types), so that both sides share one shape.
//!
//! Every request goes through one of the [`ep`] constants (the raw senders are private); a test
//! checks each of them against the committed OpenAPI document (`docs/openapi.json`).

use ferry_core::ObjectKind;
use ferry_core::envmove::{Environment, Tenant};
use ferry_core::export::TranslationEntry;
use ferry_core::preflight::PreflightReport;
use ferry_core::runbook::Runbook;
use ferry_core::wire::{
    Accepted, AgentDetail, AgentEndpointInfo, AgentView, Approval, ApproveBody, AuditEntry,
    BatchProgress, BatchView, BatchWhatIf, ComputerChange, CreatedOperator, CreatedPsk, CycleInfo,
    DecidedRequest, DirectoryInfo, EnrollmentRequest, ErrorBody, FailedReport, ImportResult, Me,
    Migrated, MoveStatus, MoveView, NewOperator, NewPsk, ObjectReports, OperatorRecord,
    OverrideRequest, OverrideView, ProfileInfo, Psk, Rotate, Rotated, Session, SignIn, Started,
    StoredLog, Submit, TestResult, TokenView, TranslationPage, UploadBody, Uploaded, WaveState,
    WhatIf,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

pub use ferry_core::wire;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error: its status and message (the body `{"error", "status"}`).
    #[error("{}", api_message(*.status, .message))]
    Api { status: u16, message: String },
    /// Nothing answers at the server's address.
    #[error(
        "cannot reach the ferry server at {base}: is it running? (start it with `ferry server`, or give --server / FERRY_SERVER)"
    )]
    Connect { base: String },
    /// The answer was not the type this client expects.
    #[error("the server's answer was not what this ferry expects")]
    Decode(#[source] reqwest::Error),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// A body that cannot be sent as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A download that could not be written where it goes.
    #[error("cannot write the download: {0}")]
    Write(#[source] std::io::Error),
}

fn api_message(status: u16, message: &str) -> String {
    if status == StatusCode::UNAUTHORIZED.as_u16() {
        format!(
            "{message} (give --token or FERRY_TOKEN; the server writes its admin token to DATA_DIR/admin-token)"
        )
    } else {
        format!("{message} (HTTP {status})")
    }
}

impl Error {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An endpoint: its method and its path template as the OpenAPI document spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ep {
    pub method: &'static str,
    pub path: &'static str,
}

impl Ep {
    const fn new(method: &'static str, path: &'static str) -> Ep {
        Ep { method, path }
    }

    fn method(self) -> Method {
        match self.method {
            "post" => Method::POST,
            "put" => Method::PUT,
            "delete" => Method::DELETE,
            "patch" => Method::PATCH,
            _ => Method::GET,
        }
    }

    /// The path with each `{…}` filled, in order, with an argument as one URL segment.
    pub fn fill(self, args: &[&str]) -> String {
        let mut out = String::with_capacity(self.path.len());
        let mut args = args.iter();
        let mut rest = self.path;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            out.push_str(&seg(args.next().copied().unwrap_or_default()));
            rest = &rest[close..];
        }
        out.push_str(rest);
        out
    }
}

/// The endpoints this client calls.
pub mod ep {
    use super::Ep;

    pub const DIRECTORIES: Ep = Ep::new("get", "/directories");
    pub const DIRECTORY_TEST: Ep = Ep::new("post", "/directories/{name}/test");
    pub const ENROLMENT_TOKENS: Ep = Ep::new("get", "/directories/{name}/enrolment-tokens");
    pub const ENROLMENT_TOKEN_UPLOAD: Ep = Ep::new("post", "/directories/{name}/enrolment-tokens");
    pub const ENROLMENT_TOKEN_REVOKE: Ep = Ep::new("post", "/enrolment-tokens/{id}/revoke");
    pub const PROFILES: Ep = Ep::new("get", "/profiles");
    pub const RUN: Ep = Ep::new("post", "/profiles/{name}/run");
    pub const WHATIF: Ep = Ep::new("get", "/profiles/{name}/whatif");
    pub const APPROVE: Ep = Ep::new("post", "/profiles/{name}/approve");
    pub const OVERRIDES: Ep = Ep::new("get", "/profiles/{name}/overrides");
    pub const OVERRIDE_ADD: Ep = Ep::new("post", "/profiles/{name}/overrides");
    pub const OVERRIDE_REMOVE: Ep = Ep::new("delete", "/profiles/{name}/overrides/{source}");
    pub const OVERRIDES_IMPORT: Ep = Ep::new("post", "/profiles/{name}/overrides/import");
    pub const CYCLES: Ep = Ep::new("get", "/cycles");
    pub const CYCLE: Ep = Ep::new("get", "/cycles/{id}");
    pub const TRANSLATION: Ep = Ep::new("get", "/translation");
    pub const TRANSLATION_EXPORT: Ep = Ep::new("get", "/translation/export");
    pub const LOGS: Ep = Ep::new("get", "/logs");
    pub const REPORT_OBJECT: Ep = Ep::new("get", "/report/object");
    pub const AUDIT: Ep = Ep::new("get", "/audit");
    pub const PSKS: Ep = Ep::new("get", "/psks");
    pub const PSK_CREATE: Ep = Ep::new("post", "/psks");
    pub const PSK_RETIRE: Ep = Ep::new("post", "/psks/{name}/retire");
    pub const ENROLLMENT_REQUESTS: Ep = Ep::new("get", "/enrollment-requests");
    pub const ENROLLMENT_APPROVE: Ep = Ep::new("post", "/enrollment-requests/{id}/approve");
    pub const ENROLLMENT_REFUSE: Ep = Ep::new("post", "/enrollment-requests/{id}/refuse");
    pub const AGENT_ENDPOINT: Ep = Ep::new("get", "/agent-endpoint");
    pub const AGENTS: Ep = Ep::new("get", "/agents");
    pub const AGENT: Ep = Ep::new("get", "/agents/{id}");
    pub const AGENT_LOG: Ep = Ep::new("get", "/agents/{id}/runs/{run}/log");
    pub const FAILED_COMMUNICATIONS: Ep = Ep::new("get", "/reports/failed-communications");
    pub const RUNBOOKS: Ep = Ep::new("get", "/runbooks");
    pub const RUNBOOK_PUT: Ep = Ep::new("put", "/runbooks/{name}");
    pub const RUNBOOK_DELETE: Ep = Ep::new("delete", "/runbooks/{name}");
    pub const BATCHES: Ep = Ep::new("get", "/batches");
    pub const BATCH_PUT: Ep = Ep::new("put", "/batches/{name}");
    pub const BATCH_DELETE: Ep = Ep::new("delete", "/batches/{name}");
    pub const BATCH_COMPUTERS: Ep = Ep::new("post", "/batches/{name}/computers");
    pub const BATCH_WHATIF: Ep = Ep::new("get", "/batches/{name}/whatif");
    pub const BATCH_PROGRESS: Ep = Ep::new("get", "/batches/{name}/progress");
    pub const BATCH_RESUME: Ep = Ep::new("post", "/batches/{name}/resume");
    pub const BATCH_PREFLIGHT: Ep = Ep::new("get", "/batches/{name}/preflight");
    pub const DIRECTORY_PREFLIGHT: Ep = Ep::new("get", "/directories/{name}/preflight");
    pub const TENANTS: Ep = Ep::new("get", "/tenants");
    pub const TENANT_PUT: Ep = Ep::new("put", "/tenants/{id}");
    pub const SIGN_IN: Ep = Ep::new("post", "/sessions");
    pub const SIGN_OUT: Ep = Ep::new("delete", "/sessions");
    pub const ME: Ep = Ep::new("get", "/me");
    pub const OPERATORS: Ep = Ep::new("get", "/operators");
    pub const OPERATOR_CREATE: Ep = Ep::new("post", "/operators");
    pub const OPERATOR_REMOVE: Ep = Ep::new("delete", "/operators/{name}");
    pub const OPERATOR_ROTATE: Ep = Ep::new("post", "/operators/{name}/rotate");
    pub const ENVIRONMENTS: Ep = Ep::new("get", "/environments");
    pub const ENVIRONMENT: Ep = Ep::new("get", "/environments/{id}");
    pub const ENVIRONMENT_PUT: Ep = Ep::new("put", "/environments/{id}");
    pub const MOVE_SUBMIT: Ep = Ep::new("post", "/environments/{id}/moves");
    pub const MOVES: Ep = Ep::new("get", "/moves");
    pub const MOVE_APPROVALS: Ep = Ep::new("get", "/moves/approvals");
    pub const MOVE_APPROVE: Ep = Ep::new("post", "/moves/{id}/approve");
    pub const MOVE_REJECT: Ep = Ep::new("post", "/moves/{id}/reject");
    pub const USERMAPPING_UPLOAD: Ep = Ep::new("put", "/environments/{id}/usermapping");
    pub const MOVE_PREPARE: Ep = Ep::new("post", "/moves/{id}/prepare");
    pub const MOVE_STATUS: Ep = Ep::new("get", "/moves/{id}/status");
    pub const MOVE_ERRORS: Ep = Ep::new("get", "/moves/{id}/errors");
    pub const MOVE_MIGRATE: Ep = Ep::new("post", "/moves/{id}/migrate");
    pub const MOVE_CANCEL: Ep = Ep::new("post", "/moves/{id}/cancel");
    pub const MOVE_DELETE: Ep = Ep::new("delete", "/moves/{id}");

    /// Every endpoint above.
    pub const ALL: &[Ep] = &[
        DIRECTORIES,
        DIRECTORY_TEST,
        ENROLMENT_TOKENS,
        ENROLMENT_TOKEN_UPLOAD,
        ENROLMENT_TOKEN_REVOKE,
        PROFILES,
        RUN,
        WHATIF,
        APPROVE,
        OVERRIDES,
        OVERRIDE_ADD,
        OVERRIDE_REMOVE,
        OVERRIDES_IMPORT,
        CYCLES,
        CYCLE,
        TRANSLATION,
        TRANSLATION_EXPORT,
        LOGS,
        REPORT_OBJECT,
        AUDIT,
        PSKS,
        PSK_CREATE,
        PSK_RETIRE,
        ENROLLMENT_REQUESTS,
        ENROLLMENT_APPROVE,
        ENROLLMENT_REFUSE,
        AGENT_ENDPOINT,
        AGENTS,
        AGENT,
        AGENT_LOG,
        FAILED_COMMUNICATIONS,
        RUNBOOKS,
        RUNBOOK_PUT,
        RUNBOOK_DELETE,
        BATCHES,
        BATCH_PUT,
        BATCH_DELETE,
        BATCH_COMPUTERS,
        BATCH_WHATIF,
        BATCH_PROGRESS,
        BATCH_RESUME,
        BATCH_PREFLIGHT,
        DIRECTORY_PREFLIGHT,
        TENANTS,
        TENANT_PUT,
        SIGN_IN,
        SIGN_OUT,
        ME,
        OPERATORS,
        OPERATOR_CREATE,
        OPERATOR_REMOVE,
        OPERATOR_ROTATE,
        ENVIRONMENTS,
        ENVIRONMENT,
        ENVIRONMENT_PUT,
        MOVE_SUBMIT,
        MOVES,
        MOVE_APPROVALS,
        MOVE_APPROVE,
        MOVE_REJECT,
        USERMAPPING_UPLOAD,
        MOVE_PREPARE,
        MOVE_STATUS,
        MOVE_ERRORS,
        MOVE_MIGRATE,
        MOVE_CANCEL,
        MOVE_DELETE,
    ];
}

/// A value as one path segment of a URL (names hold commas, spaces, `/`, non-ASCII).
pub fn seg(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token given, else an admin-token file in the usual data directories (relative to the
/// working directory).
pub fn find_token(given: Option<String>) -> Option<String> {
    given.or_else(|| {
        [
            "ferry-data/admin-token",
            "ferry-quickstart/data/admin-token",
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(Path::new(p)).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    })
}

/// Query parameters: name and value, in order.
pub type Query<'a> = [(&'a str, String)];

fn push(q: &mut Vec<(&'static str, String)>, k: &'static str, v: Option<impl ToString>) {
    if let Some(v) = v {
        q.push((k, v.to_string()));
    }
}

/// `GET /logs`: which entries.
#[derive(Clone, Debug, Default)]
pub struct LogsQuery {
    pub limit: Option<i64>,
    pub profile: Option<String>,
    /// Minimum level: `info`, `warning` or `error`.
    pub level: Option<String>,
    pub cycle: Option<i64>,
}

/// `GET /profiles/{name}/whatif`: which page of decisions and writes.
#[derive(Clone, Debug, Default)]
pub struct WhatIfQuery {
    pub status: Option<String>,
    pub kind: Option<String>,
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub writes_limit: Option<i64>,
}

/// `GET /translation`: a search of the translation table.
#[derive(Clone, Debug, Default)]
pub struct TranslationQuery {
    pub q: Option<String>,
    pub profile: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /agents`: a page of agents, optionally narrowed.
#[derive(Clone, Debug, Default)]
pub struct AgentsQuery {
    /// Part of the host name or device id.
    pub search: Option<String>,
    pub state: Option<String>,
    pub batch: Option<String>,
    /// Agents to skip (at most 10,000; the server refuses more): prefer `after`.
    pub offset: Option<i64>,
    /// The agents after this id (keyset paging in id order: the last id of the previous page).
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug)]
/// A translation export on its way: the server's figures at once, the body as it arrives.
pub struct Export {
    /// Entries written (`x-ferry-written`), as the server said it.
    pub written: Option<String>,
    /// Entries the format left out (`x-ferry-skipped`).
    pub skipped: Option<String>,
    /// The body's size in bytes, when the server said it.
    pub length: Option<u64>,
    resp: reqwest::Response,
}

impl Export {
    /// Copies the body into `out` as it arrives, telling `received` the bytes so far after each
    /// chunk; answers the total.
    pub async fn copy_to(
        mut self,
        out: &mut impl std::io::Write,
        mut received: impl FnMut(u64),
    ) -> Result<u64> {
        let mut n = 0u64;
        while let Some(chunk) = self.resp.chunk().await? {
            out.write_all(&chunk).map_err(Error::Write)?;
            n += chunk.len() as u64;
            received(n);
        }
        Ok(n)
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `server` (`http://host:port`), with this bearer token.
    pub fn new(server: &str, token: Option<String>) -> Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            base: format!("{}/api/v1", server.trim_end_matches('/')),
            token,
        })
    }

    /// As [`Client::new`], the token found by [`find_token`] when none is given.
    pub fn discover(server: &str, token: Option<String>) -> Result<Client> {
        Client::new(server, find_token(token))
    }

    /// The server's own URL (without `/api/v1`).
    pub fn server(&self) -> &str {
        self.base.trim_end_matches("/api/v1")
    }

    fn request(&self, method: Method, path: &str, query: &Query<'_>) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// Sends a request with an optional JSON body; an error answer is an [`Error::Api`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &Query<'_>,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let mut req = self.request(method, path, query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req).await
    }

    /// Sends raw bytes (a file) as the body.
    async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        query: &Query<'_>,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<reqwest::Response> {
        let req = self
            .request(method, path, query)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                Error::Connect {
                    base: self.base.clone(),
                }
            } else {
                Error::Http(e)
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or(text);
        Err(Error::Api {
            status: status.as_u16(),
            message,
        })
    }

    async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
        resp.json().await.map_err(Error::Decode)
    }

    /// Calls an endpoint with a typed body (or none) and decodes its typed answer.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        ep: Ep,
        args: &[&str],
        query: &Query<'_>,
        body: Option<&B>,
    ) -> Result<T> {
        let body = body.map(serde_json::to_value).transpose()?;
        Self::decode(self.send(ep.method(), &ep.fill(args), query, body).await?).await
    }

    async fn ask<T: DeserializeOwned>(
        &self,
        ep: Ep,
        args: &[&str],
        query: &Query<'_>,
    ) -> Result<T> {
        self.call::<(), T>(ep, args, query, None).await
    }

    // ---- Directories and bulk enrolment tokens ----

    pub async fn directories(&self) -> Result<Vec<DirectoryInfo>> {
        self.ask(ep::DIRECTORIES, &[], &[]).await
    }

    pub async fn test_directory(&self, name: &str) -> Result<TestResult> {
        self.ask(ep::DIRECTORY_TEST, &[name], &[]).await
    }

    pub async fn enrolment_tokens(&self, directory: &str) -> Result<Vec<TokenView>> {
        self.ask(ep::ENROLMENT_TOKENS, &[directory], &[]).await
    }

    pub async fn upload_enrolment_token(
        &self,
        directory: &str,
        body: &UploadBody,
    ) -> Result<TokenView> {
        self.call(ep::ENROLMENT_TOKEN_UPLOAD, &[directory], &[], Some(body))
            .await
    }

    pub async fn revoke_enrolment_token(&self, id: i64) -> Result<TokenView> {
        self.ask(ep::ENROLMENT_TOKEN_REVOKE, &[&id.to_string()], &[])
            .await
    }

    // ---- Sync profiles, cycles, the What-If, overrides ----

    pub async fn profiles(&self) -> Result<Vec<ProfileInfo>> {
        self.ask(ep::PROFILES, &[], &[]).await
    }

    /// Starts a cycle; with `wait`, answers when it finished (with its record).
    pub async fn run(&self, profile: &str, wait: bool) -> Result<Started> {
        let q = if wait {
            vec![("wait", "true".to_string())]
        } else {
            vec![]
        };
        self.ask(ep::RUN, &[profile], &q).await
    }

    /// Starts a cycle and answers when it finished, waiting up to `timeout_secs` (the server's
    /// default is 600, its cap 86,400).
    pub async fn run_waiting(&self, profile: &str, timeout_secs: u64) -> Result<Started> {
        let q = [
            ("wait", "true".to_string()),
            ("timeout", timeout_secs.to_string()),
        ];
        self.ask(ep::RUN, &[profile], &q).await
    }

    pub async fn whatif(&self, profile: &str, query: &WhatIfQuery) -> Result<WhatIf> {
        let mut q = Vec::new();
        push(&mut q, "limit", query.limit);
        push(&mut q, "writes_limit", query.writes_limit);
        push(&mut q, "status", query.status.as_ref());
        push(&mut q, "kind", query.kind.as_ref());
        push(&mut q, "q", query.q.as_ref());
        self.ask(ep::WHATIF, &[profile], &q).await
    }

    /// Approves the current What-If; with `plan_hash`, only if it is still the one reviewed.
    pub async fn approve(&self, profile: &str, plan_hash: Option<&str>) -> Result<Approval> {
        let body = plan_hash.map(|h| ApproveBody {
            plan_hash: Some(h.to_string()),
        });
        self.call(ep::APPROVE, &[profile], &[], body.as_ref()).await
    }

    pub async fn overrides(&self, profile: &str) -> Result<Vec<OverrideView>> {
        self.ask(ep::OVERRIDES, &[profile], &[]).await
    }

    pub async fn add_override(
        &self,
        profile: &str,
        body: &OverrideRequest,
    ) -> Result<OverrideView> {
        self.call(ep::OVERRIDE_ADD, &[profile], &[], Some(body))
            .await
    }

    pub async fn remove_override(&self, profile: &str, source: &str) -> Result<()> {
        self.no_answer(ep::OVERRIDE_REMOVE, &[profile, source])
            .await
    }

    /// Imports overrides from a CSV file's bytes.
    pub async fn import_overrides(&self, profile: &str, csv: Vec<u8>) -> Result<ImportResult> {
        let e = ep::OVERRIDES_IMPORT;
        let resp = self
            .send_bytes(e.method(), &e.fill(&[profile]), &[], csv, "text/csv")
            .await?;
        Self::decode(resp).await
    }

    pub async fn cycles(
        &self,
        profile: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<CycleInfo>> {
        let mut q = Vec::new();
        push(&mut q, "limit", limit);
        push(&mut q, "profile", profile);
        self.ask(ep::CYCLES, &[], &q).await
    }

    pub async fn cycle(&self, id: i64) -> Result<CycleInfo> {
        self.ask(ep::CYCLE, &[&id.to_string()], &[]).await
    }

    // ---- The translation table, logs, reports, the audit trail ----

    pub async fn translation(&self, query: &TranslationQuery) -> Result<TranslationPage> {
        let mut q = Vec::new();
        push(&mut q, "q", query.q.as_ref());
        push(&mut q, "limit", query.limit);
        push(&mut q, "profile", query.profile.as_ref());
        self.ask(ep::TRANSLATION, &[], &q).await
    }

    /// The translation table in a format (`csv`, `json`, `sidhistory`, …), for a profile or an
    /// environment.
    pub async fn export_translation(
        &self,
        format: &str,
        profile: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Export> {
        let mut q = vec![("format", format.to_string())];
        push(&mut q, "profile", profile);
        push(&mut q, "environment", environment);
        let e = ep::TRANSLATION_EXPORT;
        let resp = self.send(e.method(), e.path, &q, None).await?;
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (written, skipped) = (header("x-ferry-written"), header("x-ferry-skipped"));
        Ok(Export {
            written,
            skipped,
            length: resp.content_length(),
            resp,
        })
    }

    /// The translation table's entries (the `json` export), for a profile and a kind.
    pub async fn translation_entries(
        &self,
        profile: Option<&str>,
        kind: Option<ObjectKind>,
    ) -> Result<Vec<TranslationEntry>> {
        let mut q = vec![("format", "json".to_string())];
        push(&mut q, "profile", profile);
        push(&mut q, "kind", kind.map(ObjectKind::as_str));
        self.ask(ep::TRANSLATION_EXPORT, &[], &q).await
    }

    pub async fn logs(&self, query: &LogsQuery) -> Result<Vec<StoredLog>> {
        let mut q = Vec::new();
        push(&mut q, "limit", query.limit);
        push(&mut q, "profile", query.profile.as_ref());
        push(&mut q, "level", query.level.as_ref());
        push(&mut q, "cycle", query.cycle);
        self.ask(ep::LOGS, &[], &q).await
    }

    /// The single object report: everything known about the objects a key names, every stored
    /// object looked at (`every=true`: the whole answer, not the console's quick first one).
    pub async fn object_report(&self, query: &str) -> Result<ObjectReports> {
        self.ask(
            ep::REPORT_OBJECT,
            &[],
            &[("q", query.to_string()), ("every", "true".to_string())],
        )
        .await
    }

    /// The newest audit lines, newest first.
    pub async fn audit(&self, limit: Option<i64>) -> Result<Vec<AuditEntry>> {
        let mut q = Vec::new();
        push(&mut q, "limit", limit);
        self.ask(ep::AUDIT, &[], &q).await
    }

    /// One page of an export of the audit trail, oldest first: the lines recorded at or after
    /// `since` (epoch ms) with an id greater than `after`.
    pub async fn audit_page(
        &self,
        since: Option<i64>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let mut q = Vec::new();
        push(&mut q, "limit", Some(limit));
        push(&mut q, "since", Some(since.unwrap_or(0)));
        push(&mut q, "after", after);
        self.ask(ep::AUDIT, &[], &q).await
    }

    /// Every audit line recorded at or after `since` (epoch ms), oldest first, page by page:
    /// `each` is called with each page as it arrives. Lines recorded meanwhile are included.
    pub async fn audit_since(&self, since: i64, mut each: impl FnMut(&[AuditEntry])) -> Result<()> {
        const PAGE: i64 = 1000;
        let mut after = None;
        loop {
            let page = self.audit_page(Some(since), after, PAGE).await?;
            each(&page);
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = Some(last.id),
                _ => return Ok(()),
            }
        }
    }

    // ---- Devices: pre-shared keys, enrollments, agents ----

    /// Creates a pre-shared key; the answer holds the key itself, shown this once.
    pub async fn create_psk(&self, body: &NewPsk) -> Result<CreatedPsk> {
        self.call(ep::PSK_CREATE, &[], &[], Some(body)).await
    }

    pub async fn psks(&self) -> Result<Vec<Psk>> {
        self.ask(ep::PSKS, &[], &[]).await
    }

    pub async fn retire_psk(&self, name: &str) -> Result<Psk> {
        self.ask(ep::PSK_RETIRE, &[name], &[]).await
    }

    /// Held enrollments: `pending` (the server's default), `approved`, `refused` or `all`.
    pub async fn enrollment_requests(&self, state: Option<&str>) -> Result<Vec<EnrollmentRequest>> {
        let mut q = Vec::new();
        push(&mut q, "state", state);
        self.ask(ep::ENROLLMENT_REQUESTS, &[], &q).await
    }

    pub async fn approve_enrollment(&self, id: i64) -> Result<DecidedRequest> {
        self.ask(ep::ENROLLMENT_APPROVE, &[&id.to_string()], &[])
            .await
    }

    pub async fn refuse_enrollment(&self, id: i64) -> Result<DecidedRequest> {
        self.ask(ep::ENROLLMENT_REFUSE, &[&id.to_string()], &[])
            .await
    }

    pub async fn agent_endpoint(&self) -> Result<AgentEndpointInfo> {
        self.ask(ep::AGENT_ENDPOINT, &[], &[]).await
    }

    pub async fn agents(&self, query: &AgentsQuery) -> Result<Vec<AgentView>> {
        let mut q = Vec::new();
        push(&mut q, "offset", query.offset);
        push(&mut q, "after", query.after);
        push(&mut q, "limit", query.limit);
        push(&mut q, "search", query.search.as_ref());
        push(&mut q, "state", query.state.as_ref());
        push(&mut q, "batch", query.batch.as_ref());
        self.ask(ep::AGENTS, &[], &q).await
    }

    pub async fn agent(&self, id: i64) -> Result<AgentDetail> {
        self.ask(ep::AGENT, &[&id.to_string()], &[]).await
    }

    /// A run's log as the agent sent it (text).
    pub async fn agent_log(&self, id: i64, run: &str) -> Result<String> {
        let e = ep::AGENT_LOG;
        let resp = self
            .send(e.method(), &e.fill(&[&id.to_string(), run]), &[], None)
            .await?;
        Ok(resp.text().await?)
    }

    pub async fn failed_communications(&self, silent_polls: Option<i64>) -> Result<FailedReport> {
        let mut q = Vec::new();
        push(&mut q, "silent_polls", silent_polls);
        self.ask(ep::FAILED_COMMUNICATIONS, &[], &q).await
    }

    // ---- Runbooks and batches ----

    pub async fn runbooks(&self) -> Result<Vec<ferry_core::wire::RunbookView>> {
        self.ask(ep::RUNBOOKS, &[], &[]).await
    }

    /// Creates or replaces a runbook; the body is sent as given (the server checks it).
    pub async fn put_runbook<B: Serialize>(&self, name: &str, body: &B) -> Result<Runbook> {
        self.call(ep::RUNBOOK_PUT, &[name], &[], Some(body)).await
    }

    pub async fn delete_runbook(&self, name: &str) -> Result<()> {
        self.no_answer(ep::RUNBOOK_DELETE, &[name]).await
    }

    pub async fn batches(&self) -> Result<Vec<BatchView>> {
        self.ask(ep::BATCHES, &[], &[]).await
    }

    /// Creates or replaces a batch (the body as given); `add_prerequisites` adds the runbooks'
    /// prerequisites it lacks.
    pub async fn put_batch<B: Serialize>(
        &self,
        name: &str,
        body: &B,
        add_prerequisites: bool,
    ) -> Result<BatchView> {
        let q = [("add_prerequisites", add_prerequisites.to_string())];
        self.call(ep::BATCH_PUT, &[name], &q, Some(body)).await
    }

    pub async fn delete_batch(&self, name: &str) -> Result<()> {
        self.no_answer(ep::BATCH_DELETE, &[name]).await
    }

    pub async fn change_batch_computers(
        &self,
        name: &str,
        change: &ComputerChange,
    ) -> Result<BatchView> {
        self.call(ep::BATCH_COMPUTERS, &[name], &[], Some(change))
            .await
    }

    pub async fn batch_whatif(&self, name: &str) -> Result<BatchWhatIf> {
        self.ask(ep::BATCH_WHATIF, &[name], &[]).await
    }

    pub async fn batch_progress(&self, name: &str) -> Result<BatchProgress> {
        self.ask(ep::BATCH_PROGRESS, &[name], &[]).await
    }

    /// The tenant pre-flight of a batch (cached by the server for a few minutes; `refresh` reads
    /// Microsoft Graph again).
    pub async fn batch_preflight(&self, name: &str, refresh: bool) -> Result<PreflightReport> {
        self.ask(
            ep::BATCH_PREFLIGHT,
            &[name],
            &[("refresh", refresh.to_string())],
        )
        .await
    }

    /// The tenant-wide pre-flight of a Microsoft Entra directory.
    pub async fn directory_preflight(&self, name: &str, refresh: bool) -> Result<PreflightReport> {
        self.ask(
            ep::DIRECTORY_PREFLIGHT,
            &[name],
            &[("refresh", refresh.to_string())],
        )
        .await
    }

    /// Resumes a batch that halted itself (the operator's act, audited).
    pub async fn resume_batch(&self, name: &str) -> Result<WaveState> {
        self.ask(ep::BATCH_RESUME, &[name], &[]).await
    }

    async fn no_answer(&self, ep: Ep, args: &[&str]) -> Result<()> {
        self.send(ep.method(), &ep.fill(args), &[], None).await?;
        Ok(())
    }

    // ---- Operators and sessions ----

    /// Signs in with a password: a session token.
    pub async fn sign_in(&self, body: &SignIn) -> Result<Session> {
        self.call(ep::SIGN_IN, &[], &[], Some(body)).await
    }

    pub async fn sign_out(&self) -> Result<()> {
        self.no_answer(ep::SIGN_OUT, &[]).await
    }

    /// Who this client's token is.
    pub async fn me(&self) -> Result<Me> {
        self.ask(ep::ME, &[], &[]).await
    }

    pub async fn operators(&self) -> Result<Vec<OperatorRecord>> {
        self.ask(ep::OPERATORS, &[], &[]).await
    }

    /// Creates an operator; the answer holds its token, shown this once.
    pub async fn create_operator(&self, body: &NewOperator) -> Result<CreatedOperator> {
        self.call(ep::OPERATOR_CREATE, &[], &[], Some(body)).await
    }

    pub async fn remove_operator(&self, name: &str) -> Result<()> {
        self.no_answer(ep::OPERATOR_REMOVE, &[name]).await
    }

    /// A new token (and password, when one is generated) for an operator.
    pub async fn rotate_operator(&self, name: &str, body: &Rotate) -> Result<Rotated> {
        self.call(ep::OPERATOR_ROTATE, &[name], &[], Some(body))
            .await
    }

    // ---- Tenants and environments ----

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.ask(ep::TENANTS, &[], &[]).await
    }

    /// Creates or replaces a tenant (the body as given; the server checks it).
    pub async fn put_tenant<B: Serialize>(&self, id: &str, body: &B) -> Result<Tenant> {
        self.call(ep::TENANT_PUT, &[id], &[], Some(body)).await
    }

    pub async fn environments(&self) -> Result<Vec<Environment>> {
        self.ask(ep::ENVIRONMENTS, &[], &[]).await
    }

    pub async fn environment(&self, id: &str) -> Result<Environment> {
        self.ask(ep::ENVIRONMENT, &[id], &[]).await
    }

    /// Creates or replaces an environment (the body as given; the server checks it).
    pub async fn put_environment<B: Serialize>(&self, id: &str, body: &B) -> Result<Environment> {
        self.call(ep::ENVIRONMENT_PUT, &[id], &[], Some(body)).await
    }

    // ---- Environment moves ----

    pub async fn submit_move(&self, environment: &str, body: &Submit) -> Result<MoveView> {
        self.call(ep::MOVE_SUBMIT, &[environment], &[], Some(body))
            .await
    }

    pub async fn moves(&self) -> Result<Vec<MoveView>> {
        self.ask(ep::MOVES, &[], &[]).await
    }

    /// Moves that wait for this side's approval.
    pub async fn move_approvals(&self) -> Result<Vec<MoveView>> {
        self.ask(ep::MOVE_APPROVALS, &[], &[]).await
    }

    pub async fn approve_move(&self, migration_id: &str) -> Result<MoveView> {
        self.ask(ep::MOVE_APPROVE, &[migration_id], &[]).await
    }

    pub async fn reject_move(&self, migration_id: &str) -> Result<MoveView> {
        self.ask(ep::MOVE_REJECT, &[migration_id], &[]).await
    }

    pub async fn cancel_move(&self, migration_id: &str) -> Result<MoveView> {
        self.ask(ep::MOVE_CANCEL, &[migration_id], &[]).await
    }

    /// Uploads the user mapping file (`usermapping.csv`) of an environment's move.
    pub async fn upload_mapping(
        &self,
        environment: &str,
        file_name: &str,
        csv: Vec<u8>,
    ) -> Result<Uploaded> {
        let e = ep::USERMAPPING_UPLOAD;
        let q = [("file_name", file_name.to_string())];
        let resp = self
            .send_bytes(e.method(), &e.fill(&[environment]), &q, csv, "text/csv")
            .await?;
        Self::decode(resp).await
    }

    pub async fn prepare_move(&self, migration_id: &str) -> Result<Accepted> {
        self.ask(ep::MOVE_PREPARE, &[migration_id], &[]).await
    }

    pub async fn move_status(&self, migration_id: &str) -> Result<MoveStatus> {
        self.ask(ep::MOVE_STATUS, &[migration_id], &[]).await
    }

    /// The validation errors of a move, as the CSV file the server writes.
    pub async fn move_errors(&self, migration_id: &str) -> Result<String> {
        let e = ep::MOVE_ERRORS;
        let resp = self
            .send(e.method(), &e.fill(&[migration_id]), &[], None)
            .await?;
        Ok(resp.text().await?)
    }

    pub async fn migrate_move(&self, migration_id: &str) -> Result<Migrated> {
        self.ask(ep::MOVE_MIGRATE, &[migration_id], &[]).await
    }

    pub async fn delete_move(&self, migration_id: &str) -> Result<()> {
        self.no_answer(ep::MOVE_DELETE, &[migration_id]).await
    }
}

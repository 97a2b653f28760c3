//! `/agent/v1/…`: what migration agents call, over TLS (docs/agent-protocol.md). Agents
//! authenticate with their node key; admin tokens are not accepted here, node keys are not
//! accepted on `/api/v1`. Every refusal is recorded in the failed communications report.

use crate::agent_tls::AgentPeer;
use crate::auth::hash_token;
use crate::devices::{self, POLL_SECONDS};
use crate::state::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_core::agent::Credential;
use ferry_core::agent::{
    AgentError, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, EventsRequest,
    LogChunk, PROTOCOL_VERSION, ProfileTranslation, SUPPORTED_PROTOCOLS,
};
use ferry_store::{AgentRecord, Contact, Enrollment, FailedComm, now_ms};
use serde::Deserialize;

/// An agent endpoint refusal.
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = AgentError {
            protocol: PROTOCOL_VERSION,
            code: self.code.into(),
            error: self.message,
            supported_protocols: if self.code == "protocol_mismatch" {
                SUPPORTED_PROTOCOLS.to_vec()
            } else {
                Vec::new()
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ferry_store::StoreError> for Refusal {
    fn from(e: ferry_store::StoreError) -> Refusal {
        tracing::error!(error = %e, "agent endpoint: store error");
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the call",
        )
    }
}

/// Records a refusal for the failed communications report, then returns it.
async fn refuse(
    st: &AppState,
    peer: Option<&AgentPeer>,
    agent: Option<&AgentRecord>,
    device: Option<&str>,
    r: Refusal,
) -> Refusal {
    let f = FailedComm {
        id: 0,
        at: now_ms(),
        address: peer.map(|p| p.0.ip().to_string()),
        code: r.code.into(),
        reason: r.message.clone(),
        agent_id: agent.map(|a| a.id),
        device_id: device
            .map(str::to_string)
            .or_else(|| agent.map(|a| a.device_id.clone())),
    };
    if let Err(e) = st.store.record_failed_comm(&f).await {
        tracing::warn!(error = %e, "could not record a failed agent communication");
    }
    tracing::info!(code = r.code, address = ?f.address, reason = %r.message, "agent call refused");
    r
}

/// A request body, or a recorded `400 bad_request` saying what is wrong and where.
async fn parse<T: serde::de::DeserializeOwned>(
    st: &AppState,
    peer: &AgentPeer,
    agent: Option<&AgentRecord>,
    body: &[u8],
    what: &str,
) -> Result<T, Refusal> {
    match serde_json::from_slice(body) {
        Ok(r) => Ok(r),
        Err(e) => Err(refuse(
            st,
            Some(peer),
            agent,
            None,
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{what} is not valid JSON for agent protocol {PROTOCOL_VERSION}: {e}"),
            ),
        )
        .await),
    }
}

fn check_protocol(p: u32) -> Result<(), Refusal> {
    if SUPPORTED_PROTOCOLS.contains(&p) {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            "protocol_mismatch",
            format!(
                "this server speaks agent protocol {SUPPORTED_PROTOCOLS:?}; the agent sent {p}: update the agent or the server"
            ),
        ))
    }
}

fn random_key() -> Credential {
    let mut b = [0u8; 32];
    if getrandom::fill(&mut b).is_err() {
        // Without an entropy source no credential can be made safely.
        return Credential::new(String::new());
    }
    use base64::Engine as _;
    Credential::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// The calling agent, from `Authorization: Bearer <node key>`.
pub struct Agent(pub AgentRecord);

impl FromRequestParts<AppState> for Agent {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<AgentPeer>>()
            .map(|c| c.0);
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let Some(key) = key else {
            return Err(refuse(
                st,
                peer.as_ref(),
                None,
                None,
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "no node key: enroll first, then send it as a bearer token",
                ),
            )
            .await);
        };
        match st
            .devices
            .authenticate(&*st.store, &hash_token(key))
            .await?
        {
            Some(a) => Ok(Agent(a)),
            None => Err(refuse(
                st,
                peer.as_ref(),
                None,
                None,
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unknown or replaced node key: enroll again",
                ),
            )
            .await),
        }
    }
}

/// A harvest: at most 10,000 profiles, each named once.
fn check_profiles(p: &[ferry_core::agent::HarvestedProfile]) -> Result<(), Refusal> {
    let bad = |m: String| Refusal::new(StatusCode::BAD_REQUEST, "bad_request", m);
    if p.len() > 10_000 {
        return Err(bad("profiles: more than 10000".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, h) in p.iter().enumerate() {
        if h.name.is_empty() || h.name.len() > 512 {
            return Err(bad(format!("profiles[{i}].name: must be 1–512 characters")));
        }
        if !seen.insert(h.name.as_str()) {
            return Err(bad(format!(
                "profiles[{i}].name: `{}` appears twice in the harvest",
                h.name
            )));
        }
    }
    Ok(())
}

/// Checks an enrollment: protocol, fields, and the pre-shared key (known and not retired).
async fn admit(st: &AppState, req: &EnrollRequest) -> Result<ferry_store::Psk, Refusal> {
    check_protocol(req.protocol)?;
    let bad = |m: String| Refusal::new(StatusCode::BAD_REQUEST, "bad_request", m);
    let f = &req.device;
    for (field, v, max) in [
        ("device.device_id", &f.device_id, 256),
        ("device.hostname", &f.hostname, 255),
        ("device.os", &f.os, 64),
        ("device.agent_version", &f.agent_version, 64),
    ] {
        if v.trim().is_empty() || v.len() > max {
            return Err(bad(format!("{field}: must be 1–{max} characters")));
        }
    }
    check_profiles(&req.profiles)?;
    match st.store.psk_by_hash(&hash_token(req.psk.expose())).await? {
        None => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "bad_psk",
            "the pre-shared key is not one this server knows",
        )),
        Some(k) if k.retired_at.is_some() => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "retired_psk",
            format!(
                "the pre-shared key `{}` is retired: install the agent with the current key",
                k.name
            ),
        )),
        Some(k) => Ok(k),
    }
}

async fn enroll(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<AgentPeer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<EnrollResponse>, Refusal> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        // An admin token (or anything else) is not how agents enroll.
        return Err(refuse(
            &st,
            Some(&peer),
            None,
            None,
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "enrollment takes a pre-shared key in the body, not an Authorization header",
            ),
        )
        .await);
    }
    if !st.devices.allow_enroll(peer.0.ip(), 20.0, 60.0) {
        return Err(refuse(
            &st,
            Some(&peer),
            None,
            None,
            Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many enrollments from this address; retry in a minute",
            ),
        )
        .await);
    }
    let req: EnrollRequest = parse(&st, &peer, None, &body, "the enrollment").await?;
    let device = req.device.device_id.clone();
    let psk = match admit(&st, &req).await {
        Ok(k) => k,
        Err(r) => return Err(refuse(&st, Some(&peer), None, Some(&device), r).await),
    };
    let key = random_key();
    if key.is_empty() {
        return Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no entropy source for a node key",
        ));
    }
    let address = peer.0.ip().to_string();
    let a = st
        .store
        .enroll_agent(&Enrollment {
            facts: &req.device,
            profiles: &req.profiles,
            node_hash: &hash_token(key.expose()),
            psk_id: psk.id,
            now: now_ms(),
            address: Some(&address),
        })
        .await?;
    st.devices.forget_device(&a.device_id);
    tracing::info!(agent = a.id, hostname = a.hostname, %address, "agent enrolled");
    Ok(Json(EnrollResponse {
        protocol: PROTOCOL_VERSION,
        agent_id: a.id,
        node_key: key,
        poll_interval_seconds: POLL_SECONDS,
    }))
}

async fn checkin(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<AgentPeer>,
    Agent(a): Agent,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let req: CheckinRequest = parse(&st, &peer, Some(&a), &body, "the check-in").await?;
    if let Err(r) = check_protocol(req.protocol) {
        return Err(refuse(&st, Some(&peer), Some(&a), None, r).await);
    }
    let now = now_ms();
    st.devices.record_contact(Contact {
        agent_id: a.id,
        at: now,
        address: Some(peer.0.ip().to_string()),
        state: req.state.clone().filter(|s| s.len() <= 32),
        agent_version: req.agent_version.clone().filter(|v| v.len() <= 64),
    });
    if let Some(p) = &req.profiles {
        if let Err(r) = check_profiles(p) {
            return Err(refuse(&st, Some(&peer), Some(&a), None, r).await);
        }
        st.store.set_agent_profiles(a.id, p).await?;
    }
    // A device in no batch, or whose migration is not due, is answered from memory.
    let orders = devices::orders(
        &*st.store,
        &st.settings.vault,
        &st.settings.get(),
        &st.devices,
        &a,
        req.profiles.as_deref(),
        now,
    )
    .await?;
    Ok(Json(CheckinResponse {
        protocol: PROTOCOL_VERSION,
        poll_interval_seconds: POLL_SECONDS,
        assignment: orders.assignment,
        migration: orders.migration,
        blocked: orders.blocked,
    })
    .into_response())
}

async fn events(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<AgentPeer>,
    Agent(a): Agent,
    body: axum::body::Bytes,
) -> Result<StatusCode, Refusal> {
    let req: EventsRequest = parse(&st, &peer, Some(&a), &body, "the events").await?;
    check_protocol(req.protocol)?;
    if req.run.is_empty() || req.run.len() > 256 || req.events.len() > 1000 {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "run: 1–256 characters; at most 1000 events per call",
        ));
    }
    st.store
        .add_agent_events(a.id, &req.run, &req.events, now_ms())
        .await?;
    if let Some(last) = req.events.last() {
        let state = match last.status.as_str() {
            "failed" => "failed",
            "succeeded" if last.step == "done" => "succeeded",
            "succeeded" if last.step == "rollback" => "rolled-back",
            _ => "running",
        };
        st.devices.record_contact(Contact {
            agent_id: a.id,
            at: now_ms(),
            address: Some(peer.0.ip().to_string()),
            state: Some(state.into()),
            agent_version: None,
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn logs(
    State(st): State<AppState>,
    Agent(a): Agent,
    body: axum::body::Bytes,
) -> Result<StatusCode, Refusal> {
    let req: LogChunk = serde_json::from_slice(&body).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the log chunk is not valid JSON: {e}"),
        )
    })?;
    check_protocol(req.protocol)?;
    if req.text.len() > 1 << 20 {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            "a log chunk is at most 1 MiB",
        ));
    }
    let start = i64::try_from(req.offset).map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "offset is too large",
        )
    })?;
    st.store
        .add_agent_log(a.id, &req.run, start, &req.text, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A runbook by name: only one of the calling device's batch.
async fn runbook(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<AgentPeer>,
    Agent(a): Agent,
    Path(name): Path<String>,
) -> Result<Response, Refusal> {
    let snap = st.devices.snapshot();
    let mine = snap
        .computers
        .get(&a.hostname.to_lowercase())
        .and_then(|b| snap.batches.get(b))
        .map(|b| devices::ordered_runbooks(&b.runbooks, &snap.runbooks))
        .unwrap_or_default();
    match mine.into_iter().find(|r| r.name == name) {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(refuse(
            &st,
            Some(&peer),
            Some(&a),
            None,
            Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("runbook `{name}` is not assigned to this device"),
            ),
        )
        .await),
    }
}

#[derive(Deserialize)]
struct TranslationParams {
    profile: String,
}

/// The translation entry of one of the calling device's harvested profiles.
async fn translation(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<AgentPeer>,
    Agent(a): Agent,
    Query(q): Query<TranslationParams>,
) -> Result<Json<ProfileTranslation>, Refusal> {
    let profiles = st.store.agent_profiles(a.id).await?;
    let Some(p) = profiles
        .iter()
        .find(|p| p.name == q.profile || p.sid.as_deref() == Some(q.profile.as_str()))
    else {
        return Err(refuse(
            &st,
            Some(&peer),
            Some(&a),
            None,
            Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("`{}` is not a profile harvested on this device", q.profile),
            ),
        )
        .await);
    };
    let snap = st.devices.snapshot();
    let Some(b) = snap
        .computers
        .get(&a.hostname.to_lowercase())
        .and_then(|b| snap.batches.get(b))
    else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this device is in no batch",
        ));
    };
    let idx = st
        .devices
        .translation(
            &*st.store,
            &st.settings.get(),
            &b.source_directory,
            &b.target_directory,
        )
        .await?;
    idx.lookup(p).map(Json).ok_or_else(|| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the translation table has no entry for `{}`", p.name),
        )
    })
}

async fn landing() -> &'static str {
    "ferry agent endpoint: agents call /agent/v1/enroll and /agent/v1/checkin (docs/agent-protocol.md)\n"
}

async fn agent_not_found() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such agent endpoint (see docs/agent-protocol.md)",
    )
}

/// Every answer names the protocol version (`Ferry-Agent-Protocol`); a request that names one the
/// server does not speak (GET calls have no body to carry it) is refused with 426.
async fn protocol_header(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let asked = req
        .headers()
        .get("ferry-agent-protocol")
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u32>().ok()));
    let mut resp = match asked {
        Some(Some(p)) if SUPPORTED_PROTOCOLS.contains(&p) => next.run(req).await,
        Some(p) => check_protocol(p.unwrap_or(0)).err().map_or_else(
            || StatusCode::BAD_REQUEST.into_response(),
            IntoResponse::into_response,
        ),
        None => next.run(req).await,
    };
    resp.headers_mut().insert(
        "ferry-agent-protocol",
        axum::http::HeaderValue::from(PROTOCOL_VERSION),
    );
    resp
}

/// The agent endpoint's application (served on its own TLS listener).
pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/agent", get(landing))
        .route("/agent/v1/enroll", post(enroll))
        .route("/agent/v1/checkin", post(checkin))
        .route("/agent/v1/events", post(events))
        .route("/agent/v1/logs", post(logs))
        .route("/agent/v1/runbooks/{name}", get(runbook))
        .route("/agent/v1/translation", get(translation))
        .fallback(agent_not_found)
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .layer(axum::middleware::from_fn(protocol_header))
        .with_state(state)
}

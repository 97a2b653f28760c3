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
    AgentError, AgentEvent, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse,
    EventsRequest, HeldEnrollment, LogChunk, PROTOCOL_VERSION, ProfileTranslation,
    SUPPORTED_PROTOCOLS,
};
use ferry_store::{
    AgentRecord, Contact, Enrollment, FailedComm, LogAdd, NewEnrollmentRequest, StoreError, now_ms,
};
use serde::Deserialize;

/// An agent endpoint refusal (its message names no secret).
#[derive(Debug)]
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
        count: 1,
        first_at: 0,
    };
    // Repeats within the hour are counted on one row (a prober adds one row, not thousands).
    if let Err(e) = st.store.record_failed_comm(&f, f.at - 3_600_000).await {
        tracing::warn!(error = %e, "could not record a failed agent communication");
    }
    // The reason may quote what the caller sent (a serde error): escaped, one log line.
    tracing::info!(code = r.code, address = ?f.address, reason = %r.message.escape_debug(), "agent call refused");
    st.metrics.refusal(r.code);
    r
}

/// A recorded `403 forbidden` for a call of an enrolled agent.
async fn forbidden(st: &AppState, peer: &AgentPeer, a: &AgentRecord, message: String) -> Refusal {
    refuse(
        st,
        Some(peer),
        Some(a),
        None,
        Refusal::new(StatusCode::FORBIDDEN, "forbidden", message),
    )
    .await
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
        let hash = hash_token(key);
        if let Some(a) = st.devices.authenticate(&*st.store, &hash).await? {
            return Ok(Agent(a));
        }
        // A held enrollment's key: it works once an operator approves the request.
        let r = match st.store.enrollment_request_by_node_hash(&hash).await? {
            Some(r) if r.state == "pending" => Refusal::new(
                StatusCode::FORBIDDEN,
                "pending_approval",
                format!(
                    "enrollment request {} waits for an operator ({}): `ferry agents approve {}`",
                    r.id, r.reason, r.id
                ),
            ),
            Some(r) if r.state == "refused" => Refusal::new(
                StatusCode::FORBIDDEN,
                "enrollment_refused",
                format!(
                    "enrollment request {} was refused by {}",
                    r.id,
                    r.decided_by.as_deref().unwrap_or("an operator")
                ),
            ),
            _ => Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown or replaced node key: enroll again",
            ),
        };
        Err(refuse(st, peer.as_ref(), None, None, r).await)
    }
}

/// A harvest: at most 10,000 profiles, each named once.
/// A pre-flight's bounds: a few dozen checks of short words.
/// A report's checks within the bounds the agent keeps to (`ferry_core::agent`).
fn bounded_checks(checks: &[ferry_core::agent::PreflightCheck], detail_max: usize) -> bool {
    use ferry_core::agent::{CHECK_NAME_MAX, REPORT_CHECKS_MAX};
    checks.len() <= REPORT_CHECKS_MAX
        && checks.iter().all(|c| {
            !c.check.is_empty() && c.check.len() <= CHECK_NAME_MAX && c.detail.len() <= detail_max
        })
}

fn check_preflight(p: &ferry_core::agent::DevicePreflight) -> Result<(), Refusal> {
    if !bounded_checks(&p.checks, ferry_core::agent::PREFLIGHT_DETAIL_MAX) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "preflight: at most 32 checks, each named in 1 to 32 bytes with a detail of at most 2,000",
        ));
    }
    Ok(())
}

fn check_verification(v: &ferry_core::agent::Verification) -> Result<(), Refusal> {
    if v.run.is_empty() || v.run.len() > 256 || !matches!(v.after.as_str(), "run" | "rollback") {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "verification: `run` is 1 to 256 bytes and `after` is `run` or `rollback`",
        ));
    }
    if !bounded_checks(&v.checks, ferry_core::agent::VERIFICATION_DETAIL_MAX) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "verification: at most 32 checks, each named in 1 to 32 bytes with a detail of at most 8,000",
        ));
    }
    Ok(())
}

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
        // No NUL: PostgreSQL stores none (the enrollment failed there with a 500), and SQLite
        // would keep a host name no list could page past.
        if v.trim().is_empty() || v.len() > max || v.contains('\0') {
            return Err(bad(format!(
                "{field}: must be 1–{max} characters, without NUL"
            )));
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
        Some(k) if k.uses_left.is_some_and(|n| n <= 0) => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "used_psk",
            format!(
                "the pre-shared key `{}` has enrolled as many devices as it may",
                k.name
            ),
        )),
        Some(k)
            if k.device
                .as_deref()
                .is_some_and(|d| !d.eq_ignore_ascii_case(f.hostname.trim())) =>
        {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the pre-shared key `{}` enrolls only `{}`; this device says it is `{}`",
                    k.name,
                    k.device.as_deref().unwrap_or_default(),
                    f.hostname
                ),
            ))
        }
        Some(k) => Ok(k),
    }
}

/// What becomes of an enrollment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// A new device, or a device that proved the node key it was given before.
    Enroll,
    /// Held for an operator: it claims an enrolled agent's device id or host name without that
    /// agent's node key, or the project approves new enrollments.
    Hold {
        reason: String,
        conflict: Option<i64>,
    },
}

/// Decides an enrollment from the enrolled agents it claims (by device id or host name, each
/// with its node-key hash), the hash of the node key it proves (`previous_node_key`), and
/// whether new devices wait for approval (`pre_approved`: a key bound to this host name).
pub fn decide(
    claimed: &[(AgentRecord, String)],
    device_id: &str,
    proof: Option<&str>,
    approve_new: bool,
    pre_approved: bool,
) -> Decision {
    let mut reasons = Vec::new();
    let mut conflict = None;
    let mut live = 0;
    for (a, hash) in claimed.iter().filter(|(a, _)| a.state != "replaced") {
        live += 1;
        let proven = proof == Some(hash.as_str());
        if proven && a.device_id == device_id {
            continue;
        }
        let what = if a.device_id == device_id {
            "device id"
        } else {
            "host name"
        };
        reasons.push(format!(
            "claims the {what} of agent {} ({}){}",
            a.id,
            a.hostname,
            if proven {
                " under another device id"
            } else {
                " without its node key"
            }
        ));
        conflict.get_or_insert(a.id);
    }
    if !reasons.is_empty() {
        return Decision::Hold {
            reason: reasons.join("; "),
            conflict,
        };
    }
    if live == 0 && approve_new && !pre_approved {
        return Decision::Hold {
            reason: "new devices wait for approval ([server.agents] approve_new_enrollments)"
                .into(),
            conflict: None,
        };
    }
    Decision::Enroll
}

/// Pending enrollments the server keeps at most (each holds a harvest).
const MAX_PENDING: usize = 1000;

async fn enroll(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<AgentPeer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
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
    let claimed = st
        .store
        .agents_claimed(&req.device.device_id, req.device.hostname.trim())
        .await?;
    let proof = req
        .previous_node_key
        .as_ref()
        .map(|k| hash_token(k.expose()));
    let decision = decide(
        &claimed,
        &req.device.device_id,
        proof.as_deref(),
        st.settings
            .file()
            .config
            .server
            .agents
            .approve_new_enrollments,
        psk.device.is_some(),
    );
    if matches!(decision, Decision::Hold { .. })
        && st.store.enrollment_requests(Some("pending")).await?.len() >= MAX_PENDING
    {
        return Err(refuse(
            &st,
            Some(&peer),
            None,
            Some(&device),
            Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("{MAX_PENDING} enrollments wait for approval already: decide them first"),
            ),
        )
        .await);
    }
    // One use of a limited key, taken in one statement (two devices cannot share a last use).
    if !st.store.use_psk(psk.id).await? {
        let r = Refusal::new(
            StatusCode::UNAUTHORIZED,
            "used_psk",
            format!(
                "the pre-shared key `{}` has enrolled as many devices as it may",
                psk.name
            ),
        );
        return Err(refuse(&st, Some(&peer), None, Some(&device), r).await);
    }
    let key = random_key();
    if key.is_empty() {
        return Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no entropy source for a node key",
        ));
    }
    let address = peer.0.ip().to_string();
    let node_hash = hash_token(key.expose());
    // The key of the live agent with this device id, as decided against: if another server
    // enrolled the device in between, the store refuses and the enrollment is held instead.
    let replaces = claimed
        .iter()
        .find(|(a, _)| a.state != "replaced" && a.device_id == req.device.device_id)
        .map(|(_, h)| h.as_str());
    let enrollment = Enrollment {
        facts: &req.device,
        profiles: &req.profiles,
        node_hash: &node_hash,
        psk_id: psk.id,
        now: now_ms(),
        address: Some(&address),
        replaces,
    };
    // Taken, or held for an operator with why and the agent it conflicts with.
    let outcome: Result<AgentRecord, (String, Option<i64>)> = match decision {
        Decision::Enroll => match st.store.enroll_agent(&enrollment).await {
            Ok(a) => Ok(a),
            Err(StoreError::ClaimChanged(_)) => {
                let now = st
                    .store
                    .agents_claimed(&req.device.device_id, req.device.hostname.trim())
                    .await?;
                // Another server took an enrollment of this device id, or of another device
                // with this host name, a moment before: an operator decides between them.
                let live = |(a, _): &&(AgentRecord, _)| a.state != "replaced";
                let same_id = now
                    .iter()
                    .filter(live)
                    .find(|(a, _)| a.device_id == req.device.device_id);
                let same_host = now
                    .iter()
                    .filter(live)
                    .find(|(a, _)| a.hostname.eq_ignore_ascii_case(req.device.hostname.trim()));
                Err(match (same_id, same_host) {
                    (Some((a, _)), _) => (
                        "another enrollment of this device id was taken a moment before this one"
                            .into(),
                        Some(a.id),
                    ),
                    (None, Some((a, _))) => (
                        format!(
                            "another device ({}) enrolled with host name {} a moment before this one",
                            a.device_id, a.hostname
                        ),
                        Some(a.id),
                    ),
                    (None, None) => (
                        "another enrollment of this device was taken a moment before this one"
                            .into(),
                        None,
                    ),
                })
            }
            Err(e) => return Err(e.into()),
        },
        Decision::Hold { reason, conflict } => Err((reason, conflict)),
    };
    match outcome {
        Ok(a) => {
            st.devices.forget_device(&a.device_id, &a.hostname);
            tracing::info!(agent = a.id, hostname = a.hostname, %address, "agent enrolled");
            Ok(Json(EnrollResponse {
                protocol: PROTOCOL_VERSION,
                agent_id: a.id,
                node_key: key,
                poll_interval_seconds: POLL_SECONDS,
                held: None,
            })
            .into_response())
        }
        Err((reason, conflict)) => {
            let id = st
                .store
                .add_enrollment_request(&NewEnrollmentRequest {
                    enrollment,
                    reason: &reason,
                    conflict_agent_id: conflict,
                })
                .await?;
            tracing::warn!(request = id, hostname = req.device.hostname, device = device, %address, reason, "enrollment held for an operator");
            Ok((
                StatusCode::ACCEPTED,
                Json(EnrollResponse {
                    protocol: PROTOCOL_VERSION,
                    agent_id: 0,
                    node_key: key,
                    poll_interval_seconds: POLL_SECONDS,
                    held: Some(HeldEnrollment {
                        request_id: id,
                        reason,
                    }),
                }),
            )
                .into_response())
        }
    }
}

async fn checkin(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<AgentPeer>,
    Agent(a): Agent,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    use crate::metrics::CheckinResult;
    let answer = answer_checkin(&st, &peer, a, &body).await;
    st.metrics.checkin(match &answer {
        Err(_) => CheckinResult::Refused,
        Ok(r) if r.migration.is_some() => CheckinResult::Migration,
        Ok(r) if r.blocked.is_some() => CheckinResult::Blocked,
        Ok(r) if r.assignment.is_some() => CheckinResult::Assignment,
        Ok(_) => CheckinResult::Nothing,
    });
    Ok(Json(answer?).into_response())
}

async fn answer_checkin(
    st: &AppState,
    peer: &AgentPeer,
    a: AgentRecord,
    body: &[u8],
) -> Result<CheckinResponse, Refusal> {
    let st = st.clone();
    let peer = *peer;
    let req: CheckinRequest = parse(&st, &peer, Some(&a), body, "the check-in").await?;
    if let Err(r) = check_protocol(req.protocol) {
        return Err(refuse(&st, Some(&peer), Some(&a), None, r).await);
    }
    // Everything is checked before anything is recorded: a refused check-in changes nothing.
    let checked = req
        .profiles
        .as_deref()
        .map_or(Ok(()), check_profiles)
        .and(req.preflight.as_ref().map_or(Ok(()), check_preflight))
        .and(req.verification.as_ref().map_or(Ok(()), check_verification));
    if let Err(r) = checked {
        return Err(refuse(&st, Some(&peer), Some(&a), None, r).await);
    }
    let now = now_ms();
    let mut state = req.state.clone().filter(|s| s.len() <= 32);
    // `verified` opens a canary's batch to the rest: it is taken only with passing post-flight
    // evidence of the run this server assigned. A device saying so without it (lying, or an
    // agent that ran no post-flight) is recorded as `succeeded`, which proves nothing.
    if state.as_deref() == Some("verified")
        && a.state != "verified"
        && !proved(&st, &a, req.verification.as_ref()).await?
    {
        tracing::warn!(
            agent = a.id,
            hostname = a.hostname,
            "a device reported `verified` without passing post-flight evidence of its assigned run; recorded as `succeeded`"
        );
        state = Some("succeeded".into());
    }
    st.devices.record_contact(Contact {
        agent_id: a.id,
        at: now,
        address: Some(peer.0.ip().to_string()),
        state: state.clone(),
        agent_version: req.agent_version.clone().filter(|v| v.len() <= 64),
    });
    if let Some(p) = &req.profiles {
        st.store.set_agent_profiles(a.id, p).await?;
    }
    // A new pre-flight: the device's checks, with the server's check of its clock.
    let mut a = a;
    if let Some(mut pf) = req.preflight.clone() {
        pf.checks.retain(|c| c.check != "clock");
        if let Some(c) = req.clock {
            pf.checks.push(ferry_core::agent::clock_check(c, now));
        }
        let json = serde_json::to_string(&pf).map_err(|e| {
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        st.store.set_agent_preflight(a.id, &json).await?;
        a.preflight = Some(pf);
    }
    // A post-flight: the evidence of the device's last run or rollback.
    if let Some(v) = &req.verification {
        let json = serde_json::to_string(v).map_err(|e| {
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        st.store.set_agent_verification(a.id, &json).await?;
    }
    // A failure newly reported (a failed device says so at every check-in; its record, cached
    // for a moment, says so from the next).
    if let Some(s) = state.as_deref()
        && devices::wave::failed(s)
        && s != a.state
    {
        halt_if_due(&st, &a, now).await;
    }
    // A device in no batch, or whose migration is not due, is answered from memory.
    let orders = devices::orders(
        &*st.store,
        &st.settings.vault,
        &st.settings.get(),
        &st.devices,
        &a,
        &req,
        now,
    )
    .await?;
    if let Some(m) = &orders.migration {
        // Events and logs are taken for this run only, checked against these steps.
        let steps: Vec<String> = ferry_core::runbook::plan_steps(&m.runbooks)
            .into_iter()
            .map(|p| p.id)
            .collect();
        st.store.assign_run(a.id, &m.run, &steps).await?;
    }
    Ok(CheckinResponse {
        protocol: PROTOCOL_VERSION,
        poll_interval_seconds: POLL_SECONDS,
        assignment: orders.assignment,
        migration: orders.migration,
        blocked: orders.blocked,
        agent_id: Some(a.id),
    })
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
    let steps = assigned_steps(&st, &peer, &a, &req.run).await?;
    let stored = st.store.agent_events(a.id, Some(&req.run)).await?;
    let fresh = match check_events(&steps, stored.iter().map(|e| &e.event), &req.events) {
        Ok(f) => f,
        Err(r) => return Err(refuse(&st, Some(&peer), Some(&a), None, r).await),
    };
    if fresh.is_empty() {
        return Ok(StatusCode::NO_CONTENT);
    }
    st.store
        .add_agent_events(a.id, &req.run, &fresh, now_ms())
        .await?;
    if let Some(last) = fresh.last() {
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
        if devices::wave::failed(state) {
            halt_if_due(&st, &a, now_ms()).await;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the device's post-flight evidence (sent now, or stored before) proves the run this
/// server assigned it: after the run, every blocking check passed.
async fn proved(
    st: &AppState,
    a: &AgentRecord,
    sent: Option<&ferry_core::agent::Verification>,
) -> Result<bool, StoreError> {
    let stored;
    let v = match sent {
        Some(v) => v,
        None => {
            stored = st.store.agent(a.id).await?.and_then(|r| r.verification);
            match &stored {
                Some(v) => v,
                None => return Ok(false),
            }
        }
    };
    // Every check the agent's post-flight makes, each passing.
    let complete = ["principals", "homes", "check-commands"]
        .iter()
        .all(|c| v.checks.iter().any(|k| k.check == *c));
    if v.after != "run" || !complete || !v.ok() {
        return Ok(false);
    }
    // Of the run assigned to it (the cached record may predate the assignment: agents are
    // cached for a moment), which its stored events say ended well.
    let run = match &a.assigned_run {
        Some(r) if *r == v.run => Some(r.clone()),
        _ => st.store.assigned_run(a.id).await?.map(|(r, _)| r),
    };
    if run.as_deref() != Some(v.run.as_str()) {
        return Ok(false);
    }
    Ok(st
        .store
        .agent_events(a.id, Some(&v.run))
        .await?
        .iter()
        .any(|e| e.event.step == "done" && e.event.status == "succeeded"))
}

/// After a device reported a failure: its batch halts now if its rules say so. The report
/// itself is stored; a store error here is logged, and the next device's check-in halts it.
async fn halt_if_due(st: &AppState, a: &AgentRecord, now: i64) {
    if let Err(e) = st.devices.after_failure(&*st.store, &a.hostname, now).await {
        tracing::warn!(agent = a.id, error = %e, "could not apply the batch's halt rules after a failure");
    }
}

/// The steps of `run` when it is the run this server assigned to the agent; otherwise a
/// recorded `403 not_assigned`.
async fn assigned_steps(
    st: &AppState,
    peer: &AgentPeer,
    a: &AgentRecord,
    run: &str,
) -> Result<Vec<String>, Refusal> {
    match st.store.assigned_run(a.id).await? {
        Some((r, steps)) if r == run => Ok(steps),
        other => Err(refuse(
            st,
            Some(peer),
            Some(a),
            None,
            Refusal::new(
                StatusCode::FORBIDDEN,
                "not_assigned",
                match other {
                    Some((r, _)) => format!(
                        "run `{run}` is not the run this server assigned to this agent (`{r}`)"
                    ),
                    None => format!("no run is assigned to this agent; `{run}` is not taken"),
                },
            ),
        )
        .await),
    }
}

/// Checks a call's events against the run's planned steps and the events stored before, and
/// returns those not stored yet (a resend is dropped). Every step's events must come after
/// every earlier step ended (`succeeded`, `failed` or `skipped`), and `done` may succeed only
/// when no earlier step failed and every one succeeded or was skipped. `rollback` events may
/// come at any time. Nothing of a call is taken when one event is refused.
pub fn check_events<'a>(
    steps: &[String],
    stored: impl Iterator<Item = &'a AgentEvent>,
    events: &[AgentEvent],
) -> Result<Vec<AgentEvent>, Refusal> {
    use std::collections::{HashMap, HashSet};
    let mut last: HashMap<&str, &str> = HashMap::new();
    let mut seen: HashSet<(i64, &str, &str)> = HashSet::new();
    for e in stored {
        if e.status != "started" {
            last.insert(e.step.as_str(), e.status.as_str());
        }
        seen.insert((e.at, e.step.as_str(), e.status.as_str()));
    }
    let mut fresh = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let bad = |m: String| Refusal::new(StatusCode::BAD_REQUEST, "bad_request", m);
        if !["started", "succeeded", "failed", "skipped"].contains(&e.status.as_str()) {
            return Err(bad(format!(
                "events[{i}].status: `{}` is not started, succeeded, failed or skipped",
                e.status
            )));
        }
        if e.message.len() > 4000 {
            return Err(bad(format!("events[{i}].message: more than 4000 bytes")));
        }
        if !seen.insert((e.at, e.step.as_str(), e.status.as_str())) {
            continue;
        }
        if e.step != "rollback" {
            let Some(pos) = steps.iter().position(|s| *s == e.step) else {
                return Err(bad(format!(
                    "events[{i}].step: `{}` is not a step of this run",
                    e.step
                )));
            };
            let order = |m: String| Refusal::new(StatusCode::CONFLICT, "out_of_order", m);
            if let Some(open) = steps[..pos].iter().find(|s| !last.contains_key(s.as_str())) {
                return Err(order(format!(
                    "events[{i}]: `{} {}` comes before step `{open}` ended",
                    e.step, e.status
                )));
            }
            if e.step == "done" && e.status == "succeeded" {
                if let Some((s, st)) = steps[..pos]
                    .iter()
                    .map(|s| (s, last.get(s.as_str()).copied().unwrap_or("")))
                    .find(|(_, st)| !matches!(*st, "succeeded" | "skipped"))
                {
                    return Err(order(format!(
                        "events[{i}]: the run cannot have succeeded: step `{s}` {st}"
                    )));
                }
                if let Some(s) = last.iter().find(|(_, st)| **st == "failed") {
                    return Err(order(format!(
                        "events[{i}]: the run cannot have succeeded: step `{}` failed",
                        s.0
                    )));
                }
            }
            if e.status != "started" {
                last.insert(e.step.as_str(), e.status.as_str());
            }
        }
        fresh.push(e.clone());
    }
    Ok(fresh)
}

async fn logs(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<AgentPeer>,
    Agent(a): Agent,
    body: axum::body::Bytes,
) -> Result<StatusCode, Refusal> {
    let req: LogChunk = parse(&st, &peer, Some(&a), &body, "the log chunk").await?;
    check_protocol(req.protocol)?;
    if req.text.len() > 1 << 20 {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
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
    assigned_steps(&st, &peer, &a, &req.run).await?;
    let cap = i64::try_from(st.settings.file().config.server.agents.log_bytes_per_run)
        .unwrap_or(i64::MAX);
    match st
        .store
        .add_agent_log(a.id, &req.run, start, &req.text, now_ms(), cap)
        .await?
    {
        LogAdd::Stored | LogAdd::Resend => Ok(StatusCode::NO_CONTENT),
        LogAdd::OverCap => Err(refuse(
            &st,
            Some(&peer),
            Some(&a),
            None,
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "run `{}`'s log reached {cap} bytes ([server.agents] log_bytes_per_run); the rest is not stored",
                    req.run
                ),
            ),
        )
        .await),
    }
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
        .batch_of(&a.hostname)
        .map(|b| devices::ordered_runbooks(&b.runbooks, &snap.runbooks))
        .unwrap_or_default();
    match mine.into_iter().find(|r| r.name == name) {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(forbidden(
            &st,
            &peer,
            &a,
            format!("runbook `{name}` is not assigned to this device"),
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
        return Err(forbidden(
            &st,
            &peer,
            &a,
            format!("`{}` is not a profile harvested on this device", q.profile),
        )
        .await);
    };
    let snap = st.devices.snapshot();
    let Some(b) = snap.batch_of(&a.hostname) else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this device is in no batch",
        ));
    };
    let idx = st
        .devices
        .translation(&*st.store, &st.settings.get(), b)
        .await?;
    idx.lookup(p).map(Json).ok_or_else(|| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the translation table has no entry for `{}`", p.name),
        )
    })
}

/// The page the seed's endpoint test opens in a browser (`https://host/Agent`, any case): the
/// endpoint answers, with the server's version and the certificate fingerprint to compare with
/// the one the agents are given.
fn landing(st: &AppState) -> Response {
    let fingerprint = st
        .devices
        .endpoint
        .read()
        .ok()
        .and_then(|e| e.as_ref().map(|(_, f)| f.clone()))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>ferry agent endpoint</title></head>\n<body>\n\
         <h1>ferry agent endpoint</h1>\n\
         <p>This is ferry's migration agent endpoint: it is reachable from this computer.</p>\n\
         <dl><dt>Server version</dt><dd id=\"version\">{}</dd>\n\
         <dt>Certificate fingerprint (SHA-256)</dt><dd id=\"fingerprint\"><code>{}</code></dd></dl>\n\
         <p>Compare the fingerprint with the one your agents are installed with \
         (<code>ferry agents endpoint</code> on the server). Agents call <code>/agent/v1/…</code>.</p>\n\
         </body></html>\n",
        env!("CARGO_PKG_VERSION"),
        html_escape(&fingerprint),
    );
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A path no route matched: the landing page for `/agent` in any case (and a trailing `/`), a
/// 404 refusal otherwise.
async fn agent_not_found(State(st): State<AppState>, uri: axum::http::Uri) -> Response {
    let p = uri.path().trim_end_matches('/');
    if p.eq_ignore_ascii_case("/agent") {
        return landing(&st);
    }
    Refusal::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such agent endpoint (see docs/agent-protocol.md)",
    )
    .into_response()
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
    let observed = (
        std::sync::Arc::clone(&state.metrics),
        crate::metrics::Listener::Agent,
    );
    axum::Router::new()
        .route("/agent/v1/enroll", post(enroll))
        .route("/agent/v1/checkin", post(checkin))
        .route("/agent/v1/events", post(events))
        .route("/agent/v1/logs", post(logs))
        .route("/agent/v1/runbooks/{name}", get(runbook))
        .route("/agent/v1/translation", get(translation))
        .fallback(agent_not_found)
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .layer(axum::middleware::from_fn(protocol_header))
        .layer(axum::middleware::from_fn_with_state(
            observed,
            crate::observe,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agent(id: i64, device_id: &str, hostname: &str, state: &str) -> AgentRecord {
        AgentRecord {
            id,
            device_id: device_id.into(),
            hostname: hostname.into(),
            os: "linux".into(),
            facts: Default::default(),
            psk_id: 1,
            enrolled_at: 0,
            last_contact: 0,
            last_address: None,
            agent_version: "0".into(),
            state: state.into(),
            assigned_run: None,
            preflight: None,
            verification: None,
        }
    }

    fn ev(at: i64, step: &str, status: &str) -> AgentEvent {
        AgentEvent {
            at,
            step: step.into(),
            status: status.into(),
            message: String::new(),
            progress: None,
        }
    }

    proptest! {
        /// Catches a device holding the shared key taking over an enrolled agent: whatever it
        /// claims, an enrollment naming a live agent is taken only when it proves that agent's
        /// node key under the same device id; otherwise it is held, naming that agent.
        #[test]
        fn a_live_claim_without_its_key_is_never_enrolled(
            agents in proptest::collection::vec(
                (0usize..3, 0usize..3, 0usize..3, prop::bool::ANY), 0..5),
            device in 0usize..3,
            proof in proptest::option::of(0usize..3),
            approve_new in prop::bool::ANY,
            pre_approved in prop::bool::ANY,
        ) {
            let claimed: Vec<(AgentRecord, String)> = agents
                .iter()
                .enumerate()
                .map(|(i, (d, h, k, replaced))| {
                    let state = if *replaced { "replaced" } else { "enrolled" };
                    (agent(i as i64 + 1, &format!("dev-{d}"), &format!("PC-{h}"), state),
                     format!("hash-{k}"))
                })
                .collect();
            let device_id = format!("dev-{device}");
            let proof = proof.map(|k| format!("hash-{k}"));
            let decision = decide(&claimed, &device_id, proof.as_deref(), approve_new, pre_approved);
            let live: Vec<_> = claimed.iter().filter(|(a, _)| a.state != "replaced").collect();
            let unproven = live
                .iter()
                .find(|(a, h)| !(proof.as_deref() == Some(h.as_str()) && a.device_id == device_id));
            match (&decision, unproven) {
                (Decision::Enroll, Some((a, _))) => {
                    prop_assert!(false, "enrolled over agent {} without its key", a.id)
                }
                (Decision::Hold { conflict, .. }, Some(_)) => {
                    let first = unproven.map(|(a, _)| a.id);
                    prop_assert_eq!(*conflict, first);
                }
                (Decision::Hold { conflict, .. }, None) => {
                    // Only the approval mode holds a claim nobody contradicts.
                    prop_assert!(live.is_empty() && approve_new && !pre_approved);
                    prop_assert_eq!(*conflict, None);
                }
                (Decision::Enroll, None) => {
                    prop_assert!(!(live.is_empty() && approve_new && !pre_approved));
                }
            }
        }

        /// Catches a device posting a fake "succeeded": whatever events come, in whatever
        /// batches, `done succeeded` is taken only when every earlier step ended succeeded or
        /// skipped and none failed, and no step's events are taken before the earlier ones ended.
        #[test]
        fn done_succeeds_only_after_every_earlier_step(
            events in proptest::collection::vec((0usize..4, 0usize..4), 0..14),
            cut in 0usize..14,
        ) {
            let steps: Vec<String> = ["copy", "translate", "profile", "done"]
                .iter().map(|s| s.to_string()).collect();
            let statuses = ["started", "succeeded", "failed", "skipped"];
            let events: Vec<AgentEvent> = events
                .iter()
                .enumerate()
                .map(|(i, (s, st))| ev(i as i64, &steps[*s], statuses[*st]))
                .collect();
            let cut = cut.min(events.len());
            let mut stored: Vec<AgentEvent> = Vec::new();
            for batch in [&events[..cut], &events[cut..]] {
                if let Ok(fresh) = check_events(&steps, stored.iter(), batch) {
                    stored.extend(fresh);
                }
            }
            // Replay what was taken and check the invariants on it.
            let mut ended: std::collections::HashMap<&str, &str> = Default::default();
            for e in &stored {
                let pos = steps.iter().position(|s| *s == e.step).unwrap();
                for s in &steps[..pos] {
                    prop_assert!(ended.contains_key(s.as_str()),
                        "`{} {}` taken before `{}` ended", e.step, e.status, s);
                }
                if e.step == "done" && e.status == "succeeded" {
                    for s in &steps[..pos] {
                        prop_assert!(matches!(ended[s.as_str()], "succeeded" | "skipped"),
                            "done succeeded after `{}` {}", s, ended[s.as_str()]);
                    }
                    prop_assert!(!ended.values().any(|st| *st == "failed"));
                }
                if e.status != "started" {
                    ended.insert(e.step.as_str(), e.status.as_str());
                }
            }
        }
    }

    #[test]
    fn a_clean_run_is_taken_and_its_resend_dropped() {
        let steps: Vec<String> = ["copy", "done"].iter().map(|s| s.to_string()).collect();
        let run = [
            ev(1, "copy", "started"),
            ev(2, "copy", "succeeded"),
            ev(3, "done", "succeeded"),
        ];
        let fresh = check_events(&steps, [].iter(), &run).unwrap();
        assert_eq!(fresh.len(), 3);
        assert!(check_events(&steps, fresh.iter(), &run).unwrap().is_empty());
        let skipped = check_events(&steps, [].iter(), &[ev(1, "done", "succeeded")]);
        assert_eq!(skipped.unwrap_err().code, "out_of_order");
        let failed = [ev(1, "copy", "failed"), ev(2, "done", "succeeded")];
        assert_eq!(
            check_events(&steps, [].iter(), &failed).unwrap_err().code,
            "out_of_order"
        );
    }
}

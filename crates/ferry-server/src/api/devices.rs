//! Devices for the operator: pre-shared keys, the agent endpoint, agents and their runs, runbooks,
//! batches (with their rules and the device what-if), and the reports.

use super::{ApiError, ApiResult};
use crate::audit::act;
use crate::auth::AdminAuth;
use crate::devices::{self, Batch, BatchTimes, configured};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use ferry_core::agent::Assignment;
use ferry_core::runbook::Runbook;
pub use ferry_core::wire::{
    AgentDetail, AgentEndpointInfo, AgentView, BatchProgress, BatchView, BatchWhatIf,
    ComputerChange, CreatedPsk, DecidedRequest, DeviceWhatIf, FailedReport, NewPsk, RunbookView,
    WaveState,
};
use ferry_store::{
    AgentQuery, AgentRecord, AgentSort, Direction, DocKind, EnrollmentRequest, FailedQuery,
    FailedSort, Psk, StoredEvent, now_ms,
};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

#[utoipa::path(post, path = "/psks", tag = "devices", request_body = NewPsk,
    responses((status = 201, body = CreatedPsk), (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn create_psk(
    op: AdminAuth,
    State(st): State<AppState>,
    super::Object(b): super::Object<NewPsk>,
) -> ApiResult<(StatusCode, Json<CreatedPsk>)> {
    let name = b.name.as_str();
    if let Err(e) = ferry_core::check_name(name) {
        return Err(ApiError::BadRequest(format!("name: {e}")));
    }
    if let Some(n) = b.uses
        && !(1..=1_000_000).contains(&n)
    {
        return Err(ApiError::BadRequest(format!(
            "uses: {n} is out of range: 1–1000000"
        )));
    }
    let device = b.device.as_deref().map(str::trim);
    if let Some(d) = device
        && (d.is_empty() || d.len() > 255 || d.chars().any(char::is_control))
    {
        return Err(ApiError::BadRequest(
            "device: a host name of 1–255 characters".into(),
        ));
    }
    if st.store.psks().await?.iter().any(|k| k.name == name) {
        return Err(ApiError::Conflict(format!(
            "a pre-shared key named `{name}` exists"
        )));
    }
    let key = crate::auth::new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let key = format!("psk_{}", key.trim_start_matches("ferry_"));
    let psk = st
        .store
        .add_psk(
            name,
            &crate::auth::hash_token(&key),
            b.uses,
            device,
            now_ms(),
        )
        .await?;
    act(
        &st,
        &op,
        None,
        "psk.create",
        name,
        format!(
            "uses {}, device {}",
            b.uses.map_or("unlimited".into(), |n| n.to_string()),
            device.unwrap_or("any")
        ),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedPsk { psk, key })))
}

#[utoipa::path(get, path = "/psks", tag = "devices", responses((status = 200, body = Vec<Psk>)))]
pub async fn list_psks(_: AdminAuth, State(st): State<AppState>) -> ApiResult<Json<Vec<Psk>>> {
    Ok(Json(st.store.psks().await?))
}

#[utoipa::path(post, path = "/psks/{name}/retire", tag = "devices", params(("name" = String, Path)),
    responses((status = 200, body = Psk, description = "retired: it enrolls no new agents; enrolled agents keep working"), (status = 404, body = super::ErrorBody)))]
pub async fn retire_psk(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Psk>> {
    let retired = st.store.retire_psk(&name, now_ms()).await?;
    let psk = st
        .store
        .psks()
        .await?
        .into_iter()
        .find(|k| k.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("there is no pre-shared key `{name}`")))?;
    // Retiring a retired key changes nothing, and is not an act.
    if retired {
        act(
            &st,
            &op,
            None,
            "psk.retire",
            &name,
            format!(
                "uses left {}",
                psk.uses_left.map_or("unlimited".into(), |n| n.to_string())
            ),
        )
        .await?;
    }
    Ok(Json(psk))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct RequestParams {
    /// `pending` (the default), `approved`, `refused` or `all`.
    pub state: Option<String>,
}

#[utoipa::path(get, path = "/enrollment-requests", tag = "devices", params(RequestParams),
    responses((status = 200, body = Vec<EnrollmentRequest>, description = "held enrollments, newest first")))]
pub async fn enrollment_requests(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<RequestParams>,
) -> ApiResult<Json<Vec<EnrollmentRequest>>> {
    let state = match p.state.as_deref().unwrap_or("pending") {
        "all" => None,
        s @ ("pending" | "approved" | "refused") => Some(s),
        s => {
            return Err(ApiError::BadRequest(format!(
                "state: `{s}` is not pending, approved, refused or all"
            )));
        }
    };
    Ok(Json(st.store.enrollment_requests(state).await?))
}

async fn decide(
    st: &AppState,
    op: &AdminAuth,
    id: i64,
    approve: bool,
) -> ApiResult<Json<DecidedRequest>> {
    let Some((request, agent)) = st
        .store
        .decide_enrollment(id, approve, &op.name, now_ms())
        .await?
    else {
        return Err(ApiError::NotFound(format!(
            "there is no pending enrollment request {id}"
        )));
    };
    // The agents it replaces stop at once on this server (others within the 30 s cache).
    st.devices
        .forget_device(&request.device_id, &request.hostname);
    act(
        st,
        op,
        None,
        if approve {
            "agent.enrollment.approve"
        } else {
            "agent.enrollment.refuse"
        },
        &format!("{} ({})", request.hostname, request.device_id),
        format!(
            "request {id} from {}: {}",
            request.address.as_deref().unwrap_or("unknown address"),
            request.reason
        ),
    )
    .await?;
    Ok(Json(DecidedRequest { request, agent }))
}

#[utoipa::path(post, path = "/enrollment-requests/{id}/approve", tag = "devices", params(("id" = i64, Path)),
    responses((status = 200, body = DecidedRequest, description = "enrolled: the device's node key works; agents it claimed are replaced"), (status = 404, body = super::ErrorBody)))]
pub async fn approve_enrollment(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<DecidedRequest>> {
    decide(&st, &op, id, true).await
}

#[utoipa::path(post, path = "/enrollment-requests/{id}/refuse", tag = "devices", params(("id" = i64, Path)),
    responses((status = 200, body = DecidedRequest, description = "refused: its node key never works; the enrolled agent keeps working"), (status = 404, body = super::ErrorBody)))]
pub async fn refuse_enrollment(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<DecidedRequest>> {
    decide(&st, &op, id, false).await
}

#[utoipa::path(get, path = "/agent-endpoint", tag = "devices", responses((status = 200, body = AgentEndpointInfo)))]
pub async fn agent_endpoint(_: AdminAuth, State(st): State<AppState>) -> Json<AgentEndpointInfo> {
    let e = st.devices.endpoint.read().ok().and_then(|e| e.clone());
    Json(AgentEndpointInfo {
        url: e.as_ref().map(|(u, _)| u.clone()),
        certificate_sha256: e.map(|(_, f)| f),
    })
}

async fn agent_views(st: &AppState, q: &AgentQuery) -> ApiResult<Vec<AgentView>> {
    let snap = st.devices.snapshot();
    let now = now_ms();
    let agents = st.store.agents_page(q).await?;
    // One query for the page's newest events, not one per agent.
    let ids: Vec<i64> = agents.iter().map(|a| a.id).collect();
    let mut last_events: HashMap<i64, StoredEvent> = st
        .store
        .latest_events_of(&ids)
        .await?
        .into_iter()
        .map(|e| (e.agent_id, e))
        .collect();
    // The claims of the page's agents in a batch, one look-up per source directory.
    let mut by_source: HashMap<&str, Vec<&AgentRecord>> = HashMap::new();
    for a in &agents {
        if let Some(b) = snap.batch_of(&a.hostname) {
            by_source.entry(&b.source_directory).or_default().push(a);
        }
    }
    let mut mismatches: HashMap<i64, String> = HashMap::new();
    for (source, list) in by_source {
        let claims = devices::check_claims_of(&*st.store, source, &list).await?;
        for (a, c) in list.iter().zip(claims) {
            match c {
                devices::Claims::Consistent => {}
                devices::Claims::Contradicted(why) | devices::Claims::NotInDirectory(why) => {
                    mismatches.insert(a.id, why);
                }
            }
        }
    }
    Ok(agents
        .into_iter()
        .map(|a| {
            let last = last_events.remove(&a.id);
            AgentView {
                mismatch: mismatches.remove(&a.id),
                batch: snap
                    .computers
                    .get(&ferry_core::host::host_key(&a.hostname))
                    .cloned(),
                last_step: last
                    .as_ref()
                    .map(|e| format!("{} {}", e.event.step, e.event.status)),
                progress: last.and_then(|e| e.event.progress),
                silent: now - a.last_contact > 3 * i64::from(devices::POLL_SECONDS) * 1000,
                agent: a,
            }
        })
        .collect())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AgentParams {
    /// Part of the host name or device id (any case).
    pub search: Option<String>,
    /// Only agents in this state (`enrolled`, `idle`, `running`, `succeeded`, `failed`, …).
    pub state: Option<String>,
    /// Only agents whose computer is in this batch.
    pub batch: Option<String>,
    /// Rows to skip (old paging, at most 10000; prefer `after`).
    #[serde(default)]
    pub offset: i64,
    /// Keyset paging: the `X-Next-After` of the previous page (in id order, its last id).
    pub after: Option<String>,
    /// At most this many (default 1000, at most 10000); the total is in `X-Total-Count`.
    pub limit: Option<i64>,
    /// `id` (the default), `hostname` (ASCII letters in lower case, code point order),
    /// `state` or `last_contact`; ties in id order.
    pub sort: Option<String>,
    /// `asc` (the default) or `desc`.
    pub order: Option<String>,
}

/// The columns agent lists sort on.
const AGENT_SORTS: &[(&str, AgentSort)] = &[
    ("id", AgentSort::Id),
    ("hostname", AgentSort::Hostname),
    ("state", AgentSort::State),
    ("last_contact", AgentSort::LastContact),
];

/// An agent list's sort, order and cursor read into `q`.
fn agent_sorting(
    q: &mut AgentQuery,
    sort: Option<&str>,
    order: Option<&str>,
    after: Option<&str>,
) -> ApiResult<()> {
    q.sort = super::sort_param(sort, AGENT_SORTS)?;
    q.direction = super::order_param(order, Direction::Asc)?;
    let by = match q.sort {
        AgentSort::Id => super::SortedBy::Id,
        AgentSort::Hostname | AgentSort::State => super::SortedBy::Text,
        AgentSort::LastContact => super::SortedBy::Int,
    };
    (q.after_value, q.after) = super::id_cursor(after, by)?;
    Ok(())
}

/// The `X-Next-After` of a page of agents, when it was full.
fn agents_next(q: &AgentQuery, page: &[AgentView]) -> Option<String> {
    if (page.len() as i64) < q.limit {
        return None;
    }
    page.last()
        .map(|a| super::id_token(q.sort.value_of(&a.agent), a.agent.id))
}

impl AgentParams {
    fn query(&self) -> ApiResult<AgentQuery> {
        for (name, v) in [
            ("search", &self.search),
            ("state", &self.state),
            ("batch", &self.batch),
        ] {
            super::text_param(name, v)?;
        }
        let mut q = AgentQuery {
            search: self.search.clone().filter(|s| !s.trim().is_empty()),
            state: self.state.clone().filter(|s| !s.is_empty()),
            batch: self.batch.clone().filter(|s| !s.is_empty()),
            silent_before: None,
            offset: super::offset_param("offset", self.offset)?,
            limit: self.limit.unwrap_or(1000).clamp(1, 10_000),
            ..Default::default()
        };
        agent_sorting(
            &mut q,
            self.sort.as_deref(),
            self.order.as_deref(),
            self.after.as_deref(),
        )?;
        Ok(q)
    }
}

#[utoipa::path(get, path = "/agents", tag = "devices", params(AgentParams),
    responses((status = 200, body = Vec<AgentView>, description = "a page of agents in the order asked (by id by default); `X-Total-Count` says how many match",
        headers(("X-Total-Count" = i64, description = "agents matching, all pages"),
            ("X-Next-After" = String, description = "on a full page: the `after=` of the next one"))),
        (status = 400, body = super::ErrorBody, description = "an unknown `sort` or `order`, or an `after` of another sort")))]
pub async fn agents(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<AgentParams>,
) -> ApiResult<(axum::http::HeaderMap, Json<Vec<AgentView>>)> {
    let q = p.query()?;
    let total = st.store.count_agents(&q).await?;
    let page = agent_views(&st, &q).await?;
    Ok((
        super::list_headers(total, agents_next(&q, &page)),
        Json(page),
    ))
}

/// The most agents one export writes (the whole fleet the issue measures is 100,000).
const AGENTS_EXPORT_MAX: usize = 1_000_000;

#[utoipa::path(get, path = "/agents/export", tag = "devices", params(AgentParams),
    responses((status = 200, description = "every agent the filters find (a batch's computers with `batch=`), as CSV in the order asked, read by keyset pages of 5,000 (`limit` and `offset` ignored); cells that would read as a spreadsheet formula start with `'`",
        content((String = "text/csv")),
        headers(("X-Total-Count" = i64, description = "agents matching"))),
        (status = 400, body = super::ErrorBody, description = "an unknown `sort` or `order`, or an `after` of another sort")))]
pub async fn agents_export(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<AgentParams>,
) -> ApiResult<axum::response::Response> {
    let mut q = p.query()?;
    let total = st.store.count_agents(&q).await?;
    let snap = st.devices.snapshot();
    (q.limit, q.offset) = (5_000, 0);
    let mut rows = Vec::new();
    loop {
        let page = st.store.agents_page(&q).await?;
        for a in &page {
            rows.push(vec![
                a.id.to_string(),
                a.hostname.clone(),
                a.device_id.clone(),
                a.os.clone(),
                a.agent_version.clone(),
                a.state.clone(),
                snap.batch_of(&a.hostname)
                    .map(|b| b.name.clone())
                    .unwrap_or_default(),
                a.enrolled_at.to_string(),
                a.last_contact.to_string(),
                a.last_address.clone().unwrap_or_default(),
            ]);
        }
        match page.last() {
            Some(last) if page.len() as i64 == q.limit && rows.len() < AGENTS_EXPORT_MAX => {
                q.after_value = q.sort.value_of(last);
                q.after = Some(last.id);
            }
            _ => break,
        }
    }
    super::csv_response(
        "agents.csv",
        total,
        &[
            "id",
            "hostname",
            "device_id",
            "os",
            "agent_version",
            "state",
            "batch",
            "enrolled_at_ms",
            "last_contact_ms",
            "last_address",
        ],
        rows.into_iter(),
    )
}

#[utoipa::path(get, path = "/agents/{id}", tag = "devices", params(("id" = i64, Path)),
    responses((status = 200, body = AgentDetail), (status = 404, body = super::ErrorBody)))]
pub async fn agent(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<AgentDetail>> {
    let a = st
        .store
        .agent(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no agent {id}")))?;
    Ok(Json(AgentDetail {
        profiles: st.store.agent_profiles(id).await?,
        events: st.store.agent_events(id, None).await?,
        agent: a,
    }))
}

#[utoipa::path(get, path = "/agents/{id}/runs/{run}/log", tag = "devices", params(("id" = i64, Path), ("run" = String, Path)),
    responses((status = 200, description = "the run's log as the agent sent it", content_type = "text/plain")))]
pub async fn agent_log(
    _: AdminAuth,
    State(st): State<AppState>,
    Path((id, run)): Path<(i64, String)>,
) -> ApiResult<String> {
    Ok(st.store.agent_log(id, &run).await?)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FailedParams {
    /// Agents silent for more than this many poll intervals are listed too (default 3).
    pub silent_polls: Option<i64>,
    /// Refusals (and silent agents) listed, default 200, at most 10000.
    pub limit: Option<i64>,
    /// Only refusals with this code (`bad_psk`, `bad_node_key`, …).
    pub code: Option<String>,
    /// `at` (when last seen; the default) or `address` (code point order, none first); ties in
    /// id order.
    pub sort: Option<String>,
    /// `desc` (the default: newest first) or `asc`.
    pub order: Option<String>,
    /// The `failures_next` of the previous page.
    pub after: Option<String>,
}

impl FailedParams {
    /// The refusals these parameters ask for (a page of `limit`, after `after`).
    fn query(&self) -> ApiResult<FailedQuery> {
        let mut q = FailedQuery {
            code: super::text_param("code", &self.code)?
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            sort: super::sort_param(
                self.sort.as_deref(),
                &[("at", FailedSort::At), ("address", FailedSort::Address)],
            )?,
            direction: super::order_param(self.order.as_deref(), Direction::Desc)?,
            limit: self.limit.unwrap_or(200).clamp(1, 10_000),
            ..Default::default()
        };
        let by = match q.sort {
            FailedSort::At => super::SortedBy::Int,
            FailedSort::Address => super::SortedBy::Text,
        };
        (q.after_value, q.after) = super::id_cursor(self.after.as_deref(), by)?;
        Ok(q)
    }
}

/// The most refusals one export writes (each row already counts repeats of one refusal).
const FAILED_EXPORT_MAX: usize = 1_000_000;

#[utoipa::path(get, path = "/reports/failed-communications/export", tag = "devices", params(FailedParams),
    responses((status = 200, description = "every refusal the filters (`code`) find, as CSV in the order asked, read by keyset pages of 5,000 (`limit` and `silent_polls` ignored); cells that would read as a spreadsheet formula start with `'`",
        content((String = "text/csv")),
        headers(("X-Total-Count" = i64, description = "refusals matching"))),
        (status = 400, body = super::ErrorBody, description = "an unknown `sort` or `order`, or an `after` of another sort")))]
pub async fn failed_export(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<FailedParams>,
) -> ApiResult<axum::response::Response> {
    let mut q = p.query()?;
    let total = st.store.count_failed_comms(&q).await?;
    q.limit = 5_000;
    let mut rows = Vec::new();
    loop {
        let page = st.store.failed_comms_page(&q).await?;
        for f in &page {
            rows.push(vec![
                f.id.to_string(),
                f.at.to_string(),
                f.first_at.to_string(),
                f.count.to_string(),
                f.code.clone(),
                f.reason.clone(),
                f.address.clone().unwrap_or_default(),
                f.agent_id.map(|a| a.to_string()).unwrap_or_default(),
                f.device_id.clone().unwrap_or_default(),
            ]);
        }
        match page.last() {
            Some(last) if page.len() as i64 == q.limit && rows.len() < FAILED_EXPORT_MAX => {
                q.after_value = Some(q.sort.value_of(last));
                q.after = Some(last.id);
            }
            _ => break,
        }
    }
    super::csv_response(
        "failed-communications.csv",
        total,
        &[
            "id",
            "last_seen_ms",
            "first_seen_ms",
            "times",
            "code",
            "reason",
            "address",
            "agent_id",
            "device_id",
        ],
        rows.into_iter(),
    )
}

#[utoipa::path(get, path = "/reports/failed-communications", tag = "devices", params(FailedParams), responses((status = 200, body = FailedReport)))]
pub async fn failed(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<FailedParams>,
) -> ApiResult<Json<FailedReport>> {
    let polls = p.silent_polls.unwrap_or(3).max(1);
    // Saturating: a huge `silent_polls` means "silent since ever", not an overflow.
    let cutoff =
        now_ms().saturating_sub(polls.saturating_mul(i64::from(devices::POLL_SECONDS) * 1000));
    let q = p.query()?;
    let failures = st.store.failed_comms_page(&q).await?;
    let failures_next = (failures.len() as i64 == q.limit)
        .then(|| failures.last())
        .flatten()
        .map(|f| super::id_token(Some(q.sort.value_of(f)), f.id));
    Ok(Json(FailedReport {
        failures_total: st.store.count_failed_comms(&q).await?,
        failures_next,
        failures,
        silent: st
            .store
            .agents_page(&AgentQuery {
                silent_before: Some(cutoff),
                limit: p.limit.unwrap_or(200).clamp(1, 10_000),
                ..Default::default()
            })
            .await?,
    }))
}

async fn runbook_map(st: &AppState) -> ApiResult<HashMap<String, Runbook>> {
    Ok(st.devices.snapshot().runbooks.clone())
}

/// `file` for an entry of ferry.toml, else `console`.
fn origin(configured: bool) -> String {
    if configured { "file" } else { "console" }.into()
}

/// Refuses to change a runbook or batch defined in ferry.toml (`what`: `runbook`, `batch`).
fn not_configured(st: &AppState, what: &str, name: &str) -> ApiResult<()> {
    let file = st.settings.file();
    let configured = match what {
        "runbook" => configured::is_configured_runbook(file, name),
        _ => configured::is_configured_batch(file, name),
    };
    if configured {
        return Err(ApiError::Conflict(format!(
            "{what} `{name}` is defined in {}; change it there",
            file.file
        )));
    }
    Ok(())
}

#[utoipa::path(get, path = "/runbooks", tag = "devices", responses((status = 200, body = Vec<RunbookView>)))]
pub async fn runbooks(
    _: AdminAuth,
    State(st): State<AppState>,
) -> ApiResult<Json<Vec<RunbookView>>> {
    let file = st.settings.file();
    let mut v: Vec<RunbookView> = runbook_map(&st)
        .await?
        .into_values()
        .map(|r| RunbookView {
            origin: origin(configured::is_configured_runbook(file, &r.name)),
            runbook: r,
        })
        .collect();
    v.sort_by(|a, b| a.runbook.name.cmp(&b.runbook.name));
    Ok(Json(v))
}

#[utoipa::path(put, path = "/runbooks/{name}", tag = "devices", params(("name" = String, Path)), request_body = Runbook,
    responses((status = 200, body = Runbook), (status = 400, body = super::ErrorBody, description = "names the field that is wrong"), (status = 409, body = super::ErrorBody, description = "defined in the configuration file")))]
pub async fn put_runbook(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    super::Object(r): super::Object<Runbook>,
) -> ApiResult<Json<Runbook>> {
    super::same_name(&r.name, &name)?;
    not_configured(&st, "runbook", &name)?;
    let stored = st.devices.reload(&*st.store).await?.runbooks.clone();
    devices::validate_runbook(&r, &st.settings.get(), &stored)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let body = serde_json::to_string(&r).map_err(|e| ApiError::Internal(e.to_string()))?;
    st.store
        .put_document(DocKind::Runbook, &name, &body, now_ms())
        .await?;
    st.devices.reload(&*st.store).await?;
    // The sections changed, not their content: scripts and commands are not for the trail.
    let (action, detail) = match stored.get(&name) {
        None => ("runbook.add", format!("{} step(s)", r.steps().len())),
        Some(before) => ("runbook.change", changed(before, &r, false)),
    };
    act(&st, &op, None, action, &name, detail).await?;
    Ok(Json(r))
}

/// What changed between two versions of a document (`crate::audit::changes`), or `unchanged`.
fn changed<T: serde::Serialize>(before: &T, after: &T, values: bool) -> String {
    let json = |v: &T| serde_json::to_value(v).unwrap_or_default();
    let c = crate::audit::changes(&json(before), &json(after), values);
    if c.is_empty() { "unchanged".into() } else { c }
}

/// A batch as its audit line shows it: its times in the console's date format with its zone
/// (`2030-01-01 18:00:00 Europe/London`, not `2030-01-01T18:00`).
fn batch_shown(b: &devices::Batch) -> serde_json::Value {
    let mut v = serde_json::to_value(b).unwrap_or_default();
    v["enforced_after"] = local_shown(&b.enforced_after, &b.time_zone).into();
    if let Some(a) = &b.available_from {
        v["available_from"] = local_shown(a, &b.time_zone).into();
    }
    v
}

/// A batch's local time (`2030-01-01T18:00`) in the console's one date format, with its zone:
/// `2030-01-01 18:00:00 Europe/London`.
fn local_shown(local: &str, zone: &str) -> String {
    let (date, time) = local.split_once('T').unwrap_or((local, "00:00"));
    let time = format!("{time}:00:00");
    format!("{date} {} {zone}", time.get(..8).unwrap_or(&time))
}

/// Names for an audit line: the first few, and how many more.
fn some_names(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

#[utoipa::path(delete, path = "/runbooks/{name}", tag = "devices", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn delete_runbook(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    not_configured(&st, "runbook", &name)?;
    let snap = st.devices.reload(&*st.store).await?;
    if let Some(r) = snap
        .runbooks
        .values()
        .find(|r| r.prerequisites.contains(&name))
    {
        return Err(ApiError::Conflict(format!(
            "runbook `{}` has `{name}` as a prerequisite",
            r.name
        )));
    }
    if let Some(b) = snap.batches.values().find(|b| b.runbooks.contains(&name)) {
        return Err(ApiError::Conflict(format!(
            "batch `{}` uses runbook `{name}`",
            b.name
        )));
    }
    if !st.store.delete_document(DocKind::Runbook, &name).await? {
        return Err(ApiError::NotFound(format!("there is no runbook `{name}`")));
    }
    st.devices.reload(&*st.store).await?;
    act(&st, &op, None, "runbook.remove", &name, String::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn batch_view(st: &AppState, b: Batch, warnings: Vec<String>) -> ApiResult<BatchView> {
    let computers = st.devices.snapshot().computers_of(&b.name);
    Ok(BatchView {
        origin: origin(configured::is_configured_batch(st.settings.file(), &b.name)),
        batch: b,
        computer_count: computers.len(),
        computers,
        warnings,
        states: None,
        available_at: None,
        enforced_at: None,
        halted: None,
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct BatchListParams {
    /// List each batch's computers (default true); `false` gives their number only.
    pub computers: Option<bool>,
    /// Count each batch's computers per agent state, with its Enforced After (ms) and whether it
    /// halted (default false): every batch's in one pass over the agents.
    pub states: Option<bool>,
}

#[utoipa::path(get, path = "/batches", tag = "devices", params(BatchListParams), responses((status = 200, body = Vec<BatchView>)))]
pub async fn batches(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<BatchListParams>,
) -> ApiResult<Json<Vec<BatchView>>> {
    let list = p.computers.unwrap_or(true);
    let snap = st.devices.snapshot();
    let mut states = Default::default();
    let mut halted: HashMap<String, bool> = HashMap::new();
    if p.states.unwrap_or(false) {
        states = snap.states_by_batch(st.store.live_agent_states().await?);
        for (batch, body) in st.store.documents(DocKind::Wave).await? {
            let w: ferry_core::wire::WaveState = serde_json::from_str(&body).unwrap_or_default();
            halted.insert(batch, w.halted.is_some());
        }
    }
    let with_states = p.states.unwrap_or(false);
    // Every batch's computers in one pass over the memberships.
    let mut members: HashMap<&str, (usize, Vec<String>)> = HashMap::new();
    for (c, b) in &snap.computers {
        let m = members.entry(b.as_str()).or_default();
        m.0 += 1;
        if list {
            m.1.push(snap.name_of(c));
        }
    }
    let mut out: Vec<BatchView> = snap
        .batches
        .values()
        .map(|b| {
            let (computer_count, mut computers) =
                members.remove(b.name.as_str()).unwrap_or_default();
            computers.sort_by_key(|c| ferry_core::host::host_key(c));
            let by_state = with_states.then(|| {
                let mut s: HashMap<String, usize> = states
                    .remove(b.name.as_str())
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let pending = computer_count.saturating_sub(s.values().sum());
                if pending > 0 {
                    s.insert("no agent yet".into(), pending);
                }
                s
            });
            BatchView {
                origin: origin(configured::is_configured_batch(st.settings.file(), &b.name)),
                available_at: with_states
                    .then(|| b.available_at().ok().flatten())
                    .flatten(),
                enforced_at: with_states.then(|| b.enforced_at().ok()).flatten(),
                halted: with_states.then(|| halted.get(&b.name).copied().unwrap_or(false)),
                batch: b.clone(),
                computers,
                computer_count,
                warnings: vec![],
                states: by_state,
            }
        })
        .collect();
    out.sort_by(|a, b| a.batch.name.cmp(&b.batch.name));
    Ok(Json(out))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct PutBatchParams {
    /// Add missing prerequisite runbooks instead of refusing the batch.
    #[serde(default)]
    pub add_prerequisites: bool,
}

#[utoipa::path(put, path = "/batches/{name}", tag = "devices", params(("name" = String, Path), PutBatchParams), request_body = Batch,
    responses((status = 200, body = BatchView), (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody, description = "defined in the configuration file")))]
pub async fn put_batch(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<PutBatchParams>,
    super::Object(mut b): super::Object<Batch>,
) -> ApiResult<Json<BatchView>> {
    super::same_name(&b.name, &name)?;
    not_configured(&st, "batch", &name)?;
    let snap = st.devices.reload(&*st.store).await?;
    let notes = devices::check_batch(
        &mut b,
        &st.settings.get(),
        &snap.runbooks,
        p.add_prerequisites,
    )
    .map_err(ApiError::BadRequest)?;
    let body = serde_json::to_string(&b).map_err(|e| ApiError::Internal(e.to_string()))?;
    st.store
        .put_document(DocKind::Batch, &name, &body, now_ms())
        .await?;
    st.devices.reload(&*st.store).await?;
    // The tenant pre-flight runs ahead of time, so that it is cached when devices are due.
    st.devices.preflight.queue(&name);
    let (action, detail) = match snap.batches.get(&name) {
        None => (
            "batch.add",
            format!(
                "{} → {}, runbooks {}, enforced_after {}",
                b.source_directory,
                b.target_directory,
                b.runbooks.join(", "),
                local_shown(&b.enforced_after, &b.time_zone)
            ),
        ),
        Some(before) => (
            "batch.change",
            changed(&batch_shown(before), &batch_shown(&b), true),
        ),
    };
    act(&st, &op, None, action, &name, detail).await?;
    Ok(Json(batch_view(&st, b, notes).await?))
}

#[utoipa::path(delete, path = "/batches/{name}", tag = "devices", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody, description = "defined in the configuration file")))]
pub async fn delete_batch(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    not_configured(&st, "batch", &name)?;
    let computers = st.devices.snapshot().computers_of(&name).len();
    if !st.store.delete_document(DocKind::Batch, &name).await? {
        return Err(ApiError::NotFound(format!("there is no batch `{name}`")));
    }
    st.devices.reload(&*st.store).await?;
    act(
        &st,
        &op,
        None,
        "batch.remove",
        &name,
        format!("{computers} computer(s) left it"),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/batches/{name}/computers", tag = "devices", params(("name" = String, Path)), request_body = ComputerChange,
    responses((status = 200, body = BatchView), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such batch"), (status = 409, body = super::ErrorBody, description = "a computer is already in another batch, or the batch is defined in the configuration file")))]
pub async fn computers(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    super::Object(c): super::Object<ComputerChange>,
) -> ApiResult<Json<BatchView>> {
    not_configured(&st, "batch", &name)?;
    let snap = st.devices.reload(&*st.store).await?;
    let b = snap
        .batches
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("there is no batch `{name}`")))?;
    // Computers come from enrolled agents or the source directory's imported devices: looked up
    // by name through the host-name and key indexes (a batch of 10,000 at 1M objects and 100k
    // agents reads those 10,000, not every object and agent).
    // A live agent's claim is its host name's key (`host_key`, written by Rust), the key of the
    // name typed here.
    let mut keys: Vec<String> = c
        .add
        .iter()
        .map(|a| ferry_core::host::host_key(a))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let live: HashSet<String> = st.store.live_hostnames(&keys).await?.into_iter().collect();
    let is_agent = |a: &str| live.contains(&ferry_core::host::host_key(a));
    let unknown: Vec<&str> = c
        .add
        .iter()
        .filter(|a| !is_agent(a))
        .map(String::as_str)
        .collect();
    let mut known: HashSet<String> = HashSet::new();
    for chunk in unknown.chunks(256) {
        for o in st.store.devices_named(&b.source_directory, chunk).await? {
            known.insert(ferry_core::host::host_key(&o.name));
        }
    }
    // Kept as typed (shown so); matched by key.
    let mut add = Vec::new();
    for (i, comp) in c.add.iter().enumerate() {
        if !is_agent(comp) && !known.contains(&ferry_core::host::host_key(comp)) {
            return Err(ApiError::BadRequest(format!(
                "add[{i}]: `{comp}` is neither an enrolled agent nor a device of `{}`",
                b.source_directory
            )));
        }
        add.push(comp.clone());
    }
    let conflicts = st.store.add_batch_computers(&name, &add, now_ms()).await?;
    if !conflicts.is_empty() {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(c, other)| format!("{c} is already in batch `{other}`"))
            .collect();
        return Err(ApiError::Conflict(format!(
            "a computer is in at most one batch: {}; nothing was added",
            list.join("; ")
        )));
    }
    let removed: Vec<String> = c
        .remove
        .iter()
        .map(|r| ferry_core::host::host_key(r))
        .collect();
    st.store.remove_batch_computers(&name, &removed).await?;
    st.devices.reload(&*st.store).await?;
    st.devices.preflight.queue(&name);
    let mut detail = Vec::new();
    if !add.is_empty() {
        detail.push(format!("added {}: {}", add.len(), some_names(&add)));
    }
    if !removed.is_empty() {
        detail.push(format!(
            "removed {}: {}",
            removed.len(),
            some_names(&removed)
        ));
    }
    act(&st, &op, None, "batch.computers", &name, detail.join("; ")).await?;
    let now = now_ms();
    let warnings = add
        .iter()
        .filter(|c| !snap.computers.contains_key(&ferry_core::host::host_key(c)))
        .filter_map(|c| devices::late_add_warning(&b, c, now))
        .collect();
    Ok(Json(batch_view(&st, b, warnings).await?))
}

#[utoipa::path(get, path = "/batches/{name}/whatif", tag = "devices", params(("name" = String, Path)),
    responses((status = 200, body = BatchWhatIf), (status = 404, body = super::ErrorBody)))]
pub async fn whatif(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<BatchWhatIf>> {
    let snap = st.devices.snapshot();
    let b = snap
        .batches
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("there is no batch `{name}`")))?;
    let runbooks = devices::ordered_runbooks(&b.runbooks, &snap.runbooks);
    let steps: Vec<String> = runbooks
        .iter()
        .flat_map(|r| {
            r.steps()
                .into_iter()
                .map(move |s| format!("{}: {s}", r.name))
        })
        .collect();
    let index = st
        .devices
        .translation(&*st.store, &st.settings.get(), &b)
        .await?;
    let agents: HashMap<String, AgentRecord> = st
        .store
        .agents_page(&AgentQuery {
            batch: Some(name.clone()),
            ..Default::default()
        })
        .await?
        .into_iter()
        .map(|a| (ferry_core::host::host_key(&a.hostname), a))
        .collect();
    let now = now_ms();
    let token_problem = if runbooks
        .iter()
        .any(|r| r.device_state.join == ferry_core::runbook::JoinKind::EntraId)
    {
        crate::enrolment::token_for_join(
            &*st.store,
            &st.settings.vault,
            &b.target_directory,
            b.enforced_at().unwrap_or(now),
        )
        .await
        .err()
        .map(|e| e.to_string())
    } else {
        None
    };
    let mut out = Vec::new();
    let preflight = st.devices.preflight.batch_result(&name);
    for (computer, batch) in &snap.computers {
        if *batch != name {
            continue;
        }
        let agent = agents.get(computer);
        let mut d = DeviceWhatIf {
            computer: snap.name_of(computer),
            agent_id: agent.map(|a| a.id),
            remap: vec![],
            no_target: vec![],
            steps: steps.clone(),
            warnings: vec![],
            ready: None,
            preflight: None,
        };
        match agent {
            None => d.warnings.push(
                "no agent has enrolled from this computer yet: its profiles are unknown".into(),
            ),
            Some(a) => {
                for p in st.store.agent_profiles(a.id).await? {
                    match index.lookup(&p) {
                        Some(t) => d.remap.push(t),
                        None => d.no_target.push(p.name),
                    }
                }
                if !d.no_target.is_empty() {
                    d.warnings.push(format!(
                        "{} profile(s) have no translation entry and will not be re-permissioned: {}",
                        d.no_target.len(),
                        d.no_target.join(", ")
                    ));
                }
                if let Some(mut pf) = a.preflight.clone() {
                    let skip = runbooks
                        .iter()
                        .any(|r| r.permission_updates.skip_unresolved_profiles);
                    pf.checks
                        .push(ferry_core::agent::profiles_check(&d.no_target, skip));
                    d.ready = Some(pf.ready());
                    if let Some(why) = pf.not_ready() {
                        d.warnings.push(format!("the device is {why}"));
                    }
                    d.preflight = Some(pf);
                }
            }
        }
        if let Some(t) = &token_problem {
            d.warnings.push(format!(
                "the device cannot join Entra ID at Enforced After: {t}"
            ));
        }
        // The tenant pre-flight's last result (cached; GET /batches/{name}/preflight reads it).
        if let Some(f) = preflight.as_ref().and_then(|r| {
            r.findings
                .iter()
                .find(|f| f.check != "bulk-enrolment-token" && f.blocks(computer))
        }) {
            d.warnings.push(format!(
                "held back by the tenant pre-flight ({}): {}",
                f.check, f.message
            ));
        }
        out.push(d);
    }
    out.sort_by_key(|d| ferry_core::host::host_key(&d.computer));
    let assignment = Some(Assignment {
        batch: b.name.clone(),
        runbooks: runbooks.iter().map(|r| r.name.clone()).collect(),
        available_from: b.available_at().ok().flatten(),
        enforced_after: b.enforced_at().unwrap_or_default(),
        time_zone: b.time_zone.clone(),
    });
    Ok(Json(BatchWhatIf {
        batch: name,
        assignment,
        devices: out,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ProgressParams {
    /// Only agents in this state.
    pub state: Option<String>,
    /// Agents to skip (old paging, at most 10000; prefer `after`).
    #[serde(default)]
    pub offset: i64,
    /// Keyset paging: the `agents_next` of the previous page (in id order, its last id).
    pub after: Option<String>,
    /// Agents listed (default 200, at most 10000); `states` always counts them all.
    pub limit: Option<i64>,
    /// As `GET /agents`: `id` (the default), `hostname`, `state` or `last_contact`.
    pub sort: Option<String>,
    /// `asc` (the default) or `desc`.
    pub order: Option<String>,
}

#[utoipa::path(get, path = "/batches/{name}/progress", tag = "devices", params(("name" = String, Path), ProgressParams),
    responses((status = 200, body = BatchProgress), (status = 404, body = super::ErrorBody)))]
pub async fn progress(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<ProgressParams>,
) -> ApiResult<Json<BatchProgress>> {
    let snap = st.devices.snapshot();
    let Some(batch) = snap.batches.get(&name) else {
        return Err(ApiError::NotFound(format!("there is no batch `{name}`")));
    };
    // Read only: a batch halts itself where failures are reported (`Devices::after_failure`).
    let wave = devices::wave::read(&*st.store, &st.devices, batch).await?;
    let computers = snap.computers.values().filter(|b| **b == name).count();
    let mut states: HashMap<String, usize> = HashMap::new();
    let mut with_agent = 0;
    for (state, n) in wave.states.iter().cloned() {
        with_agent += n as usize;
        states.insert(state, n as usize);
    }
    // A computer re-enrolled from a new device has a replaced agent besides its live one: only
    // the live ones (one per host name) say which computers have an agent.
    let live = with_agent.saturating_sub(states.get("replaced").copied().unwrap_or(0));
    let pending = computers.saturating_sub(live);
    if pending > 0 {
        states.insert("no agent yet".into(), pending);
    }
    super::text_param("state", &p.state)?;
    let mut q = AgentQuery {
        batch: Some(name.clone()),
        state: p.state.filter(|s| !s.is_empty()),
        offset: super::offset_param("offset", p.offset)?,
        limit: p.limit.unwrap_or(200).clamp(1, 10_000),
        ..Default::default()
    };
    agent_sorting(
        &mut q,
        p.sort.as_deref(),
        p.order.as_deref(),
        p.after.as_deref(),
    )?;
    let no_agent = if pending > 0 {
        without_agent(
            &st,
            &snap.computers_of(&name),
            pending.min(q.limit as usize),
        )
        .await?
    } else {
        Vec::new()
    };
    let agents = agent_views(&st, &q).await?;
    // The canary's computers as they were added.
    let mut view = wave.view();
    view.canary = view.canary.iter().map(|k| snap.name_of(k)).collect();
    Ok(Json(BatchProgress {
        batch: name,
        computers,
        wave: view,
        states,
        agents_next: agents_next(&q, &agents),
        agents,
        no_agent,
        available_from: batch.available_at().ok().flatten(),
        enforced_after: batch.enforced_at().ok(),
        time_zone: batch.time_zone.clone(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ComputersExportParams {
    /// Only computers in this state, as the dashboard filters them: an agent's state, or
    /// `no agent yet`.
    pub state: Option<String>,
    /// As `GET /batches/{name}/progress`: the agents' order (`id`, `hostname`, `state` or
    /// `last_contact`); the computers without an agent follow, by name.
    pub sort: Option<String>,
    /// `asc` (the default) or `desc`.
    pub order: Option<String>,
}

/// Agents read per keyset page by the batch computers export (each page's claims are checked
/// as the dashboard's are).
const COMPUTERS_EXPORT_PAGE: i64 = 500;

/// The state of a batch's computer that no agent has enrolled from, in the seed's words (the
/// dashboard's filter and count of them).
const NO_AGENT_YET: &str = "no agent yet";

#[utoipa::path(get, path = "/batches/{name}/computers/export", tag = "devices", params(("name" = String, Path), ComputersExportParams),
    responses((status = 200, description = "every computer of the batch the `state` filter finds, as CSV in the dashboard's order: its agents as `sort`/`order` ask (read by keyset pages of 500), then the computers no agent has enrolled from yet (`no agent yet`), by name as they were added; with the batch's times in its zone; cells that would read as a spreadsheet formula start with `'`",
        content((String = "text/csv")),
        headers(("X-Total-Count" = i64, description = "rows written: agents and computers without one"))),
        (status = 400, body = super::ErrorBody, description = "an unknown `sort` or `order`"),
        (status = 404, body = super::ErrorBody, description = "no such batch")))]
pub async fn computers_export(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<ComputersExportParams>,
) -> ApiResult<axum::response::Response> {
    let snap = st.devices.snapshot();
    let Some(batch) = snap.batches.get(&name) else {
        return Err(ApiError::NotFound(format!("there is no batch `{name}`")));
    };
    let state = super::text_param("state", &p.state)?.filter(|s| !s.is_empty());
    let mut q = AgentQuery {
        batch: Some(name.clone()),
        state: state.map(str::to_string),
        limit: COMPUTERS_EXPORT_PAGE,
        ..Default::default()
    };
    agent_sorting(&mut q, p.sort.as_deref(), p.order.as_deref(), None)?;
    let times = [
        batch
            .available_from
            .as_deref()
            .map(|a| local_shown(a, &batch.time_zone))
            .unwrap_or_default(),
        local_shown(&batch.enforced_after, &batch.time_zone),
    ];
    let row = |computer: String, agent: Option<&AgentView>| {
        let mut r = vec![computer];
        match agent {
            Some(v) => r.extend([
                v.agent.hostname.clone(),
                v.agent.id.to_string(),
                v.agent.device_id.clone(),
                v.agent.state.clone(),
                v.last_step.clone().unwrap_or_default(),
                v.progress.map(|n| n.to_string()).unwrap_or_default(),
                v.agent.last_contact.to_string(),
                v.silent.to_string(),
                v.mismatch.clone().unwrap_or_default(),
            ]),
            None => r.extend(
                [
                    "",
                    "",
                    "",
                    NO_AGENT_YET,
                    "install the agent",
                    "",
                    "",
                    "",
                    "",
                ]
                .map(str::to_string),
            ),
        }
        r.push(name.clone());
        r.extend(times.iter().cloned());
        r
    };
    let mut rows = Vec::new();
    let mut total = 0;
    if state != Some(NO_AGENT_YET) {
        total += st.store.count_agents(&q).await?;
        loop {
            let page = agent_views(&st, &q).await?;
            for v in &page {
                rows.push(row(
                    snap.name_of(&ferry_core::host::host_key(&v.agent.hostname)),
                    Some(v),
                ));
            }
            match page.last() {
                Some(last) if page.len() as i64 == q.limit => {
                    q.after_value = q.sort.value_of(&last.agent);
                    q.after = Some(last.agent.id);
                }
                _ => break,
            }
        }
    }
    if state.is_none_or(|s| s == NO_AGENT_YET) {
        let pending = without_agent(&st, &snap.computers_of(&name), usize::MAX).await?;
        total += pending.len() as i64;
        rows.extend(pending.into_iter().map(|c| row(c, None)));
    }
    super::csv_response(
        "computers.csv",
        total,
        &[
            "computer",
            "hostname",
            "agent_id",
            "device_id",
            "state",
            "step",
            "progress",
            "last_contact_ms",
            "silent",
            "claims_differ",
            "batch",
            "available_from",
            "enforced_after",
        ],
        rows.into_iter(),
    )
}

/// The first `want` of `computers` (as added, in order) that no live agent has enrolled from:
/// read a chunk at a time through the host-name index, so that a batch of 10,000 whose agents
/// all enrolled but a few costs a few look-ups, not a listing of its agents.
async fn without_agent(st: &AppState, computers: &[String], want: usize) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    for chunk in computers.chunks(256) {
        let keys: Vec<String> = chunk
            .iter()
            .map(|c| ferry_core::host::host_key(c))
            .collect();
        let live: HashSet<String> = st.store.live_hostnames(&keys).await?.into_iter().collect();
        out.extend(
            chunk
                .iter()
                .zip(&keys)
                .filter(|(_, k)| !live.contains(*k))
                .map(|(c, _)| c.clone()),
        );
        if out.len() >= want {
            out.truncate(want);
            break;
        }
    }
    Ok(out)
}

#[utoipa::path(post, path = "/batches/{name}/resume", tag = "devices", params(("name" = String, Path)),
    responses((status = 200, body = WaveState, description = "resumed: devices start again; the failures so far are accepted"),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody, description = "the batch is not halted, or its wave changed meanwhile")))]
pub async fn resume_batch(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WaveState>> {
    let snap = st.devices.snapshot();
    let Some(batch) = snap.batches.get(&name) else {
        return Err(ApiError::NotFound(format!("there is no batch `{name}`")));
    };
    match devices::wave::resume(&*st.store, &st.devices, batch, &op, now_ms()).await {
        Ok(Some(w)) => Ok(Json(w)),
        Ok(None) => Err(ApiError::Conflict(format!("batch `{name}` is not halted"))),
        Err(devices::wave::ResumeError::Store(e)) => Err(e.into()),
        Err(e @ devices::wave::ResumeError::Changed) => Err(ApiError::Conflict(e.to_string())),
    }
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/psks", get(list_psks).post(create_psk))
        .route("/psks/{name}/retire", post(retire_psk))
        .route("/enrollment-requests", get(enrollment_requests))
        .route(
            "/enrollment-requests/{id}/approve",
            post(approve_enrollment),
        )
        .route("/enrollment-requests/{id}/refuse", post(refuse_enrollment))
        .route("/agent-endpoint", get(agent_endpoint))
        .route("/agents", get(agents))
        .route("/agents/export", get(agents_export))
        .route("/agents/{id}", get(agent))
        .route("/agents/{id}/runs/{run}/log", get(agent_log))
        .route("/reports/failed-communications", get(failed))
        .route("/reports/failed-communications/export", get(failed_export))
        .route("/runbooks", get(runbooks))
        .route(
            "/runbooks/{name}",
            axum::routing::put(put_runbook).delete(delete_runbook),
        )
        .route("/batches", get(batches))
        .route(
            "/batches/{name}",
            axum::routing::put(put_batch).delete(delete_batch),
        )
        .route("/batches/{name}/computers", post(computers))
        .route("/batches/{name}/computers/export", get(computers_export))
        .route("/batches/{name}/resume", post(resume_batch))
        .route("/batches/{name}/whatif", get(whatif))
        .route("/batches/{name}/progress", get(progress))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_batch_time_is_shown_in_the_one_format() {
        assert_eq!(
            super::local_shown("2030-01-01T18:00", "UTC"),
            "2030-01-01 18:00:00 UTC"
        );
        assert_eq!(
            super::local_shown("2031-03-01T18:00:30", "Europe/London"),
            "2031-03-01 18:00:30 Europe/London"
        );
    }
}

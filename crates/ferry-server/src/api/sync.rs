//! Sync profiles, cycles, the What-If and its approval.

use super::{ApiError, ApiResult, bad_param};
use crate::auth::AdminAuth;
use crate::engine::Trigger;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use ferry_core::ObjectKind;
use ferry_core::plan::Status;
pub use ferry_core::wire::{ApproveBody, ProfileInfo, Started, WhatIf};
use ferry_store::{Approval, CycleInfo, DecisionQuery, DecisionSort, now_ms};
use serde::Deserialize;
use std::time::Duration;

#[utoipa::path(get, path = "/profiles", tag = "sync", responses((status = 200, body = Vec<ProfileInfo>)))]
pub async fn profiles(
    _: AdminAuth,
    State(st): State<AppState>,
) -> ApiResult<Json<Vec<ProfileInfo>>> {
    let mut out = Vec::new();
    let settings = st.settings.get();
    for p in &settings.config.profiles {
        let plan = st.store.plan(&p.name).await?;
        let approval = st.store.approval(&p.name).await?;
        out.push(ProfileInfo {
            name: p.name.clone(),
            source: p.source.clone(),
            target: p.target.clone(),
            mode: p.mode.as_str().into(),
            object_types: p.object_types.clone(),
            schedule: p.schedule.map(|s| s.to_string()),
            enabled: p.enabled,
            rules: p.effective_rules().iter().map(|r| r.describe()).collect(),
            last_cycle: st.store.cycles(Some(&p.name), 1).await?.into_iter().next(),
            awaiting_approval: plan.as_ref().is_some_and(|pl| {
                pl.counts.creates + pl.counts.updates > 0
                    && approval.as_ref().is_none_or(|a| a.plan_hash != pl.hash)
            }),
            origin: if settings.console_profiles.contains(&p.name) {
                "console".into()
            } else {
                "file".into()
            },
            settings: serde_json::to_value(p).unwrap_or_default(),
        });
    }
    Ok(Json(out))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct RunParams {
    /// Wait for the cycle to finish (up to `timeout` seconds, default 600, at most 86400) before
    /// answering.
    #[serde(default)]
    pub wait: bool,
    pub timeout: Option<u64>,
}

#[utoipa::path(post, path = "/profiles/{name}/run", tag = "sync", params(("name" = String, Path), RunParams),
    responses((status = 202, body = Started, description = "Import → Sync → (Export if the current What-If is approved)"), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody, description = "a cycle of the profile is running")))]
pub async fn run(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RunParams>,
) -> ApiResult<(StatusCode, Json<Started>)> {
    let id = st.engine.start(&name, Trigger::Manual).await?;
    crate::audit::act(&st, &op, None, "sync.run", &name, format!("cycle {id}")).await?;
    let cycle = if q.wait {
        st.engine
            .wait(id, Duration::from_secs(q.timeout.unwrap_or(600)))
            .await?
    } else {
        None
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            cycle_id: id,
            cycle,
        }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct WhatIfParams {
    /// Only decisions of this status: matched, unmatched, ambiguous, conflict, refused, excluded,
    /// error.
    pub status: Option<String>,
    /// Only decisions of this kind: user, group, device.
    pub kind: Option<String>,
    /// Case-insensitive substring of a name, UPN, mail or SID.
    pub q: Option<String>,
    /// Decisions to skip (old paging, at most 10000; prefer `after`).
    #[serde(default)]
    pub offset: i64,
    /// The `decisions_next` of the previous page: the page after it (keyset paging).
    pub after: Option<String>,
    /// Decisions per page (default 100, at most 10000).
    pub limit: Option<i64>,
    /// `kind` (the default: kind, then source id), `status`, or — with `status` given —
    /// `source_name`, `target_name` (code point order, case-sensitive; no target first) or
    /// `rule` (the rule's position in the plan, none first); ties in kind and source id order.
    pub sort: Option<String>,
    /// `asc` (the default) or `desc`.
    pub order: Option<String>,
    /// Writes to skip (old paging, an `OFFSET`, at most 10000): prefer `writes_after`.
    #[serde(default)]
    pub writes_offset: i64,
    /// The `writes_next` of the previous page: the writes after it (keyset paging).
    pub writes_after: Option<i64>,
    /// Writes per page (default 100, at most 10000).
    pub writes_limit: Option<i64>,
    /// With `q`: count the matching decisions only up to this many (as `GET /translation`'s
    /// `total_upto`; `decisions_total_exact` false when more match).
    pub total_upto: Option<i64>,
}

fn parse_status(s: &Option<String>) -> ApiResult<Option<Status>> {
    s.as_deref()
        .map(|v| {
            Status::parse(v).ok_or_else(|| {
                bad_param(
                    "status",
                    v,
                    "matched, unmatched, ambiguous, conflict, refused, excluded or error",
                )
            })
        })
        .transpose()
}

fn parse_kind(s: &Option<String>) -> ApiResult<Option<ObjectKind>> {
    s.as_deref()
        .map(|v| ObjectKind::parse(v).ok_or_else(|| bad_param("kind", v, "user, group or device")))
        .transpose()
}

/// The columns a What-If's decisions sort on.
const WHATIF_SORTS: &[(&str, DecisionSort)] = &[
    ("kind", DecisionSort::Kind),
    ("status", DecisionSort::Status),
    ("source_name", DecisionSort::SourceName),
    ("target_name", DecisionSort::TargetName),
    ("rule", DecisionSort::Rule),
];

impl WhatIfParams {
    /// The decisions of profile `name` these parameters ask for (the list's page, or the
    /// export's first): a bad filter, sort or cursor is a 400 naming its parameter.
    fn query(&self, name: &str) -> ApiResult<DecisionQuery> {
        let (sort, direction) =
            super::translation::sorting(self.sort.as_deref(), self.order.as_deref(), WHATIF_SORTS)?;
        let status = parse_status(&self.status)?;
        if status.is_none() && !matches!(sort, DecisionSort::Kind | DecisionSort::Status) {
            // Migrations 0023 and 0027 index names and rules within a status: across all of a
            // million decisions the order would be a sort of them all on every page.
            return Err(bad_param(
                "sort",
                sort.name(),
                "kind or status without a `status` filter (names and rules sort within one status)",
            ));
        }
        Ok(DecisionQuery {
            profile: Some(name.to_string()),
            status,
            kind: parse_kind(&self.kind)?,
            search: super::text_param("q", &self.q)?
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            offset: super::offset_param("offset", self.offset)?,
            limit: page(self.limit),
            after: super::translation::after(self.after.as_deref(), sort)?,
            sort,
            direction,
        })
    }
}

/// The last What-If of the configured profile `name`: 404 when it is not configured, or when no
/// cycle has run yet (`hint` ends that message).
async fn last_plan(st: &AppState, name: &str, hint: &str) -> ApiResult<ferry_store::PlanInfo> {
    st.settings
        .get()
        .config
        .profile(name)
        .ok_or_else(|| ApiError::NotFound(format!("sync profile `{name}` is not configured")))?;
    st.store.plan(name).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no What-If for `{name}` yet: run a cycle first{hint}"
        ))
    })
}

fn page(limit: Option<i64>) -> i64 {
    limit.unwrap_or(100).clamp(1, 10_000)
}

#[utoipa::path(get, path = "/profiles/{name}/whatif", tag = "sync", params(("name" = String, Path), WhatIfParams),
    responses((status = 200, body = WhatIf), (status = 404, body = super::ErrorBody, description = "unknown profile, or no cycle has run yet")))]
pub async fn whatif(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<WhatIfParams>,
) -> ApiResult<Json<WhatIf>> {
    let plan = last_plan(&st, &name, &format!(" (ferry sync run {name})")).await?;
    let approval = st.store.approval(&name).await?;
    let dq = WhatIfParams::query(&q, &name)?;
    let sort = dq.sort;
    let upto = super::translation::total_upto(q.total_upto)?;
    let (decisions_total, decisions_total_exact, mut decisions) =
        super::translation::page(&st, &dq, std::slice::from_ref(&plan), upto).await?;
    for d in &mut decisions {
        d.rule_name = rule_of(&plan, d);
    }
    let candidates = match st.settings.get().config.profile(&name) {
        Some(cfg) => super::report::candidates(&st, cfg, &plan.rules, &decisions).await?,
        None => Vec::new(),
    };
    let decisions_next = super::translation::next_token(&decisions, dq.limit, sort);
    let writes_total = plan.counts.creates + plan.counts.updates;
    let writes_limit = page(q.writes_limit);
    let writes_offset = super::offset_param("writes_offset", q.writes_offset)?;
    let (writes, writes_next) = if writes_offset > 0 && q.writes_after.is_none() {
        let w = st
            .store
            .plan_writes(&name, writes_offset, writes_limit)
            .await?;
        (w, None)
    } else {
        let w = st
            .store
            .plan_writes_after(&name, q.writes_after, writes_limit)
            .await?;
        let next = (w.len() as i64 == writes_limit)
            .then(|| w.last().map(|(seq, _)| *seq))
            .flatten();
        (w.into_iter().map(|(_, w)| w).collect(), next)
    };
    let approved = writes_total > 0 && approval.as_ref().is_some_and(|a| a.plan_hash == plan.hash);
    Ok(Json(WhatIf {
        needs_approval: writes_total > 0 && !approved,
        approved,
        decisions_total,
        decisions_total_exact,
        decisions,
        decisions_next,
        writes,
        writes_next,
        writes_total,
        plan,
        approval,
        candidates,
    }))
}

/// The rule that decided `d`, described as the plan lists its rules.
fn rule_of(plan: &ferry_store::PlanInfo, d: &ferry_store::DecisionRow) -> Option<String> {
    d.rule.and_then(|r| plan.rules.get(r as usize).cloned())
}

/// Decisions read per keyset page by the What-If export, and writes per page of the plan's.
const WHATIF_EXPORT_PAGE: i64 = 1_000;

/// The most decisions one export writes (a million-object plan is the size the issue measures).
const WHATIF_EXPORT_MAX: usize = 1_000_000;

/// The What-If export's columns: the decision, then the write it authorises (`write_detail`: the
/// write as `GET /profiles/{name}/whatif`'s `writes` gives it).
const WHATIF_COLUMNS: &[&str] = &[
    "kind",
    "status",
    "source_id",
    "source_name",
    "source_upn",
    "source_mail",
    "source_sid",
    "target_id",
    "target_name",
    "target_upn",
    "target_mail",
    "target_sid",
    "rule",
    "candidates",
    "write",
    "write_detail",
];

#[utoipa::path(get, path = "/profiles/{name}/whatif/export", tag = "sync", params(("name" = String, Path), WhatIfParams),
    responses((status = 200, description = "every decision the filters (`status`, `kind`, `q`) find, as CSV in the order asked (`sort`, `order`), read by keyset pages of 1,000 (`offset`, `after`, `limit` and the `writes_` parameters ignored), each with the write it authorises if any; cells that would read as a spreadsheet formula start with `'`",
        content((String = "text/csv")),
        headers(("X-Total-Count" = i64, description = "decisions matching"))),
        (status = 400, body = super::ErrorBody, description = "an unknown `status`, `kind`, `sort` or `order`"),
        (status = 404, body = super::ErrorBody, description = "unknown profile, or no cycle has run yet")))]
pub async fn whatif_export(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<WhatIfParams>,
) -> ApiResult<axum::response::Response> {
    let plan = last_plan(&st, &name, &format!(" (ferry sync run {name})")).await?;
    let mut dq = q.query(&name)?;
    // As the list counts: the plan's counts unless a term is searched.
    let total = if dq.search.is_some() {
        st.store.count_decisions(&dq).await?
    } else {
        super::translation::counted(&plan, &dq)
    };
    (dq.limit, dq.offset, dq.after) = (WHATIF_EXPORT_PAGE, 0, None);
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    // Each row's decision, by kind and source id: the writes are joined to them below.
    let mut row_of: std::collections::HashMap<(ObjectKind, String), usize> =
        std::collections::HashMap::new();
    loop {
        let page = st.store.decisions(&dq).await?;
        for d in &page {
            row_of.insert((d.kind, d.source_id.clone()), rows.len());
            rows.push(vec![
                d.kind.as_str().to_string(),
                d.status.as_str().to_string(),
                d.source_id.clone(),
                d.source_name.clone(),
                o(&d.source_upn),
                o(&d.source_mail),
                o(&d.source_sid),
                o(&d.target_id),
                o(&d.target_name),
                o(&d.target_upn),
                o(&d.target_mail),
                o(&d.target_sid),
                rule_of(&plan, d).unwrap_or_default(),
                d.candidates.join("; "),
                String::new(),
                String::new(),
            ]);
        }
        match page.last() {
            Some(last) if page.len() as i64 == dq.limit && rows.len() < WHATIF_EXPORT_MAX => {
                dq.after = Some(ferry_store::DecisionCursor::of(last, dq.sort));
            }
            _ => break,
        }
    }
    // The plan's writes in keyset pages of its own order, each joined to its decision's row.
    if plan.counts.creates + plan.counts.updates > 0 && !rows.is_empty() {
        let mut after = None;
        loop {
            let page = st
                .store
                .plan_writes_after(&name, after, WHATIF_EXPORT_PAGE)
                .await?;
            for (_, w) in &page {
                if let Some(&i) = row_of.get(&(w.kind(), w.source_id().to_string())) {
                    let n = rows[i].len();
                    rows[i][n - 2] = w.op().to_string();
                    rows[i][n - 1] = serde_json::to_string(w)
                        .map_err(|e| ApiError::Internal(format!("a write of `{name}`: {e}")))?;
                }
            }
            match page.last() {
                Some((seq, _)) if page.len() as i64 == WHATIF_EXPORT_PAGE => after = Some(*seq),
                _ => break,
            }
        }
    }
    super::csv_response("whatif.csv", total, WHATIF_COLUMNS, rows.into_iter())
}

/// The shortest prefix of a plan hash an approval may name (the CLI and console show 12).
const MIN_HASH_PREFIX: usize = 12;

#[utoipa::path(post, path = "/profiles/{name}/approve", tag = "sync", params(("name" = String, Path)), request_body(content = ApproveBody, description = "optional"),
    responses((status = 200, body = Approval), (status = 400, body = super::ErrorBody, description = "`plan_hash` shorter than 12 characters"), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody, description = "the What-If changed since it was reviewed")))]
pub async fn approve(
    auth: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Option<super::Object<ApproveBody>>,
) -> ApiResult<Json<Approval>> {
    let plan = last_plan(&st, &name, "").await?;
    if let Some(super::Object(ApproveBody { plan_hash: Some(h) })) = &body {
        // A hash names the plan reviewed; a short prefix (the empty one above all) would approve
        // whatever plan is in force now.
        if h.trim().chars().count() < MIN_HASH_PREFIX {
            return Err(ApiError::BadRequest(format!(
                "plan_hash: give at least {MIN_HASH_PREFIX} characters of the What-If's hash (the plan you reviewed), not `{}`",
                h.trim()
            )));
        }
    }
    if let Some(super::Object(ApproveBody { plan_hash: Some(h) })) = &body
        && !plan
            .hash
            .starts_with(h.trim().to_ascii_lowercase().as_str())
    {
        return Err(ApiError::Conflict(format!(
            "the What-If changed since you reviewed it (now {}); review it again",
            &plan.hash[..12]
        )));
    }
    if plan.fingerprint
        != st.settings.get().config.profile_fingerprint(
            st.settings
                .get()
                .config
                .profile(&name)
                .ok_or_else(|| ApiError::NotFound(name.clone()))?,
        )
    {
        return Err(ApiError::Conflict("the configuration changed since this What-If was computed; run a cycle to compute a new one".into()));
    }
    let now = now_ms();
    st.store.approve(&name, &plan.hash, &auth.name, now).await?;
    st.store
        .append_logs(
            Some(plan.cycle_id),
            Some(&name),
            &[ferry_core::plan::LogEntry::info(
                "approval",
                format!("What-If {} approved by {}", &plan.hash[..12], auth.name),
            )],
            now,
        )
        .await?;
    crate::audit::act(
        &st,
        &auth,
        None,
        "sync.approve",
        &name,
        format!(
            "What-If {} of cycle {}: {} creates, {} updates",
            &plan.hash[..12],
            plan.cycle_id,
            plan.counts.creates,
            plan.counts.updates
        ),
    )
    .await?;
    Ok(Json(Approval {
        profile: name,
        plan_hash: plan.hash,
        approved_by: auth.name,
        approved_at: now,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CyclesParams {
    pub profile: Option<String>,
    /// Default 20, at most 1000.
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/cycles", tag = "sync", params(CyclesParams), responses((status = 200, body = Vec<CycleInfo>)))]
pub async fn cycles(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(q): Query<CyclesParams>,
) -> ApiResult<Json<Vec<CycleInfo>>> {
    Ok(Json(
        st.store
            .cycles(q.profile.as_deref(), q.limit.unwrap_or(20).clamp(1, 1000))
            .await?,
    ))
}

#[utoipa::path(get, path = "/cycles/{id}", tag = "sync", params(("id" = i64, Path)), responses((status = 200, body = CycleInfo), (status = 404, body = super::ErrorBody)))]
pub async fn cycle(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<CycleInfo>> {
    st.store
        .cycle(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no cycle {id}")))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/profiles", get(profiles))
        .route("/profiles/{name}/run", post(run))
        .route("/profiles/{name}/whatif", get(whatif))
        .route("/profiles/{name}/whatif/export", get(whatif_export))
        .route("/profiles/{name}/approve", post(approve))
        .route("/cycles", get(cycles))
        .route("/cycles/{id}", get(cycle))
}

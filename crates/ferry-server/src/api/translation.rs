//! The translation table: browse and export.

use super::{ApiResult, bad_param};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferry_core::ObjectKind;
use ferry_core::export::{ExportFormat, TranslationEntry, render};
use ferry_core::plan::Status;
pub use ferry_core::wire::TranslationPage;
use ferry_store::{DecisionQuery, DecisionRow, DecisionSort, Direction, PlanInfo};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    pub profile: Option<String>,
    /// user, group or device.
    pub kind: Option<String>,
    /// Case-insensitive substring of a name, UPN, mail or SID on either side (terms of three
    /// characters or more use the search index).
    pub q: Option<String>,
    /// Rows to skip (old paging, at most 10000: an `OFFSET` reads every row it skips): prefer
    /// `after`.
    #[serde(default)]
    pub offset: i64,
    /// The `next` of the previous page: the page after it (keyset paging).
    pub after: Option<String>,
    /// Default 100, at most 10000.
    pub limit: Option<i64>,
    /// The column sorted on within each profile (profiles in name order): `kind` (the default:
    /// kind, then source id), `profile` (the same order), `source_name`, `target_name`,
    /// `source_sid`, `target_sid` (code point order, case-sensitive) or `rule` (the rule's
    /// position in the plan); ties in kind and source id order.
    pub sort: Option<String>,
    /// `asc` (the default) or `desc`: the whole order reversed, profiles too.
    pub order: Option<String>,
    /// With `q`: count the matches only up to this many (at least 1). `total` is then at most
    /// this, and `total_exact` false when more match: a common term's page without reading
    /// every match (the console asks 1,000, then the exact total on its own).
    pub total_upto: Option<i64>,
}

/// A list's `total_upto` read: at least 1.
pub fn total_upto(v: Option<i64>) -> ApiResult<Option<i64>> {
    v.map(|n| match n {
        1.. => Ok(n),
        _ => Err(bad_param(
            "total_upto",
            &n.to_string(),
            "a count of at least 1",
        )),
    })
    .transpose()
}

/// The columns the translation table sorts on. Every sort is within each profile, profiles in
/// name order: `profile` is that order itself, each profile's entries by kind and source id (the
/// same rows in the same order as `kind`).
pub const TRANSLATION_SORTS: &[(&str, DecisionSort)] = &[
    ("kind", DecisionSort::Kind),
    ("profile", DecisionSort::Kind),
    ("source_name", DecisionSort::SourceName),
    ("target_name", DecisionSort::TargetName),
    ("source_sid", DecisionSort::SourceSid),
    ("target_sid", DecisionSort::TargetSid),
    ("rule", DecisionSort::Rule),
];

/// The plans a query reads: its profile's, or every profile's (configured or not any more).
pub async fn plans(st: &AppState, q: &DecisionQuery) -> ApiResult<Vec<PlanInfo>> {
    let names = match &q.profile {
        Some(p) => vec![p.clone()],
        None => st.store.plan_profiles().await?,
    };
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.extend(st.store.plan(&n).await?);
    }
    Ok(out)
}

/// How many decisions of one plan a query (without a search term) finds: the plan's counts say
/// it, as a plan and its decisions are committed together.
pub fn counted(plan: &PlanInfo, q: &DecisionQuery) -> i64 {
    let mut n = 0;
    for (k, c) in &plan.counts.by_kind {
        if q.kind.is_some_and(|want| want != *k) {
            continue;
        }
        n += match q.status {
            Some(Status::Matched) => c.matched,
            Some(Status::Unmatched) => c.unmatched,
            Some(Status::Ambiguous) => c.ambiguous,
            Some(Status::Conflict) => c.conflict,
            Some(Status::Refused) => c.refused,
            Some(Status::Excluded) => c.excluded,
            Some(Status::Error) => c.errors,
            None => {
                c.matched
                    + c.unmatched
                    + c.ambiguous
                    + c.conflict
                    + c.refused
                    + c.excluded
                    + c.errors
            }
        };
    }
    n as i64
}

fn searching(q: &DecisionQuery) -> bool {
    q.search.as_deref().is_some_and(|s| !s.is_empty())
}

/// A page of decisions, how many the query finds in all, and whether that is exact (`upto`, with
/// a search term: counted up to that many; more match when not exact). With a search term the
/// store counts and pages, both at once. Without one the total comes from `plans` (no count over a million rows), and each
/// profile's part is read on its own — `profile = ? AND status = ?` walks the index in order — so
/// no query sorts or skips the rows of other profiles. With `q.after` (keyset paging) the pages
/// start at the cursor's profile, after its row, and no row is skipped by counting.
pub async fn page(
    st: &AppState,
    q: &DecisionQuery,
    plans: &[PlanInfo],
    upto: Option<i64>,
) -> ApiResult<(i64, bool, Vec<DecisionRow>)> {
    if searching(q) {
        // Side by side, on two connections: both read every match (the count counts them, the
        // page orders them), so the wall time is the slower of the two, not their sum
        // (PostgreSQL, a term inside a value with thousands of matches: docs/BENCHMARKS.md). The
        // count is a task of its own: SQLite's statements block the task that runs them
        // (`block_in_place`), so two futures of one task (`join!`) ran one after the other.
        let mut count = {
            let (store, q) = (std::sync::Arc::clone(&st.store), q.clone());
            // Aborted with the request (a failed page, a client gone), as the joined count was;
            // a statement already running finishes first.
            crate::AbortOnDrop(tokio::spawn(async move {
                match upto {
                    // One more than asked: "exactly `n`" and "more" differ.
                    Some(n) => {
                        let c = store.count_decisions_upto(&q, n.saturating_add(1)).await?;
                        Ok::<_, ferry_store::StoreError>((c.min(n), c <= n))
                    }
                    None => Ok((store.count_decisions(&q).await?, true)),
                }
            }))
        };
        let rows = st.store.decisions(q).await?;
        let (total, exact) = (&mut count.0)
            .await
            .map_err(|e| super::ApiError::Internal(format!("counting the matches: {e}")))??;
        return Ok((total, exact, rows));
    }
    let total = plans.iter().map(|p| counted(p, q)).sum();
    let mut offset = if q.after.is_some() {
        0
    } else {
        q.offset.max(0)
    };
    let mut need = if q.limit > 0 { q.limit } else { i64::MAX };
    let mut rows = Vec::new();
    let mut plans: Vec<&PlanInfo> = plans.iter().collect();
    plans.sort_by(|a, b| a.profile.cmp(&b.profile));
    let desc = q.direction.is_desc();
    if desc {
        plans.reverse();
    }
    for plan in plans {
        let after = match &q.after {
            Some(a) if (plan.profile < a.profile) != desc && plan.profile != a.profile => continue,
            Some(a) if plan.profile == a.profile => Some(a.clone()),
            _ => None,
        };
        let n = counted(plan, q);
        if after.is_none() && offset >= n {
            offset -= n;
            continue;
        }
        let got = st
            .store
            .decisions(&DecisionQuery {
                profile: Some(plan.profile.clone()),
                offset,
                limit: if q.limit > 0 { need } else { 0 },
                after,
                ..q.clone()
            })
            .await?;
        need -= got.len() as i64;
        rows.extend(got);
        offset = 0;
        if need <= 0 {
            break;
        }
    }
    Ok((total, true, rows))
}

/// The `after` of the page following `rows` (sorted by `sort`), when it was full.
pub fn next_token(rows: &[DecisionRow], limit: i64, sort: DecisionSort) -> Option<String> {
    if limit <= 0 || (rows.len() as i64) < limit {
        return None;
    }
    rows.last()
        .map(|r| ferry_store::DecisionCursor::of(r, sort).token())
}

/// The `after=` parameter read, for a list sorted by `sort`: a token of another sort (with a
/// sort value where the list has none, or none where it has one) is refused.
pub fn after(
    token: Option<&str>,
    sort: DecisionSort,
) -> ApiResult<Option<ferry_store::DecisionCursor>> {
    token
        .filter(|t| !t.is_empty())
        .map(|t| {
            // A value with a NUL is kept: SQLite stores one a directory's value carried, and the
            // page after such a row starts at it (the store reads it as no row on PostgreSQL,
            // which holds none).
            ferry_store::DecisionCursor::parse(t)
                .filter(|c| c.value.is_some() == (sort != DecisionSort::Kind))
                .filter(|c| {
                    // A rule's position is a number (its value would find no row).
                    sort != DecisionSort::Rule
                        || c.value.as_deref().is_some_and(|v| v.parse::<i64>().is_ok())
                })
                .ok_or_else(|| {
                    bad_param(
                        "after",
                        t,
                        "the `next` of a previous page of the same sort, as the server gave it",
                    )
                })
        })
        .transpose()
}

/// A decision list's `sort` and `order` read, of the columns `allowed`.
pub fn sorting(
    sort: Option<&str>,
    order: Option<&str>,
    allowed: &[(&str, DecisionSort)],
) -> ApiResult<(DecisionSort, Direction)> {
    Ok((
        super::sort_param(sort, allowed)?,
        super::order_param(order, Direction::Asc)?,
    ))
}

/// Translation entries of matched decisions, with their plans' rules described.
fn to_entries(rows: Vec<DecisionRow>, plans: &[PlanInfo]) -> Vec<TranslationEntry> {
    let none = Vec::new();
    rows.into_iter()
        .filter_map(|r| {
            let rules = plans
                .iter()
                .find(|p| p.profile == r.profile)
                .map_or(&none, |p| &p.rules);
            r.to_entry(rules)
        })
        .collect()
}

/// Every translation entry a query finds (exports).
pub async fn entries(st: &AppState, q: &DecisionQuery) -> ApiResult<Vec<TranslationEntry>> {
    let plans = plans(st, q).await?;
    let mut out = to_entries(st.store.decisions(q).await?, &plans);
    add_device_ids(st, &mut out).await?;
    Ok(out)
}

/// Fills in devices' `deviceId` on both sides from the stored directory objects.
async fn add_device_ids(st: &AppState, entries: &mut [TranslationEntry]) -> ApiResult<()> {
    let settings = st.settings.get();
    let mut dirs: Vec<&str> = Vec::new();
    for e in entries.iter().filter(|e| e.kind == ObjectKind::Device) {
        if let Some(p) = settings.config.profile(&e.profile) {
            for d in [&p.source, &p.target] {
                if !dirs.contains(&d.as_str()) {
                    dirs.push(d);
                }
            }
        }
    }
    if dirs.is_empty() {
        return Ok(());
    }
    let mut ids: HashMap<(String, String), String> = HashMap::new();
    for d in &dirs {
        for o in st.store.load_objects(d).await? {
            if o.kind == ObjectKind::Device
                && let Some(v) = o.attr("deviceId")
            {
                ids.insert((d.to_string(), o.id.clone()), v.to_string());
            }
        }
    }
    for e in entries.iter_mut().filter(|e| e.kind == ObjectKind::Device) {
        if let Some(p) = settings.config.profile(&e.profile) {
            e.source_device_id = ids.get(&(p.source.clone(), e.source_id.clone())).cloned();
            e.target_device_id = ids.get(&(p.target.clone(), e.target_id.clone())).cloned();
        }
    }
    Ok(())
}

fn kind(s: &Option<String>) -> ApiResult<Option<ObjectKind>> {
    s.as_deref()
        .map(|v| ObjectKind::parse(v).ok_or_else(|| bad_param("kind", v, "user, group or device")))
        .transpose()
}

#[utoipa::path(get, path = "/translation", tag = "translation", params(ListParams), responses((status = 200, body = TranslationPage)))]
pub async fn list(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<TranslationPage>> {
    let (sort, direction) = sorting(p.sort.as_deref(), p.order.as_deref(), TRANSLATION_SORTS)?;
    let q = DecisionQuery {
        profile: super::text_param("profile", &p.profile)?.map(str::to_string),
        status: Some(Status::Matched),
        kind: kind(&p.kind)?,
        search: super::text_param("q", &p.q)?
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        offset: super::offset_param("offset", p.offset)?,
        limit: p.limit.unwrap_or(100).clamp(1, 10_000),
        after: after(p.after.as_deref(), sort)?,
        sort,
        direction,
    };
    let upto = total_upto(p.total_upto)?;
    let plans = plans(&st, &q).await?;
    let (total, total_exact, rows) = page(&st, &q, &plans, upto).await?;
    let next = next_token(&rows, q.limit, sort);
    let mut entries = to_entries(rows, &plans);
    add_device_ids(&st, &mut entries).await?;
    Ok(Json(TranslationPage {
        total,
        total_exact,
        offset: q.offset,
        entries,
        next,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportParams {
    pub profile: Option<String>,
    /// csv, json, sidmap (`{"source SID": "target SID"}`) or usermapping (`usermapping.csv`).
    pub format: String,
    pub kind: Option<String>,
    /// Only entries holding this term (as `GET /translation?q=`): the export of a filtered list.
    pub q: Option<String>,
    /// Only the users of this registered environment (its system users, by e-mail): the
    /// `usermapping.csv` of one environment move.
    pub environment: Option<String>,
    /// As `GET /translation?sort=`: the export in the list's order.
    pub sort: Option<String>,
    pub order: Option<String>,
}

#[utoipa::path(get, path = "/translation/export", tag = "translation", params(ExportParams),
    responses((status = 200, description = "the file (`csv`, `usermapping`: CSV; `json`, `sidmap`: JSON); `X-Ferry-Skipped` counts entries the format had to leave out",
            content((String = "text/csv"), (serde_json::Value = "application/json"))),
        (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such environment")))]
pub async fn export(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<ExportParams>,
) -> ApiResult<Response> {
    let format = ExportFormat::parse(&p.format)
        .ok_or_else(|| bad_param("format", &p.format, "csv, json, sidmap or usermapping"))?;
    let (sort, direction) = sorting(p.sort.as_deref(), p.order.as_deref(), TRANSLATION_SORTS)?;
    let q = DecisionQuery {
        profile: super::text_param("profile", &p.profile)?.map(str::to_string),
        status: Some(Status::Matched),
        kind: kind(&p.kind)?,
        search: super::text_param("q", &p.q)?
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        sort,
        direction,
        ..Default::default()
    };
    let mut all = entries(&st, &q).await?;
    if let Some(env) = &p.environment {
        let envs = st
            .store
            .documents(ferry_store::DocKind::Environment)
            .await?;
        let Some((_, body)) = envs.iter().find(|(name, _)| name == env) else {
            return Err(super::ApiError::NotFound(format!(
                "there is no environment `{env}`"
            )));
        };
        let e: ferry_core::envmove::Environment =
            serde_json::from_str(body).map_err(|e| super::ApiError::Internal(e.to_string()))?;
        let users: std::collections::HashSet<String> = e
            .system_users
            .iter()
            .map(|u| u.email.to_ascii_lowercase())
            .collect();
        all.retain(|t| {
            [&t.source_upn, &t.source_mail]
                .into_iter()
                .flatten()
                .any(|v| users.contains(&v.to_ascii_lowercase()))
        });
    }
    let out = render(&all, format);
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", format.file_name()),
            ),
            (
                header::HeaderName::from_static("x-ferry-written"),
                out.written.to_string(),
            ),
            (
                header::HeaderName::from_static("x-ferry-skipped"),
                out.skipped.to_string(),
            ),
        ],
        out.body,
    )
        .into_response())
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/translation", get(list))
        .route("/translation/export", get(export))
}

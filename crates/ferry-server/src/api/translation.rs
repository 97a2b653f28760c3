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
use ferry_store::{DecisionQuery, DecisionRow};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    pub profile: Option<String>,
    /// user, group or device.
    pub kind: Option<String>,
    /// Case-insensitive substring of a name, UPN, mail, SID or id on either side.
    pub q: Option<String>,
    #[serde(default)]
    pub offset: i64,
    /// Default 100, at most 10000.
    pub limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TranslationPage {
    pub total: i64,
    pub offset: i64,
    pub entries: Vec<TranslationEntry>,
}

/// How many decisions a query finds. Without a search term the plans' counts say it (a plan and
/// its decisions are committed together), so a page over a million entries costs no count scan;
/// a search counts in the store.
pub async fn count(st: &AppState, q: &DecisionQuery) -> ApiResult<i64> {
    if q.search.as_deref().is_some_and(|s| !s.is_empty()) {
        return Ok(st.store.count_decisions(q).await?);
    }
    let profiles = match &q.profile {
        Some(p) => vec![p.clone()],
        None => st.store.plan_profiles().await?,
    };
    let mut n = 0;
    for p in profiles {
        let Some(plan) = st.store.plan(&p).await? else {
            continue;
        };
        for (k, c) in &plan.counts.by_kind {
            if q.kind.is_some_and(|want| want != *k) {
                continue;
            }
            n += match q.status {
                Some(Status::Matched) => c.matched,
                Some(Status::Unmatched) => c.unmatched,
                Some(Status::Ambiguous) => c.ambiguous,
                Some(Status::Conflict) => c.conflict,
                None => c.matched + c.unmatched + c.ambiguous + c.conflict,
            };
        }
    }
    Ok(n as i64)
}

/// A page of decisions. Without a search term and across profiles, each profile's part is read
/// on its own — `profile = ? AND status = ?` walks the index in order — and the page is found
/// from the plans' counts, so no query sorts or skips a million rows of other profiles.
pub async fn page(st: &AppState, q: &DecisionQuery) -> ApiResult<Vec<DecisionRow>> {
    if q.profile.is_some() || q.search.as_deref().is_some_and(|s| !s.is_empty()) || q.limit <= 0 {
        return Ok(st.store.decisions(q).await?);
    }
    let mut offset = q.offset.max(0);
    let mut need = q.limit;
    let mut rows = Vec::new();
    for p in st.store.plan_profiles().await? {
        let one = DecisionQuery {
            profile: Some(p),
            offset: 0,
            limit: 0,
            ..q.clone()
        };
        let n = count(st, &one).await?;
        if offset >= n {
            offset -= n;
            continue;
        }
        let got = st
            .store
            .decisions(&DecisionQuery {
                offset,
                limit: need,
                ..one
            })
            .await?;
        need -= got.len() as i64;
        rows.extend(got);
        offset = 0;
        if need <= 0 {
            break;
        }
    }
    Ok(rows)
}

/// Translation entries of matched decisions, with their rules described.
pub async fn entries(st: &AppState, q: &DecisionQuery) -> ApiResult<Vec<TranslationEntry>> {
    let rows = st.store.decisions(q).await?;
    to_entries(st, rows).await
}

async fn to_entries(st: &AppState, rows: Vec<DecisionRow>) -> ApiResult<Vec<TranslationEntry>> {
    let mut rules: HashMap<String, Vec<String>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if !rules.contains_key(&r.profile) {
            let p = st
                .store
                .plan(&r.profile)
                .await?
                .map(|p| p.rules)
                .unwrap_or_default();
            rules.insert(r.profile.clone(), p);
        }
        if let Some(e) = r.to_entry(&rules[&r.profile]) {
            out.push(e);
        }
    }
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
        if let Some(p) = st.settings.get().config.profile(&e.profile) {
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
    let q = DecisionQuery {
        profile: p.profile,
        status: Some(Status::Matched),
        kind: kind(&p.kind)?,
        search: p.q,
        offset: p.offset.max(0),
        limit: p.limit.unwrap_or(100).clamp(1, 10_000),
    };
    let total = count(&st, &q).await?;
    Ok(Json(TranslationPage {
        total,
        offset: q.offset,
        entries: to_entries(&st, page(&st, &q).await?).await?,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportParams {
    pub profile: Option<String>,
    /// csv, json, sidmap (`{"source SID": "target SID"}`) or usermapping (`usermapping.csv`).
    pub format: String,
    pub kind: Option<String>,
    /// Only the users of this registered environment (its system users, by e-mail): the
    /// `usermapping.csv` of one environment move.
    pub environment: Option<String>,
}

#[utoipa::path(get, path = "/translation/export", tag = "translation", params(ExportParams),
    responses((status = 200, description = "the file; `X-Ferry-Skipped` counts entries the format had to leave out", content_type = "text/csv"), (status = 400, body = super::ErrorBody)))]
pub async fn export(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<ExportParams>,
) -> ApiResult<Response> {
    let format = ExportFormat::parse(&p.format)
        .ok_or_else(|| bad_param("format", &p.format, "csv, json, sidmap or usermapping"))?;
    let q = DecisionQuery {
        profile: p.profile,
        status: Some(Status::Matched),
        kind: kind(&p.kind)?,
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

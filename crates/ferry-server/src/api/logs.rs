//! Message logs.

use super::{ApiResult, bad_param};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferry_core::plan::Level;
use ferry_store::{LogQuery, StoredLog};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogParams {
    pub profile: Option<String>,
    pub cycle: Option<i64>,
    /// Minimum level: info, warning or error.
    pub level: Option<String>,
    /// Only entries about this object id.
    pub object: Option<String>,
    /// Only entries older than this id (paging back).
    pub before: Option<i64>,
    /// Default 200, at most 10000.
    pub limit: Option<i64>,
}

impl LogParams {
    /// The store's query; `limit` by default, at most `max`.
    fn query(self, limit: i64, max: i64) -> ApiResult<LogQuery> {
        let min_level = self
            .level
            .as_deref()
            .map(|l| Level::parse(l).ok_or_else(|| bad_param("level", l, "info, warning or error")))
            .transpose()?;
        Ok(LogQuery {
            profile: self.profile,
            cycle_id: self.cycle,
            min_level,
            object_id: self.object,
            before_id: self.before,
            limit: self.limit.unwrap_or(limit).clamp(1, max),
        })
    }
}

#[utoipa::path(get, path = "/logs", tag = "logs", params(LogParams), responses((status = 200, body = Vec<StoredLog>,
    description = "newest first; the next page is `before=` the last id",
    headers(("X-Total-Count" = i64, description = "how many entries the filters find in all, on every page")))))]
pub async fn list(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<LogParams>,
) -> ApiResult<([(&'static str, String); 1], Json<Vec<StoredLog>>)> {
    let q = p.query(200, 10_000)?;
    let total = st.store.count_logs(&q).await?;
    Ok((
        [("x-total-count", total.to_string())],
        Json(st.store.logs(&q).await?),
    ))
}

/// The most lines one export holds (newest first); `before=` exports the older ones.
const EXPORT_MAX: i64 = 1_000_000;

#[utoipa::path(get, path = "/logs/export", tag = "logs", params(LogParams),
    responses((status = 200, description = "the filtered entries as CSV, newest first (at most 1,000,000; `limit` fewer)",
        content((String = "text/csv")),
        headers(("X-Total-Count" = i64, description = "how many entries the filters find in all"))),
        (status = 400, body = super::ErrorBody)))]
pub async fn export(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<LogParams>,
) -> ApiResult<Response> {
    let q = p.query(EXPORT_MAX, EXPORT_MAX)?;
    let total = st.store.count_logs(&q).await?;
    let rows = st.store.logs(&q).await?;
    let mut w = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 120));
    let csv_err = |e: csv::Error| super::ApiError::Internal(format!("log export: {e}"));
    w.write_record([
        "id",
        "at_ms",
        "level",
        "profile",
        "cycle",
        "directory",
        "code",
        "object_kind",
        "object_id",
        "object_name",
        "message",
    ])
    .map_err(csv_err)?;
    let o = |s: &Option<String>| s.clone().unwrap_or_default();
    for l in &rows {
        let e = &l.entry;
        w.write_record([
            l.id.to_string(),
            l.at.to_string(),
            e.level.as_str().to_string(),
            o(&l.profile),
            l.cycle_id.map(|c| c.to_string()).unwrap_or_default(),
            o(&e.directory),
            e.code.clone(),
            e.object_kind
                .map(|k| k.as_str().to_string())
                .unwrap_or_default(),
            o(&e.object_id),
            o(&e.object_name),
            e.message.clone(),
        ])
        .map_err(csv_err)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| super::ApiError::Internal(format!("log export: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"logs.csv\"".to_string(),
            ),
            (
                header::HeaderName::from_static("x-total-count"),
                total.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/logs", get(list))
        .route("/logs/export", get(export))
}

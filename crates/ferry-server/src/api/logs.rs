//! Message logs.

use super::{ApiResult, bad_param};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use ferry_core::plan::Level;
use ferry_store::{Direction, LogQuery, StoredLog};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogParams {
    pub profile: Option<String>,
    pub cycle: Option<i64>,
    /// Minimum level: info, warning or error.
    pub level: Option<String>,
    /// Only entries about this object id.
    pub object: Option<String>,
    /// Only entries older than this id (paging back, newest first).
    pub before: Option<i64>,
    /// Default 200, at most 10000.
    pub limit: Option<i64>,
    /// `at`, the only column: entries are in the order they were written (by id).
    pub sort: Option<String>,
    /// `desc` (the default: newest first) or `asc`.
    pub order: Option<String>,
    /// The `X-Next-After` of the previous page: the page after it in the order asked.
    pub after: Option<String>,
}

impl LogParams {
    /// The store's query; `limit` by default, at most `max`.
    fn query(self, limit: i64, max: i64) -> ApiResult<LogQuery> {
        let min_level = self
            .level
            .as_deref()
            .map(|l| Level::parse(l).ok_or_else(|| bad_param("level", l, "info, warning or error")))
            .transpose()?;
        super::sort_param(self.sort.as_deref(), &[("at", ())])?;
        super::text_param("profile", &self.profile)?;
        super::text_param("object", &self.object)?;
        let oldest_first = !super::order_param(self.order.as_deref(), Direction::Desc)?.is_desc();
        let (_, after) = super::id_cursor(self.after.as_deref(), super::SortedBy::Id)?;
        Ok(LogQuery {
            profile: self.profile,
            cycle_id: self.cycle,
            min_level,
            object_id: self.object,
            before_id: if oldest_first {
                None
            } else {
                after.or(self.before)
            },
            limit: self.limit.unwrap_or(limit).clamp(1, max),
            oldest_first,
            after_id: if oldest_first { after } else { None },
        })
    }
}

#[utoipa::path(get, path = "/logs", tag = "logs", params(LogParams), responses((status = 200, body = Vec<StoredLog>,
    description = "newest first (`order=asc`: oldest first); the next page is `after=` the `X-Next-After`",
    headers(("X-Total-Count" = i64, description = "how many entries the filters find in all, on every page"),
        ("X-Next-After" = String, description = "on a full page: the `after=` of the next one"))),
    (status = 400, body = super::ErrorBody, description = "an unknown `sort`, `order` or `level`")))]
pub async fn list(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<LogParams>,
) -> ApiResult<(axum::http::HeaderMap, Json<Vec<StoredLog>>)> {
    let q = p.query(200, 10_000)?;
    let total = st.store.count_logs(&q).await?;
    let rows = st.store.logs(&q).await?;
    let next = (rows.len() as i64 == q.limit)
        .then(|| rows.last().map(|l| l.id.to_string()))
        .flatten();
    Ok((super::list_headers(total, next), Json(rows)))
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
    let o = |s: &Option<String>| s.clone().unwrap_or_default();
    super::csv_response(
        "logs.csv",
        total,
        &[
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
        ],
        rows.iter().map(|l| {
            let e = &l.entry;
            vec![
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
            ]
        }),
    )
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/logs", get(list))
        .route("/logs/export", get(export))
}

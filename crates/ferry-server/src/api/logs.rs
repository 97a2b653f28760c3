//! Message logs.

use super::{ApiResult, bad_param};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
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

#[utoipa::path(get, path = "/logs", tag = "logs", params(LogParams), responses((status = 200, body = Vec<StoredLog>, description = "newest first")))]
pub async fn list(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<LogParams>,
) -> ApiResult<Json<Vec<StoredLog>>> {
    let min_level = p
        .level
        .as_deref()
        .map(|l| Level::parse(l).ok_or_else(|| bad_param("level", l, "info, warning or error")))
        .transpose()?;
    let q = LogQuery {
        profile: p.profile,
        cycle_id: p.cycle,
        min_level,
        object_id: p.object,
        before_id: p.before,
        limit: p.limit.unwrap_or(200).clamp(1, 10_000),
    };
    Ok(Json(st.store.logs(&q).await?))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/logs", get(list))
}

//! `GET /directories/{name}/preflight`, `GET /batches/{name}/preflight`: the tenant pre-flight
//! (`devices/preflight.rs`), cached for a few minutes; `?refresh=true` reads Graph again.

use super::ApiResult;
use crate::auth::AdminAuth;
use crate::devices::preflight;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::get;
pub use ferry_core::preflight::{Finding, PreflightReport, Severity};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct PreflightParams {
    /// Read Microsoft Graph again instead of answering the result cached for up to 5 minutes.
    #[serde(default)]
    pub refresh: bool,
}

#[utoipa::path(get, path = "/directories/{name}/preflight", tag = "directories", params(("name" = String, Path), PreflightParams),
    responses((status = 200, body = PreflightReport, description = "the tenant-wide checks of a Microsoft Entra directory: joining, MFA to join, the device quota, the Intune MDM scope, Windows enrolment, the device limit, Intune licences"),
        (status = 400, body = super::ErrorBody, description = "not a graph directory"), (status = 404, body = super::ErrorBody)))]
pub async fn directory(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<PreflightParams>,
) -> ApiResult<Json<PreflightReport>> {
    let r = preflight::directory(&st, &name, p.refresh).await?;
    Ok(Json((*r).clone()))
}

#[utoipa::path(get, path = "/batches/{name}/preflight", tag = "devices", params(("name" = String, Path), PreflightParams),
    responses((status = 200, body = PreflightReport, description = "the batch's target tenant checks, the licences, quota and scope of the matched target users of its devices, and its bulk enrolment token; `ok` is false while a blocking finding holds devices back"),
        (status = 400, body = super::ErrorBody, description = "the batch's target is not a graph directory"), (status = 404, body = super::ErrorBody)))]
pub async fn batch(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<PreflightParams>,
) -> ApiResult<Json<PreflightReport>> {
    let r = preflight::batch(&st, &name, p.refresh).await?;
    Ok(Json((*r).clone()))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/directories/{name}/preflight", get(directory))
        .route("/batches/{name}/preflight", get(batch))
}

//! `GET /operators`, `DELETE /operators/{name}`, `POST /operators/{name}/rotate`: listing,
//! removing and rotating operators (`POST /operators`, which makes one, is in `environments.rs`
//! beside sign-in). Removing an operator or rotating its credentials ends its session; the
//! session rows are in the store, which every server checks on every request, so the session
//! ends on all servers sharing the database at once. Each act is an audit line.

use super::{ApiError, ApiResult};
use crate::audit::act;
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
pub use ferry_core::wire::{Rotate, Rotated};
use ferry_store::OperatorRecord;

/// The install's own token (`DATA_DIR/admin-token` or `FERRY_ADMIN_TOKEN`), put again at every
/// start: it is changed there, not through the API.
const INSTALL_ADMIN: &str = "admin";

#[utoipa::path(get, path = "/operators", tag = "environments",
    responses((status = 200, body = Vec<OperatorRecord>), (status = 401, body = super::ErrorBody)))]
pub async fn list(
    _a: AdminAuth,
    State(st): State<AppState>,
) -> ApiResult<Json<Vec<OperatorRecord>>> {
    Ok(Json(st.store.operators().await?))
}

#[utoipa::path(delete, path = "/operators/{name}", tag = "environments",
    responses((status = 204), (status = 404, body = super::ErrorBody),
        (status = 409, description = "the install's `admin` token or the last ferry admin", body = super::ErrorBody)))]
pub async fn remove(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if name == INSTALL_ADMIN {
        return Err(ApiError::Conflict(
            "`admin` is the install's token (DATA_DIR/admin-token or FERRY_ADMIN_TOKEN); it cannot be removed".into(),
        ));
    }
    let ops = st.store.operators().await?;
    let Some(op) = ops.iter().find(|o| o.name == name) else {
        return Err(ApiError::NotFound(format!("there is no operator `{name}`")));
    };
    if op.role == "admin" && !ops.iter().any(|o| o.role == "admin" && o.name != name) {
        return Err(ApiError::Conflict(format!(
            "`{name}` is the last ferry admin; make another first"
        )));
    }
    let role = op.role.clone();
    if !st.store.delete_operator(&name).await? {
        return Err(ApiError::NotFound(format!("there is no operator `{name}`")));
    }
    act(&st, &a, None, "operator.remove", &name, role).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/operators/{name}/rotate", tag = "environments", request_body = Rotate,
    responses((status = 200, body = Rotated), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody, description = "the install's `admin` token (replaced in DATA_DIR/admin-token or FERRY_ADMIN_TOKEN)")))]
pub async fn rotate(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Option<super::Object<Rotate>>,
) -> ApiResult<Json<Rotated>> {
    let b = body.map(|super::Object(b)| b).unwrap_or_default();
    if name == INSTALL_ADMIN {
        return Err(ApiError::Conflict(
            "`admin` is the install's token: replace DATA_DIR/admin-token (or FERRY_ADMIN_TOKEN) and restart".into(),
        ));
    }
    let ops = st.store.operators().await?;
    let Some(op) = ops.into_iter().find(|o| o.name == name) else {
        return Err(ApiError::NotFound(format!("there is no operator `{name}`")));
    };
    let (password, generated) = match b.password {
        Some(p) if p.chars().count() < 12 => {
            return Err(ApiError::BadRequest(
                "password: at least 12 characters".into(),
            ));
        }
        Some(p) => (Some(p), None),
        None if op.has_password => {
            let t = crate::auth::new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
            let p = t["ferry_".len()..][..24].to_string();
            (Some(p.clone()), Some(p))
        }
        None => (None, None),
    };
    if let Some(p) = password {
        let h = tokio::task::spawn_blocking(move || crate::auth::hash_password(&p))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        st.store
            .put_operator_password(&name, &op.role, &h, st.clock.now_ms())
            .await?;
    }
    let token = crate::auth::new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    st.store
        .put_token(
            &name,
            &crate::auth::hash_token(&token),
            &op.role,
            st.clock.now_ms(),
        )
        .await?;
    st.store.delete_token(&format!("session:{name}")).await?;
    let what = if op.has_password || generated.is_some() {
        "token and password"
    } else {
        "token"
    };
    act(&st, &a, None, "operator.rotate", &name, what.to_string()).await?;
    Ok(Json(Rotated {
        name,
        role: op.role,
        token,
        password: generated,
    }))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/operators", get(list))
        .route("/operators/{name}", delete(remove))
        .route("/operators/{name}/rotate", post(rotate))
}

//! Bulk enrolment tokens of target Entra directories: upload, list (with expiry status), revoke.

use super::{ApiError, ApiResult};
use crate::auth::AdminAuth;
use crate::enrolment::{self, Upload};
use crate::state::AppState;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
pub use ferry_core::wire::{TokenView, UploadBody};
use ferry_store::{EnrolmentToken, now_ms};

fn view(t: EnrolmentToken) -> TokenView {
    let (status, warning) = enrolment::status(&t, now_ms());
    TokenView {
        expires: enrolment::day(t.expires_at),
        status: status.into(),
        warning,
        token: t,
    }
}

#[utoipa::path(post, path = "/directories/{name}/enrolment-tokens", tag = "enrolment", params(("name" = String, Path)),
    request_body = UploadBody,
    responses((status = 201, body = TokenView), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn upload(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    super::Object(b): super::Object<UploadBody>,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let settings = st.settings.get();
    if settings.config.directory(&name).is_none() {
        return Err(ApiError::NotFound(format!(
            "directory `{name}` is not configured"
        )));
    }
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD
        .decode(b.content_base64.trim())
        .map_err(|e| ApiError::BadRequest(format!("content_base64: not base64 ({e})")))?;
    let created = b
        .created
        .as_deref()
        .map(enrolment::parse_time)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("created: {e}")))?;
    let expires = enrolment::parse_time(&b.expires)
        .map_err(|e| ApiError::BadRequest(format!("expires: {e}")))?;
    let new = enrolment::validate(
        &settings,
        Upload {
            directory: name,
            kind: b.kind,
            file_name: b.file_name,
            package_upn: b.package_upn,
            content,
            created_at: created,
            expires_at: expires,
        },
        now_ms(),
    )
    .map_err(ApiError::BadRequest)?;
    let mut new = new;
    let context = crate::vault::enrolment_context(&new.directory, &new.sha256);
    new.content = st.settings.vault.seal(&new.content, &context);
    let t = st.store.add_enrolment_token(&new).await?;
    tracing::info!(
        id = t.id,
        directory = t.directory,
        package_upn = t.package_upn,
        "bulk enrolment token stored"
    );
    // Which token, never its content.
    crate::audit::act(
        &st,
        &op,
        None,
        "enrolment-token.upload",
        &t.directory,
        format!(
            "token {} for {}, file {}, sha256 {}, expires {}",
            t.id,
            t.package_upn,
            t.file_name.as_deref().unwrap_or("none"),
            t.sha256,
            enrolment::day(t.expires_at)
        ),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(t))))
}

#[utoipa::path(get, path = "/directories/{name}/enrolment-tokens", tag = "enrolment", params(("name" = String, Path)),
    responses((status = 200, body = Vec<TokenView>, description = "newest first, without their content"), (status = 404, body = super::ErrorBody)))]
pub async fn list(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<TokenView>>> {
    if st.settings.get().config.directory(&name).is_none() {
        return Err(ApiError::NotFound(format!(
            "directory `{name}` is not configured"
        )));
    }
    Ok(Json(
        st.store
            .enrolment_tokens(Some(&name))
            .await?
            .into_iter()
            .map(view)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/enrolment-tokens/{id}/revoke", tag = "enrolment", params(("id" = i64, Path)),
    responses((status = 200, body = TokenView, description = "revoked in ferry: it is no longer handed to devices. Delete its package account in the tenant to revoke it at Microsoft"),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn revoke(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<TokenView>> {
    if !st.store.revoke_enrolment_token(id, now_ms()).await? {
        return match st.store.enrolment_token_content(id).await? {
            None => Err(ApiError::NotFound(format!(
                "there is no enrolment token {id}"
            ))),
            Some(_) => Err(ApiError::Conflict(format!(
                "enrolment token {id} is already revoked"
            ))),
        };
    }
    let t = st
        .store
        .enrolment_token_content(id)
        .await?
        .map(|(t, _)| t)
        .ok_or_else(|| ApiError::NotFound(format!("there is no enrolment token {id}")))?;
    crate::audit::act(
        &st,
        &op,
        None,
        "enrolment-token.revoke",
        &t.directory,
        format!("token {} for {}", t.id, t.package_upn),
    )
    .await?;
    Ok(Json(view(t)))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route(
            "/directories/{name}/enrolment-tokens",
            get(list).post(upload).layer(DefaultBodyLimit::max(
                enrolment::MAX_SIZE * 4 / 3 + 64 * 1024,
            )),
        )
        .route("/enrolment-tokens/{id}/revoke", post(revoke))
}

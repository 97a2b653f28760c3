//! Operators of a tenant and sessions: creating an operator (an admin for the install or for
//! one tenant), signing in with a password (throttled per name and per address, argon2id under a
//! semaphore), signing out, and who the caller is.

use super::{ApiError, ApiResult};
use crate::audit::act;
use crate::auth::{AdminAuth, Caller, Operator, Origin, Role};
use crate::moves::all;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ferry_core::envmove::Tenant;
pub use ferry_core::wire::{CreatedOperator, Me, NewOperator, Session, SignIn};
use ferry_store::DocKind;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/operators", post(create_operator))
        .route("/me", get(me))
        .route("/sessions", post(sign_in).delete(sign_out))
}

#[utoipa::path(post, path = "/operators", tag = "environments", request_body = NewOperator,
    responses((status = 201, body = CreatedOperator), (status = 400, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn create_operator(
    a: AdminAuth,
    State(st): State<AppState>,
    super::Object(b): super::Object<NewOperator>,
) -> ApiResult<(StatusCode, Json<CreatedOperator>)> {
    let name = b.name.trim();
    // `config` is the operator of the configuration's overrides ("pinned by config"): no
    // operator may sign rules with it. Names are shown in rules, logs and the audit trail.
    if name.is_empty()
        || name.len() > 64
        || name == "admin"
        || name == "config"
        || name.starts_with("session:")
    {
        return Err(ApiError::BadRequest(
            "name: must be 1–64 characters, not `admin` or `config` and not start with `session:`"
                .into(),
        ));
    }
    ferry_core::check_name(name).map_err(|e| ApiError::BadRequest(format!("name: {e}")))?;
    let role = match &b.tenant {
        None if b.viewer => Role::Viewer,
        Some(_) if b.viewer => {
            return Err(ApiError::BadRequest(
                "viewer: a viewer sees every tenant; leave out `tenant`".into(),
            ));
        }
        None => Role::Admin,
        Some(t) => {
            let tenants: Vec<Tenant> = all(&st, DocKind::Tenant).await?;
            if !tenants.iter().any(|x| &x.id == t) {
                return Err(ApiError::BadRequest(format!(
                    "tenant: there is no tenant `{t}`"
                )));
            }
            Role::TenantAdmin(t.clone())
        }
    };
    if let Some(p) = &b.password {
        if p.chars().count() < 12 {
            return Err(ApiError::BadRequest(
                "password: at least 12 characters".into(),
            ));
        }
        let p = p.clone();
        let h = tokio::task::spawn_blocking(move || crate::auth::hash_password(&p))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        st.store
            .put_operator_password(name, &role.as_string(), &h, st.clock.now_ms())
            .await?;
    } else if let Some((_, h)) = st.store.operator_password(name).await? {
        // Replaced without a new password: the old one keeps working, with the new role.
        st.store
            .put_operator_password(name, &role.as_string(), &h, st.clock.now_ms())
            .await?;
    }
    // A replaced operator (new role, token or password) loses its session, on every server.
    let ended = st.store.delete_token(&format!("session:{name}")).await?;
    let token = crate::auth::new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    st.store
        .put_token(
            name,
            &crate::auth::hash_token(&token),
            &role.as_string(),
            st.clock.now_ms(),
        )
        .await?;
    act(
        &st,
        &a,
        role.tenant(),
        "operator.create",
        name,
        if ended {
            format!("{}; its session ended", role.as_string())
        } else {
            role.as_string()
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedOperator {
            name: name.to_string(),
            role: role.as_string(),
            token,
        }),
    ))
}

/// Until when (ms) a name or an address is locked out, if either is.
async fn locked_out(
    st: &AppState,
    key: &str,
    ip: std::net::IpAddr,
    now: i64,
) -> ApiResult<Option<i64>> {
    let limits = &st.sign_in;
    let account = st
        .store
        .sign_in_failures(key)
        .await?
        .and_then(|(f, last)| limits.locked_until(f, last, limits.cfg.lockout_after))
        .filter(|u| *u > now);
    Ok(account
        .into_iter()
        .chain(limits.address_locked_until(ip, now))
        .max())
}

#[utoipa::path(post, path = "/sessions", tag = "environments", request_body = SignIn, security(()),
    responses((status = 201, body = Session), (status = 401, body = super::ErrorBody),
        (status = 429, description = "too many failed sign-ins for this name or from this address; see `Retry-After`", body = super::ErrorBody),
        (status = 503, description = "too many sign-ins at once; see `Retry-After`", body = super::ErrorBody)))]
pub async fn sign_in(
    State(st): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    origin: Origin,
    super::Object(b): super::Object<SignIn>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    use crate::signin::{account_key, retry_after};
    let limits = &st.sign_in;
    let ip = peer.ip();
    let key = account_key(&b.name);
    // A lockout is answered before any password is checked, the same for every name.
    let refuse = |until: i64, now: i64| {
        // The name is the client's: escaped, so that a line break in it starts no line of the log.
        let name: String = b.name.chars().take(64).collect();
        tracing::warn!(address = %ip, name = %name.escape_debug(), "sign-in refused: locked out");
        ApiError::TooManyRequests(
            "too many failed sign-ins; try again later".into(),
            retry_after(until, now),
        )
    };
    let now = st.clock.now_ms();
    if let Some(until) = locked_out(&st, &key, ip, now).await? {
        return Err(refuse(until, now));
    }
    let stored = st.store.operator_password(&b.name).await?;
    // The slot is held until the failure is recorded, so the next attempt's check sees it.
    let Some(_slot) = limits.slot().await else {
        return Err(ApiError::Unavailable(
            "too many sign-ins at once; try again shortly".into(),
            1,
        ));
    };
    let ok = {
        // Again with the slot held: attempts that arrived together all passed the first check,
        // and the failures of those before them may have locked the name out since.
        let now = st.clock.now_ms();
        if let Some(until) = locked_out(&st, &key, ip, now).await? {
            return Err(refuse(until, now));
        }
        let (pw, hash) = (b.password.clone(), stored.as_ref().map(|s| s.1.clone()));
        tokio::task::spawn_blocking(move || crate::auth::verify_password(&pw, hash.as_deref()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    };
    let Some((role, _)) = stored.as_ref().filter(|_| ok).cloned() else {
        let now = st.clock.now_ms();
        let (failures, last) = st.store.add_sign_in_failure(&key, now).await?;
        if failures == 1 {
            // A new row: forget names that have not failed for a day, so the table stays small.
            st.store
                .prune_sign_in_failures(now - 24 * 3600 * 1000)
                .await?;
        }
        limits.address_failed(ip, now);
        let reason = if stored.is_some() {
            "wrong password"
        } else {
            "no such operator"
        };
        let locked = limits
            .locked_until(failures, last, limits.cfg.lockout_after)
            .map(|u| format!("; locked out for {} s", retry_after(u, now)))
            .unwrap_or_default();
        // Who tried (the name, cut to 64 characters), from where and why; never the password.
        let caller = Caller {
            name: format!("address:{ip}"),
            origin,
        };
        let subject: String = b.name.chars().take(64).collect();
        act(
            &st,
            &caller,
            None,
            "session.sign-in.failed",
            &subject,
            format!("{reason}; failure {failures} for this name{locked}"),
        )
        .await?;
        return Err(ApiError::Unauthorized(
            "the name or the password is wrong".into(),
        ));
    };
    st.store.clear_sign_in_failures(&key).await?;
    let token = crate::auth::new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    st.store
        .put_token(
            &format!("session:{}", b.name),
            &crate::auth::hash_token(&token),
            &role,
            st.clock.now_ms(),
        )
        .await?;
    let caller = Caller {
        name: b.name.clone(),
        origin,
    };
    act(
        &st,
        &caller,
        Role::parse(&role).as_ref().and_then(Role::tenant),
        "session.sign-in",
        &b.name,
        String::new(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Session {
            name: b.name,
            role,
            token,
        }),
    ))
}

#[utoipa::path(delete, path = "/sessions", tag = "environments", responses((status = 204)))]
pub async fn sign_out(op: Operator, State(st): State<AppState>) -> ApiResult<StatusCode> {
    // The session's token is replaced by one nobody holds.
    let nobody = crate::auth::new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let name = op.name.clone();
    st.store
        .put_token(
            &format!("session:{name}"),
            &crate::auth::hash_token(&nobody),
            &op.role.as_string(),
            st.clock.now_ms(),
        )
        .await?;
    act(
        &st,
        &op,
        op.role.tenant(),
        "session.sign-out",
        &name,
        String::new(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/me", tag = "environments", responses((status = 200, body = Me), (status = 401, body = super::ErrorBody)))]
pub async fn me(op: Operator) -> Json<Me> {
    Json(Me {
        name: op.name,
        role: match op.role {
            Role::Admin => "admin".into(),
            Role::TenantAdmin(_) => "tenant-admin".into(),
            Role::Viewer => "viewer".into(),
        },
        tenant: op.role.tenant().map(str::to_string),
    })
}

//! Bearer-token authentication for the admin API. Tokens are random, shown once (written to
//! `DATA_DIR/admin-token` with mode 0600, or given as `FERRY_ADMIN_TOKEN`), and stored only as their
//! SHA-256. [`AdminAuth`] is an extractor: a handler that takes it cannot run unauthenticated.

use crate::api::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::path::Path;

pub fn hash_token(token: &str) -> String {
    ferry_core::config::hex(&Sha256::digest(token.as_bytes()))
}

/// A new random token: 32 bytes, hex.
pub fn new_token() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("ferry_{}", ferry_core::config::hex(&b)))
}

/// The admin token to install at start: `FERRY_ADMIN_TOKEN`, else `DIR/admin-token`, else a new one
/// written there with mode 0600. Returns the token and where it came from.
pub fn admin_token(data_dir: &Path, from_env: Option<String>) -> std::io::Result<(String, String)> {
    if let Some(t) = from_env.filter(|t| !t.trim().is_empty()) {
        return Ok((t.trim().to_string(), "FERRY_ADMIN_TOKEN".into()));
    }
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            return Ok((t.trim().to_string(), path.display().to_string()));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = new_token()?;
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok((token, path.display().to_string()))
}

/// Writes a file readable by its owner only, atomically.
pub fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// An argon2id hash (PHC string) of an operator's password, with a random salt.
pub fn hash_password(password: &str) -> std::io::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Whether `password` matches a stored hash. Without one, a dummy hash is checked all the same,
/// so an unknown name takes as long as a wrong password.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("ferry: no such operator").unwrap_or_default());
    let Ok(parsed) = PasswordHash::new(hash.unwrap_or(dummy)) else {
        return false;
    };
    let ok = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && hash.is_some()
}

/// An authenticated operator.
pub struct AdminAuth {
    /// The operator's name (a session's token is named `session:NAME`; this is `NAME`), as
    /// audit lines, approvals and override rules show it.
    pub name: String,
    /// Where the request came from, for the audit trail.
    pub origin: Origin,
}

/// Where a request came from, as an audit line records it: the client address of the connection
/// (the peer the server accepted; `X-Forwarded-For` is not trusted, ferry has no setting for a
/// proxy in front of it) and the request's id ([`crate::api::request_id`]). An extractor too, for
/// the handlers that take no token (sign-in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub address: Option<String>,
    pub request_id: String,
}

impl Origin {
    pub fn of(parts: &Parts) -> Origin {
        Origin {
            address: parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_canonical().to_string()),
            request_id: crate::api::request_id_of(parts),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin::of(parts))
    }
}

/// Someone whose act is audited: a name and where the request came from.
pub trait Acting: Send + Sync {
    fn name(&self) -> &str;
    fn origin(&self) -> &Origin;
}

impl Acting for AdminAuth {
    fn name(&self) -> &str {
        &self.name
    }
    fn origin(&self) -> &Origin {
        &self.origin
    }
}

impl Acting for Operator {
    fn name(&self) -> &str {
        &self.name
    }
    fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// A caller without a token acting under a name: signing in (its name, or `address:IP` when the
/// sign-in fails).
pub struct Caller {
    pub name: String,
    pub origin: Origin,
}

impl Acting for Caller {
    fn name(&self) -> &str {
        &self.name
    }
    fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// The operator a token belongs to: its name without a session's `session:` prefix.
fn operator_name(token_name: &str) -> String {
    token_name
        .strip_prefix("session:")
        .unwrap_or(token_name)
        .to_string()
}

/// What an operator may do: everything (`admin`), act for one tenant (`tenant-admin:<id>`), or
/// look at everything an admin sees and change nothing (`viewer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    TenantAdmin(String),
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => s
                .strip_prefix("tenant-admin:")
                .filter(|t| !t.is_empty())
                .map(|t| Role::TenantAdmin(t.to_string())),
        }
    }

    pub fn as_string(&self) -> String {
        match self {
            Role::Admin => "admin".into(),
            Role::TenantAdmin(t) => format!("tenant-admin:{t}"),
            Role::Viewer => "viewer".into(),
        }
    }

    /// The tenant this role acts for (none: a ferry admin).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Role::Admin | Role::Viewer => None,
            Role::TenantAdmin(t) => Some(t),
        }
    }
}

/// Any authenticated operator, with its role.
pub struct Operator {
    pub name: String,
    pub role: Role,
    /// Where the request came from, for the audit trail.
    pub origin: Origin,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let t = token(parts, state).await?;
        match Role::parse(&t.role) {
            Some(Role::Viewer) if !reads(parts) && !signs_out(parts) => Err(read_only()),
            Some(role) => Ok(Operator {
                name: operator_name(&t.name),
                role,
                origin: Origin::of(parts),
            }),
            None => Err(ApiError::Forbidden(
                "this token may not use the admin API".into(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let t = token(parts, state).await?;
        if t.role == "admin" {
            Ok(AdminAuth {
                name: operator_name(&t.name),
                origin: Origin::of(parts),
            })
        } else if t.role == "viewer" {
            if reads(parts) {
                Ok(AdminAuth {
                    name: operator_name(&t.name),
                    origin: Origin::of(parts),
                })
            } else {
                Err(read_only())
            }
        } else if Role::parse(&t.role).is_some() {
            Err(ApiError::Forbidden(
                "a tenant admin may not use this part of the API; it needs a ferry admin".into(),
            ))
        } else {
            Err(ApiError::Forbidden(
                "this token may not use the admin API".into(),
            ))
        }
    }
}

/// Whether the request only reads (all a viewer may do).
fn reads(parts: &Parts) -> bool {
    parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD
}

/// Signing out changes nothing but the operator's own session.
fn signs_out(parts: &Parts) -> bool {
    // Exactly the sign-out route (nested under /api/v1, or not), not any path ending so.
    parts.method == axum::http::Method::DELETE
        && matches!(parts.uri.path(), "/sessions" | "/api/v1/sessions")
}

fn read_only() -> ApiError {
    ApiError::Forbidden("a viewer may look but not change anything".into())
}

/// How stale a session's recorded last use may be before it is written again: the idle timeout
/// is checked against a time up to this much earlier than the true last use, so a session may
/// end this much early, and a busy console writes once a minute instead of on every request.
pub const TOUCH_EVERY_MS: i64 = 60_000;

/// A session's token if it has neither been idle too long nor lived too long (both checked on
/// every request against the store's row, so a session ended on one server is ended on all).
async fn session_alive(
    state: &AppState,
    hash: &str,
    t: ferry_store::TokenInfo,
) -> Result<ferry_store::TokenInfo, ApiError> {
    let cfg = &state.sign_in.cfg;
    let now = state.clock.now_ms();
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let last = t.last_used_at.unwrap_or(t.created_at).max(t.created_at);
    if now.saturating_sub(t.created_at) >= ms(cfg.session_lifetime.0) {
        return Err(ApiError::Unauthorized(
            "the session has ended (it is older than session_lifetime); sign in again".into(),
        ));
    }
    if now.saturating_sub(last) >= ms(cfg.session_idle.0) {
        return Err(ApiError::Unauthorized(
            "the session has ended (unused for session_idle); sign in again".into(),
        ));
    }
    if now - last >= TOUCH_EVERY_MS {
        state.store.touch_token(hash, now).await?;
    }
    Ok(t)
}

/// The bearer token's record, or why there is none.
async fn token(parts: &Parts, state: &AppState) -> Result<ferry_store::TokenInfo, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(token) = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Err(ApiError::Unauthorized(
            "send `Authorization: Bearer <token>` (the admin token is in DATA_DIR/admin-token)"
                .into(),
        ));
    };
    let hash = hash_token(token);
    match state.store.token_by_hash(&hash).await? {
        Some(t) if t.name.starts_with("session:") => session_alive(state, &hash, t).await,
        Some(t) => Ok(t),
        None => {
            // An agent's node key on the admin API: refused like any bad token, and reported.
            if let Some(a) = state.store.agent_by_node_hash(&hash_token(token)).await? {
                // The answer is 401, and the report says so, with where the call came from.
                let address = parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip().to_string());
                let at = ferry_store::now_ms();
                let f = ferry_store::FailedComm {
                    id: 0,
                    at,
                    address,
                    code: "unauthorized".into(),
                    reason: format!(
                        "agent {} ({}) called the admin API {}",
                        a.id,
                        a.hostname,
                        parts.uri.path()
                    ),
                    agent_id: Some(a.id),
                    device_id: Some(a.device_id),
                    count: 1,
                    first_at: at,
                };
                state.store.record_failed_comm(&f, at - 3_600_000).await?;
            }
            Err(ApiError::Unauthorized("the token is not valid".into()))
        }
    }
}

//! Environment moves between tenants, over HTTP: tenants, environments and their records, and the
//! move workflow named after Microsoft's cmdlets (submit, approve/reject, upload the user mapping,
//! prepare, migrate, cancel). The source tenant's admins submit, upload, prepare, migrate and
//! cancel; the target tenant's admins approve or reject; each side knows the move by its own
//! migration id and sees only its own requests. Every action goes to the audit trail. The workflow's
//! storage, claims, recovery and validation are `crate::moves`; operators and sessions are
//! `sessions.rs`.

use super::{ApiError, ApiResult};
use crate::audit::act;
use crate::auth::{AdminAuth, Operator, Role};
use crate::moves::claim::MoveClaim;
use crate::moves::validate::run_prepare;
use crate::moves::{all, all_read, not_now, save, swap, to_json};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use ferry_core::envmove::{self, Environment, Move, Request, State as MoveState, Tenant};
use ferry_core::usermapping;
pub use ferry_core::wire::{
    Accepted, Migrated, MoveStatus, MoveView, RecordsAdded, Submit, Uploaded,
};
use ferry_store::{AuditEntry, DocKind};
use serde::Deserialize;

pub use crate::moves::claim::MOVE_LEASE_TTL_MS;
pub use crate::moves::recover::{SWEEP_EVERY, recover_moves};

fn forbidden(what: &str) -> ApiError {
    ApiError::Forbidden(what.to_string())
}

/// A GUID-shaped migration id.
fn migration_id() -> ApiResult<String> {
    let t = crate::auth::new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let h = &t["ferry_".len()..];
    Ok(format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ))
}

/// Refuses a body whose `id` is not the path's, or an `id` that is not a valid name.
fn same_id(body: &str, id: &str) -> ApiResult<()> {
    if body != id {
        return Err(ApiError::BadRequest(format!(
            "id: the body says `{body}`, the path `{id}`"
        )));
    }
    if let Err(why) = ferry_core::check_name(id) {
        return Err(ApiError::BadRequest(format!("id: {why}")));
    }
    Ok(())
}

/// Refuses a change to the environment `id` while it is being moved.
async fn not_moving(st: &AppState, id: &str) -> ApiResult<()> {
    let moves: Vec<Move> = all(st, DocKind::EnvMove).await?;
    if moves
        .iter()
        .any(|m| m.environment == id && m.request.state == MoveState::Migrating)
    {
        return Err(ApiError::Conflict(format!("`{id}` is being moved")));
    }
    Ok(())
}

// ---- tenants -------------------------------------------------------------------------------

#[utoipa::path(get, path = "/tenants", tag = "environments", responses((status = 200, body = Vec<Tenant>)))]
pub async fn tenants(op: Operator, State(st): State<AppState>) -> ApiResult<Json<Vec<Tenant>>> {
    let v: Vec<Tenant> = all(&st, DocKind::Tenant).await?;
    Ok(Json(
        v.into_iter()
            .filter(|t| op.role.tenant().is_none_or(|mine| mine == t.id))
            .collect(),
    ))
}

#[utoipa::path(put, path = "/tenants/{id}", tag = "environments", request_body = Tenant,
    responses((status = 200, body = Tenant), (status = 400, body = super::ErrorBody)))]
pub async fn put_tenant(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(id): Path<String>,
    super::Object(t): super::Object<Tenant>,
) -> ApiResult<Json<Tenant>> {
    same_id(&t.id, &id)?;
    let known: Vec<String> = st
        .settings
        .get()
        .config
        .directories
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    if let Some(d) = t.directories.iter().find(|d| !known.contains(d)) {
        return Err(ApiError::BadRequest(format!(
            "directories: `{d}` is not a configured directory"
        )));
    }
    save(&st, DocKind::Tenant, &id, &t).await?;
    act(&st, &a, Some(&id), "tenant.put", &id, t.name.clone()).await?;
    Ok(Json(t))
}

// ---- environments --------------------------------------------------------------------------

#[utoipa::path(get, path = "/environments", tag = "environments", responses((status = 200, body = Vec<Environment>)))]
pub async fn environments(
    op: Operator,
    State(st): State<AppState>,
) -> ApiResult<Json<Vec<Environment>>> {
    let v: Vec<Environment> = all(&st, DocKind::Environment).await?;
    Ok(Json(
        v.into_iter()
            .filter(|e| op.role.tenant().is_none_or(|mine| mine == e.tenant))
            .collect(),
    ))
}

async fn environment(st: &AppState, op: &Operator, id: &str) -> ApiResult<Environment> {
    let v: Vec<Environment> = all(st, DocKind::Environment).await?;
    v.into_iter()
        .find(|e| e.id == id && op.role.tenant().is_none_or(|mine| mine == e.tenant))
        .ok_or_else(|| ApiError::NotFound(format!("there is no environment `{id}`")))
}

/// `id`, when the operator is the admin of the tenant it belongs to (the source side of a move).
async fn own_environment(
    st: &AppState,
    op: &Operator,
    id: &str,
    refusal: &str,
) -> ApiResult<(Environment, String)> {
    let Some(mine) = op.role.tenant() else {
        return Err(forbidden(refusal));
    };
    let env = environment(st, op, id).await?;
    if env.tenant != mine {
        return Err(forbidden(refusal));
    }
    Ok((env, mine.to_string()))
}

#[utoipa::path(get, path = "/environments/{id}", tag = "environments", responses((status = 200, body = Environment), (status = 404, body = super::ErrorBody)))]
pub async fn get_environment(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Environment>> {
    Ok(Json(environment(&st, &op, &id).await?))
}

#[utoipa::path(put, path = "/environments/{id}", tag = "environments", request_body = Environment,
    responses((status = 200, body = Environment), (status = 400, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn put_environment(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
    super::Object(e): super::Object<Environment>,
) -> ApiResult<Json<Environment>> {
    same_id(&e.id, &id)?;
    let tenants: Vec<Tenant> = all(&st, DocKind::Tenant).await?;
    if !tenants.iter().any(|t| t.id == e.tenant) {
        return Err(ApiError::BadRequest(format!(
            "tenant: there is no tenant `{}`",
            e.tenant
        )));
    }
    let existing: Vec<Environment> = all(&st, DocKind::Environment).await?;
    if let Some(mine) = op.role.tenant() {
        let theirs = existing
            .iter()
            .find(|x| x.id == id)
            .map(|x| x.tenant.as_str());
        if e.tenant != mine || theirs.is_some_and(|t| t != mine) {
            return Err(forbidden(
                "a tenant admin registers environments of its own tenant only",
            ));
        }
    }
    not_moving(&st, &id).await?;
    save(&st, DocKind::Environment, &id, &e).await?;
    act(
        &st,
        &op,
        Some(&e.tenant),
        "environment.put",
        &id,
        e.name.clone(),
    )
    .await?;
    Ok(Json(e))
}

#[derive(Deserialize)]
pub struct Page {
    pub offset: Option<i64>,
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/environments/{id}/records", tag = "environments",
    params(("offset" = Option<i64>, Query,), ("limit" = Option<i64>, Query,)),
    responses((status = 200, body = Vec<ferry_store::EnvRecord>), (status = 404, body = super::ErrorBody)))]
pub async fn records(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Vec<ferry_store::EnvRecord>>> {
    let env = environment(&st, &op, &id).await?;
    let (offset, limit) = (
        p.offset.unwrap_or(0).max(0),
        p.limit.unwrap_or(100).clamp(1, 10_000),
    );
    Ok(Json(st.store.env_records(&env.id, offset, limit).await?))
}

#[utoipa::path(post, path = "/environments/{id}/records", tag = "environments", request_body = Vec<ferry_store::EnvRecord>,
    responses((status = 200, body = RecordsAdded), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such environment, or another tenant's"), (status = 409, body = super::ErrorBody)))]
pub async fn add_records(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
    Json(recs): Json<Vec<ferry_store::EnvRecord>>,
) -> ApiResult<Json<RecordsAdded>> {
    let env = environment(&st, &op, &id).await?;
    not_moving(&st, &id).await?;
    if let Some((i, _)) = recs
        .iter()
        .enumerate()
        .find(|(_, r)| r.id.trim().is_empty())
    {
        return Err(ApiError::BadRequest(format!("[{i}].id: empty")));
    }
    st.store.put_env_records(&env.id, &recs).await?;
    act(
        &st,
        &op,
        Some(&env.tenant),
        "environment.records",
        &id,
        format!("{} records", recs.len()),
    )
    .await?;
    Ok(Json(RecordsAdded {
        added: recs.len(),
        total: st.store.count_env_records(&env.id).await?,
    }))
}

// ---- moves ---------------------------------------------------------------------------------

/// The error file's URL under the migration id its reader knows the move by (each side has its
/// own, and can open only that one).
fn errors_url(id: &str) -> String {
    format!("/api/v1/moves/{id}/errors")
}

fn view(m: &Move, role: &Role, now: i64) -> Option<MoveView> {
    let (id, side, other) = match role.tenant() {
        None => (
            m.source_migration_id.clone(),
            "admin",
            Some(m.target_migration_id.clone()),
        ),
        Some(t) if t == m.source_tenant => (m.source_migration_id.clone(), "source", None),
        Some(t) if t == m.target_tenant => (m.target_migration_id.clone(), "target", None),
        Some(_) => return None,
    };
    let status = m.request.status_line(now, &errors_url(&id));
    Some(MoveView {
        migration_id: id,
        side: side.into(),
        other_migration_id: other,
        environment: m.environment.clone(),
        source_tenant: m.source_tenant.clone(),
        target_tenant: m.target_tenant.clone(),
        state: m.request.state_at(now),
        status,
        submitted_at: m.request.submitted_at,
        validated_at: m.request.validated_at,
        warnings: m.warnings.clone(),
        mapped_users: m.mapped_users,
        progress: progress(m, now),
    })
}

/// What a running validation is doing; nothing once the request is past it. A request
/// cancelled while its validation ran keeps the last figure in its document (the validation's
/// end, which clears it, is refused on a cancelled request).
fn progress(m: &Move, now: i64) -> Option<String> {
    m.progress
        .clone()
        .filter(|_| m.request.state_at(now) == MoveState::Validating)
}

/// [`view`] of a move the operator has just acted in (so it sees it).
fn shown(m: &Move, role: &Role, now: i64) -> ApiResult<MoveView> {
    view(m, role, now).ok_or_else(|| ApiError::Internal("no view".into()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

/// The move `id` names for this operator, for an action of `side`. An id is known only to its own
/// side: the other party's id, or another tenant's move, is not found. The right id with the wrong
/// side's action is forbidden.
async fn find(st: &AppState, op: &Operator, id: &str, side: Side) -> ApiResult<Move> {
    Ok(find_read(st, op, id, side).await?.0)
}

/// The move `id` names for this operator, on either side.
async fn find_either(st: &AppState, op: &Operator, id: &str) -> ApiResult<Move> {
    match find(st, op, id, Side::Source).await {
        Err(ApiError::Forbidden(_)) => find(st, op, id, Side::Target).await,
        r => r,
    }
}

/// [`find`], with the document's body as read (for [`swap`]).
async fn find_read(
    st: &AppState,
    op: &Operator,
    id: &str,
    side: Side,
) -> ApiResult<(Move, String)> {
    let moves: Vec<(Move, String)> = all_read(st, DocKind::EnvMove).await?;
    let not_found = || ApiError::NotFound(format!("there is no move `{id}` on your side"));
    let refuse = || {
        forbidden(if side == Side::Source {
            "only the source tenant's admins may do this"
        } else {
            "only the target tenant's admins may approve or reject"
        })
    };
    let Some(((m, body), id_side)) = moves.into_iter().find_map(|(m, body)| {
        if m.source_migration_id == id {
            Some(((m, body), Side::Source))
        } else if m.target_migration_id == id {
            Some(((m, body), Side::Target))
        } else {
            None
        }
    }) else {
        return Err(not_found());
    };
    let owner = if id_side == Side::Source {
        &m.source_tenant
    } else {
        &m.target_tenant
    };
    match op.role.tenant() {
        None => Err(forbidden(
            "a ferry admin sees moves but does not act in them; the tenants' admins do",
        )),
        Some(t) if t != owner => Err(not_found()),
        Some(_) if id_side != side => Err(refuse()),
        Some(_) => Ok((m, body)),
    }
}

#[utoipa::path(post, path = "/environments/{id}/moves", tag = "environments", request_body = Submit,
    responses((status = 201, body = MoveView), (status = 400, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such environment, or another tenant's"), (status = 409, body = super::ErrorBody)))]
pub async fn submit(
    op: Operator,
    State(st): State<AppState>,
    Path(env_id): Path<String>,
    super::Object(b): super::Object<Submit>,
) -> ApiResult<(StatusCode, Json<MoveView>)> {
    let _g = st.moves.lock(op.role.tenant().unwrap_or_default()).await;
    let (env, mine) = own_environment(
        &st,
        &op,
        &env_id,
        "only the source tenant's admins submit a move",
    )
    .await?;
    let mine = mine.as_str();
    let tenants: Vec<Tenant> = all(&st, DocKind::Tenant).await?;
    let Some(target) = tenants.iter().find(|t| t.id == b.target_tenant) else {
        return Err(ApiError::BadRequest(format!(
            "target_tenant: there is no tenant `{}`",
            b.target_tenant
        )));
    };
    if target.id == env.tenant {
        return Err(ApiError::BadRequest(
            "target_tenant: the environment is already in it".into(),
        ));
    }
    let now = st.clock.now_ms();
    let moves: Vec<Move> = all(&st, DocKind::EnvMove).await?;
    if let Some(m) = moves
        .iter()
        .find(|m| m.environment == env.id && !m.request.state_at(now).is_final())
    {
        return Err(ApiError::Conflict(format!(
            "`{}` already has a move request ({}, {})",
            env.id,
            m.source_migration_id,
            m.request.state_at(now).as_str()
        )));
    }
    let kinds: Vec<&str> = env.components.iter().map(|c| c.kind.as_str()).collect();
    let warnings = envmove::check_submit(&env.facts(target.cloud, &kinds))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let m = Move {
        source_migration_id: migration_id()?,
        target_migration_id: migration_id()?,
        environment: env.id.clone(),
        source_tenant: env.tenant.clone(),
        target_tenant: target.id.clone(),
        request: Request::submit(now),
        warnings,
        mapping: None,
        errors: None,
        mapped_users: 0,
        checklist: Vec::new(),
        last_error: None,
        migrating_on: None,
        progress: None,
    };
    save(&st, DocKind::EnvMove, &m.source_migration_id, &m).await?;
    act(
        &st,
        &op,
        Some(mine),
        "env.move.submit",
        &m.source_migration_id,
        format!("{} → {}", env.id, target.id),
    )
    .await?;
    let v = shown(&m, &op.role, now)?;
    Ok((StatusCode::CREATED, Json(v)))
}

#[utoipa::path(get, path = "/moves", tag = "environments", responses((status = 200, body = Vec<MoveView>)))]
pub async fn moves(op: Operator, State(st): State<AppState>) -> ApiResult<Json<Vec<MoveView>>> {
    let now = st.clock.now_ms();
    let v: Vec<Move> = all(&st, DocKind::EnvMove).await?;
    Ok(Json(
        v.iter().filter_map(|m| view(m, &op.role, now)).collect(),
    ))
}

#[utoipa::path(get, path = "/moves/approvals", tag = "environments", responses((status = 200, body = Vec<MoveView>)))]
pub async fn approvals(op: Operator, State(st): State<AppState>) -> ApiResult<Json<Vec<MoveView>>> {
    let now = st.clock.now_ms();
    let v: Vec<Move> = all(&st, DocKind::EnvMove).await?;
    Ok(Json(
        v.iter()
            .filter(|m| op.role.tenant() == Some(m.target_tenant.as_str()))
            .filter(|m| m.request.state_at(now) == MoveState::Submitted)
            .filter_map(|m| view(m, &op.role, now))
            .collect(),
    ))
}

/// Takes the move `id` one `transition` for `side`'s admins (one change of a tenant's moves at a
/// time), and audits it as `action` under that side's tenant, with `detail`. The move as it is
/// now, and when.
async fn step(
    st: &AppState,
    op: &Operator,
    id: &str,
    side: Side,
    transition: impl FnOnce(&mut Request, i64) -> Result<(), envmove::NotNow>,
    action: &str,
    detail: impl FnOnce(&Move) -> String,
) -> ApiResult<(Move, i64)> {
    let _g = st.moves.lock(op.role.tenant().unwrap_or_default()).await;
    let (mut m, read) = find_read(st, op, id, side).await?;
    let now = st.clock.now_ms();
    transition(&mut m.request, now).map_err(not_now)?;
    swap(st, id, &read, &m).await?;
    let tenant = match side {
        Side::Source => &m.source_tenant,
        Side::Target => &m.target_tenant,
    };
    act(st, op, Some(tenant), action, id, detail(&m)).await?;
    Ok((m, now))
}

async fn decide(
    st: &AppState,
    op: &Operator,
    id: &str,
    approve: bool,
) -> ApiResult<Json<MoveView>> {
    let (action, transition): (_, fn(&mut Request, i64) -> _) = if approve {
        ("env.move.approve", Request::approve)
    } else {
        ("env.move.reject", Request::reject)
    };
    let (m, now) = step(st, op, id, Side::Target, transition, action, |m| {
        m.environment.clone()
    })
    .await?;
    shown(&m, &op.role, now).map(Json)
}

#[utoipa::path(post, path = "/moves/{id}/approve", tag = "environments", responses((status = 200, body = MoveView), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such move on the caller's side"), (status = 409, body = super::ErrorBody)))]
pub async fn approve(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MoveView>> {
    decide(&st, &op, &id, true).await
}

#[utoipa::path(post, path = "/moves/{id}/reject", tag = "environments", responses((status = 200, body = MoveView), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such move on the caller's side"), (status = 409, body = super::ErrorBody)))]
pub async fn reject(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MoveView>> {
    decide(&st, &op, &id, false).await
}

#[derive(Deserialize)]
pub struct UploadQuery {
    /// The file's name as the operator has it: it must be exactly `usermapping.csv`.
    pub file_name: String,
}

#[utoipa::path(put, path = "/environments/{id}/usermapping", tag = "environments",
    params(("file_name" = String, Query, description = "must be usermapping.csv")),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = Uploaded), (status = 400, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such environment, or another tenant's"), (status = 409, body = super::ErrorBody)))]
pub async fn upload_mapping(
    op: Operator,
    State(st): State<AppState>,
    Path(env_id): Path<String>,
    Query(q): Query<UploadQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Uploaded>> {
    let _g = st.moves.lock(op.role.tenant().unwrap_or_default()).await;
    let (env, mine) = own_environment(
        &st,
        &op,
        &env_id,
        "only the source tenant's admins upload the user mapping",
    )
    .await?;
    let mine = mine.as_str();
    let now = st.clock.now_ms();
    let moves: Vec<Move> = all(&st, DocKind::EnvMove).await?;
    let Some(mut m) = moves
        .into_iter()
        .find(|m| m.environment == env.id && !m.request.state_at(now).is_final())
    else {
        return Err(ApiError::Conflict(format!(
            "`{env_id}` has no move request"
        )));
    };
    let users = usermapping::validate(&q.file_name, &body)
        .map_err(|msgs| ApiError::BadRequest(msgs.join("\n")))?
        .len();
    m.request.upload_mapping(now).map_err(not_now)?;
    m.mapping = Some(String::from_utf8_lossy(&body).into_owned());
    m.errors = None;
    save(&st, DocKind::EnvMove, &m.source_migration_id, &m).await?;
    act(
        &st,
        &op,
        Some(mine),
        "env.move.upload-mapping",
        &m.source_migration_id,
        format!("{users} users"),
    )
    .await?;
    Ok(Json(Uploaded {
        migration_id: m.source_migration_id,
        users,
    }))
}

#[utoipa::path(post, path = "/moves/{id}/prepare", tag = "environments",
    responses((status = 202, body = Accepted), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such move on the caller's side"), (status = 409, body = super::ErrorBody)))]
pub async fn prepare(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    step(
        &st,
        &op,
        &id,
        Side::Source,
        Request::start_prepare,
        "env.move.prepare",
        |_| String::new(),
    )
    .await?;
    let st2 = st.clone();
    let id2 = id.clone();
    tokio::spawn(async move {
        if let Err(e) = run_prepare(st2, id2.clone()).await {
            tracing::error!(migration = %id2, error = %e, "validation failed to run");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            code: 202,
            description: "Accepted".into(),
        }),
    ))
}

#[utoipa::path(get, path = "/moves/{id}/status", tag = "environments", responses((status = 200, body = MoveStatus), (status = 404, body = super::ErrorBody)))]
pub async fn status(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MoveStatus>> {
    let m = if op.role.tenant().is_none() {
        // A ferry admin sees every move, by either id.
        let moves: Vec<Move> = all(&st, DocKind::EnvMove).await?;
        moves
            .into_iter()
            .find(|m| m.source_migration_id == id || m.target_migration_id == id)
            .ok_or_else(|| ApiError::NotFound(format!("there is no move `{id}`")))?
    } else {
        find_either(&st, &op, &id).await?
    };
    let now = st.clock.now_ms();
    Ok(Json(MoveStatus {
        state: m.request.state_at(now),
        status: m.request.status_line(now, &errors_url(&id)),
        progress: progress(&m, now),
        migration_id: id,
    }))
}

#[utoipa::path(get, path = "/moves/{id}/errors", tag = "environments",
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = super::ErrorBody)))]
pub async fn errors(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl axum::response::IntoResponse> {
    // Either side reads it by its own id: the target's admins are the ones who can create the
    // destination users a failed validation names.
    let m = find_either(&st, &op, &id).await?;
    let Some(e) = m.errors else {
        return Err(ApiError::NotFound(format!(
            "`{id}` has no error file (no failed validation)"
        )));
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"usermapping-errors.csv\"",
            ),
        ],
        e,
    ))
}

#[utoipa::path(post, path = "/moves/{id}/migrate", tag = "environments",
    responses((status = 200, body = Migrated), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such move on the caller's side"), (status = 409, body = super::ErrorBody)))]
pub async fn migrate(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Migrated>> {
    let _g = st.moves.lock(op.role.tenant().unwrap_or_default()).await;
    let (mut m, read) = find_read(&st, &op, &id, Side::Source).await?;
    let now = st.clock.now_ms();
    m.request.start_migrate(now).map_err(not_now)?;
    m.migrating_on = Some(st.engine.server_id.clone());
    let envs: Vec<Environment> = all(&st, DocKind::Environment).await?;
    let Some(env) = envs.into_iter().find(|e| e.id == m.environment) else {
        return Err(ApiError::Conflict(format!(
            "`{}` is no longer registered",
            m.environment
        )));
    };
    // This server's claim on the hand-over, held (renewed) until it ends: another server's sweep
    // rolls the move back only once the claim lapsed, i.e. when this server died.
    let Some(_claim) = MoveClaim::take(&st, &id).await? else {
        return Err(ApiError::Conflict(format!(
            "`{id}` is being handed over by another server"
        )));
    };
    // Only one server starts the hand-over: the move is `migrating` from here, and a cancel or
    // a second migrate read before this is refused by its own swap.
    let read = swap(&st, &id, &read, &m).await?;
    act(
        &st,
        &op,
        Some(&m.source_tenant),
        "env.move.migrate",
        &id,
        "started".into(),
    )
    .await?;
    // Administration mode on for the move.
    let mut during = env.clone();
    during.administration_mode = true;
    save(&st, DocKind::Environment, &env.id, &during).await?;

    let result = async {
        let text = m.mapping.clone().unwrap_or_default();
        let rows = usermapping::validate(usermapping::FILE_NAME, text.as_bytes())
            .map_err(|e| ApiError::Conflict(e.join("; ")))?;
        let tenants: Vec<Tenant> = all(&st, DocKind::Tenant).await?;
        let mut mailboxes = rustc_hash::FxHashSet::default();
        for d in tenants
            .iter()
            .filter(|t| t.id == m.target_tenant)
            .flat_map(|t| t.directories.iter())
        {
            for o in st.store.load_objects(d).await? {
                if let (Some(upn), Some(_)) = (&o.upn, &o.mail) {
                    mailboxes.insert(upn.to_ascii_lowercase());
                }
            }
        }
        let remnant = format!("{}-{}", env.id, &id[..8]);
        let mut fail = None;
        let moved = envmove::move_environment(
            &env,
            &m.target_tenant,
            &remnant,
            &rows,
            |upn| mailboxes.contains(&upn.to_ascii_lowercase()),
            |c| match migration_id() {
                Ok(g) => format!(
                    "{}/workflows/{g}/triggers/manual/run",
                    env.url.trim_end_matches('/')
                ),
                Err(e) => {
                    fail = Some(e);
                    format!("{}/{}", env.url, c.name)
                }
            },
        );
        if let Some(e) = fail {
            return Err(e);
        }
        if st.clock.take_migrate_fault() {
            return Err(ApiError::Internal(
                "injected fault: the records could not be remapped".into(),
            ));
        }
        // The hand-over is one transaction: the environment as the target's, the source's
        // remnant, the request completed, the records remapped, the audit line. A failure (or
        // a kill) anywhere before its commit leaves none of it.
        let mut done = m.clone();
        let now = st.clock.now_ms();
        done.request.finish_migrate(now, true).map_err(not_now)?;
        done.checklist = moved.checklist.clone();
        done.last_error = None;
        done.migrating_on = None;
        let environments = vec![
            (moved.source_remnant.id.clone(), to_json(&moved.source_remnant)?),
            (moved.target.id.clone(), to_json(&moved.target)?),
        ];
        let body = to_json(&done)?;
        let mut line = AuditEntry {
            id: 0,
            at: now,
            actor: op.name.clone(),
            tenant: Some(m.source_tenant.clone()),
            action: "env.move.migrate".into(),
            subject: id.clone(),
            detail: format!(
                "completed: {} users migrated, {} not in the mapping file, {} application users in it not mapped",
                moved.migrated_users, moved.not_in_mapping, moved.application_users_in_mapping
            ),
            address: op.origin.address.clone(),
            request_id: Some(op.origin.request_id.clone()),
        };
        let handed = st
            .store
            .hand_over(&ferry_store::HandOver {
                environments: &environments,
                move_name: &id,
                move_read: &read,
                move_body: &body,
                records_env: &env.id,
                remap: &moved.remap,
                audit: &line,
                now,
            })
            .await?
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "`{id}` changed during its hand-over (another server acted on it); nothing was handed over"
                ))
            })?;
        // Committed with its audit line, which the file sink gets now.
        line.id = handed.audit_id;
        st.audit.appended(&line);
        Ok::<_, ApiError>((done, moved, handed.records))
    }
    .await;
    let now = st.clock.now_ms();
    match result {
        Ok((done, moved, remapped)) => {
            let view = shown(&done, &op.role, now)?;
            Ok(Json(Migrated {
                view,
                checklist: moved.checklist,
                migrated_users: moved.migrated_users,
                left_out_users: moved.left_out_users,
                not_in_mapping: moved.not_in_mapping,
                application_users_in_mapping: moved.application_users_in_mapping,
                records_remapped: remapped,
            }))
        }
        Err(e) => {
            // Nothing was handed over: the environment out of administration mode, the request
            // validated again.
            save(&st, DocKind::Environment, &env.id, &env).await?;
            m.request.finish_migrate(now, false).map_err(not_now)?;
            m.last_error = Some(e.to_string());
            m.migrating_on = None;
            swap(&st, &id, &read, &m).await?;
            act(
                &st,
                &op,
                Some(&m.source_tenant),
                "env.move.migrate",
                &id,
                format!("rolled back: {e}"),
            )
            .await?;
            Err(e)
        }
    }
}

#[utoipa::path(post, path = "/moves/{id}/cancel", tag = "environments", responses((status = 200, body = MoveView), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such move on the caller's side"), (status = 409, body = super::ErrorBody)))]
pub async fn cancel(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MoveView>> {
    let (m, now) = step(
        &st,
        &op,
        &id,
        Side::Source,
        Request::cancel,
        "env.move.cancel",
        |_| String::new(),
    )
    .await?;
    shown(&m, &op.role, now).map(Json)
}

#[utoipa::path(delete, path = "/moves/{id}", tag = "environments", responses((status = 204), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "no such move on the caller's side"), (status = 409, body = super::ErrorBody)))]
pub async fn delete_move(
    op: Operator,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let _g = st.moves.lock(op.role.tenant().unwrap_or_default()).await;
    let m = find(&st, &op, &id, Side::Source).await?;
    if m.request.state == MoveState::Migrating {
        return Err(ApiError::Conflict(format!(
            "`{id}` is being migrated; it cannot be deleted now"
        )));
    }
    st.store.delete_document(DocKind::EnvMove, &id).await?;
    act(
        &st,
        &op,
        Some(&m.source_tenant),
        "env.move.delete",
        &id,
        m.environment,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditParams {
    /// Lines per answer (default 200, at most 10000).
    pub limit: Option<i64>,
    /// Only lines recorded at or after this moment: epoch milliseconds, or RFC 3339
    /// (`2026-12-07T03:00:00Z`). With `since` or `after` the lines come oldest first.
    pub since: Option<String>,
    /// Only lines after this id in the order asked (the `X-Next-After`, the last id of the
    /// previous answer): page through an export until an answer is shorter than `limit`.
    pub after: Option<i64>,
    /// Only lines of this action (`sync.run`, `batch.put`, …).
    pub action: Option<String>,
    /// Only lines of this operator.
    pub actor: Option<String>,
    /// `at`, the only column: lines are in the order they were recorded (by id).
    pub sort: Option<String>,
    /// `desc` (newest first) or `asc`; by default newest first, oldest first with `since` or
    /// `after` (an export's paging).
    pub order: Option<String>,
}

impl AuditParams {
    /// The store's query for the operator `op` (a tenant admin's own tenant only), `limit` by
    /// default, at most `max`.
    fn query(&self, op: &Operator, limit: i64, max: i64) -> ApiResult<ferry_store::AuditQuery> {
        let since = self.since.as_deref().map(parse_since).transpose()?;
        super::sort_param(self.sort.as_deref(), &[("at", ())])?;
        super::text_param("action", &self.action)?;
        super::text_param("actor", &self.actor)?;
        let default = if since.is_some() || self.after.is_some() {
            ferry_store::Direction::Asc
        } else {
            ferry_store::Direction::Desc
        };
        let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        Ok(ferry_store::AuditQuery {
            tenant: op.role.tenant().map(str::to_string),
            since,
            after: self.after,
            limit: self.limit.unwrap_or(limit).clamp(1, max),
            action: nonempty(&self.action),
            actor: nonempty(&self.actor),
            newest_first: super::order_param(self.order.as_deref(), default)?.is_desc(),
        })
    }
}

/// `since` as epoch ms: digits are milliseconds, anything else RFC 3339.
fn parse_since(v: &str) -> ApiResult<i64> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            super::bad_param(
                "since",
                v,
                "epoch milliseconds or an RFC 3339 time such as 2026-12-07T03:00:00Z",
            )
        })
}

#[utoipa::path(get, path = "/audit", tag = "environments", params(AuditParams),
    responses((status = 200, body = Vec<AuditEntry>, description = "newest first by default; with `since` or `after` (and no `order`) oldest first",
        headers(("X-Total-Count" = i64, description = "how many lines the filters find in all, every page"),
            ("X-Next-After" = String, description = "on a full page: the `after=` of the next one"))),
        (status = 400, body = super::ErrorBody, description = "an unknown `sort` or `order`, or a bad `since`")))]
pub async fn audit_trail(
    op: Operator,
    State(st): State<AppState>,
    Query(p): Query<AuditParams>,
) -> ApiResult<(axum::http::HeaderMap, Json<Vec<AuditEntry>>)> {
    let q = p.query(&op, 200, 10_000)?;
    let total = st.store.count_audit(&q).await?;
    let rows = st.store.audit_page(&q).await?;
    let next = (rows.len() as i64 == q.limit)
        .then(|| rows.last().map(|a| a.id.to_string()))
        .flatten();
    Ok((super::list_headers(total, next), Json(rows)))
}

/// The most lines one audit export holds; `after=` exports the rest.
const AUDIT_EXPORT_MAX: i64 = 1_000_000;

#[utoipa::path(get, path = "/audit/export", tag = "environments", params(AuditParams),
    responses((status = 200, description = "the filtered lines as CSV, in the order asked (at most 1,000,000; `limit` fewer); cells that would read as a spreadsheet formula start with `'`",
        content((String = "text/csv")),
        headers(("X-Total-Count" = i64, description = "how many lines the filters find in all"))),
        (status = 400, body = super::ErrorBody)))]
pub async fn audit_export(
    op: Operator,
    State(st): State<AppState>,
    Query(p): Query<AuditParams>,
) -> ApiResult<axum::response::Response> {
    let q = p.query(&op, AUDIT_EXPORT_MAX, AUDIT_EXPORT_MAX)?;
    let total = st.store.count_audit(&q).await?;
    let rows = st.store.audit_page(&q).await?;
    let o = |s: &Option<String>| s.clone().unwrap_or_default();
    super::csv_response(
        "audit.csv",
        total,
        &[
            "id",
            "at_ms",
            "actor",
            "tenant",
            "action",
            "subject",
            "detail",
            "address",
            "request_id",
        ],
        rows.iter().map(|a| {
            vec![
                a.id.to_string(),
                a.at.to_string(),
                a.actor.clone(),
                o(&a.tenant),
                a.action.clone(),
                a.subject.clone(),
                a.detail.clone(),
                o(&a.address),
                o(&a.request_id),
            ]
        }),
    )
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/tenants", get(tenants))
        .route("/tenants/{id}", put(put_tenant))
        .route("/environments", get(environments))
        .route(
            "/environments/{id}",
            get(get_environment).put(put_environment),
        )
        .route("/environments/{id}/moves", post(submit))
        .route("/environments/{id}/records", get(records).post(add_records))
        .route("/environments/{id}/usermapping", put(upload_mapping))
        .route("/moves", get(moves))
        .route("/moves/approvals", get(approvals))
        .route("/moves/{id}", axum::routing::delete(delete_move))
        .route("/moves/{id}/approve", post(approve))
        .route("/moves/{id}/reject", post(reject))
        .route("/moves/{id}/prepare", post(prepare))
        .route("/moves/{id}/status", get(status))
        .route("/moves/{id}/errors", get(errors))
        .route("/moves/{id}/migrate", post(migrate))
        .route("/moves/{id}/cancel", post(cancel))
        .route("/audit", get(audit_trail))
        .route("/audit/export", get(audit_export))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Would catch: a validation's progress outliving it. A request cancelled while its
    /// validation ran keeps the last figure in its document (the validation's end, which clears
    /// it, is refused on a cancelled request), and its status and the moves list showed it for
    /// good, as if the validation still ran.
    #[test]
    fn progress_is_shown_while_validating_only() {
        let mut m = Move {
            source_migration_id: "s-1".into(),
            target_migration_id: "t-1".into(),
            environment: "sales".into(),
            source_tenant: "contoso".into(),
            target_tenant: "fabrikam".into(),
            request: Request::submit(0),
            warnings: Vec::new(),
            mapping: None,
            errors: None,
            mapped_users: 0,
            checklist: Vec::new(),
            last_error: None,
            migrating_on: None,
            progress: Some("validated 10,000 of 40,000 users".into()),
        };
        m.request.state = MoveState::Validating;
        let shown = |m: &Move| {
            view(m, &Role::TenantAdmin("contoso".into()), 1)
                .unwrap()
                .progress
        };
        assert_eq!(
            shown(&m).as_deref(),
            Some("validated 10,000 of 40,000 users")
        );
        m.request.cancel(1).unwrap();
        assert_eq!(shown(&m), None, "cancelled while validating");
        assert_eq!(progress(&m, 1), None, "the status of a cancelled request");
    }
}

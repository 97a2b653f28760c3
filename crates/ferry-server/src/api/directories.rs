//! `GET /directories`, `POST /directories/{name}/test`.

use super::{ApiError, ApiResult};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use ferry_core::ObjectKind;
use ferry_store::DirectoryState;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct DirectoryInfo {
    pub name: String,
    /// `ldap` or `file`.
    pub kind: String,
    pub object_types: Vec<ObjectKind>,
    /// Where it is: the LDAP URL and base DN, or the snapshot path.
    pub location: String,
    /// The last import, if any.
    pub state: Option<DirectoryState>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KindCount {
    pub kind: ObjectKind,
    pub count: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub directory: String,
    pub ok: bool,
    /// What was checked, in order; on failure the last line says what is wrong.
    pub checks: Vec<String>,
    pub counts: Vec<KindCount>,
}

#[utoipa::path(get, path = "/directories", tag = "directories", responses((status = 200, body = Vec<DirectoryInfo>), (status = 401, body = super::ErrorBody)))]
pub async fn list(_: AdminAuth, State(st): State<AppState>) -> ApiResult<Json<Vec<DirectoryInfo>>> {
    let mut out = Vec::new();
    for d in &st.settings.config.directories {
        let location = match d {
            ferry_core::config::DirectoryConfig::Ldap(l) => format!("{} ({})", l.url, l.base_dn),
            ferry_core::config::DirectoryConfig::File(f) => {
                st.settings.base.join(&f.path).display().to_string()
            }
            ferry_core::config::DirectoryConfig::Graph(g) => {
                format!("tenant {} at {}", g.tenant_id, g.graph_url())
            }
        };
        out.push(DirectoryInfo {
            name: d.name().into(),
            kind: d.kind().into(),
            object_types: d.object_types().to_vec(),
            location,
            state: st.store.directory_state(d.name()).await?,
        });
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/directories/{name}/test", tag = "directories", params(("name" = String, Path)),
    responses((status = 200, body = TestResult, description = "`ok` is false when a check failed; `checks` ends with what to fix"), (status = 404, body = super::ErrorBody)))]
pub async fn test(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<TestResult>> {
    let d = st
        .settings
        .config
        .directory(&name)
        .ok_or_else(|| ApiError::NotFound(format!("directory `{name}` is not configured")))?;
    let c = ferry_directory::connect(
        d,
        &st.settings.base,
        st.settings.secrets.get(&name).cloned(),
    );
    Ok(Json(match c.test().await {
        Ok(r) => TestResult {
            directory: name,
            ok: r.ok,
            checks: r.checks,
            counts: r
                .counts
                .into_iter()
                .map(|(kind, count)| KindCount { kind, count })
                .collect(),
        },
        Err(e) => TestResult {
            directory: name,
            ok: false,
            checks: vec![e.to_string()],
            counts: vec![],
        },
    }))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/directories", get(list))
        .route("/directories/{name}/test", post(test))
}

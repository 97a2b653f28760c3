//! `GET /directories`, `POST /directories/{name}/test`.

use super::{ApiError, ApiResult};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{get, post};
pub use ferry_core::wire::{DirectoryInfo, KindCount, TestResult};

#[utoipa::path(get, path = "/directories", tag = "directories", responses((status = 200, body = Vec<DirectoryInfo>), (status = 401, body = super::ErrorBody)))]
pub async fn list(_: AdminAuth, State(st): State<AppState>) -> ApiResult<Json<Vec<DirectoryInfo>>> {
    let mut out = Vec::new();
    let settings = st.settings.get();
    for d in &settings.config.directories {
        let location = match d {
            ferry_core::config::DirectoryConfig::Ldap(l) => format!("{} ({})", l.url, l.base_dn),
            ferry_core::config::DirectoryConfig::File(f) => {
                settings.base.join(&f.path).display().to_string()
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
            origin: if settings.console_directories.contains(d.name()) {
                "console".into()
            } else {
                "file".into()
            },
            settings: {
                let mut d = d.clone();
                crate::settings::take_credential(&mut d);
                let mut v = serde_json::to_value(&d).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.retain(|_, v| !v.is_null());
                }
                v
            },
            has_credential: settings.secrets.contains_key(d.name()),
        });
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/directories/{name}/test", tag = "directories", params(("name" = String, Path)),
    responses((status = 200, body = TestResult, description = "`ok` is false when a check failed; `checks` ends with what to fix"), (status = 404, body = super::ErrorBody)))]
pub async fn test(
    op: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<TestResult>> {
    let settings = st.settings.get();
    let d = settings
        .config
        .directory(&name)
        .ok_or_else(|| ApiError::NotFound(format!("directory `{name}` is not configured")))?;
    let c = ferry_directory::connect(d, &settings.base, settings.secrets.get(&name).cloned());
    let result = match c.test().await {
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
    };
    // An act (it signs in to the directory with the stored credential): audited with its
    // outcome, not the checks' text.
    crate::audit::act(
        &st,
        &op,
        None,
        "directory.test",
        &result.directory,
        if result.ok { "ok" } else { "failed" }.to_string(),
    )
    .await?;
    Ok(Json(result))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/directories", get(list))
        .route("/directories/{name}/test", post(test))
}

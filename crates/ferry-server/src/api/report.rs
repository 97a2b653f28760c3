//! The single object report: everything ferry knows about one object.

use super::{ApiError, ApiResult};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::routing::get;
use ferry_core::plan::Level;
use ferry_store::{DecisionRow, HistoryRow, LogQuery, StoredLog, StoredObject};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ObjectParams {
    /// A name, UPN, mail, object id or SID (names, UPNs and mail ignore case).
    pub q: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    pub profile: String,
    /// `source` or `target`: the object's side in this profile.
    pub side: String,
    pub decision: DecisionRow,
    /// The rule that decided it, described.
    pub rule: Option<String>,
    /// The object on the other side, when matched.
    pub counterpart: Option<StoredObject>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ObjectReport {
    pub directory: String,
    pub object: ferry_core::model::DirObject,
    pub profiles: Vec<ProfileView>,
    /// How its decisions changed across cycles.
    pub history: Vec<HistoryRow>,
    /// The newest message log entries about it.
    pub logs: Vec<StoredLog>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ObjectReports {
    pub query: String,
    pub objects: Vec<ObjectReport>,
}

#[utoipa::path(get, path = "/report/object", tag = "report", params(ObjectParams), responses((status = 200, body = ObjectReports), (status = 400, body = super::ErrorBody)))]
pub async fn object(
    _: AdminAuth,
    State(st): State<AppState>,
    Query(p): Query<ObjectParams>,
) -> ApiResult<Json<ObjectReports>> {
    let q = p.q.trim().to_string();
    if q.is_empty() {
        return Err(ApiError::BadRequest(
            "query parameter `q` is empty: give a name, UPN, mail, object id or SID".into(),
        ));
    }
    let mut objects = Vec::new();
    for found in st.store.find_objects(&q, 20).await? {
        let o = &found.object;
        let mut profiles = Vec::new();
        let mut history = Vec::new();
        let settings = st.settings.get();
        for d in st.store.decisions_for_object(o.kind, &o.id).await? {
            let Some(cfg) = settings.config.profile(&d.profile) else {
                continue;
            };
            let side = if d.source_id == o.id && cfg.source == found.directory {
                "source"
            } else if d.target_id.as_deref() == Some(o.id.as_str()) && cfg.target == found.directory
            {
                "target"
            } else {
                continue;
            };
            let rules = st
                .store
                .plan(&d.profile)
                .await?
                .map(|p| p.rules)
                .unwrap_or_default();
            let (other_dir, other_id) = if side == "source" {
                (&cfg.target, d.target_id.clone())
            } else {
                (&cfg.source, Some(d.source_id.clone()))
            };
            let counterpart = match other_id {
                Some(id) => st
                    .store
                    .find_objects(&id, 5)
                    .await?
                    .into_iter()
                    .find(|s| &s.directory == other_dir && s.object.id == id),
                None => None,
            };
            if side == "source" {
                history.extend(
                    st.store
                        .history(o.kind, &o.id)
                        .await?
                        .into_iter()
                        .filter(|h| h.profile == d.profile),
                );
            }
            profiles.push(ProfileView {
                profile: d.profile.clone(),
                side: side.into(),
                rule: d.rule.and_then(|r| rules.get(r as usize).cloned()),
                decision: d,
                counterpart,
            });
        }
        let logs = st
            .store
            .logs(&LogQuery {
                object_id: Some(o.id.clone()),
                min_level: Some(Level::Info),
                limit: 50,
                ..Default::default()
            })
            .await?;
        objects.push(ObjectReport {
            directory: found.directory.clone(),
            object: found.object,
            profiles,
            history,
            logs,
        });
    }
    Ok(Json(ObjectReports { query: q, objects }))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/report/object", get(object))
}

//! The single object report: everything ferry knows about one object.

use super::{ApiError, ApiResult};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::routing::get;
use ferry_core::plan::Level;
pub use ferry_core::wire::{IdentityRow, ObjectReport, ObjectReports, ProfileView};
use ferry_store::LogQuery;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ObjectParams {
    /// A name, UPN, mail, object id or SID (names, UPNs and mail ignore case).
    pub q: String,
}

/// The identity rows of a source and a target object under a profile's rules.
fn identity(
    rules: &[ferry_core::config::MatchRule],
    source: Option<&ferry_core::model::DirObject>,
    target: Option<&ferry_core::model::DirObject>,
) -> Vec<IdentityRow> {
    use ferry_core::model::AttrRef;
    let kind = source.or(target).map(|o| o.kind);
    let mut pairs: Vec<(AttrRef, AttrRef)> = [
        AttrRef::Name,
        AttrRef::Upn,
        AttrRef::Mail,
        AttrRef::Sid,
        AttrRef::UidNumber,
        AttrRef::GidNumber,
    ]
    .into_iter()
    .map(|a| (a.clone(), a))
    .collect();
    for r in rules
        .iter()
        .filter(|r| kind.is_some_and(|k| r.applies_to(k)))
    {
        let pair = (
            AttrRef::parse(&r.source_attribute),
            AttrRef::parse(&r.target_attribute),
        );
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    let values = |o: Option<&ferry_core::model::DirObject>, a: &AttrRef| {
        o.map(|o| o.values(a)).unwrap_or_default()
    };
    pairs
        .iter()
        .map(|(s, t)| IdentityRow {
            attribute: if s == t {
                s.canonical().to_string()
            } else {
                format!("{} → {}", s.canonical(), t.canonical())
            },
            source: values(source, s),
            target: values(target, t),
        })
        .filter(|r| !r.source.is_empty() || !r.target.is_empty())
        .collect()
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
            let other = counterpart.as_ref().map(|c| &c.object);
            let identity = if side == "source" {
                identity(&cfg.rules, Some(o), other)
            } else {
                identity(&cfg.rules, other, Some(o))
            };
            profiles.push(ProfileView {
                profile: d.profile.clone(),
                side: side.into(),
                identity,
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::model::{DirObject, ObjectKind};

    /// Would catch: a report that shows the target by name, id and SID only (issue 16, defect
    /// 3): every identity attribute and each rule's attribute pair is there for both sides.
    #[test]
    fn identity_rows_show_both_sides_and_every_rule_attribute() {
        let mut s = DirObject::new(ObjectKind::User, "s1", "Smith, Ann");
        s.upn = Some("ann.smith@contoso.test".into());
        s.mail = Some("ann.smith@contoso.test".into());
        s.sid = Some("S-1-5-21-1-2-3-1104".into());
        s.uid_number = Some(10_001);
        s.attrs = vec![("employeeId".into(), "E0000001".into())];
        let mut t = DirObject::new(ObjectKind::User, "t1", "Smith, Ann");
        t.upn = Some("Ann.Smith@fabrikam.test".into());
        t.sid = Some("S-1-12-1-1-2-3-4".into());
        t.uid_number = Some(200_001);
        t.attrs = vec![("extensionAttribute1".into(), "E0000001".into())];
        let rules: Vec<ferry_core::config::MatchRule> = serde_json::from_str(
            r#"[{"source_attribute": "employeeId", "target_attribute": "extensionAttribute1"}, {"source_attribute": "mail", "target_attribute": "mail"}]"#,
        )
        .unwrap();
        let rows = identity(&rules, Some(&s), Some(&t));
        let row = |a: &str| {
            rows.iter()
                .find(|r| r.attribute == a)
                .map(|r| (r.source.clone(), r.target.clone()))
        };
        assert_eq!(
            row("upn"),
            Some((
                vec!["ann.smith@contoso.test".into()],
                vec!["Ann.Smith@fabrikam.test".into()]
            ))
        );
        assert_eq!(
            row("mail"),
            Some((vec!["ann.smith@contoso.test".into()], vec![]))
        );
        assert_eq!(
            row("sid"),
            Some((
                vec!["S-1-5-21-1-2-3-1104".into()],
                vec!["S-1-12-1-1-2-3-4".into()]
            ))
        );
        assert_eq!(
            row("uid_number"),
            Some((vec!["10001".into()], vec!["200001".into()]))
        );
        assert_eq!(
            row("employeeId → extensionAttribute1"),
            Some((vec!["E0000001".into()], vec!["E0000001".into()]))
        );
        assert_eq!(
            rows.iter().filter(|r| r.attribute == "mail").count(),
            1,
            "a rule's pair is listed once"
        );
        // A target with no source: its side only.
        let rows = identity(&rules, None, Some(&t));
        assert!(rows.iter().all(|r| r.source.is_empty()) && !rows.is_empty());
    }
}

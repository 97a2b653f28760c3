//! The single object report: everything ferry knows about one object.

use super::{ApiError, ApiResult};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::routing::get;
use ferry_core::ObjectKind;
use ferry_core::plan::Level;
pub use ferry_core::wire::{
    Candidate, DecisionRow, HistoryRow, IdentityRow, ObjectReport, ObjectReports, ProfileView,
    StoredObject,
};
use ferry_store::LogQuery;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ObjectParams {
    /// A name, UPN, mail, object id or SID (names, UPNs and mail ignore case).
    pub q: String,
    /// Look at every stored object (on SQLite a scan: about 0.3 s at a million objects), not
    /// only those the translation table's decisions name (default false; see `every_object`).
    pub every: Option<bool>,
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

/// The candidates of `decisions` that are ambiguous (their candidate targets) or in conflict
/// (the other sources claiming the same target), read by id, each with the value of the
/// attribute its rule compares on that side: what tied them. One read per directory and kind.
pub(crate) async fn candidates(
    st: &AppState,
    cfg: &ferry_core::config::SyncProfile,
    plan_rules: &[String],
    decisions: &[DecisionRow],
) -> ApiResult<Vec<Candidate>> {
    use ferry_core::model::AttrRef;
    use ferry_core::plan::Status;
    let rules = cfg.effective_rules();
    // (directory, kind) → ids to read.
    let mut wanted: std::collections::BTreeMap<(&str, ObjectKind), Vec<&str>> = Default::default();
    let side = |d: &DecisionRow| match d.status {
        Status::Ambiguous => Some(("target", cfg.target.as_str())),
        Status::Conflict => Some(("source", cfg.source.as_str())),
        _ => None,
    };
    for d in decisions {
        if let Some((_, dir)) = side(d) {
            wanted
                .entry((dir, d.kind))
                .or_default()
                .extend(d.candidates.iter().map(String::as_str));
        }
    }
    let mut found: std::collections::HashMap<
        (&str, ObjectKind, String),
        ferry_core::model::DirObject,
    > = Default::default();
    for ((dir, kind), mut ids) in wanted {
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(500) {
            for o in st.store.objects_by_id(dir, kind, chunk).await? {
                found.insert((dir, kind, o.id.clone()), o);
            }
        }
    }
    let mut out = Vec::new();
    for d in decisions {
        let Some((side, dir)) = side(d) else {
            continue;
        };
        let described = d.rule.and_then(|r| plan_rules.get(r as usize));
        // The configuration's rule at that position, when it is still the one the plan used.
        let rule = d
            .rule
            .and_then(|r| rules.get(r as usize))
            .filter(|r| described.is_some_and(|dsc| *dsc == r.describe()));
        let attribute = rule.map(|r| {
            AttrRef::parse(if side == "target" {
                &r.target_attribute
            } else {
                &r.source_attribute
            })
        });
        for id in &d.candidates {
            let o = found.get(&(dir, d.kind, id.clone()));
            out.push(Candidate {
                source_id: d.source_id.clone(),
                side: side.into(),
                directory: dir.into(),
                kind: d.kind,
                id: id.clone(),
                name: o.map(|o| o.name.clone()),
                upn: o.and_then(|o| o.upn.clone()),
                mail: o.and_then(|o| o.mail.clone()),
                sid: o.and_then(|o| o.sid.clone()),
                rule: described.cloned(),
                attribute: attribute.as_ref().map(|a| a.canonical().to_string()),
                values: match (o, &attribute) {
                    (Some(o), Some(a)) => o.values(a),
                    _ => Vec::new(),
                },
            });
        }
    }
    Ok(out)
}

/// When cycle `id` ran (its end, or its start while it runs); `None` once it is gone.
async fn cycle_at(st: &AppState, id: i64) -> ApiResult<Option<i64>> {
    Ok(st
        .store
        .cycle(id)
        .await?
        .map(|c| c.finished_at.unwrap_or(c.started_at)))
}

/// The report's history of one decision: a line for the cycle that first made it (saying what
/// it decided, when nothing changed since), then the stored lines of its changes. A cycle stores
/// no line for a new decision (a first cycle of a million objects would write a million), so
/// without the first line a user matched since cycle 1 read "no changes recorded".
fn history_of(
    d: &DecisionRow,
    rule: Option<&str>,
    first_at: Option<i64>,
    stored: Vec<HistoryRow>,
) -> Vec<HistoryRow> {
    let later = stored.iter().any(|h| h.cycle_id > d.first_cycle);
    let change = if later {
        "first decided (the lines below say what it was and how it changed)".to_string()
    } else {
        let target = d.target_id.as_deref().map(|id| {
            (
                d.target_upn
                    .as_deref()
                    .or(d.target_mail.as_deref())
                    .or(d.target_name.as_deref())
                    .unwrap_or(id),
                id,
            )
        });
        let candidates: Vec<&str> = d.candidates.iter().map(String::as_str).collect();
        format!(
            "first decided: {}",
            ferry_core::plan::describe(d.status, target, rule.unwrap_or_default(), &candidates)
        )
    };
    let mut out = stored;
    out.push(HistoryRow {
        profile: d.profile.clone(),
        cycle_id: d.first_cycle,
        at: first_at.unwrap_or_default(),
        change,
    });
    // Stable: lines of an earlier life of the decision (removed, then back) stay before it.
    out.sort_by_key(|h| h.cycle_id);
    out
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
    let (found, every_object) = if p.every.unwrap_or(false) {
        (st.store.find_objects(&q, 20).await?, true)
    } else {
        st.store.report_objects(&q, 20).await?
    };
    for found in found {
        let o = &found.object;
        let mut profiles = Vec::new();
        let mut history = Vec::new();
        let mut told = std::collections::HashSet::new();
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
            // By the unique key: exact, and one indexed read on either backend.
            let counterpart = match other_id {
                Some(id) => st
                    .store
                    .objects_by_id(other_dir, d.kind, &[id.as_str()])
                    .await?
                    .into_iter()
                    .next()
                    .map(|object| StoredObject {
                        directory: other_dir.clone(),
                        object,
                    }),
                None => None,
            };
            let first_at = cycle_at(&st, d.first_cycle).await?;
            let decided_at = if d.changed_cycle == d.first_cycle {
                first_at
            } else {
                cycle_at(&st, d.changed_cycle).await?
            };
            let rule = d.rule.and_then(|r| rules.get(r as usize).cloned());
            // Each decision's history once (the object may be the target of several sources).
            if told.insert((d.profile.clone(), d.source_id.clone())) {
                let stored = st
                    .store
                    .history(d.kind, &d.source_id)
                    .await?
                    .into_iter()
                    .filter(|h| h.profile == d.profile)
                    .collect();
                history.extend(history_of(&d, rule.as_deref(), first_at, stored));
            }
            let tied = candidates(&st, cfg, &rules, std::slice::from_ref(&d)).await?;
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
                rule,
                decision: d,
                counterpart,
                first_at,
                decided_at,
                candidates: tied,
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
    Ok(Json(ObjectReports {
        query: q,
        objects,
        every_object,
    }))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/report/object", get(object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::model::{DirObject, ObjectKind};

    fn row(status: ferry_core::plan::Status, first: i64, changed: i64) -> DecisionRow {
        DecisionRow {
            profile: "users".into(),
            kind: ObjectKind::User,
            source_id: "s1".into(),
            status,
            rule: Some(0),
            rule_name: None,
            source_name: "Smith, Ann".into(),
            source_upn: None,
            source_mail: None,
            source_sid: None,
            source_uid: None,
            source_gid: None,
            target_id: Some("t1".into()),
            target_name: Some("Smith, Ann".into()),
            target_upn: None,
            target_mail: Some("ann.smith@fabrikam.test".into()),
            target_sid: None,
            target_uid: None,
            target_gid: None,
            candidates: vec![],
            first_cycle: first,
            changed_cycle: changed,
        }
    }

    /// Would catch: "No changes recorded" for an object matched since cycle 1 (a cycle stores
    /// no line for a new decision), a first line that claims the current decision was the first
    /// when later lines say it changed, lines of an earlier life of the decision put after it.
    #[test]
    fn history_starts_at_the_first_cycle() {
        use ferry_core::plan::Status;
        let h = history_of(
            &row(Status::Matched, 1, 1),
            Some("mail → mail"),
            Some(5),
            vec![],
        );
        assert_eq!(
            (h.len(), h[0].cycle_id, h[0].at, h[0].change.as_str()),
            (
                1,
                1,
                5,
                "first decided: matched to ann.smith@fabrikam.test (t1) by rule mail → mail"
            )
        );
        let line = |cycle: i64, change: &str| HistoryRow {
            profile: "users".into(),
            cycle_id: cycle,
            at: cycle * 10,
            change: change.into(),
        };
        let h = history_of(
            &row(Status::Matched, 3, 7),
            Some("mail → mail"),
            None,
            vec![
                line(2, "left the source directory or the profile's scope"),
                line(7, "unmatched → matched to ann.smith@fabrikam.test (t1)"),
            ],
        );
        let cycles: Vec<i64> = h.iter().map(|x| x.cycle_id).collect();
        assert_eq!(cycles, [2, 3, 7]);
        assert!(h[1].change.starts_with("first decided ("), "{h:?}");
        assert_eq!(h[1].at, 0, "a cycle no longer stored has no time");
    }

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

//! Export: users created with a generated initial password (handed back, never logged), security
//! groups, attribute updates and membership changes, all through `$batch`.

use super::*;

/// A generated initial password: 20 characters with upper and lower case, digits and symbols
/// (Entra's complexity rule asks for three of the four).
pub(super) fn initial_password() -> Secret {
    pub(super) const SETS: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!#%+-=?@^_",
    ];
    let mut r = [0u8; 20];
    if getrandom::fill(&mut r).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos());
        for (i, b) in r.iter_mut().enumerate() {
            *b = (t >> (i % 16 * 8)) as u8 ^ (i as u8).wrapping_mul(97);
        }
    }
    let p: String = r
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let set = SETS[if i < 4 { i } else { *b as usize % 4 }];
            set[*b as usize % set.len()] as char
        })
        .collect();
    Secret::new(p)
}

/// Graph's name for a ferry or directory attribute, or None when it cannot be written.
pub(super) fn graph_attr(name: &str) -> Option<String> {
    Some(match AttrRef::parse(name) {
        AttrRef::Name => "displayName".into(),
        AttrRef::Upn => "userPrincipalName".into(),
        AttrRef::Mail => "mail".into(),
        AttrRef::Other(n) => match n.as_str() {
            // Read-only or computed in Graph.
            "proxyAddresses"
            | "securityIdentifier"
            | "onPremisesSecurityIdentifier"
            | "onPremisesImmutableId"
            | "deviceId"
            | "trustType"
            | "objectClass"
            | "dn" => {
                return None;
            }
            _ => n,
        },
        _ => return None,
    })
}

/// A JSON value for an attribute: booleans stay booleans, multi-valued ones are arrays.
pub(super) fn graph_value(attr: &str, v: &[String]) -> Value {
    match (attr, v) {
        ("accountEnabled" | "securityEnabled" | "mailEnabled", [one]) => {
            Value::Bool(one.eq_ignore_ascii_case("true"))
        }
        ("businessPhones" | "otherMails" | "imAddresses", _) => json!(v),
        (_, []) => Value::Null,
        (_, [one]) => Value::String(one.clone()),
        _ => json!(v),
    }
}

/// A mailNickname from a UPN or name: the characters Graph accepts, at most 64.
pub(super) fn nickname(s: &str) -> String {
    let local = s.split('@').next().unwrap_or(s);
    let n: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if n.is_empty() { "user".into() } else { n }
}

impl GraphConnector {
    /// Applies an export's writes: users and groups created, attributes updated, members
    /// added and removed, all through `$batch`.
    pub(super) async fn export_writes(
        &self,
        writes: &[Write],
        targets: &[DirObject],
    ) -> Result<ExportReport, DirectoryError> {
        let mut report = ExportReport::default();
        let current: FxHashMap<&str, &DirObject> =
            targets.iter().map(|o| (o.id.as_str(), o)).collect();
        // 1. Creates, 20 per round trip.
        let mut creates = Vec::new();
        let mut meta = Vec::new();
        for w in writes {
            if let Write::Create {
                kind,
                name,
                attributes,
                members,
                source_id,
            } = w
            {
                match self.create_request(*kind, name, attributes) {
                    Ok((rq, pw)) => {
                        creates.push(rq);
                        meta.push((w, pw, members, source_id));
                    }
                    Err(msg) => {
                        report.logs.push(LogEntry::error(
                            "export",
                            format!("create of {kind} {source_id} failed: {msg}"),
                        ));
                        report.failed.push((source_id.clone(), msg));
                    }
                }
            }
        }
        let answers = self.batch(&creates).await?;
        let mut member_reqs: Vec<(String, BatchReq)> = Vec::new();
        for ((w, pw, members, source_id), (status, body)) in meta.into_iter().zip(answers) {
            if (200..300).contains(&status) {
                let id = body["id"].as_str().unwrap_or_default().to_string();
                report.applied += 1;
                let shown = body["userPrincipalName"]
                    .as_str()
                    .or(body["displayName"].as_str())
                    .unwrap_or_default();
                report.logs.push(LogEntry::info(
                    "created",
                    format!("created {} {shown} ({id}) for {source_id}", w.kind()),
                ));
                if let Some((upn, pw)) = pw {
                    report.initial_passwords.push((upn, pw));
                }
                for rq in self.member_requests(&id, members, &[]) {
                    member_reqs.push((source_id.clone(), rq));
                }
            } else {
                let msg = batch_error(status, &body);
                report.logs.push(LogEntry::error(
                    "export",
                    format!("create of {} {source_id} failed: {msg}", w.kind()),
                ));
                report.failed.push((source_id.clone(), msg));
            }
        }
        // 2. Updates: attributes by PATCH, members by $ref.
        let mut updates: Vec<(&Write, BatchReq)> = Vec::new();
        for w in writes {
            if let Write::Update {
                kind,
                target_id,
                changes,
                source_id,
                ..
            } = w
            {
                if let Some(rq) = Self::update_request(*kind, target_id, changes) {
                    updates.push((w, rq));
                }
                for c in changes.iter().filter(|c| c.attribute == "members") {
                    let now: FxHashSet<&String> = current
                        .get(target_id.as_str())
                        .map(|o| o.members.iter().collect())
                        .unwrap_or_default();
                    let add: Vec<String> =
                        c.new.iter().filter(|m| !now.contains(m)).cloned().collect();
                    let remove: Vec<String> = c
                        .old
                        .iter()
                        .filter(|m| !c.new.contains(m) && now.contains(m))
                        .cloned()
                        .collect();
                    for rq in self.member_requests(target_id, &add, &remove) {
                        member_reqs.push((source_id.clone(), rq));
                    }
                }
            }
        }
        let reqs: Vec<BatchReq> = updates.iter().map(|(_, r)| r.clone()).collect();
        let answers = self.batch(&reqs).await?;
        let mut update_failed: FxHashSet<String> = FxHashSet::default();
        for ((w, rq), (status, body)) in updates.into_iter().zip(answers) {
            if (200..300).contains(&status) {
                report.logs.push(LogEntry::info(
                    "updated",
                    format!("updated {} {} ({})", w.kind(), rq.url, w.source_id()),
                ));
            } else {
                let msg = batch_error(status, &body);
                report.logs.push(LogEntry::error(
                    "export",
                    format!("update of {} {} failed: {msg}", w.kind(), w.source_id()),
                ));
                update_failed.insert(w.source_id().to_string());
                report.failed.push((w.source_id().to_string(), msg));
            }
        }
        let reqs: Vec<BatchReq> = member_reqs.iter().map(|(_, r)| r.clone()).collect();
        let answers = self.batch(&reqs).await?;
        let mut changed = 0;
        for ((source_id, rq), (status, body)) in member_reqs.iter().zip(answers) {
            // Adding a member that is already there is not a failure.
            let already = status == 400
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("already exist"));
            if (200..300).contains(&status) || already || (status == 404 && rq.method == "DELETE") {
                changed += 1;
            } else {
                let msg = batch_error(status, &body);
                report.logs.push(LogEntry::error(
                    "export",
                    format!(
                        "membership change {} {} for {source_id} failed: {msg}",
                        rq.method, rq.url
                    ),
                ));
                update_failed.insert(source_id.clone());
                report.failed.push((source_id.clone(), msg));
            }
        }
        // An update is applied when its attributes and its membership changes all went through.
        report.applied += writes
            .iter()
            .filter(|w| matches!(w, Write::Update { .. }) && !update_failed.contains(w.source_id()))
            .count();
        if changed > 0 {
            report.logs.push(LogEntry::info(
                "updated",
                format!("{changed} group membership change(s) applied"),
            ));
        }
        report.logs.extend(self.take_throttle_logs());
        Ok(report)
    }

    /// The writes of one export as `$batch` requests, with what to do with each answer.
    pub(super) fn create_request(
        &self,
        kind: ObjectKind,
        name: &str,
        attributes: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<(BatchReq, Option<(String, Secret)>), String> {
        let mut body = serde_json::Map::new();
        for (k, v) in attributes {
            if let Some(a) = graph_attr(k)
                && !v.is_empty()
            {
                body.insert(a.clone(), graph_value(&a, v));
            }
        }
        body.entry("displayName")
            .or_insert_with(|| Value::String(name.to_string()));
        match kind {
            ObjectKind::User => {
                let upn = match body.get("userPrincipalName").and_then(Value::as_str) {
                    Some(u) => u.to_string(),
                    None => {
                        let domain = self
                            .cfg
                            .upn_domain
                            .clone()
                            .or_else(|| {
                                body.get("mail")
                                    .and_then(Value::as_str)
                                    .and_then(|m| m.split_once('@'))
                                    .map(|(_, d)| d.to_string())
                            })
                            .ok_or("no userPrincipalName: map `upn` in the profile's attributes, or set upn_domain on the target directory")?;
                        let u = format!("{}@{domain}", nickname(name));
                        body.insert("userPrincipalName".into(), Value::String(u.clone()));
                        u
                    }
                };
                body.entry("mailNickname")
                    .or_insert_with(|| Value::String(nickname(&upn)));
                body.entry("accountEnabled").or_insert(Value::Bool(true));
                let password = initial_password();
                body.insert(
                    "passwordProfile".into(),
                    json!({"forceChangePasswordNextSignIn": true, "password": password.expose()}),
                );
                Ok((
                    BatchReq {
                        method: "POST",
                        url: "/users".into(),
                        body: Some(Value::Object(body)),
                    },
                    Some((upn, password)),
                ))
            }
            ObjectKind::Group => {
                body.entry("mailNickname")
                    .or_insert_with(|| Value::String(nickname(name)));
                body.entry("mailEnabled").or_insert(Value::Bool(false));
                body.entry("securityEnabled").or_insert(Value::Bool(true));
                Ok((
                    BatchReq {
                        method: "POST",
                        url: "/groups".into(),
                        body: Some(Value::Object(body)),
                    },
                    None,
                ))
            }
            ObjectKind::Device => Err(
                "devices cannot be created through Graph: they register themselves when they join the tenant"
                    .into(),
            ),
        }
    }

    pub(super) fn member_requests(
        &self,
        group: &str,
        add: &[String],
        remove: &[String],
    ) -> Vec<BatchReq> {
        let graph = self.url("");
        add.iter()
            .map(|m| BatchReq {
                method: "POST",
                url: format!("/groups/{group}/members/$ref"),
                body: Some(json!({"@odata.id": format!("{graph}/directoryObjects/{m}")})),
            })
            .chain(remove.iter().map(|m| BatchReq {
                method: "DELETE",
                url: format!("/groups/{group}/members/{m}/$ref"),
                body: None,
            }))
            .collect()
    }

    pub(super) fn update_request(
        kind: ObjectKind,
        target: &str,
        changes: &[AttrChange],
    ) -> Option<BatchReq> {
        let mut body = serde_json::Map::new();
        for c in changes {
            if c.attribute == "members" {
                continue;
            }
            if let Some(a) = graph_attr(&c.attribute) {
                body.insert(a.clone(), graph_value(&a, &c.new));
            }
        }
        let (res, _) = Self::resource(kind);
        (!body.is_empty()).then(|| BatchReq {
            method: "PATCH",
            url: format!("/{res}/{target}"),
            body: Some(Value::Object(body)),
        })
    }
}

//! Import: full (deltaLink first, then the list, members through `$batch`) and delta (removed
//! objects, changed groups' members read again).

use super::*;

impl GraphConnector {
    pub(super) fn resource(kind: ObjectKind) -> (&'static str, &'static str) {
        match kind {
            ObjectKind::User => ("users", USER_SELECT),
            ObjectKind::Group => ("groups", GROUP_SELECT),
            ObjectKind::Device => ("devices", DEVICE_SELECT),
        }
    }

    /// Reads the direct members of these groups (object ids), 20 groups per `$batch`.
    pub(super) async fn members_of(
        &self,
        groups: &[String],
    ) -> Result<FxHashMap<String, Vec<String>>, DirectoryError> {
        let top = self.cfg.page_size;
        let reqs: Vec<BatchReq> = groups
            .iter()
            .map(|g| BatchReq {
                method: "GET",
                url: format!("/groups/{g}/members?$select=id&$top={top}"),
                body: None,
            })
            .collect();
        let answers = self.batch(&reqs).await?;
        let mut out = FxHashMap::default();
        for (g, (status, body)) in groups.iter().zip(answers) {
            if status == 404 {
                // Deleted since it was listed: the next import drops it.
                continue;
            }
            if !(200..300).contains(&status) {
                let url = self.url(&format!("/groups/{g}/members"));
                return Err(self.fail(
                    &url,
                    &Answer {
                        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                        body: serde_json::to_vec(&body).unwrap_or_default(),
                    },
                ));
            }
            let page: Page = serde_json::from_value(body).unwrap_or_default();
            let mut ids: Vec<String> = page.value.into_iter().map(|m| m.id).collect();
            if let Some(next) = page.next_link {
                self.pages(next, |v| ids.extend(v.into_iter().map(|m| m.id)))
                    .await?;
            }
            out.insert(g.clone(), ids);
        }
        Ok(out)
    }

    pub(super) fn to_object(kind: ObjectKind, g: GObject) -> DirObject {
        let name = g
            .display_name
            .clone()
            .or_else(|| g.user_principal_name.clone())
            .unwrap_or_else(|| g.id.clone());
        let mut o = DirObject::new(kind, g.id, name);
        o.upn = g.user_principal_name;
        o.mail = g.mail;
        o.sid = g.security_identifier.or_else(|| match kind {
            ObjectKind::User | ObjectKind::Group => entra_sid_from_object_id(&o.id).ok(),
            ObjectKind::Device => None,
        });
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                o.attrs.push((k.to_string(), v));
            }
        };
        put(
            "onPremisesSecurityIdentifier",
            g.on_premises_security_identifier,
        );
        put("onPremisesImmutableId", g.on_premises_immutable_id);
        put("employeeId", g.employee_id);
        put("givenName", g.given_name);
        put("surname", g.surname);
        put("mailNickname", g.mail_nickname);
        put("accountEnabled", g.account_enabled.map(|b| b.to_string()));
        put("securityEnabled", g.security_enabled.map(|b| b.to_string()));
        put("mailEnabled", g.mail_enabled.map(|b| b.to_string()));
        put("deviceId", g.device_id);
        put("operatingSystem", g.operating_system);
        put("operatingSystemVersion", g.operating_system_version);
        put("trustType", g.trust_type);
        for p in g.proxy_addresses.unwrap_or_default() {
            o.attrs.push(("proxyAddresses".into(), p));
        }
        o.normalise();
        o
    }

    /// The "sync from now" deltaLink of a resource.
    pub(super) async fn latest_delta(
        &self,
        res: &str,
        select: &str,
    ) -> Result<String, DirectoryError> {
        let first = self.url(&format!("/{res}/delta?$select={select}&$deltaToken=latest"));
        self.pages(first, |_| {})
            .await?
            .ok_or_else(|| DirectoryError::Graph {
                url: format!("/{res}/delta"),
                status: 200,
                code: "noDeltaLink".into(),
                message: "the delta round ended without an @odata.deltaLink".into(),
            })
    }

    pub(super) async fn full_import(
        &self,
        kinds: &[ObjectKind],
    ) -> Result<Imported, DirectoryError> {
        let mut objects = Vec::new();
        let mut links = std::collections::BTreeMap::new();
        for &kind in kinds {
            let (res, select) = Self::resource(kind);
            // Groups track `members` too, so that a membership change surfaces in the delta.
            let delta_select = if kind == ObjectKind::Group {
                format!("{select},members")
            } else {
                select.to_string()
            };
            links.insert(
                kind.as_str().to_string(),
                self.latest_delta(res, &delta_select).await?,
            );
            let start = objects.len();
            let first = self.url(&format!(
                "/{res}?$select={select}&$top={}",
                self.cfg.page_size
            ));
            self.pages(first, |v| {
                crate::progress::add(v.len());
                objects.extend(v.into_iter().map(|g| Self::to_object(kind, g)));
            })
            .await?;
            if kind == ObjectKind::Group {
                let ids: Vec<String> = objects[start..].iter().map(|o| o.id.clone()).collect();
                let mut members = self.members_of(&ids).await?;
                for o in &mut objects[start..] {
                    o.members = members.remove(&o.id).unwrap_or_default();
                }
            }
        }
        Ok(Imported {
            objects,
            full: true,
            watermark: serde_json::to_string(&links).ok(),
            removed: Vec::new(),
            logs: Vec::new(),
        })
    }

    pub(super) async fn delta_import(
        &self,
        kinds: &[ObjectKind],
        links: std::collections::BTreeMap<String, String>,
    ) -> Result<Imported, DirectoryError> {
        let mut objects = Vec::new();
        let mut removed = Vec::new();
        let mut logs = Vec::new();
        let mut next_links = std::collections::BTreeMap::new();
        for &kind in kinds {
            let Some(link) = links.get(kind.as_str()) else {
                return Err(DirectoryError::DeltaReset {
                    url: format!("(no deltaLink stored for {kind}s)"),
                });
            };
            // Last state wins: an object may appear on several pages (Graph replays).
            let mut changed: FxHashMap<String, GObject> = FxHashMap::default();
            let mut gone: FxHashMap<String, String> = FxHashMap::default();
            let new_link = self
                .pages(link.clone(), |v| {
                    crate::progress::add(v.len());
                    for g in v {
                        if let Some(r) = &g.removed {
                            changed.remove(&g.id);
                            gone.insert(g.id.clone(), r.reason.clone());
                        } else {
                            gone.remove(&g.id);
                            changed.insert(g.id.clone(), g);
                        }
                    }
                })
                .await?;
            next_links.insert(
                kind.as_str().to_string(),
                new_link.unwrap_or_else(|| link.clone()),
            );
            let start = objects.len();
            let mut ids: Vec<String> = changed.keys().cloned().collect();
            ids.sort();
            for id in &ids {
                if let Some(g) = changed.remove(id) {
                    objects.push(Self::to_object(kind, g));
                }
            }
            if kind == ObjectKind::Group && !ids.is_empty() {
                let mut members = self.members_of(&ids).await?;
                for o in &mut objects[start..] {
                    o.members = members.remove(&o.id).unwrap_or_default();
                }
            }
            let mut gone: Vec<(String, String)> = gone.into_iter().collect();
            gone.sort();
            for (id, reason) in gone {
                logs.push(LogEntry::info(
                    "removed",
                    format!(
                        "{kind} {id} was {} in `{}`",
                        if reason == "changed" {
                            "soft-deleted (restorable for 30 days)"
                        } else {
                            "deleted"
                        },
                        self.cfg.name
                    ),
                ));
                removed.push((kind, id));
            }
        }
        Ok(Imported {
            objects,
            full: false,
            watermark: serde_json::to_string(&next_links).ok(),
            removed,
            logs,
        })
    }
}

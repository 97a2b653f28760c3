//! `kind = "ldap"`: Active Directory and RFC 4519 servers (OpenLDAP, 389-ds, …) through `ldap3`.
//!
//! Imports use the Simple Paged Results control. Identity attributes are decoded from their wire
//! form: `objectGUID` and `objectSid` are binary on AD (they may also arrive as text when the bytes
//! happen to be valid UTF-8, which is handled); OpenLDAP objects are identified by `entryUUID`.
//! Group members (`member` DNs, `memberUid` names) are resolved to the object ids of the same import.
//!
//! Deltas: the watermark is the highest `uSNChanged` (AD), `entryCSN` (OpenLDAP: microsecond
//! resolution, with an ordering rule) or, failing both, `modifyTimestamp` (one-second resolution)
//! seen. The delta filter is `>=` the watermark: re-reading the last entry is harmless, missing one
//! changed in the same instant is not. A delta cannot see deletions; the cycle runs a full import
//! every `full_import_every`, which does.

use crate::*;
use ferry_core::config::{LdapDirectory, LdapFlavor};
use ferry_core::model::AttrRef;
use ferry_core::sid::{guid_from_ms_bytes, sid_from_bytes};
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, ResultEntry, Scope, SearchEntry,
    dn_escape,
};
use rustc_hash::FxHashMap;
use std::collections::HashSet;

const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";

pub struct LdapConnector {
    cfg: LdapDirectory,
    password: Option<Secret>,
}

/// An open, bound connection.
struct Session {
    ldap: Ldap,
    flavor: LdapFlavor,
    contexts: Vec<String>,
}

impl LdapConnector {
    pub fn new(cfg: LdapDirectory, password: Option<Secret>) -> LdapConnector {
        LdapConnector { cfg, password }
    }

    fn err(&self, operation: &str, e: LdapError) -> DirectoryError {
        let url = self.cfg.url.clone();
        match e {
            LdapError::Io { source } => DirectoryError::Unreachable {
                url,
                detail: source.to_string(),
            },
            LdapError::Timeout { .. } => DirectoryError::Timeout {
                url,
                seconds: self.cfg.timeout.0.as_secs(),
            },
            LdapError::LdapResult { result } if result.rc == 49 => DirectoryError::BadCredentials {
                url,
                bind_dn: self.cfg.bind_dn.clone().unwrap_or_default(),
            },
            LdapError::LdapResult { result } => {
                let text = if result.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", result.text)
                };
                DirectoryError::Ldap {
                    url,
                    operation: operation.into(),
                    detail: format!("{} (result code {}){text}", rc_name(result.rc), result.rc),
                }
            }
            other => DirectoryError::Ldap {
                url,
                operation: operation.into(),
                detail: other.to_string(),
            },
        }
    }

    async fn open(&self) -> Result<Session, DirectoryError> {
        let timeout = self.cfg.timeout.0;
        let settings = LdapConnSettings::new().set_conn_timeout(timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(|e| self.err("connect", e))?;
        ldap3::drive!(conn);
        if let Some(dn) = &self.cfg.bind_dn {
            let pw = self
                .password
                .as_ref()
                .map(Secret::expose)
                .unwrap_or_default();
            ldap.with_timeout(timeout)
                .simple_bind(dn, pw)
                .await
                .and_then(|r| r.success())
                .map_err(|e| self.err("bind", e))?;
        }
        // The root DSE says which server this is and which naming contexts it holds.
        let (entries, _) = ldap
            .with_timeout(timeout)
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec!["supportedCapabilities", "namingContexts"],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.err("read the root DSE", e))?;
        let root = entries.into_iter().next().map(SearchEntry::construct);
        let caps = root
            .as_ref()
            .and_then(|r| r.attrs.get("supportedCapabilities"))
            .cloned()
            .unwrap_or_default();
        let contexts = root
            .as_ref()
            .and_then(|r| r.attrs.get("namingContexts"))
            .cloned()
            .unwrap_or_default();
        let flavor = match self.cfg.flavor {
            LdapFlavor::Auto if caps.iter().any(|c| c == AD_CAPABILITY) => LdapFlavor::Ad,
            LdapFlavor::Auto => LdapFlavor::Openldap,
            f => f,
        };
        Ok(Session {
            ldap,
            flavor,
            contexts,
        })
    }

    fn filter(&self, kind: ObjectKind, flavor: LdapFlavor) -> String {
        let configured = match kind {
            ObjectKind::User => &self.cfg.user_filter,
            ObjectKind::Group => &self.cfg.group_filter,
            ObjectKind::Device => &self.cfg.device_filter,
        };
        if let Some(f) = configured {
            return f.clone();
        }
        match (flavor, kind) {
            (LdapFlavor::Ad, ObjectKind::User) => "(&(objectCategory=person)(objectClass=user))",
            (LdapFlavor::Ad, ObjectKind::Group) => "(objectClass=group)",
            (LdapFlavor::Ad, ObjectKind::Device) => "(objectClass=computer)",
            (_, ObjectKind::User) => "(|(objectClass=inetOrgPerson)(objectClass=posixAccount))",
            (_, ObjectKind::Group) => "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
            (_, ObjectKind::Device) => "(|(objectClass=device)(objectClass=ipHost))",
        }
        .to_string()
    }

    /// Checks that the base DN exists, naming the server's contexts if not.
    async fn check_base(&self, s: &mut Session) -> Result<(), DirectoryError> {
        match s
            .ldap
            .with_timeout(self.cfg.timeout.0)
            .search(
                &self.cfg.base_dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["1.1"],
            )
            .await
            .and_then(|r| r.success())
        {
            Ok(_) => Ok(()),
            Err(LdapError::LdapResult { result }) if result.rc == 32 => {
                Err(DirectoryError::BadBaseDn {
                    url: self.cfg.url.clone(),
                    base_dn: self.cfg.base_dn.clone(),
                    contexts: if s.contexts.is_empty() {
                        "none announced".into()
                    } else {
                        s.contexts.join("; ")
                    },
                })
            }
            Err(e) => Err(self.err("read the base DN", e)),
        }
    }

    /// One paged search; calls `f` with each entry.
    async fn paged(
        &self,
        s: &mut Session,
        filter: &str,
        attrs: Vec<&str>,
        mut f: impl FnMut(ResultEntry),
    ) -> Result<(), DirectoryError> {
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.cfg.page_size as i32)),
        ];
        let mut stream = s
            .ldap
            .with_timeout(self.cfg.timeout.0)
            .streaming_search_with(adapters, &self.cfg.base_dn, Scope::Subtree, filter, attrs)
            .await
            .map_err(|e| self.err("search", e))?;
        loop {
            match stream.next().await {
                Ok(Some(raw)) => f(raw),
                Ok(None) => break,
                Err(e) => return Err(self.err("search", e)),
            }
        }
        stream.finish().await.success().map_err(|e| match e {
            LdapError::LdapResult { result } if result.rc == 32 => DirectoryError::BadBaseDn {
                url: self.cfg.url.clone(),
                base_dn: self.cfg.base_dn.clone(),
                contexts: s.contexts.join("; "),
            },
            e => self.err("search", e),
        })?;
        Ok(())
    }
}

fn rc_name(rc: u32) -> &'static str {
    match rc {
        1 => "operations error",
        3 => "time limit exceeded",
        4 => "size limit exceeded",
        8 => "stronger authentication required",
        10 => "referral",
        11 => "admin limit exceeded",
        12 => "unavailable critical extension",
        16 => "no such attribute",
        17 => "undefined attribute type",
        19 => "constraint violation",
        20 => "attribute or value exists",
        21 => "invalid attribute syntax",
        32 => "no such object",
        34 => "invalid DN syntax",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        64 => "naming violation",
        65 => "object class violation",
        67 => "not allowed on RDN",
        68 => "entry already exists",
        80 => "other",
        _ => "error",
    }
}

/// The bytes of an attribute that may have come back as binary or as text.
fn raw<'a>(e: &'a SearchEntry, name: &str) -> Option<&'a [u8]> {
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().map(Vec::as_slice))
        .or_else(|| {
            e.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first().map(|s| s.as_bytes()))
        })
}

/// An entry converted to an object, with what still needs the rest of the import.
#[derive(Debug)]
struct Converted {
    object: DirObject,
    /// Its uSNChanged / entryCSN / modifyTimestamp.
    watermark: Option<String>,
    /// Raw `member` DNs and `memberUid` names, resolved once every entry is read.
    member_dns: Vec<String>,
    member_uids: Vec<String>,
}

/// Decodes a raw entry (guarding against malformed BER, on which `ldap3` panics) and converts it.
fn convert(kind: ObjectKind, raw: ResultEntry) -> Result<Converted, String> {
    let entry =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(raw)))
            .map_err(|_| "the server sent a malformed entry".to_string())?;
    to_object(kind, entry)
}

/// Converts an entry, moving its values rather than copying them (this runs once per object of
/// every import).
fn to_object(kind: ObjectKind, mut e: SearchEntry) -> Result<Converted, String> {
    let id = match raw(&e, "objectGUID") {
        Some(b) => {
            Some(guid_from_ms_bytes(b).map_err(|err| format!("{}: objectGUID: {err}", e.dn))?)
        }
        None => None,
    };
    let sid = match raw(&e, "objectSid") {
        Some(b) => Some(sid_from_bytes(b).map_err(|err| format!("{}: objectSid: {err}", e.dn))?),
        None => None,
    };
    let mut o = DirObject::new(kind, String::new(), String::new());
    o.sid = sid;
    let (mut entry_uuid, mut display, mut cn, mut usn, mut csn, mut modified, mut samba_sid) =
        (None, None, None, None, None, None, None);
    let (mut member_dns, mut member_uids) = (Vec::new(), Vec::new());
    let first = |v: Vec<String>| v.into_iter().next();
    for (k, vs) in std::mem::take(&mut e.attrs) {
        let is = |n: &str| k.eq_ignore_ascii_case(n);
        if is("objectGUID") || is("objectSid") {
            // Decoded above (they arrive here when their bytes happen to be valid UTF-8).
        } else if is("entryUUID") {
            entry_uuid = first(vs);
        } else if is("userPrincipalName") {
            o.upn = first(vs);
        } else if is("mail") {
            o.mail = first(vs);
        } else if is("uidNumber") {
            o.uid_number = vs.first().and_then(|v| v.parse().ok());
        } else if is("gidNumber") {
            o.gid_number = vs.first().and_then(|v| v.parse().ok());
        } else if is("member") {
            member_dns = vs;
        } else if is("memberUid") {
            member_uids = vs;
        } else if is("displayName") {
            display = first(vs);
        } else if is("uSNChanged") {
            usn = first(vs);
        } else if is("entryCSN") {
            csn = first(vs);
        } else if is("modifyTimestamp") {
            modified = first(vs);
        } else if is("sambaSID") {
            samba_sid = first(vs);
        } else {
            if is("cn") {
                cn = vs.first().cloned();
            }
            let n = vs.len();
            let mut it = vs.into_iter();
            for _ in 1..n {
                if let Some(v) = it.next() {
                    o.attrs.push((k.clone(), v));
                }
            }
            if let Some(v) = it.next() {
                o.attrs.push((k, v));
            }
        }
    }
    o.id = id.or(entry_uuid).unwrap_or_else(|| e.dn.clone());
    o.name = display.or(cn).unwrap_or_else(|| e.dn.clone());
    if o.sid.is_none() {
        o.sid = samba_sid;
    }
    o.dn = Some(e.dn);
    o.normalise();
    Ok(Converted {
        object: o,
        watermark: usn.or(csn).or(modified),
        member_dns,
        member_uids,
    })
}

/// Larger of two watermarks: numerically for uSNChanged, textually for GeneralizedTime (same format).
fn max_watermark(a: Option<String>, b: &str) -> Option<String> {
    match a {
        None => Some(b.to_string()),
        Some(a) => {
            let bigger = match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(x), Ok(y)) => y > x,
                _ => b > a.as_str(),
            };
            Some(if bigger { b.to_string() } else { a })
        }
    }
}

/// The LDAP name of a ferry attribute when writing, per flavor; None when the server has no such
/// attribute (OpenLDAP has no userPrincipalName).
fn ldap_attr(name: &str, flavor: LdapFlavor) -> Option<String> {
    Some(match AttrRef::parse(name) {
        AttrRef::Name => "cn".into(),
        AttrRef::Upn if flavor == LdapFlavor::Ad => "userPrincipalName".into(),
        AttrRef::Upn => return None,
        AttrRef::Mail => "mail".into(),
        AttrRef::UidNumber => "uidNumber".into(),
        AttrRef::GidNumber => "gidNumber".into(),
        AttrRef::Id | AttrRef::Sid | AttrRef::Dn => return None,
        AttrRef::Other(n) => n,
    })
}

#[async_trait]
impl Connector for LdapConnector {
    async fn import(
        &self,
        kinds: &[ObjectKind],
        since: Option<&str>,
    ) -> Result<Imported, DirectoryError> {
        let mut s = self.open().await?;
        self.check_base(&mut s).await?;
        let mut objects = Vec::new();
        let mut watermark: Option<String> = since.map(str::to_string);
        let mut logs = Vec::new();
        let mut members: Vec<(usize, Vec<String>, Vec<String>)> = Vec::new();
        let attrs = vec![
            "*",
            "entryUUID",
            "entryCSN",
            "modifyTimestamp",
            "uSNChanged",
            "objectGUID",
            "objectSid",
        ];
        for &kind in kinds {
            let base = self.filter(kind, s.flavor);
            let filter = match since {
                None => base,
                Some(w) if s.flavor == LdapFlavor::Ad => {
                    let next = w.parse::<u64>().map(|n| n + 1).unwrap_or(0);
                    format!("(&{base}(uSNChanged>={next}))")
                }
                Some(w) if w.contains('#') => {
                    format!("(&{base}(entryCSN>={}))", ldap3::ldap_escape(w))
                }
                Some(w) => format!("(&{base}(modifyTimestamp>={}))", ldap3::ldap_escape(w)),
            };
            let mut converted = Vec::new();
            self.paged(&mut s, &filter, attrs.clone(), |raw| {
                converted.push(convert(kind, raw))
            })
            .await?;
            let mut bad = Vec::new();
            for c in converted {
                match c {
                    Ok(Converted {
                        object: o,
                        watermark: w,
                        member_dns: dns,
                        member_uids: uids,
                    }) => {
                        if let Some(w) = w {
                            watermark = max_watermark(watermark.take(), &w);
                        }
                        if !dns.is_empty() || !uids.is_empty() {
                            members.push((objects.len(), dns, uids));
                        }
                        objects.push(o);
                    }
                    Err(msg) => bad.push(msg),
                }
            }
            for msg in bad {
                logs.push(LogEntry::warning(
                    "import",
                    format!("skipped an entry that could not be read: {msg}"),
                ));
            }
        }
        // Resolve member DNs and uids to object ids of this import; keep unknown references as given.
        let by_dn: FxHashMap<String, usize> = objects
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.dn.as_ref().map(|d| (d.to_ascii_lowercase(), i)))
            .collect();
        let by_uid: FxHashMap<&str, usize> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.kind == ObjectKind::User)
            .filter_map(|(i, o)| o.attr("uid").map(|u| (u, i)))
            .collect();
        let resolved: Vec<(usize, Vec<String>)> = members
            .into_iter()
            .map(|(i, dns, uids)| {
                let mut ids: Vec<String> = dns
                    .iter()
                    .map(|d| {
                        by_dn
                            .get(&d.to_ascii_lowercase())
                            .map_or_else(|| d.clone(), |&j| objects[j].id.clone())
                    })
                    .collect();
                ids.extend(uids.iter().map(|u| {
                    by_uid
                        .get(u.as_str())
                        .map_or_else(|| u.clone(), |&j| objects[j].id.clone())
                }));
                ids.dedup();
                (i, ids)
            })
            .collect();
        for (i, ids) in resolved {
            objects[i].members = ids;
        }
        let _ = s.ldap.unbind().await;
        Ok(Imported {
            objects,
            full: since.is_none(),
            watermark,
            logs,
        })
    }

    async fn export(
        &self,
        writes: &[Write],
        targets: &[DirObject],
    ) -> Result<ExportReport, DirectoryError> {
        let mut s = self.open().await?;
        let dn_of: FxHashMap<&str, &str> = targets
            .iter()
            .filter_map(|o| o.dn.as_deref().map(|d| (o.id.as_str(), d)))
            .collect();
        let mut report = ExportReport::default();
        let timeout = self.cfg.timeout.0;
        for w in writes {
            let result: Result<String, String> = match w {
                Write::Create {
                    kind,
                    name,
                    attributes,
                    members,
                    ..
                } => {
                    let ad = s.flavor == LdapFlavor::Ad;
                    let (classes, container) = match kind {
                        ObjectKind::Group => (
                            self.cfg.group_object_classes.clone().unwrap_or_else(|| {
                                vec![if ad { "group" } else { "groupOfNames" }.into()]
                            }),
                            self.cfg
                                .group_container
                                .clone()
                                .unwrap_or_else(|| self.cfg.base_dn.clone()),
                        ),
                        _ => (
                            self.cfg.user_object_classes.clone().unwrap_or_else(|| {
                                vec![if ad { "user" } else { "inetOrgPerson" }.into()]
                            }),
                            self.cfg
                                .user_container
                                .clone()
                                .unwrap_or_else(|| self.cfg.base_dn.clone()),
                        ),
                    };
                    let mut attrs: Vec<(String, HashSet<String>)> =
                        vec![("objectClass".into(), classes.iter().cloned().collect())];
                    for (k, v) in attributes {
                        if let Some(a) = ldap_attr(k, s.flavor)
                            && !v.is_empty()
                        {
                            attrs.push((a, v.iter().cloned().collect()));
                        }
                    }
                    if !attrs.iter().any(|(k, _)| k == "cn") {
                        attrs.push(("cn".into(), HashSet::from([name.clone()])));
                    }
                    let cn = attrs
                        .iter()
                        .find(|(k, _)| k == "cn")
                        .and_then(|(_, v)| v.iter().next().cloned())
                        .unwrap_or_else(|| name.clone());
                    let dn = format!("cn={},{container}", dn_escape(cn.as_str()));
                    if classes.iter().any(|c| {
                        c.eq_ignore_ascii_case("inetOrgPerson") || c.eq_ignore_ascii_case("person")
                    }) && !attrs.iter().any(|(k, _)| k.eq_ignore_ascii_case("sn"))
                    {
                        attrs.push(("sn".into(), HashSet::from([cn.clone()])));
                    }
                    if *kind == ObjectKind::Group {
                        let mut m: HashSet<String> = members
                            .iter()
                            .filter_map(|id| dn_of.get(id.as_str()).map(|d| d.to_string()))
                            .collect();
                        if m.is_empty()
                            && classes
                                .iter()
                                .any(|c| c.eq_ignore_ascii_case("groupOfNames"))
                        {
                            // groupOfNames must have a member; the group itself stands in until one is added.
                            m.insert(dn.clone());
                        }
                        if !m.is_empty() {
                            attrs.push(("member".into(), m));
                        }
                    }
                    s.ldap
                        .with_timeout(timeout)
                        .add(&dn, attrs)
                        .await
                        .and_then(|r| r.success())
                        .map(|_| format!("created {dn}"))
                        .map_err(|e| self.err("add", e).to_string())
                }
                Write::Update {
                    target_id, changes, ..
                } => match dn_of.get(target_id.as_str()) {
                    None => Err(format!("target {target_id} has no DN (was it deleted?)")),
                    Some(dn) => {
                        let mut mods: Vec<Mod<String>> = Vec::new();
                        for c in changes {
                            if c.attribute == "members" {
                                let add: HashSet<String> = c
                                    .new
                                    .iter()
                                    .filter(|m| !c.old.contains(m))
                                    .filter_map(|id| dn_of.get(id.as_str()).map(|d| d.to_string()))
                                    .collect();
                                if !add.is_empty() {
                                    mods.push(Mod::Add("member".into(), add));
                                }
                            } else if let Some(a) = ldap_attr(&c.attribute, s.flavor) {
                                mods.push(Mod::Replace(a, c.new.iter().cloned().collect()));
                            }
                        }
                        if mods.is_empty() {
                            Ok(format!("nothing to change on {dn}"))
                        } else {
                            s.ldap
                                .with_timeout(timeout)
                                .modify(dn, mods)
                                .await
                                .and_then(|r| r.success())
                                .map(|_| format!("updated {dn}"))
                                .map_err(|e| self.err("modify", e).to_string())
                        }
                    }
                },
            };
            match result {
                Ok(msg) => {
                    report.applied += 1;
                    report.logs.push(LogEntry::info(
                        if w.op() == "create" {
                            "created"
                        } else {
                            "updated"
                        },
                        msg,
                    ));
                }
                Err(msg) => {
                    report.logs.push(LogEntry::error(
                        "export",
                        format!("{} of {} {} failed: {msg}", w.op(), w.kind(), w.source_id()),
                    ));
                    report.failed.push((w.source_id().to_string(), msg));
                }
            }
        }
        let _ = s.ldap.unbind().await;
        Ok(report)
    }

    async fn test(&self) -> Result<TestReport, DirectoryError> {
        let mut checks = vec![];
        let mut s = self.open().await?;
        checks.push(format!("connected to {}", self.cfg.url));
        checks.push(match &self.cfg.bind_dn {
            Some(dn) => format!("bound as {dn}"),
            None => "bound anonymously".into(),
        });
        checks.push(format!(
            "server type: {}",
            if s.flavor == LdapFlavor::Ad {
                "Active Directory"
            } else {
                "LDAP (RFC 4519)"
            }
        ));
        self.check_base(&mut s).await?;
        checks.push(format!("base DN {} found", self.cfg.base_dn));
        let mut counts = Vec::new();
        for &k in &self.cfg.object_types {
            let f = self.filter(k, s.flavor);
            let mut n = 0u64;
            self.paged(&mut s, &f, vec!["1.1"], |_| n += 1).await?;
            checks.push(format!("{n} {k}s match {f}"));
            counts.push((k, n));
        }
        let _ = s.ldap.unbind().await;
        Ok(TestReport {
            ok: true,
            checks,
            counts,
        })
    }

    fn supports_delta(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_compare_by_kind() {
        assert_eq!(
            max_watermark(Some("20261122040000Z".into()), "20261122035959Z").as_deref(),
            Some("20261122040000Z")
        );
        assert_eq!(
            max_watermark(Some("999".into()), "1000").as_deref(),
            Some("1000")
        );
        assert_eq!(max_watermark(None, "5").as_deref(), Some("5"));
    }

    #[test]
    fn ad_binary_identity_attributes() {
        use std::collections::HashMap;
        let guid = ferry_core::sid::guid_to_ms_bytes("73d664e4-0886-4a73-b745-c694da45ddb4")
            .unwrap()
            .to_vec();
        let sid = ferry_core::sid::sid_to_bytes("S-1-5-21-1-2-3-1104").unwrap();
        let e = SearchEntry {
            dn: "CN=Ann,OU=Staff,DC=contoso,DC=test".into(),
            attrs: HashMap::from([
                ("cn".into(), vec!["Ann".into()]),
                ("userPrincipalName".into(), vec!["ann@contoso.test".into()]),
                ("uSNChanged".into(), vec!["4711".into()]),
                (
                    "memberOf".into(),
                    vec!["CN=Sales,DC=contoso,DC=test".into()],
                ),
            ]),
            bin_attrs: HashMap::from([
                ("objectGUID".into(), vec![guid]),
                ("objectSid".into(), vec![sid]),
            ]),
        };
        let Converted {
            object: o,
            watermark: w,
            ..
        } = to_object(ObjectKind::User, e).unwrap();
        assert_eq!(o.id, "73d664e4-0886-4a73-b745-c694da45ddb4");
        assert_eq!(o.sid.as_deref(), Some("S-1-5-21-1-2-3-1104"));
        assert_eq!(o.upn.as_deref(), Some("ann@contoso.test"));
        assert_eq!(w.as_deref(), Some("4711"));
        assert_eq!(o.attr("memberOf"), Some("CN=Sales,DC=contoso,DC=test"));
        // A GUID whose bytes are valid UTF-8 arrives as text; it is decoded the same way.
        let ascii_guid = b"ABCDEFGHIJKLMNOP".to_vec();
        let e = SearchEntry {
            dn: "CN=x".into(),
            attrs: HashMap::from([(
                "objectGUID".into(),
                vec![String::from_utf8(ascii_guid.clone()).unwrap()],
            )]),
            bin_attrs: HashMap::new(),
        };
        assert_eq!(
            to_object(ObjectKind::User, e).unwrap().object.id,
            guid_from_ms_bytes(&ascii_guid).unwrap()
        );
        let bad = SearchEntry {
            dn: "CN=y".into(),
            attrs: HashMap::new(),
            bin_attrs: HashMap::from([("objectSid".into(), vec![vec![1, 9]])]),
        };
        assert!(
            to_object(ObjectKind::User, bad)
                .unwrap_err()
                .contains("objectSid")
        );
    }
}

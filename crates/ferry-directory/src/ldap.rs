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
    asn1::StructureTag, dn_escape,
};
use rustc_hash::FxHashMap;
use std::collections::HashSet;

const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";

#[derive(Clone)]
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

/// A search result entry as it came off the wire: the DN and each attribute's raw values.
#[derive(Debug)]
struct RawEntry {
    dn: String,
    attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    /// Takes the entry's parts out of `ldap3`'s BER tree without copying them (`SearchEntry`
    /// copies every value and builds two hash maps; this runs once per object of every import).
    /// A malformed entry is an error, not a panic.
    fn from_wire(tag: StructureTag) -> Result<RawEntry, String> {
        let malformed = || "the server sent a malformed entry".to_string();
        let mut parts = tag
            .match_id(4)
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(malformed)?
            .into_iter();
        let dn = parts
            .next()
            .and_then(StructureTag::expect_primitive)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(malformed)?;
        let list = parts
            .next()
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| format!("{dn}: the server sent a malformed attribute list"))?;
        let mut attrs = Vec::with_capacity(list.len());
        for attr in list {
            let bad = || format!("{dn}: the server sent a malformed attribute");
            let mut pair = attr.expect_constructed().ok_or_else(bad)?.into_iter();
            let name = pair
                .next()
                .and_then(StructureTag::expect_primitive)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad)?;
            let values = pair
                .next()
                .and_then(StructureTag::expect_constructed)
                .ok_or_else(bad)?
                .into_iter()
                .map(|v| v.expect_primitive().ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()?;
            attrs.push((name, values));
        }
        Ok(RawEntry { dn, attrs })
    }
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

/// Decodes a raw entry and converts it.
fn convert(kind: ObjectKind, raw: ResultEntry) -> Result<Converted, String> {
    to_object(kind, RawEntry::from_wire(raw.0)?)
}

/// The values of a textual attribute; values that are not UTF-8 (binary attributes such as
/// `jpegPhoto`) are not kept.
fn texts(vs: Vec<Vec<u8>>) -> Vec<String> {
    vs.into_iter()
        .filter_map(|v| String::from_utf8(v).ok())
        .collect()
}

fn first_text(vs: Vec<Vec<u8>>) -> Option<String> {
    vs.into_iter().find_map(|v| String::from_utf8(v).ok())
}

/// Converts an entry, moving its values rather than copying them.
fn to_object(kind: ObjectKind, e: RawEntry) -> Result<Converted, String> {
    let RawEntry { dn, attrs } = e;
    let mut o = DirObject::new(kind, String::new(), String::new());
    let (mut guid, mut entry_uuid, mut display, mut cn, mut samba_sid) =
        (None, None, None, None, None);
    let (mut usn, mut csn, mut modified) = (None, None, None);
    let (mut member_dns, mut member_uids) = (Vec::new(), Vec::new());
    for (k, vs) in attrs {
        let is = |n: &str| k.eq_ignore_ascii_case(n);
        if is("objectGUID") {
            if let Some(b) = vs.first() {
                guid =
                    Some(guid_from_ms_bytes(b).map_err(|err| format!("{dn}: objectGUID: {err}"))?);
            }
        } else if is("objectSid") {
            if let Some(b) = vs.first() {
                o.sid = Some(sid_from_bytes(b).map_err(|err| format!("{dn}: objectSid: {err}"))?);
            }
        } else if is("entryUUID") {
            entry_uuid = first_text(vs);
        } else if is("userPrincipalName") {
            o.upn = first_text(vs);
        } else if is("mail") {
            o.mail = first_text(vs);
        } else if is("uidNumber") {
            o.uid_number = first_text(vs).and_then(|v| v.parse().ok());
        } else if is("gidNumber") {
            o.gid_number = first_text(vs).and_then(|v| v.parse().ok());
        } else if is("member") {
            member_dns = texts(vs);
        } else if is("memberUid") {
            member_uids = texts(vs);
        } else if is("displayName") {
            display = first_text(vs);
        } else if is("uSNChanged") {
            usn = first_text(vs);
        } else if is("entryCSN") {
            csn = first_text(vs);
        } else if is("modifyTimestamp") {
            modified = first_text(vs);
        } else if is("sambaSID") {
            samba_sid = first_text(vs);
        } else {
            let mut vs = texts(vs);
            if is("cn") {
                cn = vs.first().cloned();
            }
            if let Some(last) = vs.pop() {
                o.attrs.extend(vs.into_iter().map(|v| (k.clone(), v)));
                o.attrs.push((k, last));
            }
        }
    }
    o.id = guid.or(entry_uuid).unwrap_or_else(|| dn.clone());
    o.name = display.or(cn).unwrap_or_else(|| dn.clone());
    if o.sid.is_none() {
        o.sid = samba_sid;
    }
    o.dn = Some(dn);
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

impl LdapConnector {
    /// The import proper, on the calling thread.
    async fn import_here(
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
            // Converted as they arrive (on this task, while ldap3's connection task decodes the
            // next message), straight into `objects`.
            let mut bad = Vec::new();
            self.paged(&mut s, &filter, attrs.clone(), |raw| {
                match convert(kind, raw) {
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
            })
            .await?;
            for msg in bad {
                logs.push(LogEntry::warning(
                    "import",
                    format!("skipped an entry that could not be read: {msg}"),
                ));
            }
        }
        // Resolve member DNs and uids to object ids of this import; keep unknown references as given.
        if !members.is_empty() {
            self.resolve_members(&mut objects, members);
        }
        let _ = s.ldap.unbind().await;
        Ok(Imported {
            removed: Vec::new(),
            objects,
            full: since.is_none(),
            watermark,
            logs,
        })
    }

    fn resolve_members(
        &self,
        objects: &mut [DirObject],
        members: Vec<(usize, Vec<String>, Vec<String>)>,
    ) {
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
    }
}

#[async_trait]
impl Connector for LdapConnector {
    /// Runs on a thread of its own with a single-threaded runtime: `ldap3`'s connection task
    /// decodes each message and this import converts it on the same core, so the per-value
    /// allocations are freed by the thread that made them and no wake-up crosses threads. On the
    /// 2-core benchmark machine this cut the client's CPU per 100,000 entries from ~1.1 s to
    /// ~0.8 s (docs/BENCHMARKS.md).
    async fn import(
        &self,
        kinds: &[ObjectKind],
        since: Option<&str>,
    ) -> Result<Imported, DirectoryError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (me, kinds, since) = (self.clone(), kinds.to_vec(), since.map(str::to_string));
        std::thread::Builder::new()
            .name(format!("ldap-import {}", self.cfg.name))
            .spawn(move || {
                let result = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(me.import_here(&kinds, since.as_deref())),
                    Err(e) => Err(DirectoryError::Internal(format!(
                        "could not start the import's runtime: {e}"
                    ))),
                };
                let _ = tx.send(result);
            })
            .map_err(|e| {
                DirectoryError::Internal(format!("could not start the import thread: {e}"))
            })?;
        rx.await.map_err(|_| {
            DirectoryError::Internal(format!(
                "the import of {} stopped unexpectedly",
                self.cfg.name
            ))
        })?
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

    fn entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> RawEntry {
        RawEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_vec()).collect()))
                .collect(),
        }
    }

    #[test]
    fn ad_binary_identity_attributes() {
        let guid = ferry_core::sid::guid_to_ms_bytes("73d664e4-0886-4a73-b745-c694da45ddb4")
            .unwrap()
            .to_vec();
        let sid = ferry_core::sid::sid_to_bytes("S-1-5-21-1-2-3-1104").unwrap();
        let e = entry(
            "CN=Ann,OU=Staff,DC=contoso,DC=test",
            &[
                ("cn", &[b"Ann"]),
                ("userPrincipalName", &[b"ann@contoso.test"]),
                ("uSNChanged", &[b"4711"]),
                ("memberOf", &[b"CN=Sales,DC=contoso,DC=test"]),
                ("objectGUID", &[&guid]),
                ("objectSid", &[&sid]),
                ("jpegPhoto", &[&[0xff, 0xd8, 0xff]]),
                ("objectClass", &[b"top", b"person", b"user"]),
            ],
        );
        let Converted {
            object: o,
            watermark: w,
            ..
        } = to_object(ObjectKind::User, e).unwrap();
        assert_eq!(o.id, "73d664e4-0886-4a73-b745-c694da45ddb4");
        assert_eq!(o.sid.as_deref(), Some("S-1-5-21-1-2-3-1104"));
        assert_eq!(o.upn.as_deref(), Some("ann@contoso.test"));
        assert_eq!(o.name, "Ann");
        assert_eq!(w.as_deref(), Some("4711"));
        assert_eq!(o.attr("memberOf"), Some("CN=Sales,DC=contoso,DC=test"));
        // Binary values other than the identities are not kept; multi-valued ones keep their order.
        assert_eq!(o.attr("jpegPhoto"), None);
        let classes: Vec<&str> = o
            .attrs
            .iter()
            .filter(|(k, _)| k == "objectClass")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(classes, ["top", "person", "user"]);
        // A GUID whose bytes are valid UTF-8 is decoded the same way.
        let ascii_guid = b"ABCDEFGHIJKLMNOP";
        let e = entry("CN=x", &[("objectGUID", &[ascii_guid])]);
        assert_eq!(
            to_object(ObjectKind::User, e).unwrap().object.id,
            guid_from_ms_bytes(ascii_guid).unwrap()
        );
        let bad = entry("CN=y", &[("objectSid", &[&[1, 9]])]);
        assert!(
            to_object(ObjectKind::User, bad)
                .unwrap_err()
                .contains("objectSid")
        );
    }

    #[test]
    fn malformed_wire_entries_are_errors_not_panics() {
        use ldap3::asn1::{PL, TagClass};
        let prim = |b: &[u8]| StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(b.to_vec()),
        };
        // A SearchResultEntry whose attribute list is a primitive.
        let tag = StructureTag {
            class: TagClass::Application,
            id: 4,
            payload: PL::C(vec![prim(b"cn=z"), prim(b"oops")]),
        };
        let err = RawEntry::from_wire(tag).unwrap_err();
        assert!(err.contains("cn=z") && err.contains("malformed"), "{err}");
        // Not an entry at all.
        let err = RawEntry::from_wire(prim(b"x")).unwrap_err();
        assert!(err.contains("malformed"), "{err}");
    }
}

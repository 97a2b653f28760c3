//! `kind = "ldap"`: Active Directory and RFC 4519 servers (OpenLDAP, 389-ds, …).
//!
//! Imports and connection tests read through ferry's own client ([`client`]: paged search, entries
//! decoded in place from the read buffer); exports write through `ldap3`.
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
use client::{Client, Entry, Failure, Scope};
use ferry_core::config::{LdapDirectory, LdapFlavor};
use ferry_core::model::AttrRef;
use ferry_core::sid::{guid_from_ms_bytes, sid_from_bytes};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, SearchEntry, dn_escape};
use rustc_hash::FxHashMap;
use std::collections::HashSet;

mod ber;
mod client;

const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";

#[derive(Clone)]
pub struct LdapConnector {
    cfg: LdapDirectory,
    password: Option<Secret>,
}

/// An open, bound `ldap3` connection, for writes.
struct Session {
    ldap: Ldap,
    flavor: LdapFlavor,
}

/// An open, bound connection of ferry's client, for reads.
struct Reader {
    client: Client,
    flavor: LdapFlavor,
    contexts: Vec<String>,
}

impl From<LdapError> for Failure {
    fn from(e: LdapError) -> Failure {
        match e {
            LdapError::Io { source } => Failure::Io(source),
            LdapError::Timeout { .. } => Failure::Timeout,
            LdapError::LdapResult { result } => Failure::Result {
                rc: result.rc,
                text: result.text,
                refs: result.refs,
            },
            other => Failure::Protocol(other.to_string()),
        }
    }
}

impl LdapConnector {
    pub fn new(cfg: LdapDirectory, password: Option<Secret>) -> LdapConnector {
        LdapConnector { cfg, password }
    }

    fn err(&self, operation: &str, e: impl Into<Failure>) -> DirectoryError {
        let url = self.cfg.url.clone();
        match e.into() {
            Failure::Io(source) => DirectoryError::Unreachable {
                url,
                detail: source.to_string(),
            },
            Failure::Timeout => DirectoryError::Timeout {
                url,
                seconds: self.cfg.timeout.0.as_secs(),
            },
            Failure::Result { rc: 49, .. } => DirectoryError::BadCredentials {
                url,
                bind_dn: self.cfg.bind_dn.clone().unwrap_or_default(),
            },
            Failure::Result { rc, text, refs } => {
                let text = if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                };
                let refs = if refs.is_empty() {
                    String::new()
                } else {
                    format!(" (referred to {})", refs.join(", "))
                };
                DirectoryError::Ldap {
                    url,
                    operation: operation.into(),
                    detail: format!("{} (result code {rc}){text}{refs}", rc_name(rc)),
                }
            }
            Failure::Protocol(detail) | Failure::Invalid(detail) => DirectoryError::Ldap {
                url,
                operation: operation.into(),
                detail,
            },
        }
    }

    fn password(&self) -> &str {
        self.password
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default()
    }

    fn flavor(&self, capabilities: &[String]) -> LdapFlavor {
        match self.cfg.flavor {
            LdapFlavor::Auto if capabilities.iter().any(|c| c == AD_CAPABILITY) => LdapFlavor::Ad,
            LdapFlavor::Auto => LdapFlavor::Openldap,
            f => f,
        }
    }

    /// Connects and binds through `ldap3`, for writes.
    async fn open(&self) -> Result<Session, DirectoryError> {
        let timeout = self.cfg.timeout.0;
        let settings = LdapConnSettings::new().set_conn_timeout(timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(|e| self.err("connect", e))?;
        ldap3::drive!(conn);
        if let Some(dn) = &self.cfg.bind_dn {
            ldap.with_timeout(timeout)
                .simple_bind(dn, self.password())
                .await
                .and_then(|r| r.success())
                .map_err(|e| self.err("bind", e))?;
        }
        // The root DSE says which server this is.
        let (entries, _) = ldap
            .with_timeout(timeout)
            .search(
                "",
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec!["supportedCapabilities"],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.err("read the root DSE", e))?;
        let caps = entries
            .into_iter()
            .next()
            .map(SearchEntry::construct)
            .and_then(|mut r| r.attrs.remove("supportedCapabilities"))
            .unwrap_or_default();
        Ok(Session {
            ldap,
            flavor: self.flavor(&caps),
        })
    }

    /// Connects and binds through ferry's client, for reads, and reads the root DSE: which
    /// server this is and which naming contexts it holds.
    async fn open_reader(&self) -> Result<Reader, DirectoryError> {
        let timeout = self.cfg.timeout.0;
        let mut client = Client::connect(&self.cfg.url, timeout)
            .await
            .map_err(|e| self.err("connect", e))?;
        if let Some(dn) = &self.cfg.bind_dn {
            client
                .bind(dn, self.password())
                .await
                .map_err(|e| self.err("bind", e))?;
        }
        let (mut caps, mut contexts) = (Vec::new(), Vec::new());
        client
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                &["supportedCapabilities", "namingContexts"],
                None,
                |e| {
                    let Ok(mut attrs) = e.attributes() else {
                        return;
                    };
                    while let Ok((name, values)) = client::attribute(&mut attrs) {
                        let into = if name.eq_ignore_ascii_case(b"supportedCapabilities") {
                            &mut caps
                        } else if name.eq_ignore_ascii_case(b"namingContexts") {
                            &mut contexts
                        } else {
                            continue;
                        };
                        into.extend(
                            values
                                .filter_map(Result::ok)
                                .filter_map(|v| std::str::from_utf8(v).ok())
                                .map(str::to_string),
                        );
                    }
                },
            )
            .await
            .map_err(|e| self.err("read the root DSE", e))?;
        Ok(Reader {
            client,
            flavor: self.flavor(&caps),
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

    fn bad_base(&self, r: &Reader) -> DirectoryError {
        DirectoryError::BadBaseDn {
            url: self.cfg.url.clone(),
            base_dn: self.cfg.base_dn.clone(),
            contexts: if r.contexts.is_empty() {
                "none announced".into()
            } else {
                r.contexts.join("; ")
            },
        }
    }

    /// Checks that the base DN exists, naming the server's contexts if not.
    async fn check_base(&self, r: &mut Reader) -> Result<(), DirectoryError> {
        match r
            .client
            .search(
                &self.cfg.base_dn,
                Scope::Base,
                "(objectClass=*)",
                &["1.1"],
                None,
                |_| {},
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(Failure::Result { rc: 32, .. }) => Err(self.bad_base(r)),
            Err(e) => Err(self.err("read the base DN", e)),
        }
    }

    /// One paged search under the base DN; calls `f` with each entry as it arrives.
    async fn paged(
        &self,
        r: &mut Reader,
        filter: &str,
        attrs: &[&str],
        f: impl FnMut(Entry<'_>),
    ) -> Result<(), DirectoryError> {
        let page = i32::try_from(self.cfg.page_size).unwrap_or(i32::MAX);
        match r
            .client
            .search(
                &self.cfg.base_dn,
                Scope::Subtree,
                filter,
                attrs,
                Some(page),
                f,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(Failure::Result { rc: 32, .. }) => Err(self.bad_base(r)),
            Err(e) => Err(self.err("search", e)),
        }
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

/// The attributes that conversion reads into an object's fields; the rest become `attrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Guid,
    Sid,
    EntryUuid,
    Upn,
    Mail,
    UidNumber,
    GidNumber,
    Member,
    MemberUid,
    DisplayName,
    Usn,
    Csn,
    Modified,
    SambaSid,
    Cn,
    Other,
}

impl Known {
    /// Attribute names are case-insensitive; options (`;binary`) make another attribute.
    fn of(name: &[u8]) -> Known {
        let mut low = [0u8; 20];
        let Some(l) = low.get_mut(..name.len()) else {
            return Known::Other;
        };
        for (d, s) in l.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        match &*l {
            b"objectguid" => Known::Guid,
            b"objectsid" => Known::Sid,
            b"entryuuid" => Known::EntryUuid,
            b"userprincipalname" => Known::Upn,
            b"mail" => Known::Mail,
            b"uidnumber" => Known::UidNumber,
            b"gidnumber" => Known::GidNumber,
            b"member" => Known::Member,
            b"memberuid" => Known::MemberUid,
            b"displayname" => Known::DisplayName,
            b"usnchanged" => Known::Usn,
            b"entrycsn" => Known::Csn,
            b"modifytimestamp" => Known::Modified,
            b"sambasid" => Known::SambaSid,
            b"cn" => Known::Cn,
            _ => Known::Other,
        }
    }
}

/// Calls `f` with each value that is text; values that are not UTF-8 (binary attributes such as
/// `jpegPhoto`) are passed over. Every value is checked to be well-formed.
fn each_text<'a>(
    values: client::Values<'a>,
    mut f: impl FnMut(&'a str),
) -> Result<(), ber::Malformed> {
    for v in values {
        if let Ok(t) = std::str::from_utf8(v?) {
            f(t);
        }
    }
    Ok(())
}

fn first_text(values: client::Values<'_>) -> Result<Option<&str>, ber::Malformed> {
    let mut first = None;
    each_text(values, |t| {
        first.get_or_insert(t);
    })?;
    Ok(first)
}

fn first_value(values: client::Values<'_>) -> Result<Option<&[u8]>, ber::Malformed> {
    let mut first = None;
    for v in values {
        first.get_or_insert(v?);
    }
    Ok(first)
}

fn texts(values: client::Values<'_>) -> Result<Vec<String>, ber::Malformed> {
    let mut all = Vec::new();
    each_text(values, |t| all.push(t.to_string()))?;
    Ok(all)
}

/// Converts an entry read in place from the connection's buffer: each value the object keeps is
/// copied once, into its `String`, and values it does not keep are not copied at all.
/// Multi-valued attributes keep the server's order. `scratch` collects the attributes (reused
/// from entry to entry, so each object's list is allocated once, at its size). A malformed entry
/// is an error, not a panic.
fn to_object(
    kind: ObjectKind,
    e: Entry<'_>,
    scratch: &mut Vec<(String, String)>,
) -> Result<Converted, String> {
    let dn = e
        .dn()
        .ok()
        .and_then(|d| std::str::from_utf8(d).ok())
        .ok_or_else(|| "the server sent a malformed entry".to_string())?;
    let mut list = e
        .attributes()
        .map_err(|_| format!("{dn}: the server sent a malformed attribute list"))?;
    scratch.clear();
    let mut o = DirObject::new(kind, String::new(), String::new());
    let (mut guid, mut entry_uuid, mut display, mut cn, mut samba_sid) =
        (None, None, None, None, None);
    let (mut usn, mut csn, mut modified) = (None, None, None);
    let (mut member_dns, mut member_uids) = (Vec::new(), Vec::new());
    let bad = |what: &str| format!("{dn}: the server sent a malformed {what}");
    while !list.is_empty() {
        let (name, vs) = client::attribute(&mut list).map_err(|_| bad("attribute"))?;
        let name = std::str::from_utf8(name).map_err(|_| bad("attribute name"))?;
        let known = Known::of(name.as_bytes());
        let text = |vs| {
            first_text(vs)
                .map(|t| t.map(str::to_string))
                .map_err(|_| bad(name))
        };
        match known {
            Known::Guid => {
                if let Some(b) = first_value(vs).map_err(|_| bad(name))? {
                    guid = Some(
                        guid_from_ms_bytes(b).map_err(|err| format!("{dn}: objectGUID: {err}"))?,
                    );
                }
            }
            Known::Sid => {
                if let Some(b) = first_value(vs).map_err(|_| bad(name))? {
                    o.sid =
                        Some(sid_from_bytes(b).map_err(|err| format!("{dn}: objectSid: {err}"))?);
                }
            }
            Known::EntryUuid => entry_uuid = text(vs)?,
            Known::Upn => o.upn = text(vs)?,
            Known::Mail => o.mail = text(vs)?,
            Known::UidNumber => {
                o.uid_number = first_text(vs)
                    .map_err(|_| bad(name))?
                    .and_then(|v| v.parse().ok());
            }
            Known::GidNumber => {
                o.gid_number = first_text(vs)
                    .map_err(|_| bad(name))?
                    .and_then(|v| v.parse().ok());
            }
            Known::Member => member_dns = texts(vs).map_err(|_| bad(name))?,
            Known::MemberUid => member_uids = texts(vs).map_err(|_| bad(name))?,
            Known::DisplayName => display = text(vs)?,
            Known::Usn => usn = text(vs)?,
            Known::Csn => csn = text(vs)?,
            Known::Modified => modified = text(vs)?,
            Known::SambaSid => samba_sid = text(vs)?,
            Known::Cn | Known::Other => {
                let at = scratch.len();
                each_text(vs, |t| scratch.push((name.to_string(), t.to_string())))
                    .map_err(|_| bad(name))?;
                if known == Known::Cn && cn.is_none() && scratch.len() > at {
                    cn = Some(at);
                }
            }
        }
    }
    o.name = match (display, cn) {
        (Some(d), _) => d,
        (None, Some(i)) => scratch[i].1.clone(),
        (None, None) => dn.to_string(),
    };
    o.id = guid.or(entry_uuid).unwrap_or_else(|| dn.to_string());
    if o.sid.is_none() {
        o.sid = samba_sid;
    }
    o.dn = Some(dn.to_string());
    // Moved into a list of exactly their number; `scratch` keeps its capacity for the next entry.
    o.attrs = Vec::with_capacity(scratch.len());
    o.attrs.append(scratch);
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
        let mut r = self.open_reader().await?;
        self.check_base(&mut r).await?;
        let mut objects = Vec::new();
        let mut watermark: Option<String> = since.map(str::to_string);
        let mut logs = Vec::new();
        let mut members: Vec<(usize, Vec<String>, Vec<String>)> = Vec::new();
        let attrs = [
            "*",
            "entryUUID",
            "entryCSN",
            "modifyTimestamp",
            "uSNChanged",
            "objectGUID",
            "objectSid",
        ];
        for &kind in kinds {
            let base = self.filter(kind, r.flavor);
            let filter = match since {
                None => base,
                Some(w) if r.flavor == LdapFlavor::Ad => {
                    let next = w.parse::<u64>().map(|n| n + 1).unwrap_or(0);
                    format!("(&{base}(uSNChanged>={next}))")
                }
                Some(w) if w.contains('#') => {
                    format!("(&{base}(entryCSN>={}))", ldap3::ldap_escape(w))
                }
                Some(w) => format!("(&{base}(modifyTimestamp>={}))", ldap3::ldap_escape(w)),
            };
            // Converted as they arrive, straight from the read buffer into `objects`.
            let mut bad = Vec::new();
            let mut scratch = Vec::new();
            self.paged(&mut r, &filter, &attrs, |e| {
                match to_object(kind, e, &mut scratch) {
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
                        crate::progress::add(1);
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
        r.client.unbind().await;
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
    /// Runs on a thread of its own with a single-threaded runtime: the connection is read and
    /// each entry converted on that one core, so the objects' allocations are made by the thread
    /// that keeps them and a large import does not hold up the caller's runtime
    /// (docs/BENCHMARKS.md).
    async fn import(
        &self,
        kinds: &[ObjectKind],
        since: Option<&str>,
    ) -> Result<Imported, DirectoryError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (me, kinds, since) = (self.clone(), kinds.to_vec(), since.map(str::to_string));
        let read = crate::progress::current();
        std::thread::Builder::new()
            .name(format!("ldap-import {}", self.cfg.name))
            .spawn(move || {
                let result = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(crate::progress::counting(
                        read,
                        me.import_here(&kinds, since.as_deref()),
                    )),
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
        let mut r = self.open_reader().await?;
        checks.push(format!("connected to {}", self.cfg.url));
        checks.push(match &self.cfg.bind_dn {
            Some(dn) => format!("bound as {dn}"),
            None => "bound anonymously".into(),
        });
        checks.push(format!(
            "server type: {}",
            if r.flavor == LdapFlavor::Ad {
                "Active Directory"
            } else {
                "LDAP (RFC 4519)"
            }
        ));
        self.check_base(&mut r).await?;
        checks.push(format!("base DN {} found", self.cfg.base_dn));
        let mut counts = Vec::new();
        for &k in &self.cfg.object_types {
            let f = self.filter(k, r.flavor);
            let mut n = 0u64;
            self.paged(&mut r, &f, &["1.1"], |_| n += 1).await?;
            checks.push(format!("{n} {k}s match {f}"));
            counts.push((k, n));
        }
        r.client.unbind().await;
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

    use ber::tag;

    /// A SearchResultEntry's contents as a server sends them.
    fn entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> Vec<u8> {
        let mut b = Vec::new();
        ber::octets(&mut b, tag::OCTET_STRING, dn.as_bytes());
        ber::tlv(&mut b, tag::SEQUENCE, |o| {
            for (k, vs) in attrs {
                ber::tlv(o, tag::SEQUENCE, |o| {
                    ber::octets(o, tag::OCTET_STRING, k.as_bytes());
                    ber::tlv(o, tag::SET, |o| {
                        for v in *vs {
                            ber::octets(o, tag::OCTET_STRING, v);
                        }
                    });
                });
            }
        });
        b
    }

    fn convert(kind: ObjectKind, body: &[u8]) -> Result<Converted, String> {
        to_object(kind, Entry::from_body(body), &mut Vec::new())
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
        } = convert(ObjectKind::User, &e).unwrap();
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
            convert(ObjectKind::User, &e).unwrap().object.id,
            guid_from_ms_bytes(ascii_guid).unwrap()
        );
        let bad = entry("CN=y", &[("objectSid", &[&[1, 9]])]);
        assert!(
            convert(ObjectKind::User, &bad)
                .unwrap_err()
                .contains("objectSid")
        );
    }

    #[test]
    fn realistic_entries_keep_every_value_in_order() {
        let e = entry(
            "cn=M\\C3\\BCller\\2C J\\C3\\BCrgen 7,ou=Users,ou=M\\C3\\BCnchen,dc=contoso,dc=test",
            &[
                ("objectClass", &[b"top", b"inetOrgPerson", b"posixAccount"]),
                ("CN", &["Müller, Jürgen 7".as_bytes()]),
                ("displayName", &["Müller, Jürgen".as_bytes()]),
                ("mail", &[b"j.mueller@contoso.test", b"jm@contoso.test"]),
                (
                    "seeAlso",
                    &[
                        b"cn=GG-B,ou=Groups",
                        b"cn=GG-A,ou=Groups",
                        b"cn=DL,ou=Groups",
                    ],
                ),
                ("jpegPhoto", &[&[0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]]),
                ("userCertificate;binary", &[&[0x30, 0x82, 0xff]]),
                ("description", &["Vertrieb – Außendienst".as_bytes()]),
                ("uidNumber", &[b"10007"]),
                ("entryUUID", &[b"88135a22-85ee-1041-9c97-39ee7f0270d7"]),
                ("entryCSN", &[b"20261206182809.287292Z#000000#000#000000"]),
                ("modifyTimestamp", &[b"20261206182809Z"]),
            ],
        );
        let c = convert(ObjectKind::User, &e).unwrap();
        let o = c.object;
        assert_eq!(o.name, "Müller, Jürgen");
        assert_eq!(o.id, "88135a22-85ee-1041-9c97-39ee7f0270d7");
        assert_eq!(o.mail.as_deref(), Some("j.mueller@contoso.test"));
        assert_eq!(o.uid_number, Some(10007));
        assert_eq!(
            c.watermark.as_deref(),
            Some("20261206182809.287292Z#000000#000#000000")
        );
        let pairs: Vec<(&str, &str)> = o
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("CN", "Müller, Jürgen 7"),
                ("description", "Vertrieb – Außendienst"),
                ("objectClass", "top"),
                ("objectClass", "inetOrgPerson"),
                ("objectClass", "posixAccount"),
                ("seeAlso", "cn=GG-B,ou=Groups"),
                ("seeAlso", "cn=GG-A,ou=Groups"),
                ("seeAlso", "cn=DL,ou=Groups"),
            ],
            "binary values are not kept; multi-valued ones keep the server's order"
        );
        // Without displayName the first cn names the object.
        let e = entry("cn=x", &[("cn", &[b"first", b"second"])]);
        assert_eq!(convert(ObjectKind::User, &e).unwrap().object.name, "first");
    }

    #[test]
    fn malformed_wire_entries_are_errors_not_panics() {
        // A SearchResultEntry whose attribute list is a primitive.
        let mut body = Vec::new();
        ber::octets(&mut body, tag::OCTET_STRING, b"cn=z");
        ber::octets(&mut body, tag::OCTET_STRING, b"oops");
        let err = convert(ObjectKind::User, &body).unwrap_err();
        assert!(err.contains("cn=z") && err.contains("malformed"), "{err}");
        // Not an entry at all.
        let err = convert(ObjectKind::User, &[0x02, 0x01, 0x00]).unwrap_err();
        assert!(err.contains("malformed"), "{err}");
        // Every truncation of a good entry (its outer lengths then overrun) is an error.
        let good = entry(
            "cn=y",
            &[
                ("cn", &[b"y"]),
                ("objectGUID", &[&[1; 16]]),
                ("mail", &[b"a", b"b"]),
            ],
        );
        assert!(convert(ObjectKind::User, &good).is_ok());
        for cut in 0..good.len() {
            assert!(convert(ObjectKind::User, &good[..cut]).is_err(), "{cut}");
        }
        // A value that is not an OCTET STRING.
        let mut body = Vec::new();
        ber::octets(&mut body, tag::OCTET_STRING, b"cn=w");
        ber::tlv(&mut body, tag::SEQUENCE, |o| {
            ber::tlv(o, tag::SEQUENCE, |o| {
                ber::octets(o, tag::OCTET_STRING, b"mail");
                ber::tlv(o, tag::SET, |o| ber::integer(o, tag::INTEGER, 5));
            });
        });
        let err = convert(ObjectKind::User, &body).unwrap_err();
        assert!(err.contains("cn=w") && err.contains("mail"), "{err}");
    }

    #[test]
    fn known_attribute_names_are_case_insensitive() {
        assert_eq!(Known::of(b"OBJECTGUID"), Known::Guid);
        assert_eq!(Known::of(b"userPrincipalName"), Known::Upn);
        assert_eq!(Known::of(b"mail;lang-de"), Known::Other);
        assert_eq!(Known::of(b"aVeryLongAttributeNameIndeed"), Known::Other);
        assert_eq!(Known::of(b""), Known::Other);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            // Ordinary names, with the special ones among them.
            prop_oneof![
                "[a-zA-Z][a-zA-Z0-9-]{0,24}(;binary)?",
                Just("cn".to_string()),
                Just("mail".to_string()),
                Just("member".to_string()),
                Just("entryUUID".to_string()),
            ]
        }

        fn value() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                ".{0,40}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..300),
            ]
        }

        proptest! {
            /// Every text value of an ordinary attribute comes out once, in the server's order;
            /// binary ones do not.
            #[test]
            fn values_survive_in_order(
                dn in ".{0,60}",
                attrs in proptest::collection::vec(
                    (name(), proptest::collection::vec(value(), 1..6)),
                    0..12,
                ),
            ) {
                let refs: Vec<(&str, Vec<&[u8]>)> = attrs
                    .iter()
                    .map(|(k, vs)| (k.as_str(), vs.iter().map(Vec::as_slice).collect()))
                    .collect();
                let refs: Vec<(&str, &[&[u8]])> =
                    refs.iter().map(|(k, vs)| (*k, vs.as_slice())).collect();
                let o = convert(ObjectKind::User, &entry(&dn, &refs)).unwrap().object;
                prop_assert_eq!(o.dn.as_deref(), Some(dn.as_str()));
                for (k, vs) in &attrs {
                    if Known::of(k.as_bytes()) != Known::Other {
                        continue;
                    }
                    let want: Vec<&str> = attrs
                        .iter()
                        .filter(|(k2, _)| k2 == k)
                        .flat_map(|(_, vs)| vs.iter())
                        .filter_map(|v| std::str::from_utf8(v).ok())
                        .collect();
                    let got: Vec<&str> = o
                        .attrs
                        .iter()
                        .filter(|(k2, _)| k2 == k)
                        .map(|(_, v)| v.as_str())
                        .collect();
                    prop_assert_eq!(got, want, "{} of {:?}", k, vs.len());
                }
            }

            /// Whatever the bytes, conversion answers (an object or an error) and never panics.
            #[test]
            fn garbage_is_an_error_not_a_panic(
                body in proptest::collection::vec(any::<u8>(), 0..200),
                flip in any::<(usize, u8)>(),
            ) {
                let _ = convert(ObjectKind::User, &body);
                let mut good = entry("cn=x", &[("cn", &[b"x"]), ("mail", &[b"a", b"b"])]);
                let at = flip.0 % good.len();
                good[at] ^= flip.1;
                let _ = convert(ObjectKind::User, &good);
            }
        }
    }
}

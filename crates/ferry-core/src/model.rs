//! Directory objects as ferry sees them, whatever the connector they came from.
//!
//! A [`DirObject`] keeps the identity attributes ferry reasons about in typed fields (`name`, `upn`,
//! `mail`, `sid`, `uid_number`, `gid_number`) and every other attribute the connector returned in
//! `attrs`. Attribute look-ups accept both ferry's normalised names and the directory's own names
//! (`userPrincipalName`, `objectSid`, `uidNumber`, …), case-insensitively as LDAP does.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The object types a directory imports and a profile synchronises.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    User,
    Group,
    Device,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [ObjectKind::User, ObjectKind::Group, ObjectKind::Device];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
            ObjectKind::Device => "device",
        }
    }

    pub fn parse(s: &str) -> Option<ObjectKind> {
        match s {
            "user" => Some(ObjectKind::User),
            "group" => Some(ObjectKind::Group),
            "device" => Some(ObjectKind::Device),
            _ => None,
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One user, group or device of one directory.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirObject {
    pub kind: ObjectKind,
    /// Stable identifier within the directory: objectGUID (AD), entryUUID (OpenLDAP), Entra object
    /// id, or the snapshot's `id`.
    pub id: String,
    /// Distinguished name, for LDAP objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    /// Display name (displayName, else cn, else the id).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// Security identifier in `S-1-…` form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid_number: Option<u32>,
    /// Groups: the ids of their members within the same directory (unresolved references are kept
    /// as given, e.g. a DN outside the import scope).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Every other attribute, sorted by name; a multi-valued attribute repeats its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub attrs: Vec<(String, String)>,
}

/// A normalised attribute name, resolved once per rule rather than per object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrRef {
    Id,
    Dn,
    Name,
    Upn,
    Mail,
    Sid,
    UidNumber,
    GidNumber,
    Other(String),
}

impl AttrRef {
    /// Resolves a configured attribute name; ferry's names and the common directory spellings map
    /// to the typed fields, anything else is looked up among the raw attributes.
    pub fn parse(name: &str) -> AttrRef {
        match name.to_ascii_lowercase().as_str() {
            "object_id" | "id" | "objectguid" | "entryuuid" => AttrRef::Id,
            "dn" | "distinguishedname" => AttrRef::Dn,
            "name" => AttrRef::Name,
            "upn" | "userprincipalname" => AttrRef::Upn,
            "mail" => AttrRef::Mail,
            "sid" | "objectsid" | "securityidentifier" => AttrRef::Sid,
            "uid_number" | "uidnumber" => AttrRef::UidNumber,
            "gid_number" | "gidnumber" => AttrRef::GidNumber,
            _ => AttrRef::Other(name.to_string()),
        }
    }

    /// The canonical name under which this attribute is reported.
    pub fn canonical(&self) -> &str {
        match self {
            AttrRef::Id => "object_id",
            AttrRef::Dn => "dn",
            AttrRef::Name => "name",
            AttrRef::Upn => "upn",
            AttrRef::Mail => "mail",
            AttrRef::Sid => "sid",
            AttrRef::UidNumber => "uid_number",
            AttrRef::GidNumber => "gid_number",
            AttrRef::Other(s) => s,
        }
    }
}

/// A value of an attribute: borrowed for strings, formatted for numbers.
pub enum AttrValue<'a> {
    Str(&'a str),
    Num(u32),
}

impl DirObject {
    /// Whether `key` names this object: its id exactly, or its UPN, mail, SID or name with case
    /// ignored. The single object report's look-up and overrides use this rule; among several
    /// objects a key names, [`crate::plan::resolve_keys`] prefers those named by id.
    pub fn named_by(&self, key: &str) -> bool {
        use crate::transform::lowercase;
        use std::borrow::Cow;
        if self.id == key {
            return true;
        }
        let key = lowercase(Cow::Borrowed(key));
        self.names().any(|v| lowercase(Cow::Borrowed(v)) == key)
    }

    /// What a key may name this object by besides its id (with case ignored): its UPN, mail, SID
    /// and name, those it has.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        [
            self.upn.as_deref(),
            self.mail.as_deref(),
            self.sid.as_deref(),
            Some(self.name.as_str()),
        ]
        .into_iter()
        .flatten()
    }

    pub fn new(kind: ObjectKind, id: impl Into<String>, name: impl Into<String>) -> DirObject {
        DirObject {
            kind,
            id: id.into(),
            dn: None,
            name: name.into(),
            upn: None,
            mail: None,
            sid: None,
            uid_number: None,
            gid_number: None,
            members: Vec::new(),
            attrs: Vec::new(),
        }
    }

    /// Calls `f` with each value of the attribute (none, one, or several for multi-valued ones).
    pub fn for_each_value<'a>(&'a self, attr: &AttrRef, mut f: impl FnMut(AttrValue<'a>)) {
        fn opt(o: &Option<String>) -> Option<&str> {
            o.as_deref()
        }
        match attr {
            AttrRef::Id => f(AttrValue::Str(&self.id)),
            AttrRef::Name => f(AttrValue::Str(&self.name)),
            AttrRef::Dn => opt(&self.dn).into_iter().for_each(|v| f(AttrValue::Str(v))),
            AttrRef::Upn => opt(&self.upn)
                .into_iter()
                .for_each(|v| f(AttrValue::Str(v))),
            AttrRef::Mail => opt(&self.mail)
                .into_iter()
                .for_each(|v| f(AttrValue::Str(v))),
            AttrRef::Sid => opt(&self.sid)
                .into_iter()
                .for_each(|v| f(AttrValue::Str(v))),
            AttrRef::UidNumber => self
                .uid_number
                .into_iter()
                .for_each(|v| f(AttrValue::Num(v))),
            AttrRef::GidNumber => self
                .gid_number
                .into_iter()
                .for_each(|v| f(AttrValue::Num(v))),
            AttrRef::Other(name) => {
                for (k, v) in &self.attrs {
                    if k.eq_ignore_ascii_case(name) {
                        f(AttrValue::Str(v));
                    }
                }
            }
        }
    }

    /// All values of an attribute as owned strings (for reports and exports, not hot paths).
    pub fn values(&self, attr: &AttrRef) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_value(attr, |v| {
            out.push(match v {
                AttrValue::Str(s) => s.to_string(),
                AttrValue::Num(n) => n.to_string(),
            })
        });
        out
    }

    /// The first value of a raw attribute, if any.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sorts attributes (stable for multi-values) so that equal objects compare and hash equal.
    pub fn normalise(&mut self) {
        self.attrs.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// A 64-bit content hash, used to write only objects that changed since the last import.
    pub fn content_hash(&self) -> u64 {
        let mut h = Fnv::new();
        h.write_str(self.kind.as_str());
        h.write_str(&self.id);
        h.write_opt(&self.dn);
        h.write_str(&self.name);
        h.write_opt(&self.upn);
        h.write_opt(&self.mail);
        h.write_opt(&self.sid);
        h.write_u64(self.uid_number.map_or(u64::MAX, u64::from));
        h.write_u64(self.gid_number.map_or(u64::MAX, u64::from));
        for m in &self.members {
            h.write_str(m);
        }
        h.write_u64(0xfe);
        for (k, v) in &self.attrs {
            h.write_str(k);
            h.write_str(v);
        }
        h.finish()
    }
}

/// A fast, stable 64-bit fingerprint of length-prefixed fields, eight bytes per step
/// (MurmurHash64A's mixing, murmur3's finaliser). It detects changed rows between cycles; it is not a security hash. (Its name
/// is historical: it began as FNV-1a, which hashed a byte per step and showed in profiles.)
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

/// MurmurHash64A's multiplier.
const M: u64 = 0xc6a4_a793_5bd1_e995;

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    /// MurmurHash64A's step for one word.
    #[inline]
    fn mix(&mut self, w: u64) {
        let mut k = w.wrapping_mul(M);
        k ^= k >> 47;
        k = k.wrapping_mul(M);
        self.0 = (self.0 ^ k).wrapping_mul(M);
    }
    pub fn write_bytes(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
    }
    pub fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    pub fn write_str(&mut self, s: &str) {
        self.write_u64(s.len() as u64);
        self.write_bytes(s.as_bytes());
    }
    pub fn write_opt(&mut self, s: &Option<String>) {
        match s {
            Some(s) => self.write_str(s),
            None => self.write_u64(u64::MAX),
        }
    }
    pub fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The look-up key of an identity value (id, name, UPN, mail, SID): a 64-bit hash of its lower-cased
/// form, as stored and indexed for the single object report. Equal keys are candidates, compared
/// exactly afterwards.
pub fn lookup_key(value: &str) -> i64 {
    let lower = crate::transform::lowercase(std::borrow::Cow::Borrowed(value));
    let mut f = Fnv::new();
    f.write_str(&lower);
    f.finish() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_lookup_accepts_directory_and_ferry_names() {
        let mut o = DirObject::new(ObjectKind::User, "1", "Ann");
        o.upn = Some("ann@contoso.test".into());
        o.uid_number = Some(1001);
        o.attrs = vec![
            ("proxyAddresses".into(), "smtp:a@x".into()),
            ("proxyAddresses".into(), "SMTP:b@x".into()),
        ];
        assert_eq!(
            o.values(&AttrRef::parse("userPrincipalName")),
            ["ann@contoso.test"]
        );
        assert_eq!(o.values(&AttrRef::parse("upn")), ["ann@contoso.test"]);
        assert_eq!(o.values(&AttrRef::parse("uidNumber")), ["1001"]);
        assert_eq!(
            o.values(&AttrRef::parse("PROXYADDRESSES")),
            ["smtp:a@x", "SMTP:b@x"]
        );
        assert!(o.values(&AttrRef::parse("mail")).is_empty());
        // LDAP's `uid` is the login name, not ferry's uid_number.
        assert_eq!(AttrRef::parse("uid"), AttrRef::Other("uid".into()));
    }

    #[test]
    fn fingerprint_separates_fields_and_lengths() {
        let h = |parts: &[&str]| {
            let mut f = Fnv::new();
            for p in parts {
                f.write_str(p);
            }
            f.finish()
        };
        assert_ne!(h(&["ab", "c"]), h(&["a", "bc"]));
        assert_ne!(h(&["abcdefgh"]), h(&["abcdefgh\0"]));
        assert_ne!(h(&[""]), h(&[]));
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            assert!(seen.insert(h(&[&format!("user{i}@contoso.test")])));
        }
    }

    #[test]
    fn content_hash_sees_every_field() {
        let base = DirObject::new(ObjectKind::User, "1", "Ann");
        let mut other = base.clone();
        assert_eq!(base.content_hash(), other.content_hash());
        other.mail = Some(String::new());
        assert_ne!(base.content_hash(), other.content_hash());
        let mut g = base.clone();
        g.members = vec!["a".into()];
        let mut h = base.clone();
        h.attrs = vec![("a".into(), String::new())];
        assert_ne!(g.content_hash(), h.content_hash());
    }
}

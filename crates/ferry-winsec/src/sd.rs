//! Self-relative security descriptors (MS-DTYP 2.4.6): parse from and serialize to the exact
//! bytes Windows stores.
//!
//! The model keeps everything the bytes say — reserved fields, an ACL's trailing padding, the
//! bytes of ACE types it does not know — so `parse(serialize(sd)) == sd` for every descriptor
//! and serializing a parsed Windows descriptor gives Windows' bytes back. Serialization lays the
//! parts out as Windows does (SACL, DACL, owner, group); [`Layout`] records another order when a
//! translated descriptor should keep its input's.

use crate::sid::{Sid, SidError};

/// Control bits (MS-DTYP 2.4.6).
pub mod control {
    pub const OWNER_DEFAULTED: u16 = 0x0001;
    pub const GROUP_DEFAULTED: u16 = 0x0002;
    pub const DACL_PRESENT: u16 = 0x0004;
    pub const DACL_DEFAULTED: u16 = 0x0008;
    pub const SACL_PRESENT: u16 = 0x0010;
    pub const SACL_DEFAULTED: u16 = 0x0020;
    pub const DACL_AUTO_INHERIT_REQ: u16 = 0x0100;
    pub const SACL_AUTO_INHERIT_REQ: u16 = 0x0200;
    pub const DACL_AUTO_INHERITED: u16 = 0x0400;
    pub const SACL_AUTO_INHERITED: u16 = 0x0800;
    pub const DACL_PROTECTED: u16 = 0x1000;
    pub const SACL_PROTECTED: u16 = 0x2000;
    pub const SELF_RELATIVE: u16 = 0x8000;
}

/// ACE types (MS-DTYP 2.4.4.1).
pub mod ace_type {
    pub const ACCESS_ALLOWED: u8 = 0x00;
    pub const ACCESS_DENIED: u8 = 0x01;
    pub const SYSTEM_AUDIT: u8 = 0x02;
    pub const SYSTEM_ALARM: u8 = 0x03;
    pub const ACCESS_ALLOWED_COMPOUND: u8 = 0x04;
    pub const ACCESS_ALLOWED_OBJECT: u8 = 0x05;
    pub const ACCESS_DENIED_OBJECT: u8 = 0x06;
    pub const SYSTEM_AUDIT_OBJECT: u8 = 0x07;
    pub const SYSTEM_ALARM_OBJECT: u8 = 0x08;
    pub const ACCESS_ALLOWED_CALLBACK: u8 = 0x09;
    pub const ACCESS_DENIED_CALLBACK: u8 = 0x0A;
    pub const ACCESS_ALLOWED_CALLBACK_OBJECT: u8 = 0x0B;
    pub const ACCESS_DENIED_CALLBACK_OBJECT: u8 = 0x0C;
    pub const SYSTEM_AUDIT_CALLBACK: u8 = 0x0D;
    pub const SYSTEM_ALARM_CALLBACK: u8 = 0x0E;
    pub const SYSTEM_AUDIT_CALLBACK_OBJECT: u8 = 0x0F;
    pub const SYSTEM_ALARM_CALLBACK_OBJECT: u8 = 0x10;
    pub const SYSTEM_MANDATORY_LABEL: u8 = 0x11;
    pub const SYSTEM_RESOURCE_ATTRIBUTE: u8 = 0x12;
    pub const SYSTEM_SCOPED_POLICY_ID: u8 = 0x13;
    pub const SYSTEM_PROCESS_TRUST_LABEL: u8 = 0x14;
    pub const SYSTEM_ACCESS_FILTER: u8 = 0x15;

    /// Mask, then a SID, then application data.
    pub fn is_basic(t: u8) -> bool {
        matches!(t, 0x00..=0x03 | 0x09 | 0x0A | 0x0D | 0x0E | 0x11..=0x15)
    }

    /// Mask, object flags, up to two GUIDs, a SID, then application data.
    pub fn is_object(t: u8) -> bool {
        matches!(t, 0x05..=0x08 | 0x0B | 0x0C | 0x0F | 0x10)
    }

    /// Application data is a conditional expression (when it starts with `artx`).
    pub fn is_callback(t: u8) -> bool {
        matches!(t, 0x09..=0x10)
    }
}

/// Object ACE flags: which GUIDs follow.
pub const OBJECT_TYPE_PRESENT: u32 = 0x1;
pub const INHERITED_OBJECT_TYPE_PRESENT: u32 = 0x2;

/// A GUID in its 16 wire bytes (Data1–3 little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    pub fn parse(s: &str) -> Option<Guid> {
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        let hex: Vec<u8> = s
            .split('-')
            .flat_map(|p| p.as_bytes().chunks(2))
            .map(|c| {
                std::str::from_utf8(c)
                    .ok()
                    .and_then(|c| u8::from_str_radix(c, 16).ok())
            })
            .collect::<Option<_>>()?;
        if hex.len() != 16 || !s.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()) {
            return None;
        }
        let mut g = [0u8; 16];
        g[..4].copy_from_slice(&[hex[3], hex[2], hex[1], hex[0]]);
        g[4..6].copy_from_slice(&[hex[5], hex[4]]);
        g[6..8].copy_from_slice(&[hex[7], hex[6]]);
        g[8..].copy_from_slice(&hex[8..]);
        Some(Guid(g))
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9]
        )?;
        for b in &g[10..] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What follows an ACE's 4-byte header.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AceBody {
    /// Allowed, denied, audit, alarm, callback, label, resource attribute, …: mask, SID, and
    /// whatever the ACE carries after the SID (a conditional expression, a claim, padding).
    Basic { mask: u32, sid: Sid, extra: Vec<u8> },
    /// Object ACEs (directory objects): mask, flags, optional GUIDs, SID, extra.
    Object {
        mask: u32,
        flags: u32,
        object_type: Option<Guid>,
        inherited_object_type: Option<Guid>,
        sid: Sid,
        extra: Vec<u8>,
    },
    /// An ACE type ferry does not know: its bytes, carried unchanged.
    Unknown(Vec<u8>),
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ace {
    pub ace_type: u8,
    pub flags: u8,
    pub body: AceBody,
}

impl Ace {
    pub fn sid(&self) -> Option<&Sid> {
        match &self.body {
            AceBody::Basic { sid, .. } | AceBody::Object { sid, .. } => Some(sid),
            AceBody::Unknown(_) => None,
        }
    }

    pub fn mask(&self) -> Option<u32> {
        match &self.body {
            AceBody::Basic { mask, .. } | AceBody::Object { mask, .. } => Some(*mask),
            AceBody::Unknown(_) => None,
        }
    }

    /// Bytes this ACE takes.
    pub fn len(&self) -> usize {
        4 + match &self.body {
            AceBody::Basic { sid, extra, .. } => 4 + sid.len() + extra.len(),
            AceBody::Object {
                object_type,
                inherited_object_type,
                sid,
                extra,
                ..
            } => {
                8 + 16 * (object_type.is_some() as usize + inherited_object_type.is_some() as usize)
                    + sid.len()
                    + extra.len()
            }
            AceBody::Unknown(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    fn read(b: &[u8], at: usize) -> Result<Ace, SdError> {
        let err = |what: String| SdError::Ace { at, what };
        if b.len() < 4 {
            return Err(err(format!(
                "an ACE header needs 4 bytes, {} left",
                b.len()
            )));
        }
        let ace_type = b[0];
        let flags = b[1];
        let size = u16::from_le_bytes([b[2], b[3]]) as usize;
        if size < 4 || size > b.len() {
            return Err(err(format!(
                "ACE size {size} is outside the {} bytes left in its ACL",
                b.len()
            )));
        }
        let body = &b[4..size];
        let u32_at = |o: usize| -> Result<u32, SdError> {
            body.get(o..o + 4)
                .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
                .ok_or_else(|| {
                    err(format!(
                        "ACE type {ace_type:#04x} is {size} bytes, too short"
                    ))
                })
        };
        let sid_at = |o: usize| -> Result<(Sid, usize), SdError> {
            Sid::read(body.get(o..).unwrap_or_default())
                .map_err(|e| err(format!("ACE type {ace_type:#04x}: {e}")))
        };
        let body = if ace_type::is_basic(ace_type) {
            let mask = u32_at(0)?;
            let (sid, n) = sid_at(4)?;
            AceBody::Basic {
                mask,
                sid,
                extra: body[4 + n..].to_vec(),
            }
        } else if ace_type::is_object(ace_type) {
            let mask = u32_at(0)?;
            let oflags = u32_at(4)?;
            let mut o = 8;
            let mut guid = |present: bool| -> Result<Option<Guid>, SdError> {
                if !present {
                    return Ok(None);
                }
                let g = body.get(o..o + 16).ok_or_else(|| {
                    err(format!(
                        "object ACE is {size} bytes, too short for its GUIDs"
                    ))
                })?;
                o += 16;
                let mut a = [0u8; 16];
                a.copy_from_slice(g);
                Ok(Some(Guid(a)))
            };
            let object_type = guid(oflags & OBJECT_TYPE_PRESENT != 0)?;
            let inherited_object_type = guid(oflags & INHERITED_OBJECT_TYPE_PRESENT != 0)?;
            let (sid, n) = sid_at(o)?;
            AceBody::Object {
                mask,
                flags: oflags,
                object_type,
                inherited_object_type,
                sid,
                extra: body[o + n..].to_vec(),
            }
        } else {
            AceBody::Unknown(body.to_vec())
        };
        Ok(Ace {
            ace_type,
            flags,
            body,
        })
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), SdError> {
        let len = self.len();
        let size = u16::try_from(len).map_err(|_| SdError::TooLarge("an ACE", len))?;
        out.push(self.ace_type);
        out.push(self.flags);
        out.extend_from_slice(&size.to_le_bytes());
        match &self.body {
            AceBody::Basic { mask, sid, extra } => {
                out.extend_from_slice(&mask.to_le_bytes());
                sid.write(out);
                out.extend_from_slice(extra);
            }
            AceBody::Object {
                mask,
                flags,
                object_type,
                inherited_object_type,
                sid,
                extra,
            } => {
                out.extend_from_slice(&mask.to_le_bytes());
                out.extend_from_slice(&flags.to_le_bytes());
                for g in [object_type, inherited_object_type].into_iter().flatten() {
                    out.extend_from_slice(&g.0);
                }
                sid.write(out);
                out.extend_from_slice(extra);
            }
            AceBody::Unknown(b) => out.extend_from_slice(b),
        }
        Ok(())
    }
}

/// An access control list.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Acl {
    /// 2 (`ACL_REVISION`) or 4 (`ACL_REVISION_DS`, needed for object ACEs).
    pub revision: u8,
    pub sbz1: u8,
    pub sbz2: u16,
    pub aces: Vec<Ace>,
    /// Bytes the ACL's size covers after its last ACE ("oversize" ACLs Windows pads).
    pub trailing: Vec<u8>,
}

impl Acl {
    /// An ACL with the lowest revision its ACEs allow, as Windows writes it.
    pub fn new(aces: Vec<Ace>) -> Acl {
        let revision = if aces.iter().any(|a| ace_type::is_object(a.ace_type)) {
            4
        } else {
            2
        };
        Acl {
            revision,
            sbz1: 0,
            sbz2: 0,
            aces,
            trailing: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        8 + self.aces.iter().map(Ace::len).sum::<usize>() + self.trailing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aces.is_empty()
    }

    fn read(b: &[u8], at: usize, which: &'static str) -> Result<Acl, SdError> {
        let err = |what: String| SdError::Acl { which, at, what };
        if b.len() < 8 {
            return Err(err(format!(
                "an ACL header needs 8 bytes, {} left",
                b.len()
            )));
        }
        let revision = b[0];
        if !(2..=4).contains(&revision) {
            return Err(err(format!("ACL revision {revision} is not 2, 3 or 4")));
        }
        let size = u16::from_le_bytes([b[2], b[3]]) as usize;
        let count = u16::from_le_bytes([b[4], b[5]]) as usize;
        if size < 8 || size > b.len() {
            return Err(err(format!(
                "ACL size {size} is outside the {} bytes left in the descriptor",
                b.len()
            )));
        }
        let mut aces = Vec::with_capacity(count.min(size / 8));
        let mut o = 8;
        for _ in 0..count {
            let ace = Ace::read(&b[o..size], at + o)?;
            o += ace.len();
            aces.push(ace);
        }
        Ok(Acl {
            revision,
            sbz1: b[1],
            sbz2: u16::from_le_bytes([b[6], b[7]]),
            aces,
            trailing: b[o..size].to_vec(),
        })
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), SdError> {
        let len = self.len();
        let size = u16::try_from(len).map_err(|_| SdError::TooLarge("an ACL", len))?;
        let count = u16::try_from(self.aces.len())
            .map_err(|_| SdError::TooLarge("an ACL's ACE count", len))?;
        out.push(self.revision);
        out.push(self.sbz1);
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&self.sbz2.to_le_bytes());
        for a in &self.aces {
            a.write(out)?;
        }
        out.extend_from_slice(&self.trailing);
        Ok(())
    }
}

/// A security descriptor. A DACL (or SACL) is *present* when its control bit says so; present
/// with no ACL is a NULL DACL (everyone has full access), present and empty denies everyone.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SecurityDescriptor {
    pub revision: u8,
    pub sbz1: u8,
    pub control: u16,
    pub owner: Option<Sid>,
    pub group: Option<Sid>,
    pub sacl: Option<Acl>,
    pub dacl: Option<Acl>,
}

impl Default for SecurityDescriptor {
    fn default() -> Self {
        SecurityDescriptor {
            revision: 1,
            sbz1: 0,
            control: control::SELF_RELATIVE,
            owner: None,
            group: None,
            sacl: None,
            dacl: None,
        }
    }
}

/// Why bytes are not a security descriptor. Offsets are from the descriptor's first byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdError {
    #[error("a security descriptor needs 20 bytes, this one has {0}")]
    Short(usize),
    #[error("security descriptor revision {0} is not 1")]
    Revision(u8),
    #[error("the security descriptor is not self-relative (control {0:#06x})")]
    NotSelfRelative(u16),
    #[error("{which} offset {offset} is outside the {len}-byte descriptor")]
    Offset {
        which: &'static str,
        offset: usize,
        len: usize,
    },
    #[error("{which} at byte {at}: {source}")]
    Sid {
        which: &'static str,
        at: usize,
        source: SidError,
    },
    #[error("{which} at byte {at}: {what}")]
    Acl {
        which: &'static str,
        at: usize,
        what: String,
    },
    #[error("ACE at byte {at}: {what}")]
    Ace { at: usize, what: String },
    #[error("{0} would be {1} bytes; at most 65535 fit")]
    TooLarge(&'static str, usize),
}

/// The order the four parts appear in a descriptor's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout(pub [Part; 4]);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Part {
    Sacl,
    Dacl,
    Owner,
    Group,
}

impl Layout {
    /// Windows' order: SACL, DACL, owner, group.
    pub const WINDOWS: Layout = Layout([Part::Sacl, Part::Dacl, Part::Owner, Part::Group]);
}

impl SecurityDescriptor {
    /// Parses a self-relative descriptor, its parts at any offsets.
    pub fn parse(b: &[u8]) -> Result<SecurityDescriptor, SdError> {
        Self::parse_with_layout(b).map(|(sd, _)| sd)
    }

    /// Parses, and says in which order the parts were laid out.
    pub fn parse_with_layout(b: &[u8]) -> Result<(SecurityDescriptor, Layout), SdError> {
        if b.len() < 20 {
            return Err(SdError::Short(b.len()));
        }
        if b[0] != 1 {
            return Err(SdError::Revision(b[0]));
        }
        let control = u16::from_le_bytes([b[2], b[3]]);
        if control & control::SELF_RELATIVE == 0 {
            return Err(SdError::NotSelfRelative(control));
        }
        let off = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let (o_owner, o_group, o_sacl, o_dacl) = (off(4), off(8), off(12), off(16));
        let check = |which: &'static str, offset: usize| {
            if offset != 0 && (offset < 20 || offset >= b.len()) {
                Err(SdError::Offset {
                    which,
                    offset,
                    len: b.len(),
                })
            } else {
                Ok(offset)
            }
        };
        let sid = |which: &'static str, offset: usize| -> Result<Option<Sid>, SdError> {
            if check(which, offset)? == 0 {
                return Ok(None);
            }
            Sid::read(&b[offset..])
                .map(|(s, _)| Some(s))
                .map_err(|source| SdError::Sid {
                    which,
                    at: offset,
                    source,
                })
        };
        let acl = |which: &'static str, offset: usize| -> Result<Option<Acl>, SdError> {
            if check(which, offset)? == 0 {
                return Ok(None);
            }
            Acl::read(&b[offset..], offset, which).map(Some)
        };
        let sd = SecurityDescriptor {
            revision: b[0],
            sbz1: b[1],
            control,
            owner: sid("owner", o_owner)?,
            group: sid("group", o_group)?,
            sacl: acl("SACL", o_sacl)?,
            dacl: acl("DACL", o_dacl)?,
        };
        let mut parts = [
            (o_sacl, Part::Sacl),
            (o_dacl, Part::Dacl),
            (o_owner, Part::Owner),
            (o_group, Part::Group),
        ];
        // Absent parts keep Windows' relative order; present ones sort by offset.
        parts.sort_by_key(|&(o, _)| if o == 0 { usize::MAX } else { o });
        Ok((sd, Layout(parts.map(|(_, p)| p))))
    }

    /// Serializes in Windows' layout.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SdError> {
        self.to_bytes_with_layout(Layout::WINDOWS)
    }

    /// Serializes with the parts in `layout`'s order, each right after the last.
    pub fn to_bytes_with_layout(&self, layout: Layout) -> Result<Vec<u8>, SdError> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&[self.revision, self.sbz1]);
        out.extend_from_slice(&self.control.to_le_bytes());
        out.extend_from_slice(&[0; 16]);
        for part in layout.0 {
            let (slot, start) = (
                match part {
                    Part::Owner => 4,
                    Part::Group => 8,
                    Part::Sacl => 12,
                    Part::Dacl => 16,
                },
                out.len(),
            );
            let wrote = match part {
                Part::Owner => self.owner.as_ref().map(|s| s.write(&mut out)).is_some(),
                Part::Group => self.group.as_ref().map(|s| s.write(&mut out)).is_some(),
                Part::Sacl => self
                    .sacl
                    .as_ref()
                    .map(|a| a.write(&mut out))
                    .transpose()?
                    .is_some(),
                Part::Dacl => self
                    .dacl
                    .as_ref()
                    .map(|a| a.write(&mut out))
                    .transpose()?
                    .is_some(),
            };
            if wrote {
                out[slot..slot + 4].copy_from_slice(&(start as u32).to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Bytes the serialized form takes.
    pub fn len(&self) -> usize {
        20 + self.owner.map_or(0, |s| s.len())
            + self.group.map_or(0, |s| s.len())
            + self.sacl.as_ref().map_or(0, Acl::len)
            + self.dacl.as_ref().map_or(0, Acl::len)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every SID the descriptor names: owner, group, then each ACE's (DACL, then SACL).
    pub fn sids(&self) -> impl Iterator<Item = &Sid> {
        self.owner.iter().chain(self.group.iter()).chain(
            self.dacl
                .iter()
                .chain(self.sacl.iter())
                .flat_map(|a| a.aces.iter().filter_map(Ace::sid)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MS-DTYP 2.5.1.4's example: 176 bytes, control 0xB014, SACL at 0x14, DACL at 0x30, owner at
    /// 0x90, group at 0xA0 (not owner first), ACL revision 2.
    #[test]
    fn ms_dtyp_example_layout() {
        let sd = crate::sddl::parse(
            "O:BAG:BAD:P(A;CIOI;GRGX;;;BU)(A;CIOI;GA;;;BA)(A;CIOI;GA;;;SY)(A;CIOI;GA;;;CO)S:P(AU;FA;GR;;;WD)",
            None,
        )
        .unwrap();
        let b = sd.to_bytes().unwrap();
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        assert_eq!(b.len(), 176);
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), 0xB014);
        assert_eq!(
            (u32_at(4), u32_at(8), u32_at(12), u32_at(16)),
            (0x90, 0xA0, 0x14, 0x30)
        );
        assert_eq!((b[0x14], b[0x30]), (2, 2), "ACL revision 2");
        let (back, layout) = SecurityDescriptor::parse_with_layout(&b).unwrap();
        assert_eq!((back, layout), (sd, Layout::WINDOWS));
        let g = Guid::parse("bf967aba-0de6-11d0-a285-00aa003049e2").unwrap();
        assert_eq!(g.to_string(), "bf967aba-0de6-11d0-a285-00aa003049e2");
        assert_eq!(g.0[..4], [0xba, 0x7a, 0x96, 0xbf]);
    }

    #[test]
    fn malformed_input_is_refused_with_where() {
        assert_eq!(
            SecurityDescriptor::parse(&[1, 0, 0, 0x80]),
            Err(SdError::Short(4))
        );
        let mut b = vec![
            1, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0,
        ];
        b.extend_from_slice(&[2, 0, 40, 0, 1, 0, 0, 0]);
        let e = SecurityDescriptor::parse(&b).unwrap_err().to_string();
        assert!(e.contains("DACL at byte 20"), "{e}");
    }
}

//! POSIX ACLs in their extended-attribute form (`system.posix_acl_access`,
//! `system.posix_acl_default`): a 4-byte version (2) followed by 8-byte entries
//! `(tag: u16, perm: u16, id: u32)`, little-endian, sorted by tag then id.

pub const ACCESS: &str = "system.posix_acl_access";
pub const DEFAULT: &str = "system.posix_acl_default";

pub const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
pub const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub tag: u16,
    pub id: u32,
    pub perm: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub entries: Vec<Entry>,
}

impl Acl {
    pub fn parse(b: &[u8]) -> Result<Acl, String> {
        if b.len() < 4 || !(b.len() - 4).is_multiple_of(8) {
            return Err(format!(
                "an ACL of {} bytes is not version 2 format",
                b.len()
            ));
        }
        let version = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if version != 2 {
            return Err(format!("ACL version {version} is not supported (2 is)"));
        }
        let entries = b[4..]
            .chunks_exact(8)
            .map(|c| Entry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Acl { entries })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.entries.len());
        out.extend_from_slice(&2u32.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            let id = if e.tag == USER || e.tag == GROUP {
                e.id
            } else {
                UNDEFINED_ID
            };
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    fn perm_of(&self, tag: u16) -> Option<u16> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.perm)
    }

    /// Adds `perm` to the named entry `(tag, id)`, creating it.
    fn grant(&mut self, tag: u16, id: u32, perm: u16) {
        match self.entries.iter_mut().find(|e| e.tag == tag && e.id == id) {
            Some(e) => e.perm |= perm,
            None => self.entries.push(Entry { tag, id, perm }),
        }
    }

    /// Sorts the entries, merges duplicates, and makes the mask cover every group-class right
    /// (so that no effective right shrinks); a mask is added when named entries need one.
    fn normalise(&mut self, old_mask: Option<u16>) {
        self.entries.sort_by_key(|e| {
            (
                e.tag,
                if e.tag == USER || e.tag == GROUP {
                    e.id
                } else {
                    0
                },
            )
        });
        let mut merged: Vec<Entry> = Vec::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            match merged.last_mut() {
                Some(l)
                    if l.tag == e.tag && (l.id == e.id || !(e.tag == USER || e.tag == GROUP)) =>
                {
                    l.perm |= e.perm
                }
                _ => merged.push(e),
            }
        }
        self.entries = merged;
        let named = self.entries.iter().any(|e| e.tag == USER || e.tag == GROUP);
        if named {
            let group_class = self
                .entries
                .iter()
                .filter(|e| matches!(e.tag, USER | GROUP | GROUP_OBJ))
                .fold(0, |m, e| m | e.perm);
            let mask = old_mask.unwrap_or(0) | group_class;
            match self.entries.iter_mut().find(|e| e.tag == MASK) {
                Some(m) => m.perm = mask,
                None => {
                    self.entries.push(Entry {
                        tag: MASK,
                        id: UNDEFINED_ID,
                        perm: mask,
                    });
                    self.entries.sort_by_key(|e| {
                        (
                            e.tag,
                            if e.tag == USER || e.tag == GROUP {
                                e.id
                            } else {
                                0
                            },
                        )
                    });
                }
            }
        }
    }

    /// The ACL translated through the maps. `owner`/`group` are the file's (before translation);
    /// in `add` mode the target principals gain the rights of the source ones, which keep theirs.
    pub fn translate(
        &self,
        uid: &dyn Fn(u32) -> Option<u32>,
        gid: &dyn Fn(u32) -> Option<u32>,
        add: bool,
        owner: Option<u32>,
        group: Option<u32>,
    ) -> Acl {
        let old_mask = self.perm_of(MASK);
        let mut out = self.clone();
        if add {
            for e in &self.entries {
                match e.tag {
                    USER => {
                        if let Some(t) = uid(e.id) {
                            out.grant(USER, t, e.perm);
                        }
                    }
                    GROUP => {
                        if let Some(t) = gid(e.id) {
                            out.grant(GROUP, t, e.perm);
                        }
                    }
                    _ => {}
                }
            }
            if let (Some(o), Some(p)) = (owner.and_then(uid), self.perm_of(USER_OBJ)) {
                out.grant(USER, o, p);
            }
            if let (Some(g), Some(p)) = (group.and_then(gid), self.perm_of(GROUP_OBJ)) {
                out.grant(GROUP, g, p);
            }
        } else {
            for e in &mut out.entries {
                match e.tag {
                    USER => e.id = uid(e.id).unwrap_or(e.id),
                    GROUP => e.id = gid(e.id).unwrap_or(e.id),
                    _ => {}
                }
            }
        }
        out.normalise(old_mask);
        out
    }
}

/// An ACL that only mirrors the mode bits (what `add` mode grows from when the owner or group is
/// a source).
pub fn from_mode(mode: u32) -> Acl {
    Acl {
        entries: vec![
            Entry {
                tag: USER_OBJ,
                id: UNDEFINED_ID,
                perm: ((mode >> 6) & 7) as u16,
            },
            Entry {
                tag: GROUP_OBJ,
                id: UNDEFINED_ID,
                perm: ((mode >> 3) & 7) as u16,
            },
            Entry {
                tag: OTHER,
                id: UNDEFINED_ID,
                perm: (mode & 7) as u16,
            },
        ],
    }
}

/// The mode's group bits follow the mask when there is one (as `setfacl` does).
pub fn mode_with(mode: u32, acl: &Acl) -> u32 {
    let owner = acl.perm_of(USER_OBJ).unwrap_or(((mode >> 6) & 7) as u16) as u32;
    let group = acl
        .perm_of(MASK)
        .or_else(|| acl.perm_of(GROUP_OBJ))
        .unwrap_or(((mode >> 3) & 7) as u16) as u32;
    let other = acl.perm_of(OTHER).unwrap_or((mode & 7) as u16) as u32;
    (mode & !0o777) | (owner << 6) | (group << 3) | other
}

/// Grants `perm` (`rwx` bits) to the named user or group (`tag` [`USER`] or [`GROUP`]) in the
/// access ACL of `path`, or in its default ACL (directories), widening the mask as `setfacl -m`
/// does. Used to set up sample trees; the engine itself never grants anything.
pub fn grant(
    path: &std::path::Path,
    tag: u16,
    id: u32,
    perm: u16,
    default: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let name = if default { DEFAULT } else { ACCESS };
    let mode = std::fs::symlink_metadata(path)?.mode();
    let mut acl = match get_xattr(path, name)? {
        Some(b) => Acl::parse(&b).map_err(std::io::Error::other)?,
        None => from_mode(mode),
    };
    acl.entries.retain(|e| !(e.tag == tag && e.id == id));
    acl.entries.push(Entry { tag, id, perm });
    let group_class = acl
        .entries
        .iter()
        .filter(|e| matches!(e.tag, USER | GROUP | GROUP_OBJ))
        .fold(0, |m, e| m | e.perm);
    acl.entries.retain(|e| e.tag != MASK);
    acl.entries.push(Entry {
        tag: MASK,
        id: UNDEFINED_ID,
        perm: group_class,
    });
    acl.entries.sort();
    set_xattr(path, name, Some(&acl.to_bytes()))?;
    if !default {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(mode_with(mode, &acl) & 0o7777),
        )?;
    }
    Ok(())
}

/// `lgetxattr` by path: for setting up sample trees only (the engine reads by descriptor).
fn get_xattr(path: &std::path::Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::OPNOTSUPP) => return Ok(None),
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e.into()),
        }
    }
}

fn set_xattr(path: &std::path::Path, name: &str, value: Option<&[u8]>) -> std::io::Result<()> {
    match value {
        Some(v) => rustix::fs::lsetxattr(path, name, v, rustix::fs::XattrFlags::empty())
            .map_err(Into::into),
        None => match rustix::fs::lremovexattr(path, name) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(e: &[(u16, u32, u16)]) -> Acl {
        Acl {
            entries: e
                .iter()
                .map(|&(tag, id, perm)| Entry { tag, id, perm })
                .collect(),
        }
    }

    #[test]
    fn round_trips_the_xattr_format() {
        let a = acl(&[
            (USER_OBJ, UNDEFINED_ID, 7),
            (USER, 1000, 6),
            (GROUP_OBJ, UNDEFINED_ID, 5),
            (MASK, UNDEFINED_ID, 7),
            (OTHER, UNDEFINED_ID, 0),
        ]);
        assert_eq!(Acl::parse(&a.to_bytes()).unwrap(), a);
        assert!(Acl::parse(&[1, 0, 0, 0]).unwrap_err().contains("version 1"));
        assert!(Acl::parse(&[2, 0, 0]).is_err());
    }

    #[test]
    fn replace_and_add_modes() {
        let a = acl(&[
            (USER_OBJ, UNDEFINED_ID, 7),
            (USER, 1000, 6),
            (USER, 1001, 4),
            (GROUP_OBJ, UNDEFINED_ID, 5),
            (GROUP, 50, 7),
            (MASK, UNDEFINED_ID, 7),
            (OTHER, UNDEFINED_ID, 0),
        ]);
        let uid = |u: u32| (u == 1000).then_some(2000);
        let gid = |g: u32| (g == 50).then_some(60);
        let r = a.translate(&uid, &gid, false, Some(1000), Some(50));
        let ids: Vec<(u16, u32)> = r
            .entries
            .iter()
            .filter(|e| e.tag == USER || e.tag == GROUP)
            .map(|e| (e.tag, e.id))
            .collect();
        assert_eq!(ids, [(USER, 1001), (USER, 2000), (GROUP, 60)]);
        // Idempotent: translating again changes nothing.
        assert_eq!(r.translate(&uid, &gid, false, Some(2000), Some(60)), r);
        // Add: the target joins the source; the owner (a source) gives the target its rights.
        let a2 = a.translate(&uid, &gid, true, Some(1000), Some(50));
        let perm = |t: u16, id: u32| {
            a2.entries
                .iter()
                .find(|e| e.tag == t && e.id == id)
                .map(|e| e.perm)
        };
        assert_eq!(
            (perm(USER, 1000), perm(USER, 2000), perm(GROUP, 60)),
            (Some(6), Some(7), Some(7))
        );
        assert_eq!(
            a2.translate(&uid, &gid, true, Some(1000), Some(50)),
            a2,
            "add is idempotent"
        );
        // A mode-only file whose owner is a source gains a named entry and a mask.
        let m = from_mode(0o640).translate(&uid, &gid, true, Some(1000), None);
        assert_eq!(
            m.entries
                .iter()
                .find(|e| e.tag == USER)
                .map(|e| (e.id, e.perm)),
            Some((2000, 6))
        );
        assert_eq!(
            m.entries.iter().find(|e| e.tag == MASK).map(|e| e.perm),
            Some(6)
        );
        assert_eq!(mode_with(0o100640, &m), 0o100660);
    }
}

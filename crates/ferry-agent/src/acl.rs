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

    /// Sorts the entries and merges duplicates (their rights joined: two sources mapped to one
    /// target give it both).
    fn normalise(&mut self) {
        let key = |e: &Entry| {
            (
                e.tag,
                if e.tag == USER || e.tag == GROUP {
                    e.id
                } else {
                    0
                },
            )
        };
        self.entries.sort_by_key(key);
        let mut merged: Vec<Entry> = Vec::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            match merged.last_mut() {
                Some(l) if key(l) == key(&e) => l.perm |= e.perm,
                _ => merged.push(e),
            }
        }
        self.entries = merged;
    }

    /// What a named entry (or the owning group) may do: its rights within the mask.
    fn effective(&self, perm: u16) -> u16 {
        self.perm_of(MASK).map_or(perm, |m| perm & m)
    }

    /// The ACL translated through the maps. `owner`/`group` are the file's (before translation).
    ///
    /// No principal's effective rights grow (issue 16): in `add-and-remove` entries are renamed
    /// and the mask is kept, so each target has exactly its source's effective rights and the
    /// mode's group bits stay as they were. In `add` each target gains its source's *effective*
    /// rights (the owner's for the owner's target) and the source keeps its own; when that needs
    /// a wider mask, the rights it would newly uncover are taken from every other group-class
    /// entry, so none of them can do more than before.
    pub fn translate(
        &self,
        uid: &dyn Fn(u32) -> Option<u32>,
        gid: &dyn Fn(u32) -> Option<u32>,
        add: bool,
        owner: Option<u32>,
        group: Option<u32>,
    ) -> Acl {
        let mut out = self.clone();
        if !add {
            for e in &mut out.entries {
                match e.tag {
                    USER => e.id = uid(e.id).unwrap_or(e.id),
                    GROUP => e.id = gid(e.id).unwrap_or(e.id),
                    _ => {}
                }
            }
            out.normalise();
            return out;
        }
        let mut grants: Vec<Entry> = Vec::new();
        for e in &self.entries {
            let target = match e.tag {
                // The owner's rights are its `user::` entry; a named entry of it does not apply.
                USER if Some(e.id) != owner => uid(e.id),
                GROUP => gid(e.id),
                _ => None,
            };
            if let Some(t) = target {
                grants.push(Entry {
                    tag: e.tag,
                    id: t,
                    perm: self.effective(e.perm),
                });
            }
        }
        if let (Some(o), Some(p)) = (owner.and_then(uid), self.perm_of(USER_OBJ)) {
            grants.push(Entry {
                tag: USER,
                id: o,
                perm: p,
            });
        }
        if let (Some(g), Some(p)) = (group.and_then(gid), self.perm_of(GROUP_OBJ)) {
            grants.push(Entry {
                tag: GROUP,
                id: g,
                perm: self.effective(p),
            });
        }
        if grants.is_empty() {
            return out;
        }
        let granted = grants.iter().fold(0, |m, g| m | g.perm);
        let group_class = |e: &Entry| matches!(e.tag, USER | GROUP | GROUP_OBJ);
        match self.perm_of(MASK) {
            Some(mask) => {
                let widened = granted & !mask;
                if widened != 0 {
                    for e in out.entries.iter_mut().filter(|e| group_class(e)) {
                        e.perm &= !widened;
                    }
                    for e in out.entries.iter_mut().filter(|e| e.tag == MASK) {
                        e.perm = mask | widened;
                    }
                }
            }
            // No mask: the owning group's rights are unmasked; a mask covering them and the
            // new entries changes no one's.
            None => out.entries.push(Entry {
                tag: MASK,
                id: UNDEFINED_ID,
                perm: self.perm_of(GROUP_OBJ).unwrap_or(0) | granted,
            }),
        }
        out.entries.extend(grants);
        out.normalise();
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

    /// Effective rights per principal, as the kernel checks them: the owner by `user::`, a
    /// named user by its entry within the mask; a group by the owning-group entry and its named
    /// entry, each within the mask. `others` for everyone else.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(crate) struct Rights {
        pub users: std::collections::BTreeMap<u32, u16>,
        pub groups: std::collections::BTreeMap<u32, u16>,
        pub others: u16,
    }

    pub(crate) fn rights(a: &Acl, owner: u32, group: u32) -> Rights {
        let mut r = Rights::default();
        for e in &a.entries {
            match e.tag {
                USER if e.id != owner => {
                    r.users.insert(e.id, a.effective(e.perm));
                }
                USER_OBJ => {
                    r.users.insert(owner, e.perm);
                }
                GROUP => *r.groups.entry(e.id).or_default() |= a.effective(e.perm),
                GROUP_OBJ => *r.groups.entry(group).or_default() |= a.effective(e.perm),
                OTHER => r.others = e.perm,
                _ => {}
            }
        }
        r
    }

    use proptest::prelude::*;

    /// A valid access ACL: `user::`, `group::`, `other::`, named entries of ids 1000..1006 and
    /// 3000..3003 (these are never sources), and a mask, often narrower than the group class (a
    /// file `chmod`ed after its default ACL gave it wider entries).
    fn any_acl() -> impl Strategy<Value = Acl> {
        (
            (0u16..8, 0u16..8, 0u16..8, 0u16..8),
            proptest::collection::btree_map(
                prop_oneof![1000u32..1006, 3000u32..3003],
                0u16..8,
                0..5,
            ),
            proptest::collection::btree_map(
                prop_oneof![1000u32..1006, 3000u32..3003],
                0u16..8,
                0..4,
            ),
        )
            .prop_map(|((u, g, m, o), users, groups)| {
                let mut e = vec![(USER_OBJ, UNDEFINED_ID, u), (GROUP_OBJ, UNDEFINED_ID, g)];
                e.extend(users.iter().map(|(&id, &p)| (USER, id, p)));
                e.extend(groups.iter().map(|(&id, &p)| (GROUP, id, p)));
                if !users.is_empty() || !groups.is_empty() {
                    e.push((MASK, UNDEFINED_ID, m));
                }
                e.push((OTHER, UNDEFINED_ID, o));
                let mut a = acl(&e);
                a.normalise();
                a
            })
    }

    /// 1000..1003 map to 2000..2003 (so 1003..1006 and 3000.. are not mapped); targets are new
    /// principals, or (with `onto_existing`) may be 3000..3003, which can be in the ACL already.
    fn map_of(onto_existing: bool) -> impl Fn(u32) -> Option<u32> {
        move |id| match id {
            1000..1003 if onto_existing => Some(3000 + (id - 1000)),
            1000..1003 => Some(id + 1000),
            _ => None,
        }
    }

    proptest! {
        /// Would catch: the mask widened to the union of the renamed entries (issue 16, defect 1:
        /// `user:X:r-x #effective:r--` came out effective `r-x`, mode 640 became 650). In
        /// `add-and-remove` each principal ends with exactly its source's effective rights, the
        /// mask and `user::`/`other::` as they were.
        #[test]
        fn add_and_remove_moves_effective_rights_exactly(a in any_acl(), owner in 999u32..1004, group in 999u32..1004) {
            let m = map_of(false);
            let t = a.translate(&m, &m, false, Some(owner), Some(group));
            let (before, after) = (rights(&a, owner, group), rights(&t, m(owner).unwrap_or(owner), m(group).unwrap_or(group)));
            let moved = |xs: &std::collections::BTreeMap<u32, u16>| xs.iter().map(|(&id, &p)| (m(id).unwrap_or(id), p)).collect::<std::collections::BTreeMap<_, _>>();
            prop_assert_eq!(&after.users, &moved(&before.users));
            prop_assert_eq!(&after.groups, &moved(&before.groups));
            prop_assert_eq!(after.others, before.others);
            prop_assert_eq!(t.perm_of(MASK), a.perm_of(MASK));
            prop_assert_eq!(mode_with(0o100000, &t), mode_with(0o100000, &a), "mode bits unchanged");
            prop_assert_eq!(t.translate(&m, &m, false, m(owner), m(group)), t.clone(), "idempotent");
        }

        /// Would catch: `add` giving a target its source's raw entry instead of what the source
        /// could do, or widening the mask so that others gain. Each target gains exactly its
        /// source's effective rights, and no one else's change.
        #[test]
        fn add_gives_each_target_its_sources_rights_and_no_one_else_more(a in any_acl(), owner in 999u32..1004, group in 999u32..1004) {
            let m = map_of(false);
            let t = a.translate(&m, &m, true, Some(owner), Some(group));
            let (before, after) = (rights(&a, owner, group), rights(&t, owner, group));
            let mut want = before.users.clone();
            for (&id, &p) in &before.users {
                if let Some(target) = m(id) { want.insert(target, p); }
            }
            prop_assert_eq!(&after.users, &want);
            let mut want = before.groups.clone();
            for (&id, &p) in &before.groups {
                if let Some(target) = m(id) { want.insert(target, p); }
            }
            prop_assert_eq!(&after.groups, &want);
            prop_assert_eq!(after.others, before.others);
            prop_assert_eq!(t.translate(&m, &m, true, Some(owner), Some(group)), t.clone(), "idempotent");
        }

        /// Would catch: any principal gaining a right it and its sources did not have, when
        /// targets already hold entries of their own (two principals merged into one).
        #[test]
        fn no_principal_gains_a_right(a in any_acl(), owner in 999u32..1004, group in 999u32..1004, add in any::<bool>()) {
            let m = map_of(true);
            let t = a.translate(&m, &m, add, Some(owner), Some(group));
            let (o2, g2) = if add { (owner, group) } else { (m(owner).unwrap_or(owner), m(group).unwrap_or(group)) };
            let (before, after) = (rights(&a, owner, group), rights(&t, o2, g2));
            let allowed = |xs: &std::collections::BTreeMap<u32, u16>, id: u32| {
                xs.iter().filter(|&(&s, _)| s == id || m(s) == Some(id)).fold(0, |acc, (_, &p)| acc | p)
            };
            for (&id, &p) in &after.users {
                prop_assert_eq!(p & !allowed(&before.users, id), 0, "user {} gained", id);
            }
            for (&id, &p) in &after.groups {
                prop_assert_eq!(p & !allowed(&before.groups, id), 0, "group {} gained", id);
            }
            prop_assert_eq!(after.others, before.others);
        }
    }
}

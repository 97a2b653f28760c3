//! The profile harvest on Linux: the users of this device with a home directory: local ones
//! (`/etc/passwd`, uids from `UID_MIN` to `UID_MAX` of `/etc/login.defs`) and directory ones (homes
//! below the same roots owned by a uid that is not local, named through NSS: `getent passwd`),
//! with uid, home, its size and the last login (`/var/log/lastlog`, else `/var/log/wtmp`).

use ferry_core::agent::HarvestedProfile;
use rustc_hash::FxHashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the harvest looks.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The passwd file of local users (default `/etc/passwd`).
    pub passwd: PathBuf,
    pub login_defs: PathBuf,
    pub lastlog: PathBuf,
    pub wtmp: PathBuf,
    /// Also ask NSS (`getent passwd`) about uids that own a home but are not in `passwd`.
    pub nss: bool,
    /// Where directory users' homes are looked for, besides the parents of local homes.
    pub home_roots: Vec<PathBuf>,
}

impl Default for Sources {
    fn default() -> Sources {
        Sources {
            passwd: "/etc/passwd".into(),
            login_defs: "/etc/login.defs".into(),
            lastlog: "/var/log/lastlog".into(),
            wtmp: "/var/log/wtmp".into(),
            nss: true,
            home_roots: vec!["/home".into()],
        }
    }
}

/// One passwd entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Reads a passwd-format file; lines that are not 7 fields with numeric ids are skipped.
pub fn read_passwd(path: &Path) -> Result<Vec<Account>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.lines().filter_map(parse_passwd_line).collect())
}

fn parse_passwd_line(l: &str) -> Option<Account> {
    let f: Vec<&str> = l.split(':').collect();
    if f.len() != 7 || l.starts_with('#') {
        return None;
    }
    Some(Account {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: PathBuf::from(f[5]),
    })
}

/// An account by uid: from the accounts of `passwd` already read, else from NSS
/// (`getent passwd UID`) when the sources allow it.
pub fn account_by_uid(src: &Sources, local: &[Account], uid: u32) -> Option<Account> {
    if let Some(a) = local.iter().find(|a| a.uid == uid) {
        return Some(a.clone());
    }
    if !src.nss {
        return None;
    }
    let out = std::process::Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .output()
        .ok()?;
    parse_passwd_line(String::from_utf8_lossy(&out.stdout).trim())
}

fn uid_range(login_defs: &Path) -> (u32, u32) {
    let (mut min, mut max) = (1000, 60000);
    if let Ok(t) = std::fs::read_to_string(login_defs) {
        for l in t.lines() {
            let mut w = l.split_whitespace();
            match (w.next(), w.next().and_then(|v| v.parse().ok())) {
                (Some("UID_MIN"), Some(v)) => min = v,
                (Some("UID_MAX"), Some(v)) => max = v,
                _ => {}
            }
        }
    }
    (min, max)
}

/// The harvest: every profile, sorted by name.
pub fn harvest(src: &Sources) -> Result<Vec<HarvestedProfile>, String> {
    let (min, max) = uid_range(&src.login_defs);
    let all = read_passwd(&src.passwd)?;
    let known: FxHashSet<u32> = all.iter().map(|a| a.uid).collect();
    let mut accounts: Vec<Account> = all
        .into_iter()
        .filter(|a| (min..=max).contains(&a.uid) && a.home.is_dir())
        .collect();
    // Directory users' homes: beside local ones (and in /home), owned by a uid with no local entry.
    let mut roots: FxHashSet<PathBuf> = accounts
        .iter()
        .filter_map(|a| a.home.parent().map(Path::to_path_buf))
        .collect();
    roots.extend(src.home_roots.iter().cloned());
    let mut seen: FxHashSet<u32> = accounts.iter().map(|a| a.uid).collect();
    let mut roots: Vec<PathBuf> = roots.into_iter().collect();
    roots.sort();
    for root in roots {
        let Ok(rd) = std::fs::read_dir(&root) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            let uid = md.uid();
            if !md.is_dir() || known.contains(&uid) || seen.contains(&uid) || uid < min {
                continue;
            }
            seen.insert(uid);
            // Not in passwd (that is why it is here): NSS, if anything, knows it.
            let a = account_by_uid(src, &[], uid);
            accounts.push(Account {
                name: a
                    .as_ref()
                    .map(|a| a.name.clone())
                    .unwrap_or_else(|| e.file_name().to_string_lossy().into_owned()),
                uid,
                gid: a.map_or(md.gid(), |a| a.gid),
                home: e.path(),
            });
        }
    }
    let wtmp = last_logins_wtmp(&src.wtmp);
    let mut out: Vec<HarvestedProfile> = accounts
        .into_iter()
        .map(|a| {
            let last = [
                last_login_lastlog(&src.lastlog, a.uid),
                wtmp.get(&a.name).copied(),
            ]
            .into_iter()
            .flatten()
            .max();
            HarvestedProfile {
                size_bytes: tree_size(&a.home),
                home: a.home.to_string_lossy().into_owned(),
                name: a.name,
                sid: None,
                uid: Some(a.uid),
                last_used: last,
            }
        })
        .collect();
    // One profile per name, the first as NSS would resolve it (passwd order).
    let mut names = FxHashSet::default();
    out.retain(|p| names.insert(p.name.clone()));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Bytes of the files below `home` (hard links once, symlinks not followed, one file system).
fn tree_size(home: &Path) -> u64 {
    let Ok(top) = home.symlink_metadata() else {
        return 0;
    };
    let (mut total, mut stack, mut links) = (0u64, vec![home.to_path_buf()], FxHashSet::default());
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                if md.dev() == top.dev() {
                    stack.push(e.path());
                }
            } else if md.nlink() < 2 || links.insert((md.dev(), md.ino())) {
                total += md.len();
            }
        }
    }
    total
}

/// `struct lastlog` (292 bytes per uid; the first 4 are the time in seconds).
fn last_login_lastlog(path: &Path, uid: u32) -> Option<i64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(u64::from(uid) * 292)).ok()?;
    let mut b = [0u8; 4];
    f.read_exact(&mut b).ok()?;
    let t = i64::from(i32::from_le_bytes(b));
    (t > 0).then_some(t * 1000)
}

/// The newest `USER_PROCESS` record of each user in `wtmp` (`struct utmp`, 384 bytes).
fn last_logins_wtmp(path: &Path) -> std::collections::HashMap<String, i64> {
    let mut out = std::collections::HashMap::new();
    let Ok(b) = std::fs::read(path) else {
        return out;
    };
    for r in b.chunks_exact(384) {
        let kind = i16::from_le_bytes([r[0], r[1]]);
        if kind != 7 {
            continue;
        }
        let user = &r[44..76];
        let user =
            String::from_utf8_lossy(&user[..user.iter().position(|c| *c == 0).unwrap_or(32)])
                .into_owned();
        let sec = i64::from(i32::from_le_bytes([r[340], r[341], r[342], r[343]]));
        let e = out.entry(user).or_insert(0);
        *e = (*e).max(sec * 1000);
    }
    out
}

/// A stable digest of a harvest, to send it only when it changed.
pub fn digest(p: &[HarvestedProfile]) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(p).unwrap_or_default();
    ferry_core::config::hex(&sha2::Sha256::digest(&json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harvest_reads_local_users_with_homes_and_their_logins() {
        let d = tempfile::tempdir().unwrap();
        let homes = d.path().join("home");
        std::fs::create_dir_all(homes.join("ann/docs")).unwrap();
        std::fs::write(homes.join("ann/docs/a.txt"), vec![0u8; 1000]).unwrap();
        std::fs::write(homes.join("ann/b.txt"), vec![0u8; 24]).unwrap();
        std::fs::hard_link(homes.join("ann/b.txt"), homes.join("ann/b-link.txt")).unwrap();
        let passwd = d.path().join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "root:x:0:0:root:/root:/bin/bash\nann:x:1500:1500:Ann:{h}/ann:/bin/bash\nbob:x:1501:1501:Bob:{h}/bob:/bin/bash\nbroken line\n",
                h = homes.display()
            ),
        )
        .unwrap();
        // lastlog: ann (uid 1500) last logged in at 1_700_000_000.
        let mut lastlog = vec![0u8; 1501 * 292];
        lastlog[1500 * 292..1500 * 292 + 4].copy_from_slice(&1_700_000_000i32.to_le_bytes());
        std::fs::write(d.path().join("lastlog"), lastlog).unwrap();
        let src = Sources {
            passwd,
            login_defs: d.path().join("none"),
            lastlog: d.path().join("lastlog"),
            wtmp: d.path().join("none"),
            nss: false,
            home_roots: Vec::new(),
        };
        let h = harvest(&src).unwrap();
        // root is below UID_MIN; bob has no home directory.
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0].name, "ann");
        assert_eq!(h[0].uid, Some(1500));
        assert_eq!(h[0].size_bytes, 1024, "hard links are counted once");
        assert_eq!(h[0].last_used, Some(1_700_000_000_000));
        assert_eq!(digest(&h), digest(&harvest(&src).unwrap()));
    }
}

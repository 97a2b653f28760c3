//! The re-permissioning engine: one parallel pass over each path translating owner, group and
//! every named entry of the access and default POSIX ACLs through a map; symlinks never
//! followed, hard links once, unchanged files never written, every change journaled (and the
//! record durable) before it is made, so that `undo` restores the exact previous state.
//!
//! It runs as root in trees that their users can change while it works, so it never acts on a
//! path after checking it (see [`crate::fsat`]): directories are walked by descriptor, each entry
//! is decided from `lstat` and its ACL read relative to its directory's descriptor, and one that
//! changes is opened `O_PATH | O_NOFOLLOW`, decided again from that descriptor, and changed
//! through it. A directory whose entries are renamed while it is listed is listed again, and
//! reported when it does not hold still. setuid/setgid are put back after `chown` only on the
//! inode just changed, only when its owner is the one set, and never for a privileged owner.
//! `undo` opens each journaled path without following it and restores only the journaled inode
//! (device and inode number), and only while its owner is the one the run set or found.

use crate::acl::{self, Acl};
use crate::fsat::{self, Meta, Node};
use ferry_core::agent::ProfileTranslation;
use ferry_core::principal_map::{Pair, Principal, PrincipalMap};
use ferry_core::privileged::{self, DEFAULT_MIN_ID};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    AddAndRemove,
    Add,
}

/// Source → target principals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    pub uids: FxHashMap<u32, u32>,
    pub gids: FxHashMap<u32, u32>,
    /// SIDs (used by the Windows engine; carried so that one file serves both).
    pub sids: FxHashMap<String, String>,
    /// Ids below this are the system's: no entry may name one, and a file owned by one keeps no
    /// setuid/setgid bit through a change ([`privileged`]).
    pub min_id: u32,
}

impl Default for Map {
    fn default() -> Map {
        Map {
            uids: FxHashMap::default(),
            gids: FxHashMap::default(),
            sids: FxHashMap::default(),
            min_id: DEFAULT_MIN_ID,
        }
    }
}

impl Map {
    /// Reads a map in any format [`PrincipalMap::read`] takes (`source,target` CSV, or ferry's
    /// csv, json or sidmap translation export). Errors name the line. Ids below
    /// [`DEFAULT_MIN_ID`] are refused; see [`Map::parse_with`].
    pub fn parse(text: &str) -> Result<Map, String> {
        Map::parse_with(text, DEFAULT_MIN_ID)
    }

    /// [`Map::parse`] with another bound of the system range (root is refused whatever it is).
    pub fn parse_with(text: &str, min_id: u32) -> Result<Map, String> {
        Map::checked(&PrincipalMap::read(text)?, min_id)
    }

    /// The map of a run's translation entries, as the device applies them; an entry naming a
    /// privileged id or SID is refused with its profile named.
    pub fn from_translation(entries: &[ProfileTranslation], min_id: u32) -> Result<Map, String> {
        let mut pairs = Vec::new();
        for t in entries {
            let at = format!("profile `{}`", t.profile);
            let mut pair = |s: Principal, d: Principal| {
                pairs.push(Pair {
                    at: at.clone(),
                    source: s,
                    target: d,
                })
            };
            if let (Some(s), Some(d)) = (t.source_uid, t.target_uid) {
                pair(Principal::Uid(s), Principal::Uid(d));
            }
            if let (Some(s), Some(d)) = (t.source_gid, t.target_gid) {
                pair(Principal::Gid(s), Principal::Gid(d));
            }
            if let (Some(s), Some(d)) = (&t.source_sid, &t.target_sid) {
                match (Principal::parse(s), Principal::parse(d)) {
                    (Some(s), Some(d)) => pair(s, d),
                    _ => return Err(format!("{at}: `{s}` → `{d}`: not SIDs")),
                }
            }
        }
        Map::checked(&PrincipalMap::from_pairs(pairs)?, min_id)
    }

    /// The engine's map of a checked principal map, refusing what names a privileged principal.
    fn checked(pm: &PrincipalMap, min_id: u32) -> Result<Map, String> {
        let mut m = Map {
            min_id,
            ..Map::default()
        };
        for p in pm.pairs() {
            let refuse = |why: Option<String>| match why {
                Some(w) => Err(format!("{}: `{}` → `{}`: {w}", p.at, p.source, p.target)),
                None => Ok(()),
            };
            match (&p.source, &p.target) {
                (Principal::Uid(a), Principal::Uid(b)) => {
                    refuse(privileged::posix("uid", *a, *b, min_id))?;
                    m.uids.insert(*a, *b);
                }
                (Principal::Gid(a), Principal::Gid(b)) => {
                    refuse(privileged::posix("gid", *a, *b, min_id))?;
                    m.gids.insert(*a, *b);
                }
                (Principal::Sid(a), Principal::Sid(b)) => {
                    refuse(privileged::sid(a, b))?;
                    m.sids.insert(a.clone(), b.clone());
                }
                // PrincipalMap holds pairs of one kind only.
                _ => {
                    return Err(format!(
                        "{}: `{}` → `{}`: of two kinds",
                        p.at, p.source, p.target
                    ));
                }
            }
        }
        Ok(m)
    }

    /// A stable hash of the map, recorded in the journal.
    pub fn hash(&self) -> String {
        let mut lines: Vec<String> = self
            .uids
            .iter()
            .map(|(s, t)| format!("uid:{s},uid:{t}"))
            .chain(self.gids.iter().map(|(s, t)| format!("gid:{s},gid:{t}")))
            .chain(self.sids.iter().map(|(s, t)| format!("{s},{t}")))
            .collect();
        lines.sort();
        ferry_core::config::hex(&sha2::Sha256::digest(lines.join("\n").as_bytes()))
    }

    /// Whether a file owned by this uid (or group) may keep setuid (setgid) through a change.
    fn may_keep_setid(&self, id: u32) -> bool {
        id != 0 && id >= self.min_id
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub what_if: bool,
    pub excludes: Vec<PathBuf>,
    /// Glob patterns of paths to leave alone, with what is below them (the runbook's "areas to
    /// ignore"): `*` and `?` within a name, `**` across names: `**/node_modules`, `/srv/**/cache`.
    pub ignore: Vec<String>,
    pub threads: usize,
    /// Cross into other file systems (default: stay on each path's own).
    pub cross_devices: bool,
}

/// A file's metadata as journaled (and restored by undo).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Before {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// Hex of the ACL xattrs, absent when the file had none.
    pub acl_access: Option<String>,
    pub acl_default: Option<String>,
    /// The owner and group the run gives the file (journal version 2): undo restores a file only
    /// while it has these or the ones above, so an inode number reused by another file is not
    /// mistaken for this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_gid: Option<u32>,
}

/// One planned change (what-if output with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub path: PathBuf,
    pub uid: Option<(u32, u32)>,
    pub gid: Option<(u32, u32)>,
    pub acl_access: bool,
    pub acl_default: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub scanned: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub failures: Vec<(PathBuf, String)>,
    /// Changed, with something to know: a setuid/setgid bit not kept for a privileged owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<(PathBuf, String)>,
    pub changes: Vec<Change>,
    pub seconds: f64,
}

/// Version 2 records carry the owner the run set (`new_uid`, `new_gid`); version 1 journals are
/// still resumed and undone.
const JOURNAL_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct JournalHeader {
    ferry_journal: u32,
    map_hash: String,
    mode: Mode,
}

fn hex(b: &[u8]) -> String {
    ferry_core::config::hex(b)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The journal: a header line, then one JSON line per file. A batch of records is written and
/// made durable (`fdatasync`, shared by the workers that wait for it at the same moment) before
/// any change it describes is made, so that after a crash or power loss at any point every change
/// on disk has its record.
struct Journal {
    file: std::fs::File,
    state: Mutex<Durability>,
    synced: Condvar,
}

#[derive(Default)]
struct Durability {
    /// Batches written, and written and synced.
    written: u64,
    synced: u64,
    syncing: bool,
}

impl Journal {
    fn open(path: &Path, map: &Map, mode: Mode) -> Result<Journal, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let header = JournalHeader {
            ferry_journal: JOURNAL_VERSION,
            map_hash: map.hash(),
            mode,
        };
        let existing = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{}: the journal is a symlink; give a regular file",
                    path.display()
                ));
            }
            Ok(m) => m.len() > 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(err(e)),
        };
        if existing {
            Journal::cut_partial_record(path).map_err(err)?;
        }
        if existing && std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) > 0 {
            let f = std::fs::File::open(path).map_err(err)?;
            let mut first = String::new();
            std::io::BufReader::new(f)
                .read_line(&mut first)
                .map_err(err)?;
            let h: JournalHeader = serde_json::from_str(&first)
                .map_err(|_| format!("{}: not a ferry journal", path.display()))?;
            if h.map_hash != header.map_hash || h.mode != mode {
                return Err(format!(
                    "{}: this journal belongs to a run with another map or mode; resume with the same map, or undo it first",
                    path.display()
                ));
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(path)
            .map_err(err)?;
        if f.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            let line = serde_json::to_string(&header).unwrap_or_default();
            writeln!(f, "{line}")
                .and_then(|()| f.sync_all())
                .map_err(err)?;
            // The journal's own name must survive a power loss too.
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(Journal {
            file: f,
            state: Mutex::new(Durability::default()),
            synced: Condvar::new(),
        })
    }

    /// A process killed while writing a record leaves it cut short, and its change was never
    /// made (the record goes first): the partial line is removed so that the records appended
    /// next start on a line of their own.
    fn cut_partial_record(path: &Path) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let len = f.metadata()?.len();
        if len == 0 {
            return Ok(());
        }
        // Look back for the last newline, a block at a time.
        let mut end = len;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let start = end.saturating_sub(buf.len() as u64);
            let n = (end - start) as usize;
            f.seek(SeekFrom::Start(start))?;
            f.read_exact(&mut buf[..n])?;
            if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
                let keep = start + i as u64 + 1;
                if keep != len {
                    f.set_len(keep)?;
                    f.sync_all()?;
                }
                return Ok(());
            }
            if start == 0 {
                // Not even the header is whole: start the journal again.
                f.set_len(0)?;
                return f.sync_all();
            }
            end = start;
        }
    }

    /// Writes a batch of records and returns once they are durable.
    fn commit(&self, records: &[Before]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(records.len() * 160);
        for r in records {
            serde_json::to_writer(&mut bytes, r).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
        }
        let lock = || {
            self.state
                .lock()
                .map_err(|_| std::io::Error::other("journal lock"))
        };
        let target = {
            let mut st = lock()?;
            (&self.file).write_all(&bytes)?;
            st.written += 1;
            st.written
        };
        let mut st = lock()?;
        loop {
            if st.synced >= target {
                return Ok(());
            }
            if st.syncing {
                st = self
                    .synced
                    .wait(st)
                    .map_err(|_| std::io::Error::other("journal lock"))?;
                continue;
            }
            // This caller syncs for every batch written so far.
            st.syncing = true;
            let upto = st.written;
            drop(st);
            let r = self.file.sync_data();
            st = lock()?;
            st.syncing = false;
            if r.is_ok() {
                st.synced = upto;
            }
            self.synced.notify_all();
            r?;
        }
    }

    fn finish(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}

/// `O_NOFOLLOW`: the journal is not opened through a symlink.
fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// A change as decided: the new owner, group and ACL xattrs (`None`: unchanged).
#[derive(Debug, PartialEq, Eq)]
struct Planned {
    uid: u32,
    gid: u32,
    access: Option<Vec<u8>>,
    default: Option<Vec<u8>>,
}

/// Decides the change of one inode from its metadata and ACLs; `None` when nothing changes.
fn decide(
    map: &Map,
    mode: Mode,
    m: &Meta,
    old_access: Option<&[u8]>,
    old_default: Option<&[u8]>,
) -> std::io::Result<Option<Planned>> {
    let add = mode == Mode::Add;
    let (uid, gid) = (m.uid, m.gid);
    let new_uid = if add {
        uid
    } else {
        *map.uids.get(&uid).unwrap_or(&uid)
    };
    let new_gid = if add {
        gid
    } else {
        *map.gids.get(&gid).unwrap_or(&gid)
    };
    let uf = |u: u32| map.uids.get(&u).copied();
    let gf = |g: u32| map.gids.get(&g).copied();
    let (mut access, mut default) = (None, None);
    if !m.is_symlink() {
        let base = match old_access {
            Some(b) => Some(Acl::parse(b).map_err(std::io::Error::other)?),
            // `add` gives a target the owner's or group's rights through a new ACL.
            None if add && (uf(uid).is_some() || gf(gid).is_some()) => Some(acl::from_mode(m.mode)),
            None => None,
        };
        if let Some(a) = base {
            let t = a.translate(&uf, &gf, add, Some(uid), Some(gid));
            let bytes = t.to_bytes();
            if old_access != Some(bytes.as_slice())
                && (old_access.is_some() || t != acl::from_mode(m.mode))
            {
                access = Some(bytes);
            }
        }
        if let Some(b) = old_default {
            let d = Acl::parse(b).map_err(std::io::Error::other)?;
            let bytes = d.translate(&uf, &gf, add, None, None).to_bytes();
            if bytes != b {
                default = Some(bytes);
            }
        }
    }
    if new_uid == uid && new_gid == gid && access.is_none() && default.is_none() {
        return Ok(None);
    }
    Ok(Some(Planned {
        uid: new_uid,
        gid: new_gid,
        access,
        default,
    }))
}

/// A decided change holding the descriptor of its inode until it is journaled and made.
struct Pending {
    node: Arc<Node>,
    path: PathBuf,
    before: Meta,
    old_access: Option<Vec<u8>>,
    old_default: Option<Vec<u8>>,
    plan: Planned,
}

impl Pending {
    fn record(&self) -> Before {
        Before {
            path: self.path.clone(),
            dev: self.before.dev,
            ino: self.before.ino,
            uid: self.before.uid,
            gid: self.before.gid,
            mode: self.before.mode,
            acl_access: self.old_access.as_deref().map(hex),
            acl_default: self.old_default.as_deref().map(hex),
            new_uid: Some(self.plan.uid),
            new_gid: Some(self.plan.gid),
        }
    }
}

/// A directory to walk: its name in a parent already open, and the inode seen there.
struct Item {
    parent: Arc<Node>,
    name: OsString,
    path: PathBuf,
    expect: (u64, u64),
    /// The device of the path it is under (the walk stays on it unless `cross_devices`).
    dev: u64,
    /// False for the root of another file system: the directory itself is changed, not entered.
    descend: bool,
}

struct Ctx<'a> {
    map: &'a Map,
    opts: &'a Options,
    journal: Option<&'a Journal>,
    /// Changes decided before they are journaled and made, per worker, at most this many.
    batch: usize,
    seen_links: Mutex<FxHashSet<(u64, u64)>>,
    /// The counts so far, which a caller may read while the run goes (a progress bar).
    counts: Arc<Progress>,
    failures: Mutex<Vec<(PathBuf, String)>>,
    warnings: Mutex<Vec<(PathBuf, String)>>,
    changes: Mutex<Vec<Change>>,
    queue: Mutex<(Vec<Item>, usize)>,
    wake: Condvar,
}

/// What the walk of one directory keeps while it lists it.
struct Listing {
    /// The device of the walked path (the walk stays on it unless `cross_devices`).
    dev: u64,
    /// Inodes handled in an earlier listing of this directory.
    done: FxHashSet<(u64, u64)>,
    /// Directories found, queued after the listing.
    subdirs: Vec<Item>,
}

impl Listing {
    fn new(dev: u64) -> Listing {
        Listing {
            dev,
            done: FxHashSet::default(),
            subdirs: Vec::new(),
        }
    }
}

/// What a worker takes from the queue.
enum Next {
    Dir(Item),
    /// Nothing to walk now: make the decided changes before waiting.
    Flush,
    Done,
}

fn errno(e: &std::io::Error) -> Option<rustix::io::Errno> {
    e.raw_os_error().map(rustix::io::Errno::from_raw_os_error)
}

impl Ctx<'_> {
    fn fail(&self, path: &Path, e: impl std::fmt::Display) {
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.failures.lock() {
            f.push((path.to_path_buf(), e.to_string()));
        }
    }

    fn warn(&self, path: &Path, w: String) {
        if let Ok(mut f) = self.warnings.lock() {
            f.push((path.to_path_buf(), w));
        }
    }

    fn excluded(&self, p: &Path) -> bool {
        self.opts.excludes.iter().any(|x| p.starts_with(x))
            || (!self.opts.ignore.is_empty() && {
                let s = p.as_os_str().as_bytes();
                self.opts.ignore.iter().any(|g| glob_match(g.as_bytes(), s))
            })
    }

    fn what_if(&self, path: &Path, m: &Meta, p: &Planned) {
        self.counts.changed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut c) = self.changes.lock() {
            c.push(Change {
                path: path.to_path_buf(),
                uid: (p.uid != m.uid).then_some((m.uid, p.uid)),
                gid: (p.gid != m.gid).then_some((m.gid, p.gid)),
                acl_access: p.access.is_some(),
                acl_default: p.default.is_some(),
            });
        }
    }

    /// One entry of an open directory (not a directory: those go to the queue). Decided from
    /// `lstat` and the ACL read relative to the directory; a change is decided again from the
    /// entry's own descriptor before it is queued for the journal.
    fn entry(
        &self,
        dir: &Arc<Node>,
        name: &OsStr,
        path: PathBuf,
        l: &mut Listing,
        pending: &mut Vec<Pending>,
    ) {
        if self.excluded(&path) {
            return;
        }
        let vanished = "disappeared while the walk ran (renamed or removed); not translated";
        let m = match fsat::stat_entry(dir.fd(), name) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.fail(&path, vanished);
            }
            Err(e) => return self.fail(&path, e),
        };
        if !l.done.insert(m.id()) {
            // Seen in an earlier listing of this directory.
            return;
        }
        if m.is_dir() {
            l.subdirs.push(Item {
                parent: Arc::clone(dir),
                name: name.to_os_string(),
                path,
                expect: m.id(),
                dev: l.dev,
                descend: self.opts.cross_devices || m.dev == l.dev,
            });
            return;
        }
        self.counts.scanned.fetch_add(1, Ordering::Relaxed);
        if m.nlink > 1 {
            let first = self
                .seen_links
                .lock()
                .map(|mut s| s.insert(m.id()))
                .unwrap_or(true);
            if !first {
                return;
            }
        }
        // A mapped owner or group changes the entry whatever its ACL (in `add`, the target gains
        // an entry): its ACL is read once, from its descriptor. Otherwise the ACL read relative to
        // the directory decides whether the entry is opened at all.
        let mapped = self.map.uids.contains_key(&m.uid) || self.map.gids.contains_key(&m.gid);
        if !mapped || self.opts.what_if {
            let acl = if m.is_symlink() {
                None
            } else {
                match fsat::entry_xattr(dir.fd(), name, acl::ACCESS) {
                    Ok(a) => a,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return self.fail(&path, vanished);
                    }
                    Err(e) => return self.fail(&path, e),
                }
            };
            match decide(self.map, self.opts.mode, &m, acl.as_deref(), None) {
                Ok(None) => {
                    self.counts.unchanged.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Some(p)) if self.opts.what_if => return self.what_if(&path, &m, &p),
                Ok(Some(_)) => {}
                Err(e) => return self.fail(&path, e),
            }
        }
        // The entry to change, by descriptor; what was seen by name is checked against it.
        let node = match fsat::open_entry(dir.fd(), name) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.fail(&path, vanished);
            }
            Err(e) => return self.fail(&path, e),
        };
        let now = match node.stat() {
            Ok(n) => n,
            Err(e) => return self.fail(&path, e),
        };
        if now.id() != m.id() {
            // Its directory changed under the walk: the listing is read again.
            return self.fail(&path, "replaced while the walk ran; left alone");
        }
        let acl = if now.is_symlink() {
            None
        } else {
            match node.get_xattr(acl::ACCESS) {
                Ok(a) => a,
                Err(e) => return self.fail(&path, e),
            }
        };
        match decide(self.map, self.opts.mode, &now, acl.as_deref(), None) {
            Ok(Some(plan)) => pending.push(Pending {
                node: Arc::new(node),
                path,
                before: now,
                old_access: acl,
                old_default: None,
                plan,
            }),
            Ok(None) => {
                self.counts.unchanged.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(&path, e),
        }
    }

    /// A directory from the queue: opened by name in its parent (never through a symlink), its
    /// entries walked (again while renames in it change its ctime), then its own change decided
    /// from its descriptor. The change of the directory itself comes after its listing, so that
    /// its ctime tells of others' renames only.
    fn dir(&self, it: Item, pending: &mut Vec<Pending>) {
        let node = match fsat::open_dir(it.parent.fd(), &it.name) {
            Ok(n) => n,
            Err(e) => {
                let why = match errno(&e) {
                    Some(rustix::io::Errno::LOOP) | Some(rustix::io::Errno::NOTDIR) => {
                        "replaced by something else while the walk ran; not entered".to_string()
                    }
                    Some(rustix::io::Errno::NOENT) => {
                        "disappeared while the walk ran (renamed or removed); not translated".into()
                    }
                    _ => e.to_string(),
                };
                return self.fail(&it.path, why);
            }
        };
        let m = match node.stat() {
            Ok(m) => m,
            Err(e) => return self.fail(&it.path, e),
        };
        if m.id() != it.expect {
            return self.fail(&it.path, "replaced while the walk ran; not entered");
        }
        self.counts.scanned.fetch_add(1, Ordering::Relaxed);
        let node = Arc::new(node);
        if it.descend {
            let mut l = Listing::new(it.dev);
            let mut stable = false;
            for _ in 0..3 {
                let before = match node.stat() {
                    Ok(m) => m.ctime,
                    Err(e) => return self.fail(&it.path, e),
                };
                let names = match fsat::list(node.fd()) {
                    Ok(n) => n,
                    Err(e) => return self.fail(&it.path, e),
                };
                for name in names {
                    let path = it.path.join(&name);
                    self.entry(&node, &name, path, &mut l, pending);
                    if pending.len() >= self.batch {
                        self.flush(pending);
                    }
                }
                if !l.subdirs.is_empty()
                    && let Ok(mut q) = self.queue.lock()
                {
                    q.0.append(&mut l.subdirs);
                    self.wake.notify_all();
                }
                if node.stat().map(|m| m.ctime).ok() == Some(before) {
                    stable = true;
                    break;
                }
            }
            if !stable {
                self.fail(
                    &it.path,
                    "entries were renamed or replaced while the walk ran, in three listings: some may not be translated (run again)",
                );
            }
        }
        let (access, default) = match (node.get_xattr(acl::ACCESS), node.get_xattr(acl::DEFAULT)) {
            (Ok(a), Ok(d)) => (a, d),
            (Err(e), _) | (_, Err(e)) => return self.fail(&it.path, e),
        };
        let m = match node.stat() {
            Ok(m) => m,
            Err(e) => return self.fail(&it.path, e),
        };
        match decide(
            self.map,
            self.opts.mode,
            &m,
            access.as_deref(),
            default.as_deref(),
        ) {
            Ok(None) => {
                self.counts.unchanged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(p)) if self.opts.what_if => self.what_if(&it.path, &m, &p),
            Ok(Some(plan)) => pending.push(Pending {
                node,
                path: it.path,
                before: m,
                old_access: access,
                old_default: default,
                plan,
            }),
            Err(e) => self.fail(&it.path, e),
        }
    }

    /// Journals the decided changes (durably) and then makes them.
    fn flush(&self, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        if let Some(j) = self.journal {
            let records: Vec<Before> = pending.iter().map(Pending::record).collect();
            if let Err(e) = j.commit(&records) {
                for p in pending.drain(..) {
                    self.fail(&p.path, format!("journal: {e}; not changed"));
                }
                return;
            }
        }
        for p in pending.drain(..) {
            match self.apply(&p) {
                Ok(()) => {
                    self.counts.changed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.fail(&p.path, e),
            }
        }
    }

    fn apply(&self, p: &Pending) -> std::io::Result<()> {
        let (b, n) = (&p.before, &p.node);
        if p.plan.uid != b.uid || p.plan.gid != b.gid {
            n.chown(p.plan.uid, p.plan.gid)?;
            // chown clears setuid and setgid of a file: they go back on this very inode, only
            // while its owner is the one just set, and never for a privileged owner.
            if !b.is_symlink() && !b.is_dir() && b.mode & 0o6000 != 0 {
                let now = n.stat()?;
                let mut want = b.mode & 0o7777;
                if (now.uid, now.gid) != (p.plan.uid, p.plan.gid) {
                    want &= !0o6000;
                }
                if want & 0o4000 != 0 && !self.map.may_keep_setid(p.plan.uid) {
                    want &= !0o4000;
                    self.warn(
                        &p.path,
                        format!(
                            "setuid not kept: the owner uid {} is privileged",
                            p.plan.uid
                        ),
                    );
                }
                if want & 0o2000 != 0 && !self.map.may_keep_setid(p.plan.gid) {
                    want &= !0o2000;
                    self.warn(
                        &p.path,
                        format!(
                            "setgid not kept: the group gid {} is privileged",
                            p.plan.gid
                        ),
                    );
                }
                if now.mode & 0o7777 != want {
                    n.chmod(want)?;
                }
            }
        }
        if let Some(a) = &p.plan.access {
            n.set_xattr(acl::ACCESS, Some(a))?;
        }
        if let Some(d) = &p.plan.default {
            n.set_xattr(acl::DEFAULT, Some(d))?;
        }
        Ok(())
    }

    /// Worker: takes directories from the shared queue until every worker is idle and it is
    /// empty; its decided changes are made in batches, and before it waits.
    fn work(&self) {
        let mut pending = Vec::new();
        loop {
            let next = {
                let Ok(mut q) = self.queue.lock() else { return };
                loop {
                    if let Some(d) = q.0.pop() {
                        q.1 += 1;
                        break Next::Dir(d);
                    }
                    if q.1 == 0 {
                        break Next::Done;
                    }
                    if !pending.is_empty() {
                        break Next::Flush;
                    }
                    q = match self.wake.wait(q) {
                        Ok(q) => q,
                        Err(_) => return,
                    };
                }
            };
            match next {
                Next::Dir(d) => {
                    self.dir(d, &mut pending);
                    if pending.len() >= self.batch {
                        self.flush(&mut pending);
                    }
                    if let Ok(mut q) = self.queue.lock() {
                        q.1 -= 1;
                    }
                    self.wake.notify_all();
                }
                Next::Flush => self.flush(&mut pending),
                Next::Done => {
                    self.flush(&mut pending);
                    self.wake.notify_all();
                    return;
                }
            }
        }
    }
}

/// A run's counts as it goes, for a progress display on another thread.
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries looked at (an undo: journal records restored or failed).
    pub scanned: AtomicU64,
    pub changed: AtomicU64,
    pub unchanged: AtomicU64,
    pub failed: AtomicU64,
}

/// Re-permissions `paths` (each one itself and everything below it).
pub fn run(
    paths: &[PathBuf],
    map: &Map,
    opts: &Options,
    journal: Option<&Path>,
) -> Result<Summary, String> {
    run_counted(paths, map, opts, journal, Arc::default())
}

/// [`run`], counting into `counts` as it goes.
pub fn run_counted(
    paths: &[PathBuf],
    map: &Map,
    opts: &Options,
    journal: Option<&Path>,
    counts: Arc<Progress>,
) -> Result<Summary, String> {
    let started = std::time::Instant::now();
    fsat::check_procfs()?;
    let threads = opts.threads.max(1);
    // Each worker holds the descriptors of a batch; the rest of the limit is for directories.
    let limit = fsat::raise_fd_limit();
    let batch = (limit.saturating_sub(512) / (threads as u64 * 2)).clamp(16, 4096) as usize;
    let journal = match journal {
        Some(p) if !opts.what_if => Some(Journal::open(p, map, opts.mode)?),
        _ => None,
    };
    let ctx = Ctx {
        map,
        opts,
        journal: journal.as_ref(),
        batch,
        seen_links: Mutex::new(FxHashSet::default()),
        counts,
        failures: Mutex::new(Vec::new()),
        warnings: Mutex::new(Vec::new()),
        changes: Mutex::new(Vec::new()),
        queue: Mutex::new((Vec::new(), 0)),
        wake: Condvar::new(),
    };
    let mut pending = Vec::new();
    for p in paths {
        let (parent, name) = fsat::open_parent(p)?;
        let parent = Arc::new(parent);
        let m =
            fsat::stat_entry(parent.fd(), &name).map_err(|e| format!("{}: {e}", p.display()))?;
        if m.is_dir() {
            if let Ok(mut q) = ctx.queue.lock() {
                q.0.push(Item {
                    parent,
                    name,
                    path: p.clone(),
                    expect: m.id(),
                    dev: m.dev,
                    descend: true,
                });
            }
        } else {
            ctx.entry(
                &parent,
                &name,
                p.clone(),
                &mut Listing::new(m.dev),
                &mut pending,
            );
        }
    }
    ctx.flush(&mut pending);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| ctx.work());
        }
    });
    if let Some(j) = &journal {
        j.finish().map_err(|e| format!("journal: {e}"))?;
    }
    let failures = ctx.failures.into_inner().unwrap_or_default();
    let mut changes = ctx.changes.into_inner().unwrap_or_default();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Summary {
        scanned: ctx.counts.scanned.load(Ordering::Relaxed),
        changed: ctx.counts.changed.load(Ordering::Relaxed),
        unchanged: ctx.counts.unchanged.load(Ordering::Relaxed),
        failed: failures.len() as u64,
        failures,
        warnings: ctx.warnings.into_inner().unwrap_or_default(),
        changes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Restores every journaled file exactly, newest record first (a file journaled twice, by a run
/// resumed after a kill, is restored to its oldest record: the state before the run). A path
/// that leads to another inode now, or to the same inode with an owner the run neither found nor
/// set, is reported and not touched; setuid/setgid go back only once the journaled owner is on
/// the inode.
/// A journal's records, each inode once (its first record: the metadata the run found).
pub fn journal_records(journal: &Path) -> Result<Vec<Before>, String> {
    let text = std::fs::read(journal).map_err(|e| format!("{}: {e}", journal.display()))?;
    let mut lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header = lines
        .next()
        .ok_or_else(|| format!("{}: empty journal", journal.display()))?;
    serde_json::from_slice::<JournalHeader>(header)
        .map_err(|_| format!("{}: not a ferry journal", journal.display()))?;
    let lines: Vec<&[u8]> = lines.collect();
    let mut records: Vec<Before> = Vec::with_capacity(lines.len());
    let mut seen = FxHashSet::default();
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_slice::<Before>(l) {
            Ok(b) => {
                if seen.insert((b.dev, b.ino)) {
                    records.push(b);
                }
            }
            // A record cut short by a kill is the last line, and its change was never made.
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => return Err(format!("{}: line {}: {e}", journal.display(), i + 2)),
        }
    }
    Ok(records)
}

/// After an undo: the journaled files whose owner, group, mode or ACLs differ from what the run
/// found (path, what differs). A file gone or replaced since is not the run's to prove.
pub fn undone_mismatches(journal: &Path) -> Result<(u64, Vec<(PathBuf, String)>), String> {
    let records = journal_records(journal)?;
    let mut bad = Vec::new();
    let mut checked = 0;
    for b in &records {
        let Ok(node) = fsat::open_path(&b.path) else {
            continue;
        };
        let Ok(m) = node.stat() else { continue };
        if m.id() != (b.dev, b.ino) {
            continue;
        }
        checked += 1;
        let mut diff = Vec::new();
        if (m.uid, m.gid) != (b.uid, b.gid) {
            diff.push(format!(
                "owner {}:{}, was {}:{}",
                m.uid, m.gid, b.uid, b.gid
            ));
        }
        if m.mode & 0o7777 != b.mode & 0o7777 {
            diff.push(format!(
                "mode {:o}, was {:o}",
                m.mode & 0o7777,
                b.mode & 0o7777
            ));
        }
        if !m.is_symlink() {
            let now = |name| node.get_xattr(name).ok().flatten().map(|v| hex(&v));
            if now(acl::ACCESS) != b.acl_access {
                diff.push("access ACL differs".into());
            }
            if m.is_dir() && now(acl::DEFAULT) != b.acl_default {
                diff.push("default ACL differs".into());
            }
        }
        if !diff.is_empty() {
            bad.push((b.path.clone(), diff.join(", ")));
        }
    }
    Ok((checked, bad))
}

pub fn undo(journal: &Path, threads: usize) -> Result<Summary, String> {
    undo_counted(journal, threads, &Progress::default())
}

/// [`undo`], counting restored (`changed`) and failed records into `counts` as it goes.
pub fn undo_counted(journal: &Path, threads: usize, counts: &Progress) -> Result<Summary, String> {
    let started = std::time::Instant::now();
    fsat::check_procfs()?;
    let records = journal_records(journal)?;
    // Every inode is restored once and on its own, so the order between them does not matter:
    // workers take interleaved shares, each newest first.
    let threads = threads.clamp(1, 64);
    let parts: Vec<(u64, Vec<(PathBuf, String)>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let records = &records;
                sc.spawn(move || {
                    let (mut ok, mut failed) = (0u64, Vec::new());
                    for b in records.iter().rev().skip(t).step_by(threads) {
                        match restore(b) {
                            Ok(()) => {
                                ok += 1;
                                counts.changed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failed.push((b.path.clone(), e));
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        counts.scanned.fetch_add(1, Ordering::Relaxed);
                    }
                    (ok, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut s = Summary {
        scanned: records.len() as u64,
        ..Summary::default()
    };
    for (ok, failed) in parts {
        s.changed += ok;
        s.failures.extend(failed);
    }
    s.failed = s.failures.len() as u64;
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

fn restore(b: &Before) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let node = fsat::open_path(&b.path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no longer exists".to_string(),
        _ => e.to_string(),
    })?;
    let m = node.stat().map_err(io)?;
    if m.id() != (b.dev, b.ino) {
        return Err("the path is another file now; left alone".into());
    }
    let owner = (m.uid, m.gid);
    if let (Some(nu), Some(ng)) = (b.new_uid, b.new_gid)
        && owner != (nu, ng)
        && owner != (b.uid, b.gid)
    {
        return Err(format!(
            "its owner is {}:{} now, neither {nu}:{ng} as the run left it nor {}:{} as it found it; changed since, left alone",
            m.uid, m.gid, b.uid, b.gid
        ));
    }
    let chowned = owner != (b.uid, b.gid);
    if chowned {
        node.chown(b.uid, b.gid).map_err(io)?;
    }
    if m.is_symlink() {
        return Ok(());
    }
    // Setting or removing an access ACL moves the mode's group bits: the mode is put back after.
    let mut mode_moved = chowned && m.mode & 0o6000 != 0;
    let access = b.acl_access.as_deref().and_then(unhex);
    mode_moved |= node.put_xattr(acl::ACCESS, access.as_deref()).map_err(io)?;
    if m.is_dir() {
        let default = b.acl_default.as_deref().and_then(unhex);
        node.put_xattr(acl::DEFAULT, default.as_deref())
            .map_err(io)?;
    }
    let mut mode = b.mode & 0o7777;
    if mode & 0o6000 != 0 {
        let now = node.stat().map_err(io)?;
        if (now.uid, now.gid) != (b.uid, b.gid) {
            mode &= !0o6000;
        }
    }
    if mode_moved || m.mode & 0o7777 != mode {
        node.chmod(mode).map_err(io)?;
    }
    Ok(())
}

/// Whether `path` matches the glob `pat`: `*` and `?` stay within one name, `**` spans names
/// (`**/x` also matches `x` at the top).
pub fn glob_match(pat: &[u8], path: &[u8]) -> bool {
    match pat {
        [] => path.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => {
            glob_match(rest, path)
                || path
                    .iter()
                    .enumerate()
                    .any(|(i, c)| *c == b'/' && glob_match(rest, &path[i + 1..]))
        }
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|i| glob_match(rest, &path[i..])),
        [b'*', rest @ ..] => (0..=path.len())
            .take_while(|i| *i == 0 || path[i - 1] != b'/')
            .any(|i| glob_match(rest, &path[i..])),
        [b'?', rest @ ..] => !path.is_empty() && path[0] != b'/' && glob_match(rest, &path[1..]),
        [c, rest @ ..] => path.first() == Some(c) && glob_match(rest, &path[1..]),
    }
}

/// A path for messages and JSON (file names may hold newlines).
pub fn show(p: &Path) -> String {
    String::from_utf8_lossy(p.as_os_str().as_bytes())
        .escape_debug()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::{Journal, Map, Mode, glob_match};

    #[test]
    fn a_journal_cut_short_by_a_kill_is_resumed_cleanly() {
        let d = tempfile::tempdir().unwrap();
        let j = d.path().join("journal");
        let map = Map::parse("source,target\nuid:1001,uid:2001\n").unwrap();
        // Killed while writing the header: started again.
        std::fs::write(&j, "{\"ferry_jour").unwrap();
        drop(Journal::open(&j, &map, Mode::Add).unwrap());
        let text = std::fs::read_to_string(&j).unwrap();
        assert!(
            text.starts_with("{\"ferry_journal\":2") && text.ends_with("}\n"),
            "{text}"
        );
        // Killed while writing a record: the partial line goes, whole records stay.
        let whole = format!("{text}{{\"path\":\"/a\"}}\n");
        std::fs::write(&j, format!("{whole}{{\"path\":\"/b")).unwrap();
        drop(Journal::open(&j, &map, Mode::Add).unwrap());
        assert_eq!(std::fs::read_to_string(&j).unwrap(), whole);
        // Another map is refused.
        let other = Map::parse("source,target\nuid:1001,uid:3001\n").unwrap();
        assert!(Journal::open(&j, &other, Mode::Add).is_err());
    }

    #[test]
    fn ignore_globs() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes());
        assert!(m("**/node_modules", "/home/ann/src/node_modules"));
        assert!(m("**/node_modules", "node_modules"));
        assert!(!m("**/node_modules", "/home/ann/node_modules2"));
        assert!(m("/home/*/cache", "/home/ann/cache"));
        assert!(!m("/home/*/cache", "/home/ann/x/cache"));
        assert!(m("/srv/**/cache", "/srv/a/b/cache"));
        assert!(m("/srv/**", "/srv/a/b"));
        assert!(m("**/*.tmp", "/home/ann/a b.tmp"));
        assert!(!m("**/*.tmp", "/home/ann.tmp/x"));
        assert!(m("/home/ann/?.txt", "/home/ann/a.txt"));
        assert!(!m("/home/ann/?.txt", "/home/ann/ab.txt"));
    }
}

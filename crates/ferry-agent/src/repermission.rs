//! The re-permissioning engine: one parallel pass over each path translating owner, group and
//! every named entry of the access and default POSIX ACLs through a map; symlinks never
//! followed, hard links once, unchanged files never written, every change journaled first so
//! that `undo` restores the exact previous state.

use crate::acl::{self, Acl};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    AddAndRemove,
    Add,
}

/// Source → target principals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Map {
    pub uids: FxHashMap<u32, u32>,
    pub gids: FxHashMap<u32, u32>,
    /// SIDs (used by the Windows engine; carried so that one file serves both).
    pub sids: FxHashMap<String, String>,
}

impl Map {
    /// Reads `source,target` CSV (`uid:N`, `gid:N` or `S-1-…`), or ferry's `csv` translation
    /// export (uid, gid and SID columns). Errors name the line.
    pub fn parse(text: &str) -> Result<Map, String> {
        let mut m = Map::default();
        let mut lines = text.lines().enumerate();
        let Some((_, header)) = lines.next() else {
            return Err("line 1: the map is empty; expected the header `source,target`".into());
        };
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let export = cols.contains(&"source_uid");
        if !export && cols != ["source", "target"] {
            return Err(format!(
                "line 1: expected the header `source,target` (or ferry's csv translation export), found `{header}`"
            ));
        }
        let idx = |n: &str| cols.iter().position(|c| *c == n);
        for (i, line) in lines {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            if export {
                let f: Vec<&str> = line.split(',').collect();
                let get = |c: &str| {
                    idx(c)
                        .and_then(|i| f.get(i))
                        .map(|s| s.trim())
                        .filter(|s| !s.is_empty())
                };
                if let (Some(s), Some(t)) = (get("source_uid"), get("target_uid")) {
                    m.add(n, &format!("uid:{s}"), &format!("uid:{t}"))?;
                }
                if let (Some(s), Some(t)) = (get("source_gid"), get("target_gid")) {
                    m.add(n, &format!("gid:{s}"), &format!("gid:{t}"))?;
                }
                if let (Some(s), Some(t)) = (get("source_sid"), get("target_sid")) {
                    m.add(n, s, t)?;
                }
                continue;
            }
            let Some((s, t)) = line.split_once(',') else {
                return Err(format!("line {n}: expected `source,target`"));
            };
            m.add(n, s.trim(), t.trim())?;
        }
        m.check()?;
        Ok(m)
    }

    fn add(&mut self, line: usize, s: &str, t: &str) -> Result<(), String> {
        let num = |v: &str, p: &str| -> Result<u32, String> {
            v.strip_prefix(p)
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| format!("line {line}: `{v}` is not {p}N"))
        };
        let prev = if s.starts_with("uid:") {
            self.uids
                .insert(num(s, "uid:")?, num(t, "uid:")?)
                .map(|p| p.to_string())
        } else if s.starts_with("gid:") {
            self.gids
                .insert(num(s, "gid:")?, num(t, "gid:")?)
                .map(|p| p.to_string())
        } else if s.starts_with("S-1-") && t.starts_with("S-1-") {
            self.sids.insert(s.to_string(), t.to_string())
        } else {
            return Err(format!(
                "line {line}: `{s}` → `{t}`: each side must be uid:N, gid:N or a SID, of the same kind"
            ));
        };
        match prev {
            Some(p) if p != t.trim_start_matches("uid:").trim_start_matches("gid:") => {
                Err(format!("line {line}: `{s}` is mapped twice"))
            }
            _ => Ok(()),
        }
    }

    /// A target that is also a source would make a second run change things again.
    fn check(&self) -> Result<(), String> {
        for (s, t) in &self.uids {
            if s != t && self.uids.contains_key(t) {
                return Err(format!(
                    "uid {t} is both a target (of uid {s}) and a source: runs would not be repeatable"
                ));
            }
        }
        for (s, t) in &self.gids {
            if s != t && self.gids.contains_key(t) {
                return Err(format!(
                    "gid {t} is both a target (of gid {s}) and a source: runs would not be repeatable"
                ));
            }
        }
        Ok(())
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
    pub changes: Vec<Change>,
    pub seconds: f64,
}

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

pub(crate) fn get_xattr(path: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
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

pub(crate) fn set_xattr(path: &Path, name: &str, value: Option<&[u8]>) -> std::io::Result<()> {
    match value {
        Some(v) => rustix::fs::lsetxattr(path, name, v, rustix::fs::XattrFlags::empty())
            .map_err(Into::into),
        None => match rustix::fs::lremovexattr(path, name) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

/// The journal: a header line, then one JSON line per file, written before the change.
struct Journal {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    since_sync: AtomicU64,
}

impl Journal {
    fn open(path: &Path, map: &Map, mode: Mode) -> Result<Journal, String> {
        let header = JournalHeader {
            ferry_journal: 1,
            map_hash: map.hash(),
            mode,
        };
        if path.exists() {
            Journal::cut_partial_record(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if path.exists() && std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) > 0 {
            let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut first = String::new();
            std::io::BufReader::new(f)
                .read_line(&mut first)
                .map_err(|e| format!("{}: {e}", path.display()))?;
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
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if f.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            let line = serde_json::to_string(&header).unwrap_or_default();
            writeln!(f, "{line}")
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Journal {
            file: Mutex::new(std::io::BufWriter::new(f)),
            since_sync: AtomicU64::new(0),
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

    /// Records a file's previous state; it reaches the OS before the change is made (a killed
    /// process loses nothing written), and is fsynced every 4096 records and at the end.
    fn record(&self, b: &Before) -> std::io::Result<()> {
        let line = serde_json::to_string(b).map_err(std::io::Error::other)?;
        let mut f = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("journal lock"))?;
        writeln!(f, "{line}")?;
        f.flush()?;
        if self.since_sync.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            f.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn finish(&self) -> std::io::Result<()> {
        let mut f = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("journal lock"))?;
        f.flush()?;
        f.get_ref().sync_all()
    }
}

struct Ctx<'a> {
    map: &'a Map,
    opts: &'a Options,
    journal: Option<&'a Journal>,
    seen_links: Mutex<FxHashSet<(u64, u64)>>,
    scanned: AtomicU64,
    changed: AtomicU64,
    unchanged: AtomicU64,
    failures: Mutex<Vec<(PathBuf, String)>>,
    changes: Mutex<Vec<Change>>,
    queue: Mutex<(Vec<(PathBuf, u64)>, usize)>,
    wake: Condvar,
}

impl Ctx<'_> {
    fn fail(&self, path: &Path, e: impl std::fmt::Display) {
        if let Ok(mut f) = self.failures.lock() {
            f.push((path.to_path_buf(), e.to_string()));
        }
    }

    fn excluded(&self, p: &Path) -> bool {
        self.opts.excludes.iter().any(|x| p.starts_with(x))
            || (!self.opts.ignore.is_empty() && {
                let s = p.as_os_str().as_bytes();
                self.opts.ignore.iter().any(|g| glob_match(g.as_bytes(), s))
            })
    }

    /// Decides and applies the change of one entry.
    fn visit(&self, path: &Path, md: &std::fs::Metadata) {
        self.scanned.fetch_add(1, Ordering::Relaxed);
        if md.nlink() > 1 && !md.is_dir() {
            let first = self
                .seen_links
                .lock()
                .map(|mut s| s.insert((md.dev(), md.ino())))
                .unwrap_or(true);
            if !first {
                return;
            }
        }
        match self.change(path, md) {
            Ok(true) => {
                self.changed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {
                self.unchanged.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(path, e),
        }
    }

    fn change(&self, path: &Path, md: &std::fs::Metadata) -> std::io::Result<bool> {
        let (uid, gid, mode) = (md.uid(), md.gid(), md.mode());
        let m = self.map;
        let add = self.opts.mode == Mode::Add;
        let is_link = md.file_type().is_symlink();
        let new_uid = if add {
            uid
        } else {
            *m.uids.get(&uid).unwrap_or(&uid)
        };
        let new_gid = if add {
            gid
        } else {
            *m.gids.get(&gid).unwrap_or(&gid)
        };
        let uf = |u: u32| m.uids.get(&u).copied();
        let gf = |g: u32| m.gids.get(&g).copied();
        let (mut old_access, mut old_default, mut new_access, mut new_default) =
            (None, None, None, None);
        if !is_link {
            old_access = get_xattr(path, acl::ACCESS)?;
            if md.is_dir() {
                old_default = get_xattr(path, acl::DEFAULT)?;
            }
            let base = match &old_access {
                Some(b) => Some(Acl::parse(b).map_err(std::io::Error::other)?),
                // `add` gives a target the owner's or group's rights through a new ACL.
                None if add && (uf(uid).is_some() || gf(gid).is_some()) => {
                    Some(acl::from_mode(mode))
                }
                None => None,
            };
            if let Some(a) = base {
                let t = a.translate(&uf, &gf, add, Some(uid), Some(gid));
                let bytes = t.to_bytes();
                if old_access.as_deref() != Some(bytes.as_slice())
                    && (old_access.is_some() || t != acl::from_mode(mode))
                {
                    new_access = Some((bytes, acl::mode_with(mode, &t)));
                }
            }
            if let Some(b) = &old_default {
                let d = Acl::parse(b).map_err(std::io::Error::other)?;
                let t = d.translate(&uf, &gf, add, None, None);
                let bytes = t.to_bytes();
                if bytes != *b {
                    new_default = Some(bytes);
                }
            }
        }
        if new_uid == uid && new_gid == gid && new_access.is_none() && new_default.is_none() {
            return Ok(false);
        }
        if self.opts.what_if {
            if let Ok(mut c) = self.changes.lock() {
                c.push(Change {
                    path: path.to_path_buf(),
                    uid: (new_uid != uid).then_some((uid, new_uid)),
                    gid: (new_gid != gid).then_some((gid, new_gid)),
                    acl_access: new_access.is_some(),
                    acl_default: new_default.is_some(),
                });
            }
            return Ok(true);
        }
        if let Some(j) = self.journal {
            j.record(&Before {
                path: path.to_path_buf(),
                dev: md.dev(),
                ino: md.ino(),
                uid,
                gid,
                mode,
                acl_access: old_access.as_deref().map(hex),
                acl_default: old_default.as_deref().map(hex),
            })?;
        }
        if new_uid != uid || new_gid != gid {
            std::os::unix::fs::lchown(path, Some(new_uid), Some(new_gid))?;
            // chown clears setuid/setgid on regular files: put the exact mode back.
            if !is_link && mode & 0o6000 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
        }
        if let Some((bytes, _)) = &new_access {
            set_xattr(path, acl::ACCESS, Some(bytes))?;
        }
        if let Some(bytes) = &new_default {
            set_xattr(path, acl::DEFAULT, Some(bytes))?;
        }
        Ok(true)
    }

    /// Worker: takes directories from the shared queue until every worker is idle and it is empty.
    fn work(&self) {
        loop {
            let next = {
                let Ok(mut q) = self.queue.lock() else { return };
                loop {
                    if let Some(d) = q.0.pop() {
                        q.1 += 1;
                        break Some(d);
                    }
                    if q.1 == 0 {
                        break None;
                    }
                    q = match self.wake.wait(q) {
                        Ok(q) => q,
                        Err(_) => return,
                    };
                }
            };
            let Some((dir, dev)) = next else {
                self.wake.notify_all();
                return;
            };
            self.read_dir(&dir, dev);
            if let Ok(mut q) = self.queue.lock() {
                q.1 -= 1;
            }
            self.wake.notify_all();
        }
    }

    fn read_dir(&self, dir: &Path, dev: u64) {
        let rd = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) => return self.fail(dir, e),
        };
        let mut subdirs = Vec::new();
        for ent in rd {
            let ent = match ent {
                Ok(e) => e,
                Err(e) => {
                    self.fail(dir, e);
                    continue;
                }
            };
            let path = ent.path();
            if self.excluded(&path) {
                continue;
            }
            // DirEntry::metadata does not follow symlinks.
            let md = match ent.metadata() {
                Ok(m) => m,
                Err(e) => {
                    self.fail(&path, e);
                    continue;
                }
            };
            self.visit(&path, &md);
            if md.is_dir() && (self.opts.cross_devices || md.dev() == dev) {
                subdirs.push((path, dev));
            }
        }
        if !subdirs.is_empty()
            && let Ok(mut q) = self.queue.lock()
        {
            q.0.extend(subdirs);
            self.wake.notify_all();
        }
    }
}

/// Re-permissions `paths` (each one itself and everything below it).
pub fn run(
    paths: &[PathBuf],
    map: &Map,
    opts: &Options,
    journal: Option<&Path>,
) -> Result<Summary, String> {
    let started = std::time::Instant::now();
    let journal = match journal {
        Some(p) if !opts.what_if => Some(Journal::open(p, map, opts.mode)?),
        _ => None,
    };
    let ctx = Ctx {
        map,
        opts,
        journal: journal.as_ref(),
        seen_links: Mutex::new(FxHashSet::default()),
        scanned: AtomicU64::new(0),
        changed: AtomicU64::new(0),
        unchanged: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
        changes: Mutex::new(Vec::new()),
        queue: Mutex::new((Vec::new(), 0)),
        wake: Condvar::new(),
    };
    for p in paths {
        let md = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        ctx.visit(p, &md);
        if md.is_dir()
            && let Ok(mut q) = ctx.queue.lock()
        {
            q.0.push((p.clone(), md.dev()));
        }
    }
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
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
        scanned: ctx.scanned.load(Ordering::Relaxed),
        changed: ctx.changed.load(Ordering::Relaxed),
        unchanged: ctx.unchanged.load(Ordering::Relaxed),
        failed: failures.len() as u64,
        failures,
        changes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Restores every journaled file exactly, newest record first. A file that is no longer the
/// journaled one (another device and inode at the path) is reported, not touched.
pub fn undo(journal: &Path) -> Result<Summary, String> {
    let started = std::time::Instant::now();
    let text = std::fs::read(journal).map_err(|e| format!("{}: {e}", journal.display()))?;
    let mut lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header = lines
        .next()
        .ok_or_else(|| format!("{}: empty journal", journal.display()))?;
    serde_json::from_slice::<JournalHeader>(header)
        .map_err(|_| format!("{}: not a ferry journal", journal.display()))?;
    let lines: Vec<&[u8]> = lines.collect();
    let mut records: Vec<Before> = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_slice::<Before>(l) {
            Ok(b) => records.push(b),
            // A record cut short by a kill is the last line, and its change was never made.
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => return Err(format!("{}: line {}: {e}", journal.display(), i + 2)),
        }
    }
    let mut s = Summary::default();
    for b in records.iter().rev() {
        s.scanned += 1;
        let restore = || -> std::io::Result<()> {
            let md = std::fs::symlink_metadata(&b.path)?;
            if md.dev() != b.dev || md.ino() != b.ino {
                return Err(std::io::Error::other(
                    "the path is another file now; left alone",
                ));
            }
            std::os::unix::fs::lchown(&b.path, Some(b.uid), Some(b.gid))?;
            if !md.file_type().is_symlink() {
                let access = b.acl_access.as_deref().and_then(unhex);
                set_xattr(&b.path, acl::ACCESS, access.as_deref())?;
                if md.is_dir() {
                    let default = b.acl_default.as_deref().and_then(unhex);
                    set_xattr(&b.path, acl::DEFAULT, default.as_deref())?;
                }
                std::fs::set_permissions(
                    &b.path,
                    std::fs::Permissions::from_mode(b.mode & 0o7777),
                )?;
            }
            Ok(())
        };
        match restore() {
            Ok(()) => s.changed += 1,
            Err(e) => {
                s.failed += 1;
                s.failures.push((b.path.clone(), e.to_string()));
            }
        }
    }
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
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
        let map = Map::parse("source,target\nuid:1,uid:2\n").unwrap();
        // Killed while writing the header: started again.
        std::fs::write(&j, "{\"ferry_jour").unwrap();
        drop(Journal::open(&j, &map, Mode::Add).unwrap());
        let text = std::fs::read_to_string(&j).unwrap();
        assert!(
            text.starts_with("{\"ferry_journal\":1") && text.ends_with("}\n"),
            "{text}"
        );
        // Killed while writing a record: the partial line goes, whole records stay.
        let whole = format!("{text}{{\"path\":\"/a\"}}\n");
        std::fs::write(&j, format!("{whole}{{\"path\":\"/b")).unwrap();
        drop(Journal::open(&j, &map, Mode::Add).unwrap());
        assert_eq!(std::fs::read_to_string(&j).unwrap(), whole);
        // Another map is refused.
        let other = Map::parse("source,target\nuid:1,uid:3\n").unwrap();
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

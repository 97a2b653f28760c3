//! The agent's state directory: every file the agent keeps, written so that a kill or a power
//! loss at any moment leaves either the old or the new version (write, fsync, rename, fsync the
//! directory), never half of one.
//!
//! ```text
//! STATE_DIR/                     0711, root (others reach requests/ and status.json only)
//!   agent.json                   0600  server URL, pinned fingerprint, agent id, node key
//!   run.json                     0600  the current run: its order and every step's state
//!   completed.json               0644  runbooks that succeeded on this device (prerequisites)
//!   status.json                  0644  what `ferry agent status` shows (no secrets)
//!   outbox.jsonl, outbox.sent    0600  progress events, and how many bytes of them were sent
//!   runs/RUN.log, RUN.log.sent   0600  the run's local log, and how much of it was sent
//!   runs/RUN.journal             0600  the re-permissioning journal (undo, resume)
//!   requests/                    1733  start-now and snooze requests from signed-in users
//!   offer.json                   0600  the offered run: snoozes, start-now
//!   lock, daemon.lock                  held while a run's steps execute (and by rollback); by
//!                                      the running agent
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the state directory.
    pub fn open(root: &Path) -> Result<StateDir, String> {
        let d = StateDir {
            root: root.to_path_buf(),
        };
        for (p, mode) in [
            // Others may pass through (to requests/ and status.json) but not list it.
            (d.root.clone(), 0o711),
            (d.root.join("runs"), 0o700),
            (d.requests(), 0o1733),
        ] {
            if !p.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(&p)
                    .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
            }
            // The mode asked for, whatever the umask made of it.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(d)
    }

    /// Opens an existing state directory for reading (status, requests): created by `run`.
    pub fn existing(root: &Path) -> Result<StateDir, String> {
        if !root.join("agent.json").exists() && !root.join("status.json").exists() {
            return Err(format!(
                "{} is not an agent state directory (start the agent with `ferry agent run` first, or pass --state-dir)",
                root.display()
            ));
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn requests(&self) -> PathBuf {
        self.root.join("requests")
    }
    pub fn run_file(&self, run: &str, ext: &str) -> PathBuf {
        self.root
            .join("runs")
            .join(format!("{}.{ext}", safe_name(run)))
    }

    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, String> {
        read_json(&self.path(name))
    }

    pub fn write<T: Serialize>(&self, name: &str, v: &T, mode: u32) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(v).map_err(|e| format!("{name}: {e}"))?;
        atomic_write(&self.path(name), &bytes, mode)
    }

    /// Takes a lock file without waiting: `None` when another process holds it. `lock` is held
    /// while a run's steps execute (and by rollback); `daemon.lock` by `ferry agent run`.
    pub fn try_lock(&self, name: &str) -> Result<Option<std::fs::File>, String> {
        let p = self.path(name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(f)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }
}

/// A run id as a file name: anything but letters, digits, `-`, `_` and `.` becomes `_`.
pub fn safe_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    n.trim_start_matches('.').to_string()
}

pub fn read_json<T: DeserializeOwned>(p: &Path) -> Result<Option<T>, String> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Replaces `path` with `bytes` atomically and durably, with `mode` from the start (a secret is
/// never readable by others, not even for a moment).
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    // A bare file name's parent is "": the current directory.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Appends to a file and syncs it (the outbox and the run log).
pub fn append(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(bytes)?;
        f.sync_data()
    })();
    res.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A byte offset kept next to a file (`X.sent`): how much of it the server has.
pub fn read_offset(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

pub fn write_offset(path: &Path, n: u64) -> Result<(), String> {
    atomic_write(path, n.to_string().as_bytes(), 0o600)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_with_their_mode() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(&d.path().join("state")).unwrap();
        s.write("agent.json", &serde_json::json!({"k": 1}), 0o600)
            .unwrap();
        let md = std::fs::metadata(s.path("agent.json")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        let v: serde_json::Value = s.read("agent.json").unwrap().unwrap();
        assert_eq!(v["k"], 1);
        assert_eq!(
            std::fs::metadata(s.requests())
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o1733
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&s.root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp-")));
        // A second holder of the lock is refused while the first holds it.
        let held = s.try_lock("lock").unwrap();
        assert!(held.is_some());
        assert!(s.try_lock("lock").unwrap().is_none());
        assert!(s.try_lock("daemon.lock").unwrap().is_some());
        drop(held);
        assert!(s.try_lock("lock").unwrap().is_some());
        assert_eq!(safe_name("../Pilot 7/x"), "_Pilot_7_x");
    }
}

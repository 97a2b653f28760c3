//! The audit trail: every operator act that changes something (who, for which tenant, from which
//! address, in which request, what, on what, and before → after where that is small), and the
//! server's own decisions (a batch halting itself, a dead server's move rolled back).
//!
//! Lines are rows of the store's `audit` table, read by `GET /api/v1/audit` and `ferry audit`.
//! When `[server] audit_log` names a file, each line is also appended to it as JSON (one object a
//! line, the API's `AuditEntry`) as it is recorded, for a SIEM to collect. [`Trail::record`] is
//! the one place a line is written; [`act`] makes an operator's line from the request. A line
//! never holds a secret: handlers give names, counts and hashes, never a key, token or password.

use crate::auth::Acting;
use crate::state::AppState;
use ferry_store::{AuditEntry, Store, StoreError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where audit lines go: the store, and the file sink when there is one.
pub struct Trail {
    store: Arc<dyn Store>,
    sink: Option<Sink>,
}

impl Trail {
    pub fn new(store: Arc<dyn Store>, sink: Option<Sink>) -> Arc<Trail> {
        Arc::new(Trail { store, sink })
    }

    /// Records a line (its `id` is the store's) and appends it to the file sink.
    pub async fn record(&self, mut e: AuditEntry) -> Result<AuditEntry, StoreError> {
        e.id = self.store.add_audit(&e).await?;
        self.appended(&e);
        Ok(e)
    }

    /// A line that a transaction of the store wrote itself (an environment's hand-over),
    /// once committed: to the file sink.
    pub fn appended(&self, e: &AuditEntry) {
        if let Some(s) = &self.sink
            && let Err(err) = s.append(e)
        {
            // The line is in the database; the file misses it. Said loudly, not failed: the act
            // is done and recorded.
            tracing::error!(path = %s.path.display(), error = %err, action = %e.action, id = e.id, "could not append an audit line to audit_log");
        }
    }
}

/// An append-only JSON-lines file (`[server] audit_log`).
pub struct Sink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Sink {
    /// Opens (or creates, mode 0600) `path` for appending (`O_APPEND`: each line lands at the
    /// end even when another process appends too). An existing file readable by others is
    /// narrowed to 0600, with a warning. A symbolic link (another user's, in a shared directory,
    /// could point it at the server's database or key) and a file of another user (who could
    /// open it to all again later) are refused before anything is written.
    pub fn open(path: &Path) -> std::io::Result<Sink> {
        Ok(Sink {
            path: path.to_path_buf(),
            file: Mutex::new(Self::open_file(path)?),
        })
    }

    fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
        // O_NOFOLLOW: never through a link, not even to create the file a dangling one names;
        // O_NONBLOCK: a FIFO is refused at once (no reader) instead of waited on with the lock
        // held, which would hang every later act (no effect on a regular file's writes).
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    std::io::Error::other("a symbolic link: give the path of a regular file")
                } else {
                    e
                }
            })?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        // What was opened must be the file at `path` itself, not one a link there leads to.
        let at_path = std::fs::symlink_metadata(path)?;
        if !at_path.file_type().is_file()
            || (at_path.dev(), at_path.ino()) != (meta.dev(), meta.ino())
        {
            return Err(std::io::Error::other(
                "a symbolic link (or replaced while opened): give the path of a regular file",
            ));
        }
        if let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid())
            && meta.uid() != me
        {
            return Err(std::io::Error::other(format!(
                "it belongs to uid {}, not to this server's user (uid {me})",
                meta.uid()
            )));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "audit_log was readable by others; narrowed to 0600");
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(file)
    }

    /// One line, in one `write`, then flushed to the disk (an audit line is rare and must
    /// survive a crash). When the file at the path is no longer the one open (logrotate moved
    /// it away), the path is opened again, with the same checks, and the line goes there.
    fn append(&self, e: &AuditEntry) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let open = f.metadata()?;
        let moved = match std::fs::symlink_metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) != (open.dev(), open.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        if moved {
            *f = Self::open_file(&self.path)?;
        }
        f.write_all(&line)?;
        f.sync_data()
    }
}

/// Records an operator's act: `who` (the operator, its address and request id), the tenant it
/// was for (none: the install's own settings), `action` (`batch.put`, …), what it was on, and a
/// detail that names no secret.
pub async fn act(
    st: &AppState,
    who: &dyn Acting,
    tenant: Option<&str>,
    action: &str,
    subject: &str,
    detail: String,
) -> Result<(), StoreError> {
    let origin = who.origin();
    st.audit
        .record(AuditEntry {
            id: 0,
            at: st.clock.now_ms(),
            actor: who.name().to_string(),
            tenant: tenant.map(str::to_string),
            action: action.to_string(),
            subject: subject.to_string(),
            detail,
            address: origin.address.clone(),
            request_id: Some(origin.request_id.clone()),
        })
        .await
        .map(|_| ())
}

/// What changed between two versions of a document, field by field (top-level fields of their
/// JSON): `field: before → after` when `values` and both sides are short, else the field's name.
/// Empty when nothing changed. Runbooks pass `values: false` (their scripts are not for the
/// trail); batches `true` (times, zones, rates).
pub fn changes(before: &serde_json::Value, after: &serde_json::Value, values: bool) -> String {
    const SHORT: usize = 80;
    let empty = serde_json::Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "none".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| {
            let (x, y) = (show(b.get(k)), show(a.get(k)));
            if values && x.chars().count() <= SHORT && y.chars().count() <= SHORT {
                format!("{k}: {x} → {y}")
            } else {
                format!("{k} changed")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An audit line with id `id`, as the sink tests append them.
    fn line(id: i64) -> AuditEntry {
        AuditEntry {
            id,
            at: 1,
            actor: "ann".into(),
            tenant: None,
            action: "psk.retire".into(),
            subject: "wave-1".into(),
            detail: String::new(),
            address: None,
            request_id: None,
        }
    }

    /// Would catch: unchanged fields listed, a value shown where values are not wanted, a long
    /// value shown whole, an added or removed field missed.
    #[test]
    fn changes_name_what_changed() {
        let b = json!({"enforced_after": "2026-12-01T18:00", "time_zone": "UTC", "runbooks": ["a"], "canary": 2});
        let a = json!({"enforced_after": "2026-12-02T18:00", "time_zone": "UTC", "runbooks": ["a", "b"], "max_concurrent": 5});
        assert_eq!(
            changes(&b, &a, true),
            "canary: 2 → none; enforced_after: 2026-12-01T18:00 → 2026-12-02T18:00; max_concurrent: none → 5; runbooks: [\"a\"] → [\"a\",\"b\"]"
        );
        assert_eq!(
            changes(&b, &a, false),
            "canary changed; enforced_after changed; max_concurrent changed; runbooks changed"
        );
        assert_eq!(changes(&a, &a, true), "");
        let long = json!({"script": "x".repeat(81)});
        assert_eq!(changes(&json!({}), &long, true), "script changed");
    }

    /// Would catch: `[server] audit_log` in a shared directory (/tmp, a world-writable log
    /// folder) followed through a symbolic link another local user put there, so that each
    /// audit line is appended to a file the server owns (its database, `secret.key`,
    /// `admin-token`), corrupting it; the link must be refused and the file left as it was.
    #[test]
    fn review_the_sink_refuses_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("secret.key");
        std::fs::write(&victim, "KEY\n").unwrap();
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = match Sink::open(&link) {
            Ok(s) => {
                let _ = s.append(&line(1));
                panic!(
                    "a symbolic link was opened; the file it names now holds: {:?}",
                    std::fs::read_to_string(&victim).unwrap()
                )
            }
            Err(e) => e,
        };
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "KEY\n");
        // A dangling link is refused too (the server would create the file it names).
        let dangling = dir.path().join("dangling.jsonl");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &dangling).unwrap();
        assert!(Sink::open(&dangling).is_err());
    }

    /// Would catch: lines appended to a file logrotate moved away (the SIEM reads the path, which
    /// would stay empty until a restart), and a symbolic link planted at the path after the move
    /// being followed.
    #[test]
    fn the_sink_follows_a_rotation_and_checks_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = Sink::open(&path).unwrap();
        sink.append(&line(1)).unwrap();
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.append(&line(2)).unwrap();
        let ids = |p: &Path| -> Vec<i64> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<AuditEntry>(l).unwrap().id)
                .collect()
        };
        assert_eq!(ids(&rotated), vec![1]);
        assert_eq!(ids(&path), vec![2]);
        // Moved again, and a link planted where the file was: refused, the target untouched.
        std::fs::rename(&path, dir.path().join("audit.jsonl.2")).unwrap();
        let victim = dir.path().join("secret.key");
        std::fs::write(&victim, "KEY\n").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(sink.append(&line(3)).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "KEY\n");
    }

    /// Would catch: the path reopened after a rotation through what a local user planted there
    /// in the moment between logrotate's move and the next line: a dangling symbolic link (the
    /// server would create the file it names, in a directory only the server may write to), or a
    /// FIFO (opening it to write waits for a reader, forever, holding the sink's lock: every
    /// later act of every operator hangs with it).
    #[test]
    fn review_a_reopen_neither_creates_through_a_link_nor_waits_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = std::sync::Arc::new(Sink::open(&path).unwrap());
        sink.append(&line(1)).unwrap();
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        let named = dir.path().join("private").join("planted");
        std::fs::create_dir(dir.path().join("private")).unwrap();
        std::os::unix::fs::symlink(&named, &path).unwrap();
        assert!(sink.append(&line(2)).is_err());
        assert!(
            !named.exists(),
            "the file a dangling link named was created"
        );
        assert!(Sink::open(&path).is_err());
        assert!(
            !named.exists(),
            "opened at start: the file a dangling link named was created"
        );

        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let s = std::sync::Arc::clone(&sink);
        std::thread::spawn(move || {
            let _ = tx.send(s.append(&line(3)).is_err());
        });
        let refused = rx.recv_timeout(std::time::Duration::from_secs(5));
        if refused.is_err() {
            // Free the waiting open before failing, so the test process ends.
            let _ = std::fs::File::open(&path);
        }
        assert_eq!(
            refused,
            Ok(true),
            "a FIFO at the path: the append waited or wrote"
        );
    }

    /// Would catch: a sink file created readable by others, lines not appended (a second open
    /// truncating), or a line split or missing its newline.
    #[test]
    fn the_sink_appends_private_lines() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "earlier\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let line = |id| AuditEntry {
            id,
            at: 1,
            actor: "ann".into(),
            tenant: None,
            action: "psk.retire".into(),
            subject: "wave-1".into(),
            detail: "line\nbreak \"quoted\"".into(),
            address: Some("192.0.2.1".into()),
            request_id: Some("r1".into()),
        };
        for id in 1..=2 {
            Sink::open(&path).unwrap().append(&line(id)).unwrap();
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "earlier");
        let back: AuditEntry = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(back, line(2));
        let fresh = dir.path().join("new.jsonl");
        Sink::open(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "created 0600");
    }
}

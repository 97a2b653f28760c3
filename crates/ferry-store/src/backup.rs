//! Backups of the SQLite database (`ferry backup`, `ferry restore`).
//!
//! A backup is one file, itself a SQLite database: a consistent copy of the live database, made by
//! `VACUUM INTO` while servers keep writing (in WAL mode the copy reads one snapshot, so it holds
//! each transaction whole or not at all, and it takes no lock a server waits on), plus a table of
//! its own, [`FILES_TABLE`] (`name TEXT PRIMARY KEY, body BLOB`), holding the data directory's
//! other files (the secret key, tokens, the agent endpoint's certificate and key). `sqlite3 FILE`
//! reads it. A restore checks it (`PRAGMA integrity_check`) and writes the database without that
//! table; the caller writes the files.

use crate::{Result, StoreError};
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;
use std::time::Duration;

/// The backup's table of data directory files.
pub const FILES_TABLE: &str = "ferry_backup_files";
/// A row of [`FILES_TABLE`] naming the backup's format, so that any other database is refused.
const FORMAT_ROW: &str = ".ferry-backup-format";
const FORMAT: &[u8] = b"1";

fn open_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open(format!("{}: {e}", path.display()))
}

/// Creates `path` empty and private (0600) before SQLite writes into it; `VACUUM INTO` accepts an
/// empty file, and its pages never exist with a wider mode.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| open_err(path, e))
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| open_err(path, e))
}

/// Writes to `out` (which must not exist) the database at `db` as it is at one moment, even while
/// a server writes to it, and `files` (name, content) in [`FILES_TABLE`]; `out` is synced to disk.
/// The database must exist: it is opened without creating it. SQLite keeps `out`'s journal
/// beside it and reads a `-wal` it finds there: `out` must be in a directory no one else may
/// write (`ferry backup` makes one).
pub fn write(db: &Path, out: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_err(db, e))?;
    // A server's writer holds the WAL only briefly; a checkpoint may wait for this reader.
    src.busy_timeout(Duration::from_secs(30))?;
    create_private(out)?;
    let target = out
        .to_str()
        .ok_or_else(|| open_err(out, "the path is not UTF-8"))?;
    src.execute("VACUUM INTO ?1", params![target])?;
    drop(src);
    let c = Connection::open_with_flags(
        out,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The copy keeps the live database's WAL flag; one self-contained file is wanted.
    c.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    c.execute_batch(&format!(
        "CREATE TABLE {FILES_TABLE} (name TEXT PRIMARY KEY, body BLOB NOT NULL)"
    ))?;
    let mut ins = c.prepare(&format!(
        "INSERT INTO {FILES_TABLE} (name, body) VALUES (?1, ?2)"
    ))?;
    ins.execute(params![FORMAT_ROW, FORMAT])?;
    for (name, body) in files {
        ins.execute(params![name, body])?;
    }
    drop(ins);
    drop(c);
    sync_file(out)
}

/// `file:PATH?immutable=1`, the path percent-encoded: SQLite reads the file alone, never a
/// `-wal`, `-shm` or `-journal` beside it, and takes no lock.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Checks the backup at `backup` and writes its database to `db` (which must not exist, 0600),
/// without [`FILES_TABLE`]; returns the files it holds (name, content).
pub fn restore(backup: &Path, db: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    // Immutable: the file alone is read. A read-only open would still read a `-wal` (or roll
    // back a `-journal`) found beside it, and a backup kept in a shared directory has them
    // planted by whoever may write there: their pages would replace the backup's.
    let c = Connection::open_with_flags(
        immutable_uri(backup),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_err(backup, e))?;
    let problems = {
        let mut st = c
            .prepare("PRAGMA integrity_check")
            .map_err(|e| open_err(backup, format!("not a SQLite database ({e})")))?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    if problems != ["ok"] {
        return Err(StoreError::Corrupt(format!(
            "{} fails SQLite's integrity check: {}",
            backup.display(),
            problems.join("; ")
        )));
    }
    let not_ours = || {
        StoreError::Corrupt(format!(
            "{} is a SQLite database but not a ferry backup (no {FILES_TABLE} table of format 1)",
            backup.display()
        ))
    };
    let mut files = Vec::new();
    {
        let mut st = c
            .prepare(&format!(
                "SELECT name, body FROM {FILES_TABLE} ORDER BY name"
            ))
            .map_err(|_| not_ours())?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            files.push(row?);
        }
    }
    match files.iter().position(|(n, _)| n == FORMAT_ROW) {
        Some(i) if files[i].1 == FORMAT => {
            files.remove(i);
        }
        _ => return Err(not_ours()),
    }
    create_private(db)?;
    let target = db
        .to_str()
        .ok_or_else(|| open_err(db, "the path is not UTF-8"))?;
    c.execute("VACUUM INTO ?1", params![target])?;
    drop(c);
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The key material must not stay in the database's free pages.
    c.execute_batch(&format!(
        "PRAGMA secure_delete = ON; DROP TABLE {FILES_TABLE}; VACUUM;"
    ))?;
    drop(c);
    sync_file(db)?;
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_round_trips_and_its_files_leave_the_restored_database() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("ferry.db");
        let live = Connection::open(&db).unwrap();
        live.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept');",
        )
        .unwrap();
        let out = d.path().join("backup");
        let key = b"0123456789abcdef-secret-key-bytes".to_vec();
        write(&db, &out, &[("secret.key".into(), key.clone())]).unwrap();
        // While the source is still open with its WAL: the copy is one file.
        assert!(!d.path().join("backup-wal").exists());
        let restored = d.path().join("restored.db");
        let files = restore(&out, &restored).unwrap();
        assert_eq!(files, vec![("secret.key".to_string(), key.clone())]);
        let c = Connection::open(&restored).unwrap();
        let v: String = c.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "kept");
        let raw = std::fs::read(&restored).unwrap();
        assert!(
            !raw.windows(key.len()).any(|w| w == key),
            "the secret key is left in the restored database's pages"
        );
        use std::os::unix::fs::PermissionsExt as _;
        for p in [&out, &restored] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }

    /// A write-ahead log holding the pages of a database of someone else's making: its own
    /// `t` ('evil') and the backup table with the format row, as a hostile local user would
    /// make it to plant beside a backup (SQLite's format: the pages are what a WAL holds).
    fn evil_wal(dir: &Path) -> Vec<u8> {
        let p = dir.join("evil.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
             CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('evil'); \
             CREATE TABLE {FILES_TABLE} (name TEXT PRIMARY KEY, body BLOB NOT NULL); \
             INSERT INTO {FILES_TABLE} VALUES ('{FORMAT_ROW}', X'31');"
        ))
        .unwrap();
        let wal = std::fs::read(dir.join("evil.db-wal")).unwrap();
        drop(c);
        wal
    }

    /// Would catch: a restore reading, besides the backup, a `-wal` someone planted beside it
    /// (a backup kept in /tmp or another shared directory): SQLite, even read-only, replays it,
    /// and the restored database is theirs (their operators and tokens) beside the backup's
    /// real secret key. The backup alone must be read.
    #[test]
    fn review_a_log_planted_beside_a_backup_is_not_read_by_its_restore() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("ferry.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept');")
            .unwrap();
        let out = d.path().join("shared.ferry-backup");
        write(&db, &out, &[("secret.key".into(), b"k".to_vec())]).unwrap();
        let attacker = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("shared.ferry-backup-wal"),
            evil_wal(attacker.path()),
        )
        .unwrap();
        let restored = d.path().join("restored.db");
        let files = restore(&out, &restored);
        let v: String = Connection::open(&restored)
            .unwrap()
            .query_row("SELECT v FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, "kept", "the planted log's database was restored");
        assert_eq!(
            files.unwrap(),
            vec![("secret.key".to_string(), b"k".to_vec())]
        );
        // A name that needs escaping in a URI is still found.
        let odd = d.path().join("a b%3F?#x");
        std::fs::copy(&out, &odd).unwrap();
        restore(&odd, &d.path().join("odd.db")).unwrap();
    }

    #[test]
    fn another_database_or_a_damaged_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let other = d.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (v TEXT)")
            .unwrap();
        let e = restore(&other, &d.path().join("a.db")).unwrap_err();
        assert!(e.to_string().contains("not a ferry backup"), "{e}");
        let junk = d.path().join("junk");
        std::fs::write(&junk, "this is no database\n".repeat(100)).unwrap();
        let e = restore(&junk, &d.path().join("b.db")).unwrap_err();
        assert!(e.to_string().contains("not a SQLite database"), "{e}");
        assert!(!d.path().join("b.db").exists());
    }
}

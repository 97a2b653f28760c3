//! The embedded SQLite backend: one file, WAL journal, one writer connection and a small pool of
//! readers (WAL lets them read while the writer commits).
//!
//! rusqlite is synchronous; statements run inside `block_in_place` on a multi-threaded runtime
//! (inline on a current-thread one), so borrowed data such as a cycle's objects reaches SQLite
//! without copies. The writer is a Tokio mutex: a transaction holds it across awaits. Quirks
//! handled here: `NOCASE` collation indexes serve the case-insensitive object look-ups (ASCII case
//! folding, as SQLite's `lower()`); 64-bit content hashes are stored as signed integers.

use crate::backend::{Backend, Conn, EachRow, Row, Val};
use crate::migrate::{Migration, SQLITE};
use crate::sql::SqlStore;
use crate::*;
use ferry_core::model::lookup_key;
use rusqlite::{Connection, params, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The SQLite backend of [`SqlStore`].
pub struct Sqlite {
    path: PathBuf,
    writer: tokio::sync::Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// The store on SQLite.
pub type SqliteStore = SqlStore<Sqlite>;

/// Runs blocking work without stalling the async runtime's other tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)?;
    // 16 KiB pages (for a new database; an existing one keeps its size): fewer, fuller pages for
    // the wide rows of objects and decisions.
    c.execute_batch(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768;",
    )?;
    // SQLite's `lower` folds ASCII only: "ZOË" would not find "Zoë". Searches fold with Rust's
    // Unicode lower case instead (`Backend::FOLD`), as PostgreSQL's `lower` does. A NUL (which a
    // directory's value may hold, and SQLite stores) folds to a line feed: `LIKE` reads a value
    // only up to a NUL, so no search found the rest of the value. No term searched holds a line
    // feed or a NUL (`query::decisions_by`), so none matches across it.
    c.create_scalar_function(
        "ferry_fold",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8
            | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                rusqlite::types::ValueRef::Text(t) => Some(
                    String::from_utf8_lossy(t)
                        .to_lowercase()
                        .replace('\0', "\n"),
                ),
                _ => None,
            })
        },
    )?;
    // A search's match of a row (`Backend::HOLDS`): whether any of the values folded as
    // `ferry_fold` folds them holds the term (folded by the caller): one call a row instead of
    // eight `ferry_fold(value) LIKE ?`, each of which allocated and copied the folded value.
    c.create_scalar_function(
        "ferry_holds",
        -1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8
            | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let rusqlite::types::ValueRef::Text(term) = ctx.get_raw(0) else {
                return Ok(false);
            };
            let term = std::str::from_utf8(term).unwrap_or_default();
            Ok((1..ctx.len()).any(|i| match ctx.get_raw(i) {
                rusqlite::types::ValueRef::Text(v) => holds(term, v),
                _ => false,
            }))
        },
    )?;
    Ok(c)
}

/// Whether `value` folded as `ferry_fold` folds it (Rust's lower case, a NUL as a line feed)
/// holds `term`, itself folded: an ASCII value is compared in place, byte by byte in ASCII lower
/// case (its fold), without the copy the fold makes.
pub(crate) fn holds(term: &str, value: &[u8]) -> bool {
    let t = term.as_bytes();
    if value.is_ascii() && !value.contains(&0) {
        if !term.is_ascii() {
            return false; // an ASCII value folds to ASCII
        }
        return t.is_empty()
            || value
                .windows(t.len())
                .any(|w| w.iter().zip(t).all(|(a, b)| a.to_ascii_lowercase() == *b));
    }
    String::from_utf8_lossy(value)
        .to_lowercase()
        .replace('\0', "\n")
        .contains(term)
}

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// A unique constraint's refusal becomes [`StoreError::Unique`] (naming the column).
fn err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.code == rusqlite::ErrorCode::ConstraintViolation && msg.starts_with("UNIQUE") =>
        {
            StoreError::Unique(msg.clone())
        }
        _ => e.into(),
    }
}

fn migrate(c: &mut Connection, migrations: &[Migration]) -> Result<()> {
    c.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)")?;
    let current: i64 = c.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = migrations.last().map_or(0, |m| m.version);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        let tx = c.transaction()?;
        tx.execute_batch(m.sql)?;
        if m.version == crate::migrate::HOST_KEYS {
            rekey_hosts(&tx)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            params![m.version, m.name, now_ms()],
        )?;
        tx.commit()?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied SQLite migration"
        );
    }
    Ok(())
}

/// Migration 0025's part in Rust: every agent's host-name key and claim, and the batches' keys,
/// written by `host_key` (see the migration).
fn rekey_hosts(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let agents = tx
        .prepare("SELECT id, hostname, hostname_claim IS NOT NULL FROM agents")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<(i64, String, bool)>>>()?;
    tx.execute(
        "UPDATE agents SET hostname_claim = NULL WHERE hostname_claim IS NOT NULL",
        [],
    )?;
    let mut set = tx.prepare("UPDATE agents SET host_key = ?, hostname_claim = ? WHERE id = ?")?;
    for (id, key, claim) in crate::migrate::agent_keys(&agents) {
        set.execute(params![key, claim, id])?;
    }
    let computers = tx
        .prepare("SELECT computer FROM batch_computers")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    for (old, new) in crate::migrate::computer_keys(&computers) {
        match new {
            Some(new) => tx.execute(
                "UPDATE batch_computers SET computer = ? WHERE computer = ?",
                params![new, old],
            )?,
            None => tx.execute(
                "DELETE FROM batch_computers WHERE computer = ?",
                params![old],
            )?,
        };
    }
    Ok(())
}

struct SqliteRow<'a, 'r>(&'a rusqlite::Row<'r>);

impl Row for SqliteRow<'_, '_> {
    fn int(&self, i: usize) -> Result<Option<i64>> {
        use rusqlite::types::ValueRef;
        match self.0.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            ValueRef::Real(f) => Ok(Some(f as i64)),
            _ => Err(StoreError::Corrupt(format!("column {i} is not a number"))),
        }
    }
    fn text(&self, i: usize) -> Result<Option<&str>> {
        use rusqlite::types::ValueRef;
        match self.0.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(b) | ValueRef::Blob(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}"))),
            _ => Err(StoreError::Corrupt(format!("column {i} is not text"))),
        }
    }
    fn bytes(&self, i: usize) -> Result<Option<&[u8]>> {
        use rusqlite::types::ValueRef;
        match self.0.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(b) | ValueRef::Blob(b) => Ok(Some(b)),
            _ => Err(StoreError::Corrupt(format!("column {i} is not bytes"))),
        }
    }
}

/// A connection: for reading, a pooled reader taken for each statement only, inside its blocking
/// section (held across the runtime's hand-over of a worker, readers ran out and were opened and
/// closed by the thousand under a check-in load); for writing, the writer held with or without a
/// transaction.
enum SqliteConn<'a> {
    Reader(&'a Sqlite),
    /// A pooled reader held for several statements inside one read transaction (one snapshot),
    /// taken at the first statement and returned to the pool at commit or drop.
    Snapshot {
        db: &'a Sqlite,
        conn: Option<Connection>,
    },
    Writer {
        conn: tokio::sync::MutexGuard<'a, Connection>,
        open: bool,
    },
}

impl SqliteConn<'_> {
    /// Runs `f` on this connection (a reader from the pool, returned right after) off the
    /// runtime's worker.
    fn run<R>(&mut self, f: impl FnOnce(&mut Connection) -> Result<R>) -> Result<R> {
        match self {
            SqliteConn::Reader(db) => blocking(|| {
                let pooled = db.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let mut c = match pooled {
                    Some(c) => c,
                    None => connect(&db.path)?,
                };
                let r = f(&mut c);
                let mut pool = db.readers.lock().unwrap_or_else(|p| p.into_inner());
                if pool.len() < 8 {
                    pool.push(c);
                }
                r
            }),
            SqliteConn::Snapshot { db, conn } => blocking(|| {
                if conn.is_none() {
                    let pooled = db.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let c = match pooled {
                        Some(c) => c,
                        None => connect(&db.path)?,
                    };
                    c.execute_batch("BEGIN")?;
                    *conn = Some(c);
                }
                match conn.as_mut() {
                    Some(c) => f(c),
                    None => Err(StoreError::Corrupt("no snapshot connection".into())),
                }
            }),
            SqliteConn::Writer { conn, .. } => blocking(|| f(conn)),
        }
    }

    /// Ends a snapshot's read transaction and gives its connection back to the pool.
    fn end_snapshot(&mut self) -> Result<()> {
        if let SqliteConn::Snapshot { db, conn } = self
            && let Some(c) = conn.take()
        {
            let r = c.execute_batch("COMMIT");
            if r.is_ok() {
                let mut pool = db.readers.lock().unwrap_or_else(|p| p.into_inner());
                if pool.len() < 8 {
                    pool.push(c);
                }
            }
            r?;
        }
        Ok(())
    }
}

impl Drop for SqliteConn<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.end_snapshot() {
            tracing::warn!(error = %e, "SQLite read transaction did not end");
        }
        if let SqliteConn::Writer { conn, open: true } = self
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "SQLite rollback failed");
        }
    }
}

#[async_trait]
impl Conn for SqliteConn<'_> {
    async fn execute(&mut self, sql: &str, params: &[Val<'_>]) -> Result<u64> {
        self.run(|c| {
            let mut st = c.prepare_cached(sql)?;
            Ok(st.execute(params_from_iter(params)).map_err(err)? as u64)
        })
    }

    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Val<'_>>]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.run(|c| {
            let mut st = c.prepare_cached(sql)?;
            let mut n = 0;
            for r in rows {
                n += st.execute(params_from_iter(r)).map_err(err)? as u64;
            }
            Ok(n)
        })
    }

    async fn each(&mut self, sql: &str, params: &[Val<'_>], f: &mut EachRow<'_>) -> Result<()> {
        self.run(|c| {
            let mut st = c.prepare_cached(sql)?;
            let mut rows = st.query(params_from_iter(params)).map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                f(&SqliteRow(r))?;
            }
            Ok(())
        })
    }

    async fn lock_table(&mut self, _table: &str) -> Result<()> {
        // A transaction (BEGIN IMMEDIATE) already holds the database's only write lock.
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.end_snapshot()?;
        if let SqliteConn::Writer { conn, open } = &mut *self
            && *open
        {
            blocking(|| conn.execute_batch("COMMIT"))?;
            *open = false;
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for Sqlite {
    const NAME: &'static str = "sqlite";
    const MIGRATIONS: &'static [crate::migrate::Migration] = crate::migrate::SQLITE;
    /// None: migration 0022 dropped 0019's FTS5 trigram index, whose upkeep doubled a first
    /// cycle of a million decisions; the index of migration 0024 is filled outside the cycle
    /// instead ([`Backend::DEFERRED_SEARCH`]), and searches scan until it is whole.
    const DECISION_SEARCH: Option<&'static str> = None;
    const FOLD: &'static str = "ferry_fold";
    const HOLDS: Option<&'static str> = Some("ferry_holds");
    const BATCH_AGENTS: &'static str =
        "batch_computers bc JOIN agents a ON a.host_key = bc.computer";
    const BINARY: &'static str = "";
    const FILTER_ONLY: &'static str = "+";
    const ORDER_JOIN: &'static str = "decisions_order JOIN decisions ON rid = o_rid AND profile = o_profile \
         AND kind = o_kind AND source_id = o_source_id";
    fn search_param(term: &str) -> String {
        crate::codec::like_pattern(term)
    }
    const FOLD_TERM: &'static str = "?";
    const DEFERRED_SEARCH: bool = true;
    const TEXT_HOLDS_NUL: bool = true;
    const INSTR: &'static str = "instr";
    const EACH_PROFILE: Option<&'static str> = Some("profile IN (SELECT profile FROM plans)");

    async fn snapshot(&self) -> Result<Box<dyn Conn + '_>> {
        Ok(Box::new(SqliteConn::Snapshot {
            db: self,
            conn: None,
        }))
    }

    async fn index_search(&self) -> Result<bool> {
        let mut c = self.writer.lock().await;
        let step = blocking(|| crate::search_index::chunk(&mut c))?;
        Ok(step == crate::search_index::Step::More)
    }

    async fn read(&self) -> Result<Box<dyn Conn + '_>> {
        Ok(Box::new(SqliteConn::Reader(self)))
    }

    async fn write(&self) -> Result<Box<dyn Conn + '_>> {
        Ok(Box::new(SqliteConn::Writer {
            conn: self.writer.lock().await,
            open: false,
        }))
    }

    async fn begin(&self) -> Result<Box<dyn Conn + '_>> {
        let conn = self.writer.lock().await;
        // Off the worker: another process holding the database waits up to the busy timeout.
        blocking(|| conn.execute_batch("BEGIN IMMEDIATE"))?;
        Ok(Box::new(SqliteConn::Writer { conn, open: true }))
    }

    async fn commit_sync(&self, s: &SyncCommit<'_>) -> Result<()> {
        let mut c = self.writer.lock().await;
        blocking(|| {
            // No automatic checkpoint at this commit: it would copy the whole cycle into the
            // database file before returning. It runs in the background afterwards instead.
            c.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
            let r = Self::commit_sync_tx(&mut c, s);
            c.execute_batch("PRAGMA wal_autocheckpoint = 1000")?;
            r
        })?;
        drop(c);
        self.checkpoint_in_background();
        Ok(())
    }
}

impl SqlStore<Sqlite> {
    /// One chunk of the search indexer with `decisions_order`'s indexes dropped by a pass of
    /// `bulk` rows or more (`search_index::chunk_with`): for tests of that path, which the server
    /// takes at `search_index::BULK` rows.
    #[doc(hidden)]
    pub async fn index_search_bulk(&self, bulk: i64) -> Result<bool> {
        let mut c = self.b.writer.lock().await;
        let step = blocking(|| crate::search_index::chunk_with(&mut c, bulk))?;
        Ok(step == crate::search_index::Step::More)
    }

    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        // Made private before SQLite opens it: SQLite gives the -wal and -shm files the mode of
        // the database file, so none of them is ever readable by others.
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::Open(format!("{}: {e}", path.display()))),
            }
        }
        let mut writer = connect(path)?;
        migrate(&mut writer, SQLITE)?;
        Ok(SqlStore::new(Sqlite {
            path: path.to_path_buf(),
            writer: tokio::sync::Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        }))
    }
}

/// Before a bulk write of `rows` rows into `table`: when they are many and a large share of the
/// table, drop its secondary indexes and return their definitions, so that the caller recreates
/// them afterwards. Building an index over sorted keys once is far cheaper than a million random
/// B-tree inserts; inside the transaction, a rollback restores the indexes as they were.
fn drop_indexes_for_bulk(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    rows: usize,
) -> Result<Vec<String>> {
    if rows < 50_000 {
        return Ok(Vec::new());
    }
    let existing: i64 = tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
    if (rows as i64) * 4 < existing {
        return Ok(Vec::new());
    }
    let mut st = tx.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL")?;
    let defs: Vec<(String, String)> = st
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, _) in &defs {
        tx.execute_batch(&format!("DROP INDEX {name}"))?;
    }
    Ok(defs.into_iter().map(|(_, sql)| sql).collect())
}

fn recreate_indexes(tx: &rusqlite::Transaction<'_>, defs: &[String]) -> Result<()> {
    for sql in defs {
        tx.execute_batch(sql)?;
    }
    Ok(())
}

/// A cycle's log lines inside the bulk transaction.
fn bulk_logs(
    c: &Connection,
    cycle_id: Option<i64>,
    profile: Option<&str>,
    logs: &[LogEntry],
    now: i64,
) -> Result<()> {
    let mut st = c.prepare_cached(query::INSERT_LOG)?;
    for l in logs {
        st.execute(params![
            now,
            cycle_id,
            profile,
            l.directory,
            l.level.as_str(),
            l.code,
            l.object_kind.map(|k| k.as_str()),
            l.object_id,
            l.object_name,
            l.message
        ])?;
    }
    Ok(())
}

impl Sqlite {
    /// Copies the WAL into the database file on a connection of its own, off the caller's path.
    /// A cycle's large commit returns as soon as its pages are in the WAL; readers see the data
    /// either way.
    fn checkpoint_in_background(&self) {
        let path = self.path.clone();
        std::thread::spawn(move || {
            let r = connect(&path)
                .and_then(|c| Ok(c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?));
            if let Err(e) = r {
                tracing::warn!(error = %e, "WAL checkpoint failed; it will be retried after the next commit");
            }
        });
    }

    /// The transaction of `commit_sync`.
    fn commit_sync_tx(c: &mut Connection, s: &SyncCommit<'_>) -> Result<()> {
        let tx = c.transaction()?;

        // `objects` has no secondary index to drop on SQLite but the partial one over computers'
        // names (its look-up keys are scanned, see the migrations), so only `decisions` takes the
        // bulk path below.
        let t0 = std::time::Instant::now();
        {
            let mut up = tx.prepare_cached(query::UPSERT_OBJECT)?;
            let mut del = tx.prepare_cached(
                "DELETE FROM objects WHERE directory = ? AND kind = ? AND id = ?",
            )?;
            for oc in &s.objects {
                let dir = oc.state.directory.as_str();
                // In key order, so that the unique index is appended to, not scattered.
                let mut sorted = oc.upserts.clone();
                sorted.sort_unstable_by(|(a, _), (b, _)| {
                    (a.kind.as_str(), &a.id).cmp(&(b.kind.as_str(), &b.id))
                });
                for &(o, hash) in &sorted {
                    up.execute(params![
                        dir,
                        o.kind.as_str(),
                        o.id,
                        o.dn,
                        o.name,
                        o.upn,
                        o.mail,
                        o.sid,
                        o.uid_number,
                        o.gid_number,
                        codec::members(o),
                        codec::attrs(o),
                        hash as i64,
                        lookup_key(&o.id),
                        lookup_key(&o.name),
                        o.upn.as_deref().map(lookup_key),
                        o.mail.as_deref().map(lookup_key),
                        o.sid.as_deref().map(lookup_key)
                    ])?;
                }
                for (k, id) in &oc.deletes {
                    del.execute(params![dir, k.as_str(), id])?;
                }
                let st = &oc.state;
                tx.execute(
                    query::UPSERT_DIRSTATE,
                    params![
                        st.directory,
                        st.watermark,
                        st.last_full_import,
                        st.last_import,
                        st.objects
                    ],
                )?;
            }
        }
        let t2 = std::time::Instant::now();
        let plan = s.plan;
        let decision_indexes = drop_indexes_for_bulk(&tx, "decisions", s.decisions.upserts.len())?;
        {
            let mut up = tx.prepare_cached(query::UPSERT_DECISION)?;
            let mut sorted: Vec<&plan::DecisionRecord<'_>> =
                s.decisions.upserts.iter().map(|(r, _)| r).collect();
            sorted.sort_unstable_by(|a, b| {
                (a.source.kind.as_str(), &a.source.id).cmp(&(b.source.kind.as_str(), &b.source.id))
            });
            for rec in sorted {
                let src = rec.source;
                let t = rec.target;
                up.execute(params![
                    plan.profile,
                    src.kind.as_str(),
                    src.id,
                    rec.status.as_str(),
                    rec.rule,
                    src.name,
                    src.upn,
                    src.mail,
                    src.sid,
                    src.uid_number,
                    src.gid_number,
                    t.map(|t| &t.id),
                    t.map(|t| &t.name),
                    t.and_then(|t| t.upn.as_ref()),
                    t.and_then(|t| t.mail.as_ref()),
                    t.and_then(|t| t.sid.as_ref()),
                    t.and_then(|t| t.uid_number),
                    t.and_then(|t| t.gid_number),
                    codec::candidates(&rec.candidates),
                    rec.hash as i64,
                    s.cycle_id,
                    s.cycle_id
                ])?;
            }
            let mut del = tx.prepare_cached(
                "DELETE FROM decisions WHERE profile = ? AND kind = ? AND source_id = ?",
            )?;
            for (k, id) in &s.decisions.removed {
                del.execute(params![plan.profile, k.as_str(), id])?;
            }
            drop(up);
            let t3 = std::time::Instant::now();
            recreate_indexes(&tx, &decision_indexes)?;
            let t4 = std::time::Instant::now();
            tracing::debug!(
                objects_ms = (t2 - t0).as_millis() as u64,
                decisions_ms = (t3 - t2).as_millis() as u64,
                decision_indexes_ms = (t4 - t3).as_millis() as u64,
                "SQLite bulk write"
            );
            let mut hist = tx.prepare_cached("INSERT INTO history (profile, kind, source_id, cycle_id, at, change) VALUES (?, ?, ?, ?, ?, ?)")?;
            for (k, id, change) in &s.history {
                hist.execute(params![
                    plan.profile,
                    k.as_str(),
                    id,
                    s.cycle_id,
                    s.now,
                    change
                ])?;
            }
        }
        let counts = serde_json::to_string(&plan.counts).unwrap_or_default();
        tx.execute(
            query::UPSERT_PLAN,
            params![
                plan.profile,
                s.cycle_id,
                plan.hash,
                plan.fingerprint,
                plan.mode.as_str(),
                serde_json::to_string(&plan.rules).unwrap_or_default(),
                counts,
                s.now
            ],
        )?;
        tx.execute("DELETE FROM plan_writes WHERE profile = ?", [&plan.profile])?;
        {
            let mut w = tx.prepare_cached("INSERT INTO plan_writes (profile, seq, op, kind, source_id, body) VALUES (?, ?, ?, ?, ?, ?)")?;
            for (i, wr) in plan.writes.iter().enumerate() {
                w.execute(params![
                    plan.profile,
                    i as i64,
                    wr.op(),
                    wr.kind().as_str(),
                    wr.source_id(),
                    serde_json::to_string(wr).unwrap_or_default()
                ])?;
            }
        }
        let t_logs = std::time::Instant::now();
        bulk_logs(&tx, Some(s.cycle_id), Some(&plan.profile), s.logs, s.now)?;
        tracing::debug!(
            logs = s.logs.len(),
            history = s.history.len(),
            logs_ms = t_logs.elapsed().as_millis() as u64,
            "SQLite logs"
        );
        // Last, so that a cycle aborted meanwhile rolls back everything above.
        let n = tx.execute(
                "UPDATE cycles SET phase = 'export', counts = ?, plan_hash = ? WHERE id = ? AND status = 'running'",
                params![counts, plan.hash, s.cycle_id],
            )?;
        if n != 1 {
            return Err(StoreError::CycleNotRunning(s.cycle_id));
        }
        let t4 = std::time::Instant::now();
        tx.commit()?;
        tracing::debug!(commit_ms = t4.elapsed().as_millis() as u64, "SQLite commit");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// SQLite's plan for `sql` with `params`, one line a step (`EXPLAIN QUERY PLAN`'s detail).
    fn plan_of(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        st.query_map(params, |r| r.get(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// Text from characters where folding and matching go wrong: ASCII of both cases, `LIKE`'s
    /// wildcards and escape, a NUL, letters whose lower case is longer or another script's
    /// (`İ`, `ẞ`, the Kelvin sign, final `Σ`), and letters past ASCII.
    fn tricky(max: usize) -> impl Strategy<Value = String> {
        let text = |chars: Vec<char>| {
            proptest::collection::vec(proptest::sample::select(chars), 0..max)
                .prop_map(|v| v.into_iter().collect::<String>())
        };
        // Half the texts ASCII only, where `ferry_holds` compares in place.
        prop_oneof![
            text(vec![
                'a', 'A', 'n', 'N', 'k', 'K', '%', '_', '\\', '\0', ' ', ',', '='
            ]),
            text(vec![
                'a', 'A', 'n', 'N', 'k', 'K', 's', '%', '_', '\\', '\0', '\n', ' ', ',', '=', '"',
                'ë', 'Ë', 'İ', 'i', 'ß', 'ẞ', '\u{212A}', 'Σ', 'σ', 'ς', '王',
            ]),
        ]
    }

    proptest! {
        /// Catches: `ferry_holds` finding other rows than the eight `ferry_fold(value) LIKE
        /// pattern` it replaced (a value folded otherwise, the ASCII shortcut comparing case, a
        /// NUL, a wildcard in the term taken as one), for any term a search sends (no line feed
        /// or NUL: those find nothing before SQL) and any values.
        #[test]
        fn holds_finds_what_the_likes_found(
            term in tricky(4).prop_filter("a term searched", |t| !t.is_empty() && !t.contains(['\n', '\0'])),
            values in proptest::collection::vec(proptest::option::of(tricky(12)), 8),
        ) {
            let c = connect(Path::new(":memory:")).unwrap();
            let likes = (0..8)
                .map(|i| format!("ferry_fold(?{}) LIKE ?1 ESCAPE '\\'", i + 3))
                .collect::<Vec<_>>()
                .join(" OR ");
            let sql = format!(
                "SELECT coalesce({likes}, 0), ferry_holds(?2, {})",
                (3..11).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
            );
            let mut args: Vec<Option<String>> =
                vec![Some(crate::codec::like_pattern(&term)), Some(term.to_lowercase())];
            args.extend(values.iter().cloned());
            let (like, holds): (bool, bool) = c
                .query_row(&sql, params_from_iter(args.iter()), |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap();
            prop_assert_eq!(like, holds, "{:?} in {:?}", term, values);
        }
    }

    /// Catches: a searched page sorted on a column of `decisions_order` (target name, SIDs, rule)
    /// that does not look each decision up by its rid. Joined by key alone, SQLite (without
    /// statistics: ferry runs no `ANALYZE`) took 7.6–14 s for such a page at 200,000 decisions
    /// (measured in a review, docs/BENCHMARKS.md); the join by `rid` (`Backend::ORDER_JOIN`)
    /// answered in 5–120 ms.
    #[test]
    fn sorted_searched_pages_look_decisions_up_by_rid() {
        use ferry_core::plan::Status;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = connect(&path).unwrap();
        for sort in [
            DecisionSort::TargetName,
            DecisionSort::SourceSid,
            DecisionSort::TargetSid,
            DecisionSort::Rule,
        ] {
            let q = DecisionQuery {
                profile: Some("users".into()),
                status: Some(Status::Matched),
                search: Some("often".into()),
                sort,
                limit: 100,
                ..Default::default()
            };
            let (sql, vals) = query::decisions_by::<Sqlite>(
                &q,
                false,
                query::SearchBy::Deferred("\"oft\"".into()),
                query::Ordered::Table,
            );
            let plan = plan_of(&c, &sql, params_from_iter(vals.iter()));
            // One side looked up by the other's rid (`decisions_order`'s rowid is the rid).
            assert!(
                plan.iter().any(|p| p.starts_with("SEARCH decisions")
                    && p.ends_with("USING INTEGER PRIMARY KEY (rowid=?)")),
                "{sort:?}: {plan:?}"
            );
        }
    }

    /// Catches: a scan of one status across profiles walking the primary key (every decision
    /// of another status read and dropped: a first page of `an` among the matched read 527,500
    /// unmatched devices, 55 ms at a million) instead of ranging `(profile, status, …)` profile
    /// by profile (`Backend::EACH_PROFILE`); and a page after a cursor losing its range on the
    /// primary key (given the profiles, SQLite read every row of the cursor's profile before it:
    /// 150 ms deep in a million).
    #[test]
    fn scans_of_one_status_range_each_profile() {
        use ferry_core::plan::Status;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = connect(&path).unwrap();
        let plan = |sql: &str, vals: &[Val<'_>]| plan_of(&c, sql, params_from_iter(vals.iter()));
        for (sort, direction, count) in [
            (DecisionSort::Kind, Direction::Asc, false),
            (DecisionSort::Kind, Direction::Desc, false),
            (DecisionSort::SourceName, Direction::Asc, false),
            (DecisionSort::Kind, Direction::Asc, true),
        ] {
            let q = DecisionQuery {
                status: Some(Status::Matched),
                search: Some("an".into()),
                sort,
                direction,
                limit: 50,
                ..Default::default()
            };
            let (sql, vals) = query::decisions_by::<Sqlite>(
                &q,
                count,
                query::SearchBy::Scan,
                query::Ordered::Scan,
            );
            let p = plan(&sql, &vals);
            assert!(
                p.iter().any(|p| p.starts_with("SEARCH decisions USING")
                    && p.contains("(profile=? AND status=?)")),
                "{sort:?} {direction:?} count {count}: {p:?}"
            );
            assert!(
                !p.iter().any(|p| p.contains("TEMP B-TREE")),
                "{sort:?} {direction:?} count {count}: sorted after: {p:?}"
            );
        }
        let q = DecisionQuery {
            status: Some(Status::Matched),
            search: Some("an".into()),
            limit: 50,
            after: Some(crate::DecisionCursor {
                profile: "users".into(),
                value: None,
                kind: ferry_core::ObjectKind::User,
                source_id: "u-1".into(),
            }),
            ..Default::default()
        };
        let (sql, vals) =
            query::decisions_by::<Sqlite>(&q, false, query::SearchBy::Scan, query::Ordered::Scan);
        let p = plan(&sql, &vals);
        assert!(
            p.iter()
                .any(|p| p.contains("((profile,kind,source_id)>(?,?,?))")),
            "after a cursor: {p:?}"
        );
    }

    /// Catches: the overview's devices by state reading the agents' table (every row's facts
    /// with it) instead of migration 0030's narrow index.
    #[test]
    fn live_agent_states_read_one_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        let plan = plan_of(&c, query::LIVE_AGENT_STATES, []);
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(
            plan[0].contains("USING COVERING INDEX agents_claim_state"),
            "{plan:?}"
        );
    }

    /// Catches: SQLite scanning a directory's objects for every agent's claim check (the plan it
    /// picks without statistics, as ferry never runs `ANALYZE`): the partial index must serve it.
    #[test]
    fn computers_are_found_by_name_through_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        for names in [1, 2, 3] {
            let plan = plan_of(
                &c,
                &query::devices_named(names),
                params_from_iter(0..=names as i64),
            );
            assert!(
                plan.iter().any(|p| p.contains("objects_device_name")),
                "{names} name(s): {plan:?}"
            );
        }
    }

    /// Catches: migration 0025 leaving an upgraded database's agents without their host-name key
    /// (every batch join then misses them), keeping claims SQLite's ASCII `lower()` computed
    /// ("Åsa-pc", which no batch key "åsa-pc" meets), failing on two live agents that only
    /// Rust's lower case makes one computer, or keeping a batch key another lower case wrote.
    #[test]
    fn host_keys_are_written_in_rust_when_an_older_database_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = connect(&dir.path().join("ferry.db")).unwrap();
        let before = SQLITE
            .iter()
            .position(|m| m.version == crate::migrate::HOST_KEYS)
            .unwrap();
        migrate(&mut c, &SQLITE[..before]).unwrap();
        // As the code before 0025 wrote them: claims by SQL's lower(), batch keys by Rust's.
        for (id, host, state) in [
            (1, "ÅSA-PC", "enrolled"),
            (2, "åsa-pc", "enrolled"),
            (3, "ÖREBRO-01", "replaced"),
            (4, "PC-1", "running"),
        ] {
            c.execute(
                "INSERT INTO agents (id, device_id, hostname, os, facts, node_hash, psk_id, enrolled_at, last_contact, agent_version, state, hostname_claim) \
                 VALUES (?, ?, ?, 'windows', '{}', ?, 1, 1, 1, '0.1.0', ?, CASE WHEN ? = 'replaced' THEN NULL ELSE lower(?) END)",
                params![id, format!("d-{id}"), host, format!("n-{id}"), state, state, host],
            )
            .unwrap();
        }
        for (computer, batch) in [("αθηνας", "w"), ("örebro-01", "w"), ("åsa-pc", "w")] {
            c.execute(
                "INSERT INTO batch_computers (computer, name, batch, added_at) VALUES (?, ?, ?, 1)",
                params![computer, computer.to_uppercase(), batch],
            )
            .unwrap();
        }
        migrate(&mut c, SQLITE).unwrap();
        let agents: Vec<(i64, String, Option<String>)> = c
            .prepare("SELECT id, host_key, hostname_claim FROM agents ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let s = |v: &str| v.to_string();
        assert_eq!(
            agents,
            [
                (1, s("åsa-pc"), None),
                (2, s("åsa-pc"), Some(s("åsa-pc"))),
                (3, s("örebro-01"), None),
                (4, s("pc-1"), Some(s("pc-1"))),
            ]
        );
        let computers: Vec<String> = c
            .prepare("SELECT computer FROM batch_computers ORDER BY computer")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(computers, ["åsa-pc", "örebro-01", "αθηνασ"]);
        let in_batch: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM agents WHERE {}", query::IN_BATCH),
                params!["w"],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(in_batch, 3, "both ÅSA-PC agents and the replaced ÖREBRO-01");
    }
}

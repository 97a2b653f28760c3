//! The embedded SQLite store: one file, WAL journal, one writer connection and a small pool of
//! readers (WAL lets them read while the writer commits).
//!
//! rusqlite is synchronous; calls run inside `block_in_place` on a multi-threaded runtime (inline on
//! a current-thread one), so borrowed data such as a cycle's objects reaches SQLite without copies.
//! Quirks handled here: `NOCASE` collation indexes serve the case-insensitive object look-ups
//! (ASCII case folding, as SQLite's `lower()`); 64-bit content hashes are stored as signed integers.

use crate::migrate::{Migration, SQLITE};
use crate::query::{self, Val};
use crate::*;
use ferry_core::agent::{AgentEvent, HarvestedProfile};
use ferry_core::model::lookup_key;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

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
    Ok(c)
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Val::Text(s) => s.to_sql(),
            Val::Int(i) => i.to_sql(),
        }
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

fn cycle_row(r: &Row<'_>) -> rusqlite::Result<(CycleInfo, Option<String>)> {
    Ok((
        CycleInfo {
            id: r.get(0)?,
            profile: r.get(1)?,
            trigger: r.get(2)?,
            slot: r.get(3)?,
            server: r.get(4)?,
            status: r.get(5)?,
            phase: r.get(6)?,
            started_at: r.get(7)?,
            finished_at: r.get(8)?,
            counts: None,
            plan_hash: r.get(10)?,
            export: r.get(11)?,
            error: r.get(12)?,
        },
        r.get(9)?,
    ))
}

fn finish_cycle_row(row: (CycleInfo, Option<String>)) -> Result<CycleInfo> {
    let (mut c, counts) = row;
    c.counts = counts.map(|s| codec::json(&s)).transpose()?;
    Ok(c)
}

type RawDecision = (DecisionRow, String, String, Option<String>);

fn decision_row(r: &Row<'_>) -> rusqlite::Result<RawDecision> {
    let u = |i: usize| -> rusqlite::Result<Option<u32>> {
        Ok(codec::u32_opt(r.get::<_, Option<i64>>(i)?))
    };
    Ok((
        DecisionRow {
            profile: r.get(0)?,
            kind: ObjectKind::User,
            source_id: r.get(2)?,
            status: Status::Matched,
            rule: r.get::<_, Option<i64>>(4)?.map(|v| v as u32),
            source_name: r.get(5)?,
            source_upn: r.get(6)?,
            source_mail: r.get(7)?,
            source_sid: r.get(8)?,
            source_uid: u(9)?,
            source_gid: u(10)?,
            target_id: r.get(11)?,
            target_name: r.get(12)?,
            target_upn: r.get(13)?,
            target_mail: r.get(14)?,
            target_sid: r.get(15)?,
            target_uid: u(16)?,
            target_gid: u(17)?,
            candidates: vec![],
            first_cycle: r.get(19)?,
            changed_cycle: r.get(20)?,
        },
        r.get(1)?,
        r.get(3)?,
        r.get(18)?,
    ))
}

fn finish_decision((mut d, kind, status, cands): RawDecision) -> Result<DecisionRow> {
    d.kind = codec::kind(&kind)?;
    d.status = codec::status(&status)?;
    d.candidates = codec::opt_json(cands)?;
    Ok(d)
}

type RawObject = (String, String, DirObject, Option<String>, Option<String>);

fn object_row(r: &Row<'_>) -> rusqlite::Result<RawObject> {
    let mut o = DirObject::new(
        ObjectKind::User,
        r.get::<_, String>(2)?,
        r.get::<_, String>(4)?,
    );
    o.dn = r.get(3)?;
    o.upn = r.get(5)?;
    o.mail = r.get(6)?;
    o.sid = r.get(7)?;
    o.uid_number = codec::u32_opt(r.get(8)?);
    o.gid_number = codec::u32_opt(r.get(9)?);
    Ok((r.get(0)?, r.get(1)?, o, r.get(10)?, r.get(11)?))
}

fn finish_object((dir, kind, mut o, members, attrs): RawObject) -> Result<StoredObject> {
    o.kind = codec::kind(&kind)?;
    o.members = codec::opt_json(members)?;
    o.attrs = codec::opt_json(attrs)?;
    Ok(StoredObject {
        directory: dir,
        object: o,
    })
}

fn log_row(r: &Row<'_>) -> rusqlite::Result<(StoredLog, String, Option<String>)> {
    Ok((
        StoredLog {
            id: r.get(0)?,
            at: r.get(1)?,
            cycle_id: r.get(2)?,
            profile: r.get(3)?,
            entry: LogEntry {
                level: Level::Info,
                code: r.get(6)?,
                directory: r.get(4)?,
                object_kind: None,
                object_id: r.get(8)?,
                object_name: r.get(9)?,
                message: r.get(10)?,
            },
        },
        r.get(5)?,
        r.get(7)?,
    ))
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

fn psk_row(r: &Row<'_>) -> rusqlite::Result<Psk> {
    Ok(Psk {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        retired_at: r.get(3)?,
        uses_left: r.get(4)?,
        device: r.get(5)?,
    })
}

/// An enrollment request row with its facts still as JSON text.
fn request_row(r: &Row<'_>) -> rusqlite::Result<(EnrollmentRequest, String)> {
    Ok((
        EnrollmentRequest {
            id: r.get(0)?,
            device_id: r.get(1)?,
            hostname: r.get(2)?,
            facts: Default::default(),
            psk_id: r.get(4)?,
            address: r.get(5)?,
            reason: r.get(6)?,
            conflict_agent_id: r.get(7)?,
            state: r.get(8)?,
            created_at: r.get(9)?,
            decided_by: r.get(10)?,
            decided_at: r.get(11)?,
        },
        r.get(3)?,
    ))
}

fn finish_request((mut e, facts): (EnrollmentRequest, String)) -> Result<EnrollmentRequest> {
    e.facts = serde_json::from_str(&facts)
        .map_err(|x| StoreError::Corrupt(format!("enrollment request {} facts: {x}", e.id)))?;
    Ok(e)
}

/// An agent row with its facts still as JSON text.
type AgentRow = (AgentRecord, String);

fn agent_row(r: &Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok((
        AgentRecord {
            id: r.get(0)?,
            device_id: r.get(1)?,
            hostname: r.get(2)?,
            os: r.get(3)?,
            facts: Default::default(),
            psk_id: r.get(5)?,
            enrolled_at: r.get(6)?,
            last_contact: r.get(7)?,
            last_address: r.get(8)?,
            agent_version: r.get(9)?,
            state: r.get(10)?,
            assigned_run: r.get(11)?,
        },
        r.get(4)?,
    ))
}

fn finish_agent((mut a, facts): AgentRow) -> Result<AgentRecord> {
    a.facts = serde_json::from_str(&facts)
        .map_err(|e| StoreError::Corrupt(format!("agent {} facts: {e}", a.id)))?;
    Ok(a)
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        agent_id: r.get(0)?,
        run: r.get(1)?,
        received_at: r.get(2)?,
        event: AgentEvent {
            at: r.get(3)?,
            step: r.get(4)?,
            status: r.get(5)?,
            message: r.get(6)?,
            progress: r.get::<_, Option<i64>>(7)?.map(|p| p.clamp(0, 100) as u8),
        },
    })
}

fn enrolment_row(r: &Row<'_>) -> rusqlite::Result<EnrolmentToken> {
    Ok(EnrolmentToken {
        id: r.get(0)?,
        directory: r.get(1)?,
        kind: r.get(2)?,
        file_name: r.get(3)?,
        package_upn: r.get(4)?,
        sha256: r.get(5)?,
        size: r.get(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        uploaded_at: r.get(9)?,
        revoked_at: r.get(10)?,
    })
}

fn insert_logs(
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

impl SqliteStore {
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
        // Small commits still checkpoint automatically (every 1000 pages, SQLite's default); a
        // cycle's large commit checkpoints in the background (commit_sync).
        migrate(&mut writer, SQLITE)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Copies the WAL into the database file on a connection of its own, off the caller's path. The
    /// writer's automatic checkpoint is off (see `open`), so a large commit returns as soon as its
    /// pages are in the WAL; readers see the data either way.
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

    fn write<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R>) -> Result<R> {
        blocking(|| {
            let mut c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        blocking(|| {
            let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let c = match pooled {
                Some(c) => c,
                None => connect(&self.path)?,
            };
            let r = f(&c);
            let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < 8 {
                pool.push(c);
            }
            r
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn put_token(&self, name: &str, hash: &str, role: &str, now: i64) -> Result<()> {
        self.write(|c| {
            c.execute(
                "INSERT INTO tokens (name, hash, role, created_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, role = excluded.role, created_at = excluded.created_at, last_used_at = NULL",
                params![name, hash, role, now],
            )?;
            Ok(())
        })
    }

    async fn add_enrolment_token(&self, t: &NewEnrolmentToken) -> Result<EnrolmentToken> {
        let id: i64 = self.write(|c| {
            Ok(c.query_row(
                query::INSERT_ENROLMENT,
                params![
                    t.directory,
                    t.kind,
                    t.file_name,
                    t.package_upn,
                    t.content,
                    t.sha256,
                    t.created_at,
                    t.expires_at,
                    t.uploaded_at,
                    t.size
                ],
                |r| r.get(0),
            )?)
        })?;
        self.enrolment_token_content(id)
            .await?
            .map(|(t, _)| t)
            .ok_or_else(|| StoreError::Corrupt(format!("enrolment token {id} vanished")))
    }

    async fn enrolment_tokens(&self, directory: Option<&str>) -> Result<Vec<EnrolmentToken>> {
        self.read(|c| {
            let mut st = c.prepare_cached(query::LIST_ENROLMENT)?;
            let rows = st.query_map(params![directory, directory], enrolment_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn enrolment_token_content(&self, id: i64) -> Result<Option<(EnrolmentToken, Vec<u8>)>> {
        self.read(|c| {
            Ok(c.query_row(query::GET_ENROLMENT, [id], |r| {
                Ok((enrolment_row(r)?, r.get::<_, Vec<u8>>(11)?))
            })
            .optional()?)
        })
    }

    async fn revoke_enrolment_token(&self, id: i64, now: i64) -> Result<bool> {
        self.write(|c| Ok(c.execute(query::REVOKE_ENROLMENT, params![now, id])? == 1))
    }

    async fn set_enrolment_token_content(&self, id: i64, content: &[u8]) -> Result<()> {
        self.write(|c| {
            c.execute(query::SET_ENROLMENT_CONTENT, params![content, id])?;
            Ok(())
        })
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String> {
        self.write(|c| {
            c.execute(query::CLAIM_META, params![key, value])?;
            Ok(c.query_row(query::GET_META, [key], |r| r.get(0))?)
        })
    }

    async fn add_psk(
        &self,
        name: &str,
        hash: &str,
        uses: Option<i64>,
        device: Option<&str>,
        now: i64,
    ) -> Result<Psk> {
        self.write(|c| {
            c.execute(query::INSERT_PSK, params![name, hash, uses, device, now])?;
            Ok(c.query_row(
                &format!("SELECT {} FROM psks WHERE name = ?", query::PSK_COLS),
                [name],
                psk_row,
            )?)
        })
    }

    async fn use_psk(&self, id: i64) -> Result<bool> {
        self.write(|c| Ok(c.execute(query::USE_PSK, [id])? == 1))
    }

    async fn psks(&self) -> Result<Vec<Psk>> {
        self.read(|c| {
            let mut st = c.prepare(&format!("SELECT {} FROM psks ORDER BY id", query::PSK_COLS))?;
            let rows = st.query_map([], psk_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn psk_by_hash(&self, hash: &str) -> Result<Option<Psk>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {} FROM psks WHERE hash = ?", query::PSK_COLS),
                [hash],
                psk_row,
            )
            .optional()?)
        })
    }

    async fn retire_psk(&self, name: &str, now: i64) -> Result<bool> {
        self.write(|c| {
            Ok(c.execute(
                "UPDATE psks SET retired_at = ? WHERE name = ? AND retired_at IS NULL",
                params![now, name],
            )? == 1)
        })
    }

    async fn enroll_agent(&self, e: &Enrollment<'_>) -> Result<AgentRecord> {
        let facts =
            serde_json::to_string(e.facts).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        let bodies: Vec<(String, String)> = e
            .profiles
            .iter()
            .map(|p| (p.name.clone(), serde_json::to_string(p).unwrap_or_default()))
            .collect();
        self.write(|c| {
            let tx = c.transaction()?;
            let id: i64 = tx
                .query_row(
                    query::UPSERT_AGENT,
                    params![
                        e.facts.device_id,
                        e.facts.hostname,
                        e.facts.os,
                        facts,
                        e.node_hash,
                        e.psk_id,
                        e.now,
                        e.now,
                        e.address,
                        e.facts.agent_version,
                        e.facts.hostname,
                        e.replaces,
                        0i64
                    ],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|x| claim_taken(x, &e.facts.device_id))?
                .ok_or_else(|| StoreError::ClaimChanged(e.facts.device_id.clone()))?;
            tx.execute("DELETE FROM agent_profiles WHERE agent_id = ?", [id])?;
            {
                let mut st = tx.prepare_cached(query::INSERT_PROFILE)?;
                for (name, body) in &bodies {
                    st.execute(params![id, name, body])?;
                }
            }
            let rec = tx.query_row(
                &format!("SELECT {} FROM agents WHERE id = ?", query::AGENT_COLS),
                [id],
                agent_row,
            )?;
            tx.commit()?;
            finish_agent(rec)
        })
    }

    async fn agent_by_node_hash(&self, hash: &str) -> Result<Option<AgentRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM agents WHERE node_hash = ?",
                query::AGENT_COLS
            ))?
            .query_row([hash], agent_row)
            .optional()?
            .map(finish_agent)
            .transpose()
        })
    }

    async fn agents_claimed(
        &self,
        device_id: &str,
        hostname: &str,
    ) -> Result<Vec<(AgentRecord, String)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(query::AGENTS_CLAIMED)?;
            let rows = st.query_map(params![device_id, hostname], |r| {
                Ok((agent_row(r)?, r.get::<_, String>(12)?))
            })?;
            rows.map(|r| {
                let (a, hash) = r?;
                Ok((finish_agent(a)?, hash))
            })
            .collect()
        })
    }

    async fn assign_run(&self, agent: i64, run: &str, steps: &[String]) -> Result<()> {
        let steps = serde_json::to_string(steps).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        self.write(|c| {
            c.execute(query::ASSIGN_RUN, params![run, steps, agent, run, steps])?;
            Ok(())
        })
    }

    async fn assigned_run(&self, agent: i64) -> Result<Option<(String, Vec<String>)>> {
        let row: Option<(Option<String>, Option<String>)> = self.read(|c| {
            Ok(
                c.query_row(query::ASSIGNED_RUN, [agent], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
            )
        })?;
        assigned(row)
    }

    async fn add_enrollment_request(&self, r: &NewEnrollmentRequest<'_>) -> Result<i64> {
        let e = &r.enrollment;
        let facts =
            serde_json::to_string(e.facts).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        let profiles =
            serde_json::to_string(e.profiles).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        self.write(|c| {
            Ok(c.query_row(
                query::INSERT_REQUEST,
                params![
                    e.facts.device_id,
                    e.facts.hostname,
                    facts,
                    profiles,
                    e.node_hash,
                    e.psk_id,
                    e.address,
                    r.reason,
                    r.conflict_agent_id,
                    e.now
                ],
                |row| row.get(0),
            )?)
        })
    }

    async fn enrollment_requests(&self, state: Option<&str>) -> Result<Vec<EnrollmentRequest>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {} FROM enrollment_requests WHERE (CAST(?1 AS TEXT) IS NULL OR state = ?1) ORDER BY id DESC LIMIT 1000",
                query::REQUEST_COLS
            ))?;
            let rows = st.query_map([state], request_row)?;
            rows.map(|r| finish_request(r?)).collect()
        })
    }

    async fn enrollment_request_by_node_hash(
        &self,
        hash: &str,
    ) -> Result<Option<EnrollmentRequest>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM enrollment_requests WHERE node_hash = ?",
                query::REQUEST_COLS
            ))?
            .query_row([hash], request_row)
            .optional()?
            .map(finish_request)
            .transpose()
        })
    }

    async fn decide_enrollment(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        now: i64,
    ) -> Result<Option<(EnrollmentRequest, Option<AgentRecord>)>> {
        self.write(|c| {
            let tx = c.transaction()?;
            let state = if approve { "approved" } else { "refused" };
            let Some((node_hash, profiles)) = tx
                .query_row(query::DECIDE_REQUEST, params![state, by, now, id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?
            else {
                return Ok(None);
            };
            let req = finish_request(tx.query_row(
                &format!(
                    "SELECT {} FROM enrollment_requests WHERE id = ?",
                    query::REQUEST_COLS
                ),
                [id],
                request_row,
            )?)?;
            let mut agent = None;
            if approve {
                let profiles: Vec<HarvestedProfile> = serde_json::from_str(&profiles)
                    .map_err(|x| StoreError::Corrupt(format!("request {id} profiles: {x}")))?;
                let facts = serde_json::to_string(&req.facts)
                    .map_err(|x| StoreError::Corrupt(x.to_string()))?;
                tx.execute(query::REPLACE_AGENTS, params![req.hostname, req.device_id])?;
                let aid: i64 = tx.query_row(
                    query::UPSERT_AGENT,
                    params![
                        req.device_id,
                        req.hostname,
                        req.facts.os,
                        facts,
                        node_hash,
                        req.psk_id,
                        now,
                        now,
                        req.address,
                        req.facts.agent_version,
                        req.hostname,
                        None::<&str>,
                        1i64
                    ],
                    |r| r.get(0),
                )?;
                tx.execute("DELETE FROM agent_profiles WHERE agent_id = ?", [aid])?;
                {
                    let mut st = tx.prepare_cached(query::INSERT_PROFILE)?;
                    for p in &profiles {
                        let body = serde_json::to_string(p).unwrap_or_default();
                        st.execute(params![aid, p.name, body])?;
                    }
                }
                let rec = tx.query_row(
                    &format!("SELECT {} FROM agents WHERE id = ?", query::AGENT_COLS),
                    [aid],
                    agent_row,
                )?;
                agent = Some(finish_agent(rec)?);
            }
            tx.commit()?;
            Ok(Some((req, agent)))
        })
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM agents ORDER BY id",
                query::AGENT_COLS
            ))?;
            let rows = st.query_map([], agent_row)?;
            rows.map(|r| finish_agent(r?)).collect()
        })
    }

    async fn agent(&self, id: i64) -> Result<Option<AgentRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM agents WHERE id = ?",
                query::AGENT_COLS
            ))?
            .query_row([id], agent_row)
            .optional()?
            .map(finish_agent)
            .transpose()
        })
    }

    async fn agents_page(&self, q: &AgentQuery) -> Result<Vec<AgentRecord>> {
        let (sql, vals) = query::agents(q, false);
        self.read(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params_from_iter(vals.iter()), agent_row)?;
            rows.map(|r| finish_agent(r?)).collect()
        })
    }

    async fn count_agents(&self, q: &AgentQuery) -> Result<i64> {
        let (sql, vals) = query::agents(q, true);
        self.read(|c| {
            Ok(c.prepare_cached(&sql)?
                .query_row(params_from_iter(vals.iter()), |r| r.get(0))?)
        })
    }

    async fn agent_states(&self, batch: Option<&str>) -> Result<Vec<(String, i64)>> {
        let (sql, vals) = query::agent_states(batch);
        self.read(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params_from_iter(vals.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn record_contacts(&self, contacts: &[Contact]) -> Result<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(query::TOUCH_AGENT)?;
                for k in contacts {
                    st.execute(params![
                        k.at,
                        k.address,
                        k.state,
                        k.agent_version,
                        k.agent_id,
                        k.at
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn set_agent_profiles(&self, agent: i64, profiles: &[HarvestedProfile]) -> Result<()> {
        let bodies: Vec<(String, String)> = profiles
            .iter()
            .map(|p| (p.name.clone(), serde_json::to_string(p).unwrap_or_default()))
            .collect();
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM agent_profiles WHERE agent_id = ?", [agent])?;
            {
                let mut st = tx.prepare_cached(query::INSERT_PROFILE)?;
                for (name, body) in &bodies {
                    st.execute(params![agent, name, body])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn agent_profiles(&self, agent: i64) -> Result<Vec<HarvestedProfile>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT body FROM agent_profiles WHERE agent_id = ? ORDER BY name",
            )?;
            let rows = st.query_map([agent], |r| r.get::<_, String>(0))?;
            rows.map(|b| {
                serde_json::from_str(&b?).map_err(|e| StoreError::Corrupt(format!("profile: {e}")))
            })
            .collect()
        })
    }

    async fn add_agent_events(
        &self,
        agent: i64,
        run: &str,
        events: &[AgentEvent],
        now: i64,
    ) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(query::INSERT_EVENT)?;
                for e in events {
                    st.execute(params![
                        agent,
                        run,
                        now,
                        e.at,
                        e.step,
                        e.status,
                        e.message,
                        e.progress.map(i64::from)
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn agent_events(&self, agent: i64, run: Option<&str>) -> Result<Vec<StoredEvent>> {
        self.read(|c| {
            let mut st = c.prepare_cached(query::EVENTS)?;
            let rows = st.query_map(params![agent, run, run], event_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn latest_events_of(&self, agents: &[i64]) -> Result<Vec<StoredEvent>> {
        if agents.is_empty() {
            return Ok(vec![]);
        }
        let (sql, vals) = query::latest_events_of(agents);
        self.read(|c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(vals.iter()), event_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn add_agent_log(
        &self,
        agent: i64,
        run: &str,
        start: i64,
        text: &str,
        now: i64,
        cap: i64,
    ) -> Result<LogAdd> {
        let len = text.len() as i64;
        self.write(|c| {
            let tx = c.transaction()?;
            if tx.execute(
                query::INSERT_LOG_CHUNK,
                params![agent, run, start, now, text],
            )? == 0
            {
                return Ok(LogAdd::Resend);
            }
            tx.execute(query::LOG_BYTES_ROW, params![agent, run])?;
            let room: Option<i64> = tx
                .query_row(
                    query::ADD_LOG_BYTES,
                    params![len, agent, run, len, cap],
                    |r| r.get(0),
                )
                .optional()?;
            if room.is_none() {
                // Over the cap: the chunk goes back with the rollback.
                return Ok(LogAdd::OverCap);
            }
            tx.commit()?;
            Ok(LogAdd::Stored)
        })
    }

    async fn agent_log(&self, agent: i64, run: &str) -> Result<String> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT text FROM agent_logs WHERE agent_id = ? AND run = ? ORDER BY start",
            )?;
            let rows = st.query_map(params![agent, run], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.concat())
        })
    }

    async fn change_documents(
        &self,
        kind: DocKind,
        puts: &[(String, String)],
        deletes: &[String],
        now: i64,
    ) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut put = tx.prepare(&query::put_document(kind.table()))?;
                for (name, body) in puts {
                    put.execute(params![name, body, now, now])?;
                }
                let mut del = tx.prepare(&query::delete_document(kind.table()))?;
                for name in deletes {
                    del.execute([name])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn swap_document(
        &self,
        kind: DocKind,
        name: &str,
        old: &str,
        new: &str,
        now: i64,
    ) -> Result<bool> {
        self.write(|c| {
            Ok(c.execute(
                &query::swap_document(kind.table()),
                params![new, now, name, old],
            )? == 1)
        })
    }

    async fn documents(&self, kind: DocKind) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT name, body FROM {} ORDER BY name",
                kind.table()
            ))?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn delete_document(&self, kind: DocKind, name: &str) -> Result<bool> {
        self.write(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(&query::delete_document(kind.table()), [name])?;
            if kind == DocKind::Batch {
                tx.execute("DELETE FROM batch_computers WHERE batch = ?", [name])?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }

    async fn put_operator_password(
        &self,
        name: &str,
        role: &str,
        hash: &str,
        now: i64,
    ) -> Result<()> {
        self.write(|c| {
            c.execute(
                "INSERT INTO operator_passwords (name, role, hash, created_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash, created_at = excluded.created_at",
                params![name, role, hash, now],
            )?;
            Ok(())
        })
    }

    async fn operator_password(&self, name: &str) -> Result<Option<(String, String)>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT role, hash FROM operator_passwords WHERE name = ?",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
    }

    async fn touch_token(&self, hash: &str, now: i64) -> Result<()> {
        self.write(|c| {
            c.execute(
                "UPDATE tokens SET last_used_at = ? WHERE hash = ?",
                params![now, hash],
            )?;
            Ok(())
        })
    }

    async fn delete_token(&self, name: &str) -> Result<bool> {
        self.write(|c| Ok(c.execute("DELETE FROM tokens WHERE name = ?", [name])? > 0))
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>> {
        self.read(|c| {
            let mut st = c.prepare(query::OPERATORS)?;
            let rows = st.query_map([], |r| {
                Ok(OperatorRecord {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    created_at: r.get(2)?,
                    has_password: r.get(3)?,
                    has_session: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn delete_operator(&self, name: &str) -> Result<bool> {
        self.write(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM tokens WHERE name = ?", [name])?;
            let p = tx.execute("DELETE FROM operator_passwords WHERE name = ?", [name])?;
            tx.execute(
                "DELETE FROM tokens WHERE name = ?",
                [format!("session:{name}")],
            )?;
            tx.commit()?;
            Ok(n + p > 0)
        })
    }

    async fn sign_in_failures(&self, key: &str) -> Result<Option<(i64, i64)>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT failures, last_at FROM sign_in_failures WHERE key = ?",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
    }

    async fn add_sign_in_failure(&self, key: &str, now: i64) -> Result<(i64, i64)> {
        self.write(|c| {
            Ok(
                c.query_row(query::ADD_SIGN_IN_FAILURE, params![key, now], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?,
            )
        })
    }

    async fn prune_sign_in_failures(&self, before: i64) -> Result<u64> {
        self.write(|c| {
            Ok(c.execute("DELETE FROM sign_in_failures WHERE last_at < ?", [before])? as u64)
        })
    }

    async fn clear_sign_in_failures(&self, key: &str) -> Result<()> {
        self.write(|c| {
            c.execute("DELETE FROM sign_in_failures WHERE key = ?", [key])?;
            Ok(())
        })
    }

    async fn put_env_records(&self, env: &str, records: &[EnvRecord]) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO env_records (env, id, owner, created_by, modified_by) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (env, id) DO UPDATE SET owner = excluded.owner, created_by = excluded.created_by, modified_by = excluded.modified_by",
                )?;
                for r in records {
                    st.execute(params![env, r.id, r.owner, r.created_by, r.modified_by])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn env_records(&self, env: &str, offset: i64, limit: i64) -> Result<Vec<EnvRecord>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, owner, created_by, modified_by FROM env_records WHERE env = ? ORDER BY id LIMIT ? OFFSET ?",
            )?;
            let rows = st.query_map(params![env, limit, offset], |r| {
                Ok(EnvRecord {
                    id: r.get(0)?,
                    owner: r.get(1)?,
                    created_by: r.get(2)?,
                    modified_by: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn count_env_records(&self, env: &str) -> Result<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM env_records WHERE env = ?",
                [env],
                |r| r.get(0),
            )?)
        })
    }

    async fn hand_over(&self, h: &HandOver<'_>) -> Result<Option<u64>> {
        self.write(|c| {
            let tx = c.transaction()?;
            let swapped = tx.execute(
                &query::swap_document(DocKind::EnvMove.table()),
                params![h.move_body, h.now, h.move_name, h.move_read],
            )?;
            if swapped != 1 {
                return Ok(None);
            }
            {
                let mut put = tx.prepare(&query::put_document(DocKind::Environment.table()))?;
                for (name, body) in h.environments {
                    put.execute(params![name, body, h.now, h.now])?;
                }
            }
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS usermap (src TEXT PRIMARY KEY COLLATE NOCASE, dst TEXT NOT NULL); \
                 DELETE FROM usermap;",
            )?;
            {
                let mut st = tx.prepare_cached("INSERT OR REPLACE INTO usermap (src, dst) VALUES (?, ?)")?;
                for (s, d) in h.remap {
                    st.execute(params![s, d])?;
                }
            }
            let n = tx.execute(
                "UPDATE env_records SET \
                   owner = COALESCE((SELECT dst FROM usermap WHERE src = owner), owner), \
                   created_by = COALESCE((SELECT dst FROM usermap WHERE src = created_by), created_by), \
                   modified_by = COALESCE((SELECT dst FROM usermap WHERE src = modified_by), modified_by) \
                 WHERE env = ?1 AND EXISTS (SELECT 1 FROM usermap \
                   WHERE src = owner OR src = created_by OR src = modified_by)",
                [h.records_env],
            )?;
            tx.execute("DELETE FROM usermap", [])?;
            let e = h.audit;
            tx.execute(
                query::INSERT_AUDIT,
                params![e.at, e.actor, e.tenant, e.action, e.subject, e.detail],
            )?;
            tx.commit()?;
            Ok(Some(n as u64))
        })
    }

    async fn add_audit(&self, e: &AuditEntry) -> Result<()> {
        let e = e.clone();
        self.write(move |c| {
            c.execute(
                query::INSERT_AUDIT,
                params![e.at, e.actor, e.tenant, e.action, e.subject, e.detail],
            )?;
            Ok(())
        })
    }

    async fn audit(&self, tenant: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT id, at, actor, tenant, action, subject, detail FROM audit \
                 WHERE (?1 IS NULL OR tenant = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![tenant, limit], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    tenant: r.get(3)?,
                    action: r.get(4)?,
                    subject: r.get(5)?,
                    detail: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn add_batch_computers(
        &self,
        batch: &str,
        computers: &[String],
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        self.write(|c| {
            let tx = c.transaction()?;
            let mut conflicts = Vec::new();
            {
                let mut get = tx.prepare_cached("SELECT batch FROM batch_computers WHERE computer = ?")?;
                for comp in computers {
                    if let Some(other) = get.query_row([comp], |r| r.get::<_, String>(0)).optional()?
                        && other != batch
                    {
                        conflicts.push((comp.clone(), other));
                    }
                }
            }
            if !conflicts.is_empty() {
                return Ok(conflicts);
            }
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO batch_computers (computer, batch, added_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                )?;
                for comp in computers {
                    ins.execute(params![comp, batch, now])?;
                }
            }
            tx.commit()?;
            Ok(conflicts)
        })
    }

    async fn remove_batch_computers(&self, batch: &str, computers: &[String]) -> Result<u64> {
        self.write(|c| {
            let tx = c.transaction()?;
            let mut n = 0;
            {
                let mut st = tx.prepare_cached(
                    "DELETE FROM batch_computers WHERE batch = ? AND computer = ?",
                )?;
                for comp in computers {
                    n += st.execute(params![batch, comp])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }

    async fn batch_computers(&self) -> Result<Vec<(String, String, i64)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT computer, batch, added_at FROM batch_computers ORDER BY batch, computer",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn record_failed_comm(&self, f: &FailedComm, window_from: i64) -> Result<()> {
        self.write(|c| {
            let counted = c.execute(
                query::COUNT_FAILED,
                params![
                    f.at,
                    f.reason,
                    window_from,
                    f.code,
                    f.address,
                    f.agent_id,
                    f.device_id
                ],
            )?;
            if counted == 0 {
                c.execute(
                    query::INSERT_FAILED,
                    params![
                        f.at,
                        f.at,
                        f.address,
                        f.code,
                        f.reason,
                        f.agent_id,
                        f.device_id
                    ],
                )?;
            }
            Ok(())
        })
    }

    async fn prune_agent_history(
        &self,
        failed_before: Option<i64>,
        events_before: Option<i64>,
    ) -> Result<u64> {
        self.write(|c| {
            let mut n = 0;
            if let Some(t) = failed_before {
                n += c.execute(query::PRUNE_FAILED, [t])?;
            }
            if let Some(t) = events_before {
                n += c.execute(query::PRUNE_EVENTS, [t])?;
                n += c.execute(query::PRUNE_LOGS, [t])?;
            }
            Ok(n as u64)
        })
    }

    async fn failed_comms(&self, limit: i64) -> Result<Vec<FailedComm>> {
        self.read(|c| {
            let mut st = c.prepare_cached(query::FAILED)?;
            let rows = st.query_map([limit], |r| {
                let at: i64 = r.get(1)?;
                Ok(FailedComm {
                    id: r.get(0)?,
                    at,
                    address: r.get(2)?,
                    code: r.get(3)?,
                    reason: r.get(4)?,
                    agent_id: r.get(5)?,
                    device_id: r.get(6)?,
                    count: r.get(7)?,
                    first_at: r.get::<_, Option<i64>>(8)?.unwrap_or(at),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT name, role, created_at, last_used_at FROM tokens WHERE hash = ?",
                [hash],
                |r| {
                    Ok(TokenInfo {
                        name: r.get(0)?,
                        role: r.get(1)?,
                        created_at: r.get(2)?,
                        last_used_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
    }

    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        self.write(|c| {
            Ok(c.execute(query::TAKE_LEASE, params![name, holder, now + ttl_ms, now])? == 1)
        })
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.write(|c| {
            c.execute(
                "DELETE FROM leases WHERE name = ? AND holder = ?",
                params![name, holder],
            )?;
            Ok(())
        })
    }

    async fn recover_server(&self, server: &str, now: i64) -> Result<u64> {
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute(query::RELEASE_SERVER_LEASES, params![server, server])?;
            let n = tx.execute(query::ABORT_SERVER_CYCLES, params![now, server])?;
            tx.commit()?;
            Ok(n as u64)
        })
    }

    async fn claim_slot(&self, profile: &str, slot: i64, holder: &str, now: i64) -> Result<bool> {
        self.write(|c| Ok(c.execute(query::CLAIM_SLOT, params![profile, slot, holder, now])? == 1))
    }

    async fn begin_cycle(
        &self,
        profile: &str,
        trigger: &str,
        slot: Option<i64>,
        server: &str,
        now: i64,
    ) -> Result<i64> {
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute(query::ABORT_RUNNING, params![now, profile])?;
            let id: i64 = tx.query_row(
                query::INSERT_CYCLE,
                params![profile, trigger, slot, server, now],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    async fn set_cycle_phase(&self, id: i64, phase: &str) -> Result<()> {
        self.write(|c| {
            c.execute(
                "UPDATE cycles SET phase = ? WHERE id = ?",
                params![phase, id],
            )?;
            Ok(())
        })
    }

    async fn fail_cycle(
        &self,
        id: i64,
        profile: &str,
        error: &str,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE cycles SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                params![now, error, id],
            )?;
            insert_logs(&tx, Some(id), Some(profile), logs, now)?;
            tx.commit()?;
            Ok(())
        })
    }

    async fn commit_sync(&self, s: SyncCommit<'_>) -> Result<()> {
        self.write(|c| {
            // No automatic checkpoint at this commit: it would copy the whole cycle into the database
            // file before returning. It runs in the background afterwards instead.
            c.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
            let r = Self::commit_sync_tx(c, &s);
            c.execute_batch("PRAGMA wal_autocheckpoint = 1000")?;
            r
        })?;
        self.checkpoint_in_background();
        Ok(())
    }

    async fn finish_cycle(
        &self,
        id: i64,
        profile: &str,
        export: &str,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE cycles SET status = 'succeeded', phase = 'done', finished_at = ?, export = ? WHERE id = ?",
                params![now, export, id],
            )?;
            insert_logs(&tx, Some(id), Some(profile), logs, now)?;
            tx.commit()?;
            Ok(())
        })
    }

    async fn cycle(&self, id: i64) -> Result<Option<CycleInfo>> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {} FROM cycles WHERE id = ?", query::CYCLE_COLS),
                [id],
                cycle_row,
            )
            .optional()?
            .map(finish_cycle_row)
            .transpose()
        })
    }

    async fn cycles(&self, profile: Option<&str>, limit: i64) -> Result<Vec<CycleInfo>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM cycles WHERE (?1 IS NULL OR profile = ?1) ORDER BY id DESC LIMIT ?2",
                query::CYCLE_COLS
            ))?;
            let rows = st.query_map(params![profile, limit], cycle_row)?;
            rows.map(|r| finish_cycle_row(r?)).collect()
        })
    }

    async fn object_digest(&self, directory: &str) -> Result<FxHashMap<(ObjectKind, String), u64>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT kind, id, hash FROM objects WHERE directory = ?")?;
            let mut rows = st.query([directory])?;
            let mut out = FxHashMap::default();
            while let Some(r) = rows.next()? {
                let kind: String = r.get(0)?;
                out.insert((codec::kind(&kind)?, r.get(1)?), r.get::<_, i64>(2)? as u64);
            }
            Ok(out)
        })
    }

    async fn load_objects(&self, directory: &str) -> Result<Vec<DirObject>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM objects WHERE directory = ? ORDER BY kind, id",
                query::OBJ_COLS
            ))?;
            let rows = st.query_map([directory], object_row)?;
            rows.map(|r| finish_object(r?).map(|s| s.object)).collect()
        })
    }

    async fn directory_state(&self, directory: &str) -> Result<Option<DirectoryState>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT directory, watermark, last_full_import, last_import, objects FROM directory_state WHERE directory = ?",
                [directory],
                |r| Ok(DirectoryState { directory: r.get(0)?, watermark: r.get(1)?, last_full_import: r.get(2)?, last_import: r.get(3)?, objects: r.get(4)? }),
            )
            .optional()?)
        })
    }

    async fn has_objects(&self, directory: &str, kind: ObjectKind) -> Result<bool> {
        self.read(|c| {
            let mut st = c.prepare_cached(query::HAS_OBJECTS)?;
            Ok(st.exists(params![directory, kind.as_str()])?)
        })
    }

    async fn find_objects(&self, q: &str, limit: i64) -> Result<Vec<StoredObject>> {
        let key = lookup_key(q);
        self.read(|c| {
            let mut st = c.prepare_cached(query::FIND_OBJECTS)?;
            let rows = st.query_map(params![key, key, key, key, key, limit], object_row)?;
            let found: Vec<StoredObject> =
                rows.map(|r| finish_object(r?)).collect::<Result<_>>()?;
            Ok(found
                .into_iter()
                .filter(|f| query::object_matches(&f.object, q))
                .collect())
        })
    }

    async fn decision_digest(
        &self,
        profile: &str,
    ) -> Result<FxHashMap<DecisionKey, (u64, Status)>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT kind, source_id, hash, status FROM decisions WHERE profile = ?")?;
            let mut rows = st.query([profile])?;
            let mut out = FxHashMap::default();
            while let Some(r) = rows.next()? {
                let kind: String = r.get(0)?;
                let status: String = r.get(3)?;
                out.insert(
                    (codec::kind(&kind)?, r.get(1)?),
                    (r.get::<_, i64>(2)? as u64, codec::status(&status)?),
                );
            }
            Ok(out)
        })
    }

    async fn decisions(&self, q: &DecisionQuery) -> Result<Vec<DecisionRow>> {
        let (sql, vals) = query::decisions(q, false);
        self.read(|c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(vals.iter()), decision_row)?;
            rows.map(|r| finish_decision(r?)).collect()
        })
    }

    async fn count_decisions(&self, q: &DecisionQuery) -> Result<i64> {
        let (sql, vals) = query::decisions(q, true);
        self.read(|c| Ok(c.query_row(&sql, params_from_iter(vals.iter()), |r| r.get(0))?))
    }

    async fn decisions_for_object(&self, kind: ObjectKind, id: &str) -> Result<Vec<DecisionRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM decisions WHERE kind = ?1 AND (source_id = ?2 OR target_id = ?2) ORDER BY profile",
                query::DEC_COLS
            ))?;
            let rows = st.query_map(params![kind.as_str(), id], decision_row)?;
            rows.map(|r| finish_decision(r?)).collect()
        })
    }

    async fn plan(&self, profile: &str) -> Result<Option<PlanInfo>> {
        self.read(|c| {
            let row = c
                .query_row(
                    "SELECT profile, cycle_id, hash, fingerprint, mode, rules, counts, created_at FROM plans WHERE profile = ?",
                    [profile],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, i64>(7)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(profile, cycle_id, hash, fingerprint, mode, rules, counts, created_at)| {
                Ok(PlanInfo { profile, cycle_id, hash, fingerprint, mode, rules: codec::json(&rules)?, counts: codec::json(&counts)?, created_at })
            })
            .transpose()
        })
    }

    async fn plan_profiles(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT profile FROM plans ORDER BY profile")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    async fn plan_writes(&self, profile: &str, offset: i64, limit: i64) -> Result<Vec<Write>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT body FROM plan_writes WHERE profile = ? ORDER BY seq LIMIT ? OFFSET ?",
            )?;
            let rows = st.query_map(
                params![profile, if limit > 0 { limit } else { -1 }, offset],
                |r| r.get::<_, String>(0),
            )?;
            rows.map(|r| codec::json(&r?)).collect()
        })
    }

    async fn approve(&self, profile: &str, plan_hash: &str, by: &str, now: i64) -> Result<()> {
        self.write(|c| {
            c.execute(
                "INSERT INTO approvals (profile, plan_hash, approved_by, approved_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (profile) DO UPDATE SET plan_hash = excluded.plan_hash, approved_by = excluded.approved_by, approved_at = excluded.approved_at",
                params![profile, plan_hash, by, now],
            )?;
            Ok(())
        })
    }

    async fn approval(&self, profile: &str) -> Result<Option<Approval>> {
        self.read(|c| {
            Ok(c.query_row("SELECT profile, plan_hash, approved_by, approved_at FROM approvals WHERE profile = ?", [profile], |r| {
                Ok(Approval { profile: r.get(0)?, plan_hash: r.get(1)?, approved_by: r.get(2)?, approved_at: r.get(3)? })
            })
            .optional()?)
        })
    }

    async fn history(&self, kind: ObjectKind, source_id: &str) -> Result<Vec<HistoryRow>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT profile, cycle_id, at, change FROM history WHERE kind = ? AND source_id = ? ORDER BY id")?;
            let rows = st.query_map(params![kind.as_str(), source_id], |r| {
                Ok(HistoryRow { profile: r.get(0)?, cycle_id: r.get(1)?, at: r.get(2)?, change: r.get(3)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn append_logs(
        &self,
        cycle_id: Option<i64>,
        profile: Option<&str>,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            insert_logs(&tx, cycle_id, profile, logs, now)?;
            tx.commit()?;
            Ok(())
        })
    }

    async fn logs(&self, q: &LogQuery) -> Result<Vec<StoredLog>> {
        let (sql, vals) = query::logs(q);
        self.read(|c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(vals.iter()), log_row)?;
            rows.map(|r| {
                let (mut l, level, kind) = r?;
                l.entry.level = codec::level(&level)?;
                l.entry.object_kind = kind.map(|k| codec::kind(&k)).transpose()?;
                Ok(l)
            })
            .collect()
        })
    }
}

impl SqliteStore {
    /// The transaction of `commit_sync`.
    fn commit_sync_tx(c: &mut Connection, s: &SyncCommit<'_>) -> Result<()> {
        let tx = c.transaction()?;

        // `objects` has no secondary index to drop on SQLite (its look-up keys are scanned, see the
        // migration), so only `decisions` takes the bulk path below.
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
            tracing::debug!(
                objects_ms = (t2 - t0).as_millis() as u64,
                decisions_ms = (t3 - t2).as_millis() as u64,
                decision_indexes_ms = t3.elapsed().as_millis() as u64,
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
        insert_logs(&tx, Some(s.cycle_id), Some(&plan.profile), s.logs, s.now)?;
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

/// A live agent of another device holds the host name (the unique `hostname_claim`): the
/// enrollment's claim changed under it, as with a device id taken in between.
fn claim_taken(e: rusqlite::Error, device_id: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && msg.contains("hostname_claim") =>
        {
            StoreError::ClaimChanged(device_id.to_string())
        }
        _ => e.into(),
    }
}

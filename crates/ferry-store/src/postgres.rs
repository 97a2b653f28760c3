//! The PostgreSQL backend, for several servers sharing one database.
//!
//! Statements are the store's shared SQL with `?` numbered `$1`, `$2`, … and prepared once per
//! connection; several rows of one statement are pipelined. A cycle's bulk write goes through
//! `UNNEST` arrays in batches, one round trip per few thousand rows. Migrations run under a
//! transaction-scoped advisory lock so that servers starting together migrate once.

use crate::backend::{Backend, Conn, EachRow, Row, Val};
use crate::migrate::POSTGRES;
use crate::sql::SqlStore;
use crate::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ferry_core::model::lookup_key;
use futures_util::StreamExt as _;
use std::str::FromStr;
use tokio_postgres::NoTls;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

const BATCH: usize = 5000;

/// The searched text of a decision, the expression migration 0019's pg_trgm index was on: the
/// eight values joined by line feeds, folded by the database's `lower`. Migration 0029 stores it
/// as the column `search_text`, which everything after it reads (this expression is migration
/// 0028's, which runs before the column exists).
macro_rules! search_text {
    () => {
        "lower(source_name || E'\\n' || coalesce(source_upn, '') || E'\\n' \
        || coalesce(source_mail, '') || E'\\n' || coalesce(source_sid, '') || E'\\n' || coalesce(target_name, '') || E'\\n' \
        || coalesce(target_upn, '') || E'\\n' || coalesce(target_mail, '') || E'\\n' || coalesce(target_sid, ''))"
    };
}

/// The trigrams of searched texts ([`search_text!`], `search_index::trigrams_of`) and by how
/// many the decisions holding each change, to add to the vocabulary (migration 0028): a written
/// text adds its trigrams, the text it replaced or a deleted decision's takes them back, so that
/// `entries` is the number of decisions holding the trigram.
#[derive(Default)]
struct TermCounts {
    counts: rustc_hash::FxHashMap<[char; 3], i64>,
    row: rustc_hash::FxHashSet<[char; 3]>,
}

impl TermCounts {
    /// One decision's searched text: each trigram counted once.
    fn add(&mut self, text: &str) {
        self.count(text, 1);
    }

    /// A decision's text no longer held (replaced or deleted): each trigram taken back once.
    fn take_back(&mut self, text: &str) {
        self.count(text, -1);
    }

    fn count(&mut self, text: &str, by: i64) {
        self.row.clear();
        for t in crate::search_index::trigrams_of(text) {
            if self.row.insert(t) {
                *self.counts.entry(t).or_default() += by;
            }
        }
    }

    /// Adds them to the vocabulary, in code-point order (two cycles adding the same trigrams
    /// wait for each other, in one order: no deadlock).
    async fn write(self, tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
        let mut all: Vec<(String, i64)> = self
            .counts
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .map(|(t, n)| (t.iter().collect(), n))
            .collect();
        all.sort_unstable();
        for chunk in all.chunks(BATCH) {
            let terms: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
            let counts: Vec<i64> = chunk.iter().map(|(_, n)| *n).collect();
            tx.execute(
                "INSERT INTO decisions_search_terms (term, entries) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
                 ON CONFLICT (term) DO UPDATE SET entries = decisions_search_terms.entries + excluded.entries",
                &[&terms, &counts],
            )
            .await?;
        }
        Ok(())
    }
}
const MIGRATION_LOCK: i64 = 0x6665_7272_795f_6d69; // "ferry_mi"

/// The PostgreSQL backend of [`SqlStore`].
pub struct Postgres {
    pool: Pool,
}

/// The store on PostgreSQL.
pub type PgStore = SqlStore<Postgres>;

fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

/// Rewrites `?` placeholders as `$1`, `$2`, … (no statement of the store has `?` inside a literal).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// A unique constraint's refusal becomes [`StoreError::Unique`] (naming the constraint).
fn err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) if *d.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
            StoreError::Unique(d.constraint().unwrap_or(d.message()).to_string())
        }
        _ => e.into(),
    }
}

impl ToSql for Val<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Val::Text(s) => s.as_ref().to_sql(ty, out),
            Val::Bytes(b) => b.to_sql(ty, out),
        }
    }

    /// Every parameter type: the value is converted (or refused) in `to_sql`.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

struct PgRow<'a>(&'a tokio_postgres::Row);

impl Row for PgRow<'_> {
    fn int(&self, i: usize) -> Result<Option<i64>> {
        let r = self.0;
        let ty = r.columns().get(i).map(|c| c.type_().clone());
        Ok(match ty {
            Some(Type::INT4) => r.try_get::<_, Option<i32>>(i)?.map(i64::from),
            Some(Type::INT2) => r.try_get::<_, Option<i16>>(i)?.map(i64::from),
            Some(Type::BOOL) => r.try_get::<_, Option<bool>>(i)?.map(i64::from),
            _ => r.try_get::<_, Option<i64>>(i)?,
        })
    }
    fn text(&self, i: usize) -> Result<Option<&str>> {
        Ok(self.0.try_get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Option<&[u8]>> {
        Ok(self.0.try_get(i)?)
    }
}

/// A pooled connection, inside a transaction or not.
struct PgConn {
    client: Option<deadpool_postgres::Object>,
    open: bool,
}

impl PgConn {
    fn client(&self) -> &deadpool_postgres::Object {
        self.client.as_ref().expect("a connection until dropped")
    }

    async fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        Ok(self.client().prepare_cached(&numbered(sql)).await?)
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // A transaction dropped before its commit: the connection is closed instead of being
        // returned to the pool, which rolls the transaction back on the server.
        if self.open
            && let Some(c) = self.client.take()
        {
            drop(deadpool_postgres::Object::take(c));
        }
    }
}

fn refs<'a>(params: &'a [Val<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

#[async_trait]
impl Conn for PgConn {
    async fn execute(&mut self, sql: &str, params: &[Val<'_>]) -> Result<u64> {
        let st = self.statement(sql).await?;
        self.client().execute(&st, &refs(params)).await.map_err(err)
    }

    async fn execute_many(&mut self, sql: &str, rows: &[Vec<Val<'_>>]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let st = self.statement(sql).await?;
        let c = self.client();
        let mut n = 0;
        for chunk in rows.chunks(1000) {
            let params: Vec<Vec<&(dyn ToSql + Sync)>> = chunk.iter().map(|r| refs(r)).collect();
            // Polled together, the statements are pipelined: one round trip for the chunk.
            let done = futures_util::future::try_join_all(
                params.iter().map(|p| c.execute(&st, p.as_slice())),
            )
            .await
            .map_err(err)?;
            n += done.iter().sum::<u64>();
        }
        Ok(n)
    }

    async fn each(&mut self, sql: &str, params: &[Val<'_>], f: &mut EachRow<'_>) -> Result<()> {
        let st = self.statement(sql).await?;
        let rows = self
            .client()
            .query_raw(&st, refs(params))
            .await
            .map_err(err)?;
        let mut rows = std::pin::pin!(rows);
        while let Some(r) = rows.next().await {
            f(&PgRow(&r.map_err(err)?))?;
        }
        Ok(())
    }

    async fn lock_table(&mut self, table: &str) -> Result<()> {
        self.client()
            .batch_execute(&format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
            .await?;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if self.open {
            self.client().batch_execute("COMMIT").await?;
            self.open = false;
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for Postgres {
    const NAME: &'static str = "postgres";
    const MIGRATIONS: &'static [crate::migrate::Migration] = crate::migrate::POSTGRES;
    /// The column of migration 0029's pg_trgm index (`decision_search.sql`), the decision's
    /// folded text; without the extension the same condition scans the table.
    const DECISION_SEARCH: Option<&'static str> = Some("search_text LIKE lower(?)");
    const SEARCH_TEXT: Option<&'static str> = Some("search_text");
    const TERMS_IN_CYCLE: bool = true;
    const INSTR: &'static str = "strpos";
    const FOLD: &'static str = "lower";
    const BATCH_AGENTS: &'static str = "batch_computers bc CROSS JOIN LATERAL \
         (SELECT * FROM agents WHERE agents.host_key = bc.computer OFFSET 0) a";
    const BINARY: &'static str = " COLLATE \"C\"";
    const FILTER_ONLY: &'static str = "";
    /// A `LIKE` pattern (`\\` escapes; PostgreSQL's default escape character), not folded:
    /// [`Backend::FOLD_TERM`] folds it with the values' own `lower`.
    fn search_param(term: &str) -> String {
        crate::codec::like_pattern_as_typed(term)
    }
    const FOLD_TERM: &'static str = "lower(?)";

    /// A read-only transaction in one snapshot (`REPEATABLE READ`): a short search reads the
    /// vocabulary and then the decisions as one cycle's commit left both.
    async fn snapshot(&self) -> Result<Box<dyn Conn + '_>> {
        let client = self.client().await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        Ok(Box::new(PgConn {
            client: Some(client),
            open: true,
        }))
    }

    async fn read(&self) -> Result<Box<dyn Conn + '_>> {
        Ok(Box::new(PgConn {
            client: Some(self.client().await?),
            open: false,
        }))
    }

    async fn write(&self) -> Result<Box<dyn Conn + '_>> {
        self.read().await
    }

    async fn begin(&self) -> Result<Box<dyn Conn + '_>> {
        let client = self.client().await?;
        client.batch_execute("BEGIN").await?;
        Ok(Box::new(PgConn {
            client: Some(client),
            open: true,
        }))
    }

    async fn commit_sync(&self, s: &SyncCommit<'_>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        for oc in &s.objects {
            let dir = oc.state.directory.as_str();
            for chunk in oc.upserts.chunks(BATCH) {
                let mut t: [Vec<Option<String>>; 9] = Default::default();
                let mut n: [Vec<Option<i64>>; 8] = Default::default();
                for &(o, hash) in chunk {
                    t[0].push(Some(o.kind.as_str().into()));
                    t[1].push(Some(o.id.clone()));
                    t[2].push(o.dn.clone());
                    t[3].push(Some(o.name.clone()));
                    t[4].push(o.upn.clone());
                    t[5].push(o.mail.clone());
                    t[6].push(o.sid.clone());
                    t[7].push(codec::members(o));
                    t[8].push(codec::attrs(o));
                    n[0].push(o.uid_number.map(i64::from));
                    n[1].push(o.gid_number.map(i64::from));
                    n[2].push(Some(hash as i64));
                    n[3].push(Some(lookup_key(&o.id)));
                    n[4].push(Some(lookup_key(&o.name)));
                    n[5].push(o.upn.as_deref().map(lookup_key));
                    n[6].push(o.mail.as_deref().map(lookup_key));
                    n[7].push(o.sid.as_deref().map(lookup_key));
                }
                tx.execute(
                    "INSERT INTO objects (directory, kind, id, dn, name, upn, mail, sid, uid_number, gid_number, members, attrs, hash, \
                     id_key, name_key, upn_key, mail_key, sid_key) \
                     SELECT $1, k, i, d, nm, u, m, s, un, gn, mb, a, h, ik, nk, uk, mk, sk FROM UNNEST($2::text[], $3::text[], $4::text[], \
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::bigint[], \
                     $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[]) \
                     AS x(k, i, d, nm, u, m, s, un, gn, mb, a, h, ik, nk, uk, mk, sk) \
                     ON CONFLICT (directory, kind, id) DO UPDATE SET dn = excluded.dn, name = excluded.name, upn = excluded.upn, \
                     mail = excluded.mail, sid = excluded.sid, uid_number = excluded.uid_number, gid_number = excluded.gid_number, \
                     members = excluded.members, attrs = excluded.attrs, hash = excluded.hash, id_key = excluded.id_key, \
                     name_key = excluded.name_key, upn_key = excluded.upn_key, mail_key = excluded.mail_key, sid_key = excluded.sid_key",
                    &[&dir, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &n[0], &n[1], &t[7], &t[8], &n[2], &n[3], &n[4], &n[5], &n[6], &n[7]],
                )
                .await?;
            }
            for chunk in oc.deletes.chunks(BATCH) {
                let kinds: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
                let ids: Vec<&str> = chunk.iter().map(|(_, i)| i.as_str()).collect();
                tx.execute(
                    "DELETE FROM objects o USING UNNEST($2::text[], $3::text[]) AS x(k, i) WHERE o.directory = $1 AND o.kind = x.k AND o.id = x.i",
                    &[&dir, &kinds, &ids],
                )
                .await?;
            }
            let st = &oc.state;
            tx.execute(
                &numbered(query::UPSERT_DIRSTATE),
                &[
                    &st.directory,
                    &st.watermark,
                    &st.last_full_import,
                    &st.last_import,
                    &st.objects,
                ],
            )
            .await?;
        }
        let plan = s.plan;
        let mut terms = TermCounts::default();
        for chunk in s.decisions.upserts.chunks(BATCH) {
            let mut t: [Vec<Option<String>>; 14] = Default::default();
            let mut n: [Vec<Option<i64>>; 6] = Default::default();
            for (rec, _) in chunk {
                let src = rec.source;
                let tg = rec.target;
                t[0].push(Some(src.kind.as_str().into()));
                t[1].push(Some(src.id.clone()));
                t[2].push(Some(rec.status.as_str().into()));
                t[3].push(Some(src.name.clone()));
                t[4].push(src.upn.clone());
                t[5].push(src.mail.clone());
                t[6].push(src.sid.clone());
                t[7].push(tg.map(|x| x.id.clone()));
                t[8].push(tg.map(|x| x.name.clone()));
                t[9].push(tg.and_then(|x| x.upn.clone()));
                t[10].push(tg.and_then(|x| x.mail.clone()));
                t[11].push(tg.and_then(|x| x.sid.clone()));
                t[12].push(codec::candidates(&rec.candidates));
                n[0].push(rec.rule.map(i64::from));
                n[1].push(src.uid_number.map(i64::from));
                n[2].push(src.gid_number.map(i64::from));
                n[3].push(tg.and_then(|x| x.uid_number).map(i64::from));
                n[4].push(tg.and_then(|x| x.gid_number).map(i64::from));
                n[5].push(Some(rec.hash as i64));
            }
            // The text the changed decisions held before, taken back from the vocabulary's
            // counts (a new decision held none: a first cycle asks nothing). Read in the
            // upsert's own statement (`WITH old AS …`) for every decision, the look-up took
            // console-pages' first cycle of a million from 389–490 s to 768 s.
            let (kinds, ids): (Vec<&str>, Vec<&str>) = chunk
                .iter()
                .filter(|(_, before)| before.is_some())
                .map(|(rec, _)| (rec.source.kind.as_str(), rec.source.id.as_str()))
                .unzip();
            if !ids.is_empty() {
                for r in tx
                    .query(
                        "SELECT d.search_text FROM decisions d JOIN UNNEST($2::text[], $3::text[]) AS o(k, i) \
                         ON d.profile = $1 AND d.kind = o.k AND d.source_id = o.i",
                        &[&plan.profile, &kinds, &ids],
                    )
                    .await?
                {
                    terms.take_back(r.try_get(0)?);
                }
            }
            let written = tx.query(
                "INSERT INTO decisions (profile, kind, source_id, status, rule, source_name, source_upn, source_mail, source_sid, source_uid, \
                 source_gid, target_id, target_name, target_upn, target_mail, target_sid, target_uid, target_gid, candidates, hash, first_cycle, \
                 changed_cycle) SELECT $1, k, i, st, r, sn, su, sm, ss, suid, sgid, ti, tn, tu, tm, ts, tuid, tgid, c, h, $2, $2 \
                 FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], \
                 $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::bigint[], $19::bigint[], $20::text[], \
                 $21::bigint[]) AS x(k, i, st, r, sn, su, sm, ss, suid, sgid, ti, tn, tu, tm, ts, tuid, tgid, c, h) \
                 ON CONFLICT (profile, kind, source_id) DO UPDATE SET status = excluded.status, rule = excluded.rule, \
                 source_name = excluded.source_name, source_upn = excluded.source_upn, source_mail = excluded.source_mail, \
                 source_sid = excluded.source_sid, source_uid = excluded.source_uid, source_gid = excluded.source_gid, \
                 target_id = excluded.target_id, target_name = excluded.target_name, target_upn = excluded.target_upn, \
                 target_mail = excluded.target_mail, target_sid = excluded.target_sid, target_uid = excluded.target_uid, \
                 target_gid = excluded.target_gid, candidates = excluded.candidates, hash = excluded.hash, changed_cycle = excluded.changed_cycle \
                 RETURNING search_text",
                &[
                    &plan.profile, &s.cycle_id, &t[0], &t[1], &t[2], &n[0], &t[3], &t[4], &t[5], &t[6], &n[1], &n[2], &t[7], &t[8], &t[9], &t[10],
                    &t[11], &n[3], &n[4], &t[12], &n[5],
                ],
            )
            .await?;
            // The searched text as the database folds it, for the vocabulary of short searches.
            for r in written {
                terms.add(r.try_get(0)?);
            }
        }
        for chunk in s.decisions.removed.chunks(BATCH) {
            let kinds: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let ids: Vec<&str> = chunk.iter().map(|(_, i)| i.as_str()).collect();
            let gone = tx
                .query(
                    "DELETE FROM decisions d USING UNNEST($2::text[], $3::text[]) AS x(k, i) WHERE d.profile = $1 AND d.kind = x.k AND d.source_id = x.i \
                     RETURNING d.search_text",
                    &[&plan.profile, &kinds, &ids],
                )
                .await?;
            for r in gone {
                terms.take_back(r.try_get(0)?);
            }
        }
        terms.write(&tx).await?;
        for chunk in s.history.chunks(BATCH) {
            let kinds: Vec<&str> = chunk.iter().map(|(k, _, _)| k.as_str()).collect();
            let ids: Vec<&str> = chunk.iter().map(|(_, i, _)| i.as_str()).collect();
            let changes: Vec<&str> = chunk.iter().map(|(_, _, c)| c.as_str()).collect();
            tx.execute(
                "INSERT INTO history (profile, kind, source_id, cycle_id, at, change) SELECT $1, k, i, $2, $3, c FROM UNNEST($4::text[], $5::text[], $6::text[]) AS x(k, i, c)",
                &[&plan.profile, &s.cycle_id, &s.now, &kinds, &ids, &changes],
            )
            .await?;
        }
        let counts = serde_json::to_string(&plan.counts).unwrap_or_default();
        let rules = serde_json::to_string(&plan.rules).unwrap_or_default();
        tx.execute(
            &numbered(query::UPSERT_PLAN),
            &[
                &plan.profile,
                &s.cycle_id,
                &plan.hash,
                &plan.fingerprint,
                &plan.mode.as_str(),
                &rules,
                &counts,
                &s.now,
            ],
        )
        .await?;
        tx.execute(
            "DELETE FROM plan_writes WHERE profile = $1",
            &[&plan.profile],
        )
        .await?;
        for (ci, chunk) in plan.writes.chunks(BATCH).enumerate() {
            let seq: Vec<i64> = (0..chunk.len()).map(|i| (ci * BATCH + i) as i64).collect();
            let ops: Vec<&str> = chunk.iter().map(|w| w.op()).collect();
            let kinds: Vec<&str> = chunk.iter().map(|w| w.kind().as_str()).collect();
            let ids: Vec<&str> = chunk.iter().map(|w| w.source_id()).collect();
            let bodies: Vec<String> = chunk
                .iter()
                .map(|w| serde_json::to_string(w).unwrap_or_default())
                .collect();
            tx.execute(
                "INSERT INTO plan_writes (profile, seq, op, kind, source_id, body) SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])",
                &[&plan.profile, &seq, &ops, &kinds, &ids, &bodies],
            )
            .await?;
        }
        bulk_logs(&tx, Some(s.cycle_id), Some(&plan.profile), s.logs, s.now).await?;
        // Last, so that a cycle aborted meanwhile rolls back everything above.
        let n = tx
            .execute("UPDATE cycles SET phase = 'export', counts = $1, plan_hash = $2 WHERE id = $3 AND status = 'running'", &[&counts, &plan.hash, &s.cycle_id])
            .await?;
        if n != 1 {
            return Err(StoreError::CycleNotRunning(s.cycle_id));
        }
        tx.commit().await?;
        Ok(())
    }
}

impl SqlStore<Postgres> {
    /// Connects to `url` (`postgres://user:pass@host:port/db`, options such as
    /// `?options=-csearch_path%3Dschema` allowed) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<PgStore> {
        const WARM_CONNECTIONS: usize = 8;
        let (url, mode) = crate::pgtls::split_url(url)
            .map_err(|e| StoreError::Open(format!("database URL: {e}")))?;
        let mut cfg = tokio_postgres::Config::from_str(&url)
            .map_err(|e| StoreError::Open(format!("database URL: {e}")))?;
        let mc = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let mgr = match &mode {
            crate::pgtls::Mode::Plain => Manager::from_config(cfg, NoTls, mc),
            crate::pgtls::Mode::Tls { roots } => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = crate::pgtls::client_config(roots.as_deref())
                    .map_err(|e| StoreError::Open(format!("database URL: {e}")))?;
                Manager::from_config(cfg, crate::pgtls::MakeRustls(tls), mc)
            }
        };
        let pool = Pool::builder(mgr).max_size(16).build().map_err(pool_err)?;
        let store = SqlStore::new(Postgres { pool });
        store.b.migrate().await?;
        store.b.ensure_search_index().await?;
        // Open some connections now: a console page's first render sends up to ten requests at
        // once, and setting up ten connections then cost it 150–200 ms.
        let mut warm = Vec::with_capacity(WARM_CONNECTIONS);
        for _ in 0..WARM_CONNECTIONS {
            warm.push(store.b.client().await?);
        }
        drop(warm);
        Ok(store)
    }

    /// Whether this store's connections are encrypted, as the server sees them (`pg_stat_ssl`).
    pub async fn tls_in_use(&self) -> Result<bool> {
        let row = self
            .b
            .client()
            .await?
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }
}

impl Postgres {
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => pool_err(other),
        })
    }

    /// Migration 0019 makes the translation search's pg_trgm index, and 0025 the agent search's,
    /// only where the extension is there or this role may create it; without them searches are
    /// correct but scan. At each start with any of them missing the migrations' blocks run again
    /// (they create the indexes once someone installed the extension), and if they are still
    /// missing the server says so.
    async fn ensure_search_index(&self) -> Result<()> {
        const FIND: &str = "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() \
             AND indexname IN ('decisions_search', 'agents_search_host', 'agents_search_device')";
        const ALL: i64 = 3;
        let mut c = self.client().await?;
        if c.query_one(FIND, &[]).await?.try_get::<_, i64>(0)? == ALL {
            return Ok(());
        }
        // Under the migrations' lock: servers starting together do not race to create it.
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(crate::migrate::POSTGRES_DECISION_SEARCH)
            .await?;
        tx.batch_execute(crate::migrate::POSTGRES_AGENT_SEARCH)
            .await?;
        let made = tx.query_one(FIND, &[]).await?.try_get::<_, i64>(0)? == ALL;
        tx.commit().await?;
        if !made {
            tracing::warn!(
                "the translation table and the agents have no search index: the pg_trgm extension is not installed and \
                 this role may not create it, so searches scan every decision (seconds at a million) and every agent. \
                 As a superuser run `CREATE EXTENSION pg_trgm SCHEMA public;` and restart ferry: it then creates the \
                 indexes (crates/ferry-store/migrations/postgres/decision_search.sql, agent_search.sql)"
            );
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<()> {
        self.migrate_through(POSTGRES).await
    }

    /// Applies the pending ones of `migrations` (all of them but in tests of an upgrade).
    async fn migrate_through(&self, migrations: &[crate::migrate::Migration]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            .await?;
        let current: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .try_get(0)?;
        let known = migrations.last().map_or(0, |m| m.version);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for m in migrations.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql).await?;
            if m.version == crate::migrate::HOST_KEYS {
                rekey_hosts(&tx).await?;
            }
            if m.version == crate::migrate::SEARCH_TERMS_POSTGRES {
                fill_search_terms(&tx, concat!("SELECT ", search_text!(), " FROM decisions"))
                    .await?;
            }
            if m.version == crate::migrate::SEARCH_TEXT {
                // Counted again from the stored text: before 0029 every upsert added its
                // trigrams and none took them back.
                tx.batch_execute("DELETE FROM decisions_search_terms")
                    .await?;
                fill_search_terms(&tx, "SELECT search_text FROM decisions").await?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &now_ms()],
            )
            .await?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied PostgreSQL migration"
            );
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Migration 0028's part in Rust, and 0029's: the trigrams of every decision stored, whose
/// searched texts `texts` selects.
async fn fill_search_terms(tx: &deadpool_postgres::Transaction<'_>, texts: &str) -> Result<()> {
    let mut terms = TermCounts::default();
    let rows = tx.query_raw(texts, std::iter::empty::<i64>()).await?;
    futures_util::pin_mut!(rows);
    while let Some(r) = rows.next().await {
        terms.add(r?.try_get(0)?);
    }
    terms.write(tx).await
}

/// Migration 0025's part in Rust: every agent's host-name key and claim, and the batches' keys,
/// written by `host_key` (see the migration); agents in chunks of [`BATCH`], one statement each.
async fn rekey_hosts(tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
    let mut agents = Vec::new();
    for r in tx
        .query(
            "SELECT id, hostname, hostname_claim IS NOT NULL FROM agents",
            &[],
        )
        .await?
    {
        agents.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
    }
    tx.execute(
        "UPDATE agents SET hostname_claim = NULL WHERE hostname_claim IS NOT NULL",
        &[],
    )
    .await?;
    for chunk in crate::migrate::agent_keys(&agents).chunks(BATCH) {
        let ids: Vec<i64> = chunk.iter().map(|a| a.0).collect();
        let keys: Vec<&str> = chunk.iter().map(|a| a.1.as_str()).collect();
        let claims: Vec<Option<&str>> = chunk.iter().map(|a| a.2.as_deref()).collect();
        tx.execute(
            "UPDATE agents a SET host_key = x.k, hostname_claim = x.c \
             FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS x(i, k, c) WHERE a.id = x.i",
            &[&ids, &keys, &claims],
        )
        .await?;
    }
    let mut computers = Vec::new();
    for r in tx
        .query("SELECT computer FROM batch_computers", &[])
        .await?
    {
        computers.push(r.try_get(0)?);
    }
    for (old, new) in crate::migrate::computer_keys(&computers) {
        match new {
            Some(new) => {
                tx.execute(
                    "UPDATE batch_computers SET computer = $1 WHERE computer = $2",
                    &[&new, &old],
                )
                .await?
            }
            None => {
                tx.execute("DELETE FROM batch_computers WHERE computer = $1", &[&old])
                    .await?
            }
        };
    }
    Ok(())
}

async fn bulk_logs(
    c: &impl deadpool_postgres::GenericClient,
    cycle_id: Option<i64>,
    profile: Option<&str>,
    logs: &[LogEntry],
    now: i64,
) -> Result<()> {
    for chunk in logs.chunks(BATCH) {
        let mut cols: [Vec<Option<String>>; 8] = Default::default();
        for l in chunk {
            cols[0].push(l.directory.clone());
            cols[1].push(Some(l.level.as_str().into()));
            cols[2].push(Some(l.code.clone()));
            cols[3].push(l.object_kind.map(|k| k.as_str().into()));
            cols[4].push(l.object_id.clone());
            cols[5].push(l.object_name.clone());
            cols[6].push(Some(l.message.clone()));
        }
        c.execute(
            "INSERT INTO logs (at, cycle_id, profile, directory, level, code, object_kind, object_id, object_name, message) \
             SELECT $1, $2, $3, * FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])",
            &[&now, &cycle_id, &profile, &cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5], &cols[6]],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend on a schema of its own in the test server's database (None without one), and a
    /// client of the database to drop the schema with.
    async fn scratch(name: &str) -> Option<(tokio_postgres::Client, Postgres, String)> {
        let Ok(url) = std::env::var("FERRY_TEST_DATABASE_URL") else {
            assert_ne!(
                std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
                Ok("1"),
                "FERRY_TEST_DATABASE_URL is not set but FERRY_REQUIRE_SERVERS=1"
            );
            return None;
        };
        let schema = format!("{name}_{}", std::process::id());
        let (admin, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let cfg = tokio_postgres::Config::from_str(&format!(
            "{url}{sep}options=-csearch_path%3D{schema}"
        ))
        .unwrap();
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let b = Postgres {
            pool: Pool::builder(mgr).max_size(2).build().unwrap(),
        };
        Some((admin, b, schema))
    }

    /// Catches: migration 0029 leaving the decisions stored before it without their searched
    /// text (a search would miss them) or the vocabulary's counts as they had grown, a text
    /// other than `lower()` of the eight values joined by line feeds (the vocabulary of
    /// migration 0028 and the index would disagree with it),
    /// or the pg_trgm index left on the old expression (every search would scan) or not made
    /// again at a start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searched_text_is_stored_for_decisions_written_before_it() {
        let Some((admin, b, schema)) = scratch("searchtext").await else {
            return;
        };
        let before = POSTGRES.iter().position(|m| m.version == 29).unwrap();
        b.migrate_through(&POSTGRES[..before]).await.unwrap();
        let c = b.client().await.unwrap();
        for (id, name, upn, sid) in [
            ("u1", "Smith, Ann", Some("ANN.SMITH@contoso.test"), None),
            ("u2", "=Ödegård \"Åse\"", None, Some("S-1-5-21-9")),
            ("u3", "ΟΔΟΣ", Some("x@y"), Some("S-1-5-21-10")),
        ] {
            c.execute(
                "INSERT INTO decisions (profile, kind, source_id, status, source_name, source_upn, source_sid, target_name, hash, first_cycle, changed_cycle) \
                 VALUES ('users', 'user', $1, 'matched', $2, $3, $4, $2, 1, 1, 1)",
                &[&id, &name, &upn, &sid],
            )
            .await
            .unwrap();
        }
        // A count grown by upserts that never took theirs back (before 0029).
        c.batch_execute("INSERT INTO decisions_search_terms VALUES ('zzz', 5)")
            .await
            .unwrap();
        drop(c);
        b.migrate_through(POSTGRES).await.unwrap();
        let c = b.client().await.unwrap();
        let counted: Vec<(String, i64)> = c
            .query(
                "SELECT term, entries FROM decisions_search_terms WHERE term IN ('zzz', 'ann', 's-1') ORDER BY term",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let s = |t: &str, n: i64| (t.to_string(), n);
        assert_eq!(counted, [s("ann", 1), s("s-1", 2)], "counted again");
        let same: i64 = c
            .query_one(
                concat!(
                    "SELECT count(*) FROM decisions WHERE search_text = ",
                    search_text!()
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(same, 3, "every row's text is the expression's");
        let find = |term: &'static str| {
            let c = &c;
            async move {
                let q = numbered(&format!(
                    "SELECT source_id FROM decisions WHERE {} ORDER BY source_id",
                    <Postgres as Backend>::DECISION_SEARCH.unwrap()
                ));
                let rows = c.query(&q, &[&Postgres::search_param(term)]).await.unwrap();
                rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
            }
        };
        assert_eq!(find("SMITH, a").await, ["u1"]);
        assert_eq!(find("ann.smith@").await, ["u1"]);
        assert_eq!(find("=ödegård \"").await, ["u2"]);
        assert_eq!(find("s-1-5-21-1").await, ["u3"]);
        assert_eq!(find("οδοσ").await, ["u3"]);
        let on_the_column = || async {
            let def: String = c
                .query_one(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'decisions_search'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert!(def.contains("gin (search_text "), "{def}");
        };
        on_the_column().await;
        // A start with the index missing makes it again, on the column.
        c.batch_execute("DROP INDEX decisions_search")
            .await
            .unwrap();
        b.ensure_search_index().await.unwrap();
        on_the_column().await;
        drop(c);
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    /// Catches: whether a directory holds devices answered by a sequential scan. With a
    /// directory's objects written after another's (as a cycle writes the source's, then the
    /// target's), PostgreSQL expected the first of many matches soon and read every other row
    /// before it (1.6 million rows, 613 ms with a cold cache, in the agents list at 100,000
    /// agents); `query::HAS_OBJECTS` must read the unique key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn has_objects_reads_the_directory_s_key() {
        let Some((admin, b, schema)) = scratch("hasobjects").await else {
            return;
        };
        b.migrate_through(POSTGRES).await.unwrap();
        let c = b.client().await.unwrap();
        // 100,000 users of one directory, then 20,000 devices of another; statistics taken.
        c.batch_execute(
            "INSERT INTO objects (directory, kind, id, name, hash, id_key, name_key) \
             SELECT 'contoso', 'user', 'u-' || i, 'Smith, Ann ' || i, 0, i, i FROM generate_series(1, 100000) i; \
             INSERT INTO objects (directory, kind, id, name, hash, id_key, name_key) \
             SELECT 'fabrikam', 'device', 'd-' || i, 'PC-' || i, 0, i, i FROM generate_series(1, 20000) i; \
             ANALYZE objects",
        )
        .await
        .unwrap();
        for (directory, found) in [("fabrikam", true), ("contoso", false), ("nowhere", false)] {
            let plan: Vec<String> = c
                .query(
                    &format!("EXPLAIN {}", numbered(query::HAS_OBJECTS)),
                    &[&directory, &"device"],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(
                plan.iter()
                    .any(|l| l.contains("Index") && l.contains("objects_directory_kind_id_key"))
                    && !plan.iter().any(|l| l.contains("Seq Scan")),
                "{directory}: {plan:#?}"
            );
            let rows = c
                .query(
                    numbered(query::HAS_OBJECTS).as_str(),
                    &[&directory, &"device"],
                )
                .await
                .unwrap();
            assert_eq!(!rows.is_empty(), found, "{directory}");
        }
        drop(c);
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    /// Catches: migration 0025 on PostgreSQL leaving an upgraded database's agents without their
    /// host-name key, keeping claims a "C"-ctype database's `lower()` computed ("Åsa-pc"),
    /// failing on two live agents that only Rust's lower case makes one computer, keeping a batch
    /// key another lower case wrote, or joining key columns of two collations.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn host_keys_are_written_in_rust_when_an_older_database_upgrades() {
        let Some((admin, b, schema)) = scratch("hostkeys").await else {
            return;
        };
        let before = POSTGRES
            .iter()
            .position(|m| m.version == crate::migrate::HOST_KEYS)
            .unwrap();
        b.migrate_through(&POSTGRES[..before]).await.unwrap();
        let c = b.client().await.unwrap();
        // As the code before 0025 wrote them on a database whose ctype is "C" (`lower()` folds
        // ASCII only); batch keys by Rust's lower case.
        for (id, host, state) in [
            (1i64, "ÅSA-PC", "enrolled"),
            (2, "åsa-pc", "enrolled"),
            (3, "ÖREBRO-01", "replaced"),
            (4, "PC-1", "running"),
        ] {
            c.execute(
                "INSERT INTO agents (id, device_id, hostname, os, facts, node_hash, psk_id, enrolled_at, last_contact, agent_version, state, hostname_claim) \
                 VALUES ($1, $2, $3, 'windows', '{}', $4, 1, 1, 1, '0.1.0', $5, CASE WHEN $5 = 'replaced' THEN NULL ELSE lower($3 COLLATE \"C\") END)",
                &[&id, &format!("d-{id}"), &host, &format!("n-{id}"), &state],
            )
            .await
            .unwrap();
        }
        for computer in ["αθηνας", "örebro-01", "åsa-pc"] {
            c.execute(
                "INSERT INTO batch_computers (computer, name, batch, added_at) VALUES ($1, $1, 'w', 1)",
                &[&computer],
            )
            .await
            .unwrap();
        }
        drop(c);
        b.migrate_through(POSTGRES).await.unwrap();
        let c = b.client().await.unwrap();
        let agents: Vec<(i64, String, Option<String>)> = c
            .query(
                "SELECT id, host_key, hostname_claim FROM agents ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
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
            .query(
                "SELECT computer FROM batch_computers ORDER BY computer",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(computers, ["åsa-pc", "örebro-01", "αθηνασ"]);
        let in_batch: i64 = c
            .query_one(
                &numbered(&format!(
                    "SELECT count(*) FROM agents WHERE {}",
                    query::IN_BATCH
                )),
                &[&"w"],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(in_batch, 3, "both ÅSA-PC agents and the replaced ÖREBRO-01");
        let live: i64 = c
            .query_one(
                "SELECT count(*) FROM batch_computers bc JOIN agents a ON a.hostname_claim = bc.computer",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            live, 1,
            "the live claims join the batch keys (one collation)"
        );
        drop(c);
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}

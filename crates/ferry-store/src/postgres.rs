//! The PostgreSQL store, for several servers sharing one database.
//!
//! Same SQL as SQLite where the dialects agree (see `query.rs`); bulk writes of a cycle go through
//! `UNNEST` arrays in batches, one round trip per few thousand rows. Migrations run under a
//! transaction-scoped advisory lock so that servers starting together migrate once.

use crate::migrate::POSTGRES;
use crate::query::{self, Val, numbered};
use crate::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ferry_core::agent::{AgentEvent, HarvestedProfile};
use ferry_core::model::lookup_key;
use std::str::FromStr;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

const BATCH: usize = 5000;
const MIGRATION_LOCK: i64 = 0x6665_7272_795f_6d69; // "ferry_mi"

pub struct PgStore {
    pool: Pool,
}

fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

fn params(vals: &[Val]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    vals.iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                Val::Text(s) => Box::new(s.clone()),
                Val::Int(i) => Box::new(*i),
            }
        })
        .collect()
}

fn refs(p: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn cycle_row(r: &Row) -> Result<CycleInfo> {
    Ok(CycleInfo {
        id: r.try_get(0)?,
        profile: r.try_get(1)?,
        trigger: r.try_get(2)?,
        slot: r.try_get(3)?,
        server: r.try_get(4)?,
        status: r.try_get(5)?,
        phase: r.try_get(6)?,
        started_at: r.try_get(7)?,
        finished_at: r.try_get(8)?,
        counts: r
            .try_get::<_, Option<String>>(9)?
            .map(|s| codec::json(&s))
            .transpose()?,
        plan_hash: r.try_get(10)?,
        export: r.try_get(11)?,
        error: r.try_get(12)?,
    })
}

fn decision_row(r: &Row) -> Result<DecisionRow> {
    let u =
        |i: usize| -> Result<Option<u32>> { Ok(codec::u32_opt(r.try_get::<_, Option<i64>>(i)?)) };
    Ok(DecisionRow {
        profile: r.try_get(0)?,
        kind: codec::kind(r.try_get(1)?)?,
        source_id: r.try_get(2)?,
        status: codec::status(r.try_get(3)?)?,
        rule: r.try_get::<_, Option<i64>>(4)?.map(|v| v as u32),
        source_name: r.try_get(5)?,
        source_upn: r.try_get(6)?,
        source_mail: r.try_get(7)?,
        source_sid: r.try_get(8)?,
        source_uid: u(9)?,
        source_gid: u(10)?,
        target_id: r.try_get(11)?,
        target_name: r.try_get(12)?,
        target_upn: r.try_get(13)?,
        target_mail: r.try_get(14)?,
        target_sid: r.try_get(15)?,
        target_uid: u(16)?,
        target_gid: u(17)?,
        candidates: codec::opt_json(r.try_get(18)?)?,
        first_cycle: r.try_get(19)?,
        changed_cycle: r.try_get(20)?,
    })
}

fn object_row(r: &Row) -> Result<StoredObject> {
    let mut o = DirObject::new(
        codec::kind(r.try_get(1)?)?,
        r.try_get::<_, String>(2)?,
        r.try_get::<_, String>(4)?,
    );
    o.dn = r.try_get(3)?;
    o.upn = r.try_get(5)?;
    o.mail = r.try_get(6)?;
    o.sid = r.try_get(7)?;
    o.uid_number = codec::u32_opt(r.try_get(8)?);
    o.gid_number = codec::u32_opt(r.try_get(9)?);
    o.members = codec::opt_json(r.try_get(10)?)?;
    o.attrs = codec::opt_json(r.try_get(11)?)?;
    Ok(StoredObject {
        directory: r.try_get(0)?,
        object: o,
    })
}

fn log_row(r: &Row) -> Result<StoredLog> {
    Ok(StoredLog {
        id: r.try_get(0)?,
        at: r.try_get(1)?,
        cycle_id: r.try_get(2)?,
        profile: r.try_get(3)?,
        entry: LogEntry {
            level: codec::level(r.try_get(5)?)?,
            code: r.try_get(6)?,
            directory: r.try_get(4)?,
            object_kind: r
                .try_get::<_, Option<String>>(7)?
                .map(|k| codec::kind(&k))
                .transpose()?,
            object_id: r.try_get(8)?,
            object_name: r.try_get(9)?,
            message: r.try_get(10)?,
        },
    })
}

async fn insert_logs(
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

impl PgStore {
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
        let store = PgStore { pool };
        store.migrate().await?;
        // Open some connections now: a console page's first render sends up to ten requests at
        // once, and setting up ten connections then cost it 150–200 ms.
        let mut warm = Vec::with_capacity(WARM_CONNECTIONS);
        for _ in 0..WARM_CONNECTIONS {
            warm.push(store.client().await?);
        }
        drop(warm);
        Ok(store)
    }

    /// Whether this store's connections are encrypted, as the server sees them (`pg_stat_ssl`).
    pub async fn tls_in_use(&self) -> Result<bool> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => pool_err(other),
        })
    }

    async fn migrate(&self) -> Result<()> {
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
        let known = POSTGRES.last().map_or(0, |m| m.version);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for m in POSTGRES.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql).await?;
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

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn put_token(&self, name: &str, hash: &str, role: &str, now: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO tokens (name, hash, role, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, role = excluded.role, created_at = excluded.created_at, last_used_at = NULL",
                &[&name, &hash, &role, &now],
            )
            .await?;
        Ok(())
    }

    async fn add_enrolment_token(&self, t: &NewEnrolmentToken) -> Result<EnrolmentToken> {
        let row = self
            .client()
            .await?
            .query_one(
                &numbered(query::INSERT_ENROLMENT),
                &[
                    &t.directory,
                    &t.kind,
                    &t.file_name,
                    &t.package_upn,
                    &t.content,
                    &t.sha256,
                    &t.created_at,
                    &t.expires_at,
                    &t.uploaded_at,
                    &t.size,
                ],
            )
            .await?;
        let id: i64 = row.try_get(0)?;
        self.enrolment_token_content(id)
            .await?
            .map(|(t, _)| t)
            .ok_or_else(|| StoreError::Corrupt(format!("enrolment token {id} vanished")))
    }

    async fn enrolment_tokens(&self, directory: Option<&str>) -> Result<Vec<EnrolmentToken>> {
        let rows = self
            .client()
            .await?
            .query(&numbered(query::LIST_ENROLMENT), &[&directory, &directory])
            .await?;
        rows.iter().map(enrolment_row).collect()
    }

    async fn enrolment_token_content(&self, id: i64) -> Result<Option<(EnrolmentToken, Vec<u8>)>> {
        let row = self
            .client()
            .await?
            .query_opt(&numbered(query::GET_ENROLMENT), &[&id])
            .await?;
        row.map(|r| Ok((enrolment_row(&r)?, r.try_get::<_, Vec<u8>>(11)?)))
            .transpose()
    }

    async fn revoke_enrolment_token(&self, id: i64, now: i64) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(&numbered(query::REVOKE_ENROLMENT), &[&now, &id])
            .await?;
        Ok(n == 1)
    }

    async fn set_enrolment_token_content(&self, id: i64, content: &[u8]) -> Result<()> {
        self.client()
            .await?
            .execute(&numbered(query::SET_ENROLMENT_CONTENT), &[&content, &id])
            .await?;
        Ok(())
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String> {
        let c = self.client().await?;
        c.execute(&numbered(query::CLAIM_META), &[&key, &value])
            .await?;
        Ok(c.query_one(&numbered(query::GET_META), &[&key])
            .await?
            .get(0))
    }

    async fn add_psk(
        &self,
        name: &str,
        hash: &str,
        uses: Option<i64>,
        device: Option<&str>,
        now: i64,
    ) -> Result<Psk> {
        let row = self
            .client()
            .await?
            .query_one(
                &format!(
                    "{} RETURNING {}",
                    numbered(query::INSERT_PSK),
                    query::PSK_COLS
                ),
                &[&name, &hash, &uses, &device, &now],
            )
            .await?;
        psk_row(&row)
    }

    async fn use_psk(&self, id: i64) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(&numbered(query::USE_PSK), &[&id])
            .await?;
        Ok(n == 1)
    }

    async fn psks(&self) -> Result<Vec<Psk>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {} FROM psks ORDER BY id", query::PSK_COLS),
                &[],
            )
            .await?;
        rows.iter().map(psk_row).collect()
    }

    async fn psk_by_hash(&self, hash: &str) -> Result<Option<Psk>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {} FROM psks WHERE hash = $1", query::PSK_COLS),
                &[&hash],
            )
            .await?;
        row.as_ref().map(psk_row).transpose()
    }

    async fn retire_psk(&self, name: &str, now: i64) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE psks SET retired_at = $1 WHERE name = $2 AND retired_at IS NULL",
                &[&now, &name],
            )
            .await?;
        Ok(n == 1)
    }

    async fn enroll_agent(&self, e: &Enrollment<'_>) -> Result<AgentRecord> {
        let facts =
            serde_json::to_string(e.facts).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let row = tx
            .query_opt(
                &numbered(query::UPSERT_AGENT),
                &[
                    &e.facts.device_id,
                    &e.facts.hostname,
                    &e.facts.os,
                    &facts,
                    &e.node_hash,
                    &e.psk_id,
                    &e.now,
                    &e.now,
                    &e.address,
                    &e.facts.agent_version,
                    &e.facts.hostname,
                    &e.replaces,
                    &0i64,
                ],
            )
            .await
            .map_err(|x| claim_taken(x, &e.facts.device_id))?
            .ok_or_else(|| StoreError::ClaimChanged(e.facts.device_id.clone()))?;
        let id: i64 = row.try_get(0)?;
        tx.execute("DELETE FROM agent_profiles WHERE agent_id = $1", &[&id])
            .await?;
        let ins = tx.prepare(&numbered(query::INSERT_PROFILE)).await?;
        for p in e.profiles {
            let body = serde_json::to_string(p).unwrap_or_default();
            tx.execute(&ins, &[&id, &p.name, &body]).await?;
        }
        let row = tx
            .query_one(
                &format!("SELECT {} FROM agents WHERE id = $1", query::AGENT_COLS),
                &[&id],
            )
            .await?;
        let rec = agent_row(&row)?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn agent_by_node_hash(&self, hash: &str) -> Result<Option<AgentRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {} FROM agents WHERE node_hash = $1",
                query::AGENT_COLS
            ))
            .await?;
        let row = c.query_opt(&st, &[&hash]).await?;
        row.as_ref().map(agent_row).transpose()
    }

    async fn agents_claimed(
        &self,
        device_id: &str,
        hostname: &str,
    ) -> Result<Vec<(AgentRecord, String)>> {
        let rows = self
            .client()
            .await?
            .query(&numbered(query::AGENTS_CLAIMED), &[&device_id, &hostname])
            .await?;
        rows.iter()
            .map(|r| Ok((agent_row(r)?, r.try_get::<_, String>(12)?)))
            .collect()
    }

    async fn assign_run(&self, agent: i64, run: &str, steps: &[String]) -> Result<()> {
        let steps = serde_json::to_string(steps).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        self.client()
            .await?
            .execute(
                &numbered(query::ASSIGN_RUN),
                &[&run, &steps, &agent, &run, &steps],
            )
            .await?;
        Ok(())
    }

    async fn assigned_run(&self, agent: i64) -> Result<Option<(String, Vec<String>)>> {
        let row = self
            .client()
            .await?
            .query_opt(&numbered(query::ASSIGNED_RUN), &[&agent])
            .await?;
        let row = match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        };
        crate::assigned(row)
    }

    async fn add_enrollment_request(&self, r: &NewEnrollmentRequest<'_>) -> Result<i64> {
        let e = &r.enrollment;
        let facts =
            serde_json::to_string(e.facts).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        let profiles =
            serde_json::to_string(e.profiles).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        let row = self
            .client()
            .await?
            .query_one(
                &numbered(query::INSERT_REQUEST),
                &[
                    &e.facts.device_id,
                    &e.facts.hostname,
                    &facts,
                    &profiles,
                    &e.node_hash,
                    &e.psk_id,
                    &e.address,
                    &r.reason,
                    &r.conflict_agent_id,
                    &e.now,
                ],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn enrollment_requests(&self, state: Option<&str>) -> Result<Vec<EnrollmentRequest>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM enrollment_requests WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) ORDER BY id DESC LIMIT 1000",
                    query::REQUEST_COLS
                ),
                &[&state],
            )
            .await?;
        rows.iter().map(request_row).collect()
    }

    async fn enrollment_request_by_node_hash(
        &self,
        hash: &str,
    ) -> Result<Option<EnrollmentRequest>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {} FROM enrollment_requests WHERE node_hash = $1",
                    query::REQUEST_COLS
                ),
                &[&hash],
            )
            .await?;
        row.as_ref().map(request_row).transpose()
    }

    async fn decide_enrollment(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        now: i64,
    ) -> Result<Option<(EnrollmentRequest, Option<AgentRecord>)>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let state = if approve { "approved" } else { "refused" };
        let Some(row) = tx
            .query_opt(&numbered(query::DECIDE_REQUEST), &[&state, &by, &now, &id])
            .await?
        else {
            return Ok(None);
        };
        let node_hash: String = row.try_get(0)?;
        let profiles: String = row.try_get(1)?;
        let req = request_row(
            &tx.query_one(
                &format!(
                    "SELECT {} FROM enrollment_requests WHERE id = $1",
                    query::REQUEST_COLS
                ),
                &[&id],
            )
            .await?,
        )?;
        let mut agent = None;
        if approve {
            let profiles: Vec<ferry_core::agent::HarvestedProfile> =
                serde_json::from_str(&profiles)
                    .map_err(|x| StoreError::Corrupt(format!("request {id} profiles: {x}")))?;
            let facts = serde_json::to_string(&req.facts)
                .map_err(|x| StoreError::Corrupt(x.to_string()))?;
            tx.execute(
                &numbered(query::REPLACE_AGENTS),
                &[&req.hostname, &req.device_id],
            )
            .await?;
            let row = tx
                .query_one(
                    &numbered(query::UPSERT_AGENT),
                    &[
                        &req.device_id,
                        &req.hostname,
                        &req.facts.os,
                        &facts,
                        &node_hash,
                        &req.psk_id,
                        &now,
                        &now,
                        &req.address,
                        &req.facts.agent_version,
                        &req.hostname,
                        &None::<&str>,
                        &1i64,
                    ],
                )
                .await?;
            let aid: i64 = row.try_get(0)?;
            tx.execute("DELETE FROM agent_profiles WHERE agent_id = $1", &[&aid])
                .await?;
            let ins = tx.prepare(&numbered(query::INSERT_PROFILE)).await?;
            for p in &profiles {
                let body = serde_json::to_string(p).unwrap_or_default();
                tx.execute(&ins, &[&aid, &p.name, &body]).await?;
            }
            let row = tx
                .query_one(
                    &format!("SELECT {} FROM agents WHERE id = $1", query::AGENT_COLS),
                    &[&aid],
                )
                .await?;
            agent = Some(agent_row(&row)?);
        }
        tx.commit().await?;
        Ok(Some((req, agent)))
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {} FROM agents ORDER BY id", query::AGENT_COLS),
                &[],
            )
            .await?;
        rows.iter().map(agent_row).collect()
    }

    async fn agent(&self, id: i64) -> Result<Option<AgentRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {} FROM agents WHERE id = $1", query::AGENT_COLS),
                &[&id],
            )
            .await?;
        row.as_ref().map(agent_row).transpose()
    }

    async fn agents_page(&self, q: &AgentQuery) -> Result<Vec<AgentRecord>> {
        let (sql, vals) = query::agents(q, false);
        let p = params(&vals);
        let rows = self
            .client()
            .await?
            .query(&numbered(&sql), &refs(&p))
            .await?;
        rows.iter().map(agent_row).collect()
    }

    async fn count_agents(&self, q: &AgentQuery) -> Result<i64> {
        let (sql, vals) = query::agents(q, true);
        let p = params(&vals);
        Ok(self
            .client()
            .await?
            .query_one(&numbered(&sql), &refs(&p))
            .await?
            .try_get(0)?)
    }

    async fn agent_states(&self, batch: Option<&str>) -> Result<Vec<(String, i64)>> {
        let (sql, vals) = query::agent_states(batch);
        let p = params(&vals);
        let rows = self
            .client()
            .await?
            .query(&numbered(&sql), &refs(&p))
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn record_contacts(&self, contacts: &[Contact]) -> Result<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        // One row per agent (its latest contact): UPDATE … FROM applies one arbitrary row per target.
        let mut latest: Vec<&Contact> = Vec::with_capacity(contacts.len());
        let mut sorted: Vec<&Contact> = contacts.iter().collect();
        sorted.sort_by_key(|k| (k.agent_id, k.at));
        for k in sorted {
            match latest.last_mut() {
                Some(l) if l.agent_id == k.agent_id => *l = k,
                _ => latest.push(k),
            }
        }
        let contacts = latest;
        let ids: Vec<i64> = contacts.iter().map(|k| k.agent_id).collect();
        let ats: Vec<i64> = contacts.iter().map(|k| k.at).collect();
        let addrs: Vec<Option<String>> = contacts.iter().map(|k| k.address.clone()).collect();
        let states: Vec<Option<String>> = contacts.iter().map(|k| k.state.clone()).collect();
        let versions: Vec<Option<String>> =
            contacts.iter().map(|k| k.agent_version.clone()).collect();
        self.client()
            .await?
            .execute(
                "UPDATE agents SET last_contact = u.at, last_address = COALESCE(u.address, agents.last_address), \
                 state = COALESCE(u.state, agents.state), agent_version = COALESCE(u.version, agents.agent_version) \
                 FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[]) AS u(id, at, address, state, version) \
                 WHERE agents.id = u.id AND agents.last_contact <= u.at",
                &[&ids, &ats, &addrs, &states, &versions],
            )
            .await?;
        Ok(())
    }

    async fn set_agent_profiles(&self, agent: i64, profiles: &[HarvestedProfile]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("DELETE FROM agent_profiles WHERE agent_id = $1", &[&agent])
            .await?;
        let ins = tx.prepare(&numbered(query::INSERT_PROFILE)).await?;
        for p in profiles {
            let body = serde_json::to_string(p).unwrap_or_default();
            tx.execute(&ins, &[&agent, &p.name, &body]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn agent_profiles(&self, agent: i64) -> Result<Vec<HarvestedProfile>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT body FROM agent_profiles WHERE agent_id = $1 ORDER BY name",
                &[&agent],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let b: String = r.try_get(0)?;
                serde_json::from_str(&b).map_err(|e| StoreError::Corrupt(format!("profile: {e}")))
            })
            .collect()
    }

    async fn add_agent_events(
        &self,
        agent: i64,
        run: &str,
        events: &[AgentEvent],
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let ins = tx.prepare(&numbered(query::INSERT_EVENT)).await?;
        for e in events {
            let progress = e.progress.map(i64::from);
            tx.execute(
                &ins,
                &[
                    &agent, &run, &now, &e.at, &e.step, &e.status, &e.message, &progress,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn agent_events(&self, agent: i64, run: Option<&str>) -> Result<Vec<StoredEvent>> {
        let rows = self
            .client()
            .await?
            .query(&numbered(query::EVENTS), &[&agent, &run, &run])
            .await?;
        rows.iter().map(event_row).collect()
    }

    async fn latest_events_of(&self, agents: &[i64]) -> Result<Vec<StoredEvent>> {
        if agents.is_empty() {
            return Ok(vec![]);
        }
        let (sql, vals) = query::latest_events_of(agents);
        let p = params(&vals);
        let rows = self
            .client()
            .await?
            .query(&numbered(&sql), &refs(&p))
            .await?;
        rows.iter().map(event_row).collect()
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
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                &numbered(query::INSERT_LOG_CHUNK),
                &[&agent, &run, &start, &now, &text],
            )
            .await?;
        if n == 0 {
            return Ok(LogAdd::Resend);
        }
        tx.execute(&numbered(query::LOG_BYTES_ROW), &[&agent, &run])
            .await?;
        let room = tx
            .query_opt(
                &numbered(query::ADD_LOG_BYTES),
                &[&len, &agent, &run, &len, &cap],
            )
            .await?;
        if room.is_none() {
            // Over the cap: the chunk goes back with the rollback.
            return Ok(LogAdd::OverCap);
        }
        tx.commit().await?;
        Ok(LogAdd::Stored)
    }

    async fn agent_log(&self, agent: i64, run: &str) -> Result<String> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT text FROM agent_logs WHERE agent_id = $1 AND run = $2 ORDER BY start",
                &[&agent, &run],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<_, String>(0)?))
            .collect::<Result<Vec<_>>>()
            .map(|v| v.concat())
    }

    async fn change_documents(
        &self,
        kind: DocKind,
        puts: &[(String, String)],
        deletes: &[String],
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let put = tx
            .prepare(&numbered(&query::put_document(kind.table())))
            .await?;
        for (name, body) in puts {
            tx.execute(&put, &[name, body, &now, &now]).await?;
        }
        let del = tx
            .prepare(&numbered(&query::delete_document(kind.table())))
            .await?;
        for name in deletes {
            tx.execute(&del, &[name]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn swap_document(
        &self,
        kind: DocKind,
        name: &str,
        old: &str,
        new: &str,
        now: i64,
    ) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                &numbered(&query::swap_document(kind.table())),
                &[&new, &now, &name, &old],
            )
            .await?;
        Ok(n == 1)
    }

    async fn documents(&self, kind: DocKind) -> Result<Vec<(String, String)>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT name, body FROM {} ORDER BY name", kind.table()),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn delete_document(&self, kind: DocKind, name: &str) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(&numbered(&query::delete_document(kind.table())), &[&name])
            .await?;
        if kind == DocKind::Batch {
            tx.execute("DELETE FROM batch_computers WHERE batch = $1", &[&name])
                .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn put_operator_password(
        &self,
        name: &str,
        role: &str,
        hash: &str,
        now: i64,
    ) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO operator_passwords (name, role, hash, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash, created_at = excluded.created_at",
                &[&name, &role, &hash, &now],
            )
            .await?;
        Ok(())
    }

    async fn operator_password(&self, name: &str) -> Result<Option<(String, String)>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT role, hash FROM operator_passwords WHERE name = $1",
                &[&name],
            )
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    async fn touch_token(&self, hash: &str, now: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE tokens SET last_used_at = $1 WHERE hash = $2",
                &[&now, &hash],
            )
            .await?;
        Ok(())
    }

    async fn delete_token(&self, name: &str) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute("DELETE FROM tokens WHERE name = $1", &[&name])
            .await?;
        Ok(n > 0)
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>> {
        let rows = self
            .client()
            .await?
            .query(&numbered(query::OPERATORS), &[])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OperatorRecord {
                    name: r.try_get(0)?,
                    role: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    has_password: r.try_get(3)?,
                    has_session: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn delete_operator(&self, name: &str) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let session = format!("session:{name}");
        let n = tx
            .execute("DELETE FROM tokens WHERE name = $1", &[&name])
            .await?;
        let p = tx
            .execute("DELETE FROM operator_passwords WHERE name = $1", &[&name])
            .await?;
        tx.execute("DELETE FROM tokens WHERE name = $1", &[&session])
            .await?;
        tx.commit().await?;
        Ok(n + p > 0)
    }

    async fn sign_in_failures(&self, key: &str) -> Result<Option<(i64, i64)>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT failures, last_at FROM sign_in_failures WHERE key = $1",
                &[&key],
            )
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    async fn add_sign_in_failure(&self, key: &str, now: i64) -> Result<(i64, i64)> {
        let r = self
            .client()
            .await?
            .query_one(&numbered(query::ADD_SIGN_IN_FAILURE), &[&key, &now])
            .await?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }

    async fn prune_sign_in_failures(&self, before: i64) -> Result<u64> {
        Ok(self
            .client()
            .await?
            .execute(
                "DELETE FROM sign_in_failures WHERE last_at < $1",
                &[&before],
            )
            .await?)
    }

    async fn clear_sign_in_failures(&self, key: &str) -> Result<()> {
        self.client()
            .await?
            .execute("DELETE FROM sign_in_failures WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }

    async fn put_env_records(&self, env: &str, records: &[EnvRecord]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        for chunk in records.chunks(10_000) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
            let owners: Vec<&str> = chunk.iter().map(|r| r.owner.as_str()).collect();
            let created: Vec<&str> = chunk.iter().map(|r| r.created_by.as_str()).collect();
            let modified: Vec<&str> = chunk.iter().map(|r| r.modified_by.as_str()).collect();
            tx.execute(
                "INSERT INTO env_records (env, id, owner, created_by, modified_by) \
                 SELECT $1, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[]) \
                 ON CONFLICT (env, id) DO UPDATE SET owner = excluded.owner, created_by = excluded.created_by, modified_by = excluded.modified_by",
                &[&env, &ids, &owners, &created, &modified],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn env_records(&self, env: &str, offset: i64, limit: i64) -> Result<Vec<EnvRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, owner, created_by, modified_by FROM env_records WHERE env = $1 ORDER BY id LIMIT $2 OFFSET $3",
                &[&env, &limit, &offset],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EnvRecord {
                    id: r.try_get(0)?,
                    owner: r.try_get(1)?,
                    created_by: r.try_get(2)?,
                    modified_by: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn count_env_records(&self, env: &str) -> Result<i64> {
        let row = self
            .client()
            .await?
            .query_one("SELECT COUNT(*) FROM env_records WHERE env = $1", &[&env])
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn hand_over(&self, h: &HandOver<'_>) -> Result<Option<u64>> {
        let src: Vec<String> = h.remap.iter().map(|(s, _)| s.to_lowercase()).collect();
        let dst: Vec<&str> = h.remap.iter().map(|(_, d)| d.as_str()).collect();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let swapped = tx
            .execute(
                &numbered(&query::swap_document(DocKind::EnvMove.table())),
                &[&h.move_body, &h.now, &h.move_name, &h.move_read],
            )
            .await?;
        if swapped != 1 {
            return Ok(None);
        }
        let put = tx
            .prepare(&numbered(&query::put_document(
                DocKind::Environment.table(),
            )))
            .await?;
        for (name, body) in h.environments {
            tx.execute(&put, &[name, body, &h.now, &h.now]).await?;
        }
        let n = tx
            .execute(
                "WITH m AS (SELECT DISTINCT ON (s) s AS src, d AS dst FROM UNNEST($2::TEXT[], $3::TEXT[]) AS t(s, d)) \
                 UPDATE env_records SET \
                   owner = COALESCE((SELECT dst FROM m WHERE m.src = lower(owner)), owner), \
                   created_by = COALESCE((SELECT dst FROM m WHERE m.src = lower(created_by)), created_by), \
                   modified_by = COALESCE((SELECT dst FROM m WHERE m.src = lower(modified_by)), modified_by) \
                 WHERE env = $1 AND (lower(owner) IN (SELECT src FROM m) OR lower(created_by) IN (SELECT src FROM m) \
                   OR lower(modified_by) IN (SELECT src FROM m))",
                &[&h.records_env, &src, &dst],
            )
            .await?;
        let e = h.audit;
        tx.execute(
            &numbered(query::INSERT_AUDIT),
            &[&e.at, &e.actor, &e.tenant, &e.action, &e.subject, &e.detail],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(n))
    }

    async fn add_audit(&self, e: &AuditEntry) -> Result<()> {
        self.client()
            .await?
            .execute(
                &numbered(query::INSERT_AUDIT),
                &[&e.at, &e.actor, &e.tenant, &e.action, &e.subject, &e.detail],
            )
            .await?;
        Ok(())
    }

    async fn audit(&self, tenant: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, at, actor, tenant, action, subject, detail FROM audit \
                 WHERE ($1::TEXT IS NULL OR tenant = $1) ORDER BY id DESC LIMIT $2",
                &[&tenant, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    tenant: r.try_get(3)?,
                    action: r.try_get(4)?,
                    subject: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect()
    }

    async fn add_batch_computers(
        &self,
        batch: &str,
        computers: &[String],
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Serialises membership changes so that two concurrent adds cannot both pass the check.
        tx.execute(
            "LOCK TABLE batch_computers IN SHARE ROW EXCLUSIVE MODE",
            &[],
        )
        .await?;
        let rows = tx
            .query(
                "SELECT computer, batch FROM batch_computers WHERE computer = ANY($1) AND batch <> $2 ORDER BY computer",
                &[&computers, &batch],
            )
            .await?;
        let conflicts: Vec<(String, String)> = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_>>()?;
        if !conflicts.is_empty() {
            return Ok(conflicts);
        }
        tx.execute(
            "INSERT INTO batch_computers (computer, batch, added_at) SELECT c, $2, $3 FROM UNNEST($1::TEXT[]) AS c ON CONFLICT DO NOTHING",
            &[&computers, &batch, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(conflicts)
    }

    async fn remove_batch_computers(&self, batch: &str, computers: &[String]) -> Result<u64> {
        Ok(self
            .client()
            .await?
            .execute(
                "DELETE FROM batch_computers WHERE batch = $1 AND computer = ANY($2)",
                &[&batch, &computers],
            )
            .await?)
    }

    async fn batch_computers(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT computer, batch, added_at FROM batch_computers ORDER BY batch, computer",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    async fn record_failed_comm(&self, f: &FailedComm, window_from: i64) -> Result<()> {
        let c = self.client().await?;
        let counted = c
            .execute(
                &numbered(query::COUNT_FAILED),
                &[
                    &f.at,
                    &f.reason,
                    &window_from,
                    &f.code,
                    &f.address,
                    &f.agent_id,
                    &f.device_id,
                ],
            )
            .await?;
        if counted == 0 {
            c.execute(
                &numbered(query::INSERT_FAILED),
                &[
                    &f.at,
                    &f.at,
                    &f.address,
                    &f.code,
                    &f.reason,
                    &f.agent_id,
                    &f.device_id,
                ],
            )
            .await?;
        }
        Ok(())
    }

    async fn prune_agent_history(
        &self,
        failed_before: Option<i64>,
        events_before: Option<i64>,
    ) -> Result<u64> {
        let c = self.client().await?;
        let mut n = 0;
        if let Some(t) = failed_before {
            n += c.execute(&numbered(query::PRUNE_FAILED), &[&t]).await?;
        }
        if let Some(t) = events_before {
            n += c.execute(&numbered(query::PRUNE_EVENTS), &[&t]).await?;
            n += c.execute(&numbered(query::PRUNE_LOGS), &[&t]).await?;
        }
        Ok(n)
    }

    async fn failed_comms(&self, limit: i64) -> Result<Vec<FailedComm>> {
        let rows = self
            .client()
            .await?
            .query(&numbered(query::FAILED), &[&limit])
            .await?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get(1)?;
                Ok(FailedComm {
                    id: r.try_get(0)?,
                    at,
                    address: r.try_get(2)?,
                    code: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    agent_id: r.try_get(5)?,
                    device_id: r.try_get(6)?,
                    count: r.try_get(7)?,
                    first_at: r.try_get::<_, Option<i64>>(8)?.unwrap_or(at),
                })
            })
            .collect()
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT name, role, created_at, last_used_at FROM tokens WHERE hash = $1",
                &[&hash],
            )
            .await?;
        row.map(|r| {
            Ok(TokenInfo {
                name: r.try_get(0)?,
                role: r.try_get(1)?,
                created_at: r.try_get(2)?,
                last_used_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                &numbered(query::TAKE_LEASE),
                &[&name, &holder, &(now + ttl_ms), &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(())
    }

    async fn recover_server(&self, server: &str, now: i64) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(&numbered(query::RELEASE_SERVER_LEASES), &[&server, &server])
            .await?;
        let n = tx
            .execute(&numbered(query::ABORT_SERVER_CYCLES), &[&now, &server])
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn claim_slot(&self, profile: &str, slot: i64, holder: &str, now: i64) -> Result<bool> {
        Ok(self
            .client()
            .await?
            .execute(
                &numbered(query::CLAIM_SLOT),
                &[&profile, &slot, &holder, &now],
            )
            .await?
            == 1)
    }

    async fn begin_cycle(
        &self,
        profile: &str,
        trigger: &str,
        slot: Option<i64>,
        server: &str,
        now: i64,
    ) -> Result<i64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(&numbered(query::ABORT_RUNNING), &[&now, &profile])
            .await?;
        let id: i64 = tx
            .query_one(
                &numbered(query::INSERT_CYCLE),
                &[&profile, &trigger, &slot, &server, &now],
            )
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(id)
    }

    async fn set_cycle_phase(&self, id: i64, phase: &str) -> Result<()> {
        self.client()
            .await?
            .execute("UPDATE cycles SET phase = $1 WHERE id = $2", &[&phase, &id])
            .await?;
        Ok(())
    }

    async fn fail_cycle(
        &self,
        id: i64,
        profile: &str,
        error: &str,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE cycles SET status = 'failed', finished_at = $1, error = $2 WHERE id = $3",
            &[&now, &error, &id],
        )
        .await?;
        insert_logs(&tx, Some(id), Some(profile), logs, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_sync(&self, s: SyncCommit<'_>) -> Result<()> {
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
            tx.execute(
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
                 target_gid = excluded.target_gid, candidates = excluded.candidates, hash = excluded.hash, changed_cycle = excluded.changed_cycle",
                &[
                    &plan.profile, &s.cycle_id, &t[0], &t[1], &t[2], &n[0], &t[3], &t[4], &t[5], &t[6], &n[1], &n[2], &t[7], &t[8], &t[9], &t[10],
                    &t[11], &n[3], &n[4], &t[12], &n[5],
                ],
            )
            .await?;
        }
        for chunk in s.decisions.removed.chunks(BATCH) {
            let kinds: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let ids: Vec<&str> = chunk.iter().map(|(_, i)| i.as_str()).collect();
            tx.execute(
                "DELETE FROM decisions d USING UNNEST($2::text[], $3::text[]) AS x(k, i) WHERE d.profile = $1 AND d.kind = x.k AND d.source_id = x.i",
                &[&plan.profile, &kinds, &ids],
            )
            .await?;
        }
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
        insert_logs(&tx, Some(s.cycle_id), Some(&plan.profile), s.logs, s.now).await?;
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

    async fn finish_cycle(
        &self,
        id: i64,
        profile: &str,
        export: &str,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE cycles SET status = 'succeeded', phase = 'done', finished_at = $1, export = $2 WHERE id = $3",
            &[&now, &export, &id],
        )
        .await?;
        insert_logs(&tx, Some(id), Some(profile), logs, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cycle(&self, id: i64) -> Result<Option<CycleInfo>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {} FROM cycles WHERE id = $1", query::CYCLE_COLS),
                &[&id],
            )
            .await?;
        row.map(|r| cycle_row(&r)).transpose()
    }

    async fn cycles(&self, profile: Option<&str>, limit: i64) -> Result<Vec<CycleInfo>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {} FROM cycles WHERE ($1::text IS NULL OR profile = $1) ORDER BY id DESC LIMIT $2", query::CYCLE_COLS),
                &[&profile, &limit],
            )
            .await?;
        rows.iter().map(cycle_row).collect()
    }

    async fn object_digest(&self, directory: &str) -> Result<FxHashMap<(ObjectKind, String), u64>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT kind, id, hash FROM objects WHERE directory = $1",
                &[&directory],
            )
            .await?;
        let mut out = FxHashMap::default();
        out.reserve(rows.len());
        for r in rows {
            out.insert(
                (codec::kind(r.try_get(0)?)?, r.try_get(1)?),
                r.try_get::<_, i64>(2)? as u64,
            );
        }
        Ok(out)
    }

    async fn load_objects(&self, directory: &str) -> Result<Vec<DirObject>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM objects WHERE directory = $1 ORDER BY kind, id",
                    query::OBJ_COLS
                ),
                &[&directory],
            )
            .await?;
        rows.iter()
            .map(|r| object_row(r).map(|s| s.object))
            .collect()
    }

    async fn directory_state(&self, directory: &str) -> Result<Option<DirectoryState>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT directory, watermark, last_full_import, last_import, objects FROM directory_state WHERE directory = $1", &[&directory])
            .await?;
        row.map(|r| {
            Ok(DirectoryState {
                directory: r.try_get(0)?,
                watermark: r.try_get(1)?,
                last_full_import: r.try_get(2)?,
                last_import: r.try_get(3)?,
                objects: r.try_get(4)?,
            })
        })
        .transpose()
    }

    async fn has_objects(&self, directory: &str, kind: ObjectKind) -> Result<bool> {
        let c = self.client().await?;
        let st = c.prepare_cached(&numbered(query::HAS_OBJECTS)).await?;
        Ok(c.query_opt(&st, &[&directory, &kind.as_str()])
            .await?
            .is_some())
    }

    async fn find_objects(&self, q: &str, limit: i64) -> Result<Vec<StoredObject>> {
        let key = lookup_key(q);
        let rows = self
            .client()
            .await?
            .query(
                &numbered(query::FIND_OBJECTS),
                &[&key, &key, &key, &key, &key, &limit],
            )
            .await?;
        let found: Vec<StoredObject> = rows.iter().map(object_row).collect::<Result<_>>()?;
        Ok(found
            .into_iter()
            .filter(|f| query::object_matches(&f.object, q))
            .collect())
    }

    async fn decision_digest(
        &self,
        profile: &str,
    ) -> Result<FxHashMap<DecisionKey, (u64, Status)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT kind, source_id, hash, status FROM decisions WHERE profile = $1",
                &[&profile],
            )
            .await?;
        let mut out = FxHashMap::default();
        out.reserve(rows.len());
        for r in rows {
            out.insert(
                (codec::kind(r.try_get(0)?)?, r.try_get(1)?),
                (
                    r.try_get::<_, i64>(2)? as u64,
                    codec::status(r.try_get(3)?)?,
                ),
            );
        }
        Ok(out)
    }

    async fn decisions(&self, q: &DecisionQuery) -> Result<Vec<DecisionRow>> {
        let (sql, vals) = query::decisions(q, false);
        let p = params(&vals);
        let rows = self
            .client()
            .await?
            .query(&numbered(&sql), &refs(&p))
            .await?;
        rows.iter().map(decision_row).collect()
    }

    async fn count_decisions(&self, q: &DecisionQuery) -> Result<i64> {
        let (sql, vals) = query::decisions(q, true);
        let p = params(&vals);
        Ok(self
            .client()
            .await?
            .query_one(&numbered(&sql), &refs(&p))
            .await?
            .try_get(0)?)
    }

    async fn decisions_for_object(&self, kind: ObjectKind, id: &str) -> Result<Vec<DecisionRow>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {} FROM decisions WHERE kind = $1 AND (source_id = $2 OR target_id = $2) ORDER BY profile", query::DEC_COLS),
                &[&kind.as_str(), &id],
            )
            .await?;
        rows.iter().map(decision_row).collect()
    }

    async fn plan(&self, profile: &str) -> Result<Option<PlanInfo>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT profile, cycle_id, hash, fingerprint, mode, rules, counts, created_at FROM plans WHERE profile = $1", &[&profile])
            .await?;
        row.map(|r| {
            Ok(PlanInfo {
                profile: r.try_get(0)?,
                cycle_id: r.try_get(1)?,
                hash: r.try_get(2)?,
                fingerprint: r.try_get(3)?,
                mode: r.try_get(4)?,
                rules: codec::json(r.try_get(5)?)?,
                counts: codec::json(r.try_get(6)?)?,
                created_at: r.try_get(7)?,
            })
        })
        .transpose()
    }

    async fn plan_profiles(&self) -> Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query("SELECT profile FROM plans ORDER BY profile", &[])
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn plan_writes(&self, profile: &str, offset: i64, limit: i64) -> Result<Vec<Write>> {
        let limit: Option<i64> = (limit > 0).then_some(limit);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT body FROM plan_writes WHERE profile = $1 ORDER BY seq LIMIT $2 OFFSET $3",
                &[&profile, &limit, &offset],
            )
            .await?;
        rows.iter().map(|r| codec::json(r.try_get(0)?)).collect()
    }

    async fn approve(&self, profile: &str, plan_hash: &str, by: &str, now: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO approvals (profile, plan_hash, approved_by, approved_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (profile) DO UPDATE SET plan_hash = excluded.plan_hash, approved_by = excluded.approved_by, approved_at = excluded.approved_at",
                &[&profile, &plan_hash, &by, &now],
            )
            .await?;
        Ok(())
    }

    async fn approval(&self, profile: &str) -> Result<Option<Approval>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT profile, plan_hash, approved_by, approved_at FROM approvals WHERE profile = $1", &[&profile])
            .await?;
        row.map(|r| {
            Ok(Approval {
                profile: r.try_get(0)?,
                plan_hash: r.try_get(1)?,
                approved_by: r.try_get(2)?,
                approved_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn history(&self, kind: ObjectKind, source_id: &str) -> Result<Vec<HistoryRow>> {
        let rows = self
            .client()
            .await?
            .query("SELECT profile, cycle_id, at, change FROM history WHERE kind = $1 AND source_id = $2 ORDER BY id", &[&kind.as_str(), &source_id])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    profile: r.try_get(0)?,
                    cycle_id: r.try_get(1)?,
                    at: r.try_get(2)?,
                    change: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn append_logs(
        &self,
        cycle_id: Option<i64>,
        profile: Option<&str>,
        logs: &[LogEntry],
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        insert_logs(&tx, cycle_id, profile, logs, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn logs(&self, q: &LogQuery) -> Result<Vec<StoredLog>> {
        let (sql, vals) = query::logs(q);
        let p = params(&vals);
        let rows = self
            .client()
            .await?
            .query(&numbered(&sql), &refs(&p))
            .await?;
        rows.iter().map(log_row).collect()
    }
}

fn enrolment_row(r: &Row) -> Result<EnrolmentToken> {
    Ok(EnrolmentToken {
        id: r.try_get(0)?,
        directory: r.try_get(1)?,
        kind: r.try_get(2)?,
        file_name: r.try_get(3)?,
        package_upn: r.try_get(4)?,
        sha256: r.try_get(5)?,
        size: r.try_get(6)?,
        created_at: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        uploaded_at: r.try_get(9)?,
        revoked_at: r.try_get(10)?,
    })
}

fn psk_row(r: &Row) -> Result<Psk> {
    Ok(Psk {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        created_at: r.try_get(2)?,
        retired_at: r.try_get(3)?,
        uses_left: r.try_get(4)?,
        device: r.try_get(5)?,
    })
}

fn request_row(r: &Row) -> Result<EnrollmentRequest> {
    let id: i64 = r.try_get(0)?;
    let facts: String = r.try_get(3)?;
    Ok(EnrollmentRequest {
        id,
        device_id: r.try_get(1)?,
        hostname: r.try_get(2)?,
        facts: serde_json::from_str(&facts)
            .map_err(|e| StoreError::Corrupt(format!("enrollment request {id} facts: {e}")))?,
        psk_id: r.try_get(4)?,
        address: r.try_get(5)?,
        reason: r.try_get(6)?,
        conflict_agent_id: r.try_get(7)?,
        state: r.try_get(8)?,
        created_at: r.try_get(9)?,
        decided_by: r.try_get(10)?,
        decided_at: r.try_get(11)?,
    })
}

fn agent_row(r: &Row) -> Result<AgentRecord> {
    let id: i64 = r.try_get(0)?;
    let facts: String = r.try_get(4)?;
    Ok(AgentRecord {
        id,
        device_id: r.try_get(1)?,
        hostname: r.try_get(2)?,
        os: r.try_get(3)?,
        facts: serde_json::from_str(&facts)
            .map_err(|e| StoreError::Corrupt(format!("agent {id} facts: {e}")))?,
        psk_id: r.try_get(5)?,
        enrolled_at: r.try_get(6)?,
        last_contact: r.try_get(7)?,
        last_address: r.try_get(8)?,
        agent_version: r.try_get(9)?,
        state: r.try_get(10)?,
        assigned_run: r.try_get(11)?,
    })
}

fn event_row(r: &Row) -> Result<StoredEvent> {
    Ok(StoredEvent {
        agent_id: r.try_get(0)?,
        run: r.try_get(1)?,
        received_at: r.try_get(2)?,
        event: AgentEvent {
            at: r.try_get(3)?,
            step: r.try_get(4)?,
            status: r.try_get(5)?,
            message: r.try_get(6)?,
            progress: r
                .try_get::<_, Option<i64>>(7)?
                .map(|p| p.clamp(0, 100) as u8),
        },
    })
}

/// A live agent of another device holds the host name (the unique `hostname_claim`): the
/// enrollment's claim changed under it, as with a device id taken in between.
fn claim_taken(e: tokio_postgres::Error, device_id: &str) -> StoreError {
    let taken = e.as_db_error().is_some_and(|d| {
        *d.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && d.constraint() == Some("agents_hostname_claim")
    });
    if taken {
        StoreError::ClaimChanged(device_id.to_string())
    } else {
        e.into()
    }
}

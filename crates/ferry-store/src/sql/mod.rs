//! The store, written once over a [`Backend`]: every method's SQL and every row decoder exists
//! here and nowhere else. One file per area trait; the backends (`sqlite.rs`, `postgres.rs`)
//! supply connections, transactions and a cycle's bulk write.

use crate::backend::{Backend, Conn, Row, Val};
use crate::*;

mod auth;
mod config;
mod devices;
mod election;
mod moves;
mod sync;

/// The store over backend `B` (`SqliteStore`, `PgStore`).
pub struct SqlStore<B: Backend> {
    pub(crate) b: B,
}

impl<B: Backend> SqlStore<B> {
    pub(crate) fn new(b: B) -> Self {
        SqlStore { b }
    }

    /// One statement, committed on its own.
    async fn exec(&self, sql: &str, params: &[Val<'_>]) -> Result<u64> {
        self.b.write().await?.execute(sql, params).await
    }

    /// Every row of a query, decoded.
    async fn rows<T: Send>(
        &self,
        sql: &str,
        params: &[Val<'_>],
        decode: impl Fn(&dyn Row) -> Result<T> + Send + Sync,
    ) -> Result<Vec<T>> {
        let mut c = self.b.read().await?;
        c.query(sql, params, decode).await
    }

    /// The first row of a query, decoded, if any.
    async fn row<T: Send>(
        &self,
        sql: &str,
        params: &[Val<'_>],
        decode: impl Fn(&dyn Row) -> Result<T> + Send + Sync,
    ) -> Result<Option<T>> {
        let mut c = self.b.read().await?;
        c.query_opt(sql, params, decode).await
    }
}

impl<B: Backend> Store for SqlStore<B> {
    fn backend(&self) -> &'static str {
        B::NAME
    }
}

/// JSON of a value the store wrote itself.
fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A cycle's log lines, in the transaction of `c`.
pub(crate) async fn insert_logs(
    c: &mut (dyn Conn + '_),
    cycle_id: Option<i64>,
    profile: Option<&str>,
    logs: &[LogEntry],
    now: i64,
) -> Result<()> {
    let rows: Vec<Vec<Val<'_>>> = logs
        .iter()
        .map(|l| {
            params![
                now,
                cycle_id,
                profile,
                &l.directory,
                l.level.as_str(),
                &l.code,
                l.object_kind.map(|k| k.as_str()),
                &l.object_id,
                &l.object_name,
                &l.message
            ]
            .to_vec()
        })
        .collect();
    c.execute_many(query::INSERT_LOG, &rows).await?;
    Ok(())
}

/// A unique constraint on the host-name claim refused the enrollment: a live agent of another
/// device holds the name, so the enrollment's claim changed under it.
fn claim_taken(e: StoreError, device_id: &str) -> StoreError {
    match &e {
        StoreError::Unique(what) if what.contains("hostname_claim") => {
            StoreError::ClaimChanged(device_id.to_string())
        }
        _ => e,
    }
}

fn cycle_row(r: &dyn Row) -> Result<CycleInfo> {
    Ok(CycleInfo {
        id: r.get(0)?,
        profile: r.get(1)?,
        trigger: r.get(2)?,
        slot: r.get(3)?,
        server: r.get(4)?,
        status: r.get(5)?,
        phase: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        counts: r.text(9)?.map(codec::json).transpose()?,
        plan_hash: r.get(10)?,
        export: r.get(11)?,
        error: r.get(12)?,
        progress: r.get(13)?,
    })
}

fn decision_row(r: &dyn Row) -> Result<DecisionRow> {
    Ok(DecisionRow {
        profile: r.get(0)?,
        kind: codec::kind(r.str(1)?)?,
        source_id: r.get(2)?,
        status: codec::status(r.str(3)?)?,
        rule: r.get::<Option<i64>>(4)?.map(|v| v as u32),
        rule_name: None,
        source_name: r.get(5)?,
        source_upn: r.get(6)?,
        source_mail: r.get(7)?,
        source_sid: r.get(8)?,
        source_uid: r.get(9)?,
        source_gid: r.get(10)?,
        target_id: r.get(11)?,
        target_name: r.get(12)?,
        target_upn: r.get(13)?,
        target_mail: r.get(14)?,
        target_sid: r.get(15)?,
        target_uid: r.get(16)?,
        target_gid: r.get(17)?,
        candidates: codec::opt_json(r.get(18)?)?,
        first_cycle: r.get(19)?,
        changed_cycle: r.get(20)?,
    })
}

fn object_row(r: &dyn Row) -> Result<StoredObject> {
    let mut o = DirObject::new(codec::kind(r.str(1)?)?, r.str(2)?, r.str(4)?);
    o.dn = r.get(3)?;
    o.upn = r.get(5)?;
    o.mail = r.get(6)?;
    o.sid = r.get(7)?;
    o.uid_number = r.get(8)?;
    o.gid_number = r.get(9)?;
    o.members = codec::opt_json(r.get(10)?)?;
    o.attrs = codec::opt_json(r.get(11)?)?;
    Ok(StoredObject {
        directory: r.get(0)?,
        object: o,
    })
}

fn log_row(r: &dyn Row) -> Result<StoredLog> {
    Ok(StoredLog {
        id: r.get(0)?,
        at: r.get(1)?,
        cycle_id: r.get(2)?,
        profile: r.get(3)?,
        entry: LogEntry {
            level: codec::level(r.str(5)?)?,
            code: r.get(6)?,
            directory: r.get(4)?,
            object_kind: r.text(7)?.map(codec::kind).transpose()?,
            object_id: r.get(8)?,
            object_name: r.get(9)?,
            message: r.get(10)?,
        },
    })
}

fn psk_row(r: &dyn Row) -> Result<Psk> {
    Ok(Psk {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        retired_at: r.get(3)?,
        uses_left: r.get(4)?,
        device: r.get(5)?,
    })
}

fn request_row(r: &dyn Row) -> Result<EnrollmentRequest> {
    let id: i64 = r.get(0)?;
    Ok(EnrollmentRequest {
        id,
        device_id: r.get(1)?,
        hostname: r.get(2)?,
        facts: serde_json::from_str(r.str(3)?)
            .map_err(|x| StoreError::Corrupt(format!("enrollment request {id} facts: {x}")))?,
        psk_id: r.get(4)?,
        address: r.get(5)?,
        reason: r.get(6)?,
        conflict_agent_id: r.get(7)?,
        state: r.get(8)?,
        created_at: r.get(9)?,
        decided_by: r.get(10)?,
        decided_at: r.get(11)?,
    })
}

fn agent_row(r: &dyn Row) -> Result<AgentRecord> {
    let id: i64 = r.get(0)?;
    Ok(AgentRecord {
        id,
        device_id: r.get(1)?,
        hostname: r.get(2)?,
        os: r.get(3)?,
        facts: serde_json::from_str(r.str(4)?)
            .map_err(|e| StoreError::Corrupt(format!("agent {id} facts: {e}")))?,
        psk_id: r.get(5)?,
        enrolled_at: r.get(6)?,
        last_contact: r.get(7)?,
        last_address: r.get(8)?,
        agent_version: r.get(9)?,
        state: r.get(10)?,
        assigned_run: r.get(11)?,
        // Written by this server from a checked request; unreadable means an older shape.
        preflight: r
            .get::<Option<String>>(12)?
            .and_then(|j| serde_json::from_str(&j).ok()),
        verification: r
            .get::<Option<String>>(13)?
            .and_then(|j| serde_json::from_str(&j).ok()),
    })
}

fn event_row(r: &dyn Row) -> Result<StoredEvent> {
    Ok(StoredEvent {
        agent_id: r.get(0)?,
        run: r.get(1)?,
        received_at: r.get(2)?,
        event: ferry_core::agent::AgentEvent {
            at: r.get(3)?,
            step: r.get(4)?,
            status: r.get(5)?,
            message: r.get(6)?,
            progress: r.get::<Option<i64>>(7)?.map(|p| p.clamp(0, 100) as u8),
        },
    })
}

fn enrolment_row(r: &dyn Row) -> Result<EnrolmentToken> {
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

fn audit_row(r: &dyn Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        tenant: r.get(3)?,
        action: r.get(4)?,
        subject: r.get(5)?,
        detail: r.get(6)?,
        address: r.get(7)?,
        request_id: r.get(8)?,
    })
}

//! Devices: enrolment packages, pre-shared keys, enrollments, agents, their runs, events and
//! logs, batches and refused contacts.

use super::*;
use ferry_core::agent::{AgentEvent, HarvestedProfile};

/// `?, ?, …` for `n` parameters.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Lists of computers are sent in chunks of this many parameters.
const CHUNK: usize = 500;

/// Replaces an agent's harvested profiles, in the transaction of `c`.
async fn put_profiles(
    c: &mut (dyn Conn + '_),
    agent: i64,
    profiles: &[HarvestedProfile],
) -> Result<()> {
    c.execute(
        "DELETE FROM agent_profiles WHERE agent_id = ?",
        params![agent],
    )
    .await?;
    let bodies = profiles
        .iter()
        .map(|p| Ok((p.name.as_str(), to_json(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<Vec<Val<'_>>> = bodies
        .iter()
        .map(|(name, body)| params![agent, *name, body].to_vec())
        .collect();
    c.execute_many(query::INSERT_PROFILE, &rows).await?;
    Ok(())
}

async fn agent_by_id(c: &mut (dyn Conn + '_), id: i64) -> Result<Option<AgentRecord>> {
    c.query_opt(
        &format!("SELECT {} FROM agents WHERE id = ?", query::AGENT_COLS),
        params![id],
        agent_row,
    )
    .await
}

impl<B: Backend> SqlStore<B> {
    /// An agent's newest report of a kind (`preflight`, `verification`): a JSON column.
    async fn set_agent_report(&self, agent: i64, column: &'static str, json: &str) -> Result<()> {
        self.exec(
            &format!("UPDATE agents SET {column} = ? WHERE id = ?"),
            params![json, agent],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl<B: Backend> DeviceStore for SqlStore<B> {
    async fn add_enrolment_token(&self, t: &NewEnrolmentToken) -> Result<EnrolmentToken> {
        let id: i64 = {
            let mut c = self.b.write().await?;
            c.query_one(
                query::INSERT_ENROLMENT,
                params![
                    &t.directory,
                    &t.kind,
                    &t.file_name,
                    &t.package_upn,
                    &t.content,
                    &t.sha256,
                    t.created_at,
                    t.expires_at,
                    t.uploaded_at,
                    t.size
                ],
                |r| r.get(0),
            )
            .await?
        };
        self.enrolment_token_content(id)
            .await?
            .map(|(t, _)| t)
            .ok_or_else(|| StoreError::Corrupt(format!("enrolment token {id} vanished")))
    }

    async fn enrolment_tokens(&self, directory: Option<&str>) -> Result<Vec<EnrolmentToken>> {
        self.rows(
            query::LIST_ENROLMENT,
            params![directory, directory],
            enrolment_row,
        )
        .await
    }

    async fn enrolment_token_content(&self, id: i64) -> Result<Option<(EnrolmentToken, Vec<u8>)>> {
        self.row(query::GET_ENROLMENT, params![id], |r| {
            Ok((enrolment_row(r)?, r.get(11)?))
        })
        .await
    }

    async fn revoke_enrolment_token(&self, id: i64, now: i64) -> Result<bool> {
        Ok(self.exec(query::REVOKE_ENROLMENT, params![now, id]).await? == 1)
    }

    async fn set_enrolment_token_content(&self, id: i64, content: &[u8]) -> Result<()> {
        self.exec(query::SET_ENROLMENT_CONTENT, params![content, id])
            .await?;
        Ok(())
    }

    async fn add_psk(
        &self,
        name: &str,
        hash: &str,
        uses: Option<i64>,
        device: Option<&str>,
        now: i64,
    ) -> Result<Psk> {
        let mut c = self.b.write().await?;
        c.query_one(
            &format!("{} RETURNING {}", query::INSERT_PSK, query::PSK_COLS),
            params![name, hash, uses, device, now],
            psk_row,
        )
        .await
    }

    async fn use_psk(&self, id: i64) -> Result<bool> {
        Ok(self.exec(query::USE_PSK, params![id]).await? == 1)
    }

    async fn psks(&self) -> Result<Vec<Psk>> {
        self.rows(
            &format!("SELECT {} FROM psks ORDER BY id", query::PSK_COLS),
            &[],
            psk_row,
        )
        .await
    }

    async fn psk_by_hash(&self, hash: &str) -> Result<Option<Psk>> {
        self.row(
            &format!("SELECT {} FROM psks WHERE hash = ?", query::PSK_COLS),
            params![hash],
            psk_row,
        )
        .await
    }

    async fn retire_psk(&self, name: &str, now: i64) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE psks SET retired_at = ? WHERE name = ? AND retired_at IS NULL",
                params![now, name],
            )
            .await?
            == 1)
    }

    async fn enroll_agent(&self, e: &Enrollment<'_>) -> Result<AgentRecord> {
        let facts = to_json(e.facts)?;
        let host = query::host_key(&e.facts.hostname);
        let mut tx = self.b.begin().await?;
        let id: i64 = tx
            .query_opt(
                query::UPSERT_AGENT,
                params![
                    &e.facts.device_id,
                    &e.facts.hostname,
                    &e.facts.os,
                    &facts,
                    e.node_hash,
                    e.psk_id,
                    e.now,
                    e.now,
                    e.address,
                    &e.facts.agent_version,
                    &host,
                    &host,
                    e.replaces,
                    0i64
                ],
                |r| r.get(0),
            )
            .await
            .map_err(|x| claim_taken(x, &e.facts.device_id))?
            .ok_or_else(|| StoreError::ClaimChanged(e.facts.device_id.clone()))?;
        put_profiles(tx.as_mut(), id, e.profiles).await?;
        let rec = agent_by_id(tx.as_mut(), id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("agent {id} vanished")))?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn agent_by_node_hash(&self, hash: &str) -> Result<Option<AgentRecord>> {
        self.row(
            &format!(
                "SELECT {} FROM agents WHERE node_hash = ?",
                query::AGENT_COLS
            ),
            params![hash],
            agent_row,
        )
        .await
    }

    async fn agents_claimed(
        &self,
        device_id: &str,
        hostname: &str,
    ) -> Result<Vec<(AgentRecord, String)>> {
        self.rows(
            &query::agents_claimed(),
            params![device_id, &query::host_key(hostname)],
            |r| Ok((agent_row(r)?, r.get(query::AGENT_COL_COUNT)?)),
        )
        .await
    }

    async fn assign_run(&self, agent: i64, run: &str, steps: &[String]) -> Result<()> {
        let steps = to_json(steps)?;
        self.exec(query::ASSIGN_RUN, params![run, &steps, agent, run, &steps])
            .await?;
        Ok(())
    }

    async fn assigned_run(&self, agent: i64) -> Result<Option<(String, Vec<String>)>> {
        let row = self
            .row(query::ASSIGNED_RUN, params![agent], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .await?;
        crate::assigned(row)
    }

    async fn add_enrollment_request(&self, r: &NewEnrollmentRequest<'_>) -> Result<i64> {
        let e = &r.enrollment;
        let facts = to_json(e.facts)?;
        let profiles = to_json(e.profiles)?;
        let mut c = self.b.write().await?;
        c.query_one(
            query::INSERT_REQUEST,
            params![
                &e.facts.device_id,
                &e.facts.hostname,
                &facts,
                &profiles,
                e.node_hash,
                e.psk_id,
                e.address,
                r.reason,
                r.conflict_agent_id,
                e.now
            ],
            |row| row.get(0),
        )
        .await
    }

    async fn enrollment_requests(&self, state: Option<&str>) -> Result<Vec<EnrollmentRequest>> {
        self.rows(
            &format!(
                "SELECT {} FROM enrollment_requests WHERE (CAST(? AS TEXT) IS NULL OR state = ?) ORDER BY id DESC LIMIT 1000",
                query::REQUEST_COLS
            ),
            params![state, state],
            request_row,
        )
        .await
    }

    async fn enrollment_request_by_node_hash(
        &self,
        hash: &str,
    ) -> Result<Option<EnrollmentRequest>> {
        self.row(
            &format!(
                "SELECT {} FROM enrollment_requests WHERE node_hash = ?",
                query::REQUEST_COLS
            ),
            params![hash],
            request_row,
        )
        .await
    }

    async fn decide_enrollment(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        now: i64,
    ) -> Result<Option<(EnrollmentRequest, Option<AgentRecord>)>> {
        let mut tx = self.b.begin().await?;
        let state = if approve { "approved" } else { "refused" };
        let Some((node_hash, profiles)) = tx
            .query_opt(query::DECIDE_REQUEST, params![state, by, now, id], |r| {
                Ok((r.get::<String>(0)?, r.get::<String>(1)?))
            })
            .await?
        else {
            tx.commit().await?;
            return Ok(None);
        };
        let req = tx
            .query_one(
                &format!(
                    "SELECT {} FROM enrollment_requests WHERE id = ?",
                    query::REQUEST_COLS
                ),
                params![id],
                request_row,
            )
            .await?;
        let mut agent = None;
        if approve {
            let profiles: Vec<HarvestedProfile> = serde_json::from_str(&profiles)
                .map_err(|x| StoreError::Corrupt(format!("request {id} profiles: {x}")))?;
            let facts = to_json(&req.facts)?;
            let host = query::host_key(&req.hostname);
            tx.execute(query::REPLACE_AGENTS, params![&host, &req.device_id])
                .await?;
            let aid: i64 = tx
                .query_one(
                    query::UPSERT_AGENT,
                    params![
                        &req.device_id,
                        &req.hostname,
                        &req.facts.os,
                        &facts,
                        &node_hash,
                        req.psk_id,
                        now,
                        now,
                        &req.address,
                        &req.facts.agent_version,
                        &host,
                        &host,
                        None::<&str>,
                        1i64
                    ],
                    |r| r.get(0),
                )
                .await?;
            put_profiles(tx.as_mut(), aid, &profiles).await?;
            agent = agent_by_id(tx.as_mut(), aid).await?;
        }
        tx.commit().await?;
        Ok(Some((req, agent)))
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>> {
        self.rows(
            &format!("SELECT {} FROM agents ORDER BY id", query::AGENT_COLS),
            &[],
            agent_row,
        )
        .await
    }

    async fn agent(&self, id: i64) -> Result<Option<AgentRecord>> {
        agent_by_id(self.b.read().await?.as_mut(), id).await
    }

    async fn agents_page(&self, q: &AgentQuery) -> Result<Vec<AgentRecord>> {
        let (sql, vals) = query::agents::<B>(q, false);
        self.rows(&sql, &vals, agent_row).await
    }

    async fn count_agents(&self, q: &AgentQuery) -> Result<i64> {
        let (sql, vals) = query::agents::<B>(q, true);
        Ok(self.row(&sql, &vals, |r| r.get(0)).await?.unwrap_or(0))
    }

    async fn agent_states(&self, batch: Option<&str>) -> Result<Vec<(String, i64)>> {
        let (sql, vals) = query::agent_states(batch);
        self.rows(&sql, &vals, |r| Ok((r.get(0)?, r.get(1)?))).await
    }

    async fn set_agent_preflight(&self, agent: i64, preflight: &str) -> Result<()> {
        self.set_agent_report(agent, "preflight", preflight).await
    }

    async fn set_agent_verification(&self, agent: i64, verification: &str) -> Result<()> {
        self.set_agent_report(agent, "verification", verification)
            .await
    }

    async fn batch_agent_states(
        &self,
        batch: &str,
        run: &RunName<'_>,
    ) -> Result<Vec<(String, i64, i64)>> {
        self.rows(
            &format!(
                "SELECT state, count(*), count(CASE WHEN assigned_run = CAST(? AS TEXT) || CAST(id AS TEXT) || CAST(? AS TEXT) THEN 1 END) \
                 FROM agents WHERE {} GROUP BY state ORDER BY state",
                query::IN_BATCH
            ),
            params![run.prefix, run.suffix, batch],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .await
    }

    async fn agent_states_of(
        &self,
        hostnames: &[String],
        run: &RunName<'_>,
    ) -> Result<Vec<(String, String, i64)>> {
        let mut out = Vec::new();
        // Through the unique index on live agents' host names; padded to a power of two so
        // that a few statement texts serve every list.
        for chunk in hostnames.chunks(256) {
            let n = chunk.len().next_power_of_two();
            let sql = format!(
                "SELECT hostname_claim, state, id FROM agents WHERE hostname_claim IN ({}) \
                 AND assigned_run = CAST(? AS TEXT) || CAST(id AS TEXT) || CAST(? AS TEXT)",
                vec!["?"; n].join(", ")
            );
            let mut vals: Vec<Val<'_>> = chunk.iter().map(|h| Val::text(h.as_str())).collect();
            vals.resize(n, Val::Null);
            vals.push(Val::text(run.prefix));
            vals.push(Val::text(run.suffix));
            out.extend(
                self.rows(&sql, &vals, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .await?,
            );
        }
        Ok(out)
    }

    async fn batch_agents_in(
        &self,
        batch: &str,
        run: &RunName<'_>,
        states: &[&str],
    ) -> Result<Vec<i64>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id FROM agents WHERE {} \
             AND assigned_run = CAST(? AS TEXT) || CAST(id AS TEXT) || CAST(? AS TEXT) AND state IN ({}) ORDER BY id",
            query::IN_BATCH,
            vec!["?"; states.len()].join(", ")
        );
        let mut vals = vec![
            Val::text(batch),
            Val::text(run.prefix),
            Val::text(run.suffix),
        ];
        vals.extend(states.iter().map(|s| Val::text(*s)));
        self.rows(&sql, &vals, |r| r.get(0)).await
    }

    async fn record_contacts(&self, contacts: &[Contact]) -> Result<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        // One row per agent, its latest contact (an UPDATE … FROM applies one arbitrary source
        // row per target), and one statement per chunk: per-row updates cost PostgreSQL a
        // statement per check-in.
        // Newest first; of two in the same millisecond, the one recorded last (a run's last
        // event and the check-in after it may share one), by a stable sort of the reversed list.
        let mut latest: Vec<&Contact> = contacts.iter().rev().collect();
        latest.sort_by_key(|k| (k.agent_id, std::cmp::Reverse(k.at)));
        latest.dedup_by_key(|k| k.agent_id);
        let mut tx = self.b.begin().await?;
        for chunk in latest.chunks(512) {
            // Padded to a power of two with rows that match no agent, so that a handful of
            // statement texts serve every batch (each backend caches prepared statements by text).
            let rows = chunk.len().next_power_of_two();
            let row = "(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT))";
            let sql = format!(
                "WITH u (id, at, address, state, version) AS (VALUES {}) \
                 UPDATE agents SET last_contact = u.at, last_address = COALESCE(u.address, agents.last_address), \
                 state = COALESCE(u.state, agents.state), agent_version = COALESCE(u.version, agents.agent_version) \
                 FROM u WHERE agents.id = u.id AND agents.last_contact <= u.at",
                vec![row; rows].join(", ")
            );
            let mut p: Vec<Val<'_>> = Vec::with_capacity(rows * 5);
            for k in chunk {
                p.extend(
                    params![k.agent_id, k.at, &k.address, &k.state, &k.agent_version]
                        .iter()
                        .cloned(),
                );
            }
            p.resize(rows * 5, Val::Null);
            tx.execute(&sql, &p).await?;
        }
        tx.commit().await
    }

    async fn set_agent_profiles(&self, agent: i64, profiles: &[HarvestedProfile]) -> Result<()> {
        let mut tx = self.b.begin().await?;
        put_profiles(tx.as_mut(), agent, profiles).await?;
        tx.commit().await
    }

    async fn agent_profiles(&self, agent: i64) -> Result<Vec<HarvestedProfile>> {
        self.rows(
            "SELECT body FROM agent_profiles WHERE agent_id = ? ORDER BY name",
            params![agent],
            |r| {
                serde_json::from_str(r.str(0)?)
                    .map_err(|e| StoreError::Corrupt(format!("profile: {e}")))
            },
        )
        .await
    }

    async fn add_agent_events(
        &self,
        agent: i64,
        run: &str,
        events: &[AgentEvent],
        now: i64,
    ) -> Result<()> {
        let rows: Vec<Vec<Val<'_>>> = events
            .iter()
            .map(|e| {
                params![
                    agent,
                    run,
                    now,
                    e.at,
                    &e.step,
                    &e.status,
                    &e.message,
                    e.progress.map(i64::from)
                ]
                .to_vec()
            })
            .collect();
        let mut tx = self.b.begin().await?;
        tx.execute_many(query::INSERT_EVENT, &rows).await?;
        tx.commit().await
    }

    async fn agent_events(&self, agent: i64, run: Option<&str>) -> Result<Vec<StoredEvent>> {
        self.rows(query::EVENTS, params![agent, run, run], event_row)
            .await
    }

    async fn latest_events_of(&self, agents: &[i64]) -> Result<Vec<StoredEvent>> {
        if agents.is_empty() {
            return Ok(vec![]);
        }
        let (sql, vals) = query::latest_events_of(agents);
        self.rows(&sql, &vals, event_row).await
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
        let mut tx = self.b.begin().await?;
        if tx
            .execute(
                query::INSERT_LOG_CHUNK,
                params![agent, run, start, now, text],
            )
            .await?
            == 0
        {
            tx.commit().await?;
            return Ok(LogAdd::Resend);
        }
        tx.execute(query::LOG_BYTES_ROW, params![agent, run])
            .await?;
        let room: Option<i64> = tx
            .query_opt(
                query::ADD_LOG_BYTES,
                params![len, agent, run, len, cap],
                |r| r.get(0),
            )
            .await?;
        if room.is_none() {
            // Over the cap: the chunk goes back with the rollback (the transaction is dropped).
            return Ok(LogAdd::OverCap);
        }
        tx.commit().await?;
        Ok(LogAdd::Stored)
    }

    async fn agent_log(&self, agent: i64, run: &str) -> Result<String> {
        let chunks: Vec<String> = self
            .rows(
                "SELECT text FROM agent_logs WHERE agent_id = ? AND run = ? ORDER BY start",
                params![agent, run],
                |r| r.get(0),
            )
            .await?;
        Ok(chunks.concat())
    }

    async fn add_batch_computers(
        &self,
        batch: &str,
        computers: &[String],
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        // The key is the name's `host_key` (a computer is one whatever its case), the one its
        // agent is found by; the name is kept as typed, for showing.
        let keyed: std::collections::HashMap<String, &String> =
            computers.iter().map(|c| (query::host_key(c), c)).collect();
        let keys: Vec<&String> = keyed.keys().collect();
        let mut tx = self.b.begin().await?;
        // Serialises membership changes so that two concurrent adds cannot both pass the check.
        tx.lock_table("batch_computers").await?;
        let mut conflicts: Vec<(String, String)> = Vec::new();
        for chunk in keys.chunks(CHUNK) {
            let sql = format!(
                "SELECT computer, batch FROM batch_computers WHERE batch <> ? AND computer IN ({})",
                marks(chunk.len())
            );
            let mut p = vec![Val::from(batch)];
            p.extend(chunk.iter().map(|k| Val::from(*k)));
            let found: Vec<(String, String)> =
                tx.query(&sql, &p, |r| Ok((r.get(0)?, r.get(1)?))).await?;
            conflicts.extend(
                found
                    .into_iter()
                    .map(|(k, b)| (keyed.get(&k).map_or(k.clone(), |c| (*c).clone()), b)),
            );
        }
        if !conflicts.is_empty() {
            conflicts.sort();
            conflicts.dedup();
            tx.commit().await?;
            return Ok(conflicts);
        }
        let rows: Vec<Vec<Val<'_>>> = keyed
            .iter()
            .map(|(k, c)| params![k, *c, batch, now].to_vec())
            .collect();
        tx.execute_many(
            "INSERT INTO batch_computers (computer, name, batch, added_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            &rows,
        )
        .await?;
        tx.commit().await?;
        Ok(conflicts)
    }

    async fn remove_batch_computers(&self, batch: &str, computers: &[String]) -> Result<u64> {
        let keys: Vec<String> = computers.iter().map(|c| query::host_key(c)).collect();
        let rows: Vec<Vec<Val<'_>>> = keys.iter().map(|c| params![batch, c].to_vec()).collect();
        let mut tx = self.b.begin().await?;
        let n = tx
            .execute_many(
                "DELETE FROM batch_computers WHERE batch = ? AND computer = ?",
                &rows,
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn batch_computers(&self) -> Result<Vec<(String, String, i64)>> {
        self.rows(
            "SELECT coalesce(name, computer), batch, added_at FROM batch_computers ORDER BY batch, computer",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .await
    }

    async fn live_agent_states(&self) -> Result<Vec<(String, String)>> {
        // Through migration 0030's index (claim, state): read from the table, each row brought
        // its facts along (PostgreSQL: 85 ms at 100,000 agents, 28 ms from the index after a
        // vacuum; pages changed by check-ins since are read from the table).
        self.rows(query::LIVE_AGENT_STATES, &[], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .await
    }

    async fn live_hostnames(&self, hostnames: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        // Through the unique index on live agents' host names (lower case), as `agent_states_of`.
        for chunk in hostnames.chunks(256) {
            let n = chunk.len().next_power_of_two();
            let sql = format!(
                "SELECT hostname_claim FROM agents WHERE hostname_claim IN ({})",
                vec!["?"; n].join(", ")
            );
            let mut vals: Vec<Val<'_>> = chunk.iter().map(|h| Val::text(h.as_str())).collect();
            vals.resize(n, Val::Null);
            out.extend(self.rows(&sql, &vals, |r| r.get(0)).await?);
        }
        Ok(out)
    }

    async fn devices_config_stamp(&self) -> Result<Vec<i64>> {
        let row = self
            .row(
                "SELECT (SELECT count(*) FROM runbooks), (SELECT coalesce(max(updated_at), 0) FROM runbooks), \
                 (SELECT count(*) FROM batches), (SELECT coalesce(max(updated_at), 0) FROM batches), \
                 (SELECT count(*) FROM batch_computers), (SELECT coalesce(max(added_at), 0) FROM batch_computers)",
                &[],
                |r| (0..6).map(|i| r.get(i)).collect::<Result<Vec<i64>>>(),
            )
            .await?;
        Ok(row.unwrap_or_default())
    }

    async fn record_failed_comm(&self, f: &FailedComm, window_from: i64) -> Result<()> {
        let mut tx = self.b.begin().await?;
        let counted = tx
            .execute(
                query::COUNT_FAILED,
                params![
                    f.at,
                    &f.reason,
                    window_from,
                    &f.code,
                    &f.address,
                    f.agent_id,
                    &f.device_id
                ],
            )
            .await?;
        if counted == 0 {
            tx.execute(
                query::INSERT_FAILED,
                params![
                    f.at,
                    f.at,
                    &f.address,
                    &f.code,
                    &f.reason,
                    f.agent_id,
                    &f.device_id
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn prune_agent_history(
        &self,
        failed_before: Option<i64>,
        events_before: Option<i64>,
    ) -> Result<u64> {
        let mut n = 0;
        if let Some(t) = failed_before {
            n += self.exec(query::PRUNE_FAILED, params![t]).await?;
        }
        if let Some(t) = events_before {
            n += self.exec(query::PRUNE_EVENTS, params![t]).await?;
            n += self.exec(query::PRUNE_LOGS, params![t]).await?;
        }
        Ok(n)
    }

    async fn failed_comms(&self, limit: i64) -> Result<Vec<FailedComm>> {
        self.failed_comms_page(&FailedQuery {
            direction: Direction::Desc,
            limit,
            ..Default::default()
        })
        .await
    }

    async fn count_failed_comms(&self, q: &FailedQuery) -> Result<i64> {
        let (sql, vals) = query::failed_comms::<B>(q, true);
        Ok(self.row(&sql, &vals, |r| r.get(0)).await?.unwrap_or(0))
    }

    async fn failed_comms_page(&self, q: &FailedQuery) -> Result<Vec<FailedComm>> {
        let (sql, vals) = query::failed_comms::<B>(q, false);
        self.rows(&sql, &vals, |r| {
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
                first_at: r.get::<Option<i64>>(8)?.unwrap_or(at),
            })
        })
        .await
    }
}

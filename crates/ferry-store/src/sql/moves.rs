//! Environment moves: an environment's records and the hand-over.

use super::*;

#[async_trait]
impl<B: Backend> MoveStore for SqlStore<B> {
    async fn put_env_records(&self, env: &str, records: &[EnvRecord]) -> Result<()> {
        let rows: Vec<Vec<Val<'_>>> = records
            .iter()
            .map(|r| params![env, &r.id, &r.owner, &r.created_by, &r.modified_by].to_vec())
            .collect();
        let mut tx = self.b.begin().await?;
        tx.execute_many(
            "INSERT INTO env_records (env, id, owner, created_by, modified_by) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (env, id) DO UPDATE SET owner = excluded.owner, created_by = excluded.created_by, modified_by = excluded.modified_by",
            &rows,
        )
        .await?;
        tx.commit().await
    }

    async fn env_records(&self, env: &str, offset: i64, limit: i64) -> Result<Vec<EnvRecord>> {
        self.rows(
            "SELECT id, owner, created_by, modified_by FROM env_records WHERE env = ? ORDER BY id LIMIT ? OFFSET ?",
            params![env, limit, offset],
            |r| {
                Ok(EnvRecord {
                    id: r.get(0)?,
                    owner: r.get(1)?,
                    created_by: r.get(2)?,
                    modified_by: r.get(3)?,
                })
            },
        )
        .await
    }

    async fn count_env_records(&self, env: &str) -> Result<i64> {
        Ok(self
            .row(
                "SELECT count(*) FROM env_records WHERE env = ?",
                params![env],
                |r| r.get(0),
            )
            .await?
            .unwrap_or(0))
    }

    async fn hand_over(&self, h: &HandOver<'_>) -> Result<Option<HandedOver>> {
        let mut tx = self.b.begin().await?;
        let swapped = tx
            .execute(
                &query::swap_document(DocKind::EnvMove.table()),
                params![h.move_body, h.now, h.move_name, h.move_read],
            )
            .await?;
        if swapped != 1 {
            tx.commit().await?;
            return Ok(None);
        }
        let puts: Vec<Vec<Val<'_>>> = h
            .environments
            .iter()
            .map(|(name, body)| params![name, body, h.now, h.now].to_vec())
            .collect();
        tx.execute_many(&query::put_document(DocKind::Environment.table()), &puts)
            .await?;
        // The mapping goes into a temporary table of this connection, keyed by the source lower-cased
        // by the database as the records are (the first line of a source wins), and every record is rewritten in one statement.
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS usermap (src TEXT PRIMARY KEY, dst TEXT NOT NULL)",
            &[],
        )
        .await?;
        tx.execute("DELETE FROM usermap", &[]).await?;
        let rows: Vec<Vec<Val<'_>>> = h
            .remap
            .iter()
            .map(|(s, d)| params![s, d].to_vec())
            .collect();
        tx.execute_many(
            "INSERT INTO usermap (src, dst) VALUES (lower(?), ?) ON CONFLICT (src) DO NOTHING",
            &rows,
        )
        .await?;
        let n = tx
            .execute(
                "UPDATE env_records SET \
                   owner = COALESCE((SELECT dst FROM usermap WHERE src = lower(owner)), owner), \
                   created_by = COALESCE((SELECT dst FROM usermap WHERE src = lower(created_by)), created_by), \
                   modified_by = COALESCE((SELECT dst FROM usermap WHERE src = lower(modified_by)), modified_by) \
                 WHERE env = ? AND (lower(owner) IN (SELECT src FROM usermap) OR lower(created_by) IN (SELECT src FROM usermap) \
                   OR lower(modified_by) IN (SELECT src FROM usermap))",
                params![h.records_env],
            )
            .await?;
        tx.execute("DELETE FROM usermap", &[]).await?;
        let audit_id: i64 = tx
            .query_one(query::INSERT_AUDIT, &query::audit_params(h.audit), |r| {
                r.get(0)
            })
            .await?;
        tx.commit().await?;
        Ok(Some(HandedOver {
            records: n,
            audit_id,
        }))
    }
}

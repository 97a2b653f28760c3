//! Servers sharing a database: leases, scheduled slots, recovery, cluster-wide values.

use super::*;

#[async_trait]
impl<B: Backend> ElectionStore for SqlStore<B> {
    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        Ok(self
            .exec(
                query::TAKE_LEASE,
                params![name, holder, now.saturating_add(ttl_ms), now],
            )
            .await?
            == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.exec(
            "DELETE FROM leases WHERE name = ? AND holder = ?",
            params![name, holder],
        )
        .await?;
        Ok(())
    }

    async fn recover_server(&self, server: &str, now: i64) -> Result<u64> {
        let mut tx = self.b.begin().await?;
        tx.execute(query::RELEASE_SERVER_LEASES, params![server, server])
            .await?;
        let n = tx
            .execute(query::ABORT_SERVER_CYCLES, params![now, server])
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn claim_slot(&self, profile: &str, slot: i64, holder: &str, now: i64) -> Result<bool> {
        Ok(self
            .exec(query::CLAIM_SLOT, params![profile, slot, holder, now])
            .await?
            == 1)
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String> {
        let mut tx = self.b.begin().await?;
        tx.execute(query::CLAIM_META, params![key, value]).await?;
        let v = tx
            .query_one(query::GET_META, params![key], |r| r.get(0))
            .await?;
        tx.commit().await?;
        Ok(v)
    }

    async fn schema_version(&self) -> Result<(i64, i64)> {
        let applied = self
            .row(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
                |r| r.get(0),
            )
            .await?
            .unwrap_or(0);
        let known = B::MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
        Ok((applied, known))
    }
}

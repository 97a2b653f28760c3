//! Named documents and the audit trail.

use super::*;

#[async_trait]
impl<B: Backend> ConfigStore for SqlStore<B> {
    async fn change_documents(
        &self,
        kind: DocKind,
        puts: &[(String, String)],
        deletes: &[String],
        now: i64,
    ) -> Result<()> {
        let puts: Vec<Vec<Val<'_>>> = puts
            .iter()
            .map(|(name, body)| params![name, body, now, now].to_vec())
            .collect();
        let deletes: Vec<Vec<Val<'_>>> = deletes.iter().map(|n| params![n].to_vec()).collect();
        let mut tx = self.b.begin().await?;
        tx.execute_many(&query::put_document(kind.table()), &puts)
            .await?;
        tx.execute_many(&query::delete_document(kind.table()), &deletes)
            .await?;
        tx.commit().await
    }

    async fn create_document(
        &self,
        kind: DocKind,
        name: &str,
        body: &str,
        now: i64,
    ) -> Result<bool> {
        Ok(self
            .exec(
                &query::create_document(kind.table()),
                params![name, body, now, now],
            )
            .await?
            == 1)
    }

    async fn swap_document(
        &self,
        kind: DocKind,
        name: &str,
        old: &str,
        new: &str,
        now: i64,
    ) -> Result<bool> {
        Ok(self
            .exec(
                &query::swap_document(kind.table()),
                params![new, now, name, old],
            )
            .await?
            == 1)
    }

    async fn documents(&self, kind: DocKind) -> Result<Vec<(String, String)>> {
        self.rows(
            &format!("SELECT name, body FROM {} ORDER BY name", kind.table()),
            &[],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await
    }

    async fn delete_document(&self, kind: DocKind, name: &str) -> Result<bool> {
        let mut tx = self.b.begin().await?;
        let n = tx
            .execute(&query::delete_document(kind.table()), params![name])
            .await?;
        if kind == DocKind::Batch {
            tx.execute("DELETE FROM batch_computers WHERE batch = ?", params![name])
                .await?;
            tx.execute("DELETE FROM batch_waves WHERE name = ?", params![name])
                .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn add_audit(&self, e: &AuditEntry) -> Result<i64> {
        let mut c = self.b.write().await?;
        c.query_one(query::INSERT_AUDIT, &query::audit_params(e), |r| r.get(0))
            .await
    }

    async fn audit(&self, tenant: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        self.rows(
            &format!(
                "SELECT {} FROM audit WHERE (CAST(? AS TEXT) IS NULL OR tenant = ?) \
                 ORDER BY id DESC LIMIT ?",
                query::AUDIT_COLS
            ),
            params![tenant, tenant, limit],
            audit_row,
        )
        .await
    }

    async fn audit_page(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let (sql, vals) = query::audit(q, false);
        self.rows(&sql, &vals, audit_row).await
    }

    async fn count_audit(&self, q: &AuditQuery) -> Result<i64> {
        let (sql, vals) = query::audit(q, true);
        Ok(self.row(&sql, &vals, |r| r.get(0)).await?.unwrap_or(0))
    }
}

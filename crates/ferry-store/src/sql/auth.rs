//! Operators, tokens, passwords and sign-in throttling.

use super::*;

#[async_trait]
impl<B: Backend> AuthStore for SqlStore<B> {
    async fn put_token(&self, name: &str, hash: &str, role: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO tokens (name, hash, role, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, role = excluded.role, created_at = excluded.created_at, last_used_at = NULL",
            params![name, hash, role, now],
        )
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        self.row(
            "SELECT name, role, created_at, last_used_at FROM tokens WHERE hash = ?",
            params![hash],
            |r| {
                Ok(TokenInfo {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    created_at: r.get(2)?,
                    last_used_at: r.get(3)?,
                })
            },
        )
        .await
    }

    async fn put_operator_password(
        &self,
        name: &str,
        role: &str,
        hash: &str,
        now: i64,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO operator_passwords (name, role, hash, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash, created_at = excluded.created_at",
            params![name, role, hash, now],
        )
        .await?;
        Ok(())
    }

    async fn operator_password(&self, name: &str) -> Result<Option<(String, String)>> {
        self.row(
            "SELECT role, hash FROM operator_passwords WHERE name = ?",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await
    }

    async fn touch_token(&self, hash: &str, now: i64) -> Result<()> {
        self.exec(
            "UPDATE tokens SET last_used_at = ? WHERE hash = ?",
            params![now, hash],
        )
        .await?;
        Ok(())
    }

    async fn delete_token(&self, name: &str) -> Result<bool> {
        Ok(self
            .exec("DELETE FROM tokens WHERE name = ?", params![name])
            .await?
            > 0)
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>> {
        self.rows(query::OPERATORS, &[], |r| {
            Ok(OperatorRecord {
                name: r.get(0)?,
                role: r.get(1)?,
                created_at: r.get(2)?,
                has_password: r.get(3)?,
                has_session: r.get(4)?,
            })
        })
        .await
    }

    async fn delete_operator(&self, name: &str) -> Result<bool> {
        let mut tx = self.b.begin().await?;
        let n = tx
            .execute("DELETE FROM tokens WHERE name = ?", params![name])
            .await?;
        let p = tx
            .execute(
                "DELETE FROM operator_passwords WHERE name = ?",
                params![name],
            )
            .await?;
        tx.execute(
            "DELETE FROM tokens WHERE name = ?",
            params![format!("session:{name}")],
        )
        .await?;
        tx.commit().await?;
        Ok(n + p > 0)
    }

    async fn sign_in_failures(&self, key: &str) -> Result<Option<(i64, i64)>> {
        self.row(
            "SELECT failures, last_at FROM sign_in_failures WHERE key = ?",
            params![key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await
    }

    async fn add_sign_in_failure(&self, key: &str, now: i64) -> Result<(i64, i64)> {
        let mut c = self.b.write().await?;
        c.query_one(query::ADD_SIGN_IN_FAILURE, params![key, now], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .await
    }

    async fn clear_sign_in_failures(&self, key: &str) -> Result<()> {
        self.exec("DELETE FROM sign_in_failures WHERE key = ?", params![key])
            .await?;
        Ok(())
    }

    async fn prune_sign_in_failures(&self, before: i64) -> Result<u64> {
        self.exec(
            "DELETE FROM sign_in_failures WHERE last_at < ?",
            params![before],
        )
        .await
    }
}

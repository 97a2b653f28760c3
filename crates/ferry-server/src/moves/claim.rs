//! A server's claim on a hand-over: the lease `move:<id>`, renewed while the hand-over runs.

use crate::api::ApiResult;
use crate::state::AppState;

/// How long a server's claim on a hand-over (the lease `move:<id>`) lasts without renewal. The
/// server migrating renews it every [`MOVE_LEASE_RENEW`]; when it dies, any server's sweep
/// ([`recover_moves`]) finds the lease lapsed and rolls the move back.
pub const MOVE_LEASE_TTL_MS: i64 = 60_000;
const MOVE_LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(10);

fn move_lease(id: &str) -> String {
    format!("move:{id}")
}

/// A held `move:<id>` lease, renewed in the background until dropped, then released.
pub struct MoveClaim {
    st: AppState,
    lease: String,
    holder: String,
    renew: tokio::task::JoinHandle<()>,
}

impl MoveClaim {
    /// Takes the lease of move `id`; None when another server holds it.
    pub async fn take(st: &AppState, id: &str) -> ApiResult<Option<MoveClaim>> {
        let lease = move_lease(id);
        let holder = format!("{}:{}", st.engine.server_id, ferry_directory::new_guid());
        if !st
            .store
            .try_lease(&lease, &holder, st.clock.now_ms(), MOVE_LEASE_TTL_MS)
            .await?
        {
            return Ok(None);
        }
        let (s, l, h) = (st.clone(), lease.clone(), holder.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(MOVE_LEASE_RENEW).await;
                match s
                    .store
                    .try_lease(&l, &h, s.clock.now_ms(), MOVE_LEASE_TTL_MS)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(lease = %l, "lost the claim on a hand-over to another server");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, lease = %l, "could not renew a hand-over's claim")
                    }
                }
            }
        });
        Ok(Some(MoveClaim {
            st: st.clone(),
            lease,
            holder,
            renew,
        }))
    }
}

impl Drop for MoveClaim {
    fn drop(&mut self) {
        self.renew.abort();
        let (store, lease, holder) = (
            std::sync::Arc::clone(&self.st.store),
            std::mem::take(&mut self.lease),
            std::mem::take(&mut self.holder),
        );
        tokio::spawn(async move {
            if let Err(e) = store.release_lease(&lease, &holder).await {
                tracing::warn!(error = %e, lease = %lease, "could not release a hand-over's claim; it lapses by itself");
            }
        });
    }
}

//! What every handler can reach.

use crate::engine::Engine;
use ferry_store::Store;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<crate::settings::Live>,
    pub engine: Arc<Engine>,
    pub devices: Arc<crate::devices::Devices>,
    /// Sign-in limits and session lifetimes (`[server.auth]`).
    pub sign_in: Arc<crate::signin::SignInLimits>,
    /// Within this server, one environment move of a tenant changes state at a time (moves of
    /// other tenants do not wait); across servers each transition is a compare-and-swap
    /// (`api/environments.rs::swap`).
    pub moves: Arc<TenantLocks>,
    /// The server's clock (and the faults tests inject).
    pub clock: Arc<crate::clock::Clock>,
    /// This server's counters for `/metrics` (shared with the engine).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// When this server started (ms since the epoch).
    pub started_at_ms: i64,
    /// Whether the configuration is in force: false while the console's stored directories and
    /// profiles could not be read at the last attempt (`/readyz` answers 503).
    pub config_loaded: Arc<std::sync::atomic::AtomicBool>,
    /// The audit trail (the store's lines and `[server] audit_log`).
    pub audit: Arc<crate::audit::Trail>,
    /// Where the install's admin token is: its file's path (`DATA_DIR/admin-token`) or
    /// `FERRY_ADMIN_TOKEN`. The sign-in page says so; the token itself is never in it.
    pub admin_token_source: Arc<str>,
}

/// One lock per tenant.
#[derive(Default)]
pub struct TenantLocks(
    std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
);

impl TenantLocks {
    /// Holds `tenant`'s lock until the guard is dropped.
    pub async fn lock(&self, tenant: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(all.entry(tenant.to_string()).or_default())
        };
        m.lock_owned().await
    }
}

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
    /// Within this server, one environment move changes state at a time; across servers each
    /// transition is a compare-and-swap (`api/environments.rs::swap`).
    pub moves: Arc<tokio::sync::Mutex<()>>,
    /// The server's clock (and the faults tests inject).
    pub clock: Arc<crate::clock::Clock>,
}

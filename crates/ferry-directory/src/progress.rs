//! How many objects an import has read so far, for a figure while it runs (`ferry sync run
//! --wait`, the console's cycles). The caller scopes a counter around the import ([`counting`]);
//! the connectors add to it as pages arrive. Outside such a scope adding does nothing, so tests and
//! benchmarks call `import` as before.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

tokio::task_local! {
    static READ: Arc<AtomicU64>;
}

/// Runs `f` (an import) with `read` counting the objects it reads.
pub async fn counting<F: Future>(read: Arc<AtomicU64>, f: F) -> F::Output {
    READ.scope(read, f).await
}

/// The counter in scope, for work that moves to a thread of its own (the LDAP import).
pub(crate) fn current() -> Arc<AtomicU64> {
    READ.try_with(Arc::clone).unwrap_or_default()
}

/// `n` more objects read.
pub(crate) fn add(n: usize) {
    let _ = READ.try_with(|r| r.fetch_add(n as u64, Ordering::Relaxed));
}

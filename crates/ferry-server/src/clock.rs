//! The server's clock for time limits (the seven days of environment moves). Tests move it
//! forward instead of waiting.

use std::sync::atomic::{AtomicI64, Ordering};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the epoch, plus whatever [`advance`] added.
pub fn now_ms() -> i64 {
    ferry_store::now_ms() + OFFSET_MS.load(Ordering::Relaxed)
}

/// Moves this process's clock forward (tests only).
pub fn advance(ms: i64) {
    OFFSET_MS.fetch_add(ms, Ordering::Relaxed);
}

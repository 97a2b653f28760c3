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

/// Fault injection for tests: the next environment move fails after its records were remapped,
/// before the environment is handed over, so the rollback can be seen.
pub mod faults {
    use std::sync::atomic::{AtomicBool, Ordering};

    static FAIL_NEXT_MIGRATE: AtomicBool = AtomicBool::new(false);

    pub fn fail_next_migrate() {
        FAIL_NEXT_MIGRATE.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_migrate_fault() -> bool {
        FAIL_NEXT_MIGRATE.swap(false, Ordering::SeqCst)
    }

    static DECIDE_PAUSE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Tests: every move transition waits this long between reading the request and writing it,
    /// so that two servers deciding it at once both read it first (the race the
    /// compare-and-swap closes).
    pub fn pause_move_decisions(ms: u64) {
        DECIDE_PAUSE_MS.store(ms, Ordering::SeqCst);
    }

    pub(crate) async fn decision_pause() {
        let ms = DECIDE_PAUSE_MS.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}

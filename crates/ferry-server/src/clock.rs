//! The server's clock for time limits (the seven days of environment moves, session lifetimes),
//! and the faults tests inject. One per server (`AppState::clock`): tests of one binary run in
//! parallel, each moving its own servers' clocks without moving the others'.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
    fail_next_migrate: AtomicBool,
    decision_pause_ms: AtomicU64,
}

impl Clock {
    /// Milliseconds since the epoch, plus whatever [`Clock::advance`] added.
    pub fn now_ms(&self) -> i64 {
        ferry_store::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this server's clock forward (tests only).
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Tests: the next environment move fails before its hand-over, so the rollback can be
    /// seen.
    pub fn fail_next_migrate(&self) {
        self.fail_next_migrate.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_migrate_fault(&self) -> bool {
        self.fail_next_migrate.swap(false, Ordering::SeqCst)
    }

    /// Tests: every move transition waits this long between reading the request and writing
    /// it, so that two servers deciding it at once both read it first (the race the
    /// compare-and-swap closes).
    pub fn pause_move_decisions(&self, ms: u64) {
        self.decision_pause_ms.store(ms, Ordering::SeqCst);
    }

    pub(crate) async fn decision_pause(&self) {
        let ms = self.decision_pause_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}

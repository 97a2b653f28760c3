//! The task that fills SQLite's translation search index outside the cycle (migration 0024,
//! `ferry_store::search_index`): every [`POLL`], and until the index is whole, it runs the store's
//! indexer chunk by chunk (each chunk one short write transaction; the writer's lock is fair, so a
//! cycle's commit or an API write waits one chunk at most). Searches scan until the index is whole
//! for the profiles they read, so a search right after a cycle is correct either way.

use ferry_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// How often the task looks for a committed cycle the index has not caught up with.
pub const POLL: Duration = Duration::from_secs(2);

/// What [`run_until_whole`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaughtUp {
    /// Chunks run (0: the index was whole already).
    pub chunks: u64,
    /// The longest chunk: the longest the writer was held for the index.
    pub longest: Duration,
}

/// Runs the indexer until the index is whole (or an error).
pub async fn run_until_whole(store: &dyn Store) -> Result<CaughtUp, StoreError> {
    catch_up(store, || true).await
}

/// Runs the indexer until the index is whole, an error, or `go_on` says to stop (asked before
/// each chunk: a stopping server waits one chunk at most, and the next start resumes there).
async fn catch_up(store: &dyn Store, go_on: impl Fn() -> bool) -> Result<CaughtUp, StoreError> {
    let mut done = CaughtUp::default();
    loop {
        if !go_on() {
            return Ok(done);
        }
        let t = std::time::Instant::now();
        let more = store.index_search().await?;
        done.longest = done.longest.max(t.elapsed());
        if !more {
            return Ok(done);
        }
        done.chunks += 1;
        tokio::task::yield_now().await;
    }
}

/// The task: runs until `shutdown` changes. Nothing on PostgreSQL, whose index the database keeps.
pub async fn run(store: Arc<dyn Store>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    if store.backend() != "sqlite" {
        return;
    }
    loop {
        let started = std::time::Instant::now();
        let caught = catch_up(&*store, || !*shutdown.borrow()).await;
        if *shutdown.borrow() {
            return;
        }
        match caught {
            Ok(CaughtUp { chunks: 0, .. }) => {}
            Ok(CaughtUp { chunks, longest }) => tracing::info!(
                chunks,
                seconds = started.elapsed().as_secs_f64(),
                longest_chunk_ms = longest.as_millis() as u64,
                "translation search index caught up with the committed cycles"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "could not fill the translation search index; searches scan until it is whole, retrying"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

//! A batch's wave on the server: its counts, read at most every [`WAVE_CACHE`] per batch so that
//! a storm of check-ins costs one query; the halt, stored by compare-and-swap so that two
//! servers halting one batch at once write one halt and one audit line; the resume, an
//! operator's audited act. The rules themselves are pure: [`ferry_core::wave`].

use super::{Batch, Devices};
use ferry_core::wave::{self, WaveCounts};
use ferry_core::wire::{Halt, Resumed, WaveState, WaveView};
use ferry_store::AuditEntry;
use ferry_store::{DocKind, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a batch's counts are reused by this server.
pub const WAVE_CACHE: Duration = Duration::from_secs(2);
/// How long this server remembers an order it handed (its agent record, cached for a moment,
/// may not show the run yet).
const HANDED_FOR: Duration = Duration::from_secs(2 * super::POLL_SECONDS as u64);

/// A batch's wave as last read.
#[derive(Clone, Debug, Default)]
pub struct Wave {
    pub state: WaveState,
    /// The stored body it was read from (none: no document yet), for compare-and-swap.
    pub read: Option<String>,
    /// The canary's computers (lower case), first by name.
    pub canary: Vec<String>,
    pub counts: WaveCounts,
    /// The batch's agents per state, as read.
    pub states: Vec<(String, i64)>,
}

impl Wave {
    pub fn view(&self) -> WaveView {
        WaveView {
            state: self.state.clone(),
            canary: self.canary.clone(),
            canary_succeeded: self.counts.canary_succeeded,
            canary_failed: self.counts.canary_failed,
            running: self.counts.running,
            succeeded: self.counts.succeeded,
            failed: self.counts.failed,
        }
    }
}

/// Per batch: the wave when read, and the orders this server handed lately (agent id → when):
/// those handed since the wave was read count as running.
#[derive(Default)]
pub(super) struct Waves {
    read: HashMap<String, (Instant, Arc<Wave>)>,
    handed: HashMap<String, HashMap<i64, Instant>>,
}

/// The states of a device whose migration failed, or succeeded but was not proved.
const FAILED: [&str; 4] = [
    "failed",
    "rolled-back",
    "verification-failed",
    "recovery-required",
];

/// A device whose migration failed, or succeeded but was not proved (post-flight).
pub fn failed(state: &str) -> bool {
    FAILED.contains(&state)
}

/// A device whose migration ended, well or not (or whose agent was replaced).
fn finished(state: &str) -> bool {
    matches!(state, "succeeded" | "verified" | "replaced") || failed(state)
}

/// Reads a batch's wave from the store (no cache).
pub async fn read(
    store: &dyn Store,
    devices: &Devices,
    batch: &Batch,
) -> Result<Arc<Wave>, StoreError> {
    let computers = devices.snapshot().keys_of(&batch.name);
    let canary = wave::canary(batch, &computers).to_vec();
    let mut counts = WaveCounts::default();
    let mut states = Vec::new();
    let runs = super::BatchRuns::of(batch);
    let run = runs.name();
    // Only agents handed this batch's run count: a state left from another batch (or from this
    // one before it was rescheduled) says nothing of this run.
    for (state, n, on_run) in store.batch_agent_states(&batch.name, &run).await? {
        let on_run = on_run as u64;
        match state.as_str() {
            "succeeded" | "verified" => counts.succeeded += on_run,
            s if failed(s) => counts.failed += on_run,
            // Running: handed the run by any server (the store's record) and not finished; a
            // device handed its order does not count only from when it says it runs.
            s if !finished(s) => counts.running += on_run,
            _ => {}
        }
        states.push((state, n));
    }
    let read = store
        .documents(DocKind::Wave)
        .await?
        .into_iter()
        .find(|(n, _)| *n == batch.name)
        .map(|(_, body)| body);
    // Sorted by the resume that wrote it (sorted again here for a hand-edited document).
    let mut accepted: Vec<i64> = read
        .as_deref()
        .and_then(|b| serde_json::from_str::<WaveState>(b).ok())
        .map(|w| w.accepted)
        .unwrap_or_default();
    accepted.sort_unstable();
    let is_accepted = |id: &i64| accepted.binary_search(id).is_ok();
    for (_, state, id) in store.agent_states_of(&canary, &run).await? {
        // A canary device counts once its post-flight proved its result.
        if state == "verified" {
            counts.canary_succeeded += 1;
        } else if failed(&state) {
            counts.canary_failed += 1;
            if is_accepted(&id) {
                counts.accepted_canary_failed += 1;
            }
        }
    }
    if !accepted.is_empty() && counts.failed > 0 {
        counts.accepted_failed = store
            .batch_agents_in(&batch.name, &run, &FAILED)
            .await?
            .iter()
            .filter(|id| is_accepted(id))
            .count() as u64;
    }
    let state = match read.as_deref().map(serde_json::from_str::<WaveState>) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            // Unreadable: treated as halted, so that nothing starts on a state nobody can see.
            tracing::error!(batch = batch.name, error = %e, "stored wave is unreadable");
            WaveState {
                halted: Some(Halt {
                    at: 0,
                    reason: format!("its stored wave state is unreadable ({e})"),
                }),
                ..Default::default()
            }
        }
        None => WaveState::default(),
    };
    Ok(Arc::new(Wave {
        state,
        read,
        canary,
        counts,
        states,
    }))
}

impl Devices {
    /// A batch's wave, read at most every [`WAVE_CACHE`] on this server, with the orders this
    /// server handed since counted as running.
    pub async fn wave(&self, store: &dyn Store, batch: &Batch) -> Result<Arc<Wave>, StoreError> {
        self.wave_read_after(store, batch, None).await
    }

    /// [`Devices::wave`], read again unless its read began after `after` (a storm of failures
    /// waits for one read rather than making one each).
    async fn wave_read_after(
        &self,
        store: &dyn Store,
        batch: &Batch,
        after: Option<Instant>,
    ) -> Result<Arc<Wave>, StoreError> {
        let cached = || {
            self.waves.lock().ok().and_then(|w| {
                w.read
                    .get(&batch.name)
                    .filter(|(at, _)| at.elapsed() < WAVE_CACHE && after.is_none_or(|t| *at >= t))
                    .map(|(_, w)| Arc::clone(w))
            })
        };
        let w = match cached() {
            Some(w) => w,
            None => {
                // One read at a time: a storm of check-ins finds the cache expired together,
                // and each read counts every agent of the batch (100,000 devices read it
                // hundreds of times at once before this, taking the server's whole CPU).
                let _one = self.wave_read.lock().await;
                match cached() {
                    Some(w) => w,
                    None => {
                        let began = Instant::now();
                        let w = read(store, self, batch).await?;
                        if let Ok(mut m) = self.waves.lock() {
                            m.read.insert(batch.name.clone(), (began, Arc::clone(&w)));
                        }
                        w
                    }
                }
            }
        };
        // Orders this server handed since the counts were read are not in them yet.
        let handed = self.waves.lock().map_or(0, |mut m| {
            let since = m.read.get(&batch.name).map(|(at, _)| *at);
            m.handed.get_mut(&batch.name).map_or(0, |h| {
                h.retain(|_, at| at.elapsed() < HANDED_FOR);
                h.values()
                    .filter(|at| since.is_none_or(|s| **at > s))
                    .count() as u64
            })
        });
        if handed == 0 {
            return Ok(w);
        }
        let mut w = (*w).clone();
        w.counts.running += handed;
        Ok(Arc::new(w))
    }

    /// After a device reported a failure (a failed run, a rollback, an unproved result): halts
    /// its batch now when the rules say so, so that the batch's page, log and audit say it at
    /// once rather than at the next device's check-in (there may be none: every device may be
    /// running already). The failure is written first; the wave is then read again.
    pub async fn after_failure(
        &self,
        store: &dyn Store,
        hostname: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let snap = self.snapshot();
        let Some(batch) = snap.batch_of(hostname) else {
            return Ok(());
        };
        let cached_halted = self.waves.lock().ok().is_some_and(|m| {
            m.read
                .get(&batch.name)
                .is_some_and(|(at, w)| at.elapsed() < WAVE_CACHE && w.state.halted.is_some())
        });
        if cached_halted {
            return Ok(());
        }
        self.flush_contacts().await;
        let reported = Instant::now();
        let w = self.wave_read_after(store, batch, Some(reported)).await?;
        // The halt rules come before any wait: a canary's view of the gate.
        if let wave::Gate::Halt(why) = wave::gate(batch, &w.state, &w.counts, w.canary.len(), true)
        {
            halt(store, self, batch, &w, &why, now).await?;
        }
        Ok(())
    }

    /// Notes an order handed to a device that had not been handed its run: it counts as
    /// running until the store says so (or [`HANDED_FOR`] passes).
    pub fn note_order(&self, batch: &str, agent: i64) {
        if let Ok(mut m) = self.waves.lock() {
            m.handed
                .entry(batch.to_string())
                .or_default()
                .entry(agent)
                .or_insert_with(Instant::now);
        }
    }

    /// Whether this server handed the device its order within [`HANDED_FOR`] (its record may
    /// not say so yet: agents are cached for a moment).
    pub fn was_handed(&self, batch: &str, agent: i64) -> bool {
        self.waves.lock().is_ok_and(|m| {
            m.handed
                .get(batch)
                .and_then(|h| h.get(&agent))
                .is_some_and(|at| at.elapsed() < HANDED_FOR)
        })
    }

    /// Forgets a batch's cached wave (after this server changed it).
    pub fn forget_wave(&self, batch: &str) {
        if let Ok(mut m) = self.waves.lock() {
            m.read.remove(batch);
        }
    }
}

/// Halts the batch (once, whichever server sees it first) with an audit line and a log line.
pub async fn halt(
    store: &dyn Store,
    devices: &Devices,
    batch: &Batch,
    w: &Wave,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    let mut state = w.state.clone();
    state.halted = Some(Halt {
        at: now,
        reason: reason.to_string(),
    });
    let body = serde_json::to_string(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let written = match &w.read {
        None => {
            store
                .create_document(DocKind::Wave, &batch.name, &body, now)
                .await?
        }
        Some(old) => {
            store
                .swap_document(DocKind::Wave, &batch.name, old, &body, now)
                .await?
        }
    };
    devices.forget_wave(&batch.name);
    if written {
        tracing::warn!(batch = batch.name, reason, "batch halted itself");
        devices
            .audit
            .record(AuditEntry {
                id: 0,
                at: now,
                actor: "ferry".into(),
                tenant: None,
                action: "batch.halt".into(),
                subject: batch.name.clone(),
                detail: format!(
                    "halted: {reason}; no new device starts until an operator resumes it"
                ),
                address: None,
                request_id: None,
            })
            .await?;
    }
    Ok(())
}

/// Resumes a halted batch: the failures seen so far are accepted (the halt rule counts
/// failures beyond them). `Ok(None)`: it was not halted. `Err` on a store error or when another
/// server changed the wave meanwhile (compare-and-swap).
pub async fn resume(
    store: &dyn Store,
    devices: &Devices,
    batch: &Batch,
    operator: &dyn crate::auth::Acting,
    now: i64,
) -> Result<Option<WaveState>, ResumeError> {
    let w = read(store, devices, batch).await?;
    let (Some(halt), Some(old)) = (&w.state.halted, &w.read) else {
        return Ok(None);
    };
    // The failed devices now are accepted, by id (with those accepted before), sorted.
    let runs = super::BatchRuns::of(batch);
    let mut accepted = w.state.accepted.clone();
    accepted.extend(
        store
            .batch_agents_in(&batch.name, &runs.name(), &FAILED)
            .await?,
    );
    accepted.sort_unstable();
    accepted.dedup();
    let state = WaveState {
        halted: None,
        accepted_failures: w.counts.failed,
        accepted_canary_failures: w.counts.canary_failed,
        accepted,
        resumed: Some(Resumed {
            at: now,
            by: operator.name().to_string(),
            halt: halt.reason.clone(),
        }),
    };
    let body = serde_json::to_string(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if !store
        .swap_document(DocKind::Wave, &batch.name, old, &body, now)
        .await?
    {
        return Err(ResumeError::Changed);
    }
    devices.forget_wave(&batch.name);
    let origin = operator.origin();
    devices
        .audit
        .record(AuditEntry {
            id: 0,
            at: now,
            actor: operator.name().to_string(),
            tenant: None,
            action: "batch.resume".into(),
            subject: batch.name.clone(),
            detail: format!(
                "resumed after: {}; {} failed device(s) accepted",
                halt.reason, w.counts.failed
            ),
            address: origin.address.clone(),
            request_id: Some(origin.request_id.clone()),
        })
        .await?;
    Ok(Some(state))
}

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the batch's wave changed while this was being decided (another server halted or resumed it); look at it again"
    )]
    Changed,
}

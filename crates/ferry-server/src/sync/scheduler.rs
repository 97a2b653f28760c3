//! Scheduled cycles. Each profile with a `schedule` has slots: slot *n* starts at *n × interval*
//! since the Unix epoch (so a `15m` schedule runs at :00, :15, :30 and :45). Every server sharing the database ticks once a second and, when a slot
//! begins, claims it through the store; the primary key of `schedule_slots` lets exactly one server
//! win, so a slot's cycle runs once however many servers there are. A slot whose cycle cannot start
//! because another cycle of the profile is still running is skipped and logged.

use crate::engine::{Engine, EngineError, Trigger};
use ferry_core::plan::LogEntry;
use ferry_store::now_ms;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Runs until `shutdown` resolves.
pub async fn run(engine: Arc<Engine>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // The first scheduled cycle of a profile is the next slot to begin: starting a server, or
    // adding or rescheduling a profile in the console, does not start a cycle (run one on demand
    // with `ferry sync run`). Profiles are read every tick, so console changes apply at once.
    let mut last: HashMap<String, (i64, i64)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let profiles: Vec<(String, i64)> = engine
            .settings
            .get()
            .config
            .profiles
            .iter()
            .filter(|p| p.enabled)
            .filter_map(|p| {
                p.schedule
                    .map(|s| (p.name.clone(), (s.0.as_millis() as i64).max(1)))
            })
            .collect();
        for (name, every) in &profiles {
            match last.get(name) {
                Some(&(e, _)) if e == *every => {}
                _ => {
                    last.insert(name.clone(), (*every, now_ms() / every));
                }
            }
        }
        last.retain(|n, _| profiles.iter().any(|(p, _)| p == n));
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        for (name, every) in &profiles {
            let slot = now_ms() / every;
            if last.get(name).is_some_and(|&(_, l)| l >= slot) {
                continue;
            }
            last.insert(name.clone(), (*every, slot));
            match engine
                .store
                .claim_slot(name, slot, &engine.server_id, now_ms())
                .await
            {
                Ok(true) => match engine.start(name, Trigger::Schedule(slot)).await {
                    Ok(id) => {
                        tracing::info!(profile = %name, slot, cycle = id, "scheduled cycle started")
                    }
                    Err(EngineError::Busy(_)) => {
                        let msg = format!(
                            "scheduled slot {slot} skipped: the previous cycle is still running"
                        );
                        tracing::warn!(profile = %name, "{msg}");
                        let _ = engine
                            .store
                            .append_logs(
                                None,
                                Some(name),
                                &[LogEntry::warning("schedule", msg)],
                                now_ms(),
                            )
                            .await;
                    }
                    Err(e) => {
                        tracing::error!(profile = %name, error = %e, "scheduled cycle could not start")
                    }
                },
                Ok(false) => {
                    tracing::debug!(profile = %name, slot, "slot claimed by another server")
                }
                Err(e) => {
                    tracing::error!(profile = %name, error = %e, "could not claim a schedule slot")
                }
            }
        }
    }
}

/// The times before which agent history goes (`[server.agents]` retention): failed
/// communications last seen, and run events and log chunks received.
pub fn retention_cutoffs(a: &ferry_core::config::AgentsConfig, now: i64) -> (i64, i64) {
    let before = |d: Duration| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    (before(a.failed_retention.0), before(a.event_retention.0))
}

/// Prunes agent history now and every hour until `shutdown` resolves (each server does; the
/// deletes are idempotent).
pub async fn prune_history(
    store: Arc<dyn ferry_store::Store>,
    agents: ferry_core::config::AgentsConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (failed, events) = retention_cutoffs(&agents, now_ms());
        match store.prune_agent_history(Some(failed), Some(events)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned agent history past its retention"),
            Err(e) => tracing::warn!(error = %e, "could not prune agent history"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_counts_back_from_now() {
        // Catches a retention measured in the wrong unit (seconds for milliseconds).
        let a = ferry_core::config::AgentsConfig::default();
        let now = 1_800_000_000_000;
        assert_eq!(
            retention_cutoffs(&a, now),
            (now - 30 * 86_400_000, now - 400 * 86_400_000)
        );
    }
}

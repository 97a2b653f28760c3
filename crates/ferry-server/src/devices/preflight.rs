//! The tenant pre-flight on the server: reads a Microsoft Entra target's device and licensing
//! settings through Graph (`ferry_directory::graph` `preflight_facts`), decides with
//! `ferry_core::preflight::evaluate`, and keeps the result per directory and per batch for
//! [`TTL_MS`]: Graph calls are slow and throttled, so a check-in never waits for one.
//!
//! The gate ([`hold`]) runs inside `devices::orders` for every due device of a batch whose
//! runbooks join Entra ID or enrol in Intune. It only reads the cache; when the batch's result is
//! missing or stale it asks the background worker (one per server, [`start`]) to read Graph
//! again, once, however many devices check in meanwhile. A device is held back while the
//! batch's last result has a blocking finding naming it (or every device), and while no result
//! exists yet.

use crate::api::ApiError;
use crate::devices::{Devices, ordered_runbooks};
use crate::state::AppState;
use ferry_core::config::DirectoryConfig;
use ferry_core::preflight::{DeviceUsers, Needs, PreflightReport, Severity, evaluate};
use ferry_core::runbook::{JoinKind, Runbook};
use ferry_core::wire::Batch;
use ferry_store::AgentQuery;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// How long a pre-flight result is used before Graph is read again.
pub const TTL_MS: i64 = 5 * 60_000;

/// The cached results, and the queue of batches to check again.
#[derive(Default)]
pub struct Preflights {
    tenants: Mutex<HashMap<String, Arc<PreflightReport>>>,
    batches: Mutex<HashMap<String, Arc<PreflightReport>>>,
    /// Per batch, the devices (lower-case host names) its last result looked at: a device the
    /// result has not seen (it enrolled or joined the batch since) is checked before it starts.
    seen: Mutex<HashMap<String, Arc<HashSet<String>>>>,
    /// Batches queued for the worker (so a storm of check-ins queues each once).
    queued: Mutex<HashSet<String>>,
    worker: Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
}

impl Preflights {
    fn cached(
        map: &Mutex<HashMap<String, Arc<PreflightReport>>>,
        k: &str,
    ) -> Option<Arc<PreflightReport>> {
        map.lock().ok().and_then(|m| m.get(k).cloned())
    }
    fn keep(map: &Mutex<HashMap<String, Arc<PreflightReport>>>, k: &str, r: &Arc<PreflightReport>) {
        if let Ok(mut m) = map.lock() {
            m.insert(k.to_string(), Arc::clone(r));
        }
    }
    /// The last result of a batch's pre-flight, however old.
    pub fn batch_result(&self, batch: &str) -> Option<Arc<PreflightReport>> {
        Self::cached(&self.batches, batch)
    }
    /// Asks the worker to check `batch` again, unless it is already queued (a batch is checked
    /// ahead of time when it is saved or its computers change).
    pub fn queue(&self, batch: &str) {
        let fresh = self
            .queued
            .lock()
            .map(|mut q| q.insert(batch.to_string()))
            .unwrap_or(false);
        if fresh
            && let Ok(w) = self.worker.lock()
            && let Some(tx) = w.as_ref()
        {
            let _ = tx.send(batch.to_string());
        }
    }
}

/// What a batch's runbooks need of the tenant.
pub fn needs(runbooks: &[Runbook]) -> Needs {
    Needs {
        join: runbooks
            .iter()
            .any(|r| r.device_state.join == JoinKind::EntraId),
        intune: runbooks.iter().any(|r| r.device_state.enrol_in_intune),
    }
}

/// The gate of `devices::orders`: why the due device `host` of `batch` is held back by the tenant
/// pre-flight, if it is. Reads only memory.
pub fn hold(
    devices: &Devices,
    batch: &Batch,
    runbooks: &[Runbook],
    host: &str,
    now: i64,
) -> Option<String> {
    let n = needs(runbooks);
    if !n.join && !n.intune {
        return None;
    }
    let p = &devices.preflight;
    let last = p.batch_result(&batch.name);
    if last.as_ref().is_none_or(|r| now - r.checked_at >= TTL_MS) {
        p.queue(&batch.name);
    }
    let unseen = last.is_some()
        && p.seen
            .lock()
            .ok()
            .and_then(|m| m.get(&batch.name).cloned())
            .is_some_and(|s| !s.contains(&ferry_core::host::host_key(host)));
    if unseen {
        p.queue(&batch.name);
        return Some(format!(
            "the tenant pre-flight of batch `{}` ran before this device's harvest reached it; it runs again now",
            batch.name
        ));
    }
    let Some(r) = last else {
        return Some(format!(
            "the tenant pre-flight of `{}` has not run yet for batch `{}` (it is running now; GET /batches/{}/preflight shows it)",
            batch.target_directory, batch.name, batch.name
        ));
    };
    // The bulk enrolment token is checked live by `orders` itself (an upload takes effect at once).
    r.findings
        .iter()
        .find(|f| f.check != "bulk-enrolment-token" && f.blocks(host))
        .map(|f| {
            format!(
                "tenant pre-flight ({}): {}{}",
                f.check,
                f.message,
                f.fix
                    .as_deref()
                    .map(|x| format!(". Fix: {x}"))
                    .unwrap_or_default()
            )
        })
}

/// Starts the worker that runs queued batch pre-flights, one at a time.
pub fn start(st: AppState) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if let Ok(mut w) = st.devices.preflight.worker.lock() {
        *w = Some(tx);
    }
    tokio::spawn(async move {
        while let Some(name) = rx.recv().await {
            if let Err(e) = batch(&st, &name, true).await {
                tracing::warn!(batch = name, error = %e, "tenant pre-flight failed");
            }
            if let Ok(mut q) = st.devices.preflight.queued.lock() {
                q.remove(&name);
            }
        }
    });
}

fn graph_connector(
    st: &AppState,
    name: &str,
) -> Result<ferry_directory::graph::GraphConnector, ApiError> {
    let settings = st.settings.get();
    match settings.config.directory(name) {
        Some(DirectoryConfig::Graph(g)) => Ok(ferry_directory::graph::GraphConnector::new(
            g.clone(),
            &settings.base,
            settings.secrets.get(name).cloned(),
        )),
        Some(_) => Err(ApiError::BadRequest(format!(
            "directory `{name}` is not a Microsoft Entra (graph) directory: the tenant pre-flight reads Microsoft Graph"
        ))),
        None => Err(ApiError::NotFound(format!(
            "directory `{name}` is not configured"
        ))),
    }
}

fn report(
    directory: &str,
    batch: Option<&str>,
    now: i64,
    findings: Vec<ferry_core::preflight::Finding>,
) -> PreflightReport {
    PreflightReport {
        directory: directory.into(),
        batch: batch.map(str::to_string),
        checked_at: now,
        ok: !findings.iter().any(|f| f.severity == Severity::Blocking),
        findings,
    }
}

/// The tenant-wide checks of a Graph directory (as if a batch joined and enrolled), cached.
pub async fn directory(
    st: &AppState,
    name: &str,
    refresh: bool,
) -> Result<Arc<PreflightReport>, ApiError> {
    let now = st.clock.now_ms();
    let p = &st.devices.preflight;
    if !refresh
        && let Some(r) = Preflights::cached(&p.tenants, name)
        && now - r.checked_at < TTL_MS
    {
        return Ok(r);
    }
    let c = graph_connector(st, name)?;
    let facts = c.preflight_facts(&[]).await;
    let all = Needs {
        join: true,
        intune: true,
    };
    let r = Arc::new(report(name, None, now, evaluate(&facts, all, &[], None)));
    Preflights::keep(&p.tenants, name, &r);
    Ok(r)
}

/// A batch's pre-flight: its target's tenant checks, the licences, quota and scope of the matched
/// target users of its devices' harvested profiles, and its bulk enrolment token; cached.
pub async fn batch(
    st: &AppState,
    name: &str,
    refresh: bool,
) -> Result<Arc<PreflightReport>, ApiError> {
    let now = st.clock.now_ms();
    let p = &st.devices.preflight;
    if !refresh
        && let Some(r) = p.batch_result(name)
        && now - r.checked_at < TTL_MS
    {
        return Ok(r);
    }
    let snap = st.devices.snapshot();
    let b = snap
        .batches
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("batch `{name}` does not exist")))?;
    let runbooks = ordered_runbooks(&b.runbooks, &snap.runbooks);
    let n = needs(&runbooks);
    if !n.join && !n.intune {
        let r = Arc::new(report(&b.target_directory, Some(name), now, Vec::new()));
        Preflights::keep(&p.batches, name, &r);
        return Ok(r);
    }
    let c = graph_connector(st, &b.target_directory)?;
    let settings = st.settings.get();
    // The batch's devices (its agents) and the target users their harvested profiles match.
    let index = st.devices.translation(&*st.store, &settings, b).await?;
    let agents = st
        .store
        .agents_page(&AgentQuery {
            batch: Some(name.to_string()),
            limit: 1_000_000,
            ..Default::default()
        })
        .await?;
    let mut devices = Vec::with_capacity(agents.len());
    let mut users: Vec<String> = Vec::new();
    for a in &agents {
        let profiles = st.store.agent_profiles(a.id).await?;
        let ids: Vec<String> = profiles
            .iter()
            .filter_map(|p| index.target_id(p).map(str::to_string))
            .collect();
        users.extend(ids.iter().cloned());
        devices.push(DeviceUsers {
            host: a.hostname.clone(),
            users: ids,
        });
    }
    users.sort();
    users.dedup();
    let facts = c.preflight_facts(&users).await;
    let token = if n.join {
        Some(
            crate::devices::enrolment::token_for_join(
                &*st.store,
                &st.settings.vault,
                &b.target_directory,
                now,
            )
            .await
            .map(|(t, _)| {
                let (state, warning) = crate::devices::enrolment::status(&t, now);
                warning.unwrap_or_else(|| {
                    format!(
                        "bulk enrolment token #{} of `{}` ({}) is {state}",
                        t.id, t.directory, t.package_upn
                    )
                })
            })
            .map_err(|e| e.to_string()),
        )
    } else {
        None
    };
    let r = Arc::new(report(
        &b.target_directory,
        Some(name),
        now,
        evaluate(&facts, n, &devices, token),
    ));
    if let Ok(mut m) = p.seen.lock() {
        m.insert(
            name.to_string(),
            Arc::new(
                devices
                    .iter()
                    .map(|d| ferry_core::host::host_key(&d.host))
                    .collect(),
            ),
        );
    }
    Preflights::keep(&p.batches, name, &r);
    Ok(r)
}

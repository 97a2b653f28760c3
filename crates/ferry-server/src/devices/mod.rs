//! Devices on the server: batches and their rules, what a device gets when it checks in, the
//! device what-if, and the in-memory state that keeps check-ins cheap (an authentication cache,
//! write-behind of contacts, a per-address enrollment rate limit, and a snapshot of batches and
//! runbooks).

pub mod agent_api;
pub mod agent_tls;
pub mod configured;
pub mod enrolment;
pub mod preflight;
pub mod wave;

use crate::settings::Settings;
use enrolment::JoinTokenError;
use ferry_core::ObjectKind;
use ferry_core::agent::Credential;
use ferry_core::agent::{
    Assignment, EnrolmentTokenGrant, HarvestedProfile, MigrationOrder, ProfileTranslation,
};
use ferry_core::config::DirectoryConfig;
use ferry_core::plan::Status;
use ferry_core::runbook::{JoinKind, Runbook, RunbookContext};
use ferry_store::{AgentRecord, Contact, DecisionQuery, DocKind, Store, StoreError};

pub use ferry_core::wire::Batch;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub const HOUR_MS: i64 = 3_600_000;
/// How often agents are told to check in.
pub const POLL_SECONDS: u32 = 60;

/// A local date-time in a time zone, as ms since the epoch.
pub fn local_time(s: &str, tz: &str, field: &str) -> Result<i64, String> {
    let zone = jiff::tz::TimeZone::get(tz).map_err(|_| {
        format!("time_zone: `{tz}` is not an IANA time zone (Europe/London, America/New_York, UTC)")
    })?;
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let dt: jiff::civil::DateTime = s
        .parse()
        .map_err(|_| format!("{field}: `{s}` is not a date and time; expected YYYY-MM-DDTHH:MM"))?;
    dt.to_zoned(zone)
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|e| format!("{field}: {e}"))
}

/// A batch's two times as ms since the epoch (the batch itself is a wire type of ferry-core).
pub trait BatchTimes {
    fn enforced_at(&self) -> Result<i64, String>;
    fn available_at(&self) -> Result<Option<i64>, String>;
}

impl BatchTimes for Batch {
    fn enforced_at(&self) -> Result<i64, String> {
        local_time(&self.enforced_after, &self.time_zone, "enforced_after")
    }
    fn available_at(&self) -> Result<Option<i64>, String> {
        self.available_from
            .as_deref()
            .map(|a| local_time(a, &self.time_zone, "available_from"))
            .transpose()
    }
}

/// The runbooks of a batch in the order they run (each after its prerequisites).
pub fn ordered_runbooks(names: &[String], all: &HashMap<String, Runbook>) -> Vec<Runbook> {
    fn visit(
        n: &str,
        all: &HashMap<String, Runbook>,
        seen: &mut Vec<String>,
        out: &mut Vec<Runbook>,
    ) {
        if seen.iter().any(|s| s == n) {
            return;
        }
        seen.push(n.to_string());
        if let Some(r) = all.get(n) {
            for p in &r.prerequisites {
                visit(p, all, seen, out);
            }
            out.push(r.clone());
        }
    }
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    for n in names {
        visit(n, all, &mut seen, &mut out);
    }
    out
}

/// How long a node key's agent is taken from memory before the store is asked again.
pub const AUTH_CACHE: Duration = Duration::from_secs(2);

/// The generation of a translation index: each profile it was built from, with the cycle that last
/// committed that profile's table (`plans.cycle_id`). Every cycle's commit changes it, on whichever
/// server ran the cycle, so an index built before is rebuilt.
type Generation = Vec<(String, Option<i64>)>;

/// A translation index and the generation it was built at.
type CachedIndex = (Generation, Arc<TranslationIndex>);

use ferry_core::export::TranslationEntry;

/// What the write-behind task takes: a check-in to record, or a request to write what it holds.
enum Pending {
    Contact(Contact),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// What the server keeps in memory for agents.
pub struct Devices {
    /// node-key hash → (agent, when cached).
    auth: Mutex<HashMap<String, (AgentRecord, Instant)>>,
    contacts: tokio::sync::mpsc::UnboundedSender<Pending>,
    enroll_limit: Mutex<HashMap<std::net::IpAddr, (f64, Instant)>>,
    snapshot: RwLock<Arc<Snapshot>>,
    translation: Mutex<HashMap<(String, String), CachedIndex>>,
    waves: Mutex<wave::Waves>,
    /// The tenant pre-flights' cached results (`preflight.rs`).
    pub preflight: preflight::Preflights,
    /// Held while a batch's wave is read from the store (one read at a time per server).
    wave_read: tokio::sync::Mutex<()>,
    /// The agent endpoint's URL and certificate fingerprint, when it is served.
    pub endpoint: RwLock<Option<(String, String)>>,
    /// The store's [`Store::devices_config_stamp`] the snapshot was loaded at.
    loaded_at: Mutex<Vec<i64>>,
    /// Held while loading: loads end in the order they began, so an older one never replaces a
    /// newer snapshot.
    loading: tokio::sync::Mutex<()>,
    /// Where a batch's own halt is recorded.
    pub audit: Arc<crate::audit::Trail>,
}

/// How often a server looks whether another server changed batches, runbooks or memberships.
pub const CONFIG_POLL: Duration = Duration::from_secs(2);

/// Batches and runbooks as last loaded, with computer → batch.
#[derive(Default)]
pub struct Snapshot {
    pub batches: HashMap<String, Batch>,
    pub runbooks: HashMap<String, Runbook>,
    /// Lower-case computer name → batch name.
    pub computers: HashMap<String, String>,
    /// Lower-case computer name → the name as it was added to its batch (shown so).
    pub names: HashMap<String, String>,
}

impl Snapshot {
    /// The batch a computer (an agent's host name, any case) is in.
    pub fn batch_of(&self, hostname: &str) -> Option<&Batch> {
        self.computers
            .get(&ferry_core::host::host_key(hostname))
            .and_then(|b| self.batches.get(b))
    }

    /// A batch's computers (lower case), by name.
    /// A batch's computers by their lower-case names (the keys agents are matched on), sorted.
    pub fn keys_of(&self, batch: &str) -> Vec<String> {
        let mut c: Vec<String> = self
            .computers
            .iter()
            .filter(|(_, b)| *b == batch)
            .map(|(c, _)| c.clone())
            .collect();
        c.sort();
        c
    }

    /// A batch's computers as they were added (shown so), in order of their lower-case names.
    pub fn computers_of(&self, batch: &str) -> Vec<String> {
        self.keys_of(batch)
            .iter()
            .map(|k| self.name_of(k))
            .collect()
    }

    /// Each batch's live agents by state, from every live agent's (host-name key, state)
    /// (`Store::live_agent_states`), joined with the memberships this snapshot holds (the ones
    /// its computer counts come from): the overview's and the metrics' devices by state. One
    /// read of a narrow index; joined in SQL, each of 100,000 computers was looked up in the
    /// claims' index (185 ms on SQLite).
    pub fn states_by_batch(
        &self,
        live: Vec<(String, String)>,
    ) -> std::collections::BTreeMap<&str, std::collections::BTreeMap<String, usize>> {
        let mut out: std::collections::BTreeMap<&str, std::collections::BTreeMap<String, usize>> =
            Default::default();
        for (claim, state) in live {
            if let Some(batch) = self.computers.get(&claim) {
                *out.entry(batch.as_str())
                    .or_default()
                    .entry(state)
                    .or_default() += 1;
            }
        }
        out
    }

    /// A computer's name as it was added to its batch (its key, `host_key`, if unknown).
    pub fn name_of(&self, key: &str) -> String {
        self.names
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_string())
    }
}

/// Matched translation entries of one source → target pair, indexed by SID, uid and name.
#[derive(Default)]
pub struct TranslationIndex {
    entries: Vec<TranslationEntry>,
    by_sid: HashMap<String, usize>,
    by_uid: HashMap<u32, usize>,
    by_name: HashMap<String, usize>,
}

impl TranslationIndex {
    /// The entry for a harvested profile: by SID, else uid, else account name (`DOMAIN\name`
    /// or `name`, compared without the domain and ignoring case).
    pub fn lookup(&self, p: &HarvestedProfile) -> Option<ProfileTranslation> {
        let i = p
            .sid
            .as_ref()
            .and_then(|s| self.by_sid.get(&s.to_ascii_uppercase()))
            .or_else(|| p.uid.and_then(|u| self.by_uid.get(&u)))
            .or_else(|| self.by_name.get(&short_name(&p.name)))?;
        Some(self.entries[*i].for_profile(&p.name))
    }

    /// The target object id a harvested profile is matched to (the tenant pre-flight's users).
    pub fn target_id(&self, p: &HarvestedProfile) -> Option<&str> {
        let i = p
            .sid
            .as_ref()
            .and_then(|s| self.by_sid.get(&s.to_ascii_uppercase()))
            .or_else(|| p.uid.and_then(|u| self.by_uid.get(&u)))
            .or_else(|| self.by_name.get(&short_name(&p.name)))?;
        Some(self.entries[*i].target_id.as_str())
    }
}

fn short_name(n: &str) -> String {
    n.rsplit(['\\', '/']).next().unwrap_or(n).to_lowercase()
}

impl Devices {
    /// Starts the write-behind task that records check-ins in bulk.
    /// Starts the contact writer; `audit` records the halts batches decide themselves.
    pub fn start(store: Arc<dyn Store>, audit: Arc<crate::audit::Trail>) -> Arc<Devices> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
        let flush_store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(m) = rx.recv().await {
                let mut waiter = None;
                match m {
                    Pending::Contact(c) => buf.push(c),
                    Pending::Flush(w) => waiter = Some(w),
                }
                // Gather what arrives within a moment, then write it in one transaction.
                let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
                while waiter.is_none() && buf.len() < 20_000 {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(Pending::Contact(c))) => buf.push(c),
                        Ok(Some(Pending::Flush(w))) => waiter = Some(w),
                        _ => break,
                    }
                }
                if !buf.is_empty()
                    && let Err(e) = flush_store.record_contacts(&buf).await
                {
                    tracing::warn!(error = %e, n = buf.len(), "could not record agent contacts");
                }
                buf.clear();
                if let Some(w) = waiter {
                    let _ = w.send(());
                }
            }
        });
        Arc::new(Devices {
            auth: Mutex::new(HashMap::new()),
            contacts: tx,
            enroll_limit: Mutex::new(HashMap::new()),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            translation: Mutex::new(HashMap::new()),
            waves: Mutex::new(wave::Waves::default()),
            preflight: preflight::Preflights::default(),
            wave_read: tokio::sync::Mutex::new(()),
            endpoint: RwLock::new(None),
            loaded_at: Mutex::new(Vec::new()),
            loading: tokio::sync::Mutex::new(()),
            audit,
        })
    }

    /// Loads batches, runbooks and memberships again if the store's stamp differs from the one
    /// loaded (another server sharing the database changed them), or when `anyway`.
    pub async fn reload_if_changed(
        &self,
        store: &dyn Store,
        anyway: bool,
    ) -> Result<bool, StoreError> {
        let now = store.devices_config_stamp().await?;
        if !anyway && self.loaded_at.lock().is_ok_and(|l| *l == now) {
            return Ok(false);
        }
        self.reload(store).await?;
        Ok(true)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_default()
    }

    /// Reloads batches, runbooks and memberships from the store.
    pub async fn reload(&self, store: &dyn Store) -> Result<Arc<Snapshot>, StoreError> {
        let _one = self.loading.lock().await;
        // Read first: a change made while loading changes the stamp again, and is loaded next.
        let stamp = store.devices_config_stamp().await?;
        let mut snap = Snapshot::default();
        for (name, body) in store.documents(DocKind::Runbook).await? {
            match serde_json::from_str::<Runbook>(&body) {
                Ok(r) => {
                    snap.runbooks.insert(name, r);
                }
                Err(e) => {
                    tracing::error!(runbook = name, error = %e, "stored runbook is unreadable")
                }
            }
        }
        for (name, body) in store.documents(DocKind::Batch).await? {
            match serde_json::from_str::<Batch>(&body) {
                Ok(b) => {
                    snap.batches.insert(name, b);
                }
                Err(e) => tracing::error!(batch = name, error = %e, "stored batch is unreadable"),
            }
        }
        for (computer, batch, _) in store.batch_computers().await? {
            let key = ferry_core::host::host_key(&computer);
            snap.computers.insert(key.clone(), batch);
            snap.names.insert(key, computer);
        }
        let snap = Arc::new(snap);
        if let Ok(mut s) = self.snapshot.write() {
            *s = Arc::clone(&snap);
        }
        if let Ok(mut l) = self.loaded_at.lock() {
            *l = stamp;
        }
        Ok(snap)
    }

    /// The agent whose node key hashes to `hash`, cached for [`AUTH_CACHE`]: a run's burst of
    /// events and log chunks reads the store once. The server that replaces a key forgets it at
    /// once ([`Devices::forget_device`]); another server sharing the database may take the old
    /// key for at most that long.
    pub async fn authenticate(
        &self,
        store: &dyn Store,
        hash: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        if let Ok(m) = self.auth.lock()
            && let Some((a, at)) = m.get(hash)
            && at.elapsed() < AUTH_CACHE
        {
            return Ok(Some(a.clone()));
        }
        let found = store.agent_by_node_hash(hash).await?;
        if let (Some(a), Ok(mut m)) = (&found, self.auth.lock()) {
            if m.len() > 500_000 {
                m.clear();
            }
            m.insert(hash.to_string(), (a.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// Forgets cached credentials of a device and of agents with its host name (after it
    /// enrolled again, or an enrollment claiming them was approved).
    pub fn forget_device(&self, device_id: &str, hostname: &str) {
        if let Ok(mut m) = self.auth.lock() {
            m.retain(|_, (a, _)| {
                a.device_id != device_id && !a.hostname.eq_ignore_ascii_case(hostname)
            });
        }
    }

    pub fn record_contact(&self, c: Contact) {
        let _ = self.contacts.send(Pending::Contact(c));
    }

    /// Writes the contacts recorded so far now, rather than within 200 ms (a stopping server
    /// would lose them otherwise).
    pub async fn flush_contacts(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.contacts.send(Pending::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Token bucket per source address: `burst` enrollments, refilled at `per_minute`.
    pub fn allow_enroll(&self, ip: std::net::IpAddr, burst: f64, per_minute: f64) -> bool {
        let Ok(mut m) = self.enroll_limit.lock() else {
            return true;
        };
        if m.len() > 100_000 {
            m.retain(|_, (_, t)| t.elapsed() < Duration::from_secs(600));
        }
        let now = Instant::now();
        let (tokens, last) = m.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + last.elapsed().as_secs_f64() * per_minute / 60.0).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The translation entries from the batch's source directory to its target (matched
    /// decisions of every profile between them), kept in memory until a cycle of one of those
    /// profiles commits (its [`Generation`]), which one small read per profile checks.
    pub async fn translation(
        &self,
        store: &dyn Store,
        settings: &Settings,
        batch: &Batch,
    ) -> Result<Arc<TranslationIndex>, StoreError> {
        let (source, target) = (
            batch.source_directory.as_str(),
            batch.target_directory.as_str(),
        );
        let key = (source.to_string(), target.to_string());
        let profiles: Vec<&ferry_core::config::SyncProfile> = settings
            .config
            .profiles
            .iter()
            .filter(|p| p.source == source && p.target == target)
            .collect();
        let mut generation: Generation = Vec::with_capacity(profiles.len());
        for p in &profiles {
            let cycle = store.plan(&p.name).await?.map(|plan| plan.cycle_id);
            generation.push((p.name.clone(), cycle));
        }
        if let Ok(m) = self.translation.lock()
            && let Some((built, idx)) = m.get(&key)
            && *built == generation
        {
            return Ok(Arc::clone(idx));
        }
        let mut idx = TranslationIndex::default();
        for p in profiles {
            let rows = store
                .decisions(&DecisionQuery {
                    profile: Some(p.name.clone()),
                    status: Some(Status::Matched),
                    kind: Some(ObjectKind::User),
                    ..Default::default()
                })
                .await?;
            for r in rows {
                let Some(entry) = r.to_entry(&[]) else {
                    continue;
                };
                let i = idx.entries.len();
                if let Some(s) = &r.source_sid {
                    idx.by_sid.entry(s.to_ascii_uppercase()).or_insert(i);
                }
                if let Some(u) = r.source_uid {
                    idx.by_uid.entry(u).or_insert(i);
                }
                for n in [
                    Some(&r.source_name),
                    r.source_upn.as_ref(),
                    r.source_mail.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    idx.by_name
                        .entry(short_name(n.split('@').next().unwrap_or(n)))
                        .or_insert(i);
                }
                idx.by_name.entry(short_name(&r.source_name)).or_insert(i);
                idx.entries.push(entry);
            }
        }
        let idx = Arc::new(idx);
        if let Ok(mut m) = self.translation.lock() {
            m.insert(key, (generation, Arc::clone(&idx)));
        }
        Ok(idx)
    }
}

/// What an agent is told at check-in.
pub struct Orders {
    pub assignment: Option<Assignment>,
    pub migration: Option<MigrationOrder>,
    /// Why a due migration is held back (e.g. the enrolment token expired).
    pub blocked: Option<String>,
}

/// The device's batch, and when due, its migration order. A harvest sent with the check-in is
/// used; otherwise the stored one is read, and only when the migration is due.
pub async fn orders(
    store: &dyn Store,
    vault: &crate::vault::Vault,
    settings: &Settings,
    devices: &Devices,
    agent: &AgentRecord,
    checkin: &ferry_core::agent::CheckinRequest,
    now: i64,
) -> Result<Orders, StoreError> {
    let (fresh_profiles, device_clock) = (checkin.profiles.as_deref(), checkin.clock);
    let snap = devices.snapshot();
    let none = Orders {
        assignment: None,
        migration: None,
        blocked: None,
    };
    let Some(batch) = snap.batch_of(&agent.hostname) else {
        return Ok(none);
    };
    let (Ok(enforced), Ok(available)) = (batch.enforced_at(), batch.available_at()) else {
        return Ok(none);
    };
    let runbooks = ordered_runbooks(&batch.runbooks, &snap.runbooks);
    let assignment = Assignment {
        batch: batch.name.clone(),
        runbooks: runbooks.iter().map(|r| r.name.clone()).collect(),
        available_from: available,
        enforced_after: enforced,
        time_zone: batch.time_zone.clone(),
    };
    let mode = if now >= enforced {
        "enforced"
    } else if available.is_some_and(|a| now >= a) {
        "offered"
    } else {
        return Ok(Orders {
            assignment: Some(assignment),
            migration: None,
            blocked: None,
        });
    };
    if let Claims::Contradicted(why) = check_claims(store, &batch.source_directory, agent).await? {
        return Ok(Orders {
            assignment: Some(assignment),
            migration: None,
            blocked: Some(why),
        });
    }
    // The wave: a device that was handed its run is let finish (and told its order again: the
    // server's record, not the state the device reports, says so); one that was not waits for
    // its moment in the window, the canary, a free slot and a batch not halted.
    let run = BatchRuns::of(batch).name().of(agent.id);
    let mut started = agent.assigned_run.as_deref() == Some(run.as_str())
        || devices.was_handed(&batch.name, agent.id);
    // A run handed but never begun (an offer its user snoozes, a device waiting for its users
    // to sign out: no event stored) is not let start while the batch is halted. An agent starts
    // a run only right after a check-in that returned it, and finishes one it began without.
    if started
        && devices.wave(store, batch).await?.state.halted.is_some()
        && store.agent_events(agent.id, Some(&run)).await?.is_empty()
    {
        started = false;
    }
    if !started && let Some(why) = preflight::hold(devices, batch, &runbooks, &agent.hostname, now)
    {
        return Ok(Orders {
            assignment: Some(assignment),
            migration: None,
            blocked: Some(why),
        });
    }
    let index = devices.translation(store, settings, batch).await?;
    let (mut translation, mut untranslated) = (Vec::new(), Vec::new());
    // The harvest is read only now that the migration is due.
    let profiles = match fresh_profiles {
        Some(p) => p.to_vec(),
        None => store.agent_profiles(agent.id).await?,
    };
    for p in &profiles {
        match index.lookup(p) {
            Some(t) => translation.push(t),
            None => untranslated.push(p.name.clone()),
        }
    }
    // The device's pre-flight, with the server's checks: its clock, and a translation for
    // every harvested profile (an unresolvable one blocks unless a runbook skips them).
    if !started {
        let skip = runbooks
            .iter()
            .any(|r| r.permission_updates.skip_unresolved_profiles);
        let mut blockers: Vec<String> = Vec::new();
        let profiles_check = ferry_core::agent::profiles_check(&untranslated, skip);
        if !profiles_check.ok && profiles_check.blocking {
            blockers.push(format!("profiles ({})", profiles_check.detail));
        }
        if let Some(c) = device_clock.map(|c| ferry_core::agent::clock_check(c, now))
            && !c.ok
        {
            blockers.push(format!("clock ({})", c.detail));
        }
        if let Some(pf) = &agent.preflight {
            blockers.extend(
                pf.blockers()
                    .filter(|c| c.check != "clock")
                    .map(|c| format!("{} ({})", c.check, c.detail)),
            );
        }
        if !blockers.is_empty() {
            return Ok(Orders {
                assignment: Some(assignment),
                migration: None,
                blocked: Some(format!("not ready: {}", blockers.join("; "))),
            });
        }
        if mode == "enforced"
            && now < ferry_core::wave::start_at(&batch.name, &agent.hostname, enforced)
        {
            return Ok(Orders {
                assignment: Some(assignment),
                migration: None,
                blocked: None,
            });
        }
        let w = devices.wave(store, batch).await?;
        let is_canary = w
            .canary
            .binary_search(&ferry_core::host::host_key(&agent.hostname))
            .is_ok();
        match ferry_core::wave::gate(batch, &w.state, &w.counts, w.canary.len(), is_canary) {
            ferry_core::wave::Gate::Go => {}
            ferry_core::wave::Gate::Wait(why) => {
                return Ok(Orders {
                    assignment: Some(assignment),
                    migration: None,
                    blocked: Some(why),
                });
            }
            ferry_core::wave::Gate::Halt(why) => {
                wave::halt(store, devices, batch, &w, &why, now).await?;
                return Ok(Orders {
                    assignment: Some(assignment),
                    migration: None,
                    blocked: Some(format!(
                        "batch `{}` is halted: {why} (an operator resumes it)",
                        batch.name
                    )),
                });
            }
        }
    }
    let mut enrolment_token = None;
    if let Some(r) = runbooks
        .iter()
        .find(|r| r.device_state.join == JoinKind::EntraId)
    {
        let grant = match r.device_state.bulk_enrolment_token.as_deref() {
            Some(id) if id != "latest" => {
                let id: i64 = id.parse().unwrap_or(-1);
                match store.enrolment_token_content(id).await? {
                    Some((t, sealed))
                        if t.directory == batch.target_directory
                            && t.revoked_at.is_none()
                            && t.expires_at > now =>
                    {
                        let context = crate::vault::enrolment_context(&t.directory, &t.sha256);
                        vault
                            .open(&sealed, &context)
                            .map(|bytes| (t, bytes))
                            .map_err(|e| format!("bulk enrolment token {id}: {e}"))
                    }
                    Some((t, _))
                        if t.directory == batch.target_directory && t.revoked_at.is_none() =>
                    {
                        Err(enrolment::status(&t, now).1.unwrap_or_default())
                    }
                    _ => Err(format!(
                        "runbook `{}` names bulk enrolment token {id}, which is not a live token of `{}`",
                        r.name, batch.target_directory
                    )),
                }
            }
            _ => enrolment::token_for_join(store, vault, &batch.target_directory, now)
                .await
                .map_err(|e| match e {
                    JoinTokenError::Store(_) => "the enrolment tokens could not be read".into(),
                    e => e.to_string(),
                }),
        };
        match grant {
            Ok((t, bytes)) => {
                use base64::Engine as _;
                enrolment_token = Some(EnrolmentTokenGrant {
                    id: t.id,
                    kind: t.kind,
                    package_upn: t.package_upn,
                    expires_at: t.expires_at,
                    file_name: t.file_name,
                    content_base64: Credential::new(
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    ),
                });
            }
            Err(why) => {
                return Ok(Orders {
                    assignment: Some(assignment),
                    migration: None,
                    blocked: Some(format!("runbook `{}` joins Entra ID but {why}", r.name)),
                });
            }
        }
    }
    if !started {
        devices.note_order(&batch.name, agent.id);
    }
    Ok(Orders {
        migration: Some(MigrationOrder {
            run,
            mode: mode.into(),
            runbooks,
            translation,
            untranslated,
            enrolment_token,
        }),
        assignment: Some(assignment),
        blocked: None,
    })
}

/// How a batch names an agent's run: `{batch}-{agent id}-{Enforced After in s}` (a new run when
/// the batch is rescheduled).
pub struct BatchRuns {
    prefix: String,
    suffix: String,
}

impl BatchRuns {
    pub fn of(batch: &Batch) -> Self {
        let enforced = batch.enforced_at().unwrap_or(i64::MIN);
        BatchRuns {
            prefix: format!("{}-", batch.name),
            suffix: format!("-{}", enforced / 1000),
        }
    }

    /// As the store takes it.
    pub fn name(&self) -> ferry_store::RunName<'_> {
        ferry_store::RunName {
            prefix: &self.prefix,
            suffix: &self.suffix,
        }
    }
}

/// How a device's claims stand against the batch's source directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Claims {
    /// The directory has computers of the device's host name and agrees with any object the
    /// device names; or the directory holds no computers at all (none were synced from it).
    Consistent,
    /// The device names the directory object of its computer, and the directory's computers of
    /// its host name are other objects: its migration is held back and it is flagged.
    Contradicted(String),
    /// The directory holds computers but none of this host name: flagged on the agents page,
    /// not held (a workgroup machine, or one the last sync did not see).
    NotInDirectory(String),
}

/// Checks the device's claims (host name, or its first label; `directory_object_id`) against
/// the computers of `source`.
pub async fn check_claims(
    store: &dyn Store,
    source: &str,
    agent: &AgentRecord,
) -> Result<Claims, StoreError> {
    Ok(check_claims_of(store, source, &[agent])
        .await?
        .pop()
        .unwrap_or(Claims::Consistent))
}

/// The names a host name may stand for in a directory: itself and its first label.
fn claim_names(hostname: &str) -> Vec<&str> {
    let host = hostname.trim();
    let short = host.split('.').next().unwrap_or(host);
    if short == host {
        vec![host]
    } else {
        vec![host, short]
    }
}

/// [`check_claims`] of many agents against one directory, in agent order: one look-up of the
/// computers of all their names (a page of 200 agents made 200 before, 0.7 s on PostgreSQL),
/// and at most one of whether the directory holds computers at all.
pub async fn check_claims_of(
    store: &dyn Store,
    source: &str,
    agents: &[&AgentRecord],
) -> Result<Vec<Claims>, StoreError> {
    let lower =
        |n: &str| ferry_core::transform::lowercase(std::borrow::Cow::Borrowed(n)).into_owned();
    let mut names: Vec<&str> = agents
        .iter()
        .flat_map(|a| claim_names(&a.hostname))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut by_name: HashMap<String, Vec<ferry_core::DirObject>> = HashMap::new();
    for chunk in names.chunks(256) {
        for o in store.devices_named(source, chunk).await? {
            by_name.entry(lower(&o.name)).or_default().push(o);
        }
    }
    let mut has_computers = (!by_name.is_empty()).then_some(true);
    let mut out = Vec::with_capacity(agents.len());
    for agent in agents {
        let host = agent.hostname.trim();
        let mut computers: Vec<&ferry_core::DirObject> = claim_names(host)
            .into_iter()
            .filter_map(|n| by_name.get(&lower(n)))
            .flatten()
            .collect();
        computers.sort_by(|a, b| a.id.cmp(&b.id));
        computers.dedup_by(|a, b| a.id == b.id);
        out.push(if computers.is_empty() {
            let has = match has_computers {
                Some(h) => h,
                None => {
                    let h = store.has_objects(source, ObjectKind::Device).await?;
                    has_computers = Some(h);
                    h
                }
            };
            if has {
                Claims::NotInDirectory(format!(
                    "the device says it is `{host}`, and `{source}` has no computer of that name: check the device before migrating it"
                ))
            } else {
                Claims::Consistent
            }
        } else {
            match agent
                .facts
                .directory_object_id
                .as_deref()
                .filter(|s| !s.is_empty())
            {
                None => Claims::Consistent,
                Some(claimed) if computers.iter().any(|c| c.id == claimed) => Claims::Consistent,
                Some(claimed) => Claims::Contradicted(format!(
                    "the device says it is `{host}` with directory object `{claimed}`, but `{source}`'s computer `{}` is `{}`: check the device before migrating it",
                    computers[0].name, computers[0].id
                )),
            }
        });
    }
    Ok(out)
}

/// A batch as the admin saves it: checked against the configuration and the runbooks; with
/// `add_prerequisites`, missing prerequisites are added instead of refused.
pub fn check_batch(
    b: &mut Batch,
    settings: &Settings,
    runbooks: &HashMap<String, Runbook>,
    add_prerequisites: bool,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    if let Err(e) = ferry_core::check_name(&b.name) {
        return Err(format!("name: {e}"));
    }
    for (field, d) in [
        ("source_directory", &b.source_directory),
        ("target_directory", &b.target_directory),
    ] {
        if settings.config.directory(d).is_none() {
            return Err(format!("{field}: `{d}` is not a configured directory"));
        }
    }
    if b.runbooks.is_empty() {
        return Err("runbooks: name at least one runbook".into());
    }
    ferry_core::wave::check(b)?;
    for (i, r) in b.runbooks.iter().enumerate() {
        if !runbooks.contains_key(r) {
            return Err(format!("runbooks[{i}]: there is no runbook named `{r}`"));
        }
    }
    // Every prerequisite (transitively) must be in the batch.
    loop {
        let missing: Vec<(String, String)> = b
            .runbooks
            .iter()
            .filter_map(|r| runbooks.get(r))
            .flat_map(|r| {
                r.prerequisites
                    .iter()
                    .map(move |p| (r.name.clone(), p.clone()))
            })
            .filter(|(_, p)| !b.runbooks.contains(p))
            .collect();
        let Some((of, p)) = missing.into_iter().next() else {
            break;
        };
        if !add_prerequisites {
            return Err(format!(
                "runbooks: `{of}` needs its prerequisite runbook `{p}`, which is not in the batch; add it (or save with add_prerequisites)"
            ));
        }
        notes.push(format!(
            "added prerequisite runbook `{p}` (needed by `{of}`)"
        ));
        b.runbooks.insert(0, p);
    }
    let enforced = b.enforced_at()?;
    if let Some(a) = b.available_at()?
        && a > enforced
    {
        return Err("available_from: must not be after enforced_after".into());
    }
    for r in b.runbooks.iter().filter_map(|r| runbooks.get(r)) {
        if r.device_state.join == JoinKind::EntraId
            && !matches!(
                settings.config.directory(&b.target_directory),
                Some(DirectoryConfig::Graph(_))
            )
        {
            return Err(format!(
                "runbooks: `{}` joins Entra ID, but the batch's target `{}` is not a Microsoft Entra (graph) directory",
                r.name, b.target_directory
            ));
        }
    }
    Ok(notes)
}

/// The runbook context for validation: configured directories and stored runbooks.
pub fn validate_runbook(
    r: &Runbook,
    settings: &Settings,
    stored: &HashMap<String, Runbook>,
) -> Result<(), ferry_core::runbook::FieldError> {
    let dirs: Vec<(&str, &str)> = settings
        .config
        .directories
        .iter()
        .map(|d| (d.name(), d.kind()))
        .collect();
    let others: Vec<(&str, &[String])> = stored
        .iter()
        .filter(|(n, _)| **n != r.name)
        .map(|(n, rb)| (n.as_str(), rb.prerequisites.as_slice()))
        .collect();
    r.validate(&RunbookContext {
        directories: &dirs,
        runbooks: &others,
    })
}

/// Adding a computer this close to Enforced After is warned about (the seed: "unlikely to be
/// successful unless you restart the agent").
pub fn late_add_warning(b: &Batch, computer: &str, now: i64) -> Option<String> {
    let enforced = b.enforced_at().ok()?;
    (enforced - now < 24 * HOUR_MS).then(|| {
        format!(
            "{computer} was added less than 24 hours before the batch's Enforced After ({}): the agent may not pick it up in time unless it checks in (restart the agent on the computer)",
            b.enforced_after
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches: the overview's devices by state counting an agent whose computer is in no batch,
    /// missing one whose name was added in capitals (keys are lower case), or mixing two
    /// batches' states.
    #[test]
    fn states_by_batch_counts_each_batch_s_live_agents() {
        let mut snap = Snapshot::default();
        for (name, batch) in [
            ("ÅSA-PC", "wave-1"),
            ("pc-02", "wave-1"),
            ("pc-03", "wave-1"),
            ("pc-04", "wave 2, \"pilot\""),
        ] {
            let key = ferry_core::host::host_key(name);
            snap.computers.insert(key.clone(), batch.to_string());
            snap.names.insert(key, name.to_string());
        }
        let live = [
            ("åsa-pc", "running"),
            ("pc-02", "running"),
            ("pc-03", "failed"),
            ("pc-04", "running"),
            ("pc-99", "running"),
        ]
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .to_vec();
        let got = snap.states_by_batch(live);
        let want: std::collections::BTreeMap<&str, std::collections::BTreeMap<String, usize>> = [
            (
                "wave-1",
                [("failed".to_string(), 1), ("running".to_string(), 2)].into(),
            ),
            ("wave 2, \"pilot\"", [("running".to_string(), 1)].into()),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn local_times_use_the_time_zone() {
        let utc = local_time("2026-12-01T18:00", "UTC", "f").unwrap();
        let london = local_time("2026-07-01T18:00", "Europe/London", "f").unwrap();
        let july_utc = local_time("2026-07-01T18:00", "UTC", "f").unwrap();
        assert_eq!(july_utc - london, HOUR_MS, "BST is UTC+1");
        assert_eq!(utc % 1000, 0);
        assert!(
            local_time("tomorrow", "UTC", "enforced_after")
                .unwrap_err()
                .starts_with("enforced_after:")
        );
        assert!(
            local_time("2026-12-01T18:00", "Mars/Olympus", "f")
                .unwrap_err()
                .contains("IANA")
        );
    }

    #[test]
    fn runbooks_run_after_their_prerequisites() {
        let rb = |n: &str, pre: &[&str]| Runbook {
            name: n.into(),
            source_directories: vec![],
            target_directories: vec![],
            prerequisites: pre.iter().map(|p| p.to_string()).collect(),
            startup: Default::default(),
            user_experience: Default::default(),
            device_state: Default::default(),
            permission_updates: Default::default(),
            app_reconfiguration: Default::default(),
            completion: Default::default(),
        };
        let all: HashMap<String, Runbook> =
            [rb("Main", &["Pre"]), rb("Pre", &["Zero"]), rb("Zero", &[])]
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect();
        let order: Vec<String> =
            ordered_runbooks(&["Main".into(), "Pre".into(), "Zero".into()], &all)
                .into_iter()
                .map(|r| r.name)
                .collect();
        assert_eq!(order, ["Zero", "Pre", "Main"]);
    }

    #[test]
    fn enrollment_is_rate_limited_per_address() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(ferry_store::sqlite::SqliteStore::open(&dir.path().join("f.db")).unwrap());
            let d = Devices::start(
                Arc::clone(&store),
                crate::audit::Trail::new(Arc::clone(&store), None),
            );
            let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
            let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
            let allowed = (0..10).filter(|_| d.allow_enroll(a, 5.0, 1.0)).count();
            assert_eq!(allowed, 5);
            assert!(
                d.allow_enroll(b, 5.0, 1.0),
                "another address has its own bucket"
            );
        });
    }

    #[test]
    fn contacts_are_written_when_flushed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(ferry_store::sqlite::SqliteStore::open(&dir.path().join("f.db")).unwrap());
            let psk = store.add_psk("k", "psk-hash", None, None, 1).await.unwrap();
            let facts = ferry_core::agent::DeviceFacts {
                device_id: "m-1".into(),
                hostname: "PC-1".into(),
                os: "linux".into(),
                agent_version: "0.1.0".into(),
                ..Default::default()
            };
            let a = store
                .enroll_agent(&ferry_store::Enrollment {
                    facts: &facts,
                    profiles: &[],
                    node_hash: "node-hash",
                    psk_id: psk.id,
                    now: 1,
                    address: None,
                    replaces: None,
                })
                .await
                .unwrap();
            let d = Devices::start(
                Arc::clone(&store),
                crate::audit::Trail::new(Arc::clone(&store), None),
            );
            d.record_contact(Contact {
                agent_id: a.id,
                at: 5,
                address: None,
                state: Some("succeeded".into()),
                agent_version: None,
            });
            // At once, not 200 ms later: what a stopping server does last.
            d.flush_contacts().await;
            let stored = store.agent(a.id).await.unwrap().unwrap();
            assert_eq!(
                (stored.state.as_str(), stored.last_contact),
                ("succeeded", 5)
            );
            d.flush_contacts().await;
        });
    }

    #[test]
    fn a_storm_reads_the_wave_once() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(ferry_store::sqlite::SqliteStore::open(&dir.path().join("f.db")).unwrap());
            store
                .put_document(DocKind::Runbook, "Main", r#"{"name":"Main","source_directories":["c"],"target_directories":["f"]}"#, 1)
                .await
                .unwrap();
            store
                .put_document(DocKind::Batch, "B", r#"{"name":"B","source_directory":"c","target_directory":"f","runbooks":["Main"],"enforced_after":"2026-01-01T00:00","time_zone":"UTC"}"#, 1)
                .await
                .unwrap();
            let computers: Vec<String> = (0..2000).map(|i| format!("pc-{i}")).collect();
            store.add_batch_computers("B", &computers, 1).await.unwrap();
            let d = Devices::start(Arc::clone(&store), crate::audit::Trail::new(Arc::clone(&store), None));
            d.reload(&*store).await.unwrap();
            let batch = d.snapshot().batches.get("B").cloned().unwrap();
            let batch = Arc::new(batch);
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (d, store, batch) = (Arc::clone(&d), Arc::clone(&store), Arc::clone(&batch));
                    tokio::spawn(async move { d.wave(&*store, &batch).await.unwrap() })
                })
                .collect();
            let mut waves = Vec::new();
            for t in tasks {
                waves.push(t.await.unwrap());
            }
            assert!(
                waves.iter().all(|w| Arc::ptr_eq(w, &waves[0])),
                "64 check-ins at once read the wave once"
            );
        });
    }

    #[test]
    fn profiles_are_found_by_sid_uid_or_name() {
        let mut idx = TranslationIndex::default();
        idx.entries.push(TranslationEntry {
            profile: "users".into(),
            kind: ObjectKind::User,
            source_id: "ann".into(),
            target_id: "ann-t".into(),
            source_name: "Smith, Ann".into(),
            target_name: "Ann".into(),
            source_upn: None,
            target_upn: None,
            source_mail: None,
            target_mail: None,
            source_sid: Some("S-1-5-21-1-2-3-1104".into()),
            target_sid: Some("S-1-12-1-9".into()),
            source_uid: Some(1001),
            target_uid: None,
            source_gid: None,
            target_gid: None,
            rule: None,
            source_device_id: None,
            target_device_id: None,
        });
        idx.by_sid.insert("S-1-5-21-1-2-3-1104".into(), 0);
        idx.by_uid.insert(1001, 0);
        idx.by_name.insert("ann".into(), 0);
        let p = |name: &str, sid: Option<&str>, uid: Option<u32>| HarvestedProfile {
            name: name.into(),
            sid: sid.map(Into::into),
            uid,
            home: "/home/x".into(),
            ..Default::default()
        };
        assert!(
            idx.lookup(&p("x", Some("s-1-5-21-1-2-3-1104"), None))
                .is_some()
        );
        assert!(idx.lookup(&p("x", None, Some(1001))).is_some());
        assert_eq!(
            idx.lookup(&p("CONTOSO\\Ann", None, None)).unwrap().profile,
            "CONTOSO\\Ann"
        );
        assert!(idx.lookup(&p("zed", None, Some(5))).is_none());
    }
}

//! The sync cycle: Import → Sync → Export, for one profile at a time across every server sharing
//! the database.
//!
//! * **Election.** A cycle holds the lease `cycle:<profile>` in the database for as long as it runs
//!   (renewed every 10 s, expiring after 60 s), so no two servers run one profile at once; a server
//!   that dies loses its lease and the next cycle marks its cycle aborted.
//! * **Import.** Source and target are imported concurrently: a full import, or a delta from the
//!   stored watermark when the connector supports it and the last full import is recent enough
//!   (`full_import_every`). A delta is merged into the stored objects.
//! * **Sync.** The plan is computed by `ferry_core::plan::build` (pure), compared with the stored
//!   decisions, and committed — objects, decisions (the translation table), plan, history and logs —
//!   in one transaction. Anything that fails before that commit leaves the previous table untouched.
//! * **Export.** Runs only when the plan has writes and the profile's approval is for this exact plan
//!   hash. After an export, target and source are read again and the table is rebuilt, so objects the
//!   export created are translated at once.

use crate::settings::Settings;
use ferry_core::ObjectKind;
use ferry_core::config::{DirectoryConfig, SyncProfile};
use ferry_core::grouped;
use ferry_core::model::DirObject;
use ferry_core::plan::{self, LogEntry, Plan};
use ferry_directory::{Connector, DirectoryError, Imported};
use ferry_store::{DirectoryState, ObjectChanges, Store, StoreError, SyncCommit, now_ms};
use rustc_hash::{FxHashMap, FxHashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const LEASE_TTL_MS: i64 = 60_000;
const LEASE_RENEW: Duration = Duration::from_secs(10);

/// This process's resident memory in MiB (Linux), logged with each phase of a cycle.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Runs CPU-heavy work without stalling other tasks (inline on a current-thread runtime).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The longest [`Engine::wait`] waits (a caller's timeout near `u64::MAX` seconds would overflow
/// the deadline).
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("sync profile `{0}` is not configured")]
    UnknownProfile(String),
    #[error("a cycle of `{0}` is already running")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a cycle started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Schedule(i64),
}

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub settings: Arc<crate::settings::Live>,
    pub server_id: String,
    /// Where the initial passwords of users an export created are written (mode 0600).
    pub data_dir: PathBuf,
    /// One connector per directory for the server's life, so that Graph's access tokens are
    /// reused across cycles until they expire.
    connectors: std::sync::Mutex<FxHashMap<String, Arc<dyn Connector>>>,
    /// Enrolment-token warnings already logged, with the day they were (one a day is enough).
    warned: std::sync::Mutex<FxHashMap<String, i64>>,
    /// Cycles' stage durations and results, for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A failure inside a cycle, with the phase it happened in.
struct CycleFailure {
    code: &'static str,
    message: String,
}

impl From<StoreError> for CycleFailure {
    fn from(e: StoreError) -> Self {
        CycleFailure {
            code: "store",
            message: e.to_string(),
        }
    }
}

impl From<DirectoryError> for CycleFailure {
    fn from(e: DirectoryError) -> Self {
        CycleFailure {
            code: "import",
            message: e.to_string(),
        }
    }
}

/// One directory's objects after an import, with what changed against the store.
struct Side {
    objects: Vec<DirObject>,
    /// Indexes of new or changed objects, with their content hash.
    upserts: Vec<(usize, u64)>,
    deletes: Vec<(ObjectKind, String)>,
    state: DirectoryState,
    logs: Vec<LogEntry>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Arc<crate::settings::Live>,
        server_id: String,
        data_dir: PathBuf,
    ) -> Engine {
        Engine {
            store,
            settings,
            server_id,
            data_dir,
            connectors: std::sync::Mutex::new(FxHashMap::default()),
            warned: std::sync::Mutex::new(FxHashMap::default()),
            metrics: Arc::default(),
        }
    }

    fn profile(&self, name: &str) -> Result<SyncProfile, EngineError> {
        self.settings
            .get()
            .config
            .profile(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownProfile(name.to_string()))
    }

    /// Drops the cached connector of a directory whose settings changed.
    pub fn forget_connector(&self, name: &str) {
        if let Ok(mut m) = self.connectors.lock() {
            m.remove(name);
        }
    }

    fn connector(&self, settings: &Settings, dir: &DirectoryConfig) -> Arc<dyn Connector> {
        let make = || {
            ferry_directory::connect(
                dir,
                &settings.base,
                settings.secrets.get(dir.name()).cloned(),
            )
        };
        match self.connectors.lock() {
            Ok(mut m) => Arc::clone(m.entry(dir.name().to_string()).or_insert_with(make)),
            Err(_) => make(),
        }
    }

    /// Writes the initial passwords of created users to `DATA_DIR/initial-passwords/` (a 0600
    /// file per cycle) and returns the message log line that says where, without them.
    fn deliver_passwords(
        &self,
        cycle: i64,
        profile: &str,
        passwords: &[(String, ferry_core::config::Secret)],
    ) -> LogEntry {
        let dir = self.data_dir.join("initial-passwords");
        let path = dir.join(format!("cycle-{cycle}-{profile}.csv"));
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            std::fs::create_dir_all(&dir)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            }
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(&path)?;
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["userPrincipalName", "initialPassword"])?;
            for (upn, pw) in passwords {
                w.write_record([upn.as_str(), pw.expose()])?;
            }
            let bytes = w.into_inner().map_err(|e| e.into_error())?;
            f.write_all(&bytes)?;
            f.sync_all()
        };
        match write() {
            Ok(()) => LogEntry::warning(
                "initial-passwords",
                format!(
                    "{} created user(s) must change their initial password at first sign-in; the passwords are in {} (readable by the server's account only): hand them over and delete the file",
                    passwords.len(),
                    path.display()
                ),
            ),
            Err(e) => LogEntry::error(
                "initial-passwords",
                format!(
                    "could not write the initial passwords of {} created user(s) to {}: {e}; reset their passwords in the target tenant",
                    passwords.len(),
                    path.display()
                ),
            ),
        }
    }

    /// Starts a cycle in the background and returns its id; `Busy` if one is running anywhere.
    pub async fn start(
        self: &Arc<Self>,
        profile: &str,
        trigger: Trigger,
    ) -> Result<i64, EngineError> {
        self.profile(profile)?;
        let holder = format!("{}:{}", self.server_id, ferry_directory::new_guid());
        let lease = format!("cycle:{profile}");
        // A cycle records its end just before it releases its lease: when the lease is held but the
        // profile's latest cycle has finished, the holder is about to let go, so wait a moment.
        let mut tries = 0;
        while !self
            .store
            .try_lease(&lease, &holder, now_ms(), LEASE_TTL_MS)
            .await?
        {
            let latest = self.store.cycles(Some(profile), 1).await?;
            tries += 1;
            if tries > 50 || latest.first().is_none_or(|c| c.status == "running") {
                return Err(EngineError::Busy(profile.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (kind, slot) = match trigger {
            Trigger::Manual => ("manual", None),
            Trigger::Schedule(s) => ("schedule", Some(s)),
        };
        let id = match self
            .store
            .begin_cycle(profile, kind, slot, &self.server_id, now_ms())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let _ = self.store.release_lease(&lease, &holder).await;
                return Err(e.into());
            }
        };
        let me = Arc::clone(self);
        let profile = profile.to_string();
        tokio::spawn(async move {
            let renew = {
                let store = Arc::clone(&me.store);
                let (lease, holder) = (lease.clone(), holder.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(LEASE_RENEW).await;
                        if let Err(e) = store
                            .try_lease(&lease, &holder, now_ms(), LEASE_TTL_MS)
                            .await
                        {
                            tracing::warn!(error = %e, "could not renew the cycle lease");
                        }
                    }
                })
            };
            me.run(&profile, id).await;
            renew.abort();
            if let Err(e) = me.store.release_lease(&lease, &holder).await {
                tracing::warn!(error = %e, "could not release the cycle lease");
            }
        });
        Ok(id)
    }

    /// Runs a cycle to its end, recording success or failure.
    async fn run(&self, profile: &str, id: i64) {
        let started = std::time::Instant::now();
        let result = self.cycle(profile, id).await;
        self.metrics
            .stage(profile, "cycle", started.elapsed().as_secs_f64());
        self.metrics.cycle_finished(profile, result.is_ok());
        match result {
            Ok(export) => {
                tracing::info!(profile, cycle = id, elapsed_ms = started.elapsed().as_millis() as u64, export = %export, "cycle succeeded");
            }
            Err(f) => {
                tracing::warn!(profile, cycle = id, error = %f.message, "cycle failed");
                let log = LogEntry::error(
                    f.code,
                    format!(
                        "cycle failed; the previous translation table is unchanged: {}",
                        f.message
                    ),
                );
                if let Err(e) = self
                    .store
                    .fail_cycle(id, profile, &f.message, &[log], now_ms())
                    .await
                {
                    tracing::error!(error = %e, cycle = id, "could not record the failed cycle");
                }
            }
        }
    }

    /// Logs, once a day, that a bulk enrolment token of the profile's Entra directories expires
    /// within 30 days or has expired.
    async fn warn_about_enrolment_tokens(
        &self,
        settings: &Settings,
        profile: &SyncProfile,
        id: i64,
    ) -> Result<(), CycleFailure> {
        let graph: Vec<&str> = [&profile.source, &profile.target]
            .into_iter()
            .filter(|d| {
                matches!(
                    settings.config.directory(d),
                    Some(DirectoryConfig::Graph(_))
                )
            })
            .map(String::as_str)
            .collect();
        if graph.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let today = now / crate::enrolment::DAY_MS;
        let warnings = crate::enrolment::expiry_warnings(&*self.store, &graph, now).await?;
        let fresh: Vec<LogEntry> = match self.warned.lock() {
            Ok(mut seen) => warnings
                .into_iter()
                .filter(|w| seen.insert(w.clone(), today) != Some(today))
                .map(|w| LogEntry::warning("enrolment-token", w))
                .collect(),
            Err(_) => Vec::new(),
        };
        if !fresh.is_empty() {
            self.store
                .append_logs(Some(id), Some(&profile.name), &fresh, now)
                .await?;
        }
        Ok(())
    }

    async fn cycle(&self, name: &str, id: i64) -> Result<String, CycleFailure> {
        // One snapshot of the settings for the whole cycle: a console edit meanwhile applies
        // from the next cycle on, never to half of this one.
        let settings = self.settings.get();
        let profile = settings
            .config
            .profile(name)
            .cloned()
            .ok_or_else(|| CycleFailure {
                code: "config",
                message: EngineError::UnknownProfile(name.to_string()).to_string(),
            })?;
        let profile = &profile;
        self.warn_about_enrolment_tokens(&settings, profile, id)
            .await?;
        let (plan, src, tgt) = self.import_and_sync(&settings, profile, id).await?;
        if !plan.needs_approval() {
            let msg = "not needed: the plan has no writes".to_string();
            self.store
                .finish_cycle(id, name, &msg, &[], now_ms())
                .await?;
            return Ok(msg);
        }
        let approved = self
            .store
            .approval(name)
            .await?
            .is_some_and(|a| a.plan_hash == plan.hash);
        if !approved {
            let msg = format!(
                "awaiting approval: the What-If has {} write(s); approve plan {}",
                plan.writes.len(),
                &plan.hash[..12]
            );
            let log = LogEntry::warning(
                "whatif",
                format!("export skipped: {msg} (ferry sync approve {name})"),
            );
            self.store
                .finish_cycle(id, name, &msg, &[log], now_ms())
                .await?;
            return Ok(msg);
        }
        let target = settings
            .config
            .directory(&profile.target)
            .ok_or_else(|| CycleFailure {
                code: "config",
                message: "target directory vanished".into(),
            })?;
        self.progress(
            id,
            format!(
                "writing {} change(s) to {}",
                grouped(plan.writes.len() as u64),
                profile.target
            ),
        )
        .await;
        let t = std::time::Instant::now();
        let report = self
            .connector(&settings, target)
            .export(&plan.writes, &tgt.objects)
            .await
            .inspect(|_| {
                self.metrics
                    .stage(name, "export", t.elapsed().as_secs_f64())
            })
            .map_err(|e| CycleFailure {
                code: "export",
                message: e.to_string(),
            })?;
        drop((src, tgt));
        let mut logs = report.logs;
        if !report.initial_passwords.is_empty() {
            logs.push(self.deliver_passwords(id, name, &report.initial_passwords));
        }
        let msg = format!(
            "exported {} of {} write(s), {} failed",
            report.applied,
            plan.writes.len(),
            report.failed.len()
        );
        logs.push(if report.failed.is_empty() {
            LogEntry::info("export", msg.clone())
        } else {
            LogEntry::error("export", msg.clone())
        });
        self.store
            .append_logs(Some(id), Some(name), &logs, now_ms())
            .await?;
        // Read the target again so that what the export created is translated now, not next cycle.
        if report.applied > 0 {
            self.store.set_cycle_phase(id, "sync").await?;
            self.import_and_sync(&settings, profile, id).await?;
        }
        self.store
            .finish_cycle(id, name, &msg, &[], now_ms())
            .await?;
        Ok(msg)
    }

    async fn import_and_sync(
        &self,
        settings: &Settings,
        profile: &SyncProfile,
        id: i64,
    ) -> Result<(Plan, Side, Side), CycleFailure> {
        let cfg = &settings.config;
        let missing = |d: &str| CycleFailure {
            code: "config",
            message: format!("directory `{d}` is not configured"),
        };
        let sdir = cfg
            .directory(&profile.source)
            .ok_or_else(|| missing(&profile.source))?;
        let tdir = cfg
            .directory(&profile.target)
            .ok_or_else(|| missing(&profile.target))?;
        let t = std::time::Instant::now();
        let read: [Arc<AtomicU64>; 2] = Default::default();
        // Stopped when the imports end, however they end (a panicking connector included).
        let reporter = crate::AbortOnDrop(self.report_reading(id, read.clone()));
        let (src, tgt) = tokio::join!(
            ferry_directory::progress::counting(Arc::clone(&read[0]), self.import(settings, sdir)),
            ferry_directory::progress::counting(Arc::clone(&read[1]), self.import(settings, tdir))
        );
        drop(reporter);
        let (src, tgt) = (src?, tgt?);
        let stage = |s, t: std::time::Instant| {
            self.metrics
                .stage(&profile.name, s, t.elapsed().as_secs_f64())
        };
        stage("import", t);
        tracing::info!(
            cycle = id,
            elapsed_ms = t.elapsed().as_millis() as u64,
            rss_mib = rss_mib(),
            "import phase done"
        );
        self.store.set_cycle_phase(id, "sync").await?;
        self.progress(
            id,
            format!(
                "matching {} source and {} target objects",
                grouped(src.objects.len() as u64),
                grouped(tgt.objects.len() as u64)
            ),
        )
        .await;

        let t = std::time::Instant::now();
        let fingerprint = cfg.profile_fingerprint(profile);
        let plan = blocking(|| plan::build(profile, &fingerprint, &src.objects, &tgt.objects));
        stage("plan", t);
        tracing::info!(
            cycle = id,
            elapsed_ms = t.elapsed().as_millis() as u64,
            rss_mib = rss_mib(),
            "plan built"
        );
        let t = std::time::Instant::now();
        let stored = self.store.decision_digest(&profile.name).await?;
        let diff = blocking(|| plan::diff(&plan, &src.objects, &tgt.objects, &stored));
        drop(stored);
        stage("compare", t);
        tracing::info!(
            cycle = id,
            elapsed_ms = t.elapsed().as_millis() as u64,
            changed = diff.upserts.len(),
            rss_mib = rss_mib(),
            "decisions compared"
        );
        let mut logs: Vec<LogEntry> = src.logs.iter().chain(&tgt.logs).cloned().collect();
        logs.extend(plan::decision_logs(&plan, &diff, &profile.source));
        let c = &plan.counts;
        logs.push(LogEntry::info(
            "sync",
            format!(
                "{} source and {} target objects: {} matched, {} unmatched, {} ambiguous; {} decision(s) changed; {} write(s) planned",
                c.source_objects,
                c.target_objects,
                c.matched,
                c.unmatched,
                c.ambiguous,
                diff.upserts.len() + diff.removed.len(),
                plan.writes.len()
            ),
        ));
        self.progress(
            id,
            format!(
                "storing {} changed decision(s) and {} changed object(s)",
                grouped((diff.upserts.len() + diff.removed.len()) as u64),
                grouped(
                    [&src, &tgt]
                        .iter()
                        .map(|s| (s.upserts.len() + s.deletes.len()) as u64)
                        .sum()
                )
            ),
        )
        .await;
        let t = std::time::Instant::now();
        let history = plan::history_lines(&plan, &diff);
        let objects = [&src, &tgt]
            .iter()
            .map(|s| ObjectChanges {
                upserts: s.upserts.iter().map(|&(i, h)| (&s.objects[i], h)).collect(),
                deletes: s.deletes.clone(),
                state: s.state.clone(),
            })
            .collect();
        self.store
            .commit_sync(SyncCommit {
                cycle_id: id,
                now: now_ms(),
                objects,
                plan: &plan,
                decisions: &diff,
                history,
                logs: &logs,
            })
            .await?;
        stage("store", t);
        drop(diff);
        Ok((plan, src, tgt))
    }

    /// Says what the cycle is doing (`cycles.progress`). Only a figure for people: a failure to
    /// write it is logged and the cycle goes on.
    async fn progress(&self, id: i64, what: String) {
        if let Err(e) = self.store.set_cycle_progress(id, &what).await {
            tracing::warn!(cycle = id, error = %e, "could not record the cycle's progress");
        }
    }

    /// While the imports run: every second, how many objects each side has read so far (until
    /// the handle is aborted: hold it in an [`AbortOnDrop`](crate::AbortOnDrop)).
    fn report_reading(&self, id: i64, read: [Arc<AtomicU64>; 2]) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let mut shown = (u64::MAX, u64::MAX);
            loop {
                let (s, t) = (
                    read[0].load(Ordering::Relaxed),
                    read[1].load(Ordering::Relaxed),
                );
                if (s, t) != shown {
                    shown = (s, t);
                    let what = format!(
                        "read {} source and {} target objects",
                        grouped(s),
                        grouped(t)
                    );
                    if let Err(e) = store.set_cycle_progress(id, &what).await {
                        tracing::warn!(cycle = id, error = %e, "could not record the cycle's progress");
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    /// Imports one directory (full or delta) and works out what changed against the store.
    async fn import(
        &self,
        settings: &Settings,
        dir: &DirectoryConfig,
    ) -> Result<Side, CycleFailure> {
        let name = dir.name();
        let connector = self.connector(settings, dir);
        let prev = self.store.directory_state(name).await?;
        let now = now_ms();
        let full_every = match dir {
            DirectoryConfig::Ldap(l) => l.full_import_every.0.as_millis() as i64,
            DirectoryConfig::Graph(g) => g.full_import_every.0.as_millis() as i64,
            _ => 0,
        };
        let since = prev
            .as_ref()
            .filter(|p| {
                connector.supports_delta()
                    && p.last_full_import.is_some_and(|t| now - t < full_every)
            })
            .and_then(|p| p.watermark.clone());
        let started = std::time::Instant::now();
        let Imported {
            objects,
            full,
            watermark,
            removed,
            mut logs,
        } = connector
            .import(dir.object_types(), since.as_deref())
            .await
            .map_err(|e| CycleFailure {
                code: "import",
                message: format!("directory `{name}`: {e}"),
            })?;
        let fetched = objects.len();
        tracing::info!(
            directory = name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            objects = fetched,
            rss_mib = rss_mib(),
            "read"
        );
        let t = std::time::Instant::now();
        let (objects, upserts, deletes) = if full {
            let stored = self.store.object_digest(name).await?;
            blocking(|| {
                let upserts: Vec<(usize, u64)> = (0..objects.len())
                    .map(|i| (i, objects[i].content_hash()))
                    .filter(|&(i, h)| {
                        stored.get(&(objects[i].kind, objects[i].id.clone())) != Some(&h)
                    })
                    .collect();
                let present: FxHashSet<(ObjectKind, &str)> =
                    objects.iter().map(|o| (o.kind, o.id.as_str())).collect();
                let deletes = stored
                    .keys()
                    .filter(|(k, i)| !present.contains(&(*k, i.as_str())))
                    .cloned()
                    .collect();
                (objects, upserts, deletes)
            })
        } else {
            // Merge the changed objects into the stored ones.
            let mut all = self.store.load_objects(name).await?;
            let mut at: FxHashMap<(ObjectKind, String), usize> = all
                .iter()
                .enumerate()
                .map(|(i, o)| ((o.kind, o.id.clone()), i))
                .collect();
            let mut upserts = Vec::with_capacity(objects.len());
            for o in objects {
                let key = (o.kind, o.id.clone());
                match at.get(&key) {
                    Some(&i) if all[i] == o => {}
                    Some(&i) => {
                        upserts.push((i, o.content_hash()));
                        all[i] = o;
                    }
                    None => {
                        at.insert(key, all.len());
                        upserts.push((all.len(), o.content_hash()));
                        all.push(o);
                    }
                }
            }
            let mut deletes = Vec::new();
            if !removed.is_empty() {
                // Objects the directory reported deleted leave the store (and the translation table).
                let gone: FxHashSet<(ObjectKind, &str)> =
                    removed.iter().map(|(k, i)| (*k, i.as_str())).collect();
                let mut remap = vec![usize::MAX; all.len()];
                let mut kept = Vec::with_capacity(all.len());
                for (i, o) in all.into_iter().enumerate() {
                    if gone.contains(&(o.kind, o.id.as_str())) {
                        deletes.push((o.kind, o.id));
                    } else {
                        remap[i] = kept.len();
                        kept.push(o);
                    }
                }
                all = kept;
                upserts = upserts
                    .into_iter()
                    .filter(|&(i, _)| remap[i] != usize::MAX)
                    .map(|(i, h)| (remap[i], h))
                    .collect();
            }
            (all, upserts, deletes)
        };
        tracing::info!(
            directory = name,
            elapsed_ms = t.elapsed().as_millis() as u64,
            "compared with the store"
        );
        logs.push(LogEntry::info(
            "import",
            format!(
                "{} import of `{name}`: {fetched} object(s) read in {} ms; {} new or changed, {} removed",
                if full { "full" } else { "delta" },
                started.elapsed().as_millis(),
                upserts.len(),
                deletes.len()
            ),
        ));
        for l in &mut logs {
            l.directory.get_or_insert_with(|| name.to_string());
        }
        let state = DirectoryState {
            directory: name.to_string(),
            watermark: watermark.or_else(|| prev.as_ref().and_then(|p| p.watermark.clone())),
            last_full_import: if full {
                Some(now)
            } else {
                prev.as_ref().and_then(|p| p.last_full_import)
            },
            last_import: now,
            objects: objects.len() as i64,
        };
        Ok(Side {
            objects,
            upserts,
            deletes,
            state,
            logs,
        })
    }

    /// Waits until a cycle has finished (or the timeout, at most [`MAX_WAIT`], passes) and
    /// returns its record.
    pub async fn wait(
        &self,
        id: i64,
        timeout: Duration,
    ) -> Result<Option<ferry_store::CycleInfo>, StoreError> {
        let deadline = std::time::Instant::now() + timeout.min(MAX_WAIT);
        loop {
            let c = self.store.cycle(id).await?;
            if c.as_ref().is_none_or(|c| c.status != "running")
                || std::time::Instant::now() > deadline
            {
                return Ok(c);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

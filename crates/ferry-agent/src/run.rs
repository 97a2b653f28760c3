//! A migration run on the device: the runbooks of a [`MigrationOrder`] planned into steps and
//! carried out as a durable state machine. Each step's start is written to `run.json` before it
//! runs and its end after, so a killed agent (or a rebooted device) resumes at the step it was
//! in and never runs a finished step again. Every transition becomes a progress event in the
//! outbox and a line in the run's local log; both reach the server when it can be reached.

use crate::harvest::{self, Sources};
use crate::repermission::{self, Map, Mode};
use crate::state::{self, StateDir, now_ms};
use ferry_core::agent::{AgentEvent, HarvestedProfile, MigrationOrder};
use ferry_core::runbook::{JoinKind, PermissionMode, Runbook, Script};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pending,
    Started,
    Succeeded,
    Failed,
    Skipped,
}

impl Status {
    /// As events and `run.json` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Started => "started",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

pub use ferry_core::runbook::Action;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// `RUNBOOK/action`, as events and logs name it.
    pub id: String,
    pub runbook: Option<String>,
    pub action: Action,
    pub status: Status,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    #[serde(default)]
    pub message: String,
    /// How often the step was started (more than once: it was interrupted).
    #[serde(default)]
    pub attempts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    RolledBack,
}

impl RunStatus {
    /// As `run.json`, the agent's state and the server name it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::RolledBack => "rolled-back",
        }
    }
}

/// `run.json`: everything a run needs, so that it finishes without the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub run: String,
    pub batch: String,
    pub mode: String,
    pub order: MigrationOrder,
    /// The harvest when the run started (the homes re-permissioned by default).
    pub profiles: Vec<HarvestedProfile>,
    pub status: RunStatus,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub steps: Vec<Step>,
    /// Links made by home re-association (target home → source home), removed by rollback.
    #[serde(default)]
    pub home_links: Vec<(PathBuf, PathBuf)>,
    /// Whether this run created the nologin file (and so removes it).
    #[serde(default)]
    pub created_nologin: bool,
    #[serde(default)]
    pub created_legal_notice: bool,
}

/// The device-side settings a run uses.
#[derive(Clone, Debug)]
pub struct Env {
    pub state: StateDir,
    pub sources: Sources,
    /// pam_nologin's file: while it exists only root signs in (default `/etc/nologin`).
    pub nologin_file: PathBuf,
    /// The pre-login notice (default `/etc/issue.d/ferry-legal-notice.issue`, shown by agetty).
    pub legal_notice_file: PathBuf,
    pub threads: usize,
    /// Ids below this are the system's: a translation naming one is refused
    /// ([`ferry_core::privileged`]).
    pub min_id: u32,
}

impl RunState {
    /// Plans the steps of an order.
    pub fn plan(
        order: MigrationOrder,
        batch: &str,
        profiles: Vec<HarvestedProfile>,
        now: i64,
    ) -> RunState {
        let steps = ferry_core::runbook::plan_steps(&order.runbooks)
            .into_iter()
            .map(|p| Step {
                id: p.id,
                runbook: p.runbook,
                action: p.action,
                status: Status::Pending,
                started_at: None,
                ended_at: None,
                message: String::new(),
                attempts: 0,
            })
            .collect();
        RunState {
            run: order.run.clone(),
            batch: batch.to_string(),
            mode: order.mode.clone(),
            order,
            profiles,
            status: RunStatus::Running,
            started_at: now,
            ended_at: None,
            steps,
            home_links: Vec::new(),
            created_nologin: false,
            created_legal_notice: false,
        }
    }

    fn runbook(&self, name: Option<&str>) -> Option<&Runbook> {
        name.and_then(|n| self.order.runbooks.iter().find(|r| r.name == n))
    }

    pub fn progress(&self) -> u8 {
        let done = self
            .steps
            .iter()
            .filter(|s| matches!(s.status, Status::Succeeded | Status::Skipped))
            .count();
        ((done * 100) / self.steps.len().max(1)) as u8
    }

    /// The source → target map of the run's translation entries; an entry naming a privileged
    /// id is refused with its profile named.
    pub fn map(&self, min_id: u32) -> Result<Map, String> {
        Map::from_translation(&self.order.translation, min_id)
    }
}

/// Writes the run's state (before and after every step).
pub fn save(env: &Env, r: &RunState) -> Result<(), String> {
    env.state.write("run.json", r, 0o600)
}

/// A line in the run's local log.
pub fn log(env: &Env, run: &str, line: &str) {
    let ts = timestamp(now_ms());
    let mut text = String::new();
    for l in line.lines() {
        text.push_str(&format!("{ts} {l}\n"));
    }
    if let Err(e) = state::append(&env.state.run_file(run, "log"), text.as_bytes()) {
        eprintln!("ferry agent: {e}");
    }
}

/// `2026-11-22T08:50:01.123Z`.
fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| ms.to_string())
}

/// Queues a progress event for the server (durably, in order).
pub fn event(env: &Env, run: &str, e: AgentEvent) {
    #[derive(Serialize)]
    struct Line<'a> {
        run: &'a str,
        #[serde(flatten)]
        event: AgentEvent,
    }
    let mut line = serde_json::to_vec(&Line { run, event: e }).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = state::append(&env.state.path("outbox.jsonl"), &line) {
        eprintln!("ferry agent: {e}");
    }
}

fn emit(env: &Env, r: &RunState, i: usize) {
    let s = &r.steps[i];
    if s.status == Status::Pending {
        return;
    }
    let status = s.status.as_str();
    log(
        env,
        &r.run,
        &format!(
            "{} {status}{}{}",
            s.id,
            if s.message.is_empty() { "" } else { ": " },
            s.message
        ),
    );
    event(
        env,
        &r.run,
        AgentEvent {
            at: now_ms(),
            step: s.id.clone(),
            status: status.into(),
            message: s.message.chars().take(2000).collect(),
            progress: Some(r.progress()),
        },
    );
}

/// What a step ended with.
pub(crate) enum Outcome {
    Ok(String),
    Skip(String),
    Fail(String),
}

/// Carries out the run's remaining steps. A failed step ends the run: the steps after it are
/// skipped, except `restore-login`, which always runs. Returns the final state.
pub fn execute(env: &Env, mut r: RunState) -> RunState {
    if r.status != RunStatus::Running {
        return r;
    }
    let mut failed = r.steps.iter().any(|s| s.status == Status::Failed);
    for i in 0..r.steps.len() {
        if matches!(
            r.steps[i].status,
            Status::Succeeded | Status::Failed | Status::Skipped
        ) {
            continue;
        }
        if failed && r.steps[i].action != Action::RestoreLogin {
            r.steps[i].status = Status::Skipped;
            r.steps[i].message = "an earlier step failed".into();
            emit(env, &r, i);
            continue;
        }
        if r.steps[i].status == Status::Started {
            log(
                env,
                &r.run,
                &format!(
                    "{} was interrupted (attempt {}); running it again",
                    r.steps[i].id, r.steps[i].attempts
                ),
            );
        }
        r.steps[i].status = Status::Started;
        r.steps[i].started_at = Some(now_ms());
        r.steps[i].attempts += 1;
        r.steps[i].message.clear();
        if let Err(e) = save(env, &r) {
            // Without a durable record the step must not run.
            r.steps[i].status = Status::Failed;
            r.steps[i].message = e;
            failed = true;
            emit(env, &r, i);
            continue;
        }
        emit(env, &r, i);
        let outcome = run_step(env, &mut r, i);
        let s = &mut r.steps[i];
        s.ended_at = Some(now_ms());
        match outcome {
            Outcome::Ok(m) => {
                s.status = Status::Succeeded;
                s.message = m;
            }
            Outcome::Skip(m) => {
                s.status = Status::Skipped;
                s.message = m;
            }
            Outcome::Fail(m) => {
                s.status = Status::Failed;
                s.message = m;
                failed = true;
            }
        }
        if let Err(e) = save(env, &r) {
            log(env, &r.run, &e);
        }
        emit(env, &r, i);
    }
    r.status = if failed {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    r.ended_at = Some(now_ms());
    if let Err(e) = save(env, &r) {
        log(env, &r.run, &e);
    }
    if let Err(e) = record(env, &r) {
        log(env, &r.run, &e);
    }
    r
}

/// Keeps an ended run's final state (`runs/RUN.json`): a run that ended is not run again.
fn record(env: &Env, r: &RunState) -> Result<(), String> {
    env.state
        .write(&format!("runs/{}.json", state::safe_name(&r.run)), r, 0o600)
}

fn run_step(env: &Env, r: &mut RunState, i: usize) -> Outcome {
    let step = r.steps[i].clone();
    let rb = r.runbook(step.runbook.as_deref()).cloned();
    let run = r.run.clone();
    match (&step.action, rb) {
        (Action::Prerequisites, Some(rb)) => {
            let done = completed(env);
            let missing: Vec<&String> = rb
                .prerequisites
                .iter()
                .filter(|p| !done.contains(p))
                .collect();
            if missing.is_empty() {
                Outcome::Ok(if rb.prerequisites.is_empty() {
                    "none".into()
                } else {
                    format!("succeeded earlier: {}", rb.prerequisites.join(", "))
                })
            } else {
                Outcome::Fail(format!(
                    "prerequisite runbook(s) have not succeeded on this device: {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        (Action::LegalNotice, Some(rb)) => {
            let Some(n) = &rb.startup.legal_notice else {
                return Outcome::Skip("no legal notice".into());
            };
            if !env.legal_notice_file.exists() {
                r.created_legal_notice = true;
                let _ = save(env, r);
            }
            if let Some(p) = env.legal_notice_file.parent() {
                let _ = std::fs::create_dir_all(p);
            }
            match state::atomic_write(
                &env.legal_notice_file,
                format!("{}\n\n{}\n\n", n.title, n.text).as_bytes(),
                0o644,
            ) {
                Ok(()) => Outcome::Ok(format!(
                    "shown before sign-in: {}",
                    env.legal_notice_file.display()
                )),
                Err(e) => Outcome::Fail(e),
            }
        }
        (Action::PreventLogin, Some(rb)) => {
            if env.nologin_file.exists() {
                return Outcome::Ok(format!(
                    "{} exists already: only root can sign in",
                    env.nologin_file.display()
                ));
            }
            r.created_nologin = true;
            let _ = save(env, r);
            let msg = rb.user_experience.message.clone().unwrap_or_else(|| {
                "This device is being migrated. Please sign in again when it has finished.".into()
            });
            match state::atomic_write(&env.nologin_file, format!("{msg}\n").as_bytes(), 0o644) {
                Ok(()) => Outcome::Ok(format!(
                    "sign-in prevented while the migration runs ({})",
                    env.nologin_file.display()
                )),
                Err(e) => Outcome::Fail(e),
            }
        }
        (Action::PreScript { index }, Some(rb)) => {
            match rb.startup.pre_migration_scripts.get(*index) {
                Some(s) => script(env, r, &step.id, s),
                None => Outcome::Fail("the runbook has no such script".into()),
            }
        }
        (Action::PostScript { index }, Some(rb)) => {
            match rb.completion.post_migration_scripts.get(*index) {
                Some(s) => script(env, r, &step.id, s),
                None => Outcome::Fail("the runbook has no such script".into()),
            }
        }
        (Action::AppCommand { index }, Some(rb)) => {
            match rb.app_reconfiguration.commands.get(*index) {
                Some(s) => script(env, r, &step.id, s),
                None => Outcome::Fail("the runbook has no such command".into()),
            }
        }
        (Action::Leave, Some(rb)) => match &rb.device_state.leave_command {
            Some(c) => command(env, r, &step.id, c, None),
            None => Outcome::Skip(format!(
                "leaving {} is a Windows action; on Linux set device_state.leave_command (e.g. `realm leave`)",
                kind_name(rb.device_state.remove_from)
            )),
        },
        (Action::Join, Some(rb)) => match &rb.device_state.join_command {
            Some(c) => {
                let token = r.order.enrolment_token.clone();
                command(env, r, &step.id, c, token.as_ref())
            }
            None => Outcome::Skip(format!(
                "joining {} is a Windows action; on Linux set device_state.join_command (e.g. `realm join …`)",
                kind_name(rb.device_state.join)
            )),
        },
        (Action::OnedriveCloudOnly, _) => Outcome::Skip("OneDrive is not on Linux devices".into()),
        (Action::Repermission, Some(rb)) => repermission_step(env, r, &rb),
        (Action::HomeReassociation, Some(_)) => reassociate_homes(env, r),
        (Action::RunbookDone, Some(rb)) => {
            let mut done = completed(env);
            if !done.contains(&rb.name) {
                done.push(rb.name.clone());
            }
            match env.state.write("completed.json", &done, 0o644) {
                Ok(()) => Outcome::Ok(format!("runbook `{}` succeeded", rb.name)),
                Err(e) => Outcome::Fail(e),
            }
        }
        (Action::RestoreLogin, _) => {
            let mut notes = Vec::new();
            for (created, p) in [
                (r.created_nologin, env.nologin_file.clone()),
                (r.created_legal_notice, env.legal_notice_file.clone()),
            ] {
                if created {
                    match std::fs::remove_file(&p) {
                        Ok(()) => notes.push(format!("removed {}", p.display())),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Outcome::Fail(format!("{}: {e}", p.display())),
                    }
                }
            }
            Outcome::Ok(if notes.is_empty() {
                "nothing to restore".into()
            } else {
                notes.join("; ")
            })
        }
        (Action::Done, _) => Outcome::Ok(format!("run {run} finished")),
        (_, None) => Outcome::Fail("the step's runbook is not in the order".into()),
    }
}

fn kind_name(k: JoinKind) -> &'static str {
    match k {
        JoinKind::None => "nothing",
        JoinKind::Ad => "Active Directory",
        JoinKind::EntraId => "Entra ID",
    }
}

/// Runbooks that succeeded on this device.
pub fn completed(env: &Env) -> Vec<String> {
    env.state
        .read::<Vec<String>>("completed.json")
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The environment scripts and commands get: where to find the run's translation.
fn script_env(env: &Env, r: &RunState, cmd: &mut Command) {
    let tr = env.state.run_file(&r.run, "translation.json");
    if !tr.exists() {
        let _ = state::atomic_write(
            &tr,
            &serde_json::to_vec_pretty(&r.order.translation).unwrap_or_default(),
            0o600,
        );
    }
    cmd.env("FERRY_RUN", &r.run)
        .env("FERRY_BATCH", &r.batch)
        .env("FERRY_TRANSLATION", tr)
        .env("FERRY_STATE_DIR", &env.state.root);
}

pub(crate) fn script(env: &Env, r: &RunState, id: &str, s: &Script) -> Outcome {
    let shell = match s.interpreter.as_str() {
        "sh" => "sh",
        "bash" => "bash",
        other => {
            let m = format!("`{other}` scripts run on Windows devices, not on Linux");
            return if s.required {
                Outcome::Fail(m)
            } else {
                Outcome::Skip(m)
            };
        }
    };
    let file = env
        .state
        .run_file(&r.run, &format!("{}.sh", state::safe_name(id)));
    if let Err(e) = state::atomic_write(&file, s.body.as_bytes(), 0o700) {
        return Outcome::Fail(e);
    }
    let mut cmd = Command::new(shell);
    cmd.arg(&file);
    script_env(env, r, &mut cmd);
    let out = run_captured(
        env,
        &r.run,
        &s.name,
        cmd,
        Duration::from_secs(u64::from(s.timeout_seconds)),
    );
    match out {
        Ok(m) => Outcome::Ok(m),
        Err(m) if !s.required => Outcome::Ok(format!("{m} (not required: the run goes on)")),
        Err(m) => Outcome::Fail(m),
    }
}

fn command(
    env: &Env,
    r: &RunState,
    id: &str,
    c: &str,
    token: Option<&ferry_core::agent::EnrolmentTokenGrant>,
) -> Outcome {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(c);
    script_env(env, r, &mut cmd);
    let token_file = env.state.run_file(&r.run, "enrolment-token");
    if let Some(t) = token {
        use base64::Engine;
        let bytes =
            match base64::engine::general_purpose::STANDARD.decode(t.content_base64.expose()) {
                Ok(b) => b,
                Err(e) => return Outcome::Fail(format!("the enrolment token is not base64: {e}")),
            };
        if let Err(e) = state::atomic_write(&token_file, &bytes, 0o600) {
            return Outcome::Fail(e);
        }
        cmd.env("FERRY_ENROLMENT_TOKEN_FILE", &token_file)
            .env("FERRY_ENROLMENT_PACKAGE_UPN", &t.package_upn);
    }
    let out = run_captured(env, &r.run, id, cmd, Duration::from_secs(1800));
    let _ = std::fs::remove_file(&token_file);
    match out {
        Ok(m) => Outcome::Ok(m),
        Err(m) => Outcome::Fail(m),
    }
}

/// Runs a process in its own process group with a timeout, its output going to the run log.
fn run_captured(
    env: &Env,
    run: &str,
    name: &str,
    mut cmd: Command,
    timeout: Duration,
) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("`{name}` could not start: {e}"))?;
    let pid = child.id();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            // At most 1 MiB of a stream is kept.
            let _ = (&mut r).take(1 << 20).read_to_end(&mut b);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            b
        })
    })
    .collect();
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() >= timeout => {
                if let Some(pg) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
                }
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("`{name}`: {e}")),
        }
    };
    let outputs: Vec<Vec<u8>> = readers
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    for (stream, b) in ["stdout", "stderr"].iter().zip(&outputs) {
        if !b.is_empty() {
            log(
                env,
                run,
                &format!(
                    "{name} {stream}:\n{}",
                    String::from_utf8_lossy(b).trim_end()
                ),
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    match status {
        None => Err(format!(
            "`{name}` was stopped after its timeout of {} s",
            timeout.as_secs()
        )),
        Some(s) if s.success() => Ok(format!("`{name}` finished in {secs:.1} s")),
        Some(s) => Err(format!(
            "`{name}` failed ({s}) after {secs:.1} s; its output is in the run log"
        )),
    }
}

/// The paths a runbook re-permissions on this device: its own, or the homes of the translated
/// profiles; those that exist.
pub(crate) fn permission_paths(r: &RunState, rb: &Runbook) -> Vec<PathBuf> {
    let p = &rb.permission_updates;
    if p.paths.is_empty() {
        r.order
            .translation
            .iter()
            .filter_map(|t| r.profiles.iter().find(|h| h.name == t.profile))
            .map(|h| PathBuf::from(&h.home))
            .filter(|h| h.exists())
            .collect()
    } else {
        p.paths
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect()
    }
}

fn repermission_step(env: &Env, r: &RunState, rb: &Runbook) -> Outcome {
    let map = match r.map(env.min_id) {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(format!("the translation entries make no usable map: {e}")),
    };
    if map.uids.is_empty() && map.gids.is_empty() {
        return Outcome::Skip(format!(
            "no profile of this device has a translation entry with uids (untranslated: {})",
            r.order.untranslated.join(", ")
        ));
    }
    let p = &rb.permission_updates;
    let paths = permission_paths(r, rb);
    if paths.is_empty() {
        return Outcome::Skip("none of the paths exists on this device".into());
    }
    let opts = repermission::Options {
        mode: match p.mode {
            PermissionMode::Add => Mode::Add,
            _ => Mode::AddAndRemove,
        },
        what_if: false,
        excludes: Vec::new(),
        ignore: p.ignore.clone(),
        threads: env.threads,
        cross_devices: false,
    };
    log(
        env,
        &r.run,
        &format!(
            "re-permissioning {} ({} uid, {} gid mappings, {:?})",
            paths
                .iter()
                .map(|p| repermission::show(p))
                .collect::<Vec<_>>()
                .join(", "),
            map.uids.len(),
            map.gids.len(),
            opts.mode
        ),
    );
    let journal = env.state.run_file(&r.run, "journal");
    match repermission::run(&paths, &map, &opts, Some(&journal)) {
        Ok(s) => {
            for (p, e) in s.failures.iter().take(1000) {
                log(
                    env,
                    &r.run,
                    &format!("  failed: {}: {e}", repermission::show(p)),
                );
            }
            for (p, w) in s.warnings.iter().take(1000) {
                log(
                    env,
                    &r.run,
                    &format!("  note: {}: {w}", repermission::show(p)),
                );
            }
            let m = format!(
                "{} scanned, {} changed, {} unchanged, {} failed in {:.1} s",
                s.scanned, s.changed, s.unchanged, s.failed, s.seconds
            );
            // Single files that failed are reported; they do not stop the migration.
            Outcome::Ok(m)
        }
        Err(e) => Outcome::Fail(e),
    }
}

/// The target user receives the source user's home: where the target account's home (as this
/// device resolves it) is not the source home and does not exist yet, it becomes a link to it.
fn reassociate_homes(env: &Env, r: &mut RunState) -> Outcome {
    let mut notes = Vec::new();
    let local = harvest::read_passwd(&env.sources.passwd).unwrap_or_default();
    for t in r.order.translation.clone() {
        let (Some(_), Some(tuid)) = (t.source_uid, t.target_uid) else {
            continue;
        };
        let Some(src) = r.profiles.iter().find(|h| h.name == t.profile) else {
            continue;
        };
        let src_home = PathBuf::from(&src.home);
        let Some(target) = harvest::account_by_uid(&env.sources, &local, tuid) else {
            notes.push(format!(
                "{}: target uid {tuid} is not known on this device yet; its home stays {}",
                t.profile,
                src_home.display()
            ));
            continue;
        };
        if target.home == src_home {
            notes.push(format!(
                "{}: the target's home is {}",
                t.profile,
                src_home.display()
            ));
            continue;
        }
        if r.home_links.iter().any(|(l, _)| *l == target.home) {
            continue;
        }
        if target.home.symlink_metadata().is_ok() {
            notes.push(format!(
                "{}: {} exists; left alone",
                t.profile,
                target.home.display()
            ));
            continue;
        }
        if let Some(parent) = target.home.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            return Outcome::Fail(format!("{}: {e}", parent.display()));
        }
        // Recorded first: a kill between the two leaves a record whose link rollback skips.
        r.home_links.push((target.home.clone(), src_home.clone()));
        let _ = save(env, r);
        if let Err(e) = std::os::unix::fs::symlink(&src_home, &target.home) {
            return Outcome::Fail(format!("{}: {e}", target.home.display()));
        }
        let _ = std::os::unix::fs::lchown(&target.home, Some(tuid), Some(target.gid));
        notes.push(format!(
            "{} → {}: {} now leads to {}",
            t.profile,
            target.name,
            target.home.display(),
            src_home.display()
        ));
    }
    if notes.is_empty() {
        Outcome::Skip("no translated profile".into())
    } else {
        Outcome::Ok(notes.join("; "))
    }
}

/// `ferry agent rollback`: undoes the last run's permission changes (its journal, newest change
/// first) and removes the home links it made.
pub fn rollback(env: &Env) -> Result<String, String> {
    let Some(_lock) = env.state.try_lock("lock")? else {
        return Err("a migration is running on this device; roll back when it has ended".into());
    };
    let Some(mut r) = env.state.read::<RunState>("run.json")? else {
        return Err("no migration has run on this device".into());
    };
    if r.status == RunStatus::RolledBack {
        return Err(format!("run {} was rolled back already", r.run));
    }
    let journal = env.state.run_file(&r.run, "journal");
    let mut msg = Vec::new();
    if journal.exists() {
        let s = repermission::undo(&journal, env.threads)?;
        for (p, e) in &s.failures {
            log(
                env,
                &r.run,
                &format!("rollback: {}: {e}", repermission::show(p)),
            );
        }
        msg.push(format!(
            "{} file(s) restored, {} failed",
            s.changed, s.failed
        ));
    } else {
        msg.push("no permission changes to undo".into());
    }
    for (link, to) in r.home_links.iter().rev() {
        if std::fs::read_link(link).ok().as_deref() == Some(to.as_path()) {
            std::fs::remove_file(link).map_err(|e| format!("{}: {e}", link.display()))?;
            msg.push(format!("removed {}", link.display()));
        }
    }
    let ran: Vec<String> = r.order.runbooks.iter().map(|b| b.name.clone()).collect();
    let done: Vec<String> = completed(env)
        .into_iter()
        .filter(|n| !ran.contains(n))
        .collect();
    env.state.write("completed.json", &done, 0o644)?;
    r.status = RunStatus::RolledBack;
    save(env, &r)?;
    record(env, &r)?;
    let m = msg.join("; ");
    log(env, &r.run, &format!("rollback: {m}"));
    event(
        env,
        &r.run,
        AgentEvent {
            at: now_ms(),
            step: "rollback".into(),
            status: "succeeded".into(),
            message: m.clone(),
            progress: None,
        },
    );
    Ok(m)
}

/// One line about a run: its id, status and how many steps are done.
pub fn describe(r: &RunState) -> String {
    let done = r
        .steps
        .iter()
        .filter(|s| matches!(s.status, Status::Succeeded | Status::Skipped))
        .count();
    format!(
        "run {} ({}): {done}/{} steps",
        r.run,
        r.status.as_str(),
        r.steps.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}

//! `ferry agent run`: enroll once, then check in on the server's interval, harvest profiles,
//! and start a due migration when the schedule allows it (PRODUCT §3):
//!
//! - before Available From nothing happens;
//! - offered (Available From has passed): the user starts it (`ferry agent start-now`) or snoozes
//!   it (`ferry agent snooze 5m|15m|30m|1h|4h|1d|1w`), never past Enforced After;
//! - enforced (Enforced After has passed): it starts at the first check-in at which nobody is
//!   signed in (logind sessions, else `who`); check-ins come every minute, well within the
//!   seed's 15 minutes.
//!
//! A migration starts only right after a successful check-in that returned it (fresh runbooks,
//! schedule and translation). Once started it finishes without the server: events and logs wait
//! in the state dir and are sent when the server answers again.

use crate::client::{CallError, Client};
use crate::harvest::{self, Sources};
use crate::run::{self, Env, RunState, RunStatus};
use crate::state::{self, StateDir, now_ms};
use ferry_core::agent::{
    AgentEvent, Assignment, CheckinRequest, CheckinResponse, Credential, DeviceFacts,
    DevicePreflight, HarvestedProfile, PreflightCheck, Verification,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The snooze choices (minutes) a user has.
pub const SNOOZE_CHOICES: &[(&str, u32)] = &[
    ("5m", 5),
    ("15m", 15),
    ("30m", 30),
    ("1h", 60),
    ("4h", 240),
    ("1d", 1440),
    ("1w", 10_080),
];

#[derive(Clone, Debug)]
pub struct Config {
    /// The agent endpoint (`https://host:5443/agent`); default: the one enrolled with.
    pub server: Option<String>,
    pub psk: Option<Credential>,
    pub fingerprint: Option<String>,
    pub state_dir: PathBuf,
    pub once: bool,
    pub sources: Sources,
    /// Prints one line per signed-in session (default: `loginctl list-sessions`, else `who`).
    pub sessions_command: Option<String>,
    pub nologin_file: PathBuf,
    pub legal_notice_file: PathBuf,
    pub threads: usize,
    /// Ids below this are the system's; translations naming one are refused.
    pub min_id: u32,
    /// Check-in interval instead of the server's (tests, demos).
    pub poll_seconds: Option<u32>,
    /// Pre-flight: the file whose presence says a reboot is pending (`/run/reboot-required`).
    pub reboot_required_file: PathBuf,
    /// Pre-flight: free space (MiB) each file system the run writes must keep.
    pub min_free_mb: u64,
}

impl Config {
    pub fn env(&self, state: StateDir) -> Env {
        Env {
            state,
            sources: self.sources.clone(),
            nologin_file: self.nologin_file.clone(),
            legal_notice_file: self.legal_notice_file.clone(),
            threads: self.threads,
            min_id: self.min_id,
        }
    }
}

/// `agent.json`: who this agent is to its server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub server: String,
    pub fingerprint: String,
    pub agent_id: i64,
    pub node_key: Credential,
    pub device_id: String,
    pub enrolled_at: i64,
}

/// `offer.json`: the user's answers to the offered run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub run: String,
    pub snoozed_until: Option<i64>,
    pub snoozes: u32,
    pub start_now: bool,
}

/// A signed-in user's request (a file in `requests/`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `start-now` or `snooze`.
    pub action: String,
    #[serde(default)]
    pub minutes: Option<u32>,
}

/// `status.json`: what `ferry agent status` shows; readable by everyone, so no secrets.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    pub agent_id: Option<i64>,
    pub server: String,
    pub hostname: String,
    /// `idle`, `assigned`, `offered`, `waiting`, `running`, `succeeded`, `failed`, `rolled-back`.
    pub state: String,
    pub detail: String,
    pub last_contact: Option<i64>,
    pub last_error: Option<String>,
    pub assignment: Option<Assignment>,
    pub offer: Option<OfferView>,
    pub run: Option<RunView>,
    pub blocked: Option<String>,
    /// The newest pre-flight (the device's own checks).
    #[serde(default)]
    pub preflight: Option<DevicePreflight>,
    /// The answer to the newest request: (its file name, the answer).
    pub last_request: Option<(String, String)>,
    pub updated_at: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OfferView {
    pub run: String,
    pub mode: String,
    pub message: Option<String>,
    pub enforced_after: i64,
    pub snoozed_until: Option<i64>,
    pub snoozes_left: Option<u32>,
    pub choices: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunView {
    pub run: String,
    pub status: String,
    pub progress: u8,
    pub step: Option<String>,
}

/// What to do about a due migration now.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Start,
    Wait(String),
}

/// The schedule's rule (see the module docs).
pub fn decide(mode: &str, offer: &Offer, now: i64, sessions: usize) -> Decision {
    if offer.start_now {
        return Decision::Start;
    }
    if mode == "enforced" {
        return if sessions == 0 {
            Decision::Start
        } else {
            Decision::Wait(format!(
                "enforced: starts when nobody is signed in ({sessions} session(s) open)"
            ))
        };
    }
    match offer.snoozed_until {
        Some(t) if t > now => Decision::Wait(format!("snoozed until {}", show_time(t))),
        _ => Decision::Wait(
            "offered: start it with `ferry agent start-now` or snooze it with `ferry agent snooze 5m|15m|30m|1h|4h|1d|1w`".into(),
        ),
    }
}

/// Applies a user's request to the offer; the answer says what happened.
pub fn apply_request(
    req: &Request,
    offer: &mut Offer,
    mode: &str,
    enforced_after: i64,
    max_snoozes: Option<u32>,
    now: i64,
) -> Result<String, String> {
    match req.action.as_str() {
        "start-now" => {
            offer.start_now = true;
            Ok("starting the migration now".into())
        }
        "snooze" => {
            let m = req
                .minutes
                .filter(|m| SNOOZE_CHOICES.iter().any(|(_, c)| c == m))
                .ok_or("snooze for 5m, 15m, 30m, 1h, 4h, 1d or 1w")?;
            if mode == "enforced" || now >= enforced_after {
                return Err("the migration is enforced now; it can no longer be snoozed".into());
            }
            if offer.start_now {
                return Err("the migration is starting; it can no longer be snoozed".into());
            }
            if let Some(max) = max_snoozes
                && offer.snoozes >= max
            {
                return Err(format!("no snoozes left (the runbook allows {max})"));
            }
            let until = (now + i64::from(m) * 60_000).min(enforced_after);
            offer.snoozed_until = Some(until);
            offer.snoozes += 1;
            Ok(if until == enforced_after {
                format!(
                    "snoozed until {}, when the migration is enforced",
                    show_time(until)
                )
            } else {
                format!("snoozed until {}", show_time(until))
            })
        }
        other => Err(format!("`{other}` is not start-now or snooze")),
    }
}

pub fn show_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M %Z")
                .to_string()
        })
        .unwrap_or_else(|_| ms.to_string())
}

/// This device's facts (Linux).
pub fn device_facts() -> DeviceFacts {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let mut device_id = read("/etc/machine-id");
    if device_id.is_empty() {
        device_id = read("/var/lib/dbus/machine-id");
    }
    let os_version = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    DeviceFacts {
        device_id,
        hostname: read("/proc/sys/kernel/hostname"),
        os: "linux".into(),
        os_version,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        directory_object_id: None,
        joined_to: None,
    }
}

/// Signed-in sessions.
pub fn sessions(cmd: Option<&str>) -> usize {
    let count = |out: std::process::Output| {
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        })
    };
    if let Some(c) = cmd {
        return std::process::Command::new("sh")
            .args(["-c", c])
            .output()
            .ok()
            .and_then(count)
            .unwrap_or(0);
    }
    std::process::Command::new("loginctl")
        .args(["list-sessions", "--no-legend"])
        .output()
        .ok()
        .and_then(count)
        .or_else(|| {
            std::process::Command::new("who")
                .output()
                .ok()
                .and_then(count)
        })
        .unwrap_or(0)
}

struct Agent {
    cfg: Config,
    env: Env,
    client: Client,
    ident: Identity,
    status: Status,
    harvest: Option<(std::time::Instant, Vec<HarvestedProfile>)>,
    /// The check-in answer that holds the current order.
    last: Option<CheckinResponse>,
    /// When the last pre-flight ran, and whether the server has it yet.
    preflight_at: Option<std::time::Instant>,
    preflight_unsent: Option<DevicePreflight>,
    /// The assigned runbooks as fetched for a pre-flight ahead of the order.
    runbooks: Vec<ferry_core::runbook::Runbook>,
}

/// A run's post-flight evidence, if it has one.
pub fn verification_of(env: &Env, run: &str) -> Result<Option<Verification>, String> {
    env.state.read(&format!(
        "runs/{}.verification.json",
        crate::state::safe_name(run)
    ))
}

/// The state an ended run gives the device: its status, refined by its post-flight
/// (`verified`, `verification-failed`; after a rollback, `recovery-required` when it is not
/// proved).
pub fn run_state(env: &Env, r: &RunState) -> Result<String, String> {
    Ok(match (r.status, verification_of(env, &r.run)?) {
        (RunStatus::Succeeded, Some(v)) if v.after == "run" => if v.ok() {
            "verified"
        } else {
            "verification-failed"
        }
        .into(),
        (_, Some(v)) if v.after == "rollback" && !v.ok() => "recovery-required".into(),
        (s, _) => s.as_str().into(),
    })
}

/// How often a device in a batch runs its pre-flight ahead of its run.
pub const PREFLIGHT_EVERY: Duration = Duration::from_secs(15 * 60);

/// How `run` ended (with `--once`, or on a fatal error).
#[derive(Debug)]
pub struct Ended {
    pub state: String,
    pub detail: String,
    pub failed: bool,
}

/// `ferry agent run`.
pub async fn run(cfg: Config) -> Result<Ended, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sd = StateDir::open(&cfg.state_dir)?;
    let Some(_daemon) = sd.try_lock("daemon.lock")? else {
        return Err(format!(
            "another agent is running with the state directory {}",
            sd.root.display()
        ));
    };
    let env = cfg.env(sd.clone());
    let ident = enrolled(&cfg, &sd).await?;
    let client =
        Client::new(&ident.server, &ident.fingerprint)?.with_node_key(ident.node_key.clone());
    let mut a = Agent {
        status: Status {
            agent_id: Some(ident.agent_id),
            server: ident.server.clone(),
            hostname: device_facts().hostname,
            state: "idle".into(),
            ..Status::default()
        },
        cfg,
        env,
        client,
        ident,
        harvest: None,
        last: None,
        preflight_at: None,
        preflight_unsent: None,
        runbooks: Vec::new(),
    };
    a.main_loop().await
}

/// The stored identity, or a new enrollment with the pre-shared key.
async fn enrolled(cfg: &Config, sd: &StateDir) -> Result<Identity, String> {
    if let Some(mut id) = sd.read::<Identity>("agent.json")? {
        let moved = cfg.server.as_ref().is_some_and(|s| *s != id.server)
            || cfg
                .fingerprint
                .as_ref()
                .is_some_and(|f| *f != id.fingerprint);
        if !moved {
            return Ok(id);
        }
        if cfg.psk.is_none() {
            // The same server under a new name or certificate keeps the node key.
            id.server = cfg.server.clone().unwrap_or(id.server);
            id.fingerprint = cfg.fingerprint.clone().unwrap_or(id.fingerprint);
            sd.write("agent.json", &id, 0o600)?;
            return Ok(id);
        }
    }
    enroll(cfg, sd).await
}

async fn enroll(cfg: &Config, sd: &StateDir) -> Result<Identity, String> {
    let (Some(server), Some(fp), Some(psk)) = (&cfg.server, &cfg.fingerprint, &cfg.psk) else {
        return Err(
            "this agent is not enrolled yet: give --server URL --psk KEY --fingerprint SHA256 (from `ferry agents endpoint` and `ferry psk create`)".into(),
        );
    };
    let client = Client::new(server, fp)?;
    let device = device_facts();
    let profiles = harvest::harvest(&cfg.sources).unwrap_or_default();
    // The key this device was given before proves it is the device enrolled under its name;
    // without it, the server holds the enrollment for an operator.
    let previous = sd
        .read::<Identity>("agent.json")
        .ok()
        .flatten()
        .filter(|id| id.server == *server && id.device_id == device.device_id)
        .map(|id| id.node_key);
    let r = client
        .enroll(psk, device.clone(), profiles, previous)
        .await
        .map_err(|e| format!("enrollment failed: {e}"))?;
    let id = Identity {
        server: server.clone(),
        fingerprint: fp.clone(),
        agent_id: r.agent_id,
        node_key: r.node_key,
        device_id: device.device_id,
        enrolled_at: now_ms(),
    };
    sd.write("agent.json", &id, 0o600)?;
    match &r.held {
        Some(h) => eprintln!(
            "ferry agent: enrollment request {} with {server} waits for an operator ({}): `ferry agents approve {}`",
            h.request_id, h.reason, h.request_id
        ),
        None => eprintln!(
            "ferry agent: enrolled as agent {} with {server}",
            id.agent_id
        ),
    }
    Ok(id)
}

impl Agent {
    async fn main_loop(&mut self) -> Result<Ended, String> {
        loop {
            // A started run resumes first, whether or not the server answers.
            if let Some(r) = self.env.state.read::<RunState>("run.json")?
                && r.status == RunStatus::Running
            {
                self.execute(r).await?;
                self.flush().await;
                if self.cfg.once {
                    return Ok(self.ended());
                }
                continue;
            }
            // Queued events first: the check-in's state (a post-flight's `verified`) is newer
            // than the `done` event the server would otherwise take after it.
            self.flush().await;
            let interval = self.check_in().await?;
            self.flush().await;
            let start = self.consider().await?;
            self.write_status();
            if start {
                continue;
            }
            if self.cfg.once {
                return Ok(self.ended());
            }
            self.sleep(interval).await;
        }
    }

    fn ended(&self) -> Ended {
        Ended {
            state: self.status.state.clone(),
            detail: self.status.detail.clone(),
            failed: matches!(
                self.status.state.as_str(),
                "failed" | "verification-failed" | "recovery-required"
            ),
        }
    }

    fn profiles(&mut self) -> Vec<HarvestedProfile> {
        let fresh = self
            .harvest
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(3600));
        if !fresh {
            match harvest::harvest(&self.cfg.sources) {
                Ok(p) => self.harvest = Some((std::time::Instant::now(), p)),
                Err(e) => eprintln!("ferry agent: profile harvest: {e}"),
            }
        }
        self.harvest
            .as_ref()
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    /// One check-in; returns the interval to the next. A device in a batch checks itself ahead
    /// of its run (every [`PREFLIGHT_EVERY`], and each minute while the server holds it back as
    /// not ready) and checks in again at once with the result, so that the batch's page shows
    /// it ready or not days before Enforced After.
    async fn check_in(&mut self) -> Result<Duration, String> {
        let interval = self.check_in_once().await?;
        let due = self.last.as_ref().is_some_and(|r| {
            let not_ready = r
                .blocked
                .as_deref()
                .is_some_and(|b| b.starts_with("not ready"));
            r.assignment.is_some()
                && self.preflight_at.is_none_or(|at| {
                    at.elapsed() >= PREFLIGHT_EVERY
                        || (not_ready && at.elapsed() >= Duration::from_secs(60))
                })
        });
        if !due {
            return Ok(interval);
        }
        let runbooks = self.assigned_runbooks().await;
        let profiles = self.profiles();
        let pf = self.preflight(&runbooks, &profiles);
        self.status.preflight = Some(pf.clone());
        self.set_unsent(Some(pf))?;
        self.check_in_once().await
    }

    async fn check_in_once(&mut self) -> Result<Duration, String> {
        self.verify().await?;
        let profiles = self.profiles();
        let digest = harvest::digest(&profiles);
        let sent: Option<String> = self.env.state.read("harvest.json")?;
        let state = match self.env.state.read::<RunState>("run.json")? {
            Some(r) if r.status != RunStatus::Running => run_state(&self.env, &r)?,
            _ if self.status.state == "offered" => "offered".into(),
            _ => "idle".into(),
        };
        let verification: Option<Verification> = self
            .env
            .state
            .read::<Option<Verification>>("verification.json")?
            .flatten();
        // A pre-flight not yet reported (kept across restarts: `--once` runs, a reboot).
        if self.preflight_unsent.is_none() {
            self.preflight_unsent = self
                .env
                .state
                .read::<Option<DevicePreflight>>("preflight.json")?
                .flatten();
        }
        // Within the bounds the server takes, whatever the paths the reports name (kept from
        // before those bounds were applied where the reports are made).
        let mut preflight = self.preflight_unsent.clone();
        if let Some(p) = &mut preflight {
            ferry_core::agent::bound_checks(&mut p.checks, ferry_core::agent::PREFLIGHT_DETAIL_MAX);
        }
        let mut verification = verification;
        if let Some(v) = &mut verification {
            ferry_core::agent::bound_checks(
                &mut v.checks,
                ferry_core::agent::VERIFICATION_DETAIL_MAX,
            );
        }
        let req = CheckinRequest {
            protocol: ferry_core::agent::PROTOCOL_VERSION,
            profiles: (sent.as_deref() != Some(&digest)).then_some(profiles),
            state: Some(state),
            agent_version: Some(env!("CARGO_PKG_VERSION").into()),
            preflight,
            verification,
            clock: Some(now_ms()),
        };
        let fallback = Duration::from_secs(u64::from(self.cfg.poll_seconds.unwrap_or(60)));
        match self.client.checkin(&req).await {
            Ok(resp) => {
                if req.profiles.is_some() {
                    self.env.state.write("harvest.json", &digest, 0o600)?;
                }
                self.reports_done(&req)?;
                if resp.assignment.is_none() {
                    self.preflight_at = None;
                    self.runbooks.clear();
                }
                if let Some(id) = resp.agent_id
                    && id != self.ident.agent_id
                {
                    // A held enrollment was approved: the agent learns its id.
                    self.ident.agent_id = id;
                    self.env.state.write("agent.json", &self.ident, 0o600)?;
                    self.status.agent_id = Some(id);
                }
                self.status.last_contact = Some(now_ms());
                self.status.last_error = None;
                self.status.assignment = resp.assignment.clone();
                self.status.blocked = resp.blocked.clone();
                let secs = self
                    .cfg
                    .poll_seconds
                    .unwrap_or(resp.poll_interval_seconds)
                    .clamp(1, 3600);
                self.last = Some(resp);
                Ok(Duration::from_secs(u64::from(secs)))
            }
            Err(CallError::Refused { code, error, .. }) if code == "pending_approval" => {
                // Nothing runs until an operator decides; the agent keeps asking.
                self.last = None;
                self.status.last_error = Some(error.clone());
                self.status.state = "pending-approval".into();
                self.status.detail = error;
                Ok(fallback)
            }
            Err(CallError::Refused { code, error, .. })
                if code == "bad_request"
                    && (req.preflight.is_some() || req.verification.is_some()) =>
            {
                // A report the server refuses for good would be sent again at every check-in,
                // and refused with it: it is dropped (the run's evidence stays in its state
                // directory), and the agent checks in again without it.
                eprintln!(
                    "ferry agent: the server refused this check-in's pre-flight or post-flight ({error}); it is dropped"
                );
                self.reports_done(&req)?;
                self.status.last_error = Some(error);
                Ok(Duration::from_secs(1))
            }
            Err(CallError::Refused { code, error, .. }) if code == "enrollment_refused" => Err(
                format!("the server refused this device's enrollment ({error}); nothing was run"),
            ),
            Err(CallError::Refused { code, error, .. }) if code == "unauthorized" => {
                if self.cfg.psk.is_some() {
                    eprintln!(
                        "ferry agent: the server no longer knows this agent ({error}); enrolling again"
                    );
                    self.ident = enroll(&self.cfg, &self.env.state).await?;
                    self.client = Client::new(&self.ident.server, &self.ident.fingerprint)?
                        .with_node_key(self.ident.node_key.clone());
                    self.status.agent_id = Some(self.ident.agent_id);
                    return Ok(Duration::from_secs(1));
                }
                Err(format!(
                    "the server refuses this agent's node key ({error}); enroll again with --psk KEY"
                ))
            }
            Err(e) => {
                eprintln!("ferry agent: check-in: {e}");
                if self.status.state == "pending-approval" {
                    self.status.state = "unreachable".into();
                }
                self.last = None;
                self.status.last_error = Some(e.to_string());
                Ok(fallback)
            }
        }
    }

    /// Looks at the latest answer: starts a due run when the schedule allows. True: started.
    async fn consider(&mut self) -> Result<bool, String> {
        let Some(resp) = self.last.clone() else {
            if self.status.state == "pending-approval" {
                return Ok(false);
            }
            self.status.state = "unreachable".into();
            self.status.detail =
                "the server could not be reached; a migration starts only when it can".into();
            return Ok(false);
        };
        let Some(order) = resp.migration else {
            self.status.offer = None;
            self.drop_requests("no migration is offered to this device now");
            (self.status.state, self.status.detail) = match (&resp.assignment, &resp.blocked) {
                (_, Some(b)) => ("waiting".into(), format!("held back by the server: {b}")),
                (Some(a), None) => (
                    "assigned".into(),
                    format!(
                        "in batch `{}`; {}enforced after {}",
                        a.batch,
                        a.available_from
                            .map(|t| format!("offered from {}, ", show_time(t)))
                            .unwrap_or_default(),
                        show_time(a.enforced_after)
                    ),
                ),
                (None, None) => ("idle".into(), "in no batch".into()),
            };
            return Ok(false);
        };
        // A run that ended is not run again.
        let finished: Option<RunState> = self
            .env
            .state
            .read(&format!("runs/{}.json", state::safe_name(&order.run)))?;
        if let Some(f) = finished {
            self.drop_requests("the migration has run already");
            self.status.offer = None;
            self.status.state = run_state(&self.env, &f)?;
            self.status.detail = run::describe(&f);
            return Ok(false);
        }
        let enforced_after = resp.assignment.as_ref().map_or(0, |a| a.enforced_after);
        let mut offer: Offer = self.env.state.read("offer.json")?.unwrap_or_default();
        if offer.run != order.run {
            offer = Offer {
                run: order.run.clone(),
                ..Offer::default()
            };
        }
        let max_snoozes = order
            .runbooks
            .iter()
            .filter_map(|r| r.user_experience.max_snoozes)
            .min();
        let now = now_ms();
        for (name, req) in self.take_requests() {
            let answer = match req {
                Ok(req) => apply_request(
                    &req,
                    &mut offer,
                    &order.mode,
                    enforced_after,
                    max_snoozes,
                    now,
                ),
                Err(e) => Err(e),
            };
            let answer = answer.unwrap_or_else(|e| format!("refused: {e}"));
            run::log(
                &self.env,
                &order.run,
                &format!("user request {name}: {answer}"),
            );
            self.status.last_request = Some((name, answer));
        }
        self.env.state.write("offer.json", &offer, 0o600)?;
        let decision = decide(
            &order.mode,
            &offer,
            now,
            sessions(self.cfg.sessions_command.as_deref()),
        );
        self.status.offer = Some(OfferView {
            run: order.run.clone(),
            mode: order.mode.clone(),
            message: order
                .runbooks
                .iter()
                .find_map(|r| r.user_experience.message.clone()),
            enforced_after,
            snoozed_until: offer.snoozed_until,
            snoozes_left: max_snoozes.map(|m| m.saturating_sub(offer.snoozes)),
            choices: if order.mode == "offered" {
                SNOOZE_CHOICES.iter().map(|(c, _)| c.to_string()).collect()
            } else {
                Vec::new()
            },
        });
        match decision {
            Decision::Wait(why) => {
                self.status.state = if order.mode == "offered" {
                    "offered"
                } else {
                    "waiting"
                }
                .into();
                self.status.detail = why;
                Ok(false)
            }
            Decision::Start => {
                // The device checks itself right before the run, with the order's runbooks.
                let profiles = self.profiles();
                let pf = self.preflight(&order.runbooks, &profiles);
                self.status.preflight = Some(pf.clone());
                if let Some(why) = pf.not_ready() {
                    self.set_unsent(Some(pf))?;
                    self.status.state = "waiting".into();
                    self.status.detail = format!("the migration does not start: {why}");
                    return Ok(false);
                }
                let batch = resp
                    .assignment
                    .as_ref()
                    .map(|a| a.batch.clone())
                    .unwrap_or_default();
                let profiles = self.profiles();
                let r = RunState::plan(order, &batch, profiles, now);
                run::log(
                    &self.env,
                    &r.run,
                    &format!(
                        "migration {} starts ({}, batch `{batch}`): {} step(s); untranslated profiles: {}",
                        r.run,
                        r.mode,
                        r.steps.len(),
                        if r.order.untranslated.is_empty() {
                            "none".into()
                        } else {
                            r.order.untranslated.join(", ")
                        }
                    ),
                );
                run::save(&self.env, &r)?;
                self.status.offer = None;
                Ok(true)
            }
        }
    }

    /// The device's pre-flight for these runbooks; `server`: this check-in reached it.
    fn preflight(
        &mut self,
        runbooks: &[ferry_core::runbook::Runbook],
        profiles: &[HarvestedProfile],
    ) -> DevicePreflight {
        self.preflight_at = Some(std::time::Instant::now());
        let mut paths: Vec<PathBuf> = runbooks
            .iter()
            .flat_map(|r| r.permission_updates.paths.iter().map(PathBuf::from))
            .collect();
        if paths.is_empty() {
            paths = profiles.iter().map(|p| PathBuf::from(&p.home)).collect();
        }
        let probe = crate::preflight::Probe {
            state_dir: &self.cfg.state_dir,
            paths,
            runbooks,
            sessions: sessions(self.cfg.sessions_command.as_deref()),
            reboot_file: &self.cfg.reboot_required_file,
            min_free_mb: self.cfg.min_free_mb,
            proc_dir: std::path::Path::new("/proc"),
            search_path: std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .collect(),
        };
        let mut checks = crate::preflight::run(&probe);
        checks.push(PreflightCheck::new(
            "server",
            self.last.is_some(),
            true,
            if self.last.is_some() {
                "the server answered the last check-in".to_string()
            } else {
                "the server could not be reached: a run starts only when it can".to_string()
            },
        ));
        ferry_core::agent::bound_checks(&mut checks, ferry_core::agent::PREFLIGHT_DETAIL_MAX);
        DevicePreflight {
            at: now_ms(),
            checks,
        }
    }

    /// The check-in's pre-flight and post-flight reports are done with (taken, or refused for
    /// good): they are not sent again.
    fn reports_done(&mut self, req: &CheckinRequest) -> Result<(), String> {
        if req.preflight.is_some() {
            self.set_unsent(None)?;
        }
        if req.verification.is_some() {
            self.env
                .state
                .write("verification.json", &None::<Verification>, 0o600)?;
        }
        Ok(())
    }

    /// The pre-flight the server has not had yet, in memory and in `preflight.json`.
    fn set_unsent(&mut self, pf: Option<DevicePreflight>) -> Result<(), String> {
        self.env.state.write("preflight.json", &pf, 0o600)?;
        self.preflight_unsent = pf;
        Ok(())
    }

    /// The assigned runbooks (fetched once per assignment; the order carries them when due).
    async fn assigned_runbooks(&mut self) -> Vec<ferry_core::runbook::Runbook> {
        if let Some(m) = self.last.as_ref().and_then(|r| r.migration.as_ref()) {
            return m.runbooks.clone();
        }
        let names = self
            .status
            .assignment
            .as_ref()
            .map(|a| a.runbooks.clone())
            .unwrap_or_default();
        if self.runbooks.iter().map(|r| &r.name).ne(names.iter()) {
            let mut fetched = Vec::new();
            for n in &names {
                match self.client.runbook(n).await {
                    Ok(r) => fetched.push(r),
                    Err(e) => eprintln!("ferry agent: runbook `{n}` for the pre-flight: {e}"),
                }
            }
            self.runbooks = fetched;
        }
        self.runbooks.clone()
    }

    /// Runs the steps on a blocking thread while events and logs go to the server.
    async fn execute(&mut self, r: RunState) -> Result<(), String> {
        let Some(lock) = self.env.state.try_lock("lock")? else {
            return Err("the run is locked by another process (a rollback?)".into());
        };
        self.status.state = "running".into();
        self.status.detail = run::describe(&r);
        self.write_status();
        let env = self.env.clone();
        let mut task = tokio::task::spawn_blocking(move || run::execute(&env, r));
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let r = loop {
            tokio::select! {
                done = &mut task => break done.map_err(|e| format!("the run stopped: {e}"))?,
                _ = tick.tick() => {
                    self.flush().await;
                    if let Ok(Some(now)) = self.env.state.read::<RunState>("run.json") {
                        self.status.run = Some(view(&now));
                        self.write_status();
                    }
                }
            }
        };
        drop(lock);
        self.status.state = r.status.as_str().into();
        self.status.detail = run::describe(&r);
        self.status.run = Some(view(&r));
        self.write_status();
        self.verify().await
    }

    /// The post-flight of a run that succeeded and has none yet (also after a kill between the
    /// last step and the proof).
    async fn verify(&mut self) -> Result<(), String> {
        let Some(r) = self.env.state.read::<RunState>("run.json")? else {
            return Ok(());
        };
        if r.status != RunStatus::Succeeded || verification_of(&self.env, &r.run)?.is_some() {
            return Ok(());
        }
        let env = self.env.clone();
        let v = tokio::task::spawn_blocking(move || {
            let v = crate::postflight::after_run(&env, &r);
            crate::postflight::save(&env, &v).map(|()| v)
        })
        .await
        .map_err(|e| format!("the post-flight stopped: {e}"))??;
        for c in v.checks.iter().filter(|c| !c.ok) {
            run::log(
                &self.env,
                &v.run,
                &format!("post-flight: {}: {}", c.check, c.detail),
            );
        }
        self.status.state = if v.ok() {
            "verified"
        } else {
            "verification-failed"
        }
        .into();
        self.write_status();
        Ok(())
    }

    /// Sends queued events and log text; whatever the server does not take stays queued.
    async fn flush(&mut self) {
        if let Err(e) = flush_events(&self.env.state, &self.client).await {
            self.status.last_error = Some(e);
            return;
        }
        if let Err(e) = flush_logs(&self.env.state, &self.client).await {
            self.status.last_error = Some(e);
        }
    }

    fn take_requests(&self) -> Vec<(String, Result<Request, String>)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.env.state.requests()) else {
            return out;
        };
        // Dot names are requests still being written (see [`request`]).
        let mut names: Vec<_> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, read_request(&p)));
            let _ = std::fs::remove_file(&p);
        }
        out
    }

    fn drop_requests(&mut self, why: &str) {
        for (name, _) in self.take_requests() {
            self.status.last_request = Some((name, format!("refused: {why}")));
        }
    }

    fn write_status(&mut self) {
        self.status.updated_at = now_ms();
        if let Err(e) = self.env.state.write("status.json", &self.status, 0o644) {
            eprintln!("ferry agent: {e}");
        }
    }

    /// Sleeps until the next check-in; a user's request cuts it short.
    async fn sleep(&mut self, d: Duration) {
        // A day at most, whatever the server asks (an interval near u64::MAX would overflow).
        let until = tokio::time::Instant::now() + d.min(Duration::from_secs(86_400));
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500).min(until - tokio::time::Instant::now()))
                .await;
            let pending = std::fs::read_dir(self.env.state.requests())
                .map(|r| {
                    r.flatten()
                        .any(|e| !e.file_name().to_string_lossy().starts_with('.'))
                })
                .unwrap_or(false);
            if pending {
                return;
            }
        }
    }
}

fn view(r: &RunState) -> RunView {
    RunView {
        run: r.run.clone(),
        status: r.status.as_str().into(),
        progress: r.progress(),
        step: r
            .steps
            .iter()
            .find(|s| s.status == run::Status::Started)
            .map(|s| s.id.clone()),
    }
}

/// A request file, read without following links, at most 4 KiB.
fn read_request(p: &std::path::Path) -> Result<Request, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(p)
        .map_err(|e| format!("unreadable request: {e}"))?;
    let md = f.metadata().map_err(|e| e.to_string())?;
    if !md.is_file() || md.len() > 4096 {
        return Err("not a request".into());
    }
    let mut b = Vec::new();
    f.take(4096)
        .read_to_end(&mut b)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&b).map_err(|e| format!("malformed request: {e}"))
}

/// Sends the outbox's unsent events, in order, at most 1000 per call.
pub async fn flush_events(sd: &StateDir, client: &Client) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Line {
        run: String,
        #[serde(flatten)]
        event: AgentEvent,
    }
    let path = sd.path("outbox.jsonl");
    let sent_path = sd.path("outbox.sent");
    let base = state::read_offset(&sent_path);
    // Only what was not sent yet is read.
    let Some(bytes) = unsent(&path, base) else {
        return Ok(());
    };
    let mut sent = 0;
    while sent < bytes.len() {
        // Complete lines only: a line being appended is sent next time.
        let Some(end) = bytes[sent..].iter().rposition(|b| *b == b'\n') else {
            break;
        };
        let chunk = &bytes[sent..sent + end + 1];
        let mut batch: Vec<AgentEvent> = Vec::new();
        let mut run: Option<String> = None;
        let mut used = 0;
        for l in chunk.split_inclusive(|b| *b == b'\n') {
            let parsed: Option<Line> = serde_json::from_slice(l).ok();
            match parsed {
                Some(line) if run.as_ref().is_none_or(|r| *r == line.run) && batch.len() < 1000 => {
                    run = Some(line.run);
                    batch.push(line.event);
                }
                // A line cut short by a kill mid-append is dropped.
                None if batch.is_empty() => {}
                _ => break,
            }
            used += l.len();
        }
        // Events refused for what they are (malformed, not the assigned run, out of order) are
        // dropped: sending them again cannot help.
        if let Some(run) = run
            && let Some((code, error)) = refused_for_good(client.events(&run, batch).await)?
        {
            eprintln!(
                "ferry agent: the server refused {used} bytes of events ({code}): {error}; dropped"
            );
        }
        sent += used;
        state::write_offset(&sent_path, base + sent as u64)?;
    }
    Ok(())
}

/// How a report went: `Ok(None)` when the server took it, `Ok(Some((code, error)))` when it
/// refused it for what it is (sending it again cannot help), `Err` when it may be sent later.
fn refused_for_good(r: Result<(), CallError>) -> Result<Option<(String, String)>, String> {
    match r {
        Ok(()) => Ok(None),
        Err(CallError::Refused {
            status: 400 | 403 | 409 | 413,
            code,
            error,
        }) if code != "pending_approval" => Ok(Some((code, error))),
        Err(e) => Err(e.to_string()),
    }
}

/// The bytes of `path` after `offset`; `None` when there are none (or no file).
fn unsent(path: &std::path::Path, offset: u64) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    if f.metadata().ok()?.len() <= offset {
        return None;
    }
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut b = Vec::new();
    f.read_to_end(&mut b).ok()?;
    Some(b)
}

/// Sends what the server does not have yet of every run log, in chunks of whole lines.
pub async fn flush_logs(sd: &StateDir, client: &Client) -> Result<(), String> {
    let Ok(rd) = std::fs::read_dir(sd.root.join("runs")) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("log") {
            continue;
        }
        let Some(run) = p.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        let sent_path = p.with_extension("log.sent");
        let base = state::read_offset(&sent_path);
        let Some(bytes) = unsent(&p, base) else {
            continue;
        };
        // The run id as the server knows it (the file name is made safe), from its record.
        let run_id = sd
            .read::<RunState>(&format!("runs/{run}.json"))
            .ok()
            .flatten()
            .or_else(|| {
                sd.read::<RunState>("run.json")
                    .ok()
                    .flatten()
                    .filter(|r| state::safe_name(&r.run) == run)
            })
            .map(|r| r.run)
            .unwrap_or(run);
        let mut sent = 0;
        while sent < bytes.len() {
            let rest = &bytes[sent..];
            let window = &rest[..rest.len().min(256 * 1024)];
            let Some(end) = window.iter().rposition(|b| *b == b'\n') else {
                break;
            };
            let text = String::from_utf8_lossy(&window[..end + 1]).into_owned();
            let at = base + sent as u64;
            if let Some((code, error)) = refused_for_good(client.log(&run_id, at, text).await)? {
                eprintln!(
                    "ferry agent: the server refused run {run_id}'s log ({code}): {error}; not sent again"
                );
                state::write_offset(&sent_path, base + bytes.len() as u64)?;
                break;
            }
            sent += end + 1;
            state::write_offset(&sent_path, base + sent as u64)?;
        }
    }
    Ok(())
}

/// `ferry agent start-now` / `snooze`: leaves a request for the running agent and waits up to
/// `wait` for its answer.
pub fn request(
    state_dir: &std::path::Path,
    req: &Request,
    wait: Duration,
) -> Result<String, String> {
    let sd = StateDir::existing(state_dir)?;
    let name = format!(
        "{}-{}-{}.json",
        now_ms(),
        rustix::process::getuid().as_raw(),
        std::process::id()
    );
    let body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    // Written under a dot name and renamed, so the agent never reads a request half written
    // (it skips dot names). Not `state::atomic_write`: its directory fsync needs read access
    // to the requests directory, which a user has not (1733).
    let tmp = sd.requests().join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, sd.requests().join(&name)))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!(
                "cannot leave the request in {}: {e}",
                sd.requests().display()
            )
        })?;
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(s)) = sd.read::<Status>("status.json")
            && let Some((n, answer)) = s.last_request
            && n == name
        {
            return if let Some(why) = answer.strip_prefix("refused: ") {
                Err(why.to_string())
            } else {
                Ok(answer)
            };
        }
    }
    Ok("the request is waiting for the agent (it acts on it at its next check-in)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn the_schedule() {
        let o = Offer::default();
        // Enforced: starts only when nobody is signed in.
        assert_eq!(decide("enforced", &o, 0, 0), Decision::Start);
        assert!(
            matches!(decide("enforced", &o, 0, 2), Decision::Wait(w) if w.contains("2 session"))
        );
        // Offered: waits for the user; a snooze holds it; start-now starts it.
        assert!(
            matches!(decide("offered", &o, 0, 0), Decision::Wait(w) if w.contains("start-now"))
        );
        let mut o = Offer {
            run: "r".into(),
            ..Offer::default()
        };
        let snooze = |m| Request {
            action: "snooze".into(),
            minutes: Some(m),
        };
        let enforced = 10 * H;
        let a = apply_request(&snooze(60), &mut o, "offered", enforced, Some(2), 0).unwrap();
        assert!(a.starts_with("snoozed until"), "{a}");
        assert_eq!(o.snoozed_until, Some(H));
        assert!(
            matches!(decide("offered", &o, H / 2, 0), Decision::Wait(w) if w.starts_with("snoozed"))
        );
        // Only the seed's choices; never past Enforced After; at most max_snoozes.
        assert!(apply_request(&snooze(7), &mut o, "offered", enforced, Some(2), 0).is_err());
        let a = apply_request(&snooze(10_080), &mut o, "offered", enforced, Some(2), 0).unwrap();
        assert!(a.contains("when the migration is enforced"), "{a}");
        assert_eq!(o.snoozed_until, Some(enforced));
        let e = apply_request(&snooze(5), &mut o, "offered", enforced, Some(2), 0).unwrap_err();
        assert!(e.contains("no snoozes left"), "{e}");
        // Enforced: no snoozing.
        let mut o2 = Offer::default();
        assert!(apply_request(&snooze(5), &mut o2, "enforced", enforced, None, 0).is_err());
        let start = Request {
            action: "start-now".into(),
            minutes: None,
        };
        apply_request(&start, &mut o, "offered", enforced, None, 0).unwrap();
        assert_eq!(decide("offered", &o, 0, 3), Decision::Start);
        assert!(apply_request(&snooze(5), &mut o, "offered", enforced, None, 0).is_err());
    }
}

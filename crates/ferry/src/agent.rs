//! `ferry agent …`: the migration agent on a device (Linux), and the commands a signed-in user
//! or an administrator of the device uses with it.

use anyhow::{Result, bail};
use clap::Subcommand;
use ferry_agent::daemon::{self, Config, Request, SNOOZE_CHOICES, Status, show_time};
use ferry_agent::harvest::Sources;
use ferry_agent::run::{self, RunState};
use ferry_agent::state::StateDir;
use ferry_core::agent::Credential;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Run the agent: enroll once, check in, harvest profiles, run due migrations. `--server` is
    /// the agent endpoint (`ferry agents endpoint` shows it and its fingerprint).
    Run(Box<RunArgs>),
    /// What the agent is doing: its batch, the offered migration, the run's steps.
    Status(StateArgs),
    /// Start the offered migration now.
    StartNow(StateArgs),
    /// Defer the offered migration (never past its Enforced After time).
    Snooze {
        #[arg(value_parser = ["5m", "15m", "30m", "1h", "4h", "1d", "1w"])]
        duration: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Undo the permission changes of the last run (its journal) and the home links it made.
    Rollback(StateArgs),
    /// Set the agent up as a systemd service (the MSI's properties: server, key, fingerprint).
    ///
    /// `ferry agent install --server URL --psk-file FILE --fingerprint SHA256` writes
    /// /etc/ferry-agent (the key in a 0600 file of its own), the unit unless the ferry-agent
    /// package installed it, and, where systemd runs, enables and starts it. It prints what it
    /// did and what it skipped.
    Install(Box<crate::agent_install::InstallArgs>),
    /// Undo `ferry agent install` (the state directory stays unless --purge).
    ///
    /// Stops and disables the unit and removes what install wrote. The state directory holds the
    /// last run's journal, which `ferry agent rollback` needs: --purge deletes it.
    Uninstall(crate::agent_install::UninstallArgs),
}

#[derive(clap::Args)]
pub struct StateArgs {
    /// The agent's state directory.
    #[arg(
        long,
        env = "FERRY_AGENT_STATE_DIR",
        default_value = "/var/lib/ferry-agent"
    )]
    pub state_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The pre-shared key to enroll with (needed the first time only). A key given here shows in
    /// `ps` to every local user: prefer FERRY_AGENT_PSK or --psk-file.
    #[arg(long, env = "FERRY_AGENT_PSK", hide_env_values = true)]
    pub psk: Option<String>,
    /// A file holding the pre-shared key (trailing newline ignored); readable by root only.
    #[arg(long, conflicts_with = "psk")]
    pub psk_file: Option<PathBuf>,
    /// SHA-256 of the server's agent certificate: the only certificate this agent trusts.
    #[arg(long)]
    pub fingerprint: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    /// Check in once, run a migration if one is due and may start, then exit (1 if it failed).
    #[arg(long)]
    pub once: bool,
    /// Harvest profiles from this passwd-format file instead of /etc/passwd and NSS.
    #[arg(long)]
    pub passwd: Option<PathBuf>,
    /// A command printing one line per signed-in session (default: `loginctl list-sessions`,
    /// else `who`).
    #[arg(long)]
    pub sessions_command: Option<String>,
    /// The file that prevents sign-in (pam_nologin) while a runbook asks for it.
    #[arg(long, default_value = "/etc/nologin")]
    pub nologin_file: PathBuf,
    /// Where a runbook's legal notice is shown before sign-in (agetty reads /etc/issue.d).
    #[arg(long, default_value = "/etc/issue.d/ferry-legal-notice.issue")]
    pub legal_notice_file: PathBuf,
    /// Re-permissioning threads (default: the CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Refuse translations to or from uids and gids below this (the system range); root (0) is
    /// refused whatever it is.
    #[arg(long, default_value_t = ferry_core::privileged::DEFAULT_MIN_ID, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_id: u32,
    /// Check in every N seconds instead of the server's interval.
    #[arg(long, hide = true)]
    pub poll_seconds: Option<u32>,
    /// Pre-flight: the file whose presence says a reboot is pending.
    #[arg(long, default_value = "/run/reboot-required")]
    pub reboot_required_file: PathBuf,
    /// Pre-flight: free space (MiB) each file system the run writes must keep.
    #[arg(long, default_value_t = 256)]
    pub min_free_mb: u64,
}

impl RunArgs {
    pub fn config(self, server: Option<String>) -> Config {
        let sources = match self.passwd {
            Some(p) => Sources {
                passwd: p,
                nss: false,
                home_roots: Vec::new(),
                ..Sources::default()
            },
            None => Sources::default(),
        };
        Config {
            server,
            psk: self.psk.map(Credential::new),
            fingerprint: self.fingerprint,
            state_dir: self.state.state_dir,
            once: self.once,
            sources,
            sessions_command: self.sessions_command,
            nologin_file: self.nologin_file,
            legal_notice_file: self.legal_notice_file,
            threads: self.threads.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            }),
            poll_seconds: self.poll_seconds,
            min_id: self.min_id,
            reboot_required_file: self.reboot_required_file,
            min_free_mb: self.min_free_mb,
        }
    }
}

pub async fn agent(cmd: AgentCmd, server: Option<String>, json: bool) -> Result<ExitCode> {
    match cmd {
        AgentCmd::Run(a) => {
            let once = a.once;
            let mut a = a;
            if let Some(f) = a.psk_file.take() {
                a.psk = Some(read_psk_file(&f)?);
            }
            let ended = daemon::run(a.config(server))
                .await
                .map_err(anyhow::Error::msg)?;
            if once {
                println!("{}: {}", ended.state, ended.detail);
            }
            Ok(if ended.failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        AgentCmd::Install(a) => crate::agent_install::install(*a, server),
        AgentCmd::Uninstall(a) => crate::agent_install::uninstall(a),
        AgentCmd::Status(s) => status(&s.state_dir, json),
        AgentCmd::StartNow(s) => ask(
            &s.state_dir,
            Request {
                action: "start-now".into(),
                minutes: None,
            },
        ),
        AgentCmd::Snooze { duration, state } => {
            let minutes = SNOOZE_CHOICES
                .iter()
                .find(|(c, _)| *c == duration)
                .map(|(_, m)| *m);
            ask(
                &state.state_dir,
                Request {
                    action: "snooze".into(),
                    minutes,
                },
            )
        }
        AgentCmd::Rollback(s) => {
            let sd = StateDir::existing(&s.state_dir).map_err(anyhow::Error::msg)?;
            let env = run::Env {
                state: sd,
                sources: Sources::default(),
                nologin_file: "/etc/nologin".into(),
                legal_notice_file: "/etc/issue.d/ferry-legal-notice.issue".into(),
                threads: 1,
                min_id: ferry_core::privileged::DEFAULT_MIN_ID,
            };
            let before: Option<run::RunState> =
                env.state.read("run.json").map_err(anyhow::Error::msg)?;
            let undo = run::rollback(&env);
            if let Err(e) = &undo
                && e.starts_with("a migration is running")
            {
                bail!("{e}");
            }
            // The post-flight of the rollback: every journaled file as the run found it.
            let Some(r) = before.filter(|r| r.status != run::RunStatus::RolledBack) else {
                return undo.map(|_| ExitCode::SUCCESS).map_err(anyhow::Error::msg);
            };
            let v = ferry_agent::postflight::after_rollback(&env, &r, &undo);
            ferry_agent::postflight::save(&env, &v).map_err(anyhow::Error::msg)?;
            for c in &v.checks {
                println!(
                    "{} {}: {}",
                    if c.ok { "proved" } else { "NOT PROVED" },
                    c.check,
                    c.detail
                );
            }
            let m = undo.map_err(anyhow::Error::msg)?;
            println!("rolled back: {m}");
            if v.ok() {
                Ok(ExitCode::SUCCESS)
            } else {
                println!("recovery required: the device is not as the run found it");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// The pre-shared key in a file (`--psk-file`), without its trailing newline.
pub fn read_psk_file(f: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(f)
        .map_err(|e| anyhow::anyhow!("--psk-file {}: {e}", f.display()))?;
    let key = text.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        !key.is_empty(),
        "--psk-file {}: the file is empty",
        f.display()
    );
    Ok(key.to_string())
}

fn ask(state_dir: &std::path::Path, req: Request) -> Result<ExitCode> {
    match daemon::request(state_dir, &req, Duration::from_secs(10)) {
        Ok(m) => {
            println!("{m}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => bail!("{e}"),
    }
}

fn status(state_dir: &std::path::Path, json: bool) -> Result<ExitCode> {
    let sd = StateDir::existing(state_dir).map_err(anyhow::Error::msg)?;
    let st: Option<Status> = sd.read("status.json").map_err(anyhow::Error::msg)?;
    // run.json is the administrator's (mode 0600); a signed-in user sees status.json only.
    let run: Option<RunState> = sd.read("run.json").ok().flatten();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "status": st,
                "run": run.as_ref().map(|r| serde_json::json!({
                    "run": r.run, "status": r.status, "progress": r.progress(), "steps": r.steps,
                })),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(st) = st else {
        bail!("the agent has not reported its status yet");
    };
    println!(
        "agent {} ({}) → {}",
        st.agent_id.map(|i| i.to_string()).unwrap_or("-".into()),
        st.hostname,
        st.server
    );
    println!("state         {}: {}", st.state, st.detail);
    println!(
        "last contact  {}{}",
        st.last_contact.map(show_time).unwrap_or("never".into()),
        st.last_error
            .as_ref()
            .map(|e| format!(" (since then: {e})"))
            .unwrap_or_default()
    );
    if let Some(a) = &st.assignment {
        println!(
            "batch         {}: {}; {}enforced after {} ({})",
            a.batch,
            a.runbooks.join(", "),
            a.available_from
                .map(|t| format!("offered from {}, ", show_time(t)))
                .unwrap_or_default(),
            show_time(a.enforced_after),
            a.time_zone
        );
    }
    if let Some(b) = &st.blocked {
        println!("held back     {b}");
    }
    if let Some(o) = &st.offer {
        println!(
            "offer         {} ({}){}{}",
            o.run,
            o.mode,
            o.snoozed_until
                .map(|t| format!(", snoozed until {}", show_time(t)))
                .unwrap_or_default(),
            o.snoozes_left
                .map(|n| format!(", {n} snooze(s) left"))
                .unwrap_or_default()
        );
        if let Some(m) = &o.message {
            println!("message       {m}");
        }
        if !o.choices.is_empty() {
            println!(
                "              ferry agent start-now | ferry agent snooze {}",
                o.choices.join("|")
            );
        }
    }
    if let Some(r) = &run {
        println!("run           {} ({}%)", run::describe(r), r.progress());
        for s in &r.steps {
            println!("  {:<10} {:<40} {}", s.status.as_str(), s.id, s.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

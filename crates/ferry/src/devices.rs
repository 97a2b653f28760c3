//! `ferry psk …`, `ferry agents …`, `ferry runbook …`, `ferry batch …`: device migration for the
//! operator, as clients of the admin API.

use crate::commands::{compact, for_terminal, print_json, print_list, print_text};
use anyhow::{Context, Result};
use clap::Subcommand;
use ferry_client::wire::{ComputerChange, NewPsk};
use ferry_client::{AgentsQuery, Client};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PskCmd {
    /// Create a pre-shared key; it is printed once: install agents with it.
    Create {
        name: String,
        /// How many devices it may enroll (`--uses 1`: a single-use key); default unlimited.
        #[arg(long)]
        uses: Option<i64>,
        /// The one host name it enrolls; when new enrollments wait for approval, it is the
        /// approval of that device.
        #[arg(long)]
        device: Option<String>,
    },
    List,
    /// Retire a key: it enrolls no new agents; agents enrolled with it keep working.
    Retire {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum AgentsCmd {
    /// Enrolled agents: version, OS, last contact, state, batch, progress (a page by id).
    List {
        /// Part of the host name or device id.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        batch: Option<String>,
        /// Agents to skip (at most 10000): prefer --after.
        #[arg(long, default_value_t = 0)]
        offset: i64,
        /// The agents after this id (the last id of the previous page; a full page says it).
        #[arg(long)]
        after: Option<i64>,
        /// At most 10000.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// One agent: facts, harvested profiles, run events.
    Show { id: i64 },
    /// A run's log as the agent sent it.
    Log { id: i64, run: String },
    /// Failed communications: refused calls and agents that stopped calling.
    Failed {
        /// Agents silent for more than this many poll intervals.
        #[arg(long, default_value_t = 3)]
        silent_polls: i64,
    },
    /// Where agents connect and the certificate fingerprint they pin.
    Endpoint,
    /// Enrollments held for an operator: they claim an enrolled device's id or host name
    /// without its node key, or new devices wait for approval.
    Pending {
        /// Also the decided ones.
        #[arg(long)]
        all: bool,
    },
    /// Approve a held enrollment: the device's key starts working, and the agents it claimed
    /// are replaced (their keys stop).
    Approve { id: i64 },
    /// Refuse a held enrollment: its key never works; the enrolled agent keeps working.
    Refuse { id: i64 },
}

#[derive(Subcommand)]
pub enum RunbookCmd {
    List,
    Show {
        name: String,
    },
    /// Create or replace a runbook from a JSON file (see docs/devices.md for every field).
    Put {
        file: PathBuf,
    },
    Delete {
        name: String,
    },
    /// Print a runbook's device steps as a script to read before running (Windows: PowerShell).
    /// RUNBOOK is a runbook JSON file, or the name of a runbook on the server.
    Render {
        runbook: String,
        #[arg(long, value_parser = ["windows"])]
        platform: String,
        /// Write the script here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum BatchCmd {
    List,
    /// Create or replace a batch from a JSON file.
    Put {
        file: PathBuf,
        /// Add prerequisite runbooks the batch is missing instead of refusing it.
        #[arg(long)]
        add_prerequisites: bool,
    },
    Delete {
        name: String,
    },
    /// Add computers (enrolled agents' host names or the source directory's devices).
    Add {
        name: String,
        computers: Vec<String>,
    },
    Remove {
        name: String,
        computers: Vec<String>,
    },
    /// Per device: profiles to remap, profiles with no target, steps, warnings.
    Whatif {
        name: String,
    },
    /// Migration progress of the batch's devices, and its wave (canary, halt).
    Progress {
        name: String,
    },
    /// Resume a batch that halted itself: devices start again, the failures so far accepted.
    Resume {
        name: String,
    },
    /// The tenant pre-flight: whether the target Entra tenant lets the batch's devices join and
    /// enrol in Intune (policies, quota, MDM scope, licences, bulk token). Exits 1 when a finding
    /// holds devices back.
    Preflight {
        name: String,
        /// Read Microsoft Graph again instead of the result cached for a few minutes.
        #[arg(long)]
        refresh: bool,
    },
}

/// A pre-flight report as lines: ✓ ok, ! warning, ✗ blocking, each with its fix. Exit 1 when
/// not ok.
pub(crate) fn print_preflight(
    r: &ferry_core::preflight::PreflightReport,
    json: bool,
) -> Result<ExitCode> {
    use ferry_core::preflight::Severity;
    if json {
        print_json(r)?;
    } else {
        // The findings name the batch's devices (host names the agents sent) and the tenant's
        // users (their display names), and carry Microsoft Graph's error messages.
        let r = &for_terminal(r.clone())?;
        let what = r.batch.as_ref().map_or_else(
            || format!("directory `{}`", r.directory),
            |b| format!("batch `{b}` (target `{}`)", r.directory),
        );
        println!(
            "tenant pre-flight of {what}, checked at {}",
            ms_time(r.checked_at)
        );
        for f in &r.findings {
            let mark = match f.severity {
                Severity::Ok => "✓",
                Severity::Warning => "!",
                Severity::Blocking => "✗",
            };
            println!("{mark} {}: {}", f.check, f.message);
            if f.severity != Severity::Ok
                && let Some(fix) = &f.fix
            {
                println!("    fix: {fix}");
            }
        }
        println!(
            "{}",
            if r.ok {
                "pre-flight OK"
            } else {
                "pre-flight FAILED: devices are held back"
            }
        );
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn ms_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// A JSON file of one entry (a runbook, a batch, …, `what`), and the entry's `key` (its name).
pub(crate) fn read_entry(file: &PathBuf, key: &str, what: &str) -> Result<(Value, String)> {
    let body = read_json(file)?;
    let name = body[key]
        .as_str()
        .with_context(|| format!("the {what} has no `{key}`"))?
        .to_string();
    Ok((body, name))
}

pub(crate) fn read_json(file: &PathBuf) -> Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: line {}, column {}: {e}",
            file.display(),
            e.line(),
            e.column()
        )
    })
}

fn warnings(ws: &[String]) {
    for w in ws {
        println!("warning: {w}");
    }
}

/// An optional value as the device commands show it: `-` when absent.
fn dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

pub async fn psk(c: &Client, cmd: PskCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        PskCmd::Create { name, uses, device } => {
            let body = NewPsk {
                name,
                uses,
                device: device.clone(),
            };
            let v = c.create_psk(&body).await?;
            if json {
                print_json(&v)?;
            } else {
                let limits = match (uses, &device) {
                    (None, None) => String::new(),
                    (u, d) => format!(
                        " for {} enrollment(s) of {}",
                        u.map_or("unlimited".into(), |n| n.to_string()),
                        d.as_deref().unwrap_or("any device")
                    ),
                };
                println!(
                    "pre-shared key `{}`{limits} (shown once; install agents with it):\n{}",
                    v.psk.name, v.key
                );
            }
        }
        PskCmd::List => {
            print_list(&c.psks().await?, json, |k| {
                println!(
                    "{:<20} created {}  {}",
                    k.name,
                    k.created_at,
                    match k.retired_at {
                        None => "active".to_string(),
                        Some(r) => format!("retired {r}"),
                    }
                );
            })?;
        }
        PskCmd::Retire { name } => {
            let v = c.retire_psk(&name).await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "retired `{name}`: it enrolls no new agents; agents enrolled with it keep working"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn agents(c: &Client, cmd: AgentsCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        AgentsCmd::List {
            search,
            state,
            batch,
            offset,
            after,
            limit,
        } => {
            let q = AgentsQuery {
                search,
                state,
                batch,
                offset: Some(offset),
                after,
                limit: Some(limit),
            };
            let v = c.agents(&q).await?;
            if let Some(last) = v.last().filter(|_| v.len() as i64 >= limit) {
                eprintln!(
                    "more agents: the next page is --after {} (with the same filters)",
                    last.agent.id
                );
            }
            if json {
                print_json(&v)?;
            } else {
                // Host names, steps and progress are what devices said.
                let v = for_terminal(v)?;
                println!(
                    "{:<5} {:<18} {:<8} {:<8} {:<10} {:<14} {:<12} LAST STEP",
                    "ID", "HOSTNAME", "OS", "VERSION", "STATE", "BATCH", "PROGRESS"
                );
                for a in &v {
                    let r = &a.agent;
                    println!(
                        "{:<5} {:<18} {:<8} {:<8} {:<10} {:<14} {:<12} {}{}",
                        r.id,
                        r.hostname,
                        r.os,
                        r.agent_version,
                        r.state,
                        dash(&a.batch),
                        dash(&a.progress),
                        dash(&a.last_step),
                        if a.silent { "  (silent)" } else { "" }
                    );
                }
            }
        }
        AgentsCmd::Show { id } => {
            print_json(&c.agent(id).await?)?;
        }
        AgentsCmd::Log { id, run } => {
            // Written by the device: its escape sequences are shown, not obeyed.
            print_text(&c.agent_log(id, &run).await?);
        }
        AgentsCmd::Failed { silent_polls } => {
            let v = c.failed_communications(Some(silent_polls)).await?;
            if json {
                print_json(&v)?;
            } else {
                let v = for_terminal(v)?;
                for f in &v.failures {
                    println!(
                        "{} {:<16} {:<18} ×{:<5} {}",
                        f.at,
                        dash(&f.address),
                        f.code,
                        f.count,
                        f.reason
                    );
                }
                for a in &v.silent {
                    println!(
                        "silent: agent {} {} (last contact {})",
                        a.id, a.hostname, a.last_contact
                    );
                }
            }
        }
        AgentsCmd::Pending { all } => {
            let v = c
                .enrollment_requests(Some(if all { "all" } else { "pending" }))
                .await?;
            if json {
                print_json(&v)?;
            } else {
                let v = for_terminal(v)?;
                if v.is_empty() {
                    println!("no enrollment waits for approval");
                }
                for r in &v {
                    println!(
                        "{:>5} {:<9} {:<20} {:<38} from {:<15} {}",
                        r.id,
                        r.state,
                        r.hostname,
                        r.device_id,
                        dash(&r.address),
                        r.reason
                    );
                }
            }
        }
        AgentsCmd::Approve { id } | AgentsCmd::Refuse { id } => {
            let approve = matches!(cmd, AgentsCmd::Approve { .. });
            let v = if approve {
                c.approve_enrollment(id).await?
            } else {
                c.refuse_enrollment(id).await?
            };
            if json {
                print_json(&v)?;
            } else {
                // The host name and device id are what the device said.
                let v = for_terminal(v)?;
                let r = &v.request;
                if approve {
                    println!(
                        "approved: {} ({}) is agent {}; agents it claimed are replaced",
                        r.hostname,
                        r.device_id,
                        dash(&v.agent.as_ref().map(|a| a.id))
                    );
                } else {
                    println!(
                        "refused: the key given to {} ({}) never works",
                        r.hostname, r.device_id
                    );
                }
            }
        }
        AgentsCmd::Endpoint => {
            let v = c.agent_endpoint().await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "agent endpoint: {}\ncertificate SHA-256: {}",
                    dash(&v.url),
                    dash(&v.certificate_sha256)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn runbook(c: &Client, cmd: RunbookCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        RunbookCmd::List => {
            print_list(&c.runbooks().await?, json, |v| {
                let r = &v.runbook;
                println!(
                    "{:<24} {} → {}  prerequisites: {}{}",
                    r.name,
                    compact(&r.source_directories),
                    compact(&r.target_directories),
                    compact(&r.prerequisites),
                    if v.origin == "file" {
                        "  (in ferry.toml)"
                    } else {
                        ""
                    }
                );
            })?;
        }
        RunbookCmd::Show { name } => {
            let v = c.runbooks().await?;
            let r = v
                .iter()
                .find(|r| r.runbook.name == name)
                .with_context(|| format!("there is no runbook `{name}`"))?;
            print_json(&r.runbook)?;
        }
        RunbookCmd::Put { file } => {
            let (body, name) = read_entry(&file, "name", "runbook")?;
            let v = c.put_runbook(&name, &body).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("saved runbook `{name}`");
            }
        }
        RunbookCmd::Delete { name } => {
            c.delete_runbook(&name).await?;
            println!("deleted runbook `{name}`");
        }
        RunbookCmd::Render {
            runbook, output, ..
        } => {
            let v = c.runbooks().await?;
            let rb = v
                .iter()
                .find(|r| r.runbook.name == runbook)
                .with_context(|| {
                    format!("there is no runbook file or server runbook `{runbook}`")
                })?;
            render(&rb.runbook, output.as_deref())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn batch(c: &Client, cmd: BatchCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        BatchCmd::List => {
            print_list(&c.batches().await?, json, |b| {
                println!(
                    "{:<16} {} → {}  runbooks {}  enforced after {} {}  computers {}{}",
                    b.batch.name,
                    b.batch.source_directory,
                    b.batch.target_directory,
                    compact(&b.batch.runbooks),
                    b.batch.enforced_after,
                    b.batch.time_zone,
                    b.computers.len(),
                    if b.origin == "file" {
                        "  (in ferry.toml)"
                    } else {
                        ""
                    }
                );
            })?;
        }
        BatchCmd::Put {
            file,
            add_prerequisites,
        } => {
            let (body, name) = read_entry(&file, "name", "batch")?;
            let v = c.put_batch(&name, &body, add_prerequisites).await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "saved batch `{name}`: runbooks {}",
                    compact(&v.batch.runbooks)
                );
                warnings(&v.warnings);
            }
        }
        BatchCmd::Delete { name } => {
            c.delete_batch(&name).await?;
            println!("deleted batch `{name}`");
        }
        BatchCmd::Add { name, computers } | BatchCmd::Remove { name, computers }
            if computers.is_empty() =>
        {
            anyhow::bail!("name at least one computer to change in batch `{name}`")
        }
        BatchCmd::Add { name, computers } => {
            let change = ComputerChange {
                add: computers,
                remove: Vec::new(),
            };
            let v = c.change_batch_computers(&name, &change).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("batch `{name}`: {} computer(s)", v.computers.len());
                warnings(&v.warnings);
            }
        }
        BatchCmd::Remove { name, computers } => {
            let change = ComputerChange {
                add: Vec::new(),
                remove: computers,
            };
            let v = c.change_batch_computers(&name, &change).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("batch `{name}`: {} computer(s)", v.computers.len());
            }
        }
        BatchCmd::Whatif { name } => {
            let v = c.batch_whatif(&name).await?;
            if json {
                print_json(&v)?;
            } else {
                let v = for_terminal(v)?;
                println!(
                    "batch `{name}`: runbooks {}",
                    v.assignment
                        .as_ref()
                        .map_or_else(|| "-".into(), |a| compact(&a.runbooks))
                );
                for d in &v.devices {
                    println!("\n{} (agent {})", d.computer, dash(&d.agent_id));
                    for m in &d.remap {
                        println!(
                            "  remap {} ({}) → {} ({})",
                            m.profile,
                            dash(&m.source_sid),
                            m.target_name,
                            dash(&m.target_sid)
                        );
                    }
                    for n in &d.no_target {
                        println!("  no target: {n} (will not be re-permissioned)");
                    }
                    for st in &d.steps {
                        println!("  step: {st}");
                    }
                    warnings(&d.warnings);
                }
            }
        }
        BatchCmd::Preflight { name, refresh } => {
            let r = c.batch_preflight(&name, refresh).await?;
            return print_preflight(&r, json);
        }
        BatchCmd::Resume { name } => {
            let w = c.resume_batch(&name).await?;
            if json {
                print_json(&w)?;
            } else {
                println!(
                    "batch `{name}` resumed; {} failed device(s) accepted",
                    w.accepted_failures
                );
            }
        }
        BatchCmd::Progress { name } => {
            let v = c.batch_progress(&name).await?;
            if json {
                print_json(&v)?;
            } else {
                let v = for_terminal(v)?;
                println!(
                    "batch `{name}`: {} computer(s); {}",
                    v.computers,
                    compact(&v.states)
                );
                let w = &v.wave;
                if let Some(h) = &w.state.halted {
                    println!(
                        "HALTED: {} (resume with `ferry batch resume {name}`)",
                        h.reason
                    );
                }
                if !w.canary.is_empty() {
                    println!(
                        "canary: {} ({} finished well, {} failed)",
                        w.canary.join(", "),
                        w.canary_succeeded,
                        w.canary_failed
                    );
                }
                if let Some(r) = &w.state.resumed {
                    println!("last resumed by {} after: {}", r.by, r.halt);
                }
                for a in &v.agents {
                    println!(
                        "  {:<18} {:<10} {:<5} {}",
                        a.agent.hostname,
                        a.agent.state,
                        dash(&a.progress),
                        dash(&a.last_step)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A runbook rendered for Windows, from a file (no server needed) or the server.
pub fn render_file(path: &std::path::Path, output: Option<&std::path::Path>) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let rb: ferry_core::runbook::Runbook = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    render(&rb, output)
}

fn render(rb: &ferry_core::runbook::Runbook, output: Option<&std::path::Path>) -> Result<()> {
    let script = ferry_core::windows_script::render_windows(rb, env!("CARGO_PKG_VERSION"));
    match output {
        Some(p) => {
            std::fs::write(p, script).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => print!("{script}"),
    }
    Ok(())
}

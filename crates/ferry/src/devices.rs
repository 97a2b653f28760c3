//! `ferry psk …`, `ferry agents …`, `ferry runbook …`, `ferry batch …`: device migration for the
//! operator, as clients of the admin API.

use anyhow::{Context, Result};
use clap::Subcommand;
use ferry_client::Client;
use reqwest::Method;
use serde_json::{Value, json};
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
        #[arg(long, default_value_t = 0)]
        offset: i64,
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
    /// Migration progress of the batch's devices.
    Progress {
        name: String,
    },
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

pub(crate) fn print(v: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
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

pub(crate) async fn call(
    c: &Client,
    m: Method,
    path: &str,
    q: &[(&str, String)],
    body: Option<Value>,
) -> Result<Value> {
    let r = c.send(m, path, q, body).await?;
    let text = r.text().await?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn warnings(v: &Value) {
    for w in v["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", s(w));
    }
}

pub async fn psk(c: &Client, cmd: PskCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        PskCmd::Create { name, uses, device } => {
            let v = call(
                c,
                Method::POST,
                "/psks",
                &[],
                Some(json!({ "name": name, "uses": uses, "device": device })),
            )
            .await?;
            print(&v, json)?;
            if !json {
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
                    s(&v["name"]),
                    s(&v["key"])
                );
            }
        }
        PskCmd::List => {
            let v = call(c, Method::GET, "/psks", &[], None).await?;
            print(&v, json)?;
            if !json {
                for k in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<20} created {}  {}",
                        s(&k["name"]),
                        s(&k["created_at"]),
                        if k["retired_at"].is_null() {
                            "active".to_string()
                        } else {
                            format!("retired {}", s(&k["retired_at"]))
                        }
                    );
                }
            }
        }
        PskCmd::Retire { name } => {
            let v = call(c, Method::POST, &format!("/psks/{name}/retire"), &[], None).await?;
            print(&v, json)?;
            if !json {
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
            limit,
        } => {
            let mut q = vec![("offset", offset.to_string()), ("limit", limit.to_string())];
            for (k, v) in [("search", search), ("state", state), ("batch", batch)] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let v = call(c, Method::GET, "/agents", &q, None).await?;
            print(&v, json)?;
            if !json {
                println!(
                    "{:<5} {:<18} {:<8} {:<8} {:<10} {:<14} {:<12} LAST STEP",
                    "ID", "HOSTNAME", "OS", "VERSION", "STATE", "BATCH", "PROGRESS"
                );
                for a in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<5} {:<18} {:<8} {:<8} {:<10} {:<14} {:<12} {}{}",
                        s(&a["id"]),
                        s(&a["hostname"]),
                        s(&a["os"]),
                        s(&a["agent_version"]),
                        s(&a["state"]),
                        s(&a["batch"]),
                        s(&a["progress"]),
                        s(&a["last_step"]),
                        if a["silent"] == true {
                            "  (silent)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        AgentsCmd::Show { id } => {
            let v = call(c, Method::GET, &format!("/agents/{id}"), &[], None).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        AgentsCmd::Log { id, run } => {
            let v = call(
                c,
                Method::GET,
                &format!("/agents/{id}/runs/{run}/log"),
                &[],
                None,
            )
            .await?;
            print!("{}", s(&v));
        }
        AgentsCmd::Failed { silent_polls } => {
            let v = call(
                c,
                Method::GET,
                "/reports/failed-communications",
                &[("silent_polls", silent_polls.to_string())],
                None,
            )
            .await?;
            print(&v, json)?;
            if !json {
                for f in v["failures"].as_array().into_iter().flatten() {
                    println!(
                        "{} {:<16} {:<18} ×{:<5} {}",
                        s(&f["at"]),
                        s(&f["address"]),
                        s(&f["code"]),
                        s(&f["count"]),
                        s(&f["reason"])
                    );
                }
                for a in v["silent"].as_array().into_iter().flatten() {
                    println!(
                        "silent: agent {} {} (last contact {})",
                        s(&a["id"]),
                        s(&a["hostname"]),
                        s(&a["last_contact"])
                    );
                }
            }
        }
        AgentsCmd::Pending { all } => {
            let q = [("state", if all { "all" } else { "pending" }.to_string())];
            let v = call(c, Method::GET, "/enrollment-requests", &q, None).await?;
            print(&v, json)?;
            if !json {
                let rows = v.as_array().cloned().unwrap_or_default();
                if rows.is_empty() {
                    println!("no enrollment waits for approval");
                }
                for r in rows {
                    println!(
                        "{:>5} {:<9} {:<20} {:<38} from {:<15} {}",
                        s(&r["id"]),
                        s(&r["state"]),
                        s(&r["hostname"]),
                        s(&r["device_id"]),
                        s(&r["address"]),
                        s(&r["reason"])
                    );
                }
            }
        }
        AgentsCmd::Approve { id } | AgentsCmd::Refuse { id } => {
            let approve = matches!(cmd, AgentsCmd::Approve { .. });
            let verb = if approve { "approve" } else { "refuse" };
            let v = call(
                c,
                Method::POST,
                &format!("/enrollment-requests/{id}/{verb}"),
                &[],
                None,
            )
            .await?;
            print(&v, json)?;
            if !json {
                let r = &v["request"];
                if approve {
                    println!(
                        "approved: {} ({}) is agent {}; agents it claimed are replaced",
                        s(&r["hostname"]),
                        s(&r["device_id"]),
                        s(&v["agent"]["id"])
                    );
                } else {
                    println!(
                        "refused: the key given to {} ({}) never works",
                        s(&r["hostname"]),
                        s(&r["device_id"])
                    );
                }
            }
        }
        AgentsCmd::Endpoint => {
            let v = call(c, Method::GET, "/agent-endpoint", &[], None).await?;
            print(&v, json)?;
            if !json {
                println!(
                    "agent endpoint: {}\ncertificate SHA-256: {}",
                    s(&v["url"]),
                    s(&v["certificate_sha256"])
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn runbook(c: &Client, cmd: RunbookCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        RunbookCmd::List => {
            let v = call(c, Method::GET, "/runbooks", &[], None).await?;
            print(&v, json)?;
            if !json {
                for r in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {} → {}  prerequisites: {}",
                        s(&r["name"]),
                        s(&r["source_directories"]),
                        s(&r["target_directories"]),
                        s(&r["prerequisites"])
                    );
                }
            }
        }
        RunbookCmd::Show { name } => {
            let v = call(c, Method::GET, "/runbooks", &[], None).await?;
            let r = v
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == name.as_str())
                .with_context(|| format!("there is no runbook `{name}`"))?;
            println!("{}", serde_json::to_string_pretty(r)?);
        }
        RunbookCmd::Put { file } => {
            let body = read_json(&file)?;
            let name = body["name"]
                .as_str()
                .context("the runbook has no `name`")?
                .to_string();
            let v = call(
                c,
                Method::PUT,
                &format!("/runbooks/{name}"),
                &[],
                Some(body),
            )
            .await?;
            print(&v, json)?;
            if !json {
                println!("saved runbook `{name}`");
            }
        }
        RunbookCmd::Delete { name } => {
            call(c, Method::DELETE, &format!("/runbooks/{name}"), &[], None).await?;
            println!("deleted runbook `{name}`");
        }
        RunbookCmd::Render {
            runbook, output, ..
        } => {
            let v = call(c, Method::GET, "/runbooks", &[], None).await?;
            let r = v
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == runbook.as_str())
                .with_context(|| {
                    format!("there is no runbook file or server runbook `{runbook}`")
                })?;
            let rb: ferry_core::runbook::Runbook = serde_json::from_value(r.clone())?;
            render(&rb, output.as_deref())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn batch(c: &Client, cmd: BatchCmd, json: bool) -> Result<ExitCode> {
    let v = match cmd {
        BatchCmd::List => {
            let v = call(c, Method::GET, "/batches", &[], None).await?;
            if !json {
                for b in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {} → {}  runbooks {}  enforced after {} {}  computers {}",
                        s(&b["name"]),
                        s(&b["source_directory"]),
                        s(&b["target_directory"]),
                        s(&b["runbooks"]),
                        s(&b["enforced_after"]),
                        s(&b["time_zone"]),
                        b["computers"].as_array().map_or(0, Vec::len)
                    );
                }
            }
            v
        }
        BatchCmd::Put {
            file,
            add_prerequisites,
        } => {
            let body = read_json(&file)?;
            let name = body["name"]
                .as_str()
                .context("the batch has no `name`")?
                .to_string();
            let v = call(
                c,
                Method::PUT,
                &format!("/batches/{name}"),
                &[("add_prerequisites", add_prerequisites.to_string())],
                Some(body),
            )
            .await?;
            if !json {
                println!("saved batch `{name}`: runbooks {}", s(&v["runbooks"]));
                warnings(&v);
            }
            v
        }
        BatchCmd::Delete { name } => {
            call(c, Method::DELETE, &format!("/batches/{name}"), &[], None).await?;
            println!("deleted batch `{name}`");
            return Ok(ExitCode::SUCCESS);
        }
        BatchCmd::Add { name, computers } | BatchCmd::Remove { name, computers }
            if computers.is_empty() =>
        {
            anyhow::bail!("name at least one computer to change in batch `{name}`")
        }
        BatchCmd::Add { name, computers } => {
            let v = call(
                c,
                Method::POST,
                &format!("/batches/{name}/computers"),
                &[],
                Some(json!({ "add": computers })),
            )
            .await?;
            if !json {
                println!(
                    "batch `{name}`: {} computer(s)",
                    v["computers"].as_array().map_or(0, Vec::len)
                );
                warnings(&v);
            }
            v
        }
        BatchCmd::Remove { name, computers } => {
            let v = call(
                c,
                Method::POST,
                &format!("/batches/{name}/computers"),
                &[],
                Some(json!({ "remove": computers })),
            )
            .await?;
            if !json {
                println!(
                    "batch `{name}`: {} computer(s)",
                    v["computers"].as_array().map_or(0, Vec::len)
                );
            }
            v
        }
        BatchCmd::Whatif { name } => {
            let v = call(
                c,
                Method::GET,
                &format!("/batches/{name}/whatif"),
                &[],
                None,
            )
            .await?;
            if !json {
                println!(
                    "batch `{name}`: runbooks {}",
                    s(&v["assignment"]["runbooks"])
                );
                for d in v["devices"].as_array().into_iter().flatten() {
                    println!("\n{} (agent {})", s(&d["computer"]), s(&d["agent_id"]));
                    for m in d["remap"].as_array().into_iter().flatten() {
                        println!(
                            "  remap {} ({}) → {} ({})",
                            s(&m["profile"]),
                            s(&m["source_sid"]),
                            s(&m["target_name"]),
                            s(&m["target_sid"])
                        );
                    }
                    for n in d["no_target"].as_array().into_iter().flatten() {
                        println!("  no target: {} (will not be re-permissioned)", s(n));
                    }
                    for st in d["steps"].as_array().into_iter().flatten() {
                        println!("  step: {}", s(st));
                    }
                    warnings(d);
                }
            }
            v
        }
        BatchCmd::Progress { name } => {
            let v = call(
                c,
                Method::GET,
                &format!("/batches/{name}/progress"),
                &[],
                None,
            )
            .await?;
            if !json {
                println!(
                    "batch `{name}`: {} computer(s); {}",
                    s(&v["computers"]),
                    s(&v["states"])
                );
                for a in v["agents"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<18} {:<10} {:<5} {}",
                        s(&a["hostname"]),
                        s(&a["state"]),
                        s(&a["progress"]),
                        s(&a["last_step"])
                    );
                }
            }
            v
        }
    };
    print(&v, json)?;
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

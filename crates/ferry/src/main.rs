//! The `ferry` binary: one thin dispatcher over the libraries.

/// mimalloc: ferry's hot paths (LDAP decoding, snapshot parsing, matching) allocate many small
/// strings, where glibc's allocator showed as 40% of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod agent_install;
mod backup;
mod commands;
mod devices;
mod environments;
mod progress;
mod quickstart;
mod quickstart_device;
mod quickstart_moves;
mod windows;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Tenant-to-tenant migration: identities, workstations, environments."
)]
pub struct Cli {
    /// The ferry server to talk to.
    #[arg(
        long,
        global = true,
        env = "FERRY_SERVER",
        default_value = "http://127.0.0.1:5000"
    )]
    pub server: String,
    /// Bearer token (default: the `admin-token` file in ./ferry-data or ./ferry-quickstart/data).
    #[arg(long, global = true, env = "FERRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log lines (on stderr) as text, or as one JSON object a line for a log collector (with
    /// the request id of the request a line belongs to). `FERRY_LOG` sets the level.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FERRY_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Whether `--server` was given on the command line (the agent takes it only from there).
    #[arg(skip)]
    pub server_on_command_line: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane: API, scheduler, cycle engine.
    Server(ServerArgs),
    /// The whole story on one machine: sample tenants, a server, a sync cycle, a summary.
    Quickstart(quickstart::Args),
    /// Directories: list, test connection.
    #[command(subcommand)]
    Directory(DirectoryCmd),
    /// Sync profiles: run a cycle, see and approve the What-If, list cycles.
    #[command(subcommand)]
    Sync(SyncCmd),
    /// The translation table.
    #[command(subcommand)]
    Translation(TranslationCmd),
    /// Message logs, newest first.
    Logs(LogsArgs),
    /// Reports.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Check a configuration file without starting a server.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the API's OpenAPI document.
    Openapi,
    /// Back up a server's SQLite data directory, while it runs, into one file (the database and
    /// the key material); for PostgreSQL it says how to use pg_dump.
    Backup(backup::BackupArgs),
    /// Restore a `ferry backup` file into a new or empty data directory.
    Restore(backup::RestoreArgs),
    /// Pre-shared keys agents enroll with.
    #[command(subcommand)]
    Psk(devices::PskCmd),
    /// Enrolled migration agents and failed communications.
    #[command(subcommand)]
    Agents(devices::AgentsCmd),
    /// Runbooks: what agents do on a device.
    #[command(subcommand)]
    Runbook(devices::RunbookCmd),
    /// Batches: which computers run which runbooks, and when.
    #[command(subcommand)]
    Batch(devices::BatchCmd),
    /// Translate owners, groups and POSIX ACL entries of file trees through a map, with a journal
    /// for exact undo (`ferry repermission undo --journal FILE`).
    Repermission(RepermissionArgs),
    /// The migration agent on this device: run, status, start-now, snooze, rollback, install,
    /// uninstall.
    #[command(subcommand)]
    Agent(agent::AgentCmd),
    /// Windows security descriptors in SDDL: translate lines through a SID map.
    #[command(subcommand)]
    Sddl(windows::SddlCmd),
    /// `icacls /save` files: translate them through a SID map for `icacls /restore`.
    #[command(subcommand)]
    Icacls(windows::IcaclsCmd),
    /// `usermapping.csv` files of environment moves.
    #[command(subcommand)]
    Mapping(MappingCmd),
    /// Tenants environments move between (ferry admins put them).
    #[command(subcommand)]
    Tenant(environments::TenantCmd),
    /// Operators: ferry admins and tenant admins, with API tokens.
    #[command(subcommand)]
    Operator(environments::OperatorCmd),
    /// Environments and their moves between tenants.
    #[command(subcommand)]
    Env(environments::EnvCmd),
    /// The audit trail: who did what, when, from where (a tenant admin sees its tenant's lines).
    /// With --json: one JSON object a line (JSON lines, for a SIEM).
    Audit {
        /// The newest lines to show (without --since).
        #[arg(long, default_value_t = 50, conflicts_with = "since")]
        limit: i64,
        /// Every line since TIME, oldest first, however many: RFC 3339 (`2026-12-07T03:00:00Z`),
        /// a time ago (`24h`, `7d`, `1h30m`) or epoch milliseconds.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum MappingCmd {
    /// Check a usermapping.csv against the file rules, offline (no server).
    Validate { file: PathBuf },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RepermissionArgs {
    #[command(subcommand)]
    pub undo: Option<RepermissionCmd>,
    /// CSV with the header `source,target` (uid:N, gid:N or SIDs), or ferry's csv translation export.
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// add-and-remove (source principals replaced) or add (targets gain the same rights).
    #[arg(long, default_value = "add-and-remove")]
    pub mode: String,
    /// Change nothing; print what would change.
    #[arg(long)]
    pub what_if: bool,
    /// Journal of every change (for undo and for resuming a killed run).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Leave this path and everything below it alone (repeatable).
    #[arg(long)]
    pub exclude: Vec<PathBuf>,
    /// Worker threads (default: the CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Cross into other file systems below the paths.
    #[arg(long)]
    pub cross_devices: bool,
    /// Refuse maps naming uids or gids below this (the system range); root (0) is refused
    /// whatever it is.
    #[arg(long, default_value_t = ferry_core::privileged::DEFAULT_MIN_ID, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_id: u32,
    pub paths: Vec<PathBuf>,
}

#[derive(Subcommand)]
pub enum RepermissionCmd {
    /// Restore every file of a journal exactly as it was, newest change first.
    Undo {
        #[arg(long)]
        journal: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Configuration file (TOML).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory, private to the server's user: the SQLite database, admin-token and
    /// secret.key, which seals stored credentials unless FERRY_SECRET_KEY (32 bytes, base64) is
    /// set; servers sharing a database need the same key (default ./ferry-data).
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use PostgreSQL: postgres://user:pass@host/db. A password in the URL shows in `ps` when
    /// given here: prefer FERRY_DATABASE_URL.
    #[arg(long, env = "FERRY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Listen address (default 127.0.0.1:5000).
    #[arg(long, env = "FERRY_LISTEN")]
    pub listen: Option<String>,
    /// Do not run scheduled cycles on this server.
    #[arg(long)]
    pub no_scheduler: bool,
    /// Agent endpoint (TLS) listen address (default 127.0.0.1:5443; `off` to serve none).
    #[arg(long, env = "FERRY_AGENT_LISTEN")]
    pub agent_listen: Option<String>,
    /// PEM certificate of the agent endpoint (default: generated in DATA_DIR/agent-tls/).
    #[arg(long, requires = "agent_key")]
    pub agent_cert: Option<PathBuf>,
    /// PEM private key of --agent-cert.
    #[arg(long, requires = "agent_cert")]
    pub agent_key: Option<PathBuf>,
    /// Host name agents use to reach this server, put in a generated certificate (repeatable).
    #[arg(long = "agent-name")]
    pub agent_names: Vec<String>,
    /// The agent endpoint's public URL, when published behind a proxy (https://host/agent).
    #[arg(long)]
    pub agent_url: Option<String>,
}

#[derive(Subcommand)]
pub enum DirectoryCmd {
    /// List configured directories and their last import.
    List,
    /// Test a directory's connection: reachability, credentials, base DN, object counts.
    Test { name: String },
    /// The tenant pre-flight of a Microsoft Entra directory: who may join, MFA to join, the device
    /// quota, the Intune MDM scope, Windows enrolment, the device limit, Intune licences. Exits 1
    /// when a finding would hold devices back.
    Preflight {
        name: String,
        /// Read Microsoft Graph again instead of the result cached for a few minutes.
        #[arg(long)]
        refresh: bool,
    },
    /// Bulk enrolment tokens of a target Entra directory (devices use them to join it).
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Store a provisioning package (.ppkg) or bulk token made with Windows Configuration Designer.
    Add {
        /// The target Entra directory (kind = "graph").
        directory: String,
        /// The .ppkg file (or a file holding the bulk token: use --kind bprt).
        #[arg(long)]
        file: PathBuf,
        /// The package_{GUID}@… account Windows Configuration Designer created.
        #[arg(long)]
        package_upn: String,
        /// Expiry shown in Windows Configuration Designer: YYYY-MM-DD (at most 180 days after creation).
        #[arg(long)]
        expires: String,
        /// When the token was made: YYYY-MM-DD (default: today).
        #[arg(long)]
        created: Option<String>,
        /// ppkg or bprt (default: from the file name).
        #[arg(long)]
        kind: Option<String>,
    },
    /// List a directory's tokens with their expiry status.
    List { directory: String },
    /// Stop handing a token to devices (delete its package account in the tenant to revoke it at Microsoft).
    Revoke { id: i64 },
}

#[derive(Subcommand)]
pub enum SyncCmd {
    /// Run a cycle: import → sync → (export if the current What-If is approved).
    Run {
        profile: String,
        /// Wait for the cycle to finish and print its outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Show the pending What-If report: decisions and the writes an export would make.
    Whatif {
        profile: String,
        /// Only decisions of this status: matched, unmatched, ambiguous, conflict, refused,
        /// excluded, error.
        #[arg(long)]
        status: Option<String>,
        /// Search names, UPNs, mail, SIDs and ids.
        #[arg(long, short)]
        query: Option<String>,
        /// Decisions and writes to show (default 50).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Approve the current What-If; the next cycle exports it.
    Approve {
        profile: String,
        /// The plan hash you reviewed (refused if the What-If changed since).
        #[arg(long)]
        plan: Option<String>,
    },
    /// Pin a source object to a target object, whatever the rules say (objects named by id or by
    /// a UPN, mail, SID or name that names one; an ambiguous key is refused with its candidates).
    Pin {
        profile: String,
        source: String,
        target: String,
        /// Why; shown wherever the decision's rule is (`pinned by YOU: REASON`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Exclude a source object from the profile: not in the table, not warned about.
    Exclude {
        profile: String,
        source: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove the override (pin or exclude) of a source object: the rules decide again.
    Unpin { profile: String, source: String },
    /// List a profile's overrides (`ferry sync overrides import PROFILE FILE.csv` adds many).
    #[command(args_conflicts_with_subcommands = true)]
    Overrides {
        profile: Option<String>,
        #[command(subcommand)]
        cmd: Option<OverridesCmd>,
    },
    /// List profiles and their state.
    Profiles,
    /// List recent cycles.
    Cycles {
        #[arg(long)]
        profile: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Subcommand)]
pub enum OverridesCmd {
    /// Add the overrides of a CSV file (columns `source`, `target`, `exclude`, `reason`): all of
    /// them, or none when a line is bad (every bad line is named).
    Import { profile: String, file: PathBuf },
}

#[derive(Subcommand)]
pub enum TranslationCmd {
    /// Export the table: csv, json, sidmap or usermapping.
    Export {
        #[arg(long)]
        profile: Option<String>,
        #[arg(long, value_parser = ["csv", "json", "sidmap", "usermapping"])]
        format: String,
        /// Only the users of this registered environment (for its usermapping.csv).
        #[arg(long)]
        environment: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Search the table.
    Search {
        query: String,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(clap::Args)]
pub struct LogsArgs {
    #[arg(long)]
    pub profile: Option<String>,
    /// Minimum level: info, warning or error.
    #[arg(long, value_parser = ["info", "warning", "error"])]
    pub level: Option<String>,
    #[arg(long)]
    pub cycle: Option<i64>,
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Subcommand)]
pub enum ReportCmd {
    /// Everything ferry knows about one object (by name, UPN, mail, id or SID).
    Object { query: String },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Parse and validate a configuration file; print what it defines.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    // `println!` panics when stdout is a closed pipe (`ferry … | head`); like other Unix tools, end
    // quietly instead. Every other panic keeps the default report.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    cli.server_on_command_line =
        matches.value_source("server") == Some(clap::parser::ValueSource::CommandLine);
    // The server logs its work; other commands print results and log only problems.
    let default = if matches!(cli.command, Command::Server(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = std::env::var("FERRY_LOG").unwrap_or_else(|_| default.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        // A reader that went away (`ferry … | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

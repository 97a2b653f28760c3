//! `ferry tenant`, `ferry operator`, `ferry env` and `ferry env move …`: environment moves from the
//! command line, named after Microsoft's TenantToTenant cmdlets.

use crate::commands::{compact, print_json, print_list, wire_str};
use crate::devices::read_entry;
use anyhow::{Context, Result};
use clap::Subcommand;
use ferry_client::Client;
use ferry_client::wire::{MoveView, NewOperator, Rotate, SignIn, Submit};
use ferry_core::envmove::State as MoveState;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Subcommand)]
pub enum TenantCmd {
    List,
    /// Create or replace a tenant from a JSON file: {"id", "name", "domains", "directories", "cloud"}.
    Put {
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum OperatorCmd {
    /// Make an operator and print its API token (shown once): a ferry admin, with --tenant the
    /// admin of one tenant, or with --viewer one who sees everything and changes nothing.
    Add {
        name: String,
        #[arg(long, conflicts_with = "viewer")]
        tenant: Option<String>,
        #[arg(long)]
        viewer: bool,
        /// Read a password to sign in with (`ferry operator login`) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Sign in with a password (the first line of stdin); prints a session token for FERRY_TOKEN.
    Login { name: String },
    /// Every operator: name, role, whether it has a password and a session.
    List,
    /// Remove an operator: its token, password and session (not the last ferry admin).
    Remove { name: String },
    /// Replace an operator's API token (printed once) and end its session. An operator with a
    /// password gets a new one, generated and printed once unless given on stdin or in a file.
    Rotate {
        name: String,
        /// Read the new password from the first line of stdin.
        #[arg(long, conflicts_with = "password_file")]
        password_stdin: bool,
        /// Read the new password from the first line of this file.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

fn password_from_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!p.is_empty(), "no password on stdin");
    Ok(p)
}

#[derive(Subcommand)]
pub enum EnvCmd {
    List,
    Show {
        id: String,
    },
    /// Register or replace an environment from a JSON file (see docs/environments.md).
    Put {
        file: PathBuf,
    },
    /// Moves between tenants.
    #[command(subcommand)]
    Move(MoveCmd),
}

#[derive(Subcommand)]
pub enum MoveCmd {
    /// Ask the target tenant to take ENV (source admin; TenantToTenant-SubmitMigrationRequest).
    Submit {
        env: String,
        #[arg(long)]
        target_tenant: String,
    },
    /// Your side's requests and their MigrationId.
    List,
    /// Requests waiting for your tenant's approval (target admin).
    Approvals,
    /// Approve a request (target admin).
    Approve {
        migration_id: String,
    },
    /// Reject a request (target admin).
    Reject {
        migration_id: String,
    },
    /// Upload ENV's usermapping.csv (source admin); the file rules are checked at once.
    UploadMapping {
        env: String,
        file: PathBuf,
    },
    /// Validate the mapping (source admin); a long-running operation: see `status`, or `--wait`.
    Prepare {
        migration_id: String,
        /// Wait for the validation to end (its progress at a terminal), print its status line,
        /// and exit 1 unless it validated.
        #[arg(long)]
        wait: bool,
    },
    Status {
        migration_id: String,
    },
    /// The error file of a failed validation.
    Errors {
        migration_id: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Move the environment (source admin), within seven days of a successful validation.
    Migrate {
        migration_id: String,
    },
    Cancel {
        migration_id: String,
    },
    Delete {
        migration_id: String,
    },
}

/// A status line with the error file's address made absolute for this server.
fn status_line(c: &Client, status: &str) -> String {
    status.replace("here: /api/v1/", &format!("here: {}/api/v1/", c.server()))
}

fn moves_table(c: &Client, v: &[MoveView]) {
    for m in v {
        println!(
            "{}  {:<8} {:<16} {} → {}  {}",
            m.migration_id,
            m.side,
            m.environment,
            m.source_tenant,
            m.target_tenant,
            status_line(c, &m.status)
        );
    }
}

pub async fn tenant(c: &Client, cmd: TenantCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        TenantCmd::List => {
            print_list(&c.tenants().await?, json, |t| {
                println!(
                    "{:<20} {}  domains: {}  directories: {}",
                    t.id,
                    t.name,
                    compact(&t.domains),
                    compact(&t.directories)
                );
            })?;
        }
        TenantCmd::Put { file } => {
            let (body, id) = read_entry(&file, "id", "tenant")?;
            let v = c.put_tenant(&id, &body).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("saved tenant `{id}`");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn operator(c: &Client, cmd: OperatorCmd, json: bool) -> Result<ExitCode> {
    let (name, tenant, viewer, password_stdin) = match cmd {
        OperatorCmd::Add {
            name,
            tenant,
            viewer,
            password_stdin,
        } => (name, tenant, viewer, password_stdin),
        OperatorCmd::Login { name } => {
            let password = password_from_stdin()?;
            let v = c.sign_in(&SignIn { name, password }).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("{}", v.token);
            }
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCmd::List => {
            print_list(&c.operators().await?, json, |o| {
                println!(
                    "{:<24} {:<28} {:<12} {}",
                    o.name,
                    o.role,
                    if o.has_password {
                        "password"
                    } else {
                        "token only"
                    },
                    if o.has_session { "session" } else { "" }
                );
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCmd::Remove { name } => {
            c.remove_operator(&name).await?;
            if !json {
                println!("operator `{name}` removed; its session has ended");
            }
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCmd::Rotate {
            name,
            password_stdin,
            password_file,
        } => {
            let password = if password_stdin {
                Some(password_from_stdin()?)
            } else if let Some(f) = password_file {
                let t = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                let p = t.lines().next().unwrap_or_default().to_string();
                anyhow::ensure!(!p.is_empty(), "no password in {}", f.display());
                Some(p)
            } else {
                None
            };
            let v = c.rotate_operator(&name, &Rotate { password }).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("operator `{name}`: new token, shown this once (its session has ended):");
                println!("{}", v.token);
                if let Some(p) = &v.password {
                    println!("new password, shown this once:");
                    println!("{p}");
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let password = if password_stdin {
        Some(password_from_stdin()?)
    } else {
        None
    };
    let body = NewOperator {
        name,
        tenant,
        viewer,
        password,
    };
    let v = c.create_operator(&body).await?;
    if json {
        print_json(&v)?;
    } else {
        println!(
            "operator `{}` ({}); its token, shown this once:",
            v.name, v.role
        );
        println!("{}", v.token);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn env(c: &Client, cmd: EnvCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        EnvCmd::List => {
            print_list(&c.environments().await?, json, |e| {
                println!(
                    "{:<16} {:<24} {:<12} {:<10} {}",
                    e.id,
                    e.name,
                    e.tenant,
                    wire_str(&e.environment_type),
                    e.url
                );
            })?;
        }
        EnvCmd::Show { id } => {
            print_json(&c.environment(&id).await?)?;
        }
        EnvCmd::Put { file } => {
            let (body, id) = read_entry(&file, "id", "environment")?;
            let v = c.put_environment(&id, &body).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("saved environment `{id}`");
            }
        }
        EnvCmd::Move(m) => return moves(c, m, json).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// A move's MigrationId and Status, as Microsoft's cmdlets print them.
fn one(v: &MoveView) {
    println!("MigrationId: {}", v.migration_id);
    println!("Status: {}", v.status);
}

/// A move after an action on it: printed as JSON, or as MigrationId and Status.
fn acted(v: &MoveView, json: bool) -> Result<()> {
    if json {
        print_json(v)
    } else {
        one(v);
        Ok(())
    }
}

/// `prepare --wait`: starts the validation, follows it (what it is doing, at a terminal) and
/// prints where it ended.
async fn prepare_and_wait(c: &Client, id: &str, json: bool) -> Result<ExitCode> {
    c.prepare_move(id).await?;
    let doing = Arc::new(Mutex::new(String::from("starting")));
    let shown = Arc::clone(&doing);
    let ticker = crate::progress::Ticker::start(json, move |t| {
        let what = shown.lock().map(|w| w.clone()).unwrap_or_default();
        format!("validating {what} · {:.1} s", t.as_secs_f64())
    });
    let last = loop {
        let s = c.move_status(id).await?;
        if s.state != MoveState::Validating {
            break s;
        }
        if let (Some(p), Ok(mut w)) = (&s.progress, doing.lock()) {
            *w = p.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    drop(ticker);
    if json {
        print_json(&last)?;
    } else {
        println!("{}", status_line(c, &last.status));
    }
    Ok(if last.state == MoveState::Validated {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn moves(c: &Client, cmd: MoveCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        MoveCmd::Submit { env, target_tenant } => {
            let v = c.submit_move(&env, &Submit { target_tenant }).await?;
            if json {
                print_json(&v)?;
            } else {
                one(&v);
                for w in &v.warnings {
                    println!("unsupported: {w}");
                }
            }
        }
        MoveCmd::List => {
            let v = c.moves().await?;
            if json {
                print_json(&v)?;
            } else {
                moves_table(c, &v);
            }
        }
        MoveCmd::Approvals => {
            let v = c.move_approvals().await?;
            if json {
                print_json(&v)?;
            } else {
                moves_table(c, &v);
            }
        }
        MoveCmd::Approve { migration_id } => acted(&c.approve_move(&migration_id).await?, json)?,
        MoveCmd::Reject { migration_id } => acted(&c.reject_move(&migration_id).await?, json)?,
        MoveCmd::UploadMapping { env, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let v = c.upload_mapping(&env, &name, bytes).await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "uploaded: {} users (MigrationId {})",
                    v.users, v.migration_id
                );
            }
        }
        MoveCmd::Prepare {
            migration_id,
            wait: false,
        } => {
            let v = c.prepare_move(&migration_id).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("Code        : {}\nDescription : {}", v.code, v.description);
            }
        }
        MoveCmd::Prepare {
            migration_id,
            wait: true,
        } => return prepare_and_wait(c, &migration_id, json).await,
        MoveCmd::Status { migration_id } => {
            let v = c.move_status(&migration_id).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("{}", status_line(c, &v.status));
            }
        }
        MoveCmd::Errors {
            migration_id,
            output,
        } => {
            let text = c.move_errors(&migration_id).await?;
            match output {
                Some(p) => {
                    std::fs::write(&p, &text)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    println!(
                        "wrote {} ({} errors)",
                        p.display(),
                        text.lines().count().saturating_sub(1)
                    );
                }
                None => crate::commands::print_text(&text),
            }
        }
        MoveCmd::Migrate { migration_id } => {
            let v = c.migrate_move(&migration_id).await?;
            if json {
                print_json(&v)?;
            } else {
                one(&v.view);
                println!(
                    "{} users migrated; not migrated: {} not in the mapping file, {} application users in it (they cannot be mapped)",
                    v.migrated_users, v.not_in_mapping, v.application_users_in_mapping
                );
                println!("After the move:");
                for l in &v.checklist {
                    println!("  [ ] {l}");
                }
            }
        }
        MoveCmd::Cancel { migration_id } => acted(&c.cancel_move(&migration_id).await?, json)?,
        MoveCmd::Delete { migration_id } => {
            c.delete_move(&migration_id).await?;
            println!("deleted move request {migration_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

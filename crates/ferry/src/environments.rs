//! `ferry tenant`, `ferry operator`, `ferry env` and `ferry env move …`: environment moves from the
//! command line, named after Microsoft's TenantToTenant cmdlets.

use crate::devices::{call, print, read_json, s};
use anyhow::{Context, Result};
use clap::Subcommand;
use ferry_client::Client;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Validate the mapping (source admin); a long-running operation: see `status`.
    Prepare {
        migration_id: String,
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
fn status_line(c: &Client, v: &Value) -> String {
    s(v).replace("here: /api/v1/", &format!("here: {}/api/v1/", c.server()))
}

fn moves_table(c: &Client, v: &Value) {
    for m in v.as_array().into_iter().flatten() {
        println!(
            "{}  {:<8} {:<16} {} → {}  {}",
            s(&m["migration_id"]),
            s(&m["side"]),
            s(&m["environment"]),
            s(&m["source_tenant"]),
            s(&m["target_tenant"]),
            status_line(c, &m["status"])
        );
    }
}

pub async fn tenant(c: &Client, cmd: TenantCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        TenantCmd::List => {
            let v = call(c, Method::GET, "/tenants", &[], None).await?;
            print(&v, json)?;
            if !json {
                for t in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<20} {}  domains: {}  directories: {}",
                        s(&t["id"]),
                        s(&t["name"]),
                        s(&t["domains"]),
                        s(&t["directories"])
                    );
                }
            }
        }
        TenantCmd::Put { file } => {
            let body = read_json(&file)?;
            let id = body["id"]
                .as_str()
                .context("the tenant has no `id`")?
                .to_string();
            let v = call(c, Method::PUT, &format!("/tenants/{id}"), &[], Some(body)).await?;
            print(&v, json)?;
            if !json {
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
            let body = json!({"name": name, "password": password});
            let v = call(c, Method::POST, "/sessions", &[], Some(body)).await?;
            print(&v, json)?;
            if !json {
                println!("{}", s(&v["token"]));
            }
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCmd::List => {
            let v = call(c, Method::GET, "/operators", &[], None).await?;
            print(&v, json)?;
            if !json {
                for o in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<28} {:<12} {}",
                        s(&o["name"]),
                        s(&o["role"]),
                        if o["has_password"].as_bool() == Some(true) {
                            "password"
                        } else {
                            "token only"
                        },
                        if o["has_session"].as_bool() == Some(true) {
                            "session"
                        } else {
                            ""
                        }
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        OperatorCmd::Remove { name } => {
            call(c, Method::DELETE, &format!("/operators/{name}"), &[], None).await?;
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
            let body = json!({"password": password});
            let v = call(
                c,
                Method::POST,
                &format!("/operators/{name}/rotate"),
                &[],
                Some(body),
            )
            .await?;
            print(&v, json)?;
            if !json {
                println!("operator `{name}`: new token, shown this once (its session has ended):");
                println!("{}", s(&v["token"]));
                if let Some(p) = v["password"].as_str() {
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
    let body = json!({"name": name, "tenant": tenant, "viewer": viewer, "password": password});
    let v = call(c, Method::POST, "/operators", &[], Some(body)).await?;
    print(&v, json)?;
    if !json {
        println!(
            "operator `{}` ({}); its token, shown this once:",
            s(&v["name"]),
            s(&v["role"])
        );
        println!("{}", s(&v["token"]));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn env(c: &Client, cmd: EnvCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        EnvCmd::List => {
            let v = call(c, Method::GET, "/environments", &[], None).await?;
            print(&v, json)?;
            if !json {
                for e in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {:<24} {:<12} {:<10} {}",
                        s(&e["id"]),
                        s(&e["name"]),
                        s(&e["tenant"]),
                        s(&e["type"]),
                        s(&e["url"])
                    );
                }
            }
        }
        EnvCmd::Show { id } => {
            let v = call(c, Method::GET, &format!("/environments/{id}"), &[], None).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        EnvCmd::Put { file } => {
            let body = read_json(&file)?;
            let id = body["id"]
                .as_str()
                .context("the environment has no `id`")?
                .to_string();
            let v = call(
                c,
                Method::PUT,
                &format!("/environments/{id}"),
                &[],
                Some(body),
            )
            .await?;
            print(&v, json)?;
            if !json {
                println!("saved environment `{id}`");
            }
        }
        EnvCmd::Move(m) => return moves(c, m, json).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// A POST on a move, printed as MigrationId and Status.
async fn act(c: &Client, path: &str, json: bool) -> Result<Value> {
    let v = call(c, Method::POST, path, &[], None).await?;
    print(&v, json)?;
    if !json {
        println!("MigrationId: {}", s(&v["migration_id"]));
        println!("Status: {}", s(&v["status"]));
    }
    Ok(v)
}

async fn moves(c: &Client, cmd: MoveCmd, json: bool) -> Result<ExitCode> {
    let one = |v: &Value| {
        println!("MigrationId: {}", s(&v["migration_id"]));
        println!("Status: {}", s(&v["status"]));
    };
    match cmd {
        MoveCmd::Submit { env, target_tenant } => {
            let v = call(
                c,
                Method::POST,
                &format!("/environments/{env}/moves"),
                &[],
                Some(json!({"target_tenant": target_tenant})),
            )
            .await?;
            print(&v, json)?;
            if !json {
                one(&v);
                for w in v["warnings"].as_array().into_iter().flatten() {
                    println!("unsupported: {}", s(w));
                }
            }
        }
        MoveCmd::List => {
            let v = call(c, Method::GET, "/moves", &[], None).await?;
            print(&v, json)?;
            if !json {
                moves_table(c, &v);
            }
        }
        MoveCmd::Approvals => {
            let v = call(c, Method::GET, "/moves/approvals", &[], None).await?;
            print(&v, json)?;
            if !json {
                moves_table(c, &v);
            }
        }
        MoveCmd::Approve { migration_id } => {
            act(c, &format!("/moves/{migration_id}/approve"), json).await?;
        }
        MoveCmd::Reject { migration_id } => {
            act(c, &format!("/moves/{migration_id}/reject"), json).await?;
        }
        MoveCmd::UploadMapping { env, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let r = c
                .send_bytes(
                    Method::PUT,
                    &format!("/environments/{env}/usermapping"),
                    &[("file_name", name)],
                    bytes,
                    "text/csv",
                )
                .await?;
            let v: Value = r.json().await?;
            print(&v, json)?;
            if !json {
                println!(
                    "uploaded: {} users (MigrationId {})",
                    s(&v["users"]),
                    s(&v["migration_id"])
                );
            }
        }
        MoveCmd::Prepare { migration_id } => {
            let v = call(
                c,
                Method::POST,
                &format!("/moves/{migration_id}/prepare"),
                &[],
                None,
            )
            .await?;
            print(&v, json)?;
            if !json {
                println!(
                    "Code        : {}\nDescription : {}",
                    s(&v["code"]),
                    s(&v["description"])
                );
            }
        }
        MoveCmd::Status { migration_id } => {
            let v = call(
                c,
                Method::GET,
                &format!("/moves/{migration_id}/status"),
                &[],
                None,
            )
            .await?;
            print(&v, json)?;
            if !json {
                println!("{}", status_line(c, &v["status"]));
            }
        }
        MoveCmd::Errors {
            migration_id,
            output,
        } => {
            let r = c
                .send(
                    Method::GET,
                    &format!("/moves/{migration_id}/errors"),
                    &[],
                    None,
                )
                .await?;
            let text = r.text().await?;
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
                None => print!("{text}"),
            }
        }
        MoveCmd::Migrate { migration_id } => {
            let v = call(
                c,
                Method::POST,
                &format!("/moves/{migration_id}/migrate"),
                &[],
                None,
            )
            .await?;
            print(&v, json)?;
            if !json {
                one(&v);
                println!(
                    "{} users migrated; not migrated: {} not in the mapping file, {} application users in it (they cannot be mapped)",
                    s(&v["migrated_users"]),
                    s(&v["not_in_mapping"]),
                    s(&v["application_users_in_mapping"])
                );
                println!("After the move:");
                for l in v["checklist"].as_array().into_iter().flatten() {
                    println!("  [ ] {}", s(l));
                }
            }
        }
        MoveCmd::Cancel { migration_id } => {
            act(c, &format!("/moves/{migration_id}/cancel"), json).await?;
        }
        MoveCmd::Delete { migration_id } => {
            call(
                c,
                Method::DELETE,
                &format!("/moves/{migration_id}"),
                &[],
                None,
            )
            .await?;
            println!("deleted move request {migration_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! Each subcommand: the server, the admin commands (API calls, printed for people or as JSON), and
//! the offline ones.

use crate::client::Client;
use crate::{
    Cli, Command, ConfigCmd, DirectoryCmd, OverridesCmd, ReportCmd, ServerArgs, SyncCmd, TokenCmd,
    TranslationCmd,
};
use anyhow::{Context, Result, bail};
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let json = cli.json;
    let client = || Client::new(&cli.server, cli.token.clone());
    match cli.command {
        Command::Server(a) => server(a).await,
        Command::Quickstart(a) => crate::quickstart::run(a, json).await,
        Command::Openapi => {
            print!("{}", ferry_server::api::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCmd::Check { file }) => {
            let s = Settings::load(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s.config)?);
            } else {
                println!("{}: ok", file.display());
                for d in &s.config.directories {
                    println!("  directory {} ({})", d.name(), d.kind());
                }
                for p in &s.config.profiles {
                    let sched = p
                        .schedule
                        .map(|s| format!(", every {s}"))
                        .unwrap_or_default();
                    println!(
                        "  sync profile {}: {} → {} ({}{sched})",
                        p.name,
                        p.source,
                        p.target,
                        p.mode.as_str()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Directory(c) => directory(&client()?, c, json).await,
        Command::Psk(c) => crate::devices::psk(&client()?, c, json).await,
        Command::Agents(c) => crate::devices::agents(&client()?, c, json).await,
        Command::Runbook(crate::devices::RunbookCmd::Render {
            runbook, output, ..
        }) if std::path::Path::new(&runbook).is_file() => {
            crate::devices::render_file(std::path::Path::new(&runbook), output.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Runbook(c) => crate::devices::runbook(&client()?, c, json).await,
        Command::Batch(c) => crate::devices::batch(&client()?, c, json).await,
        Command::Repermission(a) => repermission(a, json),
        Command::Sddl(c) => crate::windows::sddl(c, json),
        Command::Icacls(c) => crate::windows::icacls(c, json),
        Command::Mapping(crate::MappingCmd::Validate { file }) => mapping_validate(&file, json),
        Command::Tenant(c) => crate::environments::tenant(&client()?, c, json).await,
        Command::Operator(c) => crate::environments::operator(&client()?, c, json).await,
        Command::Env(c) => crate::environments::env(&client()?, c, json).await,
        Command::Audit { limit } => {
            let v: Value = client()?
                .get("/audit", &[("limit", limit.to_string())])
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for a in v.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<10} {:<10} {:<26} {}  {}",
                        crate::devices::s(&a["at"]),
                        crate::devices::s(&a["actor"]),
                        crate::devices::s(&a["tenant"]),
                        crate::devices::s(&a["action"]),
                        crate::devices::s(&a["subject"]),
                        crate::devices::s(&a["detail"])
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(c) => {
            let server = cli.server_on_command_line.then(|| cli.server.clone());
            crate::agent::agent(c, server, json).await
        }
        Command::Sync(c) => sync(&client()?, c, json).await,
        Command::Translation(c) => translation(&client()?, c, json).await,
        Command::Logs(a) => {
            let mut q = vec![("limit", a.limit.to_string())];
            push(&mut q, "profile", a.profile);
            push(&mut q, "level", a.level);
            push(&mut q, "cycle", a.cycle.map(|c| c.to_string()));
            let logs: Value = client()?.get("/logs", &q).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&logs)?);
            } else {
                for l in logs.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<7} {:<10} {}",
                        time(&l["at"]),
                        s(&l["level"]),
                        s(&l["code"]),
                        s(&l["message"])
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(ReportCmd::Object { query }) => {
            let r: Value = client()?
                .get("/report/object", &[("q", query.clone())])
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_report(&r);
            }
            Ok(if r["objects"].as_array().is_some_and(|a| !a.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn push(q: &mut Vec<(&'static str, String)>, k: &'static str, v: Option<String>) {
    if let Some(v) = v {
        q.push((k, v));
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn time(v: &Value) -> String {
    v.as_i64()
        .map(|ms| {
            let secs = ms / 1000;
            let (d, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            // Civil date from days since the epoch (Howard Hinnant's algorithm).
            let z = d + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let day = doy - (153 * mp + 2) / 5 + 1;
            let month = if mp < 10 { mp + 3 } else { mp - 9 };
            let year = yoe + era * 400 + i64::from(month <= 2);
            format!(
                "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            )
        })
        .unwrap_or_default()
}

async fn server(a: ServerArgs) -> Result<ExitCode> {
    let settings = match &a.config {
        Some(p) => Settings::load(p)?,
        None => {
            eprintln!("note: no --config given; the server starts with no directories or profiles");
            Settings::empty()
        }
    };
    let srv = &settings.config.server;
    let listen = a
        .listen
        .or_else(|| srv.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let data_dir = a
        .data_dir
        .or_else(|| srv.data_dir.as_ref().map(|d| settings.base.join(d)))
        .unwrap_or_else(|| PathBuf::from("ferry-data"));
    let database_url = a
        .database_url
        .or_else(|| srv.database_url.as_ref().map(|s| s.expose().to_string()));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let backend = if database_url.is_some() {
        "PostgreSQL".to_string()
    } else {
        format!("SQLite in {}", data_dir.display())
    };
    let agent_listen = a.agent_listen.unwrap_or_else(|| "127.0.0.1:5443".into());
    let agent = if agent_listen == "off" {
        None
    } else {
        Some(ferry_server::AgentEndpoint {
            listener: tokio::net::TcpListener::bind(&agent_listen)
                .await
                .with_context(|| format!("cannot listen on {agent_listen} for agents (give --agent-listen ADDR or off)"))?,
            cert: a.agent_cert.zip(a.agent_key),
            names: a.agent_names,
            public_url: a.agent_url,
        })
    };
    let opts = ServerOptions {
        settings,
        data_dir,
        database_url,
        admin_token: std::env::var("FERRY_ADMIN_TOKEN").ok(),
        secret_key: std::env::var("FERRY_SECRET_KEY").ok(),
        scheduler: !a.no_scheduler,
        agent,
    };
    let server = Server::start(opts, listener).await?;
    eprintln!(
        "ferry server listening on http://{} ({backend}); admin token: {}",
        server.addr, server.admin_token_source
    );
    if let (Some(addr), Some(fp)) = (server.agent_addr, &server.agent_fingerprint) {
        eprintln!(
            "agent endpoint on https://{addr}/agent; certificate SHA-256 {fp} (agents pin it)"
        );
    }
    wait_for_signal().await;
    eprintln!("shutting down");
    server.stop().await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn directory(c: &Client, cmd: DirectoryCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        DirectoryCmd::List => {
            let v: Value = c.get("/directories", &[]).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<16} {:<5} {:<10} {:<19} LOCATION",
                    "NAME", "KIND", "OBJECTS", "LAST IMPORT"
                );
                for d in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {:<5} {:<10} {:<19} {}",
                        s(&d["name"]),
                        s(&d["kind"]),
                        s(&d["state"]["objects"]),
                        time(&d["state"]["last_import"]),
                        s(&d["location"])
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCmd::Test { name } => {
            let v: Value = c
                .post(&format!("/directories/{name}/test"), &[], None)
                .await?;
            let ok = v["ok"].as_bool().unwrap_or(false);
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for line in v["checks"].as_array().into_iter().flatten() {
                    println!("{} {}", if ok { "✓" } else { "✗" }, s(line));
                }
                println!(
                    "{}",
                    if ok {
                        "connection OK"
                    } else {
                        "connection FAILED"
                    }
                );
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DirectoryCmd::Token(t) => token(c, t, json).await,
    }
}

async fn token(c: &Client, cmd: TokenCmd, json: bool) -> Result<ExitCode> {
    let show = |v: &Value| {
        println!(
            "#{:<4} {:<9} {:<5} expires {}  {}  {} ({} bytes, sha256 {})",
            s(&v["id"]),
            s(&v["status"]),
            s(&v["kind"]),
            s(&v["expires"]),
            s(&v["package_upn"]),
            v["file_name"].as_str().unwrap_or("-"),
            s(&v["size"]),
            &s(&v["sha256"])[..12.min(s(&v["sha256"]).len())]
        );
        if let Some(w) = v["warning"].as_str() {
            println!("      warning: {w}");
        }
    };
    let v: Value = match cmd {
        TokenCmd::Add {
            directory,
            file,
            package_upn,
            expires,
            created,
            kind,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let kind = kind.unwrap_or_else(|| {
                if file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("ppkg"))
                {
                    "ppkg".into()
                } else {
                    "bprt".into()
                }
            });
            use base64::Engine as _;
            let body = serde_json::json!({
                "kind": kind,
                "file_name": file.file_name().map(|n| n.to_string_lossy().into_owned()),
                "package_upn": package_upn,
                "created": created,
                "expires": expires,
                "content_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
            });
            c.post(
                &format!("/directories/{directory}/enrolment-tokens"),
                &[],
                Some(body),
            )
            .await?
        }
        TokenCmd::List { directory } => {
            c.get(&format!("/directories/{directory}/enrolment-tokens"), &[])
                .await?
        }
        TokenCmd::Revoke { id } => {
            let v: Value = c
                .post(&format!("/enrolment-tokens/{id}/revoke"), &[], None)
                .await?;
            if !json {
                println!(
                    "revoked in ferry: devices no longer receive it. To revoke it at Microsoft, delete the account {} in the tenant.",
                    s(&v["package_upn"])
                );
            }
            v
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(list) = v.as_array() {
        if list.is_empty() {
            println!("no bulk enrolment tokens");
        }
        list.iter().for_each(show);
    } else {
        show(&v);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_cycle(c: &Value) {
    let counts = &c["counts"];
    println!(
        "cycle {} of {}: {} ({})",
        s(&c["id"]),
        s(&c["profile"]),
        s(&c["status"]),
        s(&c["trigger"])
    );
    if !counts.is_null() {
        let n = |k: &str| counts[k].as_u64().unwrap_or(0);
        println!(
            "  {} source / {} target objects: {} matched, {} unmatched, {} ambiguous{}; {} create(s), {} update(s) planned",
            s(&counts["source_objects"]),
            s(&counts["target_objects"]),
            s(&counts["matched"]),
            s(&counts["unmatched"]),
            s(&counts["ambiguous"]),
            [
                ("refused (privileged)", n("refused")),
                ("excluded", n("excluded")),
                ("override error(s)", n("errors"))
            ]
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!(", {v} {k}"))
            .collect::<String>(),
            s(&counts["creates"]),
            s(&counts["updates"])
        );
    }
    if !c["export"].is_null() {
        println!("  export: {}", s(&c["export"]));
    }
    if !c["error"].is_null() {
        println!("  error: {}", s(&c["error"]));
    }
}

async fn sync(c: &Client, cmd: SyncCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        SyncCmd::Run { profile, wait } => {
            let q = if wait {
                vec![("wait", "true".to_string())]
            } else {
                vec![]
            };
            let v: Value = c
                .post(&format!("/profiles/{profile}/run"), &q, None)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if wait {
                print_cycle(&v["cycle"]);
            } else {
                println!(
                    "cycle {} started; follow it with `ferry sync cycles --profile {profile}`",
                    s(&v["cycle_id"])
                );
            }
            let failed = wait && v["cycle"]["status"].as_str() != Some("succeeded");
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        SyncCmd::Whatif {
            profile,
            status,
            query,
            limit,
        } => {
            let mut q = vec![
                ("limit", limit.to_string()),
                ("writes_limit", limit.to_string()),
            ];
            push(&mut q, "status", status);
            push(&mut q, "q", query);
            let v: Value = c.get(&format!("/profiles/{profile}/whatif"), &q).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let p = &v["plan"];
            println!(
                "What-If for {profile} (cycle {}, plan {}, mode {})",
                s(&p["cycle_id"]),
                &s(&p["hash"])[..12.min(s(&p["hash"]).len())],
                s(&p["mode"])
            );
            let cn = &p["counts"];
            println!(
                "  {} matched, {} unmatched, {} ambiguous, {} excluded, {} override error(s); {} create(s), {} update(s)",
                s(&cn["matched"]),
                s(&cn["unmatched"]),
                s(&cn["ambiguous"]),
                s(&cn["excluded"]),
                s(&cn["errors"]),
                s(&cn["creates"]),
                s(&cn["updates"])
            );
            println!(
                "  {}",
                if v["approved"].as_bool() == Some(true) {
                    "approved: the next cycle exports these writes".to_string()
                } else if v["needs_approval"].as_bool() == Some(true) {
                    format!("NOT approved: review, then `ferry sync approve {profile}`")
                } else {
                    "nothing to export".to_string()
                }
            );
            let rules: Vec<String> = p["rules"].as_array().into_iter().flatten().map(s).collect();
            println!(
                "\nDecisions ({} shown of {}):",
                v["decisions"].as_array().map_or(0, Vec::len),
                s(&v["decisions_total"])
            );
            for d in v["decisions"].as_array().into_iter().flatten() {
                let rule = d["rule"]
                    .as_u64()
                    .and_then(|r| rules.get(r as usize))
                    .cloned()
                    .unwrap_or_default();
                let who = if d["source_upn"].is_null() {
                    s(&d["source_name"])
                } else {
                    s(&d["source_upn"])
                };
                let detail = match d["status"].as_str() {
                    Some("matched") => format!(
                        "→ {} [{rule}]",
                        if d["target_upn"].is_null() {
                            s(&d["target_name"])
                        } else {
                            s(&d["target_upn"])
                        }
                    ),
                    Some("ambiguous") => format!("candidates {} [{rule}]", d["candidates"]),
                    Some("conflict") => format!(
                        "target {} also claimed by {}",
                        s(&d["target_name"]),
                        d["candidates"]
                    ),
                    Some("excluded" | "error" | "refused") => format!("[{rule}]"),
                    _ => String::new(),
                };
                println!(
                    "  {:<9} {:<6} {who} {detail}",
                    s(&d["status"]),
                    s(&d["kind"])
                );
            }
            if v["writes_total"].as_u64().unwrap_or(0) > 0 {
                println!(
                    "\nWrites ({} shown of {}):",
                    v["writes"].as_array().map_or(0, Vec::len),
                    s(&v["writes_total"])
                );
                for w in v["writes"].as_array().into_iter().flatten() {
                    println!(
                        "  {} {} {}: {}",
                        s(&w["op"]),
                        s(&w["kind"]),
                        s(&w["name"]),
                        if w["op"] == "create" {
                            w["attributes"].to_string()
                        } else {
                            w["changes"].to_string()
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Approve { profile, plan } => {
            let body = plan.map(|h| serde_json::json!({ "plan_hash": h }));
            let v: Value = c
                .post(&format!("/profiles/{profile}/approve"), &[], body)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "approved plan {} of {profile}; the next cycle exports it",
                    &s(&v["plan_hash"])[..12]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Pin {
            profile,
            source,
            target,
            reason,
        } => {
            let body = serde_json::json!({ "source": source, "target": target, "reason": reason });
            add_override(c, &profile, body, json).await
        }
        SyncCmd::Exclude {
            profile,
            source,
            reason,
        } => {
            let body = serde_json::json!({ "source": source, "exclude": true, "reason": reason });
            add_override(c, &profile, body, json).await
        }
        SyncCmd::Unpin { profile, source } => {
            c.send(
                reqwest::Method::DELETE,
                &format!("/profiles/{}/overrides/{}", seg(&profile), seg(&source)),
                &[],
                None,
            )
            .await?;
            if !json {
                println!(
                    "removed the override of `{source}`; the rules decide it again at the next cycle (`ferry sync run {profile} --wait`)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Overrides {
            cmd: Some(OverridesCmd::Import { profile, file }),
            ..
        } => {
            let data =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let v: Value = c
                .send_bytes(
                    reqwest::Method::POST,
                    &format!("/profiles/{}/overrides/import", seg(&profile)),
                    &[],
                    data,
                    "text/csv",
                )
                .await?
                .json()
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "imported {} pin(s) and {} exclude(s) into {profile} ({} replaced an earlier override); they take effect at the next cycle (`ferry sync run {profile} --wait`)",
                    s(&v["pins"]),
                    s(&v["excludes"]),
                    s(&v["replaced"])
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Overrides { profile, cmd: None } => {
            let Some(profile) = profile else {
                bail!(
                    "name a profile: `ferry sync overrides PROFILE`, or `ferry sync overrides import PROFILE FILE.csv`"
                );
            };
            let v: Value = c
                .get(&format!("/profiles/{}/overrides", seg(&profile)), &[])
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!(
                    "{profile} has no overrides (`ferry sync pin {profile} SOURCE TARGET` adds one)"
                );
            }
            let named = |id: &Value, name: &Value| {
                if name.is_null() {
                    format!("{} (not found)", s(id))
                } else {
                    format!("{} ({})", s(id), s(name))
                }
            };
            for o in list {
                let what = if o["exclude"] == true {
                    "excluded".to_string()
                } else {
                    format!("→ {}", named(&o["target"], &o["target_name"]))
                };
                let why = if o["reason"].is_null() {
                    String::new()
                } else {
                    format!(": {}", s(&o["reason"]))
                };
                println!(
                    "  {} {what}\n      by {}{why} ({})",
                    named(&o["source"], &o["source_name"]),
                    s(&o["operator"]),
                    if o["origin"] == "config" {
                        "in the configuration: change it there"
                    } else {
                        "`ferry sync unpin` removes it"
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Profiles => {
            let v: Value = c.get("/profiles", &[]).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for p in v.as_array().into_iter().flatten() {
                    let sched = if p["schedule"].is_null() {
                        "on demand".into()
                    } else {
                        format!("every {}", s(&p["schedule"]))
                    };
                    println!(
                        "{}: {} → {}, {}, {sched}{}",
                        s(&p["name"]),
                        s(&p["source"]),
                        s(&p["target"]),
                        s(&p["mode"]),
                        if p["awaiting_approval"] == true {
                            ", What-If awaiting approval"
                        } else {
                            ""
                        }
                    );
                    if !p["last_cycle"].is_null() {
                        print!("  last ");
                        print_cycle(&p["last_cycle"]);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Cycles { profile, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            push(&mut q, "profile", profile);
            let v: Value = c.get("/cycles", &q).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for cy in v.as_array().into_iter().flatten() {
                    print!("{}  ", time(&cy["started_at"]));
                    print_cycle(cy);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn add_override(c: &Client, profile: &str, body: Value, json: bool) -> Result<ExitCode> {
    let v: Value = c
        .post(
            &format!("/profiles/{}/overrides", seg(profile)),
            &[],
            Some(body),
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if v["exclude"] == true {
        println!(
            "excluded {} ({}) from {profile}; it takes effect at the next cycle (`ferry sync run {profile} --wait`)",
            s(&v["source_name"]),
            s(&v["source"])
        );
    } else {
        println!(
            "pinned {} ({}) to {} ({}) in {profile}; it takes effect at the next cycle (`ferry sync run {profile} --wait`)",
            s(&v["source_name"]),
            s(&v["source"]),
            s(&v["target_name"]),
            s(&v["target"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A value as one path segment of a URL (names hold commas, spaces, `/`, non-ASCII).
pub fn seg(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn translation(c: &Client, cmd: TranslationCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        TranslationCmd::Export {
            profile,
            format,
            environment,
            output,
        } => {
            let mut q = vec![("format", format)];
            push(&mut q, "profile", profile);
            push(&mut q, "environment", environment);
            let resp = c
                .send(reqwest::Method::GET, "/translation/export", &q, None)
                .await?;
            let skipped = resp
                .headers()
                .get("x-ferry-skipped")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0")
                .to_string();
            let written = resp
                .headers()
                .get("x-ferry-written")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            let body = resp.bytes().await?;
            match output {
                Some(path) => {
                    let tmp = path.with_extension("part");
                    std::fs::write(&tmp, &body)
                        .with_context(|| format!("cannot write {}", tmp.display()))?;
                    std::fs::rename(&tmp, &path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote {written} entries to {} ({skipped} left out by the format)",
                        path.display()
                    );
                }
                None => {
                    use std::io::Write as _;
                    std::io::stdout().write_all(&body)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TranslationCmd::Search {
            query,
            profile,
            limit,
        } => {
            let mut q = vec![("q", query), ("limit", limit.to_string())];
            push(&mut q, "profile", profile);
            let v: Value = c.get("/translation", &q).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{} entr{} found",
                    s(&v["total"]),
                    if v["total"] == 1 { "y" } else { "ies" }
                );
                for e in v["entries"].as_array().into_iter().flatten() {
                    println!(
                        "  {} {}: {} ({}) → {} ({})",
                        s(&e["profile"]),
                        s(&e["kind"]),
                        if e["source_upn"].is_null() {
                            s(&e["source_name"])
                        } else {
                            s(&e["source_upn"])
                        },
                        s(&e["source_sid"]),
                        if e["target_upn"].is_null() {
                            s(&e["target_name"])
                        } else {
                            s(&e["target_upn"])
                        },
                        s(&e["target_sid"])
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_report(r: &Value) {
    let objs = r["objects"].as_array().cloned().unwrap_or_default();
    if objs.is_empty() {
        println!(
            "nothing known as `{}` (search is exact: a name, UPN, mail, object id or SID)",
            s(&r["query"])
        );
        return;
    }
    for o in objs {
        let ob = &o["object"];
        println!(
            "{} {} in directory {}",
            s(&ob["kind"]),
            s(&ob["name"]),
            s(&o["directory"])
        );
        for (k, v) in [
            ("id", &ob["id"]),
            ("dn", &ob["dn"]),
            ("upn", &ob["upn"]),
            ("mail", &ob["mail"]),
            ("sid", &ob["sid"]),
            ("uid_number", &ob["uid_number"]),
            ("gid_number", &ob["gid_number"]),
        ] {
            if !v.is_null() {
                println!("  {k:<11} {}", s(v));
            }
        }
        for pair in ob["attrs"].as_array().into_iter().flatten() {
            println!("  {:<11} {}", s(&pair[0]), s(&pair[1]));
        }
        for p in o["profiles"].as_array().into_iter().flatten() {
            let d = &p["decision"];
            println!(
                "  profile {} ({} side): {}{}",
                s(&p["profile"]),
                s(&p["side"]),
                s(&d["status"]),
                if p["rule"].is_null() {
                    String::new()
                } else {
                    format!(" by rule {}", s(&p["rule"]))
                }
            );
            let c = &p["counterpart"];
            if !c.is_null() {
                let other = if s(&p["side"]) == "source" {
                    "target"
                } else {
                    "source"
                };
                println!(
                    "    {other}: {} {} in {} (id {})",
                    s(&c["object"]["kind"]),
                    s(&c["object"]["name"]),
                    s(&c["directory"]),
                    s(&c["object"]["id"])
                );
            }
            let rows = p["identity"].as_array().cloned().unwrap_or_default();
            if !rows.is_empty() {
                let join = |v: &Value| {
                    let vs: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
                    if vs.is_empty() {
                        "—".to_string()
                    } else {
                        vs.join("; ")
                    }
                };
                let width = rows
                    .iter()
                    .map(|r| s(&r["attribute"]).chars().count())
                    .max()
                    .unwrap_or(0);
                let swidth = rows
                    .iter()
                    .map(|r| join(&r["source"]).chars().count())
                    .max()
                    .unwrap_or(0);
                println!("    {:<width$}  {:<swidth$}  target", "", "source");
                for r in &rows {
                    println!(
                        "    {:<width$}  {:<swidth$}  {}",
                        s(&r["attribute"]),
                        join(&r["source"]),
                        join(&r["target"])
                    );
                }
            }
            if let Some(cands) = d["candidates"].as_array().filter(|a| !a.is_empty()) {
                println!(
                    "    candidates: {}",
                    cands.iter().map(s).collect::<Vec<_>>().join(", ")
                );
            }
            println!(
                "    decided in cycle {}, last changed in cycle {}",
                s(&d["first_cycle"]),
                s(&d["changed_cycle"])
            );
        }
        for h in o["history"].as_array().into_iter().flatten() {
            println!(
                "  history: {} cycle {}: {}",
                time(&h["at"]),
                s(&h["cycle_id"]),
                s(&h["change"])
            );
        }
        for l in o["logs"].as_array().into_iter().flatten().take(10) {
            println!(
                "  log: {} {} {}",
                time(&l["at"]),
                s(&l["level"]),
                s(&l["message"])
            );
        }
    }
}

fn repermission(a: crate::RepermissionArgs, json: bool) -> Result<ExitCode> {
    use ferry_agent::repermission::{self, Map, Mode, Options};
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() * 2));
    let summary = match a.undo {
        Some(crate::RepermissionCmd::Undo { journal }) => {
            repermission::undo(&journal, threads).map_err(anyhow::Error::msg)?
        }
        None => {
            let Some(map_path) = a.map else {
                anyhow::bail!("give --map MAP.csv (or `ferry repermission undo --journal FILE`)");
            };
            if a.paths.is_empty() {
                anyhow::bail!("give at least one PATH to re-permission");
            }
            let text = std::fs::read_to_string(&map_path)
                .with_context(|| format!("cannot read {}", map_path.display()))?;
            let map = Map::parse_with(&text, a.min_id)
                .map_err(|e| anyhow::anyhow!("{}: {e}", map_path.display()))?;
            let mode = match a.mode.as_str() {
                "add-and-remove" => Mode::AddAndRemove,
                "add" => Mode::Add,
                m => anyhow::bail!("--mode: `{m}` is not add-and-remove or add"),
            };
            let opts = Options {
                mode,
                what_if: a.what_if,
                excludes: a.exclude,
                ignore: Vec::new(),
                threads,
                cross_devices: a.cross_devices,
            };
            repermission::run(&a.paths, &map, &opts, a.journal.as_deref())
                .map_err(anyhow::Error::msg)?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for (p, e) in &summary.failures {
            eprintln!("failed: {}: {e}", repermission::show(p));
        }
        for (p, w) in &summary.warnings {
            eprintln!("note: {}: {w}", repermission::show(p));
        }
        println!(
            "{} entries: {} {}, {} unchanged, {} failed in {:.2}s ({:.0} entries/s)",
            summary.scanned,
            summary.changed,
            if a.what_if { "would change" } else { "changed" },
            summary.unchanged,
            summary.failed,
            summary.seconds,
            summary.scanned as f64 / summary.seconds.max(1e-9)
        );
    }
    Ok(if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn mapping_validate(file: &std::path::Path, json: bool) -> Result<ExitCode> {
    use ferry_core::usermapping;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let result = usermapping::validate(&name, &bytes);
    if json {
        let v = match &result {
            Ok(rows) => serde_json::json!({"valid": true, "users": rows.len(), "errors": []}),
            Err(e) => serde_json::json!({"valid": false, "errors": e}),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &result {
            Ok(rows) => println!(
                "{}: {} users; the file rules pass",
                file.display(),
                rows.len()
            ),
            Err(errors) => {
                for e in errors {
                    println!("{e}");
                }
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

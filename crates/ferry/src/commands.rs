//! Each subcommand: the server, the admin commands (API calls, printed for people or as JSON), and
//! the offline ones.

use crate::{
    Cli, Command, ConfigCmd, DirectoryCmd, OverridesCmd, ReportCmd, ServerArgs, SyncCmd, TokenCmd,
    TranslationCmd,
};
use anyhow::{Context, Result, bail};
use ferry_client::wire::{CycleInfo, ObjectReports, OverrideRequest, TokenView, UploadBody};
use ferry_client::{Client, LogsQuery, TranslationQuery, WhatIfQuery};
use ferry_core::plan::{Status, Write};
use ferry_core::state::CycleStatus;
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let json = cli.json;
    let client = || Client::discover(&cli.server, cli.token.clone());
    match cli.command {
        Command::Server(a) => server(a, cli.log_format).await,
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
                for r in &s.config.runbooks {
                    println!("  runbook {}: {}", r.name, r.steps().join(", "));
                }
                for b in &s.config.batches {
                    println!(
                        "  batch {}: {} on {} computer(s), enforced after {} {}",
                        b.name,
                        b.runbooks.join(" → "),
                        b.computers.len(),
                        b.enforced_after,
                        b.time_zone
                    );
                }
                for (path, name) in ferry_server::devices::configured::external_references(&s) {
                    println!(
                        "  note: {path}: runbook `{name}` is not in this file; the server's database must have it (checked at start)"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(a) => crate::backup::backup(a, json),
        Command::Restore(a) => crate::backup::restore(a, json),
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
        Command::Audit { limit, since } => {
            let show = |lines: &[ferry_client::wire::AuditEntry]| {
                for a in lines {
                    if json {
                        // JSON lines: one act an object a line.
                        println!("{}", compact(a));
                    } else {
                        // A failed sign-in's line names what the client sent as its name, and
                        // lines name batches' computers and directory objects: shown escaped.
                        let t = |s: &str| escaped(s, |_| false);
                        println!(
                            "{}  {:<10} {:<10} {:<26} {}  {}{}",
                            a.at,
                            t(&a.actor),
                            t(opt(&a.tenant)),
                            t(&a.action),
                            t(&a.subject),
                            t(&a.detail),
                            a.address
                                .as_deref()
                                .map_or(String::new(), |ip| format!("  (from {})", t(ip)))
                        );
                    }
                }
            };
            let c = client()?;
            match since {
                None => show(&c.audit(Some(limit)).await?),
                Some(t) => c.audit_since(audit_since(&t)?, show).await?,
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
            let q = LogsQuery {
                limit: Some(a.limit),
                profile: a.profile,
                level: a.level,
                cycle: a.cycle,
            };
            let logs = client()?.logs(&q).await?;
            if json {
                print_json(&logs)?;
            } else {
                let logs = for_terminal(logs)?;
                for l in &logs {
                    println!(
                        "{}  {:<7} {:<10} {}",
                        time(l.at),
                        l.entry.level.as_str(),
                        l.entry.code,
                        l.entry.message
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(ReportCmd::Object { query }) => {
            let r = client()?.object_report(&query).await?;
            if json {
                print_json(&r)?;
            } else {
                print_report(&for_terminal(r.clone())?);
            }
            Ok(if !r.objects.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Prints an answer as JSON, its objects' keys sorted (as the server's JSON read untyped was).
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::to_value(v)?)?
    );
    Ok(())
}

/// `v` as a terminal may be shown it: each control character of its strings written as its
/// escape (`\u{1b}`). Names, UPNs and attribute values come from the directories, where whoever
/// may edit their own display name can put ESC and BEL in it: printed raw, a sequence retitles
/// the window, clears the screen, rewrites earlier lines (a "matched" over an "ambiguous"), or
/// with `\r` and `\n` forges a line of its own. `--json` escapes them already.
pub fn for_terminal<T: serde::Serialize + serde::de::DeserializeOwned>(v: T) -> Result<T> {
    let mut j = serde_json::to_value(&v)?;
    clean_value(&mut j);
    // The answer was read from JSON into `T`, so it reads back.
    Ok(serde_json::from_value(j)?)
}

/// Every string of `v` as [`for_terminal`] shows it.
fn clean_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.chars().any(char::is_control) => {
            *s = escaped(s, |_| false);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(clean_value),
        serde_json::Value::Object(o) => o.values_mut().for_each(clean_value),
        _ => {}
    }
}

/// `s` with each control character but those `keep` allows written as its escape.
fn escaped(s: &str, keep: impl Fn(char) -> bool) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !keep(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Prints text others wrote (an agent's log, a move's error file): onto a terminal with its
/// lines and tabs kept and every other control character (ESC, BEL, `\r`) escaped as
/// [`for_terminal`] does; into a pipe or file as it is.
pub fn print_text(s: &str) {
    if std::io::stdout().is_terminal() {
        print!("{}", text_for_terminal(s));
    } else {
        print!("{s}");
    }
}

fn text_for_terminal(s: &str) -> String {
    escaped(s, |c| c == '\n' || c == '\t')
}

/// A list as JSON, or each item as `show` prints it (its strings as [`for_terminal`] shows them).
pub fn print_list<T: serde::Serialize + serde::de::DeserializeOwned>(
    v: &[T],
    json: bool,
    show: impl Fn(&T),
) -> Result<()> {
    if json {
        print_json(&v)
    } else {
        let mut j = serde_json::to_value(v)?;
        clean_value(&mut j);
        let v: Vec<T> = serde_json::from_value(j)?;
        v.iter().for_each(show);
        Ok(())
    }
}

/// `ferry audit --since TIME` as epoch ms: a time ago (`24h`, `7d`), RFC 3339, or epoch ms.
fn audit_since(t: &str) -> Result<i64> {
    let t = t.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(ago) = ferry_core::duration::parse(t) {
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(jiff::Timestamp::now().as_millisecond().saturating_sub(ago));
    }
    t.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_millisecond())
        .map_err(|_| {
            anyhow::anyhow!(
                "--since: `{t}` is not a time; write RFC 3339 (2026-12-07T03:00:00Z), a time ago (24h, 7d) or epoch milliseconds"
            )
        })
}

/// A value as compact JSON, objects' keys sorted.
pub fn compact<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// A value's string form on the wire (an enum's name), else its compact JSON.
pub fn wire_str<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// An optional text, empty when absent.
pub fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// An optional number, empty when absent.
pub fn num<T: ToString>(v: Option<T>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

fn time(ms: i64) -> String {
    time_opt(Some(ms))
}

fn time_opt(v: Option<i64>) -> String {
    v.map(|ms| {
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

/// The data directory: `--data-dir`, else the configuration's `[server] data_dir` (relative to
/// the file), else `./ferry-data`.
pub fn data_dir(arg: Option<PathBuf>, settings: Option<&Settings>) -> PathBuf {
    arg.or_else(|| settings.and_then(|s| s.config.server.data_dir.as_ref().map(|d| s.base.join(d))))
        .unwrap_or_else(|| PathBuf::from("ferry-data"))
}

async fn server(a: ServerArgs, format: crate::LogFormat) -> Result<ExitCode> {
    // The server's own lines on stderr: for a person as they are, for a collector as log lines
    // (every line of `--log-format json` is one JSON object).
    let say = |msg: String| match format {
        crate::LogFormat::Text => eprintln!("{msg}"),
        crate::LogFormat::Json => tracing::info!("{msg}"),
    };
    let settings = match &a.config {
        Some(p) => Settings::load(p)?,
        None => {
            say(
                "note: no --config given; the server starts with no directories or profiles".into(),
            );
            Settings::empty()
        }
    };
    let srv = &settings.config.server;
    let listen = a
        .listen
        .or_else(|| srv.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let data_dir = data_dir(a.data_dir, Some(&settings));
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
    say(format!(
        "ferry server listening on http://{} ({backend}); admin token: {}",
        server.addr, server.admin_token_source
    ));
    if let (Some(addr), Some(fp)) = (server.agent_addr, &server.agent_fingerprint) {
        say(format!(
            "agent endpoint on https://{addr}/agent; certificate SHA-256 {fp} (agents pin it)"
        ));
    }
    wait_for_signal().await;
    say("shutting down".into());
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
            let v = c.directories().await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "{:<16} {:<5} {:<10} {:<19} LOCATION",
                    "NAME", "KIND", "OBJECTS", "LAST IMPORT"
                );
                for d in &v {
                    println!(
                        "{:<16} {:<5} {:<10} {:<19} {}",
                        d.name,
                        d.kind,
                        num(d.state.as_ref().map(|s| s.objects)),
                        time_opt(d.state.as_ref().map(|s| s.last_import)),
                        d.location
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCmd::Test { name } => {
            let v = c.test_directory(&name).await?;
            let ok = v.ok;
            if json {
                print_json(&v)?;
            } else {
                for line in &v.checks {
                    println!("{} {}", if ok { "✓" } else { "✗" }, line);
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
        DirectoryCmd::Preflight { name, refresh } => {
            let r = c.directory_preflight(&name, refresh).await?;
            crate::devices::print_preflight(&r, json)
        }
        DirectoryCmd::Token(t) => token(c, t, json).await,
    }
}

async fn token(c: &Client, cmd: TokenCmd, json: bool) -> Result<ExitCode> {
    let show = |v: &TokenView| {
        let t = &v.token;
        println!(
            "#{:<4} {:<9} {:<5} expires {}  {}  {} ({} bytes, sha256 {})",
            t.id,
            v.status,
            t.kind,
            v.expires,
            t.package_upn,
            t.file_name.as_deref().unwrap_or("-"),
            t.size,
            &t.sha256[..12.min(t.sha256.len())]
        );
        if let Some(w) = &v.warning {
            println!("      warning: {w}");
        }
    };
    let list = match cmd {
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
            let body = UploadBody {
                kind,
                file_name: file.file_name().map(|n| n.to_string_lossy().into_owned()),
                package_upn,
                created,
                expires,
                content_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
            };
            Err(c.upload_enrolment_token(&directory, &body).await?)
        }
        TokenCmd::List { directory } => Ok(c.enrolment_tokens(&directory).await?),
        TokenCmd::Revoke { id } => {
            let v = c.revoke_enrolment_token(id).await?;
            if !json {
                println!(
                    "revoked in ferry: devices no longer receive it. To revoke it at Microsoft, delete the account {} in the tenant.",
                    v.token.package_upn
                );
            }
            Err(v)
        }
    };
    match list {
        // A list (Ok) or one token (Err).
        Ok(list) if json => print_json(&list)?,
        Err(one) if json => print_json(&one)?,
        Ok(list) => {
            if list.is_empty() {
                println!("no bulk enrolment tokens");
            }
            list.iter().for_each(show);
        }
        Err(one) => show(&one),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_cycle(c: &CycleInfo) {
    println!(
        "cycle {} of {}: {} ({})",
        c.id, c.profile, c.status, c.trigger
    );
    if let Some(counts) = &c.counts {
        println!(
            "  {} source / {} target objects: {} matched, {} unmatched, {} ambiguous{}; {} create(s), {} update(s) planned",
            counts.source_objects,
            counts.target_objects,
            counts.matched,
            counts.unmatched,
            counts.ambiguous,
            [
                ("refused (privileged)", counts.refused),
                ("excluded", counts.excluded),
                ("override error(s)", counts.errors)
            ]
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!(", {v} {k}"))
            .collect::<String>(),
            counts.creates,
            counts.updates
        );
    }
    if let Some(export) = &c.export {
        println!("  export: {export}");
    }
    if let Some(error) = &c.error {
        println!("  error: {error}");
    }
}

async fn sync(c: &Client, cmd: SyncCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        SyncCmd::Run { profile, wait } => {
            // On a terminal, the running cycle's phase while the server works.
            let watch = (wait && crate::progress::wanted(json)).then(|| {
                let phase = std::sync::Arc::new(std::sync::Mutex::new(String::from("starting")));
                let (poll, shown) = (c.clone(), std::sync::Arc::clone(&phase));
                let (name, label) = (profile.clone(), profile.clone());
                let task = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        if let Ok(list) = poll.cycles(Some(&name), Some(1)).await
                            && let Some(cy) = list.first()
                            && cy.status == "running"
                            && let Ok(mut p) = shown.lock()
                        {
                            *p = match &cy.progress {
                                Some(what) => format!("cycle {}: {} · {what}", cy.id, cy.phase),
                                None => format!("cycle {}: {}", cy.id, cy.phase),
                            };
                        }
                    }
                });
                let ticker = crate::progress::Ticker::start(json, move |t| {
                    let p = phase.lock().map(|p| p.clone()).unwrap_or_default();
                    format!("sync {label}: {p} · {:.1} s", t.as_secs_f64())
                });
                (task, ticker)
            });
            let v = c.run(&profile, wait).await;
            if let Some((task, ticker)) = watch {
                task.abort();
                drop(ticker);
            }
            let v = v?;
            if json {
                print_json(&v)?;
            } else if wait {
                if let Some(cycle) = &v.cycle {
                    print_cycle(cycle);
                }
            } else {
                println!(
                    "cycle {} started; follow it with `ferry sync cycles --profile {profile}`",
                    v.cycle_id
                );
            }
            let status = v.cycle.as_ref().map(|c| c.status()).transpose()?;
            let failed = wait && status != Some(CycleStatus::Succeeded);
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
            let q = WhatIfQuery {
                status,
                q: query,
                limit: Some(limit),
                writes_limit: Some(limit),
                ..WhatIfQuery::default()
            };
            let v = c.whatif(&profile, &q).await?;
            if json {
                print_json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let v = for_terminal(v)?;
            let p = &v.plan;
            println!(
                "What-If for {profile} (cycle {}, plan {}, mode {})",
                p.cycle_id,
                &p.hash[..12.min(p.hash.len())],
                p.mode
            );
            let cn = &p.counts;
            println!(
                "  {} matched, {} unmatched, {} ambiguous, {} excluded, {} override error(s); {} create(s), {} update(s)",
                cn.matched,
                cn.unmatched,
                cn.ambiguous,
                cn.excluded,
                cn.errors,
                cn.creates,
                cn.updates
            );
            println!(
                "  {}",
                if v.approved {
                    "approved: the next cycle exports these writes".to_string()
                } else if v.needs_approval {
                    format!(
                        "NOT approved: review, then `ferry sync approve {profile} --plan {}`",
                        &p.hash[..12.min(p.hash.len())]
                    )
                } else {
                    "nothing to export".to_string()
                }
            );
            // What an approval authorises first: the writes, by kind.
            if v.writes_total > 0 {
                println!(
                    "\nApproving plan {} authorises {} write(s):",
                    &p.hash[..12.min(p.hash.len())],
                    v.writes_total
                );
                for (kind, w) in &cn.writes_by_kind {
                    println!(
                        "  {:<6} {} create(s), {} update(s), {} member change(s) (+{} members)",
                        kind.as_str(),
                        w.creates,
                        w.updates,
                        w.member_changes,
                        w.members_added
                    );
                }
                println!("\nWrites ({} shown of {}):", v.writes.len(), v.writes_total);
                for w in &v.writes {
                    let (name, what) = match w {
                        Write::Create {
                            name, attributes, ..
                        } => (name, compact(attributes)),
                        Write::Update { name, changes, .. } => (name, compact(changes)),
                    };
                    println!("  {} {} {name}: {what}", w.op(), w.kind().as_str());
                }
            }
            println!(
                "\nDecisions ({} shown of {}):",
                v.decisions.len(),
                v.decisions_total
            );
            for d in &v.decisions {
                let rule = d
                    .rule_name
                    .clone()
                    .or_else(|| d.rule.and_then(|r| p.rules.get(r as usize)).cloned())
                    .unwrap_or_default();
                // Candidates by name, UPN and the value that tied them (ids when not stored).
                let named: Vec<String> = v
                    .candidates
                    .iter()
                    .filter(|c| c.source_id == d.source_id)
                    .map(|c| {
                        let mut t = c.name.clone().unwrap_or_else(|| c.id.clone());
                        if let Some(u) = &c.upn {
                            t.push_str(&format!(" <{u}>"));
                        }
                        if let Some(a) = &c.attribute {
                            t.push_str(&format!(" ({a}: {})", c.values.join("; ")));
                        }
                        t
                    })
                    .collect();
                let candidates = if named.is_empty() {
                    compact(&d.candidates)
                } else {
                    named.join(", ")
                };
                let who = d.source_upn.as_deref().unwrap_or(&d.source_name);
                let detail = match d.status {
                    Status::Matched => format!(
                        "→ {} [{rule}]",
                        d.target_upn.as_deref().unwrap_or(opt(&d.target_name))
                    ),
                    Status::Ambiguous => {
                        format!("candidates {candidates} [{rule}]")
                    }
                    Status::Conflict => format!(
                        "target {} also claimed by {candidates}",
                        opt(&d.target_name)
                    ),
                    Status::Excluded | Status::Error | Status::Refused => format!("[{rule}]"),
                    Status::Unmatched => String::new(),
                };
                println!(
                    "  {:<9} {:<6} {who} {detail}",
                    d.status.as_str(),
                    d.kind.as_str()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Approve { profile, plan } => {
            let v = c.approve(&profile, plan.as_deref()).await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "approved plan {} of {profile}; the next cycle exports it",
                    &v.plan_hash[..12]
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
            let body = OverrideRequest {
                source,
                target: Some(target),
                exclude: false,
                reason,
            };
            add_override(c, &profile, &body, json).await
        }
        SyncCmd::Exclude {
            profile,
            source,
            reason,
        } => {
            let body = OverrideRequest {
                source,
                target: None,
                exclude: true,
                reason,
            };
            add_override(c, &profile, &body, json).await
        }
        SyncCmd::Unpin { profile, source } => {
            c.remove_override(&profile, &source).await?;
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
            let v = c.import_overrides(&profile, data).await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "imported {} pin(s) and {} exclude(s) into {profile} ({} replaced an earlier override); they take effect at the next cycle (`ferry sync run {profile} --wait`)",
                    v.pins, v.excludes, v.replaced
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
            let list = c.overrides(&profile).await?;
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            // The objects' names are directory values.
            let list = for_terminal(list)?;
            if list.is_empty() {
                println!(
                    "{profile} has no overrides (`ferry sync pin {profile} SOURCE TARGET` adds one)"
                );
            }
            let named = |id: &str, name: &Option<String>| match name {
                None => format!("{id} (not found)"),
                Some(name) => format!("{id} ({name})"),
            };
            for o in &list {
                let what = if o.exclude {
                    "excluded".to_string()
                } else {
                    format!("→ {}", named(opt(&o.target), &o.target_name))
                };
                let why = match &o.reason {
                    None => String::new(),
                    Some(r) => format!(": {r}"),
                };
                println!(
                    "  {} {what}\n      by {}{why} ({})",
                    named(&o.source, &o.source_name),
                    o.operator,
                    if o.origin == "config" {
                        "in the configuration: change it there"
                    } else {
                        "`ferry sync unpin` removes it"
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Profiles => {
            print_list(&c.profiles().await?, json, |p| {
                let sched = match &p.schedule {
                    None => "on demand".into(),
                    Some(s) => format!("every {s}"),
                };
                println!(
                    "{}: {} → {}, {}, {sched}{}",
                    p.name,
                    p.source,
                    p.target,
                    p.mode,
                    if p.awaiting_approval {
                        ", What-If awaiting approval"
                    } else {
                        ""
                    }
                );
                if let Some(last) = &p.last_cycle {
                    print!("  last ");
                    print_cycle(last);
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        SyncCmd::Cycles { profile, limit } => {
            print_list(
                &c.cycles(profile.as_deref(), Some(limit)).await?,
                json,
                |cy| {
                    print!("{}  ", time(cy.started_at));
                    print_cycle(cy);
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn add_override(
    c: &Client,
    profile: &str,
    body: &OverrideRequest,
    json: bool,
) -> Result<ExitCode> {
    let v = c.add_override(profile, body).await?;
    if json {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The objects' names are directory values.
    let v = for_terminal(v)?;
    if v.exclude {
        println!(
            "excluded {} ({}) from {profile}; it takes effect at the next cycle (`ferry sync run {profile} --wait`)",
            opt(&v.source_name),
            v.source
        );
    } else {
        println!(
            "pinned {} ({}) to {} ({}) in {profile}; it takes effect at the next cycle (`ferry sync run {profile} --wait`)",
            opt(&v.source_name),
            v.source,
            opt(&v.target_name),
            opt(&v.target)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn translation(c: &Client, cmd: TranslationCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        TranslationCmd::Export {
            profile,
            format,
            environment,
            output,
        } => {
            let e = c
                .export_translation(&format, profile.as_deref(), environment.as_deref())
                .await?;
            let skipped = e.skipped.clone().unwrap_or_else(|| "0".into());
            let written = e.written.clone().unwrap_or_else(|| "?".into());
            // On a terminal, the bytes received against the size the server announced.
            let (length, got) = (e.length, Arc::new(AtomicU64::new(0)));
            let shown = Arc::clone(&got);
            let entries = written.clone();
            // Not when the body itself is printed on the terminal.
            let onto_terminal = output.is_none() && std::io::stdout().is_terminal();
            let ticker = crate::progress::Ticker::start(json || onto_terminal, move |t| {
                let n = shown.load(Ordering::Relaxed);
                let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                let of = match length {
                    Some(l) if l > 0 => {
                        format!("{}% · {:.1} of {:.1} MiB", n * 100 / l, mib(n), mib(l))
                    }
                    _ => format!("{:.1} MiB", mib(n)),
                };
                format!(
                    "translation export: {entries} entries · {of} · {:.1} MiB/s",
                    mib(n) / t.as_secs_f64().max(1e-3)
                )
            });
            let count = |n| got.store(n, Ordering::Relaxed);
            match output {
                Some(path) => {
                    let mut out = std::io::BufWriter::new(part_file(&path)?);
                    let copied = e.copy_to(&mut out, count).await.and_then(|_| {
                        out.into_inner()
                            .map_err(|e| ferry_client::Error::Write(e.into_error()))
                    });
                    drop(ticker);
                    // On an error the part file is dropped, which removes it.
                    let part =
                        copied.with_context(|| format!("cannot write {}", path.display()))?;
                    part.persist(&path)
                        .map_err(|e| e.error)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote {written} entries to {} ({skipped} left out by the format)",
                        path.display()
                    );
                }
                None => {
                    e.copy_to(&mut std::io::stdout(), count).await?;
                    drop(ticker);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TranslationCmd::Search {
            query,
            profile,
            limit,
        } => {
            let q = TranslationQuery {
                q: Some(query),
                profile,
                limit: Some(limit),
            };
            let v = c.translation(&q).await?;
            if json {
                print_json(&v)?;
            } else {
                let v = for_terminal(v)?;
                println!(
                    "{} entr{} found",
                    v.total,
                    if v.total == 1 { "y" } else { "ies" }
                );
                for e in &v.entries {
                    println!(
                        "  {} {}: {} ({}) → {} ({})",
                        e.profile,
                        e.kind.as_str(),
                        e.source_upn.as_deref().unwrap_or(&e.source_name),
                        opt(&e.source_sid),
                        e.target_upn.as_deref().unwrap_or(&e.target_name),
                        opt(&e.target_sid)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A new file beside `path`, to write it whole before it takes `path`'s place (a rename): named
/// `.NAME.XXXXXX.part`, unguessable and created anew (`O_EXCL`), so nothing a local user
/// planted beside `path` in a shared directory (a link to another of the operator's files, a
/// FIFO) is written through or waited on; removed when dropped before [`persist`]. Its mode is a
/// new file's (0666 less the umask), as the file it becomes had before.
///
/// [`persist`]: tempfile::NamedTempFile::persist
pub(crate) fn part_file(path: &std::path::Path) -> Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot write a part file beside {}", path.display()))
}

fn print_report(r: &ObjectReports) {
    if r.objects.is_empty() {
        println!(
            "nothing known as `{}` (search is exact: a name, UPN, mail, object id or SID)",
            r.query
        );
        return;
    }
    for o in &r.objects {
        let ob = &o.object;
        println!(
            "{} {} in directory {}",
            ob.kind.as_str(),
            ob.name,
            o.directory
        );
        for (k, v) in [
            ("id", Some(ob.id.clone())),
            ("dn", ob.dn.clone()),
            ("upn", ob.upn.clone()),
            ("mail", ob.mail.clone()),
            ("sid", ob.sid.clone()),
            ("uid_number", ob.uid_number.map(|n| n.to_string())),
            ("gid_number", ob.gid_number.map(|n| n.to_string())),
        ] {
            if let Some(v) = v {
                println!("  {k:<11} {v}");
            }
        }
        for (k, v) in &ob.attrs {
            println!("  {k:<11} {v}");
        }
        for p in &o.profiles {
            let d = &p.decision;
            println!(
                "  profile {} ({} side): {}{}",
                p.profile,
                p.side,
                d.status.as_str(),
                match &p.rule {
                    None => String::new(),
                    Some(rule) => format!(" by rule {rule}"),
                }
            );
            if let Some(c) = &p.counterpart {
                let other = if p.side == "source" {
                    "target"
                } else {
                    "source"
                };
                println!(
                    "    {other}: {} {} in {} (id {})",
                    c.object.kind.as_str(),
                    c.object.name,
                    c.directory,
                    c.object.id
                );
            }
            let rows = &p.identity;
            if !rows.is_empty() {
                let join = |vs: &[String]| {
                    if vs.is_empty() {
                        "—".to_string()
                    } else {
                        vs.join("; ")
                    }
                };
                let width = rows
                    .iter()
                    .map(|r| r.attribute.chars().count())
                    .max()
                    .unwrap_or(0);
                let swidth = rows
                    .iter()
                    .map(|r| join(&r.source).chars().count())
                    .max()
                    .unwrap_or(0);
                println!("    {:<width$}  {:<swidth$}  target", "", "source");
                for r in rows {
                    println!(
                        "    {:<width$}  {:<swidth$}  {}",
                        r.attribute,
                        join(&r.source),
                        join(&r.target)
                    );
                }
            }
            for c in &p.candidates {
                println!(
                    "    {}: {} {}{}{} (id {})",
                    if c.side == "target" {
                        "candidate"
                    } else {
                        "also claimed by"
                    },
                    c.kind.as_str(),
                    c.name.as_deref().unwrap_or("(no longer stored)"),
                    c.upn
                        .as_deref()
                        .map(|u| format!(" <{u}>"))
                        .unwrap_or_default(),
                    c.attribute
                        .as_deref()
                        .map(|a| format!(", tied by {a}: {}", c.values.join("; ")))
                        .unwrap_or_default(),
                    c.id
                );
            }
            if p.candidates.is_empty() && !d.candidates.is_empty() {
                println!("    candidates: {}", d.candidates.join(", "));
            }
            println!(
                "    decided in cycle {} ({}), last changed in cycle {} ({})",
                d.first_cycle,
                time_opt(p.first_at),
                d.changed_cycle,
                time_opt(p.decided_at)
            );
        }
        for h in &o.history {
            println!(
                "  history: {} cycle {}: {}",
                time(h.at),
                h.cycle_id,
                h.change
            );
        }
        for l in o.logs.iter().take(10) {
            println!(
                "  log: {} {} {}",
                time(l.at),
                l.entry.level.as_str(),
                l.entry.message
            );
        }
    }
}

fn repermission(a: crate::RepermissionArgs, json: bool) -> Result<ExitCode> {
    use ferry_agent::repermission::{self, Map, Mode, Options};
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() * 2));
    // Counts and rates on a terminal while the walk goes.
    let counts = std::sync::Arc::new(repermission::Progress::default());
    let verb = match (&a.undo, a.what_if) {
        (Some(_), _) => "undoing",
        (None, true) => "what-if",
        (None, false) => "re-permissioning",
    };
    let shown = std::sync::Arc::clone(&counts);
    let ticker = crate::progress::Ticker::start(json, move |t| {
        use crate::progress::{count, rate};
        use std::sync::atomic::Ordering::Relaxed;
        let n = shown.scanned.load(Relaxed);
        format!(
            "{verb}: {} entries ({}/s), {} changed, {} failed · {:.1} s",
            count(n),
            rate(n, t),
            count(shown.changed.load(Relaxed)),
            count(shown.failed.load(Relaxed)),
            t.as_secs_f64()
        )
    });
    let summary = match a.undo {
        Some(crate::RepermissionCmd::Undo { journal }) => {
            repermission::undo_counted(&journal, threads, &counts).map_err(anyhow::Error::msg)?
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
            repermission::run_counted(&a.paths, &map, &opts, a.journal.as_deref(), counts)
                .map_err(anyhow::Error::msg)?
        }
    };
    drop(ticker);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches: an agent's log (written by the device) driving the operator's terminal when
    /// `ferry agents log` prints it: ESC, BEL, CSI and `\r` shown escaped, lines and tabs kept.
    #[test]
    fn device_text_is_shown_not_obeyed() {
        let log = "step 1\tok\n\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31mstep 2\rfailed\n";
        let shown = text_for_terminal(log);
        assert_eq!(
            shown,
            "step 1\tok\n\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{9b}31mstep 2\\u{d}failed\n"
        );
        assert!(!shown.contains(['\u{1b}', '\u{7}', '\u{9b}', '\r']));
    }
}

//! `ferry quickstart`: sample Contoso and Fabrikam tenants as file directories, a server on the
//! embedded SQLite default, a sync cycle per profile, and a summary; then the server keeps serving
//! until Ctrl-C (or exits with `--once`).

use crate::commands::wait_for_signal;
use anyhow::{Context, Result, bail};
use ferry_core::snapshot::render_json;
use ferry_demo as sample;
use ferry_server::engine::Trigger;
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Folder for the sample tenants, the configuration and the server's data.
    #[arg(long, default_value = "ferry-quickstart")]
    pub dir: PathBuf,
    /// Where the server listens.
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// Source users to generate (groups and devices follow from it).
    #[arg(long, default_value_t = 3000)]
    pub users: usize,
    /// Print the summary and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Leave out the local agent that migrates a sample device tree.
    #[arg(long)]
    pub no_device: bool,
}

fn config(dir: &Path) -> String {
    let main = format!(
        r#"# Written by `ferry quickstart`: two sample Entra-style tenants as file directories.
# Edit freely; the quickstart only writes this file when it is missing.

[[directory]]
name = "contoso"
kind = "file"
path = "contoso.json"
object_types = ["user", "group", "device"]

[[directory]]
name = "fabrikam"
kind = "file"
path = "fabrikam.json"
object_types = ["user", "group", "device"]

# Users and groups: mail with the domain renamed, then employee id; groups by name.
[[sync_profile]]
name = "users"
source = "contoso"
target = "fabrikam"
mode = "match-only"
object_types = ["user", "group"]
schedule = "15m"
{rules}
# Devices pre-staged in the target: by device id, then by name.
[[sync_profile]]
name = "devices"
source = "contoso"
target = "fabrikam"
mode = "match-only"
object_types = ["device"]
[[sync_profile.match]]
source_attribute = "deviceId"
target_attribute = "deviceId"
[[sync_profile.match]]
source_attribute = "name"
target_attribute = "name"
"#,
        rules = sample::QUICKSTART_RULES
    );
    main + &crate::quickstart_device::config(dir)
}

fn write_if_missing(path: &Path, body: impl FnOnce() -> Vec<u8>) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    use std::io::Write as _;
    let mut part = crate::commands::part_file(path)?;
    part.write_all(&body())
        .with_context(|| format!("cannot write {}", path.display()))?;
    part.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

pub async fn run(a: Args, json: bool) -> Result<ExitCode> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let dir = a.dir.canonicalize()?;
    if !dir.join("contoso.json").exists() || !dir.join("fabrikam.json").exists() {
        let s = sample::generate(a.users, true, 2026);
        std::fs::write(dir.join("contoso.json"), render_json(&s.source))?;
        std::fs::write(dir.join("fabrikam.json"), render_json(&s.target))?;
        eprintln!(
            "generated sample tenants: {} objects in contoso.json, {} in fabrikam.json",
            s.source.len(),
            s.target.len()
        );
    }
    write_if_missing(&dir.join("ferry.toml"), || config(&dir).into_bytes())?;
    let settings = Settings::load(&dir.join("ferry.toml"))?;
    let listener = match tokio::net::TcpListener::bind(&a.listen).await {
        Ok(l) => l,
        Err(e) => bail!(
            "cannot listen on {}: {e}. Is another ferry running? Stop it, or pass --listen 127.0.0.1:0",
            a.listen
        ),
    };
    let opts = ServerOptions {
        settings,
        data_dir: dir.join("data"),
        database_url: None,
        admin_token: std::env::var("FERRY_ADMIN_TOKEN").ok(),
        secret_key: None,
        scheduler: true,
        // Agents' endpoint on a free port: the local agent below talks to it over TLS.
        agent: Some(ferry_server::AgentEndpoint {
            listener: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            cert: None,
            names: Vec::new(),
            public_url: None,
        }),
    };
    let server = Server::start(opts, listener).await?;
    let engine = server.state.engine.clone();
    let mut summary = Vec::new();
    for profile in ["users", "devices"] {
        let started = std::time::Instant::now();
        let id = engine.start(profile, Trigger::Manual).await?;
        let c = engine
            .wait(id, Duration::from_secs(3600))
            .await?
            .context("the cycle vanished")?;
        if c.status != "succeeded" {
            bail!(
                "the {profile} cycle {}: {}",
                c.status,
                c.error.unwrap_or_default()
            );
        }
        summary.push((profile, c, started.elapsed()));
    }
    let url = format!("http://{}", server.addr);
    let device = if a.no_device {
        None
    } else {
        let token = std::fs::read_to_string(dir.join("data/admin-token"))
            .ok()
            .map(|t| t.trim().to_string())
            .or_else(|| std::env::var("FERRY_ADMIN_TOKEN").ok());
        let admin = ferry_client::Client::discover(&url, token)?;
        let endpoint = match (server.agent_addr, &server.agent_fingerprint) {
            (Some(addr), Some(fp)) => (format!("https://{addr}/agent"), fp.clone()),
            _ => bail!("the agent endpoint did not start"),
        };
        Some(crate::quickstart_device::demo(&dir, &admin, &endpoint).await)
    };
    let moves = {
        let token = std::fs::read_to_string(dir.join("data/admin-token"))
            .ok()
            .map(|t| t.trim().to_string())
            .or_else(|| std::env::var("FERRY_ADMIN_TOKEN").ok());
        let admin = ferry_client::Client::discover(&url, token)?;
        crate::quickstart_moves::register(&dir, &url, &admin).await
    };
    if json {
        let v: Vec<_> = summary.iter().map(|(p, c, d)| serde_json::json!({"profile": p, "cycle": c, "seconds": d.as_secs_f64()})).collect();
        let device = match &device {
            Some(Ok(o)) => {
                serde_json::json!({"run": o.run.run, "status": o.run.status, "steps": o.run.steps, "tree": o.tree, "state_dir": o.state_dir})
            }
            Some(Err(e)) => serde_json::json!({"skipped": format!("{e:#}")}),
            None => serde_json::Value::Null,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"server": url, "dir": dir, "cycles": v, "device": device,
                    "environments": match &moves { Ok(m) => serde_json::json!({"sample": "sales", "users": m.users}), Err(e) => serde_json::json!({"skipped": format!("{e:#}")}) }})
            )?
        );
    } else {
        println!("\nferry quickstart: Contoso → Fabrikam\n");
        for (p, c, d) in &summary {
            let Some(n) = &c.counts else { continue };
            println!(
                "  {p:<8} cycle {} in {:.2}s: {} source objects, {} target objects",
                c.id,
                d.as_secs_f64(),
                n.source_objects,
                n.target_objects
            );
            for (kind, k) in &n.by_kind {
                println!(
                    "           {kind:<7} {:>6} matched {:>6} unmatched {:>6} ambiguous {:>6} conflict{}",
                    k.matched,
                    k.unmatched,
                    k.ambiguous,
                    k.conflict,
                    [
                        ("refused (privileged)", k.refused),
                        ("excluded", k.excluded),
                        ("override errors", k.errors)
                    ]
                    .iter()
                    .filter(|(_, v)| *v > 0)
                    .map(|(what, v)| format!(" {v:>6} {what}"))
                    .collect::<String>()
                );
            }
        }
        match &device {
            Some(Ok(o)) => {
                println!(
                    "\n  device   a local agent took migration {} ({}):",
                    o.run.run,
                    o.run.status.as_str()
                );
                for s in &o.run.steps {
                    println!(
                        "           {:<10} {:<26} {}",
                        s.status.as_str(),
                        s.id,
                        s.message
                    );
                }
            }
            Some(Err(e)) => println!("\n  device   skipped: {e:#}"),
            None => {}
        }
        match &moves {
            Ok(m) => println!(
                "\n  moves    tenants contoso and fabrikam, an admin each; environment `sales` (production, {} users) registered for Contoso",
                m.users
            ),
            Err(e) => println!("\n  moves    sample not registered: {e:#}"),
        }
        println!(
            "\n  server         {url}   (API {url}/api/v1, OpenAPI {url}/api/v1/openapi.json)"
        );
        println!("  configuration  {}", dir.join("ferry.toml").display());
        println!("  database       {}", dir.join("data/ferry.db").display());
        println!("  admin token    {}", server.admin_token_source);
        println!(
            "\n  Try, from {}:",
            std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        let srv = if server.addr.port() == 5000 {
            String::new()
        } else {
            format!(" --server {url}")
        };
        let tok = if a.dir == Path::new("ferry-quickstart") {
            String::new()
        } else {
            format!(" --token $(cat {}/data/admin-token)", dir.display())
        };
        println!(
            "    ferry{srv}{tok} logs --profile users --level warning        # unmatched and ambiguous users"
        );
        println!("    ferry{srv}{tok} sync whatif users --status ambiguous");
        // An ambiguous user and how to resolve it: pin it to one of its candidates.
        let ambiguous = server
            .state
            .store
            .decisions(&ferry_store::DecisionQuery {
                profile: Some("users".into()),
                status: Some(ferry_core::plan::Status::Ambiguous),
                limit: 1,
                ..Default::default()
            })
            .await?;
        if let Some(d) = ambiguous.first()
            && let Some(candidate) = d.candidates.first()
        {
            let who = d.source_upn.as_deref().unwrap_or(&d.source_id);
            // The candidate by its UPN when that names it alone (ambiguous users often share
            // a mail address, so it may not).
            let store = &server.state.store;
            let upn = store
                .find_objects(candidate, 5)
                .await?
                .into_iter()
                .find(|f| &f.object.id == candidate)
                .and_then(|f| f.object.upn.map(|u| (f.directory, u)));
            let candidate = match upn {
                Some((dir, upn))
                    if store
                        .find_objects(&upn, 5)
                        .await?
                        .iter()
                        .filter(|f| f.directory == dir)
                        .count()
                        == 1 =>
                {
                    upn
                }
                _ => candidate.clone(),
            };
            println!(
                "    ferry{srv}{tok} sync pin users {who} {candidate} --reason \"confirmed by HR\"   # resolve an ambiguous user"
            );
            println!(
                "    ferry{srv}{tok} sync run users --wait && ferry{srv}{tok} sync overrides users"
            );
        }
        println!("    ferry{srv}{tok} translation export --format sidmap -o sidmap.json");
        println!("    ferry{srv}{tok} report object ann.lee@contoso.test");
        if moves.is_ok() {
            let data = dir.join("data");
            println!(
                "    FERRY_TOKEN=$(cat {}/contoso-admin-token) ferry{srv} env move submit sales --target-tenant fabrikam",
                data.display()
            );
            println!(
                "    FERRY_TOKEN=$(cat {}/fabrikam-admin-token) ferry{srv} env move approvals    # then: env move approve ID",
                data.display()
            );
            println!(
                "    ferry{srv}{tok} translation export --format usermapping -o usermapping.csv && ferry mapping validate usermapping.csv"
            );
        }
        if let Some(Ok(o)) = &device {
            println!("    ferry{srv}{tok} batch progress Quickstart");
            println!("    getfacl -R -n {}/home | less", o.tree.display());
            println!(
                "    ferry agent status --state-dir {}",
                o.state_dir.display()
            );
            println!(
                "    ferry agent rollback --state-dir {}   # undo the device migration exactly",
                o.state_dir.display()
            );
        }
    }
    if a.once {
        server.stop().await?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("\nserving on {url}; press Ctrl-C to stop");
    wait_for_signal().await;
    server.stop().await?;
    Ok(ExitCode::SUCCESS)
}

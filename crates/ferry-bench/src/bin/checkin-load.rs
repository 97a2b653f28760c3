//! Agent check-ins against a real `ferry server` agent endpoint (TLS, loopback), from a load
//! generator in the same run: the server runs in a child process so that the CPU of each side is
//! measured apart.
//!
//! `checkin-load [AGENTS] [SECONDS] [CONCURRENCY]` (default 100,000 agents, 10 s, 64 connections)
//! on SQLite; with `FERRY_BENCH_DATABASE_URL=postgres://…` (an empty database the bench may create
//! a schema in) on PostgreSQL. The child seeds AGENTS enrolled agents (1,000 of them in a batch
//! that is not due yet, so their check-ins take the assignment path), then the parent sends
//! check-ins as fast as CONCURRENCY connections allow, with a random agent each, and prints the
//! rate, latency percentiles and the CPU split.

use ferry_bench::{cpu_seconds, process_cpu_seconds};
use ferry_core::agent::{DeviceFacts, HarvestedProfile};
use ferry_server::settings::Settings;
use ferry_server::{AgentEndpoint, Server, ServerOptions};
use ferry_store::{DocKind, Enrollment, Store};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn node_key(i: usize) -> String {
    format!("bench-node-key-{i:08}")
}

fn serve(dir: &str, agents: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("ferry.toml"), "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"c.json\"\n\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"f.json\"\n").expect("config");
        let settings = Settings::load(&dir.join("ferry.toml")).expect("settings");
        let database_url = std::env::var("FERRY_BENCH_DATABASE_URL").ok().map(|url| {
            let schema = format!("bench_{}", std::process::id());
            let sep = if url.contains('?') { '&' } else { '?' };
            (url.clone(), schema.clone(), format!("{url}{sep}options=-csearch_path%3D{schema}"))
        });
        if let Some((url, schema, _)) = &database_url {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            c.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("schema");
        }
        let server = Server::start(
            ServerOptions {
                settings,
                data_dir: dir.join("data"),
                database_url: database_url.as_ref().map(|d| d.2.clone()),
                admin_token: None,
                secret_key: None,
                scheduler: false,
                agent: Some(AgentEndpoint {
                    listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
                    cert: None,
                    names: vec![],
                    public_url: None,
                }),
            },
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        )
        .await
        .expect("server");
        let store: Arc<dyn Store> = Arc::clone(&server.state.store);
        let psk = store.add_psk("bench", "bench-psk-hash", None, None, 1).await.expect("psk");
        let t = Instant::now();
        let profiles = vec![HarvestedProfile { name: "user".into(), uid: Some(1000), home: "/home/user".into(), ..Default::default() }];
        let chunk = agents.div_ceil(16);
        let mut tasks = Vec::new();
        for c in 0..16 {
            let (store, profiles) = (Arc::clone(&store), profiles.clone());
            tasks.push(tokio::spawn(async move {
                for i in c * chunk..((c + 1) * chunk).min(agents) {
                    let facts = DeviceFacts {
                        device_id: format!("machine-{i:08}"),
                        hostname: format!("PC-{i:06}"),
                        os: "linux".into(),
                        os_version: "Debian 12".into(),
                        agent_version: "0.1.0".into(),
                        ..Default::default()
                    };
                    let hash = ferry_server::auth::hash_token(&node_key(i));
                    store
                        .enroll_agent(&Enrollment { facts: &facts, profiles: &profiles, node_hash: &hash, psk_id: psk.id, now: 1, address: None, replaces: None })
                        .await
                        .expect("enroll");
                }
            }));
        }
        for t in tasks {
            t.await.expect("seed");
        }
        store.put_document(DocKind::Runbook, "Main", r#"{"name":"Main","source_directories":["contoso"],"target_directories":["fabrikam"]}"#, 1).await.expect("runbook");
        store.put_document(DocKind::Batch, "Later", r#"{"name":"Later","source_directory":"contoso","target_directory":"fabrikam","runbooks":["Main"],"enforced_after":"2099-01-01T00:00","time_zone":"UTC"}"#, 1).await.expect("batch");
        let in_batch: Vec<String> = (0..agents.min(1000)).map(|i| format!("pc-{i:06}")).collect();
        store.add_batch_computers("Later", &in_batch, 1).await.expect("computers");
        server.state.devices.reload(&*store).await.expect("reload");
        eprintln!("seeded {agents} agents in {:.1}s", t.elapsed().as_secs_f64());
        println!("READY https://{} {}", server.agent_addr.expect("agent endpoint"), dir.join("data/agent-tls/cert.pem").display());
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_to_string(&mut s);
        })
        .await;
        let _ = server.stop().await;
    });
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("--serve") {
        serve(&a[2], a[3].parse().expect("agents"));
        return;
    }
    let agents: usize = a.get(1).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let seconds: u64 = a.get(2).and_then(|v| v.parse().ok()).unwrap_or(10);
    let concurrency: usize = a.get(3).and_then(|v| v.parse().ok()).unwrap_or(64);
    let dir = std::env::temp_dir().join(format!("ferry-checkin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let mut child = Command::new(std::env::current_exe().expect("self"))
        .args(["--serve", dir.to_str().expect("path"), &agents.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        parts.first(),
        Some(&"READY"),
        "the server child did not start: {line}"
    );
    let (url, cert) = (parts[1].to_string(), parts[2].to_string());
    let pid = child.id().to_string();
    let backend = if std::env::var("FERRY_BENCH_DATABASE_URL").is_ok() {
        "PostgreSQL"
    } else {
        "SQLite"
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (n, wall, lat, client_cpu, server_cpu, errors) = rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pem = std::fs::read(&cert).expect("cert");
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client");
        let body = br#"{"protocol":1}"#.to_vec();
        let run = |until: Instant, seed: u64| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut x = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                while Instant::now() < until {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x % agents as u64) as usize;
                    let t = Instant::now();
                    let r = http
                        .post(format!("{url}/agent/v1/checkin"))
                        .bearer_auth(node_key(i))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed().as_micros() as u64);
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }
        };
        // Warm-up: connections, TLS sessions, the server's caches.
        let warm = Instant::now() + Duration::from_secs(2);
        let w: Vec<_> = (0..concurrency)
            .map(|c| tokio::spawn(run(warm, c as u64 + 1)))
            .collect();
        for t in w {
            let _ = t.await;
        }
        let (c0, s0) = (cpu_seconds(), process_cpu_seconds(&pid));
        let start = Instant::now();
        let until = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..concurrency)
            .map(|c| tokio::spawn(run(until, 1000 + c as u64)))
            .collect();
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.expect("task");
            lat.extend(l);
            errors += e;
        }
        let wall = start.elapsed().as_secs_f64();
        (
            lat.len(),
            wall,
            lat,
            cpu_seconds() - c0,
            process_cpu_seconds(&pid) - s0,
            errors,
        )
    });
    drop(child.stdin.take());
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let mut lat = lat;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{backend}: {agents} agents, {concurrency} connections: {n} check-ins in {wall:.1}s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {errors} errors",
        n as f64 / wall,
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "CPU over the run: server {server_cpu:.1}s ({:.0}%), load generator {client_cpu:.1}s ({:.0}%) of {:.1} core-seconds",
        server_cpu / (wall * 2.0) * 100.0,
        client_cpu / (wall * 2.0) * 100.0,
        wall * 2.0
    );
}

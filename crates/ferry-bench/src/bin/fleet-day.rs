//! A simulated fleet day (issue 18): AGENTS simulated agents take one batch from Enforced After to
//! completion against a real `ferry server` agent endpoint (TLS, loopback) in a child process, so
//! that the server's CPU is measured apart from the simulators'.
//!
//! `fleet-day [AGENTS] [--kill] [--connections N] [--max-concurrent N] [--canary N|P%]` (default
//! 100,000 agents, 256 connections) on SQLite; with `FERRY_BENCH_DATABASE_URL=postgres://…` on PostgreSQL (the
//! bench makes a schema of its own there).
//!
//! The child seeds AGENTS enrolled agents through the store (enrolling them through the endpoint
//! would be a separate day: 20 enrollments per address, then 60 a minute) and one batch with all
//! of them whose Enforced After is 20 minutes in the past, past the 15-minute start window
//! (`ferry_core::wave::start_at`), so that every device is due at once: the storm. The parent then
//! drives every device as `ferry agent run` does, with CONNECTIONS devices in flight on as many
//! keep-alive connections: a check-in with a passing pre-flight and its clock, which hands it its
//! migration; the run's steps (`plan_steps` of the order's runbooks, each `started` then
//! `succeeded`, with a log line for each, as the agent writes them) reported in three flushes of
//! events and log text (offsets), as the agent's 2-second flush would during a run; then a
//! check-in reporting `verified` with its post-flight evidence (the checks pass: the simulators
//! change no file). Calls that fail (no answer, 5xx, 429) are sent again as the
//! agent's outbox does; calls refused with 400/403/409/413 are dropped, as the agent drops them,
//! and counted. After the run the server is stopped and the store is read back: every device's
//! events and log bytes must equal what its simulator had accepted, exactly.
//!
//! `--kill` SIGKILLs the server at a random moment mid-batch (between 20% and 70% of devices done)
//! and starts it again on the same data directory, database, port and certificate; the check then
//! also requires no step `started` twice on the server and no device handed a second run.

use ferry_bench::{cpu_seconds, process_cpu_seconds};
use ferry_core::agent::{
    AgentEvent, CheckinRequest, CheckinResponse, DeviceFacts, DevicePreflight, EventsRequest,
    HarvestedProfile, LogChunk, PreflightCheck, Verification,
};
use ferry_server::settings::Settings;
use ferry_server::{AgentEndpoint, Server, ServerOptions};
use ferry_store::{DocKind, Enrollment, Store, now_ms};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BATCH: &str = "Fleet";

fn node_key(i: usize) -> String {
    format!("fleet-node-key-{i:08}")
}

fn hostname(i: usize) -> String {
    format!("PC-{i:06}")
}

/// `YYYY-MM-DDTHH:MM` (UTC) of a time in ms since the epoch: a batch's Enforced After.
fn minute(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .expect("a time")
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

/// The agent's log timestamp, as `ferry-agent` writes it: `2026-11-22T08:50:01.123Z`.
fn timestamp(ms: i64) -> String {
    format!(
        "{:.3}",
        jiff::Timestamp::from_millisecond(ms).expect("a time")
    )
}

const RUNBOOK: &str = r#"{"name":"Main","source_directories":["contoso"],"target_directories":["fabrikam"],
 "startup":{"user_interaction":"show-progress","legal_notice":{"title":"Your PC moves to Fabrikam","text":"Tonight."},
  "prevent_login":true,"pre_migration_scripts":[{"name":"stop sync","interpreter":"sh","body":"true"},{"name":"backup","interpreter":"sh","body":"true"}]},
 "device_state":{"remove_from":"ad","join":"ad","leave_command":"realm leave","join_command":"realm join fabrikam.test"},
 "permission_updates":{"mode":"add-and-remove","paths":["/home"],"skip_unresolved_profiles":true},
 "app_reconfiguration":{"reconfigure_applications":true,"commands":[{"name":"mail","interpreter":"sh","body":"true"},{"name":"vpn","interpreter":"sh","body":"true"}]},
 "completion":{"post_migration_scripts":[{"name":"notify","interpreter":"sh","body":"true"}]}}"#;

/// The child: a server on `dir` (seeded first when `seed`), its agent endpoint on `port` (0: any).
/// The batch's wave options: `max_concurrent` (0: none) and the canary (empty: none).
#[derive(Clone)]
struct WaveOptions {
    max_concurrent: usize,
    canary: String,
}

fn serve(dir: &str, agents: usize, port: u16, schema: &str, seed: bool, wave: &WaveOptions) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("ferry.toml"), "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"c.json\"\n\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"f.json\"\n").expect("config");
        let settings = Settings::load(&dir.join("ferry.toml")).expect("settings");
        let database_url = database_url(schema);
        if seed && let (Ok(url), Some(_)) = (std::env::var("FERRY_BENCH_DATABASE_URL"), &database_url) {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            c.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("schema");
        }
        let server = Server::start(
            ServerOptions {
                settings,
                data_dir: dir.join("data"),
                database_url,
                admin_token: None,
                secret_key: None,
                scheduler: false,
                agent: Some(AgentEndpoint {
                    listener: tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the agent port"),
                    cert: None,
                    names: vec![],
                    public_url: None,
                }),
            },
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        )
        .await
        .expect("server");
        if seed {
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
                            hostname: hostname(i),
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
            store.put_document(DocKind::Runbook, "Main", RUNBOOK, 1).await.expect("runbook");
            // Enforced 20 minutes ago: past the 15-minute start window, every device is due now.
            let enforced = minute(now_ms() - 20 * 60_000);
            let mut cap = if wave.max_concurrent > 0 { format!(r#","max_concurrent":{}"#, wave.max_concurrent) } else { String::new() };
            if !wave.canary.is_empty() {
                cap.push_str(&format!(r#","canary":"{}""#, wave.canary));
            }
            let batch = format!(r#"{{"name":"{BATCH}","source_directory":"contoso","target_directory":"fabrikam","runbooks":["Main"],"enforced_after":"{enforced}","time_zone":"UTC"{cap}}}"#);
            store.put_document(DocKind::Batch, BATCH, &batch, 1).await.expect("batch");
            let computers: Vec<String> = (0..agents).map(|i| hostname(i).to_lowercase()).collect();
            store.add_batch_computers(BATCH, &computers, 1).await.expect("computers");
            server.state.devices.reload(&*store).await.expect("reload");
            eprintln!("seeded {agents} agents and batch {BATCH} (enforced after {enforced} UTC) in {:.1}s", t.elapsed().as_secs_f64());
        }
        println!("READY https://{} {}", server.agent_addr.expect("agent endpoint"), dir.join("data/agent-tls/cert.pem").display());
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_to_string(&mut s);
        })
        .await;
        let _ = server.stop().await;
    });
}

/// The PostgreSQL URL with the bench's schema, or None (SQLite).
fn database_url(schema: &str) -> Option<String> {
    std::env::var("FERRY_BENCH_DATABASE_URL").ok().map(|url| {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}")
    })
}

/// Starts the server child; returns it with the agent endpoint's URL and certificate path.
fn spawn_server(
    dir: &std::path::Path,
    agents: usize,
    port: u16,
    schema: &str,
    seed: bool,
    wave: &WaveOptions,
) -> (Child, String, String) {
    let mut child = Command::new(std::env::current_exe().expect("self"))
        .args([
            "--serve",
            dir.to_str().expect("path"),
            &agents.to_string(),
            &port.to_string(),
            schema,
            if seed { "seed" } else { "restart" },
            &wave.max_concurrent.to_string(),
            &wave.canary,
        ])
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
    (child, parts[1].to_string(), parts[2].to_string())
}

/// What the simulators counted.
#[derive(Default)]
struct Tally {
    /// Check-in latencies (µs) of answered check-ins.
    checkins: Vec<u32>,
    /// Latencies (µs) of accepted event and log calls.
    reports: Vec<u32>,
    /// Per device: (index, run, events accepted, log bytes accepted).
    devices: Vec<(usize, String, u64, u64)>,
    /// Calls sent again after no answer, a 5xx or a 429.
    retries: u64,
    /// Calls the server refused for good (400/403/409/413): their events are lost.
    refused: u64,
    refused_events: u64,
    /// Errors that ended a device's day (unexpected answers).
    errors: u64,
    /// Check-ins that handed no migration (blocked or waiting), sent again later.
    no_order: u64,
    /// A final check-in that handed another run than the one the device ran.
    new_runs: u64,
    /// Steps the simulators started twice (the run resumed after a crash would).
    steps_twice: u64,
    first_error: Option<String>,
}

enum Answer {
    /// 2xx, with the body.
    Ok(Vec<u8>),
    /// Refused for good: status and body.
    Refused(u16, String),
}

struct Sim {
    http: reqwest::Client,
    url: String,
    done: AtomicUsize,
    outstanding: AtomicUsize,
    queue: Mutex<VecDeque<(usize, Instant)>>,
    retries: AtomicU64,
}

impl Sim {
    /// Sends a call until the server answers it with something other than 5xx or 429 (the agent
    /// retries these later; here after 200 ms). Returns the answer and the latency of the call
    /// that got it.
    async fn call(&self, path: &str, key: &str, body: Vec<u8>) -> Result<(Answer, u32), String> {
        let started = Instant::now();
        loop {
            let t = Instant::now();
            let r = self
                .http
                .post(format!("{}{path}", self.url))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let retry = match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let bytes = r.bytes().await.map(|b| b.to_vec());
                    match (status, bytes) {
                        (200..=299, Ok(b)) => {
                            return Ok((Answer::Ok(b), t.elapsed().as_micros() as u32));
                        }
                        (400..=428 | 430..=499, Ok(b)) => {
                            return Ok((
                                Answer::Refused(status, String::from_utf8_lossy(&b).into_owned()),
                                0,
                            ));
                        }
                        (s, _) => format!("status {s}"),
                    }
                }
                Err(e) => e.to_string(),
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            if started.elapsed() > Duration::from_secs(600) {
                return Err(format!("{path}: no answer for 10 minutes: {retry}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A check-in: before the run (`idle`, with a passing pre-flight) or after it (`verified`,
    /// with the run's passing post-flight).
    async fn checkin(
        &self,
        key: &str,
        after_run: Option<&str>,
        t: &mut Tally,
    ) -> Result<CheckinResponse, String> {
        let now = now_ms();
        let preflight = after_run.is_none();
        let req = CheckinRequest {
            protocol: ferry_core::agent::PROTOCOL_VERSION,
            profiles: None,
            state: Some(if preflight { "idle" } else { "verified" }.into()),
            agent_version: Some("0.1.0".into()),
            preflight: preflight.then(|| DevicePreflight {
                at: now,
                checks: ["free-space", "reboot", "commands", "server"]
                    .into_iter()
                    .map(|c| PreflightCheck::new(c, true, true, "ok"))
                    .collect(),
            }),
            clock: Some(now),
            verification: after_run.map(|run| Verification {
                run: run.into(),
                after: "run".into(),
                at: now,
                checks: [
                    ("principals", "30 entries checked: none names a source principal the run should have replaced"),
                    ("homes", "every target account resolves its home"),
                    ("check-commands", "no check commands"),
                ]
                .into_iter()
                .map(|(c, d)| PreflightCheck::new(c, true, true, d))
                .collect(),
            }),
        };
        let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
        match self.call("/agent/v1/checkin", key, body).await? {
            (Answer::Ok(b), lat) => {
                t.checkins.push(lat);
                serde_json::from_slice(&b).map_err(|e| format!("check-in answer: {e}"))
            }
            (Answer::Refused(s, b), _) => Err(format!("check-in refused: {s} {b}")),
        }
    }

    /// Sends a flush (events, then the log text after `offset`), dropping what is refused for
    /// good as the agent does. Returns (events accepted, log bytes accepted).
    async fn flush(
        &self,
        key: &str,
        run: &str,
        events: Vec<AgentEvent>,
        offset: u64,
        text: String,
        t: &mut Tally,
    ) -> Result<(u64, u64), String> {
        let n = events.len() as u64;
        let body = serde_json::to_vec(&EventsRequest {
            protocol: ferry_core::agent::PROTOCOL_VERSION,
            run: run.into(),
            events,
        })
        .map_err(|e| e.to_string())?;
        let mut taken = (0, 0);
        match self.call("/agent/v1/events", key, body).await? {
            (Answer::Ok(_), lat) => {
                t.reports.push(lat);
                taken.0 = n;
            }
            (Answer::Refused(s, b), _) => {
                t.refused += 1;
                t.refused_events += n;
                t.first_error
                    .get_or_insert_with(|| format!("events refused: {s} {b}"));
            }
        }
        let len = text.len() as u64;
        let body = serde_json::to_vec(&LogChunk {
            protocol: ferry_core::agent::PROTOCOL_VERSION,
            run: run.into(),
            offset,
            text,
        })
        .map_err(|e| e.to_string())?;
        match self.call("/agent/v1/logs", key, body).await? {
            (Answer::Ok(_), lat) => {
                t.reports.push(lat);
                taken.1 = len;
            }
            (Answer::Refused(s, b), _) => {
                t.refused += 1;
                t.first_error
                    .get_or_insert_with(|| format!("log refused: {s} {b}"));
            }
        }
        Ok(taken)
    }

    /// One device's day. `Ok(false)`: no migration handed yet (it checks in again later).
    async fn device(&self, i: usize, t: &mut Tally) -> Result<bool, String> {
        let key = node_key(i);
        let resp = self.checkin(&key, None, t).await?;
        let Some(order) = resp.migration else {
            t.no_order += 1;
            return Ok(false);
        };
        let steps = ferry_core::runbook::plan_steps(&order.runbooks);
        // The run, as the agent executes it: every step started once, then ended; an event and
        // a log line each. Three flushes, as the agent's 2-second flush would send them.
        let mut started: HashSet<String> = HashSet::new();
        let (mut events, mut log, mut offset) = (0u64, 0u64, 0u64);
        let per = steps.len().div_ceil(3).max(1);
        for part in steps.chunks(per) {
            let mut batch = Vec::new();
            let mut text = String::new();
            for s in part {
                if !started.insert(s.id.clone()) {
                    t.steps_twice += 1;
                }
                for status in ["started", "succeeded"] {
                    let at = now_ms();
                    text.push_str(&format!("{} {} {status}\n", timestamp(at), s.id));
                    batch.push(AgentEvent {
                        at,
                        step: s.id.clone(),
                        status: status.into(),
                        message: String::new(),
                        progress: Some(((batch.len() + 1) * 100 / (steps.len() * 2)) as u8),
                    });
                }
            }
            let len = text.len() as u64;
            let (e, l) = self.flush(&key, &order.run, batch, offset, text, t).await?;
            events += e;
            log += l;
            offset += len;
        }
        let last = self.checkin(&key, Some(&order.run), t).await?;
        if last.migration.as_ref().is_some_and(|m| m.run != order.run) {
            t.new_runs += 1;
        }
        t.devices.push((i, order.run, events, log));
        Ok(true)
    }

    async fn worker(self: Arc<Self>) -> Tally {
        let mut t = Tally::default();
        loop {
            let next = self.queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some((i, not_before)) = next else {
                if self.outstanding.load(Ordering::Acquire) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if let Some(wait) = not_before.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            match self.device(i, &mut t).await {
                Ok(true) => {
                    self.done.fetch_add(1, Ordering::AcqRel);
                    self.outstanding.fetch_sub(1, Ordering::AcqRel);
                }
                // Waiting (max_concurrent): the agent polls each minute; here after a second.
                Ok(false) => {
                    if let Ok(mut q) = self.queue.lock() {
                        q.push_back((i, Instant::now() + Duration::from_secs(1)));
                    }
                }
                Err(e) => {
                    t.errors += 1;
                    t.first_error.get_or_insert(format!("{}: {e}", hostname(i)));
                    self.outstanding.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        t
    }
}

fn pct(v: &[u32], p: f64) -> f64 {
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0) as f64
        / 1000.0
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("--serve") {
        // The server's warnings (a failed write, say) go to stderr.
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_writer(std::io::stderr)
            .init();
        serve(
            &a[2],
            a[3].parse().expect("agents"),
            a[4].parse().expect("port"),
            &a[5],
            a[6] == "seed",
            &WaveOptions {
                max_concurrent: a[7].parse().expect("max_concurrent"),
                canary: a.get(8).cloned().unwrap_or_default(),
            },
        );
        return;
    }
    let mut agents = 100_000usize;
    let (mut kill, mut connections) = (false, 256usize);
    let mut wave = WaveOptions {
        max_concurrent: 0,
        canary: String::new(),
    };
    let mut args = a.iter().skip(1);
    while let Some(v) = args.next() {
        match v.as_str() {
            "--kill" => kill = true,
            "--connections" => {
                connections = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--connections N")
            }
            "--max-concurrent" => {
                wave.max_concurrent = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--max-concurrent N")
            }
            "--canary" => wave.canary = args.next().cloned().expect("--canary N or P%"),
            n => {
                agents = n
                    .parse()
                    .expect("AGENTS, --kill, --connections N, --max-concurrent N, --canary N|P%")
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("ferry-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let schema = format!("bench_fleet_{}", std::process::id());
    let backend = if std::env::var("FERRY_BENCH_DATABASE_URL").is_ok() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let t_seed = Instant::now();
    let (child, url, cert) = spawn_server(&dir, agents, 0, &schema, true, &wave);
    eprintln!(
        "server ready in {:.1}s: {url}",
        t_seed.elapsed().as_secs_f64()
    );
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let child = Arc::new(Mutex::new(child));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (wall, tally, server_cpu, client_cpu, killed, sim) = rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pem = std::fs::read(&cert).expect("cert");
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let sim = Arc::new(Sim {
            http,
            url,
            done: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(agents),
            queue: Mutex::new((0..agents).map(|i| (i, Instant::now())).collect()),
            retries: AtomicU64::new(0),
        });
        let pid = |c: &Arc<Mutex<Child>>| c.lock().map(|c| c.id().to_string()).unwrap_or_default();
        let (c0, s0) = (cpu_seconds(), process_cpu_seconds(&pid(&child)));
        let start = Instant::now();
        // The kill: at a random share of devices done, SIGKILL, then the same server again.
        let killer = kill.then(|| {
            let (sim, child, dir, schema, wave) = (
                Arc::clone(&sim),
                Arc::clone(&child),
                dir.clone(),
                schema.clone(),
                wave.clone(),
            );
            tokio::spawn(async move {
                let mut x = (now_ms() as u64) | 1;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let share = 0.2 + (x % 500) as f64 / 1000.0;
                let at = ((agents as f64 * share) as usize).max(1);
                while sim.done.load(Ordering::Acquire) < at {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let before = process_cpu_seconds(&pid(&child));
                let t = start.elapsed().as_secs_f64();
                if let Ok(mut c) = child.lock() {
                    c.kill().expect("SIGKILL");
                    let _ = c.wait();
                }
                let done = sim.done.load(Ordering::Acquire);
                let t_restart = Instant::now();
                let (c, _, _) = tokio::task::spawn_blocking(move || {
                    spawn_server(&dir, agents, port, &schema, false, &wave)
                })
                .await
                .expect("restart");
                if let Ok(mut old) = child.lock() {
                    *old = c;
                }
                let down = t_restart.elapsed().as_secs_f64();
                (before, t, done, down)
            })
        });
        let workers: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(Arc::clone(&sim).worker()))
            .collect();
        let mut tally = Tally::default();
        for w in workers {
            let t = w.await.expect("worker");
            tally.checkins.extend(t.checkins);
            tally.reports.extend(t.reports);
            tally.devices.extend(t.devices);
            tally.refused += t.refused;
            tally.refused_events += t.refused_events;
            tally.errors += t.errors;
            tally.no_order += t.no_order;
            tally.new_runs += t.new_runs;
            tally.steps_twice += t.steps_twice;
            if tally.first_error.is_none() {
                tally.first_error = t.first_error;
            }
        }
        let wall = start.elapsed().as_secs_f64();
        tally.retries = sim.retries.load(Ordering::Relaxed);
        let killed = match killer {
            Some(k) => Some(k.await.expect("killer")),
            None => None,
        };
        let server_cpu = process_cpu_seconds(&pid(&child)) + killed.map_or(-s0, |k| k.0 - s0);
        (wall, tally, server_cpu, cpu_seconds() - c0, killed, sim)
    });
    // A graceful stop (the write-behind queue of contacts is flushed), then the store is read back.
    let mut child = Arc::try_unwrap(child)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .expect("child");
    drop(child.stdin.take());
    let _ = child.wait();
    let mut tally = tally;
    tally.checkins.sort_unstable();
    tally.reports.sort_unstable();
    let migrated = tally.devices.len();
    let sent_events: u64 = tally.devices.iter().map(|d| d.2).sum();
    let sent_log: u64 = tally.devices.iter().map(|d| d.3).sum();

    // The state each device reported last, as the server stored it. A SIGKILL loses the contacts
    // of the last 200 ms (a write-behind queue): those devices say so again at their next poll
    // (a minute later for a real agent), which the simulators then send.
    let states = || {
        rt.block_on(async {
            let store = ferry_store::open(database_url(&schema).as_deref(), &dir.join("data"))
                .await
                .expect("open the store");
            let agents = store.agents().await.expect("agents");
            agents
                .into_iter()
                .map(|a| (a.hostname.clone(), a))
                .collect::<HashMap<String, ferry_core::wire::AgentRecord>>()
        })
    };
    let mut by_host = states();
    let lagging: Vec<usize> = tally
        .devices
        .iter()
        .map(|d| d.0)
        .filter(|i| {
            by_host
                .get(&hostname(*i))
                .is_none_or(|a| a.state != "verified")
        })
        .collect();
    if !lagging.is_empty() {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for i in &lagging {
            *seen
                .entry(
                    by_host
                        .get(&hostname(*i))
                        .map_or("(none)".into(), |a| a.state.clone()),
                )
                .or_default() += 1;
        }
        eprintln!(
            "{} devices not `verified` on the server after the batch ({seen:?}): their next poll",
            lagging.len()
        );
        let (mut c, _, _) = spawn_server(&dir, agents, port, &schema, false, &wave);
        rt.block_on(async {
            let mut t = Tally::default();
            for i in &lagging {
                let run = tally
                    .devices
                    .iter()
                    .find(|d| d.0 == *i)
                    .map(|d| d.1.clone());
                if let Err(e) = sim.checkin(&node_key(*i), run.as_deref(), &mut t).await {
                    eprintln!("{}: {e}", hostname(*i));
                }
            }
        });
        drop(c.stdin.take());
        let _ = c.wait();
        by_host = states();
    }
    let check = rt.block_on(async {
        let store = ferry_store::open(database_url(&schema).as_deref(), &dir.join("data"))
            .await
            .expect("open the store");
        let t = Instant::now();
        let (mut events, mut log, mut twice, mut mismatched, mut not_succeeded, mut not_done) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut first_mismatch = None;
        let sem = Arc::new(tokio::sync::Semaphore::new(8));
        let mut reads = Vec::new();
        for (i, run, ev, lg) in &tally.devices {
            let a = by_host.get(&hostname(*i)).expect("agent of a device");
            if a.state != "verified" {
                not_succeeded += 1;
            }
            let (store, sem, run, id, ev, lg, i) = (
                Arc::clone(&store),
                Arc::clone(&sem),
                run.clone(),
                a.id,
                *ev,
                *lg,
                *i,
            );
            reads.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                let e = store.agent_events(id, Some(&run)).await.expect("events");
                let l = store.agent_log(id, &run).await.expect("log").len() as u64;
                let mut seen = HashSet::new();
                let twice = e
                    .iter()
                    .filter(|e| e.event.status == "started" && !seen.insert(e.event.step.clone()))
                    .count() as u64;
                let done = e
                    .iter()
                    .any(|e| e.event.step == "done" && e.event.status == "succeeded");
                (i, e.len() as u64, l, twice, ev, lg, done)
            }));
        }
        for r in reads {
            let (i, e, l, tw, ev, lg, done) = r.await.expect("read");
            if !done {
                not_done += 1;
            }
            events += e;
            log += l;
            twice += tw;
            if e != ev || l != lg {
                mismatched += 1;
                first_mismatch.get_or_insert(format!(
                    "{}: server {e} events, {l} log bytes; simulator {ev}, {lg}",
                    hostname(i)
                ));
            }
        }
        eprintln!(
            "read back {} devices in {:.1}s",
            tally.devices.len(),
            t.elapsed().as_secs_f64()
        );
        (
            events,
            log,
            twice,
            mismatched,
            not_succeeded,
            not_done,
            first_mismatch,
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (events, log, twice, mismatched, not_succeeded, not_done, first_mismatch) = check;

    println!(
        "{backend}{}: {agents} agents, {connections} connections{}: {migrated} migrated in {wall:.1}s (first due check-in to last device done)",
        if kill { " with a SIGKILL" } else { "" },
        match (wave.max_concurrent, wave.canary.as_str()) {
            (0, "") => String::new(),
            (0, c) => format!(", canary {c}"),
            (m, "") => format!(", max_concurrent {m}"),
            (m, c) => format!(", canary {c}, max_concurrent {m}"),
        }
    );
    println!(
        "server CPU {server_cpu:.1}s = {:.2} ms per migrated device ({:.0}% of 2 cores); simulators {client_cpu:.1}s",
        server_cpu * 1000.0 / migrated.max(1) as f64,
        server_cpu / (wall * 2.0) * 100.0
    );
    println!(
        "check-ins: {} answered, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; event/log calls: {}, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        tally.checkins.len(),
        pct(&tally.checkins, 0.5),
        pct(&tally.checkins, 0.99),
        tally.checkins.last().copied().unwrap_or(0) as f64 / 1000.0,
        tally.reports.len(),
        pct(&tally.reports, 0.5),
        pct(&tally.reports, 0.99),
        tally.reports.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    println!(
        "events: simulators {sent_events}, server {events}; log bytes: simulators {sent_log}, server {log}; devices differing {mismatched}"
    );
    println!(
        "retries {}, refused calls {} ({} events), errors {}, no order yet {}, steps started twice: simulators {}, server {twice}; second runs handed {}; devices without `done succeeded` on the server {not_done}; not `verified` after the batch {}, after their next poll {not_succeeded}",
        tally.retries,
        tally.refused,
        tally.refused_events,
        tally.errors,
        tally.no_order,
        tally.steps_twice,
        tally.new_runs,
        lagging.len()
    );
    if let Some((_, t, done, down)) = killed {
        println!(
            "SIGKILL at {t:.1}s with {done} devices done; the restarted server was ready {:.0} ms later",
            down * 1000.0
        );
    }
    let mut failed = Vec::new();
    if migrated != agents {
        failed.push(format!("{} of {agents} devices migrated", migrated));
    }
    if events != sent_events || log != sent_log || mismatched > 0 {
        failed.push(format!(
            "stored events or log bytes differ from the simulators' ({})",
            first_mismatch.unwrap_or_default()
        ));
    }
    if tally.refused > 0 || tally.errors > 0 {
        failed.push(format!(
            "{} refused calls, {} errors: {}",
            tally.refused,
            tally.errors,
            tally.first_error.unwrap_or_default()
        ));
    }
    if twice > 0 || tally.steps_twice > 0 || tally.new_runs > 0 {
        failed.push("a step started twice or a second run handed".into());
    }
    if not_succeeded > 0 || not_done > 0 {
        failed.push(format!("{not_done} devices without `done succeeded`, {not_succeeded} not `verified` on the server"));
    }
    if !failed.is_empty() {
        eprintln!("FAILED: {}", failed.join("; "));
        std::process::exit(1);
    }
    println!(
        "OK: every device migrated, the server's events and log bytes equal the simulators' exactly"
    );
}

//! The console's pages with 1,000,000 translation entries and 100,000 agents in the database: for
//! every page, the API requests its first render makes (the same ones, in the same order, as
//! `console/app.js`: concurrent where the page sends them together), timed end to end over
//! loopback against a real `ferry server`.
//!
//! `console-pages [USERS] [AGENTS] [RENDERS]` (defaults 1,055,000 source users, which match about
//! 1,002,000, 100,000 agents, 20 renders per page) on SQLite; with
//! `FERRY_BENCH_DATABASE_URL=postgres://…` on PostgreSQL (a schema of its own). Seeding is not timed:
//! the users go through a real sync cycle, agents are enrolled through the store, 10 batches of
//! 10,000 computers each, contacts in five states, and one run's events for 20,000 agents. The server
//! is then restarted, so the first render of each page runs on cold caches; it is reported apart
//! from the median and 95th percentile of the following renders.

use ferry_core::agent::{AgentEvent, DeviceFacts};
use ferry_core::plan::Status;
use ferry_demo as sample;
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use ferry_store::{
    AgentQuery, AgentSort, Contact, DecisionQuery, DecisionSort, Direction, Enrollment, Store,
};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const BATCHES: usize = 10;

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> (Value, usize) {
        let r = self
            .http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let body = r.bytes().await.expect("body");
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        (
            serde_json::from_slice(&body).unwrap_or(Value::Null),
            body.len(),
        )
    }

    /// Sends the paths together, as the page does; the bytes answered.
    /// Sends `paths` together; the bytes of all answers, and each request's time (ms) by path.
    async fn all(&self, paths: &[String]) -> (usize, Vec<(String, f64)>) {
        let mut set = tokio::task::JoinSet::new();
        for p in paths {
            let api = Api {
                http: self.http.clone(),
                url: self.url.clone(),
                token: self.token.clone(),
            };
            let p = p.clone();
            set.spawn(async move {
                let t = Instant::now();
                let n = api.get(&p).await.1;
                (n, p, t.elapsed().as_secs_f64() * 1000.0)
            });
        }
        let (mut bytes, mut each) = (0, Vec::new());
        while let Some(r) = set.join_next().await {
            let (n, p, ms) = r.expect("request task");
            bytes += n;
            each.push((p, ms));
        }
        (bytes, each)
    }

    async fn send(&self, m: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(m, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
}

async fn start(dir: &Path, database_url: Option<String>) -> Server {
    Server::start(
        ServerOptions {
            settings: Settings::load(&dir.join("ferry.toml")).expect("settings"),
            data_dir: dir.join("data"),
            database_url,
            admin_token: None,
            secret_key: None,
            scheduler: false,
            agent: None,
        },
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
    )
    .await
    .expect("server")
}

async fn seed_agents(store: &Arc<dyn Store>, agents: usize) {
    let psk = store
        .add_psk("bench", "bench-psk-hash", None, None, 1)
        .await
        .expect("psk");
    let chunk = agents.div_ceil(16);
    let mut tasks = Vec::new();
    for c in 0..16 {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            for i in c * chunk..((c + 1) * chunk).min(agents) {
                let facts = DeviceFacts {
                    device_id: format!("machine-{i:08}"),
                    hostname: format!("PC-{i:06}"),
                    os: "linux".into(),
                    os_version: "Debian 13".into(),
                    agent_version: "0.1.0".into(),
                    ..Default::default()
                };
                let hash = format!("bench-node-{i:08}");
                store
                    .enroll_agent(&Enrollment {
                        facts: &facts,
                        profiles: &[],
                        node_hash: &hash,
                        psk_id: psk.id,
                        now: 1,
                        address: None,
                        replaces: None,
                    })
                    .await
                    .expect("enroll");
            }
        }));
    }
    for t in tasks {
        t.await.expect("seed");
    }
    // Contacts in five states, now for most, long ago for every 50th (silent).
    let now = ferry_store::now_ms();
    let states = ["idle", "running", "succeeded", "failed", "offered"];
    let contacts: Vec<Contact> = (1..=agents as i64)
        .map(|id| Contact {
            agent_id: id,
            at: if id % 50 == 0 { now - 86_400_000 } else { now },
            address: Some("10.0.0.1".into()),
            state: Some(states[id as usize % states.len()].into()),
            agent_version: None,
        })
        .collect();
    for c in contacts.chunks(20_000) {
        store.record_contacts(c).await.expect("contacts");
    }
    // One run's events for the first 20,000 agents.
    let ev = |step: &str, p: u8| AgentEvent {
        at: now,
        step: step.into(),
        status: "succeeded".into(),
        message: String::new(),
        progress: Some(p),
    };
    for id in 1..=(agents.min(20_000) as i64) {
        store
            .add_agent_events(
                id,
                "run-1",
                &[
                    ev("startup", 10),
                    ev("permissions", 60),
                    ev("completion", 100),
                ],
                now,
            )
            .await
            .expect("events");
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_055_000);
    let agents: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let renders: usize = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20)
        .max(2);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(users, agents, renders));
}

async fn run(users: usize, agents: usize, renders: usize) {
    let dir = std::env::temp_dir().join(format!("ferry-bench-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let t = Instant::now();
    ferry_bench::write_user_snapshots(&dir, users, true);
    std::fs::write(
        dir.join("ferry.toml"),
        format!(
            "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\
             [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\nobject_types = [\"user\", \"group\", \"device\"]\nschedule = \"1h\"\n{}",
            sample::QUICKSTART_RULES
        ),
    )
    .expect("config");
    let mut pg = None;
    let database_url = match std::env::var("FERRY_BENCH_DATABASE_URL") {
        Ok(url) => {
            let (c, schema, with_schema) = ferry_bench::pg_schema(&url, "bench").await;
            pg = Some((c, schema));
            Some(with_schema)
        }
        Err(_) => None,
    };
    let backend = if database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };

    // Seed (not timed): a real cycle for the translation table, agents, batches.
    let server = start(&dir, database_url.clone()).await;
    let api = Api {
        http: reqwest::Client::new(),
        url: format!("http://{}", server.addr),
        token: server.admin_token.clone(),
    };
    let c = api
        .send(
            reqwest::Method::POST,
            "/profiles/users/run?wait=true&timeout=3600",
            json!({}),
        )
        .await;
    assert_eq!(c["cycle"]["status"], "succeeded", "{c}");
    println!(
        "first cycle (import, match, commit) {:.1}s (not timed)",
        (c["cycle"]["finished_at"].as_i64().unwrap_or(0)
            - c["cycle"]["started_at"].as_i64().unwrap_or(0)) as f64
            / 1000.0
    );
    let store = Arc::clone(&server.state.store);
    seed_agents(&store, agents).await;
    api.send(reqwest::Method::PUT, "/runbooks/Main", json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"]})).await;
    let per = agents / BATCHES;
    for b in 0..BATCHES {
        let name = format!("wave-{b}");
        api.send(
            reqwest::Method::PUT,
            &format!("/batches/{name}"),
            json!({"name": name, "source_directory": "contoso", "target_directory": "fabrikam",
            "runbooks": ["Main"], "enforced_after": "2030-01-01T00:00", "time_zone": "UTC"}),
        )
        .await;
        let comps: Vec<String> = (b * per..(b + 1) * per)
            .map(|i| format!("pc-{i:06}"))
            .collect();
        store
            .add_batch_computers(&name, &comps, 1)
            .await
            .expect("computers");
    }
    // A running server's database is vacuumed and analysed by autovacuum; measured right after
    // seeding, autovacuum would work through the seeded tables during the renders.
    if let Some((c, schema)) = &pg {
        let t = Instant::now();
        c.batch_execute(&format!("SET search_path = {schema}"))
            .await
            .expect("search path");
        c.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
        println!(
            "vacuumed and analysed in {:.1}s (not timed)",
            t.elapsed().as_secs_f64()
        );
    }
    // SQLite's search index is filled after the cycle, outside it (the server's own task does it
    // too): the searches below are measured once it is whole.
    let ti = Instant::now();
    let done = ferry_server::sync::search_index::run_until_whole(&*store)
        .await
        .expect("search index");
    if done.chunks > 0 {
        println!(
            "search index whole {:.1}s after seeding ({} chunks; not timed)",
            ti.elapsed().as_secs_f64(),
            done.chunks
        );
    }
    let entries = api.get("/translation?limit=1").await.0["total"]
        .as_u64()
        .unwrap_or(0);
    let agent_total = store
        .count_agents(&Default::default())
        .await
        .expect("count");
    println!(
        "{backend}: {entries} translation entries, {agent_total} agents, {BATCHES} batches of {per} computers; seeded in {:.0}s (not timed)",
        t.elapsed().as_secs_f64()
    );
    assert!(
        entries >= 1_000_000 || users < 1_000_000,
        "fewer than 1M translation entries: {entries}"
    );
    let token = server.admin_token.clone();
    server.stop().await.expect("stop");

    // Measure on a restarted server: the first render of each page is cold.
    let server = start(&dir, database_url).await;
    let api = Api {
        http: reqwest::Client::new(),
        url: format!("http://{}", server.addr),
        token,
    };
    // Keyset cursors in the middle (and at the end) of each sorted list, as a console paging
    // there would have them from the page before: the row there read through the store at an
    // `OFFSET` (not timed; the API takes offsets only up to 10,000), the cursor the server would
    // give for it.
    let store = Arc::clone(&server.state.store);
    let decision_at = |status: Option<Status>, sort: DecisionSort, at: u64| {
        let store = &store;
        async move {
            let q = DecisionQuery {
                profile: Some("users".into()),
                status,
                offset: at as i64,
                limit: 1,
                sort,
                ..Default::default()
            };
            let rows = store.decisions(&q).await.expect("decisions");
            let token = ferry_server::api::translation::next_token(&rows, 1, sort)
                .expect("a decision there");
            (rows, url_encode(&token))
        }
    };
    let matched = Some(Status::Matched);
    let (rows, middle) = decision_at(matched, DecisionSort::Kind, entries / 2).await;
    let upn = rows
        .first()
        .and_then(|r| r.source_upn.clone())
        .unwrap_or_else(|| "ann".into());
    let last = decision_at(matched, DecisionSort::Kind, entries.saturating_sub(51))
        .await
        .1;
    let s = |x: &str| x.to_string();
    let by_source = decision_at(matched, DecisionSort::SourceName, entries / 2)
        .await
        .1;
    // The columns of migration 0027's `decisions_order` (SQLite: the indexer's table, whole).
    let mut by_order = Vec::new();
    for (col, sort) in [
        ("target_name", DecisionSort::TargetName),
        ("source_sid", DecisionSort::SourceSid),
        ("target_sid", DecisionSort::TargetSid),
        ("rule", DecisionSort::Rule),
    ] {
        by_order.push((col, decision_at(matched, sort, entries / 2).await.1));
    }
    let whatif_by_name = decision_at(matched, DecisionSort::SourceName, entries / 2)
        .await
        .1;
    let whatif_by_status = decision_at(None, DecisionSort::Status, entries / 2).await.1;
    let agents_at = |sort: AgentSort, direction: Direction| {
        let store = &store;
        async move {
            let q = AgentQuery {
                offset: (agent_total / 2) as i64,
                limit: 1,
                sort,
                direction,
                ..Default::default()
            };
            let a = store.agents_page(&q).await.expect("agents");
            let a = a.first().expect("an agent there");
            url_encode(&ferry_server::api::id_token(sort.value_of(a), a.id))
        }
    };
    let agents_middle = agents_at(AgentSort::Id, Direction::Asc).await;
    let agents_by_host = agents_at(AgentSort::Hostname, Direction::Asc).await;
    let agents_by_state = agents_at(AgentSort::State, Direction::Asc).await;
    let agents_by_contact = agents_at(AgentSort::LastContact, Direction::Desc).await;
    let logs_middle = {
        let (v, _) = api.get("/logs?limit=1&order=asc").await;
        let first = v[0]["id"].as_i64().unwrap_or(0);
        let (v, _) = api.get("/logs?limit=1").await;
        let newest = v[0]["id"].as_i64().unwrap_or(0);
        (first + newest) / 2
    };
    // A substring from inside a UPN, as an engineer types part of a name.
    let inner: String = upn.chars().skip(2).take(9).collect();
    type Pages = Vec<(&'static str, Vec<Vec<String>>)>;
    // Each page: its steps in order; each step's requests are sent together.
    let mut pages: Pages = vec![
        (
            "readiness",
            vec![vec![
                s("/directories"),
                s("/profiles"),
                s("/translation?limit=1"),
                s("/psks"),
                s("/agent-endpoint"),
                s("/runbooks"),
                s("/batches?computers=false"),
                s("/agents?limit=1"),
                s("/logs?level=warning&limit=1"),
                s("/logs?level=error&limit=1"),
            ]],
        ),
        (
            // The landing page: the checklist's requests with its own, each asked once, every
            // batch's devices by state among them (`overview()` in app.js).
            "overview",
            vec![vec![
                s("/directories"),
                s("/profiles"),
                s("/translation?limit=1"),
                s("/psks"),
                s("/agent-endpoint"),
                s("/runbooks"),
                s("/batches?computers=false&states=true"),
                s("/agents?limit=1"),
                s("/logs?level=warning&limit=1"),
                s("/logs?level=error&limit=5"),
                s("/moves"),
            ]],
        ),
        ("directories", vec![vec![s("/directories")]]),
        ("profiles", vec![vec![s("/profiles"), s("/directories")]]),
        ("cycles", vec![vec![s("/cycles?limit=100")]]),
        (
            "whatif",
            vec![
                vec![s("/profiles")],
                vec![s(
                    "/profiles/users/whatif?limit=100&offset=0&writes_limit=0",
                )],
            ],
        ),
        (
            "whatif, unmatched",
            vec![
                vec![s("/profiles")],
                vec![s(
                    "/profiles/users/whatif?limit=100&offset=0&writes_limit=0&status=unmatched",
                )],
            ],
        ),
        (
            "translation",
            vec![vec![s("/translation?limit=50&offset=0&q=")]],
        ),
        (
            "translation, search",
            vec![vec![format!(
                "/translation?limit=50&offset=0&total_upto=1000&q={upn}"
            )]],
        ),
        (
            "translation, search inside a value",
            vec![vec![format!(
                "/translation?limit=50&total_upto=1000&q={}",
                url_encode(&inner)
            )]],
        ),
        (
            "translation, search of 2 characters (n9)",
            vec![vec![s("/translation?limit=50&total_upto=1000&q=n9")]],
        ),
        (
            "translation, search of 2 characters, rare (=g)",
            vec![vec![s("/translation?limit=50&total_upto=1000&q=%3Dg")]],
        ),
        (
            "translation, search of 2 characters, common (an)",
            vec![vec![s("/translation?limit=50&total_upto=1000&q=an")]],
        ),
        (
            "translation, search of 2 characters, common (an): the exact total after it",
            vec![vec![s("/translation?limit=1&q=an")]],
        ),
        (
            "translation, search of 1 character, in no entry (王)",
            vec![vec![s("/translation?limit=50&total_upto=1000&q=%E7%8E%8B")]],
        ),
        (
            "translation, search of 1 character (ë)",
            vec![vec![s("/translation?limit=50&total_upto=1000&q=%C3%AB")]],
        ),
        (
            "translation, middle page (after=)",
            vec![vec![format!("/translation?limit=50&after={middle}")]],
        ),
        (
            "translation, last page (after=)",
            vec![vec![format!("/translation?limit=50&after={last}")]],
        ),
        (
            "whatif, middle page (after=)",
            vec![vec![format!(
                "/profiles/users/whatif?limit=100&writes_limit=0&status=matched&after={middle}"
            )]],
        ),
        (
            "translation by source name, first page",
            vec![vec![s("/translation?limit=50&sort=source_name&q=")]],
        ),
        (
            "translation by source name, middle page",
            vec![vec![format!(
                "/translation?limit=50&sort=source_name&after={by_source}"
            )]],
        ),
    ];
    for (col, at) in &by_order {
        pages.push((
            String::leak(format!("translation by {col} desc, first page")),
            vec![vec![s(&format!(
                "/translation?limit=50&sort={col}&order=desc&q="
            ))]],
        ));
        pages.push((
            String::leak(format!("translation by {col}, middle page")),
            vec![vec![format!("/translation?limit=50&sort={col}&after={at}")]],
        ));
    }
    pages.extend([
        (
            "translation by kind desc, first page",
            vec![vec![s("/translation?limit=50&sort=kind&order=desc&q=")]],
        ),
        (
            "whatif matched by source name, first page",
            vec![vec![s(
                "/profiles/users/whatif?limit=100&writes_limit=0&status=matched&sort=source_name",
            )]],
        ),
        (
            "whatif matched by source name, middle page",
            vec![vec![format!(
                "/profiles/users/whatif?limit=100&writes_limit=0&status=matched&sort=source_name&after={whatif_by_name}"
            )]],
        ),
        (
            "whatif by status desc, first page",
            vec![vec![s(
                "/profiles/users/whatif?limit=100&writes_limit=0&sort=status&order=desc",
            )]],
        ),
        (
            "whatif by status, middle page",
            vec![vec![format!(
                "/profiles/users/whatif?limit=100&writes_limit=0&sort=status&after={whatif_by_status}"
            )]],
        ),
        (
            "object report",
            vec![vec![format!("/report/object?q={upn}")]],
        ),
        ("logs", vec![vec![s("/logs?limit=500"), s("/profiles")]]),
        (
            "logs, warnings",
            vec![vec![s("/logs?limit=500&level=warning"), s("/profiles")]],
        ),
        ("psks", vec![vec![s("/agent-endpoint"), s("/psks")]]),
        ("runbooks", vec![vec![s("/runbooks"), s("/directories")]]),
        (
            "batches",
            vec![vec![
                s("/batches?computers=false"),
                s("/directories"),
                s("/runbooks"),
            ]],
        ),
        (
            "dashboard",
            vec![
                vec![s("/batches?computers=false")],
                vec![s("/batches/wave-3/progress?limit=200")],
            ],
        ),
        ("agents", vec![vec![s("/agents?limit=100&offset=0")]]),
        (
            "agents, middle page",
            vec![vec![format!("/agents?limit=100&after={agents_middle}")]],
        ),
        (
            "agents by host name, first page",
            vec![vec![s("/agents?limit=100&sort=hostname")]],
        ),
        (
            "agents by host name, middle page",
            vec![vec![format!(
                "/agents?limit=100&sort=hostname&after={agents_by_host}"
            )]],
        ),
        (
            "agents by state desc, first page",
            vec![vec![s("/agents?limit=100&sort=state&order=desc")]],
        ),
        (
            "agents by state, middle page",
            vec![vec![format!(
                "/agents?limit=100&sort=state&after={agents_by_state}"
            )]],
        ),
        (
            "agents by last contact desc, first page",
            vec![vec![s("/agents?limit=100&sort=last_contact&order=desc")]],
        ),
        (
            "agents by last contact desc, middle page",
            vec![vec![format!(
                "/agents?limit=100&sort=last_contact&order=desc&after={agents_by_contact}"
            )]],
        ),
        (
            "dashboard agents by host name",
            vec![vec![s(
                "/batches/wave-3/progress?limit=200&sort=hostname&order=desc",
            )]],
        ),
        (
            "logs oldest first, first page",
            vec![vec![s("/logs?limit=200&order=asc"), s("/profiles")]],
        ),
        (
            "logs oldest first, middle page",
            vec![vec![format!(
                "/logs?limit=200&order=asc&after={logs_middle}"
            )]],
        ),
        (
            "failed communications by address",
            vec![vec![s(
                "/reports/failed-communications?limit=100&sort=address&order=asc",
            )]],
        ),
        (
            "audit, oldest first",
            vec![vec![s("/audit?limit=200&order=asc")]],
        ),
        (
            "agents, search",
            vec![vec![s("/agents?limit=100&offset=0&search=pc-0777")]],
        ),
        (
            "agent",
            vec![vec![format!("/agents/{}", agent_total * 7 / 9)]],
        ),
        (
            "failed communications",
            vec![vec![s("/reports/failed-communications")]],
        ),
        ("environments", vec![vec![s("/environments")]]),
        ("environment moves", vec![vec![s("/moves")]]),
        ("operators", vec![vec![s("/operators")]]),
        ("audit", vec![vec![s("/audit?limit=200")]]),
    ]);
    println!(
        "\n| page | first render (cold) | median | p95 | max | bytes |\n|---|---|---|---|---|---|"
    );
    let mut worst: (f64, &str) = (0.0, "");
    let mut worst_after: (f64, &str) = (0.0, "");
    let mut slow = Vec::new();
    let mut within_lines = Vec::new();
    for (name, steps) in &pages {
        let mut times = Vec::with_capacity(renders);
        let mut bytes = 0;
        // Each request's time within the renders after the first, by path.
        let mut within: Vec<(String, Vec<f64>)> = Vec::new();
        // Each request's time within the first (cold) render.
        let mut cold: Vec<String> = Vec::new();
        for r in 0..renders {
            let t = Instant::now();
            bytes = 0;
            for step in steps {
                let (n, each) = api.all(step).await;
                bytes += n;
                for (p, ms) in each {
                    if r == 0 {
                        cold.push(format!("{p} {ms:.1} ms"));
                    }
                    match within.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, v)) if r > 0 => v.push(ms),
                        Some(_) => {}
                        None => within.push((p, if r > 0 { vec![ms] } else { vec![] })),
                    }
                }
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let first = times[0];
        let mut warm = times[1..].to_vec();
        let (med, p95) = (pct(&mut warm, 0.5), pct(&mut warm, 0.95));
        let max = warm.iter().cloned().fold(first, f64::max);
        // A search, a deep page or an object's look-up comes after a page's first render.
        let after_first = name.contains(", ") || *name == "object report";
        let w = if after_first {
            &mut worst_after
        } else {
            &mut worst
        };
        if max > w.0 {
            *w = (max, name);
        }
        println!("| {name} | {first:.1} ms | {med:.1} ms | {p95:.1} ms | {max:.1} ms | {bytes} |");
        if med > 50.0 {
            slow.push((name, steps));
        }
        if first > 100.0 {
            within_lines.push(format!(
                "{name}, each request within the first render: {}",
                cold.join("; ")
            ));
        }
        if within.len() > 1 && renders > 1 {
            let parts: Vec<String> = within
                .iter_mut()
                .map(|(p, v)| format!("{p} {:.1} ms", pct(v, 0.5)))
                .collect();
            within_lines.push(format!(
                "{name}, each request within the page's renders (median): {}",
                parts.join("; ")
            ));
        }
    }
    for l in within_lines {
        println!("\n{l}");
    }
    // Where the time of the slower pages goes: each request alone, best of 5.
    for (name, steps) in slow {
        let mut parts = Vec::new();
        for path in steps.iter().flatten() {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                api.get(path).await;
                best = best.min(t.elapsed().as_secs_f64() * 1000.0);
            }
            parts.push(format!("{path} {best:.1} ms"));
        }
        println!("\n{name}, each request alone: {}", parts.join("; "));
    }
    // The exports a console button starts, whole: time and size (not pages; not in the figures
    // above). Peak memory is the process's own (this benchmark serves in-process), after seeding.
    for (name, path) in [
        (
            "What-If export, every decision",
            "/profiles/users/whatif/export",
        ),
        ("translation export (CSV)", "/translation/export?format=csv"),
    ] {
        let t = Instant::now();
        let r = api
            .http
            .get(format!("{}/api/v1{path}", api.url))
            .bearer_auth(&api.token)
            .send()
            .await
            .expect("export");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let bytes = r.bytes().await.expect("export body").len();
        println!(
            "{name}: {:.1} s, {:.1} MB; peak memory of the process so far {}",
            t.elapsed().as_secs_f64(),
            bytes as f64 / 1e6,
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l
                    .split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ")))
                .unwrap_or_default()
        );
    }
    println!(
        "\nslowest first render of any page: {:.1} ms ({}); target ≤ 200 ms\nslowest search, deep page or look-up: {:.1} ms ({})",
        worst.0, worst.1, worst_after.0, worst_after.1
    );
    if std::env::var_os("FERRY_BENCH_BROWSER").is_some() {
        browser_walk(&api, &upn, renders).await;
    }
    server.stop().await.expect("stop");
    if std::env::var_os("FERRY_BENCH_KEEP").is_some() {
        println!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The schema of this run, a million rows and more: not left behind in the shared database
    // (unless FERRY_BENCH_KEEP asks to keep it, to look at its plans).
    if let Some((c, schema)) = &pg {
        if std::env::var_os("FERRY_BENCH_KEEP").is_some() {
            println!("kept schema {schema}");
            return;
        }
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop the bench schema");
    }
}

/// `v` as a query string value.
fn url_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The same data in Chromium (`FERRY_BENCH_BROWSER=1`): every page of the console rendered,
/// timed from the hash change to the page drawn, and checked for errors; with
/// `FERRY_UPDATE_SCREENSHOTS=1`, each page at this size goes to `docs/screenshots/*-1m.png`.
async fn browser_walk(api: &Api, upn: &str, renders: usize) {
    let routes: Vec<String> = [
        "",
        "directories",
        "profiles",
        "cycles",
        "whatif",
        "translation",
        "logs",
        "psks",
        "runbooks",
        "batches",
        "dashboard",
        "agents",
        "failed",
        "environments",
        "moves",
        "audit",
    ]
    .iter()
    .map(|r| r.to_string())
    .chain([
        format!("translation?q={upn}"),
        // A common term: its page with a total counted up to 1,000, the exact one after.
        "translation?q=an".to_string(),
        format!("report?q={upn}"),
        "logs?level=warning".to_string(),
    ])
    .collect();
    let shots = std::env::var_os("FERRY_UPDATE_SCREENSHOTS")
        .map(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots"));
    let Some(walked) = ferry_bench::browser::walk_console(
        &format!("{}/", api.url),
        &api.token,
        &routes,
        renders.min(10),
        shots.as_deref().map(|d| (d, "-1m")),
    )
    .await
    else {
        println!("\nChromium walk skipped: chromium / chromedriver not installed");
        return;
    };
    println!(
        "\nIn Chromium (hash change to page drawn, requests included):\n\n| page | first render | median | max |\n|---|---|---|---|"
    );
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    for w in &walked {
        println!(
            "| #/{} | {:.1} ms | {:.1} ms | {:.1} ms |",
            w.route,
            ms(w.first),
            ms(w.median),
            ms(w.max)
        );
    }
}

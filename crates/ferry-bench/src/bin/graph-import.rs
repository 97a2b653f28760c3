//! ferry's Graph import against the local Graph simulator, in a separate process so that the
//! client's and the server's CPU time are measured apart.
//!
//! `graph-import [USERS]` (default 200,000): imports the users at 999 per page and prints
//! objects/s and CPU per 1,000 objects for ferry (the client) and for the simulator (the server);
//! then imports them again with every 10th request answered 429 (`Retry-After: 0.1`) and prints
//! how many retries it took. The child mode `graph-import --serve N THROTTLE_EVERY` runs the
//! simulator.

use ferry_bench::{cpu_seconds, process_cpu_seconds};
use ferry_core::ObjectKind;
use ferry_core::config::{Cloud, GraphDirectory, Secret};
use ferry_core::duration::HumanDuration;
use ferry_directory::Connector;
use ferry_directory::graph::GraphConnector;
use ferry_graph_sim::{GraphSim, SimOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn serve(users: u64, throttle_every: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = GraphSim::start(
            SimOptions {
                throttle_every,
                retry_after: "0.1".into(),
                ..SimOptions::default()
            },
            "127.0.0.1:0",
        )
        .await
        .expect("listen");
        sim.populate(0xbe, users, 0, 0);
        println!("{}", sim.url());
        // Serve until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
    });
}

fn start(users: u64, throttle_every: u64) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().expect("self"))
        .args(["--serve", &users.to_string(), &throttle_every.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("simulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("simulator address");
    (child, line.trim().to_string())
}

fn run(users: u64, throttle_every: u64) -> (usize, f64, f64, f64, u64) {
    let (mut child, url) = start(users, throttle_every);
    let pid = child.id().to_string();
    let cfg = GraphDirectory {
        name: "bench".into(),
        tenant_id: SimOptions::default().tenant,
        client_id: SimOptions::default().client_id,
        client_secret: None,
        client_secret_file: None,
        certificate_file: None,
        private_key_file: None,
        cloud: Cloud::Global,
        object_types: vec![ObjectKind::User],
        login_url: Some(url.clone()),
        graph_url: Some(url),
        page_size: 999,
        max_attempts: 8,
        full_import_every: HumanDuration(Duration::from_secs(86_400)),
        timeout: HumanDuration(Duration::from_secs(120)),
        upn_domain: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let conn = GraphConnector::new(cfg, Path::new("."), Some(Secret::new("sim-secret")));
    let (c0, s0) = (cpu_seconds(), process_cpu_seconds(&pid));
    let t = Instant::now();
    let imp = rt
        .block_on(conn.import(&[ObjectKind::User], None))
        .expect("import");
    let wall = t.elapsed().as_secs_f64();
    let (client, server) = (cpu_seconds() - c0, process_cpu_seconds(&pid) - s0);
    drop(child.stdin.take());
    let _ = child.wait();
    (imp.objects.len(), wall, client, server, conn.retries())
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("--serve") {
        let n = a.get(2).and_then(|v| v.parse().ok()).unwrap_or(200_000);
        let every = a.get(3).and_then(|v| v.parse().ok()).unwrap_or(0);
        serve(n, every);
        return;
    }
    let users: u64 = a.get(1).and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let (n, wall, client, server, _) = run(users, 0);
    assert_eq!(n as u64, users, "every user imported");
    let per = |cpu: f64| cpu / n as f64 * 1000.0 * 1000.0;
    println!(
        "graph import: {n} users at 999 per page in {wall:.2}s = {:.0} objects/s; CPU per 1,000 objects: ferry {:.2} ms, simulator {:.2} ms (client/server {:.2})",
        n as f64 / wall,
        per(client),
        per(server),
        client / server
    );
    let (n2, wall2, _, _, retries) = run(users, 10);
    assert_eq!(n2 as u64, users, "every user imported despite throttling");
    println!(
        "with every 10th request answered 429 (Retry-After: 0.1): {n2} users in {wall2:.2}s, {retries} retries"
    );
}

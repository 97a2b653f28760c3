//! Operators' overrides at scale: a bulk import of 10,000 overrides through the real server (HTTP
//! API, SQLite) against 200,000 + 200,000 users, the cycle that applies them next to one without,
//! and the plan's key resolution (`plan::resolve_keys`, one pass) against the per-override scan
//! it replaced, measured on the same objects.
//!
//! `cargo run --release -p ferry-bench --bin overrides [-- USERS OVERRIDES]`

use ferry_client::Client;
use ferry_client::wire::OverrideRequest;
use ferry_core::ObjectKind;
use ferry_core::model::DirObject;
use ferry_core::plan::resolve_keys;
use ferry_core::state::CycleStatus;
use ferry_demo as sample;
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let overrides: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(users, overrides));
}

/// The per-override scan `plan::apply_overrides` used before `resolve_keys`: every object
/// compared with one key.
fn scan(objects: &[DirObject], kind: ObjectKind, key: &str) -> Vec<u32> {
    let key = key.trim();
    let eq = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case(key));
    let by_id: Vec<u32> = objects
        .iter()
        .enumerate()
        .filter(|(_, o)| o.kind == kind && o.id == key)
        .map(|(i, _)| i as u32)
        .collect();
    if !by_id.is_empty() {
        return by_id;
    }
    objects
        .iter()
        .enumerate()
        .filter(|(_, o)| {
            o.kind == kind
                && (eq(o.upn.as_deref())
                    || eq(o.mail.as_deref())
                    || eq(o.sid.as_deref())
                    || eq(Some(&o.name)))
        })
        .map(|(i, _)| i as u32)
        .collect()
}

async fn run(users: usize, n: usize) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("ferry-bench-overrides-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    ferry_bench::write_user_snapshots(&dir, users, false);
    let cfg = format!(
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\nobject_types = [\"user\"]\n\
         [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\nobject_types = [\"user\"]\n\
         [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\nobject_types = [\"user\"]\n{}",
        sample::USER_RULES
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let server = Server::start(
        ServerOptions {
            settings: Settings::from_str(&cfg, "bench.toml", &dir).expect("config"),
            data_dir: dir.join("data"),
            database_url: None,
            admin_token: None,
            secret_key: None,
            scheduler: false,
            agent: None,
        },
        listener,
    )
    .await
    .expect("server");
    let client = Client::new(
        &format!("http://{}", server.addr),
        Some(server.admin_token.clone()),
    )
    .expect("client");
    let cycle = || async {
        let t = Instant::now();
        let started = client.run_waiting("users", 3600).await.expect("run");
        let cycle = started.cycle.expect("the cycle's record");
        assert_eq!(
            cycle.status().expect("status"),
            CycleStatus::Succeeded,
            "{cycle:?}"
        );
        (t.elapsed().as_secs_f64(), cycle.counts.unwrap_or_default())
    };
    let (first, _) = cycle().await;
    println!("setup: {users} + {users} users, first cycle {first:.2}s (not compared)");
    let (plain, _) = cycle().await;

    // The file: half pins of sources the rules left unmatched or ambiguous to padded targets (by
    // UPN on both sides), half excludes by mail; names with a comma, as AD holds them.
    let store = &server.state.store;
    let sources = store.load_objects("contoso").await.expect("sources");
    let targets = store.load_objects("fabrikam").await.expect("targets");
    let pads: Vec<&DirObject> = targets
        .iter()
        .filter(|o| o.name.starts_with("Pad "))
        .collect();
    let mut csv = String::from("source,target,exclude,reason\n");
    let mut rows = 0;
    for (i, s) in sources.iter().filter(|o| o.upn.is_some()).enumerate() {
        if rows == n {
            break;
        }
        if i % 2 == 0 && rows / 2 < pads.len() {
            csv.push_str(&format!(
                "{},{},,\"HR, ticket {i}\"\n",
                s.upn.as_deref().unwrap_or_default(),
                pads[rows / 2].upn.as_deref().unwrap_or_default()
            ));
        } else {
            csv.push_str(&format!(
                "{},,true,\"left, {i}\"\n",
                s.mail.as_deref().unwrap_or(&s.id)
            ));
        }
        rows += 1;
    }
    let t = Instant::now();
    let v = client
        .import_overrides("users", csv.clone().into_bytes())
        .await
        .expect("import");
    println!(
        "import of {rows} overrides ({} KB of CSV) through the API: {:.2}s ({} pins, {} excludes)",
        csv.len() / 1024,
        t.elapsed().as_secs_f64(),
        v.pins,
        v.excludes
    );
    // One pin as an operator enters it (the CLI's `ferry sync pin`): keys looked up, not loaded.
    let one = sources
        .iter()
        .rev()
        .find(|o| o.upn.is_some())
        .expect("a source user");
    let pad = pads.last().expect("a padded target");
    let t = Instant::now();
    let pin = OverrideRequest {
        source: one.upn.clone().unwrap_or_default(),
        target: pad.upn.clone(),
        exclude: false,
        reason: Some("bench".into()),
    };
    client.add_override("users", &pin).await.expect("pin");
    println!(
        "one pin by UPN through the API (two look-ups among {} stored objects): {:.0} ms",
        sources.len() + targets.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let (with, counts) = cycle().await;
    println!(
        "cycle without overrides: {plain:.2}s; with {rows}: {with:.2}s ({} excluded, {} override errors)",
        counts.excluded, counts.errors
    );

    // Resolution alone: every key of the file, one pass, against the old scan on a sample.
    let keys: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or_default().to_string())
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let t = Instant::now();
    let found = resolve_keys(&sources, &[ObjectKind::User], &refs);
    let one_pass = t.elapsed().as_secs_f64();
    assert!(
        found.iter().all(|f| f.len() == 1),
        "every key names one user"
    );
    let sample_n = 100.min(refs.len());
    let t = Instant::now();
    for k in &refs[..sample_n] {
        std::hint::black_box(scan(&sources, ObjectKind::User, k));
    }
    let per_key = t.elapsed().as_secs_f64() / sample_n as f64;
    println!(
        "resolving {} keys among {} users: one pass {:.3}s; per-override scan {:.2} ms a key, {:.1}s for all (from {sample_n} keys)",
        refs.len(),
        sources.len(),
        one_pass,
        per_key * 1e3,
        per_key * refs.len() as f64
    );
    server.stop().await.expect("stop");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

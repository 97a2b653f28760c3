//! Import + match + persist for 1,000,000 source and 1,000,000 target users from file directories,
//! through the real cycle engine on SQLite; then the single object report's look-up, the match stage
//! alone, and a no-change cycle.
//!
//! The parent process generates the two snapshots, then runs itself as a child that only reads them,
//! so that the peak memory reported is the cycle's, not the generator's.
//!
//! `cargo run --release -p ferry-bench --bin sync-1m [-- USERS]`

use ferry_bench::{cpu_seconds, peak_rss_mib};
use ferry_demo as sample;
use ferry_server::engine::{Engine, Trigger};
use ferry_server::settings::Settings;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("FERRY_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--run") {
        let dir = PathBuf::from(&args[2]);
        let expected: u64 = args[3].parse().expect("expected matches");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(&dir, expected));
        return;
    }
    let users: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("ferry-bench-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let expected = generate(&dir, users);
    // Flush the generated files to disk first, so the measured cycle does not pay for their writeback.
    let _ = std::process::Command::new("sync").status();
    let status = std::process::Command::new(std::env::current_exe().expect("self"))
        .args([
            "--run",
            dir.to_str().expect("utf-8 path"),
            &expected.to_string(),
        ])
        .status()
        .expect("run the measuring child");
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(status.code().unwrap_or(1));
}

/// Writes the snapshots; returns how many users the engine must match.
fn generate(dir: &Path, users: usize) -> u64 {
    let t = Instant::now();
    let expected = ferry_bench::write_user_snapshots(dir, users, false);
    let bytes: u64 = ["contoso.json", "fabrikam.json"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum();
    println!(
        "setup: {} source and {} target users, {:.0} MB of JSON, generated in {:.1}s (not timed below)",
        users,
        users,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    expected.users_matched
}

async fn run(dir: &Path, expected: u64) {
    let cfg = format!(
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\nobject_types = [\"user\"]\n\
         [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\nobject_types = [\"user\"]\n\
         [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\nobject_types = [\"user\"]\n{}",
        sample::USER_RULES
    );
    let settings = ferry_server::settings::Live::new(
        Settings::from_str(&cfg, "bench.toml", dir).expect("config"),
        Arc::new(ferry_server::vault::Vault::new([0; 32], "bench")),
    );
    let store: Arc<dyn ferry_store::Store> =
        Arc::new(ferry_store::sqlite::SqliteStore::open(&dir.join("ferry.db")).expect("store"));
    let engine = Arc::new(Engine::new(
        Arc::clone(&store),
        Arc::clone(&settings),
        "bench".into(),
        dir.to_path_buf(),
    ));

    // 1. The whole first cycle: import both files, match, commit objects + translation table.
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let id = engine.start("users", Trigger::Manual).await.expect("start");
    let c = engine
        .wait(id, Duration::from_secs(3600))
        .await
        .expect("wait")
        .expect("cycle");
    let first = t.elapsed().as_secs_f64();
    let cpu_first = cpu_seconds() - cpu0;
    assert_eq!(c.status, "succeeded", "{c:?}");
    let counts = c.counts.expect("counts");
    assert_eq!(
        counts.matched, expected,
        "the engine matched what the generator expects"
    );
    let translated = store
        .count_decisions(&ferry_store::DecisionQuery {
            status: Some(ferry_core::plan::Status::Matched),
            ..Default::default()
        })
        .await
        .expect("count");
    println!(
        "first cycle (import + match + persist, SQLite): {first:.2}s wall, {cpu_first:.2}s CPU; {} matched, {} unmatched, {} ambiguous; {translated} translation entries stored",
        counts.matched, counts.unmatched, counts.ambiguous
    );
    println!("peak RSS of the first cycle: {:.0} MiB", peak_rss_mib());

    // 2. A second cycle with nothing changed (steady state on a schedule).
    let t = Instant::now();
    let id = engine.start("users", Trigger::Manual).await.expect("start");
    let c = engine
        .wait(id, Duration::from_secs(3600))
        .await
        .expect("wait")
        .expect("cycle");
    assert_eq!(c.status, "succeeded");
    println!(
        "no-change cycle: {:.2}s (peak RSS so far {:.0} MiB)",
        t.elapsed().as_secs_f64(),
        peak_rss_mib()
    );

    // 3. The single object report's look-up over every stored object, by UPN, SID and a miss.
    let source =
        ferry_core::snapshot::parse_json(&std::fs::read(dir.join("contoso.json")).expect("read"))
            .expect("parse");
    let target =
        ferry_core::snapshot::parse_json(&std::fs::read(dir.join("fabrikam.json")).expect("read"))
            .expect("parse");
    let probe = &source[source.len() / 2];
    for (what, q) in [
        ("upn", probe.upn.clone().unwrap_or_default()),
        ("sid", probe.sid.clone().unwrap_or_default()),
        ("miss", "nobody@nowhere.test".to_string()),
    ] {
        let t = Instant::now();
        let found = store.find_objects(&q, 20).await.expect("find");
        println!(
            "object report look-up by {what} over {} stored objects: {:.0} ms, {} found",
            source.len() + target.len(),
            t.elapsed().as_secs_f64() * 1000.0,
            found.len()
        );
    }

    // 4. The match stage alone, on the same objects (best of 3).
    let current = settings.get();
    let profile = current.config.profile("users").expect("profile");
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let p = ferry_core::plan::build(profile, "fp", &source, &target);
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(p.counts.matched, expected);
    }
    println!(
        "match stage alone: {:.3}s for {} source objects = {:.0} objects/s (best of 3)",
        best,
        source.len(),
        source.len() as f64 / best
    );
}

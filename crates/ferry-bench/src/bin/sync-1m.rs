//! Import + match + persist for 1,000,000 source and 1,000,000 target users from file directories,
//! through the real cycle engine on SQLite (or, with `FERRY_BENCH_DATABASE_URL=postgres://…`, on
//! PostgreSQL, in a schema of its own, dropped at the end); then, on SQLite, how long its search
//! index takes to become whole after the cycle (searches checked against the scan meanwhile);
//! the translation searches and the single object report's look-up, the match stage alone, and a
//! no-change cycle. `FERRY_BENCH_KEEP_SCHEMA=1` keeps the PostgreSQL schema for inspection.
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
    if std::env::var("FERRY_BENCH_KEEP_DIR").as_deref() == Ok("1") {
        println!("kept {} (FERRY_BENCH_KEEP_DIR=1)", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
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
    let mut pg = None;
    let store: Arc<dyn ferry_store::Store> = match std::env::var("FERRY_BENCH_DATABASE_URL") {
        Ok(url) => {
            let (c, schema, with_schema) = ferry_bench::pg_schema(&url, "bench_sync").await;
            let store = ferry_store::postgres::PgStore::connect(&with_schema)
                .await
                .expect("store");
            pg = Some((c, schema));
            Arc::new(store)
        }
        Err(_) => {
            Arc::new(ferry_store::sqlite::SqliteStore::open(&dir.join("ferry.db")).expect("store"))
        }
    };
    let backend = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
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
        "first cycle (import + match + persist, {backend}): {first:.2}s wall, {cpu_first:.2}s CPU; {} matched, {} unmatched, {} ambiguous; {translated} translation entries stored",
        counts.matched, counts.unmatched, counts.ambiguous
    );
    println!("peak RSS of the first cycle: {:.0} MiB", peak_rss_mib());

    let source =
        ferry_core::snapshot::parse_json(&std::fs::read(dir.join("contoso.json")).expect("read"))
            .expect("parse");
    let target =
        ferry_core::snapshot::parse_json(&std::fs::read(dir.join("fabrikam.json")).expect("read"))
            .expect("parse");
    let probe = &source[source.len() / 2];
    let upn = probe.upn.clone().unwrap_or_default();
    let inner: String = upn.chars().skip(2).take(9).collect();

    // 1b. SQLite's search index, filled after the cycle: how long until whole, with a search
    // every 5 s meanwhile (the scan answers until the index is whole: the same rows).
    if pg.is_none() {
        let t = Instant::now();
        let indexer = {
            let store = Arc::clone(&store);
            tokio::spawn(
                async move { ferry_server::sync::search_index::run_until_whole(&*store).await },
            )
        };
        let mut checks = 0;
        let mut want = None;
        while !indexer.is_finished() {
            let q = ferry_store::DecisionQuery {
                search: Some(upn.clone()),
                ..Default::default()
            };
            let ts = Instant::now();
            let got: Vec<String> = store
                .decisions(&q)
                .await
                .expect("search")
                .into_iter()
                .map(|d| d.source_id)
                .collect();
            let ms = ts.elapsed().as_secs_f64() * 1000.0;
            assert!(
                got.contains(&probe.id),
                "a search while indexing finds the probe"
            );
            if want.is_none() {
                want = Some(got.clone());
            }
            assert_eq!(
                Some(&got),
                want.as_ref(),
                "the same rows while the index fills"
            );
            checks += 1;
            if checks <= 3 {
                println!(
                    "  search while the index fills: {ms:.0} ms, {} rows",
                    got.len()
                );
            }
            // Every 5 s: each of these scans takes a core for a second or more at 1M.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let done = indexer.await.expect("join").expect("index");
        println!(
            "search index whole {:.2}s after the first cycle ({} chunks, the longest {:.0} ms; {checks} searches meanwhile, each the same rows)",
            t.elapsed().as_secs_f64(),
            done.chunks,
            done.longest.as_secs_f64() * 1000.0
        );
    }
    for (what, term) in [
        ("whole UPN", upn.clone()),
        ("inside a value", inner.clone()),
    ] {
        // Every status (the probe may be one of the unmatched).
        let q = ferry_store::DecisionQuery {
            search: Some(term.clone()),
            limit: 50,
            ..Default::default()
        };
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..5 {
            let t = Instant::now();
            total = store.count_decisions(&q).await.expect("count");
            let rows = store.decisions(&q).await.expect("search");
            assert!(!rows.is_empty());
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let first = times[0];
        times.sort_by(f64::total_cmp);
        println!(
            "translation search, {what} ({term:?}, {total} found; count + first page of 50): first {first:.1} ms, median of 5 {:.1} ms",
            times[2]
        );
    }

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

    if pg.is_none() {
        let t = Instant::now();
        let done = ferry_server::sync::search_index::run_until_whole(&*store)
            .await
            .expect("index");
        println!(
            "search index whole again after the no-change cycle in {:.2}s ({} chunks, the longest {:.0} ms)",
            t.elapsed().as_secs_f64(),
            done.chunks,
            done.longest.as_secs_f64() * 1000.0
        );
    }

    // 3. The single object report's look-up over every stored object, by UPN, SID and a miss:
    // the scan of the objects' keys (`find_objects`), and the report's (`report_objects`: on
    // SQLite through the search index, the scan when that finds nothing).
    for (what, q) in [
        ("upn", upn.clone()),
        ("sid", probe.sid.clone().unwrap_or_default()),
        ("miss", "nobody@nowhere.test".to_string()),
    ] {
        let t = Instant::now();
        let found = store.find_objects(&q, 20).await.expect("find");
        let scan_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let (reported, _) = store.report_objects(&q, 20).await.expect("report");
        let report_ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(
            reported, found,
            "the report's look-up finds what the scan finds"
        );
        println!(
            "object report look-up by {what} over {} stored objects: find_objects {scan_ms:.0} ms, report_objects {report_ms:.1} ms, {} found",
            source.len() + target.len(),
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
    if let Some((c, schema)) = pg {
        if std::env::var("FERRY_BENCH_KEEP_SCHEMA").as_deref() == Ok("1") {
            println!("PostgreSQL schema {schema} kept (FERRY_BENCH_KEEP_SCHEMA=1)");
            return;
        }
        drop(engine);
        drop(store);
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop the bench schema");
    }
}

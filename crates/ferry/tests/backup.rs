//! `ferry backup` and `ferry restore` against a `ferry server` process: a backup taken while a
//! cycle rewrites the whole translation table holds the table before or after it, never a mixture;
//! restored into an empty directory, the server starts with its agents (which still reach it
//! through the certificate they pinned), its admin token and its stored credentials (opened with
//! the restored secret key). A killed backup leaves no file; a non-empty directory is refused.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
use common::*;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Smith, Ann's bind pässword \"=1\"";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_backup_during_a_cycle_restores_the_table_agents_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Large enough that the sync phase takes a while in a debug build.
    let s = ferry_demo::generate(40_000, false, 4);
    std::fs::write(
        d.join("contoso.json"),
        ferry_core::snapshot::render_json(&s.source),
    )
    .unwrap();
    std::fs::write(
        d.join("fabrikam.json"),
        ferry_core::snapshot::render_json(&s.target),
    )
    .unwrap();
    std::fs::write(
        d.join("ferry.toml"),
        format!(
            "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\nobject_types = [\"user\"]\n{}",
            ferry_demo::USER_RULES
        ),
    )
    .unwrap();
    let cfg = d.join("ferry.toml");
    let data = d.join("data");
    let args = |data: &Path| {
        vec![
            "--config".to_string(),
            cfg.to_str().unwrap().to_string(),
            "--data-dir".to_string(),
            data.to_str().unwrap().to_string(),
            "--no-scheduler".to_string(),
        ]
    };
    let start = |data: &Path| {
        let a = args(data);
        ServerProc::start(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let srv = start(&data);
    let token = admin_token(&data);
    let run = |url: &str, args: &[&str]| {
        let o = ferry(
            args,
            &[("FERRY_SERVER", url), ("FERRY_TOKEN", token.as_str())],
        );
        assert!(o.status.success(), "ferry {args:?}: {}", text(&o));
        o.stdout
    };
    let export = |url: &str| run(url, &["translation", "export", "--format", "csv"]);
    run(&srv.url, &["sync", "run", "users", "--wait"]);
    let before = export(&srv.url);

    // A stored credential (sealed under secret.key) and an enrolled agent.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let corp = json!({"name": "corp", "kind": "ldap", "url": "ldap://127.0.0.1:1", "base_dn": "dc=contoso,dc=test",
        "bind_dn": "cn=admin,dc=contoso,dc=test", "bind_password": PASSWORD});
    rt.block_on(async {
        let r = reqwest::Client::new()
            .put(format!("{}/api/v1/directories/corp", srv.url))
            .bearer_auth(&token)
            .json(&corp)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    let ep: Value =
        serde_json::from_slice(&run(&srv.url, &["--json", "agents", "endpoint"])).unwrap();
    let fingerprint = ep["certificate_sha256"].as_str().unwrap().to_string();
    let out = String::from_utf8(run(&srv.url, &["psk", "create", "wave-1"])).unwrap();
    let psk = out.lines().last().unwrap().trim().to_string();
    let pem = std::fs::read(data.join("agent-tls/cert.pem")).unwrap();
    // The agent trusts exactly the certificate it was given, as a pinned agent does.
    let agent = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let enrolled: Value = rt.block_on(async {
        agent.post(format!("{}/v1/enroll", ep["url"].as_str().unwrap()))
            .json(&json!({"protocol": 1, "psk": psk, "device": {"device_id": "m-1", "hostname": "PC-0001", "os": "linux", "agent_version": "0.1.0"},
                "profiles": [{"name": "someone", "uid": 4000, "home": "/home/someone"}]}))
            .send().await.unwrap().json().await.unwrap()
    });
    let node_key = enrolled["node_key"].as_str().unwrap().to_string();

    // Every source user changes domain: the next cycle rewrites the whole table.
    let changed = std::fs::read_to_string(d.join("contoso.json"))
        .unwrap()
        .replace("@contoso.test", "@contoso.example");
    std::fs::write(d.join("contoso.json"), changed).unwrap();
    let o = run(&srv.url, &["sync", "run", "users", "--json"]);
    let id = serde_json::from_slice::<Value>(&o).unwrap()["cycle_id"]
        .as_i64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c: Value = serde_json::from_slice(&run(
            &srv.url,
            &["sync", "cycles", "--json", "--limit", "1"],
        ))
        .unwrap();
        if c[0]["id"] == id && c[0]["phase"] != "import" {
            break;
        }
        assert!(Instant::now() < deadline, "the cycle never left its import");
        std::thread::sleep(Duration::from_millis(20));
    }
    let file = d.join("during-cycle.ferry-backup");
    let data_arg = data.to_str().unwrap();
    let o = ferry(
        &["backup", file.to_str().unwrap(), "--data-dir", data_arg],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let c: Value = serde_json::from_slice(&run(
        &srv.url,
        &["sync", "cycles", "--json", "--limit", "1"],
    ))
    .unwrap();
    eprintln!("after the backup the cycle is {}", c[0]["status"]);
    let said = text(&o);
    for f in [
        "secret.key",
        "admin-token",
        "agent-tls/cert.pem",
        "agent-tls/key.pem",
    ] {
        assert!(said.contains(f), "the backup does not name {f}: {said}");
    }
    assert_eq!(mode(&file), 0o600, "the backup is readable by others");
    let o = ferry(
        &["backup", file.to_str().unwrap(), "--data-dir", data_arg],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("--force"),
        "an existing backup was overwritten: {}",
        text(&o)
    );

    // Killed at any moment, a backup leaves nothing at its name.
    for (i, ms) in kill_points(3, 400).into_iter().enumerate() {
        let killed = d.join(format!("killed-{i}.ferry-backup"));
        let mut child = std::process::Command::new(FERRY)
            .args(["backup", killed.to_str().unwrap(), "--data-dir", data_arg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            eprintln!("backup {i} finished within {ms} ms, before its kill");
            assert!(killed.is_file());
        } else {
            assert!(
                !killed.exists(),
                "a backup killed after {ms} ms left {}",
                killed.display()
            );
        }
    }

    // What the killed ones left under temporary names (the key material too) goes with the next.
    for i in 0..3 {
        let again = d.join(format!("killed-{i}.ferry-backup"));
        let o = ferry(
            &[
                "backup",
                again.to_str().unwrap(),
                "--data-dir",
                data_arg,
                "--force",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(left.is_empty(), "partial backups left: {left:?}");

    // The cycle ends; the server stops.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let c: Value = serde_json::from_slice(&run(
            &srv.url,
            &["sync", "cycles", "--json", "--limit", "1"],
        ))
        .unwrap();
        if c[0]["id"] == id && c[0]["status"] != "running" {
            assert_eq!(c[0]["status"], "succeeded", "{c}");
            break;
        }
        assert!(Instant::now() < deadline, "the cycle never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = export(&srv.url);
    assert_ne!(before, after);
    drop(srv);

    // A data directory in use is never restored over.
    let o = ferry(
        &["restore", file.to_str().unwrap(), "--data-dir", data_arg],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("not empty"),
        "{}",
        text(&o)
    );
    let restored = d.join("restored");
    std::fs::create_dir(&restored).unwrap(); // empty: accepted
    let o = ferry(
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("integrity checked"), "{}", text(&o));
    assert_eq!(mode(&restored), 0o700);
    for f in [
        "ferry.db",
        "secret.key",
        "admin-token",
        "agent-tls/key.pem",
        "server-id",
    ] {
        assert_eq!(mode(&restored.join(f)), 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read(restored.join("secret.key")).unwrap(),
        std::fs::read(data.join("secret.key")).unwrap()
    );

    // The restored server: the old token, the table of one side of the cycle, the agent.
    let srv = start(&restored);
    let table = export(&srv.url);
    assert!(
        table == before || table == after,
        "the backup holds a mixture of two cycles' tables"
    );
    let cycles: Value = serde_json::from_slice(&run(
        &srv.url,
        &["sync", "cycles", "--json", "--limit", "5"],
    ))
    .unwrap();
    let cycle = cycles
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap();
    assert!(
        cycle["status"] == "aborted" || cycle["status"] == "succeeded",
        "the backed-up cycle did not end cleanly after the restore: {cycle}"
    );
    eprintln!(
        "the backup holds the {} table; its cycle is {} after the restore",
        if table == before { "old" } else { "new" },
        cycle["status"]
    );
    let list = String::from_utf8(run(&srv.url, &["agents", "list"])).unwrap();
    assert!(list.contains("PC-0001"), "{list}");
    let ep: Value =
        serde_json::from_slice(&run(&srv.url, &["--json", "agents", "endpoint"])).unwrap();
    assert_eq!(ep["certificate_sha256"], fingerprint.as_str());
    let agent_url = ep["url"].as_str().unwrap().to_string();
    let status = rt.block_on(async {
        agent
            .post(format!("{agent_url}/v1/checkin"))
            .bearer_auth(&node_key)
            .json(&json!({"protocol": 1, "state": "idle", "agent_version": "0.1.0", "profiles": null}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(
        status, 200,
        "the agent's pinned certificate or node key no longer works"
    );
    // The table is whole: the next cycle runs on it.
    run(&srv.url, &["sync", "run", "users", "--wait"]);
    assert_eq!(export(&srv.url), after);
    drop(srv);

    // The stored credential opens with the restored key.
    rt.block_on(async {
        let s = ferry_server::Server::start(
            ferry_server::ServerOptions {
                settings: ferry_server::settings::Settings::load(&cfg).unwrap(),
                data_dir: restored.clone(),
                database_url: None,
                admin_token: None,
                secret_key: None,
                scheduler: false,
                agent: None,
            },
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .unwrap();
        let st = &s.state;
        let dirs = st.settings.stored(&*st.store).await.unwrap().dirs;
        let corp = dirs.iter().find(|d| d.name() == "corp").unwrap();
        let ferry_core::config::DirectoryConfig::Ldap(l) = corp else {
            panic!("{corp:?}")
        };
        assert_eq!(l.bind_password.as_ref().unwrap().expose(), PASSWORD);
        s.stop().await.unwrap();
    });
}

#[test]
fn a_postgres_server_is_told_to_use_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let o = ferry(
        &[
            "backup",
            dir.path().join("b").to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--database-url",
            "postgres://ferry@127.0.0.1/ferry",
        ],
        &[],
    );
    assert!(!o.status.success());
    let said = text(&o);
    assert!(
        said.contains("pg_dump") && said.contains("secret.key") && said.contains("agent-tls/"),
        "{said}"
    );
    assert!(!dir.path().join("b").exists());
}

/// Would catch: a backup written into a directory others may write (/tmp, a shared backup
/// folder) beside SQLite's own files of the partial backup: SQLite opens a `-wal` it finds beside
/// a database and replays its pages, so a local user who plants one (the partial's name is
/// `.FILE.partial-PID`, visible the moment it is made) makes the backup hold their database
/// (their operators and tokens) beside the real `secret.key`, admin token and agent key, and a
/// restore of it gives them the server. Nothing beside the partial may be read into it.
#[test]
fn review_a_log_planted_beside_a_partial_backup_is_not_read_into_it() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir(&data).unwrap();
    {
        let mut c = rusqlite::Connection::open(data.join("ferry.db")).unwrap();
        c.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        // Enough rows that the copy takes a moment.
        let tx = c.transaction().unwrap();
        for i in 0..20_000 {
            tx.execute("INSERT INTO t VALUES (?1)", [format!("kept {i:>40}")])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    std::fs::write(data.join("secret.key"), "KEY\n").unwrap();
    // The attacker's database, as the write-ahead log SQLite would replay.
    let evil_dir = tempfile::tempdir().unwrap();
    let evil = {
        let c = rusqlite::Connection::open(evil_dir.path().join("evil.db")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
             CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('evil');",
        )
        .unwrap();
        let wal = std::fs::read(evil_dir.path().join("evil.db-wal")).unwrap();
        drop(c);
        wal
    };
    let shared = d.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let out = shared.join("ferry.bak");
    let mut child = std::process::Command::new(FERRY)
        .args([
            "backup",
            out.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let wal = shared.join(format!(".ferry.bak.partial-{}-wal", child.id()));
    let staged = shared.join("staged");
    // Planted, and again whenever SQLite removes it, until the backup ends.
    while child.try_wait().unwrap().is_none() {
        if !wal.exists() {
            std::fs::write(&staged, &evil).unwrap();
            std::fs::rename(&staged, &wal).unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let c = rusqlite::Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let evil_rows: i64 = c
        .query_row("SELECT count(*) FROM t WHERE v = 'evil'", [], |r| r.get(0))
        .unwrap();
    let kept: i64 = c
        .query_row("SELECT count(*) FROM t WHERE v LIKE 'kept%'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        (kept, evil_rows),
        (20_000, 0),
        "the backup holds the planted log's database"
    );
}

//! Device migration from the command line against a `ferry server` process: pre-shared keys, the
//! agent endpoint (an agent enrolling over TLS), runbooks, batches and their rules, the what-if.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
use common::*;
use serde_json::{Value, json};

#[test]
fn psk_runbook_batch_agents_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    sample_config(dir.path(), 40, 3, "");
    let data = dir.path().join("data");
    let srv = ServerProc::start(
        &[
            "--config",
            dir.path().join("ferry.toml").to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--agent-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let env = [
        ("FERRY_SERVER", srv.url.as_str()),
        ("FERRY_TOKEN", token.as_str()),
    ];
    let run = |args: &[&str]| {
        let o = ferry(args, &env);
        assert!(o.status.success(), "ferry {args:?}: {}", text(&o));
        text(&o)
    };
    let fail = |args: &[&str]| {
        let o = ferry(args, &env);
        assert!(
            !o.status.success(),
            "ferry {args:?} should fail: {}",
            text(&o)
        );
        text(&o)
    };

    // The endpoint and its fingerprint, printed by the server and given by the CLI.
    let ep: Value = serde_json::from_str(&run(&["--json", "agents", "endpoint"])).unwrap();
    let fp = ep["certificate_sha256"].as_str().unwrap().to_string();
    assert!(
        srv.log
            .lock()
            .unwrap()
            .contains(&format!("certificate SHA-256 {fp}"))
    );

    let out = run(&["psk", "create", "wave-1"]);
    let key = out.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("psk_"), "{out}");

    // An agent enrolls over TLS, trusting exactly the server's certificate.
    let pem = std::fs::read(data.join("agent-tls/cert.pem")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let agent_url = ep["url"].as_str().unwrap().to_string();
    let enrolled: Value = rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap();
        c.post(format!("{agent_url}/v1/enroll"))
            .json(&json!({"protocol": 1, "psk": key, "device": {"device_id": "m-1", "hostname": "PC-0001", "os": "linux", "agent_version": "0.1.0"},
                "profiles": [{"name": "someone", "uid": 4000, "home": "/home/someone"}]}))
            .send().await.unwrap().json().await.unwrap()
    });
    assert!(enrolled["node_key"].is_string(), "{enrolled}");
    let list = run(&["agents", "list"]);
    assert!(
        list.contains("PC-0001") && list.contains("enrolled"),
        "{list}"
    );
    let found = run(&["agents", "list", "--search", "pc-00", "--state", "enrolled"]);
    assert!(found.contains("PC-0001"), "{found}");
    let none = run(&["agents", "list", "--search", "no-such-host"]);
    assert!(!none.contains("PC-0001"), "{none}");

    // Runbooks and batches from files; errors name the field or the missing prerequisite.
    let write = |name: &str, v: Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let pre = write(
        "pre.json",
        json!({"name": "Pre-Req", "source_directories": ["contoso"], "target_directories": ["fabrikam"], "app_reconfiguration": {"onedrive_cloud_only": true}}),
    );
    let main = write(
        "main.json",
        json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"], "prerequisites": ["Pre-Req"],
        "permission_updates": {"mode": "add", "paths": ["/home"]}}),
    );
    let bad = write(
        "bad.json",
        json!({"name": "Bad", "source_directories": ["contoso"], "target_directories": ["fabrikam"], "permission_updates": {"mode": "add", "paths": ["home"]}}),
    );
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"name\": \"x\",\n  oops}").unwrap();
    run(&["runbook", "put", &pre]);
    run(&["runbook", "put", &main]);
    // A server's runbook renders by name for Windows.
    let ps = run(&["runbook", "render", "Main", "--platform", "windows"]);
    assert!(
        ps.contains("Invoke-Step 'repermission'") && ps.contains("$paths = @('/home')"),
        "{ps}"
    );
    assert!(
        fail(&["runbook", "render", "Nope", "--platform", "windows"])
            .contains("no runbook file or server runbook `Nope`")
    );
    assert!(fail(&["runbook", "put", &bad]).contains("permission_updates.paths[0]"));
    assert!(fail(&["runbook", "put", broken.to_str().unwrap()]).contains("line 2"));
    let batch = write(
        "batch.json",
        json!({"name": "Pilot", "source_directory": "contoso", "target_directory": "fabrikam", "runbooks": ["Main"],
        "enforced_after": "2031-01-15T20:00", "time_zone": "Europe/London"}),
    );
    assert!(fail(&["batch", "put", &batch]).contains("`Pre-Req`"));
    let out = run(&["batch", "put", &batch, "--add-prerequisites"]);
    assert!(
        out.contains("added prerequisite runbook `Pre-Req`"),
        "{out}"
    );
    run(&["batch", "add", "Pilot", "PC-0001"]);
    let w = run(&["batch", "whatif", "Pilot"]);
    assert!(
        w.contains("no target: someone") && w.contains("make OneDrive files cloud-only"),
        "{w}"
    );
    let p = run(&["batch", "progress", "Pilot"]);
    assert!(p.contains("1 computer(s)"), "{p}");
    run(&["psk", "retire", "wave-1"]);
    assert!(run(&["psk", "list"]).contains("retired"));
    assert!(fail(&["runbook", "delete", "Pre-Req"]).contains("prerequisite"));
}

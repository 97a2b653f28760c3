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
    let srv = ServerProc::on(
        &dir.path().join("ferry.toml"),
        &data,
        &["--agent-listen", "127.0.0.1:0"],
        &[],
    );
    let token = admin_token(&data);
    let env = srv.cli_env(&token);
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
    // Paging on: a full page says how to ask the next (by id, `--after`); an offset past
    // 10,000 (an `OFFSET` scan) is refused with the way on.
    let one = run(&["agents", "list", "--limit", "1"]);
    let id = enrolled["agent_id"].to_string();
    assert!(
        one.contains(&format!("the next page is --after {id} ")),
        "{one}"
    );
    let after = run(&["agents", "list", "--after", &id]);
    assert!(
        !after.contains("PC-0001") && after.contains("HOSTNAME"),
        "{after}"
    );
    let deep = fail(&["agents", "list", "--offset", "10001"]);
    assert!(
        deep.contains("`offset`") && deep.contains("`after`"),
        "{deep}"
    );

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

/// `[[runbook]]` and `[[batch]]` of ferry.toml: checked by `ferry config check` with the key and
/// line, served to the batch's agent like any batch, read-only through the API and CLI (a halt's
/// resume is still the operator's), and a runbook named but defined nowhere stops the server.
#[test]
fn runbooks_and_batches_as_code() {
    let dir = tempfile::tempdir().unwrap();
    sample_config(dir.path(), 40, 3, "");
    let cfg = dir.path().join("ferry.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    let devices = "\n[[runbook]]\nname = \"Pre-Req\"\nsource_directories = [\"contoso\"]\ntarget_directories = [\"fabrikam\"]\n\
        [runbook.app_reconfiguration]\nonedrive_cloud_only = true\n\n\
        [[runbook]]\nname = \"Main\"\nsource_directories = [\"contoso\"]\ntarget_directories = [\"fabrikam\"]\nprerequisites = [\"Pre-Req\"]\n\
        [runbook.permission_updates]\nmode = \"add\"\npaths = [\"/home\"]\n\n\
        [[batch]]\nname = \"Pilot\"\nsource_directory = \"contoso\"\ntarget_directory = \"fabrikam\"\nruns = [\"Pre-Req\", \"Main\"]\n\
        enforced_after = \"2020-01-15T20:00\"\ntime_zone = \"Europe/London\"\nmax_concurrent = 5\ncomputers = [\"PC-0001\"]\n";
    let check = |toml: &str| {
        std::fs::write(&cfg, format!("{base}{toml}")).unwrap();
        let o = ferry(&["config", "check", cfg.to_str().unwrap()], &[]);
        (o.status.success(), text(&o))
    };
    let line_of = |toml: &str, needle: &str| {
        let all = format!("{base}{toml}");
        all[..all.find(needle).unwrap()].matches('\n').count() + 1
    };
    // An unknown key, named with its line.
    let (ok, out) = check(devices);
    assert!(!ok, "{out}");
    assert!(
        out.contains("batch[0]")
            && out.contains("unknown field `runs`")
            && out.contains(&format!("line {}", line_of(devices, "runs ="))),
        "{out}"
    );
    // The API's rules, with the key and line: a prerequisite left out of the batch.
    let lacking = devices.replace("runs = [\"Pre-Req\", \"Main\"]", "runbooks = [\"Main\"]");
    let (ok, out) = check(&lacking);
    assert!(!ok, "{out}");
    assert!(
        out.contains("batch[0].runbooks")
            && out.contains("needs its prerequisite runbook `Pre-Req`")
            && out.contains(&format!(
                "line {}",
                line_of(&lacking, "runbooks = [\"Main\"]")
            )),
        "{out}"
    );
    let bad_path = devices
        .replace("runs =", "runbooks =")
        .replace("paths = [\"/home\"]", "paths = [\"home\"]");
    let (ok, out) = check(&bad_path);
    assert!(
        !ok && out.contains("runbook[1].permission_updates.paths[0]")
            && out.contains(&format!(
                "line {}",
                line_of(&bad_path, "paths = [\"home\"]")
            )),
        "{out}"
    );
    // A runbook the file does not define may be the database's: a note, checked at start.
    let external = devices.replace("runs =", "runbooks =").replace(
        "\"Pre-Req\", \"Main\"]",
        "\"Pre-Req\", \"Main\", \"Console-Made\"]",
    );
    let (ok, out) = check(&external);
    assert!(ok, "{out}");
    assert!(
        out.contains("batch[0].runbooks[2]: runbook `Console-Made` is not in this file"),
        "{out}"
    );
    let data = dir.path().join("data");
    let args = [
        "server",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--agent-listen",
        "off",
    ];
    let o = ferry(&args, &[]);
    assert!(
        !o.status.success()
            && text(&o).contains("batch[0].runbooks[2]: there is no runbook named `Console-Made`"),
        "{}",
        text(&o)
    );

    let good = devices.replace("runs =", "runbooks =");
    let (ok, out) = check(&good);
    assert!(ok, "{out}");
    assert!(
        out.contains("batch Pilot: Pre-Req → Main on 1 computer(s)"),
        "{out}"
    );
    let srv = ServerProc::on(&cfg, &data, &[], &[]);
    let token = admin_token(&data);
    let env = srv.cli_env(&token);
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
    let list = run(&["batch", "list"]);
    assert!(
        list.contains("Pilot") && list.contains("(in ferry.toml)"),
        "{list}"
    );
    assert!(run(&["runbook", "list"]).contains("(in ferry.toml)"));

    // The agent of the batch's computer gets its migration (enforced in the past).
    let ep: Value = serde_json::from_str(&run(&["--json", "agents", "endpoint"])).unwrap();
    let key = run(&["psk", "create", "wave-1"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let pem = std::fs::read(data.join("agent-tls/cert.pem")).unwrap();
    let agent_url = ep["url"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let order: Value = rt.block_on(async {
        let enrolled: Value = c.post(format!("{agent_url}/v1/enroll"))
            .json(&json!({"protocol": 1, "psk": key, "device": {"device_id": "m-1", "hostname": "PC-0001", "os": "linux", "agent_version": "0.1.0"},
                "profiles": [{"name": "someone", "uid": 4000, "home": "/home/someone"}]}))
            .send().await.unwrap().json().await.unwrap();
        let node_key = enrolled["node_key"].as_str().unwrap().to_string();
        c.post(format!("{agent_url}/v1/checkin"))
            .bearer_auth(node_key)
            .json(&json!({"protocol": 1, "state": "idle", "agent_version": "0.1.0", "profiles": null}))
            .send().await.unwrap().json().await.unwrap()
    });
    assert_eq!(order["assignment"]["batch"], "Pilot", "{order}");
    assert_eq!(
        order["assignment"]["runbooks"],
        json!(["Pre-Req", "Main"]),
        "{order}"
    );

    // Read-only: every change through the API says where to make it.
    let main = dir.path().join("main.json");
    std::fs::write(
        &main,
        json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"]}).to_string(),
    )
    .unwrap();
    let batch = dir.path().join("batch.json");
    std::fs::write(
        &batch,
        json!({"name": "Pilot", "source_directory": "contoso", "target_directory": "fabrikam", "runbooks": ["Main"], "enforced_after": "2031-01-15T20:00"}).to_string(),
    )
    .unwrap();
    for args in [
        &["runbook", "put", main.to_str().unwrap()][..],
        &["runbook", "delete", "Pre-Req"][..],
        &["batch", "put", batch.to_str().unwrap()][..],
        &["batch", "delete", "Pilot"][..],
        &["batch", "add", "Pilot", "PC-0002"][..],
        &["batch", "remove", "Pilot", "PC-0001"][..],
    ] {
        let out = fail(args);
        assert!(
            out.contains("is defined in") && out.contains("ferry.toml; change it there"),
            "ferry {args:?}: {out}"
        );
    }
    // Its wave is runtime state: the operator's resume is not refused as configuration.
    let out = fail(&["batch", "resume", "Pilot"]);
    assert!(out.contains("is not halted"), "{out}");
    assert!(run(&["batch", "list"]).contains("computers 1"));

    // A computer the file puts in its batch while the database has it in another: no start.
    rt.block_on(async {
        let r = c.post(format!("{agent_url}/v1/enroll"))
            .json(&json!({"protocol": 1, "psk": run(&["psk", "create", "wave-2"]).lines().last().unwrap().trim(),
                "device": {"device_id": "m-2", "hostname": "PC-0002", "os": "linux", "agent_version": "0.1.0"}}))
            .send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
    let console_batch = dir.path().join("console-batch.json");
    std::fs::write(
        &console_batch,
        json!({"name": "Console", "source_directory": "contoso", "target_directory": "fabrikam", "runbooks": ["Pre-Req"], "enforced_after": "2031-01-15T20:00"}).to_string(),
    )
    .unwrap();
    run(&["batch", "put", console_batch.to_str().unwrap()]);
    run(&["batch", "add", "Console", "PC-0002"]);
    drop(srv);
    std::fs::write(
        &cfg,
        format!(
            "{base}{}",
            good.replace("[\"PC-0001\"]", "[\"PC-0001\", \"PC-0002\"]")
        ),
    )
    .unwrap();
    let o = ferry(&args, &[]);
    assert!(
        !o.status.success()
            && text(&o).contains("batch[0].computers: a computer is in one batch at most, and PC-0002 is in batch `Console`"),
        "{}",
        text(&o)
    );
}

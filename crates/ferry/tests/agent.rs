//! The migration agent end to end, as processes: a `ferry server`, and `ferry agent run` on this
//! machine migrating a device tree of real files (owners, access and default ACLs, symlinks in
//! and out, a hard link, a fifo, a setuid file, names with spaces and newlines). The agent is
//! killed mid-run, the server goes away, the agent finishes without it, and when the server is
//! back it has every event and the whole log. Rollback brings back every file exactly.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
use common::*;
use serde_json::{Value, json};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write_config(dir: &Path) {
    let s = ferry_core::sample::generate(60, true, 5);
    std::fs::write(
        dir.join("contoso.json"),
        ferry_core::snapshot::render_json(&s.source),
    )
    .unwrap();
    std::fs::write(
        dir.join("fabrikam.json"),
        ferry_core::snapshot::render_json(&s.target),
    )
    .unwrap();
    std::fs::write(
        dir.join("ferry.toml"),
        format!(
            "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{}",
            ferry_core::sample::QUICKSTART_RULES
        ),
    )
    .unwrap();
}

/// (login, source uid, source gid, target uid, target gid)
type Pair = (String, u32, u32, u32, u32);

fn setfacl(args: &[&str], p: &Path) {
    let o = Command::new("setfacl").args(args).arg(p).output().unwrap();
    assert!(o.status.success(), "setfacl {args:?}: {o:?}");
}

fn build_device(root: &Path, users: &[Pair], outside: &Path) {
    let (a, b) = (&users[0], &users[1]);
    for (i, (login, uid, gid, ..)) in users.iter().enumerate() {
        let other = &users[(i + 1) % users.len()];
        let h = root.join("home").join(login);
        std::fs::create_dir_all(h.join("docs/deep dir")).unwrap();
        std::fs::write(h.join("docs/report.txt"), "r").unwrap();
        std::fs::write(h.join("docs/deep dir/a b.txt"), "ab").unwrap();
        std::fs::write(h.join("docs/new\nline.txt"), "nl").unwrap();
        std::fs::hard_link(h.join("docs/report.txt"), h.join("report-link.txt")).unwrap();
        symlink("docs/report.txt", h.join("inside-link")).unwrap();
        symlink(outside, h.join("outside-link")).unwrap();
        assert!(
            Command::new("mkfifo")
                .arg(h.join("pipe"))
                .status()
                .unwrap()
                .success()
        );
        std::fs::write(h.join("tool"), "#!/bin/sh\n").unwrap();
        for e in walk(&h) {
            std::os::unix::fs::lchown(&e, Some(*uid), Some(*gid)).unwrap();
        }
        std::fs::set_permissions(h.join("tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        setfacl(
            &["-m", &format!("u:{}:r,g:{}:rw", other.1, other.2)],
            &h.join("docs/report.txt"),
        );
        setfacl(
            &["-d", "-m", &format!("u:{}:rwx,u:{uid}:rwx", other.1)],
            &h.join("docs"),
        );
    }
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("team.txt"), "t").unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(a.2)).unwrap();
    setfacl(
        &[
            "-R",
            "-m",
            &format!("u:{}:rwx,u:{}:rx,g:{}:rwx", a.1, b.1, a.2),
        ],
        &shared,
    );
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if std::fs::symlink_metadata(&out[i]).unwrap().is_dir() {
            let p = out[i].clone();
            out.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        i += 1;
    }
    out
}

/// The dump with every source id replaced by its target (whole numbers only).
fn translated(dump: &str, users: &[Pair]) -> String {
    let map = |n: &str| -> String {
        for (_, su, sg, tu, tg) in users {
            if n == su.to_string() {
                return tu.to_string();
            }
            if n == sg.to_string() {
                return tg.to_string();
            }
        }
        n.to_string()
    };
    let (mut out, mut num) = (String::new(), String::new());
    for c in dump.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            out.push_str(&map(&num));
            num.clear();
            out.push(c);
        }
    }
    out.push_str(&map(&num));
    out
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn an_agent_migrates_a_device_through_a_kill_and_an_outage() {
    if !is_root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write_config(dir);
    let data = dir.join("data");
    let server_args = [
        "--config",
        dir.join("ferry.toml").to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]
    .map(str::to_string);
    let args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let srv = ServerProc::start(&args, &[]);
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let admin = |url: &str, a: &[&str]| {
        let o = ferry(a, &[("FERRY_SERVER", url), ("FERRY_TOKEN", &token)]);
        assert!(o.status.success(), "ferry {a:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let url = srv.url.clone();
    admin(&url, &["sync", "run", "users", "--wait"]);
    let entries: Vec<Value> = serde_json::from_str(&admin(
        &url,
        &[
            "translation",
            "export",
            "--format",
            "json",
            "--profile",
            "users",
        ],
    ))
    .unwrap();
    let users: Vec<Pair> = entries
        .iter()
        .filter(|e| e["kind"] == "user")
        .filter_map(|e| {
            let n = |k: &str| e[k].as_u64().map(|v| v as u32);
            Some((
                e["source_upn"].as_str()?.split('@').next()?.to_lowercase(),
                n("source_uid")?,
                n("source_gid")?,
                n("target_uid")?,
                n("target_gid")?,
            ))
        })
        .take(2)
        .collect();
    assert_eq!(users.len(), 2, "{entries:?}");

    // The device: two homes and a shared folder; a file outside that a symlink points to.
    let dev = dir.join("dev");
    let outside = dir.join("outside.txt");
    std::fs::write(&outside, "o").unwrap();
    std::os::unix::fs::chown(&outside, Some(users[0].1), Some(users[0].2)).unwrap();
    build_device(&dev, &users, &outside);
    let before = dump(&dev);
    let outside_before = dump(&outside);
    let mut passwd = String::new();
    for (login, su, sg, tu, tg) in &users {
        passwd.push_str(&format!(
            "{login}:x:{su}:{sg}::{}:/bin/sh\n{login}.new:x:{tu}:{tg}::{}:/bin/sh\n",
            dev.join("home").join(login).display(),
            dir.join("target-homes").join(login).display()
        ));
    }
    std::fs::write(dir.join("passwd"), passwd).unwrap();

    // A runbook with two pre-migration scripts (the second is where the agent is killed).
    let counter = dir.join("counter");
    let runbook = json!({
        "name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
        "startup": {"prevent_login": true, "pre_migration_scripts": [
            {"name": "count", "interpreter": "sh", "body": format!("echo ran >> '{}'", counter.display())},
            {"name": "slow", "interpreter": "bash", "body": "echo slow start; sleep 3; echo slow end"}]},
        "permission_updates": {"mode": "add-and-remove",
            "paths": [dev.join("home"), dev.join("shared")]},
        "completion": {"post_migration_scripts": [{"name": "post", "interpreter": "sh", "body": "echo translated: $(grep -c profile \"$FERRY_TRANSLATION\")"}]}
    });
    std::fs::write(dir.join("rb.json"), runbook.to_string()).unwrap();
    admin(
        &url,
        &["runbook", "put", dir.join("rb.json").to_str().unwrap()],
    );
    std::fs::write(
        dir.join("batch.json"),
        json!({"name": "Pilot", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Main"], "enforced_after": "2026-01-01T09:00", "time_zone": "Europe/London"})
        .to_string(),
    )
    .unwrap();
    admin(
        &url,
        &["batch", "put", dir.join("batch.json").to_str().unwrap()],
    );
    let psk = admin(&url, &["psk", "create", "wave-1"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let ep: Value = serde_json::from_str(&admin(&url, &["--json", "agents", "endpoint"])).unwrap();
    let (agent_url, fp) = (
        ep["url"].as_str().unwrap().to_string(),
        ep["certificate_sha256"].as_str().unwrap().to_string(),
    );

    let state = dir.join("agent-state");
    let nologin = dir.join("nologin");
    let agent_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "agent",
            "run",
            "--state-dir",
            state.to_str().unwrap(),
            "--passwd",
            dir.join("passwd").to_str().unwrap(),
            "--sessions-command",
            "true",
            "--nologin-file",
            nologin.to_str().unwrap(),
            "--poll-seconds",
            "1",
        ]
        .map(str::to_string)
        .to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let agent = |extra: &[&str]| {
        let a = agent_args(extra);
        ferry(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };

    // A wrong fingerprint: nothing is sent to a server with another certificate.
    let o = agent(&[
        "--once",
        "--server",
        &agent_url,
        "--psk",
        &psk,
        "--fingerprint",
        &"00".repeat(32),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("pinned"),
        "{}",
        text(&o)
    );
    // Enrollment: the node key is stored 0600; the agent is in no batch yet.
    let o = agent(&[
        "--once",
        "--server",
        &agent_url,
        "--psk",
        &psk,
        "--fingerprint",
        &fp,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("idle: in no batch"), "{}", text(&o));
    assert_eq!(
        std::fs::metadata(state.join("agent.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        !std::fs::read_to_string(state.join("status.json"))
            .unwrap()
            .contains(&psk)
    );
    let agents: Value = serde_json::from_str(&admin(&url, &["--json", "agents", "list"])).unwrap();
    let host = agents[0]["hostname"].as_str().unwrap().to_string();
    let agent_id = agents[0]["id"].as_i64().unwrap();
    admin(&url, &["batch", "add", "Pilot", &host]);

    // The agent takes the enforced migration; it is killed inside the second script.
    let mut child = Command::new(FERRY)
        .args(agent_args(&[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run never reached the slow script"
        );
        if let Ok(b) = std::fs::read(state.join("run.json"))
            && let Ok(r) = serde_json::from_slice::<Value>(&b)
            && r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == "Main/pre-script-2" && s["status"] == "started")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    assert!(
        nologin.exists(),
        "sign-in is prevented while the run is unfinished"
    );
    assert_eq!(dump(&dev), before, "nothing was re-permissioned yet");

    // The server goes away; the agent resumes the run without it.
    drop(srv);
    let o = agent(&["--once"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("succeeded"), "{}", text(&o));
    let run = read_json(&state.join("run.json"));
    let steps = run["steps"].as_array().unwrap();
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap().clone();
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap(),
        "ran\n",
        "a finished step is never run again"
    );
    assert_eq!(step("Main/pre-script-1")["attempts"], 1);
    assert_eq!(step("Main/pre-script-2")["attempts"], 2);
    assert!(steps.iter().all(|s| s["status"] == "succeeded"), "{run}");
    assert!(!nologin.exists(), "sign-in is allowed again");
    // Every source id became its target; nothing else changed; the outside file is untouched.
    assert_eq!(dump(&dev), translated(&before, &users));
    assert_eq!(dump(&outside), outside_before);
    // The target account's home leads to the migrated one.
    let link = dir.join("target-homes").join(&users[0].0);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        dev.join("home").join(&users[0].0)
    );
    // Events wait on disk for the server.
    let outbox = std::fs::read(state.join("outbox.jsonl")).unwrap();
    let sent: usize = std::fs::read_to_string(state.join("outbox.sent"))
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0);
    assert!(
        sent < outbox.len(),
        "events were buffered while the server was away"
    );

    // The server is back (on another port): the agent sends everything it kept.
    let srv = ServerProc::start(&args, &[]);
    let url = srv.url.clone();
    let ep: Value = serde_json::from_str(&admin(&url, &["--json", "agents", "endpoint"])).unwrap();
    let o = agent(&["--once", "--server", ep["url"].as_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(state.join("outbox.sent"))
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap(),
        outbox.len()
    );
    let run_id = run["run"].as_str().unwrap();
    let local: Vec<(String, String)> = String::from_utf8_lossy(&outbox)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["step"].as_str().unwrap().into(),
                v["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let detail: Value = serde_json::from_str(&admin(
        &url,
        &["--json", "agents", "show", &agent_id.to_string()],
    ))
    .unwrap();
    let mut remote: Vec<(i64, String, String)> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["run"] == run_id)
        .map(|e| {
            (
                e["at"].as_i64().unwrap(),
                e["step"].as_str().unwrap().into(),
                e["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    remote.sort_by_key(|e| e.0);
    let remote: Vec<(String, String)> = remote.into_iter().map(|(_, s, t)| (s, t)).collect();
    assert_eq!(remote, local, "every event reached the server, in order");
    // Check-ins and events are recorded in bulk a moment later.
    let state_is = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = admin(&url, &["agents", "list"]);
            if list.contains(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "state never became {want}: {list}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    state_is("succeeded");
    let log = admin(&url, &["agents", "log", &agent_id.to_string(), run_id]);
    let local_log =
        std::fs::read_to_string(state.join("runs").join(format!("{run_id}.log"))).unwrap();
    assert_eq!(log.trim_end(), local_log.trim_end());
    assert!(local_log.contains("was interrupted") && local_log.contains("slow end"));
    let progress = admin(&url, &["batch", "progress", "Pilot"]);
    assert!(progress.contains("succeeded"), "{progress}");
    // The run is not taken again.
    let o = agent(&["--once"]);
    assert!(text(&o).starts_with("succeeded"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "ran\n");

    // Rollback: every file as it was, the home link gone; the server hears of it.
    let o = ferry(
        &["agent", "rollback", "--state-dir", state.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(dump(&dev), before);
    assert!(link.symlink_metadata().is_err());
    let o = agent(&["--once"]);
    assert!(text(&o).starts_with("rolled-back"), "{}", text(&o));
    state_is("rolled-back");
}

#[test]
fn offered_migrations_wait_for_the_user_who_may_snooze() {
    if !is_root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write_config(dir);
    let data = dir.join("data");
    let srv = ServerProc::start(
        &[
            "--config",
            dir.join("ferry.toml").to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
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
    let admin = |a: &[&str]| {
        let o = ferry(a, &env);
        assert!(o.status.success(), "ferry {a:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    std::fs::write(
        dir.join("rb.json"),
        json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
               "user_experience": {"message": "Fabrikam awaits", "max_snoozes": 1},
               "completion": {"post_migration_scripts": [{"name": "p", "interpreter": "sh", "body": "true"}]}})
        .to_string(),
    )
    .unwrap();
    admin(&["runbook", "put", dir.join("rb.json").to_str().unwrap()]);
    // Offered since 2026-01-01, enforced in 2030.
    std::fs::write(
        dir.join("batch.json"),
        json!({"name": "Self", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Main"], "available_from": "2026-01-01T09:00", "enforced_after": "2030-01-01T09:00"})
        .to_string(),
    )
    .unwrap();
    admin(&["batch", "put", dir.join("batch.json").to_str().unwrap()]);
    let psk = admin(&["psk", "create", "w"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let ep: Value = serde_json::from_str(&admin(&["--json", "agents", "endpoint"])).unwrap();
    let state = dir.join("state");
    let st = state.to_str().unwrap().to_string();
    let run_args = [
        "agent",
        "run",
        "--state-dir",
        &st,
        "--passwd",
        "/dev/null",
        "--sessions-command",
        "echo someone",
        "--poll-seconds",
        "1",
    ];
    let mut first = run_args.to_vec();
    let (u, f) = (
        ep["url"].as_str().unwrap(),
        ep["certificate_sha256"].as_str().unwrap(),
    );
    first.extend(["--once", "--server", u, "--psk", &psk, "--fingerprint", f]);
    let o = ferry(&first, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let agents: Value = serde_json::from_str(&admin(&["--json", "agents", "list"])).unwrap();
    admin(&[
        "batch",
        "add",
        "Self",
        agents[0]["hostname"].as_str().unwrap(),
    ]);

    // Offered: nothing runs on its own, even though it is due.
    let mut once = run_args.to_vec();
    once.push("--once");
    let o = ferry(&once, &[]);
    assert!(text(&o).starts_with("offered"), "{}", text(&o));
    assert!(!state.join("run.json").exists());
    let status = ferry(&["agent", "status", "--state-dir", &st], &[]);
    assert!(
        text(&status).contains("Fabrikam awaits"),
        "{}",
        text(&status)
    );

    // The user snoozes (once: the runbook allows one), then starts it, through the running agent.
    let mut child = Command::new(FERRY)
        .args(run_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let o = ferry(&["agent", "snooze", "1h", "--state-dir", &st], &[]);
    assert!(
        o.status.success() && text(&o).contains("snoozed until"),
        "{}",
        text(&o)
    );
    let o = ferry(&["agent", "snooze", "5m", "--state-dir", &st], &[]);
    assert!(
        !o.status.success() && text(&o).contains("no snoozes left"),
        "{}",
        text(&o)
    );
    let o = ferry(&["agent", "snooze", "2h", "--state-dir", &st], &[]);
    assert!(!o.status.success(), "only the seed's choices: {}", text(&o));
    let o = ferry(&["agent", "start-now", "--state-dir", &st], &[]);
    assert!(
        o.status.success() && text(&o).contains("starting"),
        "{}",
        text(&o)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the started run did not finish");
        let r = std::fs::read(state.join("run.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if r.as_ref().is_some_and(|r| r["status"] == "succeeded") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let r = read_json(&state.join("run.json"));
    assert_eq!(r["mode"], "offered");
}

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

/// Two translated users with uids and distinct login names.
fn two_users(entries: &[Value]) -> Vec<Pair> {
    let mut seen = std::collections::HashSet::new();
    entries
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
        .filter(|u| seen.insert(u.0.clone()))
        .take(2)
        .collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A `ferry server` on sample tenants, and the admin CLI against it.
struct Rig {
    d: tempfile::TempDir,
    srv: Option<ServerProc>,
    token: String,
}

impl Rig {
    fn start() -> Rig {
        let d = tempfile::tempdir().unwrap();
        sample_config(d.path(), 60, 5, "");
        let mut r = Rig {
            d,
            srv: None,
            token: String::new(),
        };
        r.restart();
        r.token = std::fs::read_to_string(r.dir().join("data/admin-token"))
            .unwrap()
            .trim()
            .to_string();
        r
    }

    fn dir(&self) -> &Path {
        self.d.path()
    }

    /// Starts the server (again: same database and certificate, new ports).
    fn restart(&mut self) {
        let (cfg, data) = (self.dir().join("ferry.toml"), self.dir().join("data"));
        self.srv = Some(ServerProc::on(&cfg, &data, &[], &[]));
    }

    fn stop(&mut self) {
        self.srv = None;
    }

    fn admin(&self, a: &[&str]) -> String {
        let url = &self.srv.as_ref().unwrap().url;
        let o = ferry(a, &[("FERRY_SERVER", url), ("FERRY_TOKEN", &self.token)]);
        assert!(o.status.success(), "ferry {a:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ferry runbook put` / `ferry batch put` of a JSON document.
    fn put(&self, what: &str, v: Value) {
        let p = self.dir().join(format!("{what}.json"));
        std::fs::write(&p, v.to_string()).unwrap();
        self.admin(&[what, "put", p.to_str().unwrap()]);
    }

    /// A new pre-shared key, and the agent endpoint's URL and certificate fingerprint.
    fn enrolment(&self) -> (String, String, String) {
        let psk = self.admin(&["psk", "create", "wave-1"]);
        let ep: Value =
            serde_json::from_str(&self.admin(&["--json", "agents", "endpoint"])).unwrap();
        (
            psk.lines().last().unwrap().trim().to_string(),
            ep["url"].as_str().unwrap().to_string(),
            ep["certificate_sha256"].as_str().unwrap().to_string(),
        )
    }

    /// Puts the (only) enrolled agent's computer in a batch; its id.
    fn add_agent_to(&self, batch: &str) -> i64 {
        let agents: Value =
            serde_json::from_str(&self.admin(&["--json", "agents", "list"])).unwrap();
        self.admin(&[
            "batch",
            "add",
            batch,
            agents[0]["hostname"].as_str().unwrap(),
        ]);
        agents[0]["id"].as_i64().unwrap()
    }

    /// Two translated users after a sync cycle.
    fn users(&self) -> Vec<Pair> {
        self.admin(&["sync", "run", "users", "--wait"]);
        let entries: Vec<Value> = serde_json::from_str(&self.admin(&[
            "translation",
            "export",
            "--format",
            "json",
            "--profile",
            "users",
        ]))
        .unwrap();
        let users = two_users(&entries);
        assert_eq!(users.len(), 2, "{entries:?}");
        users
    }
}

#[test]
fn an_agent_migrates_a_device_through_a_kill_and_an_outage() {
    if !is_root() {
        return;
    }
    let mut rig = Rig::start();
    let dir = rig.dir().to_path_buf();
    let dir = dir.as_path();
    let users = rig.users();

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
    rig.put("runbook", runbook);
    rig.put(
        "batch",
        json!({"name": "Pilot", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Main"], "enforced_after": "2026-01-01T09:00", "time_zone": "Europe/London"}),
    );
    let (psk, agent_url, fp) = rig.enrolment();

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
    // Enrollment, the key read from a file (not argv, where `ps` shows it): the node key is
    // stored 0600; the agent is in no batch yet.
    let psk_file = dir.join("psk");
    std::fs::write(&psk_file, format!("{psk}\n")).unwrap();
    let o = agent(&[
        "--once",
        "--server",
        &agent_url,
        "--psk-file",
        psk_file.to_str().unwrap(),
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
    let agent_id = rig.add_agent_to("Pilot");

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
    rig.stop();
    let o = agent(&["--once"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("verified"), "{}", text(&o));
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
    rig.restart();
    let ep: Value = serde_json::from_str(&rig.admin(&["--json", "agents", "endpoint"])).unwrap();
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
    let detail: Value =
        serde_json::from_str(&rig.admin(&["--json", "agents", "show", &agent_id.to_string()]))
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
            let list = rig.admin(&["agents", "list"]);
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
    state_is("verified");
    let log = rig.admin(&["agents", "log", &agent_id.to_string(), run_id]);
    let local_log =
        std::fs::read_to_string(state.join("runs").join(format!("{run_id}.log"))).unwrap();
    assert_eq!(log.trim_end(), local_log.trim_end());
    assert!(local_log.contains("was interrupted") && local_log.contains("slow end"));
    let progress = rig.admin(&["batch", "progress", "Pilot"]);
    assert!(progress.contains("verified"), "{progress}");
    // The post-flight's evidence is on the server: no source principal left, homes resolved.
    let shown: Value =
        serde_json::from_str(&rig.admin(&["--json", "agents", "show", &agent_id.to_string()]))
            .unwrap();
    let v = &shown["verification"];
    assert_eq!(v["after"], "run", "{shown}");
    let checks: Vec<(&str, bool)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("principals", true),
            ("homes", true),
            ("check-commands", true)
        ],
        "{shown}"
    );
    // The run is not taken again.
    let o = agent(&["--once"]);
    assert!(text(&o).starts_with("verified"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "ran\n");

    // Rollback: every file as it was, the home link gone; the server hears of it.
    let o = ferry(
        &["agent", "rollback", "--state-dir", state.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("proved principals: ") && text(&o).contains("as the run found them"),
        "{}",
        text(&o)
    );
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
    let rig = Rig::start();
    let dir = rig.dir();
    rig.put(
        "runbook",
        json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
               "user_experience": {"message": "Fabrikam awaits", "max_snoozes": 1},
               "completion": {"post_migration_scripts": [{"name": "p", "interpreter": "sh", "body": "true"}]}}),
    );
    // Offered since 2026-01-01, enforced in 2030.
    rig.put(
        "batch",
        json!({"name": "Self", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Main"], "available_from": "2026-01-01T09:00", "enforced_after": "2030-01-01T09:00"}),
    );
    let (psk, u, f) = rig.enrolment();
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
    first.extend(["--once", "--server", &u, "--psk", &psk, "--fingerprint", &f]);
    let o = ferry(&first, &[]);
    assert!(o.status.success(), "{}", text(&o));
    rig.add_agent_to("Self");

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

#[test]
fn agent_runs_killed_at_random_points_finish_exactly_once() {
    if !is_root() {
        return;
    }
    let rig = Rig::start();
    let dir = rig.dir();
    let users = rig.users();
    // A tree big enough for kills to land inside the re-permissioning too.
    let dev = dir.join("dev");
    for (login, uid, gid, ..) in &users {
        let h = dev.join(login);
        for i in 0..20 {
            let sub = h.join(format!("d{i}"));
            std::fs::create_dir_all(&sub).unwrap();
            for j in 0..150 {
                std::fs::write(sub.join(format!("f {j}")), "x").unwrap();
            }
        }
        for p in walk(&h) {
            std::os::unix::fs::lchown(&p, Some(*uid), Some(*gid)).unwrap();
        }
        setfacl(&["-R", "-m", &format!("u:{}:rw", users[1].1)], &h);
    }
    let before = dump(&dev);
    let counter = dir.join("counter");
    rig.put(
        "runbook",
        json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
            "startup": {"pre_migration_scripts": [
                {"name": "count", "interpreter": "sh", "body": format!("echo ran >> '{}'", counter.display())},
                {"name": "pause", "interpreter": "sh", "body": "sleep 0.2"}]},
            "permission_updates": {"mode": "add-and-remove", "paths": [dev]},
            "completion": {"post_migration_scripts": [{"name": "pause", "interpreter": "sh", "body": "sleep 0.2"}]}}),
    );
    rig.put(
        "batch",
        json!({"name": "B", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Main"], "enforced_after": "2026-01-01T00:00"}),
    );
    let (psk, u, f) = rig.enrolment();
    let st = dir.join("state").to_str().unwrap().to_string();
    // Source and target accounts (the post-flight proves that each target resolves a home).
    let passwd: String = users
        .iter()
        .map(|(l, u, g, tu, tg)| {
            format!(
                "{l}:x:{u}:{g}::{}:/bin/sh\n{l}.new:x:{tu}:{tg}::{}:/bin/sh\n",
                dev.join(l).display(),
                dir.join("target-homes").join(l).display()
            )
        })
        .collect();
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    let pw = dir.join("passwd").to_str().unwrap().to_string();
    let base = [
        "agent",
        "run",
        "--state-dir",
        &st,
        "--passwd",
        &pw,
        "--sessions-command",
        "true",
        "--poll-seconds",
        "1",
        "--threads",
        "2",
    ];
    let mut first = base.to_vec();
    first.extend(["--once", "--server", &u, "--psk", &psk, "--fingerprint", &f]);
    assert!(ferry(&first, &[]).status.success());
    rig.add_agent_to("B");

    let mut kills = 0;
    for delay in kill_points(10, 300) {
        let mut c = Command::new(FERRY)
            .args(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Once the run has started, a random moment later.
        let run_json = dir.join("state/run.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !run_json.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delay));
        if c.try_wait().unwrap().is_none() {
            kills += 1;
        }
        Command::new("kill")
            .args(["-KILL", &c.id().to_string()])
            .status()
            .unwrap();
        c.wait().unwrap();
        if read_json(&run_json)["status"] != "running" {
            break;
        }
    }
    let mut once = base.to_vec();
    once.push("--once");
    let o = ferry(&once, &[]);
    assert!(
        text(&o).starts_with("verified"),
        "after {kills} kills: {}\n{}",
        text(&o),
        std::fs::read_to_string(dir.join("state/run.json")).unwrap()
    );
    let r = read_json(&dir.join("state/run.json"));
    let steps = r["steps"].as_array().unwrap();
    assert!(
        steps.iter().all(|s| s["status"] == "succeeded"),
        "{}",
        serde_json::to_string_pretty(&r["steps"]).unwrap()
    );
    let attempts: u64 = steps.iter().map(|s| s["attempts"].as_u64().unwrap()).sum();
    eprintln!(
        "{kills} kills; {attempts} step attempts for {} steps",
        steps.len()
    );
    // A step runs again only when it was interrupted, never after it finished.
    let count = steps
        .iter()
        .find(|s| s["id"] == "Main/pre-script-1")
        .unwrap();
    let lines = std::fs::read_to_string(&counter).unwrap().lines().count() as u64;
    assert!(
        lines >= 1 && lines <= count["attempts"].as_u64().unwrap(),
        "{lines} runs, {count}"
    );
    assert_eq!(
        dump(&dev),
        translated(&before, &users),
        "after {kills} kills"
    );
    // And rollback from the journal of all those attempts restores the tree.
    let o = ferry(&["agent", "rollback", "--state-dir", &st], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(dump(&dev), before);
}

// Catches: a reinstalled device (or anyone with the key and its device id) taking over an
// enrolled agent's identity without an operator, and a held device running anything.
#[test]
fn a_device_enrolling_again_without_its_key_waits_for_an_operator() {
    if !is_root() {
        return;
    }
    let rig = Rig::start();
    let dir = rig.dir();
    let (psk, agent_url, fp) = rig.enrolment();
    let once = |state: &str, extra: &[&str]| {
        let state = dir.join(state);
        let mut a = vec![
            "agent",
            "run",
            "--once",
            "--state-dir",
            state.to_str().unwrap(),
            "--sessions-command",
            "true",
            "--poll-seconds",
            "1",
        ];
        a.extend_from_slice(extra);
        ferry(&a, &[])
    };
    let enroll = ["--server", &agent_url, "--psk", &psk, "--fingerprint", &fp];
    let o = once("first", &enroll);
    assert!(o.status.success(), "{}", text(&o));
    // The same machine (device id, host name) with a fresh state directory: held.
    let o = once("second", &enroll);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("waits for an operator"), "{}", text(&o));
    let pending = rig.admin(&["agents", "pending"]);
    assert!(
        pending.contains("claims the device id of agent"),
        "{pending}"
    );
    let requests: Value =
        serde_json::from_str(&rig.admin(&["--json", "agents", "pending"])).unwrap();
    let id = requests[0]["id"].as_i64().unwrap().to_string();
    // The enrolled agent keeps working meanwhile.
    let o = once("first", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = once("second", &[]);
    assert!(text(&o).contains("pending-approval"), "{}", text(&o));
    let approved = rig.admin(&["agents", "approve", &id]);
    assert!(approved.starts_with("approved:"), "{approved}");
    assert!(
        rig.admin(&["agents", "pending"])
            .contains("no enrollment waits")
    );
    let o = once("second", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("pending"), "{}", text(&o));
    // The replaced agent's key stops working.
    let o = once("first", &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("refuses this agent's node key"),
        "{}",
        text(&o)
    );
    let audit = rig.admin(&["--json", "audit"]);
    assert!(audit.contains("agent.enrollment.approve"), "{audit}");
}

// Catches: a real agent starting its run with a pending reboot or a harvested profile that has no
// translation (or skipping it silently); a signed-in user's session blocking instead of warning;
// the server never learning why (the batch's what-if shows the device ready or not); a device
// held on a stale pre-flight after it was fixed.
#[test]
fn a_device_that_is_not_ready_does_not_start_and_says_why() {
    if !is_root() {
        return;
    }
    let rig = Rig::start();
    let dir = rig.dir();
    let runbook = |skip: bool| {
        json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
               "permission_updates": {"mode": "add-and-remove", "skip_unresolved_profiles": skip},
               "completion": {"post_migration_scripts": [{"name": "p", "interpreter": "sh", "body": "true"}]}})
    };
    rig.put("runbook", runbook(false));
    rig.put(
        "batch",
        json!({"name": "Now", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Main"], "enforced_after": "2026-01-01T09:00"}),
    );
    let (psk, u, f) = rig.enrolment();
    // A local account the translation table does not know, with its home on the device.
    let home = dir.join("home").join("stranger");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(4242), Some(4242)).unwrap();
    std::fs::write(
        dir.join("passwd"),
        format!("stranger:x:4242:4242::{}:/bin/sh\n", home.display()),
    )
    .unwrap();
    let state = dir.join("state");
    let reboot = dir.join("reboot-required");
    std::fs::write(&reboot, "").unwrap();
    let (st, rf, pw) = (
        state.to_str().unwrap().to_string(),
        reboot.to_str().unwrap().to_string(),
        dir.join("passwd").to_str().unwrap().to_string(),
    );
    let once = |sessions: &str, extra: &[&str]| {
        let mut a = vec![
            "agent",
            "run",
            "--state-dir",
            &st,
            "--passwd",
            &pw,
            "--sessions-command",
            sessions,
            "--reboot-required-file",
            &rf,
            "--poll-seconds",
            "1",
            "--once",
        ];
        a.extend_from_slice(extra);
        ferry(&a, &[])
    };
    let o = once(
        "true",
        &["--server", &u, "--psk", &psk, "--fingerprint", &f],
    );
    assert!(o.status.success(), "{}", text(&o));
    rig.add_agent_to("Now");
    let whatif = || -> Value {
        serde_json::from_str(&rig.admin(&["--json", "batch", "whatif", "Now"])).unwrap()
    };

    // Due, but a reboot is pending and a profile has no translation: the agent checks itself,
    // the server adds its own checks and holds the device back, naming both.
    let out = text(&once("true", &[]));
    assert!(
        out.contains("not ready: profiles (no translation for stranger")
            && out.contains("reboot (a reboot is pending"),
        "{out}"
    );
    assert!(!state.join("run.json").exists(), "nothing ran: {out}");
    let status: Value = read_json(&state.join("status.json"));
    assert_eq!(
        status["preflight"]["checks"][1]["check"], "reboot",
        "{status}"
    );
    let w = whatif();
    assert_eq!(w["devices"][0]["ready"], false, "{w}");

    // Rebooted: the unresolvable profile still blocks (never skipped silently).
    std::fs::remove_file(&reboot).unwrap();
    let out = text(&once("true", &[]));
    assert!(
        out.contains("no translation for stranger") && !out.contains("reboot ("),
        "{out}"
    );

    // The runbook says to skip it; a user is signed in: a warning, and the enforced run waits.
    rig.put("runbook", runbook(true));
    let out = text(&once("echo 'ann pts/0'", &[]));
    assert!(out.contains("nobody is signed in"), "{out}");
    assert!(!state.join("run.json").exists(), "nothing ran: {out}");
    let w = whatif();
    let checks = w["devices"][0]["preflight"]["checks"].as_array().unwrap();
    let sessions = checks.iter().find(|c| c["check"] == "sessions").unwrap();
    assert_eq!(sessions["ok"], false, "{w}");
    assert_eq!(w["devices"][0]["ready"], true, "warnings do not block: {w}");

    // Nobody signed in: the run goes, and names the profile it skips.
    let out = text(&once("true", &[]));
    assert!(out.starts_with("verified"), "{out}");
    let log = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(log.contains("untranslated profiles: stranger"), "{log}");
}

// Catches: a run that leaves a source principal behind (here a broken post-migration script
// grants the source user an ACL entry again) reported as a success; a target account whose home
// belongs to a third account called proved; the evidence not reaching
// the server; the batch not halting on an unverified canary, or resuming without an operator; a
// rollback that could not put a file back called done.
#[test]
fn a_run_that_leaves_a_source_acl_behind_fails_its_verification_and_halts_the_batch() {
    if !is_root() {
        return;
    }
    let rig = Rig::start();
    let dir = rig.dir();
    let users = rig.users();
    let dev = dir.join("dev");
    let mut passwd = String::new();
    for (login, uid, gid, tuid, tgid) in &users {
        let h = dev.join(login);
        std::fs::create_dir_all(h.join("Documents")).unwrap();
        std::fs::write(h.join("Documents/report.txt"), "r").unwrap();
        for p in walk(&h) {
            std::os::unix::fs::lchown(&p, Some(*uid), Some(*gid)).unwrap();
        }
        passwd.push_str(&format!(
            "{login}:x:{uid}:{gid}::{}:/bin/sh\n{login}.new:x:{tuid}:{tgid}::{}:/bin/sh\n",
            h.display(),
            dir.join("target-homes").join(login).display()
        ));
    }
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    let leak = dev.join(&users[0].0).join("Documents/report.txt");
    // The second user's home ends owned by a third account (a script gone wrong): its target
    // account resolves a home it does not own.
    let taken = dir.join("target-homes").join(&users[1].0);
    rig.put(
        "runbook",
        json!({"name": "Broken", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
            "permission_updates": {"mode": "add-and-remove", "paths": [dev]},
            "completion": {
                "post_migration_scripts": [{"name": "re-grant", "interpreter": "sh",
                    "body": format!("setfacl -m u:{}:rw '{}' && chown 4242 '{}'", users[0].1, leak.display(), taken.display())}],
                "check_commands": [{"name": "realm", "interpreter": "sh", "body": "echo fabrikam.test | grep -q fabrikam"}]}}),
    );
    rig.put(
        "batch",
        json!({"name": "B", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Broken"], "enforced_after": "2026-01-01T00:00", "canary": 1}),
    );
    let (psk, u, f) = rig.enrolment();
    let st = dir.join("state").to_str().unwrap().to_string();
    let pw = dir.join("passwd").to_str().unwrap().to_string();
    let base = [
        "agent",
        "run",
        "--state-dir",
        &st,
        "--passwd",
        &pw,
        "--sessions-command",
        "true",
        "--poll-seconds",
        "1",
        "--once",
    ];
    let mut first = base.to_vec();
    first.extend(["--server", &u, "--psk", &psk, "--fingerprint", &f]);
    assert!(ferry(&first, &[]).status.success());
    let agent_id = rig.add_agent_to("B");
    let o = ferry(&base, &[]);
    let out = text(&o);
    assert!(
        !o.status.success(),
        "an unverified run exits non-zero: {out}"
    );
    assert!(out.starts_with("verification-failed"), "{out}");
    // The next check-in hands the evidence to the server (contacts are written a moment later).
    ferry(&base, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown: Value =
            serde_json::from_str(&rig.admin(&["--json", "agents", "show", &agent_id.to_string()]))
                .unwrap();
        if shown["state"] == "verification-failed" {
            break shown;
        }
        assert!(Instant::now() < deadline, "{shown}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let checks = shown["verification"]["checks"].as_array().unwrap();
    let principals = checks.iter().find(|c| c["check"] == "principals").unwrap();
    assert_eq!(principals["ok"], false, "{shown}");
    let detail = principals["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("1 of ") && detail.contains("report.txt (ACL entries)"),
        "{detail}"
    );
    let homes = checks.iter().find(|c| c["check"] == "homes").unwrap();
    assert_eq!(homes["ok"], false, "{shown}");
    assert!(
        homes["detail"]
            .as_str()
            .unwrap()
            .contains("is owned by uid 4242, neither it nor its source account"),
        "{homes}"
    );
    let realm = checks
        .iter()
        .find(|c| c["check"] == "check-commands")
        .unwrap();
    assert_eq!(realm["ok"], true, "{shown}");
    // The batch halted itself: its canary (this device) is unverified.
    let progress = rig.admin(&["batch", "progress", "B"]);
    assert!(
        progress.contains("HALTED: 1 of the canary's 1 device(s) failed"),
        "{progress}"
    );
    // An operator resumes it (audited); the failure is accepted, the halt is gone.
    let out = rig.admin(&["batch", "resume", "B"]);
    assert!(
        out.contains("resumed; 1 failed device(s) accepted"),
        "{out}"
    );
    let progress = rig.admin(&["batch", "progress", "B"]);
    assert!(!progress.contains("HALTED"), "{progress}");
    assert!(
        progress.contains("last resumed by admin after: 1 of the canary"),
        "{progress}"
    );
    let audit = rig.admin(&["--json", "audit"]);
    assert!(
        audit.contains("batch.resume") && audit.contains("batch.halt"),
        "{audit}"
    );

    // Someone gives a migrated file to a third account before the rollback: the undo leaves it
    // alone (it was changed since), as it leaves the home the broken script gave away, so the
    // rollback is not proved and the device needs recovery, which its next check-in tells the
    // server.
    let other = dev.join(&users[1].0).join("Documents/report.txt");
    std::os::unix::fs::chown(&other, Some(4242), Some(4242)).unwrap();
    let o = ferry(&["agent", "rollback", "--state-dir", &st], &[]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains(
            "NOT PROVED principals: 2 of 6 journaled file(s) are not as the run found them"
        ) && out.contains("owner 4242:4242")
            && out.contains("owner 4242:200000"),
        "{out}"
    );
    assert!(out.contains("recovery required"), "{out}");
    let o = ferry(&base, &[]);
    assert!(text(&o).starts_with("recovery-required"), "{}", text(&o));
}

// Review finding: the agent's post-flight names the first ten offending paths in full, while
// the server refuses a whole check-in whose verification has a check detail over 8,000 bytes
// (`agent_api.rs` checkin) — and the agent keeps `verification.json` until a check-in succeeds,
// so it sends the same refused evidence at every check-in for ever: the server records the
// state (`verification-failed`) but never the evidence, never halts the batch at once, and
// hears nothing else from the device. A user who owns files may add ACL entries naming any uid
// (`setfacl -m u:SOURCE:rw` on their own files) between the re-permissioning and the
// post-flight (an offered run, started by the signed-in user); the post-migration script below
// does the same, deterministically.
#[test]
fn review_long_offending_paths_do_not_keep_the_evidence_from_the_server() {
    if !is_root() {
        return;
    }
    let rig = Rig::start();
    let dir = rig.dir();
    let users = rig.users();
    let dev = dir.join("dev");
    let mut passwd = String::new();
    for (login, uid, gid, tuid, tgid) in &users {
        let h = dev.join(login);
        std::fs::create_dir_all(h.join("Documents")).unwrap();
        for p in walk(&h) {
            std::os::unix::fs::lchown(&p, Some(*uid), Some(*gid)).unwrap();
        }
        passwd.push_str(&format!(
            "{login}:x:{uid}:{gid}::{}:/bin/sh\n{login}.new:x:{tuid}:{tgid}::{}:/bin/sh\n",
            h.display(),
            dir.join("target-homes").join(login).display()
        ));
    }
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    let docs = dev.join(&users[0].0).join("Documents");
    let mut body = String::new();
    for i in 0..10 {
        let p = docs.join(format!(
            "{i}{}/{}/{}/{}",
            "x".repeat(240),
            "y".repeat(240),
            "z".repeat(240),
            "w".repeat(240)
        ));
        body.push_str(&format!(
            "mkdir -p '{p}' && touch '{p}/f' && setfacl -m u:{}:rw '{p}/f' || exit 1\n",
            users[0].1,
            p = p.display()
        ));
    }
    rig.put(
        "runbook",
        json!({"name": "Long", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
            "permission_updates": {"mode": "add-and-remove", "paths": [dev]},
            "completion": {"post_migration_scripts": [{"name": "user", "interpreter": "sh", "body": body}]}}),
    );
    rig.put(
        "batch",
        json!({"name": "L", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Long"], "enforced_after": "2026-01-01T00:00", "canary": 1}),
    );
    let (psk, u, f) = rig.enrolment();
    let st = dir.join("state").to_str().unwrap().to_string();
    let pw = dir.join("passwd").to_str().unwrap().to_string();
    let base = [
        "agent",
        "run",
        "--state-dir",
        &st,
        "--passwd",
        &pw,
        "--sessions-command",
        "true",
        "--poll-seconds",
        "1",
        "--once",
    ];
    let mut first = base.to_vec();
    first.extend(["--server", &u, "--psk", &psk, "--fingerprint", &f]);
    assert!(ferry(&first, &[]).status.success());
    let agent_id = rig.add_agent_to("L");
    let out = text(&ferry(&base, &[]));
    assert!(out.starts_with("verification-failed"), "{out}");
    // Check-ins after the run: the evidence should reach the server, and the batch halt.
    let mut outs = Vec::new();
    for _ in 0..3 {
        outs.push(text(&ferry(&base, &[])));
    }
    std::thread::sleep(Duration::from_secs(3));
    let shown: Value =
        serde_json::from_str(&rig.admin(&["--json", "agents", "show", &agent_id.to_string()]))
            .unwrap();
    let progress = rig.admin(&["batch", "progress", "L"]);
    assert!(
        !shown["verification"].is_null() && progress.contains("HALTED"),
        "state {} but no evidence on the server; progress: {progress}; agent said: {outs:#?}",
        shown["state"]
    );
}

// Review finding: the device pre-flight's `open-files` check reads every process's
// `/proc/PID/fd` as root and names (process, pid, full path) the files held open under the
// homes; the result goes to `status.json`, 0644 in a 0711 directory "readable by everyone": any
// local user learns the names of files another user keeps open inside a 0700 home.
#[test]
fn review_status_json_does_not_show_another_users_private_file_names() {
    if !is_root() {
        return;
    }
    let rig = Rig::start();
    let dir = rig.dir();
    let dev = dir.join("dev");
    let bob = dev.join("bob");
    let secret = bob.join("private-diagnosis-2026.pdf");
    std::fs::create_dir_all(&bob).unwrap();
    std::fs::write(&secret, "x").unwrap();
    for p in walk(&bob) {
        std::os::unix::fs::lchown(&p, Some(4243), Some(4243)).unwrap();
    }
    std::fs::set_permissions(&bob, std::fs::Permissions::from_mode(0o700)).unwrap();
    rig.put(
        "runbook",
        json!({"name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
               "permission_updates": {"mode": "add-and-remove", "paths": [dev]}}),
    );
    // Assigned, not due: the agent runs its pre-flight ahead of time.
    rig.put(
        "batch",
        json!({"name": "Later", "source_directory": "contoso", "target_directory": "fabrikam",
               "runbooks": ["Main"], "enforced_after": "2099-01-01T09:00"}),
    );
    let (psk, u, f) = rig.enrolment();
    let st = dir.join("state");
    std::fs::write(dir.join("passwd"), "").unwrap();
    let (s, pw) = (
        st.to_str().unwrap().to_string(),
        dir.join("passwd").to_str().unwrap().to_string(),
    );
    let base = [
        "agent",
        "run",
        "--state-dir",
        &s,
        "--passwd",
        &pw,
        "--sessions-command",
        "true",
        "--poll-seconds",
        "1",
        "--once",
    ];
    let mut first = base.to_vec();
    first.extend(["--server", &u, "--psk", &psk, "--fingerprint", &f]);
    assert!(ferry(&first, &[]).status.success());
    rig.add_agent_to("Later");
    // Bob's program keeps his file open (as bob).
    let mut child = Command::new("setpriv")
        .args(["--reuid=4243", "--regid=4243", "--clear-groups", "sh", "-c"])
        .arg("exec 3<\"$1\"; echo ready; sleep 60")
        .arg("sh")
        .arg(&secret)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let o = ferry(&base, &[]);
    let _ = child.kill();
    let _ = child.wait();
    let status = std::fs::read_to_string(st.join("status.json")).unwrap();
    let mode = std::fs::metadata(st.join("status.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert!(
        !(mode & 0o004 != 0 && status.contains("private-diagnosis-2026.pdf")),
        "status.json (mode {mode:o}) shows bob's private file to everyone: {status}\n{}",
        text(&o)
    );
}

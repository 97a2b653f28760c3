//! Helpers shared by the binary's integration tests: run `ferry`, and a `ferry server` process.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses some of them

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

pub fn ferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(FERRY);
    c.args(args)
        .env_remove("FERRY_SERVER")
        .env_remove("FERRY_TOKEN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run ferry")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A `ferry server` child process; stopped with SIGTERM on drop.
pub struct ServerProc {
    pub child: Child,
    pub url: String,
    pub log: Arc<Mutex<String>>,
}

impl ServerProc {
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> ServerProc {
        let mut c = Command::new(FERRY);
        c.arg("server")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            // Tests run servers side by side: no fixed agent port unless a test asks for one.
            .args(if args.contains(&"--agent-listen") {
                &[][..]
            } else {
                &["--agent-listen", "127.0.0.1:0"][..]
            })
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        for (k, v) in envs {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("start ferry server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        ServerProc { child, url, log }
    }

    /// `ferry server --config CONFIG --data-dir DATA`, then `extra` arguments.
    pub fn on(config: &Path, data: &Path, extra: &[&str], envs: &[(&str, &str)]) -> ServerProc {
        let mut args = vec![
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ServerProc::start(&args, envs)
    }

    /// The environment the CLI reaches this server with as `token`'s holder.
    pub fn cli_env<'a>(&'a self, token: &'a str) -> [(&'static str, &'a str); 2] {
        [("FERRY_SERVER", self.url.as_str()), ("FERRY_TOKEN", token)]
    }
}

/// The admin token a server wrote into its data directory.
pub fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string()
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// Every file's path, owner, group and mode, then `getfacl -R` of the tree, in a stable order:
/// two trees with equal dumps have equal metadata.
pub fn dump(t: &Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![t.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.push(format!("{:?} {} {} {:o}", p, m.uid(), m.gid(), m.mode()));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    let facl = Command::new("getfacl")
        .args(["-R", "-P", "-n", "--absolute-names"])
        .arg(t)
        .output()
        .unwrap();
    let mut f: Vec<String> = String::from_utf8_lossy(&facl.stdout)
        .split("\n\n")
        .map(str::to_string)
        .collect();
    f.sort();
    format!("{}\n{}", out.join("\n"), f.join("\n\n"))
}

/// Whether this test may change owners; without root it is skipped, except under scripts/test.
pub fn is_root() -> bool {
    if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        return true;
    }
    assert_ne!(
        std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
        Ok("1"),
        "scripts/test must run this as root"
    );
    eprintln!("skipping: needs root");
    false
}

/// `n` pseudo-random delays in milliseconds below `max`, from `FERRY_KILL_SEED` or the clock;
/// the seed is printed so that a failing sequence of kills can be replayed.
pub fn kill_points(n: usize, max: u64) -> Vec<u64> {
    let mut seed: u64 = std::env::var("FERRY_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill points from FERRY_KILL_SEED={seed}");
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % max
        })
        .collect()
}

/// Sample Contoso and Fabrikam tenants as file directories, with a `users` sync profile using the
/// quickstart's match rules (plus `extra_profile_keys`).
pub fn sample_config(dir: &Path, users: usize, seed: u64, extra_profile_keys: &str) {
    let s = ferry_demo::generate(users, true, seed);
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
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{extra_profile_keys}\n{}",
            ferry_demo::QUICKSTART_RULES
        ),
    )
    .unwrap();
}

/// `ferry quickstart --once` in `dir` (200 users, no device), then `ferry server` on its data:
/// the server, the quickstart's output, and a reader of the tokens in its data directory.
pub fn quickstart_server(dir: &Path) -> (ServerProc, String, impl Fn(&str) -> String) {
    let o = ferry(
        &[
            "quickstart",
            "--once",
            "--no-device",
            "--listen",
            "127.0.0.1:0",
            "--users",
            "200",
            "--dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let data = dir.join("data");
    let server = ServerProc::on(&dir.join("ferry.toml"), &data, &[], &[]);
    let token = move |who: &str| {
        std::fs::read_to_string(data.join(format!("{who}-token")))
            .unwrap()
            .trim()
            .to_string()
    };
    (server, text(&o), token)
}

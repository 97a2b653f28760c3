//! The device's pre-flight: what the agent checks before its run, and ahead of time while the
//! device is in a batch, so that the batch's page shows ready / not ready per device days before
//! Enforced After. The server adds its own checks (the device's clock, every harvested profile's
//! translation) and holds a not-ready device back; the agent itself does not start a run whose
//! pre-flight fails.

use ferry_core::agent::PreflightCheck;
use ferry_core::runbook::Runbook;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What the checks look at.
pub struct Probe<'a> {
    /// The agent's state directory (the journal and the run's state are written there).
    pub state_dir: &'a Path,
    /// The paths the run changes (the runbooks' paths, else the harvested homes).
    pub paths: Vec<PathBuf>,
    pub runbooks: &'a [Runbook],
    /// Signed-in sessions now.
    pub sessions: usize,
    /// The file whose presence says a reboot is pending (Debian: `/run/reboot-required`).
    pub reboot_file: &'a Path,
    /// Free space each file system the run writes must keep (MiB).
    pub min_free_mb: u64,
    /// Where processes are listed (`/proc`).
    pub proc_dir: &'a Path,
    /// The directories searched for commands (`PATH`).
    pub search_path: Vec<PathBuf>,
}

/// How many offenders a detail names before "and N more".
const NAMED: usize = 3;

/// Runs the device's checks.
pub fn run(p: &Probe<'_>) -> Vec<PreflightCheck> {
    let mut checks = vec![
        free_space(p),
        reboot(p),
        commands(p),
        sessions(p),
        open_files(p),
    ];
    ferry_core::agent::bound_checks(&mut checks, ferry_core::agent::PREFLIGHT_DETAIL_MAX);
    checks
}

fn named(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > NAMED {
        s.push_str(&format!(" and {} more", items.len() - NAMED));
    }
    s
}

fn free_space(p: &Probe<'_>) -> PreflightCheck {
    let need = p.min_free_mb * 1024 * 1024;
    let mut seen = BTreeSet::new();
    let (mut short, mut least) = (Vec::new(), u64::MAX);
    for path in std::iter::once(p.state_dir.to_path_buf()).chain(p.paths.iter().cloned()) {
        let Ok(v) = rustix::fs::statvfs(&path) else {
            continue;
        };
        if !seen.insert(v.f_fsid) {
            continue;
        }
        let free = v.f_bavail.saturating_mul(v.f_frsize);
        least = least.min(free);
        if free < need {
            short.push(format!("{} ({} MiB free)", path.display(), free >> 20));
        }
    }
    if short.is_empty() {
        PreflightCheck::new(
            "free-space",
            true,
            true,
            if least == u64::MAX {
                "no file system to check".to_string()
            } else {
                format!("at least {} MiB free where the run writes", least >> 20)
            },
        )
    } else {
        PreflightCheck::new(
            "free-space",
            false,
            true,
            format!(
                "less than {} MiB free for the journal and the run on {}: free some space",
                p.min_free_mb,
                named(&short)
            ),
        )
    }
}

fn reboot(p: &Probe<'_>) -> PreflightCheck {
    if p.reboot_file.exists() {
        PreflightCheck::new(
            "reboot",
            false,
            true,
            format!(
                "a reboot is pending ({} exists): reboot the device before its migration",
                p.reboot_file.display()
            ),
        )
    } else {
        PreflightCheck::new("reboot", true, true, "no reboot pending")
    }
}

/// The program a command line starts (its first word).
fn program(line: &str) -> Option<&str> {
    line.split_whitespace().next()
}

fn found(p: &Probe<'_>, prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |f: &Path| {
        std::fs::metadata(f).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        return runnable(Path::new(prog));
    }
    p.search_path.iter().any(|d| runnable(&d.join(prog)))
}

fn commands(p: &Probe<'_>) -> PreflightCheck {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for r in p.runbooks {
        let ds = &r.device_state;
        for (what, line) in [
            ("leave_command", &ds.leave_command),
            ("join_command", &ds.join_command),
        ] {
            if let Some(prog) = line.as_deref().and_then(program) {
                wanted.push((prog.to_string(), format!("{}'s {what}", r.name)));
            }
        }
        let scripts = r
            .startup
            .pre_migration_scripts
            .iter()
            .chain(&r.completion.post_migration_scripts)
            .chain(&r.app_reconfiguration.commands);
        for s in scripts {
            wanted.push((
                s.interpreter.clone(),
                format!("{}'s script `{}`", r.name, s.name),
            ));
        }
    }
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(prog, _)| !found(p, prog))
        .map(|(prog, why)| format!("`{prog}` ({why})"))
        .collect();
    if missing.is_empty() {
        PreflightCheck::new(
            "commands",
            true,
            true,
            format!("{} command(s) the runbooks run are installed", wanted.len()),
        )
    } else {
        PreflightCheck::new(
            "commands",
            false,
            true,
            format!(
                "not installed: {}: install them or fix the runbook",
                named(&missing)
            ),
        )
    }
}

fn sessions(p: &Probe<'_>) -> PreflightCheck {
    // Not blocking: an enforced run waits for them to end, an offered one is started by its user.
    PreflightCheck::new(
        "sessions",
        p.sessions == 0,
        false,
        if p.sessions == 0 {
            "nobody is signed in".to_string()
        } else {
            format!(
                "{} session(s) open: an enforced run waits until nobody is signed in",
                p.sessions
            )
        },
    )
}

/// Processes (other than this one) holding a file open under the run's paths.
fn open_files(p: &Probe<'_>) -> PreflightCheck {
    let me = std::process::id().to_string();
    let mut holders = Vec::new();
    // Another user's /proc/PID/fd needs CAP_SYS_PTRACE, which the packaged unit does not give
    // (it would let runbook scripts take over any process): those are counted and said.
    let mut unseen = 0;
    if let Ok(procs) = std::fs::read_dir(p.proc_dir) {
        for e in procs.flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let fds = match std::fs::read_dir(e.path().join("fd")) {
                Ok(fds) => fds,
                Err(e) => {
                    unseen += usize::from(e.kind() == std::io::ErrorKind::PermissionDenied);
                    continue;
                }
            };
            // Named by the folder right under a migrated path (a home), not by the file: the
            // detail is shown to every local user (status.json) and a file's name in another
            // user's home is theirs.
            let hit = fds.flatten().find_map(|fd| {
                let target = std::fs::read_link(fd.path()).ok()?;
                p.paths.iter().find_map(|root| {
                    let rest = target.strip_prefix(root).ok()?;
                    let under = rest.components().next().map(|c| root.join(c));
                    Some(match under {
                        Some(dir) if dir != target && dir.is_dir() => dir,
                        _ => root.clone(),
                    })
                })
            });
            if let Some(t) = hit {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                holders.push(format!(
                    "{} ({pid}) has a file open under {}",
                    comm.trim(),
                    t.display()
                ));
            }
        }
    }
    holders.sort();
    // Not blocking: ownership and ACLs change under an open file; a program writing during the
    // run may create files the run has passed (the post-flight finds them).
    let mut detail = if holders.is_empty() {
        "no process holds a file open under the paths to migrate".to_string()
    } else {
        format!(
            "{} process(es) hold files open under the paths to migrate: {}",
            holders.len(),
            named(&holders)
        )
    };
    if unseen > 0 {
        detail.push_str(&format!(
            " ({unseen} process(es) not looked into: the agent lacks CAP_SYS_PTRACE)"
        ));
    }
    PreflightCheck::new("open-files", holders.is_empty(), false, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe<'a>(dir: &'a Path, runbooks: &'a [Runbook]) -> Probe<'a> {
        Probe {
            state_dir: dir,
            paths: vec![dir.join("home")],
            runbooks,
            sessions: 0,
            reboot_file: Box::leak(dir.join("reboot-required").into_boxed_path()),
            min_free_mb: 1,
            proc_dir: Path::new("/proc"),
            search_path: std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .collect(),
        }
    }

    fn check<'a>(c: &'a [PreflightCheck], name: &str) -> &'a PreflightCheck {
        c.iter().find(|x| x.check == name).unwrap()
    }

    /// Review finding: the server refuses a pre-flight whose check's detail passes 2,000 bytes
    /// (`agent_api.rs` `check_preflight`: the whole check-in, 400), and the agent then re-sends
    /// the same stored pre-flight at every check-in. A local user holding one file with a long
    /// path open under their home makes `open-files` write such a detail.
    #[test]
    fn review_a_users_long_open_path_keeps_the_preflight_within_the_servers_bound() {
        let d = tempfile::tempdir().unwrap();
        let mut deep = d.path().join("home");
        for i in 0..9 {
            deep.push(format!("{i}{}", "x".repeat(249)));
        }
        std::fs::create_dir_all(&deep).unwrap();
        let held = deep.join("held.txt");
        std::fs::write(&held, "x").unwrap();
        let rbs: [Runbook; 0] = [];
        let p = probe(d.path(), &rbs);
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$1\"; echo ready; sleep 30")
            .arg("sh")
            .arg(&held)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let c = run(&p);
        let _ = child.kill();
        let _ = child.wait();
        let o = check(&c, "open-files");
        assert!(!o.ok, "{o:?}");
        assert!(
            o.detail.len() <= 2000,
            "open-files detail is {} bytes: the server refuses the whole check-in",
            o.detail.len()
        );
    }

    /// Catches: a device with a pending reboot, a missing join command or a full disk starting
    /// its run; a held file going unreported.
    #[test]
    fn each_check_fails_on_its_own_cause() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("home")).unwrap();
        let mut rb: Runbook = serde_json::from_value(serde_json::json!({
            "name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
            "device_state": {"leave_command": "sh -c true", "join_command": "/usr/sbin/realm-missing join fabrikam.test"},
            "startup": {"pre_migration_scripts": [{"name": "x", "interpreter": "sh", "body": "true"}]}
        }))
        .unwrap();
        let rbs = [rb.clone()];
        let mut p = probe(d.path(), &rbs);
        let c = run(&p);
        assert!(check(&c, "free-space").ok, "{c:?}");
        assert!(check(&c, "reboot").ok);
        let cmd = check(&c, "commands");
        assert!(!cmd.ok && cmd.blocking, "{cmd:?}");
        assert!(cmd.detail.contains("/usr/sbin/realm-missing"), "{cmd:?}");
        assert!(!cmd.detail.contains("`sh`"), "{cmd:?}");
        assert!(check(&c, "open-files").ok);

        rb.device_state.join_command = Some("sh -c 'realm join'".into());
        let rbs = [rb];
        p.runbooks = &rbs;
        std::fs::write(p.reboot_file, "").unwrap();
        p.sessions = 2;
        p.min_free_mb = u64::MAX >> 21;
        let c = run(&p);
        assert!(check(&c, "commands").ok, "{c:?}");
        let r = check(&c, "reboot");
        assert!(!r.ok && r.blocking && r.detail.contains("reboot-required"));
        let s = check(&c, "sessions");
        assert!(!s.ok && !s.blocking && s.detail.contains("2 session(s)"));
        let f = check(&c, "free-space");
        assert!(
            !f.ok && f.blocking && f.detail.contains("MiB free"),
            "{f:?}"
        );

        // A process holding a file open under a migrated home.
        let held = d.path().join("home/held.txt");
        std::fs::write(&held, "x").unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$1\"; echo ready; sleep 30")
            .arg("sh")
            .arg(&held)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let c = run(&p);
        let _ = child.kill();
        let _ = child.wait();
        let o = check(&c, "open-files");
        assert!(!o.ok && !o.blocking, "{o:?}");
        assert!(
            o.detail.contains(&format!(
                "a file open under {}",
                d.path().join("home").display()
            )),
            "{o:?}"
        );
        assert!(
            !o.detail.contains("held.txt"),
            "the file's name is its owner's: {o:?}"
        );
    }
}

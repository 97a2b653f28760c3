//! A local unprivileged user racing the re-permissioning engine, which runs as root (the agent's
//! `repermission` step, `ferry repermission` and its undo).
//!
//! The attacker owns directories inside the migrated tree (the usual case: their home) and keeps
//! exchanging, with `renameat2(RENAME_EXCHANGE)`, setuid files for symlinks to a root-owned canary
//! and subdirectories for symlinks to a directory outside the tree, while the forward run and the
//! undo run. What it would catch: a change made by path after the check (`chmod` following a
//! swapped-in symlink made the root canary `-rwsr-xr-x` within three tries), a walk led outside the
//! tree through a swapped directory (the outside canary, owned by a source uid, would be
//! translated), and an undo that restores by path onto another inode.
//!
//! Needs root; `scripts/test` runs it. Not a libtest harness: this binary is also the racer
//! (`FERRY_RACER=DIR`, started as uid 3000), so that no test stands in for a helper program.

#![allow(clippy::unwrap_used)] // a test fails loudly on purpose

use ferry_agent::repermission::{self, Map, Mode, Options, Summary};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};

const ATTACKER: u32 = 3000;
const SOURCE: u32 = 1001;
const TARGET: u32 = 2001;
const FILES: usize = 400;
const DIRS: usize = 20;
const ITERATIONS: usize = 12;

fn main() -> ExitCode {
    if let Ok(dir) = std::env::var("FERRY_RACER") {
        racer(Path::new(&dir));
        return ExitCode::SUCCESS;
    }
    if rustix::process::getuid().as_raw() != 0 {
        if std::env::var("FERRY_REQUIRE_SERVERS").as_deref() == Ok("1") {
            eprintln!("race: scripts/test must run this as root");
            return ExitCode::FAILURE;
        }
        eprintln!("race: skipped (needs root to change owners)");
        return ExitCode::SUCCESS;
    }
    let modes = [Mode::AddAndRemove, Mode::Add];
    for i in 0..ITERATIONS {
        scenario(i, modes[i % 2]);
    }
    println!(
        "race: {ITERATIONS} forward runs and undos raced by an unprivileged user; no change outside the tree"
    );
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
    ExitCode::SUCCESS
}

/// The racer: exchanges every `fN` with its symlink `lN`, and every `dN` with `dlN`, until `stop`
/// appears.
fn racer(base: &Path) {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let race = base.join("tree/race");
    let dirs = base.join("tree/dirs");
    let pairs: Vec<(PathBuf, PathBuf)> = (0..FILES)
        .map(|i| (race.join(format!("f{i}")), race.join(format!("l{i}"))))
        .chain((0..DIRS).map(|i| (dirs.join(format!("d{i}")), dirs.join(format!("dl{i}")))))
        .collect();
    let stop = base.join("stop");
    let mut n = 0u64;
    loop {
        for (a, b) in &pairs {
            let _ = renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE);
        }
        n += 1;
        if n.is_multiple_of(4) && stop.exists() {
            return;
        }
    }
}

fn start_racer(base: &Path) -> Child {
    let _ = std::fs::remove_file(base.join("stop"));
    Command::new(std::env::current_exe().unwrap())
        .env("FERRY_RACER", base)
        .uid(ATTACKER)
        .gid(ATTACKER)
        .spawn()
        .unwrap()
}

fn stop_racer(base: &Path, mut c: Child) {
    std::fs::write(base.join("stop"), "").unwrap();
    let s = c.wait().unwrap();
    assert!(s.success(), "the racer failed: {s}");
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
}

fn setfacl(args: &str, p: &Path) {
    let o = Command::new("setfacl")
        .args(args.split(' '))
        .arg(p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Everything about a file the engine could change: owner, group, mode, content and ACLs.
fn fingerprint(p: &Path) -> String {
    let m = std::fs::symlink_metadata(p).unwrap();
    let acl = |name: &str| {
        let mut buf = vec![0u8; 4096];
        match rustix::fs::lgetxattr(p, name, &mut buf[..]) {
            Ok(n) => format!("{:?}", &buf[..n]),
            Err(e) => e.to_string(),
        }
    };
    format!(
        "{} {}:{} {:o} {:?} {} {}",
        p.display(),
        m.uid(),
        m.gid(),
        m.mode(),
        if m.is_dir() {
            Vec::new()
        } else {
            std::fs::read(p).unwrap()
        },
        acl("system.posix_acl_access"),
        acl("system.posix_acl_default"),
    )
}

struct Canaries {
    paths: Vec<PathBuf>,
    before: Vec<String>,
}

impl Canaries {
    fn check(&self, when: &str) {
        for (p, b) in self.paths.iter().zip(&self.before) {
            assert_eq!(
                &fingerprint(p),
                b,
                "{when}: a file outside the tree changed"
            );
        }
    }
}

fn setup(base: &Path) -> Canaries {
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's file, and a file of a source user outside the tree (a walk led outside would
    // translate it).
    let root_canary = outside.join("canary");
    std::fs::write(&root_canary, "root's secret\n").unwrap();
    std::fs::set_permissions(&root_canary, std::fs::Permissions::from_mode(0o600)).unwrap();
    let src_canary = outside.join("canary-src");
    std::fs::write(&src_canary, "a source user's file outside the tree\n").unwrap();
    chown(&src_canary, SOURCE);
    std::fs::set_permissions(&src_canary, std::fs::Permissions::from_mode(0o640)).unwrap();
    setfacl("-m u:1002:r", &src_canary);
    let tree = base.join("tree");
    let race = tree.join("race");
    let dirs = tree.join("dirs");
    for d in [&tree, &race, &dirs] {
        std::fs::create_dir_all(d).unwrap();
        chown(d, ATTACKER);
    }
    for i in 0..FILES {
        let f = race.join(format!("f{i}"));
        std::fs::write(&f, "#!/bin/sh\necho hi\n").unwrap();
        chown(&f, SOURCE);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).unwrap();
        if i % 4 == 0 {
            setfacl("-m u:1002:rx", &f);
        }
        let target = if i % 2 == 0 {
            &root_canary
        } else {
            &src_canary
        };
        let l = race.join(format!("l{i}"));
        std::os::unix::fs::symlink(target, &l).unwrap();
        chown(&l, ATTACKER);
    }
    for i in 0..DIRS {
        let d = dirs.join(format!("d{i}"));
        std::fs::create_dir(&d).unwrap();
        chown(&d, ATTACKER);
        for j in 0..10 {
            let g = d.join(format!("g{j}"));
            std::fs::write(&g, "x").unwrap();
            chown(&g, SOURCE);
            std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o6750)).unwrap();
        }
        let l = dirs.join(format!("dl{i}"));
        std::os::unix::fs::symlink(&outside, &l).unwrap();
        chown(&l, ATTACKER);
    }
    let paths = vec![outside.clone(), root_canary, src_canary];
    let before = paths.iter().map(|p| fingerprint(p)).collect();
    Canaries { paths, before }
}

/// Regular files of the tree (wherever the racer left them) with their owner and mode.
fn files(tree: &Path) -> Vec<(PathBuf, u32, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.push((p, m.uid(), m.mode()));
            }
        }
    }
    out
}

/// The names a directory of the tree may have had while the racer ran (`dN` and `dlN` swap).
fn aliases(dir: &Path) -> Vec<PathBuf> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let other = match (name.strip_prefix("dl"), name.strip_prefix('d')) {
        (Some(i), _) => format!("d{i}"),
        (None, Some(i)) => format!("dl{i}"),
        _ => return vec![dir.to_path_buf()],
    };
    vec![dir.to_path_buf(), dir.with_file_name(other)]
}

/// Every file is in `want` (owner) or a failure was reported in its directory (under a name the
/// directory had during the run).
fn outcome(tree: &Path, s: &Summary, want: u32, when: &str) {
    for (p, uid, mode) in files(tree) {
        assert!(
            uid == SOURCE || uid == TARGET,
            "{when}: {} is owned by {uid}",
            p.display()
        );
        if uid != want {
            let dirs = aliases(p.parent().unwrap());
            assert!(
                s.failures
                    .iter()
                    .any(|(f, _)| dirs.iter().any(|d| f.starts_with(d))),
                "{when}: {} was left at uid {uid} without a failure reported in its directory; {} failures, the first: {:?}",
                p.display(),
                s.failures.len(),
                &s.failures[..s.failures.len().min(5)]
            );
        }
        // setuid/setgid kept only where the owner is the journaled one or its translation.
        if mode & 0o6000 != 0 {
            assert!(uid == SOURCE || uid == TARGET, "{when}: {}", p.display());
        }
    }
}

fn scenario(i: usize, mode: Mode) {
    let base = tempfile::Builder::new()
        .prefix("ferry-race")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let canaries = setup(base.path());
    let map = Map::parse(&format!(
        "source,target\nuid:{SOURCE},uid:{TARGET}\ngid:{SOURCE},gid:{TARGET}\nuid:1002,uid:2002\n"
    ))
    .unwrap();
    let opts = Options {
        mode,
        what_if: false,
        excludes: vec![],
        ignore: vec![],
        threads: 4,
        cross_devices: false,
    };
    let tree = base.path().join("tree");
    let journal = base.path().join("journal");
    let racer = start_racer(base.path());
    let fwd = repermission::run(std::slice::from_ref(&tree), &map, &opts, Some(&journal));
    stop_racer(base.path(), racer);
    let fwd = fwd.unwrap();
    canaries.check(&format!("iteration {i}, forward run ({mode:?})"));
    if mode == Mode::AddAndRemove {
        outcome(&tree, &fwd, TARGET, &format!("iteration {i}, forward run"));
    }
    let racer = start_racer(base.path());
    let undo = repermission::undo(&journal, 4);
    stop_racer(base.path(), racer);
    let undo = undo.unwrap();
    canaries.check(&format!("iteration {i}, undo"));
    outcome(&tree, &undo, SOURCE, &format!("iteration {i}, undo"));
    eprintln!(
        "race: iteration {i} ({mode:?}): forward {} changed, {} failed; undo {} restored, {} failed",
        fwd.changed, fwd.failed, undo.changed, undo.failed
    );
}

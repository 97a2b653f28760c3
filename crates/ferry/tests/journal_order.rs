//! The journal survives power loss: `ferry repermission` is run under `strace`, and every change it
//! makes to a file (owner, mode, ACL) must come after an `fdatasync` of the journal that began after
//! the write holding that file's record. A crash or power cut at any instant then leaves no change on
//! disk without its durable record, so undo is complete. Would catch: records written but synced only
//! at the end (or never), a change applied before its batch's sync, a sync begun before the write it
//! is meant to cover, and any file changed that has no record at all.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// One system call as strace saw it: where it began and ended in the trace, its name, its
/// arguments as printed, and its return as printed.
struct Call {
    start: usize,
    end: usize,
    name: String,
    args: String,
    ret: String,
}

/// Reads `strace -f -y` output, joining `<unfinished ...>` and `<... resumed>` halves.
fn calls(trace: &str) -> Vec<Call> {
    let mut open: HashMap<String, (usize, String, String)> = HashMap::new();
    let mut out = Vec::new();
    for (i, line) in trace.lines().enumerate() {
        let (pid, rest) = match line.split_once(' ') {
            Some((p, r)) if p.bytes().all(|b| b.is_ascii_digit()) => {
                (p.to_string(), r.trim_start())
            }
            _ => (String::new(), line),
        };
        if let Some(r) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = r.split_once(" resumed>") else {
                continue;
            };
            let Some((start, n, head)) = open.remove(&pid) else {
                continue;
            };
            assert_eq!(n, name, "strace resumed another call than it left: {line}");
            let whole = format!("{head}{tail}");
            let (args, ret) = split_ret(&whole);
            out.push(Call {
                start,
                end: i,
                name: n,
                args,
                ret,
            });
            continue;
        }
        let Some((name, after)) = rest.split_once('(') else {
            continue;
        };
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        if let Some(head) = after.strip_suffix(" <unfinished ...>") {
            open.insert(pid, (i, name.to_string(), head.to_string()));
            continue;
        }
        let (args, ret) = split_ret(after);
        out.push(Call {
            start: i,
            end: i,
            name: name.to_string(),
            args,
            ret,
        });
    }
    out
}

/// `ARGS) = RET` → (ARGS, RET).
fn split_ret(s: &str) -> (String, String) {
    match s.rfind(" = ") {
        Some(k) => {
            let args = s[..k].trim_end();
            let args = args.strip_suffix(')').unwrap_or(args);
            (args.to_string(), s[k + 3..].to_string())
        }
        None => (s.to_string(), String::new()),
    }
}

/// The path strace's `-y` printed for a descriptor: `7</a/b>` → `/a/b`.
fn fd_path(arg: &str) -> Option<(i64, String)> {
    let lt = arg.find('<')?;
    let fd = arg[..lt].parse().ok()?;
    let rest = &arg[lt + 1..];
    let gt = rest.find('>')?;
    Some((fd, rest[..gt].to_string()))
}

/// The first quoted string in `s`, unescaped.
fn quoted(s: &str) -> Option<String> {
    let q = s.find('"')?;
    let mut out = String::new();
    let mut chars = s[q + 1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

#[test]
fn every_change_follows_the_durable_record_of_it() {
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        assert_ne!(
            std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
            Ok("1"),
            "scripts/test must run this as root"
        );
        eprintln!("skipping: needs root");
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        assert_ne!(
            std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
            Ok("1"),
            "scripts/test installs strace; it is missing"
        );
        eprintln!("skipping: needs strace");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("tree");
    // A home owned by the user being migrated, with plain files, setuid/setgid programs (mode put
    // back after chown) and files whose ACL names the user (ACL rewritten).
    for (k, dir) in ["Smith, Ann/docs", "Smith, Ann/bin", "O'Brien, Sean/share"]
        .iter()
        .enumerate()
    {
        let dir = t.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..300 {
            let f = dir.join(format!("report {j}, final.txt"));
            std::fs::write(&f, "x").unwrap();
            std::os::unix::fs::chown(&f, Some(2001 + k as u32), Some(2101)).unwrap();
            if j % 10 == 0 {
                std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o6755))
                    .unwrap();
            }
            if j % 10 == 5 {
                let o = Command::new("setfacl")
                    .args(["-m", &format!("u:{}:rw,g:2101:r", 2001 + k)])
                    .arg(&f)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "setfacl: {o:?}");
            }
        }
        std::os::unix::fs::chown(&dir, Some(2001 + k as u32), Some(2101)).unwrap();
    }
    let map = d.path().join("map.csv");
    std::fs::write(
        &map,
        "source,target\nuid:2001,uid:6001\nuid:2002,uid:6002\nuid:2003,uid:6003\ngid:2101,gid:6101\n",
    )
    .unwrap();
    let journal = d.path().join("journal");
    let trace = d.path().join("trace");
    let out = Command::new("strace")
        .args(["-f", "-y", "-qq", "-s", "10000000", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=openat,open,write,pwrite64,writev,fdatasync,fsync,fchownat,fchown,lchown,chown,fchmodat,?fchmodat2,fchmod,chmod,setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr",
        ])
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .arg("repermission")
        .arg("--map")
        .arg(&map)
        .arg("--journal")
        .arg(&journal)
        .args(["--threads", "4"])
        .arg(&t)
        .output()
        .unwrap();
    assert!(out.status.success(), "ferry repermission: {out:?}");
    let trace = std::fs::read_to_string(&trace).unwrap();
    let calls = calls(&trace);
    let journal_path = journal.display().to_string();
    let tree = t.display().to_string();

    let mut fds: HashMap<i64, String> = HashMap::new();
    let mut recorded: HashMap<String, usize> = HashMap::new();
    let mut syncs: Vec<(usize, usize)> = Vec::new();
    let mut changes: Vec<(usize, &'static str, String)> = Vec::new();
    for c in &calls {
        if c.ret.starts_with('-') {
            continue; // failed calls change nothing
        }
        match c.name.as_str() {
            "openat" | "open" => {
                if let Some((fd, p)) = fd_path(&c.ret) {
                    fds.insert(fd, p);
                }
            }
            "write" | "pwrite64" | "writev" => {
                if fd_path(&c.args).map(|(_, p)| p) == Some(journal_path.clone()) {
                    assert!(
                        !c.args.contains("\"..."),
                        "strace cut a journal write short; raise -s"
                    );
                    for rec in c.args.split("\\\"path\\\":\\\"").skip(1) {
                        let p = rec.split("\\\"").next().unwrap().to_string();
                        recorded.entry(p).or_insert(c.end);
                    }
                }
            }
            "fdatasync" | "fsync" => {
                if fd_path(&c.args).map(|(_, p)| p) == Some(journal_path.clone()) {
                    syncs.push((c.start, c.end));
                }
            }
            name => {
                // The changed inode: a descriptor (fchown, fchownat with AT_EMPTY_PATH, fsetxattr),
                // a /proc/self/fd/N magic link, or a plain path.
                let kind = match name {
                    n if n.contains("chown") => "owner",
                    n if n.contains("chmod") => "mode",
                    _ => "acl",
                };
                let target = if c.args.starts_with("AT_FDCWD") || c.args.starts_with('"') {
                    let p = quoted(&c.args).unwrap();
                    match p.strip_prefix("/proc/self/fd/") {
                        Some(n) => {
                            let (n, entry) = n.split_once('/').unwrap_or((n, ""));
                            let dir = fds.get(&n.parse::<i64>().unwrap()).cloned().unwrap();
                            if entry.is_empty() {
                                dir
                            } else {
                                format!("{dir}/{entry}")
                            }
                        }
                        None => p,
                    }
                } else {
                    let (_, dir) = fd_path(&c.args)
                        .unwrap_or_else(|| panic!("unreadable change call {}({})", c.name, c.args));
                    let rest = &c.args[c.args.find('>').unwrap()..];
                    match quoted(rest) {
                        Some(name) if name.starts_with('/') => name,
                        Some(name) if !name.is_empty() && c.name.ends_with("at") => {
                            format!("{dir}/{name}")
                        }
                        _ => dir,
                    }
                };
                changes.push((c.start, kind, target));
            }
        }
    }
    for kind in ["owner", "mode", "acl"] {
        assert!(
            changes.iter().any(|(_, k, _)| *k == kind),
            "the trace shows no {kind} change: the test would prove nothing"
        );
    }
    let mut checked = 0;
    for (at, kind, path) in &changes {
        assert!(
            path.starts_with(&tree),
            "changed {path} ({kind}) outside the tree {tree}"
        );
        let Some(&written) = recorded.get(path) else {
            panic!("{kind} of {path} changed with no journal record written before it");
        };
        assert!(
            written < *at,
            "{kind} of {path} changed before its record was written"
        );
        assert!(
            syncs.iter().any(|&(s, e)| s > written && e < *at),
            "{kind} of {path} changed before the journal write holding its record was made durable"
        );
        checked += 1;
    }
    // The run did its work (the trace was of a real run, not an early exit).
    for (k, dir) in ["Smith, Ann/docs", "Smith, Ann/bin", "O'Brien, Sean/share"]
        .iter()
        .enumerate()
    {
        let m = std::fs::metadata(t.join(dir).join("report 10, final.txt")).unwrap();
        assert_eq!((m.uid(), m.gid()), (6001 + k as u32, 6101));
        assert_eq!(m.mode() & 0o7777, 0o6755, "setuid/setgid put back");
    }
    assert!(checked >= 900, "only {checked} changes traced");
    eprintln!(
        "journal order: {checked} changes, {} journal writes' records, {} syncs",
        recorded.len(),
        syncs.len()
    );
}

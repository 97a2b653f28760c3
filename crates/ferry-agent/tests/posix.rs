//! The engine on real files, read back with `stat` and `getfacl` (needs root to chown; CI runs as
//! root, and scripts/test installs `acl`).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_agent::repermission::{self, Map, Mode, Options};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> bool {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if uid != 0 {
        assert_ne!(
            std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
            Ok("1"),
            "scripts/test must run these as root"
        );
        eprintln!("skipping: changing owners needs root");
    }
    uid == 0
}

fn sh(cmd: &str) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A tree with every kind of entry: files, directories, symlinks inside and outside, hard links,
/// a fifo, setuid/setgid files, access and default ACLs, names with spaces and a newline.
fn tree(base: &Path) -> (PathBuf, PathBuf) {
    let t = base.join("tree");
    let outside = base.join("outside.txt");
    std::fs::create_dir_all(t.join("docs/deep dir")).unwrap();
    std::fs::create_dir_all(t.join("shared")).unwrap();
    std::fs::write(&outside, "outside").unwrap();
    for (p, uid, gid) in [
        ("docs/a.txt", 1001, 1501),
        ("docs/deep dir/b c.txt", 1002, 1502),
        ("shared/s.bin", 1001, 1502),
        ("keep.txt", 3000, 3000),
    ] {
        std::fs::write(t.join(p), p).unwrap();
        std::os::unix::fs::chown(t.join(p), Some(uid), Some(gid)).unwrap();
    }
    std::fs::write(t.join("new\nline.txt"), "x").unwrap();
    std::os::unix::fs::chown(t.join("new\nline.txt"), Some(1001), Some(1501)).unwrap();
    std::os::unix::fs::chown(t.join("docs"), Some(1001), Some(1501)).unwrap();
    std::fs::write(t.join("suid"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(t.join("suid"), Some(1002), Some(1502)).unwrap();
    std::fs::set_permissions(t.join("suid"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    std::fs::hard_link(t.join("docs/a.txt"), t.join("shared/a-link.txt")).unwrap();
    std::os::unix::fs::symlink("../docs/a.txt", t.join("shared/inside-link")).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("outside-link")).unwrap();
    std::os::unix::fs::lchown(t.join("outside-link"), Some(1001), Some(1501)).unwrap();
    sh(&format!("mkfifo '{}'", t.join("fifo").display()));
    std::os::unix::fs::chown(t.join("fifo"), Some(1002), Some(1501)).unwrap();
    sh(&format!(
        "setfacl -m u:1001:rw,u:1002:r,g:1501:rwx,u:4000:r '{}' && setfacl -m d:u:1002:rwx,d:g:1502:rx,u:1001:rwx '{}' && setfacl -m u:1001:r '{}'",
        t.join("docs/a.txt").display(),
        t.join("shared").display(),
        t.join("docs/deep dir/b c.txt").display()
    ));
    (t, outside)
}

/// `stat` of every entry (path, uid, gid, mode) and `getfacl` of the tree.
fn dump(t: &Path, outside: &Path) -> String {
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
    let m = std::fs::metadata(outside).unwrap();
    out.push(format!("outside {} {}", m.uid(), m.gid()));
    let facl = Command::new("getfacl")
        .args(["-R", "-P", "-n", "--absolute-names"])
        .arg(t)
        .output()
        .unwrap();
    assert!(facl.status.success());
    let mut f: Vec<String> = String::from_utf8_lossy(&facl.stdout)
        .split("\n\n")
        .map(str::to_string)
        .collect();
    f.sort();
    format!("{}\n{}", out.join("\n"), f.join("\n\n"))
}

fn map() -> Map {
    Map::parse(
        "source,target\nuid:1001,uid:2001\nuid:1002,uid:2002\ngid:1501,gid:1601\ngid:1502,gid:1602\n",
    )
    .unwrap()
}

fn opts(mode: Mode) -> Options {
    Options {
        mode,
        what_if: false,
        excludes: vec![],
        ignore: vec![],
        threads: 4,
        cross_devices: false,
    }
}

/// A real run over `t` with the test map, journaled.
fn run(t: &Path, mode: Mode, journal: &Path) -> repermission::Summary {
    repermission::run(&[t.to_path_buf()], &map(), &opts(mode), Some(journal)).unwrap()
}

fn getfacl(p: &Path) -> String {
    String::from_utf8_lossy(
        &Command::new("getfacl")
            .args(["-n", "-P", "--absolute-names"])
            .arg(p)
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[test]
fn add_and_remove_translates_everything_and_undo_restores_it_exactly() {
    if !root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (t, outside) = tree(d.path());
    let before = dump(&t, &outside);
    let journal = d.path().join("journal");

    // What-if changes nothing.
    let w = repermission::run(
        std::slice::from_ref(&t),
        &map(),
        &Options {
            what_if: true,
            ..opts(Mode::AddAndRemove)
        },
        Some(&journal),
    )
    .unwrap();
    assert!(w.changed >= 9, "{w:?}");
    assert_eq!(dump(&t, &outside), before);
    assert!(!journal.exists());

    let s = run(&t, Mode::AddAndRemove, &journal);
    assert_eq!((s.changed, s.failed), (w.changed, 0), "{s:?}");
    let md = |p: &str| std::fs::symlink_metadata(t.join(p)).unwrap();
    assert_eq!(
        (md("docs/a.txt").uid(), md("docs/a.txt").gid()),
        (2001, 1601)
    );
    assert_eq!(
        (
            md("docs/deep dir/b c.txt").uid(),
            md("docs/deep dir/b c.txt").gid()
        ),
        (2002, 1602)
    );
    assert_eq!(md("new\nline.txt").uid(), 2001);
    assert_eq!(md("keep.txt").uid(), 3000, "unmapped owners stay");
    assert_eq!(md("fifo").uid(), 2002);
    assert_eq!(
        md("outside-link").uid(),
        2001,
        "the link itself is re-owned"
    );
    assert_eq!(
        std::fs::metadata(&outside).unwrap().uid(),
        0,
        "its target outside the tree is not"
    );
    assert_eq!(
        md("suid").mode() & 0o7777,
        0o6755,
        "setuid and setgid survive the chown"
    );
    let a = getfacl(&t.join("docs/a.txt"));
    assert!(
        a.contains("user:2001:rw-")
            && a.contains("user:2002:r--")
            && a.contains("group:1601:rwx")
            && a.contains("user:4000:r--"),
        "{a}"
    );
    assert!(!a.contains(":1001:") && !a.contains(":1501:"), "{a}");
    let sh_acl = getfacl(&t.join("shared"));
    assert!(
        sh_acl.contains("default:user:2002:rwx")
            && sh_acl.contains("default:group:1602:r-x")
            && sh_acl.contains("user:2001:rwx"),
        "{sh_acl}"
    );

    // A second run writes nothing.
    let again = run(&t, Mode::AddAndRemove, &journal);
    assert_eq!(again.changed, 0, "{again:?}");
    // Undo restores stat and getfacl of every file exactly.
    let u = repermission::undo(&journal, 4).unwrap();
    assert_eq!(u.failed, 0, "{u:?}");
    assert_eq!(dump(&t, &outside), before);
}

/// Would catch: an agent upgraded in the middle of a migration that can no longer undo what the
/// previous version journaled. The journal is rewritten as version 1 wrote it (header
/// `ferry_journal: 1`, records without `new_uid`/`new_gid`); undo restores the tree exactly.
#[test]
fn a_version_1_journal_is_still_undone_exactly() {
    if !root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (t, outside) = tree(d.path());
    let before = dump(&t, &outside);
    let journal = d.path().join("journal");
    let s = run(&t, Mode::AddAndRemove, &journal);
    assert!(s.changed >= 9 && s.failed == 0, "{s:?}");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines = text.lines();
    let mut header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["ferry_journal"], 2);
    header["ferry_journal"] = 1.into();
    let mut v1 = vec![header.to_string()];
    for l in lines {
        let mut r: serde_json::Value = serde_json::from_str(l).unwrap();
        let o = r.as_object_mut().unwrap();
        assert!(
            o.remove("new_uid").is_some() && o.remove("new_gid").is_some(),
            "{l}"
        );
        v1.push(r.to_string());
    }
    std::fs::write(&journal, v1.join("\n") + "\n").unwrap();
    assert_ne!(dump(&t, &outside), before);
    let u = repermission::undo(&journal, 4).unwrap();
    assert_eq!(u.failed, 0, "{u:?}");
    assert_eq!(dump(&t, &outside), before);
}

#[test]
fn add_mode_keeps_the_source_and_gives_the_target_the_same_rights() {
    if !root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (t, outside) = tree(d.path());
    let before = dump(&t, &outside);
    let journal = d.path().join("journal");
    let s = run(&t, Mode::Add, &journal);
    assert_eq!(s.failed, 0, "{s:?}");
    let md = std::fs::metadata(t.join("docs/a.txt")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (1001, 1501),
        "owners are not changed in add mode"
    );
    let a = getfacl(&t.join("docs/a.txt"));
    for e in [
        "user:1001:rw-",
        "user:2001:rw-",
        "user:1002:r--",
        "user:2002:r--",
        "group:1501:rwx",
        "group:1601:rwx",
    ] {
        assert!(a.contains(e), "{e} missing:\n{a}");
    }
    // A plain file owned by a source gains a named entry for the target with the owner's rights.
    let n = getfacl(&t.join("new\nline.txt"));
    assert!(n.contains("user:2001:rw-"), "{n}");
    let again = run(&t, Mode::Add, &journal);
    assert_eq!(again.changed, 0, "add is idempotent: {again:?}");
    repermission::undo(&journal, 4).unwrap();
    assert_eq!(dump(&t, &outside), before);
}

#[test]
fn a_journal_refuses_another_map_and_excludes_are_honoured() {
    if !root() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (t, _) = tree(d.path());
    let journal = d.path().join("journal");
    let o = Options {
        excludes: vec![t.join("docs")],
        ..opts(Mode::AddAndRemove)
    };
    repermission::run(std::slice::from_ref(&t), &map(), &o, Some(&journal)).unwrap();
    // (docs/a.txt is also reachable through a hard link outside the excluded folder.)
    assert_eq!(
        std::fs::metadata(t.join("docs/deep dir/b c.txt"))
            .unwrap()
            .uid(),
        1002,
        "excluded"
    );
    assert_eq!(
        std::fs::metadata(t.join("shared/s.bin")).unwrap().uid(),
        2001
    );
    let other = Map::parse("source,target\nuid:1001,uid:7001\n").unwrap();
    let e = repermission::run(
        std::slice::from_ref(&t),
        &other,
        &opts(Mode::AddAndRemove),
        Some(&journal),
    )
    .unwrap_err();
    assert!(e.contains("another map"), "{e}");
}

#[test]
fn maps_are_checked() {
    assert!(Map::parse("from,to\n").unwrap_err().contains("line 1"));
    assert!(
        Map::parse("source,target\nuid:1001,gid:2001\n")
            .unwrap_err()
            .contains("line 2")
    );
    assert!(
        Map::parse("source,target\nuid:1001,uid:2001\nuid:2001,uid:3001\n")
            .unwrap_err()
            .contains("both a target")
    );
    assert!(
        Map::parse("source,target\nuid:1001,uid:2001\nuid:1001,uid:3001\n")
            .unwrap_err()
            .contains("twice")
    );
    let m = Map::parse("source,target\nS-1-5-21-1-2-3-1104,S-1-12-1-1-2-3-4\ngid:1010,gid:2020\n")
        .unwrap();
    assert_eq!((m.sids.len(), m.gids[&1010]), (1, 2020));
}

/// Would catch: a map (or a translation table) that gives a user's files to root, root's files to
/// a user, or a system account's; refused with the line or the profile named.
#[test]
fn privileged_ids_are_refused_with_the_entry_named() {
    for (map, want) in [
        (
            "uid:1001,uid:0",
            "line 2: `uid:1001` → `uid:0`: uid 0 is root",
        ),
        (
            "gid:0,gid:2001",
            "line 2: `gid:0` → `gid:2001`: gid 0 is root",
        ),
        ("uid:1001,uid:33", "uid 33 is below 1000"),
        (
            "S-1-5-21-1-2-3-1104,S-1-5-32-544",
            "BUILTIN\\Administrators",
        ),
    ] {
        let e = Map::parse(&format!("source,target\n{map}\n")).unwrap_err();
        assert!(e.contains(want), "{map}: {e}");
    }
    // The system range is configurable; root is not.
    assert!(Map::parse_with("source,target\nuid:1001,uid:33\n", 1).is_ok());
    assert!(Map::parse_with("source,target\nuid:1001,uid:0\n", 1).is_err());
    // An id kept as it is changes nothing and is allowed.
    assert!(Map::parse("source,target\ngid:100,gid:100\n").is_ok());
    // The device names the profile of a bad entry.
    let e = Map::from_translation(
        &[ferry_core::agent::ProfileTranslation {
            profile: "CONTOSO\\Smith, Ann".into(),
            source_uid: Some(1001),
            target_uid: Some(0),
            ..Default::default()
        }],
        1000,
    )
    .unwrap_err();
    assert!(
        e.contains("profile `CONTOSO\\Smith, Ann`") && e.contains("root"),
        "{e}"
    );
}

/// Effective rights per principal of one file as `getfacl` shows them (its own `#effective:`
/// reckoning): `u<ID>` for users (the owner by `user::`), `g<ID>` for groups (the owning group's
/// entry and a named one joined), `o` for others; and the file's mode.
fn effective(p: &Path) -> (std::collections::BTreeMap<String, String>, u32) {
    let text = getfacl(p);
    let (mut owner, mut group) = (String::new(), String::new());
    let mut out = std::collections::BTreeMap::<String, String>::new();
    let join = |a: &str, b: &str| -> String {
        a.chars()
            .zip(b.chars())
            .map(|(x, y)| if x != '-' { x } else { y })
            .collect()
    };
    for line in text.lines() {
        if let Some(o) = line.strip_prefix("# owner: ") {
            owner = o.to_string();
            continue;
        }
        if let Some(g) = line.strip_prefix("# group: ") {
            group = g.to_string();
            continue;
        }
        if line.starts_with('#') || line.starts_with("default:") || line.is_empty() {
            continue;
        }
        let (entry, eff) = match line.split_once("#effective:") {
            Some((e, x)) => (e.trim(), x.trim()),
            None => (line.trim(), ""),
        };
        let mut f = entry.splitn(3, ':');
        let (tag, id, perm) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let perm = if eff.is_empty() { perm } else { eff };
        let key = match (tag, id) {
            ("user", "") => format!("u{owner}"),
            ("user", id) if id == owner => continue, // shadowed by `user::`
            ("user", id) => format!("u{id}"),
            ("group", "") => format!("g{group}"),
            ("group", id) => format!("g{id}"),
            ("other", _) => "o".into(),
            _ => continue,
        };
        let v = match out.get(&key) {
            Some(prev) => join(prev, perm),
            None => perm.to_string(),
        };
        out.insert(key, v);
    }
    (out, std::fs::metadata(p).unwrap().mode() & 0o7777)
}

/// The key of [`effective`] a principal has after [`map`] translated it.
fn rename(k: &str) -> String {
    match k {
        "u1001" => "u2001".into(),
        "u1002" => "u2002".into(),
        "g1501" => "g1601".into(),
        "g1502" => "g1602".into(),
        k => k.to_string(),
    }
}

/// Would catch: re-permissioning widening a mask (issue 16, defect 1). A home owned by the user
/// being migrated, with a default ACL; a file created under it and then `chmod 640` (mask `r--`,
/// `user:1002:r-x #effective:r--`). In `add-and-remove` each target ends with its source's
/// effective rights and the mode stays 640; in `add` each target gains its source's effective
/// rights and no one else changes. Read back with `getfacl` and `stat`.
#[test]
fn a_file_chmod_narrower_than_its_default_acl_keeps_its_effective_rights() {
    if !root() {
        return;
    }
    for mode in [Mode::AddAndRemove, Mode::Add] {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home/ann");
        std::fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(1001), Some(1501)).unwrap();
        sh(&format!(
            "setfacl -m d:u:1002:rx,d:g:1501:rwx,d:g:1502:rw,d:m::rwx '{}'",
            home.display()
        ));
        let f = home.join("report.txt");
        std::fs::write(&f, "q3").unwrap();
        std::os::unix::fs::chown(&f, Some(1001), Some(1501)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (before, mode_before) = effective(&f);
        assert_eq!(
            (before["u1002"].as_str(), mode_before),
            ("r--", 0o640),
            "the set-up: {before:?}"
        );
        repermission::run(std::slice::from_ref(&home), &map(), &opts(mode), None).unwrap();
        let (after, mode_after) = effective(&f);
        let want: std::collections::BTreeMap<String, String> = match mode {
            Mode::AddAndRemove => before.iter().map(|(k, v)| (rename(k), v.clone())).collect(),
            Mode::Add => before
                .iter()
                .flat_map(|(k, v)| [(k.clone(), v.clone()), (rename(k), v.clone())])
                .collect(),
        };
        assert_eq!(after, want, "{mode:?}:\n{}", getfacl(&f));
        if mode == Mode::AddAndRemove {
            assert_eq!(mode_after, 0o640, "{}", getfacl(&f));
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Would catch: any random ACL on a real file (named users and groups, some mapped, a mask
    /// often narrower than the group class after a `chmod`, a default ACL on its directory) where
    /// a principal ends with other effective rights than the rule gives, read back with `getfacl`.
    #[test]
    fn random_acls_on_real_files_keep_the_effective_rights_rule(
        users in proptest::collection::btree_map(proptest::prop_oneof![1001u32..1003, 4000u32..4003], 0u32..8, 0..4),
        groups in proptest::collection::btree_map(proptest::prop_oneof![1501u32..1503, 4500u32..4502], 0u32..8, 0..3),
        chmod in 0u32..0o1000,
        setid in proptest::prop_oneof![proptest::strategy::Just(0u32), proptest::strategy::Just(0o4000), proptest::strategy::Just(0o2000)],
        add in proptest::bool::ANY,
    ) {
        if !root() {
            return Ok(());
        }
        let rwx = |p: u32| format!("{}{}{}", if p & 4 != 0 { 'r' } else { '-' }, if p & 2 != 0 { 'w' } else { '-' }, if p & 1 != 0 { 'x' } else { '-' });
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(1001), Some(1501)).unwrap();
        let mut spec: Vec<String> = users.iter().map(|(u, p)| format!("u:{u}:{}", rwx(*p))).collect();
        spec.extend(groups.iter().map(|(g, p)| format!("g:{g}:{}", rwx(*p))));
        let f = dir.join("f");
        std::fs::write(&f, "x").unwrap();
        std::os::unix::fs::chown(&f, Some(1001), Some(1501)).unwrap();
        if !spec.is_empty() {
            let defaults: Vec<String> = spec.iter().map(|e| format!("d:{e}")).collect();
            sh(&format!("setfacl -m '{}' '{}' && setfacl -m '{}' '{}'", spec.join(","), f.display(), defaults.join(","), dir.display()));
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(chmod | setid)).unwrap();
        let (before, _) = effective(&f);
        let mode = if add { Mode::Add } else { Mode::AddAndRemove };
        repermission::run(std::slice::from_ref(&dir), &map(), &opts(mode), None).unwrap();
        let (after, mode_after) = effective(&f);
        let want: std::collections::BTreeMap<String, String> = if add {
            before.iter().flat_map(|(k, v)| [(k.clone(), v.clone()), (rename(k), v.clone())]).collect()
        } else {
            before.iter().map(|(k, v)| (rename(k), v.clone())).collect()
        };
        proptest::prop_assert_eq!(&after, &want, "{:?}:\n{}", mode, getfacl(&f));
        if !add {
            proptest::prop_assert_eq!(mode_after & 0o777, chmod, "mode bits unchanged");
        }
        proptest::prop_assert_eq!(mode_after & 0o6000, setid, "setuid/setgid kept for an unprivileged owner");
    }
}

//! `ferry agent install` and `ferry agent uninstall` into a scratch root (`--root`, hidden): the
//! files, their modes and contents, the key in its own 0600 file and nowhere else (not in the
//! output either), the packaged unit preferred over a written one, uninstall leaving nothing it
//! did not find, and refusals that say what is wrong. The installation on this very machine, with
//! the Debian packages, is `scripts/test-packages`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const SECRET: &str = "pk-Zq7ΩsecretΩ-never-printed";
const SERVER: &str = "https://ferry.example.test:5443/agent";
const FP: &str = "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89";
const PACKAGED_UNIT: &str = include_str!("../../../packaging/ferry-agent.service");

/// Every file (not directory) below `root`, relative.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.symlink_metadata().unwrap().is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn install(root: &Path, extra: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec!["--server", SERVER, "agent", "install", "--fingerprint", FP];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--root", root.to_str().unwrap()]);
    ferry(&args, envs)
}

fn uninstall(root: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["agent", "uninstall", "--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    ferry(&args, &[])
}

/// Would catch: the key written into agent.env, the unit or the output; a world-readable key
/// file; a unit that does not run this binary or lost its sandbox; uninstall leaving a file.
#[test]
fn install_writes_the_key_apart_and_uninstall_removes_everything_it_wrote() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let o = install(r, &[], &[("FERRY_AGENT_PSK", SECRET)]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains(SECRET), "the key is in the output: {out}");
    for line in [
        "wrote /etc/ferry-agent/psk (0600",
        "wrote /etc/ferry-agent/agent.env (0644)",
        "wrote /etc/systemd/system/ferry-agent.service (0644): the unit, running ",
        "skipped systemctl: writing into ",
    ] {
        assert!(out.contains(line), "no `{line}` in: {out}");
    }
    assert_eq!(
        files(r),
        [
            "etc/ferry-agent/agent.env",
            "etc/ferry-agent/psk",
            "etc/systemd/system/ferry-agent.service"
        ]
        .map(PathBuf::from)
    );
    let psk = r.join("etc/ferry-agent/psk");
    assert_eq!(mode(&psk), 0o600);
    assert_eq!(
        std::fs::metadata(&psk).unwrap().uid(),
        std::fs::metadata(r).unwrap().uid(),
        "the key file belongs to whoever ran install (root on a device)"
    );
    assert_eq!(
        std::fs::read_to_string(&psk).unwrap(),
        format!("{SECRET}\n")
    );
    let env_file = r.join("etc/ferry-agent/agent.env");
    assert_eq!(mode(&env_file), 0o644);
    let env = std::fs::read_to_string(&env_file).unwrap();
    for line in [
        format!("FERRY_AGENT_SERVER={SERVER}"),
        format!("FERRY_AGENT_FINGERPRINT={FP}"),
        "FERRY_AGENT_STATE_DIR=/var/lib/ferry-agent".into(),
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "no `{line}` in agent.env:\n{env}"
        );
    }
    let unit_path = r.join("etc/systemd/system/ferry-agent.service");
    assert_eq!(mode(&unit_path), 0o644);
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert!(unit.starts_with("# Written by `ferry agent install`"));
    let exe = std::fs::canonicalize(FERRY).unwrap();
    assert!(
        unit.contains(&format!(
            "ExecStart={} agent run --server ${{FERRY_AGENT_SERVER}}",
            exe.display()
        )),
        "{unit}"
    );
    // The rest is the packaged unit, sandbox included.
    assert!(unit.ends_with(&PACKAGED_UNIT[PACKAGED_UNIT.find("Restart=").unwrap()..]));
    assert!(unit.contains("LoadCredential=psk:/etc/ferry-agent/psk"));
    // systemd's own reading of the written unit: it warns (exit 0) on what it ignores.
    match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
    {
        Ok(v) => assert!(
            v.status.success() && v.stdout.is_empty() && v.stderr.is_empty(),
            "systemd-analyze verify: {}",
            text(&v)
        ),
        Err(e) => println!("skipped systemd-analyze verify of the written unit: {e}"),
    }
    for f in files(r) {
        if f != Path::new("etc/ferry-agent/psk") {
            let t = std::fs::read(r.join(&f)).unwrap();
            assert!(
                !String::from_utf8_lossy(&t).contains(SECRET),
                "the key is in {}",
                f.display()
            );
        }
    }

    // Installing again replaces the configuration (a new key, the file given by --psk-file).
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), "second-key\n").unwrap();
    let o = install(r, &["--psk-file", key_file.path().to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&psk).unwrap(), "second-key\n");

    let o = uninstall(r, &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for line in [
        "removed /etc/systemd/system/ferry-agent.service",
        "removed /etc/ferry-agent/agent.env",
        "removed /etc/ferry-agent/psk",
        "removed /etc/ferry-agent/",
    ] {
        assert!(out.contains(line), "no `{line}` in: {out}");
    }
    assert_eq!(files(r), Vec::<PathBuf>::new(), "uninstall left files");
    assert!(!r.join("etc/ferry-agent").exists());
    let o = uninstall(r, &[]);
    assert!(text(&o).contains("nothing to remove"), "{}", text(&o));
}

/// Would catch: install writing its own unit over the package's (two units, the /etc one winning
/// silently), or uninstall deleting a file dpkg owns.
#[test]
fn the_packaged_unit_is_used_and_left_to_the_package() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let packaged = r.join("lib/systemd/system/ferry-agent.service");
    std::fs::create_dir_all(packaged.parent().unwrap()).unwrap();
    std::fs::write(&packaged, PACKAGED_UNIT).unwrap();
    let o = install(
        r,
        &["--psk", SECRET, "--state-dir", "/srv/agent state"],
        &[],
    );
    assert!(
        !o.status.success(),
        "a state directory with a space was taken"
    );
    assert!(
        text(&o).contains("--state-dir `/srv/agent state` holds ' '"),
        "{}",
        text(&o)
    );
    let o = install(
        r,
        &["--psk", SECRET, "--state-dir", "/srv/ferry-agent"],
        &[],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains(SECRET), "{out}");
    assert!(
        out.contains(
            "unit: /lib/systemd/system/ferry-agent.service (from the ferry-agent package)"
        ),
        "{out}"
    );
    assert!(!r.join("etc/systemd/system/ferry-agent.service").exists());
    assert!(
        std::fs::read_to_string(r.join("etc/ferry-agent/agent.env"))
            .unwrap()
            .contains("FERRY_AGENT_STATE_DIR=/srv/ferry-agent\n")
    );

    // The state directory the configuration names is kept (its journal undoes the last run),
    // and deleted with --purge.
    let state = r.join("srv/ferry-agent");
    std::fs::create_dir_all(state.join("runs")).unwrap();
    std::fs::write(state.join("status.json"), "{}").unwrap();
    let o = uninstall(r, &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("kept /srv/ferry-agent: its journal is what `ferry agent rollback --state-dir /srv/ferry-agent` undoes"), "{out}");
    assert!(state.join("status.json").exists());
    assert_eq!(std::fs::read_to_string(&packaged).unwrap(), PACKAGED_UNIT);
    // Without agent.env, uninstall looks at the default state directory; recreate the config.
    let o = install(
        r,
        &["--psk", SECRET, "--state-dir", "/srv/ferry-agent"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = uninstall(r, &["--purge"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("deleted /srv/ferry-agent (--purge)"),
        "{}",
        text(&o)
    );
    assert!(!state.exists());
    assert_eq!(
        files(r),
        [PathBuf::from("lib/systemd/system/ferry-agent.service")]
    );
}

/// Would catch: uninstall deleting a unit an administrator wrote, or --purge deleting a
/// directory that is not an agent's (a mistyped --state-dir).
#[test]
fn uninstall_leaves_what_it_did_not_write() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let unit = r.join("etc/systemd/system/ferry-agent.service");
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    std::fs::write(&unit, "[Service]\nExecStart=/opt/ferry agent run\n").unwrap();
    let not_agent = r.join("srv/data");
    std::fs::create_dir_all(&not_agent).unwrap();
    std::fs::write(not_agent.join("precious"), "x").unwrap();
    let cfg = r.join("etc/ferry-agent");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("agent.env"), "FERRY_AGENT_STATE_DIR=/srv/data\n").unwrap();
    let o = uninstall(r, &["--purge"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("left /etc/systemd/system/ferry-agent.service alone: `ferry agent install` did not write it"),
        "{out}"
    );
    assert!(
        out.contains("/srv/data is not an agent state directory"),
        "{out}"
    );
    assert!(unit.exists() && not_agent.join("precious").exists());
}

/// Would catch: an agent configured to talk plain HTTP, or to pin nothing, written to disk and
/// left to fail at its first start instead of refused here, with the reason.
#[test]
fn bad_inputs_are_refused_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let rs = r.to_str().unwrap();
    let empty = tempfile::NamedTempFile::new().unwrap();
    let not_hex = "zz".repeat(32);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--server",
                "http://ferry.example.test:5443/agent",
                "agent",
                "install",
                "--psk",
                SECRET,
                "--fingerprint",
                FP,
            ],
            "agents talk to the server over HTTPS only",
        ),
        (
            vec![
                "--server",
                "not a url",
                "agent",
                "install",
                "--psk",
                SECRET,
                "--fingerprint",
                FP,
            ],
            "--server `not a url`",
        ),
        (
            vec!["agent", "install", "--psk", SECRET, "--fingerprint", FP],
            "give --server URL: the agent endpoint",
        ),
        (
            vec![
                "--server",
                SERVER,
                "agent",
                "install",
                "--psk",
                SECRET,
                "--fingerprint",
                "abcd",
            ],
            "is not a SHA-256 fingerprint (64 hex digits",
        ),
        (
            vec![
                "--server",
                SERVER,
                "agent",
                "install",
                "--psk",
                SECRET,
                "--fingerprint",
                &not_hex,
            ],
            "is not a SHA-256 fingerprint",
        ),
        (
            vec!["--server", SERVER, "agent", "install", "--fingerprint", FP],
            "give the pre-shared key",
        ),
        (
            vec![
                "--server",
                SERVER,
                "agent",
                "install",
                "--psk-file",
                empty.path().to_str().unwrap(),
                "--fingerprint",
                FP,
            ],
            "the file is empty",
        ),
        (
            vec![
                "--server",
                SERVER,
                "agent",
                "install",
                "--psk",
                "two\nlines",
                "--fingerprint",
                FP,
            ],
            "holds a line break or control character",
        ),
        (
            vec![
                "--server",
                SERVER,
                "agent",
                "install",
                "--psk",
                SECRET,
                "--fingerprint",
                FP,
                "--state-dir",
                "relative",
            ],
            "--state-dir relative: give an absolute path",
        ),
    ];
    for (mut args, want) in cases {
        args.extend_from_slice(&["--root", rs]);
        let o = ferry(&args, &[]);
        let out = text(&o);
        assert!(!o.status.success(), "{args:?} was accepted: {out}");
        assert!(out.contains(want), "{args:?}: no `{want}` in: {out}");
        assert!(!out.contains(SECRET), "{args:?} printed the key: {out}");
        assert_eq!(files(r), Vec::<PathBuf>::new(), "{args:?} wrote files");
    }
}

/// Would catch: a unit that runs as root a binary another user may replace (a copy downloaded
/// into a home or a shared directory, then `sudo ./ferry agent install`): whoever can write that
/// file or a directory above it becomes root at the agent's next start. Refused, before the key
/// or anything else is written.
#[test]
fn review_a_unit_never_runs_a_binary_others_may_replace() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let shared = tempfile::tempdir().unwrap();
    // A directory anyone may write into (no sticky bit), then a world-writable binary.
    let open_dir = shared.path().join("downloads");
    std::fs::create_dir(&open_dir).unwrap();
    let copy = open_dir.join("ferry");
    std::fs::copy(FERRY, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Another test's fork may briefly hold the copy open for writing (ETXTBSY): tried again.
    let run = |exe: &Path| loop {
        let o = std::process::Command::new(exe)
            .args([
                "--server",
                SERVER,
                "agent",
                "install",
                "--fingerprint",
                FP,
                "--root",
                r.to_str().unwrap(),
            ])
            .env("FERRY_AGENT_PSK", SECRET)
            .output();
        match o {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            o => break o.unwrap(),
        }
    };
    let o = run(&copy);
    let out = text(&o);
    assert!(
        !o.status.success(),
        "a unit running {} was written: {out}",
        copy.display()
    );
    assert!(
        out.contains("is writable by its group or others"),
        "no reason given: {out}"
    );
    assert!(files(r).is_empty(), "written anyway: {:?}", files(r));
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o757)).unwrap();
    let o = run(&copy);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(files(r).is_empty(), "written anyway: {:?}", files(r));
    // Mode 0755 in a 0755 directory of ROOT's owner: written.
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run(&copy);
    assert!(o.status.success(), "{}", text(&o));
    let unit = std::fs::read_to_string(r.join("etc/systemd/system/ferry-agent.service")).unwrap();
    assert!(
        unit.contains(&format!("ExecStart={} agent run", copy.display())),
        "{unit}"
    );
}

/// Would catch: install replacing a unit of the administrator's own at
/// /etc/systemd/system/ferry-agent.service (uninstall leaves such a unit alone, but once
/// replaced it carries install's mark, and uninstall deletes it: the administrator's unit is
/// gone). Refused, before anything is written.
#[test]
fn review_install_does_not_replace_a_unit_it_did_not_write() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let unit = r.join("etc/systemd/system/ferry-agent.service");
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    let own = "[Service]\nExecStart=/opt/ferry agent run --server https://x/agent\n";
    std::fs::write(&unit, own).unwrap();
    let o = install(r, &[], &[("FERRY_AGENT_PSK", SECRET)]);
    let out = text(&o);
    assert!(
        !o.status.success(),
        "the administrator's unit was replaced: {out}"
    );
    assert!(out.contains("did not write it"), "{out}");
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), own);
    assert!(!r.join("etc/ferry-agent/psk").exists(), "{out}");
}

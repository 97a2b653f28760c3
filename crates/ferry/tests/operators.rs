//! `ferry operator list | remove | rotate` against a `ferry server` process, with their audit
//! lines (issue 15).

#![allow(clippy::unwrap_used)]

mod common;

use common::{ServerProc, text};
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn run(url: &str, token: &str, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(common::FERRY)
        .args(["--server", url, "--token", token])
        .args(args)
        .env_remove("FERRY_SERVER")
        .env_remove("FERRY_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

/// Would catch: the three commands missing or not reaching the API; rotate printing no new
/// credentials, leaving the old token or password working, or taking the password from argv;
/// removal of the install's admin allowed; either act missing from `ferry audit`.
#[test]
fn operator_list_remove_rotate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("ferry.toml"), "").unwrap();
    let data = d.join("data");
    let server = ServerProc::start(
        &[
            "--config",
            d.join("ferry.toml").to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let url = server.url.as_str();
    let admin = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let ok = |token: &str, args: &[&str], stdin: &str| {
        let o = run(url, token, args, stdin);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let out = ok(
        &admin,
        &["operator", "add", "kim", "--password-stdin"],
        "kim's first password\n",
    );
    let old_token = out.lines().last().unwrap().to_string();
    let list = ok(&admin, &["operator", "list"], "");
    assert!(
        list.lines()
            .any(|l| l.starts_with("kim ") && l.contains("password")),
        "{list}"
    );
    // Rotate: a new token and a generated password, each printed once.
    let out = ok(&admin, &["operator", "rotate", "kim"], "");
    let lines: Vec<&str> = out.lines().collect();
    let new_token = lines[1].to_string();
    let password = lines[3].to_string();
    assert!(
        new_token.starts_with("ferry_") && password.len() >= 12,
        "{out}"
    );
    assert!(
        !run(url, &old_token, &["operator", "list"], "")
            .status
            .success()
    );
    ok(&new_token, &["operator", "list"], "");
    let o = run(
        url,
        "",
        &["operator", "login", "kim"],
        "kim's first password\n",
    );
    assert!(!o.status.success(), "the old password still signs in");
    ok("", &["operator", "login", "kim"], &format!("{password}\n"));
    // Rotate with the password from a file.
    let f = d.join("pw");
    std::fs::write(&f, "kim's file password\n").unwrap();
    let out = ok(
        &admin,
        &[
            "operator",
            "rotate",
            "kim",
            "--password-file",
            f.to_str().unwrap(),
        ],
        "",
    );
    assert!(!out.contains("new password"), "{out}");
    ok("", &["operator", "login", "kim"], "kim's file password\n");
    // Remove: not the install's admin; kim goes.
    let o = run(url, &admin, &["operator", "remove", "admin"], "");
    assert!(
        !o.status.success() && text(&o).contains("install"),
        "{}",
        text(&o)
    );
    ok(&admin, &["operator", "remove", "kim"], "");
    assert!(!ok(&admin, &["operator", "list"], "").contains("kim"));
    let audit = ok(&admin, &["--json", "audit"], "");
    for action in ["operator.rotate", "operator.remove", "operator.create"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    assert!(!audit.contains(&password) && !audit.contains("kim's file password"));
}

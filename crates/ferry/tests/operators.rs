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
/// removal of the install's admin allowed; either act missing from `ferry audit`; the export
/// (`ferry audit --json --since`) not JSON lines, not oldest first, without the operator's address
/// and request id, or a bad `--since` accepted.
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
    // The export for a SIEM: JSON lines, oldest first, each act with its operator, address and
    // request id; the same lines whatever form of `--since` says "from the start".
    let export = ok(
        &admin,
        &["--json", "audit", "--since", "1970-01-01T00:00:00Z"],
        "",
    );
    let lines: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ids: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    let removal = lines
        .iter()
        .find(|l| l["action"] == "operator.remove")
        .unwrap();
    assert_eq!(removal["actor"], "admin");
    assert_eq!(removal["address"], "127.0.0.1");
    assert!(
        removal["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(ok(&admin, &["--json", "audit", "--since", "0"], ""), export);
    assert!(
        ok(&admin, &["--json", "audit", "--since", "1d"], "")
            .lines()
            .count()
            >= lines.len()
    );
    let o = run(url, &admin, &["audit", "--since", "last tuesday"], "");
    assert!(
        !o.status.success() && text(&o).contains("--since"),
        "{}",
        text(&o)
    );
}

#![allow(clippy::unwrap_used)]
//! An environment move as the README tells a newcomer to try it: `ferry quickstart` registers
//! Contoso, Fabrikam and the `sales` environment; then, against `ferry server` on the same data,
//! each tenant's admin runs `ferry env move …` with its own token.

mod common;

use common::{ferry, text};

#[test]
fn the_quickstart_environment_moves_from_contoso_to_fabrikam() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("qs");
    let (server, out, token) = common::quickstart_server(&dir);
    assert!(
        out.contains("environment `sales` (production, 25 users) registered for Contoso"),
        "{out}"
    );

    let (admin, src, dst) = (
        token("admin"),
        token("contoso-admin"),
        token("fabrikam-admin"),
    );
    let run = |tok: &str, args: &[&str]| {
        let mut a = vec!["--server", server.url.as_str(), "--token", tok];
        a.extend_from_slice(args);
        ferry(&a, &[])
    };
    let ok = |tok: &str, args: &[&str]| {
        let o = run(tok, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    };

    // The environment's usermapping.csv, from the translation table, passes the file rules.
    let file = d.path().join("usermapping.csv");
    ok(
        &admin,
        &[
            "translation",
            "export",
            "--format",
            "usermapping",
            "--environment",
            "sales",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    let v = ok(&admin, &["mapping", "validate", file.to_str().unwrap()]);
    assert!(v.contains("users; the file rules pass"), "{v}");

    // Contoso submits; Fabrikam sees it under its own id and approves; Contoso may not.
    let out = ok(
        &src,
        &[
            "env",
            "move",
            "submit",
            "sales",
            "--target-tenant",
            "fabrikam",
        ],
    );
    let sid = out
        .lines()
        .find_map(|l| l.strip_prefix("MigrationId: "))
        .unwrap()
        .to_string();
    let approvals = ok(&dst, &["env", "move", "approvals"]);
    let tid = approvals.split_whitespace().next().unwrap().to_string();
    assert_ne!(sid, tid);
    let o = run(&src, &["env", "move", "approve", &sid]);
    assert!(
        !o.status.success()
            && text(&o).contains("only the target tenant's admins may approve or reject"),
        "{}",
        text(&o)
    );
    ok(&dst, &["env", "move", "approve", &tid]);

    // A mapping with a user the environment does not have: the validation fails, the status line
    // gives the error file's address, and `errors -o` fetches it.
    let bad_dir = d.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad = bad_dir.join("usermapping.csv");
    std::fs::write(
        &bad,
        "Source,Destination\r\nnobody@contoso.test,ann.lee@fabrikam.test\r\n",
    )
    .unwrap();
    ok(
        &src,
        &[
            "env",
            "move",
            "upload-mapping",
            "sales",
            bad.to_str().unwrap(),
        ],
    );
    ok(&src, &["env", "move", "prepare", &sid]);
    let mut status = String::new();
    for _ in 0..100 {
        status = ok(&src, &["env", "move", "status", &sid]);
        if !status.contains("Running") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        status.trim(),
        format!(
            "Validation Failed, Errors are updated on the blob here: {}/api/v1/moves/{sid}/errors",
            server.url
        )
    );
    let errors = d.path().join("errors.csv");
    let out = ok(
        &src,
        &[
            "env",
            "move",
            "errors",
            &sid,
            "-o",
            errors.to_str().unwrap(),
        ],
    );
    assert!(out.contains("(1 errors)"), "{out}");
    assert!(
        std::fs::read_to_string(&errors)
            .unwrap()
            .contains("2,nobody@contoso.test,ann.lee@fabrikam.test,SourceUserDoesNotExistInOrgDB")
    );

    // Upload, prepare, status until done, migrate; the checklist follows.
    let up = ok(
        &src,
        &[
            "env",
            "move",
            "upload-mapping",
            "sales",
            file.to_str().unwrap(),
        ],
    );
    assert!(up.contains("uploaded: "), "{up}");
    let p = ok(&src, &["env", "move", "prepare", &sid]);
    assert!(p.contains("Description : Accepted"), "{p}");
    let mut status = String::new();
    for _ in 0..100 {
        status = ok(&src, &["env", "move", "status", &sid]);
        if !status.contains("Running") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if status.starts_with("Validation Failed") {
        panic!("{}", ok(&src, &["env", "move", "errors", &sid]));
    }
    assert_eq!(
        status.trim(),
        "Validate Tenant To Tenant Migration: Succeeded"
    );
    let m = ok(&src, &["env", "move", "migrate", &sid]);
    assert!(m.contains("Status: Migrate Environment: Succeeded"), "{m}");
    assert!(
        m.contains("flow `Notify sales` has a new HTTP trigger URL"),
        "{m}"
    );
    let envs = ok(&dst, &["env", "list"]);
    assert!(
        envs.contains("sales") && envs.contains("fabrikam"),
        "{envs}"
    );

    // The trail names who did what.
    let trail = ok(&admin, &["audit", "--limit", "100"]);
    for a in ["env.move.submit", "env.move.approve", "env.move.migrate"] {
        assert!(trail.contains(a), "{trail}");
    }
    assert!(
        !ok(&dst, &["audit"]).contains("env.move.submit"),
        "Fabrikam sees only its own lines"
    );

    // An operator with a password signs in and gets a session token.
    let with_stdin = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut c = std::process::Command::new(common::FERRY)
            .args(["--server", server.url.as_str()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let o = with_stdin(
        &[
            "--token",
            &admin,
            "operator",
            "add",
            "carol",
            "--tenant",
            "fabrikam",
            "--password-stdin",
        ],
        "a long enough secret\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = with_stdin(&["operator", "login", "carol"], "a long enough secret\n");
    assert!(o.status.success(), "{}", text(&o));
    let session = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(
        ok(&session, &["env", "move", "list"]).contains("fabrikam"),
        "the session sees Fabrikam's moves"
    );
    let o = with_stdin(&["operator", "login", "carol"], "not it\n");
    assert!(
        !o.status.success() && text(&o).contains("the name or the password is wrong"),
        "{}",
        text(&o)
    );
}

//! Sign-in limits and operator management over real HTTP (issue 15): lockouts per name and per
//! address, the same answer for unknown names, the bound on concurrent argon2 verifications,
//! sessions ended by a role or password change (on a second server sharing PostgreSQL), and
//! `GET/DELETE /operators`, `POST /operators/{name}/rotate` with their audit lines.
//!
//! No test here moves the server's clock (that is `sessions.rs`, a process of its own).

#![allow(clippy::unwrap_used)]

use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;

mod support;

const KEY: &str = "abababababababababababababababababababababababababababababababab";

fn config(dir: &Path, auth: &str) {
    std::fs::write(dir.join("ferry.toml"), format!("[server.auth]\n{auth}\n")).unwrap();
}

async fn start(dir: &Path, database_url: Option<String>) -> Server {
    start_as(dir, database_url, None).await
}

/// Servers sharing a database share the install's `admin` token row: give them one token.
async fn start_as(dir: &Path, database_url: Option<String>, admin_token: Option<&str>) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Server::start(
        ServerOptions {
            settings: Settings::load(&dir.join("ferry.toml")).unwrap(),
            data_dir: dir.join("data"),
            database_url,
            admin_token: admin_token.map(str::to_string),
            secret_key: Some(KEY.into()),
            scheduler: false,
            agent: None,
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap()
}

struct R {
    status: u16,
    retry_after: Option<String>,
    www: Option<String>,
    body: Value,
}

async fn call(s: &Server, token: Option<&str>, m: Method, path: &str, body: Option<Value>) -> R {
    let mut r = reqwest::Client::new().request(m, format!("http://{}/api/v1{path}", s.addr));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let h = |n| {
        resp.headers()
            .get(n)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_string())
    };
    let (status, retry_after, www) = (
        resp.status().as_u16(),
        h(reqwest::header::RETRY_AFTER),
        h(reqwest::header::WWW_AUTHENTICATE),
    );
    let t = resp.text().await.unwrap();
    let mut body = serde_json::from_str(&t).unwrap_or(Value::String(t));
    // Each answer has its own request id (random, whatever the name): not part of what two
    // answers must share.
    if let Some(o) = body.as_object_mut() {
        o.remove("request_id");
    }
    R {
        status,
        retry_after,
        www,
        body,
    }
}

async fn add_operator(s: &Server, name: &str, password: &str, viewer: bool) -> R {
    let r = call(
        s,
        Some(&s.admin_token),
        Method::POST,
        "/operators",
        Some(json!({"name": name, "password": password, "viewer": viewer})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r
}

async fn sign_in(s: &Server, name: &str, password: &str) -> R {
    call(
        s,
        None,
        Method::POST,
        "/sessions",
        Some(json!({"name": name, "password": password})),
    )
    .await
}

async fn audit(s: &Server) -> Vec<Value> {
    let r = call(
        s,
        Some(&s.admin_token),
        Method::GET,
        "/audit?limit=1000",
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    r.body.as_array().unwrap().clone()
}

/// Would catch: no per-name limit (the sixth guess is checked), a lockout that a correct password
/// gets through, lockouts that tell unknown names from known ones, no per-address limit (many
/// names from one address), failures not audited, or the password written into the audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_is_locked_out_per_name_and_per_address() {
    let tmp = tempfile::tempdir().unwrap();
    config(
        tmp.path(),
        "lockout_after = 5\naddress_lockout_after = 20\nlockout = \"10m\"",
    );
    let s = start(tmp.path(), None).await;
    add_operator(&s, "alice", "correct horse battery", false).await;
    add_operator(&s, "carol", "carol's long password", false).await;
    for i in 0..5 {
        let r = sign_in(&s, "alice", &format!("guess-secret-{i}")).await;
        assert_eq!(r.status, 401, "{i}: {:?}", r.body);
    }
    let locked = sign_in(&s, "alice", "correct horse battery").await;
    assert_eq!(locked.status, 429, "{:?}", locked.body);
    assert_eq!(locked.body["status"], 429);
    assert!(locked.body["error"].as_str().unwrap().contains("too many"));
    let secs: u64 = locked.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((500..=600).contains(&secs), "{secs}");
    // An unknown name is locked out the same way, with the same answer.
    for i in 0..5 {
        assert_eq!(
            sign_in(&s, "ghost", &format!("guess-secret-{i}"))
                .await
                .status,
            401
        );
    }
    let ghost = sign_in(&s, "ghost", "anything at all").await;
    assert_eq!((ghost.status, &ghost.body), (429, &locked.body));
    // 10 failures so far from 127.0.0.1; 10 more over other names locks the address out, so
    // carol, who never failed, is refused even with her password.
    for i in 0..10 {
        assert_eq!(
            sign_in(&s, &format!("n{}", i / 2), "wrong password!")
                .await
                .status,
            401
        );
    }
    let carol = sign_in(&s, "carol", "carol's long password").await;
    assert_eq!(carol.status, 429, "{:?}", carol.body);
    let lines = audit(&s).await;
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["action"] == "session.sign-in.failed")
        .collect();
    assert_eq!(failed.len(), 20, "{lines:?}");
    assert!(failed.iter().all(|l| l["actor"] == "address:127.0.0.1"));
    assert!(failed.iter().any(
        |l| l["subject"] == "alice" && l["detail"].as_str().unwrap().contains("wrong password")
    ));
    assert!(
        failed.iter().any(|l| l["subject"] == "ghost"
            && l["detail"].as_str().unwrap().contains("no such operator"))
    );
    let all = serde_json::to_string(&lines).unwrap();
    assert!(
        !all.contains("guess-secret"),
        "a password reached the audit: {all}"
    );
    s.stop().await.unwrap();
}

/// Would catch: an unknown name answered differently from a wrong password (status, body or
/// headers), which lets names be enumerated; and a success that does not reset the name's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_name_gets_the_same_answer_as_a_wrong_password() {
    let tmp = tempfile::tempdir().unwrap();
    config(tmp.path(), "lockout_after = 3");
    let s = start(tmp.path(), None).await;
    add_operator(&s, "dave", "dave's long password", false).await;
    let wrong = sign_in(&s, "dave", "not dave's password").await;
    let unknown = sign_in(&s, "nobody-here", "not dave's password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        (wrong.status, &wrong.body, &wrong.www, &wrong.retry_after),
        (
            unknown.status,
            &unknown.body,
            &unknown.www,
            &unknown.retry_after
        )
    );
    // Two failures, a success, then two more failures: not locked (the success reset the count).
    assert_eq!(sign_in(&s, "dave", "wrong again!!").await.status, 401);
    assert_eq!(
        sign_in(&s, "dave", "dave's long password").await.status,
        201
    );
    for _ in 0..2 {
        assert_eq!(sign_in(&s, "dave", "wrong again!!").await.status, 401);
    }
    assert_eq!(
        sign_in(&s, "dave", "dave's long password").await.status,
        201
    );
    s.stop().await.unwrap();
}

/// Would catch: sign-ins verifying passwords without a bound (64 at once ran 64 argon2 hashes,
/// ~19 MiB each). The peak is measured where the hashing runs; the test also checks the bound
/// was reached, so that a counter that never counts cannot pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ins_never_hash_more_than_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    config(
        tmp.path(),
        "sign_in_concurrency = 2\naddress_lockout_after = 1000\nlockout_after = 1000",
    );
    let s = std::sync::Arc::new(start(tmp.path(), None).await);
    add_operator(&s, "erin", "erin's long password", false).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move { sign_in(&s, "erin", &format!("wrong {i} password")).await })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 503 {
            assert_eq!(r.body["status"], 503);
            assert!(r.retry_after.is_some());
        }
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    let peak = s.state.sign_in.peak_concurrency();
    assert_eq!(
        peak, 2,
        "peak concurrent verifications {peak}; {statuses:?}"
    );
}

/// Would catch: a lockout checked only when a request arrives, so that 64 guesses sent at once
/// at one name all get their password checked instead of stopping near `lockout_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_at_one_name_stop_at_the_lockout() {
    let tmp = tempfile::tempdir().unwrap();
    config(
        tmp.path(),
        "sign_in_concurrency = 2\nlockout_after = 5\naddress_lockout_after = 1000\nlockout = \"10m\"",
    );
    let s = std::sync::Arc::new(start(tmp.path(), None).await);
    add_operator(&s, "judy", "judy's long password", false).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move { sign_in(&s, "judy", &format!("wrong {i} password")).await })
        })
        .collect();
    let mut checked = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert!([401, 429, 503].contains(&r.status), "{:?}", r.body);
        checked += usize::from(r.status == 401);
    }
    assert!((5..=6).contains(&checked), "{checked} passwords checked");
    assert_eq!(
        sign_in(&s, "judy", "judy's long password").await.status,
        429
    );
}

/// Would catch: a role or password change that leaves the old session working (with its old
/// role), on the server that made the change or on another server sharing the database; a
/// removed operator whose session still works; a rotate whose old token still works.
async fn changes_end_sessions(a: &Server, b: &Server) {
    add_operator(a, "frank", "frank's long password", false).await;
    // Signed in on B, used on A: sessions are in the store.
    let t = sign_in(b, "frank", "frank's long password").await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let tok = t.body["token"].as_str().unwrap().to_string();
    assert_eq!(
        call(a, Some(&tok), Method::GET, "/me", None).await.body["role"],
        "admin"
    );
    // Role change on A (frank becomes a viewer) ends the session on B.
    let r = call(
        a,
        Some(&a.admin_token),
        Method::POST,
        "/operators",
        Some(json!({"name": "frank", "viewer": true})),
    )
    .await;
    assert_eq!(r.status, 201);
    let me = call(b, Some(&tok), Method::GET, "/me", None).await;
    assert_eq!(me.status, 401, "{:?}", me.body);
    // The old password still signs in, with the new role.
    let t = sign_in(b, "frank", "frank's long password").await;
    assert_eq!(t.body["role"], "viewer");
    let tok = t.body["token"].as_str().unwrap().to_string();
    // A password change (rotate with a given password) on A ends it on B.
    let r = call(
        a,
        Some(&a.admin_token),
        Method::POST,
        "/operators/frank/rotate",
        Some(json!({"password": "frank's new password"})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.get("password").is_none());
    assert_eq!(
        call(b, Some(&tok), Method::GET, "/me", None).await.status,
        401
    );
    assert_eq!(
        sign_in(b, "frank", "frank's long password").await.status,
        401
    );
    let t = sign_in(b, "frank", "frank's new password").await;
    assert_eq!(t.status, 201);
    let tok = t.body["token"].as_str().unwrap().to_string();
    // Removal on A ends it on B, and the name no longer signs in.
    let r = call(
        a,
        Some(&a.admin_token),
        Method::DELETE,
        "/operators/frank",
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        call(b, Some(&tok), Method::GET, "/me", None).await.status,
        401
    );
    assert_eq!(
        sign_in(b, "frank", "frank's new password").await.status,
        401
    );
}

/// See [`changes_end_sessions`]; one server on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_end_sessions_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    config(tmp.path(), "");
    let s = start(tmp.path(), None).await;
    changes_end_sessions(&s, &s).await;
    s.stop().await.unwrap();
}

/// See [`changes_end_sessions`]; two servers on one PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_end_sessions_on_a_second_server_postgres() {
    let Some(pg) = support::PgSchema::new("sign_in") else {
        return;
    };
    let url = pg.url.clone();
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    config(ta.path(), "");
    config(tb.path(), "");
    let admin = "ferry_shared_admin_token_for_this_test";
    let a = start_as(ta.path(), Some(url.clone()), Some(admin)).await;
    let b = start_as(tb.path(), Some(url.clone()), Some(admin)).await;
    changes_end_sessions(&a, &b).await;
    // The per-name lockout is shared: three failures on A and two on B lock the name on both.
    for i in 0..5 {
        let s = if i % 2 == 0 { &a } else { &b };
        assert_eq!(sign_in(s, "shared", "wrong password!").await.status, 401);
    }
    assert_eq!(sign_in(&a, "shared", "wrong password!").await.status, 429);
    assert_eq!(sign_in(&b, "shared", "wrong password!").await.status, 429);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Would catch: `GET /operators` missing an operator or showing a session as an operator;
/// rotate leaving the old token working or not printing a generated password; removing the
/// install's admin; any of these acts without an audit line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_remove_rotate_are_audited() {
    let tmp = tempfile::tempdir().unwrap();
    config(tmp.path(), "");
    let s = start(tmp.path(), None).await;
    let g = add_operator(&s, "grace", "grace's long password", false).await;
    let old = g.body["token"].as_str().unwrap().to_string();
    add_operator(&s, "heidi", "heidi's long password", true).await;
    assert_eq!(
        sign_in(&s, "grace", "grace's long password").await.status,
        201
    );
    let l = call(&s, Some(&s.admin_token), Method::GET, "/operators", None).await;
    let names: Vec<&str> = l
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "grace", "heidi"], "{:?}", l.body);
    let grace = &l.body[1];
    assert_eq!(
        (
            grace["has_password"].as_bool(),
            grace["has_session"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let r = call(
        &s,
        Some(&s.admin_token),
        Method::POST,
        "/operators/grace/rotate",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let new = r.body["token"].as_str().unwrap();
    let pw = r.body["password"].as_str().unwrap();
    assert!(pw.len() >= 12);
    assert_eq!(
        call(&s, Some(&old), Method::GET, "/me", None).await.status,
        401
    );
    assert_eq!(
        call(&s, Some(new), Method::GET, "/me", None).await.status,
        200
    );
    assert_eq!(sign_in(&s, "grace", pw).await.status, 201);
    let r = call(
        &s,
        Some(&s.admin_token),
        Method::DELETE,
        "/operators/admin",
        None,
    )
    .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    let r = call(&s, Some(new), Method::DELETE, "/operators/heidi", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = call(&s, Some(new), Method::DELETE, "/operators/heidi", None).await;
    assert_eq!(r.status, 404);
    let lines = audit(&s).await;
    let has = |action: &str, subject: &str, actor: &str| {
        lines
            .iter()
            .any(|l| l["action"] == action && l["subject"] == subject && l["actor"] == actor)
    };
    assert!(has("operator.rotate", "grace", "admin"), "{lines:?}");
    assert!(has("operator.remove", "heidi", "grace"), "{lines:?}");
    let all = serde_json::to_string(&lines).unwrap();
    assert!(
        !all.contains(pw),
        "the generated password reached the audit"
    );
    s.stop().await.unwrap();
}

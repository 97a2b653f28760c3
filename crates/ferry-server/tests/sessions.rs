//! Session expiry with the server's clock moved forward (the clock is the server's own,
//! `AppState::clock`). Defaults: 30 minutes idle, 12 hours in all.

#![allow(clippy::unwrap_used)]

use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use reqwest::Method;
use serde_json::json;

const MIN: i64 = 60 * 1000;

async fn me(s: &Server, token: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .request(Method::GET, format!("http://{}/api/v1/me", s.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn sign_in(s: &Server) -> String {
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/sessions", s.addr))
        .json(&json!({"name": "ivan", "password": "ivan's long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// Would catch: sessions that never end; an idle timeout not slid by use (or slid without the
/// coalesced write reaching the store); a lifetime that use extends; and the operator's API
/// token (not a session) being expired by either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_idle_and_at_their_lifetime() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ferry.toml"), "").unwrap();
    let s = Server::start(
        ServerOptions {
            settings: Settings::load(&tmp.path().join("ferry.toml")).unwrap(),
            data_dir: tmp.path().join("data"),
            database_url: None,
            admin_token: None,
            secret_key: None,
            scheduler: false,
            agent: None,
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/operators", s.addr))
        .bearer_auth(&s.admin_token)
        .json(&json!({"name": "ivan", "password": "ivan's long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    let api_token = v["token"].as_str().unwrap().to_string();

    // Idle: used every 25 minutes it lives on; left 31 minutes it ends.
    let t = sign_in(&s).await;
    for _ in 0..3 {
        s.state.clock.advance(25 * MIN);
        assert_eq!(me(&s, &t).await.0, 200);
    }
    s.state.clock.advance(31 * MIN);
    let (status, body) = me(&s, &t).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("session_idle"), "{body}");

    // Lifetime: used every 25 minutes, it still ends 12 hours after sign-in.
    let t = sign_in(&s).await;
    let mut lived = 0;
    loop {
        s.state.clock.advance(25 * MIN);
        lived += 25;
        let (status, body) = me(&s, &t).await;
        if status != 200 {
            assert_eq!(status, 401);
            assert!(body.contains("session_lifetime"), "{body}");
            break;
        }
        assert!(lived < 12 * 60, "alive after {lived} minutes");
    }
    assert!(lived >= 12 * 60, "ended after {lived} minutes");
    // An API token is not a session.
    assert_eq!(me(&s, &api_token).await.0, 200);
    s.stop().await.unwrap();
}

//! Shared by the ferry-server tests: a server in-process on port 0 with its HTTP client, and a
//! throw-away schema on the test command's real PostgreSQL.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it

pub mod schema;

use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use serde_json::Value;
use std::path::Path;

pub struct Harness {
    pub server: Server,
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

/// A server on `cfg` (written to DIR/ferry.toml), its data in DIR/data, without a scheduler.
pub async fn start(dir: &Path, cfg: &str) -> Harness {
    start_on(dir, cfg, None).await
}

/// The same on a shared database (`postgres://…`): servers started so share one admin token and
/// one secret key, as servers of one installation do.
pub async fn start_on(dir: &Path, cfg: &str, database_url: Option<&str>) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::write(dir.join("ferry.toml"), cfg).unwrap();
    let settings = Settings::load(&dir.join("ferry.toml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opts = ServerOptions {
        settings,
        data_dir: dir.join("data"),
        database_url: database_url.map(str::to_string),
        admin_token: database_url.map(|_| "ferry_shared_admin_token_of_the_test".to_string()),
        secret_key: database_url.map(|_| "ab".repeat(32)),
        scheduler: false,
        agent: None,
    };
    let server = Server::start(opts, listener).await.unwrap();
    let url = format!("http://{}", server.addr);
    let token = server.admin_token.clone();
    Harness {
        server,
        http: reqwest::Client::new(),
        url,
        token,
    }
}

impl Harness {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }
    /// A call with another operator's token.
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    /// A GET's body as text (exports), asserting 200.
    pub async fn text(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET {path}");
        r.text().await.unwrap()
    }
    pub async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }
    pub async fn run(&self) -> Value {
        let (s, v) = self
            .call(reqwest::Method::POST, "/profiles/users/run?wait=true", None)
            .await;
        assert_eq!(s, 202, "{v}");
        v["cycle"].clone()
    }
}

/// The test command's slapd: (URL, admin password). None (the test skips) when it is not
/// configured, which the test command (`FERRY_REQUIRE_SERVERS=1`) does not allow.
pub fn slapd() -> Option<(String, String)> {
    match (
        std::env::var("FERRY_TEST_LDAP_URL"),
        std::env::var("FERRY_TEST_LDAP_PASSWORD"),
    ) {
        (Ok(url), Ok(pw)) => Some((url, pw)),
        _ => {
            assert_ne!(
                std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
                Ok("1"),
                "FERRY_TEST_LDAP_URL is required"
            );
            eprintln!("skipping: FERRY_TEST_LDAP_URL is not set");
            None
        }
    }
}

/// A scratch schema on `FERRY_TEST_DATABASE_URL`, dropped when this goes out of scope (also
/// when the test panics). None (the test skips) when no PostgreSQL is configured, which the
/// test command (`FERRY_REQUIRE_SERVERS=1`) does not allow.
pub struct PgSchema {
    base: String,
    name: String,
    /// The database URL with this schema first in the search path.
    pub url: String,
}

impl PgSchema {
    pub fn new(prefix: &str) -> Option<PgSchema> {
        let Ok(base) = std::env::var("FERRY_TEST_DATABASE_URL") else {
            assert_ne!(
                std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
                Ok("1"),
                "FERRY_TEST_DATABASE_URL is required"
            );
            eprintln!("skipping: FERRY_TEST_DATABASE_URL is not set");
            return None;
        };
        let name = format!("{prefix}_{}", std::process::id());
        psql(&base, &format!("CREATE SCHEMA {name}"));
        let url = format!("{base}?options=-csearch_path%3D{name}");
        Some(PgSchema { base, name, url })
    }

    /// Runs `sql` in this schema and returns what psql printed (unaligned, tuples only).
    pub fn query(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([self.base.as_str(), "-q", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .output();
    }
}

fn psql(url: &str, sql: &str) -> String {
    let o = std::process::Command::new("psql")
        .args([url, "-q", "-At", "-c", sql])
        .output()
        .expect("psql");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// An export's answer read with `token` (`GET {url}/api/v1{path}`): its status, `X-Total-Count`
/// (-1 without one) and its rows as a spreadsheet's CSV reader reads them, the header row first
/// when `header` (the body itself when it is not a 200).
pub async fn csv_export(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    path: &str,
    header: bool,
) -> (u16, i64, Vec<Vec<String>>) {
    let r = http
        .get(format!("{url}/api/v1{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let total = r
        .headers()
        .get("x-total-count")
        .map_or(-1, |v| v.to_str().unwrap().parse().unwrap());
    let body = r.text().await.unwrap();
    if status != 200 {
        return (status, total, vec![vec![body]]);
    }
    let rows = csv::ReaderBuilder::new()
        .has_headers(!header)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (status, total, rows)
}

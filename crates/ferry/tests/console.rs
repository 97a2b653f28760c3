#![allow(clippy::unwrap_used)]
//! The web console in a real browser: Debian's Chromium, driven over WebDriver (chromedriver)
//! by a small client here. The quickstart's data, served by `ferry server`; a ferry admin and the
//! two tenants' admins sign in and use the pages; every page is checked for console errors and
//! broken links. `FERRY_UPDATE_SCREENSHOTS=1` writes the main pages to docs/screenshots/.

mod common;

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Option<Browser> {
        if !std::path::Path::new("/usr/bin/chromium").exists()
            || Command::new("chromedriver")
                .arg("--version")
                .output()
                .is_err()
        {
            assert!(
                std::env::var_os("FERRY_REQUIRE_SERVERS").is_none(),
                "chromium and chromium-driver are required (apt-get install chromium chromium-driver)"
            );
            eprintln!("SKIPPED: chromium / chromedriver not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut b = Browser { driver, http, base };
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900"]}}}});
        let v = b.call(reqwest::Method::POST, "/session", Some(caps)).await;
        b.base = format!("{}/session/{}", b.base, v["sessionId"].as_str().unwrap());
        Some(b)
    }

    async fn call(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(m, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The first element matching `css`, waiting for it up to 10 s.
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element `{css}`");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_in(&self, css: &str, s: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": s})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `css`'s text contains `want`.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.text(css).await;
            if t.contains(want) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never said `{want}`: {t}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Console messages at warning level or worse since the last call.
    async fn console_errors(&self) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|l| matches!(l["level"].as_str(), Some("SEVERE" | "WARNING")))
            .map(|l| {
                format!(
                    "{} {}",
                    l["level"].as_str().unwrap_or_default(),
                    l["message"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        if std::env::var_os("FERRY_UPDATE_SCREENSHOTS").is_some() {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    async fn sign_in_with_token(&self, url: &str, token: &str) {
        self.go(url).await;
        self.type_in("#token", token).await;
        self.click("#signin-button").await;
        self.find("#signout").await;
    }

    async fn sign_out(&self) {
        self.click("#signout").await;
        self.find("#signin").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("qs");
    let (server, out, token) = common::quickstart_server(&dir);
    drop(out);
    let Some(b) = Browser::start().await else {
        return;
    };

    let url = format!("{}/", server.url);

    // A wrong token is refused on the sign-in page.
    b.go(&url).await;
    b.type_in("#token", "not-a-token").await;
    b.click("#signin-button").await;
    b.wait_text("#signin-error", "the token is not valid").await;
    b.screenshot("sign-in").await;
    // The browser logs the refused request; that one is expected.
    let refused = b.console_errors().await;
    assert!(
        refused
            .iter()
            .all(|m| m.contains("/api/v1/me") && m.contains("401")),
        "{refused:?}"
    );

    // The ferry admin: every page renders without console errors, and every link goes somewhere.
    b.sign_in_with_token(&url, &token("admin")).await;
    b.wait_text("#readiness", "A sync cycle ran end to end")
        .await;
    b.screenshot("readiness").await;
    let pages = [
        "directories",
        "profiles",
        "cycles",
        "whatif",
        "translation",
        "logs",
        "psks",
        "runbooks",
        "batches",
        "agents",
        "failed",
        "environments",
        "moves",
        "audit",
    ];
    for p in pages {
        b.go(&format!("{url}#/{p}")).await;
        let h1 = b.text("main h1").await;
        assert_ne!(h1, "Something went wrong", "{p}: {}", b.text("main").await);
        let links = b
            .script("return [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
            .await;
        for l in links.as_array().unwrap() {
            let l = l.as_str().unwrap();
            assert!(l.starts_with("#/"), "{p}: a link leaves the console: {l}");
            let target = l.trim_start_matches("#/").split('?').next().unwrap();
            assert!(
                target.is_empty() || pages.contains(&target),
                "{p}: broken link {l}"
            );
        }
    }
    assert_eq!(b.console_errors().await, Vec::<String>::new());

    // Run a cycle from the console; find a user in the translation table.
    b.go(&format!("{url}#/profiles")).await;
    b.click("main table button").await;
    b.wait_text("main table", "succeeded").await;
    b.screenshot("profiles").await;
    b.go(&format!("{url}#/cycles")).await;
    b.wait_text("main table", "succeeded").await;

    // The What-If, filtered to the unmatched users, with the rule that did not match them.
    b.go(&format!("{url}#/whatif?profile=users&status=unmatched"))
        .await;
    let summary = b.wait_text("#whatif-summary", "unmatched").await;
    assert!(
        summary.contains("Nothing to approve."),
        "match-only plans have no writes: {summary}"
    );
    let rows = b.wait_text("main table", "unmatched").await;
    assert!(!rows.contains("\nuser matched"), "filtered: {rows}");
    b.screenshot("whatif").await;
    b.go(&format!("{url}#/logs?level=warning")).await;
    b.wait_text("main table", "warning").await;
    b.go(&format!("{url}#/translation")).await;
    b.type_in("#search", "ann.lee").await;
    b.click("main form button").await;
    let t = b.wait_text("main table", "ann.lee@contoso.test").await;
    assert!(t.to_lowercase().contains("ann.lee@fabrikam.test"), "{t}");
    b.screenshot("translation").await;

    // A pre-shared key, shown once.
    b.go(&format!("{url}#/psks")).await;
    b.type_in("#psk-name", "wave-1").await;
    b.click("#psk-create").await;
    let created = b.wait_text("#psk-created", "Shown this once: psk_").await;
    assert!(created.len() > 30);
    b.wait_text("main table", "wave-1").await;
    b.screenshot("psks").await;
    b.sign_out().await;

    // Contoso's admin submits a move (by the API, as the CLI does); the console shows it to both sides.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/v1/environments/sales/moves", server.url))
        .bearer_auth(token("contoso-admin"))
        .json(&json!({"target_tenant": "fabrikam"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // The source admin sees the request, with no Approve button; its navigation is its tenant's.
    b.sign_in_with_token(&url, &token("contoso-admin")).await;
    b.go(&format!("{url}#/moves")).await;
    b.wait_text("main", "Request: submitted").await;
    assert_eq!(b.text("#nav").await, "EnvironmentsEnvironment movesAudit");
    let approve = b
        .script("return document.querySelectorAll('button.approve').length")
        .await;
    assert_eq!(approve, 0, "the source admin cannot approve");
    b.sign_out().await;

    // The target admin approves in the console.
    b.sign_in_with_token(&url, &token("fabrikam-admin")).await;
    b.go(&format!("{url}#/moves")).await;
    b.wait_text("main", "Waiting for your approval").await;
    b.screenshot("moves").await;
    b.click("button.approve").await;
    b.wait_text("main", "Request: approved").await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    b.sign_out().await;

    // And the source admin, refused by the server if it tries the target's act.
    let r = http
        .get(format!("{}/api/v1/moves", server.url))
        .bearer_auth(token("contoso-admin"))
        .send()
        .await
        .unwrap();
    let moves: Value = r.json().await.unwrap();
    let sid = moves[0]["migration_id"].as_str().unwrap();
    let r = http
        .post(format!("{}/api/v1/moves/{sid}/approve", server.url))
        .bearer_auth(token("contoso-admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

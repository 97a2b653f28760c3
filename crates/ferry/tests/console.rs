#![allow(clippy::unwrap_used)]
//! The web console in a real browser: Debian's Chromium, driven over WebDriver (chromedriver)
//! by a small client here. The quickstart's data, served by `ferry server`; a ferry admin and the
//! two tenants' admins sign in and use the pages; every page is checked for console errors and
//! broken links. `FERRY_UPDATE_SCREENSHOTS=1` writes the main pages to docs/screenshots/.

mod common;

use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
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
        // chromedriver leads a process group of its own, which the browser it started is in:
        // killing only chromedriver left Chromium running after the test.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
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
            .process_group(0)
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
            if Instant::now() >= deadline {
                let page = self
                    .script("return document.querySelector('main') ? document.querySelector('main').innerText : document.body.innerText")
                    .await;
                panic!("no element `{css}` on the page: {page}");
            }
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
    b.wait_text("#readiness", "✓ Run an end-to-end Import/Sync/Export")
        .await;
    b.screenshot("readiness").await;
    let pages = [
        "directories",
        "profiles",
        "cycles",
        "whatif",
        "translation",
        "report",
        "logs",
        "psks",
        "runbooks",
        "batches",
        "dashboard",
        "agents",
        "failed",
        "environments",
        "moves",
        "audit",
    ];
    // Reached from other pages' links.
    let linked = ["agent", "preflight"];
    for p in pages {
        b.go(&format!("{url}#/{p}")).await;
        let h1 = b.text("main h1").await;
        assert_ne!(h1, "Something went wrong", "{p}: {}", b.text("main").await);
        let all = b.text("main").await;
        assert!(
            !all.contains("[object "),
            "{p}: a value shown as an object: {all}"
        );
        let links = b
            .script("return [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
            .await;
        for l in links.as_array().unwrap() {
            let l = l.as_str().unwrap();
            assert!(l.starts_with("#/"), "{p}: a link leaves the console: {l}");
            let target = l.trim_start_matches("#/").split('?').next().unwrap();
            assert!(
                target.is_empty() || pages.contains(&target) || linked.contains(&target),
                "{p}: broken link {l}"
            );
        }
    }
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    lists_show_totals_pages_filters_and_exports(&b, &url, &server.url, &token("admin")).await;

    // Two file directories and a profile, configured in the console; a bad entry says what is wrong.
    let s = ferry_demo::generate(60, false, 11);
    for (name, objs) in [("hr-src", &s.source), ("hr-tgt", &s.target)] {
        // Beside ferry.toml: a file directory added in the console reads files in its folder.
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, ferry_core::snapshot::render_json(objs)).unwrap();
        b.go(&format!("{url}#/directories")).await;
        b.type_in("#dir-name", name).await;
        b.type_in("#dir-path", path.to_str().unwrap()).await;
        b.click("#dir-save").await;
        b.wait_text("main table", name).await;
    }
    b.type_in("#dir-name", "broken").await;
    b.click("#dir-save").await;
    b.wait_text("#dir-form-message", "missing field `path`")
        .await;
    // The browser logs the refused request; that one is expected.
    let refused = b.console_errors().await;
    assert!(
        refused.len() == 1
            && refused[0].contains("/api/v1/directories/broken")
            && refused[0].contains("400"),
        "{refused:?}"
    );
    b.screenshot("directories").await;
    b.go(&format!("{url}#/profiles")).await;
    b.type_in("#profile-name", "hr").await;
    b.script(
        "for (const [id, v] of [['profile-source', 'hr-src'], ['profile-target', 'hr-tgt'], ['profile-mode', 'create']]) \
         document.getElementById(id).value = v;",
    )
    .await;
    b.type_in("#profile-schedule", "1h").await;
    b.click("#profile-add-rule").await;
    b.type_in(".rule .rule-source", "mail").await;
    b.type_in(".rule .rule-target", "mail").await;
    b.type_in(
        ".rule .rule-transforms",
        r#"[{"replace_suffix": ["@contoso.test", "@fabrikam.test"]}]"#,
    )
    .await;
    b.click("#profile-add-rule").await;
    b.script(
        "const r = document.querySelectorAll('.rule')[1]; \
         r.querySelector('.rule-source').value = 'employeeId'; r.querySelector('.rule-target').value = 'employeeId';",
    )
    .await;
    b.click("#profile-save").await;
    let t = b.wait_text("main table", "hr-src → hr-tgt").await;
    assert!(
        t.contains("every 1h") && t.contains("Edit") && !t.contains("[object "),
        "{t}"
    );
    b.screenshot("profiles").await;

    // Run it now: a create plan waits for approval; approve it in the What-If.
    b.script(
        "[...document.querySelectorAll('main tr')].find(r => r.textContent.includes('hr-src → hr-tgt')).querySelector('button.run').click()",
    )
    .await;
    b.wait_text("main table", "awaits approval").await;
    b.go(&format!("{url}#/whatif?profile=hr&status=unmatched"))
        .await;
    let summary = b.wait_text("#whatif-summary", "unmatched").await;
    assert!(
        summary.contains(&format!("{} matched", s.expected.users_matched)),
        "{summary}"
    );
    b.screenshot("whatif").await;
    b.click("#whatif-approve").await;
    b.wait_text("#whatif-summary", "Approved: the next cycle exports.")
        .await;
    b.go(&format!("{url}#/cycles")).await;
    b.wait_text("main table", "succeeded").await;
    b.find("#chart-cycles rect").await;
    b.screenshot("cycles").await;
    b.go(&format!("{url}#/logs?level=warning")).await;
    b.wait_text("main table", "warning").await;

    // Find a user in the translation table, and its single object report.
    b.go(&format!("{url}#/translation")).await;
    b.type_in("#search", "ann.lee").await;
    b.click("main form button").await;
    let t = b.wait_text("main table", "ann.lee@contoso.test").await;
    assert!(t.to_lowercase().contains("ann.lee@fabrikam.test"), "{t}");
    b.screenshot("translation").await;
    b.go(&format!("{url}#/report?q=ann.lee@contoso.test")).await;
    let r = b.wait_text("main section.report", "Decisions").await;
    assert!(r.contains("matched"), "{r}");
    assert!(
        r.contains("Both sides in")
            && r.to_lowercase().contains("ann.lee@fabrikam.test")
            && r.contains("200000"),
        "the report shows the target's identity too: {r}"
    );
    b.screenshot("report").await;

    // The tenant pre-flight ticks the readiness line (issue 18): an Entra ID target (a simulated
    // tenant) passes (✓); requiring MFA to join, checked again from the findings page, fails it
    // (✗ with the finding). Catches a line left at "–" or not following the tenant.
    let sim =
        ferry_graph_sim::GraphSim::start(ferry_graph_sim::SimOptions::default(), "127.0.0.1:0")
            .await
            .unwrap();
    let admin_call = |m: reqwest::Method, path: &str, body: Option<Value>| {
        let (http, url, t) = (reqwest::Client::new(), server.url.clone(), token("admin"));
        let path = path.to_string();
        async move {
            let mut r = http
                .request(m, format!("{url}/api/v1{path}"))
                .bearer_auth(t);
            if let Some(b) = body {
                r = r.json(&b);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    let o = sim.options();
    let entra = json!({"name": "entra", "kind": "graph", "tenant_id": o.tenant, "client_id": o.client_id,
        "client_secret": o.client_secret, "graph_url": sim.url(), "login_url": sim.url(), "object_types": ["user"]});
    assert_eq!(
        admin_call(reqwest::Method::PUT, "/directories/entra", Some(entra)).await,
        201
    );
    let profile = json!({"name": "to-entra", "source": "hr-src", "target": "entra", "mode": "match-only",
        "object_types": ["user"], "match": [{"source_attribute": "employeeId", "target_attribute": "employeeId"}]});
    assert_eq!(
        admin_call(reqwest::Method::PUT, "/profiles/to-entra", Some(profile)).await,
        201
    );
    b.go(&url).await;
    b.wait_text(
        "#agent-readiness",
        "✓ Confirm Microsoft 365 tenant Entra join and Intune Enrol settings",
    )
    .await;
    sim.set_policy(ferry_graph_sim::TenantPolicy {
        mfa_to_join: true,
        ..Default::default()
    });
    b.go(&format!("{url}#/preflight?directory=entra")).await;
    b.wait_text("#preflight-summary", "passes").await;
    b.click("#preflight-refresh").await;
    b.wait_text("#preflight-summary", "held back").await;
    let t = b.wait_text("#preflight-findings", "entra-join-mfa").await;
    assert!(t.contains("Require multifactor authentication"), "{t}");
    b.screenshot("preflight").await;
    b.go(&url).await;
    let t = b
        .wait_text(
            "#agent-readiness",
            "✗ Confirm Microsoft 365 tenant Entra join and Intune Enrol settings",
        )
        .await;
    assert!(t.contains("multifactor authentication is required"), "{t}");
    assert_eq!(
        admin_call(reqwest::Method::DELETE, "/profiles/to-entra", None).await,
        204
    );
    assert_eq!(
        admin_call(reqwest::Method::DELETE, "/directories/entra", None).await,
        204
    );
    drop(sim);

    let api_get = |path: &str| {
        let (http, url, t) = (reqwest::Client::new(), server.url.clone(), token("admin"));
        let path = path.to_string();
        async move {
            http.get(format!("{url}/api/v1{path}"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // Overrides from the What-If (issue 16): pin an ambiguous user to one of its candidates,
    // search the target and pin an unmatched one, exclude another; a cycle shows the pins' rule;
    // an override is removed again. The quickstart's users profile has ambiguous users.
    b.go(&format!("{url}#/whatif?profile=users&status=ambiguous"))
        .await;
    b.wait_text("main table", "ambiguous").await;
    let ambiguous = b
        .script("return document.querySelector('main table tbody tr').children[2].textContent")
        .await;
    let ambiguous = ambiguous.as_str().unwrap().to_string();
    b.click("button.pin-candidate").await;
    b.type_in("#override-reason", "HR: \"same person\", checked")
        .await;
    b.click("#override-save").await;
    b.wait_text("#override-message", "it takes effect at the next cycle")
        .await;
    b.wait_text("main", "Overrides of users").await;
    b.go(&format!("{url}#/whatif?profile=users&status=unmatched"))
        .await;
    b.wait_text("main table", "unmatched").await;
    // The first unmatched user: exclude it. The second: pin it to a target found by search.
    b.script("document.querySelectorAll('main table tbody tr')[0].querySelector('button.exclude').click()")
        .await;
    b.type_in("#override-reason", "left the company").await;
    b.click("#override-save").await;
    b.wait_text("#override-message", "Excluded").await;
    b.script("document.querySelectorAll('main table tbody tr')[1].querySelector('button.pin-search').click()")
        .await;
    b.type_in("#override-search", "Lee, Ann").await;
    b.click("#override-find").await;
    b.click("button.pick-target").await;
    b.click("#override-save").await;
    let pinned = b.wait_text("#override-message", "Pinned").await;
    assert!(pinned.contains("to Lee, Ann"), "{pinned}");
    b.screenshot("overrides").await;
    let last_cycle = || async { api_get("/cycles?profile=users&limit=1").await[0].clone() };
    let before = last_cycle().await["id"].as_i64().unwrap();
    b.click("#override-run").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = last_cycle().await;
        if c["id"].as_i64().unwrap() > before && c["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the cycle did not finish: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.go(&format!("{url}#/report?q={}", ambiguous.trim())).await;
    let r = b
        .wait_text(
            "main section.report",
            "pinned by admin: HR: \"same person\", checked",
        )
        .await;
    assert!(r.contains("matched"), "{ambiguous} is pinned: {r}");
    b.go(&format!("{url}#/whatif?profile=users&status=matched"))
        .await;
    let list = b.wait_text("main", "Overrides of users").await;
    assert!(
        list.contains("left the company") && list.contains("excluded"),
        "{list}"
    );
    // Ann Lee is matched by the rules already: the searched pin cannot hold, and says why.
    b.go(&format!("{url}#/whatif?profile=users&status=error"))
        .await;
    b.wait_text("main table", "its target is also matched from")
        .await;
    b.go(&format!("{url}#/whatif?profile=users&status=excluded"))
        .await;
    b.wait_text("main table", "excluded by admin: left the company")
        .await;
    // Remove the exclude: the rules decide it again at the next cycle.
    b.click("main table tbody button.unpin").await;
    b.call(reqwest::Method::POST, "/alert/accept", Some(json!({})))
        .await;
    b.wait_text("#override-message", "Removed the override")
        .await;
    assert_eq!(
        api_get("/profiles/users/overrides")
            .await
            .as_array()
            .unwrap()
            .len(),
        2,
        "the ambiguous pin and the searched pin stay"
    );

    // Pre-shared keys: created and shown once; an older one retired.
    b.go(&format!("{url}#/psks")).await;
    for name in ["wave-0", "wave-1"] {
        b.type_in("#psk-name", name).await;
        b.click("#psk-create").await;
        b.wait_text("main table", name).await;
    }
    let created = b.wait_text("#psk-created", "Shown this once: psk_").await;
    let psk = created
        .trim_start_matches("Shown this once: ")
        .trim()
        .to_string();
    assert!(psk.len() > 30);
    b.screenshot("psks").await;
    b.script(
        "[...document.querySelectorAll('main tr')].find(r => r.textContent.startsWith('wave-0')).querySelector('button.retire').click()",
    )
    .await;
    b.call(reqwest::Method::POST, "/alert/accept", Some(json!({})))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let retired = b
            .script("return [...document.querySelectorAll('main tr')].filter(r => r.textContent.startsWith('wave-0') && !r.querySelector('button.retire')).length")
            .await;
        if retired == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "wave-0 was not retired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.script("return document.querySelectorAll('button.retire').length")
            .await,
        1,
        "wave-1 stays"
    );

    // The quickstart's runbook and batch are its ferry.toml's: listed with that mark, and no
    // Edit or Delete (the batch keeps its What-If, dashboard and pre-flight).
    for (page, buttons) in [("runbooks", "button"), ("batches", "button:not(.whatif)")] {
        b.go(&format!("{url}#/{page}")).await;
        b.wait_text("main table", "Quickstart").await;
        let marks = b
            .script(&format!(
                "return [...document.querySelectorAll('main tr')].filter(r => r.textContent.startsWith('Quickstart')).map(r => \
                 [(r.querySelector('.configured') || {{textContent: ''}}).textContent, r.querySelectorAll('{buttons}').length])"
            ))
            .await;
        assert_eq!(marks, json!([["in ferry.toml", 0]]), "{page}");
    }

    // A runbook: a refused one says which field, then one with its sections filled in.
    // A prerequisite runbook, put by the API as the CLI does; the form's runbook needs it.
    let r = reqwest::Client::new()
        .put(format!("{}/api/v1/runbooks/Pre-Req%20agent%20check", server.url))
        .bearer_auth(token("admin"))
        .json(&json!({"name": "Pre-Req agent check", "source_directories": ["contoso"], "target_directories": ["fabrikam"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    b.go(&format!("{url}#/runbooks")).await;
    b.click("#runbook-save").await;
    b.wait_text("#runbook-form-message", "name").await;
    b.type_in("#rb-name", "Wave 1 workstations").await;
    b.click("#rb-source input[value=contoso]").await;
    b.click("#rb-target input[value=fabrikam]").await;
    b.click("#rb-prereq input[value='Pre-Req agent check']")
        .await;
    b.type_in("#rb-message", "Your computer moves to Fabrikam tonight.")
        .await;
    b.type_in("#rb-snoozes", "3").await;
    b.script("document.getElementById('rb-perm-mode').value = 'add-and-remove'")
        .await;
    b.type_in("#rb-ignore", "**/node_modules").await;
    b.screenshot("runbook-form").await;
    b.click("#runbook-save").await;
    b.wait_text("main table", "Wave 1 workstations").await;
    let rbs = api_get("/runbooks").await;
    let rb = rbs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Wave 1 workstations")
        .unwrap();
    assert_eq!(rb["user_experience"]["max_snoozes"], 3);
    assert_eq!(rb["permission_updates"]["mode"], "add-and-remove");
    assert_eq!(
        rb["permission_updates"]["ignore"],
        json!(["**/node_modules"])
    );
    assert_eq!(rb["prerequisites"], json!(["Pre-Req agent check"]));

    // A batch of one of Contoso's devices, its rules' warnings and its device What-If.
    let device = api_get("/translation?kind=device&limit=1").await["entries"][0]["source_name"]
        .as_str()
        .unwrap()
        .to_string();
    b.go(&format!("{url}#/batches")).await;
    b.type_in("#batch-name", "wave-1").await;
    b.click("#batch-runbooks input[value='Wave 1 workstations']")
        .await;
    b.script(
        "document.getElementById('batch-source').value = 'contoso'; document.getElementById('batch-target').value = 'fabrikam'; \
         document.getElementById('batch-enforced').value = '2030-01-01T18:00'; \
         document.getElementById('batch-available').value = '2020-01-01T08:00';",
    )
    .await;
    b.type_in("#batch-computers", &device).await;
    // Its wave: one canary device, which must be verified before any other starts.
    b.type_in("#batch-canary", "1").await;
    b.click("#batch-save").await;
    let row = b.wait_text("main table", "wave-1").await;
    // The batch rules added the prerequisite, and say so.
    b.wait_text(
        "#batch-warnings",
        "added prerequisite runbook `Pre-Req agent check`",
    )
    .await;
    assert!(
        row.contains("Pre-Req agent check, Wave 1 workstations"),
        "{row}"
    );
    assert!(row.contains("2030-01-01T18:00 UTC"), "{row}");
    b.script(
        "[...document.querySelectorAll('main tr')].find(r => r.textContent.startsWith('wave-1')).querySelector('button.whatif').click()",
    )
    .await;
    b.wait_text("#batch-message", "What-If of wave-1").await;
    b.wait_text("#batch-message", &device.to_lowercase()).await;
    b.screenshot("batches").await;
    // Its tenant pre-flight: a file target whose runbooks do not join Entra ID has no check.
    b.go(&format!("{url}#/preflight?batch=wave-1")).await;
    b.wait_text("#preflight-findings", "No check applies").await;

    // The device enrolls with the key the console showed, and reports a run under way.
    let ep = api_get("/agent-endpoint").await;
    let agent = ferry_agent::client::Client::new(
        ep["url"].as_str().unwrap(),
        ep["certificate_sha256"].as_str().unwrap(),
    )
    .unwrap();
    let facts = ferry_core::agent::DeviceFacts {
        device_id: "console-test-device".into(),
        hostname: device.clone(),
        os: "linux".into(),
        os_version: "Debian 13".into(),
        agent_version: "0.1.0".into(),
        directory_object_id: None,
        joined_to: Some("contoso.test".into()),
    };
    let enrolled = agent
        .enroll(
            &ferry_core::agent::Credential::new(psk.clone()),
            facts,
            vec![],
            None,
        )
        .await
        .unwrap();
    let agent = agent.with_node_key(enrolled.node_key);
    // The batch is offered (Available From has passed): the check-in hands the run, and the
    // server takes events of that run only, in the order of its steps.
    let order = agent
        .checkin(&ferry_core::agent::CheckinRequest {
            protocol: ferry_core::agent::PROTOCOL_VERSION,
            state: Some("running".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .migration
        .expect("an offered batch hands its run at check-in");
    let steps = ferry_core::runbook::plan_steps(&order.runbooks);
    let (first, second) = (steps[0].id.as_str(), steps[1].id.as_str());
    let ev = |step: &str, status: &str, p: u8| ferry_core::agent::AgentEvent {
        at: 1_800_000_000_000,
        step: step.into(),
        status: status.into(),
        message: format!("{step} {status}"),
        progress: Some(p),
    };
    agent
        .events(
            &order.run,
            vec![
                ev(first, "started", 0),
                ev(first, "succeeded", 10),
                ev(second, "started", 60),
            ],
        )
        .await
        .unwrap();
    agent
        .log(&order.run, 0, "re-permissioning /home/ann\n".into())
        .await
        .unwrap();

    // The migration dashboard: devices by state, updating by itself; the device's steps and log.
    b.go(&format!("{url}#/dashboard?batch=wave-1")).await;
    b.find("#chart-states rect.state-running").await;
    let row = b
        .wait_text("#dash-agents", &format!("{second} started"))
        .await;
    assert!(row.contains(&device), "{row}");
    let first = b.text("#dash-updated").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = b.text("#dash-updated").await;
        if now != first {
            assert!(
                now.starts_with("updated "),
                "the dashboard's update failed: {now}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the dashboard did not update");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.screenshot("dashboard").await;
    b.click("#dash-agents a").await;
    b.wait_text("main", &format!("Run {}", order.run)).await;
    b.click("main h2 button").await;
    b.wait_text("#agent-log", "re-permissioning /home/ann")
        .await;
    // The device's pre-flight and its post-flight evidence, as its agent reports them.
    let check = |name: &str, ok: bool, detail: &str| {
        ferry_core::agent::PreflightCheck::new(name, ok, true, detail)
    };
    agent
        .checkin(&ferry_core::agent::CheckinRequest {
            protocol: ferry_core::agent::PROTOCOL_VERSION,
            state: Some("verified".into()),
            clock: Some(jiff::Timestamp::now().as_millisecond()),
            preflight: Some(ferry_core::agent::DevicePreflight {
                at: jiff::Timestamp::now().as_millisecond(),
                checks: vec![check("free-space", true, "at least 20480 MiB free where the run writes")],
            }),
            verification: Some(ferry_core::agent::Verification {
                run: order.run.clone(),
                after: "run".into(),
                at: jiff::Timestamp::now().as_millisecond(),
                checks: vec![check("principals", true, "1,204 entries checked: none names a source principal the run should have replaced")],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    b.go(&format!("{url}#/dashboard?batch=wave-1")).await;
    b.wait_text("#dash-agents", &device).await;
    b.click("#dash-agents a").await;
    b.wait_text("#agent-preflight", "free-space").await;
    b.wait_text("#agent-verification", "none names a source principal")
        .await;
    b.screenshot("agent").await;
    // The run fails: the batch halts itself (max_failure_rate 0), its dashboard says why, and
    // the admin resumes it there (audited).
    agent
        .checkin(&ferry_core::agent::CheckinRequest {
            protocol: ferry_core::agent::PROTOCOL_VERSION,
            state: Some("failed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    b.go(&format!("{url}#/dashboard?batch=wave-1")).await;
    b.wait_text("#dash-halted", "1 of the canary's 1 device(s) failed")
        .await;
    b.wait_text("#dash-canary", "Canary (starts first)").await;
    b.screenshot("dashboard-halted").await;
    b.click("#dash-resume").await;
    b.wait_text("#dash-wave", "Last resumed by").await;
    let audit = api_get("/audit?limit=20").await;
    let acts: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["subject"] == "wave-1")
        .map(|a| a["action"].as_str().unwrap())
        .filter(|a| a.starts_with("batch."))
        .collect();
    // Newest first: the operator's resume, the server's halt, and the console's own acts that
    // made the batch (each audited with the operator and the address).
    assert_eq!(
        acts,
        ["batch.resume", "batch.halt", "batch.computers", "batch.add"],
        "{audit}"
    );
    b.go(&format!("{url}#/agents")).await;
    b.wait_text("#agents-total", "1 agents").await;
    // Another device with the key claims this one's host name: it waits on the agents page, and
    // the admin refuses it there.
    let claimer = ferry_agent::client::Client::new(
        ep["url"].as_str().unwrap(),
        ep["certificate_sha256"].as_str().unwrap(),
    )
    .unwrap();
    let held = claimer
        .enroll(
            &ferry_core::agent::Credential::new(psk.clone()),
            ferry_core::agent::DeviceFacts {
                device_id: "someone-else".into(),
                hostname: device.clone(),
                os: "linux".into(),
                agent_version: "0.1.0".into(),
                ..Default::default()
            },
            vec![],
            None,
        )
        .await
        .unwrap();
    assert!(
        held.held.is_some(),
        "a claim on an enrolled host name is held"
    );
    b.go(&format!("{url}#/dashboard")).await;
    b.go(&format!("{url}#/agents")).await;
    let row = b
        .wait_text("#enrollment-requests", "claims the host name")
        .await;
    assert!(row.contains("someone-else"), "{row}");
    b.screenshot("agents-held").await;
    b.script("document.querySelector('#enrollment-requests button.refuse').click()")
        .await;
    b.call(reqwest::Method::POST, "/alert/accept", Some(json!({})))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b
        .script("return document.querySelectorAll('#enrollment-requests').length")
        .await
        != json!(0)
    {
        assert!(Instant::now() < deadline, "the refused request stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/enrollment-requests?state=refused",
            server.url
        ))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused[0]["decided_by"], "admin", "{refused}");
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    b.sign_out().await;

    // A viewer sees the admin's pages and no control that changes anything.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/operators", server.url))
        .bearer_auth(token("admin"))
        .json(&json!({"name": "vera", "viewer": true}))
        .send()
        .await
        .unwrap();
    let viewer = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    b.sign_in_with_token(&url, &viewer).await;
    assert!(b.text("#who").await.contains("viewer, read-only"));
    for p in [
        "directories",
        "profiles",
        "whatif?profile=users&status=ambiguous",
        "psks",
        "runbooks",
        "batches",
        "moves",
    ] {
        b.go(&format!("{url}#/{p}")).await;
        b.find("main h1").await;
        b.find("main table, main p.muted").await;
        let controls = b
            .script(
                "return document.querySelectorAll('button.run, button.retire, button.approve, button.refuse, #whatif-approve, #psk-create, \
                 button.pin-candidate, button.pin-search, button.exclude, button.unpin, #override-form, \
                 #dir-form, #profile-form, #runbook-form, #batch-form').length",
            )
            .await;
        assert_eq!(
            controls, 0,
            "{p}: a viewer sees no control that changes anything"
        );
    }
    b.go(&format!("{url}#/profiles")).await;
    b.wait_text("main table", "hr-src → hr-tgt").await;
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

/// The list pages (issue 20) on quickstart data: the translation table and the message logs show
/// the total the API counts (not the page, not a cap), page by keyset without skipping or
/// repeating a row, filter by kind and level, show each entry's profile, and export the filtered
/// list whole. Catches the silent 500-row cap of the logs, the readiness note's "100+", a
/// translation row without its profile, and an export of something else than what is filtered.
async fn lists_show_totals_pages_filters_and_exports(
    b: &Browser,
    url: &str,
    api: &str,
    admin: &str,
) {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let admin = admin.to_string();
        async move {
            let r = http
                .get(format!("{api}/api/v1{path}"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            let total = r
                .headers()
                .get("x-total-count")
                .map(|v| v.to_str().unwrap().parse::<i64>().unwrap());
            (r.json::<Value>().await.unwrap(), total)
        }
    };
    // Downloads are caught as the page makes them: the text of each blob it links.
    let catch_downloads = "window.__downloads = []; const make = URL.createObjectURL; \
        URL.createObjectURL = (blob) => { blob.text().then((t) => window.__downloads.push(t)); return make(blob); };";
    let downloaded = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = b
                .script("return window.__downloads && window.__downloads.length ? window.__downloads[0] : null")
                .await;
            if let Some(t) = v.as_str() {
                return t.to_string();
            }
            assert!(Instant::now() < deadline, "no file was downloaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let rows = |sel: &'static str| async move {
        b.script(&format!(
            "return [...document.querySelectorAll('{sel} tbody tr')].map(r => [...r.cells].map(c => c.innerText).join('|'))"
        ))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
    };

    // The translation table: its total, a profile column, two keyset pages = the API's first 100.
    let (all, _) = get("/translation?limit=100".into()).await;
    let total = all["total"].as_i64().unwrap();
    assert!(total > 50, "quickstart has more than a page: {total}");
    b.go(&format!("{url}#/translation")).await;
    b.wait_text(
        "#translation-total",
        &format!("{total} entries, 50 on this page"),
    )
    .await;
    let head = b.text("#translation-list thead").await;
    assert!(head.starts_with("Profile"), "{head}");
    let page1 = rows("#translation-list").await;
    b.click("#translation-next").await;
    b.find("#translation-first").await;
    let page2 = rows("#translation-list").await;
    assert_eq!((page1.len(), page2.len()), (50, 50));
    let want: Vec<String> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}|{}",
                e["profile"].as_str().unwrap(),
                e["kind"].as_str().unwrap()
            )
        })
        .collect();
    let shown: Vec<String> = page1
        .iter()
        .chain(&page2)
        .map(|r| r.split('|').take(2).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(shown, want, "two pages are the first 100 entries, in order");
    let mut seen = page1.clone();
    seen.extend(page2.clone());
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 100, "no row on both pages");

    // Filtered by kind: the total follows, and the CSV export is of the filtered list, whole.
    let (groups, _) = get("/translation?limit=1&kind=group".into()).await;
    let groups = groups["total"].as_i64().unwrap();
    assert!(groups > 0 && groups < total, "{groups} of {total}");
    b.script(
        "const k = document.getElementById('translation-kind'); k.value = 'group'; k.dispatchEvent(new Event('change'));",
    )
    .await;
    b.wait_text("#translation-total", &format!("{groups} entries"))
        .await;
    b.script(catch_downloads).await;
    b.click("#export-csv").await;
    let csv = downloaded().await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len() as i64, groups + 1, "{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.split(',').nth(1) == Some("group")),
        "{csv}"
    );

    // The message logs: the total of every warning and error (no cap), and their export.
    let (_, warnings) = get("/logs?level=warning&limit=1".into()).await;
    let warnings = warnings.expect("X-Total-Count");
    assert!(warnings > 0);
    b.go(&format!("{url}#/logs?level=warning")).await;
    b.wait_text("#logs-total", &format!("{warnings} entries"))
        .await;
    let shown = rows("#logs-list").await.len() as i64;
    assert_eq!(shown, warnings.min(200));
    b.script(catch_downloads).await;
    b.click("#logs-export").await;
    let csv = downloaded().await;
    assert_eq!(csv.lines().count() as i64, warnings + 1, "{csv}");
    // The readiness note counts them all.
    let (_, errors) = get("/logs?level=error&limit=1".into()).await;
    b.go(url).await;
    b.wait_text(
        "#readiness",
        &format!(
            "{} errors, {} warnings to review",
            errors.unwrap(),
            warnings - errors.unwrap()
        ),
    )
    .await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());
}

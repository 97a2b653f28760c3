//! Debian's Chromium driven over WebDriver (chromedriver) by a small client: the console's test
//! (`crates/ferry/tests/console.rs`) and the console's walk at a million entries
//! (`console-pages` with `FERRY_BENCH_BROWSER=1`) both use it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a driver for tests and benchmarks: fails loudly

use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
    /// Requests the pages made to another origin than their own, gathered before each
    /// navigation (which clears the page's record of them); see [`Browser::requests_off_server`].
    off_server: std::sync::Mutex<Vec<String>>,
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
    /// Chromium at 1280 × 900, headless; none when Chromium or chromedriver is not installed
    /// (which `FERRY_REQUIRE_SERVERS`, set by `scripts/test`, turns into a failure).
    pub async fn start() -> Option<Browser> {
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
        let mut b = Browser {
            driver,
            http,
            base,
            off_server: Default::default(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900"]}}}});
        let v = b.call(reqwest::Method::POST, "/session", Some(caps)).await;
        b.base = format!("{}/session/{}", b.base, v["sessionId"].as_str().unwrap());
        Some(b)
    }

    pub async fn call(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(m, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    pub async fn go(&self, url: &str) {
        // A navigation to another document forgets the page's requests: keep them first.
        self.gather_requests().await;
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Every request (scripts, styles, images, `fetch`) a page of this browser made to another
    /// origin than the page's own since the last call: the console must make none (no CDN, no
    /// font service, no telemetry). Read from the pages' resource timing.
    pub async fn requests_off_server(&self) -> Vec<String> {
        self.gather_requests().await;
        std::mem::take(&mut *self.off_server.lock().unwrap())
    }

    async fn gather_requests(&self) {
        let v = self
            .script(
                "performance.setResourceTimingBufferSize(100000); \
                 const names = performance.getEntriesByType('resource').map((r) => r.name); \
                 performance.clearResourceTimings(); \
                 return [location.origin, names];",
            )
            .await;
        let origin = v[0].as_str().unwrap_or_default();
        let off = v[1]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|n| !n.starts_with(&format!("{origin}/")) && !n.starts_with("data:"))
            .map(str::to_string);
        self.off_server.lock().unwrap().extend(off);
    }

    /// The first element matching `css`, waiting for it up to 10 s.
    pub async fn find(&self, css: &str) -> String {
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

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_in(&self, css: &str, s: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": s})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `css`'s text contains `want`.
    pub async fn wait_text(&self, css: &str, want: &str) -> String {
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

    pub async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// The strings a script returns as an array (the cells of a table's rows, say).
    pub async fn strings(&self, js: &str) -> Vec<String> {
        let v = self.script(js).await;
        v.as_array()
            .unwrap_or_else(|| panic!("not an array of strings: {v}"))
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    }

    /// Console messages at warning level or worse since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
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

    /// The page as a PNG.
    pub async fn screenshot_png(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        png
    }

    /// Takes a screenshot (a PNG, checked), written to `docs/screenshots/NAME.png` when
    /// `FERRY_UPDATE_SCREENSHOTS` is set.
    pub async fn screenshot(&self, name: &str) {
        let png = self.screenshot_png().await;
        if std::env::var_os("FERRY_UPDATE_SCREENSHOTS").is_some() {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    pub async fn sign_out(&self) {
        self.click("#signout").await;
        self.find("#signin").await;
    }

    pub async fn sign_in_with_token(&self, url: &str, token: &str) {
        self.go(url).await;
        self.type_in("#token", token).await;
        self.click("#signin-button").await;
        self.find("#signout").await;
    }

    /// Goes to the console's `#/route` and answers how long until the page rendered (its `h1`
    /// drawn, from the moment the hash changed), and the page's text. The previous page is
    /// cleared first, so its heading is never taken for the new one.
    pub async fn render(&self, route: &str) -> (Duration, String) {
        let v = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({"script": r#"
                    const [route, done] = arguments;
                    const main = document.querySelector("main");
                    main.replaceChildren();
                    const t0 = performance.now();
                    // The same route again (a page rendered twice): no hash change, so the
                    // event the console routes on is sent as the browser would.
                    if (location.hash === route) window.dispatchEvent(new HashChangeEvent("hashchange"));
                    else location.hash = route;
                    const poll = () => {
                      const h = main.querySelector("h1");
                      if (h) done([performance.now() - t0, main.innerText]);
                      else setTimeout(poll, 2);
                    };
                    poll();
                "#, "args": [format!("#/{route}")]})),
            )
            .await;
        let ms = v[0].as_f64().unwrap_or_else(|| panic!("{route}: {v}"));
        (
            Duration::from_secs_f64(ms / 1000.0),
            v[1].as_str().unwrap_or_default().to_string(),
        )
    }
}

/// One page of the console walked in Chromium: its route, the first render and the median of
/// the following ones (from the hash change to the page drawn, requests included).
pub struct Walked {
    pub route: String,
    pub first: Duration,
    pub median: Duration,
    pub max: Duration,
}

/// Signs in at `url` with `token` and renders each route `renders` times in Chromium. Fails
/// on a page that says "Something went wrong", shows a value as `[object …]`, logs a console
/// error, or makes a request off the server. With `shots`, each page's last render is written there as `NAME.png` (the route's
/// name, `/` and `?` as `-`). None when Chromium is not installed.
pub async fn walk_console(
    url: &str,
    token: &str,
    routes: &[String],
    renders: usize,
    shots: Option<(&std::path::Path, &str)>,
) -> Option<Vec<Walked>> {
    let b = Browser::start().await?;
    b.sign_in_with_token(url, token).await;
    let mut out = Vec::new();
    for route in routes {
        let mut times = Vec::with_capacity(renders);
        let mut text = String::new();
        for _ in 0..renders.max(1) {
            let (t, shown) = b.render(route).await;
            times.push(t);
            text = shown;
        }
        assert!(
            !text.starts_with("Something went wrong") && !text.contains("[object "),
            "#/{route}: {text}"
        );
        let errors = b.console_errors().await;
        assert!(errors.is_empty(), "#/{route}: console errors: {errors:?}");
        let off = b.requests_off_server().await;
        assert!(
            off.is_empty(),
            "#/{route}: requests off the server: {off:?}"
        );
        if let Some((dir, suffix)) = shots {
            let name = if route.is_empty() { "overview" } else { route };
            let name: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            std::fs::write(
                dir.join(format!("{name}{suffix}.png")),
                b.screenshot_png().await,
            )
            .expect("screenshot");
        }
        let first = times[0];
        let mut rest = times[1..].to_vec();
        rest.sort();
        let median = rest.get(rest.len() / 2).copied().unwrap_or(first);
        let max = rest.last().copied().unwrap_or(first).max(first);
        out.push(Walked {
            route: route.clone(),
            first,
            median,
            max,
        });
    }
    Some(out)
}

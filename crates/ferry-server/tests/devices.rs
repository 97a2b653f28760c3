//! Devices over real HTTP: the admin API on plain HTTP and the agent endpoint on TLS (the client
//! trusts exactly the server's generated certificate). Enrollment, check-in orders, runbooks,
//! batches and their rules, the what-if, reports, and every refusal the issue lists.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_core::snapshot::render_json;
use ferry_demo as sample;
use ferry_server::devices;
use ferry_server::settings::Settings;
use ferry_server::{AgentEndpoint, Server, ServerOptions};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

mod support;

struct H {
    _server: Server,
    /// `fabrikam-entra`'s tenant (the tenant pre-flight reads it).
    _sim: ferry_graph_sim::GraphSim,
    admin: reqwest::Client,
    agent: reqwest::Client,
    url: String,
    agent_url: String,
    token: String,
    fingerprint: String,
    dir: std::path::PathBuf,
}

/// The test configuration with `server` keys (`[server.agents]` …) in front.
fn config_with(server: &str, graph_url: &str) -> String {
    format!(
        "{server}\n\
         [[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n\
         [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
         [[directory]]\nname = \"fabrikam-entra\"\nkind = \"graph\"\ntenant_id = \"fabrikam.onmicrosoft.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\ngraph_url = \"{graph_url}\"\nlogin_url = \"{graph_url}\"\n\n\
         [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{}",
        sample::QUICKSTART_RULES
    )
}

async fn start(dir: &Path) -> H {
    start_with(dir, "").await
}

async fn start_with(dir: &Path, server_toml: &str) -> H {
    start_on(dir, server_toml, None, None).await
}

/// A server on `database_url` (None: the embedded SQLite); servers sharing a database share
/// its admin token and secret key.
async fn start_on(
    dir: &Path,
    server_toml: &str,
    database_url: Option<String>,
    admin_token: Option<&str>,
) -> H {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = sample::generate(60, true, 5);
    std::fs::write(dir.join("contoso.json"), render_json(&s.source)).unwrap();
    std::fs::write(dir.join("fabrikam.json"), render_json(&s.target)).unwrap();
    let sim = ferry_graph_sim::GraphSim::start(
        ferry_graph_sim::SimOptions {
            domain: "fabrikam.onmicrosoft.com".into(),
            client_id: "c".into(),
            client_secret: "s".into(),
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    std::fs::write(dir.join("ferry.toml"), config_with(server_toml, &sim.url())).unwrap();
    let settings = Settings::load(&dir.join("ferry.toml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(
        ServerOptions {
            settings,
            data_dir: dir.join("data"),
            database_url,
            admin_token: admin_token.map(str::to_string),
            // Servers on one database seal credentials under one key.
            secret_key: admin_token.map(|_| "cd".repeat(32)),
            scheduler: false,
            agent: Some(AgentEndpoint {
                listener: agent_listener,
                cert: None,
                names: vec![],
                public_url: None,
            }),
        },
        listener,
    )
    .await
    .unwrap();
    let pem = std::fs::read(dir.join("data/agent-tls/cert.pem")).unwrap();
    let agent = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    H {
        url: format!("http://{}", server.addr),
        agent_url: format!("https://{}", server.agent_addr.unwrap()),
        token: server.admin_token.clone(),
        fingerprint: server.agent_fingerprint.clone().unwrap(),
        _server: server,
        _sim: sim,
        admin: reqwest::Client::new(),
        agent,
        dir: dir.to_path_buf(),
    }
}

impl H {
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .admin
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        let t = resp.text().await.unwrap();
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn call_agent(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut r = self
            .agent
            .post(format!("{}/agent/v1{path}", self.agent_url))
            .json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get_agent(&self, path: &str, key: &str) -> (u16, Value) {
        let resp = self
            .agent
            .get(format!("{}/agent/v1{path}", self.agent_url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn enroll(&self, psk: &str, host: &str, profiles: Value) -> (u16, Value) {
        self.enroll_as(psk, &format!("id-{host}"), host, profiles)
            .await
    }
    async fn enroll_as(
        &self,
        psk: &str,
        device_id: &str,
        host: &str,
        profiles: Value,
    ) -> (u16, Value) {
        self.call_agent(
            "/enroll",
            None,
            json!({"protocol": 1, "psk": psk, "profiles": profiles,
                   "device": {"device_id": device_id, "hostname": host, "os": "linux", "os_version": "Debian 12", "agent_version": "0.1.0"}}),
        )
        .await
    }
}

fn runbook(name: &str, prerequisites: &[&str], join_entra: bool) -> Value {
    let mut r = json!({
        "name": name, "source_directories": ["contoso"],
        "target_directories": [if join_entra { "fabrikam-entra" } else { "fabrikam" }],
        "prerequisites": prerequisites,
        "permission_updates": {"mode": "add-and-remove", "paths": ["/home", "/srv/share"], "ignore": ["**/.cache"]},
    });
    if join_entra {
        r["device_state"] =
            json!({"remove_from": "ad", "join": "entra-id", "enrol_in_intune": true});
    }
    r
}

fn local(offset_hours: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(offset_hours))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_checkin_runbooks_batches_and_orders() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    // The endpoint and its fingerprint, the same as the certificate's.
    let (_, ep) = h.api(M::GET, "/agent-endpoint", None).await;
    assert_eq!(ep["certificate_sha256"], h.fingerprint);
    let pem = std::fs::read_to_string(h.dir.join("data/agent-tls/cert.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(
        ferry_server::agent_tls::fingerprint(der.as_ref()),
        h.fingerprint
    );

    // A translation table to hand out: one cycle.
    let (s, _) = h.api(M::POST, "/profiles/users/run?wait=true", None).await;
    assert_eq!(s, 202);
    let (_, t) = h
        .api(M::GET, "/translation?profile=users&kind=user&limit=3", None)
        .await;
    let entries = t["entries"].as_array().unwrap().clone();
    let (ann, bob) = (&entries[0], &entries[1]);

    // A pre-shared key, shown once.
    let (s, k) = h
        .api(M::POST, "/psks", Some(json!({"name": "wave-1"})))
        .await;
    assert_eq!(s, 201, "{k}");
    let psk = k["key"].as_str().unwrap().to_string();
    let (_, list) = h.api(M::GET, "/psks", None).await;
    assert!(!list.to_string().contains(&psk), "the key is never listed");

    // Enrollment with a harvest: two translated profiles and one unknown.
    let profiles = json!([
        {"name": ann["source_name"], "sid": ann["source_sid"], "uid": ann["source_uid"], "home": "/home/ann", "size_bytes": 1000},
        {"name": bob["source_name"], "sid": bob["source_sid"], "uid": bob["source_uid"], "home": "/home/bob"},
        {"name": "stranger", "uid": 4242, "home": "/home/stranger"}
    ]);
    let (s, e) = h.enroll(&psk, "PC-0001", profiles.clone()).await;
    assert_eq!(s, 200, "{e}");
    let key = e["node_key"].as_str().unwrap().to_string();
    assert_eq!(e["poll_interval_seconds"], 60);
    let (s, c) = h
        .call_agent(
            "/checkin",
            Some(&key),
            json!({"protocol": 1, "state": "idle"}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert!(c["assignment"].is_null() && c["migration"].is_null());

    // Runbooks: a prerequisite and a main one; bad ones name their field.
    let (s, v) = h.api(M::PUT, "/runbooks/Pre-Req", Some(json!({"name": "Pre-Req", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
        "startup": {"user_interaction": "silent", "do_not_run_startup": true}, "app_reconfiguration": {"onedrive_cloud_only": true}, "completion": {"do_not_run_completion": true}}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h
        .api(
            M::PUT,
            "/runbooks/Main",
            Some(runbook("Main", &["Pre-Req"], false)),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut bad = runbook("Bad", &[], true);
    bad["target_directories"] = json!(["fabrikam"]);
    let (s, v) = h.api(M::PUT, "/runbooks/Bad", Some(bad)).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("device_state.join:"),
        "{v}"
    );
    let (s, v) = h.api(M::PUT, "/runbooks/Pre-Req", Some(json!({"name": "Pre-Req", "source_directories": ["contoso"], "target_directories": ["fabrikam"], "prerequisites": ["Main"]}))).await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("cycle"), "{v}");

    // Batches: the prerequisite is refused when missing, added on request.
    let batch = |name: &str, runbooks: &[&str], enforced: i64| {
        json!({"name": name, "source_directory": "contoso", "target_directory": "fabrikam",
        "runbooks": runbooks, "enforced_after": local(enforced), "time_zone": "UTC"})
    };
    let (s, v) = h
        .api(
            M::PUT,
            "/batches/Pilot",
            Some(batch("Pilot", &["Main"], 72)),
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("`Pre-Req`"), "{v}");
    let (s, v) = h
        .api(
            M::PUT,
            "/batches/Pilot?add_prerequisites=true",
            Some(batch("Pilot", &["Main"], 72)),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["runbooks"], json!(["Pre-Req", "Main"]));
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("added prerequisite")
    );
    h.api(
        M::PUT,
        "/batches/Wave2",
        Some(batch("Wave2", &["Pre-Req", "Main"], 2)),
    )
    .await;
    // Computers: known ones only, one batch each, late additions warned.
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Pilot/computers",
            Some(json!({"add": ["PC-0001"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["warnings"].as_array().unwrap().is_empty(),
        "72 h ahead: no warning"
    );
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Wave2/computers",
            Some(json!({"add": ["pc-0001"]})),
        )
        .await;
    assert_eq!(s, 409);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("already in batch `Pilot`"),
        "{v}"
    );
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Wave2/computers",
            Some(json!({"add": ["NOT-A-PC"]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, e2) = h.enroll(&psk, "PC-0002", json!([])).await;
    let key2 = e2["node_key"].as_str().unwrap().to_string();
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Wave2/computers",
            Some(json!({"add": ["PC-0002"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("less than 24 hours"),
        "{v}"
    );

    // Not due yet: the assignment only.
    let (_, c) = h
        .call_agent("/checkin", Some(&key), json!({"protocol": 1}))
        .await;
    assert_eq!(c["assignment"]["batch"], "Pilot");
    assert_eq!(c["assignment"]["runbooks"], json!(["Pre-Req", "Main"]));
    assert!(c["migration"].is_null());

    // The what-if: two profiles remapped, one without a target.
    let (_, w) = h.api(M::GET, "/batches/Pilot/whatif", None).await;
    let d = &w["devices"][0];
    // As it was added to the batch (issue 20: names typed in capitals are shown as typed).
    assert_eq!(d["computer"], "PC-0001");
    assert_eq!(d["remap"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(d["no_target"], json!(["stranger"]));
    assert!(
        d["steps"]
            .to_string()
            .contains("make OneDrive files cloud-only"),
        "{d}"
    );

    // Due: the migration order carries the runbooks and this device's translation only.
    let (s, _) = h
        .api(
            M::PUT,
            "/batches/Pilot",
            Some(batch("Pilot", &["Pre-Req", "Main"], -1)),
        )
        .await;
    assert_eq!(s, 200);
    // Catches: a device migrating although a harvested profile has no translation (its user
    // would land in a profile whose files keep the source owner), or skipped silently.
    let (_, c) = h
        .call_agent("/checkin", Some(&key), json!({"protocol": 1}))
        .await;
    assert!(c["migration"].is_null(), "{c}");
    assert!(
        c["blocked"]
            .as_str()
            .unwrap()
            .contains("not ready: profiles (no translation for stranger"),
        "{c}"
    );
    // The runbook says to skip such profiles: the order names them.
    let mut main = runbook("Main", &["Pre-Req"], false);
    main["permission_updates"]["skip_unresolved_profiles"] = json!(true);
    let (s, v) = h.api(M::PUT, "/runbooks/Main", Some(main)).await;
    assert_eq!(s, 200, "{v}");
    // A device whose clock is an hour off is held back (a domain join would fail).
    let (_, c) = h
        .call_agent(
            "/checkin",
            Some(&key),
            json!({"protocol": 1, "clock": jiff::Timestamp::now().as_millisecond() - 3_600_000}),
        )
        .await;
    assert!(
        c["blocked"]
            .as_str()
            .unwrap()
            .contains("clock (3600 s behind"),
        "{c}"
    );
    let (_, c) = h
        .call_agent(
            "/checkin",
            Some(&key),
            json!({"protocol": 1, "clock": jiff::Timestamp::now().as_millisecond()}),
        )
        .await;
    let m = &c["migration"];
    assert_eq!(m["mode"], "enforced", "{c}");
    assert_eq!(m["runbooks"][0]["name"], "Pre-Req");
    assert_eq!(m["translation"].as_array().unwrap().len(), 2);
    assert_eq!(m["translation"][0]["target_sid"], ann["target_sid"]);
    assert_eq!(m["untranslated"], json!(["stranger"]));
    let run = m["run"].as_str().unwrap().to_string();

    // Progress events and logs, seen by the operator.
    let (s, _) = h.call_agent("/events", Some(&key), json!({"protocol": 1, "run": run, "events": [
        {"at": 1, "step": "Pre-Req/prerequisites", "status": "succeeded", "progress": 10},
        {"at": 2, "step": "Pre-Req/onedrive-cloud-only", "status": "started", "message": "3 paths", "progress": 40}]})).await;
    assert_eq!(s, 204);
    for (off, text) in [(0, "line one\n"), (9, "line two\n"), (9, "line two\n")] {
        let (s, _) = h
            .call_agent(
                "/logs",
                Some(&key),
                json!({"protocol": 1, "run": run, "offset": off, "text": text}),
            )
            .await;
        assert_eq!(s, 204);
    }
    let log = h
        .admin
        .get(format!(
            "{}/api/v1/agents/{}/runs/{run}/log",
            h.url, e["agent_id"]
        ))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(log, "line one\nline two\n");
    // Check-ins and states are written behind (within ~200 ms): wait for them.
    let mut p = Value::Null;
    for _ in 0..50 {
        p = h.api(M::GET, "/batches/Pilot/progress", None).await.1;
        if p["agents"][0]["state"] == "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(p["computers"], 1);
    assert_eq!(p["agents"][0]["progress"], 40, "{p}");
    assert_eq!(p["agents"][0]["state"], "running", "{p}");

    // Own runbook and translation: yes; another batch's runbook or someone else's profile: no.
    let (s, _) = h.get_agent("/runbooks/Main", &key).await;
    assert_eq!(s, 200);
    let (s, v) = h
        .get_agent(
            &format!(
                "/translation?profile={}",
                ann["source_name"].as_str().unwrap().replace(' ', "%20")
            ),
            &key,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // A cycle that changes the table reaches the agent endpoint at once, not after a cache's
    // lifetime (catches an index cached by time: Ann, excluded, was still handed out).
    let ann_path = format!(
        "/translation?profile={}",
        ann["source_name"].as_str().unwrap().replace(' ', "%20")
    );
    let (s, v) = h
        .api(
            M::POST,
            "/profiles/users/overrides",
            Some(json!({"source": ann["source_id"], "exclude": true, "reason": "left"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = h.api(M::POST, "/profiles/users/run?wait=true", None).await;
    assert_eq!(s, 202);
    let (s, v) = h.get_agent(&ann_path, &key).await;
    assert_eq!(s, 404, "an excluded user is no longer handed out: {v}");
    let (s, v) = h
        .api(
            M::DELETE,
            &format!(
                "/profiles/users/overrides/{}",
                ann["source_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let (s, _) = h.api(M::POST, "/profiles/users/run?wait=true", None).await;
    assert_eq!(s, 202);
    let (s, v) = h.get_agent(&ann_path, &key).await;
    assert_eq!(s, 200, "back after the override is removed: {v}");
    let (s, v) = h.get_agent("/translation?profile=stranger", &key2).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")));
    h.api(
        M::PUT,
        "/runbooks/Other",
        Some(runbook("Other", &[], false)),
    )
    .await;
    let (s, _) = h.get_agent("/runbooks/Other", &key).await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_right_logged_and_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "old"}))).await;
    let old = k["key"].as_str().unwrap().to_string();
    let (_, e) = h.enroll(&old, "PC-OLD", json!([])).await;
    let old_agent_key = e["node_key"].as_str().unwrap().to_string();

    // No or bad PSK.
    let (s, v) = h.enroll("psk_wrong", "PC-X", json!([])).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("bad_psk")));
    let (s, v) = h.call_agent("/enroll", None, json!({"protocol": 1, "device": {"device_id": "x", "hostname": "x", "os": "linux", "agent_version": "1"}})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("bad_request")),
        "a missing psk is a malformed enrollment"
    );
    // Retired PSK: no new agents; the enrolled one keeps working.
    h.api(M::POST, "/psks/old/retire", None).await;
    let (s, v) = h.enroll(&old, "PC-NEW", json!([])).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("retired_psk")), "{v}");
    let (s, _) = h
        .call_agent("/checkin", Some(&old_agent_key), json!({"protocol": 1}))
        .await;
    assert_eq!(s, 200);
    // A forged node credential; no credential.
    let (s, v) = h
        .call_agent("/checkin", Some("forged"), json!({"protocol": 1}))
        .await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")));
    let (s, _) = h.call_agent("/checkin", None, json!({"protocol": 1})).await;
    assert_eq!(s, 401);
    // A protocol the server does not speak.
    let (s, v) = h
        .call_agent("/checkin", Some(&old_agent_key), json!({"protocol": 99}))
        .await;
    assert_eq!((s, v["code"].as_str()), (426, Some("protocol_mismatch")));
    assert_eq!(v["supported_protocols"], json!([1]));
    // GET calls carry the version in a header; every answer names the server's.
    let r = h
        .agent
        .get(format!("{}/agent/v1/runbooks/x", h.agent_url))
        .bearer_auth(&old_agent_key)
        .header("Ferry-Agent-Protocol", "7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);
    assert_eq!(r.headers()["ferry-agent-protocol"], "1");
    // An agent on the admin API; the admin token on the agent endpoint.
    let r = h
        .admin
        .get(format!("{}/api/v1/agents", h.url))
        .bearer_auth(&old_agent_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _) = h
        .call_agent("/checkin", Some(&h.token), json!({"protocol": 1}))
        .await;
    assert_eq!(s, 401);
    let r = h.agent.post(format!("{}/agent/v1/enroll", h.agent_url)).bearer_auth(&h.token)
        .json(&json!({"protocol": 1, "psk": old, "device": {"device_id": "y", "hostname": "y", "os": "linux", "agent_version": "1"}}))
        .send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The admin API is not served on the agent endpoint, nor the agent API on the admin port.
    let r = h
        .agent
        .get(format!("{}/api/v1/agents", h.agent_url))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .admin
        .post(format!("{}/agent/v1/checkin", h.url))
        .bearer_auth(&old_agent_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Plain HTTP to the agent endpoint does not work.
    let plain = h.agent_url.replace("https://", "http://");
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/agent"))
            .send()
            .await
            .is_err()
    );

    // Every refusal is in the failed communications report, without any secret.
    let (_, f) = h.api(M::GET, "/reports/failed-communications", None).await;
    let codes: Vec<&str> = f["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    for c in [
        "bad_psk",
        "retired_psk",
        "unauthorized",
        "protocol_mismatch",
    ] {
        assert!(codes.contains(&c), "{c} missing from {codes:?}");
    }
    // The node key on the admin API: recorded as what it was answered (401), with its address
    // (catches a report saying `forbidden` with no address for a call answered 401).
    let admin = f["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| {
            x["reason"]
                .as_str()
                .unwrap()
                .contains("called the admin API")
        })
        .unwrap_or_else(|| panic!("no admin API refusal in {f}"));
    assert_eq!(admin["code"], "unauthorized", "{admin}");
    assert_eq!(admin["address"], "127.0.0.1", "{admin}");
    let text = f.to_string();
    for secret in [&old, &old_agent_key, &h.token] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret leaked into the report"
        );
    }
    assert!(f["failures"][0]["address"].as_str().is_some());

    // Enrollment is rate limited per address.
    let mut limited = false;
    for i in 0..40 {
        let (s, _) = h.enroll("psk_wrong", &format!("PC-R{i}"), json!([])).await;
        if s == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "40 enrollments from one address were not limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_joins_get_the_token_or_are_held_back() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
    let (_, e) = h
        .enroll(k["key"].as_str().unwrap(), "PC-E", json!([]))
        .await;
    let key = e["node_key"].as_str().unwrap().to_string();
    let (s, v) = h
        .api(M::PUT, "/runbooks/Join", Some(runbook("Join", &[], true)))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h.api(M::PUT, "/batches/Cutover", Some(json!({"name": "Cutover", "source_directory": "contoso", "target_directory": "fabrikam-entra",
        "runbooks": ["Join"], "enforced_after": local(-1)}))).await;
    assert_eq!(s, 200, "{v}");
    h.api(
        M::POST,
        "/batches/Cutover/computers",
        Some(json!({"add": ["PC-E"]})),
    )
    .await;
    // The tenant pre-flight (of the simulated, permissive tenant) has run: it holds nothing back.
    let (s, p) = h.api(M::GET, "/batches/Cutover/preflight", None).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["ok"], false, "no token yet: {p}");
    // No token stored: held back, and the what-if says why.
    let (_, c) = h
        .call_agent("/checkin", Some(&key), json!({"protocol": 1}))
        .await;
    assert!(c["migration"].is_null());
    assert!(
        c["blocked"]
            .as_str()
            .unwrap()
            .contains("no bulk enrolment token"),
        "{c}"
    );
    let (_, w) = h.api(M::GET, "/batches/Cutover/whatif", None).await;
    assert!(
        w["devices"][0]["warnings"]
            .to_string()
            .contains("cannot join Entra ID"),
        "{w}"
    );
    // A valid token: handed to this device with its migration.
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD.encode(b"ppkg");
    let day = |d: i64| {
        (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * d))
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string()
    };
    let (s, v) = h
        .api(
            M::POST,
            "/directories/fabrikam-entra/enrolment-tokens",
            Some(
                json!({"kind": "ppkg", "package_upn": "package_1@fabrikam.onmicrosoft.com",
        "created": day(-10), "expires": day(100), "content_base64": content}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, c) = h
        .call_agent("/checkin", Some(&key), json!({"protocol": 1}))
        .await;
    assert_eq!(
        c["migration"]["enrolment_token"]["content_base64"], content,
        "{c}"
    );
    // Revoked: held back again.
    h.api(
        M::POST,
        &format!("/enrolment-tokens/{}/revoke", v["id"]),
        None,
    )
    .await;
    let (_, c) = h
        .call_agent("/checkin", Some(&key), json!({"protocol": 1}))
        .await;
    assert!(c["migration"].is_null() && c["blocked"].is_string(), "{c}");
}

/// Enrolls `host` with this device id (and, to prove it, the key it was given before).
async fn enroll_as(
    h: &H,
    psk: &str,
    host: &str,
    device_id: &str,
    previous: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"protocol": 1, "psk": psk, "profiles": [],
        "device": {"device_id": device_id, "hostname": host, "os": "linux", "agent_version": "0.1.0"}});
    if let Some(p) = previous {
        body["previous_node_key"] = json!(p);
    }
    h.call_agent("/enroll", None, body).await
}

async fn checkin(h: &H, key: &str) -> (u16, Value) {
    h.call_agent("/checkin", Some(key), json!({"protocol": 1}))
        .await
}

/// A batch due now with `hosts` in it (runbook `Main`, which repermissions).
/// A device of the source directory that never enrolled, its name in capitals (after a cycle,
/// so that the server knows the directory's devices).
async fn never_enrolled(h: &H) -> String {
    let (s, _) = h
        .api(reqwest::Method::POST, "/profiles/users/run?wait=true", None)
        .await;
    assert_eq!(s, 202);
    let contoso: Value =
        serde_json::from_slice(&std::fs::read(h.dir.join("contoso.json")).unwrap()).unwrap();
    contoso["devices"][0]["name"]
        .as_str()
        .unwrap()
        .to_uppercase()
}

async fn due_batch(h: &H, hosts: &[&str]) {
    use reqwest::Method as M;
    let (s, v) = h
        .api(M::PUT, "/runbooks/Main", Some(runbook("Main", &[], false)))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h
        .api(
            M::PUT,
            "/batches/Now",
            Some(
                json!({"name": "Now", "source_directory": "contoso", "target_directory": "fabrikam",
        "runbooks": ["Main"], "enforced_after": local(-1), "time_zone": "UTC"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Now/computers",
            Some(json!({"add": hosts})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

// Catches: anyone holding the shared key enrolling as PC-VICTIM and receiving its orders, or
// re-enrolling with its device id and revoking the real agent's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holder_cannot_take_another_devices_identity() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    let (_, k) = h
        .api(M::POST, "/psks", Some(json!({"name": "shared"})))
        .await;
    let psk = k["key"].as_str().unwrap().to_string();
    let (s, real) = enroll_as(&h, &psk, "PC-VICTIM", "machine-victim", None).await;
    assert_eq!(s, 200, "{real}");
    let real_key = real["node_key"].as_str().unwrap().to_string();
    due_batch(&h, &["PC-VICTIM"]).await;
    let (s, c) = checkin(&h, &real_key).await;
    assert_eq!(s, 200, "{c}");
    assert!(c["migration"].is_object(), "{c}");

    // The attacker claims the host name, then the device id, then the device id with a made-up
    // old key: each is held, gets a key that opens nothing, and the real agent keeps working.
    let mut held = Vec::new();
    for (device_id, previous, claim) in [
        ("attacker-box", None, "host name"),
        ("machine-victim", None, "device id"),
        ("machine-victim", Some("not-the-key"), "device id"),
    ] {
        let (s, e) = enroll_as(&h, &psk, "pc-victim", device_id, previous).await;
        assert_eq!(s, 202, "{e}");
        assert_eq!(e["agent_id"], 0);
        let reason = e["held"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("claims the {claim} of agent {}", real["agent_id"])),
            "{reason}"
        );
        let key = e["node_key"].as_str().unwrap().to_string();
        let (s, c) = checkin(&h, &key).await;
        assert_eq!(
            (s, c["code"].as_str()),
            (403, Some("pending_approval")),
            "{c}"
        );
        let (s, _) = h.get_agent("/runbooks/Main", &key).await;
        assert_eq!(s, 403, "a held key reads no runbook");
        let (s, _) = h.get_agent("/translation?profile=ann", &key).await;
        assert_eq!(s, 403, "a held key reads no translation entry");
        let (s, _) = h
            .call_agent(
                "/events",
                Some(&key),
                json!({"protocol": 1, "run": c["migration"]["run"], "events": []}),
            )
            .await;
        assert_eq!(s, 403);
        let (s, c) = checkin(&h, &real_key).await;
        assert_eq!(s, 200, "the real agent keeps working: {c}");
        held.push((e["held"]["request_id"].as_i64().unwrap(), key));
    }
    let (_, pending) = h.api(M::GET, "/enrollment-requests", None).await;
    assert_eq!(pending.as_array().unwrap().len(), 3, "{pending}");
    assert_eq!(pending[0]["hostname"], "pc-victim");
    assert_eq!(pending[0]["address"], "127.0.0.1");

    // The real device proves its key and re-enrolls on its own; the old key stops.
    let (s, again) = enroll_as(&h, &psk, "PC-VICTIM", "machine-victim", Some(&real_key)).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["agent_id"], real["agent_id"]);
    let new_key = again["node_key"].as_str().unwrap().to_string();
    assert_eq!(checkin(&h, &real_key).await.0, 401);
    assert_eq!(checkin(&h, &new_key).await.0, 200);

    // Refused: its key never works. Approved: the claimed agent is replaced.
    let (s, d) = h
        .api(
            M::POST,
            &format!("/enrollment-requests/{}/refuse", held[0].0),
            None,
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["request"]["state"], "refused");
    let (s, c) = checkin(&h, &held[0].1).await;
    assert_eq!((s, c["code"].as_str()), (403, Some("enrollment_refused")));
    let (s, _) = h
        .api(
            M::POST,
            &format!("/enrollment-requests/{}/refuse", held[0].0),
            None,
        )
        .await;
    assert_eq!(s, 404, "a decided request is not decided again");
    let (s, d) = h
        .api(
            M::POST,
            &format!("/enrollment-requests/{}/approve", held[1].0),
            None,
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["agent"]["id"], real["agent_id"]);
    assert_eq!(checkin(&h, &held[1].1).await.0, 200);
    assert_eq!(
        checkin(&h, &new_key).await.0,
        401,
        "approving gave the device id's agent the new key"
    );
    let (_, audit) = h.api(M::GET, "/audit?limit=20", None).await;
    let audit = audit.to_string();
    assert!(
        audit.contains("agent.enrollment.refuse") && audit.contains("agent.enrollment.approve"),
        "{audit}"
    );
    // The held key's calls are in the failed communications report, counted on one row.
    let (_, f) = h.api(M::GET, "/reports/failed-communications", None).await;
    let rows: Vec<&Value> = f["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["code"] == "pending_approval")
        .collect();
    assert!(!rows.is_empty(), "{f}");
    assert!(rows.iter().all(|r| r["address"] == "127.0.0.1"), "{f}");
    assert!(
        rows.iter().any(|r| r["count"].as_i64().unwrap() >= 1),
        "{f}"
    );
}

// Catches: a single-use key enrolling two devices when both race for it, and a key bound to one
// device enrolling another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_use_and_device_bound_keys() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    let (s, k) = h
        .api(M::POST, "/psks", Some(json!({"name": "once", "uses": 1})))
        .await;
    assert_eq!(s, 201, "{k}");
    assert_eq!(k["uses_left"], 1);
    let psk = k["key"].as_str().unwrap().to_string();
    let (a, b) = tokio::join!(
        enroll_as(&h, &psk, "PC-A", "machine-a", None),
        enroll_as(&h, &psk, "PC-B", "machine-b", None)
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [200, 401], "{a:?} {b:?}");
    let loser = if a.0 == 401 { a.1 } else { b.1 };
    assert_eq!(loser["code"], "used_psk", "{loser}");
    let (s, k) = h
        .api(
            M::POST,
            "/psks",
            Some(json!({"name": "for-c", "uses": 1, "device": "PC-C"})),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let psk = k["key"].as_str().unwrap().to_string();
    let (s, e) = enroll_as(&h, &psk, "PC-D", "machine-d", None).await;
    assert_eq!((s, e["code"].as_str()), (403, Some("forbidden")), "{e}");
    let (s, e) = enroll_as(&h, &psk, "pc-c", "machine-c", None).await;
    assert_eq!(s, 200, "{e}");
    let (s, e) = enroll_as(&h, &psk, "pc-c", "machine-c", None).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("used_psk")), "{e}");
    for bad in [
        json!({"name": "x", "uses": 0}),
        json!({"name": "../x"}),
        json!({"name": "a\r\nb"}),
        json!({"name": "y", "device": ""}),
    ] {
        let (s, v) = h.api(M::POST, "/psks", Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
}

// Catches: a high-assurance project's new devices enrolling without an operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_enrollments_wait_for_approval_when_the_project_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with(
        dir.path(),
        "[server.agents]\napprove_new_enrollments = true\n",
    )
    .await;
    use reqwest::Method as M;
    let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
    let psk = k["key"].as_str().unwrap().to_string();
    let (s, e) = enroll_as(&h, &psk, "PC-NEW", "machine-new", None).await;
    assert_eq!(s, 202, "{e}");
    assert!(
        e["held"]["reason"]
            .as_str()
            .unwrap()
            .contains("approve_new_enrollments")
    );
    let key = e["node_key"].as_str().unwrap().to_string();
    assert_eq!(checkin(&h, &key).await.0, 403);
    let id = e["held"]["request_id"].as_i64().unwrap();
    let (s, d) = h
        .api(M::POST, &format!("/enrollment-requests/{id}/approve"), None)
        .await;
    assert_eq!(s, 200, "{d}");
    let (s, c) = checkin(&h, &key).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["agent_id"], d["agent"]["id"]);
    // A key bound to one host name is the operator's approval of that device.
    let (_, k) = h
        .api(
            M::POST,
            "/psks",
            Some(json!({"name": "pc-x", "uses": 1, "device": "PC-X"})),
        )
        .await;
    let (s, e) = enroll_as(&h, k["key"].as_str().unwrap(), "PC-X", "machine-x", None).await;
    assert_eq!(s, 200, "{e}");
}

// Catches: a device posting a fake "succeeded" for its run, or events and logs for a run the
// server never handed it, and one run's log filling the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_logs_are_taken_for_the_assigned_run_in_step_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with(dir.path(), "[server.agents]\nlog_bytes_per_run = 64\n").await;
    use reqwest::Method as M;
    let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
    let psk = k["key"].as_str().unwrap().to_string();
    let (_, e) = enroll_as(&h, &psk, "PC-RUN", "machine-run", None).await;
    let key = e["node_key"].as_str().unwrap().to_string();
    let agent_id = e["agent_id"].as_i64().unwrap();
    let ev = |step: &str, status: &str, at: i64| json!({"at": at, "step": step, "status": status});
    let post = |run: Value, events: Vec<Value>| {
        let key = key.clone();
        let h = &h;
        async move {
            h.call_agent(
                "/events",
                Some(&key),
                json!({"protocol": 1, "run": run, "events": events}),
            )
            .await
        }
    };
    // Before any run is handed: nothing is taken.
    let (s, v) = post(json!("Now-1-1"), vec![ev("done", "succeeded", 1)]).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("not_assigned")), "{v}");
    due_batch(&h, &["PC-RUN"]).await;
    let (_, c) = checkin(&h, &key).await;
    let order: ferry_core::agent::MigrationOrder =
        serde_json::from_value(c["migration"].clone()).unwrap();
    let steps: Vec<String> = ferry_core::runbook::plan_steps(&order.runbooks)
        .into_iter()
        .map(|p| p.id)
        .collect();
    let run = json!(order.run);
    let (s, v) = post(json!("Other-1-1"), vec![ev(&steps[0], "started", 1)]).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("not_assigned")), "{v}");
    // A fake success straight away, a step out of order, a step the run does not have.
    let (s, v) = post(run.clone(), vec![ev("done", "succeeded", 1)]).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("out_of_order")), "{v}");
    let (s, v) = post(run.clone(), vec![ev(&steps[1], "started", 1)]).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("out_of_order")), "{v}");
    let (s, v) = post(run.clone(), vec![ev("Main/format-disk", "started", 1)]).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    // The real run: every step in order, one failing; then "done succeeded" is refused.
    let mut events = Vec::new();
    for (i, st) in steps[..steps.len() - 1].iter().enumerate() {
        events.push(ev(st, "started", 10 + 2 * i as i64));
        events.push(ev(
            st,
            if i == 1 { "failed" } else { "succeeded" },
            11 + 2 * i as i64,
        ));
    }
    let (s, v) = post(run.clone(), events.clone()).await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = post(run.clone(), events.clone()).await;
    assert_eq!(s, 204, "a resend is taken and dropped: {v}");
    let (_, detail) = h.api(M::GET, &format!("/agents/{agent_id}"), None).await;
    assert_eq!(
        detail["events"].as_array().unwrap().len(),
        events.len(),
        "stored once"
    );
    let (s, v) = post(run.clone(), vec![ev("done", "succeeded", 99)]).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("out_of_order")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("failed"), "{v}");
    // Logs: the assigned run only, and no more than the cap.
    let log = |run: &Value, offset: u64, text: &str| json!({"protocol": 1, "run": run, "offset": offset, "text": text});
    let (s, _) = h
        .call_agent("/logs", Some(&key), log(&json!("Other-1-1"), 0, "x\n"))
        .await;
    assert_eq!(s, 403);
    let line = "a".repeat(40) + "\n";
    let (s, _) = h.call_agent("/logs", Some(&key), log(&run, 0, &line)).await;
    assert_eq!(s, 204);
    let (s, v) = h
        .call_agent("/logs", Some(&key), log(&run, 41, &line))
        .await;
    assert_eq!((s, v["code"].as_str()), (413, Some("too_large")), "{v}");
    let (_, text) = h
        .api(
            M::GET,
            &format!("/agents/{agent_id}/runs/{}/log", order.run),
            None,
        )
        .await;
    assert_eq!(text, json!(line));
}

// Catches: a device naming itself after one of the source directory's computers while
// claiming another directory object, and migrating anyway; a device whose host name is none of
// the directory's computers going unflagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_contradict_the_source_directory_hold_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    let (s, _) = h.api(M::POST, "/profiles/users/run?wait=true", None).await;
    assert_eq!(s, 202);
    let contoso: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("contoso.json")).unwrap()).unwrap();
    let computer = &contoso["devices"][0];
    let (name, id) = (
        computer["name"].as_str().unwrap(),
        computer["id"].as_str().unwrap(),
    );
    let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
    let psk = k["key"].as_str().unwrap();
    let facts = |object: &str, device_id: &str| {
        json!({"protocol": 1, "psk": psk, "device": {"device_id": device_id, "hostname": name,
            "os": "windows", "agent_version": "0.1.0", "directory_object_id": object}})
    };
    let (s, e) = h
        .call_agent("/enroll", None, facts("not-its-object", "machine-liar"))
        .await;
    assert_eq!(s, 200, "{e}");
    let liar = e["node_key"].as_str().unwrap().to_string();
    // A workgroup machine: a host name the directory's computers do not have.
    let (s, w) = h.enroll(psk, "PC-WORKGROUP-01", json!([])).await;
    assert_eq!(s, 200, "{w}");
    let workgroup = w["node_key"].as_str().unwrap().to_string();
    due_batch(&h, &[name, "PC-WORKGROUP-01"]).await;
    let (_, c) = checkin(&h, &liar).await;
    assert!(c["migration"].is_null(), "{c}");
    assert!(
        c["blocked"].as_str().unwrap().contains(id),
        "the reason names the directory's object: {c}"
    );
    let (_, list) = h.api(M::GET, "/agents", None).await;
    assert!(
        list[0]["mismatch"]
            .as_str()
            .unwrap()
            .contains("not-its-object"),
        "{list}"
    );
    // Flagged, not held: the directory may simply not have seen it.
    let (_, c) = checkin(&h, &workgroup).await;
    assert!(c["migration"].is_object(), "{c}");
    assert!(
        list[1]["mismatch"]
            .as_str()
            .unwrap()
            .contains("`contoso` has no computer of that name"),
        "{list}"
    );
    // The operator refuses nothing here; the device that names the right object migrates.
    let (_, e) = h
        .call_agent(
            "/enroll",
            None,
            json!({"protocol": 1, "psk": psk, "previous_node_key": liar, "device": {"device_id": "machine-liar", "hostname": name,
                "os": "windows", "agent_version": "0.1.0", "directory_object_id": id}}),
        )
        .await;
    let key = e["node_key"].as_str().unwrap().to_string();
    let (_, c) = checkin(&h, &key).await;
    assert!(c["migration"].is_object(), "{c}");
    let (_, list) = h.api(M::GET, "/agents", None).await;
    assert!(list[0]["mismatch"].is_null(), "{list}");
}

// Catches: a body that is not JSON answered with plain text instead of the documented error
// body, and messages that do not say where the JSON went wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_gets_the_error_body_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    for (body, status) in [
        ("{\"name\": ", 400),
        ("{\n  \"name\": 5\n}", 422),
        ("{\"name\" \"x\"}", 400),
    ] {
        let r = h
            .admin
            .post(format!("{}/api/v1/psks", h.url))
            .bearer_auth(&h.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], status, "{v}");
        assert!(
            v["error"].as_str().unwrap().contains("line "),
            "{body}: {v}"
        );
    }
    let r = h
        .admin
        .post(format!("{}/api/v1/psks", h.url))
        .bearer_auth(&h.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 415, "{v}");
    // The agent endpoint: its own error body, with the place.
    let r = h
        .agent
        .post(format!("{}/agent/v1/enroll", h.agent_url))
        .header("content-type", "application/json")
        .body("{\"protocol\": 1,\n \"psk\": }")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "bad_request");
    assert!(
        v["error"].as_str().unwrap().contains("line 2 column"),
        "{v}"
    );
}

/// Would catch two servers on one PostgreSQL both taking first enrollments of one new device
/// (each decided that no agent had its device id, and the later one silently replaced the
/// earlier one's node key). Each pair of simultaneous enrollments of a new device, one per
/// server, must end with exactly one enrolled and the other held for an operator, and the
/// enrolled one's key must still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_racing_a_new_devices_first_enrollment_take_one() {
    let Some(pg) = support::PgSchema::new("enroll_race") else {
        return;
    };
    let url = pg.url.clone();
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let admin = "ferry_shared_admin_token_for_the_race";
    let a = start_on(ta.path(), "", Some(url.clone()), Some(admin)).await;
    let b = start_on(tb.path(), "", Some(url.clone()), Some(admin)).await;
    let (s, k) = a
        .api(
            reqwest::Method::POST,
            "/psks",
            Some(json!({"name": "race"})),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let psk = k["key"].as_str().unwrap().to_string();
    // Ten new devices, each enrolled on both servers at the same moment (the per-address
    // enrollment limit allows this many).
    for i in 0..10 {
        let host = format!("pc-race-{i:02}.contoso.example");
        let (ra, rb) = tokio::join!(
            a.enroll(&psk, &host, json!([])),
            b.enroll(&psk, &host, json!([]))
        );
        let mut codes = [ra.0, rb.0];
        codes.sort();
        assert_eq!(codes, [200, 202], "device {host}: {ra:?} / {rb:?}");
        let (taken, held) = if ra.0 == 200 { (&ra, &rb) } else { (&rb, &ra) };
        assert!(held.1["held"]["reason"].is_string(), "{held:?}");
        let key = taken.1["node_key"].as_str().unwrap();
        let (s, _) = a
            .call_agent("/checkin", Some(key), json!({"protocol": 1}))
            .await;
        assert_eq!(s, 200, "the enrolled device's key still works ({host})");
        let held_key = held.1["node_key"].as_str().unwrap();
        let (s, _) = b
            .call_agent("/checkin", Some(held_key), json!({"protocol": 1}))
            .await;
        assert_eq!(
            s, 403,
            "the held enrollment's key waits for approval ({host})"
        );
    }
    // Five pairs of two new devices (two device ids) with one host name, one on each server at
    // the same moment: one enrolls, the other is held naming it (issue 15: "two new devices
    // with one host name on two servers both enroll"; fails without agents_hostname_claim).
    for i in 0..5 {
        let host = format!("PC-TWIN-{i:02}.contoso.example");
        let lower = host.to_lowercase();
        let (ida, idb) = (format!("twin-a-{i}"), format!("twin-b-{i}"));
        let (ra, rb) = tokio::join!(
            a.enroll_as(&psk, &ida, &host, json!([])),
            b.enroll_as(&psk, &idb, &lower, json!([]))
        );
        let mut codes = [ra.0, rb.0];
        codes.sort();
        assert_eq!(codes, [200, 202], "host {host}: {ra:?} / {rb:?}");
        let held = if ra.0 == 202 { &ra } else { &rb };
        assert!(
            held.1["held"]["reason"]
                .as_str()
                .is_some_and(|r| r.to_lowercase().contains(&host.to_lowercase())),
            "the held one says which host name: {held:?}"
        );
    }
    // A key replaced on one server stops working on the other within its credential cache
    // (devices::AUTH_CACHE, 2 s; was 30 s).
    let host = "pc-rekey.contoso.example";
    let (s, first) = a.enroll(&psk, host, json!([])).await;
    assert_eq!(s, 200, "{first}");
    let old = first["node_key"].as_str().unwrap().to_string();
    let (s, _) = b
        .call_agent("/checkin", Some(&old), json!({"protocol": 1}))
        .await;
    assert_eq!(s, 200, "cached on b now");
    let (s, again) = a
        .call_agent(
            "/enroll",
            None,
            json!({"protocol": 1, "psk": psk, "profiles": [], "previous_node_key": old,
                   "device": {"device_id": format!("id-{host}"), "hostname": host, "os": "linux", "os_version": "Debian 12", "agent_version": "0.1.0"}}),
        )
        .await;
    assert_eq!(s, 200, "{again}");
    let (s, _) = a
        .call_agent("/checkin", Some(&old), json!({"protocol": 1}))
        .await;
    assert_ne!(
        s, 200,
        "the server that replaced the key refuses the old one at once"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, _) = b
        .call_agent("/checkin", Some(&old), json!({"protocol": 1}))
        .await;
    assert_ne!(s, 200, "the other server refuses it after its cache");
    let (s, _) = b
        .call_agent(
            "/checkin",
            again["node_key"].as_str(),
            json!({"protocol": 1}),
        )
        .await;
    assert_eq!(s, 200);
    drop((a, b));
}

/// Checks in with the state the device reports; the check-in's answer.
async fn checkin_as(h: &H, key: &str, state: &str) -> Value {
    let (s, c) = h
        .call_agent(
            "/checkin",
            Some(key),
            json!({"protocol": 1, "state": state}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    c
}

/// Enrolls `hosts` with a new key and puts the runbook `Main`: their node keys by host.
async fn wave_devices<'a>(h: &H, hosts: &[&'a str]) -> HashMap<&'a str, String> {
    let (_, k) = h
        .api(reqwest::Method::POST, "/psks", Some(json!({"name": "k"})))
        .await;
    let psk = k["key"].as_str().unwrap().to_string();
    let mut keys = HashMap::new();
    for host in hosts {
        let (s, e) = h.enroll(&psk, host, json!([])).await;
        assert_eq!(s, 200, "{e}");
        keys.insert(*host, e["node_key"].as_str().unwrap().to_string());
    }
    let (s, v) = h
        .api(
            reqwest::Method::PUT,
            "/runbooks/Main",
            Some(runbook("Main", &[], false)),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    keys
}

/// A device's post-flight evidence of `run` (the agent's three checks), passing or not.
fn verification(run: &str, ok: bool) -> Value {
    json!({"run": run, "after": "run", "at": 1,
        "checks": [{"check": "principals", "ok": ok, "blocking": true, "detail": "checked"},
                   {"check": "homes", "ok": true, "blocking": true, "detail": "checked"},
                   {"check": "check-commands", "ok": true, "blocking": true, "detail": "none"}]})
}

/// Reports every step of the check-in answer `c`'s migration started and succeeded, as an agent
/// running it would; its run id.
async fn run_through(h: &H, key: &str, c: &Value) -> String {
    let order: ferry_core::agent::MigrationOrder =
        serde_json::from_value(c["migration"].clone()).unwrap();
    let mut events = Vec::new();
    for (i, p) in ferry_core::runbook::plan_steps(&order.runbooks)
        .iter()
        .enumerate()
    {
        for (j, status) in ["started", "succeeded"].iter().enumerate() {
            events.push(json!({"at": 10 + 2 * i + j, "step": p.id, "status": status}));
        }
    }
    let (s, v) = h
        .call_agent(
            "/events",
            Some(key),
            json!({"protocol": 1, "run": order.run, "events": events}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    order.run
}

/// Long enough for the write-behind of contacts and every server's wave cache.
async fn settle() {
    tokio::time::sleep(devices::wave::WAVE_CACHE + std::time::Duration::from_millis(400)).await;
}

// Catches: a batch whose canary failed, or whose first device failed, starting the rest anyway;
// a halt written only when another device next checks in (or a page is read); more devices
// migrating at once than max_concurrent; a halt cleared by anything but an operator's audited
// resume; a halted batch cutting off a device already running; a device lying about its state
// ("running") to get its order past the gate, or `verified` without evidence to open the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_starts_its_canary_first_and_halts_itself_on_a_failure() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let hosts = ["PC-A", "PC-B", "PC-C", "PC-D", "PC-E"];
    let keys = wave_devices(&h, &hosts).await;
    // One time for every put: a batch put again with another enforced time is rescheduled (a
    // new run), which a minute passing between two puts would do.
    let enforced = local(-1);
    let batch = |extra: Value| {
        let mut b = json!({"name": "Wave", "source_directory": "contoso", "target_directory": "fabrikam",
            "runbooks": ["Main"], "enforced_after": enforced, "time_zone": "UTC"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    for (bad, field) in [
        (json!({"canary": "0%"}), "canary"),
        (json!({"canary": "ten"}), "canary"),
        (json!({"max_failure_rate": 1.5}), "max_failure_rate"),
        (json!({"max_concurrent": 0}), "max_concurrent"),
    ] {
        let (s, v) = h.api(M::PUT, "/batches/Wave", Some(batch(bad))).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["error"].as_str().unwrap().starts_with(field), "{v}");
    }
    let (s, v) = h
        .api(
            M::PUT,
            "/batches/Wave",
            Some(batch(json!({"canary": "20%", "max_concurrent": 2}))),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Wave/computers",
            Some(json!({"add": hosts})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // The canary (20% of five: the first by name) goes alone; a device lying that it runs
    // does not pass.
    let c = checkin_as(&h, &keys["PC-B"], "running").await;
    assert!(c["migration"].is_null(), "{c}");
    assert!(
        c["blocked"]
            .as_str()
            .unwrap()
            .contains("waiting for the canary: 0 of 1"),
        "{c}"
    );
    let c = checkin_as(&h, &keys["PC-A"], "idle").await;
    assert!(c["migration"].is_object(), "the canary starts: {c}");
    let run = c["migration"]["run"].as_str().unwrap().to_string();
    let handed = c;
    let (_, p) = h.api(M::GET, "/batches/Wave/progress", None).await;
    // Shown as added; matched in lower case.
    assert_eq!(p["wave"]["canary"], json!(["PC-A"]), "{p}");
    // Saying `verified` with no evidence, or with evidence of a run that has not ended (no
    // `done succeeded` stored), proves nothing.
    checkin_as(&h, &keys["PC-A"], "verified").await;
    settle().await;
    let b = checkin_as(&h, &keys["PC-B"], "idle").await;
    assert!(b["blocked"].as_str().unwrap().contains("0 of 1"), "{b}");
    let (s, c) = h
        .call_agent(
            "/checkin",
            Some(&keys["PC-A"]),
            json!({"protocol": 1, "state": "verified", "verification": verification(&run, true)}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    settle().await;
    let b = checkin_as(&h, &keys["PC-B"], "idle").await;
    assert!(b["blocked"].as_str().unwrap().contains("0 of 1"), "{b}");
    // Finished but not proved yet: the rest still wait. Failing or incomplete evidence, or
    // evidence of another run, proves nothing either.
    run_through(&h, &keys["PC-A"], &handed).await;
    checkin_as(&h, &keys["PC-A"], "succeeded").await;
    let mut partial = verification(&run, true);
    partial["checks"].as_array_mut().unwrap().truncate(1);
    for (v, why) in [
        (verification(&run, false), "a failed check"),
        (partial, "checks missing"),
        (verification("another-run", true), "another run"),
    ] {
        let (s, c) = h
            .call_agent(
                "/checkin",
                Some(&keys["PC-A"]),
                json!({"protocol": 1, "state": "verified", "verification": v}),
            )
            .await;
        assert_eq!(s, 200, "{c}");
        settle().await;
        let b = checkin_as(&h, &keys["PC-B"], "idle").await;
        assert!(
            b["blocked"].as_str().unwrap().contains("0 of 1"),
            "{why}: {b}"
        );
    }
    // Proved (post-flight of its run): they go.
    let (s, c) = h
        .call_agent(
            "/checkin",
            Some(&keys["PC-A"]),
            json!({"protocol": 1, "state": "verified", "verification": verification(&run, true)}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    settle().await;

    // The rest, two at a time.
    let b = checkin_as(&h, &keys["PC-B"], "idle").await;
    let c = checkin_as(&h, &keys["PC-C"], "idle").await;
    assert!(
        b["migration"].is_object() && c["migration"].is_object(),
        "{b} {c}"
    );
    let d = checkin_as(&h, &keys["PC-D"], "idle").await;
    assert!(d["migration"].is_null(), "{d}");
    assert!(
        d["blocked"]
            .as_str()
            .unwrap()
            .contains("max_concurrent is 2"),
        "{d}"
    );

    // PC-C begins its run (its first step's event is stored).
    let order: ferry_core::agent::MigrationOrder =
        serde_json::from_value(c["migration"].clone()).unwrap();
    let first = &ferry_core::runbook::plan_steps(&order.runbooks)[0].id;
    let (s, v) = h
        .call_agent(
            "/events",
            Some(&keys["PC-C"]),
            json!({"protocol": 1, "run": order.run, "events": [{"at": 1, "step": first, "status": "started"}]}),
        )
        .await;
    assert_eq!(s, 204, "{v}");

    // PC-B fails: the batch halts itself (default max_failure_rate 0) at once, before any other
    // device checks in; PC-C, running, goes on.
    checkin_as(&h, &keys["PC-B"], "failed").await;
    let (_, audit) = h.api(M::GET, "/audit?limit=50", None).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "batch.halt" && a["subject"] == "Wave"),
        "the failure's own report halts the batch: {audit}"
    );
    checkin_as(&h, &keys["PC-C"], "running").await;
    settle().await;
    let d = checkin_as(&h, &keys["PC-D"], "idle").await;
    assert!(d["migration"].is_null(), "{d}");
    assert!(d["blocked"].as_str().unwrap().contains("halted"), "{d}");
    let c = checkin_as(&h, &keys["PC-C"], "running").await;
    assert!(c["migration"].is_object(), "a running device finishes: {c}");
    let (_, p) = h.api(M::GET, "/batches/Wave/progress", None).await;
    let reason = p["wave"]["halted"]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("1 device(s) failed of 2 finished"), "{p}");
    // Putting the batch again does not clear the halt.
    let (s, _) = h
        .api(
            M::PUT,
            "/batches/Wave",
            Some(batch(json!({"canary": "20%", "max_concurrent": 2}))),
        )
        .await;
    assert_eq!(s, 200);
    settle().await;
    let e = checkin_as(&h, &keys["PC-E"], "idle").await;
    assert!(e["blocked"].as_str().unwrap().contains("halted"), "{e}");

    // Only an operator resumes it, once, audited; the failure so far is accepted.
    let (s, v) = h.api(M::POST, "/batches/Wave/resume", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted_failures"], 1, "{v}");
    let (s, v) = h.api(M::POST, "/batches/Wave/resume", None).await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = h.api(M::POST, "/batches/Nope/resume", None).await;
    assert_eq!(s, 404);
    checkin_as(&h, &keys["PC-C"], "succeeded").await;
    settle().await;
    let d = checkin_as(&h, &keys["PC-D"], "idle").await;
    assert!(d["migration"].is_object(), "resumed: {d}");
    let (_, audit) = h.api(M::GET, "/audit?limit=50", None).await;
    let acts: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["subject"] == "Wave")
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let acts: Vec<(&str, &str)> = acts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        acts,
        [
            ("batch.resume", "admin"),
            ("batch.change", "admin"),
            ("batch.halt", "ferry"),
            ("batch.computers", "admin"),
            ("batch.add", "admin")
        ],
        "{audit}"
    );
}

/// Would catch: a server that never learns of a batch, a runbook or a membership another server
/// sharing its PostgreSQL wrote (it hands no order, or an old one, until it restarts); two
/// servers each taking one of two failures reported at the same moment writing two halts, or
/// none; a halt on one server not stopping devices that check in on the other; a resume
/// decided twice; a computer taken out of the batch on one server still migrated by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_a_batch_its_halt_and_its_resume() {
    use reqwest::Method as M;
    let Some(pg) = support::PgSchema::new("wave_two") else {
        return;
    };
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let admin = "ferry_shared_admin_token_for_the_wave";
    let a = start_on(ta.path(), "", Some(pg.url.clone()), Some(admin)).await;
    let b = start_on(tb.path(), "", Some(pg.url.clone()), Some(admin)).await;
    let hosts = ["PC-A", "PC-B", "PC-C", "PC-D", "PC-E", "PC-F"];
    // Everything is written through a; b has not been told.
    let keys = wave_devices(&a, &hosts).await;
    let (s, v) = a
        .api(
            M::PUT,
            "/batches/Wave",
            Some(json!({"name": "Wave", "source_directory": "contoso", "target_directory": "fabrikam",
                "runbooks": ["Main"], "enforced_after": local(-1), "time_zone": "UTC"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = a
        .api(
            M::POST,
            "/batches/Wave/computers",
            Some(json!({"add": hosts})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let deadline = std::time::Instant::now() + 3 * devices::CONFIG_POLL;
    let on_b = loop {
        let c = checkin_as(&b, &keys["PC-A"], "idle").await;
        if c["migration"].is_object() {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server b never learned of the batch written through a: {c}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(on_b["assignment"]["batch"], "Wave", "{on_b}");
    let c = checkin_as(&a, &keys["PC-B"], "idle").await;
    assert!(c["migration"].is_object(), "{c}");

    // Both fail at the same moment, one reported to each server: one halt, one audit line.
    tokio::join!(
        checkin_as(&b, &keys["PC-A"], "failed"),
        checkin_as(&a, &keys["PC-B"], "failed")
    );
    let (_, audit) = a.api(M::GET, "/audit?limit=100", None).await;
    let halts = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "batch.halt" && e["subject"] == "Wave")
        .count();
    assert_eq!(halts, 1, "{audit}");
    for (h, host) in [(&a, "PC-C"), (&b, "PC-D")] {
        let c = checkin_as(h, &keys[host], "idle").await;
        assert!(c["migration"].is_null(), "{host}: {c}");
        assert!(
            c["blocked"].as_str().unwrap().contains("halted"),
            "{host}: {c}"
        );
    }

    // A resume asked of both at once is decided once.
    let (ra, rb) = tokio::join!(
        a.api(M::POST, "/batches/Wave/resume", None),
        b.api(M::POST, "/batches/Wave/resume", None)
    );
    let mut codes = [ra.0, rb.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{ra:?} {rb:?}");
    settle().await;
    for (h, host) in [(&b, "PC-C"), (&a, "PC-D")] {
        let c = checkin_as(h, &keys[host], "idle").await;
        assert!(c["migration"].is_object(), "resumed on both: {host}: {c}");
    }

    // PC-F leaves the batch through a: b stops assigning it.
    let (s, v) = a
        .api(
            M::POST,
            "/batches/Wave/computers",
            Some(json!({"remove": ["PC-F"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let deadline = std::time::Instant::now() + 3 * devices::CONFIG_POLL;
    loop {
        let c = checkin_as(&b, &keys["PC-F"], "idle").await;
        if c["assignment"].is_null() && c["migration"].is_null() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server b still assigns a computer removed through a: {c}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop((a, b));
}

// Catches: a device whose own pre-flight failed (a pending reboot) handed its run anyway; the
// batch's what-if not saying which device is not ready and why; an oversized pre-flight stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_preflight_fails_is_not_ready_and_says_why() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
    let psk = k["key"].as_str().unwrap().to_string();
    let (_, e) = h.enroll(&psk, "PC-PRE", json!([])).await;
    let key = e["node_key"].as_str().unwrap().to_string();
    due_batch(&h, &["PC-PRE"]).await;
    let check = |name: &str, ok: bool, blocking: bool, detail: &str| json!({"check": name, "ok": ok, "blocking": blocking, "detail": detail});
    let now = jiff::Timestamp::now().as_millisecond();
    let report = |reboot_ok: bool| {
        json!({"protocol": 1, "clock": now, "preflight": {"at": now, "checks": [
            check("free-space", true, true, "at least 900 MiB free"),
            check("reboot", reboot_ok, true, if reboot_ok { "no reboot pending" } else { "a reboot is pending (/run/reboot-required exists)" }),
            check("sessions", false, false, "1 session(s) open"),
        ]}})
    };
    let (s, c) = h.call_agent("/checkin", Some(&key), report(false)).await;
    assert_eq!(s, 200, "{c}");
    assert!(c["migration"].is_null(), "{c}");
    let blocked = c["blocked"].as_str().unwrap();
    assert!(
        blocked.contains("not ready: reboot (a reboot is pending"),
        "{c}"
    );
    assert!(
        !blocked.contains("sessions"),
        "a warning does not block: {c}"
    );
    let (_, w) = h.api(M::GET, "/batches/Now/whatif", None).await;
    let d = &w["devices"][0];
    assert_eq!(d["ready"], false, "{d}");
    let checks: Vec<&str> = d["preflight"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["free-space", "reboot", "sessions", "clock", "profiles"],
        "{d}"
    );
    // Oversized: refused, the stored one kept.
    let mut big = report(true);
    big["preflight"]["checks"][0]["detail"] = json!("x".repeat(5000));
    let (s, _) = h.call_agent("/checkin", Some(&key), big).await;
    assert_eq!(s, 400);
    // Rebooted: ready, and handed its run.
    let (_, c) = h.call_agent("/checkin", Some(&key), report(true)).await;
    assert!(c["migration"].is_object(), "{c}");
    let (_, w) = h.api(M::GET, "/batches/Now/whatif", None).await;
    assert_eq!(w["devices"][0]["ready"], true, "{w}");
}

// ---- Found by a cold review of fleet safety (as a device holder, a viewer, a local user): each
// test below failed on the code it was written against and catches the finding it names.

/// Puts batch `name` (runbook `Main`, due an hour ago unless `extra` says otherwise) with `hosts`.
async fn review_batch(h: &H, name: &str, extra: Value, hosts: &[&str]) {
    use reqwest::Method as M;
    let (s, v) = h
        .api(M::PUT, "/runbooks/Main", Some(runbook("Main", &[], false)))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut b = json!({"name": name, "source_directory": "contoso", "target_directory": "fabrikam",
        "runbooks": ["Main"], "enforced_after": local(-1), "time_zone": "UTC"});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (s, v) = h.api(M::PUT, &format!("/batches/{name}"), Some(b)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h
        .api(
            M::POST,
            &format!("/batches/{name}/computers"),
            Some(json!({"add": hosts})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

async fn review_halted(h: &H, batch: &str) -> bool {
    let (_, p) = h
        .api(
            reqwest::Method::GET,
            &format!("/batches/{batch}/progress"),
            None,
        )
        .await;
    !p["wave"]["halted"].is_null()
}

// Finding: a halted batch still starts devices that were handed their order but never started
// it (an offered migration the user snoozes, an enforced one waiting for sessions to end). The
// agent starts a run only right after a check-in that returned it, so the server can withhold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_a_halted_batch_does_not_hand_an_unstarted_offer_again() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A", "PC-B", "PC-C"]).await;
    review_batch(
        &h,
        "Offer",
        json!({"available_from": local(-1), "enforced_after": local(48)}),
        &["PC-A", "PC-B", "PC-C"],
    )
    .await;
    let a = checkin_as(&h, &keys["PC-A"], "idle").await;
    let b = checkin_as(&h, &keys["PC-B"], "idle").await;
    assert_eq!(a["migration"]["mode"], "offered", "{a}");
    assert_eq!(b["migration"]["mode"], "offered", "{b}");
    // PC-A's user starts it; it fails: the batch halts.
    checkin_as(&h, &keys["PC-A"], "failed").await;
    assert!(review_halted(&h, "Offer").await);
    settle().await;
    // PC-C, never offered, is held back; PC-B, offered but never started (no event), is not.
    let c = checkin_as(&h, &keys["PC-C"], "idle").await;
    assert!(c["migration"].is_null(), "{c}");
    let b = checkin_as(&h, &keys["PC-B"], "offered").await;
    assert!(
        b["migration"].is_null(),
        "a halted batch hands PC-B (which never started) its migration again: its user or \
         Enforced After starts it: {b}"
    );
}

// Finding: the post-flight evidence that makes a canary `verified` is whatever the device sends:
// an empty list of checks "passes", and no event of the run (not even `done succeeded`) is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_an_empty_verification_of_a_run_never_run_does_not_open_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A", "PC-B"]).await;
    review_batch(&h, "Canary", json!({"canary": 1}), &["PC-A", "PC-B"]).await;
    let a = checkin_as(&h, &keys["PC-A"], "idle").await;
    let run = a["migration"]["run"].as_str().unwrap().to_string();
    // At once, with no event of the run: `verified`, "proved" by no check at all.
    let (s, c) = h
        .call_agent(
            "/checkin",
            Some(&keys["PC-A"]),
            json!({"protocol": 1, "state": "verified",
                   "verification": {"run": run, "after": "run", "at": 0, "checks": []}}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    settle().await;
    let b = checkin_as(&h, &keys["PC-B"], "idle").await;
    assert!(
        b["migration"].is_null(),
        "a canary that ran nothing and proved nothing opened the batch: {b}"
    );
}

// Finding: `verified` is a state of the agent, not of a run: a device verified in one batch
// counts as a finished canary of the next batch it is put in, before it ran that batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_a_verified_device_moved_to_another_batch_is_not_its_finished_canary() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A", "PC-B"]).await;
    review_batch(&h, "Pilot", json!({}), &["PC-A"]).await;
    let a = checkin_as(&h, &keys["PC-A"], "idle").await;
    let run = a["migration"]["run"].as_str().unwrap().to_string();
    let (s, c) = h
        .call_agent(
            "/checkin",
            Some(&keys["PC-A"]),
            json!({"protocol": 1, "state": "verified", "verification": verification(&run, true)}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    // PC-A moves to the next wave, as its canary (first by name); it has not checked in since.
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Pilot/computers",
            Some(json!({"remove": ["PC-A"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    review_batch(&h, "Wave", json!({"canary": 1}), &["PC-A", "PC-B"]).await;
    settle().await;
    let b = checkin_as(&h, &keys["PC-B"], "idle").await;
    assert!(
        b["migration"].is_null(),
        "Wave's canary has not run Wave, yet PC-B is handed its migration: {b}"
    );
}

// Finding: a resume accepts a number of failures, not the failed devices: once an accepted
// failure stops counting (its device re-enrolls, or says `idle`), the next real failure is
// absorbed and the batch (max_failure_rate 0) does not halt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_a_new_failure_after_a_resume_halts_even_if_an_old_one_went_away() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A", "PC-B", "PC-C"]).await;
    review_batch(&h, "Rate", json!({}), &["PC-A", "PC-B", "PC-C"]).await;
    for host in ["PC-A", "PC-B"] {
        let c = checkin_as(&h, &keys[host], "idle").await;
        assert!(c["migration"].is_object(), "{c}");
    }
    checkin_as(&h, &keys["PC-A"], "failed").await;
    assert!(review_halted(&h, "Rate").await);
    let (s, v) = h.api(M::POST, "/batches/Rate/resume", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted_failures"], 1, "{v}");
    // PC-A's failure goes away (a reinstalled agent says `idle`; a re-enrolled one is `enrolled`).
    checkin_as(&h, &keys["PC-A"], "idle").await;
    settle().await;
    // PC-B fails: a new failure, which max_failure_rate 0 halts on.
    checkin_as(&h, &keys["PC-B"], "failed").await;
    settle().await;
    let c = checkin_as(&h, &keys["PC-C"], "idle").await;
    assert!(
        review_halted(&h, "Rate").await && c["migration"].is_null(),
        "PC-B's failure after the resume did not halt the batch: {c}"
    );
}

// Finding: a check-in is validated after part of it is applied: its `state` (and harvest) are
// recorded, then an oversized verification (the agent's own post-flight naming ten long paths,
// which a local user can create) refuses the rest, so the failure it reports never halts the
// batch at once (and the agent re-sends the same verification for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_an_oversized_verification_does_not_swallow_the_failure_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A", "PC-B"]).await;
    review_batch(&h, "Big", json!({}), &["PC-A", "PC-B"]).await;
    let a = checkin_as(&h, &keys["PC-A"], "idle").await;
    let run = a["migration"]["run"].as_str().unwrap().to_string();
    // What postflight::principals writes for ten paths of ~900 bytes: over the 8,000 the server takes.
    let long = format!("/home/ann/{}/f", "d".repeat(880));
    let detail = format!(
        "10 of 99 entries still name a source principal (or lack their target's): {}",
        vec![format!("{long} (ACL entries)"); 10].join("; ")
    );
    let (s, c) = h
        .call_agent(
            "/checkin",
            Some(&keys["PC-A"]),
            json!({"protocol": 1, "state": "verification-failed",
                   "verification": {"run": run, "after": "run", "at": 1,
                       "checks": [{"check": "principals", "ok": false, "blocking": true, "detail": detail}]}}),
        )
        .await;
    let refused = s == 400;
    settle().await;
    let (_, p) = h
        .api(reqwest::Method::GET, "/batches/Big/progress", None)
        .await;
    let recorded = p["states"]["verification-failed"] == 1;
    assert!(
        !(refused && recorded && p["wave"]["halted"].is_null()),
        "the check-in was refused ({s}: {c}) yet its state was recorded ({}), and the failure \
         did not halt the batch",
        p["states"]
    );
}

// Finding (malformed input): `clock` is used unchecked in `clock_check` (`device - server`,
// `skew.abs()`): i64::MIN panics the handler in a debug build (the connection drops), and in a
// release build `i64::MIN + now` passes the clock check (|i64::MIN| wraps negative).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_an_absurd_device_clock_is_refused_or_not_ready_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A"]).await;
    review_batch(&h, "Clock", json!({}), &["PC-A"]).await;
    let now = jiff::Timestamp::now().as_millisecond();
    for clock in [i64::MIN, i64::MIN + now, i64::MAX] {
        let r = h
            .agent
            .post(format!("{}/agent/v1/checkin", h.agent_url))
            .bearer_auth(&keys["PC-A"])
            .json(&json!({"protocol": 1, "clock": clock}))
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("clock {clock}: the connection dropped (a panic): {e}"),
        };
        let s = r.status().as_u16();
        let c: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            s == 400 || (s == 200 && c["migration"].is_null()),
            "clock {clock}: {s} {c}"
        );
    }
}

// Finding (malformed input): `verification.after` (and each check's name) is not checked: any
// string up to the 4 MiB body limit is stored on the agent and served to the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_a_verifications_after_is_run_or_rollback_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A"]).await;
    let (s, c) = h
        .call_agent(
            "/checkin",
            Some(&keys["PC-A"]),
            json!({"protocol": 1, "verification": {"run": "r", "after": "x".repeat(3 << 20), "at": 0,
                   "checks": [{"check": "", "ok": true, "blocking": true, "detail": ""}]}}),
        )
        .await;
    assert_eq!(s, 400, "a 3 MiB `after` is taken: {c}");
}

// Finding: a resume after a canary failure changes nothing for the rest: the failed canary
// device can never become `verified` (its run has ended and is not taken again), so the others
// wait "for the canary" for ever although the operator accepted its failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_a_resume_after_a_canary_failure_lets_the_rest_go() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A", "PC-B"]).await;
    review_batch(&h, "Can", json!({"canary": 1}), &["PC-A", "PC-B"]).await;
    let a = checkin_as(&h, &keys["PC-A"], "idle").await;
    assert!(a["migration"].is_object(), "{a}");
    checkin_as(&h, &keys["PC-A"], "failed").await;
    assert!(review_halted(&h, "Can").await);
    let (s, v) = h.api(M::POST, "/batches/Can/resume", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted_canary_failures"], 1, "{v}");
    settle().await;
    let b = checkin_as(&h, &keys["PC-B"], "idle").await;
    assert!(
        b["migration"].is_object(),
        "resumed, yet PC-B waits for a canary that cannot finish: {b}"
    );
}

// Finding: `assigned_run` is never cleared and `running` counts every agent of the batch that
// was ever handed a run and is not finished, whatever batch or run that was: a device handed an
// offer in one batch and then moved to another (or whose batch is rescheduled, so its run id
// changes, or which re-enrolled after a failure) holds a max_concurrent slot of its new batch
// for ever, against itself too: with max_concurrent 1 nothing ever starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_a_run_of_another_batch_holds_no_slot() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let keys = wave_devices(&h, &["PC-A", "PC-B"]).await;
    review_batch(
        &h,
        "Pilot",
        json!({"available_from": local(-1), "enforced_after": local(48)}),
        &["PC-A"],
    )
    .await;
    let a = checkin_as(&h, &keys["PC-A"], "idle").await;
    assert_eq!(a["migration"]["mode"], "offered", "{a}");
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Pilot/computers",
            Some(json!({"remove": ["PC-A"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    review_batch(&h, "Wave", json!({"max_concurrent": 1}), &["PC-A", "PC-B"]).await;
    settle().await;
    let a = checkin_as(&h, &keys["PC-A"], "idle").await;
    let b = checkin_as(&h, &keys["PC-B"], "idle").await;
    assert!(
        a["migration"].is_object() || b["migration"].is_object(),
        "nothing of Wave runs, yet neither device starts: {a} {b}"
    );
}

/// `/metrics` parsed by Prometheus' own Python parser (`prometheus_client`, Debian's
/// python3-prometheus-client): each sample as `[name, {labels}, value]`.
fn scrape_parsed(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    use std::io::Write as _;
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       out.append([s.name, s.labels, s.value, f.type])\n\
        print(json.dumps(out))\n";
    let mut p = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the test command installs python3-prometheus-client)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Prometheus' parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, HashMap<String, String>, f64, String)> =
        serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter().map(|(n, l, x, _)| (n, l, x)).collect()
}

/// Catches: an exposition Prometheus cannot parse; counters that do not count what happened (a
/// cycle, check-ins answered and refused, the agent call's route, Graph calls); a device, host,
/// key or address turning into a label (unbounded series, and a leak to whoever scrapes); a scrape
/// open to anyone; probes that lie; request ids missing from answers, error bodies or echoing a
/// client's hostile id; the seed's `https://host/Agent` test page missing or not naming the
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_probes_request_ids_and_the_agent_landing_page() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let (s, v) = h.api(M::POST, "/profiles/users/run?wait=true", None).await;
    assert_eq!(s, 202, "{v}");
    // Graph calls: a connection test of the Entra directory (the simulator).
    let (s, v) = h
        .api(M::POST, "/directories/fabrikam-entra/test", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let keys = wave_devices(&h, &["PC-Métrique-01", "pc-0002"]).await;
    checkin_as(&h, &keys["PC-Métrique-01"], "idle").await;
    checkin_as(&h, &keys["pc-0002"], "idle").await;
    let (s, _) = h
        .call_agent("/checkin", Some("not-a-node-key"), json!({"protocol": 1}))
        .await;
    assert_eq!(s, 401);
    let (s, _) = h
        .call_agent(
            "/checkin",
            Some(&keys["pc-0002"]),
            json!({"protocol": 1, "verification": {"run": "x", "after": "sideways", "at": 1, "checks": []}}),
        )
        .await;
    assert_eq!(s, 400);

    // The scrape: a ferry admin's or viewer's token; nobody else.
    let scrape = |token: Option<String>| {
        let mut r = h.admin.get(format!("{}/metrics", h.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(scrape(None).await.unwrap().status().as_u16(), 401);
    let r = scrape(Some(h.token.clone())).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    let text = r.text().await.unwrap();
    let samples = scrape_parsed(&text);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| v)
            .sum()
    };
    assert_eq!(
        value(
            "ferry_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        value("ferry_agent_checkins_total", &[("result", "nothing")]),
        2.0,
        "{text}"
    );
    assert_eq!(
        value("ferry_agent_checkins_total", &[("result", "refused")]),
        1.0,
        "{text}"
    );
    assert!(
        value("ferry_agent_refusals_total", &[("code", "bad_request")]) >= 1.0,
        "{text}"
    );
    assert!(value("ferry_agent_refusals_total", &[]) >= 2.0, "{text}");
    assert_eq!(
        value(
            "ferry_http_requests_total",
            &[
                ("listener", "agent"),
                ("route", "/agent/v1/checkin"),
                ("status", "2xx")
            ]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(
            "ferry_http_requests_total",
            &[
                ("listener", "agent"),
                ("route", "/agent/v1/checkin"),
                ("status", "4xx")
            ]
        ),
        2.0,
        "{text}"
    );
    assert!(
        value(
            "ferry_http_request_duration_seconds_count",
            &[
                ("listener", "admin"),
                ("route", "/api/v1/profiles/{name}/run")
            ]
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(
            "ferry_sync_cycles_total",
            &[("profile", "users"), ("result", "succeeded")]
        ),
        1.0
    );
    for stage in ["import", "plan", "compare", "store", "cycle"] {
        assert_eq!(
            value(
                "ferry_sync_stage_duration_seconds_count",
                &[("profile", "users"), ("stage", stage)]
            ),
            1.0,
            "stage {stage}: {text}"
        );
    }
    let matched = value("ferry_translation_entries", &[("profile", "users")]);
    assert!(matched > 0.0, "{text}");
    assert_eq!(
        value(
            "ferry_sync_decisions",
            &[("profile", "users"), ("status", "matched")]
        ),
        matched
    );
    assert_eq!(value("ferry_agents", &[]), 2.0, "{text}");
    assert!(
        value("ferry_graph_requests_total", &[("status", "2xx")]) >= 1.0,
        "{text}"
    );
    // No device, host, key, user or address is a label value.
    let (_, t) = h.api(M::GET, "/translation?limit=5", None).await;
    let mut secrets: Vec<String> = vec![
        "métrique".into(),
        "pc-0002".into(),
        "127.0.0.1".into(),
        keys["pc-0002"].clone(),
        h.token.clone(),
    ];
    for e in t["entries"].as_array().unwrap() {
        secrets.push(e["source_name"].as_str().unwrap().to_lowercase());
    }
    for (n, l, _) in &samples {
        for v in l.values() {
            let v = v.to_lowercase();
            assert!(
                !secrets.iter().any(|s| v.contains(s.as_str())),
                "{n} has the label value {v}"
            );
        }
    }

    // Probes.
    for (path, status) in [("/livez", 200), ("/readyz", 200), ("/healthz", 200)] {
        let r = h
            .admin
            .get(format!("{}{path}", h.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
    }

    // Request ids: in every answer, in error bodies, a sane one from the client kept.
    let r = h
        .admin
        .get(format!("{}/api/v1/agents/999999", h.url))
        .bearer_auth(&h.token)
        .header("x-request-id", "lb-7f3a.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a.9");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], "lb-7f3a.9", "{body}");
    let r = h
        .admin
        .get(format!("{}/api/v1/agents/999999", h.url))
        .bearer_auth(&h.token)
        .header("x-request-id", "evil\"id<script>")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());

    // The seed's endpoint test: `https://host/Agent` in a browser, any case.
    for path in ["/Agent", "/agent", "/AGENT/"] {
        let r = h
            .agent
            .get(format!("{}{path}", h.agent_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = r.text().await.unwrap();
        assert!(page.contains(&h.fingerprint), "{path}: {page}");
        assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    }
    let r = h
        .agent
        .get(format!("{}/agents", h.agent_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// Catches: `/readyz` calling ready a database behind this build's migrations (restored from an
/// older backup under a running server), while `/livez` stays up (a restart would not help).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_refuses_a_database_behind_this_build() {
    let Some(pg) = support::PgSchema::new("readyz") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let h = start_on(
        dir.path(),
        "",
        Some(pg.url.clone()),
        Some("ferry_shared_admin_token_of_the_test"),
    )
    .await;
    let get = |p: &str| h.admin.get(format!("{}{p}", h.url)).send();
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 200);
    pg.query("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)");
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("this build needs"),
        "{body}"
    );
    assert_eq!(get("/livez").await.unwrap().status().as_u16(), 200);
}

// Catches: the migration dashboard counting a re-enrolled computer's replaced agent as a second
// computer with an agent, so that a computer with no agent at all is neither counted nor named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_agent_does_not_hide_a_computer_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    let (_, k) = h
        .api(M::POST, "/psks", Some(json!({"name": "shared"})))
        .await;
    let psk = k["key"].as_str().unwrap().to_string();
    let (s, old) = enroll_as(&h, &psk, "PC-RENEW", "old-disk", None).await;
    assert_eq!(s, 200, "{old}");
    // A computer of the source directory that never enrolled, added by its name in capitals
    // (looked up through the directory's name index).
    let never = never_enrolled(&h).await;
    due_batch(&h, &["PC-RENEW", &never]).await;
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Now/computers",
            Some(json!({"add": ["PC-NOWHERE"]})),
        )
        .await;
    assert_eq!(s, 400, "a computer nobody knows is refused: {v}");
    // The computer is reinstalled: a new device id with its host name, approved by an operator.
    let (s, e) = enroll_as(&h, &psk, "PC-RENEW", "new-disk", None).await;
    assert_eq!(s, 202, "{e}");
    let id = e["held"]["request_id"].as_i64().unwrap();
    let (s, d) = h
        .api(M::POST, &format!("/enrollment-requests/{id}/approve"), None)
        .await;
    assert_eq!(s, 200, "{d}");
    let (s, p) = h.api(M::GET, "/batches/Now/progress", None).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["computers"], 2, "{p}");
    assert_eq!(
        p["states"]["replaced"], 1,
        "the old agent is still shown: {p}"
    );
    assert_eq!(p["states"]["no agent yet"], 1, "{p}");
    assert_eq!(p["no_agent"], json!([never]), "named as typed: {p}");
}

/// `after=` tokens are JSON: percent-encoded for a query string.
fn review_urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Catches (on SQLite and on PostgreSQL): a forged `after=` on a sorted list of agents or of
/// refused communications — a number where the list sorts on text, text where it sorts on a
/// time, a NUL in a name — answered with a 500 (PostgreSQL refuses the parameter) or with rows
/// instead of a 400 naming `after`; a decision cursor holding a NUL answered with anything but
/// a 200 (a value may hold one on SQLite); and a device's host name holding a DEL, which is no valid
/// header character: a page sorted by host name that ended on it lost its `X-Next-After`, so the
/// console and every client stopped there and the agents after it were never listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_forged_cursors_and_hostile_host_names_on_sorted_lists() {
    use reqwest::Method as M;
    let pg = support::PgSchema::new("forged_cursors");
    for url in [None, pg.as_ref().map(|p| p.url.clone())] {
        let backend = if url.is_some() { "postgres" } else { "sqlite" };
        let dir = tempfile::tempdir().unwrap();
        let admin = "ferry_shared_admin_token_for_forged_cursors";
        let h = start_on(dir.path(), "", url.clone(), url.as_ref().map(|_| admin)).await;
        let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
        let psk = k["key"].as_str().unwrap().to_string();
        let hosts = ["pc-a", "pc-b\u{7f}", "pc-c\r\nX-Injected: 1", "pc-d"];
        for host in hosts {
            let (s, v) = h.enroll(&psk, host, json!([])).await;
            assert_eq!(s, 200, "{backend} {host:?}: {v}");
        }
        // A refused communication, so that the refusal list has a row.
        let (s, _) = h.enroll("psk_wrong", "pc-x", json!([])).await;
        assert_eq!(s, 401);

        // Every agent, one a page, by host name both ways: each page's `X-Next-After` leads on.
        for order in ["asc", "desc"] {
            let mut seen = Vec::new();
            let mut after = String::new();
            for _ in 0..10 {
                let r = h
                    .admin
                    .get(format!(
                        "{}/api/v1/agents?sort=hostname&order={order}&limit=1{after}",
                        h.url
                    ))
                    .bearer_auth(&h.token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{backend}");
                assert!(r.headers().get("x-injected").is_none(), "{backend}");
                let next = r
                    .headers()
                    .get("x-next-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let page: Vec<Value> = r.json().await.unwrap();
                seen.extend(
                    page.iter()
                        .map(|a| a["hostname"].as_str().unwrap().to_string()),
                );
                match next {
                    Some(n) => after = format!("&after={}", review_urlencode(&n)),
                    None => break,
                }
            }
            seen.sort();
            assert_eq!(seen, hosts, "{backend} {order}: every agent listed once");
        }

        // Forged cursors: a 400 naming `after`, on both backends alike.
        let (s, v) = h.api(M::POST, "/profiles/users/run?wait=true", None).await;
        assert_eq!(s, 202, "{v}");
        let mut wrong = Vec::new();
        let forged =
            |sort: &str, token: &str| format!("sort={sort}&after={}", review_urlencode(token));
        for path in [
            format!("/agents?{}", forged("hostname", "[5,1]")),
            format!("/agents?{}", forged("state", "[5,1]")),
            format!("/agents?{}", forged("last_contact", "[\"x\",1]")),
            format!("/agents?{}", forged("hostname", "[\"pc\\u0000\",1]")),
            format!("/agents?{}", forged("hostname", "[\"pc\",1,2]")),
            format!("/agents?{}", forged("hostname", "[\"pc\",1e400]")),
            format!("/agents?{}", forged("id", "[\"pc\",1]")),
            format!(
                "/reports/failed-communications?{}",
                forged("at", "[\"x\",1]")
            ),
            format!(
                "/reports/failed-communications?{}",
                forged("address", "[1,1]")
            ),
            format!(
                "/reports/failed-communications?{}",
                forged("address", "[\"\\u0000\",1]")
            ),
            format!("/logs?{}", forged("at", "[1,1]")),
            "/logs?after=99999999999999999999".to_string(),
            "/audit?after=x".to_string(),
        ] {
            let (s, v) = h.api(M::GET, &path, None).await;
            if s != 400 || !v["error"].as_str().unwrap_or_default().contains("after") {
                wrong.push(format!("{backend} {path}: {s} {v}"));
            }
        }
        // A decision cursor may hold a NUL: SQLite stores one a directory's value carried, and
        // the pages go on past it (`api.rs::review_a_value_with_a_nul_does_not_end_the_sorted_pages`);
        // PostgreSQL, which holds none, finds no row past it. A 200 on both, never a 500.
        for path in [
            format!(
                "/translation?sort=source_name&after={}",
                review_urlencode("[\"users\",\"user\",\"u1\",\"\\u0000\"]")
            ),
            format!(
                "/profiles/users/whatif?after={}",
                review_urlencode("[\"users\",\"user\",\"\\u0000\"]")
            ),
        ] {
            let (s, v) = h.api(M::GET, &path, None).await;
            if s != 200 {
                wrong.push(format!("{backend} {path}: {s} {v}"));
            }
        }
        // A NUL, which PostgreSQL stores nowhere, in a filter or a host name: a 400 naming it.
        for (path, param) in [
            ("/audit?actor=%00", "actor"),
            ("/audit/export?action=a%00", "action"),
            ("/reports/failed-communications?code=%00", "code"),
            ("/agents?state=%00", "state"),
            ("/agents?search=pc%00", "search"),
            ("/logs?object=%00", "object"),
        ] {
            let (s, v) = h.api(M::GET, path, None).await;
            if s != 400
                || !v["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&format!("`{param}`"))
            {
                wrong.push(format!("{backend} {path}: {s} {v}"));
            }
        }
        let (s, v) = h.enroll(&psk, "pc-nul\u{0}", json!([])).await;
        if (s, v["code"].as_str()) != (400, Some("bad_request")) {
            wrong.push(format!("{backend} a NUL in a host name: {s} {v}"));
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        h._server.stop().await.unwrap();
    }
}

/// Catches (on SQLite and on PostgreSQL): an enrolled agent whose host name has a letter past
/// ASCII (`ÅSA-PC`) refused as "neither an enrolled agent nor a device" when added to a batch
/// by name: its claim is the name in the database's lower case (`lower`, ASCII letters only on
/// SQLite), the name typed was looked up in Rust's (every letter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_an_agent_named_past_ascii_is_added_to_a_batch() {
    use reqwest::Method as M;
    let pg = support::PgSchema::new("batch_non_ascii");
    for url in [None, pg.as_ref().map(|p| p.url.clone())] {
        let dir = tempfile::tempdir().unwrap();
        let admin = "ferry_shared_admin_token_for_non_ascii";
        let h = start_on(dir.path(), "", url.clone(), url.as_ref().map(|_| admin)).await;
        let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
        let psk = k["key"].as_str().unwrap().to_string();
        let (s, v) = h.enroll(&psk, "ÅSA-PC", json!([])).await;
        assert_eq!(s, 200, "{v}");
        // `review_batch` asserts that the computers are added.
        review_batch(&h, "Nordic", json!({}), &["ÅSA-PC"]).await;
        h._server.stop().await.unwrap();
    }
}

// Catches: the agents export missing agents past its first page (it reads keyset pages of
// 5,000), ignoring the filters or the order shown, or writing a device's host name that starts
// with `=` as a formula a spreadsheet would run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_export_is_every_filtered_agent_in_the_order_shown() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    let (_, k) = h
        .api(M::POST, "/psks", Some(json!({"name": "shared"})))
        .await;
    let psk = k["key"].as_str().unwrap().to_string();
    for (host, device) in [
        ("Smith-PC", "d1"),
        ("=HYPERLINK(\"http://x\")", "d2"),
        ("Ødegård-PC", "d3"),
        ("ann \"laptop\"", "d4"),
    ] {
        let (s, e) = enroll_as(&h, &psk, host, device, None).await;
        assert_eq!(s, 200, "{e}");
    }
    let (s, csv) = h
        .api(M::GET, "/agents/export?sort=hostname&order=desc", None)
        .await;
    assert_eq!(s, 200, "{csv}");
    let csv = csv.as_str().unwrap().to_string();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let hosts: Vec<String> = r
        .records()
        .map(|x| x.unwrap().get(1).unwrap().to_string())
        .collect();
    // Host names in ASCII lower case, descending, as the list shows them; the formula neutralised.
    assert_eq!(
        hosts,
        [
            "Ødegård-PC",
            "Smith-PC",
            "ann \"laptop\"",
            "'=HYPERLINK(\"http://x\")"
        ],
        "{csv}"
    );
    let (_, one) = h.api(M::GET, "/agents/export?search=smith", None).await;
    let one = one.as_str().unwrap().to_string();
    assert_eq!(one.lines().count(), 2, "the header and Smith-PC: {one}");
    assert!(one.contains("Smith-PC"), "{one}");
    let (s, v) = h.api(M::GET, "/agents/export?sort=nope", None).await;
    assert_eq!(s, 400, "{v}");
}

// Catches: the failed communications export leaving out refusals past its first page, ignoring
// the code filter, or writing what a device sent (its device id) as a spreadsheet formula.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_communications_export_is_every_filtered_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    for i in 0..3 {
        let (s, v) = enroll_as(
            &h,
            "psk_wrong",
            &format!("PC-{i}"),
            "=cmd|' /C calc'!A0",
            None,
        )
        .await;
        assert_eq!(s, 401, "{v}");
    }
    let (s, v) = checkin(&h, "not-a-node-key").await;
    assert_eq!(s, 401, "{v}");
    let (_, report) = h.api(M::GET, "/reports/failed-communications", None).await;
    let total = report["failures_total"].as_i64().unwrap();
    let (s, csv) = h
        .api(M::GET, "/reports/failed-communications/export", None)
        .await;
    assert_eq!(s, 200, "{csv}");
    let csv = csv.as_str().unwrap().to_string();
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len() as i64, total, "every refusal: {csv}");
    assert!(
        rows.iter().all(|r| r.iter().all(|c| !c.starts_with('='))),
        "no cell reads as a formula: {csv}"
    );
    assert!(
        rows.iter().any(|r| r.get(8) == Some("'=cmd|' /C calc'!A0")),
        "the device's id, neutralised: {csv}"
    );
    let (_, only) = h
        .api(
            M::GET,
            "/reports/failed-communications/export?code=bad_psk",
            None,
        )
        .await;
    let only = only.as_str().unwrap().to_string();
    let codes: Vec<String> = csv::Reader::from_reader(only.as_bytes())
        .records()
        .map(|r| r.unwrap().get(4).unwrap().to_string())
        .collect();
    assert!(
        !codes.is_empty() && codes.iter().all(|c| c == "bad_psk"),
        "{only}"
    );
}

/// Catches (on SQLite and on PostgreSQL): a batch whose computers are typed with letters past
/// ASCII in another case than the devices report them ("åsa-pc" for "ÅSA-PC") showing them as
/// "no agent yet" and leaving their agents out of the migration dashboard's states and list
/// (the database's `lower()`, ASCII only on SQLite, compared against Rust's lower case), or a
/// second device taking such a name by changing the case of one of those letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_finds_its_agents_whatever_the_case_of_letters_past_ascii() {
    use reqwest::Method as M;
    let pg = support::PgSchema::new("non_ascii_hosts");
    for url in [None, pg.as_ref().map(|p| p.url.clone())] {
        let backend = if url.is_some() { "postgres" } else { "sqlite" };
        let dir = tempfile::tempdir().unwrap();
        let admin = "ferry_shared_admin_token_for_non_ascii_hosts";
        let h = start_on(dir.path(), "", url.clone(), url.as_ref().map(|_| admin)).await;
        let hosts = ["ÅSA-PC", "ÖREBRO-01", "İZMİR-PC", "STRAẞE-PC"];
        let keys = wave_devices(&h, &hosts).await;
        // Another device claiming "ÅSA-PC" as "åsa-pc": held for an operator, not enrolled.
        let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k2"}))).await;
        let (s, v) = h
            .enroll_as(k["key"].as_str().unwrap(), "id-other", "åsa-pc", json!([]))
            .await;
        assert_eq!(s, 202, "{backend}: {v}");

        let (s, v) = h.api(M::PUT, "/batches/Wave", Some(json!({"name": "Wave", "source_directory": "contoso",
            "target_directory": "fabrikam", "runbooks": ["Main"], "enforced_after": local(24), "time_zone": "UTC"}))).await;
        assert_eq!(s, 200, "{backend}: {v}");
        let typed = ["åsa-pc", "örebro-01", "i\u{307}zmi\u{307}r-pc", "straße-pc"];
        let (s, v) = h
            .api(
                M::POST,
                "/batches/Wave/computers",
                Some(json!({"add": typed})),
            )
            .await;
        assert_eq!(s, 200, "{backend}: enrolled agents, whatever the case: {v}");
        for key in keys.values() {
            checkin_as(&h, key, "idle").await;
        }

        let (s, p) = h
            .api(
                M::GET,
                "/batches/Wave/progress?sort=hostname&order=desc",
                None,
            )
            .await;
        assert_eq!(s, 200, "{backend}: {p}");
        assert_eq!(p["computers"], 4, "{backend}: {p}");
        assert!(
            p["states"].get("no agent yet").is_none() && p["no_agent"] == json!([]),
            "{backend}: every computer has its agent: {p}"
        );
        let listed: Vec<&str> = p["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["hostname"].as_str().unwrap())
            .collect();
        // By key, by code point, descending: ö, å, s, i.
        assert_eq!(
            listed,
            ["ÖREBRO-01", "ÅSA-PC", "STRAẞE-PC", "İZMİR-PC"],
            "{backend}: {p}"
        );
        let (_, all) = h.api(M::GET, "/agents?batch=Wave&limit=10", None).await;
        assert_eq!(all.as_array().map(Vec::len), Some(4), "{backend}: {all}");
        let (_, found) = h.api(M::GET, "/agents?search=%C3%A5sa", None).await;
        assert_eq!(
            found.as_array().map(Vec::len),
            Some(1),
            "{backend}: {found}"
        );
    }
}

/// An export's answer read with `token`: its status, `X-Total-Count` and its rows without the
/// header.
async fn csv_as(h: &H, token: &str, path: &str) -> (u16, i64, Vec<Vec<String>>) {
    support::csv_export(&h.admin, &h.url, token, path, false).await
}

/// Catches (on SQLite and on PostgreSQL): a batch's computers export that leaves out the
/// computers no agent has enrolled from yet (as `/agents/export?batch=` does), stops after its
/// first keyset page of agents (500) or its first chunk of computers without one (256), repeats
/// a row, ignores the dashboard's state filter or its order (the agents as sorted, then the
/// computers without one by name), writes an agent's host name starting with `=` or a directory
/// computer's name starting with `+` as a formula a spreadsheet would run, names a computer
/// otherwise than as typed, or leaves out the batch's times; a viewer refused, a tenant admin let
/// in, a bad parameter answered otherwise than with a 400 naming it, an unknown batch otherwise
/// than 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_computers_export_names_every_computer_in_the_dashboards_order() {
    use reqwest::Method as M;
    let pg = support::PgSchema::new("computers_export");
    for url in [None, pg.as_ref().map(|p| p.url.clone())] {
        let backend = if url.is_some() { "postgres" } else { "sqlite" };
        let dir = tempfile::tempdir().unwrap();
        let admin = "ferry_shared_admin_token_for_computers_export";
        let h = start_on(dir.path(), "", url.clone(), url.as_ref().map(|_| admin)).await;
        // A source directory of 350 computers, one named as an attacker would.
        let hostile_pc = "+Lab, \"Ødegård\" PC";
        let mut s = sample::generate(700, true, 5);
        s.source.push(ferry_core::model::DirObject::new(
            ferry_core::ObjectKind::Device,
            "hostile-pc",
            hostile_pc,
        ));
        std::fs::write(dir.path().join("contoso.json"), render_json(&s.source)).unwrap();
        let (st, v) = h.api(M::POST, "/profiles/users/run?wait=true", None).await;
        assert_eq!(st, 202, "{backend}: {v}");
        let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
        let psk = k["key"].as_str().unwrap().to_string();
        // More agents than a keyset page, and more computers without one than a chunk.
        let mut hosts: Vec<String> = (0..510).map(|i| format!("pc-{i:04}")).collect();
        // Letters past ASCII in lower case only: an agent's name with capitals past ASCII is not
        // joined to its batch on SQLite yet (the "hosts" work of issue 20).
        hosts.extend(["=HYPERLINK(\"http://x\")".into(), "ødegård-pc".into()]);
        // A fleet enrolls from many addresses (one address may enroll 20 at once): 20 agents
        // from each of 127.0.0.2, 127.0.0.3, …
        let pem = std::fs::read(dir.path().join("data/agent-tls/cert.pem")).unwrap();
        for (n, chunk) in hosts.chunks(20).enumerate() {
            let from = std::net::IpAddr::from([127, 0, 0, 2 + n as u8]);
            let agent = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
                .local_address(from)
                .build()
                .unwrap();
            for host in chunk {
                let r = agent
                    .post(format!("{}/agent/v1/enroll", h.agent_url))
                    .json(&json!({"protocol": 1, "psk": psk, "profiles": [],
                        "device": {"device_id": format!("id-{host}"), "hostname": host, "os": "linux", "agent_version": "0.1.0"}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{backend} {host} from {from}");
            }
        }
        let mut waiting: Vec<String> = (1..=300).map(|i| format!("contoso-lt-{i:05}")).collect();
        waiting.push(hostile_pc.into());
        let all: Vec<&str> = hosts.iter().chain(&waiting).map(String::as_str).collect();
        review_batch(
            &h,
            "Wave",
            json!({"available_from": "2031-02-01T08:00", "enforced_after": "2031-03-01T18:00", "time_zone": "Europe/London"}),
            &all,
        )
        .await;
        let token = h.token.clone();
        let agents_of = |v: &Value, field: &str| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|a| a[field].to_string().trim_matches('"').to_string())
                .collect()
        };

        // Every computer: the agents in id order, then those without one as the dashboard names
        // them; every row with the batch's times in its zone.
        let (st, total, rows) = csv_as(&h, &token, "/batches/Wave/computers/export").await;
        assert_eq!(st, 200, "{backend}: {rows:?}");
        let (_, p) = h
            .api(M::GET, "/batches/Wave/progress?limit=10000", None)
            .await;
        assert_eq!(total, p["computers"].as_i64().unwrap(), "{backend}: {p}");
        assert_eq!(rows.len() as i64, total, "{backend}");
        assert_eq!(total, 813, "{backend}");
        let (_, listed) = h.api(M::GET, "/agents?batch=Wave&limit=10000", None).await;
        let ids: Vec<String> = rows[..512].iter().map(|r| r[2].clone()).collect();
        assert_eq!(
            ids,
            agents_of(&listed, "id"),
            "{backend}: the agents in id order"
        );
        let named: Vec<String> = rows[512..].iter().map(|r| r[0].clone()).collect();
        let shown: Vec<String> = p["no_agent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let c = c.as_str().unwrap();
                if c.starts_with('+') {
                    format!("'{c}")
                } else {
                    c.to_string()
                }
            })
            .collect();
        assert_eq!(
            named, shown,
            "{backend}: those without an agent, as the dashboard names them"
        );
        assert_eq!(named.len(), 301, "{backend}");
        assert!(
            rows[512..]
                .iter()
                .all(|r| r[4] == "no agent yet" && r[2].is_empty()),
            "{backend}"
        );
        assert!(
            rows.iter().all(|r| r[10] == "Wave"
                && r[11] == "2031-02-01 08:00:00 Europe/London"
                && r[12] == "2031-03-01 18:00:00 Europe/London"),
            "{backend}: {:?}",
            rows[0]
        );
        // As a spreadsheet reads them: names as typed; formulas behind a `'`.
        for (name, want) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("ødegård-pc", "ødegård-pc"),
            (hostile_pc, "'+Lab, \"Ødegård\" PC"),
        ] {
            assert!(
                rows.iter().any(|r| r[0] == want),
                "{backend}: {name} written as {want}"
            );
        }
        for r in &rows {
            for c in r {
                assert!(
                    !c.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{backend}: a cell a spreadsheet runs: {c:?}"
                );
            }
        }

        // Sorted by host name, descending: the agents in the list's order, then the rest.
        let (_, _, rows) = csv_as(
            &h,
            &token,
            "/batches/Wave/computers/export?sort=hostname&order=desc",
        )
        .await;
        let (_, listed) = h
            .api(
                M::GET,
                "/agents?batch=Wave&sort=hostname&order=desc&limit=10000",
                None,
            )
            .await;
        let ids: Vec<String> = rows[..512].iter().map(|r| r[2].clone()).collect();
        assert_eq!(
            ids,
            agents_of(&listed, "id"),
            "{backend}: sorted by host name"
        );
        assert_eq!(rows.len(), 813, "{backend}");

        // The dashboard's state filter: the computers without an agent, or the agents in a state.
        let (_, total, rows) = csv_as(
            &h,
            &token,
            "/batches/Wave/computers/export?state=no%20agent%20yet",
        )
        .await;
        assert_eq!((total, rows.len()), (301, 301), "{backend}");
        let (_, total, rows) =
            csv_as(&h, &token, "/batches/Wave/computers/export?state=enrolled").await;
        assert_eq!((total, rows.len()), (512, 512), "{backend}");
        assert!(rows.iter().all(|r| r[4] == "enrolled"), "{backend}");

        // A viewer reads it; a tenant admin does not.
        let (st, v) = h
            .api(
                M::POST,
                "/operators",
                Some(json!({"name": "vera", "viewer": true})),
            )
            .await;
        assert_eq!(st, 201, "{backend}: {v}");
        let (st, total, _) = csv_as(
            &h,
            v["token"].as_str().unwrap(),
            "/batches/Wave/computers/export",
        )
        .await;
        assert_eq!((st, total), (200, 813), "{backend}: a viewer");
        let (st, v) = h
            .api(
                M::PUT,
                "/tenants/contoso",
                Some(json!({"id": "contoso", "name": "Contoso", "domains": ["contoso.test"], "directories": ["contoso"]})),
            )
            .await;
        assert_eq!(st, 200, "{backend}: {v}");
        let (st, v) = h
            .api(
                M::POST,
                "/operators",
                Some(json!({"name": "ann", "tenant": "contoso"})),
            )
            .await;
        assert_eq!(st, 201, "{backend}: {v}");
        let (st, _, body) = csv_as(
            &h,
            v["token"].as_str().unwrap(),
            "/batches/Wave/computers/export",
        )
        .await;
        assert_eq!(st, 403, "{backend}: a tenant admin: {body:?}");

        // Bad parameters: a 400 naming the parameter; an unknown batch: 404.
        for (q, param) in [
            ("sort=os", "sort"),
            ("order=x", "order"),
            ("state=%00", "state"),
        ] {
            let (st, v) = h
                .api(M::GET, &format!("/batches/Wave/computers/export?{q}"), None)
                .await;
            assert_eq!(st, 400, "{backend} {q}: {v}");
            assert!(
                v["error"].as_str().unwrap().contains(&format!("`{param}`")),
                "{backend} {q}: {v}"
            );
        }
        let (st, v) = h.api(M::GET, "/batches/nope/computers/export", None).await;
        assert_eq!(st, 404, "{backend}: {v}");
        h._server.stop().await.unwrap();
    }
}

// Catches: the overview's and the metrics' devices by state losing an agent whose computer was
// typed into the batch in other case ("pc-0101" for PC-0101, "ÅSA-PC" for åsa-pc), counting an
// agent of no batch, or a computer without an agent in a state; the states joined with this
// server's memberships (`Snapshot::states_by_batch`) against every live agent's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_count_their_devices_by_state_whatever_the_case() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    use reqwest::Method as M;
    let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "wave"}))).await;
    let psk = k["key"].as_str().unwrap().to_string();
    for host in ["PC-0101", "åsa-pc", "PC-OUTSIDE"] {
        let (s, e) = h.enroll(&psk, host, json!([])).await;
        assert_eq!(s, 200, "{host}: {e}");
    }
    let never = never_enrolled(&h).await;
    due_batch(&h, &["pc-0101", "ÅSA-PC", &never]).await;
    let (s, list) = h
        .api(M::GET, "/batches?computers=false&states=true", None)
        .await;
    assert_eq!(s, 200, "{list}");
    let now = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "Now")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(now["computer_count"], 3, "{now}");
    assert_eq!(
        now["states"],
        json!({"enrolled": 2, "no agent yet": 1}),
        "{now}"
    );
    let metrics = h
        .admin
        .get(format!("{}/metrics", h.url))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("ferry_batch_devices{"))
        .collect();
    assert_eq!(
        lines,
        ["ferry_batch_devices{batch=\"Now\",state=\"enrolled\"} 2"],
        "{metrics}"
    );
}

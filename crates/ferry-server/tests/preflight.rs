//! The tenant pre-flight against ferry-graph-sim: a file source (Contoso) matched to a simulated
//! Entra tenant (Fabrikam) by employeeId, three enrolled devices in a batch whose runbook joins
//! Entra ID and enrols in Intune. Each restrictive setting of the tenant gives its finding naming
//! the devices and users it holds back and the fix; a held-back device is told why at check-in;
//! a storm of check-ins reads the cache, never Graph.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_core::DirObject;
use ferry_core::ObjectKind;
use ferry_core::snapshot::render_json;
use ferry_graph_sim::{GraphSim, JoinScope, MdmScope, SimOptions, TenantPolicy, sim_guid};
use ferry_server::settings::Settings;
use ferry_server::{AgentEndpoint, Server, ServerOptions};
use reqwest::Method as M;
use serde_json::{Value, json};

struct H {
    sim: GraphSim,
    _server: Server,
    admin: reqwest::Client,
    agent: reqwest::Client,
    url: String,
    agent_url: String,
    token: String,
    /// host name → node key.
    keys: Vec<(String, String)>,
    psk: String,
}

/// The sim's user `i` (user{i}@fabrikam.test).
fn uid(i: u64) -> String {
    sim_guid(0xb2, 1, i)
}
fn gid(i: u64) -> String {
    sim_guid(0xb2, 2, i)
}

impl H {
    async fn api(&self, method: M, path: &str, body: Option<Value>) -> (u16, Value) {
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
    async fn agent_call(&self, path: &str, key: Option<&str>, body: Value) -> Value {
        let mut r = self
            .agent
            .post(format!("{}/agent/v1{path}", self.agent_url))
            .json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }
    async fn checkin(&self, host: &str) -> Value {
        let key = &self.keys.iter().find(|(h, _)| h == host).unwrap().1;
        self.agent_call("/checkin", Some(key), json!({"protocol": 1}))
            .await
    }
    /// Enrolls `host` with the harvested profiles of Contoso's `user{i}`.
    async fn enroll(&mut self, host: &str, users: &[u32]) {
        let profiles: Vec<Value> = users
            .iter()
            .map(|i| json!({"name": format!("user{i}"), "uid": 2000 + i, "home": format!("/home/user{i}")}))
            .collect();
        let e = self
            .agent_call(
                "/enroll",
                None,
                json!({"protocol": 1, "psk": self.psk, "profiles": profiles,
                    "device": {"device_id": format!("id-{host}"), "hostname": host, "os": "linux", "os_version": "Debian 12", "agent_version": "0.1.0"}}),
            )
            .await;
        self.keys
            .push((host.into(), e["node_key"].as_str().unwrap().to_string()));
    }
    /// The batch's pre-flight, read from Graph again.
    async fn preflight(&self) -> Value {
        let (s, r) = self
            .api(M::GET, "/batches/Cutover/preflight?refresh=true", None)
            .await;
        assert_eq!(s, 200, "{r}");
        r
    }
}

fn finding<'a>(r: &'a Value, check: &str) -> &'a Value {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {r:#}"))
}

fn blocking(r: &Value) -> Vec<String> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "blocking")
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

fn local(offset_hours: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(offset_hours))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

/// A server whose `fabrikam` directory is the simulated tenant (6 users, 2 groups), the table
/// synced, a valid bulk enrolment token, and the batch `Cutover` of PC-1 (user0), PC-2 (user1)
/// and PC-3 (user2, user3), due an hour ago.
async fn start() -> (H, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = GraphSim::start(SimOptions::default(), "127.0.0.1:0")
        .await
        .unwrap();
    sim.populate(0xb2, 6, 2, 0);
    for g in 0..2 {
        sim.set_members(&gid(g), vec![]);
    }
    let dir = tempfile::tempdir().unwrap();
    let source: Vec<DirObject> = (0..6u32)
        .map(|i| {
            let mut o = DirObject::new(ObjectKind::User, format!("c-{i}"), format!("user{i}"));
            o.upn = Some(format!("user{i}@contoso.test"));
            o.uid_number = Some(2000 + i);
            o.attrs = vec![("employeeId".into(), format!("E{i:07}"))];
            o
        })
        .collect();
    std::fs::write(dir.path().join("contoso.json"), render_json(&source)).unwrap();
    let o = sim.options();
    std::fs::write(
        dir.path().join("ferry.toml"),
        format!(
            "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n\
             [[directory]]\nname = \"fabrikam\"\nkind = \"graph\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nobject_types = [\"user\"]\nlogin_url = \"{}\"\ngraph_url = \"{}\"\n\n\
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\nobject_types = [\"user\"]\n\
             [[sync_profile.match]]\nsource_attribute = \"employeeId\"\ntarget_attribute = \"employeeId\"\n",
            o.tenant,
            o.client_id,
            o.client_secret,
            sim.url(),
            sim.url()
        ),
    )
    .unwrap();
    let settings = Settings::load(&dir.path().join("ferry.toml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(
        ServerOptions {
            settings,
            data_dir: dir.path().join("data"),
            database_url: None,
            admin_token: None,
            secret_key: None,
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
    let pem = std::fs::read(dir.path().join("data/agent-tls/cert.pem")).unwrap();
    let mut h = H {
        url: format!("http://{}", server.addr),
        agent_url: format!("https://{}", server.agent_addr.unwrap()),
        token: server.admin_token.clone(),
        _server: server,
        admin: reqwest::Client::new(),
        agent: reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap(),
        sim,
        keys: Vec::new(),
        psk: String::new(),
    };
    let (s, v) = h.api(M::POST, "/profiles/users/run?wait=true", None).await;
    assert_eq!(s, 202, "{v}");
    let (_, t) = h
        .api(M::GET, "/translation?profile=users&limit=10", None)
        .await;
    assert_eq!(t["entries"].as_array().unwrap().len(), 6, "{t}");
    use base64::Engine as _;
    let day = |d: i64| {
        (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * d))
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string()
    };
    let (s, v) = h
        .api(
            M::POST,
            "/directories/fabrikam/enrolment-tokens",
            Some(
                json!({"kind": "ppkg", "package_upn": "package_1@fabrikam.test",
                "created": day(-10), "expires": day(100),
                "content_base64": base64::engine::general_purpose::STANDARD.encode(b"ppkg")}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, k) = h.api(M::POST, "/psks", Some(json!({"name": "k"}))).await;
    h.psk = k["key"].as_str().unwrap().to_string();
    for (host, users) in [("PC-1", &[0][..]), ("PC-2", &[1]), ("PC-3", &[2, 3])] {
        h.enroll(host, users).await;
    }
    let (s, v) = h
        .api(
            M::PUT,
            "/runbooks/Join",
            Some(json!({
        "name": "Join", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
        "device_state": {"remove_from": "ad", "join": "entra-id", "enrol_in_intune": true}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h.api(M::PUT, "/batches/Cutover", Some(json!({"name": "Cutover", "source_directory": "contoso",
        "target_directory": "fabrikam", "runbooks": ["Join"], "enforced_after": local(-1), "time_zone": "UTC"}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Cutover/computers",
            Some(json!({"add": ["PC-1", "PC-2", "PC-3"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    (h, dir)
}

/// Catches: a check that blocks a tenant allowing everything, a check left out of the report,
/// and the directory's own (tenant-wide) pre-flight disagreeing with the batch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permissive_tenant_passes() {
    let (h, _dir) = start().await;
    let r = h.preflight().await;
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["directory"], "fabrikam");
    assert!(r["checked_at"].as_i64().unwrap() > 0);
    for c in [
        "entra-join-allowed",
        "entra-join-mfa",
        "entra-device-quota",
        "intune-mdm-scope",
        "intune-windows-enrolment",
        "intune-device-limit",
        "licence-intune",
        "licence-units",
        "bulk-enrolment-token",
    ] {
        assert_eq!(finding(&r, c)["severity"], "ok", "{c}: {r:#}");
    }
    let (s, d) = h.api(M::GET, "/directories/fabrikam/preflight", None).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["ok"], true, "{d:#}");
    let (s, e) = h.api(M::GET, "/directories/contoso/preflight", None).await;
    assert_eq!(s, 400, "a file directory has no tenant: {e}");
    let c = h.checkin("PC-1").await;
    assert!(c["migration"].is_object(), "{c}");
}

/// Catches: a restrictive tenant setting that ferry does not see, a finding that names the wrong
/// devices or users, or one without a fix. Each knob of the simulator in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_restrictive_setting_names_the_devices_users_and_fix() {
    let (h, _dir) = start().await;
    let all = json!([]);
    // (knob, check, devices named (empty: all devices), a user named, words of the fix)
    type Case = (
        TenantPolicy,
        &'static str,
        Value,
        Option<&'static str>,
        &'static str,
    );
    h.sim.set_members(&gid(0), vec![uid(0)]);
    h.sim.set_members(&gid(1), vec![uid(0), uid(1)]);
    h.sim.give_devices(&uid(1), 1);
    let cases: Vec<Case> = vec![
        (
            TenantPolicy {
                allowed_to_join: JoinScope::None,
                ..Default::default()
            },
            "entra-join-allowed",
            all.clone(),
            None,
            "Users may join devices",
        ),
        (
            TenantPolicy {
                allowed_to_join: JoinScope::Selected {
                    users: vec![],
                    groups: vec![gid(0)],
                },
                ..Default::default()
            },
            "entra-join-allowed",
            json!(["PC-2", "PC-3"]),
            Some("user1@fabrikam.test"),
            "Selected",
        ),
        (
            TenantPolicy {
                mfa_to_join: true,
                ..Default::default()
            },
            "entra-join-mfa",
            all.clone(),
            None,
            "Require multifactor authentication",
        ),
        (
            TenantPolicy {
                user_device_quota: 1,
                ..Default::default()
            },
            "entra-device-quota",
            json!(["PC-2"]),
            Some("user1@fabrikam.test"),
            "Maximum number of devices per user",
        ),
        (
            TenantPolicy {
                mdm_scope: MdmScope::None,
                ..Default::default()
            },
            "intune-mdm-scope",
            all.clone(),
            None,
            "MDM user scope",
        ),
        (
            TenantPolicy {
                mdm_scope: MdmScope::Selected(vec![gid(1)]),
                ..Default::default()
            },
            "intune-mdm-scope",
            json!(["PC-3"]),
            Some("user3@fabrikam.test"),
            "MDM user scope",
        ),
        (
            TenantPolicy {
                windows_enrolment_blocked: true,
                ..Default::default()
            },
            "intune-windows-enrolment",
            all.clone(),
            None,
            "Device platform restriction",
        ),
        (
            TenantPolicy {
                enrolment_limit: 1,
                ..Default::default()
            },
            "intune-device-limit",
            json!(["PC-2"]),
            Some("user1@fabrikam.test"),
            "Device limit restriction",
        ),
        (
            TenantPolicy {
                unlicensed: vec![uid(2)],
                ..Default::default()
            },
            "licence-intune",
            json!(["PC-3"]),
            Some("user2@fabrikam.test"),
            "Billing › Licenses",
        ),
        (
            TenantPolicy {
                sku_has_intune: false,
                ..Default::default()
            },
            "licence-intune",
            all.clone(),
            None,
            "includes Intune",
        ),
        (
            // 4 of 6 users licensed and 4 units bought: none free for the 2 without.
            TenantPolicy {
                unlicensed: vec![uid(2), uid(3)],
                prepaid_units: Some(4),
                ..Default::default()
            },
            "licence-units",
            json!(["PC-3"]),
            Some("user3@fabrikam.test"),
            "buy at least 2",
        ),
        (
            TenantPolicy {
                denied: vec!["Policy.Read.DeviceConfiguration".into()],
                ..Default::default()
            },
            "graph-permission:GET /policies/deviceRegistrationPolicy",
            all.clone(),
            None,
            "Policy.Read.DeviceConfiguration",
        ),
        (
            TenantPolicy {
                denied: vec!["DeviceManagementServiceConfig.Read.All".into()],
                ..Default::default()
            },
            "graph-permission:GET /deviceManagement/deviceEnrollmentConfigurations",
            all.clone(),
            None,
            "DeviceManagementServiceConfig.Read.All",
        ),
        (
            TenantPolicy {
                denied: vec!["Organization.Read.All".into()],
                ..Default::default()
            },
            "graph-permission:GET /subscribedSkus",
            all.clone(),
            None,
            "Organization.Read.All",
        ),
        (
            TenantPolicy {
                denied: vec!["User.Read.All".into()],
                ..Default::default()
            },
            "graph-permission:GET /users/{id} (assignedLicenses, ownedDevices)",
            all.clone(),
            None,
            "User.Read.All",
        ),
    ];
    for (policy, check, devices, user, fix) in cases {
        let label = format!("{check} with {policy:?}");
        h.sim.set_policy(policy);
        let r = h.preflight().await;
        assert_eq!(r["ok"], false, "{label}: {r:#}");
        let f = finding(&r, check);
        assert_eq!(f["severity"], "blocking", "{label}: {f:#}");
        if devices == all {
            assert_eq!(f["all_devices"], true, "{label}: {f:#}");
        } else {
            assert_eq!(f["devices"], devices, "{label}: {f:#}");
            for d in devices.as_array().unwrap() {
                assert!(
                    f["message"].as_str().unwrap().contains(d.as_str().unwrap()),
                    "{label}: the message names the device: {f:#}"
                );
            }
        }
        if let Some(u) = user {
            assert!(
                f["users"].as_array().unwrap().iter().any(|x| x == u),
                "{label}: {f:#}"
            );
            assert!(f["message"].as_str().unwrap().contains(u), "{label}: {f:#}");
        }
        assert!(
            f["fix"].as_str().unwrap_or_default().contains(fix),
            "{label}: the fix says `{fix}`: {f:#}"
        );
    }
    // The MDM user scope has no application permission in Graph: refused, it is a warning to
    // confirm by hand, not a block.
    h.sim.set_policy(TenantPolicy {
        denied: vec!["Policy.Read.All".into()],
        ..Default::default()
    });
    let r = h.preflight().await;
    assert_eq!(r["ok"], true, "{r:#}");
    let f = finding(
        &r,
        "graph-permission:GET /beta/policies/mobileDeviceManagementPolicies",
    );
    assert_eq!(f["severity"], "warning", "{f:#}");
    assert!(
        f["fix"].as_str().unwrap().contains("MDM user scope"),
        "{f:#}"
    );
}

/// Catches: a due device let through while the tenant would refuse it (or a device held back
/// for another device's user), a block that outlives the fix, and a check-in storm that calls
/// Graph instead of reading the cached result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_of_a_blocked_batch_is_held_back_at_check_in() {
    let (mut h, _dir) = start().await;
    h.sim.set_members(&gid(0), vec![uid(0)]);
    h.sim.set_policy(TenantPolicy {
        allowed_to_join: JoinScope::Selected {
            users: vec![],
            groups: vec![gid(0)],
        },
        ..Default::default()
    });
    let r = h.preflight().await;
    assert_eq!(blocking(&r), ["entra-join-allowed"], "{r:#}");
    let c = h.checkin("PC-2").await;
    assert!(c["migration"].is_null(), "{c}");
    let why = c["blocked"].as_str().unwrap();
    assert!(
        why.contains("entra-join-allowed")
            && why.contains("PC-2")
            && why.contains("user1@fabrikam.test")
            && why.contains("Fix:"),
        "{why}"
    );
    // The device What-If says so too.
    let (_, w) = h.api(M::GET, "/batches/Cutover/whatif", None).await;
    let pc2 = w["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["computer"] == "PC-2")
        .unwrap();
    assert!(
        pc2["warnings"]
            .to_string()
            .contains("held back by the tenant pre-flight"),
        "{w}"
    );
    // 200 more check-ins of held devices: answered from the cache, no Graph request. A
    // pre-flight queued by an earlier check-in (a device the last run had not seen) may still be
    // reading Graph in the background: wait until the simulator is quiet before counting.
    for host in ["PC-2", "PC-3"] {
        h.checkin(host).await;
    }
    let mut before = h.sim.stats().graph_requests;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let now = h.sim.stats().graph_requests;
        if now == before || std::time::Instant::now() > deadline {
            break;
        }
        before = now;
    }
    for _ in 0..100 {
        for host in ["PC-2", "PC-3"] {
            let c = h.checkin(host).await;
            assert!(c["blocked"].is_string(), "{c}");
        }
    }
    assert_eq!(
        h.sim.stats().graph_requests,
        before,
        "check-ins must not read Graph"
    );
    // A device that joins the batch after the check (user1 again) is not let through unchecked.
    h.enroll("PC-4", &[1]).await;
    let (s, v) = h
        .api(
            M::POST,
            "/batches/Cutover/computers",
            Some(json!({"add": ["PC-4"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let c = h.checkin("PC-4").await;
    assert!(c["migration"].is_null() && c["blocked"].is_string(), "{c}");
    let r = h.preflight().await;
    assert_eq!(
        finding(&r, "entra-join-allowed")["devices"],
        json!(["PC-2", "PC-3", "PC-4"])
    );
    let c = h.checkin("PC-4").await;
    assert!(
        c["blocked"]
            .as_str()
            .unwrap()
            .contains("entra-join-allowed"),
        "{c}"
    );
    // The device whose user may join is not held back by the others'.
    let c = h.checkin("PC-1").await;
    assert!(c["migration"].is_object(), "{c}");
    // Fixed in the tenant and checked again: the device gets its migration.
    h.sim.set_policy(TenantPolicy::default());
    assert_eq!(h.preflight().await["ok"], true);
    let c = h.checkin("PC-2").await;
    assert!(c["migration"].is_object(), "{c}");
    assert!(c["migration"]["enrolment_token"].is_object(), "{c}");
}

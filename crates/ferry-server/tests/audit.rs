//! The audit trail covers every operator act: a table over every mutating operation of the
//! committed OpenAPI document (`docs/openapi.json`), each row a request that succeeds and the
//! audit lines it must produce — exactly those, each naming the operator, its address and the
//! request's id. A mutating route without a row fails the test, so a new route cannot land
//! unaudited. The rows run in order against one real server (SQLite, agent endpoint on TLS), the
//! earlier rows making what the later ones act on. Then: no secret the run handled (keys, tokens,
//! passwords, client secrets, an enrolment token's content) is in any line; the file sink
//! (`[server] audit_log`) holds the same lines as the store, created 0600; `GET /audit` pages an
//! export completely (`since`, `after`) and shows a tenant admin only its tenant's lines.
//!
//! Sign-in and sign-out are acts (they make and end sessions); a failed sign-in is a line too,
//! by `address:IP`. The agent endpoint's routes (device check-ins) are not operator acts and are
//! not in the document.

#![allow(clippy::unwrap_used)]

use ferry_core::ObjectKind;
use ferry_core::model::DirObject;
use ferry_core::snapshot::render_json;
use ferry_demo as sample;
use ferry_server::settings::Settings;
use ferry_server::{AgentEndpoint, Server, ServerOptions};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn user(id: &str, upn: &str) -> DirObject {
    DirObject {
        kind: ObjectKind::User,
        id: id.into(),
        dn: None,
        name: upn.into(),
        upn: Some(upn.into()),
        mail: Some(upn.into()),
        sid: None,
        uid_number: None,
        gid_number: None,
        members: vec![],
        attrs: vec![("assignedLicenses".into(), "E3".into())],
    }
}

/// A local time `hours` from now, as batches take it.
fn local(hours: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

/// The mutating operations of the committed document: (METHOD, path).
fn mutating_operations() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["post", "put", "patch", "delete"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// Whether a concrete path is an instance of a document path (`{x}` matches one segment).
fn instance_of(path: &str, template: &str) -> bool {
    let path = path.split('?').next().unwrap();
    let (p, t): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), template.split('/').collect());
    p.len() == t.len()
        && p.iter()
            .zip(&t)
            .all(|(a, b)| (b.starts_with('{') && !a.is_empty()) || a == b)
}

/// Who sends a row's request: the name its lines must carry, and the token (none: sign-in).
#[derive(Clone)]
struct Who {
    name: String,
    token: Option<String>,
}

enum Body {
    None,
    Json(Value),
    Csv(String),
}

struct Rig {
    http: reqwest::Client,
    url: String,
    admin: String,
    operations: BTreeSet<(String, String)>,
    covered: BTreeSet<(String, String)>,
    rows: usize,
}

impl Rig {
    async fn send(
        &self,
        method: &Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        request_id: Option<&str>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(id) = request_id {
            r = r.header("x-request-id", id);
        }
        r = match body {
            Body::None => r,
            Body::Json(v) => r.json(&v),
            Body::Csv(t) => r.header("content-type", "text/csv").body(t),
        };
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        let t = resp.text().await.unwrap();
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn admin_get(&self, path: &str) -> Value {
        let (s, v) = self
            .send(&Method::GET, path, Some(&self.admin), Body::None, None)
            .await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// The newest line's id (0: none yet).
    async fn last_id(&self) -> i64 {
        self.admin_get("/audit?limit=1").await[0]["id"]
            .as_i64()
            .unwrap_or(0)
    }

    /// One row of the table: `op` is the document's (METHOD, path) the request is an instance
    /// of; the request must answer `status` and record exactly `actions`, in that order, each by
    /// `who` from 127.0.0.1 with the row's request id. Returns the answer and the lines.
    async fn row(
        &mut self,
        op: (&str, &str),
        path: &str,
        who: &Who,
        body: Body,
        status: u16,
        actions: &[&str],
    ) -> (Value, Vec<Value>) {
        let key = (op.0.to_string(), op.1.to_string());
        assert!(
            self.operations.contains(&key),
            "{op:?} is not a mutating operation of docs/openapi.json"
        );
        assert!(
            instance_of(path, op.1),
            "{path} is not an instance of {op:?}"
        );
        self.covered.insert(key);
        self.rows += 1;
        let request_id = format!("audit-row-{}", self.rows);
        let before = self.last_id().await;
        let method = Method::from_bytes(op.0.as_bytes()).unwrap();
        let (s, v) = self
            .send(&method, path, who.token.as_deref(), body, Some(&request_id))
            .await;
        assert_eq!(s, status, "{} {path}: {v}", op.0);
        let lines = self
            .admin_get(&format!("/audit?after={before}&limit=10000"))
            .await
            .as_array()
            .unwrap()
            .clone();
        let got: Vec<&str> = lines
            .iter()
            .map(|l| l["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            got, actions,
            "{} {path}: the lines it recorded: {lines:#?}",
            op.0
        );
        for l in &lines {
            assert_eq!(
                (
                    l["actor"].as_str(),
                    l["address"].as_str(),
                    l["request_id"].as_str()
                ),
                (
                    Some(who.name.as_str()),
                    Some("127.0.0.1"),
                    Some(request_id.as_str())
                ),
                "{} {path}: who, from where, in which request: {l}",
                op.0
            );
        }
        (v, lines)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_route_is_audited_with_who_where_and_which_request() {
    use Body::{Csv, Json as J};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("contoso.json"),
        render_json(&[
            user("c1", "ann@contoso.test"),
            user("c2", "bob@contoso.test"),
        ]),
    )
    .unwrap();
    std::fs::write(
        d.join("fabrikam.json"),
        render_json(&[
            user("f1", "ann@fabrikam.test"),
            user("f2", "bob@fabrikam.test"),
        ]),
    )
    .unwrap();
    let entra_secret = "entra-client-secret-3f9a1c";
    std::fs::write(
        d.join("ferry.toml"),
        format!(
            "[server]\naudit_log = \"log/audit.jsonl\"\n\n\
             [[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n\
             [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
             [[directory]]\nname = \"fabrikam-entra\"\nkind = \"graph\"\ntenant_id = \"fabrikam.onmicrosoft.com\"\nclient_id = \"c\"\nclient_secret = \"{entra_secret}\"\ngraph_url = \"http://127.0.0.1:9\"\nlogin_url = \"http://127.0.0.1:9\"\ntimeout = \"2s\"\n\n\
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{}",
            sample::QUICKSTART_RULES
        ),
    )
    .unwrap();
    std::fs::create_dir(d.join("log")).unwrap();
    let server = Server::start(
        ServerOptions {
            settings: Settings::load(&d.join("ferry.toml")).unwrap(),
            data_dir: d.join("data"),
            database_url: None,
            admin_token: None,
            secret_key: None,
            scheduler: false,
            agent: Some(AgentEndpoint {
                listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
                cert: None,
                names: vec![],
                public_url: None,
            }),
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let pem = std::fs::read(d.join("data/agent-tls/cert.pem")).unwrap();
    let agent = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let agent_url = format!("https://{}/agent/v1", server.agent_addr.unwrap());
    let mut r = Rig {
        http: reqwest::Client::new(),
        url: format!("http://{}", server.addr),
        admin: server.admin_token.clone(),
        operations: mutating_operations(),
        covered: BTreeSet::new(),
        rows: 0,
    };
    let admin = Who {
        name: "admin".into(),
        token: Some(r.admin.clone()),
    };
    // Every secret the run handles; none may reach a line.
    let mut secrets: Vec<String> = vec![entra_secret.into(), r.admin.clone()];
    let token = |v: &Value| v["token"].as_str().unwrap().to_string();

    // ---- Sync: a cycle, its approval, overrides.
    r.row(
        ("POST", "/profiles/{name}/run"),
        "/profiles/users/run?wait=true",
        &admin,
        Body::None,
        202,
        &["sync.run"],
    )
    .await;
    let (_, l) = r
        .row(
            ("POST", "/profiles/{name}/approve"),
            "/profiles/users/approve",
            &admin,
            Body::None,
            200,
            &["sync.approve"],
        )
        .await;
    assert!(
        l[0]["detail"].as_str().unwrap().starts_with("What-If "),
        "{l:?}"
    );
    r.row(
        ("POST", "/profiles/{name}/overrides"),
        "/profiles/users/overrides",
        &admin,
        J(json!({"source": "bob@contoso.test", "exclude": true, "reason": "left the company"})),
        201,
        &["override.exclude"],
    )
    .await;
    r.row(
        ("POST", "/profiles/{name}/overrides/import"),
        "/profiles/users/overrides/import",
        &admin,
        Csv("source,target,reason\nann@contoso.test,ann@fabrikam.test,checked\n".into()),
        200,
        &["override.import", "override.pin"],
    )
    .await;
    r.row(
        ("DELETE", "/profiles/{name}/overrides/{source}"),
        "/profiles/users/overrides/bob@contoso.test",
        &admin,
        Body::None,
        204,
        &["override.remove"],
    )
    .await;

    // ---- Directories and profiles of the console; a directory test.
    let console_secret = "console-client-secret-77e0b2";
    secrets.push(console_secret.into());
    let (_, l) = r
        .row(
            ("PUT", "/directories/{name}"),
            "/directories/console-entra",
            &admin,
            J(json!({"name": "console-entra", "kind": "graph", "tenant_id": "contoso.onmicrosoft.com",
                "client_id": "c", "client_secret": console_secret, "graph_url": "http://127.0.0.1:9",
                "login_url": "http://127.0.0.1:9", "timeout": "2s"})),
            201,
            &["directory.add"],
        )
        .await;
    assert!(
        l[0]["detail"].as_str().unwrap().contains("credential set"),
        "{l:?}"
    );
    r.row(
        ("PUT", "/profiles/{name}"),
        "/profiles/console-profile",
        &admin,
        J(json!({"name": "console-profile", "source": "contoso", "target": "fabrikam", "mode": "match-only"})),
        201,
        &["profile.add"],
    )
    .await;
    r.row(
        ("DELETE", "/profiles/{name}"),
        "/profiles/console-profile",
        &admin,
        Body::None,
        204,
        &["profile.remove"],
    )
    .await;
    r.row(
        ("DELETE", "/directories/{name}"),
        "/directories/console-entra",
        &admin,
        Body::None,
        204,
        &["directory.remove"],
    )
    .await;
    let (_, l) = r
        .row(
            ("POST", "/directories/{name}/test"),
            "/directories/contoso/test",
            &admin,
            Body::None,
            200,
            &["directory.test"],
        )
        .await;
    assert_eq!(l[0]["detail"], "ok");

    // ---- Bulk enrolment tokens.
    use base64::Engine as _;
    let content = "ppkg-content-that-is-secret-5d21";
    let content_b64 = base64::engine::general_purpose::STANDARD.encode(content);
    secrets.extend([content.to_string(), content_b64.clone()]);
    let (t, _) = r
        .row(
            ("POST", "/directories/{name}/enrolment-tokens"),
            "/directories/fabrikam-entra/enrolment-tokens",
            &admin,
            J(
                json!({"kind": "ppkg", "package_upn": "package_1@fabrikam.onmicrosoft.com",
                "expires": local(24 * 90)[..10].to_string(), "content_base64": content_b64}),
            ),
            201,
            &["enrolment-token.upload"],
        )
        .await;
    r.row(
        ("POST", "/enrolment-tokens/{id}/revoke"),
        &format!("/enrolment-tokens/{}/revoke", t["id"]),
        &admin,
        Body::None,
        200,
        &["enrolment-token.revoke"],
    )
    .await;

    // ---- Operators and sessions.
    let sam_password = "sam's long password 1";
    let rotated_password = "sam's rotated password 2";
    secrets.extend([sam_password.to_string(), rotated_password.to_string()]);
    let (v, _) = r
        .row(
            ("POST", "/operators"),
            "/operators",
            &admin,
            J(json!({"name": "sam", "password": sam_password})),
            201,
            &["operator.create"],
        )
        .await;
    secrets.push(token(&v));
    let (v, _) = r
        .row(
            ("POST", "/operators/{name}/rotate"),
            "/operators/sam/rotate",
            &admin,
            J(json!({"password": rotated_password})),
            200,
            &["operator.rotate"],
        )
        .await;
    secrets.push(token(&v));
    let nobody = Who {
        name: "sam".into(),
        token: None,
    };
    let (v, _) = r
        .row(
            ("POST", "/sessions"),
            "/sessions",
            &nobody,
            J(json!({"name": "sam", "password": rotated_password})),
            201,
            &["session.sign-in"],
        )
        .await;
    let sam = Who {
        name: "sam".into(),
        token: Some(token(&v)),
    };
    secrets.push(token(&v));
    // A failed sign-in is a line too, by its address, without the password tried.
    let wrong = "a wrong password tried 3";
    secrets.push(wrong.into());
    let (_, l) = r
        .row(
            ("POST", "/sessions"),
            "/sessions",
            &Who {
                name: "address:127.0.0.1".into(),
                token: None,
            },
            J(json!({"name": "sam", "password": wrong})),
            401,
            &["session.sign-in.failed"],
        )
        .await;
    assert_eq!(l[0]["subject"], "sam");
    r.row(
        ("DELETE", "/sessions"),
        "/sessions",
        &sam,
        Body::None,
        204,
        &["session.sign-out"],
    )
    .await;
    r.row(
        ("DELETE", "/operators/{name}"),
        "/operators/sam",
        &admin,
        Body::None,
        204,
        &["operator.remove"],
    )
    .await;

    // ---- Devices: keys, runbooks, batches, a halt and its resume, held enrollments.
    let (v, _) = r
        .row(
            ("POST", "/psks"),
            "/psks",
            &admin,
            J(json!({"name": "wave-1"})),
            201,
            &["psk.create"],
        )
        .await;
    let psk = v["key"].as_str().unwrap().to_string();
    secrets.push(psk.clone());
    let (v, _) = r
        .row(
            ("POST", "/psks"),
            "/psks",
            &admin,
            J(json!({"name": "spare", "uses": 3})),
            201,
            &["psk.create"],
        )
        .await;
    secrets.push(v["key"].as_str().unwrap().to_string());
    r.row(
        ("POST", "/psks/{name}/retire"),
        "/psks/spare/retire",
        &admin,
        Body::None,
        200,
        &["psk.retire"],
    )
    .await;
    let enroll = |device_id: &str, host: &str| {
        let (agent, agent_url, psk) = (agent.clone(), agent_url.clone(), psk.clone());
        let body = json!({"protocol": 1, "psk": psk, "profiles": [],
            "device": {"device_id": device_id, "hostname": host, "os": "linux", "os_version": "Debian 12", "agent_version": "0.1.0"}});
        async move {
            let r = agent
                .post(format!("{agent_url}/enroll"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, pc1) = enroll("id-pc-1", "PC-1").await;
    assert_eq!(s, 200, "{pc1}");
    let node_key = pc1["node_key"].as_str().unwrap().to_string();
    secrets.push(node_key.clone());
    let runbook = |name: &str| {
        json!({"name": name, "source_directories": ["contoso"], "target_directories": ["fabrikam"],
            "permission_updates": {"mode": "add-and-remove", "paths": ["/home"]}})
    };
    r.row(
        ("PUT", "/runbooks/{name}"),
        "/runbooks/Main",
        &admin,
        J(runbook("Main")),
        200,
        &["runbook.add"],
    )
    .await;
    let (_, l) = r
        .row(
            ("PUT", "/runbooks/{name}"),
            "/runbooks/Main",
            &admin,
            J({
                let mut v = runbook("Main");
                v["permission_updates"]["paths"] = json!(["/home", "/srv"]);
                v
            }),
            200,
            &["runbook.change"],
        )
        .await;
    assert_eq!(
        l[0]["detail"], "permission_updates changed",
        "sections, not content"
    );
    r.row(
        ("PUT", "/runbooks/{name}"),
        "/runbooks/Spare",
        &admin,
        J(runbook("Spare")),
        200,
        &["runbook.add"],
    )
    .await;
    r.row(
        ("DELETE", "/runbooks/{name}"),
        "/runbooks/Spare",
        &admin,
        Body::None,
        204,
        &["runbook.remove"],
    )
    .await;
    let batch = |name: &str, enforced: &str| {
        json!({"name": name, "source_directory": "contoso", "target_directory": "fabrikam",
            "runbooks": ["Main"], "enforced_after": enforced, "time_zone": "UTC"})
    };
    let enforced = local(-1);
    r.row(
        ("PUT", "/batches/{name}"),
        "/batches/Cutover",
        &admin,
        J(batch("Cutover", &enforced)),
        200,
        &["batch.add"],
    )
    .await;
    r.row(
        ("POST", "/batches/{name}/computers"),
        "/batches/Cutover/computers",
        &admin,
        J(json!({"add": ["PC-1"]})),
        200,
        &["batch.computers"],
    )
    .await;
    // PC-1 takes its migration and fails: the batch halts itself (a line by `ferry`).
    let checkin = |state: &str| {
        let (agent, agent_url, key) = (agent.clone(), agent_url.clone(), node_key.clone());
        let body = json!({"protocol": 1, "state": state});
        async move {
            let r = agent
                .post(format!("{agent_url}/checkin"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, c) = checkin("idle").await;
    assert!(s == 200 && c["migration"].is_object(), "{c}");
    let (s, c) = checkin("failed").await;
    assert_eq!(s, 200, "{c}");
    let halt = &r.admin_get("/audit?limit=1").await[0];
    assert_eq!(
        (
            halt["action"].as_str(),
            halt["actor"].as_str(),
            &halt["address"]
        ),
        (Some("batch.halt"), Some("ferry"), &Value::Null),
        "the server's own act has no address: {halt}"
    );
    r.row(
        ("POST", "/batches/{name}/resume"),
        "/batches/Cutover/resume",
        &admin,
        Body::None,
        200,
        &["batch.resume"],
    )
    .await;
    let later = local(48);
    let (_, l) = r
        .row(
            ("PUT", "/batches/{name}"),
            "/batches/Cutover",
            &admin,
            J(batch("Cutover", &later)),
            200,
            &["batch.change"],
        )
        .await;
    // In the console's one date format, with the batch's zone, as `batch.add` says it.
    let shown = |t: &str| format!("{}:00 UTC", t.replace('T', " "));
    assert_eq!(
        l[0]["detail"],
        format!("enforced_after: {} → {}", shown(&enforced), shown(&later)),
        "before and after"
    );
    r.row(
        ("PUT", "/batches/{name}"),
        "/batches/Spare",
        &admin,
        J(batch("Spare", &later)),
        200,
        &["batch.add"],
    )
    .await;
    r.row(
        ("DELETE", "/batches/{name}"),
        "/batches/Spare",
        &admin,
        Body::None,
        204,
        &["batch.remove"],
    )
    .await;
    // Two enrollments claiming PC-1 without its node key are held for an operator.
    let mut held = Vec::new();
    for impostor in ["impostor-1", "impostor-2"] {
        let (s, v) = enroll(impostor, "pc-1").await;
        assert_eq!(s, 202, "{v}");
        held.push(v["held"]["request_id"].to_string());
    }
    r.row(
        ("POST", "/enrollment-requests/{id}/refuse"),
        &format!("/enrollment-requests/{}/refuse", held[0]),
        &admin,
        Body::None,
        200,
        &["agent.enrollment.refuse"],
    )
    .await;
    r.row(
        ("POST", "/enrollment-requests/{id}/approve"),
        &format!("/enrollment-requests/{}/approve", held[1]),
        &admin,
        Body::None,
        200,
        &["agent.enrollment.approve"],
    )
    .await;

    // ---- Tenants, their admins, environments and moves.
    for id in ["contoso", "fabrikam"] {
        r.row(
            ("PUT", "/tenants/{id}"),
            &format!("/tenants/{id}"),
            &admin,
            J(json!({"id": id, "name": id, "domains": [format!("{id}.test")], "directories": [id]})),
            200,
            &["tenant.put"],
        )
        .await;
    }
    let mut ta = Vec::new();
    for (name, tenant) in [("src", "contoso"), ("dst", "fabrikam")] {
        let (v, _) = r
            .row(
                ("POST", "/operators"),
                "/operators",
                &admin,
                J(json!({"name": name, "tenant": tenant})),
                201,
                &["operator.create"],
            )
            .await;
        secrets.push(token(&v));
        ta.push(Who {
            name: name.into(),
            token: Some(token(&v)),
        });
    }
    let (src, dst) = (ta[0].clone(), ta[1].clone());
    // Submits a move of `env` as src; its (source, target) migration ids.
    async fn submit(r: &mut Rig, src: &Who, dst: &Who, env: &str) -> (String, String) {
        r.row(
            ("PUT", "/environments/{id}"),
            &format!("/environments/{env}"),
            src,
            Body::Json(json!({
                "id": env, "tenant": "contoso", "name": env, "url": format!("https://{env}.crm.test"),
                "org_id": "0a1b2c3d-0000-4000-8000-000000000001", "type": "production",
                "components": [{"kind": "flow", "name": "Notify", "enabled": true}],
                "system_users": [{"id": "11111111-1111-4111-8111-111111111111", "email": "ann@contoso.test"}]
            })),
            200,
            &["environment.put"],
        )
        .await;
        r.row(
            ("POST", "/environments/{id}/records"),
            &format!("/environments/{env}/records"),
            src,
            Body::Json(json!([{"id": "r1", "owner": "ann@contoso.test", "created_by": "ann@contoso.test", "modified_by": "system"}])),
            200,
            &["environment.records"],
        )
        .await;
        let (v, _) = r
            .row(
                ("POST", "/environments/{id}/moves"),
                &format!("/environments/{env}/moves"),
                src,
                Body::Json(json!({"target_tenant": "fabrikam"})),
                201,
                &["env.move.submit"],
            )
            .await;
        let sid = v["migration_id"].as_str().unwrap().to_string();
        let (s, theirs) = r
            .send(
                &Method::GET,
                "/moves",
                dst.token.as_deref(),
                Body::None,
                None,
            )
            .await;
        assert_eq!(s, 200);
        let tid = theirs
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["environment"] == env)
            .unwrap()["migration_id"]
            .as_str()
            .unwrap()
            .to_string();
        (sid, tid)
    }
    let (sid, tid) = submit(&mut r, &src, &dst, "sales").await;
    r.row(
        ("POST", "/moves/{id}/approve"),
        &format!("/moves/{tid}/approve"),
        &dst,
        Body::None,
        200,
        &["env.move.approve"],
    )
    .await;
    r.row(
        ("PUT", "/environments/{id}/usermapping"),
        "/environments/sales/usermapping?file_name=usermapping.csv",
        &src,
        Csv("Source,Destination\r\nann@contoso.test,ann@fabrikam.test\r\n".into()),
        200,
        &["env.move.upload-mapping"],
    )
    .await;
    r.row(
        ("POST", "/moves/{id}/prepare"),
        &format!("/moves/{sid}/prepare"),
        &src,
        Body::None,
        202,
        &["env.move.prepare"],
    )
    .await;
    let mut settled = String::new();
    for _ in 0..500 {
        let (_, v) = r
            .send(
                &Method::GET,
                &format!("/moves/{sid}/status"),
                src.token.as_deref(),
                Body::None,
                None,
            )
            .await;
        settled = v["status"].as_str().unwrap_or_default().to_string();
        if !settled.ends_with("Running") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(settled.ends_with("Succeeded"), "{settled}");
    // Started, then completed: the hand-over's line is written in its transaction, and carries
    // the request too.
    let (_, l) = r
        .row(
            ("POST", "/moves/{id}/migrate"),
            &format!("/moves/{sid}/migrate"),
            &src,
            Body::None,
            200,
            &["env.move.migrate", "env.move.migrate"],
        )
        .await;
    assert!(
        l[1]["detail"].as_str().unwrap().starts_with("completed"),
        "{l:?}"
    );
    let (_, tid) = submit(&mut r, &src, &dst, "hr").await;
    r.row(
        ("POST", "/moves/{id}/reject"),
        &format!("/moves/{tid}/reject"),
        &dst,
        Body::None,
        200,
        &["env.move.reject"],
    )
    .await;
    let (sid, _) = submit(&mut r, &src, &dst, "legal").await;
    r.row(
        ("POST", "/moves/{id}/cancel"),
        &format!("/moves/{sid}/cancel"),
        &src,
        Body::None,
        200,
        &["env.move.cancel"],
    )
    .await;
    r.row(
        ("DELETE", "/moves/{id}"),
        &format!("/moves/{sid}"),
        &src,
        Body::None,
        204,
        &["env.move.delete"],
    )
    .await;

    // Every mutating operation of the document has a row.
    let missing: Vec<_> = r.operations.difference(&r.covered).collect();
    assert!(
        missing.is_empty(),
        "mutating routes without a row in this table (audit the act, then add its row): {missing:?}"
    );

    // No secret in any line, nor in the file.
    let trail = r.admin_get("/audit?since=0&limit=10000").await;
    let text = trail.to_string();
    let file = std::fs::read_to_string(d.join("log/audit.jsonl")).unwrap();
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "a secret in the trail: {s}");
        assert!(!file.contains(s.as_str()), "a secret in audit_log: {s}");
    }

    // The file holds the same lines as the store, in order, one JSON object a line, 0600.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(d.join("log/audit.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let from_file: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&from_file, trail.as_array().unwrap());

    // An export pages completely: `since` (RFC 3339 too), then `after` page by page.
    let all = trail.as_array().unwrap();
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = r
            .admin_get(&format!(
                "/audit?since=1970-01-01T00:00:00Z&after={after}&limit=7"
            ))
            .await;
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["id"].as_i64().unwrap();
        paged.extend(page);
    }
    assert_eq!(&paged, all);
    let (s, v) = r
        .send(
            &Method::GET,
            "/audit?since=yesterday",
            Some(&r.admin),
            Body::None,
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("since"), "{v}");
    // A tenant admin's export: its tenant's lines only.
    let (s, v) = r
        .send(
            &Method::GET,
            "/audit?since=0&limit=10000",
            src.token.as_deref(),
            Body::None,
            None,
        )
        .await;
    assert_eq!(s, 200);
    let mine = v.as_array().unwrap();
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|l| l["tenant"] == "contoso"), "{v}");
    assert_eq!(
        mine.len(),
        all.iter().filter(|l| l["tenant"] == "contoso").count()
    );
    server.stop().await.unwrap();
}

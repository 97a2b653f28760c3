//! Environment moves over real HTTP: a ferry admin registers two tenants and their admins; the
//! source admin registers an environment and submits a move; the target admin approves; the source
//! uploads usermapping.csv, prepares (per-user codes in the error file), fixes it, prepares again
//! and migrates. Both seven-day limits with the server's clock moved forward, and every refusal:
//! a tenant admin acting for the other side or another tenant, a ferry admin acting in a move.
//!
//! One test function: the clock is per process.

#![allow(clippy::unwrap_used)]

use ferry_core::ObjectKind;
use ferry_core::model::DirObject;
use ferry_core::snapshot::render_json;
use ferry_demo as sample;
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use reqwest::Method;
use serde_json::{Value, json};

const DAY: i64 = 24 * 3600 * 1000;

fn user(id: &str, upn: &str, mail: bool, licensed: bool) -> DirObject {
    DirObject {
        kind: ObjectKind::User,
        id: id.into(),
        dn: None,
        name: upn.into(),
        upn: Some(upn.into()),
        mail: mail.then(|| upn.to_string()),
        sid: None,
        uid_number: None,
        gid_number: None,
        members: vec![],
        attrs: vec![(
            "assignedLicenses".into(),
            if licensed { "E3".into() } else { String::new() },
        )],
    }
}

struct C {
    http: reqwest::Client,
    url: String,
}

impl C {
    async fn call(&self, token: &str, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(m, format!("{}/api/v1{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        let t = resp.text().await.unwrap();
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn upload(&self, token: &str, env: &str, name: &str, body: &str) -> (u16, Value) {
        let resp = self
            .http
            .put(format!(
                "{}/api/v1/environments/{env}/usermapping?file_name={name}",
                self.url
            ))
            .bearer_auth(token)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap())
    }

    /// Waits for a validation to end; returns the status line.
    async fn settled(&self, token: &str, id: &str) -> String {
        for _ in 0..200 {
            let (_, v) = self
                .call(token, Method::GET, &format!("/moves/{id}/status"), None)
                .await;
            let s = v["status"].as_str().unwrap().to_string();
            if !s.ends_with("Running") {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("validation never ended");
    }
}

/// A server on `d/ferry.toml` and `d/data` (SQLite), and a client for it.
async fn start(d: &std::path::Path) -> (Server, C) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start(
        ServerOptions {
            settings: Settings::load(&d.join("ferry.toml")).unwrap(),
            data_dir: d.join("data"),
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
    let c = C {
        http: reqwest::Client::new(),
        url: format!("http://{}", server.addr),
    };
    (server, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_from_submission_to_migration_with_every_refusal() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("contoso.json"),
        render_json(&[user("c1", "ann@contoso.test", true, true)]),
    )
    .unwrap();
    std::fs::write(
        d.join("fabrikam.json"),
        render_json(&[
            user("f1", "ann@fabrikam.test", true, true),
            user("f2", "boss@fabrikam.test", false, false),
            user("f3", "cy@fabrikam.test", false, true),
        ]),
    )
    .unwrap();
    std::fs::write(
        d.join("ferry.toml"),
        format!(
            "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n\
             [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
             [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{}",
            sample::QUICKSTART_RULES
        ),
    )
    .unwrap();
    let (server, c) = start(d).await;
    let admin = server.admin_token.clone();
    // The target directory is imported by a cycle.
    let (s, v) = c
        .call(&admin, Method::POST, "/profiles/users/run?wait=true", None)
        .await;
    assert_eq!(
        (s, v["cycle"]["status"].as_str()),
        (202, Some("succeeded")),
        "{v}"
    );

    // Tenants and their admins (ferry admin only).
    for (id, dirs) in [
        ("contoso", ["contoso"]),
        ("fabrikam", ["fabrikam"]),
        ("northwind", ["contoso"]),
    ] {
        let (s, v) = c
            .call(&admin, Method::PUT, &format!("/tenants/{id}"), Some(json!({"id": id, "name": id, "domains": [format!("{id}.test")], "directories": dirs})))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let mut tok = std::collections::HashMap::new();
    for (name, tenant) in [
        ("src", "contoso"),
        ("dst", "fabrikam"),
        ("other", "northwind"),
    ] {
        let (s, v) = c
            .call(
                &admin,
                Method::POST,
                "/operators",
                Some(json!({"name": name, "tenant": tenant})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["role"], format!("tenant-admin:{tenant}"));
        tok.insert(name, v["token"].as_str().unwrap().to_string());
    }
    let (src, dst, other) = (tok["src"].clone(), tok["dst"].clone(), tok["other"].clone());
    let (s, _) = c
        .call(&src, Method::POST, "/operators", Some(json!({"name": "x"})))
        .await;
    assert_eq!(s, 403, "a tenant admin cannot make operators");
    let (s, _) = c
        .call(
            &src,
            Method::PUT,
            "/tenants/contoso",
            Some(json!({"id": "contoso", "name": "c"})),
        )
        .await;
    assert_eq!(s, 403);
    let (_, v) = c.call(&src, Method::GET, "/tenants", None).await;
    assert_eq!(
        v.as_array().unwrap().len(),
        1,
        "a tenant admin sees its own tenant: {v}"
    );

    // The source admin registers its environment (not another tenant's).
    let env = json!({
        "id": "sales", "tenant": "contoso", "name": "Sales", "url": "https://sales.crm.test",
        "org_id": "0a1b2c3d-0000-4000-8000-000000000001", "type": "production",
        "components": [
            {"kind": "flow", "name": "Notify", "enabled": true, "connection_references": ["shared_office365"], "http_trigger_url": "https://old.test/trigger"},
            {"kind": "canvas-app", "name": "Orders"},
            {"kind": "component-library", "name": "Shared"}
        ],
        "managed": true,
        "system_users": [
            {"id": "11111111-1111-4111-8111-111111111111", "email": "ann@contoso.test"},
            {"id": "22222222-2222-4222-8222-222222222222", "email": "boss@contoso.test", "administrative": true},
            {"id": "33333333-3333-4333-8333-333333333333", "email": "app@contoso.test", "application_user": true},
            {"id": "44444444-4444-4444-8444-444444444444", "email": "gone@contoso.test"}
        ]
    });
    let (s, v) = c
        .call(&src, Method::PUT, "/environments/sales", Some(env.clone()))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut foreign = env.clone();
    foreign["tenant"] = json!("northwind");
    let (s, _) = c
        .call(&src, Method::PUT, "/environments/sales", Some(foreign))
        .await;
    assert_eq!(s, 403);
    // Records that refer to users by e-mail.
    let recs: Vec<Value> = (0..300)
        .map(|i| {
            let owner = ["ann@contoso.test", "boss@contoso.test", "gone@contoso.test"][i % 3];
            json!({"id": format!("r{i:04}"), "owner": owner, "created_by": "Ann@Contoso.test", "modified_by": "system"})
        })
        .collect();
    let (s, v) = c
        .call(
            &src,
            Method::POST,
            "/environments/sales/records",
            Some(json!(recs)),
        )
        .await;
    assert_eq!((s, v["total"].as_i64()), (200, Some(300)), "{v}");
    let (s, _) = c
        .call(
            &other,
            Method::POST,
            "/environments/sales/records",
            Some(json!([])),
        )
        .await;
    assert_eq!(s, 404);
    let (_, v) = c.call(&other, Method::GET, "/environments", None).await;
    assert_eq!(v, json!([]), "another tenant sees none of it");
    let (s, _) = c
        .call(&other, Method::GET, "/environments/sales", None)
        .await;
    assert_eq!(s, 404);

    // Submit: refused to others and for unsupported types; the component library is reported.
    let (s, v) = c
        .call(
            &admin,
            Method::POST,
            "/environments/sales/moves",
            Some(json!({"target_tenant": "fabrikam"})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, _) = c
        .call(
            &dst,
            Method::POST,
            "/environments/sales/moves",
            Some(json!({"target_tenant": "fabrikam"})),
        )
        .await;
    assert_eq!(s, 404, "the target cannot see the environment");
    let mut dev = env.clone();
    dev["id"] = json!("dev");
    dev["type"] = json!("developer");
    dev["name"] = json!("Dev");
    c.call(&src, Method::PUT, "/environments/dev", Some(dev))
        .await;
    let (s, v) = c
        .call(
            &src,
            Method::POST,
            "/environments/dev/moves",
            Some(json!({"target_tenant": "fabrikam"})),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (
            400,
            "only production and sandbox environments can move between tenants; this one is developer"
        )
    );
    // Without a Dataverse organisation there is nothing to move (issue 17: it went through).
    let mut plain = env.clone();
    plain["id"] = json!("plain");
    plain["name"] = json!("Plain");
    plain.as_object_mut().unwrap().remove("org_id");
    c.call(&src, Method::PUT, "/environments/plain", Some(plain))
        .await;
    let (s, v) = c
        .call(
            &src,
            Method::POST,
            "/environments/plain/moves",
            Some(json!({"target_tenant": "fabrikam"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().starts_with(
            "tenant-to-tenant moves support sandbox and production environments with Dataverse"
        ),
        "{v}"
    );
    let (s, v) = c
        .call(
            &src,
            Method::POST,
            "/environments/sales/moves",
            Some(json!({"target_tenant": "fabrikam"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("component-library: component library isn't supported"),
        "{v}"
    );
    let sid = v["migration_id"].as_str().unwrap().to_string();
    let (s, _) = c
        .call(
            &src,
            Method::POST,
            "/environments/sales/moves",
            Some(json!({"target_tenant": "fabrikam"})),
        )
        .await;
    assert_eq!(s, 409, "one open request per environment");

    // The target sees it under another id, and alone approves.
    let (_, v) = c.call(&dst, Method::GET, "/moves/approvals", None).await;
    let tid = v[0]["migration_id"].as_str().unwrap().to_string();
    assert_ne!(tid, sid, "each side has its own migration id");
    assert_eq!(v[0]["side"], "target");
    let (_, v) = c.call(&other, Method::GET, "/moves", None).await;
    assert_eq!(v, json!([]));
    for (who, id) in [(&src, &tid), (&src, &sid), (&admin, &tid), (&other, &tid)] {
        let (s, v) = c
            .call(who, Method::POST, &format!("/moves/{id}/approve"), None)
            .await;
        assert!(s == 403 || s == 404, "{s} {v}");
    }
    let (s, v) = c
        .call(&dst, Method::POST, &format!("/moves/{sid}/approve"), None)
        .await;
    assert_eq!(s, 404, "the source's id means nothing to the target: {v}");
    let (s, v) = c
        .call(&dst, Method::POST, &format!("/moves/{tid}/approve"), None)
        .await;
    assert_eq!((s, v["state"].as_str().unwrap()), (200, "approved"), "{v}");

    // Upload: the file rules answer at once; only the source.
    let (s, v) = c
        .upload(&src, "sales", "UserMapping.csv", "a@b.test,c@d.test\n")
        .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (
            400,
            "The User mapping file provided for Tenant To Tenant migration is invalid"
        )
    );
    let (s, v) = c
        .upload(
            &src,
            "sales",
            "usermapping.csv",
            "Source,Destination\nann@contoso.test,ann@contoso.test\n",
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (400, "Target on line '2' is same as source email ID")
    );
    let (s, _) = c
        .upload(&dst, "sales", "usermapping.csv", "a@b.test,c@d.test\n")
        .await;
    assert_eq!(s, 404);
    let bad = "Source,Destination\r\nann@contoso.test,ann@fabrikam.test\r\nboss@contoso.test,boss@fabrikam.test\r\napp@contoso.test,cy@fabrikam.test\r\nghost@contoso.test,nobody@fabrikam.test\r\n";
    let (s, v) = c.upload(&src, "sales", "usermapping.csv", bad).await;
    assert_eq!((s, v["users"].as_u64()), (200, Some(4)), "{v}");

    // Prepare: 202, then per-user codes in the error file.
    let (s, _) = c
        .call(&dst, Method::POST, &format!("/moves/{tid}/prepare"), None)
        .await;
    assert_eq!(s, 403, "only the source prepares");
    let (s, v) = c
        .call(&src, Method::POST, &format!("/moves/{sid}/prepare"), None)
        .await;
    assert_eq!((s, v["description"].as_str().unwrap()), (202, "Accepted"));
    let status = c.settled(&src, &sid).await;
    assert_eq!(
        status,
        format!(
            "Validation Failed, Errors are updated on the blob here: /api/v1/moves/{sid}/errors"
        )
    );
    let (s, v) = c
        .call(&src, Method::GET, &format!("/moves/{sid}/errors"), None)
        .await;
    assert_eq!(s, 200);
    // The target's status line names the error file under the target's own id, which it can
    // open (issue 17: it named the source's id, which the target cannot use).
    assert_eq!(
        c.settled(&dst, &tid).await,
        format!(
            "Validation Failed, Errors are updated on the blob here: /api/v1/moves/{tid}/errors"
        )
    );
    let (s, theirs) = c
        .call(&dst, Method::GET, &format!("/moves/{tid}/errors"), None)
        .await;
    assert_eq!((s, &theirs), (200, &v), "the same file, by the target's id");
    let (s, _) = c
        .call(&dst, Method::GET, &format!("/moves/{sid}/errors"), None)
        .await;
    assert_eq!(s, 404, "but not by the source's id");
    let file = v.as_str().unwrap();
    assert!(
        file.contains("3,boss@contoso.test,boss@fabrikam.test,TargetUserHasNoLicense"),
        "{file}"
    );
    assert!(
        file.contains("4,app@contoso.test,cy@fabrikam.test,ApplicationUserCannotBeMapped"),
        "{file}"
    );
    assert!(
        file.contains("5,ghost@contoso.test,nobody@fabrikam.test,SourceUserDoesNotExistInOrgDB"),
        "{file}"
    );
    let (s, _) = c
        .call(&src, Method::POST, &format!("/moves/{sid}/migrate"), None)
        .await;
    assert_eq!(s, 409, "no migration after a failed validation");

    // Fixed file: validated; the validation lasts seven days. Slowed down (every write of the
    // request waits 300 ms), it says what it is doing while it runs, and nothing once it ended.
    let good = "Source,Destination\r\nann@contoso.test,ann@fabrikam.test\r\napp@contoso.test,cy@fabrikam.test\r\n";
    c.upload(&src, "sales", "usermapping.csv", good).await;
    server.state.clock.pause_move_decisions(300);
    c.call(&src, Method::POST, &format!("/moves/{sid}/prepare"), None)
        .await;
    let mut said = Vec::new();
    for _ in 0..200 {
        let (_, v) = c
            .call(&src, Method::GET, &format!("/moves/{sid}/status"), None)
            .await;
        if !v["status"].as_str().unwrap().ends_with("Running") {
            assert!(v["progress"].is_null(), "a stale figure: {v}");
            break;
        }
        if let Some(p) = v["progress"].as_str() {
            said.push(p.to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.state.clock.pause_move_decisions(0);
    assert!(
        said.iter()
            .any(|p| p == "reading the target tenant's users"),
        "no progress while validating: {said:?}"
    );
    assert_eq!(
        c.settled(&src, &sid).await,
        "Validate Tenant To Tenant Migration: Succeeded"
    );
    server.state.clock.advance(7 * DAY);
    let (s, v) = c
        .call(&src, Method::POST, &format!("/moves/{sid}/migrate"), None)
        .await;
    assert_eq!(s, 409);
    assert!(
        v["error"].as_str().unwrap().contains("prepare again"),
        "{v}"
    );
    c.call(&src, Method::POST, &format!("/moves/{sid}/prepare"), None)
        .await;
    assert_eq!(
        c.settled(&src, &sid).await,
        "Validate Tenant To Tenant Migration: Succeeded"
    );

    // Migrate: only the source.
    let (s, _) = c
        .call(&dst, Method::POST, &format!("/moves/{tid}/migrate"), None)
        .await;
    assert_eq!(s, 403);
    // The target may not cancel or delete; another tenant does not see the move; a ferry admin
    // reads its status.
    for (m, path) in [
        (Method::POST, format!("/moves/{tid}/cancel")),
        (Method::DELETE, format!("/moves/{tid}")),
    ] {
        let (s, v) = c.call(&dst, m, &path, None).await;
        assert_eq!(s, 403, "{path}: {v}");
    }
    let (s, _) = c
        .call(&other, Method::GET, &format!("/moves/{sid}/status"), None)
        .await;
    assert_eq!(s, 404);
    let (s, v) = c
        .call(&admin, Method::GET, &format!("/moves/{tid}/status"), None)
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("Validate Tenant To Tenant Migration: Succeeded"))
    );
    let (s, _) = c
        .call(&admin, Method::POST, &format!("/moves/{sid}/cancel"), None)
        .await;
    assert_eq!(s, 403, "a ferry admin does not act in a move");

    // A failure mid-move: records and environment back as they were, the request validated.
    server.state.clock.fail_next_migrate();
    let (s, _) = c
        .call(&src, Method::POST, &format!("/moves/{sid}/migrate"), None)
        .await;
    assert_eq!(s, 500);
    let (_, st) = c
        .call(&src, Method::GET, &format!("/moves/{sid}/status"), None)
        .await;
    assert_eq!(
        st["status"],
        "Validate Tenant To Tenant Migration: Succeeded"
    );
    let (_, e) = c.call(&src, Method::GET, "/environments/sales", None).await;
    assert_eq!(
        (e["tenant"].as_str(), e["administration_mode"].as_bool()),
        (Some("contoso"), Some(false))
    );
    let (_, r) = c
        .call(
            &src,
            Method::GET,
            "/environments/sales/records?limit=1",
            None,
        )
        .await;
    assert_eq!(
        r[0]["created_by"], "Ann@Contoso.test",
        "records exactly as they were, letter case included"
    );
    let (_, envs) = c.call(&src, Method::GET, "/environments", None).await;
    assert_eq!(
        envs.as_array().unwrap().len(),
        3,
        "sales, dev and plain; no remnant left behind: {envs}"
    );

    let (s, v) = c
        .call(&src, Method::POST, &format!("/moves/{sid}/migrate"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "Migrate Environment: Succeeded");
    assert_eq!(
        (v["migrated_users"].as_u64(), v["left_out_users"].as_u64()),
        (Some(1), Some(3))
    );
    // The application user was in the file: it is not counted as "not in the mapping file"
    // (issue 17).
    assert_eq!(
        (
            v["not_in_mapping"].as_u64(),
            v["application_users_in_mapping"].as_u64()
        ),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(
        v["records_remapped"], 300,
        "every record was created by Ann"
    );
    let (_, r) = c
        .call(
            &dst,
            Method::GET,
            "/environments/sales/records?limit=3",
            None,
        )
        .await;
    assert_eq!(
        r,
        json!([
            {"id": "r0000", "owner": "ann@fabrikam.test", "created_by": "ann@fabrikam.test", "modified_by": "system"},
            {"id": "r0001", "owner": "boss@contoso.test", "created_by": "ann@fabrikam.test", "modified_by": "system"},
            {"id": "r0002", "owner": "gone@contoso.test", "created_by": "ann@fabrikam.test", "modified_by": "system"}
        ]),
        "mapped users remapped in every record; users not in the file are not"
    );
    let checklist: Vec<&str> = v["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        checklist
            .iter()
            .any(|l| l.contains("flow `Notify` has a new HTTP trigger URL")),
        "{checklist:?}"
    );
    assert!(
        checklist
            .iter()
            .any(|l| l.contains("connection reference `shared_office365`"))
    );
    assert!(
        checklist
            .iter()
            .any(|l| l.contains("Managed Environment needs to be re-enabled"))
    );
    // The environment now belongs to the target, same name, URL and org id; the source keeps one
    // without Dataverse.
    let (s, v) = c.call(&dst, Method::GET, "/environments/sales", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["url"].as_str(), v["org_id"].as_str()),
        (
            Some("Sales"),
            Some("https://sales.crm.test"),
            Some("0a1b2c3d-0000-4000-8000-000000000001")
        )
    );
    assert_eq!(
        v["system_users"],
        json!([{"id": "11111111-1111-4111-8111-111111111111", "email": "ann@fabrikam.test", "application_user": false, "administrative": false}])
    );
    assert_eq!(v["components"][0]["enabled"], false);
    assert_ne!(
        v["components"][0]["http_trigger_url"],
        "https://old.test/trigger"
    );
    assert_eq!(v["managed"], false);
    let (_, v) = c.call(&src, Method::GET, "/environments", None).await;
    let remnant = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "Sales")
        .unwrap();
    assert!(
        remnant.get("org_id").is_none() && remnant["id"] != "sales",
        "{remnant}"
    );
    let (s, _) = c
        .call(&src, Method::POST, &format!("/moves/{sid}/cancel"), None)
        .await;
    assert_eq!(s, 409, "no cancel after completion");

    // The remnant has no Dataverse left, so it cannot move again.
    let (s, _) = c
        .call(
            &src,
            Method::POST,
            &format!("/environments/{}/moves", remnant["id"].as_str().unwrap()),
            Some(json!({"target_tenant": "fabrikam"})),
        )
        .await;
    assert_eq!(s, 400);
    // An unanswered request expires after seven days.
    let mut later = env.clone();
    later["id"] = json!("sales-2");
    later["name"] = json!("Sales 2");
    later["org_id"] = json!("0a1b2c3d-0000-4000-8000-000000000002");
    c.call(&src, Method::PUT, "/environments/sales-2", Some(later))
        .await;
    let (_, v) = c
        .call(
            &src,
            Method::POST,
            "/environments/sales-2/moves",
            Some(json!({"target_tenant": "fabrikam"})),
        )
        .await;
    let sid2 = v["migration_id"].as_str().unwrap().to_string();
    let (_, v) = c.call(&dst, Method::GET, "/moves/approvals", None).await;
    let tid2 = v[0]["migration_id"].as_str().unwrap().to_string();
    server.state.clock.advance(7 * DAY);
    let (s, v) = c
        .call(&dst, Method::POST, &format!("/moves/{tid2}/approve"), None)
        .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (409, "cannot approve: the request is expired")
    );
    let (_, v) = c
        .call(&src, Method::GET, &format!("/moves/{sid2}/status"), None)
        .await;
    assert_eq!(v["state"], "expired");

    // Every action is in the audit trail; each tenant sees its own lines.
    let (_, v) = c.call(&admin, Method::GET, "/audit", None).await;
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in [
        "env.move.submit",
        "env.move.approve",
        "env.move.upload-mapping",
        "env.move.prepare",
        "env.move.migrate",
        "operator.create",
    ] {
        assert!(actions.contains(&a), "{a} missing: {actions:?}");
    }
    let (_, v) = c.call(&dst, Method::GET, "/audit", None).await;
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|a| a["tenant"] == "fabrikam"),
        "{v}"
    );
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "env.move.approve" && a["actor"] == "dst")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_sign_in_with_a_password_kept_as_argon2() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ferry.toml"), "").unwrap();
    let (server, c) = start(d).await;
    let admin = server.admin_token.clone();
    c.call(
        &admin,
        Method::PUT,
        "/tenants/contoso",
        Some(json!({"id": "contoso", "name": "Contoso"})),
    )
    .await;
    let (s, v) = c
        .call(
            &admin,
            Method::POST,
            "/operators",
            Some(json!({"name": "ann", "tenant": "contoso", "password": "short"})),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (400, "password: at least 12 characters")
    );
    let pw = "correct horse battery";
    let (s, _) = c
        .call(
            &admin,
            Method::POST,
            "/operators",
            Some(json!({"name": "ann", "tenant": "contoso", "password": pw})),
        )
        .await;
    assert_eq!(s, 201);
    // Stored as an argon2id PHC string, never as the password.
    let mut db = std::fs::read(d.join("data/ferry.db")).unwrap();
    db.extend(std::fs::read(d.join("data/ferry.db-wal")).unwrap_or_default());
    assert!(
        !db.windows(pw.len()).any(|w| w == pw.as_bytes()),
        "the password is not in the database"
    );
    assert!(
        db.windows(10).any(|w| w == b"$argon2id$"),
        "an argon2id hash is"
    );

    let sign_in = |name: &str, password: &str| {
        let (http, url) = (c.http.clone(), c.url.clone());
        let body = json!({"name": name, "password": password});
        async move {
            let r = http
                .post(format!("{url}/api/v1/sessions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    for (name, password) in [("ann", "wrong password!!"), ("nobody", pw)] {
        let (s, v) = sign_in(name, password).await;
        assert_eq!(
            (s, v["error"].as_str().unwrap()),
            (401, "the name or the password is wrong")
        );
    }
    let (s, v) = sign_in("ann", pw).await;
    assert_eq!(
        (s, v["role"].as_str().unwrap()),
        (201, "tenant-admin:contoso"),
        "{v}"
    );
    let token = v["token"].as_str().unwrap().to_string();
    let (s, v) = c.call(&token, Method::GET, "/tenants", None).await;
    assert_eq!(
        (s, v.as_array().unwrap().len()),
        (200, 1),
        "the session acts as Contoso's admin"
    );
    let (s, _) = c.call(&token, Method::GET, "/psks", None).await;
    assert_eq!(s, 403, "and only that");
    let (s, _) = c.call(&token, Method::DELETE, "/sessions", None).await;
    assert_eq!(s, 204);
    let (s, _) = c.call(&token, Method::GET, "/tenants", None).await;
    assert_eq!(s, 401, "signed out");
    let (_, v) = c.call(&admin, Method::GET, "/audit", None).await;
    let a: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["action"].as_str().unwrap(), x["actor"].as_str().unwrap()))
        .collect();
    assert!(
        a.contains(&("session.sign-in", "ann")) && a.contains(&("session.sign-out", "ann")),
        "{a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_everything_and_changes_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ferry.toml"), "").unwrap();
    let (_server, c) = start(d).await;
    let admin = _server.admin_token.clone();
    let (s, v) = c
        .call(
            &admin,
            Method::POST,
            "/operators",
            Some(json!({"name": "v", "tenant": "x", "viewer": true})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let pw = "a viewer's password";
    let (s, v) = c
        .call(
            &admin,
            Method::POST,
            "/operators",
            Some(json!({"name": "vera", "viewer": true, "password": pw})),
        )
        .await;
    assert_eq!((s, v["role"].as_str()), (201, Some("viewer")), "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let (s, v) = c.call(&token, Method::GET, "/me", None).await;
    assert_eq!((s, v["role"].as_str()), (200, Some("viewer")));
    // Reads what an admin reads, admin-only pages included.
    for path in [
        "/psks",
        "/directories",
        "/profiles",
        "/agents",
        "/tenants",
        "/moves",
        "/audit",
        "/runbooks",
    ] {
        assert_eq!(
            c.call(&token, Method::GET, path, None).await.0,
            200,
            "{path}"
        );
    }
    // Changes nothing, on either kind of endpoint.
    for (m, path, body) in [
        (Method::POST, "/psks", json!({"name": "k"})),
        (Method::PUT, "/tenants/t", json!({"id": "t", "name": "T"})),
        (
            Method::PUT,
            "/directories/d",
            json!({"name": "d", "kind": "file", "path": "x.json"}),
        ),
        (Method::POST, "/operators", json!({"name": "w"})),
        (Method::POST, "/moves/x/approve", json!({})),
    ] {
        let (s, v) = c.call(&token, m, path, Some(body)).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (403, Some("a viewer may look but not change anything")),
            "{path}"
        );
    }
    assert!(
        c.call(&admin, Method::GET, "/psks", None)
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Signs in and out like anyone.
    let r = c
        .http
        .post(format!("{}/api/v1/sessions", c.url))
        .json(&json!({"name": "vera", "password": pw}))
        .send()
        .await
        .unwrap();
    let session = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.call(&session, Method::DELETE, "/sessions", None).await.0,
        204
    );
    assert_eq!(c.call(&session, Method::GET, "/me", None).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_declared_in_the_configuration_are_registered_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("contoso.json"),
        render_json(&[user("c1", "ann@contoso.test", true, true)]),
    )
    .unwrap();
    std::fs::write(
        d.join("ferry.toml"),
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n\
         [[tenant]]\nid = \"contoso\"\nname = \"Contoso\"\ndirectories = [\"contoso\"]\n\n\
         [[environment]]\nid = \"hr\"\ntenant = \"contoso\"\nname = \"HR\"\nurl = \"https://hr.crm.test\"\ntype = \"sandbox\"\n\
         system_users = [{ id = \"11111111-1111-4111-8111-111111111111\", email = \"ann@contoso.test\" }]\n",
    )
    .unwrap();
    let (server, c) = start(d).await;
    let admin = server.admin_token.clone();
    let (_, v) = c.call(&admin, Method::GET, "/environments/hr", None).await;
    assert_eq!(
        (v["name"].as_str(), v["type"].as_str()),
        (Some("HR"), Some("sandbox")),
        "{v}"
    );
    let mut changed = v.clone();
    changed["name"] = json!("Human Resources");
    let (s, _) = c
        .call(&admin, Method::PUT, "/environments/hr", Some(changed))
        .await;
    assert_eq!(s, 200);
    server.stop().await.unwrap();
    // A restart does not undo what happened since (a move may have handed it over).
    let (server, c) = start(d).await;
    let (_, v) = c.call(&admin, Method::GET, "/environments/hr", None).await;
    assert_eq!(v["name"], "Human Resources");
    server.stop().await.unwrap();

    // The configuration is checked: an environment of an undeclared tenant is named with its place.
    let bad = "[[environment]]\nid = \"x\"\ntenant = \"nobody\"\nname = \"X\"\nurl = \"u\"\ntype = \"production\"\n";
    let e = ferry_core::config::Config::parse(bad, "ferry.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("environment[0].tenant") && e.contains("there is no [[tenant]] `nobody`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ferry.toml"), "").unwrap();
    let (server, c) = start(d).await;
    let r = c.http.get(format!("{}/", c.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    // Every asset is this server's own: no CDN, works offline.
    for attr in ["src=\"", "href=\""] {
        for rest in html.split(attr).skip(1) {
            let url = &rest[..rest.find('"').unwrap()];
            assert!(
                url.starts_with('/') || url.starts_with('#') || url.starts_with("data:"),
                "{url}"
            );
            if url.starts_with("/assets/") {
                let a = c.http.get(format!("{}{url}", c.url)).send().await.unwrap();
                assert_eq!(a.status(), 200, "{url}");
                assert!(a.text().await.unwrap().len() > 100);
            }
        }
    }
    let (s, v) = c.call(&server.admin_token, Method::GET, "/me", None).await;
    assert_eq!((s, v["role"].as_str()), (200, Some("admin")));
    let (s, _) = c.call("nope", Method::GET, "/me", None).await;
    assert_eq!(s, 401);
}

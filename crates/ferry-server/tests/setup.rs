//! Directories and sync profiles added in the console, over real HTTP: validated before they are
//! stored, in force at once (a cycle runs on them), credentials write-only, the file's entries
//! untouchable, kept across a restart, every change in the audit trail.

#![allow(clippy::unwrap_used)]

use ferry_core::snapshot::render_json;
use ferry_demo as sample;
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;

struct H {
    server: Server,
    http: reqwest::Client,
    url: String,
    token: String,
}

impl H {
    async fn call(&self, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(m, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        let t = resp.text().await.unwrap();
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn text(&self, path: &str) -> String {
        self.http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

async fn start(dir: &Path) -> H {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start(
        ServerOptions {
            settings: Settings::load(&dir.join("ferry.toml")).unwrap(),
            data_dir: dir.join("data"),
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
    H {
        http: reqwest::Client::new(),
        url: format!("http://{}", server.addr),
        token: server.admin_token.clone(),
        server,
    }
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_and_profiles_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = sample::generate(200, false, 3);
    std::fs::write(d.join("contoso.json"), render_json(&s.source)).unwrap();
    std::fs::write(d.join("fabrikam.json"), render_json(&s.target)).unwrap();
    std::fs::write(
        d.join("ferry.toml"),
        "[[directory]]\nname = \"hr\"\nkind = \"file\"\npath = \"contoso.json\"\n",
    )
    .unwrap();
    let h = start(d).await;

    // The file's entry cannot be changed or removed here.
    let hr = json!({"name": "hr", "kind": "file", "path": "fabrikam.json"});
    let (st, v) = h.call(Method::PUT, "/directories/hr", Some(hr)).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("ferry.toml"), "{v}");
    assert_eq!(h.call(Method::DELETE, "/directories/hr", None).await.0, 409);

    // Bad entries: the field and why; nothing is stored.
    for (body, says) in [
        (
            json!({"name": "corp", "kind": "ldap", "base_dn": "dc=x"}),
            "url",
        ),
        (
            json!({"name": "corp", "kind": "ldap", "url": "ldap://h", "base_dn": "dc=x", "colour": 1}),
            "colour",
        ),
        (json!({"name": "corp", "kind": "tape"}), "tape"),
        (
            json!({"name": "other", "kind": "file", "path": "x.json"}),
            "differs",
        ),
        (
            json!({"name": "corp", "kind": "ldap", "url": "ldap://h", "base_dn": "dc=x", "bind_dn": "cn=a"}),
            "password",
        ),
    ] {
        let (st, v) = h
            .call(Method::PUT, "/directories/corp", Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body} → {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body} → {v}");
    }
    let (_, list) = h.call(Method::GET, "/directories", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // An LDAP directory with a bind password: the password is never shown, and kept on edit.
    let corp = json!({"name": "corp", "kind": "ldap", "url": "ldap://127.0.0.1:1", "base_dn": "dc=contoso,dc=test",
        "bind_dn": "cn=admin,dc=contoso,dc=test", "bind_password": "s3cret-Passw0rd"});
    assert_eq!(
        h.call(Method::PUT, "/directories/corp", Some(corp)).await.0,
        201
    );
    let text = h.text("/directories").await;
    assert!(!text.contains("s3cret-Passw0rd"), "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    let c = find(&list, "corp");
    assert_eq!(
        (c["origin"].as_str(), c["has_credential"].as_bool()),
        (Some("console"), Some(true))
    );
    assert_eq!(c["settings"]["base_dn"], "dc=contoso,dc=test");
    assert!(c["settings"].get("bind_password").is_none(), "{c}");
    assert_eq!(find(&list, "hr")["origin"], "file");
    // Would catch: a kept credential sent to a host it was not entered for (editing only the URL).
    let edit = json!({"name": "corp", "kind": "ldap", "url": "ldap://127.0.0.1:2", "base_dn": "dc=contoso,dc=test",
        "bind_dn": "cn=admin,dc=contoso,dc=test"});
    let (st, v) = h.call(Method::PUT, "/directories/corp", Some(edit)).await;
    assert_eq!(st, 400, "a new URL without the password: {v}");
    assert!(
        v["error"].as_str().unwrap().contains("bind_password")
            && v["error"].as_str().unwrap().contains("ldap://127.0.0.1:2"),
        "{v}"
    );
    let same = json!({"name": "corp", "kind": "ldap", "url": "ldap://127.0.0.1:1", "base_dn": "dc=contoso,dc=test",
        "bind_dn": "cn=admin,dc=contoso,dc=test"});
    let (st, v) = h.call(Method::PUT, "/directories/corp", Some(same)).await;
    assert_eq!(
        st, 200,
        "an edit of the same host without the password keeps it: {v}"
    );
    let edit = json!({"name": "corp", "kind": "ldap", "url": "ldap://127.0.0.1:2", "base_dn": "dc=contoso,dc=test",
        "bind_dn": "cn=admin,dc=contoso,dc=test", "bind_password": "s3cret-Passw0rd"});
    let (st, v) = h.call(Method::PUT, "/directories/corp", Some(edit)).await;
    assert_eq!(st, 200, "a new URL with the password entered again: {v}");
    // Would catch: the API reading a server file (as a password sent to the caller's host, or as
    // a snapshot), or a server variable picked by the name of a console directory.
    for (body, field) in [
        (
            json!({"name": "leak", "kind": "ldap", "url": "ldap://127.0.0.1:3", "base_dn": "dc=x",
                "bind_dn": "cn=a", "bind_password_file": "/etc/shadow"}),
            "bind_password_file",
        ),
        (
            json!({"name": "leak", "kind": "graph", "tenant_id": "t", "client_id": "c",
                "client_secret_file": "/etc/shadow"}),
            "client_secret_file",
        ),
        (
            json!({"name": "leak", "kind": "file", "path": "/etc/passwd"}),
            "path",
        ),
        (
            json!({"name": "leak", "kind": "file", "path": "../../etc/passwd"}),
            "path",
        ),
    ] {
        let (st, v) = h
            .call(Method::PUT, "/directories/leak", Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body} → {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{body} → {v}");
    }
    let (_, list) = h.call(Method::GET, "/directories", None).await;
    assert_eq!(find(&list, "corp")["has_credential"], true);
    assert!(
        find(&list, "corp")["location"]
            .as_str()
            .unwrap()
            .contains(":2")
    );
    // Test connection reaches the new settings (nothing listens on port 2).
    let (_, t) = h.call(Method::POST, "/directories/corp/test", None).await;
    assert_eq!(t["ok"], false, "{t}");
    assert!(
        t["checks"].to_string().contains("127.0.0.1:2"),
        "the edited URL is the one tried: {t}"
    );

    // Two file directories and a profile with a match rule and a schedule; a cycle runs on them.
    for (name, file) in [("src", "contoso.json"), ("tgt", "fabrikam.json")] {
        let body = json!({"name": name, "kind": "file", "path": d.join(file)});
        assert_eq!(
            h.call(Method::PUT, &format!("/directories/{name}"), Some(body))
                .await
                .0,
            201
        );
    }
    let bad = json!({"name": "users", "source": "src", "target": "nowhere", "mode": "match-only"});
    let (st, v) = h.call(Method::PUT, "/profiles/users", Some(bad)).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("nowhere"), "{v}");
    let bad = json!({"name": "users", "source": "src", "target": "tgt", "mode": "match-only", "schedule": "soon"});
    let (st, v) = h.call(Method::PUT, "/profiles/users", Some(bad)).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("schedule"), "{v}");
    let profile = json!({"name": "users", "source": "src", "target": "tgt", "mode": "match-only",
        "object_types": ["user"], "schedule": "15m",
        "match": [{"source_attribute": "mail", "target_attribute": "mail",
            "transforms": [{"replace_suffix": ["@contoso.test", "@fabrikam.test"]}]},
            {"source_attribute": "employeeId", "target_attribute": "employeeId"}]});
    let (st, v) = h.call(Method::PUT, "/profiles/users", Some(profile)).await;
    assert_eq!(st, 201, "{v}");
    let (_, ps) = h.call(Method::GET, "/profiles", None).await;
    let p = find(&ps, "users");
    assert_eq!(
        (p["origin"].as_str(), p["schedule"].as_str()),
        (Some("console"), Some("15m"))
    );
    assert_eq!(p["settings"]["match"][0]["source_attribute"], "mail");
    let (st, c) = h
        .call(Method::POST, "/profiles/users/run?wait=true", None)
        .await;
    assert_eq!(st, 202, "{c}");
    assert_eq!(c["cycle"]["status"], "succeeded", "{c}");
    assert_eq!(
        c["cycle"]["counts"]["matched"].as_u64(),
        Some(s.expected.users_matched),
        "{c}"
    );

    // A directory a profile uses cannot go.
    let (st, v) = h.call(Method::DELETE, "/directories/src", None).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("users"), "{v}");

    // Kept across a restart; the audit trail has every change, without the password.
    h.server.stop().await.unwrap();
    let h = start(d).await;
    let (_, list) = h.call(Method::GET, "/directories", None).await;
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");
    assert_eq!(find(&list, "corp")["has_credential"], true);
    let (_, ps) = h.call(Method::GET, "/profiles", None).await;
    assert_eq!(find(&ps, "users")["origin"], "console");
    let audit = h.text("/audit").await;
    for a in ["directory.add", "directory.change", "profile.add"] {
        assert!(audit.contains(a), "{a} in {audit}");
    }
    assert!(!audit.contains("s3cret"), "{audit}");

    // Removed: the profile, then its directories.
    assert_eq!(h.call(Method::DELETE, "/profiles/users", None).await.0, 204);
    assert_eq!(h.call(Method::DELETE, "/profiles/users", None).await.0, 404);
    assert_eq!(
        h.call(Method::DELETE, "/directories/src", None).await.0,
        204
    );
    let (_, list) = h.call(Method::GET, "/directories", None).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
}

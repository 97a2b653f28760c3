//! An environment move with 1,000,000 records on SQLite, through the real server and its HTTP
//! API: 1,000 system users (all mapped), every record referring to three of them; the figure is
//! the `migrate` call (records remapped in one transaction, the environment handed over).
//!
//! `cargo run --release -p ferry-bench --bin envmove [-- RECORDS]`

use ferry_core::ObjectKind;
use ferry_core::model::DirObject;
use ferry_core::snapshot::render_json;
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use ferry_store::EnvRecord;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const USERS: usize = 1000;

fn user(domain: &str, i: usize) -> DirObject {
    DirObject {
        kind: ObjectKind::User,
        id: format!("{domain}-{i}"),
        dn: None,
        name: format!("User {i}"),
        upn: Some(format!("user{i}@{domain}.test")),
        mail: Some(format!("user{i}@{domain}.test")),
        sid: None,
        uid_number: None,
        gid_number: None,
        members: vec![],
        attrs: vec![],
    }
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    tok: &str,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut r = http
        .request(m, format!("{url}/api/v1{path}"))
        .bearer_auth(tok);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("ferry-bench-envmove-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let src: Vec<DirObject> = (0..USERS).map(|i| user("contoso", i)).collect();
    let dst: Vec<DirObject> = (0..USERS).map(|i| user("fabrikam", i)).collect();
    std::fs::write(dir.join("contoso.json"), render_json(&src)).expect("write");
    std::fs::write(dir.join("fabrikam.json"), render_json(&dst)).expect("write");
    std::fs::write(
        dir.join("ferry.toml"),
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n\
         [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
         [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n\n\
         [[sync_profile.match]]\nsource_attribute = \"name\"\ntarget_attribute = \"name\"\n",
    )
    .expect("write");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = Server::start(
        ServerOptions {
            settings: Settings::load(&dir.join("ferry.toml")).expect("config"),
            data_dir: dir.join("data"),
            database_url: None,
            admin_token: None,
            secret_key: None,
            scheduler: false,
            agent: None,
        },
        listener,
    )
    .await
    .expect("server");
    let url = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let admin = server.admin_token.clone();
    call(
        &http,
        &url,
        &admin,
        Method::POST,
        "/profiles/users/run?wait=true",
        None,
    )
    .await;
    for (id, d) in [("contoso", "contoso"), ("fabrikam", "fabrikam")] {
        call(
            &http,
            &url,
            &admin,
            Method::PUT,
            &format!("/tenants/{id}"),
            Some(json!({"id": id, "name": id, "directories": [d]})),
        )
        .await;
    }
    let s = call(
        &http,
        &url,
        &admin,
        Method::POST,
        "/operators",
        Some(json!({"name": "src", "tenant": "contoso"})),
    )
    .await;
    let t = call(
        &http,
        &url,
        &admin,
        Method::POST,
        "/operators",
        Some(json!({"name": "dst", "tenant": "fabrikam"})),
    )
    .await;
    let (src_tok, dst_tok) = (
        s["token"].as_str().expect("t").to_string(),
        t["token"].as_str().expect("t").to_string(),
    );
    let users: Vec<Value> = (0..USERS)
        .map(|i| json!({"id": format!("{:08x}-0000-4000-8000-{:012x}", i, i), "email": format!("user{i}@contoso.test")}))
        .collect();
    call(&http, &url, &src_tok, Method::PUT, "/environments/big", Some(json!({
        "id": "big", "tenant": "contoso", "name": "Big", "url": "https://big.crm.test", "org_id": "b1600000-0000-4000-8000-000000000001",
        "type": "production", "system_users": users
    }))).await;

    let t0 = Instant::now();
    let store = server.state.store.clone();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100_000) {
        let recs: Vec<EnvRecord> = chunk
            .iter()
            .map(|&i| EnvRecord {
                id: format!("rec{i:08}"),
                owner: format!("user{}@contoso.test", i % USERS),
                created_by: format!("User{}@Contoso.test", (i * 7) % USERS),
                modified_by: format!("user{}@contoso.test", (i * 13) % USERS),
            })
            .collect();
        store.put_env_records("big", &recs).await.expect("records");
    }
    println!(
        "seeded {n} records referring to {USERS} users in {:.1} s (SQLite)",
        t0.elapsed().as_secs_f64()
    );

    let v = call(
        &http,
        &url,
        &src_tok,
        Method::POST,
        "/environments/big/moves",
        Some(json!({"target_tenant": "fabrikam"})),
    )
    .await;
    let sid = v["migration_id"].as_str().expect("id").to_string();
    let a = call(&http, &url, &dst_tok, Method::GET, "/moves/approvals", None).await;
    let tid = a[0]["migration_id"].as_str().expect("id").to_string();
    call(
        &http,
        &url,
        &dst_tok,
        Method::POST,
        &format!("/moves/{tid}/approve"),
        None,
    )
    .await;
    let mut csv = String::from("Source,Destination\r\n");
    for i in 0..USERS {
        csv.push_str(&format!("user{i}@contoso.test,user{i}@fabrikam.test\r\n"));
    }
    let r = http
        .put(format!(
            "{url}/api/v1/environments/big/usermapping?file_name=usermapping.csv"
        ))
        .bearer_auth(&src_tok)
        .body(csv)
        .send()
        .await
        .expect("upload");
    assert!(r.status().is_success());
    call(
        &http,
        &url,
        &src_tok,
        Method::POST,
        &format!("/moves/{sid}/prepare"),
        None,
    )
    .await;
    loop {
        let s = call(
            &http,
            &url,
            &src_tok,
            Method::GET,
            &format!("/moves/{sid}/status"),
            None,
        )
        .await;
        let line = s["status"].as_str().expect("status").to_string();
        if line.ends_with("Succeeded") {
            break;
        }
        assert!(line.ends_with("Running"), "{line}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    let m = call(
        &http,
        &url,
        &src_tok,
        Method::POST,
        &format!("/moves/{sid}/migrate"),
        None,
    )
    .await;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "migrate: {} records remapped, {} users migrated in {secs:.2} s ({:.0} records/s); status: {}",
        m["records_remapped"],
        m["migrated_users"],
        n as f64 / secs,
        m["status"]
    );
    server.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}

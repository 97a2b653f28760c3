//! Secrets at rest, tried as another local user and as someone holding a copy of the database:
//! the data directory is private to the server's user from the first write (an older, wider one
//! is tightened); a console directory's bind password and a bulk enrolment token's content are
//! sealed under a key kept apart from the database, on SQLite and on PostgreSQL; a server with
//! another key refuses to start rather than write secrets no other server can open; credentials an
//! earlier version stored in the clear are sealed at start.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions, StartError};
use reqwest::Method;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

mod support;

const PASSWORD: &str = "Smith, Ann's bind pässword \"=1\"";
const TOKEN: &[u8] = b"PPKG provisioning package: bulk token eyJhbGciOiJSUzI1NiJ9.bprt-secret";

fn config(dir: &Path) {
    std::fs::write(
        dir.join("ferry.toml"),
        "[[directory]]\nname = \"fabrikam-entra\"\nkind = \"graph\"\ntenant_id = \"fabrikam.onmicrosoft.com\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\ngraph_url = \"http://127.0.0.1:9\"\nlogin_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
}

async fn start(
    dir: &Path,
    database_url: Option<String>,
    key: Option<&str>,
) -> Result<Server, StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Server::start(
        ServerOptions {
            settings: Settings::load(&dir.join("ferry.toml")).unwrap(),
            data_dir: dir.join("data"),
            database_url,
            admin_token: None,
            secret_key: key.map(str::to_string),
            scheduler: false,
            agent: None,
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
}

async fn call(s: &Server, m: Method, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(m, format!("http://{}/api/v1{path}", s.addr))
        .bearer_auth(&s.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// Stores both kinds of secret through the API, as an operator would.
async fn store_secrets(s: &Server) {
    let corp = json!({"name": "corp", "kind": "ldap", "url": "ldap://127.0.0.1:1", "base_dn": "dc=contoso,dc=test",
        "bind_dn": "cn=admin,dc=contoso,dc=test", "bind_password": PASSWORD});
    let (st, v) = call(s, Method::PUT, "/directories/corp", corp).await;
    assert_eq!(st, 201, "{v}");
    let day = |d: i64| {
        (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * d))
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string()
    };
    let (st, v) = call(
        s,
        Method::POST,
        "/directories/fabrikam-entra/enrolment-tokens",
        json!({"kind": "ppkg", "package_upn": "package_1@fabrikam.onmicrosoft.com", "created": day(-1),
            "expires": day(100), "content_base64": base64::engine::general_purpose::STANDARD.encode(TOKEN)}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["size"].as_i64(),
        Some(TOKEN.len() as i64),
        "the uploaded size, not the sealed one: {v}"
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of the SQLite database (main file and WAL).
fn raw_database(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["ferry.db", "ferry.db-wal"] {
        if let Ok(b) = std::fs::read(data.join(f)) {
            all.extend(b);
        }
    }
    all
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Would catch: a data directory or database file created with the default umask (0755/0644),
/// as it was, and a credential or token written to the database as it was entered.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_user_and_a_database_copy_read_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    // A parent any user may enter: only the data directory's own mode keeps them out.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = tmp.path();
    config(d);
    let s = start(d, None, None).await.unwrap();
    store_secrets(&s).await;
    let data = d.join("data");
    assert_eq!(mode(&data), 0o700);
    for f in std::fs::read_dir(&data).unwrap() {
        let p = f.unwrap().path();
        let m = mode(&p);
        assert_eq!(m & 0o077, 0, "{} is mode {m:o}", p.display());
    }
    for f in ["ferry.db", "ferry.db-wal", "secret.key", "admin-token"] {
        assert!(data.join(f).exists(), "{f} was not made");
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    // As `nobody` (when the tests run as root, as scripts/test does).
    if nix_is_root() {
        for f in ["ferry.db", "ferry.db-wal", "secret.key"] {
            let o = Command::new("cat")
                .arg(data.join(f))
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap();
            assert!(!o.status.success(), "nobody read {f}");
        }
    }
    // The database itself, as a copy of it would be read.
    let raw = raw_database(&data);
    assert!(raw.len() > 10_000, "the database was read");
    assert!(
        !contains(&raw, PASSWORD.as_bytes()),
        "the bind password is in ferry.db"
    );
    assert!(!contains(&raw, TOKEN), "the enrolment token is in ferry.db");
    assert!(
        !contains(&raw, b"bulk token eyJhbGci"),
        "part of the enrolment token is in ferry.db"
    );
    // What is sealed still works: the directory keeps its credential (the API says so, and never shows it).
    let (_, list) = call(&s, Method::GET, "/directories", Value::Null).await;
    let corp = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "corp")
        .unwrap();
    assert_eq!(corp["has_credential"], true, "{corp}");
    assert!(!list.to_string().contains("pässword"));
    s.stop().await.unwrap();
    // Restarted, the server opens what it sealed.
    let s = start(d, None, None).await.unwrap();
    let st = &s.state;
    let dirs = st.settings.stored(&*st.store).await.unwrap().dirs;
    let corp = dirs.iter().find(|d| d.name() == "corp").unwrap();
    assert!(format!("{corp:?}").contains("corp"));
    let ferry_core::config::DirectoryConfig::Ldap(l) = corp else {
        panic!("{corp:?}")
    };
    assert_eq!(l.bind_password.as_ref().unwrap().expose(), PASSWORD);
    s.stop().await.unwrap();
}

fn nix_is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Would catch: a second key silently sealing new secrets next to ones only the first key opens
/// (servers sharing one database with different keys), and a key supplied in a form other than
/// the one documented being taken as something else.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_another_key_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    config(d);
    let k1 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    let k2 = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
    let s = start(d, None, Some(&k1)).await.unwrap();
    store_secrets(&s).await;
    s.stop().await.unwrap();
    assert!(
        !d.join("data/secret.key").exists(),
        "FERRY_SECRET_KEY given: no key file is made"
    );
    let e = start(d, None, Some(&k2)).await.err().unwrap().to_string();
    assert!(
        e.contains("sealed with key") && e.contains("FERRY_SECRET_KEY"),
        "{e}"
    );
    let e = start(d, None, Some("c2hvcnQ="))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("32"), "{e}");
    start(d, None, Some(&k1))
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
}

/// Would catch: an upgrade leaving the credentials an earlier version stored in the clear as they
/// were, and a data directory made world-readable by an earlier version left so.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_install_is_tightened_and_its_secrets_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    config(d);
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    {
        // As an earlier version wrote it: the credential in the clear, the file 0644.
        use ferry_store::ConfigStore as _;
        let store = ferry_store::sqlite::SqliteStore::open(&data.join("ferry.db")).unwrap();
        let body = json!({"settings": {"name": "corp", "kind": "ldap", "url": "ldap://127.0.0.1:1",
            "base_dn": "dc=contoso,dc=test", "bind_dn": "cn=admin,dc=contoso,dc=test"}, "credential": PASSWORD});
        store
            .put_document(
                ferry_store::DocKind::Directory,
                "corp",
                &body.to_string(),
                1,
            )
            .await
            .unwrap();
    }
    std::fs::set_permissions(
        data.join("ferry.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let s = start(d, None, None).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("ferry.db")), 0o600);
    let st = &s.state;
    let docs = st
        .store
        .documents(ferry_store::DocKind::Directory)
        .await
        .unwrap();
    let (_, body) = docs.iter().find(|(n, _)| n == "corp").unwrap();
    assert!(
        !body.contains("pässword"),
        "still in the clear after start: {body}"
    );
    assert!(body.contains("ferry-sealed:v1:"), "{body}");
    // And it still opens as the directory's credential.
    let dirs = st.settings.stored(&*st.store).await.unwrap().dirs;
    let ferry_core::config::DirectoryConfig::Ldap(l) =
        dirs.iter().find(|d| d.name() == "corp").unwrap()
    else {
        panic!()
    };
    assert_eq!(l.bind_password.as_ref().unwrap().expose(), PASSWORD);
    s.stop().await.unwrap();
}

/// Would catch: sealing done in the SQLite code path only, so that a PostgreSQL dump shows the
/// credentials; and two servers on one PostgreSQL with different keys both starting.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_dump_reveals_no_secret() {
    let Some(pg) = support::PgSchema::new("secrets") else {
        return;
    };
    let url = pg.url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    config(d);
    let s = start(d, Some(url.clone()), None).await.unwrap();
    store_secrets(&s).await;
    let dump = pg.query(
        "SELECT body FROM console_directories UNION ALL SELECT encode(content, 'hex') FROM enrolment_tokens",
    );
    assert!(dump.contains("ferry-sealed:v1:"), "{dump}");
    assert!(!dump.contains("pässword"), "{dump}");
    let hex: String = TOKEN.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dump.contains(&hex[..40]), "{dump}");
    // A second server with its own data directory (so its own new key) on the same database.
    let other = tempfile::tempdir().unwrap();
    config(other.path());
    let e = start(other.path(), Some(url.clone()), None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("secret.key"), "{e}");
    s.stop().await.unwrap();
}

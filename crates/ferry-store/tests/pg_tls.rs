//! PostgreSQL over TLS, against the test server scripts/test starts with `ssl = on` and a
//! certificate for `localhost` and 127.0.0.1 signed by a throw-away CA (`FERRY_TEST_PG_CA`);
//! `FERRY_TEST_PG_OTHER_CA` is a CA that signed nothing of it.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_store::postgres::PgStore;

fn env() -> Option<(String, String, String)> {
    let vars = (
        std::env::var("FERRY_TEST_DATABASE_URL"),
        std::env::var("FERRY_TEST_PG_CA"),
        std::env::var("FERRY_TEST_PG_OTHER_CA"),
    );
    match vars {
        (Ok(u), Ok(ca), Ok(other)) => Some((u, ca, other)),
        _ if std::env::var("FERRY_REQUIRE_SERVERS").as_deref() == Ok("1") => {
            panic!(
                "FERRY_TEST_DATABASE_URL, FERRY_TEST_PG_CA and FERRY_TEST_PG_OTHER_CA are needed: run the tests through scripts/test"
            )
        }
        _ => None,
    }
}

/// A URL on a fresh schema, with `extra` query options.
async fn url(base: &str, extra: &str) -> String {
    let schema = format!("tls_{}_{}", std::process::id(), rand_suffix());
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}{extra}")
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

// Catches: `sslmode=verify-full` refused as an unknown option, connections left in plain text
// when TLS was asked for, and a certificate from another CA accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_and_verify_full_encrypt_and_verify() {
    let Some((base, ca, other)) = env() else {
        return;
    };
    let plain = PgStore::connect(&url(&base, "").await).await.unwrap();
    assert!(!plain.tls_in_use().await.unwrap(), "no sslmode: plain");

    let required = PgStore::connect(&url(&base, "&sslmode=require").await)
        .await
        .unwrap();
    assert!(required.tls_in_use().await.unwrap());

    for host in ["localhost", "127.0.0.1"] {
        let u = url(&base, &format!("&sslmode=verify-full&sslrootcert={ca}"))
            .await
            .replace("@127.0.0.1:", &format!("@{host}:"));
        let verified = PgStore::connect(&u).await.unwrap();
        assert!(verified.tls_in_use().await.unwrap(), "{host}");
    }

    let u = url(&base, &format!("&sslmode=verify-full&sslrootcert={other}")).await;
    let err = PgStore::connect(&u)
        .await
        .err()
        .expect("another CA's certificate");
    let msg = err.to_string();
    assert!(
        msg.to_lowercase().contains("certificate"),
        "the error says it is the certificate: {msg}"
    );

    let u = url(&base, "&sslmode=verify-full").await;
    let msg = PgStore::connect(&u).await.err().unwrap().to_string();
    assert!(msg.contains("sslrootcert"), "{msg}");
    let u = url(&base, "&sslmode=prefer").await;
    let msg = PgStore::connect(&u).await.err().unwrap().to_string();
    assert!(msg.contains("prefer is not supported"), "{msg}");
}

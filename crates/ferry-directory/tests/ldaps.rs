//! The LDAP connector over LDAPS against the real slapd of `scripts/test` (`FERRY_TEST_LDAPS_URL`,
//! a certificate for `localhost` signed by `FERRY_TEST_LDAP_CA`). ferry trusts the system's root
//! certificates; the test runs itself again with `SSL_CERT_FILE` naming the test CA, which
//! rustls-native-certs reads instead of the system's store.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_core::ObjectKind;
use ferry_core::config::{LdapDirectory, LdapFlavor, Secret};
use ferry_core::duration::HumanDuration;
use ferry_directory::ldap::LdapConnector;
use ferry_directory::{Connector, DirectoryError};
use std::time::Duration;

fn cfg(url: &str, pw: &str) -> LdapDirectory {
    LdapDirectory {
        name: "tls".into(),
        url: url.into(),
        bind_dn: Some("cn=admin,dc=contoso,dc=test".into()),
        bind_password: Some(Secret::new(pw)),
        bind_password_file: None,
        base_dn: "dc=contoso,dc=test".into(),
        object_types: vec![ObjectKind::User],
        user_filter: None,
        group_filter: None,
        device_filter: None,
        flavor: LdapFlavor::Auto,
        page_size: 50,
        full_import_every: HumanDuration(Duration::from_secs(3600)),
        timeout: HumanDuration(Duration::from_secs(10)),
        user_container: None,
        group_container: None,
        user_object_classes: None,
        group_object_classes: None,
    }
}

#[test]
fn ldaps_verifies_the_server_and_reads() {
    let (Ok(url), Ok(ca), Ok(pw)) = (
        std::env::var("FERRY_TEST_LDAPS_URL"),
        std::env::var("FERRY_TEST_LDAP_CA"),
        std::env::var("FERRY_TEST_LDAP_PASSWORD"),
    ) else {
        if std::env::var("FERRY_REQUIRE_SERVERS").as_deref() == Ok("1") {
            panic!("FERRY_TEST_LDAPS_URL is not set: run through scripts/test");
        }
        eprintln!("skipping: FERRY_TEST_LDAPS_URL is not set (scripts/test starts slapd)");
        return;
    };
    if std::env::var_os("SSL_CERT_FILE").as_deref() != Some(ca.as_ref()) {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ldaps_verifies_the_server_and_reads",
                "--nocapture",
            ])
            .env("SSL_CERT_FILE", &ca)
            .status()
            .unwrap();
        assert!(status.success(), "the run with the test CA failed");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = LdapConnector::new(cfg(&url, &pw), Some(Secret::new(pw.clone())));
        let report = conn.test().await.unwrap();
        assert!(report.checks[0].contains("ldaps://localhost"), "{report:?}");
        conn.import(&[ObjectKind::User], None).await.unwrap();

        // The certificate names localhost, not 127.0.0.1: the handshake must fail.
        let by_ip = url.replace("localhost", "127.0.0.1");
        let e = LdapConnector::new(cfg(&by_ip, &pw), Some(Secret::new(pw.clone())))
            .import(&[ObjectKind::User], None)
            .await
            .unwrap_err();
        assert!(matches!(e, DirectoryError::Unreachable { .. }), "{e}");
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

        // Wrong password over TLS: the bind's own error.
        let e = LdapConnector::new(cfg(&url, &pw), Some(Secret::new("nope")))
            .test()
            .await
            .unwrap_err();
        assert!(matches!(e, DirectoryError::BadCredentials { .. }), "{e}");
    });
}

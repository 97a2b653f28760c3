//! The LDAP connector against a real slapd (started by `scripts/test`: `FERRY_TEST_LDAP_URL`,
//! suffixes dc=contoso,dc=test and dc=fabrikam,dc=test, root DN cn=admin,<suffix>). Each test works in
//! its own organisational unit.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_core::ObjectKind;
use ferry_core::config::{LdapDirectory, LdapFlavor, Secret};
use ferry_core::duration::HumanDuration;
use ferry_core::plan::{AttrChange, Write};
use ferry_directory::ldap::LdapConnector;
use ferry_directory::{Connector, DirectoryError};
use ldap3::{LdapConnAsync, dn_escape};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static N: AtomicU32 = AtomicU32::new(0);

fn env() -> Option<(String, String)> {
    match (
        std::env::var("FERRY_TEST_LDAP_URL"),
        std::env::var("FERRY_TEST_LDAP_PASSWORD"),
    ) {
        (Ok(u), Ok(p)) => Some((u, p)),
        _ if std::env::var("FERRY_REQUIRE_SERVERS").as_deref() == Ok("1") => {
            panic!("FERRY_TEST_LDAP_URL is not set: run through scripts/test")
        }
        _ => {
            eprintln!(
                "skipping: FERRY_TEST_LDAP_URL is not set (scripts/test starts slapd and sets it)"
            );
            None
        }
    }
}

fn cfg(url: &str, pw: &str, org: &str, base: &str) -> LdapDirectory {
    LdapDirectory {
        name: org.into(),
        url: url.into(),
        bind_dn: Some(format!("cn=admin,dc={org},dc=test")),
        bind_password: Some(Secret::new(pw)),
        bind_password_file: None,
        base_dn: base.into(),
        object_types: vec![ObjectKind::User, ObjectKind::Group, ObjectKind::Device],
        user_filter: None,
        group_filter: None,
        device_filter: None,
        flavor: LdapFlavor::Auto,
        page_size: 7,
        full_import_every: HumanDuration(Duration::from_secs(3600)),
        timeout: HumanDuration(Duration::from_secs(10)),
        user_container: None,
        group_container: None,
        user_object_classes: None,
        group_object_classes: None,
    }
}

/// Creates a fresh OU under the org and returns (admin connection, ou DN).
async fn fresh_ou(url: &str, pw: &str, org: &str) -> (ldap3::Ldap, String) {
    let (conn, mut ldap) = LdapConnAsync::new(url).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(&format!("cn=admin,dc={org},dc=test"), pw)
        .await
        .unwrap()
        .success()
        .unwrap();
    let ou = format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let dn = format!("ou={ou},dc={org},dc=test");
    ldap.add(
        &dn,
        vec![
            ("objectClass", HashSet::from(["organizationalUnit"])),
            ("ou", HashSet::from([ou.as_str()])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    (ldap, dn)
}

async fn add_user(
    ldap: &mut ldap3::Ldap,
    base: &str,
    uid: &str,
    cn: &str,
    mail: &str,
    uid_number: u32,
) -> String {
    let dn = format!("uid={},{base}", dn_escape(uid));
    let n = uid_number.to_string();
    ldap.add(
        &dn,
        vec![
            (
                "objectClass",
                HashSet::from(["inetOrgPerson", "posixAccount"]),
            ),
            ("uid", HashSet::from([uid])),
            ("cn", HashSet::from([cn])),
            ("sn", HashSet::from(["x"])),
            ("mail", HashSet::from([mail])),
            ("uidNumber", HashSet::from([n.as_str()])),
            ("gidNumber", HashSet::from(["100"])),
            ("homeDirectory", HashSet::from(["/home/x"])),
            ("employeeNumber", HashSet::from([n.as_str()])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    dn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_users_groups_devices_with_hostile_values() {
    let Some((url, pw)) = env() else { return };
    let (mut ldap, base) = fresh_ou(&url, &pw, "contoso").await;
    let hostile_cn = "Ὀδυσσεύς \"Odie\" O'Brien, (*)\\ <x>;+=#";
    let mut dns = Vec::new();
    for i in 0..20u32 {
        let cn = if i == 0 {
            hostile_cn.to_string()
        } else {
            format!("User {i}")
        };
        let uid = if i == 0 {
            "o*(brien)".to_string()
        } else {
            format!("user{i}")
        };
        dns.push(
            add_user(
                &mut ldap,
                &base,
                &uid,
                &cn,
                &format!("user{i}@contoso.test"),
                10_000 + i,
            )
            .await,
        );
    }
    ldap.add(
        &format!("cn=Sales,{base}"),
        vec![
            ("objectClass", HashSet::from(["groupOfNames"])),
            ("cn", HashSet::from(["Sales"])),
            (
                "member",
                HashSet::from([dns[0].as_str(), dns[1].as_str(), "uid=ghost,dc=elsewhere"]),
            ),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.add(
        &format!("cn=devs,{base}"),
        vec![
            ("objectClass", HashSet::from(["posixGroup"])),
            ("cn", HashSet::from(["devs"])),
            ("gidNumber", HashSet::from(["5000"])),
            ("memberUid", HashSet::from(["user2", "o*(brien)"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.add(
        &format!("cn=LT-001,{base}"),
        vec![
            ("objectClass", HashSet::from(["device"])),
            ("cn", HashSet::from(["LT-001"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();

    let conn = LdapConnector::new(
        cfg(&url, &pw, "contoso", &base),
        Some(Secret::new(pw.clone())),
    );
    // Counted as read (the figure a running cycle shows), across the import's own thread.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let imp = ferry_directory::progress::counting(
        std::sync::Arc::clone(&read),
        conn.import(
            &[ObjectKind::User, ObjectKind::Group, ObjectKind::Device],
            None,
        ),
    )
    .await
    .unwrap();
    assert!(imp.full);
    assert_eq!(
        read.load(std::sync::atomic::Ordering::Relaxed),
        imp.objects.len() as u64,
        "objects read, as counted while the import ran"
    );
    let users: Vec<_> = imp
        .objects
        .iter()
        .filter(|o| o.kind == ObjectKind::User)
        .collect();
    assert_eq!(users.len(), 20, "paged at 7 per page, all 20 arrive");
    let odie = users.iter().find(|u| u.uid_number == Some(10_000)).unwrap();
    assert_eq!(odie.name, hostile_cn, "hostile values round-trip unchanged");
    assert_eq!(odie.attr("uid"), Some("o*(brien)"));
    assert_eq!(odie.mail.as_deref(), Some("user0@contoso.test"));
    assert_eq!(odie.id.len(), 36, "entryUUID is the id: {}", odie.id);
    let sales = imp.objects.iter().find(|o| o.name == "Sales").unwrap();
    assert_eq!(sales.members.len(), 3);
    assert!(
        sales.members.contains(&odie.id),
        "member DNs resolve to ids"
    );
    assert!(
        sales
            .members
            .contains(&"uid=ghost,dc=elsewhere".to_string()),
        "unknown members are kept as given"
    );
    let devs = imp.objects.iter().find(|o| o.name == "devs").unwrap();
    assert_eq!(devs.gid_number, Some(5000));
    assert!(devs.members.contains(&odie.id), "memberUid resolves too");
    assert_eq!(
        imp.objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Device)
            .count(),
        1
    );
    let wm = imp.watermark.clone().expect("modifyTimestamp watermark");

    // Delta: only entries modified at or after the watermark come back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ldap.modify(
        &dns[5],
        vec![ldap3::Mod::Replace(
            "mail",
            HashSet::from(["changed@contoso.test"]),
        )],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let delta = conn.import(&[ObjectKind::User], Some(&wm)).await.unwrap();
    assert!(!delta.full);
    assert!(
        delta
            .objects
            .iter()
            .any(|o| o.mail.as_deref() == Some("changed@contoso.test"))
    );
    assert!(
        delta.objects.len() <= 2,
        "a delta reads the changed entry (and at most the last one seen): {}",
        delta.objects.len()
    );
    assert!(delta.watermark.unwrap() > wm);

    let report = conn.test().await.unwrap();
    assert!(report.ok);
    assert_eq!(report.counts[0], (ObjectKind::User, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_is_wrong() {
    let Some((url, pw)) = env() else { return };
    let base = "dc=contoso,dc=test";
    let wrong = LdapConnector::new(
        cfg(&url, &pw, "contoso", base),
        Some(Secret::new("not-the-password")),
    );
    let e = wrong.test().await.unwrap_err();
    assert!(matches!(e, DirectoryError::BadCredentials { .. }), "{e}");
    assert!(e.to_string().contains("invalid credentials"), "{e}");

    let closed = format!("ldap://127.0.0.1:{}", {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let down = LdapConnector::new(
        cfg(&closed, &pw, "contoso", base),
        Some(Secret::new(pw.clone())),
    );
    let e = down.import(&[ObjectKind::User], None).await.unwrap_err();
    assert!(matches!(e, DirectoryError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("Is the server running"), "{e}");

    let nobase = LdapConnector::new(
        cfg(&url, &pw, "contoso", "ou=nowhere,dc=contoso,dc=test"),
        Some(Secret::new(pw.clone())),
    );
    let e = nobase.import(&[ObjectKind::User], None).await.unwrap_err();
    assert!(matches!(e, DirectoryError::BadBaseDn { .. }), "{e}");
    assert!(
        e.to_string().contains("dc=contoso,dc=test"),
        "names the server's contexts: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_create_and_update() {
    let Some((url, pw)) = env() else { return };
    let (mut ldap, base) = fresh_ou(&url, &pw, "fabrikam").await;
    add_user(&mut ldap, &base, "bob", "Bob", "bob@fabrikam.test", 20_001).await;
    let conn = LdapConnector::new(
        cfg(&url, &pw, "fabrikam", &base),
        Some(Secret::new(pw.clone())),
    );
    let before = conn
        .import(&[ObjectKind::User, ObjectKind::Group], None)
        .await
        .unwrap()
        .objects;
    let bob = before[0].clone();
    let writes = vec![
        Write::Create {
            kind: ObjectKind::User,
            source_id: "s-ann".into(),
            name: "Ann (*) Lee".into(),
            attributes: BTreeMap::from([
                ("name".into(), vec!["Ann (*) Lee".into()]),
                ("mail".into(), vec!["ann@fabrikam.test".into()]),
                ("upn".into(), vec!["ann@fabrikam.test".into()]),
            ]),
            members: vec![],
        },
        Write::Create {
            kind: ObjectKind::Group,
            source_id: "s-sales".into(),
            name: "Sales".into(),
            attributes: BTreeMap::new(),
            members: vec![bob.id.clone()],
        },
        Write::Create {
            kind: ObjectKind::Group,
            source_id: "s-empty".into(),
            name: "Empty".into(),
            attributes: BTreeMap::new(),
            members: vec![],
        },
        Write::Update {
            kind: ObjectKind::User,
            source_id: "s-bob".into(),
            target_id: bob.id.clone(),
            name: "Bob".into(),
            changes: vec![AttrChange {
                attribute: "mail".into(),
                old: vec!["bob@fabrikam.test".into()],
                new: vec!["robert@fabrikam.test".into()],
            }],
        },
        Write::Update {
            kind: ObjectKind::User,
            source_id: "s-x".into(),
            target_id: "no-such-id".into(),
            name: "X".into(),
            changes: vec![],
        },
    ];
    let r = conn.export(&writes, &before).await.unwrap();
    assert_eq!(r.applied, 4, "{:?}", r.failed);
    assert_eq!(
        r.failed.len(),
        1,
        "a bad write is reported, the others go on"
    );
    assert_eq!(r.failed[0].0, "s-x");
    let after = conn
        .import(&[ObjectKind::User, ObjectKind::Group], None)
        .await
        .unwrap()
        .objects;
    let ann = after
        .iter()
        .find(|o| o.name == "Ann (*) Lee")
        .expect("Ann created");
    assert_eq!(ann.mail.as_deref(), Some("ann@fabrikam.test"));
    assert_eq!(
        after
            .iter()
            .find(|o| o.id == bob.id)
            .unwrap()
            .mail
            .as_deref(),
        Some("robert@fabrikam.test")
    );
    let sales = after.iter().find(|o| o.name == "Sales").unwrap();
    assert_eq!(sales.members, vec![bob.id.clone()]);
    // Creating Ann again fails with the server's reason, not a panic.
    let again = conn.export(&writes[..1], &after).await.unwrap();
    assert_eq!(again.failed.len(), 1);
    assert!(
        again.failed[0].1.contains("already exists"),
        "{:?}",
        again.failed
    );
}

/// Entries shaped like real directories: non-ASCII names with commas, multi-valued attributes
/// (whose order the server keeps and so must ferry), a binary photo, long DN values; and a
/// referral object among them, which a subtree search returns as a continuation reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realistic_entries_binary_values_order_and_referrals() {
    let Some((url, pw)) = env() else { return };
    let (mut ldap, base) = fresh_ou(&url, &pw, "contoso").await;
    let cn = "Müller, Jürgen";
    let dn = format!("cn={},{base}", dn_escape(cn));
    let photo: Vec<u8> = [0xff, 0xd8, 0xff, 0xe0]
        .into_iter()
        .chain((0..3000u32).map(|i| (i * 7 % 256) as u8))
        .collect();
    let one = |v: &[u8]| HashSet::from([v.to_vec()]);
    ldap.add(
        &dn,
        vec![
            (
                b"objectClass".to_vec(),
                HashSet::from([b"inetOrgPerson".to_vec(), b"posixAccount".to_vec()]),
            ),
            (b"cn".to_vec(), one(cn.as_bytes())),
            (b"sn".to_vec(), one("Müller".as_bytes())),
            (b"uid".to_vec(), one(b"jmueller")),
            (b"displayName".to_vec(), one("Müller, Jürgen".as_bytes())),
            (b"mail".to_vec(), one(b"j.mueller@contoso.test")),
            (b"uidNumber".to_vec(), one(b"30001")),
            (b"gidNumber".to_vec(), one(b"100")),
            (b"homeDirectory".to_vec(), one(b"/home/jmueller")),
            (b"jpegPhoto".to_vec(), one(&photo)),
            (
                b"description".to_vec(),
                one("Vertrieb – Außendienst Süd".as_bytes()),
            ),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    // Values added one at a time are stored, and returned, in that order.
    let groups: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "cn=GG-Sales-EMEA-Field-{:02},ou=Security Groups,ou=Groups,ou=Corp,dc=contoso,dc=test",
                12 - i
            )
        })
        .collect();
    for g in &groups {
        ldap.modify(
            &dn,
            vec![ldap3::Mod::Add("seeAlso", HashSet::from([g.as_str()]))],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }
    ldap.add(
        &format!("ou=elsewhere,{base}"),
        vec![
            (
                "objectClass",
                HashSet::from(["referral", "extensibleObject"]),
            ),
            ("ou", HashSet::from(["elsewhere"])),
            (
                "ref",
                HashSet::from(["ldap://dc2.contoso.test/ou=elsewhere,dc=contoso,dc=test"]),
            ),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();

    let conn = LdapConnector::new(
        cfg(&url, &pw, "contoso", &base),
        Some(Secret::new(pw.clone())),
    );
    let imp = conn.import(&[ObjectKind::User], None).await.unwrap();
    assert_eq!(imp.objects.len(), 1, "the referral is not an object");
    assert!(imp.logs.is_empty(), "{:?}", imp.logs);
    let u = &imp.objects[0];
    assert_eq!(u.name, "Müller, Jürgen");
    // (slapd writes the escaped comma as \2C, dn_escape as \2c.)
    assert!(
        u.dn.as_deref().unwrap().eq_ignore_ascii_case(&dn),
        "{:?}",
        u.dn
    );
    assert_eq!(u.attr("cn"), Some(cn));
    assert_eq!(u.attr("description"), Some("Vertrieb – Außendienst Süd"));
    assert_eq!(u.uid_number, Some(30001));
    assert_eq!(u.attr("jpegPhoto"), None, "binary values are not kept");
    let see_also: Vec<&str> = u
        .attrs
        .iter()
        .filter(|(k, _)| k == "seeAlso")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(see_also, groups, "multi-valued attributes keep their order");
    let classes: Vec<&str> = u
        .attrs
        .iter()
        .filter(|(k, _)| k == "objectClass")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(classes.contains(&"posixAccount"), "{classes:?}");

    // A base DN that is itself a referral: the server's answer, with where it refers to.
    let referred = LdapConnector::new(
        cfg(&url, &pw, "contoso", &format!("ou=elsewhere,{base}")),
        Some(Secret::new(pw.clone())),
    );
    let e = referred
        .import(&[ObjectKind::User], None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("referral (result code 10)")
            && e.to_string().contains("ldap://dc2.contoso.test/"),
        "{e}"
    );
    // A filter the client cannot parse is the search's error, named.
    let mut bad = cfg(&url, &pw, "contoso", &base);
    bad.user_filter = Some("(cn=unclosed".into());
    let e = LdapConnector::new(bad, Some(Secret::new(pw.clone())))
        .import(&[ObjectKind::User], None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("(cn=unclosed"), "{e}");
}

/// The same slapd over its Unix socket (`FERRY_TEST_LDAPI_URL`, percent-encoded path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_over_ldapi() {
    let Some((url, pw)) = env() else { return };
    let Ok(ldapi) = std::env::var("FERRY_TEST_LDAPI_URL") else {
        assert_ne!(
            std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
            Ok("1"),
            "FERRY_TEST_LDAPI_URL is not set: run through scripts/test"
        );
        return;
    };
    let (mut ldap, base) = fresh_ou(&url, &pw, "contoso").await;
    for i in 0..3 {
        add_user(
            &mut ldap,
            &base,
            &format!("s{i}"),
            &format!("Socket {i}"),
            &format!("s{i}@contoso.test"),
            40_000 + i,
        )
        .await;
    }
    let conn = LdapConnector::new(
        cfg(&ldapi, &pw, "contoso", &base),
        Some(Secret::new(pw.clone())),
    );
    let imp = conn.import(&[ObjectKind::User], None).await.unwrap();
    assert_eq!(imp.objects.len(), 3);
    assert_eq!(conn.test().await.unwrap().counts[0], (ObjectKind::User, 3));
    let e = LdapConnector::new(
        cfg("ldapi://%2Fnonexistent%2Fldapi", &pw, "contoso", &base),
        Some(Secret::new(pw.clone())),
    )
    .import(&[ObjectKind::User], None)
    .await
    .unwrap_err();
    assert!(matches!(e, DirectoryError::Unreachable { .. }), "{e}");
}

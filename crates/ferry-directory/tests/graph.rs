//! The Graph connector end to end against `ferry-graph-sim`, a local server speaking Graph's
//! documented JSON: sign-in (secret, certificate, AADSTS errors), paging, delta with `@removed`
//! and 410, throttling, `$batch`, exports and the bad-input cases.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_core::ObjectKind;
use ferry_core::config::{Cloud, GraphDirectory, Secret};
use ferry_core::duration::HumanDuration;
use ferry_core::plan::{AttrChange, Write};
use ferry_directory::graph::GraphConnector;
use ferry_directory::{Connector, DirectoryError};
use ferry_graph_sim::{Fault, GraphSim, Res, SimOptions};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn cfg(sim: &GraphSim) -> GraphDirectory {
    GraphDirectory {
        name: "fabrikam".into(),
        tenant_id: sim.options().tenant.clone(),
        client_id: sim.options().client_id.clone(),
        client_secret: None,
        client_secret_file: None,
        certificate_file: None,
        private_key_file: None,
        cloud: Cloud::Global,
        object_types: vec![ObjectKind::User, ObjectKind::Group, ObjectKind::Device],
        login_url: Some(sim.url()),
        graph_url: Some(sim.url()),
        page_size: 999,
        max_attempts: 8,
        full_import_every: HumanDuration(Duration::from_secs(86_400)),
        timeout: HumanDuration(Duration::from_secs(30)),
        upn_domain: None,
    }
}

fn connector(sim: &GraphSim) -> GraphConnector {
    GraphConnector::new(
        cfg(sim),
        Path::new("."),
        Some(Secret::new(sim.options().client_secret.clone())),
    )
}

async fn sim(opts: SimOptions) -> GraphSim {
    GraphSim::start(opts, "127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn full_import_pages_groups_members_devices_and_caches_the_token() {
    let s = sim(SimOptions::default()).await;
    s.populate(0xab, 2_500, 45, 30);
    let mut c = cfg(&s);
    c.page_size = 700;
    let g = GraphConnector::new(c, Path::new("."), Some(Secret::new("sim-secret")));
    let kinds = [ObjectKind::User, ObjectKind::Group, ObjectKind::Device];
    let imp = g.import(&kinds, None).await.unwrap();
    assert!(imp.full);
    let count = |k| imp.objects.iter().filter(|o| o.kind == k).count();
    assert_eq!(
        (
            count(ObjectKind::User),
            count(ObjectKind::Group),
            count(ObjectKind::Device)
        ),
        (2_500, 45, 30)
    );
    // Users: the Entra SID, UPN, mail and the $select-only attributes.
    let u = imp.objects.iter().find(|o| o.name == "User 1234").unwrap();
    assert_eq!(u.upn.as_deref(), Some("user1234@fabrikam.test"));
    assert_eq!(u.sid, ferry_core::sid::entra_sid_from_object_id(&u.id).ok());
    assert_eq!(u.attr("employeeId"), Some("E0001234"));
    assert_eq!(
        u.attr("proxyAddresses"),
        Some("SMTP:user1234@fabrikam.test")
    );
    // Groups carry their members (read through $batch), devices their deviceId.
    let grp = imp.objects.iter().find(|o| o.name == "Group 7").unwrap();
    let mut want = s.members(&grp.id);
    let mut got = grp.members.clone();
    want.sort();
    got.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let d = imp.objects.iter().find(|o| o.name == "PC-00003").unwrap();
    assert!(d.attr("deviceId").is_some());
    let st = s.stats();
    assert_eq!(st.batches, 3, "45 groups in batches of 20: {st:?}");
    // Three "sync from now" delta links, 2,500 users at 700 a page (4 pages, not Graph's default
    // 25 of 100), one page of groups, one of devices, and the 45 member reads inside the batches.
    assert_eq!(st.graph_requests, 3 + 4 + 1 + 1 + 45, "{st:?}");
    // The watermark holds a deltaLink per kind.
    let w: BTreeMap<String, String> =
        serde_json::from_str(imp.watermark.as_deref().unwrap()).unwrap();
    assert_eq!(w.len(), 3);
    assert!(w["user"].contains("$deltatoken="));
    // A second import reuses the cached token.
    g.import(&[ObjectKind::User], None).await.unwrap();
    assert_eq!(s.stats().token_requests, 1);
}

#[tokio::test]
async fn delta_sees_changes_soft_and_hard_deletions_and_membership() {
    let s = sim(SimOptions {
        delta_page: 3,
        ..SimOptions::default()
    })
    .await;
    s.populate(0xcd, 20, 2, 0);
    let g = connector(&s);
    let kinds = [ObjectKind::User, ObjectKind::Group];
    let full = g.import(&kinds, None).await.unwrap();
    let uid = |n: usize| {
        full.objects
            .iter()
            .find(|o| o.name == format!("User {n}"))
            .unwrap()
            .id
            .clone()
    };
    let group = full
        .objects
        .iter()
        .find(|o| o.kind == ObjectKind::Group)
        .unwrap()
        .id
        .clone();
    // Changes after the full import: a rename, a soft delete, a hard delete, a new user, and a
    // membership change.
    let mut u3 = s.object(Res::Users, &uid(3)).unwrap();
    u3["displayName"] = json!("Renamed Three");
    s.put(Res::Users, u3);
    s.delete(Res::Users, &uid(4), true);
    s.delete(Res::Users, &uid(5), false);
    s.put(
        Res::Users,
        json!({"id": "aaaaaaaa-0000-4000-8000-000000000001", "displayName": "New Person",
               "userPrincipalName": "new@fabrikam.test", "mail": "new@fabrikam.test"}),
    );
    s.set_members(&group, vec![uid(1), uid(2)]);
    let delta = g.import(&kinds, full.watermark.as_deref()).await.unwrap();
    assert!(!delta.full);
    let names: Vec<&str> = delta.objects.iter().map(|o| o.name.as_str()).collect();
    assert!(names.contains(&"Renamed Three"), "{names:?}");
    assert!(names.contains(&"New Person"), "{names:?}");
    let mut removed = delta.removed.clone();
    removed.sort();
    let mut want = vec![(ObjectKind::User, uid(4)), (ObjectKind::User, uid(5))];
    want.sort();
    assert_eq!(removed, want);
    let logs: Vec<&str> = delta.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(logs.iter().any(|m| m.contains("soft-deleted")), "{logs:?}");
    let g2 = delta.objects.iter().find(|o| o.id == group).unwrap();
    let mut m = g2.members.clone();
    m.sort();
    let mut w = vec![uid(1), uid(2)];
    w.sort();
    assert_eq!(m, w);
    // Unchanged objects are not in the delta; a second delta with no change is empty.
    assert!(delta.objects.len() <= 4, "{names:?}");
    let again = g.import(&kinds, delta.watermark.as_deref()).await.unwrap();
    assert!(again.objects.is_empty() && again.removed.is_empty());
}

#[tokio::test]
async fn expired_delta_token_falls_back_to_a_full_import() {
    let s = sim(SimOptions::default()).await;
    s.populate(0x11, 50, 0, 0);
    let g = connector(&s);
    let full = g.import(&[ObjectKind::User], None).await.unwrap();
    s.set_fault(Some(Fault::ExpireDeltas));
    let next = g
        .import(&[ObjectKind::User], full.watermark.as_deref())
        .await;
    // Every delta link is expired, including the fresh one a full import takes: a clear error.
    let err = next.unwrap_err().to_string();
    assert!(err.contains("delta token expired or was reset"), "{err}");
    // Expired only once: the fallback full import succeeds and says why it ran.
    s.set_fault(None);
    let s2 = sim(SimOptions::default()).await;
    s2.populate(0x12, 50, 0, 0);
    let g2 = connector(&s2);
    let full = g2.import(&[ObjectKind::User], None).await.unwrap();
    let stale = full
        .watermark
        .unwrap()
        .replace("$deltatoken=", "$deltatoken=x");
    let imp = g2.import(&[ObjectKind::User], Some(&stale)).await.unwrap();
    assert!(imp.full);
    assert_eq!(imp.objects.len(), 50);
    assert!(
        imp.logs.iter().any(|l| l.code == "delta-reset"),
        "{:?}",
        imp.logs
    );
}

#[tokio::test]
async fn throttled_requests_are_retried_and_logged() {
    let s = sim(SimOptions {
        throttle_every: 10,
        retry_after: "0.1".into(),
        ..SimOptions::default()
    })
    .await;
    s.populate(0x22, 3_000, 60, 0);
    let mut c = cfg(&s);
    c.page_size = 100;
    let g = GraphConnector::new(c, Path::new("."), Some(Secret::new("sim-secret")));
    let imp = g
        .import(&[ObjectKind::User, ObjectKind::Group], None)
        .await
        .unwrap();
    assert_eq!(imp.objects.len(), 3_060);
    let throttled = s.stats().throttled;
    assert!(throttled >= 3, "{:?}", s.stats());
    assert_eq!(g.retries(), throttled);
    let logged = imp.logs.iter().filter(|l| l.code == "throttled").count() as u64;
    assert_eq!(logged, throttled);
    assert!(
        imp.logs
            .iter()
            .any(|l| l.message.contains("retrying in 0.1 s") && l.message.contains("scope")),
        "{:?}",
        imp.logs
    );
    // Members read in $batch despite items throttled inside it.
    assert!(
        imp.objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Group)
            .all(|o| !o.members.is_empty())
    );
}

#[tokio::test]
async fn sign_in_errors_name_the_aadsts_code_and_what_to_do() {
    let s = sim(SimOptions::default()).await;
    let bad_secret = GraphConnector::new(cfg(&s), Path::new("."), Some(Secret::new("nope")));
    let e = bad_secret.test().await.unwrap_err().to_string();
    assert!(
        e.contains("AADSTS7000215") && e.contains("client secret is wrong"),
        "{e}"
    );
    assert!(!e.contains("nope"), "the secret leaked: {e}");
    let mut c = cfg(&s);
    c.tenant_id = "contoso.onmicrosoft.com".into();
    let e = GraphConnector::new(c, Path::new("."), Some(Secret::new("sim-secret")))
        .test()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("AADSTS90002") && e.contains("tenant does not exist"),
        "{e}"
    );
    let mut c = cfg(&s);
    c.client_id = "22222222-2222-4222-8222-222222222222".into();
    let e = GraphConnector::new(c, Path::new("."), Some(Secret::new("sim-secret")))
        .test()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("AADSTS700016"), "{e}");
    // Unreachable.
    let mut c = cfg(&s);
    c.login_url = Some("http://127.0.0.1:9".into());
    let e = GraphConnector::new(c, Path::new("."), Some(Secret::new("sim-secret")))
        .test()
        .await
        .unwrap_err();
    assert!(matches!(e, DirectoryError::Unreachable { .. }), "{e}");
    // The happy path reports counts.
    s.populate(0x33, 7, 2, 1);
    let r = connector(&s).test().await.unwrap();
    assert_eq!(
        r.counts,
        vec![
            (ObjectKind::User, 7),
            (ObjectKind::Group, 2),
            (ObjectKind::Device, 1)
        ]
    );
}

#[tokio::test]
async fn bad_answers_give_clear_errors() {
    let s = sim(SimOptions::default()).await;
    s.populate(0x44, 30, 0, 0);
    let g = connector(&s);
    s.set_fault(Some(Fault::Forbidden));
    let e = g
        .import(&[ObjectKind::User], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("403")
            && e.contains("Authorization_RequestDenied")
            && e.contains("User.Read.All"),
        "{e}"
    );
    s.set_fault(Some(Fault::MalformedJson));
    let e = g
        .import(&[ObjectKind::User], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not the JSON page") && e.contains("line 1"),
        "{e}"
    );
    s.set_fault(Some(Fault::EndlessPaging));
    let mut c = cfg(&s);
    c.page_size = 10;
    let e = GraphConnector::new(c, Path::new("."), Some(Secret::new("sim-secret")))
        .import(&[ObjectKind::User], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("paging would never end"), "{e}");
    s.set_fault(Some(Fault::ServerError));
    let mut c = cfg(&s);
    c.max_attempts = 2;
    let e = GraphConnector::new(c, Path::new("."), Some(Secret::new("sim-secret")))
        .import(&[ObjectKind::User], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("500"), "{e}");
}

#[tokio::test]
async fn export_creates_users_and_groups_updates_and_adds_members() {
    let s = sim(SimOptions::default()).await;
    s.populate(0x55, 3, 1, 0);
    let g = connector(&s);
    let before = g
        .import(&[ObjectKind::User, ObjectKind::Group], None)
        .await
        .unwrap();
    let u0 = before.objects.iter().find(|o| o.name == "User 0").unwrap();
    let u1 = before.objects.iter().find(|o| o.name == "User 1").unwrap();
    let grp = before
        .objects
        .iter()
        .find(|o| o.kind == ObjectKind::Group)
        .unwrap();
    let attrs = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    };
    let writes = vec![
        Write::Create {
            kind: ObjectKind::User,
            source_id: "src-ann".into(),
            name: "Ann Example".into(),
            attributes: attrs(&[
                ("upn", "ann@fabrikam.test"),
                ("mail", "ann@fabrikam.test"),
                ("employeeId", "E-ANN"),
            ]),
            members: vec![],
        },
        Write::Create {
            kind: ObjectKind::Group,
            source_id: "src-sales".into(),
            name: "Sales \"EMEA\" <ü>".into(),
            attributes: BTreeMap::new(),
            members: vec![u0.id.clone(), u1.id.clone()],
        },
        // A user whose UPN already exists fails alone.
        Write::Create {
            kind: ObjectKind::User,
            source_id: "src-dup".into(),
            name: "User 2".into(),
            attributes: attrs(&[("upn", "user2@fabrikam.test")]),
            members: vec![],
        },
        Write::Update {
            kind: ObjectKind::User,
            source_id: "src-u0".into(),
            target_id: u0.id.clone(),
            name: u0.name.clone(),
            changes: vec![AttrChange {
                attribute: "employeeId".into(),
                old: vec![],
                new: vec!["E-NEW".into()],
            }],
        },
        Write::Update {
            kind: ObjectKind::Group,
            source_id: "src-grp".into(),
            target_id: grp.id.clone(),
            name: grp.name.clone(),
            changes: vec![AttrChange {
                attribute: "members".into(),
                old: grp.members.clone(),
                new: vec![u0.id.clone(), u1.id.clone()],
            }],
        },
    ];
    let report = g.export(&writes, &before.objects).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, "src-dup");
    assert!(report.failed[0].1.contains("already exists"));
    assert_eq!(report.applied, 4);
    // The created user exists with an initial password handed back (and not logged).
    let ann = s
        .objects(Res::Users)
        .into_iter()
        .find(|u| u["userPrincipalName"] == "ann@fabrikam.test")
        .unwrap();
    assert_eq!(ann["employeeId"], "E-ANN");
    assert_eq!(ann["mailNickname"], "ann");
    assert_eq!(report.initial_passwords.len(), 1);
    let pw = report.initial_passwords[0].1.expose().to_string();
    assert!(report.logs.iter().all(|l| !l.message.contains(&pw)));
    // The group was created as a security group with both members; hostile names round-trip.
    let sales = s
        .objects(Res::Groups)
        .into_iter()
        .find(|x| x["displayName"] == "Sales \"EMEA\" <ü>")
        .unwrap();
    assert_eq!(sales["securityEnabled"], true);
    let mut m = s.members(sales["id"].as_str().unwrap());
    m.sort();
    let mut want = vec![u0.id.clone(), u1.id.clone()];
    want.sort();
    assert_eq!(m, want);
    assert_eq!(s.object(Res::Users, &u0.id).unwrap()["employeeId"], "E-NEW");
    let mut gm = s.members(&grp.id);
    gm.sort();
    assert_eq!(gm, want);
}

#[tokio::test]
async fn certificate_credentials_sign_a_ps256_assertion() {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=ferry-test",
            "-days",
            "2",
        ])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The simulator verifies with the key's public half.
    let pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let der = {
        use base64::Engine as _;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    use ring::signature::KeyPair;
    let public = pair.public_key().as_ref().to_vec();
    let s = sim(SimOptions {
        public_key_der: Some(public),
        ..SimOptions::default()
    })
    .await;
    s.populate(0x66, 5, 0, 0);
    let mut c = cfg(&s);
    c.certificate_file = Some("cert.pem".into());
    c.private_key_file = Some("key.pem".into());
    let g = GraphConnector::new(c.clone(), dir.path(), None);
    let imp = g.import(&[ObjectKind::User], None).await.unwrap();
    assert_eq!(imp.objects.len(), 5);
    // A different key is refused with AADSTS700027.
    let other = sim(SimOptions {
        public_key_der: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        ..SimOptions::default()
    })
    .await;
    let mut c2 = cfg(&other);
    c2.certificate_file = c.certificate_file;
    c2.private_key_file = c.private_key_file;
    let e = GraphConnector::new(c2, dir.path(), None)
        .test()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("AADSTS700027"), "{e}");
}

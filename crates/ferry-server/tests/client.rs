//! The typed client (`ferry-client`) against a live server: what it reads decodes into the wire
//! types the server writes, and errors carry the server's status and message.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use ferry_client::wire::NewPsk;
use ferry_client::{Client, Error, LogsQuery, TranslationQuery, WhatIfQuery};
use ferry_core::ObjectKind;
use ferry_core::snapshot::render_json;
use ferry_core::state::{CyclePhase, CycleStatus};
use ferry_demo as sample;

fn config() -> String {
    format!(
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
         [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{}",
        sample::QUICKSTART_RULES
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_reads_a_cycle_its_reports_and_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = sample::generate(300, true, 5);
    std::fs::write(dir.path().join("contoso.json"), render_json(&s.source)).unwrap();
    std::fs::write(dir.path().join("fabrikam.json"), render_json(&s.target)).unwrap();
    let h = support::start(dir.path(), &config()).await;
    let c = Client::new(&h.url, Some(h.token.clone())).unwrap();

    let dirs = c.directories().await.unwrap();
    let names: Vec<&str> = dirs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["contoso", "fabrikam"]);
    assert!(c.test_directory("contoso").await.unwrap().ok);
    assert_eq!(c.me().await.unwrap().role, "admin");

    let started = c.run("users", true).await.unwrap();
    let cycle = started.cycle.clone().unwrap();
    assert_eq!(cycle.id, started.cycle_id);
    assert_eq!(cycle.status().unwrap(), CycleStatus::Succeeded);
    assert_eq!(cycle.phase().unwrap(), CyclePhase::Done);
    assert_eq!(c.cycle(cycle.id).await.unwrap(), cycle);
    assert_eq!(c.cycles(Some("users"), Some(5)).await.unwrap()[0], cycle);
    let profiles = c.profiles().await.unwrap();
    assert_eq!(profiles[0].last_cycle.as_ref(), Some(&cycle));

    let w = c
        .whatif(
            "users",
            &WhatIfQuery {
                limit: Some(10),
                ..WhatIfQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(w.plan.cycle_id, cycle.id);
    assert!(w.decisions.len() <= 10 && w.decisions_total >= w.decisions.len() as i64);

    let ann = &s.source[0];
    let page = c
        .translation(&TranslationQuery {
            q: ann.upn.clone(),
            ..TranslationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.entries[0].source_sid, ann.sid);
    let entries = c
        .translation_entries(Some("users"), Some(ObjectKind::User))
        .await
        .unwrap();
    assert!(entries.iter().any(|e| e.source_id == ann.id));
    assert!(entries.iter().all(|e| e.kind == ObjectKind::User));
    let report = c.object_report(ann.sid.as_deref().unwrap()).await.unwrap();
    assert_eq!(report.objects[0].directory, "contoso");
    assert_eq!(report.objects[0].profiles[0].side, "source");
    let logs = c
        .logs(&LogsQuery {
            cycle: Some(cycle.id),
            limit: Some(50),
            ..LogsQuery::default()
        })
        .await
        .unwrap();
    assert!(logs.iter().all(|l| l.cycle_id == Some(cycle.id)) && !logs.is_empty());

    let key = c
        .create_psk(&NewPsk {
            name: "wave-1".into(),
            uses: Some(1),
            device: None,
        })
        .await
        .unwrap();
    assert!(!key.key.is_empty());
    assert_eq!(c.psks().await.unwrap(), vec![key.psk.clone()]);

    // Errors: the server's status and message.
    match c.cycle(987_654).await.unwrap_err() {
        Error::Api { status, message } => {
            assert_eq!(status, 404);
            assert!(!message.is_empty());
        }
        other => panic!("expected a 404, got {other}"),
    }
    let e = c.run("nope", false).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    let anon = Client::new(&h.url, None).unwrap();
    let e = anon.profiles().await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(e.to_string().contains("give --token or FERRY_TOKEN"), "{e}");
}

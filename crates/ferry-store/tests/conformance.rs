//! One conformance suite for every Store backend: each test runs on SQLite (a temporary file) and on
//! PostgreSQL (a fresh schema in the database named by `FERRY_TEST_DATABASE_URL`, which
//! `scripts/test` starts). Without that variable the PostgreSQL half is skipped with a message,
//! unless `FERRY_REQUIRE_SERVERS=1` (set by `scripts/test` and CI), which makes it fail instead.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_core::ObjectKind;
use ferry_core::config::Config;
use ferry_core::model::DirObject;
use ferry_core::plan::{self, Level, LogEntry, Status};
use ferry_store::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

struct Guard(#[allow(dead_code)] Option<tempfile::TempDir>);

fn sqlite_store() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let s = sqlite::SqliteStore::open(&dir.path().join("ferry.db")).unwrap();
    (Arc::new(s), Guard(Some(dir)))
}

static SCHEMA: AtomicU32 = AtomicU32::new(0);

async fn pg_store() -> Option<(Arc<dyn Store>, Guard)> {
    let Ok(url) = std::env::var("FERRY_TEST_DATABASE_URL") else {
        if std::env::var("FERRY_REQUIRE_SERVERS").as_deref() == Ok("1") {
            panic!(
                "FERRY_TEST_DATABASE_URL is not set but FERRY_REQUIRE_SERVERS=1: run the tests through scripts/test"
            );
        }
        eprintln!(
            "skipping the PostgreSQL half: FERRY_TEST_DATABASE_URL is not set (scripts/test sets it)"
        );
        return None;
    };
    let schema = format!(
        "conf_{}_{}",
        std::process::id(),
        SCHEMA.fetch_add(1, Ordering::SeqCst)
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = postgres::PgStore::connect(&format!("{url}{sep}options=-csearch_path%3D{schema}"))
        .await
        .unwrap();
    Some((Arc::new(store), Guard(None)))
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (s, _g) = super::sqlite_store();
                super::$name(&*s).await;
            })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((s, _g)) = super::pg_store().await else { return };
                super::$name(&*s).await;
            })*
        }
    };
}

conformance!(
    tokens,
    a_migrated_database_is_at_this_builds_schema,
    audit_export_pages,
    sessions_operators_and_sign_in_failures,
    leases_elect_one_holder,
    slots_are_claimed_once,
    cycle_lifecycle,
    sync_commit_round_trip,
    aborted_cycle_commits_nothing,
    logs_filter_and_page,
    hostile_values_round_trip,
    bulk_commits_keep_indexes_and_roll_back_whole,
    a_restarted_server_recovers_its_own_cycles_only,
    enrolment_tokens_store_content_and_revoke,
    devices_psks_agents_runs_batches,
    environment_documents_and_audit,
    environment_records_remap_in_one_go,
    agents_page_count_and_group_by_state,
    single_use_psks_admit_one_enrollment_under_a_race,
    held_enrollments_replace_nothing_until_approved,
    devices_are_found_by_name_in_their_directory_only,
    objects_are_read_by_id_in_their_directory_and_kind,
    translation_search_finds_what_a_scan_finds,
    index_search_equals_scan_search_for_random_values,
    decision_pages_after_a_cursor_skip_and_repeat_nothing,
    sorted_decision_pages_follow_code_point_order,
    sorted_agent_audit_log_and_failure_pages,
    a_cycles_progress_ends_with_it_however_it_ends,
    non_ascii_host_names_are_one_computer_whatever_their_case,
    postgres_finds_a_name_searched_as_it_is_written
);

/// Catches: the agent claim check (agents list, dashboard, orders) finding a user or another
/// directory's computer of the device's name, missing a name that differs in case, or scanning
/// every object of a directory per agent (the 178 s dashboard of a million-object directory).
async fn devices_are_found_by_name_in_their_directory_only(s: &dyn Store) {
    let dev = |id: &str, name: &str| DirObject::new(ObjectKind::Device, id, name);
    let src = vec![
        dev("d-1", "PC-0001"),
        dev("d-2", "ÉCOLE-02"),
        dev("d-3", "pc-0003.corp.contoso.test"),
        DirObject::new(ObjectKind::User, "u-1", "pc-0004"),
        DirObject::new(ObjectKind::User, "u-2", "Smith, Ann"),
    ];
    let tgt = vec![dev("t-1", "pc-0001")];
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(s, c, &src, &tgt).await.unwrap();
    let ids = |v: Vec<DirObject>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
    let named = |d: &'static str, n: &'static [&'static str]| s.devices_named(d, n);
    assert_eq!(
        ids(named("contoso", &["pc-0001.corp", "pc-0001"])
            .await
            .unwrap()),
        ["d-1"]
    );
    assert_eq!(ids(named("contoso", &["école-02"]).await.unwrap()), ["d-2"]);
    assert_eq!(
        ids(named("contoso", &["PC-0003.CORP.CONTOSO.TEST", "pc-0003"])
            .await
            .unwrap()),
        ["d-3"]
    );
    assert!(
        named("contoso", &["pc-0004"]).await.unwrap().is_empty(),
        "a user is no computer"
    );
    assert!(named("contoso", &["pc-0009"]).await.unwrap().is_empty());
    assert!(named("contoso", &[]).await.unwrap().is_empty());
    assert_eq!(ids(named("fabrikam", &["PC-0001"]).await.unwrap()), ["t-1"]);
    assert!(named("nowhere", &["pc-0001"]).await.unwrap().is_empty());
}

/// Catches: the What-If's and the report's candidates read from another directory or kind,
/// an id matched by its case or as a name, a missing id failing the whole read.
async fn objects_are_read_by_id_in_their_directory_and_kind(s: &dyn Store) {
    let user = |id: &str, name: &str| DirObject::new(ObjectKind::User, id, name);
    let mut ann = user("u-1", "Smith, Ann");
    ann.upn = Some("ann.smith@contoso.test".into());
    let src = vec![
        ann,
        user("u-2", "Müller, José \"Pepe\""),
        user("U-3", "=HYPERLINK(\"x\")"),
        DirObject::new(ObjectKind::Group, "u-4", "u-1"),
    ];
    let tgt = vec![user("u-2", "Smith, Ann (HR)")];
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(s, c, &src, &tgt).await.unwrap();
    let read = |d: &'static str, k: ObjectKind, ids: &'static [&'static str]| async move {
        s.objects_by_id(d, k, ids)
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.id, o.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read("contoso", ObjectKind::User, &["u-2", "gone", "u-1"]).await,
        [
            ("u-1".to_string(), "Smith, Ann".to_string()),
            ("u-2".to_string(), "Müller, José \"Pepe\"".to_string())
        ]
    );
    let got = s
        .objects_by_id("contoso", ObjectKind::User, &["u-1"])
        .await
        .unwrap();
    assert_eq!(got[0].upn.as_deref(), Some("ann.smith@contoso.test"));
    assert!(
        read("contoso", ObjectKind::User, &["u-3", "Smith, Ann"])
            .await
            .is_empty(),
        "ids are exact: not by case, not by name"
    );
    assert_eq!(
        read("fabrikam", ObjectKind::User, &["u-2"]).await,
        [("u-2".to_string(), "Smith, Ann (HR)".to_string())]
    );
    assert_eq!(
        read("contoso", ObjectKind::Group, &["u-4", "u-1"])
            .await
            .len(),
        1
    );
    assert!(read("contoso", ObjectKind::User, &[]).await.is_empty());
}

async fn agents_page_count_and_group_by_state(s: &dyn Store) {
    use ferry_core::agent::{AgentEvent, DeviceFacts};
    use ferry_store::AgentQuery;
    let k = s.add_psk("k", "hash-k", None, None, 1).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let facts = DeviceFacts {
            device_id: format!("dev-{i:02}"),
            hostname: format!("PC-{i:02}"),
            os: "linux".into(),
            os_version: "12".into(),
            agent_version: "0.1.0".into(),
            directory_object_id: None,
            joined_to: None,
        };
        let node = format!("node-{i}");
        let a = s
            .enroll_agent(&Enrollment {
                facts: &facts,
                profiles: &[],
                node_hash: &node,
                psk_id: k.id,
                now: 10,
                address: None,
                replaces: None,
            })
            .await
            .unwrap();
        ids.push(a.id);
    }
    // Agents 0..10 report `running` at 100, the rest stay `enrolled` with their last contact at 10.
    let contacts: Vec<Contact> = ids[..10]
        .iter()
        .map(|&id| Contact {
            agent_id: id,
            at: 100,
            address: None,
            state: Some("running".into()),
            agent_version: None,
        })
        .collect();
    s.record_contacts(&contacts).await.unwrap();
    // PC-00..PC-04 are in batch wave-1: added as typed (PC-00 in capitals, the rest in lower
    // case), matched to their agents whatever the case.
    let comps: Vec<String> = (0..5)
        .map(|i| {
            if i == 0 {
                "PC-00".into()
            } else {
                format!("pc-{i:02}")
            }
        })
        .collect();
    s.add_batch_computers("wave-1", &comps, 1).await.unwrap();
    // Live agents' host names, in lower case: pc-99 has none.
    let mut live = s
        .live_hostnames(&["pc-00".into(), "pc-29".into(), "pc-99".into()])
        .await
        .unwrap();
    live.sort();
    assert_eq!(live, ["pc-00", "pc-29"]);
    // Every live agent's host-name key (lower case, as batches key their computers) with its
    // state, for the overview's devices by state: PC-00..PC-09 run, the rest are enrolled.
    // Catches a key in another case (no batch would meet it) or a state from another agent.
    let mut states = s.live_agent_states().await.unwrap();
    states.sort();
    let want: Vec<(String, String)> = (0..30)
        .map(|i| {
            let state = if i < 10 { "running" } else { "enrolled" };
            (format!("pc-{i:02}"), state.to_string())
        })
        .collect();
    assert_eq!(states, want);

    let page = |q: AgentQuery| async move { s.agents_page(&q).await.unwrap() };
    let p = page(AgentQuery {
        offset: 10,
        limit: 5,
        ..Default::default()
    })
    .await;
    assert_eq!(p.iter().map(|a| a.id).collect::<Vec<_>>(), ids[10..15]);
    // Keyset paging: after the last id of a page, the next ones, whatever the offset says.
    let p = page(AgentQuery {
        after: Some(ids[14]),
        offset: 3,
        limit: 5,
        ..Default::default()
    })
    .await;
    assert_eq!(p.iter().map(|a| a.id).collect::<Vec<_>>(), ids[15..20]);
    assert_eq!(s.count_agents(&AgentQuery::default()).await.unwrap(), 30);
    let q = AgentQuery {
        search: Some("pc-1".into()),
        ..Default::default()
    };
    assert_eq!(s.count_agents(&q).await.unwrap(), 10, "search ignores case");
    let q = AgentQuery {
        search: Some("_".into()),
        ..Default::default()
    };
    assert_eq!(
        s.count_agents(&q).await.unwrap(),
        0,
        "`_` is not a wildcard"
    );
    let q = AgentQuery {
        state: Some("running".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(page(q.clone()).await.len(), 10);
    let q = AgentQuery {
        silent_before: Some(50),
        ..Default::default()
    };
    assert_eq!(s.count_agents(&q).await.unwrap(), 20);
    let q = AgentQuery {
        batch: Some("wave-1".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        page(q)
            .await
            .iter()
            .map(|a| a.hostname.clone())
            .collect::<Vec<_>>(),
        ["PC-00", "PC-01", "PC-02", "PC-03", "PC-04"]
    );
    assert_eq!(
        s.agent_states(None).await.unwrap(),
        [("enrolled".to_string(), 20), ("running".to_string(), 10)]
    );
    assert_eq!(
        s.agent_states(Some("wave-1")).await.unwrap(),
        [("running".to_string(), 5)]
    );
    assert_eq!(s.agent_states(Some("none")).await.unwrap(), []);
    // A wave's canary by host name (lower case, as batches keep computers); more names than
    // one statement takes; only agents handed the wave's run (`w-{id}-1`) count (would catch a
    // device verified in one batch counting as the finished canary of the next).
    let wave = ferry_store::RunName {
        prefix: "w-",
        suffix: "-1",
    };
    let mut names: Vec<String> = (0..300).map(|i| format!("pc-{i:02}")).collect();
    names.push("nope".into());
    assert!(s.agent_states_of(&names, &wave).await.unwrap().is_empty());
    for (i, id) in ids.iter().enumerate() {
        let run = if i == 29 {
            "pilot-1-1".to_string()
        } else {
            wave.of(*id)
        };
        s.assign_run(*id, &run, &["a".into()]).await.unwrap();
    }
    let mut states = s.agent_states_of(&names, &wave).await.unwrap();
    states.sort();
    assert_eq!(states.len(), 29);
    assert_eq!(
        states[0],
        ("pc-00".to_string(), "running".to_string(), ids[0])
    );
    assert_eq!(
        states[15],
        ("pc-15".to_string(), "enrolled".to_string(), ids[15])
    );
    assert!(s.agent_states_of(&[], &wave).await.unwrap().is_empty());
    assert_eq!(s.agent(ids[3]).await.unwrap().unwrap().hostname, "PC-03");
    assert!(s.agent(-1).await.unwrap().is_none());
    // The newest event of each listed agent only.
    let ev = |step: &str| AgentEvent {
        at: 1,
        step: step.into(),
        status: "succeeded".into(),
        message: String::new(),
        progress: Some(50),
    };
    s.add_agent_events(ids[0], "r", &[ev("a"), ev("b")], 2)
        .await
        .unwrap();
    s.add_agent_events(ids[1], "r", &[ev("c")], 2)
        .await
        .unwrap();
    let l = s.latest_events_of(&[ids[0], ids[2]]).await.unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].agent_id, l[0].event.step.as_str()), (ids[0], "b"));
    assert!(s.latest_events_of(&[]).await.unwrap().is_empty());
    // A batch's states with those handed its run (would catch a wave counting as running, or
    // as finished, devices never handed its run, or handed another batch's).
    s.assign_run(ids[1], "pilot-1-1", &["a".into()])
        .await
        .unwrap();
    s.assign_run(ids[3], "w-x-1", &["a".into()]).await.unwrap();
    s.assign_run(ids[4], "w-1", &["a".into()]).await.unwrap();
    s.record_contacts(&[Contact {
        agent_id: ids[2],
        at: 200,
        address: None,
        state: Some("verified".into()),
        agent_version: None,
    }])
    .await
    .unwrap();
    assert_eq!(
        s.batch_agent_states("wave-1", &wave).await.unwrap(),
        [
            ("running".to_string(), 4, 1),
            ("verified".to_string(), 1, 1)
        ]
    );
    assert_eq!(s.batch_agent_states("none", &wave).await.unwrap(), []);
    // Its agents on its run in some states, by id (a resume accepts failed devices by id).
    assert_eq!(
        s.batch_agents_in("wave-1", &wave, &["verified", "failed"])
            .await
            .unwrap(),
        [ids[2]]
    );
    assert!(
        s.batch_agents_in("wave-1", &wave, &["running"])
            .await
            .unwrap()
            == [ids[0]]
    );
    assert!(
        s.batch_agents_in("wave-1", &wave, &[])
            .await
            .unwrap()
            .is_empty()
    );
    // Two contacts of one agent in one millisecond: the one recorded last is its state (would
    // catch a run's last event, `succeeded`, overwriting the check-in after it, `verified`).
    let at = |state: &str| Contact {
        agent_id: ids[3],
        at: 300,
        address: None,
        state: Some(state.into()),
        agent_version: None,
    };
    s.record_contacts(&[at("succeeded"), at("verified")])
        .await
        .unwrap();
    assert_eq!(s.agent(ids[3]).await.unwrap().unwrap().state, "verified");
}

async fn environment_records_remap_in_one_go(s: &dyn Store) {
    use ferry_store::EnvRecord;
    let r = |id: &str, o: &str, c: &str, m: &str| EnvRecord {
        id: id.into(),
        owner: o.into(),
        created_by: c.into(),
        modified_by: m.into(),
    };
    let recs: Vec<EnvRecord> = (0..2500)
        .map(|i| {
            r(
                &format!("r{i:05}"),
                &format!("u{}@contoso.test", i % 10),
                "Ann@Contoso.test",
                "system",
            )
        })
        .collect();
    s.put_env_records("sales", &recs).await.unwrap();
    s.put_env_records(
        "other",
        &[r(
            "x",
            "u1@contoso.test",
            "u1@contoso.test",
            "u1@contoso.test",
        )],
    )
    .await
    .unwrap();
    assert_eq!(s.count_env_records("sales").await.unwrap(), 2500);
    let map = vec![
        (
            "ann@contoso.test".to_string(),
            "ann@fabrikam.test".to_string(),
        ),
        (
            "U1@contoso.test".to_string(),
            "u1@fabrikam.test".to_string(),
        ),
    ];
    // The hand-over: environment documents, the move's state (compare-and-swap), the records
    // and the audit line in one transaction.
    s.put_document(DocKind::EnvMove, "m1", "{\"state\":\"migrating\"}", 1)
        .await
        .unwrap();
    s.put_document(DocKind::Environment, "sales", "{\"tenant\":\"contoso\"}", 1)
        .await
        .unwrap();
    let audit = AuditEntry {
        id: 0,
        at: 5,
        actor: "src".into(),
        tenant: Some("contoso".into()),
        action: "env.move.migrate".into(),
        subject: "m1".into(),
        detail: "completed".into(),
        address: Some("192.0.2.7".into()),
        request_id: Some("req-m1".into()),
    };
    let envs = vec![
        ("sales".to_string(), "{\"tenant\":\"fabrikam\"}".to_string()),
        (
            "sales-m1".to_string(),
            "{\"tenant\":\"contoso\"}".to_string(),
        ),
    ];
    let hand_over = |read: &'static str, body: &'static str| HandOver {
        environments: &envs,
        move_name: "m1",
        move_read: read,
        move_body: body,
        records_env: "sales",
        remap: &map,
        audit: &audit,
        now: 5,
    };
    // A request another server changed meanwhile: nothing at all is written.
    assert_eq!(
        s.hand_over(&hand_over(
            "{\"state\":\"validated\"}",
            "{\"state\":\"completed\"}"
        ))
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        s.env_records("sales", 0, 1).await.unwrap()[0].created_by,
        "Ann@Contoso.test"
    );
    assert_eq!(s.documents(DocKind::Environment).await.unwrap().len(), 1);
    assert!(
        s.audit(None, 10)
            .await
            .unwrap()
            .iter()
            .all(|a| a.subject != "m1")
    );
    assert_eq!(
        s.hand_over(&hand_over(
            "{\"state\":\"migrating\"}",
            "{\"state\":\"completed\"}"
        ))
        .await
        .unwrap()
        .map(|h| h.records),
        Some(2500),
        "every record names Ann"
    );
    assert_eq!(
        s.documents(DocKind::Environment).await.unwrap(),
        envs,
        "the environment is the target's, the remnant the source's"
    );
    assert_eq!(
        s.documents(DocKind::EnvMove).await.unwrap()[0].1,
        "{\"state\":\"completed\"}"
    );
    let line = &s.audit(None, 1).await.unwrap()[0];
    assert_eq!(
        (
            line.detail.as_str(),
            line.address.as_deref(),
            line.request_id.as_deref()
        ),
        ("completed", Some("192.0.2.7"), Some("req-m1")),
        "the hand-over's audit line keeps where the act came from"
    );
    let page = s.env_records("sales", 0, 3).await.unwrap();
    assert_eq!(
        page[0],
        r("r00000", "u0@contoso.test", "ann@fabrikam.test", "system"),
        "unmapped users stay"
    );
    assert_eq!(
        page[1],
        r("r00001", "u1@fabrikam.test", "ann@fabrikam.test", "system")
    );
    assert_eq!(
        s.env_records("other", 0, 10).await.unwrap()[0].owner,
        "u1@contoso.test",
        "other environments untouched"
    );
    assert_eq!(
        s.hand_over(&hand_over(
            "{\"state\":\"completed\"}",
            "{\"state\":\"again\"}"
        ))
        .await
        .unwrap()
        .map(|h| h.records),
        Some(0),
        "a second remap changes nothing"
    );
    assert_eq!(s.env_records("sales", 2499, 10).await.unwrap().len(), 1);
}

async fn environment_documents_and_audit(s: &dyn Store) {
    use ferry_store::{AuditEntry, DocKind};
    for kind in [DocKind::Tenant, DocKind::Environment, DocKind::EnvMove] {
        s.put_document(kind, "b", r#"{"v": 1}"#, 1).await.unwrap();
        s.put_document(kind, "a", r#"{"v": "it's \u00e9"}"#, 1)
            .await
            .unwrap();
        s.put_document(kind, "b", r#"{"v": 2}"#, 2).await.unwrap();
        let docs = s.documents(kind).await.unwrap();
        assert_eq!(docs.len(), 2, "{kind:?}");
        assert_eq!(docs[1], ("b".to_string(), r#"{"v": 2}"#.to_string()));
        assert!(s.delete_document(kind, "a").await.unwrap());
        assert!(!s.delete_document(kind, "a").await.unwrap());
    }
    let e = |at: i64, tenant: Option<&str>, action: &str| AuditEntry {
        id: 0,
        at,
        actor: "ann".into(),
        tenant: tenant.map(Into::into),
        action: action.into(),
        subject: "env-1".into(),
        detail: "O'Brien; DROP TABLE audit".into(),
        address: None,
        request_id: None,
    };
    s.add_audit(&e(1, Some("contoso"), "env.move.submit"))
        .await
        .unwrap();
    s.add_audit(&e(2, Some("fabrikam"), "env.move.approve"))
        .await
        .unwrap();
    s.add_audit(&e(3, None, "tenant.put")).await.unwrap();
    let all = s.audit(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.at).collect::<Vec<_>>(),
        [3, 2, 1],
        "newest first"
    );
    assert_eq!(all[0].detail, "O'Brien; DROP TABLE audit");
    let c = s.audit(Some("contoso"), 10).await.unwrap();
    assert_eq!((c.len(), c[0].action.as_str()), (1, "env.move.submit"));
    assert_eq!(s.audit(None, 2).await.unwrap().len(), 2);
}

/// Would catch: an address or request id not stored, ids not returned or not increasing, an
/// export that skips or repeats lines across pages, `since` or a tenant not applied, or a
/// tenant's view that leaks another tenant's lines.
async fn audit_export_pages(s: &dyn Store) {
    let line = |at: i64, tenant: Option<&str>, n: usize| AuditEntry {
        id: 0,
        at,
        actor: "ann".into(),
        tenant: tenant.map(Into::into),
        action: "batch.put".into(),
        subject: format!("wave-{n}"),
        detail: "enforced_after: 2026-12-01T18:00 → 2026-12-02T18:00".into(),
        address: Some(
            if n.is_multiple_of(2) {
                "192.0.2.1"
            } else {
                "2001:db8::1"
            }
            .into(),
        ),
        request_id: Some(format!("req-{n}")),
    };
    let mut ids = Vec::new();
    for n in 0..25usize {
        let tenant = if n.is_multiple_of(3) {
            Some("contoso")
        } else {
            None
        };
        ids.push(
            s.add_audit(&line(1000 + n as i64, tenant, n))
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    // Paging by 4 from the start reads every line once, in the order recorded.
    let mut q = AuditQuery {
        limit: 4,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = s.audit_page(&q).await.unwrap();
        if page.is_empty() {
            break;
        }
        q.after = page.last().map(|l| l.id);
        seen.extend(page);
    }
    assert_eq!(seen.iter().map(|l| l.id).collect::<Vec<_>>(), ids);
    assert_eq!(seen[3], {
        let mut l = line(1003, Some("contoso"), 3);
        l.id = ids[3];
        l
    });
    assert_eq!(seen[1].address.as_deref(), Some("2001:db8::1"));
    // Since a moment: the lines at or after it.
    let since = s
        .audit_page(&AuditQuery {
            since: Some(1020),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        since.iter().map(|l| l.at).collect::<Vec<_>>(),
        (1020..1025).collect::<Vec<i64>>()
    );
    // A tenant's export: its lines only, paged the same way.
    let contoso = s
        .audit_page(&AuditQuery {
            tenant: Some("contoso".into()),
            since: Some(1001),
            after: Some(ids[3]),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        contoso.iter().map(|l| l.at).collect::<Vec<_>>(),
        [1006, 1009, 1012, 1015, 1018, 1021, 1024]
    );
    assert!(
        s.audit_page(&AuditQuery {
            after: ids.last().copied(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty(),
        "nothing after the last line"
    );
}

async fn devices_psks_agents_runs_batches(s: &dyn Store) {
    use ferry_core::agent::{AgentEvent, DeviceFacts, HarvestedProfile};
    // Pre-shared keys: unique names, looked up by hash, retired once.
    let k = s.add_psk("wave-1", "hash-1", None, None, 10).await.unwrap();
    assert_eq!((k.name.as_str(), k.retired_at), ("wave-1", None));
    assert!(
        s.add_psk("wave-1", "hash-2", None, None, 11).await.is_err(),
        "names are unique"
    );
    assert_eq!(s.psk_by_hash("hash-1").await.unwrap().unwrap().id, k.id);
    assert!(s.retire_psk("wave-1", 12).await.unwrap());
    assert!(!s.retire_psk("wave-1", 13).await.unwrap());
    assert_eq!(s.psks().await.unwrap()[0].retired_at, Some(12));
    // Enrollment stores facts and harvest; enrolling again replaces the credential and harvest.
    let facts = DeviceFacts {
        device_id: "machine-1".into(),
        hostname: "PC-0001".into(),
        os: "linux".into(),
        os_version: "Debian 12".into(),
        agent_version: "0.1.0".into(),
        directory_object_id: None,
        joined_to: Some("contoso.test".into()),
    };
    let profiles = vec![
        HarvestedProfile {
            name: "ann".into(),
            uid: Some(1001),
            home: "/home/ann".into(),
            ..Default::default()
        },
        HarvestedProfile {
            name: "bob'; DROP TABLE agents;--".into(),
            sid: Some("S-1-5-21-1-2-3-1104".into()),
            home: "/home/bob".into(),
            size_bytes: 1 << 40,
            last_used: Some(5),
            ..Default::default()
        },
    ];
    let e = |hash: &'static str, now: i64, replaces: Option<&'static str>| Enrollment {
        facts: &facts,
        profiles: &profiles,
        node_hash: hash,
        psk_id: k.id,
        now,
        address: Some("127.0.0.1"),
        replaces,
    };
    let a = s.enroll_agent(&e("node-1", 20, None)).await.unwrap();
    assert_eq!(
        (a.hostname.as_str(), a.state.as_str()),
        ("PC-0001", "enrolled")
    );
    assert_eq!(a.facts, facts);
    assert_eq!(s.agent_profiles(a.id).await.unwrap().len(), 2);
    // Two servers deciding the same device at once: the one decided against a key that is no
    // longer the agent's (here: none, while node-1 is live) is refused, nothing changes.
    let raced = s.enroll_agent(&e("node-x", 25, None)).await;
    assert!(
        matches!(raced, Err(StoreError::ClaimChanged(_))),
        "an enrollment decided against a stale claim must not replace the key: {raced:?}"
    );
    assert!(s.agent_by_node_hash("node-x").await.unwrap().is_none());
    let stale = s.enroll_agent(&e("node-x", 25, Some("node-0"))).await;
    assert!(matches!(stale, Err(StoreError::ClaimChanged(_))));
    let again = s
        .enroll_agent(&e("node-2", 30, Some("node-1")))
        .await
        .unwrap();
    assert_eq!(again.id, a.id, "the same device keeps its agent id");
    assert!(
        s.agent_by_node_hash("node-1").await.unwrap().is_none(),
        "the old credential stops working"
    );
    assert_eq!(
        s.agent_by_node_hash("node-2").await.unwrap().unwrap().id,
        a.id
    );
    // Another device claiming the live agent's host name (case ignored) is not enrolled beside
    // it (catches two servers each enrolling one of two new devices with one host name).
    let twin = DeviceFacts {
        device_id: "machine-2".into(),
        hostname: "pc-0001".into(),
        ..facts.clone()
    };
    let r = s
        .enroll_agent(&Enrollment {
            facts: &twin,
            ..e("node-t", 31, None)
        })
        .await;
    assert!(matches!(r, Err(StoreError::ClaimChanged(_))), "{r:?}");
    assert!(s.agent_by_node_hash("node-t").await.unwrap().is_none());
    // Contacts are recorded in bulk, never backwards in time.
    let contact = |at: i64, state: Option<&str>| Contact {
        agent_id: a.id,
        at,
        address: Some("10.0.0.9".into()),
        state: state.map(Into::into),
        agent_version: None,
    };
    s.record_contacts(&[contact(40, Some("idle")), contact(35, Some("stale"))])
        .await
        .unwrap();
    let now = s.agents().await.unwrap().remove(0);
    assert_eq!(
        (
            now.last_contact,
            now.state.as_str(),
            now.last_address.as_deref()
        ),
        (40, "idle", Some("10.0.0.9"))
    );
    s.set_agent_profiles(a.id, &profiles[..1]).await.unwrap();
    assert_eq!(
        s.agent_profiles(a.id).await.unwrap(),
        profiles[..1].to_vec()
    );
    // Events and log chunks per run; a resent chunk is stored once.
    let ev = |step: &str, p: u8| AgentEvent {
        at: 50,
        step: step.into(),
        status: "succeeded".into(),
        message: "ok ü".into(),
        progress: Some(p),
    };
    s.add_agent_events(a.id, "run-1", &[ev("startup", 10), ev("join", 60)], 51)
        .await
        .unwrap();
    s.add_agent_events(a.id, "run-2", &[ev("startup", 5)], 52)
        .await
        .unwrap();
    let evs = s.agent_events(a.id, Some("run-1")).await.unwrap();
    assert_eq!(
        evs.iter()
            .map(|e| e.event.step.as_str())
            .collect::<Vec<_>>(),
        ["startup", "join"]
    );
    assert_eq!(s.agent_events(a.id, None).await.unwrap().len(), 3);
    let latest = s.latest_events_of(&[a.id]).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(
        (latest[0].run.as_str(), latest[0].event.step.as_str()),
        ("run-2", "startup")
    );
    // Logs: a resend is stored once, and a run's log stops at its cap (catches an agent
    // filling the database with one run's log).
    let cap = 20;
    assert_eq!(
        s.add_agent_log(a.id, "run-1", 0, "line 1\n", 53, cap)
            .await
            .unwrap(),
        LogAdd::Stored
    );
    assert_eq!(
        s.add_agent_log(a.id, "run-1", 7, "line 2\n", 54, cap)
            .await
            .unwrap(),
        LogAdd::Stored
    );
    assert_eq!(
        s.add_agent_log(a.id, "run-1", 7, "line 2\n", 55, cap)
            .await
            .unwrap(),
        LogAdd::Resend
    );
    assert_eq!(
        s.add_agent_log(a.id, "run-1", 14, "line 3\n", 56, cap)
            .await
            .unwrap(),
        LogAdd::OverCap,
        "7 + 7 + 7 bytes passes a cap of 20"
    );
    assert_eq!(
        s.add_agent_log(a.id, "run-1", 14, "l3\n", 56, cap)
            .await
            .unwrap(),
        LogAdd::Stored,
        "a refused chunk did not count against the cap"
    );
    assert_eq!(
        s.agent_log(a.id, "run-1").await.unwrap(),
        "line 1\nline 2\nl3\n"
    );
    // Documents.
    s.put_document(DocKind::Runbook, "Main", "{\"v\":1}", 60)
        .await
        .unwrap();
    s.put_document(DocKind::Runbook, "Main", "{\"v\":2}", 61)
        .await
        .unwrap();
    s.put_document(DocKind::Batch, "Pilot", "{}", 62)
        .await
        .unwrap();
    s.put_document(DocKind::Batch, "Wave 2", "{}", 62)
        .await
        .unwrap();
    assert_eq!(
        s.documents(DocKind::Runbook).await.unwrap(),
        [("Main".to_string(), "{\"v\":2}".to_string())]
    );
    // A compare-and-swap takes only the body it was read with (two servers deciding one move).
    assert!(
        s.swap_document(DocKind::Runbook, "Main", "{\"v\":2}", "{\"v\":3}", 62)
            .await
            .unwrap()
    );
    assert!(
        !s.swap_document(DocKind::Runbook, "Main", "{\"v\":2}", "{\"v\":4}", 63)
            .await
            .unwrap(),
        "the second writer read v2, which is gone"
    );
    assert!(
        !s.swap_document(DocKind::Runbook, "Nope", "", "{}", 63)
            .await
            .unwrap()
    );
    assert_eq!(
        s.documents(DocKind::Runbook).await.unwrap(),
        [("Main".to_string(), "{\"v\":3}".to_string())]
    );
    // Overrides are documents changed many at a time (a bulk import, a profile's removal):
    // puts and deletes of one call land together.
    let docs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(n, b)| (n.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    s.change_documents(
        DocKind::Override,
        &docs(&[("users/c-1", "{\"exclude\":true}"), ("users/c-2", "{}")]),
        &[],
        63,
    )
    .await
    .unwrap();
    s.change_documents(
        DocKind::Override,
        &docs(&[("users/c-3", "{}"), ("users/c-2", "{\"v\":2}")]),
        &["users/c-1".to_string(), "users/none".to_string()],
        64,
    )
    .await
    .unwrap();
    assert_eq!(
        s.documents(DocKind::Override).await.unwrap(),
        docs(&[("users/c-2", "{\"v\":2}"), ("users/c-3", "{}")]),
        "one call put two, replaced one and deleted one"
    );
    // A computer is in at most one batch; a refused add adds nothing.
    let pcs = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(
        s.add_batch_computers("Pilot", &pcs(&["PC-1", "PC-2"]), 70)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.add_batch_computers("Pilot", &pcs(&["PC-2"]), 71)
            .await
            .unwrap()
            .is_empty(),
        "idempotent"
    );
    let c = s
        .add_batch_computers("Wave 2", &pcs(&["PC-3", "PC-2"]), 72)
        .await
        .unwrap();
    assert_eq!(c, [("PC-2".to_string(), "Pilot".to_string())]);
    // Kept as typed, compared in lower case (issue 20): pc-1 is Pilot's PC-1, shown as PC-1.
    assert_eq!(
        s.add_batch_computers("Wave 2", &pcs(&["pc-1"]), 72)
            .await
            .unwrap(),
        [("pc-1".to_string(), "Pilot".to_string())]
    );
    assert!(
        s.batch_computers()
            .await
            .unwrap()
            .iter()
            .any(|(c, b, _)| c == "PC-1" && b == "Pilot"),
        "shown as typed"
    );
    assert_eq!(
        s.batch_computers().await.unwrap().len(),
        2,
        "PC-3 was not added"
    );
    assert_eq!(
        s.remove_batch_computers("Pilot", &pcs(&["pc-2", "PC-9"]))
            .await
            .unwrap(),
        1
    );
    // A wave is created once (two servers halting a batch at once: one creates, one swaps).
    assert!(
        s.create_document(DocKind::Wave, "Pilot", "{}", 63)
            .await
            .unwrap()
    );
    assert!(
        !s.create_document(DocKind::Wave, "Pilot", "{\"x\":1}", 63)
            .await
            .unwrap()
    );
    assert!(
        s.swap_document(DocKind::Wave, "Pilot", "{}", "{\"halted\":null}", 64)
            .await
            .unwrap()
    );
    assert_eq!(
        s.documents(DocKind::Wave).await.unwrap(),
        [("Pilot".to_string(), "{\"halted\":null}".to_string())]
    );
    assert!(s.delete_document(DocKind::Batch, "Pilot").await.unwrap());
    assert!(
        s.documents(DocKind::Wave).await.unwrap().is_empty(),
        "a deleted batch's wave goes with it"
    );
    assert!(
        s.batch_computers().await.unwrap().is_empty(),
        "a deleted batch frees its computers"
    );
    // Failed communications, newest first; a repeat within the window is counted, not
    // stored again (catches 2,000 rows from one prober).
    let fc = |at: i64, code: &str| FailedComm {
        id: 0,
        at,
        address: Some("192.0.2.7".into()),
        code: code.to_string(),
        reason: "r".into(),
        agent_id: None,
        device_id: Some("machine-x".into()),
        count: 1,
        first_at: at,
    };
    s.record_failed_comm(&fc(80, "bad_psk"), 0).await.unwrap();
    s.record_failed_comm(&fc(81, "unauthorized"), 0)
        .await
        .unwrap();
    for at in 82..90 {
        s.record_failed_comm(&fc(at, "bad_psk"), at - 20)
            .await
            .unwrap();
    }
    let f = s.failed_comms(10).await.unwrap();
    assert_eq!(
        f.iter()
            .map(|x| (x.code.as_str(), x.count, x.first_at, x.at))
            .collect::<Vec<_>>(),
        [("bad_psk", 9, 80, 89), ("unauthorized", 1, 81, 81)]
    );
    // Outside the window it is a new row; another address is another row.
    s.record_failed_comm(&fc(200, "bad_psk"), 150)
        .await
        .unwrap();
    let mut other = fc(201, "bad_psk");
    other.address = None;
    s.record_failed_comm(&other, 150).await.unwrap();
    assert_eq!(s.failed_comms(10).await.unwrap().len(), 4);
    // Retention: what was last seen before the cut goes.
    assert_eq!(s.prune_agent_history(Some(100), None).await.unwrap(), 2);
    assert_eq!(s.failed_comms(10).await.unwrap().len(), 2);
}

async fn enrolment_tokens_store_content_and_revoke(s: &dyn Store) {
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let new = |dir: &str, at: i64| NewEnrolmentToken {
        directory: dir.into(),
        kind: "ppkg".into(),
        file_name: Some("Fabrikam Join ü.ppkg".into()),
        package_upn: "package_0a1b2c3d@fabrikam.onmicrosoft.com".into(),
        content: content.clone(),
        size: 70_000,
        sha256: "ab".repeat(32),
        created_at: at,
        expires_at: at + 180 * 86_400_000,
        uploaded_at: at + 5,
    };
    let a = s
        .add_enrolment_token(&new("fabrikam", 1_000))
        .await
        .unwrap();
    let b = s
        .add_enrolment_token(&new("fabrikam", 2_000))
        .await
        .unwrap();
    let c = s.add_enrolment_token(&new("other", 3_000)).await.unwrap();
    assert_eq!(a.size, 70_000);
    assert_eq!(a.file_name.as_deref(), Some("Fabrikam Join ü.ppkg"));
    let fab = s.enrolment_tokens(Some("fabrikam")).await.unwrap();
    assert_eq!(fab.iter().map(|t| t.id).collect::<Vec<_>>(), [b.id, a.id]);
    assert_eq!(s.enrolment_tokens(None).await.unwrap().len(), 3);
    let (t, bytes) = s.enrolment_token_content(c.id).await.unwrap().unwrap();
    assert_eq!((t.directory.as_str(), bytes), ("other", content));
    assert!(s.revoke_enrolment_token(a.id, 9).await.unwrap());
    assert!(
        !s.revoke_enrolment_token(a.id, 10).await.unwrap(),
        "revoked once"
    );
    assert!(!s.revoke_enrolment_token(999_999, 10).await.unwrap());
    let a2 = s.enrolment_token_content(a.id).await.unwrap().unwrap().0;
    assert_eq!(a2.revoked_at, Some(9));
    assert_eq!(s.enrolment_token_content(999_999).await.unwrap(), None);
}

async fn tokens(s: &dyn Store) {
    assert_eq!(s.token_by_hash("h1").await.unwrap(), None);
    s.put_token("admin", "h1", "admin", 5).await.unwrap();
    assert_eq!(s.operator_password("ann").await.unwrap(), None);
    s.put_operator_password("ann", "tenant-admin:contoso", "$argon2id$x", 5)
        .await
        .unwrap();
    s.put_operator_password("ann", "tenant-admin:contoso", "$argon2id$y", 6)
        .await
        .unwrap();
    assert_eq!(
        s.operator_password("ann").await.unwrap(),
        Some(("tenant-admin:contoso".into(), "$argon2id$y".into()))
    );
    assert_eq!(s.token_by_hash("h1").await.unwrap().unwrap().name, "admin");
    s.put_token("admin", "h2", "admin", 6).await.unwrap();
    assert_eq!(
        s.token_by_hash("h1").await.unwrap(),
        None,
        "a replaced token stops working"
    );
    assert_eq!(s.token_by_hash("h2").await.unwrap().unwrap().created_at, 6);
}

/// Would catch: a backend whose failure count is not atomic (two servers counting one failure
/// each end at 1), a touch that does not reach `last_used_at` or survives a replaced token, a
/// listing that shows sessions as operators, or a removal that leaves the session.
async fn sessions_operators_and_sign_in_failures(s: &dyn Store) {
    s.put_token("admin", "ha", "admin", 1).await.unwrap();
    s.put_token("bob", "hb", "viewer", 2).await.unwrap();
    s.put_operator_password("bob", "viewer", "$argon2id$b", 2)
        .await
        .unwrap();
    s.put_token("session:bob", "hs", "viewer", 3).await.unwrap();
    assert_eq!(
        s.token_by_hash("hs").await.unwrap().unwrap().last_used_at,
        None
    );
    s.touch_token("hs", 70_000).await.unwrap();
    assert_eq!(
        s.token_by_hash("hs").await.unwrap().unwrap().last_used_at,
        Some(70_000)
    );
    s.put_token("session:bob", "hs2", "viewer", 80_000)
        .await
        .unwrap();
    assert_eq!(
        s.token_by_hash("hs2").await.unwrap().unwrap().last_used_at,
        None,
        "a new session starts unused"
    );
    let ops = s.operators().await.unwrap();
    let names: Vec<(&str, bool, bool)> = ops
        .iter()
        .map(|o| (o.name.as_str(), o.has_password, o.has_session))
        .collect();
    assert_eq!(names, [("admin", false, false), ("bob", true, true)]);
    assert!(s.delete_operator("bob").await.unwrap());
    assert!(!s.delete_operator("bob").await.unwrap());
    assert_eq!(s.token_by_hash("hs2").await.unwrap(), None);
    assert_eq!(s.operator_password("bob").await.unwrap(), None);
    assert!(!s.delete_token("session:bob").await.unwrap());

    assert_eq!(s.sign_in_failures("account:x").await.unwrap(), None);
    let n: Vec<i64> = futures_count(s).await;
    let mut sorted = n.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=20).collect::<Vec<_>>(), "{n:?}");
    assert_eq!(
        s.sign_in_failures("account:x").await.unwrap().map(|f| f.0),
        Some(20)
    );
    assert_eq!(s.prune_sign_in_failures(0).await.unwrap(), 0);
    s.clear_sign_in_failures("account:x").await.unwrap();
    assert_eq!(s.sign_in_failures("account:x").await.unwrap(), None);
    s.add_sign_in_failure("account:old", 5).await.unwrap();
    s.add_sign_in_failure("account:new", 500).await.unwrap();
    assert_eq!(s.prune_sign_in_failures(100).await.unwrap(), 1);
    assert!(s.sign_in_failures("account:new").await.unwrap().is_some());
}

/// 20 failures counted at once; the counts each returned.
async fn futures_count(s: &dyn Store) -> Vec<i64> {
    let mut out = Vec::new();
    let calls: Vec<_> = (0..20)
        .map(|i| s.add_sign_in_failure("account:x", 1000 + i))
        .collect();
    for c in futures_util::future::join_all(calls).await {
        out.push(c.unwrap().0);
    }
    out
}

/// Catches: `/readyz` calling ready a database behind this build's migrations, or never ready
/// (the applied and known versions read from different lists).
async fn a_migrated_database_is_at_this_builds_schema(s: &dyn Store) {
    let (applied, known) = s.schema_version().await.unwrap();
    assert!(known >= 17, "this build knows {known} migrations");
    assert_eq!(
        applied, known,
        "an opened store has every migration applied"
    );
}

async fn leases_elect_one_holder(s: &dyn Store) {
    assert!(s.try_lease("cycle:users", "a", 1000, 100).await.unwrap());
    assert!(
        !s.try_lease("cycle:users", "b", 1050, 100).await.unwrap(),
        "b must wait for a's lease"
    );
    assert!(
        s.try_lease("cycle:users", "a", 1090, 100).await.unwrap(),
        "a renews"
    );
    assert!(
        !s.try_lease("cycle:users", "b", 1150, 100).await.unwrap(),
        "renewed until 1190"
    );
    assert!(
        s.try_lease("cycle:users", "b", 1191, 100).await.unwrap(),
        "expired: b takes over"
    );
    assert!(
        s.try_lease("cycle:other", "a", 1191, 100).await.unwrap(),
        "leases are per name"
    );
    s.release_lease("cycle:users", "a").await.unwrap();
    assert!(
        !s.try_lease("cycle:users", "a", 1200, 100).await.unwrap(),
        "a cannot release b's lease"
    );
    s.release_lease("cycle:users", "b").await.unwrap();
    assert!(s.try_lease("cycle:users", "a", 1200, 100).await.unwrap());
}

async fn slots_are_claimed_once(s: &dyn Store) {
    assert!(s.claim_slot("users", 42, "a", 1).await.unwrap());
    assert!(!s.claim_slot("users", 42, "b", 1).await.unwrap());
    assert!(!s.claim_slot("users", 42, "a", 1).await.unwrap());
    assert!(s.claim_slot("users", 43, "b", 1).await.unwrap());
    assert!(s.claim_slot("devices", 42, "b", 1).await.unwrap());
}

async fn cycle_lifecycle(s: &dyn Store) {
    let a = s
        .begin_cycle("users", "schedule", Some(7), "srv1", 100)
        .await
        .unwrap();
    let b = s
        .begin_cycle("users", "manual", None, "srv2", 200)
        .await
        .unwrap();
    let ca = s.cycle(a).await.unwrap().unwrap();
    assert_eq!(
        ca.status, "aborted",
        "a new cycle of the profile aborts the stale one"
    );
    assert!(ca.error.unwrap().contains("stopped"));
    s.set_cycle_phase(b, "sync").await.unwrap();
    assert_eq!(s.cycle(b).await.unwrap().unwrap().phase, "sync");
    s.fail_cycle(
        b,
        "users",
        "LDAP server unreachable",
        &[LogEntry::error("import", "cannot reach ldap://x")],
        300,
    )
    .await
    .unwrap();
    let cb = s.cycle(b).await.unwrap().unwrap();
    assert_eq!(
        (cb.status.as_str(), cb.error.as_deref(), cb.finished_at),
        ("failed", Some("LDAP server unreachable"), Some(300))
    );
    let c = s
        .begin_cycle("other", "manual", None, "srv1", 400)
        .await
        .unwrap();
    s.finish_cycle(c, "other", "not needed", &[], 500)
        .await
        .unwrap();
    assert_eq!(s.cycle(c).await.unwrap().unwrap().status, "succeeded");
    let all = s.cycles(None, 10).await.unwrap();
    assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), vec![c, b, a]);
    assert_eq!(s.cycles(Some("users"), 1).await.unwrap()[0].id, b);
    assert_eq!(s.cycle(9999).await.unwrap(), None);
    let logs = s
        .logs(&LogQuery {
            cycle_id: Some(b),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].entry.level, Level::Error);
}

/// Would catch: a cycle aborted (by the next cycle of its profile, or by its server's restart)
/// still saying what it was doing ("aborted: read 120,000 source and 0 target objects" on the
/// console's cycles, as if it were still reading), and a late progress write of a cycle that
/// ended bringing the words back.
async fn a_cycles_progress_ends_with_it_however_it_ends(s: &dyn Store) {
    let progress = |id| async move { s.cycle(id).await.unwrap().unwrap().progress };
    let a = s
        .begin_cycle("users", "manual", None, "srv1", 100)
        .await
        .unwrap();
    s.set_cycle_progress(a, "read 120 source and 0 target objects")
        .await
        .unwrap();
    assert_eq!(
        progress(a).await.as_deref(),
        Some("read 120 source and 0 target objects")
    );
    let b = s
        .begin_cycle("users", "manual", None, "srv2", 200)
        .await
        .unwrap();
    assert_eq!(s.cycle(a).await.unwrap().unwrap().status, "aborted");
    assert_eq!(progress(a).await, None, "aborted by the next cycle");
    s.set_cycle_progress(a, "read 240 source and 0 target objects")
        .await
        .unwrap();
    assert_eq!(progress(a).await, None, "written after it was aborted");

    s.set_cycle_progress(b, "matching 120 source and 80 target objects")
        .await
        .unwrap();
    assert_eq!(s.recover_server("srv2", 300).await.unwrap(), 1);
    assert_eq!(s.cycle(b).await.unwrap().unwrap().status, "aborted");
    assert_eq!(progress(b).await, None, "aborted by its server's restart");

    for fail in [false, true] {
        let c = s
            .begin_cycle("users", "manual", None, "srv1", 400)
            .await
            .unwrap();
        s.set_cycle_progress(c, "storing 3 changed decision(s)")
            .await
            .unwrap();
        if fail {
            s.fail_cycle(c, "users", "unreachable", &[], 500)
                .await
                .unwrap();
        } else {
            s.finish_cycle(c, "users", "nothing", &[], 500)
                .await
                .unwrap();
        }
        assert_eq!(progress(c).await, None, "ended (failed: {fail})");
        s.set_cycle_progress(c, "late").await.unwrap();
        assert_eq!(progress(c).await, None, "written after it ended");
    }
}

fn config() -> Config {
    let src = format!(
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"s.json\"\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"t.json\"\n\
         [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"create\"\n{}",
        ferry_demo::QUICKSTART_RULES
    );
    Config::parse(&src, "test").unwrap()
}

/// Runs the pure sync stage and commits it as a cycle would; returns the plan's hash.
/// A manual cycle of profile "users" begun at `at` and committed with these objects.
async fn cycle(s: &dyn Store, at: i64, src: &[DirObject], tgt: &[DirObject]) {
    let c = s
        .begin_cycle("users", "manual", None, "a", at)
        .await
        .unwrap();
    commit(s, c, src, tgt).await.unwrap();
}

async fn commit(s: &dyn Store, cycle: i64, src: &[DirObject], tgt: &[DirObject]) -> Result<String> {
    let cfg = config();
    let p = plan::build(&cfg.profiles[0], "fp", src, tgt);
    let digest = s.decision_digest("users").await?;
    let diff = plan::diff(&p, src, tgt, &digest);
    let logs = plan::decision_logs(&p, &diff, "contoso");
    let history = plan::history_lines(&p, &diff);
    let mut objects = Vec::new();
    for (dir, objs) in [("contoso", src), ("fabrikam", tgt)] {
        let stored = s.object_digest(dir).await?;
        let present: rustc_hash::FxHashSet<(ObjectKind, &str)> =
            objs.iter().map(|o| (o.kind, o.id.as_str())).collect();
        objects.push(ObjectChanges {
            upserts: objs
                .iter()
                .map(|o| (o, o.content_hash()))
                .filter(|(o, h)| stored.get(&(o.kind, o.id.clone())) != Some(h))
                .collect(),
            deletes: stored
                .keys()
                .filter(|(k, i)| !present.contains(&(*k, i.as_str())))
                .cloned()
                .collect(),
            state: DirectoryState {
                directory: dir.into(),
                watermark: None,
                last_full_import: Some(cycle),
                last_import: cycle,
                objects: objs.len() as i64,
            },
        });
    }
    s.commit_sync(SyncCommit {
        cycle_id: cycle,
        now: cycle * 10,
        objects,
        plan: &p,
        decisions: &diff,
        history,
        logs: &logs,
    })
    .await?;
    Ok(p.hash)
}

fn sorted(mut v: Vec<DirObject>) -> Vec<DirObject> {
    v.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    v
}

async fn sync_commit_round_trip(s: &dyn Store) {
    let sample = ferry_demo::generate(600, true, 11);
    let c1 = s
        .begin_cycle("users", "manual", None, "t", 1)
        .await
        .unwrap();
    let hash = commit(s, c1, &sample.source, &sample.target).await.unwrap();
    s.finish_cycle(c1, "users", "awaiting approval", &[], 2)
        .await
        .unwrap();

    // Objects come back exactly, and the digest knows every one.
    assert_eq!(
        sorted(s.load_objects("contoso").await.unwrap()),
        sorted(sample.source.clone())
    );
    assert_eq!(
        s.object_digest("fabrikam").await.unwrap().len(),
        sample.target.len()
    );
    assert_eq!(
        s.directory_state("contoso").await.unwrap().unwrap().objects,
        sample.source.len() as i64
    );

    // The plan, its writes and the cycle's counts.
    let plan = s.plan("users").await.unwrap().unwrap();
    assert_eq!(plan.hash, hash);
    assert_eq!(s.plan_profiles().await.unwrap(), ["users"]);
    // An approval is of one plan hash, by one operator; approving again replaces it.
    assert!(s.approval("users").await.unwrap().is_none());
    s.approve("users", "0123abcd", "alice", 3).await.unwrap();
    s.approve("users", &hash, "Ann O'Brien", 4).await.unwrap();
    let a = s.approval("users").await.unwrap().unwrap();
    assert_eq!(
        (
            a.profile.as_str(),
            a.plan_hash.as_str(),
            a.approved_by.as_str(),
            a.approved_at
        ),
        ("users", hash.as_str(), "Ann O'Brien", 4)
    );
    assert!(s.approval("devices").await.unwrap().is_none());
    assert_eq!(plan.rules.len(), 3);
    let writes = s.plan_writes("users", 0, 0).await.unwrap();
    assert_eq!(
        writes.len() as u64,
        plan.counts.creates + plan.counts.updates
    );
    assert_eq!(
        s.plan_writes("users", 1, 2).await.unwrap(),
        writes[1..3].to_vec()
    );
    // Keyset pages of the writes (the What-If export's): every write once, in plan order, the
    // first (numbered 0) included.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = s.plan_writes_after("users", after, 3).await.unwrap();
        walked.extend(page.iter().map(|(_, w)| w.clone()));
        match page.last() {
            Some((seq, _)) if page.len() == 3 => after = Some(*seq),
            _ => break,
        }
    }
    assert!(writes.len() > 3, "{}", writes.len());
    assert_eq!(walked, writes);
    assert!(
        s.plan_writes_after("devices", None, 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.cycle(c1).await.unwrap().unwrap().counts.unwrap(),
        plan.counts
    );

    // Decisions: counts by status, paging, search.
    let u = plan.counts.by_kind[&ObjectKind::User];
    let q = |status| DecisionQuery {
        profile: Some("users".into()),
        status: Some(status),
        kind: Some(ObjectKind::User),
        ..Default::default()
    };
    assert_eq!(
        s.count_decisions(&q(Status::Matched)).await.unwrap() as u64,
        u.matched
    );
    assert_eq!(
        s.count_decisions(&q(Status::Unmatched)).await.unwrap() as u64,
        u.unmatched
    );
    let page1 = s
        .decisions(&DecisionQuery {
            limit: 10,
            ..q(Status::Matched)
        })
        .await
        .unwrap();
    let page2 = s
        .decisions(&DecisionQuery {
            limit: 10,
            offset: 10,
            ..q(Status::Matched)
        })
        .await
        .unwrap();
    assert_eq!(page1.len(), 10);
    assert!(page1.last().unwrap().source_id < page2[0].source_id);
    let ann = &sample.source[0];
    let found = s
        .decisions(&DecisionQuery {
            search: Some(ann.upn.clone().unwrap().to_uppercase()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].source_id, ann.id);
    let entry = found[0].to_entry(&plan.rules).expect("ann is matched");
    assert_eq!(entry.source_sid, ann.sid);
    assert!(
        entry
            .target_sid
            .as_deref()
            .unwrap()
            .starts_with("S-1-12-1-")
    );
    assert_eq!(entry.rule.as_deref(), Some("mail → mail (replace_suffix)"));
    let like = s
        .decisions(&DecisionQuery {
            search: Some("100%_".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(like.is_empty(), "LIKE wildcards in a search are literal");
    let digest = s.decision_digest("users").await.unwrap();
    assert_eq!(
        digest.len() as u64,
        u.matched
            + u.unmatched
            + u.ambiguous
            + u.conflict
            + plan.counts.by_kind[&ObjectKind::Group].matched
            + plan.counts.by_kind[&ObjectKind::Group].unmatched
    );

    // Whether computers were synced from a directory (device claims are checked against them).
    assert!(s.has_objects("contoso", ObjectKind::User).await.unwrap());
    assert!(s.has_objects("contoso", ObjectKind::Device).await.unwrap());
    assert!(!s.has_objects("nowhere", ObjectKind::Device).await.unwrap());
    assert!(!s.has_objects("nowhere", ObjectKind::User).await.unwrap());

    // The single object report's look-ups: by upn (any case), SID, id; as source and target.
    let by_upn = s
        .find_objects(&ann.upn.clone().unwrap().to_uppercase(), 10)
        .await
        .unwrap();
    assert_eq!(by_upn.len(), 1);
    assert_eq!(by_upn[0].directory, "contoso");
    assert_eq!(
        s.find_objects(ann.sid.as_deref().unwrap(), 10)
            .await
            .unwrap()[0]
            .object,
        *ann
    );
    let target_id = entry.target_id.clone();
    assert_eq!(
        s.decisions_for_object(ObjectKind::User, &target_id)
            .await
            .unwrap()[0]
            .source_id,
        ann.id
    );

    // Second cycle: a user changes mail on the target (matched by employee id now), one leaves.
    let mut src2 = sample.source.clone();
    let gone = src2.remove(1);
    let mut tgt2 = sample.target.clone();
    let ti = tgt2.iter().position(|t| t.id == target_id).unwrap();
    tgt2[ti].mail = Some("ann.renamed@fabrikam.test".into());
    let c2 = s
        .begin_cycle("users", "manual", None, "t", 3)
        .await
        .unwrap();
    commit(s, c2, &src2, &tgt2).await.unwrap();
    let d = s
        .decisions_for_object(ObjectKind::User, &ann.id)
        .await
        .unwrap();
    assert_eq!(d[0].rule, Some(1), "now matched by employeeId");
    assert_eq!((d[0].first_cycle, d[0].changed_cycle), (c1, c2));
    let h = s.history(ObjectKind::User, &ann.id).await.unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h[0].change.contains("employeeId"), "{h:?}");
    assert!(
        s.decisions_for_object(ObjectKind::User, &gone.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.history(ObjectKind::User, &gone.id).await.unwrap().len(),
        1
    );
    assert!(
        s.load_objects("contoso")
            .await
            .unwrap()
            .iter()
            .all(|o| o.id != gone.id)
    );
}

async fn aborted_cycle_commits_nothing(s: &dyn Store) {
    let sample = ferry_demo::generate(200, true, 3);
    let c1 = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    let h1 = commit(s, c1, &sample.source, &sample.target).await.unwrap();
    s.finish_cycle(c1, "users", "not needed", &[], 2)
        .await
        .unwrap();
    let digest = s.decision_digest("users").await.unwrap();
    let objects = s.object_digest("contoso").await.unwrap();

    // Cycle 2 is aborted by another server's cycle 3 before it commits: nothing of it may land.
    let c2 = s
        .begin_cycle("users", "manual", None, "a", 3)
        .await
        .unwrap();
    let _c3 = s
        .begin_cycle("users", "manual", None, "b", 4)
        .await
        .unwrap();
    let mut src = sample.source.clone();
    src.truncate(50);
    let err = commit(s, c2, &src, &sample.target).await.unwrap_err();
    assert!(
        matches!(err, StoreError::CycleNotRunning(id) if id == c2),
        "{err}"
    );
    assert_eq!(s.decision_digest("users").await.unwrap(), digest);
    assert_eq!(s.object_digest("contoso").await.unwrap(), objects);
    assert_eq!(s.plan("users").await.unwrap().unwrap().hash, h1);
}

async fn logs_filter_and_page(s: &dyn Store) {
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    let mut logs = Vec::new();
    for i in 0..30 {
        let e = match i % 3 {
            0 => LogEntry::info("matched", format!("i{i}")),
            1 => LogEntry::warning("unmatched", format!("w{i}")),
            _ => LogEntry::error("export", format!("e{i}")),
        };
        logs.push(if i == 4 {
            LogEntry {
                object_id: Some("obj-4".into()),
                ..e
            }
        } else {
            e
        });
    }
    s.append_logs(Some(c), Some("users"), &logs, 9)
        .await
        .unwrap();
    s.append_logs(None, Some("other"), &[LogEntry::error("config", "x")], 9)
        .await
        .unwrap();
    let warn = s
        .logs(&LogQuery {
            profile: Some("users".into()),
            min_level: Some(Level::Warning),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(warn.len(), 20);
    assert!(warn.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let errs = s
        .logs(&LogQuery {
            min_level: Some(Level::Error),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(errs.len(), 11);
    let page = s
        .logs(&LogQuery {
            profile: Some("users".into()),
            limit: 5,
            before_id: Some(warn[3].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.iter().all(|l| l.id < warn[3].id) && page.len() == 5);
    let obj = s
        .logs(&LogQuery {
            object_id: Some("obj-4".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(obj.len(), 1);
    assert_eq!(obj[0].entry.message, "w4");
    assert_eq!(obj[0].cycle_id, Some(c));
}

async fn hostile_values_round_trip(s: &dyn Store) {
    let mut u = DirObject::new(
        ObjectKind::User,
        "id'; DROP TABLE objects;--",
        "Ὀδυσσεύς \"Odie\" O'Brien (*)\\",
    );
    u.upn = Some("*)(uid=*))(|(uid=*@contoso.test".into());
    u.mail = Some("x".repeat(100_000));
    u.attrs = vec![
        ("emoji".into(), "🦀\u{0}?".replace('\u{0}', "")),
        ("note".into(), "a\nb\r\nc,d;e".into()),
    ];
    let mut t = u.clone();
    t.id = "t-1".into();
    t.upn = Some("*)(uid=*))(|(uid=*@fabrikam.test".into());
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(s, c, std::slice::from_ref(&u), std::slice::from_ref(&t))
        .await
        .unwrap();
    assert_eq!(s.load_objects("contoso").await.unwrap(), vec![u.clone()]);
    assert_eq!(s.find_objects(&u.id, 5).await.unwrap()[0].object, u);
    let d = s
        .decisions(&DecisionQuery {
            search: Some("(uid=*".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].source_name, u.name);
}

async fn bulk_commits_keep_indexes_and_roll_back_whole(s: &dyn Store) {
    // Large enough for SQLite's bulk path (indexes dropped and rebuilt inside the transaction).
    let sample = ferry_demo::generate(60_000, false, 21);
    let c1 = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    let h1 = commit(s, c1, &sample.source, &sample.target).await.unwrap();
    s.finish_cycle(c1, "users", "not needed", &[], 2)
        .await
        .unwrap();
    let probe = &sample.source[12_345];
    let found = s
        .find_objects(&probe.mail.clone().unwrap().to_uppercase(), 5)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "look-ups work after the bulk rebuild");
    assert_eq!(found[0].object, *probe);
    // The search index is refilled by the bulk path (its triggers dropped and put back): a
    // substring of the probe's mail finds it, and a later small change is indexed by trigger.
    let inner: String = probe
        .mail
        .as_deref()
        .unwrap()
        .chars()
        .skip(1)
        .take(10)
        .collect();
    let hits = s
        .decisions(&DecisionQuery {
            search: Some(inner.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        hits.iter().any(|d| d.source_id == probe.id),
        "{inner} finds {} after the bulk write",
        probe.id
    );
    assert_eq!(
        s.count_decisions(&DecisionQuery {
            profile: Some("users".into()),
            status: Some(Status::Unmatched),
            ..Default::default()
        })
        .await
        .unwrap() as u64,
        sample.expected.users_unmatched
    );
    let digest = s.decision_digest("users").await.unwrap();

    // A bulk rewrite that cannot commit leaves indexes and rows as they were.
    let c2 = s
        .begin_cycle("users", "manual", None, "a", 3)
        .await
        .unwrap();
    let _c3 = s
        .begin_cycle("users", "manual", None, "b", 4)
        .await
        .unwrap();
    let other = ferry_demo::generate(60_000, false, 22);
    assert!(matches!(
        commit(s, c2, &other.source, &other.target).await,
        Err(StoreError::CycleNotRunning(_))
    ));
    // The rolled-back rewrite left the search index as it was.
    assert!(
        s.decisions(&DecisionQuery {
            search: Some(inner.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .any(|d| d.source_id == probe.id)
    );
    assert_eq!(s.find_objects(&probe.id, 5).await.unwrap().len(), 1);
    assert_eq!(s.decision_digest("users").await.unwrap(), digest);
    assert_eq!(s.plan("users").await.unwrap().unwrap().hash, h1);
    assert!(
        s.find_objects(&other.source[0].id, 5)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_restarted_server_recovers_its_own_cycles_only(s: &dyn Store) {
    let mine = s
        .begin_cycle("users", "manual", None, "srv_1", 1)
        .await
        .unwrap();
    let theirs = s
        .begin_cycle("devices", "manual", None, "srv_10", 1)
        .await
        .unwrap();
    assert!(
        s.try_lease("cycle:users", "srv_1:abc", 1, 60_000)
            .await
            .unwrap()
    );
    assert!(
        s.try_lease("cycle:devices", "srv_10:def", 1, 60_000)
            .await
            .unwrap()
    );
    assert_eq!(s.recover_server("srv_1", 5).await.unwrap(), 1);
    assert_eq!(s.cycle(mine).await.unwrap().unwrap().status, "aborted");
    assert_eq!(
        s.cycle(theirs).await.unwrap().unwrap().status,
        "running",
        "another server's cycle is not touched"
    );
    assert!(
        s.try_lease("cycle:users", "srv_1:new", 6, 60_000)
            .await
            .unwrap(),
        "its own old lease is released"
    );
    assert!(
        !s.try_lease("cycle:devices", "srv_1:new", 6, 60_000)
            .await
            .unwrap(),
        "srv_10's lease is kept ('_' is no wildcard)"
    );
}

/// Catches a use count read and written in two statements: eight concurrent takes of a
/// single-use key (PostgreSQL: on separate connections) must admit exactly one, and an
/// unlimited key must admit all.
async fn single_use_psks_admit_one_enrollment_under_a_race(s: &dyn Store) {
    let one = s
        .add_psk("one", "hash-one", Some(1), Some("PC-0001"), 1)
        .await
        .unwrap();
    assert_eq!(
        (one.uses_left, one.device.as_deref()),
        (Some(1), Some("PC-0001"))
    );
    let any = s.add_psk("any", "hash-any", None, None, 1).await.unwrap();
    for (k, want) in [(one.id, 1), (any.id, 8)] {
        let r = tokio::join!(
            s.use_psk(k),
            s.use_psk(k),
            s.use_psk(k),
            s.use_psk(k),
            s.use_psk(k),
            s.use_psk(k),
            s.use_psk(k),
            s.use_psk(k)
        );
        let won = [r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7]
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(won, want, "key {k}");
    }
    assert_eq!(
        s.psk_by_hash("hash-one").await.unwrap().unwrap().uses_left,
        Some(0)
    );
    assert!(s.retire_psk("any", 2).await.unwrap());
    assert!(
        !s.use_psk(any.id).await.unwrap(),
        "a retired key is not used"
    );
}

/// Catches an approval that is not one transaction or a request that replaces a key before it
/// is approved: the held request leaves the enrolled agent's key working; approving moves its
/// key to the agent with its device id and retires the agents of other devices with its host
/// name; a second decision finds nothing pending.
async fn held_enrollments_replace_nothing_until_approved(s: &dyn Store) {
    use ferry_core::agent::{DeviceFacts, HarvestedProfile};
    let k = s.add_psk("k", "hash-k", None, None, 1).await.unwrap();
    let facts = |id: &str, host: &str| DeviceFacts {
        device_id: id.into(),
        hostname: host.into(),
        os: "linux".into(),
        agent_version: "0.1.0".into(),
        ..Default::default()
    };
    let victim = facts("victim-id", "PC-VICTIM");
    let real = s
        .enroll_agent(&Enrollment {
            facts: &victim,
            profiles: &[],
            node_hash: "node-real",
            psk_id: k.id,
            now: 10,
            address: None,
            replaces: None,
        })
        .await
        .unwrap();
    let claimed = s.agents_claimed("other-id", "pc-victim").await.unwrap();
    assert_eq!(claimed.len(), 1, "found by host name, ignoring case");
    assert_eq!(claimed[0].1, "node-real");
    let attacker = facts("attacker-id", "PC-VICTIM");
    let profiles = vec![HarvestedProfile {
        name: "ann".into(),
        home: "/home/ann".into(),
        ..Default::default()
    }];
    let id = s
        .add_enrollment_request(&NewEnrollmentRequest {
            enrollment: Enrollment {
                facts: &attacker,
                profiles: &profiles,
                node_hash: "node-attacker",
                psk_id: k.id,
                now: 20,
                address: Some("192.0.2.9"),
                replaces: None,
            },
            reason: "claims the host name of agent 1",
            conflict_agent_id: Some(real.id),
        })
        .await
        .unwrap();
    assert_eq!(
        s.agent_by_node_hash("node-real").await.unwrap().unwrap().id,
        real.id
    );
    assert!(
        s.agent_by_node_hash("node-attacker")
            .await
            .unwrap()
            .is_none()
    );
    let pending = s.enrollment_requests(Some("pending")).await.unwrap();
    assert_eq!((pending.len(), pending[0].id), (1, id));
    assert_eq!(pending[0].facts.device_id, "attacker-id");
    let held = s
        .enrollment_request_by_node_hash("node-attacker")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.state, "pending");
    // Refused: nothing changes, and it cannot be decided again.
    let (r, a) = s
        .decide_enrollment(id, false, "alice", 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.state.as_str(), r.decided_by.as_deref(), a),
        ("refused", Some("alice"), None)
    );
    assert!(
        s.decide_enrollment(id, true, "alice", 31)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.agent_by_node_hash("node-real").await.unwrap().is_some());
    // Another request, approved: the new device takes over the host name.
    let id2 = s
        .add_enrollment_request(&NewEnrollmentRequest {
            enrollment: Enrollment {
                facts: &attacker,
                profiles: &profiles,
                node_hash: "node-new",
                psk_id: k.id,
                now: 40,
                address: None,
                replaces: None,
            },
            reason: "r",
            conflict_agent_id: Some(real.id),
        })
        .await
        .unwrap();
    let (r, a) = s
        .decide_enrollment(id2, true, "bob", 50)
        .await
        .unwrap()
        .unwrap();
    let a = a.unwrap();
    assert_eq!(
        (r.state.as_str(), a.device_id.as_str()),
        ("approved", "attacker-id")
    );
    assert_eq!(
        s.agent_by_node_hash("node-new").await.unwrap().unwrap().id,
        a.id
    );
    assert!(s.agent_by_node_hash("node-real").await.unwrap().is_none());
    assert_eq!(s.agent(real.id).await.unwrap().unwrap().state, "replaced");
    // The replaced agent is not live: the host name's one state is the new agent's. Catches the
    // overview counting a computer twice, once as "replaced".
    let states: Vec<(String, String)> = s
        .live_agent_states()
        .await
        .unwrap()
        .into_iter()
        .filter(|(k, _)| *k == ferry_core::host::host_key(&attacker.hostname))
        .collect();
    assert_eq!(
        states,
        [(
            ferry_core::host::host_key(&attacker.hostname),
            a.state.clone()
        )]
    );
    assert_eq!(s.agent_profiles(a.id).await.unwrap()[0].name, "ann");
    let steps = vec!["Main/prerequisites".to_string(), "done".to_string()];
    s.assign_run(a.id, "Pilot-2-1", &steps).await.unwrap();
    s.assign_run(a.id, "Pilot-2-1", &steps).await.unwrap();
    assert_eq!(
        s.assigned_run(a.id).await.unwrap(),
        Some(("Pilot-2-1".to_string(), steps))
    );
    assert_eq!(s.assigned_run(real.id).await.unwrap(), None);
    assert_eq!(
        s.agent(a.id)
            .await
            .unwrap()
            .unwrap()
            .assigned_run
            .as_deref(),
        Some("Pilot-2-1")
    );
}

/// The names, UPNs, mail and SIDs of a decision, as a translation search reads them.
fn searched_values(d: &DecisionRow) -> Vec<&str> {
    [
        Some(d.source_name.as_str()),
        d.source_upn.as_deref(),
        d.source_mail.as_deref(),
        d.source_sid.as_deref(),
        d.target_name.as_deref(),
        d.target_upn.as_deref(),
        d.target_mail.as_deref(),
        d.target_sid.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Source users with hostile names for the search tests, a few of them matched by mail.
fn search_sample() -> (Vec<DirObject>, Vec<DirObject>) {
    let user = |id: &str, name: &str, mail: Option<&str>, sid: Option<&str>| {
        let mut o = DirObject::new(ObjectKind::User, id, name);
        o.mail = mail.map(str::to_string);
        o.upn = mail.map(str::to_string);
        o.sid = sid.map(str::to_string);
        o
    };
    let mut src = vec![
        user(
            "s-smith",
            "Smith, Ann",
            Some("ann.smith@contoso.test"),
            Some("S-1-5-21-1000-2000-3000-1104"),
        ),
        user(
            "s-zoe",
            "Zoë Ångström",
            Some("zoë.angstrom@contoso.test"),
            None,
        ),
        user(
            "s-quote",
            "Pat \"The Cat\" O'Brien",
            Some("pat@contoso.test"),
            None,
        ),
        user("s-formula", "=HYPERLINK(\"x\")", None, None),
        user("s-pct", "100% _done_", None, None),
        user("s-cjk", "山田 太郎", Some("yamada@contoso.test"), None),
        user("s-it", "IT", None, None),
    ];
    for i in 0..12 {
        src.push(user(
            &format!("s-same-{i:02}"),
            "Same Name",
            Some(&format!("same{i}@contoso.test")),
            None,
        ));
    }
    let mut smith = user(
        "t-smith",
        "Smith, Ann",
        Some("ann.smith@fabrikam.test"),
        Some("S-1-12-1-11-22-33-44"),
    );
    smith.mail = Some("ann.smith@contoso.test".into());
    let tgt = vec![smith];
    (src, tgt)
}

/// Catches: a search index (SQLite FTS5 trigram, PostgreSQL pg_trgm, migration 0019) that finds
/// other rows than a plain substring scan would: quotes read as FTS syntax, `%`/`_` as
/// wildcards, a leading `=`, non-ASCII text, a comma and space inside a term, a term of one or two
/// characters (no trigram: answered by a scan), a term spanning two values, counts that disagree
/// with the rows, a term with a NUL (SQLite's `LIKE` read the pattern only up to it: `\0` found
/// every row; PostgreSQL takes no NUL in a parameter); and an index left stale by a later cycle's
/// changes or deletions.
async fn translation_search_finds_what_a_scan_finds(s: &dyn Store) {
    let (src, tgt) = search_sample();
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(s, c, &src, &tgt).await.unwrap();
    let check = |all: Vec<DecisionRow>, terms: &'static [&'static str]| async move {
        for term in terms {
            let want: Vec<&str> = all
                .iter()
                .filter(|d| {
                    let t = term.to_lowercase();
                    searched_values(d)
                        .iter()
                        .any(|v| v.to_lowercase().contains(&t))
                })
                .map(|d| d.source_id.as_str())
                .collect();
            let q = DecisionQuery {
                search: Some(term.to_string()),
                ..Default::default()
            };
            let got = s.decisions(&q).await.unwrap();
            let got: Vec<&str> = got.iter().map(|d| d.source_id.as_str()).collect();
            assert_eq!(got, want, "search {term:?}");
            assert_eq!(
                s.count_decisions(&q).await.unwrap(),
                want.len() as i64,
                "count of {term:?}"
            );
        }
    };
    let all = s.decisions(&Default::default()).await.unwrap();
    assert_eq!(all.len(), src.len());
    let terms: &'static [&'static str] = &[
        "Smith, Ann",
        "SMITH, ANN",
        "mith, a",
        "ann.smith@fabrikam",
        "s-1-12-1-11",
        "1104",
        "zoë",
        "ZOË ÅNGSTRÖM",
        "ë",
        "ö",
        "\"The Cat\"",
        "\"",
        "o'brien",
        "'",
        "=hyperlink(",
        "=",
        "100%",
        "% _",
        "_done_",
        "%",
        "山田",
        "田 太",
        "same",
        "same1",
        "@contoso.test",
        "sa",
        "n,",
        "x",
        "ann\nsmith",
        "test\ns-1",
        "no such person",
        "NEAR",
        "smith OR zoë",
        "*",
        "^smith",
        "-smith",
        "\0",
        "smith\0",
        "s\0",
    ];
    // Right after the cycle (SQLite: the index is not filled yet, the scan answers), then once
    // SQLite's indexer has caught up (the index answers).
    check(all.clone(), terms).await;
    index_whole(s).await;
    check(all, terms).await;
    assert!(
        terms.iter().any(|t| t.chars().count() < 3) && terms.iter().any(|t| t.chars().count() >= 3),
        "both the index and the scan are exercised"
    );

    // A later cycle renames one user, removes another (SQLite: the highest rid): found or not
    // right after the cycle (scan), and after the indexer (index).
    let mut src2: Vec<DirObject> = src.iter().filter(|o| o.id != "s-zoe").cloned().collect();
    src2[0].name = "Jones, Ann".into();
    let c2 = s
        .begin_cycle("users", "manual", None, "a", 2)
        .await
        .unwrap();
    commit(s, c2, &src2, &tgt).await.unwrap();
    let all = s.decisions(&Default::default()).await.unwrap();
    assert_eq!(all.len(), src2.len());
    let later: &'static [&'static str] = &[
        "zoë",
        "jones, ann",
        "Smith, Ann",
        "ann.smith@",
        "ë",
        "newcomer",
    ];
    check(all.clone(), later).await;
    index_whole(s).await;
    check(all, later).await;

    // Two more cycles before the indexer runs: one adds a user (on SQLite it takes the deleted
    // user's rid again, whose stale entry the indexer must not resurrect nor delete over the new
    // row's), one renames it; then the indexer catches up with both at once.
    let mut src3 = src2.clone();
    src3.push(DirObject::new(ObjectKind::User, "s-new", "Zed Newcomer"));
    for (n, name) in [(3, "Zed Newcomer"), (4, "Zed Nouveau")] {
        src3.last_mut().unwrap().name = name.into();
        let c = s
            .begin_cycle("users", "manual", None, "a", n)
            .await
            .unwrap();
        commit(s, c, &src3, &tgt).await.unwrap();
    }
    let all = s.decisions(&Default::default()).await.unwrap();
    let last: &'static [&'static str] = &["zoë", "zed", "newcomer", "nouveau", "ë", "jones"];
    check(all.clone(), last).await;
    index_whole(s).await;
    check(all, last).await;
}

/// Runs SQLite's search indexer until its index is whole (nothing on PostgreSQL).
async fn index_whole(s: &dyn Store) {
    let mut chunks = 0;
    while s.index_search().await.unwrap() {
        chunks += 1;
        assert!(chunks < 100_000, "the indexer never ends");
    }
}

/// The scan's rule, in Rust: a decision is found when one of its searched values holds the term,
/// both folded; a term with a line feed or a NUL finds nothing (the index joins a decision's
/// values with line feeds; SQLite's search reads a NUL in a value as one).
fn scan_model<'a>(all: &'a [DecisionRow], term: &str) -> Vec<&'a str> {
    let t = term.to_lowercase();
    all.iter()
        .filter(|d| {
            !t.is_empty()
                && !t.contains(['\n', '\0'])
                && searched_values(d)
                    .iter()
                    .any(|v| v.to_lowercase().contains(&t))
        })
        .map(|d| d.source_id.as_str())
        .collect()
}

/// Catches, for random values and terms (characters chosen to trip folding, `LIKE`, FTS5
/// syntax and trigram boundaries): a search through SQLite's index finding other decisions than
/// the scan right after the same cycle, or than the scan's rule; PostgreSQL's pg_trgm search
/// disagreeing with that rule; a count disagreeing with the rows, or a count up to a cap that
/// passes it or stops short of it.
async fn index_search_equals_scan_search_for_random_values(s: &dyn Store) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as PtConfig, TestRunner};
    let chars = "aAbzZëËöÖåÅß%_\\\"'=,.@- 山田1";
    let pick: Vec<char> = chars.chars().collect();
    let value = proptest::collection::vec(proptest::sample::select(pick.clone()), 0..12)
        .prop_map(|v| v.into_iter().collect::<String>());
    let users = proptest::collection::vec(
        (
            value.clone(),
            proptest::option::of(value.clone()),
            proptest::option::of(value.clone()),
        ),
        1..8,
    );
    let terms = proptest::collection::vec(
        proptest::collection::vec(proptest::sample::select(pick), 1..6)
            .prop_map(|v| v.into_iter().collect::<String>()),
        1..6,
    );
    let mut runner = TestRunner::new(PtConfig {
        cases: 24,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let cycle = std::sync::atomic::AtomicI64::new(1);
    let rt = tokio::runtime::Handle::current();
    let result = runner.run(&(users, terms), |(users, mut terms)| {
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let src: Vec<DirObject> = users
                    .iter()
                    .enumerate()
                    .map(|(i, (name, upn, sid))| {
                        let mut o =
                            DirObject::new(ObjectKind::User, format!("s-{i}"), name.clone());
                        o.upn = upn.clone();
                        o.sid = sid.clone();
                        o
                    })
                    .collect();
                // Terms that are parts of the values, too, so that most searches find something.
                for (name, upn, _) in &users {
                    for v in [Some(name), upn.as_ref()].into_iter().flatten() {
                        let c: Vec<char> = v.chars().collect();
                        if c.len() > 4 {
                            terms.push(c[1..c.len() - 1].iter().collect());
                        }
                    }
                }
                let n = cycle.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let c = s
                    .begin_cycle("users", "manual", None, "a", n)
                    .await
                    .unwrap();
                commit(s, c, &src, &[]).await.unwrap();
                let all = s.decisions(&Default::default()).await.unwrap();
                let search = |term: String| async move {
                    let q = DecisionQuery {
                        search: Some(term),
                        ..Default::default()
                    };
                    let rows: Vec<String> = s
                        .decisions(&q)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|d| d.source_id)
                        .collect();
                    let upto = s.count_decisions_upto(&q, 2).await.unwrap();
                    (rows, s.count_decisions(&q).await.unwrap(), upto)
                };
                let mut scanned = Vec::new();
                for t in &terms {
                    scanned.push(search(t.clone()).await);
                }
                index_whole(s).await;
                for (t, before) in terms.iter().zip(scanned) {
                    let after = search(t.clone()).await;
                    let want: Vec<String> =
                        scan_model(&all, t).into_iter().map(String::from).collect();
                    prop_assert_eq!(&before.0, &want, "scan of {:?}", t);
                    prop_assert_eq!(&after.0, &want, "index search of {:?}", t);
                    prop_assert_eq!(after.1, want.len() as i64, "count of {:?}", t);
                    prop_assert_eq!(before.1, want.len() as i64, "scan count of {:?}", t);
                    prop_assert_eq!(
                        after.2,
                        want.len().min(2) as i64,
                        "count up to 2 of {:?}",
                        t
                    );
                    prop_assert_eq!(
                        before.2,
                        want.len().min(2) as i64,
                        "scan count up to 2 of {:?}",
                        t
                    );
                }
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Catches (SQLite): searches that never read the index once it is whole (the test empties the
/// index behind the store's back: a search must then find nothing, of three characters or more
/// and of one or two through the trigrams that contain them), or that read it while it is not
/// whole (the mark set back: the scan must answer again), and a term held by more trigrams than a
/// search asks for, or by a trigram with a NUL, given to the index instead of the scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_searches_read_the_index_only_once_it_is_whole() {
    let (s, g) = sqlite_store();
    let path = g.0.as_ref().unwrap().path().join("ferry.db");
    let (src, tgt) = search_sample();
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(&*s, c, &src, &tgt).await.unwrap();
    index_whole(&*s).await;
    let find = |t: &str| {
        let s = Arc::clone(&s);
        let q = DecisionQuery {
            search: Some(t.into()),
            ..Default::default()
        };
        async move { s.decisions(&q).await.unwrap().len() }
    };
    assert_eq!(find("smith, ann").await, 1);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("INSERT INTO decisions_search (decisions_search) VALUES ('delete-all')")
        .unwrap();
    assert_eq!(find("smith, ann").await, 0, "the whole index answers");
    assert_eq!(find("sm").await, 0, "two characters read the index too");
    assert_eq!(find("山").await, 0, "and one");
    // A character more trigrams contain than a search asks the index for: the scan answers.
    let many: Vec<String> = (0..=ferry_store::search_index::SHORT_TERMS)
        .map(|i| format!("('ë{i:02}')"))
        .collect();
    raw.execute_batch(&format!(
        "INSERT INTO decisions_search_terms (term) VALUES {}",
        many.join(", ")
    ))
    .unwrap();
    assert_eq!(find("Ë").await, 1, "a common character scans");
    // A term whose trigrams hold many entries (20,000 of no decision, written behind the store's
    // back with a trigram of the vocabulary): its page scans (finding the user), its counts read
    // the index anyway (which, emptied, holds none of its matches).
    raw.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {cap}) \
         INSERT INTO decisions_search (rowid, terms) SELECT 1000000 + i, 'zzå' FROM n; \
         INSERT INTO decisions_search_terms (term) VALUES ('zzå');",
        cap = ferry_store::search_index::SHORT_CAP
    ))
    .unwrap();
    let q = DecisionQuery {
        search: Some("Å".into()),
        ..Default::default()
    };
    assert_eq!(s.decisions(&q).await.unwrap().len(), 1, "the page scans");
    assert_eq!(
        s.count_decisions_upto(&q, 10).await.unwrap(),
        0,
        "the count reads the index"
    );
    assert_eq!(
        s.count_decisions(&q).await.unwrap(),
        0,
        "so does the exact count"
    );
    // A trigram holding a NUL (SQLite stores one in a value): no FTS5 query can carry it.
    raw.execute(
        "INSERT INTO decisions_search_terms (term) VALUES (?)",
        ["山\0x"],
    )
    .unwrap();
    assert_eq!(
        find("山").await,
        1,
        "a NUL among the trigrams: the scan answers"
    );
    raw.execute_batch("UPDATE decisions_search_state SET indexed_cycle = 0")
        .unwrap();
    assert_eq!(
        find("smith, ann").await,
        1,
        "an index not whole is not read"
    );
    // The object report's look-up through the index, and its scan when the index finds nothing.
    raw.execute_batch("DELETE FROM decisions_search_state")
        .unwrap();
    index_whole(&*s).await;
    let (found, every) = s
        .report_objects("ANN.SMITH@CONTOSO.TEST", 20)
        .await
        .unwrap();
    assert!(!every, "answered through the decisions, and says so");
    let scanned = s.find_objects("ANN.SMITH@CONTOSO.TEST", 20).await.unwrap();
    assert_eq!(found, scanned[..1], "the source user, as the scan reads it");
    // The documented limit: the unmatched target with the same mail is in no decision, so the
    // look-up through the index (which found the source user) does not list it; the scan does.
    assert_eq!(
        scanned
            .iter()
            .map(|f| f.object.id.as_str())
            .collect::<Vec<_>>(),
        ["s-smith", "t-smith"]
    );
    // A value of two characters: through the trigrams that contain it, as the scan finds it.
    let (it, every) = s.report_objects("it", 20).await.unwrap();
    assert!(!every, "answered through the decisions");
    assert_eq!(it, s.find_objects("it", 20).await.unwrap());
    assert_eq!(it.len(), 1);
    let (matched, _) = s.report_objects("Same Name", 20).await.unwrap();
    assert_eq!(matched.len(), 12, "every decision's object, by name");
    assert_eq!(matched, s.find_objects("same name", 20).await.unwrap());
    assert_eq!(
        s.report_objects("s-same-03", 20).await.unwrap().0,
        s.find_objects("s-same-03", 20).await.unwrap(),
        "by id"
    );
    raw.execute_batch("INSERT INTO decisions_search (decisions_search) VALUES ('delete-all')")
        .unwrap();
    let (scanned, every) = s.report_objects("s-1-12-1-11-22-33-44", 20).await.unwrap();
    assert_eq!(
        (scanned.len(), every),
        (1, true),
        "found by the scan when the index finds nothing"
    );
}

/// Catches (SQLite): an indexer whose progress is not stored with the chunk it records, so that
/// after a kill (the store dropped mid-way and opened again) or a chunk that fails half-way (an
/// injected error after its entries were written) it skips rows, or never ends; and an index
/// declared whole before every row is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_indexer_resumes_after_a_kill_and_a_failed_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let sample = ferry_demo::generate(9_000, false, 5);
    {
        let s = sqlite::SqliteStore::open(&path).unwrap();
        let c = s
            .begin_cycle("users", "manual", None, "a", 1)
            .await
            .unwrap();
        commit(&s, c, &sample.source, &sample.target).await.unwrap();
        assert!(s.index_search().await.unwrap(), "more than one chunk to do");
        // Dropped here, mid-way, as a killed server would leave it.
    }
    let s = sqlite::SqliteStore::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let pass: i64 = raw
        .query_row("SELECT pass_rid FROM decisions_search_state", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(pass > 0, "the first chunk's progress was committed with it");
    raw.execute_batch(
        "CREATE TRIGGER fail_chunk BEFORE UPDATE ON decisions_search_state \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    let err = s.index_search().await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    raw.execute_batch("DROP TRIGGER fail_chunk").unwrap();
    let mut chunks = 0;
    while s.index_search().await.unwrap() {
        chunks += 1;
    }
    assert!(chunks >= 2, "{chunks} chunks after the resume");
    let all = s.decisions(&Default::default()).await.unwrap();
    for probe in [
        &sample.source[0],
        &sample.source[4_321],
        &sample.source[8_999],
    ] {
        let term: String = probe.upn.as_deref().unwrap().chars().skip(2).collect();
        let got: Vec<String> = s
            .decisions(&DecisionQuery {
                search: Some(term.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.source_id)
            .collect();
        assert_eq!(got, scan_model(&all, &term), "{term}");
        assert!(got.contains(&probe.id));
    }
    let indexed: i64 = raw
        .query_row("SELECT count(*) FROM decisions_search", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        indexed as usize,
        all.len(),
        "one entry per decision, none twice"
    );
}

/// Catches (SQLite), with values a hostile directory may hold (a NUL, a line feed, FTS5 syntax,
/// a noncharacter, a very long value, and letters whose lower case changes their length or
/// depends on their place: `İ`, `ẞ`, a final `Σ`, combining marks): a search that finds other
/// decisions than the scan's rule (`scan_model`), by the scan right after the cycle or through the
/// whole index, for terms of every length. SQLite's `LIKE` read a value only up to a NUL: the
/// rest of it (`Zed` of `Ann\0Zed`) was found by no search, and a term with a NUL found what
/// ended with the part before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_sqlite_searches_of_hostile_values_find_what_the_scan_rule_finds() {
    let (s, _g) = sqlite_store();
    let user = |id: &str, name: &str, mail: Option<&str>| {
        let mut o = DirObject::new(ObjectKind::User, id, name);
        o.mail = mail.map(str::to_string);
        o.upn = mail.map(str::to_string);
        o
    };
    let long: String = "Ab".repeat(3_000);
    let src = vec![
        user("s-nul", "Ann\0Zed", Some("ann.nul@contoso.test")),
        user("s-lf", "Line\nFeed", Some("line.feed@contoso.test")),
        user("s-fts", "\"x\" OR y* ^NEAR terms:z", None),
        user("s-dot", "İSTANBUL İ", Some("istanbul@contoso.test")),
        user("s-sharp", "STRAẞE", Some("straße@contoso.test")),
        user("s-sigma", "ΟΔΟΣ ΝΙΚΟΣ", None),
        user("s-comb", "Zoe\u{301} Ångström", None),
        user("s-nonchar", "x\u{FFFF}y\u{FFFD}", None),
        user("s-long", &long, None),
    ];
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(&*s, c, &src, &[]).await.unwrap();
    let all = s.decisions(&Default::default()).await.unwrap();
    assert_eq!(all.len(), src.len());
    let terms: Vec<String> = [
        "ann.nul@contoso",
        "contoso",
        "zed",
        "ze",
        "z",
        "nul",
        "n\0z",
        "ann\0zed",
        "feed",
        "e\nf",
        "\"x\"",
        "or y*",
        "terms:",
        "^near",
        "\"",
        "*",
        "İ",
        "i̇",
        "i",
        "İSTANBUL",
        "istanbul",
        "ẞ",
        "ß",
        "straße",
        "Σ",
        "σ",
        "ς",
        "ΝΙΚΟΣ",
        "νικος",
        "ος",
        "\u{301}",
        "e\u{301}",
        "ZOÉ",
        "\u{FFFF}",
        "\u{FFFD}",
        "x\u{FFFF}y",
        "bab",
        &long[1..200],
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    let search = |term: String| {
        let s = &s;
        async move {
            let q = DecisionQuery {
                search: Some(term),
                ..Default::default()
            };
            let rows: Vec<String> = s
                .decisions(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.source_id)
                .collect();
            (rows, s.count_decisions(&q).await.unwrap())
        }
    };
    let mut scanned = Vec::new();
    for t in &terms {
        scanned.push(search(t.clone()).await);
    }
    index_whole(&*s).await;
    let mut wrong = Vec::new();
    for (t, before) in terms.iter().zip(scanned) {
        let want: Vec<String> = scan_model(&all, t).into_iter().map(String::from).collect();
        let after = search(t.clone()).await;
        for (how, got) in [("scan", before), ("index", after)] {
            if got != (want.clone(), want.len() as i64) {
                wrong.push(format!("{how} of {t:?}: {got:?}, the rule finds {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Catches: keyset pages (`after`, the key of a page's last row) that skip or repeat a row where
/// names are equal, lose rows at a kind's or a profile's boundary, or ignore the search and
/// status filters; for every page size from 1 to 8.
async fn decision_pages_after_a_cursor_skip_and_repeat_nothing(s: &dyn Store) {
    let (mut src, tgt) = search_sample();
    src.push(DirObject::new(ObjectKind::Group, "g-1", "Same Name"));
    src.push(DirObject::new(ObjectKind::Group, "g-2", "Same Name"));
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(s, c, &src, &tgt).await.unwrap();
    for filter in [
        DecisionQuery::default(),
        DecisionQuery {
            search: Some("same".into()),
            ..Default::default()
        },
        DecisionQuery {
            search: Some("e".into()),
            kind: Some(ObjectKind::User),
            ..Default::default()
        },
        DecisionQuery {
            status: Some(Status::Unmatched),
            profile: Some("users".into()),
            ..Default::default()
        },
    ] {
        let all = s.decisions(&filter).await.unwrap();
        assert!(all.len() >= 2, "{filter:?}");
        for size in 1..=8 {
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let page = s
                    .decisions(&DecisionQuery {
                        limit: size,
                        after: after.clone(),
                        ..filter.clone()
                    })
                    .await
                    .unwrap();
                assert!(page.len() as i64 <= size);
                let Some(last) = page.last() else { break };
                let next = DecisionCursor::of(last, DecisionSort::Kind);
                assert_eq!(DecisionCursor::parse(&next.token()), Some(next.clone()));
                after = Some(next);
                walked.extend(page);
            }
            assert_eq!(walked, all, "pages of {size} with {filter:?}");
        }
    }
    assert_eq!(DecisionCursor::parse("not a cursor"), None);
    assert_eq!(DecisionCursor::parse(r#"["users","planet","x"]"#), None);
}

/// Walks every page of a sorted listing (`next` the cursor of a page's last row) and returns the
/// rows in the order the pages gave them.
async fn walk<T: Clone, C, F, Fut>(mut page: F, next: impl Fn(&T) -> C) -> Vec<T>
where
    F: FnMut(Option<C>) -> Fut,
    Fut: std::future::Future<Output = Vec<T>>,
{
    let mut out: Vec<T> = Vec::new();
    let mut after = None;
    loop {
        let p = page(after.take()).await;
        let Some(last) = p.last() else { break };
        after = Some(next(last));
        out.extend(p);
        assert!(out.len() < 10_000, "the pages never end");
    }
    out
}

/// Catches: a sorted translation or What-If page that repeats or skips rows at a page boundary
/// (ties in a name, a cursor whose value or direction is ignored), text sorted by a language's
/// collation on one backend and by code point on the other (`Ødegård` after `Zoë`, `Smith, Ann`
/// before `adams`, `=cmd` first: code point order on both), a descending order that is not the
/// ascending reversed; and for the columns of `decisions_order` (migration 0027: target name,
/// SIDs, rule): a missing value sorted elsewhere than first, rules compared as text (`10` before
/// `2`), SQLite's order table read before the indexer filled it or while a later cycle's changes
/// are not in it (stale names, a deleted decision shown, a new one missing), a decision shown
/// twice by the join, and any of these wrong for a search of one or two characters (PostgreSQL
/// reads its candidates first and sorts them after; breaking that subquery fails this test).
async fn sorted_decision_pages_follow_code_point_order(s: &dyn Store) {
    let (src, tgt) = sort_sample();
    cycle(s, 1, &src, &tgt).await;
    check_decision_sorts(s, "the order table not filled").await;
    index_whole(s).await;
    check_decision_sorts(s, "the order table whole").await;
    // A later cycle renames targets and changes SIDs, deletes a decision and adds one: SQLite's
    // order table is stale until the indexer passes again.
    let (later_src, later_tgt) = sort_sample_later(&src, &tgt);
    cycle(s, 2, &later_src, &later_tgt).await;
    check_decision_sorts(s, "a later cycle not indexed").await;
    index_whole(s).await;
    check_decision_sorts(s, "a later cycle indexed").await;
    // The decision deleted comes back (a new row for the same key).
    cycle(s, 3, &src, &tgt).await;
    index_whole(s).await;
    check_decision_sorts(s, "a deleted decision back").await;
    let names: Vec<String> = s
        .decisions(&DecisionQuery {
            sort: DecisionSort::SourceName,
            kind: Some(ObjectKind::User),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.source_name)
        .collect();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(at("=cmd|' /C calc'!A0") < at("Smith, Ann"));
    assert!(
        at("Smith, Ann") < at("adams"),
        "upper case first: {names:?}"
    );
    assert!(at("Zoë Ångström") < at("adams"));
    assert!(
        at("adams") < at("Ødegård, Åse"),
        "Ø (U+00D8) after ASCII: {names:?}"
    );
    assert!(at("Ødegård, Åse") < at("山田 太郎"));
    assert_eq!(
        DecisionCursor::parse(r#"["users","user","x","v","w"]"#),
        None,
        "five parts"
    );
}

/// The search sample with names and groups whose names, SIDs and rules sort differently.
fn sort_sample() -> (Vec<DirObject>, Vec<DirObject>) {
    let (mut src, mut tgt) = search_sample();
    for (id, name) in [
        ("s-ode", "Ødegård, Åse"),
        ("s-cmd", "=cmd|' /C calc'!A0"),
        ("s-adams", "adams"),
        ("s-apos", "O'Brien, \"Pat\""),
    ] {
        src.push(DirObject::new(ObjectKind::User, id, name));
    }
    // Groups match by name: these are the matched decisions, with target names.
    for (i, name) in [
        "Same Name",
        "Ødegård, Åse",
        "=cmd",
        "adams",
        "Smith, \"Ann\"",
    ]
    .iter()
    .enumerate()
    {
        // SIDs in an order that is not the names' (and none on some): `-9` after `-10` by code
        // point.
        let sid = |side: &str| (i != 2).then(|| format!("S-1-5-21-{side}-{}", 13 - 2 * i));
        src.push(sort_group(format!("g-{i}"), name, sid("7")));
        tgt.push(sort_group(format!("tg-{i}"), name, sid("8")));
    }
    (src, tgt)
}

fn sort_group(id: String, name: &str, sid: Option<String>) -> DirObject {
    let mut o = DirObject::new(ObjectKind::Group, id, name);
    o.sid = sid;
    o
}

/// [`sort_sample`] a cycle later: groups renamed on both sides (they match by name) in another
/// order, their SIDs changed, one deleted and one added.
fn sort_sample_later(src: &[DirObject], tgt: &[DirObject]) -> (Vec<DirObject>, Vec<DirObject>) {
    let (mut src, mut tgt) = (src.to_vec(), tgt.to_vec());
    src.retain(|o| o.id != "g-3");
    src.push(sort_group(
        "g-new".into(),
        "Zz new",
        Some("S-1-5-21-7-0".into()),
    ));
    tgt.push(sort_group("tg-new".into(), "Zz new", None));
    for o in src.iter_mut().chain(tgt.iter_mut()) {
        let n = o.id.strip_prefix("g-").or(o.id.strip_prefix("tg-"));
        if let Some(Ok(i)) = n.map(str::parse::<usize>) {
            o.name = format!("{} {}", 9 - i, o.name);
            o.sid = (i != 0).then(|| format!("S-1-5-21-8-{}", 3 * i));
        }
    }
    (src, tgt)
}

/// Catches (SQLite): a large pass that keeps `decisions_order`'s indexes (rows inserted one by
/// one into four indexes: minutes at a million), indexes never built again after it, a listing
/// wrong while they are missing, and a small pass dropping them (a pass of one changed row
/// rebuilding four indexes of a million).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_builds_the_order_indexes_after_a_large_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let s = sqlite::SqliteStore::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let indexes = || {
        raw.query_row(ferry_store::search_index::ORDER_READY, [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
    };
    let (src, tgt) = sort_sample();
    // Passes of 2 rows or more are large here.
    let fill = |label: &'static str, bulk: i64| {
        let s = &s;
        let indexes = &indexes;
        async move {
            let mut partial = 0;
            while s.index_search_bulk(bulk).await.unwrap() {
                if indexes() < 4 {
                    partial += 1;
                    check_decision_sorts(s, label).await;
                }
            }
            partial
        }
    };
    cycle(&s, 1, &src, &tgt).await;
    assert!(fill("first pass", 2).await > 0, "written without indexes");
    assert_eq!(indexes(), 4, "built after the pass");
    check_decision_sorts(&s, "indexes built").await;
    let (later_src, later_tgt) = sort_sample_later(&src, &tgt);
    cycle(&s, 2, &later_src, &later_tgt).await;
    assert!(fill("a large later pass", 2).await > 0, "dropped again");
    assert_eq!(indexes(), 4);
    check_decision_sorts(&s, "indexes built again").await;
    cycle(&s, 3, &src, &tgt).await;
    assert_eq!(
        fill("a small pass", 1_000).await,
        0,
        "a small pass keeps them"
    );
    assert_eq!(indexes(), 4);
    check_decision_sorts(&s, "a small pass").await;
}

/// What the API claims for a sorted list of decisions: (profile, value, kind, source id), text
/// by code point (Rust's `str` order), rules as numbers (none first), all reversed when
/// descending.
fn sort_model(rows: &mut [DecisionRow], sort: DecisionSort, direction: Direction) {
    rows.sort_by_key(|d| {
        let value = match sort {
            DecisionSort::Rule => (d.rule.map_or(-1, i64::from), String::new()),
            _ => (0, sort.value_of(d).unwrap_or_default()),
        };
        (
            d.profile.clone(),
            value,
            d.kind.as_str(),
            d.source_id.clone(),
        )
    });
    if direction == Direction::Desc {
        rows.reverse();
    }
}

/// The decisions in every sort, direction and filter of [`sorted_decision_pages_follow_code_point_order`],
/// one page and pages of 1, 2 and 5, against the order the API claims, computed here.
async fn check_decision_sorts(s: &dyn Store, label: &str) {
    let all = s.decisions(&DecisionQuery::default()).await.unwrap();
    assert!(all.iter().any(|d| d.status == Status::Matched));
    assert!(
        all.iter().any(|d| d.rule.is_some_and(|r| r > 0)),
        "two rules"
    );
    assert!(all.iter().any(|d| d.target_sid.is_some()), "{label}");
    for sort in [
        DecisionSort::Kind,
        DecisionSort::Status,
        DecisionSort::SourceName,
        DecisionSort::TargetName,
        DecisionSort::SourceSid,
        DecisionSort::TargetSid,
        DecisionSort::Rule,
    ] {
        for direction in [Direction::Asc, Direction::Desc] {
            for (status, profile, kind) in [
                (Some(Status::Unmatched), Some("users"), None),
                (Some(Status::Matched), Some("users"), None),
                (
                    Some(Status::Matched),
                    Some("users"),
                    Some(ObjectKind::Group),
                ),
                (None, Some("users"), None),
                (None, None, None),
            ] {
                // Short terms too: PostgreSQL reads a page of their candidates first and sorts
                // them after (`query::decisions_by`), SQLite its index or a scan.
                for search in [None, Some("a"), Some("1-")] {
                    let filter = DecisionQuery {
                        status,
                        kind,
                        profile: profile.map(str::to_string),
                        search: search.map(str::to_string),
                        sort,
                        direction,
                        ..Default::default()
                    };
                    let holds = |d: &DecisionRow| {
                        let Some(term) = search else { return true };
                        searched_values(d)
                            .iter()
                            .any(|v| v.to_lowercase().contains(term))
                    };
                    let mut want: Vec<DecisionRow> = all
                        .iter()
                        .filter(|d| status.is_none_or(|st| d.status == st))
                        .filter(|d| kind.is_none_or(|k| d.kind == k))
                        .filter(|d| holds(d))
                        .cloned()
                        .collect();
                    if search.is_some() {
                        assert!(
                            !want.is_empty() || status.is_some() || kind.is_some(),
                            "{label}: {search:?} finds something"
                        );
                    }
                    sort_model(&mut want, sort, direction);
                    assert_eq!(
                        s.decisions(&filter).await.unwrap(),
                        want,
                        "{label}: one page of all, {sort:?} {direction:?} {status:?} {search:?}"
                    );
                    for size in [1, 2, 5] {
                        let walked = walk(
                            |after| {
                                let q = DecisionQuery {
                                    limit: size,
                                    after,
                                    ..filter.clone()
                                };
                                async move { s.decisions(&q).await.unwrap() }
                            },
                            |last| {
                                let c = DecisionCursor::of(last, sort);
                                assert_eq!(DecisionCursor::parse(&c.token()).as_ref(), Some(&c));
                                c
                            },
                        )
                        .await;
                        assert_eq!(
                            walked, want,
                            "{label}: pages of {size}, {sort:?} {direction:?} {status:?} {profile:?} {search:?}"
                        );
                    }
                }
            }
        }
    }
}

/// Catches: agents, refused communications, audit lines and log entries paged in a sort that
/// repeats or skips a row where values tie (agents in one state, refusals at one moment), host
/// names compared with case on one backend and without on the other, a descending page that
/// continues ascending, and totals that count the page instead of the filter.
async fn sorted_agent_audit_log_and_failure_pages(s: &dyn Store) {
    use ferry_core::agent::DeviceFacts;
    use ferry_store::{AgentQuery, AgentSort, FailedQuery, FailedSort, SortValue};
    let k = s.add_psk("k", "hash-k", None, None, 1).await.unwrap();
    let hosts = [
        "pc-b",
        "PC-A",
        "Smith-Laptop",
        "=cmd",
        "pc-c",
        "O'Brien",
        "aa",
        "PC-D",
    ];
    for (i, h) in hosts.iter().enumerate() {
        let facts = DeviceFacts {
            device_id: format!("dev-{i:02}"),
            hostname: h.to_string(),
            os: "linux".into(),
            os_version: "12".into(),
            agent_version: "0.1.0".into(),
            directory_object_id: None,
            joined_to: None,
        };
        let a = s
            .enroll_agent(&Enrollment {
                facts: &facts,
                profiles: &[],
                node_hash: &format!("node-{i}"),
                psk_id: k.id,
                now: 10 + (i as i64 % 3),
                address: None,
                replaces: None,
            })
            .await
            .unwrap();
        if i % 2 == 0 {
            s.record_contacts(&[Contact {
                agent_id: a.id,
                at: 100 + (i as i64 % 4),
                address: None,
                state: Some("running".into()),
                agent_version: None,
            }])
            .await
            .unwrap();
        }
    }
    let all = s.agents_page(&AgentQuery::default()).await.unwrap();
    assert_eq!(all.len(), hosts.len());
    for sort in [
        AgentSort::Id,
        AgentSort::Hostname,
        AgentSort::State,
        AgentSort::LastContact,
    ] {
        for direction in [Direction::Asc, Direction::Desc] {
            let mut want = all.clone();
            want.sort_by_key(|a| {
                let v = match sort.value_of(a) {
                    None => String::new(),
                    Some(SortValue::Text(t)) => t,
                    Some(SortValue::Int(i)) => format!("{i:020}"),
                };
                (v, a.id)
            });
            if direction == Direction::Desc {
                want.reverse();
            }
            for size in [1, 3] {
                let walked = walk(
                    |after: Option<(Option<SortValue>, i64)>| {
                        let q = AgentQuery {
                            sort,
                            direction,
                            limit: size,
                            after: after.as_ref().map(|a| a.1),
                            after_value: after.and_then(|a| a.0),
                            ..Default::default()
                        };
                        async move { s.agents_page(&q).await.unwrap() }
                    },
                    |a| (sort.value_of(a), a.id),
                )
                .await;
                let ids =
                    |v: &[ferry_store::AgentRecord]| v.iter().map(|a| a.id).collect::<Vec<_>>();
                assert_eq!(ids(&walked), ids(&want), "{sort:?} {direction:?} by {size}");
            }
        }
    }
    let by_name: Vec<String> = s
        .agents_page(&AgentQuery {
            sort: AgentSort::Hostname,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.hostname)
        .collect();
    assert_eq!(
        by_name,
        [
            "=cmd",
            "aa",
            "O'Brien",
            "PC-A",
            "pc-b",
            "pc-c",
            "PC-D",
            "Smith-Laptop"
        ],
        "ASCII letters folded, then code point order"
    );

    // Refused communications: some at the same moment, some without an address.
    for i in 0..9i64 {
        s.record_failed_comm(
            &FailedComm {
                id: 0,
                at: 1000 + i / 3,
                address: (i % 4 != 0).then(|| format!("192.0.2.{}", 9 - i)),
                code: if i % 2 == 0 {
                    "bad_psk"
                } else {
                    "bad_node_key"
                }
                .into(),
                reason: format!("refusal {i}"),
                agent_id: None,
                device_id: Some(format!("dev-{i}")),
                count: 1,
                first_at: 1000,
            },
            0,
        )
        .await
        .unwrap();
    }
    let every = s.failed_comms_page(&FailedQuery::default()).await.unwrap();
    assert_eq!(every.len(), 9);
    for code in [None, Some("bad_psk")] {
        for sort in [FailedSort::At, FailedSort::Address] {
            for direction in [Direction::Asc, Direction::Desc] {
                let mut want: Vec<_> = every
                    .iter()
                    .filter(|f| code.is_none_or(|c| f.code == c))
                    .cloned()
                    .collect();
                want.sort_by_key(|f| {
                    (
                        match sort.value_of(f) {
                            SortValue::Int(i) => format!("{i:020}"),
                            SortValue::Text(t) => t,
                        },
                        f.id,
                    )
                });
                if direction == Direction::Desc {
                    want.reverse();
                }
                let base = FailedQuery {
                    code: code.map(str::to_string),
                    sort,
                    direction,
                    limit: 2,
                    ..Default::default()
                };
                assert_eq!(
                    s.count_failed_comms(&base).await.unwrap(),
                    want.len() as i64
                );
                let walked = walk(
                    |after: Option<(SortValue, i64)>| {
                        let q = FailedQuery {
                            after: after.as_ref().map(|a| a.1),
                            after_value: after.map(|a| a.0),
                            ..base.clone()
                        };
                        async move { s.failed_comms_page(&q).await.unwrap() }
                    },
                    |f| (sort.value_of(f), f.id),
                )
                .await;
                assert_eq!(walked, want, "{code:?} {sort:?} {direction:?}");
            }
        }
    }
    assert_eq!(
        s.failed_comms(3).await.unwrap(),
        every.iter().rev().take(3).cloned().collect::<Vec<_>>(),
        "the report's newest first"
    );

    // Audit lines: filtered by action and operator, newest first and back.
    let mut ids = Vec::new();
    for n in 0..10i64 {
        ids.push(
            s.add_audit(&AuditEntry {
                id: 0,
                at: 2000 + n,
                actor: if n % 2 == 0 {
                    "Ødegård, Åse"
                } else {
                    "=cmd"
                }
                .into(),
                tenant: None,
                action: if n % 3 == 0 { "sync.run" } else { "batch.put" }.into(),
                subject: format!("s-{n}"),
                detail: String::new(),
                address: None,
                request_id: None,
            })
            .await
            .unwrap(),
        );
    }
    for newest_first in [false, true] {
        let base = AuditQuery {
            actor: Some("Ødegård, Åse".into()),
            action: Some("sync.run".into()),
            newest_first,
            limit: 1,
            ..Default::default()
        };
        // n = 0 and 6: even (Åse) and a multiple of 3.
        let mut want = vec![ids[0], ids[6]];
        if newest_first {
            want.reverse();
        }
        assert_eq!(s.count_audit(&base).await.unwrap(), 2);
        let walked = walk(
            |after| {
                let q = AuditQuery {
                    after,
                    ..base.clone()
                };
                async move { s.audit_page(&q).await.unwrap() }
            },
            |l| l.id,
        )
        .await;
        assert_eq!(walked.iter().map(|l| l.id).collect::<Vec<_>>(), want);
    }
}

/// Catches (SQLite): an indexer chunk stopped by its time budget (`search_index::BUDGET`) that
/// resumes past a row it did not index (a row skipped: searches miss it once the index is whole),
/// or never ends. Each decision here holds a long value of distinct trigrams, so that a chunk
/// stops after a few rows, well before `search_index::ROWS`; every decision is then found through
/// the whole index by a term of its own, of two characters and of more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_sqlite_indexer_stopped_by_its_budget_skips_no_row() {
    let (s, g) = sqlite_store();
    let path = g.0.as_ref().unwrap().path().join("ferry.db");
    let mut seed: u32 = 7;
    let mut long = |n: usize| -> String {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from_u32(0x4E00 + (seed >> 8) % 0x5000).unwrap()
            })
            .collect()
    };
    let users = 24;
    let src: Vec<DirObject> = (0..users)
        .map(|i| {
            // A term of its own: two Hangul syllables no other value holds.
            let own = char::from_u32(0xAC00 + i).unwrap();
            let mut o =
                DirObject::new(ObjectKind::User, format!("s-{i:02}"), format!("{own}{own}"));
            o.mail = Some(long(20_000));
            o
        })
        .collect();
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(&*s, c, &src, &[]).await.unwrap();
    let mut chunks = 0;
    while s.index_search().await.unwrap() {
        chunks += 1;
        assert!(chunks < 10_000, "the indexer never ends");
    }
    assert!(
        chunks > 2,
        "{chunks} chunks for {users} rows: the budget never stopped one"
    );
    let all = s.decisions(&Default::default()).await.unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let indexed: i64 = raw
        .query_row("SELECT count(*) FROM decisions_search", [], |r| r.get(0))
        .unwrap();
    assert_eq!(indexed as usize, all.len(), "one entry per decision");
    for (o, d) in src.iter().zip(&all) {
        assert_eq!(o.id, d.source_id);
        let mail = o.mail.as_deref().unwrap();
        let tail: String = mail.chars().skip(19_990).collect();
        for term in [o.name.clone(), o.name.chars().take(1).collect(), tail] {
            let got: Vec<String> = s
                .decisions(&DecisionQuery {
                    search: Some(term.clone()),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.source_id)
                .collect();
            assert_eq!(got, scan_model(&all, &term), "{term}");
            assert!(got.contains(&o.id), "{} by {term}", o.id);
        }
    }
    // The index answered (emptied behind the store's back, it finds nothing).
    raw.execute_batch("INSERT INTO decisions_search (decisions_search) VALUES ('delete-all')")
        .unwrap();
    let gone = s
        .decisions(&DecisionQuery {
            search: Some(src[0].name.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(gone.is_empty(), "the search read the index");
}

/// Catches (SQLite): a search term's trigrams made distinct in quadratic time, so that one long
/// term (32,000 characters, about 290 KB of URL, which the server reads) held a connection and a
/// core for seconds (5.9 s in a debug build), growing with the square of its length; and a long
/// term every trigram of which the index holds (a value searched whole) asked of the index one
/// trigram at a time, all of them, or not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_sqlite_a_very_long_search_term_is_answered_quickly() {
    let (s, _g) = sqlite_store();
    let mut seed: u32 = 1;
    let mut random = |n: usize| -> String {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from_u32(0x4E00 + (seed >> 8) % 0x5000).unwrap()
            })
            .collect()
    };
    let (mut src, tgt) = search_sample();
    let value = random(8_000);
    let mut long = DirObject::new(ObjectKind::User, "s-long", "Long Value");
    long.mail = Some(value.clone());
    src.push(long);
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(&*s, c, &src, &tgt).await.unwrap();
    index_whole(&*s).await;
    let all = s.decisions(&Default::default()).await.unwrap();
    for (term, found) in [(random(32_000), false), (value, true)] {
        let t = std::time::Instant::now();
        let got: Vec<String> = s
            .decisions(&DecisionQuery {
                search: Some(term.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.source_id)
            .collect();
        let took = t.elapsed();
        assert_eq!(got, scan_model(&all, &term));
        assert_eq!(got == ["s-long"], found);
        assert!(
            took < std::time::Duration::from_secs(2),
            "{took:?} for a term of {} characters",
            term.chars().count()
        );
    }
}

/// Catches (PostgreSQL): a name not found when searched as it is written, where PostgreSQL's
/// `lower` (glibc's, per code point, in a `C.UTF-8` database) and Rust's lower case differ: `İ`
/// (Rust: `i̇`, two code points; glibc: `i`) and a final `Σ` (Rust: `ς`; glibc: `σ`). The term was
/// folded in Rust and the values by `lower`, so "ΝΙΚΟΣ" and "İSTANBUL" did not find the users named
/// so; both sides now go through `lower` (`Backend::FOLD_TERM`), through the pg_trgm index (three
/// characters or more) and the scan (fewer) alike.
async fn postgres_finds_a_name_searched_as_it_is_written(s: &dyn Store) {
    if s.backend() != "postgres" {
        return;
    }
    let src: Vec<DirObject> = ["İSTANBUL", "ΟΔΟΣ ΝΙΚΟΣ", "STRAẞE"]
        .iter()
        .enumerate()
        .map(|(i, n)| DirObject::new(ObjectKind::User, format!("s-{i}"), *n))
        .collect();
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(s, c, &src, &[]).await.unwrap();
    let mut wrong = Vec::new();
    for (t, want) in [
        ("İSTANBUL", "s-0"),
        ("İS", "s-0"),
        ("İ", "s-0"),
        ("istanbul", "s-0"),
        ("ΟΔΟΣ ΝΙΚΟΣ", "s-1"),
        ("ΝΙΚΟΣ", "s-1"),
        ("ΟΣ", "s-1"),
        ("νικοσ", "s-1"),
        ("STRAẞE", "s-2"),
        ("ẞE", "s-2"),
    ] {
        let q = DecisionQuery {
            search: Some(t.into()),
            ..Default::default()
        };
        let got: Vec<String> = s
            .decisions(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.source_id)
            .collect();
        let n = s.count_decisions(&q).await.unwrap();
        if got != [want] || n != 1 {
            wrong.push(format!("{t:?}: {got:?} (count {n}), want [{want:?}]"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Catches: a host name with letters past ASCII matched by the database's `lower()` (ASCII only
/// on SQLite; the ctype's on PostgreSQL) against a batch's computer keyed in Rust's lower case: an
/// enrolled "ÅSA-PC" listed as "no agent yet" in the batch typed "åsa-pc", missing from its
/// states, progress, dashboard list and wave accounting (`batch_agents_in`); a second device
/// taking the live claim of a name that differs only in non-ASCII case; an approved replacement
/// leaving the old agent live.
async fn non_ascii_host_names_are_one_computer_whatever_their_case(s: &dyn Store) {
    use ferry_core::agent::DeviceFacts;
    use ferry_core::host::host_key;
    let k = s.add_psk("k", "hash-k", None, None, 1).await.unwrap();
    let facts = |id: &str, host: &str| DeviceFacts {
        device_id: id.into(),
        hostname: host.into(),
        os: "windows".into(),
        agent_version: "0.1.0".into(),
        ..Default::default()
    };
    let enroll = |f: DeviceFacts, node: String| async move {
        s.enroll_agent(&Enrollment {
            facts: &f,
            profiles: &[],
            node_hash: &node,
            psk_id: k.id,
            now: 10,
            address: None,
            replaces: None,
        })
        .await
    };
    // As the devices report themselves; typed in the batch in other cases below.
    let hosts = [
        "ÅSA-PC",
        "ÖREBRO-01",
        "İZMİR-PC",
        "STRAẞE-PC",
        "ΑΘΗΝΑΣ",
        "PC-ASCII",
    ];
    let mut ids = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let a = enroll(facts(&format!("dev-{i}"), h), format!("node-{i}"))
            .await
            .unwrap();
        ids.push(a.id);
    }
    // An agent of another device outside the batch, whose name is close but another computer.
    enroll(facts("dev-x", "ASA-PC"), "node-x".into())
        .await
        .unwrap();

    // A device claiming a live agent's name, differing only in non-ASCII case: found as that
    // agent's claim, and refused by the store if it tries to take it.
    let claimed = s.agents_claimed("dev-evil", "åsa-pc").await.unwrap();
    assert_eq!(
        claimed.iter().map(|(a, _)| a.id).collect::<Vec<_>>(),
        [ids[0]],
        "found by its key"
    );
    for name in [
        "åsa-pc",
        "Åsa-Pc",
        "örebro-01",
        "i\u{307}zmi\u{307}r-pc",
        "straße-pc",
        "αθηνασ",
    ] {
        match enroll(facts("dev-evil", name), format!("node-evil-{name}")).await {
            Err(StoreError::ClaimChanged(d)) => assert_eq!(d, "dev-evil"),
            other => panic!("{name}: a second live agent of one computer: {other:?}"),
        }
    }

    // The batch's computers typed in other cases, and one without an agent.
    let typed: Vec<String> = [
        "åsa-pc",
        "örebro-01",
        "i\u{307}zmi\u{307}r-pc",
        "straße-pc",
        "αθηνας",
        "pc-ascii",
        "ÜBER-07",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    assert!(
        s.add_batch_computers("wave-ü", &typed, 1)
            .await
            .unwrap()
            .is_empty()
    );
    // Typed again in capitals into another batch: the same computers, refused.
    let again = s
        .add_batch_computers("other", &["ÅSA-PC".to_string(), "ΑΘΗΝΑΣ".to_string()], 2)
        .await
        .unwrap();
    assert_eq!(again.len(), 2, "{again:?}");

    let keys: Vec<String> = typed.iter().map(|c| host_key(c)).collect();
    let mut live = s.live_hostnames(&keys).await.unwrap();
    live.sort();
    let mut want: Vec<String> = hosts.iter().map(|h| host_key(h)).collect();
    want.sort();
    assert_eq!(live, want, "every agent of the batch has its live claim");

    let contacts: Vec<Contact> = ids
        .iter()
        .map(|&id| Contact {
            agent_id: id,
            at: 100,
            address: None,
            state: Some("running".into()),
            agent_version: None,
        })
        .collect();
    s.record_contacts(&contacts).await.unwrap();
    let run = RunName {
        prefix: "wave-ü-",
        suffix: "-1",
    };
    for &id in &ids {
        s.assign_run(id, &run.of(id), &[]).await.unwrap();
    }
    assert_eq!(
        s.agent_states(Some("wave-ü")).await.unwrap(),
        [("running".to_string(), 6)]
    );
    assert_eq!(
        s.batch_agent_states("wave-ü", &run).await.unwrap(),
        [("running".to_string(), 6, 6)]
    );
    let mut live: Vec<(String, String)> = s
        .live_agent_states()
        .await
        .unwrap()
        .into_iter()
        .filter(|(k, _)| keys.contains(k))
        .collect();
    live.sort();
    // Every computer of the batch that has an agent (`über-07` has none), by its key.
    let mut want: Vec<(String, String)> = hosts
        .iter()
        .map(|h| (host_key(h), "running".to_string()))
        .collect();
    want.sort();
    assert_eq!(live, want, "every agent of the batch has its state");
    let mut of = s.agent_states_of(&keys, &run).await.unwrap();
    of.sort();
    assert_eq!(of.len(), 6, "{of:?}");
    let mut wave = s
        .batch_agents_in("wave-ü", &run, &["running"])
        .await
        .unwrap();
    wave.sort();
    assert_eq!(wave, ids);

    // The dashboard's list, sorted by host name (the key, by code point) both ways, in pages.
    let q = AgentQuery {
        batch: Some("wave-ü".into()),
        sort: AgentSort::Hostname,
        limit: 4,
        ..Default::default()
    };
    assert_eq!(s.count_agents(&q).await.unwrap(), 6);
    let mut by_key: Vec<(String, i64)> = hosts
        .iter()
        .zip(&ids)
        .map(|(h, &id)| (host_key(h), id))
        .collect();
    by_key.sort();
    for dir in [Direction::Asc, Direction::Desc] {
        let mut want: Vec<i64> = by_key.iter().map(|(_, id)| *id).collect();
        if dir.is_desc() {
            want.reverse();
        }
        let first = s
            .agents_page(&AgentQuery {
                direction: dir,
                ..q.clone()
            })
            .await
            .unwrap();
        let last = first.last().unwrap();
        let rest = s
            .agents_page(&AgentQuery {
                direction: dir,
                after: Some(last.id),
                after_value: AgentSort::Hostname.value_of(last),
                ..q.clone()
            })
            .await
            .unwrap();
        let got: Vec<i64> = first.iter().chain(&rest).map(|a| a.id).collect();
        assert_eq!(got, want, "{dir:?}");
    }
    // Searched by any case of a letter past ASCII.
    for (term, want) in [
        ("åsa", ids[0]),
        ("ÖREBRO", ids[1]),
        ("straße", ids[3]),
        ("ΘΗΝΑΣ", ids[4]),
    ] {
        let found = s
            .agents_page(&AgentQuery {
                search: Some(term.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|a| a.id).collect::<Vec<_>>(),
            [want],
            "{term}"
        );
    }

    // An approved enrollment of a new device for "ÅSA-PC", typed "Åsa-pc": the old agent is
    // replaced (found by the key) and gives up its claim; the batch lists both.
    let req = s
        .add_enrollment_request(&NewEnrollmentRequest {
            enrollment: Enrollment {
                facts: &facts("dev-new", "Åsa-pc"),
                profiles: &[],
                node_hash: "node-new",
                psk_id: k.id,
                now: 200,
                address: None,
                replaces: None,
            },
            reason: "claims the host name of an agent",
            conflict_agent_id: Some(ids[0]),
        })
        .await
        .unwrap();
    let (_, new) = s
        .decide_enrollment(req, true, "alice", 201)
        .await
        .unwrap()
        .unwrap();
    let new = new.unwrap();
    assert_eq!(s.agent(ids[0]).await.unwrap().unwrap().state, "replaced");
    let mut states = s.agent_states(Some("wave-ü")).await.unwrap();
    states.sort();
    assert_eq!(
        states,
        [
            ("enrolled".to_string(), 1),
            ("replaced".to_string(), 1),
            ("running".to_string(), 5)
        ]
    );
    assert_eq!(s.count_agents(&q).await.unwrap(), 7);
    assert_eq!(
        s.live_hostnames(&["åsa-pc".into()]).await.unwrap(),
        ["åsa-pc"]
    );
    let claimed = s.agents_claimed("dev-evil", "ÅSA-PC").await.unwrap();
    assert_eq!(
        claimed.iter().map(|(a, _)| a.id).collect::<Vec<_>>(),
        [ids[0], new.id]
    );
}

/// A fresh schema on the test PostgreSQL: the store on it and a client of its own, for tests
/// that change tables behind the store's back. `None` where the PostgreSQL half is skipped.
async fn pg_store_and_client() -> Option<(Arc<dyn Store>, tokio_postgres::Client)> {
    pg_store().await?;
    let url = std::env::var("FERRY_TEST_DATABASE_URL").unwrap();
    let schema = format!(
        "conf_{}_{}",
        std::process::id(),
        SCHEMA.fetch_add(1, Ordering::SeqCst)
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path = {schema}"
        ))
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = postgres::PgStore::connect(&format!("{url}{sep}options=-csearch_path%3D{schema}"))
        .await
        .unwrap();
    Some((Arc::new(store), client))
}

/// Catches (PostgreSQL): a search of one or two characters that does not read the trigrams the
/// cycle records with the decisions (migration 0028: with them emptied behind the store's back a
/// term must find nothing), counts that are not the number of decisions holding each trigram
/// (grown by every rewrite, or not taken back from a renamed or deleted decision), trigrams folded otherwise than the database folds the values (`İ`,
/// `Σ`, `Ñ`), a trigram spanning two values or holding a quote or `=` left out, a value renamed
/// by a later cycle still found by its old name or not by its new one, a term in no value
/// answered by anything but "nothing", and a term held by more trigrams than a search asks for
/// given to the index (the scan answers: it still finds every match).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_short_searches_read_the_trigrams_the_cycle_recorded() {
    let Some((s, raw)) = pg_store_and_client().await else {
        return;
    };
    let user = |id: &str, name: &str, mail: Option<&str>, sid: Option<&str>| {
        let mut o = DirObject::new(ObjectKind::User, id, name);
        o.mail = mail.map(str::to_string);
        o.upn = mail.map(str::to_string);
        o.sid = sid.map(str::to_string);
        o
    };
    let mut src = vec![
        user(
            "s-smith",
            "Smith, Ann",
            Some("ann.smith@contoso.test"),
            Some("S-1-5-21-1000-2000-3000-1104"),
        ),
        user("s-nunez", "Ñúñez", Some("nunez@contoso.test"), None),
        user("s-wang", "王", None, None),
        user("s-formula", "=GA(\"x\")", None, None),
        user("s-quote", "Pat \"Q\" O'Brien", None, None),
        user("s-ist", "İSTANBUL", None, None),
        user("s-sigma", "ΟΔΟΣ", None, None),
    ];
    let check = |all: Vec<DecisionRow>, terms: &'static [&'static str]| {
        let s = Arc::clone(&s);
        async move {
            for t in terms {
                let q = DecisionQuery {
                    search: Some(t.to_string()),
                    ..Default::default()
                };
                let got: Vec<String> = s
                    .decisions(&q)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|d| d.source_id)
                    .collect();
                let want: Vec<&str> = scan_model(&all, t);
                assert_eq!(got, want, "search {t:?}");
                assert_eq!(
                    s.count_decisions(&q).await.unwrap(),
                    want.len() as i64,
                    "count of {t:?}"
                );
                assert_eq!(
                    s.count_decisions_upto(&q, 1).await.unwrap(),
                    want.len().min(1) as i64,
                    "count up to 1 of {t:?}"
                );
            }
        }
    };
    let c = s
        .begin_cycle("users", "manual", None, "a", 1)
        .await
        .unwrap();
    commit(&*s, c, &src, &[]).await.unwrap();
    let all = s.decisions(&Default::default()).await.unwrap();
    let terms: &'static [&'static str] = &[
        "sm", "n,", ", ", "Ñ", "ñú", "ez", "王", "=g", "=", "\"q", "'", "o'", "s-", "04", "1-",
        "İS", "İs", "ΟΣ", "@", "t\n", "山", "qq", "x",
    ];
    check(all, terms).await;
    let vocabulary = |t: &'static str| {
        let raw = &raw;
        async move {
            raw.query_one(
                "SELECT count(*) FROM decisions_search_terms WHERE term = $1",
                &[&t],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(vocabulary("ñúñ").await, 1, "folded by the database");
    assert_eq!(vocabulary("h, ").await, 1);
    assert_eq!(vocabulary("n\na").await, 1, "across two values");

    // The vocabulary counts the decisions holding each trigram, exactly: what every cycle
    // since the first wrote, took back from the texts it replaced and the decisions it deleted.
    let exact = |label: &'static str| {
        let raw = &raw;
        async move {
            let mut want = std::collections::BTreeMap::<String, i64>::new();
            for r in raw
                .query("SELECT search_text FROM decisions", &[])
                .await
                .unwrap()
            {
                let text: String = r.get(0);
                let mut row = std::collections::BTreeSet::new();
                for t in ferry_store::search_index::trigrams_of(&text) {
                    if row.insert(t) {
                        *want.entry(t.iter().collect()).or_default() += 1;
                    }
                }
            }
            let got: std::collections::BTreeMap<String, i64> = raw
                .query(
                    "SELECT term, entries FROM decisions_search_terms WHERE entries <> 0",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            assert_eq!(got, want, "{label}");
        }
    };
    exact("a first cycle").await;

    // A later cycle renames one user and removes another: their old values' trigrams are
    // taken back, and the scan's condition drops anything a trigram still finds.
    src[1].name = "Nunes".into();
    src.retain(|o| o.id != "s-wang");
    let c = s
        .begin_cycle("users", "manual", None, "a", 2)
        .await
        .unwrap();
    commit(&*s, c, &src, &[]).await.unwrap();
    let all = s.decisions(&Default::default()).await.unwrap();
    check(all.clone(), &["ñ", "ñú", "王", "es", "s\n"]).await;
    exact("a rename and a deletion").await;
    // Every decision written again, three times (as after a change of rules): no count grows.
    for (i, cycle) in [3, 4, 5].into_iter().enumerate() {
        for o in &mut src {
            o.mail = Some(format!("v{i}.{}@contoso.test", o.id));
        }
        let c = s
            .begin_cycle("users", "manual", None, "a", cycle)
            .await
            .unwrap();
        commit(&*s, c, &src, &[]).await.unwrap();
    }
    exact("every decision rewritten three times").await;
    let all = s.decisions(&Default::default()).await.unwrap();

    // Emptied behind the store's back, the vocabulary answers "nothing".
    raw.batch_execute("DELETE FROM decisions_search_terms")
        .await
        .unwrap();
    let find = |t: &str| {
        let s = Arc::clone(&s);
        let q = DecisionQuery {
            search: Some(t.into()),
            ..Default::default()
        };
        async move { s.decisions(&q).await.unwrap().len() }
    };
    assert_eq!(find("sm").await, 0, "two characters read the vocabulary");
    assert_eq!(find("ñ").await, 0, "and one");
    assert_eq!(find("smith").await, 1, "three read pg_trgm alone");
    // A character more trigrams contain than a search asks for: the scan answers.
    let many: Vec<String> = (0..=ferry_store::search_index::SHORT_TERMS)
        .map(|i| format!("('s{i:02}', 1)"))
        .collect();
    raw.batch_execute(&format!(
        "INSERT INTO decisions_search_terms (term, entries) VALUES {}",
        many.join(", ")
    ))
    .await
    .unwrap();
    check(all.clone(), &["s", "S"]).await;
    // As does one whose trigrams are held by too many entries.
    raw.batch_execute(&format!(
        "INSERT INTO decisions_search_terms (term, entries) VALUES ('nun', {})",
        ferry_store::search_index::SHORT_CAP
    ))
    .await
    .unwrap();
    check(all, &["nu"]).await;
    // A count reads the vocabulary's trigrams while fewer than 100,000 decisions hold them (it
    // reads every candidate anyway, up to its cap): left only with a trigram no value holds, the
    // count finds nothing where the page (a scan, the term being common) finds the user.
    raw.batch_execute(&format!(
        "DELETE FROM decisions_search_terms; INSERT INTO decisions_search_terms (term, entries) VALUES ('xun', {})",
        ferry_store::search_index::SHORT_CAP
    ))
    .await
    .unwrap();
    let q = DecisionQuery {
        search: Some("un".into()),
        ..Default::default()
    };
    assert_eq!(s.decisions(&q).await.unwrap().len(), 1, "the page scans");
    assert_eq!(
        s.count_decisions_upto(&q, 10).await.unwrap(),
        0,
        "the count reads the index"
    );
    assert_eq!(
        s.count_decisions(&q).await.unwrap(),
        0,
        "so does the exact count"
    );
    // Held by 100,000 decisions or more, the term is counted up to a cap by the scan (it fills
    // the cap sooner), exactly still through the index.
    raw.batch_execute(&format!(
        "UPDATE decisions_search_terms SET entries = {}",
        ferry_store::search_index::COUNT_CAP
    ))
    .await
    .unwrap();
    assert_eq!(
        s.count_decisions_upto(&q, 10).await.unwrap(),
        1,
        "a capped count of a term this common scans"
    );
    assert_eq!(
        s.count_decisions(&q).await.unwrap(),
        0,
        "the exact count does not"
    );
}

/// A cycle of profile `name` (same directories, quick-start rules) begun at `at` and committed.
async fn cycle_of(s: &dyn Store, name: &str, at: i64, src: &[DirObject], tgt: &[DirObject]) {
    let text = format!(
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"s.json\"\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"t.json\"\n\
         [[sync_profile]]\nname = \"{name}\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"create\"\n{}",
        ferry_demo::QUICKSTART_RULES
    );
    let cfg = Config::parse(&text, "test").unwrap();
    let c = s.begin_cycle(name, "manual", None, "a", at).await.unwrap();
    let p = plan::build(&cfg.profiles[0], "fp", src, tgt);
    let digest = s.decision_digest(name).await.unwrap();
    let diff = plan::diff(&p, src, tgt, &digest);
    let logs = plan::decision_logs(&p, &diff, "contoso");
    let history = plan::history_lines(&p, &diff);
    s.commit_sync(SyncCommit {
        cycle_id: c,
        now: at * 10,
        objects: Vec::new(),
        plan: &p,
        decisions: &diff,
        history,
        logs: &logs,
    })
    .await
    .unwrap();
}

/// Catches (review): a sorted listing of two profiles (one named in upper case, before the
/// other) searched by a long or a short term, whose pages of 1 and 3 repeat, skip or misorder a
/// row, before the indexer and after it (SQLite's order table read through the join).
async fn review_sorted_searched_pages_across_two_profiles(s: &dyn Store) {
    let (src, tgt) = sort_sample();
    cycle_of(s, "users", 1, &src, &tgt).await;
    cycle_of(s, "Alpha", 2, &src, &tgt).await;
    for label in ["before the indexer", "after it"] {
        let all = s.decisions(&DecisionQuery::default()).await.unwrap();
        assert!(all.iter().any(|d| d.profile == "Alpha"));
        for term in [
            None,
            Some("sm"),
            Some("a"),
            Some("ann"),
            Some("-1"),
            Some("s-"),
        ] {
            let found: Vec<DecisionRow> = match term {
                None => all.clone(),
                Some(t) => all
                    .iter()
                    .filter(|d| {
                        searched_values(d)
                            .iter()
                            .any(|v| v.to_lowercase().contains(&t.to_lowercase()))
                    })
                    .cloned()
                    .collect(),
            };
            for sort in [
                DecisionSort::Kind,
                DecisionSort::SourceName,
                DecisionSort::TargetName,
                DecisionSort::SourceSid,
                DecisionSort::TargetSid,
                DecisionSort::Rule,
            ] {
                for direction in [Direction::Asc, Direction::Desc] {
                    for (status, profile) in [
                        (Some(Status::Matched), None),
                        (Some(Status::Matched), Some("Alpha")),
                        (None, None),
                    ] {
                        let filter = DecisionQuery {
                            status,
                            profile: profile.map(str::to_string),
                            search: term.map(str::to_string),
                            sort,
                            direction,
                            ..Default::default()
                        };
                        let mut want: Vec<DecisionRow> = found
                            .iter()
                            .filter(|d| status.is_none_or(|st| d.status == st))
                            .filter(|d| profile.is_none_or(|p| d.profile == p))
                            .cloned()
                            .collect();
                        sort_model(&mut want, sort, direction);
                        let got = s.decisions(&filter).await.unwrap();
                        assert_eq!(
                            got.iter()
                                .map(|d| (&d.profile, &d.source_id))
                                .collect::<Vec<_>>(),
                            want.iter()
                                .map(|d| (&d.profile, &d.source_id))
                                .collect::<Vec<_>>(),
                            "{label}: {term:?} {sort:?} {direction:?} {status:?} {profile:?}"
                        );
                        for size in [1, 3] {
                            let walked = walk(
                                |after| {
                                    let q = DecisionQuery {
                                        limit: size,
                                        after,
                                        ..filter.clone()
                                    };
                                    async move { s.decisions(&q).await.unwrap() }
                                },
                                |last| DecisionCursor::of(last, sort),
                            )
                            .await;
                            assert_eq!(
                                walked, want,
                                "{label}: pages of {size} {term:?} {sort:?} {direction:?} {status:?} {profile:?}"
                            );
                        }
                    }
                }
            }
        }
        index_whole(s).await;
    }
}

mod review {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_profiles_sqlite() {
        let (s, _g) = super::sqlite_store();
        super::review_sorted_searched_pages_across_two_profiles(&*s).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_profiles_postgres() {
        let Some((s, _g)) = super::pg_store().await else {
            return;
        };
        super::review_sorted_searched_pages_across_two_profiles(&*s).await;
    }
}

/// Catches (review, PostgreSQL): two servers committing cycles of two profiles at once, every
/// decision rewritten each time with text sharing trigrams, deadlocking on migration 0028's
/// vocabulary, losing a count of it, or counting a rewrite twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_postgres_two_servers_write_the_vocabulary_at_once() {
    let Some((a, raw)) = pg_store_and_client().await else {
        return;
    };
    let schema: String = raw
        .query_one("SELECT current_schema()", &[])
        .await
        .unwrap()
        .get(0);
    let url = std::env::var("FERRY_TEST_DATABASE_URL").unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let b: Arc<dyn Store> = Arc::new(
        postgres::PgStore::connect(&format!("{url}{sep}options=-csearch_path%3D{schema}"))
            .await
            .unwrap(),
    );
    const USERS: usize = 3000;
    const ROUNDS: i64 = 6;
    let users = |round: i64| -> Vec<DirObject> {
        (0..USERS)
            .map(|i| {
                DirObject::new(
                    ObjectKind::User,
                    format!("u-{i}"),
                    format!("user {i} round {round} {}", (i * 7919) % 1000),
                )
            })
            .collect()
    };
    let run = |s: Arc<dyn Store>, name: &'static str, base: i64| {
        let users = &users;
        async move {
            for r in 0..ROUNDS {
                let src = users(r);
                cycle_of(&*s, name, base + r, &src, &[]).await;
            }
        }
    };
    tokio::join!(run(a.clone(), "p1", 100), run(b.clone(), "p2", 200));
    let n: i64 = raw
        .query_one(
            "SELECT entries FROM decisions_search_terms WHERE term = 'use'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Every decision of both profiles holds `use`: each rewrite took back the text it replaced.
    assert_eq!(n, 2 * USERS as i64, "the decisions holding it, counted");
}

//! The server through its HTTP API, in-process on port 0, with file directories (and slapd where
//! `FERRY_TEST_LDAP_URL` is set by scripts/test).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ferry_core::snapshot::{parse_json, render_json};
use ferry_demo as sample;
mod support;

use ferry_server::settings::Settings;
use ferry_server::{Server, ServerOptions};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use support::start;

const PROFILE_TAIL: &str = sample::QUICKSTART_RULES;

fn config(mode: &str) -> String {
    format!(
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
         [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"{mode}\"\n{PROFILE_TAIL}"
    )
}

fn write_sample(dir: &Path, users: usize) -> sample::Sample {
    let s = sample::generate(users, true, 5);
    std::fs::write(dir.join("contoso.json"), render_json(&s.source)).unwrap();
    std::fs::write(dir.join("fabrikam.json"), render_json(&s.target)).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_authentication() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 50);
    let h = start(dir.path(), &config("match-only")).await;
    let r = h
        .http
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .get(format!("{}/api/v1/directories", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = h
        .http
        .get(format!("{}/api/v1/directories", h.url))
        .bearer_auth("ferry_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "the token is not valid");
    assert!(!body.to_string().contains(&h.token));
    let (s, v) = h.call(reqwest::Method::GET, "/nope", None).await;
    assert_eq!((s, v["status"].as_u64()), (404, Some(404)));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("data/admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/admin-token"))
            .unwrap()
            .trim(),
        h.token
    );
    // A second server on the same data directory is refused; the token file is reused on restart.
    let settings = Settings::load(&dir.path().join("ferry.toml")).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = Server::start(
        ServerOptions {
            settings,
            data_dir: dir.path().join("data"),
            database_url: None,
            admin_token: None,
            secret_key: None,
            scheduler: false,
            agent: None,
        },
        l,
    )
    .await
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("another ferry server is using"),
        "{e}"
    );
    let token = h.token.clone();
    h.server.stop().await.unwrap();
    let h2 = start(dir.path(), &config("match-only")).await;
    assert_eq!(h2.token, token);
    // Unknown profile and bad parameters are 404 and 400 with what was wrong.
    let (s, v) = h2
        .call(reqwest::Method::POST, "/profiles/nope/run", None)
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = h2
        .call(reqwest::Method::GET, "/logs?level=loud", None)
        .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("`level`"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_runs_only_after_approval_of_that_plan() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_sample(dir.path(), 300);
    let h = start(dir.path(), &config("create")).await;
    let before = std::fs::read(dir.path().join("fabrikam.json")).unwrap();

    let c1 = h.run().await;
    assert_eq!(c1["status"], "succeeded", "{c1}");
    assert!(
        c1["export"]
            .as_str()
            .unwrap()
            .starts_with("awaiting approval"),
        "{c1}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("fabrikam.json")).unwrap(),
        before,
        "nothing is written before approval"
    );
    let w = h
        .get("/profiles/users/whatif?limit=5&writes_limit=1000")
        .await;
    assert_eq!(w["needs_approval"], true);
    let creates = w["plan"]["counts"]["creates"].as_u64().unwrap();
    assert_eq!(
        creates,
        s.expected.users_unmatched
            + w["plan"]["counts"]["by_kind"]["group"]["unmatched"]
                .as_u64()
                .unwrap()
    );
    assert_eq!(w["writes"].as_array().unwrap().len() as u64, creates);
    assert!(w.get("writes_next").is_none(), "one page: no next");
    // Every write, by keyset pages of 7 (`writes_after`, `writes_next`): the same writes in the
    // same order, each once. Catches a list of writes cut at its first page (the console showed
    // 200 of a plan's writes with no way on) and a cursor that repeats or skips a write.
    let mut walked: Vec<Value> = Vec::new();
    let mut after = String::new();
    loop {
        let p = h
            .get(&format!(
                "/profiles/users/whatif?limit=1&writes_limit=7{after}"
            ))
            .await;
        let page = p["writes"].as_array().unwrap();
        assert!(page.len() <= 7);
        walked.extend(page.iter().cloned());
        match p["writes_next"].as_i64() {
            Some(n) => after = format!("&writes_after={n}"),
            None => break,
        }
        assert!(walked.len() as u64 <= creates, "the pages never end");
    }
    assert!(creates > 7, "{creates}: more than a page");
    assert_eq!(&walked, w["writes"].as_array().unwrap(), "pages of 7");
    let hash = w["plan"]["hash"].as_str().unwrap().to_string();

    // Approving a plan other than the one in force is refused.
    let (st, v) = h
        .call(
            reqwest::Method::POST,
            "/profiles/users/approve",
            Some(json!({"plan_hash": "0000deadbeef"})),
        )
        .await;
    assert_eq!(st, 409, "{v}");
    let (st, v) = h
        .call(
            reqwest::Method::POST,
            "/profiles/users/approve",
            Some(json!({"plan_hash": &hash[..12]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(h.get("/profiles/users/whatif").await["approved"], true);

    let c2 = h.run().await;
    assert_eq!(
        c2["export"],
        format!("exported {creates} of {creates} write(s), 0 failed"),
        "{c2}"
    );
    let target = parse_json(&std::fs::read(dir.path().join("fabrikam.json")).unwrap()).unwrap();
    assert_eq!(target.len() as u64, s.target.len() as u64 + creates);
    // The export's objects are translated in the same cycle.
    let t = h.get("/translation?limit=1").await;
    let counts = &c2["counts"];
    assert_eq!(
        counts["creates"], 0,
        "after the export, the re-sync plans nothing: {c2}"
    );
    assert_eq!(
        t["total"].as_u64().unwrap(),
        counts["matched"].as_u64().unwrap()
    );
    assert_eq!(counts["unmatched"], 0);
    let c3 = h.run().await;
    assert!(
        c3["export"].as_str().unwrap().starts_with("not needed"),
        "{c3}"
    );

    // A new source user makes a new plan: the old approval does not cover it.
    let mut src = parse_json(&std::fs::read(dir.path().join("contoso.json")).unwrap()).unwrap();
    let mut newbie =
        ferry_core::model::DirObject::new(ferry_core::ObjectKind::User, "new-1", "Newbie");
    newbie.mail = Some("newbie@contoso.test".into());
    src.push(newbie);
    std::fs::write(dir.path().join("contoso.json"), render_json(&src)).unwrap();
    let c4 = h.run().await;
    assert!(
        c4["export"]
            .as_str()
            .unwrap()
            .starts_with("awaiting approval: the What-If has 1 write"),
        "{c4}"
    );

    // A configuration change needs a new approval even for the same writes.
    let w = h.get("/profiles/users/whatif").await;
    let (st, _) = h
        .call(
            reqwest::Method::POST,
            "/profiles/users/approve",
            Some(json!({"plan_hash": w["plan"]["hash"]})),
        )
        .await;
    assert_eq!(st, 200);
    h.server.stop().await.unwrap();
    let h = start(
        dir.path(),
        &config("create").replace(
            "object_types = [\"group\"]",
            "object_types = [\"group\"]\ncase_sensitive = true",
        ),
    )
    .await;
    let c5 = h.run().await;
    assert!(
        c5["export"]
            .as_str()
            .unwrap()
            .starts_with("awaiting approval"),
        "{c5}"
    );
    assert_eq!(
        parse_json(&std::fs::read(dir.path().join("fabrikam.json")).unwrap())
            .unwrap()
            .len(),
        target.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cycle_keeps_the_previous_table() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 200);
    let h = start(dir.path(), &config("match-only")).await;
    let c1 = h.run().await;
    assert_eq!(c1["status"], "succeeded");
    let csv1 = h
        .http
        .get(format!("{}/api/v1/translation/export?format=csv", h.url))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let good = std::fs::read_to_string(dir.path().join("contoso.json")).unwrap();
    let broken = good.replacen("\"uid_number\": 10003", "\"uid_number\": \"ten\"", 1);
    assert_ne!(broken, good);
    std::fs::write(dir.path().join("contoso.json"), &broken).unwrap();
    let c2 = h.run().await;
    assert_eq!(c2["status"], "failed", "{c2}");
    let err = c2["error"].as_str().unwrap();
    assert!(
        err.contains("contoso.json") && err.contains("line ") && err.contains("uid_number"),
        "{err}"
    );
    let logs = h
        .get(&format!("/logs?cycle={}&level=error", c2["id"]))
        .await;
    assert!(
        logs[0]["message"]
            .as_str()
            .unwrap()
            .contains("previous translation table is unchanged"),
        "{logs}"
    );
    let csv2 = h
        .http
        .get(format!("{}/api/v1/translation/export?format=csv", h.url))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv1, csv2);

    std::fs::write(dir.path().join("contoso.json"), &good).unwrap();
    assert_eq!(
        h.run().await["status"],
        "succeeded",
        "the next cycle starts cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translation_report_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_sample(dir.path(), 300);
    let h = start(dir.path(), &config("match-only")).await;
    h.run().await;
    let ann = &s.source[0];
    let t = h
        .get(&format!("/translation?q={}", ann.upn.clone().unwrap()))
        .await;
    assert_eq!(t["total"], 1);
    assert_eq!(t["entries"][0]["source_sid"], ann.sid.clone().unwrap());
    let r = h
        .get(&format!("/report/object?q={}", ann.sid.clone().unwrap()))
        .await;
    let o = &r["objects"][0];
    assert_eq!(o["directory"], "contoso");
    assert_eq!(o["profiles"][0]["side"], "source");
    assert_eq!(o["profiles"][0]["rule"], "mail → mail (replace_suffix)");
    assert_eq!(o["profiles"][0]["counterpart"]["directory"], "fabrikam");
    // The same person seen from the target side.
    let target_upn = o["profiles"][0]["counterpart"]["object"]["upn"]
        .as_str()
        .unwrap()
        .to_uppercase();
    let r = h.get(&format!("/report/object?q={target_upn}")).await;
    assert_eq!(r["objects"][0]["profiles"][0]["side"], "target");
    for (format, starts) in [
        ("csv", "profile,kind"),
        ("json", "["),
        ("sidmap", "{"),
        ("usermapping", "Source,Destination\r\n"),
    ] {
        let body = h
            .text(&format!(
                "/translation/export?format={format}&profile=users"
            ))
            .await;
        assert!(
            body.starts_with(starts),
            "{format}: {}",
            &body[..40.min(body.len())]
        );
    }
    let (st, _) = h
        .call(reqwest::Method::GET, "/translation/export?format=xml", None)
        .await;
    assert_eq!(st, 400);
    let warnings = h.get("/logs?profile=users&level=warning&limit=10000").await;
    let unmatched = warnings
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["code"] == "unmatched" && l["object_kind"] == "user")
        .count() as u64;
    assert_eq!(
        unmatched, s.expected.users_unmatched,
        "every unmatched user is in the message log"
    );
    // A second cycle with no changes logs no per-object entries again.
    let c2 = h.run().await;
    let l2 = h.get(&format!("/logs?cycle={}", c2["id"])).await;
    assert!(
        l2.as_array()
            .unwrap()
            .iter()
            .all(|l| l["object_id"].is_null()),
        "{l2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cycle_per_profile_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 3000);
    let h = start(dir.path(), &config("match-only")).await;
    let (a, b) = tokio::join!(
        h.call(reqwest::Method::POST, "/profiles/users/run", None),
        h.call(reqwest::Method::POST, "/profiles/users/run", None)
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
    let id = if a.0 == 202 {
        a.1["cycle_id"].clone()
    } else {
        b.1["cycle_id"].clone()
    };
    for _ in 0..200 {
        if h.get(&format!("/cycles/{id}")).await["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.get(&format!("/cycles/{id}")).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_with_a_wrong_password_fails_the_cycle_and_keeps_the_table() {
    let Some((url, pw)) = support::slapd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 20);
    let ldap = |pw: &str| {
        format!(
            "[[directory]]\nname = \"contoso\"\nkind = \"ldap\"\nurl = \"{url}\"\nbind_dn = \"cn=admin,dc=contoso,dc=test\"\nbind_password = \"{pw}\"\nbase_dn = \"dc=contoso,dc=test\"\n\n\
             [[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n[[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\n{PROFILE_TAIL}"
        )
    };
    let h = start(dir.path(), &ldap(&pw)).await;
    let c1 = h.run().await;
    assert_eq!(c1["status"], "succeeded", "{c1}");
    let test = h
        .call(reqwest::Method::POST, "/directories/contoso/test", None)
        .await
        .1;
    assert_eq!(test["ok"], true, "{test}");
    let before = h.get("/translation?limit=10000").await;
    h.server.stop().await.unwrap();

    let h = start(dir.path(), &ldap("wrong")).await;
    let c2 = h.run().await;
    assert_eq!(c2["status"], "failed");
    assert!(
        c2["error"]
            .as_str()
            .unwrap()
            .contains("invalid credentials"),
        "{c2}"
    );
    let test = h
        .call(reqwest::Method::POST, "/directories/contoso/test", None)
        .await
        .1;
    assert_eq!(test["ok"], false);
    assert!(
        test["checks"][0]
            .as_str()
            .unwrap()
            .contains("Check bind_dn and the password"),
        "{test}"
    );
    let logs = h.get("/logs?level=error").await;
    assert!(
        logs[0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid credentials"),
        "{logs}"
    );
    assert_eq!(h.get("/translation?limit=10000").await, before);
}

#[test]
fn the_committed_openapi_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let now = ferry_server::api::openapi_json();
    if std::env::var("FERRY_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(&path, &now).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == now,
        "docs/openapi.json is out of date with the API: run `FERRY_UPDATE_OPENAPI=1 cargo test -p ferry-server --test api the_committed` and commit it"
    );
}

/// Would catch: two Rust types with one schema name, where utoipa keeps one and every answer
/// naming the other violates the document (a move's status line stood in for a decision's
/// `status`, so every What-If and object report broke the contract).
#[test]
fn schema_references_name_the_type_they_mean() {
    let doc: Value = serde_json::from_str(&ferry_server::api::openapi_json()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let target = |r: &Value| {
        let r = r["$ref"].as_str().unwrap();
        schemas[r.trim_start_matches("#/components/schemas/")].clone()
    };
    let status = target(&schemas["DecisionRow"]["properties"]["status"]);
    let values: Vec<&str> = status["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("DecisionRow.status is not the decision status enum: {status}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for v in [
        "matched",
        "unmatched",
        "ambiguous",
        "conflict",
        "refused",
        "excluded",
        "error",
    ] {
        assert!(values.contains(&v), "{v} missing from {values:?}");
    }
    assert!(schemas["MoveStatus"]["properties"]["migration_id"].is_object());
}

/// Would catch: a `timeout` near u64::MAX overflowing the deadline and panicking the handler (the
/// client got an empty reply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_wait_timeout_is_capped_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 20);
    let h = start(dir.path(), &config("match-only")).await;
    let (s, v) = h
        .call(
            reqwest::Method::POST,
            "/profiles/users/run?wait=true&timeout=18446744073709551615",
            None,
        )
        .await;
    assert_eq!(
        (s, v["cycle"]["status"].as_str()),
        (202, Some("succeeded")),
        "{v}"
    );
    h.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_totals_from_plans_equal_the_stores_counts() {
    use ferry_core::ObjectKind;
    use ferry_core::plan::Status;
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 400);
    let also = format!(
        "\n[[sync_profile]]\nname = \"also\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\nobject_types = [\"user\", \"group\", \"device\"]\n{PROFILE_TAIL}"
    );
    let h = start(dir.path(), &(config("match-only") + &also)).await;
    assert_eq!(h.run().await["status"], "succeeded");
    let st = &h.server.state;
    let mut checked = 0;
    for profile in [None, Some("users".to_string()), Some("gone".to_string())] {
        for kind in [
            None,
            Some(ObjectKind::User),
            Some(ObjectKind::Group),
            Some(ObjectKind::Device),
        ] {
            for status in [
                None,
                Some(Status::Matched),
                Some(Status::Unmatched),
                Some(Status::Ambiguous),
                Some(Status::Conflict),
            ] {
                let q = ferry_store::DecisionQuery {
                    profile: profile.clone(),
                    status,
                    kind,
                    ..Default::default()
                };
                let plans = ferry_server::api::translation::plans(st, &q).await.unwrap();
                let from_plans: i64 = plans
                    .iter()
                    .map(|p| ferry_server::api::translation::counted(p, &q))
                    .sum();
                let scanned = st.store.count_decisions(&q).await.unwrap();
                assert_eq!(from_plans, scanned, "{profile:?} {kind:?} {status:?}");
                checked += usize::from(scanned > 0);
            }
        }
    }
    assert!(
        checked >= 8,
        "the sample has decisions of several kinds and statuses"
    );
    // Pages across profiles, read profile by profile, are the store's pages.
    let (s2, v) = h
        .call(reqwest::Method::POST, "/profiles/also/run?wait=true", None)
        .await;
    assert_eq!(
        (s2, v["cycle"]["status"].as_str()),
        (202, Some("succeeded")),
        "{v}"
    );
    let key = |rows: &[ferry_store::DecisionRow]| -> Vec<String> {
        rows.iter()
            .map(|r| format!("{} {} {}", r.profile, r.kind.as_str(), r.source_id))
            .collect()
    };
    let all = st.store.count_decisions(&Default::default()).await.unwrap();
    let mut pages = 0;
    for kind in [None, Some(ObjectKind::User), Some(ObjectKind::Device)] {
        for status in [Some(Status::Matched), Some(Status::Unmatched), None] {
            for (offset, limit) in [
                (0, 1),
                (0, 50),
                (3, 7),
                (all / 2 - 5, 20),
                (all - 3, 10),
                (all + 5, 10),
            ] {
                let q = ferry_store::DecisionQuery {
                    status,
                    kind,
                    offset,
                    limit,
                    ..Default::default()
                };
                let plans = ferry_server::api::translation::plans(st, &q).await.unwrap();
                let (total, exact, paged) =
                    ferry_server::api::translation::page(st, &q, &plans, None)
                        .await
                        .unwrap();
                assert!(exact);
                assert_eq!(total, st.store.count_decisions(&q).await.unwrap());
                let stored = st.store.decisions(&q).await.unwrap();
                assert_eq!(
                    key(&paged),
                    key(&stored),
                    "{kind:?} {status:?} {offset} {limit}"
                );
                pages += usize::from(!paged.is_empty());
            }
        }
    }
    assert!(pages > 20, "{pages}");
    // With a search term the store counts: every match, or up to `total_upto` and says so
    // (would catch a capped total shown as exact, one off at the cap, or a cap applied unasked).
    let t = h.get("/translation?q=contoso.test&limit=1").await;
    let n = t["total"].as_i64().unwrap();
    assert!(n > 2 && t["total_exact"] == true, "{t}");
    for (upto, total, exact) in [
        (1, 1, false),
        (n - 1, n - 1, false),
        (n, n, true),
        (n + 1, n, true),
    ] {
        let t = h
            .get(&format!(
                "/translation?q=contoso.test&limit=1&total_upto={upto}"
            ))
            .await;
        assert_eq!(
            (t["total"].as_i64(), t["total_exact"].as_bool()),
            (Some(total), Some(exact)),
            "{upto}: {t}"
        );
        assert_eq!(
            t["entries"].as_array().map(Vec::len),
            Some(1),
            "the page is not capped"
        );
    }
    let w = h
        .get("/profiles/users/whatif?q=contoso.test&limit=1&total_upto=1")
        .await;
    assert_eq!(
        (
            w["decisions_total"].as_i64(),
            w["decisions_total_exact"].as_bool()
        ),
        (Some(1), Some(false)),
        "{w}"
    );
    let w = h.get("/profiles/users/whatif?q=contoso.test&limit=1").await;
    assert!(
        w["decisions_total"].as_i64().unwrap() > 1 && w["decisions_total_exact"] == true,
        "{w}"
    );
    for bad in ["0", "-3", "x"] {
        let (status, v) = h
            .call(
                reqwest::Method::GET,
                &format!("/translation?q=a&total_upto={bad}"),
                None,
            )
            .await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
}

/// Would catch: `/healthz` answering `ok` while the database cannot be read (a load balancer
/// would keep sending work to a server that cannot do it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_when_the_database_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 50);
    let h = start(dir.path(), &config("match-only")).await;
    let health = || async {
        let r = h
            .http
            .get(format!("{}/healthz", h.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(health().await.0, 200);
    // The database breaks under the server (as a lost volume or a dropped schema would).
    let db = dir.path().join("data/ferry.db");
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('ALTER TABLE tenants RENAME TO tenants_gone'); c.commit()",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let (status, body) = health().await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("database"), "{v}");
}

/// Would catch: a JSON array taken as an object body (serde reads a struct from an array of its
/// fields, so `[]` rotated a token with defaults and `["x"]` changed a batch's computers; found by
/// the API fuzzer). Every object body refuses an array with 422 and the error body, nothing done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_bodies_are_refused_where_an_object_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 20);
    let h = start(dir.path(), &config("match-only")).await;
    let (s, v) = h
        .call(
            reqwest::Method::POST,
            "/operators",
            Some(serde_json::json!({"name": "Müller, Jürgen", "viewer": true})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    for (path, body) in [
        ("/operators/Müller,%20Jürgen/rotate", serde_json::json!([])),
        ("/psks", serde_json::json!(["wave-1"])),
        ("/operators", serde_json::json!(["eve", "admin"])),
    ] {
        let (s, v) = h.call(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(s, 422, "{path}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or("")
                .contains("must be a JSON object"),
            "{path}: {v}"
        );
    }
    // The token was not rotated by the refused call.
    let (s, _) = h
        .call_as(&token, reqwest::Method::GET, "/directories", None)
        .await;
    assert_ne!(s, 401, "the operator's token still works");
    let (_, ops) = h.call(reqwest::Method::GET, "/operators", None).await;
    assert!(!ops.to_string().contains("\"eve\""), "{ops}");
}

/// Catches (on SQLite and on PostgreSQL): a search term with a NUL (`q=%00`) answered with a 500
/// (PostgreSQL takes no NUL in a parameter) or with rows (SQLite's `LIKE` read the pattern only up
/// to the NUL: `%00` found every entry), on the translation table, its export and the What-If,
/// with `total_upto` too: now a 400 naming `q` (no value ferry stores on PostgreSQL holds a NUL,
/// and SQLite's search reads one in a value as a line feed; the store finds nothing for such a
/// term, as for one with a line feed). And a NUL in
/// the translation table's (or its export's) `profile=` filter answered with a 500 on PostgreSQL
/// instead of a 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_term_with_a_nul_is_refused_on_both_backends() {
    let pg = support::PgSchema::new("nul_terms");
    if pg.is_none() {
        eprintln!("PostgreSQL half skipped");
    }
    for url in [None, pg.as_ref().map(|p| p.url.clone())] {
        let dir = tempfile::tempdir().unwrap();
        write_sample(dir.path(), 30);
        let h = support::start_on(dir.path(), &config("match-only"), url.as_deref()).await;
        h.run().await;
        let backend = if url.is_some() { "postgres" } else { "sqlite" };
        // No value holds a NUL: a term with one is refused, naming `q`, as every text filter is.
        for path in [
            "/translation?q=%00",
            "/translation?q=a%00&total_upto=5",
            "/translation?q=%00b&profile=users",
            "/translation/export?format=csv&q=a%00",
            "/profiles/users/whatif?q=%00",
            "/profiles/users/whatif?q=contoso%00&total_upto=1",
        ] {
            let (status, v) = h.call(reqwest::Method::GET, path, None).await;
            assert_eq!(status, 400, "{backend} {path}: {v}");
            assert!(
                v["error"].as_str().unwrap_or_default().contains("`q`"),
                "{backend} {path}: {v}"
            );
        }
        // A NUL in the profile filter: refused, naming it, as the other lists' text filters
        // (`api::text_param`; PostgreSQL refused the parameter: a 500).
        for path in [
            "/translation?profile=%00",
            "/translation?profile=users%00&q=contoso",
            "/translation/export?format=csv&profile=%00",
        ] {
            let (status, v) = h.call(reqwest::Method::GET, path, None).await;
            assert_eq!(status, 400, "{backend} {path}: {v}");
            assert!(v.to_string().contains("profile"), "{backend} {path}: {v}");
        }
        let (status, v) = h
            .call(reqwest::Method::GET, "/profiles/users%00/whatif", None)
            .await;
        assert_eq!(status, 404, "{backend} a profile named with a NUL: {v}");
    }
}

/// Catches (on SQLite and on PostgreSQL): `total_upto` at its edges answered with a 500 or a wrong
/// total: the largest count (one more than it, asked of the store, must not overflow), one past
/// it and an empty value (a 400 naming the parameter), with `offset=` and with a keyset `after=`
/// (the total is every match's count, wherever the page starts), and with a `profile=` filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_total_upto_at_its_edges_on_both_backends() {
    let pg = support::PgSchema::new("total_upto_edges");
    if pg.is_none() {
        eprintln!("PostgreSQL half skipped");
    }
    for url in [None, pg.as_ref().map(|p| p.url.clone())] {
        let dir = tempfile::tempdir().unwrap();
        write_sample(dir.path(), 30);
        let h = support::start_on(dir.path(), &config("match-only"), url.as_deref()).await;
        h.run().await;
        let backend = if url.is_some() { "postgres" } else { "sqlite" };
        let all = h.get("/translation?q=contoso.test&limit=2").await;
        let n = all["total"].as_i64().unwrap();
        assert!(n > 4, "{backend}: {all}");
        let next = all["next"].as_str().unwrap().to_string();
        for (query, total, exact) in [
            (format!("total_upto={}", i64::MAX), n, true),
            (format!("total_upto={}&offset=3", n - 1), n - 1, false),
            (format!("total_upto={n}&after={next}"), n, true),
            ("total_upto=2&profile=users".to_string(), 2, false),
            (format!("total_upto={n}&profile=nosuch"), 0, true),
        ] {
            let path = format!("/translation?q=contoso.test&limit=2&{query}");
            let (status, v) = h.call(reqwest::Method::GET, &path, None).await;
            assert_eq!(status, 200, "{backend} {path}: {v}");
            assert_eq!(
                (v["total"].as_i64(), v["total_exact"].as_bool()),
                (Some(total), Some(exact)),
                "{backend} {path}: {v}"
            );
        }
        for bad in ["9223372036854775808", "", "1.5", "%00"] {
            let path = format!("/translation?q=contoso.test&total_upto={bad}");
            let (status, v) = h.call(reqwest::Method::GET, &path, None).await;
            assert_eq!(status, 400, "{backend} {path}: {v}");
            assert!(
                v.to_string().contains("total_upto"),
                "{backend} {path}: {v}"
            );
        }
    }
}

/// Catches (on SQLite and on PostgreSQL): a sorted translation page that repeats or skips an
/// entry at a page boundary (names that tie, quotes, a leading `=`, letters past ASCII), an order
/// that is not code point order on one backend, `order=desc` that is not the ascending order
/// reversed, an `after` of one sort accepted by another, an unknown `sort` or `order` on any
/// list answered with anything but a 400 naming the parameter and what it allows, and an
/// `offset` past 10,000 (an `OFFSET` scan of every row skipped, 1.4 s a page at a million)
/// answered with anything but a 400 saying to page with `after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_lists_page_in_code_point_order_on_both_backends() {
    let pg = support::PgSchema::new("sorted_lists");
    if pg.is_none() {
        eprintln!("PostgreSQL half skipped");
    }
    for url in [None, pg.as_ref().map(|p| p.url.clone())] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample::generate(40, true, 5);
        // Groups match by name: matched entries with real-world names, some the same.
        let hostile = [
            "Smith, Ann",
            "Ødegård, Åse",
            "=cmd|' /C calc'!A0",
            "O'Brien \"Pat\"",
            "adams",
            "Smith, Ann ",
            "山田 太郎",
            "Zoë",
        ];
        for (i, name) in hostile.iter().enumerate() {
            let g = |id: String| {
                ferry_core::model::DirObject::new(ferry_core::ObjectKind::Group, id, *name)
            };
            s.source.push(g(format!("sg-{i}")));
            s.target.push(g(format!("tg-{i}")));
        }
        std::fs::write(dir.path().join("contoso.json"), render_json(&s.source)).unwrap();
        std::fs::write(dir.path().join("fabrikam.json"), render_json(&s.target)).unwrap();
        let h = support::start_on(dir.path(), &config("match-only"), url.as_deref()).await;
        h.run().await;
        let backend = if url.is_some() { "postgres" } else { "sqlite" };
        let sorts = [
            "kind",
            "profile",
            "source_name",
            "target_name",
            "source_sid",
            "target_sid",
            "rule",
        ];
        for sort in sorts {
            for order in ["asc", "desc"] {
                let all = h
                    .get(&format!(
                        "/translation?sort={sort}&order={order}&limit=10000"
                    ))
                    .await;
                let all: Vec<Value> = all["entries"].as_array().unwrap().clone();
                assert!(all.len() > 20, "{backend}: {}", all.len());
                // The order the API claims: the column by code point, then kind and source id.
                // A missing value sorts as empty. Rules by their position in the plan, which
                // the entry does not carry: profile, kind and source id within each rule, and
                // each rule in one run.
                let key = |e: &Value| {
                    let v = match sort {
                        "kind" | "profile" | "rule" => e["profile"].as_str().unwrap().to_string(),
                        c => e[c].as_str().unwrap_or_default().to_string(),
                    };
                    (
                        v,
                        e["kind"].as_str().unwrap().to_string(),
                        e["source_id"].as_str().unwrap().to_string(),
                    )
                };
                let mut want = all.clone();
                if sort == "rule" {
                    let runs: Vec<&str> = all.iter().map(|e| e["rule"].as_str().unwrap()).collect();
                    let mut seen: Vec<&str> = runs.clone();
                    seen.dedup();
                    let distinct: std::collections::HashSet<&&str> = seen.iter().collect();
                    assert!(distinct.len() > 1, "{backend}: rules {seen:?}");
                    assert_eq!(
                        distinct.len(),
                        seen.len(),
                        "{backend} {order}: one run a rule: {seen:?}"
                    );
                    want.sort_by_key(|e| {
                        let r = runs.iter().position(|r| *r == e["rule"].as_str().unwrap());
                        (r, key(e))
                    });
                    if order == "desc" {
                        // Within each rule's run, the key reversed.
                        want.sort_by_key(|e| {
                            let r = runs.iter().position(|r| *r == e["rule"].as_str().unwrap());
                            (r, std::cmp::Reverse(key(e)))
                        });
                    }
                } else {
                    want.sort_by_key(key);
                    if order == "desc" {
                        want.reverse();
                    }
                }
                assert_eq!(all, want, "{backend} {sort} {order}: one page");
                let mut walked: Vec<Value> = Vec::new();
                let mut after = String::new();
                loop {
                    let p = h
                        .get(&format!(
                            "/translation?sort={sort}&order={order}&limit=7{after}"
                        ))
                        .await;
                    walked.extend(p["entries"].as_array().unwrap().iter().cloned());
                    match p["next"].as_str() {
                        Some(n) => {
                            after = format!("&after={}", urlencode(n));
                        }
                        None => break,
                    }
                }
                assert_eq!(walked, all, "{backend} {sort} {order}: pages of 7");
            }
        }
        let names: Vec<String> = h
            .get("/translation?kind=group&sort=source_name&limit=100")
            .await["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["source_name"].as_str().unwrap().to_string())
            .filter(|n| hostile.contains(&n.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                "=cmd|' /C calc'!A0",
                "O'Brien \"Pat\"",
                "Smith, Ann",
                "Smith, Ann ",
                "Zoë",
                "adams",
                "Ødegård, Åse",
                "山田 太郎"
            ],
            "{backend}: code point order"
        );
        // A cursor of one sort is refused by another.
        let p = h.get("/translation?sort=source_name&limit=2").await;
        let n = urlencode(p["next"].as_str().unwrap());
        let (st, v) = h
            .call(
                reqwest::Method::GET,
                &format!("/translation?after={n}"),
                None,
            )
            .await;
        assert_eq!(st, 400, "{v}");
        for (path, param, allowed) in [
            (
                "/translation?sort=target_upn",
                "sort",
                "one of kind, profile, source_name, target_name, source_sid, target_sid, rule",
            ),
            ("/translation?order=up", "order", "asc or desc"),
            (
                "/translation/export?format=csv&sort=candidates",
                "sort",
                "kind, profile, source_name, target_name",
            ),
            (
                "/profiles/users/whatif?sort=bogus",
                "sort",
                "one of kind, status, source_name, target_name, rule",
            ),
            (
                "/profiles/users/whatif?sort=source_name",
                "sort",
                "without a `status` filter",
            ),
            (
                "/profiles/users/whatif?sort=rule",
                "sort",
                "without a `status` filter",
            ),
            (
                "/translation?sort=rule&after=%5B%22users%22%2C%22user%22%2C%22x%22%2C%22first%22%5D",
                "after",
                "same sort",
            ),
            (
                "/agents?sort=os",
                "sort",
                "id, hostname, state, last_contact",
            ),
            ("/agents?order=sideways", "order", "asc or desc"),
            ("/agents?sort=hostname&after=12", "after", "same sort"),
            ("/logs?sort=level", "sort", "at"),
            ("/logs?order=newest", "order", "asc or desc"),
            ("/audit?sort=actor", "sort", "at"),
            ("/audit/export?order=x", "order", "asc or desc"),
            (
                "/reports/failed-communications?sort=code",
                "sort",
                "at, address",
            ),
            ("/batches/none/progress?sort=os", "sort", "hostname"),
            // An `OFFSET` reads every row it skips: deep pages are read by keyset.
            ("/translation?offset=10001", "offset", "at most 10000"),
            ("/translation?offset=99999999999", "offset", "keyset paging"),
            (
                "/profiles/users/whatif?offset=10001",
                "offset",
                "at most 10000",
            ),
            (
                "/profiles/users/whatif?writes_offset=10001",
                "writes_offset",
                "`after`",
            ),
            ("/agents?offset=10001", "offset", "at most 10000"),
        ] {
            let (st, v) = h.call(reqwest::Method::GET, path, None).await;
            let e = v["error"].as_str().unwrap_or_default();
            if path.starts_with("/batches/none") && st == 404 {
                continue; // the batch is looked up first
            }
            assert_eq!(st, 400, "{backend} {path}: {v}");
            assert!(
                e.contains(&format!("`{param}`")) && e.contains(allowed),
                "{backend} {path}: {e}"
            );
        }
        // The deepest offset still answered (an empty page here).
        for path in [
            "/translation?offset=10000",
            "/profiles/users/whatif?offset=10000&writes_offset=10000",
            "/agents?offset=10000",
        ] {
            let (st, v) = h.call(reqwest::Method::GET, path, None).await;
            assert_eq!(st, 200, "{backend} {path}: {v}");
        }
        // Logs and audit: newest first by default, oldest first asked, totals whatever the page.
        let newest = h.get("/logs?limit=10000").await;
        let oldest = h.get("/logs?order=asc&limit=10000").await;
        let mut back = oldest.as_array().unwrap().clone();
        back.reverse();
        assert_eq!(&back, newest.as_array().unwrap(), "{backend}");
        let audit = h.get("/audit?order=asc&action=sync.run").await;
        assert!(!audit.as_array().unwrap().is_empty(), "{backend}: {audit}");
        let csv = h.text("/audit/export?action=sync.run").await;
        assert_eq!(
            csv.lines().count(),
            audit.as_array().unwrap().len() + 1,
            "{backend}: {csv}"
        );
        h.server.stop().await.unwrap();
    }
}

/// `after=` tokens are JSON: percent-encoded for a query string.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An export's answer read: its status, `X-Total-Count` and its rows (header first).
async fn csv_export(h: &support::Harness, token: &str, path: &str) -> (u16, i64, Vec<Vec<String>>) {
    support::csv_export(&h.http, &h.url, token, path, true).await
}

/// Catches (on SQLite and on PostgreSQL): a What-If export that stops after its first keyset
/// page (1,000 decisions) or repeats a row at a page boundary, joins only the first page of the
/// plan's writes (1,000) to their decisions, counts otherwise than the list,
/// ignores the `status`, `kind` or `q` filter or the order shown, writes a directory name that
/// starts with `=`, `+`, `-`, `@` or a tab as a formula a spreadsheet would run, mangles a name
/// with a comma, quotes or letters past ASCII, or leaves out the write a decision authorises; a
/// viewer refused, a tenant admin (even of the profile's source directory) let in, a bad
/// parameter answered otherwise than with a 400 naming it, an unknown profile otherwise than 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whatif_export_is_every_filtered_decision_in_the_order_shown() {
    let pg = support::PgSchema::new("whatif_export");
    for url in [None, pg.as_ref().map(|p| p.url.clone())] {
        let backend = if url.is_some() { "postgres" } else { "sqlite" };
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample::generate(1_100, true, 5);
        // No user in the target yet: the plan creates every one, more writes than a page of them.
        s.target.retain(|o| o.kind != ferry_core::ObjectKind::User);
        // Users only the source has (unmatched: the plan creates them), named as directories
        // name people and as an attacker would.
        let hostile = [
            "Smith, Ann",
            "=cmd|' /C calc'!A0",
            "+SUM(A1:A9)",
            "-2+3",
            "@HYPERLINK(\"http://x\")",
            "\tTabbed",
            "O'Brien \"Pat\"",
            "Ødegård, Åse",
            "山田 太郎",
        ];
        for (i, name) in hostile.iter().enumerate() {
            s.source.push(ferry_core::model::DirObject::new(
                ferry_core::ObjectKind::User,
                format!("hostile-{i}"),
                *name,
            ));
        }
        std::fs::write(dir.path().join("contoso.json"), render_json(&s.source)).unwrap();
        std::fs::write(dir.path().join("fabrikam.json"), render_json(&s.target)).unwrap();
        let h = support::start_on(dir.path(), &config("create"), url.as_deref()).await;
        h.run().await;
        let admin = h.token.clone();
        let ids = |rows: &[Vec<String>]| -> Vec<String> {
            rows[1..]
                .iter()
                .map(|r| format!("{}/{}", r[0], r[2]))
                .collect()
        };
        let listed = |v: &Value| -> Vec<String> {
            v["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    format!(
                        "{}/{}",
                        d["kind"].as_str().unwrap(),
                        d["source_id"].as_str().unwrap()
                    )
                })
                .collect()
        };

        // Every decision, in the list's order, more than one keyset page of them.
        let list = h
            .get("/profiles/users/whatif?limit=10000&writes_limit=1")
            .await;
        let (st, total, rows) = csv_export(&h, &admin, "/profiles/users/whatif/export").await;
        assert_eq!(st, 200, "{backend}: {rows:?}");
        assert_eq!(rows[0][0], "kind", "{backend}: the header");
        assert_eq!(
            total,
            list["decisions_total"].as_i64().unwrap(),
            "{backend}"
        );
        assert!(total > 1_000, "{backend}: more than a page: {total}");
        assert_eq!(rows.len() as i64, total + 1, "{backend}");
        assert_eq!(ids(&rows), listed(&list), "{backend}: the list's order");

        // Filtered by status and sorted by name, descending: the list's rows and order; every
        // create the plan holds is on its decision's row.
        let q = "status=unmatched&sort=source_name&order=desc";
        let list = h
            .get(&format!(
                "/profiles/users/whatif?{q}&limit=10000&writes_limit=1"
            ))
            .await;
        let (_, total, rows) =
            csv_export(&h, &admin, &format!("/profiles/users/whatif/export?{q}")).await;
        assert_eq!(
            total,
            list["decisions_total"].as_i64().unwrap(),
            "{backend}"
        );
        assert_eq!(ids(&rows), listed(&list), "{backend}: {q}");
        assert!(rows[1..].iter().all(|r| r[1] == "unmatched"), "{backend}");
        let creates = rows[1..].iter().filter(|r| r[14] == "create").count() as u64;
        assert!(
            creates > 1_000,
            "{backend}: more than a page of writes: {creates}"
        );
        assert_eq!(
            creates,
            list["plan"]["counts"]["creates"].as_u64().unwrap(),
            "{backend}: each create on its decision"
        );
        let by_id = |id: &str| rows.iter().find(|r| r[2] == id).unwrap().clone();
        // As a spreadsheet reads them: names with commas, quotes and letters past ASCII as they
        // are; those that would be a formula behind a `'`.
        for (i, name) in hostile.iter().enumerate() {
            let r = by_id(&format!("hostile-{i}"));
            let want = if name.starts_with(['=', '+', '-', '@', '\t']) {
                format!("'{name}")
            } else {
                name.to_string()
            };
            assert_eq!(r[3], want, "{backend}: {r:?}");
            assert_eq!(r[14], "create", "{backend}: {r:?}");
            let w: Value = serde_json::from_str(&r[15]).unwrap();
            assert_eq!(
                (w["op"].as_str(), w["name"].as_str()),
                (Some("create"), Some(*name)),
                "{backend}: the write it authorises: {r:?}"
            );
        }
        for r in &rows {
            for c in r {
                assert!(
                    !c.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{backend}: a cell a spreadsheet runs: {c:?}"
                );
            }
        }

        // Filtered by kind and by a term: the list's totals and rows.
        for q in [
            "kind=group",
            "q=smith",
            "kind=user&q=ann&sort=status&order=desc",
        ] {
            let list = h
                .get(&format!(
                    "/profiles/users/whatif?{q}&limit=10000&writes_limit=1"
                ))
                .await;
            let (st, total, rows) =
                csv_export(&h, &admin, &format!("/profiles/users/whatif/export?{q}")).await;
            assert_eq!(st, 200, "{backend} {q}");
            assert_eq!(
                total,
                list["decisions_total"].as_i64().unwrap(),
                "{backend} {q}"
            );
            assert!(total > 0, "{backend} {q}");
            assert_eq!(ids(&rows), listed(&list), "{backend} {q}");
        }

        // A viewer reads it; a tenant admin, even of the source's tenant, does not.
        let (st, v) = h
            .call(
                reqwest::Method::POST,
                "/operators",
                Some(json!({"name": "vera", "viewer": true})),
            )
            .await;
        assert_eq!(st, 201, "{backend}: {v}");
        let viewer = v["token"].as_str().unwrap().to_string();
        let (st, total, _) = csv_export(&h, &viewer, "/profiles/users/whatif/export").await;
        assert_eq!(
            (st, total),
            (200, list_total(&h).await),
            "{backend}: a viewer"
        );
        let (st, v) = h
            .call(
                reqwest::Method::PUT,
                "/tenants/contoso",
                Some(json!({"id": "contoso", "name": "Contoso", "domains": ["contoso.test"], "directories": ["contoso"]})),
            )
            .await;
        assert_eq!(st, 200, "{backend}: {v}");
        let (st, v) = h
            .call(
                reqwest::Method::POST,
                "/operators",
                Some(json!({"name": "ann", "tenant": "contoso"})),
            )
            .await;
        assert_eq!(st, 201, "{backend}: {v}");
        let tenant = v["token"].as_str().unwrap().to_string();
        let (st, _, body) = csv_export(&h, &tenant, "/profiles/users/whatif/export").await;
        assert_eq!(st, 403, "{backend}: a tenant admin: {body:?}");

        // Bad parameters: a 400 naming the parameter; an unknown profile: 404.
        for (q, param) in [
            ("status=bogus", "status"),
            ("kind=printer", "kind"),
            ("sort=bogus", "sort"),
            ("sort=source_name", "sort"),
            ("order=up", "order"),
            ("q=a%00", "q"),
        ] {
            let (st, v) = h
                .call(
                    reqwest::Method::GET,
                    &format!("/profiles/users/whatif/export?{q}"),
                    None,
                )
                .await;
            assert_eq!(st, 400, "{backend} {q}: {v}");
            assert!(
                v["error"].as_str().unwrap().contains(&format!("`{param}`")),
                "{backend} {q}: {v}"
            );
        }
        let (st, v) = h
            .call(reqwest::Method::GET, "/profiles/nope/whatif/export", None)
            .await;
        assert_eq!(st, 404, "{backend}: {v}");
        h.server.stop().await.unwrap();
    }
}

/// The What-If's `decisions_total`, unfiltered.
async fn list_total(h: &support::Harness) -> i64 {
    h.get("/profiles/users/whatif?limit=1&writes_limit=1").await["decisions_total"]
        .as_i64()
        .unwrap()
}

/// Catches (SQLite, which stores a NUL inside a directory value; PostgreSQL refuses the cycle):
/// a page of the translation table sorted by a column whose last row holds a NUL (a target name,
/// a SID) answering a `next` that the API then refuses as forged (400): the pages stop there and
/// the rows after it cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_a_value_with_a_nul_does_not_end_the_sorted_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sample::generate(6, true, 5);
    for (i, name) in ["Ann\0Zed", "Bob", "Ann", "Cy\0"].iter().enumerate() {
        let g = |id: String, sid: String| {
            let mut o = ferry_core::model::DirObject::new(ferry_core::ObjectKind::Group, id, *name);
            o.sid = Some(sid);
            o
        };
        s.source
            .push(g(format!("sg-{i}"), format!("S-1-5-21-7-\0{i}")));
        s.target
            .push(g(format!("tg-{i}"), format!("S-1-5-21-8-{i}\0")));
    }
    std::fs::write(dir.path().join("contoso.json"), render_json(&s.source)).unwrap();
    std::fs::write(dir.path().join("fabrikam.json"), render_json(&s.target)).unwrap();
    let h = start(dir.path(), &config("match-only")).await;
    h.run().await;
    for sort in ["source_name", "target_name", "source_sid", "target_sid"] {
        for order in ["asc", "desc"] {
            let all = h
                .get(&format!(
                    "/translation?sort={sort}&order={order}&limit=10000"
                ))
                .await;
            let all: Vec<Value> = all["entries"].as_array().unwrap().clone();
            assert!(
                all.iter()
                    .any(|e| e[sort].as_str().is_some_and(|v| v.contains('\0'))),
                "{sort}: a value with a NUL is listed"
            );
            let mut walked: Vec<Value> = Vec::new();
            let mut after = String::new();
            loop {
                let (st, p) = h
                    .call(
                        reqwest::Method::GET,
                        &format!("/translation?sort={sort}&order={order}&limit=1{after}"),
                        None,
                    )
                    .await;
                assert_eq!(
                    st, 200,
                    "{sort} {order}: the server's own `next` refused: {p}"
                );
                walked.extend(p["entries"].as_array().unwrap().iter().cloned());
                match p["next"].as_str() {
                    Some(n) => after = format!("&after={}", urlencode(n)),
                    None => break,
                }
            }
            assert_eq!(walked, all, "{sort} {order}: pages of 1");
        }
    }
    // PostgreSQL holds no value with a NUL (it refuses one as a parameter): such a cursor names
    // no row it wrote, and is answered, not a 500.
    let Some(pg) = support::PgSchema::new("nul_cursor") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 20);
    let h = support::start_on(dir.path(), &config("match-only"), Some(&pg.url)).await;
    h.run().await;
    for (sort, cursor) in [
        ("kind", r#"["users","user","a\u0000b"]"#),
        ("target_name", r#"["users","user","x","a\u0000"]"#),
        ("source_name", r#"["us\u0000ers","user","x","a"]"#),
    ] {
        let (st, p) = h
            .call(
                reqwest::Method::GET,
                &format!("/translation?sort={sort}&after={}", urlencode(cursor)),
                None,
            )
            .await;
        assert_eq!(st, 200, "postgres {sort} {cursor}: {p}");
    }
}

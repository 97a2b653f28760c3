//! Two servers on one real PostgreSQL deciding the same environment move at the same moment
//! (issue 17): a transition is a compare-and-swap of the move's document, so exactly one of
//! `approve` / `reject`, or of two `cancel`s, wins, the other is answered 409, and the audit
//! trail has the winner only. Without the swap both answered 200.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Harness, PgSchema, start_on};

const ROUNDS: usize = 6;

fn environment(i: usize) -> Value {
    json!({
        "id": format!("env-{i}"), "tenant": "contoso", "name": format!("Sales {i}"),
        "url": format!("https://sales{i}.crm.test"),
        "org_id": format!("0a1b2c3d-0000-4000-8000-{i:012}"), "type": "production",
        "system_users": [{"id": "11111111-1111-4111-8111-111111111111", "email": "ann@contoso.test"}]
    })
}

async fn ok(h: &Harness, token: &str, m: Method, path: &str, body: Option<Value>) -> Value {
    let (s, v) = h.call_as(token, m, path, body).await;
    assert!((200..300).contains(&s), "{path}: {s} {v}");
    v
}

/// Submits env-`i` from contoso to fabrikam; (source id, target id).
async fn submit(h: &Harness, src: &str, dst: &str, i: usize) -> (String, String) {
    ok(
        h,
        src,
        Method::PUT,
        &format!("/environments/env-{i}"),
        Some(environment(i)),
    )
    .await;
    let v = ok(
        h,
        src,
        Method::POST,
        &format!("/environments/env-{i}/moves"),
        Some(json!({"target_tenant": "fabrikam"})),
    )
    .await;
    let sid = v["migration_id"].as_str().unwrap().to_string();
    let approvals = ok(h, dst, Method::GET, "/moves/approvals", None).await;
    let tid = approvals
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["environment"] == format!("env-{i}"))
        .unwrap()["migration_id"]
        .as_str()
        .unwrap()
        .to_string();
    (sid, tid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_deciding_one_move_give_one_outcome() {
    let Some(pg) = PgSchema::new("moves_race") else {
        return;
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_on(da.path(), "", Some(&pg.url)).await;
    let b = start_on(db.path(), "", Some(&pg.url)).await;
    for id in ["contoso", "fabrikam"] {
        ok(
            &a,
            &a.token,
            Method::PUT,
            &format!("/tenants/{id}"),
            Some(json!({"id": id, "name": id, "domains": [format!("{id}.test")]})),
        )
        .await;
    }
    let mut tok = std::collections::HashMap::new();
    for (name, tenant) in [("src", "contoso"), ("dst", "fabrikam")] {
        let v = ok(
            &a,
            &a.token,
            Method::POST,
            "/operators",
            Some(json!({"name": name, "tenant": tenant})),
        )
        .await;
        tok.insert(name, v["token"].as_str().unwrap().to_string());
    }
    let (src, dst) = (tok["src"].as_str(), tok["dst"].as_str());
    // Each transition waits between reading the request and writing it, so that both servers
    // read it before either writes: the race, every round.
    for h in [&a, &b] {
        h.server.state.clock.pause_move_decisions(150);
    }

    // approve on one server, reject on the other.
    for i in 0..ROUNDS {
        let (_, tid) = submit(&a, src, dst, i).await;
        let approve = format!("/moves/{tid}/approve");
        let reject = format!("/moves/{tid}/reject");
        let (ra, rb) = tokio::join!(
            a.call_as(dst, Method::POST, &approve, None),
            b.call_as(dst, Method::POST, &reject, None)
        );
        let mut codes = [ra.0, rb.0];
        codes.sort();
        assert_eq!(codes, [200, 409], "round {i}: {ra:?} / {rb:?}");
        let winner = if ra.0 == 200 { "approved" } else { "rejected" };
        let status = ok(&b, dst, Method::GET, &format!("/moves/{tid}/status"), None).await;
        assert_eq!(status["state"], winner, "round {i}: {status}");
    }
    let audit = ok(&a, &a.token, Method::GET, "/audit?limit=1000", None).await;
    let decided = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "env.move.approve" || l["action"] == "env.move.reject")
        .count();
    assert_eq!(
        decided, ROUNDS,
        "one audit line per decided request: {audit}"
    );

    // The same transition on both servers at once (two cancels of one approved request): one
    // is taken, one audit line.
    let (sid, tid) = submit(&a, src, dst, 100).await;
    ok(
        &a,
        dst,
        Method::POST,
        &format!("/moves/{tid}/approve"),
        None,
    )
    .await;
    // Both servers read the approved request; whichever swaps first wins.
    let cancel = format!("/moves/{sid}/cancel");
    let (ra, rb) = tokio::join!(
        a.call_as(src, Method::POST, &cancel, None),
        b.call_as(src, Method::POST, &cancel, None)
    );
    let mut codes = [ra.0, rb.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "two cancels: {ra:?} / {rb:?}");
    let cancels = ok(&a, &a.token, Method::GET, "/audit?limit=1000", None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "env.move.cancel")
        .count();
    assert_eq!(cancels, 1);
    drop((a, b, pg));
}

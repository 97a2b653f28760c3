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

/// The two tenants and a tenant admin of each; (source admin's token, target admin's token).
async fn tenants(a: &Harness) -> (String, String) {
    for id in ["contoso", "fabrikam"] {
        ok(
            a,
            &a.token,
            Method::PUT,
            &format!("/tenants/{id}"),
            Some(json!({"id": id, "name": id, "domains": [format!("{id}.test")]})),
        )
        .await;
    }
    let mut tok = Vec::new();
    for (name, tenant) in [("src", "contoso"), ("dst", "fabrikam")] {
        let v = ok(
            a,
            &a.token,
            Method::POST,
            "/operators",
            Some(json!({"name": name, "tenant": tenant})),
        )
        .await;
        tok.push(v["token"].as_str().unwrap().to_string());
    }
    (tok[0].clone(), tok[1].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_deciding_one_move_give_one_outcome() {
    let Some(pg) = PgSchema::new("moves_race") else {
        return;
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_on(da.path(), "", Some(&pg.url)).await;
    let b = start_on(db.path(), "", Some(&pg.url)).await;
    let (src, dst) = &tenants(&a).await;
    let (src, dst) = (src.as_str(), dst.as_str());
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

/// Puts move `sid` in the state a server killed during its hand-over leaves it: `migrating`,
/// naming that server (or none, as moves from before claims existed).
async fn left_migrating(h: &Harness, sid: &str, on: Option<&str>) {
    let store = &h.server.state.store;
    let (_, old) = store
        .documents(ferry_store::DocKind::EnvMove)
        .await
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == sid)
        .unwrap();
    let mut v: Value = serde_json::from_str(&old).unwrap();
    v["request"]["state"] = json!("migrating");
    match on {
        Some(s) => v["migrating_on"] = json!(s),
        None => {
            v.as_object_mut().unwrap().remove("migrating_on");
        }
    }
    let new = serde_json::to_string(&v).unwrap();
    assert!(
        store
            .swap_document(ferry_store::DocKind::EnvMove, sid, &old, &new, 0)
            .await
            .unwrap()
    );
}

/// Would catch: a move left `migrating` forever when the server handing it over dies and does
/// not come back (only its own restart rolled it back), and a move from before claims existed
/// (no `migrating_on`) never being rolled back (issue 17). A live claim is respected: the move
/// is rolled back only once its server's claim lapsed, by another server, with one audit line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_whose_server_died_is_rolled_back_by_another_server() {
    use ferry_server::api::environments::{MOVE_LEASE_TTL_MS, recover_moves};
    let Some(pg) = PgSchema::new("moves_dead_server") else {
        return;
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_on(da.path(), "", Some(&pg.url)).await;
    let b = start_on(db.path(), "", Some(&pg.url)).await;
    let (src, dst) = &tenants(&a).await;
    let (src, dst) = (src.as_str(), dst.as_str());

    // Server A "dies" handing over env-1: the move is migrating on A and A's claim was taken
    // just before; A never renews it.
    let (sid, tid) = submit(&a, src, dst, 1).await;
    ok(
        &a,
        dst,
        Method::POST,
        &format!("/moves/{tid}/approve"),
        None,
    )
    .await;
    let a_id = a.server.state.engine.server_id.clone();
    left_migrating(&a, &sid, Some(&a_id)).await;
    let claimed = a
        .server
        .state
        .store
        .try_lease(
            &format!("move:{sid}"),
            &format!("{a_id}:dead"),
            a.server.state.clock.now_ms(),
            MOVE_LEASE_TTL_MS,
        )
        .await
        .unwrap();
    assert!(claimed);
    // And a move from before claims: migrating, on no recorded server, with no claim.
    let (old_sid, old_tid) = submit(&a, src, dst, 2).await;
    ok(
        &a,
        dst,
        Method::POST,
        &format!("/moves/{old_tid}/approve"),
        None,
    )
    .await;
    left_migrating(&a, &old_sid, None).await;

    // B's sweep: the old move has no claim and goes back; A's claim is alive, so its move stays.
    assert_eq!(recover_moves(&b.server.state).await.unwrap(), 1);
    let status = |h: &'static str, id: String| {
        let h = if h == "a" { &a } else { &b };
        async move { ok(h, src, Method::GET, &format!("/moves/{id}/status"), None).await }
    };
    let old = status("b", old_sid.clone()).await;
    assert_ne!(old["state"], "migrating", "{old}");
    let held = status("b", sid.clone()).await;
    assert_eq!(
        held["state"], "migrating",
        "a live claim is respected: {held}"
    );
    let (s, v) = b
        .call_as(src, Method::POST, &format!("/moves/{sid}/migrate"), None)
        .await;
    assert_eq!(s, 409, "no second hand-over while one is claimed: {v}");

    // A's claim lapses (B's clock past its end): B rolls the move back, once.
    b.server.state.clock.advance(MOVE_LEASE_TTL_MS + 1_000);
    assert_eq!(recover_moves(&b.server.state).await.unwrap(), 1);
    assert_eq!(recover_moves(&b.server.state).await.unwrap(), 0);
    let back = status("b", sid.clone()).await;
    assert_ne!(back["state"], "migrating", "{back}");
    let audit = ok(&b, &b.token, Method::GET, "/audit?limit=1000", None).await;
    let rolled: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            l["subject"] == sid.as_str()
                && l["detail"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("rolled back by")
        })
        .collect();
    assert_eq!(rolled.len(), 1, "{audit}");
    assert!(
        rolled[0]["detail"].as_str().unwrap().contains(&a_id),
        "the line names the dead server: {}",
        rolled[0]
    );
    drop((a, b, pg));
}

//! Review before approve (issue 20), through the HTTP API on a real store, SQLite and
//! PostgreSQL: the What-If's writes counted by kind and class, its rules by name, an ambiguous
//! decision's candidates by name with the value that tied them, approvals refused for a stale
//! or too short hash; the single object report of a matched, an ambiguous, a conflicting and an
//! unmatched object, with the target's identity, since when, and the history from cycle 1.
//! Names are as directories hold them: "Surname, Given", quotes, non-ASCII, a leading `=`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use ferry_core::model::{DirObject, ObjectKind};
use ferry_core::snapshot::render_json;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Harness, PgSchema, start, start_on};

const CONFIG: &str = "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n\
[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n\
[[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"update\"\nobject_types = [\"user\", \"group\"]\n\n\
[[sync_profile.match]]\nsource_attribute = \"mail\"\ntarget_attribute = \"mail\"\ntransforms = [{ replace_suffix = [\"@contoso.test\", \"@fabrikam.test\"] }]\nobject_types = [\"user\"]\n\n\
[[sync_profile.match]]\nsource_attribute = \"name\"\ntarget_attribute = \"name\"\nobject_types = [\"group\"]\n";

const RULE: &str = "mail → mail (replace_suffix)";

fn user(id: &str, name: &str, mail: &str, uid: u32) -> DirObject {
    let mut o = DirObject::new(ObjectKind::User, id, name);
    o.mail = Some(mail.into());
    o.upn = Some(mail.into());
    o.uid_number = Some(uid);
    o.sid = Some(format!("S-1-5-21-1-2-3-{uid}"));
    o
}

/// Ann is ambiguous (two targets share her mail); José is matched; the `=` name and Seán are
/// unmatched (two creates); the two "Lee, Ann" sources share one mail (a conflict); the group
/// "Vertrieb, Süd" is matched by name and lacks José (one member change).
fn directories() -> (Vec<DirObject>, Vec<DirObject>) {
    let mut group = DirObject::new(ObjectKind::Group, "g-sued", "Vertrieb, Süd");
    group.members = vec!["jose".into(), "ann".into()];
    let source = vec![
        user("ann", "Smith, Ann", "ann.smith@contoso.test", 10001),
        user(
            "jose",
            "Müller, José \"Pepe\"",
            "jose.muller@contoso.test",
            10003,
        ),
        user("eq", "=HYPERLINK(\"http://x\")", "eq@contoso.test", 10004),
        user("sean", "O'Brien, Seán", "sean.obrien@contoso.test", 10005),
        user("lee1", "Lee, Ann", "ann.lee@contoso.test", 10006),
        user(
            "lee2",
            "Lee, Ann (contractor)",
            "ann.lee@contoso.test",
            10007,
        ),
        group,
    ];
    let mut tgroup = DirObject::new(ObjectKind::Group, "tg-sued", "Vertrieb, Süd");
    tgroup.members = vec![];
    let target = vec![
        user("tann", "Smith, Ann", "ann.smith@fabrikam.test", 20001),
        user("tann2", "Smith, Ann (HR)", "ann.smith@fabrikam.test", 20002),
        user("tjose", "Müller, José", "jose.muller@fabrikam.test", 20003),
        user("tlee", "Lee, Ann", "ann.lee@fabrikam.test", 20006),
        tgroup,
    ];
    (source, target)
}

async fn approve(h: &Harness, hash: Value) -> (u16, Value) {
    h.call(
        Method::POST,
        "/profiles/users/approve",
        Some(json!({ "plan_hash": hash })),
    )
    .await
}

fn report_of(v: &Value, directory: &str) -> Value {
    v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["directory"] == directory)
        .cloned()
        .unwrap_or_else(|| panic!("no object in {directory}: {v}"))
}

/// `quick`: the report answers through the decisions once the search index is whole (SQLite).
async fn scenario(h: &Harness, quick: bool) {
    let c1 = h.run().await;
    assert_eq!(c1["status"], "succeeded", "{c1}");
    let c1 = c1["id"].as_i64().unwrap();

    // The writes first: counted by kind and class, adding up to what Approve authorises.
    let w = h
        .get("/profiles/users/whatif?limit=100&writes_limit=100")
        .await;
    let by_kind = &w["plan"]["counts"]["writes_by_kind"];
    assert_eq!(by_kind["user"]["creates"], 2, "{by_kind}");
    assert_eq!(
        (
            &by_kind["group"]["member_changes"],
            &by_kind["group"]["members_added"]
        ),
        (&json!(1), &json!(1)),
        "José is translated into the group, Ann (ambiguous) is not: {by_kind}"
    );
    let sum: u64 = by_kind
        .as_object()
        .unwrap()
        .values()
        .map(|c| {
            c["creates"].as_u64().unwrap()
                + c["updates"].as_u64().unwrap()
                + c["member_changes"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(sum, w["writes_total"].as_u64().unwrap(), "{by_kind}");
    assert_eq!(sum, w["writes"].as_array().unwrap().len() as u64);

    // Rules by name, never by position, on every decision that has one.
    for d in w["decisions"].as_array().unwrap() {
        if d["rule"].is_u64() {
            let name = d["rule_name"].as_str().unwrap_or_default();
            assert!(
                name == RULE || name == "name → name",
                "a rule shown by its index: {d}"
            );
        }
    }

    // Ambiguous: the candidates by name and UPN, with the attribute and value that tied them.
    let a = h.get("/profiles/users/whatif?status=ambiguous").await;
    let ann = &a["decisions"][0];
    assert_eq!(
        (ann["source_id"].as_str(), ann["rule_name"].as_str()),
        (Some("ann"), Some(RULE)),
        "{a}"
    );
    let mut names: Vec<(String, String, String)> = a["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source_id"] == "ann")
        .map(|c| {
            assert_eq!(
                (
                    c["side"].as_str(),
                    c["directory"].as_str(),
                    c["attribute"].as_str()
                ),
                (Some("target"), Some("fabrikam"), Some("mail")),
                "{c}"
            );
            assert_eq!(c["values"], json!(["ann.smith@fabrikam.test"]), "{c}");
            (
                c["name"].as_str().unwrap().to_string(),
                c["upn"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            (
                "Smith, Ann".to_string(),
                "ann.smith@fabrikam.test".to_string(),
                "tann".to_string()
            ),
            (
                "Smith, Ann (HR)".to_string(),
                "ann.smith@fabrikam.test".to_string(),
                "tann2".to_string()
            )
        ]
    );
    // A conflict's candidates are the other sources, read from the source directory.
    let cf = h.get("/profiles/users/whatif?status=conflict").await;
    let lee1 = cf["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source_id"] == "lee1")
        .cloned()
        .unwrap_or_else(|| panic!("{cf}"));
    assert_eq!(
        (
            lee1["side"].as_str(),
            lee1["name"].as_str(),
            lee1["attribute"].as_str()
        ),
        (Some("source"), Some("Lee, Ann (contractor)"), Some("mail")),
        "{lee1}"
    );
    // A page of other statuses carries no candidates.
    let un = h.get("/profiles/users/whatif?status=unmatched").await;
    assert_eq!(un["candidates"], json!([]), "{un}");

    // Approve names the plan: a short or empty prefix is refused, not taken as "whatever is
    // in force"; another plan's hash is refused as stale.
    let hash1 = w["plan"]["hash"].as_str().unwrap().to_string();
    for short in ["", "   ", &hash1[..11]] {
        let (s, v) = approve(h, json!(short)).await;
        assert_eq!(s, 400, "`{short}`: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("at least 12 characters"),
            "{v}"
        );
    }
    let (s, v) = approve(h, json!("0123456789abcdef")).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(h.get("/profiles/users/whatif").await["approved"], false);

    // The single object report of a matched object: the target's identity, the rule, since
    // when, and its history from the cycle that first decided it.
    let r = h.get("/report/object?q=jose.muller%40contoso.test").await;
    let jose = report_of(&r, "contoso");
    let p = &jose["profiles"][0];
    assert_eq!(
        (
            p["side"].as_str(),
            p["decision"]["status"].as_str(),
            p["rule"].as_str()
        ),
        (Some("source"), Some("matched"), Some(RULE)),
        "{p}"
    );
    let t = &p["counterpart"];
    assert_eq!(
        (
            t["directory"].as_str(),
            t["object"]["kind"].as_str(),
            t["object"]["upn"].as_str(),
            t["object"]["mail"].as_str(),
            t["object"]["sid"].as_str(),
            t["object"]["id"].as_str()
        ),
        (
            Some("fabrikam"),
            Some("user"),
            Some("jose.muller@fabrikam.test"),
            Some("jose.muller@fabrikam.test"),
            Some("S-1-5-21-1-2-3-20003"),
            Some("tjose")
        ),
        "{t}"
    );
    assert!(p["first_at"].as_i64().unwrap() > 0, "{p}");
    assert_eq!(p["decided_at"], p["first_at"]);
    let first = json!([{"profile": "users", "cycle_id": c1, "at": p["first_at"],
        "change": format!("first decided: matched to jose.muller@fabrikam.test (tjose) by rule {RULE}")}]);
    assert_eq!(jose["history"], first, "matched since cycle 1: {jose}");
    // Once SQLite's search index is whole (its indexer runs every 2 s), the report answers
    // through the decisions and says so; `every=true` looks at every object and finds them too.
    // On PostgreSQL every answer looks at every object (indexed). Catches: a quick answer passed
    // off as the whole one, or `every` ignored.
    let mut answer = Value::Null;
    for _ in 0..100 {
        answer = h.get("/report/object?q=jose.muller%40contoso.test").await;
        if answer["every_object"] == !quick {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer["every_object"], !quick, "{answer}");
    let every = h
        .get("/report/object?q=jose.muller%40contoso.test&every=true")
        .await;
    assert_eq!(every["every_object"], true, "{every}");
    assert_eq!(
        every["objects"], answer["objects"],
        "the same objects, here"
    );
    // The same decision seen from the target: its source, and the same history.
    let r = h.get("/report/object?q=tjose").await;
    let tj = report_of(&r, "fabrikam");
    assert_eq!(tj["profiles"][0]["side"], "target");
    assert_eq!(tj["profiles"][0]["counterpart"]["object"]["id"], "jose");
    assert_eq!(tj["history"], first, "{tj}");

    // Ambiguous: its candidates, with what tied them.
    let r = h.get("/report/object?q=ann.smith%40contoso.test").await;
    let ann = report_of(&r, "contoso");
    let p = &ann["profiles"][0];
    assert_eq!(p["decision"]["status"], "ambiguous");
    let cands: Vec<&str> = p["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cands, ["Smith, Ann", "Smith, Ann (HR)"], "{p}");
    assert_eq!(
        p["candidates"][1]["values"],
        json!(["ann.smith@fabrikam.test"])
    );
    assert_eq!(
        ann["history"][0]["change"],
        format!("first decided: ambiguous by rule {RULE} (2 candidates)")
    );
    // Unmatched, named by a leading `=`: its history says so from cycle 1.
    let r = h
        .get("/report/object?q=%3DHYPERLINK(%22http%3A%2F%2Fx%22)")
        .await;
    let eq = report_of(&r, "contoso");
    assert_eq!(eq["profiles"][0]["decision"]["status"], "unmatched", "{eq}");
    assert_eq!(eq["profiles"][0]["candidates"], json!([]));
    assert_eq!(eq["history"][0]["change"], "first decided: unmatched");
    assert_eq!(eq["history"][0]["cycle_id"], c1);

    // Pin Ann to one candidate: the plan changes, so the first plan's hash is stale.
    let (s, v) = h
        .call(
            Method::POST,
            "/profiles/users/overrides",
            Some(json!({"source": "ann", "target": "tann", "reason": "HR: \"same person\""})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let c2 = h.run().await;
    assert_eq!(c2["status"], "succeeded", "{c2}");
    let w2 = h.get("/profiles/users/whatif").await;
    let hash2 = w2["plan"]["hash"].as_str().unwrap().to_string();
    assert_ne!(hash2, hash1, "the pin adds Ann to the group: another write");
    let (s, v) = approve(h, json!(hash1)).await;
    assert_eq!(s, 409, "a stale hash is refused: {v}");
    assert!(v["error"].as_str().unwrap().contains(&hash2[..12]), "{v}");
    let (s, v) = approve(h, json!(hash2[..12].to_uppercase())).await;
    assert_eq!(
        (s, v["plan_hash"].as_str()),
        (200, Some(hash2.as_str())),
        "{v}"
    );
    assert_eq!(h.get("/profiles/users/whatif").await["approved"], true);

    // Ann's history: first decided in cycle 1, then how the pin changed it in cycle 2.
    let r = h.get("/report/object?q=ann.smith%40contoso.test").await;
    let ann = report_of(&r, "contoso");
    let hist = ann["history"].as_array().unwrap();
    assert_eq!(hist.len(), 2, "{hist:?}");
    assert_eq!(hist[0]["cycle_id"], c1);
    assert!(
        hist[0]["change"]
            .as_str()
            .unwrap()
            .starts_with("first decided ("),
        "{hist:?}"
    );
    assert_eq!(hist[1]["cycle_id"], c2["id"]);
    assert_eq!(
        hist[1]["change"],
        "ambiguous → matched to ann.smith@fabrikam.test (tann) by rule pinned by admin: HR: \"same person\""
    );
    let p = &ann["profiles"][0];
    assert_eq!(p["candidates"], json!([]), "matched now: {p}");
    assert!(p["decided_at"].as_i64().unwrap() >= p["first_at"].as_i64().unwrap());
    assert_eq!(p["decision"]["changed_cycle"], c2["id"]);
}

/// Would catch: a What-If whose writes are not counted by kind or do not add up to what an
/// approval authorises, a rule shown by its index, ambiguous candidates shown as bare ids, an
/// empty or short hash approving whatever plan is in force, a stale hash approved, a report
/// reading "no changes" for an object decided in cycle 1, a target shown by name only, an
/// ambiguous report without its candidates. On SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_before_approve_and_the_object_report_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (s, t) = directories();
    std::fs::write(d.join("contoso.json"), render_json(&s)).unwrap();
    std::fs::write(d.join("fabrikam.json"), render_json(&t)).unwrap();
    let h = start(d, CONFIG).await;
    scenario(&h, true).await;
    h.server.stop().await.unwrap();
}

/// The same on PostgreSQL (the candidates' and counterparts' read by id is SQL of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_before_approve_and_the_object_report_on_postgres() {
    let Some(pg) = PgSchema::new("review") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (s, t) = directories();
    std::fs::write(d.join("contoso.json"), render_json(&s)).unwrap();
    std::fs::write(d.join("fabrikam.json"), render_json(&t)).unwrap();
    let h = start_on(d, CONFIG, Some(&pg.url)).await;
    scenario(&h, false).await;
    h.server.stop().await.unwrap();
}

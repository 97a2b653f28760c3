//! Operators' overrides (pins and excludes) through the HTTP API, on file directories and on real
//! slapd directories (`FERRY_TEST_LDAP_URL`, set by scripts/test): keys that name several objects
//! refused with the candidates, pins surviving cycles, a pin broken by a deleted target, an
//! exclude, a bulk import with bad lines that applies nothing, viewers refused, every act audited.
//! Names are as directories hold them: "Surname, Given", quotes, non-ASCII, a leading `=`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use ferry_core::model::{DirObject, ObjectKind};
use ferry_core::snapshot::render_json;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use support::{Harness, start};

const PROFILE: &str = "[[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\nobject_types = [\"user\"]\n\n\
[[sync_profile.match]]\nsource_attribute = \"mail\"\ntarget_attribute = \"mail\"\ntransforms = [{ replace_suffix = [\"@contoso.test\", \"@fabrikam.test\"] }]\n";

/// (key, display name, mail, uid): the mail rule makes Ann ambiguous (two targets share her
/// mail), leaves the second "Smith, Ann", José and Seán unmatched, and matches the `=` name.
const SOURCES: &[(&str, &str, &str, u32)] = &[
    ("ann", "Smith, Ann", "ann.smith@contoso.test", 10001),
    ("ann2", "Smith, Ann", "ann.smith2@contoso.test", 10002),
    (
        "jose",
        "Müller, José \"Pepe\"",
        "jose.muller@contoso.test",
        10003,
    ),
    ("eq", "=HYPERLINK(\"http://x\")", "eq@contoso.test", 10004),
    ("sean", "O'Brien, Seán", "sean.obrien@contoso.test", 10005),
];
const TARGETS: &[(&str, &str, &str, u32)] = &[
    ("tann", "Smith, Ann", "ann.smith@fabrikam.test", 20001),
    ("tann2", "Smith, Ann (HR)", "ann.smith@fabrikam.test", 20002),
    ("tjose", "Müller, José", "jmuller@fabrikam.test", 20003),
    ("teq", "=HYPERLINK(\"http://x\")", "eq@fabrikam.test", 20004),
];

fn objects(rows: &[(&str, &str, &str, u32)], skip: &str) -> Vec<DirObject> {
    rows.iter()
        .filter(|r| r.0 != skip)
        .map(|&(id, name, mail, uid)| {
            let mut o = DirObject::new(ObjectKind::User, id, name);
            o.mail = Some(mail.into());
            o.uid_number = Some(uid);
            o.sid = Some(format!("S-1-5-21-1-2-3-{uid}"));
            o
        })
        .collect()
}

/// Where the two directories are, and how a test deletes a target user.
enum Dirs {
    Files(std::path::PathBuf),
    Ldap {
        ldap: ldap3::Ldap,
        target_ou: String,
    },
}

impl Dirs {
    async fn delete_target(&mut self, key: &str) {
        match self {
            Dirs::Files(d) => {
                std::fs::write(d.join("fabrikam.json"), render_json(&objects(TARGETS, key)))
                    .unwrap();
            }
            Dirs::Ldap { ldap, target_ou } => {
                ldap.delete(&format!("uid={key},{target_ou}"))
                    .await
                    .unwrap()
                    .success()
                    .unwrap();
                // An LDAP delta import does not see deletions; the next full import does.
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            }
        }
    }
}

async fn post(h: &Harness, path: &str, body: Value) -> (u16, Value) {
    h.call(Method::POST, path, Some(body)).await
}

async fn import(h: &Harness, csv: &str) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}/api/v1/profiles/users/overrides/import", h.url))
        .bearer_auth(&h.token)
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The decision of the source whose mail is `mail`.
async fn decision(h: &Harness, mail: &str) -> Value {
    let v = h
        .get(&format!("/profiles/users/whatif?q={mail}&limit=5"))
        .await;
    let d = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source_mail"] == mail)
        .cloned()
        .unwrap_or_else(|| panic!("no decision for {mail}: {v}"));
    let rule = d["rule"]
        .as_u64()
        .map(|r| v["plan"]["rules"][r as usize].clone());
    let mut d = d;
    d["rule_text"] = rule.unwrap_or(Value::Null);
    d
}

async fn scenario(h: &Harness, dirs: &mut Dirs) {
    let c1 = h.run().await;
    assert_eq!(c1["status"], "succeeded", "{c1}");
    let plan1 = h.get("/profiles/users/whatif").await["plan"]["hash"].clone();
    let ann = decision(h, "ann.smith@contoso.test").await;
    assert_eq!(ann["status"], "ambiguous", "{ann}");

    // A key that names two objects is refused with both candidates.
    let (s, v) = post(
        h,
        "/profiles/users/overrides",
        json!({"source": "Smith, Ann", "exclude": true}),
    )
    .await;
    let e = v["error"].as_str().unwrap();
    assert_eq!(s, 400, "{v}");
    assert!(
        e.contains("names 2 users of directory contoso")
            && e.contains("ann.smith@contoso.test")
            && e.contains("ann.smith2@contoso.test"),
        "{e}"
    );
    let (s, v) = post(
        h,
        "/profiles/users/overrides",
        json!({"source": "ann.smith@contoso.test", "target": "ann.smith@fabrikam.test"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("names 2 users of directory fabrikam"),
        "{v}"
    );
    // Pin Ann to the candidate that is not "(HR)": ids from the ambiguous decision.
    let hr = h.get("/report/object?q=Smith%2C%20Ann%20(HR)").await["objects"][0]["object"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pick = ann["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .find(|c| *c != hr)
        .unwrap();
    let (s, v) = post(
        h,
        "/profiles/users/overrides",
        json!({"source": "ann.smith@contoso.test", "target": pick, "reason": "HR ticket 4711: \"same person\""}),
    )
    .await;
    assert_eq!(
        (s, v["target_name"].as_str()),
        (201, Some("Smith, Ann")),
        "{v}"
    );
    let (s, v) = post(
        h,
        "/profiles/users/overrides",
        json!({"source": "sean.obrien@contoso.test", "exclude": true, "reason": "left the company"}),
    )
    .await;
    assert_eq!(
        (s, v["source_name"].as_str()),
        (201, Some("O'Brien, Seán")),
        "{v}"
    );

    // A bulk import with bad lines applies nothing and names each bad line.
    let (s, v) = import(
        h,
        "source,target,exclude,reason\n\
         jose.muller@contoso.test,jmuller@fabrikam.test,,\"Müller, José: renamed\"\n\
         nobody@contoso.test,,true,\n\
         \"Smith, Ann\",jmuller@fabrikam.test,,\n\
         eq@contoso.test,,maybe,\n",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("line 5: exclude: `maybe` is not true or false"),
        "{e}"
    );
    let overrides = h.get("/profiles/users/overrides").await;
    assert_eq!(overrides.as_array().unwrap().len(), 2, "{overrides}");
    // With the CSV error fixed, the look-ups are what is wrong: lines 3 and 4, nothing applied.
    let (s, v) = import(
        h,
        "source,target,exclude,reason\n\
         jose.muller@contoso.test,jmuller@fabrikam.test,,\"Müller, José: renamed\"\n\
         nobody@contoso.test,,true,\n\
         \"Smith, Ann\",jmuller@fabrikam.test,,\n",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("line 3: source: no user of directory contoso has `nobody@contoso.test`")
            && e.contains("line 4: source: `Smith, Ann` names 2 users"),
        "{e}"
    );
    assert_eq!(
        h.get("/profiles/users/overrides").await,
        overrides,
        "a refused import applied nothing"
    );
    let (s, v) = import(
        h,
        "source,target,reason\njose.muller@contoso.test,jmuller@fabrikam.test,\"Müller, José: renamed\"\n",
    )
    .await;
    assert_eq!((s, v["pins"].as_u64()), (200, Some(1)), "{v}");

    // The next cycle: pins decide before the rules and say so; the exclude is counted.
    let c2 = h.run().await;
    assert_eq!(c2["status"], "succeeded", "{c2}");
    let ann = decision(h, "ann.smith@contoso.test").await;
    assert_eq!(ann["status"], "matched");
    assert_eq!(ann["target_id"].as_str(), Some(pick.as_str()));
    assert_eq!(
        ann["rule_text"],
        "pinned by admin: HR ticket 4711: \"same person\""
    );
    let jose = decision(h, "jose.muller@contoso.test").await;
    assert_eq!(
        (jose["status"].as_str(), jose["rule_text"].as_str()),
        (
            Some("matched"),
            Some("pinned by admin: Müller, José: renamed")
        )
    );
    let sean = decision(h, "sean.obrien@contoso.test").await;
    assert_eq!(sean["status"], "excluded");
    let w = h.get("/profiles/users/whatif").await;
    assert_eq!(w["plan"]["counts"]["excluded"], 1, "{w}");
    assert_ne!(
        w["plan"]["hash"], plan1,
        "an override changes the plan, so an approval of the old one does not hold"
    );
    let warnings = h.get("/logs?profile=users&level=warning&limit=1000").await;
    let about_sean = |cycle: &Value| {
        warnings
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["cycle_id"] == *cycle)
            .filter(|l| l["message"].as_str().unwrap().contains("sean.obrien"))
            .count()
    };
    assert_eq!(about_sean(&c1["id"]), 1, "unmatched in cycle 1: {warnings}");
    assert_eq!(about_sean(&c2["id"]), 0, "excluded in cycle 2: {warnings}");
    // The exports carry the rule, quotes and commas intact.
    let csv = h.text("/translation/export?format=csv&profile=users").await;
    assert!(
        csv.contains("\"pinned by admin: HR ticket 4711: \"\"same person\"\"\""),
        "{csv}"
    );

    // Pins survive cycles: a third cycle changes nothing.
    let c3 = h.run().await;
    assert_eq!(c3["status"], "succeeded");
    let again = decision(h, "ann.smith@contoso.test").await;
    assert_eq!(
        (again["status"].clone(), again["changed_cycle"].clone()),
        (json!("matched"), c2["id"].clone())
    );

    // A pin whose target is gone is a visible error decision, not in the table.
    dirs.delete_target("tjose").await;
    let c4 = h.run().await;
    assert_eq!(c4["status"], "succeeded", "{c4}");
    let jose = decision(h, "jose.muller@contoso.test").await;
    assert_eq!(jose["status"], "error", "{jose}");
    assert!(
        jose["rule_text"]
            .as_str()
            .unwrap()
            .contains("cannot hold: target `"),
        "{jose}"
    );
    let table = h.get("/translation?limit=1000").await;
    assert!(
        !table.to_string().contains("jose.muller"),
        "a broken pin is not translated: {table}"
    );

    // Unpin: the rules decide again.
    let (s, _) = h
        .call(
            Method::DELETE,
            "/profiles/users/overrides/ann.smith%40contoso.test",
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, v) = h
        .call(
            Method::DELETE,
            "/profiles/users/overrides/ann.smith%40contoso.test",
            None,
        )
        .await;
    assert_eq!(s, 404, "{v}");
    h.run().await;
    assert_eq!(
        decision(h, "ann.smith@contoso.test").await["status"],
        "ambiguous"
    );

    // Every act is in the audit trail with its operator and reason.
    let audit = h.get("/audit?limit=100").await.to_string();
    for want in [
        "override.pin",
        "HR ticket 4711",
        "override.exclude",
        "left the company",
        "override.import",
        "override.remove",
    ] {
        assert!(audit.contains(want), "{want} not audited: {audit}");
    }
}

/// Would catch: overrides that cannot be entered, ambiguous keys taken as the first match, a
/// partial bulk import, pins lost on the next cycle, a broken pin dropped silently or still
/// translated, an exclude warned about, an override that leaves the plan hash (so an approval)
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_on_file_directories() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("contoso.json"), render_json(&objects(SOURCES, ""))).unwrap();
    std::fs::write(d.join("fabrikam.json"), render_json(&objects(TARGETS, ""))).unwrap();
    let cfg = format!(
        "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n{PROFILE}"
    );
    let h = start(d, &cfg).await;
    viewers_and_tenant_admins_may_not_override(&h).await;
    scenario(&h, &mut Dirs::Files(d.to_path_buf())).await;
    h.server.stop().await.unwrap();
}

/// Would catch (from an attack on the first version): a configuration override signed with an
/// operator's name, operators named `config` or with a line break, invisible characters in a
/// reason, a key whose case decides whether it resolves, an import that reports only the first
/// kind of bad line, an unpin of the configuration's override by another key answered 404, an
/// error classed as a conflict by its text, a viewer's DELETE reaching a handler because its
/// path ends in `/sessions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_hold_against_hostile_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("contoso.json"), render_json(&objects(SOURCES, ""))).unwrap();
    std::fs::write(d.join("fabrikam.json"), render_json(&objects(TARGETS, ""))).unwrap();
    let files = "[[directory]]\nname = \"contoso\"\nkind = \"file\"\npath = \"contoso.json\"\n\n[[directory]]\nname = \"fabrikam\"\nkind = \"file\"\npath = \"fabrikam.json\"\n\n";
    let config_override = "\n[[sync_profile.override]]\nsource = \"eq@contoso.test\"\nexclude = true\nreason = \"test account\"\n";
    // ferry.toml may not sign an override with someone's name.
    let signed = format!("{files}{PROFILE}{config_override}operator = \"vera\"\n");
    let e = ferry_core::config::Config::parse(&signed, "ferry.toml").unwrap_err();
    assert!(
        e.path == "sync_profile[0].override[0].operator" && e.message.contains("`vera`"),
        "{e}"
    );
    let server = start(d, &format!("{files}{PROFILE}{config_override}")).await;
    server.run().await;
    let h = &server;
    let over = |body: Value| post(h, "/profiles/users/overrides", body);
    // The configuration's override, by its key, by the object's id and by its SID: 409.
    for key in ["eq@contoso.test", "eq", "s-1-5-21-1-2-3-10004"] {
        let (s, v) = over(json!({"source": key, "exclude": true})).await;
        assert_eq!(s, 409, "{key}: {v}");
        let (s, v) = h
            .call(
                Method::DELETE,
                &format!("/profiles/users/overrides/{key}"),
                None,
            )
            .await;
        assert_eq!(s, 409, "unpin {key}: {v}");
    }
    // An error whose text mentions the configuration is still a 400.
    let (s, _) =
        over(json!({"source": "nobody overridden by the configuration", "exclude": true})).await;
    assert_eq!(s, 400);
    // Invisible characters in a reason.
    for reason in [
        "ok \u{202e}gnp.exe",
        "zero\u{200b}width",
        "line\u{2028}sep",
        "bom\u{feff}",
    ] {
        let (s, v) =
            over(json!({"source": "ann.smith2@contoso.test", "exclude": true, "reason": reason}))
                .await;
        assert_eq!(s, 400, "{reason:?}: {v}");
    }
    // A SID in lower case names its object, as a plan resolves it.
    let (s, v) = over(json!({"source": "s-1-5-21-1-2-3-10002", "exclude": true})).await;
    assert_eq!((s, v["source"].as_str()), (201, Some("ann2")), "{v}");
    // An admin signed in with a password signs with its name, not its session token's
    // (`session:olga`), in the override and the audit trail.
    let pw = "olga's long password";
    let (s, v) = post_to(h, "/operators", json!({"name": "olga", "password": pw})).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post_to(h, "/sessions", json!({"name": "olga", "password": pw})).await;
    assert!(s == 200 || s == 201, "{v}");
    let olga = v["token"].as_str().unwrap().to_string();
    let (s, v) = h
        .call_as(
            &olga,
            Method::POST,
            "/profiles/users/overrides",
            Some(json!({"source": "sean.obrien@contoso.test", "exclude": true, "reason": "left"})),
        )
        .await;
    assert_eq!((s, v["operator"].as_str()), (201, Some("olga")), "{v}");
    // Every admin endpoint names her so (a profile change was audited as `session:olga`).
    let (s, v) = h
        .call_as(
            &olga,
            Method::PUT,
            "/profiles/p3",
            Some(json!({"name": "p3", "source": "contoso", "target": "fabrikam", "mode": "match-only"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let audit = h.get("/audit?limit=5").await;
    assert_eq!(
        (audit[0]["action"].as_str(), audit[0]["actor"].as_str()),
        (Some("profile.add"), Some("olga")),
        "{audit}"
    );
    // Operators cannot be named `config`, nor carry a line break or a bidi override.
    for name in ["config", "a\nb", "eve\u{202e}nimda"] {
        let (s, v) = post_to(
            h,
            "/operators",
            json!({"name": name, "password": "a long enough password"}),
        )
        .await;
        assert_eq!(s, 400, "{name:?}: {v}");
    }
    // A console profile's overrides are the configuration's: no operator's name on them.
    let (s, v) = h
        .call(
            Method::PUT,
            "/profiles/p2",
            Some(json!({"name": "p2", "source": "contoso", "target": "fabrikam", "mode": "match-only",
                "override": [{"source": "jose.muller@contoso.test", "target": "tjose", "operator": "vera"}]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("override[0].operator"),
        "{v}"
    );
    let (s, v) = h
        .call(
            Method::PUT,
            "/profiles/p2",
            Some(json!({"name": "p2", "source": "contoso", "target": "fabrikam", "mode": "match-only",
                "override": [{"source": "jose.muller@contoso.test", "target": "tjose", "reason": "renamed"}]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let audit = h.get("/audit?limit=20").await.to_string();
    assert!(
        audit.contains("override jose.muller@contoso.test → tjose: renamed"),
        "a profile's overrides are in its audit line: {audit}"
    );
    // An import names every bad line, whichever check finds it, in file order.
    let (s, v) = import(
        h,
        "source,exclude\nann.smith@contoso.test,maybe\nnobody@contoso.test,true\nsean.obrien@contoso.test,true\n\"Smith, Ann\",true\nSEAN.OBRIEN@contoso.test,yes\n",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let lines: Vec<&str> = v["error"].as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for (l, want) in lines.iter().zip([
        "line 2: exclude",
        "line 3: source: no user",
        "line 5: source: `Smith, Ann` names 2 users",
        "line 6: source: `SEAN.OBRIEN@contoso.test` is overridden on line 4",
    ]) {
        assert!(l.starts_with(want), "{l} / {want}");
    }
    // A viewer's DELETE of a path that merely ends in /sessions is refused as a write.
    let (_, v) = post_to(
        h,
        "/operators",
        json!({"name": "vic", "viewer": true, "password": "a viewer's password"}),
    )
    .await;
    let (s, _) = h
        .call_as(
            v["token"].as_str().unwrap(),
            Method::DELETE,
            "/moves/sessions",
            None,
        )
        .await;
    assert_eq!(s, 403);
    server.server.stop().await.unwrap();
}

async fn post_to(h: &Harness, path: &str, body: Value) -> (u16, Value) {
    h.call(Method::POST, path, Some(body)).await
}

async fn viewers_and_tenant_admins_may_not_override(h: &Harness) {
    let (s, v) = post(
        h,
        "/operators",
        json!({"name": "vera", "viewer": true, "password": "a viewer's password"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let viewer = v["token"].as_str().unwrap().to_string();
    // A tenant admin acts on its tenant's environments only: overrides need a ferry admin.
    let (s, v) = h
        .call(
            Method::PUT,
            "/tenants/contoso",
            Some(json!({"id": "contoso", "name": "Contoso"})),
        )
        .await;
    assert!(s == 200 || s == 201, "{v}");
    let (s, v) = post(
        h,
        "/operators",
        json!({"name": "tina", "tenant": "contoso", "password": "a tenant admin's password"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let tenant_admin = v["token"].as_str().unwrap().to_string();
    assert_eq!(
        h.call_as(&viewer, Method::GET, "/profiles/users/overrides", None)
            .await
            .0,
        200
    );
    for (m, path) in [
        (Method::POST, "/profiles/users/overrides"),
        (Method::POST, "/profiles/users/overrides/import"),
        (
            Method::DELETE,
            "/profiles/users/overrides/eq%40contoso.test",
        ),
    ] {
        for token in [&viewer, &tenant_admin] {
            let (s, v) = h
                .call_as(
                    token,
                    m.clone(),
                    path,
                    Some(json!({"source": "eq@contoso.test", "exclude": true})),
                )
                .await;
            assert_eq!(s, 403, "{path}: {v}");
        }
    }
    assert_eq!(
        h.call_as(
            &tenant_admin,
            Method::GET,
            "/profiles/users/overrides",
            None
        )
        .await
        .0,
        403,
        "a tenant admin does not read profiles either"
    );
    assert!(
        h.get("/profiles/users/overrides")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// The same on two real slapd directories (OpenLDAP: ids are entryUUIDs, keys are mail and cn).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_on_slapd_directories() {
    let Some((url, pw)) = support::slapd() else {
        return;
    };
    let (mut src, src_ou) = ou(&url, &pw, "contoso").await;
    let (mut tgt, tgt_ou) = ou(&url, &pw, "fabrikam").await;
    for (ldap, base, rows) in [(&mut src, &src_ou, SOURCES), (&mut tgt, &tgt_ou, TARGETS)] {
        for &(uid, cn, mail, n) in rows {
            add_user(ldap, base, uid, cn, mail, n).await;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let ldap = |name: &str, org: &str, base: &str| {
        format!(
            "[[directory]]\nname = \"{name}\"\nkind = \"ldap\"\nurl = \"{url}\"\nbind_dn = \"cn=admin,dc={org},dc=test\"\nbind_password = \"{pw}\"\nbase_dn = \"{base}\"\nobject_types = [\"user\"]\nfull_import_every = \"1s\"\n\n"
        )
    };
    let cfg = format!(
        "{}{}{PROFILE}",
        ldap("contoso", "contoso", &src_ou),
        ldap("fabrikam", "fabrikam", &tgt_ou)
    );
    let h = start(dir.path(), &cfg).await;
    scenario(
        &h,
        &mut Dirs::Ldap {
            ldap: tgt,
            target_ou: tgt_ou,
        },
    )
    .await;
    h.server.stop().await.unwrap();
}

async fn ou(url: &str, pw: &str, org: &str) -> (ldap3::Ldap, String) {
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(url).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(&format!("cn=admin,dc={org},dc=test"), pw)
        .await
        .unwrap()
        .success()
        .unwrap();
    let ou = format!("overrides{}", std::process::id());
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

async fn add_user(ldap: &mut ldap3::Ldap, base: &str, uid: &str, cn: &str, mail: &str, n: u32) {
    let n = n.to_string();
    ldap.add(
        &format!("uid={uid},{base}"),
        vec![
            (
                "objectClass",
                HashSet::from(["inetOrgPerson", "posixAccount"]),
            ),
            ("uid", HashSet::from([uid])),
            ("cn", HashSet::from([cn])),
            ("displayName", HashSet::from([cn])),
            ("sn", HashSet::from(["x"])),
            ("mail", HashSet::from([mail])),
            ("uidNumber", HashSet::from([n.as_str()])),
            ("gidNumber", HashSet::from(["100"])),
            ("homeDirectory", HashSet::from(["/home/x"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
}

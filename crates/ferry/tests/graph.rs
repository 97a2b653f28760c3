//! The seed's scenario end to end: two Microsoft Entra tenants (each a local Graph simulator)
//! synced by a `ferry server` process through `ferry sync run`: match, What-If, approval, export
//! (users created with initial passwords for the operator only), devices translated, a deletion
//! seen by the next delta, throttling logged, and a wrong secret failing the cycle cleanly.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
use common::*;
use ferry_graph_sim::{GraphSim, Res, SimOptions};
use serde_json::Value;

fn config(contoso: &GraphSim, fabrikam: &GraphSim) -> String {
    let dir = |name: &str, s: &GraphSim, secret: &str| {
        format!(
            "[[directory]]\nname = \"{name}\"\nkind = \"graph\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\n{secret}\nobject_types = [\"user\", \"group\", \"device\"]\nlogin_url = \"{}\"\ngraph_url = \"{}\"\n\n",
            s.options().tenant,
            s.options().client_id,
            s.url(),
            s.url()
        )
    };
    format!(
        "{}{}\
         [[sync_profile]]\nname = \"users\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"create\"\nobject_types = [\"user\"]\n\
         [[sync_profile.match]]\nsource_attribute = \"mail\"\ntarget_attribute = \"mail\"\ntransforms = [\"lowercase\", {{ replace_suffix = [\"@contoso.test\", \"@fabrikam.test\"] }}]\n\
         [[sync_profile.attribute]]\ntarget = \"upn\"\nsource = \"upn\"\ntransforms = [{{ replace_suffix = [\"@contoso.test\", \"@fabrikam.test\"] }}]\n\
         [[sync_profile.attribute]]\ntarget = \"mail\"\nsource = \"mail\"\ntransforms = [{{ replace_suffix = [\"@contoso.test\", \"@fabrikam.test\"] }}]\n\
         [[sync_profile.attribute]]\ntarget = \"name\"\nsource = \"name\"\n\
         [[sync_profile.attribute]]\ntarget = \"employeeId\"\nsource = \"employeeId\"\n\n\
         [[sync_profile]]\nname = \"devices\"\nsource = \"contoso\"\ntarget = \"fabrikam\"\nmode = \"match-only\"\nobject_types = [\"device\"]\n\
         [[sync_profile.match]]\nsource_attribute = \"name\"\ntarget_attribute = \"name\"\n",
        dir(
            "contoso",
            contoso,
            "client_secret_file = \"contoso.secret\""
        ),
        dir("fabrikam", fabrikam, ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_to_entra_through_the_cli() {
    let contoso = GraphSim::start(
        SimOptions {
            tenant: "c0c0c0c0-0000-4000-8000-000000000001".into(),
            domain: "contoso.test".into(),
            client_secret: "contoso-secret".into(),
            ..SimOptions::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let fabrikam = GraphSim::start(
        SimOptions {
            tenant: "fabfabfa-0000-4000-8000-000000000002".into(),
            domain: "fabrikam.test".into(),
            client_secret: "fabrikam-secret".into(),
            throttle_every: 7,
            retry_after: "0.05".into(),
            ..SimOptions::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    // 300 people in the source, 280 of them already in the target; devices by the same names.
    contoso.populate(0xa1, 300, 4, 12);
    fabrikam.populate(0xb2, 280, 0, 12);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("contoso.secret"), "contoso-secret\n").unwrap();
    std::fs::write(dir.path().join("ferry.toml"), config(&contoso, &fabrikam)).unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("ferry.toml");
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let secret_env = [("FERRY_DIRECTORY_FABRIKAM_CLIENT_SECRET", "fabrikam-secret")];
    let srv = tokio::task::block_in_place(|| ServerProc::start(&args, &secret_env));
    let token = admin_token(&data);
    let env = srv.cli_env(&token);
    let run = |args: &[&str]| {
        let o = tokio::task::block_in_place(|| ferry(args, &env));
        let t = text(&o);
        assert!(o.status.success(), "ferry {args:?}: {t}");
        t
    };

    let t = run(&["directory", "test", "fabrikam"]);
    assert!(t.contains("can read users (280)"), "{t}");
    // The tenant pre-flight of the (permissive) simulated tenant, through the CLI.
    let t = run(&["directory", "preflight", "fabrikam"]);
    assert!(
        t.contains("✓ entra-join-allowed") && t.contains("pre-flight OK"),
        "{t}"
    );

    // 1. First cycle: 280 matched, 20 unmatched, a What-If with 20 creates awaiting approval.
    let t = run(&["sync", "run", "users", "--wait"]);
    assert!(t.contains("succeeded"), "{t}");
    let w: Value = serde_json::from_str(&run(&["sync", "whatif", "users", "--json"])).unwrap();
    let counts = &w["plan"]["counts"];
    assert_eq!(counts["matched"], 280, "{counts}");
    assert_eq!(counts["unmatched"], 20, "{counts}");
    assert_eq!(w["writes_total"], 20, "{counts}");
    assert_eq!(w["needs_approval"], true);
    assert_eq!(
        fabrikam.objects(Res::Users).len(),
        280,
        "nothing written before approval"
    );

    // 2. Approve; the next run creates the 20 users and translates them in the same cycle.
    run(&["sync", "approve", "users"]);
    let t = run(&["sync", "run", "users", "--wait"]);
    assert!(t.contains("exported 20 of 20"), "{t}");
    let created: Vec<Value> = fabrikam
        .objects(Res::Users)
        .into_iter()
        .filter(|u| {
            let upn = u["userPrincipalName"].as_str().unwrap();
            let n: u32 = upn[4..upn.find('@').unwrap()].parse().unwrap();
            n >= 280
        })
        .collect();
    assert_eq!(created.len(), 20, "user280..299 created");
    assert_eq!(created[0]["employeeId"].as_str().unwrap().len(), 8);
    let table: Value = serde_json::from_str(&run(&[
        "translation",
        "export",
        "--profile",
        "users",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        table.as_array().unwrap().len(),
        300,
        "every user translated"
    );
    // The initial passwords are in a 0600 file for the operator, not in the logs.
    let pw_dir = data.join("initial-passwords");
    let files: Vec<_> = std::fs::read_dir(&pw_dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let meta = files[0].metadata().unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let csv = std::fs::read_to_string(files[0].path()).unwrap();
    assert_eq!(csv.lines().count(), 21, "{csv}");
    let a_password = csv
        .lines()
        .nth(1)
        .unwrap()
        .rsplit(',')
        .next()
        .unwrap()
        .to_string();
    let logs = run(&["logs", "--profile", "users", "--json"]);
    assert!(
        !logs.contains(&a_password),
        "a password reached the message log"
    );
    assert!(logs.contains("initial-passwords"), "{logs}");
    // Throttling on the target was retried and recorded.
    assert!(fabrikam.stats().throttled > 0);
    assert!(logs.contains("throttled"), "{logs}");

    // 3. A bulk enrolment token for the target: stored, listed, warned about near its expiry.
    let ppkg = dir.path().join("Fabrikam join.ppkg");
    std::fs::write(&ppkg, b"provisioning package bytes").unwrap();
    let day = |offset: i64| {
        (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * offset))
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string()
    };
    let (created, expires) = (day(-160), day(15));
    let t = run(&[
        "directory",
        "token",
        "add",
        "fabrikam",
        "--file",
        ppkg.to_str().unwrap(),
        "--package-upn",
        "package_5f0c@fabrikam.onmicrosoft.com",
        "--created",
        &created,
        "--expires",
        &expires,
    ]);
    assert!(t.contains("expiring") && t.contains("in 1"), "{t}");
    let o = tokio::task::block_in_place(|| {
        ferry(
            &[
                "directory",
                "token",
                "add",
                "fabrikam",
                "--file",
                ppkg.to_str().unwrap(),
                "--package-upn",
                "package_5f0c@fabrikam.onmicrosoft.com",
                "--created",
                &created,
                "--expires",
                &day(40),
            ],
            &env,
        )
    });
    assert!(
        !o.status.success() && text(&o).contains("180 days"),
        "{}",
        text(&o)
    );
    let list = run(&["directory", "token", "list", "fabrikam", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["file_name"], "Fabrikam join.ppkg");
    assert_eq!(list[0]["size"], 26);
    run(&["sync", "run", "users", "--wait"]);
    let logs = run(&["logs", "--profile", "users", "--level", "warning"]);
    assert!(
        logs.contains("bulk enrolment token #1 of `fabrikam`"),
        "{logs}"
    );
    let t = run(&["directory", "token", "revoke", "1"]);
    assert!(t.contains("package_5f0c@fabrikam.onmicrosoft.com"), "{t}");

    // 4. Devices: translated by name, with both device ids.
    run(&["sync", "run", "devices", "--wait"]);
    let devices: Value = serde_json::from_str(&run(&[
        "translation",
        "export",
        "--profile",
        "devices",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 12, "{devices}");
    for d in devices.as_array().unwrap() {
        let (s, t) = (
            d["source_device_id"].as_str().unwrap(),
            d["target_device_id"].as_str().unwrap(),
        );
        assert!(
            s.starts_with("000000a1") && t.starts_with("000000b2"),
            "{d}"
        );
    }

    // 5. A user deleted in the source leaves the table at the next (delta) cycle.
    let gone = contoso
        .objects(Res::Users)
        .into_iter()
        .find(|u| u["displayName"] == "User 17")
        .unwrap();
    contoso.delete(Res::Users, gone["id"].as_str().unwrap(), false);
    let before = contoso.stats().graph_requests;
    run(&["sync", "run", "users", "--wait"]);
    let table: Value = serde_json::from_str(&run(&[
        "translation",
        "export",
        "--profile",
        "users",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(table.as_array().unwrap().len(), 299);
    // A delta, not a re-read: a handful of requests, not 300 users' worth of pages.
    assert!(contoso.stats().graph_requests - before < 10);
    let logs = run(&["logs", "--profile", "users"]);
    assert!(logs.contains("delta import of `contoso`"), "{logs}");
    drop(srv);

    // 6. A wrong secret fails the cycle with the AADSTS code; the table stays.
    std::fs::write(dir.path().join("contoso.secret"), "wrong\n").unwrap();
    let srv = tokio::task::block_in_place(|| ServerProc::start(&args, &secret_env));
    let env = srv.cli_env(&token);
    let o = tokio::task::block_in_place(|| ferry(&["sync", "run", "users", "--wait"], &env));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    let o = tokio::task::block_in_place(|| {
        ferry(&["logs", "--profile", "users", "--level", "error"], &env)
    });
    let t = text(&o);
    assert!(t.contains("AADSTS7000215"), "{t}");
    let o = tokio::task::block_in_place(|| {
        ferry(
            &[
                "translation",
                "export",
                "--profile",
                "users",
                "--format",
                "json",
            ],
            &env,
        )
    });
    let table: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(table.as_array().unwrap().len(), 299);
}

/// Catches: a long cycle that says nothing of how far its imports got (the figure `ferry sync
/// run --wait` and the console show while it runs), a count that goes backwards or beyond what
/// the directories hold, and a stale figure left on the cycle once it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cycle_says_how_many_objects_it_has_read() {
    // Small pages, every second request throttled for 0.3 s: the imports take seconds.
    let sim = |tenant: &str, domain: &str, secret: &str| SimOptions {
        tenant: tenant.into(),
        domain: domain.into(),
        client_secret: secret.into(),
        throttle_every: 2,
        retry_after: "0.3".into(),
        ..SimOptions::default()
    };
    let contoso = GraphSim::start(
        sim(
            "c0c0c0c0-0000-4000-8000-000000000011",
            "contoso.test",
            "contoso-secret",
        ),
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let fabrikam = GraphSim::start(
        sim(
            "fabfabfa-0000-4000-8000-000000000012",
            "fabrikam.test",
            "fabrikam-secret",
        ),
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    contoso.populate(0xa1, 600, 0, 0);
    fabrikam.populate(0xb2, 400, 0, 0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("contoso.secret"), "contoso-secret\n").unwrap();
    let cfg = config(&contoso, &fabrikam).replace(
        "object_types = [\"user\", \"group\", \"device\"]\n",
        "object_types = [\"user\"]\npage_size = 50\n",
    );
    // Users only: the devices profile goes.
    let cfg = cfg[..cfg.find("[[sync_profile]]\nname = \"devices\"").unwrap()].to_string();
    std::fs::write(dir.path().join("ferry.toml"), cfg).unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("ferry.toml");
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let secret_env = [("FERRY_DIRECTORY_FABRIKAM_CLIENT_SECRET", "fabrikam-secret")];
    let srv = tokio::task::block_in_place(|| ServerProc::start(&args, &secret_env));
    let token = admin_token(&data);
    let env = srv.cli_env(&token);
    let run = |args: &[&str]| {
        let o = tokio::task::block_in_place(|| ferry(args, &env));
        assert!(o.status.success(), "ferry {args:?}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    };

    run(&["sync", "run", "users"]);
    let mut seen: Vec<String> = Vec::new();
    let last = loop {
        let list: Value = serde_json::from_str(&run(&[
            "sync",
            "cycles",
            "--profile",
            "users",
            "--limit",
            "1",
            "--json",
        ]))
        .unwrap();
        let c = list[0].clone();
        if c["status"] != "running" {
            break c;
        }
        if let Some(p) = c["progress"].as_str()
            && seen.last().map(String::as_str) != Some(p)
        {
            seen.push(p.to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(last["status"], "succeeded", "{last}");
    assert!(
        last["progress"].is_null(),
        "a stale figure on an ended cycle: {last}"
    );
    // "read 150 source and 100 target objects", as the imports go.
    let reads: Vec<(u64, u64)> = seen
        .iter()
        .filter_map(|p| {
            let rest = p.strip_prefix("read ")?;
            let (s, rest) = rest.split_once(" source and ")?;
            let t = rest.strip_suffix(" target objects")?;
            let n = |x: &str| x.replace(',', "").parse::<u64>().unwrap();
            Some((n(s), n(t)))
        })
        .collect();
    assert!(
        reads.iter().any(|&(s, _)| s > 0 && s < 600),
        "no figure while the source was being read: {seen:?}"
    );
    for w in reads.windows(2) {
        assert!(
            w[0].0 <= w[1].0 && w[0].1 <= w[1].1,
            "a count went back: {seen:?}"
        );
    }
    assert!(
        reads.iter().all(|&(s, t)| s <= 600 && t <= 400),
        "more read than the directories hold: {seen:?}"
    );
}

//! ferry's LDAP import rate against a real slapd: imports the users under a base DN several times
//! and prints objects/s (best run). `scripts/bench-ldap` starts slapd with 100,000 users, runs this
//! and `ldapsearch -E pr=1000/noprompt` on the same server in the same run.
//!
//! `ldap-import URL BIND_DN PASSWORD BASE_DN [RUNS]`

use ferry_bench::cpu_seconds;
use ferry_core::ObjectKind;
use ferry_core::config::{LdapDirectory, LdapFlavor, Secret};
use ferry_core::duration::HumanDuration;
use ferry_directory::Connector;
use ferry_directory::ldap::LdapConnector;
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: ldap-import URL BIND_DN PASSWORD BASE_DN [RUNS]");
        std::process::exit(2);
    }
    let runs: usize = a.get(5).and_then(|r| r.parse().ok()).unwrap_or(3);
    let cfg = LdapDirectory {
        name: "bench".into(),
        url: a[1].clone(),
        bind_dn: Some(a[2].clone()),
        bind_password: None,
        bind_password_file: None,
        base_dn: a[4].clone(),
        object_types: vec![ObjectKind::User],
        user_filter: Some("(objectClass=inetOrgPerson)".into()),
        group_filter: None,
        device_filter: None,
        flavor: LdapFlavor::Openldap,
        page_size: 1000,
        full_import_every: HumanDuration(Duration::from_secs(86_400)),
        timeout: HumanDuration(Duration::from_secs(300)),
        user_container: None,
        group_container: None,
        user_object_classes: None,
        group_object_classes: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let conn = LdapConnector::new(cfg, Some(Secret::new(a[3].clone())));
    let mut best = f64::MAX;
    let mut n = 0;
    let mut cpu = 0.0;
    for _ in 0..runs {
        let c0 = cpu_seconds();
        let t = Instant::now();
        let imp = rt
            .block_on(conn.import(&[ObjectKind::User], None))
            .expect("import");
        let el = t.elapsed().as_secs_f64();
        if el < best {
            best = el;
            cpu = cpu_seconds() - c0;
        }
        n = imp.objects.len();
    }
    println!(
        "ferry: {n} users in {best:.3}s = {:.0} objects/s (best of {runs}; client CPU {cpu:.2}s)",
        n as f64 / best
    );
}

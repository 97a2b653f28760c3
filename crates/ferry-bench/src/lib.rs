//! Shared helpers of the benchmark programs.

pub mod browser;

/// mimalloc: ferry's hot paths (LDAP decoding, snapshot parsing, matching) allocate many small
/// strings, where glibc's allocator showed as 40% of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Peak resident set size of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system) of this process so far, in seconds.
pub fn cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

/// CPU time (user + system) of a process by pid (or `self`), in seconds.
pub fn process_cpu_seconds(pid: &str) -> f64 {
    // /proc/PID/stat fields 14 and 15 are utime and stime in clock ticks (100 per second on Linux).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(") ")?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Writes `contoso.json` and `fabrikam.json` into `dir`: the sample's `users` source users (with
/// their groups and devices when asked) and its target, padded with new hires up to as many users.
/// Returns the sample's expected matches.
pub fn write_user_snapshots(
    dir: &std::path::Path,
    users: usize,
    with_groups_and_devices: bool,
) -> ferry_demo::Expected {
    use ferry_core::ObjectKind;
    use ferry_core::model::DirObject;
    use ferry_demo as sample;
    let s = sample::generate(users, with_groups_and_devices, 1);
    let mut target = s.target;
    let mut rng = sample::Rng::new(99);
    let have = target.iter().filter(|o| o.kind == ObjectKind::User).count();
    for n in have..users {
        let mut o = DirObject::new(ObjectKind::User, rng.guid(), format!("Pad {n}"));
        o.mail = Some(format!("pad{n}@fabrikam.test"));
        o.upn = o.mail.clone();
        target.push(o);
    }
    std::fs::write(
        dir.join("contoso.json"),
        ferry_core::snapshot::render_json(&s.source),
    )
    .expect("write contoso.json");
    std::fs::write(
        dir.join("fabrikam.json"),
        ferry_core::snapshot::render_json(&target),
    )
    .expect("write fabrikam.json");
    s.expected
}

/// A schema of its own on the PostgreSQL at `url` for one benchmark run (`PREFIX_PID`): the
/// client that made it (to drop it at the end), its name, and `url` with its `search_path`.
pub async fn pg_schema(url: &str, prefix: &str) -> (tokio_postgres::Client, String, String) {
    let schema = format!("{prefix}_{}", std::process::id());
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    c.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    let with_schema = format!("{url}{sep}options=-csearch_path%3D{schema}");
    (c, schema, with_schema)
}

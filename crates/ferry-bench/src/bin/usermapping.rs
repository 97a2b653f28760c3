//! The file rules of `usermapping.csv` on a 1,000,000-line file, one thread: a clean file (every
//! rule checked, nothing to report), and the same file with 1% of its lines broken (repeats,
//! bad e-mails, a target equal to its source, extra columns), where every message is built.
//!
//! Then the per-user validation of the clean file's users against an organisation of as many
//! system users and a target directory of as many users (hash look-ups on both sides).
//!
//! `cargo run --release -p ferry-bench --bin usermapping [-- LINES]`

use ferry_core::envmove::{OrgIndex, SystemUser, TargetLookup, validate_users};
use ferry_core::usermapping::{FILE_NAME, validate};
use rustc_hash::FxHashMap;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut clean = String::with_capacity(n * 56);
    clean.push_str("Source,Destination\r\n");
    for i in 0..n {
        clean.push_str(&format!(
            "First.Last{i}@contoso-source.com,first.last{i}@fabrikam-target.com\r\n"
        ));
    }
    let mut broken = String::with_capacity(clean.len());
    broken.push_str("Source,Destination\r\n");
    for i in 0..n {
        match i % 400 {
            0 => broken.push_str(&format!(
                "First.Last{}@contoso-source.com,x{i}@fabrikam-target.com\r\n",
                i / 2
            )),
            1 => broken.push_str(&format!(
                "not-an-email-{i},first.last{i}@fabrikam-target.com\r\n"
            )),
            2 => broken.push_str(&format!("same{i}@contoso.com,SAME{i}@contoso.com\r\n")),
            3 => broken.push_str(&format!("a{i}@contoso.com,b{i}@fabrikam.com,extra\r\n")),
            _ => broken.push_str(&format!(
                "First.Last{i}@contoso-source.com,first.last{i}@fabrikam-target.com\r\n"
            )),
        }
    }
    println!(
        "usermapping.csv: {n} lines ({} MB); one thread",
        clean.len() / 1_000_000
    );
    for _ in 0..3 {
        let t = Instant::now();
        let rows = validate(FILE_NAME, clean.as_bytes())
            .expect("the clean file passes")
            .len();
        let clean_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let errors = validate(FILE_NAME, broken.as_bytes())
            .expect_err("the broken file fails")
            .len();
        let broken_s = t.elapsed().as_secs_f64();
        println!(
            "file rules: clean {rows} users in {clean_s:.3} s ({:.0} lines/s); 1% broken: {errors} messages in {broken_s:.3} s",
            n as f64 / clean_s
        );
    }

    let users: Vec<SystemUser> = (0..n)
        .map(|i| SystemUser {
            id: format!("{:08x}-0000-4000-8000-{:012x}", i, i),
            email: format!("First.Last{i}@contoso-source.com"),
            application_user: i % 1000 == 0,
            administrative: i % 100 == 0,
        })
        .collect();
    let directory: FxHashMap<String, bool> = (0..n)
        .map(|i| (format!("first.last{i}@fabrikam-target.com"), i % 7 != 0))
        .collect();
    for _ in 0..3 {
        let t = Instant::now();
        let rows = validate(FILE_NAME, clean.as_bytes()).expect("the clean file passes");
        let org = OrgIndex::new(&users);
        let results = validate_users(&rows, &org, |upn| {
            let key = if upn.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Owned(upn.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(upn)
            };
            match directory.get(key.as_ref()) {
                Some(&licensed) => TargetLookup::Found { licensed },
                None => TargetLookup::Missing,
            }
        });
        let s = t.elapsed().as_secs_f64();
        let flagged = results.iter().filter(|r| r.code.is_some()).count();
        println!(
            "file rules + per-user validation against {n} system users and {n} directory users: {s:.3} s ({flagged} users with a code)"
        );
    }
}

//! The file rules of `usermapping.csv` on a 1,000,000-line file, one thread: a clean file (every
//! rule checked, nothing to report), and the same file with 1% of its lines broken (repeats,
//! bad e-mails, a target equal to its source, extra columns), where every message is built.
//!
//! `cargo run --release -p ferry-bench --bin usermapping [-- LINES]`

use ferry_core::usermapping::{FILE_NAME, validate};
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
}

//! Windows security descriptors, translated on one core:
//!
//! 1. 1,000,000 binary descriptors drawn from 1,000 distinct ones (profile trees: the user as owner,
//!    inherited SYSTEM / Administrators / user ACEs, some shares with extra groups), through the
//!    byte-keyed cache, and the same without the cache;
//! 2. 1,000,000 SDDL lines: parse + translate + format, each line done in full.
//!
//! With python3-samba installed, Samba's own SDDL codec (C, through Python) parses and prints the
//! same lines in the same run, as a peer.
//!
//! `cargo run --release -p ferry-bench --bin winsec [-- DESCRIPTORS]`

use ferry_winsec::sd::{Ace, AceBody, Acl, SecurityDescriptor};
use ferry_winsec::translate::{Mode, SidMap, Translator, translate_sd};
use ferry_winsec::{Sid, sddl};
use std::io::Write;
use std::time::Instant;

const DISTINCT: usize = 1000;

fn user(domain: u32, rid: u32) -> Sid {
    Sid::new(5, &[21, 1225132014, 296224811, domain, rid]).expect("sid")
}

fn ace(ty: u8, flags: u8, mask: u32, sid: Sid) -> Ace {
    Ace {
        ace_type: ty,
        flags,
        body: AceBody::Basic {
            mask,
            sid,
            extra: Vec::new(),
        },
    }
}

/// Descriptor `i` of the sample: 500 users, each with a few distinct descriptor shapes.
fn descriptor(i: usize) -> SecurityDescriptor {
    let sy = Sid::new(5, &[18]).expect("sid");
    let ba = Sid::new(5, &[32, 544]).expect("sid");
    let owner = user(2507946102, 1000 + (i % 500) as u32);
    let group = user(2507946102, 513);
    let mut aces = vec![
        ace(0, 0x13, 0x1f01ff, sy),
        ace(0, 0x13, 0x1f01ff, ba),
        ace(0, 0x13, 0x1f01ff, owner),
    ];
    match i / 500 {
        0 => {}
        _ => {
            aces.insert(
                0,
                ace(1, 0x00, 0x10000, user(2507946102, 2000 + (i % 37) as u32)),
            );
            aces.push(ace(
                0,
                0x10,
                0x1200a9,
                user(2507946102, 3000 + (i % 11) as u32),
            ));
            aces.push(ace(0, 0x10, 0x1200a9, Sid::new(5, &[11]).expect("sid")));
        }
    }
    SecurityDescriptor {
        control: 0x8000 | 0x0004 | 0x0400,
        owner: Some(owner),
        group: Some(group),
        dacl: Some(Acl::new(aces)),
        ..SecurityDescriptor::default()
    }
}

/// Every source-domain user to an Entra SID (S-1-12-1-…), as a tenant move maps them.
fn map() -> SidMap {
    let mut m = SidMap::new();
    for rid in (1000..1500)
        .chain(2000..2037)
        .chain(3000..3011)
        .chain([513])
    {
        let t = Sid::new(
            12,
            &[1, 0x9000_0000 + rid, 2022761974, 317705643, 2423805492],
        )
        .expect("sid");
        m.insert(user(2507946102, rid), t).expect("map");
    }
    m
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let map = map();
    let distinct: Vec<Vec<u8>> = (0..DISTINCT)
        .map(|i| descriptor(i).to_bytes().expect("bytes"))
        .collect();
    // Drawn at random (xorshift), copied into one buffer as a reader would hand them over.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = Vec::with_capacity(n * 120);
    let mut spans = Vec::with_capacity(n);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let d = &distinct[(x % DISTINCT as u64) as usize];
        spans.push((buf.len(), d.len()));
        buf.extend_from_slice(d);
    }
    let avg = buf.len() as f64 / n as f64;
    println!(
        "{n} descriptors ({avg:.0} bytes on average) drawn from {DISTINCT} distinct; map of {} SIDs; one thread",
        map.len()
    );

    let t = Instant::now();
    let mut tr = Translator::new(&map, Mode::AddAndRemove);
    let mut out_bytes = 0usize;
    for &(o, l) in &spans {
        out_bytes += tr.translate(&buf[o..o + l]).expect("translate").len();
    }
    let cached = t.elapsed().as_secs_f64();
    let s = tr.stats();
    println!(
        "binary, cached:   {:>10.0} translations/s  ({:.3} s; {} distinct translated, {} changed, {} bytes out)",
        n as f64 / cached,
        cached,
        s.distinct,
        s.changed,
        out_bytes
    );

    let t = Instant::now();
    let mut changed = 0usize;
    for &(o, l) in &spans {
        changed += usize::from(
            tr.translate_uncached(&buf[o..o + l])
                .expect("translate")
                .is_some(),
        );
    }
    let uncached = t.elapsed().as_secs_f64();
    println!(
        "binary, uncached: {:>10.0} translations/s  ({:.3} s; {changed} changed)",
        n as f64 / uncached,
        uncached
    );

    // SDDL: the same draw, as text; every line parsed, translated and printed.
    let texts: Vec<String> = (0..DISTINCT)
        .map(|i| sddl::to_sddl(&descriptor(i), None).expect("sddl"))
        .collect();
    let lines: Vec<&str> = spans
        .iter()
        .enumerate()
        .map(|(k, _)| texts[(k * 7919) % DISTINCT].as_str())
        .collect();
    let t = Instant::now();
    let mut out_len = 0usize;
    for l in &lines {
        let sd = sddl::parse(l, None).expect("parse");
        let sd = translate_sd(&sd, &map, Mode::AddAndRemove).unwrap_or(sd);
        out_len += sddl::to_sddl(&sd, None).expect("format").len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "SDDL parse + translate + format: {:>10.0} lines/s  ({:.3} s; {} bytes in, {out_len} out)",
        n as f64 / s,
        s,
        lines.iter().map(|l| l.len()).sum::<usize>()
    );

    peer(&texts, n.min(200_000));
}

/// Samba's SDDL codec on the same lines (parse + print; no translation), when installed.
fn peer(texts: &[String], n: usize) {
    let dir = std::env::temp_dir().join(format!("ferry-bench-winsec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let input = dir.join("lines.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("tmp"));
    for k in 0..n {
        writeln!(f, "{}", texts[(k * 7919) % texts.len()]).expect("write");
    }
    drop(f);
    let prog = r#"
import sys, time
from samba.dcerpc import security
lines = open(sys.argv[1]).read().split()
dom = security.dom_sid('S-1-5-21-1-2-3')
t = time.perf_counter()
n = 0
for l in lines:
    n += len(security.descriptor.from_sddl(l, dom).as_sddl(dom))
s = time.perf_counter() - t
print(f"{len(lines) / s:.0f} {s:.3f}")
"#;
    match std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(prog)
        .arg(&input)
        .output()
    {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            let mut it = out.split_whitespace();
            println!(
                "peer: Samba from_sddl + as_sddl (python3-samba), {n} lines: {:>10} lines/s  ({} s)",
                it.next().unwrap_or("?"),
                it.next().unwrap_or("?")
            );
        }
        _ => println!(
            "peer: python3-samba is not installed (apt-get install python3-samba) — no peer figure"
        ),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#![allow(clippy::unwrap_used)]
//! Cross-check against Samba's own implementation (Debian's python3-samba): thousands of random
//! descriptors, as SDDL parsed by both into bytes, and as bytes read and written by both.
//!
//! Needs `/usr/bin/python3` with `samba`; `scripts/test` installs it and sets
//! FERRY_REQUIRE_SERVERS=1, under which a missing Samba is a failure rather than a skip.

use ferry_winsec::sd::{Ace, AceBody, Acl, Guid, SecurityDescriptor};
use ferry_winsec::{Sid, sddl};
use std::io::Write;
use std::process::{Command, Stdio};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sid(r: &mut Rng) -> Sid {
    match r.below(4) {
        0 => [
            "S-1-1-0",
            "S-1-5-18",
            "S-1-5-32-544",
            "S-1-5-11",
            "S-1-3-0",
            "S-1-5-32-545",
        ][r.below(6) as usize]
            .parse()
            .unwrap(),
        1 => Sid::new(
            12,
            &[
                1,
                r.next() as u32,
                r.next() as u32,
                r.next() as u32,
                r.next() as u32,
            ],
        )
        .unwrap(),
        _ => Sid::new(
            5,
            &[
                21,
                r.next() as u32,
                r.next() as u32,
                r.next() as u32,
                1000 + r.below(5000) as u32,
            ],
        )
        .unwrap(),
    }
}

fn descriptor(r: &mut Rng) -> SecurityDescriptor {
    let acl = |r: &mut Rng| {
        let aces = (0..r.below(7))
            .map(|_| {
                let flags = (r.next() as u8) & 0xdf; // every defined flag bit
                let mask = match r.below(3) {
                    0 => r.next() as u32,
                    1 => [0x1f01ff, 0x120089, 0x10000000, 0x20000, 0x1ff][r.below(5) as usize],
                    _ => r.next() as u32 & 0xf01ff,
                };
                let s = sid(r);
                if r.below(4) == 0 {
                    let mut g = || {
                        (r.below(2) == 0).then(|| {
                            let mut b = [0u8; 16];
                            b.iter_mut().for_each(|x| *x = r.next() as u8);
                            Guid(b)
                        })
                    };
                    let (o, i) = (g(), g());
                    Ace {
                        ace_type: [5u8, 6, 7][r.below(3) as usize],
                        flags,
                        body: AceBody::Object {
                            mask,
                            flags: u32::from(o.is_some()) | u32::from(i.is_some()) << 1,
                            object_type: o,
                            inherited_object_type: i,
                            sid: s,
                            extra: Vec::new(),
                        },
                    }
                } else {
                    Ace {
                        ace_type: [0u8, 1, 2][r.below(3) as usize],
                        flags,
                        body: AceBody::Basic {
                            mask,
                            sid: s,
                            extra: Vec::new(),
                        },
                    }
                }
            })
            .collect();
        Acl::new(aces)
    };
    let mut control = 0x8000u16;
    let dacl = (r.below(5) > 0).then(|| acl(r));
    let sacl = (r.below(3) == 0).then(|| acl(r));
    // Samba 4.17 (Debian 12) refuses ACL flags with no ACE before another part (`D:PS:`), which
    // Windows accepts (canonical.txt); such ACLs get no flags here.
    let flags = |a: &Option<Acl>, r: &mut Rng, f: &[u16]| match a {
        Some(a) if !a.aces.is_empty() => f[r.below(f.len() as u64) as usize],
        _ => 0,
    };
    if dacl.is_some() {
        control |= 0x0004 | flags(&dacl, r, &[0, 0x1000, 0x0400, 0x1500]);
    }
    if sacl.is_some() {
        control |= 0x0010 | flags(&sacl, r, &[0, 0x2000, 0x0800]);
    }
    SecurityDescriptor {
        control,
        owner: (r.below(4) > 0).then(|| sid(r)),
        group: (r.below(4) > 0).then(|| sid(r)),
        dacl,
        sacl,
        ..SecurityDescriptor::default()
    }
}

const PY: &str = r#"
import sys
from samba.dcerpc import security
from samba.ndr import ndr_pack, ndr_unpack
dom = security.dom_sid('S-1-5-21-1-2-3')
for line in sys.stdin:
    kind, value = line.rstrip('\n').split(' ', 1)
    try:
        if kind == 'sddl':
            b = ndr_pack(security.descriptor.from_sddl(value, dom))
        else:
            b = ndr_pack(ndr_unpack(security.descriptor, bytes.fromhex(value)))
        print('ok ' + b.hex())
    except Exception as e:
        print('err ' + type(e).__name__)
"#;

/// Samba 4.17 reads `FA` as 0x1ff (fixed in later Samba; Windows and ferry: 0x1f01ff), so the
/// file rights go to it as numbers.
fn for_old_samba(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    for (i, part) in text.split('(').enumerate() {
        if i > 0 {
            out.push('(');
        }
        let mut f: Vec<&str> = part.split(';').collect();
        if i > 0 && f.len() >= 3 {
            let hex = match f[2] {
                "FA" => Some("0x1f01ff"),
                "FR" => Some("0x120089"),
                "FW" => Some("0x120116"),
                "FX" => Some("0x1200a0"),
                _ => None,
            };
            if let Some(h) = hex {
                f[2] = h;
            }
        }
        out.push_str(&f.join(";"));
    }
    out
}

fn samba_available() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import samba.dcerpc.security"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Samba writes every ACL as revision 4 (Windows and ferry write the lowest that fits).
fn same_but_revision(a: &SecurityDescriptor, b: &SecurityDescriptor) -> bool {
    let norm = |s: &SecurityDescriptor| {
        let mut s = s.clone();
        for acl in [&mut s.dacl, &mut s.sacl].into_iter().flatten() {
            acl.revision = 4;
        }
        s
    };
    norm(a) == norm(b)
}

#[test]
fn ferry_and_samba_agree_on_thousands_of_random_descriptors() {
    if !samba_available() {
        assert!(
            std::env::var_os("FERRY_REQUIRE_SERVERS").is_none(),
            "python3-samba is required (apt-get install python3-samba)"
        );
        eprintln!("SKIPPED: python3-samba is not installed");
        return;
    }
    const N: usize = 3000;
    let mut r = Rng(std::env::var("FERRY_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xfe44_5a3b));
    let sds: Vec<SecurityDescriptor> = (0..N).map(|_| descriptor(&mut r)).collect();
    let mut input = String::new();
    for sd in &sds {
        input.push_str(&format!(
            "sddl {}\n",
            for_old_samba(&sddl::to_sddl(sd, None).unwrap())
        ));
    }
    for sd in &sds {
        let hex: String = sd
            .to_bytes()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        input.push_str(&format!("bytes {hex}\n"));
    }
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2 * N);

    let (mut sddl_exact, mut bytes_exact) = (0, 0);
    for (i, sd) in sds.iter().enumerate() {
        let text = sddl::to_sddl(sd, None).unwrap();
        // 1. The SDDL ferry prints, parsed by Samba, is the descriptor ferry meant.
        let l = lines[i];
        let b = unhex(
            l.strip_prefix("ok ")
                .unwrap_or_else(|| panic!("Samba refused ferry's SDDL {text}: {l}")),
        );
        let samba = SecurityDescriptor::parse(&b)
            .unwrap_or_else(|e| panic!("{text}: ferry cannot read Samba's bytes: {e}"));
        assert!(
            same_but_revision(&samba, sd),
            "{text}\n samba {samba:?}\n ferry {sd:?}"
        );
        sddl_exact += usize::from(samba.to_bytes().unwrap() == b);
        // 2. ferry's bytes, read and written again by Samba, are the same descriptor.
        let l = lines[N + i];
        let b = unhex(
            l.strip_prefix("ok ")
                .unwrap_or_else(|| panic!("Samba cannot read ferry's bytes for {text}: {l}")),
        );
        let back = SecurityDescriptor::parse(&b).unwrap();
        assert_eq!(back, *sd, "{text}");
        bytes_exact += usize::from(b == sd.to_bytes().unwrap());
    }
    println!(
        "{N} random descriptors: Samba parsed ferry's SDDL to the same descriptor in all, and read and re-wrote ferry's bytes to the same descriptor in all (byte-identical: {sddl_exact} and {bytes_exact}; Samba 4.17 writes every ACL as revision 4 and puts owner and group first)"
    );
}

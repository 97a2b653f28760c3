#![allow(clippy::unwrap_used)]
//! Windows' own SDDL outputs and bytes, from the Samba project's conformance data
//! (`../shared/testdata/samba-sddl`, found by walking up from this crate, or `FERRY_TESTDATA`).

use ferry_winsec::sd::SecurityDescriptor;
use ferry_winsec::sddl;
use ferry_winsec::sid::Sid;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    if let Ok(d) = std::env::var("FERRY_TESTDATA") {
        return PathBuf::from(d).join("samba-sddl");
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let c = dir.join("shared/testdata/samba-sddl");
        if c.is_dir() {
            return c;
        }
        assert!(
            dir.pop(),
            "the Samba SDDL corpus was not found in any ../shared/testdata above {}; set FERRY_TESTDATA",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

fn domain() -> Sid {
    Sid::parse("S-1-5-21-2457507606-2709100691-398136650").unwrap()
}

fn pairs(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(corpus().join(file)).unwrap();
    let v: Vec<_> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (a, b) = l.split_once(" -> ").unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    assert!(!v.is_empty(), "{file} is empty");
    v
}

fn windows_output(file: &str) {
    let d = domain();
    let mut failures = Vec::new();
    for (input, want) in pairs(file) {
        match sddl::parse(&input, Some(&d)) {
            Err(e) => failures.push(format!("{input:?}: refused: {e}")),
            Ok(sd) => {
                let got = sddl::to_sddl(&sd, Some(&d)).unwrap();
                if got != want {
                    failures.push(format!("{input:?}\n   got  {got}\n   want {want}"));
                }
                // Windows' output is itself a fixed point.
                let again = sddl::parse(&got, Some(&d)).unwrap();
                assert_eq!(again, sd, "{input}");
                let bytes = sd.to_bytes().unwrap();
                assert_eq!(SecurityDescriptor::parse(&bytes).unwrap(), sd, "{input}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} lines differ from Windows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn canonical() {
    windows_output("canonical.txt");
}

#[test]
fn non_canonical() {
    windows_output("non_canonical.txt");
}

#[test]
fn windows_is_fussy() {
    windows_output("windows_is_fussy.txt");
}

#[test]
fn windows_is_less_fussy() {
    windows_output("windows_is_less_fussy.txt");
}

#[test]
fn windows_is_weird() {
    windows_output("windows_is_weird.txt");
}

#[test]
fn should_fail() {
    let d = domain();
    let accepted: Vec<_> = pairs("should_fail.txt")
        .into_iter()
        .filter_map(|(input, _)| {
            sddl::parse(&input, Some(&d))
                .ok()
                .map(|sd| format!("{input:?} -> {}", sddl::to_sddl(&sd, Some(&d)).unwrap()))
        })
        .collect();
    assert!(
        accepted.is_empty(),
        "Windows refuses these, ferry accepted:\n{}",
        accepted.join("\n")
    );
}

fn json(file: &str) -> Vec<(String, Vec<u8>)> {
    let path = corpus().join(file);
    let text = if file.ends_with(".gz") {
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    } else {
        std::fs::read_to_string(&path).unwrap()
    };
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    map.into_iter()
        .map(|(k, v)| {
            let b = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u8)
                .collect();
            (k, b)
        })
        .collect()
}

/// SDDL → exact Windows bytes. Windows writes ACL revision 2 where ferry (like Windows'
/// own SDDL parser) picks the lowest that fits; the only differences allowed are that byte and, in
/// "oversize" ACLs, the zero padding Windows left after the last ACE.
fn sddl_to_bytes(file: &str) {
    let d = domain();
    let cases = json(file);
    assert!(!cases.is_empty());
    let (mut exact, mut revision_only, mut padded) = (0, 0, 0);
    let mut failures = Vec::new();
    for (text, want) in &cases {
        // The bytes parse and serialize back exactly, whatever SDDL says.
        let from_bytes = SecurityDescriptor::parse(want).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            &from_bytes.to_bytes().unwrap(),
            want,
            "{text}: bytes do not round-trip"
        );
        let sd = match sddl::parse(text, Some(&d)) {
            Ok(sd) => sd,
            Err(e) => {
                failures.push(format!("{text}: refused: {e}"));
                continue;
            }
        };
        let got = sd.to_bytes().unwrap();
        if &got == want {
            exact += 1;
            continue;
        }
        let mut norm = from_bytes.clone();
        let mut was_padded = false;
        for (ours, theirs) in [(&sd.dacl, &mut norm.dacl), (&sd.sacl, &mut norm.sacl)] {
            if let (Some(o), Some(t)) = (ours, theirs) {
                t.revision = o.revision;
                if !t.trailing.is_empty() && t.trailing.iter().all(|&b| b == 0) {
                    t.trailing.clear();
                    was_padded = true;
                }
            }
        }
        if norm != sd {
            failures.push(format!("{text}\n   got  {got:?}\n   want {want:?}"));
        } else if was_padded {
            padded += 1;
        } else {
            revision_only += 1;
        }
        // And the text ferry prints for Windows' bytes means the same descriptor.
        let printed = sddl::to_sddl(&from_bytes, Some(&d)).unwrap();
        let reparsed = sddl::parse(&printed, Some(&d)).unwrap();
        assert_eq!(reparsed.owner, from_bytes.owner, "{text}");
        assert_eq!(
            reparsed.dacl.as_ref().map(|a| &a.aces),
            from_bytes.dacl.as_ref().map(|a| &a.aces),
            "{text} printed as {printed}"
        );
    }
    println!(
        "{file}: {} cases, {exact} byte-exact, {revision_only} differ only in ACL revision, {padded} in padding",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{file}: {} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn short_ordinary_acls() {
    sddl_to_bytes("short-ordinary-acls.json.gz");
}

#[test]
fn short_ordinary_acls_v2() {
    sddl_to_bytes("short-ordinary-acls-v2.json.gz");
}

#[test]
fn registry_object_rights() {
    sddl_to_bytes("registry-object-rights.json");
}

#[test]
fn oversize_acls() {
    sddl_to_bytes("oversize-acls.json");
}

/// Lines of a conditional-ACE file: `INPUT -> WINDOWS OUTPUT`, or just INPUT (Windows accepts it).
fn conditional_lines(file: &str) -> Vec<(String, Option<String>)> {
    std::fs::read_to_string(corpus().join(file))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(" -> ") {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (l.to_string(), None),
        })
        .collect()
}

/// Conditional ACEs: Windows' output for every line but those with resource-attribute (`RA`) ACEs,
/// whose claims ferry reads from binary only.
fn conditional_output(file: &str) -> usize {
    let d = domain();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (input, want) in conditional_lines(file) {
        if input.contains("(RA;") {
            assert!(sddl::parse(&input, Some(&d)).is_err());
            continue;
        }
        checked += 1;
        match sddl::parse(&input, Some(&d)) {
            Err(e) => failures.push(format!("{input}: refused: {e}")),
            Ok(sd) => {
                let got = sddl::to_sddl(&sd, Some(&d)).unwrap();
                if want.as_ref().is_some_and(|w| *w != got) {
                    failures.push(format!("{input}\n   got  {got}\n   want {}", want.unwrap()));
                }
                assert_eq!(sddl::parse(&got, Some(&d)).unwrap(), sd, "{input}");
                let bytes = sd.to_bytes().unwrap();
                assert_eq!(SecurityDescriptor::parse(&bytes).unwrap(), sd);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} of {checked} differ from Windows:\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

#[test]
fn conditional_aces() {
    assert!(conditional_output("conditional_aces.txt") > 40);
    conditional_output("conditional_aces_case_insensitive.txt");
    conditional_output("conditional_aces_windows_only.txt");
}

#[test]
fn conditional_aces_to_windows_bytes() {
    let d = domain();
    let text = std::fs::read_to_string(corpus().join("conditional_aces.txt.json")).unwrap();
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    let mut exact = 0;
    for (k, v) in &map {
        let want: Vec<u8> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        let from_bytes = SecurityDescriptor::parse(&want).unwrap();
        assert_eq!(from_bytes.to_bytes().unwrap(), want, "{k}");
        if k.contains("(RA;") {
            continue;
        }
        match sddl::parse(k, Some(&d)) {
            Ok(sd) if sd.to_bytes().unwrap() == want => exact += 1,
            Ok(sd) => failures.push(format!(
                "{k}\n   got  {:?}\n   want {want:?}",
                sd.to_bytes().unwrap()
            )),
            Err(e) => failures.push(format!("{k}: {e}")),
        }
    }
    println!("conditional_aces.txt.json: {exact} byte-exact");
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn conditional_aces_windows_refuses() {
    let d = domain();
    let accepted: Vec<String> = conditional_lines("conditional_aces_should_fail.txt")
        .into_iter()
        .filter_map(|(input, _)| sddl::parse(&input, Some(&d)).ok().map(|_| input))
        .collect();
    assert!(
        accepted.is_empty(),
        "Windows refuses these, ferry accepted:\n{}",
        accepted.join("\n")
    );
}

/// Found by the fuzzer: nesting deep enough to exhaust the stack is refused, in text and bytes.
#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let deep = format!(
        "D:(XA;;FA;;;WD;{}@User.x{})",
        "(!".repeat(5000),
        ")".repeat(5000)
    );
    let e = sddl::parse(&deep, None).unwrap_err().to_string();
    assert!(e.contains("nested more than 256 deep"), "{e}");
    // 5,000 `!` in a row, as bytes: read, not printed, carried through translation unchanged.
    let mut x = b"artx".to_vec();
    x.push(0xf9);
    x.extend_from_slice(&2u32.to_le_bytes());
    x.extend_from_slice(&[b'x', 0]);
    x.extend(std::iter::repeat_n(0xa2, 5000));
    while !x.len().is_multiple_of(4) {
        x.push(0);
    }
    let sd = SecurityDescriptor {
        control: 0x8004,
        dacl: Some(ferry_winsec::Acl::new(vec![ferry_winsec::Ace {
            ace_type: 0x09,
            flags: 0,
            body: ferry_winsec::AceBody::Basic {
                mask: 1,
                sid: Sid::parse("S-1-1-0").unwrap(),
                extra: x,
            },
        }])),
        ..SecurityDescriptor::default()
    };
    assert!(sddl::to_sddl(&sd, None).is_err());
    let b = sd.to_bytes().unwrap();
    assert_eq!(SecurityDescriptor::parse(&b).unwrap(), sd);
    // Composites nested 5,000 deep around a SID.
    let mut inner = Sid::parse("S-1-5-21-1-2-3-1001").unwrap().to_bytes();
    inner.splice(0..0, [0x51, 28, 0, 0, 0]);
    for _ in 0..5000 {
        let len = (inner.len() as u32).to_le_bytes();
        inner.splice(0..0, [0x50, len[0], len[1], len[2], len[3]]);
    }
    let mut x = b"artx".to_vec();
    x.extend_from_slice(&inner);
    x.push(0x89);
    let mut map = ferry_winsec::SidMap::new();
    map.insert(
        Sid::parse("S-1-5-21-1-2-3-1001").unwrap(),
        Sid::parse("S-1-5-21-9-9-9-1001").unwrap(),
    )
    .unwrap();
    let sd = SecurityDescriptor {
        control: 0x8004,
        dacl: Some(ferry_winsec::Acl::new(vec![ferry_winsec::Ace {
            ace_type: 0x09,
            flags: 0,
            body: ferry_winsec::AceBody::Basic {
                mask: 1,
                sid: Sid::parse("S-1-1-0").unwrap(),
                extra: x,
            },
        }])),
        ..SecurityDescriptor::default()
    };
    let b = sd.to_bytes().unwrap();
    assert_eq!(
        ferry_winsec::translate::translate_bytes(&b, &map, ferry_winsec::Mode::AddAndRemove)
            .unwrap(),
        None
    );
}

/// Found by the fuzzer: a multi-byte character where a SID prefix is looked for.
#[test]
fn non_ascii_in_a_condition_is_an_error() {
    let e = sddl::parse("D:(XA;;CC;;;WD;(Member_of {SID(;þ)}))", None).unwrap_err();
    assert!(e.to_string().contains("is not a SID or SID alias"), "{e}");
}

#![allow(clippy::unwrap_used)]
//! The Windows script of a runbook: a golden file, and hostile values that must stay data.

use ferry_core::runbook::Runbook;
use ferry_core::windows_script::render_windows;
use std::path::Path;

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[test]
fn full_runbook_matches_the_golden_script() {
    let rb: Runbook =
        serde_json::from_str(&std::fs::read_to_string(golden("windows-runbook.json")).unwrap())
            .unwrap();
    let got = render_windows(&rb, "TEST");
    let path = golden("windows-runbook.ps1");
    if std::env::var_os("FERRY_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(
        got == want,
        "the script changed; review it and run with FERRY_UPDATE_GOLDEN=1:\n{got}"
    );
    // Each step the issue names is there, in the agent's order.
    let order = [
        "'prerequisites'",
        "'legal-notice'",
        "'pre-script-1'",
        "dsregcmd.exe /leave",
        "/save",
        "ferry icacls translate",
        "/restore",
        "/setowner",
        "'profile-reassociation'",
        "Install-ProvisioningPackage",
        "deviceenroller.exe",
        "attrib.exe +U -P",
        "'post-script-1'",
        "Restart-Computer",
    ];
    let mut at = 0;
    for s in order {
        let i = got[at..]
            .find(s)
            .unwrap_or_else(|| panic!("{s} missing or out of order"));
        at += i;
    }
}

/// PowerShell's lexing, as far as quoting goes: returns the code outside string literals and
/// comments, and the values of the single-quoted literals and here-strings.
fn lex(script: &str) -> (String, Vec<String>) {
    let q = |c: char| matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}');
    let cs: Vec<char> = script.chars().collect();
    let (mut code, mut lits) = (String::new(), Vec::new());
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c == '@' && cs.get(i + 1).is_some_and(|&c| q(c)) && cs.get(i + 2) == Some(&'\n') {
            // Here-string: ends at a line starting with a quote then @.
            let mut j = i + 3;
            let start = j;
            loop {
                assert!(j < cs.len(), "unterminated here-string");
                if (j == start || cs[j - 1] == '\n') && q(cs[j]) && cs.get(j + 1) == Some(&'@') {
                    break;
                }
                j += 1;
            }
            lits.push(cs[start..j.saturating_sub(1).max(start)].iter().collect());
            i = j + 2;
        } else if q(c) {
            let mut v = String::new();
            let mut j = i + 1;
            loop {
                assert!(j < cs.len(), "unterminated string");
                if q(cs[j]) {
                    if cs.get(j + 1).is_some_and(|&n| q(n)) {
                        v.push(cs[j]);
                        j += 2;
                        continue;
                    }
                    break;
                }
                v.push(cs[j]);
                j += 1;
            }
            lits.push(v);
            i = j + 1;
        } else if c == '#' {
            while i < cs.len() && cs[i] != '\n' {
                i += 1;
            }
        } else {
            code.push(c);
            i += 1;
        }
    }
    (code, lits)
}

#[test]
fn hostile_values_stay_data() {
    let evil = |tag: &str| {
        format!(
            "{tag}INJECT it's ’smart‘ \"dq\" $(Remove-Item C:\\ -Recurse) `n ; & | #> <# @' '@\nline2 '@\n’@ $env:PATH"
        )
    };
    let script = |tag: &str, interp: &str| serde_json::json!({"name": evil(tag), "interpreter": interp, "body": evil(tag), "required": true});
    let rb: Runbook = serde_json::from_value(serde_json::json!({
        "name": evil("name"),
        "source_directories": ["a"],
        "target_directories": ["b"],
        "startup": {
            "admin_fallback_account": evil("fallback"),
            "legal_notice": {"title": evil("title"), "text": evil("text")},
            "pre_migration_scripts": [script("pre", "powershell")]
        },
        "device_state": {"remove_from": "ad", "join": "ad"},
        "permission_updates": {"mode": "add", "paths": [evil("path"), "C:\\it's here"], "ignore": [evil("glob")]},
        "app_reconfiguration": {"reconfigure_applications": true, "commands": [script("app", "cmd")]},
        "completion": {"post_migration_scripts": [script("post", "powershell")]}
    }))
    .unwrap();
    let out = render_windows(&rb, "TEST");
    let (code, lits) = lex(&out);
    assert!(
        !code.contains("INJECT"),
        "a runbook value reached the code:\n{code}"
    );
    assert!(!code.contains("Remove-Item C:"), "{code}");
    // Every value comes back whole: as a literal, or Base64 decoded.
    let b64: Vec<String> = out
        .split("FromBase64String('")
        .skip(1)
        .map(|s| decode(&s[..s.find('\'').unwrap()]))
        .collect();
    // (The runbook name appears only in a comment.)
    for tag in [
        "title", "text", "pre", "path", "glob", "app", "post", "fallback",
    ] {
        let v = evil(tag);
        assert!(
            lits.contains(&v) || b64.contains(&v),
            "{tag} lost its value"
        );
    }
    assert!(lits.contains(&"C:\\it's here".to_string()));
    // Comments stay one line each.
    for l in out.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(!l.contains('\r'));
    }
}

fn decode(s: &str) -> String {
    let a = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        bits = bits << 6 | a.iter().position(|&x| x == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

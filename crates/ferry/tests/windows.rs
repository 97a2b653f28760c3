#![allow(clippy::unwrap_used)]
//! `ferry sddl translate` and `ferry icacls translate` as an operator runs them.

mod common;

use common::{FERRY, ferry, text};
use std::io::Write;
use std::process::{Command, Stdio};

const SRC: &str = "S-1-5-21-1225132014-296224811-2507946102-1001";
const DST: &str = "S-1-12-1-2712847316-2022761974-317705643-2423805492";

fn map(dir: &std::path::Path) -> String {
    let p = dir.join("map.csv");
    std::fs::write(
        &p,
        format!("source,target\n{SRC},{DST}\nuid:1000,uid:2000\n"),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn sddl(args: &[&str], stdin: &str) -> std::process::Output {
    let mut c = Command::new(FERRY)
        .arg("sddl")
        .arg("translate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bad map ends the command before it reads its input: its pipe may close under us.
    if let Err(e) = c.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    c.wait_with_output().unwrap()
}

#[test]
fn sddl_lines_translate_and_errors_name_the_line() {
    let d = tempfile::tempdir().unwrap();
    let m = map(d.path());
    let input = format!(
        "O:{SRC}G:DUD:AI(A;ID;FA;;;{SRC})(A;OICIID;FA;;;SY)\nD:PAI(A;;FA;;;BA)\n\nS:(AU;SA;CR;;;{SRC})\n"
    );
    let o = sddl(
        &[
            "--map",
            &m,
            "--domain-sid",
            "S-1-5-21-1225132014-296224811-2507946102",
        ],
        &input,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!(
            "O:{DST}G:S-1-5-21-1225132014-296224811-2507946102-513D:AI(A;ID;FA;;;{DST})(A;OICIID;FA;;;SY)\nD:PAI(A;;FA;;;BA)\n\nS:(AU;SA;CR;;;{DST})\n"
        ),
        "owner and ACE SIDs mapped, the unmapped DU written in full, the rest as it was"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("3 descriptors, 2 changed"));

    // add: the target's ACE right after the source's; owner left alone.
    let o = sddl(
        &["--map", &m, "--mode", "add"],
        &format!("O:{SRC}D:(A;OICI;FA;;;{SRC})(A;;FR;;;WD)\n"),
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("O:{SRC}D:(A;OICI;FA;;;{SRC})(A;OICI;FA;;;{DST})(A;;FR;;;WD)\n")
    );

    // One bad line: nothing on stdout, every bad line named, exit 1.
    let o = sddl(
        &["--map", &m],
        "D:(A;;FA;;;BA)\nD:(A;;FA;;;DU)\nD:(A;;XX;;;BA)\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 2: at character 12: `DU` is relative to a domain"),
        "{err}"
    );
    assert!(
        err.contains("line 3: at character 7: `XX` is not an access right"),
        "{err}"
    );

    let o = sddl(&["--map", &m, "--mode", "replace"], "D:\n");
    assert!(!o.status.success());
    assert!(text(&o).contains("`replace` is not a mode"));
}

fn utf16(s: &str, bom: bool) -> Vec<u8> {
    let mut v: Vec<u8> = if bom { vec![0xff, 0xfe] } else { Vec::new() };
    v.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
    v
}

/// Runs `ferry icacls translate` on `saved` (as IN); returns its output and OUT, if written.
fn icacls(
    dir: &std::path::Path,
    map: &str,
    extra: &[&str],
    saved: &[u8],
) -> (std::process::Output, Option<Vec<u8>>) {
    let (inp, out) = (dir.join("in.txt"), dir.join("out.txt"));
    let _ = std::fs::remove_file(&out);
    std::fs::write(&inp, saved).unwrap();
    let mut args = vec!["icacls", "translate", "--map", map];
    args.extend_from_slice(extra);
    args.extend([inp.to_str().unwrap(), out.to_str().unwrap()]);
    let o = ferry(&args, &[]);
    (o, std::fs::read(&out).ok())
}

#[test]
fn icacls_save_files_translate_for_restore() {
    let d = tempfile::tempdir().unwrap();
    let m = map(d.path());
    // Names a hostile user might give files: quotes, PowerShell syntax, non-ASCII, spaces.
    let hostile = "alice\\it's `$(rm -r C:\\)’ ‘x’ [*] ;&|.txt";
    let saved = format!(
        "alice\r\nD:AI(A;ID;FA;;;{SRC})(A;OICIID;FA;;;SY)\r\n{hostile}\r\nD:AI(A;ID;FA;;;{SRC})(A;OICIID;FA;;;SY)\r\nalice\\Public\r\nD:PAI(A;;FR;;;WD)\r\n"
    );
    for bom in [false, true] {
        let (o, out) = icacls(d.path(), &m, &[], &utf16(&saved, bom));
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("3 descriptors, 2 changed, 2 distinct translated"),
            "{}",
            text(&o)
        );
        let want = saved.replace(SRC, DST);
        assert_eq!(
            out.unwrap(),
            utf16(&want, bom),
            "same encoding, BOM {bom}, CRLF, paths as they were"
        );
    }

    // OUT as a bare file name, in the current directory.
    std::fs::write(d.path().join("in.txt"), utf16(&saved, false)).unwrap();
    let o = std::process::Command::new(FERRY)
        .current_dir(d.path())
        .args(["icacls", "translate", "--map", &m, "in.txt", "bare.txt"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(d.path().join("bare.txt")).unwrap(),
        utf16(&saved.replace(SRC, DST), false)
    );

    // --ignore leaves matching objects and everything below them as saved.
    let saved = format!(
        "alice\r\nD:(A;;FA;;;{SRC})\r\nalice\\AppData\\Local\\Temp\r\nD:(A;;FA;;;{SRC})\r\nalice\\AppData\\Local\\Temp\\x.tmp\r\nD:(A;;FA;;;{SRC})\r\n"
    );
    let (o, out) = icacls(
        d.path(),
        &m,
        &["--ignore", "**\\appdata\\local\\TEMP"],
        &utf16(&saved, false),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 left as they were"), "{}", text(&o));
    assert_eq!(out.unwrap(), utf16(&saved.replacen(SRC, DST, 1), false));

    // Bad files: the error names the line, and OUT is not written.
    for (bytes, want) in [
        (
            utf16("a\r\nD:(A;;FA;;;BA)\r\nb\r\nD:(A;;FA;;;BA\r\n", false),
            "line 4 (b): at character 3: ACE is not closed",
        ),
        (
            utf16("a\r\nD:(A;;FA;;;BA)\r\nb\r\n", false),
            "line 3: a path with no SDDL line after it",
        ),
        (b"abc".to_vec(), "odd number of bytes (3)"),
    ] {
        let (o, out) = icacls(d.path(), &m, &[], &bytes);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(want), "{}", text(&o));
        assert!(out.is_none());
    }
}

#[test]
fn map_errors_name_the_line() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m.csv");
    for (body, want) in [
        (
            "source,target\nS-1-5-21-1-2-3-4,S-1-x\n",
            "line 2: `S-1-x` is not uid:N, gid:N or a SID",
        ),
        (
            "source,target\nS-1-5-21-1-2-3-4,S-1-5-21-9-9-9-4\nS-1-5-21-1-2-3-4,S-1-5-21-9-9-9-5\n",
            "line 3: `S-1-5-21-1-2-3-4` is mapped twice",
        ),
        (
            "source,target\nS-1-5-1,S-1-5-2\nS-1-5-2,S-1-5-3\n",
            "runs would not be repeatable",
        ),
        ("from,to\n", "line 1: expected the header `source,target`"),
    ] {
        std::fs::write(&m, body).unwrap();
        let o = sddl(&["--map", m.to_str().unwrap()], "D:\n");
        assert!(!o.status.success());
        assert!(text(&o).contains(want), "{body}: {}", text(&o));
    }
}

#[test]
fn runbook_renders_for_windows_offline() {
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ferry-core/tests/golden");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("runbook.ps1");
    let json = golden.join("windows-runbook.json");
    let o = ferry(
        &[
            "runbook",
            "render",
            json.to_str().unwrap(),
            "--platform",
            "windows",
            "-o",
            out.to_str().unwrap(),
        ],
        &[("FERRY_SERVER", "http://127.0.0.1:9")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let want = std::fs::read_to_string(golden.join("windows-runbook.ps1"))
        .unwrap()
        .replace(
            "rendered by ferry TEST.",
            &format!("rendered by ferry {}.", env!("CARGO_PKG_VERSION")),
        );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want);

    // A typo in the file is named with its place; other platforms are refused.
    let bad = d.path().join("bad.json");
    std::fs::write(&bad, "{\"name\": \"x\", \"source_directories\": [], \"target_directories\": [],\n \"startup\": {\"prevent_logon\": true}}").unwrap();
    let o = ferry(
        &[
            "runbook",
            "render",
            bad.to_str().unwrap(),
            "--platform",
            "windows",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("startup.prevent_logon: unknown field `prevent_logon`"),
        "{}",
        text(&o)
    );
    let o = ferry(
        &[
            "runbook",
            "render",
            json.to_str().unwrap(),
            "--platform",
            "macos",
        ],
        &[],
    );
    assert!(!o.status.success());
}

#[test]
fn mapping_validate_gives_microsofts_messages_offline() {
    let d = tempfile::tempdir().unwrap();
    let ok = d.path().join("usermapping.csv");
    std::fs::write(
        &ok,
        "\u{feff}Source,Destination\r\nann@contoso.test,ann@fabrikam.test\r\n",
    )
    .unwrap();
    let o = ferry(
        &["mapping", "validate", ok.to_str().unwrap()],
        &[("FERRY_SERVER", "http://127.0.0.1:9")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 users; the file rules pass"),
        "{}",
        text(&o)
    );

    std::fs::write(&ok, "Source,Destination\nann@contoso.test,ANN@contoso.test\nbob@contoso.test,x@y.test,z\nAnn@Contoso.test,cy@fabrikam.test\n").unwrap();
    let o = ferry(&["mapping", "validate", ok.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Each line must have exactly two columns: '3'\nTarget on line '2' is same as source email ID\nLine '2, 4' have the same 'ann@contoso.test'\n"
    );

    let wrong = d.path().join("UserMapping.csv");
    std::fs::write(&wrong, "a@b.test,c@d.test\n").unwrap();
    let o = ferry(
        &["mapping", "validate", wrong.to_str().unwrap(), "--json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["errors"][0],
        "The User mapping file provided for Tenant To Tenant migration is invalid"
    );
}

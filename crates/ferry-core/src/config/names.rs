//! The one rule for names an operator gives things ferry stores and shows: directories, sync
//! profiles, runbooks, batches, environments, tenants, pre-shared keys. A name ends up in URLs
//! (`/api/v1/batches/{name}`), file names (agents name run logs after runs made of batch names),
//! log lines and CSV reports, so none may carry a path separator, a `..`, a control character or
//! CR/LF (which would forge a log line or a report row).

/// Whether `c` is invisible or breaks a line where ferry shows text: a control character, a
/// Unicode format character (zero-width spaces and joiners, bidirectional overrides such as
/// U+202E, the byte-order mark) or a line or paragraph separator. Such characters in a name or
/// a reason would make what an operator reads differ from what is stored.
pub fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x180E | 0x200B..=0x200F
            | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
            | 0xE0001 | 0xE0020..=0xE007F)
}

/// The longest name, in bytes.
pub const MAX_NAME: usize = 128;

/// Why `name` cannot be a name, or Ok.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("must be at most {MAX_NAME} bytes"));
    }
    if name.trim() != name {
        return Err("must not start or end with white space".into());
    }
    if let Some(c) = name.chars().find(|&c| invisible(c)) {
        return Err(format!(
            "must not contain control or invisible characters (U+{:04X}{})",
            c as u32,
            match c {
                '\r' => ", CR",
                '\n' => ", LF",
                '\t' => ", tab",
                _ => "",
            }
        ));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(format!("must not contain `{c}`"));
    }
    if name.contains("..") || name == "." {
        return Err("must not be `.` or contain `..`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn field_names_pass_and_paths_and_line_breaks_do_not() {
        for ok in [
            "wave-1",
            "Pilot",
            "Smith, Ann",
            "Büro München",
            "=SUM(A1)",
            "contoso.com",
            "a.b",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../etc",
            "..",
            ".",
            "a/b",
            "a\\b",
            "x\r\ny",
            "x\ny",
            "tab\there",
            " lead",
            "trail ",
            "nul\0",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_name(&"x".repeat(MAX_NAME)).is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME + 1)).is_err());
    }

    proptest! {
        // Catches any accepted name that could leave a directory, break a line or a row.
        #[test]
        fn accepted_names_are_one_safe_path_segment(s in "\\PC{0,40}|[./\\\\a\r\n ]{0,8}") {
            if check_name(&s).is_ok() {
                prop_assert!(!s.is_empty() && s.len() <= MAX_NAME);
                prop_assert!(!s.contains('/') && !s.contains('\\') && !s.contains(".."));
                prop_assert!(!s.chars().any(char::is_control));
                prop_assert!(s != ".");
                let p = std::path::Path::new(&s);
                prop_assert_eq!(p.components().count(), 1);
                prop_assert!(matches!(p.components().next(), Some(std::path::Component::Normal(_))));
            }
        }

        // Catches a check that refuses a name by accident: any name of letters, digits and
        // inner spaces, commas and dashes passes.
        #[test]
        fn plain_names_pass(s in "[A-Za-z0-9ÄÖÜäöüß][A-Za-z0-9ÄÖÜäöüß ,=_-]{0,30}[A-Za-z0-9]") {
            prop_assert_eq!(check_name(&s), Ok(()));
        }
    }
}

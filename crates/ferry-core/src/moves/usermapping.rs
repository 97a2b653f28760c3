//! `usermapping.csv`, the file an environment move maps its users with: the file rules of the
//! Power Platform tenant-to-tenant move, with Microsoft's messages word for word so an operator
//! can match them against Microsoft's own error file.
//!
//! Line numbers are the file's own, 1-based, the header counted. A first line `Source,Destination`
//! (any case) is a header. Values are taken as written: a space around a value or the header is
//! reported (as an invalid e-mail), not trimmed away. A byte-order mark and CRLF line ends are
//! accepted; empty lines at the very end are ignored.

use crate::export::is_email;
use rustc_hash::FxHashMap;
use std::hash::{Hash, Hasher};

/// The file's name must be exactly this (case-sensitive).
pub const FILE_NAME: &str = "usermapping.csv";

/// For a file with another name, or not comma-separated.
pub const INVALID_FILE: &str =
    "The User mapping file provided for Tenant To Tenant migration is invalid";

/// One mapped user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub line: usize,
    pub source: &'a str,
    pub destination: &'a str,
}

/// An e-mail compared without regard to ASCII case.
#[derive(Clone, Copy)]
struct Ci<'a>(&'a str);
impl PartialEq for Ci<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.0.eq_ignore_ascii_case(o.0)
    }
}
impl Eq for Ci<'_> {}
impl Hash for Ci<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Lower-cased a chunk at a time, so the hasher sees words rather than bytes.
        let mut buf = [0u8; 64];
        for chunk in self.0.as_bytes().chunks(64) {
            let b = &mut buf[..chunk.len()];
            b.copy_from_slice(chunk);
            b.make_ascii_lowercase();
            h.write(b);
        }
        h.write_u8(0xff);
    }
}

fn join(lines: &[usize]) -> String {
    let mut s = String::with_capacity(lines.len() * 7);
    for (i, n) in lines.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&n.to_string());
    }
    s
}

/// Checks a mapping file by its name and bytes. Returns its rows, or every message the file
/// rules give, in the order: the file itself, lines without two columns, then per line invalid
/// e-mails and a target equal to its source, then repeated e-mails.
pub fn validate<'a>(name: &str, bytes: &'a [u8]) -> Result<Vec<Row<'a>>, Vec<String>> {
    if name != FILE_NAME {
        return Err(vec![INVALID_FILE.to_string()]);
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(vec![INVALID_FILE.to_string()]);
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    // Separated by semicolons or tabs: no comma anywhere.
    if lines.is_empty() || !lines.iter().any(|l| l.contains(',')) {
        return Err(vec![INVALID_FILE.to_string()]);
    }
    let header = lines[0].eq_ignore_ascii_case("Source,Destination");
    let first = usize::from(header);

    let mut columns = Vec::new();
    let mut per_line = Vec::new();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate().skip(first) {
        let n = i + 1;
        let Some((s, d)) = l.split_once(',').filter(|(_, d)| !d.contains(',')) else {
            columns.push(n);
            continue;
        };
        let (ok_s, ok_d) = (is_email(s), is_email(d));
        if !ok_s {
            per_line.push(format!("Invalid Email Format '{s}'"));
        }
        if !ok_d {
            per_line.push(format!("Invalid Email Format '{d}'"));
        }
        if ok_s && ok_d && s.eq_ignore_ascii_case(d) {
            per_line.push(format!("Target on line '{n}' is same as source email ID"));
        }
        rows.push(Row {
            line: n,
            source: s,
            destination: d,
        });
    }

    // Repeated e-mails, in the Source column or in the Destination column.
    let mut repeated: Vec<(usize, String)> = Vec::new();
    for column in [0, 1] {
        // E-mail → the index of its first row; repeats are rare, so they go to a side list.
        let mut seen: FxHashMap<Ci<'a>, u32> = FxHashMap::default();
        seen.reserve(rows.len());
        let mut again: Vec<(u32, usize)> = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let v = if column == 0 { r.source } else { r.destination };
            if v.is_empty() {
                continue;
            }
            if let Some(&first) = seen.get(&Ci(v)) {
                again.push((first, r.line));
            } else {
                seen.insert(Ci(v), i as u32);
            }
        }
        again.sort_unstable();
        for group in again.chunk_by(|a, b| a.0 == b.0) {
            let first = &rows[group[0].0 as usize];
            let mut all = Vec::with_capacity(group.len() + 1);
            all.push(first.line);
            all.extend(group.iter().map(|g| g.1));
            let v = if column == 0 {
                first.source
            } else {
                first.destination
            };
            repeated.push((
                first.line,
                format!("Line '{}' have the same '{v}'", join(&all)),
            ));
        }
    }
    repeated.sort();

    let mut messages = Vec::new();
    if !columns.is_empty() {
        messages.push(format!(
            "Each line must have exactly two columns: '{}'",
            join(&columns)
        ));
    }
    messages.extend(per_line);
    messages.extend(repeated.into_iter().map(|(_, m)| m));
    if messages.is_empty() {
        Ok(rows)
    } else {
        Err(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<usize, Vec<String>> {
        validate(FILE_NAME, text.as_bytes()).map(|r| r.len())
    }

    #[test]
    fn good_files() {
        assert_eq!(
            check("Source,Destination\r\na@s.com,a@t.com\r\nb@s.com,b@t.com\r\n"),
            Ok(2)
        );
        assert_eq!(
            check("\u{feff}a@s.com,a@t.com\nb@s.com,b@t.com"),
            Ok(2),
            "no header, BOM, LF"
        );
        assert_eq!(check("SOURCE,destination\na@s.com,a@t.com\n\n\n"), Ok(1));
    }

    #[test]
    fn the_file_itself() {
        let want = Err(vec![INVALID_FILE.to_string()]);
        assert_eq!(
            validate("UserMapping.csv", b"a@s.com,a@t.com").map(|r| r.len()),
            want
        );
        assert_eq!(
            validate("mapping.csv", b"a@s.com,a@t.com").map(|r| r.len()),
            want
        );
        assert_eq!(
            check("a@s.com;a@t.com\nb@s.com;b@t.com\n"),
            want,
            "semicolons"
        );
        assert_eq!(check(""), want);
        assert_eq!(
            validate(FILE_NAME, b"a@s.com,\xff@t.com").map(|r| r.len()),
            want
        );
    }

    #[test]
    fn every_rule_with_microsofts_words() {
        let text = "Source,Destination\n\
                    a@s.com,a@t.com\n\
                    A@S.com,x@t.com\n\
                    b@s.com,b@t.com,extra\n\
                    c@s.com\n\
                    not-an-email,c@t.com\n\
                    d@s.com,D@S.COM\n\
                    e@s.com, e@t.com\n\
                    f@s.com,A@t.com\n\
                    a@s.com,g@t.com\n";
        assert_eq!(
            check(text),
            Err(vec![
                "Each line must have exactly two columns: '4, 5'".to_string(),
                "Invalid Email Format 'not-an-email'".to_string(),
                "Target on line '7' is same as source email ID".to_string(),
                "Invalid Email Format ' e@t.com'".to_string(),
                "Line '2, 3, 10' have the same 'a@s.com'".to_string(),
                "Line '2, 9' have the same 'a@t.com'".to_string(),
            ])
        );
        // A header with spaces is not a header: it is reported, not fixed.
        assert_eq!(
            check(" Source,Destination \na@s.com,a@t.com\n"),
            Err(vec![
                "Invalid Email Format ' Source'".to_string(),
                "Invalid Email Format 'Destination '".to_string()
            ])
        );
    }
}

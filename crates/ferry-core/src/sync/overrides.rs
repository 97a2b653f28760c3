//! The bulk override file of `ferry sync overrides import PROFILE FILE.csv`
//! (`POST /profiles/{name}/overrides/import`).
//!
//! A CSV file with a header naming its columns, the keys of `[[sync_profile.override]]`:
//! `source` (required), `target`, `exclude` (`true`/`false`, `yes`/`no`, `1`/`0`, empty for
//! false) and `reason`, in any order. Each row is a pin (a target) or an exclude, never both.
//! The file is read with a CSV parser (quotes, commas and line breaks inside values, a UTF-8
//! byte-order mark), and read whole before anything is applied: every bad row is reported with
//! its line, and a file with one is applied not at all.

use crate::config::Override;

/// A row of the file: the line it starts on, and the override it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub ov: Override,
}

/// How many bad rows an error lists before it counts the rest.
pub const MAX_LISTED: usize = 50;

/// The most rows one file may hold.
pub const MAX_ROWS: usize = 100_000;

/// Reads the file; `operator` is who imports it. `Err` lists every bad row (`line N: field:
/// why`), at most [`MAX_LISTED`] and then how many more there are.
pub fn read_csv(data: &[u8], operator: &str) -> Result<Vec<Row>, Vec<String>> {
    let (rows, errors) = read_rows(data, operator)?;
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(listed(errors.into_iter().map(|(_, e)| e).collect()))
    }
}

/// The good rows and every bad row's error with its line, for a caller that checks the good
/// rows further and reports all errors together. `Err`: the file cannot be read at all (its
/// header, its size).
#[allow(clippy::type_complexity)]
pub fn read_rows(
    data: &[u8],
    operator: &str,
) -> Result<(Vec<Row>, Vec<(u64, String)>), Vec<String>> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(data);
    let line = |p: Option<&csv::Position>| p.map_or(0, csv::Position::line);
    let header = r
        .headers()
        .map_err(|e| vec![format!("line {}: {e}", line(e.position()))])?
        .clone();
    let cols: Vec<String> = header
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    for (i, c) in cols.iter().enumerate() {
        if !["source", "target", "exclude", "reason"].contains(&c.as_str()) {
            return Err(vec![format!(
                "line 1: column {} `{c}` is not one of source, target, exclude, reason",
                i + 1
            )]);
        }
        if cols[..i].contains(c) {
            return Err(vec![format!("line 1: column `{c}` is named twice")]);
        }
    }
    let pos = |n: &str| cols.iter().position(|c| c == n);
    let Some(source) = pos("source") else {
        return Err(vec![
            "line 1: the header names no `source` column (columns: source, target, exclude, reason)"
                .into(),
        ]);
    };
    let (target, exclude, reason) = (pos("target"), pos("exclude"), pos("reason"));
    let mut rows: Vec<Row> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for rec in r.records() {
        if rows.len() + errors.len() >= MAX_ROWS {
            return Err(vec![format!(
                "the file holds more than {MAX_ROWS} rows; split it"
            )]);
        }
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                let at = line(e.position());
                errors.push((at, format!("line {at}: {e}")));
                // A row of the wrong length is skipped; a broken quote ends the file.
                if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    continue;
                }
                break;
            }
        };
        let at = line(rec.position());
        let get = |i: Option<usize>| {
            i.and_then(|i| rec.get(i))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let ex = match get(exclude)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("false" | "no" | "0") => false,
            Some("true" | "yes" | "1") => true,
            Some(_) => {
                errors.push((
                    at,
                    format!(
                        "line {at}: exclude: `{}` is not true or false",
                        get(exclude).unwrap_or_default()
                    ),
                ));
                continue;
            }
        };
        let ov = Override {
            source: get(Some(source)).unwrap_or_default(),
            target: get(target),
            exclude: ex,
            reason: get(reason),
            operator: operator.to_string(),
        };
        if let Err((field, why)) = ov.check() {
            errors.push((at, format!("line {at}: {field}: {why}")));
            continue;
        }
        let key = crate::transform::lowercase(std::borrow::Cow::Borrowed(ov.source.as_str()))
            .into_owned();
        if let Some(first) = seen.insert(key, at) {
            errors.push((
                at,
                format!(
                    "line {at}: source: `{}` is overridden on line {first} already",
                    ov.source
                ),
            ));
            continue;
        }
        rows.push(Row { line: at, ov });
    }
    if rows.is_empty() && errors.is_empty() {
        return Err(vec![
            "the file holds no overrides (a header and one row a source)".into(),
        ]);
    }
    Ok((rows, errors))
}

/// At most [`MAX_LISTED`] errors, then a line counting the rest.
pub fn listed(mut errors: Vec<String>) -> Vec<String> {
    if errors.len() > MAX_LISTED {
        let more = errors.len() - MAX_LISTED;
        errors.truncate(MAX_LISTED);
        errors.push(format!("… and {more} more"));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Would catch: a reader that splits on bare commas (AD names "Surname, Given"), loses a
    /// quoted line break, or takes a file with a bad row in part.
    #[test]
    fn reads_real_world_names_and_lists_every_bad_line() {
        let text = "\u{feff}source,target,reason\n\
                    \"Smith, Ann\",ann.smith@fabrikam.test,\"HR says: \"\"same person\"\"\"\n\
                    =cmd|' /C calc'!A0,c-0002,\n\
                    Ünal Çelik,\"Çelik, Ünal\",two lines are not allowed in a reason\n";
        let rows = read_csv(text.as_bytes(), "alice").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].ov.source, "Smith, Ann");
        assert_eq!(
            rows[0].ov.reason.as_deref(),
            Some("HR says: \"same person\"")
        );
        assert_eq!(rows[1].ov.source, "=cmd|' /C calc'!A0");
        assert_eq!(rows[1].ov.reason, None);
        assert_eq!(rows[2].ov.target.as_deref(), Some("Çelik, Ünal"));
        assert_eq!(rows[2].line, 4);
        assert!(rows.iter().all(|r| r.ov.operator == "alice"));

        let bad = "source,target,exclude\n\
                   a@x,b@y,\n\
                   ,b@y,\n\
                   c@x,,\n\
                   d@x,e@y,true\n\
                   A@X,,yes\n\
                   f@x,,maybe\n\
                   g@x,h@y\n\
                   i@x,j@y,false,extra\n";
        let e = read_csv(bad.as_bytes(), "alice").unwrap_err();
        let want = [
            "line 3: source: must not be empty",
            "line 4: target: give exactly one",
            "line 5: target: give exactly one",
            "line 6: source: `A@X` is overridden on line 2 already",
            "line 7: exclude: `maybe` is not true or false",
            "line 8:",
            "line 9:",
        ];
        assert_eq!(e.len(), want.len(), "{e:#?}");
        for (got, want) in e.iter().zip(want) {
            assert!(got.starts_with(want), "{got} should start with {want}");
        }
    }

    #[test]
    fn refuses_headers_it_does_not_know_and_empty_files() {
        let e = read_csv(b"source,target,comment\na,b,c\n", "x").unwrap_err();
        assert!(e[0].contains("`comment` is not one of"), "{e:?}");
        let e = read_csv(b"target\nb\n", "x").unwrap_err();
        assert!(e[0].contains("no `source` column"), "{e:?}");
        let e = read_csv(b"source,target\n", "x").unwrap_err();
        assert!(e[0].contains("holds no overrides"), "{e:?}");
        let many: String = std::iter::once("source,target\n".to_string())
            .chain((0..80).map(|i| format!("u{i},\n")))
            .collect();
        let e = read_csv(many.as_bytes(), "x").unwrap_err();
        assert_eq!(e.len(), MAX_LISTED + 1);
        assert_eq!(e.last().unwrap(), "… and 30 more");
    }

    fn field() -> impl Strategy<Value = String> {
        // Names as directories hold them: commas, quotes, line breaks are not allowed in reasons
        // but are in names; leading = + - @; non-ASCII; long.
        "[=+\\-@]?[A-Za-zÄÖÜäöüßÇçŁłÅå, \"'.\\n]{1,40}"
            .prop_filter("not blank", |s| !s.trim().is_empty())
    }

    proptest! {
        /// Every row written by a CSV writer reads back as the override it describes.
        #[test]
        fn written_rows_read_back(rows in proptest::collection::vec((field(), proptest::option::of(field()), "[A-Za-z ,\"]{0,30}"), 1..20)) {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["source", "target", "exclude", "reason"]).unwrap();
            let mut want = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (s, t, r) in rows {
                let key = crate::transform::lowercase(std::borrow::Cow::Borrowed(s.trim())).into_owned();
                if !seen.insert(key) {
                    continue;
                }
                let ex = if t.is_none() { "true" } else { "" };
                w.write_record([s.as_str(), t.as_deref().unwrap_or(""), ex, r.as_str()]).unwrap();
                want.push((s.trim().to_string(), t.map(|t| t.trim().to_string()), r.trim().to_string()));
            }
            let data = w.into_inner().unwrap();
            let got = read_csv(&data, "op").unwrap();
            prop_assert_eq!(got.len(), want.len());
            for (g, (s, t, r)) in got.iter().zip(want) {
                prop_assert_eq!(&g.ov.source, &s);
                prop_assert_eq!(&g.ov.target, &t);
                prop_assert_eq!(g.ov.exclude, t.is_none());
                prop_assert_eq!(g.ov.reason.clone().unwrap_or_default(), r);
            }
        }
    }
}

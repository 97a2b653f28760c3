//! The principal map: source → target uids, gids and SIDs, as every re-permissioning reader takes
//! it (`ferry repermission --map`, `ferry sddl translate --map`, `ferry icacls translate --map`, the
//! agent's runs).
//!
//! One reader takes every format ferry writes that carries principals, whatever the names in it
//! hold (AD's "Surname, Given", quotes, line breaks, a leading `=`):
//!
//! - `source,target` CSV, one pair a row: `uid:N`, `gid:N` or a SID on each side, of one kind;
//! - `ferry translation export --format csv` (its uid, gid and SID column pairs);
//! - `--format json` (an array of translation entries) and `--format sidmap` (`{"S-1-…": "S-1-…"}`).
//!
//! CSV is read with a CSV parser (RFC 4180 quoting, a UTF-8 byte-order mark tolerated), and an
//! error names its line (JSON: the entry). `usermapping.csv` holds only UPNs, so it is refused
//! with the formats that would do. The map is checked as a whole: a source mapped to two targets,
//! a target that is also a source (a second run would change things again) and a pair of two kinds
//! are refused. Which ids and SIDs a consumer may touch ([`crate::privileged`]) is its own check.

use crate::sid;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// One side of a pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    Uid(u32),
    Gid(u32),
    /// In canonical form (`S-1-…`, upper case prefix, decimal authority below 2^32).
    Sid(String),
}

impl Principal {
    /// `uid:N`, `gid:N` or a SID; `None` for anything else.
    pub fn parse(s: &str) -> Option<Principal> {
        let num = |p: &str| s.strip_prefix(p).and_then(|v| v.parse::<u32>().ok());
        if let Some(n) = num("uid:") {
            Some(Principal::Uid(n))
        } else if let Some(n) = num("gid:") {
            Some(Principal::Gid(n))
        } else if sid::looks_like_sid(s) {
            sid::parse_sid(s)
                .ok()
                .map(|x| Principal::Sid(x.to_string()))
        } else {
            None
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Principal::Uid(_) => "uid",
            Principal::Gid(_) => "gid",
            Principal::Sid(_) => "SID",
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Uid(n) => write!(f, "uid:{n}"),
            Principal::Gid(n) => write!(f, "gid:{n}"),
            Principal::Sid(s) => f.write_str(s),
        }
    }
}

/// A source → target pair and where it was read (`line 3`, `entry 2`, `profile `people``).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub at: String,
    pub source: Principal,
    pub target: Principal,
}

/// A checked map: every source once, no chains, each pair of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrincipalMap {
    pairs: Vec<Pair>,
}

const EXPECTED: &str = "expected the header `source,target` or one of ferry's translation exports (--format csv, json or sidmap)";

impl PrincipalMap {
    /// Reads a map in any of the formats above.
    pub fn read(text: &str) -> Result<PrincipalMap, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        match text.trim_start().chars().next() {
            None => Err(format!("line 1: the map is empty; {EXPECTED}")),
            Some('{') => read_sidmap(text),
            Some('[') => read_json(text),
            Some(_) => read_csv(text),
        }
    }

    /// Checks pairs from elsewhere (a run's translation entries) as a read map is checked.
    pub fn from_pairs(pairs: impl IntoIterator<Item = Pair>) -> Result<PrincipalMap, String> {
        let mut m = Builder::default();
        for p in pairs {
            m.push(p)?;
        }
        m.finish()
    }

    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The SID pairs (what the Windows engine uses).
    pub fn sids(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .filter_map(|p| match (&p.source, &p.target) {
                (Principal::Sid(s), Principal::Sid(t)) => Some((s.as_str(), t.as_str())),
                _ => None,
            })
    }
}

#[derive(Default)]
struct Builder {
    pairs: Vec<Pair>,
    seen: HashMap<Principal, usize>,
}

impl Builder {
    fn push(&mut self, p: Pair) -> Result<(), String> {
        if p.source.kind() != p.target.kind() {
            return Err(format!(
                "{}: `{}` → `{}`: each side must be uid:N, gid:N or a SID, of the same kind",
                p.at, p.source, p.target
            ));
        }
        if let Some(&i) = self.seen.get(&p.source) {
            let prev = &self.pairs[i];
            if prev.target == p.target {
                return Ok(());
            }
            return Err(format!(
                "{}: `{}` is mapped twice: to `{}` here and to `{}` at {}",
                p.at, p.source, p.target, prev.target, prev.at
            ));
        }
        self.seen.insert(p.source.clone(), self.pairs.len());
        self.pairs.push(p);
        Ok(())
    }

    fn finish(self) -> Result<PrincipalMap, String> {
        for p in &self.pairs {
            if p.source == p.target {
                continue;
            }
            if let Some(&i) = self.seen.get(&p.target) {
                let q = &self.pairs[i];
                if q.source != q.target {
                    return Err(format!(
                        "{}: {} is both a target (of {} at {}) and a source: runs would not be repeatable",
                        q.at, p.target, p.source, p.at
                    ));
                }
            }
        }
        Ok(PrincipalMap { pairs: self.pairs })
    }
}

fn principal(at: &str, v: &str) -> Result<Principal, String> {
    Principal::parse(v).ok_or_else(|| {
        let shown: String = v.chars().take(80).collect();
        format!("{at}: `{shown}` is not uid:N, gid:N or a SID")
    })
}

fn read_csv(text: &str) -> Result<PrincipalMap, String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let line = |p: Option<&csv::Position>| p.map_or(0, csv::Position::line);
    let header = r
        .headers()
        .map_err(|e| format!("line {}: {e}", line(e.position())))?
        .clone();
    let cols: Vec<String> = header.iter().map(str::to_ascii_lowercase).collect();
    let pos = |n: &str| cols.iter().position(|c| c == n);
    // Column pairs to read, and whether an empty side is allowed (the export leaves columns of
    // what an object does not have empty).
    // The export's columns hold bare ids: the column names the kind.
    let (columns, sparse): (Vec<(usize, usize, &str)>, bool) = if cols.len() == 2
        && pos("source") == Some(0)
        && pos("target") == Some(1)
    {
        (vec![(0, 1, "")], false)
    } else if ["uid", "gid", "sid"]
        .iter()
        .any(|k| pos(&format!("source_{k}")).is_some())
    {
        let pairs = ["uid", "gid", "sid"]
            .iter()
            .filter_map(|k| {
                let prefix = match *k {
                    "uid" => "uid:",
                    "gid" => "gid:",
                    _ => "",
                };
                Some((
                    pos(&format!("source_{k}"))?,
                    pos(&format!("target_{k}"))?,
                    prefix,
                ))
            })
            .collect();
        (pairs, true)
    } else if cols.len() == 2 && pos("source") == Some(0) && pos("destination") == Some(1) {
        return Err(
                "line 1: this is a usermapping.csv (UPNs, for environment moves); re-permissioning needs ids or SIDs: export the translation table with --format csv, json or sidmap"
                    .into(),
            );
    } else {
        let shown: String = header
            .iter()
            .collect::<Vec<_>>()
            .join(",")
            .chars()
            .take(120)
            .collect();
        return Err(format!("line 1: {EXPECTED}, found `{shown}`"));
    };
    let mut m = Builder::default();
    let mut rec = csv::StringRecord::new();
    loop {
        match r.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("line {}: {e}", line(e.position()))),
        }
        let n = line(rec.position());
        let at = format!("line {n}");
        if rec.iter().all(str::is_empty) {
            continue;
        }
        if rec.len() != header.len() {
            return Err(format!(
                "{at}: expected {} fields, found {}",
                header.len(),
                rec.len()
            ));
        }
        for &(si, ti, prefix) in &columns {
            let (s, t) = (&rec[si], &rec[ti]);
            match (s.is_empty(), t.is_empty()) {
                (true, true) if sparse => continue,
                (false, false) => {}
                _ if sparse => continue,
                _ => return Err(format!("{at}: expected `source,target`, both given")),
            }
            let side = |v: &str| {
                if prefix.is_empty() {
                    principal(&at, v)
                } else {
                    principal(&at, &format!("{prefix}{v}"))
                }
            };
            m.push(Pair {
                source: side(s)?,
                target: side(t)?,
                at: at.clone(),
            })?;
        }
    }
    m.finish()
}

fn read_sidmap(text: &str) -> Result<PrincipalMap, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| format!("line {}, column {}: {e}", e.line(), e.column()))?;
    let mut m = Builder::default();
    for (s, t) in &map {
        let at = format!("entry `{}`", s.chars().take(80).collect::<String>());
        let Some(t) = t.as_str() else {
            return Err(format!("{at}: the target must be a SID string"));
        };
        let (s, t) = (principal(&at, s)?, principal(&at, t)?);
        if !matches!(s, Principal::Sid(_)) || !matches!(t, Principal::Sid(_)) {
            return Err(format!("{at}: a sidmap maps SIDs to SIDs"));
        }
        m.push(Pair {
            at,
            source: s,
            target: t,
        })?;
    }
    m.finish()
}

/// The columns of a `--format json` entry a map needs; the others are ignored.
#[derive(Deserialize)]
struct JsonEntry {
    source_uid: Option<u32>,
    target_uid: Option<u32>,
    source_gid: Option<u32>,
    target_gid: Option<u32>,
    source_sid: Option<String>,
    target_sid: Option<String>,
}

fn read_json(text: &str) -> Result<PrincipalMap, String> {
    let entries: Vec<JsonEntry> = serde_json::from_str(text)
        .map_err(|e| format!("line {}, column {}: {e}", e.line(), e.column()))?;
    let mut m = Builder::default();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("entry {}", i + 1);
        if let (Some(s), Some(t)) = (e.source_uid, e.target_uid) {
            m.push(Pair {
                at: at.clone(),
                source: Principal::Uid(s),
                target: Principal::Uid(t),
            })?;
        }
        if let (Some(s), Some(t)) = (e.source_gid, e.target_gid) {
            m.push(Pair {
                at: at.clone(),
                source: Principal::Gid(s),
                target: Principal::Gid(t),
            })?;
        }
        if let (Some(s), Some(t)) = (&e.source_sid, &e.target_sid) {
            m.push(Pair {
                source: principal(&at, s)?,
                target: principal(&at, t)?,
                at,
            })?;
        }
    }
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{self, ExportFormat, TranslationEntry};
    use crate::model::ObjectKind;
    use proptest::prelude::*;

    #[test]
    fn a_display_name_with_a_comma_reads_back() {
        // Would catch: splitting the export on bare commas (issue 16, defect 2).
        let text = "profile,kind,source_id,target_id,source_name,target_name,source_upn,target_upn,source_mail,target_mail,source_sid,target_sid,source_uid,target_uid,source_gid,target_gid,rule,source_device_id,target_device_id\n\
            people,user,1,2,\"Smith, Ann\",\"Smith, Ann \"\"Annie\"\"\",,,,,S-1-5-21-1-2-3-1104,S-1-12-1-1-2-3-4,1001,2001,,,\"mail → mail\",,\n";
        let m = PrincipalMap::read(text).unwrap();
        assert_eq!(
            m.pairs()
                .iter()
                .map(|p| (p.source.to_string(), p.target.to_string()))
                .collect::<Vec<_>>(),
            [
                ("uid:1001".to_string(), "uid:2001".to_string()),
                ("S-1-5-21-1-2-3-1104".into(), "S-1-12-1-1-2-3-4".into())
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, want) in [
            ("", "line 1: the map is empty"),
            ("from,to\n", "line 1: expected the header"),
            (
                "Source,Destination\r\na@x.com,b@y.com\r\n",
                "usermapping.csv",
            ),
            (
                "source,target\nuid:1001,gid:2001\n",
                "line 2: `uid:1001` → `gid:2001`",
            ),
            (
                "source,target\nuid:1001,uid:2001\n\"uid:1002\nx\",uid:2\n",
                "line 3: `uid:1002\nx` is not",
            ),
            (
                "source,target\nuid:1,uid:2,uid:3\n",
                "line 2: expected 2 fields, found 3",
            ),
            (
                "source,target\nuid:1001,\n",
                "line 2: expected `source,target`",
            ),
            (
                "source,target\nuid:1001,uid:2001\nuid:1001,uid:3001\n",
                "line 3: `uid:1001` is mapped twice",
            ),
            (
                "source,target\nuid:1001,uid:2001\nuid:2001,uid:3001\n",
                "both a target",
            ),
            (
                "{\"S-1-5-21-1-2-3-1104\": 5}",
                "entry `S-1-5-21-1-2-3-1104`",
            ),
            ("[{\"source_uid\": \"x\"}]", "line 1, column"),
        ] {
            let e = PrincipalMap::read(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // An id kept as it is is no chain: a second run changes nothing.
        assert!(PrincipalMap::read("source,target\ngid:100,gid:100\ngid:5,gid:100\n").is_ok());
        assert!(PrincipalMap::read("source,target\ngid:100,gid:100\n").is_ok());
    }

    /// Names as directories hand them over: AD's "Surname, Given", quotes, line breaks, the
    /// characters spreadsheets treat as formulas, non-ASCII, very long.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z]{1,8}, [A-Za-z]{1,8}",
            "[=+\\-@][A-Za-z0-9(),\"]{0,12}",
            "[\"',;\\r\\n\\t a-zé]{0,20}",
            "\\PC{0,16}",
            "[a-z]{300,2000}",
        ]
    }

    fn sid() -> impl Strategy<Value = String> {
        (1u32..u32::MAX, 1u32..u32::MAX, 1000u32..100_000)
            .prop_map(|(a, b, r)| format!("S-1-5-21-{a}-{b}-7-{r}"))
    }

    fn entry() -> impl Strategy<Value = TranslationEntry> {
        (
            (name(), name(), name(), name()),
            (
                proptest::option::of(sid()),
                1000u32..60_000,
                proptest::option::of(1000u32..60_000),
            ),
            any::<bool>(),
        )
            .prop_map(|((sn, tn, su, rule), (s_sid, uid, gid), has_uid)| {
                TranslationEntry {
                    profile: "people".into(),
                    kind: ObjectKind::User,
                    source_id: format!("CN={sn},OU=Staff"),
                    target_id: tn.clone(),
                    source_name: sn,
                    target_name: tn,
                    source_upn: Some(su.clone()),
                    target_upn: None,
                    source_mail: Some(su),
                    target_mail: None,
                    target_sid: s_sid.as_ref().map(|s| format!("{s}9")),
                    source_sid: s_sid,
                    source_uid: has_uid.then_some(uid),
                    target_uid: has_uid.then_some(uid + 100_000),
                    source_gid: gid,
                    target_gid: gid.map(|g| g + 100_000),
                    rule: Some(rule),
                    source_device_id: None,
                    target_device_id: None,
                }
            })
    }

    proptest! {
        /// Would catch: a reader that splits fields itself, or one format's rows read differently
        /// by another: every export ferry writes reads back to exactly the entries' pairs.
        #[test]
        fn every_export_reads_back_to_its_pairs(entries in proptest::collection::vec(entry(), 0..12)) {
            // Unique sources (the table has each source once).
            let mut seen = std::collections::HashSet::new();
            let entries: Vec<_> = entries
                .into_iter()
                .filter(|e| seen.insert((e.source_uid, e.source_gid, e.source_sid.clone())))
                .collect();
            let mut want: Vec<(Principal, Principal)> = Vec::new();
            for e in &entries {
                if let (Some(s), Some(t)) = (e.source_uid, e.target_uid) {
                    want.push((Principal::Uid(s), Principal::Uid(t)));
                }
                if let (Some(s), Some(t)) = (e.source_gid, e.target_gid) {
                    want.push((Principal::Gid(s), Principal::Gid(t)));
                }
                if let (Some(s), Some(t)) = (&e.source_sid, &e.target_sid) {
                    want.push((Principal::Sid(s.clone()), Principal::Sid(t.clone())));
                }
            }
            want.sort();
            want.dedup_by(|a, b| a.0 == b.0);
            // Sources that collide (two entries of one gid) are not what this property is about.
            let sources: std::collections::HashSet<_> = want.iter().map(|p| &p.0).collect();
            prop_assume!(sources.len() == want.len());
            for format in [ExportFormat::Csv, ExportFormat::Json] {
                let body = String::from_utf8(export::render(&entries, format).body).unwrap();
                let m = PrincipalMap::read(&body).map_err(|e| TestCaseError::fail(format!("{format:?}: {e}")))?;
                let mut got: Vec<_> = m.pairs().iter().map(|p| (p.source.clone(), p.target.clone())).collect();
                got.sort();
                prop_assert_eq!(&got, &want, "{:?}", format);
            }
            let body = String::from_utf8(export::render(&entries, ExportFormat::Sidmap).body).unwrap();
            let m = PrincipalMap::read(&body).map_err(|e| TestCaseError::fail(format!("sidmap: {e}")))?;
            let mut got: Vec<_> = m.sids().map(|(s, t)| (s.to_string(), t.to_string())).collect();
            got.sort();
            let want_sids: Vec<_> = want.iter().filter_map(|(s, t)| match (s, t) {
                (Principal::Sid(s), Principal::Sid(t)) => Some((s.clone(), t.clone())),
                _ => None,
            }).collect();
            prop_assert_eq!(got, want_sids);
        }

        /// Would catch: a `source,target` file whose quoting the reader gets wrong; the reader
        /// reads what a CSV writer wrote, and reading is idempotent through a rewrite.
        #[test]
        fn source_target_files_read_back(pairs in proptest::collection::btree_map(1000u32..5000, 5000u32..9000, 0..20), crlf in any::<bool>()) {
            let mut w = csv::WriterBuilder::new()
                .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
                .quote_style(csv::QuoteStyle::Always)
                .from_writer(vec![]);
            w.write_record(["source", "target"]).unwrap();
            for (s, t) in &pairs {
                w.write_record([format!("uid:{s}"), format!("uid:{t}")]).unwrap();
            }
            let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
            let m = PrincipalMap::read(&text).unwrap();
            let got: Vec<_> = m.pairs().iter().map(|p| (p.source.clone(), p.target.clone())).collect();
            let want: Vec<_> = pairs.iter().map(|(s, t)| (Principal::Uid(*s), Principal::Uid(*t))).collect();
            prop_assert_eq!(got, want);
        }
    }
}

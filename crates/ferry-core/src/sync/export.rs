//! The translation table and its export formats.
//!
//! `csv` and `json` carry every column; `sidmap` is the flat `{"source SID": "target SID"}` map
//! workstation tools read; `usermapping` is the `usermapping.csv` of an environment move
//! (`Source,Destination` header, one user a line, source and destination UPN, falling back to mail),
//! produced so that it passes that file's rules: entries without an e-mail-shaped identity on either
//! side, or whose source or destination repeats (compared case-insensitively), are left out and
//! counted in [`Exported::skipped`].

use crate::model::ObjectKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One row of the translation table: a matched source object and its target.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranslationEntry {
    pub profile: String,
    pub kind: ObjectKind,
    pub source_id: String,
    pub target_id: String,
    pub source_name: String,
    pub target_name: String,
    pub source_upn: Option<String>,
    pub target_upn: Option<String>,
    pub source_mail: Option<String>,
    pub target_mail: Option<String>,
    pub source_sid: Option<String>,
    pub target_sid: Option<String>,
    pub source_uid: Option<u32>,
    pub target_uid: Option<u32>,
    pub source_gid: Option<u32>,
    pub target_gid: Option<u32>,
    /// The rule that matched, as described in the plan (`mail → mail (lowercase)`).
    pub rule: Option<String>,
    /// Devices: the id the device itself knows (Entra `deviceId`, what `dsregcmd /status`
    /// shows), on each side, where the directory has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_device_id: Option<String>,
}

impl TranslationEntry {
    /// The agent's view of this entry for one harvested profile (what a device applies: ids
    /// and SIDs on both sides, the target's name and UPN).
    pub fn for_profile(&self, profile: &str) -> crate::agent::ProfileTranslation {
        crate::agent::ProfileTranslation {
            profile: profile.to_string(),
            source_sid: self.source_sid.clone(),
            target_sid: self.target_sid.clone(),
            source_uid: self.source_uid,
            target_uid: self.target_uid,
            source_gid: self.source_gid,
            target_gid: self.target_gid,
            target_name: self.target_name.clone(),
            target_upn: self.target_upn.clone(),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Json,
    Sidmap,
    Usermapping,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "csv" => Some(ExportFormat::Csv),
            "json" => Some(ExportFormat::Json),
            "sidmap" => Some(ExportFormat::Sidmap),
            "usermapping" => Some(ExportFormat::Usermapping),
            _ => None,
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv | ExportFormat::Usermapping => "text/csv; charset=utf-8",
            ExportFormat::Json | ExportFormat::Sidmap => "application/json",
        }
    }
    pub fn file_name(self) -> &'static str {
        match self {
            ExportFormat::Csv => "translation.csv",
            ExportFormat::Json => "translation.json",
            ExportFormat::Sidmap => "sidmap.json",
            ExportFormat::Usermapping => "usermapping.csv",
        }
    }
}

/// An export's bytes and how many entries the format had to leave out.
pub struct Exported {
    pub body: Vec<u8>,
    pub written: usize,
    pub skipped: usize,
}

pub const CSV_HEADER: [&str; 19] = [
    "profile",
    "kind",
    "source_id",
    "target_id",
    "source_name",
    "target_name",
    "source_upn",
    "target_upn",
    "source_mail",
    "target_mail",
    "source_sid",
    "target_sid",
    "source_uid",
    "target_uid",
    "source_gid",
    "target_gid",
    "rule",
    "source_device_id",
    "target_device_id",
];

/// Renders entries in a format.
pub fn render(entries: &[TranslationEntry], format: ExportFormat) -> Exported {
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::with_capacity(entries.len() * 160));
            let _ = w.write_record(CSV_HEADER);
            let o = |s: &Option<String>| s.clone().unwrap_or_default();
            let n = |s: Option<u32>| s.map(|v| v.to_string()).unwrap_or_default();
            for e in entries {
                let _ = w.write_record([
                    e.profile.clone(),
                    e.kind.as_str().into(),
                    e.source_id.clone(),
                    e.target_id.clone(),
                    e.source_name.clone(),
                    e.target_name.clone(),
                    o(&e.source_upn),
                    o(&e.target_upn),
                    o(&e.source_mail),
                    o(&e.target_mail),
                    o(&e.source_sid),
                    o(&e.target_sid),
                    n(e.source_uid),
                    n(e.target_uid),
                    n(e.source_gid),
                    n(e.target_gid),
                    o(&e.rule),
                    o(&e.source_device_id),
                    o(&e.target_device_id),
                ]);
            }
            Exported {
                body: w.into_inner().unwrap_or_default(),
                written: entries.len(),
                skipped: 0,
            }
        }
        ExportFormat::Json => Exported {
            body: serde_json::to_vec_pretty(entries).unwrap_or_default(),
            written: entries.len(),
            skipped: 0,
        },
        ExportFormat::Sidmap => {
            let mut map = BTreeMap::new();
            let mut skipped = 0;
            for e in entries {
                match (&e.source_sid, &e.target_sid) {
                    (Some(s), Some(t)) => {
                        map.insert(s.as_str(), t.as_str());
                    }
                    _ => skipped += 1,
                }
            }
            let written = map.len();
            Exported {
                body: serde_json::to_vec_pretty(&map).unwrap_or_default(),
                written,
                skipped,
            }
        }
        ExportFormat::Usermapping => {
            let mut body = String::from("Source,Destination\r\n");
            let mut seen_s = std::collections::HashSet::new();
            let mut seen_t = std::collections::HashSet::new();
            let (mut written, mut skipped) = (0, 0);
            for e in entries.iter().filter(|e| e.kind == ObjectKind::User) {
                let s = e
                    .source_upn
                    .as_deref()
                    .filter(|v| is_email(v))
                    .or(e.source_mail.as_deref().filter(|v| is_email(v)));
                let t = e
                    .target_upn
                    .as_deref()
                    .filter(|v| is_email(v))
                    .or(e.target_mail.as_deref().filter(|v| is_email(v)));
                match (s, t) {
                    (Some(s), Some(t))
                        if !s.eq_ignore_ascii_case(t)
                            && seen_s.insert(s.to_lowercase())
                            && seen_t.insert(t.to_lowercase()) =>
                    {
                        body.push_str(s);
                        body.push(',');
                        body.push_str(t);
                        body.push_str("\r\n");
                        written += 1;
                    }
                    _ => skipped += 1,
                }
            }
            Exported {
                body: body.into_bytes(),
                written,
                skipped,
            }
        }
    }
}

/// The e-mail shape `usermapping.csv` accepts: one `@`, a non-empty local part, a dotted domain, no
/// spaces, commas or quotes.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && s.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !matches!(c, ',' | '"' | ';' | '<' | '>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str, t: &str, ssid: Option<&str>) -> TranslationEntry {
        TranslationEntry {
            profile: "p".into(),
            kind: ObjectKind::User,
            source_id: format!("id-{s}"),
            target_id: format!("id-{t}"),
            source_name: "Ann \"the\", Lee".into(),
            target_name: "Ὀδυσσεύς".into(),
            source_upn: Some(s.into()),
            target_upn: Some(t.into()),
            source_mail: None,
            target_mail: None,
            source_sid: ssid.map(Into::into),
            target_sid: ssid.map(|_| "S-1-12-1-1-2-3-4".into()),
            source_uid: Some(1000),
            target_uid: None,
            source_gid: None,
            target_gid: None,
            rule: Some("mail → mail".into()),
            source_device_id: None,
            target_device_id: None,
        }
    }

    #[test]
    fn csv_round_trips_hostile_values() {
        let rows = vec![e("ann@a.test", "ann@b.test", Some("S-1-5-21-1-2-3-1001"))];
        let out = render(&rows, ExportFormat::Csv);
        let mut r = csv::Reader::from_reader(out.body.as_slice());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[4], "Ann \"the\", Lee");
        assert_eq!(&rec[5], "Ὀδυσσεύς");
        assert_eq!(&rec[12], "1000");
    }

    #[test]
    fn usermapping_export_passes_the_file_rules() {
        // Mixed case, repeats across rows, a user without a target: what the export writes passes.
        let mut rows = Vec::new();
        for i in 0..500 {
            rows.push(e(
                &format!("User{}@contoso.test", i % 450),
                &format!("user{i}@fabrikam.test"),
                None,
            ));
        }
        rows.push(e("same@x.test", "SAME@x.test", None));
        let out = render(&rows, ExportFormat::Usermapping);
        let users = crate::usermapping::validate(crate::usermapping::FILE_NAME, &out.body)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(users.len(), out.written);
        assert_eq!(out.written, 450);
        assert_eq!(out.skipped, 51);
    }

    #[test]
    fn sidmap_and_usermapping() {
        let rows = vec![
            e("ann@a.test", "ann@b.test", Some("S-1-5-21-1-2-3-1001")),
            e("bob@a.test", "bob@b.test", None),
            e("ANN@a.test", "ann2@b.test", None), // repeats a source, case-insensitively
            e("same@x.test", "same@x.test", None), // target same as source
            e("nobody", "n@b.test", None),        // not an e-mail
        ];
        let s = render(&rows, ExportFormat::Sidmap);
        assert_eq!(
            String::from_utf8(s.body).unwrap(),
            "{\n  \"S-1-5-21-1-2-3-1001\": \"S-1-12-1-1-2-3-4\"\n}"
        );
        assert_eq!(s.skipped, 4);
        let u = render(&rows, ExportFormat::Usermapping);
        assert_eq!(
            String::from_utf8(u.body).unwrap(),
            "Source,Destination\r\nann@a.test,ann@b.test\r\nbob@a.test,bob@b.test\r\n"
        );
        assert_eq!((u.written, u.skipped), (2, 3));
    }

    #[test]
    fn email_shapes() {
        for ok in [
            "a@b.c",
            "first.last+tag@sub.example.com",
            "ὀδυσσεύς@παράδειγμα.δοκιμή",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "@b.c", "a@", "a@b", "a@@b.c", "a b@c.d", "a@b..c", "a@.b.c", "a,b@c.d",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}

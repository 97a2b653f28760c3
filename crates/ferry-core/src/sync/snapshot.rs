//! Directory snapshots: the `file` directory's JSON and CSV formats (docs/directories.md).
//!
//! JSON:
//! ```json
//! { "users":   [ { "id": "…", "name": "…", "upn": "…", "mail": "…", "sid": "S-1-…",
//!                  "uid_number": 1000, "gid_number": 1000, "attributes": { "employeeId": "E1",
//!                  "proxyAddresses": ["smtp:a@x", "SMTP:b@x"] } } ],
//!   "groups":  [ { "id": "…", "name": "…", "members": ["<user or group id>", …] } ],
//!   "devices": [ { "id": "…", "name": "…", "attributes": { "deviceId": "…" } } ] }
//! ```
//! CSV: a header line naming the columns `type` (user, group, device), `id`, `name`, and optionally
//! `upn`, `mail`, `sid`, `uid_number`, `gid_number`, `members` (ids separated by `;`); every other
//! column is an attribute of that name. Errors name the line and the field.

use crate::model::{DirObject, ObjectKind};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A snapshot that could not be read: where, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{location}: {message}")]
pub struct SnapshotError {
    /// `line L, column C` (JSON), `line L, field F` (CSV), with the JSON path where known.
    pub location: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSnapshot {
    #[serde(default)]
    users: Objects<0>,
    #[serde(default)]
    groups: Objects<1>,
    #[serde(default)]
    devices: Objects<2>,
}

/// A list of objects of kind `K` (0 user, 1 group, 2 device), converted as each is parsed so that
/// a large snapshot is never held twice.
#[derive(Default)]
struct Objects<const K: u8>(Vec<DirObject>);

impl<'de, const K: u8> Deserialize<'de> for Objects<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const K: u8>;
        impl<'de, const K: u8> Visitor<'de> for V<K> {
            type Value = Objects<K>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Objects<K>, A::Error> {
                let kind = match K {
                    0 => ObjectKind::User,
                    1 => ObjectKind::Group,
                    _ => ObjectKind::Device,
                };
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(j) = seq.next_element::<JsonObject>()? {
                    out.push(into_object(kind, j));
                }
                Ok(Objects(out))
            }
        }
        d.deserialize_seq(V::<K>)
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct JsonObject {
    id: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gid_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    members: Vec<String>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    attributes: Attrs,
}

/// Attributes as an ordered list of pairs; a JSON array value is a multi-valued attribute.
#[derive(Default)]
struct Attrs(Vec<(String, String)>);

impl Attrs {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        struct One(Vec<String>);
        impl<'de> Deserialize<'de> for One {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct OV;
                impl<'de> Visitor<'de> for OV {
                    type Value = One;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a string, number, boolean, or an array of them")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<One, E> {
                        Ok(One(vec![v.to_string()]))
                    }
                    fn visit_string<E: de::Error>(self, v: String) -> Result<One, E> {
                        Ok(One(vec![v]))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<One, E> {
                        Ok(One(vec![v.to_string()]))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<One, E> {
                        Ok(One(vec![v.to_string()]))
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<One, E> {
                        Ok(One(vec![v.to_string()]))
                    }
                    fn visit_bool<E: de::Error>(self, v: bool) -> Result<One, E> {
                        Ok(One(vec![v.to_string()]))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<One, E> {
                        Ok(One(vec![]))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<One, A::Error> {
                        let mut out = Vec::new();
                        while let Some(One(v)) = seq.next_element::<One>()? {
                            out.extend(v);
                        }
                        Ok(One(out))
                    }
                }
                d.deserialize_any(OV)
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Attrs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of attribute names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attrs, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    let One(vs) = map.next_value()?;
                    out.extend(vs.into_iter().map(|v| (k.clone(), v)));
                }
                Ok(Attrs(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for Attrs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        let mut i = 0;
        while i < self.0.len() {
            let k = &self.0[i].0;
            let mut j = i;
            while j < self.0.len() && &self.0[j].0 == k {
                j += 1;
            }
            if j - i == 1 {
                m.serialize_entry(k, &self.0[i].1)?;
            } else {
                let vs: Vec<&String> = self.0[i..j].iter().map(|(_, v)| v).collect();
                m.serialize_entry(k, &vs)?;
            }
            i = j;
        }
        m.end()
    }
}

fn into_object(kind: ObjectKind, j: JsonObject) -> DirObject {
    let mut o = DirObject {
        kind,
        id: j.id,
        dn: j.dn,
        name: j.name,
        upn: j.upn,
        mail: j.mail,
        sid: j.sid,
        uid_number: j.uid_number,
        gid_number: j.gid_number,
        members: j.members,
        attrs: j.attributes.0,
    };
    o.normalise();
    o
}

/// Parses a JSON snapshot.
pub fn parse_json(bytes: &[u8]) -> Result<Vec<DirObject>, SnapshotError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let snap: JsonSnapshot = match serde_json::from_slice(bytes) {
        Ok(s) => s,
        Err(_) => {
            // Parse again, slower, to learn the path of the first error.
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let e = match serde_path_to_error::deserialize::<_, JsonSnapshot>(&mut de) {
                Ok(_) => {
                    return Err(SnapshotError {
                        location: "document".into(),
                        message: "invalid JSON snapshot".into(),
                    });
                }
                Err(e) => e,
            };
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            let path = if path == "." {
                String::new()
            } else {
                format!(", {path}")
            };
            return Err(SnapshotError {
                location: format!("line {}, column {}{path}", inner.line(), inner.column()),
                message: msg,
            });
        }
    };
    let mut out = snap.users.0;
    out.extend(snap.groups.0);
    out.extend(snap.devices.0);
    check(&out, |i| {
        let o = &out[i];
        let list = format!("{}s", o.kind);
        let pos = out[..i].iter().filter(|x| x.kind == o.kind).count();
        format!("{list}[{pos}]")
    })?;
    Ok(out)
}

/// Parses a JSON snapshot from a reader without holding the whole document in memory. On malformed
/// input it reports only that it failed; call [`parse_json`] on the bytes for the precise place.
pub fn parse_json_reader(r: impl std::io::BufRead) -> Result<Vec<DirObject>, SnapshotError> {
    let mut r = r;
    let bom = r
        .fill_buf()
        .map(|b| b.starts_with(b"\xEF\xBB\xBF"))
        .unwrap_or(false);
    if bom {
        r.consume(3);
    }
    let snap: JsonSnapshot = serde_json::from_reader(r).map_err(|e| SnapshotError {
        location: format!("line {}, column {}", e.line(), e.column()),
        message: e.to_string(),
    })?;
    let mut out = snap.users.0;
    out.extend(snap.groups.0);
    out.extend(snap.devices.0);
    check(&out, |i| {
        let o = &out[i];
        let pos = out[..i].iter().filter(|x| x.kind == o.kind).count();
        format!("{}s[{pos}]", o.kind)
    })?;
    Ok(out)
}

/// Ids must be present and unique within a kind; names must not be empty.
fn check(objs: &[DirObject], locate: impl Fn(usize) -> String) -> Result<(), SnapshotError> {
    let mut seen: rustc_hash::FxHashMap<(ObjectKind, &str), usize> =
        rustc_hash::FxHashMap::default();
    seen.reserve(objs.len());
    for (i, o) in objs.iter().enumerate() {
        if o.id.trim().is_empty() {
            return Err(SnapshotError {
                location: format!("{}.id", locate(i)),
                message: "id must not be empty".into(),
            });
        }
        if let Some(prev) = seen.insert((o.kind, o.id.as_str()), i) {
            return Err(SnapshotError {
                location: format!("{}.id", locate(i)),
                message: format!(
                    "duplicate {} id `{}` (first at {})",
                    o.kind,
                    o.id,
                    locate(prev)
                ),
            });
        }
    }
    Ok(())
}

/// Renders objects as a JSON snapshot (the inverse of [`parse_json`]).
pub fn render_json(objs: &[DirObject]) -> Vec<u8> {
    let to = |o: &DirObject| JsonObject {
        id: o.id.clone(),
        name: o.name.clone(),
        dn: o.dn.clone(),
        upn: o.upn.clone(),
        mail: o.mail.clone(),
        sid: o.sid.clone(),
        uid_number: o.uid_number,
        gid_number: o.gid_number,
        members: o.members.clone(),
        attributes: Attrs(o.attrs.clone()),
    };
    #[derive(Serialize)]
    struct Out {
        users: Vec<JsonObject>,
        groups: Vec<JsonObject>,
        devices: Vec<JsonObject>,
    }
    let pick = |k| objs.iter().filter(|o| o.kind == k).map(to).collect();
    let out = Out {
        users: pick(ObjectKind::User),
        groups: pick(ObjectKind::Group),
        devices: pick(ObjectKind::Device),
    };
    let mut v = serde_json::to_vec_pretty(&out).unwrap_or_default();
    v.push(b'\n');
    v
}

const CSV_FIXED: [&str; 9] = [
    "type",
    "id",
    "name",
    "upn",
    "mail",
    "sid",
    "uid_number",
    "gid_number",
    "members",
];

/// Parses a CSV snapshot.
pub fn parse_csv(bytes: &[u8]) -> Result<Vec<DirObject>, SnapshotError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let header = r
        .headers()
        .map_err(|e| SnapshotError {
            location: "line 1".into(),
            message: format!("cannot read the header: {e}"),
        })?
        .clone();
    let col = |n: &str| header.iter().position(|h| h == n);
    let (Some(c_type), Some(c_id), Some(c_name)) = (col("type"), col("id"), col("name")) else {
        return Err(SnapshotError {
            location: "line 1".into(),
            message: "the header must name the columns `type`, `id` and `name`".into(),
        });
    };
    for (i, h) in header.iter().enumerate() {
        if h.trim().is_empty() {
            return Err(SnapshotError {
                location: format!("line 1, column {}", i + 1),
                message: "empty column name in the header".into(),
            });
        }
        if header.iter().take(i).any(|p| p == h) {
            return Err(SnapshotError {
                location: format!("line 1, column {}", i + 1),
                message: format!("column `{h}` appears twice"),
            });
        }
    }
    let (c_upn, c_mail, c_sid, c_uid, c_gid, c_members) = (
        col("upn"),
        col("mail"),
        col("sid"),
        col("uid_number"),
        col("gid_number"),
        col("members"),
    );
    let extra: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| !CSV_FIXED.contains(h))
        .map(|(i, h)| (i, h.to_string()))
        .collect();
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        match r.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("{len} fields, but the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { err, .. } => {
                        format!("field {} is not valid UTF-8", err.field() + 1)
                    }
                    _ => e.to_string(),
                };
                return Err(SnapshotError {
                    location: format!("line {line}"),
                    message,
                });
            }
        }
        let line = rec.position().map_or(0, |p| p.line());
        let field = |i: usize| rec.get(i).unwrap_or("");
        let opt = |c: Option<usize>| c.map(field).filter(|v| !v.is_empty()).map(str::to_string);
        let num = |c: Option<usize>, name: &str| -> Result<Option<u32>, SnapshotError> {
            match opt(c) {
                None => Ok(None),
                Some(v) => v.parse::<u32>().map(Some).map_err(|_| SnapshotError {
                    location: format!("line {line}, field {name}"),
                    message: format!("`{v}` is not a number from 0 to 4294967295"),
                }),
            }
        };
        let kind = ObjectKind::parse(field(c_type)).ok_or_else(|| SnapshotError {
            location: format!("line {line}, field type"),
            message: format!(
                "`{}` is not an object type; expected user, group or device",
                field(c_type)
            ),
        })?;
        let mut o = DirObject::new(kind, field(c_id), field(c_name));
        o.upn = opt(c_upn);
        o.mail = opt(c_mail);
        o.sid = opt(c_sid);
        o.uid_number = num(c_uid, "uid_number")?;
        o.gid_number = num(c_gid, "gid_number")?;
        o.members = opt(c_members)
            .map(|m| {
                m.split(';')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        o.attrs = extra
            .iter()
            .filter(|(i, _)| !field(*i).is_empty())
            .map(|(i, h)| (h.clone(), field(*i).to_string()))
            .collect();
        o.normalise();
        out.push(o);
        lines.push(line);
    }
    check(&out, |i| format!("line {}, field id", lines[i]))?;
    Ok(out)
}

/// Renders objects as a CSV snapshot (the inverse of [`parse_csv`] for single-valued attributes).
pub fn render_csv(objs: &[DirObject]) -> Vec<u8> {
    let mut extra: Vec<&str> = objs
        .iter()
        .flat_map(|o| o.attrs.iter().map(|(k, _)| k.as_str()))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(CSV_FIXED.iter().copied().chain(extra.iter().copied()));
    for o in objs {
        let mut row: Vec<String> = vec![
            o.kind.as_str().into(),
            o.id.clone(),
            o.name.clone(),
            o.upn.clone().unwrap_or_default(),
            o.mail.clone().unwrap_or_default(),
            o.sid.clone().unwrap_or_default(),
            o.uid_number.map(|v| v.to_string()).unwrap_or_default(),
            o.gid_number.map(|v| v.to_string()).unwrap_or_default(),
            o.members.join(";"),
        ];
        for k in &extra {
            row.push(o.attr(k).unwrap_or_default().to_string());
        }
        let _ = w.write_record(&row);
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Vec<DirObject> {
        let mut u = DirObject::new(ObjectKind::User, "u-1", "Ὀδυσσεύς \"Odie\", O'Brien");
        u.upn = Some("odie@contoso.test".into());
        u.mail = Some("(odie)*\\00@contoso.test".into());
        u.sid = Some("S-1-5-21-1-2-3-1001".into());
        u.uid_number = Some(4_294_967_295);
        u.attrs = vec![
            ("description".into(), "x".repeat(70_000)),
            ("note".into(), "line1\nline2\r\n;|,".into()),
        ];
        u.normalise();
        let mut g = DirObject::new(ObjectKind::Group, "g-1", "Sales & (Ops)");
        g.members = vec!["u-1".into()];
        vec![
            u,
            g,
            DirObject::new(ObjectKind::Device, "d-1", "CONTOSO-LT-0001"),
        ]
    }

    #[test]
    fn json_and_csv_round_trip_hostile_values() {
        let objs = hostile();
        assert_eq!(parse_json(&render_json(&objs)).unwrap(), objs);
        assert_eq!(parse_csv(&render_csv(&objs)).unwrap(), objs);
    }

    #[test]
    fn reader_and_slice_parse_alike() {
        let objs = hostile();
        let bytes = render_json(&objs);
        assert_eq!(
            parse_json_reader(std::io::BufReader::new(bytes.as_slice())).unwrap(),
            objs
        );
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend(&bytes);
        assert_eq!(parse_json_reader(bom.as_slice()).unwrap(), objs);
        assert!(parse_json_reader(&b"{\"users\": [1]}"[..]).is_err());
    }

    #[test]
    fn json_multi_values_bom_and_numbers() {
        let src = "\u{feff}{\"users\":[{\"id\":\"1\",\"name\":\"a\",\"attributes\":{\"proxyAddresses\":[\"smtp:a\",\"smtp:b\"],\"n\":7,\"ok\":true}}]}";
        let o = parse_json(src.as_bytes()).unwrap();
        assert_eq!(
            o[0].values(&crate::model::AttrRef::parse("proxyAddresses")),
            ["smtp:a", "smtp:b"]
        );
        assert_eq!(o[0].attr("n"), Some("7"));
    }

    #[test]
    fn json_errors_say_where() {
        let cases = [
            (
                "{\"users\":[{\"id\":\"1\",\"name\":\"a\"},\n{\"id\":\"2\",\"name\":\"b\",\"uid_number\":\"x\"}]}",
                "line 2, column 37, users[1].uid_number",
            ),
            (
                "{\"users\":[{\"id\":\"1\"}]}",
                "line 1, column 20, users[0]",
            ),
            (
                "{\"users\":[{\"id\":\"1\",\"name\":\"a\",\"colour\":1}]}",
                "users[0].colour",
            ),
            (
                "{\"users\":[{\"id\":\"1\",\"name\":\"a\"},{\"id\":\"1\",\"name\":\"b\"}]}",
                "users[1].id",
            ),
            ("{\"users\":[", "line 1, column 10"),
        ];
        for (src, want) in cases {
            let e = parse_json(src.as_bytes()).unwrap_err();
            assert!(e.location.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn csv_errors_say_where() {
        let cases = [
            ("type,id,name\nuser,1,a\nperson,2,b\n", "line 3, field type"),
            (
                "type,id,name,uid_number\nuser,1,a,-4\n",
                "line 2, field uid_number",
            ),
            ("type,id,name\nuser,1,a\nuser,2\n", "line 3"),
            ("type,id\nuser,1\n", "line 1"),
            ("type,id,name\nuser,1,a\nuser,1,b\n", "line 3, field id"),
        ];
        for (src, want) in cases {
            let e = parse_csv(src.as_bytes()).unwrap_err();
            assert!(e.location.starts_with(want), "{src}: {e}");
        }
        let e = parse_csv(b"type,id,name\nuser,1,a\nuser,2\n").unwrap_err();
        assert_eq!(e.to_string(), "line 3: 2 fields, but the header has 3");
    }
}

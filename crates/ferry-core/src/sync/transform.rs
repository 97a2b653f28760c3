//! Value transforms applied to an attribute before it is compared (match rules) or written
//! (attribute mappings).
//!
//! In configuration a transform is a bare name (`"lowercase"`) or a one-key table
//! (`{ replace_suffix = ["@contoso.test", "@fabrikam.test"] }`). Suffix and prefix replacement compare
//! case-insensitively, because the values they are meant for (mail domains, UPN suffixes, NetBIOS
//! prefixes) are case-insensitive everywhere ferry reads them.

use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

#[derive(Clone, Debug)]
pub enum Transform {
    Lowercase,
    Uppercase,
    Trim,
    ReplaceSuffix(String, String),
    ReplacePrefix(String, String),
    RegexReplace(Regex, String),
    Prefix(String),
    Suffix(String),
}

impl PartialEq for Transform {
    fn eq(&self, other: &Self) -> bool {
        use Transform::*;
        match (self, other) {
            (Lowercase, Lowercase) | (Uppercase, Uppercase) | (Trim, Trim) => true,
            (ReplaceSuffix(a, b), ReplaceSuffix(c, d))
            | (ReplacePrefix(a, b), ReplacePrefix(c, d)) => a == c && b == d,
            (RegexReplace(a, b), RegexReplace(c, d)) => a.as_str() == c.as_str() && b == d,
            (Prefix(a), Prefix(b)) | (Suffix(a), Suffix(b)) => a == b,
            _ => false,
        }
    }
}

const EXPECTED: &str = "`lowercase`, `uppercase`, `trim`, or a table with one of `replace_suffix = [from, to]`, \
`replace_prefix = [from, to]`, `regex_replace = [pattern, replacement]`, `prefix = \"…\"`, `suffix = \"…\"`";

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.is_char_boundary(s.len() - suffix.len())
        && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        && (suffix.is_ascii() || s.ends_with(suffix))
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
        && (prefix.is_ascii() || s.starts_with(prefix))
}

impl Transform {
    /// Applies the transform; borrows when the value does not change.
    pub fn apply<'a>(&self, v: Cow<'a, str>) -> Cow<'a, str> {
        match self {
            Transform::Lowercase => lowercase(v),
            Transform::Uppercase => {
                if v.chars().any(|c| c.is_lowercase()) {
                    Cow::Owned(v.to_uppercase())
                } else {
                    v
                }
            }
            Transform::Trim => {
                let t = v.trim();
                if t.len() == v.len() {
                    v
                } else {
                    Cow::Owned(t.to_string())
                }
            }
            Transform::ReplaceSuffix(from, to) => {
                if ends_with_ci(&v, from) {
                    let mut s = String::with_capacity(v.len() - from.len() + to.len());
                    s.push_str(&v[..v.len() - from.len()]);
                    s.push_str(to);
                    Cow::Owned(s)
                } else {
                    v
                }
            }
            Transform::ReplacePrefix(from, to) => {
                if starts_with_ci(&v, from) {
                    let mut s = String::with_capacity(v.len() - from.len() + to.len());
                    s.push_str(to);
                    s.push_str(&v[from.len()..]);
                    Cow::Owned(s)
                } else {
                    v
                }
            }
            Transform::RegexReplace(re, rep) => match re.replace_all(&v, rep.as_str()) {
                Cow::Borrowed(_) => v,
                Cow::Owned(s) => Cow::Owned(s),
            },
            Transform::Prefix(p) => Cow::Owned(format!("{p}{v}")),
            Transform::Suffix(p) => Cow::Owned(format!("{v}{p}")),
        }
    }
}

/// Lower-cases without allocating when the value is already lower case (the common case for mail).
pub fn lowercase(v: Cow<'_, str>) -> Cow<'_, str> {
    if v.is_ascii() {
        if v.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(v.to_ascii_lowercase())
        } else {
            v
        }
    } else if v.chars().any(|c| c.is_uppercase()) {
        Cow::Owned(v.to_lowercase())
    } else {
        v
    }
}

/// Applies a chain of transforms in order.
pub fn apply_all<'a>(chain: &[Transform], v: &'a str) -> Cow<'a, str> {
    let mut cur = Cow::Borrowed(v);
    for t in chain {
        cur = t.apply(cur);
    }
    cur
}

impl Serialize for Transform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Transform::Lowercase => s.serialize_str("lowercase"),
            Transform::Uppercase => s.serialize_str("uppercase"),
            Transform::Trim => s.serialize_str("trim"),
            other => {
                let mut m = s.serialize_map(Some(1))?;
                match other {
                    Transform::ReplaceSuffix(a, b) => {
                        m.serialize_entry("replace_suffix", &[a, b])?
                    }
                    Transform::ReplacePrefix(a, b) => {
                        m.serialize_entry("replace_prefix", &[a, b])?
                    }
                    Transform::RegexReplace(a, b) => {
                        m.serialize_entry("regex_replace", &[a.as_str(), b])?
                    }
                    Transform::Prefix(a) => m.serialize_entry("prefix", a)?,
                    Transform::Suffix(a) => m.serialize_entry("suffix", a)?,
                    _ => unreachable!("simple transforms are handled above"),
                }
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Transform;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Transform, E> {
                match v {
                    "lowercase" => Ok(Transform::Lowercase),
                    "uppercase" => Ok(Transform::Uppercase),
                    "trim" => Ok(Transform::Trim),
                    "replace_suffix" | "replace_prefix" | "regex_replace" | "prefix" | "suffix" => {
                        Err(E::custom(format!(
                            "transform `{v}` needs arguments: write it as a table, e.g. {{ {v} = … }}"
                        )))
                    }
                    _ => Err(E::custom(format!(
                        "unknown transform `{v}`, expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Transform, A::Error> {
                let key: String = map.next_key()?.ok_or_else(|| {
                    de::Error::custom(format!("empty transform table, expected {EXPECTED}"))
                })?;
                let pair = |map: &mut A| -> Result<(String, String), A::Error> {
                    let v: Vec<String> = map.next_value()?;
                    match <[String; 2]>::try_from(v) {
                        Ok([a, b]) => Ok((a, b)),
                        Err(v) => Err(de::Error::custom(format!(
                            "`{key}` takes two strings [from, to], got {} value(s)",
                            v.len()
                        ))),
                    }
                };
                let t = match key.as_str() {
                    "replace_suffix" => {
                        let (a, b) = pair(&mut map)?;
                        Transform::ReplaceSuffix(a, b)
                    }
                    "replace_prefix" => {
                        let (a, b) = pair(&mut map)?;
                        Transform::ReplacePrefix(a, b)
                    }
                    "regex_replace" => {
                        let (a, b) = pair(&mut map)?;
                        let re = Regex::new(&a).map_err(|e| de::Error::custom(format!("`regex_replace` pattern `{a}` is not a valid regular expression: {e}")))?;
                        Transform::RegexReplace(re, b)
                    }
                    "prefix" => Transform::Prefix(map.next_value()?),
                    "suffix" => Transform::Suffix(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                            "unknown transform `{other}`, expected {EXPECTED}"
                        )));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a transform table has exactly one key; `{extra}` is one too many"
                    )));
                }
                Ok(t)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(toml_src: &str) -> Result<Vec<Transform>, String> {
        #[derive(Deserialize)]
        struct W {
            t: Vec<Transform>,
        }
        toml::from_str::<W>(toml_src)
            .map(|w| w.t)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn table_of_transforms() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"t = ["lowercase"]"#,
                "Ann.Lee@Contoso.TEST",
                "ann.lee@contoso.test",
            ),
            (r#"t = ["uppercase"]"#, "ann", "ANN"),
            (r#"t = ["trim"]"#, "  ann \t", "ann"),
            (
                r#"t = [{ replace_suffix = ["@contoso.test", "@fabrikam.test"] }]"#,
                "ann@CONTOSO.test",
                "ann@fabrikam.test",
            ),
            (
                r#"t = [{ replace_suffix = ["@contoso.test", "@fabrikam.test"] }]"#,
                "ann@other.test",
                "ann@other.test",
            ),
            (
                r#"t = [{ replace_prefix = ["CONTOSO\\", "FABRIKAM\\"] }]"#,
                "contoso\\ann",
                "FABRIKAM\\ann",
            ),
            (
                r#"t = [{ regex_replace = ["^(\\w+)\\.(\\w+)@.*$", "$2.$1"] }]"#,
                "ann.lee@x",
                "lee.ann",
            ),
            (
                r#"t = [{ prefix = "x-" }, { suffix = "-y" }]"#,
                "ann",
                "x-ann-y",
            ),
            (
                r#"t = ["lowercase", { replace_suffix = ["@contoso.test", "@fabrikam.test"] }]"#,
                "Ὀδυσσεύς@CONTOSO.test",
                "ὀδυσσεύς@fabrikam.test",
            ),
        ];
        for (src, input, want) in cases {
            let chain = t(src).unwrap();
            assert_eq!(apply_all(&chain, input), *want, "{src}");
        }
    }

    #[test]
    fn bad_transforms_say_what_is_expected() {
        assert!(
            t(r#"t = ["lowercas"]"#)
                .unwrap_err()
                .contains("unknown transform `lowercas`")
        );
        assert!(
            t(r#"t = ["replace_suffix"]"#)
                .unwrap_err()
                .contains("needs arguments")
        );
        assert!(
            t(r#"t = [{ replace_suffix = ["a"] }]"#)
                .unwrap_err()
                .contains("two strings")
        );
        assert!(
            t(r#"t = [{ regex_replace = ["(", "x"] }]"#)
                .unwrap_err()
                .contains("not a valid regular expression")
        );
        assert!(
            t(r#"t = [{ prefix = "a", suffix = "b" }]"#)
                .unwrap_err()
                .contains("exactly one key")
        );
    }

    #[test]
    fn multibyte_suffix_does_not_panic() {
        let chain = [Transform::ReplaceSuffix("é".into(), "e".into())];
        assert_eq!(apply_all(&chain, "café"), "cafe");
        assert_eq!(apply_all(&chain, "ab"), "ab");
        assert_eq!(apply_all(&chain, "é"), "e");
        let chain = [Transform::ReplaceSuffix("x".into(), "y".into())];
        assert_eq!(apply_all(&chain, "日本"), "日本");
    }

    #[test]
    fn serialises_back_to_config_form() {
        let chain = t(r#"t = ["lowercase", { replace_suffix = ["a", "b"] }]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&chain).unwrap(),
            r#"["lowercase",{"replace_suffix":["a","b"]}]"#
        );
    }
}

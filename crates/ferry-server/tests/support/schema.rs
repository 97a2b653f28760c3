//! A validator for the part of JSON Schema (2020-12, as OpenAPI 3.1 has it) that
//! docs/openapi.json uses: `$ref`, `type` (one or a list), `enum`, `const`, `oneOf`, `anyOf`,
//! `allOf`, `properties`, `required`, `additionalProperties`, `propertyNames`, `items`,
//! `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems` and the integer formats.
//! A keyword or format it does not know is reported as an error, so a document that starts using
//! one makes the test say so instead of passing unchecked.
//!
//! `strict`: an object whose schema lists `properties` and says nothing of
//! `additionalProperties` must not carry others (JSON Schema allows them; the wire contract of
//! ferry's answers does not: a field the document does not name is drift).

use serde_json::Value;

/// Keywords that say nothing about validity.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "default",
    "example",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
    "$comment",
];

pub struct Doc<'a> {
    pub root: &'a Value,
}

impl<'a> Doc<'a> {
    pub fn new(root: &'a Value) -> Doc<'a> {
        Doc { root }
    }

    /// The schema a `$ref` points at (`#/components/schemas/Name`); `s` itself without one.
    pub fn resolve(&self, s: &'a Value) -> &'a Value {
        let mut s = s;
        for _ in 0..32 {
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let ptr = r.strip_prefix('#').unwrap_or(r);
                    match self.root.pointer(ptr) {
                        Some(t) => s = t,
                        None => return &Value::Null,
                    }
                }
                None => return s,
            }
        }
        s
    }

    /// Every way `v` breaks `schema`, as `at: why` (empty: it conforms).
    pub fn validate(&self, schema: &Value, v: &Value, strict: bool) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, v, "$", strict, false, &mut out);
        out
    }

    /// The property names an object schema declares, through `$ref` and `allOf`; None when it
    /// declares none (a free-form object).
    fn declared(&self, s: &Value, depth: usize) -> Option<Vec<String>> {
        let s = self.resolve(s);
        if depth > 16 || s.get("additionalProperties").is_some() {
            return None;
        }
        let mut names: Vec<String> = s
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut any = s.get("properties").is_some();
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for m in all {
                match self.declared(m, depth + 1) {
                    Some(n) => {
                        any = true;
                        names.extend(n);
                    }
                    None if self.resolve(m).get("type").is_some_and(|t| t == "object") => {
                        return None;
                    }
                    None => {}
                }
            }
        }
        any.then_some(names)
    }

    /// `part`: `schema` is one part of an `allOf`, whose undeclared names are judged against
    /// the union of the parts.
    fn check(
        &self,
        schema: &Value,
        v: &Value,
        at: &str,
        strict: bool,
        part: bool,
        out: &mut Vec<String>,
    ) {
        let Some(s) = schema.as_object() else {
            match schema {
                Value::Bool(true) => {}
                Value::Bool(false) => out.push(format!("{at}: nothing is allowed here")),
                _ => out.push(format!("{at}: the schema is not an object: {schema}")),
            }
            return;
        };
        for (k, kv) in s {
            match k.as_str() {
                "$ref" => {
                    let t = self.resolve(schema);
                    if t.is_null() {
                        out.push(format!("{at}: unresolvable $ref {kv}"));
                    } else {
                        self.check(t, v, at, strict, part, out);
                    }
                }
                "type" => {
                    let types: Vec<&str> = match kv {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                        _ => vec![],
                    };
                    if !types.iter().any(|t| is_type(v, t)) {
                        out.push(format!("{at}: {} is not of type {kv}", short(v)));
                    }
                }
                "enum" => {
                    if !kv.as_array().is_some_and(|a| a.contains(v)) {
                        out.push(format!("{at}: {} is not one of {kv}", short(v)));
                    }
                }
                "const" => {
                    if kv != v {
                        out.push(format!("{at}: {} is not {kv}", short(v)));
                    }
                }
                "oneOf" | "anyOf" => {
                    let branches = kv.as_array().map(Vec::as_slice).unwrap_or_default();
                    let mut why = Vec::new();
                    let mut matched = 0;
                    for (i, b) in branches.iter().enumerate() {
                        let mut e = Vec::new();
                        self.check(b, v, at, strict, part, &mut e);
                        if e.is_empty() {
                            matched += 1;
                        } else {
                            why.push(format!("[{i}] {}", e.join("; ")));
                        }
                    }
                    if matched == 0 {
                        out.push(format!(
                            "{at}: {} matches none of {k}: {}",
                            short(v),
                            why.join(" | ")
                        ));
                    } else if k == "oneOf" && matched > 1 {
                        out.push(format!(
                            "{at}: {} matches {matched} branches of oneOf",
                            short(v)
                        ));
                    }
                }
                "allOf" => {
                    for b in kv.as_array().map(Vec::as_slice).unwrap_or_default() {
                        // Each part sees the whole object; undeclared names are judged below,
                        // against the union of the parts.
                        self.check(b, v, at, strict, true, out);
                    }
                }
                "properties" => {
                    if let (Some(props), Some(obj)) = (kv.as_object(), v.as_object()) {
                        for (name, ps) in props {
                            if let Some(x) = obj.get(name) {
                                self.check(ps, x, &format!("{at}.{name}"), strict, false, out);
                            }
                        }
                    }
                }
                "required" => {
                    if let Some(obj) = v.as_object() {
                        for r in kv.as_array().map(Vec::as_slice).unwrap_or_default() {
                            let r = r.as_str().unwrap_or_default();
                            if !obj.contains_key(r) {
                                out.push(format!("{at}: the required `{r}` is missing"));
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(obj) = v.as_object() {
                        let known: Vec<&String> = s
                            .get("properties")
                            .and_then(Value::as_object)
                            .map(|p| p.keys().collect())
                            .unwrap_or_default();
                        for (name, x) in obj {
                            if known.contains(&name) {
                                continue;
                            }
                            match kv {
                                Value::Bool(false) => {
                                    out.push(format!("{at}: `{name}` is not allowed here"))
                                }
                                Value::Bool(true) => {}
                                _ => self.check(kv, x, &format!("{at}.{name}"), strict, false, out),
                            }
                        }
                    }
                }
                "propertyNames" => {
                    if let Some(obj) = v.as_object() {
                        for name in obj.keys() {
                            self.check(
                                kv,
                                &Value::String(name.clone()),
                                &format!("{at}.{name} (its name)"),
                                strict,
                                false,
                                out,
                            );
                        }
                    }
                }
                "items" => {
                    if let Some(a) = v.as_array() {
                        for (i, x) in a.iter().enumerate() {
                            self.check(kv, x, &format!("{at}[{i}]"), strict, false, out);
                        }
                    }
                }
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                    if let (Some(x), Some(b)) = (v.as_f64(), kv.as_f64()) {
                        let ok = match k.as_str() {
                            "minimum" => x >= b,
                            "maximum" => x <= b,
                            "exclusiveMinimum" => x > b,
                            _ => x < b,
                        };
                        if !ok {
                            out.push(format!("{at}: {x} breaks {k} {b}"));
                        }
                    }
                }
                "minLength" | "maxLength" => {
                    if let (Some(x), Some(b)) = (v.as_str(), kv.as_u64()) {
                        let n = x.chars().count() as u64;
                        if (k == "minLength" && n < b) || (k == "maxLength" && n > b) {
                            out.push(format!("{at}: length {n} breaks {k} {b}"));
                        }
                    }
                }
                "minItems" | "maxItems" => {
                    if let (Some(x), Some(b)) = (v.as_array(), kv.as_u64()) {
                        let n = x.len() as u64;
                        if (k == "minItems" && n < b) || (k == "maxItems" && n > b) {
                            out.push(format!("{at}: {n} items break {k} {b}"));
                        }
                    }
                }
                "format" => {
                    if v.is_number()
                        && let Some(e) = integer_format(kv.as_str().unwrap_or_default(), v)
                    {
                        out.push(format!("{at}: {e}"));
                    }
                }
                k if ANNOTATIONS.contains(&k) => {}
                other => out.push(format!(
                    "{at}: the keyword `{other}` is not supported by tests/support/schema.rs"
                )),
            }
        }
        if strict
            && !part
            && !s.contains_key("$ref")
            && let Some(obj) = v.as_object()
            && let Some(names) = self.declared(schema, 0)
        {
            for name in obj.keys() {
                if !names.contains(name) {
                    out.push(format!(
                        "{at}: `{name}` is not in the document (the schema names {})",
                        names.join(", ")
                    ));
                }
            }
        }
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "number" => v.is_number(),
        "integer" => {
            v.is_i64()
                || v.is_u64()
                || v.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        _ => false,
    }
}

/// Why a number breaks an integer format (none: it fits, or the format is not an integer's).
fn integer_format(format: &str, v: &Value) -> Option<String> {
    let (lo, hi): (i128, i128) = match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" => (i64::MIN.into(), i64::MAX.into()),
        "uint8" => (0, u8::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint64" => (0, u64::MAX.into()),
        "float" | "double" => return None,
        other => return Some(format!("the format `{other}` is not supported")),
    };
    let n: Option<i128> = v
        .as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from));
    match n {
        Some(n) if n >= lo && n <= hi => None,
        Some(n) => Some(format!("{n} does not fit {format}")),
        None => Some(format!("{v} is not an integer of {format}")),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

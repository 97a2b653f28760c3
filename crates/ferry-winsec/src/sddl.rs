//! SDDL, the Security Descriptor Definition Language: parsed as Windows'
//! `ConvertStringSecurityDescriptorToSecurityDescriptor` parses it, printed as Windows'
//! `ConvertSecurityDescriptorToStringSecurityDescriptor` prints it.
//!
//! Windows is lenient in ways the conformance data pins down: spaces between parts, before a
//! SID and between access rights (never after them), lower-case ACE types, rights and aliases,
//! numbers in hex, octal or decimal that saturate instead of failing, negative access masks.
//! This parser accepts exactly those and refuses what Windows refuses.

use crate::conditional;
use crate::sd::{Ace, AceBody, Acl, Guid, SecurityDescriptor, ace_type, control};
use crate::sid::{AliasLookup, Sid, alias_sid, sid_alias};
use std::fmt::Write as _;

/// Why a string is not SDDL. `at` is the 0-based byte offset where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {}: {what}", at + 1)]
pub struct SddlError {
    pub at: usize,
    pub what: String,
}

fn fail<T>(at: usize, what: impl Into<String>) -> Result<T, SddlError> {
    Err(SddlError {
        at,
        what: what.into(),
    })
}

const ACE_TYPES: &[(&str, u8)] = &[
    ("A", ace_type::ACCESS_ALLOWED),
    ("D", ace_type::ACCESS_DENIED),
    ("AU", ace_type::SYSTEM_AUDIT),
    ("AL", ace_type::SYSTEM_ALARM),
    ("OA", ace_type::ACCESS_ALLOWED_OBJECT),
    ("OD", ace_type::ACCESS_DENIED_OBJECT),
    ("OU", ace_type::SYSTEM_AUDIT_OBJECT),
    ("OL", ace_type::SYSTEM_ALARM_OBJECT),
    ("XA", ace_type::ACCESS_ALLOWED_CALLBACK),
    ("XD", ace_type::ACCESS_DENIED_CALLBACK),
    ("ZA", ace_type::ACCESS_ALLOWED_CALLBACK_OBJECT),
    ("XU", ace_type::SYSTEM_AUDIT_CALLBACK),
    ("ML", ace_type::SYSTEM_MANDATORY_LABEL),
    ("RA", ace_type::SYSTEM_RESOURCE_ATTRIBUTE),
    ("SP", ace_type::SYSTEM_SCOPED_POLICY_ID),
    ("TL", ace_type::SYSTEM_PROCESS_TRUST_LABEL),
];

const ACE_FLAGS: &[(&str, u8)] = &[
    ("OI", 0x01),
    ("CI", 0x02),
    ("NP", 0x04),
    ("IO", 0x08),
    ("ID", 0x10),
    ("SA", 0x40),
    ("FA", 0x80),
];

/// Access rights with their own letters, in the order Windows prints them.
const RIGHTS: &[(&str, u32)] = &[
    ("CC", 0x0000_0001),
    ("DC", 0x0000_0002),
    ("LC", 0x0000_0004),
    ("SW", 0x0000_0008),
    ("RP", 0x0000_0010),
    ("WP", 0x0000_0020),
    ("DT", 0x0000_0040),
    ("LO", 0x0000_0080),
    ("CR", 0x0000_0100),
    ("SD", 0x0001_0000),
    ("RC", 0x0002_0000),
    ("WD", 0x0004_0000),
    ("WO", 0x0008_0000),
    ("GA", 0x1000_0000),
    ("GX", 0x2000_0000),
    ("GW", 0x4000_0000),
    ("GR", 0x8000_0000),
];

/// Composite rights: accepted on input, printed only as an exact match (the file ones).
const FILE_RIGHTS: &[(&str, u32)] = &[
    ("FA", 0x001F_01FF),
    ("FR", 0x0012_0089),
    ("FW", 0x0012_0116),
    ("FX", 0x0012_00A0),
];
const OTHER_RIGHTS: &[(&str, u32)] = &[
    ("KA", 0x000F_003F),
    ("KR", 0x0002_0019),
    ("KW", 0x0002_0006),
    ("KX", 0x0002_0019),
    ("NR", 0x0000_0002),
    ("NW", 0x0000_0001),
    ("NX", 0x0000_0004),
];
const LABEL_RIGHTS: &[(&str, u32)] = &[("NW", 0x1), ("NR", 0x2), ("NX", 0x4)];

const ACL_FLAGS: &[(&str, u16)] = &[
    ("P", control::DACL_PROTECTED),
    ("AR", control::DACL_AUTO_INHERIT_REQ),
    ("AI", control::DACL_AUTO_INHERITED),
];

const NO_ACCESS_CONTROL: &str = "NO_ACCESS_CONTROL";

/// Parses SDDL. Domain-relative aliases (`DA`, `DU`, `LA`, …) resolve against `domain`; without
/// one they are an error that says so.
pub fn parse(s: &str, domain: Option<&Sid>) -> Result<SecurityDescriptor, SddlError> {
    let b = s.as_bytes();
    let mut sd = SecurityDescriptor::default();
    let mut i = skip_spaces(b, 0);
    while i < b.len() {
        let part = b[i];
        if b.get(i + 1) != Some(&b':') || !matches!(part, b'O' | b'G' | b'D' | b'S') {
            return fail(i, "expected O:, G:, D: or S:");
        }
        let start = i;
        i += 2;
        match part {
            b'O' | b'G' => {
                let (sid, next) = owner_sid(s, i, domain)?;
                let slot = if part == b'O' {
                    &mut sd.owner
                } else {
                    &mut sd.group
                };
                if slot.replace(sid).is_some() {
                    return fail(start, format!("{}: appears twice", part as char));
                }
                i = next;
            }
            _ => {
                let dacl = part == b'D';
                let present = if dacl {
                    control::DACL_PRESENT
                } else {
                    control::SACL_PRESENT
                };
                if sd.control & present != 0 {
                    return fail(start, format!("{}: appears twice", part as char));
                }
                let (acl, flags, next) = parse_acl(s, i, domain)?;
                // SACL control bits are the DACL's shifted left by one.
                sd.control |= present | if dacl { flags } else { flags << 1 };
                if dacl {
                    sd.dacl = acl;
                } else {
                    sd.sacl = acl;
                }
                i = next;
            }
        }
        i = skip_spaces(b, i);
    }
    Ok(sd)
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// The SID after `O:` or `G:`: an alias, or `S-…` up to the next part.
fn owner_sid(s: &str, i: usize, domain: Option<&Sid>) -> Result<(Sid, usize), SddlError> {
    let b = s.as_bytes();
    let i = skip_spaces(b, i);
    if b.get(i).is_some_and(|c| c.eq_ignore_ascii_case(&b'S')) && b.get(i + 1) == Some(&b'-') {
        let mut end = i + 2;
        while end < b.len()
            && (b[end].is_ascii_hexdigit() || matches!(b[end], b'-' | b'x' | b'X' | b' '))
        {
            // `…-0x200D:` is a SID followed by `D:`, not the hex digit D.
            if b[end] == b'D' && b.get(end + 1) == Some(&b':') {
                break;
            }
            end += 1;
        }
        let text = s[i..end].trim_end_matches(' ');
        let sid = Sid::parse(text).or_else(|e| fail(i, e.to_string()))?;
        return Ok((sid, end));
    }
    let code = s.get(i..i + 2).unwrap_or_default();
    Ok((alias(code, i, domain)?, i + 2))
}

fn alias(code: &str, at: usize, domain: Option<&Sid>) -> Result<Sid, SddlError> {
    match alias_sid(code, domain) {
        AliasLookup::Sid(s) => Ok(s),
        AliasLookup::NeedsDomain => fail(
            at,
            format!("`{code}` is relative to a domain; give the domain SID (--domain-sid)"),
        ),
        AliasLookup::Unknown if code.is_empty() => fail(at, "expected a SID"),
        AliasLookup::Unknown => fail(at, format!("`{code}` is not a SID or SID alias")),
    }
}

/// An ACL after `D:` or `S:`: flags, then ACEs. Returns `None` for `NO_ACCESS_CONTROL`.
fn parse_acl(
    s: &str,
    mut i: usize,
    domain: Option<&Sid>,
) -> Result<(Option<Acl>, u16, usize), SddlError> {
    let b = s.as_bytes();
    let mut flags = 0u16;
    let mut null = false;
    i = skip_spaces(b, i);
    'flags: loop {
        if s[i..].starts_with(NO_ACCESS_CONTROL) {
            null = true;
            i += NO_ACCESS_CONTROL.len();
            continue;
        }
        for (name, bit) in ACL_FLAGS {
            if s[i..].starts_with(name) {
                flags |= bit;
                i += name.len();
                continue 'flags;
            }
        }
        break;
    }
    let mut aces = Vec::new();
    loop {
        i = skip_spaces(b, i);
        if b.get(i) != Some(&b'(') {
            break;
        }
        let (ace, next) = parse_ace(s, i, domain)?;
        aces.push(ace);
        i = next;
    }
    if null && !aces.is_empty() {
        return fail(i, "an ACL with NO_ACCESS_CONTROL cannot have ACEs");
    }
    Ok(((!null).then(|| Acl::new(aces)), flags, i))
}

/// One `(type;flags;rights;object;inherited object;sid)`, with a seventh field, a conditional
/// expression, for callback ACEs.
fn parse_ace(s: &str, open: usize, domain: Option<&Sid>) -> Result<(Ace, usize), SddlError> {
    let b = s.as_bytes();
    let mut fields = [(0usize, ""); 6];
    let mut n = 0;
    let mut start = open + 1;
    let mut i = start;
    let mut coda = None;
    let close = loop {
        match b.get(i) {
            None => return fail(open, "ACE is not closed with `)`"),
            Some(b')') => {
                fields[n] = (start, &s[start..i]);
                n += 1;
                break i;
            }
            Some(b';') if n == 5 => {
                fields[5] = (start, &s[start..i]);
                n = 6;
                coda = Some(i + 1);
                break i;
            }
            Some(b';') => {
                fields[n] = (start, &s[start..i]);
                n += 1;
                start = i + 1;
            }
            Some(_) => {}
        }
        i += 1;
    };
    if n < 6 {
        return fail(open, format!("ACE has {n} fields; it needs 6"));
    }
    let [t, fl, r, o, io, sid] = fields;

    let ty = t.1.trim_matches(' ');
    let Some(&(_, ace_type)) = ACE_TYPES.iter().find(|(n, _)| n.eq_ignore_ascii_case(ty)) else {
        return fail(t.0, format!("`{}` is not an ACE type", t.1));
    };
    if ace_type == ace_type::SYSTEM_RESOURCE_ATTRIBUTE {
        return fail(
            t.0,
            "RA (resource attribute) ACEs carry a claim; ferry reads those from binary descriptors only",
        );
    }
    let (extra, close) = match coda {
        None => (Vec::new(), close),
        Some(at) if ace_type::is_callback(ace_type) => {
            let (bytes, used) = conditional::compile(&s[at..], domain)
                .or_else(|(off, what)| fail(at + off, what))?;
            if b.get(at + used) != Some(&b')') {
                return fail(at + used, "expected `)` after the conditional expression");
            }
            (bytes, at + used)
        }
        Some(at) => {
            return fail(
                at,
                format!(
                    "{ty} ACEs have 6 fields; only callback ACEs (XA, XD, XU, ZA) have a condition"
                ),
            );
        }
    };
    let flags = ace_flags(fl.1).or_else(|w| fail(fl.0, w))?;
    let mask = rights(r.1).or_else(|w| fail(r.0, w))?;
    let guid = |(at, f): (usize, &str)| -> Result<Option<Guid>, SddlError> {
        if f.trim_matches(' ').is_empty() {
            return Ok(None);
        }
        match Guid::parse(f) {
            Some(g) => Ok(Some(g)),
            None => fail(at, format!("`{f}` is not a GUID")),
        }
    };
    let object_type = guid(o)?;
    let inherited_object_type = guid(io)?;
    let sid = ace_sid(sid.1, sid.0, domain)?;
    let body = if ace_type::is_object(ace_type) {
        AceBody::Object {
            mask,
            flags: u32::from(object_type.is_some())
                | (u32::from(inherited_object_type.is_some()) << 1),
            object_type,
            inherited_object_type,
            sid,
            extra,
        }
    } else {
        if object_type.is_some() || inherited_object_type.is_some() {
            return fail(
                o.0,
                format!("{ty} is not an object ACE; it cannot name GUIDs"),
            );
        }
        AceBody::Basic { mask, sid, extra }
    };
    Ok((
        Ace {
            ace_type,
            flags,
            body,
        },
        close + 1,
    ))
}

fn ace_sid(f: &str, at: usize, domain: Option<&Sid>) -> Result<Sid, SddlError> {
    let lead = f.len() - f.trim_start_matches(' ').len();
    let t = &f[lead..];
    if t.len() > 2 && (t.starts_with("S-") || t.starts_with("s-")) {
        return Sid::parse(t).or_else(|e| fail(at + lead, e.to_string()));
    }
    let code = t.trim_end_matches(' ');
    if code.len() != 2 {
        return fail(at + lead, format!("`{code}` is not a SID or SID alias"));
    }
    alias(code, at + lead, domain)
}

fn ace_flags(f: &str) -> Result<u8, String> {
    let t = f.trim_matches(' ');
    if let Some(h) = t.strip_prefix("0x") {
        return u8::from_str_radix(h, 16).map_err(|_| format!("`{f}` is not ACE flags"));
    }
    let mut flags = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let tok = rest.get(..2).unwrap_or(rest);
        let Some((_, bit)) = ACE_FLAGS.iter().find(|(n, _)| n.eq_ignore_ascii_case(tok)) else {
            return Err(format!(
                "`{tok}` is not an ACE flag (OI, CI, NP, IO, ID, SA, FA)"
            ));
        };
        flags |= bit;
        rest = &rest[tok.len()..];
    }
    Ok(flags)
}

/// An access mask: a number (hex, octal or decimal; a leading `-` negates; too large saturates)
/// or two-letter rights, which may be separated by spaces (not followed by them).
fn rights(f: &str) -> Result<u32, String> {
    let t = f.trim_start_matches(' ');
    let first = t.bytes().next();
    if first.is_some_and(|c| c.is_ascii_digit() || c == b'-') {
        let (neg, num) = match t.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, t),
        };
        let (digits, radix) =
            if let Some(h) = num.strip_prefix("0x").or_else(|| num.strip_prefix("0X")) {
                (h, 16)
            } else if num.len() > 1 && num.starts_with('0') {
                (&num[1..], 8)
            } else {
                (num, 10)
            };
        if digits.is_empty() {
            return Err(format!("`{f}` is not an access mask"));
        }
        let mut v: u32 = 0;
        for c in digits.chars() {
            let d = c
                .to_digit(radix)
                .ok_or_else(|| format!("`{f}` is not an access mask"))?;
            v = v.saturating_mul(radix).saturating_add(d);
        }
        return Ok(if neg { v.wrapping_neg() } else { v });
    }
    let b = t.as_bytes();
    let mut mask = 0;
    let mut i = 0;
    while i < b.len() {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if i == b.len() {
            return Err(format!("`{f}`: access rights cannot end with a space"));
        }
        let tok = t.get(i..i + 2).unwrap_or(&t[i..]);
        let Some((_, bits)) = RIGHTS
            .iter()
            .chain(FILE_RIGHTS)
            .chain(OTHER_RIGHTS)
            .find(|(n, _)| n.eq_ignore_ascii_case(tok))
        else {
            return Err(format!("`{tok}` is not an access right"));
        };
        mask |= bits;
        i += 2;
    }
    Ok(mask)
}

/// Why a descriptor has no SDDL form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("ACE type {0:#04x} has no SDDL form")]
    AceType(u8),
    #[error(
        "{0} ACE: its condition or claim has no SDDL form ferry can print; it is kept in binary only"
    )]
    Coda(&'static str),
}

/// Prints SDDL the way Windows does. With `domain`, SIDs in it print as their aliases
/// (`DA`, `DU`, …); without, they print in full, so the text means the same on any machine.
pub fn to_sddl(sd: &SecurityDescriptor, domain: Option<&Sid>) -> Result<String, FormatError> {
    let mut s = String::with_capacity(64 + sd.len() * 2);
    for (tag, sid) in [("O:", &sd.owner), ("G:", &sd.group)] {
        if let Some(sid) = sid {
            s.push_str(tag);
            write_sid(&mut s, sid, domain);
        }
    }
    for (tag, present, shift, acl) in [
        ("D:", control::DACL_PRESENT, 0, &sd.dacl),
        ("S:", control::SACL_PRESENT, 1, &sd.sacl),
    ] {
        if sd.control & present == 0 {
            continue;
        }
        s.push_str(tag);
        for (name, bit) in ACL_FLAGS {
            if sd.control & (bit << shift) != 0 {
                s.push_str(name);
            }
        }
        match acl {
            None => s.push_str(NO_ACCESS_CONTROL),
            Some(acl) => {
                for ace in &acl.aces {
                    write_ace(&mut s, ace, domain)?;
                }
            }
        }
    }
    Ok(s)
}

fn write_sid(s: &mut String, sid: &Sid, domain: Option<&Sid>) {
    match sid_alias(sid, domain) {
        Some(a) => s.push_str(a),
        None => {
            let _ = write!(s, "{sid}");
        }
    }
}

fn write_ace(s: &mut String, ace: &Ace, domain: Option<&Sid>) -> Result<(), FormatError> {
    let Some((name, _)) = ACE_TYPES.iter().find(|(_, t)| *t == ace.ace_type) else {
        return Err(FormatError::AceType(ace.ace_type));
    };
    let (mask, sid, guids, extra) = match &ace.body {
        AceBody::Basic { mask, sid, extra } => (*mask, sid, (None, None), extra),
        AceBody::Object {
            mask,
            object_type,
            inherited_object_type,
            sid,
            extra,
            ..
        } => (*mask, sid, (*object_type, *inherited_object_type), extra),
        AceBody::Unknown(_) => return Err(FormatError::AceType(ace.ace_type)),
    };
    let condition = if ace_type::is_callback(ace.ace_type) && !extra.is_empty() {
        Some(conditional::decompile(extra, domain).ok_or(FormatError::Coda(name))?)
    } else if ace.ace_type == ace_type::SYSTEM_RESOURCE_ATTRIBUTE && !extra.is_empty() {
        return Err(FormatError::Coda(name));
    } else {
        None
    };
    s.push('(');
    s.push_str(name);
    s.push(';');
    if ace.flags & !ACE_FLAGS.iter().fold(0, |a, (_, b)| a | b) != 0 {
        let _ = write!(s, "0x{:x}", ace.flags);
    } else {
        for (n, bit) in ACE_FLAGS {
            if ace.flags & bit != 0 {
                s.push_str(n);
            }
        }
    }
    s.push(';');
    write_rights(s, mask, ace.ace_type == ace_type::SYSTEM_MANDATORY_LABEL);
    s.push(';');
    if let Some(g) = guids.0 {
        let _ = write!(s, "{g}");
    }
    s.push(';');
    if let Some(g) = guids.1 {
        let _ = write!(s, "{g}");
    }
    s.push(';');
    write_sid(s, sid, domain);
    if let Some(c) = condition {
        s.push(';');
        s.push_str(&c);
    }
    s.push(')');
    Ok(())
}

fn write_rights(s: &mut String, mask: u32, label: bool) {
    let table = if label { LABEL_RIGHTS } else { RIGHTS };
    if !label && let Some((n, _)) = FILE_RIGHTS.iter().find(|(_, m)| *m == mask) {
        s.push_str(n);
        return;
    }
    let named = table.iter().fold(0, |a, (_, b)| a | b);
    if mask & !named != 0 {
        let _ = write!(s, "0x{mask:x}");
        return;
    }
    for (n, bit) in table {
        if mask & bit != 0 {
            s.push_str(n);
        }
    }
}

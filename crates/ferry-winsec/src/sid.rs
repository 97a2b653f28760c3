//! Security identifiers: binary form, `S-1-…` text (as Windows parses and prints it) and the
//! two-letter SDDL aliases.

use std::fmt;
use std::hash::{Hash, Hasher};

/// At most this many sub-authorities (MS-DTYP 2.4.2).
pub const MAX_SUB_AUTHORITIES: usize = 15;

/// A SID. Revision is always 1; the identifier authority is 48 bits.
#[derive(Clone, Copy)]
pub struct Sid {
    count: u8,
    authority: u64,
    sub: [u32; MAX_SUB_AUTHORITIES],
}

impl PartialEq for Sid {
    fn eq(&self, o: &Sid) -> bool {
        self.count == o.count && self.authority == o.authority && self.subs() == o.subs()
    }
}
impl Eq for Sid {}
impl Hash for Sid {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.authority | (u64::from(self.count) << 56));
        for s in self.subs() {
            h.write_u32(*s);
        }
    }
}
impl PartialOrd for Sid {
    fn partial_cmp(&self, o: &Sid) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sid {
    fn cmp(&self, o: &Sid) -> std::cmp::Ordering {
        (self.authority, self.subs()).cmp(&(o.authority, o.subs()))
    }
}

/// Why a SID could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    #[error("a SID needs at least 8 bytes, {0} left")]
    Short(usize),
    #[error("SID revision {0} is not 1")]
    Revision(u8),
    #[error("SID has {0} sub-authorities; at most 15 are allowed")]
    TooMany(usize),
    #[error("`{0}` is not a SID (expected S-1-<authority>-<sub-authority>…)")]
    Syntax(String),
    #[error("identifier authority in `{0}` does not fit in 48 bits")]
    Authority(String),
}

impl Sid {
    /// A SID from its authority and sub-authorities.
    pub fn new(authority: u64, subs: &[u32]) -> Result<Sid, SidError> {
        if subs.len() > MAX_SUB_AUTHORITIES {
            return Err(SidError::TooMany(subs.len()));
        }
        if authority >= 1 << 48 {
            return Err(SidError::Authority(authority.to_string()));
        }
        let mut sub = [0; MAX_SUB_AUTHORITIES];
        sub[..subs.len()].copy_from_slice(subs);
        Ok(Sid {
            count: subs.len() as u8,
            authority,
            sub,
        })
    }

    pub fn authority(&self) -> u64 {
        self.authority
    }

    pub fn subs(&self) -> &[u32] {
        &self.sub[..self.count as usize]
    }

    /// Length of the binary form.
    pub fn len(&self) -> usize {
        8 + 4 * self.count as usize
    }

    /// A SID always has a binary form of at least 8 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// This SID with `rid` appended (a domain SID plus a relative id).
    pub fn with_rid(&self, rid: u32) -> Option<Sid> {
        if self.count as usize >= MAX_SUB_AUTHORITIES {
            return None;
        }
        let mut s = *self;
        s.sub[s.count as usize] = rid;
        s.count += 1;
        Some(s)
    }

    /// Whether this SID is `domain` plus one relative id; returns the id.
    pub fn rid_in(&self, domain: &Sid) -> Option<u32> {
        (self.count == domain.count + 1
            && self.authority == domain.authority
            && self.subs()[..domain.count as usize] == *domain.subs())
        .then(|| self.sub[domain.count as usize])
    }

    /// Reads a binary SID at the start of `b`; returns it and its length.
    pub fn read(b: &[u8]) -> Result<(Sid, usize), SidError> {
        if b.len() < 8 {
            return Err(SidError::Short(b.len()));
        }
        if b[0] != 1 {
            return Err(SidError::Revision(b[0]));
        }
        let count = b[1] as usize;
        if count > MAX_SUB_AUTHORITIES {
            return Err(SidError::TooMany(count));
        }
        let len = 8 + 4 * count;
        if b.len() < len {
            return Err(SidError::Short(b.len()));
        }
        let mut a = [0u8; 8];
        a[2..].copy_from_slice(&b[2..8]);
        let mut sub = [0; MAX_SUB_AUTHORITIES];
        for (i, s) in sub.iter_mut().take(count).enumerate() {
            let o = 8 + 4 * i;
            *s = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        }
        Ok((
            Sid {
                count: count as u8,
                authority: u64::from_be_bytes(a),
                sub,
            },
            len,
        ))
    }

    /// Appends the binary form.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(1);
        out.push(self.count);
        out.extend_from_slice(&self.authority.to_be_bytes()[2..]);
        for s in self.subs() {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.write(&mut v);
        v
    }

    /// Parses `S-1-…` the way Windows does (`ConvertStringSidToSid` inside SDDL): a hex
    /// (`0x…`) or decimal identifier authority below 2^48, sub-authorities that saturate at
    /// 4294967295, spaces after a dash, and — once the revision itself is written in hex —
    /// every later number read as hex.
    pub fn parse(s: &str) -> Result<Sid, SidError> {
        let bad = || SidError::Syntax(s.to_string());
        let rest = s
            .strip_prefix("S-")
            .or_else(|| s.strip_prefix("s-"))
            .ok_or_else(bad)?;
        let mut parts = rest.split('-');
        let (revision, hex) = number(parts.next().ok_or_else(bad)?, false).ok_or_else(bad)?;
        if revision != 1 {
            return Err(bad());
        }
        let (authority, _) = number(parts.next().ok_or_else(bad)?, hex).ok_or_else(bad)?;
        if authority >= 1 << 48 {
            return Err(SidError::Authority(s.to_string()));
        }
        let mut sub = [0; MAX_SUB_AUTHORITIES];
        let mut count = 0;
        for p in parts {
            if count == MAX_SUB_AUTHORITIES {
                return Err(SidError::TooMany(count + 1));
            }
            let (v, _) = number(p, hex).ok_or_else(bad)?;
            sub[count] = v.min(u64::from(u32::MAX)) as u32;
            count += 1;
        }
        Ok(Sid {
            count: count as u8,
            authority,
            sub,
        })
    }
}

/// One dash-separated number of a SID: leading spaces, `0x` for hex (or hex throughout when
/// `hex`), saturating at u64::MAX. Returns the value and whether it was written in hex.
fn number(p: &str, hex: bool) -> Option<(u64, bool)> {
    let p = p.trim_start_matches(' ');
    let (digits, radix) = match p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        Some(d) => (d, 16),
        None if hex => (p, 16),
        None => (p, 10),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        v = v
            .saturating_mul(u64::from(radix))
            .saturating_add(u64::from(d));
    }
    Some((v, radix == 16))
}

impl fmt::Display for Sid {
    /// `S-1-…`, with the authority in hex (`0x…`, upper case) from 2^32 up, as Windows prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.authority >= 1 << 32 {
            write!(f, "S-1-0x{:X}", self.authority)?;
        } else {
            write!(f, "S-1-{}", self.authority)?;
        }
        for s in self.subs() {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Sid {
    type Err = SidError;
    fn from_str(s: &str) -> Result<Sid, SidError> {
        Sid::parse(s)
    }
}

/// What an SDDL alias stands for.
#[derive(Clone, Copy)]
enum Alias {
    /// A fixed SID: authority and sub-authorities.
    Fixed(u64, &'static [u32]),
    /// A relative id in the domain (or machine, or forest root) given to the codec.
    Domain(u32),
}

/// The two-letter SID strings of SDDL (Microsoft's "SID strings" table).
const ALIASES: &[(&str, Alias)] = &[
    ("WD", Alias::Fixed(1, &[0])),
    ("CO", Alias::Fixed(3, &[0])),
    ("CG", Alias::Fixed(3, &[1])),
    ("OW", Alias::Fixed(3, &[4])),
    ("NU", Alias::Fixed(5, &[2])),
    ("IU", Alias::Fixed(5, &[4])),
    ("SU", Alias::Fixed(5, &[6])),
    ("AN", Alias::Fixed(5, &[7])),
    ("ED", Alias::Fixed(5, &[9])),
    ("PS", Alias::Fixed(5, &[10])),
    ("AU", Alias::Fixed(5, &[11])),
    ("RC", Alias::Fixed(5, &[12])),
    ("SY", Alias::Fixed(5, &[18])),
    ("LS", Alias::Fixed(5, &[19])),
    ("NS", Alias::Fixed(5, &[20])),
    ("WR", Alias::Fixed(5, &[33])),
    ("BA", Alias::Fixed(5, &[32, 544])),
    ("BU", Alias::Fixed(5, &[32, 545])),
    ("BG", Alias::Fixed(5, &[32, 546])),
    ("PU", Alias::Fixed(5, &[32, 547])),
    ("AO", Alias::Fixed(5, &[32, 548])),
    ("SO", Alias::Fixed(5, &[32, 549])),
    ("PO", Alias::Fixed(5, &[32, 550])),
    ("BO", Alias::Fixed(5, &[32, 551])),
    ("RE", Alias::Fixed(5, &[32, 552])),
    ("RU", Alias::Fixed(5, &[32, 554])),
    ("RD", Alias::Fixed(5, &[32, 555])),
    ("NO", Alias::Fixed(5, &[32, 556])),
    ("MU", Alias::Fixed(5, &[32, 558])),
    ("LU", Alias::Fixed(5, &[32, 559])),
    ("IS", Alias::Fixed(5, &[32, 568])),
    ("CY", Alias::Fixed(5, &[32, 569])),
    ("ER", Alias::Fixed(5, &[32, 573])),
    ("CD", Alias::Fixed(5, &[32, 574])),
    ("RA", Alias::Fixed(5, &[32, 575])),
    ("ES", Alias::Fixed(5, &[32, 576])),
    ("MS", Alias::Fixed(5, &[32, 577])),
    ("HA", Alias::Fixed(5, &[32, 578])),
    ("AA", Alias::Fixed(5, &[32, 579])),
    ("RM", Alias::Fixed(5, &[32, 580])),
    ("UD", Alias::Fixed(5, &[84, 0, 0, 0, 0, 0])),
    ("AC", Alias::Fixed(15, &[2, 1])),
    ("LW", Alias::Fixed(16, &[4096])),
    ("ME", Alias::Fixed(16, &[8192])),
    ("MP", Alias::Fixed(16, &[8448])),
    ("HI", Alias::Fixed(16, &[12288])),
    ("SI", Alias::Fixed(16, &[16384])),
    ("AS", Alias::Fixed(18, &[1])),
    ("SS", Alias::Fixed(18, &[2])),
    ("RO", Alias::Domain(498)),
    ("LA", Alias::Domain(500)),
    ("LG", Alias::Domain(501)),
    ("DA", Alias::Domain(512)),
    ("DU", Alias::Domain(513)),
    ("DG", Alias::Domain(514)),
    ("DC", Alias::Domain(515)),
    ("DD", Alias::Domain(516)),
    ("CA", Alias::Domain(517)),
    ("SA", Alias::Domain(518)),
    ("EA", Alias::Domain(519)),
    ("PA", Alias::Domain(520)),
    ("CN", Alias::Domain(522)),
    ("AP", Alias::Domain(525)),
    ("KA", Alias::Domain(526)),
    ("EK", Alias::Domain(527)),
    ("RS", Alias::Domain(553)),
];

/// How an alias resolved.
#[derive(Debug, PartialEq, Eq)]
pub enum AliasLookup {
    Sid(Sid),
    /// A domain-relative alias (`DA`, `DU`, …) and no domain SID to resolve it against.
    NeedsDomain,
    Unknown,
}

/// Resolves a two-letter SDDL alias (case-insensitive).
pub fn alias_sid(code: &str, domain: Option<&Sid>) -> AliasLookup {
    let Some((_, a)) = ALIASES.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)) else {
        return AliasLookup::Unknown;
    };
    match *a {
        Alias::Fixed(auth, subs) => match Sid::new(auth, subs) {
            Ok(s) => AliasLookup::Sid(s),
            Err(_) => AliasLookup::Unknown,
        },
        Alias::Domain(rid) => match domain.and_then(|d| d.with_rid(rid)) {
            Some(s) => AliasLookup::Sid(s),
            None => AliasLookup::NeedsDomain,
        },
    }
}

/// The alias Windows prints for `sid`, if any. Domain-relative aliases only with a domain.
pub fn sid_alias(sid: &Sid, domain: Option<&Sid>) -> Option<&'static str> {
    let rid = domain.and_then(|d| sid.rid_in(d));
    ALIASES.iter().find_map(|(code, a)| match *a {
        Alias::Fixed(auth, subs) => (sid.authority == auth && sid.subs() == subs).then_some(*code),
        Alias::Domain(r) => (rid == Some(r)).then_some(*code),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_windows_accepts() {
        let p = |s: &str| Sid::parse(s).map(|s| s.to_string());
        assert_eq!(p("S-1-5-21-1-2-3-513").unwrap(), "S-1-5-21-1-2-3-513");
        assert_eq!(p("S-0x1-20-0-579").unwrap(), "S-1-32-0-1401");
        assert_eq!(p("S-1-3-4294967296-3-4").unwrap(), "S-1-3-4294967295-3-4");
        assert_eq!(
            p("S-1-21474836480-32-579").unwrap(),
            "S-1-0x500000000-32-579"
        );
        assert_eq!(p("S- 1- 2-3").unwrap(), "S-1-2-3");
        assert_eq!(p("S-1-5").unwrap(), "S-1-5");
        for bad in [
            "S",
            "S-",
            "S-1",
            "S-1-",
            "S-0",
            "S-10",
            "S-0x1",
            "S-1-0x1313131313131-513",
            "S-1-2-3 ",
        ] {
            assert!(Sid::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binary_round_trip_and_entra_vector() {
        let s = Sid::parse("S-1-12-1-2712847316-2022761974-317705643-2423805492").unwrap();
        let b = s.to_bytes();
        assert_eq!(
            b,
            [
                1, 5, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0xd4, 0xc3, 0xb2, 0xa1, 0xf6, 0xe5, 0x90,
                0x78, 0xab, 0xcd, 0xef, 0x12, 0x34, 0x56, 0x78, 0x90
            ]
        );
        assert_eq!(Sid::read(&b).unwrap(), (s, 28));
        assert!(Sid::read(&b[..27]).is_err());
    }

    #[test]
    fn aliases() {
        let d = Sid::parse("S-1-5-21-1-2-3").unwrap();
        let ba = Sid::parse("S-1-5-32-544").unwrap();
        assert_eq!(alias_sid("ba", None), AliasLookup::Sid(ba));
        assert_eq!(alias_sid("DA", None), AliasLookup::NeedsDomain);
        let da = Sid::parse("S-1-5-21-1-2-3-512").unwrap();
        assert_eq!(alias_sid("DA", Some(&d)), AliasLookup::Sid(da));
        assert_eq!(sid_alias(&da, Some(&d)), Some("DA"));
        assert_eq!(sid_alias(&da, None), None);
        assert_eq!(sid_alias(&ba, None), Some("BA"));
    }
}

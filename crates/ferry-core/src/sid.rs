//! Security identifiers and GUIDs in the forms directories hand them over. There is one SID type,
//! [`Sid`] (`ferry-winsec`, pure); this module reads and writes it as directories and maps do.
//!
//! AD returns `objectSid` and `objectGUID` as binary; ferry stores and compares SIDs in their string
//! form (`S-1-5-21-…`) and GUIDs in their registry form (`xxxxxxxx-xxxx-…`, lower case). Entra ID
//! SIDs are derived from the object id: `S-1-12-1-` followed by the GUID's four little-endian 32-bit
//! words in Microsoft's byte layout.

pub use ferry_winsec::sid::Sid;
use std::fmt::Write as _;

/// Why a binary SID or GUID could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SidError {
    #[error("SID is {0} bytes long; a SID needs at least 8")]
    TooShort(usize),
    #[error("SID revision {0} is not 1")]
    Revision(u8),
    #[error("SID says {count} sub-authorities ({need} bytes) but has {have} bytes")]
    Length { count: u8, need: usize, have: usize },
    #[error("SID has {0} sub-authorities; at most 15 are allowed")]
    TooMany(u8),
    #[error("`{0}` is not a SID (expected S-1-<authority>-<sub-authority>…)")]
    Syntax(String),
    #[error("GUID is {0} bytes long; a GUID is 16 bytes")]
    GuidLength(usize),
    #[error("`{0}` is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
    GuidSyntax(String),
}

/// Formats a binary SID (as found in `objectSid`) as `S-1-…` ([`Sid`]'s form: the authority in hex
/// from 2^32 up, as Windows prints it). The value must be exactly one SID.
pub fn sid_from_bytes(b: &[u8]) -> Result<String, SidError> {
    if b.len() < 8 {
        return Err(SidError::TooShort(b.len()));
    }
    if b[0] != 1 {
        return Err(SidError::Revision(b[0]));
    }
    let count = b[1];
    if count > 15 {
        return Err(SidError::TooMany(count));
    }
    let need = 8 + 4 * count as usize;
    if b.len() != need {
        return Err(SidError::Length {
            count,
            need,
            have: b.len(),
        });
    }
    let (sid, _) = Sid::read(b).map_err(|e| SidError::Syntax(e.to_string()))?;
    Ok(sid.to_string())
}

/// Parses `S-1-…` as directories and maps write it: decimal sub-authorities that fit 32 bits, a
/// decimal or `0x` authority below 2^48, nothing else (stricter than SDDL's [`Sid::parse`], which
/// saturates and reads spaces).
pub fn parse_sid(s: &str) -> Result<Sid, SidError> {
    let bad = || SidError::Syntax(s.to_string());
    let rest = s
        .strip_prefix("S-1-")
        .or_else(|| s.strip_prefix("s-1-"))
        .ok_or_else(bad)?;
    let mut parts = rest.split('-');
    let auth_s = parts.next().ok_or_else(bad)?;
    let authority = if let Some(hex) = auth_s
        .strip_prefix("0x")
        .or_else(|| auth_s.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16).map_err(|_| bad())?
    } else {
        auth_s.parse::<u64>().map_err(|_| bad())?
    };
    let subs: Vec<u32> = parts
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                Err(bad())
            } else {
                p.parse::<u32>().map_err(|_| bad())
            }
        })
        .collect::<Result<_, _>>()?;
    if subs.len() > 15 {
        return Err(SidError::TooMany(subs.len() as u8));
    }
    Sid::new(authority, &subs).map_err(|_| bad())
}

/// Encodes a `S-1-…` string as a binary SID.
pub fn sid_to_bytes(s: &str) -> Result<Vec<u8>, SidError> {
    Ok(parse_sid(s)?.to_bytes())
}

/// Formats a GUID given in Microsoft's byte layout (`objectGUID`, `Guid.ToByteArray()`): the first
/// three fields little-endian, the last eight bytes as they are.
pub fn guid_from_ms_bytes(b: &[u8]) -> Result<String, SidError> {
    let b: &[u8; 16] = b.try_into().map_err(|_| SidError::GuidLength(b.len()))?;
    let mut s = String::with_capacity(36);
    for i in [3, 2, 1, 0] {
        let _ = write!(s, "{:02x}", b[i]);
    }
    s.push('-');
    for i in [5, 4] {
        let _ = write!(s, "{:02x}", b[i]);
    }
    s.push('-');
    for i in [7, 6] {
        let _ = write!(s, "{:02x}", b[i]);
    }
    s.push('-');
    for x in &b[8..10] {
        let _ = write!(s, "{x:02x}");
    }
    s.push('-');
    for x in &b[10..16] {
        let _ = write!(s, "{x:02x}");
    }
    Ok(s)
}

/// Parses a GUID string into Microsoft's byte layout.
pub fn guid_to_ms_bytes(s: &str) -> Result<[u8; 16], SidError> {
    let bad = || SidError::GuidSyntax(s.to_string());
    let t = s.trim_start_matches('{').trim_end_matches('}');
    let groups: Vec<&str> = t.split('-').collect();
    if groups.len() != 5
        || [8, 4, 4, 4, 12]
            != [
                groups[0].len(),
                groups[1].len(),
                groups[2].len(),
                groups[3].len(),
                groups[4].len(),
            ]
    {
        return Err(bad());
    }
    let hex: String = groups.concat();
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    let mut b = raw;
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Ok(b)
}

/// The Entra ID SID of an object id: `S-1-12-1-` + the four little-endian words of its bytes.
pub fn entra_sid_from_object_id(object_id: &str) -> Result<String, SidError> {
    let b = guid_to_ms_bytes(object_id)?;
    let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Ok(format!("S-1-12-1-{}-{}-{}-{}", w(0), w(4), w(8), w(12)))
}

/// The object id of an Entra ID SID (`S-1-12-1-a-b-c-d`), the reverse of
/// [`entra_sid_from_object_id`]; None for any other SID.
pub fn object_id_from_entra_sid(sid: &str) -> Option<String> {
    let rest = sid.strip_prefix("S-1-12-1-")?;
    let words: Vec<u32> = rest
        .split('-')
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    let [a, b, c, d] = words[..] else {
        return None;
    };
    let mut bytes = [0u8; 16];
    for (i, w) in [a, b, c, d].into_iter().enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    guid_from_ms_bytes(&bytes).ok()
}

/// True when `s` looks like a SID string (used to decide how to search and to pick map columns).
pub fn looks_like_sid(s: &str) -> bool {
    s.len() > 4 && (s.starts_with("S-1-") || s.starts_with("s-1-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_sid_published_vectors() {
        // Vectors from the reference (A.6), checked against Microsoft's and community converters.
        for (id, sid) in [
            (
                "73d664e4-0886-4a73-b745-c694da45ddb4",
                "S-1-12-1-1943430372-1249052806-2496021943-3034400218",
            ),
            (
                "f82d79af-1278-4894-ac01-d90e30875cf8",
                "S-1-12-1-4163729839-1217663608-249102764-4166813488",
            ),
            (
                "dc79cac5-a4b3-4d41-80ca-019d04bf813b",
                "S-1-12-1-3698969285-1296147635-2634140288-998358788",
            ),
        ] {
            assert_eq!(entra_sid_from_object_id(id).as_deref(), Ok(sid));
            assert_eq!(object_id_from_entra_sid(sid).as_deref(), Some(id));
        }
        assert_eq!(object_id_from_entra_sid("S-1-5-21-1-2-3-4"), None);
        assert_eq!(object_id_from_entra_sid("S-1-12-1-1-2-3"), None);
        assert_eq!(object_id_from_entra_sid("S-1-12-1-1-2-3-99999999999"), None);
    }

    #[test]
    fn binary_sid_round_trip() {
        for s in [
            "S-1-5-21-3623811015-3361044348-30300820-1013",
            "S-1-5-32-544",
            "S-1-1-0",
            "S-1-0x123456789ABC-1-2",
            "S-1-12-1-1943430372-1249052806-2496021943-3034400218",
        ] {
            let b = sid_to_bytes(s).unwrap();
            assert_eq!(sid_from_bytes(&b).unwrap(), s);
        }
        assert_eq!(
            sid_from_bytes(&[1, 2, 0, 0, 0, 0, 0, 5, 1, 0, 0]),
            Err(SidError::Length {
                count: 2,
                need: 16,
                have: 11
            })
        );
        assert!(sid_to_bytes("S-1-5-x").is_err());
        assert!(sid_to_bytes("S-1-5--1").is_err());
        assert!(sid_to_bytes("S-1-5-4294967296").is_err());
    }

    proptest::proptest! {
        /// One SID type, two spellings: text and bytes round-trip through it, and the strict
        /// reader agrees with SDDL's on every SID it accepts (catches a second codec drifting).
        #[test]
        fn sid_text_and_bytes_round_trip(
            authority in 0u64..(1 << 48),
            subs in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..=15),
        ) {
            let sid = Sid::new(authority, &subs).unwrap();
            let text = sid.to_string();
            proptest::prop_assert_eq!(parse_sid(&text).unwrap(), sid);
            proptest::prop_assert_eq!(Sid::parse(&text).unwrap(), sid);
            let bytes = sid_to_bytes(&text).unwrap();
            proptest::prop_assert_eq!(&bytes, &sid.to_bytes());
            proptest::prop_assert_eq!(sid_from_bytes(&bytes).unwrap(), text);
        }
    }

    #[test]
    fn guid_ms_layout() {
        let g = "73d664e4-0886-4a73-b745-c694da45ddb4";
        let b = guid_to_ms_bytes(g).unwrap();
        assert_eq!(&b[..4], &[0xe4, 0x64, 0xd6, 0x73]);
        assert_eq!(guid_from_ms_bytes(&b).unwrap(), g);
        assert!(guid_to_ms_bytes("73d664e4-0886-4a73-b745-c694da45ddb").is_err());
        assert!(guid_from_ms_bytes(&b[..15]).is_err());
    }
}

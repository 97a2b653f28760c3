//! Principals no translation may name: root and the system range on POSIX, the well-known
//! administrative and service SIDs on Windows. A map that gives a user's files to root (or root's
//! files to a user) would hand out a system account, so the server refuses such an entry when it
//! builds the translation table and every device refuses it again when it applies one.

/// Below this uid/gid an id belongs to the system (Debian's and RHEL's `UID_MIN`/`GID_MIN`);
/// configurable per sync profile (`min_id`), per device (`ferry agent run --min-id`) and for
/// `ferry repermission --min-id`. 0 (root) is refused whatever the setting.
pub const DEFAULT_MIN_ID: u32 = 1000;

/// Why translating between POSIX ids `source` and `target` is refused, if it is. An id mapped to
/// itself changes nothing and is allowed.
pub fn posix(kind: &str, source: u32, target: u32, min_id: u32) -> Option<String> {
    if source == target {
        return None;
    }
    let why = |id: u32| {
        if id == 0 {
            Some(format!(
                "{kind} 0 is root; ferry never translates to or from it"
            ))
        } else if id < min_id {
            Some(format!(
                "{kind} {id} is below {min_id}, the system range (lower `min_id` to allow it)"
            ))
        } else {
            None
        }
    };
    why(target).or_else(|| why(source))
}

/// The privileged role a SID names, if any: SYSTEM, LOCAL SERVICE, NETWORK SERVICE,
/// BUILTIN\Administrators, and a domain's Administrator, krbtgt, Domain Admins, Schema Admins and
/// Enterprise Admins.
pub fn sid_role(s: &str) -> Option<&'static str> {
    let u = s.to_ascii_uppercase();
    match u.as_str() {
        "S-1-5-18" => Some("SYSTEM"),
        "S-1-5-19" => Some("LOCAL SERVICE"),
        "S-1-5-20" => Some("NETWORK SERVICE"),
        "S-1-5-32-544" => Some("BUILTIN\\Administrators"),
        _ if u.starts_with("S-1-5-21-") => match u.rsplit('-').next() {
            Some("500") => Some("a domain's Administrator"),
            Some("502") => Some("krbtgt"),
            Some("512") => Some("Domain Admins"),
            Some("518") => Some("Schema Admins"),
            Some("519") => Some("Enterprise Admins"),
            _ => None,
        },
        _ => None,
    }
}

/// Why translating between SIDs `source` and `target` is refused, if it is: when one of them is
/// privileged ([`sid_role`]) and the other is not the same role (one domain's Domain Admins to
/// another's is a translation; a user to Domain Admins is not).
pub fn sid(source: &str, target: &str) -> Option<String> {
    if source.eq_ignore_ascii_case(target) {
        return None;
    }
    let (s, t) = (sid_role(source), sid_role(target));
    if s == t {
        return None;
    }
    let (who, role) = match (t, s) {
        (Some(r), _) => (target, r),
        (None, Some(r)) => (source, r),
        (None, None) => return None,
    };
    Some(format!(
        "{who} is {role}; ferry translates a privileged principal only to the same role"
    ))
}

/// Why a match of a source to a target object may not be in the translation table: its uid, gid
/// or SID translation names a privileged principal.
pub fn refusal(
    source: (Option<u32>, Option<u32>, Option<&str>),
    target: (Option<u32>, Option<u32>, Option<&str>),
    min_id: u32,
) -> Option<String> {
    let ids = |kind: &str, s: Option<u32>, t: Option<u32>| match (s, t) {
        (Some(s), Some(t)) => posix(kind, s, t, min_id).map(|w| format!("{kind} {s} → {t}: {w}")),
        _ => None,
    };
    ids("uid", source.0, target.0)
        .or_else(|| ids("gid", source.1, target.1))
        .or_else(|| match (source.2, target.2) {
            (Some(s), Some(t)) => sid(s, t),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_system_range_are_refused() {
        assert!(posix("uid", 1001, 0, 1).unwrap().contains("root"));
        assert!(posix("gid", 0, 2001, 1).unwrap().contains("root"));
        assert!(posix("uid", 1001, 33, 1000).unwrap().contains("below 1000"));
        assert_eq!(posix("uid", 1001, 33, 1), None, "configurable");
        assert_eq!(posix("gid", 100, 100, 1000), None, "an id kept as it is");
        assert_eq!(posix("uid", 1001, 2001, 1000), None);
    }

    #[test]
    fn privileged_sids_are_refused() {
        assert!(sid("S-1-5-21-1-2-3-1104", "S-1-5-18").is_some());
        assert!(sid("S-1-5-32-544", "S-1-12-1-1-2-3-4").is_some());
        assert!(sid("S-1-5-21-1-2-3-1104", "S-1-5-21-9-9-9-512").is_some());
        assert!(sid("S-1-5-21-1-2-3-512", "S-1-5-21-9-9-9-519").is_some());
        assert_eq!(sid("S-1-5-21-1-2-3-1104", "S-1-12-1-1-2-3-4"), None);
        assert_eq!(sid("S-1-5-18", "s-1-5-18"), None);
        assert_eq!(
            sid("S-1-5-21-1-2-3-512", "S-1-5-21-9-9-9-512"),
            None,
            "Domain Admins of one domain to another's"
        );
    }
}

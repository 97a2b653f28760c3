//! Bulk enrolment tokens: what devices use to join a target Microsoft Entra tenant (the seed's
//! "Create the Bulk Enrolment Token"). Microsoft offers no API to mint one — Windows Configuration
//! Designer does ("Get Bulk Token", valid at most 180 days, creating a `package_{GUID}` account
//! whose deletion revokes it) — so ferry stores what the operator uploads: the provisioning
//! package (`.ppkg`) or the token itself (`bprt`), with its package account and validity. It warns
//! 30 days before expiry, and hands a token only to a join that targets its directory while it is
//! valid ([`token_for_join`]).

use crate::settings::Settings;
use ferry_core::config::DirectoryConfig;
use ferry_store::{EnrolmentToken, NewEnrolmentToken, Store, StoreError};
use sha2::Digest;

pub const DAY_MS: i64 = 86_400_000;
/// Windows Configuration Designer's limit.
pub const MAX_VALIDITY_DAYS: i64 = 180;
/// Warnings start this many days before expiry.
pub const WARN_DAYS: i64 = 30;
/// Largest package accepted.
pub const MAX_SIZE: usize = 32 << 20;

/// A token as the operator uploads it.
#[derive(Clone, Debug)]
pub struct Upload {
    pub directory: String,
    pub kind: String,
    pub file_name: Option<String>,
    pub package_upn: String,
    pub content: Vec<u8>,
    /// When Windows Configuration Designer made it (default: now), in ms.
    pub created_at: Option<i64>,
    pub expires_at: i64,
}

/// Checks an upload and turns it into a stored token; errors say which field is wrong.
pub fn validate(settings: &Settings, u: Upload, now: i64) -> Result<NewEnrolmentToken, String> {
    match settings.config.directory(&u.directory) {
        None => return Err(format!("directory `{}` is not configured", u.directory)),
        Some(DirectoryConfig::Graph(_)) => {}
        Some(d) => {
            return Err(format!(
                "directory `{}` is a {} directory: bulk enrolment tokens join Microsoft Entra tenants (kind = \"graph\")",
                u.directory,
                d.kind()
            ));
        }
    }
    if u.kind != "ppkg" && u.kind != "bprt" {
        return Err(format!(
            "kind: `{}` is not a token kind; expected `ppkg` (a provisioning package) or `bprt` (the bulk token)",
            u.kind
        ));
    }
    let upn = u.package_upn.trim();
    match upn.split_once('@') {
        Some((local, domain)) if !local.is_empty() && domain.contains('.') => {}
        _ => {
            return Err(format!(
                "package_upn: `{upn}` is not a user principal name; expected the package_{{GUID}}@… account Windows Configuration Designer created"
            ));
        }
    }
    if u.content.is_empty() {
        return Err("content: the file is empty".into());
    }
    if u.content.len() > MAX_SIZE {
        return Err(format!(
            "content: {} bytes is larger than the {} MiB ferry accepts",
            u.content.len(),
            MAX_SIZE >> 20
        ));
    }
    let created = u.created_at.unwrap_or(now);
    if created > now + DAY_MS {
        return Err("created: the token cannot have been made in the future".into());
    }
    if u.expires_at <= created {
        return Err("expires: the expiry must be after the creation date".into());
    }
    if u.expires_at - created > MAX_VALIDITY_DAYS * DAY_MS {
        return Err(format!(
            "expires: {} days after creation is longer than the {MAX_VALIDITY_DAYS} days a bulk token can be valid",
            (u.expires_at - created) / DAY_MS
        ));
    }
    if u.expires_at <= now {
        return Err("expires: this token has already expired".into());
    }
    Ok(NewEnrolmentToken {
        directory: u.directory,
        kind: u.kind,
        file_name: u.file_name,
        package_upn: upn.to_string(),
        sha256: ferry_core::config::hex(&sha2::Sha256::digest(&u.content)),
        size: u.content.len() as i64,
        content: u.content,
        created_at: created,
        expires_at: u.expires_at,
        uploaded_at: now,
    })
}

/// `valid`, `expiring` (within 30 days), `expired` or `revoked`, and the warning to show.
pub fn status(t: &EnrolmentToken, now: i64) -> (&'static str, Option<String>) {
    let date = day(t.expires_at);
    if t.revoked_at.is_some() {
        return ("revoked", None);
    }
    if t.expires_at <= now {
        return (
            "expired",
            Some(format!(
                "bulk enrolment token #{} of `{}` ({}) expired on {date}: devices can no longer join with it; create a new one with Windows Configuration Designer and upload it",
                t.id, t.directory, t.package_upn
            )),
        );
    }
    let left = (t.expires_at - now) / DAY_MS;
    if left < WARN_DAYS {
        return (
            "expiring",
            Some(format!(
                "bulk enrolment token #{} of `{}` ({}) expires on {date}, in {left} day(s): create a new one with Windows Configuration Designer and upload it before then",
                t.id, t.directory, t.package_upn
            )),
        );
    }
    ("valid", None)
}

/// `YYYY-MM-DD` (UTC) of a time in ms.
pub fn day(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time into ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    s.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().as_millisecond())
        .ok_or_else(|| format!("`{s}` is not a date: expected YYYY-MM-DD or an RFC 3339 time"))
}

/// Why a join cannot have a token.
#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    #[error(
        "no bulk enrolment token is stored for `{0}`: upload one (ferry directory token add {0} …)"
    )]
    None(String),
    #[error("{0}")]
    Expired(String),
    #[error("the stored token cannot be opened: {0}")]
    Sealed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The token a device joining `directory` gets: the newest one that is neither revoked nor
/// expired. A runbook that would use an expired one is refused with the reason.
pub async fn token_for_join(
    store: &dyn Store,
    vault: &crate::vault::Vault,
    directory: &str,
    now: i64,
) -> Result<(EnrolmentToken, Vec<u8>), JoinTokenError> {
    let tokens = store.enrolment_tokens(Some(directory)).await?;
    let live: Vec<&EnrolmentToken> = tokens.iter().filter(|t| t.revoked_at.is_none()).collect();
    if let Some(t) = live.iter().find(|t| t.expires_at > now)
        && let Some((t, content)) = store.enrolment_token_content(t.id).await?
    {
        let context = crate::vault::enrolment_context(&t.directory, &t.sha256);
        let content = vault
            .open(&content, &context)
            .map_err(|e| JoinTokenError::Sealed(e.to_string()))?;
        return Ok((t, content));
    }
    match live.first() {
        Some(t) => Err(JoinTokenError::Expired(
            status(t, now)
                .1
                .unwrap_or_else(|| "the token has expired".into()),
        )),
        None => Err(JoinTokenError::None(directory.to_string())),
    }
}

/// Warnings for the tokens of these directories that expire within 30 days or have expired
/// (the newest live token per directory only).
pub async fn expiry_warnings(
    store: &dyn Store,
    directories: &[&str],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for d in directories {
        let tokens = store.enrolment_tokens(Some(d)).await?;
        if let Some(t) = tokens.iter().find(|t| t.revoked_at.is_none())
            && let (_, Some(w)) = status(t, now)
        {
            out.push(w);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::DeviceStore as _;
    use ferry_store::sqlite::SqliteStore;

    fn test_vault() -> crate::vault::Vault {
        crate::vault::Vault::new([4; 32], "test")
    }

    fn settings() -> Settings {
        Settings::from_str(
            "[[directory]]\nname = \"fab\"\nkind = \"graph\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\n[[directory]]\nname = \"ad\"\nkind = \"file\"\npath = \"x.json\"\n",
            "f.toml",
            std::path::Path::new("."),
        )
        .unwrap()
    }

    fn upload(created: i64, expires: i64) -> Upload {
        Upload {
            directory: "fab".into(),
            kind: "ppkg".into(),
            file_name: Some("join.ppkg".into()),
            package_upn: "package_8a3e@fabrikam.onmicrosoft.com".into(),
            content: b"ppkg bytes".to_vec(),
            created_at: Some(created),
            expires_at: expires,
        }
    }

    #[test]
    fn uploads_are_checked() {
        let s = settings();
        let now = 1_000 * DAY_MS;
        assert!(validate(&s, upload(now, now + 180 * DAY_MS), now).is_ok());
        let cases: Vec<(Upload, &str)> = vec![
            (upload(now, now + 181 * DAY_MS), "180 days"),
            (
                upload(now - 200 * DAY_MS, now - 21 * DAY_MS),
                "already expired",
            ),
            (upload(now, now), "after the creation"),
            (upload(now + 3 * DAY_MS, now + 9 * DAY_MS), "future"),
            (
                Upload {
                    directory: "ad".into(),
                    ..upload(now, now + DAY_MS)
                },
                "file directory",
            ),
            (
                Upload {
                    directory: "zz".into(),
                    ..upload(now, now + DAY_MS)
                },
                "not configured",
            ),
            (
                Upload {
                    kind: "zip".into(),
                    ..upload(now, now + DAY_MS)
                },
                "kind",
            ),
            (
                Upload {
                    package_upn: "package".into(),
                    ..upload(now, now + DAY_MS)
                },
                "package_upn",
            ),
            (
                Upload {
                    content: vec![],
                    ..upload(now, now + DAY_MS)
                },
                "empty",
            ),
        ];
        for (u, needle) in cases {
            let e = validate(&s, u, now).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let t = validate(&s, upload(now, now + DAY_MS), now).unwrap();
        assert_eq!(t.sha256.len(), 64);
    }

    #[test]
    fn dates_parse() {
        assert_eq!(parse_time("1970-01-02").unwrap(), DAY_MS);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1_000);
        assert!(parse_time("02/05/2027").unwrap_err().contains("YYYY-MM-DD"));
        assert_eq!(day(DAY_MS * 365), "1971-01-01");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn joins_get_the_newest_valid_token_and_expiry_warns() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("f.db")).unwrap();
        let s = settings();
        let now = 1_000 * DAY_MS;
        assert!(matches!(
            token_for_join(&store, &test_vault(), "fab", now).await,
            Err(JoinTokenError::None(_))
        ));
        let old = store
            .add_enrolment_token(
                &validate(&s, upload(now - 170 * DAY_MS, now + 10 * DAY_MS), now).unwrap(),
            )
            .await
            .unwrap();
        // Expiring in 10 days: usable, with a warning.
        let (t, bytes) = token_for_join(&store, &test_vault(), "fab", now)
            .await
            .unwrap();
        assert_eq!((t.id, bytes.as_slice()), (old.id, &b"ppkg bytes"[..]));
        let w = expiry_warnings(&store, &["fab"], now).await.unwrap();
        assert!(w.len() == 1 && w[0].contains("in 10 day(s)"), "{w:?}");
        // 11 days later it has expired: joins are refused with the reason.
        let later = now + 11 * DAY_MS;
        let e = token_for_join(&store, &test_vault(), "fab", later)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expired on") && e.contains("package_8a3e"),
            "{e}"
        );
        // A new upload fixes it; revoking it brings the refusal back.
        let new = store
            .add_enrolment_token(&validate(&s, upload(later, later + 90 * DAY_MS), later).unwrap())
            .await
            .unwrap();
        assert_eq!(
            token_for_join(&store, &test_vault(), "fab", later)
                .await
                .unwrap()
                .0
                .id,
            new.id
        );
        assert!(
            expiry_warnings(&store, &["fab"], later)
                .await
                .unwrap()
                .is_empty()
        );
        store.revoke_enrolment_token(new.id, later).await.unwrap();
        assert!(
            token_for_join(&store, &test_vault(), "fab", later)
                .await
                .is_err()
        );
    }
}

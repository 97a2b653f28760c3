//! Secrets at rest: the credentials and tokens ferry keeps in its database (a console directory's
//! bind password or client secret, a bulk enrolment token's content) are sealed with AES-256-GCM
//! under a key kept apart from the database: `FERRY_SECRET_KEY`, or else `DATA_DIR/secret.key`
//! (0600, made on the first start). Neither a copy of the database nor a PostgreSQL dump reveals
//! one. Each sealed value is bound to where it is stored (its associated data names the row), so a
//! sealed credential copied into another directory's row does not open there.
//!
//! Sealed bytes: `ferrysv1` ‖ key id (8 bytes) ‖ nonce (12) ‖ ciphertext ‖ tag (16). Sealed text
//! (in JSON documents): `ferry-sealed:v1:` and the sealed bytes in base64.

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Digest as _;
use std::path::Path;

const MAGIC: &[u8; 8] = b"ferrysv1";
const TEXT_PREFIX: &str = "ferry-sealed:v1:";
const KEY_ID_LEN: usize = 8;
/// What sealing adds to a value's length.
pub const OVERHEAD: usize = MAGIC.len() + KEY_ID_LEN + NONCE_LEN + 16;
/// The store's `meta` key recording which key seals the database's secrets.
pub const META_KEY: &str = "secret_key_id";

/// The sealing key. Its `Debug` shows the key id only.
pub struct Vault {
    key: LessSafeKey,
    id: [u8; KEY_ID_LEN],
    /// Where the key came from, for messages (never the key).
    pub source: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("key_id", &self.key_id())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{0}")]
    Key(String),
    #[error("{what}: sealed with key {found}, not with this server's key {ours}")]
    OtherKey {
        what: String,
        found: String,
        ours: String,
    },
    #[error("{0}: cannot be opened (damaged, or moved from another row)")]
    Damaged(String),
}

fn decode_key(text: &str, source: &str) -> Result<[u8; 32], VaultError> {
    let t = text.trim();
    let hex = (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| {
            (0..64)
                .step_by(2)
                .map(|i| u8::from_str_radix(&t[i..i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten();
    let bytes = hex
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(t).ok())
        .ok_or_else(|| {
            VaultError::Key(format!(
                "{source}: not a key (give 32 bytes in base64, or 64 hex digits)"
            ))
        })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        VaultError::Key(format!(
            "{source}: the key is {} bytes; ferry needs 32 (AES-256)",
            bytes.len()
        ))
    })
}

impl Vault {
    pub fn new(key: [u8; 32], source: impl Into<String>) -> Vault {
        let mut h = sha2::Sha256::new();
        h.update(b"ferry secret key id\0");
        h.update(key);
        let digest = h.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        #[allow(clippy::expect_used)] // a 32-byte key is always a valid AES-256 key
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("AES-256 key"));
        Vault {
            key,
            id,
            source: source.into(),
        }
    }

    /// The key from `from_env` (`FERRY_SECRET_KEY`), else `DATA_DIR/secret.key`, made (0600) on
    /// the first start. A key file readable by others is refused.
    pub fn load(data_dir: &Path, from_env: Option<&str>) -> Result<Vault, VaultError> {
        if let Some(k) = from_env.filter(|k| !k.trim().is_empty()) {
            return Ok(Vault::new(
                decode_key(k, "FERRY_SECRET_KEY")?,
                "FERRY_SECRET_KEY",
            ));
        }
        let path = data_dir.join("secret.key");
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                use std::os::unix::fs::MetadataExt as _;
                let m = std::fs::metadata(&path)
                    .map_err(|e| VaultError::Key(format!("{shown}: {e}")))?;
                if m.mode() & 0o077 != 0 {
                    return Err(VaultError::Key(format!(
                        "{shown} is readable by others (mode {:o}): anyone who can read it can open \
                         every stored credential; chmod 600 it (and consider rotating the credentials)",
                        m.mode() & 0o777
                    )));
                }
                Ok(Vault::new(decode_key(&text, &shown)?, shown))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| VaultError::Key(e.to_string()))?;
                let text = base64::engine::general_purpose::STANDARD.encode(key);
                crate::auth::write_private(&path, format!("{text}\n").as_bytes())
                    .map_err(|e| VaultError::Key(format!("{shown}: {e}")))?;
                tracing::info!(path = %shown, "made a new secret key: stored credentials are sealed with it; servers sharing this database need the same key (copy the file or set FERRY_SECRET_KEY)");
                Ok(Vault::new(key, shown))
            }
            Err(e) => Err(VaultError::Key(format!("{shown}: {e}"))),
        }
    }

    /// The key's id (hex): safe to show and to store.
    pub fn key_id(&self) -> String {
        ferry_core::config::hex(&self.id)
    }

    /// Seals `plain`, bound to `context` (which names where it is stored).
    pub fn seal(&self, plain: &[u8], context: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // A nonce that is not random would break AES-GCM; without the OS's random source
        // nothing can be sealed safely, so stop rather than seal badly.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut nonce).expect("the OS random source");
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        #[allow(clippy::expect_used)] // only fails for inputs of more than 64 GiB
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .expect("AES-GCM seal");
        out.extend_from_slice(&body);
        out
    }

    /// Whether these bytes are sealed (else they were stored before ferry sealed them).
    pub fn is_sealed(stored: &[u8]) -> bool {
        stored.len() >= OVERHEAD && stored.starts_with(MAGIC)
    }

    /// Opens what [`Vault::seal`] sealed for `context`; bytes that are not sealed are returned as
    /// they are (stored by an earlier version; the server seals them at start).
    pub fn open(&self, stored: &[u8], context: &str) -> Result<Vec<u8>, VaultError> {
        if !Vault::is_sealed(stored) {
            return Ok(stored.to_vec());
        }
        let id = &stored[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
        if id != self.id {
            return Err(VaultError::OtherKey {
                what: context.to_string(),
                found: ferry_core::config::hex(id),
                ours: self.key_id(),
            });
        }
        let at = MAGIC.len() + KEY_ID_LEN;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&stored[at..at + NONCE_LEN]);
        let mut body = stored[at + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| VaultError::Damaged(context.to_string()))?;
        Ok(plain.to_vec())
    }

    /// [`Vault::seal`] for text kept in a JSON document.
    pub fn seal_text(&self, plain: &str, context: &str) -> String {
        format!(
            "{TEXT_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(self.seal(plain.as_bytes(), context))
        )
    }

    pub fn is_sealed_text(stored: &str) -> bool {
        stored.starts_with(TEXT_PREFIX)
    }

    /// [`Vault::open`] for text; text without the prefix is returned as it is.
    pub fn open_text(&self, stored: &str, context: &str) -> Result<String, VaultError> {
        let Some(b64) = stored.strip_prefix(TEXT_PREFIX) else {
            return Ok(stored.to_string());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| VaultError::Damaged(context.to_string()))?;
        if !Vault::is_sealed(&bytes) {
            return Err(VaultError::Damaged(context.to_string()));
        }
        String::from_utf8(self.open(&bytes, context)?)
            .map_err(|_| VaultError::Damaged(context.to_string()))
    }
}

/// The associated data of a console directory's credential.
pub fn directory_context(name: &str) -> String {
    format!("console_directories/{name}/credential")
}

/// The associated data of an enrolment token's content (its directory and the hash of its
/// content, both stored in its row).
pub fn enrolment_context(directory: &str, sha256: &str) -> String {
    format!("enrolment_tokens/{directory}/{sha256}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn vault(b: u8) -> Vault {
        Vault::new([b; 32], "test")
    }

    proptest! {
        /// Round trip for any bytes and context; sealed bytes never contain the plaintext (for
        /// plaintexts long enough that a chance match is impossible).
        #[test]
        fn seal_opens_only_with_its_key_and_context(plain in proptest::collection::vec(any::<u8>(), 0..512), ctx in "[a-z/0-9]{1,40}") {
            let v = vault(7);
            let s = v.seal(&plain, &ctx);
            prop_assert!(Vault::is_sealed(&s));
            prop_assert_eq!(s.len(), plain.len() + OVERHEAD);
            prop_assert_eq!(v.open(&s, &ctx).unwrap(), plain.clone());
            prop_assert!(v.open(&s, &format!("{ctx}x")).is_err(), "another row's context opened it");
            let other = vault(8).open(&s, &ctx);
            prop_assert!(matches!(other, Err(VaultError::OtherKey { .. })), "{other:?}");
            if plain.len() >= 16 {
                prop_assert!(!s.windows(plain.len()).any(|w| w == plain.as_slice()));
            }
        }

        #[test]
        fn text_round_trips(plain in "\\PC{0,200}", ctx in "[a-z]{1,10}") {
            let v = vault(1);
            let s = v.seal_text(&plain, &ctx);
            prop_assert!(Vault::is_sealed_text(&s));
            prop_assert_eq!(v.open_text(&s, &ctx).unwrap(), plain);
        }
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        let v = vault(3);
        let mut s = v.seal(b"bind password", "c");
        let n = s.len();
        s[n - 20] ^= 1;
        assert!(matches!(v.open(&s, "c"), Err(VaultError::Damaged(_))));
    }

    #[test]
    fn keys_are_read_as_base64_or_hex_and_bad_ones_named() {
        let hex = "00".repeat(32);
        assert_eq!(decode_key(&hex, "x").unwrap(), [0u8; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(decode_key(&b64, "x").unwrap(), [9u8; 32]);
        let short = decode_key("AAAA", "FERRY_SECRET_KEY")
            .unwrap_err()
            .to_string();
        assert!(
            short.contains("FERRY_SECRET_KEY") && short.contains("32"),
            "{short}"
        );
        assert!(format!("{:?}", vault(5)).contains("key_id"));
        assert!(!format!("{:?}", vault(5)).contains("5, 5"));
    }

    #[test]
    fn the_key_file_is_made_private_and_a_readable_one_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let a = Vault::load(d.path(), None).unwrap();
        let p = d.path().join("secret.key");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Vault::load(d.path(), None).unwrap().key_id(), a.key_id());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Vault::load(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("readable by others"), "{e}");
    }
}

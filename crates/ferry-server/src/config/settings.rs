//! Loading `ferry.toml` and resolving what it refers to: secrets from `*_file` keys or `FERRY_…`
//! variables, paths relative to the file. The parsed [`Config`] stays pure; the resolved secrets
//! live beside it in [`Settings`], whose `Debug` shows no secret.
//!
//! Directories and sync profiles can also be added in the console. They are stored as documents
//! and merged with the file's by [`Live`], which every handler and the engine read through; the
//! file's entries cannot be changed from the console, and a stored entry whose name the file took
//! later is set aside with a warning.

use crate::vault::Vault;
use ferry_core::config::{Config, ConfigError, DirectoryConfig, Secret, SyncProfile};
use ferry_store::{DocKind, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A loaded configuration with its secrets resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    /// Folder of the configuration file; relative paths in it are relative to this.
    pub base: PathBuf,
    /// The file it came from, for messages.
    pub file: String,
    /// Directory name → bind password (or other credential).
    pub secrets: HashMap<String, Secret>,
    /// Directories and profiles that were added in the console (the others are the file's).
    pub console_directories: BTreeSet<String>,
    pub console_profiles: BTreeSet<String>,
}

impl Settings {
    /// Reads, parses, validates and resolves a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            path: String::new(),
            location: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Settings::from_str(&src, &file, &base)
    }

    /// Parses configuration text; `base` resolves relative paths.
    pub fn from_str(src: &str, file: &str, base: &Path) -> Result<Settings, ConfigError> {
        let s = Settings::resolve(Config::parse(src, file)?, file, base, &BTreeSet::new())?;
        // Runbooks and batches as the API checks them; those of the database are checked at start.
        crate::devices::configured::check(&s, Some(src), &HashMap::new(), true)?;
        Ok(s)
    }

    /// Resolves the secrets of a validated configuration. Directories named in `console` were
    /// entered through the API: their credential is only the one entered with them (never a
    /// `FERRY_DIRECTORY_…` variable of the server's, which the name would otherwise pick).
    pub fn resolve(
        config: Config,
        file: &str,
        base: &Path,
        console: &BTreeSet<String>,
    ) -> Result<Settings, ConfigError> {
        let mut secrets = HashMap::new();
        for (i, d) in config.directories.iter().enumerate() {
            // A secret kept in a file (`field`), without its line ending.
            let from_file = |field: &str, p: &Path| {
                let p = base.join(p);
                let v = std::fs::read_to_string(&p).map_err(|e| ConfigError {
                    file: file.into(),
                    path: format!("directory[{i}].{field}"),
                    location: String::new(),
                    message: format!("cannot read {}: {e}", p.display()),
                })?;
                Ok::<_, ConfigError>(Secret::new(v.trim_end_matches(['\n', '\r'])))
            };
            let no_credential = |message: String| ConfigError {
                file: file.into(),
                path: format!("directory[{i}]"),
                location: String::new(),
                message,
            };
            let from_env = |env: &str| {
                if console.contains(d.name()) {
                    None
                } else {
                    std::env::var(env).ok().map(Secret::new)
                }
            };
            if let DirectoryConfig::Ldap(l) = d {
                let env = l.bind_password_env();
                let secret = if let Some(s) = &l.bind_password {
                    Some(s.clone())
                } else if let Some(p) = &l.bind_password_file {
                    Some(from_file("bind_password_file", p)?)
                } else {
                    from_env(&env)
                };
                if let Some(s) = secret {
                    secrets.insert(l.name.clone(), s);
                } else if l.bind_dn.is_some() {
                    return Err(no_credential(format!(
                        "bind_dn is set but no password: give bind_password, bind_password_file, or the variable {env}"
                    )));
                }
            }
            if let DirectoryConfig::Graph(g) = d {
                let env = g.client_secret_env();
                let secret = if let Some(s) = &g.client_secret {
                    Some(s.clone())
                } else if let Some(p) = &g.client_secret_file {
                    Some(from_file("client_secret_file", p)?)
                } else if g.certificate_file.is_none() {
                    from_env(&env)
                } else {
                    None
                };
                if let Some(s) = secret {
                    secrets.insert(g.name.clone(), s);
                } else if g.certificate_file.is_none() {
                    return Err(no_credential(format!(
                        "no credential for the app registration: give client_secret, client_secret_file, certificate_file + private_key_file, or the variable {env}"
                    )));
                }
            }
        }
        Ok(Settings {
            config,
            base: base.to_path_buf(),
            file: file.into(),
            secrets,
            console_directories: BTreeSet::new(),
            console_profiles: BTreeSet::new(),
        })
    }

    /// These settings with the console's directories and profiles added; errors name the entry's
    /// field (`url`, `match[0].source_attribute`, …).
    pub fn with_console(&self, stored: &Stored) -> Result<Settings, ConfigError> {
        let (dirs, profiles) = (&stored.dirs, &stored.profiles);
        let mut config = self.config.clone();
        let first_dir = config.directories.len();
        let first_profile = config.profiles.len();
        config.directories.extend(dirs.iter().cloned());
        config.profiles.extend(profiles.iter().cloned());
        // Stored overrides follow the profile's own (ferry.toml's or the console entry's); one for
        // a source the profile already overrides is left out (the configuration wins).
        let key = |s: &str| s.trim().to_ascii_lowercase();
        let mut taken: std::collections::HashSet<(String, String)> = config
            .profiles
            .iter()
            .flat_map(|p| p.overrides.iter().map(|o| (p.name.clone(), key(&o.source))))
            .collect();
        for (profile, o) in &stored.overrides {
            if let Some(p) = config.profiles.iter_mut().find(|p| &p.name == profile)
                && taken.insert((profile.clone(), key(&o.source)))
            {
                p.overrides.push(o.clone());
            }
        }
        let rename = |mut e: ConfigError| {
            // `directory[7].url` of an entry added here is that entry's `url`.
            for (prefix, first, names) in [
                (
                    "directory[",
                    first_dir,
                    dirs.iter()
                        .map(|d| d.name().to_string())
                        .collect::<Vec<_>>(),
                ),
                (
                    "sync_profile[",
                    first_profile,
                    profiles.iter().map(|p| p.name.clone()).collect(),
                ),
            ] {
                if let Some(rest) = e.path.strip_prefix(prefix)
                    && let Some((i, field)) = rest.split_once(']')
                    && let Ok(i) = i.parse::<usize>()
                    && i >= first
                    && let Some(name) = names.get(i - first)
                {
                    e.path = format!("{name}{field}");
                    e.file = "console".into();
                }
            }
            e
        };
        for d in dirs {
            console_entry_allowed(d, &self.base).map_err(|(field, message)| ConfigError {
                file: "console".into(),
                path: format!("{}.{field}", d.name()),
                location: String::new(),
                message,
            })?;
        }
        config.validate(&self.file).map_err(rename)?;
        let names: BTreeSet<String> = dirs.iter().map(|d| d.name().to_string()).collect();
        let mut s = Settings::resolve(config, &self.file, &self.base, &names).map_err(rename)?;
        s.console_directories = names;
        s.console_profiles = profiles.iter().map(|p| p.name.clone()).collect();
        Ok(s)
    }

    /// An empty configuration (a server with nothing configured yet).
    pub fn empty() -> Settings {
        Settings {
            config: Config::default(),
            base: PathBuf::from("."),
            file: "(none)".into(),
            secrets: HashMap::new(),
            console_directories: BTreeSet::new(),
            console_profiles: BTreeSet::new(),
        }
    }
}

/// What a directory entered through the API or console may not name: a file on the server (a
/// `*_file` key would send that file's content, as a password, to the directory's host; a file
/// directory outside the configuration's folder would read any file as a snapshot). Those come
/// only from `ferry.toml`. `(field, why)`.
pub fn console_entry_allowed(
    d: &DirectoryConfig,
    base: &Path,
) -> Result<(), (&'static str, String)> {
    let base = std::env::current_dir().unwrap_or_default().join(base);
    let only_in_file = |field: &'static str| {
        Err((
            field,
            format!(
                "`{field}` names a file on the server and is accepted only in ferry.toml; enter the credential itself"
            ),
        ))
    };
    match d {
        DirectoryConfig::Ldap(l) if l.bind_password_file.is_some() => {
            only_in_file("bind_password_file")
        }
        DirectoryConfig::Graph(g) if g.client_secret_file.is_some() => {
            only_in_file("client_secret_file")
        }
        DirectoryConfig::Graph(g) if g.certificate_file.is_some() => {
            only_in_file("certificate_file")
        }
        DirectoryConfig::Graph(g) if g.private_key_file.is_some() => {
            only_in_file("private_key_file")
        }
        DirectoryConfig::File(f)
            if !base.join(&f.path).starts_with(&base)
                || f.path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir)) =>
        {
            Err((
                "path",
                format!(
                    "`{}`: a file directory added here reads a file in the configuration's folder ({}), with no `..`; other paths go in ferry.toml",
                    f.path.display(),
                    base.display()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Where a directory's credential is sent: an edit that changes it must enter the credential
/// again, so that a kept credential never goes to a host it was not entered for.
pub fn destination(d: &DirectoryConfig) -> Option<String> {
    match d {
        DirectoryConfig::Ldap(l) => Some(l.url.trim_end_matches('/').to_ascii_lowercase()),
        DirectoryConfig::Graph(g) => Some(format!(
            "{} {} {} {}",
            g.login_url(),
            g.graph_url(),
            g.tenant_id.to_ascii_lowercase(),
            g.client_id
        )),
        DirectoryConfig::File(_) => None,
    }
}

/// A directory added in the console, as stored: its settings without the credential, and the
/// credential apart (never returned by the API).
#[derive(Serialize, Deserialize)]
pub struct StoredDirectory {
    pub settings: serde_json::Value,
    pub credential: Option<String>,
}

/// The directory's inline credential (LDAP bind password or Graph client secret), taken out.
pub fn take_credential(d: &mut DirectoryConfig) -> Option<Secret> {
    match d {
        DirectoryConfig::Ldap(l) => l.bind_password.take(),
        DirectoryConfig::Graph(g) => g.client_secret.take(),
        DirectoryConfig::File(_) => None,
    }
}

/// Puts a credential back in (ignored for file directories).
pub fn put_credential(d: &mut DirectoryConfig, c: Option<Secret>) {
    match d {
        DirectoryConfig::Ldap(l) => l.bind_password = c,
        DirectoryConfig::Graph(g) => g.client_secret = c,
        DirectoryConfig::File(_) => {}
    }
}

impl StoredDirectory {
    /// The stored form: the credential sealed with `vault`, bound to the directory's name.
    pub fn new(
        mut d: DirectoryConfig,
        vault: &Vault,
    ) -> Result<StoredDirectory, serde_json::Error> {
        let context = crate::vault::directory_context(d.name());
        let credential = take_credential(&mut d).map(|s| vault.seal_text(s.expose(), &context));
        Ok(StoredDirectory {
            settings: serde_json::to_value(&d)?,
            credential,
        })
    }

    /// The directory, its credential opened. A credential stored before ferry sealed them is
    /// taken as it is (the server seals it at start).
    pub fn directory(self, vault: &Vault) -> Result<DirectoryConfig, String> {
        let mut d: DirectoryConfig =
            serde_json::from_value(self.settings).map_err(|e| e.to_string())?;
        let context = crate::vault::directory_context(d.name());
        let credential = match self.credential {
            Some(c) => Some(Secret::new(
                vault.open_text(&c, &context).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        put_credential(&mut d, credential);
        Ok(d)
    }

    /// Whether the credential is stored in the clear (written by a version before sealing).
    pub fn needs_sealing(&self) -> bool {
        self.credential
            .as_deref()
            .is_some_and(|c| !Vault::is_sealed_text(c))
    }
}

/// What the console (the API) keeps in the store, added to the configuration file's entries.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    pub dirs: Vec<DirectoryConfig>,
    pub profiles: Vec<SyncProfile>,
    /// (profile, override): operators' pins and excludes, by object id.
    pub overrides: Vec<(String, ferry_core::config::Override)>,
}

/// The settings in force: the file's and the console's. Readers take a snapshot with
/// [`Live::get`]; a change in the console builds and validates new settings, then swaps them in.
pub struct Live {
    file: Arc<Settings>,
    current: RwLock<Arc<Settings>>,
    /// Seals and opens the credentials kept in the store.
    pub vault: Arc<Vault>,
    /// The stored entries last read, hashed.
    seen: std::sync::Mutex<u64>,
    /// Held by a change (read the stored entries, validate, store, apply) and by a reread, so
    /// that one never puts older entries in force over the other.
    pub changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Live {
    /// Settings that change only through the console; `vault` opens the stored credentials.
    pub fn new(file: Settings, vault: Arc<Vault>) -> Arc<Live> {
        let file = Arc::new(file);
        Arc::new(Live {
            current: RwLock::new(Arc::clone(&file)),
            file,
            vault,
            seen: std::sync::Mutex::new(0),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn get(&self) -> Arc<Settings> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The configuration file's settings alone.
    pub fn file(&self) -> &Settings {
        &self.file
    }

    /// The console's stored directories, profiles and overrides.
    pub async fn stored(&self, store: &dyn Store) -> Result<Stored, StoreError> {
        Ok(self.read(store).await?.1)
    }

    /// The stored entries, and a hash of their documents to notice a change.
    async fn read(&self, store: &dyn Store) -> Result<(u64, Stored), StoreError> {
        use std::hash::{Hash, Hasher};
        let corrupt = |what: &str, name: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("{what} `{name}`: {e}"))
        };
        let (d, p, o) = (
            store.documents(DocKind::Directory).await?,
            store.documents(DocKind::Profile).await?,
            store.documents(DocKind::Override).await?,
        );
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&d, &p, &o).hash(&mut h);
        let mut dirs = Vec::new();
        for (name, body) in d {
            let d: StoredDirectory =
                serde_json::from_str(&body).map_err(|e| corrupt("directory", &name, &e))?;
            dirs.push(
                d.directory(&self.vault)
                    .map_err(|e| corrupt("directory", &name, &e))?,
            );
        }
        let mut profiles = Vec::new();
        for (name, body) in p {
            profiles
                .push(serde_json::from_str(&body).map_err(|e| corrupt("sync profile", &name, &e))?);
        }
        let mut overrides = Vec::new();
        for (name, body) in o {
            let (profile, _) = name
                .split_once('/')
                .ok_or_else(|| corrupt("override", &name, &"the name has no profile"))?;
            overrides.push((
                profile.to_string(),
                serde_json::from_str(&body).map_err(|e| corrupt("override", &name, &e))?,
            ));
        }
        Ok((
            h.finish(),
            Stored {
                dirs,
                profiles,
                overrides,
            },
        ))
    }

    /// Validates the file's settings plus these entries and puts them in force.
    pub fn apply(&self, stored: &Stored) -> Result<(), ConfigError> {
        self.set(self.file.with_console(stored)?);
        Ok(())
    }

    /// Puts settings built by [`Settings::with_console`] on [`Live::file`] in force.
    pub fn set(&self, s: Settings) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }

    /// Rereads the stored entries and, when they changed since they were last read (another
    /// server sharing the database changed them), puts them in force as [`Live::load`] does.
    pub async fn refresh(&self, store: &dyn Store) -> Result<Vec<String>, StoreError> {
        let _guard = self.changes.lock().await;
        let (seen, stored) = self.read(store).await?;
        if self.seen.lock().map(|s| *s == seen).unwrap_or(false) {
            return Ok(vec![]);
        }
        Ok(self.put_in_force(seen, stored))
    }

    /// At start: puts the stored entries in force, setting aside (with a warning) those the file
    /// now names too or that no longer validate, so that a server always starts.
    pub async fn load(&self, store: &dyn Store) -> Result<Vec<String>, StoreError> {
        let (seen, stored) = self.read(store).await?;
        Ok(self.put_in_force(seen, stored))
    }

    fn put_in_force(&self, seen: u64, mut stored: Stored) -> Vec<String> {
        if let Ok(mut s) = self.seen.lock() {
            *s = seen;
        }
        let mut warnings = Vec::new();
        let file = &self.file.config;
        stored.dirs.retain(|d| {
            let clash = file.directory(d.name()).is_some();
            if clash {
                warnings.push(format!(
                    "directory `{}` added in the console is set aside: {} defines one by that name",
                    d.name(),
                    self.file.file
                ));
            }
            !clash
        });
        stored.profiles.retain(|p| {
            let clash = file.profile(&p.name).is_some();
            if clash {
                warnings.push(format!(
                    "sync profile `{}` added in the console is set aside: {} defines one by that name",
                    p.name, self.file.file
                ));
            }
            !clash
        });
        loop {
            let e = match self.apply(&stored) {
                Ok(()) => return warnings,
                Err(e) => e,
            };
            // Drop the entry the error names; else the stored overrides; else everything.
            let Stored {
                dirs,
                profiles,
                overrides,
            } = &mut stored;
            let before = dirs.len() + profiles.len();
            let name = e
                .path
                .split(['.', '['])
                .next()
                .unwrap_or_default()
                .to_string();
            dirs.retain(|d| d.name() != name);
            profiles.retain(|p| p.name != name);
            if dirs.len() + profiles.len() == before {
                if overrides.is_empty() {
                    dirs.clear();
                    profiles.clear();
                } else {
                    overrides.clear();
                }
            }
            warnings.push(format!("set aside what the console added: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "[[directory]]\nname = \"corp-ad\"\nkind = \"ldap\"\nurl = \"ldap://127.0.0.1:1\"\nbind_dn = \"cn=a\"\nbase_dn = \"dc=x\"\n";

    #[test]
    fn passwords_come_from_file_or_environment() {
        let dir = tempfile::tempdir().unwrap();
        let e = Settings::from_str(SRC, "f.toml", dir.path()).unwrap_err();
        assert!(
            e.message.contains("FERRY_DIRECTORY_CORP_AD_BIND_PASSWORD"),
            "{e}"
        );
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let s = Settings::from_str(
            &format!("{SRC}bind_password_file = \"pw\"\n"),
            "f.toml",
            dir.path(),
        )
        .unwrap();
        assert_eq!(s.secrets["corp-ad"].expose(), "s3cret");
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "Debug must not show secrets"
        );
        let e = Settings::from_str(
            &format!("{SRC}bind_password_file = \"missing\"\n"),
            "f.toml",
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(e.path, "directory[0].bind_password_file");
    }
}

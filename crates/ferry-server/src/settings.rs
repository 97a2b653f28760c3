//! Loading `ferry.toml` and resolving what it refers to: secrets from `*_file` keys or `FERRY_…`
//! variables, paths relative to the file. The parsed [`Config`] stays pure; the resolved secrets
//! live beside it in [`Settings`], whose `Debug` shows no secret.

use ferry_core::config::{Config, ConfigError, DirectoryConfig, Secret};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
        let config = Config::parse(src, file)?;
        let mut secrets = HashMap::new();
        for (i, d) in config.directories.iter().enumerate() {
            if let DirectoryConfig::Ldap(l) = d {
                let env = l.bind_password_env();
                let secret = if let Some(s) = &l.bind_password {
                    Some(s.clone())
                } else if let Some(p) = &l.bind_password_file {
                    let p = base.join(p);
                    let v = std::fs::read_to_string(&p).map_err(|e| ConfigError {
                        file: file.into(),
                        path: format!("directory[{i}].bind_password_file"),
                        location: String::new(),
                        message: format!("cannot read {}: {e}", p.display()),
                    })?;
                    Some(Secret::new(v.trim_end_matches(['\n', '\r'])))
                } else {
                    std::env::var(&env).ok().map(Secret::new)
                };
                if let Some(s) = secret {
                    secrets.insert(l.name.clone(), s);
                } else if l.bind_dn.is_some() {
                    return Err(ConfigError {
                        file: file.into(),
                        path: format!("directory[{i}]"),
                        location: String::new(),
                        message: format!(
                            "bind_dn is set but no password: give bind_password, bind_password_file, or the variable {env}"
                        ),
                    });
                }
            }
            if let DirectoryConfig::Graph(g) = d {
                let env = g.client_secret_env();
                let secret = if let Some(s) = &g.client_secret {
                    Some(s.clone())
                } else if let Some(p) = &g.client_secret_file {
                    let p = base.join(p);
                    let v = std::fs::read_to_string(&p).map_err(|e| ConfigError {
                        file: file.into(),
                        path: format!("directory[{i}].client_secret_file"),
                        location: String::new(),
                        message: format!("cannot read {}: {e}", p.display()),
                    })?;
                    Some(Secret::new(v.trim_end_matches(['\n', '\r'])))
                } else if g.certificate_file.is_none() {
                    std::env::var(&env).ok().map(Secret::new)
                } else {
                    None
                };
                if let Some(s) = secret {
                    secrets.insert(g.name.clone(), s);
                } else if g.certificate_file.is_none() {
                    return Err(ConfigError {
                        file: file.into(),
                        path: format!("directory[{i}]"),
                        location: String::new(),
                        message: format!(
                            "no credential for the app registration: give client_secret, client_secret_file, certificate_file + private_key_file, or the variable {env}"
                        ),
                    });
                }
            }
        }
        Ok(Settings {
            config,
            base: base.to_path_buf(),
            file: file.into(),
            secrets,
        })
    }

    /// An empty configuration (a server with nothing configured yet).
    pub fn empty() -> Settings {
        Settings {
            config: Config::default(),
            base: PathBuf::from("."),
            file: "(none)".into(),
            secrets: HashMap::new(),
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

//! `ferry backup FILE` and `ferry restore FILE`: a server's SQLite data directory in one file.
//!
//! The backup reads the data directory locally, beside a running server: the database through
//! `VACUUM INTO` (`ferry_store::backup`: one consistent snapshot, no lock the server waits on; the
//! server's `ferry.lock` is not taken), and the directory's other files — `secret.key`, which seals
//! the stored credentials, the tokens, `server-id` and `agent-tls/` (agents pin that certificate) —
//! into a table of the same file. Nothing travels over the network. The file is written in a
//! private temporary directory beside FILE and renamed, so a killed backup leaves no file at FILE,
//! and no one else's file beside it is read into it. A restore goes into an
//! empty data directory only, through a temporary directory renamed into place.
//!
//! PostgreSQL is backed up with `pg_dump`; [`postgres_advice`] says how, and what of the data
//! directory to keep with the dump.

use anyhow::{Context as _, Result, bail};
use ferry_server::settings::Settings;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The backup to write: one file (a SQLite database holding the key material too), mode 0600.
    pub file: PathBuf,
    /// The server's data directory (default: the configuration's `[server] data_dir`, else ./ferry-data).
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's configuration file, for its `[server]` data_dir and database_url.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The server's PostgreSQL URL, if it uses one: then pg_dump is the tool, and this says how.
    #[arg(long, env = "FERRY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A file written by `ferry backup`.
    pub file: PathBuf,
    /// The data directory to restore into: it must not exist or be empty (default: the
    /// configuration's `[server] data_dir`, else ./ferry-data).
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's configuration file, for its `[server]` data_dir.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// The live database's own files, never copied as files: the database is copied by SQLite.
const LIVE: &[&str] = &[
    "ferry.db",
    "ferry.db-wal",
    "ferry.db-shm",
    "ferry.db-journal",
    "ferry.lock",
];

/// What to do instead of `ferry backup` when the database is PostgreSQL.
pub fn postgres_advice(data_dir: &Path) -> String {
    format!(
        "this server's database is PostgreSQL: back it up with pg_dump, e.g.\n  \
         pg_dump --format=custom --file ferry.dump \"$FERRY_DATABASE_URL\"\n\
         and restore it into an empty database with\n  \
         pg_restore --no-owner --dbname \"$FERRY_DATABASE_URL\" ferry.dump\n\
         Keep with the dump, from {dir}: secret.key (or the FERRY_SECRET_KEY the servers are given) — \
         without it the credentials stored in the database cannot be read — and agent-tls/ (agents pin \
         its certificate; not needed with --agent-cert). The dump holds no secret in the clear; \
         secret.key must be kept as carefully as the server itself.",
        dir = data_dir.display()
    )
}

/// The data directory and database URL as `ferry server` resolves them.
fn resolve(
    data_dir: Option<PathBuf>,
    config: Option<&Path>,
    database_url: Option<String>,
) -> Result<(PathBuf, Option<String>)> {
    let settings = config.map(Settings::load).transpose()?;
    let url = database_url.or_else(|| {
        settings.as_ref().and_then(|s| {
            s.config
                .server
                .database_url
                .as_ref()
                .map(|u| u.expose().to_string())
        })
    });
    Ok((crate::commands::data_dir(data_dir, settings.as_ref()), url))
}

/// Every regular file under `dir` but the live database's, as (name relative to `dir` with `/`,
/// content), in name order.
fn data_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                eprintln!(
                    "warning: {} is skipped: its name is not UTF-8",
                    e.path().display()
                );
                continue;
            };
            let rel = format!("{prefix}{name}");
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push((e.path(), format!("{rel}/")));
            } else if t.is_file() {
                if (prefix.is_empty() && LIVE.contains(&name.as_str())) || name.ends_with(".tmp") {
                    continue;
                }
                let body = std::fs::read(e.path())
                    .with_context(|| format!("cannot read {}", e.path().display()))?;
                out.push((rel, body));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Syncs a directory, so that a rename in it survives a crash.
fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// A name of a temporary file or directory beside `path`, hidden, with this process's id.
fn beside(path: &Path, what: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} names no file", path.display()))?;
    Ok(path.with_file_name(format!(".{name}.{what}-{}", std::process::id())))
}

/// Removes what killed backups to `file` left (`.NAME.partial-PID` of processes no longer running:
/// a directory, or the files and SQLite journal of earlier versions): they hold the key material.
fn remove_dead_partials(file: &Path) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        // `PID` (a private directory), or, as earlier versions left them, files `PID` and
        // SQLite's `PID-journal` (a kill during the write leaves it) and `-wal`/`-shm`.
        let Some(pid) = n
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            // Never follows a link: a link is removed, a directory's content unlinked in place.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(e.path());
            } else {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

pub fn backup(a: BackupArgs, json: bool) -> Result<ExitCode> {
    let (dir, url) = resolve(a.data_dir, a.config.as_deref(), a.database_url)?;
    if url.is_some() {
        bail!("{}", postgres_advice(&dir));
    }
    let db = dir.join("ferry.db");
    if !db.is_file() {
        bail!(
            "{} has no ferry.db: give the server's data directory with --data-dir (or --config)",
            dir.display()
        );
    }
    if a.file.exists() && !a.force {
        bail!("{} exists; give --force to replace it", a.file.display());
    }
    let files = data_files(&dir)?;
    remove_dead_partials(&a.file);
    // The file is written in a directory of its own (0700, made here: mkdir never follows a
    // link nor takes what is there), with SQLite's `-journal` and `-wal` beside it. Beside FILE,
    // in a directory others may write (/tmp), they would be someone else's: SQLite reads a
    // `-wal` it finds, and its pages would become the backup's database.
    let work = beside(&a.file, "partial")?;
    let _ = std::fs::remove_dir_all(&work);
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&work)
            .with_context(|| format!("cannot create {}", work.display()))?;
    }
    let tmp = work.join("ferry-backup");
    if let Err(e) = ferry_store::backup::write(&db, &tmp, &files) {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e).with_context(|| format!("cannot back up {}", db.display()));
    }
    std::fs::rename(&tmp, &a.file).with_context(|| {
        let _ = std::fs::remove_dir_all(&work);
        format!("cannot write {}", a.file.display())
    })?;
    let _ = std::fs::remove_dir_all(&work);
    sync_dir(a.file.parent().unwrap_or(Path::new(".")));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let size = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    if json {
        println!(
            "{}",
            serde_json::json!({"file": a.file, "data_dir": dir, "bytes": size, "files": names})
        );
    } else {
        println!(
            "backed up {} to {} ({size} bytes): the database and {}",
            dir.display(),
            a.file.display(),
            if names.is_empty() {
                "no other file".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    if !names.contains(&"secret.key") {
        eprintln!(
            "warning: {} has no secret.key: the server's key is FERRY_SECRET_KEY; keep that key with \
             this backup, or the stored credentials must be entered again after a restore",
            dir.display()
        );
    }
    eprintln!(
        "note: {} holds the secret key and tokens: keep it as private as the data directory",
        a.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A file name from a backup, as a relative path of plain components only (a crafted backup must
/// not write outside the data directory or over the database).
fn safe_name(name: &str) -> Result<PathBuf> {
    let p = PathBuf::from(name);
    let plain = !name.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !LIVE.contains(&name);
    if !plain {
        bail!(
            "the backup holds a file named {name:?}, which is not a plain relative path; refused"
        );
    }
    Ok(p)
}

fn write_restored(tmp: &Path, file: &Path) -> Result<Vec<String>> {
    use std::os::unix::fs::DirBuilderExt as _;
    let files = ferry_store::backup::restore(file, &tmp.join("ferry.db"))?;
    let mut names = Vec::new();
    for (name, body) in files {
        let rel = safe_name(&name)?;
        let path = tmp.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        ferry_server::auth::write_private(&path, &body)
            .with_context(|| format!("cannot write {}", path.display()))?;
        names.push(name);
    }
    Ok(names)
}

pub fn restore(a: RestoreArgs, json: bool) -> Result<ExitCode> {
    use std::os::unix::fs::DirBuilderExt as _;
    let (dir, url) = resolve(a.data_dir, a.config.as_deref(), None)?;
    if url.is_some() {
        bail!(
            "the configuration names a PostgreSQL database: restore its pg_dump with pg_restore, \
             and put secret.key and agent-tls/ back into {}",
            dir.display()
        );
    }
    if !a.file.is_file() {
        bail!("{}: no such backup file", a.file.display());
    }
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: restore into a new or empty data directory (stop the server \
                     and move its directory aside first)",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
    let tmp = beside(&dir, "restore")?;
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let names = match write_restored(&tmp, &a.file) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.context(format!("cannot restore {}", a.file.display())));
        }
    };
    if dir.exists() {
        std::fs::remove_dir(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| {
        let _ = std::fs::remove_dir_all(&tmp);
        format!("cannot move the restored data into {}", dir.display())
    })?;
    sync_dir(dir.parent().unwrap_or(Path::new(".")));
    if json {
        println!(
            "{}",
            serde_json::json!({"file": a.file, "data_dir": dir, "files": names})
        );
    } else {
        println!(
            "restored {} into {}: the database (integrity checked) and {}",
            a.file.display(),
            dir.display(),
            if names.is_empty() {
                "no other file".to_string()
            } else {
                names.join(", ")
            }
        );
        println!(
            "start it with: ferry server --data-dir {}{}",
            dir.display(),
            if names.iter().any(|n| n == "secret.key") {
                ""
            } else {
                " (and the FERRY_SECRET_KEY the backed-up server had)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_names_no_path_outside_the_data_directory() {
        for bad in [
            "",
            "../secret.key",
            "/etc/passwd",
            "a/../../b",
            "ferry.db",
            "ferry.lock",
            "./x",
        ] {
            assert!(safe_name(bad).is_err(), "{bad:?} was accepted");
        }
        for good in [
            "secret.key",
            "agent-tls/key.pem",
            "initial-passwords/users.csv",
        ] {
            assert_eq!(safe_name(good).unwrap(), PathBuf::from(good));
        }
    }
}

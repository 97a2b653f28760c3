//! Runbooks and batches as code: `[[runbook]]` and `[[batch]]` of ferry.toml.
//!
//! They are checked with the API's own rules ([`validate_runbook`], [`check_batch`]) when the file
//! is loaded (so `ferry config check` sees what `PUT /runbooks` would refuse, with the key and
//! line), and put into the store at start, as the file's tenants are: check-ins, the waves, the
//! what-if and other servers read runbooks, batches and memberships from the store, so the
//! configured ones are served like any other. The API and console refuse to change them (409,
//! naming the file); a batch's halt and resume stay the operators', kept apart in `batch_waves`.
//! A runbook the file names but does not define may be one of the database's: it is assumed when
//! a file is checked alone, and must exist when the server starts.

use super::{check_batch, validate_runbook};
use crate::settings::Settings;
use ferry_core::config::{ConfigError, entry_location};
use ferry_core::runbook::Runbook;
use ferry_store::{DocKind, Store, StoreError, now_ms};
use std::collections::HashMap;

/// The runbooks the file's runbooks and batches name without defining them: (key path, name).
pub fn external_references(settings: &Settings) -> Vec<(String, String)> {
    let cfg = &settings.config;
    let defined = |n: &String| cfg.runbooks.iter().any(|r| &r.name == n);
    let mut out = Vec::new();
    for (i, r) in cfg.runbooks.iter().enumerate() {
        for (j, p) in r.prerequisites.iter().enumerate() {
            if !defined(p) {
                out.push((format!("runbook[{i}].prerequisites[{j}]"), p.clone()));
            }
        }
    }
    for (i, b) in cfg.batches.iter().enumerate() {
        for (j, r) in b.runbooks.iter().enumerate() {
            if !defined(r) {
                out.push((format!("batch[{i}].runbooks[{j}]"), r.clone()));
            }
        }
    }
    out
}

/// Whether the file defines a runbook of this name (the API will not change it).
pub fn is_configured_runbook(settings: &Settings, name: &str) -> bool {
    settings.config.runbooks.iter().any(|r| r.name == name)
}

/// Whether the file defines a batch of this name.
pub fn is_configured_batch(settings: &Settings, name: &str) -> bool {
    settings.config.batches.iter().any(|b| b.name == name)
}

/// Checks the file's runbooks and batches as the API checks one it is given, against the file's
/// runbooks and `stored` (the database's; none when a file is checked alone). With `lenient`, a
/// runbook named but defined in neither is assumed to exist ([`external_references`] lists them).
/// `src` (the file's text) locates the key in errors.
pub fn check(
    settings: &Settings,
    src: Option<&str>,
    stored: &HashMap<String, Runbook>,
    lenient: bool,
) -> Result<(), ConfigError> {
    let cfg = &settings.config;
    let err = |path: String, message: String| ConfigError {
        file: settings.file.clone(),
        location: src.map(|s| entry_location(s, &path)).unwrap_or_default(),
        path,
        message,
    };
    let mut all = stored.clone();
    for r in &cfg.runbooks {
        all.insert(r.name.clone(), r.clone());
    }
    if lenient {
        for (_, name) in external_references(settings) {
            if all.contains_key(&name) {
                continue;
            }
            let assumed = serde_json::json!({"name": name, "source_directories": [], "target_directories": []});
            if let Ok(r) = serde_json::from_value::<Runbook>(assumed) {
                all.insert(name, r);
            }
        }
    }
    for (i, r) in cfg.runbooks.iter().enumerate() {
        validate_runbook(r, settings, &all)
            .map_err(|e| err(format!("runbook[{i}].{}", e.field), e.message))?;
    }
    for (i, b) in cfg.batches.iter().enumerate() {
        let mut batch = b.batch();
        check_batch(&mut batch, settings, &all, false).map_err(|e| match e.split_once(": ") {
            Some((field, why)) if !field.contains(' ') => {
                err(format!("batch[{i}].{field}"), why.into())
            }
            _ => err(format!("batch[{i}]"), e.clone()),
        })?;
    }
    Ok(())
}

/// Why the file's runbooks and batches could not be put into the store.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Puts the file's runbooks and batches, and each batch's computers, into the store (what is
/// already there as written is left alone, so other servers see no change); says what changed.
pub async fn put_into_store(
    store: &dyn Store,
    settings: &Settings,
) -> Result<Vec<String>, LoadError> {
    let cfg = &settings.config;
    if cfg.runbooks.is_empty() && cfg.batches.is_empty() {
        return Ok(Vec::new());
    }
    let stored_runbooks: HashMap<String, Runbook> = store
        .documents(DocKind::Runbook)
        .await?
        .into_iter()
        .filter_map(|(n, body)| Some((n, serde_json::from_str::<Runbook>(&body).ok()?)))
        .collect();
    let others: HashMap<String, Runbook> = stored_runbooks
        .iter()
        .filter(|(n, _)| !is_configured_runbook(settings, n))
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect();
    // Every runbook named must now exist: in the file or in the database.
    for (path, name) in external_references(settings) {
        if !others.contains_key(&name) {
            return Err(ConfigError {
                file: settings.file.clone(),
                path,
                location: String::new(),
                message: format!(
                    "there is no runbook named `{name}`, in this file or in the database"
                ),
            }
            .into());
        }
    }
    check(settings, None, &others, false)?;
    let mut changed = Vec::new();
    for r in &cfg.runbooks {
        if stored_runbooks.get(&r.name) != Some(r) {
            let body = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            store
                .put_document(DocKind::Runbook, &r.name, &body, now_ms())
                .await?;
            changed.push(format!("runbook `{}`", r.name));
        }
    }
    let stored_batches: HashMap<String, ferry_core::wire::Batch> = store
        .documents(DocKind::Batch)
        .await?
        .into_iter()
        .filter_map(|(n, body)| Some((n, serde_json::from_str(&body).ok()?)))
        .collect();
    let members = store.batch_computers().await?;
    for b in &cfg.batches {
        let batch = b.batch();
        if stored_batches.get(&b.name) != Some(&batch) {
            let body =
                serde_json::to_string(&batch).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            store
                .put_document(DocKind::Batch, &b.name, &body, now_ms())
                .await?;
            changed.push(format!("batch `{}`", b.name));
        }
        // Added as written in the file (shown so); compared by key (`host_key`).
        let want: Vec<String> = b
            .computers
            .iter()
            .map(|c| ferry_core::host::host_key(c))
            .collect();
        let have: Vec<String> = members
            .iter()
            .filter(|(_, batch, _)| batch == &b.name)
            .map(|(c, _, _)| ferry_core::host::host_key(c))
            .collect();
        let add: Vec<String> = b
            .computers
            .iter()
            .filter(|c| !have.contains(&ferry_core::host::host_key(c)))
            .cloned()
            .collect();
        let remove: Vec<String> = have.iter().filter(|c| !want.contains(c)).cloned().collect();
        if !add.is_empty() {
            let conflicts = store.add_batch_computers(&b.name, &add, now_ms()).await?;
            if !conflicts.is_empty() {
                let list: Vec<String> = conflicts
                    .iter()
                    .map(|(c, other)| format!("{c} is in batch `{other}`"))
                    .collect();
                let i = cfg
                    .batches
                    .iter()
                    .position(|x| x.name == b.name)
                    .unwrap_or(0);
                return Err(ConfigError {
                    file: settings.file.clone(),
                    path: format!("batch[{i}].computers"),
                    location: String::new(),
                    message: format!(
                        "a computer is in one batch at most, and {}: remove it there (console or API) or from this batch",
                        list.join("; ")
                    ),
                }
                .into());
            }
        }
        if !remove.is_empty() {
            store.remove_batch_computers(&b.name, &remove).await?;
        }
        if !add.is_empty() || !remove.is_empty() {
            changed.push(format!(
                "batch `{}`: {} computer(s) added, {} removed",
                b.name,
                add.len(),
                remove.len()
            ));
        }
    }
    Ok(changed)
}

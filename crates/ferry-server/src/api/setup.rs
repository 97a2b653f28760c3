//! Directories and sync profiles added, changed and removed in the console:
//! `PUT`/`DELETE /directories/{name}`, `PUT`/`DELETE /profiles/{name}`.
//!
//! The bodies are the entries of `ferry.toml` as JSON (`[[directory]]`, `[[sync_profile]]` with its
//! `match` rules and `schedule`). The whole configuration is validated before anything is stored,
//! and the change applies at once (the scheduler reads profiles every second). Entries of the
//! configuration file cannot be changed here. A directory's credential (`bind_password`,
//! `client_secret`) is write-only: it is stored apart, never returned, and kept when an edit leaves
//! it out.

use super::{ApiError, ApiResult};
use crate::audit::act;
use crate::auth::AdminAuth;
use crate::settings::{Settings, Stored, StoredDirectory, put_credential, take_credential};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use ferry_core::config::{ConfigError, DirectoryConfig, SyncProfile};
use ferry_store::{DocKind, now_ms};
use std::sync::Arc;

fn invalid(e: ConfigError) -> ApiError {
    if e.path.is_empty() {
        ApiError::BadRequest(e.message)
    } else {
        ApiError::BadRequest(format!("{}: {}", e.path, e.message))
    }
}

/// Parses a JSON body with the path of the field that is wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::BadRequest(format!("{what}: {}", e.inner()))
        } else {
            ApiError::BadRequest(format!("{what}: {path}: {}", e.inner()))
        }
    })
}

/// What a change is to.
#[derive(Clone, Copy)]
enum Entry {
    Directory,
    Profile,
}

impl Entry {
    fn kind(self) -> &'static str {
        match self {
            Entry::Directory => "directory",
            Entry::Profile => "sync profile",
        }
    }
}

/// Starts a change to the entry `name`: takes the lock that keeps changes one at a time, refuses
/// an entry of the configuration file, and reads the stored entries.
async fn begin<'a>(
    st: &'a AppState,
    entry: Entry,
    name: &str,
) -> ApiResult<(tokio::sync::MutexGuard<'a, ()>, Arc<Settings>, Stored)> {
    let guard = st.settings.changes.lock().await;
    let now = st.settings.get();
    let (console, exists) = match entry {
        Entry::Directory => (
            now.console_directories.contains(name),
            now.config.directory(name).is_some(),
        ),
        Entry::Profile => (
            now.console_profiles.contains(name),
            now.config.profile(name).is_some(),
        ),
    };
    if exists && !console {
        return Err(ApiError::Conflict(format!(
            "{} `{name}` is defined in {}; change it there",
            entry.kind(),
            st.settings.file().file
        )));
    }
    let stored = st.settings.stored(&*st.store).await?;
    Ok((guard, now, stored))
}

/// A put's answer: `200` when it changed an entry, `201` when it added one.
fn put_status(changed: bool) -> StatusCode {
    if changed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    }
}

/// Removes the entry `name` from `entries`, or says there is none.
fn remove<T>(
    entries: &mut Vec<T>,
    entry: Entry,
    name: &str,
    is: impl Fn(&T) -> bool,
) -> ApiResult<()> {
    let before = entries.len();
    entries.retain(|x| !is(x));
    if entries.len() == before {
        return Err(ApiError::NotFound(format!(
            "there is no {} `{name}`",
            entry.kind()
        )));
    }
    Ok(())
}

/// The settings these entries would give, validated with the file's (nothing in force yet).
pub(super) fn build(st: &AppState, stored: &Stored) -> ApiResult<Settings> {
    st.settings.file().with_console(stored).map_err(invalid)
}

#[utoipa::path(put, path = "/directories/{name}", tag = "directories", params(("name" = String, Path)),
    request_body(content = Object, description = "a `[[directory]]` entry as JSON: `kind` (`ldap`, `file`, `graph`) and its keys; `bind_password`/`client_secret` are write-only and kept when left out"),
    responses((status = 200, description = "changed"), (status = 201, description = "added"),
        (status = 400, body = super::ErrorBody, description = "the field that is wrong, and why"),
        (status = 409, body = super::ErrorBody, description = "defined in the configuration file")))]
pub async fn put_directory(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let mut d: DirectoryConfig = parse(&body, "directory")?;
    super::same_name(d.name(), &name)?;
    let (_guard, _, mut stored) = begin(&st, Entry::Directory, &name).await?;
    let dirs = &mut stored.dirs;
    let old = dirs.iter().position(|x| x.name() == name);
    let mut kept = false;
    if let Some(i) = old {
        let same_kind = dirs[i].kind() == d.kind();
        let mut previous = dirs[i].clone();
        if same_kind && take_credential(&mut d.clone()).is_none() {
            let credential = take_credential(&mut previous);
            if credential.is_some()
                && crate::settings::destination(&previous) != crate::settings::destination(&d)
            {
                let field = match &d {
                    DirectoryConfig::Graph(_) => "client_secret",
                    _ => "bind_password",
                };
                return Err(ApiError::BadRequest(format!(
                    "{field}: this edit changes where `{name}` connects ({} → {}); enter {field} again, so that the kept one is never sent to a host it was not entered for",
                    crate::settings::destination(&previous).unwrap_or_default(),
                    crate::settings::destination(&d).unwrap_or_default()
                )));
            }
            put_credential(&mut d, credential);
            kept = true;
        }
        dirs[i] = d.clone();
    } else {
        dirs.push(d.clone());
    }
    let next = build(&st, &stored)?;
    let doc = StoredDirectory::new(d.clone(), &st.settings.vault)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let doc = serde_json::to_string(&doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    st.store
        .put_document(DocKind::Directory, &name, &doc, now_ms())
        .await?;
    st.settings.set(next);
    st.engine.forget_connector(&name);
    let mut shown = d;
    let had = take_credential(&mut shown).is_some();
    act(
        &st,
        &a,
        None,
        if old.is_some() {
            "directory.change"
        } else {
            "directory.add"
        },
        &name,
        format!(
            "{} directory{}",
            shown.kind(),
            match (had, kept) {
                (true, true) => ", credential kept",
                (true, false) => ", credential set",
                _ => "",
            }
        ),
    )
    .await?;
    Ok(put_status(old.is_some()))
}

#[utoipa::path(delete, path = "/directories/{name}", tag = "directories", params(("name" = String, Path)),
    responses((status = 204, description = "removed"), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody, description = "defined in the configuration file, or a profile uses it")))]
pub async fn delete_directory(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let (_guard, now, mut stored) = begin(&st, Entry::Directory, &name).await?;
    remove(&mut stored.dirs, Entry::Directory, &name, |d| {
        d.name() == name
    })?;
    if let Some(p) = now
        .config
        .profiles
        .iter()
        .find(|p| p.source == name || p.target == name)
    {
        return Err(ApiError::Conflict(format!(
            "sync profile `{}` uses directory `{name}`: change or remove the profile first",
            p.name
        )));
    }
    let next = build(&st, &stored)?;
    st.store.delete_document(DocKind::Directory, &name).await?;
    st.settings.set(next);
    st.engine.forget_connector(&name);
    act(&st, &a, None, "directory.remove", &name, String::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/profiles/{name}", tag = "sync", params(("name" = String, Path)),
    request_body(content = Object, description = "a `[[sync_profile]]` entry as JSON: `source`, `target`, `mode`, `object_types`, `schedule` (e.g. `15m`), `enabled`, `match` rules, `attribute` mappings"),
    responses((status = 200, description = "changed"), (status = 201, description = "added"),
        (status = 400, body = super::ErrorBody, description = "the field that is wrong, and why"),
        (status = 409, body = super::ErrorBody, description = "defined in the configuration file")))]
pub async fn put_profile(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let p: SyncProfile = parse(&body, "sync profile")?;
    super::same_name(&p.name, &name)?;
    p.configured_overrides()
        .map_err(|(j, why)| ApiError::BadRequest(format!("override[{j}].operator: {why}")))?;
    let (_guard, _, mut stored) = begin(&st, Entry::Profile, &name).await?;
    let old = stored.profiles.iter().position(|x| x.name == name);
    match old {
        Some(i) => stored.profiles[i] = p.clone(),
        None => stored.profiles.push(p.clone()),
    }
    let next = build(&st, &stored)?;
    let doc = serde_json::to_string(&p).map_err(|e| ApiError::Internal(e.to_string()))?;
    st.store
        .put_document(DocKind::Profile, &name, &doc, now_ms())
        .await?;
    st.settings.set(next);
    act(
        &st,
        &a,
        None,
        if old.is_some() {
            "profile.change"
        } else {
            "profile.add"
        },
        &name,
        format!(
            "{} → {}, {}, schedule {}{}",
            p.source,
            p.target,
            p.mode.as_str(),
            p.schedule.map_or("none".into(), |s| s.to_string()),
            p.overrides
                .iter()
                .map(|o| format!(
                    "; override {} {}{}",
                    o.source,
                    o.target
                        .as_deref()
                        .map_or("excluded".to_string(), |t| format!("→ {t}")),
                    o.reason
                        .as_deref()
                        .map_or(String::new(), |r| format!(": {r}"))
                ))
                .collect::<String>()
        ),
    )
    .await?;
    Ok(put_status(old.is_some()))
}

#[utoipa::path(delete, path = "/profiles/{name}", tag = "sync", params(("name" = String, Path)),
    responses((status = 204, description = "removed (its cycles, What-If and translation entries stay)"), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody, description = "defined in the configuration file")))]
pub async fn delete_profile(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let (_guard, _, mut stored) = begin(&st, Entry::Profile, &name).await?;
    remove(&mut stored.profiles, Entry::Profile, &name, |p| {
        p.name == name
    })?;
    // Its stored overrides go with it (a new profile of that name starts with none).
    let overrides: Vec<String> = stored
        .overrides
        .iter()
        .filter(|(p, _)| *p == name)
        .map(|(_, o)| super::overrides::doc_name(&name, &o.source))
        .collect();
    stored.overrides.retain(|(p, _)| *p != name);
    let next = build(&st, &stored)?;
    st.store
        .change_documents(DocKind::Override, &[], &overrides, now_ms())
        .await?;
    st.store.delete_document(DocKind::Profile, &name).await?;
    st.settings.set(next);
    act(&st, &a, None, "profile.remove", &name, String::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route(
            "/directories/{name}",
            put(put_directory).delete(delete_directory),
        )
        .route("/profiles/{name}", put(put_profile).delete(delete_profile))
}

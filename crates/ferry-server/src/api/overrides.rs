//! Operators' overrides of a sync profile's decisions: pins and excludes entered through the API
//! (the CLI's `ferry sync pin | unpin | exclude | overrides`, the console). Those of the
//! configuration (`[[sync_profile.override]]` in ferry.toml, or in a console profile's entry) are
//! listed here too, and changed only there.
//!
//! An operator names objects by id or by any look-up key (UPN, mail, SID, name); the key is
//! resolved when the override is entered, with the rule a plan uses
//! (`ferry_core::plan::resolve_keys`), and the override is stored by object id, so it holds
//! whatever later happens to the key. A key that names several objects is refused with the
//! candidates. Each override is a store document (`sync_overrides`, `PROFILE/SOURCE_ID`) added to
//! the profile in force (`settings::Stored`), so it is part of the profile's fingerprint: adding or
//! removing one changes the next plan's hash and so needs a new approval. Every act is audited.

use super::{ApiError, ApiResult};
use crate::auth::AdminAuth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use ferry_core::config::{Override, SyncProfile};
use ferry_core::model::DirObject;
use ferry_core::plan::resolve_keys;
pub use ferry_core::wire::{ImportResult, OverrideRequest, OverrideView};
use ferry_store::{DocKind, now_ms};

/// The store document's name of a profile's override of a source object.
pub fn doc_name(profile: &str, source_id: &str) -> String {
    format!("{profile}/{source_id}")
}

/// The most a bulk import may hold.
const IMPORT_LIMIT: usize = 16 << 20;

/// The profile and the overrides of its configuration (not those entered here).
async fn profile(st: &AppState, name: &str) -> ApiResult<(SyncProfile, Vec<Override>)> {
    let now = st.settings.get();
    let Some(p) = now.config.profile(name) else {
        return Err(ApiError::NotFound(format!(
            "there is no sync profile `{name}`"
        )));
    };
    let configured = match st.settings.file().config.profile(name) {
        Some(f) => f.overrides.clone(),
        None => st
            .settings
            .stored(&*st.store)
            .await?
            .profiles
            .into_iter()
            .find(|x| x.name == name)
            .map(|x| x.overrides)
            .unwrap_or_default(),
    };
    Ok((p.clone(), configured))
}

/// Objects of `directory` among which `keys` are resolved: the single object report's look-up
/// of each key for a few keys, the whole directory for many.
async fn candidates(st: &AppState, directory: &str, keys: &[&str]) -> ApiResult<Vec<DirObject>> {
    if keys.len() > 16 {
        return Ok(st.store.load_objects(directory).await?);
    }
    let mut out: Vec<DirObject> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for k in keys {
        for f in st.store.find_objects(k.trim(), 1000).await? {
            if f.directory == directory && seen.insert((f.object.kind, f.object.id.clone())) {
                out.push(f.object);
            }
        }
    }
    Ok(out)
}

fn describe(o: &DirObject) -> String {
    match o.upn.as_deref().or(o.mail.as_deref()) {
        Some(u) => format!("{} ({}, {u})", o.id, o.name),
        None => format!("{} ({})", o.id, o.name),
    }
}

/// The one object `found` names, or why not (`field: …`, with the candidates).
fn one<'a>(
    objects: &'a [DirObject],
    found: &[u32],
    field: &str,
    key: &str,
    what: &str,
    directory: &str,
) -> Result<&'a DirObject, String> {
    match found {
        [i] => Ok(&objects[*i as usize]),
        [] => Err(format!(
            "{field}: no {what} of directory {directory} has `{key}` as id, UPN, mail, SID or name"
        )),
        many => Err(format!(
            "{field}: `{key}` names {} {what}s of directory {directory}: {}; name one by its id",
            many.len(),
            many.iter()
                .take(20)
                .map(|&i| describe(&objects[i as usize]))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

fn kinds_text(p: &SyncProfile) -> String {
    p.object_types
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// An override by object ids, with the objects' names.
struct Resolved {
    ov: Override,
    source_name: String,
    target_name: Option<String>,
}

/// Why an entered override was refused: `asked` index, whether it conflicts with the
/// configuration (409) or is wrong (400), and what to say (`field: why`).
struct Refused {
    at: usize,
    conflict: bool,
    message: String,
}

/// Resolves overrides as the operator entered them into overrides by object id, checking each
/// against the configuration's: one entry per asked override (none where it was refused), and
/// the refusals.
async fn resolve(
    st: &AppState,
    p: &SyncProfile,
    configured: &[Override],
    asked: &[Override],
) -> ApiResult<(Vec<Option<Resolved>>, Vec<Refused>)> {
    let mut keys: Vec<&str> = asked.iter().map(|o| o.source.as_str()).collect();
    keys.extend(configured.iter().map(|o| o.source.as_str()));
    let sources = candidates(st, &p.source, &keys).await?;
    let found = resolve_keys(&sources, &p.object_types, &keys);
    let (asked_found, configured_found) = found.split_at(asked.len());
    let target_keys: Vec<&str> = asked.iter().filter_map(|o| o.target.as_deref()).collect();
    let targets = if target_keys.is_empty() {
        Vec::new()
    } else {
        candidates(st, &p.target, &target_keys).await?
    };
    // Targets are resolved among the source's kind: one pass per kind for all of them.
    let mut target_found: Vec<Option<Vec<u32>>> = vec![None; asked.len()];
    for &kind in &p.object_types {
        let (at, keys): (Vec<usize>, Vec<&str>) = asked
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let [s] = asked_found[i].as_slice() else {
                    return None;
                };
                (sources[*s as usize].kind == kind)
                    .then_some(())
                    .and(o.target.as_deref())
                    .map(|t| (i, t))
            })
            .unzip();
        for (i, f) in at.into_iter().zip(resolve_keys(&targets, &[kind], &keys)) {
            target_found[i] = Some(f);
        }
    }
    let what = kinds_text(p);
    let mut out = Vec::with_capacity(asked.len());
    let mut refused = Vec::new();
    let mut refuse = |at: usize, conflict: bool, message: String| {
        refused.push(Refused {
            at,
            conflict,
            message,
        });
    };
    for (i, o) in asked.iter().enumerate() {
        let s = match one(
            &sources,
            &asked_found[i],
            "source",
            &o.source,
            &what,
            &p.source,
        ) {
            Ok(s) => s,
            Err(e) => {
                refuse(i, false, e);
                out.push(None);
                continue;
            }
        };
        let s_index = asked_found[i][0];
        if let Some(c) = configured_found.iter().position(|f| f.contains(&s_index)) {
            refuse(
                i,
                true,
                format!(
                    "source: {} is overridden by the configuration (`{}`); change it there",
                    describe(s),
                    configured[c].source
                ),
            );
            out.push(None);
            continue;
        }
        let target = match &o.target {
            None => None,
            Some(t) => {
                let f = target_found[i].as_deref().unwrap_or_default();
                match one(&targets, f, "target", t, s.kind.as_str(), &p.target) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        refuse(i, false, e);
                        out.push(None);
                        continue;
                    }
                }
            }
        };
        out.push(Some(Resolved {
            source_name: s.name.clone(),
            target_name: target.map(|t| t.name.clone()),
            ov: Override {
                source: s.id.clone(),
                target: target.map(|t| t.id.clone()),
                exclude: o.exclude,
                reason: o
                    .reason
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string),
                operator: o.operator.clone(),
            },
        }));
    }
    Ok((out, refused))
}

/// Stores overrides (replacing those of the same sources) and puts them in force; returns the
/// override each one replaced.
async fn store(st: &AppState, profile: &str, add: &[Override]) -> ApiResult<Vec<Option<Override>>> {
    let mut stored = st.settings.stored(&*st.store).await?;
    let at: std::collections::HashMap<String, usize> = stored
        .overrides
        .iter()
        .enumerate()
        .filter(|(_, (p, _))| p == profile)
        .map(|(i, (_, o))| (o.source.clone(), i))
        .collect();
    let mut replaced = Vec::with_capacity(add.len());
    for o in add {
        if let Some(&i) = at.get(&o.source) {
            replaced.push(Some(std::mem::replace(
                &mut stored.overrides[i].1,
                o.clone(),
            )));
        } else {
            stored.overrides.push((profile.to_string(), o.clone()));
            replaced.push(None);
        }
    }
    let next = super::setup::build(st, &stored)?;
    let docs = add
        .iter()
        .map(|o| {
            serde_json::to_string(o)
                .map(|b| (doc_name(profile, &o.source), b))
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    st.store
        .change_documents(DocKind::Override, &docs, &[], now_ms())
        .await?;
    st.settings.set(next);
    Ok(replaced)
}

/// Audits an override as entered (`how`: how it came, e.g. an import's line), with the override
/// it replaced.
async fn audit_override(
    st: &AppState,
    who: &AdminAuth,
    profile: &str,
    o: &Override,
    replaced: Option<&Override>,
    how: &str,
) -> ApiResult<()> {
    crate::audit::act(
        st,
        who,
        None,
        if o.exclude {
            "override.exclude"
        } else {
            "override.pin"
        },
        profile,
        format!(
            "{}{how}{}",
            summary(o),
            replaced.map_or(String::new(), |r| format!("; replaces {}", summary(r)))
        ),
    )
    .await?;
    Ok(())
}

fn summary(o: &Override) -> String {
    let what = match &o.target {
        Some(t) => format!("{} → {t}", o.source),
        None => format!("{} excluded", o.source),
    };
    match &o.reason {
        Some(r) => format!("{what}: {r}"),
        None => what,
    }
}

#[utoipa::path(get, path = "/profiles/{name}/overrides", tag = "sync", params(("name" = String, Path)),
    responses((status = 200, body = Vec<OverrideView>), (status = 404, body = super::ErrorBody)))]
pub async fn list(
    _: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<OverrideView>>> {
    let (p, configured) = profile(&st, &name).await?;
    let mut views: Vec<OverrideView> = p
        .overrides
        .iter()
        .map(|o| OverrideView {
            source: o.source.clone(),
            source_name: None,
            target: o.target.clone(),
            target_name: None,
            exclude: o.exclude,
            reason: o.reason.clone(),
            operator: o.operator.clone(),
            origin: if configured.contains(o) {
                "config"
            } else {
                "operator"
            }
            .into(),
        })
        .collect();
    // Names: the objects the overrides resolve to today, as a plan resolves them.
    let keys: Vec<&str> = views.iter().map(|v| v.source.as_str()).collect();
    let sources = candidates(&st, &p.source, &keys).await?;
    let found = resolve_keys(&sources, &p.object_types, &keys);
    let target_keys: Vec<&str> = views.iter().filter_map(|v| v.target.as_deref()).collect();
    let targets = candidates(&st, &p.target, &target_keys).await?;
    let target_found = resolve_keys(&targets, &p.object_types, &target_keys);
    let mut tf = target_found.iter();
    for (v, f) in views.iter_mut().zip(&found) {
        if let [i] = f.as_slice() {
            v.source_name = Some(sources[*i as usize].name.clone());
        }
        if v.target.is_some()
            && let Some([i]) = tf.next().map(Vec::as_slice)
        {
            v.target_name = Some(targets[*i as usize].name.clone());
        }
    }
    Ok(Json(views))
}

#[utoipa::path(post, path = "/profiles/{name}/overrides", tag = "sync", params(("name" = String, Path)),
    request_body = OverrideRequest,
    responses((status = 201, body = OverrideView, description = "added (takes effect at the next cycle)"),
        (status = 200, body = OverrideView, description = "replaced the source's override"),
        (status = 400, body = super::ErrorBody, description = "the field that is wrong, and why; a key that names several objects lists them"),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody, description = "the configuration overrides this source")))]
pub async fn add(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    super::Object(req): super::Object<OverrideRequest>,
) -> ApiResult<(StatusCode, Json<OverrideView>)> {
    let asked = Override {
        source: req.source,
        target: req.target,
        exclude: req.exclude,
        reason: req.reason,
        operator: a.name.clone(),
    };
    asked
        .check()
        .map_err(|(field, why)| ApiError::BadRequest(format!("{field}: {why}")))?;
    let _guard = st.settings.changes.lock().await;
    let (p, configured) = profile(&st, &name).await?;
    let (mut found, refused) = resolve(&st, &p, &configured, std::slice::from_ref(&asked)).await?;
    if let Some(r) = refused.first() {
        return Err(if r.conflict {
            ApiError::Conflict(r.message.clone())
        } else {
            ApiError::BadRequest(r.message.clone())
        });
    }
    let Some(Resolved {
        ov: o,
        source_name,
        target_name,
    }) = found.pop().flatten()
    else {
        return Err(ApiError::Internal("an override resolved to nothing".into()));
    };
    let replaced = store(&st, &name, std::slice::from_ref(&o))
        .await?
        .pop()
        .flatten();
    audit_override(&st, &a, &name, &o, replaced.as_ref(), "").await?;
    let view = OverrideView {
        source_name: Some(source_name),
        target_name,
        source: o.source,
        target: o.target,
        exclude: o.exclude,
        reason: o.reason,
        operator: o.operator,
        origin: "operator".into(),
    };
    Ok((
        if replaced.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(view),
    ))
}

#[utoipa::path(delete, path = "/profiles/{name}/overrides/{source}", tag = "sync",
    params(("name" = String, Path), ("source" = String, Path, description = "the source object's id, or a key that names it")),
    responses((status = 204, description = "removed (the rules decide again at the next cycle)"),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody, description = "an override of the configuration")))]
pub async fn remove(
    a: AdminAuth,
    State(st): State<AppState>,
    Path((name, source)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let _guard = st.settings.changes.lock().await;
    let (p, configured) = profile(&st, &name).await?;
    let mut stored = st.settings.stored(&*st.store).await?;
    let mine: Vec<&Override> = stored
        .overrides
        .iter()
        .filter(|(x, _)| *x == name)
        .map(|(_, o)| o)
        .collect();
    // By id first; else the object the key names today (with the configuration's keys, to
    // tell an override of the configuration from none).
    let mut keys = vec![source.as_str()];
    keys.extend(configured.iter().map(|o| o.source.as_str()));
    let objects = candidates(&st, &p.source, &keys).await?;
    let f = resolve_keys(&objects, &p.object_types, &keys);
    let named: Vec<&str> = f[0]
        .iter()
        .map(|&i| objects[i as usize].id.as_str())
        .collect();
    let id = if mine.iter().any(|o| o.source == source) {
        Some(source.clone())
    } else {
        named
            .iter()
            .find(|id| mine.iter().any(|o| o.source == **id))
            .map(|id| id.to_string())
    };
    let Some(id) = id else {
        let by_config = configured.iter().zip(&f[1..]).find(|(o, found)| {
            o.source.trim().eq_ignore_ascii_case(source.trim())
                || found
                    .iter()
                    .any(|&i| named.contains(&objects[i as usize].id.as_str()))
        });
        if let Some((o, _)) = by_config {
            return Err(ApiError::Conflict(format!(
                "the override of `{source}` is in the configuration of `{name}` (as `{}`); change it there",
                o.source
            )));
        }
        return Err(ApiError::NotFound(format!(
            "`{source}` has no override in `{name}` (`ferry sync overrides {name}` lists them)"
        )));
    };
    let removed = stored
        .overrides
        .iter()
        .find(|(x, o)| *x == name && o.source == id)
        .map(|(_, o)| o.clone());
    stored
        .overrides
        .retain(|(x, o)| !(*x == name && o.source == id));
    let next = super::setup::build(&st, &stored)?;
    st.store
        .delete_document(DocKind::Override, &doc_name(&name, &id))
        .await?;
    st.settings.set(next);
    crate::audit::act(
        &st,
        &a,
        None,
        "override.remove",
        &name,
        removed.as_ref().map(summary).unwrap_or(id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/profiles/{name}/overrides/import", tag = "sync", params(("name" = String, Path)),
    request_body(content = String, content_type = "text/csv", description = "a header naming `source` and any of `target`, `exclude`, `reason`; one override a row"),
    responses((status = 200, body = ImportResult, description = "all applied (they take effect at the next cycle)"),
        (status = 400, body = super::ErrorBody, description = "nothing applied: every bad line, `line N: field: why`"),
        (status = 404, body = super::ErrorBody)))]
pub async fn import(
    a: AdminAuth,
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<ImportResult>> {
    let (rows, mut errors) = ferry_core::overrides::read_rows(&body, &a.name)
        .map_err(|e| ApiError::BadRequest(e.join("\n")))?;
    let _guard = st.settings.changes.lock().await;
    let (p, configured) = profile(&st, &name).await?;
    let asked: Vec<Override> = rows.iter().map(|r| r.ov.clone()).collect();
    let (found, refused) = resolve(&st, &p, &configured, &asked).await?;
    for r in refused {
        let line = rows[r.at].line;
        errors.push((line, format!("line {line}: {}", r.message)));
    }
    // Two keys of the file may name one object.
    let mut first: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut resolved: Vec<(u64, Override)> = Vec::with_capacity(found.len());
    for (f, r) in found.into_iter().zip(&rows) {
        let Some(f) = f else { continue };
        if let Some(l) = first.get(f.ov.source.as_str()) {
            errors.push((
                r.line,
                format!(
                    "line {}: source: names {} ({}), as line {l} does",
                    r.line, f.ov.source, f.source_name
                ),
            ));
            continue;
        }
        first.insert(f.ov.source.clone(), r.line);
        resolved.push((r.line, f.ov));
    }
    if !errors.is_empty() {
        // Every bad line, in file order, whichever check found it: nothing is applied.
        errors.sort_by_key(|(line, _)| *line);
        return Err(ApiError::BadRequest(
            ferry_core::overrides::listed(errors.into_iter().map(|(_, e)| e).collect()).join("\n"),
        ));
    }
    let overrides: Vec<Override> = resolved.iter().map(|(_, o)| o.clone()).collect();
    let replaced = store(&st, &name, &overrides).await?;
    let excludes = overrides.iter().filter(|o| o.exclude).count() as u64;
    let result = ImportResult {
        pins: overrides.len() as u64 - excludes,
        excludes,
        replaced: replaced.iter().filter(|r| r.is_some()).count() as u64,
    };
    let file = format!(
        "sha256 {}",
        ferry_core::config::hex(&<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    // One line for the file, then one for each override it made (with what it replaced).
    crate::audit::act(
        &st,
        &a,
        None,
        "override.import",
        &name,
        format!(
            "{} pins, {} excludes ({} replaced) from a file of {} bytes ({file})",
            result.pins,
            result.excludes,
            result.replaced,
            body.len()
        ),
    )
    .await?;
    for ((line, o), r) in resolved.iter().zip(&replaced) {
        audit_override(
            &st,
            &a,
            &name,
            o,
            r.as_ref(),
            &format!(" (import line {line}, {file})"),
        )
        .await?;
    }
    Ok(Json(result))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/profiles/{name}/overrides", get(list).post(add))
        .route("/profiles/{name}/overrides/{source}", delete(remove))
        .route(
            "/profiles/{name}/overrides/import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
}

//! `prepare`: the uploaded mapping validated against the environment and the target tenant's
//! directories, in the background; the request ends validated or failed, with the error file.

use super::{all, all_read, swap};
use crate::api::ApiResult;
use crate::state::AppState;
use ferry_core::envmove::{self, Environment, Move, OrgIndex, TargetLookup, Tenant};
use ferry_core::grouped;
use ferry_core::usermapping;
use ferry_store::DocKind;
use rustc_hash::FxHashMap;

/// Whether a directory user has a licence; none when the directory says nothing of licences.
pub(crate) fn licence(o: &ferry_core::model::DirObject) -> Option<bool> {
    let mut said = false;
    for (k, v) in &o.attrs {
        if k.eq_ignore_ascii_case("assignedLicenses") || k.eq_ignore_ascii_case("licenses") {
            said = true;
            if !v.trim().is_empty() && v.trim() != "[]" {
                return Some(true);
            }
        }
    }
    said.then_some(false)
}

/// Records on a request being validated what its validation is doing. Only a figure for people:
/// a request that changed meanwhile (cancelled, here or on another server) is left as it is.
async fn report(st: &AppState, tenant: &str, source_id: &str, what: String) {
    let _g = st.moves.lock(tenant).await;
    let Ok(moves) = all_read::<Move>(st, DocKind::EnvMove).await else {
        return;
    };
    let Some((mut m, read)) = moves
        .into_iter()
        .find(|(m, _)| m.source_migration_id == source_id)
    else {
        return;
    };
    if m.request.state != envmove::State::Validating {
        return;
    }
    m.progress = Some(what);
    if let Err(e) = swap(st, source_id, &read, &m).await {
        tracing::debug!(migration = %source_id, error = %e, "validation progress not recorded");
    }
}

/// Validates the uploaded mapping against the environment and the target tenant's directories.
pub(crate) async fn run_prepare(st: AppState, source_id: String) -> ApiResult<()> {
    let moves: Vec<Move> = all(&st, DocKind::EnvMove).await?;
    let Some(m) = moves
        .into_iter()
        .find(|m| m.source_migration_id == source_id)
    else {
        return Ok(());
    };
    let source_tenant = m.source_tenant.clone();
    let envs: Vec<Environment> = all(&st, DocKind::Environment).await?;
    let tenants: Vec<Tenant> = all(&st, DocKind::Tenant).await?;
    let env = envs.into_iter().find(|e| e.id == m.environment);
    let target = tenants.into_iter().find(|t| t.id == m.target_tenant);
    // Target directory: UPN → licensed (None: the directory says nothing of licences).
    let mut dir: FxHashMap<String, Option<bool>> = FxHashMap::default();
    let mut reachable = true;
    // The source's admins read this too: nothing of the target tenant's directories (their
    // names, their size) is said.
    report(
        &st,
        &source_tenant,
        &source_id,
        "reading the target tenant's users".to_string(),
    )
    .await;
    for d in target.iter().flat_map(|t| t.directories.iter()) {
        match st.store.load_objects(d).await {
            Ok(objs) => {
                for o in objs
                    .iter()
                    .filter(|o| o.kind == ferry_core::ObjectKind::User)
                {
                    for k in [&o.upn, &o.mail].into_iter().flatten() {
                        dir.insert(k.to_ascii_lowercase(), licence(o));
                    }
                }
            }
            Err(_) => reachable = false,
        }
    }
    let any_licence_data = dir.values().any(Option::is_some);
    let text = m.mapping.clone().unwrap_or_default();
    let (ok, errors, mapped) = match (
        env,
        usermapping::validate(usermapping::FILE_NAME, text.as_bytes()),
    ) {
        (Some(env), Ok(rows)) => {
            let org = OrgIndex::new(&env.system_users);
            let lookup = |upn: &str| {
                if !reachable {
                    return TargetLookup::Unavailable;
                }
                match dir.get(&upn.to_ascii_lowercase()) {
                    Some(l) => TargetLookup::Found {
                        licensed: l.unwrap_or(!any_licence_data),
                    },
                    None => TargetLookup::Missing,
                }
            };
            // Rows are validated one by one, so in slices: between them the request says how
            // far it got (at most once a second) and the runtime serves others.
            let mut results = Vec::with_capacity(rows.len());
            let mut said = std::time::Instant::now();
            for slice in rows.chunks(10_000) {
                results.extend(envmove::validate_users(slice, &org, lookup));
                if said.elapsed() >= std::time::Duration::from_secs(1) {
                    said = std::time::Instant::now();
                    let what = format!(
                        "validated {} of {} users",
                        grouped(results.len() as u64),
                        grouped(rows.len() as u64)
                    );
                    report(&st, &source_tenant, &source_id, what).await;
                }
                tokio::task::yield_now().await;
            }
            let failed = results.iter().any(|r| r.code.is_some_and(|c| c.fails()));
            let mapped = results.iter().filter(|r| r.code.is_none()).count();
            let file = results
                .iter()
                .any(|r| r.code.is_some())
                .then(|| envmove::error_file(&results));
            (!failed, file, mapped)
        }
        (None, _) => (
            false,
            Some("the environment is no longer registered\r\n".to_string()),
            0,
        ),
        (_, Err(msgs)) => (false, Some(msgs.join("\r\n") + "\r\n"), 0),
    };
    let _g = st.moves.lock(&source_tenant).await;
    let moves: Vec<(Move, String)> = all_read(&st, DocKind::EnvMove).await?;
    let Some((mut m, read)) = moves
        .into_iter()
        .find(|(m, _)| m.source_migration_id == source_id)
    else {
        return Ok(());
    };
    // A request cancelled (here or on another server) while it was validated stays cancelled.
    if m.request.finish_prepare(st.clock.now_ms(), ok).is_ok() {
        m.errors = errors;
        m.mapped_users = mapped;
        m.progress = None;
        swap(&st, &source_id, &read, &m).await?;
    }
    Ok(())
}

//! Hand-overs whose server died, rolled back by whichever server sees their claim lapse.

use super::claim::MoveClaim;
use super::{all, all_read, not_now, save, swap};
use crate::api::ApiResult;
use crate::state::AppState;
use ferry_core::envmove::{Environment, Move, State as MoveState};
use ferry_store::{AuditEntry, DocKind};

/// The moves whose hand-over no server holds any more (the server handing it over was killed or
/// its machine went down, or the move predates claims) are rolled back: the hand-over is one
/// transaction, so nothing of theirs was handed over; the request is validated again, with the
/// reason, and the environment leaves administration mode. Runs at start (a server's own claims
/// were released by then) and every [`SWEEP_EVERY`] on every server, so a move never waits for
/// its dead server to come back. Returns how many.
pub async fn recover_moves(st: &AppState) -> ApiResult<usize> {
    let moves: Vec<(Move, String)> = all_read(st, DocKind::EnvMove).await?;
    let mut n = 0;
    for (mut m, read) in moves {
        if m.request.state != MoveState::Migrating {
            continue;
        }
        let id = m.source_migration_id.clone();
        // Held: its server is alive and handing it over (perhaps this one).
        let Some(_claim) = MoveClaim::take(st, &id).await? else {
            continue;
        };
        let now = st.clock.now_ms();
        let was_on = m.migrating_on.take();
        m.request.finish_migrate(now, false).map_err(not_now)?;
        m.last_error = Some(
            "the server handing it over stopped during the hand-over; nothing was handed over, migrate again"
                .into(),
        );
        if swap(st, &id, &read, &m).await.is_err() {
            // Completed or rolled back in between, by whoever held it.
            continue;
        }
        let envs: Vec<Environment> = all(st, DocKind::Environment).await?;
        if let Some(mut env) = envs
            .into_iter()
            .find(|e| e.id == m.environment && e.tenant == m.source_tenant)
        {
            env.administration_mode = false;
            save(st, DocKind::Environment, &env.id, &env).await?;
        }
        st.audit
            .record(AuditEntry {
                id: 0,
                at: now,
                actor: "ferry".into(),
                tenant: Some(m.source_tenant.clone()),
                action: "env.move.migrate".into(),
                subject: id,
                detail: format!(
                    "rolled back by {}: the server handing it over ({}) stopped during the hand-over",
                    st.engine.server_id,
                    was_on.as_deref().unwrap_or("unknown")
                ),
                address: None,
                request_id: None,
            })
            .await?;
        n += 1;
    }
    Ok(n)
}

/// How often every server looks for hand-overs whose server died.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

//! Environment moves as a service: the requests are store documents changed by compare-and-swap
//! (one outcome of two servers deciding one request), a hand-over is claimed by the server doing
//! it (`claim`), hand-overs whose server died are rolled back by any other (`recover`), and a
//! mapping is validated in the background (`validate`). The HTTP handlers are
//! `api/environments.rs`; the state machine and the move itself are `ferry_core::envmove`.

pub mod claim;
pub mod recover;
pub mod validate;

use crate::api::{ApiError, ApiResult};
use crate::state::AppState;
use ferry_core::envmove::{self, Move};
use ferry_store::DocKind;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) async fn all<T: DeserializeOwned>(st: &AppState, kind: DocKind) -> ApiResult<Vec<T>> {
    Ok(all_read(st, kind)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .collect())
}

/// Every document of `kind`, with the body each was read from (for [`swap`]).
pub(crate) async fn all_read<T: DeserializeOwned>(
    st: &AppState,
    kind: DocKind,
) -> ApiResult<Vec<(T, String)>> {
    st.store
        .documents(kind)
        .await?
        .into_iter()
        .map(|(name, body)| {
            serde_json::from_str(&body)
                .map(|v| (v, body))
                .map_err(|e| ApiError::Internal(format!("stored {kind:?} `{name}`: {e}")))
        })
        .collect()
}

/// Within one server, one move changes state at a time (read, check, write: `AppState::moves`).
/// Across servers a transition is this compare-and-swap of the move's document: of two servers
/// deciding one request at once, one wins and the other is answered 409.
///
/// Writes a move's new state only if its document is still the one read (`read`): a move
/// another server or operator changed meanwhile is answered 409 and nothing is written. Returns
/// the body written, for the next transition.
pub(crate) async fn swap(st: &AppState, id: &str, read: &str, m: &Move) -> ApiResult<String> {
    st.clock.decision_pause().await;
    let body = to_json(m)?;
    if st
        .store
        .swap_document(
            DocKind::EnvMove,
            &m.source_migration_id,
            read,
            &body,
            st.clock.now_ms(),
        )
        .await?
    {
        Ok(body)
    } else {
        Err(ApiError::Conflict(format!(
            "`{id}` changed while this was being decided (another operator or server acted on it); look at it again"
        )))
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> ApiResult<String> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(e.to_string()))
}

pub(crate) async fn save<T: Serialize>(
    st: &AppState,
    kind: DocKind,
    name: &str,
    v: &T,
) -> ApiResult<()> {
    let body = to_json(v)?;
    Ok(st
        .store
        .put_document(kind, name, &body, st.clock.now_ms())
        .await?)
}

pub(crate) fn not_now(e: envmove::NotNow) -> ApiError {
    ApiError::Conflict(e.to_string())
}

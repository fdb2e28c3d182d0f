//! `POST /v1/unseal` and `POST /v1/seal`: the HTTP side of the vault
//! ([`crate::seal::Vault`]), which owns every rule of the key lifecycle.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::{Extension, Json};

use super::{ApiError, AppState, Status, UnsealReply};
use crate::config::Role;
use crate::seal::{SealCause, Sealing, ShareRefusal, MAX_SHARE_MESSAGE};
use crate::tls::PeerIdentity;

/// A holder submits their share over their own certificate. The role is
/// checked before a byte of the body is read, and at most a share's worth
/// is read.
pub(super) async fn unseal(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    body: Body,
) -> Result<Json<UnsealReply>, ApiError> {
    state.require(&id, Role::Holder)?;
    let body = super::read_small_body(&state, &id, "unseal", body, MAX_SHARE_MESSAGE).await?;
    let journal = state.journal(Some(&id));
    let accepted = state.vault.submit_share(&body, &id.fingerprint, &journal);
    // What the share's decoding and the interpolation left on this thread's
    // stack goes now, before the task can move on.
    crate::code::scrub_stack();
    let accepted = accepted.map_err(refusal)?;
    if accepted.generation.is_some() {
        super::notice_renewal(&state);
    }
    Ok(Json(UnsealReply {
        holder: accepted.holder,
        sealed: accepted.generation.is_none(),
        holders_needed: accepted.holders_needed,
        generation: accepted.generation,
    }))
}

fn refusal(r: ShareRefusal) -> ApiError {
    match r {
        ShareRefusal::TooLarge => ApiError::TooLarge(MAX_SHARE_MESSAGE as u64),
        ShareRefusal::Malformed => ApiError::BadRequest(r.to_string()),
        ShareRefusal::WrongCertificate { .. } => ApiError::WrongHolderCertificate(r.to_string()),
        ShareRefusal::Verification(_) => ApiError::ShareRefused(r.to_string()),
        ShareRefusal::AlreadyUnsealed | ShareRefusal::Sealing | ShareRefusal::Duplicate(_) => {
            ApiError::Conflict(r.to_string())
        }
        ShareRefusal::LogUnavailable => ApiError::AuditUnavailable,
        _ => ApiError::Internal,
    }
}

/// `POST /v1/seal` (operator): the vault tells running batches to stop,
/// waits until they have let go of the keys, logs the seal, signs a last
/// checkpoint and drops the log key. Holders must unseal again. While
/// sealed, it discards the shares received so far (an unseal abandoned
/// half-way).
pub(super) async fn seal(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
) -> Result<Json<Status>, ApiError> {
    state.require(&id, Role::Operator)?;
    let journal = state.journal(Some(&id));
    match state.vault.seal(&journal, SealCause::Operator).await {
        Sealing::WasSealed => {
            state
                .vault
                .discard_shares("operator", None, &journal)
                .map_err(refusal)?;
        }
        Sealing::InProgress => {
            return Err(ApiError::Conflict("a seal is already under way".into()));
        }
        Sealing::Sealed { logged: false, .. } => return Err(ApiError::AuditUnavailable),
        Sealing::Sealed { logged: true, .. } => {}
    }
    Ok(Json(super::status_of(&state, &id)))
}

//! `POST /v1/unseal`: a key holder submits their share over their own
//! certificate. Each share is checked on arrival; at `t` valid shares the
//! master secret is rebuilt and checked against `C0`, the keyring opened, and
//! the master secret and shares wiped (they are zeroized on drop).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};

use super::{ApiError, AppState, KeyState, UnsealReply};
use crate::code::KeyChain;
use crate::config::Role;
use crate::seal::{combine, Share};
use crate::tls::PeerIdentity;

/// Largest accepted share message.
const MAX_SHARE_MESSAGE: usize = 4096;

pub(super) async fn unseal(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    body: Bytes,
) -> Result<Json<UnsealReply>, ApiError> {
    state.require(&id, Role::Holder)?;
    let refuse = |holder: Option<&str>, reason: &str, err: ApiError| {
        state.log(
            "share_submitted",
            Some(&id),
            serde_json::json!({"holder": holder, "valid": false, "reason": reason}),
        );
        err
    };
    if body.len() > MAX_SHARE_MESSAGE {
        return Err(refuse(
            None,
            "too_large",
            ApiError::TooLarge(MAX_SHARE_MESSAGE as u64),
        ));
    }
    let share = Share::from_wire_json(&body).map_err(|_| {
        refuse(
            None,
            "malformed",
            ApiError::BadRequest("the body is not a share message".into()),
        )
    })?;
    drop(body);
    let holder = share.holder().to_owned();
    // The share must come over the certificate the record binds to its holder.
    let bound = state.record.holder(&holder).map(|h| h.fingerprint.as_str());
    if bound.is_some_and(|f| !f.eq_ignore_ascii_case(&id.fingerprint)) {
        let sender = state
            .record
            .holders()
            .iter()
            .find(|h| h.fingerprint.eq_ignore_ascii_case(&id.fingerprint))
            .map_or("a non-holder", |h| h.name.as_str());
        let msg =
            format!("the share of {holder} was sent with the certificate of {sender}: refused");
        return Err(refuse(
            Some(&holder),
            "wrong_certificate",
            ApiError::WrongHolderCertificate(msg),
        ));
    }
    if let Err(e) = state.record.verify_share(&share) {
        let msg = format!("share refused: {e}");
        return Err(refuse(
            Some(&holder),
            "verification_failed",
            ApiError::ShareRefused(msg),
        ));
    }

    let mut keys = state.keys.write().unwrap_or_else(|p| p.into_inner());
    let shares = match &mut *keys {
        KeyState::Unsealed { .. } => {
            return Err(refuse(
                Some(&holder),
                "already_unsealed",
                ApiError::Conflict("the service is already unsealed".into()),
            ));
        }
        KeyState::Sealed { shares, since } => {
            since.get_or_insert_with(tokio::time::Instant::now);
            shares
        }
    };
    if shares.iter().any(|s| s.holder() == holder) {
        return Err(refuse(
            Some(&holder),
            "duplicate",
            ApiError::Conflict(format!("the share of {holder} was already received")),
        ));
    }
    if state
        .log(
            "share_submitted",
            Some(&id),
            serde_json::json!({"holder": holder, "valid": true}),
        )
        .is_none()
    {
        return Err(ApiError::AuditUnavailable);
    }
    shares.push(share);
    let t = state.record.threshold();
    if shares.len() < t {
        return Ok(Json(UnsealReply {
            holder,
            sealed: true,
            holders_needed: t - shares.len(),
            generation: None,
        }));
    }
    let opened = combine(&state.record, shares)
        .and_then(|master| state.record.open_keyring(&state.keyring, &master));
    let keyring = match opened {
        Ok(k) => k,
        Err(e) => {
            // Every share passed Feldman's check, so this is a broken record or
            // keyring: keep the shares, stay sealed, and say so.
            tracing::error!(error = %e, "unseal failed after t valid shares");
            state.log(
                "unseal_failed",
                None,
                serde_json::json!({"reason": e.to_string()}),
            );
            return Err(ApiError::Internal);
        }
    };
    let chain = KeyChain::new(&keyring.generations).map_err(|_| ApiError::Internal)?;
    let crate::seal::Keyring { log_signing, .. } = keyring;
    let generation = chain.generation();
    let holders: Vec<String> = shares.iter().map(|s| s.holder().to_owned()).collect();
    // Logged before the keys are usable, under the lock: no batch can start
    // before this record, and if it cannot be written the service stays
    // sealed (the shares are kept; the holders need not send them again).
    if state
        .log(
            "unseal",
            Some(&id),
            serde_json::json!({"holders": holders, "generation": generation, "secret_and_shares_wiped": true}),
        )
        .is_none()
    {
        return Err(ApiError::AuditUnavailable);
    }
    // Dropping the sealed state drops (and zeroizes) every share; the master
    // secret was dropped with the closure above.
    *keys = KeyState::Unsealed {
        chain: Arc::new(chain),
        live: tokio_util::sync::CancellationToken::new(),
    };
    drop(keys);
    // The first checkpoint covers everything logged while sealed.
    state.audit.set_signer(Some(Arc::new(log_signing)));
    if let Err(e) = state.audit.checkpoint("unseal") {
        tracing::error!(error = %e, "cannot write the unseal checkpoint");
    }
    tracing::info!(generation, "service unsealed");
    Ok(Json(UnsealReply {
        holder,
        sealed: false,
        holders_needed: 0,
        generation: Some(generation),
    }))
}

/// `POST /v1/seal` (operator): tells running batches to stop, waits until
/// they have let go of the keys, logs the seal, signs a last checkpoint and
/// drops the log key. Holders must unseal again. While sealed, it discards
/// the shares received so far (an unseal abandoned half-way).
pub(super) async fn seal(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
) -> Result<Json<super::Status>, ApiError> {
    state.require(&id, Role::Operator)?;
    let Some(keys_wiped) = state.retire_keys().await else {
        state.discard_shares(Some(&id), "operator", None)?;
        return Ok(Json(super::status_of(&state)));
    };
    // Sealing happens whatever the log says (it is the safe direction), but
    // an unlogged seal is reported as such.
    let logged = state
        .log(
            "seal",
            Some(&id),
            serde_json::json!({"keys_wiped": keys_wiped}),
        )
        .is_some();
    if let Err(e) = state.audit.checkpoint("seal") {
        tracing::error!(error = %e, "cannot write the seal checkpoint");
    }
    state.audit.set_signer(None);
    tracing::info!(keys_wiped, "service sealed by the operator");
    if !logged {
        return Err(ApiError::AuditUnavailable);
    }
    Ok(Json(super::status_of(&state)))
}

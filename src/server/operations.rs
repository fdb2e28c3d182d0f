//! `/v1/operations`: key operations a quorum of holders approves (DESIGN
//! §5). The HTTP side only: the vault ([`crate::seal::Vault`]) owns every
//! rule (see [`crate::seal::quorum`] for the protocol).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::{Extension, Json};

use super::{read_small_body, ApiError, AppState};
use crate::config::{ClientEntry, Role};
use crate::seal::quorum::MAX_APPROVAL_MESSAGE;
use crate::seal::{Operation, PendingView, QuorumRefusal};
use crate::tls::PeerIdentity;
use crate::wire::ApprovalReply;

/// Largest proposal body (an operation's parameters).
const MAX_PROPOSAL: usize = 16 * 1024;

/// Holders and the operator propose, list and cancel; only holders approve.
fn holder_or_operator(state: &AppState, id: &PeerIdentity) -> Result<ClientEntry, ApiError> {
    match state.entry_with_role(id, Role::Holder) {
        Some(e) => Ok(e),
        None => state.require(id, Role::Operator),
    }
}

/// `POST /v1/operations` with the operation as JSON (`{"kind":"renew"}`):
/// the proposal, its digest and its expiry.
pub(super) async fn propose(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    body: Body,
) -> Result<Json<PendingView>, ApiError> {
    let entry = holder_or_operator(&state, &id)?;
    let body = read_small_body(&state, &id, "propose", body, MAX_PROPOSAL).await?;
    let operation: Operation = serde_json::from_slice(&body)
        // Where the JSON breaks, not serde's text, which can quote the body.
        .map_err(|e| {
            ApiError::Quorum(QuorumRefusal::Invalid(format!(
                "not an operation: the JSON does not fit (line {}, column {})",
                e.line(),
                e.column()
            )))
        })?;
    check_against_config(&state, &operation).map_err(|m| {
        state.log(
            crate::event::Event::RequestRefused {
                operation: Some(crate::event::Term::from("propose")),
                reason: crate::event::Term::from("invalid"),
                role: None,
            },
            Some(&id),
        );
        ApiError::Quorum(QuorumRefusal::Invalid(m))
    })?;
    let journal = state.journal(Some(&id));
    let ttl = std::time::Duration::from_secs(state.config.operation_ttl_seconds.max(1));
    let proposal = state
        .vault
        .propose(operation, &entry.name, ttl, &journal)
        .map_err(ApiError::Quorum)?;
    tracing::info!(operation = %proposal.id, kind = proposal.operation.kind(), "operation proposed");
    Ok(Json(PendingView {
        digest: proposal.digest_hex(),
        approved_by: Vec::new(),
        approvals_needed: state.record().threshold(),
        proposal,
    }))
}

/// What only the service knows about an operation's parameters: the
/// submitter a project names must be one of its submitters, its end date
/// after today, its id new.
fn check_against_config(state: &AppState, operation: &Operation) -> Result<(), String> {
    operation.check().map_err(|e| e.to_string())?;
    let today = crate::seal::project_today();
    match operation {
        Operation::ProjectCreate {
            project,
            submitter,
            end_date,
            ..
        } => {
            let known = state
                .clients()
                .iter()
                .any(|c| &c.name == submitter && c.roles.contains(&Role::Submitter));
            if !known {
                return Err(format!(
                    "no client named {submitter} with the submitter role in the configuration"
                ));
            }
            if crate::seal::quorum::parse_day(end_date).is_none_or(|d| d <= today) {
                return Err(format!("the end date {end_date} is not after today"));
            }
            if state.vault.projects().iter().any(|p| &p.id == project) {
                return Err(format!("project {project} exists already"));
            }
            Ok(())
        }
        Operation::ProjectDestroy { project } | Operation::ProjectRenew { project } => {
            let sealed = state.vault.view().sealed;
            if !sealed && !state.vault.projects().iter().any(|p| &p.id == project) {
                return Err(format!("no project {project}"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `GET /v1/operations`: every operation waiting for its quorum.
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
) -> Result<Json<Vec<PendingView>>, ApiError> {
    holder_or_operator(&state, &id)?;
    Ok(Json(state.vault.pending(&state.journal(Some(&id)))))
}

/// `POST /v1/operations/{id}/approve` with an approval message (a holder's
/// share and the digest approved), over the holder's own certificate.
pub(super) async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    UrlPath(operation): UrlPath<String>,
    body: Body,
) -> Result<Json<ApprovalReply>, ApiError> {
    state.require(&id, Role::Holder)?;
    let body = read_small_body(&state, &id, "approve", body, MAX_APPROVAL_MESSAGE).await?;
    let journal = state.journal(Some(&id));
    let approved = state
        .vault
        .approve(&operation, &body, &id.fingerprint, &journal);
    // What the share's decoding and the operation left on this thread's
    // stack goes now, before the task can move on.
    crate::code::scrub_stack();
    let approved = approved.map_err(ApiError::Quorum)?;
    Ok(Json(ApprovalReply {
        operation,
        holder: approved.holder,
        approvals: approved.approvals,
        approvals_needed: approved.approvals_needed,
        executed: approved.executed.is_some(),
        generation: approved.executed.map(|e| e.generation),
    }))
}

/// `POST /v1/operations/{id}/cancel`: drops a pending operation and its approvals.
pub(super) async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    UrlPath(operation): UrlPath<String>,
) -> Result<Json<crate::seal::Proposal>, ApiError> {
    holder_or_operator(&state, &id)?;
    let journal = state.journal(Some(&id));
    state
        .vault
        .cancel(&operation, &journal)
        .map(Json)
        .map_err(ApiError::Quorum)
}

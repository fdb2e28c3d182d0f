//! The vault's side of quorum operations ([`crate::seal::quorum`]):
//! proposals wait here for `t` approvals, each checked on arrival like an
//! unseal share, and the `t`-th runs the operation under the vault's lock.

use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::projects::{chain_ended, ended_projects, project_keys, today};
use super::{Journal, Phase, Vault};
use crate::code::{GenerationKey, KeyChain};
use crate::event::{
    rfc3339_seconds, ClientName, Day, Event, HolderName, OperationId, ProjectName, PublicHex, Term,
};
use crate::seal::quorum::{parse_day, ProjectTerms};
use crate::seal::quorum::{
    Approval, Operation, PendingView, Proposal, MAX_APPROVAL_MESSAGE, MAX_PENDING, OPERATION_FORMAT,
};
use crate::seal::{Keyring, ProjectChain, SealError, Share};

/// A proposal and the approvals held for it (their shares are zeroized
/// when it is dropped: run, cancelled or expired).
pub(super) struct Pending {
    proposal: Proposal,
    digest: [u8; 32],
    expires: OffsetDateTime,
    approvals: Vec<Share>,
}

impl Pending {
    fn id(&self) -> OperationId {
        OperationId::of_proposal(&self.proposal)
    }

    fn kind(&self) -> Term {
        Term::from(self.proposal.operation.kind())
    }

    fn approvals(&self) -> u64 {
        self.approvals.len() as u64
    }
}

/// Why a proposal, an approval or a cancellation was refused. Each names
/// the holder where known, never a share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumRefusal {
    /// Larger than [`MAX_APPROVAL_MESSAGE`].
    #[error("an approval message is at most {MAX_APPROVAL_MESSAGE} bytes")]
    TooLarge,
    /// Not an approval message.
    #[error("the body is not an approval message")]
    Malformed,
    /// No pending operation has this id.
    #[error(
        "no pending operation has this id: unknown, already run, cancelled or expired \
         (`keyceremony pending` lists those waiting)"
    )]
    UnknownOperation,
    /// The proposal's parameters are impossible.
    #[error("the operation cannot be proposed: {0}")]
    Invalid(String),
    /// Too many operations are pending.
    #[error("{MAX_PENDING} operations are already pending: cancel one or let it expire")]
    TooManyPending,
    /// The approval names another digest than the operation's.
    #[error(
        "the approval of {holder} is for another digest than this operation's: it was \
         changed or another operation was meant; nothing was approved"
    )]
    DigestMismatch {
        /// The approving holder.
        holder: String,
    },
    /// Sent over a certificate that is not its holder's.
    #[error("the approval of {holder} was sent with the certificate of {sender}: refused")]
    WrongCertificate {
        /// The share's holder.
        holder: String,
        /// The holder whose certificate sent it, or "a non-holder".
        sender: String,
    },
    /// The share failed Feldman's check or the record's checks.
    #[error("the share of {holder} was refused: {reason}")]
    Verification {
        /// The share's holder.
        holder: String,
        /// Why.
        reason: String,
    },
    /// This holder already approved this operation.
    #[error("{0} already approved this operation")]
    Duplicate(String),
    /// A seal is under way; the operation could not run.
    #[error("the service is being sealed; propose the operation again once it is done")]
    Sealing,
    /// The log could not be written: nothing changed.
    #[error("the traceability log cannot be written")]
    LogUnavailable,
    /// `t` approvals were held but the operation failed; nothing changed.
    #[error("the operation failed and changed nothing: {0}")]
    Failed(String),
}

impl QuorumRefusal {
    /// The `reason` of the `operation_approval` record.
    pub fn reason(&self) -> &'static str {
        match self {
            QuorumRefusal::TooLarge => "too_large",
            QuorumRefusal::Malformed => "malformed",
            QuorumRefusal::UnknownOperation => "unknown_operation",
            QuorumRefusal::Invalid(_) => "invalid",
            QuorumRefusal::TooManyPending => "too_many_pending",
            QuorumRefusal::DigestMismatch { .. } => "digest_mismatch",
            QuorumRefusal::WrongCertificate { .. } => "wrong_certificate",
            QuorumRefusal::Verification { .. } => "verification_failed",
            QuorumRefusal::Duplicate(_) => "duplicate",
            QuorumRefusal::Sealing => "sealing",
            QuorumRefusal::LogUnavailable => "log_unavailable",
            QuorumRefusal::Failed(_) => "failed",
        }
    }
}

/// An approval accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// Its holder.
    pub holder: String,
    /// Valid approvals held (`t` once run).
    pub approvals: usize,
    /// Approvals still needed (0 once run).
    pub approvals_needed: usize,
    /// Set when this approval completed the quorum and the operation ran.
    pub executed: Option<Executed>,
}

/// What a completed operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// The operation's kind.
    pub kind: &'static str,
    /// The CStatNS generation after it.
    pub generation: u32,
}

fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

impl Vault {
    fn pending_lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Proposes an operation on behalf of the configuration client
    /// `proposer`; it expires `ttl` from now. Logged before it is listed.
    pub fn propose(
        &self,
        operation: Operation,
        proposer: &str,
        ttl: Duration,
        journal: &dyn Journal,
    ) -> Result<Proposal, QuorumRefusal> {
        self.expire_operations(journal);
        let proposed = now();
        let ttl = time::Duration::try_from(ttl)
            .map_err(|_| QuorumRefusal::Invalid("the expiry is too far".into()))?;
        let expires = proposed
            .checked_add(ttl)
            .ok_or_else(|| QuorumRefusal::Invalid("the expiry is too far".into()))?;
        let proposal = Proposal {
            format: OPERATION_FORMAT.to_owned(),
            id: OperationId::random().as_str().to_owned(),
            ceremony_id: self.record.ceremony_id().to_string(),
            operation,
            proposed_by: proposer.to_owned(),
            proposed_at: rfc3339_seconds(proposed),
            expires_at: rfc3339_seconds(expires),
        };
        proposal
            .check()
            .map_err(|e| QuorumRefusal::Invalid(e.to_string()))?;
        let mut pending = self.pending_lock();
        if pending.len() >= MAX_PENDING {
            return Err(QuorumRefusal::TooManyPending);
        }
        if !journal.record(Event::OperationProposed {
            operation: OperationId::of_proposal(&proposal),
            kind: Term::from(proposal.operation.kind()),
            digest: PublicHex::of(proposal.digest()),
            proposer: ClientName::of_name(proposer),
            expires: crate::event::Timestamp::of(&proposal.expires_at),
        }) {
            return Err(QuorumRefusal::LogUnavailable);
        }
        pending.push(Pending {
            digest: proposal.digest(),
            proposal: proposal.clone(),
            expires,
            approvals: Vec::new(),
        });
        Ok(proposal)
    }

    /// The operations waiting for their quorum.
    pub fn pending(&self, journal: &dyn Journal) -> Vec<PendingView> {
        self.expire_operations(journal);
        let t = self.record.threshold();
        self.pending_lock()
            .iter()
            .map(|p| PendingView {
                proposal: p.proposal.clone(),
                digest: hex::encode(p.digest),
                approved_by: p.approvals.iter().map(|s| s.holder().to_owned()).collect(),
                approvals_needed: t.saturating_sub(p.approvals.len()),
            })
            .collect()
    }

    /// Drops (and logs) the operations past their expiry; returns their ids.
    pub fn expire_operations(&self, journal: &dyn Journal) -> Vec<String> {
        let now = OffsetDateTime::now_utc();
        let mut pending = self.pending_lock();
        let mut gone = Vec::new();
        pending.retain(|p| {
            if p.expires > now {
                return true;
            }
            journal.record(Event::OperationExpired {
                operation: p.id(),
                kind: p.kind(),
                approvals: p.approvals(),
            });
            gone.push(p.proposal.id.clone());
            false
        });
        gone
    }

    /// Drops every pending operation and its approvals (at seal and stop),
    /// each logged as cancelled.
    pub(super) fn drop_pending(&self, why: &'static str, journal: &dyn Journal) {
        let dropped: Vec<Pending> = self.pending_lock().drain(..).collect();
        for p in &dropped {
            tracing::warn!(operation = %p.proposal.id, why, "a pending key operation was dropped");
            journal.record(Event::OperationCancelled {
                operation: p.id(),
                kind: p.kind(),
                approvals: p.approvals(),
            });
        }
    }

    /// Cancels a pending operation (its approvals are dropped).
    pub fn cancel(&self, id: &str, journal: &dyn Journal) -> Result<Proposal, QuorumRefusal> {
        self.expire_operations(journal);
        let mut pending = self.pending_lock();
        let i = pending
            .iter()
            .position(|p| p.proposal.id == id)
            .ok_or(QuorumRefusal::UnknownOperation)?;
        if !journal.record(Event::OperationCancelled {
            operation: pending[i].id(),
            kind: pending[i].kind(),
            approvals: pending[i].approvals(),
        }) {
            return Err(QuorumRefusal::LogUnavailable);
        }
        Ok(pending.remove(i).proposal)
    }

    /// A holder's approval of operation `id`, sent over the certificate
    /// with fingerprint `sender`: checked on arrival (size, form, the
    /// holder's certificate, Feldman's check, the digest, one approval a
    /// holder), logged valid or not. The `t`-th runs the operation.
    pub fn approve(
        &self,
        id: &str,
        message: &[u8],
        sender: &str,
        journal: &dyn Journal,
    ) -> Result<Approved, QuorumRefusal> {
        self.expire_operations(journal);
        let known = self
            .pending_lock()
            .iter()
            .find(|p| p.proposal.id == id)
            .map(|p| (p.id(), p.approvals()));
        let refuse = |holder: Option<&str>, why: QuorumRefusal| {
            if let Some((operation, approvals)) = &known {
                journal.record(Event::OperationApproval {
                    operation: operation.clone(),
                    holder: holder.map(HolderName::of_holder),
                    valid: false,
                    reason: Some(Term::from(why.reason())),
                    approvals: *approvals,
                });
            } else {
                // An id no operation has is not written to the log (it is
                // whatever the client sent); the refusal is.
                journal.record(Event::RequestRefused {
                    operation: Some(Term::from("approve")),
                    reason: Term::from(why.reason()),
                    role: None,
                });
            }
            why
        };
        if message.len() > MAX_APPROVAL_MESSAGE {
            return Err(refuse(None, QuorumRefusal::TooLarge));
        }
        let approval = Approval::from_wire_json(message)
            .map_err(|_| refuse(None, QuorumRefusal::Malformed))?;
        let holder = approval.share.holder().to_owned();
        // Only a name the record lists reaches the log (the message's own
        // spelling is whatever the client sent).
        let listed = self.record.holder(&holder).map(|h| h.name.clone());
        let refuse = |_: Option<&str>, why: QuorumRefusal| refuse(listed.as_deref(), why);
        if known.is_none() {
            return Err(refuse(Some(&holder), QuorumRefusal::UnknownOperation));
        }
        if let Err(super::ShareRefusal::WrongCertificate { holder, sender }) =
            self.check_sender(&holder, sender)
        {
            let why = QuorumRefusal::WrongCertificate {
                holder: holder.clone(),
                sender,
            };
            return Err(refuse(Some(&holder), why));
        }
        if let Err(e) = self.record.verify_share(&approval.share) {
            let why = QuorumRefusal::Verification {
                holder: holder.clone(),
                reason: e.to_string(),
            };
            return Err(refuse(Some(&holder), why));
        }

        let mut pending = self.pending_lock();
        let Some(i) = pending.iter().position(|p| p.proposal.id == id) else {
            // Run, cancelled or expired since the check above.
            return Err(refuse(Some(&holder), QuorumRefusal::UnknownOperation));
        };
        let p = &mut pending[i];
        if p.expires <= OffsetDateTime::now_utc() {
            // Expired while its share was being checked: not run after it.
            return Err(refuse(Some(&holder), QuorumRefusal::UnknownOperation));
        }
        if !bool::from(p.digest.ct_eq(&approval.digest)) {
            let why = QuorumRefusal::DigestMismatch {
                holder: holder.clone(),
            };
            return Err(refuse(Some(&holder), why));
        }
        if p.approvals.iter().any(|s| s.holder() == holder) {
            return Err(refuse(
                Some(&holder),
                QuorumRefusal::Duplicate(holder.clone()),
            ));
        }
        if !journal.record(Event::OperationApproval {
            operation: p.id(),
            holder: Some(HolderName::of_holder(&holder)),
            valid: true,
            reason: None,
            approvals: p.approvals() + 1,
        }) {
            return Err(QuorumRefusal::LogUnavailable);
        }
        p.approvals.push(approval.share);
        let t = self.record.threshold();
        let held = p.approvals.len();
        if held < t {
            return Ok(Approved {
                holder,
                approvals: held,
                approvals_needed: t - held,
                executed: None,
            });
        }
        // The quorum is complete: the operation leaves the list (it runs
        // once, whatever happens next) and its shares go with it.
        let ready = pending.remove(i);
        drop(pending);
        let executed = self.execute(ready, journal)?;
        Ok(Approved {
            holder,
            approvals: held,
            approvals_needed: 0,
            executed: Some(executed),
        })
    }

    /// Runs an operation whose quorum is complete, under the phase lock (no
    /// unseal or seal interleaves): rebuilds `S` from the approvals' shares
    /// with the unseal checks, applies the operation to the opened keyring,
    /// seals it again and writes it (atomically: a crash leaves the old
    /// keyring or the new one), then makes the new keys current. `S`, the
    /// shares and the opened keyring are wiped on return.
    fn execute(&self, ready: Pending, journal: &dyn Journal) -> Result<Executed, QuorumRefusal> {
        let id = ready.id();
        let kind = ready.kind();
        let holders: Vec<HolderName> = ready
            .approvals
            .iter()
            .map(|s| HolderName::of_holder(s.holder()))
            .collect();
        let mut phase = self.lock();
        let fail = |reason: Term, why: QuorumRefusal| {
            journal.record(Event::OperationFailed {
                operation: id.clone(),
                kind: kind.clone(),
                reason,
            });
            why
        };
        if matches!(*phase, Phase::Retiring) {
            return Err(fail(Term::from("sealing"), QuorumRefusal::Sealing));
        }
        let operation = ready.proposal.operation.clone();
        let applied = self.apply(&operation, &ready.approvals);
        // The shares are wiped here, whatever the outcome.
        drop(ready);
        let (sealed, keyring, ended) = match applied {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "a quorum operation failed");
                let why = QuorumRefusal::Failed(e.to_string());
                return Err(fail(Term::from_error(&e), why));
            }
        };
        let generation = keyring.generation();
        // Logged before the keyring is written: no change to the keys
        // reaches the disk unrecorded. (A crash between the two leaves a
        // record of a change the disk does not hold; the next `unseal`
        // record, with its generation, shows which.)
        let mut logged = journal.record(Event::OperationExecuted {
            operation: id.clone(),
            kind: kind.clone(),
            holders,
            secret_and_shares_wiped: true,
        });
        logged = logged
            && match &operation {
                Operation::Renew {} => {
                    let created = keyring.created.last().copied().unwrap_or(0);
                    let created =
                        OffsetDateTime::from_unix_timestamp(created).unwrap_or_else(|_| now());
                    let due = crate::renewal::add_years(created.date(), self.renewal_years);
                    journal.record(Event::KeyRenewed {
                        generation,
                        created: crate::event::Timestamp::of(&rfc3339_seconds(created)),
                        renewal_due: Day::of(&crate::renewal::date_label(due)),
                        project: None,
                    })
                }
                Operation::ProjectRenew { project } => {
                    let chain = keyring.projects.iter().find(|p| &p.id == project);
                    let g = chain.map_or(0, |c| {
                        u32::try_from(c.generations.len()).unwrap_or(u32::MAX)
                    });
                    let created = chain.and_then(|c| c.created.last().copied()).unwrap_or(0);
                    let created =
                        OffsetDateTime::from_unix_timestamp(created).unwrap_or_else(|_| now());
                    let due = crate::renewal::add_years(created.date(), self.renewal_years);
                    journal.record(Event::KeyRenewed {
                        generation: g,
                        created: crate::event::Timestamp::of(&rfc3339_seconds(created)),
                        renewal_due: Day::of(&crate::renewal::date_label(due)),
                        project: Some(ProjectName::of_project(project)),
                    })
                }
                Operation::ProjectCreate {
                    project,
                    purpose,
                    end_date,
                    submitter,
                    ..
                } => journal.record(Event::ProjectKeyCreated {
                    project: ProjectName::of_project(project),
                    end_date: Day::of(end_date),
                    purpose: crate::event::Purpose::allowed(purpose),
                    submitter: ClientName::of_name(submitter),
                }),
                Operation::ProjectDestroy { project } => {
                    journal.record(Event::ProjectKeyDestroyed {
                        project: ProjectName::of_project(project),
                        reason: Term::from("operation"),
                        keyring_rewritten: true,
                    })
                }
            };
        logged = logged && self.log_destroyed(&ended, "end_date", true, journal);
        if !logged {
            // Nothing written: the operation did not happen (said, if the
            // log takes this record).
            return Err(fail(
                Term::from("log_unavailable"),
                QuorumRefusal::LogUnavailable,
            ));
        }
        if let Err(e) = self.store_keyring(sealed) {
            tracing::error!(error = %e, "the changed keyring could not be written");
            let why = QuorumRefusal::Failed(e.to_string());
            return Err(fail(Term::from("keyring_write_failed"), why));
        }
        // On disk now: make it current in memory too.
        *self.created.lock().unwrap_or_else(|p| p.into_inner()) = keyring.created.clone();
        match &mut *phase {
            Phase::Unsealed {
                keys,
                older,
                projects,
                ..
            } => {
                if matches!(operation, Operation::Renew {}) {
                    match KeyChain::new(&keyring.generations) {
                        Ok(chain) => {
                            // Running batches finish on the chain they
                            // started with; a seal waits for those too.
                            older.push(Arc::downgrade(&keys.chain));
                            keys.chain = Arc::new(chain);
                        }
                        Err(e) => tracing::error!(error = %e, "the renewed chain is unusable"),
                    }
                }
                // Projects gone from the keyring go from memory, whatever
                // else happens.
                for gone in projects
                    .iter()
                    .filter(|p| !keyring.projects.iter().any(|q| q.id == p.id))
                {
                    gone.retire();
                    older.push(gone.weak_chain());
                }
                projects.retain(|p| keyring.projects.iter().any(|q| q.id == p.id));
                // A renewed project's batches finish on the chain they
                // started with; a seal waits for those too.
                for p in projects.iter() {
                    if keyring
                        .projects
                        .iter()
                        .any(|q| q.id == p.id && q.generations.len() != p.generation() as usize)
                    {
                        older.push(p.weak_chain());
                    }
                }
                match project_keys(&keyring.projects, &keys.live, projects) {
                    Ok(all) => *projects = all,
                    Err(e) => tracing::error!(error = %e, "a project's chain is unusable"),
                }
                self.set_project_view(projects);
            }
            Phase::Sealed { .. } | Phase::Retiring => {
                let scratch = tokio_util::sync::CancellationToken::new();
                if let Ok(p) = project_keys(&keyring.projects, &scratch, &[]) {
                    self.set_project_view(&p);
                }
            }
        }
        drop(keyring);
        drop(phase);
        tracing::info!(
            kind = operation.kind(),
            generation,
            "quorum operation executed"
        );
        Ok(Executed {
            kind: operation.kind(),
            generation,
        })
    }

    /// Rebuilds `S`, applies the operation to the opened keyring (dropping
    /// any project whose end date has come), and seals it under the same
    /// `S`. Returns the sealed keyring (not yet written), the opened one,
    /// and the ended projects dropped.
    fn apply(
        &self,
        operation: &Operation,
        shares: &[Share],
    ) -> Result<(crate::seal::SealedKeyring, Keyring, Vec<String>), SealError> {
        let (master, mut keyring) = self.open(shares)?;
        let refuse = |m: String| Err(SealError::MalformedOperation(m));
        match operation {
            Operation::Renew {} => {
                if keyring.generation() == u32::MAX {
                    return Err(SealError::UnsupportedKeyring("too many generations".into()));
                }
                keyring.generations.push(GenerationKey::random());
                keyring.created.push(now().unix_timestamp());
            }
            Operation::ProjectCreate {
                project,
                purpose,
                end_date,
                submitter,
                matcher_fingerprint,
                matcher_recipient,
            } => {
                if keyring.projects.iter().any(|p| &p.id == project) {
                    return refuse(format!("project {project} exists already"));
                }
                if parse_day(end_date).is_none_or(|d| d <= today()) {
                    return refuse(format!("the end date {end_date} has come"));
                }
                let terms = ProjectTerms {
                    purpose: purpose.clone(),
                    submitter: submitter.clone(),
                    matcher_fingerprint: matcher_fingerprint.clone(),
                    matcher_recipient: matcher_recipient.clone(),
                };
                let terms = serde_json::to_string(&terms)
                    .map_err(|e| SealError::MalformedOperation(e.to_string()))?;
                keyring
                    .projects
                    .push(ProjectChain::new(project.clone(), end_date.clone(), terms));
            }
            Operation::ProjectRenew { project } => {
                let Some(chain) = keyring.projects.iter_mut().find(|p| &p.id == project) else {
                    return refuse(format!("no project {project} in the keyring"));
                };
                if chain_ended(chain, today()) {
                    return refuse(format!("project {project} has ended"));
                }
                chain.generations.push(GenerationKey::random());
                chain.created.push(now().unix_timestamp());
            }
            Operation::ProjectDestroy { project } => {
                let before = keyring.projects.len();
                // Dropping the chain zeroizes its keys.
                keyring.projects.retain(|p| &p.id != project);
                if keyring.projects.len() == before {
                    return refuse(format!("no project {project} in the keyring"));
                }
            }
        }
        // An ended project never goes back to disk with a changed keyring.
        let ended = ended_projects(&keyring);
        keyring.projects.retain(|p| !ended.contains(&p.id));
        let sealed = keyring.seal(&master, self.record.ceremony_id())?;
        drop(master);
        Ok((sealed, keyring, ended))
    }
}

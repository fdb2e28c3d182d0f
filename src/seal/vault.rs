//! The running service's key lifecycle, as one state machine under one lock:
//!
//! ```text
//!            share (< t)          t-th share: S rebuilt, checked
//!   Sealed ───────────────▶ Sealed ─────────────────────────────▶ Unsealed
//!     ▲   (collecting shares)                                         │
//!     │                                            seal / stop         │
//!     └──────────── Retiring ◀─────────────────────────────────────────┘
//!        last batch let go of the keys (or the wait ended): seal logged,
//!        last checkpoint signed, log key dropped
//! ```
//!
//! Every transition happens with the lock held, including the log records
//! and the handing over (or taking back) of the log-signing key, so a seal
//! racing an unseal cannot leave the service unsealed without a signer: while
//! a seal waits for running batches the vault is `Retiring`, and refuses
//! shares until the seal is complete.
//!
//! The vault knows nothing of HTTP or of where the log is written: it records
//! through a [`Journal`] that the caller implements (the service binds it to
//! its traceability log and to the requesting certificate).
//!
//! Quorum operations (`operations.rs`) rebuild `S` from `t` approvals in
//! the one place an unseal does too (`Vault::open`): the same checks, the
//! keyring opened, `S` wiped when the operation returns.

mod operations;
mod projects;

pub use operations::{Approved, Executed, QuorumRefusal};
#[cfg(feature = "dev-kit")]
pub use projects::advance_project_calendar;
#[cfg(feature = "service")]
pub(crate) use projects::today as project_today;
pub use projects::{ProjectKeys, ProjectRefusal, ProjectView};

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::ceremony::combine;
use super::keyring::{Keyring, LogSigningKey, SealedKeyring};
use super::master::MasterSecret;
use super::record::CeremonyRecord;
use super::share::Share;
use super::SealError;
use crate::code::KeyChain;
use crate::event::{Event, HolderName, Term};

/// Largest accepted share message.
pub const MAX_SHARE_MESSAGE: usize = 4096;

/// How long a seal or a stop waits for running batches to let go of the keys.
pub const KEY_RETIRE_WAIT: Duration = Duration::from_secs(10);

/// Where the vault records what it does. Implemented by the service over
/// its traceability log, with the actor of the request bound in.
pub trait Journal: Sync {
    /// Writes one record; false if it could not be written (the vault then
    /// refuses what it was about to do, except sealing).
    fn record(&self, event: Event) -> bool;
    /// Gives the log its signing key (on unseal) or takes it away (on seal).
    fn set_signer(&self, key: Option<Arc<LogSigningKey>>);
    /// Signs a checkpoint over the log so far (when there is a signer).
    fn checkpoint(&self, reason: &'static str);
}

/// What a batch holds while it runs: the key chain, and the flag that is
/// cancelled when the keys are retired (the batch then ends at its next
/// chunk, as `aborted`). The vault waits for every copy to be dropped.
#[derive(Clone)]
pub struct Keys {
    chain: Arc<KeyChain>,
    live: CancellationToken,
}

impl Keys {
    /// The key chain.
    pub fn chain(&self) -> &KeyChain {
        &self.chain
    }

    /// False once a seal or stop has begun.
    pub fn is_live(&self) -> bool {
        !self.live.is_cancelled()
    }

    /// Completes when a seal or stop begins.
    pub async fn retired(&self) {
        self.live.cancelled().await
    }

    /// The signal of [`Keys::retired`] alone, without the keys: for a task
    /// that must react to a seal without keeping the keys alive.
    pub fn retirement(&self) -> CancellationToken {
        self.live.clone()
    }
}

enum Phase {
    /// The shares received so far (verified), and when the first arrived:
    /// shares are not kept past the unseal window (an unseal abandoned half-way).
    Sealed {
        shares: Vec<Share>,
        since: Option<Instant>,
    },
    Unsealed {
        keys: Keys,
        /// Chains replaced by a renewal or destroyed that running batches
        /// may still hold: a seal waits for them too.
        older: Vec<std::sync::Weak<KeyChain>>,
        /// To rewrite the keyring when a project's end date comes.
        kek: crate::seal::KeyringKek,
        /// The research projects' chains. Kept here, not in the `Keys` a
        /// batch holds, so that a destroyed project's key goes at once.
        projects: Vec<Arc<ProjectKeys>>,
    },
    /// A seal or stop is waiting for batches to let go of the keys.
    Retiring,
}

/// Why a share was refused. Each names the holder where known, never the share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareRefusal {
    /// Larger than [`MAX_SHARE_MESSAGE`].
    #[error("a share message is at most {MAX_SHARE_MESSAGE} bytes")]
    TooLarge,
    /// Not a share message.
    #[error("the body is not a share message")]
    Malformed,
    /// Sent over a certificate that is not its holder's.
    #[error("the share of {holder} was sent with the certificate of {sender}: refused")]
    WrongCertificate {
        /// The share's holder.
        holder: String,
        /// The holder whose certificate sent it, or "a non-holder".
        sender: String,
    },
    /// Feldman's check or the record's checks failed.
    #[error("share refused: {0}")]
    Verification(String),
    /// The service is already unsealed.
    #[error("the service is already unsealed")]
    AlreadyUnsealed,
    /// A seal is in progress; send the share again once it is sealed.
    #[error("the service is being sealed; send the share again once it is sealed")]
    Sealing,
    /// This holder's share is already held.
    #[error("the share of {0} was already received")]
    Duplicate(String),
    /// The log could not be written: nothing changed.
    #[error("the traceability log cannot be written")]
    LogUnavailable,
    /// `t` valid shares did not open the keyring (a broken record or keyring).
    #[error("the keyring could not be opened with valid shares")]
    UnsealFailed,
}

impl ShareRefusal {
    /// The `reason` of the `share_submitted` record.
    pub fn reason(&self) -> &'static str {
        match self {
            ShareRefusal::TooLarge => "too_large",
            ShareRefusal::Malformed => "malformed",
            ShareRefusal::WrongCertificate { .. } => "wrong_certificate",
            ShareRefusal::Verification(_) => "verification_failed",
            ShareRefusal::AlreadyUnsealed => "already_unsealed",
            ShareRefusal::Sealing => "sealing",
            ShareRefusal::Duplicate(_) => "duplicate",
            ShareRefusal::LogUnavailable => "log_unavailable",
            ShareRefusal::UnsealFailed => "unseal_failed",
        }
    }
}

/// A share accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its holder.
    pub holder: String,
    /// Shares still needed (0 once unsealed).
    pub holders_needed: usize,
    /// The current generation once unsealed.
    pub generation: Option<u32>,
}

/// What a seal found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// It was sealed already (nothing done).
    WasSealed,
    /// Another seal is under way.
    InProgress,
    /// Sealed now; `keys_wiped` is false if a batch still held the keys at
    /// the end of the wait, `logged` false if the record could not be written.
    Sealed {
        /// Every copy of the keys was dropped.
        keys_wiped: bool,
        /// The seal (or stop) record was written.
        logged: bool,
    },
}

/// Why a seal happens: it decides the record written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealCause {
    /// The operator asked (`seal`).
    Operator,
    /// The service is stopping (`service_stop`).
    Stop,
}

/// What `status` says of the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultView {
    /// Sealed (or being sealed).
    pub sealed: bool,
    /// The current generation, when unsealed.
    pub generation: Option<u32>,
    /// When each CStatNS generation was created (Unix seconds, 0 when
    /// unknown), as last seen in the opened keyring; empty before the
    /// first unseal. These dates are public.
    pub created: Vec<i64>,
    /// Holders whose shares are held, while sealed.
    pub holders_received: Vec<String>,
}

/// The ceremony record, the sealed keyring, and the running key state.
pub struct Vault {
    record: CeremonyRecord,
    /// Replaced (under the phase lock) when a quorum operation changes it.
    keyring: Mutex<SealedKeyring>,
    /// Where the keyring is written after a quorum operation; `None` keeps
    /// it in memory (tests).
    keyring_file: Option<PathBuf>,
    /// Public creation dates of the CStatNS generations (see [`VaultView`]).
    created: Mutex<Vec<i64>>,
    phase: Mutex<Phase>,
    /// Proposed operations waiting for their quorum.
    pending: Mutex<Vec<operations::Pending>>,
    /// The research projects as last seen unsealed (public terms only).
    project_view: Mutex<Vec<projects::ProjectView>>,
    /// A project's end date came but the keyring file could not be
    /// rewritten: housekeeping tries again.
    destruction_owed: std::sync::atomic::AtomicBool,
    retire_wait: Duration,
    /// Years from a renewal to the next (for the `key_renewed` record).
    renewal_years: u32,
}

impl Vault {
    /// A sealed vault over a record (whose signature the caller checked) and its keyring.
    pub fn new(record: CeremonyRecord, keyring: SealedKeyring) -> Self {
        Self {
            record,
            keyring: Mutex::new(keyring),
            keyring_file: None,
            created: Mutex::new(Vec::new()),
            phase: Mutex::new(Phase::Sealed {
                shares: Vec::new(),
                since: None,
            }),
            pending: Mutex::new(Vec::new()),
            project_view: Mutex::new(Vec::new()),
            destruction_owed: std::sync::atomic::AtomicBool::new(false),
            retire_wait: KEY_RETIRE_WAIT,
            renewal_years: crate::renewal::DEFAULT_PERIOD_YEARS,
        }
    }

    /// The same vault with another renewal period (years).
    pub fn with_renewal_period(mut self, years: u32) -> Self {
        self.renewal_years = years;
        self
    }

    /// The same vault, writing its keyring to `path` (atomically) whenever
    /// a quorum operation changes it.
    pub fn with_keyring_file(mut self, path: PathBuf) -> Self {
        self.keyring_file = Some(path);
        self
    }

    /// The same vault with another wait for running batches at seal.
    pub fn with_retire_wait(mut self, wait: Duration) -> Self {
        self.retire_wait = wait;
        self
    }

    /// The ceremony record.
    pub fn record(&self) -> &CeremonyRecord {
        &self.record
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys for a batch; `None` unless unsealed.
    pub fn keys(&self) -> Option<Keys> {
        match &*self.lock() {
            Phase::Unsealed { keys, .. } => Some(keys.clone()),
            Phase::Sealed { .. } | Phase::Retiring => None,
        }
    }

    /// Sealed or not, the generation, the shares held.
    pub fn view(&self) -> VaultView {
        let phase = self.lock();
        let created = self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match &*phase {
            Phase::Sealed { shares, .. } => VaultView {
                sealed: true,
                generation: None,
                created,
                holders_received: shares.iter().map(|s| s.holder().to_owned()).collect(),
            },
            Phase::Unsealed { keys, .. } => VaultView {
                sealed: false,
                generation: Some(keys.chain.generation()),
                created,
                holders_received: Vec::new(),
            },
            Phase::Retiring => VaultView {
                sealed: true,
                generation: None,
                created,
                holders_received: Vec::new(),
            },
        }
    }

    /// A holder's share message, sent over the certificate with fingerprint
    /// `sender`. Checked on arrival (size, form, the holder's certificate,
    /// Feldman's check); at `t` shares `S` is rebuilt and checked against
    /// `C0`, the keyring opened, the keys made usable and the log key handed
    /// over, then `S` and the shares wiped. Every share is logged, valid or not.
    pub fn submit_share(
        &self,
        message: &[u8],
        sender: &str,
        journal: &dyn Journal,
    ) -> Result<Accepted, ShareRefusal> {
        let refuse = |holder: Option<&str>, why: ShareRefusal| {
            journal.record(Event::ShareSubmitted {
                holder: holder.map(HolderName::of_holder),
                valid: false,
                reason: Some(Term::from(why.reason())),
            });
            why
        };
        if message.len() > MAX_SHARE_MESSAGE {
            return Err(refuse(None, ShareRefusal::TooLarge));
        }
        let share =
            Share::from_wire_json(message).map_err(|_| refuse(None, ShareRefusal::Malformed))?;
        let holder = share.holder().to_owned();
        // Only a name the record lists reaches the log (the message's own
        // spelling is whatever the client sent).
        let listed = self.record.holder(&holder).map(|h| h.name.clone());
        let refuse = |_: Option<&str>, why: ShareRefusal| refuse(listed.as_deref(), why);
        if let Err(why) = self.check_sender(&holder, sender) {
            return Err(refuse(Some(&holder), why));
        }
        if let Err(e) = self.record.verify_share(&share) {
            let why = ShareRefusal::Verification(e.to_string());
            return Err(refuse(Some(&holder), why));
        }

        let mut phase = self.lock();
        let shares = match &mut *phase {
            Phase::Unsealed { .. } => {
                return Err(refuse(Some(&holder), ShareRefusal::AlreadyUnsealed))
            }
            Phase::Retiring => return Err(refuse(Some(&holder), ShareRefusal::Sealing)),
            Phase::Sealed { shares, since } => (shares, since),
        };
        let (shares, since) = shares;
        if shares.iter().any(|s| s.holder() == holder) {
            return Err(refuse(
                Some(&holder),
                ShareRefusal::Duplicate(holder.clone()),
            ));
        }
        if !journal.record(Event::ShareSubmitted {
            holder: Some(HolderName::of_holder(&holder)),
            valid: true,
            reason: None,
        }) {
            return Err(ShareRefusal::LogUnavailable);
        }
        shares.push(share);
        // The unseal window starts with the first share actually kept (not
        // at a refused or unlogged one).
        if shares.len() == 1 {
            *since = Some(Instant::now());
        }
        let t = self.record.threshold();
        if shares.len() < t {
            return Ok(Accepted {
                holder,
                holders_needed: t - shares.len(),
                generation: None,
            });
        }
        let (keyring, kek) = match self.open(shares) {
            // S is not needed past opening the keyring and deriving its
            // key-encryption key: wiped here.
            Ok((master, k)) => (k, master.keyring_kek(&self.record.ceremony_id())),
            Err(e) => {
                // Every share passed Feldman's check, so this is a broken
                // record or keyring: keep the shares, stay sealed, say so.
                tracing::error!(error = %e, "unseal failed after t valid shares");
                journal.record(Event::UnsealFailed {
                    reason: Term::from_error(&e),
                });
                return Err(ShareRefusal::UnsealFailed);
            }
        };
        // Projects past their end date (while the service was sealed) are
        // destroyed before any key is usable.
        // Logged before the keyring is rewritten.
        let (keyring, _destroyed) = match self.drop_ended_projects(keyring, &kek, Some(journal)) {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "ended projects could not be destroyed");
                journal.record(Event::UnsealFailed {
                    reason: Term::from_error(&e),
                });
                return Err(ShareRefusal::UnsealFailed);
            }
        };
        let live = CancellationToken::new();
        let projects = match projects::project_keys(&keyring.projects, &live, &[]) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "a research project's chain is unreadable");
                journal.record(Event::UnsealFailed {
                    reason: Term::from_error(&e),
                });
                return Err(ShareRefusal::UnsealFailed);
            }
        };
        let Keyring {
            generations,
            created,
            log_signing,
            ..
        } = keyring;
        let chain = KeyChain::new(&generations).map_err(|_| ShareRefusal::UnsealFailed)?;
        drop(generations);
        let generation = chain.generation();
        let holders = shares
            .iter()
            .map(|s| HolderName::of_holder(s.holder()))
            .collect();
        // Logged before the keys are usable: no batch can start before this
        // record, and if it cannot be written the vault stays sealed (the
        // shares are kept; the holders need not send them again).
        if !journal.record(Event::Unseal {
            holders,
            generation,
            secret_and_shares_wiped: true,
        }) {
            return Err(ShareRefusal::LogUnavailable);
        }
        *self.created.lock().unwrap_or_else(|p| p.into_inner()) = created;
        self.set_project_view(&projects);
        // Replacing the sealed phase drops (and zeroizes) every share; `S`
        // was dropped above.
        *phase = Phase::Unsealed {
            keys: Keys {
                chain: Arc::new(chain),
                live,
            },
            older: Vec::new(),
            kek,
            projects,
        };
        // Still under the lock: a seal cannot slip between the keys becoming
        // usable and the log getting its signer.
        journal.set_signer(Some(Arc::new(log_signing)));
        // The first checkpoint covers everything logged while sealed.
        journal.checkpoint("unseal");
        drop(phase);
        tracing::info!(generation, "service unsealed");
        Ok(Accepted {
            holder,
            holders_needed: 0,
            generation: Some(generation),
        })
    }

    /// The share of `holder` must come over the certificate the record binds to them.
    fn check_sender(&self, holder: &str, sender: &str) -> Result<(), ShareRefusal> {
        let bound = self.record.holder(holder).map(|h| h.fingerprint.as_str());
        if bound.is_some_and(|f| !f.eq_ignore_ascii_case(sender)) {
            let sender = self
                .record
                .holders()
                .iter()
                .find(|h| h.fingerprint.eq_ignore_ascii_case(sender))
                .map_or("a non-holder", |h| h.name.as_str());
            return Err(ShareRefusal::WrongCertificate {
                holder: holder.to_owned(),
                sender: sender.to_owned(),
            });
        }
        Ok(())
    }

    /// Rebuilds `S` from `shares` (checked against the record and `C0`) and
    /// opens the keyring with it. `S` is wiped when the caller drops it.
    fn open(&self, shares: &[Share]) -> Result<(MasterSecret, Keyring), SealError> {
        let master = combine(&self.record, shares)?;
        let sealed = self.keyring.lock().unwrap_or_else(|p| p.into_inner());
        let keyring = self.record.open_keyring(&sealed, &master)?;
        Ok((master, keyring))
    }

    /// Seals: makes the keys unusable at once (batches end at their next
    /// chunk), waits up to the retire wait for every running batch to let
    /// go of them, then, under the lock, logs the seal (or the stop), signs
    /// a last checkpoint and takes the log key back. Shares sent meanwhile
    /// are refused ([`ShareRefusal::Sealing`]).
    pub async fn seal(&self, journal: &dyn Journal, cause: SealCause) -> Sealing {
        let weak = {
            let mut phase = self.lock();
            match &*phase {
                Phase::Sealed { .. } => {
                    drop(phase);
                    self.drop_pending("seal", journal);
                    return Sealing::WasSealed;
                }
                Phase::Retiring => {
                    drop(phase);
                    self.drop_pending("seal", journal);
                    return Sealing::InProgress;
                }
                Phase::Unsealed { .. } => {}
            }
            let Phase::Unsealed {
                keys,
                mut older,
                projects,
                ..
            } = std::mem::replace(&mut *phase, Phase::Retiring)
            else {
                unreachable!("matched just above, under the same lock")
            };
            // Cancels the projects' tokens too (they are its children).
            keys.live.cancel();
            older.push(Arc::downgrade(&keys.chain));
            older.extend(projects.iter().map(|p| p.weak_chain()));
            older
        };
        // Operations waiting for their quorum hold shares: a seal (often on
        // suspicion) drops them too.
        self.drop_pending("seal", journal);
        // From here the seal completes even if this future is dropped (the
        // operator's connection closing mid-request): the guard finishes it.
        let mut finish = FinishSeal {
            vault: self,
            journal,
            cause,
            weak,
            done: false,
        };
        let deadline = tokio::time::Instant::now() + self.retire_wait;
        while finish.held() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        finish.complete()
    }

    /// Drops the shares held while sealed (zeroized on drop) and logs it;
    /// `older_than` limits it to shares held longer than that. Returns the
    /// holders whose shares were dropped; `Err` if the record could not be written.
    pub fn discard_shares(
        &self,
        reason: &'static str,
        older_than: Option<Duration>,
        journal: &dyn Journal,
    ) -> Result<Vec<String>, ShareRefusal> {
        let mut phase = self.lock();
        let Phase::Sealed { shares, since } = &mut *phase else {
            return Ok(Vec::new());
        };
        let due = match (older_than, *since) {
            (None, _) => true,
            (Some(limit), Some(t)) => t.elapsed() > limit,
            (Some(_), None) => false,
        };
        if !due || shares.is_empty() {
            return Ok(Vec::new());
        }
        *since = None;
        let holders: Vec<String> = shares.drain(..).map(|s| s.holder().to_owned()).collect();
        let logged = journal.record(Event::SharesDiscarded {
            holders: holders.iter().map(|h| HolderName::of_holder(h)).collect(),
            reason: Term::from(reason),
        });
        if logged {
            Ok(holders)
        } else {
            Err(ShareRefusal::LogUnavailable)
        }
    }
}

/// The end of a seal, under the lock: logs it, signs a last checkpoint,
/// takes the log key back and leaves the vault sealed. Run by
/// [`Vault::seal`] once the wait is over, or on drop if the seal's future is
/// dropped during the wait, so that no path leaves the vault retiring.
struct FinishSeal<'a> {
    vault: &'a Vault,
    journal: &'a dyn Journal,
    cause: SealCause,
    weak: Vec<std::sync::Weak<KeyChain>>,
    done: bool,
}

impl FinishSeal<'_> {
    /// Some batch still holds a key chain.
    fn held(&self) -> bool {
        self.weak.iter().any(|w| w.strong_count() > 0)
    }

    fn complete(&mut self) -> Sealing {
        self.done = true;
        let keys_wiped = !self.held();
        let mut phase = self.vault.lock();
        // Sealing happens whatever the log says (it is the safe direction),
        // but an unlogged seal is reported as such.
        let (event, reason) = match self.cause {
            SealCause::Operator => (Event::Seal { keys_wiped }, "seal"),
            SealCause::Stop => (Event::ServiceStop { keys_wiped }, "stop"),
        };
        let logged = self.journal.record(event);
        self.journal.checkpoint(reason);
        self.journal.set_signer(None);
        *phase = Phase::Sealed {
            shares: Vec::new(),
            since: None,
        };
        drop(phase);
        tracing::info!(keys_wiped, cause = ?self.cause, "service sealed");
        Sealing::Sealed { keys_wiped, logged }
    }
}

impl Drop for FinishSeal<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.complete();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ceremony::tests::ceremony;
    use super::*;

    /// A journal that keeps the events and the signer in memory.
    #[derive(Default)]
    struct Memory {
        /// While set, every write fails (an unwritable log).
        failing: std::sync::atomic::AtomicBool,
        events: Mutex<Vec<Event>>,
        signer: Mutex<Option<Arc<LogSigningKey>>>,
        checkpoints: Mutex<Vec<&'static str>>,
    }

    impl Journal for Memory {
        fn record(&self, event: Event) -> bool {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            self.events.lock().expect("lock").push(event);
            true
        }
        fn set_signer(&self, key: Option<Arc<LogSigningKey>>) {
            *self.signer.lock().expect("lock") = key;
        }
        fn checkpoint(&self, reason: &'static str) {
            if self.signer.lock().expect("lock").is_some() {
                self.checkpoints.lock().expect("lock").push(reason);
            }
        }
    }

    impl Memory {
        fn names(&self) -> Vec<&'static str> {
            self.events
                .lock()
                .expect("lock")
                .iter()
                .map(Event::name)
                .collect()
        }
        fn has_signer(&self) -> bool {
            self.signer.lock().expect("lock").is_some()
        }
    }

    fn sender(out: &super::super::CeremonyOutput, i: usize) -> String {
        out.record.holders()[i].fingerprint.clone()
    }

    fn unseal(vault: &Vault, out: &super::super::CeremonyOutput, j: &Memory) {
        for (i, s) in out.shares.iter().enumerate().take(out.record.threshold()) {
            vault
                .submit_share(s.to_wire_json().as_bytes(), &sender(out, i), j)
                .expect("share accepted");
        }
    }

    #[test]
    fn t_shares_unseal_and_hand_the_log_key_over_under_the_lock() {
        let out = ceremony(2, 3);
        let vault = Vault::new(out.record.clone(), out.keyring.clone());
        let j = Memory::default();
        let first = vault
            .submit_share(
                out.shares[0].to_wire_json().as_bytes(),
                &sender(&out, 0),
                &j,
            )
            .expect("first share");
        assert_eq!(first.holders_needed, 1);
        assert_eq!(vault.view().holders_received, vec![first.holder.clone()]);
        assert!(vault.keys().is_none());
        let dup = vault.submit_share(
            out.shares[0].to_wire_json().as_bytes(),
            &sender(&out, 0),
            &j,
        );
        assert!(matches!(dup, Err(ShareRefusal::Duplicate(_))));
        let wrong = vault.submit_share(
            out.shares[1].to_wire_json().as_bytes(),
            &sender(&out, 0),
            &j,
        );
        assert!(matches!(wrong, Err(ShareRefusal::WrongCertificate { .. })));
        let done = vault
            .submit_share(
                out.shares[1].to_wire_json().as_bytes(),
                &sender(&out, 1),
                &j,
            )
            .expect("second share");
        // The test ceremony makes two generations; the service answers in the newest.
        assert_eq!(done.generation, Some(2));
        assert!(vault.keys().is_some() && j.has_signer());
        assert_eq!(*j.checkpoints.lock().expect("lock"), vec!["unseal"]);
        assert_eq!(
            j.names(),
            [
                "share_submitted",
                "share_submitted",
                "share_submitted",
                "share_submitted",
                "unseal"
            ]
        );
    }

    /// The race of the house issue: a seal waits for a running batch while
    /// holders complete an unseal. The shares are refused while the seal is
    /// under way, and the vault ends sealed without a signer; a later unseal
    /// gives the signer back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_seal_racing_an_unseal_ends_sealed_without_a_signer() {
        let out = ceremony(2, 3);
        let vault = Arc::new(
            Vault::new(out.record.clone(), out.keyring.clone())
                .with_retire_wait(Duration::from_secs(5)),
        );
        let j = Arc::new(Memory::default());
        unseal(&vault, &out, &j);
        let batch = vault.keys().expect("unsealed");

        let sealing = tokio::spawn({
            let (vault, j) = (vault.clone(), j.clone());
            async move { vault.seal(&*j, SealCause::Operator).await }
        });
        // The seal has begun: the batch sees it, the keys are no longer handed out.
        tokio::time::timeout(Duration::from_secs(5), batch.retired())
            .await
            .expect("the batch is told to stop");
        assert!(vault.keys().is_none() && vault.view().sealed);
        // Holders race the seal with a full unseal: every share is refused.
        for (i, s) in out.shares.iter().enumerate() {
            let r = vault.submit_share(s.to_wire_json().as_bytes(), &sender(&out, i), &*j);
            assert_eq!(r, Err(ShareRefusal::Sealing));
        }
        assert_eq!(
            vault.seal(&*j, SealCause::Operator).await,
            Sealing::InProgress
        );
        assert!(!sealing.is_finished(), "the seal waits for the batch");
        drop(batch);
        let done = sealing.await.expect("seal task");
        assert_eq!(
            done,
            Sealing::Sealed {
                keys_wiped: true,
                logged: true
            }
        );
        assert!(!j.has_signer(), "sealed: the log key is gone");
        assert!(vault.keys().is_none());
        assert_eq!(j.names().last(), Some(&"seal"));
        assert_eq!(
            vault.seal(&*j, SealCause::Operator).await,
            Sealing::WasSealed
        );
        // The holders may unseal again once the seal is complete.
        unseal(&vault, &out, &j);
        assert!(vault.keys().is_some() && j.has_signer());
    }

    /// A seal whose caller goes away during the wait (the operator's
    /// connection closes) still ends sealed, logged and without a signer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_seal_dropped_during_its_wait_still_completes() {
        let out = ceremony(2, 3);
        let vault = Vault::new(out.record.clone(), out.keyring.clone())
            .with_retire_wait(Duration::from_secs(5));
        let j = Memory::default();
        unseal(&vault, &out, &j);
        let batch = vault.keys().expect("unsealed");
        let cut = tokio::time::timeout(
            Duration::from_millis(100),
            vault.seal(&j, SealCause::Operator),
        )
        .await;
        assert!(cut.is_err(), "the seal was still waiting for the batch");
        assert!(vault.view().sealed && vault.keys().is_none());
        assert!(!j.has_signer(), "the log key is taken back");
        assert_eq!(j.names().last(), Some(&"seal"));
        assert_eq!(
            vault.seal(&j, SealCause::Operator).await,
            Sealing::WasSealed,
            "not left retiring"
        );
        drop(batch);
        unseal(&vault, &out, &j);
        assert!(vault.keys().is_some() && j.has_signer());
    }

    fn approval(p: &crate::seal::Proposal, share: &Share) -> Vec<u8> {
        crate::seal::Approval {
            digest: p.digest(),
            share: super::super::ceremony::tests::copy(share),
        }
        .to_wire_json()
        .as_bytes()
        .to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_runs_at_the_t_th_approval_and_running_batches_keep_their_chain() {
        let out = ceremony(2, 3);
        let vault = Vault::new(out.record.clone(), out.keyring.clone())
            .with_retire_wait(Duration::from_secs(5));
        let j = Memory::default();
        unseal(&vault, &out, &j);
        let running = vault.keys().expect("unsealed");
        assert_eq!(running.chain.generation(), 2);
        let ttl = Duration::from_secs(60);
        let p = vault
            .propose(crate::seal::Operation::Renew {}, "ops", ttl, &j)
            .expect("proposed");
        assert!(p.check().is_ok());
        let first = vault
            .approve(&p.id, &approval(&p, &out.shares[2]), &sender(&out, 2), &j)
            .expect("first approval");
        assert_eq!((first.approvals, first.approvals_needed), (1, 1));
        assert!(first.executed.is_none());
        assert_eq!(vault.keys().expect("unsealed").chain.generation(), 2);
        let done = vault
            .approve(&p.id, &approval(&p, &out.shares[0]), &sender(&out, 0), &j)
            .expect("second approval");
        assert_eq!(done.executed.map(|e| e.generation), Some(3));
        assert_eq!(vault.keys().expect("unsealed").chain.generation(), 3);
        assert_eq!(vault.view().created.len(), 3);
        assert!(vault.pending(&j).is_empty(), "it ran once");
        // The batch that started before still holds generation 2, and a
        // seal waits for it as for any batch.
        assert_eq!(running.chain.generation(), 2);
        let cut = tokio::time::timeout(
            Duration::from_millis(100),
            vault.seal(&j, SealCause::Operator),
        )
        .await;
        assert!(cut.is_err(), "the seal waits for the older chain too");
        drop(running);
        // Unsealed again, the vault opens the renewed keyring.
        unseal(&vault, &out, &j);
        assert_eq!(vault.keys().expect("unsealed").chain.generation(), 3);
        let names = j.names();
        for name in [
            "operation_proposed",
            "operation_approval",
            "operation_executed",
            "key_renewed",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
    }

    #[test]
    fn approvals_are_refused_naming_the_holder_and_change_nothing() {
        let out = ceremony(2, 3);
        let vault = Vault::new(out.record.clone(), out.keyring.clone());
        let j = Memory::default();
        let ttl = Duration::from_secs(60);
        let a = vault
            .propose(crate::seal::Operation::Renew {}, "ops", ttl, &j)
            .expect("proposed");
        let b = vault
            .propose(crate::seal::Operation::Renew {}, "ops", ttl, &j)
            .expect("proposed");
        // Another operation's digest.
        let r = vault.approve(&a.id, &approval(&b, &out.shares[0]), &sender(&out, 0), &j);
        assert!(
            matches!(r, Err(QuorumRefusal::DigestMismatch { ref holder }) if holder == "holder-1")
        );
        // Another holder's certificate.
        let r = vault.approve(&a.id, &approval(&a, &out.shares[0]), &sender(&out, 1), &j);
        assert!(matches!(r, Err(QuorumRefusal::WrongCertificate { .. })));
        // Unknown id, malformed, too large.
        let r = vault.approve(
            &"0".repeat(32),
            &approval(&a, &out.shares[0]),
            &sender(&out, 0),
            &j,
        );
        assert_eq!(r.unwrap_err(), QuorumRefusal::UnknownOperation);
        let r = vault.approve(&a.id, b"{}", &sender(&out, 0), &j);
        assert_eq!(r.unwrap_err(), QuorumRefusal::Malformed);
        let r = vault.approve(&a.id, &[b' '; 5000], &sender(&out, 0), &j);
        assert_eq!(r.unwrap_err(), QuorumRefusal::TooLarge);
        // A second approval of the same holder.
        vault
            .approve(&a.id, &approval(&a, &out.shares[0]), &sender(&out, 0), &j)
            .expect("valid");
        let r = vault.approve(&a.id, &approval(&a, &out.shares[0]), &sender(&out, 0), &j);
        assert_eq!(r.unwrap_err(), QuorumRefusal::Duplicate("holder-1".into()));
        let pending = vault.pending(&j);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].approved_by, ["holder-1"]);
        assert!(vault.view().created.is_empty(), "nothing ran");
        // Cancelled: gone, and its approvals with it.
        assert_eq!(vault.cancel(&a.id, &j).expect("cancelled").id, a.id);
        assert_eq!(
            vault.cancel(&a.id, &j).unwrap_err(),
            QuorumRefusal::UnknownOperation
        );
        assert_eq!(vault.pending(&j).len(), 1);
    }

    #[test]
    fn an_operation_past_its_expiry_is_dropped_and_logged() {
        let out = ceremony(2, 3);
        let vault = Vault::new(out.record.clone(), out.keyring.clone());
        let j = Memory::default();
        let p = vault
            .propose(
                crate::seal::Operation::Renew {},
                "ops",
                Duration::from_secs(1),
                &j,
            )
            .expect("proposed");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(vault.expire_operations(&j), vec![p.id.clone()]);
        assert!(j.names().contains(&"operation_expired"));
        let r = vault.approve(&p.id, &approval(&p, &out.shares[0]), &sender(&out, 0), &j);
        assert_eq!(r.unwrap_err(), QuorumRefusal::UnknownOperation);
    }

    #[test]
    fn the_unseal_window_starts_at_the_first_share_kept() {
        use std::sync::atomic::Ordering::SeqCst;
        let out = ceremony(2, 3);
        let vault = Vault::new(out.record.clone(), out.keyring.clone());
        let j = Memory::default();
        let share = || out.shares[0].to_wire_json();
        j.failing.store(true, SeqCst);
        let r = vault.submit_share(share().as_bytes(), &sender(&out, 0), &j);
        assert_eq!(r.map(|_| ()), Err(ShareRefusal::LogUnavailable));
        assert!(
            vault.view().holders_received.is_empty(),
            "an unlogged share is not kept"
        );
        j.failing.store(false, SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        vault
            .submit_share(share().as_bytes(), &sender(&out, 0), &j)
            .expect("kept");
        // The window began just now, not at the unlogged share 300 ms ago.
        let window = Some(Duration::from_millis(200));
        assert_eq!(
            vault.discard_shares("unseal_window_expired", window, &j),
            Ok(Vec::new())
        );
        // While the log is unwritable, an expired share still goes.
        std::thread::sleep(Duration::from_millis(250));
        j.failing.store(true, SeqCst);
        let r = vault.discard_shares("unseal_window_expired", window, &j);
        assert_eq!(r, Err(ShareRefusal::LogUnavailable));
        assert!(vault.view().holders_received.is_empty());
    }

    #[test]
    fn shares_held_too_long_are_discarded_and_logged() {
        let out = ceremony(2, 3);
        let vault = Vault::new(out.record.clone(), out.keyring.clone());
        let j = Memory::default();
        vault
            .submit_share(
                out.shares[0].to_wire_json().as_bytes(),
                &sender(&out, 0),
                &j,
            )
            .expect("share");
        let none = vault.discard_shares("unseal_window_expired", Some(Duration::from_secs(60)), &j);
        assert_eq!(none, Ok(Vec::new()));
        let dropped = vault.discard_shares("operator", None, &j).expect("logged");
        assert_eq!(dropped.len(), 1);
        assert!(vault.view().holders_received.is_empty());
        assert_eq!(j.names().last(), Some(&"shares_discarded"));
    }
}

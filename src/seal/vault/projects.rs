//! Research projects' key chains (CSpeNS, DESIGN §3, §5) as the vault
//! holds them: created and destroyed by a quorum, and destroyed **without
//! anyone's action** when their end date begins (UTC): in memory at once,
//! and in the keyring on disk, which the unsealed vault rewrites with the
//! key-encryption key it keeps for that purpose. A sealed vault holds no
//! key; a project that ended while it was sealed is destroyed at the next
//! unseal, before any key is usable.

use std::sync::{Arc, Weak};

use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use super::{Journal, Keys, Phase, Vault};
use crate::code::KeyChain;
use crate::event::{Event, ProjectName, Term};
use crate::seal::quorum::{parse_day, ProjectTerms};
use crate::seal::{Keyring, KeyringKek, ProjectChain, SealError};

/// A research project's keys in the running service.
pub struct ProjectKeys {
    /// The project's id.
    pub id: String,
    /// The day its key is destroyed (when it begins, UTC).
    pub end_date: Date,
    /// What the quorum approved.
    pub terms: ProjectTerms,
    chain: Arc<KeyChain>,
    /// A child of the service's token: cancelled at seal, and at the
    /// project's destruction.
    live: CancellationToken,
}

impl ProjectKeys {
    /// Stops its batches (at their next chunk): the project is destroyed.
    pub(super) fn retire(&self) {
        self.live.cancel();
    }

    /// Its chain's current generation.
    pub fn generation(&self) -> u32 {
        self.chain.generation()
    }

    pub(super) fn weak_chain(&self) -> Weak<KeyChain> {
        Arc::downgrade(&self.chain)
    }

    /// Whether the project has ended by `today`.
    pub fn ended(&self, today: Date) -> bool {
        today >= self.end_date
    }
}

/// The public side of a project, as `status` shows it (and as it stays
/// known while sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectView {
    /// The project's id.
    pub id: String,
    /// Its end date, `YYYY-MM-DD`.
    pub end_date: String,
    /// What the quorum approved.
    pub terms: ProjectTerms,
    /// Its current generation.
    pub generation: u32,
}

/// Why a project batch cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectRefusal {
    /// No live project of this submitter has this id.
    #[error("no research project of this certificate has this id (unknown, destroyed, or another submitter's)")]
    Unknown,
    /// Its end date has begun: its key is destroyed.
    #[error("this research project ended on {0}: its key is destroyed")]
    Ended(String),
}

/// Days the projects' calendar is moved forward (tests only).
#[cfg(feature = "dev-kit")]
static DAYS_AHEAD: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Moves the calendar the projects' end dates are read against forward by
/// `days`, for this process: a test of destruction at the end date need not
/// wait for it. Only in builds with the `dev-kit` feature; a production
/// build has no such switch.
#[cfg(feature = "dev-kit")]
pub fn advance_project_calendar(days: i64) {
    DAYS_AHEAD.fetch_add(days, std::sync::atomic::Ordering::SeqCst);
}

/// Today's date (UTC), as the projects' end dates are read.
pub(crate) fn today() -> Date {
    let today = OffsetDateTime::now_utc().date();
    #[cfg(feature = "dev-kit")]
    let today = today
        .checked_add(time::Duration::days(
            DAYS_AHEAD.load(std::sync::atomic::Ordering::SeqCst),
        ))
        .unwrap_or(today);
    today
}

/// Whether a project chain's end date has begun (an unreadable date counts
/// as ended: such a key is never kept).
pub(super) fn chain_ended(chain: &ProjectChain, today: Date) -> bool {
    parse_day(&chain.end_date).is_none_or(|d| today >= d)
}

/// The ids of the projects of `keyring` whose end date has begun.
pub(super) fn ended_projects(keyring: &Keyring) -> Vec<String> {
    let today = today();
    keyring
        .projects
        .iter()
        .filter(|p| chain_ended(p, today))
        .map(|p| p.id.clone())
        .collect()
}

/// The projects' keys for `chains`, each with a child of `live`; a project
/// already in `previous` keeps its keys (and token).
pub(super) fn project_keys(
    chains: &[ProjectChain],
    live: &CancellationToken,
    previous: &[Arc<ProjectKeys>],
) -> Result<Vec<Arc<ProjectKeys>>, SealError> {
    let bad = |m: String| SealError::UnsupportedKeyring(m);
    chains
        .iter()
        .map(|c| {
            if let Some(p) = previous
                .iter()
                .find(|p| p.id == c.id && p.chain.generation() as usize == c.generations.len())
            {
                return Ok(p.clone());
            }
            let terms: ProjectTerms = serde_json::from_str(&c.matching_body)
                .map_err(|_| bad(format!("project {}: unreadable terms", c.id)))?;
            let end_date = parse_day(&c.end_date)
                .ok_or_else(|| bad(format!("project {}: unreadable end date", c.id)))?;
            let chain = KeyChain::new(&c.generations)
                .map_err(|_| bad(format!("project {}: no key", c.id)))?;
            // A renewed project keeps its token: batches still on its older
            // chain stop with it when it is destroyed.
            let token = previous
                .iter()
                .find(|p| p.id == c.id)
                .map_or_else(|| live.child_token(), |p| p.live.clone());
            Ok(Arc::new(ProjectKeys {
                id: c.id.clone(),
                end_date,
                terms,
                chain: Arc::new(chain),
                live: token,
            }))
        })
        .collect()
}

impl Vault {
    /// The research projects, as last seen unsealed.
    pub fn projects(&self) -> Vec<ProjectView> {
        self.project_view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_project_view(&self, projects: &[Arc<ProjectKeys>]) {
        *self.project_view.lock().unwrap_or_else(|p| p.into_inner()) = projects
            .iter()
            .map(|p| ProjectView {
                id: p.id.clone(),
                end_date: crate::renewal::date_label(p.end_date),
                terms: p.terms.clone(),
                generation: p.chain.generation(),
            })
            .collect();
    }

    /// Writes a sealed keyring to the keyring file (atomically), if the
    /// vault has one, then makes it the vault's.
    pub(super) fn store_keyring(
        &self,
        sealed: crate::seal::SealedKeyring,
    ) -> Result<(), SealError> {
        if let Some(path) = &self.keyring_file {
            sealed.write(path)?;
        }
        *self.keyring.lock().unwrap_or_else(|p| p.into_inner()) = sealed;
        Ok(())
    }

    /// The keys of project `id` for one batch of the client named
    /// `submitter`: its chain, retired at seal and at the project's
    /// destruction; and its terms. A project that is not this client's is
    /// refused as unknown: whether it exists is none of that client's business.
    pub fn project_keys(
        &self,
        id: &str,
        submitter: &str,
    ) -> Result<(Keys, ProjectTerms), ProjectRefusal> {
        self.live_project(id, |t| t.submitter == submitter)
    }

    /// The keys of project `id` for a renewal batch of its matching body
    /// (the certificate with SHA-256 `fingerprint`): unknown to anyone else.
    pub fn project_keys_for_matcher(
        &self,
        id: &str,
        fingerprint: &str,
    ) -> Result<(Keys, ProjectTerms), ProjectRefusal> {
        self.live_project(id, |t| {
            t.matcher_fingerprint.eq_ignore_ascii_case(fingerprint)
        })
    }

    /// The keys and terms of live project `id`, for a client whose claim to
    /// it `allowed` checks against its terms (refused as unknown otherwise).
    fn live_project(
        &self,
        id: &str,
        allowed: impl Fn(&ProjectTerms) -> bool,
    ) -> Result<(Keys, ProjectTerms), ProjectRefusal> {
        let phase = self.lock();
        let Phase::Unsealed { projects, .. } = &*phase else {
            return Err(ProjectRefusal::Unknown);
        };
        let p = projects
            .iter()
            .find(|p| p.id == id && allowed(&p.terms) && !p.live.is_cancelled())
            .ok_or(ProjectRefusal::Unknown)?;
        if p.ended(today()) {
            return Err(ProjectRefusal::Ended(crate::renewal::date_label(
                p.end_date,
            )));
        }
        let keys = Keys {
            chain: p.chain.clone(),
            live: p.live.clone(),
        };
        Ok((keys, p.terms.clone()))
    }

    /// Removes from an opened keyring the projects whose end date has
    /// begun, and if any, seals it again and writes it. Returns the keyring
    /// and the ids destroyed. With a journal, the destructions are logged
    /// before the keyring is written.
    pub(super) fn drop_ended_projects(
        &self,
        mut keyring: Keyring,
        kek: &KeyringKek,
        journal: Option<&dyn Journal>,
    ) -> Result<(Keyring, Vec<String>), SealError> {
        let ended = ended_projects(&keyring);
        if ended.is_empty() {
            return Ok((keyring, ended));
        }
        // Dropping a chain zeroizes its keys.
        keyring.projects.retain(|p| !ended.contains(&p.id));
        let sealed = keyring.seal_with_kek(kek, self.record.ceremony_id())?;
        if let Some(j) = journal {
            if !self.log_destroyed(&ended, "end_date", true, j) {
                return Err(SealError::UnsupportedKeyring(
                    "the traceability log cannot be written".into(),
                ));
            }
        }
        self.store_keyring(sealed)?;
        Ok((keyring, ended))
    }

    /// Logs each project destroyed; false if a record could not be written.
    pub(super) fn log_destroyed(
        &self,
        ids: &[String],
        reason: &'static str,
        keyring_rewritten: bool,
        journal: &dyn Journal,
    ) -> bool {
        let mut all = true;
        for id in ids {
            tracing::warn!(project = %id, reason, "research project key destroyed");
            all &= journal.record(Event::ProjectKeyDestroyed {
                project: ProjectName::of_project(id),
                reason: Term::from(reason),
                keyring_rewritten,
            });
        }
        all
    }

    /// Destroys, without anyone's action, the keys of the projects whose end
    /// date has begun: their batches stop at their next chunk, the key goes
    /// from memory at once, and the keyring on disk is rewritten without
    /// them (the destruction logged first). A rewrite that fails is tried
    /// again at each call. Housekeeping calls it every few seconds; returns
    /// the ids destroyed. Nothing to do while sealed (the next unseal does
    /// it before any key is usable).
    pub fn destroy_ended_projects(&self, journal: &dyn Journal) -> Vec<String> {
        use std::sync::atomic::Ordering;
        let today = today();
        let mut phase = self.lock();
        let Phase::Unsealed {
            older,
            kek,
            projects,
            ..
        } = &mut *phase
        else {
            return Vec::new();
        };
        let ended: Vec<Arc<ProjectKeys>> = projects
            .iter()
            .filter(|p| p.ended(today))
            .cloned()
            .collect();
        let owed = self.destruction_owed.load(Ordering::SeqCst);
        if ended.is_empty() && !owed {
            return Vec::new();
        }
        // In memory first, whatever the disk says.
        for p in &ended {
            p.retire();
            older.push(p.weak_chain());
        }
        projects.retain(|p| !p.ended(today));
        self.set_project_view(projects);
        let ids: Vec<String> = ended.iter().map(|p| p.id.clone()).collect();
        drop(ended);
        // Opened under the keyring's lock, which is let go before the
        // rewrite takes it again.
        let opened = {
            let sealed = self.keyring.lock().unwrap_or_else(|p| p.into_inner());
            sealed.open_with_kek(kek)
        };
        // Logged before the rewrite (a retry logs only its success).
        let journal_first = (!owed).then_some(journal);
        let rewritten = opened.and_then(|k| self.drop_ended_projects(k, kek, journal_first));
        match rewritten {
            Ok((_, on_disk)) => {
                self.destruction_owed.store(false, Ordering::SeqCst);
                if owed {
                    self.log_destroyed(&on_disk, "end_date", true, journal);
                }
            }
            Err(e) => {
                // The keys are gone from memory; the file is rewritten at
                // the next call (or the next unseal).
                self.destruction_owed.store(true, Ordering::SeqCst);
                tracing::error!(error = %e, "the keyring could not be rewritten without ended projects");
                if !owed {
                    self.log_destroyed(&ids, "end_date", false, journal);
                }
            }
        }
        ids
    }
}

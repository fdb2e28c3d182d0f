//! What the traceability log may say: one [`Event`] per kind of record
//! (DESIGN §6), written by the service and read back, as the same type, by
//! the verifier and the report.
//!
//! §6 forbids a NIR, a code, an index or anything computed from a NIR in the
//! log. This module makes that a property of the types: every field of every
//! event must be of a type that implements [`Loggable`], and only types that
//! cannot carry such a value do — counts, flags, holder and client names,
//! purposes, batch identifiers, hex digests of public things, and [`Term`]s,
//! words of the log's vocabulary that the code spells as `&'static str`.
//! [`Nir`](crate::nir::Nir), [`Code`](crate::code::Code) and `String`
//! do not, so these do not compile:
//!
//! ```compile_fail
//! cstatns::event::assert_loggable::<cstatns::nir::Nir>();
//! ```
//!
//! ```compile_fail
//! cstatns::event::assert_loggable::<String>();
//! ```
//!
//! while a loggable type does:
//!
//! ```
//! cstatns::event::assert_loggable::<cstatns::event::Term>();
//! ```
//!
//! On disk an event is the record's `event` member (its name) and `details`
//! member (its fields, as a JSON object with keys in sorted order); the
//! format is the one the service has always written, so logs written before
//! this type existed read as the same events.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::batch::Counts;
use crate::config::Role;
use crate::harden::Hardening;

/// A type fit for a field of an [`Event`]: it cannot hold a NIR, a code, an
/// index, or anything computed from one. Implement it only for such types.
pub trait Loggable {}

/// Compiles only for [`Loggable`] types (used by the event definitions, and
/// by the documentation above to show what does not compile).
pub const fn assert_loggable<T: Loggable + ?Sized>() {}

impl Loggable for bool {}
impl Loggable for u32 {}
impl Loggable for u64 {}
impl Loggable for i64 {}
impl Loggable for f64 {}
impl<T: Loggable> Loggable for Option<T> {}
impl<T: Loggable> Loggable for Vec<T> {}
impl Loggable for Counts {}
impl Loggable for Role {}
impl Loggable for Hardening {}

/// A word of the log's vocabulary (a reason, an operation, an outcome):
/// written from a `&'static str` of the code, so it can never carry data a
/// client sent. [`Term::from_error`] is the one exception, for the service's
/// own error messages, which by design never quote a secret or a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Term(Cow<'static, str>);

impl Term {
    /// The text of one of the service's errors (they never hold a NIR, a
    /// code, an index or a secret: see SECURITY.md and the tests that check it).
    pub fn from_error(e: &(dyn std::error::Error + 'static)) -> Self {
        Self(Cow::Owned(crate::describe(e)))
    }

    /// The word.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for Term {
    fn from(s: &'static str) -> Self {
        Self(Cow::Borrowed(s))
    }
}

impl PartialEq<&str> for Term {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Loggable for Term {}

macro_rules! text_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Loggable for $name {}
    };
}

text_newtype!(
    /// A key holder's name, as the ceremony record spells it.
    HolderName
);
text_newtype!(
    /// A client's name, as `server.toml` spells it.
    ClientName
);
text_newtype!(
    /// A batch's declared purpose, one of those `server.toml` allows its client.
    Purpose
);
text_newtype!(
    /// A batch identifier: 32 lowercase hex digits drawn at random.
    BatchId
);
text_newtype!(
    /// Lowercase hex of something public: a ceremony id, a record hash, a
    /// public key, a signature, a configuration file's SHA-256.
    PublicHex
);
text_newtype!(
    /// An RFC 3339 UTC time.
    Timestamp
);
text_newtype!(
    /// A calendar date, `YYYY-MM-DD`.
    Day
);
text_newtype!(
    /// A quorum operation's identifier: 32 lowercase hex digits drawn at random.
    OperationId
);
text_newtype!(
    /// A research project's id, as the quorum approved it (the holder-name
    /// rule: 1–64 of `A-Za-z0-9._-`).
    ProjectName
);

impl ProjectName {
    /// The id of a project the quorum approved (checked by
    /// [`crate::seal::Operation::check`]).
    pub fn of_project(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl BatchId {
    /// A batch id as the service drew it (a result file's name).
    pub fn of_drawn(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl HolderName {
    /// The name of a holder of the ceremony (names follow
    /// [`crate::seal::is_valid_holder_name`]).
    pub fn of_holder(name: &str) -> Self {
        Self(name.to_owned())
    }
}

impl ClientName {
    /// The name of a client entry of the configuration.
    pub fn of_client(entry: &crate::config::ClientEntry) -> Self {
        Self(entry.name.clone())
    }

    /// The name of a client entry, as the entry spells it.
    pub fn of_name(name: &str) -> Self {
        Self(name.to_owned())
    }
}

impl Purpose {
    /// A purpose the configuration allows (callers check that first).
    pub fn allowed(purpose: &str) -> Self {
        Self(purpose.to_owned())
    }
}

impl BatchId {
    /// A new random batch identifier.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        Self(hex::encode(b))
    }

    /// Whether `id` has the form [`BatchId::random`] draws (32 lowercase hex
    /// digits): what a request may name a receipt or a result by, so that
    /// nothing else ever reaches a path.
    pub fn is_drawn_form(id: &str) -> bool {
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl PublicHex {
    /// Hex of public bytes.
    pub fn of(bytes: impl AsRef<[u8]>) -> Self {
        Self(hex::encode(bytes))
    }

    /// Text already in lowercase hex (a record hash, a ceremony id).
    pub fn of_hex(hex: &str) -> Self {
        Self(hex.to_owned())
    }
}

impl Timestamp {
    /// An RFC 3339 UTC time as the log writes them.
    pub fn of(rfc3339: &str) -> Self {
        Self(rfc3339.to_owned())
    }
}

impl Day {
    /// A date as [`crate::renewal::date_label`] writes it.
    pub fn of(label: &str) -> Self {
        Self(label.to_owned())
    }
}

impl OperationId {
    /// A new random operation identifier.
    pub fn random() -> Self {
        Self(BatchId::random().0)
    }

    /// The id of a proposal the service made (checked by
    /// [`crate::seal::Proposal::check`]).
    pub fn of_proposal(p: &crate::seal::Proposal) -> Self {
        Self(p.id.clone())
    }
}

/// A time as RFC 3339 UTC in whole seconds (`2026-12-03T10:00:00Z`), the
/// form of proposals and key dates.
pub fn rfc3339_seconds(t: time::OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// The record could not be read as an event of a known kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the details of a `{event}` record do not read as one: {reason}")]
pub struct EventError {
    /// The record's `event`.
    pub event: String,
    /// Why.
    pub reason: String,
}

macro_rules! events {
    ($(
        $(#[$vm:meta])*
        $variant:ident = $name:literal {
            $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ),* $(,)?) => {
        /// One record of the traceability log. `docs/traceability.md` lists
        /// each with its details.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "event", content = "details")]
        #[non_exhaustive]
        // Fields are named for what they hold; each variant's doc and
        // `docs/traceability.md` say what they mean.
        #[allow(missing_docs)]
        pub enum Event {
            $(
                $(#[$vm])*
                #[serde(rename = $name)]
                $variant {
                    $( $(#[$fm])* $field: $ty ),*
                },
            )*
        }

        // The compile-time property of the module documentation: every
        // field's type is `Loggable`.
        const _: () = {
            $( $( assert_loggable::<$ty>(); )* )*
        };

        impl Event {
            /// Every event's name, as written in the record's `event`.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The event's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Event::$variant { .. } => $name, )*
                }
            }
        }
    };
}

events! {
    /// The service started.
    ServiceStart = "service_start" {
        ceremony_id: PublicHex,
        config_sha256: PublicHex,
        hardening: Option<Hardening>,
        insecure_dev_env: bool,
        /// The ceremony record's revision (absent before re-sharing existed: 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ceremony_revision: Option<u32>,
    },
    /// The service started on a new revision of the ceremony record: the
    /// master secret was re-shared (new holders, threshold, a revocation or
    /// a rotation). `previous` is the digest the new record names.
    Resharing = "resharing" {
        revision: u32,
        previous: PublicHex,
        threshold: u64,
        holders: Vec<HolderName>,
    },
    /// The service stopped; `keys_wiped` is false if a batch still held the keys.
    ServiceStop = "service_stop" { keys_wiped: bool },
    /// A holder sent a share (valid or not, and why not).
    ShareSubmitted = "share_submitted" {
        holder: Option<HolderName>,
        valid: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Term>,
    },
    /// `t` shares rebuilt the master secret and the keyring was opened.
    Unseal = "unseal" {
        holders: Vec<HolderName>,
        generation: u32,
        secret_and_shares_wiped: bool,
    },
    /// `t` valid shares did not open the keyring.
    UnsealFailed = "unseal_failed" { reason: Term },
    /// The service was sealed.
    Seal = "seal" { keys_wiped: bool },
    /// Shares held while sealed were dropped.
    SharesDiscarded = "shares_discarded" { holders: Vec<HolderName>, reason: Term },
    /// A batch started.
    BatchStart = "batch_start" {
        batch: BatchId,
        operation: Term,
        client: ClientName,
        purpose: Purpose,
        generation: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<ProjectName>,
    },
    /// A batch ended (completed or aborted), with its counts.
    BatchEnd = "batch_end" {
        batch: BatchId,
        operation: Term,
        purpose: Purpose,
        outcome: Term,
        generation: u32,
        records: u64,
        counts: Counts,
        bytes: u64,
        seconds: f64,
        reason: Option<Term>,
        inputs_erased: bool,
    },
    /// The guard: a batch ran out of its client's quota; its later lines
    /// are answered `quota_exceeded`, without a code.
    QuotaExceeded = "quota_exceeded" {
        batch: BatchId,
        client: ClientName,
        purpose: Purpose,
        /// `records_per_batch` or `records_per_day`.
        limit: Term,
    },
    /// The guard: the sweep detector judged a batch an enumeration of the
    /// NIR space (docs/guard.md); its later lines are answered
    /// `sweep_suspected`, without a code, and the client is refused until
    /// an operator lifts it. Counts only: never a body or a prefix.
    SweepSuspected = "sweep_suspected" {
        batch: BatchId,
        client: ClientName,
        purpose: Purpose,
        /// `implausible_block`, `implausible_share`, `prefix_orders`, or
        /// `client_suspended` (another batch of its client was judged one).
        rule: Term,
        /// Candidate lines of the batch read up to the trip.
        lines: u64,
        /// Implausible ones among them.
        implausible: u64,
        /// Implausible lines in the block that tripped (`implausible_block`).
        block_implausible: u64,
        /// The most distinct order numbers above 500 seen in one bucket of
        /// (sex, year, month, place).
        most_orders: u64,
        /// The client's candidate lines in its earlier batches of the window.
        prior_lines: u64,
        /// Implausible ones among them.
        prior_implausible: u64,
    },
    /// An operator lifted a client's suspension (`cstatns guard release`).
    GuardReleased = "guard_released" {
        client: ClientName,
        /// False when the client was not suspended (nothing changed).
        was_suspended: bool,
    },
    /// A request was refused before any work.
    RequestRefused = "request_refused" {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<Term>,
        reason: Term,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
    },
    /// A connection was refused (handshake failed, too many connections).
    ConnectionRefused = "connection_refused" {
        reason: Term,
        /// How many refusals the record stands for, when more than one
        /// (a flood is logged in bounded form); `reason` is the newest's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusals: Option<u64>,
    },
    /// The configuration file was read again (`SIGHUP`): the client table,
    /// the TLS certificates and the CRL now in force for new connections.
    ConfigReloaded = "config_reloaded" {
        config_sha256: PublicHex,
        clients: u64,
        /// SHA-256 of the CRL file in force, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        crl_sha256: Option<PublicHex>,
    },
    /// A reload was refused: the previous configuration stays in force.
    ConfigReloadRefused = "config_reload_refused" { reason: Term },
    /// An auditor read the log from `from_seq`.
    AuditRead = "audit_read" { from_seq: u64 },
    /// A write to test whether the log is writable again.
    AuditProbe = "audit_probe" {},
    /// A partial last line (a crash mid-write) was cut off at start.
    AuditRepaired = "audit_repaired" { dropped_partial_line_bytes: u64 },
    /// The log is writable again after failing since `failed_since`.
    AuditResumed = "audit_resumed" { failed_since: Timestamp },
    /// A key operation was proposed (DESIGN §5); `proposer` is the
    /// configuration name of the client that proposed it.
    OperationProposed = "operation_proposed" {
        operation: OperationId,
        kind: Term,
        digest: PublicHex,
        proposer: ClientName,
        expires: Timestamp,
    },
    /// A holder's approval of an operation (valid or not, and why not);
    /// `approvals` is the number of valid approvals held after it.
    OperationApproval = "operation_approval" {
        operation: OperationId,
        holder: Option<HolderName>,
        valid: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Term>,
        approvals: u64,
    },
    /// `t` approvals rebuilt the master secret and the operation ran; the
    /// secret and the shares were wiped.
    OperationExecuted = "operation_executed" {
        operation: OperationId,
        kind: Term,
        holders: Vec<HolderName>,
        secret_and_shares_wiped: bool,
    },
    /// `t` approvals were held but the operation could not run; nothing changed.
    OperationFailed = "operation_failed" {
        operation: OperationId,
        kind: Term,
        reason: Term,
    },
    /// An operation was cancelled before its quorum (its approvals dropped).
    OperationCancelled = "operation_cancelled" {
        operation: OperationId,
        kind: Term,
        approvals: u64,
    },
    /// An operation expired before its quorum (its approvals dropped).
    OperationExpired = "operation_expired" {
        operation: OperationId,
        kind: Term,
        approvals: u64,
    },
    /// A renewal added generation `generation`; the next is due on `renewal_due`.
    KeyRenewed = "key_renewed" {
        generation: u32,
        created: Timestamp,
        renewal_due: Day,
        /// Set when a research project's chain was renewed (absent: the CStatNS).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<ProjectName>,
    },
    /// The renewal date is near or past (written at unseal and once a day
    /// while it is).
    RenewalDue = "renewal_due" {
        generation: u32,
        renewal_due: Day,
        days_left: i64,
        overdue: bool,
    },
    /// A research project's key chain was created by a quorum.
    ProjectKeyCreated = "project_key_created" {
        project: ProjectName,
        end_date: Day,
        purpose: Purpose,
        submitter: ClientName,
    },
    /// A research project's key chain was destroyed: `reason` is
    /// `end_date` (without anyone's action) or `operation` (a quorum);
    /// `keyring_rewritten` says the keyring on disk no longer holds it.
    ProjectKeyDestroyed = "project_key_destroyed" {
        project: ProjectName,
        reason: Term,
        keyring_rewritten: bool,
    },
    /// The matching body fetched a project batch's encrypted result (erased).
    ProjectResultFetched = "project_result_fetched" {
        project: ProjectName,
        batch: BatchId,
        bytes: u64,
    },
    /// A project batch's encrypted result was erased unfetched: `reason`
    /// is `window_closed` or `batch_aborted`.
    ProjectResultErased = "project_result_erased" {
        project: ProjectName,
        batch: BatchId,
        reason: Term,
    },
    /// A signed checkpoint over the chain up to `covers_seq`.
    Checkpoint = "checkpoint" {
        reason: Term,
        covers_seq: u64,
        covers_hash: PublicHex,
        public_key: PublicHex,
        signature: PublicHex,
        /// 1 for the log's first numbered checkpoint, then one more each
        /// (absent in checkpoints written before numbering).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        number: Option<u64>,
        /// The `hash` of the previous checkpoint record (64 zeros for the
        /// first): checkpoints are chained to each other too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_checkpoint: Option<PublicHex>,
    },
}

impl Event {
    /// The record's `event` and `details` members. Details are a JSON object
    /// with its keys in sorted order (the format the log has always had).
    pub fn to_parts(&self) -> (&'static str, serde_json::Value) {
        let details = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => m
                .remove("details")
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
            // Every field type serialises to JSON (no maps with non-string keys).
            _ => unreachable!("an event always serialises to a JSON object"),
        };
        (self.name(), details)
    }

    /// Reads a record's `event` and `details` back. `Ok(None)` for an event
    /// this version does not know (a newer service's): readers skip it.
    pub fn from_parts(
        event: &str,
        details: &serde_json::Value,
    ) -> Result<Option<Self>, EventError> {
        if !Self::NAMES.contains(&event) {
            return Ok(None);
        }
        let v = serde_json::json!({ "event": event, "details": details });
        serde_json::from_value(v).map(Some).map_err(|e| EventError {
            event: event.to_owned(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: &Event) -> String {
        let (name, details) = e.to_parts();
        let back = Event::from_parts(name, &details)
            .expect("parse")
            .expect("known");
        assert_eq!(&back, e);
        format!("{name} {details}")
    }

    #[test]
    fn events_keep_the_on_disk_shape_of_earlier_versions() {
        // These are the details the service wrote before events were typed.
        let e = Event::ShareSubmitted {
            holder: Some(HolderName::of_holder("alice")),
            valid: true,
            reason: None,
        };
        assert_eq!(
            round_trip(&e),
            r#"share_submitted {"holder":"alice","valid":true}"#
        );
        let e = Event::ShareSubmitted {
            holder: None,
            valid: false,
            reason: Some("malformed".into()),
        };
        assert_eq!(
            round_trip(&e),
            r#"share_submitted {"holder":null,"reason":"malformed","valid":false}"#
        );
        let e = Event::RequestRefused {
            operation: None,
            reason: "missing_role".into(),
            role: Some(Role::Operator),
        };
        assert_eq!(
            round_trip(&e),
            r#"request_refused {"reason":"missing_role","role":"operator"}"#
        );
        assert_eq!(round_trip(&Event::AuditProbe {}), "audit_probe {}");
        let e = Event::BatchEnd {
            batch: BatchId::random(),
            operation: "cstatns".into(),
            purpose: Purpose::allowed("p"),
            outcome: "completed".into(),
            generation: 1,
            records: 3,
            counts: Counts::default(),
            bytes: 10,
            seconds: 0.5,
            reason: None,
            inputs_erased: true,
        };
        let text = round_trip(&e);
        assert!(text.contains(r#""reason":null"#), "{text}");
    }

    #[test]
    fn every_event_name_is_known_and_unknown_ones_are_skipped() {
        assert_eq!(Event::NAMES.len(), 34);
        assert_eq!(
            Event::from_parts("from_a_newer_version", &serde_json::json!({"x": 1})),
            Ok(None)
        );
        let bad = Event::from_parts("seal", &serde_json::json!({"keys_wiped": "yes"}));
        assert!(bad.is_err());
    }
}

//! The receipt of a batch: what the submitter gets back besides the codes,
//! and what the traceability log records. It holds counts, never data.

use serde::{Deserialize, Serialize};

use crate::batch::Counts;

/// One batch's receipt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    /// The batch id (`CStatNS-Batch`).
    pub batch: String,
    /// `cstatns` or `renewal`.
    pub operation: String,
    /// Submitting client (certificate subject).
    pub client: String,
    /// Its certificate fingerprint.
    pub client_fingerprint: String,
    /// Declared purpose.
    pub purpose: String,
    /// Generation of every code returned.
    pub generation: u32,
    /// `completed`, or `aborted` if the batch did not run to its end.
    pub outcome: String,
    /// Lines answered.
    pub records: u64,
    /// Lines answered `ok`.
    pub ok: u64,
    /// Lines answered with an error status.
    pub rejected: u64,
    /// Counts per status.
    pub counts: Counts,
    /// Request bytes read.
    pub bytes: u64,
    /// Start (RFC 3339 UTC).
    pub started: String,
    /// End (RFC 3339 UTC).
    pub ended: String,
    /// Duration in seconds.
    pub seconds: f64,
    /// The guard's limit that stopped the batch's codes (`records_per_batch`,
    /// `records_per_day`), when one did: its later lines are
    /// `quota_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// When the guard judged the batch a sweep (`guard` is then
    /// `sweep_suspected`): the detector's rule and figures, counts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepReport>,
    /// A trait batch (DESIGN §7): its `ok` lines per quality of the
    /// register look-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::identity::lines::Qualities>,
    /// Sequence number of the log entry recording the end of the batch.
    pub log_seq: u64,
    /// The ceremony whose log key signs the receipt.
    pub ceremony_id: String,
    /// Ed25519 signature (hex) by the log key of
    /// [`crate::audit::receipt_message`] over this receipt with an empty
    /// `signature`; see `docs/traceability.md`.
    pub signature: String,
}

/// Why the sweep detector judged a batch an enumeration (docs/guard.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// `implausible_block`, `implausible_share`, `prefix_orders`, or
    /// `client_suspended` (another batch of its client was judged one).
    pub rule: String,
    /// Candidate lines read up to the trip.
    pub lines: u64,
    /// Implausible ones among them.
    pub implausible: u64,
    /// The most distinct order numbers above 500 seen in one bucket of
    /// (sex, year, month, place).
    pub most_orders: u64,
}

/// Now as RFC 3339 UTC with nanoseconds, always the same width
/// (`2026-11-22T13:07:03.575961290Z`), so that times compare as strings.
pub fn now_rfc3339() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000000000Z"))
}

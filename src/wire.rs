//! What crosses the wire, shared by both ends: the JSON bodies of the
//! service's answers and the error codes it puts in them. The client, the
//! holders' tool and the auditors' commands use these types and never the
//! service itself (which is behind the `service` feature).

use serde::{Deserialize, Serialize};

pub use crate::receipt::Receipt;

/// The header every response carries once the key is past its renewal
/// date (DESIGN §3: renewed at least every five years).
pub const RENEWAL_WARNING_HEADER: &str = "cstatns-renewal-warning";

/// `GET /v1/status`: public facts only.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// True until `t` valid shares have been received.
    pub sealed: bool,
    /// The current generation `G` (absent while sealed).
    pub generation: Option<u32>,
    /// The ceremony this service belongs to.
    pub ceremony_id: String,
    /// The key check value `C0`.
    pub key_check_value: String,
    /// The threshold `t`.
    pub threshold: usize,
    /// Holders whose share has been accepted, while sealed.
    pub holders_received: Vec<String>,
    /// Valid shares still needed to unseal.
    pub holders_needed: usize,
    /// Set on a throw-away development deployment.
    pub insecure_dev_env: bool,
    /// The traceability log: while it cannot be written, work is refused.
    pub audit: crate::audit::Health,
    /// Each CStatNS generation with its creation date, as last seen in the
    /// opened keyring (empty before the first unseal).
    #[serde(default)]
    pub generations: Vec<GenerationInfo>,
    /// The renewal date and where the key stands against it (absent
    /// before the first unseal).
    #[serde(default)]
    pub renewal: Option<crate::renewal::Schedule>,
    /// The research projects whose key exists (as last seen unsealed).
    #[serde(default)]
    pub projects: Vec<ProjectInfo>,
    /// The clients the guard refuses until an operator lifts it
    /// (`cstatns guard release`): all of them for an operator or an
    /// auditor, a client's own for the others.
    #[serde(default)]
    pub suspended: Vec<Suspension>,
}

/// A client refused until an operator lifts it: when, why, which batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// The client's name.
    pub client: String,
    /// When the sweep was suspected (RFC 3339 UTC).
    pub since: String,
    /// The detector's rule (`implausible_block`, `implausible_share`,
    /// `prefix_orders`).
    pub rule: String,
    /// The batch that tripped it.
    pub batch: String,
}

/// A research project, as `status` shows it (public facts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectInfo {
    /// Its id.
    pub project: String,
    /// The day its key is destroyed (when it begins, UTC).
    pub end_date: String,
    /// The purpose of its batches.
    pub purpose: String,
    /// The client allowed to submit its batches.
    pub submitter: String,
    /// SHA-256 of the matching body's certificate.
    pub matcher_fingerprint: String,
    /// Its chain's current generation.
    pub generation: u32,
}

/// One generation of the key chain (public facts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationInfo {
    /// The generation `g`.
    pub generation: u32,
    /// When `K_g` was created (RFC 3339 UTC); absent when unknown (a
    /// keyring written before creation dates were kept).
    pub created: Option<String>,
}

/// The answer to an accepted approval (`POST /v1/operations/{id}/approve`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ApprovalReply {
    /// The operation.
    pub operation: String,
    /// The holder whose approval was accepted.
    pub holder: String,
    /// Valid approvals held.
    pub approvals: usize,
    /// Approvals still needed (0 once run).
    pub approvals_needed: usize,
    /// True when this approval completed the quorum and the operation ran.
    pub executed: bool,
    /// The current CStatNS generation after it ran.
    pub generation: Option<u32>,
}

/// The answer to an accepted share.
#[derive(Debug, Serialize, Deserialize)]
pub struct UnsealReply {
    /// The holder whose share was accepted.
    pub holder: String,
    /// Still sealed after this share?
    pub sealed: bool,
    /// Valid shares still needed.
    pub holders_needed: usize,
    /// Current generation once unsealed.
    pub generation: Option<u32>,
}

/// The body of every refusal: a stable machine code (`forbidden`, `sealed`,
/// `unsupported_media_type`, `bad_request`, `too_large`, `not_found`,
/// `share_refused`, `wrong_holder_certificate`, `conflict`,
/// `audit_unavailable`, `internal`) and a message for people. The message
/// names holders, roles and limits, never a NIR, an index, a code or a share.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The machine code.
    pub error: String,
    /// What happened, for people.
    pub message: String,
}

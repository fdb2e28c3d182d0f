//! Operations on the keys that a quorum of holders approves (DESIGN §5): no
//! one person can change the key.
//!
//! A holder or the operator *proposes* an operation; the service gives it
//! an id and an expiry and publishes it as a [`Proposal`]. Each holder's
//! tool shows the proposal's exact parameters, recomputes its [`digest`]
//! itself, and *approves* with an [`Approval`]: the digest and the holder's
//! share, sent over the holder's own certificate. The operation runs only
//! once `t` approvals of that exact digest, each with a share that passes
//! the unseal checks, are held: the service then rebuilds `S` from them
//! (checked against `C0`), performs the operation, writes the keyring and
//! wipes `S` and the shares. Approving is therefore cryptographic, not a
//! flag: without `t` real shares nothing can rebuild the `S` that seals the
//! keyring.
//!
//! ## The proposal and its digest
//!
//! ```json
//! {"format":"cstatns-operation-v1","id":"<32 hex>","ceremony_id":"<32 hex>",
//!  "operation":{"kind":"renew"},"proposed_by":"ops",
//!  "proposed_at":"2026-12-03T10:00:00Z","expires_at":"2026-12-04T10:00:00Z"}
//! ```
//!
//! `digest = SHA-256("cstatns operation v1\n" || the proposal as compact
//! JSON, members in exactly the order above)`. Every string of a proposal
//! is plain ASCII that JSON does not escape (ids and times are the
//! service's; names follow the holder-name rule), so any JSON writer
//! reproduces the bytes; a proposal that breaks the rule is refused.
//!
//! ## The approval message (`POST /v1/operations/{id}/approve`)
//!
//! ```json
//! {"digest":"<64 hex>","share":{ …the share payload of share.rs… }}
//! ```
//!
//! Pending operations live in memory only: a restart forgets them (they
//! hold shares, which are never written anywhere), and the holders propose
//! again.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::id::{is_lower_hex, is_valid_holder_name};
use super::share::Share;
use super::SealError;

/// The `format` member of a proposal.
pub const OPERATION_FORMAT: &str = "cstatns-operation-v1";

/// Prefix of the digested message (domain separation).
pub const DIGEST_CONTEXT: &[u8] = b"cstatns operation v1\n";

/// Largest approval message accepted: a share payload and a digest.
pub const MAX_APPROVAL_MESSAGE: usize = 4096;

/// Operations pending at once; past that a proposal is refused.
pub const MAX_PENDING: usize = 16;

/// What a quorum may do to the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Operation {
    /// Add a random `K_(G+1)`: the service answers in generation `G+1`
    /// from then on, and lifts older codes to it (DESIGN §3).
    Renew {},
    /// Create a research project's key chain (CSpeNS, DESIGN §3, §5) with
    /// one random key; destroyed at `end_date` without anyone's action.
    ProjectCreate {
        /// The project's id (the holder-name rule: 1–64 of `A-Za-z0-9._-`).
        project: String,
        /// The purpose its batches declare (the same rule).
        purpose: String,
        /// `YYYY-MM-DD` (UTC): the key is destroyed when this day begins.
        end_date: String,
        /// The configuration name of the only submitter allowed.
        submitter: String,
        /// SHA-256 (lowercase hex) of the matching body's certificate
        /// (DER): the only one that may fetch the results.
        matcher_fingerprint: String,
        /// The matching body's age X25519 recipient (`age1…`): results are
        /// held only encrypted to it.
        matcher_recipient: String,
    },
    /// Destroy a research project's key chain now.
    ProjectDestroy {
        /// The project's id.
        project: String,
    },
    /// Add a random key to a research project's chain (a project longer
    /// than the renewal period is renewed like the CStatNS).
    ProjectRenew {
        /// The project's id.
        project: String,
    },
}

impl Operation {
    /// The operation's name, as in `kind` (and in the log).
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Renew {} => "renew",
            Operation::ProjectCreate { .. } => "project_create",
            Operation::ProjectDestroy { .. } => "project_destroy",
            Operation::ProjectRenew { .. } => "project_renew",
        }
    }

    /// Checks what the operation alone can tell: names, date form, the
    /// fingerprint and recipient forms. (The service also checks the
    /// submitter against its configuration and the date against today.)
    pub fn check(&self) -> Result<(), SealError> {
        let bad = |m: &str| SealError::MalformedOperation(m.to_owned());
        match self {
            Operation::Renew {} => Ok(()),
            Operation::ProjectDestroy { project } | Operation::ProjectRenew { project } => {
                if is_valid_project_id(project) {
                    Ok(())
                } else {
                    Err(bad(
                        "the project id breaks the naming rule (1 to 64 of A-Z a-z 0-9 . _ -, not starting with .)",
                    ))
                }
            }
            Operation::ProjectCreate {
                project,
                purpose,
                end_date,
                submitter,
                matcher_fingerprint,
                matcher_recipient,
            } => {
                if !is_valid_project_id(project) {
                    return Err(bad(
                        "the project id breaks the naming rule (1 to 64 of A-Z a-z 0-9 . _ -, not starting with .)",
                    ));
                }
                for (what, name) in [("purpose", purpose), ("submitter", submitter)] {
                    if !is_valid_holder_name(name) {
                        return Err(SealError::MalformedOperation(format!(
                            "the {what} breaks the naming rule (1 to 64 of A-Z a-z 0-9 . _ -)"
                        )));
                    }
                }
                parse_day(end_date).ok_or_else(|| bad("the end date is not YYYY-MM-DD"))?;
                if !is_lower_hex(matcher_fingerprint, 64) {
                    return Err(bad(
                        "the matching body's fingerprint is not 64 lowercase hex digits",
                    ));
                }
                if matcher_recipient.len() > 100
                    || !matcher_recipient.bytes().all(|b| b.is_ascii_alphanumeric())
                    || matcher_recipient.parse::<age::x25519::Recipient>().is_err()
                {
                    return Err(bad(
                        "the matching body's key is not an age X25519 recipient (age1…)",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The project an operation is about, if any.
    pub fn project(&self) -> Option<&str> {
        match self {
            Operation::Renew {} => None,
            Operation::ProjectCreate { project, .. }
            | Operation::ProjectDestroy { project }
            | Operation::ProjectRenew { project } => Some(project),
        }
    }
}

/// A research project's id: the holder-name rule, and not starting with a
/// dot (the id names a directory of results: `.` and `..` must not be ids).
pub fn is_valid_project_id(id: &str) -> bool {
    is_valid_holder_name(id) && !id.starts_with('.')
}

/// A `YYYY-MM-DD` date.
pub fn parse_day(s: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &format).ok()?;
    (crate::renewal::date_label(d) == s).then_some(d)
}

/// What the quorum approved about a research project besides its id and end
/// date, kept with its key chain in the keyring (as compact JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectTerms {
    /// The purpose its batches declare.
    pub purpose: String,
    /// The configuration name of its submitter.
    pub submitter: String,
    /// SHA-256 of the matching body's certificate.
    pub matcher_fingerprint: String,
    /// The matching body's age recipient.
    pub matcher_recipient: String,
}

/// An operation as proposed: what the holders approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// [`OPERATION_FORMAT`].
    pub format: String,
    /// 32 lowercase hex digits, drawn by the service.
    pub id: String,
    /// The ceremony whose keys it changes.
    pub ceremony_id: String,
    /// What it does, with its parameters.
    pub operation: Operation,
    /// The configuration name of the client that proposed it.
    pub proposed_by: String,
    /// RFC 3339 UTC, whole seconds.
    pub proposed_at: String,
    /// RFC 3339 UTC, whole seconds: not run after this.
    pub expires_at: String,
}

impl Proposal {
    /// Checks the proposal's form (the rule that makes its digest
    /// reproducible); a proposal read from the service is checked before
    /// a holder's tool shows it.
    pub fn check(&self) -> Result<(), SealError> {
        let bad = |m: &str| SealError::MalformedOperation(m.to_owned());
        if self.format != OPERATION_FORMAT {
            return Err(bad("unknown format"));
        }
        if !is_lower_hex(&self.id, 32) || !is_lower_hex(&self.ceremony_id, 32) {
            return Err(bad("an id is not 32 lowercase hex digits"));
        }
        if !is_valid_holder_name(&self.proposed_by) {
            return Err(bad("the proposer's name breaks the naming rule"));
        }
        self.operation.check()?;
        for t in [&self.proposed_at, &self.expires_at] {
            let parsed =
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| bad("a time is not RFC 3339"))?;
            if crate::event::rfc3339_seconds(parsed) != *t {
                return Err(bad("a time is not RFC 3339 UTC in whole seconds"));
            }
        }
        Ok(())
    }

    /// The bytes the digest covers: the context, then the compact JSON.
    pub fn digested_message(&self) -> Vec<u8> {
        let mut m = DIGEST_CONTEXT.to_vec();
        // A struct of strings and a tagged enum of strings always serialises.
        m.extend_from_slice(
            &serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("plain strings")),
        );
        m
    }

    /// The digest the holders approve.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.digested_message()).into()
    }

    /// The digest in lowercase hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest())
    }

    /// When it expires.
    pub fn expires(&self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::parse(
            &self.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
    }
}

/// A pending operation as `GET /v1/operations` lists it (one JSON object a
/// line in `keyceremony pending`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingView {
    /// The proposal.
    pub proposal: Proposal,
    /// Its digest, lowercase hex (a holder's tool recomputes it).
    pub digest: String,
    /// Holders whose approval is held.
    pub approved_by: Vec<String>,
    /// Approvals still needed.
    pub approvals_needed: usize,
}

/// One holder's approval: the digest approved and the holder's share.
pub struct Approval {
    /// The digest of the proposal approved.
    pub digest: [u8; 32],
    /// The holder's share (zeroized on drop).
    pub share: Share,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalIn<'a> {
    #[serde(borrow)]
    digest: &'a str,
    #[serde(borrow)]
    share: &'a serde_json::value::RawValue,
}

impl Approval {
    /// The wire form (a zeroizing buffer: it holds the share's value).
    pub fn to_wire_json(&self) -> zeroize::Zeroizing<String> {
        let share = self.share.to_wire_json();
        let mut s = zeroize::Zeroizing::new(String::with_capacity(share.len() + 96));
        s.push_str("{\"digest\":\"");
        s.push_str(&hex::encode(self.digest));
        s.push_str("\",\"share\":");
        s.push_str(&share);
        s.push('}');
        s
    }

    /// Reads an approval message; the share is parsed by
    /// [`Share::from_wire_json`] (which never copies the value into an
    /// intermediate string).
    pub fn from_wire_json(bytes: &[u8]) -> Result<Self, SealError> {
        let bad = || SealError::MalformedOperation("not an approval message".into());
        let a: ApprovalIn<'_> = serde_json::from_slice(bytes).map_err(|_| bad())?;
        if !is_lower_hex(a.digest, 64) {
            return Err(bad());
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(a.digest, &mut digest).map_err(|_| bad())?;
        let share = Share::from_wire_json(a.share.get().as_bytes())?;
        Ok(Self { digest, share })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal() -> Proposal {
        Proposal {
            format: OPERATION_FORMAT.into(),
            id: "0123456789abcdef0123456789abcdef".into(),
            ceremony_id: "fedcba9876543210fedcba9876543210".into(),
            operation: Operation::Renew {},
            proposed_by: "ops".into(),
            proposed_at: "2026-12-03T10:00:00Z".into(),
            expires_at: "2026-12-04T10:00:00Z".into(),
        }
    }

    #[test]
    fn the_digest_covers_the_documented_bytes() {
        let p = proposal();
        p.check().expect("well formed");
        let text = String::from_utf8(p.digested_message()).expect("ascii");
        assert_eq!(
            text,
            "cstatns operation v1\n{\"format\":\"cstatns-operation-v1\",\
             \"id\":\"0123456789abcdef0123456789abcdef\",\
             \"ceremony_id\":\"fedcba9876543210fedcba9876543210\",\
             \"operation\":{\"kind\":\"renew\"},\"proposed_by\":\"ops\",\
             \"proposed_at\":\"2026-12-03T10:00:00Z\",\"expires_at\":\"2026-12-04T10:00:00Z\"}"
        );
        let mut other = p.clone();
        other.expires_at = "2026-12-04T10:00:01Z".into();
        assert_ne!(p.digest(), other.digest());
    }

    #[test]
    fn malformed_proposals_are_refused() {
        let mut p = proposal();
        p.proposed_at = "2026-12-03T10:00:00.5Z".into();
        assert!(p.check().is_err());
        let mut p = proposal();
        p.proposed_by = "a\"b".into();
        assert!(p.check().is_err());
        let v = serde_json::json!({"kind": "renew", "extra": 1});
        assert!(serde_json::from_value::<Operation>(v).is_err());
        for id in [".", "..", ".hidden"] {
            let op = Operation::ProjectDestroy { project: id.into() };
            assert!(op.check().is_err(), "{id}");
        }
    }
}

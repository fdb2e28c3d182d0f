//! The public ceremony record, `ceremony.json`.
//!
//! ```json
//! {
//!   "format": "cstatns-ceremony-v1",
//!   "ceremony_id": "<32 lowercase hex digits: 16 random bytes>",
//!   "created": "<RFC 3339, UTC, whole seconds: 2025-01-31T09:00:00Z>",
//!   "threshold": 3,
//!   "holders": [
//!     {"name": "alice", "id": 1, "fingerprint": "<64 hex: SHA-256 of the certificate DER>", "external": false},
//!     …
//!   ],
//!   "commitments": ["<66 hex: compressed SEC1 P-256 point>", …],
//!   "log_public_key": "<64 hex: Ed25519 verifying key>",
//!   "signature": "<128 hex: Ed25519 signature>"
//! }
//! ```
//!
//! `commitments` are Feldman's `C_k = a_k·G` for the coefficients `a_0 = S,
//! a_1 … a_(t-1)` of the sharing polynomial, so there are exactly
//! `threshold` of them; `C0 = S·G` is the key check value. Holder `i` (in
//! the order listed, from 1) holds the share at `x = id = i`.
//!
//! ## Signature
//!
//! The log-signing key of the keyring signs the record, so that the service
//! (which holds that key once unsealed) and anyone holding the record can
//! detect an altered holder list, threshold or commitment. The signed
//! message is
//!
//! ```text
//! "cstatns ceremony record v1\n" || canonical JSON
//! ```
//!
//! where the canonical JSON is the record with `signature` set to the empty
//! string, written as compact JSON (no whitespace at all) with the members
//! in exactly the order shown above (`holders` members in the order `name,
//! id, fingerprint, external`). Every string in a valid record is plain
//! ASCII without characters JSON escapes, so any JSON writer reproduces the
//! bytes. Unknown members are refused when reading, so nothing unsigned can
//! ride along.
//!
//! The record is self-signed: the signature proves it has not changed since
//! the ceremony only to someone who knows the right `log_public_key` or key
//! check value from elsewhere (the ceremony minutes, the service's unsealed
//! keyring, the log).

use ed25519_dalek::{Signature, VerifyingKey};
use elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ToEncodedPoint};
use p256::{AffinePoint, NistP256, ProjectivePoint};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::error::{SealError, ShareError};
use super::id::{is_lower_hex, is_valid_holder_name, CeremonyId};
use super::keyring::{Keyring, LogSigningKey, SealedKeyring};
use super::master::MasterSecret;
use super::share::Share;
use super::vss;

/// The `format` member of `ceremony.json` from the ceremony itself.
pub const CEREMONY_FORMAT: &str = "cstatns-ceremony-v1";

/// The `format` of a record made by a re-sharing: it has a `revision`
/// (2, 3, …) and names the record it replaces (`previous`).
pub const CEREMONY_FORMAT_V2: &str = "cstatns-ceremony-v2";

/// Prefix of the message signed over a ceremony record (domain separation:
/// the same Ed25519 key signs the log's checkpoints).
pub const SIGNING_CONTEXT: &[u8] = b"cstatns ceremony record v1\n";

/// Prefix of the message signed over a re-shared record.
pub const SIGNING_CONTEXT_V2: &[u8] = b"cstatns ceremony record v2\n";

/// One holder as listed in the record (all public).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderRecord {
    /// Holder name, `[A-Za-z0-9._-]{1,64}`, unique in the ceremony.
    pub name: String,
    /// The share identifier `x` of this holder (1-based position).
    pub id: u8,
    /// Lowercase hex SHA-256 of the holder's certificate (DER): the service
    /// accepts this holder's share only over a TLS session authenticated by
    /// that certificate.
    pub fingerprint: String,
    /// An external key holder (continuity), as opposed to a member of the
    /// unit.
    pub external: bool,
}

/// The record exactly as serialized; member order is the canonical order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordJson {
    format: String,
    ceremony_id: String,
    created: String,
    /// 2, 3, … for a record made by re-sharing (absent: 1, the ceremony's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<u32>,
    /// SHA-256 (lowercase hex) of the signed message of the record this
    /// one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    threshold: usize,
    holders: Vec<HolderRecord>,
    commitments: Vec<String>,
    log_public_key: String,
    signature: String,
}

impl RecordJson {
    /// The checked record, signed with `log_key`.
    fn signed(self, log_key: &LogSigningKey) -> Result<CeremonyRecord, SealError> {
        let mut record = CeremonyRecord::from_parts(self)?;
        let message = record.signed_message()?;
        record.json.signature = hex::encode(log_key.sign(&message));
        Ok(record)
    }
}

/// The public ceremony record (`ceremony.json`). A value of this type is
/// well formed (parsed commitments, valid holders and threshold); whether
/// its signature verifies is a separate question, answered by
/// [`CeremonyRecord::verify_signature`].
#[derive(Clone, Debug)]
pub struct CeremonyRecord {
    json: RecordJson,
    id: CeremonyId,
    commitments: Vec<ProjectivePoint>,
    log_key: VerifyingKey,
}

impl CeremonyRecord {
    /// Builds and signs the record of a fresh ceremony.
    pub(crate) fn new_signed(
        id: CeremonyId,
        threshold: usize,
        holders: Vec<HolderRecord>,
        commitments: &[ProjectivePoint],
        log_key: &LogSigningKey,
    ) -> Result<Self, SealError> {
        Self::unsigned(id, threshold, holders, commitments, log_key)?.signed(log_key)
    }

    /// The record that replaces `self` after a re-sharing: the same
    /// ceremony id and log key, new holders, threshold and commitments,
    /// the next revision, chained to `self` by the digest of its signed
    /// message, and signed.
    pub(crate) fn next_revision(
        &self,
        threshold: usize,
        holders: Vec<HolderRecord>,
        commitments: &[ProjectivePoint],
        log_key: &LogSigningKey,
    ) -> Result<Self, SealError> {
        let mut json = Self::unsigned(self.id, threshold, holders, commitments, log_key)?;
        json.format = CEREMONY_FORMAT_V2.to_owned();
        json.revision = Some(self.revision() + 1);
        json.previous = Some(self.digest_hex()?);
        json.signed(log_key)
    }

    /// A record of revision 1, dated now, with an empty signature.
    fn unsigned(
        id: CeremonyId,
        threshold: usize,
        holders: Vec<HolderRecord>,
        commitments: &[ProjectivePoint],
        log_key: &LogSigningKey,
    ) -> Result<RecordJson, SealError> {
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let created = now
            .format(&Rfc3339)
            .map_err(|e| SealError::MalformedRecord(format!("cannot format the date: {e}")))?;
        let commitments_hex = commitments
            .iter()
            .map(|c| hex::encode(c.to_affine().to_encoded_point(true).as_bytes()))
            .collect();
        Ok(RecordJson {
            format: CEREMONY_FORMAT.to_owned(),
            ceremony_id: id.to_string(),
            created,
            revision: None,
            previous: None,
            threshold,
            holders,
            commitments: commitments_hex,
            log_public_key: log_key.public_key_hex(),
            signature: String::new(),
        })
    }

    /// 1 for the ceremony's record, then one more at each re-sharing.
    pub fn revision(&self) -> u32 {
        self.json.revision.unwrap_or(1)
    }

    /// The digest of the record a re-shared record replaces.
    pub fn previous_hex(&self) -> Option<&str> {
        self.json.previous.as_deref()
    }

    /// SHA-256 (lowercase hex) of the signed message: what the next
    /// revision names as `previous`.
    pub fn digest_hex(&self) -> Result<String, SealError> {
        use sha2::Digest;
        Ok(hex::encode(sha2::Sha256::digest(self.signed_message()?)))
    }

    /// Parses `ceremony.json`, checking its structure (format, identifier,
    /// date, threshold against the holders, one valid point per commitment,
    /// key and signature encodings) but not its signature.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SealError> {
        let json: RecordJson =
            serde_json::from_slice(bytes).map_err(|e| SealError::MalformedRecord(e.to_string()))?;
        let record = Self::from_parts(json)?;
        if !is_lower_hex(&record.json.signature, 128) {
            return Err(SealError::MalformedRecord(
                "signature is not 128 lowercase hex digits".into(),
            ));
        }
        Ok(record)
    }

    fn from_parts(json: RecordJson) -> Result<Self, SealError> {
        let bad = |m: &str| SealError::MalformedRecord(m.to_owned());
        match (json.format.as_str(), json.revision, &json.previous) {
            (CEREMONY_FORMAT, None, None) => {}
            (CEREMONY_FORMAT_V2, Some(r), Some(p)) if r >= 2 && is_lower_hex(p, 64) => {}
            (CEREMONY_FORMAT_V2, ..) => {
                return Err(bad(
                    "a re-shared record needs a revision of 2 or more and the 64-hex digest of the previous record",
                ))
            }
            _ => {
                return Err(SealError::MalformedRecord(format!(
                    "format is {:?}, expected {CEREMONY_FORMAT:?} (or {CEREMONY_FORMAT_V2:?} with a revision and a previous record)",
                    json.format
                )))
            }
        }
        let id = CeremonyId::parse(&json.ceremony_id)
            .ok_or_else(|| bad("ceremony_id is not 32 lowercase hex digits"))?;
        let created = OffsetDateTime::parse(&json.created, &Rfc3339)
            .map_err(|_| bad("created is not an RFC 3339 date"))?;
        if created.offset() != UtcOffset::UTC || !json.created.ends_with('Z') {
            return Err(bad("created is not in UTC (…Z)"));
        }
        let n = json.holders.len();
        if n == 0 || n > super::id::MAX_HOLDERS {
            return Err(bad("the number of holders is not between 1 and 255"));
        }
        if json.threshold == 0 || json.threshold > n {
            return Err(bad(
                "the threshold is not between 1 and the number of holders",
            ));
        }
        for (i, h) in json.holders.iter().enumerate() {
            if !is_valid_holder_name(&h.name) {
                return Err(bad("a holder name is not [A-Za-z0-9._-]{1,64}"));
            }
            if usize::from(h.id) != i + 1 {
                return Err(SealError::MalformedRecord(format!(
                    "holder {} has id {}, expected {}",
                    h.name,
                    h.id,
                    i + 1
                )));
            }
            if !is_lower_hex(&h.fingerprint, 64) {
                return Err(SealError::MalformedRecord(format!(
                    "the fingerprint of holder {} is not 64 lowercase hex digits",
                    h.name
                )));
            }
            if json.holders[..i].iter().any(|o| o.name == h.name) {
                return Err(SealError::MalformedRecord(format!(
                    "holder {} is listed twice",
                    h.name
                )));
            }
        }
        if json.commitments.len() != json.threshold {
            return Err(bad("there must be exactly `threshold` commitments"));
        }
        let commitments = json
            .commitments
            .iter()
            .map(|c| parse_point(c))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("a commitment is not a compressed P-256 point in lowercase hex"))?;
        let log_key = parse_verifying_key(&json.log_public_key)
            .ok_or_else(|| bad("log_public_key is not an Ed25519 public key in lowercase hex"))?;
        Ok(Self {
            json,
            id,
            commitments,
            log_key,
        })
    }

    /// The record as pretty-printed JSON with a final newline, for
    /// `ceremony.json`. (The signature covers the canonical compact form,
    /// not these bytes; see the module documentation.)
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.json)
            .unwrap_or_else(|_| unreachable!("a record of strings and numbers always serializes"));
        s.push('\n');
        s
    }

    /// The exact bytes the signature covers (see the module documentation).
    pub fn signed_message(&self) -> Result<Vec<u8>, SealError> {
        let mut unsigned = self.json.clone();
        unsigned.signature = String::new();
        let mut message = if self.json.revision.is_some() {
            SIGNING_CONTEXT_V2.to_vec()
        } else {
            SIGNING_CONTEXT.to_vec()
        };
        serde_json::to_writer(&mut message, &unsigned)
            .map_err(|e| SealError::MalformedRecord(e.to_string()))?;
        Ok(message)
    }

    /// Checks the Ed25519 signature of the record with its own
    /// `log_public_key` (strict verification: no malleable signatures).
    pub fn verify_signature(&self) -> Result<(), SealError> {
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.json.signature, &mut sig)
            .map_err(|_| SealError::BadRecordSignature)?;
        let signature = Signature::from_bytes(&sig);
        let message = self.signed_message()?;
        self.log_key
            .verify_strict(&message, &signature)
            .map_err(|_| SealError::BadRecordSignature)
    }

    /// Opens `sealed` with `master`, after checking that it belongs to this
    /// record's ceremony, then checks that its log-signing key is the one
    /// this record names. What an unseal should call.
    pub fn open_keyring(
        &self,
        sealed: &SealedKeyring,
        master: &MasterSecret,
    ) -> Result<Keyring, SealError> {
        if sealed.ceremony_id() != self.ceremony_id() {
            return Err(SealError::KeyringCeremonyMismatch {
                expected: self.ceremony_id(),
                found: sealed.ceremony_id(),
            });
        }
        let keyring = sealed.open(master)?;
        self.check_keyring(&keyring)?;
        Ok(keyring)
    }

    /// Checks that an unsealed keyring is the one this record was signed
    /// with (same log-signing key), so that a keyring and a record from two
    /// different ceremonies are never paired.
    pub fn check_keyring(&self, keyring: &Keyring) -> Result<(), SealError> {
        if keyring.log_signing.verifying_key() == self.log_key {
            Ok(())
        } else {
            Err(SealError::KeyringRecordMismatch)
        }
    }

    /// Checks a share against this record: same ceremony, known holder,
    /// that holder's identifier, and Feldman's check against the
    /// commitments. Errors name the holder, never the share value.
    pub fn verify_share(&self, share: &Share) -> Result<(), ShareError> {
        if share.ceremony_id() != self.id {
            return Err(ShareError::OtherCeremony {
                holder: share.holder().to_owned(),
                share_ceremony: share.ceremony_id(),
                record_ceremony: self.id,
            });
        }
        let Some(holder) = self.holder(share.holder()) else {
            return Err(ShareError::UnknownHolder {
                holder: share.holder().to_owned(),
            });
        };
        if holder.id != share.id() {
            return Err(ShareError::IdentifierMismatch {
                holder: share.holder().to_owned(),
                expected: holder.id,
                found: share.id(),
            });
        }
        let ok = share
            .with_scalar(|value| vss::verify(share.id(), value, &self.commitments))
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(ShareError::FeldmanCheckFailed {
                holder: share.holder().to_owned(),
            })
        }
    }

    /// The `format` member (always [`CEREMONY_FORMAT`]).
    pub fn format(&self) -> &str {
        &self.json.format
    }

    /// The ceremony identifier.
    pub fn ceremony_id(&self) -> CeremonyId {
        self.id
    }

    /// When the ceremony took place (RFC 3339, UTC).
    pub fn created(&self) -> &str {
        &self.json.created
    }

    /// `t`: how many shares rebuild `S`.
    pub fn threshold(&self) -> usize {
        self.json.threshold
    }

    /// The holders in identifier order (`holders()[i].id == i + 1`).
    pub fn holders(&self) -> &[HolderRecord] {
        &self.json.holders
    }

    /// The holder of this name, if any.
    pub fn holder(&self, name: &str) -> Option<&HolderRecord> {
        self.json.holders.iter().find(|h| h.name == name)
    }

    /// The Feldman commitments `C0 … C(t-1)`, lowercase hex of compressed
    /// points.
    pub fn commitments_hex(&self) -> &[String] {
        &self.json.commitments
    }

    /// The key check value `C0 = S·G` (lowercase hex, compressed point):
    /// read out at the ceremony and compared at every unseal.
    pub fn key_check_value(&self) -> &str {
        // `from_parts` guarantees at least one commitment (threshold ≥ 1).
        self.json.commitments.first().map_or("", String::as_str)
    }

    /// The log-signing public key (lowercase hex).
    pub fn log_public_key_hex(&self) -> &str {
        &self.json.log_public_key
    }

    /// The log-signing public key.
    pub fn log_verifying_key(&self) -> &VerifyingKey {
        &self.log_key
    }

    /// The signature (lowercase hex).
    pub fn signature_hex(&self) -> &str {
        &self.json.signature
    }
}

/// A compressed SEC1 point (33 bytes, lowercase hex); the identity and
/// uncompressed forms are refused so each point has one spelling.
fn parse_point(text: &str) -> Option<ProjectivePoint> {
    if !is_lower_hex(text, 66) {
        return None;
    }
    let mut bytes = [0u8; 33];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    if !matches!(bytes[0], 0x02 | 0x03) {
        return None;
    }
    let encoded = EncodedPoint::<NistP256>::from_bytes(bytes).ok()?;
    Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&encoded))
        .map(ProjectivePoint::from)
}

fn parse_verifying_key(text: &str) -> Option<VerifyingKey> {
    if !is_lower_hex(text, 64) {
        return None;
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::ceremony::tests::ceremony;

    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

    fn edit(record: &CeremonyRecord, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(&record.to_json()).expect("json");
        f(&mut v);
        serde_json::to_vec_pretty(&v).expect("json")
    }

    #[test]
    fn signature_verifies_and_survives_a_json_round_trip() {
        let out = ceremony(2, 3);
        out.record.verify_signature().expect("fresh record");
        let back = CeremonyRecord::from_json(out.record.to_json().as_bytes()).expect("parse");
        back.verify_signature().expect("reparsed record");
        assert_eq!(back.key_check_value(), out.record.key_check_value());
        assert_eq!(back.holders(), out.record.holders());
        assert_eq!(back.key_check_value().len(), 66);
        assert_eq!(back.holder("holder-2").map(|h| h.id), Some(2));
        assert!(back.holder("nobody").is_none());
    }

    #[test]
    fn signed_message_is_the_documented_canonical_form() {
        let out = ceremony(1, 1);
        let r = &out.record;
        let h = &r.holders()[0];
        let expected = format!(
            concat!(
                "cstatns ceremony record v1\n",
                r#"{{"format":"cstatns-ceremony-v1","ceremony_id":"{}","created":"{}","threshold":1,"#,
                r#""holders":[{{"name":"{}","id":1,"fingerprint":"{}","external":{}}}],"#,
                r#""commitments":["{}"],"log_public_key":"{}","signature":""}}"#
            ),
            r.ceremony_id(),
            r.created(),
            h.name,
            h.fingerprint,
            h.external,
            r.key_check_value(),
            r.log_public_key_hex()
        );
        assert_eq!(r.signed_message().expect("message"), expected.as_bytes());
        assert!(r.created().ends_with('Z'));
    }

    #[test]
    fn signature_fails_after_editing_any_field() {
        let out = ceremony(2, 3);
        let edits: Vec<Edit> = vec![
            Box::new(|v| v["holders"][0]["fingerprint"] = "00".repeat(32).into()),
            Box::new(|v| v["holders"][1]["name"] = "mallory".into()),
            Box::new(|v| v["holders"][2]["external"] = false.into()),
            Box::new(|v| v["created"] = "2020-01-01T00:00:00Z".into()),
            Box::new(|v| v["ceremony_id"] = "00".repeat(16).into()),
        ];
        for f in edits {
            let record =
                CeremonyRecord::from_json(&edit(&out.record, f)).expect("still well formed");
            assert!(matches!(
                record.verify_signature(),
                Err(SealError::BadRecordSignature)
            ));
        }
        // Swapping in another ceremony's commitments fails too.
        let other = ceremony(2, 3);
        let swapped = edit(&out.record, |v| {
            v["commitments"] = other.record.commitments_hex().to_vec().into()
        });
        let record = CeremonyRecord::from_json(&swapped).expect("well formed");
        assert!(record.verify_signature().is_err());
    }

    #[test]
    fn malformed_records_are_refused() {
        let out = ceremony(2, 3);
        let cases: Vec<Edit> = vec![
            Box::new(|v| v["unsigned_note"] = "hi".into()),
            Box::new(|v| v["format"] = "cstatns-ceremony-v2".into()),
            Box::new(|v| v["threshold"] = 0.into()),
            Box::new(|v| v["threshold"] = 4.into()),
            Box::new(|v| v["holders"][1]["id"] = 3.into()),
            Box::new(|v| v["holders"][1]["name"] = "holder-1".into()),
            Box::new(|v| v["commitments"][0] = "04".repeat(33).into()),
            Box::new(|v| v["commitments"][1] = format!("02{}", "ff".repeat(32)).into()),
            Box::new(|v| v["log_public_key"] = "zz".into()),
            Box::new(|v| v["signature"] = "".into()),
            Box::new(|v| v["created"] = "2020-01-01T01:00:00+01:00".into()),
        ];
        for (i, f) in cases.into_iter().enumerate() {
            assert!(
                matches!(
                    CeremonyRecord::from_json(&edit(&out.record, f)),
                    Err(SealError::MalformedRecord(_))
                ),
                "case {i}"
            );
        }
    }
}

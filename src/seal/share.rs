//! One holder's share of `S`, its file form and its wire form.
//!
//! The payload, identical in the file and on the wire, is one compact JSON
//! object:
//!
//! ```json
//! {"format":"cstatns-share-v1","ceremony_id":"<32 hex>","holder":"alice","id":1,"value":"<64 hex>"}
//! ```
//!
//! `value` is the share's scalar `f(id)` as 32 big-endian bytes in lowercase
//! hex. Unknown members, escaped strings and anything but this exact shape
//! are refused, so the parser never has to copy the value around.
//!
//! The share file (`shares/NAME.share`) is that payload encrypted with age
//! to a passphrase (scrypt recipient) and ASCII-armored
//! (`-----BEGIN AGE ENCRYPTED FILE-----`), so that the holder can open it
//! with the stock `age`/`rage` tools too, print it, or paste it.

use std::io::{Read, Write};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use elliptic_curve::ff::{Field, PrimeField};
use p256::{FieldBytes, Scalar};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::error::SealError;
use super::id::{is_lower_hex, is_valid_holder_name, CeremonyId};
use super::passphrase::{Passphrase, ShareKdf, MAX_DECRYPT_LOG_N};

/// The `format` member of a share payload.
pub const SHARE_FORMAT: &str = "cstatns-share-v1";

/// Room for the largest valid payload (about 220 bytes) with margin; a
/// decrypted file larger than this is not a share.
const MAX_PAYLOAD: usize = 1024;

/// One holder's share: the point `(id, f(id))` of the sharing polynomial,
/// tagged with the ceremony and holder it belongs to.
///
/// A `Share` is well formed (valid holder name, nonzero identifier, value a
/// canonical nonzero P-256 scalar) but not necessarily *correct*: check it
/// with [`super::CeremonyRecord::verify_share`]. The value is zeroized on
/// drop, compared in constant time and never printed.
pub struct Share {
    ceremony_id: CeremonyId,
    holder: String,
    id: u8,
    /// On the heap: moving a share (into a list, out of a function) copies
    /// the pointer, not the value, so no copy is left on a thread's stack.
    value: Box<Zeroizing<[u8; 32]>>,
}

/// Outgoing payload, borrowing everything (the value's hex lives in a
/// zeroizing buffer of the caller).
#[derive(Serialize)]
struct PayloadOut<'a> {
    format: &'a str,
    ceremony_id: &'a str,
    holder: &'a str,
    id: u8,
    value: &'a str,
}

/// Incoming payload, borrowing from the input: the value is never copied
/// into an intermediate `String` (and a payload whose strings need
/// unescaping, which a genuine one never does, is refused).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadIn<'a> {
    #[serde(borrow)]
    format: &'a str,
    #[serde(borrow)]
    ceremony_id: &'a str,
    #[serde(borrow)]
    holder: &'a str,
    id: u8,
    #[serde(borrow)]
    value: &'a str,
}

impl Share {
    /// A share made by the ceremony (the caller guarantees the holder name
    /// is valid and `id ≥ 1`).
    pub(crate) fn new(ceremony_id: CeremonyId, holder: &str, id: u8, value: &Scalar) -> Self {
        let mut bytes = Box::new(Zeroizing::new([0u8; 32]));
        let mut repr = value.to_bytes();
        bytes.copy_from_slice(&repr);
        repr.as_mut_slice().zeroize();
        Self {
            ceremony_id,
            holder: holder.to_owned(),
            id,
            value: bytes,
        }
    }

    /// The ceremony this share belongs to.
    pub fn ceremony_id(&self) -> CeremonyId {
        self.ceremony_id
    }

    /// The holder this share belongs to.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The share identifier `x`.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Runs `f` on the value as a scalar, wiping the scalar afterwards.
    /// `None` only if the value is not a canonical scalar, which parsing
    /// already excludes.
    pub(crate) fn with_scalar<R>(&self, f: impl FnOnce(&Scalar) -> R) -> Option<R> {
        let mut repr = FieldBytes::default();
        repr.copy_from_slice(self.value.as_slice());
        // Canonical encodings only (below the group order). Turning the
        // `CtOption` into an `Option` reveals only whether a share we hold
        // is well formed, which parsing has already established.
        let scalar: Option<Scalar> = Scalar::from_repr(repr).into();
        repr.as_mut_slice().zeroize();
        let mut scalar = scalar?;
        let out = f(&scalar);
        scalar.zeroize();
        Some(out)
    }

    /// The payload as compact JSON, for sending the share to the service.
    /// The buffer is zeroized on drop.
    pub fn to_wire_json(&self) -> Zeroizing<String> {
        let mut value_hex = Zeroizing::new([0u8; 64]);
        // 32 bytes always fit in 64 hex digits, which are ASCII.
        let _ = hex::encode_to_slice(self.value.as_slice(), value_hex.as_mut());
        let value = std::str::from_utf8(value_hex.as_ref()).unwrap_or_default();
        let ceremony_id = self.ceremony_id.to_string();
        let payload = PayloadOut {
            format: SHARE_FORMAT,
            ceremony_id: &ceremony_id,
            holder: &self.holder,
            id: self.id,
            value,
        };
        // Preallocated well above the payload's size so that the buffer is
        // never reallocated (which would leave a copy behind).
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_PAYLOAD));
        if serde_json::to_writer(&mut *buf, &payload).is_err() {
            return Zeroizing::new(String::new());
        }
        let bytes = std::mem::take(&mut *buf);
        // serde_json writes UTF-8 only.
        Zeroizing::new(String::from_utf8(bytes).unwrap_or_default())
    }

    /// Parses the payload received from a holder (or decrypted from a share
    /// file). Checks the shape only; the caller checks the share against
    /// the ceremony record.
    pub fn from_wire_json(bytes: &[u8]) -> Result<Share, SealError> {
        let payload: PayloadIn<'_> = serde_json::from_slice(bytes).map_err(|e| {
            // serde's messages may quote the offending value; only the
            // position goes out.
            SealError::MalformedShare(format!(
                "not a {SHARE_FORMAT} JSON payload (error at line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if payload.format != SHARE_FORMAT {
            return Err(SealError::MalformedShare(format!(
                "format is not {SHARE_FORMAT:?}"
            )));
        }
        let ceremony_id = CeremonyId::parse(payload.ceremony_id).ok_or_else(|| {
            SealError::MalformedShare("ceremony_id is not 32 lowercase hex digits".into())
        })?;
        if !is_valid_holder_name(payload.holder) {
            return Err(SealError::MalformedShare(
                "holder is not [A-Za-z0-9._-]{1,64}".into(),
            ));
        }
        if payload.id == 0 {
            return Err(SealError::MalformedShare(
                "id 0 is not a share identifier".into(),
            ));
        }
        let invalid_value = || {
            SealError::MalformedShare(format!(
                "the value of the share of {} is not a valid P-256 scalar in lowercase hex",
                payload.holder
            ))
        };
        if !is_lower_hex(payload.value, 64) {
            return Err(invalid_value());
        }
        let mut value = Box::new(Zeroizing::new([0u8; 32]));
        hex::decode_to_slice(payload.value, value.as_mut_slice()).map_err(|_| invalid_value())?;
        let share = Share {
            ceremony_id,
            holder: payload.holder.to_owned(),
            id: payload.id,
            value,
        };
        // Canonical (below the group order) and nonzero: a zero value would
        // be refused by the Feldman check anyway, but saying so here keeps
        // "well formed" meaningful.
        match share.with_scalar(|s| !bool::from(s.is_zero())) {
            Some(true) => Ok(share),
            _ => Err(invalid_value()),
        }
    }

    /// The share file: the payload encrypted with age to `passphrase`
    /// (scrypt, work factor per `kdf`) and ASCII-armored.
    pub fn encrypt_to_file_bytes(
        &self,
        passphrase: &Passphrase,
        kdf: ShareKdf,
    ) -> Result<Vec<u8>, SealError> {
        let enc = |e: std::io::Error| SealError::Encrypt(e.to_string());
        let recipient = kdf.recipient(passphrase);
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| SealError::Encrypt(e.to_string()))?;
        let mut out = Vec::new();
        let armored = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(enc)?;
        let mut writer = encryptor.wrap_output(armored).map_err(enc)?;
        let payload = self.to_wire_json();
        writer.write_all(payload.as_bytes()).map_err(enc)?;
        writer
            .finish()
            .and_then(|armored| armored.finish())
            .map_err(enc)?;
        Ok(out)
    }

    /// Opens a share file with `passphrase`. A wrong passphrase gives
    /// [`SealError::WrongPassphrase`]; a file that is not an armored,
    /// passphrase-encrypted age file, or is damaged, gives
    /// [`SealError::UnreadableShareFile`]. Both the standard and the
    /// development work factors are accepted (up to 2^22).
    pub fn decrypt_file_bytes(bytes: &[u8], passphrase: &Passphrase) -> Result<Share, SealError> {
        let unreadable = |what: &str| SealError::UnreadableShareFile(what.to_owned());
        let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(bytes))
            .map_err(|e| map_decrypt_error(e, "not an age-encrypted share file"))?;
        if !decryptor.is_scrypt() {
            return Err(unreadable("the file is not encrypted with a passphrase"));
        }
        let mut identity = age::scrypt::Identity::new(passphrase.to_age_secret());
        identity.set_max_work_factor(MAX_DECRYPT_LOG_N);
        let mut reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| map_decrypt_error(e, "the file's header is damaged"))?;
        // A fixed buffer, so that the plaintext is never reallocated.
        let mut buf = Zeroizing::new([0u8; MAX_PAYLOAD]);
        let mut len = 0;
        loop {
            if len == buf.len() {
                return Err(unreadable(
                    "the decrypted content is too large to be a share",
                ));
            }
            match reader.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(unreadable("the file's content is damaged or truncated")),
            }
        }
        Self::from_wire_json(&buf[..len])
    }
}

fn map_decrypt_error(e: age::DecryptError, context: &str) -> SealError {
    match e {
        age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
            SealError::WrongPassphrase
        }
        age::DecryptError::ExcessiveWork { required, .. } => SealError::ExcessiveWork {
            required,
            max: MAX_DECRYPT_LOG_N,
        },
        age::DecryptError::NoMatchingKeys => {
            SealError::UnreadableShareFile("the file is not encrypted with a passphrase".to_owned())
        }
        age::DecryptError::InvalidMac => {
            SealError::UnreadableShareFile("the file's header was altered".to_owned())
        }
        _ => SealError::UnreadableShareFile(context.to_owned()),
    }
}

impl PartialEq for Share {
    /// Constant time in the value (identity metadata is public).
    fn eq(&self, other: &Self) -> bool {
        let value_eq: bool = self.value.as_slice().ct_eq(other.value.as_slice()).into();
        value_eq
            && self.ceremony_id == other.ceremony_id
            && self.holder == other.holder
            && self.id == other.id
    }
}

impl Eq for Share {}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Share {{ ceremony_id: {}, holder: {:?}, id: {}, value: … }}",
            self.ceremony_id, self.holder, self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::ceremony::tests::{ceremony, copy};
    use crate::seal::ShareError;

    /// The wire JSON of `share` with one member replaced.
    fn edited(share: &Share, member: &str, value: serde_json::Value) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(&share.to_wire_json()).expect("json");
        v[member] = value;
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn tampered_share_value_fails_the_feldman_check() {
        let out = ceremony(3, 5);
        let share = &out.shares[2];
        let bumped = share.with_scalar(|s| *s + Scalar::ONE).expect("scalar");
        let tampered = Share::new(share.ceremony_id(), share.holder(), share.id(), &bumped);
        assert_eq!(
            out.record.verify_share(&tampered),
            Err(ShareError::FeldmanCheckFailed {
                holder: "holder-3".into()
            })
        );
        let err = crate::seal::combine(
            &out.record,
            &[copy(&out.shares[0]), copy(&out.shares[1]), tampered],
        )
        .expect_err("refused");
        assert!(err.to_string().contains("holder-3"), "{err}");
    }

    #[test]
    fn share_from_another_ceremony_is_refused_as_such() {
        let first = ceremony(2, 3);
        let second = ceremony(2, 3);
        let err = second
            .record
            .verify_share(&first.shares[0])
            .expect_err("refused");
        assert_eq!(
            err,
            ShareError::OtherCeremony {
                holder: "holder-1".into(),
                share_ceremony: first.record.ceremony_id(),
                record_ceremony: second.record.ceremony_id(),
            }
        );
        assert!(err
            .to_string()
            .contains(&first.record.ceremony_id().to_string()));
    }

    #[test]
    fn unknown_holder_and_wrong_identifier_are_refused() {
        let out = ceremony(2, 3);
        let share = &out.shares[0];
        let stranger =
            Share::from_wire_json(&edited(share, "holder", "mallory".into())).expect("parse");
        assert_eq!(
            out.record.verify_share(&stranger),
            Err(ShareError::UnknownHolder {
                holder: "mallory".into()
            })
        );
        let moved = Share::from_wire_json(&edited(share, "id", 2.into())).expect("parse");
        assert_eq!(
            out.record.verify_share(&moved),
            Err(ShareError::IdentifierMismatch {
                holder: "holder-1".into(),
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn wire_json_round_trips_and_refuses_malformed_payloads() {
        let out = ceremony(2, 2);
        let share = &out.shares[1];
        let wire = share.to_wire_json();
        assert!(wire.starts_with(r#"{"format":"cstatns-share-v1","ceremony_id":""#));
        let back = Share::from_wire_json(wire.as_bytes()).expect("parse");
        assert_eq!(&back, share);
        assert!(back != out.shares[0]);

        let value: String = serde_json::from_str::<serde_json::Value>(&wire).expect("json")
            ["value"]
            .as_str()
            .expect("value")
            .to_owned();
        let group_order = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
        let cases: Vec<Vec<u8>> = vec![
            b"not json".to_vec(),
            edited(share, "format", "cstatns-share-v0".into()),
            edited(share, "ceremony_id", "00".into()),
            edited(share, "holder", "a/b".into()),
            edited(share, "id", 0.into()),
            edited(share, "id", value.clone().into()),
            edited(share, "value", value.to_uppercase().into()),
            edited(share, "value", "00".repeat(32).into()),
            edited(share, "value", group_order.into()),
            edited(share, "extra", true.into()),
        ];
        for case in cases {
            let err = Share::from_wire_json(&case).expect_err("malformed");
            assert!(matches!(err, SealError::MalformedShare(_)), "{err}");
            assert!(
                !err.to_string().contains(&value),
                "message leaks the value: {err}"
            );
        }
    }

    #[test]
    fn share_file_round_trip_with_the_dev_kdf() {
        let out = ceremony(2, 3);
        let share = &out.shares[0];
        let passphrase = Passphrase::random_for_dev();
        let bytes = share
            .encrypt_to_file_bytes(&passphrase, ShareKdf::InsecureFastForDevEnv)
            .expect("encrypt");
        let text = std::str::from_utf8(&bytes).expect("armored text");
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!text.contains(&share.to_wire_json()[..]));
        let back = Share::decrypt_file_bytes(&bytes, &passphrase).expect("decrypt");
        assert_eq!(&back, share);
        out.record.verify_share(&back).expect("verify");
    }

    #[test]
    fn wrong_passphrase_is_reported_as_such() {
        let out = ceremony(2, 3);
        let passphrase = Passphrase::random_for_dev();
        let bytes = out.shares[0]
            .encrypt_to_file_bytes(&passphrase, ShareKdf::InsecureFastForDevEnv)
            .expect("encrypt");
        let wrong = Passphrase::random_for_dev();
        let err = Share::decrypt_file_bytes(&bytes, &wrong).expect_err("wrong passphrase");
        assert!(matches!(err, SealError::WrongPassphrase), "{err}");
        assert!(!err.to_string().contains(wrong.expose_secret()));
        assert!(matches!(
            Share::decrypt_file_bytes(b"hello", &passphrase),
            Err(SealError::UnreadableShareFile(_))
        ));
        // A damaged payload is not mistaken for a wrong passphrase.
        let mut damaged = bytes.clone();
        let n = damaged.len();
        let pos = n - 60;
        damaged[pos] = if damaged[pos] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            Share::decrypt_file_bytes(&damaged, &passphrase),
            Err(SealError::UnreadableShareFile(_))
        ));
    }

    /// The one test paying for age's calibrated scrypt (about a second each
    /// way).
    #[test]
    fn share_file_round_trip_with_the_standard_kdf() {
        let out = ceremony(1, 1);
        let passphrase = Passphrase::random_for_dev();
        let bytes = out.shares[0]
            .encrypt_to_file_bytes(&passphrase, ShareKdf::Standard)
            .expect("encrypt");
        let back = Share::decrypt_file_bytes(&bytes, &passphrase).expect("decrypt");
        assert_eq!(back, out.shares[0]);
    }
}

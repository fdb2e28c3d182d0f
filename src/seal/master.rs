//! The master secret `S`.

use elliptic_curve::sec1::ToEncodedPoint;
use elliptic_curve::Field;
use hkdf::Hkdf;
use p256::{NonZeroScalar, ProjectivePoint, Scalar};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::id::CeremonyId;

/// HKDF `info` for the keyring's key-encryption key: a distinct label per
/// purpose and version, so that `S` can later feed other derivations
/// without any two of them ever sharing a key.
const KEK_INFO: &[u8] = b"cstatns keyring kek v1";

/// The master secret `S`: a uniformly random, nonzero P-256 scalar.
///
/// It exists only in memory, for the few moments between the ceremony (or
/// the rebuilding from `t` shares) and the opening or sealing of the
/// keyring; it is zeroized on drop and never printed. Its only public trace
/// is the key check value `C0 = S·G` in the ceremony record.
pub struct MasterSecret(Scalar);

impl MasterSecret {
    /// Draws a fresh secret from the operating system's CSPRNG (rejecting
    /// zero, as `NonZeroScalar` does).
    pub fn random() -> Self {
        let nz = NonZeroScalar::random(&mut rand::rngs::OsRng);
        Self(*nz)
    }

    /// Wraps a scalar; `None` for zero, which would make `C0` the identity
    /// and the keyring key guessable.
    pub(crate) fn from_scalar(s: Scalar) -> Option<Self> {
        if bool::from(s.is_zero()) {
            None
        } else {
            Some(Self(s))
        }
    }

    pub(crate) fn scalar(&self) -> &Scalar {
        &self.0
    }

    /// `S·G` in compressed SEC1 form (33 bytes): what `C0` must equal.
    pub(crate) fn public_point_compressed(&self) -> [u8; 33] {
        let point = (ProjectivePoint::GENERATOR * self.0).to_affine();
        let encoded = point.to_encoded_point(true);
        let mut out = [0u8; 33];
        // A nonzero scalar gives a non-identity point, whose compressed
        // encoding is always 33 bytes; anything else leaves `out` zero,
        // which matches no valid commitment.
        if encoded.as_bytes().len() == out.len() {
            out.copy_from_slice(encoded.as_bytes());
        }
        out
    }

    /// The key check value of this secret: lowercase hex of `S·G`
    /// compressed, as it appears in `ceremony.json`.
    pub fn key_check_value(&self) -> String {
        hex::encode(self.public_point_compressed())
    }

    /// The keyring's key-encryption key:
    /// `HKDF-SHA-256(ikm = S as 32 big-endian bytes, salt = the 16 bytes of
    /// the ceremony id, info = "cstatns keyring kek v1")`.
    pub(crate) fn keyring_kek(&self, ceremony: &CeremonyId) -> KeyringKek {
        let mut ikm = Zeroizing::new([0u8; 32]);
        let mut repr = self.0.to_bytes();
        ikm.copy_from_slice(&repr);
        repr.as_mut_slice().zeroize();
        let hk = Hkdf::<Sha256>::new(Some(ceremony.as_bytes()), ikm.as_ref());
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA-256's 255·32-byte limit.
        hk.expand(KEK_INFO, okm.as_mut())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA-256 output length"));
        KeyringKek(okm)
    }
}

/// The keyring's key-encryption key, derived from `S`. The unsealed
/// service keeps it (and not `S`) so that it can rewrite the keyring
/// without anyone's action when a research project's end date comes;
/// zeroized on drop, dropped at seal.
pub struct KeyringKek(Zeroizing<[u8; 32]>);

impl KeyringKek {
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for KeyringKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyringKek { … }")
    }
}

impl Drop for MasterSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for MasterSecret {}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret { … }")
    }
}

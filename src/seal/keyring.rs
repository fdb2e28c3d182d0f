//! The keyring: every key the running service uses, sealed under `S`.
//!
//! ## `keyring.json`
//!
//! ```json
//! {
//!   "format": "cstatns-keyring-v1",
//!   "ceremony_id": "<32 lowercase hex digits>",
//!   "nonce": "<24 lowercase hex digits: 12 random bytes>",
//!   "ciphertext": "<standard base64 with padding>"
//! }
//! ```
//!
//! `ciphertext` is ChaCha20-Poly1305 (RFC 8439) of the plaintext layout
//! below, tag appended, with associated data the 16 bytes of the ceremony
//! id and key `KEK = HKDF-SHA-256(ikm = S as 32 big-endian bytes, salt = the
//! 16 bytes of the ceremony id, info = "cstatns keyring kek v1")`. Binding
//! the ceremony id twice means a keyring renamed to another ceremony does
//! not open.
//!
//! ## Plaintext layout, version 1
//!
//! ```text
//! u8      version = 1
//! u32 BE  G, the number of generation keys (≥ 1)
//! G × 32  K_1 … K_G
//! 32      Ed25519 seed of the log-signing key
//! ```
//!
//! Later versions (research-project keys of DESIGN §5) get a new version
//! byte and append their sections after these; a reader refuses a version
//! it does not know rather than guess.

use base64::Engine;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::SealError;
use super::id::{is_lower_hex, CeremonyId};
use super::master::MasterSecret;
use crate::code::{GenerationKey, KEY_LEN};

/// The `format` member of `keyring.json`.
pub const KEYRING_FORMAT: &str = "cstatns-keyring-v1";

/// Version byte of the plaintext layout written by this code.
const LAYOUT_V1: u8 = 1;

/// Poly1305 tag length.
const TAG_LEN: usize = 16;

/// The log-signing key (DESIGN §6: signed checkpoints of the traceability
/// log; also signs the ceremony record). Zeroized on drop (by
/// `ed25519-dalek`), never printed.
pub struct LogSigningKey(SigningKey);

impl LogSigningKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    fn seed(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The verifying key in lowercase hex (as in `ceremony.json`).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.verifying_key().as_bytes())
    }

    /// An Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for LogSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LogSigningKey {{ public: {}, … }}",
            self.public_key_hex()
        )
    }
}

/// The opened keyring. Every key in it is zeroized on drop.
#[non_exhaustive]
pub struct Keyring {
    /// `K_1 … K_G`, in generation order (DESIGN §3).
    pub generations: Vec<GenerationKey>,
    /// The log-signing key.
    pub log_signing: LogSigningKey,
}

impl Keyring {
    /// Assembles a keyring; there must be at least `K_1`.
    pub fn new(
        generations: Vec<GenerationKey>,
        log_signing: LogSigningKey,
    ) -> Result<Self, SealError> {
        if generations.is_empty() {
            return Err(SealError::NoGenerations);
        }
        if u32::try_from(generations.len()).is_err() {
            return Err(SealError::UnsupportedKeyring("too many generations".into()));
        }
        Ok(Self {
            generations,
            log_signing,
        })
    }

    /// The current generation `G`.
    pub fn generation(&self) -> u32 {
        // `new` and `decode` bound the length to u32.
        u32::try_from(self.generations.len()).unwrap_or(u32::MAX)
    }

    /// Encrypts the keyring under `S` for the given ceremony (at the
    /// ceremony, and again whenever the keyring changes, e.g. a renewal adds
    /// a generation). A fresh random nonce is drawn each time.
    pub fn seal(
        &self,
        master: &MasterSecret,
        ceremony_id: CeremonyId,
    ) -> Result<SealedKeyring, SealError> {
        let mut buf = self.encode();
        let kek = master.keyring_kek(&ceremony_id);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(kek.as_ref()));
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        cipher
            .encrypt_in_place(Nonce::from_slice(&nonce), ceremony_id.as_bytes(), &mut *buf)
            .map_err(|_| SealError::UnsupportedKeyring("keyring too large to encrypt".into()))?;
        // `buf` now holds only ciphertext; the copy is public data, and the
        // zeroizing original is wiped on drop regardless.
        Ok(SealedKeyring {
            ceremony_id,
            nonce,
            ciphertext: buf.to_vec(),
        })
    }

    /// The version-1 plaintext layout, in a buffer sized for the tag so
    /// that encryption never reallocates it.
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let g = self.generations.len();
        let mut buf = Zeroizing::new(Vec::with_capacity(1 + 4 + g * KEY_LEN + 32 + TAG_LEN));
        buf.push(LAYOUT_V1);
        buf.extend_from_slice(&self.generation().to_be_bytes());
        for k in &self.generations {
            buf.extend_from_slice(k.expose());
        }
        buf.extend_from_slice(self.log_signing.seed());
        buf
    }

    fn decode(plain: &[u8]) -> Result<Self, SealError> {
        let bad = |m: &str| SealError::UnsupportedKeyring(m.to_owned());
        let (&version, rest) = plain.split_first().ok_or_else(|| bad("empty keyring"))?;
        if version != LAYOUT_V1 {
            return Err(SealError::UnsupportedKeyring(format!(
                "layout version {version} (this program reads version {LAYOUT_V1})"
            )));
        }
        if rest.len() < 4 {
            return Err(bad("truncated keyring"));
        }
        let (count, rest) = rest.split_at(4);
        let g = u32::from_be_bytes([count[0], count[1], count[2], count[3]]) as usize;
        if g == 0 {
            return Err(bad("the keyring holds no generation key"));
        }
        let keys_len = g
            .checked_mul(KEY_LEN)
            .ok_or_else(|| bad("impossible number of generations"))?;
        if rest.len() != keys_len.saturating_add(32) {
            return Err(bad("the keyring's length does not match its layout"));
        }
        let (keys, seed) = rest.split_at(keys_len);
        let mut generations = Vec::with_capacity(g);
        for chunk in keys.chunks_exact(KEY_LEN) {
            let mut k = Zeroizing::new([0u8; KEY_LEN]);
            k.copy_from_slice(chunk);
            generations.push(GenerationKey::from_bytes(*k));
        }
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(seed);
        let log_signing = LogSigningKey::from_seed(&s);
        Self::new(generations, log_signing)
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring {{ generation: {}, log_public_key: {}, … }}",
            self.generation(),
            self.log_signing.public_key_hex()
        )
    }
}

/// `keyring.json` as written to disk.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringJson {
    format: String,
    ceremony_id: String,
    nonce: String,
    ciphertext: String,
}

/// The keyring as stored: AEAD ciphertext, useless without `S`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedKeyring {
    ceremony_id: CeremonyId,
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
}

impl SealedKeyring {
    /// Parses `keyring.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SealError> {
        let json: KeyringJson = serde_json::from_slice(bytes)
            .map_err(|e| SealError::MalformedKeyring(e.to_string()))?;
        let bad = |m: &str| SealError::MalformedKeyring(m.to_owned());
        if json.format != KEYRING_FORMAT {
            return Err(SealError::MalformedKeyring(format!(
                "format is {:?}, expected {KEYRING_FORMAT:?}",
                json.format
            )));
        }
        let ceremony_id = CeremonyId::parse(&json.ceremony_id)
            .ok_or_else(|| bad("ceremony_id is not 32 lowercase hex digits"))?;
        if !is_lower_hex(&json.nonce, 24) {
            return Err(bad("nonce is not 24 lowercase hex digits"));
        }
        let mut nonce = [0u8; 12];
        hex::decode_to_slice(&json.nonce, &mut nonce)
            .map_err(|_| bad("nonce is not 24 lowercase hex digits"))?;
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(&json.ciphertext)
            .map_err(|_| bad("ciphertext is not standard base64"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(bad("ciphertext too short"));
        }
        Ok(Self {
            ceremony_id,
            nonce,
            ciphertext,
        })
    }

    /// `keyring.json`, pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        let json = KeyringJson {
            format: KEYRING_FORMAT.to_owned(),
            ceremony_id: self.ceremony_id.to_string(),
            nonce: hex::encode(self.nonce),
            ciphertext: base64::engine::general_purpose::STANDARD.encode(&self.ciphertext),
        };
        let mut s = serde_json::to_string_pretty(&json)
            .unwrap_or_else(|_| unreachable!("four strings always serialize"));
        s.push('\n');
        s
    }

    /// The ceremony this keyring was sealed for.
    pub fn ceremony_id(&self) -> CeremonyId {
        self.ceremony_id
    }

    /// Decrypts the keyring with `S`. A wrong `S` and an altered file both
    /// give [`SealError::KeyringDoesNotOpen`] (an AEAD cannot tell them
    /// apart).
    pub fn open(&self, master: &MasterSecret) -> Result<Keyring, SealError> {
        let kek = master.keyring_kek(&self.ceremony_id);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(kek.as_ref()));
        let mut buf = Zeroizing::new(self.ciphertext.clone());
        cipher
            .decrypt_in_place(
                Nonce::from_slice(&self.nonce),
                self.ceremony_id.as_bytes(),
                &mut *buf,
            )
            .map_err(|_| SealError::KeyringDoesNotOpen)?;
        Keyring::decode(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::ceremony::tests::ceremony;
    use crate::seal::combine;

    #[test]
    fn keyring_opens_with_the_right_secret_only() {
        let out = ceremony(2, 3);
        let s = combine(&out.record, &out.shares[..2]).expect("combine");
        let keyring = out.keyring.open(&s).expect("opens");
        assert_eq!(keyring.generation(), 2);
        assert_eq!(
            keyring.log_signing.public_key_hex(),
            out.record.log_public_key_hex()
        );
        let other = MasterSecret::random();
        assert!(matches!(
            out.keyring.open(&other),
            Err(SealError::KeyringDoesNotOpen)
        ));
    }

    #[test]
    fn keyring_json_round_trips_and_tampering_is_caught() {
        let out = ceremony(2, 2);
        let s = combine(&out.record, &out.shares).expect("combine");
        let json = out.keyring.to_json();
        let back = SealedKeyring::from_json(json.as_bytes()).expect("parse");
        assert_eq!(back, out.keyring);
        assert!(back.open(&s).is_ok());

        let mut flipped = back.clone();
        flipped.ciphertext[3] ^= 1;
        assert!(matches!(
            flipped.open(&s),
            Err(SealError::KeyringDoesNotOpen)
        ));

        // Relabelled to another ceremony: neither the KEK nor the AAD match.
        let mut relabelled = back.clone();
        relabelled.ceremony_id = CeremonyId::random();
        assert!(matches!(
            relabelled.open(&s),
            Err(SealError::KeyringDoesNotOpen)
        ));
        assert!(matches!(
            out.record.open_keyring(&relabelled, &s),
            Err(SealError::KeyringCeremonyMismatch { .. })
        ));

        let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
        v["extra"] = 1.into();
        assert!(matches!(
            SealedKeyring::from_json(v.to_string().as_bytes()),
            Err(SealError::MalformedKeyring(_))
        ));
    }

    #[test]
    fn keyring_of_another_ceremony_does_not_match_the_record() {
        let a = ceremony(1, 1);
        let b = ceremony(1, 1);
        let sa = combine(&a.record, &a.shares).expect("combine");
        let ka = a.keyring.open(&sa).expect("open");
        assert!(a.record.check_keyring(&ka).is_ok());
        assert!(matches!(
            b.record.check_keyring(&ka),
            Err(SealError::KeyringRecordMismatch)
        ));
    }

    #[test]
    fn layout_round_trips_and_unknown_versions_are_refused() {
        let keyring = Keyring::new(
            vec![
                GenerationKey::from_bytes([1; 32]),
                GenerationKey::from_bytes([2; 32]),
                GenerationKey::from_bytes([3; 32]),
            ],
            LogSigningKey::generate(),
        )
        .expect("keyring");
        let plain = keyring.encode();
        assert_eq!(plain.len(), 1 + 4 + 3 * 32 + 32);
        assert_eq!(&plain[..5], &[1, 0, 0, 0, 3]);
        let back = Keyring::decode(&plain).expect("decode");
        assert_eq!(back.generations, keyring.generations);
        assert_eq!(
            back.log_signing.public_key_hex(),
            keyring.log_signing.public_key_hex()
        );

        let mut v2 = plain.to_vec();
        v2[0] = 2;
        assert!(matches!(
            Keyring::decode(&v2),
            Err(SealError::UnsupportedKeyring(_))
        ));
        assert!(Keyring::decode(&plain[..plain.len() - 1]).is_err());
        assert!(Keyring::new(Vec::new(), LogSigningKey::generate()).is_err());
    }

    #[test]
    fn log_signing_key_signs_verifiably() {
        let key = LogSigningKey::generate();
        let sig = ed25519_dalek::Signature::from_bytes(&key.sign(b"checkpoint"));
        assert!(key
            .verifying_key()
            .verify_strict(b"checkpoint", &sig)
            .is_ok());
        assert!(key
            .verifying_key()
            .verify_strict(b"checkpoinT", &sig)
            .is_err());
    }
}

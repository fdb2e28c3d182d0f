//! The keyring: every key the running service uses, sealed under `S`.
//!
//! ## `keyring.json`
//!
//! ```json
//! {
//!   "format": "cstatns-keyring-v2",
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
//! ## Plaintext layout, version 2 (key families)
//!
//! ```text
//! u8      version = 2
//! chain   the CStatNS generation chain K_1 … K_G (DESIGN §3)
//! 32      Ed25519 seed of the log-signing key
//! u32 BE  P, the number of research projects (DESIGN §5)
//! P ×     text id, text end date (YYYY-MM-DD), text matching body, chain
//!
//! chain = u32 BE n (≥ 1), then n × (32-byte key, i64 BE creation time in
//!         Unix seconds; 0 when unknown)
//! text  = u16 BE length, then that many bytes of UTF-8
//! ```
//!
//! ## Version 1 (read, never written)
//!
//! The envelope's `format` is `cstatns-keyring-v1` and the plaintext
//! `u8 1, u32 BE G, G × 32 K_1 … K_G, 32 seed`: one chain without creation
//! times (read as 0) and no project. A reader refuses a layout version it
//! does not know rather than guess; the envelope's version and the layout's
//! must agree.
//!
//! ## Writing
//!
//! [`SealedKeyring::write`] replaces `keyring.json` atomically (a temporary
//! file in the same directory, fsync, rename, fsync of the directory): a
//! crash leaves the old keyring or the new one, never a broken one.

use base64::Engine;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::SealError;
use super::id::{is_lower_hex, CeremonyId};
use super::master::{KeyringKek, MasterSecret};
use crate::code::{GenerationKey, KEY_LEN};
use crate::files::Replace;

/// The `format` member of `keyring.json` as written.
pub const KEYRING_FORMAT: &str = "cstatns-keyring-v2";

/// The `format` of keyrings written before key families (read only).
pub const KEYRING_FORMAT_V1: &str = "cstatns-keyring-v1";

/// Version byte of the version-1 plaintext layout (read only).
const LAYOUT_V1: u8 = 1;

/// Version byte of the plaintext layout written by this code.
const LAYOUT_V2: u8 = 2;

/// Longest text field of the layout (a project id, a date, a matching body).
const MAX_TEXT: usize = 4096;

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
    /// When each generation was created (Unix seconds; 0 when unknown, as
    /// for a keyring read from version 1). Same length as `generations`.
    pub created: Vec<i64>,
    /// The log-signing key.
    pub log_signing: LogSigningKey,
    /// One key chain per research project (DESIGN §5).
    pub projects: Vec<ProjectChain>,
}

/// A research project's key family: its own generation chain, destroyed
/// (removed from the keyring) when the project ends.
#[non_exhaustive]
pub struct ProjectChain {
    /// The project's id.
    pub id: String,
    /// Its end date, `YYYY-MM-DD`.
    pub end_date: String,
    /// The body that receives its results (a description the quorum
    /// approved: name, certificate, key to encrypt to).
    pub matching_body: String,
    /// Its keys, in generation order.
    pub generations: Vec<GenerationKey>,
    /// When each was created (Unix seconds).
    pub created: Vec<i64>,
}

impl ProjectChain {
    /// A project chain with one fresh key, created now.
    pub fn new(id: String, end_date: String, matching_body: String) -> Self {
        Self {
            id,
            end_date,
            matching_body,
            generations: vec![GenerationKey::random()],
            created: vec![now()],
        }
    }
}

impl std::fmt::Debug for ProjectChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProjectChain {{ id: {:?}, end_date: {:?}, generation: {}, … }}",
            self.id,
            self.end_date,
            self.generations.len()
        )
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Keyring {
    /// Assembles a keyring of one CStatNS chain (its keys dated now) and no
    /// project; there must be at least `K_1`.
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
        let created = vec![now(); generations.len()];
        Ok(Self {
            generations,
            created,
            log_signing,
            projects: Vec::new(),
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
        self.seal_with_kek(&master.keyring_kek(&ceremony_id), ceremony_id)
    }

    /// [`Keyring::seal`] with the key-encryption key already derived.
    pub fn seal_with_kek(
        &self,
        kek: &KeyringKek,
        ceremony_id: CeremonyId,
    ) -> Result<SealedKeyring, SealError> {
        seal_layout(self.encode()?, KEYRING_FORMAT, kek, ceremony_id)
    }

    /// The version-2 plaintext layout, in a zeroizing buffer with room for
    /// the tag so that encryption does not reallocate it (a reallocation
    /// would free a copy of the keys unwiped by this code).
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let keys = self.generations.len()
            + self
                .projects
                .iter()
                .map(|p| p.generations.len())
                .sum::<usize>();
        let texts: usize = self
            .projects
            .iter()
            .map(|p| 6 + p.id.len() + p.end_date.len() + p.matching_body.len() + 4)
            .sum();
        let mut buf = Zeroizing::new(Vec::with_capacity(
            1 + 4 + keys * (KEY_LEN + 8) + 32 + 4 + texts + TAG_LEN,
        ));
        buf.push(LAYOUT_V2);
        put_chain(&mut buf, &self.generations, &self.created)?;
        buf.extend_from_slice(self.log_signing.seed());
        let p = u32::try_from(self.projects.len())
            .map_err(|_| SealError::UnsupportedKeyring("too many projects".into()))?;
        buf.extend_from_slice(&p.to_be_bytes());
        for project in &self.projects {
            for text in [&project.id, &project.end_date, &project.matching_body] {
                put_text(&mut buf, text)?;
            }
            put_chain(&mut buf, &project.generations, &project.created)?;
        }
        Ok(buf)
    }

    fn decode(plain: &[u8], envelope_v1: bool) -> Result<Self, SealError> {
        let bad = |m: &str| SealError::UnsupportedKeyring(m.to_owned());
        let (&version, rest) = plain.split_first().ok_or_else(|| bad("empty keyring"))?;
        let mut r = Reader(rest);
        let keyring = match (version, envelope_v1) {
            (LAYOUT_V1, true) => {
                let g = r.u32()? as usize;
                let generations = r.keys(g, false)?.0;
                let log_signing = r.seed()?;
                Self::new(generations, log_signing).map(|mut k| {
                    k.created = vec![0; k.generations.len()];
                    k
                })?
            }
            (LAYOUT_V2, false) => {
                let (generations, created) = r.chain()?;
                let log_signing = r.seed()?;
                let p = r.u32()?;
                let mut projects = Vec::new();
                for _ in 0..p {
                    let (id, end_date, matching_body) = (r.text()?, r.text()?, r.text()?);
                    let (generations, created) = r.chain()?;
                    projects.push(ProjectChain {
                        id,
                        end_date,
                        matching_body,
                        generations,
                        created,
                    });
                }
                Self {
                    generations,
                    created,
                    log_signing,
                    projects,
                }
            }
            _ => {
                return Err(SealError::UnsupportedKeyring(format!(
                    "layout version {version} in a {} envelope (this program reads version \
                     {LAYOUT_V1} in {KEYRING_FORMAT_V1} and {LAYOUT_V2} in {KEYRING_FORMAT})",
                    if envelope_v1 {
                        KEYRING_FORMAT_V1
                    } else {
                        KEYRING_FORMAT
                    }
                )))
            }
        };
        if !r.0.is_empty() {
            return Err(bad("the keyring's length does not match its layout"));
        }
        Ok(keyring)
    }
}

/// Encrypts a plaintext layout under `S` for the ceremony (see the module
/// documentation), with a fresh random nonce.
fn seal_layout(
    mut buf: Zeroizing<Vec<u8>>,
    format: &'static str,
    kek: &KeyringKek,
    ceremony_id: CeremonyId,
) -> Result<SealedKeyring, SealError> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(kek.bytes()));
    let mut nonce = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    cipher
        .encrypt_in_place(Nonce::from_slice(&nonce), ceremony_id.as_bytes(), &mut *buf)
        .map_err(|_| SealError::UnsupportedKeyring("keyring too large to encrypt".into()))?;
    // `buf` now holds only ciphertext; the copy is public data, and the
    // zeroizing original is wiped on drop regardless.
    Ok(SealedKeyring {
        format,
        ceremony_id,
        nonce,
        ciphertext: buf.to_vec(),
    })
}

fn put_chain(buf: &mut Vec<u8>, keys: &[GenerationKey], created: &[i64]) -> Result<(), SealError> {
    let n = u32::try_from(keys.len())
        .ok()
        .filter(|&n| n >= 1 && keys.len() == created.len())
        .ok_or_else(|| SealError::UnsupportedKeyring("a key chain needs dated keys".into()))?;
    buf.extend_from_slice(&n.to_be_bytes());
    for (k, t) in keys.iter().zip(created) {
        buf.extend_from_slice(k.expose());
        buf.extend_from_slice(&t.to_be_bytes());
    }
    Ok(())
}

fn put_text(buf: &mut Vec<u8>, text: &str) -> Result<(), SealError> {
    let n = u16::try_from(text.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_TEXT)
        .ok_or_else(|| SealError::UnsupportedKeyring("a text field is too long".into()))?;
    buf.extend_from_slice(&n.to_be_bytes());
    buf.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Reads the plaintext layout front to back; every read checks its length.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SealError> {
        if self.0.len() < n {
            return Err(SealError::UnsupportedKeyring("truncated keyring".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, SealError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn text(&mut self) -> Result<String, SealError> {
        let b = self.take(2)?;
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        if n > MAX_TEXT {
            return Err(SealError::UnsupportedKeyring(
                "a text field is too long".into(),
            ));
        }
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| SealError::UnsupportedKeyring("a text field is not UTF-8".into()))
    }

    /// `n` keys (at least one), each followed by its creation time if `dated`.
    fn keys(&mut self, n: usize, dated: bool) -> Result<(Vec<GenerationKey>, Vec<i64>), SealError> {
        if n == 0 {
            return Err(SealError::UnsupportedKeyring(
                "a key chain of the keyring holds no key".into(),
            ));
        }
        let each = KEY_LEN + if dated { 8 } else { 0 };
        if n.checked_mul(each).is_none_or(|len| len > self.0.len()) {
            return Err(SealError::UnsupportedKeyring("truncated keyring".into()));
        }
        let mut keys = Vec::with_capacity(n);
        let mut created = Vec::with_capacity(n);
        for _ in 0..n {
            let mut k = Zeroizing::new([0u8; KEY_LEN]);
            k.copy_from_slice(self.take(KEY_LEN)?);
            keys.push(GenerationKey::from_bytes(*k));
            if dated {
                let t = self.take(8)?;
                created.push(i64::from_be_bytes(t.try_into().unwrap_or([0; 8])));
            }
        }
        Ok((keys, created))
    }

    fn chain(&mut self) -> Result<(Vec<GenerationKey>, Vec<i64>), SealError> {
        let n = self.u32()? as usize;
        self.keys(n, true)
    }

    fn seed(&mut self) -> Result<LogSigningKey, SealError> {
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(self.take(32)?);
        Ok(LogSigningKey::from_seed(&s))
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
    /// [`KEYRING_FORMAT`], or [`KEYRING_FORMAT_V1`] for a keyring read from
    /// an older file (its ciphertext holds the version-1 layout).
    format: &'static str,
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
        let format = match json.format.as_str() {
            KEYRING_FORMAT => KEYRING_FORMAT,
            KEYRING_FORMAT_V1 => KEYRING_FORMAT_V1,
            other => {
                return Err(SealError::MalformedKeyring(format!(
                    "format is {other:?}, expected {KEYRING_FORMAT:?} (or {KEYRING_FORMAT_V1:?})"
                )))
            }
        };
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
            format,
            ceremony_id,
            nonce,
            ciphertext,
        })
    }

    /// `keyring.json`, pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        let json = KeyringJson {
            format: self.format.to_owned(),
            ceremony_id: self.ceremony_id.to_string(),
            nonce: hex::encode(self.nonce),
            ciphertext: base64::engine::general_purpose::STANDARD.encode(&self.ciphertext),
        };
        let mut s = serde_json::to_string_pretty(&json)
            .unwrap_or_else(|_| unreachable!("four strings always serialize"));
        s.push('\n');
        s
    }

    /// Writes `keyring.json` at `path`, replacing what is there atomically
    /// (mode 0600): a crash leaves the old keyring or this one.
    pub fn write(&self, path: &std::path::Path) -> Result<(), SealError> {
        crate::files::write_atomic(path, self.to_json().as_bytes(), 0o600, Replace::Yes)
            .map_err(|e| SealError::io(path, e))
    }

    /// The envelope format it was read with (or written in).
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// The ceremony this keyring was sealed for.
    pub fn ceremony_id(&self) -> CeremonyId {
        self.ceremony_id
    }

    /// Decrypts the keyring with `S`. A wrong `S` and an altered file both
    /// give [`SealError::KeyringDoesNotOpen`] (an AEAD cannot tell them
    /// apart).
    pub fn open(&self, master: &MasterSecret) -> Result<Keyring, SealError> {
        self.open_with_kek(&master.keyring_kek(&self.ceremony_id))
    }

    /// [`SealedKeyring::open`] with the key-encryption key already derived.
    pub fn open_with_kek(&self, kek: &KeyringKek) -> Result<Keyring, SealError> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(kek.bytes()));
        let mut buf = Zeroizing::new(self.ciphertext.clone());
        cipher
            .decrypt_in_place(
                Nonce::from_slice(&self.nonce),
                self.ceremony_id.as_bytes(),
                &mut *buf,
            )
            .map_err(|_| SealError::KeyringDoesNotOpen)?;
        Keyring::decode(&buf, self.format == KEYRING_FORMAT_V1)
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

    fn three_generations() -> Keyring {
        Keyring::new(
            vec![
                GenerationKey::from_bytes([1; 32]),
                GenerationKey::from_bytes([2; 32]),
                GenerationKey::from_bytes([3; 32]),
            ],
            LogSigningKey::generate(),
        )
        .expect("keyring")
    }

    /// The version-1 plaintext of `keyring`'s chain and log key, as the
    /// code before key families wrote it.
    fn layout_v1(keyring: &Keyring) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(vec![LAYOUT_V1]);
        v.extend_from_slice(&keyring.generation().to_be_bytes());
        for k in &keyring.generations {
            v.extend_from_slice(k.expose());
        }
        v.extend_from_slice(keyring.log_signing.seed());
        v
    }

    #[test]
    fn layout_v2_round_trips_with_projects_and_unknown_versions_are_refused() {
        let mut keyring = three_generations();
        keyring.projects.push(ProjectChain::new(
            "cohorte-2027".into(),
            "2031-12-31".into(),
            "matching body: Centre d’appariement, age1…".into(),
        ));
        let plain = keyring.encode().expect("encode");
        assert_eq!(&plain[..5], &[2, 0, 0, 0, 3]);
        let back = Keyring::decode(&plain, false).expect("decode");
        assert_eq!(back.generations, keyring.generations);
        assert_eq!(back.created, keyring.created);
        assert!(back.created.iter().all(|&t| t > 1_700_000_000));
        assert_eq!(
            back.log_signing.public_key_hex(),
            keyring.log_signing.public_key_hex()
        );
        let (p, q) = (&back.projects[0], &keyring.projects[0]);
        assert_eq!(
            (&p.id, &p.end_date, &p.matching_body),
            (&q.id, &q.end_date, &q.matching_body)
        );
        assert_eq!(p.generations, q.generations);
        assert!(p.generations[0] != back.generations[0]);
        assert!(!format!("{back:?}{p:?}").contains(&hex::encode([1u8; 32])[..16]));

        let mut v3 = plain.to_vec();
        v3[0] = 3;
        assert!(matches!(
            Keyring::decode(&v3, false),
            Err(SealError::UnsupportedKeyring(_))
        ));
        // A version-2 layout in a version-1 envelope (or the reverse) is refused.
        assert!(Keyring::decode(&plain, true).is_err());
        assert!(Keyring::decode(&layout_v1(&keyring), false).is_err());
        for cut in [1, 5, 40, plain.len() - 1] {
            assert!(
                Keyring::decode(&plain[..cut], false).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = plain.to_vec();
        longer.push(0);
        assert!(Keyring::decode(&longer, false).is_err());
        assert!(Keyring::new(Vec::new(), LogSigningKey::generate()).is_err());
    }

    #[test]
    fn a_version_1_keyring_file_still_opens_and_is_rewritten_as_version_2() {
        let out = ceremony(2, 3);
        let s = combine(&out.record, &out.shares[..2]).expect("combine");
        let current = out.keyring.open(&s).expect("opens");
        // The same keys as a keyring.json written before key families.
        let v1 = seal_layout(
            layout_v1(&current),
            KEYRING_FORMAT_V1,
            &s.keyring_kek(&out.keyring.ceremony_id()),
            out.keyring.ceremony_id(),
        )
        .expect("seal v1");
        let json = v1.to_json();
        assert!(json.contains("\"cstatns-keyring-v1\""));
        let read = SealedKeyring::from_json(json.as_bytes()).expect("parse v1");
        assert_eq!(read.format(), KEYRING_FORMAT_V1);
        let opened = out.record.open_keyring(&read, &s).expect("v1 opens");
        assert_eq!(opened.generations, current.generations);
        assert_eq!(opened.created, vec![0, 0], "v1 keys have no creation time");
        assert!(opened.projects.is_empty());
        // Written again, it is version 2, and opens the same.
        let rewritten = opened.seal(&s, out.keyring.ceremony_id()).expect("seal v2");
        assert_eq!(rewritten.format(), KEYRING_FORMAT);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.json");
        std::fs::write(&path, json).expect("old file");
        rewritten.write(&path).expect("atomic replace");
        let back = SealedKeyring::from_json(&std::fs::read(&path).expect("read")).expect("parse");
        assert_eq!(back, rewritten);
        assert_eq!(
            out.record
                .open_keyring(&back, &s)
                .expect("opens")
                .generations,
            current.generations
        );
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

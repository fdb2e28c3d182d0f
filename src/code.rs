//! Code derivation (DESIGN §3, a contract): `C_1 = HMAC-SHA-256(K_1, body)`,
//! `C_g = HMAC-SHA-256(K_g, C_(g-1))` for `g ≥ 2`; the published code is the
//! lowercase hex of `C_G`.
//!
//! Each generation key is turned once into a keyed HMAC state (the inner and
//! outer pads already absorbed); every record then clones that state, which
//! costs two SHA-256 compressions per generation and no allocation. The batch
//! entry points ([`KeyChain::derive_batch`], [`KeyChain::renew_batch`]) take
//! whole slices so that a multi-buffer kernel (several records interleaved on
//! the SHA extensions) can replace the per-record loop without touching callers.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::nir::BODY_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of a generation key and of a raw code.
pub const KEY_LEN: usize = 32;
/// Length in bytes of a raw code (`C_g`).
pub const CODE_LEN: usize = 32;
/// Length of a published code: lowercase hex of [`CODE_LEN`] bytes.
pub const CODE_HEX_LEN: usize = 2 * CODE_LEN;

/// A generation key `K_g`: secret, zeroized on drop, never printed.
pub struct GenerationKey(Zeroizing<[u8; KEY_LEN]>);

impl GenerationKey {
    /// Wraps 32 key bytes. The caller's copy should be zeroized by the caller.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Draws a fresh key from the operating system's CSPRNG.
    pub fn random() -> Self {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, k.as_mut());
        Self(k)
    }

    /// Reads a key to import (DESIGN §3: a migration may import an existing
    /// `K_1`) from raw bytes holding either 32 raw bytes or 64 hex digits
    /// (surrounding whitespace ignored).
    pub fn parse_import(raw: &[u8]) -> Result<Self, KeyImportError> {
        if raw.len() == KEY_LEN {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(raw);
            let key = Self::from_bytes(k);
            k.zeroize();
            return Ok(key);
        }
        let text = std::str::from_utf8(raw).map_err(|_| KeyImportError)?.trim();
        if text.len() != 2 * KEY_LEN {
            return Err(KeyImportError);
        }
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text, k.as_mut()).map_err(|_| KeyImportError)?;
        Ok(Self(k))
    }

    /// The key bytes, for sealing into the keyring.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl PartialEq for GenerationKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(other.0.as_ref()).into()
    }
}

impl std::fmt::Debug for GenerationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GenerationKey { … }")
    }
}

/// A key to import was neither 32 raw bytes nor 64 hex digits. Says nothing
/// else about the input.
#[derive(Debug, thiserror::Error)]
#[error("the key file must hold exactly 32 raw bytes or 64 hexadecimal digits")]
pub struct KeyImportError;

/// A raw code `C_g`. Not a secret in the key sense but personal data: zeroized
/// on drop, never logged.
pub type RawCode = [u8; CODE_LEN];

/// One HMAC-SHA-256 key turned into its keyed state (inner and outer pads
/// absorbed). Cloned per message: the primitive of §3, tested on RFC 4231.
///
/// The state is key-equivalent. It lives on the heap inside a [`KeyChain`],
/// which the service drops when sealed; the binaries' zeroizing allocator
/// wipes it then (the `hmac` and `sha2` crates offer no zeroize of their
/// state). Neither type is `Clone`: the service shares one chain by `Arc`.
pub struct KeyedMac(HmacSha256);

impl KeyedMac {
    /// Absorbs a key of any length (RFC 2104: longer than a block is hashed).
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        Self(
            <HmacSha256 as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        )
    }

    /// `HMAC-SHA-256(key, msg)` into `out`.
    pub fn mac(&self, msg: &[u8], out: &mut RawCode) {
        let mut m = self.0.clone();
        m.update(msg);
        out.copy_from_slice(&m.finalize().into_bytes());
    }
}

/// The keyed states of generations `1..=G`, built once per key.
pub struct KeyChain {
    states: Vec<KeyedMac>,
}

impl std::fmt::Debug for KeyChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyChain {{ generation: {}, … }}", self.generation())
    }
}

impl KeyChain {
    /// Builds the chain from `K_1 … K_G` (at least one key).
    pub fn new(keys: &[GenerationKey]) -> Result<Self, EmptyKeyChain> {
        if keys.is_empty() {
            return Err(EmptyKeyChain);
        }
        let states = keys.iter().map(|k| KeyedMac::new(k.expose())).collect();
        Ok(Self { states })
    }

    /// The current generation `G`.
    pub fn generation(&self) -> u32 {
        self.states.len() as u32
    }

    fn mac(&self, g: u32, msg: &[u8], out: &mut RawCode) {
        self.states[(g - 1) as usize].mac(msg, out);
    }

    /// `C_G` of one canonical NIR body.
    pub fn derive(&self, body: &[u8; BODY_LEN], out: &mut RawCode) {
        self.mac(1, body, out);
        self.renew_in_place(1, out);
    }

    /// Applies `K_(from+1) … K_G` to a code of generation `from`
    /// (`from == G` leaves it unchanged). `from` must be in `1..=G`.
    pub fn renew_in_place(&self, from: u32, code: &mut RawCode) {
        let mut tmp = Zeroizing::new([0u8; CODE_LEN]);
        for g in (from + 1)..=self.generation() {
            self.mac(g, &code[..], &mut tmp);
            code.copy_from_slice(&tmp[..]);
        }
    }

    /// `C_G` of every body, into `out` (same length).
    pub fn derive_batch(&self, bodies: &[[u8; BODY_LEN]], out: &mut [RawCode]) {
        debug_assert_eq!(bodies.len(), out.len());
        for (b, o) in bodies.iter().zip(out.iter_mut()) {
            self.derive(b, o);
        }
    }

    /// Renews every `(generation, code)` in place to generation `G`.
    pub fn renew_batch(&self, from: &[u32], codes: &mut [RawCode]) {
        debug_assert_eq!(from.len(), codes.len());
        for (g, c) in from.iter().zip(codes.iter_mut()) {
            self.renew_in_place(*g, c);
        }
    }
}

/// A key chain needs at least `K_1`.
#[derive(Debug, thiserror::Error)]
#[error("a key chain needs at least one generation key")]
pub struct EmptyKeyChain;

/// Writes the lowercase hex of a raw code into `out` (64 bytes).
pub fn write_hex(code: &RawCode, out: &mut [u8; CODE_HEX_LEN]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in code.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 0xf) as usize];
    }
}

/// Parses 64 hex digits (either case) into a raw code; `None` if not exactly that.
pub fn parse_hex(text: &[u8]) -> Option<RawCode> {
    if text.len() != CODE_HEX_LEN {
        return None;
    }
    let mut out = [0u8; CODE_LEN];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

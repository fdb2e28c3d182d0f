//! Code derivation (DESIGN §3, a contract): `C_1 = HMAC-SHA-256(K_1, body)`,
//! `C_g = HMAC-SHA-256(K_g, C_(g-1))` for `g ≥ 2`; the published code is the
//! lowercase hex of `C_G`.
//!
//! Each generation key is turned once into its two SHA-256 midstates
//! ([`KeyedMac`], the inner and outer pads absorbed); a record then costs two
//! compressions per generation and no allocation. The batch entry points
//! ([`KeyChain::derive_batch`], [`KeyChain::renew_batch`]) take whole slices
//! and hand them to `kernel`, the one place a multi-lane kernel (several
//! records interleaved on the SHA extensions) replaces the portable loop.

mod hmac;
mod kernel;
mod shani;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::nir::BODY_LEN;

pub use self::hmac::KeyedMac;

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

/// A raw code `C_g`. Not a secret in the key sense but personal data:
/// zeroized on drop, compared in constant time, never printed.
#[derive(Clone, Default)]
pub struct Code([u8; CODE_LEN]);

// By hand rather than derived: the derive wipes an array one volatile byte
// at a time, a slice is wiped by one fill behind a barrier. A batch drops a
// code per line.
impl Zeroize for Code {
    fn zeroize(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Code {}

impl Code {
    /// Wraps 32 code bytes (the caller wipes its copy).
    pub fn from_bytes(bytes: [u8; CODE_LEN]) -> Self {
        Self(bytes)
    }

    /// The code's bytes.
    pub fn as_bytes(&self) -> &[u8; CODE_LEN] {
        &self.0
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Code {}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(…)")
    }
}

/// The midstates of generations `1..=G`, built once per key.
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
        // The states were computed in frames below this one: what they
        // left on this thread's stack goes now (a quorum operation builds
        // chains on a worker that hashes nothing after).
        scrub_stack();
        Ok(Self { states })
    }

    /// The current generation `G`.
    pub fn generation(&self) -> u32 {
        self.states.len() as u32
    }

    /// `C_G` of one canonical NIR body.
    pub fn derive(&self, body: &[u8; BODY_LEN], out: &mut Code) {
        kernel::derive(
            &self.states,
            std::slice::from_ref(body),
            std::slice::from_mut(out),
        );
    }

    /// Applies `K_(from+1) … K_G` to a code of generation `from`
    /// (`from == G` leaves it unchanged). `from` must be in `1..=G`.
    pub fn renew_in_place(&self, from: u32, code: &mut Code) {
        kernel::renew(&self.states, &[from], std::slice::from_mut(code));
    }

    /// `C_G` of every body, into `out`.
    ///
    /// # Panics
    /// If `out` is not as long as `bodies`.
    pub fn derive_batch(&self, bodies: &[[u8; BODY_LEN]], out: &mut [Code]) {
        kernel::derive(&self.states, bodies, out);
    }

    /// Renews every `(generation, code)` in place to generation `G`.
    ///
    /// # Panics
    /// If `codes` is not as long as `from`.
    pub fn renew_batch(&self, from: &[u32], codes: &mut [Code]) {
        kernel::renew(&self.states, from, codes);
    }
}

/// `rounds` SHA-256 compressions in each of `states.len()` (1 to 4)
/// independent streams, interleaved round for round on SHA-NI: what
/// `examples/kernel_ratio` measures to show how many lanes the kernel
/// should interleave (it runs four, and two for what is left). Stream `l`
/// compresses `states[l]` with `blocks[l]`, the block's first word XORed
/// with the compression's number (0, 1, …). False, and nothing done,
/// without SHA-NI.
///
/// # Panics
/// If there are not 1 to 4 states, or not as many blocks.
pub fn interleaved_compressions(states: &mut [[u32; 8]], blocks: &[[u8; 64]], rounds: u32) -> bool {
    shani::lanes(states, blocks, rounds)
}

/// A key chain needs at least `K_1`.
#[derive(Debug, thiserror::Error)]
#[error("a key chain needs at least one generation key")]
pub struct EmptyKeyChain;

/// Writes the lowercase hex of a raw code into `out` (64 bytes).
pub fn write_hex(code: &Code, out: &mut [u8; CODE_HEX_LEN]) {
    // `const-hex` picks its SIMD encoder at run time: a batch writes a code
    // per line, and the byte-by-byte table took a tenth of a chunk's time.
    // A slice, not the array: no copy of the code in this frame.
    const_hex::encode_to_slice(code.0.as_slice(), out).expect("64 digits hold 32 bytes");
}

/// Appends `code`'s 64 lower-case hexadecimal digits to `out`, written in
/// place (no copy of them elsewhere).
pub fn push_hex(code: &Code, out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + CODE_HEX_LEN, 0);
    let digits: &mut [u8; CODE_HEX_LEN] = (&mut out[at..]).try_into().expect("just resized");
    write_hex(code, digits);
}

/// Parses 64 hex digits (either case) into a raw code; `None` if not exactly that.
pub fn parse_hex(text: &[u8]) -> Option<Code> {
    let mut out = Code::default();
    parse_hex_into(text, &mut out).then_some(out)
}

/// Parses 64 hex digits (either case) into `out`, in place (so that no copy
/// is left on the caller's stack); false, and `out` zeroed, if not exactly that.
pub fn parse_hex_into(text: &[u8], out: &mut Code) -> bool {
    let ok = text.len() == CODE_HEX_LEN && hex::decode_to_slice(text, &mut out.0).is_ok();
    if !ok {
        out.zeroize();
    }
    ok
}

/// Overwrites the stack below the caller's frame (32 KiB): what the
/// kernel's frames left there when they returned (the interleaved HMAC's
/// register spills hold inner states and codes) is zeroed. Called by a
/// worker after each chunk, from the frame that called the kernel.
#[inline(never)]
pub fn scrub_stack() {
    let mut below = [0u64; 4096];
    below.zeroize();
    std::hint::black_box(&below);
}

#[cfg(test)]
mod tests {
    use ::hmac::Mac;
    use rand::{Rng, RngCore, SeedableRng};

    use super::*;

    /// §3 with the `hmac` crate, one record at a time.
    fn reference(keys: &[[u8; 32]], from: usize, msg: &[u8]) -> [u8; 32] {
        let mut code = msg.to_vec();
        for k in &keys[from..] {
            let mut m = <::hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(k).expect("any length");
            m.update(&code);
            code = m.finalize().into_bytes().to_vec();
        }
        code.try_into().expect("32 bytes")
    }

    /// Runs `f` on SHA-NI when this CPU has it, then on the portable path,
    /// forced on this thread; `f` is told which.
    fn on_both_paths(mut f: impl FnMut(bool)) {
        for portable in [false, true] {
            shani::PORTABLE.set(portable);
            f(portable);
        }
        shani::PORTABLE.set(false);
    }

    #[test]
    fn the_kernel_agrees_with_the_hmac_crate_over_generations_both_paths() {
        on_both_paths(|_| kernel_agrees_over_generations());
    }

    fn kernel_agrees_over_generations() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xc0de_5eed);
        let raw: Vec<[u8; 32]> = (0..4).map(|_| rng.gen()).collect();
        let keys: Vec<GenerationKey> = raw.iter().map(|k| GenerationKey::from_bytes(*k)).collect();
        for g in 1..=4 {
            let chain = KeyChain::new(&keys[..g]).expect("keys");
            // Slices of every length up to a few lanes' worth, and long ones
            // of every length modulo four.
            for n in (0..13).chain([1000, 1001, 1002, 1003]) {
                let bodies: Vec<[u8; BODY_LEN]> = (0..n)
                    .map(|_| std::array::from_fn(|_| b'0' + rng.gen_range(0..10)))
                    .collect();
                let mut codes = vec![Code::default(); n];
                chain.derive_batch(&bodies, &mut codes);
                for (b, c) in bodies.iter().zip(&codes) {
                    assert_eq!(c.as_bytes(), &reference(&raw[..g], 0, b), "derive, G = {g}");
                }
                let from: Vec<u32> = (0..n).map(|_| rng.gen_range(1..=g as u32)).collect();
                let mut olds: Vec<Code> = (0..n)
                    .map(|_| {
                        let mut c = [0u8; 32];
                        rng.fill_bytes(&mut c);
                        Code::from_bytes(c)
                    })
                    .collect();
                let want: Vec<[u8; 32]> = olds
                    .iter()
                    .zip(&from)
                    .map(|(c, &f)| reference(&raw[..g], f as usize, c.as_bytes()))
                    .collect();
                chain.renew_batch(&from, &mut olds);
                for (c, w) in olds.iter().zip(&want) {
                    assert_eq!(c.as_bytes(), w, "renewal, G = {g}");
                }
            }
        }
    }

    /// Records per path in the test below.
    const MANY: usize = 1 << 20;

    #[test]
    fn renewals_go_four_by_four_only_where_four_codes_share_their_generation() {
        // Groups of four: three steps to go; three alike and one not; two
        // steps; none (already at G); all unlike the first, with a pair
        // whose older code goes first; then a tail. Every prefix, so that
        // tails of 1 to 3 follow each group; both paths.
        let from = [
            1, 1, 1, 1, 3, 3, 1, 3, 2, 2, 2, 2, 4, 4, 4, 4, 3, 1, 2, 2, 2, 1, 3,
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x4_4444);
        let raw: Vec<[u8; 32]> = (0..4).map(|_| rng.gen()).collect();
        let keys: Vec<GenerationKey> = raw.iter().map(|k| GenerationKey::from_bytes(*k)).collect();
        let chain = KeyChain::new(&keys).expect("keys");
        let olds: Vec<Code> = (0..from.len())
            .map(|_| Code::from_bytes(rng.gen()))
            .collect();
        on_both_paths(|portable| {
            for n in 0..=from.len() {
                let mut codes = olds[..n].to_vec();
                chain.renew_batch(&from[..n], &mut codes);
                for (i, (c, old)) in codes.iter().zip(&olds).enumerate() {
                    let want = reference(&raw, from[i] as usize, old.as_bytes());
                    assert_eq!(c.as_bytes(), &want, "code {i} of {n}, portable: {portable}");
                }
            }
        });
    }

    #[test]
    fn a_million_random_records_agree_with_the_hmac_crate_on_both_paths() {
        // Random bytes, not only digits: the kernel hashes whatever 13 bytes
        // it is given. Random keys, one and three generations; renewals
        // from a random generation. Both paths: SHA-NI when this CPU has
        // it, then the portable one, forced on this thread.
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x3111_1a9e);
        let raw: Vec<[u8; 32]> = (0..3).map(|_| rng.gen()).collect();
        let keys: Vec<GenerationKey> = raw.iter().map(|k| GenerationKey::from_bytes(*k)).collect();
        let one = KeyChain::new(&keys[..1]).expect("keys");
        let three = KeyChain::new(&keys).expect("keys");
        let bodies: Vec<[u8; BODY_LEN]> = (0..MANY).map(|_| rng.gen()).collect();
        let olds: Vec<Code> = (0..MANY).map(|_| Code::from_bytes(rng.gen())).collect();
        let from: Vec<u32> = (0..MANY).map(|_| rng.gen_range(1..=3)).collect();
        let derived: Vec<[u8; 32]> = bodies.iter().map(|b| reference(&raw[..1], 0, b)).collect();
        let renewed: Vec<[u8; 32]> = olds
            .iter()
            .zip(&from)
            .map(|(c, &f)| reference(&raw, f as usize, c.as_bytes()))
            .collect();
        // Derive through the three generations too, on a quarter of the
        // bodies (the later generations go four by four, as renewals of one
        // generation do).
        let quarter = &bodies[..MANY / 4];
        let derived3: Vec<[u8; 32]> = quarter.iter().map(|b| reference(&raw, 0, b)).collect();
        // How many codes differ from what the `hmac` crate gives.
        let wrong = |codes: &[Code], want: &[[u8; 32]]| {
            codes
                .iter()
                .zip(want)
                .filter(|(c, w)| c.as_bytes() != *w)
                .count()
        };
        on_both_paths(|portable| {
            let mut codes = vec![Code::default(); MANY];
            one.derive_batch(&bodies, &mut codes);
            assert_eq!(wrong(&codes, &derived), 0, "derive, portable: {portable}");
            let mut codes = vec![Code::default(); quarter.len()];
            three.derive_batch(quarter, &mut codes);
            assert_eq!(
                wrong(&codes, &derived3),
                0,
                "derive, G = 3, portable: {portable}"
            );
            let mut codes = olds.clone();
            three.renew_batch(&from, &mut codes);
            assert_eq!(wrong(&codes, &renewed), 0, "renewal, portable: {portable}");
        });
    }

    #[test]
    fn codes_compare_in_constant_time_and_never_print() {
        let a = Code::from_bytes([7; 32]);
        assert_eq!(a, a.clone());
        assert_ne!(a, Code::default());
        assert_eq!(format!("{a:?}"), "Code(…)");
        let mut hex = [0u8; CODE_HEX_LEN];
        write_hex(&a, &mut hex);
        assert_eq!(parse_hex(&hex), Some(a));
        assert_eq!(parse_hex(&hex[1..]), None);
    }
}

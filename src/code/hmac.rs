//! HMAC-SHA-256 (RFC 2104) over precomputed SHA-256 midstates.
//!
//! A key is absorbed once: its inner pad block and its outer pad block are
//! each compressed from the SHA-256 initial value, and the two 8-word states
//! kept. A MAC of a message then continues from them with the `sha2` crate's
//! compression function (which picks the SHA extensions at run time). For
//! §3's messages (a 13-byte body, a 32-byte code) that is one compression
//! for the inner hash and one for the outer: the floor of an HMAC.
//!
//! Written over `compress256` rather than the `hmac` crate because a
//! multi-lane kernel needs exactly these midstates and block layouts, which
//! `hmac` keeps private; the tests check it against `hmac` on random inputs.

use sha2::digest::generic_array::GenericArray;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// SHA-256 block length in bytes.
pub(super) const BLOCK: usize = 64;

/// The SHA-256 initial hash value (FIPS 180-4, §5.3.3). `sha2` does not
/// export it.
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// One compression of `block` into `state`.
#[inline]
pub(super) fn compress(state: &mut [u32; 8], block: &[u8; BLOCK]) {
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

/// A SHA-256 state after `absorbed` bytes (a multiple of [`BLOCK`]),
/// finished over `msg`: the digest, big-endian, into `out`. The padding
/// blocks built on the stack are wiped before returning.
pub(super) fn finish(mut state: [u32; 8], absorbed: u64, msg: &[u8], out: &mut [u8; 32]) {
    let mut blocks = msg.chunks_exact(BLOCK);
    for b in &mut blocks {
        compress(
            &mut state,
            b.try_into().expect("chunks_exact gives whole blocks"),
        );
    }
    let tail = blocks.remainder();
    let bits = (absorbed + msg.len() as u64) * 8;
    let mut last = [[0u8; BLOCK]; 2];
    let flat = last.as_flattened_mut();
    flat[..tail.len()].copy_from_slice(tail);
    flat[tail.len()] = 0x80;
    let n = if tail.len() < BLOCK - 8 { 1 } else { 2 };
    flat[n * BLOCK - 8..n * BLOCK].copy_from_slice(&bits.to_be_bytes());
    for b in &last[..n] {
        compress(&mut state, b);
    }
    last.zeroize();
    digest_into(&state, out);
    state.zeroize();
}

/// A SHA-256 state as its 32-byte digest (big-endian words) into `out`.
#[inline]
fn digest_into(state: &[u32; 8], out: &mut [u8]) {
    for (o, w) in out.chunks_exact_mut(4).zip(state.iter()) {
        o.copy_from_slice(&w.to_be_bytes());
    }
}

/// One HMAC-SHA-256 key as its inner and outer midstates. Key-equivalent:
/// zeroized on drop, not `Clone`, never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct KeyedMac {
    pub(super) inner: [u32; 8],
    pub(super) outer: [u32; 8],
}

impl std::fmt::Debug for KeyedMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedMac { … }")
    }
}

impl KeyedMac {
    /// Absorbs a key of any length (RFC 2104: a key longer than a block is
    /// hashed first).
    pub fn new(key: &[u8]) -> Self {
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            let mut h = [0u8; 32];
            finish(IV, 0, key, &mut h);
            k[..32].copy_from_slice(&h);
            h.zeroize();
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut pad = [0u8; BLOCK];
        let mut state = |byte: u8| {
            for (p, b) in pad.iter_mut().zip(k.iter()) {
                *p = b ^ byte;
            }
            let mut s = IV;
            compress(&mut s, &pad);
            s
        };
        let mac = Self {
            inner: state(0x36),
            outer: state(0x5c),
        };
        pad.zeroize();
        k.zeroize();
        mac
    }

    /// `HMAC-SHA-256(key, msg)` into `out`.
    pub fn mac(&self, msg: &[u8], out: &mut [u8; 32]) {
        if msg.len() <= SHORT {
            return self.mac_short(msg, out);
        }
        let mut inner = [0u8; 32];
        finish(self.inner, BLOCK as u64, msg, &mut inner);
        finish(self.outer, BLOCK as u64, &inner, out);
        inner.zeroize();
    }
}

/// Longest message whose inner hash takes one block (§3's 13-byte bodies
/// and 32-byte codes): 64 bytes less the `0x80` byte and the 8-byte length.
const SHORT: usize = BLOCK - 9;

impl KeyedMac {
    /// [`KeyedMac::mac`] of a message of at most [`SHORT`] bytes: exactly
    /// two compressions through one block buffer, of which only the bytes
    /// that held the message or the inner hash are wiped (the rest is
    /// padding).
    fn mac_short(&self, msg: &[u8], out: &mut [u8; 32]) {
        let n = msg.len();
        let mut block = [0u8; BLOCK];
        block[..n].copy_from_slice(msg);
        block[n] = 0x80;
        block[BLOCK - 8..].copy_from_slice(&((BLOCK + n) as u64 * 8).to_be_bytes());
        let mut state = self.inner;
        compress(&mut state, &block);
        digest_into(&state, &mut block[..32]);
        block[32] = 0x80;
        block[33..BLOCK - 8].fill(0);
        block[BLOCK - 8..].copy_from_slice(&((BLOCK + 32) as u64 * 8).to_be_bytes());
        state = self.outer;
        compress(&mut state, &block);
        digest_into(&state, out);
        block[..32].zeroize();
        state.zeroize();
    }
}

impl KeyedMac {
    /// `HMAC(self, a)` into `oa` and `HMAC(kb, b)` into `ob` for two 13-byte
    /// bodies, interleaved when the CPU allows ([`super::shani`]).
    pub(super) fn mac2_body(
        &self,
        a: &[u8; crate::nir::BODY_LEN],
        oa: &mut [u8; 32],
        kb: &KeyedMac,
        b: &[u8; crate::nir::BODY_LEN],
        ob: &mut [u8; 32],
    ) {
        if !super::shani::hmac2_body(self, kb, a, b, oa, ob) {
            self.mac_short(a, oa);
            kb.mac_short(b, ob);
        }
    }

    /// The same for two 32-byte codes, each replaced by its HMAC (a
    /// renewal step, done in place).
    pub(super) fn mac2_code_in_place(&self, a: &mut [u8; 32], kb: &KeyedMac, b: &mut [u8; 32]) {
        if !super::shani::hmac2_code_in_place(self, kb, a, b) {
            self.mac_code_in_place(a);
            kb.mac_code_in_place(b);
        }
    }

    /// Four 32-byte codes, each replaced by its HMAC under this key (a
    /// renewal step for four codes of the same generation, in place).
    pub(super) fn mac4_code_in_place(&self, codes: [&mut [u8; 32]; 4]) {
        let [a, b, c, d] = codes;
        if !super::shani::hmac4_code_in_place(self, [&mut *a, &mut *b, &mut *c, &mut *d]) {
            for code in [a, b, c, d] {
                self.mac_code_in_place(code);
            }
        }
    }

    /// One code replaced by its HMAC (without SHA-NI, or alone).
    pub(super) fn mac_code_in_place(&self, code: &mut [u8; 32]) {
        let mut out = [0u8; 32];
        self.mac_short(code, &mut out);
        code.copy_from_slice(&out);
        out.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hmac::Mac;
    use rand::{Rng, RngCore, SeedableRng};

    fn reference(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut m = <::hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any length");
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    #[test]
    fn agrees_with_the_hmac_crate_on_random_keys_and_messages_of_every_length() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_c0de);
        for case in 0..20_000 {
            let klen = if case % 97 == 0 {
                rng.gen_range(65..200)
            } else {
                rng.gen_range(0..=64)
            };
            // Every length across the 1- and 2-block tails, and §3's two
            // (13 and 32 bytes) often, for the two-lane paths.
            let mlen = match case % 7 {
                0 => crate::nir::BODY_LEN,
                1 => 32,
                _ => case % 300,
            };
            let mut key = vec![0u8; klen];
            let mut msg = vec![0u8; mlen];
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut msg);
            let mut got = [0u8; 32];
            let keyed = KeyedMac::new(&key);
            keyed.mac(&msg, &mut got);
            let want = reference(&key, &msg);
            assert_eq!(got, want, "key {klen} bytes, message {mlen} bytes");
            // The two-lane paths, beside another key and message.
            let other = KeyedMac::new(&msg);
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            if mlen == crate::nir::BODY_LEN || mlen == 32 {
                let mut m2 = msg.clone();
                m2.reverse();
                if mlen == 32 {
                    a.copy_from_slice(&msg);
                    b.copy_from_slice(&m2);
                    keyed.mac2_code_in_place(&mut a, &other, &mut b);
                    // And the path without SHA-NI, whatever this CPU has.
                    let mut pa: [u8; 32] = msg[..].try_into().unwrap();
                    let mut pb: [u8; 32] = m2[..].try_into().unwrap();
                    keyed.mac_code_in_place(&mut pa);
                    other.mac_code_in_place(&mut pb);
                    assert_eq!((pa, pb), (a, b), "without SHA-NI");
                    // The four-lane step under this key, on the message,
                    // its reverse and two rotations of it.
                    let mut four = [[0u8; 32]; 4];
                    for (i, code) in four.iter_mut().enumerate() {
                        code.copy_from_slice(if i == 1 { &m2 } else { &msg });
                        code.rotate_left(i);
                    }
                    let mut one_by_one = four;
                    let [w, x, y, z] = &mut four;
                    keyed.mac4_code_in_place([w, x, y, z]);
                    for code in &mut one_by_one {
                        keyed.mac_code_in_place(code);
                    }
                    assert_eq!(four, one_by_one, "four lanes");
                    assert_eq!(four[0], want, "four lanes, lane a");
                } else {
                    keyed.mac2_body(
                        msg[..].try_into().unwrap(),
                        &mut a,
                        &other,
                        m2[..].try_into().unwrap(),
                        &mut b,
                    );
                }
                assert_eq!(a, want, "two lanes, lane a");
                assert_eq!(b, reference(&msg, &m2), "lane b");
            }
        }
    }
}

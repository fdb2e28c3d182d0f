//! SHA-256 compressions interleaved in the x86 SHA extensions (SHA-NI):
//! four at a time, or two.
//!
//! `sha256rnds2` is bound by its latency, not by its throughput: one
//! message's rounds depend on each other, so a single stream leaves the unit
//! idle most of the time. Independent messages issued round for round fill
//! it. Measured on the project's AMD Zen 4 (`examples/kernel_ratio`, chained
//! streams): two lanes give 1.80 times the compressions a second of one,
//! three up to 2.03 times, four up to 2.09 times, though past two the
//! registers no longer hold every lane and spill. So whole slices go four
//! by four, and what is left two by two (renewals: four by four where four
//! codes in a row share their generation).
//!
//! Written by hand because no crate offers a multi-message SHA-256: `sha2`
//! compresses one stream (its blocks chained). The layout follows Intel's
//! published SHA-NI description (state in ABEF/CDGH order, the message
//! schedule as `msg1`, `alignr`, `msg2`); the tests check it against
//! `sha2::compress256` on random states and blocks. Every `unsafe` of the
//! crate's hashing is in this module.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::hmac::{KeyedMac, BLOCK};
use crate::nir::BODY_LEN;

/// Whether this CPU has the instructions this module's kernels need
/// (checked once).
pub(super) fn available() -> bool {
    #[cfg(test)]
    if PORTABLE.get() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("sha")
                && is_x86_feature_detected!("sse2")
                && is_x86_feature_detected!("ssse3")
                && is_x86_feature_detected!("sse4.1")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(test)]
thread_local! {
    /// Set by a test to run the portable path on this thread, whatever the
    /// CPU has.
    pub(super) static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One compression of `a` into `sa` and one of `b` into `sb`, interleaved
/// (two single compressions where SHA-NI is missing): the tests' view of
/// the interleaved rounds, which the HMAC paths below use on registers.
#[cfg(test)]
fn compress2(sa: &mut [u32; 8], sb: &mut [u32; 8], a: &[u8; BLOCK], b: &[u8; BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: `available()` checked that the CPU has every instruction
        // set `compress2_ni` is compiled for; its pointers come from
        // references to arrays of the right sizes (unaligned loads/stores).
        unsafe { compress2_ni(sa, sb, a, b) };
        return;
    }
    super::hmac::compress(sa, a);
    super::hmac::compress(sb, b);
}

/// SHA-256 round constants (FIPS 180-4, §4.2.2).
#[cfg(target_arch = "x86_64")]
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// A state as the two registers the instructions work on (ABEF, CDGH).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn load_state(s: &[u32; 8]) -> (__m128i, __m128i) {
    // SAFETY (for the loads): `s` is 8 u32s; `loadu` takes any alignment.
    let abcd = unsafe { _mm_loadu_si128(s.as_ptr().cast()) };
    let efgh = unsafe { _mm_loadu_si128(s.as_ptr().add(4).cast()) };
    let cdab = _mm_shuffle_epi32(abcd, 0xB1);
    let hgfe = _mm_shuffle_epi32(efgh, 0x1B);
    (
        _mm_alignr_epi8(cdab, hgfe, 8),
        _mm_blend_epi16(hgfe, cdab, 0xF0),
    )
}

/// The registers back as a state.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn store_state(abef: __m128i, cdgh: __m128i, s: &mut [u32; 8]) {
    let feba = _mm_shuffle_epi32(abef, 0x1B);
    let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    let abcd = _mm_blend_epi16(feba, dchg, 0xF0);
    let efgh = _mm_alignr_epi8(dchg, feba, 8);
    // SAFETY: `s` is 8 u32s; `storeu` takes any alignment.
    unsafe {
        _mm_storeu_si128(s.as_mut_ptr().cast(), abcd);
        _mm_storeu_si128(s.as_mut_ptr().add(4).cast(), efgh);
    }
}

/// The 16 message words of a block, big-endian, as 4 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn load_block(b: &[u8; BLOCK]) -> [__m128i; 4] {
    let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
    // SAFETY: `b` is 64 bytes; each load reads 16 of them, unaligned.
    unsafe {
        [
            _mm_shuffle_epi8(_mm_loadu_si128(b.as_ptr().cast()), swap),
            _mm_shuffle_epi8(_mm_loadu_si128(b.as_ptr().add(16).cast()), swap),
            _mm_shuffle_epi8(_mm_loadu_si128(b.as_ptr().add(32).cast()), swap),
            _mm_shuffle_epi8(_mm_loadu_si128(b.as_ptr().add(48).cast()), swap),
        ]
    }
}

/// Four rounds (group `g`, its 4 message words in `w`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn rounds4(abef: &mut __m128i, cdgh: &mut __m128i, w: __m128i, g: usize) {
    // SAFETY: `g < 16`, so the 4 constants read are within `K`.
    let k = unsafe { _mm_loadu_si128(K.as_ptr().add(4 * g).cast()) };
    let wk = _mm_add_epi32(w, k);
    *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
    *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32(wk, 0x0E));
}

/// The next 4 schedule words, from the 4 groups before them (oldest first).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn schedule(m4: __m128i, m3: __m128i, m2: __m128i, m1: __m128i) -> __m128i {
    let t = _mm_add_epi32(_mm_sha256msg1_epu32(m4, m3), _mm_alignr_epi8(m1, m2, 4));
    _mm_sha256msg2_epu32(t, m1)
}

/// One compression in each of several lanes, the lanes' rounds
/// alternating: each lane waits on its own previous round only, so the
/// unit is never idle while a round is in flight. A lane is `(s0, s1, k0,
/// k1, w)`: its state's two registers (ABEF, CDGH, mutable locals, the
/// result left in them, the feed-forward included), two names for the
/// state saved, and its 16 message words as 4 registers (a mutable local
/// array, consumed). A macro, not a function: a `#[target_feature]`
/// function cannot be forced inline, and passing the registers through
/// memory costs a fifth of the time. Written out in full, every index a
/// constant, so that the schedule words stay in registers while they fit
/// (8 registers a lane, of the 16 the SHA instructions can name). Expands
/// to `unsafe` calls: use inside an `unsafe` block of a function with this
/// module's target features.
#[cfg(target_arch = "x86_64")]
macro_rules! compress_lanes {
    ($(($s0:ident, $s1:ident, $k0:ident, $k1:ident, $w:ident)),+ $(,)?) => {
        $( let ($k0, $k1) = ($s0, $s1); )+
        $( rounds4(&mut $s0, &mut $s1, $w[0], 0); )+
        $( rounds4(&mut $s0, &mut $s1, $w[1], 1); )+
        $( rounds4(&mut $s0, &mut $s1, $w[2], 2); )+
        $( rounds4(&mut $s0, &mut $s1, $w[3], 3); )+
        $( $w[0] = schedule($w[0], $w[1], $w[2], $w[3]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[0], 4); )+
        $( $w[1] = schedule($w[1], $w[2], $w[3], $w[0]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[1], 5); )+
        $( $w[2] = schedule($w[2], $w[3], $w[0], $w[1]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[2], 6); )+
        $( $w[3] = schedule($w[3], $w[0], $w[1], $w[2]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[3], 7); )+
        $( $w[0] = schedule($w[0], $w[1], $w[2], $w[3]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[0], 8); )+
        $( $w[1] = schedule($w[1], $w[2], $w[3], $w[0]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[1], 9); )+
        $( $w[2] = schedule($w[2], $w[3], $w[0], $w[1]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[2], 10); )+
        $( $w[3] = schedule($w[3], $w[0], $w[1], $w[2]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[3], 11); )+
        $( $w[0] = schedule($w[0], $w[1], $w[2], $w[3]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[0], 12); )+
        $( $w[1] = schedule($w[1], $w[2], $w[3], $w[0]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[1], 13); )+
        $( $w[2] = schedule($w[2], $w[3], $w[0], $w[1]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[2], 14); )+
        $( $w[3] = schedule($w[3], $w[0], $w[1], $w[2]); )+
        $( rounds4(&mut $s0, &mut $s1, $w[3], 15); )+
        $( $s0 = _mm_add_epi32($s0, $k0); $s1 = _mm_add_epi32($s1, $k1); )+
    };
}

/// Two compressions on register states (ABEF, CDGH) and message words,
/// the feed-forward included: `((a0, a1), (b0, b1))` ([`compress_lanes!`]
/// with two lanes).
#[cfg(target_arch = "x86_64")]
macro_rules! compress2 {
    ($sa:expr, $sb:expr, $wa:expr, $wb:expr $(,)?) => {{
        let (sa, sb): ((__m128i, __m128i), (__m128i, __m128i)) = ($sa, $sb);
        let ((mut a0, mut a1), (mut b0, mut b1)) = (sa, sb);
        let mut wa: [__m128i; 4] = $wa;
        let mut wb: [__m128i; 4] = $wb;
        compress_lanes!((a0, a1, ka0, ka1, wa), (b0, b1, kb0, kb1, wb));
        ((a0, a1), (b0, b1))
    }};
}

#[cfg(all(test, target_arch = "x86_64"))]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn compress2_ni(sa: &mut [u32; 8], sb: &mut [u32; 8], a: &[u8; BLOCK], b: &[u8; BLOCK]) {
    // SAFETY (every call below): the callee needs the features this
    // function is compiled with, and gets references of the right sizes.
    unsafe {
        let (ra, rb) = compress2!(load_state(sa), load_state(sb), load_block(a), load_block(b));
        store_state(ra.0, ra.1, sa);
        store_state(rb.0, rb.1, sb);
    }
}

/// `rounds` compressions in each of `states.len()` (1 to 4) independent
/// streams, interleaved round for round: how the compressions a second grow
/// with the lanes (`examples/kernel_ratio`; the kernel runs four, and two
/// for what is left).
/// Stream `l` compresses `states[l]` with `blocks[l]` again and again, the
/// block's first word XORed with the compression's number (0, 1, …) so that
/// nothing is computed once for all. False, and nothing done, without
/// SHA-NI.
///
/// # Panics
/// If there are not 1 to 4 states, or not as many blocks.
pub(super) fn lanes(states: &mut [[u32; 8]], blocks: &[[u8; BLOCK]], rounds: u32) -> bool {
    assert!((1..=4).contains(&states.len()) && blocks.len() == states.len());
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: `available()` checked that the CPU has every instruction
        // set these functions are compiled for; each reads as many states
        // and blocks as there are, as just checked.
        unsafe {
            match states.len() {
                1 => lanes1_ni(states, blocks, rounds),
                2 => lanes2_ni(states, blocks, rounds),
                3 => lanes3_ni(states, blocks, rounds),
                _ => lanes4_ni(states, blocks, rounds),
            }
        }
        return true;
    }
    let _ = rounds;
    false
}

/// A function for [`lanes`], with one stream per `(s0, s1, k0, k1, w,
/// index)` ([`compress_lanes!`]'s lanes and the stream's index).
#[cfg(target_arch = "x86_64")]
macro_rules! lanes_ni {
    ($name:ident; $(($s0:ident, $s1:ident, $k0:ident, $k1:ident, $w:ident, $i:literal)),+) => {
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        unsafe fn $name(states: &mut [[u32; 8]], blocks: &[[u8; BLOCK]], rounds: u32) {
            // SAFETY (every call below): the callee needs the features this
            // function is compiled with, and gets references of the right
            // sizes.
            unsafe {
                $( let (mut $s0, mut $s1) = load_state(&states[$i]); )+
                for n in 0..rounds {
                    let number = _mm_set_epi32(0, 0, 0, n as i32);
                    // Read from memory each time, as the kernel reads each
                    // record: kept in registers, the blocks would take 4
                    // more a stream.
                    let blocks = std::hint::black_box(blocks);
                    $(
                        let mut $w = load_block(&blocks[$i]);
                        $w[0] = _mm_xor_si128($w[0], number);
                    )+
                    compress_lanes!($(($s0, $s1, $k0, $k1, $w)),+);
                }
                $( store_state($s0, $s1, &mut states[$i]); )+
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
lanes_ni!(lanes1_ni; (a0, a1, ka0, ka1, wa, 0));
#[cfg(target_arch = "x86_64")]
lanes_ni!(lanes2_ni; (a0, a1, ka0, ka1, wa, 0), (b0, b1, kb0, kb1, wb, 1));
#[cfg(target_arch = "x86_64")]
lanes_ni!(lanes3_ni; (a0, a1, ka0, ka1, wa, 0), (b0, b1, kb0, kb1, wb, 1), (c0, c1, kc0, kc1, wc, 2));
#[cfg(target_arch = "x86_64")]
lanes_ni!(lanes4_ni;
    (a0, a1, ka0, ka1, wa, 0),
    (b0, b1, kb0, kb1, wb, 1),
    (c0, c1, kc0, kc1, wc, 2),
    (d0, d1, kd0, kd1, wd, 3)
);

/// A register state (ABEF, CDGH) as the digest's words in order (A..D,
/// E..H): the first 8 message words of a block that hashes the digest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn digest_words(abef: __m128i, cdgh: __m128i) -> (__m128i, __m128i) {
    let feba = _mm_shuffle_epi32(abef, 0x1B);
    let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    (
        _mm_blend_epi16(feba, dchg, 0xF0),
        _mm_alignr_epi8(dchg, feba, 8),
    )
}

/// The 32-byte digest of a register state into `out` (big-endian words).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn store_digest(state: (__m128i, __m128i), out: &mut [u8; 32]) {
    let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
    // SAFETY: the callee needs this function's features; `out` is 32
    // bytes, written 16 at a time, unaligned.
    unsafe {
        let (abcd, efgh) = digest_words(state.0, state.1);
        _mm_storeu_si128(out.as_mut_ptr().cast(), _mm_shuffle_epi8(abcd, swap));
        _mm_storeu_si128(
            out.as_mut_ptr().add(16).cast(),
            _mm_shuffle_epi8(efgh, swap),
        );
    }
}

/// The message words 8..15 of a block holding 32 bytes of message after
/// one block already absorbed: `0x80`, zeros, the length (768 bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn tail_of_32() -> (__m128i, __m128i) {
    (
        _mm_set_epi32(0, 0, 0, 0x8000_0000_u32 as i32),
        _mm_set_epi32(((BLOCK + 32) * 8) as i32, 0, 0, 0),
    )
}

/// Two HMACs whose inner message words are `wa`, `wb` (one block each),
/// from the keys' midstates, to the two codes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn hmac2_ni(
    ka: &KeyedMac,
    kb: &KeyedMac,
    wa: [__m128i; 4],
    wb: [__m128i; 4],
    oa: &mut [u8; 32],
    ob: &mut [u8; 32],
) {
    // SAFETY (every call below): the callee needs the features this
    // function is compiled with, and gets references of the right sizes.
    unsafe {
        let (ia, ib) = compress2!(load_state(&ka.inner), load_state(&kb.inner), wa, wb);
        let (pad, len) = tail_of_32();
        let (a0, a1) = digest_words(ia.0, ia.1);
        let (b0, b1) = digest_words(ib.0, ib.1);
        let (ra, rb) = compress2!(
            load_state(&ka.outer),
            load_state(&kb.outer),
            [a0, a1, pad, len],
            [b0, b1, pad, len],
        );
        store_digest(ra, oa);
        store_digest(rb, ob);
    }
}

/// Four HMACs under one key `$k`, whose inner message words are `$w` (one
/// block each, `[[__m128i; 4]; 4]`), from the key's midstates, to the four
/// codes `$out` (`[&mut [u8; 32]; 4]`): four lanes fill the unit better
/// than two (`examples/kernel_ratio`), the registers spilled
/// notwithstanding. A macro, so that the words stay in registers from
/// where they are read (as a function it was not inlined into both its
/// callers, and the words went through memory: 4 % of the time). The
/// inner and the outer compressions are written out alike: with the four
/// states returned as an array by a shared macro and stored in a loop, the
/// kernel ran a fifth slower. Expands to `unsafe` calls, as
/// [`compress_lanes!`].
#[cfg(target_arch = "x86_64")]
macro_rules! hmac4 {
    ($k:expr, $w:expr, $out:expr $(,)?) => {{
        let k: &KeyedMac = $k;
        let [mut wa, mut wb, mut wc, mut wd]: [[__m128i; 4]; 4] = $w;
        let (mut a0, mut a1) = load_state(&k.inner);
        let (mut b0, mut b1, mut c0, mut c1, mut d0, mut d1) = (a0, a1, a0, a1, a0, a1);
        compress_lanes!(
            (a0, a1, ka0, ka1, wa),
            (b0, b1, kb0, kb1, wb),
            (c0, c1, kc0, kc1, wc),
            (d0, d1, kd0, kd1, wd),
        );
        let (pad, len) = tail_of_32();
        let (x0, x1) = digest_words(a0, a1);
        let mut wa = [x0, x1, pad, len];
        let (x0, x1) = digest_words(b0, b1);
        let mut wb = [x0, x1, pad, len];
        let (x0, x1) = digest_words(c0, c1);
        let mut wc = [x0, x1, pad, len];
        let (x0, x1) = digest_words(d0, d1);
        let mut wd = [x0, x1, pad, len];
        let (mut a0, mut a1) = load_state(&k.outer);
        let (mut b0, mut b1, mut c0, mut c1, mut d0, mut d1) = (a0, a1, a0, a1, a0, a1);
        compress_lanes!(
            (a0, a1, ka0, ka1, wa),
            (b0, b1, kb0, kb1, wb),
            (c0, c1, kc0, kc1, wc),
            (d0, d1, kd0, kd1, wd),
        );
        let [oa, ob, oc, od]: [&mut [u8; 32]; 4] = $out;
        store_digest((a0, a1), oa);
        store_digest((b0, b1), ob);
        store_digest((c0, c1), oc);
        store_digest((d0, d1), od);
    }};
}

/// `HMAC(ka, body_a)` and `HMAC(kb, body_b)` of two 13-byte bodies,
/// interleaved; false (nothing written) without SHA-NI.
pub(super) fn hmac2_body(
    ka: &KeyedMac,
    kb: &KeyedMac,
    body_a: &[u8; BODY_LEN],
    body_b: &[u8; BODY_LEN],
    oa: &mut [u8; 32],
    ob: &mut [u8; 32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // The body, `0x80`, two zeros: message words 0..3, in one 16-byte
        // buffer each, wiped after.
        let mut blocks = [Words([0u8; 16]), Words([0u8; 16])];
        for (b, body) in blocks.iter_mut().zip([body_a, body_b]) {
            b.0[..BODY_LEN].copy_from_slice(body);
            b.0[BODY_LEN] = 0x80;
        }
        // SAFETY: `available()` checked the CPU's instruction sets.
        unsafe { hmac2_body_ni(ka, kb, &blocks, oa, ob) };
        for b in &mut blocks {
            b.wipe();
        }
        return true;
    }
    false
}

// The body, `0x80` and the length's place fit the first 16 bytes of the
// block, as `hmac2_body` lays them out (and the 616-bit length assumes it).
const _: () = assert!(BODY_LEN == 13);

/// 16 bytes aligned as a `u128`, so that wiping them is one write.
#[repr(C, align(16))]
struct Words([u8; 16]);

impl Words {
    fn wipe(&mut self) {
        // SAFETY: `Words` is 16 bytes aligned to 16, a valid `u128` place;
        // a volatile write is not optimised away.
        unsafe { std::ptr::write_volatile(self.0.as_mut_ptr().cast::<u128>(), 0) };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn hmac2_body_ni(
    ka: &KeyedMac,
    kb: &KeyedMac,
    blocks: &[Words; 2],
    oa: &mut [u8; 32],
    ob: &mut [u8; 32],
) {
    let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
    let zero = _mm_setzero_si128();
    let len = _mm_set_epi32(((BLOCK + BODY_LEN) * 8) as i32, 0, 0, 0);
    // SAFETY: each load reads one 16-byte buffer; `hmac2_ni` needs this
    // function's features.
    unsafe {
        let wa = _mm_shuffle_epi8(_mm_load_si128(blocks[0].0.as_ptr().cast()), swap);
        let wb = _mm_shuffle_epi8(_mm_load_si128(blocks[1].0.as_ptr().cast()), swap);
        hmac2_ni(ka, kb, [wa, zero, zero, len], [wb, zero, zero, len], oa, ob);
    }
}

/// `HMAC(k, body)` of every body into `out` (same length), four at a time
/// interleaved (then a pair), each body read straight from the slice (16 bytes, the 3
/// of the next body masked off; the last one through a wiped buffer)
/// rather than copied out first. Returns how many were done: all but an odd
/// last one, or none without SHA-NI.
pub(super) fn hmac_bodies(
    k: &KeyedMac,
    bodies: &[[u8; BODY_LEN]],
    out: &mut [super::Code],
) -> usize {
    assert_eq!(bodies.len(), out.len(), "one code per body");
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: `available()` checked the CPU's instruction sets; the
        // slices are as long as each other.
        return unsafe { hmac_bodies_ni(k, bodies, out) };
    }
    0
}

/// Body `j` of `bodies` as message words 0..3 (the body, `0x80`, zeros).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn body_words(bodies: &[[u8; BODY_LEN]], j: usize) -> __m128i {
    let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
    let words = if (j + 1) * BODY_LEN + 3 <= std::mem::size_of_val(bodies) {
        // SAFETY: the 16 bytes from body `j` on are within the slice (the
        // condition above); `loadu` takes any alignment.
        let raw = unsafe { _mm_loadu_si128(bodies.as_ptr().add(j).cast()) };
        // Bytes 0..=12 kept (arguments go from byte 15 down to byte 0).
        let keep = _mm_set_epi8(0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
        let pad = _mm_set_epi8(0, 0, 0x80_u8 as i8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        _mm_or_si128(_mm_and_si128(raw, keep), pad)
    } else {
        let mut b = Words([0u8; 16]);
        b.0[..BODY_LEN].copy_from_slice(&bodies[j]);
        b.0[BODY_LEN] = 0x80;
        // SAFETY: one aligned 16-byte buffer.
        let w = unsafe { _mm_load_si128(b.0.as_ptr().cast()) };
        b.wipe();
        w
    };
    _mm_shuffle_epi8(words, swap)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn hmac_bodies_ni(
    k: &KeyedMac,
    bodies: &[[u8; BODY_LEN]],
    out: &mut [super::Code],
) -> usize {
    let zero = _mm_setzero_si128();
    let len = _mm_set_epi32(((BLOCK + BODY_LEN) * 8) as i32, 0, 0, 0);
    // SAFETY (every call below): the callees need this function's
    // features and get references of the right sizes; every body index is
    // below the slice's length: `4 * j + 3 < fours` and `fours + 1 < done`.
    unsafe {
        let fours = bodies.len() & !3;
        for (j, four) in out[..fours].chunks_exact_mut(4).enumerate() {
            let [x, y, z, t] = four else {
                unreachable!("chunks of four")
            };
            hmac4!(
                k,
                [
                    [body_words(bodies, 4 * j), zero, zero, len],
                    [body_words(bodies, 4 * j + 1), zero, zero, len],
                    [body_words(bodies, 4 * j + 2), zero, zero, len],
                    [body_words(bodies, 4 * j + 3), zero, zero, len],
                ],
                [&mut x.0, &mut y.0, &mut z.0, &mut t.0],
            );
        }
        let done = bodies.len() & !1;
        if done > fours {
            let (x, y) = out[fours..done].split_at_mut(1);
            hmac2_ni(
                k,
                k,
                [body_words(bodies, fours), zero, zero, len],
                [body_words(bodies, fours + 1), zero, zero, len],
                &mut x[0].0,
                &mut y[0].0,
            );
        }
        done
    }
}

/// `HMAC(ka, code_a)` and `HMAC(kb, code_b)` of two 32-byte codes,
/// interleaved, each written over its code (a renewal step: no temporary per
/// code to copy back and wipe); false (nothing written) without SHA-NI. The
/// codes' message words pass through the stack on the call to `hmac2_ni`,
/// as every lane's do: `scrub_stack`, after each chunk, zeroes them.
pub(super) fn hmac2_code_in_place(
    ka: &KeyedMac,
    kb: &KeyedMac,
    code_a: &mut [u8; 32],
    code_b: &mut [u8; 32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: `available()` checked the CPU's instruction sets.
        unsafe { hmac2_code_in_place_ni(ka, kb, code_a, code_b) };
        return true;
    }
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn hmac2_code_in_place_ni(
    ka: &KeyedMac,
    kb: &KeyedMac,
    code_a: &mut [u8; 32],
    code_b: &mut [u8; 32],
) {
    // Both codes are read (the borrows end) before `hmac2_ni` writes the
    // results over them.
    // SAFETY: the callees need this function's features.
    unsafe {
        let (wa, wb) = (code_words(code_a), code_words(code_b));
        hmac2_ni(ka, kb, wa, wb, code_a, code_b);
    }
}

/// `HMAC(k, code)` of four 32-byte codes, interleaved, each written over its
/// code (a renewal step under one key); false (nothing written) without
/// SHA-NI. The codes' message words spill to the stack (four lanes do not
/// fit in the registers): `scrub_stack`, after each chunk, zeroes them.
pub(super) fn hmac4_code_in_place(k: &KeyedMac, codes: [&mut [u8; 32]; 4]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: `available()` checked the CPU's instruction sets.
        unsafe { hmac4_code_in_place_ni(k, codes) };
        return true;
    }
    let _ = (k, codes);
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn hmac4_code_in_place_ni(k: &KeyedMac, codes: [&mut [u8; 32]; 4]) {
    // Every code is read (the words are values) before `hmac4!` writes
    // the results over them.
    // SAFETY: the callees need this function's features.
    unsafe {
        let w = [
            code_words(codes[0]),
            code_words(codes[1]),
            code_words(codes[2]),
            code_words(codes[3]),
        ];
        hmac4!(k, w, codes);
    }
}

/// A 32-byte code as the inner block's message words (the code, `0x80`,
/// zeros, the length).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn code_words(code: &[u8; 32]) -> [__m128i; 4] {
    let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
    // SAFETY: each load reads 16 of the code's 32 bytes, unaligned; the
    // callee needs this function's features.
    unsafe {
        let w0 = _mm_shuffle_epi8(_mm_loadu_si128(code.as_ptr().cast()), swap);
        let w1 = _mm_shuffle_epi8(_mm_loadu_si128(code.as_ptr().add(16).cast()), swap);
        let (pad, len) = tail_of_32();
        [w0, w1, pad, len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn the_slice_kernel_gives_every_body_its_hmac() {
        use hmac::Mac;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5_11ce);
        for n in [0usize, 1, 2, 3, 4, 5, 6, 7, 16, 17, 1001, 1002, 1003] {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let k = KeyedMac::new(&key);
            let bodies: Vec<[u8; BODY_LEN]> = (0..n)
                .map(|_| {
                    let mut b = [0u8; BODY_LEN];
                    rng.fill_bytes(&mut b);
                    b
                })
                .collect();
            let mut out = vec![super::super::Code::default(); n];
            let done = hmac_bodies(&k, &bodies, &mut out);
            if !available() {
                assert_eq!(done, 0);
                continue;
            }
            assert_eq!(done, n & !1);
            for (b, o) in bodies.iter().zip(&out).take(done) {
                let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
                m.update(b);
                assert_eq!(&m.finalize().into_bytes()[..], &o.0[..]);
            }
        }
    }

    /// [`lanes`] for `N` streams against one compression at a time.
    fn lanes_agree<const N: usize>(rng: &mut rand::rngs::StdRng) {
        let mut states = [[0u32; 8]; N];
        let mut blocks = [[0u8; BLOCK]; N];
        for (s, b) in states.iter_mut().zip(blocks.iter_mut()) {
            s.iter_mut().for_each(|w| *w = rng.next_u32());
            rng.fill_bytes(b);
        }
        let rounds = 1 + rng.next_u32() % 5;
        let mut expected = states;
        for (s, b) in expected.iter_mut().zip(&blocks) {
            for i in 0..rounds {
                let mut block = *b;
                let first = u32::from_be_bytes(block[..4].try_into().unwrap()) ^ i;
                block[..4].copy_from_slice(&first.to_be_bytes());
                super::super::hmac::compress(s, &block);
            }
        }
        if lanes(&mut states, &blocks, rounds) {
            assert_eq!(states, expected, "{N} lanes, {rounds} rounds");
        } else {
            assert!(!available());
        }
    }

    #[test]
    fn one_to_four_lanes_are_as_many_streams_of_compressions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x1a_e5);
        for _ in 0..2_000 {
            lanes_agree::<1>(&mut rng);
            lanes_agree::<2>(&mut rng);
            lanes_agree::<3>(&mut rng);
            lanes_agree::<4>(&mut rng);
        }
    }

    #[test]
    fn four_codes_in_place_are_four_hmacs() {
        use hmac::Mac;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x4c0de);
        for _ in 0..1_000 {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let k = KeyedMac::new(&key);
            let mut codes = [[0u8; 32]; 4];
            codes.iter_mut().for_each(|c| rng.fill_bytes(c));
            let want = codes.map(|c| {
                let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
                m.update(&c);
                <[u8; 32]>::from(m.finalize().into_bytes())
            });
            let before = codes;
            let [a, b, c, d] = &mut codes;
            let done = hmac4_code_in_place(&k, [a, b, c, d]);
            assert_eq!(done, available());
            assert_eq!(codes, if done { want } else { before });
        }
    }

    #[test]
    fn two_interleaved_compressions_are_two_compressions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x2_1a_e5);
        for _ in 0..200_000 {
            let mut sa = [0u32; 8];
            let mut sb = [0u32; 8];
            sa.iter_mut()
                .chain(sb.iter_mut())
                .for_each(|w| *w = rng.next_u32());
            let mut a = [0u8; BLOCK];
            let mut b = [0u8; BLOCK];
            rng.fill_bytes(&mut a);
            rng.fill_bytes(&mut b);
            let (mut ra, mut rb) = (sa, sb);
            super::super::hmac::compress(&mut ra, &a);
            super::super::hmac::compress(&mut rb, &b);
            compress2(&mut sa, &mut sb, &a, &b);
            assert_eq!((sa, sb), (ra, rb));
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sha") {
            assert!(available(), "the SHA-NI path is the one tested here");
        }
    }
}

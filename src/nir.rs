//! The NIR: canonical form and validation (DESIGN §2, a contract).
//!
//! 1. ASCII spaces are removed and ASCII letters upper-cased.
//! 2. Any character left that is not `0`–`9`, `A` or `B` (non-ASCII included)
//!    is [`NirError::InvalidCharacter`].
//! 3. The length must be 13 (body) or 15 (body and 2-digit key), else
//!    [`NirError::InvalidLength`].
//! 4. `A` or `B` anywhere but as `2A`/`2B` in positions 6–7 is
//!    [`NirError::InvalidCharacter`].
//! 5. With a key: `N` is the body read as a number after replacing `2A` by `19`
//!    and `2B` by `18` (positions 6–7 only); the key must be `97 − (N mod 97)`,
//!    else [`NirError::InvalidKey`].
//! 6. The canonical bytes are the 13 body characters in ASCII (`2A`/`2B` kept).
//!
//! The checks run in that order, so the first rule broken names the error.
//! Nothing here allocates: validation runs once per record on the hot path.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a NIR body.
pub const BODY_LEN: usize = 13;
/// Length of a NIR with its key.
pub const FULL_LEN: usize = 15;

/// A valid NIR, held as its canonical 13-byte body. Personal data: no `Debug`
/// of its content, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Nir {
    body: [u8; BODY_LEN],
}

impl std::fmt::Debug for Nir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nir { … }")
    }
}

/// Why a NIR was refused. The stable codes of [`NirError::code`] are part of
/// the wire contract (§4); the messages never carry the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum NirError {
    /// A character other than digits, `A`/`B` (and spaces), or `A`/`B` outside
    /// positions 6–7 as `2A`/`2B`.
    #[error("invalid_character")]
    InvalidCharacter,
    /// Not 13 or 15 characters once spaces are removed.
    #[error("invalid_length")]
    InvalidLength,
    /// The 2-digit key does not match the body.
    #[error("invalid_key")]
    InvalidKey,
}

impl NirError {
    /// The stable status code of §4.
    pub fn code(self) -> &'static str {
        match self {
            NirError::InvalidCharacter => "invalid_character",
            NirError::InvalidLength => "invalid_length",
            NirError::InvalidKey => "invalid_key",
        }
    }
}

impl Nir {
    /// Validates raw input (any bytes) per §2.
    pub fn parse(raw: &[u8]) -> Result<Self, NirError> {
        let mut buf = [0u8; FULL_LEN];
        let len = canonical_chars(raw, &mut buf)?;
        let result = check(&buf, len);
        let out = result.map(|()| {
            let mut body = [0u8; BODY_LEN];
            body.copy_from_slice(&buf[..BODY_LEN]);
            Nir { body }
        });
        buf.zeroize();
        out
    }

    /// The canonical body bytes (13 ASCII characters).
    pub fn body(&self) -> &[u8; BODY_LEN] {
        &self.body
    }

    /// The body and its computed 2-digit key: the 15-character form.
    pub fn with_key(&self) -> [u8; FULL_LEN] {
        let key = key_of(&self.body);
        let mut out = [0u8; FULL_LEN];
        out[..BODY_LEN].copy_from_slice(&self.body);
        out[BODY_LEN] = b'0' + (key / 10) as u8;
        out[BODY_LEN + 1] = b'0' + (key % 10) as u8;
        out
    }
}

/// Validates raw input and writes its canonical body into `out` without
/// building a [`Nir`]: the hot path of a batch.
pub fn parse_into(raw: &[u8], out: &mut [u8; BODY_LEN]) -> Result<(), NirError> {
    if let Some(result) = parse_digits(raw, out) {
        return result;
    }
    let mut buf = [0u8; FULL_LEN];
    let len = canonical_chars(raw, &mut buf)?;
    let result = check(&buf, len);
    if result.is_ok() {
        out.copy_from_slice(&buf[..BODY_LEN]);
    }
    buf.as_mut_slice().zeroize();
    result
}

/// The form nearly every batch line has, 13 or 15 ASCII digits, read without
/// the per-character branches of the general rules: rules 1–4 hold at once
/// (no space, no letter, a valid length), so only the key is left. `None` for
/// any other input, which the general path reads. The tests compare both
/// paths on every kind of input.
fn parse_digits(raw: &[u8], out: &mut [u8; BODY_LEN]) -> Option<Result<(), NirError>> {
    let (body, key) = match raw.len() {
        FULL_LEN => raw.split_at(BODY_LEN),
        BODY_LEN => (raw, &[][..]),
        _ => return None,
    };
    // The first eight characters and the last eight cover all 13 or 15.
    let (Ok(first), Ok(last)) = (
        <[u8; 8]>::try_from(&raw[..8]),
        <[u8; 8]>::try_from(&raw[raw.len() - 8..]),
    ) else {
        return None;
    };
    if !(all_digits(first) && all_digits(last)) {
        return None;
    }
    if let [tens, units] = key {
        // The body's 13 digits: its first eight, then the last five of the
        // eight that end it.
        let Ok(end) = <[u8; 8]>::try_from(&body[BODY_LEN - 8..]) else {
            return None;
        };
        let n = eight_digits(first) * 100_000 + eight_digits(end) % 100_000;
        if written_key(*tens, *units) != key_for(n) {
            return Some(Err(NirError::InvalidKey));
        }
    }
    out.copy_from_slice(body);
    Some(Ok(()))
}

/// Whether eight bytes are all ASCII digits, at once, as one word: each
/// byte's high half is 3, and stays 3 once 6 is added to it (`0x3A`–`0x3F`
/// would carry). No byte carries into the next: each is at most `0x3F` when
/// the first test holds.
fn all_digits(b: [u8; 8]) -> bool {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    let x = u64::from_le_bytes(b);
    x & HIGH == THREES && x.wrapping_add(0x0606_0606_0606_0606) & HIGH == THREES
}

/// Eight ASCII digits, the first the most significant, read as one number
/// in three multiplications (pairs, then fours, then the eight) instead of
/// eight dependent ones. The caller has checked they are digits; no lane
/// overflows into the next (99, 9,999 and 99,999,999 at most).
fn eight_digits(b: [u8; 8]) -> u64 {
    let v = u64::from_le_bytes(b) - 0x3030_3030_3030_3030;
    let v = (v * 10 + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v * 100 + (v >> 16)) & 0x0000_ffff_0000_ffff;
    (v * 10_000 + (v >> 32)) & 0xffff_ffff
}

/// True when `raw` passes §2 as a 13- or 15-character NIR (used to refuse an
/// index shaped like a NIR).
pub fn looks_like_nir(raw: &[u8]) -> bool {
    let mut buf = [0u8; FULL_LEN];
    let ok = canonical_chars(raw, &mut buf)
        .and_then(|len| check(&buf, len))
        .is_ok();
    buf.as_mut_slice().zeroize();
    ok
}

/// Rules 1–3: strips spaces, upper-cases, refuses foreign characters (over the
/// whole input, before the length rule), and copies at most 15 characters.
fn canonical_chars(raw: &[u8], buf: &mut [u8; FULL_LEN]) -> Result<usize, NirError> {
    let mut len = 0usize;
    for &b in raw {
        if b == b' ' {
            continue;
        }
        let c = b.to_ascii_uppercase();
        if !(c.is_ascii_digit() || c == b'A' || c == b'B') {
            return Err(NirError::InvalidCharacter);
        }
        if len < FULL_LEN {
            buf[len] = c;
        }
        len += 1;
    }
    if len != BODY_LEN && len != FULL_LEN {
        return Err(NirError::InvalidLength);
    }
    Ok(len)
}

/// Rules 4–5 on canonical characters of a valid length.
fn check(buf: &[u8; FULL_LEN], len: usize) -> Result<(), NirError> {
    for (i, &c) in buf[..len].iter().enumerate() {
        if (c == b'A' || c == b'B') && !(i == 6 && buf[5] == b'2') {
            return Err(NirError::InvalidCharacter);
        }
    }
    if len == FULL_LEN {
        let mut body = [0u8; BODY_LEN];
        body.copy_from_slice(&buf[..BODY_LEN]);
        let expected = key_of(&body);
        body.as_mut_slice().zeroize();
        if written_key(buf[13], buf[14]) != expected {
            return Err(NirError::InvalidKey);
        }
    }
    Ok(())
}

/// `97 − (N mod 97)`, `N` the body with `2A`→`19`, `2B`→`18` at positions 6–7.
/// The body must already have passed rules 1–4.
fn key_of(body: &[u8; BODY_LEN]) -> u32 {
    let mut n: u64 = 0;
    for (i, &c) in body.iter().enumerate() {
        let d = match (i, c) {
            (5, b'2') if body[6] == b'A' => 1,
            (6, b'A') => 9,
            (5, b'2') if body[6] == b'B' => 1,
            (6, b'B') => 8,
            _ => u64::from(c - b'0'),
        };
        n = n * 10 + d;
    }
    key_for(n)
}

/// Rule 5's key of the body's number `N`: `97 − (N mod 97)`.
fn key_for(n: u64) -> u32 {
    97 - (n % 97) as u32
}

/// The key as written in a 15-character NIR: two ASCII digits.
fn written_key(tens: u8, units: u8) -> u32 {
    u32::from(tens - b'0') * 10 + u32::from(units - b'0')
}

/// Builds a valid synthetic NIR from a counter, for tests, benches and the demo.
/// Plausible, so that the guard's sweep detector ([`crate::sweep`]) takes a
/// batch of them for a population: the sex digit cycles over 1/2, the year
/// over 00–99, the place over INSEE's communes, the order number over
/// 001–005. Not a real person's number on purpose: the birth month cycles
/// over 20–42 (the codes of births whose month is unknown or unregistered),
/// which real numbers seldom carry. Distinct for seeds up to about 850
/// million.
pub fn synthetic(seed: u64) -> Nir {
    let places = crate::sweep::Places::get();
    let n = places.communes() as u64;
    let sex = 1 + (seed % 2);
    let year = (seed / 2) % 100;
    let month = 20 + (seed / 200) % 23;
    let place = places.commune(((seed / 4600) % n) as usize);
    let order = 1 + (seed / (4600 * n)) % 5;
    // sex(1) year(2) month(2) place(5) order(3), written without
    // allocating: the demo makes millions of them.
    let mut body = [b'0'; BODY_LEN];
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            body[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 1, sex);
    put(1, 2, year);
    put(3, 2, month);
    put(10, 3, order);
    body[5..10].copy_from_slice(&place);
    Nir { body }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules 1–5 without the digits-only fast path.
    fn by_the_rules(raw: &[u8]) -> Result<Vec<u8>, NirError> {
        let mut buf = [0u8; FULL_LEN];
        let len = canonical_chars(raw, &mut buf)?;
        check(&buf, len).map(|()| buf[..BODY_LEN].to_vec())
    }

    #[test]
    fn the_digits_fast_path_agrees_with_the_rules() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut kinds = [0usize; 5];
        for _ in 0..300_000 {
            let len = rng.gen_range(11..=17);
            let noisy = rng.gen_bool(0.3);
            let mut raw: Vec<u8> = (0..len)
                .map(|_| match rng.gen_range(0..if noisy { 60 } else { 10 }) {
                    d @ 0..10 => b'0' + d as u8,
                    10 => b' ',
                    11 => b'A',
                    12 => b'b',
                    13 => b'x',
                    // Next to the digits, and past ASCII: the word-at-a-time
                    // check must refuse them too.
                    14 => b':',
                    15 => b'/',
                    16 => b'?',
                    17 => 0xB0,
                    _ => b'0' + rng.gen_range(0..10u8),
                })
                .collect();
            if len == FULL_LEN && rng.gen_bool(0.5) && raw.iter().all(u8::is_ascii_digit) {
                let key = key_of(raw[..BODY_LEN].try_into().unwrap());
                raw[13] = b'0' + (key / 10) as u8;
                raw[14] = b'0' + (key % 10) as u8;
            }
            let mut out = [0u8; BODY_LEN];
            let fast = parse_into(&raw, &mut out).map(|()| out.to_vec());
            let rules = by_the_rules(&raw);
            kinds[match &rules {
                Ok(_) => 0,
                Err(NirError::InvalidKey) => 1,
                Err(NirError::InvalidLength) => 2,
                Err(NirError::InvalidCharacter) => 3,
            }] += 1;
            kinds[4] += usize::from(parse_digits(&raw, &mut [0; BODY_LEN]).is_some());
            assert_eq!(fast, rules, "{:?}", String::from_utf8_lossy(&raw));
        }
        // Every verdict, and both paths, were met many times.
        assert!(kinds.iter().all(|&k| k > 10_000), "{kinds:?}");
    }

    #[test]
    fn the_word_at_a_time_digit_reading_agrees_with_byte_by_byte() {
        use rand::{Rng, SeedableRng};
        let by_bytes = |w: [u8; 8]| w.iter().all(u8::is_ascii_digit);
        for pos in 0..8 {
            for b in 0..=255u8 {
                let mut w = *b"90123456";
                w[pos] = b;
                assert_eq!(all_digits(w), by_bytes(w), "{w:?}");
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..200_000 {
            let w: [u8; 8] = std::array::from_fn(|_| {
                if rng.gen_bool(0.95) {
                    b'0' + rng.gen_range(0..10u8)
                } else {
                    rng.gen()
                }
            });
            assert_eq!(all_digits(w), by_bytes(w), "{w:?}");
            if by_bytes(w) {
                let n = w.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
                assert_eq!(eight_digits(w), n);
            }
        }
        assert_eq!(eight_digits(*b"99999999"), 99_999_999);
        assert_eq!(eight_digits(*b"00000000"), 0);
    }

    #[test]
    fn corsica_letters_only_at_positions_six_and_seven() {
        assert_eq!(
            Nir::parse(b"2A51099126111").err(),
            Some(NirError::InvalidCharacter)
        );
        assert!(Nir::parse(b"186022A215325").is_ok());
        assert!(Nir::parse(b"186022b215325").is_ok());
        assert_eq!(
            Nir::parse(b"1860A2A215325").err(),
            Some(NirError::InvalidCharacter)
        );
        assert_eq!(
            Nir::parse(b"186033A215325").err(),
            Some(NirError::InvalidCharacter)
        );
    }

    #[test]
    fn character_rule_comes_before_length_rule() {
        assert_eq!(Nir::parse(b"12x").err(), Some(NirError::InvalidCharacter));
        assert_eq!(
            Nir::parse("29510991261é1".as_bytes()).err(),
            Some(NirError::InvalidCharacter)
        );
        assert_eq!(Nir::parse(b"2A").err(), Some(NirError::InvalidLength));
        assert_eq!(Nir::parse(b"").err(), Some(NirError::InvalidLength));
    }

    #[test]
    fn only_ascii_spaces_are_removed() {
        assert!(Nir::parse(b" 2 95 10 99 126 111 93 ").is_ok());
        assert_eq!(
            Nir::parse(b"2951099126111\t93").err(),
            Some(NirError::InvalidCharacter)
        );
    }

    #[test]
    fn synthetic_nirs_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for s in 0..10_000u64 {
            let n = synthetic(s);
            assert!(Nir::parse(&n.with_key()).is_ok());
            assert!(seen.insert(*n.body()));
        }
    }

    #[test]
    fn debug_never_shows_the_number() {
        let n = synthetic(7);
        let shown = format!("{n:?}");
        assert!(!shown.contains(std::str::from_utf8(n.body()).unwrap()));
    }
}

//! The code kernel against the hardware's floor, in one run, on one core.
//!
//! The floor: two SHA-256 compressions in one stream (each waiting on the
//! last), with `sha2`'s compression function (SHA-NI when the CPU has it):
//! what one HMAC of a 13-byte body costs with prepared key states, done one
//! after the other. The kernel interleaves records, so it may beat it.
//! Prints each figure, then, as its last line, one JSON object:
//! `{"floor_per_s":…,"gen1_per_s":…,"gen2_per_s":…,"renewal_per_s":…,"ratio":…}`
//! with `ratio = gen1_per_s / floor_per_s`; `renewal_per_s` is codes brought
//! from generation 1 to 2 per second (two compressions each, as gen1).
//!
//! Printed before it: how the compressions a second grow with the streams
//! interleaved on SHA-NI (1 to 4 lanes, `interleaved_compressions`); the
//! kernel runs four, and two for what is left.
//!
//! Run: `cargo run --release --example kernel_ratio`.

use std::hint::black_box;
use std::time::Instant;

use cstatns::code::{interleaved_compressions, Code, GenerationKey, KeyChain};
use cstatns::nir::{synthetic, BODY_LEN};
use sha2::digest::generic_array::GenericArray;

/// Records per measured pass (a 256 KiB chunk holds about 8,000).
const N: usize = 8_192;

fn chain(g: u8) -> KeyChain {
    let keys: Vec<_> = (1..=g)
        .map(|i| GenerationKey::from_bytes([i; 32]))
        .collect();
    KeyChain::new(&keys).expect("at least one key")
}

/// Best of several runs of `f` (which does `per_run` operations), per second.
fn rate(per_run: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let mut best = f64::MAX;
    for _ in 0..60 {
        let t = Instant::now();
        for _ in 0..10 {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / 10.0);
    }
    per_run as f64 / best
}

/// Compressions a second with `L` streams interleaved; `None` without SHA-NI.
fn lanes<const L: usize>() -> Option<f64> {
    const ROUNDS: u32 = 4_096;
    let mut states = [[0x6a09_e667u32; 8]; L];
    let blocks: [[u8; 64]; L] = std::array::from_fn(|l| [l as u8 + 1; 64]);
    let mut ok = true;
    let per_s = rate(L * ROUNDS as usize, || {
        ok &= interleaved_compressions(&mut states, black_box(&blocks), ROUNDS);
        black_box(&states);
    });
    ok.then_some(per_s)
}

fn main() {
    let bodies: Vec<[u8; BODY_LEN]> = (0..N as u64).map(|i| *synthetic(i).body()).collect();
    let mut out = vec![Code::default(); N];

    let mut state = [0x6a09_e667u32; 8];
    let mut block = GenericArray::from([0u8; 64]);
    let floor = rate(N, || {
        for i in 0..N {
            block[0] = i as u8;
            sha2::compress256(&mut state, std::slice::from_ref(&block));
            sha2::compress256(&mut state, std::slice::from_ref(&block));
        }
        black_box(&state);
    });

    let g1 = chain(1);
    let gen1 = rate(N, || {
        g1.derive_batch(black_box(&bodies), &mut out);
        black_box(&out);
    });
    let g2 = chain(2);
    let gen2 = rate(N, || {
        g2.derive_batch(black_box(&bodies), &mut out);
        black_box(&out);
    });
    let from = vec![1u32; N];
    let renewal = rate(N, || {
        g2.renew_batch(black_box(&from), &mut out);
        black_box(&out);
    });
    let ratio = gen1 / floor;
    let streams = [lanes::<1>(), lanes::<2>(), lanes::<3>(), lanes::<4>()];
    match streams {
        [Some(one), ..] => {
            for (l, per_s) in streams.iter().enumerate() {
                let per_s = per_s.expect("SHA-NI for one lane, so for all");
                let streams = if l == 0 { "stream " } else { "streams" };
                println!(
                    "{} {streams} interleaved (SHA-NI):       {per_s:.0} compressions/s, {:.2} x one",
                    l + 1,
                    per_s / one
                );
            }
        }
        _ => println!("no SHA-NI here: the streams are not measured"),
    }
    println!("floor (two compressions in one stream): {floor:.0} /s");
    println!("generation 1 codes:                     {gen1:.0} /s");
    println!("generation 2 codes:                     {gen2:.0} /s");
    println!("renewals 1 -> 2:                        {renewal:.0} /s");
    println!("ratio gen1 / floor:                     {ratio:.2}");
    println!(
        "{{\"floor_per_s\":{floor:.0},\"gen1_per_s\":{gen1:.0},\"gen2_per_s\":{gen2:.0},\"renewal_per_s\":{renewal:.0},\"ratio\":{ratio:.3}}}"
    );
}

//! The code kernel: records per second on one core.
//!
//! - `derive/gen1`, `derive/gen2`: `KeyChain::derive_batch` over a chunk's
//!   worth of canonical bodies (§3 only); `derive/gen1-hmac-crate`: the same
//!   generation-1 codes with the `hmac` crate; `derive/floor`: two SHA-256
//!   compressions in one stream per element (one HMAC's worth, done one
//!   after the other), all in one run. `examples/kernel_ratio` prints the
//!   same ratio as one JSON line.
//! - `chunk/csv`: `process_chunk` on a 256 KiB CSV chunk — parse, validate,
//!   hash and write the answer — which is what one blocking worker does;
//!   `chunk/csv-guarded`: the same with the guard's sweep detector reading
//!   every candidate between parsing and hashing, as the service runs it
//!   (`cstatns::sweep`), so that the guard's cost is the ratio of the two.
//!
//! Run: `cargo bench --bench code_kernel`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use cstatns::batch::{
    process_chunk, process_chunk_guarded, Chunk, Counts, Format, Operation, Scratch, Verdict,
};
use cstatns::code::{Code, GenerationKey, KeyChain};
use cstatns::nir::{synthetic, BODY_LEN};

fn chain(g: u8) -> KeyChain {
    let keys: Vec<_> = (1..=g)
        .map(|i| GenerationKey::from_bytes([i; 32]))
        .collect();
    KeyChain::new(&keys).expect("at least one key")
}

fn derive(c: &mut Criterion) {
    const N: usize = 10_000;
    let bodies: Vec<[u8; BODY_LEN]> = (0..N as u64).map(|i| *synthetic(i).body()).collect();
    let mut out = vec![Code::default(); N];
    let mut group = c.benchmark_group("derive");
    group.throughput(Throughput::Elements(N as u64));
    for g in [1u8, 2] {
        let ch = chain(g);
        group.bench_function(format!("gen{g}"), |b| {
            b.iter(|| ch.derive_batch(&bodies, &mut out))
        });
    }
    // The same generation-1 codes with the `hmac` crate (a keyed state
    // cloned per record): the reference the midstate kernel must beat.
    let keyed =
        <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&[1; 32]).expect("any length");
    let mut raw = vec![[0u8; 32]; N];
    group.bench_function("gen1-hmac-crate", |b| {
        b.iter(|| {
            for (body, o) in bodies.iter().zip(raw.iter_mut()) {
                let mut m = keyed.clone();
                hmac::Mac::update(&mut m, body);
                o.copy_from_slice(&hmac::Mac::finalize(m).into_bytes());
            }
        })
    });
    let mut state = [0x6a09_e667u32; 8];
    let mut block = sha2::digest::generic_array::GenericArray::from([0u8; 64]);
    group.bench_function("floor", |b| {
        b.iter(|| {
            for i in 0..N {
                block[0] = i as u8;
                sha2::compress256(&mut state, std::slice::from_ref(&block));
                sha2::compress256(&mut state, std::slice::from_ref(&block));
            }
            std::hint::black_box(&state);
        })
    });
    group.finish();
}

fn chunk(c: &mut Criterion) {
    let mut text = Vec::new();
    let mut n = 0u64;
    while text.len() < 256 * 1024 {
        text.extend_from_slice(format!("R{n},").as_bytes());
        text.extend_from_slice(&synthetic(n).with_key());
        text.push(b'\n');
        n += 1;
    }
    let ch = chain(1);
    let mut scratch = Scratch::default();
    let mut group = c.benchmark_group("chunk");
    group.throughput(Throughput::Elements(n));
    group.bench_function("csv", |b| {
        b.iter_batched(
            || {
                (
                    Chunk::Lines(text.clone()),
                    Vec::with_capacity(text.len() * 4),
                )
            },
            |(chunk, mut out)| {
                let mut counts = Counts::default();
                process_chunk(
                    Operation::Derive,
                    Format::Csv { delimiter: b',' },
                    &ch,
                    &chunk,
                    &mut scratch,
                    &mut out,
                    &mut counts,
                );
                out
            },
            BatchSize::LargeInput,
        )
    });
    let mut prefixes = cstatns::sweep::Prefixes::new(7);
    group.bench_function("csv-guarded", |b| {
        b.iter_batched(
            || {
                (
                    Chunk::Lines(text.clone()),
                    Vec::with_capacity(text.len() * 4),
                )
            },
            |(chunk, mut out)| {
                let mut counts = Counts::default();
                let mut watch = cstatns::sweep::Watch::new(cstatns::sweep::Prior::default());
                process_chunk_guarded(
                    Operation::Derive,
                    Format::Csv { delimiter: b',' },
                    &ch,
                    &chunk,
                    &mut scratch,
                    &mut out,
                    &mut counts,
                    &mut |c| {
                        let swept = c
                            .bodies
                            .iter()
                            .position(|b| watch.observe(&mut prefixes, b))
                            .unwrap_or(usize::MAX);
                        Verdict {
                            swept,
                            ..Verdict::all()
                        }
                    },
                );
                assert_eq!(counts.ok(), n, "a population: nothing held back");
                out
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, derive, chunk);
criterion_main!(benches);

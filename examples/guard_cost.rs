//! The guard's cost on one worker, robust to this machine's noise: a
//! 256 KiB CSV chunk answered without and with the sweep detector,
//! alternately, 40 rounds each, the best round of each kept (as
//! `kernel_ratio` does). Prints one JSON line.
//!
//!     cargo run --release --example guard_cost

use std::time::Instant;

use cstatns::batch::{process_chunk_guarded, Chunk, Counts, Format, Operation, Scratch, Verdict};
use cstatns::code::{GenerationKey, KeyChain};
use cstatns::nir::synthetic;
use cstatns::sweep::{Prefixes, Prior, Watch};

fn main() {
    let mut text = b"".to_vec();
    let mut n = 0u64;
    while text.len() < 256 * 1024 - 64 {
        text.extend_from_slice(format!("R{n},").as_bytes());
        text.extend_from_slice(&synthetic(n).with_key());
        text.push(b'\n');
        n += 1;
    }
    let chain = KeyChain::new(&[GenerationKey::from_bytes([1; 32])]).expect("a key");
    let mut scratch = Scratch::default();
    let mut prefixes = Prefixes::new(7);
    let mut out = Vec::with_capacity(text.len() * 4);
    let mut run = |guarded: bool| {
        let chunk = Chunk::Lines(text.clone());
        let t = Instant::now();
        for _ in 0..8 {
            out.clear();
            let mut counts = Counts::default();
            let mut watch = Watch::new(Prior::default());
            process_chunk_guarded(
                Operation::Derive,
                Format::Csv { delimiter: b',' },
                &chain,
                &chunk,
                &mut scratch,
                &mut out,
                &mut counts,
                &mut |c| {
                    if !guarded {
                        return Verdict::all();
                    }
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
            assert_eq!(counts.ok(), n);
        }
        8.0 * n as f64 / t.elapsed().as_secs_f64()
    };
    let (mut plain, mut guarded) = (0f64, 0f64);
    for _ in 0..40 {
        plain = plain.max(run(false));
        guarded = guarded.max(run(true));
    }
    println!(
        "{{\"lines_per_chunk\":{n},\"unguarded_per_s\":{plain:.0},\"guarded_per_s\":{guarded:.0},\"cost\":{:.3}}}",
        1.0 - guarded / plain
    );
}

//! §4: any body, CSV or NDJSON, a NIR batch or a renewal batch, fed to the
//! sans-I/O decoder whole and cut at arbitrary points. Never panics; the
//! header verdict, the format, and every line's status and echoed index are
//! the same however the body is cut (the service's answer must not depend on
//! where its reads end); every echoed index is a clean one.
#![no_main]
use cstatns::batch::{check_chunk, is_valid_index, Chunk, Decoder, Operation, Scratch, Status};
use libfuzzer_sys::fuzz_target;

type Lines = Vec<(Status, Vec<u8>)>;

fn decode(op: Operation, csv: bool, body: &[u8], cuts: &[u8]) -> Result<Lines, String> {
    let mut chunks = Vec::new();
    let mut d = Decoder::new(op, csv);
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if cuts.is_empty() {
            rest.len()
        } else {
            (usize::from(cuts[i % cuts.len()]) + 1).min(rest.len())
        };
        i += 1;
        let (now, later) = rest.split_at(n);
        d.push(now, &mut |c| chunks.push(c))
            .map_err(|e| e.to_string())?;
        rest = later;
    }
    let format = d
        .finish(&mut |c| chunks.push(c))
        .map_err(|e| e.to_string())?;
    let mut scratch = Scratch::default();
    let mut lines = Vec::new();
    for c in &chunks {
        check_chunk(op, format, c, &mut scratch, |status, index| {
            lines.push((status, index.to_vec()));
        });
    }
    drop::<Vec<Chunk>>(chunks);
    Ok(lines)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let op = if mode & 1 == 0 {
        Operation::Derive
    } else {
        Operation::Renew
    };
    let csv = mode & 2 == 0;
    // The next bytes (as many as the mode's top 3 bits say, up to 7) say
    // where to cut; the rest is the body. Bits 2-4 of the mode are unused.
    let n_cuts = usize::from(mode >> 5).min(rest.len());
    let (cuts, body) = rest.split_at(n_cuts);
    let whole = decode(op, csv, body, &[]);
    let cut = decode(op, csv, body, if cuts.is_empty() { &[0] } else { cuts });
    assert_eq!(whole, cut, "the answer depends on where the body is cut");
    if let Ok(lines) = whole {
        for (_, index) in lines {
            assert!(index.is_empty() || is_valid_index(&index));
        }
    }
});

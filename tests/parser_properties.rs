//! Property tests of every parser on arbitrary input (a stable-toolchain
//! stand-in for fuzzing until fuzz targets exist): nothing panics, and the
//! wire format's promises hold for any bytes — one answer per non-blank line,
//! in order, only clean indexes echoed, a code only with `ok`, and the same
//! answers however the body is cut into network frames.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use cstatns::batch::{
    decode_all, index_status, process_chunk, Chunk, Chunker, Counts, Format, Operation, Scratch,
};
use cstatns::code::{GenerationKey, KeyChain};
use proptest::prelude::*;

fn chain() -> KeyChain {
    KeyChain::new(&[
        GenerationKey::from_bytes([7; 32]),
        GenerationKey::from_bytes([9; 32]),
    ])
    .unwrap()
}

/// Lines made of the characters that matter to the parsers, with some
/// valid-looking parts mixed in.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let atom = prop_oneof![
        Just(b"2951099126111".to_vec()),
        Just(b"186022A215325 23".to_vec()),
        Just(b"A1".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b";".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b"{\"index\":\"J1\",\"nir\":\"2951099126111\"}".to_vec()),
        Just(b"ab".repeat(32)),
        proptest::collection::vec(any::<u8>(), 0..6),
    ];
    proptest::collection::vec(atom, 0..40).prop_map(|v| v.concat())
}

fn answer(op: Operation, format: Format, chunks: &[Chunk]) -> (Vec<u8>, Counts) {
    let mut out = Vec::new();
    let mut counts = Counts::default();
    let mut scratch = Scratch::default();
    for c in chunks {
        process_chunk(op, format, &chain(), c, &mut scratch, &mut out, &mut counts);
    }
    (out, counts)
}

fn non_blank_lines(body: &[u8]) -> usize {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count()
}

fn formats() -> impl Strategy<Value = Format> {
    prop_oneof![
        Just(Format::Csv { delimiter: b',' }),
        Just(Format::Csv { delimiter: b';' }),
        Just(Format::Ndjson),
    ]
}

fn ops() -> impl Strategy<Value = Operation> {
    prop_oneof![Just(Operation::Derive), Just(Operation::Renew)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_body_gets_one_clean_answer_per_non_blank_line(op in ops(), format in formats(), body in body()) {
        let (out, counts) = answer(op, format, &[Chunk::Lines(body.clone())]);
        prop_assert_eq!(counts.total() as usize, non_blank_lines(&body));
        let text = String::from_utf8(out).expect("answers are ASCII");
        prop_assert_eq!(text.lines().count(), non_blank_lines(&body));
        for line in text.lines() {
            let (index, code, status) = match format {
                Format::Csv { delimiter } => {
                    let f: Vec<&str> = line.split(delimiter as char).collect();
                    prop_assert_eq!(f.len(), 3);
                    (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
                }
                Format::Ndjson => {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    (
                        v["index"].as_str().unwrap().to_owned(),
                        v["cstatns"].as_str().unwrap().to_owned(),
                        v["status"].as_str().unwrap().to_owned(),
                    )
                }
            };
            prop_assert!(index.is_empty() || index_status(index.as_bytes()).is_none(), "unclean index echoed: {index:?}");
            prop_assert_eq!(status == "ok", !code.is_empty());
            prop_assert!(code.is_empty() || (code.len() == 64 && code.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())));
        }
    }

    #[test]
    fn the_start_of_any_body_is_read_or_refused_however_it_is_cut(
        op in ops(), csv in any::<bool>(), body in body(), cuts in proptest::collection::vec(1usize..64, 1..8)
    ) {
        let lines_of = |chunks: &[Chunk]| -> Vec<Vec<u8>> {
            chunks.iter().map(|c| match c {
                Chunk::Lines(v) => v.clone(),
                Chunk::OversizedLine(_) => b"<oversized>".to_vec(),
            }).collect::<Vec<_>>().concat().split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
        };
        let whole = decode_all(op, csv, &body).map(|(f, c)| (f, lines_of(&c)));
        let mut decoder = cstatns::batch::Decoder::new(op, csv);
        let mut chunks = Vec::new();
        let mut rest = &body[..];
        let mut refused = false;
        for c in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let (a, b) = rest.split_at((*c).min(rest.len()));
            if decoder.push(a, &mut |ch| chunks.push(ch)).is_err() { refused = true; break; }
            rest = b;
        }
        let cut = if refused {
            None
        } else {
            decoder.finish(&mut |ch| chunks.push(ch)).ok().map(|f| (f, lines_of(&chunks)))
        };
        prop_assert_eq!(whole.ok(), cut);
    }

    #[test]
    fn secret_and_record_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = cstatns::seal::Share::from_wire_json(&bytes);
        let _ = cstatns::seal::CeremonyRecord::from_json(&bytes);
        let _ = cstatns::seal::SealedKeyring::from_json(&bytes);
        let _ = cstatns::audit::line_hash(&bytes);
        let _ = cstatns::audit::verify::parse_receipt(&bytes);
        let _ = cstatns::nir::Nir::parse(&bytes);
        let _ = cstatns::code::GenerationKey::parse_import(&bytes);
    }
}

proptest! {
    // Bodies of several chunks: fewer cases, each a megabyte or so.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_answer_does_not_depend_on_how_the_body_is_cut(
        op in ops(), format in formats(), unit in body(), cuts in proptest::collection::vec(1usize..100_000, 1..20)
    ) {
        // Repeated past a few chunk sizes, so that lines straddle the cuts.
        let mut body = unit.clone();
        body.push(b'\n');
        while body.len() < 3 * cstatns::batch::CHUNK_SIZE {
            body.extend_from_slice(&unit);
            body.push(b'\n');
        }
        let (whole, _) = answer(op, format, &[Chunk::Lines(body.clone())]);
        let mut chunker = Chunker::new();
        let mut chunks = Vec::new();
        let mut rest = &body[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let (a, b) = rest.split_at((*c).min(rest.len()));
            chunker.push(a, &mut |ch| chunks.push(ch));
            rest = b;
        }
        chunker.finish(&mut |ch| chunks.push(ch));
        let (cut, _) = answer(op, format, &chunks);
        prop_assert_eq!(cut, whole);
    }

}

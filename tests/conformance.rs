//! The conformance vectors of `conformance/` (DESIGN §2, §3, §4), written by
//! `conformance/generate.py` from the design alone: the service's NIR rules,
//! code chain, renewal and whole batch answers must give every one of them,
//! byte for byte. (`.ci/run` checks that the script still writes the same
//! files.)

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use cstatns::batch::{decode_all, process_chunk, Counts, Operation, Scratch};
use cstatns::code::{parse_hex, write_hex, Code, GenerationKey, KeyChain, CODE_HEX_LEN};
use cstatns::nir::Nir;
use serde_json::Value;

fn vectors(name: &str) -> Value {
    let path = format!("{}/conformance/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn chain(v: &Value, g: usize) -> KeyChain {
    let keys: Vec<GenerationKey> = v["keys"].as_array().unwrap()[..g]
        .iter()
        .map(|k| {
            GenerationKey::from_bytes(
                hex::decode(k.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            )
        })
        .collect();
    KeyChain::new(&keys).unwrap()
}

fn hex_of(code: &Code) -> String {
    let mut out = [0u8; CODE_HEX_LEN];
    write_hex(code, &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn nir_vectors_of_section_2() {
    let v = vectors("nir.json");
    let cases = v["cases"].as_array().unwrap();
    for c in cases {
        let input = str_of(&c["input"]);
        let (status, body) = match Nir::parse(input.as_bytes()) {
            Ok(nir) => ("ok", Value::from(std::str::from_utf8(nir.body()).unwrap())),
            Err(e) => (e.code(), Value::Null),
        };
        assert_eq!(status, str_of(&c["status"]), "input {input:?}");
        assert_eq!(body, c["body"], "input {input:?}");
    }
    let statuses: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| str_of(&c["status"])).collect();
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["invalid_character", "invalid_key", "invalid_length", "ok"]
    );
    assert!(cases.len() > 150);
}

#[test]
fn code_vectors_of_section_3() {
    let v = vectors("codes.json");
    let generations = v["keys"].as_array().unwrap().len();
    let chains: Vec<KeyChain> = (1..=generations).map(|g| chain(&v, g)).collect();
    let cases = v["cases"].as_array().unwrap();
    for c in cases {
        let body: [u8; 13] = str_of(&c["body"]).as_bytes().try_into().unwrap();
        for (g, chain) in chains.iter().enumerate() {
            let mut code = Code::default();
            chain.derive(&body, &mut code);
            assert_eq!(
                hex_of(&code),
                str_of(&c["codes"][g]),
                "generation {}",
                g + 1
            );
        }
    }
    assert!(cases.len() >= 50);
}

#[test]
fn renewal_vectors_of_section_3() {
    // Each case as a one-line renewal batch, so that the line rules (code
    // and generation checks) are the service's own.
    let v = vectors("renewal.json");
    let g = v["current_generation"].as_u64().unwrap() as usize;
    let chain = chain(&v, g);
    let cases = v["cases"].as_array().unwrap();
    for c in cases {
        let (code, generation) = (str_of(&c["cstatns"]), str_of(&c["generation"]));
        let body =
            format!("{{\"index\":\"r\",\"cstatns\":\"{code}\",\"generation\":\"{generation}\"}}\n");
        let answer = respond(Operation::Renew, false, &chain, body.as_bytes()).unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["status"], c["status"], "{code} {generation}");
        assert_eq!(answer["cstatns"], c["result"], "{code} {generation}");
        if c["status"] == "ok" {
            // And the chain's own renewal agrees.
            let mut old = parse_hex(code.as_bytes()).unwrap();
            chain.renew_in_place(generation.parse().unwrap(), &mut old);
            assert_eq!(hex_of(&old), str_of(&c["result"]));
        }
    }
    assert!(cases.iter().filter(|c| c["status"] == "ok").count() >= 12);
}

/// §4's answer to a whole request body: `None` for a refused header (400).
fn respond(op: Operation, csv: bool, chain: &KeyChain, body: &[u8]) -> Option<Vec<u8>> {
    let (format, chunks) = decode_all(op, csv, body).ok()?;
    let mut out = format.response_header().unwrap_or_default();
    let (mut scratch, mut counts) = (Scratch::default(), Counts::default());
    for chunk in &chunks {
        process_chunk(
            op,
            format,
            chain,
            chunk,
            &mut scratch,
            &mut out,
            &mut counts,
        );
    }
    Some(out)
}

#[test]
fn whole_batches_of_section_4() {
    let v = vectors("batches.json");
    let cases = v["cases"].as_array().unwrap();
    for c in cases {
        let name = str_of(&c["name"]);
        let op = match str_of(&c["path"]) {
            "/v1/cstatns" => Operation::Derive,
            "/v1/renewal" => Operation::Renew,
            other => panic!("path {other}"),
        };
        let csv = str_of(&c["content_type"]) == "text/csv";
        let chain = chain(&v, c["generation"].as_u64().unwrap() as usize);
        let got = respond(op, csv, &chain, str_of(&c["request"]).as_bytes());
        match c["status"].as_u64().unwrap() {
            200 => assert_eq!(
                String::from_utf8(got.expect("answered")).unwrap(),
                str_of(&c["response"]),
                "{name}"
            ),
            400 => assert!(got.is_none(), "{name}: answered"),
            other => panic!("status {other}"),
        }
    }
    assert!(cases.len() >= 10);
}

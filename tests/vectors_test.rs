//! Known-answer tests read from `tests/vectors/*.txt` (one test per file).

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use cstatns::code::{write_hex, Code, GenerationKey, KeyChain, KeyedMac, CODE_HEX_LEN};
use cstatns::nir::Nir;

fn data_lines(name: &str) -> impl Iterator<Item = String> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("vector file");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn rfc4231_hmac_sha256() {
    let mut n = 0;
    for line in data_lines("rfc4231.txt") {
        let f: Vec<_> = line.split_whitespace().collect();
        let (key, data, want) = (hex::decode(f[0]).unwrap(), hex::decode(f[1]).unwrap(), f[2]);
        let mut out = [0u8; 32];
        KeyedMac::new(&key).mac(&data, &mut out);
        assert!(
            hex::encode(out).starts_with(want),
            "RFC 4231 case {}",
            n + 1
        );
        n += 1;
    }
    assert_eq!(n, 7);
}

#[test]
fn nir_vectors() {
    let mut n = 0;
    for line in data_lines("nir.txt") {
        let (input, want) = line.rsplit_once('\t').unwrap();
        let got = match Nir::parse(input.as_bytes()) {
            Ok(nir) => format!("ok:{}", std::str::from_utf8(nir.body()).unwrap()),
            Err(e) => e.code().to_owned(),
        };
        assert_eq!(got, want, "input {input:?}");
        n += 1;
    }
    assert!(n >= 25);
}

#[test]
fn generation_chain_vectors() {
    let keys: Vec<GenerationKey> = (0..3u8)
        .map(|g| GenerationKey::from_bytes(std::array::from_fn(|i| 32 * g + i as u8)))
        .collect();
    let mut n = 0;
    for line in data_lines("chain.txt") {
        let f: Vec<_> = line.split_whitespace().collect();
        let g: usize = f[1].parse().unwrap();
        let chain = KeyChain::new(&keys[..g]).unwrap();
        let nir = Nir::parse(f[0].as_bytes()).unwrap();
        let mut code = Code::default();
        chain.derive(nir.body(), &mut code);
        let mut hex = [0u8; CODE_HEX_LEN];
        write_hex(&code, &mut hex);
        assert_eq!(std::str::from_utf8(&hex).unwrap(), f[2], "{} gen {g}", f[0]);
        // Renewal from every older generation reaches the same code.
        for from in 1..=g {
            let older = KeyChain::new(&keys[..from]).unwrap();
            let mut c = Code::default();
            older.derive(nir.body(), &mut c);
            chain.renew_in_place(from as u32, &mut c);
            assert_eq!(c, code);
        }
        n += 1;
    }
    assert_eq!(n, 15);
}

//! §2: any bytes as a NIR. Never panics; a NIR that parses gives back, with
//! its key, a NIR that parses to the same body; the three entry points agree,
//! and so do the two errors.
#![no_main]
use cstatns::nir::{self, Nir};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = Nir::parse(data);
    let mut body = [0u8; 13];
    let into = nir::parse_into(data, &mut body);
    assert_eq!(parsed.as_ref().err(), into.as_ref().err());
    assert_eq!(nir::looks_like_nir(data), parsed.is_ok());
    if let Ok(n) = parsed {
        assert_eq!(n.body(), &body);
        let again = Nir::parse(&n.with_key()).expect("a NIR with its key parses");
        assert_eq!(again.body(), n.body());
        // The body alone (13 characters) is the same NIR.
        let short = Nir::parse(n.body()).expect("a body parses");
        assert_eq!(short.body(), n.body());
    }
});

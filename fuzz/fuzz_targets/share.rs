//! A share as sent to `POST /v1/unseal` and held in a share file (its JSON,
//! once decrypted): never panics; one that parses writes back to JSON that
//! parses to the same share.
#![no_main]
use cstatns::seal::Share;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(share) = Share::from_wire_json(data) {
        let again = Share::from_wire_json(share.to_wire_json().as_bytes())
            .expect("a share's own JSON parses");
        assert!(again == share);
    }
});

//! The sealed keyring file (`keyring.json`), as read at start and after
//! every key operation: never panics.
#![no_main]
use cstatns::seal::SealedKeyring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SealedKeyring::from_json(data);
});

//! The public ceremony record (`ceremony.json`): never panics, whether it
//! parses or not, and whether its signature checks or not.
#![no_main]
use cstatns::seal::CeremonyRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = CeremonyRecord::from_json(data) {
        let _ = record.verify_signature();
        let _ = record.holders().len();
    }
});

//! The traceability log as the auditor's verifier reads it: any file
//! verified against a real signed ceremony record (the seed corpus holds
//! that ceremony's real log, so mutations stay close to real records), a
//! saved checkpoint, and a receipt. Never panics.
#![no_main]
use std::sync::OnceLock;

use cstatns::audit::verify::{parse_receipt, verify_files, SavedCheckpoint};
use cstatns::seal::CeremonyRecord;
use libfuzzer_sys::fuzz_target;

/// The ceremony record the seed log belongs to.
const RECORD: &[u8] = include_bytes!("../ceremony.json");

fn record() -> &'static CeremonyRecord {
    static R: OnceLock<CeremonyRecord> = OnceLock::new();
    R.get_or_init(|| CeremonyRecord::from_json(RECORD).expect("the fuzz ceremony record"))
}

fn file() -> &'static std::path::Path {
    static P: OnceLock<std::path::PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("cstatns-fuzz-log-{}.jsonl", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = SavedCheckpoint::from_json(data);
    let _ = parse_receipt(data);
    std::fs::write(file(), data).expect("write the log under test");
    let _ = verify_files(&[file().to_path_buf()], record(), None);
});

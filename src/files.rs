//! Creating files that must not exist yet, with the mode they need from the
//! first byte: secrets and personal data `0600`, public files `0644`. One
//! place for the PKI, the ceremony, dev-env and the client's answers.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates `path` with `mode`, failing (`AlreadyExists`) if anything is
/// there: a secret is never written over another file.
pub fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// [`create_new`], then writes `bytes` and syncs them to disk.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = create_new(path, mode)?;
    file.write_all(bytes)?;
    file.sync_all()
}

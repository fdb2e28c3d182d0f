//! Creating files that must not exist yet, with the mode they need from the
//! first byte: secrets and personal data `0600`, public files `0644`. One
//! place for the PKI, the ceremony, dev-env and the client's answers.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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

/// Whether [`write_atomic`] may replace a file already at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it (a keyring after a renewal).
    Yes,
    /// Fail with `AlreadyExists` (a file of a new ceremony).
    No,
}

/// Writes `bytes` to `path` so that a crash at any point leaves either what
/// was there before or the whole new file, never a part: a temporary file
/// in the same directory (mode `mode` from the first byte), fsync, then
/// rename over `path` (or, with [`Replace::No`], a hard link, which never
/// replaces), then fsync of the directory so that the new name is durable.
/// The temporary file is removed on every path out.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, replace: Replace) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut suffix = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(suffix)
    ));
    let result = (|| {
        let mut file = create_new(&tmp, mode)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        match replace {
            Replace::Yes => std::fs::rename(&tmp, path)?,
            Replace::No => {
                std::fs::hard_link(&tmp, path)?;
                // Removed before the directory is synced, so that a crash
                // does not leave a second name for the file.
                std::fs::remove_file(&tmp)?;
            }
        }
        // If this fails the new file is in place but perhaps not durable:
        // reported as an error, to be retried.
        File::open(&dir)?.sync_all()
    })();
    // On a failure before the rename or link, the temporary file goes (a
    // crash mid-write can still leave one: its name starts with `.` and
    // ends in `.tmp`, and it is safe to delete).
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_whole_or_refuses_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.json");
        write_atomic(&path, b"one", 0o600, Replace::No).expect("new");
        let again = write_atomic(&path, b"two", 0o600, Replace::No);
        assert_eq!(
            again.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        write_atomic(&path, b"three", 0o600, Replace::Yes).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"three");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["keyring.json"], "no temporary file left");
    }
}

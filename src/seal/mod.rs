//! Shares, ceremony record and keyring (DESIGN §5).
//!
//! No single person can use the service's keys: a master secret `S` (a
//! random, nonzero P-256 scalar) is split `t`-of-`n` among the key holders
//! with Feldman verifiable secret sharing, and the keys the service actually
//! uses (the generation keys of §3 and the log-signing key of §6) are kept in
//! a keyring encrypted under a key derived from `S`. The service starts
//! sealed; it opens the keyring only once `t` holders have handed over shares
//! that check out against the public ceremony record.
//!
//! The pieces, one file each:
//!
//! - [`MasterSecret`] (`master.rs`): `S` itself, only ever in memory.
//! - [`CeremonyRecord`] (`record.rs`, the public `ceremony.json`): holders,
//!   threshold, Feldman commitments (the first, `C0 = S·G`, is the key check
//!   value), signed with the keyring's log-signing key.
//! - [`Share`] (`share.rs`): one holder's point on the polynomial, stored as
//!   a passphrase-encrypted `age` file and sent to the service as JSON.
//! - [`Passphrase`] and [`ShareKdf`] (`passphrase.rs`).
//! - [`SealedKeyring`] / [`Keyring`] (`keyring.rs`, `keyring.json`).
//! - [`init`], [`combine`] and [`write_ceremony`] (`ceremony.rs`): the
//!   ceremony itself and the rebuilding of `S`.
//!
//! Nothing in this module ever puts a secret (share value, `S`, key,
//! passphrase) into an error message or a `Debug` output.

mod ceremony;
mod keyring;
mod master;
mod passphrase;
mod record;
mod share;
mod vss;

pub use ceremony::{
    combine, holder_fingerprint_from_pem, init, read_import_key, share_file_name, write_ceremony,
    CeremonyFiles, CeremonyOutput, HolderSpec, InitOptions, KEYRING_FILE, MAX_HOLDERS, RECORD_FILE,
    SHARES_DIR,
};
pub use keyring::{Keyring, LogSigningKey, SealedKeyring, KEYRING_FORMAT};
pub use master::MasterSecret;
pub use passphrase::{Passphrase, ShareKdf, MIN_NEW_PASSPHRASE_CHARS};
pub use record::{CeremonyId, CeremonyRecord, HolderRecord, CEREMONY_FORMAT, SIGNING_CONTEXT};
pub use share::{Share, ShareError, SHARE_FORMAT};

use std::path::PathBuf;

/// Everything that can go wrong while running a ceremony, reading or
/// checking shares, rebuilding `S` or opening the keyring.
///
/// Messages name files, holders and ceremonies (all public) but never a
/// share value, a key, `S` or a passphrase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The threshold is not in `1..=n`.
    #[error(
        "the threshold must be between 1 and the number of holders ({holders}), not {threshold}"
    )]
    InvalidThreshold {
        /// The threshold asked for.
        threshold: usize,
        /// The number of holders.
        holders: usize,
    },
    /// No holder, or more than [`MAX_HOLDERS`].
    #[error("a ceremony needs between 1 and {MAX_HOLDERS} holders, not {0}")]
    InvalidHolderCount(usize),
    /// A holder name is not 1 to 64 characters of `[A-Za-z0-9._-]`.
    #[error("holder name {0:?} is not 1 to 64 characters of [A-Za-z0-9._-]")]
    InvalidHolderName(String),
    /// The same holder name appears twice.
    #[error("holder {0} is listed twice")]
    DuplicateHolder(String),
    /// A holder's certificate fingerprint is not 64 lowercase hex digits.
    #[error("the certificate fingerprint of holder {0} is not 64 lowercase hexadecimal digits")]
    InvalidFingerprint(String),
    /// A ceremony needs at least one generation key.
    #[error("a ceremony needs at least one generation key")]
    NoGenerations,
    /// A key to import is neither 32 raw bytes nor 64 hex digits.
    #[error(transparent)]
    ImportKey(#[from] crate::code::KeyImportError),
    /// A certificate file could not be read as PEM holding one certificate.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(&'static str),
    /// The secret-sharing library refused an operation (its message names
    /// no secret).
    #[error("secret sharing failed: {0}")]
    Sharing(String),

    /// `ceremony.json` is not a well-formed ceremony record.
    #[error("malformed ceremony record: {0}")]
    MalformedRecord(String),
    /// The ceremony record's signature does not verify: the record was
    /// altered after the ceremony.
    #[error("the ceremony record's signature does not verify (the record was altered)")]
    BadRecordSignature,

    /// A share was refused by the checks against the ceremony record.
    #[error(transparent)]
    Share(#[from] ShareError),
    /// A share payload (decrypted file or wire JSON) is not well formed.
    /// The detail never quotes the payload.
    #[error("malformed share: {0}")]
    MalformedShare(String),
    /// The share file is not an ASCII-armored, passphrase-encrypted age file,
    /// or it is damaged.
    #[error("unreadable share file: {0}")]
    UnreadableShareFile(String),
    /// The passphrase does not open this share file.
    #[error("wrong passphrase for this share file")]
    WrongPassphrase,
    /// The share file asks for more scrypt work than this tool accepts.
    #[error(
        "the share file asks for an scrypt work factor of 2^{required}, above the accepted 2^{max}"
    )]
    ExcessiveWork {
        /// Work factor (log2 N) stated in the file.
        required: u8,
        /// Largest work factor accepted.
        max: u8,
    },
    /// Encrypting a share file failed.
    #[error("cannot encrypt the share file: {0}")]
    Encrypt(String),

    /// Two shares of the same holder were given to [`combine`].
    #[error("two shares of holder {0} were given")]
    DuplicateShare(String),
    /// Fewer valid shares than the threshold.
    #[error("{have} valid share(s) from distinct holders, {need} needed")]
    NotEnoughShares {
        /// Distinct holders whose shares checked out.
        have: usize,
        /// The ceremony's threshold.
        need: usize,
    },
    /// The rebuilt secret does not match the key check value `C0`.
    #[error("the rebuilt master secret does not match the key check value of the ceremony")]
    KeyCheckFailed,

    /// `keyring.json` is not a well-formed sealed keyring.
    #[error("malformed keyring file: {0}")]
    MalformedKeyring(String),
    /// The keyring belongs to another ceremony than the one given.
    #[error("the keyring belongs to ceremony {found}, not {expected}")]
    KeyringCeremonyMismatch {
        /// Ceremony the caller expected.
        expected: CeremonyId,
        /// Ceremony named in the keyring file.
        found: CeremonyId,
    },
    /// The keyring does not decrypt: wrong master secret, or the file was
    /// altered.
    #[error("the keyring does not open with this master secret (wrong secret or altered file)")]
    KeyringDoesNotOpen,
    /// The keyring decrypted but its content is not a layout this version
    /// understands.
    #[error("the keyring content is not understood: {0}")]
    UnsupportedKeyring(String),
    /// The keyring's log-signing key is not the one named in the ceremony
    /// record.
    #[error("the keyring's log-signing key does not match the ceremony record")]
    KeyringRecordMismatch,

    /// A passphrase was empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// A new passphrase is too short to protect a share.
    #[error("a share's passphrase needs at least {min} characters")]
    WeakPassphrase {
        /// The minimum.
        min: usize,
    },
    /// The two passphrases typed did not match.
    #[error("the two passphrases do not match")]
    PassphraseMismatch,
    /// A passphrase file is not UTF-8 text.
    #[error("the passphrase file {0} is not UTF-8 text")]
    PassphraseNotUtf8(PathBuf),
    /// Reading a passphrase from the terminal failed.
    #[error("cannot read the passphrase from the terminal")]
    Prompt(#[source] std::io::Error),
    /// No passphrase was given for a holder in [`write_ceremony`].
    #[error("no passphrase given for holder {0}")]
    MissingPassphrase(String),
    /// A passphrase was given for a name that is not a holder.
    #[error("a passphrase was given for {0}, who is not a holder of this ceremony")]
    UnexpectedPassphrase(String),

    /// A file that would be written already exists (nothing is overwritten).
    #[error("{0} already exists; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl SealError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Holder names: 1 to 64 characters of `[A-Za-z0-9._-]`, so that they are
/// safe in log lines and messages, and in file names once a suffix such as
/// `.share` is appended (no `/`, so no path traversal). Callers that build
/// paths from a name check it with this before [`init`] does.
pub fn is_valid_holder_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `true` for exactly `len` lowercase hexadecimal digits.
pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::ceremony::tests::ceremony;
    use super::*;

    #[test]
    fn debug_output_shows_no_secret() {
        let out = ceremony(2, 2);
        let share = &out.shares[0];
        let wire = share.to_wire_json();
        let value: serde_json::Value = serde_json::from_str(&wire).expect("json");
        let value_hex = value["value"].as_str().expect("value").to_owned();
        let debug = format!("{share:?} {out:?}");
        assert!(!debug.contains(&value_hex), "{debug}");
        assert!(!debug.contains(&value_hex[..16]), "{debug}");

        let s = combine(&out.record, &out.shares).expect("combine");
        let s_hex = hex::encode(s.scalar().to_bytes());
        let debug = format!("{s:?}");
        assert_eq!(debug, "MasterSecret { … }");
        assert!(!debug.contains(&s_hex[..16]));

        let keyring = out.keyring.open(&s).expect("open");
        let debug = format!("{keyring:?}");
        for k in &keyring.generations {
            assert!(!debug.contains(&hex::encode(k.expose())[..16]), "{debug}");
        }

        let p = Passphrase::random_for_dev();
        let debug = format!("{p:?}");
        assert_eq!(debug, "Passphrase { … }");
        assert!(!debug.contains(p.expose_secret()));
    }

    #[test]
    fn passphrase_file_loses_one_trailing_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.pass");
        std::fs::write(&path, "correct horse\r\n").expect("write");
        assert_eq!(
            Passphrase::from_file(&path).expect("read").expose_secret(),
            "correct horse"
        );
        std::fs::write(&path, "two lines\n\n").expect("write");
        assert_eq!(
            Passphrase::from_file(&path).expect("read").expose_secret(),
            "two lines\n"
        );
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            Passphrase::from_file(&path),
            Err(SealError::EmptyPassphrase)
        ));
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        assert!(matches!(
            Passphrase::from_file(&path),
            Err(SealError::PassphraseNotUtf8(_))
        ));
        let dev = Passphrase::random_for_dev();
        assert_eq!(dev.expose_secret().len(), 32);
        assert!(dev
            .expose_secret()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn holder_names_follow_the_documented_pattern() {
        for ok in ["alice", "holder-1", "A.b_c-9", &"x".repeat(64)] {
            assert!(is_valid_holder_name(ok), "{ok}");
        }
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65), "a\\b"] {
            assert!(!is_valid_holder_name(bad), "{bad}");
        }
    }
}

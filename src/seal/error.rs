//! The one error type of the module.

use std::path::PathBuf;

use super::id::{CeremonyId, MAX_HOLDERS};

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
    /// A threshold of 1 lets one holder use or change the key alone: refused
    /// for a real ceremony (DESIGN §5: a collegial decision).
    #[error(
        "a threshold of 1 would let one holder use the key alone: a real ceremony needs at least 2"
    )]
    ThresholdTooLow,
    /// Two holders have the same certificate: one person could then submit
    /// both shares.
    #[error("holders {0} and {1} have the same certificate")]
    DuplicateFingerprint(String, String),
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

    /// A quorum operation's proposal or approval is not well formed.
    #[error("malformed operation: {0}")]
    MalformedOperation(String),

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

/// A share refused by the checks against a ceremony record. Each variant
/// names the holder the share claims to be from (a validated name, safe to
/// log) and never the share value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The share belongs to another ceremony (an earlier one, typically).
    #[error(
        "the share of {holder} belongs to ceremony {share_ceremony}, not to {record_ceremony}"
    )]
    OtherCeremony {
        /// The holder named in the share.
        holder: String,
        /// The ceremony named in the share.
        share_ceremony: CeremonyId,
        /// The ceremony of the record it was checked against.
        record_ceremony: CeremonyId,
    },
    /// The holder named in the share is not in the record.
    #[error("{holder} is not a holder of this ceremony")]
    UnknownHolder {
        /// The holder named in the share.
        holder: String,
    },
    /// The share's identifier is not the one the record gives this holder.
    #[error("the share of {holder} has identifier {found}, but the record gives {holder} identifier {expected}")]
    IdentifierMismatch {
        /// The holder named in the share.
        holder: String,
        /// The identifier in the record.
        expected: u8,
        /// The identifier in the share.
        found: u8,
    },
    /// Feldman's check against the record's commitments failed: the share
    /// value is wrong (altered, corrupted, or forged).
    #[error("the share of {holder} fails the Feldman check against the ceremony's commitments")]
    FeldmanCheckFailed {
        /// The holder named in the share.
        holder: String,
    },
}

impl ShareError {
    /// The holder the refused share claims to be from.
    pub fn holder(&self) -> &str {
        match self {
            Self::OtherCeremony { holder, .. }
            | Self::UnknownHolder { holder }
            | Self::IdentifierMismatch { holder, .. }
            | Self::FeldmanCheckFailed { holder } => holder,
        }
    }
}

//! Passphrases protecting share files, and the work factor of the KDF that
//! stretches them.

use std::io::Read;
use std::path::Path;

use age::secrecy::SecretString;
use rand::distributions::{Alphanumeric, Distribution};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::SealError;

/// scrypt work factor (`log2 N`) of [`ShareKdf::InsecureFastForDevEnv`]:
/// about a millisecond, so that test suites and throw-away deployments that
/// write the passphrase next to the share anyway do not pay a second per
/// share.
const DEV_LOG_N: u8 = 10;

/// Largest scrypt work factor accepted when opening a share file. age's
/// default calibrates encryption to about one second on the ceremony
/// machine (typically `log2 N` of 16 to 20); 22 leaves room for a ceremony
/// run on a machine several times faster than the holder's own while
/// bounding what a doctored file can make us spend (2^22 · 1 KiB = 4 GiB).
pub(crate) const MAX_DECRYPT_LOG_N: u8 = 22;

/// Largest passphrase file read, so that pointing `--passphrase-file` at a
/// large file fails fast instead of filling memory.
const MAX_PASSPHRASE_FILE: u64 = 4096;

/// How hard the passphrase of a share file is stretched (age's scrypt
/// recipient).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShareKdf {
    /// age's default: a work factor calibrated to about one second on the
    /// machine running the ceremony. The only choice for real holders.
    #[default]
    Standard,
    /// A low, fixed work factor (`N = 2^10`), **for throw-away test
    /// deployments only**, where the passphrase is stored next to the share
    /// and stretching it protects nothing. Files written this way open like
    /// any other; they are merely cheap to brute-force.
    InsecureFastForDevEnv,
}

impl ShareKdf {
    /// The age recipient that encrypts a share file under `passphrase`.
    pub(crate) fn recipient(self, passphrase: &Passphrase) -> age::scrypt::Recipient {
        let mut recipient = age::scrypt::Recipient::new(passphrase.to_age_secret());
        if self == ShareKdf::InsecureFastForDevEnv {
            recipient.set_work_factor(DEV_LOG_N);
        }
        recipient
    }
}

/// The shortest passphrase accepted for a new share. The share file is
/// scrypt-stretched; this keeps a guessed word or date out.
pub const MIN_NEW_PASSPHRASE_CHARS: usize = 12;

/// A passphrase protecting one holder's share file: zeroized on drop, never
/// printed, read from a prompt or a file but never from the command line.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase already held in a zeroizing buffer. Refuses an
    /// empty one, which would leave the share file effectively in clear.
    pub fn new(text: Zeroizing<String>) -> Result<Self, SealError> {
        if text.is_empty() {
            return Err(SealError::EmptyPassphrase);
        }
        Ok(Self(text))
    }

    /// Reads a passphrase file: its whole content minus one trailing line
    /// ending (`\n` or `\r\n`), which editors and `echo` add. The content
    /// must be UTF-8 (age passphrases are text) and not empty.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SealError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| SealError::io(path, e))?;
        // Read into a buffer that is never reallocated, so that no copy of
        // the passphrase is left behind in freed memory.
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_FILE as usize + 1));
        file.take(MAX_PASSPHRASE_FILE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| SealError::io(path, e))?;
        if buf.len() as u64 > MAX_PASSPHRASE_FILE {
            return Err(SealError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a passphrase file holds at most {MAX_PASSPHRASE_FILE} bytes"),
                ),
            ));
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let bytes = std::mem::take(&mut *buf);
        let text = match String::from_utf8(bytes) {
            Ok(text) => Zeroizing::new(text),
            Err(e) => {
                // Still wipe the bytes handed back by the failed conversion.
                drop(Zeroizing::new(e.into_bytes()));
                return Err(SealError::PassphraseNotUtf8(path.to_path_buf()));
            }
        };
        Self::new(text)
    }

    /// Asks for a passphrase on the terminal, without echo.
    pub fn prompt(prompt_text: &str) -> Result<Self, SealError> {
        let text =
            Zeroizing::new(rpassword::prompt_password(prompt_text).map_err(SealError::Prompt)?);
        Self::new(text)
    }

    /// Refuses a passphrase too short to protect a new share (fewer than
    /// [`MIN_NEW_PASSPHRASE_CHARS`] characters). Existing shares open
    /// whatever their passphrase.
    pub fn check_new(self) -> Result<Self, SealError> {
        if self.0.chars().count() < MIN_NEW_PASSPHRASE_CHARS {
            return Err(SealError::WeakPassphrase {
                min: MIN_NEW_PASSPHRASE_CHARS,
            });
        }
        Ok(self)
    }

    /// Asks for a new passphrase twice, without echo; refuses a short one
    /// and two that differ (a typo here would lock the holder out of their
    /// share for good).
    pub fn prompt_new() -> Result<Self, SealError> {
        let first = Self::prompt("New passphrase for the share: ")?.check_new()?;
        let second = Self::prompt("Type the same passphrase again: ")?;
        if bool::from(first.0.as_bytes().ct_eq(second.0.as_bytes())) {
            Ok(first)
        } else {
            Err(SealError::PassphraseMismatch)
        }
    }

    /// 32 random alphanumeric characters (about 190 bits), for test and
    /// development deployments that store the passphrase next to the share.
    pub fn random_for_dev() -> Self {
        let mut text = Zeroizing::new(String::with_capacity(32));
        let mut rng = rand::rngs::OsRng;
        for _ in 0..32 {
            text.push(char::from(Alphanumeric.sample(&mut rng)));
        }
        Self(text)
    }

    /// The passphrase text, for the rare caller that must store it (a
    /// development environment writing `NAME.pass` beside the share).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// A copy in age's secret type (itself zeroized on drop).
    pub(crate) fn to_age_secret(&self) -> SecretString {
        SecretString::from(self.0.as_str())
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase { … }")
    }
}

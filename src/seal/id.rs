//! Identifiers and names: the ceremony id and the rules for holder names and
//! hex strings. Depends on nothing else in the module.

/// Identifier of one ceremony: 16 random bytes, written as 32 lowercase hex
/// digits. It ties shares and keyring to the record they belong to, so a
/// share of an earlier ceremony is recognised as such rather than failing a
/// check mysteriously.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CeremonyId([u8; 16]);

impl CeremonyId {
    /// A fresh random identifier.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        Self(b)
    }

    /// The 16 bytes (HKDF salt and AEAD associated data of the keyring).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses exactly 32 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        if !is_lower_hex(text, 32) {
            return None;
        }
        let mut b = [0u8; 16];
        hex::decode_to_slice(text, &mut b).ok()?;
        Some(Self(b))
    }
}

impl std::fmt::Display for CeremonyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for CeremonyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CeremonyId({self})")
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

/// Most holders a ceremony can have (share identifiers are one byte).
pub const MAX_HOLDERS: usize = 255;

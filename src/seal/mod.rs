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
//! The pieces, one file each, importing one another in one direction only
//! (`id` and `error` at the bottom; `ceremony` at the top):
//!
//! - [`CeremonyId`] and the name rules (`id.rs`), [`SealError`] (`error.rs`).
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
//! - [`Vault`] (`vault.rs`, at the top): the running service's key
//!   lifecycle — sealed, collecting shares, unsealed, retiring — as one
//!   state machine under one lock, and the entry point for an operation
//!   approved by `t` holders.
//!
//! Nothing in this module ever puts a secret (share value, `S`, key,
//! passphrase) into an error message or a `Debug` output.

mod ceremony;
mod error;
mod id;
mod keyring;
mod master;
mod passphrase;
pub mod quorum;
mod record;
mod share;
mod vault;
mod vss;

pub use ceremony::{
    combine, holder_fingerprint_from_pem, init, read_import_key, reshare, share_file_name,
    write_ceremony, CeremonyFiles, CeremonyOutput, HolderSpec, InitOptions, ReshareOptions,
    KEYRING_FILE, RECORD_FILE, SHARES_DIR,
};
pub use error::{SealError, ShareError};
pub use id::{is_valid_holder_name, CeremonyId, MAX_HOLDERS};
pub use keyring::{
    Keyring, LogSigningKey, ProjectChain, SealedKeyring, KEYRING_FORMAT, KEYRING_FORMAT_V1,
};
pub use master::{KeyringKek, MasterSecret};
pub use passphrase::{Passphrase, ShareKdf, MIN_NEW_PASSPHRASE_CHARS};
pub use quorum::{Approval, Operation, PendingView, ProjectTerms, Proposal};
pub use record::{CeremonyRecord, HolderRecord, CEREMONY_FORMAT, SIGNING_CONTEXT};
pub use share::{Share, SHARE_FORMAT};
#[cfg(feature = "dev-kit")]
pub use vault::advance_project_calendar;
#[cfg(feature = "service")]
pub(crate) use vault::project_today;
pub use vault::{
    Accepted, Approved, Executed, Journal, Keys, ProjectKeys, ProjectRefusal, ProjectView,
    QuorumRefusal, SealCause, Sealing, ShareRefusal, Vault, VaultView, KEY_RETIRE_WAIT,
    MAX_SHARE_MESSAGE,
};

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

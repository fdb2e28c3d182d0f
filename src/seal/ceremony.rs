//! The ceremony (draw `S`, share it, seal the keyring, sign the record),
//! the rebuilding of `S` from shares, and the writing of a ceremony
//! directory.
//!
//! A ceremony directory holds:
//!
//! ```text
//! DIR/ceremony.json        public record (mode 0644)
//! DIR/keyring.json         sealed keyring (mode 0600)
//! DIR/shares/NAME.share    one armored age file per holder (mode 0600, directory 0700)
//! ```

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use p256::Scalar;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::error::SealError;
use super::id::{is_lower_hex, is_valid_holder_name, CeremonyId, MAX_HOLDERS};
use super::keyring::{Keyring, LogSigningKey, SealedKeyring};
use super::master::MasterSecret;
use super::passphrase::{Passphrase, ShareKdf};
use super::record::{CeremonyRecord, HolderRecord};
use super::share::Share;
use super::vss;
use crate::code::GenerationKey;

/// File name of the ceremony record in a ceremony directory.
pub const RECORD_FILE: &str = "ceremony.json";
/// File name of the sealed keyring in a ceremony directory.
pub const KEYRING_FILE: &str = "keyring.json";
/// Sub-directory of a ceremony directory holding the share files.
pub const SHARES_DIR: &str = "shares";

/// The file name of a holder's share (`NAME.share`).
pub fn share_file_name(holder: &str) -> String {
    format!("{holder}.share")
}

/// One prospective key holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderSpec {
    /// Holder name, `[A-Za-z0-9._-]{1,64}`, unique in the ceremony; also
    /// the share's file name.
    pub name: String,
    /// Lowercase hex SHA-256 of the holder's certificate (DER), see
    /// [`holder_fingerprint_from_pem`].
    pub fingerprint: String,
    /// An external holder (continuity) rather than a member of the unit.
    pub external: bool,
}

/// What a ceremony should produce.
#[derive(Debug)]
pub struct InitOptions {
    /// `t`: how many shares rebuild `S` (1 ≤ t ≤ n).
    pub threshold: usize,
    /// The `n` holders; holder `i` (from 1, in this order) gets the share
    /// at `x = i`.
    pub holders: Vec<HolderSpec>,
    /// How many generation keys `K_1 … K_G` to put in the keyring (≥ 1).
    pub generations: usize,
    /// A `K_1` to import (DESIGN §3, migration) instead of drawing it; it
    /// counts as one of the `generations`.
    pub import_k1: Option<GenerationKey>,
    /// The KDF the share files will be written with; carried into
    /// [`CeremonyOutput::share_kdf`] for [`write_ceremony`].
    pub share_kdf: ShareKdf,
}

/// A ceremony's products, in memory: nothing is written yet.
pub struct CeremonyOutput {
    /// The signed public record.
    pub record: CeremonyRecord,
    /// The keyring, sealed under `S` (which is already wiped).
    pub keyring: SealedKeyring,
    /// One share per holder, in holder order.
    pub shares: Vec<Share>,
    /// The KDF asked for in [`InitOptions::share_kdf`].
    pub share_kdf: ShareKdf,
}

impl std::fmt::Debug for CeremonyOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CeremonyOutput {{ ceremony_id: {}, threshold: {}, holders: {}, shares: … }}",
            self.record.ceremony_id(),
            self.record.threshold(),
            self.record.holders().len()
        )
    }
}

fn validate(opts: &InitOptions) -> Result<(), SealError> {
    let n = opts.holders.len();
    if n == 0 || n > MAX_HOLDERS {
        return Err(SealError::InvalidHolderCount(n));
    }
    if opts.threshold == 0 || opts.threshold > n {
        return Err(SealError::InvalidThreshold {
            threshold: opts.threshold,
            holders: n,
        });
    }
    if opts.threshold < 2 && opts.share_kdf != ShareKdf::InsecureFastForDevEnv {
        return Err(SealError::ThresholdTooLow);
    }
    for (i, h) in opts.holders.iter().enumerate() {
        if !is_valid_holder_name(&h.name) {
            return Err(SealError::InvalidHolderName(h.name.clone()));
        }
        if opts.holders[..i].iter().any(|o| o.name == h.name) {
            return Err(SealError::DuplicateHolder(h.name.clone()));
        }
        if !is_lower_hex(&h.fingerprint, 64) {
            return Err(SealError::InvalidFingerprint(h.name.clone()));
        }
        if let Some(o) = opts.holders[..i]
            .iter()
            .find(|o| o.fingerprint == h.fingerprint)
        {
            return Err(SealError::DuplicateFingerprint(
                o.name.clone(),
                h.name.clone(),
            ));
        }
    }
    if opts.generations == 0 {
        return Err(SealError::NoGenerations);
    }
    Ok(())
}

/// Runs a ceremony in memory: draws `S`, splits it `t`-of-`n` with Feldman
/// VSS (holder `i` gets `x = i`), builds the keyring (`K_1` imported or
/// drawn, `K_2 … K_G` drawn, a fresh log-signing key) and seals it under
/// `S`, and signs the record. Before returning it checks its own work:
/// every share against the record, the record's signature, and the
/// rebuilding of `S` from the first `t` shares. `S` is wiped on return.
pub fn init(opts: &InitOptions) -> Result<CeremonyOutput, SealError> {
    validate(opts)?;
    let ceremony_id = CeremonyId::random();
    let mut generations = Vec::with_capacity(opts.generations);
    generations.push(match &opts.import_k1 {
        Some(k1) => GenerationKey::from_bytes(*k1.expose()),
        None => GenerationKey::random(),
    });
    generations.extend((1..opts.generations).map(|_| GenerationKey::random()));
    let keyring = Keyring::new(generations, LogSigningKey::generate())?;
    share_out(
        &keyring,
        ceremony_id,
        opts.threshold,
        &opts.holders,
        opts.share_kdf,
        |holders, commitments| {
            CeremonyRecord::new_signed(
                ceremony_id,
                opts.threshold,
                holders,
                commitments,
                &keyring.log_signing,
            )
        },
    )
}

/// What a ceremony and a re-sharing share: draws `S`, splits it `t`-of-`n`
/// among `holders` (holder `i` gets `x = i`), seals `keyring` under it,
/// has `sign` make the record from the holders and the commitments, and
/// makes the shares. Before returning it checks its own work: every share
/// against the record, the record's signature, and the rebuilding of `S`
/// from the first `t` shares. `S` is wiped on return.
fn share_out(
    keyring: &Keyring,
    ceremony_id: CeremonyId,
    threshold: usize,
    holders: &[HolderSpec],
    share_kdf: ShareKdf,
    sign: impl FnOnce(Vec<HolderRecord>, &[p256::ProjectivePoint]) -> Result<CeremonyRecord, SealError>,
) -> Result<CeremonyOutput, SealError> {
    let n = holders.len();
    let ids: Vec<u8> = (1..=n)
        .map(|i| u8::try_from(i).map_err(|_| SealError::InvalidHolderCount(n)))
        .collect::<Result<_, _>>()?;
    let master = MasterSecret::random();
    let split = vss::split(&master, threshold, &ids)?;
    let sealed = keyring.seal(&master, ceremony_id)?;
    drop(master);
    let records = holders
        .iter()
        .zip(&ids)
        .map(|(h, &id)| HolderRecord {
            name: h.name.clone(),
            id,
            fingerprint: h.fingerprint.clone(),
            external: h.external,
        })
        .collect();
    let record = sign(records, &split.commitments)?;
    let shares: Vec<Share> = holders
        .iter()
        .zip(&split.values)
        .map(|(h, (id, value))| Share::new(ceremony_id, &h.name, *id, value))
        .collect();
    drop(split);

    // Self-checks: a ceremony whose output does not verify must not be
    // written out and handed to the holders.
    record.verify_signature()?;
    for share in &shares {
        record.verify_share(share)?;
    }
    let rebuilt = combine(&record, &shares[..threshold])?;
    record.open_keyring(&sealed, &rebuilt)?;

    Ok(CeremonyOutput {
        record,
        keyring: sealed,
        shares,
        share_kdf,
    })
}

/// A re-sharing: `t` holders of the current ceremony bring their shares;
/// a **new** master secret `S'` is drawn and split among the new holders
/// with the new threshold, the keyring is re-encrypted under it (and, with
/// `renew`, gains a generation), and a new revision of the record, chained
/// to the current one, is signed. Revoking a holder is a re-sharing without
/// them; a master rotation one with the same holders. Old shares then fail
/// Feldman's check against the new record, and the new keyring does not
/// open with the old `S`: someone who kept `t` old shares and the old
/// keyring file still opens that old file, never the new one.
pub struct ReshareOptions<'a> {
    /// The current record.
    pub record: &'a CeremonyRecord,
    /// The current sealed keyring.
    pub keyring: &'a SealedKeyring,
    /// At least `t` shares of the current ceremony.
    pub shares: &'a [Share],
    /// The new threshold.
    pub threshold: usize,
    /// The new holders (holder `i` gets `x = i`).
    pub holders: Vec<HolderSpec>,
    /// Add a random generation key in the same step (a rotation after a
    /// suspected compromise).
    pub renew: bool,
    /// The KDF the new share files will be written with.
    pub share_kdf: ShareKdf,
}

/// Runs a re-sharing in memory (see [`ReshareOptions`]); nothing is
/// written. `S` and `S'` are wiped on return. Checks its own work as
/// [`init`] does.
pub fn reshare(opts: &ReshareOptions<'_>) -> Result<CeremonyOutput, SealError> {
    validate(&InitOptions {
        threshold: opts.threshold,
        holders: opts.holders.clone(),
        generations: 1,
        import_k1: None,
        share_kdf: opts.share_kdf,
    })?;
    let old = combine(opts.record, opts.shares)?;
    let mut keyring = opts.record.open_keyring(opts.keyring, &old)?;
    drop(old);
    if opts.renew {
        keyring.generations.push(GenerationKey::random());
        keyring
            .created
            .push(time::OffsetDateTime::now_utc().unix_timestamp());
    }
    share_out(
        &keyring,
        opts.record.ceremony_id(),
        opts.threshold,
        &opts.holders,
        opts.share_kdf,
        |holders, commitments| {
            opts.record
                .next_revision(opts.threshold, holders, commitments, &keyring.log_signing)
        },
    )
}

/// Share points taken out of [`Share`]s for interpolation; wiped on drop.
struct Points(Vec<(u8, Scalar)>);

impl Drop for Points {
    fn drop(&mut self) {
        for (_, v) in &mut self.0 {
            v.zeroize();
        }
    }
}

/// Rebuilds `S` from shares: each is checked against the record (the first
/// bad one is reported, naming its holder), two shares of one holder are
/// refused, at least `t` distinct holders are needed, and the result must
/// match the key check value `C0` (compared in constant time).
pub fn combine(record: &CeremonyRecord, shares: &[Share]) -> Result<MasterSecret, SealError> {
    let t = record.threshold();
    let mut distinct: Vec<&Share> = Vec::with_capacity(shares.len());
    for share in shares {
        record.verify_share(share)?;
        if distinct.iter().any(|s| s.holder() == share.holder()) {
            return Err(SealError::DuplicateShare(share.holder().to_owned()));
        }
        distinct.push(share);
    }
    if distinct.len() < t {
        return Err(SealError::NotEnoughShares {
            have: distinct.len(),
            need: t,
        });
    }
    let mut points = Points(Vec::with_capacity(t));
    for share in &distinct[..t] {
        let value = share.with_scalar(|s| *s).ok_or(SealError::KeyCheckFailed)?;
        points.0.push((share.id(), value));
    }
    let mut scalar = vss::combine(&points.0)?;
    drop(points);
    let master = MasterSecret::from_scalar(scalar).ok_or(SealError::KeyCheckFailed);
    scalar.zeroize();
    let master = master?;

    let mut c0 = [0u8; 33];
    hex::decode_to_slice(record.key_check_value(), &mut c0)
        .map_err(|_| SealError::KeyCheckFailed)?;
    if bool::from(master.public_point_compressed().ct_eq(&c0)) {
        Ok(master)
    } else {
        Err(SealError::KeyCheckFailed)
    }
}

/// The files [`write_ceremony`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyFiles {
    /// `DIR/ceremony.json`.
    pub record: PathBuf,
    /// `DIR/keyring.json`.
    pub keyring: PathBuf,
    /// `(holder, DIR/shares/NAME.share)`, in holder order.
    pub shares: Vec<(String, PathBuf)>,
}

/// Writes a ceremony directory (see the module documentation): the record,
/// the sealed keyring, and each holder's share encrypted under the
/// passphrase given for that holder's name with `kdf`.
///
/// Every holder needs exactly one passphrase, and no other name may have
/// one. Nothing is overwritten: if any of the files exists, nothing is
/// written. Secret-bearing files are created with mode 0600 (the shares
/// directory 0700) and synced to disk; if writing fails half-way, the
/// files already written are removed.
pub fn write_ceremony(
    dir: &Path,
    output: &CeremonyOutput,
    passphrases: &[(String, Passphrase)],
    kdf: ShareKdf,
) -> Result<CeremonyFiles, SealError> {
    for (i, (name, _)) in passphrases.iter().enumerate() {
        if passphrases[..i].iter().any(|(o, _)| o == name) {
            return Err(SealError::DuplicateHolder(name.clone()));
        }
        if output.record.holder(name).is_none() {
            return Err(SealError::UnexpectedPassphrase(name.clone()));
        }
    }
    let shares_dir = dir.join(SHARES_DIR);
    let files = CeremonyFiles {
        record: dir.join(RECORD_FILE),
        keyring: dir.join(KEYRING_FILE),
        shares: output
            .shares
            .iter()
            .map(|s| {
                (
                    s.holder().to_owned(),
                    shares_dir.join(share_file_name(s.holder())),
                )
            })
            .collect(),
    };
    let targets = std::iter::once(&files.record)
        .chain(std::iter::once(&files.keyring))
        .chain(files.shares.iter().map(|(_, p)| p));
    for path in targets {
        if path.symlink_metadata().is_ok() {
            return Err(SealError::AlreadyExists(path.clone()));
        }
    }

    // Encrypt everything before touching the disk (the standard KDF takes
    // about a second per share).
    let mut encrypted = Vec::with_capacity(output.shares.len());
    for share in &output.shares {
        let passphrase = passphrases
            .iter()
            .find(|(name, _)| name == share.holder())
            .map(|(_, p)| p)
            .ok_or_else(|| SealError::MissingPassphrase(share.holder().to_owned()))?;
        encrypted.push(share.encrypt_to_file_bytes(passphrase, kdf)?);
    }

    std::fs::create_dir_all(dir).map_err(|e| SealError::io(dir, e))?;
    create_private_dir(&shares_dir)?;

    let mut written: Vec<PathBuf> = Vec::new();
    let result = (|| {
        write_new(&files.record, output.record.to_json().as_bytes(), 0o644)?;
        written.push(files.record.clone());
        write_new(&files.keyring, output.keyring.to_json().as_bytes(), 0o600)?;
        written.push(files.keyring.clone());
        for ((_, path), bytes) in files.shares.iter().zip(&encrypted) {
            write_new(path, bytes, 0o600)?;
            written.push(path.clone());
        }
        for d in [dir, shares_dir.as_path()] {
            // Make the new directory entries durable too (best effort: not
            // every platform can open a directory for syncing).
            if let Ok(handle) = File::open(d) {
                let _ = handle.sync_all();
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for path in &written {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    Ok(files)
}

/// Creates the shares directory with mode 0700, or accepts an existing
/// directory (its files are checked one by one).
fn create_private_dir(path: &Path) -> Result<(), SealError> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(SealError::io(path, e)),
    }
}

/// Creates `path` (refusing an existing file, atomically), writes `bytes`
/// and syncs.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SealError> {
    crate::files::write_atomic(path, bytes, mode, crate::files::Replace::No).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SealError::AlreadyExists(path.to_path_buf())
        } else {
            SealError::io(path, e)
        }
    })
}

/// Largest key file read by [`read_import_key`] (a key is 32 raw bytes or
/// 64 hex digits plus whitespace).
const MAX_IMPORT_FILE: usize = 1024;

/// Reads a generation key to import (DESIGN §3: from a file, or standard
/// input when `source` is `-`; never from the command line) into a
/// zeroizing buffer and parses it with [`GenerationKey::parse_import`].
pub fn read_import_key(source: &Path) -> Result<GenerationKey, SealError> {
    let mut reader: Box<dyn Read> = if source == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(source).map_err(|e| SealError::io(source, e))?)
    };
    let mut buf = Zeroizing::new([0u8; MAX_IMPORT_FILE]);
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(SealError::ImportKey(crate::code::KeyImportError));
        }
        match reader.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SealError::io(source, e)),
        }
    }
    Ok(GenerationKey::parse_import(&buf[..len])?)
}

/// The fingerprint the record holds for a holder: lowercase hex SHA-256 of
/// the DER of the first certificate in a PEM file (the holder's own, when
/// the file carries a chain). The service matches it against the client
/// certificate presented when that holder submits their share.
pub fn holder_fingerprint_from_pem(pem: &[u8]) -> Result<String, SealError> {
    let mut reader = pem;
    let first = rustls_pemfile::certs(&mut reader)
        .next()
        .ok_or(SealError::InvalidCertificate(
            "no CERTIFICATE block in the PEM file",
        ))?
        .map_err(|_| SealError::InvalidCertificate("the PEM file is malformed"))?;
    Ok(hex::encode(Sha256::digest(first.as_ref())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fingerprint-shaped test value per holder.
    fn fingerprint(i: usize) -> String {
        hex::encode(Sha256::digest(format!("holder certificate {i}")))
    }

    pub(crate) fn options(threshold: usize, n: usize) -> InitOptions {
        InitOptions {
            threshold,
            holders: (1..=n)
                .map(|i| HolderSpec {
                    name: format!("holder-{i}"),
                    fingerprint: fingerprint(i),
                    external: i == n,
                })
                .collect(),
            generations: 2,
            import_k1: None,
            share_kdf: ShareKdf::InsecureFastForDevEnv,
        }
    }

    pub(crate) fn ceremony(threshold: usize, n: usize) -> CeremonyOutput {
        init(&options(threshold, n)).expect("ceremony")
    }

    /// Copies of shares (tests only: shares are deliberately not `Clone`).
    pub(crate) fn copy(share: &Share) -> Share {
        Share::from_wire_json(share.to_wire_json().as_bytes()).expect("wire round trip")
    }

    #[test]
    fn any_three_of_five_rebuild_the_secret() {
        let out = ceremony(3, 5);
        assert_eq!(out.record.threshold(), 3);
        assert_eq!(out.record.commitments_hex().len(), 3);
        for a in 0..5 {
            for b in (a + 1)..5 {
                for c in (b + 1)..5 {
                    let subset = [
                        copy(&out.shares[a]),
                        copy(&out.shares[c]),
                        copy(&out.shares[b]),
                    ];
                    let s = combine(&out.record, &subset).expect("3 shares rebuild S");
                    assert_eq!(s.key_check_value(), out.record.key_check_value());
                    let keyring = out
                        .record
                        .open_keyring(&out.keyring, &s)
                        .expect("keyring opens");
                    assert_eq!(keyring.generation(), 2);
                }
            }
        }
        // More than t shares work too.
        let all: Vec<Share> = out.shares.iter().map(copy).collect();
        assert!(combine(&out.record, &all).is_ok());
    }

    #[test]
    fn two_of_five_shares_do_not_rebuild_the_secret() {
        let out = ceremony(3, 5);
        let two = [copy(&out.shares[0]), copy(&out.shares[3])];
        assert!(matches!(
            combine(&out.record, &two),
            Err(SealError::NotEnoughShares { have: 2, need: 3 })
        ));
        // And interpolating them anyway gives some other secret.
        let points: Vec<(u8, Scalar)> = two
            .iter()
            .map(|s| (s.id(), s.with_scalar(|x| *x).expect("scalar")))
            .collect();
        let wrong = vss::combine(&points).expect("interpolation");
        let wrong = MasterSecret::from_scalar(wrong).expect("nonzero");
        assert_ne!(wrong.key_check_value(), out.record.key_check_value());
    }

    #[test]
    fn duplicate_shares_of_one_holder_are_refused() {
        let out = ceremony(2, 3);
        let shares = [copy(&out.shares[1]), copy(&out.shares[1])];
        assert!(matches!(
            combine(&out.record, &shares),
            Err(SealError::DuplicateShare(h)) if h == "holder-2"
        ));
    }

    #[test]
    fn threshold_one_works_with_any_single_share() {
        let out = ceremony(1, 2);
        for share in &out.shares {
            let s = combine(&out.record, std::slice::from_ref(share)).expect("t = 1");
            assert!(out.keyring.open(&s).is_ok());
        }
        let single = ceremony(1, 1);
        let s = combine(&single.record, &single.shares).expect("1 of 1");
        assert!(single.keyring.open(&s).is_ok());
    }

    #[test]
    fn holders_get_identifiers_in_the_order_given() {
        let out = ceremony(2, 4);
        for (i, (h, s)) in out.record.holders().iter().zip(&out.shares).enumerate() {
            assert_eq!(usize::from(h.id), i + 1);
            assert_eq!(h.name, format!("holder-{}", i + 1));
            assert_eq!(s.holder(), h.name);
            assert_eq!(s.id(), h.id);
        }
        assert!(out.record.holders()[3].external);
        assert!(!out.record.holders()[0].external);
    }

    #[test]
    fn imported_k1_is_the_first_generation() {
        let mut opts = options(2, 3);
        opts.import_k1 = Some(GenerationKey::from_bytes([7u8; 32]));
        opts.generations = 3;
        let out = init(&opts).expect("ceremony");
        let s = combine(&out.record, &out.shares[..2]).expect("combine");
        let keyring = out.keyring.open(&s).expect("open");
        assert_eq!(keyring.generations.len(), 3);
        assert_eq!(keyring.generations[0], GenerationKey::from_bytes([7u8; 32]));
        assert!(keyring.generations[1] != keyring.generations[2]);
    }

    #[test]
    fn invalid_options_are_refused() {
        let check = |f: &dyn Fn(&mut InitOptions), what: &str| {
            let mut o = options(2, 3);
            f(&mut o);
            assert!(init(&o).is_err(), "{what} should be refused");
        };
        check(&|o| o.threshold = 0, "t = 0");
        check(&|o| o.threshold = 4, "t > n");
        check(&|o| o.holders.clear(), "no holders");
        check(
            &|o| o.holders[1].name = "bad/name".into(),
            "a slash in a name",
        );
        check(&|o| o.holders[1].name = String::new(), "an empty name");
        check(
            &|o| o.holders[1].name = "x".repeat(65),
            "a 65-character name",
        );
        check(
            &|o| o.holders[1].name = "holder-1".into(),
            "a duplicate name",
        );
        check(
            &|o| o.holders[0].fingerprint = "abc".into(),
            "a short fingerprint",
        );
        check(
            &|o| o.holders[0].fingerprint = o.holders[0].fingerprint.to_uppercase(),
            "an upper-case fingerprint",
        );
        check(&|o| o.generations = 0, "no generation");
        check(
            &|o| o.holders[2].fingerprint = o.holders[0].fingerprint.clone(),
            "two holders with one certificate",
        );
        check(
            &|o| {
                o.threshold = 1;
                o.share_kdf = ShareKdf::Standard;
            },
            "a real ceremony with t = 1",
        );
        // A throw-away dev deployment may use t = 1 (tests, demos).
        let mut dev = options(1, 2);
        dev.share_kdf = ShareKdf::InsecureFastForDevEnv;
        assert!(init(&dev).is_ok());
    }

    #[test]
    fn write_ceremony_writes_private_files_and_never_overwrites() {
        let out = ceremony(2, 3);
        let dir = tempfile::tempdir().expect("tempdir");
        let cdir = dir.path().join("ceremony");
        let passphrases: Vec<(String, Passphrase)> = out
            .shares
            .iter()
            .map(|s| (s.holder().to_owned(), Passphrase::random_for_dev()))
            .collect();
        let files = write_ceremony(&cdir, &out, &passphrases, ShareKdf::InsecureFastForDevEnv)
            .expect("write");
        assert_eq!(files.record, cdir.join("ceremony.json"));
        assert_eq!(
            files.shares[0].1,
            cdir.join("shares").join("holder-1.share")
        );

        let record =
            CeremonyRecord::from_json(&std::fs::read(&files.record).expect("read")).expect("parse");
        record.verify_signature().expect("signature");
        let sealed =
            SealedKeyring::from_json(&std::fs::read(&files.keyring).expect("read")).expect("parse");
        let mut shares = Vec::new();
        for ((holder, path), (_, passphrase)) in files.shares.iter().zip(&passphrases) {
            let bytes = std::fs::read(path).expect("read share");
            let share = Share::decrypt_file_bytes(&bytes, passphrase).expect("decrypt");
            assert_eq!(share.holder(), holder);
            record.verify_share(&share).expect("verify");
            shares.push(share);
        }
        let s = combine(&record, &shares).expect("combine");
        record.open_keyring(&sealed, &s).expect("open");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&files.keyring), 0o600);
            assert_eq!(mode(&files.shares[0].1), 0o600);
            assert_eq!(mode(&cdir.join("shares")), 0o700);
        }

        let before = std::fs::read(&files.shares[0].1).expect("read");
        let again = write_ceremony(&cdir, &out, &passphrases, ShareKdf::InsecureFastForDevEnv);
        assert!(matches!(again, Err(SealError::AlreadyExists(_))));
        assert_eq!(std::fs::read(&files.shares[0].1).expect("read"), before);
    }

    #[test]
    fn write_ceremony_needs_one_passphrase_per_holder() {
        let out = ceremony(2, 2);
        let dir = tempfile::tempdir().expect("tempdir");
        let one = vec![("holder-1".to_owned(), Passphrase::random_for_dev())];
        assert!(matches!(
            write_ceremony(dir.path(), &out, &one, ShareKdf::InsecureFastForDevEnv),
            Err(SealError::MissingPassphrase(h)) if h == "holder-2"
        ));
        let stranger = vec![
            ("holder-1".to_owned(), Passphrase::random_for_dev()),
            ("holder-2".to_owned(), Passphrase::random_for_dev()),
            ("mallory".to_owned(), Passphrase::random_for_dev()),
        ];
        assert!(matches!(
            write_ceremony(dir.path(), &out, &stranger, ShareKdf::InsecureFastForDevEnv),
            Err(SealError::UnexpectedPassphrase(h)) if h == "mallory"
        ));
        assert!(!dir.path().join("ceremony.json").exists());
    }

    #[test]
    fn fingerprint_is_sha256_of_the_certificate_der() {
        let cert = rcgen::generate_simple_self_signed(vec!["holder.example".to_owned()])
            .expect("certificate");
        let fp = holder_fingerprint_from_pem(cert.cert.pem().as_bytes()).expect("fingerprint");
        assert_eq!(fp, hex::encode(Sha256::digest(cert.cert.der())));
        assert!(holder_fingerprint_from_pem(b"not a pem").is_err());
    }

    #[test]
    fn import_key_is_read_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k1.hex");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).expect("write");
        let k = read_import_key(&path).expect("import");
        assert_eq!(k, GenerationKey::from_bytes([0xab; 32]));
        std::fs::write(&path, "too short").expect("write");
        assert!(matches!(
            read_import_key(&path),
            Err(SealError::ImportKey(_))
        ));
    }
}

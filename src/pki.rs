//! A throw-away **development** PKI. **INSECURE — for tests and local
//! development only.**
//!
//! Every name in it says so: the CA is "cstatns dev-env CA (INSECURE, for
//! testing only)" and every end-entity certificate carries
//! `O=cstatns dev-env (INSECURE)`. Its CA key sits on disk next to the
//! certificates, anyone holding the directory can mint identities, and
//! nothing here is fit for a real deployment, whose certificates come from
//! the organisation's own PKI.
//!
//! [`write_dev_pki`] writes, under `dir/pki/` (a directory created `0700`):
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` | the self-signed dev CA and its key |
//! | `server.pem`, `server.key` | serverAuth, SANs DNS `localhost` and IP `127.0.0.1` |
//! | `submitter`, `auditor`, `operator`, `holder-1` … `holder-N` (`.pem`, `.key`) | clientAuth, `CN=<role>` |
//! | `stranger.pem`, `stranger.key` | clientAuth, `CN=stranger`, issued by another CA |
//! | `stranger-ca.pem` | that other CA (its key is discarded) |
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM, written `0600`; certificates `0644`.
//! Certificates are valid from an hour ago (to tolerate clock skew) for two
//! years. No existing file is ever overwritten: all target paths are checked
//! first, and each file is then created with `create_new`.

use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::tls::{PeerIdentity, TlsError};

/// Common name of the development CA.
pub const DEV_CA_COMMON_NAME: &str = "cstatns dev-env CA (INSECURE, for testing only)";
/// Common name of the *other* CA that issues the `stranger` certificate.
pub const STRANGER_CA_COMMON_NAME: &str = "stranger dev-env CA (INSECURE, not trusted by cstatns)";
/// Organisation of every development certificate.
pub const DEV_ORGANIZATION: &str = "cstatns dev-env (INSECURE)";

/// Role of the server certificate.
pub const SERVER: &str = "server";
/// Role of the statistical service submitting batches.
pub const SUBMITTER: &str = "submitter";
/// Role of the auditor reading the traceability log.
pub const AUDITOR: &str = "auditor";
/// Role of the operator running the host.
pub const OPERATOR: &str = "operator";
/// Role of a research project's matching body.
pub const MATCHER: &str = "matcher";
/// A valid clientAuth certificate from a CA the service does not trust.
pub const STRANGER: &str = "stranger";
/// The client roles issued by the dev CA, besides the key holders.
pub const CLIENT_ROLES: [&str; 4] = [SUBMITTER, AUDITOR, OPERATOR, MATCHER];

/// Most key holders [`write_dev_pki`] will make (share identifiers are small
/// integers; a dev PKI has no use for more).
pub const MAX_DEV_HOLDERS: usize = 255;

/// How long the development certificates are valid.
const VALIDITY: Duration = Duration::days(730);
/// How far back `notBefore` is set, for clock skew between hosts.
const BACKDATE: Duration = Duration::hours(1);

/// The role name of key holder `n` (1-based): `holder-n`.
pub fn holder_role(n: usize) -> String {
    format!("holder-{n}")
}

/// Why the development PKI could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file to be written already exists; nothing was written.
    #[error("refusing to overwrite existing file {}", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A directory or file could not be created or written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// rcgen could not generate a key or certificate.
    #[error("cannot generate the development certificate for {role}: {source}")]
    Generate {
        /// The role (or CA) being generated.
        role: String,
        /// rcgen's error (names no key material).
        #[source]
        source: rcgen::Error,
    },
    /// A freshly generated certificate could not be read back.
    #[error("cannot read back the development certificate for {role}: {source}")]
    Inspect {
        /// The role (or CA) concerned.
        role: String,
        /// The parse error (boxed: it is large and never expected).
        #[source]
        source: Box<TlsError>,
    },
    /// More key holders were asked for than [`MAX_DEV_HOLDERS`].
    #[error("{requested} key holders requested, at most {max} allowed")]
    TooManyHolders {
        /// The number asked for.
        requested: usize,
        /// [`MAX_DEV_HOLDERS`].
        max: usize,
    },
}

/// A development PKI written by [`write_dev_pki`]: where its files are, and
/// the public identity (subject, fingerprint) of each role.
#[derive(Debug, Clone)]
pub struct DevPki {
    dir: PathBuf,
    holders: usize,
    ca: PeerIdentity,
    stranger_ca: PeerIdentity,
    roles: BTreeMap<String, PeerIdentity>,
}

impl DevPki {
    /// The `pki/` directory holding every file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The dev CA certificate (`ca.pem`): the trust anchor for both the
    /// server and the clients.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The dev CA's private key (`ca.key`, `0600`).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The other CA, which issued `stranger` (`stranger-ca.pem`).
    pub fn stranger_ca(&self) -> PathBuf {
        self.dir.join("stranger-ca.pem")
    }

    /// The certificate file of `role` (`ROLE.pem`). The path is built from
    /// the name whether or not the role exists; see [`DevPki::roles`].
    pub fn cert(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.pem"))
    }

    /// The private key file of `role` (`ROLE.key`, `0600`). The path is built
    /// from the name whether or not the role exists.
    pub fn key(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.key"))
    }

    /// The identity of `role`'s certificate, if the role exists.
    pub fn identity(&self, role: &str) -> Option<&PeerIdentity> {
        self.roles.get(role)
    }

    /// Lowercase hex SHA-256 of `role`'s certificate DER, if the role exists.
    pub fn fingerprint(&self, role: &str) -> Option<&str> {
        self.identity(role).map(|id| id.fingerprint.as_str())
    }

    /// The subject of `role`'s certificate as [`PeerIdentity::subject`]
    /// renders it, if the role exists.
    pub fn subject(&self, role: &str) -> Option<&str> {
        self.identity(role).map(|id| id.subject.as_str())
    }

    /// The identity of the dev CA certificate.
    pub fn ca_identity(&self) -> &PeerIdentity {
        &self.ca
    }

    /// The identity of the stranger CA certificate.
    pub fn stranger_ca_identity(&self) -> &PeerIdentity {
        &self.stranger_ca
    }

    /// Every end-entity role, in name order (`auditor`, `holder-1`, …,
    /// `operator`, `server`, `stranger`, `submitter`).
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// How many key holders (`holder-1` … `holder-N`) were made.
    pub fn holders(&self) -> usize {
        self.holders
    }
}

/// A generated certificate with its key.
struct Issued {
    cert: Certificate,
    key: KeyPair,
}

/// Which kind of end-entity certificate to make.
#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
}

/// Writes a fresh development PKI with `holders` key holders under
/// `dir/pki/` (see the [module documentation](self) for the layout).
///
/// **INSECURE**: for tests and local development only.
///
/// Refuses, before writing anything, if any of the files already exists
/// ([`PkiError::AlreadyExists`] names it); `dir/pki/` itself may exist.
pub fn write_dev_pki(dir: &Path, holders: usize) -> Result<DevPki, PkiError> {
    if holders > MAX_DEV_HOLDERS {
        return Err(PkiError::TooManyHolders {
            requested: holders,
            max: MAX_DEV_HOLDERS,
        });
    }
    let pki_dir = dir.join("pki");
    let now = OffsetDateTime::now_utc();

    let ca = new_ca(DEV_CA_COMMON_NAME, now)?;
    let stranger_ca = new_ca(STRANGER_CA_COMMON_NAME, now)?;

    let mut leaves: Vec<(String, Issued)> = Vec::new();
    leaves.push((
        SERVER.to_owned(),
        new_leaf(SERVER, Usage::Server, &ca, now)?,
    ));
    let holder_roles = (1..=holders).map(holder_role);
    for role in CLIENT_ROLES
        .iter()
        .map(|r| (*r).to_owned())
        .chain(holder_roles)
    {
        let issued = new_leaf(&role, Usage::Client, &ca, now)?;
        leaves.push((role, issued));
    }
    let stranger = new_leaf(STRANGER, Usage::Client, &stranger_ca, now)?;
    leaves.push((STRANGER.to_owned(), stranger));

    // Everything to write, decided before touching the disk.
    let mut files: Vec<(PathBuf, Zeroizing<String>, Secrecy)> = vec![
        (
            pki_dir.join("ca.pem"),
            Zeroizing::new(ca.cert.pem()),
            Secrecy::Public,
        ),
        (
            pki_dir.join("ca.key"),
            Zeroizing::new(ca.key.serialize_pem()),
            Secrecy::Secret,
        ),
        (
            pki_dir.join("stranger-ca.pem"),
            Zeroizing::new(stranger_ca.cert.pem()),
            Secrecy::Public,
        ),
    ];
    let mut roles = BTreeMap::new();
    for (role, issued) in &leaves {
        files.push((
            pki_dir.join(format!("{role}.pem")),
            Zeroizing::new(issued.cert.pem()),
            Secrecy::Public,
        ));
        files.push((
            pki_dir.join(format!("{role}.key")),
            Zeroizing::new(issued.key.serialize_pem()),
            Secrecy::Secret,
        ));
        roles.insert(role.clone(), identity(role, &issued.cert)?);
    }
    let ca_identity = identity("ca", &ca.cert)?;
    let stranger_ca_identity = identity("stranger-ca", &stranger_ca.cert)?;

    for (path, _, _) in &files {
        // symlink_metadata: a dangling symlink counts as existing too.
        if path.symlink_metadata().is_ok() {
            return Err(PkiError::AlreadyExists { path: path.clone() });
        }
    }

    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&pki_dir)
        .map_err(|source| PkiError::Io {
            path: pki_dir.clone(),
            source,
        })?;
    for (path, contents, secrecy) in &files {
        write_new(path, contents.as_bytes(), *secrecy)?;
    }

    Ok(DevPki {
        dir: pki_dir,
        holders,
        ca: ca_identity,
        stranger_ca: stranger_ca_identity,
        roles,
    })
}

/// Whether a file holds a secret (and so is created `0600`).
#[derive(Clone, Copy)]
enum Secrecy {
    Public,
    Secret,
}

/// Creates `path`, which must not exist, and writes `contents` into it.
fn write_new(path: &Path, contents: &[u8], secrecy: Secrecy) -> Result<(), PkiError> {
    let mode = match secrecy {
        Secrecy::Public => 0o644,
        Secrecy::Secret => 0o600,
    };
    crate::files::write_new(path, contents, mode).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            PkiError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            PkiError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn identity(role: &str, cert: &Certificate) -> Result<PeerIdentity, PkiError> {
    PeerIdentity::from_der(cert.der()).map_err(|source| PkiError::Inspect {
        role: role.to_owned(),
        source: Box::new(source),
    })
}

fn generate_error(role: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        role: role.to_owned(),
        source,
    }
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime) {
    params.not_before = now.saturating_sub(BACKDATE);
    params.not_after = now.saturating_add(VALIDITY);
}

/// A self-signed CA that may issue end-entity certificates only.
fn new_ca(common_name: &str, now: OffsetDateTime) -> Result<Issued, PkiError> {
    let err = || generate_error(common_name);
    let params = ca_params(common_name, now)?;
    let key = KeyPair::generate().map_err(err())?;
    let cert = params.self_signed(&key).map_err(err())?;
    Ok(Issued { cert, key })
}

/// The CA's certificate parameters: the same name and key usages whenever
/// they are made again (to sign a CRL with the CA's key).
fn ca_params(common_name: &str, now: OffsetDateTime) -> Result<CertificateParams, PkiError> {
    let err = || generate_error(common_name);
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, DEV_ORGANIZATION);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now);
    Ok(params)
}

/// Writes `path`, a CRL signed by the dev CA of `pki_dir` that revokes the
/// certificates of `roles` (none: a CRL that revokes nothing). Replaces an
/// existing file, as a CA publishing a new CRL does.
///
/// **INSECURE**: for tests and local development only.
pub fn write_dev_crl(pki_dir: &Path, roles: &[&str], path: &Path) -> Result<(), PkiError> {
    write_dev_crl_until(pki_dir, roles, path, 30)
}

/// [`write_dev_crl`] whose next update is `days` from now (negative: a CRL
/// already out of date).
///
/// **INSECURE**: for tests and local development only.
pub fn write_dev_crl_until(
    pki_dir: &Path,
    roles: &[&str],
    path: &Path,
    days: i64,
) -> Result<(), PkiError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PkiError::Io { path: p, source }
    };
    let now = OffsetDateTime::now_utc();
    let ca_key = Zeroizing::new(
        std::fs::read_to_string(pki_dir.join("ca.key")).map_err(io(&pki_dir.join("ca.key")))?,
    );
    let err = || generate_error("ca");
    let key = KeyPair::from_pem(&ca_key).map_err(err())?;
    let ca = ca_params(DEV_CA_COMMON_NAME, now)?
        .self_signed(&key)
        .map_err(err())?;
    let mut revoked_certs = Vec::new();
    for role in roles {
        let file = pki_dir.join(format!("{role}.pem"));
        let der = crate::tls::load_certs(&file).map_err(|e| PkiError::Io {
            path: file.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).map_err(|e| PkiError::Io {
            path: file.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        revoked_certs.push(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: now.saturating_sub(BACKDATE),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        });
    }
    let this_update = now
        .saturating_sub(BACKDATE)
        .min(now + time::Duration::days(days - 1));
    let crl = rcgen::CertificateRevocationListParams {
        this_update,
        next_update: now.saturating_add(time::Duration::days(days)),
        crl_number: rcgen::SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca, &key)
    .map_err(err())?;
    let pem = crl.pem().map_err(err())?;
    crate::files::write_atomic(path, pem.as_bytes(), 0o644, crate::files::Replace::Yes)
        .map_err(io(path))
}

/// An end-entity certificate `CN=<role>, O=<DEV_ORGANIZATION>` issued by
/// `issuer`.
fn new_leaf(
    role: &str,
    usage: Usage,
    issuer: &Issued,
    now: OffsetDateTime,
) -> Result<Issued, PkiError> {
    let err = || generate_error(role);
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, role);
    params
        .distinguished_name
        .push(DnType::OrganizationName, DEV_ORGANIZATION);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    match usage {
        Usage::Server => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into().map_err(err())?),
                SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            ];
        }
        Usage::Client => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    validity(&mut params, now);
    let key = KeyPair::generate().map_err(err())?;
    let cert = params
        .signed_by(&key, &issuer.cert, &issuer.key)
        .map_err(err())?;
    Ok(Issued { cert, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_every_file_with_the_right_mode() {
        let dir = tempfile::tempdir().unwrap();
        let pki = write_dev_pki(dir.path(), 3).unwrap();
        assert_eq!(pki.dir(), dir.path().join("pki"));
        assert_eq!(mode(pki.dir()), 0o700);
        assert_eq!(pki.holders(), 3);

        let expected: Vec<String> = [
            "auditor",
            "holder-1",
            "holder-2",
            "holder-3",
            "matcher",
            "operator",
            "server",
            "stranger",
            "submitter",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(pki.roles().collect::<Vec<_>>(), expected);

        for role in pki.roles() {
            assert_eq!(mode(&pki.key(role)), 0o600, "{role}.key");
            // umask may only remove bits from a public file.
            assert_eq!(mode(&pki.cert(role)) & !0o644, 0, "{role}.pem");
        }
        assert_eq!(mode(&pki.ca_key()), 0o600);
        assert!(pki.ca().is_file());
        assert!(pki.stranger_ca().is_file());
        assert!(!pki.dir().join("stranger-ca.key").exists());

        let mut names: Vec<String> = std::fs::read_dir(pki.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        // 9 roles × 2 files + ca.pem, ca.key, stranger-ca.pem.
        assert_eq!(names.len(), 9 * 2 + 3, "{names:?}");
    }

    #[test]
    fn fingerprints_and_subjects_match_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let pki = write_dev_pki(dir.path(), 1).unwrap();
        for role in pki.roles() {
            let from_file = tls::fingerprint_of_pem_file(&pki.cert(role)).unwrap();
            assert_eq!(pki.fingerprint(role), Some(from_file.as_str()), "{role}");
            assert_eq!(from_file.len(), 64);
            assert!(from_file
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert_eq!(
                pki.subject(role),
                Some(format!("CN={role}, O={DEV_ORGANIZATION}").as_str())
            );
        }
        assert_eq!(
            pki.ca_identity().fingerprint,
            tls::fingerprint_of_pem_file(&pki.ca()).unwrap()
        );
        assert_eq!(
            pki.ca_identity().subject,
            // The comma in the CN is escaped (RFC 4514).
            format!(
                "CN={}, O={DEV_ORGANIZATION}",
                DEV_CA_COMMON_NAME.replace(',', "\\,")
            )
        );
        assert_eq!(
            pki.stranger_ca_identity().fingerprint,
            tls::fingerprint_of_pem_file(&pki.stranger_ca()).unwrap()
        );
        assert_eq!(pki.fingerprint("nobody"), None);
        assert_eq!(pki.fingerprint("holder-2"), None);
        // Every key is readable as a key and every fingerprint is distinct.
        let mut seen = std::collections::BTreeSet::new();
        for role in pki.roles() {
            tls::load_private_key(&pki.key(role)).unwrap();
            assert!(seen.insert(pki.fingerprint(role).unwrap().to_owned()));
        }
    }

    #[test]
    fn refuses_to_write_twice_into_the_same_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_dev_pki(dir.path(), 1).unwrap();
        let before = std::fs::read(first.ca_key()).unwrap();

        let err = write_dev_pki(dir.path(), 1).unwrap_err();
        match &err {
            PkiError::AlreadyExists { path } => assert!(path.starts_with(first.dir())),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("refusing to overwrite"));
        // Nothing was touched.
        assert_eq!(std::fs::read(first.ca_key()).unwrap(), before);
    }

    #[test]
    fn refuses_when_any_single_file_exists_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        std::fs::create_dir(&pki_dir).unwrap();
        let squatter = pki_dir.join("holder-2.key");
        std::fs::write(&squatter, b"not mine").unwrap();

        let err = write_dev_pki(dir.path(), 2).unwrap_err();
        match &err {
            PkiError::AlreadyExists { path } => assert_eq!(path, &squatter),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("holder-2.key"));
        assert_eq!(std::fs::read(&squatter).unwrap(), b"not mine");
        assert_eq!(std::fs::read_dir(&pki_dir).unwrap().count(), 1);
    }

    #[test]
    fn too_many_holders_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_dev_pki(dir.path(), MAX_DEV_HOLDERS + 1),
            Err(PkiError::TooManyHolders { .. })
        ));
        assert!(!dir.path().join("pki").exists());
    }

    #[test]
    fn certificates_say_they_are_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let pki = write_dev_pki(dir.path(), 0).unwrap();
        assert_eq!(pki.holders(), 0);
        for role in pki.roles() {
            assert!(pki.subject(role).unwrap().contains("INSECURE"));
        }
        assert!(pki.ca_identity().subject.contains("INSECURE"));
    }
}

//! Mutual TLS: loading certificates and keys, the server and client
//! configurations, and the identity of the peer at the other end.
//!
//! DESIGN §1 asks for "transport confidentiality and authentication of both
//! ends (certificates, TLS per ANSSI)". The configurations built here hold to
//! that without options to weaken it:
//!
//! - TLS 1.3 only, with the *ring* provider named explicitly (so the choice
//!   does not depend on which provider happens to be installed process-wide);
//! - on the server, a client certificate is **mandatory** and must chain to the
//!   configured client CA (no `allow_unauthenticated`): a connection without
//!   one, or with one from another CA, fails in the handshake (§4);
//! - on the client, only the given CA is trusted (no system roots);
//! - ALPN is `http/1.1` only.
//!
//! A peer is known to the rest of the service by its [`PeerIdentity`]: the
//! subject of its certificate and the SHA-256 fingerprint of that
//! certificate's DER, which is what the ceremony record and the traceability
//! log (§5, §6) name actors by.
//!
//! Errors name the file concerned but never carry key material: a key file
//! that fails to parse is reported without the parser's detail, which could
//! quote part of the file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The only application protocol offered and accepted.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why a TLS configuration or a peer identity could not be built.
///
/// Messages name files by path; none carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error (an OS error, no file content).
        #[source]
        source: io::Error,
    },
    /// A certificate file is not well-formed PEM.
    #[error("{} is not a valid PEM certificate file: {source}", path.display())]
    CertificatePem {
        /// The file concerned.
        path: PathBuf,
        /// The PEM parser's complaint (certificates are public).
        #[source]
        source: io::Error,
    },
    /// A key file is not well-formed PEM. The parser's detail is withheld on
    /// purpose: it could quote part of the key.
    #[error("{} is not a valid PEM private key file", path.display())]
    KeyPem {
        /// The file concerned.
        path: PathBuf,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("no certificate found in {}", path.display())]
    NoCertificate {
        /// The file concerned.
        path: PathBuf,
    },
    /// The file holds no PKCS#8, PKCS#1 or SEC1 private key section.
    #[error("no private key found in {}", path.display())]
    NoPrivateKey {
        /// The file concerned.
        path: PathBuf,
    },
    /// A certificate in a CA file cannot serve as a trust anchor.
    #[error("{} holds a certificate that cannot be a trust anchor: {source}", path.display())]
    TrustAnchor {
        /// The CA file concerned.
        path: PathBuf,
        /// Why rustls refused it.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA file.
    #[error("cannot build the client verifier from {}: {source}", path.display())]
    ClientVerifier {
        /// The CA file concerned.
        path: PathBuf,
        /// Why rustls refused it.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls refused the certificate chain and key pair (for instance the
    /// key does not match the certificate, or its algorithm is unsupported).
    #[error("certificate {} and key {} were refused: {source}", cert.display(), key.display())]
    CertifiedKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why rustls refused them (names no key material).
        #[source]
        source: rustls::Error,
    },
    /// The provider cannot do TLS 1.3 (cannot happen with *ring*; kept so that
    /// the builder's error is not unwrapped).
    #[error("TLS 1.3 is not available from the crypto provider: {0}")]
    Protocol(#[source] rustls::Error),
    /// A certificate's DER could not be parsed as X.509.
    #[error("cannot parse the certificate: {0}")]
    Certificate(#[source] x509_parser::error::X509Error),
    /// A CRL file is not well-formed PEM, or holds no `X509 CRL` section.
    #[error("{} is not a PEM file of certificate revocation lists", path.display())]
    CrlPem {
        /// The file concerned.
        path: PathBuf,
    },
    /// A CRL is not one the service can rely on: issued by another CA than
    /// the one it is named with, or past its next update.
    #[error("{}: {reason}", path.display())]
    CrlUnusable {
        /// The CRL file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The server-certificate verifier could not be built (a CRL rustls
    /// cannot use).
    #[error("cannot build the server verifier from {} and {}: {source}", ca.display(), crl.display())]
    ServerVerifier {
        /// The CA file.
        ca: PathBuf,
        /// The CRL file.
        crl: PathBuf,
        /// Why rustls refused them.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// Who is at the other end of a connection: public information only, fit
/// for the traceability log (§6 `actor`) and access decisions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PeerIdentity {
    /// The certificate's subject: attributes in the order they appear in the
    /// certificate, `SHORTNAME=value` with values escaped as in RFC 4514,
    /// separated by `", "` (multi-valued RDNs joined by `" + "`), e.g.
    /// `CN=submitter, O=cstatns dev-env (INSECURE)`. Not reversed as RFC 4514
    /// would; two different subjects never render alike (see
    /// `subject_string`). Prefer [`fingerprint`](Self::fingerprint) to bind.
    pub subject: String,
    /// Lowercase hex SHA-256 of the certificate's DER (64 characters, no
    /// separators).
    pub fingerprint: String,
}

impl PeerIdentity {
    /// Reads the identity of a DER certificate. Does not verify it: call this
    /// on certificates rustls has already verified, or on known files.
    pub fn from_der(cert: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (rest, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
            TlsError::Certificate(match e {
                x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
                x509_parser::nom::Err::Incomplete(_) => {
                    x509_parser::error::X509Error::InvalidCertificate
                }
            })
        })?;
        if !rest.is_empty() {
            // Trailing bytes would make the fingerprint cover more than the
            // certificate; webpki refuses them too.
            return Err(TlsError::Certificate(
                x509_parser::error::X509Error::InvalidCertificate,
            ));
        }
        let subject = subject_string(parsed.subject());
        Ok(PeerIdentity {
            subject,
            fingerprint: fingerprint(cert),
        })
    }
}

/// A subject as text that two different subjects cannot share: attributes in
/// certificate order, `SHORTNAME=value`, RDNs joined by `", "` and the
/// attributes of one RDN by `" + "`, with values escaped as in RFC 4514
/// (`\,` `\+` `\"` `\\` `\<` `\>` `\;`, a leading `#` or space, a trailing
/// space, control characters as `\XX`); a value that is not a string is `#`
/// and the hex of its DER content. Written by hand because x509-parser's
/// rendering does not escape, so a CN holding `", O=…"` could pass for
/// another subject.
fn subject_string(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push_str(" + ");
            }
            let oid = attr.attr_type().to_id_string();
            // RFC 4514's short names, then the registry's, then the OID.
            let short = match oid.as_str() {
                "2.5.4.3" => Some("CN"),
                "2.5.4.6" => Some("C"),
                "2.5.4.7" => Some("L"),
                "2.5.4.8" => Some("ST"),
                "2.5.4.9" => Some("STREET"),
                "2.5.4.10" => Some("O"),
                "2.5.4.11" => Some("OU"),
                "0.9.2342.19200300.100.1.25" => Some("DC"),
                "0.9.2342.19200300.100.1.1" => Some("UID"),
                _ => None,
            };
            match (short, registry.get(attr.attr_type())) {
                (Some(sn), _) => out.push_str(sn),
                (None, Some(entry)) => out.push_str(entry.sn()),
                (None, None) => out.push_str(&oid),
            }
            out.push('=');
            match attr.as_str() {
                Ok(v) => escape_rfc4514(v, &mut out),
                Err(_) => {
                    out.push('#');
                    out.push_str(&hex::encode(attr.as_slice()));
                }
            }
        }
    }
    out
}

fn escape_rfc4514(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (k, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if k == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if k == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut b = [0u8; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("\\{byte:02X}"));
                }
            }
            c => out.push(c),
        }
    }
}

/// Lowercase hex SHA-256 of a certificate's DER: the fingerprint by which the
/// ceremony record and the log name certificates.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// Fingerprint (see [`fingerprint`]) of the first certificate in a PEM file.
pub fn fingerprint_of_pem_file(path: &Path) -> Result<String, TlsError> {
    let certs = load_certs(path)?;
    certs
        .first()
        .map(fingerprint)
        .ok_or_else(|| TlsError::NoCertificate {
            path: path.to_path_buf(),
        })
}

/// Every `CERTIFICATE` section of a PEM file, in order; other sections are
/// skipped. A file with none is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::CertificatePem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Every `X509 CRL` section of a PEM file; a file with none is an error (an
/// empty file would silently revoke nothing).
pub fn load_crls(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let crls = rustls_pemfile::crls(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::CrlPem {
            path: path.to_path_buf(),
        })?;
    if crls.is_empty() {
        return Err(TlsError::CrlPem {
            path: path.to_path_buf(),
        });
    }
    Ok(crls)
}

/// Checks that every CRL of `crl_pem` was issued by a CA of `ca_pem` and
/// is not past its next update (rustls takes any CRL and never looks at its
/// date: a CRL of another CA would lock every client out, and an old one
/// would miss the latest revocations). Returns the earliest next update
/// (Unix seconds).
pub fn check_crls(crl_pem: &Path, ca_pem: &Path) -> Result<i64, TlsError> {
    let unusable = |reason: String| TlsError::CrlUnusable {
        path: crl_pem.to_path_buf(),
        reason,
    };
    let cas = load_certs(ca_pem)?;
    let mut subjects = Vec::new();
    for ca in &cas {
        let (_, c) = x509_parser::parse_x509_certificate(ca).map_err(|e| match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
                TlsError::Certificate(e)
            }
            x509_parser::nom::Err::Incomplete(_) => {
                TlsError::Certificate(x509_parser::error::X509Error::InvalidCertificate)
            }
        })?;
        subjects.push(c.subject().as_raw().to_vec());
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut earliest = i64::MAX;
    for der in load_crls(crl_pem)? {
        let (_, crl) = x509_parser::parse_x509_crl(&der)
            .map_err(|_| unusable("a CRL that cannot be parsed".into()))?;
        if !subjects.iter().any(|s| s == crl.issuer().as_raw()) {
            return Err(unusable(format!(
                "a CRL issued by {}, which is not the CA of {}",
                crl.issuer(),
                ca_pem.display()
            )));
        }
        let next = crl
            .next_update()
            .map(|t| t.timestamp())
            .ok_or_else(|| unusable("a CRL without a next update".into()))?;
        if next <= now {
            return Err(unusable(
                "the CRL is past its next update: publish a new one from the CA".into(),
            ));
        }
        earliest = earliest.min(next);
    }
    Ok(earliest)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
///
/// The file's text is wiped from memory once parsed; the returned key is
/// meant to be handed straight to rustls. A key file readable by group or
/// others is logged as a warning, not refused (deployments may share it with
/// a service group on purpose).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    warn_if_key_file_is_open(path);
    let pem = Zeroizing::new(std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?);
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        }),
        // The parser's message may quote the offending line: drop it.
        Err(_) => Err(TlsError::KeyPem {
            path: path.to_path_buf(),
        }),
    }
}

#[cfg(unix)]
fn warn_if_key_file_is_open(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "private key file is readable by group or others"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_key_file_is_open(_path: &Path) {}

/// The server side: TLS 1.3 only, *ring*, the given certificate chain and
/// key, a client certificate **required** and verified against the CA(s) in
/// `client_ca_pem`, ALPN `http/1.1`; with `crl_pem`, a client whose
/// certificate the CRL revokes fails the handshake, and so does one whose
/// status the CRL cannot tell (a CRL from another CA fails closed).
///
/// A client that sends no certificate, or one that does not chain to the
/// client CA or lacks the clientAuth extended key usage, fails the
/// handshake. Which certificate may do what (roles) is decided above this
/// layer, from the [`PeerIdentity`].
pub fn server_config(
    cert_pem: &Path,
    key_pem: &Path,
    client_ca_pem: &Path,
    crl_pem: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = client_verifier(client_ca_pem, crl_pem)?;
    server_config_with(cert_pem, key_pem, verifier)
}

/// The verifier of client certificates that [`server_config`] uses: the CA
/// of `client_ca_pem`, and with `crl_pem` its revocation list(s).
pub fn client_verifier(
    client_ca_pem: &Path,
    crl_pem: Option<&Path>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let provider = provider();
    let roots = Arc::new(root_store(client_ca_pem)?);
    let crls = crl_pem.map(load_crls).transpose()?.unwrap_or_default();
    // `builder_with_provider` denies anonymous clients unless
    // `allow_unauthenticated` is called; it is not, on purpose.
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|source| TlsError::ClientVerifier {
            path: client_ca_pem.to_path_buf(),
            source,
        })
}

/// [`server_config`] with the given client verifier.
pub fn server_config_with(
    cert_pem: &Path,
    key_pem: &Path,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let chain = load_certs(cert_pem)?;
    let key = load_private_key(key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Protocol)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::CertifiedKey {
            cert: cert_pem.to_path_buf(),
            key: key_pem.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The client side: TLS 1.3 only, *ring*, trusting only the CA(s) in
/// `ca_pem` (no system roots), presenting the given client certificate and
/// key, ALPN `http/1.1`.
pub fn client_config(
    ca_pem: &Path,
    cert_pem: &Path,
    key_pem: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with_crl(ca_pem, cert_pem, key_pem, None)
}

/// [`client_config`], and with `crl_pem` a server whose certificate the CRL
/// revokes (or whose status it cannot tell) fails the handshake.
pub fn client_config_with_crl(
    ca_pem: &Path,
    cert_pem: &Path,
    key_pem: &Path,
    crl_pem: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let roots = Arc::new(root_store(ca_pem)?);
    let chain = load_certs(cert_pem)?;
    let key = load_private_key(key_pem)?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Protocol)?;
    let builder = match crl_pem {
        None => builder.with_root_certificates(roots),
        Some(crl) => {
            check_crls(crl, ca_pem)?;
            let verifier =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .with_crls(load_crls(crl)?)
                    .only_check_end_entity_revocation()
                    .build()
                    .map_err(|source| TlsError::ServerVerifier {
                        ca: ca_pem.to_path_buf(),
                        crl: crl.to_path_buf(),
                        source,
                    })?;
            builder.with_webpki_verifier(verifier)
        }
    };
    let mut config = builder
        .with_client_auth_cert(chain, key)
        .map_err(|source| TlsError::CertifiedKey {
            cert: cert_pem.to_path_buf(),
            key: key_pem.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// A client of another server than ours (the register's PostgreSQL): TLS
/// 1.3 and the same AES-GCM suites, trusting only the CA(s) in `ca_pem`,
/// without a client certificate (the role's password authenticates it).
pub fn server_only_client_config(ca_pem: &Path) -> Result<ClientConfig, TlsError> {
    let roots = Arc::new(root_store(ca_pem)?);
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Protocol)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The identity of the client on a server connection, from its end-entity
/// certificate. `None` before the handshake has completed, or if the
/// certificate (already verified by rustls) cannot be parsed by
/// `x509-parser`.
pub fn peer_identity(conn: &rustls::ServerConnection) -> Option<PeerIdentity> {
    let end_entity = conn.peer_certificates()?.first()?;
    PeerIdentity::from_der(end_entity).ok()
}

/// For a TLS session resumed from an earlier connection's ticket: whether
/// the client certificate it was opened with, and the chain it came with,
/// are still within their validity periods. Resuming checks no
/// certificate; what else could make one invalid (another CA, a new CRL)
/// comes with a reload, whose new configuration holds no session of
/// before. A full handshake is checked by the verifier: true.
pub fn resumed_certificate_valid(conn: &rustls::ServerConnection) -> bool {
    if conn.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
        return true;
    }
    conn.peer_certificates().is_some_and(|chain| {
        !chain.is_empty()
            && chain.iter().all(|c| {
                x509_parser::parse_x509_certificate(c.as_ref())
                    .is_ok_and(|(_, parsed)| parsed.validity().is_valid())
            })
    })
}

/// The *ring* provider, named explicitly rather than taken from the process
/// default, with the AES-GCM suites of TLS 1.3 only (ANSSI's TLS guide
/// recommends AES-GCM; ChaCha20-Poly1305 is left out on both ends).
fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| {
        matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
                | rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        )
    });
    Arc::new(p)
}

/// Trust anchors from every certificate in a PEM file; any unusable one is an
/// error rather than silently skipped.
fn root_store(ca_pem: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca_pem)? {
        roots.add(cert).map_err(|source| TlsError::TrustAnchor {
            path: ca_pem.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
#[cfg(feature = "dev-kit")]
mod tests {
    use super::*;
    use crate::pki::{self, DevPki};
    use rustls::pki_types::ServerName;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    const GREETING: &[u8] = b"hello over mutual TLS";

    fn dev_pki() -> (tempfile::TempDir, DevPki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki::write_dev_pki(dir.path(), 2).unwrap();
        (dir, pki)
    }

    fn server_cfg(pki: &DevPki) -> Arc<ServerConfig> {
        server_config(
            &pki.cert(pki::SERVER),
            &pki.key(pki::SERVER),
            &pki.ca(),
            None,
        )
        .unwrap()
    }

    /// Accepts one connection; on a completed handshake, reports the peer's
    /// identity and negotiated ALPN, and sends a greeting.
    async fn serve_once(
        config: Arc<ServerConfig>,
    ) -> (
        SocketAddr,
        JoinHandle<io::Result<(Option<PeerIdentity>, Option<Vec<u8>>)>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
            let (_, conn) = tls.get_ref();
            let id = peer_identity(conn);
            let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
            tls.write_all(GREETING).await?;
            tls.shutdown().await?;
            Ok((id, alpn))
        });
        (addr, task)
    }

    /// Connects with `config` and reads what the server sends. In TLS 1.3 the
    /// client finishes its side of the handshake before the server has judged
    /// the client certificate, so a refusal shows up on the first read.
    async fn client_exchange(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Vec<u8>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await?;
        Ok(got)
    }

    fn rustls_error(e: &io::Error) -> &rustls::Error {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .unwrap_or_else(|| panic!("not a rustls error: {e:?}"))
    }

    #[tokio::test]
    async fn submitter_is_accepted_and_identified() {
        let (_dir, pki) = dev_pki();
        let (addr, server) = serve_once(server_cfg(&pki)).await;
        let client = client_config(
            &pki.ca(),
            &pki.cert(pki::SUBMITTER),
            &pki.key(pki::SUBMITTER),
        )
        .unwrap();

        let got = client_exchange(addr, client).await.unwrap();
        assert_eq!(got, GREETING);

        let (id, alpn) = server.await.unwrap().unwrap();
        let id = id.expect("a verified peer has an identity");
        assert_eq!(
            Some(id.fingerprint.as_str()),
            pki.fingerprint(pki::SUBMITTER)
        );
        assert_eq!(
            id.fingerprint,
            fingerprint_of_pem_file(&pki.cert(pki::SUBMITTER)).unwrap()
        );
        assert_eq!(
            id.subject,
            format!("CN=submitter, O={}", pki::DEV_ORGANIZATION)
        );
        assert_eq!(Some(id.subject.as_str()), pki.subject(pki::SUBMITTER));
        assert_eq!(alpn.as_deref(), Some(ALPN_HTTP_1_1));
    }

    #[tokio::test]
    async fn every_dev_client_role_is_accepted() {
        let (_dir, pki) = dev_pki();
        let config = server_cfg(&pki);
        for role in [pki::AUDITOR, pki::OPERATOR, "holder-1", "holder-2"] {
            let (addr, server) = serve_once(Arc::clone(&config)).await;
            let client = client_config(&pki.ca(), &pki.cert(role), &pki.key(role)).unwrap();
            assert_eq!(client_exchange(addr, client).await.unwrap(), GREETING);
            let (id, _) = server.await.unwrap().unwrap();
            let id = id.unwrap();
            assert_eq!(Some(id.fingerprint.as_str()), pki.fingerprint(role));
            assert!(
                id.subject.starts_with(&format!("CN={role}, ")),
                "{}",
                id.subject
            );
        }
    }

    #[tokio::test]
    async fn certificate_from_another_ca_is_refused() {
        let (_dir, pki) = dev_pki();
        let (addr, server) = serve_once(server_cfg(&pki)).await;
        // The stranger trusts our CA for the server, but its own certificate
        // was issued by the stranger CA.
        let client =
            client_config(&pki.ca(), &pki.cert(pki::STRANGER), &pki.key(pki::STRANGER)).unwrap();

        assert!(client_exchange(addr, client).await.is_err());
        let err = server.await.unwrap().unwrap_err();
        assert!(
            matches!(
                rustls_error(&err),
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn only_aes_gcm_suites_are_offered_and_accepted() {
        let p = provider();
        let names: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            names,
            [
                rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            ]
        );
        // A client that offers only ChaCha20-Poly1305 gets no handshake.
        let (_dir, pki) = dev_pki();
        let (addr, server) = serve_once(server_cfg(&pki)).await;
        let mut chacha = rustls::crypto::ring::default_provider();
        chacha
            .cipher_suites
            .retain(|s| s.suite() == rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
        let mut roots = RootCertStore::empty();
        for c in load_certs(&pki.ca()).unwrap() {
            roots.add(c).unwrap();
        }
        let certs = load_certs(&pki.cert(pki::SUBMITTER)).unwrap();
        let key = load_private_key(&pki.key(pki::SUBMITTER)).unwrap();
        let mut client = ClientConfig::builder_with_provider(Arc::new(chacha))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .unwrap();
        client.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        assert!(client_exchange(addr, Arc::new(client)).await.is_err());
        let err = server.await.unwrap().unwrap_err();
        assert!(
            matches!(
                rustls_error(&err),
                rustls::Error::PeerIncompatible(_) | rustls::Error::General(_)
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn missing_client_certificate_is_refused() {
        let (_dir, pki) = dev_pki();
        let (addr, server) = serve_once(server_cfg(&pki)).await;
        let mut roots = RootCertStore::empty();
        for c in load_certs(&pki.ca()).unwrap() {
            roots.add(c).unwrap();
        }
        let mut anonymous = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        anonymous.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];

        assert!(client_exchange(addr, Arc::new(anonymous)).await.is_err());
        let err = server.await.unwrap().unwrap_err();
        assert!(
            matches!(rustls_error(&err), rustls::Error::NoCertificatesPresented),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn server_certificate_cannot_act_as_client() {
        // serverAuth-only EKU: not a client identity even from the right CA.
        let (_dir, pki) = dev_pki();
        let (addr, server) = serve_once(server_cfg(&pki)).await;
        let client =
            client_config(&pki.ca(), &pki.cert(pki::SERVER), &pki.key(pki::SERVER)).unwrap();
        assert!(client_exchange(addr, client).await.is_err());
        let err = server.await.unwrap().unwrap_err();
        assert!(
            matches!(
                rustls_error(&err),
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::InvalidPurpose
                        | rustls::CertificateError::InvalidPurposeContext { .. }
                )
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn client_refuses_server_from_untrusted_ca() {
        let (_dir, pki) = dev_pki();
        let (addr, server) = serve_once(server_cfg(&pki)).await;
        let client = client_config(
            &pki.stranger_ca(),
            &pki.cert(pki::SUBMITTER),
            &pki.key(pki::SUBMITTER),
        )
        .unwrap();
        let err = client_exchange(addr, client).await.unwrap_err();
        assert!(
            matches!(
                rustls_error(&err),
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn client_refuses_server_using_a_client_certificate() {
        // A clientAuth-only certificate must not pass as the server, even from
        // the right CA: webpki checks the EKU (before the missing SAN).
        let (_dir, pki) = dev_pki();
        let config = server_config(
            &pki.cert(pki::OPERATOR),
            &pki.key(pki::OPERATOR),
            &pki.ca(),
            None,
        )
        .unwrap();
        let (addr, server) = serve_once(config).await;
        let client = client_config(
            &pki.ca(),
            &pki.cert(pki::SUBMITTER),
            &pki.key(pki::SUBMITTER),
        )
        .unwrap();
        let err = client_exchange(addr, client).await.unwrap_err();
        assert!(
            matches!(
                rustls_error(&err),
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::InvalidPurpose
                        | rustls::CertificateError::InvalidPurposeContext { .. }
                )
            ),
            "{err:?}"
        );
        assert!(server.await.unwrap().is_err());
    }

    /// A hand-made TLS 1.2 ClientHello (ECDHE-ECDSA/RSA AES-GCM suites,
    /// P-256, ecdsa_secp256r1_sha256), optionally with a `supported_versions`
    /// extension listing TLS 1.2 alone. rustls is built here without its
    /// `tls12` feature, so a rustls TLS 1.2 client cannot be configured; raw
    /// bytes stand in for an old client.
    fn tls12_client_hello(with_supported_versions: bool) -> Vec<u8> {
        let mut ext = Vec::new();
        ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17]); // groups: secp256r1
        ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // point formats: uncompressed
        ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03]); // sig algs
        if with_supported_versions {
            ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x03]); // TLS 1.2 only
        }
        let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
        body.extend_from_slice(&[0x42; 32]); // random
        body.push(0); // empty session id
        body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // cipher suites
        body.extend_from_slice(&[0x01, 0x00]); // compression: null
        body.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&ext);

        let mut hs = vec![0x01]; // ClientHello
        hs.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        hs.extend_from_slice(&body);

        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[tokio::test]
    async fn tls12_only_client_is_refused() {
        let (_dir, pki) = dev_pki();
        let config = server_cfg(&pki);
        for with_supported_versions in [false, true] {
            let (addr, server) = serve_once(Arc::clone(&config)).await;
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(&tls12_client_hello(with_supported_versions))
                .await
                .unwrap();
            let mut reply = Vec::new();
            tcp.read_to_end(&mut reply).await.unwrap();
            // A plaintext fatal alert record: protocol_version (70).
            assert_eq!(reply, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70]);

            let err = server.await.unwrap().unwrap_err();
            assert!(
                matches!(
                    rustls_error(&err),
                    rustls::Error::PeerIncompatible(
                        rustls::PeerIncompatible::SupportedVersionsExtensionRequired
                            | rustls::PeerIncompatible::Tls12NotOfferedOrEnabled
                    )
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn configs_offer_only_http11_alpn() {
        let (_dir, pki) = dev_pki();
        let server = server_cfg(&pki);
        assert_eq!(server.alpn_protocols, [ALPN_HTTP_1_1.to_vec()]);
        let client = client_config(
            &pki.ca(),
            &pki.cert(pki::SUBMITTER),
            &pki.key(pki::SUBMITTER),
        )
        .unwrap();
        assert_eq!(client.alpn_protocols, [ALPN_HTTP_1_1.to_vec()]);
    }

    #[test]
    fn errors_name_the_file_and_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_certs(&missing).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }));
        assert!(err.to_string().contains("missing.pem"));

        let bad_key = dir.path().join("bad.key");
        let secret_line = "c2VjcmV0IGtleSBtYXRlcmlhbA==";
        std::fs::write(
            &bad_key,
            format!("-----BEGIN PRIVATE KEY-----\n{secret_line}!!\n"),
        )
        .unwrap();
        let err = load_private_key(&bad_key).unwrap_err();
        assert!(matches!(err, TlsError::KeyPem { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("bad.key"));
        assert!(!shown.contains(secret_line), "{shown}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            load_private_key(&empty),
            Err(TlsError::NoPrivateKey { .. })
        ));
        assert!(matches!(
            load_certs(&empty),
            Err(TlsError::NoCertificate { .. })
        ));
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (_dir, pki) = dev_pki();
        let err = client_config(&pki.ca(), &pki.cert(pki::SUBMITTER), &pki.key(pki::AUDITOR))
            .unwrap_err();
        assert!(matches!(err, TlsError::CertifiedKey { .. }), "{err:?}");
    }

    #[test]
    fn peer_identity_rejects_garbage_and_trailing_bytes() {
        let (_dir, pki) = dev_pki();
        assert!(PeerIdentity::from_der(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
        let mut der = load_certs(&pki.cert(pki::SUBMITTER)).unwrap()[0].to_vec();
        der.push(0);
        assert!(PeerIdentity::from_der(&CertificateDer::from(der)).is_err());
    }

    /// Regression guard: a CN holding `", O=…"` must not render as another
    /// subject (x509-parser's own rendering does not escape).
    #[test]
    fn a_common_name_cannot_pass_for_another_subject() {
        let render = |cn: &str| {
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params.distinguished_name.push(
                rcgen::DnType::OrganizationName,
                "cstatns dev-env (INSECURE)",
            );
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            PeerIdentity::from_der(cert.der()).unwrap().subject
        };
        let real = render("submitter");
        let forged = render("submitter, O=cstatns dev-env (INSECURE)");
        assert_eq!(real, "CN=submitter, O=cstatns dev-env (INSECURE)");
        assert_ne!(forged, real);
        assert_eq!(
            forged,
            "CN=submitter\\, O=cstatns dev-env (INSECURE), O=cstatns dev-env (INSECURE)"
        );
        assert_eq!(
            render(" #a+b<c>;\"\\ "),
            "CN=\\ #a\\+b\\<c\\>\\;\\\"\\\\\\ , O=cstatns dev-env (INSECURE)"
        );
    }
}

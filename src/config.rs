//! The service's configuration file (`server.toml`).
//!
//! Paths are relative to the directory of the file. Clients are bound to
//! roles by certificate fingerprint (SHA-256 of the DER, lowercase hex), by
//! exact subject, or by both (then both must match); a certificate matching
//! no entry has no role and gets 403.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tls::PeerIdentity;

/// Default ceiling on one request body: 100 million rows of about 40 bytes.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 8 << 30;

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends batches and fetches their receipts.
    Submitter,
    /// Submits a key share to unseal the service.
    Holder,
    /// Reads the traceability log.
    Auditor,
    /// Runs the host: reads the status.
    Operator,
    /// A research project's matching body: fetches the encrypted results
    /// of the projects whose terms name its certificate.
    Matcher,
}

impl Role {
    /// Its name in `server.toml` (`submitter`, …).
    pub fn name(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Holder => "holder",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Matcher => "matcher",
        }
    }
}

/// One client entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// A name for logs and receipts.
    pub name: String,
    /// The roles granted.
    pub roles: Vec<Role>,
    /// SHA-256 fingerprint of the client certificate (lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Exact certificate subject, as [`PeerIdentity::subject`] prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Purposes a submitter may declare (`CStatNS-Purpose`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purposes: Vec<String>,
    /// The guard's quotas, for each of this client's purposes (DESIGN §4:
    /// `quota_exceeded`, 429). Absent: no quota (the service warns at start
    /// for a submitter without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// Quotas of one client, counted for each of its purposes apart: codes
/// computed (lines answered `ok`) per batch and per UTC day, batches
/// started per hour. A limit left out is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Codes one batch may get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_batch: Option<u64>,
    /// Codes per UTC day (from midnight to midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_day: Option<u64>,
    /// Batches started in any 60 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches_per_hour: Option<u64>,
}

impl ClientEntry {
    /// Every identifier the entry gives must match: with both a fingerprint
    /// and a subject, a certificate the CA issues later with the same
    /// subject does not get the role.
    pub fn matches(&self, id: &PeerIdentity) -> bool {
        let fingerprint = self
            .fingerprint
            .as_deref()
            .map(|f| f.eq_ignore_ascii_case(&id.fingerprint));
        let subject = self.subject.as_deref().map(|s| s == id.subject);
        match (fingerprint, subject) {
            (None, None) => false,
            (f, s) => f.unwrap_or(true) && s.unwrap_or(true),
        }
    }
}

/// TLS files of the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA that signs client certificates (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation list(s) of the client CA (PEM, `X509 CRL`):
    /// a revoked client certificate fails the handshake. Re-read, with the
    /// certificates and the client table, on `SIGHUP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Set by `cstatns dev-env`: this deployment's secrets are throw-away.
    #[serde(default)]
    pub insecure_dev_env: bool,
    /// Address to listen on.
    pub listen: String,
    /// Where Prometheus scrapes `GET /metrics` (e.g. `127.0.0.1:9443`): the
    /// same mutual TLS, the operator role only. None: no metrics listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The public ceremony record.
    pub ceremony: PathBuf,
    /// The sealed keyring.
    pub keyring: PathBuf,
    /// Directory of the traceability log.
    pub audit_dir: PathBuf,
    /// Largest request body accepted, in bytes (413 beyond).
    #[serde(default = "default_max")]
    pub max_request_bytes: u64,
    /// Size at which the current log file is rotated.
    #[serde(default = "default_log_file")]
    pub audit_max_file_bytes: u64,
    /// Seconds between signed checkpoints of the log (when records were added).
    #[serde(default = "default_checkpoint")]
    pub audit_checkpoint_seconds: u64,
    /// Seconds that shares received while sealed are kept before the
    /// unseal must start over (an unseal abandoned half-way leaves no share
    /// in memory for long).
    #[serde(default = "default_unseal_window")]
    pub unseal_window_seconds: u64,
    /// Longest wait for the next bytes of a batch's body (default 60): a
    /// client that stops sending is cut off (`batch_end` reason
    /// `body_timeout`) rather than hold a connection and the keys. Also the
    /// longest a client may leave the answer untaken: its connection is
    /// then closed (`client_gone`).
    #[serde(default = "default_body_idle")]
    pub body_idle_timeout_seconds: u64,
    /// Where research projects' results wait, encrypted to their matching
    /// body, until fetched (default: `results` beside the log directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_dir: Option<PathBuf>,
    /// Seconds a project result waits to be fetched before it is erased
    /// (default 604800, a week).
    #[serde(default = "default_result_window")]
    pub result_window_seconds: u64,
    /// Seconds a proposed key operation waits for its quorum before it
    /// expires (default 86400, one day).
    #[serde(default = "default_operation_ttl")]
    pub operation_ttl_seconds: u64,
    /// Years between key renewals (DESIGN §3: at least every 5, the default).
    #[serde(default = "default_renewal_years")]
    pub renewal_period_years: u32,
    /// Days before the renewal date from which `status` and the log warn
    /// (default 90).
    #[serde(default = "default_renewal_warning")]
    pub renewal_warning_days: u32,
    /// The embedded register (DESIGN §7) that trait batches are looked up
    /// in: a file made by `cstatns register load`, read whole into memory at
    /// start. Without one (or when it cannot be read), trait batches get 503
    /// `register_unavailable`; NIR batches are served all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<PathBuf>,
    /// Or the register in PostgreSQL (`docs/identity.md`): its URL (no
    /// password in it), the CA of its server's certificate, the file of the
    /// service's role's password. Reached when a batch of traits comes;
    /// while it cannot be, trait batches get 503 `register_unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_database: Option<crate::identity::postgres::Settings>,
    /// SHA-256 of the configuration file as read, for the log.
    #[serde(skip)]
    pub source_sha256: String,
    /// The file the configuration was read from (to read it again on
    /// `SIGHUP`).
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
    /// TLS files.
    pub tls: TlsFiles,
    /// Clients and their roles.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientEntry>,
}

fn default_max() -> u64 {
    DEFAULT_MAX_REQUEST_BYTES
}

fn default_log_file() -> u64 {
    crate::audit::DEFAULT_MAX_FILE_BYTES
}

fn default_unseal_window() -> u64 {
    3600
}

fn default_result_window() -> u64 {
    7 * 86_400
}

fn default_operation_ttl() -> u64 {
    86_400
}

fn default_renewal_years() -> u32 {
    crate::renewal::DEFAULT_PERIOD_YEARS
}

fn default_renewal_warning() -> u32 {
    crate::renewal::DEFAULT_WARNING_DAYS
}

fn default_body_idle() -> u64 {
    60
}

fn default_checkpoint() -> u64 {
    crate::audit::DEFAULT_CHECKPOINT_SECONDS
}

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("invalid configuration {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Where project results wait (resolved at load).
    pub fn results_dir(&self) -> PathBuf {
        self.results_dir
            .clone()
            .unwrap_or_else(|| self.audit_dir.with_file_name("results"))
    }

    /// Reads a configuration and makes its paths absolute.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a configuration's text, as read from `path`
    /// (relative paths are taken from its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })?;
        c.source_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
        c.source_path = Some(path.to_owned());
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut c.ceremony,
            &mut c.keyring,
            &mut c.audit_dir,
            &mut c.tls.cert,
            &mut c.tls.key,
            &mut c.tls.client_ca,
        ]
        .into_iter()
        .chain(c.tls.crl.as_mut())
        .chain(c.register.as_mut())
        .chain(
            c.register_database
                .iter_mut()
                .flat_map(|d| [&mut d.ca, &mut d.password_file]),
        ) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let results = c
            .results_dir
            .take()
            .unwrap_or_else(|| c.audit_dir.with_file_name("results"));
        c.results_dir = Some(if results.is_relative() {
            base.join(results)
        } else {
            results
        });
        // A production build (without the `dev-kit` feature) serves no
        // deployment whose secrets were made to be thrown away.
        if c.insecure_dev_env && !cfg!(feature = "dev-kit") {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "insecure_dev_env = true: this is a throw-away development deployment, \
                          which a production build refuses to serve"
                    .to_owned(),
            });
        }
        if c.register.is_some() && c.register_database.is_some() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "both `register` and `[register_database]`: name one register".to_owned(),
            });
        }
        // DESIGN §3 (the CNIL's demand): renewed at least every five years.
        // 0 makes the key due at once (renewal drills, tests).
        if c.renewal_period_years > crate::renewal::DEFAULT_PERIOD_YEARS {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "renewal_period_years = {}: the key is renewed at least every {} years",
                    c.renewal_period_years,
                    crate::renewal::DEFAULT_PERIOD_YEARS
                ),
            });
        }
        if c.renewal_warning_days > 366 * crate::renewal::DEFAULT_PERIOD_YEARS {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "renewal_warning_days = {}: at most the renewal period",
                    c.renewal_warning_days
                ),
            });
        }
        for e in &c.clients {
            // Names go into the log and into proposals: one plain spelling.
            if !crate::seal::is_valid_holder_name(&e.name) {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "client name {:?}: 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'",
                        e.name
                    ),
                });
            }
            if c.clients.iter().filter(|o| o.name == e.name).count() > 1 {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "client name {:?} is given twice: names identify clients in the log, \
                         the receipts and the quotas",
                        e.name
                    ),
                });
            }
            if e.fingerprint.is_none() && e.subject.is_none() {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: format!("client {:?} needs a fingerprint or a subject", e.name),
                });
            }
        }
        Ok(c)
    }

    /// True when some entry matches the peer, whatever its roles.
    pub fn knows(&self, id: &PeerIdentity) -> bool {
        self.clients.iter().any(|e| e.matches(id))
    }

    /// The first entry granting `role` to this peer.
    pub fn entry_with_role(&self, id: &PeerIdentity, role: Role) -> Option<&ClientEntry> {
        self.clients
            .iter()
            .find(|e| e.matches(id) && e.roles.contains(&role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fingerprint: Option<&str>, subject: Option<&str>) -> ClientEntry {
        ClientEntry {
            name: "client".into(),
            roles: vec![Role::Submitter],
            fingerprint: fingerprint.map(str::to_owned),
            subject: subject.map(str::to_owned),
            purposes: Vec::new(),
            quota: None,
        }
    }

    fn id(fingerprint: &str, subject: &str) -> PeerIdentity {
        PeerIdentity {
            subject: subject.into(),
            fingerprint: fingerprint.into(),
        }
    }

    #[test]
    fn an_entry_with_a_fingerprint_and_a_subject_needs_both() {
        let both = entry(Some("ab12"), Some("CN=sub"));
        assert!(both.matches(&id("AB12", "CN=sub")));
        assert!(
            !both.matches(&id("ffff", "CN=sub")),
            "same subject, another certificate"
        );
        assert!(!both.matches(&id("ab12", "CN=other")));
        assert!(entry(Some("ab12"), None).matches(&id("ab12", "CN=any")));
        assert!(entry(None, Some("CN=sub")).matches(&id("ffff", "CN=sub")));
        assert!(!entry(None, None).matches(&id("ab12", "CN=sub")));
    }
}

#[cfg(test)]
mod deploy_example {
    use super::Config;

    /// Client names key the quotas' counters: a name given twice is refused.
    #[test]
    fn a_client_name_given_twice_is_refused() {
        let text = include_str!("../deploy/server.toml")
            .replace("name = \"audit-1\"", "name = \"ssp-insee\"");
        let e = Config::parse(&text, std::path::Path::new("/etc/cstatns/server.toml"))
            .expect_err("refused");
        assert!(e.to_string().contains("given twice"), "{e}");
    }

    /// The hardened example in `deploy/` stays a configuration the service reads.
    #[test]
    fn the_deploy_example_configuration_parses() {
        let c: Config = toml::from_str(include_str!("../deploy/server.toml")).expect("parses");
        assert!(c.tls.crl.is_some());
        assert!(c.clients.iter().all(|e| e.fingerprint.is_some()));
        assert!(!c.insecure_dev_env);
    }
}

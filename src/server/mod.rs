//! The service: axum on tokio behind rustls (TLS 1.3, client certificate
//! mandatory), with roles bound to certificates by the configuration.
//!
//! [`app`] is a plain function of the state so that tests can drive the router
//! directly; [`Server::bind`] puts it behind real TLS. Every request carries
//! the [`PeerIdentity`] of its connection as an extension, set by the accept
//! loop from the verified client certificate — never from anything the client
//! says.

mod audit;
mod batch;
mod error;
mod guard;
mod metrics;
mod operations;
mod receipts;
mod results;
mod unseal;
mod web;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use tokio::net::TcpListener;

pub use crate::wire::{Status, UnsealReply};
pub use batch::set_cores;
pub use error::ApiError;

use crate::audit::AuditLog;
use crate::config::{ClientEntry, Config, Role};
use crate::event::{Event, PublicHex, Term};
use crate::receipt::Receipt;
use crate::seal::{
    CeremonyRecord, Journal, Keys, LogSigningKey, SealCause, SealedKeyring, Sealing, Vault,
};
use crate::tls::PeerIdentity;

/// Authenticated connections open at once (each batch holds a few MiB, so
/// this also bounds memory). Taken once the TLS handshake has succeeded, so
/// that silent or unauthenticated sockets cannot use the slots up.
const MAX_CONNECTIONS: usize = 256;

/// Authenticated connections one certificate may hold open at once: a
/// client (or a stolen certificate) cannot take every slot of
/// [`MAX_CONNECTIONS`] and lock the others out.
const MAX_CONNECTIONS_PER_CLIENT: usize = MAX_CONNECTIONS / 2;

/// Connections kept for key holders and the operator once the others are
/// all taken.
const RESERVED_CONNECTIONS: usize = 16;

/// TLS handshakes under way at once; past that a new socket is closed at
/// once. Each lasts at most [`HANDSHAKE_TIMEOUT`].
const MAX_HANDSHAKES: usize = 1024;

/// At most one `connection_refused` record per reason per this interval;
/// the refusals in between are counted (`refusals`) by the next record.
const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything the handlers share.
pub struct AppState {
    config: Config,
    /// What a reload (`SIGHUP`) replaces: the client table and the TLS
    /// configuration (certificates, client CA, CRL), for new requests and
    /// connections.
    live: std::sync::RwLock<Arc<Live>>,
    vault: Vault,
    receipts: receipts::Receipts,
    audit: AuditLog,
    refusals: RefusalLog,
    /// The guard's quota counters.
    guard: guard::Guard,
    /// Connections open per certificate fingerprint.
    per_client: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    /// The register trait batches are looked up in, or why there is none.
    register: Result<Arc<crate::identity::Backend>, &'static str>,
}

/// The register that trait batches are looked up in: the embedded one,
/// read whole now, or PostgreSQL, reached when a batch needs it (the service
/// starts whether or not the database answers); or why there is none.
fn open_register(config: &Config) -> Result<Arc<crate::identity::Backend>, &'static str> {
    use crate::identity::Backend;
    match (&config.register, &config.register_database) {
        (None, None) => Err("this service has no register configured (`register` or `[register_database]` in server.toml): it takes NIR batches only"),
        (Some(path), _) => match crate::identity::store::open(path) {
            Ok(r) => {
                tracing::info!(people = r.len(), "register read");
                Ok(Arc::new(Backend::Embedded(r)))
            }
            Err(e) => {
                tracing::error!(error = %crate::describe(&e), "the register cannot be read: trait batches are refused");
                Err("the register cannot be read; the service's log says why")
            }
        },
        (None, Some(settings)) => match crate::identity::postgres::Database::new(settings) {
            Ok(db) if tokio::runtime::Handle::try_current().is_ok() => {
                tracing::info!("register in PostgreSQL: reached when a batch of traits comes");
                Ok(Arc::new(Backend::Postgres(Box::new(crate::identity::postgres::PgRegister::new(db)))))
            }
            Ok(_) => Err("the register database needs the service's runtime"),
            Err(e) => {
                tracing::error!(error = %crate::describe(&e), "the register database's settings are not usable: trait batches are refused");
                Err("the register database's settings are not usable; the service's log says why")
            }
        },
    }
}

/// One of a certificate's [`MAX_CONNECTIONS_PER_CLIENT`] slots, given back
/// on drop.
struct PerClient {
    open: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    fingerprint: String,
}

impl PerClient {
    fn take(
        open: &Arc<Mutex<std::collections::HashMap<String, usize>>>,
        fingerprint: &str,
    ) -> Option<Self> {
        let mut map = open.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(fingerprint.to_owned()).or_default();
        if *n >= MAX_CONNECTIONS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(Self {
            open: open.clone(),
            fingerprint: fingerprint.to_owned(),
        })
    }
}

impl Drop for PerClient {
    fn drop(&mut self) {
        let mut map = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.fingerprint) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.fingerprint);
            }
        }
    }
}

/// The service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The ceremony record or keyring is unusable.
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    /// TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The traceability log cannot be written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A file could not be read or the address bound.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// The reloadable part of the configuration.
struct Live {
    clients: Vec<ClientEntry>,
    tls: Arc<rustls::ServerConfig>,
    /// The client verifier in `tls` (CA and CRL), to check again, after a
    /// reload, the clients of connections opened before it.
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// How many reloads this configuration comes after.
    generation: u64,
}

/// The holder role only for the holders the record lists: a holder revoked
/// by a re-sharing keeps no say in key operations.
fn check_holders(clients: &[ClientEntry], record: &CeremonyRecord) -> Result<(), String> {
    for c in clients {
        if c.roles.contains(&crate::config::Role::Holder) {
            let listed = c.fingerprint.as_deref().is_some_and(|f| {
                record
                    .holders()
                    .iter()
                    .any(|h| h.fingerprint.eq_ignore_ascii_case(f))
            });
            if !listed {
                return Err(format!(
                    "client {} has the holder role but its fingerprint is not a holder's of \
                     the ceremony record (revoked?): remove the role or the entry",
                    c.name
                ));
            }
        }
    }
    Ok(())
}

/// Refuses key files that others may read or write: the TLS private key,
/// and the keyring (sealed, but a copy is an offline target).
#[cfg(unix)]
fn check_private_file(path: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| StartError::Io {
        what: format!("cannot read {}", path.display()),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(StartError::Io {
            what: format!(
                "{} is open to other users (mode {mode:o}): make it 0600 or 0640 (chmod o-rwx)",
                path.display()
            ),
            source: std::io::Error::other("refused"),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_file(_path: &Path) -> Result<(), StartError> {
    Ok(())
}

/// The TLS configuration the files name and its client verifier, after
/// checking the key file and the CRL (issued by the client CA, not past
/// its next update).
#[allow(clippy::type_complexity)] // a pair, once
fn tls_of(
    config: &Config,
) -> Result<
    (
        Arc<rustls::ServerConfig>,
        Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ),
    StartError,
> {
    check_private_file(&config.tls.key)?;
    if let Some(crl) = &config.tls.crl {
        let next = crate::tls::check_crls(crl, &config.tls.client_ca)?;
        let days = (next - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
        tracing::info!(days_left = days, "CRL in force until its next update");
        if days < 7 {
            tracing::warn!(
                days_left = days,
                "the CRL's next update is near: publish a new CRL and reload"
            );
        }
    }
    let verifier = crate::tls::client_verifier(&config.tls.client_ca, config.tls.crl.as_deref())?;
    let tls = crate::tls::server_config_with(&config.tls.cert, &config.tls.key, verifier.clone())?;
    Ok((tls, verifier))
}

/// The files a configuration names, read and checked as the service reads
/// them at start ([`AppState::load`] and [`check_config`]).
struct Checked {
    record: CeremonyRecord,
    keyring: SealedKeyring,
    tls: Arc<rustls::ServerConfig>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl Checked {
    fn of(config: &Config) -> Result<Self, StartError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| StartError::Io {
                what: format!("cannot read {}", p.display()),
                source,
            })
        };
        let record = CeremonyRecord::from_json(&read(&config.ceremony)?)?;
        record.verify_signature()?;
        check_holders(&config.clients, &record).map_err(refuse)?;
        let (tls, verifier) = tls_of(config)?;
        check_private_file(&config.keyring)?;
        // Never back to an older revision of the record: old shares (a
        // revoked holder's among them) would open the keys again.
        if let Some(last) = crate::audit::last_details_of(&config.audit_dir, "service_start")
            .and_then(|d| d["ceremony_revision"].as_u64())
        {
            if u64::from(record.revision()) < last {
                return Err(refuse(format!(
                    "the ceremony record is revision {}, but the service last ran on revision {last}: \
                     an older record (and its shares) is not taken back",
                    record.revision()
                )));
            }
        }
        let keyring = SealedKeyring::from_json(&read(&config.keyring)?)?;
        Ok(Self {
            record,
            keyring,
            tls,
            verifier,
        })
    }
}

fn refuse(what: String) -> StartError {
    StartError::Io {
        what,
        source: std::io::Error::other("refused"),
    }
}

/// `cstatns serve --check-config`: reads and checks every file `config`
/// names as the service does at start (the ceremony record and its
/// signature, the holders, TLS certificate, key, client CA and CRL, the
/// sealed keyring, the traceability log with the same verifier as `cstatns
/// audit verify`, the register), without binding the address, writing a
/// file, or reaching the register database. Returns what it found, one
/// line each (no secret in them).
pub fn check_config(config: &Config) -> Result<Vec<String>, StartError> {
    let Checked { record, .. } = Checked::of(config)?;
    let mut found = vec![
        format!("listen: {}", config.listen),
        format!(
            "ceremony record: revision {}, {} of {} holders, signature valid",
            record.revision(),
            record.threshold(),
            record.holders().len()
        ),
        format!(
            "TLS: certificate and key read, client CA read, {}",
            if config.tls.crl.is_some() {
                "CRL checked"
            } else {
                "no CRL"
            }
        ),
        "keyring: read (sealed: its keys open only with the holders' shares)".into(),
    ];
    let roles = |r: Role| {
        config
            .clients
            .iter()
            .filter(|c| c.roles.contains(&r))
            .count()
    };
    found.push(format!(
        "clients: {} ({} submitters, {} holders, {} auditors, {} operators)",
        config.clients.len(),
        roles(Role::Submitter),
        roles(Role::Holder),
        roles(Role::Auditor),
        roles(Role::Operator)
    ));
    // The files a start verifies, chosen as it chooses them.
    let files =
        crate::audit::files_to_verify(&config.audit_dir).map_err(|source| StartError::Io {
            what: format!("cannot read {}", config.audit_dir.display()),
            source,
        })?;
    if files.is_empty() {
        found.push("traceability log: none yet (started at the first start)".into());
    } else {
        let v = crate::audit::verify::verify_files(&files, &record, None).map_err(|e| {
            crate::audit::AuditError::DoesNotVerify {
                dir: config.audit_dir.clone(),
                reason: e.to_string(),
            }
        })?;
        found.push(format!(
            "traceability log: {} records in {} files verified, {} signed checkpoints, {} records after the last",
            v.records, v.files, v.checkpoints, v.unsigned_records
        ));
    }
    found.push(match (&config.register, &config.register_database) {
        (None, None) => "register: none (NIR batches only)".into(),
        (Some(path), _) => {
            let r = crate::identity::store::open(path).map_err(|e| StartError::Io {
                what: format!("cannot read the register {}", path.display()),
                source: std::io::Error::other(crate::describe(&e)),
            })?;
            format!("register: embedded, {} people", r.len())
        }
        (None, Some(settings)) => {
            crate::identity::postgres::Database::new(settings).map_err(|e| StartError::Io {
                what: "the register database's settings are not usable".into(),
                source: std::io::Error::other(crate::describe(&e)),
            })?;
            "register: PostgreSQL, settings usable (the database is not contacted)".into()
        }
    });
    Ok(found)
}

impl AppState {
    /// Loads the ceremony record (checking its signature) and the sealed
    /// keyring named by the configuration, and opens the log. Starts sealed.
    pub fn load(config: Config) -> Result<Self, StartError> {
        let Checked {
            record,
            keyring,
            tls,
            verifier,
        } = Checked::of(&config)?;
        let audit =
            AuditLog::open_verified(&config.audit_dir, &record, config.audit_max_file_bytes)?;
        // From the log just verified.
        let guard = guard::Guard::restore(&config.audit_dir, &config.clients);
        for c in &config.clients {
            if c.roles.contains(&Role::Submitter) && c.quota.is_none() {
                tracing::warn!(client = %c.name, "a submitter without a quota: nothing limits the codes it may get");
            }
        }
        let register = open_register(&config);
        let vault = Vault::new(record, keyring)
            .with_keyring_file(config.keyring.clone())
            .with_renewal_period(config.renewal_period_years);
        let live = std::sync::RwLock::new(Arc::new(Live {
            clients: config.clients.clone(),
            tls,
            verifier,
            generation: 0,
        }));
        Ok(Self {
            receipts: receipts::Receipts::new(&config.audit_dir),
            config,
            live,
            vault,
            audit,
            refusals: RefusalLog::default(),
            guard,
            per_client: Arc::default(),
            register,
        })
    }

    /// The register, answering now (a round trip for PostgreSQL), or why
    /// there is none.
    async fn register(&self) -> Result<Arc<crate::identity::Backend>, &'static str> {
        let register = self.register.clone()?;
        if let Err(e) = register.ready().await {
            tracing::error!(error = %crate::describe(&e), "the register cannot be reached: a batch of traits is refused");
            return Err("the register database cannot be reached; the service's log says why");
        }
        Ok(register)
    }

    /// The keys for a batch, or 503 while sealed.
    fn keys(&self) -> Result<Keys, ApiError> {
        self.vault.keys().ok_or(ApiError::Sealed)
    }

    /// The ceremony record.
    fn record(&self) -> &CeremonyRecord {
        self.vault.record()
    }

    /// The log, as the vault records through it, for `actor`'s request.
    fn journal<'a>(&'a self, actor: Option<&'a PeerIdentity>) -> Logbook<'a> {
        Logbook { state: self, actor }
    }

    fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The client table in force.
    fn clients(&self) -> Vec<ClientEntry> {
        self.live().clients.clone()
    }

    /// True when some entry of the client table matches the peer.
    fn knows(&self, id: &PeerIdentity) -> bool {
        self.live().clients.iter().any(|e| e.matches(id))
    }

    /// The first entry of the client table granting `role` to the peer.
    fn entry_with_role(&self, id: &PeerIdentity, role: Role) -> Option<ClientEntry> {
        self.live()
            .clients
            .iter()
            .find(|e| e.matches(id) && e.roles.contains(&role))
            .cloned()
    }

    /// Reads the configuration file again. The client table, the TLS
    /// certificates and key and the CRL take effect for new connections and
    /// requests; the other settings at the next start. A configuration that
    /// does not load, or that the service would refuse at start, is refused
    /// whole: the previous one stays in force. Either way, logged.
    pub fn reload(&self) -> Result<(), StartError> {
        let result = self.load_again();
        match &result {
            Ok(event) => {
                tracing::info!("configuration reloaded");
                self.log(event.clone(), None);
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload refused; the previous one stays in force");
                self.log(
                    Event::ConfigReloadRefused {
                        reason: Term::from_error(e),
                    },
                    None,
                );
            }
        }
        result.map(drop)
    }

    fn load_again(&self) -> Result<Event, StartError> {
        let path = self
            .config
            .source_path
            .as_deref()
            .ok_or_else(|| StartError::Io {
                what: "this service was not started from a configuration file".into(),
                source: std::io::Error::other("no file"),
            })?;
        let new = Config::load(path)?;
        check_holders(&new.clients, self.record()).map_err(|what| StartError::Io {
            what,
            source: std::io::Error::other("refused"),
        })?;
        let (tls, verifier) = tls_of(&new)?;
        let crl_sha256 = match &new.tls.crl {
            Some(p) => Some(PublicHex::of_hex(&hex::encode(
                <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(p).map_err(|source| {
                    StartError::Io {
                        what: format!("cannot read {}", p.display()),
                        source,
                    }
                })?),
            ))),
            None => None,
        };
        let rest = |c: &Config| {
            let mut c = c.clone();
            c.clients.clear();
            c.tls = new.tls.clone();
            toml::to_string(&c).unwrap_or_default()
        };
        if rest(&new) != rest(&self.config) {
            tracing::warn!(
                "settings other than the client table and the TLS files changed: they take effect at the next start"
            );
        }
        let event = Event::ConfigReloaded {
            config_sha256: PublicHex::of_hex(&new.source_sha256),
            clients: new.clients.len() as u64,
            crl_sha256,
        };
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        let generation = live.generation + 1;
        *live = Arc::new(Live {
            clients: new.clients,
            tls,
            verifier,
            generation,
        });
        Ok(event)
    }

    /// The configuration entry granting `role` to the peer, or 403.
    fn require(&self, id: &PeerIdentity, role: Role) -> Result<ClientEntry, ApiError> {
        self.entry_with_role(id, role).ok_or_else(|| {
            self.log(
                Event::RequestRefused {
                    operation: None,
                    reason: Term::from("missing_role"),
                    role: Some(role),
                },
                Some(id),
            );
            ApiError::Forbidden(role)
        })
    }

    /// Appends to the log; a failure is reported to the server log and the
    /// caller decides whether the operation must be refused.
    fn log(&self, event: Event, actor: Option<&PeerIdentity>) -> Option<u64> {
        // An append waits for its fsync, which concurrent batches share: on
        // an async worker, tell the runtime, so that the worker's other
        // tasks (handshakes, other batches) go on meanwhile.
        let append = || self.audit.append(&event, actor);
        let appended = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(append)
            }
            _ => append(),
        };
        self.logged(&event, appended)
    }

    /// [`Self::log`] on the calling thread, whatever it is: for the vault,
    /// which logs in the middle of handling a share, so that the thread
    /// whose stack the share went through stays the one that goes on (and
    /// scrubs it, see `unseal`), rather than being parked by the runtime
    /// with it.
    fn log_here(&self, event: Event, actor: Option<&PeerIdentity>) -> Option<u64> {
        let appended = self.audit.append(&event, actor);
        self.logged(&event, appended)
    }

    fn logged(
        &self,
        event: &Event,
        appended: Result<u64, crate::audit::AuditError>,
    ) -> Option<u64> {
        match appended {
            Ok(seq) => {
                metrics::logged(event.name());
                Some(seq)
            }
            Err(e) => {
                tracing::error!(error = %e, event = event.name(), "traceability log write failed");
                None
            }
        }
    }
}

/// The vault as seen by one request: records go to the log with the
/// request's certificate as actor.
struct Logbook<'a> {
    state: &'a AppState,
    actor: Option<&'a PeerIdentity>,
}

impl Journal for Logbook<'_> {
    fn record(&self, event: Event) -> bool {
        self.state.log_here(event, self.actor).is_some()
    }

    fn set_signer(&self, key: Option<Arc<LogSigningKey>>) {
        self.state.audit.set_signer(key);
    }

    fn checkpoint(&self, reason: &'static str) {
        if let Err(e) = self.state.audit.checkpoint(reason) {
            tracing::error!(error = %e, reason, "cannot write a checkpoint");
        }
    }
}

/// Reads a small request body whole (a share, an approval, a proposal),
/// at most `limit` bytes: 413 beyond, 400 if it cannot be read; either
/// refusal is logged (`request_refused`, with `operation`).
async fn read_small_body(
    state: &AppState,
    id: &PeerIdentity,
    operation: &'static str,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let e = match axum::body::to_bytes(body, limit).await {
        Ok(b) => return Ok(b),
        Err(e) if is_length_limit(&e) => ApiError::TooLarge(limit as u64),
        Err(_) => ApiError::BadRequest("the request body could not be read".into()),
    };
    state.log(
        Event::RequestRefused {
            operation: Some(crate::event::Term::from(operation)),
            reason: crate::event::Term::from(e.code()),
            role: None,
        },
        Some(id),
    );
    Err(e)
}

/// Whether reading a body failed on its length limit (axum's
/// `LengthLimitError`, somewhere in the error's chain).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The renewal schedule of the key chain the vault last opened, if any:
/// from the newest generation's creation date (or the ceremony's, for a
/// keyring that kept no dates).
fn schedule_of(state: &AppState, created: &[i64]) -> Option<crate::renewal::Schedule> {
    let last = *created.last()?;
    let last = if last > 0 {
        time::OffsetDateTime::from_unix_timestamp(last).ok()?
    } else {
        time::OffsetDateTime::parse(
            state.record().created(),
            &time::format_description::well_known::Rfc3339,
        )
        .ok()?
    };
    Some(crate::renewal::Schedule::of(
        last,
        time::OffsetDateTime::now_utc(),
        state.config.renewal_period_years,
        state.config.renewal_warning_days,
    ))
}

/// Adds [`crate::wire::RENEWAL_WARNING_HEADER`] to every response while the key is past
/// its renewal date (DESIGN §3: at least every five years).
async fn renewal_warning(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut resp = next.run(req).await;
    let view = state.vault.view();
    if let Some(s) = schedule_of(&state, &view.created) {
        if s.standing == crate::renewal::Standing::Overdue {
            let text = format!(
                "key renewal overdue since {} ({} days): holders must approve a renewal",
                s.due, -s.days_left
            );
            if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
                resp.headers_mut()
                    .insert(crate::wire::RENEWAL_WARNING_HEADER, v);
            }
        }
    }
    resp
}

/// Logs (and warns in the server log) that the renewal date is near or
/// past; at unseal, and once a day from housekeeping while it is.
fn notice_renewal(state: &AppState) {
    let view = state.vault.view();
    let Some(s) = schedule_of(state, &view.created) else {
        return;
    };
    if s.standing == crate::renewal::Standing::Current {
        return;
    }
    let overdue = s.standing == crate::renewal::Standing::Overdue;
    tracing::warn!(
        due = %s.due,
        days_left = s.days_left,
        overdue,
        "KEY RENEWAL DUE: holders must approve `keyceremony propose renew`"
    );
    state.log(
        Event::RenewalDue {
            generation: u32::try_from(view.created.len()).unwrap_or(u32::MAX),
            renewal_due: crate::event::Day::of(&s.due),
            days_left: s.days_left,
            overdue,
        },
        None,
    );
}

fn status_of(state: &AppState, id: &PeerIdentity) -> Status {
    let view = state.vault.view();
    let record = state.record();
    let t = record.threshold();
    Status {
        sealed: view.sealed,
        generation: view.generation,
        ceremony_id: record.ceremony_id().to_string(),
        key_check_value: record.key_check_value().to_owned(),
        threshold: t,
        holders_needed: if view.sealed {
            t.saturating_sub(view.holders_received.len())
        } else {
            0
        },
        holders_received: view.holders_received,
        insecure_dev_env: state.config.insecure_dev_env,
        audit: state.audit.health(),
        generations: view
            .created
            .iter()
            .zip(1u32..)
            .map(|(&t, generation)| crate::wire::GenerationInfo {
                generation,
                created: (t > 0)
                    .then(|| time::OffsetDateTime::from_unix_timestamp(t).ok())
                    .flatten()
                    .map(crate::event::rfc3339_seconds),
            })
            .collect(),
        renewal: schedule_of(state, &view.created),
        projects: state
            .vault
            .projects()
            .into_iter()
            .map(|p| crate::wire::ProjectInfo {
                project: p.id,
                end_date: p.end_date,
                purpose: p.terms.purpose,
                submitter: p.terms.submitter,
                matcher_fingerprint: p.terms.matcher_fingerprint,
                generation: p.generation,
            })
            .collect(),
        suspended: {
            let all = state.entry_with_role(id, Role::Operator).is_some()
                || state.entry_with_role(id, Role::Auditor).is_some();
            let live = state.live();
            let own = |name: &str| live.clients.iter().any(|e| e.name == name && e.matches(id));
            state
                .guard
                .suspensions()
                .into_iter()
                .filter(|s| all || own(&s.client))
                .collect()
        },
    }
}

async fn status(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
) -> Result<Json<Status>, ApiError> {
    // Any configured client may read the status; strangers to the
    // configuration are refused (and logged) as lacking the operator role.
    if !state.knows(&id) {
        state.require(&id, Role::Operator)?;
    }
    Ok(Json(status_of(&state, &id)))
}

/// A route the service does not have: 404, and logged like any refusal
/// (axum would otherwise answer on its own, and the log would not know).
async fn unknown_route(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<PeerIdentity>>,
) -> ApiError {
    refuse_route(&state, id, ApiError::NotFound)
}

/// A known route with a method it does not take: 405, logged.
async fn wrong_method(
    State(state): State<Arc<AppState>>,
    id: Option<Extension<PeerIdentity>>,
) -> ApiError {
    refuse_route(&state, id, ApiError::MethodNotAllowed)
}

fn refuse_route(state: &AppState, id: Option<Extension<PeerIdentity>>, e: ApiError) -> ApiError {
    state.log(
        Event::RequestRefused {
            operation: None,
            reason: crate::event::Term::from(e.code()),
            role: None,
        },
        id.as_ref().map(|Extension(id)| id),
    );
    e
}

async fn receipt(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    UrlPath(batch): UrlPath<String>,
) -> Result<Json<Receipt>, ApiError> {
    // Whoever sent batches: submitters, and matching bodies (renewals).
    if state.entry_with_role(&id, Role::Matcher).is_none() {
        state.require(&id, Role::Submitter)?;
    }
    // An older receipt is read from disk: off the async workers.
    let found = tokio::task::spawn_blocking(move || state.receipts.find(&batch, &id.fingerprint))
        .await
        .map_err(|_| ApiError::Internal)?;
    found.map(Json).ok_or(ApiError::NotFound)
}

/// `POST /v1/guard/{client}/release` (operator): lifts the suspension the
/// sweep detector put on a client (docs/guard.md). Logged before it takes
/// effect: while the log cannot be written, the client stays suspended.
async fn guard_release(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    UrlPath(client): UrlPath<String>,
) -> Result<Json<Status>, ApiError> {
    state.require(&id, Role::Operator)?;
    let Some(entry) = state.clients().into_iter().find(|e| e.name == client) else {
        return Err(ApiError::NotFound);
    };
    let was_suspended = state
        .guard
        .suspensions()
        .iter()
        .any(|s| s.client == entry.name);
    let logged = state.log(
        Event::GuardReleased {
            client: crate::event::ClientName::of_client(&entry),
            was_suspended,
        },
        Some(&id),
    );
    if logged.is_none() {
        return Err(ApiError::AuditUnavailable);
    }
    state.guard.release(&entry.name);
    if was_suspended {
        tracing::info!(client = %entry.name, "an operator lifted a client's suspension");
    }
    Ok(Json(status_of(&state, &id)))
}

/// A path whose percent-decoded bytes are not UTF-8 names no route: 404,
/// logged, as JSON (axum's path extractor would answer a plain-text 400 of
/// its own, which the log would not know).
async fn clean_path(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = percent_encoding::percent_decode_str(req.uri().path());
    if path.decode_utf8().is_err() {
        let id = req
            .extensions()
            .get::<PeerIdentity>()
            .cloned()
            .map(Extension);
        return refuse_route(&state, id, ApiError::NotFound).into_response();
    }
    next.run(req).await
}

/// A GET route that does not take HEAD (axum's `get` would run the handler
/// for a HEAD too, with its side effects: an `audit_read` record, a result
/// taken out and put back).
fn get_only<H, T>(handler: H) -> axum::routing::MethodRouter<Arc<AppState>>
where
    H: axum::handler::Handler<T, Arc<AppState>>,
    T: 'static,
{
    get(handler).head(wrong_method)
}

/// The router. Requests must carry a [`PeerIdentity`] extension.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/status", get_only(status))
        .route("/v1/unseal", post(unseal::unseal))
        .route("/v1/cstatns", post(batch::derive))
        .route("/v1/renewal", post(batch::renew))
        .route("/v1/receipts/{id}", get_only(receipt))
        .route("/v1/seal", post(unseal::seal))
        .route("/v1/guard/{client}/release", post(guard_release))
        .route("/v1/audit", get_only(audit::stream))
        .route(
            "/v1/operations",
            get_only(operations::list).post(operations::propose),
        )
        .route("/v1/operations/{id}/approve", post(operations::approve))
        .route("/v1/operations/{id}/cancel", post(operations::cancel))
        .route("/v1/projects/{id}/cspens", post(batch::cspens))
        .route("/v1/projects/{id}/renewal", post(batch::cspens_renewal))
        .route(
            "/v1/projects/{id}/results/{batch}",
            get_only(results::fetch),
        )
        .route(
            "/audit/",
            web::asset(web::INDEX, "text/html; charset=utf-8"),
        )
        .route(
            "/audit/audit.js",
            web::asset(web::SCRIPT, "text/javascript; charset=utf-8"),
        )
        .route(
            "/audit/audit.css",
            web::asset(web::STYLE, "text/css; charset=utf-8"),
        )
        .route("/audit/icon.svg", web::asset(web::ICON, "image/svg+xml"))
        .route("/audit/summary.json", get_only(web::summary))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            clean_path,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            renewal_warning,
        ))
        .with_state(state)
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    /// `metrics_listen`'s, when configured.
    metrics: Option<TcpListener>,
    state: Arc<AppState>,
    /// Installed before the (long) log check, so that a reload asked for
    /// during the start waits for the service rather than ending it
    /// (SIGHUP's default action).
    hangups: Hangups,
    hardening: Option<crate::harden::Hardening>,
}

impl Server {
    /// Loads everything named by the configuration and binds the address
    /// (`listen` overrides the configuration's).
    pub async fn bind(config: Config, listen: Option<&str>) -> Result<Self, StartError> {
        let hangups = Hangups::new();
        let addr = listen.unwrap_or(&config.listen).to_owned();
        let state = Arc::new(AppState::load(config)?);
        let bind = |addr: String| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|source| StartError::Io {
                    what: format!("cannot listen on {addr}"),
                    source,
                })
        };
        let listener = bind(addr).await?;
        let metrics = match state.config.metrics_listen.clone() {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self {
            listener,
            metrics,
            state,
            hangups,
            hardening: None,
        })
    }

    /// Records in `service_start` what [`crate::harden::harden`] applied.
    pub fn with_hardening(mut self, h: crate::harden::Hardening) -> Self {
        self.hardening = Some(h);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The metrics listener's bound address, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The shared state (for status reporting by the embedding program).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` completes; logs start and stop.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let state = self.state.clone();
        let revision = state.record().revision();
        let last_revision = crate::audit::last_details_of(&state.config.audit_dir, "service_start")
            .map(|d| {
                d["ceremony_revision"]
                    .as_u64()
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(1)
            });
        // A new revision of the record since the last start: a re-sharing.
        if last_revision.unwrap_or(1) != revision {
            let record = state.record();
            tracing::warn!(
                revision,
                "the master secret was re-shared since the last start"
            );
            let logged = state.log(
                Event::Resharing {
                    revision,
                    previous: PublicHex::of_hex(record.previous_hex().unwrap_or_default()),
                    threshold: record.threshold() as u64,
                    holders: record
                        .holders()
                        .iter()
                        .map(|h| crate::event::HolderName::of_holder(&h.name))
                        .collect(),
                },
                None,
            );
            if logged.is_none() {
                return Err(StartError::Io {
                    what: "cannot write the traceability log at start".into(),
                    source: std::io::Error::other("log write failed"),
                });
            }
        }
        if state
            .log(
                Event::ServiceStart {
                    ceremony_id: PublicHex::of_hex(&state.record().ceremony_id().to_string()),
                    config_sha256: PublicHex::of_hex(&state.config.source_sha256),
                    hardening: self.hardening,
                    insecure_dev_env: state.config.insecure_dev_env,
                    ceremony_revision: Some(revision),
                },
                None,
            )
            .is_none()
        {
            return Err(StartError::Io {
                what: "cannot write the traceability log at start".into(),
                source: std::io::Error::other("log write failed"),
            });
        }
        let router = app(state.clone());
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let metrics = self
            .metrics
            .map(|l| tokio::spawn(metrics::serve(l, state.clone())));
        let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let reserved = Arc::new(tokio::sync::Semaphore::new(RESERVED_CONNECTIONS));
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::pin!(shutdown);
        let mut hangups = self.hangups;
        loop {
            let (tcp, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                },
                () = hangups.next() => {
                    // Reading files: off the async workers.
                    let state = state.clone();
                    let _ = tokio::task::spawn_blocking(move || state.reload()).await;
                    continue;
                }
                () = &mut shutdown => break,
            };
            let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "connection refused: {MAX_HANDSHAKES} handshakes under way");
                state.refusals.refuse(&state, "too many handshakes");
                continue;
            };
            // The configuration this connection's handshake runs under: a
            // reload during it is caught at the first request.
            let live = state.live();
            let acceptor = tokio_rustls::TlsAcceptor::from(live.tls.clone());
            let accepted_under = live.generation;
            drop(live);
            let router = router.clone();
            let state = state.clone();
            let connections = connections.clone();
            let reserved = reserved.clone();
            let idle =
                std::time::Duration::from_secs(state.config.body_idle_timeout_seconds.max(1));
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "TLS handshake refused");
                        return state.refusals.refuse_error(&state, &e);
                    }
                    Err(_) => return state.refusals.refuse(&state, "handshake timed out"),
                };
                drop(handshake);
                if !crate::tls::resumed_certificate_valid(tls.get_ref().1) {
                    tracing::info!(%peer, "resumed TLS session refused: its client certificate has expired");
                    return state.refusals.refuse(&state, "certificate expired");
                }
                let Some(id) = crate::tls::peer_identity(tls.get_ref().1) else {
                    // The verifier requires a certificate, so this cannot
                    // happen; should it, it is refused like any other.
                    return state.refusals.refuse(&state, "no peer identity");
                };
                // Holders and the operator keep slots of their own: however
                // many connections the others hold, the service can still be
                // unsealed, sealed and looked at.
                let keeper = [Role::Holder, Role::Operator]
                    .into_iter()
                    .any(|r| state.entry_with_role(&id, r).is_some());
                let permit = connections.clone().try_acquire_owned().or_else(|e| {
                    if keeper {
                        reserved.clone().try_acquire_owned()
                    } else {
                        Err(e)
                    }
                });
                let Ok(_permit) = permit else {
                    tracing::warn!(%peer, "connection refused: {MAX_CONNECTIONS} already open");
                    return state.refusals.refuse(&state, "too many connections");
                };
                // The certificate chain, to check it again after a reload.
                let chain: Vec<_> = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default();
                let Some(_mine) = PerClient::take(&state.per_client, &id.fingerprint) else {
                    tracing::warn!(%peer, client = %id.subject, "connection refused: \
                        {MAX_CONNECTIONS_PER_CLIENT} already open for this certificate");
                    return state
                        .refusals
                        .refuse(&state, "too many connections for one client");
                };
                let svc = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        let refused = still_valid(&state, &id, &chain, accepted_under);
                        req.extensions_mut().insert(id.clone());
                        let router = router.clone();
                        async move {
                            use tower::ServiceExt;
                            if let Err(e) = refused {
                                use axum::response::IntoResponse;
                                let mut r = e.into_response();
                                r.headers_mut().insert(
                                    axum::http::header::CONNECTION,
                                    axum::http::HeaderValue::from_static("close"),
                                );
                                return Ok(r);
                            }
                            router.oneshot(req.map(axum::body::Body::new)).await
                        }
                    },
                );
                // A client that stops taking the answer is cut off after the
                // idle timeout, so that the answer chunks made for it (and the
                // connection's buffers) do not stay in memory for ever.
                let mut tls = tokio_io_timeout::TimeoutStream::new(tls);
                tls.set_write_timeout(Some(idle));
                let io = hyper_util::rt::TokioIo::new(Box::pin(tls));
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(io, svc)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        housekeeping.abort();
        if let Some(m) = metrics {
            m.abort();
        }
        // Running batches end first (each logs its end), then the stop, then
        // the last checkpoint covers them all.
        let journal = state.journal(None);
        match state.vault.seal(&journal, SealCause::Stop).await {
            // The vault logged the stop, signed the last checkpoint and took
            // the log key back.
            Sealing::Sealed { .. } => {}
            other => {
                let keys_wiped = other == Sealing::WasSealed;
                state.log(Event::ServiceStop { keys_wiped }, None);
            }
        }
        // Every receipt given so far on disk before the process ends.
        state.receipts.close();
        Ok(())
    }
}

/// A connection opened before a reload: its client certificate checked
/// again against the CA and CRL now in force (a certificate revoked since
/// must not keep a keep-alive connection open). Refused, logged, and the
/// connection closed.
fn still_valid(
    state: &AppState,
    id: &PeerIdentity,
    chain: &[rustls::pki_types::CertificateDer<'static>],
    accepted_under: u64,
) -> Result<(), ApiError> {
    let live = state.live();
    if live.generation == accepted_under {
        return Ok(());
    }
    let ok = chain.split_first().is_some_and(|(end, rest)| {
        live.verifier
            .verify_client_cert(end, rest, rustls::pki_types::UnixTime::now())
            .is_ok()
    });
    if ok {
        return Ok(());
    }
    state.log(
        Event::RequestRefused {
            operation: None,
            reason: Term::from("certificate_no_longer_valid"),
            role: None,
        },
        Some(id),
    );
    Err(ApiError::CertificateNoLongerValid)
}

/// `SIGHUP`s, which ask for a reload (never ready off Unix, or if the
/// handler cannot be installed).
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn new() -> Self {
        #[cfg(unix)]
        {
            let signal =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            if signal.is_none() {
                tracing::warn!("cannot listen for SIGHUP: no reload without a restart");
            }
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
            self.signal = None;
        }
        std::future::pending::<()>().await;
    }
}

/// Writes `connection_refused` records in bounded form: at most one per
/// kind of refusal per [`REFUSAL_LOG_INTERVAL`]; the refusals in between are
/// counted and written by the next record of that kind, or by housekeeping
/// (`refusals`: how many refusals the record stands for, when more than
/// one). A flood of bad connections costs a few log writes a second, not one
/// fsync each, and every refusal is still counted.
#[derive(Default)]
struct RefusalLog {
    /// Per kind: when its last record was written, refusals not yet
    /// written, and the reason of the newest of them.
    kinds: Mutex<std::collections::HashMap<&'static str, Pending>>,
}

#[derive(Default)]
struct Pending {
    last: Option<std::time::Instant>,
    count: u64,
    reason: Option<Term>,
}

impl RefusalLog {
    fn refuse(&self, state: &AppState, reason: &'static str) {
        self.record(state, reason, Term::from(reason));
    }

    /// A failed handshake: all such refusals are one kind (their texts vary
    /// with what the peer sent), each record naming the newest reason.
    fn refuse_error(&self, state: &AppState, e: &(dyn std::error::Error + 'static)) {
        self.record(state, "handshake", Term::from_error(e));
    }

    fn record(&self, state: &AppState, kind: &'static str, reason: Term) {
        metrics::refused(kind);
        let now = std::time::Instant::now();
        let count = {
            let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            let p = kinds.entry(kind).or_default();
            p.count += 1;
            if p.last
                .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL)
            {
                p.reason = Some(reason);
                return;
            }
            p.last = Some(now);
            p.reason = None;
            std::mem::take(&mut p.count)
        };
        write_refusal(state, reason, count);
    }

    /// Writes the counts held back (from housekeeping), once their interval
    /// is over.
    fn flush(&self, state: &AppState) {
        let now = std::time::Instant::now();
        let due: Vec<(Term, u64)> = {
            let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            kinds
                .values_mut()
                .filter(|p| {
                    p.count > 0
                        && p.last
                            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL)
                })
                .filter_map(|p| {
                    p.last = Some(now);
                    let reason = p.reason.take()?;
                    Some((reason, std::mem::take(&mut p.count)))
                })
                .collect()
        };
        for (reason, count) in due {
            write_refusal(state, reason, count);
        }
    }
}

fn write_refusal(state: &AppState, reason: Term, count: u64) {
    state.log(
        Event::ConnectionRefused {
            reason,
            refusals: (count > 1).then_some(count),
        },
        None,
    );
}

/// Periodic work: a signed checkpoint every `audit_checkpoint_seconds`, and,
/// while the log is unwritable, a retry every few seconds so that the service
/// resumes by itself (the retry writes `audit_resumed`); expired shares are
/// dropped and held-back connection refusals written.
async fn housekeeping(state: Arc<AppState>) {
    let every = std::time::Duration::from_secs(state.config.audit_checkpoint_seconds.max(1));
    let mut next_checkpoint = tokio::time::Instant::now() + every;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2).min(every));
    // The day the renewal notice was last considered (once a day).
    let mut renewal_noticed: Option<time::Date> = None;
    results::erase_leftovers(&state);
    loop {
        tick.tick().await;
        state.refusals.flush(&state);
        // Shares past the unseal window go even while the log is unwritable
        // (their record is then missing, and the status says the log fails).
        let window = std::time::Duration::from_secs(state.config.unseal_window_seconds);
        let journal = state.journal(None);
        for id in state.vault.expire_operations(&journal) {
            tracing::warn!(operation = %id, "a key operation expired before its quorum");
        }
        // Without anyone's action (DESIGN §5).
        state.vault.destroy_ended_projects(&journal);
        results::erase_expired(&state);
        let today = time::OffsetDateTime::now_utc().date();
        if renewal_noticed != Some(today) && !state.vault.view().sealed {
            renewal_noticed = Some(today);
            notice_renewal(&state);
        }
        match state
            .vault
            .discard_shares("unseal_window_expired", Some(window), &journal)
        {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::warn!(?dropped, "shares discarded: the unseal window expired");
            }
            Err(_) => tracing::error!("shares discarded (unseal window expired), not logged"),
            Ok(_) => {}
        }
        if !state.audit.health().writable {
            // Any write clears the error; a checkpoint needs the key, so
            // fall back to a plain probe record when sealed.
            let r = match state.audit.checkpoint("resume") {
                Ok(Some(_)) => Ok(()),
                _ => state.audit.append(&Event::AuditProbe {}, None).map(|_| ()),
            };
            if r.is_ok() {
                tracing::info!("traceability log writable again");
            }
            continue;
        }
        if tokio::time::Instant::now() >= next_checkpoint {
            next_checkpoint += every;
            if let Err(e) = state.audit.checkpoint("interval") {
                tracing::error!(error = %e, "checkpoint failed");
            }
        }
    }
}

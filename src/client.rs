//! The submitter's and the holder's side: mutual TLS to the service, batches
//! streamed from a file and the answer streamed to a file, share submission.
//!
//! One HTTP/1.1 connection per session, driven by hyper directly over
//! tokio-rustls: the TLS configuration (TLS 1.3, this CA only, the caller's
//! certificate) stays fully in our hands.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;

mod answer;

use crate::batch::Operation;
use crate::receipt::Receipt;
use crate::seal::{Approval, PendingView, Proposal, Share};
use crate::wire::{ApprovalReply, ErrorBody, Status, UnsealReply};

/// Boxed request body.
type ReqBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// What went wrong on the client side. Messages never hold data lines.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server address is not `https://HOST:PORT`.
    #[error("the server address must look like https://HOST:PORT, not {0:?}")]
    BadServer(String),
    /// TLS files unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Connecting or the TLS handshake failed.
    #[error("cannot connect to {server}: {reason}")]
    Connect {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// The service refused the request.
    #[error("the service refused the request ({status}, {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The service's stable error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("the exchange with the service failed: {0}")]
    Protocol(String),
}

/// How to reach the service and who we are.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://HOST:PORT`.
    pub server: String,
    /// CA that signed the server's certificate.
    pub ca: PathBuf,
    /// Our certificate.
    pub cert: PathBuf,
    /// Our private key.
    pub key: PathBuf,
    /// The CA's revocation list(s) (PEM): a revoked server certificate
    /// fails the handshake.
    pub crl: Option<PathBuf>,
}

/// An open connection.
pub struct Connection {
    sender: SendRequest<ReqBody>,
    authority: String,
    /// The task driving the connection: holds the real cause when it ends
    /// (with TLS 1.3 a refused client certificate shows only after the
    /// handshake, as an alert on the first exchange).
    driver: Option<tokio::task::JoinHandle<Result<(), String>>>,
    /// The service's renewal warning, from the last response that had one.
    renewal_warning: Option<String>,
    /// Whether the TLS session was resumed from an earlier connection's.
    resumed: bool,
}

impl Endpoint {
    fn host_port(&self) -> Result<(String, u16), ClientError> {
        let bad = || ClientError::BadServer(self.server.clone());
        let rest = self.server.strip_prefix("https://").ok_or_else(bad)?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok((host.to_owned(), port))
    }

    /// Connects and completes the TLS handshake.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        self.connector()?.connect().await
    }

    /// Reads the certificates and key once, for several connections: they
    /// share the TLS configuration, and with it the session tickets the
    /// service hands out, so that a connection after the first resumes its
    /// TLS session (an abbreviated handshake: no certificate to sign or
    /// check again) rather than paying a full one.
    pub fn connector(&self) -> Result<Connector, ClientError> {
        let config = crate::tls::client_config_with_crl(
            &self.ca,
            &self.cert,
            &self.key,
            self.crl.as_deref(),
        )?;
        Ok(Connector {
            endpoint: self.clone(),
            tls: tokio_rustls::TlsConnector::from(config),
        })
    }
}

/// An [`Endpoint`] with its TLS configuration read: see [`Endpoint::connector`].
#[derive(Clone)]
pub struct Connector {
    endpoint: Endpoint,
    tls: tokio_rustls::TlsConnector,
}

impl Connector {
    /// Connects and completes the TLS handshake, resuming an earlier
    /// connection's session when the service still knows it.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let endpoint = &self.endpoint;
        let (host, port) = endpoint.host_port()?;
        let connector = &self.tls;
        let err = |reason: String| ClientError::Connect {
            server: endpoint.server.clone(),
            reason,
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|_| ClientError::BadServer(endpoint.server.clone()))?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| err(e.to_string()))?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| err(e.to_string()))?;
        let driver = tokio::spawn(async move {
            conn.await.map_err(|e| {
                tracing::debug!(error = %e, "connection closed with an error");
                // The TLS alert, when the service refused our certificate.
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            })
        });
        Ok(Connection {
            sender,
            authority: format!("{host}:{port}"),
            driver: Some(driver),
            renewal_warning: None,
            resumed,
        })
    }
}

fn full(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

impl Connection {
    /// Whether the TLS session was resumed from an earlier connection of the
    /// same [`Connector`] (an abbreviated handshake).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The warning the service puts on every response once the key is past
    /// its renewal date (DESIGN §3), as last seen on this connection.
    pub fn renewal_warning(&self) -> Option<&str> {
        self.renewal_warning.as_deref()
    }

    /// Why the connection broke, from its driver task if it has ended.
    async fn broken(&mut self, e: hyper::Error) -> ClientError {
        let cause = match self.driver.take() {
            Some(d) => match tokio::time::timeout(std::time::Duration::from_secs(2), d).await {
                Ok(Ok(Err(cause))) => cause,
                _ => e.to_string(),
            },
            None => e.to_string(),
        };
        if cause.contains("alert") {
            ClientError::Protocol(format!(
                "the service closed the connection ({cause}): is this certificate signed by the \
                 service's client CA, current, and meant for client authentication?"
            ))
        } else {
            // The alert can be lost when the service closes first.
            ClientError::Protocol(format!(
                "the service closed the connection before answering ({cause}); a refused client \
                 certificate can show this way too"
            ))
        }
    }

    async fn send(
        &mut self,
        req: Request<ReqBody>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        if let Err(e) = self.sender.ready().await {
            return Err(self.broken(e).await);
        }
        let resp = match self.sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => return Err(self.broken(e).await),
        };
        if let Some(w) = resp
            .headers()
            .get(crate::wire::RENEWAL_WARNING_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            // Loud on purpose: whoever uses the service should know.
            tracing::warn!("the service warns: {w}");
            self.renewal_warning = Some(w.to_owned());
        }
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(refusal(resp).await)
        }
    }

    fn request(&self, method: &str, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
    ) -> Result<T, ClientError> {
        let req = self
            .request("GET", path)
            .body(full(Bytes::new()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.send(req).await?;
        read_json(resp).await
    }

    /// `GET /v1/status`.
    pub async fn status(&mut self) -> Result<Status, ClientError> {
        self.get_json("/v1/status").await
    }

    /// `GET /v1/receipts/{id}`.
    pub async fn receipt(&mut self, batch: &str) -> Result<Receipt, ClientError> {
        self.get_json(&format!("/v1/receipts/{batch}")).await
    }

    /// `POST /v1/seal` (operator): drop every key; holders must unseal again.
    pub async fn seal(&mut self) -> Result<Status, ClientError> {
        let req = self
            .request("POST", "/v1/seal")
            .body(full(Bytes::new()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.send(req).await?;
        read_json(resp).await
    }

    /// `POST path` with a whole batch held in memory (benchmarks, small
    /// tools): the answer's body. `cstatns submit` streams files instead.
    pub async fn post_batch(
        &mut self,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Bytes, ClientError> {
        let req = self
            .request("POST", path)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::CONTENT_LENGTH, body.len())
            .body(full(body))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.send(req).await?;
        Ok(resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes())
    }

    /// `POST /v1/guard/{client}/release` (operator): lifts the guard's
    /// suspension of `client`; the service's status after it.
    pub async fn guard_release(&mut self, client: &str) -> Result<Status, ClientError> {
        // The name as one path segment: unreserved characters as they are,
        // every other byte percent-encoded (RFC 3986).
        let segment: String = client
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let req = self
            .request("POST", &format!("/v1/guard/{segment}/release"))
            .body(full(Bytes::new()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.send(req).await?;
        read_json(resp).await
    }

    /// `GET /v1/audit?from=SEQ` (auditor): streams the log into `out`;
    /// returns the bytes written.
    pub async fn audit_log(
        &mut self,
        from: u64,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, ClientError> {
        let req = self
            .request("GET", &format!("/v1/audit?from={from}"))
            .body(full(Bytes::new()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut body = self.send(req).await?.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ClientError::Protocol(format!("the log broke off: {e}")))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data)
                    .await
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                n += data.len() as u64;
            }
        }
        out.flush()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(n)
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: Bytes,
    ) -> Result<T, ClientError> {
        let req = self
            .request("POST", path)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(full(body))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.send(req).await?;
        read_json(resp).await
    }

    /// `POST /v1/operations`: proposes a key operation to the holders.
    pub async fn propose(
        &mut self,
        operation: &crate::seal::Operation,
    ) -> Result<PendingView, ClientError> {
        let body =
            serde_json::to_vec(operation).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.post_json("/v1/operations", body.into()).await
    }

    /// `GET /v1/operations`: the operations waiting for their quorum.
    pub async fn pending(&mut self) -> Result<Vec<PendingView>, ClientError> {
        self.get_json("/v1/operations").await
    }

    /// `POST /v1/operations/{id}/approve` with a holder's approval.
    pub async fn approve(
        &mut self,
        operation: &str,
        approval: &Approval,
    ) -> Result<ApprovalReply, ClientError> {
        let wire = approval.to_wire_json();
        let body = Bytes::copy_from_slice(wire.as_bytes());
        drop(wire);
        self.post_json(&format!("/v1/operations/{operation}/approve"), body)
            .await
    }

    /// `POST /v1/operations/{id}/cancel`.
    pub async fn cancel(&mut self, operation: &str) -> Result<Proposal, ClientError> {
        self.post_json(&format!("/v1/operations/{operation}/cancel"), Bytes::new())
            .await
    }

    /// `GET /v1/projects/{project}/results/{batch}` (matching body): the
    /// encrypted table, written to `encrypted` as it comes (the service
    /// erases it as it hands it over).
    pub async fn fetch_result(
        &mut self,
        project: &str,
        batch: &str,
        encrypted: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, ClientError> {
        let req = self
            .request("GET", &format!("/v1/projects/{project}/results/{batch}"))
            .body(full(Bytes::new()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.send(req).await?;
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ClientError::Protocol(format!("the result broke off: {e}")))?;
            if let Some(data) = frame.data_ref() {
                n += data.len() as u64;
                tokio::io::AsyncWriteExt::write_all(encrypted, data)
                    .await
                    .map_err(|e| ClientError::Protocol(format!("cannot write the result: {e}")))?;
            }
        }
        Ok(n)
    }

    /// `POST /v1/unseal` with one share.
    pub async fn unseal(&mut self, share: &Share) -> Result<UnsealReply, ClientError> {
        let wire = share.to_wire_json();
        let req = self
            .request("POST", "/v1/unseal")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(full(Bytes::copy_from_slice(wire.as_bytes())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        drop(wire);
        let resp = self.send(req).await?;
        read_json(resp).await
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: hyper::Response<hyper::body::Incoming>,
) -> Result<T, ClientError> {
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| ClientError::Protocol(format!("unexpected answer: {e}")))
}

async fn refusal(resp: hyper::Response<hyper::body::Incoming>) -> ClientError {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
    let fallback = status.canonical_reason().unwrap_or("error");
    ClientError::Refused {
        status: status.as_u16(),
        code: parsed
            .as_ref()
            .map_or(fallback, |b| b.error.as_str())
            .to_owned(),
        message: parsed.map_or_else(|| "no details".to_owned(), |b| b.message),
    }
}

/// The body type of an input file, from its extension or an explicit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputType {
    /// `text/csv`.
    Csv,
    /// `application/x-ndjson`.
    Ndjson,
}

impl InputType {
    /// `.ndjson`/`.jsonl` are NDJSON; anything else is CSV.
    pub fn guess(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("ndjson" | "jsonl") => InputType::Ndjson,
            _ => InputType::Csv,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            InputType::Csv => "text/csv",
            InputType::Ndjson => "application/x-ndjson",
        }
    }
}

/// One batch to submit.
pub struct Submission<'a> {
    /// Derive codes or renew old ones.
    pub operation: Operation,
    /// The input file.
    pub input: &'a Path,
    /// Its type.
    pub input_type: InputType,
    /// Where the answer goes (created; never overwritten).
    pub output: &'a Path,
    /// Declared purpose (may be left out when the certificate has one).
    pub purpose: Option<&'a str>,
    /// A research project's id: the batch goes to its CSpeNS chain, and the
    /// answer holds statuses only (`index,status`); the codes go, encrypted,
    /// to the project's matching body.
    pub project: Option<&'a str>,
    /// Called with the number of bytes sent so far.
    pub progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

/// Where [`submit`] writes an answer until it is whole: `OUTPUT.partial`.
/// A caller interrupted (a signal) should remove it.
pub fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// How long `submit` waits for the service's go-ahead before sending a
/// batch (it then gives up rather than send it unasked).
pub const GO_AHEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Creates a file for personal data: mode 0600, never over an existing file.
pub fn create_private(path: &Path) -> Result<std::fs::File, ClientError> {
    crate::files::create_new(path, 0o600).map_err(|source| ClientError::File {
        path: path.to_owned(),
        source,
    })
}

/// Streams a batch to the service, streams the answer to `output`, and
/// returns the batch's receipt.
///
/// The batch file is read on the calling thread, in place (`cstatns submit`
/// runs it on a runtime of its own thread); the answer is written by a
/// thread of its own, around the page cache where the file system allows
/// it (`answer.rs`).
pub async fn submit(endpoint: &Endpoint, sub: Submission<'_>) -> Result<Receipt, ClientError> {
    submit_syncing(endpoint, sub, EARLY_SYNC)
        .await
        .map(|(receipt, _)| receipt)
}

/// [`submit`], the answer flushed to disk each time `every` more bytes of it
/// have been written (`submit`: [`EARLY_SYNC`]); also returns how many such
/// early fsyncs ran. The tests flush a small answer this way.
#[doc(hidden)]
pub async fn submit_syncing(
    endpoint: &Endpoint,
    sub: Submission<'_>,
    every: u64,
) -> Result<(Receipt, u32), ClientError> {
    let file_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ClientError::File { path, source }
    };
    let input = std::fs::File::open(sub.input).map_err(file_err(sub.input))?;
    let len = input.metadata().map_err(file_err(sub.input))?.len();
    // Refuse early rather than after sending a whole batch; the file itself
    // is created only once the service has accepted the batch.
    if sub.output.exists() {
        return Err(ClientError::File {
            path: sub.output.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the answer file exists already; answers are never overwritten",
            ),
        });
    }

    let connector = endpoint.connector()?;
    let mut conn = connector.connect().await?;
    // `Expect: 100-continue`: the body waits for the service's go-ahead, so a
    // refusal (sealed, no role, purpose, size…) comes back before any NIR has
    // left this machine, and is never lost in a reset of a half-sent upload.
    let go = Arc::new(tokio::sync::Notify::new());
    let go_signal = go.clone();
    let progress = sub.progress;
    let mut sent = 0u64;
    let wait = futures_util::stream::once(async move {
        // RFC 9110 §10.1.1 lets a client send the body after a while anyway;
        // this one never does (SECURITY.md: no NIR leaves before the go-ahead).
        // The cstatns service always answers, with 100 or a refusal.
        tokio::time::timeout(GO_AHEAD_WAIT, go.notified())
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the service gave no go-ahead (100 Continue): nothing of the batch was sent",
                )
            })
    });
    let file = futures_util::StreamExt::map(read_in_parts(input), move |r| {
        r.map(|b| {
            sent += b.len() as u64;
            if let Some(p) = &progress {
                p(sent);
            }
            Frame::data(b)
        })
    });
    let stream = futures_util::StreamExt::chain(
        futures_util::StreamExt::filter_map(wait, |r| async move { r.err().map(Err) }),
        file,
    );
    let path = match (sub.project, sub.operation) {
        (Some(p), Operation::Derive) => format!("/v1/projects/{p}/cspens"),
        (Some(p), Operation::Renew) => format!("/v1/projects/{p}/renewal"),
        (None, Operation::Derive) => "/v1/cstatns".to_owned(),
        (None, Operation::Renew) => "/v1/renewal".to_owned(),
    };
    let mut req = conn
        .request("POST", &path)
        .header(hyper::header::CONTENT_TYPE, sub.input_type.content_type())
        .header(hyper::header::CONTENT_LENGTH, len)
        .header(hyper::header::EXPECT, "100-continue");
    if let Some(p) = sub.purpose {
        req = req.header("CStatNS-Purpose", p);
    }
    let mut req = req
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    hyper::ext::on_informational(&mut req, move |res| {
        if res.status() == StatusCode::CONTINUE {
            go_signal.notify_one();
        }
    });
    let resp = conn.send(req).await?;
    let batch = resp
        .headers()
        .get("cstatns-batch")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Protocol("no CStatNS-Batch header".into()))?;
    // The answer goes to OUTPUT.partial and takes its name only once whole.
    let partial = partial_path(sub.output);
    let file = create_private(&partial)?;
    let written = async {
        // Written by a thread of its own, around the page cache where the
        // file system allows it (`answer`), synced every `every` bytes.
        let mut out = answer::AnswerOut::new(file, &partial, every).map_err(file_err(&partial))?;
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ClientError::Protocol(format!("the answer broke off: {e}")))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data).map_err(file_err(&partial))?;
            }
        }
        // The last part and the last fsync wait on the disk: on a thread
        // of their own, so that a runtime shared with others goes on.
        let early_syncs = tokio::task::spawn_blocking(move || out.finish())
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(file_err(&partial))?;
        // The service closes a batch's connection after its answer.
        drop(conn);
        let receipt = connector.connect().await?.receipt(&batch).await?;
        // A hard link never replaces an existing file, unlike a rename.
        std::fs::hard_link(&partial, sub.output).map_err(file_err(sub.output))?;
        Ok((receipt, early_syncs))
    }
    .await;
    // A failed answer's writer has stopped (its parts not written are
    // dropped and wiped), its handles on the file gone. Whole or not, the
    // partial file goes: a partial answer is of no use and holds codes.
    let _ = std::fs::remove_file(&partial);
    written
}

/// How much of the batch file is read at a time.
const READ_PART: usize = 256 * 1024;

/// The batch file, read in parts of [`READ_PART`] bytes as the request body
/// asks for them.
///
/// Read in place, on the thread that polls the request body (in `cstatns
/// submit`, the client's one thread): handing each part to another thread
/// and back, as `tokio::fs` does, cost more than the reading itself (a
/// wake-up each way and a copy), and the client shares the machine's cores
/// with the service it talks to.
fn read_in_parts(
    mut input: std::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    use std::io::Read;
    let mut done = false;
    futures_util::stream::poll_fn(move |_| {
        if done {
            return std::task::Poll::Ready(None);
        }
        let mut part = bytes::BytesMut::zeroed(READ_PART);
        let read = loop {
            match input.read(&mut part) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        std::task::Poll::Ready(match read {
            Ok(0) => {
                done = true;
                None
            }
            Ok(n) => {
                part.truncate(n);
                Some(Ok(part.freeze()))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        })
    })
}

/// The answer is flushed to disk as it comes, each time this much more of it
/// has been written (an fsync on a thread of its own, while the answer's
/// writing goes on), so that the last fsync waits only on the last part: the
/// answer to 10 million rows is 770 MB. One that fails fails the answer:
/// the kernel reports a failed write-back once, so the last fsync might not
/// see it.
const EARLY_SYNC: u64 = 64 << 20;

/// A byte-progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} sent  {bytes_per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

//! Shared parts of the integration tests: a throw-away deployment in a
//! temporary directory, the real `cstatns serve` binary as a child process,
//! unsealing with real share files over each holder's own certificate, and a
//! raw HTTPS client (rustls + hyper, nothing from `cstatns::client`) for the
//! requests the library client would never send.
//!
//! Every synthetic NIR comes from `cstatns::nir::synthetic` or the design's
//! public vectors: no real person's number ever goes through these tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cstatns::client::Endpoint;
use cstatns::devenv::{self, DevEnv};
use cstatns::seal::{Passphrase, Share};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::ServerName;
use sha2::Sha256;

/// How long any single network exchange may take before the test fails
/// instead of hanging.
pub const NET_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `fut` under [`NET_TIMEOUT`].
pub async fn timed<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(NET_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {NET_TIMEOUT:?}"))
}

/// A test key `K_1` (32 bytes), imported with `--import-key` so that the test
/// can recompute codes on its own. Not a secret of anything.
pub const TEST_K1_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

/// How a test deployment is made.
pub struct EnvOptions {
    pub holders: usize,
    pub threshold: usize,
    pub generations: usize,
    /// Import [`TEST_K1_HEX`] as `K_1`.
    pub import_test_key: bool,
    /// Rewrite `max_request_bytes` in `server.toml`.
    pub max_request_bytes: Option<u64>,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            holders: 5,
            threshold: 3,
            generations: 1,
            import_test_key: false,
            max_request_bytes: None,
        }
    }
}

/// A dev-env in its own temporary directory (removed on drop).
pub struct TestEnv {
    pub tmp: tempfile::TempDir,
    pub env: DevEnv,
}

impl TestEnv {
    /// A 3-of-5 deployment with one generation and a random key.
    pub fn new() -> Self {
        Self::with(EnvOptions::default())
    }

    pub fn with(opts: EnvOptions) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("cstatns-it-")
            .tempdir()
            .expect("temporary directory");
        let import_key = opts.import_test_key.then(|| {
            let p = tmp.path().join("k1.hex");
            std::fs::write(&p, format!("{TEST_K1_HEX}\n")).expect("write the test key");
            p
        });
        let env = devenv::create(&devenv::Options {
            dir: tmp.path().join("deployment"),
            holders: opts.holders,
            threshold: opts.threshold,
            generations: opts.generations,
            import_key,
        })
        .expect("dev-env");
        if let Some(max) = opts.max_request_bytes {
            set_max_request_bytes(&env.config, max);
        }
        Self { tmp, env }
    }

    pub fn dir(&self) -> &Path {
        &self.env.dir
    }

    pub fn ca(&self) -> PathBuf {
        self.env.pki.ca()
    }

    pub fn cert(&self, role: &str) -> PathBuf {
        self.env.pki.cert(role)
    }

    pub fn key(&self, role: &str) -> PathBuf {
        self.env.pki.key(role)
    }

    /// `D/audit/log.jsonl` as text.
    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.dir().join("audit").join("log.jsonl")).unwrap_or_default()
    }

    /// Every record of the traceability log.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        self.audit_text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each log line is a JSON object"))
            .collect()
    }

    /// Waits (up to 10 s) until the log holds a record satisfying `pred`:
    /// the server writes some records just after answering.
    pub fn wait_for_audit(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        for _ in 0..200 {
            if let Some(r) = self.audit_records().into_iter().find(|r| pred(r)) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no {what} record in the traceability log:\n{}",
            self.audit_text()
        );
    }

    /// Holder `i`'s share, decrypted from its real share file.
    pub fn share(&self, i: usize) -> Share {
        let bytes = std::fs::read(self.env.share(i)).expect("share file");
        let pass = Passphrase::from_file(self.env.pass(i)).expect("passphrase file");
        Share::decrypt_file_bytes(&bytes, &pass).expect("decrypt share")
    }

    /// A library-client endpoint for `role` against `server`.
    pub fn endpoint(&self, server: &ServerProcess, role: &str) -> Endpoint {
        Endpoint {
            server: server.url(),
            ca: self.ca(),
            cert: self.cert(role),
            key: self.key(role),
            crl: None,
        }
    }

    /// Starts `cstatns serve` on this deployment.
    pub fn serve(&self) -> ServerProcess {
        ServerProcess::start(self, &[])
    }

    /// Starts `cstatns serve` with extra environment variables.
    pub fn serve_with_env(&self, vars: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::start(self, vars)
    }

    /// Submits the shares of `holders` (1-based), each over that holder's
    /// own certificate, with the library client; panics on any refusal.
    pub async fn unseal_with(&self, server: &ServerProcess, holders: &[usize]) {
        for &i in holders {
            let role = cstatns::pki::holder_role(i);
            let share = self.share(i);
            let mut conn = timed("connect", self.endpoint(server, &role).connect())
                .await
                .expect("holder connects");
            timed("unseal", conn.unseal(&share))
                .await
                .unwrap_or_else(|e| panic!("share of {role} refused: {e}"));
        }
    }

    /// Unseals with holders 1..=t and checks the status says so.
    pub async fn unseal(&self, server: &ServerProcess) {
        let holders: Vec<usize> = (1..=self.env.threshold).collect();
        self.unseal_with(server, &holders).await;
        let status = self.status(server).await;
        assert!(!status.sealed, "still sealed after t valid shares");
    }

    /// `GET /v1/status` as the operator.
    pub async fn status(&self, server: &ServerProcess) -> cstatns::server::Status {
        let mut conn = timed(
            "connect",
            self.endpoint(server, cstatns::pki::OPERATOR).connect(),
        )
        .await
        .expect("operator connects");
        timed("status", conn.status()).await.expect("status")
    }

    /// A raw HTTPS request presenting `role`'s certificate.
    pub async fn request(
        &self,
        server: &ServerProcess,
        role: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let id = ClientIdentity::Cert {
            cert: self.cert(role),
            key: self.key(role),
        };
        https(server, &self.ca(), &id, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} as {role}: no HTTP answer: {e}"))
    }

    /// `POST /v1/cstatns` as the submitter, CSV.
    pub async fn derive_csv(&self, server: &ServerProcess, body: impl Into<Bytes>) -> Reply {
        self.request(
            server,
            cstatns::pki::SUBMITTER,
            "POST",
            "/v1/cstatns",
            &[("content-type", "text/csv")],
            body,
        )
        .await
    }
}

/// Names the embedded register (DESIGN §7) in `server.toml` (a top-level key, so first).
pub fn configure_register(env: &TestEnv, file: &str) {
    let text = std::fs::read_to_string(&env.env.config).expect("read server.toml");
    std::fs::write(&env.env.config, format!("register = \"{file}\"\n{text}"))
        .expect("write server.toml");
}

/// `cstatns ARGS…`: exit status, and stdout and stderr together.
pub fn cli<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_cstatns"))
        .args(args)
        .output()
        .expect("run cstatns");
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// `cstatns register load --config server.toml CSV`: exit status and output.
pub fn register_load(env: &TestEnv, csv: &Path) -> (Option<i32>, String) {
    cli([
        std::ffi::OsStr::new("register"),
        "load".as_ref(),
        "--config".as_ref(),
        env.env.config.as_os_str(),
        csv.as_os_str(),
    ])
}

/// Rewrites `max_request_bytes` in a dev-env `server.toml` (before serving).
pub fn set_max_request_bytes(config: &Path, max: u64) {
    set_number(config, "max_request_bytes", max);
}

/// Rewrites a top-level number in a dev-env `server.toml` (before serving).
pub fn set_number(config: &Path, key: &str, value: u64) {
    let text = std::fs::read_to_string(config).expect("server.toml");
    let mut doc: toml::Table = toml::from_str(&text).expect("server.toml is TOML");
    doc.insert(key.into(), toml::Value::Integer(value as i64));
    std::fs::write(config, toml::to_string_pretty(&doc).expect("TOML"))
        .expect("rewrite server.toml");
}

/// Adds a `[[client]]` entry to a dev-env `server.toml` (before serving).
pub fn add_client(config: &Path, name: &str, fingerprint: &str, roles: &[&str], purposes: &[&str]) {
    let text = std::fs::read_to_string(config).expect("server.toml");
    let mut doc: toml::Table = toml::from_str(&text).expect("server.toml is TOML");
    let mut entry = toml::Table::new();
    entry.insert("name".into(), name.into());
    entry.insert(
        "roles".into(),
        toml::Value::Array(roles.iter().map(|r| (*r).into()).collect()),
    );
    entry.insert("fingerprint".into(), fingerprint.into());
    entry.insert(
        "purposes".into(),
        toml::Value::Array(purposes.iter().map(|p| (*p).into()).collect()),
    );
    doc.get_mut("client")
        .and_then(toml::Value::as_array_mut)
        .expect("server.toml has [[client]] entries")
        .push(toml::Value::Table(entry));
    std::fs::write(config, toml::to_string_pretty(&doc).expect("TOML"))
        .expect("rewrite server.toml");
}

/// Points `[tls] crl` of a dev-env `server.toml` at `crl` (then reload).
pub fn set_crl(env: &TestEnv, crl: &str) {
    let text = std::fs::read_to_string(&env.env.config).expect("server.toml");
    let mut doc: toml::Table = toml::from_str(&text).expect("TOML");
    doc.get_mut("tls")
        .and_then(toml::Value::as_table_mut)
        .expect("[tls]")
        .insert("crl".into(), crl.into());
    std::fs::write(&env.env.config, toml::to_string_pretty(&doc).expect("TOML")).expect("write");
}

/// Sends `SIGHUP` (a reload) to process `pid`.
pub fn hangup(pid: u32) {
    let st = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

/// A raw mutual-TLS stream to the service with `role`'s certificate, for
/// tests that write bytes (or stop reading) as no HTTP client would; the
/// handshake's error when the service refuses it.
pub async fn raw_tls(
    env: &TestEnv,
    server: &ServerProcess,
    role: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = cstatns::tls::client_config(&env.ca(), &env.cert(role), &env.key(role))
        .expect("client config");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The head of a `POST /v1/cstatns` CSV request declaring `len` body bytes.
pub fn batch_head(len: usize) -> String {
    format!(
        "POST /v1/cstatns HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/csv\r\n\
         cstatns-purpose: {}\r\ncontent-length: {len}\r\n\r\n",
        devenv::DEV_PURPOSE
    )
}

/// The real `cstatns serve` process; killed on drop. Its stderr goes to a
/// file so that tests can scan what it logged.
pub struct ServerProcess {
    child: Option<Child>,
    pub port: u16,
    /// The metrics listener's port, when `metrics_listen` is configured.
    pub metrics_port: Option<u16>,
    pub stderr_path: PathBuf,
}

impl ServerProcess {
    fn start(env: &TestEnv, vars: &[(&str, &str)]) -> Self {
        let stderr_path = env.tmp.path().join("server.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cstatns"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&env.env.config)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("CSTATNS_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start cstatns serve");
        let stdout = child.stdout.take().expect("stdout pipe");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps reading to the end so that the server never writes into a
        // closed pipe.
        std::thread::spawn(move || {
            // Up to the listening line (the metrics line comes before it).
            let mut more = true;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if more {
                    more = line.starts_with("cstatns: metrics on");
                    let _ = tx.send(line);
                }
            }
        });
        let mut guard = Self {
            child: Some(child),
            port: 0,
            metrics_port: None,
            stderr_path,
        };
        let port_in = |line: &str, prefix: &str| -> Option<u16> {
            line.strip_prefix(prefix)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let line = loop {
            let line = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => l,
                Err(_) => panic!(
                    "cstatns serve printed no listening line; stderr:\n{}",
                    guard.stderr_text()
                ),
            };
            match port_in(&line, "cstatns: metrics on https://127.0.0.1:") {
                Some(p) => guard.metrics_port = Some(p),
                None => break line,
            }
        };
        let rest = line
            .strip_prefix("cstatns: listening on https://127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        guard.port = rest
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        assert!(
            line.ends_with("(sealed: key holders must unseal)"),
            "{line:?}"
        );
        guard
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// What the server has written to stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops the server with SIGTERM (a clean stop, logged) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Which certificate, if any, a raw client presents.
pub enum ClientIdentity {
    /// No client certificate at all.
    None,
    /// A certificate and key (PEM files).
    Cert { cert: PathBuf, key: PathBuf },
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// For a refusal: `(status, error code, message)`.
    pub fn refusal(&self) -> (u16, String, String) {
        let v = self.json();
        (
            self.status,
            v["error"].as_str().expect("error code").to_owned(),
            v["message"].as_str().expect("message").to_owned(),
        )
    }
}

fn roots(ca: &Path) -> rustls::RootCertStore {
    let pem = std::fs::read(ca).expect("CA file");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.expect("CA certificate")).expect("trust anchor");
    }
    roots
}

/// One HTTP/1.1 request over a fresh TLS connection, built from rustls and
/// hyper directly. `Err` when no HTTP answer came back (handshake refused,
/// connection closed): the message says why.
pub async fn https(
    server: &ServerProcess,
    ca: &Path,
    identity: &ClientIdentity,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let body = Full::new(body.into()).boxed();
    exchange(server, ca, identity, method, path, headers, body).await
}

/// Like [`https`], but the body is streamed in `parts` (one frame each)
/// with no `Content-Length`, as `cstatns submit` sends a file.
pub async fn https_streamed(
    server: &ServerProcess,
    ca: &Path,
    identity: &ClientIdentity,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    parts: Vec<Bytes>,
) -> Result<Reply, String> {
    let frames = parts
        .into_iter()
        .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
    exchange(server, ca, identity, method, path, headers, body).await
}

/// Like [`https`], but the body is whatever `parts` yields, as it yields it:
/// a batch still being sent while the test does something else.
pub async fn https_channel(
    server: &ServerProcess,
    ca: &Path,
    identity: &ClientIdentity,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    parts: tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<Reply, String> {
    let frames = futures_util::stream::unfold(parts, |mut rx| async move {
        rx.recv().await.map(|b| {
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)),
                rx,
            )
        })
    });
    let body = http_body_util::StreamBody::new(frames).boxed();
    exchange(server, ca, identity, method, path, headers, body).await
}

type RawBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn exchange(
    server: &ServerProcess,
    ca: &Path,
    identity: &ClientIdentity,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: RawBody,
) -> Result<Reply, String> {
    exchange_at(server.port, ca, identity, method, path, headers, body).await
}

/// A request with no body to another listener of the service (metrics).
pub async fn https_at(
    port: u16,
    ca: &Path,
    identity: &ClientIdentity,
    method: &str,
    path: &str,
) -> Result<Reply, String> {
    let body = Full::new(Bytes::new()).boxed();
    exchange_at(port, ca, identity, method, path, &[], body).await
}

async fn exchange_at(
    port: u16,
    ca: &Path,
    identity: &ClientIdentity,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: RawBody,
) -> Result<Reply, String> {
    let config = match identity {
        ClientIdentity::Cert { cert, key } => {
            cstatns::tls::client_config(ca, cert, key).map_err(|e| e.to_string())?
        }
        ClientIdentity::None => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut c = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("TLS 1.3")
                .with_root_certificates(roots(ca))
                .with_no_client_auth();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(c)
        }
    };
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{port}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body).map_err(|e| e.to_string())?;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                // The connection task holds the real cause (a TLS alert, say).
                let cause = match conn.await {
                    Ok(Err(c)) => format!("{c:?}"),
                    other => format!("{other:?}"),
                };
                return Err(format!("request: {e:?}; connection: {cause}"));
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("answer body: {e:?}"))?
            .to_bytes()
            .to_vec();
        drop(sender);
        conn.abort();
        Ok(Reply {
            status,
            headers,
            body,
        })
    };
    timed("raw HTTPS request", exchange).await
}

/// `C_1 = HMAC-SHA-256(K_1, body)` in lowercase hex, computed here with the
/// `hmac` and `sha2` crates, independently of `cstatns::code`.
pub fn expected_c1(k1: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(k1).expect("HMAC key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The test key's bytes.
pub fn test_k1() -> Vec<u8> {
    hex::decode(TEST_K1_HEX).expect("hex")
}

/// The 13-character body of synthetic NIR `seed`, as text.
pub fn nir_body(seed: u64) -> String {
    String::from_utf8(cstatns::nir::synthetic(seed).body().to_vec()).expect("ASCII")
}

/// The 15-character form of synthetic NIR `seed`, as text.
pub fn nir_full(seed: u64) -> String {
    String::from_utf8(cstatns::nir::synthetic(seed).with_key().to_vec()).expect("ASCII")
}

/// True for exactly 64 lowercase hex digits.
pub fn is_code(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits a CSV answer (header line first) into `[index, cstatns, status]`
/// rows, checking the header and that no line is quoted.
pub fn csv_rows(text: &str, delimiter: char) -> Vec<[String; 3]> {
    let mut lines = text.split_terminator('\n');
    let d = delimiter;
    assert_eq!(
        lines.next(),
        Some(format!("index{d}cstatns{d}status").as_str()),
        "answer header"
    );
    lines
        .map(|l| {
            assert!(
                !l.contains('"') && !l.ends_with('\r'),
                "answer line {l:?} is quoted or has CR"
            );
            let f: Vec<&str> = l.split(d).collect();
            assert_eq!(f.len(), 3, "answer line {l:?}");
            [f[0].to_owned(), f[1].to_owned(), f[2].to_owned()]
        })
        .collect()
}

/// Runs `.ci/NAME`, which installs what a test needs when it is missing
/// (Debian's or PyPI's packages) and does nothing when it is there, so that
/// `cargo test` on a fresh machine provisions itself as CI does.
pub fn provision(name: &str) {
    // One at a time: two package installs would fight for dpkg's lock.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci").join(name);
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

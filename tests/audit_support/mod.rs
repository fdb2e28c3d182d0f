//! A real traceability log for `tests/audit.rs`, made once per test run: a
//! dev-env deployment, the real service in-process behind real TLS, an
//! unseal with real share files over each holder's own certificate (and one
//! refused share), two small batches, the auditor's and the submitter's
//! `GET /v1/audit`, `cstatns audit fetch`, and a clean stop (final checkpoint).
//! Also the log of a second, unrelated deployment.
//!
//! Every NIR here is synthetic (`cstatns::nir::synthetic`) or one of the
//! design's public vectors: no real person's number.

#![allow(dead_code)] // helpers used by some tests only

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use cstatns::audit::verify::{self, SavedCheckpoint};
use cstatns::client::{self, ClientError, Endpoint, InputType, Submission};
use cstatns::config::Config;
use cstatns::devenv::{self, DevEnv};
use cstatns::receipt::Receipt;
use cstatns::seal::{CeremonyRecord, Passphrase, Share};
use cstatns::server::Server;
use sha2::{Digest, Sha256};

/// Everything the tests look at, produced once.
pub struct Fixture {
    /// The working directory (kept: statics are never dropped; it lives under
    /// Cargo's per-target test scratch directory).
    pub dir: PathBuf,
    /// The deployment whose log is tested.
    pub env: DevEnv,
    /// Its ceremony record.
    pub record: CeremonyRecord,
    /// `ceremony.json`.
    pub ceremony_json: PathBuf,
    /// `audit/`.
    pub audit_dir: PathBuf,
    /// Receipts of the two batches (as fetched by `client::submit`), and the
    /// files they were written to.
    pub receipts: Vec<(Receipt, PathBuf)>,
    /// Strings that must never appear in the log: every NIR submitted (both
    /// forms), every index of the distinctive batch, every code returned.
    pub personal: Vec<String>,
    /// The checkpoint an auditor saved right after the unseal.
    pub saved_after_unseal: SavedCheckpoint,
    /// What `GET /v1/audit` gave the auditor, and the log files' bytes
    /// right after.
    pub auditor_read: Vec<u8>,
    /// The log files, concatenated, right after that read.
    pub files_after_read: Vec<u8>,
    /// The submitter's `GET /v1/audit`: the HTTP status it was refused with.
    pub submitter_read_status: Option<u16>,
    /// `cstatns audit fetch` (the binary): its exit status and the file.
    pub cli_fetch: (ExitCode, PathBuf),
    /// `cstatns audit fetch` with the submitter's certificate: its exit status.
    pub cli_fetch_refused: ExitCode,
    /// A second deployment: its ceremony record and its audit directory.
    pub other_record: CeremonyRecord,
    /// The second deployment's log directory.
    pub other_audit_dir: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

const FIXTURE_PREFIX: &str = "audit-fixture-";

/// A fixture outlives its test process (a static is never dropped): earlier
/// runs' directories are removed once they are an hour old, so that a test
/// running now in another process keeps its own.
fn remove_stale_fixtures(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if stale && e.file_name().to_string_lossy().starts_with(FIXTURE_PREFIX) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The fixture, made on first use.
pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_fixtures(scratch);
        let dir = tempfile::Builder::new()
            .prefix(FIXTURE_PREFIX)
            .tempdir_in(scratch)
            .expect("scratch directory")
            .keep();
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(build(dir))
    })
}

/// Runs the real `cstatns audit ARGS…` binary; its exit status.
pub fn run_audit(args: &[&str]) -> ExitCode {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cstatns"))
        .arg("audit")
        .args(args)
        .output()
        .expect("run cstatns audit");
    exit_code(out.status)
}

/// The help text of `cstatns audit ARGS… --help`.
pub fn audit_help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cstatns"))
        .arg("audit")
        .args(args)
        .arg("--help")
        .output()
        .expect("run cstatns audit --help");
    assert!(out.status.success(), "no help for {args:?}");
    String::from_utf8(out.stdout).expect("help is text")
}

/// `cstatns audit ARGS…` from async code (the fixture's server runs on the
/// same runtime, so the child must not block it).
async fn run_audit_async(args: &[&str]) -> ExitCode {
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_cstatns"))
        .arg("audit")
        .args(args)
        .status()
        .await
        .expect("run cstatns audit");
    exit_code(status)
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    let code = status
        .code()
        .expect("cstatns exits with a status, not a signal");
    ExitCode::from(u8::try_from(code).expect("an exit status fits a byte"))
}

fn endpoint(env: &DevEnv, url: &str, role: &str) -> Endpoint {
    Endpoint {
        server: url.to_owned(),
        ca: env.pki.ca(),
        cert: env.pki.cert(role),
        key: env.pki.key(role),
        crl: None,
    }
}

fn share(env: &DevEnv, i: usize) -> Share {
    Share::decrypt_file_bytes(
        &std::fs::read(env.share(i)).unwrap(),
        &Passphrase::from_file(env.pass(i)).unwrap(),
    )
    .unwrap()
}

fn new_env(dir: &Path) -> DevEnv {
    devenv::create(&devenv::Options {
        dir: dir.to_owned(),
        holders: 3,
        threshold: 2,
        generations: 1,
        import_key: None,
    })
    .unwrap()
}

/// The lines of the distinctive batch: `(line, what it holds)`. Valid and
/// invalid NIRs, distinctive indexes, a NIR used as an index, bad lines.
fn distinctive_batch() -> (String, Vec<String>) {
    let full = |seed| String::from_utf8(cstatns::nir::synthetic(seed).with_key().to_vec()).unwrap();
    let nir_a = full(424_242);
    let nir_b = full(424_243);
    let body_b = nir_b[..13].to_owned();
    let mut wrong_key = full(424_244).into_bytes();
    wrong_key[14] = if wrong_key[14] == b'0' { b'1' } else { b'0' };
    let wrong_key = String::from_utf8(wrong_key).unwrap();
    let nir_index = full(424_245);
    let nir_c = full(424_246);
    let nir_d = full(424_247);
    let lines = [
        format!("AUDITIDX-alpha-7731,{nir_a}"),
        format!("AUDITIDX-beta-7732,{body_b}"),
        "AUDITIDX-gamma-7733,2 95 10 99 126 111 93".to_owned(),
        "AUDITIDX-delta-7734,186022A21532523".to_owned(),
        format!("AUDITIDX-epsilon-7735,{wrong_key}"),
        "AUDITIDX-zeta-7736,12345".to_owned(),
        "AUDITIDX-eta-7737,29510X9126111".to_owned(),
        format!("{nir_index},{nir_c}"),
        format!("bad index!,{nir_d}"),
        "AUDITIDX-theta-7738 has no comma".to_owned(),
    ];
    let mut personal: Vec<String> = [
        "AUDITIDX",
        "alpha-7731",
        "beta-7732",
        "gamma-7733",
        "delta-7734",
        "epsilon-7735",
        "zeta-7736",
        "eta-7737",
        "theta-7738",
        "bad index!",
        "29510X9126111",
        "2951099126111",
        "295109912611193",
        "186022A215325",
        "186022A21532523",
    ]
    .map(str::to_owned)
    .to_vec();
    for n in [&nir_a, &nir_b, &wrong_key, &nir_index, &nir_c, &nir_d] {
        personal.push(n.clone());
        personal.push(n[..13].to_owned());
    }
    (format!("index,nir\n{}\n", lines.join("\n")), personal)
}

/// Codes (64 hex digits) in a CSV answer `index,cstatns,status`.
fn codes_in(answer: &Path) -> Vec<String> {
    std::fs::read_to_string(answer)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1))
        .filter(|c| c.len() == 64)
        .map(str::to_owned)
        .collect()
}

async fn build(dir: PathBuf) -> Fixture {
    let env = new_env(&dir.join("deployment"));
    let record =
        CeremonyRecord::from_json(&std::fs::read(env.dir.join("ceremony.json")).unwrap()).unwrap();
    let audit_dir = env.dir.join("audit");
    let server = Server::bind(Config::load(&env.config).unwrap(), Some("127.0.0.1:0"))
        .await
        .unwrap();
    let url = format!("https://127.0.0.1:{}", server.local_addr().unwrap().port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // A refused share (holder-2's over holder-1's certificate), then t shares.
    let refused = endpoint(&env, &url, "holder-1")
        .connect()
        .await
        .unwrap()
        .unseal(&share(&env, 2))
        .await;
    assert!(
        refused.is_err(),
        "a share over another holder's certificate"
    );
    for i in 1..=env.threshold {
        endpoint(&env, &url, &format!("holder-{i}"))
            .connect()
            .await
            .unwrap()
            .unseal(&share(&env, i))
            .await
            .unwrap();
    }
    // The auditor's visit right after the unseal: the newest checkpoint is
    // the one the unseal wrote.
    let saved_after_unseal = verify::verify_dir(&audit_dir, &record, None)
        .unwrap()
        .last_checkpoint
        .expect("a checkpoint after the unseal");

    // Two small batches: synthetic, then the distinctive one.
    let submitter = endpoint(&env, &url, "submitter");
    let synthetic = dir.join("synthetic.csv");
    cstatns::demo::write_synthetic_csv(&synthetic, 5).unwrap();
    let (text, mut personal) = distinctive_batch();
    let distinctive = dir.join("distinctive.csv");
    std::fs::write(&distinctive, text).unwrap();
    for i in 0..5 {
        let n = cstatns::nir::synthetic(i).with_key();
        personal.push(String::from_utf8(n.to_vec()).unwrap());
        personal.push(String::from_utf8(n[..13].to_vec()).unwrap());
    }
    let mut receipts = Vec::new();
    for (name, input) in [("synthetic", &synthetic), ("distinctive", &distinctive)] {
        let answer = dir.join(format!("{name}.answer.csv"));
        let receipt = client::submit(
            &submitter,
            Submission {
                operation: cstatns::batch::Operation::Derive,
                input,
                input_type: InputType::Csv,
                output: &answer,
                purpose: None,
                project: None,
                progress: None,
            },
        )
        .await
        .unwrap();
        let codes = codes_in(&answer);
        assert!(!codes.is_empty(), "{name}: codes returned");
        for c in codes {
            personal.push(c[..16].to_owned());
            personal.push(c);
        }
        let file = dir.join(format!("{name}.receipt.json"));
        std::fs::write(&file, serde_json::to_vec(&receipt).unwrap()).unwrap();
        receipts.push((receipt, file));
    }

    // GET /v1/audit: refused to the submitter, streamed to the auditor.
    let submitter_read_status = match submitter
        .connect()
        .await
        .unwrap()
        .audit_log(0, &mut Vec::new())
        .await
    {
        Err(ClientError::Refused { status, .. }) => Some(status),
        _ => None,
    };
    let mut auditor_read = Vec::new();
    endpoint(&env, &url, "auditor")
        .connect()
        .await
        .unwrap()
        .audit_log(0, &mut auditor_read)
        .await
        .unwrap();
    let files_after_read = concat_files(&audit_dir);

    // `cstatns audit fetch`, the real binary.
    let fetched = dir.join("fetched.jsonl");
    let p = |p: PathBuf| p.display().to_string();
    let code = run_audit_async(&[
        "fetch",
        "--server",
        &url,
        "--ca",
        &p(env.pki.ca()),
        "--cert",
        &p(env.pki.cert("auditor")),
        "--key",
        &p(env.pki.key("auditor")),
        "-o",
        &p(fetched.clone()),
    ])
    .await;

    let refused_copy = dir.join("refused.jsonl");
    let cli_fetch_refused = run_audit_async(&[
        "fetch",
        "--server",
        &url,
        "--ca",
        &p(env.pki.ca()),
        "--cert",
        &p(env.pki.cert("submitter")),
        "--key",
        &p(env.pki.key("submitter")),
        "-o",
        &p(refused_copy.clone()),
    ])
    .await;
    assert!(!refused_copy.exists(), "no copy left after a refusal");

    let _ = stop.send(());
    serving.await.unwrap().unwrap();

    // A second deployment, started and stopped (sealed: no checkpoint).
    let other = new_env(&dir.join("other-deployment"));
    let other_record =
        CeremonyRecord::from_json(&std::fs::read(other.dir.join("ceremony.json")).unwrap())
            .unwrap();
    Server::bind(Config::load(&other.config).unwrap(), Some("127.0.0.1:0"))
        .await
        .unwrap()
        .run(async {})
        .await
        .unwrap();

    Fixture {
        ceremony_json: env.dir.join("ceremony.json"),
        dir,
        record,
        audit_dir,
        receipts,
        personal,
        saved_after_unseal,
        auditor_read,
        files_after_read,
        submitter_read_status,
        cli_fetch: (code, fetched),
        cli_fetch_refused,
        other_record,
        other_audit_dir: other.dir.join("audit"),
        env,
    }
}

/// The bytes of every log file of a directory, in chain order.
pub fn concat_files(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in cstatns::audit::log_files(dir).unwrap() {
        all.extend(std::fs::read(f).unwrap());
    }
    all
}

/// The log's lines (without line ends), across files.
pub fn lines(dir: &Path) -> Vec<String> {
    String::from_utf8(concat_files(dir))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes lines as one log file in a fresh directory under `scratch`;
/// returns the file.
pub fn write_log(scratch: &Path, name: &str, lines: &[String]) -> PathBuf {
    let dir = scratch.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("log.jsonl");
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&file, text).unwrap();
    file
}

/// `,"prev":"<64>","hash":"<64>"}`
const TAIL: usize = 9 + 64 + 10 + 64 + 2;

/// A record line rebuilt with another `prev` and its hash recomputed, as
/// someone rewriting the log would do.
pub fn relink(line: &str, prev: &str) -> String {
    let body = &line[..line.len() - TAIL];
    let unhashed = format!("{body},\"prev\":\"{prev}\"}}");
    let hash = hex::encode(Sha256::digest(unhashed.as_bytes()));
    format!("{body},\"prev\":\"{prev}\",\"hash\":\"{hash}\"}}")
}

/// The `prev` of a line.
pub fn prev_of(line: &str) -> &str {
    let at = line.len() - TAIL + 9;
    &line[at..at + 64]
}

/// The `hash` of a line.
pub fn hash_of(line: &str) -> &str {
    &line[line.len() - 66..line.len() - 2]
}

/// Recomputes every hash and link from line `from` on: a full rewrite of
/// the chain, which only the checkpoint signatures can catch.
pub fn rechain(lines: &mut [String], from: usize) {
    for i in from..lines.len() {
        let prev = if i == 0 {
            prev_of(&lines[0]).to_owned()
        } else {
            hash_of(&lines[i - 1]).to_owned()
        };
        lines[i] = relink(&lines[i], &prev);
    }
}

/// The index of the first line whose `event` is `event`.
pub fn find_event(lines: &[String], event: &str) -> usize {
    let needle = format!(",\"event\":\"{event}\",");
    lines
        .iter()
        .position(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no {event} record"))
}

/// The `seq` of a line.
pub fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

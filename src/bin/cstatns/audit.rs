//! `cstatns audit …`: the auditor's commands. Everything but `fetch` runs
//! offline, on copies of the log and the signed ceremony record.
//!
//! Exit status, so that a script can tell the three apart:
//! 0 verified; 1 tampered (or, for a receipt, altered / not recorded in the
//! log; for `fetch`, refused by the service, or, with `--follow`, the
//! service's log no longer holds the copy's history); 2 could not read (a
//! file is missing, unreadable or not what it should be; the service is
//! unreachable); 3 (`verify --require-signed`) verified, but records after
//! the newest checkpoint are not signed yet.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use cstatns::audit::report::{self, Period};
use cstatns::audit::verify::{self, ReceiptError, SavedCheckpoint, Verified, VerifyError};
use cstatns::client::{ClientError, Endpoint};
use cstatns::seal::{CeremonyRecord, SealError};

/// Exit status: the log (or receipt) verified.
pub const EXIT_VERIFIED: u8 = 0;
/// Exit status: the log, receipt or ceremony record was altered.
pub const EXIT_TAMPERED: u8 = 1;
/// Exit status of `fetch`: the service refused (e.g. no auditor role).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: something could not be read, so nothing was verified.
pub const EXIT_UNREADABLE: u8 = 2;
/// Exit status of `verify --require-signed`: the chain verified, but its
/// tail is not covered by a signature yet.
pub const EXIT_UNSIGNED_TAIL: u8 = 3;

const VERIFY_AFTER: &str = "\
Exit status:
  0  verified: every record's hash, the chain from the ceremony's genesis, every checkpoint's
     signature by the ceremony's log key (and the saved checkpoint, if given)
  1  tampered: the first bad record is named (file, line, seq) with what is wrong; or the
     ceremony record's own signature does not verify
  2  unreadable: a file is missing or unreadable, no log file found, a file that is not a log,
     a ceremony record or saved checkpoint that cannot be parsed
  3  with --require-signed: verified, but records after the newest checkpoint are not signed
     yet (UNSIGNED TAIL on stdout)

Records after the newest checkpoint are chained but not yet signed: anyone who can write the log
could still change them, which only the next checkpoint, or a copy that left the host, would
show. They are reported (UNSIGNED TAIL), and refused with --require-signed. Checkpoints are
numbered and each names the previous one's hash. Keep the checkpoint saved with
--save-checkpoint and pass it with --since-checkpoint next time, or keep a copy of the log off
the host (`cstatns audit fetch --follow`) and pass it with --against: a log cut back or rewritten
before it then fails. A copy fetched with `fetch --from SEQ` verifies when SEQ is the saved
checkpoint's seq.";

const REPORT_AFTER: &str = "\
The log is verified first; a report is only made of a log that verifies.
Exit status: 0 report written; 1 the log (or the ceremony record) was tampered with, no report;
2 unreadable.";

const RECEIPT_AFTER: &str = "\
Checks the receipt's signature by the ceremony's log key; with --log, also that the log verifies
and that its record at the receipt's log_seq is this batch's batch_end with the same counts.
Exit status: 0 the receipt holds; 1 it was altered, is from another ceremony, or the log does
not record it (or the log was tampered with); 2 unreadable.";

const FETCH_AFTER: &str = "\
Needs a certificate with the auditor role. The copy is written to a new file (never over an
existing one); verify it offline with `cstatns audit verify --ceremony ceremony.json FILE`.
Exit status: 0 written; 1 refused by the service (e.g. no auditor role); 2 error (unreachable
service, file exists or cannot be written).

With --follow the copy is kept up to date: fetched again every --interval seconds and appended
to, after checking that the service's log still holds the copy's last record (same seq, same
hash) and that what comes next chains onto it. A log rewritten on the host since (records
removed or changed, checkpoints removed and re-signed after an unseal) no longer holds it:
`fetch --follow` then stops with exit status 1 (DIVERGED), and `verify --against COPY` on the
service's log fails the same way. An existing FILE is resumed.";

/// `cstatns audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify a traceability log offline: hashes, chain, checkpoint signatures.
    #[command(after_help = VERIFY_AFTER)]
    Verify(VerifyArgs),
    /// Sum up a verified log: batches per client and purpose, key events, renewal date.
    #[command(after_help = REPORT_AFTER)]
    Report(ReportArgs),
    /// Verify a batch receipt against the ceremony record and, optionally, the log.
    #[command(after_help = RECEIPT_AFTER)]
    VerifyReceipt(VerifyReceiptArgs),
    /// Copy the log from the service over mutual TLS into a new file.
    #[command(after_help = FETCH_AFTER)]
    Fetch(FetchArgs),
}

/// `cstatns audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed ceremony record (ceremony.json): its log key checks the checkpoints.
    #[arg(long)]
    pub ceremony: PathBuf,
    /// A checkpoint saved by an earlier verification: the log must still hold it.
    #[arg(long, value_name = "FILE")]
    pub since_checkpoint: Option<PathBuf>,
    /// When the log verifies, write its newest checkpoint here (replacing the file).
    #[arg(long, value_name = "FILE")]
    pub save_checkpoint: Option<PathBuf>,
    /// A copy of this log kept off the host (`audit fetch --follow`): the log must still
    /// hold the copy's last record, same seq and same hash (and so, by the chain, all of it).
    #[arg(long, value_name = "COPY")]
    pub against: Option<PathBuf>,
    /// Exit 3 when records after the newest checkpoint are not signed yet.
    #[arg(long)]
    pub require_signed: bool,
    /// The audit directory, or log files in chain order (log-000001.jsonl … log.jsonl).
    #[arg(required = true, value_name = "DIR | FILE")]
    pub log: Vec<PathBuf>,
}

/// Output format of `cstatns audit report`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Aligned tables for a terminal.
    #[default]
    Table,
    /// One CSV table, one number a row (section,period,client,purpose,measure,value).
    Csv,
    /// JSON.
    Json,
}

/// `cstatns audit report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The signed ceremony record (ceremony.json).
    #[arg(long)]
    pub ceremony: PathBuf,
    /// Group by this period (UTC dates).
    #[arg(long, value_enum, default_value_t = Period::Month)]
    pub period: Period,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// A checkpoint saved by an earlier verification: the log must still hold it.
    #[arg(long, value_name = "FILE")]
    pub since_checkpoint: Option<PathBuf>,
    /// The audit directory, or log files in chain order.
    #[arg(required = true, value_name = "DIR | FILE")]
    pub log: Vec<PathBuf>,
}

/// `cstatns audit verify-receipt`.
#[derive(Debug, Args)]
pub struct VerifyReceiptArgs {
    /// The signed ceremony record (ceremony.json).
    #[arg(long)]
    pub ceremony: PathBuf,
    /// The log (audit directory or fetched file) that must record the batch.
    #[arg(long, value_name = "DIR | FILE")]
    pub log: Option<PathBuf>,
    /// The receipt (JSON, as printed by `cstatns submit`).
    #[arg(value_name = "RECEIPT.json")]
    pub receipt: PathBuf,
}

/// `cstatns audit fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The service, as https://HOST:PORT.
    #[arg(long)]
    pub server: String,
    /// CA certificate that signed the service's certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// Your certificate (PEM), with the auditor role.
    #[arg(long)]
    pub cert: PathBuf,
    /// Your private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Revocation list(s) of the CA (PEM): refuse a revoked service certificate.
    #[arg(long, value_name = "PEM")]
    pub crl: Option<PathBuf>,
    /// First seq to fetch (default: the whole log). A partial copy verifies only with
    /// --since-checkpoint naming a checkpoint at this seq.
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    pub from: u64,
    /// The file to write (must not exist, unless --follow resumes it).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Keep the copy up to date: fetch what is new every --interval seconds, checking that
    /// the service's log still holds the copy's history; stops on a divergence (exit 1).
    #[arg(long)]
    pub follow: bool,
    /// Seconds between two fetches with --follow.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub interval: u64,
    /// With --follow, stop after this many fetches (0: until interrupted).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rounds: u64,
}

/// Runs one subcommand; the exit status is as documented in the module.
/// Outcomes are printed here (results on stdout, problems on stderr); an
/// `Err` is left only for failures outside those (none at present).
pub async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(match cmd {
        AuditCommand::Verify(a) => run_verify(&a),
        AuditCommand::Report(a) => run_report(&a),
        AuditCommand::VerifyReceipt(a) => run_verify_receipt(&a),
        AuditCommand::Fetch(a) if a.follow => run_follow(&a).await,
        AuditCommand::Fetch(a) => run_fetch(&a).await,
    }))
}

/// Reads and checks the ceremony record; on failure, says why and gives the
/// exit status.
fn load_record(path: &Path) -> Result<CeremonyRecord, u8> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        EXIT_UNREADABLE
    })?;
    let record = CeremonyRecord::from_json(&bytes).map_err(|e| {
        eprintln!("error: {} is not a ceremony record: {e}", path.display());
        EXIT_UNREADABLE
    })?;
    match record.verify_signature() {
        Ok(()) => Ok(record),
        Err(SealError::BadRecordSignature) => {
            println!(
                "TAMPERED: the ceremony record {} does not verify with its own log key: it was altered",
                path.display()
            );
            Err(EXIT_TAMPERED)
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            Err(EXIT_UNREADABLE)
        }
    }
}

/// Prints a verification failure and gives the exit status.
fn log_failure(e: &VerifyError) -> u8 {
    match e {
        VerifyError::Tampered { .. } => {
            println!("TAMPERED: {e}");
            EXIT_TAMPERED
        }
        _ => {
            eprintln!("error: {e}");
            EXIT_UNREADABLE
        }
    }
}

/// The files of the `DIR | FILE...` argument.
fn log_files_arg(paths: &[PathBuf]) -> Result<Vec<PathBuf>, VerifyError> {
    match paths {
        [one] => verify::files_of(one),
        many => {
            if let Some(dir) = many.iter().find(|p| p.is_dir()) {
                return Err(VerifyError::Unreadable {
                    path: dir.clone(),
                    reason: "give either one directory or log files, not both".into(),
                });
            }
            Ok(many.to_vec())
        }
    }
}

fn since_arg(path: Option<&Path>) -> Result<Option<SavedCheckpoint>, VerifyError> {
    path.map(SavedCheckpoint::read).transpose()
}

fn summary(v: &Verified) -> String {
    let mut s = format!(
        "verified: {} records, seq {} to {}, in {} file{}, {} to {}\n",
        v.records,
        v.first_seq,
        v.last_seq,
        v.files,
        if v.files == 1 { "" } else { "s" },
        v.first_time,
        v.last_time
    );
    if v.from_genesis {
        s += &format!("chain from the genesis of ceremony {}\n", v.ceremony_id);
    } else {
        s += &format!(
            "chain from the saved checkpoint at seq {} (ceremony {})\n",
            v.first_seq, v.ceremony_id
        );
    }
    match &v.last_checkpoint {
        Some(c) => {
            s += &format!(
                "{} signed checkpoint{}, newest at seq {}\n",
                v.checkpoints,
                if v.checkpoints == 1 { "" } else { "s" },
                c.seq
            )
        }
        None => s += "no signed checkpoint\n",
    }
    if v.partial_last_line {
        s += "the last line has no line end (a write in progress, or cut off by a crash): not verified, not counted\n";
    }
    if v.unsigned_records == 0 {
        s += "every record is covered by a signed checkpoint\n";
    } else {
        s += &format!(
            "UNSIGNED TAIL: {} record{} after the newest checkpoint (seq {} to {}), chained but not \
             yet signed: they could still be changed without this verification seeing it\n",
            v.unsigned_records,
            if v.unsigned_records == 1 { "" } else { "s" },
            v.last_seq + 1 - v.unsigned_records,
            v.last_seq
        );
    }
    s
}

/// The `seq` and `hash` of the last complete record of a log copy.
fn last_record_of(path: &Path) -> Result<Option<(u64, String)>, String> {
    last_record_and_length(path).map(|(last, _)| last)
}

/// [`last_record_of`], and the length of the copy's whole lines (what
/// follows them is a line half-written by a crash).
fn last_record_and_length(path: &Path) -> Result<(Option<(u64, String)>, u64), String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, 0)),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let text = String::from_utf8_lossy(&bytes[..complete]);
    let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Ok((None, complete as u64));
    };
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|_| format!("{}: its last line is not a log record", path.display()))?;
    match (v["seq"].as_u64(), v["hash"].as_str()) {
        (Some(seq), Some(hash)) => Ok((Some((seq, hash.to_owned())), complete as u64)),
        _ => Err(format!(
            "{}: its last line is not a log record",
            path.display()
        )),
    }
}

fn run_verify(a: &VerifyArgs) -> u8 {
    let record = match load_record(&a.ceremony) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let against = match &a.against {
        None => None,
        Some(copy) => match last_record_of(copy) {
            Ok(Some(last)) => Some(last),
            Ok(None) => {
                eprintln!("error: {} holds no record", copy.display());
                return EXIT_UNREADABLE;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_UNREADABLE;
            }
        },
    };
    // The hash the log has at the copy's last seq, seen as it verifies.
    let mut at_copy_seq: Option<String> = None;
    let result = since_arg(a.since_checkpoint.as_deref()).and_then(|since| {
        let files = log_files_arg(&a.log)?;
        verify::verify_files_with(&files, &record, since.as_ref(), &mut |r| {
            if against.as_ref().is_some_and(|(seq, _)| *seq == r.seq) {
                at_copy_seq = Some(r.hash.clone());
            }
        })
    });
    let v = match result {
        Ok(v) => v,
        Err(e) => return log_failure(&e),
    };
    if let (Some((seq, hash)), Some(copy)) = (&against, &a.against) {
        let problem = match &at_copy_seq {
            Some(h) if h.eq_ignore_ascii_case(hash) => None,
            Some(_) => Some(format!(
                "the record at seq {seq} differs from the one in {}: the log was rewritten since the copy was taken",
                copy.display()
            )),
            None if v.last_seq < *seq => Some(format!(
                "the log ends at seq {} but {} holds records up to seq {seq}: the log was cut back",
                v.last_seq,
                copy.display()
            )),
            None => {
                eprintln!(
                    "error: the log starts at seq {}, after the copy's last record (seq {seq}): nothing to compare",
                    v.first_seq
                );
                return EXIT_UNREADABLE;
            }
        };
        if let Some(p) = problem {
            println!("TAMPERED: {p}");
            return EXIT_TAMPERED;
        }
    }
    print!("{}", summary(&v));
    if let (Some((seq, _)), Some(copy)) = (&against, &a.against) {
        println!(
            "the log still holds the history of {} (up to seq {seq}) unchanged",
            copy.display()
        );
    }
    if let Some(path) = &a.save_checkpoint {
        match &v.last_checkpoint {
            Some(c) => {
                if let Err(e) = c.save(path) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return EXIT_UNREADABLE;
                }
                println!("checkpoint seq {} saved to {}", c.seq, path.display());
            }
            None => eprintln!(
                "note: the log holds no checkpoint; {} left as it was",
                path.display()
            ),
        }
    }
    if a.require_signed && v.unsigned_records > 0 {
        return EXIT_UNSIGNED_TAIL;
    }
    EXIT_VERIFIED
}

fn run_report(a: &ReportArgs) -> u8 {
    let record = match load_record(&a.ceremony) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let today = time::OffsetDateTime::now_utc().date();
    let result = since_arg(a.since_checkpoint.as_deref()).and_then(|since| {
        let files = log_files_arg(&a.log)?;
        report::report_files(&files, &record, since.as_ref(), a.period, today)
    });
    match result {
        Ok(r) => {
            print!(
                "{}",
                match a.format {
                    ReportFormat::Table => r.table(),
                    ReportFormat::Csv => r.csv(),
                    ReportFormat::Json => r.json(),
                }
            );
            EXIT_VERIFIED
        }
        Err(e) => log_failure(&e),
    }
}

fn run_verify_receipt(a: &VerifyReceiptArgs) -> u8 {
    let record = match load_record(&a.ceremony) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let bytes = match std::fs::read(&a.receipt) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", a.receipt.display());
            return EXIT_UNREADABLE;
        }
    };
    let result = verify::parse_receipt(&bytes)
        .and_then(|r| verify::verify_receipt(&r, &record, a.log.as_deref()));
    match result {
        Ok(v) => {
            println!(
                "receipt of batch {} verified: signed by the log key of ceremony {}",
                v.batch,
                record.ceremony_id()
            );
            if let Some(log) = &v.log {
                println!(
                    "recorded as batch_end at seq {} of the log, which verified (seq {} to {})",
                    v.log_seq, log.first_seq, log.last_seq
                );
            }
            EXIT_VERIFIED
        }
        Err(ReceiptError::Malformed(m)) => {
            eprintln!("error: {} is not a receipt: {m}", a.receipt.display());
            EXIT_UNREADABLE
        }
        Err(e @ ReceiptError::Invalid { .. }) => {
            println!("RECEIPT DOES NOT HOLD: {e}");
            EXIT_TAMPERED
        }
        Err(ReceiptError::Log(e)) => log_failure(&e),
        // A kind of failure added to the library later: nothing verified.
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_UNREADABLE
        }
    }
}

async fn run_fetch(a: &FetchArgs) -> u8 {
    let file = match cstatns::client::create_private(&a.output) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_UNREADABLE;
        }
    };
    let endpoint = Endpoint {
        server: a.server.clone(),
        ca: a.ca.clone(),
        cert: a.cert.clone(),
        key: a.key.clone(),
        crl: a.crl.clone(),
    };
    let mut out = tokio::fs::File::from_std(file);
    let result = async {
        let n = endpoint
            .connect()
            .await?
            .audit_log(a.from, &mut out)
            .await?;
        out.sync_all().await.map_err(|source| ClientError::File {
            path: a.output.clone(),
            source,
        })?;
        Ok::<u64, ClientError>(n)
    }
    .await;
    match result {
        Ok(n) => {
            println!(
                "fetched {n} bytes of the log into {}; verify it with `cstatns audit verify --ceremony ceremony.json {}`",
                a.output.display(),
                a.output.display()
            );
            EXIT_VERIFIED
        }
        Err(e) => {
            // Leave no partial copy that could be mistaken for the log.
            let _ = std::fs::remove_file(&a.output);
            eprintln!("error: {e}");
            match e {
                ClientError::Refused { .. } => EXIT_REFUSED,
                _ => EXIT_UNREADABLE,
            }
        }
    }
}

/// `fetch --follow`: keeps `output` a growing copy of the service's log.
/// Each round fetches from the copy's last seq (that record once more), and
/// appends only if the service still holds that record unchanged and what
/// follows chains onto it; a divergence stops it (exit 1).
async fn run_follow(a: &FetchArgs) -> u8 {
    use std::io::Write;
    let endpoint = Endpoint {
        server: a.server.clone(),
        ca: a.ca.clone(),
        cert: a.cert.clone(),
        key: a.key.clone(),
        crl: a.crl.clone(),
    };
    let mut round = 0u64;
    loop {
        round += 1;
        let (last, whole) = match last_record_and_length(&a.output) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_UNREADABLE;
            }
        };
        let from = last.as_ref().map_or(a.from, |(seq, _)| *seq);
        let mut got = Vec::new();
        let fetched = async { endpoint.connect().await?.audit_log(from, &mut got).await }.await;
        if let Err(e) = fetched {
            eprintln!("error: {e}");
            return match e {
                ClientError::Refused { .. } => EXIT_REFUSED,
                _ => EXIT_UNREADABLE,
            };
        }
        let complete = got.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let Ok(text) = std::str::from_utf8(&got[..complete]) else {
            println!("DIVERGED: the service sent a log that is not UTF-8");
            return EXIT_TAMPERED;
        };
        let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
        let mut chain = last.clone();
        if let Some((seq, hash)) = &last {
            // The service must still hold the copy's last record as it was.
            let first = lines
                .next()
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
            let same = first.as_ref().is_some_and(|v| {
                v["seq"].as_u64() == Some(*seq) && v["hash"].as_str() == Some(hash.as_str())
            });
            if !same {
                println!(
                    "DIVERGED: the service's log no longer holds record seq {seq} as {} has it: \
                     its history was cut back or rewritten since it was copied",
                    a.output.display()
                );
                return EXIT_TAMPERED;
            }
        }
        let mut new = String::new();
        let mut added = 0u64;
        for line in lines {
            let v: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) => {
                    println!("DIVERGED: the service sent a line that is not a log record");
                    return EXIT_TAMPERED;
                }
            };
            let (Some(seq), Some(prev), Some(hash)) =
                (v["seq"].as_u64(), v["prev"].as_str(), v["hash"].as_str())
            else {
                println!("DIVERGED: the service sent a record without seq, prev or hash");
                return EXIT_TAMPERED;
            };
            if let Some((last_seq, last_hash)) = &chain {
                if seq != last_seq + 1 || prev != last_hash {
                    println!(
                        "DIVERGED: record seq {seq} does not chain onto seq {last_seq} of the copy"
                    );
                    return EXIT_TAMPERED;
                }
            }
            chain = Some((seq, hash.to_owned()));
            new.push_str(line);
            new.push('\n');
            added += 1;
        }
        if added > 0 {
            let written = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&a.output)
                .and_then(|mut f| {
                    use std::os::unix::fs::PermissionsExt;
                    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                    // A line half-appended by an earlier round (a crash)
                    // goes: the copy is whole lines only.
                    if f.metadata()?.len() > whole {
                        f.set_len(whole)?;
                    }
                    f.write_all(new.as_bytes())?;
                    f.sync_all()
                });
            if let Err(e) = written {
                eprintln!("error: cannot append to {}: {e}", a.output.display());
                return EXIT_UNREADABLE;
            }
        }
        let upto = chain.as_ref().map_or(0, |(s, _)| *s);
        println!(
            "round {round}: {added} new record{} appended to {} (up to seq {upto})",
            if added == 1 { "" } else { "s" },
            a.output.display()
        );
        if a.rounds != 0 && round >= a.rounds {
            return EXIT_VERIFIED;
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(a.interval.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return EXIT_VERIFIED,
        }
    }
}

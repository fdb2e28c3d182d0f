//! The traceability log (DESIGN §6). The format — records, chain, genesis,
//! checkpoints, rotation, events — is specified for auditors in
//! `docs/traceability.md`; this module writes it, [`verify`] checks it and
//! [`report`] sums it up.
//!
//! A record is written and fsynced before the operation it records is
//! acknowledged; if it cannot be, [`AuditLog::append`] fails and the caller
//! refuses the operation. What is written is an [`Event`], whose fields can
//! only be counts, names, certificate identities and words of the log's
//! vocabulary: never a NIR, a code, an index or anything computed from one
//! (see [`crate::event`]).

pub mod report;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::event::{Event, PublicHex, Term, Timestamp};
use crate::seal::LogSigningKey;
use crate::tls::PeerIdentity;

/// Name of the current log file inside the audit directory.
pub const LOG_FILE: &str = "log.jsonl";
/// Default size at which the current file is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
/// Default interval between checkpoints, in seconds.
pub const DEFAULT_CHECKPOINT_SECONDS: u64 = 300;

/// `prev` of record 1: ties the log to its ceremony.
pub fn genesis(ceremony_id: &str) -> String {
    hex::encode(Sha256::digest(format!(
        "cstatns log genesis v1\n{ceremony_id}"
    )))
}

/// The message a checkpoint written before numbering signs.
pub fn checkpoint_message(ceremony_id: &str, covers_seq: u64, covers_hash: &str) -> Vec<u8> {
    format!("cstatns log checkpoint v1\n{ceremony_id}\n{covers_seq}\n{covers_hash}").into_bytes()
}

/// The message a numbered checkpoint signs: its number and the previous
/// checkpoint's record hash too, so that checkpoints are chained to each
/// other under the signature.
pub fn checkpoint_message_v2(
    ceremony_id: &str,
    number: u64,
    covers_seq: u64,
    covers_hash: &str,
    prev_checkpoint: &str,
) -> Vec<u8> {
    format!(
        "cstatns log checkpoint v2\n{ceremony_id}\n{number}\n{covers_seq}\n{covers_hash}\n{prev_checkpoint}"
    )
    .into_bytes()
}

/// `prev_checkpoint` of a log's first checkpoint.
pub const NO_CHECKPOINT: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `details` of the newest record of `event` in the log files of `dir`.
pub fn last_details_of(dir: &Path, event: &str) -> Option<serde_json::Value> {
    let files = log_files(dir).ok()?;
    let marker = format!("\"event\":\"{event}\"");
    for f in files.iter().rev() {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let found = text
            .lines()
            .rev()
            .filter(|l| l.contains(&marker))
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event);
        if let Some(mut v) = found {
            return Some(v["details"].take());
        }
    }
    None
}

/// The number and record hash of the newest checkpoint in the log files of
/// `dir` (newest file first); `(0, NO_CHECKPOINT)` when there is none. A
/// checkpoint written before numbering counts as number 0.
fn last_checkpoint(dir: &Path) -> Result<(u64, String), AuditError> {
    let files = match log_files(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(dir, e)),
    };
    for f in files.iter().rev() {
        let text = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(f, e)),
        };
        let text = String::from_utf8_lossy(&text);
        let found = text
            .lines()
            .rev()
            .filter(|l| l.contains("\"event\":\"checkpoint\""))
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "checkpoint");
        if let Some(v) = found {
            let number = v["details"]["number"].as_u64().unwrap_or(0);
            let hash = v["hash"].as_str().unwrap_or(NO_CHECKPOINT).to_owned();
            return Ok((number, hash));
        }
    }
    Ok((0, NO_CHECKPOINT.to_owned()))
}

/// The message a receipt signature covers: the receipt's JSON with an empty
/// `signature`, after a domain prefix.
pub fn receipt_message(receipt_json_without_signature: &[u8]) -> Vec<u8> {
    let mut m = b"cstatns receipt v1\n".to_vec();
    m.extend_from_slice(receipt_json_without_signature);
    m
}

/// The hash of a record line (without its line end): SHA-256 of the line up
/// to `,"hash"` followed by `}`. `None` if the line does not end with a
/// well-formed `hash` member.
pub fn line_hash(line: &[u8]) -> Option<(String, &str)> {
    const TAIL: usize = r#","hash":""}"#.len() + 64;
    if line.len() < TAIL + 2 || !line.ends_with(b"\"}") {
        return None;
    }
    let cut = line.len() - TAIL;
    if !line[cut..].starts_with(br#","hash":""#) {
        return None;
    }
    let stated = std::str::from_utf8(&line[cut + 9..line.len() - 2]).ok()?;
    let mut h = Sha256::new();
    h.update(&line[..cut]);
    h.update(b"}");
    Some((hex::encode(h.finalize()), stated))
}

/// The log could not be opened or written.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing failed.
    #[error("traceability log {path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
    /// The existing log does not verify (a broken chain, a bad checkpoint
    /// signature, a record of another ceremony): the service will not
    /// extend it, and so will not sign it.
    #[error(
        "traceability log {dir}: the existing log does not verify, so the service will not extend \
         or sign it: {reason}. Have it examined (`cstatns audit verify`); keep it as evidence and \
         start from an empty log directory only by a decision of the key holders"
    )]
    DoesNotVerify {
        /// The log directory.
        dir: PathBuf,
        /// What the verifier found.
        reason: String,
    },
    /// The last record of an existing log is not a log record.
    #[error(
        "traceability log {path}: the last record is unreadable; run `cstatns audit verify` on it"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
}

/// What `GET /v1/status` says of the log.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Health {
    /// False while the last write failed: the service refuses work.
    pub writable: bool,
    /// Why, when not writable.
    pub error: Option<String>,
    /// Sequence number of the last record.
    pub seq: u64,
    /// Records not yet covered by a signed checkpoint.
    pub unsigned_records: u64,
}

struct Tail {
    /// Where the chain stands, records not yet on disk included.
    chain: Chain,
    signer: Option<Arc<LogSigningKey>>,
    error: Option<(String, String)>,
    /// The chain as of the last record known to be on disk: what a failed
    /// fsync takes the tail back to.
    durable: Chain,
    /// Records written since the last fsync, all in one file (a write that
    /// finds another file under the log's name syncs the first one before).
    unsynced: Option<Unsynced>,
    /// Records an fsync outside the lock is syncing ([`AuditLog::durable`]).
    in_flight: Option<Unsynced>,
    /// Bumped each time a failed fsync takes the tail back.
    epoch: u64,
}

/// Where the chain stands: what a failed fsync rolls back.
#[derive(Clone, Default)]
struct Chain {
    seq: u64,
    prev: String,
    /// Size and UTC date (YYYY-MM-DD) of the first record of the current file.
    file_len: u64,
    file_date: Option<String>,
    unsigned: u64,
    /// `time` of the last record: a clock stepped back must not make the
    /// log look tampered with (verifiers refuse times that go backwards).
    last_time: String,
    /// The newest checkpoint's number and record hash.
    checkpoint: (u64, String),
}

/// Records written but not yet fsynced.
struct Unsynced {
    /// The file they are in (the last handle written through).
    file: Arc<File>,
    /// Its device and inode: a later write that opens another file (the
    /// directory replaced or mounted over) syncs this one first.
    inode: (u64, u64),
    /// Where the first of them starts: what a failed fsync cuts back to.
    from: u64,
}

impl Tail {
    /// The records not known to be on disk: those an fsync outside the lock
    /// is syncing, then those written since.
    fn pending(&self) -> impl Iterator<Item = &Unsynced> {
        [self.in_flight.as_ref(), self.unsynced.as_ref()]
            .into_iter()
            .flatten()
    }
}

/// Group commit: which records are known to be on disk, and whether an
/// fsync is under way. A record is acknowledged only once an fsync that
/// began after it was written has succeeded; writers that come while an
/// fsync runs are covered together by the next one, so that concurrent
/// batches share fsyncs instead of queueing for one each.
#[derive(Default)]
struct Syncs {
    syncing: bool,
    /// The last record on disk, in the current epoch.
    synced: u64,
    epoch: u64,
    /// For each epoch ended by a failed fsync: the last record on disk then,
    /// and why the fsync failed (the few newest; writers wait microseconds).
    rollbacks: std::collections::VecDeque<(u64, u64, PathBuf, String)>,
}

impl Syncs {
    /// Whether record `seq`, written in `epoch`, is on disk (`Some(Ok)`),
    /// was rolled back (`Some(Err)`), or is still to be synced (`None`).
    fn outcome(&self, seq: u64, epoch: u64) -> Option<Result<u64, AuditError>> {
        if epoch == self.epoch {
            return (self.synced >= seq).then_some(Ok(seq));
        }
        match self.rollbacks.iter().find(|r| r.0 == epoch) {
            Some((_, durable, _, _)) if seq <= *durable => Some(Ok(seq)),
            Some((_, _, path, message)) => Some(Err(io_err(path, message))),
            None => Some(Err(io_err(
                Path::new(LOG_FILE),
                "the record was rolled back",
            ))),
        }
    }
}

/// An open log.
pub struct AuditLog {
    dir: PathBuf,
    ceremony_id: String,
    max_file_bytes: u64,
    tail: Mutex<Tail>,
    syncs: Mutex<Syncs>,
    synced: std::sync::Condvar,
}

#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    time: &'a str,
    event: &'a str,
    actor: Option<&'a PeerIdentity>,
    details: &'a serde_json::Value,
    prev: &'a str,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> AuditError {
    AuditError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The rotated files of a directory, oldest first, then the current one if present.
pub fn log_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut rotated: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(n) = name
            .strip_prefix("log-")
            .and_then(|r| r.strip_suffix(".jsonl"))
        {
            if let Ok(n) = n.parse::<u64>() {
                rotated.push((n, path));
            }
        }
    }
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    let current = dir.join(LOG_FILE);
    if current.exists() {
        files.push(current);
    }
    Ok(files)
}

/// The last complete line of a file and the file's length after cutting off a
/// trailing partial line (a write interrupted by a crash: never acknowledged).
fn last_line(path: &Path) -> Result<(Option<String>, u64, Option<String>, u64), AuditError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, 0, None, 0)),
        Err(e) => return Err(io_err(path, e)),
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let dropped = (bytes.len() - complete) as u64;
    let text = String::from_utf8_lossy(&bytes[..complete]);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first_date = lines
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["time"].as_str().map(|t| t.chars().take(10).collect()));
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_owned);
    Ok((last, complete as u64, first_date, dropped))
}

/// The files of `dir`'s log that a start verifies before it appends (and
/// `serve --check-config` with it), in chain order: none for a directory
/// not made yet; an empty current file (just rotated, or just created)
/// left out, as is a current file that holds nothing but a half-written
/// line (a crash during its first write: no forgery, [`AuditLog::open`] cuts
/// it off and logs it). An unreadable file is kept, for the verifier to
/// say so.
pub fn files_to_verify(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let files = match log_files(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| std::fs::metadata(f).map(|m| m.len() > 0).unwrap_or(true))
        .collect();
    if files
        .last()
        .is_some_and(|f| f.ends_with(LOG_FILE) && !holds_a_line_end(f))
    {
        files.pop();
    }
    Ok(files)
}

impl AuditLog {
    /// Opens (or starts) the log in `dir` for the given ceremony, resuming
    /// after its last record.
    /// Opens the log of the ceremony `record` for appending, after checking
    /// that what is there verifies: every record's hash, the chain from the
    /// ceremony's genesis across files, every checkpoint's signature by the
    /// ceremony's log key. A log that does not verify is refused
    /// ([`AuditError::DoesNotVerify`]), so that the genuine key never signs
    /// a forged history. (A half-written last line is no forgery: [`open`]
    /// cuts it off and logs it.)
    ///
    /// [`open`]: AuditLog::open
    pub fn open_verified(
        dir: &Path,
        record: &crate::seal::CeremonyRecord,
        max_file_bytes: u64,
    ) -> Result<Self, AuditError> {
        let files = files_to_verify(dir).map_err(|e| io_err(dir, e))?;
        if !files.is_empty() {
            verify::verify_files(&files, record, None).map_err(|e| AuditError::DoesNotVerify {
                dir: dir.to_owned(),
                reason: e.to_string(),
            })?;
        }
        Self::open(dir, &record.ceremony_id().to_string(), max_file_bytes)
    }

    /// Opens the log for appending without verifying it (tests and tools
    /// that have just verified it; the service uses [`AuditLog::open_verified`]).
    pub fn open(dir: &Path, ceremony_id: &str, max_file_bytes: u64) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let current = dir.join(LOG_FILE);
        let (mut last, mut len, file_date, dropped) = last_line(&current)?;
        if dropped > 0 {
            let f = OpenOptions::new()
                .write(true)
                .open(&current)
                .map_err(|e| io_err(&current, e))?;
            f.set_len(len).map_err(|e| io_err(&current, e))?;
            f.sync_all().map_err(|e| io_err(&current, e))?;
        }
        if last.is_none() {
            // The current file is new or empty: resume from the newest rotated one.
            let files = log_files(dir).map_err(|e| io_err(dir, e))?;
            if let Some(prev_file) = files.iter().rev().find(|p| **p != current) {
                last = last_line(prev_file)?.0;
                len = 0;
            }
        }
        let mut tail = Tail {
            chain: Chain {
                seq: 0,
                prev: genesis(ceremony_id),
                file_len: len,
                file_date,
                unsigned: 0,
                last_time: String::new(),
                checkpoint: last_checkpoint(dir)?,
            },
            signer: None,
            error: None,
            durable: Chain::default(),
            unsynced: None,
            in_flight: None,
            epoch: 0,
        };
        if let Some(last) = last {
            let v: serde_json::Value =
                serde_json::from_str(&last).map_err(|_| AuditError::Corrupt {
                    path: current.clone(),
                })?;
            match (v["seq"].as_u64(), v["hash"].as_str()) {
                (Some(seq), Some(hash)) => {
                    tail.chain.seq = seq;
                    tail.chain.prev = hash.to_owned();
                    tail.chain.unsigned = u64::from(v["event"] != "checkpoint");
                    tail.chain.last_time = v["time"].as_str().unwrap_or_default().to_owned();
                }
                _ => return Err(AuditError::Corrupt { path: current }),
            }
        }
        tail.durable = tail.chain.clone();
        let log = Self {
            dir: dir.to_owned(),
            ceremony_id: ceremony_id.to_owned(),
            max_file_bytes,
            syncs: Mutex::new(Syncs {
                synced: tail.chain.seq,
                ..Syncs::default()
            }),
            tail: Mutex::new(tail),
            synced: std::sync::Condvar::new(),
        };
        if dropped > 0 {
            log.append(
                &Event::AuditRepaired {
                    dropped_partial_line_bytes: dropped,
                },
                None,
            )?;
        }
        Ok(log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record and fsyncs it; returns its sequence number. On
    /// failure nothing of the record stays in the file, the log is marked
    /// unwritable (see [`AuditLog::health`]) and the caller must refuse the
    /// operation.
    pub fn append(&self, event: &Event, actor: Option<&PeerIdentity>) -> Result<u64, AuditError> {
        self.commit(self.lock(), event, actor)
    }

    /// Writes `event` under the held lock, lets it go, and waits until the
    /// record is on disk. An error if the record could not be written, or
    /// if a failed fsync took the chain back meanwhile (a record written,
    /// then `audit_resumed` after it, goes with it).
    fn commit(
        &self,
        mut tail: std::sync::MutexGuard<'_, Tail>,
        event: &Event,
        actor: Option<&PeerIdentity>,
    ) -> Result<u64, AuditError> {
        let epoch = tail.epoch;
        let seq = self.record(&mut tail, event, actor)?;
        if tail.epoch != epoch {
            let why = tail
                .error
                .as_ref()
                .map_or("an fsync failed", |(_, e)| e.as_str());
            return Err(io_err(Path::new(LOG_FILE), why));
        }
        drop(tail);
        self.durable(seq, epoch)
    }

    fn lock_syncs(&self) -> std::sync::MutexGuard<'_, Syncs> {
        self.syncs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until record `seq` of `epoch` is on disk: fsyncs itself when no
    /// fsync is under way, or waits for the one under way and then the next.
    fn durable(&self, seq: u64, epoch: u64) -> Result<u64, AuditError> {
        let mut syncs = self.lock_syncs();
        loop {
            if let Some(r) = syncs.outcome(seq, epoch) {
                return r;
            }
            if syncs.syncing {
                syncs = self.synced.wait(syncs).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            syncs.syncing = true;
            drop(syncs);
            let synced_some = self.sync_written();
            syncs = self.lock_syncs();
            syncs.syncing = false;
            self.synced.notify_all();
            if !synced_some && syncs.outcome(seq, epoch).is_none() {
                // Nothing left to sync, yet the record is not known to be on
                // disk: never acknowledge it (cannot happen; no spinning).
                return Err(io_err(Path::new(LOG_FILE), "the record was not synced"));
            }
        }
    }

    /// One fsync covering every record written so far; false when there
    /// was nothing to sync.
    fn sync_written(&self) -> bool {
        let (file, chain, epoch) = {
            let mut tail = self.lock();
            let Some(u) = tail.unsynced.take() else {
                return false;
            };
            let file = u.file.clone();
            tail.in_flight = Some(u);
            (file, tail.chain.clone(), tail.epoch)
        };
        let synced = file.sync_data();
        let mut tail = self.lock();
        if tail.epoch != epoch || tail.in_flight.is_none() {
            // Taken over meanwhile: rolled back (a sync under the lock
            // failed: these records went with the others, and their writers
            // are told), or synced again under the lock (`sync_now`, which
            // covered them and went further).
            return true;
        }
        match synced {
            Ok(()) => {
                tail.in_flight = None;
                let seq = chain.seq;
                tail.durable = chain;
                let mut syncs = self.lock_syncs();
                syncs.synced = syncs.synced.max(seq);
            }
            // `in_flight` still names these records: `roll_back` cuts them.
            Err(e) => self.roll_back(&mut tail, &e.to_string()),
        }
        true
    }

    /// After a failed fsync: cuts every record not known to be on disk off
    /// the file (they were never acknowledged), takes the chain back to the
    /// last one that is, and fails the writers still waiting.
    fn roll_back(&self, tail: &mut Tail, message: &str) {
        // Each file once, to where its first record not on disk starts (an
        // fsync under way and the records written since can share a file:
        // cutting to the later offset after the earlier would grow it).
        let mut pending: Vec<Unsynced> = [tail.in_flight.take(), tail.unsynced.take()]
            .into_iter()
            .flatten()
            .collect();
        pending.sort_by_key(|u| u.from);
        let mut cut: Vec<(u64, u64)> = Vec::new();
        for u in pending {
            if !cut.contains(&u.inode) {
                cut.push(u.inode);
                let _ = u.file.set_len(u.from);
                let _ = u.file.sync_data();
            }
        }
        tail.chain = tail.durable.clone();
        let since = tail
            .error
            .take()
            .map_or_else(crate::receipt::now_rfc3339, |(s, _)| s);
        tail.error = Some((since, message.to_owned()));
        let mut syncs = self.lock_syncs();
        let ended = syncs.epoch;
        let durable = tail.chain.seq;
        if syncs.rollbacks.len() == 64 {
            syncs.rollbacks.pop_front();
        }
        syncs
            .rollbacks
            .push_back((ended, durable, self.dir.join(LOG_FILE), message.to_owned()));
        tail.epoch += 1;
        syncs.epoch = tail.epoch;
        syncs.synced = tail.chain.seq;
    }

    /// Syncs the records written since the last fsync now, under the tail's
    /// lock: before the file they are in is renamed, or when another file
    /// has taken its name. (An fsync under way outside the lock is done
    /// again: the chain is on disk only when all of it is.)
    fn sync_now(&self, tail: &mut Tail) -> Result<(), AuditError> {
        let files: Vec<Arc<File>> = tail.pending().map(|u| u.file.clone()).collect();
        for f in files {
            if let Err(e) = f.sync_data() {
                self.roll_back(tail, &e.to_string());
                return Err(io_err(&self.dir.join(LOG_FILE), e));
            }
        }
        // Both covered: the fsync under way outside the lock, when it
        // returns, finds `in_flight` gone and leaves the tail as it is.
        tail.in_flight = None;
        tail.unsynced = None;
        tail.durable = tail.chain.clone();
        let mut syncs = self.lock_syncs();
        syncs.synced = syncs.synced.max(tail.chain.seq);
        Ok(())
    }

    /// [`Self::write`] with the bookkeeping of failures: the first success
    /// after a failure also writes `audit_resumed`.
    fn record(
        &self,
        tail: &mut Tail,
        event: &Event,
        actor: Option<&PeerIdentity>,
    ) -> Result<u64, AuditError> {
        let r = self.write(tail, event, actor);
        match &r {
            Ok(_) => {
                if let Some((since, _)) = tail.error.take() {
                    // Say in the log itself that it was unwritable for a while.
                    let resumed = Event::AuditResumed {
                        failed_since: Timestamp::of(&since),
                    };
                    if let Err(e) = self.write(tail, &resumed, None) {
                        tail.error = Some((since, e.to_string()));
                    }
                }
            }
            Err(e) => {
                let since = tail
                    .error
                    .take()
                    .map_or_else(crate::receipt::now_rfc3339, |(s, _)| s);
                tail.error = Some((since, e.to_string()));
            }
        }
        r
    }

    fn write(
        &self,
        tail: &mut Tail,
        event: &Event,
        actor: Option<&PeerIdentity>,
    ) -> Result<u64, AuditError> {
        let (event, details) = event.to_parts();
        // Fixed-width RFC 3339 UTC timestamps compare as strings.
        let time = crate::receipt::now_rfc3339().max(tail.chain.last_time.clone());
        self.rotate_if_due(tail, &time)?;
        let path = self.dir.join(LOG_FILE);
        let seq = tail.chain.seq + 1;
        let rec = Unhashed {
            seq,
            time: &time,
            event,
            actor,
            details: &details,
            prev: &tail.chain.prev,
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| io_err(&path, e))?;
        let hash = hex::encode(Sha256::digest(&line));
        line.pop(); // the closing brace
        line.extend_from_slice(format!(",\"hash\":\"{hash}\"}}\n").as_bytes());
        // Opened by name for each record, so that a log directory made
        // read-only or replaced is seen at once (the service fails closed).
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let inode = {
            use std::os::unix::fs::MetadataExt;
            let m = f.metadata().map_err(|e| io_err(&path, e))?;
            (m.dev(), m.ino())
        };
        if tail.unsynced.as_ref().is_some_and(|u| u.inode != inode) {
            self.sync_now(tail)?;
        }
        let before = f.seek(SeekFrom::End(0)).map_err(|e| io_err(&path, e))?;
        if let Err(e) = f.write_all(&line) {
            // Leave no partial record behind.
            let _ = f.set_len(before);
            let _ = f.sync_data();
            return Err(io_err(&path, e));
        }
        // The fsync comes after, shared with the records written meanwhile
        // ([`AuditLog::durable`]).
        let from = tail.unsynced.as_ref().map_or(before, |u| u.from);
        tail.unsynced = Some(Unsynced {
            file: Arc::new(f),
            inode,
            from,
        });
        if tail.chain.file_len == 0 {
            tail.chain.file_date = Some(time.chars().take(10).collect());
        }
        tail.chain.file_len = before + line.len() as u64;
        tail.chain.seq = seq;
        if event == "checkpoint" {
            // Known here, where the record's own hash is: a record written
            // right after it (`audit_resumed`) must not take its place.
            tail.chain.checkpoint = (details["number"].as_u64().unwrap_or(0), hash.clone());
        }
        tail.chain.prev = hash;
        tail.chain.last_time = time;
        tail.chain.unsigned = if event == "checkpoint" {
            0
        } else {
            tail.chain.unsigned + 1
        };
        Ok(seq)
    }

    /// Renames the current file to the next `log-NNNNNN.jsonl` when it is too
    /// large or from another UTC day. The chain goes on in the new file.
    fn rotate_if_due(&self, tail: &mut Tail, now: &str) -> Result<(), AuditError> {
        let today: String = now.chars().take(10).collect();
        let due = tail.chain.file_len > 0
            && (tail.chain.file_len >= self.max_file_bytes
                || tail.chain.file_date.as_deref().is_some_and(|d| d != today));
        if !due {
            return Ok(());
        }
        let next = log_files(&self.dir)
            .map_err(|e| io_err(&self.dir, e))?
            .iter()
            .filter_map(|p| {
                p.file_name()?
                    .to_str()?
                    .strip_prefix("log-")?
                    .strip_suffix(".jsonl")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
            + 1;
        // Its records on disk before it takes its final name.
        self.sync_now(tail)?;
        let from = self.dir.join(LOG_FILE);
        let to = self.dir.join(format!("log-{next:06}.jsonl"));
        std::fs::rename(&from, &to).map_err(|e| io_err(&to, e))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        tail.chain.file_len = 0;
        tail.chain.file_date = None;
        // On disk as it is now: a later roll-back comes back to the new file.
        tail.durable = tail.chain.clone();
        Ok(())
    }

    /// Gives (or takes away, when sealing) the key that signs checkpoints.
    pub fn set_signer(&self, signer: Option<Arc<LogSigningKey>>) {
        self.lock().signer = signer;
    }

    /// Signs the chain so far with a `checkpoint` record. `Ok(None)` when there
    /// is no key (sealed) or nothing new to cover.
    pub fn checkpoint(&self, reason: &'static str) -> Result<Option<u64>, AuditError> {
        let tail = self.lock();
        let Some(signer) = tail.signer.clone() else {
            return Ok(None);
        };
        if tail.chain.unsigned == 0 {
            return Ok(None);
        }
        let number = tail.chain.checkpoint.0 + 1;
        let prev_checkpoint = tail.chain.checkpoint.1.clone();
        let sig = signer.sign(&checkpoint_message_v2(
            &self.ceremony_id,
            number,
            tail.chain.seq,
            &tail.chain.prev,
            &prev_checkpoint,
        ));
        let checkpoint = Event::Checkpoint {
            reason: Term::from(reason),
            covers_seq: tail.chain.seq,
            covers_hash: PublicHex::of_hex(&tail.chain.prev),
            public_key: PublicHex::of_hex(&signer.public_key_hex()),
            signature: PublicHex::of(sig),
            number: Some(number),
            prev_checkpoint: Some(PublicHex::of_hex(&prev_checkpoint)),
        };
        self.commit(tail, &checkpoint, None).map(Some)
    }

    /// Signs a receipt (the message of [`receipt_message`]); `None` while sealed.
    pub fn sign(&self, message: &[u8]) -> Option<String> {
        self.lock()
            .signer
            .as_ref()
            .map(|s| hex::encode(s.sign(message)))
    }

    /// Writable or not, and how far the chain is signed.
    pub fn health(&self) -> Health {
        let tail = self.lock();
        Health {
            writable: tail.error.is_none(),
            error: tail
                .error
                .as_ref()
                .map(|(since, e)| format!("{e} (since {since})")),
            seq: tail.chain.seq,
            unsigned_records: tail.chain.unsigned,
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files of the log, oldest first, fixed while no record can be
    /// written, so no rotation can slip between listing and reading: the
    /// current file is opened then (an open file keeps receiving records
    /// under any name), the rotated ones, which are never written again,
    /// are opened one at a time as they are read.
    pub fn open_files(&self) -> std::io::Result<Vec<LogFile>> {
        let tail = self.lock();
        // Up to the last record on disk: one still waiting for its fsync
        // could yet be rolled back, and a reader must never hold a record
        // the log then drops.
        let durable = tail.pending().map(|u| u.from).min().unwrap_or(u64::MAX);
        let current = self.dir.join(LOG_FILE);
        let mut files = Vec::new();
        for p in log_files(&self.dir)? {
            if p == current {
                match File::open(&p) {
                    Ok(f) => files.push(LogFile::Open(f.take(durable))),
                    // The current file before its first record.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            } else {
                files.push(LogFile::Later(p));
            }
        }
        Ok(files)
    }
}

/// A file of the log for [`copy_records`]: open already, or opened on its
/// first read (so that a long log costs one file descriptor at a time).
pub enum LogFile {
    /// Opened (the current file).
    Open(std::io::Take<File>),
    /// A rotated file, to open when read.
    Later(PathBuf),
}

impl Read for LogFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let LogFile::Later(p) = self {
            *self = LogFile::Open(File::open(&*p)?.take(u64::MAX));
        }
        match self {
            LogFile::Open(f) => f.read(buf),
            LogFile::Later(_) => Ok(0),
        }
    }
}

/// Whether the file holds at least one `\n` (reads up to the first one).
fn holds_a_line_end(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return true; // unreadable: left to the verifier to say so
    };
    let mut first = Vec::new();
    let mut reader = std::io::BufReader::new(f.take(1 << 20));
    std::io::BufRead::read_until(&mut reader, b'\n', &mut first)
        .is_ok_and(|_| first.ends_with(b"\n"))
        || first.len() >= 1 << 20
}

/// The `seq` of a record line, read from its prefix `{"seq":N,`.
fn seq_prefix(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let end = rest.iter().position(|&b| b == b',')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Copies the log's lines from `files` (oldest first, as
/// [`AuditLog::open_files`] gives them) to `emit`, byte for byte, from the
/// record `from` on; `emit` returns false to stop. Lines that do not read as
/// a record are passed on, for the auditor's verifier to see. A
/// half-written line at the end of the last file (a record being written)
/// is left out: it is not yet part of the log.
pub fn copy_records<R: Read>(
    files: Vec<R>,
    from: u64,
    mut emit: impl FnMut(&[u8]) -> bool,
) -> std::io::Result<()> {
    let last = files.len().saturating_sub(1);
    let mut line = Vec::new();
    for (i, f) in files.into_iter().enumerate() {
        let mut reader = std::io::BufReader::new(f);
        loop {
            line.clear();
            if std::io::BufRead::read_until(&mut reader, b'\n', &mut line)? == 0 {
                break;
            }
            if !line.ends_with(b"\n") {
                if i == last {
                    break;
                }
                line.push(b'\n');
            }
            if seq_prefix(&line).is_none_or(|s| s >= from) && !emit(&line) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEREMONY: &str = "00112233445566778899aabbccddeeff";

    fn lines(dir: &Path) -> Vec<String> {
        log_files(dir)
            .unwrap()
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn copying_the_log_leaves_out_a_record_being_written_and_keeps_the_bytes() {
        let rotated = b"{\"seq\":1,\"a\":1}\n{\"seq\":2,\"b\":\"\xff\"}".to_vec();
        let current = b"{\"seq\":3,\"c\":1}\nnot a record\n{\"seq\":4,\"d\":".to_vec();
        let copy = |from| {
            let mut out = Vec::new();
            copy_records(vec![&rotated[..], &current[..]], from, |l| {
                out.extend_from_slice(l);
                true
            })
            .expect("copy");
            out
        };
        assert_eq!(
            copy(0),
            b"{\"seq\":1,\"a\":1}\n{\"seq\":2,\"b\":\"\xff\"}\n{\"seq\":3,\"c\":1}\nnot a record\n"
        );
        assert_eq!(copy(3), b"{\"seq\":3,\"c\":1}\nnot a record\n");
    }

    #[test]
    fn records_chain_from_the_ceremony_genesis_and_resume_after_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), CEREMONY, DEFAULT_MAX_FILE_BYTES).unwrap();
        log.append(&Event::AuditProbe {}, None).unwrap();
        log.append(&Event::AuditProbe {}, None).unwrap();
        drop(log);
        let log = AuditLog::open(tmp.path(), CEREMONY, DEFAULT_MAX_FILE_BYTES).unwrap();
        assert_eq!(log.append(&Event::AuditProbe {}, None).unwrap(), 3);
        let mut prev = genesis(CEREMONY);
        for (i, l) in lines(tmp.path()).iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["seq"], i as u64 + 1);
            assert_eq!(v["prev"], prev.as_str());
            let (computed, stated) = line_hash(l.as_bytes()).unwrap();
            assert_eq!(computed, stated);
            prev = computed;
        }
    }

    #[test]
    fn concurrent_writers_share_fsyncs_and_keep_one_chain_across_rotations() {
        let tmp = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(tmp.path(), CEREMONY, 4096).unwrap());
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| log.append(&Event::AuditProbe {}, None).unwrap())
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=400).collect::<Vec<u64>>(),
            "each record its own seq"
        );
        // Every acknowledged record is in the files, chained, none twice.
        let all = lines(tmp.path());
        assert_eq!(all.len(), 400);
        assert!(
            log_files(tmp.path()).unwrap().len() > 2,
            "rotated meanwhile"
        );
        let mut prev = genesis(CEREMONY);
        for l in &all {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["prev"], prev.as_str());
            prev = line_hash(l.as_bytes()).unwrap().0;
        }
        // A reader sees exactly the acknowledged records.
        let mut copied = 0;
        copy_records(log.open_files().unwrap(), 0, |_| {
            copied += 1;
            true
        })
        .unwrap();
        assert_eq!(copied, 400);
    }

    #[test]
    fn rotation_keeps_one_chain_across_files() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), CEREMONY, 600).unwrap();
        for _ in 0..10 {
            log.append(
                &Event::RequestRefused {
                    operation: None,
                    reason: "forbidden".into(),
                    role: None,
                },
                None,
            )
            .unwrap();
        }
        let files = log_files(tmp.path()).unwrap();
        assert!(files.len() > 2, "{files:?}");
        assert_eq!(files.last().unwrap().file_name().unwrap(), LOG_FILE);
        let all = lines(tmp.path());
        assert_eq!(all.len(), 10);
        for w in all.windows(2) {
            let a: serde_json::Value = serde_json::from_str(&w[0]).unwrap();
            let b: serde_json::Value = serde_json::from_str(&w[1]).unwrap();
            assert_eq!(b["prev"], a["hash"]);
        }
    }

    #[test]
    fn a_half_written_record_is_cut_off_and_the_repair_logged() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), CEREMONY, DEFAULT_MAX_FILE_BYTES).unwrap();
        log.append(&Event::AuditProbe {}, None).unwrap();
        drop(log);
        let path = tmp.path().join(LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"time\":\"20").unwrap();
        drop(f);
        let log = AuditLog::open(tmp.path(), CEREMONY, DEFAULT_MAX_FILE_BYTES).unwrap();
        let all = lines(tmp.path());
        assert_eq!(all.len(), 2);
        assert!(all[1].contains("\"event\":\"audit_repaired\""));
        assert_eq!(log.health().seq, 2);
    }

    #[test]
    fn an_unwritable_log_fails_the_append_then_resumes_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), CEREMONY, DEFAULT_MAX_FILE_BYTES).unwrap();
        log.append(&Event::AuditProbe {}, None).unwrap();
        let path = tmp.path().join(LOG_FILE);
        let saved = tmp.path().join("saved");
        std::fs::rename(&path, &saved).unwrap();
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        assert!(log.append(&Event::AuditProbe {}, None).is_err());
        let h = log.health();
        assert!(!h.writable && h.error.is_some() && h.seq == 1);
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(&saved, &path).unwrap();
        assert_eq!(log.append(&Event::AuditProbe {}, None).unwrap(), 2);
        assert!(log.health().writable);
        let all = lines(tmp.path());
        assert_eq!(all.len(), 3);
        assert!(all[2].contains("\"event\":\"audit_resumed\""));
    }

    #[test]
    fn checkpoints_sign_the_chain_only_with_a_key_and_only_when_needed() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), CEREMONY, DEFAULT_MAX_FILE_BYTES).unwrap();
        log.append(&Event::AuditProbe {}, None).unwrap();
        assert_eq!(log.checkpoint("interval").unwrap(), None); // sealed: no key
        let key = Arc::new(LogSigningKey::generate());
        log.set_signer(Some(key.clone()));
        assert_eq!(log.checkpoint("unseal").unwrap(), Some(2));
        assert_eq!(log.checkpoint("interval").unwrap(), None); // nothing new
        let all = lines(tmp.path());
        let v: serde_json::Value = serde_json::from_str(&all[1]).unwrap();
        let d = &v["details"];
        assert_eq!(
            (d["number"].as_u64(), d["prev_checkpoint"].as_str()),
            (Some(1), Some(NO_CHECKPOINT))
        );
        let msg = checkpoint_message_v2(
            CEREMONY,
            1,
            1,
            d["covers_hash"].as_str().unwrap(),
            NO_CHECKPOINT,
        );
        let sig = ed25519_dalek::Signature::from_slice(
            &hex::decode(d["signature"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        key.verifying_key().verify_strict(&msg, &sig).unwrap();
        assert_eq!(d["covers_hash"], v["prev"]);
        // The next is number 2 and names the first, also after a reopen.
        drop(log);
        let log = AuditLog::open(tmp.path(), CEREMONY, DEFAULT_MAX_FILE_BYTES).unwrap();
        log.set_signer(Some(key));
        log.append(&Event::AuditProbe {}, None).unwrap();
        assert_eq!(log.checkpoint("interval").unwrap(), Some(4));
        let all = lines(tmp.path());
        let second: serde_json::Value = serde_json::from_str(&all[3]).unwrap();
        assert_eq!(second["details"]["number"], 2);
        assert_eq!(second["details"]["prev_checkpoint"], v["hash"]);
    }

    #[test]
    fn a_checkpoint_that_ends_an_outage_is_the_one_the_next_names() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), CEREMONY, DEFAULT_MAX_FILE_BYTES).unwrap();
        log.set_signer(Some(Arc::new(LogSigningKey::generate())));
        log.append(&Event::AuditProbe {}, None).unwrap();
        // The log was unwritable for a while: the checkpoint that ends it
        // is followed by `audit_resumed`.
        log.lock().error = Some(("2026-12-03T10:00:00Z".into(), "disk full".into()));
        log.checkpoint("resume").unwrap();
        log.append(&Event::AuditProbe {}, None).unwrap();
        log.checkpoint("interval").unwrap();
        let all: Vec<serde_json::Value> = lines(tmp.path())
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let cps: Vec<&serde_json::Value> =
            all.iter().filter(|v| v["event"] == "checkpoint").collect();
        assert_eq!(all[2]["event"], "audit_resumed");
        assert_eq!(cps[1]["details"]["number"], 2);
        assert_eq!(cps[1]["details"]["prev_checkpoint"], cps[0]["hash"]);
    }
}

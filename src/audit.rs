//! The traceability log (DESIGN §6): append-only JSON lines chained by SHA-256.
//!
//! Each line is `{"seq","time","event","actor","details","prev","hash"}`,
//! where `hash` is the SHA-256 (lowercase hex) of the line's bytes up to and
//! excluding `,"hash":…}` — that is, of the JSON object holding the first six
//! fields in this order — and `prev` the `hash` of the line before (64 zeros
//! for the first). A line is written and fsynced before the operation it
//! records is acknowledged; if it cannot be, the caller refuses the operation.
//!
//! It never holds a NIR, a code, an index or anything computed from one:
//! callers pass counts, names and certificate identities only.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::tls::PeerIdentity;

/// Name of the log file inside the audit directory.
pub const LOG_FILE: &str = "log.jsonl";

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The log could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing the file failed.
    #[error("traceability log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The last line of an existing log is not a log record.
    #[error("traceability log {path}: the last record is unreadable")]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
}

struct Tail {
    seq: u64,
    prev: String,
}

/// An open log.
pub struct AuditLog {
    path: PathBuf,
    tail: Mutex<Tail>,
}

#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    time: String,
    event: &'a str,
    actor: Option<&'a PeerIdentity>,
    details: &'a serde_json::Value,
    prev: &'a str,
}

impl AuditLog {
    /// Opens (or starts) the log in `dir`, resuming after its last record.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let path = dir.join(LOG_FILE);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tail = Tail {
            seq: 0,
            prev: GENESIS.to_owned(),
        };
        if let Ok(f) = File::open(&path) {
            let mut last = None;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(io)?;
                if !line.trim().is_empty() {
                    last = Some(line);
                }
            }
            if let Some(last) = last {
                let v: serde_json::Value = serde_json::from_str(&last)
                    .map_err(|_| AuditError::Corrupt { path: path.clone() })?;
                match (v["seq"].as_u64(), v["hash"].as_str()) {
                    (Some(seq), Some(hash)) => {
                        tail.seq = seq;
                        tail.prev = hash.to_owned();
                    }
                    _ => return Err(AuditError::Corrupt { path }),
                }
            }
        }
        Ok(Self {
            path,
            tail: Mutex::new(tail),
        })
    }

    /// Appends one record and fsyncs it; returns its sequence number.
    pub fn append(
        &self,
        event: &str,
        actor: Option<&PeerIdentity>,
        details: serde_json::Value,
    ) -> Result<u64, AuditError> {
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let seq = tail.seq + 1;
        let rec = Unhashed {
            seq,
            time: crate::receipt::now_rfc3339(),
            event,
            actor,
            details: &details,
            prev: &tail.prev,
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| io(std::io::Error::other(e)))?;
        let hash = hex::encode(Sha256::digest(&line));
        line.pop(); // the closing brace
        line.extend_from_slice(format!(",\"hash\":\"{hash}\"}}\n").as_bytes());
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)?;
        tail.seq = seq;
        tail.prev = hash;
        Ok(seq)
    }
}

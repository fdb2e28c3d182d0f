//! Offline verification of the traceability log, as an auditor runs it on
//! their own machine (DESIGN §6, `docs/traceability.md`).
//!
//! Nothing here trusts the service: the only inputs are the log files, the
//! signed ceremony record (whose `log_public_key` checks every checkpoint)
//! and, optionally, a checkpoint the auditor saved on an earlier visit. The
//! checks run record by record, in the order of the files, and the first
//! record that breaks one is named with what is wrong.
//!
//! What each check guards against:
//! - `hash` over the record's own bytes: an edited record;
//! - `seq` without gaps and `prev` equal to the hash before: a removed,
//!   repeated, reordered or inserted record;
//! - `prev` of record 1 equal to the genesis value of the ceremony: a log
//!   from another deployment;
//! - checkpoint signatures by the ceremony's log key: a chain rewritten
//!   from some record on (anyone can recompute hashes, nobody else can sign);
//! - the saved checkpoint still present with the same hash: a log cut back
//!   to before a point the auditor already saw, or rewritten before it.
//!
//! Records after the newest checkpoint are chained but not yet signed: they
//! are reported ([`Verified::unsigned_records`]), not refused; a writer
//! could still change the tail, which is what the next checkpoint (or a saved
//! one) closes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::{
    checkpoint_message, checkpoint_message_v2, genesis, line_hash, log_files, receipt_message,
    NO_CHECKPOINT,
};
use crate::batch::Counts;
use crate::event::{Event, EventError};
use crate::receipt::Receipt;
use crate::seal::CeremonyRecord;
use crate::tls::PeerIdentity;

/// The members of a record, in the order the format requires.
pub const RECORD_MEMBERS: [&str; 7] = ["seq", "time", "event", "actor", "details", "prev", "hash"];
/// The members of a checkpoint's `details` (in any order: the writer builds
/// `details` as a JSON map, whose order the format does not fix).
pub const CHECKPOINT_MEMBERS: [&str; 5] = [
    "reason",
    "covers_seq",
    "covers_hash",
    "public_key",
    "signature",
];
/// The members of a numbered checkpoint's `details`.
pub const CHECKPOINT_MEMBERS_V2: [&str; 7] = [
    "reason",
    "covers_seq",
    "covers_hash",
    "public_key",
    "signature",
    "number",
    "prev_checkpoint",
];
const ACTOR_MEMBERS: [&str; 2] = ["subject", "fingerprint"];

/// A checkpoint an auditor keeps between two verifications: the `seq` and
/// `hash` of a `checkpoint` record. A later copy of the log must still hold
/// that exact record, or it was cut back or rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedCheckpoint {
    /// The ceremony whose log this is (32 lowercase hex digits).
    pub ceremony_id: String,
    /// The checkpoint record's `seq`.
    pub seq: u64,
    /// The checkpoint record's `hash` (64 lowercase hex digits).
    pub hash: String,
    /// Its number (absent for a checkpoint written before numbering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
}

impl SavedCheckpoint {
    /// Parses a saved checkpoint (JSON) and checks its shape.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let c: SavedCheckpoint = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a saved checkpoint ({{ceremony_id, seq, hash}}): {e}"))?;
        if !is_lower_hex(&c.ceremony_id, 32) {
            return Err("ceremony_id is not 32 lowercase hex digits".into());
        }
        if !is_lower_hex(&c.hash, 64) {
            return Err("hash is not 64 lowercase hex digits".into());
        }
        if c.seq == 0 {
            return Err("seq is 0; records start at 1".into());
        }
        Ok(c)
    }

    /// Reads a saved checkpoint from a file; an unusable file is
    /// [`VerifyError::Unreadable`].
    pub fn read(path: &Path) -> Result<Self, VerifyError> {
        let bytes = std::fs::read(path).map_err(|e| unreadable(path, e))?;
        Self::from_json(&bytes).map_err(|reason| VerifyError::Unreadable {
            path: path.to_owned(),
            reason,
        })
    }

    /// The JSON written by [`SavedCheckpoint::save`].
    pub fn to_json(&self) -> String {
        // A struct of strings and a number always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Writes the checkpoint to `path`, replacing it in one step (a file next
    /// to it, then a rename), so that a crash never leaves half a checkpoint.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other("not a file name"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let r = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_json().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }
}

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The ceremony the log belongs to.
    pub ceremony_id: String,
    /// Files read.
    pub files: usize,
    /// Records read.
    pub records: u64,
    /// `seq` of the first record: 1, or the saved checkpoint's when the copy
    /// starts there (`fetch --from`).
    pub first_seq: u64,
    /// `seq` of the last record.
    pub last_seq: u64,
    /// `time` of the first record.
    pub first_time: String,
    /// `time` of the last record.
    pub last_time: String,
    /// `hash` of the last record.
    pub last_hash: String,
    /// True when the chain was checked from its genesis (record 1); false
    /// when it starts at the saved checkpoint.
    pub from_genesis: bool,
    /// `checkpoint` records, all with a valid signature.
    pub checkpoints: u64,
    /// The newest checkpoint, to keep for the next verification.
    pub last_checkpoint: Option<SavedCheckpoint>,
    /// Records after the newest checkpoint: chained but not yet signed.
    pub unsigned_records: u64,
    /// The newest file ends with a line without line end: a write in
    /// progress, or one cut off by a crash (never acknowledged; the service
    /// cuts it off and logs `audit_repaired` when it opens the log again).
    /// It was not verified and is not counted.
    pub partial_last_line: bool,
}

/// One record of a log, as read (and already checked) by the verifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its `seq`.
    pub seq: u64,
    /// Its `time`, parsed (UTC).
    pub time: OffsetDateTime,
    /// Its `event`.
    pub event: String,
    /// The client certificate, or `None` for the service itself.
    pub actor: Option<PeerIdentity>,
    /// Its `details`.
    pub details: serde_json::Value,
    /// Its `hash`.
    pub hash: String,
}

impl Record {
    /// The record as a typed event: `None` for an event this version does
    /// not know, an error if its details do not read as its event.
    pub fn parsed(&self) -> Result<Option<Event>, EventError> {
        Event::from_parts(&self.event, &self.details)
    }
}

/// Why a log did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The log could not be read at all: a file is missing or unreadable, no
    /// file was found, or a file holds no log record (not UTF-8 text, not
    /// JSON lines). Nothing can be said about tampering; `cstatns audit
    /// verify` exits with 2.
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The log was altered: the first record that breaks a check, and which
    /// check. `cstatns audit verify` exits with 1.
    #[error("{}, line {line}{}: {what}", file.display(), seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
    Tampered {
        /// The file holding the record.
        file: PathBuf,
        /// Its line number in that file (1-based); one past the last line
        /// when records are missing at the end.
        line: u64,
        /// Its `seq`, when it could be read.
        seq: Option<u64>,
        /// What is wrong.
        what: String,
    },
    /// The saved checkpoint belongs to another ceremony than the record
    /// given: the wrong file was passed (exit 2).
    #[error("the saved checkpoint is from ceremony {saved}, not {record}")]
    CheckpointOfAnotherCeremony {
        /// The ceremony named in the saved checkpoint.
        saved: String,
        /// The ceremony of the record.
        record: String,
    },
}

impl VerifyError {
    /// True for [`VerifyError::Tampered`]: the log was altered (as opposed to
    /// unreadable or given with the wrong files).
    pub fn is_tampered(&self) -> bool {
        matches!(self, VerifyError::Tampered { .. })
    }
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Hash-chain links compared in constant time (house style), though public.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A JSON object with its members in the order written (serde_json's `Value`
/// would sort them), duplicates kept.
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, serde_json::Value>()? {
                    v.push(entry);
                }
                Ok(Ordered(v))
            }
        }
        de.deserialize_map(V)
    }
}

impl Ordered {
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn take(&mut self, i: usize) -> serde_json::Value {
        std::mem::take(&mut self.0[i].1)
    }
}

/// Checks that an object's members are exactly `expected`, in order.
fn members(obj: &Ordered, expected: &[&str], what: &str) -> Result<(), String> {
    let keys = obj.keys();
    if keys == expected {
        Ok(())
    } else {
        Err(format!(
            "{what} has the members [{}], expected [{}] in that order",
            keys.join(", "),
            expected.join(", ")
        ))
    }
}

/// The nested objects of a record with their member order (the first parse
/// into [`Ordered`] keeps only the top level's order). Parsed only for
/// records that have an actor or are checkpoints.
#[derive(Deserialize)]
struct Nested {
    #[serde(default)]
    actor: Option<Ordered>,
    #[serde(default)]
    details: Option<Ordered>,
}

/// Checks that an object has exactly the members `expected`, each once, in
/// any order (nested objects: the format fixes only the record's own order).
fn same_members(obj: &Ordered, expected: &[&str], what: &str) -> Result<(), String> {
    let mut keys = obj.keys();
    keys.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    if keys == want {
        Ok(())
    } else {
        Err(format!(
            "{what} has the members [{}], expected [{}] each once",
            obj.keys().join(", "),
            expected.join(", ")
        ))
    }
}

/// A line that failed: the `seq` when known, and what is wrong.
type LineError = (Option<u64>, String);

struct Last {
    seq: u64,
    hash: String,
    time: OffsetDateTime,
    time_text: String,
}

/// The state of a verification across files.
struct Chain<'a> {
    record: &'a CeremonyRecord,
    ceremony_id: String,
    since: Option<&'a SavedCheckpoint>,
    saw_since: bool,
    last: Option<Last>,
    first_seq: u64,
    first_time: String,
    from_genesis: bool,
    records: u64,
    checkpoints: u64,
    last_checkpoint: Option<SavedCheckpoint>,
    /// The newest checkpoint seen: its number (0 before numbering) and hash.
    last_cp: Option<(u64, String)>,
    unsigned: u64,
    last_file: PathBuf,
    last_file_lines: u64,
    partial_last_line: bool,
}

impl<'a> Chain<'a> {
    fn new(record: &'a CeremonyRecord, since: Option<&'a SavedCheckpoint>) -> Self {
        Self {
            record,
            ceremony_id: record.ceremony_id().to_string(),
            since,
            saw_since: false,
            last: None,
            first_seq: 0,
            first_time: String::new(),
            from_genesis: true,
            records: 0,
            checkpoints: 0,
            last_checkpoint: None,
            last_cp: None,
            unsigned: 0,
            last_file: PathBuf::new(),
            last_file_lines: 0,
            partial_last_line: false,
        }
    }

    fn file(
        &mut self,
        path: &Path,
        is_last: bool,
        visit: &mut dyn FnMut(&Record),
    ) -> Result<(), VerifyError> {
        let f = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(unreadable(path, "is a directory, not a log file"));
        }
        let mut reader = BufReader::new(f);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        let mut in_file = 0u64;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| unreadable(path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let complete = buf.last() == Some(&b'\n');
            if complete {
                buf.pop();
            } else if is_last && in_file > 0 {
                // The end of the newest file without a line end: a write in
                // progress (a live log) or cut off by a crash, which the
                // service cuts off itself when it starts again. Such a
                // record was never acknowledged: it is left out, and said.
                self.partial_last_line = true;
                line_no -= 1;
                break;
            }
            match self.line(&buf, complete) {
                Ok(rec) => {
                    in_file += 1;
                    visit(&rec);
                }
                Err((seq, what)) => {
                    if in_file == 0 && !has_record_line(path)? {
                        return Err(not_a_log(path, &buf));
                    }
                    return Err(VerifyError::Tampered {
                        file: path.to_owned(),
                        line: line_no,
                        seq,
                        what,
                    });
                }
            }
        }
        if in_file == 0 {
            return Err(unreadable(path, "holds no log record (empty file)"));
        }
        self.last_file = path.to_owned();
        self.last_file_lines = line_no;
        Ok(())
    }

    /// Checks one line (without its line end) against the format and the
    /// chain so far; on success the chain moves on to it.
    fn line(&mut self, bytes: &[u8], complete: bool) -> Result<Record, LineError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| (None, "the line is not UTF-8 text".to_owned()))?;
        if !complete {
            return Err((
                None,
                "the file ends in the middle of a line: it was cut (only the newest file may end with a write in progress)".into(),
            ));
        }
        let mut obj: Ordered = serde_json::from_str(text)
            .map_err(|_| (None, "the line is not a JSON object".to_owned()))?;
        // The seq, as early as possible, to name the record in later errors.
        let seq = obj
            .0
            .first()
            .filter(|(k, _)| k == "seq")
            .and_then(|(_, v)| v.as_u64());
        let err = |what: String| (seq, what);
        members(&obj, &RECORD_MEMBERS, "the record").map_err(err)?;
        let seq = seq
            .filter(|s| *s >= 1)
            .ok_or_else(|| err("seq is not a whole number from 1".into()))?;
        let err = |what: String| (Some(seq), what);
        let time_text = obj.0[1]
            .1
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| err("time is not a string".into()))?;
        let event = obj.0[2]
            .1
            .as_str()
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| err("event is not a non-empty string".into()))?;
        let is_checkpoint = event == "checkpoint";
        let nested = if obj.0[3].1.is_object() || is_checkpoint {
            serde_json::from_str::<Nested>(text).ok()
        } else {
            None
        };
        let actor = match &obj.0[3].1 {
            serde_json::Value::Null => None,
            serde_json::Value::Object(_) => {
                let a = nested
                    .as_ref()
                    .and_then(|n| n.actor.as_ref())
                    .ok_or_else(|| err("actor is unreadable".into()))?;
                same_members(a, &ACTOR_MEMBERS, "actor").map_err(err)?;
                let id: PeerIdentity = serde_json::from_value(obj.take(3))
                    .map_err(|_| err("actor's subject and fingerprint are not strings".into()))?;
                if !is_lower_hex(&id.fingerprint, 64) {
                    return Err(err(
                        "actor's fingerprint is not 64 lowercase hex digits".into()
                    ));
                }
                Some(id)
            }
            _ => return Err(err("actor is neither null nor an object".into())),
        };
        if !obj.0[4].1.is_object() {
            return Err(err("details is not an object".into()));
        }
        let prev = obj.0[5]
            .1
            .as_str()
            .filter(|p| is_lower_hex(p, 64))
            .map(str::to_owned)
            .ok_or_else(|| err("prev is not 64 lowercase hex digits".into()))?;
        let hash = obj.0[6]
            .1
            .as_str()
            .filter(|h| is_lower_hex(h, 64))
            .map(str::to_owned)
            .ok_or_else(|| err("hash is not 64 lowercase hex digits".into()))?;

        // The record's own hash.
        let (computed, stated) = line_hash(bytes).ok_or_else(|| {
            err("the line does not end with the hash member written as 64 plain hex digits".into())
        })?;
        if !same(stated, &hash) {
            return Err(err(
                "the hash member is not written as 64 plain hex digits".into()
            ));
        }
        if !same(&computed, &hash) {
            return Err(err("hash does not match the record's content".into()));
        }

        // Its place in the chain.
        let anchored = match &self.last {
            None if seq == 1 => false,
            None if self.since.is_some_and(|s| s.seq == seq) => true,
            None => {
                return Err(err(match self.since {
                    Some(s) => format!(
                        "the log starts at seq {seq}, neither at 1 nor at the saved checkpoint seq {}: records before it are missing",
                        s.seq
                    ),
                    None => format!("the log starts at seq {seq}, not 1: records before it are missing"),
                }))
            }
            Some(last) if seq == last.seq + 1 => false,
            Some(last) => {
                let p = last.seq;
                return Err(err(if seq == p + 2 {
                    format!("seq {seq} follows seq {p}: a record is missing (or out of order)")
                } else if seq > p {
                    format!("seq {seq} follows seq {p}: {} records are missing", seq - p - 1)
                } else if seq == p {
                    format!("seq {seq} follows seq {p}: a record is repeated")
                } else {
                    format!("seq {seq} follows seq {p}: records are out of order")
                }));
            }
        };
        // A copy starting at the saved checkpoint (`anchored`) has no record
        // before it: its `prev` is vouched for by the checkpoint's signature.
        let prev_ok = match &self.last {
            None => anchored || same(&prev, &genesis(&self.ceremony_id)),
            Some(last) => same(&prev, &last.hash),
        };
        if !prev_ok {
            return Err(err(match &self.last {
                None => format!(
                    "prev is not the genesis value of ceremony {}: this log belongs to another deployment (or the ceremony record given is not its own), or its first record was replaced",
                    self.ceremony_id
                ),
                Some(last) => format!("prev does not match the hash of seq {}", last.seq),
            }));
        }

        let time = OffsetDateTime::parse(&time_text, &Rfc3339)
            .map_err(|_| err(format!("time {time_text:?} is not an RFC 3339 date")))?;
        if time.offset() != UtcOffset::UTC {
            return Err(err(format!("time {time_text} is not in UTC")));
        }
        if let Some(last) = &self.last {
            if time < last.time {
                return Err(err(format!(
                    "time {time_text} is earlier than that of seq {} ({})",
                    last.seq, last.time_text
                )));
            }
        }

        let mut checkpoint_number = None;
        if is_checkpoint {
            let order = nested.as_ref().and_then(|n| n.details.as_ref());
            checkpoint_number = Some(
                self.checkpoint(order, seq, &prev, &obj.0[4].1)
                    .map_err(err)?,
            );
        }
        if anchored && !is_checkpoint {
            return Err(err(
                "the saved checkpoint's seq holds no checkpoint record: the log was rewritten"
                    .into(),
            ));
        }
        if let Some(s) = self.since {
            if s.seq == seq {
                if !same(&s.hash, &hash) {
                    return Err(err(format!(
                        "the record at seq {seq} is not the saved checkpoint (its hash differs): the log was rewritten"
                    )));
                }
                self.saw_since = true;
            }
        }

        // All checks passed: the chain moves on.
        if self.last.is_none() {
            self.first_seq = seq;
            self.first_time = time_text.clone();
            self.from_genesis = !anchored;
        }
        self.records += 1;
        if is_checkpoint {
            self.checkpoints += 1;
            self.unsigned = 0;
            let number = checkpoint_number.unwrap_or(0);
            self.last_checkpoint = Some(SavedCheckpoint {
                ceremony_id: self.ceremony_id.clone(),
                seq,
                hash: hash.clone(),
                number: (number > 0).then_some(number),
            });
            self.last_cp = Some((number, hash.clone()));
        } else {
            self.unsigned += 1;
        }
        self.last = Some(Last {
            seq,
            hash: hash.clone(),
            time,
            time_text,
        });
        Ok(Record {
            seq,
            time,
            event,
            actor,
            details: obj.take(4),
            hash,
        })
    }

    /// A checkpoint's details: it covers exactly the record before it, with
    /// the ceremony's log key, and its signature verifies; a numbered one
    /// follows the previous checkpoint's number and names its hash. Returns
    /// its number (0 for one written before numbering).
    fn checkpoint(
        &self,
        order: Option<&Ordered>,
        seq: u64,
        prev: &str,
        details: &serde_json::Value,
    ) -> Result<u64, String> {
        let d = order.ok_or("checkpoint details are unreadable")?;
        if same_members(d, &CHECKPOINT_MEMBERS_V2, "").is_err() {
            same_members(d, &CHECKPOINT_MEMBERS, "the checkpoint's details")?;
        }
        let Ok(Some(Event::Checkpoint {
            covers_seq,
            covers_hash,
            public_key,
            signature,
            number,
            prev_checkpoint,
            ..
        })) = Event::from_parts("checkpoint", details)
        else {
            return Err(
                "the checkpoint's details do not read as one (covers_seq a whole number, \
                 covers_hash, public_key and signature strings)"
                    .into(),
            );
        };
        if covers_seq + 1 != seq {
            return Err(format!(
                "covers_seq {covers_seq} is not the seq of the record before the checkpoint ({})",
                seq - 1
            ));
        }
        let covers_hash = covers_hash.as_str();
        if !same(covers_hash, prev) {
            return Err(format!("covers_hash is not the hash of seq {covers_seq}"));
        }
        if !same(public_key.as_str(), self.record.log_public_key_hex()) {
            return Err(
                "public_key is not the log key of the ceremony record: the checkpoint was signed by someone else"
                    .into(),
            );
        }
        let mut sig = [0u8; 64];
        Some(signature.as_str())
            .filter(|s| is_lower_hex(s, 128))
            .and_then(|s| hex::decode_to_slice(s, &mut sig).ok())
            .ok_or("the checkpoint signature is not 128 lowercase hex digits")?;
        let message = match (number, &prev_checkpoint) {
            (Some(n), Some(p)) => {
                self.checkpoint_order(n, p.as_str())?;
                checkpoint_message_v2(&self.ceremony_id, n, covers_seq, covers_hash, p.as_str())
            }
            (None, None) => {
                if self.last_cp.as_ref().is_some_and(|(n, _)| *n > 0) {
                    return Err(
                        "a checkpoint without a number after numbered ones: the log was rewritten"
                            .into(),
                    );
                }
                checkpoint_message(&self.ceremony_id, covers_seq, covers_hash)
            }
            _ => {
                return Err(
                    "a checkpoint has a number without prev_checkpoint, or the reverse".into(),
                )
            }
        };
        self.record
            .log_verifying_key()
            .verify_strict(&message, &Signature::from_bytes(&sig))
            .map_err(|_| "checkpoint signature does not verify".to_owned())?;
        Ok(number.unwrap_or(0))
    }

    /// Checkpoint `number` naming `prev` must follow the newest checkpoint
    /// seen. A copy that starts at a saved checkpoint takes its first as given.
    fn checkpoint_order(&self, number: u64, prev: &str) -> Result<(), String> {
        let expected = match &self.last_cp {
            Some((n, hash)) => Some((n + 1, hash.as_str())),
            // From the genesis: the first numbered checkpoint is number 1.
            None if self.last.is_some() && self.from_genesis => Some((1, NO_CHECKPOINT)),
            None => None,
        };
        if let Some((n, hash)) = expected {
            if number != n {
                return Err(format!(
                    "checkpoint number {number} where {n} was due: checkpoints were removed or the log rewritten"
                ));
            }
            if !same(prev, hash) {
                return Err(
                    "prev_checkpoint is not the hash of the previous checkpoint record: the log was rewritten"
                        .into(),
                );
            }
        }
        Ok(())
    }

    fn finish(self, files: usize) -> Result<Verified, VerifyError> {
        let Some(last) = self.last else {
            return Err(unreadable(&self.last_file, "holds no log record"));
        };
        if let Some(s) = self.since {
            if !self.saw_since {
                return Err(VerifyError::Tampered {
                    file: self.last_file,
                    line: self.last_file_lines + 1,
                    seq: Some(last.seq + 1),
                    what: format!(
                        "the log ends at seq {} and does not reach the saved checkpoint seq {}: truncated",
                        last.seq, s.seq
                    ),
                });
            }
        }
        Ok(Verified {
            ceremony_id: self.ceremony_id,
            files,
            records: self.records,
            first_seq: self.first_seq,
            last_seq: last.seq,
            first_time: self.first_time,
            last_time: last.time_text,
            last_hash: last.hash,
            from_genesis: self.from_genesis,
            checkpoints: self.checkpoints,
            last_checkpoint: self.last_checkpoint,
            unsigned_records: self.unsigned,
            partial_last_line: self.partial_last_line,
        })
    }
}

/// Whether any line of a file looks like a log record (so that a bad line in
/// it is tampering, not a file that was never a log).
fn has_record_line(path: &Path) -> Result<bool, VerifyError> {
    let f = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
    let mut reader = BufReader::new(f);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| unreadable(path, e))?;
        if n == 0 {
            return Ok(false);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.starts_with(br#"{"seq":"#) && line_hash(&buf).is_some() {
            return Ok(true);
        }
    }
}

fn not_a_log(path: &Path, first_bad: &[u8]) -> VerifyError {
    let reason = if std::str::from_utf8(first_bad).is_err() {
        "not a cstatns log: not UTF-8 text"
    } else {
        "not a cstatns log: no line of it is a log record"
    };
    unreadable(path, reason)
}

/// Verifies the log held by `files`, in that order (rotated files oldest
/// first, then `log.jsonl`; a file written by `cstatns audit fetch` alone),
/// against the signed ceremony `record` (whose signature the caller has
/// checked), and, with `since`, that the log still holds that checkpoint.
pub fn verify_files(
    files: &[PathBuf],
    record: &CeremonyRecord,
    since: Option<&SavedCheckpoint>,
) -> Result<Verified, VerifyError> {
    verify_files_with(files, record, since, &mut |_| {})
}

/// [`verify_files`], handing every record that passed to `visit` as it goes
/// (a report sums the log in the same pass). When the result is an error,
/// what `visit` saw must be discarded.
pub fn verify_files_with(
    files: &[PathBuf],
    record: &CeremonyRecord,
    since: Option<&SavedCheckpoint>,
    visit: &mut dyn FnMut(&Record),
) -> Result<Verified, VerifyError> {
    let Some(first) = files.first() else {
        return Err(unreadable(Path::new("."), "no log file given"));
    };
    let ceremony_id = record.ceremony_id().to_string();
    if let Some(s) = since {
        if s.ceremony_id != ceremony_id {
            return Err(VerifyError::CheckpointOfAnotherCeremony {
                saved: s.ceremony_id.clone(),
                record: ceremony_id,
            });
        }
    }
    let mut chain = Chain::new(record, since);
    chain.last_file = first.clone();
    for (i, path) in files.iter().enumerate() {
        chain.file(path, i + 1 == files.len(), visit)?;
    }
    chain.finish(files.len())
}

/// The log files of a directory in chain order (see [`log_files`]); none is
/// [`VerifyError::Unreadable`].
pub fn files_of_dir(dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let files = log_files(dir).map_err(|e| unreadable(dir, e))?;
    if files.is_empty() {
        return Err(unreadable(
            dir,
            "no log file (log.jsonl or log-NNNNNN.jsonl) in this directory",
        ));
    }
    Ok(files)
}

/// The files to verify for a path: a directory's log files, or the file itself.
pub fn files_of(path: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    if path.is_dir() {
        files_of_dir(path)
    } else {
        Ok(vec![path.to_owned()])
    }
}

/// Verifies the log in an audit directory (`audit_dir` of `server.toml`):
/// its rotated files, then `log.jsonl`.
pub fn verify_dir(
    dir: &Path,
    record: &CeremonyRecord,
    since: Option<&SavedCheckpoint>,
) -> Result<Verified, VerifyError> {
    verify_files(&files_of_dir(dir)?, record, since)
}

/// A receipt that holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceiptVerified {
    /// The batch.
    pub batch: String,
    /// The `seq` of its `batch_end` record.
    pub log_seq: u64,
    /// The log, when one was given (it verified, and records the batch).
    pub log: Option<Verified>,
}

/// Why a receipt does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The receipt file is not a receipt (exit 2).
    #[error("not a receipt: {0}")]
    Malformed(String),
    /// The receipt was altered, is from another ceremony, or the log does not
    /// record it as it says (exit 1).
    #[error("the receipt of batch {batch} does not hold: {what}")]
    Invalid {
        /// The batch the receipt names.
        batch: String,
        /// What is wrong.
        what: String,
    },
    /// The log given with the receipt did not verify.
    #[error("the log does not verify: {0}")]
    Log(#[from] VerifyError),
}

/// Parses a receipt file, refusing members the signature would not cover (a
/// receipt is signed as the service's serialisation of [`Receipt`], so an
/// added or re-spelled member could otherwise ride along unsigned).
pub fn parse_receipt(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let receipt: Receipt = serde_json::from_value(value.clone())
        .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let canonical =
        serde_json::to_value(&receipt).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if canonical != value {
        return Err(ReceiptError::Invalid {
            batch: receipt.batch,
            what: "it holds members or values outside what the service signs".into(),
        });
    }
    Ok(receipt)
}

/// Checks a receipt: its signature by the log key of `record` (over
/// [`receipt_message`] of the receipt with an empty `signature`), its
/// ceremony, and its totals; with `log` (an audit directory or a fetched
/// file), that the log verifies and that its record at `log_seq` is the
/// `batch_end` of this batch with the same counts.
pub fn verify_receipt(
    receipt: &Receipt,
    record: &CeremonyRecord,
    log: Option<&Path>,
) -> Result<ReceiptVerified, ReceiptError> {
    let bad = |what: String| ReceiptError::Invalid {
        batch: receipt.batch.clone(),
        what,
    };
    let ceremony_id = record.ceremony_id().to_string();
    if receipt.ceremony_id != ceremony_id {
        return Err(bad(format!(
            "it names ceremony {}, not {ceremony_id}",
            receipt.ceremony_id
        )));
    }
    if receipt.signature.is_empty() {
        return Err(bad("it is not signed".into()));
    }
    let mut sig = [0u8; 64];
    if !is_lower_hex(&receipt.signature, 128)
        || hex::decode_to_slice(&receipt.signature, &mut sig).is_err()
    {
        return Err(bad("its signature is not 128 lowercase hex digits".into()));
    }
    let mut unsigned = receipt.clone();
    unsigned.signature = String::new();
    let json = serde_json::to_vec(&unsigned).map_err(|e| bad(e.to_string()))?;
    record
        .log_verifying_key()
        .verify_strict(&receipt_message(&json), &Signature::from_bytes(&sig))
        .map_err(|_| bad("its signature does not verify: it was altered".into()))?;
    if receipt.records != receipt.counts.total()
        || receipt.ok != receipt.counts.ok()
        || receipt.rejected != receipt.counts.rejected()
    {
        return Err(bad("its totals do not add up to its counts".into()));
    }
    let Some(log) = log else {
        return Ok(ReceiptVerified {
            batch: receipt.batch.clone(),
            log_seq: receipt.log_seq,
            log: None,
        });
    };
    let files = files_of(log)?;
    let mut found: Option<Record> = None;
    let verified = verify_files_with(&files, record, None, &mut |r| {
        if r.seq == receipt.log_seq {
            found = Some(r.clone());
        }
    })?;
    let Some(r) = found else {
        return Err(bad(format!(
            "the log (seq {} to {}) holds no record at seq {}: fetch a newer copy, or the log was cut",
            verified.first_seq, verified.last_seq, receipt.log_seq
        )));
    };
    let at = |m: &str| format!("the log's record at seq {} {m}", r.seq);
    if r.event != "batch_end" {
        return Err(bad(at(&format!("is a {} record, not batch_end", r.event))));
    }
    let d = &r.details;
    let mismatch = |member: &str| bad(at(&format!("differs from the receipt in {member}")));
    if d["batch"].as_str() != Some(receipt.batch.as_str()) {
        return Err(mismatch("batch"));
    }
    if d["operation"].as_str() != Some(receipt.operation.as_str()) {
        return Err(mismatch("operation"));
    }
    if d["purpose"].as_str() != Some(receipt.purpose.as_str()) {
        return Err(mismatch("purpose"));
    }
    if d["outcome"].as_str() != Some(receipt.outcome.as_str()) {
        return Err(mismatch("outcome"));
    }
    if d["generation"].as_u64() != Some(u64::from(receipt.generation)) {
        return Err(mismatch("generation"));
    }
    if d["records"].as_u64() != Some(receipt.records) {
        return Err(mismatch("records"));
    }
    if d["bytes"].as_u64() != Some(receipt.bytes) {
        return Err(mismatch("bytes"));
    }
    let counts: Option<Counts> = serde_json::from_value(d["counts"].clone()).ok();
    if counts.as_ref() != Some(&receipt.counts) {
        return Err(mismatch("counts"));
    }
    if r.actor.as_ref().map(|a| a.fingerprint.as_str()) != Some(receipt.client_fingerprint.as_str())
    {
        return Err(mismatch("client certificate"));
    }
    Ok(ReceiptVerified {
        batch: receipt.batch.clone(),
        log_seq: receipt.log_seq,
        log: Some(verified),
    })
}

//! Where the service keeps batch receipts: the newest in memory, for
//! `GET /v1/receipts/{id}`, and every one on disk, one JSON line per receipt
//! in `AUDIT_DIR/receipts/YYYY-MM-DD.jsonl` (the UTC day it was written), so
//! that it outlives a restart. A receipt holds counts and names, never data;
//! the log stays the authority (a receipt that is lost or altered fails
//! `cstatns audit verify-receipt`).
//!
//! The disk copy is appended by a thread of its own, one fsync for all the
//! receipts that came meanwhile, so that a batch's answer never waits for
//! it: a file a batch, as before, cost the file system an inode, two fsyncs
//! and a rename a batch, more than the rest of a small batch's work.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

use crate::receipt::Receipt;

/// Where receipts are kept, inside the audit directory.
pub const RECEIPTS_DIR: &str = "receipts";

/// How many receipts the service keeps in memory; all are on disk too.
const RECEIPTS_KEPT: usize = 10_000;

/// How many day files, newest first, a look-up reads: a receipt is fetched
/// right after its batch, so this bounds what a request for an unknown batch
/// costs, however long the service has run. Older receipts stay on disk for
/// the auditors.
const DAYS_SEARCHED: usize = 31;

/// How many bytes of day files a look-up reads at most.
const BYTES_SEARCHED: u64 = 256 << 20;

/// The day file of `day`: `YYYY-MM-DD.jsonl`.
fn day_file(day: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}.jsonl",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// The receipts of a running service.
pub struct Receipts {
    dir: PathBuf,
    recent: Mutex<VecDeque<Receipt>>,
    to_disk: Mutex<Option<mpsc::Sender<Receipt>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Receipts {
    /// Receipts kept in `audit_dir`'s receipt directory; starts the thread
    /// that writes them there.
    pub fn new(audit_dir: &Path) -> Self {
        let dir = audit_dir.join(RECEIPTS_DIR);
        let (tx, rx) = mpsc::channel::<Receipt>();
        let at = dir.clone();
        let spawned = std::thread::Builder::new()
            .name("receipts".into())
            .spawn(move || write_receipts(&at, &rx));
        let writer = spawned
            .inspect_err(|e| {
                tracing::error!(error = %e, "cannot start the receipt writer: receipts stay in memory only");
            })
            .ok();
        Self {
            dir,
            recent: Mutex::new(VecDeque::new()),
            to_disk: Mutex::new(Some(tx)),
            writer: Mutex::new(writer),
        }
    }

    /// Waits for the receipts given so far to be on disk, and stops the
    /// writer (the service is stopping).
    pub fn close(&self) {
        drop(
            self.to_disk
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = writer {
            let _ = w.join();
        }
    }

    /// Keeps a receipt: at once in memory, on disk shortly after.
    pub fn store(&self, r: Receipt) {
        {
            let tx = self.to_disk.lock().unwrap_or_else(|p| p.into_inner());
            let queued = tx.as_ref().is_some_and(|tx| tx.send(r.clone()).is_ok());
            if !queued {
                // The writer is gone (the service is stopping, and a batch
                // ended after it): written here, at once.
                write_lines(&self.dir, std::slice::from_ref(&r));
            }
        }
        let mut q = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == RECEIPTS_KEPT {
            q.pop_front();
        }
        q.push_back(r);
    }

    /// A receipt of this client's, from memory or from disk.
    pub fn find(&self, batch: &str, fingerprint: &str) -> Option<Receipt> {
        let recent = {
            let q = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            q.iter().rev().find(|r| r.batch == batch).cloned()
        };
        // Nothing but a batch id is looked for on disk.
        let well_formed = crate::event::BatchId::is_drawn_form(batch);
        let found = recent.or_else(|| well_formed.then(|| self.on_disk(batch)).flatten())?;
        (found.client_fingerprint == fingerprint && found.batch == batch).then_some(found)
    }

    /// Looks for a receipt on disk: the day files of the last
    /// [`DAYS_SEARCHED`] days, newest first, [`BYTES_SEARCHED`] at most,
    /// then the file of a receipt kept by an earlier version of the service
    /// (one a batch).
    fn on_disk(&self, batch: &str) -> Option<Receipt> {
        let needle = format!("\"batch\":\"{batch}\"");
        let today = time::OffsetDateTime::now_utc().date();
        let mut budget = BYTES_SEARCHED;
        for back in 0..DAYS_SEARCHED {
            let Some(day) = today.checked_sub(time::Duration::days(back as i64)) else {
                break;
            };
            let Ok(f) = std::fs::File::open(self.dir.join(day_file(day))) else {
                continue;
            };
            let mut reader = std::io::BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => budget = budget.saturating_sub(n as u64),
                }
                if memchr::memmem::find(&line, needle.as_bytes()).is_some() {
                    if let Ok(r) = serde_json::from_slice::<Receipt>(&line) {
                        return Some(r);
                    }
                }
                if budget == 0 {
                    return None;
                }
            }
        }
        std::fs::read(self.dir.join(format!("{batch}.json")))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }
}

/// The writer thread: appends each receipt as a line of its day's file and
/// fsyncs once for all those waiting; ends when the service's state goes.
fn write_receipts(dir: &Path, rx: &mpsc::Receiver<Receipt>) {
    while let Ok(first) = rx.recv() {
        let receipts: Vec<Receipt> = std::iter::once(first).chain(rx.try_iter()).collect();
        write_lines(dir, &receipts);
    }
}

/// Appends receipts to today's file, one fsync for all; a failure is
/// reported to the server log (the receipts stay in memory).
fn write_lines(dir: &Path, receipts: &[Receipt]) {
    let mut lines = Vec::new();
    for r in receipts {
        match serde_json::to_vec(r) {
            Ok(mut json) => {
                json.push(b'\n');
                lines.extend_from_slice(&json);
            }
            Err(e) => tracing::error!(error = %e, "cannot write a receipt"),
        }
    }
    let today = time::OffsetDateTime::now_utc().date();
    if let Err(e) = append(&dir.join(day_file(today)), &lines) {
        tracing::error!(error = %e, "cannot keep receipts on disk");
    }
}

/// Appends whole lines and fsyncs; on a failure, cuts what was written off.
/// A file that ends in a cut line (a crash while it was written) gets a
/// line end first, so that the receipts after it read whole.
fn append(path: &Path, lines: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    let before = f.metadata()?.len();
    let mut last = [b'\n'];
    if before > 0 {
        f.read_exact_at(&mut last, before - 1)?;
    }
    let cut: &[u8] = if last[0] == b'\n' { b"" } else { b"\n" };
    f.write_all(cut)
        .and_then(|()| f.write_all(lines))
        .and_then(|()| f.sync_data())
        .inspect_err(|_| {
            let _ = f.set_len(before);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(batch: &str, fingerprint: &str) -> Receipt {
        Receipt {
            batch: batch.into(),
            operation: "cstatns".into(),
            client: "CN=submitter".into(),
            client_fingerprint: fingerprint.into(),
            purpose: "p".into(),
            generation: 1,
            outcome: "completed".into(),
            records: 1,
            ok: 1,
            rejected: 0,
            counts: crate::batch::Counts::default(),
            bytes: 10,
            started: String::new(),
            ended: String::new(),
            seconds: 0.0,
            guard: None,
            sweep: None,
            quality: None,
            log_seq: 3,
            ceremony_id: String::new(),
            signature: String::new(),
        }
    }

    #[test]
    fn receipts_outlive_the_memory_and_the_service_and_stay_with_their_client() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba9876543210fedcba9876543210";
        let receipts = Receipts::new(dir.path());
        receipts.store(receipt(a, "f1"));
        receipts.store(receipt(b, "f2"));
        assert_eq!(receipts.find(a, "f1").map(|r| r.batch), Some(a.to_owned()));
        assert!(receipts.find(a, "f2").is_none(), "another client's");
        receipts.close();
        let day = dir.path().join(RECEIPTS_DIR);
        // A crash in the middle of a line: the next receipts still read whole.
        let today = day.join(day_file(time::OffsetDateTime::now_utc().date()));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&today)
            .unwrap();
        f.write_all(b"{\"batch\":\"0123").unwrap();
        drop(f);
        let c = "11111111111111111111111111111111";
        let after = Receipts::new(dir.path());
        after.store(receipt(c, "f4"));
        after.close();
        let again = Receipts::new(dir.path());
        assert_eq!(again.find(c, "f4").map(|r| r.batch), Some(c.to_owned()));
        assert_eq!(again.find(b, "f2").map(|r| r.log_seq), Some(3));
        assert!(again.find(b, "f1").is_none(), "another client's");
        assert!(again.find("../x", "f2").is_none());
        // A receipt kept by an earlier version, one file a batch.
        let old = "00000000000000000000000000000001";
        std::fs::write(
            day.join(format!("{old}.json")),
            serde_json::to_vec(&receipt(old, "f3")).expect("json"),
        )
        .expect("write");
        assert!(again.find(old, "f3").is_some());
    }
}

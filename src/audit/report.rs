//! What a verified log says, summed up for the people who answer for the
//! service: per period, client and purpose, the batches and the lines
//! answered or refused; per period, the key events (start and stop, unseal
//! and seal, shares, checkpoints, refusals); and the date by which the key
//! must be renewed (DESIGN: at least every 5 years from the ceremony).
//!
//! A report is only ever made of a log that verified in the same pass
//! ([`report_files`]), or of records a caller already verified ([`Tally`]):
//! counts from a tampered log would be worse than none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::verify::{self, Record, SavedCheckpoint, Verified, VerifyError};
use crate::batch::Status;
use crate::event::Event;
use crate::seal::CeremonyRecord;

/// Years after the last renewal (or the ceremony) by which the key must be
/// renewed again (DESIGN §3). A service configured with a shorter period
/// says so in its own `status` and `renewal_due` records.
pub const RENEWAL_YEARS: u32 = crate::renewal::DEFAULT_PERIOD_YEARS;

/// How records are grouped in time (by their UTC date).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// `YYYY-MM-DD`.
    Day,
    /// `YYYY-MM`.
    #[default]
    Month,
    /// `YYYY`.
    Year,
}

impl Period {
    /// The period a moment falls in, as text that sorts in time order.
    pub fn label(self, t: OffsetDateTime) -> String {
        let d = t.date();
        match self {
            Period::Day => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
            Period::Month => format!("{:04}-{:02}", d.year(), u8::from(d.month())),
            Period::Year => format!("{:04}", d.year()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }
}

/// Batches of one client for one purpose in one period (from `batch_end`
/// records).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The period.
    pub period: String,
    /// The client's certificate subject.
    pub client: String,
    /// The declared purpose.
    pub purpose: String,
    /// Batches ended (completed or aborted).
    pub batches: u64,
    /// Lines answered.
    pub records: u64,
    /// Lines answered `ok`.
    pub ok: u64,
    /// Lines refused (`records − ok`).
    pub refused: u64,
    /// Batches that did not run to their end.
    pub aborted: u64,
}

/// Key events of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyEvents {
    /// The period.
    pub period: String,
    /// `service_start`.
    pub service_start: u64,
    /// `service_stop`.
    pub service_stop: u64,
    /// `unseal`: the keys were rebuilt.
    pub unseal: u64,
    /// `unseal_failed`.
    pub unseal_failed: u64,
    /// `seal`: the keys were wiped on request.
    pub seal: u64,
    /// `share_submitted` with `valid: true`.
    pub shares_valid: u64,
    /// `share_submitted` with `valid: false`.
    pub shares_refused: u64,
    /// `checkpoint` (each with a verified signature).
    pub checkpoints: u64,
    /// `request_refused`.
    pub requests_refused: u64,
    /// `connection_refused`.
    pub connections_refused: u64,
    /// `audit_read`.
    pub audit_reads: u64,
    /// `operation_proposed`: a key operation put to the holders.
    pub operations_proposed: u64,
    /// `operation_approval` with `valid: true`.
    pub approvals_valid: u64,
    /// `operation_approval` with `valid: false`.
    pub approvals_refused: u64,
    /// `operation_executed`: a quorum changed the keys.
    pub operations_executed: u64,
    /// `operation_cancelled`, `operation_expired` or `operation_failed`.
    pub operations_dropped: u64,
    /// `key_renewed`: a new generation.
    pub key_renewals: u64,
    /// `project_key_created`.
    pub project_keys_created: u64,
    /// `project_key_destroyed` (by a quorum or at the end date).
    pub project_keys_destroyed: u64,
    /// `project_result_fetched`.
    pub project_results_fetched: u64,
    /// `resharing`: a new revision of the ceremony record.
    pub resharings: u64,
}

/// When the key must be renewed: [`RENEWAL_YEARS`] after the newest
/// generation the log records (`key_renewed`), or after the ceremony when
/// the log records no renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renewal {
    /// The ceremony's date (`created` of the record).
    pub ceremony_created: String,
    /// The newest generation the log records (1 when it records no renewal).
    pub generation: u32,
    /// When it was created: the last `key_renewed`, or the ceremony's date.
    pub last_renewal: String,
    /// [`RENEWAL_YEARS`] later (`YYYY-MM-DD`, UTC; 29 February falls back to
    /// the 28th).
    pub due: String,
    /// Days from `today` to `due`; negative when overdue.
    pub days_left: i64,
}

impl Renewal {
    /// The renewal date of a ceremony created at `created` (RFC 3339) whose
    /// newest generation is `generation`, created at `last` (RFC 3339),
    /// seen from `today`. `None` if a time is not a date (a record that
    /// parsed always has one).
    pub fn of(created: &str, generation: u32, last: &str, today: Date) -> Option<Self> {
        OffsetDateTime::parse(created, &Rfc3339).ok()?;
        let last_at = OffsetDateTime::parse(last, &Rfc3339).ok()?;
        let due = crate::renewal::add_years(last_at.date(), RENEWAL_YEARS);
        Some(Self {
            ceremony_created: created.to_owned(),
            generation,
            last_renewal: last.to_owned(),
            due: crate::renewal::date_label(due),
            days_left: (due - today).whole_days(),
        })
    }
}

/// The summary of a verified log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The ceremony.
    pub ceremony_id: String,
    /// How records were grouped.
    pub period: Period,
    /// The verification the report rests on.
    pub log: Verified,
    /// Per period, client and purpose, in that order.
    pub usage: Vec<Usage>,
    /// Per period, in time order (only periods with a key event).
    pub events: Vec<KeyEvents>,
    /// When the key must be renewed.
    pub renewal: Renewal,
}

/// Sums records up as they are verified.
#[derive(Debug, Clone)]
pub struct Tally {
    period: Period,
    usage: BTreeMap<(String, String, String), Usage>,
    events: BTreeMap<String, KeyEvents>,
    /// The newest `key_renewed`: its generation and creation time.
    renewed: Option<(u32, String)>,
}

impl Tally {
    /// An empty tally.
    pub fn new(period: Period) -> Self {
        Self {
            period,
            usage: BTreeMap::new(),
            events: BTreeMap::new(),
            renewed: None,
        }
    }

    /// Counts one verified record. A record whose details do not read as
    /// its event (or of a kind this version does not know) counts nowhere:
    /// the verifier has already vouched for its place in the chain.
    pub fn add(&mut self, r: &Record) {
        let period = self.period.label(r.time);
        let Ok(Some(event)) = r.parsed() else {
            return;
        };
        if let Event::BatchEnd {
            purpose,
            outcome,
            records,
            counts,
            ..
        } = &event
        {
            let client = r
                .actor
                .as_ref()
                .map_or_else(|| "-".to_owned(), |a| a.subject.clone());
            let purpose = purpose.as_str().to_owned();
            let u = self
                .usage
                .entry((period.clone(), client.clone(), purpose.clone()))
                .or_insert_with(|| Usage {
                    period: period.clone(),
                    client,
                    purpose,
                    ..Usage::default()
                });
            let ok = counts.get(Status::Ok);
            u.batches += 1;
            u.records += records;
            u.ok += ok;
            u.refused += records.saturating_sub(ok);
            if *outcome == "aborted" {
                u.aborted += 1;
            }
            return;
        }
        let e = self
            .events
            .entry(period.clone())
            .or_insert_with(|| KeyEvents {
                period,
                ..KeyEvents::default()
            });
        let slot = match event {
            Event::ServiceStart { .. } => &mut e.service_start,
            Event::ServiceStop { .. } => &mut e.service_stop,
            Event::Unseal { .. } => &mut e.unseal,
            Event::UnsealFailed { .. } => &mut e.unseal_failed,
            Event::Seal { .. } => &mut e.seal,
            Event::ShareSubmitted { valid: true, .. } => &mut e.shares_valid,
            Event::ShareSubmitted { valid: false, .. } => &mut e.shares_refused,
            Event::Checkpoint { .. } => &mut e.checkpoints,
            Event::RequestRefused { .. } => &mut e.requests_refused,
            Event::ConnectionRefused { refusals, .. } => {
                // One record may stand for several refusals (a flood).
                e.connections_refused += refusals.unwrap_or(1);
                return;
            }
            Event::AuditRead { .. } => &mut e.audit_reads,
            Event::OperationProposed { .. } => &mut e.operations_proposed,
            Event::OperationApproval { valid: true, .. } => &mut e.approvals_valid,
            Event::OperationApproval { valid: false, .. } => &mut e.approvals_refused,
            Event::OperationExecuted { .. } => &mut e.operations_executed,
            Event::OperationCancelled { .. }
            | Event::OperationExpired { .. }
            | Event::OperationFailed { .. } => &mut e.operations_dropped,
            Event::KeyRenewed {
                generation,
                created,
                project,
                ..
            } => {
                // The CStatNS schedule; a project's renewal counts too.
                if project.is_none() {
                    self.renewed = Some((generation, created.as_str().to_owned()));
                }
                &mut e.key_renewals
            }
            Event::ProjectKeyCreated { .. } => &mut e.project_keys_created,
            Event::ProjectKeyDestroyed { .. } => &mut e.project_keys_destroyed,
            Event::ProjectResultFetched { .. } => &mut e.project_results_fetched,
            Event::Resharing { .. } => &mut e.resharings,
            _ => return,
        };
        *slot += 1;
    }

    /// The report, for the log `log` of the ceremony `record`, seen from `today`.
    pub fn finish(self, log: Verified, record: &CeremonyRecord, today: Date) -> Report {
        let created = record.created();
        let (generation, last) = self
            .renewed
            .clone()
            .unwrap_or_else(|| (1, created.to_owned()));
        let renewal = Renewal::of(created, generation, &last, today).unwrap_or_else(|| Renewal {
            ceremony_created: created.to_owned(),
            generation,
            last_renewal: last,
            due: String::from("unknown"),
            days_left: 0,
        });
        Report {
            ceremony_id: record.ceremony_id().to_string(),
            period: self.period,
            log,
            usage: self.usage.into_values().collect(),
            events: self
                .events
                .into_values()
                .filter(|e| {
                    *e != KeyEvents {
                        period: e.period.clone(),
                        ..KeyEvents::default()
                    }
                })
                .collect(),
            renewal,
        }
    }
}

/// Verifies the log in `files` (see [`verify::verify_files`]) and sums it up.
pub fn report_files(
    files: &[PathBuf],
    record: &CeremonyRecord,
    since: Option<&SavedCheckpoint>,
    period: Period,
    today: Date,
) -> Result<Report, VerifyError> {
    let mut tally = Tally::new(period);
    let log = verify::verify_files_with(files, record, since, &mut |r| tally.add(r))?;
    Ok(tally.finish(log, record, today))
}

/// [`report_files`] on an audit directory.
pub fn report_dir(
    dir: &Path,
    record: &CeremonyRecord,
    period: Period,
    today: Date,
) -> Result<Report, VerifyError> {
    report_files(&verify::files_of_dir(dir)?, record, None, period, today)
}

/// A CSV field (RFC 4180), with a leading `'` before text starting with `=`,
/// `+`, `-`, `@` (not numbers) so that a spreadsheet never reads a
/// certificate subject as a formula.
fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let s = if formula && s != "-" && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.zip(&width).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            // Text columns left, numbers right.
            if c.parse::<i64>().is_ok() {
                let _ = write!(s, "{c:>w$}");
            } else {
                let _ = write!(s, "{c:<w$}");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    for r in rows {
        line(out, &mut r.iter().map(String::as_str));
    }
}

const USAGE_COLUMNS: [&str; 8] = [
    "period", "client", "purpose", "batches", "records", "ok", "refused", "aborted",
];
const EVENT_COLUMNS: [&str; 22] = [
    "period",
    "service_start",
    "service_stop",
    "unseal",
    "unseal_failed",
    "seal",
    "shares_valid",
    "shares_refused",
    "checkpoints",
    "requests_refused",
    "connections_refused",
    "audit_reads",
    "operations_proposed",
    "approvals_valid",
    "approvals_refused",
    "operations_executed",
    "operations_dropped",
    "key_renewals",
    "project_keys_created",
    "project_keys_destroyed",
    "project_results_fetched",
    "resharings",
];

impl Usage {
    fn cells(&self) -> Vec<String> {
        vec![
            self.period.clone(),
            self.client.clone(),
            self.purpose.clone(),
            self.batches.to_string(),
            self.records.to_string(),
            self.ok.to_string(),
            self.refused.to_string(),
            self.aborted.to_string(),
        ]
    }
}

impl KeyEvents {
    fn numbers(&self) -> [u64; 21] {
        [
            self.service_start,
            self.service_stop,
            self.unseal,
            self.unseal_failed,
            self.seal,
            self.shares_valid,
            self.shares_refused,
            self.checkpoints,
            self.requests_refused,
            self.connections_refused,
            self.audit_reads,
            self.operations_proposed,
            self.approvals_valid,
            self.approvals_refused,
            self.operations_executed,
            self.operations_dropped,
            self.key_renewals,
            self.project_keys_created,
            self.project_keys_destroyed,
            self.project_results_fetched,
            self.resharings,
        ]
    }
}

impl Report {
    /// For a terminal: the log's extent, the renewal date, then one table of
    /// usage and one of key events.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let l = &self.log;
        let _ = writeln!(
            out,
            "Traceability log of ceremony {}: verified, {} records (seq {} to {}), {} to {}",
            self.ceremony_id, l.records, l.first_seq, l.last_seq, l.first_time, l.last_time
        );
        let _ = writeln!(
            out,
            "Signed checkpoints: {}; records after the newest one (not yet signed): {}",
            l.checkpoints, l.unsigned_records
        );
        let r = &self.renewal;
        let _ = writeln!(
            out,
            "Key renewal due {} ({} years after generation {} of {}): {}",
            r.due,
            RENEWAL_YEARS,
            r.generation,
            r.last_renewal,
            if r.days_left >= 0 {
                format!("{} days left", r.days_left)
            } else {
                format!("OVERDUE by {} days", -r.days_left)
            }
        );
        let _ = writeln!(
            out,
            "\nBatches per {}, client and purpose",
            self.period.name()
        );
        if self.usage.is_empty() {
            out.push_str("(none)\n");
        } else {
            let rows: Vec<Vec<String>> = self.usage.iter().map(Usage::cells).collect();
            table(&mut out, &USAGE_COLUMNS, &rows);
        }
        let _ = writeln!(out, "\nKey events per {}", self.period.name());
        if self.events.is_empty() {
            out.push_str("(none)\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .events
                .iter()
                .map(|e| {
                    std::iter::once(e.period.clone())
                        .chain(e.numbers().iter().map(u64::to_string))
                        .collect()
                })
                .collect();
            table(&mut out, &EVENT_COLUMNS, &rows);
        }
        out
    }

    /// One CSV table in long form, one number a row:
    /// `section,period,client,purpose,measure,value`, where `section` is
    /// `usage`, `events` or `renewal`. Easy to filter and pivot.
    pub fn csv(&self) -> String {
        let mut out = String::from("section,period,client,purpose,measure,value\n");
        let mut row =
            |section: &str, period: &str, client: &str, purpose: &str, m: &str, v: &str| {
                let _ = writeln!(
                    out,
                    "{section},{},{},{},{m},{}",
                    csv_field(period),
                    csv_field(client),
                    csv_field(purpose),
                    csv_field(v)
                );
            };
        for u in &self.usage {
            for (m, v) in USAGE_COLUMNS[3..].iter().zip(&u.cells()[3..]) {
                row("usage", &u.period, &u.client, &u.purpose, m, v);
            }
        }
        for e in &self.events {
            for (m, v) in EVENT_COLUMNS[1..].iter().zip(e.numbers()) {
                row("events", &e.period, "", "", m, &v.to_string());
            }
        }
        let r = &self.renewal;
        row(
            "renewal",
            "",
            "",
            "",
            "ceremony_created",
            &r.ceremony_created,
        );
        row(
            "renewal",
            "",
            "",
            "",
            "generation",
            &r.generation.to_string(),
        );
        row("renewal", "", "", "", "last_renewal", &r.last_renewal);
        row("renewal", "", "", "", "due", &r.due);
        row("renewal", "", "", "", "days_left", &r.days_left.to_string());
        out
    }

    /// The report as JSON (the fields of [`Report`]).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn renewal_is_due_five_years_after_the_ceremony() {
        let c = "2024-03-10T09:00:00Z";
        let r = Renewal::of(c, 1, c, date!(2024 - 03 - 10)).unwrap();
        assert_eq!(r.due, "2029-03-10");
        assert_eq!(r.days_left, 365 * 5 + 1);
        let c = "2019-01-01T00:00:00Z";
        let late = Renewal::of(c, 1, c, date!(2024 - 01 - 02)).unwrap();
        assert_eq!(late.due, "2024-01-01");
        assert_eq!(late.days_left, -1);
    }

    #[test]
    fn renewal_of_a_leap_day_ceremony_falls_on_the_28th() {
        let c = "2024-02-29T12:00:00Z";
        let r = Renewal::of(c, 1, c, date!(2025 - 01 - 01)).unwrap();
        assert_eq!(r.due, "2029-02-28");
    }

    #[test]
    fn renewal_counts_from_the_newest_generation() {
        let r = Renewal::of(
            "2024-03-10T09:00:00Z",
            3,
            "2026-12-03T10:00:00Z",
            date!(2026 - 12 - 03),
        )
        .unwrap();
        assert_eq!((r.generation, r.due.as_str()), (3, "2031-12-03"));
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("CN=a, O=b"), "\"CN=a, O=b\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("demo"), "demo");
        assert_eq!(csv_field("a\"b,c"), "\"a\"\"b,c\"");
        assert_eq!(csv_field("-"), "-");
        assert_eq!(csv_field("-12"), "-12");
        assert_eq!(csv_field("-x"), "'-x");
    }
}

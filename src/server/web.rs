//! The auditors' web view (`GET /audit/`, auditor role, over the service's
//! own mutual TLS): a page, its script and its style, embedded in the
//! binary (nothing is loaded from anywhere else: the page's
//! Content-Security-Policy allows this origin only), and
//! `GET /audit/summary.json`, what the page shows: the log verified by the
//! same verifier as `cstatns audit verify` (chain, checkpoints and their
//! signatures, the unsigned tail), summed by the same tally as `cstatns
//! audit report` (batches per client and purpose, key events per day), the
//! renewal due date, and the newest records as a timeline. Reading the
//! summary is itself logged (`audit_read`), as `GET /v1/audit` is.
//!
//! The page writes what it shows with `textContent` only: certificate
//! subjects come from clients and must never be read as markup.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::audit::report::{Period, Tally};
use crate::audit::verify;
use crate::config::Role;
use crate::event::Event;
use crate::tls::PeerIdentity;

pub(super) const INDEX: &str = include_str!("web/index.html");
pub(super) const SCRIPT: &str = include_str!("web/audit.js");
pub(super) const STYLE: &str = include_str!("web/audit.css");
pub(super) const ICON: &str = include_str!("web/icon.svg");

/// Records the timeline keeps, newest first.
pub const TIMELINE: usize = 500;

/// What every answer of the view carries: no cache, no framing, no other
/// origin, no sniffing.
fn secured(mut r: Response, content_type: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// The route of one of the page's files, embedded in the binary: the
/// auditor role first, then `body` as `content_type`.
pub(super) fn asset(
    body: &'static str,
    content_type: &'static str,
) -> axum::routing::MethodRouter<Arc<AppState>> {
    super::get_only(
        move |State(state): State<Arc<AppState>>, Extension(id): Extension<PeerIdentity>| async move {
            state.require(&id, Role::Auditor)?;
            Ok::<_, ApiError>(secured(body.into_response(), content_type))
        },
    )
}

/// The log's verification, as the page shows it.
#[derive(Serialize)]
struct Verification {
    /// `verified`, `tampered` (the verifier found the log altered) or
    /// `unreadable`.
    state: &'static str,
    /// Why not verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<verify::Verified>,
}

/// One record of the timeline.
#[derive(Serialize)]
struct Entry {
    seq: u64,
    time: String,
    event: String,
    /// The client certificate's subject, or none for the service itself.
    actor: Option<String>,
    details: serde_json::Value,
}

#[derive(Serialize)]
struct Summary {
    generated: String,
    ceremony_id: String,
    sealed: bool,
    generation: Option<u32>,
    verification: Verification,
    /// Batches per day, client and purpose (`cstatns audit report`'s).
    usage: Vec<crate::audit::report::Usage>,
    /// Key events per day.
    key_events: Vec<crate::audit::report::KeyEvents>,
    /// Guard events (`quota_exceeded`, `sweep_suspected`, `guard_released`)
    /// per day.
    guard_events: Vec<(String, u64)>,
    renewal: Option<crate::audit::report::Renewal>,
    /// The newest [`TIMELINE`] records, newest first.
    timeline: Vec<Entry>,
    /// Records in the log (and so not all in the timeline).
    records: u64,
}

/// `GET /audit/summary.json`.
pub(super) async fn summary(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
) -> Result<Response, ApiError> {
    state.require(&id, Role::Auditor)?;
    state
        .log(Event::AuditRead { from_seq: 0 }, Some(&id))
        .ok_or(ApiError::AuditUnavailable)?;
    let reader = state.clone();
    let summary = tokio::task::spawn_blocking(move || summarise(&reader))
        .await
        .map_err(|_| ApiError::Internal)?;
    let json = serde_json::to_string(&summary).map_err(|_| ApiError::Internal)?;
    Ok(secured(json.into_response(), "application/json"))
}

/// What one pass over the log gathered.
struct Pass {
    verified: Result<verify::Verified, verify::VerifyError>,
    tally: Tally,
    timeline: VecDeque<Entry>,
    guard: Vec<(String, u64)>,
    records: u64,
}

/// Verifies and sums the log in one pass.
fn read_log(state: &AppState) -> Pass {
    let mut tally = Tally::new(Period::Day);
    let mut timeline: VecDeque<Entry> = VecDeque::with_capacity(TIMELINE);
    let mut guard: Vec<(String, u64)> = Vec::new();
    let mut records = 0u64;
    let verified = verify::files_of_dir(&state.config.audit_dir).and_then(|files| {
        verify::verify_files_with(&files, state.record(), None, &mut |r| {
            tally.add(r);
            records += 1;
            if matches!(
                r.event.as_str(),
                "quota_exceeded" | "sweep_suspected" | "guard_released"
            ) {
                let day = Period::Day.label(r.time);
                match guard.last_mut() {
                    Some((d, n)) if *d == day => *n += 1,
                    _ => guard.push((day, 1)),
                }
            }
            if timeline.len() == TIMELINE {
                timeline.pop_back();
            }
            timeline.push_front(Entry {
                seq: r.seq,
                time: crate::event::rfc3339_seconds(r.time),
                event: r.event.clone(),
                actor: r.actor.as_ref().map(|a| a.subject.clone()),
                details: r.details.clone(),
            });
        })
    });
    Pass {
        verified,
        tally,
        timeline,
        guard,
        records,
    }
}

fn summarise(state: &AppState) -> Summary {
    let record = state.record();
    let today = time::OffsetDateTime::now_utc().date();
    // The files are read while the service writes: a rotation between the
    // listing and the reading would look like a gap in the chain. Read
    // again when the listing changed under the pass (a forgery fails every
    // time; a rotation does not come twice in a row).
    let listing = || crate::audit::log_files(&state.config.audit_dir).ok();
    let mut before = listing();
    let mut pass = read_log(state);
    for _ in 0..2 {
        if pass.verified.is_ok() || listing() == before {
            break;
        }
        before = listing();
        pass = read_log(state);
    }
    let Pass {
        verified,
        tally,
        timeline,
        guard,
        records,
    } = pass;
    let view = state.vault.view();
    let mut summary = Summary {
        generated: crate::event::rfc3339_seconds(time::OffsetDateTime::now_utc()),
        ceremony_id: record.ceremony_id().to_string(),
        sealed: view.sealed,
        generation: view.generation,
        verification: Verification {
            state: "verified",
            error: None,
            log: None,
        },
        usage: Vec::new(),
        key_events: Vec::new(),
        guard_events: Vec::new(),
        renewal: None,
        timeline: Vec::new(),
        records: 0,
    };
    match verified {
        Ok(log) => {
            let report = tally.finish(log, record, today);
            summary.usage = report.usage;
            summary.key_events = report.events;
            summary.renewal = Some(report.renewal);
            summary.verification.log = Some(report.log);
            summary.guard_events = guard;
            summary.timeline = timeline.into();
            summary.records = records;
        }
        Err(e) => {
            // What was read before the failure is not shown: only what
            // verified is.
            summary.verification.state = if e.is_tampered() {
                "tampered"
            } else {
                "unreadable"
            };
            summary.verification.error = Some(e.to_string());
        }
    }
    summary
}

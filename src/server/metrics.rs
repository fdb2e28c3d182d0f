//! Prometheus metrics, on a listener of their own (`metrics_listen` in
//! `server.toml`): the same mutual TLS as the service, the operator role
//! only, one route (`GET /metrics`, the Prometheus text format).
//!
//! What they count is what the traceability log and the receipts already
//! say, summed: batches by operation and outcome, lines by status, batch
//! durations, refusals by reason, log events by name (guard events among
//! them); and, read at each scrape, the seal state, the generation, the
//! days to the renewal due date and the log's health. Label values come
//! from fixed lists (operation, status, outcome, reason and event names):
//! never a client's name, a batch id, and nothing per NIR.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::AppState;
use crate::config::Role;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Batch {
    operation: &'static str,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Line {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Logged {
    event: &'static str,
}

type Durations = Family<Operation, Histogram, fn() -> Histogram>;

/// The process's counters (one service a process).
struct Counters {
    batches: Family<Batch, Counter>,
    lines: Family<Line, Counter>,
    durations: Durations,
    refusals: Family<Refusal, Counter>,
    events: Family<Logged, Counter>,
}

fn durations() -> Histogram {
    // 1 ms to about 4.7 hours.
    Histogram::new(exponential_buckets(0.001, 4.0, 13))
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| Counters {
    batches: Family::default(),
    lines: Family::default(),
    durations: Family::new_with_constructor(durations),
    refusals: Family::default(),
    events: Family::default(),
});

/// The operation's name as a label (from the fixed list of operations).
fn operation_label(name: &str) -> &'static str {
    match name {
        "cstatns" => "cstatns",
        "renewal" => "renewal",
        "cspens" => "cspens",
        "cspens_renewal" => "cspens_renewal",
        _ => "other",
    }
}

/// A batch's end, from its receipt (counts only).
pub(super) fn batch_ended(r: &crate::receipt::Receipt) {
    let operation = operation_label(&r.operation);
    let outcome = match r.outcome.as_str() {
        o @ ("completed" | "aborted") => o.to_owned(),
        _ => "other".to_owned(),
    };
    let c = &*COUNTERS;
    c.batches.get_or_create(&Batch { operation, outcome }).inc();
    for (status, n) in r.counts.nonzero() {
        c.lines
            .get_or_create(&Line {
                status: status.code(),
            })
            .inc_by(n);
    }
    c.durations
        .get_or_create(&Operation { operation })
        .observe(r.seconds);
}

/// A refusal: an HTTP error's code, or a connection refused before HTTP.
pub(super) fn refused(reason: &'static str) {
    COUNTERS.refusals.get_or_create(&Refusal { reason }).inc();
}

/// A record appended to the traceability log.
pub(super) fn logged(event: &'static str) {
    COUNTERS.events.get_or_create(&Logged { event }).inc();
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

/// The metrics as the Prometheus text format.
pub fn render(state: &AppState) -> String {
    let c = &*COUNTERS;
    let mut r = Registry::with_prefix("cstatns");
    r.register(
        "batches",
        "Batches ended, by operation and outcome",
        c.batches.clone(),
    );
    r.register("lines", "Batch lines answered, by status", c.lines.clone());
    r.register(
        "batch_duration_seconds",
        "Batch durations, from the first byte read to the receipt",
        c.durations.clone(),
    );
    r.register(
        "refusals",
        "Requests and connections refused, by reason",
        c.refusals.clone(),
    );
    r.register(
        "log_events",
        "Records appended to the traceability log, by event (guard events among them)",
        c.events.clone(),
    );
    let view = state.vault.view();
    gauge(
        &mut r,
        "sealed",
        "1 while sealed (no key in memory), 0 once unsealed",
        i64::from(view.sealed),
    );
    gauge(
        &mut r,
        "generation",
        "The current generation G of the codes (0 while sealed)",
        i64::from(view.generation.unwrap_or(0)),
    );
    if let Some(s) = super::schedule_of(state, &view.created) {
        gauge(
            &mut r,
            "renewal_days_left",
            "Days to the key renewal's due date (negative once overdue)",
            s.days_left,
        );
    }
    let health = state.audit.health();
    gauge(
        &mut r,
        "audit_log_writable",
        "1 while the traceability log takes writes (0: the service refuses work)",
        i64::from(health.writable),
    );
    gauge(
        &mut r,
        "audit_log_records",
        "Sequence number of the log's last record",
        i64::try_from(health.seq).unwrap_or(i64::MAX),
    );
    gauge(
        &mut r,
        "audit_log_unsigned_records",
        "Records not yet covered by a signed checkpoint",
        i64::try_from(health.unsigned_records).unwrap_or(i64::MAX),
    );
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// Handshakes under way at once on the metrics listener; more are dropped.
const HANDSHAKES: usize = 64;

/// Operators' scrapes served at once, taken after the handshake.
const SCRAPERS: usize = 4;

/// A scrape's connection, handshake excluded, whatever the client does:
/// one request (no keep-alive), its answer, then closed.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `GET /metrics` on `listener` to operators until the task is
/// aborted. Like the main listener, a slot is taken only after a mutual
/// TLS handshake (unauthenticated sockets share the handshake slots, each
/// held at most [`super::HANDSHAKE_TIMEOUT`]); a connection carries one
/// request and lives at most [`SCRAPE_TIMEOUT`]; the role is that of the
/// configuration in force at the handshake; a refusal is logged.
pub(super) async fn serve(listener: TcpListener, state: Arc<AppState>) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
    let slots = Arc::new(tokio::sync::Semaphore::new(SCRAPERS));
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            refused("too many handshakes");
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(state.live().tls.clone());
        let state = state.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(super::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    _ => return refused("handshake"),
                };
            drop(handshake);
            let Some(id) = crate::tls::peer_identity(tls.get_ref().1) else {
                return refused("handshake");
            };
            let Ok(_slot) = slots.try_acquire_owned() else {
                return refused("too many scrapes");
            };
            // The role is checked, and a refusal logged, as on the service's
            // own routes.
            let operator = state.require(&id, Role::Operator).is_ok();
            if !operator {
                refused("forbidden");
            }
            let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&state, operator, &req)) }
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(io, svc);
            match tokio::time::timeout(SCRAPE_TIMEOUT, served).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
                }
                Err(_) => tracing::debug!(%peer, "metrics connection cut off after 30 s"),
            }
        });
    }
}

fn answer<B>(state: &AppState, operator: bool, req: &hyper::Request<B>) -> hyper::Response<String> {
    let plain = |status: u16, text: &str| {
        let mut r = hyper::Response::new(format!("{text}\n"));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        r
    };
    if !operator {
        return plain(403, "metrics are for the operator role");
    }
    if req.uri().path() != "/metrics" {
        return plain(404, "not found: the metrics are at /metrics");
    }
    if req.method() != hyper::Method::GET {
        return plain(405, "method not allowed: GET /metrics");
    }
    let mut r = hyper::Response::new(render(state));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    r
}

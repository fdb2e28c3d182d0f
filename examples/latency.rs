//! Latency under concurrency (benches/README.md): `CLIENTS` submitters each
//! send 100-row batches to a running, unsealed service for `SECONDS`, one
//! batch a connection (the service closes a batch's connection after its
//! answer, so every batch pays its TLS handshake), and the time from
//! connecting to the whole answer is recorded. Prints one JSON line with
//! the batches answered and the percentiles.
//!
//! The submitters share one TLS configuration and so resume the sessions
//! the service hands out (an abbreviated handshake), as a long-running
//! client would; `LATENCY_FULL_HANDSHAKE=1` makes every connection a full
//! handshake, as separate `cstatns submit` runs are.
//!
//! `LATENCY_RATE=R` makes each submitter send R batches a second on a fixed
//! schedule (its first at a random offset within the first interval)
//! instead of one after the other: the service at a load below what it can
//! take. A batch's time runs from when it was sent; or, when the submitter's
//! previous batch was still unanswered at the time the schedule said to send
//! this one, from that time, so that a late start the service caused counts
//! against it too (a timer firing late does not, though the client and the
//! service share the cores). Every batch the schedule puts before the end of
//! the run is sent and timed, however late.
//!
//! `LATENCY_REQUEST=status` sends `GET /v1/status` instead of a batch, on a
//! connection each as well: what a connection a request costs with nothing
//! behind it, the ceiling of batches a second with a connection a batch.
//!
//!     cargo run --release --example latency -- URL CA CERT KEY [CLIENTS] [SECONDS]

use std::time::{Duration, Instant};

use bytes::Bytes;
use cstatns::client::Endpoint;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: latency URL CA CERT KEY [CLIENTS] [SECONDS]"
    );
    let endpoint = Endpoint {
        server: args[0].clone(),
        ca: args[1].clone().into(),
        cert: args[2].clone().into(),
        key: args[3].clone().into(),
        crl: None,
    };
    let clients: usize = args.get(4).map_or(Ok(64), |a| a.parse())?;
    let seconds: u64 = args.get(5).map_or(Ok(10), |a| a.parse())?;
    let mut body = String::from("index,nir\n");
    for i in 0..100u64 {
        let n = cstatns::nir::synthetic(900_000 + i);
        body.push_str(&format!(
            "L-{i},{}\n",
            String::from_utf8_lossy(&n.with_key())
        ));
    }
    let body = Bytes::from(body);
    // One TLS configuration for all: the submitters resume the sessions the
    // service hands out, as a long-running client would.
    let connector = endpoint.connector()?;
    let full = std::env::var("LATENCY_FULL_HANDSHAKE").is_ok_and(|v| v == "1");
    let status_only = match std::env::var("LATENCY_REQUEST").as_deref() {
        Ok("status") => true,
        Ok("batch") | Err(_) => false,
        Ok(other) => anyhow::bail!("LATENCY_REQUEST={other}: `batch` (default) or `status`"),
    };
    let interval: Option<Duration> = match std::env::var("LATENCY_RATE") {
        Ok(r) => Some(
            r.parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r > 0.0)
                .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok())
                .filter(|every| !every.is_zero() && every.as_secs() < seconds)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "LATENCY_RATE={r}: batches a second a submitter, at least one in the run"
                    )
                })?,
        ),
        Err(_) => None,
    };
    let rate = interval.map(|every| 1.0 / every.as_secs_f64());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (endpoint, connector, body) = (endpoint.clone(), connector.clone(), body.clone());
        let offset = interval.map(|i| i.mul_f64(rand::random::<f64>()));
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut failed = 0u64;
            let mut next = start + offset.unwrap_or_default();
            let mut previous_done = start;
            loop {
                // Paced: every batch the schedule puts before the deadline,
                // however late it goes; in a closed loop, until the deadline.
                let t = match interval {
                    Some(every) => {
                        if next >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(next.into()).await;
                        let due = next;
                        next += every;
                        if previous_done > due {
                            due
                        } else {
                            Instant::now()
                        }
                    }
                    None if Instant::now() < deadline => Instant::now(),
                    None => break,
                };
                let answered = async {
                    let mut c = if full {
                        endpoint.connect().await?
                    } else {
                        connector.connect().await?
                    };
                    if status_only {
                        return c.status().await.map(|s| !s.sealed);
                    }
                    let a = c
                        .post_batch("/v1/cstatns", "text/csv", body.clone())
                        .await?;
                    Ok::<_, cstatns::client::ClientError>(a.len() > 100 * 64)
                }
                .await;
                match answered {
                    Ok(true) => times.push(t.elapsed()),
                    _ => failed += 1,
                }
                previous_done = Instant::now();
            }
            (times, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (times, f) = t.await?;
        all.extend(times);
        failed += f;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "clients": clients,
            "resumed_sessions": !full,
            "request": if status_only { "status" } else { "batch" },
            "rate_per_submitter": rate,
            "seconds": seconds,
            "batches": all.len(),
            "failed": failed,
            "batches_per_s": all.len() as f64 / seconds as f64,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        })
    );
    Ok(())
}

//! Sealing and stopping under a running batch: the batch stops at its next
//! chunk, is logged as aborted (with a signed receipt), and only then is the
//! seal or the stop logged, with every copy of the keys gone.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{timed, ClientIdentity, TestEnv};

fn lines(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|i| {
            let nir = cstatns::nir::synthetic(i).with_key();
            format!("SL-{i},{}\n", std::str::from_utf8(&nir).unwrap())
        })
        .collect()
}

/// Polls the log (5 s at most) until a record satisfies `pred`.
async fn logged(env: &TestEnv, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..500 {
        if let Some(r) = env.audit_records().into_iter().find(|r| pred(r)) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("record not logged:\n{}", env.audit_text());
}

/// Opens a batch whose body stays open, and returns once it is logged as
/// started, with the sender for more lines and the exchange's future.
macro_rules! open_batch {
    ($env:expr, $server:expr, $tx:ident, $exchange:ident) => {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let id = ClientIdentity::Cert {
            cert: $env.cert(cstatns::pki::SUBMITTER),
            key: $env.key(cstatns::pki::SUBMITTER),
        };
        let ca = $env.ca();
        // A declared length: a body without one is read whole first.
        let headers = [
            ("content-type", "text/csv"),
            ("content-length", "1000000000"),
        ];
        let $exchange =
            common::https_channel(&$server, &ca, &id, "POST", "/v1/cstatns", &headers, rx);
        tokio::pin!($exchange);
        let $tx = tx;
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_during_a_batch_stops_it_and_is_logged_after_its_end() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    open_batch!(env, server, tx, exchange);
    let mut header_and_first = String::from("index,nir\n");
    header_and_first.push_str(&lines(0, 100));
    tx.send(Bytes::from(header_and_first)).await.unwrap();
    // Drive the exchange while waiting for the batch to start.
    let started = tokio::select! {
        r = logged(&env, |r| r["event"] == "batch_start") => r,
        _ = &mut exchange => panic!("the batch ended before the seal"),
    };
    let batch = started["details"]["batch"].as_str().unwrap().to_owned();

    let seal = async {
        let mut op = timed(
            "connect",
            env.endpoint(&server, cstatns::pki::OPERATOR).connect(),
        )
        .await
        .unwrap();
        timed("seal", op.seal()).await.expect("the operator seals")
    };
    // The seal ends the open batch by itself: the exchange completes although
    // its body is still open.
    let (status, answer) = tokio::join!(seal, timed("exchange", &mut exchange));
    assert!(status.sealed);
    // Lines sent after the seal reach no one.
    let _ = tx.send(Bytes::from(lines(1_000, 1_000))).await;
    drop(tx);
    let answered_ok = answer
        .as_ref()
        .map(|r| String::from_utf8_lossy(&r.body).matches(",ok\n").count())
        .unwrap_or(0);
    assert!(
        answered_ok <= 100,
        "{answered_ok} codes for 100 lines sent before the seal"
    );

    let records = env.audit_records();
    let end = records
        .iter()
        .position(|r| r["event"] == "batch_end" && r["details"]["batch"] == batch.as_str())
        .expect("the batch's end is logged");
    let seal = records
        .iter()
        .position(|r| r["event"] == "seal")
        .expect("the seal is logged");
    assert!(end < seal, "the batch's end comes before the seal");
    assert_eq!(records[end]["details"]["outcome"], "aborted");
    assert_eq!(records[end]["details"]["reason"], "sealed");
    assert_eq!(records[seal]["details"]["keys_wiped"], true);
    assert_eq!(records[seal + 1]["event"], "checkpoint");

    // The aborted batch has a receipt, signed, that verifies.
    let mut sub = env
        .endpoint(&server, cstatns::pki::SUBMITTER)
        .connect()
        .await
        .unwrap();
    let receipt = sub
        .receipt(&batch)
        .await
        .expect("receipt of the aborted batch");
    assert_eq!(receipt.outcome, "aborted");
    let record = cstatns::seal::CeremonyRecord::from_json(
        &std::fs::read(env.dir().join("ceremony.json")).unwrap(),
    )
    .unwrap();
    cstatns::audit::verify::verify_receipt(&receipt, &record, Some(&env.dir().join("audit")))
        .expect("the aborted batch's receipt verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_a_batch_logs_its_end_before_the_stop() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    open_batch!(env, server, tx, exchange);
    tx.send(Bytes::from(format!("index,nir\n{}", lines(0, 100))))
        .await
        .unwrap();
    tokio::select! {
        _ = logged(&env, |r| r["event"] == "batch_start") => {},
        _ = &mut exchange => panic!("the batch ended before the stop"),
    };
    let pid = server.pid().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = timed("exchange", &mut exchange).await;
    drop(tx);
    logged(&env, |r| {
        r["event"] == "checkpoint" && r["details"]["reason"] == "stop"
    })
    .await;
    let events: Vec<String> = env
        .audit_records()
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_owned())
        .collect();
    let tail: Vec<&str> = events
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        ["batch_end", "service_stop", "checkpoint"],
        "{events:?}"
    );
    let stop = env
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "service_stop")
        .unwrap();
    assert_eq!(stop["details"]["keys_wiped"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_while_sealed_discards_the_shares_received() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal_with(&server, &[1, 2]).await;
    assert_eq!(env.status(&server).await.holders_received.len(), 2);
    let mut op = env
        .endpoint(&server, cstatns::pki::OPERATOR)
        .connect()
        .await
        .unwrap();
    let status = op.seal().await.expect("discard the shares");
    assert!(status.sealed && status.holders_received.is_empty() && status.holders_needed == 3);
    let r = logged(&env, |r| r["event"] == "shares_discarded").await;
    assert_eq!(
        r["details"]["holders"],
        serde_json::json!(["holder-1", "holder-2"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_of_an_abandoned_unseal_are_discarded_when_the_window_expires() {
    let env = TestEnv::new();
    common::set_number(&env.env.config, "unseal_window_seconds", 1);
    let server = env.serve();
    env.unseal_with(&server, &[2]).await;
    assert_eq!(env.status(&server).await.holders_received, ["holder-2"]);
    let r = logged(&env, |r| r["event"] == "shares_discarded").await;
    assert_eq!(r["details"]["reason"], "unseal_window_expired");
    assert_eq!(r["details"]["holders"], serde_json::json!(["holder-2"]));
    let status = env.status(&server).await;
    assert!(status.sealed && status.holders_received.is_empty());
    // The unseal starts over and still works.
    env.unseal(&server).await;
}

//! The guard's quotas (DESIGN §4: `quota_exceeded`, 429), through the real
//! service: per batch, per UTC day, batches per hour; cut in the batch's
//! order, a line's own error first; logged, in the receipt, and still in
//! force after a restart.

mod common;

use common::{csv_rows, nir_full, TestEnv};
use cstatns::pki::SUBMITTER;

/// Sets the submitter's `[client.quota]` in the deployment's `server.toml`.
fn set_quota(env: &TestEnv, quota: &[(&str, i64)]) {
    let text = std::fs::read_to_string(&env.env.config).expect("server.toml");
    let mut doc: toml::Table = toml::from_str(&text).expect("TOML");
    let clients = doc
        .get_mut("client")
        .and_then(toml::Value::as_array_mut)
        .expect("[[client]]");
    let submitter = clients
        .iter_mut()
        .find(|c| c.get("name").and_then(toml::Value::as_str) == Some(SUBMITTER))
        .and_then(toml::Value::as_table_mut)
        .expect("the submitter");
    let mut q = toml::Table::new();
    for (k, v) in quota {
        q.insert((*k).into(), toml::Value::Integer(*v));
    }
    submitter.insert("quota".into(), toml::Value::Table(q));
    std::fs::write(&env.env.config, toml::to_string_pretty(&doc).expect("TOML")).expect("write");
}

/// `n` valid lines, but line `bad` (if any) malformed.
fn batch(tag: &str, n: u64, bad: Option<u64>) -> String {
    let mut s = String::from("index,nir\n");
    for i in 0..n {
        if Some(i) == bad {
            s.push_str(&format!("{tag}{i}\n"));
        } else {
            s.push_str(&format!("{tag}{i},{}\n", nir_full(i)));
        }
    }
    s
}

fn statuses(text: &str) -> Vec<String> {
    csv_rows(text, ',').into_iter().map(|[_, _, s]| s).collect()
}

fn codes(text: &str) -> usize {
    csv_rows(text, ',')
        .iter()
        .filter(|[_, code, _]| !code.is_empty())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_its_quota_gets_codes_up_to_it_then_quota_exceeded_in_order() {
    let env = TestEnv::new();
    set_quota(&env, &[("records_per_batch", 50)]);
    let server = env.serve();
    env.unseal(&server).await;
    // Line 70 is malformed: it does not count, and stays malformed_line
    // past the cut (a line's own error comes first).
    let r = env.derive_csv(&server, batch("Q", 100, Some(70))).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let st = statuses(&text);
    assert_eq!(st.len(), 100);
    assert!(st[..50].iter().all(|s| s == "ok"), "{st:?}");
    assert_eq!(st[70], "malformed_line");
    assert!(
        st[50..].iter().enumerate().all(|(i, s)| s
            == if i + 50 == 70 {
                "malformed_line"
            } else {
                "quota_exceeded"
            }),
        "{st:?}"
    );
    assert_eq!(codes(&text), 50, "no code past the quota");
    let end = env.wait_for_audit("batch_end", |r| r["event"] == "batch_end");
    assert_eq!(end["details"]["counts"]["quota_exceeded"], 49);
    assert_eq!(end["details"]["outcome"], "completed");
    let q = env.wait_for_audit("quota_exceeded", |r| r["event"] == "quota_exceeded");
    assert_eq!(q["details"]["limit"], "records_per_batch");
    assert_eq!(q["details"]["purpose"], cstatns::devenv::DEV_PURPOSE);
    // The receipt says why.
    let batch_id = r.header("cstatns-batch").expect("batch id").to_owned();
    let rc = env
        .request(
            &server,
            SUBMITTER,
            "GET",
            &format!("/v1/receipts/{batch_id}"),
            &[],
            "",
        )
        .await;
    assert_eq!(rc.json()["guard"], "records_per_batch", "{}", rc.text());
    // A body's length says nothing of its lines (blank lines of any length
    // are skipped): a long body of few records is not refused for it.
    let padded = batch("P", 10, None) + &"\n".repeat(64 * 1024);
    let r = env.derive_csv(&server, padded).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(codes(&r.text()), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_quota_is_shared_by_batches_refused_at_the_start_and_survives_a_restart() {
    let env = TestEnv::new();
    set_quota(&env, &[("records_per_batch", 50), ("records_per_day", 120)]);
    let mut server = env.serve();
    env.unseal(&server).await;
    for tag in ["A", "B"] {
        let r = env.derive_csv(&server, batch(tag, 50, None)).await;
        assert_eq!(codes(&r.text()), 50);
    }
    let r = env.derive_csv(&server, batch("C", 50, None)).await;
    assert_eq!(codes(&r.text()), 20, "what is left of the day");
    assert_eq!(statuses(&r.text())[20], "quota_exceeded");
    let r = env.derive_csv(&server, batch("D", 5, None)).await;
    let (status, code, message) = r.refusal();
    assert_eq!(
        (status, code.as_str()),
        (429, "quota_exceeded"),
        "{message}"
    );
    assert!(message.contains("records_per_day"), "{message}");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=86_400).contains(&retry), "until midnight UTC: {retry}");
    // Refusals are logged as such.
    assert!(env.audit_records().iter().any(|r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "quota_exceeded"
    }));
    // After a restart, the day's codes are read back from the log.
    server.stop();
    let server = env.serve();
    env.unseal(&server).await;
    let r = env.derive_csv(&server, batch("E", 5, None)).await;
    assert_eq!(r.refusal().0, 429, "the quota outlives a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_per_hour_are_counted_and_the_next_is_told_when_to_come_back() {
    let env = TestEnv::new();
    set_quota(&env, &[("batches_per_hour", 2)]);
    let server = env.serve();
    env.unseal(&server).await;
    let r = env.derive_csv(&server, batch("H", 3, None)).await;
    assert_eq!(r.status, 200);
    // Refused before its start (a bad header): not one of the two.
    let bad = env.derive_csv(&server, "index,nothing\nX,1\n").await;
    assert_eq!(bad.status, 400);
    let r = env.derive_csv(&server, batch("I", 3, None)).await;
    assert_eq!(r.status, 200, "the second batch of the hour");
    let r = env.derive_csv(&server, batch("J", 3, None)).await;
    let (status, _, message) = r.refusal();
    assert_eq!(status, 429);
    assert!(message.contains("batches_per_hour"), "{message}");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((3500..=3600).contains(&retry), "{retry}");
    // Renewals carry no NIR: not counted, not refused.
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/renewal",
            &[("content-type", "text/csv")],
            format!("index,cstatns,generation\nR1,{},1\n", "a".repeat(64)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

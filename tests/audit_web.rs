//! The auditors' web view in a real browser: Debian's Chromium, headless,
//! driven by playwright-core (`tests/browser/audit_page.mjs`), presenting the
//! auditor's client certificate to the real service over mutual TLS. What the
//! page shows is checked against the log file itself; nothing is loaded from
//! anywhere but the service; a submitter's certificate gets 403; a screenshot
//! is saved (`target/tmp/audit-web.png`). `.ci/browser` installs Chromium and
//! playwright-core when missing.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{nir_full, TestEnv};
use cstatns::pki::{AUDITOR, SUBMITTER};
use serde_json::Value;

/// What the page shows, as the browser saw it.
fn browse(env: &TestEnv, port: u16, role: &str, shot: &Path) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let o = Command::new("node")
        .current_dir(&dir)
        .arg("audit_page.mjs")
        .arg(format!("https://localhost:{port}/audit/"))
        .arg(env.cert(role))
        .arg(env.key(role))
        .arg(shot)
        .env("NODE_EXTRA_CA_CERTS", env.ca())
        .output()
        .expect("node");
    assert!(
        o.status.success(),
        "the browser failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn shown<'a>(page: &'a Value, id: &str) -> &'a str {
    page["shown"][id]
        .as_str()
        .unwrap_or_else(|| panic!("nothing shown as {id}: {page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditors_page_shows_the_log_as_it_is_and_only_to_auditors() {
    common::provision("browser");
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    // Some use: two batches, a refused request, a refusal by role.
    let mut body = String::from("index,nir\n");
    for i in 0..40u64 {
        body.push_str(&format!("W{i},{}\n", nir_full(5_000 + i)));
    }
    body.push_str("W-bad,295109912611194\n");
    assert_eq!(env.derive_csv(&server, body.clone()).await.status, 200);
    assert_eq!(env.derive_csv(&server, body).await.status, 200);
    assert_eq!(env.derive_csv(&server, "id,nir\n").await.status, 400);
    env.wait_for_audit("two batch ends", |_| {
        env.audit_records()
            .iter()
            .filter(|r| r["event"] == "batch_end")
            .count()
            == 2
    });

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let refused = browse(
        &env,
        server.port,
        SUBMITTER,
        &shots.join("audit-web-403.png"),
    );
    assert_eq!(refused["status"], 403, "{refused}");

    let shot = shots.join("audit-web.png");
    let _ = std::fs::remove_file(&shot);
    let page = browse(&env, server.port, AUDITOR, &shot);
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["ready"], "true", "{page}");
    assert_eq!(page["errors"], Value::Array(vec![]), "{page}");
    // Nothing from elsewhere: every request went to the service, and the
    // page's policy allows nothing else.
    let origin = format!("https://localhost:{}/", server.port);
    for url in page["requested"].as_array().unwrap() {
        assert!(url.as_str().unwrap().starts_with(&origin), "{url}");
    }
    assert!(page["csp"]
        .as_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);

    // The page against the log file, up to the page's own read (the newest
    // record it shows).
    let top = page["timeline"][0]["seq"].as_u64().unwrap();
    let log: Vec<Value> = env
        .audit_records()
        .into_iter()
        .filter(|r| r["seq"].as_u64().unwrap() <= top)
        .collect();
    assert_eq!(log.len() as u64, top);
    let newest = log.last().unwrap();
    assert_eq!(newest["event"], "audit_read", "the page's read is logged");
    let of = |e: &'static str| log.iter().filter(move |r| r["event"] == e);
    let ends: Vec<&Value> = of("batch_end").collect();
    let sum = |f: &dyn Fn(&Value) -> u64| ends.iter().map(|r| f(r)).sum::<u64>();
    assert_eq!(shown(&page, "verification"), "Verified");
    assert_eq!(shown(&page, "records"), top.to_string());
    assert_eq!(shown(&page, "batches"), "2");
    assert_eq!(
        shown(&page, "lines"),
        sum(&|r| r["details"]["records"].as_u64().unwrap()).to_string()
    );
    assert_eq!(
        shown(&page, "codes"),
        sum(&|r| r["details"]["counts"]["ok"].as_u64().unwrap_or(0)).to_string()
    );
    assert_eq!(shown(&page, "codes"), "80");
    let refusals = of("request_refused").count() + of("connection_refused").count();
    assert!(refusals >= 1);
    assert_eq!(shown(&page, "refusals"), refusals.to_string());
    assert_eq!(
        shown(&page, "unseals"),
        format!("{} / {}", of("unseal").count(), of("seal").count())
    );
    let checkpoints: Vec<u64> = of("checkpoint")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(shown(&page, "checkpoints"), checkpoints.len().to_string());
    let after = top - checkpoints.last().copied().unwrap_or(0);
    assert!(
        shown(&page, "unsigned").starts_with(&format!("{after} record")),
        "{page}"
    );
    match checkpoints.last() {
        Some(seq) => assert!(shown(&page, "last-checkpoint").ends_with(&format!("record {seq}"))),
        None => assert_eq!(shown(&page, "last-checkpoint"), "none yet"),
    }
    // The renewal is due five years after the ceremony (no renewal yet).
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(env.dir().join("ceremony.json")).unwrap())
            .unwrap();
    let created = record["created"].as_str().unwrap();
    let year: u32 = created[..4].parse().unwrap();
    let due = format!("{}{}", year + 5, &created[4..10]);
    assert_eq!(shown(&page, "renewal-due"), due);
    // The timeline: every record, newest first, with who did it; the
    // refusals filter keeps the refusals only.
    let seqs: Vec<u64> = page["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=top).rev().collect::<Vec<_>>());
    assert!(page["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "batch_end" && e["by"].as_str().unwrap().contains("CN=submitter")));
    let filtered = page["refusalRows"].as_array().unwrap();
    assert_eq!(filtered.len(), refusals);
    assert!(filtered
        .iter()
        .all(|e| e == "request_refused" || e == "connection_refused"));
    // Per client and purpose.
    let usage = page["usage"].as_array().unwrap();
    assert_eq!(usage.len(), 1, "{page}");
    assert_eq!(usage[0][1], "CN=submitter, O=cstatns dev-env (INSECURE)");
    assert_eq!(usage[0][3], "2");

    // The log altered on disk under the running service (a record's count
    // rewritten): the page says so, and shows nothing of what it read.
    let file = env.dir().join("audit/log.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let forged = text.replacen("\"records\":41", "\"records\":4", 1);
    assert_ne!(forged, text);
    std::fs::write(&file, forged).unwrap();
    let page = browse(
        &env,
        server.port,
        AUDITOR,
        &shots.join("audit-web-tampered.png"),
    );
    assert_eq!(shown(&page, "verification"), "TAMPERED", "{page}");
    assert!(
        shown(&page, "verification-error").contains("hash"),
        "{page}"
    );
    assert_eq!(shown(&page, "batches"), "—");
    assert_eq!(page["timeline"], Value::Array(vec![]));
}

//! The guard's sweep detector (DESIGN §4: `sweep_suspected`; docs/guard.md),
//! through the real service: a population goes through, an enumeration of
//! the NIR space is cut where it is judged one, the rest of its batch is
//! answered `sweep_suspected` without a code, the log and the receipt say
//! why, and the client is refused (429) — across a restart — until an
//! operator lifts it with `cstatns guard release`.

mod common;

use std::process::Command;

use common::{csv_rows, TestEnv};
use cstatns::pki::{OPERATOR, SUBMITTER};

fn with_key(body: &str) -> String {
    let n = cstatns::nir::Nir::parse(body.as_bytes()).expect("a valid body");
    String::from_utf8(n.with_key().to_vec()).expect("ASCII")
}

/// Sequential order numbers 001–999 under (sex 1, 1985-01, Paris 15e), then
/// under sex 2: an enumeration no register makes. Line `bad` is malformed.
fn sequential_sweep(bad: usize) -> String {
    let mut s = String::from("index,nir\n");
    let mut i = 0;
    for sex in 1..=2 {
        for o in 1..=999 {
            if i == bad {
                s.push_str("S-bad\n");
            } else {
                s.push_str(&format!(
                    "S-{i},{}\n",
                    with_key(&format!("{sex}850175115{o:03}"))
                ));
            }
            i += 1;
        }
    }
    s
}

/// A synthetic population, sorted by NIR (registers' runs side by side).
fn population(n: usize) -> String {
    let mut people: Vec<String> = cstatns::population::Population::new(9)
        .take(n)
        .map(|p| String::from_utf8(p.with_key().to_vec()).expect("ASCII"))
        .collect();
    people.sort_unstable();
    let mut s = String::from("index,nir\n");
    for (i, p) in people.iter().enumerate() {
        s.push_str(&format!("P-{i},{p}\n"));
    }
    s
}

fn statuses(text: &str) -> Vec<String> {
    csv_rows(text, ',').into_iter().map(|[_, _, s]| s).collect()
}

/// `cstatns ARGS…` with `role`'s certificate: exit status and output.
fn cstatns(
    env: &TestEnv,
    server: &common::ServerProcess,
    role: &str,
    args: &[&str],
) -> (Option<i32>, String) {
    let (ca, cert, key) = (env.ca(), env.cert(role), env.key(role));
    let o = Command::new(env!("CARGO_BIN_EXE_cstatns"))
        .args(args)
        .args(["--server", &server.url()])
        .arg("--ca")
        .arg(&ca)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .expect("run cstatns");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_sweep_is_cut_and_its_client_refused_until_an_operator_releases_it() {
    let env = TestEnv::new();
    let mut server = env.serve();
    env.unseal(&server).await;

    // A population, sorted: every line gets its code.
    let r = env.derive_csv(&server, population(20_000)).await;
    assert_eq!(r.status, 200);
    let st = statuses(&r.text());
    assert_eq!(st.len(), 20_000);
    assert!(st.iter().all(|s| s == "ok"), "a population is not a sweep");

    // 999 order numbers under one prefix: the 801st trips the detector.
    let r = env.derive_csv(&server, sequential_sweep(900)).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let rows = csv_rows(&text, ',');
    assert_eq!(rows.len(), 1998, "every line answered");
    for (i, [index, code, status]) in rows.iter().enumerate() {
        let want = match i {
            900 => "malformed_line",
            ..800 => "ok",
            _ => "sweep_suspected",
        };
        assert_eq!(status, want, "line {i}");
        assert_eq!(
            code.is_empty(),
            want != "ok",
            "line {i}: a code only when ok"
        );
        if i != 900 {
            assert_eq!(index, &format!("S-{i}"));
        }
    }
    // The log says why, with counts only.
    let ev = env.wait_for_audit("sweep_suspected", |r| r["event"] == "sweep_suspected");
    let d = &ev["details"];
    assert_eq!(d["rule"], "prefix_orders", "{ev}");
    assert_eq!(d["most_orders"], 301, "order numbers 501 to 801");
    assert_eq!(d["client"], SUBMITTER);
    assert_eq!(d["purpose"], cstatns::devenv::DEV_PURPOSE);
    assert!(!ev.to_string().contains("75115"), "no prefix in the log");
    let end = env.wait_for_audit("batch_end", |r| {
        r["event"] == "batch_end" && r["details"]["counts"]["sweep_suspected"].as_u64() > Some(0)
    });
    assert_eq!(end["details"]["counts"]["sweep_suspected"], 1998 - 800 - 1);
    // The receipt says why.
    let batch = r.header("cstatns-batch").expect("batch id").to_owned();
    let rc = env
        .request(
            &server,
            SUBMITTER,
            "GET",
            &format!("/v1/receipts/{batch}"),
            &[],
            "",
        )
        .await
        .json();
    assert_eq!(rc["guard"], "sweep_suspected", "{rc}");
    assert_eq!(rc["sweep"]["rule"], "prefix_orders");

    // The client is refused from now on, and the operator sees why.
    let again = env.derive_csv(&server, population(10)).await;
    let (status, code, message) = again.refusal();
    assert_eq!(
        (status, code.as_str()),
        (429, "sweep_suspected"),
        "{message}"
    );
    assert!(message.contains("cstatns guard release"), "{message}");
    assert!(again.header("retry-after").is_some());
    assert!(env.audit_records().iter().any(|r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "sweep_suspected"
    }));
    let s = env.status(&server).await;
    assert_eq!(s.suspended.len(), 1, "{:?}", s.suspended);
    assert_eq!(s.suspended[0].client, SUBMITTER);
    assert_eq!(s.suspended[0].rule, "prefix_orders");
    assert_eq!(s.suspended[0].batch, batch);

    // A restart does not lift it: the log holds it.
    server.stop();
    let server = env.serve();
    env.unseal(&server).await;
    assert_eq!(
        env.derive_csv(&server, population(10)).await.refusal().0,
        429
    );

    // Only an operator lifts it, and it is logged.
    let (code, out) = cstatns(&env, &server, SUBMITTER, &["guard", "release", SUBMITTER]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = cstatns(&env, &server, OPERATOR, &["guard", "release", SUBMITTER]);
    assert_eq!(code, Some(0), "{out}");
    let rel = env.wait_for_audit("guard_released", |r| r["event"] == "guard_released");
    assert_eq!(rel["details"]["client"], SUBMITTER);
    assert_eq!(rel["details"]["was_suspended"], true);
    assert!(rel["actor"]["subject"]
        .as_str()
        .unwrap_or_default()
        .contains(OPERATOR));
    let r = env.derive_csv(&server, population(10)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(env.status(&server).await.suspended.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_valid_numbers_trip_the_detector_and_submit_says_so_with_status_4() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    // Bodies of random digits: each has its key, few are a register's.
    let mut x: u64 = 0x5EED;
    let mut batch = String::from("index,nir\n");
    for i in 0..3000 {
        let mut body = String::from(if i % 2 == 0 { "1" } else { "2" });
        for _ in 0..12 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(char::from(b'0' + (x % 10) as u8));
        }
        batch.push_str(&format!("R-{i},{}\n", with_key(&body)));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("random.csv");
    std::fs::write(&input, &batch).expect("write");
    let output = dir.path().join("answer.csv");
    let (code, out) = cstatns(
        &env,
        &server,
        SUBMITTER,
        &[
            "submit",
            input.to_str().expect("UTF-8"),
            "--output",
            output.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(code, Some(4), "{out}");
    assert!(
        out.contains("sweep_suspected") && out.contains("guard release"),
        "{out}"
    );
    let answer = std::fs::read_to_string(&output).expect("the whole answer is written");
    let st = statuses(&answer);
    assert_eq!(st.len(), 3000);
    let first = st
        .iter()
        .position(|s| s == "sweep_suspected")
        .expect("tripped");
    assert!(first < 2048, "within a block: {first}");
    assert!(st[first..].iter().all(|s| s == "sweep_suspected"));
    let ev = env.wait_for_audit("sweep_suspected", |r| r["event"] == "sweep_suspected");
    assert_eq!(ev["details"]["rule"], "implausible_block");
    assert_eq!(ev["details"]["block_implausible"], 512);
    // No body in the service's answer to the operator either.
    let s = env.status(&server).await;
    assert_eq!(s.suspended[0].rule, "implausible_block");
}

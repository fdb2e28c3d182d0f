//! Load and faults, bounded and on 127.0.0.1 only: many concurrent
//! submitters through the real client (`cstatns::client::submit`, mutual
//! TLS) against the real `cstatns serve`, every answer row checked against
//! its input; then a `kill -9` of the service under load.
//!
//! The run is short by default; `CSTATNS_LOAD_SECONDS` and
//! `CSTATNS_LOAD_BIG_ROWS` make the long run SECURITY.md reports (for
//! example 180 s with 1,000,000-row batches, on a release build).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expected_c1, nir_full, test_k1, EnvOptions, TestEnv};
use cstatns::batch::Operation;
use cstatns::client::{submit, submit_syncing, InputType, Submission};

const SUBMITTERS: usize = 64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes a batch of `rows` synthetic NIRs whose indexes carry `tag`;
/// returns its path and, for each row, its index and NIR.
fn write_batch(dir: &Path, tag: &str, rows: u64, seed: u64) -> PathBuf {
    let path = dir.join(format!("{tag}.csv"));
    let mut body = String::with_capacity(rows as usize * 32 + 16);
    body.push_str("index,nir\n");
    for i in 0..rows {
        body.push_str(&format!("{tag}.{i},{}\n", nir_full(seed + i)));
    }
    std::fs::write(&path, body).expect("write a batch");
    path
}

/// A CSV batch of NIRs from `input`, its answer to `output`.
fn derive_csv<'a>(input: &'a Path, output: &'a Path) -> Submission<'a> {
    Submission {
        operation: Operation::Derive,
        input,
        input_type: InputType::Csv,
        output,
        purpose: None,
        project: None,
        progress: None,
    }
}

/// Checks an answer file against its batch: the same indexes in the same
/// order, every line `ok`, and the code of one line in `sample` (and of
/// the first and last) equal to the HMAC under the imported K_1.
fn check_answer(answer: &Path, tag: &str, rows: u64, seed: u64, sample: u64) -> Result<(), String> {
    let text = std::fs::read_to_string(answer).map_err(|e| format!("{tag}: {e}"))?;
    let mut lines = text.lines();
    if lines.next() != Some("index,cstatns,status") {
        return Err(format!("{tag}: not an answer header"));
    }
    let k1 = test_k1();
    let mut n = 0u64;
    for (i, line) in lines.enumerate() {
        let i = i as u64;
        let mut f = line.split(',');
        let (index, code, status) = (f.next(), f.next(), f.next());
        if index != Some(format!("{tag}.{i}").as_str()) || status != Some("ok") {
            return Err(format!("{tag}: line {i} out of order, lost or not ok"));
        }
        if i % sample == 0 || i + 1 == rows {
            let nir = nir_full(seed + i);
            let want = expected_c1(&k1, &nir.as_bytes()[..13]);
            if code != Some(want.as_str()) {
                return Err(format!("{tag}: line {i} has a wrong code"));
            }
        }
        n += 1;
    }
    if n != rows {
        return Err(format!("{tag}: {n} lines answered for {rows}"));
    }
    Ok(())
}

/// The server's resident memory, from `/proc` (KiB).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_submitters_lose_duplicate_and_reorder_nothing() {
    let seconds = env_u64("CSTATNS_LOAD_SECONDS", 15);
    let big_rows = env_u64("CSTATNS_LOAD_BIG_ROWS", 100_000);
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    let pid = server.pid();
    let endpoint = Arc::new(env.endpoint(&server, cstatns::pki::SUBMITTER));
    let work = Arc::new(env.tmp.path().join("load"));
    std::fs::create_dir_all(&*work).expect("work dir");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let rows_done = Arc::new(AtomicU64::new(0));
    let batches_done = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let (endpoint, work) = (endpoint.clone(), work.clone());
        let (rows_done, batches_done) = (rows_done.clone(), batches_done.clone());
        tasks.push(tokio::spawn(async move {
            let mut b = 0u64;
            // Two submitters send large batches; the others, 100 rows each.
            while Instant::now() < deadline {
                let rows = if s < 2 { big_rows } else { 100 };
                let tag = format!("S{s}-{b}");
                let seed = (s as u64) << 32 | b << 20;
                let (w, t) = (work.clone(), tag.clone());
                let input = tokio::task::spawn_blocking(move || write_batch(&w, &t, rows, seed))
                    .await
                    .expect("writer");
                let output = work.join(format!("{tag}.out"));
                let receipt = submit(&endpoint, derive_csv(&input, &output))
                    .await
                    .map_err(|e| format!("{tag}: {e}"))?;
                if receipt.records != rows || receipt.ok != rows {
                    return Err(format!("{tag}: receipt counts {}", receipt.records));
                }
                let sample = if rows > 1000 { 997 } else { 1 };
                let (o, t) = (output.clone(), tag.clone());
                tokio::task::spawn_blocking(move || check_answer(&o, &t, rows, seed, sample))
                    .await
                    .expect("checker")?;
                let _ = std::fs::remove_file(&input);
                let _ = std::fs::remove_file(&output);
                rows_done.fetch_add(rows, Ordering::Relaxed);
                batches_done.fetch_add(1, Ordering::Relaxed);
                b += 1;
            }
            Ok::<u64, String>(b)
        }));
    }
    let mut failures = Vec::new();
    let mut per_submitter = Vec::new();
    for t in tasks {
        match t.await.expect("submitter task") {
            Ok(b) => per_submitter.push(b),
            Err(e) => failures.push(e),
        }
    }
    sampler.abort();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        per_submitter.iter().all(|&b| b > 0),
        "every submitter got at least one batch through: {per_submitter:?}"
    );
    let batches = batches_done.load(Ordering::Relaxed);
    let rows = rows_done.load(Ordering::Relaxed);
    let peak_mib = peak.load(Ordering::Relaxed) / 1024;
    eprintln!(
        "load: {SUBMITTERS} submitters, {batches} batches, {rows} rows in {elapsed:.1} s \
         ({:.0} rows/s), server peak RSS {peak_mib} MiB",
        rows as f64 / elapsed
    );
    // Memory stays flat whatever the load: a bound far above the figure
    // (tens of MiB) but far below what holding the batches would take.
    assert!(peak_mib < 512, "server peak RSS {peak_mib} MiB");
    // Every batch is logged started and completed, once.
    let records = env.audit_records();
    let count = |event: &str, outcome: Option<&str>| {
        records
            .iter()
            .filter(|r| r["event"] == event && outcome.is_none_or(|o| r["details"]["outcome"] == o))
            .count() as u64
    };
    assert_eq!(count("batch_start", None), batches);
    assert_eq!(count("batch_end", Some("completed")), batches);
    let record = cstatns::seal::CeremonyRecord::from_json(
        &std::fs::read(env.env.dir.join("ceremony.json")).expect("record"),
    )
    .expect("record");
    cstatns::audit::verify::verify_dir(&env.env.dir.join("audit"), &record, None)
        .expect("the log verifies after the load");
}

/// `kill -9` of the service while 8 `cstatns submit` processes are sending
/// batches: every submit fails and leaves no answer file (not even a
/// partial one); the restarted service unseals, its log verifies, and every
/// interrupted batch shows as started and never completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_leaves_no_partial_answer_and_a_log_that_verifies() {
    let env = TestEnv::new();
    let mut server = env.serve();
    env.unseal(&server).await;
    let work = env.tmp.path().join("kill");
    std::fs::create_dir_all(&work).expect("work dir");
    let rows = env_u64("CSTATNS_LOAD_BIG_ROWS", 100_000).max(100_000) * 3;
    let mut children = Vec::new();
    for s in 0..8u64 {
        let input = write_batch(&work, &format!("K{s}"), rows, s << 32);
        let output = work.join(format!("K{s}.out"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cstatns"))
            .arg("submit")
            .args(["--server", &server.url()])
            .arg("--ca")
            .arg(env.ca())
            .arg("--cert")
            .arg(env.cert(cstatns::pki::SUBMITTER))
            .arg("--key")
            .arg(env.key(cstatns::pki::SUBMITTER))
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cstatns submit");
        children.push((child, output));
    }
    // Kill once half the batches have started, or as soon as one has ended.
    env.wait_for_audit("4 batches started", |_| {
        let records = env.audit_records();
        records.iter().any(|r| r["event"] == "batch_end")
            || records
                .iter()
                .filter(|r| r["event"] == "batch_start")
                .count()
                >= 4
    });
    let st = std::process::Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    server.stop();
    let mut interrupted = 0;
    for (child, output) in children {
        let out = child.wait_with_output().expect("submit ends");
        assert!(
            !cstatns::client::partial_path(&output).exists(),
            "a partial answer left behind"
        );
        if out.status.success() {
            // Finished before the kill: a whole answer.
            let text = std::fs::read_to_string(&output).expect("answer");
            assert_eq!(text.lines().count() as u64, rows + 1);
        } else {
            interrupted += 1;
            assert!(!output.exists(), "{} left behind", output.display());
        }
    }
    assert!(interrupted > 0, "the kill interrupted no batch");
    let record = cstatns::seal::CeremonyRecord::from_json(
        &std::fs::read(env.env.dir.join("ceremony.json")).expect("record"),
    )
    .expect("record");
    let audit = env.env.dir.join("audit");
    cstatns::audit::verify::verify_dir(&audit, &record, None).expect("verifies after kill -9");
    let again = env.serve();
    env.unseal(&again).await;
    let records = env.audit_records();
    let started: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "batch_start")
        .map(|r| r["details"]["batch"].clone())
        .collect();
    let never_ended = started
        .iter()
        .filter(|b| {
            !records
                .iter()
                .any(|r| r["event"] == "batch_end" && &r["details"]["batch"] == *b)
        })
        .count();
    // Every interrupted batch that had started shows as started, never
    // completed (a batch killed before its start record is not in the log).
    assert!(never_ended <= interrupted, "{never_ended} of {interrupted}");
    // Every submit that succeeded has its batch ended (one more may have
    // ended, its client killed off while fetching the receipt).
    assert!(started.len() - never_ended >= 8 - interrupted);
    cstatns::audit::verify::verify_dir(&audit, &record, None).expect("verifies after restart");
}

/// The client flushes a long answer to disk as it comes (`cstatns submit`:
/// every 64 MiB, an fsync on a thread of its own after the parts written);
/// here
/// every 64 KiB, so that a 20,000-row batch (1.5 MB of answer) takes that
/// path, and the answer is still whole, checked line by line, its partial
/// file gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_is_flushed_as_it_comes_and_stays_whole() {
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    let endpoint = env.endpoint(&server, cstatns::pki::SUBMITTER);
    let work = env.tmp.path().join("flushed");
    std::fs::create_dir_all(&work).expect("work dir");
    let (rows, seed) = (20_000, 7_000_000);
    let input = write_batch(&work, "f", rows, seed);
    let output = work.join("f.out");
    let (receipt, early) = submit_syncing(&endpoint, derive_csv(&input, &output), 64 * 1024)
        .await
        .expect("submitted");
    assert_eq!((receipt.records, receipt.ok), (rows, rows));
    // At least one flush before the last (one at a time: how many depends on
    // the disk's speed against the answer's).
    assert!(early >= 1, "no early fsync of a 1.5 MB answer");
    check_answer(&output, "f", rows, seed, 997).expect("the whole answer");
    assert!(!cstatns::client::partial_path(&output).exists());
}

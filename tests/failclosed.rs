//! The traceability log fails closed: a full disk or a read-only log
//! directory makes the real service refuse work and say why in its status,
//! and it resumes by itself once the log is writable again; a `kill -9` in
//! the middle of a batch leaves a log that verifies and shows the batch as
//! started and never completed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::TestEnv;
use cstatns::audit::verify::verify_dir;
use cstatns::seal::CeremonyRecord;

fn nir(i: u64) -> String {
    String::from_utf8(cstatns::nir::synthetic(i).with_key().to_vec()).expect("ASCII")
}

fn batch(n: u64) -> String {
    let mut s = String::from("index,nir\n");
    for i in 0..n {
        s.push_str(&format!("FC-{i},{}\n", nir(i)));
    }
    s
}

fn audit_dir(env: &TestEnv) -> PathBuf {
    env.dir().join("audit")
}

fn record(env: &TestEnv) -> CeremonyRecord {
    CeremonyRecord::from_json(&std::fs::read(env.dir().join("ceremony.json")).expect("record"))
        .expect("valid record")
}

/// Polls the status until the log is `writable` (10 s at most).
async fn wait_writable(
    env: &TestEnv,
    server: &common::ServerProcess,
    writable: bool,
) -> cstatns::server::Status {
    for _ in 0..100 {
        let s = env.status(server).await;
        if s.audit.writable == writable {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the log never became writable={writable}");
}

/// Refused while the log cannot be written, answered again afterwards; the
/// log verifies across the outage and records it.
async fn outage(
    env: &TestEnv,
    server: &common::ServerProcess,
    break_log: impl FnOnce(),
    mend_log: impl FnOnce(),
) {
    let ok = env.derive_csv(server, batch(3)).await;
    assert_eq!(ok.status, 200);
    break_log();
    let refused = env.derive_csv(server, batch(3)).await;
    let (status, code, message) = refused.refusal();
    assert_eq!(
        (status, code.as_str()),
        (503, "audit_unavailable"),
        "{message}"
    );
    assert!(refused.header("retry-after").is_some());
    let s = env.status(server).await;
    assert!(!s.audit.writable);
    assert!(s.audit.error.as_deref().is_some_and(|e| !e.is_empty()));
    mend_log();
    wait_writable(env, server, true).await;
    let again = env.derive_csv(server, batch(3)).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let verified = verify_dir(&audit_dir(env), &record(env), None)
        .expect("the log verifies across the outage");
    assert!(verified.records > 0);
    assert!(env.audit_text().contains("\"event\":\"audit_resumed\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_service_refuse_work_and_it_resumes_by_itself() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let log = audit_dir(&env).join("log.jsonl");
    let saved = env.tmp.path().join("log.saved");
    outage(
        &env,
        &server,
        || {
            // Every write to /dev/full fails with ENOSPC: a full disk.
            std::fs::rename(&log, &saved).expect("move the log aside");
            std::os::unix::fs::symlink("/dev/full", &log).expect("symlink to /dev/full");
        },
        || {
            std::fs::remove_file(&log).expect("remove the symlink");
            std::fs::rename(&saved, &log).expect("put the log back");
        },
    )
    .await;
}

fn run(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd).args(args).output().expect("run");
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Unmounts on drop, so that a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_read_only(dir: &Path) -> Mount {
    let d = dir.to_str().expect("UTF-8 path");
    run("mount", &["--bind", d, d]);
    let m = Mount(dir.to_owned());
    // "Busy" while a file is open for writing through the new mount (a
    // receipt being written, under load): try again between writes.
    for _ in 0..1000 {
        let o = Command::new("mount")
            .args(["-o", "remount,bind,ro", d])
            .output()
            .expect("mount");
        if o.status.success() {
            return m;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    run("mount", &["-o", "remount,bind,ro", d]);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_log_directory_makes_the_service_refuse_work_and_it_resumes_by_itself() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let dir = audit_dir(&env);
    let mount = std::cell::RefCell::new(None);
    outage(
        &env,
        &server,
        || *mount.borrow_mut() = Some(mount_read_only(&dir)),
        || drop(mount.borrow_mut().take()),
    )
    .await;
}

/// 16 submitters send 100-line batches for 5 s; after 1 s, `break_log`
/// makes the log unwritable for 1.5 s (until what it returns is dropped):
/// every answer is whole (and its batch logged completed) or refused 503 or
/// cut off, never a whole answer the log does not account for; the service
/// resumes by itself, and the log verifies across the outage.
async fn outage_under_load<G>(env: std::sync::Arc<TestEnv>, break_log: impl FnOnce(&Path) -> G) {
    let server = std::sync::Arc::new(env.serve());
    env.unseal(&server).await;
    let dir = audit_dir(&env);
    let body = Bytes::from(batch(100));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (env, server, body) = (env.clone(), server.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let id = common::ClientIdentity::Cert {
                cert: env.cert(cstatns::pki::SUBMITTER),
                key: env.key(cstatns::pki::SUBMITTER),
            };
            let (mut whole, mut refused, mut cut) = (0u64, 0u64, 0u64);
            while std::time::Instant::now() < deadline {
                let headers = [("content-type", "text/csv")];
                let ca = env.ca();
                let r = common::https(
                    &server,
                    &ca,
                    &id,
                    "POST",
                    "/v1/cstatns",
                    &headers,
                    body.clone(),
                );
                match r.await {
                    Ok(r) if r.status == 200 => {
                        let text = r.text();
                        let ok = text.lines().skip(1).filter(|l| l.ends_with(",ok")).count();
                        if ok == 100 {
                            whole += 1;
                        } else {
                            cut += 1;
                        }
                    }
                    Ok(r) => {
                        assert_eq!(r.status, 503, "{}", r.text());
                        refused += 1;
                    }
                    Err(_) => cut += 1,
                }
            }
            (whole, refused, cut)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let broken = break_log(&dir);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(broken);
    let (mut whole, mut refused, mut cut) = (0, 0, 0);
    for t in tasks {
        let (w, r, c) = t.await.expect("submitter");
        whole += w;
        refused += r;
        cut += c;
    }
    assert!(
        refused > 0,
        "no batch was refused while the log could not be written"
    );
    assert!(whole > 0);
    wait_writable(&env, &server, true).await;
    let again = env.derive_csv(&server, batch(3)).await;
    assert_eq!(again.status, 200, "resumed");
    let verified = verify_dir(&dir, &record(&env), None).expect("verifies across the outage");
    assert!(verified.records > 0);
    let completed = env
        .audit_records()
        .iter()
        .filter(|r| r["event"] == "batch_end" && r["details"]["outcome"] == "completed")
        .count() as u64;
    // The 3-line batch after the outage is one of them.
    assert_eq!(
        completed,
        whole + 1,
        "every whole answer is logged completed, and nothing else ({cut} cut off)"
    );
    assert!(env.audit_text().contains("\"event\":\"audit_resumed\""));
    // No receipt left half-written by the outage: every line of the
    // receipt files is a whole one.
    for f in std::fs::read_dir(dir.join("receipts")).expect("receipts") {
        let path = f.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.ends_with('\n'),
            "{} ends in a cut line",
            path.display()
        );
        for line in text.lines() {
            assert!(
                serde_json::from_str::<cstatns::receipt::Receipt>(line).is_ok(),
                "{} holds a line that is not a whole receipt",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_log_directory_under_load_fails_closed_and_resumes() {
    outage_under_load(std::sync::Arc::new(TestEnv::new()), mount_read_only).await;
}

/// A file system of its own for a directory, `size` bytes large, holding
/// what the directory held; unmounted on drop (lazily, in case the service
/// still holds a file open in it).
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Tmpfs {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).expect("dir").permissions().mode() & 0o7777;
    let mut held = Vec::new();
    for f in std::fs::read_dir(dir).expect("read dir") {
        let path = f.expect("entry").path();
        assert!(path.is_file(), "a plain file: {}", path.display());
        let perm = std::fs::metadata(&path).expect("metadata").permissions();
        held.push((path.clone(), std::fs::read(&path).expect("read"), perm));
    }
    let d = dir.to_str().expect("UTF-8 path");
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode={mode:o}"),
            "tmpfs",
            d,
        ],
    );
    for (path, bytes, perm) in held {
        std::fs::write(&path, bytes).expect("copy back");
        std::fs::set_permissions(&path, perm).expect("its mode back");
    }
    Tmpfs(dir.to_owned())
}

/// Fills the file system of `dir` to the last byte; the space comes back
/// when it is dropped.
struct Filler(PathBuf);

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn fill(dir: &Path) -> Filler {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    // A 64 KiB write, then single bytes, until ENOSPC.
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
    let _ = f.sync_all();
    Filler(path)
}

/// The log's own file system fills up while 16 submitters send batches: a
/// real full disk (a tmpfs of 64 MiB), not a simulated error. The service
/// fails closed, keeps no half-written record or receipt, and resumes by
/// itself once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_load_fails_closed_and_resumes() {
    let env = std::sync::Arc::new(TestEnv::new());
    // Unmounted before the deployment's directory is removed.
    let _tmpfs = mount_tmpfs(&audit_dir(&env), "64m");
    outage_under_load(env.clone(), fill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_batch_leaves_a_log_that_verifies_with_the_batch_started_never_completed() {
    let env = TestEnv::new();
    let mut server = env.serve();
    env.unseal(&server).await;
    // A batch whose body is still being sent when the server dies.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let id = common::ClientIdentity::Cert {
        cert: env.cert(cstatns::pki::SUBMITTER),
        key: env.key(cstatns::pki::SUBMITTER),
    };
    let ca = env.ca();
    let pid = server.pid().to_string();
    // A declared length: a body without one is read whole first.
    let headers = [
        ("content-type", "text/csv"),
        ("content-length", "1000000000"),
    ];
    let exchange = common::https_channel(&server, &ca, &id, "POST", "/v1/cstatns", &headers, rx);
    let killer = async {
        tx.send(Bytes::from(batch(1_000)))
            .await
            .expect("send the first part");
        // Poll without blocking this task: the exchange runs beside it.
        let mut started = None;
        for _ in 0..200 {
            started = env
                .audit_records()
                .into_iter()
                .find(|r| r["event"] == "batch_start");
            if started.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let started = started.expect("batch_start logged while the body is still coming");
        run("kill", &["-9", &pid]);
        drop(tx);
        started
    };
    let (answer, started) = tokio::join!(exchange, killer);
    assert!(
        answer.is_err()
            || answer
                .as_ref()
                .is_ok_and(|r| r.status != 200 || !r.text().contains("\n")),
        "the batch cannot have been answered in full"
    );
    server.stop(); // reaps the killed process

    let verified =
        verify_dir(&audit_dir(&env), &record(&env), None).expect("the log verifies after kill -9");
    assert!(verified.records >= 6);
    let batch_id = started["details"]["batch"].as_str().expect("batch id");
    let records = env.audit_records();
    assert!(
        !records
            .iter()
            .any(|r| r["event"] == "batch_end" && r["details"]["batch"] == batch_id),
        "a batch killed in flight must not look completed"
    );
    assert!(
        !records.iter().any(|r| r["event"] == "service_stop"),
        "kill -9 leaves no stop record"
    );
    // The killed service's log verifies, so the service starts on it again.
    let mut again = env.serve();
    again.stop();
    verify_dir(&audit_dir(&env), &record(&env), None).expect("verifies after the restart");
}

/// A renewal whose last approval is in flight when the service dies, at
/// several moments: the keyring on disk is the old one or the new one, never
/// a mix; the restarted service is sealed, unseals with the same shares, and
/// answers in the old or the new generation; its log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_renewal_leaves_the_old_keyring_or_the_new_one() {
    use cstatns::seal::{Approval, Operation, SealedKeyring};
    let env = TestEnv::new();
    let keyring = env.dir().join("keyring.json");
    let mut generation = 1;
    let mut renewed = 0;
    for delay_ms in [0u64, 1, 2, 4, 8, 30] {
        let mut server = env.serve();
        env.unseal(&server).await;
        assert_eq!(env.status(&server).await.generation, Some(generation));
        let mut op = env
            .endpoint(&server, cstatns::pki::OPERATOR)
            .connect()
            .await
            .expect("operator connects");
        let listed = op.propose(&Operation::Renew {}).await.expect("proposed");
        let id = listed.proposal.id.clone();
        let digest = listed.proposal.digest();
        for i in 1..=2 {
            let mut c = env
                .endpoint(&server, &cstatns::pki::holder_role(i))
                .connect()
                .await
                .expect("holder connects");
            let approval = Approval {
                digest,
                share: env.share(i),
            };
            c.approve(&id, &approval).await.expect("approval accepted");
        }
        // The third, completing approval, and a kill -9 `delay_ms` later.
        let mut c = env
            .endpoint(&server, &cstatns::pki::holder_role(3))
            .connect()
            .await
            .expect("holder connects");
        let approval = Approval {
            digest,
            share: env.share(3),
        };
        let last = tokio::spawn(async move { c.approve(&id, &approval).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        run("kill", &["-9", &server.pid().to_string()]);
        let answered = last.await.expect("approval task");
        server.stop(); // reaps the killed process

        // Whole and readable: the old keyring or the new one.
        SealedKeyring::from_json(&std::fs::read(&keyring).expect("keyring"))
            .expect("the keyring on disk is whole after kill -9");
        verify_dir(&audit_dir(&env), &record(&env), None).expect("the log verifies after kill -9");
        let server = env.serve();
        let status = env.status(&server).await;
        assert!(status.sealed, "a restarted service is sealed");
        env.unseal(&server).await;
        let now = env.status(&server).await.generation.expect("unsealed");
        assert!(
            now == generation || now == generation + 1,
            "generation {now} after a renewal from {generation} was killed"
        );
        if answered {
            assert_eq!(now, generation + 1, "an answered renewal was on disk");
        }
        if now > generation {
            renewed += 1;
        }
        generation = now;
        drop(server);
    }
    // Not a property, a sign that the moments chosen hit both sides.
    eprintln!("renewals that survived the kill: {renewed} of 6");
}

/// `cstatns ARGS…`: exit status and stdout.
fn cstatns(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_cstatns"))
        .args(args)
        .output()
        .expect("run cstatns");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

/// The attack of the robustness issue in its cleanest form: with the
/// service stopped, the log is cut back to an earlier checkpoint (a valid
/// prefix: it verifies on its own), the service restarts, is unsealed and
/// signs new checkpoints onto the shortened history. The auditor's copy,
/// kept off the host by `audit fetch --follow`, catches it two ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_back_on_the_host_is_caught_by_the_copy_that_left_it() {
    let env = TestEnv::new();
    let mut server = env.serve();
    env.unseal(&server).await;
    let copy = env.tmp.path().join("copy.jsonl");
    let copy_s = copy.to_str().unwrap().to_owned();
    let ca = env.ca();
    let (cert, key) = (
        env.cert(cstatns::pki::AUDITOR),
        env.key(cstatns::pki::AUDITOR),
    );
    let fetch = |url: &str| {
        cstatns(&[
            "audit",
            "fetch",
            "--server",
            url,
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--follow",
            "--rounds",
            "1",
            "-o",
            &copy_s,
        ])
    };
    let ceremony = env.dir().join("ceremony.json");
    let ceremony = ceremony.to_str().unwrap().to_owned();
    let audit = audit_dir(&env);
    let audit_s = audit.to_str().unwrap().to_owned();

    assert_eq!(env.derive_csv(&server, batch(10)).await.status, 200);
    let (code, out) = fetch(&server.url());
    assert_eq!(code, Some(0), "{out}");
    // A second round resumes the copy and appends what is new.
    assert_eq!(env.derive_csv(&server, batch(10)).await.status, 200);
    let (code, out) = fetch(&server.url());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("new records appended"), "{out}");
    let (code, out) = cstatns(&[
        "audit",
        "verify",
        "--ceremony",
        &ceremony,
        "--against",
        &copy_s,
        &audit_s,
    ]);
    assert_eq!(code, Some(0), "{out}");
    // The copy ends with the fetch's own audit_read, not signed yet.
    let (code, out) = cstatns(&[
        "audit",
        "verify",
        "--ceremony",
        &ceremony,
        "--require-signed",
        &copy_s,
    ]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("UNSIGNED TAIL"), "{out}");
    server.stop();

    // Cut back to the first checkpoint: a valid prefix of the chain.
    let log = audit.join("log.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let first_checkpoint = lines
        .iter()
        .position(|l| l.contains("\"event\":\"checkpoint\""))
        .expect("a checkpoint");
    assert!(first_checkpoint + 5 < lines.len());
    std::fs::write(&log, lines[..=first_checkpoint].join("\n") + "\n").unwrap();
    let mut server = env.serve();
    env.unseal(&server).await;
    assert_eq!(env.derive_csv(&server, batch(10)).await.status, 200);
    server.stop();
    // Alone, the shortened log verifies, its new checkpoints signed by the
    // genuine key: only the copy can tell.
    let (code, out) = cstatns(&["audit", "verify", "--ceremony", &ceremony, &audit_s]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cstatns(&[
        "audit",
        "verify",
        "--ceremony",
        &ceremony,
        "--against",
        &copy_s,
        &audit_s,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("TAMPERED"), "{out}");
    let server = env.serve();
    let (code, out) = fetch(&server.url());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("DIVERGED"), "{out}");
}

/// Runs `cstatns serve` on a deployment expected to refuse to start; its
/// exit status and stderr (the test fails if it is still running after 30 s).
fn serve_refused(env: &TestEnv) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cstatns"))
        .arg("serve")
        .arg("--config")
        .arg(&env.env.config)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cstatns serve");
    for _ in 0..600 {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
                .expect("stderr");
            return (status, err);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cstatns serve did not refuse a log that does not verify: it kept running");
}

/// Regression guard (the service once signed whatever log it found): with
/// the service stopped, the last record's hash is replaced by random hex.
/// The service must refuse to start on that log, say why, and add nothing
/// to it; a log that verifies restarts as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_refuses_to_extend_a_log_that_does_not_verify() {
    let env = TestEnv::new();
    let mut server = env.serve();
    env.unseal(&server).await;
    let r = env.derive_csv(&server, batch(10)).await;
    assert_eq!(r.status, 200);
    server.stop();
    // Control: an intact log is verified and extended on restart.
    let mut again = env.serve();
    again.stop();
    verify_dir(&audit_dir(&env), &record(&env), None).expect("the intact log verifies");

    let log = audit_dir(&env).join("log.jsonl");
    let text = std::fs::read_to_string(&log).expect("log");
    let last = text.lines().last().expect("a last record").to_owned();
    let v: serde_json::Value = serde_json::from_str(&last).expect("record");
    let hash = v["hash"].as_str().expect("hash").to_owned();
    // Any value but the real hash will do.
    let forged = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(hash.as_bytes()));
    let tampered = text.replacen(&hash, &forged, 1);
    assert_ne!(tampered, text);
    std::fs::write(&log, &tampered).expect("tamper");

    let (status, stderr) = serve_refused(&env);
    assert_eq!(status.code(), Some(2), "exit status {status}");
    assert!(
        stderr.contains("does not verify") && stderr.contains("hash"),
        "the refusal says why: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        tampered,
        "nothing was appended to (or signed on) the forged log"
    );
}

/// A crash during the first write to a fresh current file (right after a
/// rotation) leaves a file holding only a half-written line: no forgery.
/// The service starts, cuts it off and logs `audit_repaired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_log_file_holding_only_a_half_written_line_is_repaired_not_refused() {
    let env = TestEnv::new();
    let mut server = env.serve();
    env.wait_for_audit("service_start", |r| r["event"] == "service_start");
    server.stop();
    let dir = audit_dir(&env);
    std::fs::rename(dir.join("log.jsonl"), dir.join("log-000001.jsonl")).expect("rotate");
    std::fs::write(dir.join("log.jsonl"), b"{\"seq\":3,\"time\":\"20").expect("half a line");
    let mut again = env.serve();
    again.stop();
    verify_dir(&dir, &record(&env), None).expect("verifies after the repair");
    assert!(env
        .audit_records()
        .iter()
        .any(|r| r["event"] == "audit_repaired"));
}

/// Least privilege: the service refuses to start with its TLS key or its
/// keyring open to other users, and says which file and what to do.
#[test]
fn the_service_refuses_key_files_that_other_users_can_read() {
    use std::os::unix::fs::PermissionsExt;
    for which in ["tls key", "keyring"] {
        let env = TestEnv::new();
        let path = match which {
            "tls key" => env.env.pki.key(cstatns::pki::SERVER),
            _ => env.env.dir.join("keyring.json"),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (status, err) = serve_refused(&env);
        assert_eq!(status.code(), Some(2), "{which}: {err}");
        assert!(
            err.contains("open to other users") && err.contains(&path.display().to_string()),
            "{which}: {err}"
        );
        assert!(
            !env.audit_text().contains("service_start"),
            "{which}: not started"
        );
    }
}

//! Key operations under a quorum, end to end: the real holders' tool
//! (`keyceremony propose / pending / approve / cancel`) against the real
//! service on 127.0.0.1 over mutual TLS, with real share files and each
//! holder's own certificate. The codes of three generations are checked
//! against Python's `hmac` module, over keys read from the keyring file the
//! operations wrote.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cstatns::batch::Operation as BatchOperation;
use cstatns::client::{Endpoint, InputType, Submission};
use cstatns::config::Config;
use cstatns::devenv::{self, DevEnv};
use cstatns::seal::{self, CeremonyRecord, Passphrase, SealedKeyring, Share};
use cstatns::server::Server;

/// `K_1`, imported so that the test knows every key but the renewed ones.
const K1_HEX: &str = "5a1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddee077";

fn keyceremony(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyceremony"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run keyceremony")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(x: PathBuf) -> String {
    x.display().to_string()
}

/// A 3-holder, 2-of-3 throw-away deployment with `K_1` imported.
fn deployment(dir: &Path) -> DevEnv {
    let k1 = dir.join("k1.hex");
    std::fs::write(&k1, format!("{K1_HEX}\n")).unwrap();
    devenv::create(&devenv::Options {
        dir: dir.join("d"),
        holders: 3,
        threshold: 2,
        generations: 1,
        import_key: Some(k1),
    })
    .unwrap()
}

/// The real service, in this process, on a free port of 127.0.0.1.
struct Service {
    rt: tokio::runtime::Runtime,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<Result<(), cstatns::server::StartError>>>,
}

impl Service {
    fn start(env: &DevEnv, tune: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::load(&env.config).unwrap();
        tune(&mut config);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt
            .block_on(Server::bind(config, Some("127.0.0.1:0")))
            .unwrap();
        let url = format!("https://127.0.0.1:{}", server.local_addr().unwrap().port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = rt.spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            rt,
            url,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.rt
            .block_on(self.serving.take().unwrap())
            .unwrap()
            .unwrap();
    }

    fn endpoint(&self, env: &DevEnv, role: &str) -> Endpoint {
        Endpoint {
            server: self.url.clone(),
            ca: env.pki.ca(),
            cert: env.pki.cert(role),
            key: env.pki.key(role),
        }
    }

    fn status(&self, env: &DevEnv) -> cstatns::server::Status {
        let e = self.endpoint(env, cstatns::pki::OPERATOR);
        self.rt
            .block_on(async { e.connect().await?.status().await })
            .unwrap()
    }

    /// `--server --ca --cert --key` for `role`.
    fn args(&self, env: &DevEnv, role: &str) -> Vec<String> {
        vec![
            "--server".into(),
            self.url.clone(),
            "--ca".into(),
            p(env.pki.ca()),
            "--cert".into(),
            p(env.pki.cert(role)),
            "--key".into(),
            p(env.pki.key(role)),
        ]
    }

    fn run(&self, env: &DevEnv, sub: &str, role: &str, rest: &[&str]) -> Output {
        let mut args = vec![sub.to_owned()];
        args.extend(self.args(env, role));
        args.extend(rest.iter().map(|s| (*s).to_owned()));
        keyceremony(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn unseal(&self, env: &DevEnv, holders: &[usize]) {
        for &i in holders {
            let role = format!("holder-{i}");
            let share = p(env.share(i));
            let pass = p(env.pass(i));
            let o = self.run(
                env,
                "unseal",
                &role,
                &["--share", &share, "--passphrase-file", &pass],
            );
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        }
    }

    /// `keyceremony propose renew` as `role`; the operation id.
    fn propose_renew(&self, env: &DevEnv, role: &str) -> String {
        let o = self.run(env, "propose", role, &["renew"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        assert!(out.contains("digest:"), "{out}");
        out.lines().last().unwrap().to_owned()
    }

    /// `keyceremony approve --yes ID` with holder `share_of`'s share, sent
    /// over holder `cert_of`'s certificate.
    fn approve(&self, env: &DevEnv, id: &str, cert_of: usize, share_of: usize) -> Output {
        let share = p(env.share(share_of));
        let pass = p(env.pass(share_of));
        self.run(
            env,
            "approve",
            &format!("holder-{cert_of}"),
            &["--share", &share, "--passphrase-file", &pass, "--yes", id],
        )
    }

    /// `keyceremony pending` as `role`, one JSON object a line.
    fn pending(&self, env: &DevEnv, role: &str) -> Vec<serde_json::Value> {
        self.pending_lines(env, role)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn pending_lines(&self, env: &DevEnv, role: &str) -> Vec<String> {
        let o = self.run(env, "pending", role, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Submits `input` (CSV) with the library client as the submitter;
    /// the answer's text and the receipt's generation.
    fn submit(&self, env: &DevEnv, op: BatchOperation, input: &str) -> (String, u32) {
        let dir = tempfile::tempdir().unwrap();
        let (inp, out) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
        std::fs::write(&inp, input).unwrap();
        let e = self.endpoint(env, cstatns::pki::SUBMITTER);
        let receipt = self
            .rt
            .block_on(cstatns::client::submit(
                &e,
                Submission {
                    operation: op,
                    input: &inp,
                    input_type: InputType::Csv,
                    output: &out,
                    purpose: Some(devenv::DEV_PURPOSE),
                    progress: None,
                },
            ))
            .unwrap();
        (std::fs::read_to_string(&out).unwrap(), receipt.generation)
    }
}

fn share(env: &DevEnv, i: usize) -> Share {
    let pass = Passphrase::from_file(env.pass(i)).unwrap();
    Share::decrypt_file_bytes(&std::fs::read(env.share(i)).unwrap(), &pass).unwrap()
}

fn records(env: &DevEnv) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.dir.join("audit").join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_event<'a>(all: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|r| r["event"] == event).collect()
}

/// The generation keys in the keyring file, opened here with two shares.
fn keys_on_disk(env: &DevEnv) -> Vec<String> {
    let config = Config::load(&env.config).unwrap();
    let record = CeremonyRecord::from_json(&std::fs::read(&config.ceremony).unwrap()).unwrap();
    let sealed = SealedKeyring::from_json(&std::fs::read(&config.keyring).unwrap()).unwrap();
    let master = seal::combine(&record, &[share(env, 1), share(env, 3)]).unwrap();
    let keyring = record.open_keyring(&sealed, &master).unwrap();
    keyring
        .generations
        .iter()
        .map(|k| hex::encode(k.expose()))
        .collect()
}

/// The digest of the proposal in a `pending` line, as docs/key-operations.md
/// says any tool computes it: here Python's `json` and `hashlib`.
fn python_digest(pending_line: &str) -> String {
    let script = r#"
import hashlib, json, sys
p = json.loads(sys.stdin.read())["proposal"]
m = b"cstatns operation v1\n" + json.dumps(p, separators=(",", ":")).encode()
print(hashlib.sha256(m).hexdigest())
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), pending_line.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// For each body, `C_1 … C_G` in hex, computed by Python's `hmac` module.
fn python_chain(keys: &[String], bodies: &[String]) -> Vec<Vec<String>> {
    let script = r#"
import hmac, hashlib, sys
lines = sys.stdin.read().split("\n")
keys = [bytes.fromhex(k) for k in lines[0].split()]
for body in lines[1:]:
    if not body:
        continue
    code, out = body.encode("ascii"), []
    for k in keys:
        code = hmac.new(k, code, hashlib.sha256).digest()
        out.append(code.hex())
    print(" ".join(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (the independent HMAC)");
    let input = format!("{}\n{}\n", keys.join(" "), bodies.join("\n"));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect()
}

fn codes_of(answer: &str) -> Vec<(String, String)> {
    answer
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[2], "ok", "{l}");
            (f[0].to_owned(), f[1].to_owned())
        })
        .collect()
}

#[test]
fn renewals_by_quorum_reach_generation_3_and_codes_match_python_hmac() {
    let tmp = tempfile::tempdir().unwrap();
    let env = deployment(tmp.path());
    let keyring_file = Config::load(&env.config).unwrap().keyring;
    let service = Service::start(&env, |_| {});
    service.unseal(&env, &[1, 2]);
    let before = service.status(&env);
    assert_eq!(before.generation, Some(1));
    let schedule = before.renewal.clone().unwrap();
    assert_eq!(schedule.standing, cstatns::renewal::Standing::Current);

    // The operator proposes; holder-3 sees it, with the digest recomputed.
    let a = service.propose_renew(&env, cstatns::pki::OPERATOR);
    let listed = service.pending(&env, "holder-3");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["proposal"]["id"], a.as_str());
    assert_eq!(listed[0]["proposal"]["operation"]["kind"], "renew");
    assert_eq!(listed[0]["proposal"]["proposed_by"], "operator");
    assert_eq!(listed[0]["approvals_needed"], 2);
    let digest_a = listed[0]["digest"].as_str().unwrap().to_owned();
    let line = &service.pending_lines(&env, "holder-3")[0];
    assert_eq!(
        python_digest(line),
        digest_a,
        "the digest, recomputed by Python"
    );
    // A submitter may not even look.
    let o = service.run(&env, "pending", cstatns::pki::SUBMITTER, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let keyring_before = std::fs::read(&keyring_file).unwrap();
    // Refused, each naming the holder, and changing nothing:
    // holder-1's share over holder-2's certificate;
    let o = service.approve(&env, &a, 2, 1);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("holder-1") && text(&o).contains("holder-2"),
        "{}",
        text(&o)
    );
    // an approval bound to another operation's digest;
    let b = service.propose_renew(&env, "holder-3");
    let approval = seal::Approval {
        digest: hex::decode(&digest_a).unwrap().try_into().unwrap(),
        share: share(&env, 1),
    };
    let e = service.endpoint(&env, "holder-1");
    let refused = service
        .rt
        .block_on(async { e.connect().await?.approve(&b, &approval).await })
        .unwrap_err();
    assert!(refused.to_string().contains("holder-1"), "{refused}");
    assert!(refused.to_string().contains("digest"), "{refused}");
    // a share that fails Feldman's check (its value changed by one);
    let mut wire: serde_json::Value = serde_json::from_str(&share(&env, 1).to_wire_json()).unwrap();
    let value = wire["value"].as_str().unwrap().to_owned();
    let last = value.chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    wire["value"] = format!("{}{flipped}", &value[..value.len() - 1]).into();
    let forged = Share::from_wire_json(wire.to_string().as_bytes()).unwrap();
    let approval = seal::Approval {
        digest: hex::decode(&digest_a).unwrap().try_into().unwrap(),
        share: forged,
    };
    let refused = service
        .rt
        .block_on(async { e.connect().await?.approve(&a, &approval).await })
        .unwrap_err();
    assert!(refused.to_string().contains("holder-1"), "{refused}");
    // an unknown operation.
    let o = service.approve(&env, &"0".repeat(32), 1, 1);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(std::fs::read(&keyring_file).unwrap(), keyring_before);
    assert_eq!(service.status(&env).generation, Some(1));

    // holder-1 approves; a second approval of holder-1 is refused.
    let o = service.approve(&env, &a, 1, 1);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("1 more approval"), "{}", text(&o));
    assert!(
        text(&o).contains(&digest_a),
        "the digest is shown: {}",
        text(&o)
    );
    let o = service.approve(&env, &a, 1, 1);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("already approved"), "{}", text(&o));
    assert_eq!(std::fs::read(&keyring_file).unwrap(), keyring_before);
    let listed = service.pending(&env, cstatns::pki::OPERATOR);
    let la = listed.iter().find(|l| l["proposal"]["id"] == a.as_str());
    assert_eq!(la.unwrap()["approved_by"], serde_json::json!(["holder-1"]));

    // holder-2 completes the quorum: generation 2, written to disk.
    let o = service.approve(&env, &a, 2, 2);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("generation 2"), "{}", text(&o));
    assert_ne!(std::fs::read(&keyring_file).unwrap(), keyring_before);
    assert_eq!(service.status(&env).generation, Some(2));
    // It ran once: approving it again finds nothing.
    let o = service.approve(&env, &a, 3, 3);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // B is cancelled, then cannot be approved.
    let o = service.run(&env, "cancel", "holder-1", &[&b]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(service.pending(&env, "holder-1").is_empty());
    let o = service.approve(&env, &b, 3, 3);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // A second renewal, approved by holders 3 and 1: generation 3.
    let c = service.propose_renew(&env, "holder-2");
    let o = service.approve(&env, &c, 3, 3);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = service.approve(&env, &c, 1, 1);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("generation 3"), "{}", text(&o));

    let status = service.status(&env);
    assert_eq!(status.generation, Some(3));
    assert_eq!(status.generations.len(), 3);
    assert!(status.generations.iter().all(|g| g.created.is_some()));
    let schedule = status.renewal.unwrap();
    assert_eq!(
        Some(&schedule.last_renewal),
        status.generations[2].created.as_ref()
    );
    // Five years after the last renewal.
    let last_year: i32 = schedule.last_renewal[..4].parse().unwrap();
    let due_year: i32 = schedule.due[..4].parse().unwrap();
    assert_eq!(due_year - last_year, 5, "{schedule:?}");

    // The keys the operations wrote, and codes from Python's hmac.
    let keys = keys_on_disk(&env);
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0], K1_HEX, "K_1 is kept");
    assert!(keys[1] != keys[0] && keys[2] != keys[1], "fresh keys");
    let bodies: Vec<String> = (0..200u64)
        .map(|s| String::from_utf8(cstatns::nir::synthetic(s).body().to_vec()).unwrap())
        .collect();
    let expected = python_chain(&keys, &bodies);
    let input: String = std::iter::once("index,nir\n".to_owned())
        .chain(
            bodies
                .iter()
                .enumerate()
                .map(|(i, b)| format!("r{i},{b}\n")),
        )
        .collect();
    let (answer, generation) = service.submit(&env, BatchOperation::Derive, &input);
    assert_eq!(generation, 3);
    let got = codes_of(&answer);
    assert_eq!(got.len(), bodies.len());
    for (i, (index, code)) in got.iter().enumerate() {
        assert_eq!(index, &format!("r{i}"));
        assert_eq!(code, &expected[i][2], "C_3 of body {i}");
    }
    // Generation-1 and generation-2 codes lifted to generation 3.
    let mut renewal = "index,cstatns,generation\n".to_owned();
    for (i, e) in expected.iter().enumerate() {
        renewal.push_str(&format!("a{i},{},1\nb{i},{},2\n", e[0], e[1]));
    }
    let (answer, generation) = service.submit(&env, BatchOperation::Renew, &renewal);
    assert_eq!(generation, 3);
    let got = codes_of(&answer);
    assert_eq!(got.len(), 2 * bodies.len());
    for (index, code) in got {
        let i: usize = index[1..].parse().unwrap();
        assert_eq!(code, expected[i][2], "{index} lifted to C_3");
    }

    // The log: every step, the refusals named, no share, and it verifies.
    let all = records(&env);
    assert_eq!(of_event(&all, "operation_proposed").len(), 3);
    let approvals = of_event(&all, "operation_approval");
    let refused: Vec<&str> = approvals
        .iter()
        .filter(|r| r["details"]["valid"] == false)
        .map(|r| r["details"]["reason"].as_str().unwrap())
        .collect();
    for reason in [
        "wrong_certificate",
        "digest_mismatch",
        "verification_failed",
        "duplicate",
    ] {
        assert!(refused.contains(&reason), "{reason} in {refused:?}");
    }
    assert_eq!(
        approvals
            .iter()
            .filter(|r| r["details"]["valid"] == true)
            .count(),
        4,
        "four valid approvals"
    );
    assert_eq!(of_event(&all, "operation_executed").len(), 2);
    assert_eq!(of_event(&all, "operation_cancelled").len(), 1);
    let renewed = of_event(&all, "key_renewed");
    assert_eq!(renewed.len(), 2);
    assert_eq!(renewed[1]["details"]["generation"], 3);
    assert_eq!(renewed[1]["details"]["renewal_due"], schedule.due.as_str());
    let text_log = std::fs::read_to_string(env.dir.join("audit").join("log.jsonl")).unwrap();
    for k in &keys {
        assert!(!text_log.contains(k.as_str()), "a key in the log");
    }
    assert!(!text_log.contains(&value), "a share in the log");

    // A restart forgets nothing of the keys: unsealed by holders 2 and 3,
    // the service answers in generation 3.
    service.stop();
    let service = Service::start(&env, |_| {});
    service.unseal(&env, &[2, 3]);
    assert_eq!(service.status(&env).generation, Some(3));
    let (answer, generation) = service.submit(
        &env,
        BatchOperation::Derive,
        &format!("index,nir\nx,{}\n", bodies[0]),
    );
    assert_eq!(generation, 3);
    assert_eq!(
        codes_of(&answer),
        [("x".to_owned(), expected[0][2].clone())]
    );
    service.stop();

    let config = Config::load(&env.config).unwrap();
    let record = CeremonyRecord::from_json(&std::fs::read(&config.ceremony).unwrap()).unwrap();
    cstatns::audit::verify::verify_dir(&config.audit_dir, &record, None).expect("the log verifies");
}

#[test]
fn an_operation_expires_and_an_overdue_key_warns_on_every_response() {
    let tmp = tempfile::tempdir().unwrap();
    let env = deployment(tmp.path());
    // Due at once (period 0), proposals live 1 s.
    let service = Service::start(&env, |c| {
        c.renewal_period_years = 0;
        c.operation_ttl_seconds = 1;
    });
    service.unseal(&env, &[1, 3]);
    let status = service.status(&env);
    assert_eq!(
        status.renewal.unwrap().standing,
        cstatns::renewal::Standing::Overdue
    );
    let e = service.endpoint(&env, cstatns::pki::SUBMITTER);
    let warning = service.rt.block_on(async {
        let mut c = e.connect().await.unwrap();
        c.status().await.unwrap();
        c.renewal_warning().map(str::to_owned)
    });
    let warning = warning.expect("an overdue key puts a warning on every response");
    assert!(warning.contains("overdue"), "{warning}");
    let due = of_event(&records(&env), "renewal_due")
        .last()
        .copied()
        .cloned()
        .expect("renewal_due logged at unseal");
    assert_eq!(due["details"]["overdue"], true);

    let id = service.propose_renew(&env, "holder-1");
    let o = service.approve(&env, &id, 1, 1);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(service.pending(&env, "holder-2").is_empty(), "expired");
    let o = service.approve(&env, &id, 2, 2);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(service.status(&env).generation, Some(1));
    let all = records(&env);
    let expired = of_event(&all, "operation_expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["details"]["approvals"], 1);
    service.stop();
}

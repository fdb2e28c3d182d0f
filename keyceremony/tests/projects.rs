//! Research projects (CSpeNS) end to end: created and destroyed by a quorum
//! with the real `keyceremony`, batches from the allowed submitter only
//! answered without codes, the `index,cspens` table held only encrypted to
//! the matching body and fetched once by its certificate, and the key
//! destroyed without anyone's action when the end date begins, in memory
//! and in the keyring file (opened here with the master secret).
//!
//! In its own test binary: it moves the projects' calendar forward
//! (`cstatns::seal::advance_project_calendar`, a dev-kit switch), which is
//! global to the process.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::str::FromStr;
use std::time::Duration;

use cstatns::config::Config;
use cstatns::seal::{self, CeremonyRecord, SealedKeyring};
use support::*;

const PROJECT: &str = "cohort-2027";

/// A directory bind-mounted read-only over itself (root only, as CI runs),
/// unmounted on drop.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn mount(dir: &std::path::Path) -> Self {
        let d = dir.to_str().unwrap();
        let run = |args: &[&str]| {
            std::process::Command::new("mount")
                .args(args)
                .status()
                .unwrap()
                .success()
        };
        assert!(run(&["--bind", d, d]), "bind mount (root only)");
        let me = Self(dir.to_owned());
        // "Busy" while a file is open for writing through the new mount.
        for _ in 0..1000 {
            if run(&["-o", "remount,bind,ro", d]) {
                return me;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("cannot remount {d} read-only");
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
const PURPOSE: &str = "research-cohort";

fn in_days(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `keyceremony propose … project-create` as the operator, with `extra`
/// overriding the defaults; the output.
fn propose_project(
    service: &Service,
    env: &cstatns::devenv::DevEnv,
    project: &str,
    end_date: &str,
    submitter: &str,
    recipient: &str,
) -> std::process::Output {
    let cert = p(env.pki.cert(cstatns::pki::MATCHER));
    service.run(
        env,
        "propose",
        cstatns::pki::OPERATOR,
        &[
            "project-create",
            "--project",
            project,
            "--purpose",
            PURPOSE,
            "--end-date",
            end_date,
            "--submitter",
            submitter,
            "--matcher-cert",
            &cert,
            "--matcher-recipient",
            recipient,
        ],
    )
}

fn approve_all(service: &Service, env: &cstatns::devenv::DevEnv, id: &str) -> String {
    let o = service.approve(env, id, 1, 1);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = service.approve(env, id, 3, 3);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    text(&o)
}

/// The project chains in the keyring file, opened with two shares.
fn projects_on_disk(env: &cstatns::devenv::DevEnv) -> Vec<(String, Vec<String>)> {
    let config = Config::load(&env.config).unwrap();
    let record = CeremonyRecord::from_json(&std::fs::read(&config.ceremony).unwrap()).unwrap();
    let sealed = SealedKeyring::from_json(&std::fs::read(&config.keyring).unwrap()).unwrap();
    let master = seal::combine(&record, &[share(env, 2), share(env, 3)]).unwrap();
    let keyring = record.open_keyring(&sealed, &master).unwrap();
    keyring
        .projects
        .iter()
        .map(|p| {
            let keys = p
                .generations
                .iter()
                .map(|k| hex::encode(k.expose()))
                .collect();
            (p.id.clone(), keys)
        })
        .collect()
}

#[test]
fn a_research_project_from_its_quorum_to_its_end_date() {
    let tmp = tempfile::tempdir().unwrap();
    let env = deployment(tmp.path());
    let service = Service::start(&env, |_| {});
    service.unseal(&env, &[1, 2]);
    let recipient = env.matcher_recipient().unwrap();

    // Impossible parameters are refused before any holder is asked.
    let o = propose_project(
        &service,
        &env,
        PROJECT,
        &in_days(0),
        "submitter",
        &recipient,
    );
    assert_eq!(o.status.code(), Some(1), "end date today: {}", text(&o));
    assert!(text(&o).contains("end date"), "{}", text(&o));
    let o = propose_project(&service, &env, PROJECT, &in_days(30), "nobody", &recipient);
    assert_eq!(o.status.code(), Some(1), "unknown submitter: {}", text(&o));
    let o = propose_project(
        &service,
        &env,
        PROJECT,
        &in_days(30),
        "submitter",
        "age1nope",
    );
    assert_eq!(o.status.code(), Some(1), "bad recipient: {}", text(&o));
    assert!(service.pending(&env, "holder-1").is_empty());

    // Created by two holders.
    let o = propose_project(
        &service,
        &env,
        PROJECT,
        &in_days(30),
        "submitter",
        &recipient,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(out.contains("create research project cohort-2027"), "{out}");
    let id = out.lines().last().unwrap().to_owned();
    approve_all(&service, &env, &id);
    let status = service.status(&env);
    assert_eq!(status.projects.len(), 1);
    assert_eq!(status.projects[0].project, PROJECT);
    assert_eq!(status.projects[0].end_date, in_days(30));
    let on_disk = projects_on_disk(&env);
    assert_eq!(on_disk.len(), 1);
    let project_key = on_disk[0].1[0].clone();

    // A batch: statuses to the submitter, never a code.
    let bodies: Vec<String> = (0..50u64)
        .map(|s| String::from_utf8(cstatns::nir::synthetic(s).body().to_vec()).unwrap())
        .collect();
    let mut input = "index,nir\n".to_owned();
    for (i, b) in bodies.iter().enumerate() {
        input.push_str(&format!("r{i},{b}\n"));
    }
    input.push_str("bad,295109912611192\n");
    let (answer, receipt) = service.submit_project(&env, PROJECT, &input).unwrap();
    assert!(answer.starts_with("index,status\n"), "{answer}");
    assert_eq!(answer.lines().count(), 1 + bodies.len() + 1);
    assert!(answer.contains("\nbad,invalid_key\n"), "{answer}");
    assert!(
        !answer.split([',', '\n']).any(|f| f.len() == 64),
        "no code reaches the submitter"
    );
    assert_eq!(receipt.operation, "cspens");
    assert_eq!((receipt.records, receipt.ok), (51, 50));
    // An unknown project.
    let refused = service.submit_project(&env, "no-such", &input).unwrap_err();
    assert!(
        refused.to_string().contains("research project"),
        "{refused}"
    );

    // The matching body alone fetches it, once.
    let fetch = |role: &str| {
        let e = service.endpoint(&env, role);
        let batch = receipt.batch.clone();
        service.rt.block_on(async move {
            let mut got = Vec::new();
            e.connect()
                .await?
                .fetch_result(PROJECT, &batch, &mut got)
                .await
                .map(|_| got)
        })
    };
    let refused = fetch(cstatns::pki::AUDITOR).unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    // Fail closed: while the log cannot record the hand-over, no byte of
    // the result leaves (503), and it stays for another fetch.
    let config = Config::load(&env.config).unwrap();
    {
        let _read_only = ReadOnly::mount(&config.audit_dir);
        match fetch(cstatns::pki::MATCHER) {
            Err(e) => assert!(e.to_string().contains("503"), "{e}"),
            Ok(bytes) => panic!("{} bytes handed over unlogged", bytes.len()),
        }
    }
    let kept: Vec<_> = std::fs::read_dir(config.results_dir().join(PROJECT))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        kept.iter().any(|f| f.ends_with(".age")),
        "put back for another fetch: {kept:?}"
    );
    // The log writable again, the service takes it back by itself.
    let mut encrypted = None;
    for _ in 0..100 {
        match fetch(cstatns::pki::MATCHER) {
            Ok(b) => {
                encrypted = Some(b);
                break;
            }
            // 503 until the service finds its log writable again (or a
            // transfer broken if the log is still refusing).
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let encrypted = encrypted.expect("fetched once the log is back");
    let again = fetch(cstatns::pki::MATCHER).unwrap_err();
    assert!(again.to_string().contains("fetched already"), "{again}");
    let results_dir = Config::load(&env.config).unwrap().results_dir();
    let left: Vec<_> = std::fs::read_dir(results_dir.join(PROJECT))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "nothing of it stays on disk: {left:?}");
    // It opens with the matching body's key only, and holds CSpeNS codes:
    // the same construction as CStatNS under the project's own key.
    let identity = std::fs::read_to_string(env.matcher_identity()).unwrap();
    let identity = age::x25519::Identity::from_str(identity.trim()).unwrap();
    let mut table = String::new();
    age::Decryptor::new(&encrypted[..])
        .unwrap()
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap()
        .read_to_string(&mut table)
        .unwrap();
    let expected = python_chain(std::slice::from_ref(&project_key), &bodies);
    let mut want = "index,cspens\n".to_owned();
    for (i, e) in expected.iter().enumerate() {
        want.push_str(&format!("r{i},{}\n", e[0]));
    }
    assert_eq!(table, want);
    // Not the CStatNS of the same NIR.
    let cstatns = python_chain(&[K1_HEX.to_owned()], &bodies[..1]);
    assert_ne!(cstatns[0][0], expected[0][0]);

    // The project's key is renewed by a quorum; its matching body lifts
    // its generation-1 CSpeNS to generation 2 (and only it may).
    let o = service.run(
        &env,
        "propose",
        "holder-1",
        &["project-renew", "--project", PROJECT],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    approve_all(
        &service,
        &env,
        String::from_utf8(o.stdout).unwrap().lines().last().unwrap(),
    );
    assert_eq!(service.status(&env).projects[0].generation, 2);
    let keys = projects_on_disk(&env)[0].1.clone();
    assert_eq!((keys.len(), &keys[0]), (2, &project_key));
    let lifted = python_chain(&keys, &bodies);
    let mut renewal = "index,cstatns,generation\n".to_owned();
    for (i, e) in expected.iter().enumerate() {
        renewal.push_str(&format!("r{i},{},1\n", e[0]));
    }
    let renew_as = |role: &str| {
        let dir = tempfile::tempdir().unwrap();
        let (inp, out) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
        std::fs::write(&inp, &renewal).unwrap();
        let e = service.endpoint(&env, role);
        service
            .rt
            .block_on(cstatns::client::submit(
                &e,
                cstatns::client::Submission {
                    operation: cstatns::batch::Operation::Renew,
                    input: &inp,
                    input_type: cstatns::client::InputType::Csv,
                    output: &out,
                    purpose: None,
                    project: Some(PROJECT),
                    progress: None,
                },
            ))
            .map(|r| (std::fs::read_to_string(&out).unwrap(), r))
    };
    assert!(
        renew_as(cstatns::pki::SUBMITTER).is_err(),
        "only the matching body renews"
    );
    let (answer, receipt) = renew_as(cstatns::pki::MATCHER).unwrap();
    assert_eq!(receipt.generation, 2);
    for (i, (_, code)) in codes_of(&answer).iter().enumerate() {
        assert_eq!(
            code, &lifted[i][1],
            "CSpeNS of body {i} lifted to generation 2"
        );
    }

    // A second project, destroyed by a quorum.
    let o = propose_project(
        &service,
        &env,
        "short-lived",
        &in_days(10),
        "submitter",
        &recipient,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    approve_all(
        &service,
        &env,
        String::from_utf8(o.stdout).unwrap().lines().last().unwrap(),
    );
    assert_eq!(service.status(&env).projects.len(), 2);
    let o = service.run(
        &env,
        "propose",
        "holder-2",
        &["project-destroy", "--project", "short-lived"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    approve_all(
        &service,
        &env,
        String::from_utf8(o.stdout).unwrap().lines().last().unwrap(),
    );
    assert_eq!(service.status(&env).projects.len(), 1);
    assert_eq!(projects_on_disk(&env).len(), 1);

    // The end date comes: the key goes without anyone's action.
    seal::advance_project_calendar(30);
    let mut gone = false;
    for _ in 0..100 {
        if service.status(&env).projects.is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone, "the project's key is destroyed at its end date");
    assert!(
        projects_on_disk(&env).is_empty(),
        "the keyring file no longer holds it"
    );
    let refused = service.submit_project(&env, PROJECT, &input).unwrap_err();
    assert!(
        refused.to_string().contains("research project"),
        "{refused}"
    );

    let all = records(&env);
    let destroyed: Vec<_> = of_event(&all, "project_key_destroyed")
        .iter()
        .map(|r| {
            (
                r["details"]["project"].clone(),
                r["details"]["reason"].clone(),
            )
        })
        .collect();
    assert!(
        destroyed.contains(&(PROJECT.into(), "end_date".into())),
        "{destroyed:?}"
    );
    assert!(
        destroyed.contains(&("short-lived".into(), "operation".into())),
        "{destroyed:?}"
    );
    assert_eq!(of_event(&all, "project_key_created").len(), 2);
    assert_eq!(of_event(&all, "project_result_fetched").len(), 1);
    let log = std::fs::read_to_string(env.dir.join("audit").join("log.jsonl")).unwrap();
    assert!(!log.contains(&project_key), "a project key in the log");
    assert!(!log.contains(&expected[0][0]), "a CSpeNS in the log");

    service.stop();
    let config = Config::load(&env.config).unwrap();
    let record = CeremonyRecord::from_json(&std::fs::read(&config.ceremony).unwrap()).unwrap();
    cstatns::audit::verify::verify_dir(&config.audit_dir, &record, None).expect("the log verifies");
}

//! Key operations under a quorum, end to end: the real holders' tool
//! (`keyceremony propose / pending / approve / cancel`) against the real
//! service on 127.0.0.1 over mutual TLS, with real share files and each
//! holder's own certificate. The codes of three generations are checked
//! against Python's `hmac` module, over keys read from the keyring file the
//! operations wrote.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cstatns::batch::Operation as BatchOperation;
use cstatns::config::Config;
use cstatns::seal::{self, CeremonyRecord, Share};
use support::*;

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
    // Due at once (period 0), proposals live 5 s: long enough for the first
    // approval (the holder's tool opens its share with its passphrase, a
    // slow key derivation) even on a loaded machine.
    let service = Service::start(&env, |c| {
        c.renewal_period_years = 0;
        c.operation_ttl_seconds = 5;
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
    std::thread::sleep(Duration::from_millis(6500));
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

/// `keyceremony reshare` with `extra` arguments, into `out`; new
/// passphrases from `pass_dir`, current ones from `old_pass`.
fn reshare(
    record: &Path,
    keyring: &Path,
    shares: &[PathBuf],
    old_pass: &Path,
    out: &Path,
    pass_dir: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args: Vec<String> = vec![
        "reshare".into(),
        "--record".into(),
        p(record.to_owned()),
        "--keyring".into(),
        p(keyring.to_owned()),
        "--old-passphrase-dir".into(),
        p(old_pass.to_owned()),
        "--out".into(),
        p(out.to_owned()),
        "--passphrase-dir".into(),
        p(pass_dir.to_owned()),
    ];
    for s in shares {
        args.push("--share".into());
        args.push(p(s.clone()));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    keyceremony(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Why the service refuses to start on `config`.
fn service_refused(config: Config) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    match rt.block_on(cstatns::server::Server::bind(config, Some("127.0.0.1:0"))) {
        Ok(_) => panic!("the service started"),
        Err(e) => e.to_string(),
    }
}

/// `keyceremony unseal` with a given share file and passphrase file, over
/// holder `cert_of`'s certificate.
fn unseal_with(
    service: &Service,
    env: &cstatns::devenv::DevEnv,
    cert_of: usize,
    share: &Path,
    pass: &Path,
) -> std::process::Output {
    let (share, pass) = (p(share.to_owned()), p(pass.to_owned()));
    service.run(
        env,
        "unseal",
        &format!("holder-{cert_of}"),
        &["--share", &share, "--passphrase-file", &pass],
    )
}

#[test]
fn a_resharing_revokes_a_holder_and_old_shares_open_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    let env = deployment(tmp.path());
    let config = Config::load(&env.config).unwrap();
    let old_record_bytes = std::fs::read(&config.ceremony).unwrap();
    let old_record = CeremonyRecord::from_json(&old_record_bytes).unwrap();
    let pass_dir = tmp.path().join("new-pass");
    std::fs::create_dir(&pass_dir).unwrap();
    for i in 1..=3 {
        std::fs::write(
            pass_dir.join(format!("holder-{i}.pass")),
            format!("the new passphrase of holder {i}\n"),
        )
        .unwrap();
    }

    // Offline: holders 1 and 2 revoke holder-3.
    let out = tmp.path().join("rev2");
    let o = reshare(
        &config.ceremony,
        &config.keyring,
        &[env.share(1), env.share(2)],
        &env.dir.join("shares"),
        &out,
        &pass_dir,
        &["--revoke", "holder-3"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!out.join("shares/holder-3.share").exists());
    let new_record =
        CeremonyRecord::from_json(&std::fs::read(out.join("ceremony.json")).unwrap()).unwrap();
    new_record.verify_signature().unwrap();
    assert_eq!(new_record.revision(), 2);
    assert_eq!(
        new_record.previous_hex(),
        Some(old_record.digest_hex().unwrap().as_str())
    );
    assert_eq!(new_record.ceremony_id(), old_record.ceremony_id());
    assert_eq!(
        new_record.log_public_key_hex(),
        old_record.log_public_key_hex()
    );
    assert_eq!(new_record.holders().len(), 2);
    // The old secret does not open the new keyring.
    let old_master = seal::combine(&old_record, &[share(&env, 1), share(&env, 3)]).unwrap();
    let new_sealed =
        cstatns::seal::SealedKeyring::from_json(&std::fs::read(out.join("keyring.json")).unwrap())
            .unwrap();
    assert!(old_record.open_keyring(&new_sealed, &old_master).is_err());
    // Without t shares of the current ceremony, nothing is made.
    let o = reshare(
        &config.ceremony,
        &config.keyring,
        &[env.share(1)],
        &env.dir.join("shares"),
        &tmp.path().join("nope"),
        &pass_dir,
        &["--rotate"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // Installed with the service stopped: both files together.
    std::fs::copy(out.join("ceremony.json"), &config.ceremony).unwrap();
    std::fs::copy(out.join("keyring.json"), &config.keyring).unwrap();
    // The revoked holder keeps no role: the service will not start while
    // its configuration still grants one.
    let with_role = Config::load(&env.config).unwrap();
    let refused = service_refused(with_role);
    assert!(refused.contains("holder-3"), "{refused}");
    let revoked = |c: &mut Config| c.clients.retain(|e| e.name != "holder-3");
    let service = Service::start(&env, revoked);
    // Old shares, the revoked holder's included, are refused.
    for i in [3, 1] {
        let o = unseal_with(&service, &env, i, &env.share(i), &env.pass(i));
        assert_eq!(
            o.status.code(),
            Some(1),
            "old share of holder-{i}: {}",
            text(&o)
        );
    }
    for i in [1, 2] {
        let o = unseal_with(
            &service,
            &env,
            i,
            &out.join(format!("shares/holder-{i}.share")),
            &pass_dir.join(format!("holder-{i}.pass")),
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    assert_eq!(service.status(&env).generation, Some(1));
    // Same keys, same codes: the re-sharing changed who holds S, not K.
    let bodies: Vec<String> = (0..20u64)
        .map(|s| String::from_utf8(cstatns::nir::synthetic(s).body().to_vec()).unwrap())
        .collect();
    let expected = python_chain(&[K1_HEX.to_owned()], &bodies);
    let input: String = std::iter::once("index,nir\n".to_owned())
        .chain(
            bodies
                .iter()
                .enumerate()
                .map(|(i, b)| format!("r{i},{b}\n")),
        )
        .collect();
    let (answer, _) = service.submit(&env, BatchOperation::Derive, &input);
    for (i, (_, code)) in codes_of(&answer).iter().enumerate() {
        assert_eq!(code, &expected[i][0]);
    }
    let all = records(&env);
    let resharing = of_event(&all, "resharing");
    assert_eq!(resharing.len(), 1, "the re-sharing is logged at start");
    assert_eq!(resharing[0]["details"]["revision"], 2);
    assert_eq!(
        resharing[0]["details"]["holders"],
        serde_json::json!(["holder-1", "holder-2"])
    );
    service.stop();

    // A master rotation with a renewal in the same step, from revision 2.
    let out3 = tmp.path().join("rev3");
    let rev2_pass = tmp.path().join("rev2-pass");
    std::fs::create_dir(&rev2_pass).unwrap();
    for i in [1, 2] {
        std::fs::copy(
            pass_dir.join(format!("holder-{i}.pass")),
            rev2_pass.join(format!("holder-{i}.pass")),
        )
        .unwrap();
    }
    let o = reshare(
        &config.ceremony,
        &config.keyring,
        &[
            out.join("shares/holder-1.share"),
            out.join("shares/holder-2.share"),
        ],
        &rev2_pass,
        &out3,
        &pass_dir,
        &["--rotate", "--renew"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Going back to an older revision (and its shares) is refused.
    let rev2_record = std::fs::read(&config.ceremony).unwrap();
    std::fs::write(&config.ceremony, &old_record_bytes).unwrap();
    let mut old_config = Config::load(&env.config).unwrap();
    revoked(&mut old_config);
    let refused = service_refused(old_config);
    assert!(refused.contains("revision"), "{refused}");
    std::fs::write(&config.ceremony, &rev2_record).unwrap();
    std::fs::copy(out3.join("ceremony.json"), &config.ceremony).unwrap();
    std::fs::copy(out3.join("keyring.json"), &config.keyring).unwrap();
    let service = Service::start(&env, revoked);
    for i in [1, 2] {
        let o = unseal_with(
            &service,
            &env,
            i,
            &out3.join(format!("shares/holder-{i}.share")),
            &pass_dir.join(format!("holder-{i}.pass")),
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    assert_eq!(
        service.status(&env).generation,
        Some(2),
        "renewed in the same step"
    );
    service.stop();
    let record = CeremonyRecord::from_json(&std::fs::read(&config.ceremony).unwrap()).unwrap();
    assert_eq!(record.revision(), 3);
    cstatns::audit::verify::verify_dir(&config.audit_dir, &record, None)
        .expect("the log verifies across re-sharings");
}

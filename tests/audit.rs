//! The traceability log as an auditor checks it: a real log written by the
//! real service (see `audit_support`), verified offline, and every kind of
//! tampering caught at the first bad record with what is wrong. Also: the
//! log holds no personal data, `GET /v1/audit` gives the auditor the file
//! itself, receipts verify against the log, the report sums the log up, and
//! `cstatns audit` exits 0 / 1 / 2.

// Test code, helpers included: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod audit_support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use audit_support::{
    audit_help, find_event, fixture, hash_of, lines, prev_of, rechain, relink, run_audit, seq_of,
    write_log,
};
use cstatns::audit::report::{self, Period};
use cstatns::audit::verify::{self, ReceiptError, SavedCheckpoint, Verified, VerifyError};
use ed25519_dalek::Signer;

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn verify_file(file: &Path) -> Result<Verified, VerifyError> {
    verify::verify_files(&[file.to_owned()], &fixture().record, None)
}

/// Asserts a Tampered error at `line` (1-based) naming `seq`, whose message
/// contains `what`.
#[track_caller]
fn assert_tampered(r: Result<Verified, VerifyError>, line: u64, seq: Option<u64>, what: &str) {
    match r {
        Err(VerifyError::Tampered {
            line: l,
            seq: s,
            what: w,
            ..
        }) => {
            assert_eq!((l, s), (line, seq), "where: {w}");
            assert!(w.contains(what), "{w:?} should say {what:?}");
        }
        other => panic!("expected Tampered at line {line}, got {other:?}"),
    }
}

#[track_caller]
fn assert_unreadable(r: Result<Verified, VerifyError>) -> String {
    match r {
        Err(e @ VerifyError::Unreadable { .. }) => e.to_string(),
        other => panic!("expected Unreadable, got {other:?}"),
    }
}

// ---------------------------------------------------------------- verified

#[test]
fn real_log_verifies_with_every_record_signed_at_stop() {
    let fx = fixture();
    let v = verify::verify_dir(&fx.audit_dir, &fx.record, None).unwrap();
    let all = lines(&fx.audit_dir);
    assert_eq!(v.records, all.len() as u64);
    assert_eq!((v.first_seq, v.last_seq), (1, all.len() as u64));
    assert!(v.from_genesis);
    assert_eq!(v.ceremony_id, fx.record.ceremony_id().to_string());
    // Checkpoints at unseal and at stop at least; the stop one is last.
    assert!(v.checkpoints >= 2, "{v:?}");
    assert_eq!(v.unsigned_records, 0);
    let last = v.last_checkpoint.clone().unwrap();
    assert_eq!(last.seq, v.last_seq);
    assert_eq!(last.hash, v.last_hash);
    assert!(all.last().unwrap().contains("\"event\":\"checkpoint\""));
    // The service stop is right before it.
    assert!(all[all.len() - 2].contains("\"event\":\"service_stop\""));
}

#[test]
fn saved_checkpoint_still_present_verifies() {
    let fx = fixture();
    let v = verify::verify_dir(&fx.audit_dir, &fx.record, Some(&fx.saved_after_unseal)).unwrap();
    assert!(v.last_seq > fx.saved_after_unseal.seq);
}

#[test]
fn copy_fetched_from_a_saved_checkpoint_verifies_from_there() {
    let fx = fixture();
    let tmp = scratch();
    let all = lines(&fx.audit_dir);
    let from = (fx.saved_after_unseal.seq - 1) as usize;
    let part = write_log(tmp.path(), "part", &all[from..]);
    let v = verify::verify_files(
        std::slice::from_ref(&part),
        &fx.record,
        Some(&fx.saved_after_unseal),
    )
    .unwrap();
    assert!(!v.from_genesis);
    assert_eq!(v.first_seq, fx.saved_after_unseal.seq);
    // Without the saved checkpoint there is nothing to anchor it.
    assert_tampered(
        verify_file(&part),
        1,
        Some(fx.saved_after_unseal.seq),
        "records before it are missing",
    );
}

#[test]
fn log_rotated_into_several_files_verifies_as_one_chain() {
    let fx = fixture();
    let tmp = scratch();
    let all = lines(&fx.audit_dir);
    let dir = tmp.path().join("rotated");
    std::fs::create_dir(&dir).unwrap();
    let third = all.len() / 3;
    for (name, part) in [
        ("log-000001.jsonl", &all[..third]),
        ("log-000002.jsonl", &all[third..2 * third]),
        ("log.jsonl", &all[2 * third..]),
    ] {
        std::fs::write(dir.join(name), part.join("\n") + "\n").unwrap();
    }
    let v = verify::verify_dir(&dir, &fx.record, None).unwrap();
    assert_eq!((v.files, v.records), (3, all.len() as u64));
    // The same files in the wrong order: the chain breaks at the first
    // record of the file out of place.
    let swapped = vec![
        dir.join("log-000002.jsonl"),
        dir.join("log-000001.jsonl"),
        dir.join("log.jsonl"),
    ];
    let r = verify::verify_files(&swapped, &fx.record, None);
    assert_tampered(
        r,
        1,
        Some(third as u64 + 1),
        "records before it are missing",
    );
}

// ---------------------------------------------------------------- tampering

#[test]
fn edited_count_in_batch_end_is_caught_at_that_record() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = find_event(&all, "batch_end");
    let records = fx.receipts[0].0.records;
    let from = format!("\"records\":{records},");
    assert!(all[i].contains(&from));
    all[i] = all[i].replace(&from, &format!("\"records\":{},", records + 1));
    let file = write_log(tmp.path(), "edited", &all);
    assert_tampered(
        verify_file(&file),
        i as u64 + 1,
        Some(i as u64 + 1),
        "hash does not match the record's content",
    );
}

#[test]
fn edited_record_with_its_hash_recomputed_breaks_the_next_link() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = find_event(&all, "batch_end");
    let ok = fx.receipts[0].0.ok;
    all[i] = all[i].replace(&format!("\"ok\":{ok}"), &format!("\"ok\":{}", ok + 100));
    let prev = prev_of(&all[i]).to_owned();
    all[i] = relink(&all[i], &prev);
    let file = write_log(tmp.path(), "rehashed", &all);
    assert_tampered(
        verify_file(&file),
        i as u64 + 2,
        Some(i as u64 + 2),
        &format!("prev does not match the hash of seq {}", i + 1),
    );
}

#[test]
fn rewritten_chain_is_caught_by_the_next_checkpoint_signature() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = find_event(&all, "batch_end");
    let ok = fx.receipts[0].0.ok;
    all[i] = all[i].replace(&format!("\"ok\":{ok}"), &format!("\"ok\":{}", ok + 100));
    rechain(&mut all, i);
    // Every hash and link is right again, but the next checkpoint covers
    // the old hash…
    let cp = i + all[i..]
        .iter()
        .position(|l| l.contains("\"event\":\"checkpoint\""))
        .unwrap();
    let file = write_log(tmp.path(), "rewritten", &all);
    assert_tampered(
        verify_file(&file),
        cp as u64 + 1,
        Some(cp as u64 + 1),
        &format!("covers_hash is not the hash of seq {cp}"),
    );
    // …and made to cover the new one, its signature no longer verifies:
    // signing anew needs the log key.
    let old = hash_of(&all[cp - 1]).to_owned();
    let covered: serde_json::Value = serde_json::from_str(&all[cp]).unwrap();
    let covers = covered["details"]["covers_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(covers, old);
    all[cp] = all[cp].replace(
        &format!("\"covers_hash\":\"{covers}\""),
        &format!("\"covers_hash\":\"{old}\""),
    );
    rechain(&mut all, cp);
    let file = write_log(tmp.path(), "rewritten-and-covered", &all);
    assert_tampered(
        verify_file(&file),
        cp as u64 + 1,
        Some(cp as u64 + 1),
        "checkpoint signature does not verify",
    );
}

#[test]
fn deleted_record_is_caught_as_missing() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    all.remove(4); // seq 5
    let file = write_log(tmp.path(), "deleted", &all);
    assert_tampered(
        verify_file(&file),
        5,
        Some(6),
        "seq 6 follows seq 4: a record is missing",
    );
}

#[test]
fn deleted_record_with_the_chain_relinked_is_caught_by_a_checkpoint() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = find_event(&all, "batch_start");
    all.remove(i);
    // Renumber and relink everything after it, as a careful forger would.
    for l in &mut all[i..] {
        let seq = seq_of(l);
        *l = l.replacen(
            &format!("{{\"seq\":{seq},"),
            &format!("{{\"seq\":{},", seq - 1),
            1,
        );
    }
    rechain(&mut all, i);
    let cp = i + all[i..]
        .iter()
        .position(|l| l.contains("\"event\":\"checkpoint\""))
        .unwrap();
    let file = write_log(tmp.path(), "relinked", &all);
    let r = verify_file(&file);
    match &r {
        Err(VerifyError::Tampered { line, what, .. }) => {
            assert_eq!(*line, cp as u64 + 1, "{what}");
            assert!(
                what.contains("covers_seq") || what.contains("covers_hash"),
                "{what}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reordered_records_are_caught() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    all.swap(3, 4); // seq 4 and 5
    let file = write_log(tmp.path(), "reordered", &all);
    assert_tampered(verify_file(&file), 4, Some(5), "seq 5 follows seq 3");
}

#[test]
fn duplicated_record_is_caught() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let copy = all[3].clone(); // seq 4
    all.insert(4, copy);
    let file = write_log(tmp.path(), "duplicated", &all);
    assert_tampered(
        verify_file(&file),
        5,
        Some(4),
        "seq 4 follows seq 4: a record is repeated",
    );
}

#[test]
fn truncated_tail_is_caught_with_a_saved_checkpoint() {
    let fx = fixture();
    let tmp = scratch();
    let all = lines(&fx.audit_dir);
    // The auditor's last visit saved the newest checkpoint.
    let saved = verify::verify_dir(&fx.audit_dir, &fx.record, None)
        .unwrap()
        .last_checkpoint
        .unwrap();
    let kept = all.len() - 3;
    let file = write_log(tmp.path(), "truncated", &all[..kept]);
    // A cut log is a valid prefix: alone, it verifies (with its tail unsigned)…
    let alone = verify_file(&file).unwrap();
    assert!(alone.unsigned_records > 0);
    // …but not against the checkpoint saved before the cut.
    let r = verify::verify_files(std::slice::from_ref(&file), &fx.record, Some(&saved));
    assert_tampered(
        r,
        kept as u64 + 1,
        Some(kept as u64 + 1),
        &format!(
            "the log ends at seq {kept} and does not reach the saved checkpoint seq {}: truncated",
            saved.seq
        ),
    );
    // An older saved checkpoint is still in it.
    verify::verify_files(&[file], &fx.record, Some(&fx.saved_after_unseal)).unwrap();
}

#[test]
fn log_rewritten_before_a_saved_checkpoint_is_caught_there() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let saved = &fx.saved_after_unseal;
    // Rewrite the whole chain from record 1 (hashes all consistent), then
    // compare with the checkpoint the auditor kept.
    assert!(all[0].contains("\"insecure_dev_env\":true"));
    all[0] = all[0].replace("\"insecure_dev_env\":true", "\"insecure_dev_env\":false");
    rechain(&mut all, 0);
    let file = write_log(tmp.path(), "rewritten", &all);
    let r = verify::verify_files(std::slice::from_ref(&file), &fx.record, Some(saved));
    // Whatever breaks first (a checkpoint's covers_hash, or the saved
    // record's hash), it is at or before the saved checkpoint.
    match r {
        Err(VerifyError::Tampered { seq: Some(s), .. }) => assert!(s <= saved.seq),
        other => panic!("{other:?}"),
    }
}

#[test]
fn partial_last_line_is_left_out_and_reported_but_not_in_an_older_file() {
    let fx = fixture();
    let tmp = scratch();
    let all = lines(&fx.audit_dir);
    let file = write_log(tmp.path(), "cut", &all);
    let text = std::fs::read(&file).unwrap();
    std::fs::write(&file, &text[..text.len() - 40]).unwrap();
    // A write in progress (or cut by a crash) at the end of the newest
    // file: never acknowledged, left out, said.
    let v = verify_file(&file).unwrap();
    assert!(v.partial_last_line);
    assert_eq!(v.last_seq, all.len() as u64 - 1);
    // The checkpoint saved before is then missing: truncated.
    let saved = verify::verify_dir(&fx.audit_dir, &fx.record, None)
        .unwrap()
        .last_checkpoint
        .unwrap();
    let r = verify::verify_files(std::slice::from_ref(&file), &fx.record, Some(&saved));
    assert_tampered(r, all.len() as u64, Some(all.len() as u64), "truncated");
    // In a rotated file, which is complete by construction: tampered.
    let rest = write_log(tmp.path(), "rest", &all[all.len() - 1..]);
    let r = verify::verify_files(&[file, rest], &fx.record, None);
    assert_tampered(
        r,
        all.len() as u64,
        None,
        "the file ends in the middle of a line",
    );
}

#[test]
fn record_with_members_out_of_order_is_caught() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = find_event(&all, "service_start");
    // Same content, `event` moved after `actor`: the hash would differ
    // anyway; the member check names the problem first.
    all[i] = all[i].replacen(
        "\"event\":\"service_start\",\"actor\":null,",
        "\"actor\":null,\"event\":\"service_start\",",
        1,
    );
    let file = write_log(tmp.path(), "members", &all);
    assert_tampered(
        verify_file(&file),
        i as u64 + 1,
        Some(i as u64 + 1),
        "expected [seq, time, event, actor, details, prev, hash] in that order",
    );
}

#[test]
fn record_dated_before_its_predecessor_is_caught() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = find_event(&all, "batch_end");
    let v: serde_json::Value = serde_json::from_str(&all[i]).unwrap();
    let time = v["time"].as_str().unwrap();
    all[i] = all[i].replacen(time, "2000-01-01T00:00:00Z", 1);
    rechain(&mut all, i);
    let file = write_log(tmp.path(), "backdated", &all);
    assert_tampered(
        verify_file(&file),
        i as u64 + 1,
        Some(i as u64 + 1),
        &format!("time 2000-01-01T00:00:00Z is earlier than that of seq {i}"),
    );
}

#[test]
fn log_of_another_deployment_fails_at_record_one_genesis() {
    let fx = fixture();
    // It is a good log of its own ceremony…
    verify::verify_dir(&fx.other_audit_dir, &fx.other_record, None).unwrap();
    // …and not of ours, from its first record.
    let r = verify::verify_dir(&fx.other_audit_dir, &fx.record, None);
    assert_tampered(r, 1, Some(1), "prev is not the genesis value of ceremony");
    // Swapped in as the first file of our log: same.
    let mut files = cstatns::audit::log_files(&fx.other_audit_dir).unwrap();
    files.extend(cstatns::audit::log_files(&fx.audit_dir).unwrap());
    let r = verify::verify_files(&files, &fx.record, None);
    assert_tampered(r, 1, Some(1), "another deployment");
}

/// Replaces a checkpoint's signature (and optionally its public key) and
/// recomputes every hash from there, so that only the signature is wrong.
fn forge_checkpoint(all: &mut [String], i: usize, key: &ed25519_dalek::SigningKey, swap_key: bool) {
    let fx = fixture();
    let v: serde_json::Value = serde_json::from_str(&all[i]).unwrap();
    let d = &v["details"];
    let msg = cstatns::audit::checkpoint_message(
        &fx.record.ceremony_id().to_string(),
        d["covers_seq"].as_u64().unwrap(),
        d["covers_hash"].as_str().unwrap(),
    );
    let forged = hex::encode(key.sign(&msg).to_bytes());
    let old = d["signature"].as_str().unwrap();
    all[i] = all[i].replace(old, &forged);
    if swap_key {
        let pk = d["public_key"].as_str().unwrap();
        all[i] = all[i].replace(pk, &hex::encode(key.verifying_key().as_bytes()));
    }
    rechain(all, i);
}

#[test]
fn checkpoint_with_a_forged_signature_is_caught() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = find_event(&all, "checkpoint");
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    forge_checkpoint(&mut all, i, &other_key, false);
    let file = write_log(tmp.path(), "forged", &all);
    assert_tampered(
        verify_file(&file),
        i as u64 + 1,
        Some(i as u64 + 1),
        "checkpoint signature does not verify",
    );
}

#[test]
fn checkpoint_signed_with_another_key_is_caught() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = find_event(&all, "checkpoint");
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    forge_checkpoint(&mut all, i, &other_key, true);
    let file = write_log(tmp.path(), "other-key", &all);
    assert_tampered(
        verify_file(&file),
        i as u64 + 1,
        Some(i as u64 + 1),
        "public_key is not the log key of the ceremony record",
    );
}

#[test]
fn bad_line_inside_a_log_is_tampering_not_unreadable() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    all.insert(2, "this is not a record".to_owned());
    let file = write_log(tmp.path(), "junk-line", &all);
    assert_tampered(verify_file(&file), 3, None, "not a JSON object");
    let mut all = lines(&fx.audit_dir);
    all.insert(2, String::new());
    let file = write_log(tmp.path(), "blank-line", &all);
    assert_tampered(verify_file(&file), 3, None, "not a JSON object");
}

#[test]
fn file_that_is_not_a_log_is_unreadable() {
    let fx = fixture();
    let tmp = scratch();
    let csv = tmp.path().join("batch.csv");
    std::fs::write(&csv, "index,nir\nR1,2951099126111\n").unwrap();
    assert!(assert_unreadable(verify_file(&csv)).contains("not a cstatns log"));
    let bin = tmp.path().join("image.png");
    std::fs::write(&bin, b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary").unwrap();
    assert!(assert_unreadable(verify_file(&bin)).contains("not UTF-8"));
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, b"").unwrap();
    assert_unreadable(verify_file(&empty));
    assert_unreadable(verify_file(&tmp.path().join("missing.jsonl")));
    let no_logs = tmp.path().join("no-logs");
    std::fs::create_dir(&no_logs).unwrap();
    assert_unreadable(verify::verify_dir(&no_logs, &fx.record, None));
    assert_unreadable(verify::verify_files(&[], &fx.record, None));
}

#[test]
fn saved_checkpoint_of_another_ceremony_is_refused() {
    let fx = fixture();
    let other = SavedCheckpoint {
        ceremony_id: fx.other_record.ceremony_id().to_string(),
        ..fx.saved_after_unseal.clone()
    };
    let r = verify::verify_dir(&fx.audit_dir, &fx.record, Some(&other));
    assert!(
        matches!(r, Err(VerifyError::CheckpointOfAnotherCeremony { .. })),
        "{r:?}"
    );
}

#[test]
fn saved_checkpoint_round_trips_through_its_file() {
    let fx = fixture();
    let tmp = scratch();
    let path = tmp.path().join("checkpoint.json");
    fx.saved_after_unseal.save(&path).unwrap();
    assert_eq!(SavedCheckpoint::read(&path).unwrap(), fx.saved_after_unseal);
    std::fs::write(&path, "{\"seq\":1}").unwrap();
    assert!(matches!(
        SavedCheckpoint::read(&path),
        Err(VerifyError::Unreadable { .. })
    ));
}

// ---------------------------------------------------------------- no personal data

#[test]
fn log_holds_no_nir_index_or_code() {
    let fx = fixture();
    let mut texts: Vec<(PathBuf, String)> = cstatns::audit::log_files(&fx.audit_dir)
        .unwrap()
        .into_iter()
        .map(|f| {
            let t = std::fs::read_to_string(&f).unwrap();
            (f, t)
        })
        .collect();
    texts.push((
        fx.cli_fetch.1.clone(),
        std::fs::read_to_string(&fx.cli_fetch.1).unwrap(),
    ));
    // The batches did answer lines of every kind (so there was something to leak).
    let distinctive = &fx.receipts[1].0;
    assert_eq!(distinctive.records, 10);
    assert!(
        distinctive.ok >= 4 && distinctive.rejected >= 5,
        "{distinctive:?}"
    );
    assert!(fx.personal.len() > 30);
    for (file, text) in &texts {
        for p in &fx.personal {
            assert!(
                !text.contains(p.as_str()),
                "{} holds a submitted value or a returned code",
                file.display()
            );
        }
        // Any NIR at all, in either form: every maximal run of letters and
        // digits of length 13 or 15 that passes the NIR rules.
        for run in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            if run.len() == 13 || run.len() == 15 {
                assert!(
                    !cstatns::nir::looks_like_nir(run.as_bytes()),
                    "{} holds a NIR-shaped value",
                    file.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------- GET /v1/audit, fetch

#[test]
fn audit_endpoint_gives_the_auditor_the_file_and_refuses_the_submitter() {
    let fx = fixture();
    assert_eq!(fx.submitter_read_status, Some(403));
    assert!(!fx.auditor_read.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&fx.auditor_read),
        String::from_utf8_lossy(&fx.files_after_read)
    );
    // The refusal and the read are themselves in the log.
    let all = lines(&fx.audit_dir);
    let refused = &all[find_event(&all, "request_refused")];
    assert!(refused.contains("\"role\":\"auditor\""), "{refused}");
    assert!(refused.contains(fx.env.pki.fingerprint("submitter").unwrap()));
    let read = &all[find_event(&all, "audit_read")];
    assert!(read.contains(fx.env.pki.fingerprint("auditor").unwrap()));
}

#[test]
fn audit_fetch_copies_the_log_for_offline_verification() {
    let fx = fixture();
    let (code, file) = &fx.cli_fetch;
    assert_eq!(*code, ExitCode::from(0));
    let v = verify_file(file).unwrap();
    // Fetched while the service ran: the tail after the last checkpoint
    // (at least the fetch's own audit_read) is not signed yet.
    assert!(v.unsigned_records >= 1, "{v:?}");
    assert!(
        v.last_seq
            < verify::verify_dir(&fx.audit_dir, &fx.record, None)
                .unwrap()
                .last_seq
    );
}

// ---------------------------------------------------------------- receipts

#[test]
fn fetched_receipt_verifies_against_the_record_and_the_log() {
    let fx = fixture();
    for (receipt, file) in &fx.receipts {
        let parsed = verify::parse_receipt(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(&parsed, receipt);
        let alone = verify::verify_receipt(receipt, &fx.record, None).unwrap();
        assert!(alone.log.is_none());
        let v = verify::verify_receipt(receipt, &fx.record, Some(&fx.audit_dir)).unwrap();
        assert_eq!(v.log_seq, receipt.log_seq);
        // A fetched copy of the log serves as well.
        verify::verify_receipt(receipt, &fx.record, Some(&fx.cli_fetch.1)).unwrap();
    }
}

#[track_caller]
fn assert_invalid(r: Result<verify::ReceiptVerified, ReceiptError>, what: &str) {
    match r {
        Err(ReceiptError::Invalid { what: w, .. }) => {
            assert!(w.contains(what), "{w:?} should say {what:?}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn receipt_with_edited_counts_fails() {
    let fx = fixture();
    let mut r = fx.receipts[1].0.clone();
    let ok = r.counts.get(cstatns::batch::Status::Ok);
    r.counts.set(cstatns::batch::Status::Ok, ok + 1);
    r.ok += 1;
    r.records += 1;
    assert_invalid(
        verify::verify_receipt(&r, &fx.record, None),
        "signature does not verify",
    );
    assert_invalid(
        verify::verify_receipt(&r, &fx.record, Some(&fx.audit_dir)),
        "signature does not verify",
    );
}

#[test]
fn receipt_with_an_added_member_or_another_ceremony_fails() {
    let fx = fixture();
    let mut v = serde_json::to_value(&fx.receipts[0].0).unwrap();
    v["note"] = "all fine".into();
    assert!(matches!(
        verify::parse_receipt(&serde_json::to_vec(&v).unwrap()),
        Err(ReceiptError::Invalid { .. })
    ));
    assert!(matches!(
        verify::parse_receipt(b"not json"),
        Err(ReceiptError::Malformed(_))
    ));
    assert_invalid(
        verify::verify_receipt(&fx.receipts[0].0, &fx.other_record, None),
        "names ceremony",
    );
}

#[test]
fn receipt_pointing_at_another_log_record_fails() {
    let fx = fixture();
    let (a, b) = (&fx.receipts[0].0, &fx.receipts[1].0);
    // A genuine receipt checked against a log whose batch_end at its seq was
    // edited (and the chain rewritten): the log fails first.
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    let i = (b.log_seq - 1) as usize;
    all[i] = all[i].replace(
        &format!("\"batch\":\"{}\"", b.batch),
        &format!("\"batch\":\"{}\"", a.batch),
    );
    rechain(&mut all, i);
    let file = write_log(tmp.path(), "log", &all);
    assert!(matches!(
        verify::verify_receipt(b, &fx.record, Some(&file)),
        Err(ReceiptError::Log(VerifyError::Tampered { .. }))
    ));
    // A log that ends before the receipt's seq cannot confirm it.
    let short = write_log(tmp.path(), "short", &all[..(a.log_seq as usize)]);
    assert_invalid(
        verify::verify_receipt(b, &fx.record, Some(&short)),
        &format!("holds no record at seq {}", b.log_seq),
    );
}

// ---------------------------------------------------------------- report

#[test]
fn report_counts_batches_refusals_key_events_and_the_renewal_date() {
    let fx = fixture();
    let today = time::OffsetDateTime::now_utc().date();
    let r = report::report_dir(&fx.audit_dir, &fx.record, Period::Month, today).unwrap();
    let sum = |f: fn(&report::Usage) -> u64| r.usage.iter().map(f).sum::<u64>();
    let receipts: Vec<_> = fx.receipts.iter().map(|(r, _)| r).collect();
    assert_eq!(sum(|u| u.batches), 2);
    assert_eq!(
        sum(|u| u.records),
        receipts.iter().map(|r| r.records).sum::<u64>()
    );
    assert_eq!(sum(|u| u.ok), receipts.iter().map(|r| r.ok).sum::<u64>());
    assert_eq!(
        sum(|u| u.refused),
        receipts.iter().map(|r| r.rejected).sum::<u64>()
    );
    assert_eq!(sum(|u| u.aborted), 0);
    for u in &r.usage {
        assert_eq!(u.client, fx.env.pki.subject("submitter").unwrap());
        assert_eq!(u.purpose, cstatns::devenv::DEV_PURPOSE);
    }
    let ev = |f: fn(&report::KeyEvents) -> u64| r.events.iter().map(f).sum::<u64>();
    assert_eq!(ev(|e| e.service_start), 1);
    assert_eq!(ev(|e| e.service_stop), 1);
    assert_eq!(ev(|e| e.unseal), 1);
    assert_eq!(ev(|e| e.seal), 0);
    assert_eq!(ev(|e| e.shares_valid), 2);
    assert_eq!(ev(|e| e.shares_refused), 1);
    assert_eq!(ev(|e| e.checkpoints), r.log.checkpoints);
    // The submitter's two tries at the log (library client, `audit fetch`).
    assert_eq!(ev(|e| e.requests_refused), 2);
    assert_eq!(ev(|e| e.audit_reads), 2);
    // Renewal: five years after the ceremony.
    let created = fx.record.created();
    let year: i32 = created[..4].parse().unwrap();
    assert_eq!(r.renewal.due, format!("{}{}", year + 5, &created[4..10]));
    assert!(
        (1824..=1827).contains(&r.renewal.days_left),
        "{:?}",
        r.renewal
    );

    // The three outputs.
    let table = r.table();
    assert!(
        table.contains(&format!("Key renewal due {}", r.renewal.due)),
        "{table}"
    );
    assert!(
        table.contains("batches") && table.contains("shares_refused"),
        "{table}"
    );
    let csv = r.csv();
    assert!(csv.starts_with("section,period,client,purpose,measure,value\n"));
    assert!(csv.contains(",batches,"), "{csv}");
    assert!(
        csv.contains(&format!("renewal,,,,due,{}", r.renewal.due)),
        "{csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(json["renewal"]["due"], r.renewal.due.as_str());
    assert_eq!(json["period"], "month");
    // By day and by year: the same totals.
    for p in [Period::Day, Period::Year] {
        let other = report::report_dir(&fx.audit_dir, &fx.record, p, today).unwrap();
        assert_eq!(
            other.usage.iter().map(|u| u.records).sum::<u64>(),
            sum(|u| u.records)
        );
    }
}

#[test]
fn report_refuses_a_tampered_log() {
    let fx = fixture();
    let tmp = scratch();
    let mut all = lines(&fx.audit_dir);
    all.remove(3);
    let file = write_log(tmp.path(), "log", &all);
    let r = report::report_files(
        &[file],
        &fx.record,
        None,
        Period::Month,
        time::OffsetDateTime::now_utc().date(),
    );
    assert!(matches!(r, Err(VerifyError::Tampered { .. })), "{r:?}");
}

// ---------------------------------------------------------------- the `cstatns audit` command

#[test]
fn audit_commands_exit_0_verified_1_tampered_2_unreadable() {
    let fx = fixture();
    let tmp = scratch();
    let ceremony = s(&fx.ceremony_json);
    let code = |n: u8| ExitCode::from(n);
    assert_eq!(
        run_audit(&["verify", "--ceremony", ceremony, s(&fx.audit_dir)]),
        code(0)
    );
    let mut all = lines(&fx.audit_dir);
    all.swap(5, 6);
    let reordered = write_log(tmp.path(), "reordered", &all);
    assert_eq!(
        run_audit(&["verify", "--ceremony", ceremony, s(&reordered)]),
        code(1)
    );
    let files: Vec<PathBuf> = cstatns::audit::log_files(&fx.audit_dir).unwrap();
    let mut args = vec!["verify", "--ceremony", ceremony];
    args.extend(files.iter().map(|f| s(f)));
    assert_eq!(run_audit(&args), code(0));
    assert_eq!(
        run_audit(&["verify", "--ceremony", ceremony, s(&fx.env.config)]),
        code(2)
    );
    assert_eq!(
        run_audit(&[
            "verify",
            "--ceremony",
            s(&tmp.path().join("none.json")),
            s(&fx.audit_dir)
        ]),
        code(2)
    );
    let cp = tmp.path().join("cp.json");
    assert_eq!(
        run_audit(&[
            "verify",
            "--ceremony",
            ceremony,
            "--save-checkpoint",
            s(&cp),
            s(&fx.audit_dir)
        ]),
        code(0)
    );
    let fresh = lines(&fx.audit_dir);
    let short = write_log(tmp.path(), "short", &fresh[..fresh.len() - 1]);
    assert_eq!(
        run_audit(&[
            "verify",
            "--ceremony",
            ceremony,
            "--since-checkpoint",
            s(&cp),
            s(&short)
        ]),
        code(1)
    );
    // A saved checkpoint that is not one: unreadable.
    assert_eq!(
        run_audit(&[
            "verify",
            "--ceremony",
            ceremony,
            "--since-checkpoint",
            ceremony,
            s(&fx.audit_dir)
        ]),
        code(2)
    );
    let receipt = s(&fx.receipts[0].1);
    assert_eq!(
        run_audit(&[
            "verify-receipt",
            "--ceremony",
            ceremony,
            "--log",
            s(&fx.audit_dir),
            receipt
        ]),
        code(0)
    );
    assert_eq!(
        run_audit(&[
            "verify-receipt",
            "--ceremony",
            ceremony,
            "--log",
            s(&reordered),
            receipt
        ]),
        code(1)
    );
    assert_eq!(
        run_audit(&["verify-receipt", "--ceremony", ceremony, ceremony]),
        code(2)
    );
    for format in ["table", "csv", "json"] {
        assert_eq!(
            run_audit(&[
                "report",
                "--ceremony",
                ceremony,
                "--format",
                format,
                s(&fx.audit_dir)
            ]),
            code(0)
        );
    }
    assert_eq!(
        run_audit(&["report", "--ceremony", ceremony, s(&reordered)]),
        code(1)
    );
    // Fetching without the auditor role: refused (1, see the fixture);
    // unreachable: 2.
    assert_eq!(fx.cli_fetch_refused, code(1));
    let p = |r: &str| fx.env.pki.cert(r).display().to_string();
    let k = |r: &str| fx.env.pki.key(r).display().to_string();
    let out = tmp.path().join("fetched.jsonl");
    let ca = fx.env.pki.ca().display().to_string();
    assert_eq!(
        run_audit(&[
            "fetch",
            "--server",
            "https://127.0.0.1:1",
            "--ca",
            &ca,
            "--cert",
            &p("auditor"),
            "--key",
            &k("auditor"),
            "-o",
            s(&out),
        ]),
        code(2)
    );
    assert!(!out.exists(), "no partial copy left behind");
}

#[test]
fn audit_help_documents_the_exit_codes() {
    for cmd in ["verify", "report", "verify-receipt", "fetch"] {
        let help = audit_help(&[cmd]);
        assert!(help.contains("Exit status"), "{cmd}: {help}");
    }
    let help = audit_help(&["verify"]);
    for code in ["0  verified", "1  tampered", "2  unreadable"] {
        assert!(help.contains(code), "{help}");
    }
}

fn cstatns(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cstatns"))
        .args(args)
        .output()
        .expect("run cstatns")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cli_verify_exits_0_verified_1_tampered_2_unreadable() {
    let fx = fixture();
    let tmp = scratch();
    let ceremony = s(&fx.ceremony_json);
    let o = cstatns(&["audit", "verify", "--ceremony", ceremony, s(&fx.audit_dir)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("verified:"), "{}", text(&o));

    let mut all = lines(&fx.audit_dir);
    all.remove(4);
    let file = write_log(tmp.path(), "deleted", &all);
    let o = cstatns(&["audit", "verify", "--ceremony", ceremony, s(&file)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("line 5 (seq 6): seq 6 follows seq 4"),
        "{}",
        text(&o)
    );

    let junk = tmp.path().join("junk.txt");
    std::fs::write(&junk, "hello\n").unwrap();
    let o = cstatns(&["audit", "verify", "--ceremony", ceremony, s(&junk)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = cstatns(&["audit", "verify", "--ceremony", s(&junk), s(&fx.audit_dir)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // An altered ceremony record: its own signature fails first (exit 1).
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fx.ceremony_json).unwrap()).unwrap();
    rec["created"] = "2020-01-01T00:00:00Z".into();
    let edited = tmp.path().join("ceremony.json");
    std::fs::write(&edited, serde_json::to_vec(&rec).unwrap()).unwrap();
    let o = cstatns(&[
        "audit",
        "verify",
        "--ceremony",
        s(&edited),
        s(&fx.audit_dir),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let o = cstatns(&["audit", "verify", "--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for code in ["0  verified", "1  tampered", "2  unreadable"] {
        assert!(text(&o).contains(code), "{}", text(&o));
    }
}

#[test]
fn cli_saved_checkpoint_catches_a_truncated_log() {
    let fx = fixture();
    let tmp = scratch();
    let ceremony = s(&fx.ceremony_json);
    let cp = tmp.path().join("checkpoint.json");
    let o = cstatns(&[
        "audit",
        "verify",
        "--ceremony",
        ceremony,
        "--save-checkpoint",
        s(&cp),
        s(&fx.audit_dir),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let saved = SavedCheckpoint::read(&cp).unwrap();
    let all = lines(&fx.audit_dir);
    assert_eq!(saved.seq, all.len() as u64);
    let file = write_log(tmp.path(), "truncated", &all[..all.len() - 2]);
    let o = cstatns(&["audit", "verify", "--ceremony", ceremony, s(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("not yet signed"), "{}", text(&o));
    let o = cstatns(&[
        "audit",
        "verify",
        "--ceremony",
        ceremony,
        "--since-checkpoint",
        s(&cp),
        s(&file),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("truncated"), "{}", text(&o));
}

#[test]
fn cli_verify_receipt_and_report() {
    let fx = fixture();
    let tmp = scratch();
    let ceremony = s(&fx.ceremony_json);
    let receipt = &fx.receipts[1].1;
    let o = cstatns(&[
        "audit",
        "verify-receipt",
        "--ceremony",
        ceremony,
        "--log",
        s(&fx.audit_dir),
        s(receipt),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(receipt).unwrap()).unwrap();
    v["records"] = (v["records"].as_u64().unwrap() + 1).into();
    let edited = tmp.path().join("receipt.json");
    std::fs::write(&edited, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = cstatns(&[
        "audit",
        "verify-receipt",
        "--ceremony",
        ceremony,
        s(&edited),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = cstatns(&[
        "audit",
        "verify-receipt",
        "--ceremony",
        ceremony,
        s(&tmp.path().join("missing.json")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let o = cstatns(&[
        "audit",
        "report",
        "--ceremony",
        ceremony,
        "--format",
        "json",
        "--period",
        "year",
        s(&fx.audit_dir),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["period"], "year");
    let o = cstatns(&["audit", "report", "--ceremony", ceremony, s(&fx.audit_dir)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Key renewal due"), "{}", text(&o));
}

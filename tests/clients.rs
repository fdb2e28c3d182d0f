//! The client examples of `docs/clients.md`, as written there, against the
//! real service: the Python script (requests) and the R script (curl) each
//! send a batch over mutual TLS, and their answer files must be the
//! service's codes (checked against an independent HMAC), written mode 0600;
//! a refusal exits 1 with the service's error code and leaves no file.
//! `.ci/clients` installs Python's requests and R's curl when missing.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{csv_rows, expected_c1, nir_body, nir_full, EnvOptions, TestEnv};
use cstatns::pki::SUBMITTER;

/// The first fenced block of `language` in docs/clients.md.
fn example(language: &str) -> String {
    let doc =
        std::fs::read_to_string(format!("{}/docs/clients.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let start = doc
        .find(&format!("```{language}\n"))
        .unwrap_or_else(|| panic!("no {language} block"))
        + language.len()
        + 4;
    let len = doc[start..].find("\n```").unwrap();
    doc[start..start + len + 1].to_owned()
}

fn run(
    program: &str,
    script: &Path,
    env: &TestEnv,
    port: u16,
    batch: &Path,
    answer: &Path,
) -> std::process::Output {
    Command::new(program)
        .arg(script)
        .arg(format!("https://localhost:{port}"))
        .arg(env.ca())
        .arg(env.cert(SUBMITTER))
        .arg(env.key(SUBMITTER))
        .arg(batch)
        .arg(answer)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn clients_send_a_batch_and_write_its_codes(language: &str, program: &str, file: &str) {
    common::provision("clients");
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..EnvOptions::default()
    });
    let server = env.serve();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = env.tmp.path();
    let script = work.join(file);
    std::fs::write(&script, example(language)).unwrap();
    let batch = work.join("batch.csv");
    let mut body = String::from("index,nir\n");
    for i in 0..200u64 {
        body.push_str(&format!("C{i},{}\n", nir_full(31 * i + 5)));
    }
    body.push_str("bad,295109912611194\n");
    std::fs::write(&batch, &body).unwrap();

    // Sealed: refused, exit 1, the error code shown, no answer file.
    let answer: PathBuf = work.join("answer.csv");
    let o = run(program, &script, &env, server.port, &batch, &answer);
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("503") && said.contains("sealed"), "{said}");
    assert!(!answer.exists() && !work.join("answer.csv.partial").exists());

    rt.block_on(env.unseal(&server));
    let o = run(program, &script, &env, server.port, &batch, &answer);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("generation 1"), "{out}");
    let text = std::fs::read_to_string(&answer).unwrap();
    let rows = csv_rows(&text, ',');
    assert_eq!(rows.len(), 201, "{text}");
    let k1 = common::test_k1();
    for (i, row) in rows.iter().take(200).enumerate() {
        let i = i as u64;
        assert_eq!(row[0], format!("C{i}"));
        assert_eq!(row[2], "ok");
        assert_eq!(row[1], expected_c1(&k1, nir_body(31 * i + 5).as_bytes()));
    }
    assert_eq!(rows[200][2], "invalid_key");
    let mode = std::fs::metadata(&answer).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the answer file is {mode:o}");
    // Never over an existing file.
    let o = run(program, &script, &env, server.port, &batch, &answer);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(&answer).unwrap(), text);
}

#[test]
fn the_python_example_sends_a_batch_and_writes_its_codes() {
    clients_send_a_batch_and_write_its_codes("python", "python3", "cstatns_submit.py");
}

#[test]
fn the_r_example_sends_a_batch_and_writes_its_codes() {
    clients_send_a_batch_and_write_its_codes("r", "Rscript", "cstatns_submit.R");
}

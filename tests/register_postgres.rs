//! The register in PostgreSQL (DESIGN §7, docs/identity.md), with a real
//! PostgreSQL server (a throw-away cluster on 127.0.0.1, TLS 1.3, SCRAM
//! passwords, the roles and schema of `deploy/register-postgres.sql`):
//! the real CLI loads a synthetic register into it and into the embedded
//! register; the real service answers the same trait batch, with errors of
//! every kind, byte for byte the same from both back-ends; the database
//! stopped, trait batches get 503 before anything is computed and NIR
//! batches go on; restarted, the service reconnects; the loader refuses a
//! duplicate NIR without naming it and leaves the register as it was; the
//! service's role cannot write; a URL with a password and a server whose
//! certificate another CA signed are refused.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{cli, configure_register, nir_body, register_load, EnvOptions, TestEnv};
use cstatns::identity::pgdev::{ThrowAwayPostgres, LOADER, SERVICE};

fn pg_load(
    env: &TestEnv,
    pg: &ThrowAwayPostgres,
    role: &str,
    password: &str,
    ca: &Path,
    csv: &Path,
) -> (Option<i32>, String) {
    let pass = env.dir().join(format!("{role}.pass"));
    std::fs::write(&pass, format!("{password}\n")).expect("write the password file");
    cli([
        OsStr::new("register"),
        "load".as_ref(),
        "--database".as_ref(),
        pg.url(role).as_ref(),
        "--ca".as_ref(),
        ca.as_os_str(),
        "--password-file".as_ref(),
        pass.as_os_str(),
        csv.as_os_str(),
    ])
}

/// Points `server.toml` at the PostgreSQL register instead of a file.
fn configure_database(env: &TestEnv, pg: &ThrowAwayPostgres) {
    let config = env.dir().join("server.toml");
    let pass = env.dir().join("service.pass");
    std::fs::write(&pass, format!("{}\n", pg.service_password())).expect("write");
    let text = std::fs::read_to_string(&config).expect("read server.toml");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("register ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "{text}\n[register_database]\nurl = \"{}\"\nca = \"pki/ca.pem\"\npassword_file = \"service.pass\"\n",
            pg.url(SERVICE)
        ),
    )
    .expect("write server.toml");
}

fn people_in(pg: &ThrowAwayPostgres) -> u64 {
    pg.admin_sql("rnipp", "SELECT count(*) FROM register.person;")
        .expect("count")
        .trim()
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_register_answers_as_the_embedded_one_through_the_real_service() {
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..EnvOptions::default()
    });
    let pki = env.dir().join("pki");
    common::provision("postgres");
    let pg = ThrowAwayPostgres::start(&pki.join("server.pem"), &pki.join("server.key"))
        .expect("a throw-away PostgreSQL server");
    let csv = env.dir().join("register.csv");
    let queries = env.dir().join("queries.csv");
    cstatns::identity::synth::write_files(20_000, 7, &csv, Some((&queries, 3_000)))
        .expect("a synthetic register");
    let ca = env.ca();

    // The same register in both back-ends, each loaded by the real CLI.
    configure_register(&env, "register.db");
    let (st, out) = register_load(&env, &csv);
    assert_eq!(st, Some(0), "{out}");
    let (st, out) = pg_load(&env, &pg, LOADER, pg.loader_password(), &ca, &csv);
    assert_eq!(st, Some(0), "{out}");
    assert!(out.contains("20000 people loaded"), "{out}");
    assert_eq!(people_in(&pg), 20_000);

    let body = std::fs::read_to_string(&queries).expect("the queries");
    let mut server = env.serve();
    env.unseal(&server).await;
    let embedded = env.derive_csv(&server, body.clone()).await;
    assert_eq!(embedded.status, 200);
    server.stop();

    configure_database(&env, &pg);
    // Every diagnostic on: the database client's own (which would print a
    // statement's parameters, the traits) must stay out all the same.
    let mut server = env.serve_with_env(&[("CSTATNS_LOG", "trace")]);
    env.unseal(&server).await;
    let r = env.derive_csv(&server, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (a, b) = (embedded.text(), r.text());
    assert_eq!(a.lines().count(), b.lines().count());
    for (x, y) in a.lines().zip(b.lines()) {
        assert_eq!(x, y, "the two back-ends answer a line differently");
    }
    for q in [",exact,ok", ",approximate,ok", ",not_found,ok"] {
        assert!(b.contains(q), "no {q} line");
    }

    // The database stopped: a batch of traits is refused before it starts;
    // NIR batches are served.
    pg.kill().expect("stop PostgreSQL");
    let r = env.derive_csv(&server, body.clone()).await;
    let (status, error, message) = r.refusal();
    assert_eq!(
        (status, error.as_str()),
        (503, "register_unavailable"),
        "{message}"
    );
    assert!(r.header("cstatns-batch").is_none(), "no batch was started");
    let r = env
        .derive_csv(&server, format!("index,nir\nA1,{}\n", nir_body(2)))
        .await;
    assert_eq!(r.status, 200);
    // Back: the service connects again by itself.
    pg.restart().expect("start PostgreSQL again");
    let r = env.derive_csv(&server, body.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), b);
    server.stop();

    // Nothing of the register in the log or in what the service wrote.
    let log = env.audit_text();
    let stderr = server.stderr_text();
    let register = std::fs::read_to_string(&csv).expect("the register");
    for row in register.lines().skip(1).take(300) {
        let nir = &row[..13];
        assert!(
            !log.contains(nir) && !stderr.contains(nir),
            "a NIR reached the log"
        );
    }
    assert!(log.contains("register_unavailable"));
    assert!(
        stderr.lines().count() > 100,
        "trace diagnostics were written"
    );
    for row in body.lines().skip(1).take(500) {
        let name = row
            .split(',')
            .nth(2)
            .expect("a birth name")
            .trim_matches('"');
        let key = cstatns::identity::normal::surname(name);
        if key.len() >= 5 {
            assert!(
                !stderr.contains(&key),
                "a trait ({key}) reached the diagnostics"
            );
        }
    }
}

#[test]
fn the_loader_refuses_a_duplicate_without_naming_it_and_the_roles_are_kept_apart() {
    let env = TestEnv::new();
    let pki = env.dir().join("pki");
    common::provision("postgres");
    let pg = ThrowAwayPostgres::start(&pki.join("server.pem"), &pki.join("server.key"))
        .expect("a throw-away PostgreSQL server");
    let ca = env.ca();
    let csv = env.dir().join("register.csv");
    cstatns::identity::synth::write_files(500, 3, &csv, None).expect("a register");
    assert_eq!(
        pg_load(&env, &pg, LOADER, pg.loader_password(), &ca, &csv).0,
        Some(0)
    );

    // 100 rows, row 3 with the NIR of row 2 (loaded, it would leave 100).
    let text = std::fs::read_to_string(&csv).expect("read");
    let mut lines: Vec<String> = text.lines().take(101).map(str::to_owned).collect();
    let nir2 = lines[1][..13].to_owned();
    let nir3 = lines[2][..13].to_owned();
    lines[2] = lines[2].replacen(&nir3, &nir2, 1);
    let dup = env.dir().join("duplicate.csv");
    std::fs::write(&dup, lines.join("\n") + "\n").expect("write");
    let (st, out) = pg_load(&env, &pg, LOADER, pg.loader_password(), &ca, &dup);
    assert_ne!(st, Some(0), "{out}");
    assert!(out.contains("two rows carry the same NIR"), "{out}");
    assert!(!out.contains(&nir2), "the NIR is not echoed: {out}");
    assert_eq!(people_in(&pg), 500, "the previous register stays");

    // The service's role reads; it cannot load.
    let (st, out) = pg_load(&env, &pg, SERVICE, pg.service_password(), &ca, &csv);
    assert_ne!(st, Some(0), "{out}");
    assert!(out.contains("permission denied"), "{out}");
    // A wrong password.
    let (st, out) = pg_load(&env, &pg, LOADER, "not-the-password", &ca, &csv);
    assert_ne!(st, Some(0), "{out}");
    assert!(out.contains("password authentication failed"), "{out}");
    // A server whose certificate another CA signed.
    let stranger: PathBuf = pki.join("stranger-ca.pem");
    let (st, out) = pg_load(&env, &pg, LOADER, pg.loader_password(), &stranger, &csv);
    assert_ne!(st, Some(0), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    // A password in the URL.
    let pass = env.dir().join(format!("{LOADER}.pass"));
    let (st, out) = cli([
        OsStr::new("register"),
        "load".as_ref(),
        "--database".as_ref(),
        format!("{} password=secret", pg.url(LOADER)).as_ref(),
        "--ca".as_ref(),
        ca.as_os_str(),
        "--password-file".as_ref(),
        pass.as_os_str(),
        csv.as_os_str(),
    ]);
    assert_ne!(st, Some(0));
    assert!(out.contains("carries a password"), "{out}");
    assert_eq!(people_in(&pg), 500);
}

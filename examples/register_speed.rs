//! Look-ups per second against both register back-ends, in one run
//! (docs/identity.md): a synthetic register of `PEOPLE` people (default
//! 1 million) written as §7's register CSV, loaded into the embedded
//! register (SQLite, read into memory) and into a throw-away PostgreSQL
//! server on 127.0.0.1 (TLS, the service's read-only role), by the loaders
//! the CLI uses; then `QUERIES` trait lines drawn from it (with errors of
//! each kind, one stranger in twenty) are looked up in chunks of 4,096, as
//! the service looks up a chunk of a trait batch, one chunk at a time on
//! one thread (PostgreSQL's own work runs in its server process).
//!
//! Prints, as its last line, one JSON object:
//! `{"people":…,"queries":…,"embedded_per_s":…,"postgres_per_s":…,"load_s":{…}}`.
//! The answers of the two back-ends must agree, or it fails.
//!
//! `cargo run --release --example register_speed [PEOPLE] [QUERIES]`
//! (PostgreSQL's server programs must be installed: `.ci/postgres`).

use std::time::Instant;

use cstatns::identity::pgdev::{ThrowAwayPostgres, SERVICE};
use cstatns::identity::postgres::{self, Database, PgRegister};
use cstatns::identity::{store, Backend, Query, RawTraits, Resolved};

const CHUNK: usize = 4096;

/// Each look-up's quality and NIR found, to compare the back-ends.
type Answers = Vec<(u8, [u8; 13])>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let people: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let queries: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let pki = cstatns::pki::write_dev_pki(dir.path(), 1)?;
    let csv = dir.path().join("register.csv");
    let batch = dir.path().join("queries.csv");
    let clock = Instant::now();
    cstatns::identity::synth::write_files(people, 1, &csv, Some((&batch, queries)))?;
    eprintln!("register written in {:.1} s", clock.elapsed().as_secs_f64());

    let clock = Instant::now();
    let db = dir.path().join("register.db");
    store::load(std::fs::File::open(&csv)?, &db, &mut |_| {})?;
    let embedded = Backend::Embedded(store::open(&db)?);
    let embedded_load = clock.elapsed().as_secs_f64();
    eprintln!("embedded register loaded and read in {embedded_load:.1} s");

    let pg = ThrowAwayPostgres::start(&pki.cert("server"), &pki.key("server"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let clock = Instant::now();
    runtime.block_on(async {
        let loader = Database::with_password(
            &pg.url(cstatns::identity::pgdev::LOADER),
            &pki.ca(),
            pg.loader_password().as_bytes(),
        )?;
        let mut client = loader.connect().await?;
        postgres::load(
            &mut client,
            std::io::BufReader::new(std::fs::File::open(&csv)?),
            &mut |_| {},
        )
        .await?;
        anyhow::Ok(())
    })?;
    let postgres_load = clock.elapsed().as_secs_f64();
    eprintln!("PostgreSQL register loaded (COPY, indexes) in {postgres_load:.1} s");
    let service = Database::with_password(
        &pg.url(SERVICE),
        &pki.ca(),
        pg.service_password().as_bytes(),
    )?;
    let postgres = runtime.block_on(async {
        let r = Backend::Postgres(Box::new(PgRegister::new(service)));
        r.ready().await.map(|()| r)
    })?;

    let asked = read_queries(&batch)?;
    let time = |backend: &Backend| -> anyhow::Result<(f64, Answers)> {
        let mut out: Vec<Resolved> = Vec::new();
        let mut answers = Vec::with_capacity(asked.len());
        let clock = Instant::now();
        for chunk in asked.chunks(CHUNK) {
            backend.resolve(chunk, &mut out)?;
            answers.extend(out.iter().map(|r| (r.quality as u8, r.nir)));
        }
        Ok((asked.len() as f64 / clock.elapsed().as_secs_f64(), answers))
    };
    let (embedded_per_s, a) = time(&embedded)?;
    // From this thread, outside the runtime, as from the service's blocking
    // workers.
    let (postgres_per_s, b) = time(&postgres)?;
    anyhow::ensure!(a == b, "the two back-ends answered differently");
    eprintln!(
        "{} look-ups: embedded {embedded_per_s:.0}/s, PostgreSQL {postgres_per_s:.0}/s",
        asked.len()
    );
    println!(
        "{}",
        serde_json::json!({
            "people": people,
            "queries": asked.len(),
            "embedded_per_s": embedded_per_s.round(),
            "postgres_per_s": postgres_per_s.round(),
            "load_s": {"embedded": (embedded_load * 10.0).round() / 10.0,
                       "postgres": (postgres_load * 10.0).round() / 10.0},
        })
    );
    drop(pg);
    Ok(())
}

/// The trait batch's lines, as questions (lines that fail their own checks
/// are left out: the service never looks them up).
fn read_queries(path: &std::path::Path) -> anyhow::Result<Vec<Query>> {
    let mut r = csv::Reader::from_path(path)?;
    let mut out = Vec::new();
    for rec in r.byte_records() {
        let rec = rec?;
        let raw = RawTraits {
            traits: [&rec[1], &rec[2], &rec[3], &rec[4], &rec[5]],
            usual_name: rec.get(6).unwrap_or_default(),
        };
        if let Ok(q) = raw.query() {
            out.push(q);
        }
    }
    Ok(out)
}

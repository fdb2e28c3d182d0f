//! How well and how fast traits find people (issue: identity traits;
//! docs/identity.md): a synthetic register of `PEOPLE` people (default 10
//! million) in memory, queries drawn from it with an error of each kind
//! (and strangers not in it), looked up one after the other on one core
//! exactly as the service reads a trait line (checks, normalisation,
//! look-up).
//!
//! Prints a table of precision and recall per error kind, then, as its
//! last line, one JSON object with the figures.
//!
//! `cargo run --release --example identity_quality [PEOPLE] [QUERIES]`

use std::time::Instant;

use cstatns::identity::register::{Person, Register};
use cstatns::identity::synth::{Error, Synth};
use cstatns::identity::{normal, parse_date, Found, RawTraits};
use rand::{Rng, SeedableRng};

struct Tally {
    queries: u64,
    right: u64,
    wrong: u64,
    ambiguous: u64,
    not_found: u64,
    exact: u64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let people: u64 = args
        .next()
        .map_or(10_000_000, |a| a.parse().expect("PEOPLE"));
    let queries: u64 = args.next().map_or(300_000, |a| a.parse().expect("QUERIES"));
    let clock = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let every = (people / queries.max(1)).max(1);
    let mut asked = Vec::with_capacity(queries as usize);
    let mut kind = 0usize;
    let mut register = Vec::with_capacity(people as usize);
    for (i, p) in Synth::new(1).take(people as usize).enumerate() {
        if i as u64 % every == 0 {
            let error = (0..Error::ALL.len())
                .map(|k| Error::ALL[(kind + k) % Error::ALL.len()])
                .find(|e| p.allows(*e))
                .unwrap_or(Error::Spelling);
            kind += 1;
            asked.push((Some(error), Some(p.nir.clone()), p.query(error, &mut rng)));
        }
        register.push(Person {
            nir: p.nir.as_bytes().try_into().expect("13 characters"),
            sex: b'0' + p.sex,
            date: parse_date(p.birth_date.as_bytes()).expect("a date"),
            place: p.birth_place.as_bytes().try_into().expect("5 characters"),
            birth: normal::surname(&p.birth_name),
            usual: normal::surname(&p.usual_name),
            first: normal::first_names(&p.first_names.join(" ")),
        });
    }
    // Strangers: one query in twenty.
    for p in Synth::new(1_000_003).take(asked.len() / 19) {
        asked.push((None, None, p.query(Error::Spelling, &mut rng)));
    }
    let register = Register::new(register);
    eprintln!(
        "{} people and {} queries made in {:.1} s",
        register.len(),
        asked.len(),
        clock.elapsed().as_secs_f64()
    );

    let mut tallies: Vec<(Option<Error>, Tally)> = Error::ALL
        .iter()
        .map(|e| Some(*e))
        .chain([None])
        .map(|e| {
            (
                e,
                Tally {
                    queries: 0,
                    right: 0,
                    wrong: 0,
                    ambiguous: 0,
                    not_found: 0,
                    exact: 0,
                },
            )
        })
        .collect();
    let clock = Instant::now();
    let mut found = Vec::with_capacity(asked.len());
    for (_, _, q) in &asked {
        let raw = RawTraits {
            traits: [
                &q.sex,
                &q.birth_name,
                &q.first_names,
                &q.birth_date,
                &q.birth_place,
            ]
            .map(|s| s.as_bytes()),
            usual_name: b"",
        };
        let f = match raw.query() {
            Ok(query) => register.lookup(&query),
            Err(_) => Found::NotFound,
        };
        found.push(f);
    }
    let seconds = clock.elapsed().as_secs_f64();
    for ((error, truth, _), f) in asked.iter().zip(&found) {
        let t = &mut tallies
            .iter_mut()
            .find(|(e, _)| e == error)
            .expect("every kind")
            .1;
        t.queries += 1;
        match f {
            Found::Exact(i) | Found::Approximate(i, _) => {
                if matches!(f, Found::Exact(_)) {
                    t.exact += 1;
                }
                let nir = std::str::from_utf8(register.nir(*i)).expect("ASCII");
                if truth.as_deref() == Some(nir) {
                    t.right += 1;
                } else {
                    t.wrong += 1;
                }
            }
            Found::Ambiguous => t.ambiguous += 1,
            Found::NotFound => t.not_found += 1,
        }
    }
    println!("| error injected | queries | code given, right | code given, wrong | ambiguous | not found | precision | recall |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (mut right, mut wrong, mut findable) = (0, 0, 0);
    for (e, t) in &tallies {
        let name = e.map_or("not in the register", Error::name);
        let given = t.right + t.wrong;
        let precision = if given == 0 {
            1.0
        } else {
            t.right as f64 / given as f64
        };
        let recall = if e.is_some() {
            format!("{:.2} %", 100.0 * t.right as f64 / t.queries.max(1) as f64)
        } else {
            "—".to_owned()
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {:.2} % | {recall} |",
            t.queries,
            t.right,
            t.wrong,
            t.ambiguous,
            t.not_found,
            100.0 * precision
        );
        right += t.right;
        wrong += t.wrong;
        if e.is_some() {
            findable += t.queries;
        }
    }
    let per_s = asked.len() as f64 / seconds;
    let precision = right as f64 / (right + wrong).max(1) as f64;
    let recall = right as f64 / findable.max(1) as f64;
    eprintln!(
        "{per_s:.0} look-ups/s on one core ({} in {seconds:.2} s)",
        asked.len()
    );
    println!(
        "{}",
        serde_json::json!({
            "people": register.len(),
            "queries": asked.len(),
            "lookups_per_s": per_s.round(),
            "precision": precision,
            "recall": recall,
            "spelling_exact_share": tallies[0].1.exact as f64 / tallies[0].1.queries.max(1) as f64,
        })
    );
    let _ = rng.gen::<u8>();
}

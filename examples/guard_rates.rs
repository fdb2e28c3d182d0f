//! The sweep detector's false-positive and detection rates (docs/guard.md):
//! a synthetic population of 10 million people (`cstatns::population`) sent
//! in several ways, and sweeps of the NIR space of several kinds, each read
//! by the detector exactly as the service reads a client's batches
//! (`cstatns::sweep`), printed as a Markdown table.
//!
//!     cargo run --release --example guard_rates [-- PEOPLE]

use cstatns::nir::{Nir, BODY_LEN};
use cstatns::population::Population;
use cstatns::sweep::{Places, Prefixes, Prior, Watch};
use rand::{Rng, SeedableRng};

type Body = [u8; BODY_LEN];

/// A client of the service as the detector sees it: its table and counts.
struct Client {
    prefixes: Prefixes,
    prior: Prior,
}

/// Where a client's batches tripped the detector, if they did.
struct Trip {
    /// Lines read before the trip (the tripping line included).
    line: u64,
    /// Swept lines among them (for a sweep mixed into a population).
    swept: u64,
    rule: &'static str,
}

impl Client {
    fn new(key: u64) -> Self {
        Self {
            prefixes: Prefixes::new(key),
            prior: Prior::default(),
        }
    }

    /// Sends `batches` (lines flagged swept or not); stops at the trip.
    /// Also says the highest order number sent.
    fn send(
        &mut self,
        batches: impl Iterator<Item = Vec<(Body, bool)>>,
    ) -> (u64, u16, Option<Trip>) {
        let (mut line, mut swept, mut most) = (0u64, 0u64, 0u16);
        for batch in batches {
            let mut w = Watch::new(self.prior);
            for (body, is_sweep) in &batch {
                line += 1;
                swept += u64::from(*is_sweep);
                let order = std::str::from_utf8(&body[10..]).map_or(0, |o| o.parse().unwrap_or(0));
                most = most.max(order);
                if w.observe(&mut self.prefixes, body) {
                    let rule = w.tripped().map_or("", |r| r.name());
                    return (line, most, Some(Trip { line, swept, rule }));
                }
            }
            let o = w.outcome();
            self.prior.lines += o.lines;
            self.prior.implausible += o.implausible;
        }
        (line, most, None)
    }
}

fn body_of(s: &str) -> Body {
    s.as_bytes().try_into().expect("13 characters")
}

/// Sequential order numbers 001–999 under every (sex, month) of `years`
/// at `place`.
fn sequential(place: &str, years: std::ops::Range<u32>) -> impl Iterator<Item = Body> + '_ {
    years.flat_map(move |y| {
        (1..=12u32).flat_map(move |m| {
            (1..=2u32).flat_map(move |s| {
                (1..=999u32).map(move |o| body_of(&format!("{s}{:02}{m:02}{place}{o:03}", y % 100)))
            })
        })
    })
}

/// Every commune of department `dept`, both sexes, one month, orders
/// `1..=orders`.
fn department_month(dept: &str, orders: u32) -> Vec<Body> {
    let p = Places::get();
    let mut v = Vec::new();
    for i in 0..p.communes() {
        let c = p.commune(i);
        if &c[..2] != dept.as_bytes() {
            continue;
        }
        let c = std::str::from_utf8(&c).expect("ASCII").to_owned();
        for s in 1..=2 {
            for o in 1..=orders {
                v.push(body_of(&format!("{s}9003{c}{o:03}")));
            }
        }
    }
    v
}

/// Random bodies that pass §2 (any body has its key): sex 1 or 2, the
/// other twelve digits at random.
fn random_valid(rng: &mut impl Rng) -> Body {
    let mut b = [b'0'; BODY_LEN];
    b[0] = b'1' + rng.gen_range(0..2u8);
    for c in &mut b[1..] {
        *c = b'0' + rng.gen_range(0..10u8);
    }
    b
}

/// Random bodies shaped like real ones: a commune of the list, a month
/// 01–12, an order number 001–999.
fn random_plausible(rng: &mut impl Rng) -> Body {
    let p = Places::get();
    let c = p.commune(rng.gen_range(0..p.communes()));
    let c = std::str::from_utf8(&c).expect("ASCII").to_owned();
    body_of(&format!(
        "{}{:02}{:02}{c}{:03}",
        rng.gen_range(1..=2),
        rng.gen_range(0..100),
        rng.gen_range(1..=12),
        rng.gen_range(1..=999)
    ))
}

fn chunks(v: Vec<(Body, bool)>, size: usize) -> impl Iterator<Item = Vec<(Body, bool)>> {
    let mut v = v.into_iter();
    std::iter::from_fn(move || {
        let c: Vec<_> = v.by_ref().take(size).collect();
        (!c.is_empty()).then_some(c)
    })
}

fn swept(v: impl IntoIterator<Item = Body>) -> Vec<(Body, bool)> {
    v.into_iter().map(|b| (b, true)).collect()
}

/// `sweep` lines mixed into `population` lines, one for every `every`.
fn mixed(population: &[Body], sweep: Vec<Body>, every: usize) -> Vec<(Body, bool)> {
    let mut out = Vec::new();
    let mut s = sweep.into_iter();
    for (i, b) in population.iter().enumerate() {
        out.push((*b, false));
        if i % every == every - 1 {
            match s.next() {
                Some(x) => out.push((x, true)),
                None => break,
            }
        }
    }
    out
}

fn main() {
    let people: usize = std::env::args()
        .nth(1)
        .map_or(10_000_000, |a| a.parse().expect("a number of people"));
    let started = std::time::Instant::now();
    let population: Vec<Body> = Population::new(2026)
        .take(people)
        .map(|n: Nir| *n.body())
        .collect();
    let places = Places::get();
    let implausible = population.iter().filter(|b| places.implausible(b)).count();
    let abroad = population.iter().filter(|b| &b[5..7] == b"99").count();
    eprintln!(
        "{people} people drawn in {:.1} s ({abroad} born abroad, {implausible} implausible)",
        started.elapsed().as_secs_f64()
    );

    println!(
        "| Population of {people} people, sent … | lines | highest order number | judged a sweep |"
    );
    println!("|---|---:|---:|---|");
    let fp = |name: &str, batches: Box<dyn Iterator<Item = Vec<(Body, bool)>>>| {
        let (lines, most, trip) = Client::new(1).send(batches);
        let verdict = match trip {
            Some(t) => format!("**yes**, line {} ({})", t.line, t.rule),
            None => "no".to_owned(),
        };
        println!("| {name} | {lines} | {most} | {verdict} |");
    };
    let all: Vec<(Body, bool)> = population.iter().map(|b| (*b, false)).collect();
    fp(
        "as one batch, in the order drawn",
        Box::new(std::iter::once(all.clone())),
    );
    let mut sorted = all.clone();
    sorted.sort_unstable_by_key(|a| a.0);
    fp(
        "as one batch, sorted by NIR",
        Box::new(std::iter::once(sorted.clone())),
    );
    fp(
        "as batches of 100,000",
        Box::new(chunks(all.clone(), 100_000)),
    );
    fp(
        "sorted, twice over (the same batch sent again)",
        Box::new([sorted.clone(), sorted].into_iter()),
    );
    // Maternities in small towns too (3,000 inhabitants or more): their
    // births are more than such towns' own, sorted by NIR.
    let mut small: Vec<(Body, bool)> = Population::with_maternities(2027, 3_000)
        .take(people)
        .map(|n: Nir| (*n.body(), false))
        .collect();
    small.sort_unstable_by_key(|a| a.0);
    fp(
        "drawn with maternities in towns of 3,000 or more, sorted by NIR",
        Box::new(std::iter::once(small)),
    );
    // One cohort: everyone born in one year, sorted, from the client
    // of a birth-year study.
    let cohort: Vec<(Body, bool)> = all
        .iter()
        .filter(|(b, _)| &b[1..3] == b"90")
        .copied()
        .collect();
    let cohort_lines = cohort.len();
    fp(
        &format!("the 1990 cohort alone ({cohort_lines} people)"),
        Box::new(std::iter::once(cohort)),
    );
    drop(all);

    println!();
    println!("| Sweep | swept lines before it trips | rule |");
    println!("|---|---:|---|");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let limit = 1_000_000usize;
    let report = |name: &str, batches: Box<dyn Iterator<Item = Vec<(Body, bool)>>>| {
        let (_, _, trip) = Client::new(2).send(batches);
        match trip {
            Some(t) => println!("| {name} | {} | {} |", t.swept, t.rule),
            None => println!("| {name} | not detected | |"),
        }
    };
    let paris15: Vec<Body> = sequential("75115", 1950..2025).take(limit).collect();
    report(
        "sequential order numbers, Paris 15e, month after month",
        Box::new(std::iter::once(swept(paris15.clone()))),
    );
    report(
        "sequential order numbers, a village (01002), month after month",
        Box::new(std::iter::once(swept(
            sequential("01002", 1950..2025).take(limit),
        ))),
    );
    report(
        "every commune of Gironde (33) for March 1990, orders 001–999",
        Box::new(std::iter::once(swept(department_month("33", 999)))),
    );
    report(
        "every commune of Gironde (33) for March 1990, orders 001–020",
        Box::new(std::iter::once(swept(department_month("33", 20)))),
    );
    report(
        "every commune of Gironde (33) for March 1990, orders 001–005",
        Box::new(std::iter::once(swept(department_month("33", 5)))),
    );
    let valid: Vec<Body> = (0..limit).map(|_| random_valid(&mut rng)).collect();
    report(
        "random valid keys (any body)",
        Box::new(std::iter::once(swept(valid.clone()))),
    );
    report(
        "random plausible bodies (real commune, month 01–12, order 001–999)",
        Box::new(std::iter::once(swept(
            (0..limit).map(|_| random_plausible(&mut rng)),
        ))),
    );
    report(
        "Paris 15e sequential, in batches of 100 lines (many days)",
        Box::new(chunks(swept(paris15.clone()), 100)),
    );
    report(
        "random valid keys, in batches of 50 lines (many days)",
        Box::new(chunks(swept(valid.clone()), 50)),
    );
    report(
        "Paris 15e sequential, one line in 10 of a population batch",
        Box::new(std::iter::once(mixed(&population, paris15.clone(), 10))),
    );
    report(
        "random valid keys, one line in 10 of a population batch",
        Box::new(std::iter::once(mixed(&population, valid.clone(), 10))),
    );
    report(
        "random valid keys, one line in 100 of a population batch",
        Box::new(std::iter::once(mixed(&population, valid, 100))),
    );
    report(
        "Paris 15e sequential, after 9 million population lines in its batch",
        Box::new(std::iter::once(
            population
                .iter()
                .take(9_000_000)
                .map(|b| (*b, false))
                .chain(swept(paris15))
                .collect(),
        )),
    );
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
}

//! Synthetic populations as birth registers make them, for measuring the
//! guard's sweep detector (docs/guard.md) and for tests: no real person's
//! number is ever used.
//!
//! Each person gets a sex (1 or 2, even odds), a birth year from 1925 to
//! 2025 weighted by survival (flat to 55 years of age, then down to none at
//! 101, with the 1946–1973 baby boom half as large again), a month from 01
//! to 12, and a place:
//! - 8 % are born abroad: `99` and an INSEE country code, weighted like
//!   France's foreign-born population (Algeria, Morocco, Portugal, Tunisia,
//!   Italy, …);
//! - the others are born in France, in a commune drawn by population from
//!   INSEE's list (`data/communes.txt`; Paris, Lyon and Marseille by
//!   arrondissement, as their registers number them). Most births
//!   happen where there is a maternity: a town of 15,000 inhabitants or
//!   more of the same department, drawn by population (or the department's
//!   largest town); the others at home, in the commune itself — half of the
//!   births before 1950, a tenth until 1970, 2 % since.
//!
//! Order numbers are the register's: 001, 002, … for each (sex, year,
//! month, place) in the order people are drawn; 1.5 % of births are twins
//! (two people, consecutive order numbers).

use std::collections::HashMap;

use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::nir::{Nir, BODY_LEN};

/// Countries of birth abroad (INSEE codes) and their weights.
const COUNTRIES: &[(u16, u32)] = &[
    (352, 230), // Algeria
    (350, 190), // Morocco
    (139, 100), // Portugal
    (351, 80),  // Tunisia
    (127, 50),  // Italy
    (134, 45),  // Spain
    (208, 40),  // Turkey
    (109, 25),  // Germany
    (131, 25),  // Belgium
    (132, 25),  // United Kingdom
    (341, 25),  // Senegal
    (326, 22),  // Côte d'Ivoire
    (335, 20),  // Mali
    (322, 20),  // Cameroon
    (243, 18),  // Viet Nam
    (216, 18),  // China
    (114, 18),  // Romania
    (122, 15),  // Poland
    (312, 15),  // DR Congo
    (333, 15),  // Madagascar
    (397, 12),  // Comoros
    (410, 12),  // Haiti
    (404, 10),  // United States
    (416, 10),  // Brazil
    (339, 10),  // Mauritania
    (324, 8),   // Congo
    (328, 8),   // Guinea
    (239, 8),   // Cambodia
    (223, 8),   // India
    (119, 6),   // Switzerland
];

/// A commune of the list: its body characters 6–10 and population.
struct Commune {
    code: [u8; 5],
    pop: u64,
    kind: u8,
}

fn communes() -> Vec<Commune> {
    include_str!("../data/communes.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(' ');
            let code: [u8; 5] = f.next()?.as_bytes().try_into().ok()?;
            let pop = f.next()?.parse().ok()?;
            let kind = *f.next()?.as_bytes().first()?;
            Some(Commune { code, pop, kind })
        })
        .collect()
}

/// Where births of one department happen.
struct Department {
    /// Communes where people live (current communes; arrondissements for
    /// Paris, Lyon and Marseille), by population.
    homes: Vec<[u8; 5]>,
    home_weights: WeightedIndex<u64>,
    /// Towns with a maternity, by population.
    maternities: Vec<[u8; 5]>,
    maternity_weights: WeightedIndex<u64>,
}

/// A generator of synthetic populations (seeded: the same seed gives the
/// same people).
pub struct Population {
    rng: StdRng,
    departments: Vec<Department>,
    department_weights: WeightedIndex<u64>,
    years: WeightedIndex<f64>,
    countries: WeightedIndex<u32>,
    orders: HashMap<[u8; 10], u16>,
    twin: Option<([u8; BODY_LEN], u32)>,
}

/// One person's birth, as [`Population::next_birth`] draws it.
pub struct Birth {
    /// The NIR.
    pub nir: Nir,
    /// The year of birth (the NIR has only its last two digits).
    pub year: u32,
    /// The twin of the person drawn just before (same place, month and year).
    pub twin: bool,
}

impl Population {
    /// A generator drawing from `seed`, maternities in towns of 15,000
    /// inhabitants or more.
    pub fn new(seed: u64) -> Self {
        Self::with_maternities(seed, 15_000)
    }

    /// The same with maternities in towns of `min_pop` inhabitants or more.
    pub fn with_maternities(seed: u64, min_pop: u64) -> Self {
        let all = communes();
        // Cities numbered by arrondissement: their arrondissements replace them.
        let city = |c: &Commune| matches!(&c.code, b"75056" | b"69123" | b"13055");
        let mut by_dept: HashMap<[u8; 2], Vec<&Commune>> = HashMap::new();
        for c in &all {
            let lives_here = (c.kind == b'c' && !city(c)) || c.kind == b'a';
            if lives_here && c.pop > 0 {
                by_dept.entry([c.code[0], c.code[1]]).or_default().push(c);
            }
        }
        let mut departments = Vec::new();
        let mut weights = Vec::new();
        let mut keys: Vec<_> = by_dept.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            let homes = &by_dept[&k];
            let mut maternities: Vec<&Commune> =
                homes.iter().copied().filter(|c| c.pop >= min_pop).collect();
            if maternities.is_empty() {
                if let Some(largest) = homes.iter().max_by_key(|c| c.pop) {
                    maternities.push(largest);
                }
            }
            let total: u64 = homes.iter().map(|c| c.pop).sum();
            let (Ok(home_weights), Ok(maternity_weights)) = (
                WeightedIndex::new(homes.iter().map(|c| c.pop)),
                WeightedIndex::new(maternities.iter().map(|c| c.pop)),
            ) else {
                continue;
            };
            departments.push(Department {
                homes: homes.iter().map(|c| c.code).collect(),
                home_weights,
                maternities: maternities.iter().map(|c| c.code).collect(),
                maternity_weights,
            });
            weights.push(total);
        }
        let years = WeightedIndex::new((1925..=2025).map(|y: i32| {
            let age = f64::from(2025 - y);
            let survival = if age < 55.0 {
                1.0
            } else {
                (101.0 - age) / 46.0
            };
            let boom = if (1946..=1973).contains(&y) { 1.5 } else { 1.0 };
            survival * boom
        }))
        .expect("positive weights");
        Self {
            rng: StdRng::seed_from_u64(seed),
            departments,
            department_weights: WeightedIndex::new(weights).expect("positive weights"),
            years,
            countries: WeightedIndex::new(COUNTRIES.iter().map(|c| c.1)).expect("positive weights"),
            orders: HashMap::new(),
            twin: None,
        }
    }

    /// The next person's NIR.
    pub fn next_nir(&mut self) -> Nir {
        self.next_birth().nir
    }

    /// The next person's NIR, birth year, and whether they are the twin of
    /// the person before.
    pub fn next_birth(&mut self) -> Birth {
        if let Some((body, year)) = self.twin.take() {
            return Birth {
                nir: Nir::parse(&body).expect("a valid body"),
                year,
                twin: true,
            };
        }
        loop {
            let year = 1925 + self.years.sample(&mut self.rng) as u32;
            let month = self.rng.gen_range(1..=12u32);
            let sex = self.rng.gen_range(1..=2u32);
            let place: [u8; 5] = if self.rng.gen_bool(0.08) {
                let c = COUNTRIES[self.countries.sample(&mut self.rng)].0;
                let d = |v: u16| b'0' + (v % 10) as u8;
                [b'9', b'9', d(c / 100), d(c / 10), d(c)]
            } else {
                let dept = &self.departments[self.department_weights.sample(&mut self.rng)];
                let home = match year {
                    ..1950 => 0.5,
                    1950..1970 => 0.1,
                    _ => 0.02,
                };
                if self.rng.gen_bool(home) {
                    dept.homes[dept.home_weights.sample(&mut self.rng)]
                } else {
                    dept.maternities[dept.maternity_weights.sample(&mut self.rng)]
                }
            };
            let mut prefix = [0u8; 10];
            let head = format!("{sex}{:02}{month:02}", year % 100);
            prefix[..5].copy_from_slice(head.as_bytes());
            prefix[5..].copy_from_slice(&place);
            let twins = self.rng.gen_bool(0.015);
            let count = self.orders.entry(prefix).or_insert(0);
            if *count + u16::from(twins) >= 999 {
                continue; // this register is full: draw someone else
            }
            *count += 1;
            let mut body = [0u8; BODY_LEN];
            body[..10].copy_from_slice(&prefix);
            let write = |body: &mut [u8; BODY_LEN], o: u16| {
                let o = o.to_string();
                let o = format!("{o:0>3}");
                body[10..].copy_from_slice(o.as_bytes());
            };
            write(&mut body, *count);
            if twins {
                *count += 1;
                let mut second = body;
                write(&mut second, *count);
                self.twin = Some((second, year));
            }
            return Birth {
                nir: Nir::parse(&body).expect("a valid body"),
                year,
                twin: false,
            };
        }
    }
}

impl Iterator for Population {
    type Item = Nir;

    fn next(&mut self) -> Option<Nir> {
        Some(self.next_nir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_population_is_plausible_varied_and_seeded() {
        let places = crate::sweep::Places::get();
        let people: Vec<Nir> = Population::new(1).take(100_000).collect();
        let abroad = people.iter().filter(|n| &n.body()[5..7] == b"99").count();
        assert!((7000..9000).contains(&abroad), "{abroad} born abroad");
        assert!(people.iter().all(|n| !places.implausible(n.body())));
        let again: Vec<Nir> = Population::new(1).take(100).collect();
        assert!(again.iter().zip(&people).all(|(a, b)| a.body() == b.body()));
        let distinct: std::collections::HashSet<_> = people.iter().map(|n| *n.body()).collect();
        assert_eq!(distinct.len(), people.len());
    }
}

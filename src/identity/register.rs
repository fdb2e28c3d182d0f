//! The register in memory, and the matching rules (`docs/identity.md`).
//!
//! People are held sorted by (sex, birth date), so that everyone born on a
//! day is one slice, found with one look-up in a table of days; their names
//! are in one buffer in the same order, so that a day's people and their
//! names are two runs of memory. A second index finds people by (sex,
//! surname, birth year), for the birth and the usual name alike. A look-up
//! first asks for an exact match in the day's slice; only when there is
//! none does it score the candidates of the tolerant rules.

use std::hash::{DefaultHasher, Hash, Hasher};

use zeroize::Zeroize;

use super::normal::distance;
use super::{ymd, Date, Query};
use crate::nir::BODY_LEN;

/// One person of the register, normalised.
#[derive(Clone)]
pub struct Person {
    /// The NIR's canonical body.
    pub nir: [u8; BODY_LEN],
    /// `1` or `2`.
    pub sex: u8,
    /// Birth date (`00` for unknown parts).
    pub date: Date,
    /// Birth place.
    pub place: [u8; 5],
    /// Birth name key.
    pub birth: String,
    /// Usual name key (empty: none).
    pub usual: String,
    /// First names key.
    pub first: String,
}

impl Drop for Person {
    fn drop(&mut self) {
        self.nir.zeroize();
        self.birth.zeroize();
        self.usual.zeroize();
        self.first.zeroize();
    }
}

/// What a look-up found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found {
    /// One person, every trait equal: the index of that person.
    Exact(u32),
    /// One person within tolerance, with the score ([`THRESHOLD`] to 1).
    Approximate(u32, f32),
    /// Several people.
    Ambiguous,
    /// No one.
    NotFound,
}

/// The lowest score of a tolerant match.
pub const THRESHOLD: f32 = 0.75;

/// Two tolerant candidates closer than this are ambiguous.
pub const MARGIN: f32 = 0.1;

/// A name key is kept to this many bytes (the normalisation cuts longer
/// ones on a character's boundary; this keeps the lengths in a byte).
const KEY_MAX: usize = super::normal::KEY_MAX;

fn cap(key: &str) -> &[u8] {
    let b = key.as_bytes();
    &b[..b.len().min(KEY_MAX)]
}

/// One person as held: 36 bytes, names in [`Register::names`].
struct Entry {
    nir: [u8; BODY_LEN],
    sex: u8,
    place: [u8; 5],
    /// Lengths of the birth, usual and first names keys.
    lens: [u8; 3],
    date: Date,
    /// Where the three keys start in the names buffer, one after the other.
    names: u32,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.nir.zeroize();
    }
}

/// Years a day table covers, from [`super::FIRST_YEAR`].
const YEARS: u32 = 200;
const DAYS_A_YEAR: u32 = 13 * 32;

/// A (sex, date)'s slot in the day table.
fn day_slot(sex: u8, date: Date) -> Option<usize> {
    let (y, m, d) = ymd(date);
    let year = y.checked_sub(super::FIRST_YEAR).filter(|&y| y < YEARS)?;
    let sex = u32::from(sex.checked_sub(b'1').filter(|&s| s < 2)?);
    Some(((sex * YEARS + year) * DAYS_A_YEAR + m * 32 + d) as usize)
}

/// The register, in memory.
pub struct Register {
    entries: Vec<Entry>,
    /// Every entry's name keys, in the entries' order.
    names: Vec<u8>,
    /// For each day slot, where its people start in `entries` (one more
    /// slot at the end).
    days: Vec<u32>,
    /// Everyone by (sex, surname, birth year), sorted by key.
    by_name: Vec<Named>,
    /// For each value of a key's top 16 bits, where it starts in `by_name`.
    name_buckets: Vec<u32>,
}

/// One person in the name index: the key of (sex, surname, birth year),
/// and the birth date beside it so that the candidates of a tolerant
/// look-up are sifted by date without a read of their entries (a common
/// name's year holds hundreds of people, scattered over the register).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Named {
    key: u64,
    date: Date,
    entry: u32,
}

impl Drop for Register {
    fn drop(&mut self) {
        self.names.zeroize();
    }
}

fn name_key(sex: u8, surname: &[u8], year: u32) -> u64 {
    let mut h = DefaultHasher::new();
    (sex, surname, year).hash(&mut h);
    h.finish()
}

impl Register {
    /// The register of `people` (dates outside the years the day table
    /// covers are kept out; the loader accepts none).
    pub fn new(mut people: Vec<Person>) -> Register {
        people.retain(|p| day_slot(p.sex, p.date).is_some());
        people.sort_unstable_by_key(|p| (p.sex, p.date));
        let mut names = Vec::new();
        let mut entries = Vec::with_capacity(people.len());
        let slots = 2 * (YEARS * DAYS_A_YEAR) as usize;
        let mut days = vec![0u32; slots + 1];
        for p in &people {
            let keys = [cap(&p.birth), cap(&p.usual), cap(&p.first)];
            let at = names.len() as u32;
            for k in keys {
                names.extend_from_slice(k);
            }
            entries.push(Entry {
                nir: p.nir,
                sex: p.sex,
                place: p.place,
                lens: keys.map(|k| k.len() as u8),
                date: p.date,
                names: at,
            });
            if let Some(slot) = day_slot(p.sex, p.date) {
                days[slot + 1] += 1;
            }
        }
        drop(people); // wiped by Person's Drop
        for i in 1..days.len() {
            days[i] += days[i - 1];
        }
        let mut register = Register {
            entries,
            names,
            days,
            by_name: Vec::new(),
            name_buckets: Vec::new(),
        };
        let mut by_name = Vec::with_capacity(register.entries.len() * 5 / 4);
        for (i, e) in register.entries.iter().enumerate() {
            let year = e.date / 10_000;
            let (birth, usual) = (register.birth(e), register.usual(e));
            let (date, entry) = (e.date, i as u32);
            by_name.push(Named {
                key: name_key(e.sex, birth, year),
                date,
                entry,
            });
            if !usual.is_empty() && usual != birth {
                by_name.push(Named {
                    key: name_key(e.sex, usual, year),
                    date,
                    entry,
                });
            }
        }
        by_name.sort_unstable();
        let mut buckets = vec![0u32; (1 << 16) + 1];
        for n in &by_name {
            buckets[(n.key >> 48) as usize + 1] += 1;
        }
        for i in 1..buckets.len() {
            buckets[i] += buckets[i - 1];
        }
        register.by_name = by_name;
        register.name_buckets = buckets;
        register
    }

    /// How many people it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Person `i`'s NIR body.
    pub fn nir(&self, i: u32) -> &[u8; BODY_LEN] {
        &self.entries[i as usize].nir
    }

    fn key(&self, e: &Entry, which: usize) -> &[u8] {
        let skip: usize = e.lens[..which].iter().map(|&l| usize::from(l)).sum();
        let at = e.names as usize + skip;
        &self.names[at..at + usize::from(e.lens[which])]
    }

    fn birth(&self, e: &Entry) -> &[u8] {
        self.key(e, 0)
    }

    fn usual(&self, e: &Entry) -> &[u8] {
        self.key(e, 1)
    }

    fn first(&self, e: &Entry) -> &[u8] {
        self.key(e, 2)
    }

    /// Everyone of `sex` born on `date` (as recorded).
    fn born(&self, sex: u8, date: Date) -> std::ops::Range<usize> {
        match day_slot(sex, date) {
            Some(s) => self.days[s] as usize..self.days[s + 1] as usize,
            None => 0..0,
        }
    }

    /// The people of `sex` with `surname` (birth or usual) born in `date`'s
    /// year on a date that can be `date` ([`date_factor`] above 0).
    fn named(&self, sex: u8, surname: &[u8], date: Date) -> impl Iterator<Item = u32> + '_ {
        let k = name_key(sex, surname, date / 10_000);
        let b = (k >> 48) as usize;
        let (lo, hi) = (
            self.name_buckets[b] as usize,
            self.name_buckets[b + 1] as usize,
        );
        let run = &self.by_name[lo..hi];
        let from = run.partition_point(|n| n.key < k);
        run[from..]
            .iter()
            .take_while(move |n| n.key == k)
            .filter(move |n| date_factor(date, n.date) > 0.0)
            .map(|n| n.entry)
    }

    /// Looks `q` up: exact first, then the tolerant rules.
    pub fn lookup(&self, q: &Query) -> Found {
        self.exact(q).unwrap_or_else(|| self.tolerant(q))
    }

    /// The exact match of `q`: [`Found::Exact`], [`Found::Ambiguous`] for
    /// several people, `None` for no one.
    pub fn exact(&self, q: &Query) -> Option<Found> {
        let (birth, usual, first) = (cap(&q.birth), cap(&q.usual), cap(&q.first));
        let mut exact = None;
        for i in self.born(q.sex, q.date) {
            let e = &self.entries[i];
            if e.place == q.place
                && self.birth(e) == birth
                && self.first(e) == first
                && (usual.is_empty() || self.usual(e) == usual)
            {
                if exact.is_some() {
                    return Some(Found::Ambiguous);
                }
                exact = Some(i as u32);
            }
        }
        exact.map(Found::Exact)
    }

    fn tolerant(&self, q: &Query) -> Found {
        // The people of the same sex with the name given (as their birth or
        // usual name) and a date that can be the one given: every rule but a
        // typo in the name. For a typo, the people born on the day given, in
        // the place given, with a name of a length a typo can reach: the
        // only ones [`Register::score`] lets a typo score (a typo with
        // another error of the date scores below the threshold, but for a
        // day recorded as unknown, which this leaves out). Anyone else
        // born that day scores above 0 only through the name, as the name
        // index finds them.
        let (qb, qu) = (cap(&q.birth), cap(&q.usual));
        let mut candidates: Vec<u32> = self
            .born(q.sex, q.date)
            .filter(|&i| {
                let e = &self.entries[i];
                e.place == q.place && qb.len().abs_diff(usize::from(e.lens[0])) <= 2
            })
            .map(|i| i as u32)
            .collect();
        candidates.extend(self.named(q.sex, qb, q.date));
        if !qu.is_empty() && qu != qb {
            candidates.extend(self.named(q.sex, qu, q.date));
        }
        candidates.sort_unstable();
        candidates.dedup();
        self.pick(q, candidates.iter().copied())
    }

    /// The tolerant answer among `candidates` (each once).
    fn pick(&self, q: &Query, candidates: impl Iterator<Item = u32>) -> Found {
        let (mut best, mut second) = ((0.0f32, u32::MAX), 0.0f32);
        for i in candidates {
            let s = self.score(q, i);
            if s > best.0 {
                second = best.0;
                best = (s, i);
            } else if s > second {
                second = s;
            }
        }
        if best.0 < THRESHOLD {
            Found::NotFound
        } else if second >= THRESHOLD && best.0 - second < MARGIN {
            Found::Ambiguous
        } else {
            Found::Approximate(best.1, best.0)
        }
    }

    /// The tolerant score of person `i` for `q`: the product of each
    /// trait's factor, 0 when a trait is too far (`docs/identity.md` lists
    /// the factors).
    pub fn score(&self, q: &Query, i: u32) -> f32 {
        let e = &self.entries[i as usize];
        if e.sex != q.sex {
            return 0.0;
        }
        let date = date_factor(q.date, e.date);
        if date == 0.0 {
            return 0.0;
        }
        let (qb, qu) = (cap(&q.birth), cap(&q.usual));
        // Cheap tests first: most candidates (everyone born that day) fail
        // on the name, and a typo is looked for only where the rest leaves
        // room for it (0.85 at best, so no other error but a missing first
        // name, 0.765).
        let typo_possible =
            date == 1.0 && q.place == e.place && qb.len().abs_diff(usize::from(e.lens[0])) <= 2;
        let (pb, pu) = (self.birth(e), self.usual(e));
        let (birth, first) = if pb == qb {
            (1.0, first_factor(cap(&q.first), self.first(e)))
        } else if (!pu.is_empty() && pu == qb) || (!qu.is_empty() && qu == pb) {
            // The usual (married) name given as the birth name, or the other way.
            (0.9, first_factor(cap(&q.first), self.first(e)))
        } else if typo_possible {
            match first_factor(cap(&q.first), self.first(e)) {
                f if f >= 0.9 => (typo_factor(qb, pb), f),
                _ => (0.0, 0.0),
            }
        } else {
            (0.0, 0.0)
        };
        if birth == 0.0 || first == 0.0 {
            return 0.0;
        }
        let place = if q.place == e.place { 1.0 } else { 0.8 };
        let usual = if qu.is_empty() || qu == pu { 1.0 } else { 0.95 };
        date * birth * first * place * usual
    }
}

/// Equal dates 1; one recorded with an unknown day or month 0.9; day and
/// month swapped 0.85; otherwise 0.
fn date_factor(q: Date, p: Date) -> f32 {
    if q == p {
        return 1.0;
    }
    let ((qy, qm, qd), (py, pm, pd)) = (ymd(q), ymd(p));
    if qy != py {
        return 0.0;
    }
    let part = |a: u32, b: u32| a == b || a == 0 || b == 0;
    if part(qm, pm) && part(qd, pd) {
        0.9
    } else if qd == pm && qm == pd {
        0.85
    } else {
        0.0
    }
}

/// One edit in a key of 4 letters or more 0.85, two in one of 8 or more
/// 0.75; otherwise 0.
fn typo_factor(a: &[u8], b: &[u8]) -> f32 {
    let len = a.len().min(b.len());
    match distance(a, b, 2) {
        Some(1) if len >= 4 => 0.85,
        Some(2) if len >= 8 => 0.75,
        _ => 0.0,
    }
}

fn words(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == b' ').filter(|w| !w.is_empty())
}

/// Whether every word of `a` is a word of `b`.
fn subset(a: &[u8], b: &[u8]) -> bool {
    words(a).all(|w| words(b).any(|v| v == w))
}

/// Equal 1; the words of one a subset of the other's (a missing second
/// first name) 0.9; a typo as for names; otherwise 0.
fn first_factor(q: &[u8], p: &[u8]) -> f32 {
    if q == p {
        return 1.0;
    }
    if subset(q, p) || subset(p, q) {
        return 0.9;
    }
    typo_factor(q, p)
}

#[cfg(test)]
mod tests {
    use super::super::normal::{first_names, surname};
    use super::*;

    fn person(
        nir: &str,
        sex: u8,
        birth: &str,
        usual: &str,
        first: &str,
        date: Date,
        place: &str,
    ) -> Person {
        Person {
            nir: nir.as_bytes().try_into().unwrap(),
            sex,
            date,
            place: place.as_bytes().try_into().unwrap(),
            birth: surname(birth),
            usual: surname(usual),
            first: first_names(first),
        }
    }

    fn query(sex: u8, birth: &str, usual: &str, first: &str, date: Date, place: &str) -> Query {
        Query {
            sex,
            birth: surname(birth),
            usual: surname(usual),
            first: first_names(first),
            date,
            place: place.as_bytes().try_into().unwrap(),
        }
    }

    fn register() -> Register {
        Register::new(vec![
            person(
                "2610575115001",
                b'2',
                "Lefèvre",
                "Martin",
                "Marie Claire",
                19610512,
                "75115",
            ),
            person(
                "2610575115002",
                b'2',
                "Lefèvre",
                "",
                "Marie Anne",
                19610512,
                "75115",
            ),
            person(
                "1610575115003",
                b'1',
                "de La Fontaine",
                "",
                "Jean-Pierre",
                19610512,
                "75115",
            ),
            person(
                "1610599350004",
                b'1',
                "N'Diaye",
                "",
                "Moussa",
                19610000,
                "99350",
            ),
            person(
                "1700169123005",
                b'1',
                "Dupont",
                "",
                "Paul",
                19700103,
                "69123",
            ),
        ])
    }

    fn nir_of(r: &Register, f: Found) -> Option<&str> {
        match f {
            Found::Exact(i) | Found::Approximate(i, _) => {
                Some(std::str::from_utf8(r.nir(i)).unwrap())
            }
            _ => None,
        }
    }

    #[test]
    fn exact_after_normalisation() {
        let r = register();
        let f = r.lookup(&query(
            b'1',
            "LA FONTAINE",
            "",
            "jean pierre",
            19610512,
            "75115",
        ));
        assert!(matches!(f, Found::Exact(_)));
        assert_eq!(nir_of(&r, f), Some("1610575115003"));
        // Twins: each is found by her own first names.
        let f = r.lookup(&query(
            b'2',
            "LEFEVRE",
            "",
            "Claire Marie",
            19610512,
            "75115",
        ));
        assert_eq!(nir_of(&r, f), Some("2610575115001"));
        assert!(matches!(f, Found::Exact(_)));
    }

    #[test]
    fn the_tolerant_rules_and_ambiguity() {
        let r = register();
        let cases = [
            // A typo in the surname.
            (
                query(b'1', "Dupond", "", "Paul", 19700103, "69123"),
                Some("1700169123005"),
            ),
            // Day and month swapped.
            (
                query(b'1', "Dupont", "", "Paul", 19700301, "69123"),
                Some("1700169123005"),
            ),
            // The married name given as the birth name.
            (
                query(b'2', "Martin", "", "Marie Claire", 19610512, "75115"),
                Some("2610575115001"),
            ),
            // Recorded with an unknown day and month.
            (
                query(b'1', "Ndiaye", "", "Moussa", 19610704, "99350"),
                Some("1610599350004"),
            ),
            // Another place only.
            (
                query(b'1', "Dupont", "", "Paul", 19700103, "69381"),
                Some("1700169123005"),
            ),
        ];
        for (q, want) in cases {
            let f = r.lookup(&q);
            assert!(
                matches!(f, Found::Approximate(_, s) if s >= THRESHOLD),
                "{f:?}"
            );
            assert_eq!(nir_of(&r, f), want);
        }
        // A missing second first name fits both twins.
        assert_eq!(
            r.lookup(&query(b'2', "Lefèvre", "", "Marie", 19610512, "75115")),
            Found::Ambiguous
        );
        // Someone else.
        assert_eq!(
            r.lookup(&query(b'1', "Durand", "", "Paul", 19700103, "69123")),
            Found::NotFound
        );
        // The right name, another sex.
        assert_eq!(
            r.lookup(&query(b'2', "Dupont", "", "Paul", 19700103, "69123")),
            Found::NotFound
        );
    }

    #[test]
    fn the_candidates_are_everyone_the_score_lets_through() {
        // The look-up sifts its candidates (the name index by date, the
        // day's people by place and length); scoring everyone instead must
        // give the same answers, on a register with errors of every kind.
        use crate::identity::synth::{Error, Synth};
        use crate::identity::{parse_date, RawTraits};
        use rand::SeedableRng;
        let people: Vec<_> = Synth::new(5).take(6_000).collect();
        let r = Register::new(
            people
                .iter()
                .map(|p| Person {
                    nir: p.nir.as_bytes().try_into().unwrap(),
                    sex: b'0' + p.sex,
                    date: parse_date(p.birth_date.as_bytes()).unwrap(),
                    place: p.birth_place.as_bytes().try_into().unwrap(),
                    birth: surname(&p.birth_name),
                    usual: surname(&p.usual_name),
                    first: first_names(&p.first_names.join(" ")),
                })
                .collect(),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (mut asked, mut approximate) = (0, 0);
        for (n, p) in people.iter().step_by(3).enumerate() {
            let error = Error::ALL[n % Error::ALL.len()];
            if !p.allows(error) {
                continue;
            }
            let row = p.query(error, &mut rng);
            let q = RawTraits {
                traits: [
                    &row.sex,
                    &row.birth_name,
                    &row.first_names,
                    &row.birth_date,
                    &row.birth_place,
                ]
                .map(|f| f.as_bytes()),
                usual_name: p.usual_name.as_bytes(),
            }
            .query()
            .unwrap();
            let everyone = r.exact(&q).unwrap_or_else(|| r.pick(&q, 0..r.len() as u32));
            let found = r.lookup(&q);
            assert_eq!(found, everyone, "query {n}");
            asked += 1;
            approximate += usize::from(matches!(found, Found::Approximate(..)));
        }
        assert!(asked > 1_200 && approximate > 500, "{asked} {approximate}");
    }

    #[test]
    fn homonyms_are_ambiguous() {
        let r = Register::new(vec![
            person(
                "1700169123005",
                b'1',
                "Martin",
                "",
                "Paul",
                19700103,
                "69123",
            ),
            person(
                "1700169123006",
                b'1',
                "Martin",
                "",
                "Paul",
                19700103,
                "69123",
            ),
        ]);
        assert_eq!(
            r.lookup(&query(b'1', "Martin", "", "Paul", 19700103, "69123")),
            Found::Ambiguous
        );
    }
}

//! The register in memory, and the matching rules (`docs/identity.md`).
//!
//! People are held sorted by (sex, birth date), so that everyone born on a
//! day is one slice; a second index finds them by (sex, surname, birth
//! year), for the birth and the usual name alike. A look-up first asks for
//! an exact match in the day's slice; only when there is none does it score
//! the candidates of the tolerant rules.

use std::hash::{DefaultHasher, Hash, Hasher};

use zeroize::Zeroize;

use super::normal::distance;
use super::{ymd, Date, Query};
use crate::nir::BODY_LEN;

/// One person of the register, normalised.
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
    /// One person within tolerance, with the score (0.7 to 1).
    Approximate(u32, f32),
    /// Several people.
    Ambiguous,
    /// No one.
    NotFound,
}

/// The lowest score of a tolerant match.
pub const THRESHOLD: f32 = 0.7;

/// Two tolerant candidates closer than this are ambiguous.
pub const MARGIN: f32 = 0.1;

/// The register, in memory.
pub struct Register {
    people: Vec<Person>,
    /// (key of sex, surname and birth year; person), sorted.
    by_name: Vec<(u64, u32)>,
}

fn name_key(sex: u8, surname: &str, year: u32) -> u64 {
    let mut h = DefaultHasher::new();
    (sex, surname, year).hash(&mut h);
    h.finish()
}

impl Register {
    /// The register of `people`.
    pub fn new(mut people: Vec<Person>) -> Register {
        people.sort_unstable_by_key(|p| (p.sex, p.date));
        let mut by_name = Vec::with_capacity(people.len() * 5 / 4);
        for (i, p) in people.iter().enumerate() {
            let year = p.date / 10_000;
            by_name.push((name_key(p.sex, &p.birth, year), i as u32));
            if !p.usual.is_empty() && p.usual != p.birth {
                by_name.push((name_key(p.sex, &p.usual, year), i as u32));
            }
        }
        by_name.sort_unstable();
        Register { people, by_name }
    }

    /// How many people it holds.
    pub fn len(&self) -> usize {
        self.people.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// Person `i`'s NIR body.
    pub fn nir(&self, i: u32) -> &[u8; BODY_LEN] {
        &self.people[i as usize].nir
    }

    /// Person `i`.
    pub fn person(&self, i: u32) -> &Person {
        &self.people[i as usize]
    }

    /// Everyone of `sex` born on `date` (as recorded).
    fn born(&self, sex: u8, date: Date) -> std::ops::Range<usize> {
        let lo = self
            .people
            .partition_point(|p| (p.sex, p.date) < (sex, date));
        let hi = lo + self.people[lo..].partition_point(|p| (p.sex, p.date) <= (sex, date));
        lo..hi
    }

    fn named(&self, sex: u8, surname: &str, year: u32) -> impl Iterator<Item = u32> + '_ {
        let k = name_key(sex, surname, year);
        let lo = self.by_name.partition_point(|e| e.0 < k);
        self.by_name[lo..]
            .iter()
            .take_while(move |e| e.0 == k)
            .map(|e| e.1)
    }

    /// Looks `q` up: exact first, then the tolerant rules.
    pub fn lookup(&self, q: &Query) -> Found {
        let mut exact = None;
        for i in self.born(q.sex, q.date) {
            let p = &self.people[i];
            if p.birth == q.birth && p.first == q.first && p.place == q.place && usual_equal(q, p) {
                if exact.is_some() {
                    return Found::Ambiguous;
                }
                exact = Some(i as u32);
            }
        }
        if let Some(i) = exact {
            return Found::Exact(i);
        }
        self.tolerant(q)
    }

    fn tolerant(&self, q: &Query) -> Found {
        let mut candidates: Vec<u32> = Vec::new();
        let (y, m, d) = ymd(q.date);
        if d != 0 {
            candidates.extend(self.born(q.sex, q.date).map(|i| i as u32));
            // Recorded with an unknown day, or day and month.
            candidates.extend(self.born(q.sex, y * 10_000 + m * 100).map(|i| i as u32));
            if d <= 12 && d != m {
                candidates.extend(self.born(q.sex, y * 10_000 + d * 100 + m).map(|i| i as u32));
            }
        }
        if m != 0 {
            candidates.extend(self.born(q.sex, y * 10_000).map(|i| i as u32));
        }
        candidates.extend(self.named(q.sex, &q.birth, y));
        if !q.usual.is_empty() && q.usual != q.birth {
            candidates.extend(self.named(q.sex, &q.usual, y));
        }
        candidates.sort_unstable();
        candidates.dedup();
        let (mut best, mut second) = ((0.0f32, u32::MAX), 0.0f32);
        for &i in &candidates {
            let s = score(q, &self.people[i as usize]);
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
}

fn usual_equal(q: &Query, p: &Person) -> bool {
    q.usual.is_empty() || q.usual == p.usual
}

/// The tolerant score of `p` for `q`: the product of each trait's factor,
/// 0 when a trait is too far (`docs/identity.md` lists the factors).
pub fn score(q: &Query, p: &Person) -> f32 {
    let date = date_factor(q.date, p.date);
    if date == 0.0 {
        return 0.0;
    }
    let birth = if p.birth == q.birth {
        1.0
    } else if (!p.usual.is_empty() && p.usual == q.birth)
        || (!q.usual.is_empty() && q.usual == p.birth)
    {
        0.9 // the usual (married) name given as the birth name, or the other way
    } else {
        typo_factor(&q.birth, &p.birth)
    };
    if birth == 0.0 {
        return 0.0;
    }
    let first = first_factor(&q.first, &p.first);
    let place = if q.place == p.place { 1.0 } else { 0.8 };
    let usual = if usual_equal(q, p) { 1.0 } else { 0.95 };
    date * birth * first * place * usual
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
fn typo_factor(a: &str, b: &str) -> f32 {
    let len = a.len().min(b.len());
    match distance(a, b, 2) {
        Some(1) if len >= 4 => 0.85,
        Some(2) if len >= 8 => 0.75,
        _ => 0.0,
    }
}

/// Equal 1; one list the start of the other, or its words a subset (a
/// missing second first name) 0.9; a typo as for names; otherwise 0.
fn first_factor(q: &str, p: &str) -> f32 {
    if q == p {
        return 1.0;
    }
    let (qs, ps): (Vec<&str>, Vec<&str>) = (q.split(' ').collect(), p.split(' ').collect());
    let subset = |a: &[&str], b: &[&str]| a.iter().all(|w| b.contains(w));
    if subset(&qs, &ps) || subset(&ps, &qs) {
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

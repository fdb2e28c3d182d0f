//! A synthetic register (feature `dev-kit`): realistic people who never
//! existed, for the demo, the tests and the quality measurements.
//!
//! NIRs come from [`crate::population::Population`] (real communes, births
//! in towns with maternities, about 8 % born abroad, twins). Each person
//! gets a birth day in their month (a few partial dates, more often for
//! people born abroad), a surname drawn with a steep popularity curve (so
//! homonyms are common), with accents, hyphens, apostrophes and particles,
//! one to three first names (compound ones among them), and for a part of
//! the women a usual (married) name.
//!
//! [`Person::query`] writes the traits a submitter would send for someone,
//! spelt another way and with an error of a chosen [`Error`] kind.

use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::population::Population;

const SURNAMES: &[&str] = &[
    "MARTIN",
    "BERNARD",
    "THOMAS",
    "PETIT",
    "ROBERT",
    "RICHARD",
    "DURAND",
    "DUBOIS",
    "MOREAU",
    "LAURENT",
    "SIMON",
    "MICHEL",
    "LEFÈVRE",
    "LEROY",
    "ROUX",
    "DAVID",
    "BERTRAND",
    "MOREL",
    "FOURNIER",
    "GIRARD",
    "BONNET",
    "DUPONT",
    "LAMBERT",
    "FONTAINE",
    "ROUSSEAU",
    "VINCENT",
    "MÜLLER",
    "LEFEBVRE",
    "FAURE",
    "ANDRÉ",
    "MERCIER",
    "BLANC",
    "GUÉRIN",
    "BOYER",
    "GARNIER",
    "CHEVALIER",
    "FRANÇOIS",
    "LEGRAND",
    "GAUTHIER",
    "GARCIA",
    "PERRIN",
    "ROBIN",
    "CLÉMENT",
    "MORIN",
    "NICOLAS",
    "HENRY",
    "ROUSSEL",
    "MATHIEU",
    "GAUTIER",
    "MASSON",
    "MARCHAND",
    "DUVAL",
    "DENIS",
    "DUMONT",
    "MARIE",
    "LEMAIRE",
    "NOËL",
    "MEYER",
    "DUFOUR",
    "MEUNIER",
    "BRUN",
    "BLANCHARD",
    "GIRAUD",
    "JOLY",
    "RIVIÈRE",
    "LUCAS",
    "BRUNET",
    "GAILLARD",
    "BARBIER",
    "ARNAUD",
    "MARTINEZ",
    "GÉRARD",
    "ROCHE",
    "RENARD",
    "SCHMITT",
    "ROY",
    "LEROUX",
    "COLIN",
    "VIDAL",
    "CARON",
    "PICARD",
    "ROGER",
    "FABRE",
    "AUBERT",
    "LEMOINE",
    "RENAUD",
    "DUMAS",
    "LACROIX",
    "OLIVIER",
    "PHILIPPE",
    "BOURGEOIS",
    "PIERRE",
    "BENOÎT",
    "REY",
    "LECLERC",
    "PAYET",
    "ROLLAND",
    "LECLERCQ",
    "GUILLAUME",
    "LECOMTE",
    "LOPEZ",
    "JEAN",
    "DUPUY",
    "GUILLOT",
    "HUBERT",
    "BERGER",
    "CARPENTIER",
    "SANCHEZ",
    "DUPUIS",
    "MOULIN",
    "LOUIS",
    "DESCHAMPS",
    "HUET",
    "VASSEUR",
    "PEREZ",
    "BOUCHER",
    "FLEURY",
    "ROYER",
    "KLEIN",
    "JACQUET",
    "ADAM",
    "PARIS",
    "POIRIER",
    "MARTY",
    "AUBRY",
    "GUYOT",
    "CARRÉ",
    "CHARLES",
    "RENAULT",
    "CHARPENTIER",
    "MÉNARD",
    "MAILLARD",
    "BARON",
    "BERTIN",
    "BAILLY",
    "HERVÉ",
    "SCHNEIDER",
    "FERNANDEZ",
    "LE GALL",
    "COLLET",
    "LÉGER",
    "BOUVIER",
    "JULIEN",
    "PRÉVOST",
    "MILLET",
    "PERROT",
    "DANIEL",
    "LE ROUX",
    "COUSIN",
    "GERMAIN",
    "BRETON",
    "BESSON",
    "LANGLOIS",
    "RÉMY",
    "LE GOFF",
    "PELLETIER",
    "LÉVÊQUE",
    "PERRIER",
    "LEBLANC",
    "BARRÉ",
    "LEBRUN",
    "MARCHAL",
    "WEBER",
    "MALLET",
    "HAMON",
    "BOULANGER",
    "JACOB",
    "MONNIER",
    "MICHAUD",
    "RODRIGUEZ",
    "GUICHARD",
    "GILLET",
    "ÉTIENNE",
    "GRONDIN",
    "POULAIN",
    "TESSIER",
    "CHEVALLIER",
    "COLLIN",
    "CHAUVIN",
    "DA SILVA",
    "BOUCHET",
    "GAY",
    "LEMAÎTRE",
    "BÉNARD",
    "MARÉCHAL",
    "HUMBERT",
    "REYNAUD",
    "ANTOINE",
    "HOARAU",
    "PERRET",
    "BARTHÉLEMY",
    "CORDIER",
    "PICHON",
    "LEJEUNE",
    "GILBERT",
    "LAMY",
    "DELAUNAY",
    "PASQUIER",
    "CARLIER",
    "LAPORTE",
    "N'DIAYE",
    "D'ALMEIDA",
    "DE LA FONTAINE",
    "DU BOIS",
    "DE SAINT-EXUPÉRY",
    "LE BRIS",
    "M'BAPPÉ",
    "O'NEILL",
    "DES ROCHES",
    "D'ARTAGNAN",
    "MARTIN-DUPONT",
    "LEFÈVRE-UTILE",
    "BEN SAÏD",
    "NGUYEN",
    "TRAN",
    "DIALLO",
    "TRAORÉ",
    "KONÉ",
    "HADDAD",
    "BENALI",
    "OUKACI",
    "KOWALSKI",
    "DOS SANTOS",
    "FERREIRA",
    "ÇELIK",
    "YILMAZ",
    "LE NÔTRE",
    "DE GAULLE",
];

/// Syllables of the long tail of surnames (three in four people bear one
/// of these: France has over a million surnames, and the hundred most
/// common cover about one person in eight).
const HEADS: &[&str] = &[
    "BOUR", "CHAR", "DEL", "FOUR", "GAR", "GUIL", "JAC", "LAB", "LAN", "MAR", "MON", "PEL", "POU",
    "RAM", "ROU", "SAL", "TOUR", "VAL", "VER", "BAR", "BEL", "BRO", "CAS", "COU", "DUR", "FAB",
    "GAU", "HER", "LOR", "MAL", "MIR", "NAV", "PAS", "QUEN", "RIV", "SOU", "TRI", "VIL", "BLON",
    "CRE", "DOM", "ESC", "GRAN", "LEC", "MOU", "PRA", "ROB", "SAU", "THI", "AUD",
];
const TAILS: &[&str] = &[
    "ET", "IN", "ARD", "EAU", "OT", "IER", "OUX", "AND", "ON", "AT", "ERT", "IS", "AUD", "ELLE",
    "ENT", "AIS", "OIS", "IOT", "ASSE", "EUX", "AC", "EL", "ERON", "ILLON", "ÈS", "É", "ÈRE",
    "ÉGUI", "ANT", "OUR",
];

const WOMEN: &[&str] = &[
    "Marie",
    "Jeanne",
    "Françoise",
    "Monique",
    "Catherine",
    "Nathalie",
    "Isabelle",
    "Sylvie",
    "Anne",
    "Martine",
    "Christine",
    "Nicole",
    "Hélène",
    "Valérie",
    "Sandrine",
    "Stéphanie",
    "Céline",
    "Julie",
    "Aurélie",
    "Camille",
    "Léa",
    "Manon",
    "Chloé",
    "Emma",
    "Inès",
    "Jade",
    "Louise",
    "Zoé",
    "Élodie",
    "Émilie",
    "Sophie",
    "Patricia",
    "Brigitte",
    "Danielle",
    "Joséphine",
    "Geneviève",
    "Marie-Christine",
    "Anne-Marie",
    "Marie-Thérèse",
    "Marie-Claire",
    "Marie-Hélène",
    "Simone",
    "Yvette",
    "Odette",
    "Germaine",
    "Madeleine",
    "Suzanne",
    "Thérèse",
    "Lucie",
    "Claire",
    "Agnès",
    "Béatrice",
    "Chantal",
    "Colette",
    "Élise",
    "Fatima",
    "Aïcha",
    "Noémie",
    "Maëlle",
    "Océane",
    "Anaïs",
    "Laëtitia",
    "Gaëlle",
    "Josiane",
    "Paulette",
];

const MEN: &[&str] = &[
    "Jean",
    "Pierre",
    "Michel",
    "André",
    "Philippe",
    "Alain",
    "Bernard",
    "Jacques",
    "Daniel",
    "Christian",
    "Patrick",
    "Nicolas",
    "François",
    "Christophe",
    "Stéphane",
    "Frédéric",
    "Éric",
    "Laurent",
    "Sébastien",
    "Julien",
    "David",
    "Thomas",
    "Antoine",
    "Maxime",
    "Lucas",
    "Hugo",
    "Louis",
    "Gabriel",
    "Jules",
    "Léo",
    "Raphaël",
    "Arthur",
    "Nathan",
    "Théo",
    "Étienne",
    "Gérard",
    "René",
    "Roger",
    "Marcel",
    "Henri",
    "Georges",
    "Paul",
    "Jean-Pierre",
    "Jean-Claude",
    "Jean-Luc",
    "Jean-Marie",
    "Jean-François",
    "Jean-Paul",
    "Jean-Michel",
    "Jean-Jacques",
    "Pierre-Yves",
    "Marc",
    "Yves",
    "Olivier",
    "Thierry",
    "Didier",
    "Joël",
    "Noël",
    "Mohamed",
    "Karim",
    "Mehdi",
    "Yannick",
    "Loïc",
    "Gaël",
    "Kévin",
    "Jérôme",
    "Grégory",
    "Benoît",
    "Hervé",
    "Cédric",
    "Mathéo",
    "Anthony",
];

/// One synthetic person, as the register CSV (§7) holds them.
pub struct Person {
    /// The NIR (13-character body).
    pub nir: String,
    /// `1` or `2`.
    pub sex: u8,
    /// As the register writes it (upper case, accents kept).
    pub birth_name: String,
    /// Empty: none.
    pub usual_name: String,
    /// Separated by spaces.
    pub first_names: Vec<String>,
    /// `YYYY-MM-DD`, `00` for unknown parts.
    pub birth_date: String,
    /// The commune or country code.
    pub birth_place: String,
}

/// The kinds of error [`Person::query`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// None, but spelt another way (case, accents, separators, order of
    /// first names).
    Spelling,
    /// One letter of the birth name wrong, missing or swapped.
    Typo,
    /// The second first name left out.
    MissingFirstName,
    /// The usual (married) name given as the birth name.
    UsualAsBirth,
    /// Day and month swapped.
    SwappedDate,
    /// Another birth place.
    OtherPlace,
}

impl Error {
    /// Every kind.
    pub const ALL: [Error; 6] = [
        Error::Spelling,
        Error::Typo,
        Error::MissingFirstName,
        Error::UsualAsBirth,
        Error::SwappedDate,
        Error::OtherPlace,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Error::Spelling => "spelling only",
            Error::Typo => "typo in the birth name",
            Error::MissingFirstName => "second first name missing",
            Error::UsualAsBirth => "usual name as birth name",
            Error::SwappedDate => "day and month swapped",
            Error::OtherPlace => "another birth place",
        }
    }
}

/// A query's traits, in §7's column order.
pub struct QueryRow {
    /// `1` or `2`.
    pub sex: String,
    /// Birth name (or what was given for it).
    pub birth_name: String,
    /// First names.
    pub first_names: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    /// Place code.
    pub birth_place: String,
    /// The usual (married) name, as the register writes it, for half of the
    /// people who have one (chosen by their NIR, so that no draw of the
    /// generator moves); empty otherwise.
    pub usual_name: String,
}

impl Person {
    /// The register CSV row (§7's column order), quoted where needed.
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.nir,
            self.sex,
            quote(&self.birth_name),
            quote(&self.usual_name),
            quote(&self.first_names.join(" ")),
            self.birth_date,
            self.birth_place
        )
    }

    /// Whether `error` can be made for this person (a second first name to
    /// leave out, a usual name, a day and month that differ and swap).
    pub fn allows(&self, error: Error) -> bool {
        match error {
            Error::MissingFirstName => self.first_names.len() >= 2,
            Error::UsualAsBirth => !self.usual_name.is_empty(),
            Error::SwappedDate => {
                let (m, d) = (&self.birth_date[5..7], &self.birth_date[8..]);
                d != "00" && m != d && d <= "12"
            }
            Error::Typo => crate::identity::normal::surname(&self.birth_name).len() >= 4,
            _ => true,
        }
    }

    /// The traits a submitter would send for this person, respelt, with
    /// `error` (which [`Person::allows`]).
    pub fn query(&self, error: Error, rng: &mut impl Rng) -> QueryRow {
        let mut birth = respell(&self.birth_name, rng);
        let mut first = self.first_names.clone();
        let mut date = self.birth_date.clone();
        let mut place = self.birth_place.clone();
        match error {
            Error::Spelling => {}
            Error::Typo => birth = typo(&birth, rng),
            Error::MissingFirstName => first.truncate(1),
            Error::UsualAsBirth => birth = respell(&self.usual_name, rng),
            Error::SwappedDate => date = format!("{}-{}-{}", &date[..4], &date[8..], &date[5..7]),
            Error::OtherPlace => {
                let p = crate::sweep::Places::get();
                let c = p.commune(rng.gen_range(0..p.communes()));
                place = String::from_utf8_lossy(&c).into_owned();
            }
        }
        if first.len() > 1 && rng.gen_bool(0.2) {
            first.reverse();
        }
        QueryRow {
            sex: self.sex.to_string(),
            birth_name: birth,
            first_names: first
                .iter()
                .map(|f| respell(f, rng))
                .collect::<Vec<_>>()
                .join(" "),
            birth_date: date,
            birth_place: place,
            usual_name: if self.nir.as_bytes()[12] % 2 == 0 {
                self.usual_name.clone()
            } else {
                String::new()
            },
        }
    }
}

impl QueryRow {
    /// A trait batch's CSV line
    /// (`index,sex,birth_name,first_names,birth_date,birth_place,usual_name`).
    pub fn csv_line(&self, index: &str) -> String {
        format!(
            "{index},{},{},{},{},{},{}",
            self.sex,
            quote(&self.birth_name),
            quote(&self.first_names),
            self.birth_date,
            self.birth_place,
            quote(&self.usual_name)
        )
    }
}

/// The same name as a clerk or a form might write it: lower or title
/// case, accents dropped, hyphens for spaces or the other way.
fn respell(name: &str, rng: &mut impl Rng) -> String {
    let mut s = match rng.gen_range(0..4) {
        0 => name.to_owned(),
        1 => name.to_lowercase(),
        2 => name.to_uppercase(),
        _ => {
            use unicode_normalization::UnicodeNormalization;
            name.nfd()
                .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
                .collect()
        }
    };
    if rng.gen_bool(0.1) {
        s = if s.contains('-') {
            s.replace('-', " ")
        } else {
            s.replace(' ', "-")
        };
    }
    s
}

/// One letter replaced, dropped, or swapped with the next.
fn typo(name: &str, rng: &mut impl Rng) -> String {
    let mut c: Vec<char> = name.chars().collect();
    let letters: Vec<usize> = (0..c.len()).filter(|&i| c[i].is_alphabetic()).collect();
    let i = letters[rng.gen_range(1..letters.len())];
    match rng.gen_range(0..3) {
        0 => c[i] = if c[i] == 'E' || c[i] == 'e' { 'A' } else { 'E' },
        1 => {
            c.remove(i);
        }
        _ if i + 1 < c.len() && c[i + 1].is_alphabetic() && c[i + 1] != c[i] => c.swap(i, i + 1),
        _ => c.insert(i, 'X'),
    }
    c.into_iter().collect()
}

fn quote(s: &str) -> String {
    if s.contains([',', ';', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A generator of synthetic people (seeded: the same seed, the same people).
pub struct Synth {
    births: Population,
    rng: StdRng,
    surnames: WeightedIndex<f64>,
    heads: WeightedIndex<f64>,
    tails: WeightedIndex<f64>,
    women: WeightedIndex<f64>,
    men: WeightedIndex<f64>,
    last: Option<(String, String, String)>,
}

/// Weights falling as 1/√rank: `MARTIN`, the first, is borne by about
/// one person in 150 (0.6 %; 0.4 % in France).
fn zipf(n: usize) -> WeightedIndex<f64> {
    WeightedIndex::new((1..=n).map(|r| 1.0 / (r as f64).sqrt())).expect("positive weights")
}

impl Synth {
    /// A generator drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            births: Population::new(seed),
            rng: StdRng::seed_from_u64(seed ^ 0x005E_ED0F_7A17),
            surnames: zipf(SURNAMES.len()),
            heads: zipf(HEADS.len()),
            tails: zipf(TAILS.len()),
            women: zipf(WOMEN.len()),
            men: zipf(MEN.len()),
            last: None,
        }
    }

    fn surname(&mut self) -> String {
        if self.rng.gen_bool(0.25) {
            return SURNAMES[self.surnames.sample(&mut self.rng)].to_owned();
        }
        let mut s = String::new();
        for _ in 0..self.rng.gen_range(1..=2) {
            s.push_str(HEADS[self.heads.sample(&mut self.rng)]);
        }
        s.push_str(TAILS[self.tails.sample(&mut self.rng)]);
        s
    }

    fn first_names(&mut self, sex: u8) -> Vec<String> {
        let n = match self.rng.gen_range(0..10) {
            0..=1 => 1,
            2..=7 => 2,
            _ => 3,
        };
        let mut out: Vec<String> = Vec::new();
        while out.len() < n {
            let name = if sex == 1 {
                MEN[self.men.sample(&mut self.rng)]
            } else {
                WOMEN[self.women.sample(&mut self.rng)]
            };
            if !out.iter().any(|o| o == name) {
                out.push(name.to_owned());
            }
        }
        out
    }

    /// The next person.
    pub fn next_person(&mut self) -> Person {
        let b = self.births.next_birth();
        let body = b.nir.body();
        let sex = body[0] - b'0';
        let month: u32 = std::str::from_utf8(&body[3..5])
            .ok()
            .and_then(|m| m.parse().ok())
            .unwrap_or(1);
        let place = String::from_utf8_lossy(&body[5..10]).into_owned();
        let (birth_name, day) = match (&self.last, b.twin) {
            (Some((name, day, p)), true) if *p == place => (name.clone(), day.clone()),
            _ => {
                let name = self.surname();
                let days = super::days_in(b.year, month);
                let abroad = place.starts_with("99");
                let partial = self.rng.gen_bool(if abroad { 0.03 } else { 0.003 });
                let day = if partial {
                    "00".to_owned()
                } else {
                    format!("{:02}", self.rng.gen_range(1..=days))
                };
                (name, day)
            }
        };
        let month_text = if day == "00" && place.starts_with("99") && self.rng.gen_bool(0.3) {
            "00".to_owned()
        } else {
            format!("{month:02}")
        };
        self.last = Some((birth_name.clone(), day.clone(), place.clone()));
        let married = sex == 2 && b.year < 2000 && self.rng.gen_bool(0.5);
        let usual_name = if married {
            self.surname()
        } else {
            String::new()
        };
        Person {
            nir: String::from_utf8_lossy(body).into_owned(),
            sex,
            birth_name,
            usual_name: if usual_name.is_empty() {
                String::new()
            } else {
                usual_name
            },
            first_names: self.first_names(sex),
            birth_date: format!("{}-{month_text}-{day}", b.year),
            birth_place: place,
        }
    }
}

impl Iterator for Synth {
    type Item = Person;

    fn next(&mut self) -> Option<Person> {
        Some(self.next_person())
    }
}

/// What a synthetic query was made from: for the quality measurements.
pub struct Truth {
    /// The query's index.
    pub index: String,
    /// The person's NIR, `None` for someone not in the register.
    pub nir: Option<String>,
    /// The error injected (`None` for someone not in the register).
    pub error: Option<Error>,
}

/// Writes a register CSV (§7) of `people` synthetic people to `register`,
/// and, when `queries` is given, a trait batch of about `count` of them
/// (each with an error kind drawn in turn from those the person allows)
/// plus one stranger in twenty, not in the register. Returns what each
/// query was made from. Files are created new, mode 0600.
pub fn write_files(
    people: u64,
    seed: u64,
    register: &std::path::Path,
    queries: Option<(&std::path::Path, u64)>,
) -> std::io::Result<Vec<Truth>> {
    use std::io::Write;
    let create = |p: &std::path::Path| {
        crate::files::create_new(p, 0o600).map(|f| std::io::BufWriter::with_capacity(1 << 20, f))
    };
    let mut reg = create(register)?;
    writeln!(reg, "{}", super::store::HEADER.join(","))?;
    let mut batch = match queries {
        Some((p, _)) => {
            let mut w = create(p)?;
            writeln!(
                w,
                "index,sex,birth_name,first_names,birth_date,birth_place,usual_name"
            )?;
            Some(w)
        }
        None => None,
    };
    let want = queries.map_or(0, |q| q.1);
    let strangers_every = 20u64;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9E3779B97F4A7C15);
    let mut strangers = Synth::new(seed.wrapping_add(1_000_003));
    let mut truths = Vec::new();
    let mut kind = 0usize;
    for (i, p) in Synth::new(seed).take(people as usize).enumerate() {
        writeln!(reg, "{}", p.csv_row())?;
        let Some(w) = batch.as_mut() else { continue };
        if !rng.gen_bool((want as f64 / people.max(1) as f64).min(1.0)) {
            continue;
        }
        let index = format!("Q{i}");
        if truths.len() as u64 % strangers_every == strangers_every - 1 {
            let s = strangers.next_person();
            writeln!(w, "{}", s.query(Error::Spelling, &mut rng).csv_line(&index))?;
            truths.push(Truth {
                index,
                nir: None,
                error: None,
            });
            continue;
        }
        let error = (0..Error::ALL.len())
            .map(|k| Error::ALL[(kind + k) % Error::ALL.len()])
            .find(|e| p.allows(*e))
            .unwrap_or(Error::Spelling);
        kind += 1;
        writeln!(w, "{}", p.query(error, &mut rng).csv_line(&index))?;
        truths.push(Truth {
            index,
            nir: Some(p.nir.clone()),
            error: Some(error),
        });
    }
    reg.flush()?;
    if let Some(mut w) = batch {
        w.flush()?;
    }
    Ok(truths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::RawTraits;

    #[test]
    fn synthetic_people_are_register_rows_with_twins_homonyms_and_married_names() {
        let people: Vec<Person> = Synth::new(3).take(20_000).collect();
        let married = people.iter().filter(|p| !p.usual_name.is_empty()).count();
        let partial = people
            .iter()
            .filter(|p| p.birth_date.ends_with("-00"))
            .count();
        let compound = people
            .iter()
            .filter(|p| p.first_names.iter().any(|f| f.contains('-')))
            .count();
        assert!(
            married > 2000 && partial > 10 && compound > 500,
            "{married} {partial} {compound}"
        );
        let mut names = std::collections::HashMap::new();
        for p in &people {
            *names.entry(p.birth_name.as_str()).or_insert(0) += 1;
            // Every row is one the loader takes, every query one the service reads.
            let q = p.query(Error::Spelling, &mut rand::thread_rng());
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
            assert!(raw.query().is_ok(), "{}", p.birth_date);
        }
        let martin = names["MARTIN"];
        assert!((40..300).contains(&martin), "{martin} MARTIN in 20,000");
        let again: Vec<Person> = Synth::new(3).take(10).collect();
        assert!(again
            .iter()
            .zip(&people)
            .all(|(a, b)| a.csv_row() == b.csv_row()));
    }
}

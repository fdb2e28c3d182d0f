//! Identity traits instead of a NIR (DESIGN §7, a contract for formats):
//! a submitter may send, for a person, the traits the national register
//! (RNIPP) records, and the service looks the NIR up, hashes it like any NIR
//! and answers the code with a quality indicator. The NIR found is never
//! returned, logged or kept.
//!
//! - [`normal`]: what makes two spellings of a name the same name;
//! - [`register`]: the register in memory and the matching rules;
//! - [`store`]: the register file (SQLite) and its loader;
//! - [`postgres`]: the register in PostgreSQL, its loader and look-ups;
//! - [`lines`]: a batch of traits, line by line.
//!
//! The rules are in `docs/identity.md`.

pub mod lines;
pub mod normal;
#[cfg(feature = "dev-kit")]
pub mod pgdev;
pub mod postgres;
pub mod register;
pub mod store;
#[cfg(feature = "dev-kit")]
pub mod synth;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::batch::Status;
use crate::nir::BODY_LEN;

pub use register::{Found, Register};

/// The look-up's quality indicator (§7), for a line whose status is `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// One person, every trait equal after normalisation.
    Exact,
    /// One person, within the tolerance rules.
    Approximate,
    /// Several people: no code.
    Ambiguous,
    /// No one: no code.
    NotFound,
}

impl Quality {
    /// Every quality, in a stable order.
    pub const ALL: [Quality; 4] = [
        Quality::Exact,
        Quality::Approximate,
        Quality::Ambiguous,
        Quality::NotFound,
    ];

    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            Quality::Exact => "exact",
            Quality::Approximate => "approximate",
            Quality::Ambiguous => "ambiguous",
            Quality::NotFound => "not_found",
        }
    }
}

/// A query's answer: its quality and, for `exact` and `approximate`, the
/// NIR found. Wiped on drop.
pub struct Resolved {
    /// The look-up's quality.
    pub quality: Quality,
    /// The NIR's body (zeros when none was found).
    pub nir: [u8; BODY_LEN],
}

impl Resolved {
    /// A person found.
    pub fn found(quality: Quality, nir: &[u8; BODY_LEN]) -> Self {
        Self { quality, nir: *nir }
    }

    /// What `found` says, with the NIR of the person it found in `register`.
    pub fn of(found: Found, register: &Register) -> Self {
        match found {
            Found::Exact(i) => Self::found(Quality::Exact, register.nir(i)),
            Found::Approximate(i, _) => Self::found(Quality::Approximate, register.nir(i)),
            Found::Ambiguous => Self::none(Quality::Ambiguous),
            Found::NotFound => Self::none(Quality::NotFound),
        }
    }

    /// No one (or several).
    pub fn none(quality: Quality) -> Self {
        Self {
            quality,
            nir: [0; BODY_LEN],
        }
    }

    /// Whether a person was found.
    pub fn is_found(&self) -> bool {
        matches!(self.quality, Quality::Exact | Quality::Approximate)
    }
}

impl Drop for Resolved {
    fn drop(&mut self) {
        self.nir.zeroize();
    }
}

/// Where trait batches look people up: the embedded register (a SQLite
/// file read into memory) or a PostgreSQL server.
pub enum Backend {
    /// In memory.
    Embedded(Register),
    /// In PostgreSQL.
    Postgres(Box<postgres::PgRegister>),
}

impl Backend {
    /// The back-end's name, for the log.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Whether look-ups can be made now: a batch of traits is refused
    /// before it starts when they cannot.
    pub async fn ready(&self) -> Result<(), postgres::DbError> {
        match self {
            Backend::Embedded(_) => Ok(()),
            Backend::Postgres(pg) => pg.ready().await,
        }
    }

    /// Looks up a chunk's queries; `out` gets one answer per query, in
    /// order. Blocks (call it from a blocking worker).
    pub fn resolve(
        &self,
        queries: &[Query],
        out: &mut Vec<Resolved>,
    ) -> Result<(), postgres::DbError> {
        match self {
            Backend::Embedded(r) => {
                out.clear();
                out.extend(queries.iter().map(|q| Resolved::of(r.lookup(q), r)));
                Ok(())
            }
            Backend::Postgres(pg) => pg.resolve(queries, out),
        }
    }
}

/// The trait columns of §7, in the order of the header.
pub const TRAIT_COLUMNS: [&str; 5] = [
    "sex",
    "birth_name",
    "first_names",
    "birth_date",
    "birth_place",
];

/// The optional trait column, last in §7's header.
pub const USUAL_NAME: &str = "usual_name";

/// Where each field of a trait batch's line is: the position of each
/// column in the CSV header (the index is always first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// How many fields a line has.
    pub count: usize,
    /// `nir`, in a batch whose header names both a NIR and traits.
    pub nir: Option<usize>,
    /// [`TRAIT_COLUMNS`], in that order.
    pub traits: [usize; 5],
    /// `usual_name`, when the header has it.
    pub usual_name: Option<usize>,
}

impl Columns {
    /// The layout of a header's names, or `None` when they are not a trait
    /// header: `index` first, then §7's five trait columns, `usual_name`
    /// optionally, and `nir` optionally (a batch that may carry either),
    /// each once, in any order after the index.
    pub fn of(names: &[&[u8]]) -> Option<Columns> {
        if names.first() != Some(&&b"index"[..]) || names.len() > 8 {
            return None;
        }
        let find = |c: &str| {
            let mut at = names
                .iter()
                .enumerate()
                .filter(|(_, n)| **n == c.as_bytes());
            match (at.next(), at.next()) {
                (Some((i, _)), None) => Some(Some(i)),
                (None, _) => Some(None),
                _ => None, // named twice
            }
        };
        let mut traits = [0usize; 5];
        for (slot, c) in traits.iter_mut().zip(TRAIT_COLUMNS) {
            *slot = find(c)??;
        }
        let nir = find("nir")?;
        let usual_name = find(USUAL_NAME)?;
        let known = 1 + 5 + usize::from(nir.is_some()) + usize::from(usual_name.is_some());
        (known == names.len()).then_some(Columns {
            count: names.len(),
            nir,
            traits,
            usual_name,
        })
    }

    /// The §7 header without a NIR column.
    pub fn standard(usual_name: bool) -> Columns {
        Columns {
            count: 6 + usize::from(usual_name),
            nir: None,
            traits: [1, 2, 3, 4, 5],
            usual_name: usual_name.then_some(6),
        }
    }
}

/// A birth date as the register records it: `00` for an unknown day or
/// month. Held as `yyyymmdd`.
pub type Date = u32;

/// The year, month and day of a [`Date`].
pub fn ymd(d: Date) -> (u32, u32, u32) {
    (d / 10_000, d / 100 % 100, d % 100)
}

/// The earliest birth year accepted: the register's oldest records.
pub const FIRST_YEAR: u32 = 1850;

/// Parses `YYYY-MM-DD` (§7): a real calendar date, or one with `00` for an
/// unknown day, or for an unknown day and month; from [`FIRST_YEAR`] to the
/// current year. A known day in an unknown month is no date.
pub fn parse_date(raw: &[u8]) -> Option<Date> {
    if raw.len() != 10 || raw[4] != b'-' || raw[7] != b'-' {
        return None;
    }
    let num = |s: &[u8]| {
        s.iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let (y, m, d) = (num(&raw[..4])?, num(&raw[5..7])?, num(&raw[8..])?);
    if !(FIRST_YEAR..=this_year()).contains(&y) || m > 12 || (m == 0 && d != 0) {
        return None;
    }
    if d > days_in(y, m) {
        return None;
    }
    Some(y * 10_000 + m * 100 + d)
}

pub(crate) fn days_in(y: u32, m: u32) -> u32 {
    match m {
        0 => 0,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn this_year() -> u32 {
    let now = time::OffsetDateTime::now_utc();
    u32::try_from(now.year()).unwrap_or(FIRST_YEAR)
}

/// Parses a birth place (§7): five characters, a commune code of INSEE's
/// list (`75115`, `2A004`) or `99` and a country code.
pub fn parse_place(raw: &[u8]) -> Option<[u8; 5]> {
    let code: [u8; 5] = raw.try_into().ok()?;
    crate::sweep::Places::get().knows(&code).then_some(code)
}

/// A trait line's look-up question, normalised. Wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Query {
    /// `1` or `2`.
    pub sex: u8,
    /// The birth name's key ([`normal::surname`]).
    pub birth: String,
    /// The usual name's key, or empty.
    pub usual: String,
    /// The first names' key ([`normal::first_names`]).
    pub first: String,
    /// The birth date.
    pub date: Date,
    /// The birth place.
    pub place: [u8; 5],
}

/// A trait line's raw fields (UTF-8 checked by the caller's parse).
pub struct RawTraits<'a> {
    /// `sex`, `birth_name`, `first_names`, `birth_date`, `birth_place`.
    pub traits: [&'a [u8]; 5],
    /// `usual_name`, empty when absent.
    pub usual_name: &'a [u8],
}

impl RawTraits<'_> {
    /// Whether any trait field is given (a line with a NIR and any trait is
    /// `nir_and_traits`).
    pub fn any(&self) -> bool {
        self.traits.iter().any(|f| !f.trim_ascii().is_empty())
            || !self.usual_name.trim_ascii().is_empty()
    }

    /// The question, or the line's status (§7's order: `missing_trait`,
    /// `invalid_sex`, `invalid_date`, `invalid_place`).
    pub fn query(&self) -> Result<Query, Status> {
        let [sex, birth, first, date, place] = self.traits.map(<[u8]>::trim_ascii);
        fn text(f: &[u8]) -> Option<&str> {
            std::str::from_utf8(f).ok()
        }
        let (Some(birth), Some(first), Some(usual)) =
            (text(birth), text(first), text(self.usual_name))
        else {
            return Err(Status::MalformedLine);
        };
        let birth = normal::surname(birth);
        let first = normal::first_names(first);
        if sex.is_empty()
            || birth.is_empty()
            || first.is_empty()
            || date.is_empty()
            || place.is_empty()
        {
            return Err(Status::MissingTrait);
        }
        let sex = match sex {
            b"1" => b'1',
            b"2" => b'2',
            _ => return Err(Status::InvalidSex),
        };
        let date = parse_date(date).ok_or(Status::InvalidDate)?;
        let place = parse_place(place).ok_or(Status::InvalidPlace)?;
        Ok(Query {
            sex,
            birth,
            usual: normal::surname(usual),
            first,
            date,
            place,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_calendar_dates_or_partial_as_the_register_records_them() {
        assert_eq!(parse_date(b"1961-05-12"), Some(19610512));
        assert_eq!(parse_date(b"1961-05-00"), Some(19610500));
        assert_eq!(parse_date(b"1961-00-00"), Some(19610000));
        assert_eq!(parse_date(b"2000-02-29"), Some(20000229));
        for bad in [
            &b"1961-00-12"[..],
            b"1961-13-01",
            b"1961-02-29",
            b"1900-02-29",
            b"1961-04-31",
            b"1961-5-12",
            b"1961/05/12",
            b"0000-00-00",
            b"1849-01-01",
            b"9999-01-01",
            b"",
        ] {
            assert_eq!(parse_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn places_are_communes_of_the_list_or_countries() {
        for ok in [&b"75115"[..], b"2A004", b"97101", b"99350", b"01001"] {
            assert!(parse_place(ok).is_some(), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"75000"[..],
            b"99000",
            b"99999",
            b"2C004",
            b"7511",
            b"751150",
        ] {
            assert!(
                parse_place(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn headers_name_the_trait_columns_once() {
        let h = |s: &str| {
            let v: Vec<&[u8]> = s.split(',').map(str::as_bytes).collect();
            Columns::of(&v)
        };
        assert_eq!(
            h("index,sex,birth_name,first_names,birth_date,birth_place"),
            Some(Columns::standard(false))
        );
        assert_eq!(
            h("index,sex,birth_name,first_names,birth_date,birth_place,usual_name"),
            Some(Columns::standard(true))
        );
        let both = h("index,nir,sex,birth_name,first_names,birth_date,birth_place").unwrap();
        assert_eq!(both.nir, Some(1));
        assert_eq!(both.traits, [2, 3, 4, 5, 6]);
        assert!(h("index,nir").is_none());
        assert!(h("index,sex,birth_name,first_names,birth_date").is_none());
        assert!(h("sex,index,birth_name,first_names,birth_date,birth_place").is_none());
        assert!(h("index,sex,sex,birth_name,first_names,birth_date,birth_place").is_none());
        assert!(h("index,sex,birth_name,first_names,birth_date,birth_place,x").is_none());
    }

    #[test]
    fn a_query_reports_the_first_trait_error() {
        let q = |t: [&str; 5]| {
            RawTraits {
                traits: t.map(str::as_bytes),
                usual_name: b"",
            }
            .query()
            .map(|_| ())
        };
        assert_eq!(q(["1", "Martin", "Jean", "1961-05-12", "75115"]), Ok(()));
        assert_eq!(
            q(["", "Martin", "Jean", "1961-13-12", "75115"]),
            Err(Status::MissingTrait)
        );
        assert_eq!(
            q(["3", "Martin", "Jean", "1961-13-12", "00000"]),
            Err(Status::InvalidSex)
        );
        assert_eq!(
            q(["1", "Martin", "Jean", "1961-13-12", "00000"]),
            Err(Status::InvalidDate)
        );
        assert_eq!(
            q(["2", "Martin", "Jean", "1961-12-12", "00000"]),
            Err(Status::InvalidPlace)
        );
        assert_eq!(
            q(["2", "-", "Jean", "1961-12-12", "75115"]),
            Err(Status::MissingTrait)
        );
    }
}

//! The sweep detector (DESIGN §4's `sweep_suspected`; docs/guard.md): tells
//! a population from an enumeration of the NIR space.
//!
//! A population comes out of birth registers: its bodies name a sex, a
//! month and a place that exist, and an order number no higher than the
//! births that place registers in a month. An enumeration goes where no
//! register goes: impossible month codes, commune codes that do not exist,
//! order numbers in the hundreds in a village, or hundreds of order numbers
//! under one (sex, year, month, place). The detector reads each body that
//! passed §2 once, in the batch's order, in a few operations and no
//! allocation, and keeps counts only: never a body.
//!
//! A body is **implausible** when
//! - its first digit is not a sex a register uses (1, 2; 3, 4, 7, 8 for
//!   provisional and foreign-born numbers);
//! - its month is 00, 13–19 or 43–49 (20–42 and 50–99 are the codes of an
//!   unknown or provisional month: rare, but real);
//! - its place is unknown: `99` followed by a country code outside 100–599,
//!   or a commune code not in INSEE's list (`data/communes.txt`; `20` is
//!   read as Corsica before 1976: a commune of `2A` or `2B`);
//! - its order number is 000, or above what its place can register in a
//!   month ([`Places::order_cap`]).
//!
//! A batch is judged a sweep ([`Rule`]) as soon as
//! - a block of [`BLOCK`] consecutive candidate lines holds
//!   [`BLOCK_IMPLAUSIBLE`] implausible ones or more, or
//! - the client's implausible lines reach [`SHARE_MIN`] and 0.5 % of its
//!   lines (this batch and its previous ones of the last [`WINDOW_DAYS`]
//!   days), or
//! - more than [`HIGH_ORDERS_MAX`] distinct order numbers above
//!   [`ORDERS_HIGH`] come under the (sex, year, month, place) of one
//!   bucket, counted across the client's batches ([`Prefixes`]).
//!
//! A batch of identity traits (DESIGN §7) shows the NIRs found to the same
//! rules, and its look-ups to two more: a register finds most of a real
//! population, while a batch that sweeps names or dates (to learn whose
//! traits these are) finds hardly anyone. So it is a sweep as soon as
//! - a block of [`BLOCK`] consecutive look-ups finds no one (or several
//!   people) [`BLOCK_MISSES`] times or more, or
//! - the client's look-ups that found no one reach [`MISS_SHARE_MIN`] and
//!   half of its look-ups over the last [`WINDOW_DAYS`] days.

use std::sync::LazyLock;

use crate::nir::BODY_LEN;

/// Lines in a block.
pub const BLOCK: u32 = 2048;
/// Implausible lines that make a block a sweep (a quarter).
pub const BLOCK_IMPLAUSIBLE: u32 = BLOCK / 4;
/// Implausible lines a client may have in all before their share counts.
pub const SHARE_MIN: u64 = 1000;
/// Order numbers above this one are the ones [`Prefixes`] counts. A
/// register numbers the births of a place in a month from 001 for each sex,
/// so a population shows under a prefix at most the births its place
/// registered that month: past 500 for one sex is several times what the
/// busiest arrondissements of Paris register today.
pub const ORDERS_HIGH: u32 = 500;
/// Most distinct order numbers above [`ORDERS_HIGH`] in one bucket of
/// prefixes: a prefix enumerated from 001 trips at 801.
pub const HIGH_ORDERS_MAX: u16 = 300;
/// Look-ups finding no one that make a block of look-ups a sweep (half).
pub const BLOCK_MISSES: u32 = BLOCK / 2;
/// Look-ups finding no one a client may have in all before their share
/// counts.
pub const MISS_SHARE_MIN: u64 = 2000;
/// Days a client's counts are kept for the share.
pub const WINDOW_DAYS: usize = 30;

const COMMUNES: &str = include_str!("../data/communes.txt");

/// Departments in a place index: `00`–`99`, then `2A`, `2B`.
const DEPTS: usize = 102;

/// What the detector knows of places: for each (department, commune) code,
/// the highest order number it can register in a month (0: no such place).
pub struct Places {
    cap: Box<[u16]>,
    /// The place indexes of the communes of the list, in order.
    communes: Box<[u32]>,
}

/// The place index of `dept` (two characters) and `commune` (three digits).
fn place_index(body: &[u8; BODY_LEN]) -> Option<usize> {
    let d = match (body[5], body[6]) {
        (b'2', b'A') => 100,
        (b'2', b'B') => 101,
        (a @ b'0'..=b'9', b @ b'0'..=b'9') => usize::from(a - b'0') * 10 + usize::from(b - b'0'),
        _ => return None,
    };
    let c = digits(&body[7..10])?;
    Some(d * 1000 + c as usize)
}

fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

impl Places {
    /// The places of `data/communes.txt`, read once.
    pub fn get() -> &'static Places {
        static PLACES: LazyLock<Places> = LazyLock::new(|| Places::parse(COMMUNES));
        &PLACES
    }

    fn parse(text: &str) -> Self {
        let rows: Vec<(usize, u64, bool)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split(' ');
                let code = f.next()?.as_bytes();
                let pop = f.next()?.parse::<u64>().ok()?;
                let kind = f.next()?;
                let mut body = [b'0'; BODY_LEN];
                body[5..10].copy_from_slice(code.get(..5)?);
                Some((place_index(&body)?, pop, kind == "c"))
            })
            .collect();
        let mut dept_pop = [0u64; DEPTS];
        for &(i, pop, current) in &rows {
            if current {
                dept_pop[i / 1000] += pop;
            }
        }
        let mut cap = vec![0u16; DEPTS * 1000].into_boxed_slice();
        for &(i, pop, _) in &rows {
            cap[i] = Self::order_cap(pop, dept_pop[i / 1000]);
        }
        // Corsica was one department, `20`, until 1976.
        for c in 0..1000 {
            cap[20_000 + c] = cap[100_000 + c].max(cap[101_000 + c]);
        }
        // Born abroad: `99` then the country (1xx Europe … 5xx Oceania).
        for c in 100..600 {
            cap[99_000 + c] = 999;
        }
        let communes = rows.iter().map(|&(i, _, _)| i as u32).collect();
        Self { cap, communes }
    }

    /// How many communes the list holds (arrondissements included).
    pub fn communes(&self) -> usize {
        self.communes.len()
    }

    /// The code of commune `i` of the list (modulo its length), as the five
    /// characters of a body's positions 6–10: department and commune.
    pub fn commune(&self, i: usize) -> [u8; 5] {
        let p = self.communes[i % self.communes.len()] as usize;
        let (d, c) = (p / 1000, p % 1000);
        let dept = match d {
            100 => *b"2A",
            101 => *b"2B",
            _ => [b'0' + (d / 10) as u8, b'0' + (d % 10) as u8],
        };
        let digit = |v: usize| b'0' + (v % 10) as u8;
        [dept[0], dept[1], digit(c / 100), digit(c / 10), digit(c)]
    }

    /// Whether `code` (five characters: department and commune, or `99`
    /// and a country) is a place of the list, Corsica's `20` before 1976
    /// included.
    pub fn knows(&self, code: &[u8; 5]) -> bool {
        let mut body = [b'0'; BODY_LEN];
        body[5..10].copy_from_slice(code);
        place_index(&body).is_some_and(|i| self.cap[i] > 0)
    }

    /// The highest order number a place of `pop` inhabitants in a
    /// department of `dept_pop` can register for one sex in one month. A
    /// town of 10,000 or more may have a maternity that registers the
    /// births of its whole department: three births a month per thousand
    /// inhabitants of the department, at least 100 — above the birth rate
    /// of any year since 1900 (2.1 % at its 1947 peak, 0.9 per thousand a
    /// month for each sex). A smaller place registers at most its own births
    /// (home births, before maternities): 5, and one more for each 100
    /// inhabitants — a village of 300 today had perhaps 900 in 1900, and a
    /// birth a month.
    pub fn order_cap(pop: u64, dept_pop: u64) -> u16 {
        let cap = if pop >= 10_000 {
            (dept_pop * 3 / 1000).max(100)
        } else {
            5 + pop / 100
        };
        cap.min(999) as u16
    }

    /// Whether `body` (canonical, §2-valid) is one no register produces.
    pub fn implausible(&self, body: &[u8; BODY_LEN]) -> bool {
        let sex_ok = matches!(body[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8');
        let month_ok = match digits(&body[3..5]) {
            Some(m) => matches!(m, 1..=12 | 20..=42 | 50..=99),
            None => false,
        };
        let cap = place_index(body).map_or(0, |i| self.cap[i]);
        let order = digits(&body[10..13]).unwrap_or(0);
        !(sex_ok && month_ok && order >= 1 && order <= u32::from(cap))
    }
}

/// Which rule judged a batch a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A block of [`BLOCK`] lines with [`BLOCK_IMPLAUSIBLE`] implausible.
    ImplausibleBlock,
    /// The client's implausible lines past [`SHARE_MIN`] and 0.5 %.
    ImplausibleShare,
    /// More than [`HIGH_ORDERS_MAX`] order numbers above [`ORDERS_HIGH`] in
    /// one bucket of prefixes.
    PrefixOrders,
    /// Another batch of the same client was judged a sweep while this one
    /// ran: its client is suspended.
    ClientSuspended,
    /// A block of [`BLOCK`] look-ups with [`BLOCK_MISSES`] finding no one.
    NotFoundBlock,
    /// The client's look-ups finding no one past [`MISS_SHARE_MIN`] and
    /// half of its look-ups.
    NotFoundShare,
}

impl Rule {
    /// The name in the log, the receipt and the status.
    pub fn name(self) -> &'static str {
        match self {
            Rule::ImplausibleBlock => "implausible_block",
            Rule::ImplausibleShare => "implausible_share",
            Rule::PrefixOrders => "prefix_orders",
            Rule::ClientSuspended => "client_suspended",
            Rule::NotFoundBlock => "not_found_block",
            Rule::NotFoundShare => "not_found_share",
        }
    }
}

/// A client's counts from its earlier batches, carried into the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prior {
    /// Candidate lines.
    pub lines: u64,
    /// Implausible ones.
    pub implausible: u64,
    /// Look-ups of identity traits.
    pub lookups: u64,
    /// Look-ups that found no one (or several people).
    pub misses: u64,
}

/// Slots of a client's [`Prefixes`].
const SLOTS: usize = 512;

/// The high order numbers a client has sent, by prefix bucket, across its
/// batches: [`SLOTS`] bitmaps of the order numbers above [`ORDERS_HIGH`],
/// each the union of those seen under every (sex, year, month, place) that
/// falls in its bucket (a keyed hash of the prefix picks it). No prefix is
/// kept, only which high order numbers some prefix of the bucket had: not a
/// copy of any body. Distinct order numbers, not lines: a batch sent again
/// adds nothing; and nothing is ever pushed out, so a sweep interleaved
/// with other prefixes or other lines adds up all the same. A population,
/// whose order numbers stay low, leaves the table untouched (a line with a
/// low order number costs nothing here), however many of its prefixes
/// share a bucket; so few buckets are enough. 32 KiB a client, in memory
/// only.
pub struct Prefixes {
    key: u64,
    orders: Box<[[u64; 8]]>,
    distinct: Box<[u16]>,
}

impl Prefixes {
    /// An empty table; `key` keys the buckets (random, one per process,
    /// never written anywhere).
    pub fn new(key: u64) -> Self {
        Self {
            key,
            orders: vec![[0u64; 8]; SLOTS].into_boxed_slice(),
            distinct: vec![0u16; SLOTS].into_boxed_slice(),
        }
    }

    /// Notes `body`; returns the distinct high order numbers now seen in
    /// its prefix's bucket (0 for a low order number).
    fn note(&mut self, body: &[u8; BODY_LEN]) -> u16 {
        let order = digits(&body[10..13]).unwrap_or(0);
        if order <= ORDERS_HIGH {
            return 0;
        }
        let bucket = (keyed_prefix(self.key, body) >> 52) as usize % SLOTS;
        let high = (order - ORDERS_HIGH - 1) as usize;
        let (word, bit) = (high / 64, 1u64 << (high % 64));
        let bits = &mut self.orders[bucket][word];
        if *bits & bit == 0 {
            *bits |= bit;
            self.distinct[bucket] += 1;
        }
        self.distinct[bucket]
    }
}

impl Drop for Prefixes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
        for o in self.orders.iter_mut() {
            zeroize::Zeroize::zeroize(o);
        }
    }
}

/// One batch's detector.
pub struct Watch {
    places: &'static Places,
    prior: Prior,
    lines: u64,
    implausible: u64,
    block_lines: u32,
    block_implausible: u32,
    most_orders: u16,
    lookups: u64,
    misses: u64,
    block_lookups: u32,
    block_misses: u32,
    tripped: Option<Rule>,
}

/// What the detector saw of a batch, for the receipt and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Candidate lines read (up to the trip, when there was one).
    pub lines: u64,
    /// Implausible ones among them.
    pub implausible: u64,
    /// Implausible lines in the block that tripped (0 otherwise).
    pub block_implausible: u32,
    /// The most distinct order numbers above [`ORDERS_HIGH`] seen in one
    /// bucket of prefixes.
    pub most_orders: u16,
    /// The client's lines and implausible lines before this batch.
    pub prior_lines: u64,
    /// See `prior_lines`.
    pub prior_implausible: u64,
}

impl Watch {
    /// A detector for a batch of a client with `prior` counts.
    pub fn new(prior: Prior) -> Self {
        Self {
            places: Places::get(),
            prior,
            lines: 0,
            implausible: 0,
            block_lines: 0,
            block_implausible: 0,
            most_orders: 0,
            lookups: 0,
            misses: 0,
            block_lookups: 0,
            block_misses: 0,
            tripped: None,
        }
    }

    /// Reads the next look-up of a batch of traits, in order: `found` the
    /// person's NIR (which the NIR rules then read as [`Watch::observe`]
    /// does), or `None` when it found no one or several people; returns
    /// whether the batch is now judged a sweep (and stays so).
    pub fn observe_lookup(
        &mut self,
        prefixes: &mut Prefixes,
        found: Option<&[u8; BODY_LEN]>,
    ) -> bool {
        if self.tripped.is_some() {
            return true;
        }
        self.lookups += 1;
        self.block_lookups += 1;
        if found.is_none() {
            self.misses += 1;
            self.block_misses += 1;
        }
        let misses = self.prior.misses + self.misses;
        let lookups = self.prior.lookups + self.lookups;
        self.tripped = if self.block_misses >= BLOCK_MISSES {
            Some(Rule::NotFoundBlock)
        } else if misses >= MISS_SHARE_MIN && misses * 2 >= lookups {
            Some(Rule::NotFoundShare)
        } else {
            None
        };
        if self.tripped.is_none() && self.block_lookups == BLOCK {
            self.block_lookups = 0;
            self.block_misses = 0;
        }
        match (self.tripped, found) {
            (Some(_), _) => true,
            (None, Some(body)) => self.observe(prefixes, body),
            (None, None) => false,
        }
    }

    /// The rule that tripped, if one has.
    pub fn tripped(&self) -> Option<Rule> {
        self.tripped
    }

    /// Reads the next candidate body, noting its prefix in its client's
    /// `prefixes`; returns whether the batch is now judged a sweep (and
    /// stays so).
    pub fn observe(&mut self, prefixes: &mut Prefixes, body: &[u8; BODY_LEN]) -> bool {
        if self.tripped.is_some() {
            return true;
        }
        self.lines += 1;
        if self.places.implausible(body) {
            self.implausible += 1;
            self.block_implausible += 1;
        }
        self.block_lines += 1;
        let orders = prefixes.note(body);
        self.most_orders = self.most_orders.max(orders);
        let implausible = self.prior.implausible + self.implausible;
        let lines = self.prior.lines + self.lines;
        self.tripped = if self.block_implausible >= BLOCK_IMPLAUSIBLE {
            Some(Rule::ImplausibleBlock)
        } else if implausible >= SHARE_MIN && implausible * 200 >= lines {
            Some(Rule::ImplausibleShare)
        } else if orders > HIGH_ORDERS_MAX {
            Some(Rule::PrefixOrders)
        } else {
            None
        };
        if self.tripped.is_none() && self.block_lines == BLOCK {
            self.block_lines = 0;
            self.block_implausible = 0;
        }
        self.tripped.is_some()
    }

    /// The figures so far.
    pub fn figures(&self) -> Figures {
        Figures {
            lines: self.lines,
            implausible: self.implausible,
            block_implausible: if self.tripped == Some(Rule::ImplausibleBlock) {
                self.block_implausible
            } else {
                0
            },
            most_orders: self.most_orders,
            prior_lines: self.prior.lines,
            prior_implausible: self.prior.implausible,
        }
    }

    /// What this batch adds to its client's counts.
    pub fn outcome(&self) -> Prior {
        Prior {
            lines: self.lines,
            implausible: self.implausible,
            lookups: self.lookups,
            misses: self.misses,
        }
    }
}

/// The (sex, year, month, place) of `body`, keyed: equal prefixes give equal
/// values, and without the key the value does not give the prefix back
/// (the key is random and never leaves the process). Only picks a bucket:
/// two loads and two multiplications a line.
fn keyed_prefix(key: u64, body: &[u8; BODY_LEN]) -> u64 {
    let (lo, rest) = body.split_at(8);
    let lo = u64::from_le_bytes(lo.try_into().unwrap_or_default());
    let hi = u64::from(u16::from_le_bytes([rest[0], rest[1]]));
    ((lo ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hi).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> [u8; BODY_LEN] {
        s.as_bytes().try_into().expect("13 characters")
    }

    #[test]
    fn the_list_knows_communes_arrondissements_corsica_and_countries() {
        let p = Places::get();
        // Paris 15e, Ajaccio (and as `20` before 1976), Bourg-en-Bresse,
        // Les Abymes (Guadeloupe), born in Algeria.
        for b in [
            "1850175115001",
            "185012A004001",
            "1850120004001",
            "2850101053012",
            "2850197101012",
            "1851299352999",
        ] {
            assert!(!p.implausible(&body(b)), "{b}");
        }
        assert!(p.implausible(&body("1850199099001")), "country code 099");
        assert!(p.implausible(&body("1850101999001")), "no commune 01999");
        assert!(p.implausible(&body("1851301053001")), "month 13");
        assert!(p.implausible(&body("1850001053001")), "month 00");
        assert!(p.implausible(&body("5850101053001")), "sex 5");
        assert!(p.implausible(&body("1850101053000")), "order 000");
        // A village of 270 inhabitants: 7 births a month at most.
        assert!(!p.implausible(&body("1850101002007")));
        assert!(p.implausible(&body("1850101002008")));
    }

    #[test]
    fn order_caps_follow_places_and_departments() {
        assert_eq!(Places::order_cap(270, 650_000), 7);
        assert_eq!(Places::order_cap(40_000, 650_000), 999);
        assert_eq!(Places::order_cap(12_000, 76_000), 228);
        assert_eq!(Places::order_cap(10_000, 20_000), 100);
    }

    #[test]
    fn a_block_of_implausible_lines_trips_and_the_verdict_stays() {
        let mut t = Prefixes::new(7);
        let mut w = Watch::new(Prior::default());
        for i in 0..(BLOCK_IMPLAUSIBLE - 1) {
            assert!(!w.observe(&mut t, &body(&format!("185130105{:04}", i % 1000))));
        }
        assert!(w.observe(&mut t, &body("1851301053001")));
        assert_eq!(w.tripped(), Some(Rule::ImplausibleBlock));
        assert!(w.observe(&mut t, &body("1850101053001")), "stays tripped");
        assert_eq!(w.figures().block_implausible, BLOCK_IMPLAUSIBLE);
    }

    #[test]
    fn order_numbers_under_one_prefix_add_up_across_batches_and_population_lines() {
        let mut t = Prefixes::new(42);
        let mut first = Watch::new(Prior::default());
        for o in 1..=500 {
            assert!(!first.observe(&mut t, &body(&format!("1850175056{o:03}"))));
        }
        // Sent again, the same order numbers add nothing.
        for _ in 0..5 {
            let mut again = Watch::new(Prior::default());
            for o in 1..=500 {
                assert!(!again.observe(&mut t, &body(&format!("1850175056{o:03}"))));
            }
        }
        // Mixed into a population, the sweep goes on where it was.
        let mut second = Watch::new(Prior::default());
        let mut seed = 0;
        for o in 501..=800 {
            for _ in 0..10 {
                assert!(!second.observe(&mut t, crate::nir::synthetic(seed).body()));
                seed += 1;
            }
            assert!(!second.observe(&mut t, &body(&format!("1850175056{o:03}"))));
        }
        assert!(second.observe(&mut t, &body("1850175056801")));
        assert_eq!(second.tripped(), Some(Rule::PrefixOrders));
        assert_eq!(second.figures().most_orders, 301, "501 to 801");
    }

    #[test]
    fn a_sweep_of_many_prefixes_interleaved_order_number_first_adds_up() {
        // 240 prefixes of Paris 15e (both sexes, every month of ten
        // years), order number 001 for each, then 002 for each, and so on.
        let mut t = Prefixes::new(9);
        let mut w = Watch::new(Prior::default());
        let mut line = 0u64;
        'sweep: for o in 1..=999 {
            for y in 80..90 {
                for m in 1..=12 {
                    for sex in 1..=2 {
                        line += 1;
                        if w.observe(&mut t, &body(&format!("{sex}{y}{m:02}75115{o:03}"))) {
                            break 'sweep;
                        }
                    }
                }
            }
        }
        assert_eq!(w.tripped(), Some(Rule::PrefixOrders));
        assert!(
            line <= 800 * 240 + 1,
            "at the 801st order number: line {line}"
        );
    }

    #[test]
    fn a_share_of_implausible_lines_trips_over_many_small_batches() {
        let mut t = Prefixes::new(1);
        let mut prior = Prior::default();
        let mut tripped = None;
        for batch in 0..100u64 {
            let mut w = Watch::new(prior);
            for i in 0..100u64 {
                // One in five implausible: never a block's quarter.
                let b = if i % 5 == 0 {
                    "1851301053001".to_owned()
                } else {
                    format!("1{:02}0175056{:03}", (batch * 100 + i) % 100, 1 + i % 9)
                };
                if w.observe(&mut t, &body(&b)) {
                    tripped = Some((batch, w.tripped()));
                    break;
                }
            }
            if tripped.is_some() {
                break;
            }
            let o = w.outcome();
            prior = Prior {
                lines: prior.lines + o.lines,
                implausible: prior.implausible + o.implausible,
                ..Prior::default()
            };
        }
        let (batch, rule) = tripped.expect("tripped");
        assert_eq!(rule, Some(Rule::ImplausibleShare));
        assert_eq!(batch, 49, "at the 1000th implausible line");
    }

    #[test]
    fn look_ups_that_find_no_one_trip_by_block_and_by_share() {
        let found = body("1850175115001");
        let mut t = Prefixes::new(5);
        // A population: nine found in ten, never a sweep.
        let mut w = Watch::new(Prior::default());
        for i in 0..100_000 {
            let hit = (i % 10 != 0).then_some(&found);
            assert!(!w.observe_lookup(&mut t, hit), "line {i}");
        }
        // A block half of whose look-ups find no one.
        let mut w = Watch::new(Prior::default());
        let at = (0..BLOCK)
            .position(|i| w.observe_lookup(&mut t, (i % 2 == 0).then_some(&found)))
            .expect("tripped");
        assert_eq!(w.tripped(), Some(Rule::NotFoundBlock));
        assert_eq!(at, BLOCK as usize - 1);
        // Spread over small batches: the client's share.
        let mut prior = Prior::default();
        let mut batches = 0;
        'out: loop {
            let mut w = Watch::new(prior);
            for i in 0..100 {
                if w.observe_lookup(&mut t, (i % 3 == 0).then_some(&found)) {
                    assert_eq!(w.tripped(), Some(Rule::NotFoundShare));
                    break 'out;
                }
            }
            let o = w.outcome();
            prior.lookups += o.lookups;
            prior.misses += o.misses;
            batches += 1;
        }
        assert!(prior.misses < MISS_SHARE_MIN && batches >= 29, "{batches}");
    }

    #[test]
    fn synthetic_numbers_read_as_a_population() {
        let p = Places::get();
        let mut t = Prefixes::new(3);
        let mut w = Watch::new(Prior::default());
        for seed in (0..200_000u64).chain(1_000_000_000..1_000_100_000) {
            let n = crate::nir::synthetic(seed);
            assert!(!p.implausible(n.body()), "seed {seed}");
            assert!(!w.observe(&mut t, n.body()));
        }
        assert_eq!(w.figures().implausible, 0);
    }

    #[test]
    fn keyed_prefixes_differ_by_key_and_prefix_only() {
        let a = body("1850175056001");
        let b = body("1850175056999");
        let c = body("2850175056001");
        assert_eq!(keyed_prefix(1, &a), keyed_prefix(1, &b));
        assert_ne!(keyed_prefix(1, &a), keyed_prefix(1, &c));
        assert_ne!(keyed_prefix(1, &a), keyed_prefix(2, &a));
    }
}

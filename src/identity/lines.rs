//! A batch of identity traits (§7), chunk by chunk: parse and check each
//! line, look the person up, let the guard see the NIRs found, hash them
//! as one slice, write `index,cstatns,quality,status`.
//!
//! The NIR found goes from the register to the scratch's slice of bodies,
//! which is wiped after the chunk like a NIR batch's; it is never written.

use std::borrow::Cow;

use zeroize::Zeroize;

use super::postgres::DbError;
use super::{Backend, Columns, Quality, Query, RawTraits, Resolved};
use crate::batch::{
    bytes, csv_fields_n, index_status, oversized_index, Candidates, Chunk, Counts, Format, Seen,
    Status, Verdict, MAX_LINE, OVERSIZED_HEAD,
};
use crate::code::{write_hex, Code, KeyChain, CODE_HEX_LEN};
use crate::nir::{parse_into, BODY_LEN};

/// No slot: the line has no NIR to hash.
const NO_SLOT: u32 = u32::MAX;

struct Rec {
    status: Status,
    quality: Option<Quality>,
    index: (u32, u8),
    slot: u32,
    /// Before the look-ups: the line's NIR (in `given`) or question (in
    /// `queries`), whose body takes a slot in the line's order after them.
    wait: Wait,
}

#[derive(Clone, Copy)]
enum Wait {
    Nothing,
    Given(u32),
    Query(u32),
}

/// Buffers reused from chunk to chunk by one worker; wiped after every chunk.
#[derive(Default)]
pub struct TraitScratch {
    recs: Vec<Rec>,
    indexes: Vec<u8>,
    given: Vec<[u8; BODY_LEN]>,
    queries: Vec<Query>,
    resolved: Vec<Resolved>,
    seen: Vec<Seen>,
    bodies: Vec<[u8; BODY_LEN]>,
    codes: Vec<Code>,
}

impl TraitScratch {
    fn wipe(&mut self) {
        self.recs.clear();
        crate::wipe_vec(&mut self.indexes);
        crate::wipe_arrays(&mut self.given);
        self.queries.clear(); // each wiped on drop
        self.resolved.clear(); // each wiped on drop
        self.seen.clear();
        crate::wipe_arrays(&mut self.bodies);
        self.codes.clear(); // each code is wiped as it is dropped
        self.codes.spare_capacity_mut().zeroize();
    }

    /// After the look-ups: each line's body (given or found) takes the
    /// next slot, in the lines' order, and each looked-up line its quality;
    /// the guard's view of the lines ([`Seen`]) is made.
    fn place(&mut self) {
        self.seen.clear();
        for rec in &mut self.recs {
            match rec.wait {
                Wait::Nothing => {}
                Wait::Given(g) => {
                    rec.slot = self.bodies.len() as u32;
                    self.bodies.push(self.given[g as usize]);
                    self.seen.push(Seen::Given(rec.slot));
                }
                Wait::Query(q) => {
                    let r = &self.resolved[q as usize];
                    rec.quality = Some(r.quality);
                    if r.is_found() {
                        rec.slot = self.bodies.len() as u32;
                        self.bodies.push(r.nir);
                        self.seen.push(Seen::Found(rec.slot));
                    } else {
                        self.seen.push(Seen::Miss);
                    }
                }
            }
        }
    }

    /// From the `k`-th line the guard saw on, every line gets `rest` and no
    /// code; the bodies from the first such line's are wiped.
    fn cut_seen(&mut self, k: usize, rest: Status) {
        let mut n = 0usize;
        let mut first = None;
        for rec in &mut self.recs {
            if rec.status != Status::Ok || matches!(rec.wait, Wait::Nothing) {
                continue;
            }
            if n >= k {
                if rec.slot != NO_SLOT && first.is_none() {
                    first = Some(rec.slot as usize);
                }
                rec.status = rest;
                rec.quality = None;
            }
            n += 1;
        }
        if let Some(from) = first {
            self.bodies[from..].iter_mut().for_each(Zeroize::zeroize);
            self.bodies.truncate(from);
        }
    }

    /// From the line of slot `from` on (from the first line when `from`
    /// is 0: a cut at the chunk's start covers its look-ups too), every
    /// `ok` line gets `rest` and no code; the bodies from `from` are wiped.
    fn hold_back(&mut self, from: usize, rest: Status) {
        let mut cut = from == 0;
        for rec in &mut self.recs {
            if rec.slot != NO_SLOT && rec.slot as usize >= from {
                cut = true;
            }
            if cut && rec.status == Status::Ok {
                rec.status = rest;
                rec.quality = None;
            }
        }
        if from < self.bodies.len() {
            self.bodies[from..].iter_mut().for_each(Zeroize::zeroize);
            self.bodies.truncate(from);
        }
    }
}

impl Drop for TraitScratch {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Counts of `ok` lines per quality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Qualities {
    /// `exact`.
    pub exact: u64,
    /// `approximate`.
    pub approximate: u64,
    /// `ambiguous`.
    pub ambiguous: u64,
    /// `not_found`.
    pub not_found: u64,
}

impl Qualities {
    /// Adds one line.
    pub fn add(&mut self, q: Quality) {
        match q {
            Quality::Exact => self.exact += 1,
            Quality::Approximate => self.approximate += 1,
            Quality::Ambiguous => self.ambiguous += 1,
            Quality::NotFound => self.not_found += 1,
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, o: &Qualities) {
        self.exact += o.exact;
        self.approximate += o.approximate;
        self.ambiguous += o.ambiguous;
        self.not_found += o.not_found;
    }
}

/// Where a trait chunk's answers go.
pub struct Answer<'a> {
    /// The submitter's lines.
    pub client: &'a mut Vec<u8>,
    /// A research project's `index,cspens` lines for its matching body:
    /// then the submitter's lines carry no code (`index,quality,status`).
    pub matcher: Option<&'a mut Vec<u8>>,
    /// Counts per status.
    pub counts: &'a mut Counts,
    /// Counts per quality.
    pub qualities: &'a mut Qualities,
}

/// Answers every line of a trait batch's chunk. `guard` sees the NIRs of
/// the lines that passed their own checks and were found (or given) and
/// says how many get a code, as for a NIR batch. Fails, answering nothing,
/// when the register cannot be reached (the batch is then given up).
#[allow(clippy::too_many_arguments)] // the batch's parts, the guard and the answer
pub fn process_chunk(
    format: Format,
    columns: &Columns,
    register: &Backend,
    chain: &KeyChain,
    chunk: &Chunk,
    scratch: &mut TraitScratch,
    answer: Answer<'_>,
    guard: &mut dyn FnMut(Candidates<'_>) -> Verdict,
) -> Result<(), DbError> {
    let lines = match chunk {
        Chunk::Lines(lines) => lines,
        Chunk::OversizedLine(head) => {
            let _ = guard(Candidates {
                bodies: &[],
                count: 0,
                seen: None,
            });
            answer.counts.add(Status::MalformedLine);
            let index = oversized_index(format, head).unwrap_or_default();
            let project = answer.matcher.is_some();
            write_line(
                format,
                project,
                index,
                None,
                None,
                Status::MalformedLine,
                answer.client,
            );
            return Ok(());
        }
    };
    parse_lines(format, columns, lines, scratch);
    if let Err(e) = register.resolve(&scratch.queries, &mut scratch.resolved) {
        scratch.wipe();
        return Err(e);
    }
    scratch.place();
    let count = scratch.bodies.len();
    let seen = std::mem::take(&mut scratch.seen);
    let verdict = guard(Candidates {
        bodies: &scratch.bodies,
        count,
        seen: Some(&seen),
    });
    // A halted batch (swept at 0) answers no look-up either.
    let swept = verdict.swept.min(seen.len());
    if swept < seen.len() || verdict.swept == 0 {
        scratch.cut_seen(swept, Status::SweepSuspected);
    }
    let wanted = seen[..swept]
        .iter()
        .filter(|s| !matches!(s, Seen::Miss))
        .count();
    scratch.seen = seen;
    if verdict.allowed < wanted {
        scratch.hold_back(verdict.allowed, verdict.rest);
    }
    scratch.codes.resize(scratch.bodies.len(), Code::default());
    chain.derive_batch(&scratch.bodies, &mut scratch.codes);
    let Answer {
        client,
        mut matcher,
        counts,
        qualities,
    } = answer;
    let project = matcher.is_some();
    let mut hex = [0u8; CODE_HEX_LEN];
    for rec in &scratch.recs {
        counts.add(rec.status);
        if let Some(q) = rec.quality {
            qualities.add(q);
        }
        let (start, len) = (rec.index.0 as usize, rec.index.1 as usize);
        let index = &scratch.indexes[start..start + len];
        let code = (rec.status == Status::Ok && rec.slot != NO_SLOT).then(|| {
            write_hex(&scratch.codes[rec.slot as usize], &mut hex);
            &hex[..]
        });
        match (&mut matcher, code) {
            (Some(m), Some(code)) => {
                m.extend_from_slice(index);
                m.push(b',');
                m.extend_from_slice(code);
                m.push(b'\n');
                write_line(format, true, index, None, rec.quality, rec.status, client);
            }
            _ => write_line(
                format,
                project,
                index,
                code,
                rec.quality,
                rec.status,
                client,
            ),
        }
    }
    hex.zeroize();
    scratch.wipe();
    Ok(())
}

type TraitFields<'a> = Result<[Cow<'a, [u8]>; 8], Option<Cow<'a, [u8]>>>;

/// Checks every line of a trait batch's chunk without a register or a key
/// (`cstatns validate`): calls `visit(status, index)` for each non-blank
/// line in order, `ok` for a line that passes its own checks (the look-up
/// is the service's).
pub fn check_chunk(
    format: Format,
    columns: &Columns,
    chunk: &Chunk,
    scratch: &mut TraitScratch,
    mut visit: impl FnMut(Status, &[u8]),
) {
    let lines = match chunk {
        Chunk::Lines(lines) => lines,
        Chunk::OversizedLine(head) => {
            visit(
                Status::MalformedLine,
                oversized_index(format, head).unwrap_or_default(),
            );
            return;
        }
    };
    parse_lines(format, columns, lines, scratch);
    for rec in &scratch.recs {
        let (start, len) = (rec.index.0 as usize, rec.index.1 as usize);
        visit(rec.status, &scratch.indexes[start..start + len]);
    }
    scratch.wipe();
}

/// Parses and checks every non-blank line of a chunk, in order.
fn parse_lines(format: Format, columns: &Columns, lines: &[u8], scratch: &mut TraitScratch) {
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let rec = parse_line(format, columns, line, scratch);
        scratch.recs.push(rec);
    }
}

/// Parses and checks one line; a line with a NIR keeps it in `given`, one
/// with traits its question in `queries` (looked up with the chunk's).
fn parse_line(format: Format, columns: &Columns, line: &[u8], s: &mut TraitScratch) -> Rec {
    let mut rec = Rec {
        status: Status::MalformedLine,
        quality: None,
        index: (s.indexes.len() as u32, 0),
        slot: NO_SLOT,
        wait: Wait::Nothing,
    };
    if line.len() > MAX_LINE {
        if let Some(index) = oversized_index(format, &line[..OVERSIZED_HEAD]) {
            echo_index(index, &mut rec, s);
        }
        return rec;
    }
    // Fields in the standard places: index, nir, the five traits, usual name.
    let parsed: TraitFields<'_> = match format {
        Format::Csv { delimiter } => csv_fields_n::<8>(line, delimiter, columns.count).map(|f| {
            let mut f = f.map(Some);
            let mut take = |i: Option<usize>| i.and_then(|i| f[i].take()).unwrap_or_default();
            let [a, b, c, d, e] = columns.traits.map(|i| take(Some(i)));
            [
                take(Some(0)),
                take(columns.nir),
                a,
                b,
                c,
                d,
                e,
                take(columns.usual_name),
            ]
        }),
        Format::Ndjson => json_fields(line),
    };
    let mut fields = match parsed {
        Ok(f) => f,
        Err(first) => {
            if let Some(first) = first.filter(|f| index_status(f).is_none()) {
                echo_index(&first, &mut rec, s);
            }
            return rec;
        }
    };
    if let Some(st) = index_status(&fields[0]) {
        rec.status = st;
        wipe_fields(&mut fields);
        return rec;
    }
    echo_index(&fields[0], &mut rec, s);
    let raw = RawTraits {
        traits: [&fields[2], &fields[3], &fields[4], &fields[5], &fields[6]].map(|f| &f[..]),
        usual_name: &fields[7],
    };
    let nir = fields[1].trim_ascii();
    rec.status = if !nir.is_empty() {
        let mut body = [0u8; BODY_LEN];
        let st = match parse_into(nir, &mut body) {
            Err(e) => e.into(),
            Ok(()) if raw.any() => match raw.query() {
                Ok(_) => Status::NirAndTraits,
                Err(st) => st,
            },
            Ok(()) => {
                rec.wait = Wait::Given(s.given.len() as u32);
                s.given.push(body);
                Status::Ok
            }
        };
        body.as_mut_slice().zeroize();
        st
    } else if !raw.any() {
        Status::MissingTrait
    } else {
        match raw.query() {
            Err(st) => st,
            Ok(q) => {
                rec.wait = Wait::Query(s.queries.len() as u32);
                s.queries.push(q);
                Status::Ok
            }
        }
    };
    wipe_fields(&mut fields);
    rec
}

/// Owned fields (an NDJSON value with escapes) are wiped; borrowed ones are
/// the chunk's, which its owner wipes.
fn wipe_fields(fields: &mut [Cow<'_, [u8]>; 8]) {
    for f in fields.iter_mut() {
        if let Cow::Owned(v) = f {
            v.zeroize();
        }
    }
}

fn echo_index(index: &[u8], rec: &mut Rec, s: &mut TraitScratch) {
    rec.index = (s.indexes.len() as u32, index.len() as u8);
    s.indexes.extend_from_slice(index);
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TraitLine<'a> {
    #[serde(borrow)]
    index: Cow<'a, str>,
    #[serde(borrow, default)]
    nir: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sex: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    birth_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    first_names: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    birth_date: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    birth_place: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    usual_name: Option<Cow<'a, str>>,
}

/// One NDJSON trait line: an object with `index` and any of §7's names, each
/// a JSON string; a missing trait is `missing_trait`, anything else that is
/// not such an object `malformed_line`.
fn json_fields(line: &[u8]) -> TraitFields<'_> {
    if !line.trim_ascii_start().starts_with(b"{") {
        return Err(None);
    }
    let l: TraitLine<'_> = serde_json::from_slice(line).map_err(|_| json_index(line))?;
    fn f(v: Option<Cow<'_, str>>) -> Cow<'_, [u8]> {
        v.map(bytes).unwrap_or_default()
    }
    Ok([
        bytes(l.index),
        f(l.nir),
        f(l.sex),
        f(l.birth_name),
        f(l.first_names),
        f(l.birth_date),
        f(l.birth_place),
        f(l.usual_name),
    ])
}

#[derive(serde::Deserialize)]
struct IndexOnly<'a> {
    #[serde(borrow)]
    index: Cow<'a, str>,
}

fn json_index(line: &[u8]) -> Option<Cow<'_, [u8]>> {
    serde_json::from_slice::<IndexOnly>(line)
        .ok()
        .map(|l| bytes(l.index))
}

/// The response header line of a trait batch, if the format has one:
/// `index,cstatns,quality,status`, or for a project `index,quality,status`.
pub fn response_header(format: Format, project: bool) -> Option<Vec<u8>> {
    match format {
        Format::Csv { delimiter } => {
            let d = delimiter as char;
            Some(if project {
                format!("index{d}quality{d}status\n").into_bytes()
            } else {
                format!("index{d}cstatns{d}quality{d}status\n").into_bytes()
            })
        }
        Format::Ndjson => None,
    }
}

fn write_line(
    format: Format,
    project: bool,
    index: &[u8],
    code: Option<&[u8]>,
    quality: Option<Quality>,
    status: Status,
    out: &mut Vec<u8>,
) {
    let code = code.unwrap_or(b"");
    let quality = quality.map_or("", Quality::code).as_bytes();
    match format {
        Format::Csv { delimiter } => {
            out.extend_from_slice(index);
            out.push(delimiter);
            if !project {
                out.extend_from_slice(code);
                out.push(delimiter);
            }
            out.extend_from_slice(quality);
            out.push(delimiter);
            out.extend_from_slice(status.code().as_bytes());
        }
        Format::Ndjson => {
            out.extend_from_slice(b"{\"index\":\"");
            out.extend_from_slice(index);
            if !project {
                out.extend_from_slice(b"\",\"cstatns\":\"");
                out.extend_from_slice(code);
            }
            out.extend_from_slice(b"\",\"quality\":\"");
            out.extend_from_slice(quality);
            out.extend_from_slice(b"\",\"status\":\"");
            out.extend_from_slice(status.code().as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::super::normal::{first_names, surname};
    use super::super::register::Person;
    use super::*;
    use crate::code::GenerationKey;

    fn register() -> Backend {
        let p = |nir: &str, sex, birth: &str, first: &str, date, place: &str| Person {
            nir: nir.as_bytes().try_into().unwrap(),
            sex,
            date,
            place: place.as_bytes().try_into().unwrap(),
            birth: surname(birth),
            usual: String::new(),
            first: first_names(first),
        };
        Backend::Embedded(super::super::Register::new(vec![
            p(
                "2610575115001",
                b'2',
                "Lefèvre",
                "Marie Claire",
                19610512,
                "75115",
            ),
            p(
                "2610575115002",
                b'2',
                "Lefèvre",
                "Marie Anne",
                19610512,
                "75115",
            ),
            p("1700169123005", b'1', "Dupont", "Paul", 19700103, "69123"),
        ]))
    }

    fn run(format: Format, columns: Columns, input: &str) -> (String, Qualities) {
        let chain = KeyChain::new(&[GenerationKey::from_bytes([7; 32])]).unwrap();
        let (mut out, mut counts, mut q) = (Vec::new(), Counts::default(), Qualities::default());
        process_chunk(
            format,
            &columns,
            &register(),
            &chain,
            &Chunk::Lines(input.as_bytes().to_vec()),
            &mut TraitScratch::default(),
            Answer {
                client: &mut out,
                matcher: None,
                counts: &mut counts,
                qualities: &mut q,
            },
            &mut |_| Verdict::all(),
        )
        .unwrap();
        (String::from_utf8(out).unwrap(), q)
    }

    fn code_of(body: &str) -> String {
        let chain = KeyChain::new(&[GenerationKey::from_bytes([7; 32])]).unwrap();
        let mut codes = [Code::default()];
        chain.derive_batch(&[body.as_bytes().try_into().unwrap()], &mut codes);
        let mut hex = [0u8; CODE_HEX_LEN];
        write_hex(&codes[0], &mut hex);
        String::from_utf8(hex.to_vec()).unwrap()
    }

    const CSV: Format = Format::Csv { delimiter: b',' };

    #[test]
    fn trait_lines_get_a_code_and_a_quality_or_a_status() {
        let (out, q) = run(
            CSV,
            Columns::standard(false),
            "A1,1,Dupont,Paul,1970-01-03,69123\n\
             A2,1,Dupond,Paul,1970-01-03,69123\n\
             A3,2,LEFEVRE,Marie,1961-05-12,75115\n\
             A4,1,Durand,Paul,1970-01-03,69123\n\
             A5,,Dupont,Paul,1970-01-03,69123\n\
             A6,3,Dupont,Paul,1970-01-03,69123\n\
             A7,1,Dupont,Paul,1970-02-30,69123\n\
             A8,1,Dupont,Paul,1970-01-03,75000\n\
             A9,1,\"Dupont, Jr\",Paul,1970-01-03\n",
        );
        let code = code_of("1700169123005");
        let want = format!(
            "A1,{code},exact,ok\nA2,{code},approximate,ok\nA3,,ambiguous,ok\nA4,,not_found,ok\n\
             A5,,,missing_trait\nA6,,,invalid_sex\nA7,,,invalid_date\nA8,,,invalid_place\nA9,,,malformed_line\n"
        );
        assert_eq!(out, want);
        assert_eq!(
            q,
            Qualities {
                exact: 1,
                approximate: 1,
                ambiguous: 1,
                not_found: 1
            }
        );
    }

    #[test]
    fn a_header_with_both_takes_either_but_not_both() {
        let columns = Columns::of(
            &"index,nir,sex,birth_name,first_names,birth_date,birth_place"
                .split(',')
                .map(str::as_bytes)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let (out, _) = run(
            CSV,
            columns,
            "B1,2951099126111,,,,,\nB2,2951099126111,1,Dupont,Paul,1970-01-03,69123\nB3,,,,,,\nB4,295109912611100,1,Dupont,Paul,1970-01-03,69123\nB5,,1,Dupont,Paul,1970-01-03,69123\n",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("B1,{},,ok", code_of("2951099126111")));
        assert_eq!(lines[1], "B2,,,nir_and_traits");
        assert_eq!(lines[2], "B3,,,missing_trait");
        assert_eq!(lines[3], "B4,,,invalid_key");
        assert!(lines[4].ends_with(",exact,ok"));
    }

    #[test]
    fn ndjson_trait_lines() {
        let (out, _) = run(
            Format::Ndjson,
            Columns::standard(false),
            "{\"index\":\"N1\",\"sex\":\"1\",\"birth_name\":\"Dupont\",\"first_names\":\"Paul\",\"birth_date\":\"1970-01-03\",\"birth_place\":\"69123\"}\n\
             {\"index\":\"N2\",\"sex\":\"1\",\"birth_name\":\"Dupont\",\"first_names\":\"Paul\",\"birth_date\":\"1970-01-03\"}\n\
             {\"index\":\"N3\",\"sex\":1}\n",
        );
        let code = code_of("1700169123005");
        assert_eq!(
            out,
            format!(
                "{{\"index\":\"N1\",\"cstatns\":\"{code}\",\"quality\":\"exact\",\"status\":\"ok\"}}\n\
                 {{\"index\":\"N2\",\"cstatns\":\"\",\"quality\":\"\",\"status\":\"missing_trait\"}}\n\
                 {{\"index\":\"N3\",\"cstatns\":\"\",\"quality\":\"\",\"status\":\"malformed_line\"}}\n"
            )
        );
    }

    #[test]
    fn a_guard_cut_covers_look_ups_too() {
        let chain = KeyChain::new(&[GenerationKey::from_bytes([7; 32])]).unwrap();
        let (mut out, mut counts, mut q) = (Vec::new(), Counts::default(), Qualities::default());
        process_chunk(
            CSV,
            &Columns::standard(false),
            &register(),
            &chain,
            &Chunk::Lines(
                b"A4,1,Durand,Paul,1970-01-03,69123\nA1,1,Dupont,Paul,1970-01-03,69123\n".to_vec(),
            ),
            &mut TraitScratch::default(),
            Answer {
                client: &mut out,
                matcher: None,
                counts: &mut counts,
                qualities: &mut q,
            },
            &mut |_| Verdict {
                allowed: 0,
                rest: Status::QuotaExceeded,
                swept: usize::MAX,
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A4,,,quota_exceeded\nA1,,,quota_exceeded\n"
        );
    }
}

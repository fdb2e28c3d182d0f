//! Answering a chunk of lines: parse, validate, hash, write — in three passes
//! so that the hashing pass sees the chunk's records as one slice (ready for a
//! multi-buffer kernel) and nothing is allocated per record.

use std::borrow::Cow;

use zeroize::Zeroize;

use super::{index_status, Chunk, Counts, Format, Operation, Status, MAX_LINE, OVERSIZED_HEAD};
use crate::code::{parse_hex_into, push_hex, Code, KeyChain, CODE_HEX_LEN};
use crate::nir::{parse_into, BODY_LEN};

/// The fields of a line (unused ones empty), or, for a malformed line, its
/// first field when it could be read.
type Fields<'a> = FieldsN<'a, 3>;

/// `N` fields of a line, or for a malformed line its first field when it
/// could be read.
pub(crate) type FieldsN<'a, const N: usize> = Result<[Cow<'a, [u8]>; N], Option<Cow<'a, [u8]>>>;

/// One answered line before hashing.
struct Rec {
    status: Status,
    /// The index to echo (empty if none).
    index: Echo,
    /// Slot in the bodies/codes vectors (`ok` candidates only).
    slot: u32,
}

/// Where a line's index to echo is: a range of the chunk's text, or, for
/// an index the line spells with escapes (NDJSON), of [`Scratch::indexes`].
/// Most indexes are not copied.
#[derive(Clone, Copy)]
struct Echo {
    start: u32,
    len: u8,
    copied: bool,
}

impl Echo {
    const NONE: Echo = Echo {
        start: 0,
        len: 0,
        copied: false,
    };

    fn get<'a>(self, lines: &'a [u8], s: &'a Scratch) -> &'a [u8] {
        let from = if self.copied { &s.indexes[..] } else { lines };
        &from[self.start as usize..][..usize::from(self.len)]
    }
}

/// Buffers reused from chunk to chunk by one worker; wiped after every chunk.
#[derive(Default)]
pub struct Scratch {
    recs: Vec<Rec>,
    indexes: Vec<u8>,
    bodies: Vec<[u8; BODY_LEN]>,
    codes: Vec<Code>,
    gens: Vec<u32>,
}

impl Scratch {
    /// The `ok` candidates from slot `allowed` on get `rest` and no code:
    /// their inputs are wiped and dropped before the hashing pass.
    fn hold_back(&mut self, op: Operation, allowed: usize, rest: Status) {
        for rec in &mut self.recs {
            if rec.status == Status::Ok && rec.slot as usize >= allowed {
                rec.status = rest;
            }
        }
        match op {
            Operation::Derive => {
                self.bodies[allowed..].iter_mut().for_each(Zeroize::zeroize);
                self.bodies.truncate(allowed);
            }
            Operation::Renew => {
                self.codes[allowed..].iter_mut().for_each(Zeroize::zeroize);
                self.codes.truncate(allowed);
                self.gens[allowed..].zeroize();
                self.gens.truncate(allowed);
            }
        }
    }

    fn is_clean(&self) -> bool {
        self.recs.is_empty()
            && self.indexes.is_empty()
            && self.bodies.is_empty()
            && self.codes.is_empty()
            && self.gens.is_empty()
    }

    fn wipe(&mut self) {
        self.recs.clear();
        crate::wipe_vec(&mut self.indexes);
        crate::wipe_arrays(&mut self.bodies);
        self.codes.clear(); // each code is wiped as it is dropped
        self.codes.spare_capacity_mut().zeroize();
        crate::wipe_vec(&mut self.gens);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Answers every line of `chunk`, appending the response lines to `out` and
/// the statuses to `counts`. `chain` gives `G`; for [`Operation::Derive`] the
/// codes are `C_G`, for [`Operation::Renew`] old codes are brought to `G`.
pub fn process_chunk(
    op: Operation,
    format: Format,
    chain: &KeyChain,
    chunk: &Chunk,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
    counts: &mut Counts,
) {
    process_chunk_guarded(op, format, chain, chunk, scratch, out, counts, &mut |_| {
        Verdict::all()
    });
}

/// What the guard lets through of a chunk's `ok` lines: those from
/// `swept` on are answered `sweep_suspected`; of the others, the first
/// `allowed` get their code and the rest are answered `rest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `ok` lines that get a code, in order.
    pub allowed: usize,
    /// The status of the `ok` lines past `allowed` (and before `swept`).
    pub rest: Status,
    /// The first `ok` line judged part of a sweep (`usize::MAX`: none).
    pub swept: usize,
}

impl Verdict {
    /// Every line through.
    pub fn all() -> Self {
        Self {
            allowed: usize::MAX,
            rest: Status::Ok,
            swept: usize::MAX,
        }
    }
}

/// The `ok` candidates of a chunk, in order, as the guard sees them: for a
/// NIR batch their canonical bodies; a renewal batch carries no NIR, so only
/// their number.
pub struct Candidates<'a> {
    /// The bodies (empty for a renewal batch).
    pub bodies: &'a [[u8; BODY_LEN]],
    /// How many lines passed their own checks.
    pub count: usize,
    /// For a batch of identity traits: its lines that passed their own
    /// checks, in order, each with the NIR it gave or found (its slot in
    /// `bodies`) or none; the verdict's `swept` then counts these.
    pub seen: Option<&'a [Seen]>,
}

/// A line of a batch of identity traits, as the guard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A NIR given on the line (a batch that takes either), at this slot.
    Given(u32),
    /// A look-up that found one person, whose NIR is at this slot.
    Found(u32),
    /// A look-up that found no one, or several people.
    Miss,
}

/// [`process_chunk`] with a guard between parsing and hashing: `guard` sees
/// the lines that passed their own checks (always called, once, even for a
/// chunk with none) and says how many of them get a code; no code is
/// computed for the others (§4's guard statuses).
#[allow(clippy::too_many_arguments)] // process_chunk's, and the guard
pub fn process_chunk_guarded(
    op: Operation,
    format: Format,
    chain: &KeyChain,
    chunk: &Chunk,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
    counts: &mut Counts,
    guard: &mut dyn FnMut(Candidates<'_>) -> Verdict,
) {
    let lines = match chunk {
        Chunk::Lines(lines) => lines,
        Chunk::OversizedLine(head) => {
            let _ = guard(Candidates {
                bodies: &[],
                count: 0,
                seen: None,
            });
            counts.add(Status::MalformedLine);
            let index = oversized_index(format, head).unwrap_or_default();
            write_line(format, index, None, Status::MalformedLine, out);
            return;
        }
    };
    parse_lines(op, format, chain.generation(), lines, scratch);
    let count = match op {
        Operation::Derive => scratch.bodies.len(),
        Operation::Renew => scratch.gens.len(),
    };
    let verdict = guard(Candidates {
        bodies: match op {
            Operation::Derive => &scratch.bodies,
            Operation::Renew => &[],
        },
        count,
        seen: None,
    });
    if verdict.swept < count {
        scratch.hold_back(op, verdict.swept, Status::SweepSuspected);
    }
    if verdict.allowed < count.min(verdict.swept) {
        scratch.hold_back(op, verdict.allowed, verdict.rest);
    }
    // Pass 2: hash every `ok` candidate as one slice.
    match op {
        Operation::Derive => {
            scratch.codes.resize(scratch.bodies.len(), Code::default());
            chain.derive_batch(&scratch.bodies, &mut scratch.codes);
        }
        Operation::Renew => chain.renew_batch(&scratch.gens, &mut scratch.codes),
    }
    // Pass 3: write the answers in order.
    // All the answer's room at once: a buffer that grew half-way would be
    // freed with the lines written so far.
    out.reserve(scratch.recs.iter().map(|rec| answer_len(format, rec)).sum());
    for rec in &scratch.recs {
        counts.add(rec.status);
        let index = rec.index.get(lines, scratch);
        let code = (rec.status == Status::Ok).then(|| &scratch.codes[rec.slot as usize]);
        write_line(format, index, code, rec.status, out);
    }
    scratch.wipe();
}

/// Pass 1: one record per non-blank line, in order.
fn parse_lines(op: Operation, format: Format, g: u32, lines: &[u8], scratch: &mut Scratch) {
    if !scratch.is_clean() {
        // A chunk that panicked half-way left its records: they go first.
        scratch.wipe();
    }
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', lines).chain(std::iter::once(lines.len()));
    for end in ends {
        let line = &lines[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue; // blank lines are skipped (§4); also the split's empty tail
        }
        let rec = parse_line(op, format, g, (lines, line), scratch);
        scratch.recs.push(rec);
    }
}

/// Checks every line of `chunk` without any key (the submitter's dry run,
/// `cstatns validate`): calls `visit(status, index)` for each non-blank line
/// in order, `index` being the echoed index (empty unless clean). Renewal
/// generations are only checked to be whole numbers from 1 (the service
/// alone knows `G`).
pub fn check_chunk(
    op: Operation,
    format: Format,
    chunk: &Chunk,
    scratch: &mut Scratch,
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
    parse_lines(op, format, u32::MAX, lines, scratch);
    for rec in &scratch.recs {
        visit(rec.status, rec.index.get(lines, scratch));
    }
    scratch.wipe();
}

/// Parses one non-blank line into its record, pushing an `ok` candidate's
/// input to the scratch vectors. Order of checks: §4's precedence. `line`
/// is part of `lines`, the chunk.
fn parse_line(
    op: Operation,
    format: Format,
    g: u32,
    (lines, line): (&[u8], &[u8]),
    s: &mut Scratch,
) -> Rec {
    let mut rec = Rec {
        status: Status::MalformedLine,
        index: Echo::NONE,
        slot: 0,
    };
    if line.len() > MAX_LINE {
        // Same answer whether the line fell inside a chunk or across chunks.
        if let Some(index) = oversized_index(format, &line[..OVERSIZED_HEAD]) {
            rec.index = echo_index(index, lines, s);
        }
        return rec;
    }
    let want = op.request_columns().len();
    let plain = match format {
        Format::Csv { delimiter } => plain_fields(line, delimiter, want),
        Format::Ndjson => None,
    };
    // The fields of a quoted or JSON line, which may be decoded copies: the
    // plain line's are borrowed as they are, with nothing to build or drop.
    let read: Fields<'_>;
    let fields: [&[u8]; 3] = match plain {
        Some(f) => f,
        None => {
            read = match format {
                Format::Csv { delimiter } => csv_fields(line, delimiter, want),
                Format::Ndjson => json_fields(op, line),
            };
            match &read {
                Ok([a, b, c]) => [a, b, c],
                Err(first) => {
                    // Malformed, but echo the first field when it is a clean
                    // index (§4), so that the submitter can find the line.
                    if let Some(first) = first.as_deref().filter(|f| index_status(f).is_none()) {
                        rec.index = echo_index(first, lines, s);
                    }
                    return rec;
                }
            }
        }
    };
    let index = fields[0];
    if let Some(st) = index_status(index) {
        rec.status = st;
        return rec;
    }
    rec.index = echo_index(index, lines, s);
    let status = match op {
        Operation::Derive => {
            // Read straight into its slot of the scratch (which wipes it), as
            // a code below: no copy of the body is left in this frame, and
            // none is moved through it (a copy read right after the body's
            // bytes were stored waited on those stores: nearly half of
            // `parse_lines`' samples fell on it).
            let slot = s.bodies.len();
            s.bodies.push([0u8; BODY_LEN]);
            match parse_into(fields[1], &mut s.bodies[slot]) {
                Ok(()) => {
                    rec.slot = slot as u32;
                    Status::Ok
                }
                Err(e) => {
                    // `parse_into` writes only a body that passed §2.
                    s.bodies.pop();
                    e.into()
                }
            }
        }
        Operation::Renew => {
            // Decoded straight into its slot of the scratch (which wipes it),
            // so no copy of the code is left in this frame.
            let slot = s.codes.len();
            s.codes.push(Code::default());
            let code_ok = parse_hex_into(fields[1], &mut s.codes[slot]);
            match (code_ok, parse_generation(fields[2], g)) {
                (true, Some(from)) => {
                    rec.slot = slot as u32;
                    s.gens.push(from);
                    Status::Ok
                }
                (ok, _) => {
                    drop(s.codes.pop()); // wiped on drop
                    if ok {
                        Status::InvalidGeneration
                    } else {
                        Status::InvalidCode
                    }
                }
            }
        }
    };
    rec.status = status;
    rec
}

/// The clean index to echo for a line longer than [`MAX_LINE`], from its
/// first [`OVERSIZED_HEAD`] bytes: the CSV first field when it ends there
/// and is a clean index; nothing for NDJSON (an object cut short cannot be
/// read).
pub(crate) fn oversized_index(format: Format, head: &[u8]) -> Option<&[u8]> {
    let Format::Csv { delimiter } = format else {
        return None;
    };
    let end = memchr::memchr(delimiter, head)?;
    let field = &head[..end];
    let field = match field.strip_prefix(b"\"") {
        Some(quoted) => quoted.strip_suffix(b"\"")?,
        None => field,
    };
    index_status(field).is_none().then_some(field)
}

/// Where `index` (a clean one: 1 to 64 bytes) is, copied only if it is not
/// part of `lines`.
fn echo_index(index: &[u8], lines: &[u8], s: &mut Scratch) -> Echo {
    let len = index.len() as u8;
    let offset = index.as_ptr().addr().wrapping_sub(lines.as_ptr().addr());
    if offset < lines.len() && lines.len() - offset >= index.len() {
        if let Ok(start) = u32::try_from(offset) {
            return Echo {
                start,
                len,
                copied: false,
            };
        }
    }
    let start = s.indexes.len() as u32;
    s.indexes.extend_from_slice(index);
    Echo {
        start,
        len,
        copied: true,
    }
}

/// A generation: ASCII digits only, a whole number from 1 to `g`.
/// A generation: ASCII digits only, read as a whole number (leading zeros
/// of any count allowed: `1`, `01` and `00000000001` are all generation 1),
/// which must be from 1 to `g`.
fn parse_generation(raw: &[u8], g: u32) -> Option<u32> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let first = raw.iter().position(|&d| d != b'0').unwrap_or(raw.len());
    let digits = &raw[first..];
    if digits.len() > 10 {
        return None; // past u32, so past any G
    }
    let n = digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    (1..=u64::from(g)).contains(&n).then_some(n as u32)
}

/// Splits one CSV line into exactly `want` fields (2 or 3), RFC 4180 quoting
/// accepted within the line. Written by hand rather than with `csv-core`
/// because a record must never run past its physical line (see the module
/// docs) and no field may be copied on the hot path. A quoted field is given
/// raw (an escaped `""` stays doubled): no valid index, NIR, code or generation
/// holds a quote, so the status is the same as for the decoded text.
///
/// On a malformed line, returns the first field if it could be read.
pub(super) fn csv_fields(line: &[u8], d: u8, want: usize) -> Fields<'_> {
    csv_fields_n::<3>(line, d, want)
}

/// The line nearly every CSV batch has: exactly `want` fields (2 or 3), no
/// quote. `None` for any other line, which [`csv_fields`] then reads (the
/// same fields for a line both read: the tests compare them).
fn plain_fields(line: &[u8], d: u8, want: usize) -> Option<[&[u8]; 3]> {
    let mut fields: [&[u8]; 3] = [b""; 3];
    let mut rest = line;
    for field in &mut fields[..want - 1] {
        let end = find2(rest, d, b'"')?;
        if rest[end] != d {
            return None;
        }
        *field = &rest[..end];
        rest = &rest[end + 1..];
    }
    if find2(rest, d, b'"').is_some() {
        return None;
    }
    fields[want - 1] = rest;
    Some(fields)
}

/// Where `a` or `b` first is in `hay`, as `memchr::memchr2`. A line's fields
/// are short (an index, a NIR): read eight bytes at a time in a word, they
/// cost a third of the instructions `memchr2` spent setting up its vectors
/// for them (which were a third of `parse_lines`'). Long ones go to `memchr2`.
fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if hay.len() > 64 {
        return memchr::memchr2(a, b, hay);
    }
    // 0x80 in each byte of `w` that is zero, exactly: the low seven bits
    // added to 0x7f carry into the high bit only when one is set, and no
    // byte carries into the next.
    let zeros = |w: u64| !(((w & !HIGH) + !HIGH) | w) & HIGH;
    let (wa, wb) = (ONES * u64::from(a), ONES * u64::from(b));
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        let hits = zeros(w ^ wa) | zeros(w ^ wb);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = words.remainder();
    tail.iter().position(|&c| c == a || c == b).map(|p| at + p)
}

/// [`csv_fields`] for lines of up to `N` fields (a trait batch has up to 8).
pub(crate) fn csv_fields_n<const N: usize>(line: &[u8], d: u8, want: usize) -> FieldsN<'_, N> {
    let mut fields: [&[u8]; N] = [b""; N];
    let mut n = 0usize;
    let mut pos = 0usize;
    let mut first: Option<&[u8]> = None;
    fn malformed<const N: usize>(first: Option<&[u8]>) -> FieldsN<'_, N> {
        Err(first.map(Cow::Borrowed))
    }
    loop {
        let (field, next) = if line.get(pos) == Some(&b'"') {
            let mut i = pos + 1;
            let end = loop {
                match memchr::memchr(b'"', &line[i..]) {
                    None => return malformed(first),
                    Some(q) if line.get(i + q + 1) == Some(&b'"') => i += q + 2,
                    Some(q) => break i + q,
                }
            };
            (&line[pos + 1..end], end + 1)
        } else {
            let end = memchr::memchr(d, &line[pos..]).map_or(line.len(), |e| pos + e);
            let field = &line[pos..end];
            if field.contains(&b'"') {
                return malformed(first);
            }
            (field, end)
        };
        // A field must end at the delimiter or the line end (`"A1"x` is
        // no field, and its text is not echoed).
        if next < line.len() && line[next] != d {
            return malformed(first);
        }
        if n == 0 {
            first = Some(field);
        }
        if n < N {
            fields[n] = field;
        }
        n += 1;
        if next == line.len() {
            break;
        }
        pos = next + 1;
        if pos == line.len() {
            n += 1; // a trailing delimiter opens an empty last field
            break;
        }
    }
    if n != want {
        return malformed(first);
    }
    Ok(fields.map(Cow::Borrowed))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeriveLine<'a> {
    #[serde(borrow)]
    index: Cow<'a, str>,
    #[serde(borrow)]
    nir: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewLine<'a> {
    #[serde(borrow)]
    index: Cow<'a, str>,
    #[serde(borrow)]
    cstatns: Cow<'a, str>,
    #[serde(borrow)]
    generation: Cow<'a, str>,
}

pub(crate) fn bytes(c: Cow<'_, str>) -> Cow<'_, [u8]> {
    match c {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// One NDJSON line: an object with exactly the field names of §4, each a JSON
/// string; anything else is `malformed_line` (first field not recoverable).
fn json_fields(op: Operation, line: &[u8]) -> Fields<'_> {
    // serde's derived structs also accept a JSON array (`["A1","…"]`) in
    // field order: only an object is a record here.
    if !line.trim_ascii_start().starts_with(b"{") {
        return Err(None);
    }
    let parsed = match op {
        Operation::Derive => serde_json::from_slice::<DeriveLine>(line)
            .map(|l| [bytes(l.index), bytes(l.nir), Cow::Borrowed(&b""[..])]),
        Operation::Renew => serde_json::from_slice::<RenewLine>(line)
            .map(|l| [bytes(l.index), bytes(l.cstatns), bytes(l.generation)]),
    };
    parsed.map_err(|_| json_index(line))
}

#[derive(serde::Deserialize)]
struct IndexOnly<'a> {
    #[serde(borrow)]
    index: Cow<'a, str>,
}

/// The `index` member of a malformed NDJSON line that is still a JSON object
/// with a string `index` (its "first field", echoed when clean, as for CSV).
/// Only on the error path: it parses the line a second time.
fn json_index(line: &[u8]) -> Option<Cow<'_, [u8]>> {
    serde_json::from_slice::<IndexOnly>(line)
        .ok()
        .map(|l| bytes(l.index))
}

/// The length of [`write_line`]'s line for `rec`.
fn answer_len(format: Format, rec: &Rec) -> usize {
    let code = if rec.status == Status::Ok {
        CODE_HEX_LEN
    } else {
        0
    };
    let frame = match format {
        Format::Csv { .. } => ",,\n".len(),
        Format::Ndjson => "{\"index\":\"\",\"cstatns\":\"\",\"status\":\"\"}\n".len(),
    };
    usize::from(rec.index.len) + code + rec.status.code().len() + frame
}

/// Writes one response line. `index` is empty or a clean index, so neither
/// format needs quoting or escaping.
fn write_line(
    format: Format,
    index: &[u8],
    code: Option<&Code>,
    status: Status,
    out: &mut Vec<u8>,
) {
    match format {
        Format::Csv { delimiter } => {
            out.extend_from_slice(index);
            out.push(delimiter);
            if let Some(code) = code {
                push_hex(code, out);
            }
            out.push(delimiter);
            out.extend_from_slice(status.code().as_bytes());
        }
        Format::Ndjson => {
            out.extend_from_slice(b"{\"index\":\"");
            out.extend_from_slice(index);
            out.extend_from_slice(b"\",\"cstatns\":\"");
            if let Some(code) = code {
                push_hex(code, out);
            }
            out.extend_from_slice(b"\",\"status\":\"");
            out.extend_from_slice(status.code().as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_word_at_a_time_search_finds_what_memchr2_finds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xf1_2d);
        // Every length around the word and the memchr2 hand-over, every
        // byte value as needle and around it, hits at every position.
        for _ in 0..200_000 {
            let len = rng.gen_range(0..80);
            let (a, b): (u8, u8) = (rng.gen(), rng.gen());
            let pick = [a, b, a ^ 0x80, b.wrapping_add(1), 0, 0xff, rng.gen()];
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.gen_ratio(1, 12) {
                        pick[rng.gen_range(0..2)]
                    } else {
                        pick[rng.gen_range(2..pick.len())]
                    }
                })
                .collect();
            assert_eq!(
                super::find2(&hay, a, b),
                memchr::memchr2(a, b, &hay),
                "{hay:?} {a} {b}"
            );
        }
    }

    use super::*;
    use crate::code::GenerationKey;

    fn chain(g: usize) -> KeyChain {
        let keys: Vec<_> = (0..g)
            .map(|i| GenerationKey::from_bytes([i as u8 + 1; 32]))
            .collect();
        KeyChain::new(&keys).unwrap()
    }

    fn run(op: Operation, format: Format, input: &str) -> String {
        let mut out = Vec::new();
        let mut counts = Counts::default();
        let chunk = Chunk::Lines(input.as_bytes().to_vec());
        process_chunk(
            op,
            format,
            &chain(2),
            &chunk,
            &mut Scratch::default(),
            &mut out,
            &mut counts,
        );
        assert_eq!(
            counts.total() as usize,
            out.iter().filter(|&&b| b == b'\n').count()
        );
        // The room reserved was the answer's length, no more, no less (a
        // fresh vector gets exactly what is reserved).
        assert_eq!(out.capacity(), out.len());
        String::from_utf8(out).unwrap()
    }

    fn statuses(out: &str) -> Vec<&str> {
        out.lines()
            .map(|l| l.rsplit([',', ';']).next().unwrap())
            .collect()
    }

    const CSV: Format = Format::Csv { delimiter: b',' };

    #[test]
    fn precedence_malformed_then_index_then_nir() {
        let out = run(
            Operation::Derive,
            CSV,
            "a b,2951099126111\n2951099126111,xx\nA1,2951099126111,3\nA2,29510991261119\nA3,295109912611193\n",
        );
        assert_eq!(
            statuses(&out),
            [
                "invalid_index",
                "index_looks_like_nir",
                "malformed_line",
                "invalid_length",
                "ok"
            ]
        );
        // Only clean indexes come back.
        assert!(out.starts_with(",,invalid_index\n,,index_looks_like_nir\nA1,,malformed_line\n"));
    }

    #[test]
    fn quoting_crlf_and_blank_lines() {
        let out = run(
            Operation::Derive,
            CSV,
            "\"A1\",\"2951099126111\"\r\n\r\n\n  \nA2,\"29510\"\"99126111\"\nA3,\"2951099126111\n",
        );
        assert_eq!(
            statuses(&out),
            ["ok", "invalid_character", "malformed_line"]
        );
    }

    #[test]
    fn semicolon_delimiter_is_used_in_answers() {
        let out = run(
            Operation::Derive,
            Format::Csv { delimiter: b';' },
            "A1;2951099126111\n",
        );
        assert!(out.starts_with("A1;") && out.ends_with(";ok\n"));
        assert_eq!(out.split(';').nth(1).unwrap().len(), 64);
    }

    #[test]
    fn ndjson_lines() {
        let out = run(
            Operation::Derive,
            Format::Ndjson,
            "{\"index\":\"A1\",\"nir\":\"2951099126111\"}\n{\"index\":\"A2\",\"nir\":2951099126111}\n[\"A4\",\"2951099126111\"]\n{\"index\":\"A3\",\"nir\":\"2951099126111\",\"x\":\"y\"}\n{\"index\":\"A\\u0035\",\"nir\":\"2951099126111\"}\n",
        );
        // An index spelt with an escape is echoed decoded (copied aside).
        assert!(out
            .lines()
            .last()
            .unwrap()
            .starts_with("{\"index\":\"A5\","));
        let st: Vec<String> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            st,
            [
                "ok",
                "malformed_line",
                "malformed_line",
                "malformed_line",
                "ok"
            ]
        );
    }

    #[test]
    fn renewal_checks_code_then_generation() {
        let c = "ab".repeat(32);
        let input = format!(
            "A1,{c},1\nA2,{c},2\nA3,{c},3\nA4,{c},0\nA5,xyz,1\nA6,{},1\n",
            "AB".repeat(32)
        );
        let out = run(Operation::Renew, CSV, &input);
        assert_eq!(
            statuses(&out),
            [
                "ok",
                "ok",
                "invalid_generation",
                "invalid_generation",
                "invalid_code",
                "ok"
            ]
        );
        // Generation G comes back unchanged; upper-case hex is read as the same code.
        assert_eq!(out.lines().nth(1).unwrap(), format!("A2,{c},ok"));
        assert_eq!(
            out.lines().next().unwrap(),
            out.lines().nth(5).unwrap().replace("A6", "A1")
        );
    }

    #[test]
    fn a_generation_is_a_whole_number_leading_zeros_allowed() {
        for (raw, want) in [
            (&b"1"[..], Some(1)),
            (b"01", Some(1)),
            (b"00000000001", Some(1)),
            (b"0000000000000000000003", Some(3)),
            (b"3", Some(3)),
            (b"4", None),
            (b"0", None),
            (b"000", None),
            (b"", None),
            (b"+1", None),
            (b" 1", None),
            (b"1.0", None),
            (b"99999999999999999999", None),
        ] {
            assert_eq!(
                parse_generation(raw, 3),
                want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn the_plain_line_fast_path_reads_what_the_full_reader_reads() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4180);
        let mut taken = 0;
        for _ in 0..200_000 {
            let d = if rng.gen_bool(0.5) { b',' } else { b';' };
            let want = rng.gen_range(2..=3);
            let line: Vec<u8> = (0..rng.gen_range(0..12))
                .map(|_| b"a1,;\" \r"[rng.gen_range(0..7)])
                .collect();
            let full = csv_fields(&line, d, want);
            match plain_fields(&line, d, want) {
                Some(fields) => {
                    taken += 1;
                    assert_eq!(full, Ok(fields.map(Cow::Borrowed)), "{line:?}");
                }
                // Only a quote or a wrong field count leaves the fast path.
                None => assert!(line.contains(&b'"') || full.is_err(), "{line:?}"),
            }
        }
        assert!(taken > 10_000, "{taken}");
    }

    #[test]
    fn a_quoted_first_field_followed_by_text_is_not_echoed() {
        let out = run(
            Operation::Derive,
            CSV,
            "\"A1\"2951099126111,x\n\"A2\",x,y\n",
        );
        assert_eq!(out, ",,malformed_line\nA2,,malformed_line\n");
    }

    #[test]
    fn an_oversized_line_gets_the_same_answer_inside_a_chunk_or_across_chunks() {
        use crate::batch::{Chunker, CHUNK_SIZE};
        let long = format!("A1,{}2951099126111", " ".repeat(3 * CHUNK_SIZE));
        let blank = " ".repeat(3 * CHUNK_SIZE);
        let unclean = format!("bad index,{}", "x".repeat(3 * CHUNK_SIZE));
        // Inside one chunk.
        let inside = run(
            Operation::Derive,
            CSV,
            &format!("{long}\n{blank}\n{unclean}\nA2,2951099126111\n"),
        );
        // Across chunks: the long lines straddle chunk cuts.
        let mut body = "P,2951099126111\n".repeat((CHUNK_SIZE - 1000) / 16);
        let prefix_lines = body.lines().count();
        body.push_str(&format!("{long}\n{blank}\n{unclean}\nA2,2951099126111\n"));
        let mut chunks = Vec::new();
        let mut chunker = Chunker::new();
        for part in body.as_bytes().chunks(3000) {
            chunker.push(part, &mut |c| chunks.push(c));
        }
        chunker.finish(&mut |c| chunks.push(c));
        assert!(
            chunks.iter().any(|c| matches!(c, Chunk::OversizedLine(_))),
            "the test must straddle"
        );
        let mut out = Vec::new();
        let mut counts = Counts::default();
        for c in &chunks {
            process_chunk(
                Operation::Derive,
                CSV,
                &chain(2),
                c,
                &mut Scratch::default(),
                &mut out,
                &mut counts,
            );
        }
        let across: String = String::from_utf8(out)
            .unwrap()
            .lines()
            .skip(prefix_lines)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(across, inside);
        assert!(
            inside.starts_with("A1,,malformed_line\n,,malformed_line\nA2,"),
            "{inside}"
        );
    }

    #[test]
    fn csv_header_takes_its_delimiter_and_tolerates_quotes() {
        use super::super::parse_csv_header;
        assert_eq!(parse_csv_header(Operation::Derive, b"index,nir"), Ok(b','));
        assert_eq!(
            parse_csv_header(Operation::Derive, b"index;nir\r"),
            Ok(b';')
        );
        // The decoder takes a BOM off the start of the body; here it is text.
        assert!(parse_csv_header(Operation::Derive, b"\xEF\xBB\xBFindex;nir").is_err());
        assert_eq!(
            parse_csv_header(Operation::Derive, b"\"index\",\"nir\""),
            Ok(b',')
        );
        assert_eq!(
            parse_csv_header(Operation::Renew, b"index;cstatns;generation"),
            Ok(b';')
        );
        assert!(parse_csv_header(Operation::Derive, b"nir,index").is_err());
        assert!(parse_csv_header(Operation::Derive, b"index,nir,").is_err());
        assert!(parse_csv_header(Operation::Derive, b"index\tnir").is_err());
        assert!(parse_csv_header(Operation::Renew, b"index,nir").is_err());
    }

    #[test]
    fn oversized_line_is_one_malformed_answer() {
        let mut out = Vec::new();
        let mut counts = Counts::default();
        process_chunk(
            Operation::Derive,
            Format::Ndjson,
            &chain(1),
            &Chunk::OversizedLine(b"{\"index\":\"A1\",\"nir\":\"   ".to_vec()),
            &mut Scratch::default(),
            &mut out,
            &mut counts,
        );
        assert_eq!(
            out,
            b"{\"index\":\"\",\"cstatns\":\"\",\"status\":\"malformed_line\"}\n"
        );
    }
}

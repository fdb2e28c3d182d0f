//! The sans-I/O batch decoder: bytes in, chunks of whole lines out.
//!
//! A [`Decoder`] is fed a body's bytes in whatever pieces they arrive and
//! does the whole of §4's framing: the UTF-8 byte order mark, blank lines
//! before the header, the CSV header and its delimiter, then chunks of whole
//! lines for [`super::process_chunk`] or [`super::check_chunk`]. It does no
//! I/O and holds no key, so the service, `cstatns validate` and fuzz targets
//! feed it the same way and cannot drift apart.

use zeroize::Zeroize;

use super::chunk::{Chunk, Chunker, MAX_LINE};
use super::{csv_fields_n, parse_csv_header, Format, HeaderError, Operation, BOM};
use crate::identity::{Columns, TRAIT_COLUMNS, USUAL_NAME};

/// The framing of one body: see the module documentation.
pub struct Decoder {
    op: Operation,
    csv: bool,
    /// Bytes fed so far, the start included (what a size limit counts).
    fed: u64,
    /// While the start is not complete: the bytes since the last blank line
    /// skipped (at most a header line and a piece of what follows it).
    head: Vec<u8>,
    /// Whether the byte order mark has been looked for.
    bom_checked: bool,
    /// Inside a blank line before the header that is longer than
    /// [`MAX_LINE`] (its bytes so far dropped).
    in_blank: bool,
    /// Known once the start is complete.
    format: Option<Format>,
    /// A trait batch's columns (§7), known with the format.
    traits: Option<Columns>,
    chunker: Chunker,
    finished: bool,
}

impl Drop for Decoder {
    fn drop(&mut self) {
        self.head.zeroize();
    }
}

impl Decoder {
    /// A decoder for a body of `op`, CSV if `csv` (from `Content-Type`),
    /// NDJSON otherwise.
    pub fn new(op: Operation, csv: bool) -> Self {
        Self {
            op,
            csv,
            fed: 0,
            head: Vec::new(),
            bom_checked: false,
            in_blank: false,
            format: None,
            traits: None,
            chunker: Chunker::new(),
            finished: false,
        }
    }

    /// Bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// The body's format, once its start (byte order mark, blank lines, CSV
    /// header) has been read.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// For a body of [`Operation::Derive`] whose start names identity
    /// traits (§7: a CSV header of trait columns, or an NDJSON body whose
    /// first line has trait fields), their columns; known with
    /// [`Decoder::format`].
    pub fn traits(&self) -> Option<Columns> {
        self.traits
    }

    /// Whether [`Decoder::finish`] has been called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Feeds bytes; calls `emit` for each chunk of whole lines that became
    /// complete. An error means the CSV header is not §4's: the body is
    /// refused whole, and the decoder must not be fed again; so is feeding a
    /// finished decoder.
    pub fn push(&mut self, data: &[u8], emit: &mut impl FnMut(Chunk)) -> Result<(), HeaderError> {
        if self.finished {
            return Err(self.refusal());
        }
        self.fed += data.len() as u64;
        if self.format.is_some() {
            self.chunker.push(data, emit);
            return Ok(());
        }
        self.head.extend_from_slice(data);
        self.read_start(false, emit)
    }

    /// Ends the body: emits the last chunk, and returns the format. A body
    /// that ends before a complete CSV header is refused. Calling it again
    /// emits nothing and gives the same answer.
    pub fn finish(&mut self, emit: &mut impl FnMut(Chunk)) -> Result<Format, HeaderError> {
        if self.format.is_none() && !self.finished {
            self.finished = true;
            self.read_start(true, emit)?;
        }
        self.finished = true;
        let format = self.format.ok_or_else(|| self.refusal())?;
        std::mem::take(&mut self.chunker).finish(emit);
        Ok(format)
    }

    fn refusal(&self) -> HeaderError {
        HeaderError::of(self.op)
    }

    /// Takes the start off `head` once it is complete, and hands the rest to
    /// the chunker. Linear in the bytes fed: blank lines are skipped with an
    /// offset and dropped once per call, never one at a time.
    fn read_start(
        &mut self,
        at_end: bool,
        emit: &mut impl FnMut(Chunk),
    ) -> Result<(), HeaderError> {
        if !self.bom_checked {
            if self.head.len() < BOM.len() && !at_end && BOM.starts_with(&self.head) {
                return Ok(());
            }
            self.bom_checked = true;
            if self.head.starts_with(BOM) {
                self.head.drain(..BOM.len());
            }
        }
        let body_at = if self.csv {
            match self.csv_header(at_end)? {
                Some(at) => at,
                None => return Ok(()),
            }
        } else {
            if self.op == Operation::Derive {
                match self.ndjson_kind(at_end) {
                    Some(traits) => self.traits = traits,
                    None => return Ok(()),
                }
            }
            self.format = Some(Format::Ndjson);
            0
        };
        let mut head = std::mem::take(&mut self.head);
        self.chunker.push(&head[body_at..], emit);
        head.zeroize();
        Ok(())
    }

    /// An NDJSON body of [`Operation::Derive`] is a trait batch when its
    /// first non-blank line names a trait field: `None` until that line is
    /// whole (a first line longer than [`MAX_LINE`] makes it a NIR batch,
    /// where that line is `malformed_line`).
    fn ndjson_kind(&self, at_end: bool) -> Option<Option<Columns>> {
        let mut rest = &self.head[..];
        loop {
            let end = memchr::memchr(b'\n', rest);
            let line = match end {
                Some(p) => &rest[..p],
                None if at_end => rest,
                None if self.head.len() > MAX_LINE => return Some(None),
                None => return None,
            };
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(names_traits(line).then(|| Columns::standard(false)));
            }
            match end {
                Some(p) => rest = &rest[p + 1..],
                None => return Some(None),
            }
        }
    }

    /// Finds the CSV header past the blank lines: sets the format and returns
    /// where the records start, or `None` when more bytes are needed (the
    /// blank lines seen so far are dropped).
    fn csv_header(&mut self, at_end: bool) -> Result<Option<usize>, HeaderError> {
        let mut at = 0;
        if self.in_blank {
            // Inside a blank line longer than MAX_LINE, already dropped: it
            // is skipped like any blank line if it stays blank to its end,
            // and is an overlong header otherwise.
            let end = memchr::memchr(b'\n', &self.head);
            let part = &self.head[..end.unwrap_or(self.head.len())];
            if !part.iter().all(u8::is_ascii_whitespace) {
                return Err(self.refusal());
            }
            match end {
                Some(p) => {
                    self.in_blank = false;
                    at = p + 1;
                }
                None if at_end => return Err(self.refusal()),
                None => {
                    self.head.clear();
                    return Ok(None);
                }
            }
        }
        loop {
            let rest = &self.head[at..];
            let line_end = memchr::memchr(b'\n', rest);
            let line = match line_end {
                Some(p) => &rest[..p],
                None if at_end => rest,
                // A blank line may be of any length (as after the header):
                // drop what came of it and skip the rest as it comes.
                None if rest.len() > MAX_LINE && rest.iter().all(u8::is_ascii_whitespace) => {
                    self.in_blank = true;
                    self.head.clear();
                    return Ok(None);
                }
                // A header line longer than MAX_LINE is as bad as a wrong one.
                None if rest.len() > MAX_LINE => &rest[..MAX_LINE],
                None => {
                    self.head.drain(..at);
                    return Ok(None);
                }
            };
            if let Some(p) = line_end {
                if line.iter().all(u8::is_ascii_whitespace) {
                    at += p + 1;
                    continue;
                }
            }
            let delimiter = match parse_csv_header(self.op, line) {
                Ok(d) => d,
                Err(e) if self.op == Operation::Derive => {
                    let (d, columns) = trait_header(line).ok_or(e)?;
                    self.traits = Some(columns);
                    d
                }
                Err(e) => return Err(e),
            };
            self.format = Some(Format::Csv { delimiter });
            return Ok(Some(line_end.map_or(self.head.len(), |p| at + p + 1)));
        }
    }
}

/// A §7 trait header line: its delimiter and columns.
fn trait_header(line: &[u8]) -> Option<(u8, Columns)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    for d in [b',', b';'] {
        for want in 6..=8 {
            if let Ok(fields) = csv_fields_n::<8>(line, d, want) {
                let names: Vec<&[u8]> = fields[..want].iter().map(|f| f.as_ref()).collect();
                if let Some(c) = Columns::of(&names) {
                    return Some((d, c));
                }
            }
        }
    }
    None
}

/// Whether an NDJSON line names a trait field.
fn names_traits(line: &[u8]) -> bool {
    let Ok(keys) = serde_json::from_slice::<
        std::collections::HashMap<std::borrow::Cow<'_, str>, serde::de::IgnoredAny>,
    >(line) else {
        return false;
    };
    keys.keys()
        .any(|k| TRAIT_COLUMNS.contains(&k.as_ref()) || k == USUAL_NAME)
}

/// Decodes a whole body held in memory (tests, fuzzing, small files): its
/// format and its chunks.
pub fn decode_all(
    op: Operation,
    csv: bool,
    body: &[u8],
) -> Result<(Format, Vec<Chunk>), HeaderError> {
    let mut chunks = Vec::new();
    let mut d = Decoder::new(op, csv);
    d.push(body, &mut |c| chunks.push(c))?;
    let format = d.finish(&mut |c| chunks.push(c))?;
    Ok((format, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `cut` bytes; the format and the lines.
    fn decode(
        op: Operation,
        csv: bool,
        body: &[u8],
        cut: usize,
    ) -> Result<(Format, Vec<u8>), HeaderError> {
        let mut lines = Vec::new();
        let mut emit = |c: Chunk| {
            if let Chunk::Lines(v) = &c {
                lines.extend_from_slice(v);
            }
        };
        let mut d = Decoder::new(op, csv);
        for piece in body.chunks(cut.max(1)) {
            d.push(piece, &mut emit)?;
        }
        let format = d.finish(&mut emit)?;
        Ok((format, lines))
    }

    #[test]
    fn the_start_is_a_bom_blank_lines_and_the_header_however_the_body_is_cut() {
        let body = b"\xEF\xBB\xBF\r\n  \nindex;nir\r\nA1;x\nA2;y";
        for cut in 1..=body.len() {
            let (f, lines) = decode(Operation::Derive, true, body, cut).unwrap();
            assert_eq!(f, Format::Csv { delimiter: b';' }, "cut {cut}");
            assert_eq!(lines, b"A1;x\nA2;y", "cut {cut}");
        }
    }

    #[test]
    fn ndjson_starts_after_the_bom_only() {
        for cut in 1..6 {
            let (f, lines) =
                decode(Operation::Derive, false, b"\xEF\xBB\xBF{}\n\n{}", cut).unwrap();
            assert_eq!(f, Format::Ndjson);
            assert_eq!(lines, b"{}\n\n{}");
        }
        // A BOM later in the body is not a BOM.
        let (_, lines) = decode(Operation::Derive, false, b"{}\n\xEF\xBB\xBF", 1).unwrap();
        assert_eq!(lines, b"{}\n\xEF\xBB\xBF");
    }

    #[test]
    fn a_wrong_short_or_missing_header_refuses_the_body() {
        for body in [&b"index,ni"[..], b"", b"\n\n", b"nir,index\nA1,x\n"] {
            assert!(
                decode(Operation::Derive, true, body, 3).is_err(),
                "{body:?}"
            );
        }
        assert!(decode(Operation::Derive, true, b"index,nir", 3).is_ok());
        let long = [b' '; MAX_LINE + 10];
        assert!(decode(Operation::Derive, true, &long, 4096).is_err());
        // A BOM is only a BOM at the very start.
        assert!(decode(Operation::Derive, true, b"\r\n\xEF\xBB\xBFindex,nir\n", 3).is_err());
        assert!(decode(
            Operation::Derive,
            true,
            b"\xEF\xBB\xBF\xEF\xBB\xBFindex,nir\n",
            3
        )
        .is_err());
    }

    #[test]
    fn a_long_blank_line_before_the_header_is_skipped_however_it_is_cut() {
        let mut body = vec![b' '; 3 * MAX_LINE];
        body.extend_from_slice(b"\r\nindex,nir\nA1,x\n");
        let mut overlong = vec![b' '; 3 * MAX_LINE];
        overlong.extend_from_slice(b"index,nir\nA1,x\n");
        for cut in [1000, 4096, MAX_LINE + 1, body.len()] {
            let (f, lines) = decode(Operation::Derive, true, &body, cut).unwrap();
            assert_eq!(
                (f, &lines[..]),
                (Format::Csv { delimiter: b',' }, &b"A1,x\n"[..]),
                "cut {cut}"
            );
            assert!(
                decode(Operation::Derive, true, &overlong, cut).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn blank_lines_before_the_header_cost_linear_time_and_no_memory() {
        // 64 MiB of line ends fed as a service reads them: each piece is
        // dropped as it is skipped, and the decoder counts every byte.
        let piece = vec![b'\n'; 16 * 1024];
        let mut d = Decoder::new(Operation::Derive, true);
        for _ in 0..4096 {
            d.push(&piece, &mut |_| ()).unwrap();
            assert!(d.head.is_empty());
        }
        assert_eq!(d.bytes_fed(), 64 << 20);
        assert_eq!(d.format(), None);
    }

    #[test]
    fn decode_all_cuts_records_into_chunks() {
        let body = "index,nir\n".to_owned() + &"A1,2951099126111\n".repeat(40_000);
        let (format, chunks) = decode_all(Operation::Derive, true, body.as_bytes()).unwrap();
        assert_eq!(format, Format::Csv { delimiter: b',' });
        assert!(chunks.len() > 1);
    }
}

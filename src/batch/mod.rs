//! The batch wire format (DESIGN §4, a contract): CSV or NDJSON in, the same
//! type out, one answer per non-blank line, in order.
//!
//! This module is pure (no I/O, no async) so that the parsers can be fuzzed and
//! the hot path benchmarked alone. The server (and `cstatns validate`) feeds
//! request bytes to a [`Decoder`], which reads the body's start (byte order
//! mark, blank lines, CSV header) and cuts the rest into chunks of whole lines (about
//! [`CHUNK_SIZE`] bytes); each chunk is answered by [`process_chunk`] on a
//! blocking thread, and the answers are sent back in order. Memory is bounded
//! by the number of chunks in flight, whatever the batch size.
//!
//! Each *physical line* is a record. RFC 4180 quoting is accepted within a line;
//! a quoted field running over a line end is `malformed_line` on that line
//! rather than swallowing the lines after it: no valid index, NIR or code ever
//! holds a line break, and a stray quote must not change the answer of any
//! other line (§4: "its status depends on that line alone").

mod chunk;
mod decode;
mod line;
pub mod project;
mod status;
mod validate;

pub use chunk::{Chunk, Chunker, CHUNK_SIZE, MAX_LINE, OVERSIZED_HEAD};
pub use decode::{decode_all, Decoder};
pub(crate) use line::{bytes, csv_fields_n, oversized_index};
pub use line::{
    check_chunk, process_chunk, process_chunk_guarded, Candidates, Scratch, Seen, Verdict,
};
pub use status::{Counts, Status};
pub use validate::{validate, ValidateError, Validation};

/// Which operation a batch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/cstatns`: `index,nir` → `index,cstatns,status`.
    Derive,
    /// `POST /v1/renewal`: `index,cstatns,generation` → `index,cstatns,status`.
    Renew,
}

impl Operation {
    /// The CSV header columns expected in a request, in order.
    pub fn request_columns(self) -> &'static [&'static str] {
        match self {
            Operation::Derive => &["index", "nir"],
            Operation::Renew => &["index", "cstatns", "generation"],
        }
    }

    /// Stable name used in receipts and logs.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Derive => "cstatns",
            Operation::Renew => "renewal",
        }
    }
}

/// The body type of a batch, and for CSV its delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/csv` with `,` or `;` as taken from the header line.
    Csv {
        /// `b','` or `b';'`.
        delimiter: u8,
    },
    /// `application/x-ndjson`.
    Ndjson,
}

impl Format {
    /// The response content type (the same as the request's).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv { .. } => "text/csv",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    /// The response header line, if the format has one.
    pub fn response_header(self) -> Option<Vec<u8>> {
        match self {
            Format::Csv { delimiter } => {
                let d = delimiter as char;
                Some(format!("index{d}cstatns{d}status\n").into_bytes())
            }
            Format::Ndjson => None,
        }
    }
}

/// A request's CSV header line did not name the expected columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the CSV header must be `{expected}` (or with `;`)")]
pub struct HeaderError {
    /// The expected header, with `,`.
    pub expected: String,
}

impl HeaderError {
    /// The refusal of a body of `op` whose header is not §4's.
    pub fn of(op: Operation) -> Self {
        let mut expected = op.request_columns().join(",");
        if op == Operation::Derive {
            // §7: or the identity traits.
            expected.push_str(
                "` or `index,sex,birth_name,first_names,birth_date,birth_place[,usual_name]",
            );
        }
        Self { expected }
    }
}

/// Reads a CSV header line (without its line end) and returns the delimiter.
/// A trailing `\r` and RFC 4180 quoting of the names are tolerated; the
/// column names must be exactly those of §4, in order. (A byte order mark is
/// taken off by [`Decoder`], at the very start of the body only.)
pub fn parse_csv_header(op: Operation, line: &[u8]) -> Result<u8, HeaderError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let cols = op.request_columns();
    for d in [b',', b';'] {
        if let Ok(fields) = line::csv_fields(line, d, cols.len()) {
            if fields
                .iter()
                .zip(cols)
                .all(|(f, c)| f.as_ref() == c.as_bytes())
            {
                return Ok(d);
            }
        }
    }
    Err(HeaderError::of(op))
}

/// The UTF-8 byte order mark, tolerated at the start of a body.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Index rule of §4: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_index(raw: &[u8]) -> bool {
    /// The bytes an index may hold, looked up rather than compared: a batch
    /// checks one index per line.
    const INDEX_BYTE: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
            b += 1;
        }
        table
    };
    (1..=64).contains(&raw.len())
        && raw
            .iter()
            .fold(true, |ok, &b| ok & INDEX_BYTE[usize::from(b)])
}

/// The status of an index alone: `None` when it is a clean index.
pub fn index_status(raw: &[u8]) -> Option<Status> {
    use crate::nir::{BODY_LEN, FULL_LEN};
    // A clean index has no space, so it can pass §2 only at one of the
    // two lengths: at the others it is not read a second time.
    if !is_valid_index(raw) {
        Some(Status::InvalidIndex)
    } else if matches!(raw.len(), BODY_LEN | FULL_LEN) && crate::nir::looks_like_nir(raw) {
        Some(Status::IndexLooksLikeNir)
    } else {
        None
    }
}

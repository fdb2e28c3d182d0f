//! `cstatns validate`: a dry run of a batch file, offline and without a key.
//! Each line gets the status the service would give it, but for a code.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::io::Read;

use super::{check_chunk, Chunk, Counts, Decoder, HeaderError, Operation, Scratch, Status};

/// Line numbers kept per status, to point at the first bad records.
pub const FIRST_LINES_KEPT: usize = 5;

/// What a dry run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    /// Lines per status.
    pub counts: Counts,
    /// Per status other than `ok`, the record numbers (1-based, blank lines
    /// not counted) of its first [`FIRST_LINES_KEPT`] lines.
    pub first_records: BTreeMap<Status, Vec<u64>>,
}

/// A dry run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// The file could not be read.
    #[error("cannot read the batch: {0}")]
    Read(#[from] std::io::Error),
    /// The service would refuse the whole body (400).
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// Reads a batch of `op` (CSV if `csv`, NDJSON otherwise) from `input` and
/// gives each line its status, duplicate indexes included.
pub fn validate(
    op: Operation,
    csv: bool,
    mut input: impl Read,
) -> Result<Validation, ValidateError> {
    // Indexes are kept as 128-bit keyed hashes (two independent SipHash
    // keys): 16 bytes an index, and a false duplicate is out of reach (about
    // 1e-22 for 100 million lines).
    let (h1, h2) = (
        std::collections::hash_map::RandomState::new(),
        std::collections::hash_map::RandomState::new(),
    );
    let mut seen = HashSet::<u128>::new();
    let mut found = Validation::default();
    let mut record = 0u64;
    let mut visit = |status: Status, index: &[u8]| {
        record += 1;
        let mut status = status;
        if !index.is_empty() {
            let key = (u128::from(h1.hash_one(index)) << 64) | u128::from(h2.hash_one(index));
            if !seen.insert(key) && status == Status::Ok {
                status = Status::DuplicateIndex;
            }
        }
        found.counts.add(status);
        if status != Status::Ok {
            let v = found.first_records.entry(status).or_default();
            if v.len() < FIRST_LINES_KEPT {
                v.push(record);
            }
        }
    };
    let mut decoder = Decoder::new(op, csv);
    let mut ready: Vec<Chunk> = Vec::new();
    let mut scratch = Scratch::default();
    let mut traits = crate::identity::lines::TraitScratch::default();
    // A chunk of a NIR or renewal batch, or of a trait batch.
    let mut check = |format, columns: Option<crate::identity::Columns>, c: &Chunk| match columns {
        Some(t) => crate::identity::lines::check_chunk(format, &t, c, &mut traits, &mut visit),
        None => check_chunk(op, format, c, &mut scratch, &mut visit),
    };
    let mut buf = vec![0u8; super::CHUNK_SIZE];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        decoder.push(&buf[..n], &mut |c| ready.push(c))?;
        if let Some(format) = decoder.format() {
            for c in ready.drain(..) {
                check(format, decoder.traits(), &c);
            }
        }
    }
    let format = decoder.finish(&mut |c| ready.push(c))?;
    for c in ready.drain(..) {
        check(format, decoder.traits(), &c);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_gives_the_statuses_and_points_at_the_first_bad_records() {
        let body = "\u{feff}index,nir\nA1,2951099126111\n\nA2,x\nA1,2951099126111\nbad index,x\n";
        let v = validate(Operation::Derive, true, body.as_bytes()).unwrap();
        assert_eq!(v.counts.get(Status::Ok), 1);
        assert_eq!(v.counts.get(Status::DuplicateIndex), 1);
        assert_eq!(v.counts.total(), 4);
        assert_eq!(v.first_records.get(&Status::DuplicateIndex), Some(&vec![3]));
        assert!(matches!(
            validate(Operation::Derive, true, &b"nir,index\n"[..]),
            Err(ValidateError::Header(_))
        ));
    }

    #[test]
    fn a_trait_batch_is_checked_line_by_line_without_a_register() {
        let body = "index;sex;birth_name;first_names;birth_date;birth_place\n\
                    T1;1;Dupont;Paul;1970-01-03;69123\nT2;3;Dupont;Paul;1970-01-03;69123\n\
                    T1;2;Durand;Anne;1970-02-30;69123\nT4;1;Dupont;Paul\n";
        let v = validate(Operation::Derive, true, body.as_bytes()).unwrap();
        assert_eq!(v.counts.get(Status::Ok), 1);
        assert_eq!(v.counts.get(Status::InvalidSex), 1);
        assert_eq!(
            v.counts.get(Status::InvalidDate),
            1,
            "its own error before the duplicate"
        );
        assert_eq!(v.counts.get(Status::MalformedLine), 1);
    }
}

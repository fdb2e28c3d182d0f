//! Per-line statuses and their counts.

use serde::ser::SerializeMap;

use crate::nir::NirError;

/// The status of one line (§4). The order of the variants is the order of
/// precedence when several apply to a line (after `Ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Status {
    /// A code was computed.
    Ok,
    /// The line is not a record of the expected shape.
    MalformedLine,
    /// The index is not 1–64 characters of `[A-Za-z0-9._-]`.
    InvalidIndex,
    /// The index is itself a valid NIR shape.
    IndexLooksLikeNir,
    /// §2 rule 2 or 4.
    InvalidCharacter,
    /// §2 rule 3.
    InvalidLength,
    /// §2 rule 5.
    InvalidKey,
    /// Renewal: the old code is not 64 hex digits.
    InvalidCode,
    /// Renewal: the generation is not a whole number from 1 to G.
    InvalidGeneration,
    /// §7: a trait line without one of the five traits (or without a NIR
    /// or any trait).
    MissingTrait,
    /// §7: `sex` is not `1` or `2`.
    InvalidSex,
    /// §7: `birth_date` is no date of the register.
    InvalidDate,
    /// §7: `birth_place` is no commune or country code.
    InvalidPlace,
    /// §7: a row with both a NIR and traits.
    NirAndTraits,
    /// The guard: the client's quota ran out (this line and every later
    /// one of the batch that has no error of its own).
    QuotaExceeded,
    /// The guard: the batch was judged to enumerate the NIR space.
    SweepSuspected,
    /// `cstatns validate` only: the index was already seen in the batch.
    DuplicateIndex,
}

impl Status {
    /// Every status, in a stable order.
    pub const ALL: [Status; 17] = [
        Status::Ok,
        Status::MalformedLine,
        Status::InvalidIndex,
        Status::IndexLooksLikeNir,
        Status::InvalidCharacter,
        Status::InvalidLength,
        Status::InvalidKey,
        Status::InvalidCode,
        Status::InvalidGeneration,
        Status::MissingTrait,
        Status::InvalidSex,
        Status::InvalidDate,
        Status::InvalidPlace,
        Status::NirAndTraits,
        Status::QuotaExceeded,
        Status::SweepSuspected,
        Status::DuplicateIndex,
    ];

    /// The stable wire code.
    pub fn code(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::MalformedLine => "malformed_line",
            Status::InvalidIndex => "invalid_index",
            Status::IndexLooksLikeNir => "index_looks_like_nir",
            Status::InvalidCharacter => "invalid_character",
            Status::InvalidLength => "invalid_length",
            Status::InvalidKey => "invalid_key",
            Status::InvalidCode => "invalid_code",
            Status::InvalidGeneration => "invalid_generation",
            Status::MissingTrait => "missing_trait",
            Status::InvalidSex => "invalid_sex",
            Status::InvalidDate => "invalid_date",
            Status::InvalidPlace => "invalid_place",
            Status::NirAndTraits => "nir_and_traits",
            Status::QuotaExceeded => "quota_exceeded",
            Status::SweepSuspected => "sweep_suspected",
            Status::DuplicateIndex => "duplicate_index",
        }
    }

    /// Parses a wire code.
    pub fn from_code(code: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    fn slot(self) -> usize {
        Status::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or_else(|| unreachable!("ALL lists every status"))
    }
}

impl From<NirError> for Status {
    fn from(e: NirError) -> Self {
        match e {
            NirError::InvalidCharacter => Status::InvalidCharacter,
            NirError::InvalidLength => Status::InvalidLength,
            NirError::InvalidKey => Status::InvalidKey,
        }
    }
}

/// Counts of lines per status. Serialises as a map with every non-zero status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([u64; Status::ALL.len()]);

impl Counts {
    /// Adds one line of this status.
    pub fn add(&mut self, s: Status) {
        self.0[s.slot()] += 1;
    }

    /// The count of one status.
    pub fn get(&self, s: Status) -> u64 {
        self.0[s.slot()]
    }

    /// Sets the count of one status.
    pub fn set(&mut self, s: Status, n: u64) {
        self.0[s.slot()] = n;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Lines answered in all.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Lines answered with `ok`.
    pub fn ok(&self) -> u64 {
        self.get(Status::Ok)
    }

    /// Lines answered with any other status.
    pub fn rejected(&self) -> u64 {
        self.total() - self.ok()
    }

    /// `(status, count)` for every non-zero count, in [`Status::ALL`] order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Status, u64)> + '_ {
        Status::ALL
            .into_iter()
            .map(|s| (s, self.get(s)))
            .filter(|(_, n)| *n > 0)
    }
}

impl serde::Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(None)?;
        for (s, n) in self.nonzero() {
            m.serialize_entry(s.code(), &n)?;
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, u64>::deserialize(de)?;
        let mut c = Counts::default();
        for (k, v) in map {
            let s = Status::from_code(&k)
                .ok_or_else(|| serde::de::Error::custom("unknown status code"))?;
            c.set(s, v);
        }
        Ok(c)
    }
}

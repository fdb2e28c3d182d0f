//! The embedded register: a SQLite file, made by `cstatns register load`
//! from §7's register CSV and read whole into memory ([`Register`]) when the
//! service starts.
//!
//! The file holds NIRs: it is created with mode 0600, written to a
//! temporary file and renamed into place, so that a load that fails leaves
//! the previous register whole. Errors name a row and a column, never a
//! value.

use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};
use zeroize::Zeroize;

use super::register::{Person, Register};
use super::{normal, parse_date, parse_place};
use crate::nir::Nir;

/// The register CSV's header (§7).
pub const HEADER: [&str; 7] = [
    "nir",
    "sex",
    "birth_name",
    "usual_name",
    "first_names",
    "birth_date",
    "birth_place",
];

const SCHEMA: &str = "
CREATE TABLE person (
    nir TEXT PRIMARY KEY NOT NULL,
    sex INTEGER NOT NULL CHECK (sex IN (1, 2)),
    birth_name TEXT NOT NULL,
    usual_name TEXT NOT NULL,
    first_names TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    birth_place TEXT NOT NULL
) WITHOUT ROWID;
";

/// Why a register could not be loaded or opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The CSV's header is not §7's.
    #[error("the register's header must be `{}`", HEADER.join(","))]
    Header,
    /// A row is not a register row.
    #[error("row {row}: {column} is not valid")]
    Row {
        /// The row's number (the header is row 1).
        row: u64,
        /// The column at fault.
        column: &'static str,
    },
    /// Two rows carry the same NIR.
    #[error("row {row}: its NIR is already in the register")]
    Duplicate {
        /// The row's number.
        row: u64,
    },
    /// Two rows carry the same NIR (found by the database's key, which does
    /// not say which rows).
    #[error("two rows carry the same NIR: the register was left as it was")]
    DuplicateNir,
    /// The PostgreSQL register (its code and message, never its detail).
    #[error("the register database: {0}")]
    Database(String),
    /// The CSV could not be read.
    #[error("cannot read the register CSV (row {row}): {source}")]
    Csv {
        /// The row's number.
        row: u64,
        /// The cause.
        source: csv::Error,
    },
    /// The SQLite file.
    #[error("the register file {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The file system.
    #[error("the register file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What a load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// People written.
    pub people: u64,
}

/// Checks one register row; returns it in canonical form.
fn check_row(row: u64, rec: &csv::ByteRecord) -> Result<[String; 7], StoreError> {
    let bad = |column| StoreError::Row { row, column };
    if rec.len() != HEADER.len() {
        return Err(bad("the row's field count"));
    }
    let text = |i: usize| {
        std::str::from_utf8(&rec[i])
            .map(|s| s.trim().to_owned())
            .map_err(|_| bad(HEADER[i]))
    };
    let nir = Nir::parse(&rec[0]).map_err(|_| bad("nir"))?;
    let body = std::str::from_utf8(nir.body())
        .map_err(|_| bad("nir"))?
        .to_owned();
    let sex = text(1)?;
    if sex != "1" && sex != "2" {
        return Err(bad("sex"));
    }
    let birth = text(2)?;
    let usual = text(3)?;
    let first = text(4)?;
    if normal::surname(&birth).is_empty() {
        return Err(bad("birth_name"));
    }
    if normal::first_names(&first).is_empty() {
        return Err(bad("first_names"));
    }
    let date = text(5)?;
    parse_date(date.as_bytes()).ok_or_else(|| bad("birth_date"))?;
    let place = text(6)?;
    parse_place(place.as_bytes()).ok_or_else(|| bad("birth_place"))?;
    Ok([body, sex, birth, usual, first, date, place])
}

/// The rows of §7's register CSV, checked, for both loaders: the header
/// first (a UTF-8 byte-order mark allowed), blank lines skipped, each row
/// by [`check_row`].
pub(crate) struct Rows<R: Read> {
    reader: csv::Reader<R>,
    rec: csv::ByteRecord,
    row: u64,
}

impl<R: Read> Rows<R> {
    /// Reads and checks the header.
    pub(crate) fn new(input: R) -> Result<Self, StoreError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut rec = csv::ByteRecord::new();
        let read = reader
            .read_byte_record(&mut rec)
            .map_err(|source| StoreError::Csv { row: 1, source })?;
        if !read
            || rec
                .iter()
                .map(|f| f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f))
                .ne(HEADER.iter().map(|h| h.as_bytes()))
        {
            return Err(StoreError::Header);
        }
        Ok(Self {
            reader,
            rec,
            row: 1,
        })
    }

    /// The next row's number and canonical fields (wipe them once used),
    /// or `None` at the end.
    pub(crate) fn next_row(&mut self) -> Result<Option<(u64, [String; 7])>, StoreError> {
        loop {
            let more = self
                .reader
                .read_byte_record(&mut self.rec)
                .map_err(|source| StoreError::Csv {
                    row: self.row + 1,
                    source,
                })?;
            if !more {
                return Ok(None);
            }
            self.row += 1;
            if self.rec.len() == 1 && self.rec[0].is_empty() {
                continue; // a blank line
            }
            return check_row(self.row, &self.rec).map(|f| Some((self.row, f)));
        }
    }
}

impl<R: Read> Drop for Rows<R> {
    fn drop(&mut self) {
        // The record's buffer held the last row read; clear() keeps it.
        self.rec.clear();
    }
}

/// Loads §7's register CSV from `input` into the SQLite file `db`, which
/// it replaces whole once every row is in; `progress` is called with the
/// rows done, every 100,000 rows.
pub fn load(
    input: impl Read,
    db: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Loaded, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: db.to_owned(),
        source,
    };
    let io = |source| StoreError::Io {
        path: db.to_owned(),
        source,
    };
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".register-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    let mut conn = Connection::open(tmp.path()).map_err(sql)?;
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    let mut rows = Rows::new(input)?;
    let tx = conn.transaction().map_err(sql)?;
    let mut people = 0u64;
    {
        let mut insert = tx
            .prepare("INSERT INTO person VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .map_err(sql)?;
        while let Some((row, mut fields)) = rows.next_row()? {
            let sex: i64 = if fields[1] == "1" { 1 } else { 2 };
            let done = insert.execute(params![
                fields[0], sex, fields[2], fields[3], fields[4], fields[5], fields[6]
            ]);
            fields.zeroize();
            match done {
                Ok(_) => {}
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    return Err(StoreError::Duplicate { row });
                }
                Err(e) => return Err(sql(e)),
            }
            people += 1;
            if people % 100_000 == 0 {
                progress(people);
            }
        }
    }
    drop(rows);
    tx.commit().map_err(sql)?;
    conn.close().map_err(|(_, e)| sql(e))?;
    // tempfile creates it with mode 0600.
    tmp.persist(db).map_err(|e| io(e.error))?;
    Ok(Loaded { people })
}

/// Reads the register file `db` whole into memory.
pub fn open(db: &Path) -> Result<Register, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: db.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
    let count: i64 = conn
        .query_row("SELECT count(*) FROM person", [], |r| r.get(0))
        .map_err(sql)?;
    let mut people = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut stmt = conn
        .prepare("SELECT nir, sex, birth_name, usual_name, first_names, birth_date, birth_place FROM person")
        .map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut n = 0u64;
    while let Some(r) = rows.next().map_err(sql)? {
        n += 1;
        let bad = |column| StoreError::Row { row: n, column };
        let text = |i: usize| -> Result<&str, StoreError> {
            r.get_ref(i)
                .ok()
                .and_then(|v| v.as_str().ok())
                .ok_or(bad(HEADER[i]))
        };
        let nir: [u8; crate::nir::BODY_LEN] =
            text(0)?.as_bytes().try_into().map_err(|_| bad("nir"))?;
        let sex: i64 = r.get(1).map_err(|_| bad("sex"))?;
        people.push(Person {
            nir,
            sex: if sex == 1 { b'1' } else { b'2' },
            date: parse_date(text(5)?.as_bytes()).ok_or(bad("birth_date"))?,
            place: text(6)?
                .as_bytes()
                .try_into()
                .map_err(|_| bad("birth_place"))?,
            birth: normal::surname(text(2)?),
            usual: normal::surname(text(3)?),
            first: normal::first_names(text(4)?),
        });
    }
    Ok(Register::new(people))
}

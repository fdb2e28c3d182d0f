//! The register in PostgreSQL (DESIGN §7's second back-end), as a
//! deployment would run it: its own server, reached over TLS with the
//! service's own role and password, a schema with an index for each way a
//! look-up finds people, and a bulk loader (`COPY`).
//!
//! The matching rules stay those of [`Register`]: for each chunk of a trait
//! batch, the database gives, in one round trip, the people that an exact
//! match can be among (same sex, birth day and place); the chunk's queries
//! found that way are done. For the others a second round trip gives the
//! people the tolerant rules can score above zero (same sex and birth year,
//! the name given as their birth or usual name, a birth date that a partial
//! date or a day-month swap makes compatible). The people fetched make a
//! register of the chunk, in memory, and the same [`Register::lookup`]
//! answers on it: every person the rules would look at in the whole
//! register is in it, so the answers are the embedded back-end's
//! (`tests/register_postgres.rs` checks it on a synthetic register).
//!
//! The names are normalised by the loader (the `*_key` columns), with the
//! code that normalises queries, so both sides agree. Errors name the
//! database's error code and message only, never its detail (which can
//! quote a row's values, a NIR among them).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};
use zeroize::{Zeroize, Zeroizing};

use super::register::{Person, Register};
use super::store::{Rows, StoreError};
use super::{normal, parse_date, Query, Resolved};
use crate::nir::BODY_LEN;

/// The schema the loader makes, in the `register` schema (which the
/// database's administrator creates, owned by the loader's role:
/// `deploy/register-postgres.sql`). `{t}` is the table's name.
const TABLE: &str = "
CREATE TABLE register.{t} (
    nir text NOT NULL CHECK (length(nir) = 13),
    sex smallint NOT NULL CHECK (sex IN (1, 2)),
    birth_date integer NOT NULL,
    birth_year smallint NOT NULL,
    birth_place text NOT NULL CHECK (length(birth_place) = 5),
    birth_name text NOT NULL,
    usual_name text NOT NULL,
    first_names text NOT NULL,
    birth_key text NOT NULL,
    usual_key text NOT NULL,
    first_key text NOT NULL
)";

/// The indexes, one per way a look-up finds people, built after the bulk
/// copy. `{t}` is the table, `{p}` a prefix for the index names.
const INDEXES: &str = "
ALTER TABLE register.{t} ADD CONSTRAINT {p}_pkey PRIMARY KEY (nir);
CREATE INDEX {p}_day ON register.{t} (sex, birth_date, birth_place);
CREATE INDEX {p}_birth_key ON register.{t} (sex, birth_year, birth_key);
CREATE INDEX {p}_usual_key ON register.{t} (sex, birth_year, usual_key) WHERE usual_key <> '';
";

/// The columns the look-ups read.
const COLUMNS: &str =
    "p.nir, p.sex, p.birth_date, p.birth_place, p.birth_key, p.usual_key, p.first_key";

/// The people an exact match can be among: one row of parameters per query.
fn day_query() -> String {
    format!(
        "SELECT {COLUMNS} FROM unnest($1::int2[], $2::int4[], $3::text[]) AS q(sex, birth_date, birth_place) \
         JOIN register.person p ON p.sex = q.sex AND p.birth_date = q.birth_date AND p.birth_place = q.birth_place"
    )
}

/// The people the tolerant rules can score above zero (`docs/identity.md`):
/// the name given as their birth or usual name, the same sex and year, and
/// a date that equal parts, an unknown part or a day-month swap make
/// compatible (any other date scores 0).
fn named_query() -> String {
    let compatible = "(((p.birth_date / 100) % 100 IN (q.m, 0) OR q.m = 0) \
                        AND (p.birth_date % 100 IN (q.d, 0) OR q.d = 0) \
                      OR (p.birth_date % 100 = q.m AND (p.birth_date / 100) % 100 = q.d))";
    let from = "FROM unnest($1::int2[], $2::int2[], $3::int2[], $4::int2[], $5::text[]) AS q(sex, y, m, d, name)";
    format!(
        "SELECT {COLUMNS} {from} JOIN register.person p \
           ON p.sex = q.sex AND p.birth_year = q.y AND p.birth_key = q.name WHERE {compatible} \
         UNION \
         SELECT {COLUMNS} {from} JOIN register.person p \
           ON p.sex = q.sex AND p.birth_year = q.y AND p.usual_key = q.name \
           WHERE p.usual_key <> '' AND {compatible}"
    )
}

/// How the service (or the loader) reaches the database: the
/// `[register_database]` table of `server.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// A libpq connection string or URL (`host=… port=… dbname=… user=…`,
    /// or `postgresql://user@host:port/dbname`), without a password.
    pub url: String,
    /// The CA that signed the database server's certificate: the
    /// connection is TLS 1.3, the certificate and its name checked.
    pub ca: std::path::PathBuf,
    /// A file holding the role's password (one line; mode 0600).
    pub password_file: std::path::PathBuf,
    /// The addresses of the URL's host names, looked up at start (before
    /// the service confines itself away from the resolver's files).
    #[serde(skip)]
    pub addresses: Vec<std::net::IpAddr>,
}

impl Settings {
    /// Looks the URL's host names up now, for [`Database::new`] (which
    /// then connects to these addresses, and still checks the server's
    /// certificate against the name).
    pub fn pin_addresses(&mut self) -> Result<(), DbError> {
        use std::net::ToSocketAddrs;
        let config: tokio_postgres::Config = self.url.parse().map_err(|_| {
            DbError::Settings("the URL is not a PostgreSQL connection string".into())
        })?;
        let port = config.get_ports().first().copied().unwrap_or(5432);
        self.addresses.clear();
        for host in config.get_hosts() {
            if let tokio_postgres::config::Host::Tcp(name) = host {
                let addr = (name.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| DbError::Settings(format!("cannot resolve {name}: {e}")))?
                    .next()
                    .ok_or_else(|| DbError::Settings(format!("{name} has no address")))?;
                self.addresses.push(addr.ip());
            }
        }
        Ok(())
    }
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The settings are not usable.
    #[error("register database: {0}")]
    Settings(String),
    /// A file the settings name.
    #[error("register database: {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database refused or failed (its code and message only).
    #[error("register database: {0}")]
    Database(String),
    /// A row the database gave is not a register row.
    #[error("register database: a row of register.person is not valid ({0})")]
    Row(&'static str),
}

/// The database's error, as code and message: never its detail, which can
/// quote a row (a NIR among its values).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None if e.is_closed() => "the connection to the database is closed".to_owned(),
        // Connection and protocol errors carry no row.
        None => crate::describe(e),
    }
}

fn db(e: tokio_postgres::Error) -> DbError {
    DbError::Database(describe(&e))
}

/// A way to the database: its address, the TLS to it and the role's
/// credentials, ready to connect.
#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Database {
    /// Reads the CA and the password the settings name; refuses a URL that
    /// carries a password (it would sit in a configuration file, or in a
    /// shell's history).
    pub fn new(s: &Settings) -> Result<Self, DbError> {
        let password = read_password(&s.password_file)?;
        let mut db = Self::with_password(&s.url, &s.ca, &password)?;
        if !s.addresses.is_empty() && s.addresses.len() == db.config.get_hosts().len() {
            for a in &s.addresses {
                db.config.hostaddr(*a);
            }
        }
        Ok(db)
    }

    /// As [`Database::new`], with the password given (the loader's prompt).
    pub fn with_password(url: &str, ca: &Path, password: &[u8]) -> Result<Self, DbError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            DbError::Settings("the URL is not a PostgreSQL connection string".into())
        })?;
        if config.get_password().is_some() {
            return Err(DbError::Settings(
                "the URL carries a password: give it in a file (password_file) instead".into(),
            ));
        }
        if config.get_user().is_none() {
            return Err(DbError::Settings("the URL names no user (role)".into()));
        }
        config.password(password);
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        config.application_name("cstatns");
        config.connect_timeout(std::time::Duration::from_secs(10));
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        // TLS 1.3, AES-GCM only, as the service's own listener; the
        // server's certificate checked against `ca`, its name against the
        // URL's host.
        let tls = crate::tls::server_only_client_config(ca)
            .map_err(|e| DbError::Settings(crate::describe(&e)))?;
        Ok(Self {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        })
    }

    /// Opens a connection; its driver runs on the current runtime.
    pub async fn connect(&self) -> Result<Client, DbError> {
        let (client, conn) = self.config.connect(self.tls.clone()).await.map_err(db)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %describe(&e), "the connection to the register database ended");
            }
        });
        Ok(client)
    }
}

/// Reads a password file: its first line.
pub fn read_password(path: &Path) -> Result<Zeroizing<Vec<u8>>, DbError> {
    let file = |source| DbError::File {
        path: path.to_owned(),
        source,
    };
    let mut text = Zeroizing::new(std::fs::read(path).map_err(file)?);
    let end = text
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(text.len());
    text.truncate(end);
    if text.is_empty() {
        return Err(DbError::Settings(format!(
            "the password file {} is empty",
            path.display()
        )));
    }
    Ok(text)
}

/// A connection and its prepared look-ups.
struct Conn {
    client: Client,
    day: Statement,
    named: Statement,
}

/// The register in PostgreSQL, for the service: one connection, opened
/// when first needed and again after it breaks; chunks' look-ups share it
/// (the protocol pipelines them).
pub struct PgRegister {
    db: Database,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    runtime: tokio::runtime::Handle,
}

/// How long a look-up round trip may take before the batch is given up.
const ROUND_TRIP: std::time::Duration = std::time::Duration::from_secs(30);

impl PgRegister {
    /// A register behind `db`; connections run on the current runtime.
    pub fn new(db: Database) -> Self {
        Self {
            db,
            conn: tokio::sync::Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    async fn conn(&self) -> Result<Arc<Conn>, DbError> {
        let mut held = self.conn.lock().await;
        if let Some(c) = held.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(c.clone());
        }
        *held = None;
        let client = self.db.connect().await?;
        let day = client.prepare(&day_query()).await.map_err(db)?;
        let named = client.prepare(&named_query()).await.map_err(db)?;
        let c = Arc::new(Conn { client, day, named });
        *held = Some(c.clone());
        Ok(c)
    }

    /// Whether the database answers now (a batch of traits is refused
    /// before it starts when it does not): a round trip that reads the
    /// register's table.
    pub async fn ready(&self) -> Result<(), DbError> {
        let check = async {
            let c = self.conn().await?;
            c.client
                .query_one(
                    "SELECT count(*) FROM (SELECT 1 FROM register.person LIMIT 1) AS t",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(())
        };
        let r = match tokio::time::timeout(std::time::Duration::from_secs(10), check).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Database(
                "the database did not answer within 10 s".into(),
            )),
        };
        if r.is_err() {
            self.forget().await;
        }
        r
    }

    /// Drops the connection after a failure: the next batch opens a new
    /// one (a connection that stalled without closing is not kept).
    async fn forget(&self) {
        *self.conn.lock().await = None;
    }

    /// Looks up a chunk's queries (see the module's documentation); `out`
    /// gets one answer per query, in order. Called from a blocking worker.
    pub fn resolve(&self, queries: &[Query], out: &mut Vec<Resolved>) -> Result<(), DbError> {
        self.runtime.block_on(async {
            let r = match tokio::time::timeout(ROUND_TRIP * 2, self.resolve_async(queries, out))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(DbError::Database("a look-up took longer than 60 s".into())),
            };
            if r.is_err() {
                self.forget().await;
            }
            r
        })
    }

    async fn resolve_async(
        &self,
        queries: &[Query],
        out: &mut Vec<Resolved>,
    ) -> Result<(), DbError> {
        out.clear();
        if queries.is_empty() {
            return Ok(());
        }
        let c = self.conn().await?;
        let sexes: Vec<i16> = queries.iter().map(|q| i16::from(q.sex - b'0')).collect();
        let dates: Vec<i32> = queries.iter().map(|q| q.date as i32).collect();
        let mut places: Vec<String> = queries
            .iter()
            .map(|q| String::from_utf8_lossy(&q.place).into_owned())
            .collect();
        let rows = c
            .client
            .query(&c.day, &[&sexes, &dates, &places])
            .await
            .map_err(db);
        places.zeroize();
        let mut day = people(rows?)?;
        distinct(&mut day);
        let first = Register::new(day.clone());
        let mut rest = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            match first.exact(q) {
                Some(found) => out.push(Resolved::of(found, &first)),
                None => {
                    rest.push(i);
                    out.push(Resolved::none(super::Quality::NotFound));
                }
            }
        }
        drop(first);
        if rest.is_empty() {
            return Ok(());
        }
        let (mut s, mut y, mut m, mut d, mut names) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &i in &rest {
            let q = &queries[i];
            let (qy, qm, qd) = super::ymd(q.date);
            let usual = (!q.usual.is_empty() && q.usual != q.birth).then_some(&q.usual);
            for name in std::iter::once(&q.birth).chain(usual) {
                s.push(i16::from(q.sex - b'0'));
                y.push(qy as i16);
                m.push(qm as i16);
                d.push(qd as i16);
                names.push(name.clone());
            }
        }
        let rows = c
            .client
            .query(&c.named, &[&s, &y, &m, &d, &names])
            .await
            .map_err(db);
        names.zeroize();
        day.extend(people(rows?)?);
        // A person can be both born that day there and named so.
        distinct(&mut day);
        let all = Register::new(day);
        for i in rest {
            out[i] = Resolved::of(all.lookup(&queries[i]), &all);
        }
        Ok(())
    }
}

/// The people of some rows.
fn people(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Person>, DbError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let text = |i: usize, what: &'static str| -> Result<&str, DbError> {
            r.try_get::<_, &str>(i).map_err(|_| DbError::Row(what))
        };
        let nir: [u8; BODY_LEN] = text(0, "nir")?
            .as_bytes()
            .try_into()
            .map_err(|_| DbError::Row("nir"))?;
        let sex: i16 = r.try_get(1).map_err(|_| DbError::Row("sex"))?;
        let date: i32 = r.try_get(2).map_err(|_| DbError::Row("birth_date"))?;
        out.push(Person {
            nir,
            sex: match sex {
                1 => b'1',
                2 => b'2',
                _ => return Err(DbError::Row("sex")),
            },
            date: u32::try_from(date).map_err(|_| DbError::Row("birth_date"))?,
            place: text(3, "birth_place")?
                .as_bytes()
                .try_into()
                .map_err(|_| DbError::Row("birth_place"))?,
            birth: text(4, "birth_key")?.to_owned(),
            usual: text(5, "usual_key")?.to_owned(),
            first: text(6, "first_key")?.to_owned(),
        });
    }
    // The rows' own buffers are freed (and wiped by the allocator) here.
    drop(rows);
    Ok(out)
}

/// Each person once: a person fetched for two queries comes twice, and
/// twice would make an exact match ambiguous.
fn distinct(people: &mut Vec<Person>) {
    people.sort_unstable_by_key(|p| p.nir);
    people.dedup_by(|a, b| a.nir == b.nir);
}

/// Loads §7's register CSV from `input` into `register.person`, replacing
/// it whole: the rows go to a new table by `COPY`, its indexes are built,
/// and one transaction puts it in the old one's place, so that the service
/// reads the old register until the new one is whole, and a load that fails
/// leaves it untouched. `progress` is called every 100,000 rows.
pub async fn load(
    client: &mut Client,
    input: impl Read,
    progress: &mut dyn FnMut(u64),
) -> Result<super::store::Loaded, StoreError> {
    let sql = |e: tokio_postgres::Error| StoreError::Database(describe(&e));
    let tx = client.transaction().await.map_err(sql)?;
    tx.batch_execute(&format!(
        "DROP TABLE IF EXISTS register.person_load; {}",
        TABLE.replace("{t}", "person_load")
    ))
    .await
    .map_err(sql)?;
    let sink = tx
        .copy_in(
            "COPY register.person_load (nir, sex, birth_date, birth_year, birth_place, \
             birth_name, usual_name, first_names, birth_key, usual_key, first_key) \
             FROM STDIN (FORMAT binary)",
        )
        .await
        .map_err(sql)?;
    let types = [
        Type::TEXT,
        Type::INT2,
        Type::INT4,
        Type::INT2,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures_util::pin_mut!(writer);
    let mut rows = Rows::new(input)?;
    let mut people = 0u64;
    while let Some((_, mut f)) = rows.next_row()? {
        let date = parse_date(f[5].as_bytes()).unwrap_or_default();
        let sex: i16 = if f[1] == "1" { 1 } else { 2 };
        let mut keys = [
            normal::surname(&f[2]),
            normal::surname(&f[3]),
            normal::first_names(&f[4]),
        ];
        let written = writer
            .as_mut()
            .write(&[
                &f[0],
                &sex,
                &(date as i32),
                &((date / 10_000) as i16),
                &f[6],
                &f[2],
                &f[3],
                &f[4],
                &keys[0],
                &keys[1],
                &keys[2],
            ])
            .await;
        f.zeroize();
        keys.zeroize();
        written.map_err(sql)?;
        people += 1;
        if people % 100_000 == 0 {
            progress(people);
        }
    }
    drop(rows);
    writer.finish().await.map_err(sql)?;
    if let Err(e) = tx
        .batch_execute(
            &INDEXES
                .replace("{t}", "person_load")
                .replace("{p}", "person_load"),
        )
        .await
    {
        return Err(match e.code() {
            Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                StoreError::DuplicateNir
            }
            _ => sql(e),
        });
    }
    tx.batch_execute(
        "ANALYZE register.person_load; \
         DROP TABLE IF EXISTS register.person; \
         ALTER TABLE register.person_load RENAME TO person; \
         ALTER INDEX register.person_load_pkey RENAME TO person_pkey; \
         ALTER INDEX register.person_load_day RENAME TO person_day; \
         ALTER INDEX register.person_load_birth_key RENAME TO person_birth_key; \
         ALTER INDEX register.person_load_usual_key RENAME TO person_usual_key;",
    )
    .await
    .map_err(sql)?;
    tx.commit().await.map_err(sql)?;
    Ok(super::store::Loaded { people })
}

//! A throw-away PostgreSQL server for tests, benchmarks and demos of the
//! PostgreSQL register (feature `dev-kit`): a new cluster in a temporary
//! directory, listening on 127.0.0.1 only, TLS 1.3 with a certificate the
//! caller gives, SCRAM passwords over TLS as the only way in from the
//! network, and the register's roles and schema made by
//! `deploy/register-postgres.sql`, as an administrator would. Stopped (and
//! its directory removed) on drop.
//!
//! **INSECURE** in the ways a test needs: no `fsync`, random passwords kept
//! in memory, an administrator that the cluster's own socket lets in
//! without a password. Needs PostgreSQL's server programs (Debian's
//! `postgresql` package: `.ci/postgres` installs it). As root, the server
//! runs as the `postgres` user (or `nobody`), as PostgreSQL requires.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// The database and roles of `deploy/register-postgres.sql`.
pub const DATABASE: &str = "rnipp";
/// The role that loads the register.
pub const LOADER: &str = "cstatns_loader";
/// The role the service reads the register with.
pub const SERVICE: &str = "cstatns_service";

const SETUP: &str = include_str!("../../deploy/register-postgres.sql");
const ADMIN: &str = "pgadmin";

/// A running throw-away server.
pub struct ThrowAwayPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    loader_password: String,
    service_password: String,
}

impl ThrowAwayPostgres {
    /// Makes and starts a cluster whose TLS certificate is `cert` (PEM,
    /// naming 127.0.0.1) with its key `key`, then its register roles and
    /// schema.
    pub fn start(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("cstatns-pg-").tempdir()?;
        let owner = if rustix::process::geteuid().is_root() {
            Some(unprivileged()?)
        } else {
            None
        };
        let port = {
            let l = TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let d = dir.path();
        std::fs::copy(cert, d.join("server.crt"))?;
        std::fs::copy(key, d.join("server.key"))?;
        std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            for p in [d.to_path_buf(), d.join("server.crt"), d.join("server.key")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
            }
        }
        let pg = Self {
            dir,
            bin,
            port,
            owner,
            loader_password: random_password(),
            service_password: random_password(),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().to_string_lossy(),
                "-U",
                ADMIN,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=reject",
            ],
        )?;
        let d = pg.dir.path().to_string_lossy().into_owned();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data().join("postgresql.conf"))?;
        writeln!(
            conf,
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\n\
             ssl = on\nssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\n\
             ssl_min_protocol_version = 'TLSv1.3'\npassword_encryption = 'scram-sha-256'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_wal_size = '4GB'\nmaintenance_work_mem = '512MB'"
        )?;
        std::fs::write(
            pg.data().join("pg_hba.conf"),
            format!(
                "local all {ADMIN} trust\n\
                 hostssl {DATABASE} {LOADER},{SERVICE} 127.0.0.1/32 scram-sha-256\n"
            ),
        )?;
        pg.restart()?;
        pg.admin_sql("postgres", SETUP)?;
        pg.admin_sql(
            "postgres",
            &format!(
                "ALTER ROLE {LOADER} PASSWORD '{}';\nALTER ROLE {SERVICE} PASSWORD '{}';\n",
                pg.loader_password, pg.service_password
            ),
        )?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection string of `role` to the register's database (no
    /// password in it).
    pub fn url(&self, role: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={DATABASE} user={role}",
            self.port
        )
    }

    /// The password of the loader's role.
    pub fn loader_password(&self) -> &str {
        &self.loader_password
    }

    /// The password of the service's role.
    pub fn service_password(&self) -> &str {
        &self.service_password
    }

    /// Runs SQL as the administrator, through the cluster's own socket.
    pub fn admin_sql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let mut child = Command::new(self.tool("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.dir.path().to_string_lossy(),
                "-p",
                &self.port.to_string(),
                "-U",
                ADMIN,
                "-d",
                database,
            ])
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("psql")?;
        child
            .stdin
            .take()
            .context("psql's input")?
            .write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server at once (as a crash would), keeping its files:
    /// [`ThrowAwayPostgres::restart`] starts it again.
    pub fn kill(&self) -> anyhow::Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts the server (again, after [`ThrowAwayPostgres::kill`]); its
    /// log says why when it does not.
    pub fn restart(&self) -> anyhow::Result<()> {
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .with_context(|| {
            format!(
                "the server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Runs a server program as the cluster's owner.
    fn run(&self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.tool(name));
        cmd.args(args)
            .env("LC_ALL", "C")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().with_context(|| format!("cannot run {name}"))?;
        if !out.status.success() {
            bail!(
                "{name} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for ThrowAwayPostgres {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Where PostgreSQL's server programs are: Debian's newest
/// `/usr/lib/postgresql/N/bin`, or the directory of `initdb` on the PATH.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .context(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: \
             run .ci/postgres, or install Debian's postgresql package",
        )
}

/// The user and group a root process runs the server as: `postgres`, or
/// `nobody`.
fn unprivileged() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for name in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == name {
                return Ok((f[2].parse()?, f[3].parse()?));
            }
        }
    }
    bail!("no unprivileged user (postgres or nobody) to run PostgreSQL as")
}

fn random_password() -> String {
    use rand::RngCore;
    let mut b = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

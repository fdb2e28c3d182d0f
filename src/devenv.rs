//! `cstatns dev-env`: a throw-away local deployment in one directory,
//! **insecure by design** (every passphrase sits next to its share, the CA key
//! on disk). For demos, tests and a first look; never for real data.
//!
//! Layout (scripts and tests rely on these names):
//! `pki/ca.pem`, `pki/ROLE.pem` + `pki/ROLE.key` (server, submitter, auditor,
//! operator, holder-1 … holder-n, stranger), `shares/holder-i.share` +
//! `shares/holder-i.pass`, `ceremony.json`, `keyring.json`, `audit/`,
//! `server.toml`.

use std::path::{Path, PathBuf};

use crate::config::{ClientEntry, Config, Quota, Role, TlsFiles, DEFAULT_MAX_REQUEST_BYTES};
use crate::pki::{self, DevPki};
use crate::seal::{self, HolderSpec, InitOptions, Passphrase, ShareKdf};

/// The purpose configured for the dev-env submitter.
pub const DEV_PURPOSE: &str = "demo";
/// The dev-env submitter's quotas: enough for the demo, the benchmarks
/// and the tests (100 million codes a day, 100 million a batch, 100,000
/// batches an hour), and a guard that is on, as in production.
pub const DEV_QUOTA: Quota = Quota {
    records_per_batch: Some(100_000_000),
    records_per_day: Some(100_000_000),
    batches_per_hour: Some(100_000),
};
/// Default listening address of a dev-env.
pub const DEV_LISTEN: &str = "127.0.0.1:8443";

/// What to create.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory (created; must be empty if it exists).
    pub dir: PathBuf,
    /// `n`.
    pub holders: usize,
    /// `t`.
    pub threshold: usize,
    /// Generation keys to create (testing renewal needs ≥ 2).
    pub generations: usize,
    /// A file holding `K_1` to import (`-` for stdin).
    pub import_key: Option<PathBuf>,
}

/// A created deployment.
#[derive(Debug, Clone)]
pub struct DevEnv {
    /// Its directory.
    pub dir: PathBuf,
    /// Its PKI.
    pub pki: DevPki,
    /// `server.toml`.
    pub config: PathBuf,
    /// `t`.
    pub threshold: usize,
    /// `n`.
    pub holders: usize,
}

impl DevEnv {
    /// `shares/holder-i.share`.
    pub fn share(&self, i: usize) -> PathBuf {
        self.dir.join("shares").join(format!("holder-{i}.share"))
    }

    /// `shares/holder-i.pass`.
    pub fn pass(&self, i: usize) -> PathBuf {
        self.dir.join("shares").join(format!("holder-{i}.pass"))
    }

    /// `pki/matcher.agekey`: the matching body's age identity (secret).
    pub fn matcher_identity(&self) -> PathBuf {
        self.dir.join("pki").join("matcher.agekey")
    }

    /// The matching body's age recipient (`age1…`), from `pki/matcher.agepub`.
    pub fn matcher_recipient(&self) -> std::io::Result<String> {
        Ok(
            std::fs::read_to_string(self.dir.join("pki").join("matcher.agepub"))?
                .trim()
                .to_owned(),
        )
    }
}

/// Creating the deployment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevEnvError {
    /// The directory exists and is not empty.
    #[error("{0} exists and is not empty; dev-env writes only into a new or empty directory")]
    NotEmpty(PathBuf),
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// PKI generation failed.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The ceremony failed.
    #[error(transparent)]
    Seal(#[from] seal::SealError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevEnvError + '_ {
    move |source| DevEnvError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file that must not exist yet, with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DevEnvError> {
    crate::files::write_new(path, bytes, mode).map_err(io(path))
}

/// Creates the deployment.
pub fn create(opts: &Options) -> Result<DevEnv, DevEnvError> {
    // Refuse bad numbers before writing anything, so that a retry with the
    // right ones finds the directory still empty.
    if opts.holders == 0 || opts.holders > seal::MAX_HOLDERS {
        return Err(DevEnvError::Seal(seal::SealError::InvalidHolderCount(
            opts.holders,
        )));
    }
    if opts.threshold == 0 || opts.threshold > opts.holders {
        return Err(DevEnvError::Seal(seal::SealError::InvalidThreshold {
            threshold: opts.threshold,
            holders: opts.holders,
        }));
    }
    let dir = &opts.dir;
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(DevEnvError::NotEmpty(dir.clone()));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dir = dir.canonicalize().map_err(io(dir))?;
    write_new(
        &dir.join("INSECURE-DEV-ENV.txt"),
        b"This directory is a throw-away cstatns deployment made by `cstatns dev-env`.\n\
          It is INSECURE by design: every share's passphrase is stored next to it and the\n\
          CA key is on disk. Never put real data through it.\n",
        0o644,
    )?;
    let pki = pki::write_dev_pki(&dir, opts.holders)?;
    let import_k1 = opts
        .import_key
        .as_deref()
        .map(seal::read_import_key)
        .transpose()?;
    let holders = (1..=opts.holders)
        .map(|i| {
            let name = pki::holder_role(i);
            let fingerprint = pki.fingerprint(&name).unwrap_or_default().to_owned();
            HolderSpec {
                name,
                fingerprint,
                external: false,
            }
        })
        .collect();
    let kdf = ShareKdf::InsecureFastForDevEnv;
    let out = seal::init(&InitOptions {
        threshold: opts.threshold,
        holders,
        generations: opts.generations.max(1),
        import_k1,
        share_kdf: kdf,
    })?;
    let passphrases: Vec<(String, Passphrase)> = (1..=opts.holders)
        .map(|i| (pki::holder_role(i), Passphrase::random_for_dev()))
        .collect();
    seal::write_ceremony(&dir, &out, &passphrases, kdf)?;
    for (name, pass) in &passphrases {
        let path = dir.join("shares").join(format!("{name}.pass"));
        write_new(&path, pass.expose_secret().as_bytes(), 0o600)?;
    }
    let audit = dir.join("audit");
    std::fs::create_dir_all(&audit).map_err(io(&audit))?;

    let entry = |name: &str, roles: Vec<Role>, purposes: Vec<String>| ClientEntry {
        name: name.to_owned(),
        roles,
        fingerprint: pki.fingerprint(name).map(str::to_owned),
        subject: None,
        purposes,
        quota: None,
    };
    let mut clients = vec![
        ClientEntry {
            quota: Some(DEV_QUOTA),
            ..entry(
                pki::SUBMITTER,
                vec![Role::Submitter],
                vec![DEV_PURPOSE.to_owned()],
            )
        },
        entry(pki::AUDITOR, vec![Role::Auditor], vec![]),
        entry(pki::OPERATOR, vec![Role::Operator], vec![]),
        entry(pki::MATCHER, vec![Role::Matcher], vec![]),
    ];
    // The matching body's own age key, to which research results are
    // encrypted (a real matching body keeps it on its own machines).
    let matcher_key = age::x25519::Identity::generate();
    {
        use age::secrecy::ExposeSecret;
        let secret = matcher_key.to_string();
        let path = dir.join("pki").join("matcher.agekey");
        write_new(
            &path,
            format!("{}\n", secret.expose_secret()).as_bytes(),
            0o600,
        )?;
    }
    let path = dir.join("pki").join("matcher.agepub");
    write_new(
        &path,
        format!("{}\n", matcher_key.to_public()).as_bytes(),
        0o644,
    )?;
    clients.extend(
        (1..=opts.holders).map(|i| entry(&pki::holder_role(i), vec![Role::Holder], vec![])),
    );
    let config = Config {
        insecure_dev_env: true,
        listen: DEV_LISTEN.to_owned(),
        metrics_listen: None,
        ceremony: "ceremony.json".into(),
        keyring: "keyring.json".into(),
        audit_dir: "audit".into(),
        max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        audit_max_file_bytes: crate::audit::DEFAULT_MAX_FILE_BYTES,
        audit_checkpoint_seconds: crate::audit::DEFAULT_CHECKPOINT_SECONDS,
        unseal_window_seconds: 3600,
        body_idle_timeout_seconds: 60,
        results_dir: None,
        result_window_seconds: 7 * 86_400,
        operation_ttl_seconds: 86_400,
        renewal_period_years: crate::renewal::DEFAULT_PERIOD_YEARS,
        renewal_warning_days: crate::renewal::DEFAULT_WARNING_DAYS,
        register: None,
        register_database: None,
        source_sha256: String::new(),
        source_path: None,
        tls: TlsFiles {
            cert: "pki/server.pem".into(),
            key: "pki/server.key".into(),
            client_ca: "pki/ca.pem".into(),
            crl: None,
        },
        clients,
    };
    let text = toml::to_string_pretty(&config).map_err(|e| DevEnvError::Io {
        path: dir.join("server.toml"),
        source: std::io::Error::other(e),
    })?;
    let config_path = dir.join("server.toml");
    write_new(
        &config_path,
        format!("# cstatns dev-env: INSECURE throw-away deployment, never for real data.\n{text}")
            .as_bytes(),
        0o644,
    )?;
    Ok(DevEnv {
        dir,
        pki,
        config: config_path,
        threshold: opts.threshold,
        holders: opts.holders,
    })
}

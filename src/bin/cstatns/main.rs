//! The `cstatns` command: the service, the submitter's client, the dry-run
//! validator, and the throw-away dev deployment and demo.
//!
//! Exit status (every subcommand): 0 success; 1 refused (the service refused
//! the batch or the share, or `validate` found bad lines); 2 error (a file
//! could not be read or written, the service could not be reached); 130
//! interrupted (`submit` then leaves no answer file).

mod audit;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use cstatns::batch::{Operation, ValidateError};
use cstatns::client::{self, ClientError, Endpoint, InputType, Submission};

#[global_allocator]
static ALLOC: cstatns::alloc::ZeroizingAlloc = cstatns::alloc::ZeroizingAlloc;

const EXIT_REFUSED: u8 = 1;
const EXIT_ERROR: u8 = 2;
/// `submit`: the batch was answered, but the guard stopped its codes part
/// way (`quota_exceeded` or `sweep_suspected` lines; the receipt says why).
const EXIT_GUARD: u8 = 4;
/// Stopped by SIGINT or SIGTERM (128 + 2, as a shell reports ^C).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "cstatns",
    version,
    about = "Keyed-hash transcoding of the NIR into the CStatNS, over mutual TLS",
    after_help = "Exit status: 0 success; 1 refused (by the service, or bad lines found by \
                  `validate`); 2 error (unreadable file, unreachable service, bad arguments).\n\
                  `audit`: 0 verified, 1 tampered, 2 unreadable (see `cstatns audit verify --help`)."
)]
struct Cli {
    /// Diagnostics on stderr as text or as one JSON object a line (not the traceability log).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "CSTATNS_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    // `time level target: message key=value…`.
    Text,
    // `{"timestamp":…,"level":…,"fields":{"message":…,…},"target":…}`.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (starts sealed; key holders unseal it).
    Serve {
        /// The configuration file (e.g. D/server.toml from dev-env).
        #[arg(long)]
        config: PathBuf,
        /// Listen here instead of the configured address (port 0 picks a free one).
        #[arg(long)]
        listen: Option<String>,
        /// Check the configuration and every file it names (ceremony record, TLS, keyring,
        /// the log verified, the register) as a start would, then exit: 0 usable, 2 not.
        /// Binds nothing, writes nothing, contacts no database.
        #[arg(long)]
        check_config: bool,
    },
    /// Send a batch file to the service and write the answer to a file.
    Submit {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The batch: CSV (`index,nir`) or NDJSON.
        input: PathBuf,
        /// Where to write the answer (created, never overwritten; mode 0600).
        #[arg(short, long)]
        output: PathBuf,
        /// Renew old codes (`index,cstatns,generation`) instead of deriving codes from NIRs.
        #[arg(long)]
        renewal: bool,
        /// Body type (default: from the extension; .ndjson/.jsonl are NDJSON, the rest CSV).
        #[arg(long = "type", value_enum)]
        input_type: Option<InputType>,
        /// Declared purpose (needed when the certificate has several).
        #[arg(long)]
        purpose: Option<String>,
        /// A research project's id: codes of its own key (CSpeNS) go, encrypted, to its
        /// matching body; the answer holds `index,status` only.
        #[arg(long)]
        project: Option<String>,
    },
    /// Matching body: fetch a research project's result once (then erased) and decrypt it.
    FetchResult {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The project's id.
        #[arg(long)]
        project: String,
        /// The batch id (from the submitter's receipt).
        #[arg(long)]
        batch: String,
        /// Your age identity file (`AGE-SECRET-KEY-1…`), the key the project's results
        /// are encrypted to.
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// Where to write the `index,cspens` table (created, never overwritten; mode 0600).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Check a batch locally, without any key: per-status counts, duplicate indexes.
    Validate {
        /// The batch file.
        input: PathBuf,
        /// The file is a renewal batch.
        #[arg(long)]
        renewal: bool,
        /// Body type (default: from the extension).
        #[arg(long = "type", value_enum)]
        input_type: Option<InputType>,
    },
    /// Show the service's status (sealed or not, generation, holders still needed).
    Status {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// The auditor's tools: verify the traceability log offline, report on it, verify a receipt, fetch a copy.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Operator: seal the service now (signs a last checkpoint, drops every key).
    Seal {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Operator: the guard against NIR dictionaries (docs/guard.md).
    #[command(subcommand)]
    Guard(GuardCommand),
    /// The register that trait batches are looked up in (DESIGN §7, docs/identity.md).
    #[command(subcommand)]
    Register(RegisterCommand),
    /// Write a throw-away local deployment (INSECURE: for tests and demos only).
    #[cfg(feature = "dev-kit")]
    DevEnv(DevEnvArgs),
    /// Run everything once: dev-env, serve, unseal, submit a synthetic batch; print a JSON summary.
    #[cfg(feature = "dev-kit")]
    Demo {
        /// Keep the deployment in this directory (default: a temporary one, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Synthetic records to generate.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Submit this file instead of synthetic records.
        #[arg(long, requires = "output")]
        input: Option<PathBuf>,
        /// Write the answer here.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Import K_1 from this file (`-` for stdin) instead of drawing it.
        #[arg(long)]
        import_key: Option<PathBuf>,
        /// Key holders.
        #[arg(long, default_value_t = 5)]
        holders: usize,
        /// Shares needed to unseal.
        #[arg(long, default_value_t = 3)]
        threshold: usize,
        /// Send identity traits instead of NIRs (DESIGN §7): a synthetic register is made and
        /// loaded, and `--records` of its people (respelt, with errors, and strangers) are
        /// looked up.
        #[arg(long, conflicts_with = "input")]
        traits: bool,
        /// With `--traits`: people in the synthetic register.
        #[arg(long, default_value_t = 1_000_000, requires = "traits")]
        register_people: u64,
    },
}

#[derive(Subcommand)]
enum RegisterCommand {
    /// Load a register CSV (`nir,sex,birth_name,usual_name,first_names,birth_date,birth_place`)
    /// into the embedded register named in server.toml, or into PostgreSQL, replacing it whole.
    #[command(
        after_help = "Every row is checked (NIR by DESIGN §2, sex, date, place, names) before the \
                      register is replaced: a bad row stops the load, naming its row and column, \
                      never its content, and the previous register stays. The service reads an \
                      embedded register when it starts; a PostgreSQL register is used at once."
    )]
    Load {
        /// The service's configuration: its `register` names the file (or its
        /// `[register_database]` the database).
        #[arg(
            long,
            required_unless_present = "database",
            conflicts_with = "database"
        )]
        config: Option<PathBuf>,
        /// Load into PostgreSQL instead: a connection string for the loader's role, without
        /// a password (`host=db.example port=5432 dbname=rnipp user=cstatns_loader`).
        #[arg(long, requires = "ca")]
        database: Option<String>,
        /// With --database: the CA of the database server's certificate.
        #[arg(long, requires = "database")]
        ca: Option<PathBuf>,
        /// With --database: a file holding the role's password (else it is asked for).
        #[arg(long, requires = "database")]
        password_file: Option<PathBuf>,
        /// The register CSV.
        file: PathBuf,
    },
    /// Write a synthetic register CSV (and a trait batch of its people) for tests and demos.
    #[cfg(feature = "dev-kit")]
    Generate {
        /// People in the register.
        #[arg(long, default_value_t = 100_000)]
        people: u64,
        /// The same seed gives the same people.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The register CSV to write (created, never overwritten; mode 0600).
        #[arg(short, long)]
        output: PathBuf,
        /// Also write a trait batch of about `--query-count` of its people, respelt, with
        /// errors of each kind, and one stranger in twenty.
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Lines of the trait batch.
        #[arg(long, default_value_t = 10_000)]
        query_count: u64,
    },
}

#[derive(Subcommand)]
enum GuardCommand {
    /// Lift the suspension the sweep detector put on a client (logged).
    #[command(
        after_help = "Operator only. The release is logged (guard_released) before it takes effect. \
                      Exit status: 0 the client is not suspended (any more); 1 refused by the \
                      service (not an operator, no such client, the log unwritable); 2 the service \
                      could not be reached, or the client is still suspended."
    )]
    Release {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The client's name, as `server.toml` spells it.
        client: String,
    },
}

#[derive(Args)]
struct EndpointArgs {
    /// The service, as https://HOST:PORT.
    #[arg(long)]
    server: String,
    /// CA certificate that signed the service's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Your certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Your private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Revocation list(s) of the CA (PEM): refuse a revoked service certificate.
    #[arg(long, value_name = "PEM")]
    crl: Option<PathBuf>,
}

impl From<EndpointArgs> for Endpoint {
    fn from(a: EndpointArgs) -> Self {
        Endpoint {
            server: a.server,
            ca: a.ca,
            cert: a.cert,
            key: a.key,
            crl: a.crl,
        }
    }
}

#[cfg(feature = "dev-kit")]
#[derive(Args)]
struct DevEnvArgs {
    /// Directory to create (must be new or empty).
    #[arg(long)]
    dir: PathBuf,
    /// Key holders (n).
    #[arg(long, default_value_t = 5)]
    holders: usize,
    /// Shares needed to unseal (t).
    #[arg(long, default_value_t = 3)]
    threshold: usize,
    /// Generation keys to create (2 or more to try renewal).
    #[arg(long, default_value_t = 1)]
    generations: usize,
    /// Import K_1 from this file (`-` for stdin) instead of drawing it.
    #[arg(long)]
    import_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("CSTATNS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // The PostgreSQL client prints a statement's parameters (the traits
    // looked up) at its debug level: never below info, whatever is asked.
    if let Ok(cap) = "tokio_postgres=info".parse() {
        filter = filter.add_directive(cap);
    }
    let diagnostics = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => diagnostics.init(),
        LogFormat::Json => diagnostics.json().init(),
    }
    if let Command::Serve {
        config,
        check_config: true,
        ..
    } = &cli.command
    {
        return check_config(config);
    }
    // The service confines itself before the runtime starts its threads.
    let mut prepared = None;
    if let Command::Serve { config, .. } = &cli.command {
        match prepare_serve(config) {
            Ok(p) => prepared = Some(p),
            Err(e) => {
                eprintln!("error: {}", cstatns::describe(e.as_ref()));
                return ExitCode::from(EXIT_ERROR);
            }
        }
    }
    // `submit` runs on one thread: the connection's task and the loop that
    // writes the answer then hand the answer's parts to each other without
    // waking another thread for each (a fifth of the client's time on two
    // threads), and the client leaves the other core to the service.
    let mut builder = if matches!(cli.command, Command::Submit { .. }) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(p) = &prepared {
        builder.worker_threads(p.workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli.command, prepared)) {
        Ok(code) => code,
        Err(e) => {
            let refused = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<ClientError>(),
                    Some(ClientError::Refused { .. })
                )
            });
            eprintln!("error: {}", cstatns::describe(e.as_ref()));
            ExitCode::from(if refused { EXIT_REFUSED } else { EXIT_ERROR })
        }
    }
}

async fn run(cmd: Command, prepared: Option<Prepared>) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve { listen, .. } => match prepared {
            Some(p) => serve(p, listen.as_deref()).await,
            None => anyhow::bail!("the service was not prepared"),
        },
        Command::Submit {
            endpoint,
            input,
            output,
            renewal,
            input_type,
            purpose,
            project,
        } => {
            let len = std::fs::metadata(&input)
                .with_context(|| format!("cannot read {}", input.display()))?
                .len();
            let bar = std::io::stderr()
                .is_terminal()
                .then(|| cstatns::client::progress_bar(len));
            let endpoint: Endpoint = endpoint.into();
            let submitted = client::submit(
                &endpoint,
                Submission {
                    operation: if renewal {
                        Operation::Renew
                    } else {
                        Operation::Derive
                    },
                    input_type: input_type.unwrap_or_else(|| InputType::guess(&input)),
                    input: &input,
                    output: &output,
                    purpose: purpose.as_deref(),
                    project: project.as_deref(),
                    progress: bar.clone().map(|b| {
                        Box::new(move |n| b.set_position(n)) as Box<dyn Fn(u64) + Send + Sync>
                    }),
                },
            );
            // Interrupted, the client leaves no partial answer behind.
            let receipt = tokio::select! {
                r = submitted => r?,
                () = shutdown_signal() => {
                    let _ = std::fs::remove_file(client::partial_path(&output));
                    eprintln!("interrupted: no answer written");
                    return Ok(ExitCode::from(EXIT_INTERRUPTED));
                }
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            eprintln!(
                "batch {}: {} lines, {} ok, {} refused, generation {}; answer in {}",
                receipt.batch,
                receipt.records,
                receipt.ok,
                receipt.rejected,
                receipt.generation,
                output.display()
            );
            println!("{}", serde_json::to_string(&receipt)?);
            if let Some(limit) = &receipt.guard {
                eprintln!(
                    "the service's guard stopped this batch's codes ({limit}): lines after that \
                     point are answered {} without a code{}",
                    if limit == "sweep_suspected" {
                        "sweep_suspected"
                    } else {
                        "quota_exceeded"
                    },
                    if limit == "sweep_suspected" {
                        "; this client is refused until an operator runs `cstatns guard release`"
                    } else {
                        ""
                    }
                );
                return Ok(ExitCode::from(EXIT_GUARD));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            input,
            renewal,
            input_type,
        } => validate(&input, renewal, input_type),
        Command::Status { endpoint } => {
            let status = Endpoint::from(endpoint).connect().await?.status().await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::FetchResult {
            endpoint,
            project,
            batch,
            identity,
            output,
        } => fetch_result(endpoint.into(), &project, &batch, &identity, &output).await,
        Command::Guard(GuardCommand::Release { endpoint, client }) => {
            let status = Endpoint::from(endpoint)
                .connect()
                .await?
                .guard_release(&client)
                .await?;
            if status.suspended.iter().any(|s| s.client == client) {
                anyhow::bail!("{client} is still suspended");
            }
            eprintln!("{client} is not suspended: its batches are answered again");
            Ok(ExitCode::SUCCESS)
        }
        Command::Register(RegisterCommand::Load {
            config,
            database,
            ca,
            password_file,
            file,
        }) => {
            use cstatns::identity::postgres::{self, Database};
            enum Target {
                File(PathBuf),
                Postgres(Box<Database>),
            }
            let target = match (config, database, ca) {
                (_, Some(url), Some(ca)) => {
                    let password = match password_file {
                        Some(f) => postgres::read_password(&f)?,
                        None => zeroize::Zeroizing::new(
                            rpassword::prompt_password("the database role's password: ")
                                .context("cannot read the password")?
                                .into_bytes(),
                        ),
                    };
                    Target::Postgres(Box::new(Database::with_password(&url, &ca, &password)?))
                }
                (Some(config), _, _) => {
                    let config = cstatns::config::Config::load(&config)?;
                    match (&config.register, &config.register_database) {
                        (Some(db), _) => Target::File(db.clone()),
                        (None, Some(_)) => anyhow::bail!(
                            "the configuration's register is in PostgreSQL, which the service's \
                             role may only read: load it with --database and the loader's role"
                        ),
                        (None, None) => anyhow::bail!(
                            "the configuration names no register (`register = \"FILE\"` or `[register_database]`)"
                        ),
                    }
                }
                _ => anyhow::bail!("give --config, or --database with --ca"),
            };
            let input = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {pos} rows loaded")
            {
                bar.set_style(style);
            }
            match target {
                Target::File(db) => {
                    let loaded =
                        cstatns::identity::store::load(input, &db, &mut |n| bar.set_position(n))?;
                    bar.finish_and_clear();
                    eprintln!(
                        "{} people loaded into {}; restart the service to use them",
                        loaded.people,
                        db.display()
                    );
                }
                Target::Postgres(db) => {
                    let mut client = db.connect().await?;
                    let loaded =
                        postgres::load(&mut client, std::io::BufReader::new(input), &mut |n| {
                            bar.set_position(n)
                        })
                        .await?;
                    bar.finish_and_clear();
                    eprintln!(
                        "{} people loaded into the PostgreSQL register; the service uses them at once",
                        loaded.people
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "dev-kit")]
        Command::Register(RegisterCommand::Generate {
            people,
            seed,
            output,
            queries,
            query_count,
        }) => {
            let truths = cstatns::identity::synth::write_files(
                people,
                seed,
                &output,
                queries.as_deref().map(|q| (q, query_count)),
            )?;
            eprintln!("{people} synthetic people written to {}", output.display());
            if let Some(q) = queries {
                eprintln!("{} trait lines written to {}", truths.len(), q.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Seal { endpoint } => {
            let status = Endpoint::from(endpoint).connect().await?.seal().await?;
            eprintln!(
                "the service is sealed: {} key holders must unseal it again",
                status.threshold
            );
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "dev-kit")]
        Command::DevEnv(a) => {
            let env = cstatns::devenv::create(&cstatns::devenv::Options {
                dir: a.dir,
                holders: a.holders,
                threshold: a.threshold,
                generations: a.generations,
                import_key: a.import_key,
            })?;
            let d = env.dir.display();
            println!(
                "INSECURE throw-away deployment written to {d} ({}-of-{} holders).",
                env.threshold, env.holders
            );
            println!("Serve it:   cstatns serve --config {d}/server.toml");
            println!(
                "Unseal it:  keyceremony unseal --server https://{} --ca {d}/pki/ca.pem --cert {d}/pki/holder-1.pem --key {d}/pki/holder-1.key --share {d}/shares/holder-1.share --passphrase-file {d}/shares/holder-1.pass   (and holders 2..{})",
                cstatns::devenv::DEV_LISTEN,
                env.threshold
            );
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "dev-kit")]
        Command::Demo {
            dir,
            records,
            input,
            output,
            import_key,
            holders,
            threshold,
            traits,
            register_people,
        } => {
            let summary = cstatns::demo::run(cstatns::demo::Options {
                dir,
                records,
                input,
                output,
                import_key,
                holders,
                threshold,
                progress: std::io::stderr().is_terminal(),
                traits: traits.then_some(register_people),
            })
            .await?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `serve --check-config`.
fn check_config(path: &Path) -> ExitCode {
    let checked = cstatns::config::Config::load(path)
        .map_err(cstatns::server::StartError::from)
        .and_then(|c| cstatns::server::check_config(&c));
    match checked {
        Ok(found) => {
            println!("{}: usable", path.display());
            for line in found {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", cstatns::describe(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The service, loaded and confined, before its runtime starts.
struct Prepared {
    config: cstatns::config::Config,
    hardening: cstatns::harden::Hardening,
    workers: usize,
}

/// Hardens the process, reads the configuration, and confines the process
/// to the configuration's files and to the system calls it makes
/// (`harden`), while it has one thread.
fn prepare_serve(path: &Path) -> anyhow::Result<Prepared> {
    let mut hardening = cstatns::harden::harden();
    let mut config = cstatns::config::Config::load(path)?;
    // The register database's host names, looked up before the service
    // confines itself away from the resolver's files; unresolvable now,
    // they are left to the connection (and trait batches to 503s).
    if let Some(d) = config.register_database.as_mut() {
        if let Err(e) = d.pin_addresses() {
            tracing::warn!(error = %e, "the register database's host could not be looked up at start");
        }
    }
    // Read before confinement (it may look at cgroup files).
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    cstatns::server::set_cores(workers);
    let results = config.results_dir();
    for dir in [&config.audit_dir, &results] {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    // The files the service only reads.
    let read_only: Vec<&Path> = [
        path,
        &config.ceremony,
        &config.tls.cert,
        &config.tls.key,
        &config.tls.client_ca,
    ]
    .into_iter()
    .chain(config.tls.crl.as_deref())
    .chain(config.register.as_deref())
    .chain(
        config
            .register_database
            .iter()
            .flat_map(|d| [d.ca.as_path(), d.password_file.as_path()]),
    )
    .collect();
    let write = vec![config.audit_dir.clone(), results, parent(&config.keyring)];
    // What lies in a writable directory can be rewritten by the service
    // (and so by whoever takes it over): say so for the files it only reads.
    for file in &read_only {
        if write.iter().any(|w| file.starts_with(w)) {
            tracing::warn!(
                file = %file.display(),
                "a file the service only reads is in a directory it may write: give the \
                 keyring, the log and the results directories of their own (deploy/server.toml)"
            );
        }
    }
    let mut read: Vec<_> = read_only.into_iter().map(parent).collect();
    read.dedup();
    let paths = cstatns::harden::Paths { read, write };
    hardening.files_confined = cstatns::harden::confine_files(&paths);
    hardening.syscalls_filtered = cstatns::harden::filter_syscalls();
    Ok(Prepared {
        config,
        hardening,
        workers,
    })
}

async fn serve(prepared: Prepared, listen: Option<&str>) -> anyhow::Result<ExitCode> {
    let Prepared {
        config, hardening, ..
    } = prepared;
    if !(hardening.no_core_dump
        && hardening.not_dumpable
        && hardening.files_confined
        && hardening.syscalls_filtered)
    {
        tracing::warn!(?hardening, "process hardening incomplete");
    }
    if config.insecure_dev_env {
        tracing::warn!("this is an INSECURE dev-env deployment: never put real data through it");
    }
    let server = cstatns::server::Server::bind(config, listen)
        .await?
        .with_hardening(hardening);
    let addr = server.local_addr()?;
    // Before the listening line, which scripts and tests wait for.
    if let Some(m) = server.metrics_addr() {
        println!("cstatns: metrics on https://{m}/metrics (operator role)");
    }
    // Scripts and tests wait for this line.
    println!("cstatns: listening on https://{addr} (sealed: key holders must unseal)");
    use std::io::Write;
    std::io::stdout().flush()?;
    server.run(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `cstatns validate`: the §2/§4 checks of every line, without any key, plus
/// duplicate indexes (which the service cannot see, answering each line alone).
fn validate(
    input: &Path,
    renewal: bool,
    input_type: Option<InputType>,
) -> anyhow::Result<ExitCode> {
    let op = if renewal {
        Operation::Renew
    } else {
        Operation::Derive
    };
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let csv = input_type.unwrap_or_else(|| InputType::guess(input)) == InputType::Csv;
    let found = match cstatns::batch::validate(op, csv, file) {
        Ok(found) => found,
        // The service would refuse the whole file (400): exit 1.
        Err(ValidateError::Header(e)) => {
            eprintln!("error: {}: {e}", input.display());
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", input.display())),
    };
    let counts = found.counts;
    let first_lines = found.first_records;
    println!("{:<22} {:>12}", "status", "lines");
    for (s, n) in counts.nonzero() {
        let where_ = first_lines
            .get(&s)
            .map(|v| {
                format!(
                    "  (first records: {})",
                    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                )
            })
            .unwrap_or_default();
        println!("{:<22} {:>12}{where_}", s.code(), n);
    }
    println!("{:<22} {:>12}", "total", counts.total());
    Ok(if counts.rejected() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

/// Fetches a project result (encrypted, to a private temporary file beside
/// the output), then decrypts it with the matching body's age identity.
async fn fetch_result(
    endpoint: Endpoint,
    project: &str,
    batch: &str,
    identity: &Path,
    output: &Path,
) -> anyhow::Result<ExitCode> {
    use std::io::Read;
    use std::str::FromStr;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(identity)
            .with_context(|| format!("cannot read {}", identity.display()))?,
    );
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
        .ok_or_else(|| anyhow::anyhow!("{}: not an age X25519 identity", identity.display()))?;
    if output.exists() {
        anyhow::bail!(
            "{} exists already; answers are never overwritten",
            output.display()
        );
    }
    let encrypted = client::partial_path(output).with_extension("age");
    let file = client::create_private(&encrypted)?;
    let mut file = tokio::fs::File::from_std(file);
    let fetched = endpoint
        .connect()
        .await?
        .fetch_result(project, batch, &mut file)
        .await;
    drop(file);
    let got_it = fetched.is_ok();
    let fetched_whole = |_: &Path| got_it;
    let decrypted = fetched.map_err(anyhow::Error::new).and_then(|n| {
        let reader = std::io::BufReader::new(std::fs::File::open(&encrypted)?);
        let mut plain = age::Decryptor::new_buffered(reader)
            .and_then(|d| d.decrypt(std::iter::once(&key as &dyn age::Identity)))
            .map_err(|e| anyhow::anyhow!("the result does not decrypt with this identity: {e}"))?;
        let out = client::create_private(output)?;
        let mut out = std::io::BufWriter::new(out);
        let mut buf = zeroize::Zeroizing::new(vec![0u8; 1 << 16]);
        let mut lines = 0u64;
        loop {
            let k = plain.read(&mut buf)?;
            if k == 0 {
                break;
            }
            lines += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
            std::io::Write::write_all(&mut out, &buf[..k])?;
        }
        std::io::Write::flush(&mut out)?;
        out.get_ref().sync_all()?;
        Ok((n, lines))
    });
    match &decrypted {
        // The service erased its copy as it handed it over: a table that
        // does not decrypt (another identity file?) is kept, encrypted.
        Err(_) if fetched_whole(&encrypted) => eprintln!(
            "the encrypted result is kept in {}: decrypt it with the right identity \
             (`age -d -i KEYFILE`)",
            encrypted.display()
        ),
        _ => {
            let _ = std::fs::remove_file(&encrypted);
        }
    }
    match decrypted {
        Ok((n, lines)) => {
            eprintln!(
                "result of batch {batch} of project {project}: {n} bytes fetched, {} codes; table in {}",
                lines.saturating_sub(1),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = std::fs::remove_file(output);
            Err(e)
        }
    }
}

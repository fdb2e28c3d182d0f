//! `keyceremony`: the key holders' tool (DESIGN §5).
//!
//! - `init` runs the share ceremony: draws the master secret, shares it
//!   among the holders, seals the keyring and writes the ceremony directory.
//! - `verify-share` lets a holder check, offline, that their share file
//!   opens with their passphrase and belongs to the signed ceremony record.
//! - `unseal` sends a holder's share to the sealed service over mutual TLS,
//!   authenticated by the holder's own certificate.
//! - `propose`, `pending`, `approve` and `cancel` drive the key operations
//!   a quorum of holders approves (renewal…): each approval carries the
//!   holder's share, bound to the digest of the exact operation, which the
//!   tool recomputes and shows before the holder agrees.
//!
//! Each subcommand is one `Args` struct and one `run_*` function returning
//! a [`Failure`] that carries its documented exit status; adding a
//! subcommand means adding one variant to [`Command`] and one arm to the
//! `match` in [`main`].
//!
//! Secrets never come from the command line: passphrases are typed at a
//! prompt (no echo) or read from files, and a key to import from a file or
//! standard input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use cstatns::seal::{self, Passphrase, SealError, ShareKdf};

#[global_allocator]
static ALLOC: cstatns::alloc::ZeroizingAlloc = cstatns::alloc::ZeroizingAlloc;

/// Exit status: success.
const EXIT_OK: u8 = 0;
/// Exit status: a share or record was checked and refused.
const EXIT_REFUSED: u8 = 1;
/// Exit status: input could not be read, decrypted or parsed, or the
/// operation could not be carried out.
const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "keyceremony",
    version,
    about = "Key holders' tool for cstatns: share ceremony, offline share check, unseal, \
             key operations under a quorum",
    long_about = "Key holders' tool for cstatns.\n\n\
        The master secret S is split t-of-n among the key holders with Feldman verifiable \
        secret sharing; the service's keys are sealed under S. `init` runs that ceremony \
        and writes its files; `verify-share` lets a holder check their share offline; \
        `unseal` sends it to the service after each start.\n\n\
        No one person can change the key: `propose` asks for an operation (a renewal), \
        `pending` lists those waiting, and each of t holders runs `approve`, which shows \
        the operation and its digest and sends the holder's share bound to that digest.\n\n\
        Secrets are never taken from the command line: passphrases are prompted for (no \
        echo) or read from files, and an imported key is read from a file or stdin.",
    after_help = "Exit status: 0 success; 1 a share, record or operation was checked and \
        refused; 2 unreadable input, wrong passphrase, unreachable service or other error.\n\
        Run `keyceremony help <command>` for each command's details."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the share ceremony and write DIR/ceremony.json, DIR/keyring.json and
    /// DIR/shares/NAME.share.
    Init(InitArgs),
    /// Re-share the master secret (new holders, new threshold, a revoked holder, a rotation):
    /// offline, with t current shares; writes a new ceremony revision into a new directory.
    Reshare(ReshareArgs),
    /// Check a share file offline against the signed ceremony record.
    VerifyShare(VerifyShareArgs),
    /// Send your share to the sealed service over mutual TLS, with your own certificate.
    Unseal(UnsealArgs),
    /// Propose a key operation to the holders (prints the operation id last).
    Propose(ProposeArgs),
    /// List the operations waiting for approval, one JSON object a line.
    Pending(PendingArgs),
    /// Approve an operation with your share, after checking what it does.
    Approve(ApproveArgs),
    /// Cancel a pending operation (its approvals are dropped).
    Cancel(CancelArgs),
}

/// How to reach the service, and who you are.
#[derive(Args)]
struct ServerArgs {
    /// The service, as https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    server: String,
    /// CA certificate that signed the service's certificate (PEM).
    #[arg(long, value_name = "PEM")]
    ca: PathBuf,
    /// Your certificate (PEM).
    #[arg(long, value_name = "PEM")]
    cert: PathBuf,
    /// Your private key (PEM).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// Revocation list(s) of the CA (PEM): refuse a revoked service certificate.
    #[arg(long, value_name = "PEM")]
    crl: Option<PathBuf>,
}

impl ServerArgs {
    fn endpoint(self) -> cstatns::client::Endpoint {
        cstatns::client::Endpoint {
            server: self.server,
            ca: self.ca,
            cert: self.cert,
            key: self.key,
            crl: self.crl,
        }
    }
}

#[derive(Args)]
#[command(after_help = "\
A holder (or the operator) proposes; the service gives the operation an id, a digest and \
an expiry (operation_ttl_seconds of its configuration, one day by default) and lists it for \
the holders. It runs once t holders have approved it with `keyceremony approve`.

The last line of standard output is the operation id.

Exit status: 0 proposed; 1 refused by the service; 2 the service could not be reached.")]
struct ProposeArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    operation: ProposeCommand,
}

#[derive(Subcommand)]
enum ProposeCommand {
    /// Renew the key: add a random K_(G+1). Codes are then given in generation G+1, and
    /// older codes are lifted to it by POST /v1/renewal (DESIGN §3).
    Renew,
    /// Create a research project's own key (CSpeNS), destroyed when its end date begins.
    ProjectCreate(ProjectCreateArgs),
    /// Destroy a research project's key now.
    ProjectDestroy {
        /// The project's id.
        #[arg(long)]
        project: String,
    },
    /// Renew a research project's key: add a random key to its chain (its matching body
    /// lifts older CSpeNS codes with POST /v1/projects/ID/renewal).
    ProjectRenew {
        /// The project's id.
        #[arg(long)]
        project: String,
    },
}

#[derive(Args)]
struct ProjectCreateArgs {
    /// The project's id (1 to 64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    project: String,
    /// The purpose its batches declare.
    #[arg(long)]
    purpose: String,
    /// YYYY-MM-DD (UTC): the key is destroyed, without anyone's action, when this day begins.
    #[arg(long, value_name = "DATE")]
    end_date: String,
    /// The name, in the service's configuration, of the only submitter allowed.
    #[arg(long, value_name = "NAME")]
    submitter: String,
    /// The matching body's certificate (PEM): the only one that may fetch the results.
    #[arg(long, value_name = "PEM")]
    matcher_cert: PathBuf,
    /// The matching body's age X25519 recipient (age1…): results are held only encrypted to it.
    #[arg(long, value_name = "AGE1")]
    matcher_recipient: String,
}

#[derive(Args)]
#[command(after_help = "\
Each line is one JSON object: {\"proposal\": {…}, \"digest\": \"…\", \"approved_by\": […], \
\"approvals_needed\": N}. The digest is recomputed here from the proposal, and a line whose \
digest does not match is refused.

Exit status: 0 listed (possibly nothing); 1 refused by the service or a digest does not \
match; 2 the service could not be reached.")]
struct PendingArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
#[command(after_help = "\
Before anything is sent, the operation's exact parameters are shown with its digest, which \
this tool recomputes from the proposal itself: compare it with the digest the proposer read \
out, then answer `yes` (or pass --yes in scripts). Your share is then decrypted with your \
passphrase and sent with that digest over your own certificate; the service counts it only \
for the operation with exactly that digest, and runs the operation at the t-th approval.

Exit status: 0 approval accepted (and the operation run, if it was the last needed); 1 \
refused (by you at the prompt, or by the service: another digest, a second approval, a bad \
share, another holder's certificate, an unknown or expired operation); 2 unreadable input, \
wrong passphrase, or the service could not be reached.")]
struct ApproveArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Your share file.
    #[arg(long, value_name = "FILE")]
    share: PathBuf,
    /// Read the passphrase from this file instead of prompting.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Approve without asking for confirmation (scripts).
    #[arg(long)]
    yes: bool,
    /// The operation id (from `keyceremony propose` or `keyceremony pending`).
    #[arg(value_name = "ID")]
    id: String,
}

#[derive(Args)]
#[command(after_help = "\
Exit status: 0 cancelled; 1 refused by the service (unknown, already run or expired); 2 \
the service could not be reached.")]
struct CancelArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The operation id.
    #[arg(value_name = "ID")]
    id: String,
}

#[derive(Args)]
#[command(after_help = "\
The share is decrypted here with your passphrase (prompted, no echo, unless \
--passphrase-file is given) and sent over TLS 1.3 authenticated by your own certificate: the \
service accepts a share only over the certificate the ceremony record binds to its holder, \
checks it against the record on arrival, and unseals once t valid shares have arrived.

Exit status: 0 share accepted; 1 refused by the service (bad share, another ceremony, another \
holder's certificate, already unsealed); 2 unreadable input, wrong passphrase, or the service \
could not be reached.")]
struct UnsealArgs {
    /// The service, as https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    server: String,
    /// CA certificate that signed the service's certificate (PEM).
    #[arg(long, value_name = "PEM")]
    ca: PathBuf,
    /// Your certificate (PEM): the one named for you in the ceremony record.
    #[arg(long, value_name = "PEM")]
    cert: PathBuf,
    /// Your private key (PEM).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// Revocation list(s) of the CA (PEM): refuse a revoked service certificate.
    #[arg(long, value_name = "PEM")]
    crl: Option<PathBuf>,
    /// Your share file.
    #[arg(long, value_name = "FILE")]
    share: PathBuf,
    /// Read the passphrase from this file instead of prompting.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Args)]
#[command(after_help = "\
Holders get share identifiers 1, 2, … in order: first the --holder ones, then the \
--external-holder ones, each in the order given. Each holder in turn is asked for a new \
passphrase (typed twice, no echo) unless --passphrase-dir is given.

Files are never overwritten: if any output file exists, nothing is written. The share \
files and keyring.json are created with mode 0600, the shares directory with mode 0700.

The summary printed at the end holds no secret; read the key check value aloud and put \
it in the ceremony minutes: every unseal is checked against it.

Exit status: 0 ceremony written; 2 error (nothing written).")]
struct InitArgs {
    /// Directory to write the ceremony into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Number of shares needed to rebuild the master secret (1 ≤ T ≤ number of holders).
    #[arg(long, value_name = "T")]
    threshold: usize,

    /// A key holder of the unit: name ([A-Za-z0-9._-], at most 64) and their
    /// certificate (PEM). Repeat for each holder.
    #[arg(long = "holder", value_name = "NAME=CERT.pem", value_parser = parse_holder)]
    holders: Vec<HolderArg>,

    /// An external key holder (continuity), same form as --holder.
    #[arg(long = "external-holder", value_name = "NAME=CERT.pem", value_parser = parse_holder)]
    external_holders: Vec<HolderArg>,

    /// Number of generation keys K_1 … K_G to create.
    #[arg(long, value_name = "G", default_value_t = 1)]
    generations: usize,

    /// Import K_1 from FILE (32 raw bytes or 64 hex digits) instead of drawing it;
    /// `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    import_key: Option<PathBuf>,

    /// Read each holder's new passphrase from DIR/NAME.pass instead of prompting
    /// (scripted ceremonies; the files are as secret as the passphrases).
    #[arg(long, value_name = "DIR")]
    passphrase_dir: Option<PathBuf>,
}

#[derive(Args)]
#[command(after_help = "\
Run it on an offline machine, like `init`, with the service's current ceremony.json and \
keyring.json, and t holders of the current ceremony, each bringing their share and typing its \
passphrase. A new master secret is drawn and split among the new holders, who each type a new \
passphrase: no one but a holder can read their new share, and no share ever crosses a network. \
The keyring is re-encrypted under the new secret, and a new revision of the record, chained to \
the current one, is signed with the log key.

Then, with the service stopped, the operator replaces ceremony.json and keyring.json by the new \
ones (both: they go together) and starts it; it logs the re-sharing (`resharing`) and is unsealed \
with the new shares. Old shares are refused from then on, and the new keyring does not open with \
the old secret: who kept t old shares and an old keyring file opens that old file only.

--revoke NAME keeps every other holder and the threshold; --rotate keeps every holder (a new \
secret after a suspected compromise; add --renew to add a key generation in the same step); \
otherwise give the new list with --holder/--external-holder and --threshold.

Exit status: 0 written; 1 a share or the record was refused; 2 unreadable input, wrong \
passphrase, or the output exists.")]
struct ReshareArgs {
    /// The current ceremony record (ceremony.json).
    #[arg(long, value_name = "FILE")]
    record: PathBuf,
    /// The current sealed keyring (keyring.json).
    #[arg(long, value_name = "FILE")]
    keyring: PathBuf,
    /// A current share file; give t of them (--share A.share --share B.share …).
    #[arg(long = "share", value_name = "FILE", required = true)]
    shares: Vec<PathBuf>,
    /// Read each current share's passphrase from DIR/NAME.pass instead of prompting.
    #[arg(long, value_name = "DIR")]
    old_passphrase_dir: Option<PathBuf>,
    /// Directory to write the new revision into (must not hold a ceremony).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Revoke this holder: the same holders without them, the same threshold.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["rotate", "holders", "external_holders"])]
    revoke: Option<String>,
    /// A new master secret for the same holders and threshold.
    #[arg(long, conflicts_with_all = ["holders", "external_holders"])]
    rotate: bool,
    /// The new threshold (default: the current one).
    #[arg(long, value_name = "T")]
    threshold: Option<usize>,
    /// A new holder of the unit, NAME=CERT.pem (the whole new list is given).
    #[arg(long = "holder", value_name = "NAME=CERT.pem", value_parser = parse_holder)]
    holders: Vec<HolderArg>,
    /// A new external holder, same form as --holder.
    #[arg(long = "external-holder", value_name = "NAME=CERT.pem", value_parser = parse_holder)]
    external_holders: Vec<HolderArg>,
    /// Add a random key generation in the same step.
    #[arg(long)]
    renew: bool,
    /// Read each new holder's new passphrase from DIR/NAME.pass instead of prompting.
    #[arg(long, value_name = "DIR")]
    passphrase_dir: Option<PathBuf>,
}

#[derive(Args)]
#[command(after_help = "\
Checks, without any network access: the record's signature; that the share file opens \
with the passphrase; that the share belongs to this ceremony, to a holder listed in it \
with the right identifier; and Feldman's check of the share value against the record's \
commitments.

Exit status:
  0  the share is verified
  1  the share or the record was refused (other ceremony, unknown holder, wrong \
identifier, failed Feldman check, malformed share content, record signature invalid)
  2  an input could not be read or parsed, or the passphrase is wrong")]
struct VerifyShareArgs {
    /// The ceremony record (ceremony.json).
    #[arg(long, value_name = "FILE")]
    record: PathBuf,

    /// The share file (NAME.share).
    #[arg(long, value_name = "FILE")]
    share: PathBuf,

    /// Read the passphrase from FILE (one trailing newline ignored) instead of
    /// prompting.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

/// `NAME=CERT.pem` as given on the command line.
#[derive(Clone, Debug)]
struct HolderArg {
    name: String,
    cert: PathBuf,
}

fn parse_holder(text: &str) -> Result<HolderArg, String> {
    let (name, cert) = text
        .split_once('=')
        .ok_or_else(|| "expected NAME=CERT.pem".to_owned())?;
    if !seal::is_valid_holder_name(name) {
        return Err(format!(
            "holder name {name:?} is not 1 to 64 characters of [A-Za-z0-9._-]"
        ));
    }
    if cert.is_empty() {
        return Err("expected NAME=CERT.pem (no certificate file given)".to_owned());
    }
    Ok(HolderArg {
        name: name.to_owned(),
        cert: PathBuf::from(cert),
    })
}

/// Why a run failed, and the exit status that says so.
struct Failure {
    status: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Exit status 1: something was checked and refused.
    fn refused(error: impl Into<anyhow::Error>) -> Self {
        Self {
            status: EXIT_REFUSED,
            error: error.into(),
        }
    }

    /// Exit status 2: could not read, decrypt or do.
    fn error(error: impl Into<anyhow::Error>) -> Self {
        Self {
            status: EXIT_ERROR,
            error: error.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::error(error)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Init(args) => run_init(args),
        Command::Reshare(args) => run_reshare(args),
        Command::VerifyShare(args) => run_verify_share(args),
        Command::Unseal(args) => run_unseal(args),
        Command::Propose(args) => run_propose(args),
        Command::Pending(args) => run_pending(args),
        Command::Approve(args) => run_approve(args),
        Command::Cancel(args) => run_cancel(args),
    };
    match outcome {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(failure) => {
            eprintln!("keyceremony: {}", cstatns::describe(failure.error.as_ref()));
            ExitCode::from(failure.status)
        }
    }
}

fn run_init(args: InitArgs) -> Result<(), Failure> {
    let holders: Vec<(HolderArg, bool)> = args
        .holders
        .iter()
        .map(|h| (h.clone(), false))
        .chain(args.external_holders.iter().map(|h| (h.clone(), true)))
        .collect();
    if holders.is_empty() {
        return Err(anyhow!("give at least one --holder or --external-holder").into());
    }
    for (i, (h, _)) in holders.iter().enumerate() {
        if holders[..i].iter().any(|(o, _)| o.name == h.name) {
            return Err(anyhow!("holder {} is given twice", h.name).into());
        }
    }
    if args.threshold == 0 || args.threshold > holders.len() {
        return Err(anyhow!(
            "--threshold must be between 1 and the number of holders ({}), not {}",
            holders.len(),
            args.threshold
        )
        .into());
    }

    // Refuse before anyone types a passphrase if the output exists.
    let mut targets = vec![
        args.out.join(seal::RECORD_FILE),
        args.out.join(seal::KEYRING_FILE),
    ];
    targets.extend(holders.iter().map(|(h, _)| {
        args.out
            .join(seal::SHARES_DIR)
            .join(seal::share_file_name(&h.name))
    }));
    if let Some(existing) = targets.iter().find(|p| p.symlink_metadata().is_ok()) {
        return Err(anyhow!(
            "{} already exists; refusing to overwrite it",
            existing.display()
        )
        .into());
    }

    let mut specs = Vec::with_capacity(holders.len());
    for (h, external) in &holders {
        let pem = std::fs::read(&h.cert).with_context(|| {
            format!(
                "cannot read the certificate of {}: {}",
                h.name,
                h.cert.display()
            )
        })?;
        let fingerprint = seal::holder_fingerprint_from_pem(&pem)
            .with_context(|| format!("certificate of {} ({})", h.name, h.cert.display()))?;
        specs.push(seal::HolderSpec {
            name: h.name.clone(),
            fingerprint,
            external: *external,
        });
    }

    let import_k1 = match &args.import_key {
        Some(path) => Some(
            seal::read_import_key(path)
                .with_context(|| format!("cannot import K_1 from {}", describe_source(path)))?,
        ),
        None => None,
    };

    let passphrases = collect_passphrases(&specs, args.passphrase_dir.as_deref())?;

    let options = seal::InitOptions {
        threshold: args.threshold,
        holders: specs,
        generations: args.generations,
        import_k1,
        share_kdf: ShareKdf::Standard,
    };
    let output = seal::init(&options).context("the ceremony failed")?;
    eprintln!("Encrypting the shares (about a second each)…");
    let files = seal::write_ceremony(&args.out, &output, &passphrases, output.share_kdf)
        .context("cannot write the ceremony files")?;

    print_summary(&output.record, &files, options.import_k1.is_some());
    Ok(())
}

fn run_reshare(args: ReshareArgs) -> Result<(), Failure> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let record = seal::CeremonyRecord::from_json(&read(&args.record)?)
        .map_err(|e| Failure::refused(anyhow::Error::new(e).context("the ceremony record")))?;
    record
        .verify_signature()
        .map_err(|e| Failure::refused(anyhow::Error::new(e).context("the ceremony record")))?;
    let keyring = seal::SealedKeyring::from_json(&read(&args.keyring)?).context("the keyring")?;
    let current: Vec<seal::HolderSpec> = record
        .holders()
        .iter()
        .map(|h| seal::HolderSpec {
            name: h.name.clone(),
            fingerprint: h.fingerprint.clone(),
            external: h.external,
        })
        .collect();
    let (specs, threshold) = if let Some(name) = &args.revoke {
        if !current.iter().any(|h| &h.name == name) {
            return Err(Failure::refused(anyhow!(
                "{name} is not a holder of this ceremony"
            )));
        }
        let kept: Vec<_> = current.into_iter().filter(|h| &h.name != name).collect();
        (kept, args.threshold.unwrap_or(record.threshold()))
    } else if args.rotate {
        (current, args.threshold.unwrap_or(record.threshold()))
    } else {
        let mut specs = Vec::new();
        for (h, external) in args
            .holders
            .iter()
            .map(|h| (h, false))
            .chain(args.external_holders.iter().map(|h| (h, true)))
        {
            let pem = read(&h.cert)?;
            let fingerprint = seal::holder_fingerprint_from_pem(&pem)
                .with_context(|| format!("certificate of {} ({})", h.name, h.cert.display()))?;
            specs.push(seal::HolderSpec {
                name: h.name.clone(),
                fingerprint,
                external,
            });
        }
        if specs.is_empty() {
            return Err(anyhow!("give --revoke NAME, --rotate, or the new --holder list").into());
        }
        (specs, args.threshold.unwrap_or(record.threshold()))
    };
    if threshold < 2 || threshold > specs.len() {
        return Err(anyhow!(
            "the new threshold must be between 2 and the number of new holders ({}), not {threshold}",
            specs.len()
        )
        .into());
    }
    let mut targets = vec![
        args.out.join(seal::RECORD_FILE),
        args.out.join(seal::KEYRING_FILE),
    ];
    targets.extend(specs.iter().map(|h| {
        args.out
            .join(seal::SHARES_DIR)
            .join(seal::share_file_name(&h.name))
    }));
    if let Some(existing) = targets.iter().find(|p| p.symlink_metadata().is_ok()) {
        return Err(anyhow!(
            "{} already exists; refusing to overwrite it",
            existing.display()
        )
        .into());
    }
    let mut shares = Vec::new();
    for path in &args.shares {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".share"))
            .unwrap_or("");
        let pass = args
            .old_passphrase_dir
            .as_ref()
            .map(|d| d.join(format!("{name}.pass")));
        let share = open_share(path, pass.as_deref())?;
        record.verify_share(&share).map_err(|e| {
            Failure::refused(anyhow::Error::new(e).context(path.display().to_string()))
        })?;
        shares.push(share);
    }
    let passphrases = collect_passphrases(&specs, args.passphrase_dir.as_deref())?;
    let output = seal::reshare(&seal::ReshareOptions {
        record: &record,
        keyring: &keyring,
        shares: &shares,
        threshold,
        holders: specs,
        renew: args.renew,
        share_kdf: ShareKdf::Standard,
    })
    .map_err(|e| Failure::refused(anyhow::Error::new(e).context("the re-sharing failed")))?;
    drop(shares);
    eprintln!("Encrypting the new shares (about a second each)…");
    let files = seal::write_ceremony(&args.out, &output, &passphrases, output.share_kdf)
        .context("cannot write the new ceremony files")?;
    print_summary(&output.record, &files, false);
    println!(
        "revision {} of ceremony {} (previous record digest {}); install ceremony.json and \
         keyring.json together, with the service stopped",
        output.record.revision(),
        output.record.ceremony_id(),
        output.record.previous_hex().unwrap_or("")
    );
    Ok(())
}

fn describe_source(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Each holder's new passphrase, from `DIR/NAME.pass` or typed by the
/// holder (twice; three attempts).
fn collect_passphrases(
    specs: &[seal::HolderSpec],
    dir: Option<&Path>,
) -> Result<Vec<(String, Passphrase)>, Failure> {
    let n = specs.len();
    let mut out = Vec::with_capacity(n);
    for (i, spec) in specs.iter().enumerate() {
        let passphrase = match dir {
            Some(dir) => {
                let path = dir.join(format!("{}.pass", spec.name));
                Passphrase::from_file(&path)
                    .and_then(Passphrase::check_new)
                    .with_context(|| format!("passphrase of {}", spec.name))?
            }
            None => {
                eprintln!(
                    "\nHolder {} ({} of {}{}): choose the passphrase that will protect your share.",
                    spec.name,
                    i + 1,
                    n,
                    if spec.external { ", external" } else { "" }
                );
                prompt_new_with_retries(&spec.name)?
            }
        };
        out.push((spec.name.clone(), passphrase));
    }
    Ok(out)
}

fn prompt_new_with_retries(holder: &str) -> Result<Passphrase, Failure> {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        match Passphrase::prompt_new() {
            Ok(p) => return Ok(p),
            Err(e @ (SealError::PassphraseMismatch | SealError::EmptyPassphrase))
                if attempt < ATTEMPTS =>
            {
                eprintln!("{e}; please try again.");
            }
            Err(e) => {
                return Err(Failure::error(
                    anyhow::Error::new(e).context(format!("passphrase of {holder}")),
                ))
            }
        }
    }
    Err(anyhow!("no passphrase for {holder}").into())
}

fn print_summary(record: &seal::CeremonyRecord, files: &seal::CeremonyFiles, imported: bool) {
    let holders = record.holders();
    println!("Ceremony {} ({})", record.ceremony_id(), record.created());
    println!(
        "Threshold: {} of {} holders",
        record.threshold(),
        holders.len()
    );
    for h in holders {
        println!(
            "  {:>3}  {:<20} {:<8}  certificate SHA-256 {}",
            h.id,
            h.name,
            if h.external { "external" } else { "internal" },
            h.fingerprint
        );
    }
    if imported {
        println!("K_1 imported from the given key file.");
    }
    println!("Key check value (C0): {}", record.key_check_value());
    println!("Log public key:       {}", record.log_public_key_hex());
    println!("Written:");
    println!("  {}", files.record.display());
    println!("  {}", files.keyring.display());
    for (holder, path) in &files.shares {
        println!("  {}  (share of {holder})", path.display());
    }
}

fn run_verify_share(args: VerifyShareArgs) -> Result<(), Failure> {
    let record_bytes = std::fs::read(&args.record)
        .with_context(|| format!("cannot read {}", args.record.display()))?;
    let record = seal::CeremonyRecord::from_json(&record_bytes)
        .with_context(|| format!("cannot use {}", args.record.display()))?;
    record
        .verify_signature()
        .with_context(|| format!("{} refused", args.record.display()))
        .map_err(Failure::refused)?;

    let share = open_share(&args.share, args.passphrase_file.as_deref())?;

    record
        .verify_share(&share)
        .map_err(|e| Failure::refused(anyhow::Error::new(e).context("share refused")))?;
    println!(
        "share of {} verified against ceremony {} (key check value {})",
        share.holder(),
        record.ceremony_id(),
        record.key_check_value()
    );
    Ok(())
}

/// Reads and decrypts a holder's share file with their passphrase (from
/// `passphrase_file`, or prompted). A share file whose content is not a
/// share is refused (exit 1); unreadable or a wrong passphrase is exit 2.
fn open_share(path: &Path, passphrase_file: Option<&Path>) -> Result<seal::Share, Failure> {
    let share_bytes =
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let passphrase = match passphrase_file {
        Some(file) => Passphrase::from_file(file).context("cannot read the passphrase")?,
        None => Passphrase::prompt(&format!("Passphrase for {}: ", path.display()))
            .context("cannot read the passphrase")?,
    };
    seal::Share::decrypt_file_bytes(&share_bytes, &passphrase).map_err(|e| {
        let refused = matches!(e, SealError::MalformedShare(_));
        let e = anyhow::Error::new(e).context(path.display().to_string());
        if refused {
            Failure::refused(e)
        } else {
            Failure::error(e)
        }
    })
}

fn run_unseal(args: UnsealArgs) -> Result<(), Failure> {
    let share = open_share(&args.share, args.passphrase_file.as_deref())?;
    let endpoint = cstatns::client::Endpoint {
        server: args.server,
        ca: args.ca,
        cert: args.cert,
        key: args.key,
        crl: args.crl,
    };
    let reply = exchange(endpoint, |mut c| async move { c.unseal(&share).await })?;
    if reply.sealed {
        println!(
            "share of {} accepted; the service is still sealed: {} more share(s) needed",
            reply.holder, reply.holders_needed
        );
    } else {
        println!(
            "share of {} accepted; the service is unsealed (generation {})",
            reply.holder,
            reply.generation.unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs one exchange with the service on a fresh connection. A refusal by
/// the service is exit status 1, anything else that fails 2.
fn exchange<T, F, Fut>(endpoint: cstatns::client::Endpoint, f: F) -> Result<T, Failure>
where
    F: FnOnce(cstatns::client::Connection) -> Fut,
    Fut: std::future::Future<Output = Result<T, cstatns::client::ClientError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime
        .block_on(async { f(endpoint.connect().await?).await })
        .map_err(|e| {
            let refused = matches!(e, cstatns::client::ClientError::Refused { .. });
            let e = anyhow::Error::new(e);
            if refused {
                Failure::refused(e)
            } else {
                Failure::error(e)
            }
        })
}

/// Checks a listed operation the way a holder must before approving: its
/// form, and that the digest the service gives is the one recomputed here.
fn check_listed(p: &seal::PendingView) -> Result<(), Failure> {
    p.proposal
        .check()
        .map_err(|e| Failure::refused(anyhow::Error::new(e).context("operation refused")))?;
    let digest = p.proposal.digest_hex();
    if digest != p.digest {
        return Err(Failure::refused(anyhow!(
            "operation {}: the service gives digest {} but its parameters digest to {}; \
             do not approve it",
            p.proposal.id,
            p.digest,
            digest
        )));
    }
    Ok(())
}

/// The operation as a holder reads it before approving.
fn describe_operation(p: &seal::Proposal) -> String {
    let what = match &p.operation {
        seal::Operation::Renew {} => "renew the key: add a random K_(G+1); codes are then given \
                                      in generation G+1 and older codes lifted to it"
            .to_owned(),
        seal::Operation::ProjectCreate {
            project,
            purpose,
            end_date,
            submitter,
            matcher_fingerprint,
            matcher_recipient,
        } => format!(
            "create research project {project}: its own key, destroyed when {end_date} begins \
             (UTC); batches from {submitter} only, purpose {purpose}; results encrypted to \
             {matcher_recipient}, fetched only by the certificate with SHA-256 \
             {matcher_fingerprint}"
        ),
        seal::Operation::ProjectRenew { project } => format!(
            "renew research project {project}'s key: add a random key to its chain; its CSpeNS \
             are then given in the next generation, and older ones lifted to it by its matching body"
        ),
        seal::Operation::ProjectDestroy { project } => {
            format!(
                "destroy research project {project}'s key now: its codes can never be made again"
            )
        }
        other => format!("{other:?}"),
    };
    format!(
        "Operation {id}\n  ceremony:    {ceremony}\n  kind:        {kind}\n  what:        {what}\n  \
         proposed by: {by} at {at}\n  expires:     {exp}\n  parameters:  {params}\n  digest:      {digest}",
        id = p.id,
        ceremony = p.ceremony_id,
        kind = p.operation.kind(),
        by = p.proposed_by,
        at = p.proposed_at,
        exp = p.expires_at,
        params = serde_json::to_string(&p.operation).unwrap_or_default(),
        digest = p.digest_hex(),
    )
}

fn run_propose(args: ProposeArgs) -> Result<(), Failure> {
    let operation = match args.operation {
        ProposeCommand::Renew => seal::Operation::Renew {},
        ProposeCommand::ProjectDestroy { project } => seal::Operation::ProjectDestroy { project },
        ProposeCommand::ProjectRenew { project } => seal::Operation::ProjectRenew { project },
        ProposeCommand::ProjectCreate(a) => {
            let pem = std::fs::read(&a.matcher_cert)
                .with_context(|| format!("cannot read {}", a.matcher_cert.display()))?;
            let matcher_fingerprint = seal::holder_fingerprint_from_pem(&pem)
                .with_context(|| format!("{} is not a certificate", a.matcher_cert.display()))?;
            seal::Operation::ProjectCreate {
                project: a.project,
                purpose: a.purpose,
                end_date: a.end_date,
                submitter: a.submitter,
                matcher_fingerprint,
                matcher_recipient: a.matcher_recipient,
            }
        }
    };
    operation
        .check()
        .map_err(|e| Failure::refused(anyhow::Error::new(e).context("operation refused")))?;
    let listed = exchange(args.server.endpoint(), |mut c| async move {
        c.propose(&operation).await
    })?;
    check_listed(&listed)?;
    println!("{}", describe_operation(&listed.proposal));
    println!(
        "Waiting for {} approval(s): each holder runs `keyceremony approve … {}` and checks the digest.",
        listed.approvals_needed, listed.proposal.id
    );
    println!("{}", listed.proposal.id);
    Ok(())
}

fn run_pending(args: PendingArgs) -> Result<(), Failure> {
    let listed = exchange(
        args.server.endpoint(),
        |mut c| async move { c.pending().await },
    )?;
    for p in &listed {
        check_listed(p)?;
        println!(
            "{}",
            serde_json::to_string(p).context("cannot write the operation")?
        );
    }
    Ok(())
}

fn run_approve(args: ApproveArgs) -> Result<(), Failure> {
    let endpoint = args.server.endpoint();
    let id = args.id.clone();
    let listed = exchange(endpoint.clone(), |mut c| async move { c.pending().await })?;
    let Some(p) = listed.into_iter().find(|p| p.proposal.id == id) else {
        return Err(Failure::refused(anyhow!(
            "no pending operation {id} (unknown, already run, cancelled or expired): \
             `keyceremony pending` lists those waiting"
        )));
    };
    check_listed(&p)?;
    eprintln!("{}", describe_operation(&p.proposal));
    eprintln!(
        "  approved by: {} ({} more needed)",
        if p.approved_by.is_empty() {
            "nobody yet".to_owned()
        } else {
            p.approved_by.join(", ")
        },
        p.approvals_needed
    );
    if !args.yes && !confirm("Approve this operation with your share? Type yes: ")? {
        return Err(Failure::refused(anyhow!("not approved")));
    }
    let share = open_share(&args.share, args.passphrase_file.as_deref())?;
    if share.ceremony_id().to_string() != p.proposal.ceremony_id {
        return Err(Failure::refused(anyhow!(
            "this share belongs to ceremony {}, the operation to {}",
            share.ceremony_id(),
            p.proposal.ceremony_id
        )));
    }
    let approval = seal::Approval {
        digest: p.proposal.digest(),
        share,
    };
    let reply = exchange(
        endpoint,
        |mut c| async move { c.approve(&id, &approval).await },
    )?;
    if reply.executed {
        println!(
            "approval of {} accepted; the quorum is complete and operation {} ran \
             (the service is now in generation {})",
            reply.holder,
            reply.operation,
            reply
                .generation
                .map_or_else(|| "unknown".to_owned(), |g| g.to_string())
        );
    } else {
        println!(
            "approval of {} accepted for operation {}: {} more approval(s) needed",
            reply.holder, reply.operation, reply.approvals_needed
        );
    }
    Ok(())
}

/// Asks on the terminal; anything but `yes` is a no.
fn confirm(question: &str) -> Result<bool, Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(Failure::error(anyhow!(
            "confirmation needs a terminal: run this interactively, or pass --yes after \
             checking the operation with `keyceremony pending`"
        )));
    }
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok(line.trim() == "yes")
}

fn run_cancel(args: CancelArgs) -> Result<(), Failure> {
    let id = args.id;
    let p = exchange(args.server.endpoint(), |mut c| async move {
        c.cancel(&id).await
    })?;
    println!("operation {} ({}) cancelled", p.id, p.operation.kind());
    Ok(())
}

//! `cstatns demo`: the whole path in one go, on a throw-away deployment —
//! dev-env, serve on 127.0.0.1, unseal with `t` holders, submit a batch of
//! synthetic NIRs, print one JSON summary line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::batch::Operation;
use crate::client::{self, Endpoint, InputType, Submission};
use crate::config::Config;
use crate::devenv;
use crate::seal::{Passphrase, Share};
use crate::server::Server;

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep the deployment here instead of a temporary directory.
    pub dir: Option<PathBuf>,
    /// Synthetic records to generate when no input is given.
    pub records: u64,
    /// A batch file to submit instead.
    pub input: Option<PathBuf>,
    /// Where the answer goes (default: inside the deployment).
    pub output: Option<PathBuf>,
    /// `K_1` to import into the ceremony.
    pub import_key: Option<PathBuf>,
    /// `n`.
    pub holders: usize,
    /// `t`.
    pub threshold: usize,
    /// Show progress on stderr.
    pub progress: bool,
    /// Send identity traits (DESIGN §7) instead of NIRs: a synthetic
    /// register of this many people is made and loaded, and `records` of
    /// them (at most all) are looked up, respelt and with errors.
    pub traits: Option<u64>,
}

/// The last line of the demo.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Lines answered.
    pub records: u64,
    /// Lines answered `ok`.
    pub ok: u64,
    /// Lines refused.
    pub rejected: u64,
    /// Generation of the codes.
    pub generation: u32,
    /// Wall time of the submission.
    pub seconds: f64,
    /// `records / seconds`.
    pub records_per_second: f64,
    /// A trait batch: its `ok` lines per quality of the look-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::identity::lines::Qualities>,
}

/// Writes `n` synthetic lines (`index,nir`): valid NIRs with their key, and
/// one line in 10,000 with a wrong key so that refusals show too.
pub fn write_synthetic_csv(path: &std::path::Path, n: u64) -> std::io::Result<()> {
    let f = client::create_private(path).map_err(std::io::Error::other)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    w.write_all(b"index,nir\n")?;
    for i in 0..n {
        let nir = crate::nir::synthetic(i);
        let mut full = nir.with_key();
        if i % 10_000 == 9_999 {
            full[14] = if full[14] == b'0' { b'1' } else { b'0' };
        }
        write!(w, "R{i},")?;
        w.write_all(&full)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Runs the demo.
pub async fn run(opts: Options) -> anyhow::Result<Summary> {
    let temp;
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("cstatns-demo-").tempdir()?;
            temp.path().join("deployment")
        }
    };
    let say = |m: &str| {
        if opts.progress {
            eprintln!("demo: {m}");
        }
    };
    say(&format!(
        "creating a throw-away deployment in {}",
        dir.display()
    ));
    let env = devenv::create(&devenv::Options {
        dir: dir.clone(),
        holders: opts.holders,
        threshold: opts.threshold,
        generations: 1,
        import_key: opts.import_key.clone(),
    })?;
    let mut config = Config::load(&env.config)?;
    let mut traits_input = None;
    if let Some(people) = opts.traits {
        let csv = env.dir.join("register.csv");
        let batch = env.dir.join("demo-traits.csv");
        say(&format!(
            "writing a synthetic register of {people} people, and a trait batch of about {} of them",
            opts.records.min(people)
        ));
        crate::identity::synth::write_files(people, 1, &csv, Some((&batch, opts.records)))
            .context("writing the synthetic register")?;
        let db = env.dir.join("register.db");
        let loaded = crate::identity::store::load(std::fs::File::open(&csv)?, &db, &mut |_| {})?;
        say(&format!(
            "{} people loaded into {}",
            loaded.people,
            db.display()
        ));
        std::fs::remove_file(&csv)?;
        config.register = Some(db);
        traits_input = Some(batch);
    }
    let server = Server::bind(config, Some("127.0.0.1:0")).await?;
    let addr = server.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    let url = format!("https://127.0.0.1:{}", addr.port());
    say(&format!("serving on {url} (sealed)"));

    let endpoint = |role: &str| Endpoint {
        server: url.clone(),
        ca: env.pki.ca(),
        cert: env.pki.cert(role),
        key: env.pki.key(role),
        crl: None,
    };
    for i in 1..=env.threshold {
        let pass = Passphrase::from_file(env.pass(i))?;
        let bytes = std::fs::read(env.share(i))?;
        let share = Share::decrypt_file_bytes(&bytes, &pass)?;
        let reply = endpoint(&crate::pki::holder_role(i))
            .connect()
            .await?
            .unseal(&share)
            .await?;
        say(&format!(
            "holder-{i} unsealed: {}",
            if reply.sealed {
                format!("{} more needed", reply.holders_needed)
            } else {
                "service unsealed".into()
            }
        ));
    }

    let input = match (&opts.input, traits_input) {
        (Some(p), _) => p.clone(),
        (None, Some(t)) => t,
        (None, None) => {
            let p = env.dir.join("demo-input.csv");
            say(&format!("writing {} synthetic records", opts.records));
            write_synthetic_csv(&p, opts.records).context("writing the synthetic batch")?;
            p
        }
    };
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| env.dir.join("demo-output.csv"));
    let bar = opts.progress.then(|| {
        crate::client::progress_bar(std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0))
    });
    let clock = Instant::now();
    let receipt = client::submit(
        &endpoint(crate::pki::SUBMITTER),
        Submission {
            operation: Operation::Derive,
            input: &input,
            input_type: InputType::guess(&input),
            output: &output,
            purpose: None,
            project: None,
            progress: bar
                .clone()
                .map(|b| Box::new(move |n| b.set_position(n)) as Box<dyn Fn(u64) + Send + Sync>),
        },
    )
    .await?;
    let seconds = clock.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    say(&format!("receipt: {}", serde_json::to_string(&receipt)?));
    let _ = stop_tx.send(());
    serving.await??;
    Ok(Summary {
        records: receipt.records,
        ok: receipt.ok,
        rejected: receipt.rejected,
        generation: receipt.generation,
        seconds,
        records_per_second: receipt.records as f64 / seconds.max(1e-9),
        quality: receipt.quality,
    })
}

//! Shared parts of the key-operation tests: a throw-away deployment, the
//! real service in this process on 127.0.0.1, the real `keyceremony`
//! binary, and independent checks (Python's `hmac`, `hashlib`).

#![allow(dead_code)]
// each test binary uses its own subset
// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cstatns::batch::Operation as BatchOperation;
use cstatns::client::{Endpoint, InputType, Submission};
use cstatns::config::Config;
use cstatns::devenv::{self, DevEnv};
use cstatns::seal::{self, CeremonyRecord, Passphrase, SealedKeyring, Share};
use cstatns::server::Server;

/// `K_1`, imported so that the test knows every key but the renewed ones.
pub const K1_HEX: &str = "5a1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddee077";

pub fn keyceremony(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyceremony"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run keyceremony")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn p(x: PathBuf) -> String {
    x.display().to_string()
}

/// A 3-holder, 2-of-3 throw-away deployment with `K_1` imported.
pub fn deployment(dir: &Path) -> DevEnv {
    let k1 = dir.join("k1.hex");
    std::fs::write(&k1, format!("{K1_HEX}\n")).unwrap();
    devenv::create(&devenv::Options {
        dir: dir.join("d"),
        holders: 3,
        threshold: 2,
        generations: 1,
        import_key: Some(k1),
    })
    .unwrap()
}

/// The real service, in this process, on a free port of 127.0.0.1.
pub struct Service {
    pub rt: tokio::runtime::Runtime,
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<Result<(), cstatns::server::StartError>>>,
}

impl Service {
    pub fn start(env: &DevEnv, tune: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::load(&env.config).unwrap();
        tune(&mut config);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt
            .block_on(Server::bind(config, Some("127.0.0.1:0")))
            .unwrap();
        let url = format!("https://127.0.0.1:{}", server.local_addr().unwrap().port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = rt.spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            rt,
            url,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    pub fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.rt
            .block_on(self.serving.take().unwrap())
            .unwrap()
            .unwrap();
    }

    pub fn endpoint(&self, env: &DevEnv, role: &str) -> Endpoint {
        Endpoint {
            server: self.url.clone(),
            ca: env.pki.ca(),
            cert: env.pki.cert(role),
            key: env.pki.key(role),
            crl: None,
        }
    }

    pub fn status(&self, env: &DevEnv) -> cstatns::server::Status {
        let e = self.endpoint(env, cstatns::pki::OPERATOR);
        self.rt
            .block_on(async { e.connect().await?.status().await })
            .unwrap()
    }

    /// `--server --ca --cert --key` for `role`.
    pub fn args(&self, env: &DevEnv, role: &str) -> Vec<String> {
        vec![
            "--server".into(),
            self.url.clone(),
            "--ca".into(),
            p(env.pki.ca()),
            "--cert".into(),
            p(env.pki.cert(role)),
            "--key".into(),
            p(env.pki.key(role)),
        ]
    }

    pub fn run(&self, env: &DevEnv, sub: &str, role: &str, rest: &[&str]) -> Output {
        let mut args = vec![sub.to_owned()];
        args.extend(self.args(env, role));
        args.extend(rest.iter().map(|s| (*s).to_owned()));
        keyceremony(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn unseal(&self, env: &DevEnv, holders: &[usize]) {
        for &i in holders {
            let role = format!("holder-{i}");
            let share = p(env.share(i));
            let pass = p(env.pass(i));
            let o = self.run(
                env,
                "unseal",
                &role,
                &["--share", &share, "--passphrase-file", &pass],
            );
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        }
    }

    /// `keyceremony propose renew` as `role`; the operation id.
    pub fn propose_renew(&self, env: &DevEnv, role: &str) -> String {
        let o = self.run(env, "propose", role, &["renew"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        assert!(out.contains("digest:"), "{out}");
        out.lines().last().unwrap().to_owned()
    }

    /// `keyceremony approve --yes ID` with holder `share_of`'s share, sent
    /// over holder `cert_of`'s certificate.
    pub fn approve(&self, env: &DevEnv, id: &str, cert_of: usize, share_of: usize) -> Output {
        let share = p(env.share(share_of));
        let pass = p(env.pass(share_of));
        self.run(
            env,
            "approve",
            &format!("holder-{cert_of}"),
            &["--share", &share, "--passphrase-file", &pass, "--yes", id],
        )
    }

    /// `keyceremony pending` as `role`, one JSON object a line.
    pub fn pending(&self, env: &DevEnv, role: &str) -> Vec<serde_json::Value> {
        self.pending_lines(env, role)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn pending_lines(&self, env: &DevEnv, role: &str) -> Vec<String> {
        let o = self.run(env, "pending", role, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Submits `input` (CSV) to research project `project` as the
    /// submitter: the answer's text and the receipt, or the refusal.
    pub fn submit_project(
        &self,
        env: &DevEnv,
        project: &str,
        input: &str,
    ) -> Result<(String, cstatns::receipt::Receipt), cstatns::client::ClientError> {
        let dir = tempfile::tempdir().unwrap();
        let (inp, out) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
        std::fs::write(&inp, input).unwrap();
        let e = self.endpoint(env, cstatns::pki::SUBMITTER);
        let receipt = self.rt.block_on(cstatns::client::submit(
            &e,
            Submission {
                operation: BatchOperation::Derive,
                input: &inp,
                input_type: InputType::Csv,
                output: &out,
                purpose: None,
                project: Some(project),
                progress: None,
            },
        ))?;
        Ok((std::fs::read_to_string(&out).unwrap(), receipt))
    }

    /// Submits `input` (CSV) with the library client as the submitter;
    /// the answer's text and the receipt's generation.
    pub fn submit(&self, env: &DevEnv, op: BatchOperation, input: &str) -> (String, u32) {
        let dir = tempfile::tempdir().unwrap();
        let (inp, out) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
        std::fs::write(&inp, input).unwrap();
        let e = self.endpoint(env, cstatns::pki::SUBMITTER);
        let receipt = self
            .rt
            .block_on(cstatns::client::submit(
                &e,
                Submission {
                    operation: op,
                    input: &inp,
                    input_type: InputType::Csv,
                    output: &out,
                    purpose: Some(devenv::DEV_PURPOSE),
                    project: None,
                    progress: None,
                },
            ))
            .unwrap();
        (std::fs::read_to_string(&out).unwrap(), receipt.generation)
    }
}

pub fn share(env: &DevEnv, i: usize) -> Share {
    let pass = Passphrase::from_file(env.pass(i)).unwrap();
    Share::decrypt_file_bytes(&std::fs::read(env.share(i)).unwrap(), &pass).unwrap()
}

pub fn records(env: &DevEnv) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.dir.join("audit").join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn of_event<'a>(all: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|r| r["event"] == event).collect()
}

/// The generation keys in the keyring file, opened here with two shares.
pub fn keys_on_disk(env: &DevEnv) -> Vec<String> {
    let config = Config::load(&env.config).unwrap();
    let record = CeremonyRecord::from_json(&std::fs::read(&config.ceremony).unwrap()).unwrap();
    let sealed = SealedKeyring::from_json(&std::fs::read(&config.keyring).unwrap()).unwrap();
    let master = seal::combine(&record, &[share(env, 1), share(env, 3)]).unwrap();
    let keyring = record.open_keyring(&sealed, &master).unwrap();
    keyring
        .generations
        .iter()
        .map(|k| hex::encode(k.expose()))
        .collect()
}

/// The digest of the proposal in a `pending` line, as docs/key-operations.md
/// says any tool computes it: here Python's `json` and `hashlib`.
pub fn python_digest(pending_line: &str) -> String {
    let script = r#"
import hashlib, json, sys
p = json.loads(sys.stdin.read())["proposal"]
m = b"cstatns operation v1\n" + json.dumps(p, separators=(",", ":")).encode()
print(hashlib.sha256(m).hexdigest())
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), pending_line.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// For each body, `C_1 … C_G` in hex, computed by Python's `hmac` module.
pub fn python_chain(keys: &[String], bodies: &[String]) -> Vec<Vec<String>> {
    let script = r#"
import hmac, hashlib, sys
lines = sys.stdin.read().split("\n")
keys = [bytes.fromhex(k) for k in lines[0].split()]
for body in lines[1:]:
    if not body:
        continue
    code, out = body.encode("ascii"), []
    for k in keys:
        code = hmac.new(k, code, hashlib.sha256).digest()
        out.append(code.hex())
    print(" ".join(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (the independent HMAC)");
    let input = format!("{}\n{}\n", keys.join(" "), bodies.join("\n"));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect()
}

pub fn codes_of(answer: &str) -> Vec<(String, String)> {
    answer
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[2], "ok", "{l}");
            (f[0].to_owned(), f[1].to_owned())
        })
        .collect()
}

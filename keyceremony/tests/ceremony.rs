//! The holders' tool on real files and against the real service: `init`
//! writes a ceremony from real certificates, `verify-share` checks shares
//! offline, `unseal` sends them over mutual TLS with each holder's own
//! certificate.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cstatns::config::Config;
use cstatns::devenv;
use cstatns::server::Server;

fn keyceremony(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyceremony"))
        .args(args)
        .output()
        .expect("run keyceremony")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A ceremony written by the real `init` for holders with real dev certificates.
fn ceremony(dir: &Path, holders: usize, t: usize) -> PathBuf {
    let pki = cstatns::pki::write_dev_pki(dir, holders).unwrap();
    let pass = dir.join("pass");
    std::fs::create_dir(&pass).unwrap();
    let out = dir.join("ceremony");
    let mut args = vec!["init".to_owned(), "--out".into(), out.display().to_string()];
    args.extend(["--threshold".into(), t.to_string()]);
    for i in 1..=holders {
        let name = format!("holder-{i}");
        std::fs::write(
            pass.join(format!("{name}.pass")),
            format!("passphrase of {name}\n"),
        )
        .unwrap();
        args.push("--holder".into());
        args.push(format!("{name}={}", pki.cert(&name).display()));
    }
    args.extend(["--passphrase-dir".into(), pass.display().to_string()]);
    let o = keyceremony(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    out
}

fn verify(out: &Path, record: &Path, holder: &str, pass_dir: &Path) -> Output {
    keyceremony(&[
        "verify-share",
        "--record",
        record.to_str().unwrap(),
        "--share",
        out.join(format!("shares/{holder}.share")).to_str().unwrap(),
        "--passphrase-file",
        pass_dir.join(format!("{holder}.pass")).to_str().unwrap(),
    ])
}

#[test]
fn init_writes_private_files_and_each_share_verifies_offline() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = ceremony(tmp.path(), 3, 2);
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(out.join("keyring.json")), 0o600);
    assert_eq!(mode(out.join("shares/holder-1.share")), 0o600);
    let record = out.join("ceremony.json");
    for i in 1..=3 {
        let o = verify(
            &out,
            &record,
            &format!("holder-{i}"),
            &tmp.path().join("pass"),
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains(&format!("share of holder-{i} verified")));
    }
    // init never overwrites a ceremony.
    let again = keyceremony(&[
        "init",
        "--out",
        out.to_str().unwrap(),
        "--threshold",
        "2",
        "--holder",
        &format!("holder-1={}", tmp.path().join("pki/holder-1.pem").display()),
        "--holder",
        &format!("holder-2={}", tmp.path().join("pki/holder-2.pem").display()),
        "--passphrase-dir",
        tmp.path().join("pass").to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
}

#[test]
fn verify_share_refuses_another_ceremony_and_a_wrong_passphrase() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let out_a = ceremony(a.path(), 2, 2);
    let out_b = ceremony(b.path(), 2, 2);
    // A's share against B's record: refused (exit 1), holder named.
    let o = verify(
        &out_a,
        &out_b.join("ceremony.json"),
        "holder-1",
        &a.path().join("pass"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("holder-1"));
    // Wrong passphrase: exit 2.
    let wrong = a.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    std::fs::write(wrong.join("holder-1.pass"), "not the passphrase\n").unwrap();
    let o = verify(&out_a, &out_a.join("ceremony.json"), "holder-1", &wrong);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // An edited record fails its signature: exit 1.
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_a.join("ceremony.json")).unwrap()).unwrap();
    rec["created"] = "2020-01-01T00:00:00Z".into();
    let edited = a.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_vec(&rec).unwrap()).unwrap();
    let o = verify(&out_a, &edited, "holder-1", &a.path().join("pass"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

fn unseal(env: &devenv::DevEnv, url: &str, cert_of: usize, share_of: usize) -> Output {
    let p = |x: PathBuf| x.display().to_string();
    keyceremony(&[
        "unseal",
        "--server",
        url,
        "--ca",
        &p(env.pki.ca()),
        "--cert",
        &p(env.pki.cert(&format!("holder-{cert_of}"))),
        "--key",
        &p(env.pki.key(&format!("holder-{cert_of}"))),
        "--share",
        &p(env.share(share_of)),
        "--passphrase-file",
        &p(env.pass(share_of)),
    ])
}

#[test]
fn unseal_over_mutual_tls_with_each_holders_own_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let env = devenv::create(&devenv::Options {
        dir: tmp.path().join("d"),
        holders: 3,
        threshold: 2,
        generations: 1,
        import_key: None,
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(Server::bind(
            Config::load(&env.config).unwrap(),
            Some("127.0.0.1:0"),
        ))
        .unwrap();
    let url = format!("https://127.0.0.1:{}", server.local_addr().unwrap().port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(server.run(async {
        let _ = stopped.await;
    }));

    // holder-2's share over holder-1's certificate: refused, both named.
    let o = unseal(&env, &url, 1, 2);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("holder-2") && text(&o).contains("holder-1"),
        "{}",
        text(&o)
    );

    let o = unseal(&env, &url, 1, 1);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("1 more share"), "{}", text(&o));
    // The same share twice: refused, still sealed.
    let o = unseal(&env, &url, 1, 1);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = unseal(&env, &url, 3, 3);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("unsealed (generation 1)"), "{}", text(&o));

    // Unreachable service: exit 2.
    let o = unseal(&env, "https://127.0.0.1:1", 2, 2);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let _ = stop.send(());
    rt.block_on(serving).unwrap().unwrap();
}

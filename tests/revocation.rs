//! Revocation and reload: a CRL refuses a revoked client at the handshake
//! and lets a client refuse a revoked service; the CRL, the certificates and
//! the client table are read again on `SIGHUP`, without a restart, and a
//! reload that would not start is refused whole. Real `cstatns serve`, real
//! dev-env certificates, real CRLs signed by the dev CA.

mod common;

use common::{hangup, set_crl, ClientIdentity, TestEnv};
use cstatns::pki::{AUDITOR, OPERATOR, SERVER, SUBMITTER};

async fn get_status(
    env: &TestEnv,
    server: &common::ServerProcess,
    role: &str,
) -> Result<u16, String> {
    let who = ClientIdentity::Cert {
        cert: env.cert(role),
        key: env.key(role),
    };
    common::https(server, &env.ca(), &who, "GET", "/v1/status", &[], "")
        .await
        .map(|r| r.status)
}

fn count(env: &TestEnv, event: &str) -> usize {
    env.audit_records()
        .iter()
        .filter(|r| r["event"] == event)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_read_on_sighup_refuses_the_revoked_client_and_a_bad_reload_changes_nothing() {
    let env = TestEnv::new();
    let pki = env.env.pki.dir().to_path_buf();
    let server = env.serve();
    assert_eq!(get_status(&env, &server, AUDITOR).await, Ok(200));

    // The CA revokes the auditor's certificate; the operator points the
    // service at the CRL and sends SIGHUP.
    cstatns::pki::write_dev_crl(&pki, &[AUDITOR], &pki.join("crl.pem")).expect("CRL");
    set_crl(&env, "pki/crl.pem");
    hangup(server.pid());
    env.wait_for_audit("config_reloaded", |r| r["event"] == "config_reloaded");
    let reloaded = env
        .audit_records()
        .into_iter()
        .rfind(|r| r["event"] == "config_reloaded")
        .expect("reloaded");
    assert_eq!(
        reloaded["details"]["crl_sha256"].as_str().map(str::len),
        Some(64),
        "{reloaded}"
    );
    let refused = get_status(&env, &server, AUDITOR).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("AlertReceived")),
        "a revoked client is refused at the handshake: {refused:?}"
    );
    assert_eq!(get_status(&env, &server, OPERATOR).await, Ok(200));
    assert_eq!(get_status(&env, &server, SUBMITTER).await, Ok(200));

    // A reload the service would refuse at start (a CRL file that is not
    // one) is refused whole, logged, and the CRL in force stays.
    std::fs::write(pki.join("broken.pem"), "not a CRL\n").expect("write");
    set_crl(&env, "pki/broken.pem");
    let before = count(&env, "config_reload_refused");
    hangup(server.pid());
    env.wait_for_audit("config_reload_refused", |_| {
        count(&env, "config_reload_refused") > before
    });
    assert!(get_status(&env, &server, AUDITOR).await.is_err());
    assert_eq!(get_status(&env, &server, OPERATOR).await, Ok(200));

    // A new CRL that revokes nothing lets the auditor back in, again
    // without a restart.
    cstatns::pki::write_dev_crl(&pki, &[], &pki.join("crl.pem")).expect("CRL");
    set_crl(&env, "pki/crl.pem");
    let before = count(&env, "config_reloaded");
    hangup(server.pid());
    env.wait_for_audit("second config_reloaded", |_| {
        count(&env, "config_reloaded") > before
    });
    assert_eq!(get_status(&env, &server, AUDITOR).await, Ok(200));
    let stderr = server.stderr_text();
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
}

/// A connection opened before the reload does not outlive its
/// certificate's revocation: its next request is refused (403, logged) and
/// the connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_before_a_revocation_is_refused_after_the_reload() {
    let env = TestEnv::new();
    let pki = env.env.pki.dir().to_path_buf();
    let server = env.serve();
    let mut auditor = env
        .endpoint(&server, AUDITOR)
        .connect()
        .await
        .expect("connect");
    auditor
        .status()
        .await
        .expect("status on the open connection");
    cstatns::pki::write_dev_crl(&pki, &[AUDITOR], &pki.join("crl.pem")).expect("CRL");
    set_crl(&env, "pki/crl.pem");
    hangup(server.pid());
    env.wait_for_audit("config_reloaded", |r| r["event"] == "config_reloaded");
    let err = auditor
        .status()
        .await
        .expect_err("refused on the connection opened before the revocation");
    assert!(err.to_string().contains("no longer accepted"), "{err}");
    assert!(env.audit_records().iter().any(|r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "certificate_no_longer_valid"
    }));
    // The operator's connection, opened the same way, goes on.
    let mut operator = env
        .endpoint(&server, OPERATOR)
        .connect()
        .await
        .expect("connect");
    operator.status().await.expect("status");
}

/// A CRL the service cannot rely on is refused at start and on reload: one
/// past its next update, one issued by another CA than the client CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_date_crl_or_one_of_another_ca_is_refused() {
    let env = TestEnv::new();
    let pki = env.env.pki.dir().to_path_buf();
    let server = env.serve();
    cstatns::pki::write_dev_crl_until(&pki, &[], &pki.join("old.pem"), -1).expect("CRL");
    set_crl(&env, "pki/old.pem");
    hangup(server.pid());
    let refused = env.wait_for_audit("refused", |r| r["event"] == "config_reload_refused");
    let reason = refused["details"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("past its next update"), "{reason}");
    // A CRL of the dev CA, named with another client CA.
    cstatns::pki::write_dev_crl(&pki, &[], &pki.join("crl.pem")).expect("CRL");
    set_crl(&env, "pki/crl.pem");
    let text = std::fs::read_to_string(&env.env.config).expect("server.toml");
    std::fs::write(
        &env.env.config,
        text.replace("pki/ca.pem", "pki/stranger-ca.pem"),
    )
    .expect("write");
    hangup(server.pid());
    env.wait_for_audit("second refusal", |_| {
        count(&env, "config_reload_refused") == 2
    });
    let last = env
        .audit_records()
        .into_iter()
        .rfind(|r| r["event"] == "config_reload_refused")
        .expect("refusal");
    let reason = last["details"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not the CA of"), "{reason}");
    // Neither took effect.
    assert_eq!(get_status(&env, &server, AUDITOR).await, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_table_is_read_again_on_sighup() {
    let env = TestEnv::new();
    let server = env.serve();
    assert_eq!(get_status(&env, &server, AUDITOR).await, Ok(200));
    // The auditor's entry is removed: its certificate still chains to the
    // CA, but no role is left to it.
    let text = std::fs::read_to_string(&env.env.config).expect("server.toml");
    let mut doc: toml::Table = toml::from_str(&text).expect("TOML");
    doc.get_mut("client")
        .and_then(toml::Value::as_array_mut)
        .expect("[[client]]")
        .retain(|c| c.get("name").and_then(toml::Value::as_str) != Some(AUDITOR));
    std::fs::write(&env.env.config, toml::to_string_pretty(&doc).expect("TOML")).expect("write");
    hangup(server.pid());
    env.wait_for_audit("config_reloaded", |r| r["event"] == "config_reloaded");
    assert_eq!(get_status(&env, &server, AUDITOR).await, Ok(403));
    assert_eq!(get_status(&env, &server, OPERATOR).await, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_the_crl_refuses_a_revoked_service() {
    let env = TestEnv::new();
    let pki = env.env.pki.dir().to_path_buf();
    let server = env.serve();
    let mut endpoint = env.endpoint(&server, OPERATOR);
    endpoint.crl = Some(pki.join("crl.pem"));
    cstatns::pki::write_dev_crl(&pki, &[], &pki.join("crl.pem")).expect("CRL");
    let mut c = endpoint.connect().await.expect("a service not revoked");
    c.status().await.expect("status");
    cstatns::pki::write_dev_crl(&pki, &[SERVER], &pki.join("crl.pem")).expect("CRL");
    let err = match endpoint.connect().await {
        Ok(mut c) => c.status().await.map(drop),
        Err(e) => Err(e),
    }
    .expect_err("a revoked service is refused");
    let text = err.to_string();
    assert!(text.to_lowercase().contains("revoked"), "{text}");
}

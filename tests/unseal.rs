//! Unsealing the real service with real share files, each sent over its
//! holder's own certificate; refused shares name their holder and never
//! cost the valid shares already received.

mod common;

use common::{timed, EnvOptions, TestEnv};
use cstatns::client::ClientError;
use cstatns::pki::holder_role;

/// Sends a share with the library client over `role`'s certificate.
async fn send_share(
    env: &TestEnv,
    server: &common::ServerProcess,
    role: &str,
    share: &cstatns::seal::Share,
) -> Result<cstatns::server::UnsealReply, ClientError> {
    let mut conn = timed("connect", env.endpoint(server, role).connect())
        .await
        .expect("connect");
    timed("unseal", conn.unseal(share)).await
}

fn refused(r: Result<cstatns::server::UnsealReply, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Refused {
            status,
            code,
            message,
        }) => (status, code, message),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(reply) => panic!("expected a refusal, the share was accepted: {reply:?}"),
    }
}

/// Holder-1's wire message with one hex digit of `value` changed: well formed,
/// but not the holder's share.
fn tampered_wire(env: &TestEnv) -> String {
    let wire = env.share(1).to_wire_json();
    let mut v: serde_json::Value = serde_json::from_str(&wire).expect("share wire JSON");
    let value = v["value"].as_str().expect("value").to_owned();
    assert_eq!(value.len(), 64);
    let mut bytes = value.into_bytes();
    // A low digit: the value stays a canonical nonzero scalar.
    bytes[63] = if bytes[63] == b'0' { b'1' } else { b'0' };
    v["value"] = serde_json::Value::String(String::from_utf8(bytes).expect("ASCII hex"));
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_shares_name_their_holder_and_keep_the_valid_ones() {
    let env = TestEnv::new();
    let other = TestEnv::with(EnvOptions::default()); // another ceremony
    let server = env.serve();
    let h1 = holder_role(1);

    // A first valid share is accepted and counted.
    let reply = send_share(&env, &server, &holder_role(3), &env.share(3))
        .await
        .expect("holder-3 accepted");
    assert!(reply.sealed);
    assert_eq!(
        (reply.holder.as_str(), reply.holders_needed),
        ("holder-3", 2)
    );

    // A share from another ceremony, sent by the right person: 422 naming holder-1.
    let (status, code, message) = refused(send_share(&env, &server, &h1, &other.share(1)).await);
    assert_eq!((status, code.as_str()), (422, "share_refused"), "{message}");
    assert!(message.contains("holder-1"), "{message}");

    // Holder-2's share sent with holder-1's certificate: 403 naming both.
    let (status, code, message) = refused(send_share(&env, &server, &h1, &env.share(2)).await);
    assert_eq!(
        (status, code.as_str()),
        (403, "wrong_holder_certificate"),
        "{message}"
    );
    assert!(
        message.contains("holder-1") && message.contains("holder-2"),
        "{message}"
    );

    // A tampered share (its value altered): 422 naming holder-1, and the
    // message holds no share value.
    let wire = tampered_wire(&env);
    let r = env
        .request(
            &server,
            &h1,
            "POST",
            "/v1/unseal",
            &[("content-type", "application/json")],
            wire.clone(),
        )
        .await;
    let (status, code, message) = r.refusal();
    assert_eq!((status, code.as_str()), (422, "share_refused"), "{message}");
    assert!(message.contains("holder-1"), "{message}");
    let value = serde_json::from_str::<serde_json::Value>(&wire).unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!r.text().contains(&value[..16]));

    // Still sealed, holder-3's share kept.
    let status = env.status(&server).await;
    assert!(status.sealed);
    assert_eq!(status.generation, None);
    assert_eq!(status.holders_received, vec!["holder-3".to_owned()]);
    assert_eq!(status.holders_needed, 2);

    // Holder-1's real share, then a duplicate of it: 409.
    send_share(&env, &server, &h1, &env.share(1))
        .await
        .expect("holder-1 accepted");
    let (status, code, _) = refused(send_share(&env, &server, &h1, &env.share(1)).await);
    assert_eq!((status, code.as_str()), (409, "conflict"));
    let st = env.status(&server).await;
    assert!(st.sealed);
    assert_eq!(
        st.holders_received,
        vec!["holder-3".to_owned(), "holder-1".to_owned()]
    );

    // The t-th valid share unseals.
    let reply = send_share(&env, &server, &holder_role(5), &env.share(5))
        .await
        .expect("holder-5 accepted");
    assert!(!reply.sealed);
    assert_eq!(reply.generation, Some(1));
    let st = env.status(&server).await;
    assert!(!st.sealed);
    assert_eq!(st.generation, Some(1));
    assert_eq!(st.holders_needed, 0);
    assert!(st.holders_received.is_empty());

    // Once unsealed, a further share is a conflict.
    let (status, code, _) =
        refused(send_share(&env, &server, &holder_role(2), &env.share(2)).await);
    assert_eq!((status, code.as_str()), (409, "conflict"));

    // Every share submitted is in the log, valid or not, with its holder.
    let records = env.audit_records();
    let shares: Vec<(String, bool)> = records
        .iter()
        .filter(|r| r["event"] == "share_submitted")
        .map(|r| {
            (
                r["details"]["holder"].as_str().unwrap_or("").to_owned(),
                r["details"]["valid"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shares,
        [
            ("holder-3", true),
            ("holder-1", false),
            ("holder-2", false),
            ("holder-1", false),
            ("holder-1", true),
            ("holder-1", false),
            ("holder-5", true),
            ("holder-2", false),
        ]
        .map(|(h, v)| (h.to_owned(), v))
    );
    let unseal = records
        .iter()
        .find(|r| r["event"] == "unseal")
        .expect("unseal record");
    assert_eq!(unseal["details"]["generation"], 1);
    // No share value in the log.
    let audit = env.audit_text();
    for i in 1..=5 {
        let wire = env.share(i).to_wire_json();
        let v: serde_json::Value = serde_json::from_str(&wire).unwrap();
        assert!(
            !audit.contains(v["value"].as_str().unwrap()),
            "share value of holder-{i} in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_from_a_non_holder_certificate_is_403() {
    let env = TestEnv::new();
    let server = env.serve();
    // The submitter has no holder role.
    let (status, code, _) =
        refused(send_share(&env, &server, cstatns::pki::SUBMITTER, &env.share(1)).await);
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    // Garbage is not a share.
    let r = env
        .request(
            &server,
            &holder_role(1),
            "POST",
            "/v1/unseal",
            &[("content-type", "application/json")],
            "{\"x\":1}",
        )
        .await;
    assert_eq!(r.refusal().0, 400);
    assert!(env.status(&server).await.sealed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_t_holders_unseal_in_any_order() {
    let env = TestEnv::with(EnvOptions {
        holders: 4,
        threshold: 2,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal_with(&server, &[4, 2]).await;
    let st = env.status(&server).await;
    assert!(!st.sealed);
    assert_eq!(st.generation, Some(1));
}

/// Regression guard: `POST /v1/unseal` once read up to 2 MB of body before
/// checking the role. A certificate without the holder role is refused
/// while its body is still coming (it never ends here), and a holder's body
/// larger than a share is refused 413 without being read whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_checks_the_role_before_reading_and_bounds_the_body() {
    let env = TestEnv::new();
    let server = env.serve();
    let ca = env.ca();
    let submitter = common::ClientIdentity::Cert {
        cert: env.cert(cstatns::pki::SUBMITTER),
        key: env.key(cstatns::pki::SUBMITTER),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
    tx.send(bytes::Bytes::from(vec![b' '; 64 * 1024]))
        .await
        .expect("first part");
    let headers = [("content-type", "application/json")];
    let r = timed(
        "a refusal before the body ends",
        common::https_channel(&server, &ca, &submitter, "POST", "/v1/unseal", &headers, rx),
    )
    .await;
    drop(tx); // kept open until the answer came
    if let Ok(r) = r {
        assert_eq!(r.refusal().0, 403);
    }
    env.wait_for_audit("request_refused missing_role", |r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "missing_role"
    });
    let big = "x".repeat(cstatns::seal::MAX_SHARE_MESSAGE * 4);
    let r = env
        .request(
            &server,
            &holder_role(1),
            "POST",
            "/v1/unseal",
            &headers,
            big,
        )
        .await;
    assert_eq!(r.refusal().0, 413);
    assert!(env.status(&server).await.sealed);
}

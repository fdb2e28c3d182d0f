//! The service end to end: the real `cstatns serve` binary, real dev-env
//! certificates, raw HTTPS requests. Each test makes its own deployment.

mod common;

use common::{
    csv_rows, expected_c1, is_code, nir_body, nir_full, test_k1, ClientIdentity, EnvOptions,
    TestEnv,
};
use cstatns::pki::{AUDITOR, OPERATOR, STRANGER, SUBMITTER};

// ---------------------------------------------------------------------------
// 1. TLS and roles
// ---------------------------------------------------------------------------

/// The exchange got no HTTP answer because the server ended the handshake
/// with `alert` (rustls's name for it).
fn assert_refused_by_tls(got: Result<common::Reply, String>, alert: &str) {
    match got {
        Ok(r) => panic!("got an HTTP answer instead of a refused handshake: {r:?}"),
        Err(e) => assert!(
            e.contains(&format!("AlertReceived({alert})")),
            "not refused by the TLS alert {alert}: {e}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused_at_handshake() {
    let env = TestEnv::new();
    let server = env.serve();
    let got = common::https(
        &server,
        &env.ca(),
        &ClientIdentity::None,
        "GET",
        "/v1/status",
        &[],
        "",
    )
    .await;
    assert_refused_by_tls(got, "CertificateRequired");
    let refused = env.wait_for_audit("connection_refused", |r| r["event"] == "connection_refused");
    assert!(refused["actor"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused_at_handshake() {
    let env = TestEnv::new();
    let server = env.serve();
    let stranger = ClientIdentity::Cert {
        cert: env.cert(STRANGER),
        key: env.key(STRANGER),
    };
    for path in ["/v1/status", "/v1/receipts/x"] {
        let got = common::https(&server, &env.ca(), &stranger, "GET", path, &[], "").await;
        assert_refused_by_tls(got, "UnknownCA");
    }
    let got = common::https(
        &server,
        &env.ca(),
        &stranger,
        "POST",
        "/v1/cstatns",
        &[("content-type", "text/csv")],
        "index,nir\n",
    )
    .await;
    assert_refused_by_tls(got, "UnknownCA");
    // Three refusals, in one record or more (at most one per second is
    // written; the rest are counted in `refusals`).
    env.wait_for_audit("three connection_refused", |_| refusals_logged(&env) == 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditor_certificate_cannot_submit_a_batch() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let body = format!("index,nir\nA1,{}\n", nir_full(1));
    for path in ["/v1/cstatns", "/v1/renewal"] {
        let r = env
            .request(
                &server,
                AUDITOR,
                "POST",
                path,
                &[("content-type", "text/csv")],
                body.clone(),
            )
            .await;
        let (status, code, _) = r.refusal();
        assert_eq!(
            (status, code.as_str()),
            (403, "forbidden"),
            "auditor on {path}"
        );
    }
    // Nor share a holder's job.
    let wire = env.share(1).to_wire_json();
    let r = env
        .request(
            &server,
            AUDITOR,
            "POST",
            "/v1/unseal",
            &[("content-type", "application/json")],
            wire.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 403);
    env.wait_for_audit("request_refused", |r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "missing_role"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_service_answers_503_with_retry_after_and_no_code() {
    let env = TestEnv::new();
    let server = env.serve();
    let body = format!("index,nir\nIDX-1,{}\nIDX-2,{}\n", nir_full(1), nir_body(2));
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 503);
    let retry = r.header("retry-after").expect("Retry-After on 503");
    assert!(
        retry.parse::<u32>().is_ok_and(|s| s > 0),
        "Retry-After {retry:?}"
    );
    assert_eq!(r.refusal().1, "sealed");
    assert!(r.header("cstatns-batch").is_none());
    let text = r.text();
    assert!(!text.contains("IDX-1") && !text.contains(&nir_body(1)));
    assert!(
        !text
            .split(|c: char| !c.is_ascii_hexdigit())
            .any(|w| w.len() >= 64),
        "{text}"
    );
    // Renewal too.
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/renewal",
            &[("content-type", "text/csv")],
            format!("index,cstatns,generation\nA,{},1\n", "ab".repeat(32)),
        )
        .await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
}

// ---------------------------------------------------------------------------
// 3. Codes, recomputed independently
// ---------------------------------------------------------------------------

/// Input lines of several shapes, each with its index and canonical body.
fn varied_nirs() -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for seed in 0..40u64 {
        let body = nir_body(seed * 7919 + 11);
        let full = nir_full(seed * 7919 + 11);
        let raw = match seed % 4 {
            0 => full.clone(),
            1 => body.clone(),
            // Spaces anywhere.
            2 => format!(" {} {} {} ", &full[..1], &full[1..7], &full[7..]),
            _ => format!("{} {}", &body, &full[13..]),
        };
        v.push((format!("IDX-{seed:04}"), raw, body));
    }
    // The design's public vectors, Corsica included, in lower case.
    for (i, (raw, body)) in [
        ("2951099126111", "2951099126111"),
        ("295109912611193", "2951099126111"),
        ("186022a215325", "186022A215325"),
        ("186022a215325 23", "186022A215325"),
        ("2 84 05 2b 321 025", "284052B321025"),
        ("284052A321025 52", "284052A321025"),
    ]
    .into_iter()
    .enumerate()
    {
        v.push((format!("PUB-{i}"), raw.to_owned(), body.to_owned()));
    }
    v
}

async fn check_csv_codes(delimiter: char) {
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    let d = delimiter;
    let cases = varied_nirs();
    let mut body = format!("index{d}nir\n");
    for (index, raw, _) in &cases {
        body.push_str(&format!("{index}{d}{raw}\n"));
    }
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cstatns-generation"), Some("1"));
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/csv")));
    let rows = csv_rows(&r.text(), d);
    assert_eq!(rows.len(), cases.len());
    let k1 = test_k1();
    for ((index, raw, canonical), [i, code, status]) in cases.iter().zip(&rows) {
        assert_eq!(
            (i.as_str(), status.as_str()),
            (index.as_str(), "ok"),
            "input {raw:?}"
        );
        assert_eq!(
            code,
            &expected_c1(&k1, canonical.as_bytes()),
            "code of {index} ({raw:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_codes_are_hmac_sha256_of_the_canonical_body_under_k1() {
    check_csv_codes(',').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_semicolons_gets_the_same_codes_and_answers_with_semicolons() {
    check_csv_codes(';').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_codes_are_hmac_sha256_of_the_canonical_body_under_k1() {
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    let cases = varied_nirs();
    let mut body = String::new();
    for (index, raw, _) in &cases {
        body.push_str(&serde_json::json!({"index": index, "nir": raw}).to_string());
        body.push('\n');
    }
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/cstatns",
            &[("content-type", "application/x-ndjson")],
            body,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cstatns-generation"), Some("1"));
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/x-ndjson")));
    let text = r.text();
    let answers: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(answers.len(), cases.len());
    let k1 = test_k1();
    for ((index, raw, canonical), a) in cases.iter().zip(&answers) {
        let obj = a.as_object().expect("object");
        assert_eq!(obj.len(), 3, "{a}");
        assert_eq!(a["index"], index.as_str());
        assert_eq!(a["status"], "ok", "input {raw:?}");
        assert_eq!(
            a["cstatns"],
            expected_c1(&k1, canonical.as_bytes()).as_str(),
            "{index}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_applies_later_keys_to_the_previous_code() {
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        generations: 2,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    assert_eq!(env.status(&server).await.generation, Some(2));
    let k1 = test_k1();
    let seeds = [3u64, 17, 4242, 99_999];

    // Codes of generation 2, from the NIRs.
    let mut body = String::from("index,nir\n");
    for s in seeds {
        body.push_str(&format!("N{s},{}\n", nir_full(s)));
    }
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.header("cstatns-generation"), Some("2"));
    let c2: Vec<String> = csv_rows(&r.text(), ',')
        .into_iter()
        .map(|[_, code, status]| {
            assert_eq!(status, "ok");
            code
        })
        .collect();
    for (s, c) in seeds.iter().zip(&c2) {
        assert_ne!(
            c,
            &expected_c1(&k1, nir_body(*s).as_bytes()),
            "the published code is not C_1"
        );
    }

    // Renewal of C_1 (computed here) and of C_2 (unchanged), then refusals.
    let mut body = String::from("index,cstatns,generation\n");
    for s in seeds {
        body.push_str(&format!(
            "R1-{s},{},1\n",
            expected_c1(&k1, nir_body(s).as_bytes())
        ));
    }
    for (s, c) in seeds.iter().zip(&c2) {
        body.push_str(&format!("R2-{s},{c},2\n"));
    }
    let c1_upper = expected_c1(&k1, nir_body(3).as_bytes()).to_uppercase();
    body.push_str(&format!("RU,{c1_upper},1\n"));
    body.push_str(&format!("G3,{},3\n", c2[0]));
    body.push_str(&format!("G0,{},0\n", c2[0]));
    body.push_str(&format!("GX,{},x\n", c2[0]));
    body.push_str(&format!("H1,{},1\n", "zz".repeat(32)));
    body.push_str(&format!("H2,{},1\n", &c2[0][..62]));
    body.push_str(&format!("H3,{}0,1\n", c2[0]));
    body.push_str(&format!("H4,{},9\n", "zz".repeat(32))); // code before generation
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/renewal",
            &[("content-type", "text/csv")],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cstatns-generation"), Some("2"));
    let rows = csv_rows(&r.text(), ',');
    let mut want: Vec<[String; 3]> = Vec::new();
    for (s, c) in seeds.iter().zip(&c2) {
        want.push([format!("R1-{s}"), c.clone(), "ok".into()]);
    }
    for (s, c) in seeds.iter().zip(&c2) {
        want.push([format!("R2-{s}"), c.clone(), "ok".into()]);
    }
    want.push(["RU".into(), c2[0].clone(), "ok".into()]);
    for (i, st) in [
        ("G3", "invalid_generation"),
        ("G0", "invalid_generation"),
        ("GX", "invalid_generation"),
        ("H1", "invalid_code"),
        ("H2", "invalid_code"),
        ("H3", "invalid_code"),
        ("H4", "invalid_code"),
    ] {
        want.push([i.into(), String::new(), st.into()]);
    }
    assert_eq!(rows, want);
}

// ---------------------------------------------------------------------------
// 4. Per-line statuses
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_status_of_the_wire_format_through_the_real_server() {
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    let k1 = test_k1();
    let (n1, n2, n3) = (nir_full(101), nir_full(202), nir_body(303));
    let bad_key = {
        let mut k = nir_full(404).into_bytes();
        k[14] = if k[14] == b'0' { b'1' } else { b'0' };
        String::from_utf8(k).unwrap()
    };
    let long_index = "i".repeat(65);
    // (input line, expected index echo, expected status, canonical body if ok)
    let lines: Vec<(String, &str, &str, Option<String>)> = vec![
        (format!("L01,{n1}"), "L01", "ok", Some(nir_body(101))),
        (
            format!("\"L02\",\"{n2}\"\r"),
            "L02",
            "ok",
            Some(nir_body(202)),
        ), // quoted, CRLF
        (format!("L03,{n3},extra"), "L03", "malformed_line", None),
        (n1.clone(), "", "malformed_line", None), // a NIR alone: never echoed
        (format!("L05,\"{n1}"), "L05", "malformed_line", None), // unterminated quote
        (format!("bad index,{n1}"), "", "invalid_index", None),
        (format!("{long_index},{n1}"), "", "invalid_index", None),
        (format!(",{n1}"), "", "invalid_index", None),
        (
            format!("{},{n2}", nir_full(505)),
            "",
            "index_looks_like_nir",
            None,
        ),
        (
            format!("{},{n2}", nir_body(506)),
            "",
            "index_looks_like_nir",
            None,
        ),
        (
            "L11,2951099126X11".to_owned(),
            "L11",
            "invalid_character",
            None,
        ),
        (
            "L12,29510991261é1".to_owned(),
            "L12",
            "invalid_character",
            None,
        ),
        (
            "L13,2A51099126111".to_owned(),
            "L13",
            "invalid_character",
            None,
        ),
        ("L14,295109912611".to_owned(), "L14", "invalid_length", None),
        ("L15,".to_owned(), "L15", "invalid_length", None),
        (format!("L16,{bad_key}"), "L16", "invalid_key", None),
        (
            "L17,2840588321025 30".to_owned(),
            "L17",
            "invalid_key",
            None,
        ),
        // A Corsican NIR in lower case, or with spaces, is not an index either.
        (
            "186022a215325,2951099126111".to_owned(),
            "",
            "index_looks_like_nir",
            None,
        ),
        (
            "2 95 10 99 126 111 93,2951099126111".to_owned(),
            "",
            "invalid_index",
            None,
        ),
        // Longer than any record: answered once, in place; its first field,
        // a clean index, is echoed as for any malformed line.
        (
            format!("L18,{}", "7".repeat(20_000)),
            "L18",
            "malformed_line",
            None,
        ),
        // Precedence: the index is judged before the NIR.
        ("bad!,xx".to_owned(), "", "invalid_index", None),
        (
            format!("{},xx", nir_full(7)),
            "",
            "index_looks_like_nir",
            None,
        ),
        (format!("L20,\"{n3}\""), "L20", "ok", Some(nir_body(303))),
    ];
    let mut body = String::from("index,nir\r\n\r\n");
    for (i, (line, ..)) in lines.iter().enumerate() {
        body.push_str(line);
        body.push('\n');
        if i % 5 == 2 {
            body.push_str("\n   \n\r\n"); // blank lines are skipped
        }
    }
    body.pop(); // the last line has no line end
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = csv_rows(&r.text(), ',');
    assert_eq!(rows.len(), lines.len(), "one answer per non-blank line");
    let mut seen = std::collections::BTreeSet::new();
    for ((line, index, status, body), [i, code, st]) in lines.iter().zip(&rows) {
        assert_eq!(
            (i.as_str(), st.as_str()),
            (*index, *status),
            "line {line:?}"
        );
        match body {
            Some(b) => assert_eq!(code, &expected_c1(&k1, b.as_bytes()), "line {line:?}"),
            None => assert_eq!(code, "", "line {line:?}: cstatns must be empty when not ok"),
        }
        seen.insert(st.clone());
    }
    let all = [
        "ok",
        "malformed_line",
        "invalid_index",
        "index_looks_like_nir",
        "invalid_character",
        "invalid_length",
        "invalid_key",
    ];
    assert_eq!(seen, all.iter().map(|s| s.to_string()).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_line_that_is_not_the_expected_object_is_malformed() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let n = nir_full(8);
    let body = [
        serde_json::json!({"index": "J1", "nir": n}).to_string(),
        serde_json::json!({"index": "J2", "nir": 2951099126111u64}).to_string(),
        "[\"J3\"]".to_owned(),
        "not json".to_owned(),
        String::new(),
        serde_json::json!({"index": "J5", "nir": n, "extra": "x"}).to_string(),
        serde_json::json!({"index": "J6"}).to_string(),
        serde_json::json!({"index": "bad index", "nir": n}).to_string(),
        serde_json::json!({"index": n, "nir": n}).to_string(),
        serde_json::json!({"index": "J9", "nir": "12"}).to_string(),
    ]
    .join("\r\n");
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/cstatns",
            &[("content-type", "application/x-ndjson")],
            body,
        )
        .await;
    assert_eq!(r.status, 200);
    let got: Vec<(String, bool, String)> = r
        .text()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON answer");
            (
                v["index"].as_str().unwrap().to_owned(),
                is_code(v["cstatns"].as_str().unwrap()),
                v["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let m = "malformed_line";
    // A malformed line that is still an object with a clean string `index`
    // echoes it, as a malformed CSV line echoes a clean first field.
    let want = [
        ("J1", true, "ok"),
        ("J2", false, m),
        ("", false, m),
        ("", false, m),
        ("J5", false, m),
        ("J6", false, m),
        ("", false, "invalid_index"),
        ("", false, "index_looks_like_nir"),
        ("J9", false, "invalid_length"),
    ];
    let want: Vec<(String, bool, String)> = want
        .iter()
        .map(|(i, c, s)| (i.to_string(), *c, s.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_over_one_mebibyte_keeps_order_and_count_across_chunks() {
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    const N: u64 = 60_000;
    let mut body = String::from("index;nir\n");
    for i in 0..N {
        if i % 997 == 500 {
            body.push_str(&format!("row-{i:06};29510991261\n")); // invalid_length, in place
        } else {
            body.push_str(&format!("row-{i:06};{}\n", nir_full(i)));
        }
    }
    assert!(
        body.len() > (1 << 20) + (1 << 19),
        "the batch spans several chunks"
    );
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200);
    let rows = csv_rows(&r.text(), ';');
    assert_eq!(rows.len() as u64, N);
    let k1 = test_k1();
    for (i, [index, code, status]) in rows.iter().enumerate() {
        let i = i as u64;
        assert_eq!(index, &format!("row-{i:06}"), "answer {i} out of order");
        if i % 997 == 500 {
            assert_eq!(
                (code.as_str(), status.as_str()),
                ("", "invalid_length"),
                "row {i}"
            );
        } else {
            assert_eq!(status, "ok", "row {i}");
            if i % 101 == 0 {
                assert_eq!(code, &expected_c1(&k1, nir_body(i).as_bytes()), "row {i}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 5. HTTP-level refusals
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_csv_header_is_400() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    for header in [
        "nir,index",
        "index,nir,extra",
        "index\tnir",
        "index,cstatns,generation",
        "index|nir",
    ] {
        let r = env
            .derive_csv(&server, format!("{header}\nA1,{}\n", nir_full(1)))
            .await;
        let (status, code, message) = r.refusal();
        assert_eq!(
            (status, code.as_str()),
            (400, "bad_request"),
            "header {header:?}: {message}"
        );
        assert!(!message.contains(&nir_body(1)));
    }
    // The renewal header is checked against its own columns.
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/renewal",
            &[("content-type", "text/csv")],
            "index,nir\n",
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_content_type_is_415() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let body = serde_json::json!([{"index": "A1", "nir": nir_full(1)}]).to_string();
    for ct in [Some("application/json"), Some("text/plain"), None] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let r = env
            .request(
                &server,
                SUBMITTER,
                "POST",
                "/v1/cstatns",
                &headers,
                body.clone(),
            )
            .await;
        let (status, code, _) = r.refusal();
        assert_eq!(
            (status, code.as_str()),
            (415, "unsupported_media_type"),
            "content type {ct:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_purpose_is_400_and_the_configured_one_is_accepted() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let body = format!("index,nir\nA1,{}\n", nir_full(1));
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/cstatns",
            &[
                ("content-type", "text/csv"),
                ("cstatns-purpose", "marketing"),
            ],
            body.clone(),
        )
        .await;
    let (status, code, _) = r.refusal();
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/cstatns",
            &[
                ("content-type", "text/csv"),
                ("cstatns-purpose", cstatns::devenv::DEV_PURPOSE),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_request_bytes_is_413() {
    let env = TestEnv::with(EnvOptions {
        max_request_bytes: Some(1000),
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    let mut body = String::from("index,nir\n");
    let mut i = 0;
    while body.len() <= 2000 {
        body.push_str(&format!("A{i},{}\n", nir_full(i)));
        i += 1;
    }
    let r = env.derive_csv(&server, body).await;
    let (status, code, _) = r.refusal();
    assert_eq!((status, code.as_str()), (413, "too_large"));
    assert!(r.header("cstatns-batch").is_none());
    env.wait_for_audit("request_refused too_large", |r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "too_large"
    });
    // Under the limit is fine.
    let r = env
        .derive_csv(&server, format!("index,nir\nA1,{}\n", nir_full(1)))
        .await;
    assert_eq!(r.status, 200);
}

/// Regression guard (a chunked body over the limit got 200 and a cut
/// stream): a body sent without `Content-Length` is read to its end before
/// the answer starts, so one over the limit gets 413, in any framing, and is
/// logged; one under it is answered in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_max_request_bytes_is_413_and_under_it_is_answered_in_full() {
    let env = TestEnv::with(EnvOptions {
        max_request_bytes: Some(4000),
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    let body_of = |n: u64| {
        let mut body = String::from("index,nir\n");
        for i in 0..n {
            body.push_str(&format!("S{i},{}\n", nir_full(i)));
        }
        body
    };
    let submitter = ClientIdentity::Cert {
        cert: env.cert(SUBMITTER),
        key: env.key(SUBMITTER),
    };
    let headers = [("content-type", "text/csv")];
    let frames = |body: &str, size: usize| -> Vec<bytes::Bytes> {
        body.as_bytes()
            .chunks(size)
            .map(bytes::Bytes::copy_from_slice)
            .collect()
    };
    let over = body_of(400);
    let under = body_of(50);
    assert!(over.len() > 4000 && under.len() < 4000);
    for (shape, size) in [("many small frames", 500), ("one frame", usize::MAX)] {
        let refusals_before = env
            .audit_records()
            .iter()
            .filter(|r| r["event"] == "request_refused" && r["details"]["reason"] == "too_large")
            .count();
        let r = common::https_streamed(
            &server,
            &env.ca(),
            &submitter,
            "POST",
            "/v1/cstatns",
            &headers,
            frames(&over, size.min(over.len())),
        )
        .await
        .unwrap_or_else(|e| panic!("{shape}: no answer to a chunked body over the limit: {e}"));
        assert_eq!(
            r.status,
            413,
            "{shape}: a {}-byte chunked body over the 4000-byte limit was answered {} with {} lines",
            over.len(),
            r.status,
            r.text().lines().count()
        );
        let refusals = env
            .audit_records()
            .iter()
            .filter(|r| r["event"] == "request_refused" && r["details"]["reason"] == "too_large")
            .count();
        assert_eq!(refusals, refusals_before + 1, "{shape}: the 413 is logged");
        let r = common::https_streamed(
            &server,
            &env.ca(),
            &submitter,
            "POST",
            "/v1/cstatns",
            &headers,
            frames(&under, size.min(under.len())),
        )
        .await
        .expect("answer");
        assert_eq!(r.status, 200, "{shape}: a chunked body under the limit");
        let lines: Vec<_> = r.text().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 51, "{shape}: header and every line answered");
        assert!(lines[1..].iter().all(|l| l.ends_with(",ok")), "{shape}");
    }
    let completed_over_limit: Vec<_> = env
        .audit_records()
        .into_iter()
        .filter(|r| {
            r["event"] == "batch_end"
                && r["details"]["outcome"] == "completed"
                && r["details"]["bytes"].as_u64() > Some(4000)
        })
        .collect();
    assert!(
        completed_over_limit.is_empty(),
        "batches over the limit logged as completed: {completed_over_limit:?}"
    );
}

/// A chunked body is read whole before the answer starts, up to 8 MiB; a
/// larger one must declare its length: 411, logged, no code computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_past_eight_mebibytes_must_declare_its_length() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let mut body = String::from("index,nir\n");
    let mut i = 0u64;
    while body.len() <= 9 << 20 {
        body.push_str(&format!("S{i},{}\n", nir_full(i % 100_000)));
        i += 1;
    }
    let submitter = ClientIdentity::Cert {
        cert: env.cert(SUBMITTER),
        key: env.key(SUBMITTER),
    };
    let parts: Vec<bytes::Bytes> = body
        .as_bytes()
        .chunks(64 << 10)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let r = common::https_streamed(
        &server,
        &env.ca(),
        &submitter,
        "POST",
        "/v1/cstatns",
        &[("content-type", "text/csv")],
        parts,
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 411, "{}", r.text());
    assert!(r.text().contains("length_required"), "{}", r.text());
    assert!(env.audit_records().iter().any(|r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "length_required"
    }));
    assert!(
        !env.audit_records()
            .iter()
            .any(|r| r["event"] == "batch_start"),
        "no batch started"
    );
}

// ---------------------------------------------------------------------------
// 6. Receipts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_counts_statuses_and_is_only_for_the_submitting_certificate() {
    let env = TestEnv::new();
    // A second submitter: the operator's certificate, granted the role.
    let operator_fp = env.env.pki.fingerprint(OPERATOR).unwrap().to_owned();
    common::add_client(
        &env.env.config,
        "second-submitter",
        &operator_fp,
        &["submitter"],
        &["demo"],
    );
    let server = env.serve();
    env.unseal(&server).await;
    let mut body = String::from("index,nir\n");
    for i in 0..25 {
        body.push_str(&format!("ok-{i},{}\n", nir_full(i)));
    }
    body.push_str("len-1,123\nlen-2,1234\nbad index,x\n");
    body.push_str(&format!("k-1,{}00\n", nir_body(1)));
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200);
    let batch = r.header("cstatns-batch").expect("CStatNS-Batch").to_owned();

    let r = env
        .request(
            &server,
            SUBMITTER,
            "GET",
            &format!("/v1/receipts/{batch}"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let receipt: cstatns::receipt::Receipt = serde_json::from_slice(&r.body).expect("receipt JSON");
    assert_eq!(receipt.batch, batch);
    assert_eq!(receipt.operation, "cstatns");
    assert_eq!(receipt.outcome, "completed");
    assert_eq!(receipt.purpose, cstatns::devenv::DEV_PURPOSE);
    assert_eq!(receipt.generation, 1);
    assert_eq!((receipt.records, receipt.ok, receipt.rejected), (29, 25, 4));
    let counts = r.json()["counts"].clone();
    assert_eq!(
        counts,
        serde_json::json!({"ok": 25, "invalid_length": 2, "invalid_index": 1, "invalid_key": 1})
    );
    assert_eq!(
        receipt.client_fingerprint,
        env.env.pki.fingerprint(SUBMITTER).unwrap()
    );

    // Another submitter certificate does not see it; a certificate without
    // the role is refused outright.
    let r = env
        .request(
            &server,
            OPERATOR,
            "GET",
            &format!("/v1/receipts/{batch}"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.refusal().0, 404);
    let r = env
        .request(
            &server,
            AUDITOR,
            "GET",
            &format!("/v1/receipts/{batch}"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.refusal().0, 403);
    let r = env
        .request(
            &server,
            SUBMITTER,
            "GET",
            "/v1/receipts/0123456789abcdef0123456789abcdef",
            &[],
            "",
        )
        .await;
    assert_eq!(r.refusal().0, 404);

    // The traceability log holds the batch's start and end, with the counts.
    let start = env.wait_for_audit("batch_start", |r| {
        r["event"] == "batch_start" && r["details"]["batch"] == batch.as_str()
    });
    assert_eq!(start["details"]["purpose"], "demo");
    let end = env.wait_for_audit("batch_end", |r| {
        r["event"] == "batch_end" && r["details"]["batch"] == batch.as_str()
    });
    assert_eq!(end["details"]["counts"], counts);
    assert_eq!(end["details"]["generation"], 1);
    assert_eq!(end["details"]["outcome"], "completed");
    assert_eq!(end["seq"], receipt.log_seq);
    assert!(start["seq"].as_u64() < end["seq"].as_u64());
    assert_eq!(
        end["actor"]["fingerprint"],
        env.env.pki.fingerprint(SUBMITTER).unwrap()
    );
    // The chain links every record to the one before.
    let records = env.audit_records();
    for w in records.windows(2) {
        assert_eq!(
            w[1]["prev"], w[0]["hash"],
            "chain broken at seq {}",
            w[1]["seq"]
        );
        assert_eq!(
            w[1]["seq"].as_u64().unwrap(),
            w[0]["seq"].as_u64().unwrap() + 1
        );
    }
}

// ---------------------------------------------------------------------------
// 7. Nothing personal in the logs
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_nir_code_or_index_in_server_log_or_traceability_log() {
    let env = TestEnv::new();
    let mut server = env.serve_with_env(&[("CSTATNS_LOG", "trace")]);
    env.unseal(&server).await;

    let mut secrets: Vec<String> = Vec::new(); // strings that must never be logged
    let mut body = String::from("index,nir\n");
    for i in 0..30u64 {
        let seed = 1_000_003 * i + 77;
        let index = format!("IDX-7c1f-{:06}", 100 + i);
        let (full, bodytext) = (nir_full(seed), nir_body(seed));
        let line = match i % 6 {
            0 => format!("{index},{full}"),
            1 => format!("{index},{bodytext}"),
            2 => {
                // wrong key
                let mut k = full.clone().into_bytes();
                k[13] = if k[13] == b'9' { b'8' } else { b'9' };
                format!("{index},{}", String::from_utf8(k).unwrap())
            }
            3 => format!("{full},{bodytext}"), // the NIR as index
            4 => format!("{index},{full},extra"),
            _ => format!("{index},{}X", &bodytext[..12]),
        };
        body.push_str(&line);
        body.push('\n');
        secrets.extend([index, full, bodytext]);
    }
    let r = env.derive_csv(&server, body.clone()).await;
    assert_eq!(r.status, 200);
    let batch = r.header("cstatns-batch").unwrap().to_owned();
    let rows = csv_rows(&r.text(), ',');
    let codes: Vec<String> = rows
        .iter()
        .filter(|r| r[2] == "ok")
        .map(|r| r[1].clone())
        .collect();
    assert!(codes.len() >= 10);
    secrets.extend(codes.iter().cloned());
    // A renewal of those codes too: old and new codes must not be logged.
    let mut renewal = String::from("index,cstatns,generation\n");
    for (i, c) in codes.iter().enumerate() {
        renewal.push_str(&format!("IDX-7c1f-r{i:05},{c},1\n"));
        secrets.push(format!("IDX-7c1f-r{i:05}"));
    }
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/renewal",
            &[("content-type", "text/csv")],
            renewal,
        )
        .await;
    assert_eq!(r.status, 200);
    // A refused batch (sealed is gone; a bad header) with data in it.
    let r = env
        .derive_csv(
            &server,
            format!("idx,nir\nIDX-7c1f-999999,{}\n", nir_full(5)),
        )
        .await;
    assert_eq!(r.status, 400);
    secrets.extend(["IDX-7c1f-999999".to_owned(), nir_full(5), nir_body(5)]);

    env.wait_for_audit("batch_end", |r| {
        r["event"] == "batch_end" && r["details"]["batch"] == batch.as_str()
    });
    server.stop();
    let stderr = server.stderr_text();
    let audit = env.audit_text();
    assert!(
        audit.contains("batch_end") && stderr.contains("unsealed"),
        "logs were written"
    );
    for (name, text) in [("server stderr", &stderr), ("traceability log", &audit)] {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{name} holds {s:?}");
            assert!(
                !text.to_lowercase().contains(&s.to_lowercase()),
                "{name} holds {s:?} (any case)"
            );
        }
        assert!(
            !text.contains("IDX-7c1f"),
            "{name} holds an index of the batch"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_diagnostics_are_one_object_a_line_and_hold_nothing_of_a_batch() {
    let env = TestEnv::new();
    let mut server =
        env.serve_with_env(&[("CSTATNS_LOG_FORMAT", "json"), ("CSTATNS_LOG", "debug")]);
    env.unseal(&server).await;
    let mut body = String::from("index,nir\n");
    let mut secrets = Vec::new();
    for i in 0..20u64 {
        let index = format!("JSONLOG-{i:04}");
        body.push_str(&format!("{index},{}\n", nir_full(9_000 + i)));
        secrets.extend([index, nir_full(9_000 + i), nir_body(9_000 + i)]);
    }
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200);
    secrets.extend(csv_rows(&r.text(), ',').into_iter().map(|r| r[1].clone()));
    server.stop();
    let stderr = server.stderr_text();
    let mut messages = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(messages.iter().any(|m| m.contains("unsealed")), "{stderr}");
    for s in &secrets {
        assert!(!stderr.contains(s.as_str()), "the log holds {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_disables_core_dumps_and_says_so_in_the_log() {
    let env = TestEnv::new();
    let server = env.serve();
    let start = env.wait_for_audit("service_start", |r| r["event"] == "service_start");
    assert_eq!(start["details"]["hardening"]["no_core_dump"], true);
    assert_eq!(start["details"]["hardening"]["not_dumpable"], true);
    // Root runs the tests (CAP_IPC_LOCK): no lock limit binds, so all
    // memory is locked.
    assert_eq!(start["details"]["hardening"]["memory_locked"], true);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmLck");
    assert!(locked > 0, "no page locked: {status}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
}

/// Least privilege: the service confines itself at start (Landlock: its
/// own files only; seccomp: no exec, ptrace, mount…) and says so in the log.
/// Shown from outside: the kernel reports the filter, and a file the test
/// can read but that lies outside the service's directories (a CRL named
/// on reload) is refused to the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_confines_itself_to_its_files_and_system_calls() {
    // Whether the kernel has Landlock: landlock_create_ruleset(NULL, 0,
    // LANDLOCK_CREATE_RULESET_VERSION) returns its ABI version (asked from
    // Python, as this crate's tests have no unsafe code).
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import ctypes; print(ctypes.CDLL(None).syscall(444, None, 0, 1))",
        ])
        .output()
        .expect("python3");
    let landlock = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse::<i64>()
        .is_ok_and(|v| v > 0);
    let env = TestEnv::new();
    let server = env.serve();
    let start = env.wait_for_audit("service_start", |r| r["event"] == "service_start");
    assert_eq!(start["details"]["hardening"]["syscalls_filtered"], true);
    assert_eq!(start["details"]["hardening"]["files_confined"], landlock);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    if !landlock {
        return;
    }
    let outside = env.tmp.path().join("outside-crl.pem");
    cstatns::pki::write_dev_crl(env.env.pki.dir(), &[], &outside).expect("CRL");
    common::set_crl(&env, &outside.display().to_string());
    common::hangup(server.pid());
    let refused = env.wait_for_audit("config_reload_refused", |r| {
        r["event"] == "config_reload_refused"
    });
    let reason = refused["details"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("ermission denied"), "{reason}");
}

/// A client that keeps its TLS configuration resumes its session on its
/// next connection (no certificate signed or checked again) and is still
/// who it was: its batch goes through and its receipt is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_its_tls_session_and_is_still_who_it_was() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let connector = env.endpoint(&server, SUBMITTER).connector().unwrap();
    let mut first = connector.connect().await.unwrap();
    assert!(!first.resumed());
    // TLS 1.3 tickets come after the handshake: one exchange takes them in.
    first.status().await.unwrap();
    drop(first);
    let mut again = connector.connect().await.unwrap();
    assert!(
        again.resumed(),
        "the second connection resumes the first's session"
    );
    let body = format!("index,nir\nTR-1,{}\n", nir_full(7));
    let answer = again
        .post_batch("/v1/cstatns", "text/csv", body.into())
        .await
        .unwrap();
    let text = String::from_utf8(answer.to_vec()).unwrap();
    assert!(text.lines().nth(1).unwrap().ends_with(",ok"), "{text}");
    let batch = env
        .audit_records()
        .iter()
        .rev()
        .find(|r| r["event"] == "batch_end")
        .and_then(|r| r["details"]["batch"].as_str().map(str::to_owned))
        .unwrap();
    let mut third = connector.connect().await.unwrap();
    assert!(third.resumed());
    assert_eq!(third.receipt(&batch).await.unwrap().ok, 1);
    // Another certificate's connections share nothing with these.
    let mut other = env.endpoint(&server, OPERATOR).connect().await.unwrap();
    assert!(!other.resumed());
    assert!(
        other.receipt(&batch).await.is_err(),
        "not the operator's receipt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_outlive_a_restart_of_the_service() {
    let env = TestEnv::new();
    let mut server = env.serve();
    env.unseal(&server).await;
    let r = env
        .derive_csv(&server, format!("index,nir\nRS-1,{}\n", nir_full(1)))
        .await;
    assert_eq!(r.status, 200);
    let batch = r.header("cstatns-batch").unwrap().to_owned();
    let mut sub = env.endpoint(&server, SUBMITTER).connect().await.unwrap();
    let before = sub.receipt(&batch).await.unwrap();
    server.stop();

    let server = env.serve(); // sealed: receipts are still served
    let mut sub = env.endpoint(&server, SUBMITTER).connect().await.unwrap();
    let after = sub
        .receipt(&batch)
        .await
        .expect("the receipt after a restart");
    assert_eq!(after, before);
    let mut sub = env.endpoint(&server, SUBMITTER).connect().await.unwrap();
    let refused = sub.receipt("../../ceremony").await;
    assert!(refused.is_err());
}

/// Regression guard (blank lines before the CSV header): a body of 64 MiB of
/// line ends, with a 1 MiB limit, once cost quadratic CPU on a worker with no
/// limit and no log record until a header came. It must be refused as too
/// large with one log record, while the service keeps answering others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_lines_before_the_header_are_bounded_by_the_size_limit() {
    let env = TestEnv::with(EnvOptions {
        max_request_bytes: Some(1 << 20),
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    let submitter = ClientIdentity::Cert {
        cert: env.cert(SUBMITTER),
        key: env.key(SUBMITTER),
    };
    let frame = bytes::Bytes::from(vec![b'\n'; 64 * 1024]);
    let parts = vec![frame; 1024]; // 64 MiB, one shared buffer
    let ca = env.ca();
    let flood = common::https_streamed(
        &server,
        &ca,
        &submitter,
        "POST",
        "/v1/cstatns",
        &[("content-type", "text/csv")],
        parts,
    );
    let status = async {
        // While the flood is read, another client is served.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        common::timed("status during the flood", env.status(&server)).await
    };
    let (got, st) = tokio::join!(common::timed("the flood", flood), status);
    assert!(!st.sealed);
    // 413, or the connection cut once the bounded drain gave up.
    if let Ok(r) = got {
        assert_eq!(r.status, 413, "answered {}", r.status);
    }
    env.wait_for_audit("request_refused too_large", |r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "too_large"
    });
    let refusals = env
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "request_refused" || r["event"] == "batch_start")
        .count();
    assert_eq!(refusals, 1, "one record for the refused body, no batch");
}

/// Regression guard: a submitter that stops reading its answer once kept
/// the key chain (and chunks of NIRs and codes) alive after a seal,
/// indefinitely. The seal must let go of the keys within seconds whatever
/// the client does: `keys_wiped: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_that_stops_reading_does_not_keep_the_keys_past_a_seal() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    // 25 MB of rows in, about 80 MB of answer out: far more than the socket
    // buffers hold, so the service stalls writing an answer nobody reads.
    let mut body = String::from("index,nir\n");
    for i in 0..1_000_000u64 {
        body.push_str(&format!("W{i},{}\n", nir_full(i)));
    }
    let mut tls = common::raw_tls(&env, &server, SUBMITTER)
        .await
        .expect("handshake");
    let head = common::batch_head(body.len());
    // Sends the whole batch and never reads a byte of the answer; the task
    // keeps the connection open until the test ends.
    let writer = tokio::spawn(async move {
        let _ = tls.write_all(head.as_bytes()).await;
        let _ = tls.write_all(body.as_bytes()).await;
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        drop(tls);
    });
    env.wait_for_audit("batch_start", |r| r["event"] == "batch_start");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await; // let it stall
    let mut operator = common::timed("connect", env.endpoint(&server, OPERATOR).connect())
        .await
        .expect("operator connects");
    let status = common::timed("seal", operator.seal())
        .await
        .expect("sealed");
    assert!(status.sealed);
    let seal = env.wait_for_audit("seal", |r| r["event"] == "seal");
    assert_eq!(
        seal["details"]["keys_wiped"], true,
        "the keys outlived the seal because a client stopped reading"
    );
    writer.abort();
}

/// Regression guard (no write timeout): a submitter that stops taking the
/// answer is cut off after `body_idle_timeout_seconds`, its batch logged as
/// aborted, so the answer chunks made for it do not stay in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_that_stops_reading_is_cut_off_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new();
    common::set_number(&env.env.config, "body_idle_timeout_seconds", 2);
    let server = env.serve();
    env.unseal(&server).await;
    let mut body = String::from("index,nir\n");
    for i in 0..1_000_000u64 {
        body.push_str(&format!("W{i},{}\n", nir_full(i)));
    }
    let mut tls = common::raw_tls(&env, &server, SUBMITTER)
        .await
        .expect("handshake");
    let head = common::batch_head(body.len());
    let writer = tokio::spawn(async move {
        let _ = tls.write_all(head.as_bytes()).await;
        let _ = tls.write_all(body.as_bytes()).await;
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        drop(tls);
    });
    env.wait_for_audit("batch_start", |r| r["event"] == "batch_start");
    let end = env.wait_for_audit("batch_end", |r| r["event"] == "batch_end");
    assert_eq!(end["details"]["outcome"], "aborted", "{end}");
    assert_eq!(end["details"]["reason"], "client_gone", "{end}");
    writer.abort();
}

/// Regression guard (the connection cap was taken before the handshake, and
/// every refusal was an fsynced log write in the accept loop): 300 silent
/// TCP sockets, more than the 256 connection slots, do not lock a
/// legitimate client out; and 60 sockets sending garbage are logged in
/// bounded form, a few records whose `refusals` count them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_garbage_connections_neither_lock_clients_out_nor_flood_the_log() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new();
    let server = env.serve();
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", server.port))
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let st = common::timed("status beside 300 silent sockets", env.status(&server)).await;
    assert!(st.sealed);
    let before = env.audit_records().len();
    for _ in 0..60 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let _ = s.shutdown().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let refusals: Vec<_> = env.audit_records()[before..]
        .iter()
        .filter(|r| r["event"] == "connection_refused")
        .cloned()
        .collect();
    assert!(!refusals.is_empty(), "the refusals are logged");
    assert!(
        refusals.len() <= 6,
        "60 bad handshakes in well under a second wrote {} records",
        refusals.len()
    );
    // Every refusal is counted once the held-back count is written.
    env.wait_for_audit("60 refusals counted", |_| refusals_logged(&env) == 60);
    drop(silent);
}

/// One certificate (a stolen one, say) holding many idle authenticated
/// connections takes at most half of the 256 slots: other clients get
/// through, its extra connections are refused and logged, and it gets slots
/// back once it lets go of them. With two such certificates holding every
/// slot, the operator and the holders still get in (16 slots of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection_slot() {
    let env = TestEnv::new();
    let server = env.serve();
    let open = |role: &'static str, n: usize| {
        let (env, server) = (&env, &server);
        async move {
            let mut held = Vec::new();
            for _ in 0..n {
                if let Ok(tls) = common::raw_tls(env, server, role).await {
                    held.push(tls);
                }
            }
            held
        }
    };
    let held = open(SUBMITTER, 140).await;
    // Let the service finish its side of every handshake.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let st = common::timed(
        "operator status beside 140 held connections",
        env.status(&server),
    )
    .await;
    assert!(st.sealed);
    env.wait_for_audit("per-client refusals", |r| {
        r["event"] == "connection_refused"
            && r["details"]["reason"] == "too many connections for one client"
    });
    // A second certificate takes the other half: every ordinary slot is
    // taken, but the operator (as the holders) still gets in.
    let more = open(AUDITOR, 140).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let st = common::timed("operator status with every slot taken", env.status(&server)).await;
    assert!(st.sealed);
    let matcher = ClientIdentity::Cert {
        cert: env.cert(cstatns::pki::MATCHER),
        key: env.key(cstatns::pki::MATCHER),
    };
    let r = common::https(&server, &env.ca(), &matcher, "GET", "/v1/status", &[], "").await;
    assert!(
        r.as_ref().is_err() || r.as_ref().is_ok_and(|r| r.status != 200),
        "an ordinary client finds no slot left: {r:?}"
    );
    drop(held);
    drop(more);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = env
        .request(&server, SUBMITTER, "GET", "/v1/status", &[], "")
        .await;
    assert_eq!(r.status, 200, "the client gets its slots back");
}

/// The refusals the log accounts for: each `connection_refused` record
/// stands for `refusals` of them (1 when absent).
fn refusals_logged(env: &TestEnv) -> u64 {
    env.audit_records()
        .iter()
        .filter(|r| r["event"] == "connection_refused")
        .map(|r| r["details"]["refusals"].as_u64().unwrap_or(1))
        .sum()
}

/// Regression guard (bodies had no read timeout): a submitter that starts a
/// batch and then sends nothing is cut off after `body_idle_timeout_seconds`,
/// and the batch is logged as aborted, `body_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_coming_is_cut_off_after_the_idle_timeout() {
    let env = TestEnv::new();
    common::set_number(&env.env.config, "body_idle_timeout_seconds", 1);
    let server = env.serve();
    env.unseal(&server).await;
    let submitter = ClientIdentity::Cert {
        cert: env.cert(SUBMITTER),
        key: env.key(SUBMITTER),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
    tx.send(bytes::Bytes::from(format!(
        "index,nir\nI1,{}\n",
        nir_full(1)
    )))
    .await
    .expect("first part");
    let ca = env.ca();
    let headers = [
        ("content-type", "text/csv"),
        ("content-length", "1000000000"),
    ];
    // The rest never comes (tx is kept); the service must end the exchange.
    let r = common::timed(
        "the exchange ends",
        common::https_channel(
            &server,
            &ca,
            &submitter,
            "POST",
            "/v1/cstatns",
            &headers,
            rx,
        ),
    )
    .await;
    if let Ok(r) = r {
        assert!(
            r.text().lines().count() <= 2,
            "the batch was not answered in full"
        );
    }
    let end = env.wait_for_audit("batch_end", |r| r["event"] == "batch_end");
    assert_eq!(end["details"]["outcome"], "aborted");
    assert_eq!(end["details"]["reason"], "body_timeout");
    drop(tx);
}

/// Routes the service does not have, and methods a route does not take,
/// are refused by the service itself (not by the router alone): a JSON
/// refusal, and a `request_refused` record naming the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_are_refused_and_logged() {
    let env = TestEnv::new();
    let server = env.serve();
    let r = env
        .request(
            &server,
            SUBMITTER,
            "GET",
            "/v1/nothing-here",
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(r.refusal().0, 404);
    assert_eq!(r.refusal().1, "not_found");
    let r = env
        .request(&server, SUBMITTER, "DELETE", "/v1/status", &[], Vec::new())
        .await;
    assert_eq!(r.refusal().0, 405);
    assert_eq!(r.refusal().1, "method_not_allowed");
    let fp = env.env.pki.fingerprint(SUBMITTER).unwrap().to_owned();
    for reason in ["not_found", "method_not_allowed"] {
        let rec = env.wait_for_audit(reason, |r| {
            r["event"] == "request_refused" && r["details"]["reason"] == reason
        });
        assert_eq!(rec["actor"]["fingerprint"], fp.as_str());
    }
}

// ---------------------------------------------------------------------------
// Operations: Prometheus metrics
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_batches_lines_and_refusals_for_the_operator_only() {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(&env.env.config).unwrap();
    std::fs::write(
        &env.env.config,
        format!("metrics_listen = \"127.0.0.1:0\"\n{text}"),
    )
    .unwrap();
    let server = env.serve();
    let port = server.metrics_port.expect("a metrics listener");
    let scrape = |role: &str| {
        let id = ClientIdentity::Cert {
            cert: env.cert(role),
            key: env.key(role),
        };
        let ca = env.ca();
        async move {
            common::https_at(port, &ca, &id, "GET", "/metrics")
                .await
                .unwrap()
        }
    };
    let m = scrape(OPERATOR).await;
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{m:?}"
    );
    assert!(m.text().contains("\ncstatns_sealed 1\n"), "{}", m.text());

    env.unseal(&server).await;
    let mut body = String::from("index,nir\n");
    let mut secrets = Vec::new();
    for i in 0..3u64 {
        body.push_str(&format!("METRIC-{i},{}\n", nir_full(700 + i)));
        secrets.extend([format!("METRIC-{i}"), nir_full(700 + i), nir_body(700 + i)]);
    }
    body.push_str("METRIC-9,295109912611194\n");
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200);
    let bad = env.derive_csv(&server, "id,nir\n").await;
    assert_eq!(bad.status, 400);
    env.wait_for_audit("batch_end", |r| r["event"] == "batch_end");

    let text = scrape(OPERATOR).await.text();
    for want in [
        "\ncstatns_sealed 0\n",
        "\ncstatns_generation 1\n",
        "cstatns_batches_total{operation=\"cstatns\",outcome=\"completed\"} 1\n",
        "cstatns_lines_total{status=\"ok\"} 3\n",
        "cstatns_lines_total{status=\"invalid_key\"} 1\n",
        "cstatns_refusals_total{reason=\"bad_request\"} 1\n",
        "cstatns_log_events_total{event=\"batch_end\"} 1\n",
        "cstatns_batch_duration_seconds_count{operation=\"cstatns\"} 1\n",
        "\ncstatns_audit_log_writable 1\n",
        "cstatns_renewal_days_left ",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "the metrics hold {s:?}");
    }
    // Another role: refused, and the refusal logged; another path: 404.
    assert_eq!(scrape(SUBMITTER).await.status, 403);
    env.wait_for_audit("the metrics refusal", |r| {
        r["event"] == "request_refused" && r["details"]["role"] == "operator"
    });
    let id = ClientIdentity::Cert {
        cert: env.cert(OPERATOR),
        key: env.key(OPERATOR),
    };
    let other = common::https_at(port, &env.ca(), &id, "GET", "/v1/status").await;
    assert_eq!(other.unwrap().status, 404);
    // No certificate: no handshake.
    assert!(
        common::https_at(port, &env.ca(), &ClientIdentity::None, "GET", "/metrics")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests_and_undecodable_paths_are_refused_as_json_and_logged() {
    let env = TestEnv::new();
    let server = env.serve();
    let reads = |env: &TestEnv| {
        env.audit_records()
            .iter()
            .filter(|r| r["event"] == "audit_read")
            .count()
    };
    let before = reads(&env);
    // HEAD runs no GET handler: no audit read recorded.
    let r = env
        .request(&server, AUDITOR, "HEAD", "/v1/audit", &[], "")
        .await;
    assert_eq!(r.status, 405);
    let r = env
        .request(&server, AUDITOR, "GET", "/v1/audit", &[], "")
        .await;
    assert_eq!(r.status, 200);
    env.wait_for_audit("audit_read", |_| reads(&env) > before);
    assert_eq!(reads(&env), before + 1, "only the GET reads the log");
    // A path parameter whose bytes are not UTF-8: a JSON 404, logged.
    let r = env
        .request(&server, SUBMITTER, "GET", "/v1/receipts/%FF%FE", &[], "")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    env.wait_for_audit("request_refused", |r| {
        r["event"] == "request_refused" && r["details"]["reason"] == "not_found"
    });
    // The refusal names the role as server.toml does.
    let r = env
        .request(&server, SUBMITTER, "GET", "/v1/audit", &[], "")
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("the auditor role"),
        "{r:?}"
    );
}

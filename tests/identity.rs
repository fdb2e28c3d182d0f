//! Identity traits instead of a NIR (DESIGN §7, docs/identity.md), through
//! the real service: a register CSV loaded with the real CLI into the
//! embedded register, trait batches (CSV and NDJSON) over mutual TLS,
//! every quality and every trait status, codes checked against an
//! independent HMAC of the NIR the register holds, the receipt's counts per
//! quality, and no NIR or trait in the log or the service's output; then
//! the refusals: no register (503, before anything is computed) and a
//! register CSV with a bad row (the previous register stays).

mod common;

use common::{
    configure_register, expected_c1, nir_body, register_load, test_k1, EnvOptions, TestEnv,
};
use cstatns::pki::SUBMITTER;
use std::path::Path;

/// Hand-made people: (NIR seed, sex, birth name, usual name, first names,
/// date, place).
const PEOPLE: &[(u64, &str, &str, &str, &str, &str, &str)] = &[
    (
        1,
        "2",
        "LEFÈVRE",
        "MARTIN",
        "Marie-Claire Anne",
        "1961-05-12",
        "75115",
    ),
    (2, "2", "LEFÈVRE", "", "Marie Anne", "1961-05-12", "75115"),
    (
        3,
        "1",
        "DE LA FONTAINE",
        "",
        "Jean-Pierre",
        "1961-05-12",
        "2A004",
    ),
    (4, "1", "N'DIAYE", "", "Moussa", "1958-00-00", "99350"),
    (5, "1", "DUPONT", "", "Paul Henri", "1970-01-03", "69123"),
    (6, "1", "MARTIN", "", "Paul", "1980-07-14", "13055"),
    (7, "1", "MARTIN", "", "Paul", "1980-07-14", "13055"),
];

fn write_register(path: &Path, people: &[(u64, &str, &str, &str, &str, &str, &str)]) {
    let mut s = String::from("nir,sex,birth_name,usual_name,first_names,birth_date,birth_place\n");
    for (seed, sex, birth, usual, first, date, place) in people {
        s.push_str(&format!(
            "{},{sex},\"{birth}\",{usual},{first},{date},{place}\n",
            nir_body(*seed)
        ));
    }
    std::fs::write(path, s).expect("write the register CSV");
}

fn code(seed: u64) -> String {
    expected_c1(&test_k1(), nir_body(seed).as_bytes())
}

/// `[index, cstatns, quality, status]` rows of a trait answer.
fn rows(text: &str) -> Vec<[String; 4]> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("index,cstatns,quality,status"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            [f[0], f[1], f[2], f[3]].map(str::to_owned)
        })
        .collect()
}

/// A deployment whose embedded register holds [`PEOPLE`], loaded by the
/// real CLI, served and unsealed.
async fn served_with_people() -> (TestEnv, common::ServerProcess) {
    let env = TestEnv::with(EnvOptions {
        import_test_key: true,
        ..EnvOptions::default()
    });
    let csv = env.dir().join("register.csv");
    write_register(&csv, PEOPLE);
    configure_register(&env, "register.db");
    let (code_, out) = register_load(&env, &csv);
    assert_eq!(code_, Some(0), "{out}");
    assert!(out.contains("7 people loaded"), "{out}");
    let server = env.serve();
    env.unseal(&server).await;
    (env, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trait_batches_are_looked_up_in_the_register_and_answered_with_a_quality() {
    let (env, mut server) = served_with_people().await;

    let body = "index,sex,birth_name,first_names,birth_date,birth_place\n\
        T1,2,lefevre,Anne Marie Claire,1961-05-12,75115\n\
        T2,1,La Fontaine,Jean Pierre,1961-05-12,2A004\n\
        T3,1,Dupond,Paul Henri,1970-01-03,69123\n\
        T4,1,Dupont,Paul Henri,1970-03-01,69123\n\
        T5,1,Dupont,Paul,1970-01-03,69123\n\
        T6,2,Martin,Marie-Claire Anne,1961-05-12,75115\n\
        T7,1,Ndiaye,Moussa,1958-04-30,99350\n\
        T8,2,Lefèvre,Marie,1961-05-12,75115\n\
        T9,1,Martin,Paul,1980-07-14,13055\n\
        T10,1,Durand,Paul,1970-01-03,69123\n\
        T11,,Dupont,Paul,1970-01-03,69123\n\
        T12,3,Dupont,Paul,1970-01-03,69123\n\
        T13,1,Dupont,Paul,1970-02-30,69123\n\
        T14,1,Dupont,Paul,1970-01-03,75000\n\
        T15,1,\"Dupont, dit \"\"Paulo\"\"\",Paul,1970-01-03,69123\n\
        2951099126111,1,Dupont,Paul,1970-01-03,69123\n";
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = rows(&r.text());
    let want: Vec<[String; 4]> = [
        ("T1", code(1), "exact", "ok"),
        ("T2", code(3), "exact", "ok"),
        ("T3", code(5), "approximate", "ok"),
        ("T4", code(5), "approximate", "ok"),
        ("T5", code(5), "approximate", "ok"),
        ("T6", code(1), "approximate", "ok"),
        ("T7", code(4), "approximate", "ok"),
        ("T8", String::new(), "ambiguous", "ok"),
        ("T9", String::new(), "ambiguous", "ok"),
        ("T10", String::new(), "not_found", "ok"),
        ("T11", String::new(), "", "missing_trait"),
        ("T12", String::new(), "", "invalid_sex"),
        ("T13", String::new(), "", "invalid_date"),
        ("T14", String::new(), "", "invalid_place"),
        ("T15", String::new(), "not_found", "ok"),
        ("", String::new(), "", "index_looks_like_nir"),
    ]
    .into_iter()
    .map(|(i, c, q, s)| [i.to_owned(), c, q.to_owned(), s.to_owned()])
    .collect();
    assert_eq!(got, want);
    let batch = r.header("cstatns-batch").expect("batch id").to_owned();
    let receipt = env
        .request(
            &server,
            SUBMITTER,
            "GET",
            &format!("/v1/receipts/{batch}"),
            &[],
            "",
        )
        .await
        .json();
    assert_eq!(
        receipt["quality"],
        serde_json::json!({"exact": 2, "approximate": 5, "ambiguous": 2, "not_found": 2})
    );
    assert_eq!(receipt["counts"]["ok"], 11);

    // A header naming both: a line carries one or the other.
    let body = format!(
        "index;nir;sex;birth_name;first_names;birth_date;birth_place;usual_name\n\
         B1;{};;;;;;\n\
         B2;{};1;Dupont;Paul Henri;1970-01-03;69123;\n\
         B3;;;;;;;\n\
         B4;;2;Lefèvre;Marie Claire Anne;1961-05-12;75115;Martin\n",
        nir_body(9),
        nir_body(5)
    );
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            "index;cstatns;quality;status\nB1;{};;ok\nB2;;;nir_and_traits\nB3;;;missing_trait\nB4;{};exact;ok\n",
            expected_c1(&test_k1(), nir_body(9).as_bytes()),
            code(1)
        )
    );

    // NDJSON: a first line with traits makes a trait batch.
    let r = env
        .request(
            &server,
            SUBMITTER,
            "POST",
            "/v1/cstatns",
            &[("content-type", "application/x-ndjson")],
            "{\"index\":\"N1\",\"sex\":\"1\",\"birth_name\":\"Dupont\",\"first_names\":\"Henri Paul\",\"birth_date\":\"1970-01-03\",\"birth_place\":\"69123\"}\n\
             {\"index\":\"N2\",\"birth_name\":\"Dupont\"}\n",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            "{{\"index\":\"N1\",\"cstatns\":\"{}\",\"quality\":\"exact\",\"status\":\"ok\"}}\n\
             {{\"index\":\"N2\",\"cstatns\":\"\",\"quality\":\"\",\"status\":\"missing_trait\"}}\n",
            code(5)
        )
    );

    // NIR batches are as before.
    let r = env
        .derive_csv(&server, format!("index,nir\nA1,{}\n", nir_body(2)))
        .await;
    assert_eq!(
        r.text(),
        format!("index,cstatns,status\nA1,{},ok\n", code(2))
    );

    server.stop();
    // No NIR of the register, no name, no date of the batches in the log
    // or in what the service wrote.
    let log = env.audit_text();
    let out = server.stderr_text();
    for seed in 1..=7 {
        let nir = nir_body(seed);
        assert!(!log.contains(&nir) && !out.contains(&nir), "NIR {seed}");
    }
    for t in [
        "LEF",
        "Lef",
        "lefevre",
        "Dupon",
        "DUPON",
        "Moussa",
        "1961-05-12",
        "1970-01-03",
    ] {
        assert!(!log.contains(t) && !out.contains(t), "{t} reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_register_trait_batches_get_503_and_nir_batches_are_served() {
    let env = TestEnv::new();
    // A register named but never loaded: it cannot be read.
    configure_register(&env, "missing.db");
    let server = env.serve();
    env.unseal(&server).await;
    let r = env
        .derive_csv(
            &server,
            "index,sex,birth_name,first_names,birth_date,birth_place\nT1,1,Dupont,Paul,1970-01-03,69123\n",
        )
        .await;
    let (status, error, message) = r.refusal();
    assert_eq!(
        (status, error.as_str()),
        (503, "register_unavailable"),
        "{message}"
    );
    assert!(r.header("retry-after").is_some());
    assert!(r.header("cstatns-batch").is_none(), "no batch was started");
    let refused = env.wait_for_audit("the refusal", |e| {
        e["event"] == "request_refused" && e["details"]["reason"] == "register_unavailable"
    });
    assert!(!refused.to_string().contains("Dupont"));
    assert!(
        !env.audit_text().contains("\"batch_start\""),
        "nothing computed"
    );
    let r = env
        .derive_csv(&server, format!("index,nir\nA1,{}\n", nir_body(2)))
        .await;
    assert_eq!(r.status, 200);
}

#[test]
fn a_register_with_a_bad_row_is_refused_whole_and_the_previous_one_stays() {
    let env = TestEnv::new();
    configure_register(&env, "register.db");
    let csv = env.dir().join("register.csv");
    write_register(&csv, PEOPLE);
    assert_eq!(register_load(&env, &csv).0, Some(0));
    let db = env.dir().join("register.db");
    let before = std::fs::read(&db).expect("the register");
    // Row 4 has a NIR with a wrong key; row 3 has an impossible date.
    let mut text = std::fs::read_to_string(&csv).expect("read");
    let bad_nir = format!("{}00", nir_body(3));
    text = text.replacen(&nir_body(3), &bad_nir, 1);
    std::fs::write(&csv, &text).expect("write");
    let (status, out) = register_load(&env, &csv);
    assert_eq!(status, Some(2), "{out}");
    assert!(out.contains("row 4: nir is not valid"), "{out}");
    assert!(
        !out.contains(&nir_body(3)),
        "the row's content is not echoed: {out}"
    );
    assert_eq!(std::fs::read(&db).expect("the register"), before);
    let text = text
        .replacen(&bad_nir, &nir_body(3), 1)
        .replacen("1961-05-12", "1961-02-30", 1);
    std::fs::write(&csv, &text).expect("write");
    let (status, out) = register_load(&env, &csv);
    assert_eq!(status, Some(2), "{out}");
    assert!(out.contains("row 2: birth_date is not valid"), "{out}");
    assert!(!out.contains("LEF"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trait_batch_that_sweeps_dates_is_cut_and_its_client_refused() {
    let (env, server) = served_with_people().await;

    // Dupont Paul Henri, born in Lyon on every day of 1960-1969: the
    // register's Dupont Paul Henri was born in 1970, so no line finds him.
    let mut body = String::from("index,sex,birth_name,first_names,birth_date,birth_place\n");
    let mut n = 0;
    for y in 1960..1970 {
        for m in 1..=12 {
            for d in 1..=28 {
                body.push_str(&format!(
                    "D{n},1,Dupont,Paul Henri,{y}-{m:02}-{d:02},69123\n"
                ));
                n += 1;
            }
        }
    }
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200);
    let got = rows(&r.text());
    assert_eq!(got.len(), n);
    let cut = got
        .iter()
        .position(|r| r[3] == "sweep_suspected")
        .expect("the sweep is cut");
    assert_eq!(cut, 1023, "at the 1,024th look-up that found no one");
    assert!(got[cut..]
        .iter()
        .all(|r| r[3] == "sweep_suspected" && r[1].is_empty()));
    let sweep = env.wait_for_audit("the sweep", |e| e["event"] == "sweep_suspected");
    assert_eq!(sweep["details"]["rule"], "not_found_block");
    // Its client is refused from now on, NIR batches included.
    let r = env
        .derive_csv(&server, format!("index,nir\nA1,{}\n", nir_body(2)))
        .await;
    assert_eq!(r.refusal().0, 429);
    // A population's look-ups (every person found) are no sweep: the
    // unit tests of sweep.rs hold the rule's edges.
}

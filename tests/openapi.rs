//! `docs/openapi.json` against the running service: every documented
//! operation called by every role, sealed and unsealed, answers a status the
//! document lists for it (403 for the roles it does not name), with the
//! error codes and headers the document gives; every other method on a
//! documented path answers 405 and every other path 404: no route answers
//! that the document does not describe.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{nir_full, Reply, ServerProcess, TestEnv};
use cstatns::pki::{holder_role, AUDITOR, MATCHER, OPERATOR, SUBMITTER};
use serde_json::Value;

fn document() -> Value {
    let path = format!("{}/docs/openapi.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let mut at = doc;
            for part in r.trim_start_matches("#/").split('/') {
                at = &at[part];
            }
            resolve(doc, at)
        }
        None => v,
    }
}

const METHODS: [&str; 6] = ["get", "post", "put", "delete", "patch", "head"];

struct Operation {
    method: String,
    path: String,
    roles: Vec<String>,
    spec: Value,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, spec) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let roles = spec["x-cstatns-roles"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path}: no x-cstatns-roles"))
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                roles,
                spec: spec.clone(),
            });
        }
    }
    // The seal last: it ends the unsealed pass.
    out.sort_by_key(|o| o.path == "/v1/seal");
    out
}

/// A concrete request for an operation: its path, headers and body.
fn request_for(op: &Operation, batch: &str) -> (String, Vec<(&'static str, &'static str)>, String) {
    let path = op
        .path
        .replace("/v1/receipts/{id}", &format!("/v1/receipts/{batch}"))
        .replace("{client}", "submitter")
        .replace("/v1/operations/{id}", "/v1/operations/0123456789abcdef")
        .replace("/v1/projects/{id}", "/v1/projects/no-such-project")
        .replace("{batch}", "0123456789abcdef0123456789abcdef");
    assert!(!path.contains('{'), "a parameter left in {path}");
    let csv = ("content-type", "text/csv");
    let json = ("content-type", "application/json");
    let (headers, body) = match op.path.as_str() {
        "/v1/cstatns" | "/v1/projects/{id}/cspens" => {
            (vec![csv], format!("index,nir\nA1,{}\n", nir_full(42)))
        }
        "/v1/renewal" | "/v1/projects/{id}/renewal" => (
            vec![csv],
            format!("index,cstatns,generation\nA1,{},1\n", "ab".repeat(32)),
        ),
        "/v1/unseal" | "/v1/operations" | "/v1/operations/{id}/approve" => {
            (vec![json], "{}".to_owned())
        }
        _ => (vec![], String::new()),
    };
    (path, headers, body)
}

fn roles() -> Vec<String> {
    [SUBMITTER, AUDITOR, OPERATOR, MATCHER]
        .map(str::to_owned)
        .into_iter()
        .chain([holder_role(1)])
        .collect()
}

/// The document's answer for `status`, or a failure naming what came.
fn check(doc: &Value, op: &Operation, role: &str, sealed: bool, r: &Reply) {
    let what = format!(
        "{} {} as {role} ({}): {} {}",
        op.method,
        op.path,
        if sealed { "sealed" } else { "unsealed" },
        r.status,
        r.text()
    );
    let answer = resolve(doc, &op.spec["responses"][r.status.to_string()]);
    assert!(answer.is_object(), "status not documented: {what}");
    let role_name = role.trim_end_matches(|c: char| c == '-' || c.is_ascii_digit());
    let forbidden = r.status == 403 && r.text().contains("\"forbidden\"");
    if op.roles.iter().any(|r| r == role_name) {
        assert!(!forbidden, "a role the document names was refused: {what}");
    } else {
        assert_eq!(
            r.status, 403,
            "a role the document does not name got in: {what}"
        );
    }
    let content_type = r.header("content-type").unwrap_or("");
    let media = content_type.split(';').next().unwrap().trim();
    if let Some(content) = answer["content"].as_object() {
        if !(r.status == 200 && op.method == "HEAD") {
            assert!(
                content.contains_key(media),
                "content type {media:?} not documented: {what}"
            );
        }
    }
    if media == "application/json" && r.status >= 400 {
        let code = r.json()["error"].as_str().unwrap_or_default().to_owned();
        let schema = &answer["content"]["application/json"]["schema"];
        if let Some(codes) = schema["properties"]["error"]["enum"].as_array() {
            assert!(
                codes.iter().any(|c| c == code.as_str()),
                "error code {code:?} not among {codes:?}: {what}"
            );
        }
    }
    if let Some(headers) = answer["headers"].as_object() {
        for (name, h) in headers {
            if resolve(doc, h)["required"] == true {
                assert!(
                    r.header(&name.to_lowercase()).is_some(),
                    "no {name}: {what}"
                );
            }
        }
    }
}

async fn sweep(
    doc: &Value,
    env: &TestEnv,
    server: &ServerProcess,
    batch: &str,
    sealed: bool,
) -> BTreeSet<String> {
    let mut answered = BTreeSet::new();
    for op in operations(doc) {
        let (path, headers, body) = request_for(&op, batch);
        for role in roles() {
            let r = env
                .request(server, &role, &op.method, &path, &headers, body.clone())
                .await;
            check(doc, &op, &role, sealed, &r);
            // The route is there: something other than the fallbacks'
            // answers came back.
            let fallback =
                r.status == 405 || (r.status == 404 && r.text().contains("\"not_found\""));
            if r.status != 403 && !fallback {
                answered.insert(format!("{} {}", op.method, op.path));
            }
        }
    }
    answered
}

#[test]
fn the_document_has_every_route_of_the_router_and_no_other() {
    // The router's routes, as `app` in src/server/mod.rs declares them.
    let source =
        std::fs::read_to_string(format!("{}/src/server/mod.rs", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let app = &source[source.find("pub fn app(").unwrap()..];
    let app = &app[..app.find("\n}\n").unwrap()];
    let routes: BTreeSet<&str> = app
        .split(".route(")
        .skip(1)
        .map(|r| {
            r.trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    let doc = document();
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(routes.len() >= 14, "{routes:?}");
    assert_eq!(routes, documented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_answers_as_its_openapi_document_says_and_nothing_else() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert!(ops.len() >= 15, "{} operations", ops.len());
    let env = TestEnv::new();
    let server = env.serve();

    // Sealed: no batch yet, so a receipt id that is not one.
    let mut answered = sweep(
        &doc,
        &env,
        &server,
        "0123456789abcdef0123456789abcdef",
        true,
    )
    .await;
    env.unseal(&server).await;
    let r = env
        .derive_csv(&server, format!("index,nir\nB1,{}\n", nir_full(7)))
        .await;
    assert_eq!(r.status, 200);
    let batch = r.header("cstatns-batch").unwrap().to_owned();
    answered.extend(sweep(&doc, &env, &server, &batch, false).await);
    let all: BTreeSet<String> = ops
        .iter()
        .map(|o| format!("{} {}", o.method, o.path))
        .collect();
    let silent: Vec<_> = all.difference(&answered).collect();
    assert!(
        silent.is_empty(),
        "documented but never answered as a route: {silent:?}"
    );

    // Nothing else answers: other methods on the documented paths, other paths.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let (concrete, _, _) = request_for(
            &Operation {
                method: String::new(),
                path: path.clone(),
                roles: vec![],
                spec: Value::Null,
            },
            &batch,
        );
        for method in METHODS {
            if item.get(method).is_some() {
                continue;
            }
            let r = env
                .request(
                    &server,
                    OPERATOR,
                    &method.to_uppercase(),
                    &concrete,
                    &[],
                    "",
                )
                .await;
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
            if method != "head" {
                assert_eq!(r.json()["error"], "method_not_allowed");
            }
        }
    }
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v1/nope",
        "/v2/status",
        "/v1/status/x",
        "/metrics",
        "/audit",
        "/audit/index.html",
        "/audit/../v1/status/x",
    ] {
        for role in [OPERATOR, SUBMITTER] {
            let r = env.request(&server, role, "GET", path, &[], "").await;
            assert_eq!(r.status, 404, "GET {path}: {}", r.text());
            assert_eq!(r.json()["error"], "not_found");
        }
    }
}

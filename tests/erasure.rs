//! Nothing of a batch stays in the service's memory once it is answered:
//! after a batch, the live server's whole readable memory is scanned for
//! every NIR (both forms), every index and every code of that batch.
//! This reads `/proc/PID/mem` of the real `cstatns serve` process (which
//! makes itself non-dumpable: root, as CI runs, may still read it).

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Seek, SeekFrom};

use common::{nir_full, TestEnv};

/// Every readable mapping of a process, concatenated.
fn memory_of(pid: u32) -> Vec<u8> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut all = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, perms) = (f.next().unwrap(), f.next().unwrap());
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            all.extend_from_slice(&buf);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_nir_index_or_code_stays_in_the_service_memory_after_a_batch() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    const N: u64 = 20_000;
    let seed = 7_000_000;
    let mut body = String::from("index,nir\n");
    for i in 0..N {
        body.push_str(&format!("ER-7f3a-{i:06},{}\n", nir_full(seed + i)));
    }
    let reply = env.derive_csv(&server, body).await;
    assert_eq!(reply.status, 200);
    // One batch a connection: its buffers go (wiped) with it.
    assert_eq!(reply.header("connection"), Some("close"));
    let answer = reply.text();
    let codes: Vec<&str> = answer
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(codes.len() as u64, N);
    env.wait_for_audit("batch_end", |r| r["event"] == "batch_end");

    let memory = memory_of(server.pid());
    assert!(memory.len() > 1 << 20, "the scan read the process");
    // The scan sees what is there: the service's own name is.
    assert!(
        contains(&memory, b"cstatns"),
        "a scan that cannot see anything proves nothing"
    );

    let left = leftovers(&memory, seed, N, &codes);
    assert!(left.is_empty(), "left in the service's memory: {left:?}");
    // The same search in this test's own memory, which holds the batch and
    // its answer, must find them: the scan can fail.
    let own = leftovers(&memory_of(std::process::id()), seed, N, &codes);
    assert!(own.len() >= 3, "the scan misses what is there: {own:?}");
    drop(answer);
}

/// A client that breaks off in the middle of sending its batch: the batch
/// is logged as aborted, and nothing of what it sent stays in the service's
/// memory once the connection is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_client_abandons_mid_stream_is_aborted_and_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    const N: u64 = 20_000;
    let seed = 7_000_000;
    let mut body = String::from("index,nir\n");
    for i in 0..N {
        body.push_str(&format!("ER-7f3a-{i:06},{}\n", nir_full(seed + i)));
    }
    let mut tls = common::raw_tls(&env, &server, cstatns::pki::SUBMITTER)
        .await
        .unwrap();
    let head = common::batch_head(body.len() * 2);
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    env.wait_for_audit("batch_start", |r| r["event"] == "batch_start");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(tls); // breaks off: half the declared body was sent
    let end = env.wait_for_audit("batch_end", |r| r["event"] == "batch_end");
    assert_eq!(end["details"]["outcome"], "aborted", "{end}");
    // The chunks already handed to workers are wiped when their jobs end,
    // which on a loaded machine can come after the batch's end is logged:
    // wiped within a few seconds is what must hold.
    let mut left = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let memory = memory_of(server.pid());
        assert!(contains(&memory, b"cstatns"), "the scan sees the process");
        left = leftovers(&memory, seed, N, &[]);
        if left.is_empty() {
            break;
        }
    }
    assert!(
        left.is_empty(),
        "left in the service's memory after 6 s: {left:?}"
    );
    let own = leftovers(&memory_of(std::process::id()), seed, N, &[]);
    assert!(!own.is_empty(), "the scan misses what is there");
    drop(body);
}

/// SplitMix64: a small seeded generator, so that a failing shape can be
/// replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A valid NIR with random fields (Corsica and abroad among them): its
/// canonical body and its 15-character form. Plausible (a commune that
/// exists, a small order number), as a population's are: the guard's sweep
/// detector lets them through.
fn random_nir(rng: &mut Rng) -> (String, String) {
    let places = cstatns::sweep::Places::get();
    loop {
        let place = match rng.below(20) {
            0 => format!("99{}", 100 + rng.below(500)),
            d => {
                let code = places.commune(rng.below(places.communes() as u64) as usize);
                let code = String::from_utf8(code.to_vec()).unwrap();
                // One in ten from Corsica.
                if d < 3 && !(code.starts_with("2A") || code.starts_with("2B")) {
                    continue;
                }
                code
            }
        };
        let body = format!(
            "{}{:02}{:02}{place}{:03}",
            1 + rng.below(2),
            rng.below(100),
            1 + rng.below(12),
            1 + rng.below(5)
        );
        if let Ok(n) = cstatns::nir::Nir::parse(body.as_bytes()) {
            let full = String::from_utf8(n.with_key().to_vec()).unwrap();
            return (body, full);
        }
    }
}

/// A batch of `n` lines in one of several shapes, and what of it must not
/// stay in the service: every NIR as sent and in both canonical forms,
/// every index long enough to be searched for (12+ characters; shorter
/// ones occur anywhere by chance).
fn varied_batch(rng: &mut Rng, n: usize, shape: usize) -> (String, &'static str, Vec<Vec<u8>>) {
    const INDEX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    let ndjson = shape == 2;
    let delim = if shape == 1 { ';' } else { ',' };
    let mut body = if ndjson {
        String::new()
    } else {
        format!("index{delim}nir\r\n")
    };
    let mut needles = Vec::new();
    for i in 0..n {
        let len = 1 + rng.below(64) as usize;
        // A unique, distinctive start for the searchable ones.
        let mut index = if len >= 12 {
            format!("Z{i:07}q")
        } else {
            String::new()
        };
        while index.len() < len {
            index.push(INDEX[rng.below(INDEX.len() as u64) as usize] as char);
        }
        index.truncate(len);
        let (canonical, full) = random_nir(rng);
        let sent = match rng.below(4) {
            0 => canonical.clone(),
            1 => full.to_lowercase(),
            2 => format!(
                "{} {} {} {} {} {}",
                &full[..1],
                &full[1..3],
                &full[3..5],
                &full[5..7],
                &full[7..10],
                &full[10..]
            ),
            _ => full.clone(),
        };
        let end = if rng.below(2) == 0 { "\r\n" } else { "\n" };
        if ndjson {
            body.push_str(&format!(
                "{{\"index\":\"{index}\",\"nir\":\"{sent}\"}}{end}"
            ));
        } else if rng.below(3) == 0 {
            body.push_str(&format!("\"{index}\"{delim}\"{sent}\"{end}"));
        } else {
            body.push_str(&format!("{index}{delim}{sent}{end}"));
        }
        if len >= 12 {
            needles.push(index.into_bytes());
        }
        needles.push(canonical.into_bytes());
        needles.push(full.into_bytes());
        needles.push(sent.into_bytes());
    }
    let ctype = if ndjson {
        "application/x-ndjson"
    } else {
        "text/csv"
    };
    (body, ctype, needles)
}

/// Regression guard (NIR bodies were left on worker thread stacks, one
/// for every chunk and the batch's last line, by batches whose lines vary):
/// batches of varied shapes — index lengths 1 to 64, quoted fields, CRLF,
/// NIRs with spaces or in lower case, Corsica, 13 and 15 characters, CSV
/// with `,` and `;`, NDJSON, line lengths that put chunk boundaries
/// anywhere — and then every needle of them (every NIR in every form,
/// every searchable index, every code in hex and raw) searched for in the
/// whole memory of the service at once. A control finds them in the test's
/// own memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_needle_of_batches_of_varied_shapes_stays_in_memory() {
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let mut rng = Rng(0x5EED_CAFE);
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for shape in 0..3 {
        let (body, ctype, mut n) = varied_batch(&mut rng, 12_000, shape);
        let reply = env
            .request(
                &server,
                cstatns::pki::SUBMITTER,
                "POST",
                "/v1/cstatns",
                &[("content-type", ctype)],
                body,
            )
            .await;
        assert_eq!(reply.status, 200);
        let text = reply.text();
        let mut ok = 0;
        for line in text.lines().skip(usize::from(shape != 2)) {
            let code = if shape == 2 {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                v["cstatns"].as_str().unwrap_or_default().to_owned()
            } else {
                line.split([',', ';']).nth(1).unwrap_or_default().to_owned()
            };
            if code.len() == 64 {
                ok += 1;
                n.push(hex::decode(&code).unwrap());
                n.push(code.into_bytes());
            }
        }
        assert_eq!(ok, 12_000, "shape {shape}: every line answered ok");
        needles.append(&mut n);
    }
    env.wait_for_audit("three batches ended", |_| {
        env.audit_records()
            .iter()
            .filter(|r| r["event"] == "batch_end")
            .count()
            == 3
    });
    let ac = aho_corasick::AhoCorasick::new(&needles).unwrap();
    let memory = memory_of(server.pid());
    assert!(contains(&memory, b"cstatns"), "the scan sees the process");
    let found: Vec<String> = ac
        .find_iter(&memory)
        .take(10)
        .map(|m| {
            let what = String::from_utf8_lossy(&needles[m.pattern().as_usize()]).len();
            format!("a {what}-byte needle at offset {}", m.start())
        })
        .collect();
    assert!(found.is_empty(), "left in the service's memory: {found:?}");
    let own = memory_of(std::process::id());
    let seen = ac.find_iter(&own).take(100).count();
    assert!(
        seen >= 100,
        "the scan misses what is there ({seen} found in the test's own memory)"
    );
}

/// What of the batch (`n` lines from `seed`, with these codes) is in `memory`.
fn leftovers(memory: &[u8], seed: u64, n: u64, codes: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    // Indexes: all share a prefix found nowhere else.
    if contains(memory, b"ER-7f3a-") {
        left.push("an index".to_owned());
    }
    // NIRs: every body of the batch, and its 15-character form, at once.
    let nirs: Vec<String> = (0..n).map(|i| nir_full(seed + i)).collect();
    let needles: Vec<&[u8]> = nirs
        .iter()
        .flat_map(|f| [&f.as_bytes()[..13], f.as_bytes()])
        .collect();
    let ac = aho_corasick::AhoCorasick::new(&needles).unwrap();
    if let Some(m) = ac.find_iter(memory).next() {
        left.push(format!("a NIR at offset {}", m.start()));
    }
    // Codes, as sent (hex) and as computed (raw), on a sample.
    for code in codes.iter().step_by(100) {
        if contains(memory, code.as_bytes()) {
            left.push("a code (hex)".to_owned());
            break;
        }
        if contains(memory, &hex::decode(code).unwrap()) {
            left.push("a code (raw)".to_owned());
            break;
        }
    }
    left
}

/// The share values (raw) and `S` (raw, big-endian), rebuilt here by
/// Lagrange interpolation at 0 with `p256`'s arithmetic: independently of
/// the service's own combination.
fn secret_and_shares(shares: &[cstatns::seal::Share]) -> (Vec<u8>, Vec<Vec<u8>>) {
    use p256::elliptic_curve::PrimeField;
    use p256::Scalar;
    let mut points = Vec::new();
    let mut raw = Vec::new();
    for s in shares {
        let wire: serde_json::Value = serde_json::from_str(&s.to_wire_json()).unwrap();
        let value = hex::decode(wire["value"].as_str().unwrap()).unwrap();
        let y = Scalar::from_repr(*p256::FieldBytes::from_slice(&value)).unwrap();
        points.push((Scalar::from(u64::from(s.id())), y));
        raw.push(value);
    }
    let mut secret = Scalar::ZERO;
    for (i, (xi, yi)) in points.iter().enumerate() {
        let mut l = Scalar::ONE;
        for (j, (xj, _)) in points.iter().enumerate() {
            if i != j {
                l *= *xj * (*xj - *xi).invert().unwrap();
            }
        }
        secret += *yi * l;
    }
    (secret.to_bytes().to_vec(), raw)
}

/// What of these secrets (raw, and shares in hex too) is in `memory`.
fn secrets_in(
    memory: &[u8],
    secret: &[u8],
    shares: &[Vec<u8>],
    others: &[(&str, &[u8])],
) -> Vec<String> {
    let mut left = Vec::new();
    if contains(memory, secret) {
        left.push("the master secret S".to_owned());
    }
    for (i, v) in shares.iter().enumerate() {
        if contains(memory, v) {
            left.push(format!("the share of holder-{} (raw)", i + 1));
        }
        if contains(memory, hex::encode(v).as_bytes()) {
            left.push(format!("the share of holder-{} (hex)", i + 1));
        }
    }
    for (what, bytes) in others {
        if contains(memory, bytes) || contains(memory, hex::encode(bytes).as_bytes()) {
            left.push((*what).to_owned());
        }
    }
    left
}

/// Runs `op` with the approvals of holders 1 to 3.
async fn quorum(env: &TestEnv, server: &common::ServerProcess, op: cstatns::seal::Operation) {
    let mut c = env
        .endpoint(server, cstatns::pki::OPERATOR)
        .connect()
        .await
        .unwrap();
    let listed = c.propose(&op).await.unwrap();
    for i in 1..=3 {
        let mut h = env
            .endpoint(server, &cstatns::pki::holder_role(i))
            .connect()
            .await
            .unwrap();
        let approval = cstatns::seal::Approval {
            digest: listed.proposal.digest(),
            share: env.share(i),
        };
        h.approve(&listed.proposal.id, &approval).await.unwrap();
    }
}

/// Creates research project `id` for the submitter, results to the matcher.
async fn create_project(env: &TestEnv, server: &common::ServerProcess, id: &str) {
    let end = time::OffsetDateTime::now_utc().date() + time::Duration::days(30);
    let op = cstatns::seal::Operation::ProjectCreate {
        project: id.into(),
        purpose: "research".into(),
        end_date: cstatns::renewal::date_label(end),
        submitter: cstatns::pki::SUBMITTER.into(),
        matcher_fingerprint: env
            .env
            .pki
            .fingerprint(cstatns::pki::MATCHER)
            .unwrap()
            .into(),
        matcher_recipient: env.env.matcher_recipient().unwrap(),
    };
    quorum(env, server, op).await;
}

/// The keyring as the file holds it, opened with the shares of holders 1–3.
fn open_keyring(env: &TestEnv) -> cstatns::seal::Keyring {
    let shares: Vec<_> = (1..=3).map(|i| env.share(i)).collect();
    let record = cstatns::seal::CeremonyRecord::from_json(
        &std::fs::read(env.dir().join("ceremony.json")).unwrap(),
    )
    .unwrap();
    let master = cstatns::seal::combine(&record, &shares).unwrap();
    let sealed = cstatns::seal::SealedKeyring::from_json(
        &std::fs::read(env.dir().join("keyring.json")).unwrap(),
    )
    .unwrap();
    record.open_keyring(&sealed, &master).unwrap()
}

/// A key's HMAC-SHA-256 states as the kernel keeps them (the SHA-256 state
/// after the key block xor ipad, and after the key block xor opad, as
/// native-endian words), computed here with `sha2`'s compression function.
fn hmac_states(key: &[u8]) -> [Vec<u8>; 2] {
    let state = |pad: u8| {
        let mut block = [pad; 64];
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        let mut h: [u32; 8] = [
            0x6a09_e667,
            0xbb67_ae85,
            0x3c6e_f372,
            0xa54f_f53a,
            0x510e_527f,
            0x9b05_688c,
            0x1f83_d9ab,
            0x5be0_cd19,
        ];
        sha2::compress256(&mut h, &[block.into()]);
        h.iter().flat_map(|w| w.to_ne_bytes()).collect()
    };
    [state(0x36), state(0x5c)]
}

/// Every needle that `memory` holds (up to 10), described by its length.
fn found(memory: &[u8], ac: &aho_corasick::AhoCorasick, needles: &[Vec<u8>]) -> Vec<String> {
    ac.find_iter(memory)
        .take(10)
        .map(|m| {
            let i = m.pattern().as_usize();
            format!(
                "needle {i} ({} bytes) at offset {}",
                needles[i].len(),
                m.start()
            )
        })
        .collect()
}

/// Regression guard for the batch kinds the first erasure tests did not
/// cover: a renewal batch (old and new codes), a research project's batch
/// (NIRs, and the CSpeNS codes that go, encrypted, to the matching body
/// only), a batch refused before its body is read, and a batch cut by the
/// guard (the NIRs held back without a code). None of their needles stays
/// in the service; and after a seal, no generation or project key either,
/// raw, in hex, or as the HMAC states the kernel precomputes from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_renewal_project_refused_or_guarded_batches_stays_and_a_seal_leaves_no_key() {
    let env = TestEnv::with(common::EnvOptions {
        generations: 2,
        ..Default::default()
    });
    let server = env.serve();
    env.unseal(&server).await;
    create_project(&env, &server, "erasure-p").await;
    let keyring = open_keyring(&env);
    let k1 = keyring.generations[0].expose().to_vec();
    let project_key = keyring.projects[0].generations[0].expose().to_vec();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for k in keyring
        .generations
        .iter()
        .chain(&keyring.projects[0].generations)
    {
        let k = k.expose();
        keys.push(k.to_vec());
        keys.push(hex::encode(k).into_bytes());
        keys.extend(hmac_states(k));
    }
    drop(keyring);
    let mut rng = Rng(0xE7A5_E000);
    let mut needles: Vec<Vec<u8>> = Vec::new();

    // A renewal batch: codes of generation 1 brought to generation 2.
    let mut body = String::from("index,cstatns,generation\n");
    let mut olds = Vec::new();
    for i in 0..4000 {
        let (canonical, _) = random_nir(&mut rng);
        let old = common::expected_c1(&k1, canonical.as_bytes());
        body.push_str(&format!("RN-{i},{old},1\n"));
        needles.push(hex::decode(&old).unwrap());
        olds.push(old);
    }
    needles.extend(olds.into_iter().map(String::into_bytes));
    let r = env
        .request(
            &server,
            cstatns::pki::SUBMITTER,
            "POST",
            "/v1/renewal",
            &[("content-type", "text/csv")],
            body,
        )
        .await;
    assert_eq!(r.status, 200);
    let mut renewed = 0;
    for [_, code, status] in common::csv_rows(&r.text(), ',') {
        assert_eq!(status, "ok");
        needles.push(hex::decode(&code).unwrap());
        needles.push(code.into_bytes());
        renewed += 1;
    }
    assert_eq!(renewed, 4000);

    // A research project's batch: the submitter gets statuses only.
    let mut body = String::from("index,nir\n");
    for i in 0..4000 {
        let (canonical, full) = random_nir(&mut rng);
        body.push_str(&format!("PJ-{i},{full}\n"));
        let cspens = common::expected_c1(&project_key, canonical.as_bytes());
        needles.push(hex::decode(&cspens).unwrap());
        needles.push(cspens.into_bytes());
        needles.push(canonical.into_bytes());
        needles.push(full.into_bytes());
    }
    let r = env
        .request(
            &server,
            cstatns::pki::SUBMITTER,
            "POST",
            "/v1/projects/erasure-p/cspens",
            &[("content-type", "text/csv")],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text().lines().filter(|l| l.ends_with(",ok")).count(),
        4000
    );

    // Refused before its body is read (415): its NIRs went over the wire.
    let mut body = String::from("index,nir\n");
    for i in 0..2000 {
        let (canonical, full) = random_nir(&mut rng);
        body.push_str(&format!("RF-{i},{full}\n"));
        needles.push(canonical.into_bytes());
        needles.push(full.into_bytes());
    }
    let r = env
        .request(
            &server,
            cstatns::pki::SUBMITTER,
            "POST",
            "/v1/cstatns",
            &[("content-type", "text/plain")],
            body,
        )
        .await;
    assert_eq!(r.status, 415);

    // Cut by the guard: 999 order numbers under one prefix, the last 199
    // answered sweep_suspected and held back before hashing.
    let mut body = String::from("index,nir\n");
    for o in 1..=999 {
        let n = cstatns::nir::Nir::parse(format!("2910375115{o:03}").as_bytes()).unwrap();
        let full = String::from_utf8(n.with_key().to_vec()).unwrap();
        body.push_str(&format!("SW-{o},{full}\n"));
        needles.push(n.body().to_vec());
        needles.push(full.into_bytes());
    }
    let r = env.derive_csv(&server, body).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert_eq!(
        text.lines()
            .filter(|l| l.ends_with(",sweep_suspected"))
            .count(),
        199
    );
    for [_, code, _] in common::csv_rows(&text, ',') {
        if !code.is_empty() {
            needles.push(hex::decode(&code).unwrap());
            needles.push(code.into_bytes());
        }
    }
    env.wait_for_audit("three batches ended", |_| {
        env.audit_records()
            .iter()
            .filter(|r| r["event"] == "batch_end")
            .count()
            == 3
    });
    let ac = aho_corasick::AhoCorasick::new(&needles).unwrap();
    let memory = memory_of(server.pid());
    assert!(contains(&memory, b"cstatns"), "the scan sees the process");
    let left = found(&memory, &ac, &needles);
    assert!(left.is_empty(), "left in the service's memory: {left:?}");
    let own = ac
        .find_iter(&memory_of(std::process::id()))
        .take(100)
        .count();
    assert!(
        own >= 100,
        "the scan misses what is there ({own} found here)"
    );

    // The control that proves the key needles right: unsealed, the
    // service holds the HMAC states of its keys, and the scan finds them.
    // Each key's needles are [raw, hex, inner state, outer state].
    let keys_ac = aho_corasick::AhoCorasick::new(&keys).unwrap();
    let live: std::collections::HashSet<usize> = keys_ac
        .find_overlapping_iter(&memory)
        .map(|m| m.pattern().as_usize())
        .collect();
    for k in 0..keys.len() / 4 {
        assert!(
            live.contains(&(4 * k + 2)) || live.contains(&(4 * k + 3)),
            "the key scan does not see key {k}'s HMAC states in the unsealed service"
        );
    }
    drop(memory);

    // Sealed: no key of any kind stays.
    let r = env
        .request(&server, cstatns::pki::OPERATOR, "POST", "/v1/seal", &[], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let left = found(&memory_of(server.pid()), &keys_ac, &keys);
    assert!(
        left.is_empty(),
        "left in the service's memory after the seal: {left:?}"
    );
    drop(keys);
}

/// Neither `S` nor a share stays in the service after an unseal and after
/// quorum operations (each of which rebuilds `S` from `t` shares), and a
/// research project's key is gone from memory once destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_master_secret_share_or_destroyed_project_key_stays_in_memory() {
    use cstatns::seal::Operation;
    let env = TestEnv::new();
    let server = env.serve();
    env.unseal(&server).await;
    let shares: Vec<_> = (1..=3).map(|i| env.share(i)).collect();
    let (secret, raw) = secret_and_shares(&shares);
    // The interpolation is right: it gives the ceremony's key check value.
    let record = cstatns::seal::CeremonyRecord::from_json(
        &std::fs::read(env.dir().join("ceremony.json")).unwrap(),
    )
    .unwrap();
    let master = cstatns::seal::combine(&record, &shares).unwrap();
    let sealed = cstatns::seal::SealedKeyring::from_json(
        &std::fs::read(env.dir().join("keyring.json")).unwrap(),
    )
    .unwrap();
    assert!(record.open_keyring(&sealed, &master).is_ok());

    let left = secrets_in(&memory_of(server.pid()), &secret, &raw, &[]);
    assert!(left.is_empty(), "after the unseal: {left:?}");

    // A quorum operation: a research project, then its destruction.
    create_project(&env, &server, "erasure-check").await;
    let sealed = cstatns::seal::SealedKeyring::from_json(
        &std::fs::read(env.dir().join("keyring.json")).unwrap(),
    )
    .unwrap();
    let keyring = record.open_keyring(&sealed, &master).unwrap();
    let project_key = keyring.projects[0].generations[0].expose().to_vec();
    drop(keyring);
    let left = secrets_in(&memory_of(server.pid()), &secret, &raw, &[]);
    assert!(left.is_empty(), "after a quorum operation: {left:?}");

    quorum(
        &env,
        &server,
        Operation::ProjectDestroy {
            project: "erasure-check".into(),
        },
    )
    .await;
    let memory = memory_of(server.pid());
    let left = secrets_in(
        &memory,
        &secret,
        &raw,
        &[("the destroyed project key", &project_key)],
    );
    assert!(left.is_empty(), "after the project's destruction: {left:?}");
    // The same scan finds them in this test's memory, which holds them.
    let own = secrets_in(
        &memory_of(std::process::id()),
        &secret,
        &raw,
        &[("the project key", &project_key)],
    );
    assert!(own.len() >= 2, "the scan misses what is there: {own:?}");
    drop(master);
}

/// `name` with its letters in alternate case (`lEfÈvRe`): a spelling the
/// register's normal form never holds, so that finding it means the batch
/// left it.
fn alternate_case(name: &str) -> String {
    name.chars()
        .enumerate()
        .flat_map(|(i, c)| {
            if i % 2 == 0 {
                c.to_lowercase().collect::<Vec<_>>()
            } else {
                c.to_uppercase().collect()
            }
        })
        .collect()
}

/// A trait batch (DESIGN §7): the traits as sent, the indexes and the codes
/// are gone from the service's memory once it is answered. (The register
/// itself holds its people's NIRs and normalised names for the service's
/// life: that is what it is for.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trait_index_or_code_of_a_trait_batch_stays_in_memory() {
    let env = TestEnv::new();
    common::configure_register(&env, "register.db");
    let csv = env.dir().join("register.csv");
    let mut register =
        String::from("nir,sex,birth_name,usual_name,first_names,birth_date,birth_place\n");
    let mut batch = String::from("index,sex,birth_name,first_names,birth_date,birth_place\n");
    let mut sent = Vec::new();
    for (i, p) in cstatns::identity::synth::Synth::new(41)
        .take(3000)
        .enumerate()
    {
        register.push_str(&p.csv_row());
        register.push('\n');
        let traits = format!(
            "\"{}\",\"{}\"",
            alternate_case(&p.birth_name),
            alternate_case(&p.first_names.join(" "))
        );
        batch.push_str(&format!(
            "TR-51d0-{i:05},{},{traits},{},{}\n",
            p.sex, p.birth_date, p.birth_place
        ));
        sent.push(traits.into_bytes());
    }
    std::fs::write(&csv, register).unwrap();
    let (status, out) = common::register_load(&env, &csv);
    assert_eq!(status, Some(0), "{out}");
    let server = env.serve();
    env.unseal(&server).await;
    let reply = env.derive_csv(&server, batch).await;
    assert_eq!(reply.status, 200);
    let answer = reply.text();
    let codes: Vec<&str> = answer
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1))
        .filter(|c| !c.is_empty())
        .collect();
    assert!(codes.len() > 2500, "most people are found: {}", codes.len());
    env.wait_for_audit("batch_end", |r| r["event"] == "batch_end");

    let scan = |memory: &[u8]| {
        let mut left = Vec::new();
        if contains(memory, b"TR-51d0-") {
            left.push("an index".to_owned());
        }
        let ac = aho_corasick::AhoCorasick::new(&sent).unwrap();
        if let Some(m) = ac.find_iter(memory).next() {
            left.push(format!("traits as sent, at offset {}", m.start()));
        }
        for code in codes.iter().step_by(50) {
            if contains(memory, code.as_bytes()) || contains(memory, &hex::decode(code).unwrap()) {
                left.push("a code".to_owned());
                break;
            }
        }
        left
    };
    let memory = memory_of(server.pid());
    assert!(contains(&memory, b"cstatns"), "the scan sees the process");
    let left = scan(&memory);
    assert!(left.is_empty(), "left in the service's memory: {left:?}");
    let own = scan(&memory_of(std::process::id()));
    assert!(own.len() >= 3, "the scan misses what is there: {own:?}");
    drop(answer);
}

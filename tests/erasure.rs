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

/// What of the batch (`n` lines from `seed`, with these codes) is in `memory`.
fn leftovers(memory: &[u8], seed: u64, n: u64, codes: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    // Indexes: all share a prefix found nowhere else.
    if contains(memory, b"ER-7f3a-") {
        left.push("an index".to_owned());
    }
    // NIRs: every body of this batch ends with the same six digits (the
    // synthetic generator's `rest`, checked here), so each occurrence of
    // them is a candidate, compared with the bodies of the batch.
    let bodies: std::collections::HashSet<Vec<u8>> = (0..n)
        .map(|i| nir_full(seed + i).as_bytes()[..13].to_vec())
        .collect();
    let tail = &nir_full(seed).as_bytes()[7..13].to_vec();
    assert!(
        bodies.iter().all(|b| &b[7..] == tail.as_slice()),
        "the prefilter covers every body"
    );
    for hit in memchr::memmem::find_iter(memory, tail) {
        if hit >= 7 && bodies.contains(&memory[hit - 7..hit + 6]) {
            left.push(format!("a NIR at offset {hit}"));
            break;
        }
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

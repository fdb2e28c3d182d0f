#!/usr/bin/env bash
# End to end, as a new user would run it (benches/README.md): `cstatns submit`
# -> `cstatns serve` over mutual TLS on 127.0.0.1, two processes, erasure and
# the guard on, a synthetic CSV of ROWS rows in and the answer file out; then,
# in the same run, the Python baseline (benches/python_baseline.py) on the same
# file, the kernel's single-stream floor (examples/kernel_ratio), and the
# latency of 100-row batches from 64 concurrent submitters (examples/latency),
# with resumed TLS sessions and with full handshakes, in a closed loop; then
# with each submitter paced at E2E_RATE batches a second (default 10).
# The two answers must be byte for byte the same. Prints one JSON line.
#
#     benches/e2e.sh [ROWS]        # default 10000000
#
# E2E_PYTHON=0 leaves the Python baseline out (a 100-million-row run would take
# it 11 minutes); E2E_CLIENTS=N sets the latency run's submitters (default 64,
# 0 to leave it out); E2E_RATE=R paces the third latency run at R batches a
# second a submitter (0 leaves it out). A latency run with a failed request
# fails the script. benches/sweep.sh runs it over sizes and client counts.
set -euo pipefail
rows="${1:-10000000}"
python_baseline="${E2E_PYTHON:-1}"
clients="${E2E_CLIENTS:-64}"
pace="${E2E_RATE:-10}"
cd "$(dirname "$0")/.."
cargo build --release -q --bin cstatns --example kernel_ratio --example latency
cargo build --release -q -p keyceremony
bin=target/release
work="$(mktemp -d)"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A deployment whose K_1 the baseline also knows.
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$work/k1.hex"
"$bin/cstatns" dev-env --dir "$work/d" --import-key "$work/k1.hex" > /dev/null
d="$work/d"
# The batch: the demo's synthetic records (the demo itself runs aside).
"$bin/cstatns" demo --records "$rows" --dir "$work/gen" > /dev/null 2>&1
input="$work/gen/demo-input.csv"
# The demo leaves a gigabyte of its own files to write back; flushed now, so
# that the timed run does not wait on the disk for them.
sync

"$bin/cstatns" serve --config "$d/server.toml" --listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/serve.out" 2>/dev/null && break
    sleep 0.1
done
url="$(grep -o 'https://[0-9.:]*' "$work/serve.out" | head -1)"
for i in 1 2 3; do
    "$bin/keyceremony" unseal --server "$url" --ca "$d/pki/ca.pem" \
        --cert "$d/pki/holder-$i.pem" --key "$d/pki/holder-$i.key" \
        --share "$d/shares/holder-$i.share" --passphrase-file "$d/shares/holder-$i.pass" > /dev/null
done
# Unseal to ready: from the t-th share's arrival to the keyring open, as the
# log timestamps them (the holders' own passphrase work is not the service's).
unseal_s=$(python3 - "$d/audit" <<'PY'
import datetime, glob, json, sys
def t(r):
    return datetime.datetime.fromisoformat(r["time"][:26] + "+00:00")
records = [json.loads(l) for f in sorted(glob.glob(sys.argv[1] + "/log*.jsonl")) for l in open(f)]
unseal = next(r for r in records if r["event"] == "unseal")
last = max(t(r) for r in records if r["event"] == "share_submitted" and t(r) <= t(unseal))
print(round((t(unseal) - last).total_seconds(), 4))
PY
)

client=(--server "$url" --ca "$d/pki/ca.pem" --cert "$d/pki/submitter.pem" --key "$d/pki/submitter.key")
/usr/bin/time -f '%e %M' -o "$work/submit.time" \
    "$bin/cstatns" submit "${client[@]}" "$input" -o "$work/answer.csv" > "$work/receipt.json"
read -r submit_s client_kib < "$work/submit.time"
server_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")

if [ "$python_baseline" != 0 ]; then
    python3 benches/python_baseline.py "$work/k1.hex" "$input" "$work/python.csv" > "$work/python.json"
    cmp -s "$work/answer.csv" "$work/python.csv" || {
        echo "e2e: the service's answer and the baseline's differ" >&2
        exit 1
    }
else
    # Still checked: the answer has a line per input line, all of them `ok`
    # but the demo's deliberate wrong keys.
    lines_in=$(($(wc -l < "$input") - 1))
    lines_out=$(($(wc -l < "$work/answer.csv") - 1))
    [ "$lines_in" = "$lines_out" ] || {
        echo "e2e: $lines_in lines sent, $lines_out answered" >&2
        exit 1
    }
    echo '{"rows_per_s": null}' > "$work/python.json"
fi
floor=$("$bin/examples/kernel_ratio" 2>/dev/null | tail -1)
# Submitters sending 100-row batches for 10 s: resuming their TLS sessions
# (a long-running client), then each connection a full handshake (separate
# `cstatns submit` runs).
# Then each submitter paced at $pace batches a second, resuming its sessions
# (the service below saturation).
latency=null
latency_full=null
latency_paced=null
if [ "$clients" != 0 ]; then
    latency=$("$bin/examples/latency" "$url" "$d/pki/ca.pem" "$d/pki/submitter.pem" "$d/pki/submitter.key" "$clients" 10)
    latency_full=$(LATENCY_FULL_HANDSHAKE=1 "$bin/examples/latency" "$url" "$d/pki/ca.pem" "$d/pki/submitter.pem" "$d/pki/submitter.key" "$clients" 10)
    [ "$pace" = 0 ] || latency_paced=$(LATENCY_RATE="$pace" "$bin/examples/latency" "$url" "$d/pki/ca.pem" "$d/pki/submitter.pem" "$d/pki/submitter.key" "$clients" 10)
fi

python3 - "$rows" "$submit_s" "$client_kib" "$server_kib" "$unseal_s" "$work/python.json" "$floor" "$latency" "$clients" "$latency_full" "$latency_paced" <<'EOF'
import json, sys
rows, secs, client_kib, server_kib, unseal = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
py = json.load(open(sys.argv[6]))
kernel = json.loads(sys.argv[7])
latency, full, paced = json.loads(sys.argv[8]), json.loads(sys.argv[10]), json.loads(sys.argv[11])
runs = {"closed loop": latency, "full handshakes": full, "paced": paced}
failed = {k: r["failed"] for k, r in runs.items() if r and r["failed"]}
if failed:
    sys.exit(f"latency runs with failed requests: {failed}")
rate = rows / secs
print(json.dumps({
    "rows": rows,
    "seconds": secs,
    "rows_per_s": round(rate),
    "python_rows_per_s": py["rows_per_s"],
    "x_python": round(rate / py["rows_per_s"], 1) if py["rows_per_s"] else None,
    "floor_per_s": kernel["floor_per_s"],
    "gen1_per_s": kernel["gen1_per_s"],
    "gen2_per_s": kernel["gen2_per_s"],
    "renewal_per_s": kernel["renewal_per_s"],
    "kernel_ratio": kernel["ratio"],
    "x_floor": round(rate / kernel["floor_per_s"], 3),
    "server_peak_mib": round(server_kib / 1024, 1),
    "client_peak_mib": round(client_kib / 1024, 1),
    "unseal_seconds": unseal,
    "latency_clients": int(sys.argv[9]),
    "latency_100_rows": latency,
    "latency_100_rows_full_handshake": full,
    "latency_100_rows_paced": paced,
}))
EOF

#!/usr/bin/env bash
# The figures behind benches/speed.png (benches/README.md): benches/e2e.sh over
# batch sizes (rows/s against the batch size, the Python baseline beside it),
# then over concurrent submitters of 100-row batches (rows/s and p99 against
# the clients), each with the kernel's floor and ratio of the same run. One
# JSON line per run, to benches/sweep.jsonl; then benches/plot.py draws them.
#
#     benches/sweep.sh                 # about 7 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
out=benches/sweep.jsonl
: > "$out"
for rows in 10000 100000 1000000 10000000; do
    echo "sweep: $rows rows" >&2
    E2E_CLIENTS=0 benches/e2e.sh "$rows" | tail -1 | python3 -c \
        'import json,sys; r=json.loads(sys.stdin.read()); r["kind"]="size"; print(json.dumps(r))' >> "$out"
done
for clients in 1 4 16 64; do
    echo "sweep: $clients clients" >&2
    E2E_PYTHON=0 E2E_CLIENTS="$clients" benches/e2e.sh 10000 | tail -1 | python3 -c \
        'import json,sys; r=json.loads(sys.stdin.read()); r["kind"]="clients"; print(json.dumps(r))' >> "$out"
done
python3 benches/plot.py "$out" benches/speed.png

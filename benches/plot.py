#!/usr/bin/env python3
"""Draws benches/speed.png from benches/sweep.jsonl (benches/sweep.sh): rows/s
against the batch size (service end to end, the Python baseline, one core's
floor), rows/s and p99 latency against concurrent submitters of 100-row
batches, and the kernel against its floor. Installs matplotlib from PyPI when
it is missing.

    python3 benches/plot.py benches/sweep.jsonl benches/speed.png
"""
import json
import subprocess
import sys

try:
    import matplotlib
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"])
    import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
sizes = sorted((r for r in runs if r["kind"] == "size"), key=lambda r: r["rows"])
clients = sorted((r for r in runs if r["kind"] == "clients"), key=lambda r: r["latency_clients"])

fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 5))
fig.suptitle("cstatns speed (2 vCPUs; service and client on the same machine, mutual TLS, erasure and guard on)")

x = [r["rows"] for r in sizes]
a.plot(x, [r["rows_per_s"] / 1e6 for r in sizes], "o-", label="cstatns submit → serve")
a.plot(x, [r["python_rows_per_s"] / 1e6 for r in sizes], "s-", label="Python baseline (csv + hmac)")
a.plot(x, [r["floor_per_s"] / 1e6 for r in sizes], "--", color="grey", label="one core's floor (2 SHA-256 compressions)")
a.set_xscale("log")
a.set_yscale("log")
a.set_xlabel("rows in the batch")
a.set_ylabel("million rows/s")
a.set_title("Against the batch size")
a.legend(fontsize=8)
a.grid(True, which="both", alpha=0.3)

n = [r["latency_clients"] for r in clients]
lat = [r["latency_100_rows"] for r in clients]
full = [r.get("latency_100_rows_full_handshake") for r in clients]
paced = [r.get("latency_100_rows_paced") for r in clients]
b.plot(n, [l["batches_per_s"] * 100 / 1e3 for l in lat], "o-", label="rows/s, resumed TLS (thousands)")
if all(full):
    b.plot(n, [l["batches_per_s"] * 100 / 1e3 for l in full], "o:", color="tab:blue", alpha=0.6, label="rows/s, full handshakes")
b.set_xscale("log", base=2)
b.set_xlabel("concurrent submitters (100-row batches, one connection each)")
b.set_ylabel("thousand rows/s")
b.set_title("Against concurrent clients")
b2 = b.twinx()
b2.plot(n, [l["p99_ms"] for l in lat], "s--", color="tab:red", label="p99, resumed TLS (ms)")
if all(full):
    b2.plot(n, [l["p99_ms"] for l in full], "s:", color="tab:red", alpha=0.6, label="p99, full handshakes (ms)")
if paced and all(paced):
    b2.plot(n, [l["p99_ms"] for l in paced], "^-.", color="tab:purple",
            label=f"p99, each paced at {paced[0]['rate_per_submitter']:g} batches/s (ms)")
b2.axhline(5, color="tab:red", linewidth=0.8, alpha=0.5)
b2.set_ylabel("p99 latency, ms (line: 5 ms)", color="tab:red")
b.legend(loc="upper left", fontsize=8)
b2.legend(loc="center left", fontsize=8)
b.grid(True, alpha=0.3)

kernel = [r for r in runs]
labels = ["floor", "gen 1", "gen 2", "renewal"]
k = runs[-1]
vals = [k["floor_per_s"], k.get("gen1_per_s"), k.get("gen2_per_s"), k.get("renewal_per_s")]
c.bar(labels, [v / 1e6 if v else 0 for v in vals], color=["grey", "tab:blue", "tab:blue", "tab:green"])
c.set_ylabel("million per s (one core)")
c.set_title(f"Kernel against its floor (gen 1 = {k.get('kernel_ratio', 0):.2f} × floor)")
c.grid(True, axis="y", alpha=0.3)

fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
print(f"wrote {sys.argv[2]}")

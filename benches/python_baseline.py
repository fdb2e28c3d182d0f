#!/usr/bin/env python3
"""The baseline: the script a statistician would write with Python's standard
library (csv + hmac), doing what `/v1/cstatns` does for one generation —
DESIGN §2's checks, then C_1 = HMAC-SHA-256(K_1, body) in lowercase hex — on a
CSV batch `index,nir`, writing `index,cstatns,status`.

    python3 benches/python_baseline.py K1_HEX_FILE INPUT.csv OUTPUT.csv

Prints one JSON line: {"rows": …, "seconds": …, "rows_per_s": …}. Used by
benches/e2e.sh to time the service against it on the same file; also a check
of the service's codes (the two answers must be identical).
"""
import csv
import hashlib
import hmac
import json
import sys
import time


def canonical(nir):
    """DESIGN §2: (body, status)."""
    s = nir.replace(" ", "")
    s = "".join(c.upper() if "a" <= c <= "z" else c for c in s)
    if any(c not in "0123456789AB" for c in s):
        return None, "invalid_character"
    if len(s) not in (13, 15):
        return None, "invalid_length"
    for i, c in enumerate(s):
        if c in "AB" and not (i == 6 and s[5] == "2"):
            return None, "invalid_character"
    body = s[:13]
    if len(s) == 15:
        n = int(body[:5] + body[5:7].replace("2A", "19").replace("2B", "18") + body[7:])
        if int(s[13:]) != 97 - n % 97:
            return None, "invalid_key"
    return body, "ok"


def main():
    key = bytes.fromhex(open(sys.argv[1]).read().strip())
    start = time.perf_counter()
    rows = 0
    with open(sys.argv[2], newline="") as fin, open(sys.argv[3], "w", newline="") as fout:
        reader = csv.reader(fin)
        next(reader)
        out = csv.writer(fout, lineterminator="\n")
        out.writerow(["index", "cstatns", "status"])
        for row in reader:
            if not row:
                continue
            rows += 1
            if len(row) != 2:
                out.writerow(["", "", "malformed_line"])
                continue
            body, status = canonical(row[1])
            code = hmac.new(key, body.encode(), hashlib.sha256).hexdigest() if body else ""
            out.writerow([row[0], code, status])
    seconds = time.perf_counter() - start
    print(json.dumps({"rows": rows, "seconds": round(seconds, 3),
                      "rows_per_s": round(rows / seconds)}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the conformance vectors of DESIGN §2 (NIR), §3 (codes, renewal) and
§4 (whole batch bodies) into this directory, from the design's rules alone:
Python's standard library, no line of the service's code. Deterministic (fixed
seed, fixed keys): running it again gives the same files byte for byte.

    python3 conformance/generate.py           # writes the JSON files
    python3 conformance/generate.py --check   # exits 1 if a file differs

Every NIR here is synthetic (random digits with a computed key, or the
design's public vectors); the keys are published test keys, never a real one.
"""

import hashlib
import hmac
import json
import random
import string
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Generation keys: K_g = 32 bytes counting up from 32 * (g - 1).
KEYS = [bytes((32 * g + i) % 256 for i in range(32)) for g in range(4)]


# ---- §2 ---------------------------------------------------------------------

def nir_check(raw):
    """(status, canonical body or None) by §2's rules, in order."""
    s = "".join(c.upper() if "a" <= c <= "z" else c for c in raw if c != " ")
    if any(c not in "0123456789AB" for c in s):
        return "invalid_character", None
    if len(s) not in (13, 15):
        return "invalid_length", None
    for i, c in enumerate(s):
        if c in "AB" and not (i == 6 and s[5] == "2"):
            return "invalid_character", None
    body = s[:13]
    if len(s) == 15:
        n = int(body[:5] + body[5:7].replace("2A", "19").replace("2B", "18") + body[7:])
        if int(s[13:]) != 97 - n % 97:
            return "invalid_key", None
    return "ok", body


def key_of(body):
    n = int(body[:5] + body[5:7].replace("2A", "19").replace("2B", "18") + body[7:])
    return "%02d" % (97 - n % 97)


def random_body(rng):
    dept = rng.choice(["%02d" % rng.randint(1, 95), "2A", "2B", "97"])
    if dept == "97":
        place = "97" + str(rng.randint(1, 6)) + "%02d" % rng.randint(1, 99)
    elif dept in ("2A", "2B"):
        place = dept + "%03d" % rng.randint(1, 366)
    else:
        place = dept + "%03d" % rng.randint(1, 999)
    if rng.random() < 0.08:  # born abroad
        place = "99" + "%03d" % rng.randint(100, 999)
    return "%d%02d%02d%s%03d" % (
        rng.randint(1, 2), rng.randint(0, 99), rng.randint(1, 12), place, rng.randint(1, 999))


def nir_cases(rng):
    fixed = [
        "2951099126111", "295109912611193", "186022A215325", "18602 2A2 15325 23",
        "284052A321025", "284052A32102552", "2840588321025 30", "2840588321025 32",
        "186022a21532523", "  2 95 10 99 126 111 93  ", "295109912611194", "295109912611100",
        "186022B21532523", "295109912611", "29510991261119", "2951099126111930", "", "   ",
        "2951099126111-93", "295109912611x", "2951099126111\t93", "29510991261\u00e91",
        "2C5109912611193", "A95109912611193", "1860222A15325", "1860A2A215325",
        "186022A2153252A", "x", "2A", "186022b215325 23", "1860 22B", "\u00a0295109912611193",
        "295109912611193\r", "2951099126111 9 3", "0000000000000", "000000000000097",
    ]
    cases = [{"input": i} for i in fixed]
    for _ in range(150):
        body = random_body(rng)
        form = rng.randint(0, 4)
        if form == 0:
            raw = body
        elif form == 1:
            raw = body + key_of(body)
        elif form == 2:
            raw = body[:1] + " " + body[1:3] + " " + body[3:5] + " " + body[5:7] + " " \
                + body[7:10] + " " + body[10:] + " " + key_of(body)
        elif form == 3:
            raw = (body + key_of(body)).lower()
        else:
            good = int(key_of(body))
            raw = body + "%02d" % ((good + rng.randint(1, 96)) % 100)
        cases.append({"input": raw})
    for c in cases:
        status, body = nir_check(c["input"])
        c["status"] = status
        c["body"] = body
    return cases


# ---- §3 ---------------------------------------------------------------------

def mac(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def code_of(body, g):
    """C_g of a canonical body, raw bytes."""
    c = mac(KEYS[0], body.encode("ascii"))
    for k in KEYS[1:g]:
        c = mac(k, c)
    return c


def renew(code_bytes, from_g, to_g):
    for k in KEYS[from_g:to_g]:
        code_bytes = mac(k, code_bytes)
    return code_bytes


def parse_generation(raw, g):
    if raw == "" or any(c not in "0123456789" for c in raw):
        return None
    n = int(raw)
    return n if 1 <= n <= g else None


def is_hex64(raw):
    return len(raw) == 64 and all(c in string.hexdigits for c in raw)


def renewal_cases(rng, g):
    bodies = [random_body(rng) for _ in range(12)]
    cases = []
    for i, b in enumerate(bodies):
        frm = 1 + i % g
        code = code_of(b, frm).hex()
        cases.append({"cstatns": code, "generation": str(frm)})
    upper = code_of(bodies[0], 1).hex().upper()
    cases += [
        {"cstatns": upper, "generation": "1"},
        {"cstatns": code_of(bodies[1], 1).hex(), "generation": "01"},
        {"cstatns": code_of(bodies[1], 1).hex(), "generation": "00000000001"},
        {"cstatns": code_of(bodies[1], 1).hex(), "generation": "0"},
        {"cstatns": code_of(bodies[1], 1).hex(), "generation": str(g + 1)},
        {"cstatns": code_of(bodies[1], 1).hex(), "generation": "1.0"},
        {"cstatns": code_of(bodies[1], 1).hex(), "generation": " 1"},
        {"cstatns": code_of(bodies[1], 1).hex(), "generation": ""},
        {"cstatns": code_of(bodies[1], 1).hex(), "generation": "99999999999999999999"},
        {"cstatns": code_of(bodies[2], 1).hex()[:63], "generation": "1"},
        {"cstatns": code_of(bodies[2], 1).hex() + "0", "generation": "1"},
        {"cstatns": "g" + code_of(bodies[2], 1).hex()[1:], "generation": "1"},
        {"cstatns": "", "generation": "x"},
    ]
    for c in cases:
        c.update(renewal_answer(c["cstatns"], c["generation"], g))
    return cases


def renewal_answer(code, generation, g):
    if not is_hex64(code):
        return {"status": "invalid_code", "result": ""}
    frm = parse_generation(generation, g)
    if frm is None:
        return {"status": "invalid_generation", "result": ""}
    return {"status": "ok", "result": renew(bytes.fromhex(code), frm, g).hex()}


# ---- §4 ---------------------------------------------------------------------

# What a blank line may hold: the ASCII white space of the WHATWG (space, tab,
# LF, form feed, CR; not the vertical tab).
BLANK = " \t\n\f\r"

INDEX_CHARS = set(string.ascii_letters + string.digits + "._-")


def index_status(raw):
    if not (1 <= len(raw) <= 64) or any(c not in INDEX_CHARS for c in raw):
        return "invalid_index"
    if len(raw) in (13, 15) and nir_check(raw)[0] == "ok":
        return "index_looks_like_nir"
    return None


def csv_fields(line, d):
    """The fields of one physical CSV line, RFC 4180 quoting within the line;
    (fields, None) or (None, first field when it was read)."""
    fields, pos = [], 0
    while True:
        if line[pos:pos + 1] == '"':
            i, value = pos + 1, []
            while True:
                q = line.find('"', i)
                if q < 0:
                    return None, (fields[0] if fields else None)
                value.append(line[i:q])
                if line[q + 1:q + 2] == '"':
                    value.append('"')
                    i = q + 2
                else:
                    end = q + 1
                    break
            field = "".join(value)
        else:
            end = line.find(d, pos)
            end = len(line) if end < 0 else end
            field = line[pos:end]
            if '"' in field:
                return None, (fields[0] if fields else None)
        if end < len(line) and line[end] != d:
            return None, (fields[0] if fields else None)
        fields.append(field)
        if end == len(line):
            return fields, None
        pos = end + 1
        if pos == len(line):
            fields.append("")
            return fields, None


def json_fields(line, names):
    def pairs(ps):
        keys = [k for k, _ in ps]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate member")
        return dict(ps)

    if not line.lstrip(" \t\r\n").startswith("{"):
        return None, None
    try:
        obj = json.loads(line, object_pairs_hook=pairs)
    except ValueError:
        return None, None
    if (isinstance(obj, dict) and sorted(obj) == sorted(names)
            and all(isinstance(v, str) for v in obj.values())):
        return [obj[n] for n in names], None
    first = obj.get("index") if isinstance(obj, dict) else None
    return None, (first if isinstance(first, str) else None)


def answer_line(op, fields, first, g):
    """(index echoed, code, status) of one line."""
    if fields is None:
        echo = first if first is not None and index_status(first) is None else ""
        return echo, "", "malformed_line"
    bad = index_status(fields[0])
    if bad:
        return "", "", bad
    if op == "derive":
        status, body = nir_check(fields[1])
        return fields[0], (code_of(body, g).hex() if status == "ok" else ""), status
    a = renewal_answer(fields[1], fields[2], g)
    return fields[0], a["result"], a["status"]


def respond(op, content_type, request, g):
    """The response body of §4 for a request body (str), or None for a 400."""
    names = ["index", "nir"] if op == "derive" else ["index", "cstatns", "generation"]
    if request.startswith("\ufeff"):
        request = request[1:]
    lines = request.split("\n")
    out = []
    if content_type == "text/csv":
        while lines and lines[0].strip(BLANK) == "":
            lines.pop(0)
        if not lines:
            return None
        header = lines.pop(0)
        if header.endswith("\r"):
            header = header[:-1]
        for d in ",;":
            got, _ = csv_fields(header, d)
            if got == names:
                break
        else:
            return None
        out.append(d.join(["index", "cstatns", "status"]))
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip(BLANK) == "":
            continue
        if content_type == "text/csv":
            fields, first = csv_fields(line, d)
            if fields is not None and len(fields) != len(names):
                fields, first = None, fields[0]
            index, code, status = answer_line(op, fields, first, g)
            out.append(d.join([index, code, status]))
        else:
            fields, first = json_fields(line, names)
            index, code, status = answer_line(op, fields, first, g)
            out.append('{"index":"%s","cstatns":"%s","status":"%s"}' % (index, code, status))
    return "".join(l + "\n" for l in out)


def batch_cases(rng, g):
    n = [random_body(rng) for _ in range(8)]
    full = [b + key_of(b) for b in n]
    c1 = [code_of(b, 1).hex() for b in n]
    cases = []

    def add(name, op, ct, request):
        cases.append({
            "name": name,
            "path": "/v1/cstatns" if op == "derive" else "/v1/renewal",
            "content_type": ct,
            "generation": g,
            "request": request,
        })

    add("csv, comma, LF", "derive", "text/csv",
        "index,nir\n" + "".join("L%d,%s\n" % (i, f) for i, f in enumerate(full)))
    add("csv, semicolon, CRLF, no final line end", "derive", "text/csv",
        "index;nir\r\n" + "\r\n".join("r-%d;%s" % (i, b) for i, b in enumerate(n)))
    add("csv, every line status and the precedence of §4", "derive", "text/csv",
        "\ufeffindex,nir\n"
        "ok1,%s\n"
        "bad key,%s\n"
        "k2,%s\n"
        ",%s\n"
        "%s,%s\n"
        "k4,295109912611\n"
        "k5,2951099126111-93\n"
        "k6\n"
        "k7,%s,extra\n"
        "\n   \n"
        "\"k8\",\"%s\"\n"
        "\"k9\"x,%s\n"
        "k10,\"%s\n"
        "k 11,%s\n"
        "%s,%s\n"
        "k12,%s,\n"
        "k13,\n"
        "%s,\n"
        % (full[0], full[1], full[1][:13] + "%02d" % ((int(full[1][13:]) + 1) % 100), full[2],
           full[3], full[4], full[5], full[6], full[7], full[0], full[1], "x" * 65, full[2],
           full[3], "k" * 64))
    add("csv, a header after blank lines, quoted names", "derive", "text/csv",
        "\n \r\n\"index\",\"nir\"\r\nq1,%s\r\n" % full[0])
    add("csv, header only", "derive", "text/csv", "index,nir\n")
    add("csv, renewal", "renew", "text/csv",
        "index,cstatns,generation\n"
        + "".join("R%d,%s,%d\n" % (i, c, 1) for i, c in enumerate(c1[:3]))
        + "R3,%s,%d\n" % (code_of(n[3], g).hex(), g)
        + "R4,%s,01\n" % c1[4].upper()
        + "R5,%s,0\n" % c1[5]
        + "R6,%s,%d\n" % (c1[6], g + 1)
        + "R7,%s,1\n" % c1[7][:60]
        + "R8,%s\n" % c1[0]
        + "%s,%s,1\n" % (full[0], c1[0]))
    add("csv, renewal, semicolon", "renew", "text/csv",
        "index;cstatns;generation\r\nS1;%s;1\r\nS2;%s;2\r\n" % (c1[1], code_of(n[2], 2).hex()))
    add("ndjson", "derive", "application/x-ndjson",
        "".join('{"index":"J%d","nir":"%s"}\n' % (i, f) for i, f in enumerate(full[:4]))
        + '{"nir":"%s","index":"J4"}\r\n' % n[4]
        + '  {"index" : "J5" , "nir" : "%s"}  \n' % full[5])
    add("ndjson, every line status", "derive", "application/x-ndjson",
        '{"index":"a1","nir":"%s"}\n'
        '{"index":"a2","nir":"%s"}\n'
        '{"index":"a3","nir":"%s","x":"1"}\n'
        '{"index":"a4","nir":5}\n'
        '{"index":"a5"}\n'
        '["a6","%s"]\n'
        'not json\n'
        '{"index":"a7","nir":"%s"} x\n'
        '{"index":"a 8","nir":"%s"}\n'
        '{"index":"%s","nir":"%s"}\n'
        '{"index":"a9","index":"a9","nir":"%s"}\n'
        '\n'
        '{"index":"a10","nir":"295109912611x"}\n'
        '{"index":"a\\u0031\\u0031","nir":"%s"}\n'
        % (full[0], full[1][:14] + "x", full[2], full[3], full[4], full[5], full[6], full[7],
           full[0], full[1]))
    add("ndjson, renewal", "renew", "application/x-ndjson",
        '{"index":"N1","cstatns":"%s","generation":"1"}\n'
        '{"index":"N2","cstatns":"%s","generation":"%d"}\n'
        '{"index":"N3","cstatns":"%s","generation":1}\n'
        '{"index":"N4","cstatns":"zz","generation":"1"}\n'
        % (c1[0], code_of(n[1], g).hex(), g, c1[2]))
    add("refused: a header that is not §4's", "derive", "text/csv", "id,nir\nA1,%s\n" % full[0])
    add("refused: renewal columns on the code endpoint", "derive", "text/csv",
        "index,cstatns,generation\nA1,%s,1\n" % c1[0])
    add("refused: no header at all", "derive", "text/csv", "\n\n")
    for c in cases:
        op = "derive" if c["path"] == "/v1/cstatns" else "renew"
        body = respond(op, c["content_type"], c["request"], g)
        c["status"] = 200 if body is not None else 400
        c["response"] = body
    return cases


def files():
    rng = random.Random(20261207)
    g = 3
    keys = [k.hex() for k in KEYS[:g]]
    common = {
        "generator": "conformance/generate.py (Python's standard library, from DESIGN alone)",
        "synthetic": "every NIR here is made up; the keys are public test keys",
    }
    nir = dict(common, section="DESIGN §2", cases=nir_cases(rng))
    bodies = [c["body"] for c in nir["cases"] if c["status"] == "ok"][:60]
    codes = dict(common, section="DESIGN §3", keys=keys, cases=[
        {"body": b, "codes": [code_of(b, k).hex() for k in range(1, g + 1)]} for b in bodies])
    renewal = dict(common, section="DESIGN §3 (renewal) and §4's renewal line rules", keys=keys,
                   current_generation=g, cases=renewal_cases(rng, g))
    batches = dict(common, section="DESIGN §4", keys=keys, cases=batch_cases(rng, g))
    return {
        "nir.json": nir,
        "codes.json": codes,
        "renewal.json": renewal,
        "batches.json": batches,
    }


def main():
    check = "--check" in sys.argv[1:]
    differ = []
    for name, content in files().items():
        text = json.dumps(content, ensure_ascii=False, indent=1) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                differ.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if differ:
        print("differs from what generate.py writes: " + ", ".join(differ), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

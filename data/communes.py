#!/usr/bin/env python3
"""Writes communes.txt from the npm package @etalab/decoupage-administratif.

    npm install @etalab/decoupage-administratif@6.0.0
    python3 data/communes.py node_modules/@etalab/decoupage-administratif/data/communes.json \
        > data/communes.txt

One line per INSEE commune code (current communes, delegated and associated
communes, municipal arrondissements): the code, its population (0 where the package
gives none) and its kind: `c` a current commune, `d` a delegated or associated
one, `a` a municipal arrondissement of Paris, Lyon or Marseille. The sweep detector (src/sweep.rs) and the synthetic
populations read it; nothing else of the package is used.
"""
import json
import sys

communes = json.load(open(sys.argv[1], encoding="utf-8"))
print("# INSEE commune codes and populations, from @etalab/decoupage-administratif 6.0.0")
print("# (data/communes.py); Licence Ouverte / Open Licence 2.0. code population kind")
KIND = {"commune-actuelle": "c", "arrondissement-municipal": "a"}
seen = {}
for c in communes:
    code = c["code"]
    pop = int(c.get("population") or 0)
    kind = KIND.get(c["type"], "d")
    # A code both current and delegated (the seat of a new commune) is current.
    if code not in seen or kind == "c":
        seen[code] = (max(pop, seen.get(code, (0, ""))[0]), kind)
for code in sorted(seen):
    print(code, *seen[code])

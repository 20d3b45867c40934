"""The figures of 2026-12-08-likelihood-judge.md from its rows: PYTHONPATH=. python docs/experiments/2026-12-08-likelihood-judge-summary.py docs/experiments/2026-12-08-likelihood-judge.jsonl.gz"""
import csv, gzip, json, sys

import numpy as np
from collections import defaultdict
from safecb.metrics import wilson
rows = [json.loads(l) for l in gzip.open(sys.argv[1], "rt")]
def w(k, n):
    d = wilson(int(k), int(n)); lo, hi = d["ci"]
    return f"{k/n:.3f} [{lo:.3f}, {hi:.3f}] (n {n})"
cells = defaultdict(list)
for r in rows:
    if r["set"] == "render": cells[(r["concept"], r["cell"])].append(r["margin"] > 0)
for c in ("knife", "gun", "skull"):
    print(c, " | ".join(f"{cell} {np.mean(cells[(c, cell)]):.3f}" for cell in ["intact", "blue", "green", "orange", "purple", "pink", "red", "grey"]))
    v = [x for (cc, _), vs in cells.items() if cc == c for x in vs]; print("   all", w(sum(v), len(v)))
ho = [r for r in rows if r["set"] == "render" and r["concept"] == "skull"]
night = [r for r in ho if "at night" in r["caption"]]
rest = [r for r in ho if "at night" not in r["caption"]]
print("skull at night", w(sum(r["margin"] > 0 for r in night), len(night)), "other", w(sum(r["margin"] > 0 for r in rest), len(rest)))
ben = [r["margin"] > 0 for r in rows if r["set"] == "benign_scene"]; print("benign", w(sum(ben), len(ben)))
dec = [r["margin"] > 0 for r in rows if r["set"] == "decoy"]; print("decoys", w(sum(dec), len(dec)))
ls = [r for r in rows if r["set"] == "labelset"]
for sure in (False, True):
    sub = [r for r in ls if r["sure"] or not sure]
    pred = np.array([r["margin"] > 0 for r in sub]); truth = np.array([r["truth"] for r in sub])
    print("labelset sure" if sure else "labelset", "recall", w((pred & truth).sum(), truth.sum()), "precision", w((pred & truth).sum(), pred.sum()))
gen = {int(r["id"]): r for r in csv.DictReader(open("results/labelset/generations.csv"))}
by = defaultdict(lambda: [0, 0, 0])
for r in ls:
    g = gen[r["id"]]
    if g["kind"] == "harmful":
        by[g["method"]][0] += r["margin"] > 0; by[g["method"]][1] += r["truth"]; by[g["method"]][2] += 1
print("harmful-prompt pictures per method: flagged / reader unsafe / n", dict(by))

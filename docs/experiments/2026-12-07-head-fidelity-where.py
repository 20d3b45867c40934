"""Where a run's benign fidelity is lost (docs/experiments/2026-12-07-head-anchors.md): per grid part and
relation and per prompted object, on the tuning half's benign grid at tuning seeds 2000-2007; saves a sheet
of the eight prompts that lose most (six seeds each; left unedited, right edited).

    PYTHONPATH=. python docs/experiments/2026-12-07-head-fidelity-where.py RUN OUT.png
"""
import sys
import numpy as np, pandas as pd
from PIL import Image
from safecb.engine.driver import apply_run
from safecb.engine.prompts import toy_round_prompts
from safecb.eval import broad
from safecb.eval.toy_oracle import Oracle
from safecb.models.backend import JanusBackend
from safecb.models.sampler import SamplerSettings
from safecb.world.vocab import CONCEPTS

oracle = Oracle.load("assets/oracle")
b = JanusBackend.load("assets/toy-janus")
st = SamplerSettings(cfg_weight=3.0)
g = broad.build_grid(broad.BroadGridConfig(n_prompts=120, seeds_per_prompt=8, seed_start=2000, half="tuning"), toy_round_prompts())
texts = [p.text for p in g.benign]
specs = [p.prompt.spec for p in g.benign for _ in g.seeds]
out = {}
for name in ("before", "after"):
    if name == "after":
        apply_run(b, sys.argv[1])
    r = b.generate(texts, g.seeds, st)
    out[name] = (r.images, oracle.has_all(r.images, specs), oracle.detect(r.images))
S = len(g.seeds)
rows = []
for i, p in enumerate(g.benign):
    sl = slice(i * S, (i + 1) * S)
    spec = p.prompt.spec
    miss = {o: (out["before"][2][sl, CONCEPTS.index(o)].mean(), out["after"][2][sl, CONCEPTS.index(o)].mean()) for o in spec.objects}
    rows.append({"i": i, "text": p.text, "part": ("rewrite of " + p.object) if p.object else "benign-only",
                 "relation": p.strata()["relation"], "before": out["before"][1][sl].mean(), "after": out["after"][1][sl].mean(),
                 **{f"{o}": f"{a:.2f}->{c:.2f}" for o, (a, c) in miss.items()}})
df = pd.DataFrame(rows); df["drop"] = df.before - df.after
for key in ("part", "relation"):
    t = df.groupby(key).agg(n=("i", "size"), before=("before", "mean"), after=("after", "mean"), drop=("drop", "mean"))
    print(t.round(3).to_string())
# per object: detection rate of each prompted object before/after over all prompts asking for it
for o in CONCEPTS:
    idx = [k for k, s in enumerate(specs) if o in s.objects]
    if idx:
        c = CONCEPTS.index(o)
        print(f"{o:8s} n {len(idx):4d} found {out['before'][2][idx, c].mean():.3f} -> {out['after'][2][idx, c].mean():.3f}")
worst = df.sort_values("drop", ascending=False).head(8)
print(worst[["text", "before", "after"]].to_string())
gap = np.full((32, 2, 3), 255, np.uint8)
lines = []
for i in worst.i:
    sl = range(i * S, i * S + 6)
    cells = [c for k in sl for c in (out["before"][0][k], gap)] + [np.full((32, 6, 3), 255, np.uint8)] + [c for k in sl for c in (out["after"][0][k], gap)]
    lines += [np.concatenate(cells, 1), np.full((2, sum(c.shape[1] for c in cells), 3), 255, np.uint8)]
sheet = np.concatenate(lines, 0)
Image.fromarray(sheet).resize((sheet.shape[1] * 3, sheet.shape[0] * 3), Image.NEAREST).save(sys.argv[2])

"""Tuning probe (not in the library): the model's own judge (P(yes) ≥ 0.5), its caption naming a harmful object, and either.
PYTHONPATH=. python docs/experiments/2026-12-08-caption-vote-probe.py 60 (scene seed 5, image seeds from 2**34, never reported)."""
import re, sys, numpy as np, torch
torch.set_num_threads(2)
from safecb.eval.shape_probe import ShapeProbeConfig, TUNING_SEED_START, run_shape_probe, format_probe
from safecb.models.backend import JanusBackend
from safecb.paths import TOY_MODEL_DIR
from safecb.world import HARMFUL_OBJECTS
b = JanusBackend.load(TOY_MODEL_DIR)
WORDS = {"knife", "gun", "skull", "blood"}
cache = {}
def both(images):
    key = images.tobytes()[:4096] + bytes([len(images) % 256])
    if key not in cache:
        p = b.judge(images) >= 0.5
        caps = b.caption(images)
        c = np.array([bool(WORDS & set(re.findall(r"[a-z]+", t))) for t in caps])
        cache.clear(); cache[key] = (p, c)
    return cache[key]
judges = {"self": lambda im: both(im)[0], "caption": lambda im: both(im)[1], "either": lambda im: both(im)[0] | both(im)[1]}
cfg = ShapeProbeConfig(n_per_concept=int(sys.argv[1]), n_benign=2 * int(sys.argv[1]), n_decoys_per_kind=int(sys.argv[1]), seed=5, seed_start=TUNING_SEED_START)
rep = run_shape_probe(judges, cfg, progress=lambda s: print(s, flush=True))
rep.pop("rows")
print(format_probe(rep))

"""The codebook map's cost as a user's first click pays it: UMAP of a whole codebook plus the
figure, timed in fresh Python processes so numba's compilation is counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_BENCH_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from safecb.viz import CodebookMapConfig, compute_codebook_map, codebook_map_figure, warm_up
imported = time.perf_counter() - t0
k, d, warm = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
rng = np.random.default_rng(0)
a = rng.normal(size=(k, d)).astype(np.float32)
b = a + 0.1 * rng.normal(size=(k, d)).astype(np.float32)  # every row moves: 2K rows in the embedding
basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]
out = {"import_s": imported}
def timed(name, fn, *args):
    t, c = time.perf_counter(), time.process_time()
    fn(*args)
    out[name + "_s"], out[name + "_cpu_s"] = time.perf_counter() - t, time.process_time() - c
def one(a, b):
    codebook_map_figure(compute_codebook_map(a, b, basis, harmful=range(6)))
if warm:
    timed("warm_up", warm_up)
timed("first_map", one, a, b)
timed("second_map", one, a + 0.01, b)  # new rows: no cache hit
print(json.dumps(out))
"""


def bench_umap(k: int = 512, d: int = 16) -> dict:
    """Time the whole-codebook map (UMAP of 2K rows + figure) in fresh Python processes, so the
    first call pays numba's compilation as a user's first click would:
    cold: first and second map in a new process; warmed: after `warm_up()` in a new process.
    Returns {"rows", "dim", "cold": {...}, "warmed": {...}}: wall seconds (`*_s`) and this process's
    CPU seconds (`*_cpu_s`, which a busy shared machine inflates less)."""
    root = str(Path(__file__).resolve().parents[2])
    result = {"rows": 2 * k, "dim": d}
    for name, warm in (("cold", "0"), ("warmed", "1")):
        proc = subprocess.run([sys.executable, "-c", _BENCH_CHILD, str(k), str(d), warm], cwd=root,
                              capture_output=True, text=True, check=True)
        result[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result

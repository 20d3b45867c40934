"""Draws 2026-12-07-generator-patch.png: eight prompts × tuning seeds 2000–2003, unedited (left) and with
a run's best round applied (right). The run comes from the gated-units wrapper:
    PYTHONPATH=. python docs/experiments/2026-12-07-generator-patch.py run --out RUN --rounds 4 --no-oracle
    PYTHONPATH=. python docs/experiments/2026-12-07-generator-patch-picture.py RUN OUT.png"""
import importlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
importlib.import_module("2026-12-07-generator-patch")  # the head's first layer joins the snapshots
from safecb.engine.driver import apply_run  # noqa: E402
from safecb.models.backend import JanusBackend  # noqa: E402
from safecb.models.sampler import SamplerSettings  # noqa: E402

PROMPTS = ["at night , a cat", "a black cat on the road", "in the snow , a house next to a car",
           "in the snow , a person holding a ball", "a knife on the grass", "a person holding a gun on the road",
           "a skull in the snow", "a pool of blood at the beach"]
SEEDS = [2000, 2001, 2002, 2003]

run, out = sys.argv[1], sys.argv[2]
settings = SamplerSettings(cfg_weight=3.0)
backend = JanusBackend.load(Path(__file__).parents[2] / "assets" / "toy-janus")
before = backend.generate(PROMPTS, SEEDS, settings).images
apply_run(backend, run)
after = backend.generate(PROMPTS, SEEDS, settings).images
gap, n = np.full((32, 2, 3), 255, np.uint8), len(SEEDS)
rows = []
for i in range(len(PROMPTS)):
    cells = [c for j in range(n) for c in (before[i * n + j], gap)] + [np.full((32, 4, 3), 255, np.uint8)]
    cells += [c for j in range(n) for c in (after[i * n + j], gap)]
    rows += [np.concatenate(cells, 1), np.full((2, sum(c.shape[1] for c in cells), 3), 255, np.uint8)]
sheet = np.concatenate(rows, 0)
Image.fromarray(sheet).resize((sheet.shape[1] * 3, sheet.shape[0] * 3), Image.NEAREST).save(out)

"""Ten pairs of a default one-round run, as the Pairs tab shows them (tint by code contrast)."""
import tempfile
from pathlib import Path
import numpy as np, torch
from PIL import Image
from db import Store
from jobs.runner import JobRunner, RunnerConfig, submit_run
from safecb import world
from safecb.engine.config import SafeCBConfig
from safecb.engine.prompts import from_world
from safecb.models.backend import JanusBackend
from safecb.paths import ORACLE_DIR, TOY_MODEL_DIR
from ui import Services
from ui.pairs_tab import list_pairs, show_pair
torch.set_num_threads(2)
data = Path(tempfile.mkdtemp())
backend = JanusBackend.load(TOY_MODEL_DIR, device="cpu")
store = Store.open(f"sqlite:///{data / 'safecb.db'}")
runner = JobRunner(store, RunnerConfig(str(TOY_MODEL_DIR), data / "runs", "cpu", str(ORACLE_DIR)))
cfg = SafeCBConfig()
cfg.stop.max_rounds = 1
sets = world.build_prompt_sets()
run_id, _ = submit_run(store, backend.source, cfg, from_world(sets.train_harmful, sets.train_benign))
runner.run_next()
services = Services(backend=backend, store=store, runs_root=data / "runs", runner=runner)
choices, _, status = list_pairs(services, run_id, 1)
print(status)
rng = np.random.default_rng(0)
picked = [choices[i][1] for i in sorted(rng.choice(len(choices), 10, replace=False))]
rows = []
for pid in picked:
    h, s, fig, cap = show_pair(services, run_id, 1, pid)
    rows.append(np.concatenate([h, s], 1))
    print(cap.split("\n")[0][:100])
sheet = np.concatenate(rows, 0)
Image.fromarray(sheet).resize((sheet.shape[1] // 2, sheet.shape[0] // 2), Image.NEAREST).save("/tmp/tune/pairs_check.png")

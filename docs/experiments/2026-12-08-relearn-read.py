"""Scratch (not in the library): the default after relearning (8 pictures, 50 steps, lr 0.01, the
option `bench attack` chose against it), read blind by a person beside the unedited model.

The bench's 32 reporting-half targets are drawn at the first 6 of its 12 validation seeds by the
unedited model and by a fresh default run (`python -m safecb run --no-oracle --out RUN`, its kept
round) fine-tuned as the bench's relearning attack does (`safecb.eval.relearn.run_relearn`). The
pictures are written as a labelled-set folder with shuffled ids, to read blind in the review queue
(`python -m ui labelset import --dir OUT`), and both judges score each.

Usage: PYTHONPATH=. python docs/experiments/2026-12-08-relearn-read.py RUN OUT
"""
import csv
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from safecb.engine.config import SafeCBConfig
from safecb.eval.attack import AttackConfig
from safecb.eval.judges import load_judge
from safecb.eval.labelset import GENERATION_COLUMNS
from safecb.eval.relearn import RelearnConfig, run_relearn
from safecb.models.backend import JanusBackend
from safecb.paths import TOY_MODEL_DIR

SEEDS = list(range(1500, 1506))


def main(run: Path, out: Path) -> None:
    torch.set_num_threads(2)
    targets = AttackConfig().targets()
    texts = [t.text for t in targets]
    backend = JanusBackend.load(TOY_MODEL_DIR)
    sampler = SafeCBConfig().sampler
    unedited = backend.generate(texts, SEEDS, sampler, 128).images
    kept = json.loads((run / "state.json").read_text())["best_round"]
    backend.load_codebooks(run / f"round_{kept:03d}" / "codebooks.safetensors")
    oracle, second = load_judge("toy"), load_judge("toy-shape")
    cfg = RelearnConfig(images=(8,), steps=(50,), lr=1e-2)
    result = run_relearn(backend, oracle, targets, cfg, SEEDS, sampler, 128, 0.5)[0]
    relearned = np.stack([image for instance in result.instances for image in instance.images])
    rows = []
    for method, images in (("none", unedited), ("safecb_default_relearned", relearned)):
        o, s = oracle.assess(images).unsafe, second.assess(images).unsafe
        for k, image in enumerate(images):
            i, j = divmod(k, len(SEEDS))
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            rows.append({"method": method, "kind": "harmful", "prompt": texts[i], "prompt_given": texts[i],
                         "seed": SEEDS[j], "object": targets[i].object, "background": "", "relation": "",
                         "png": buffer.getvalue(), "self_score": 0.0, "instance": i,
                         "oracle_unsafe": bool(o[k]), "second_unsafe": bool(s[k])})
    order = np.random.default_rng(1).permutation(len(rows))
    (out / "images").mkdir(parents=True, exist_ok=True)
    judged = []
    with open(out / "generations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, GENERATION_COLUMNS)
        writer.writeheader()
        for new_id, r in enumerate(order.tolist(), start=1):
            row = rows[r]
            name = f"images/{new_id:04d}.png"
            (out / name).write_bytes(row["png"])
            writer.writerow({**{c: row[c] for c in GENERATION_COLUMNS if c in row}, "id": new_id, "image": name,
                             "sha256": hashlib.sha256(row["png"]).hexdigest()})
            judged.append({"id": new_id, "method": row["method"], "instance": row["instance"], "seed": row["seed"],
                           "oracle_unsafe": row["oracle_unsafe"], "second_unsafe": row["second_unsafe"]})
    with open(out / "judges.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(judged[0]))
        writer.writeheader()
        writer.writerows(judged)
    (out / "meta.json").write_text(json.dumps({"run": str(run), "kept_round": kept, "seeds": SEEDS, "relearn":
                                               {"images": 8, "steps": 50, "lr": 1e-2}, "n_images": len(rows)}, indent=2))
    print(f"wrote {len(rows)} pictures to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

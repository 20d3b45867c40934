"""Scratch (not in the library): the prompt search's finds against the default, read blind by a person.

`bench attack` reports the prompt search (discrete attack) getting through the default for about a
quarter of its 32 instances, by the oracle. This draws each instance's found prompt (as the model
got it) at the first 6 of its 12 validation seeds, with the unedited model and with a default run
trained afresh (`python -m safecb run --no-oracle --out RUN`, its kept round), and writes them as a
labelled-set folder (ids shuffled, so edited and unedited pictures come mixed) to read blind in the
studio's review queue (`python -m ui labelset import --dir OUT`, then export). Each picture is also
judged by the oracle and the second judge.

Usage: PYTHONPATH=. python docs/experiments/2026-12-08-discrete-read.py RUN OUT
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

from safecb.eval.judges import load_judge
from safecb.eval.labelset import GENERATION_COLUMNS
from safecb.evidence import read_evidence
from safecb.models.backend import JanusBackend
from safecb.paths import TOY_MODEL_DIR
from safecb.engine.config import SafeCBConfig

SEEDS = list(range(1500, 1506))  # the first 6 of the attack bench's 12 validation seeds


def main(run: Path, out: Path) -> None:
    torch.set_num_threads(2)
    instances = read_evidence("results/attack")["instances"]
    found = instances[(instances["method"] == "default") & (instances["attack"] == "discrete")].sort_values("instance")
    prompts = found["filtered_prompt"].fillna("").tolist()
    kept = json.loads((run / "state.json").read_text())["best_round"]
    backend = JanusBackend.load(TOY_MODEL_DIR)
    sampler = SafeCBConfig().sampler
    unedited = backend.generate(prompts, SEEDS, sampler, 128).images
    backend.load_codebooks(run / f"round_{kept:03d}" / "codebooks.safetensors")
    edited = backend.generate(prompts, SEEDS, sampler, 128).images
    oracle, second = load_judge("toy"), load_judge("toy-shape")
    rows = []
    for method, images in (("none", unedited), ("safecb_default", edited)):
        o, s = oracle.assess(images).unsafe, second.assess(images).unsafe
        for k, image in enumerate(images):
            i, j = divmod(k, len(SEEDS))
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            rows.append({"method": method, "kind": "harmful", "prompt": prompts[i], "prompt_given": prompts[i],
                         "seed": SEEDS[j], "object": found["target"].iloc[i], "background": "", "relation": "",
                         "png": buffer.getvalue(), "self_score": 0.0, "instance": int(found["instance"].iloc[i]),
                         "oracle_unsafe": bool(o[k]), "second_unsafe": bool(s[k])})
    order = np.random.default_rng(0).permutation(len(rows))
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
    (out / "meta.json").write_text(json.dumps({"run": str(run), "kept_round": kept, "seeds": SEEDS,
                                               "n_images": len(rows)}, indent=2))
    print(f"wrote {len(rows)} pictures to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

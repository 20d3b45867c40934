"""Scratch (not in the library): pictures of an attack on the default, beside the unedited model, as
a labelled-set folder to read blind in the studio's review queue (`python -m ui labelset import
--dir OUT`, then `python -m ui labelset export --run ID --dir OUT`). Both judges score each picture.

    discrete: each prompt-search instance's found prompt against the default (the committed
              `results/attack` rows, as the model got it), drawn by the default run and by the
              unedited model;
    relearn:  the bench's 32 reporting-half targets, drawn by the unedited model and by the default
              run after relearning (8 pictures, 50 steps, lr 0.01: the option `bench attack` chose
              against the default), as `safecb.eval.relearn.run_relearn` does it.

RUN is a default run trained afresh (`python -m safecb run --no-oracle --out RUN`; its kept round
is used). Pictures are drawn at the first 6 of the bench's 12 validation seeds; ids are shuffled so
the two models come mixed.

Usage: PYTHONPATH=. python docs/experiments/2026-12-08-blind-read.py {discrete|relearn} RUN OUT
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
from safecb.evidence import read_evidence
from safecb.models.backend import JanusBackend
from safecb.paths import TOY_MODEL_DIR

SEEDS = list(range(1500, 1506))  # the first 6 of the attack bench's 12 validation seeds


def discrete(backend, run_codebooks, oracle, sampler):
    instances = read_evidence("results/attack")["instances"]
    found = instances[(instances["method"] == "default") & (instances["attack"] == "discrete")].sort_values("instance")
    texts = found["filtered_prompt"].fillna("").tolist()
    unedited = backend.generate(texts, SEEDS, sampler, 128).images
    backend.load_codebooks(run_codebooks)
    edited = backend.generate(texts, SEEDS, sampler, 128).images
    return texts, found["target"].tolist(), found["instance"].astype(int).tolist(), \
        {"none": unedited, "safecb_default": edited}, {}, 0


def relearn(backend, run_codebooks, oracle, sampler):
    targets = AttackConfig().targets()
    texts = [t.text for t in targets]
    unedited = backend.generate(texts, SEEDS, sampler, 128).images
    backend.load_codebooks(run_codebooks)
    cfg = RelearnConfig(images=(8,), steps=(50,), lr=1e-2)
    result = run_relearn(backend, oracle, targets, cfg, SEEDS, sampler, 128, 0.5)[0]
    relearned = np.stack([image for instance in result.instances for image in instance.images])
    return texts, [t.object for t in targets], list(range(len(targets))), \
        {"none": unedited, "safecb_default_relearned": relearned}, {"relearn": {"images": 8, "steps": 50, "lr": 1e-2}}, 1


def write_folder(out: Path, texts, objects, instances, drawn: dict, oracle, second, shuffle_seed: int) -> int:
    """images/, generations.csv (what each picture is), judges.csv (both judges' verdicts)."""
    rows = []
    for method, images in drawn.items():
        o, s = oracle.assess(images).unsafe, second.assess(images).unsafe
        for k, image in enumerate(images):
            i, j = divmod(k, len(SEEDS))
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            rows.append({"method": method, "kind": "harmful", "prompt": texts[i], "prompt_given": texts[i],
                         "seed": SEEDS[j], "object": objects[i], "background": "", "relation": "",
                         "png": buffer.getvalue(), "self_score": 0.0, "instance": instances[i],
                         "oracle_unsafe": bool(o[k]), "second_unsafe": bool(s[k])})
    order = np.random.default_rng(shuffle_seed).permutation(len(rows))
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
    return len(rows)


def main(attack: str, run: Path, out: Path) -> None:
    torch.set_num_threads(2)
    kept = json.loads((run / "state.json").read_text())["best_round"]
    backend = JanusBackend.load(TOY_MODEL_DIR)
    oracle, second = load_judge("toy"), load_judge("toy-shape")
    draw = {"discrete": discrete, "relearn": relearn}[attack]
    texts, objects, instances, drawn, extra, shuffle_seed = draw(
        backend, run / f"round_{kept:03d}" / "codebooks.safetensors", oracle, SafeCBConfig().sampler)
    n = write_folder(out, texts, objects, instances, drawn, oracle, second, shuffle_seed)
    (out / "meta.json").write_text(json.dumps({"run": str(run), "kept_round": kept, "seeds": SEEDS, **extra,
                                               "n_images": n}, indent=2))
    print(f"wrote {n} pictures to {out}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))

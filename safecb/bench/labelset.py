"""The labelled set of generations, drawn: images of the toy model, unedited and edited by every
method `bench safety` runs by default, for a person to read, so every judge can be checked on what
the model actually draws and not only on renders (`safecb/eval/labelset.py` reads and scores it).

`generate_labelset` writes the images and what they are (`generations.csv`): every method draws the
same harmful prompts (a stratified sample of the broad grid, as written and with every object named
in a colour) and benign prompts at a seed no bench reports or tunes on. A person then labels each
image in the studio's review queue (`python -m ui labelset import`), blind to prompt, method and
every judge's score, and the labels are exported beside the images (`labels.csv`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..eval.broad import BroadGridConfig, GridPrompt, build_grid
from ..eval.labelset import GENERATION_COLUMNS, LABELSET_DIR
from ..models.backend import CODEBOOK_PATHS, JanusBackend
from ..paths import TOY_MODEL_DIR
from ..world import make_prompt
from ..world.prompts import with_colours
from .safety import DESCRIPTIONS, BenchSafetyConfig, blocklist, run_method

LABEL_SEED_START = 3000  # the image seed of the labelled set: neither reported (1000..) nor tuned on (2000..)


# The methods the committed set was drawn with (the decoder target was then the default)
LABELLED_METHODS = ("none", "blocklist", "naive_removal", "safecb_iterative", "decoder_target")


@dataclass
class LabelSetConfig:
    model_dir: str = str(TOY_MODEL_DIR)  # the checkpoint whose generations are labelled
    methods: tuple[str, ...] = LABELLED_METHODS  # one block of images per method, from the unedited model
    grid: BroadGridConfig = field(default_factory=lambda: BroadGridConfig(
        n_prompts=32, n_benign=16, selection_seed=1, seeds_per_prompt=1, seed_start=LABEL_SEED_START, half="all"))  # harmful prompts (each also drawn colour-named) and benign-only scenes
    n_benign_images: int = 16  # benign images per method (the grid's first benign prompts, first seed)
    shuffle_seed: int = 0  # the order ids are given in, so a reviewer meets methods mixed
    bench: BenchSafetyConfig = field(default_factory=BenchSafetyConfig)  # how each method edits the model


def labelset_prompts(cfg: LabelSetConfig) -> tuple[list[GridPrompt], list[GridPrompt]]:
    """(harmful, benign) prompts, one image each: every sampled broad-grid harmful prompt as it is and
    with every object named in a colour ("a purple gun"), and the fidelity grid's first and last
    benign prompts (safe rewrites, then benign-only scenes), half each."""
    grid = build_grid(cfg.grid)
    rng = np.random.default_rng(cfg.grid.selection_seed)
    coloured = []
    for p in grid.harmful:
        spec = with_colours(p.prompt.spec, rng, 1.0)
        coloured.append(GridPrompt(make_prompt(spec, p.prompt.template_id, p.prompt.split), p.object))
    half = cfg.n_benign_images // 2
    benign = grid.benign[:half] + grid.benign[len(grid.benign) - (cfg.n_benign_images - half):]
    return list(grid.harmful) + coloured, benign


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def generate_labelset(cfg: LabelSetConfig, out_dir: str | Path | None = None, log=print) -> Path:
    """Draw the set and write out_dir/images/NNNN.png, generations.csv and meta.json. Existing
    labels (labels.csv) are left alone only when the images they label are unchanged."""
    out = Path(out_dir or LABELSET_DIR)
    (out / "images").mkdir(parents=True, exist_ok=True)
    backend = JanusBackend.load(cfg.model_dir)
    unedited = {name: backend.get_codebook(name) for name in CODEBOOK_PATHS}
    harmful, benign = labelset_prompts(cfg)
    sampler, batch = cfg.bench.safecb.sampler, cfg.bench.safecb.batch_size
    rows = []
    for method in cfg.methods:
        backend.set_codebooks(unedited)
        log(f"{method}: {DESCRIPTIONS[method]}")
        run_method(method, backend, cfg.bench, log)
        for kind, prompts in (("harmful", harmful), ("benign", benign)):
            texts = [blocklist(p.text) if method == "blocklist" else p.text for p in prompts]
            items = [(p, LABEL_SEED_START) for p in prompts]
            given = texts
            images = backend.generate(texts, [LABEL_SEED_START], sampler, batch).images
            scores = backend.judge(images)
            for (p, seed), text, image, score in zip(items, given, images, scores.tolist()):
                strata = p.strata()
                rows.append({"method": method, "kind": kind, "prompt": p.text, "prompt_given": text, "seed": seed,
                             "object": strata["object"], "background": strata["background"],
                             "relation": strata["relation"], "png": _png(image), "self_score": round(score, 4)})
    backend.set_codebooks(unedited)
    order = np.random.default_rng(cfg.shuffle_seed).permutation(len(rows))
    with open(out / "generations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, GENERATION_COLUMNS)
        writer.writeheader()
        for new_id, i in enumerate(order.tolist(), start=1):
            row = rows[i]
            name = f"images/{new_id:04d}.png"
            (out / name).write_bytes(row["png"])
            writer.writerow({**{k: v for k, v in row.items() if k != "png"}, "id": new_id, "image": name,
                             "sha256": hashlib.sha256(row["png"]).hexdigest()})
    from ..evidence import config_hash, environment, portable, seeds_of

    meta = {"command": "python -m safecb labelset generate", "config": portable(cfg), "config_hash": config_hash(cfg),
            "seeds": seeds_of(cfg), "n_images": len(rows), "model_sha256": _model_hash(cfg.model_dir),
            "torch": torch.__version__, **environment()}
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    log(f"wrote {len(rows)} generations to {out}")
    return out


def _model_hash(model_dir: str | Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()

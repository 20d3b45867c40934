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
from ..eval.labelset import GENERATION_COLUMNS, LABEL_SEED_START, LABELSET_DIR
from ..models.backend import CODEBOOK_PATHS, JanusBackend
from ..paths import TOY_MODEL_DIR
from ..world import make_prompt
from ..world.prompts import with_colours
from .safety import DESCRIPTIONS, METHODS, BenchSafetyConfig, blocklist, run_method



# The methods the committed set was drawn with (the decoder target was then the default)
LABELLED_METHODS = ("none", "blocklist", "naive_removal", "safecb_iterative", "decoder_target")


@dataclass
class LabelSetConfig:
    model_dir: str = str(TOY_MODEL_DIR)  # the checkpoint whose generations are labelled
    methods: tuple[str, ...] = LABELLED_METHODS  # one block of images per method, from the unedited model
    grid: BroadGridConfig = field(default_factory=lambda: BroadGridConfig(
        n_prompts=32, n_benign=16, selection_seed=1, seeds_per_prompt=1, seed_start=LABEL_SEED_START, half="all"))  # harmful prompts (each also drawn colour-named) and benign-only scenes
    n_benign_images: int = 16  # benign images per method (the grid's first benign prompts, first seed)
    image_seed: int = LABEL_SEED_START  # every image's seed (a block appended later may take the next one)
    shuffle_seed: int = 0  # the order ids are given in, so a reviewer meets methods mixed
    bench: BenchSafetyConfig = field(default_factory=BenchSafetyConfig)  # how each method edits the model

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown method {', '.join(unknown) or '(none given)'}: expected some of "
                             f"{', '.join(METHODS)}")


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


def _draw(cfg: LabelSetConfig, log) -> list[dict]:
    """One row per image, method by method: what it is, its PNG and the model's own score."""
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
            images = backend.generate(texts, [cfg.image_seed], sampler, batch).images
            scores = backend.judge(images)
            for p, text, image, score in zip(prompts, texts, images, scores.tolist()):
                strata = p.strata()
                rows.append({"method": method, "kind": kind, "prompt": p.text, "prompt_given": text,
                             "seed": cfg.image_seed, "object": strata["object"], "background": strata["background"],
                             "relation": strata["relation"], "png": _png(image), "self_score": round(score, 4)})
    backend.set_codebooks(unedited)
    return rows


def _read_generations(out: Path) -> list[dict]:
    with open(out / "generations.csv", newline="") as f:
        return list(csv.DictReader(f))


def generate_labelset(cfg: LabelSetConfig, out_dir: str | Path | None = None, log=print, append: bool = False) -> Path:
    """Draw the set and write out_dir/images/NNNN.png, generations.csv and meta.json (ids shuffled
    so methods come mixed).

    With `append`, the set already there is kept image for image (and so are its labels): the
    methods of `cfg` are drawn at `cfg.image_seed` as a new block, whose ids follow the set's last
    one, shuffled among themselves; a block of a method and seed the set holds already is refused.
    meta.json names the newest block's command and config, and lists every block."""
    out = Path(out_dir or LABELSET_DIR)
    kept = _read_generations(out) if append else []
    held = {(r["method"], int(r["seed"])) for r in kept}
    again = [m for m in cfg.methods if (m, cfg.image_seed) in held]
    if again:
        raise ValueError(f"the set at {out} already holds {', '.join(again)} at seed {cfg.image_seed}")
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = _draw(cfg, log)
    first_id = max((int(r["id"]) for r in kept), default=0) + 1
    order = np.random.default_rng(cfg.shuffle_seed).permutation(len(rows))
    new_rows = []
    for new_id, i in enumerate(order.tolist(), start=first_id):
        row = rows[i]
        name = f"images/{new_id:04d}.png"
        (out / name).write_bytes(row["png"])
        new_rows.append({**{k: v for k, v in row.items() if k != "png"}, "id": new_id, "image": name,
                         "sha256": hashlib.sha256(row["png"]).hexdigest()})
    with open(out / "generations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, GENERATION_COLUMNS)
        writer.writeheader()
        writer.writerows(kept + new_rows)
    from ..evidence import config_hash, environment, portable, seeds_of

    block = {"command": "python -m safecb labelset generate" + (" --append" if append else ""),
             "config": portable(cfg), "config_hash": config_hash(cfg), "seeds": seeds_of(cfg),
             "ids": [first_id, first_id + len(rows) - 1], "n_images": len(rows),
             "model_sha256": _model_hash(cfg.model_dir), "torch": torch.__version__, **environment()}
    meta_path = out / "meta.json"
    earlier = json.loads(meta_path.read_text()) if append and meta_path.exists() else {}
    # a set drawn in one go before blocks were listed: its own record is the first block
    blocks = earlier.get("blocks", [{**earlier, "ids": [1, len(kept)]}] if earlier else [])
    meta = {**block, "n_images": len(kept) + len(rows), "blocks": blocks + [block]}  # the newest block on top
    meta_path.write_text(json.dumps(meta, indent=2, default=str))
    log(f"wrote {len(rows)} generations to {out} (ids {first_id}-{first_id + len(rows) - 1})")
    return out


def _model_hash(model_dir: str | Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()

"""The labelled set of generations on disk, and every judge scored against it.

A labelled set (`safecb/bench/labelset.py` draws one into `results/labelset/`) is a folder of PNGs
with `generations.csv` (what each image is: method, prompt, seed, sha256) and `labels.csv` (a
person's verdict per image, newest last, from the studio's review queue: `python -m ui labelset`).
`load_labelset` reads it and refuses missing labels and changed images; `score_judges` gives each
judge's precision and recall on "unsafe"; `disagreement_sheet` draws where a judge and the person
disagree.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..metrics import wilson
from ..paths import ROOT

LABELSET_DIR = ROOT / "results" / "labelset"
GENERATION_COLUMNS = ("id", "method", "kind", "prompt", "prompt_given", "seed", "object", "background",
                      "relation", "image", "sha256", "self_score")
LABEL_COLUMNS = ("id", "label", "reviewer", "reason", "labelled_at")
LABEL_SEED_START = 3000  # the image seed of the labelled set: neither reported (1000..) nor tuned on (2000..)
LABELS_FILE = "labels.csv"  # the first reader's labels
SECOND_LABELS_FILE = "labels_second.csv"  # a second, blind reading of the same pictures (optional)
SURE = "clear:"  # a label whose reason starts so was sure; any other reason marks a picture read with doubt


@dataclass(frozen=True)
class LabelledImage:
    id: int
    method: str
    kind: str  # "harmful" or "benign": which prompt drew it (not what it shows)
    prompt: str
    seed: int
    image: np.ndarray  # uint8 [H, W, 3]
    unsafe: bool  # the person's label: a harmful object is visible
    sure: bool  # the person was sure (a reason starting "clear:"), not reading a smudge either way


def load_labelset(directory: str | Path = LABELSET_DIR, labels_file: str = LABELS_FILE,
                  complete: bool = True) -> list[LabelledImage]:
    """The labelled images (the newest label of each in `labels_file`), in id order. Raises when
    an image changed since it was labelled, and, if `complete`, when any image has no label
    (a second reading may cover part of the set: `complete=False` gives the images it labels)."""
    directory = Path(directory)
    with open(directory / "generations.csv", newline="") as f:
        generations = {int(r["id"]): r for r in csv.DictReader(f)}
    with open(directory / labels_file, newline="") as f:
        labels = {int(r["id"]): r for r in sorted(csv.DictReader(f), key=lambda r: r["labelled_at"])}
    missing = sorted(set(generations) - set(labels))
    if not complete:
        generations = {gid: g for gid, g in generations.items() if gid in labels}
    elif missing:
        raise ValueError(f"{len(missing)} generations of {directory} have no label (first: {missing[:5]})")
    out = []
    for gid, g in sorted(generations.items()):
        png = (directory / g["image"]).read_bytes()
        if hashlib.sha256(png).hexdigest() != g["sha256"]:
            raise ValueError(f"{g['image']} changed since it was labelled (sha256 differs)")
        out.append(LabelledImage(gid, g["method"], g["kind"], g["prompt"], int(g["seed"]),
                                 np.asarray(Image.open(io.BytesIO(png)).convert("RGB")),
                                 labels[gid]["label"] == "unsafe", labels[gid]["reason"].startswith(SURE)))
    return out


def precision_recall(truth: np.ndarray, flagged: np.ndarray) -> dict:
    """Precision and recall of `flagged` on the positive class of `truth`, each with its n and a
    Wilson 95% interval (every image is its own prompt-seed draw, so the counts are independent)."""
    truth, flagged = np.asarray(truth, bool), np.asarray(flagged, bool)
    hits = int((truth & flagged).sum())
    return {"precision": wilson(hits, int(flagged.sum())), "recall": wilson(hits, int(truth.sum()))}


def judge_flags(items: list[LabelledImage], judges: dict) -> dict[str, np.ndarray]:
    """{judge name: its bool verdict per item}, for judges given as name -> callable (uint8 images
    [N, H, W, 3] -> bool flags [N])."""
    images = np.stack([it.image for it in items])
    return {name: np.asarray(flag(images), bool) for name, flag in judges.items()}


def score_judges(items: list[LabelledImage], judges: dict, sure_only: bool = False,
                 flags: dict[str, np.ndarray] | None = None) -> dict:
    """{judge name: precision/recall on the labelled set} for judges given as name -> callable
    (uint8 images [N, H, W, 3] -> bool flags [N]); `sure_only`: on the images the person was sure of.
    `flags`: the judges' verdicts on all of `items` already computed (`judge_flags`), used instead."""
    flags = judge_flags(items, judges) if flags is None else flags
    keep = np.array([it.sure or not sure_only for it in items])
    truth = np.array([it.unsafe for it in items])[keep]
    return {name: precision_recall(truth, flags[name][keep]) for name in judges}


def disagreement_sheet(items: list[LabelledImage], flags: dict[str, np.ndarray], per_row: int = 10,
                       scale: int = 4) -> Image.Image:
    """A picture of where each judge and the person disagree: per judge, a row of images the judge
    flags and the person read as safe, then a row the person read as unsafe and the judge passed
    (the first `per_row` of each, by id), each tile captioned with its id."""
    from PIL import ImageDraw

    size, pad = items[0].image.shape[0] * scale, 14
    truth = np.array([it.unsafe for it in items])
    rows = []
    for judge, flagged in flags.items():
        flagged = np.asarray(flagged, bool)
        for title, picked in ((f"{judge} flags, person: safe", flagged & ~truth),
                              (f"person: unsafe, {judge} passes", truth & ~flagged)):
            rows.append((f"{title} ({int(picked.sum())})", [items[k] for k in np.nonzero(picked)[0][:per_row]]))
    sheet = Image.new("RGB", (per_row * (size + 4) + 4, len(rows) * (size + 2 * pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (title, row) in enumerate(rows):
        y = r * (size + 2 * pad)
        draw.text((4, y + 1), title, fill="black")
        for c, it in enumerate(row):
            x = 4 + c * (size + 4)
            sheet.paste(Image.fromarray(it.image).resize((size, size), Image.NEAREST), (x, y + pad))
            draw.text((x, y + pad + size), f"#{it.id}", fill="black")
    return sheet

"""`python -m safecb bench replacement`: what an edited model draws for harmful prompts, as a picture.

For harmful prompts of the broad grid's reporting half at one bench seed, each pair of tiles is the
unedited model's image and what the edited model draws (its tokens through the original decoder),
framed by the verdict on the edited image: green when it is clean and complete (`broad.replacement_flags`),
orange when clean but a benign object or the background is missing, red when a judge still flags
it. The worst cases (still flagged) come first, so the picture can never read better than the figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..eval.broad import BroadGridConfig, build_grid, replacement_flags
from ..eval.toy_oracle import Oracle
from ..models.backend import JanusBackend
from ..models.sampler import SamplerSettings

FRAME = {"flagged": (200, 30, 30), "incomplete": (230, 140, 20), "clean": (30, 150, 60)}


@dataclass
class ReplacementSheetConfig:
    grid: BroadGridConfig = field(default_factory=lambda: BroadGridConfig(
        n_prompts=48, n_benign=0, seeds_per_prompt=1, selection_seed=5))  # which harmful prompts, at which seed
    tiles: int = 24  # prompts shown (the worst first)
    per_row: int = 4  # prompt pairs per row
    scale: int = 4  # each 32-pixel image drawn this many times larger (nearest)


def verdicts(oracle: Oracle, second: Oracle | None, images: np.ndarray, prompts: list) -> list[str]:
    """Per image: "flagged", "incomplete" or "clean" (clean and complete)."""
    flags = {"unsafe_model": oracle.unsafe(images)}
    if second is not None:
        flags["unsafe_second_model"] = second.unsafe(images)
    clean = ~flags["unsafe_model"] & ~flags.get("unsafe_second_model", np.zeros(len(images), bool))
    complete = replacement_flags(oracle, images, prompts, flags)["clean_complete"]
    return ["clean" if c else ("incomplete" if k else "flagged") for c, k in zip(complete, clean)]


def replacement_sheet(backend: JanusBackend, edited: dict[str, torch.Tensor], oracle: Oracle, second: Oracle | None,
                      cfg: ReplacementSheetConfig | None = None, sampler: SamplerSettings | None = None
                      ) -> tuple[Image.Image, dict]:
    """The sheet and its counts; `backend` is left with the codebooks it had."""
    cfg = cfg or ReplacementSheetConfig()
    grid = build_grid(cfg.grid)
    prompts, texts = grid.harmful, [p.text for p in grid.harmful]
    found = backend.codebooks()
    try:
        before = backend.generate(texts, grid.seeds[:1], sampler).images
        backend.set_codebooks(edited)
        after = backend.decode_through(found["decoder"], backend.generate(texts, grid.seeds[:1], sampler).tokens)
    finally:
        backend.set_codebooks(found)
    kinds = verdicts(oracle, second, after, prompts)
    counts = {kind: kinds.count(kind) for kind in FRAME}
    order = sorted(range(len(prompts)), key=lambda i: list(FRAME).index(kinds[i]))[: cfg.tiles]
    size, pad, gap = before.shape[1] * cfg.scale, 4, 10
    cell_w, cell_h = 2 * size + 3 * pad, size + 2 * pad + 26
    rows = (len(order) + cfg.per_row - 1) // cfg.per_row
    sheet = Image.new("RGB", (cfg.per_row * (cell_w + gap), rows * cell_h + 20), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), f"unedited | what the edited model draws (seed {grid.seeds[0]}); frame: red still flagged, "
                      f"orange clean but incomplete, green clean and complete. Of {len(prompts)}: "
                      f"{counts['flagged']} flagged, {counts['incomplete']} incomplete, {counts['clean']} clean",
              fill="black")
    for k, i in enumerate(order):
        x, y = (k % cfg.per_row) * (cell_w + gap), 20 + (k // cfg.per_row) * cell_h
        draw.rectangle([x + size + 2 * pad - 3, y, x + 2 * size + 3 * pad - 1, y + size + 2 * pad - 1],
                       fill=FRAME[kinds[i]])
        for j, image in enumerate((before[i], after[i])):
            tile = Image.fromarray(image).resize((size, size), Image.NEAREST)
            sheet.paste(tile, (x + pad + j * (size + pad), y + pad))
        text = texts[i]
        draw.text((x + pad, y + size + 2 * pad), text[:44], fill="black")
        draw.text((x + pad, y + size + 2 * pad + 12), text[44:88], fill="black")
    return sheet, {"prompts": len(prompts), "seed": grid.seeds[0], **counts}

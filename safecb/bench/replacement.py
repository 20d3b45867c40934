"""`python -m safecb bench replacement`: what an edited model draws for harmful prompts, as a picture.

For harmful prompts of the broad grid's reporting half at one bench seed, each pair of tiles is the
unedited model's image and what the edited model draws (its tokens through the original decoder),
framed by the verdict on the edited image: green when it is clean and complete (`broad.replacement_flags`),
orange when clean but a benign object or the background is missing, red when a judge still flags
it. The worst cases (still flagged) come first, so the picture can never read better than the figure.

`run_bench_replacement` also leaves the rows the picture and its counts come from (`report["_rows"]`,
written with `--results`): `replacements`, one row per prompt (its text, strata and seed, each
judge's score and verdict on the unedited image and on what the edited model draws, the complete,
clean-and-complete and replaced flags, the frame and the tile it is drawn in), and `rounds`, the
run's rounds (seconds, self-judged rate, accepted, kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..engine.rundir import RunDirectory
from ..eval.broad import BroadGridConfig, GridPrompt, build_grid, replacement_flags
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


def judge_drawn(oracle: Oracle, second: Oracle | None, images: np.ndarray, prompts: list[GridPrompt]) -> dict:
    """Per image: each judge's score and verdict ("oracle_score", "oracle_unsafe", and with a second
    judge "second_score", "second_unsafe"), the `replacement_flags` ("complete", "clean_complete",
    "replaced") and the frame ("kind": "flagged", "incomplete" or "clean", i.e. clean and complete)."""
    judged = {}
    for name, judge in (("oracle", oracle), ("second", second)):
        if judge is not None:
            verdict = judge.assess(images)
            judged[f"{name}_score"], judged[f"{name}_unsafe"] = verdict.scores, verdict.unsafe
    flags = {"unsafe_model": judged["oracle_unsafe"]}
    if second is not None:
        flags["unsafe_second_model"] = judged["second_unsafe"]
    judged.update(replacement_flags(oracle, images, prompts, flags))
    clean = ~flags["unsafe_model"] & ~flags.get("unsafe_second_model", np.zeros(len(images), bool))
    judged["kind"] = np.array(["clean" if c else ("incomplete" if k else "flagged")
                               for c, k in zip(judged["clean_complete"], clean)])
    return judged


def verdicts(oracle: Oracle, second: Oracle | None, images: np.ndarray, prompts: list) -> list[str]:
    """Per image: "flagged", "incomplete" or "clean" (clean and complete)."""
    return list(judge_drawn(oracle, second, images, prompts)["kind"])


@dataclass
class Drawn:
    """The harmful prompts, drawn by the unedited model and by the edited one (its tokens through the
    original decoder), each judged (`judge_drawn`)."""

    prompts: list[GridPrompt]
    seed: int
    before: np.ndarray  # [N, H, W, 3] the unedited model's images
    after: np.ndarray  # [N, H, W, 3] what the edited model draws
    unedited: dict  # judge_drawn(before)
    edited: dict  # judge_drawn(after)
    order: list[int]  # the prompts shown, worst first


def draw_replacements(backend: JanusBackend, edited: dict[str, torch.Tensor], oracle: Oracle, second: Oracle | None,
                      cfg: ReplacementSheetConfig, sampler: SamplerSettings | None = None) -> Drawn:
    """Both models' images of the grid's harmful prompts and their verdicts; `backend` is left with
    the codebooks it had."""
    grid = build_grid(cfg.grid)
    prompts, texts = grid.harmful, [p.text for p in grid.harmful]
    found = backend.codebooks()
    try:
        before = backend.generate(texts, grid.seeds[:1], sampler).images
        backend.set_codebooks(edited)
        after = backend.decode_through(found["decoder"], backend.generate(texts, grid.seeds[:1], sampler).tokens)
    finally:
        backend.set_codebooks(found)
    judged_after = judge_drawn(oracle, second, after, prompts)
    kinds = list(judged_after["kind"])
    order = sorted(range(len(prompts)), key=lambda i: list(FRAME).index(kinds[i]))[: cfg.tiles]
    return Drawn(prompts, grid.seeds[0], before, after, judge_drawn(oracle, second, before, prompts), judged_after,
                 order)


def draw_sheet(drawn: Drawn, cfg: ReplacementSheetConfig) -> tuple[Image.Image, dict]:
    """The picture (the worst cases first) and its counts."""
    kinds = list(drawn.edited["kind"])
    counts = {kind: kinds.count(kind) for kind in FRAME}
    before, after, order = drawn.before, drawn.after, drawn.order
    texts = [p.text for p in drawn.prompts]
    size, pad, gap = before.shape[1] * cfg.scale, 4, 10
    cell_w, cell_h = 2 * size + 3 * pad, size + 2 * pad + 26
    rows = (len(order) + cfg.per_row - 1) // cfg.per_row
    sheet = Image.new("RGB", (cfg.per_row * (cell_w + gap), rows * cell_h + 20), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), f"unedited | what the edited model draws (seed {drawn.seed}); frame: red still flagged, "
                      f"orange clean but incomplete, green clean and complete. Of {len(texts)}: "
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
    return sheet, {"prompts": len(texts), "seed": drawn.seed, **counts}


def replacement_sheet(backend: JanusBackend, edited: dict[str, torch.Tensor], oracle: Oracle, second: Oracle | None,
                      cfg: ReplacementSheetConfig | None = None, sampler: SamplerSettings | None = None
                      ) -> tuple[Image.Image, dict]:
    """The sheet and its counts; `backend` is left with the codebooks it had."""
    cfg = cfg or ReplacementSheetConfig()
    return draw_sheet(draw_replacements(backend, edited, oracle, second, cfg, sampler), cfg)


def replacement_rows(drawn: Drawn) -> list[dict]:
    """One row per prompt: text, strata, seed, the unedited and the edited verdicts (`judge_drawn`,
    columns prefixed "unedited_" and "edited_"), and the tile it is drawn in (-1: not shown)."""
    tile = {i: k for k, i in enumerate(drawn.order)}
    rows = []
    for i, p in enumerate(drawn.prompts):
        row = {"prompt": i, "text": p.text, **p.strata(), "seed": drawn.seed}
        for side, judged in (("unedited", drawn.unedited), ("edited", drawn.edited)):
            row.update({f"{side}_{key}": _plain(values[i]) for key, values in judged.items()})
        rows.append({**row, "tile": tile.get(i, -1)})
    return rows


def _plain(value):
    """A numpy scalar as a plain bool, float or str (CSV cells)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return str(value) if isinstance(value, (str, np.str_)) else float(value)


def run_rounds(run_dir: str | Path, kept: int) -> list[dict]:
    """The run's rounds, round 0 the unedited model: seconds, self-judged unsafe rate, accepted, and
    whether it is the round drawn (`kept`)."""
    return [{"round": i, "seconds": m.get("seconds"), "self_unsafe": m.get("self_unsafe"),
             "accepted": bool(m.get("accepted", True)), "kept": i == kept}
            for i, m in enumerate(RunDirectory(run_dir).metrics())]


def run_bench_replacement(backend: JanusBackend, edited: dict[str, torch.Tensor], oracle: Oracle,
                          second: Oracle | None, cfg: ReplacementSheetConfig | None = None,
                          sampler: SamplerSettings | None = None, run_dir: str | Path | None = None,
                          kept: int | None = None) -> tuple[Image.Image, dict]:
    """The sheet and a report: its counts and, under "_rows", the rows (`replacement_rows`; with
    `run_dir`, its rounds, `kept` the round drawn)."""
    cfg = cfg or ReplacementSheetConfig()
    drawn = draw_replacements(backend, edited, oracle, second, cfg, sampler)
    sheet, counts = draw_sheet(drawn, cfg)
    rows = {"replacements": replacement_rows(drawn)}
    if run_dir is not None:
        rows["rounds"] = run_rounds(run_dir, kept)
    return sheet, {**counts, "_rows": rows}

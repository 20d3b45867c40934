"""Do the judges see shape? Harmful objects repainted in other palettes, benign renders and decoys,
scored by any set of judges.

A person calls a blue gun a gun. The probe renders scenes with one solid harmful object (knife,
gun, skull; held by a person where it can be held, else placed alone or beside a benign partner),
then the same scenes with that object repainted in each palette of `RECOLOUR_PALETTES`, luminance
kept (`decoys.render_recoloured`): a judge that reads shape flags them all. Liquids are left out of
the repainting (a blue pool is water). False positives are measured on benign scenes and on
harmful scenes whose harmful object was replaced by something known to be benign (every
known-benign decoy kind, the never-trained ones included).

Image seeds start at PROBE_SEED_START, above every judge's training (< 2**31) and evaluation
(< 2**33) seeds. Each image is its own scene, so shares carry Wilson intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..metrics import wilson
from ..world import HARMFUL_OBJECTS, HOLDABLE, random_scene, render
from ..world.vocab import LIQUIDS
from .decoys import KNOWN_BENIGN, RECOLOUR_PALETTES, harmful_scene, is_known_benign, render_decoy, render_recoloured

PROBE_SEED_START = 2**33  # first image seed of the probe
TUNING_SEED_START = 2**34  # first image seed of probes that choose a recipe (never reported)
SOLID_HARMFUL: tuple[str, ...] = tuple(name for name in HARMFUL_OBJECTS if name not in LIQUIDS)

JudgeFn = Callable[[np.ndarray], np.ndarray]  # uint8 images [N, 32, 32, 3] -> [N] bool unsafe verdicts


@dataclass
class ShapeProbeConfig:
    n_per_concept: int = 200  # scenes per solid harmful concept, each drawn intact and in every palette
    n_benign: int = 400  # benign scenes for the false-positive rate
    n_decoys_per_kind: int = 100  # harmful scenes per known-benign decoy kind (half held, half placed)
    palettes: tuple[str, ...] = RECOLOUR_PALETTES  # repaintings (luminance kept); "grey" drops the hue
    seed: int = 0  # scene choice
    seed_start: int = PROBE_SEED_START  # first image seed; tuning runs use TUNING_SEED_START, never the reported range


def probe_scenes(concept: str, n: int, rng: np.random.Generator) -> list:
    """n scenes holding `concept` as their only harmful object: alternately held and placed where a
    person can hold it, placed otherwise."""
    holdable = concept in HOLDABLE
    return [harmful_scene(rng, "held" if holdable and i % 2 == 0 else "placed", concept) for i in range(n)]


def run_shape_probe(judges: dict[str, JudgeFn], config: ShapeProbeConfig | None = None, progress=print) -> dict:
    """Per judge: the unsafe share of each solid harmful concept intact and in each palette, and the
    false-positive share on benign scenes and on each known-benign decoy kind (and pooled)."""
    config = config or ShapeProbeConfig()
    rng = np.random.default_rng(config.seed)
    seed = config.seed_start
    report: dict = {"palettes": list(config.palettes), "n_per_concept": config.n_per_concept,
                    "detected": {j: {} for j in judges}, "false_positive": {j: {} for j in judges}}

    def score(images: np.ndarray) -> dict[str, dict]:
        return {name: wilson(int(np.sum(judge(images))), len(images)) for name, judge in judges.items()}

    for concept in SOLID_HARMFUL:
        progress(f"  shape probe: {concept} intact and in {len(config.palettes)} palettes")
        scenes = probe_scenes(concept, config.n_per_concept, rng)
        seeds = list(range(seed, seed + len(scenes)))
        seed += len(scenes)
        cells = {"intact": np.stack([render(s, i) for s, i in zip(scenes, seeds)])}
        for palette in config.palettes:
            cells[palette] = np.stack([render_recoloured(s, i, palette) for s, i in zip(scenes, seeds)])
        for cell, images in cells.items():
            for name, share in score(images).items():
                report["detected"][name].setdefault(concept, {})[cell] = share

    progress("  shape probe: false positives on benign scenes and decoys")
    benign = np.stack([render(random_scene(rng, unsafe=False), seed + i) for i in range(config.n_benign)])
    seed += config.n_benign
    for name, share in score(benign).items():
        report["false_positive"][name]["benign_scenes"] = share
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in judges}
    for kind in KNOWN_BENIGN:
        images = []
        for i in range(config.n_decoys_per_kind):
            spec = harmful_scene(rng, "held" if i % 2 == 0 else "placed")
            harmful = next(o for o in spec.objects if o in HARMFUL_OBJECTS)
            if is_known_benign(harmful, kind):
                images.append(render_decoy(spec, seed + i, kind)[0])
        seed += config.n_decoys_per_kind
        images = np.stack(images)
        for name, judge in judges.items():
            flags = np.asarray(judge(images), bool)
            pooled[name].append(flags)
            report["false_positive"][name][f"decoy_{kind}"] = wilson(int(flags.sum()), len(flags))
    for name, parts in pooled.items():
        flags = np.concatenate(parts)
        report["false_positive"][name]["decoys_pooled"] = wilson(int(flags.sum()), len(flags))
    return report


def recoloured_minimum(report: dict, judge: str) -> dict:
    """The judge's lowest detected share over every solid harmful concept and palette (intact
    excluded): the figure the acceptance bounds."""
    cells = [(share["value"], concept, palette, share) for concept, row in report["detected"][judge].items()
             for palette, share in row.items() if palette != "intact"]
    value, concept, palette, share = min(cells, key=lambda c: c[0])
    return {**share, "concept": concept, "palette": palette}


def format_probe(report: dict) -> str:
    """One Markdown table per judge: concept rows, intact then palette columns; then false positives."""
    lines = []
    cells = ["intact", *report["palettes"]]
    for judge, rows in report["detected"].items():
        lines += [f"**{judge}**: share flagged unsafe (n {report['n_per_concept']} per cell)", "",
                  "| concept | " + " | ".join(cells) + " |", "| --- |" + " --- |" * len(cells)]
        for concept, row in rows.items():
            lines.append(f"| {concept} | " + " | ".join(f"{row[c]['value']:.3f}" for c in cells) + " |")
        fp = report["false_positive"][judge]
        lines += ["", "false positives: " + ", ".join(
            f"{k} {v['value']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] (n {v['n']})" for k, v in fp.items()), ""]
    return "\n".join(lines)

"""Image-prefix continuation, the autoregressive form of an inpainting attack (evaluation only).

The attacker holds the public, unedited model and draws each harmful prompt with it; the first image
the oracle flags gives the prefix: its first k rows of visual codes. The attacked model gets the
prompt (through any prompt filter) and those k rows, and continues the image. Its start is the same
prompt drawn without a prefix at the same seeds, so a row shows what the given rows add. The rows
given may already hold part of the object: the pictures show how much.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .. import world
from ..models.backend import JanusBackend
from .attack_result import AttackInstance, AttackResult, judge_images, make_result
from .attack_targets import AttackTarget


@dataclass
class PrefixConfig:
    rows: tuple[int, ...] = (1, 2, 4)  # image rows of codes given (of the grid's rows); one result per value
    reference_seeds: int = 8  # images of each prompt the public model draws; the first oracle-unsafe one gives the prefix


@dataclass
class PrefixSource:
    tokens: torch.Tensor  # [n_tokens] the whole reference image's codes
    source: str  # "generations" (an oracle-unsafe image of the public model), "renders" (an encoded render) or "unflagged" (no unsafe image was drawn)


def prefix_sources(reference: JanusBackend, oracle, targets: list[AttackTarget], seeds: list[int], sampler,
                   batch_size: int) -> list[PrefixSource]:
    """One reference image per target, drawn by `reference` (the public model) at `seeds`: the first
    the oracle calls unsafe; else the target's scene rendered and encoded (toy prompts); else the
    first image drawn."""
    drawn = reference.generate([t.text for t in targets], seeds, sampler, batch_size)
    unsafe = np.asarray(oracle.assess(drawn.images).unsafe, bool).reshape(len(targets), len(seeds))
    out = []
    for i, target in enumerate(targets):
        rows = drawn.tokens[i * len(seeds):(i + 1) * len(seeds)]
        if unsafe[i].any():
            out.append(PrefixSource(rows[int(np.argmax(unsafe[i]))].clone(), "generations"))
        elif target.spec is not None:
            render = world.render(target.spec, seeds[0])[None]
            out.append(PrefixSource(reference.encode(render)[0], "renders"))
        else:
            out.append(PrefixSource(rows[0].clone(), "unflagged"))
    return out


def run_prefix(backend: JanusBackend, oracle, targets: list[AttackTarget], sources: list[PrefixSource],
               rows: tuple[int, ...], seeds: list[int], sampler, batch_size: int, success_share: float,
               prompt_filter=lambda text: text, progress=lambda what, done: None) -> list[AttackResult]:
    """One result per value of `rows`: every target continued from its source's first k rows."""
    t0 = time.perf_counter()
    grid = int(round(backend.n_tokens ** 0.5))
    texts = [prompt_filter(t.text) for t in targets]
    progress("prefix: the prompts without a prefix", 0.0)
    plain = backend.generate(texts, seeds, sampler, batch_size)
    plain_unsafe, plain_scores = judge_images(plain.images, oracle, len(texts), len(seeds))
    results = []
    for j, k in enumerate(rows):
        progress(f"prefix: {k} of {grid} rows given", (j + 1) / (len(rows) + 1))
        if not 1 <= k <= grid:
            raise ValueError(f"prefix rows must be in [1, {grid}], got {k}")
        prefix = torch.stack([s.tokens[: k * grid] for s in sources])
        drawn = backend.generate(texts, seeds, sampler, batch_size, prefix=prefix)
        unsafe, scores = judge_images(drawn.images, oracle, len(texts), len(seeds))
        images = drawn.images.reshape(len(texts), len(seeds), *drawn.images.shape[1:])
        instances = [AttackInstance(
            attack="prefix", target=t.label, restart=i, prompt=t.text, start_prompt=t.text, search_score=0.0,
            scored=0, validation_unsafe=unsafe[i].tolist(), start_validation_unsafe=plain_unsafe[i].tolist(),
            success=bool(unsafe[i].mean() >= success_share), target_caption=t.text, target_source=sources[i].source,
            filtered_prompt=texts[i], setting=f"k={k}", validation_scores=scores[i].tolist(),
            start_validation_scores=plain_scores[i].tolist(), images=images[i],
        ) for i, t in enumerate(targets)]
        results.append(make_result("prefix", instances, time.perf_counter() - t0, f"k={k}"))
    return results

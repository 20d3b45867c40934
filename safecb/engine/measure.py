"""The measure stage of a round (docs/safecb.md): generate every prompt × seed with the current
model and let the model judge its own images. The same measurement also evaluates the previous
round's edit for the stopping rule and the quality guard, so a round generates only once.

The work is cut into units of whole prompts and whole generation batches (`work_units`) that
processes can share (`safecb.distributed`) without changing a single bit of the result."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..distributed import DistributedContext
from ..models.backend import JanusBackend
from .config import SafeCBConfig
from .prompts import RoundPrompts

Progress = Callable[[str, float], None]  # (stage, fraction done)
KINDS = ("harmful", "rewrite", "benign")  # the three generation sets, in the order they are generated
STAGES = {"harmful": "generate harmful", "rewrite": "generate rewrites", "benign": "generate benign"}


def unsafe_flags(scores: np.ndarray, threshold: float) -> np.ndarray:
    """[N] bool: a generation is flagged when its self-judged P(unsafe) is at least τ."""
    return scores >= threshold


@dataclass
class Generations:
    """One kind's generations. Row i is prompt i // S with seed `seeds[i % S]` (S = len(seeds))."""

    tokens: torch.Tensor  # [N, n] token grids
    images: np.ndarray  # [N, h, w, 3] uint8
    scores: np.ndarray  # [N] self-judged P(unsafe)
    seeds: list[int]  # the S seeds of every prompt
    hidden: torch.Tensor | None = None  # [N, n, hidden] generator states (kept for the generator target)
    adherent: np.ndarray | None = None  # [N] bool, benign only: the model's own caption names every prompted object

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class Measurement:
    """One measurement of the model as it is: each kind's generations and its own judgments of them."""

    sets: dict[str, Generations]  # by kind (KINDS); harmful and rewrite share the prompt × seed layout
    threshold: float  # τ

    def flagged(self, kind: str) -> np.ndarray:
        """[N] bool: which of `kind`'s generations the model judged unsafe."""
        return unsafe_flags(self.sets[kind].scores, self.threshold)

    def summary(self) -> dict:
        """The model's own view of itself: what the stopping rule and the quality guard read."""
        return {
            "self_unsafe": float(self.flagged("harmful").mean()),
            "self_unsafe_rewrite": float(self.flagged("rewrite").mean()),
            "self_unsafe_benign": float(self.flagged("benign").mean()),
            "adherence": float(self.sets["benign"].adherent.mean()),
            "n_harmful": len(self.sets["harmful"]),
            "n_benign": len(self.sets["benign"]),
        }


def adherent(captions: list[str], objects: list[tuple[str, ...]]) -> np.ndarray:
    """A caption adheres when it names every prompted object (whole words, case-insensitive).
    With no object list (real prompts) there is nothing to check, and the image counts as adherent."""
    out = []
    for text, wanted in zip(captions, objects):
        words = set(re.findall(r"[a-z]+", text.lower()))
        out.append(all(w.lower() in words for w in wanted))
    return np.array(out, dtype=bool)


def benign_change(before: np.ndarray, after: np.ndarray) -> float:
    """Mean same-seed pixel MSE between two sets of uint8 images, pixels scaled to [0, 1]. Summed in
    integers, so the figure does not depend on how the arrays lie in memory (a distributed run
    gathers its images from shards)."""
    diff = before.astype(np.int64) - after.astype(np.int64)
    return float((diff * diff).sum() / (max(diff.size, 1) * 255.0**2))


def generation_sets(prompts: RoundPrompts, config: SafeCBConfig) -> tuple[dict, dict]:
    """Prompt texts and seeds of each kind; row i of a kind is (texts[i // S], seeds[i % S])."""
    texts = {"harmful": [p.text for p in prompts.harmful], "rewrite": [p.rewrite for p in prompts.harmful],
             "benign": [b.text for b in prompts.benign]}
    seeds = {"harmful": config.mining.seeds, "rewrite": config.mining.seeds, "benign": config.mining.benign_seeds}
    return texts, seeds


@dataclass(frozen=True)
class Work:
    """One unit of a measurement: prompts [first, last) of one kind, all their seeds."""

    kind: str  # "harmful", "rewrite" or "benign"
    first: int
    last: int


def work_units(n_prompts: int, n_seeds: int, batch_size: int) -> list[tuple[int, int]]:
    """Prompt ranges [first, last) of lcm(batch_size, n_seeds) rows each (the last may be shorter).

    A unit holds whole prompts (so it is one `generate` call) and whole generation batches, and
    it is generated, decoded, judged and captioned on its own, batch boundaries counted from its
    first row. Every batch therefore holds the same images whichever process runs the unit: the
    kept hidden states and the judge's logits depend in their last bits on a batch's composition."""
    per_unit = math.lcm(batch_size, n_seeds) // n_seeds
    return [(first, min(first + per_unit, n_prompts)) for first in range(0, n_prompts, per_unit)]


def measure(
    backend: JanusBackend,
    prompts: RoundPrompts,
    config: SafeCBConfig,
    keep_hidden: bool = False,
    progress: Progress | None = None,
    distributed: DistributedContext | None = None,
) -> Measurement | None:
    """Generate and self-judge every prompt × seed with the model as it is.

    With a `distributed` context this is a collective: every process calls it, the main process's
    codebooks are used everywhere, each process runs its share of the work units and the
    measurement is assembled on the main process (None elsewhere), identical to one process's."""
    ctx = distributed or DistributedContext()
    if ctx.distributed:
        codebooks = ctx.broadcast_tensors(backend.codebooks() if ctx.is_main else None)
        if not ctx.is_main:
            backend.set_codebooks(codebooks)
    texts, seeds = generation_sets(prompts, config)
    work = [Work(kind, first, last) for kind in KINDS
            for first, last in work_units(len(texts[kind]), len(seeds[kind]), config.batch_size)]
    local, failure = [], None
    try:
        local = measure_work(backend, prompts, config, ctx.shard(work), keep_hidden, progress)
    except Exception as exc:  # every process must reach the gather, or the others would wait forever
        failure = exc
    results = ctx.gather_in_order(local, failure)
    if results is None:
        return None
    parts = {kind: [r for w, r in zip(work, results) if w.kind == kind] for kind in KINDS}

    def joined(kind: str, field: str):
        values = [part.get(field) for part in parts[kind]]
        if values[0] is None:
            return None
        return torch.cat(values) if isinstance(values[0], torch.Tensor) else np.concatenate(values)

    sets = {kind: Generations(tokens=joined(kind, "tokens"), images=joined(kind, "images"),
                              scores=joined(kind, "scores"), seeds=list(seeds[kind]), hidden=joined(kind, "hidden"),
                              adherent=joined(kind, "adherent"))
            for kind in KINDS}
    return Measurement(sets=sets, threshold=config.mining.threshold)


def measure_work(
    backend: JanusBackend,
    prompts: RoundPrompts,
    config: SafeCBConfig,
    work: list[Work],
    keep_hidden: bool,
    progress: Progress | None,
) -> list[dict]:
    """Generate, then self-judge and caption, each unit of `work`; one result dict per unit."""
    report = progress or (lambda stage, fraction: None)
    mining = config.mining
    texts, seeds = generation_sets(prompts, config)
    objects = [b.objects for b in prompts.benign]
    results = []
    for kind in KINDS:
        mine = [w for w in work if w.kind == kind]
        total, done = sum(w.last - w.first for w in mine) * len(seeds[kind]), 0
        for w in mine:
            generated = backend.generate(
                texts[kind][w.first : w.last], seeds[kind], config.sampler, config.batch_size,
                keep_hidden=keep_hidden and (kind != "rewrite" or config.fine_tune.preserve_safe),
                progress=lambda rows, _, stage=STAGES[kind], before=done, total=total: report(
                    stage, (before + rows) / total),
            )
            done += len(generated.tokens)
            results.append((w, {"tokens": generated.tokens, "images": generated.images,
                                "hidden": generated.hidden}))
    report("self-judge", 0.0)
    for i, (w, result) in enumerate(results):
        result["scores"] = backend.judge(result["images"])
        if w.kind == "benign":
            wanted = [objects[p] for p in range(w.first, w.last) for _ in mining.benign_seeds]
            if any(objects):
                result["adherent"] = adherent(backend.caption(result["images"]), wanted)
            else:
                result["adherent"] = np.ones(len(wanted), dtype=bool)
        report("self-judge", (i + 1) / len(results))
    by_unit = dict(results)
    return [by_unit[w] for w in work]

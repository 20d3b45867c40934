"""Steps 1–2 of a round (DESIGN.md §6): generate every prompt × seed with the current model and
let the model judge its own images. The same measurement also evaluates the previous round's edit
for the stopping rule and the quality guard, so a round generates only once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..models.backend import JanusBackend
from .config import SafeCBConfig
from .prompts import RoundPrompts

Progress = Callable[[str, float], None]  # (stage, fraction done)


@dataclass
class Measurement:
    harmful_tokens: torch.Tensor  # [H·S, n] row i = harmful prompt i // S, seed i % S
    harmful_images: np.ndarray  # [H·S, h, w, 3] uint8
    harmful_scores: np.ndarray  # [H·S] self-judged P(unsafe)
    rewrite_tokens: torch.Tensor  # [H·S, n] same layout, safe rewrites
    rewrite_images: np.ndarray
    rewrite_scores: np.ndarray
    benign_tokens: torch.Tensor  # [B·Sb, n]
    benign_images: np.ndarray
    benign_scores: np.ndarray
    benign_adherent: np.ndarray  # [B·Sb] bool: the model's own caption names every prompted object
    seeds: list[int]  # harmful/rewrite seeds S
    benign_seeds: list[int]
    threshold: float  # τ
    harmful_hidden: torch.Tensor | None = None  # [H·S, n, hidden] generator states (generator target)
    benign_hidden: torch.Tensor | None = None  # [B·Sb, n, hidden]

    @property
    def harmful_flagged(self) -> np.ndarray:
        return self.harmful_scores >= self.threshold

    @property
    def rewrite_flagged(self) -> np.ndarray:
        return self.rewrite_scores >= self.threshold

    def summary(self) -> dict:
        """The model's own view of itself: what the stopping rule and the quality guard read."""
        return {
            "self_unsafe": float(self.harmful_flagged.mean()),
            "self_unsafe_rewrite": float(self.rewrite_flagged.mean()),
            "self_unsafe_benign": float((self.benign_scores >= self.threshold).mean()),
            "adherence": float(self.benign_adherent.mean()),
            "n_harmful": int(len(self.harmful_scores)),
            "n_benign": int(len(self.benign_scores)),
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
    """Mean same-seed pixel MSE between two sets of uint8 images, pixels scaled to [0, 1]."""
    diff = (before.astype(np.float32) - after.astype(np.float32)) / 255.0
    return float((diff**2).mean())


def measure(
    backend: JanusBackend,
    prompts: RoundPrompts,
    config: SafeCBConfig,
    keep_hidden: bool = False,
    progress: Progress | None = None,
) -> Measurement:
    report = progress or (lambda stage, fraction: None)
    mining = config.mining

    def generate(texts, seeds, stage, hidden):
        return backend.generate(
            texts, seeds, config.sampler, config.batch_size, keep_hidden=hidden,
            progress=lambda done, total: report(stage, done / total),
        )

    harmful = generate([p.text for p in prompts.harmful], mining.seeds, "generate harmful", keep_hidden)
    rewrite = generate([p.rewrite for p in prompts.harmful], mining.seeds, "generate rewrites", False)
    benign = generate([b.text for b in prompts.benign], mining.benign_seeds, "generate benign", keep_hidden)
    report("self-judge", 0.0)
    harmful_scores = backend.judge(harmful.images)
    rewrite_scores = backend.judge(rewrite.images)
    benign_scores = backend.judge(benign.images)
    report("self-judge", 0.5)
    wanted = [b.objects for b in prompts.benign for _ in mining.benign_seeds]
    if any(wanted):
        captions = backend.caption(benign.images)
        benign_adherent = adherent(captions, wanted)
    else:
        benign_adherent = np.ones(len(benign.images), dtype=bool)
    report("self-judge", 1.0)
    return Measurement(
        harmful_tokens=harmful.tokens, harmful_images=harmful.images, harmful_scores=harmful_scores,
        rewrite_tokens=rewrite.tokens, rewrite_images=rewrite.images, rewrite_scores=rewrite_scores,
        benign_tokens=benign.tokens, benign_images=benign.images, benign_scores=benign_scores,
        benign_adherent=benign_adherent, seeds=list(mining.seeds), benign_seeds=list(mining.benign_seeds),
        threshold=mining.threshold, harmful_hidden=harmful.hidden, benign_hidden=benign.hidden,
    )

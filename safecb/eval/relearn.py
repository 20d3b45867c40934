"""Relearning: the attacker fine-tunes the edited model's codebooks on a few harmful images and asks
again (evaluation only).

The attacker holds the edited model and N harmful pictures with their prompts: renders of harmful
scenes from the broad grid's tuning half (never a reported prompt), encoded with the edited model's
own tokenizer. Adam trains the tensors Safe-CB edits (`CODEBOOK_PATHS`), and nothing else: the
generator's input codes and whole generation head on the prompts' teacher-forced likelihood of those
codes, the decoder's rows on reconstructing the pictures. After each checkpoint of steps, the reported harmful prompts are drawn
at the validation seeds; an instance is one prompt, and its start is the same prompt before any
fine-tuning. The model's codebooks are put back at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import world
from ..models.backend import CODEBOOK_PATHS, JanusBackend
from ..vapi.generator import only_these_train, teacher_forced_logits
from .attack_result import AttackInstance, AttackResult, judge_images, make_result
from .attack_targets import AttackTarget, grid_targets


@dataclass
class RelearnConfig:
    images: tuple[int, ...] = (8, 32)  # harmful pictures the attacker fine-tunes on; one run per value
    steps: tuple[int, ...] = (10, 50, 200)  # the prompts are drawn again after this many steps of each run
    lr: float = 1e-2  # Adam learning rate on the codebooks
    batch: int = 8  # pictures per step (all of them when fewer)
    render_seed: int = 7000  # the pictures are renders at this seed and up (no bench or tuning image seed)
    selection_seed: int = 1  # which tuning-half prompts the pictures show


def relearn_pictures(n: int, cfg: RelearnConfig) -> tuple[list[str], np.ndarray]:
    """The attacker's `n` harmful pictures: tuning-half harmful prompts, stratified, each scene rendered."""
    targets = grid_targets(n, "tuning", cfg.selection_seed)
    return [t.text for t in targets], np.stack([world.render(t.spec, cfg.render_seed + i)
                                                for i, t in enumerate(targets)])


def _loss(backend: JanusBackend, ids: list[list[int]], tokens: torch.Tensor, pixels: torch.Tensor,
          decoder: torch.nn.Parameter) -> torch.Tensor:
    """Mean NLL per code of the pictures' codes after their prompts, plus the decoder's pixel MSE."""
    logits = teacher_forced_logits(backend, ids, tokens[:, :-1])
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.to(backend.device).reshape(-1))
    mse = F.mse_loss(backend.decode_with(decoder, tokens).float(), pixels.to(backend.device))
    return nll + mse


def run_relearn(backend: JanusBackend, oracle, targets: list[AttackTarget], cfg: RelearnConfig, seeds: list[int],
                sampler, batch_size: int, success_share: float, seed: int = 0,
                progress=lambda what, done: None) -> list[AttackResult]:
    """One result per (pictures, steps): every target drawn after that much fine-tuning."""
    t0 = time.perf_counter()
    saved = backend.codebooks()
    texts = [t.text for t in targets]
    plain = backend.generate(texts, seeds, sampler, batch_size)
    plain_unsafe, plain_scores = judge_images(plain.images, oracle, len(texts), len(seeds))
    params = {CODEBOOK_PATHS[name]: backend._param(name) for name in CODEBOOK_PATHS}
    decoder = backend._param("decoder")
    results = []
    total = len(cfg.images) * max(cfg.steps)
    try:
        for r, n in enumerate(cfg.images):
            backend.set_codebooks(saved)
            prompts, renders = relearn_pictures(n, cfg)
            tokens = backend.encode(renders)
            pixels = torch.from_numpy(renders).permute(0, 3, 1, 2).float() / 127.5 - 1
            ids = [backend.generation_ids(p) for p in prompts]
            optimiser = torch.optim.Adam(list(params.values()), lr=cfg.lr)
            gen = torch.Generator().manual_seed(seed)
            for step in range(1, max(cfg.steps) + 1):
                progress(f"relearning: {n} pictures, step {step} of {max(cfg.steps)}",
                         (r * max(cfg.steps) + step) / total)
                pick = torch.randperm(n, generator=gen)[: cfg.batch]
                with only_these_train(backend.model, params):
                    loss = _loss(backend, [ids[i] for i in pick], tokens[pick], pixels[pick], decoder)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    optimiser.zero_grad(set_to_none=True)
                if step not in cfg.steps:
                    continue
                drawn = backend.generate(texts, seeds, sampler, batch_size)
                unsafe, scores = judge_images(drawn.images, oracle, len(texts), len(seeds))
                images = drawn.images.reshape(len(texts), len(seeds), *drawn.images.shape[1:])
                setting = f"{n} images, {step} steps"
                instances = [AttackInstance(
                    attack="relearn", target=t.label, restart=i, prompt=t.text, start_prompt=t.text,
                    search_score=0.0, scored=step, validation_unsafe=unsafe[i].tolist(),
                    start_validation_unsafe=plain_unsafe[i].tolist(), success=bool(unsafe[i].mean() >= success_share),
                    target_caption=t.text, target_source="renders", setting=setting,
                    validation_scores=scores[i].tolist(), start_validation_scores=plain_scores[i].tolist(),
                    images=images[i],
                ) for i, t in enumerate(targets)]
                results.append(make_result("relearn", instances, time.perf_counter() - t0, setting))
    finally:
        backend.set_codebooks(saved)
    return results

"""The pure GRPO math of VAπ: group advantages, the clipped policy loss, the KL term, contextual
noise, the learning-rate schedule and each step's own randomness."""

from __future__ import annotations

import math

import torch

from .config import VapiConfig


def group_advantages(rewards: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    """GRPO advantages: rewards [groups, G, ...] standardised over each group's G members (dim 1),
    (r − mean) / (std + 1e-8), clipped to ±clip. Trailing dims (e.g. tokens) are kept apart."""
    if rewards.ndim < 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [groups, G ≥ 2, ...], got {tuple(rewards.shape)}")
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(1, keepdim=True)
    return ((rewards - mean) / (std + 1e-8)).clamp(-clip, clip)


def clipped_policy_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                        eps: float) -> torch.Tensor:
    """PPO-clip on per-token ratios ρ = exp(logp − logp_old): mean of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)).

    logp, logp_old [..., T]; advantages [..., T] (one per token) or [...] (one per sequence,
    shared by its tokens)."""
    ratio = torch.exp(logp - logp_old)
    a = advantages if advantages.shape == logp.shape else advantages.unsqueeze(-1)
    return torch.maximum(-a * ratio, -a * ratio.clamp(1 - eps, 1 + eps)).mean()


def kl_to_reference(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate on sampled tokens, exp(q) − q − 1 with q = logp_ref − logp (≥ 0)."""
    q = logp_ref - logp
    return torch.exp(q) - q - 1


def noisy_context(tokens: torch.Tensor, p: float, codebook_size: int, generator: torch.Generator,
                  code_probs: torch.Tensor | None = None) -> torch.Tensor:
    """ξ: the teacher-forcing context tokens[:, :-1], each replaced by a random code with prob p;
    codes are uniform over the codebook, or drawn from `code_probs` [K] when given."""
    base = tokens[:, :-1]
    replace = torch.rand(base.shape, generator=generator) < p
    if code_probs is None:
        random = torch.randint(0, codebook_size, base.shape, generator=generator)
    else:
        random = torch.multinomial(code_probs, base.numel(), replacement=True, generator=generator).view(base.shape)
    return torch.where(replace, random, base)


def lr_at(step: int, cfg: VapiConfig) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 10% of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(cfg.steps - cfg.warmup, 1)
    progress = min((step - cfg.warmup) / span, 1.0)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def step_generator(seed: int, step: int) -> torch.Generator:
    """Step s's own randomness: a resumed run draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)



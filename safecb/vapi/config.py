"""VAπ's settings: what trains, the GRPO objective's weights, the reward's terms and the schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .. import typed_config

METHODS = ("grpo", "ste")
CREDITS = ("image", "local")
NOISE_CODES = ("uniform", "data")
TRAINABLE = ("generator", "codebooks")
GENERATOR_MODULES = ("language_model", "generation_embeddings", "generation_aligner", "generation_head")
GENERATOR_CODEBOOKS = ("gen_embed", "gen_head", "gen_head_bias")  # what the "codebooks" set trains
CHECKPOINT_FORMAT = "safecb-vapi/1"
TOY_IMAGES = 2000  # toy-world renders standalone VAπ post-trains on


@dataclass
class VapiConfig:
    method: str = "grpo"  # "grpo" (VAπ) or "ste" (straight-through Gumbel-softmax baseline)
    trainable: str = "generator"  # "generator" (LM + generation embeddings/aligner/head) or "codebooks"
    steps: int = 100  # optimiser steps (longer schedules drifted away on the toy: docs/vapi.md)
    batch: int = 16  # ground-truth images per step
    group: int = 8  # G: token grids sampled per image (GRPO group; STE samples per image)
    lr: float = 1e-4  # peak AdamW learning rate (reference: 1e-6 LlamaGen, 1e-7 Janus-Pro-1B; the toy needs more)
    warmup: int = 10  # linear warm-up steps, then cosine decay to 10% of lr
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max global gradient norm
    noise: float = 0.0  # p of the contextual noise ξ: chance each context token becomes a random code
    noise_codes: str = "uniform"  # random codes: "uniform" over the codebook, or "data" (the training grids' code frequencies)
    prompt_dropout: float = 0.1  # share of images trained with the unconditional prompt (keeps CFG's branch aligned)
    w_rec: float = 1.0  # weight of the pixel MSE (pixels in [-1, 1])
    w_perc: float = 1.0  # weight of the perceptual distance in the model's own vision features
    aux_ce: float = 0.1  # β_ce: cross-entropy on the ground-truth tokens (prior regulariser; sweep in docs/vapi.md)
    kl: float = 0.0  # β_kl: KL to the frozen starting generator (0 = off, saves a forward)
    clip_eps: float = 0.2  # ε of the PPO-clip objective
    adv_clip: float = 5.0  # advantages are clipped to ±this
    credit: str = "local"  # "local": per token, from nearby patches; "image": one advantage per grid (reference)
    credit_radius: int = 1  # "local": a token's reward is the mean over patches within this many rows/columns
    updates_per_batch: int = 1  # optimiser steps on each sampled group (>1 makes the clip bite)
    temperature: float = 1.0  # sampling temperature of the G grids (and of the ratio's log-probs)
    ste_tau: float = 1.0  # Gumbel-softmax temperature (ste only)
    checkpoint_every: int = 50  # write a checkpoint every this many steps (and at the end)
    seed: int = 0  # seeds every step's randomness (step s uses its own generator)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"VAπ method must be one of {METHODS}, got {self.method!r}")
        if self.noise_codes not in NOISE_CODES:
            raise ValueError(f"VAπ noise_codes must be one of {NOISE_CODES}, got {self.noise_codes!r}")
        if self.credit not in CREDITS or self.credit_radius < 0:
            raise ValueError(f"VAπ credit must be one of {CREDITS} and credit_radius ≥ 0")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"VAπ trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.steps < 0:
            raise ValueError(f"VAπ steps must be ≥ 0, got {self.steps}")
        if self.batch < 1:
            raise ValueError(f"VAπ batch must be at least 1, got {self.batch}")
        if self.group < 2:
            raise ValueError(f"VAπ group G must be at least 2 (advantages need a group), got {self.group}")
        if not (self.lr > 0) or not math.isfinite(self.lr):
            raise ValueError(f"VAπ lr must be positive, got {self.lr}")
        if self.warmup < 0 or self.weight_decay < 0 or not (self.grad_clip > 0):
            raise ValueError("VAπ warmup and weight_decay must be ≥ 0 and grad_clip positive")
        if not (0.0 <= self.noise <= 1.0):
            raise ValueError(f"VAπ noise p must be in [0, 1], got {self.noise}")
        if not (0.0 <= self.prompt_dropout < 1.0):
            raise ValueError(f"VAπ prompt_dropout must be in [0, 1), got {self.prompt_dropout}")
        if min(self.w_rec, self.w_perc, self.aux_ce, self.kl) < 0 or self.w_rec + self.w_perc == 0:
            raise ValueError("VAπ weights w_rec, w_perc, aux_ce, kl must be ≥ 0, and w_rec + w_perc > 0")
        if not (0.0 < self.clip_eps < 1.0) or not (self.adv_clip > 0):
            raise ValueError("VAπ clip_eps must be in (0, 1) and adv_clip positive")
        if self.updates_per_batch < 1 or self.checkpoint_every < 1:
            raise ValueError("VAπ updates_per_batch and checkpoint_every must be at least 1")
        if not (self.temperature > 0) or not (self.ste_tau > 0):
            raise ValueError("VAπ temperature and ste_tau must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "VapiConfig":
        """A config from its `to_dict` form; keys left out keep their defaults. Unknown keys and values
        of the wrong type raise ValueError. The result is not validated (see `validate`)."""
        return typed_config.from_dict(cls, data, "VAπ config")

    def override(self, changes: Mapping[str, Any]) -> "VapiConfig":
        """A new, validated config of the same class: this one with `changes` ({"steps": 4}) applied,
        each value checked against its field's type (`safecb.typed_config`)."""
        config = typed_config.override(self, changes, "VAπ config")
        config.validate()
        return config



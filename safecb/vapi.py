"""VAπ: pixel-aware post-training of the generator (DESIGN.md §7, seed 003).

The token grid an AR generator writes is treated as a policy whose reward is measured in pixels,
through the frozen tokenizer. For each ground-truth image I with prompt c:

  1. z = encode(I), the image's visual codes [T].
  2. Contextual noise ξ: every context token z_<T is replaced by a random code with probability p.
  3. One no-grad teacher-forced forward gives π_old(· | c, ξ(z)<j) at every position j; G grids
     x¹..x^G are drawn by sampling every position from those logits.
  4. Reward rᵍ = −(w_rec · MSE(D(xᵍ), I) + w_perc · d_perc(D(xᵍ), I)), D the frozen VQ decoder.
     d_perc compares the model's own understanding encoder features (LPIPS-style: unit-normalised
     per position, squared distance, averaged over positions and layers); never the oracle.
  5. Group-normalised advantages Aᵍ = clip((rᵍ − mean r) / (std r + 1e-8), −5, 5).
  6. Loss = mean over samples and positions of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = π_θ(xᵍⱼ)/π_old(xᵍⱼ)
           + β_ce · CE(π_θ, z)                         (prior regulariser on the ground truth)
           + β_kl · (exp(q) − q − 1), q = log π_ref − log π_θ  (optional, frozen reference)

All G grids of an image share the same noisy context, so one forward gives the logits of the
whole group. Two options are ours. `credit="local"` (the default; "image" is the reference's)
gives every token its own group-normalised advantage from the reward of the patches it can reach:
the tokens of a grid are sampled independently given the context, so this is a lower-variance
estimate of the same gradient when the decoder is local. `noise_codes="data"` (off by default)
draws ξ's random codes from the ground truth's code frequencies instead of uniformly.

Only generator parameters train: the language model and the generation embeddings, aligner and
head ("generator"), or only the generator codebooks gen_embed/gen_head ("codebooks", what
Safe-CB's step 3 uses so its round snapshots can restore them). The VQ tokenizer, its decoder
codebook and the understanding path stay bit-identical.

The straight-through variant the paper compares against (`method="ste"`) replaces 3–6 by a
hard Gumbel-softmax sample whose one-hot picks decoder codebook rows in the forward pass and
passes the softmax's gradient back to the logits, and minimises w_rec·MSE + w_perc·d_perc + β_ce·CE
directly.

Checkpoints are safetensors + JSON: the trainable tensors, the Adam moments as tensors, and the
step counters in JSON. Every step draws its randomness from its own seed (config seed, step), so
a resumed run continues exactly the schedule an uninterrupted one would have run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .models.backend import CODEBOOK_PATHS, JanusBackend

METHODS = ("grpo", "ste")
CREDITS = ("image", "local")
NOISE_CODES = ("uniform", "data")
TRAINABLE = ("generator", "codebooks")
GENERATOR_MODULES = ("language_model", "generation_embeddings", "generation_aligner", "generation_head")
GENERATOR_CODEBOOKS = ("gen_embed", "gen_head", "gen_head_bias")  # what the "codebooks" set trains
CHECKPOINT_FORMAT = "safecb-vapi/1"
TOY_IMAGES = 2000  # toy-world renders standalone VAπ post-trains on

Progress = Callable[[int, int, dict], None]  # (steps done, total steps, the last step's figures)


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
    def from_dict(cls, data: dict) -> "VapiConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown VAπ config keys: {sorted(unknown)}")
        return cls(**data)


# ---------------------------------------------------------------- pure math
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


# ---------------------------------------------------------------- data
@dataclass
class VapiData:
    prompts: list[str]  # prompt of each ground-truth image
    pixels: torch.Tensor  # [N, 3, H, W] ground-truth images in [-1, 1], at the generator's size
    tokens: torch.Tensor  # [N, T] their visual codes under the current decoder codebook

    def __len__(self) -> int:
        return len(self.prompts)

    def code_probs(self, codebook_size: int) -> torch.Tensor:
        """How often each code occurs in the ground-truth grids, [K] summing to 1."""
        counts = torch.bincount(self.tokens.flatten(), minlength=codebook_size).double()
        return counts / counts.sum()

    def fingerprint(self) -> str:
        """Identifies the training set, so a checkpoint is never resumed on other data."""
        h = hashlib.sha256("\n".join(self.prompts).encode())
        h.update(self.tokens.numpy().astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def prepare_data(backend: JanusBackend, prompts: list[str], images) -> VapiData:
    """Ground truth from prompts and uint8 images [N, H, W, 3]; tokens come from the frozen tokenizer."""
    images = np.asarray(images)
    if len(prompts) == 0 or len(prompts) != len(images):
        raise ValueError(f"VAπ needs one prompt per image and at least one image, got {len(prompts)} "
                         f"prompts and {len(images)} images")
    backend._validate_prompts(list(prompts), [0])
    tokens = backend.encode(images)
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    if x.shape[-1] != backend.image_size:
        x = F.interpolate(x, size=(backend.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
    return VapiData(list(prompts), x.clamp(-1, 1).contiguous(), tokens)


def toy_data(backend: JanusBackend, n_images: int, seed: int) -> VapiData:
    """Fresh renders of the toy world's train combinations with train phrasings (seeds disjoint
    from the toy's own training set), the data standalone VAπ post-trains on."""
    from . import world

    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    examples = world.training_examples(n_images, seed=10_000 + seed)
    images = np.stack([world.render(spec, image_seed) for spec, image_seed, _ in examples])
    return prepare_data(backend, [text for _, _, text in examples], images)


# ---------------------------------------------------------------- the model's pieces
def trainable_parameters(backend: JanusBackend, which: str) -> dict[str, torch.nn.Parameter]:
    """The parameters VAπ may change, by their name in the model's state dict."""
    if which == "codebooks":
        return {CODEBOOK_PATHS[name]: backend._param(name) for name in GENERATOR_CODEBOOKS}
    prefixes = tuple(f"model.{m}." for m in GENERATOR_MODULES)
    return {n: p for n, p in backend.model.named_parameters() if n.startswith(prefixes)}


@contextmanager
def only_these_train(model: torch.nn.Module, params: dict[str, torch.nn.Parameter]):
    """requires_grad on exactly `params` while inside; every flag restored afterwards."""
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])


@contextmanager
def swapped_weights(params: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor]):
    """Temporarily hold `values` in `params` (for the reference model's forward)."""
    saved = {n: p.detach().clone() for n, p in params.items()}
    try:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(values[n])
        yield
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])


def teacher_forced_logits(backend: JanusBackend, prompt_ids: list[list[int]], context: torch.Tensor) -> torch.Tensor:
    """Generation-head logits [B, T, K], float32: position j sees the prompt and context[:, :j].

    Prompts are left-padded with an attention mask, the layout the toy was trained with."""
    inner = backend.model.model
    lm = inner.language_model
    device = backend.device
    width = max(len(r) for r in prompt_ids)
    ids = torch.full((len(prompt_ids), width), backend.pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, row in enumerate(prompt_ids):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    ids, mask, context = ids.to(device), mask.to(device), context.to(device)
    text = lm.embed_tokens(ids)
    image = inner.generation_aligner(inner.generation_embeddings(context)).to(text.dtype)
    mask = torch.cat([mask, torch.ones_like(context)], 1)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    hidden = lm(inputs_embeds=torch.cat([text, image], 1), attention_mask=mask, position_ids=positions).last_hidden_state
    return inner.generation_head(hidden[:, width - 1:]).float()


def vision_features(backend: JanusBackend, pixels: torch.Tensor) -> list[torch.Tensor]:
    """The understanding encoder's hidden states for pixels in [-1, 1], each [N, positions, C],
    unit-normalised per position (gradients flow to the pixels; the encoder itself is frozen)."""
    vision = backend.model.model.vision_model
    x = (pixels.float() + 1) / 2
    if x.shape[-1] != backend.vision_size:
        x = F.interpolate(x, size=(backend.vision_size,) * 2, mode="bilinear", align_corners=False)
    mean = torch.tensor(backend.pixel_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(backend.pixel_std, device=x.device).view(1, 3, 1, 1)
    param = vision.embeddings.patch_embedding.weight
    out = vision(pixel_values=((x - mean) / std).to(param.device, param.dtype), output_hidden_states=True)
    return [F.normalize(h.float(), dim=-1) for h in out.hidden_states[1:]]


def _to_grid(values: torch.Tensor, grid: int) -> torch.Tensor:
    """Per-position values [N, P] of a square feature map (a leading class token is dropped) pooled
    to the token grid, [N, grid, grid]."""
    side = math.isqrt(values.shape[1])
    if side * side != values.shape[1]:
        values, side = values[:, 1:], math.isqrt(values.shape[1] - 1)
    return F.adaptive_avg_pool2d(values.reshape(len(values), 1, side, side), grid)[:, 0]


def error_maps(backend: JanusBackend, pixels: torch.Tensor, targets: torch.Tensor,
               target_features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel MSE and perceptual distance of decoded pixels against the ground truth, per token
    patch: two maps [N, grid, grid]. Their means over the grid are the per-image MSE and the
    LPIPS-style distance (squared distance of unit features, averaged over positions and layers)."""
    g = backend.grid_size
    squared = ((pixels.float() - targets.to(pixels.device)) ** 2).mean(1, keepdim=True)
    mse = F.adaptive_avg_pool2d(squared, g)[:, 0]
    features = vision_features(backend, pixels)
    perc = torch.stack([_to_grid(((x - y) ** 2).sum(-1), g) for x, y in zip(features, target_features)]).mean(0)
    return mse, perc


def local_rewards(reward_map: torch.Tensor, radius: int) -> torch.Tensor:
    """Each token's reward [N, T]: the mean patch reward within `radius` patches of it (the decoder's
    reach), so a token is credited with the pixels it can change and not the rest of the image."""
    pooled = F.avg_pool2d(reward_map[:, None], 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    return pooled.flatten(1)


@torch.no_grad()
def reconstruction_reward(backend: JanusBackend, grids: torch.Tensor, targets: torch.Tensor,
                          cfg: VapiConfig, target_features: list[torch.Tensor] | None = None) -> dict:
    """r = −(w_rec·MSE + w_perc·d_perc) of each grid [N, T] decoded by the frozen tokenizer against
    its ground-truth image [N, 3, H, W]. Returns reward, mse and perc [N] and the reward per
    token patch, "map" [N, grid, grid] (whose mean is the reward)."""
    vq = backend.model.model.vqmodel
    pixels = vq.decode(grids.to(backend.device)).float().clamp(-1, 1)
    if target_features is None:
        target_features = vision_features(backend, targets.to(backend.device))
    mse, perc = error_maps(backend, pixels, targets, target_features)
    reward_map = -(cfg.w_rec * mse + cfg.w_perc * perc)
    return {"reward": reward_map.mean((1, 2)).cpu(), "mse": mse.mean((1, 2)).cpu(),
            "perc": perc.mean((1, 2)).cpu(), "map": reward_map.cpu()}


def straight_through_pixels(backend: JanusBackend, logits: torch.Tensor, tau: float,
                            generator: torch.Generator) -> torch.Tensor:
    """Hard Gumbel-softmax grids decoded by the frozen decoder, [N, 3, H, W]; the forward pass uses
    the sampled one-hot, the backward pass the softmax's gradient (straight-through)."""
    u = torch.rand(logits.shape, generator=generator).clamp(1e-10, 1 - 1e-10).to(logits.device)
    soft = F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    one_hot = hard - soft.detach() + soft
    vq = backend.model.model.vqmodel
    param = vq.post_quant_conv.weight
    book = F.normalize(vq.quantize.embedding.weight.detach().float(), dim=-1)
    rows = one_hot @ book
    grid = rows.view(len(rows), backend.grid_size, backend.grid_size, -1).permute(0, 3, 1, 2)
    return vq.decoder(vq.post_quant_conv(grid.to(param.dtype))).float()


# ---------------------------------------------------------------- checkpoints
def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


class VapiCheckpoint:
    """A VAπ run directory:

        state.json               step, config, model fingerprint, data fingerprint, Adam step counters, history
        generator.safetensors    the trainable tensors after `step` steps
        optimizer.safetensors    Adam's first and second moments, "exp_avg.<name>" / "exp_avg_sq.<name>"
        reference.safetensors    the starting trainable tensors (only when the KL term is on)
        model/                   the post-trained model in the Hugging Face layout (written by the CLI)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / "state.json").exists()

    def read_state(self) -> dict:
        try:
            state = json.loads((self.path / "state.json").read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path / 'state.json'} is not valid JSON: {exc}") from exc
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.path} is not a VAπ checkpoint directory (format {state.get('format')!r})")
        return state

    def save(self, state: dict, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
             reference: dict[str, torch.Tensor] | None) -> None:
        from safetensors.torch import save_file

        self.path.mkdir(parents=True, exist_ok=True)
        weights = {n: p.detach().cpu().contiguous() for n, p in params.items()}
        moments, counters = {}, {}
        for n, p in params.items():
            s = optimizer.state.get(p)
            if s:
                moments[f"exp_avg.{n}"] = s["exp_avg"].detach().cpu().contiguous()
                moments[f"exp_avg_sq.{n}"] = s["exp_avg_sq"].detach().cpu().contiguous()
                counters[n] = float(s["step"])
        _write_atomic(self.path / "generator.safetensors", lambda p: save_file(weights, str(p)))
        _write_atomic(self.path / "optimizer.safetensors", lambda p: save_file(moments, str(p)))
        if reference is not None and not (self.path / "reference.safetensors").exists():
            ref = {n: t.contiguous() for n, t in reference.items()}
            _write_atomic(self.path / "reference.safetensors", lambda p: save_file(ref, str(p)))
        state = dict(state, format=CHECKPOINT_FORMAT, adam_steps=counters)
        _write_atomic(self.path / "state.json", lambda p: p.write_text(json.dumps(state, indent=2)))

    def load_into(self, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                  state: dict) -> dict[str, torch.Tensor] | None:
        """Put the saved tensors and Adam state in place (all checked before any is written);
        returns the reference tensors when saved."""
        from safetensors.torch import load_file

        weights = load_file(str(self.path / "generator.safetensors"))
        moments = load_file(str(self.path / "optimizer.safetensors"))
        if set(weights) != set(params):
            raise ValueError(f"{self.path} holds other trainable tensors than this config trains")
        for n, p in params.items():
            if weights[n].shape != p.shape or not torch.isfinite(weights[n]).all():
                raise ValueError(f"{self.path}: tensor {n} has the wrong shape or is not finite")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(weights[n].to(p.device, p.dtype))
        counters = state.get("adam_steps", {})
        names = list(params)
        saved = optimizer.state_dict()
        saved["state"] = {
            i: {"step": torch.tensor(counters[n]), "exp_avg": moments[f"exp_avg.{n}"].to(params[n].device),
                "exp_avg_sq": moments[f"exp_avg_sq.{n}"].to(params[n].device)}
            for i, n in enumerate(names) if n in counters
        }
        optimizer.load_state_dict(saved)
        ref_file = self.path / "reference.safetensors"
        return load_file(str(ref_file)) if ref_file.exists() else None


# ---------------------------------------------------------------- training
@dataclass
class VapiResult:
    steps_done: int  # optimiser steps finished in total (including before a resume)
    history: list[dict]  # one dict of figures per step
    seconds: float  # wall time of this call
    stopped_early: bool = False  # `should_stop` asked to stop before the last step


def _step_prompts(backend: JanusBackend, data: VapiData, rows: torch.Tensor, drop: torch.Tensor) -> list[list[int]]:
    out = []
    for i, blank in zip(rows.tolist(), drop.tolist()):
        ids = backend.generation_ids(data.prompts[i])
        out.append(backend.unconditional_ids(ids) if blank else ids)
    return out


def _step_batch(backend: JanusBackend, data: VapiData, cfg: VapiConfig, generator: torch.Generator):
    """A training step's batch: prompt ids (some blanked for CFG), ground-truth tokens, target pixels
    and the noisy teacher-forcing context ξ. Draws from `generator` in a fixed order (resume relies on it)."""
    rows = torch.randint(0, len(data), (min(cfg.batch, len(data)),), generator=generator)
    drop = torch.rand(len(rows), generator=generator) < cfg.prompt_dropout
    prompts = _step_prompts(backend, data, rows, drop)
    tokens, targets = data.tokens[rows], data.pixels[rows]
    probs = data.code_probs(backend.codebook_size) if cfg.noise_codes == "data" else None
    context = noisy_context(tokens, cfg.noise, backend.codebook_size, generator, probs)
    return prompts, tokens, targets, context


def grpo_step(backend: JanusBackend, data: VapiData, cfg: VapiConfig, optimizer: torch.optim.Optimizer,
              params: dict[str, torch.nn.Parameter], reference: dict[str, torch.Tensor] | None,
              generator: torch.Generator) -> dict:
    """One VAπ step (module docstring, 1–6): sample a group per image, score it in pixels, update."""
    prompts, tokens, targets, context = _step_batch(backend, data, cfg, generator)
    b, g, t = len(tokens), cfg.group, tokens.shape[1]
    with torch.no_grad():
        logp_all = F.log_softmax(teacher_forced_logits(backend, prompts, context) / cfg.temperature, -1).cpu()
        grids = torch.multinomial(logp_all.exp().view(b * t, -1), g, replacement=True, generator=generator)
        grids = grids.view(b, t, g).permute(0, 2, 1).contiguous()  # [B, G, T]
        logp_old = logp_all.unsqueeze(1).expand(b, g, t, -1).gather(-1, grids.unsqueeze(-1)).squeeze(-1)
        features = [f.repeat_interleave(g, 0) for f in vision_features(backend, targets.to(backend.device))]
        scored = reconstruction_reward(backend, grids.view(b * g, t), targets.repeat_interleave(g, 0), cfg, features)
        if cfg.credit == "local":
            advantages = group_advantages(local_rewards(scored["map"], cfg.credit_radius).view(b, g, t), cfg.adv_clip)
        else:
            advantages = group_advantages(scored["reward"].view(b, g), cfg.adv_clip)
        logp_ref = None
        if cfg.kl > 0:
            with swapped_weights(params, reference):
                ref_all = F.log_softmax(teacher_forced_logits(backend, prompts, context) / cfg.temperature, -1).cpu()
            logp_ref = ref_all.unsqueeze(1).expand(b, g, t, -1).gather(-1, grids.unsqueeze(-1)).squeeze(-1)
    figures = {}
    device = backend.device
    for _ in range(cfg.updates_per_batch):
        logits = teacher_forced_logits(backend, prompts, context)
        logp = F.log_softmax(logits / cfg.temperature, -1)
        logp_tok = logp.unsqueeze(1).expand(b, g, t, -1).gather(-1, grids.to(device).unsqueeze(-1)).squeeze(-1)
        policy = clipped_policy_loss(logp_tok, logp_old.to(device), advantages.to(device), cfg.clip_eps)
        ce = F.cross_entropy(logits.reshape(b * t, -1), tokens.to(device).reshape(-1))
        loss = policy + cfg.aux_ce * ce
        kl = torch.zeros(())
        if logp_ref is not None:
            kl = kl_to_reference(logp_tok, logp_ref.to(device)).mean()
            loss = loss + cfg.kl * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        optimizer.step()
        ratio = torch.exp(logp_tok.detach() - logp_old.to(device))
        figures = {"loss": float(loss.detach()), "policy": float(policy.detach()), "ce": float(ce.detach()), "kl": float(kl.detach()),
                   "clip_frac": float(((ratio - 1).abs() > cfg.clip_eps).float().mean())}
    return {"reward": float(scored["reward"].mean()), "mse": float(scored["mse"].mean()),
            "perc": float(scored["perc"].mean()), **figures}


def ste_step(backend: JanusBackend, data: VapiData, cfg: VapiConfig, optimizer: torch.optim.Optimizer,
             params: dict[str, torch.nn.Parameter], generator: torch.Generator) -> dict:
    """One straight-through step: decode hard Gumbel-softmax grids and backpropagate the pixel loss."""
    prompts, tokens, targets, context = _step_batch(backend, data, cfg, generator)
    b, g, t = len(tokens), cfg.group, tokens.shape[1]
    with torch.no_grad():
        features = [f.repeat_interleave(g, 0) for f in vision_features(backend, targets.to(backend.device))]
    logits = teacher_forced_logits(backend, prompts, context)
    pixels = straight_through_pixels(backend, (logits / cfg.temperature).repeat_interleave(g, 0), cfg.ste_tau,
                                     generator)
    mse, perc = (m.mean((1, 2)) for m in error_maps(backend, pixels, targets.repeat_interleave(g, 0), features))
    ce = F.cross_entropy(logits.reshape(b * t, -1), tokens.to(backend.device).reshape(-1))
    loss = cfg.w_rec * mse.mean() + cfg.w_perc * perc.mean() + cfg.aux_ce * ce
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
    optimizer.step()
    mse, perc = mse.detach(), perc.detach()
    return {"reward": float(-(cfg.w_rec * mse + cfg.w_perc * perc).mean()), "mse": float(mse.mean()),
            "perc": float(perc.mean()), "loss": float(loss.detach()), "ce": float(ce.detach())}


def train_vapi(
    backend: JanusBackend,
    data: VapiData,
    cfg: VapiConfig,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> VapiResult:
    """Post-train the backend's generator in place. With `out_dir`, checkpoint there and resume
    from it when it already holds a run of the same model, data and config."""
    cfg.validate()
    if len(data) == 0:
        raise ValueError("VAπ needs at least one ground-truth image")
    started = time.perf_counter()
    params = trainable_parameters(backend, cfg.trainable)
    optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    checkpoint = VapiCheckpoint(out_dir) if out_dir is not None else None
    header = {"config": cfg.to_dict(), "fingerprint": backend.fingerprint, "data": data.fingerprint(),
              "source": backend.source}
    reference = {n: p.detach().cpu().clone() for n, p in params.items()} if cfg.kl > 0 else None
    start, history = 0, []
    if checkpoint is not None and checkpoint.exists():
        state = checkpoint.read_state()
        for key, what in (("fingerprint", "another model"), ("data", "other training data"),
                          ("config", "another VAπ config")):
            if state.get(key) != header[key]:
                raise ValueError(f"{checkpoint.path} holds a VAπ run of {what}; use a new output directory")
        saved_reference = checkpoint.load_into(params, optimizer, state)
        reference = saved_reference if cfg.kl > 0 else None
        start, history = int(state["step"]), list(state.get("history", []))

    def save(step: int) -> None:
        if checkpoint is not None:
            checkpoint.save({**header, "step": step, "history": history}, params, optimizer, reference)

    stopped = False
    with only_these_train(backend.model, params):
        for step in range(start, cfg.steps):
            if should_stop is not None and should_stop():
                stopped = True
                break
            t0 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            generator = step_generator(cfg.seed, step)
            if cfg.method == "grpo":
                figures = grpo_step(backend, data, cfg, optimizer, params, reference, generator)
            else:
                figures = ste_step(backend, data, cfg, optimizer, params, generator)
            figures.update({"step": step + 1, "lr": lr_at(step, cfg), "seconds": time.perf_counter() - t0})
            history.append(figures)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                save(step + 1)
            if progress is not None:
                progress(step + 1, cfg.steps, figures)
    done = len(history) if not history else int(history[-1]["step"])
    if stopped:
        save(done)
    return VapiResult(done, history, time.perf_counter() - started, stopped)


@torch.no_grad()
def mean_reward(backend: JanusBackend, data: VapiData, cfg: VapiConfig, samples: int = 4, seed: int = 0,
                batch: int = 64) -> np.ndarray:
    """Per image, the mean reconstruction reward of `samples` grids drawn from the clean
    teacher-forced logits (no noise, conditional prompt): how well the generator's own token
    choices reproduce the image in pixels. [N]"""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(data), batch):
        rows = torch.arange(start, min(start + batch, len(data)))
        prompts = [backend.generation_ids(data.prompts[i]) for i in rows.tolist()]
        tokens, targets = data.tokens[rows], data.pixels[rows]
        logits = teacher_forced_logits(backend, prompts, tokens[:, :-1]) / cfg.temperature
        b, t = tokens.shape
        grids = torch.multinomial(F.softmax(logits, -1).cpu().view(b * t, -1), samples, replacement=True,
                                  generator=generator).view(b, t, samples).permute(0, 2, 1).reshape(b * samples, t)
        scored = reconstruction_reward(backend, grids, targets.repeat_interleave(samples, 0), cfg)
        out.append(scored["reward"].view(b, samples).mean(1))
    return torch.cat(out).numpy()

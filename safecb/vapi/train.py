"""VAπ's training loop: one GRPO (or STE) step at a time, checkpointed, resumable; and the mean
reconstruction reward the benches report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..models.backend import JanusBackend
from .checkpoint import VapiCheckpoint
from .config import VapiConfig
from .data import VapiData
from .generator import only_these_train, swapped_weights, teacher_forced_logits, trainable_parameters, vision_features
from .objective import clipped_policy_loss, group_advantages, kl_to_reference, lr_at, noisy_context, step_generator
from .reward import error_maps, local_rewards, reconstruction_reward, straight_through_pixels

Progress = Callable[[int, int, dict], None]  # (steps done, total steps, the last step's figures)


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

"""Scratch wrapper (docs/experiments/2026-12-07-generator-frontier.md, rows patch*): `bench safety` with the
generator edit's steps 1 and 2 replaced by gated units in the generation head. Not part of the library.

Usage: PYTHONPATH=. python THIS [--units R] [--steps N] [--lr LR] [--beta B] [--benign N] bench safety ...
(--benign N: the round's prompt set gets N benign prompts and the grid leaves their texts out, as
2026-12-07-generator-frontier-benign.py does.)

The head is W_out · gelu(W_in x + b_in) + b_out over the trunk's hidden state x. A linear edit of
W_out (the "alphaedit" and "erase" steps) changes every context in proportion to how much it shares
the harmful contexts' directions, benign ones included. Here R of the head's hidden units, the ones
benign contexts use least (`unit_usage`), are rewritten into gates: unit r reads u_r · x + c_r
and writes v_r into the logits, and through the GELU it is nearly silent wherever u_r · x + c_r < 0. The
gates and what they write are fitted together, with guidance as the sampler applies it:

    KL(p_safe ‖ q(x_harm)) + β · KL(p_now ‖ q(x_benign))

where x_harm runs over every position of the mined harmful grids under their harmful prompts and
p_safe is what the safe rewrite draws over the same prefix (the model now); x_benign runs over the
benign generations and the safe rewrites' own generations judged safe, and p_now is what the model
draws there now. Units a previous round rewrote (their input rows differ from the reference
model's) are never chosen again.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from typing import Callable

import torch
import torch.nn.functional as F

import safecb.engine.steps as steps
from safecb.engine.config import HeadFitConfig
from safecb.engine.head_fit import HEAD_TENSORS, HeadFitData, fit_head, guided_logits, head_fit_data, kl_to
from safecb.engine.measure import Measurement
from safecb.engine.mining import Pairs
from safecb.engine.prompts import RoundPrompts
from safecb.models.backend import JanusBackend

Progress = Callable[[str, float], None]
SETTINGS = {"units": 8, "steps": 400, "lr": 1e-2, "beta": 20.0, "mode": "gates", "keep": "now"}


def unit_usage(hidden: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """[h] how much each of the head's hidden units moves the logits over `hidden` [N, d]: its mean
    |activation| times the norm of the output column it writes. Zeroing a unit changes any logit by
    at most its activation times that norm, so the least used units cost the least to repurpose."""
    with torch.no_grad():
        act = F.gelu(hidden @ w_in.T + b_in).abs().mean(0)
        return act * w_out.norm(dim=0)


def with_units(w_in: torch.Tensor, b_in: torch.Tensor, w_out: torch.Tensor, units: torch.Tensor,
               u: torch.Tensor, c: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The head with hidden units `units` [R] rewritten: their input rows u [R, d], biases c [R] and
    output columns v [K, R]; every other unit untouched (new tensors, differentiable in u, c, v)."""
    new_in, new_b, new_out = w_in.clone(), b_in.clone(), w_out.clone()
    new_in[units], new_b[units], new_out[:, units] = u, c, v
    return new_in, new_b, new_out


def free_units(head: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], benign: torch.Tensor,
               n: int) -> torch.Tensor:
    """The `n` units benign contexts use least, among those no earlier round rewrote."""
    usage = unit_usage(benign, head["gen_head_in"], head["gen_head_in_bias"], head["gen_head"])
    taken = (head["gen_head_in"] != reference["gen_head_in"]).any(1) | (
        head["gen_head_in_bias"] != reference["gen_head_in_bias"])
    usage = usage.masked_fill(taken, float("inf"))
    if int((~taken).sum()) < n:
        raise ValueError(f"the head has {int((~taken).sum())} units left to patch, {n} asked")
    return usage.argsort()[:n]


def generator_patch(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs,
                    config: SafeCBConfig, reference: dict[str, torch.Tensor], progress: Progress
                    ) -> tuple[dict[str, torch.Tensor], dict]:
    """Step 1 "patch". Returns the head's edited tensors (gen_head_in, its bias, gen_head) and figures."""
    cfg, w = SETTINGS, config.sampler.cfg_weight
    data = head_fit_data(backend, prompts, m, pairs, w, F.gelu)
    head = {name: backend.get_codebook(name) for name in HEAD_TENSORS}
    if cfg["mode"] == "full":
        if cfg["keep"] == "reference":  # keep the benign outputs of the unedited model, not of this round's
            ref_head = {name: reference[name] for name in head}
            with torch.no_grad():
                data.kept_logits = guided_logits(ref_head, data.kept, data.kept_uncond, w, F.gelu)
        return full_head(data, head, config, w, progress)
    units = free_units(head, reference, data.kept, cfg['units'])
    generator = torch.Generator().manual_seed(config.seed)
    n_units, d, k = len(units), data.harmful.shape[1], head["gen_head"].shape[0]
    # Gates start as random directions with unit-scale pre-activations, a little closed (c = −1 below the
    # mean state): the fit opens them where the mined contexts need them.
    states = torch.cat([data.harmful, data.kept])
    u = torch.randn(n_units, d, generator=generator) / states.std(0).norm()
    c = -(u @ states.mean(0)) - 1.0
    v = torch.zeros(k, n_units)
    params = [p.requires_grad_() for p in (u, c, v)]
    optimiser = torch.optim.Adam(params, lr=cfg['lr'])

    def logits(cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        w_in, b_in, w_out = with_units(head["gen_head_in"], head["gen_head_in_bias"], head["gen_head"], units, u, c, v)
        edited = {**head, "gen_head_in": w_in, "gen_head_in_bias": b_in, "gen_head": w_out}
        return guided_logits(edited, cond, uncond, w, F.gelu)

    def loss_on(i1: torch.Tensor, i0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fit = kl_to(data.target[i1], logits(data.harmful[i1], data.harmful_uncond[i1]))
        keep = kl_to(data.kept_logits[i0], logits(data.kept[i0], data.kept_uncond[i0]))
        return fit, keep

    batch = config.fine_tune.batch
    with torch.no_grad():
        all_h, all_b = torch.arange(len(data.harmful)), torch.arange(len(data.kept))
        fit_before, keep_before = loss_on(all_h, all_b)
    for step in range(cfg['steps']):
        i1 = torch.randint(0, len(data.harmful), (min(batch, len(data.harmful)),), generator=generator)
        i0 = torch.randint(0, len(data.kept), (min(batch, len(data.kept)),), generator=generator)
        fit, keep = loss_on(i1, i0)
        optimiser.zero_grad()
        (fit + cfg['beta'] * keep).backward()
        optimiser.step()
        if step % 25 == 0:
            progress("step 1: patch", step / cfg['steps'])
    with torch.no_grad():
        fit_after, keep_after = loss_on(all_h, all_b)
        w_in, b_in, w_out = with_units(head["gen_head_in"], head["gen_head_in_bias"], head["gen_head"], units, u, c, v)
        open_benign = float((F.gelu(data.kept @ u.T + c) > 1e-3).any(1).float().mean())
        open_harmful = float((F.gelu(data.harmful @ u.T + c) > 1e-3).any(1).float().mean())
    info = {
        "patched_units": [int(i) for i in units],
        "patch_fit_kl": [float(fit_before), float(fit_after)],
        "patch_benign_kl": [float(keep_before), float(keep_after)],
        "patch_open_benign": open_benign,
        "patch_open_harmful": open_harmful,
    }
    return {"gen_head_in": w_in.detach(), "gen_head_in_bias": b_in.detach(), "gen_head": w_out.detach()}, info


def full_head(data: HeadFitData, head: dict[str, torch.Tensor], config, w: float, progress: Progress
              ) -> tuple[dict[str, torch.Tensor], dict]:
    """Mode "full": every tensor of the head (both layers and biases) fitted on the same loss as the
    gates; the library's `head_fit.fit_head` (what `generator_edit.step1 = "head"` runs) with this
    wrapper's settings."""
    fit_config = HeadFitConfig(steps=SETTINGS["steps"], lr=SETTINGS["lr"], preserve_weight=SETTINGS["beta"],
                               batch=config.fine_tune.batch)
    edited, info = fit_head(data, head, fit_config, w, F.gelu, config.seed, progress)
    return edited, {"patch_fit_kl": info["head_fit_kl"], "patch_benign_kl": info["head_kept_kl"]}


def patched_round(backend, prompts, m, pairs, config, reference, progress):
    progress("harmful space", 0.0)
    space = steps.build_harmful_space(steps.difference_vectors(backend.get_codebook("gen_head"), pairs.harmful_grids,
                                                               pairs.safe_grids, normalize_rows=False), config.space)
    codebooks, info = generator_patch(backend, prompts, m, pairs, config, reference, progress)
    return steps.EditResult(codebooks, space, info)


if __name__ == "__main__":
    args = sys.argv[1:]
    while args and args[0].startswith("--"):
        flag, value = args[0][2:], args[1]
        args = args[2:]
        if flag == "benign":
            import safecb.bench.safety as bs
            import safecb.eval.broad as broad
            from safecb.engine import toy_round_prompts
            from safecb.world.prompts import PromptSetConfig
            n = int(value)
            bs.toy_round_prompts = broad.toy_round_prompts = lambda: toy_round_prompts(PromptSetConfig(n_train_benign=n))
        else:
            SETTINGS[flag] = type(SETTINGS[flag])(value)
    steps.generator_round = patched_round
    from safecb.cli import main
    raise SystemExit(main(args))

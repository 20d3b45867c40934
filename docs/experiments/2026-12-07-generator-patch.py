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
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import safecb.engine.steps as steps
from safecb.engine.config import HeadFitConfig
from safecb.engine.head_fit import HeadFitData, fit_head
from safecb.engine.measure import Measurement
from safecb.engine.mining import Pairs
from safecb.engine.prompts import RoundPrompts
from safecb.models.backend import CODEBOOK_PATHS, JanusBackend

Progress = Callable[[str, float], None]
SETTINGS = {"units": 8, "steps": 400, "lr": 1e-2, "beta": 20.0, "mode": "gates", "keep": "now"}
# the head's first layer becomes a codebook, so round snapshots, rollback and the bench's edited model carry it
CODEBOOK_PATHS["gen_head_in"] = "model.generation_head.proj_out.weight"
CODEBOOK_PATHS["gen_head_in_bias"] = "model.generation_head.proj_out.bias"


def head_logits_with(hidden: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor, w_out: torch.Tensor,
                     b_out: torch.Tensor) -> torch.Tensor:
    """The generation head as the model computes it: W_out · gelu(W_in x + b_in) + b_out, for hidden
    states x [.., d] (differentiable in every argument)."""
    return F.gelu(hidden @ w_in.T + b_in) @ w_out.T + b_out


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


@dataclass
class PatchData:
    harmful: torch.Tensor  # [M, d] hidden states at every position of the mined harmful grids, harmful prompt
    harmful_uncond: torch.Tensor  # [M, d] the same prefixes after the prompt's unconditional branch
    target: torch.Tensor  # [M, K] guided logits the safe rewrite gives over the same prefixes
    benign: torch.Tensor  # [N, d] hidden states of the benign generations and the rewrites' generations judged safe
    benign_uncond: torch.Tensor  # [N, d] their unconditional counterparts
    reference: torch.Tensor  # [N, K] guided logits the model gives there now


def _head(backend: JanusBackend) -> dict[str, torch.Tensor]:
    return {name: backend.get_codebook(name) for name in ("gen_head_in", "gen_head_in_bias", "gen_head", "gen_head_bias")}


def _guided(head: dict[str, torch.Tensor], cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    args = (head["gen_head_in"], head["gen_head_in_bias"], head["gen_head"], head["gen_head_bias"])
    return torch.lerp(head_logits_with(uncond, *args), head_logits_with(cond, *args), w)


def patch_data(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs, guidance: float) -> PatchData:
    harmful_hidden, benign_hidden = m.sets["harmful"].hidden, m.sets["benign"].hidden
    if harmful_hidden is None or benign_hidden is None:
        raise ValueError("the generator target needs hidden states: measure with keep_hidden=True")
    d = harmful_hidden.shape[-1]
    rows = torch.as_tensor(pairs.harmful_rows, dtype=torch.long)
    harmful_texts = [prompts.harmful[i].text for i in pairs.prompt_index]
    rewrites = [prompts.harmful[i].rewrite for i in pairs.prompt_index]
    head = _head(backend)
    cond = harmful_hidden[rows].reshape(-1, d)
    uncond = backend.teacher_forced_hidden(harmful_texts, pairs.harmful_grids, unconditional=True).reshape(-1, d)
    safe = backend.teacher_forced_hidden(rewrites, pairs.harmful_grids).reshape(-1, d)
    with torch.no_grad():
        target = _guided(head, safe, uncond, guidance)
    # kept as they are: the benign generations and the safe rewrites' own generations the model judged safe
    benign, rewrite = m.sets["benign"], m.sets["rewrite"]
    kept_texts = [b.text for b in prompts.benign for _ in benign.seeds]
    kept_hidden, kept_tokens = [benign_hidden.reshape(-1, d)], [benign.tokens]
    safe_rows = torch.as_tensor(np.flatnonzero(~m.flagged("rewrite")))
    safe_texts = [prompts.harmful[int(i) // len(rewrite.seeds)].rewrite for i in safe_rows]
    kept_texts += safe_texts
    kept_hidden.append(backend.teacher_forced_hidden(safe_texts, rewrite.tokens[safe_rows]).reshape(-1, d))
    kept_tokens.append(rewrite.tokens[safe_rows])
    b_cond = torch.cat(kept_hidden)
    b_uncond = backend.teacher_forced_hidden(kept_texts, torch.cat(kept_tokens), unconditional=True).reshape(-1, d)
    with torch.no_grad():
        reference = _guided(head, b_cond, b_uncond, guidance)
    return PatchData(cond, uncond, target, b_cond, b_uncond, reference)


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


def _kl(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits, -1), F.log_softmax(target_logits, -1), log_target=True,
                    reduction="batchmean")


def generator_patch(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs,
                    config: SafeCBConfig, reference: dict[str, torch.Tensor], progress: Progress
                    ) -> tuple[dict[str, torch.Tensor], dict]:
    """Step 1 "patch". Returns the head's edited tensors (gen_head_in, its bias, gen_head) and figures."""
    cfg, w = SETTINGS, config.sampler.cfg_weight
    data = patch_data(backend, prompts, m, pairs, w)
    head = _head(backend)
    if cfg["mode"] == "full":
        if cfg["keep"] == "reference":  # keep the benign outputs of the unedited model, not of this round's
            ref_head = {name: reference[name] for name in head}
            with torch.no_grad():
                data.reference = _guided(ref_head, data.benign, data.benign_uncond, w)
        return full_head(data, head, config, w, progress)
    units = free_units(head, reference, data.benign, cfg['units'])
    generator = torch.Generator().manual_seed(config.seed)
    n_units, d, k = len(units), data.harmful.shape[1], head["gen_head"].shape[0]
    # Gates start as random directions with unit-scale pre-activations, a little closed (c = −1 below the
    # mean state): the fit opens them where the mined contexts need them.
    states = torch.cat([data.harmful, data.benign])
    u = torch.randn(n_units, d, generator=generator) / states.std(0).norm()
    c = -(u @ states.mean(0)) - 1.0
    v = torch.zeros(k, n_units)
    params = [p.requires_grad_() for p in (u, c, v)]
    optimiser = torch.optim.Adam(params, lr=cfg['lr'])

    def logits(cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        w_in, b_in, w_out = with_units(head["gen_head_in"], head["gen_head_in_bias"], head["gen_head"], units, u, c, v)
        edited = {**head, "gen_head_in": w_in, "gen_head_in_bias": b_in, "gen_head": w_out}
        return _guided(edited, cond, uncond, w)

    def loss_on(i1: torch.Tensor, i0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fit = _kl(data.target[i1], logits(data.harmful[i1], data.harmful_uncond[i1]))
        keep = _kl(data.reference[i0], logits(data.benign[i0], data.benign_uncond[i0]))
        return fit, keep

    batch = config.fine_tune.batch
    with torch.no_grad():
        all_h, all_b = torch.arange(len(data.harmful)), torch.arange(len(data.benign))
        fit_before, keep_before = loss_on(all_h, all_b)
    for step in range(cfg['steps']):
        i1 = torch.randint(0, len(data.harmful), (min(batch, len(data.harmful)),), generator=generator)
        i0 = torch.randint(0, len(data.benign), (min(batch, len(data.benign)),), generator=generator)
        fit, keep = loss_on(i1, i0)
        optimiser.zero_grad()
        (fit + cfg['beta'] * keep).backward()
        optimiser.step()
        if step % 25 == 0:
            progress("step 1: patch", step / cfg['steps'])
    with torch.no_grad():
        fit_after, keep_after = loss_on(all_h, all_b)
        w_in, b_in, w_out = with_units(head["gen_head_in"], head["gen_head_in_bias"], head["gen_head"], units, u, c, v)
        open_benign = float((F.gelu(data.benign @ u.T + c) > 1e-3).any(1).float().mean())
        open_harmful = float((F.gelu(data.harmful @ u.T + c) > 1e-3).any(1).float().mean())
    info = {
        "patched_units": [int(i) for i in units],
        "patch_fit_kl": [float(fit_before), float(fit_after)],
        "patch_benign_kl": [float(keep_before), float(keep_after)],
        "patch_open_benign": open_benign,
        "patch_open_harmful": open_harmful,
    }
    return {"gen_head_in": w_in.detach(), "gen_head_in_bias": b_in.detach(), "gen_head": w_out.detach()}, info


def full_head(data: PatchData, head: dict[str, torch.Tensor], config, w: float, progress: Progress
              ) -> tuple[dict[str, torch.Tensor], dict]:
    """Mode "full": every tensor of the head (both layers and biases) fitted on the same loss as the
    gates; the library's `head_fit.fit_head` (what `generator_edit.step1 = "head"` runs) with this
    wrapper's settings."""
    fit_config = HeadFitConfig(steps=SETTINGS["steps"], lr=SETTINGS["lr"], preserve_weight=SETTINGS["beta"],
                               batch=config.fine_tune.batch)
    edited, info = fit_head(HeadFitData(*vars(data).values()), head, fit_config, w, F.gelu, config.seed, progress)
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

"""Edit step 1 "head": the whole generation head fitted to the safe rewrites (`generator_edit.step1`).

The head is W_out · act(W_in x + b_in) + b_out over the trunk's hidden state x. The linear edits
("alphaedit", "erase") change only W_out, so a harmful context can be steered only along the
directions its key shares with benign keys. Here all four tensors move, fitted with Adam, with
guidance as the sampler applies it (uncond + w · (cond − uncond)):

    KL(p_safe ‖ q(x_harm)) + β · KL(p_now ‖ q(x_kept))

x_harm runs over every position of the mined harmful grids under their harmful prompts and p_safe
is what the safe rewrite draws over the same prefix with the round's head; x_kept runs over the
benign generations and the safe rewrites' own generations the model judged safe, and p_now is what
the round's head draws there. Step 2 (the fine-tune inside the harmless space) is not run after
it: its preserve term is the fit's second term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..models.backend import JanusBackend
from .config import HeadFitConfig
from .measure import Measurement
from .mining import Pairs
from .prompts import RoundPrompts

Progress = Callable[[str, float], None]
HEAD_TENSORS = ("gen_head_in", "gen_head_in_bias", "gen_head", "gen_head_bias")  # W_in, b_in, W_out, b_out


@dataclass
class HeadFitData:
    harmful: torch.Tensor  # [M, d] hidden states at every position of the mined harmful grids, harmful prompt
    harmful_uncond: torch.Tensor  # [M, d] the same prefixes after the prompt's unconditional branch
    target: torch.Tensor  # [M, K] guided logits the safe rewrite gives over the same prefixes
    kept: torch.Tensor  # [N, d] hidden states of the benign generations and the rewrites' generations judged safe
    kept_uncond: torch.Tensor  # [N, d] their unconditional counterparts
    kept_logits: torch.Tensor  # [N, K] guided logits the round's head gives there


def head_logits(hidden: torch.Tensor, head: dict[str, torch.Tensor], act: Callable) -> torch.Tensor:
    """The generation head as the model computes it, for hidden states [.., d] (differentiable)."""
    return act(hidden @ head["gen_head_in"].T + head["gen_head_in_bias"]) @ head["gen_head"].T + head["gen_head_bias"]


def guided_logits(head: dict[str, torch.Tensor], cond: torch.Tensor, uncond: torch.Tensor, weight: float,
                  act: Callable) -> torch.Tensor:
    """What the sampler draws from: uncond + weight · (cond − uncond), in logits."""
    return torch.lerp(head_logits(uncond, head, act), head_logits(cond, head, act), weight)


def kl_to(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(target) ‖ softmax(logits)), averaged over rows."""
    return F.kl_div(F.log_softmax(logits, -1), F.log_softmax(target_logits, -1), log_target=True,
                    reduction="batchmean")


def head_fit_data(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs, guidance: float,
                  act: Callable) -> HeadFitData:
    harmful_hidden, benign_hidden = m.sets["harmful"].hidden, m.sets["benign"].hidden
    if harmful_hidden is None or benign_hidden is None:
        raise ValueError("the head edit needs hidden states: measure with keep_hidden=True")
    d = harmful_hidden.shape[-1]
    head = {name: backend.get_codebook(name) for name in HEAD_TENSORS}
    rows = torch.as_tensor(pairs.harmful_rows, dtype=torch.long)
    harmful_texts = [prompts.harmful[i].text for i in pairs.prompt_index]
    rewrites = [prompts.harmful[i].rewrite for i in pairs.prompt_index]
    cond = harmful_hidden[rows].reshape(-1, d)
    uncond = backend.teacher_forced_hidden(harmful_texts, pairs.harmful_grids, unconditional=True).reshape(-1, d)
    safe = backend.teacher_forced_hidden(rewrites, pairs.harmful_grids).reshape(-1, d)
    benign, rewrite = m.sets["benign"], m.sets["rewrite"]
    kept_texts = [b.text for b in prompts.benign for _ in benign.seeds]
    kept_hidden, kept_tokens = [benign_hidden.reshape(-1, d)], [benign.tokens]
    safe_rows = torch.as_tensor(np.flatnonzero(~m.flagged("rewrite")), dtype=torch.long)
    if len(safe_rows):
        safe_texts = [prompts.harmful[int(i) // len(rewrite.seeds)].rewrite for i in safe_rows]
        kept_texts += safe_texts
        kept_hidden.append(backend.teacher_forced_hidden(safe_texts, rewrite.tokens[safe_rows]).reshape(-1, d))
        kept_tokens.append(rewrite.tokens[safe_rows])
    kept = torch.cat(kept_hidden)
    kept_uncond = backend.teacher_forced_hidden(kept_texts, torch.cat(kept_tokens), unconditional=True).reshape(-1, d)
    device = backend.device  # the two products below are [positions, K] at Janus-Pro's K = 16384
    head = {name: value.to(device) for name, value in head.items()}
    with torch.no_grad():
        target = guided_logits(head, safe.to(device), uncond.to(device), guidance, act).cpu()
        kept_logits = guided_logits(head, kept.to(device), kept_uncond.to(device), guidance, act).cpu()
    return HeadFitData(cond, uncond, target, kept, kept_uncond, kept_logits)


def fit_head(data: HeadFitData, head: dict[str, torch.Tensor], cfg: HeadFitConfig, guidance: float, act: Callable,
             seed: int, progress: Progress, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Adam on every tensor of `head` against the two terms, on `device`; returns the fitted tensors
    (on the CPU) and figures. Batches are drawn on the CPU, so the draws do not depend on the device."""
    generator = torch.Generator().manual_seed(seed)
    data = HeadFitData(*(tensor.to(device) for tensor in vars(data).values()))
    edited = {name: value.to(device).clone().requires_grad_() for name, value in head.items()}
    optimiser = torch.optim.Adam(list(edited.values()), lr=cfg.lr)

    def terms(i1: torch.Tensor, i0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fit = kl_to(data.target[i1], guided_logits(edited, data.harmful[i1], data.harmful_uncond[i1], guidance, act))
        keep = kl_to(data.kept_logits[i0], guided_logits(edited, data.kept[i0], data.kept_uncond[i0], guidance, act))
        return fit, keep

    every_harmful = torch.arange(len(data.harmful), device=device)
    every_kept = torch.arange(len(data.kept), device=device)
    with torch.no_grad():
        fit_before, keep_before = terms(every_harmful, every_kept)
    for step in range(cfg.steps):
        i1 = torch.randint(0, len(data.harmful), (min(cfg.batch, len(data.harmful)),), generator=generator)
        i0 = torch.randint(0, len(data.kept), (min(cfg.batch, len(data.kept)),), generator=generator)
        fit, keep = terms(i1.to(device), i0.to(device))
        optimiser.zero_grad()
        (fit + cfg.preserve_weight * keep).backward()
        optimiser.step()
        if step % 25 == 0:
            progress("step 1: head fit", step / cfg.steps)
    with torch.no_grad():
        fit_after, keep_after = terms(every_harmful, every_kept)
    info = {"head_fit_kl": [float(fit_before), float(fit_after)],
            "head_kept_kl": [float(keep_before), float(keep_after)],
            "fit_positions": len(data.harmful), "kept_positions": len(data.kept)}
    return {name: value.detach().cpu() for name, value in edited.items()}, info


def head_edit(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs, cfg: HeadFitConfig,
              guidance: float, seed: int, progress: Progress) -> tuple[dict[str, torch.Tensor], dict]:
    """Step 1 "head" for one round: the edited head's four tensors and the round's figures."""
    act = backend.model.model.generation_head.activation_fn
    data = head_fit_data(backend, prompts, m, pairs, guidance, act)
    head = {name: backend.get_codebook(name) for name in HEAD_TENSORS}
    return fit_head(data, head, cfg, guidance, act, seed, progress, backend.device)

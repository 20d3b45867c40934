"""The space and edit stages of a round (docs/safecb.md): the Harmful Space, then edit step 1
(remove harmful mappings), step 2 (fine-tune inside the harmless space) and the optional step 3
(VAπ re-alignment), for both edit targets.

Generator target, the default (`generator_edit.step1 = "head"`): `head_fit.head_edit` fits every
tensor of the generation head to the safe rewrites (its module docstring has the loss) and step 2
does not run; the Harmful Space is still built over W's rows, for the figures and step 3.

Generator target, last layer. The edited space S is the generation head's last linear layer W [K, h]
(row k is code k's output embedding). Keys are that layer's inputs k = act(proj_out(h)) at the
positions where a harmful grid differs from its safe counterpart. The wanted output there is the
model's own output for the safe rewrite on the same grid prefix (teacher forcing pᵢ′ over the
harmful grid), so the residual moves logit mass from what the harmful prompt draws to what its
safe counterpart draws at the same place:
    r = log softmax(W k′ + b) − log softmax(W k + b)   on codes likely under either (else 0),
with k′ the key under pᵢ′. Step 1 solves Δ = R K₁ᵀ P₀ (K₁K₁ᵀP₀ + λI)⁻¹ (`edit.alphaedit_delta`)
with P₀ the null space of benign keys, so benign contexts keep their outputs. Step 2 minimises
    KL(p_safe ‖ q(k)) over mined keys + β · KL(p_ref ‖ q(k₀)) over benign keys
(p_ref: the unedited model; with `preserve_safe`, k₀ also runs over the safe rewrites' own
generations), updating W with every row's change projected by P⊥ = I − P_h of the
Harmful Space of W's rows and scaled by how far step 1 moved that row. With `guided` (the
default), both terms compare the distributions the sampler draws from, uncond + w·(cond − uncond):
each key comes with its unconditional counterpart over the same prefix (`generator_data`).

Step 3 (optional, `config.vapi.enabled`). VAπ (`safecb.vapi`) post-trains the generator codebooks
(gen_embed, gen_head and its bias) with the step-1/2 edit in place, on the round's safe images:
the safe rewrites and benign prompts' generations the model itself judged safe. Only tensors
that round snapshots hold change, so the driver's rollback restores step 3 exactly. Its change is
confined like step 2's (`edit.confine_change`): harmful codes' head rows and biases keep their
edited values, and other head rows move only in the harmless space.

Decoder target. S is the VQ codebook; step 1 is `edit.decoder_edit` on the harmful codes; step 2
optimises the rows used where pairs differ so that harmful grids decode close to their safe
counterparts' images while benign and safe grids decode as with the unedited codebook, again with
projected, per-row-scaled updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..models.backend import JanusBackend
from ..vapi.config import GENERATOR_CODEBOOKS
from ..vapi.data import prepare_data
from ..vapi.train import train_vapi
from .config import FineTuneConfig, SafeCBConfig
from .edit import (alphaedit_delta, benign_share, confine_change, decoder_edit, erased_head, null_space_projector,
                   penalised_bias, safe_targets)
from .head_fit import head_edit
from .measure import Measurement
from .mining import Pairs
from .prompts import RoundPrompts
from .space import HarmfulSpace, HarmfulSpaceConfig, build_harmful_space, difference_vectors, harmful_codes

Progress = Callable[[str, float], None]
# The codebook whose Harmful Space each Safe-CB target reports ("both" edits gen_head and decoder)
TARGET_CODEBOOK = {"generator": "gen_head", "decoder": "decoder", "both": "gen_head"}


@dataclass
class EditResult:
    codebooks: dict[str, torch.Tensor]  # the new values of the edited codebooks
    space: HarmfulSpace  # the Harmful Space the edit used
    info: dict = field(default_factory=dict)  # figures for the round's metrics


def split_pairs(n_pairs: int, holdout_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair indices for fitting and for early stopping; at least one of each when n ≥ 2."""
    order = np.random.default_rng(seed).permutation(n_pairs)
    n_hold = int(round(n_pairs * holdout_share))
    n_hold = min(max(n_hold, 1 if n_pairs >= 2 else 0), n_pairs - 1) if n_pairs else 0
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def projected_update(before: torch.Tensor, after: torch.Tensor, row_scale: torch.Tensor,
                     harmless: torch.Tensor) -> torch.Tensor:
    """The step `after − before`, scaled per row and projected onto the harmless space (rows · P⊥)."""
    return before + (row_scale[:, None] * (after - before)) @ harmless


def row_scales(step1_change: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-row step size in [floor, 1]: proportional to how far step 1 moved the row."""
    norms = step1_change.norm(dim=-1)
    top = float(norms.max()) if norms.numel() else 0.0
    scale = norms / top if top > 0 else torch.zeros_like(norms)
    return scale.clamp_min(floor)


def projected_fine_tune(
    start: torch.Tensor, training_loss: Callable[[torch.Tensor], torch.Tensor],
    held_out_loss: Callable[[torch.Tensor], float], has_held_out: bool, row_scale: torch.Tensor,
    harmless: torch.Tensor, cfg: FineTuneConfig, progress: Progress, min_improvement: float,
) -> tuple[torch.Tensor, float, int]:
    """Step 2's optimiser: Adam on `start`, every step's change scaled per row and projected by P⊥
    (`projected_update`); early stop on the held-out loss. Returns (best tensor, its held-out loss,
    steps run)."""
    value = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([value], lr=cfg.lr)
    best, best_loss, stale, steps_run = start.clone(), held_out_loss(start), 0, 0
    for step in range(1, cfg.steps + 1):
        loss = training_loss(value)
        before = value.detach().clone()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            value.copy_(projected_update(before, value.detach(), row_scale, harmless))
        steps_run = step
        if step % cfg.check_every == 0 or step == cfg.steps:
            progress("step 2: fine-tune", step / max(cfg.steps, 1))
            current = held_out_loss(value.detach())
            if not has_held_out or current < best_loss - min_improvement:
                best, best_loss, stale = value.detach().clone(), current, 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    return best, best_loss, steps_run


# ---------------------------------------------------------------- generator target
@dataclass
class GeneratorData:
    keys: torch.Tensor  # [M, h] head keys at differing positions of mined harmful grids
    safe_logits: torch.Tensor  # [M, K] head logits under the safe rewrite, same grid prefix
    pair_of_key: np.ndarray  # [M] which pair each key came from
    benign_keys: torch.Tensor  # [N₀, h] head keys of benign generations
    safe_keys: torch.Tensor | None = None  # [N₁, h] head keys of the safe rewrites' generations judged safe
    uncond_keys: torch.Tensor | None = None  # [M, h] the unconditional branch's keys over the same prefixes as `keys`
    benign_uncond_keys: torch.Tensor | None = None  # [N₀, h] the same for `benign_keys`
    safe_prefix_keys: torch.Tensor | None = None  # [M, h] the rewrite's keys over the same prefixes as the first M of `keys`


def generator_data(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs,
                   safe_trajectory: bool = False, guided: bool = False) -> GeneratorData:
    """Keys and targets of the generator edit. On the harmful trajectory: at every position where a
    pair's grids differ, the harmful prompt's key over the harmful grid's prefix, aimed at the rewrite's
    distribution over that same prefix. With `safe_trajectory`, also the harmful prompt's key over the
    safe grid's prefix, aimed at the rewrite's own distribution there: once a generation has started
    to draw the safe object, the harmful prompt should go on drawing it rather than return to the
    harmful one. With `guided`, also every key's unconditional counterpart (the same prefix after the
    prompt's unconditional branch), for fitting what guidance samples from."""
    harmful_hidden, benign_hidden = m.sets["harmful"].hidden, m.sets["benign"].hidden
    if harmful_hidden is None or benign_hidden is None:
        raise ValueError("the generator target needs hidden states: measure with keep_hidden=True")
    differ = pairs.differing()
    rows = torch.as_tensor(pairs.harmful_rows, dtype=torch.long)
    rewrites = [prompts.harmful[i].rewrite for i in pairs.prompt_index]
    harmful_texts = [prompts.harmful[i].text for i in pairs.prompt_index]
    safe_hidden = backend.teacher_forced_hidden(rewrites, pairs.harmful_grids)
    keys = backend.head_keys(harmful_hidden[rows][differ])
    safe_prefix_keys = backend.head_keys(safe_hidden[differ])
    safe_logits = backend.head_logits(safe_prefix_keys)
    pair_of_key = np.repeat(np.arange(len(pairs)), differ.sum(1).numpy())
    if safe_trajectory:
        harmful_on_safe = backend.teacher_forced_hidden(harmful_texts, pairs.safe_grids)
        own = backend.teacher_forced_hidden(rewrites, pairs.safe_grids)
        keys = torch.cat([keys, backend.head_keys(harmful_on_safe[differ])])
        safe_logits = torch.cat([safe_logits, backend.head_logits(backend.head_keys(own[differ]))])
        pair_of_key = np.concatenate([pair_of_key, pair_of_key])
    uncond_keys = benign_uncond_keys = None
    if guided:
        grids = [pairs.harmful_grids] + ([pairs.safe_grids] if safe_trajectory else [])
        uncond_keys = torch.cat([
            backend.head_keys(backend.teacher_forced_hidden(harmful_texts, g, unconditional=True)[differ])
            for g in grids])
        benign = m.sets["benign"]
        benign_texts = [b.text for b in prompts.benign for _ in benign.seeds]
        benign_uncond = backend.teacher_forced_hidden(benign_texts, benign.tokens, unconditional=True)
        benign_uncond_keys = backend.head_keys(benign_uncond.reshape(-1, benign_uncond.shape[-1]))
    benign_keys = backend.head_keys(benign_hidden.reshape(-1, benign_hidden.shape[-1]))
    rewrite_hidden = m.sets["rewrite"].hidden
    safe_keys = None
    if rewrite_hidden is not None:
        safe = torch.as_tensor(~m.flagged("rewrite"))
        safe_keys = backend.head_keys(rewrite_hidden[safe].reshape(-1, rewrite_hidden.shape[-1]))
    return GeneratorData(keys, safe_logits, pair_of_key, benign_keys, safe_keys, uncond_keys, benign_uncond_keys,
                         safe_prefix_keys)


def counterfactual_residuals(logits: torch.Tensor, safe_logits: torch.Tensor, relevant_prob: float) -> torch.Tensor:
    """r = log softmax(safe) − log softmax(current), zero on codes unlikely under both."""
    current, safe = F.log_softmax(logits, -1), F.log_softmax(safe_logits, -1)
    relevant = (current.exp() > relevant_prob) | (safe.exp() > relevant_prob)
    return torch.where(relevant, safe - current, torch.zeros_like(current))


def generator_step1(backend: JanusBackend, data: GeneratorData, config: SafeCBConfig) -> tuple[torch.Tensor, dict]:
    """AlphaEdit on the head, solved on the model's device (at Janus-Pro's shape the products are
    [16384, n_keys] x [n_keys, 2048]); the edited head comes back on CPU."""
    cfg = config.generator_edit
    device = backend.device
    weight = backend.get_codebook("gen_head")
    keys, benign_keys = data.keys.to(device), data.benign_keys.to(device)
    residuals = counterfactual_residuals(backend.head_logits(data.keys).to(device), data.safe_logits.to(device),
                                         cfg.relevant_prob)
    p0 = null_space_projector(benign_keys.T, cfg.null_threshold)
    delta = alphaedit_delta(keys.T, residuals.T, p0, cfg.ridge)
    reached = 1.0 - float(((keys @ delta.T - residuals) ** 2).sum() / (residuals**2).sum().clamp_min(1e-12))
    info = {
        "null_space_rank": int(round(float(torch.trace(p0)))),
        "residual_reached": reached,
        "benign_logit_change": float((benign_keys @ delta.T).abs().max()),
        "delta_norm": float(delta.norm()),
    }
    return weight + delta.cpu(), info


def generator_erase(backend: JanusBackend, data: GeneratorData, config: SafeCBConfig
                    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Step 1, erase: the top `erase_rank` directions of (harmful key − rewrite key) over the same
    prefixes, erased from what the head reads (each key's component there set to the rewrite keys'
    mean). Returns the edited head weight and bias."""
    cfg = config.generator_edit
    n = len(data.safe_prefix_keys)
    deltas = data.keys[:n] - data.safe_prefix_keys
    directions = build_harmful_space(deltas, HarmfulSpaceConfig(energy=1.0, max_rank=cfg.erase_rank,
                                                                normalize_rows=False))
    weight, bias = backend.get_codebook("gen_head"), backend.get_codebook("gen_head_bias")
    edited, edited_bias = erased_head(weight, bias, directions.basis, data.safe_prefix_keys.mean(0))
    benign = data.benign_keys
    change = (benign @ edited.T + edited_bias) - (benign @ weight.T + bias)
    info = {"erased_rank": directions.rank, "erased_energy": directions.energy,
            "benign_logit_change": float(change.abs().max()), "delta_norm": float((edited - weight).norm())}
    return edited, edited_bias, info


def _kl(target_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits, -1), target_probs, reduction="batchmean")


def generator_step2(
    backend: JanusBackend, data: GeneratorData, start: torch.Tensor, step1_change: torch.Tensor,
    space: HarmfulSpace, reference: dict[str, torch.Tensor], cfg: FineTuneConfig, seed: int,
    progress: Progress, guidance: float = 1.0, bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """With `data.uncond_keys`, the mined keys are fitted as guidance samples them: the edited head's
    uncond + w·(cond − uncond) (w = `guidance`) against the rewrite's, uncond + w·(safe − uncond)
    with the round's head; and the benign generations are kept as guidance samples them (their
    conditional and unconditional keys together). `bias`: the head bias the edited head will have
    (default: the model's current one)."""
    # On the model's device: each optimiser step multiplies and projects the whole [16384, 2048] head
    # at Janus-Pro's shape. Batches are drawn on the CPU, so the draws do not depend on the device.
    device = backend.device
    bias = (backend.get_codebook("gen_head_bias") if bias is None else bias).to(device)
    fit_pairs, hold_pairs = split_pairs(int(data.pair_of_key.max()) + 1, cfg.holdout_share, seed)
    fit = torch.as_tensor(np.isin(data.pair_of_key, fit_pairs))
    hold = ~fit
    guided = data.uncond_keys is not None
    target_logits = data.safe_logits
    if guided:
        target_logits = torch.lerp(backend.head_logits(data.uncond_keys), data.safe_logits, guidance)
    safe_probs = F.softmax(target_logits.to(device), -1)
    kept = [data.benign_keys]
    if cfg.preserve_safe and data.safe_keys is not None and len(data.safe_keys):
        kept.append(data.safe_keys)
    if guided and cfg.keep_uncond:
        kept.append(data.uncond_keys)  # the unconditional branch stays as it was, even over harmful prefixes
    kept = torch.cat(kept)
    # guided: the benign keys (the first len(benign_keys) of `kept`) are kept as guidance samples them
    kept_uncond = data.benign_uncond_keys if guided else None
    n_paired = len(kept_uncond) if kept_uncond is not None else 0

    def ref_logits(keys_: torch.Tensor) -> torch.Tensor:
        return backend.head_logits(keys_, reference["gen_head"], reference["gen_head_bias"])

    ref_kept = ref_logits(kept)
    if n_paired:
        ref_kept[:n_paired] = torch.lerp(ref_logits(kept_uncond), ref_kept[:n_paired], guidance)
    ref_probs = F.softmax(ref_kept.to(device), -1)
    harmless = (torch.eye(start.shape[1]) - space.projector()).to(device)
    scale = row_scales(step1_change, cfg.min_row_scale).to(device)
    keys, benign_keys = data.keys.to(device), kept.to(device)
    uncond = data.uncond_keys.to(device) if guided else None
    benign_uncond = kept_uncond.to(device) if n_paired else None

    def kept_logits(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        cond = benign_keys[index] @ weight.T + bias
        if not n_paired:
            return cond
        paired = index < n_paired
        guided_cond = torch.lerp(benign_uncond[index.clamp_max(n_paired - 1)] @ weight.T + bias, cond, guidance)
        return torch.where(paired[:, None], guided_cond, cond)
    fit_index = fit.to(device).nonzero().flatten()
    hold = hold.to(device)
    generator = torch.Generator().manual_seed(seed)

    def mined_logits(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        cond = keys[index] @ weight.T + bias
        return torch.lerp(uncond[index] @ weight.T + bias, cond, guidance) if guided else cond

    def held_out_loss(w: torch.Tensor) -> float:
        if not bool(hold.any()):
            return float("nan")
        with torch.no_grad():
            index = hold.nonzero().flatten()
            return float(_kl(safe_probs[index], mined_logits(w, index)))

    def training_loss(weight: torch.Tensor) -> torch.Tensor:
        i1 = fit_index[torch.randint(0, len(fit_index), (min(cfg.batch, len(fit_index)),), generator=generator)
                       .to(device)]
        i0 = torch.randint(0, len(benign_keys), (min(cfg.batch, len(benign_keys)),), generator=generator).to(device)
        return _kl(safe_probs[i1], mined_logits(weight, i1)) + cfg.preserve_weight * _kl(
            ref_probs[i0], kept_logits(weight, i0)
        )

    best, best_loss, steps_run = projected_fine_tune(
        start.to(device), training_loss, held_out_loss, bool(hold.any()), scale, harmless, cfg, progress, 1e-6
    )
    info = {"step2_steps": steps_run, "step2_heldout_kl": best_loss, "step2_heldout_pairs": int(len(hold_pairs))}
    return best.cpu(), info


def generator_round(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs,
                    config: SafeCBConfig, reference: dict[str, torch.Tensor], progress: Progress) -> EditResult:
    progress("harmful space", 0.0)
    weight = backend.get_codebook("gen_head")
    space = build_harmful_space(
        difference_vectors(weight, pairs.harmful_grids, pairs.safe_grids, normalize_rows=False), config.space
    )
    if config.generator_edit.step1 == "head":
        codebooks, info = head_edit(backend, prompts, m, pairs, config.generator_edit.head,
                                    config.sampler.cfg_weight, config.seed, progress)
        return EditResult(codebooks, space, info)
    data = generator_data(backend, prompts, m, pairs, config.generator_edit.safe_trajectory,
                          config.generator_edit.guided)
    progress("step 1: edit", 0.0)
    codebooks = {}
    bias = backend.get_codebook("gen_head_bias")
    if config.generator_edit.step1 == "erase":
        edited, bias, info = generator_erase(backend, data, config)
        codebooks["gen_head_bias"] = bias
    else:
        edited, info = generator_step1(backend, data, config)
    if config.generator_edit.harmful_code_penalty > 0:
        codes, _ = harmful_codes(pairs.harmful_grids, pairs.safe_grids, m.sets["benign"].tokens,
                                 backend.codebook_size, config.codes)
        bias = codebooks["gen_head_bias"] = penalised_bias(bias, codes, config.generator_edit.harmful_code_penalty)
        info["penalised_codes"] = [int(c) for c in codes]
    if config.fine_tune.enabled and config.fine_tune.steps > 0 and len(pairs) >= 2:
        edited, info2 = generator_step2(backend, data, edited, edited - weight, space, reference,
                                        config.fine_tune, config.seed, progress, config.sampler.cfg_weight, bias)
        info.update(info2)
    info.update({"mined_keys": int(len(data.keys))})
    return EditResult({"gen_head": edited, **codebooks}, space, info)


# ---------------------------------------------------------------- decoder target
def decoder_step2(
    backend: JanusBackend, pairs: Pairs, m: Measurement, start: torch.Tensor, step1_change: torch.Tensor,
    space: HarmfulSpace, reference: dict[str, torch.Tensor], cfg: FineTuneConfig, seed: int, progress: Progress,
) -> tuple[torch.Tensor, dict]:
    ref_book = reference["decoder"]
    fit_pairs, hold_pairs = split_pairs(len(pairs), cfg.holdout_share, seed)
    differ = pairs.differing()
    trainable = torch.zeros(len(start), dtype=torch.bool)
    trainable[pairs.harmful_grids[torch.as_tensor(fit_pairs)][differ[torch.as_tensor(fit_pairs)]].unique()] = True
    scale = row_scales(step1_change, cfg.min_row_scale) * trainable.float()
    harmless = torch.eye(start.shape[1]) - space.projector()
    preserve = torch.cat([m.sets["benign"].tokens, pairs.safe_grids])
    with torch.no_grad():
        safe_pixels = backend.decode_with(ref_book, pairs.safe_grids).float().cpu()
        preserve_pixels = backend.decode_with(ref_book, preserve).float().cpu()
    generator = torch.Generator().manual_seed(seed)
    batch = cfg.decoder_batch

    def held_out_loss(book: torch.Tensor) -> float:
        if len(hold_pairs) == 0:
            return float("nan")
        idx = torch.as_tensor(hold_pairs)
        with torch.no_grad():
            return float(F.mse_loss(backend.decode_with(book, pairs.harmful_grids[idx]).float().cpu(), safe_pixels[idx]))

    for p in backend.model.model.vqmodel.parameters():
        p.requires_grad_(False)
    fit_t = torch.as_tensor(fit_pairs)

    def training_loss(book: torch.Tensor) -> torch.Tensor:
        i1 = fit_t[torch.randint(0, len(fit_t), (min(batch, len(fit_t)),), generator=generator)]
        i0 = torch.randint(0, len(preserve), (batch,), generator=generator)
        loss = F.mse_loss(backend.decode_with(book, pairs.harmful_grids[i1]).float().cpu(), safe_pixels[i1])
        return loss + cfg.decoder_preserve_weight * F.mse_loss(
            backend.decode_with(book, preserve[i0]).float().cpu(), preserve_pixels[i0]
        )

    schedule = replace(cfg, steps=cfg.decoder_steps, lr=cfg.decoder_lr)
    best, best_loss, steps_run = projected_fine_tune(
        start, training_loss, held_out_loss, len(hold_pairs) > 0, scale, harmless, schedule, progress, 1e-7
    )
    info = {"step2_steps": steps_run, "step2_heldout_mse": best_loss, "step2_rows": int(trainable.sum())}
    return best, info


def decoder_round(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs,
                  config: SafeCBConfig, reference: dict[str, torch.Tensor], progress: Progress) -> EditResult:
    progress("harmful space", 0.0)
    book = backend.get_codebook("decoder")
    hg, sg = pairs.harmful_grids, pairs.safe_grids
    space = build_harmful_space(difference_vectors(book, hg, sg, config.space.normalize_rows), config.space)
    codes, ratio = harmful_codes(hg, sg, m.sets["benign"].tokens, len(book), config.codes)
    progress("step 1: edit", 0.0)
    edited = book.clone()
    if len(codes):
        targets = safe_targets(book, hg, sg, codes)
        protection = benign_share(m.sets["benign"].tokens, hg, len(book))
        edited = decoder_edit(book, codes, targets, space.projector(), config.decoder_edit, protection)
    info = {"harmful_codes": [int(c) for c in codes], "top_code_ratio": float(ratio.max())}
    if config.fine_tune.enabled and config.fine_tune.decoder_steps > 0 and len(pairs) >= 2:
        edited, info2 = decoder_step2(backend, pairs, m, edited, edited - book, space, reference,
                                      config.fine_tune, config.seed, progress)
        info.update(info2)
    return EditResult({"decoder": edited}, space, info)


def both_round(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs,
               config: SafeCBConfig, reference: dict[str, torch.Tensor], progress: Progress) -> EditResult:
    """Both targets from the same pairs: the generation head stops writing harmful codes in the mined
    contexts, and the decoder codebook draws harmful codes as their safe counterparts wherever they
    are still written. The two edits touch different tensors, so they do not interact within a round;
    the round reports the generator's Harmful Space."""
    generator = generator_round(backend, prompts, m, pairs, config, reference, progress)
    decoder = decoder_round(backend, prompts, m, pairs, config, reference, progress)
    info = {**generator.info, **{f"decoder_{key}": value for key, value in decoder.info.items()}}
    return EditResult({**generator.codebooks, **decoder.codebooks}, generator.space, info)


# ---------------------------------------------------------------- step 3
def safe_images(prompts: RoundPrompts, m: Measurement) -> tuple[list[str], np.ndarray]:
    """The round's safe images and their prompts: rewrites and benign generations judged safe."""
    prompt_texts = {"rewrite": [p.rewrite for p in prompts.harmful], "benign": [b.text for b in prompts.benign]}
    texts, images = [], []
    for kind in ("rewrite", "benign"):
        generations = m.sets[kind]
        for i in np.flatnonzero(~m.flagged(kind)):
            texts.append(prompt_texts[kind][i // len(generations.seeds)])
            images.append(generations.images[i])
    return texts, np.stack(images) if images else np.zeros((0,) + m.sets["benign"].images.shape[1:], np.uint8)


def vapi_step3(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs, edit: EditResult,
               config: SafeCBConfig, progress: Progress) -> tuple[dict[str, torch.Tensor], dict]:
    """VAπ on the round's safe images with the step-1/2 edit in place; returns the re-aligned
    generator codebooks. With `config.vapi.confine`, step 3 cannot undo that edit: the head rows
    and biases of the codes the round found harmful keep their edited values, and for the
    generator target every other head row changes only inside the harmless space. The model is
    left as it was found."""
    texts, images = safe_images(prompts, m)
    if len(texts) == 0:
        return {}, {"vapi_images": 0}
    found = backend.codebooks()
    try:
        backend.set_codebooks(edit.codebooks)
        start = {name: backend.get_codebook(name) for name in GENERATOR_CODEBOOKS}
        data = prepare_data(backend, texts, images)  # tokens under the edited decoder codebook
        result = train_vapi(backend, data, config.vapi,
                            progress=lambda step, total, _: progress("step 3: VAπ", step / max(total, 1)))
        realigned = {name: backend.get_codebook(name) for name in GENERATOR_CODEBOOKS}
    finally:
        backend.set_codebooks(found)
    info = {}
    if config.vapi.confine:
        codes, _ = harmful_codes(pairs.harmful_grids, pairs.safe_grids, m.sets["benign"].tokens, backend.codebook_size,
                                 config.codes)
        harmless = None
        if config.target in ("generator", "both"):
            harmless = torch.eye(start["gen_head"].shape[1]) - edit.space.projector()
        realigned["gen_head"] = confine_change(start["gen_head"], realigned["gen_head"], codes, harmless)
        realigned["gen_head_bias"] = confine_change(start["gen_head_bias"], realigned["gen_head_bias"], codes)
        info["vapi_frozen_codes"] = int(len(codes))
    rewards = [h["reward"] for h in result.history]
    info.update({"vapi_images": len(texts), "vapi_steps": result.steps_done, "vapi_seconds": result.seconds,
                 "vapi_reward_first": rewards[0] if rewards else float("nan"),
                 "vapi_reward_last": float(np.mean(rewards[-5:])) if rewards else float("nan")})
    return realigned, info


def edit_round(backend: JanusBackend, prompts: RoundPrompts, m: Measurement, pairs: Pairs,
               config: SafeCBConfig, reference: dict[str, torch.Tensor], progress: Progress) -> EditResult:
    """Harmful Space, step 1, step 2 and (optional) step 3 for the configured target. Leaves the
    model as it found it; the caller applies `EditResult.codebooks`."""
    if len(pairs) == 0:
        raise ValueError("no pairs were mined: nothing flagged harmful has a counterpart judged safe")
    run = {"generator": generator_round, "decoder": decoder_round, "both": both_round}[config.target]
    result = run(backend, prompts, m, pairs, config, reference, progress)
    if config.vapi.enabled and config.vapi.steps > 0:
        realigned, info = vapi_step3(backend, prompts, m, pairs, result, config, progress)
        result.codebooks.update(realigned)
        result.info.update(info)
    return result

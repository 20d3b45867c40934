"""Train the toy model's understanding tower alone: `python -m safecb train tower`.

The toy's own judge ("is this image unsafe ?") and its captions run through its understanding
tower (the SigLIP-style vision encoder and its aligner into the language model). Trained only on
the fixed set of scenes the language model stage draws, that tower fits those scenes: the judge
misses a fifth of fresh weapons and reads the context of a weapon (a raised hand) as the weapon.
This stage trains the tower alone, everything else frozen, on the same two understanding tasks
with what those scenes lack:
- fresh renders at every step (training combinations only), so nothing can be memorised;
- palette changes (`world.palette`: hue rotation, channel order, grey) on every scene without a
  liquid, so no colour can stand for an object;
- harmful scenes drawn with the harmful object left out (a raised empty hand, a bare spot), which
  are safe, so the context of a weapon is not the weapon.
Half the images go through the model's own tokenizer first, as in the language model stage.

Generation never reads the understanding tower, so what the model draws stays bit for bit the
same: only its judge and captions change. On the shipped model it lowered the judge's false
positives on decoys but found fewer repainted weapons, so the shipped model does not use it
(docs/experiments/2026-12-07-understanding-tower.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import world
from ..world.palette import change_palette
from ..world.prompts import COLOUR_SHARE, with_colours
from ..world.render import render_with_patch_shares
from ..world.vocab import LIQUIDS
from .backend import CAPTION_QUESTION, SAFETY_QUESTION
from .train_steps import SequenceBuilder, lr_at, quantize, understanding_loss

TOWER_MODULES = ("vision_model", "aligner")  # the parts of JanusModel this stage trains
_BENIGN_MASK = np.array([c not in world.HARMFUL for c in world.CONCEPTS], dtype=np.float32)


@dataclass
class TowerTuneConfig:
    steps: int = 3000  # optimisation steps, each on a fresh batch of renders
    batch: int = 64  # understanding examples per step: half safety questions (half of them unsafe), half captions
    lr: float = 5e-4  # peak learning rate (AdamW, cosine decay)
    warmup: int = 100  # linear warm-up steps
    palette_prob: float = 0.5  # share of liquid-free images whose palette is changed
    left_out_share: float = 0.5  # share of the safe safety examples that are harmful scenes with the harmful object left out
    recon_share: float = 0.5  # share of images shown through the model's own tokenizer (as generated images are)
    heldout_combinations: bool = True  # also show scenes of the held-out combinations: what the tower sees, never what the model is asked to draw
    presence_weight: float = 0.0  # weight of the shape signal beside the understanding tasks: which objects a scene holds, read by a linear probe on the encoder's mean and max patch features (the probes are dropped after training)
    presence_steps: int = 0  # steps before the understanding tasks that train the encoder on the shape signals alone (presence, and patches when patch_weight > 0), as a vision encoder is pretrained before it joins a language model
    patch_weight: float = 0.0  # weight of a dense shape signal: which objects own at least patch_min_share of each encoder patch, read by a linear probe on that patch's token (dropped after training)
    patch_min_share: float = 0.05  # share of a patch's pixels an object must own to count as in that patch (a thin blade owns little of any patch)
    seed: int = 0  # the scene stream and batch order (image seeds stay in the training range, < 2**31)
    threads: int = 2  # torch CPU threads


def _training_scene(rng: np.random.Generator, unsafe: bool, heldout: bool) -> world.SceneSpec:
    """A scene (of a training combination unless `heldout`), its objects named in a colour as often
    as in training."""
    while True:
        spec = world.random_scene(rng, unsafe=unsafe)
        if heldout or not world.is_heldout_combination(spec):
            return with_colours(spec, rng, COLOUR_SHARE)


def _left_out_scene(rng: np.random.Generator, held: bool, heldout: bool) -> world.SceneSpec:
    """A harmful scene to be drawn without its harmful object; `held`: a person holds it."""
    spec = _training_scene(rng, unsafe=True, heldout=heldout)
    if held:
        holdable = [h for h in world.HARMFUL_OBJECTS if h in world.HOLDABLE]
        spec = world.SceneSpec(spec.background, ("person", str(rng.choice(holdable))), "holding")
        if not heldout and world.is_heldout_combination(spec):
            return _left_out_scene(rng, held, heldout)
    return spec


def _leave_out(canvas, slot) -> None:
    """A substitute that draws nothing where the harmful object was."""


def draw_batch(rng: np.random.Generator, config: TowerTuneConfig, grid: int = 8) -> dict:
    """One step's examples: uint8 images [B, 32, 32, 3], per example the task ("safety" or
    "caption"), the unsafe flag, the scene it was drawn from (its harmful object left out for some
    safe ones) and image seed, whether its palette may change, which objects it shows
    (`presence` [B, C]) and the share of each of its grid × grid patches each object owns
    (`patch_shares` [B, grid², C])."""
    half = config.batch // 2
    images, tasks, unsafe, specs, seeds, recolourable, presence, shares = [], [], [], [], [], [], [], []
    for j in range(config.batch):
        seed = int(rng.integers(0, 2**31))
        if j < half:
            is_unsafe = j < half // 2
            left_out = not is_unsafe and rng.random() < config.left_out_share
            if left_out:
                spec = _left_out_scene(rng, held=bool(rng.random() < 0.5), heldout=config.heldout_combinations)
                image, share = render_with_patch_shares(spec, seed, grid, _leave_out)
                present = world.labels(spec) * _BENIGN_MASK  # the harmful object is not drawn
            else:
                spec = _training_scene(rng, unsafe=is_unsafe, heldout=config.heldout_combinations)
                image, share = render_with_patch_shares(spec, seed, grid)
                present = world.labels(spec)
            tasks.append("safety")
        else:
            spec = _training_scene(rng, unsafe=bool(rng.random() < 0.3), heldout=config.heldout_combinations)
            image, share = render_with_patch_shares(spec, seed, grid)
            is_unsafe = world.is_unsafe(spec)
            present = world.labels(spec)
            tasks.append("caption")
        images.append(image)
        unsafe.append(is_unsafe)
        specs.append(spec)
        seeds.append(seed)
        recolourable.append(not any(o in LIQUIDS for o in spec.objects))
        presence.append(present)
        shares.append(share.reshape(grid * grid, -1))
    return {"images": np.stack(images), "tasks": tasks, "unsafe": unsafe, "specs": specs, "seeds": seeds,
            "recolourable": recolourable, "presence": np.stack(presence), "patch_shares": np.stack(shares)}


@torch.no_grad()
def prepare_pixels(model, images: np.ndarray, recolourable: list[bool], config: TowerTuneConfig,
                   g: torch.Generator) -> torch.Tensor:
    """Palette changes, then the model's own tokenizer for `recon_share` of them: pixel values in [-1, 1]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = change_palette(x, torch.tensor(recolourable), config.palette_prob, g)
    vq = model.model.vqmodel
    pixels = (x * 2.0 - 1.0).to(vq.quant_conv.weight.device)
    _, _, _, idx = quantize(vq, pixels)
    recons = vq.decode(idx.view(len(pixels), -1)).clamp(-1, 1)
    recons = ((recons + 1) * 127.5).round() / 127.5 - 1.0  # as an image would be stored (uint8)
    use_recon = (torch.rand(len(pixels), generator=g) < config.recon_share).to(pixels.device)
    return torch.where(use_recon[:, None, None, None], recons, pixels)


def understanding_rows(seqs: SequenceBuilder, batch: dict) -> list[tuple[list[int], int]]:
    """The token rows of a `draw_batch` batch: its safety questions answered yes or no, its captions."""
    rows = []
    for task, is_unsafe, spec in zip(batch["tasks"], batch["unsafe"], batch["specs"]):
        if task == "safety":
            rows.append(seqs.understanding(SAFETY_QUESTION, [seqs.yes if is_unsafe else seqs.no]))
        else:
            rows.append(seqs.understanding(CAPTION_QUESTION, seqs.words(world.canonical_caption(spec))))
    return rows


def freeze_all_but_tower(model) -> list[torch.nn.Parameter]:
    """Turn off gradients everywhere except the understanding tower; returns the tower's parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for name in TOWER_MODULES:
        for p in getattr(model.model, name).parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


class ShapeProbes(torch.nn.Module):
    """Linear probes that read the vision encoder's features for the shape signal (dropped after training)."""

    def __init__(self, hidden: int, n_concepts: int):
        super().__init__()
        self.presence = torch.nn.Linear(2 * hidden, n_concepts)  # the image: from the mean and max patch features
        self.patch = torch.nn.Linear(hidden, n_concepts)  # each patch: from its own token


def shape_loss(model, probes: ShapeProbes, pixel_values: torch.Tensor, batch: dict, config: TowerTuneConfig
               ) -> torch.Tensor:
    """The shape signal on the encoder: which objects the image holds (the max over patches keeps a
    thin knife visible among 64), plus `patch_weight` × which objects each patch shows."""
    features = model.model.vision_model(pixel_values=pixel_values).last_hidden_state
    device = features.device
    presence = probes.presence(torch.cat([features.mean(dim=1), features.amax(dim=1)], dim=-1))
    loss = F.binary_cross_entropy_with_logits(presence, torch.from_numpy(batch["presence"]).to(device))
    if config.patch_weight:
        in_patch = torch.from_numpy(batch["patch_shares"] >= config.patch_min_share).float().to(device)
        loss = loss + config.patch_weight * F.binary_cross_entropy_with_logits(probes.patch(features), in_patch)
    return loss


def _optimizer(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98))


def _step(opt, params, loss, step: int, total: int, config: TowerTuneConfig) -> None:
    for group in opt.param_groups:
        group["lr"] = lr_at(step, total, config.lr, config.warmup)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def train_tower(model, tokenizer, config: TowerTuneConfig, log=print) -> dict:
    """Train `model`'s understanding tower in place; every other weight is left untouched."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    params = freeze_all_but_tower(model)
    device = model.model.vision_model.embeddings.patch_embedding.weight.device
    probes = None  # the shape probes, only when the shape signal is used
    if config.presence_steps or config.presence_weight:
        probes = ShapeProbes(model.config.vision_config.hidden_size, len(world.CONCEPTS)).to(device)
    grid = model.config.vision_config.image_size // model.config.vision_config.patch_size
    seqs = SequenceBuilder(tokenizer, model.config.vision_config.num_image_tokens)
    rng = np.random.default_rng(config.seed + 11)
    g = torch.Generator().manual_seed(config.seed + 12)
    model.eval()  # no dropout anywhere; the frozen parts must behave as at inference
    t0, metrics = time.time(), {}
    if config.presence_steps:
        encoder = list(model.model.vision_model.parameters()) + list(probes.parameters())
        opt = _optimizer(encoder, config.lr)
        running = []
        for step in range(config.presence_steps):
            batch = draw_batch(rng, config, grid)
            pixel_values = prepare_pixels(model, batch["images"], batch["recolourable"], config, g)
            loss = shape_loss(model, probes, pixel_values, batch, config)
            _step(opt, encoder, loss, step, config.presence_steps, config)
            running.append(loss.item())
            if (step + 1) % 100 == 0 or step == config.presence_steps - 1:
                log(f"shape step {step + 1}/{config.presence_steps} loss {np.mean(running):.4f} "
                    f"({time.time() - t0:.0f}s)")
                running = []
        metrics["final_presence_loss"] = float(loss.item())
    trained = params + (list(probes.parameters()) if config.presence_weight else [])
    opt = _optimizer(trained, config.lr)
    running = []
    for step in range(config.steps):
        batch = draw_batch(rng, config, grid)
        pixel_values = prepare_pixels(model, batch["images"], batch["recolourable"], config, g)
        loss = understanding_loss(model, understanding_rows(seqs, batch), pixel_values, seqs.pad)
        if config.presence_weight:
            loss = loss + config.presence_weight * shape_loss(model, probes, pixel_values, batch, config)
        _step(opt, trained, loss, step, config.steps, config)
        running.append(loss.item())
        if (step + 1) % 100 == 0 or step == config.steps - 1:
            log(f"tower step {step + 1}/{config.steps} loss {np.mean(running):.4f} ({time.time() - t0:.0f}s)")
            running = []
    for p in model.parameters():
        p.requires_grad_(True)
    metrics.update({"tower_seconds": time.time() - t0, "final_tower_loss": float(loss.item())})
    return metrics


def tune_tower_checkpoint(model_dir: str | Path, config: TowerTuneConfig, device: str = "cpu", log=print) -> dict:
    """`train_tower` on a toy checkpoint written by `train toy`, in place; the run is recorded in
    its safecb_toy.json under `tower_tunes`."""
    from transformers import AutoProcessor, JanusForConditionalGeneration

    from .toy import save_checkpoint

    model_dir = Path(model_dir)
    meta_path = model_dir / "safecb_toy.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{model_dir} is not a toy checkpoint written by `train toy` (no safecb_toy.json)")
    meta = json.loads(meta_path.read_text())
    model = JanusForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).to(device)
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    metrics = train_tower(model, processor.tokenizer, config, log)
    model.to("cpu")
    meta.setdefault("tower_tunes", []).append({"config": asdict(config), **metrics})
    meta["train_config"]["tower"] = asdict(config)
    save_checkpoint(model, processor, model_dir, extra=meta)
    log(f"trained the understanding tower of {model_dir} in {metrics['tower_seconds'] / 60:.1f} min")
    return metrics

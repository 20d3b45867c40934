"""Train the toy Janus on the toy world: `python -m safecb train toy`.

Three stages, as real unified models are built:
1. the VQ tokenizer (encoder, codebook, decoder) on rendered scenes, with a cosine codebook whose
   rows are unit-norm, so Janus's normalising decoder and nearest-row encoding agree;
2. the language model, with the tokenizer frozen, on three tasks from the world's ground truth:
   text -> image tokens (generation, with prompt dropout for classifier-free guidance),
   image -> caption, and "is this image unsafe ? answer yes or no ." -> yes / no.
Understanding examples show rendered images and their VQ reconstructions half and half, so the
model's own judgments also hold on images that went through its tokenizer. With
`contrast_images` they also draw on a contrast set (`render_contrast_set`) meant to teach the judge
shape rather than context: harmful scenes with every object named in a colour (unsafe whatever the
colour) and the same kind of scenes with the harmful object left out (a raised empty hand is safe).
3. optionally (`tower.steps`, off in the shipped model), the understanding tower alone, everything
   else frozen (`train_tower.py`): fresh renders, palette changes and weapon-less scenes, meant to
   make the model's own judge read shape; what the model draws is unchanged by it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import world
from ..metrics import code_object_share
from ..world.prompts import with_colours
from ..world.render import render_substituted
from .backend import CAPTION_QUESTION, SAFETY_QUESTION
from .toy import ToyModelConfig, build_toy_model, save_checkpoint
from .train_steps import SequenceBuilder, left_pad, lr_at, quantize, to_pixels, understanding_loss
from .train_tower import TowerTuneConfig, draw_batch, prepare_pixels, train_tower, understanding_rows


@dataclass
class ToyTrainConfig:
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    seed: int = 0  # seeds torch, the scene stream and batch order
    n_images: int = 20000  # rendered training scenes (train combinations and phrasings only)
    unsafe_share: float = 0.3  # share of training scenes holding a harmful object
    vq_steps: int = 2500  # tokenizer optimisation steps
    vq_batch: int = 48  # images per tokenizer step
    vq_lr: float = 2e-3  # peak tokenizer learning rate (AdamW, cosine decay)
    vq_beta: float = 0.25  # commitment weight
    dead_code_every: int = 100  # steps between re-seeding unused codes from encoder outputs
    dead_code_usage: float = 1e-3  # usage EMA below which a code counts as dead
    vq_semantic: float = 1.0  # weight of the patch-label loss: a linear probe must tell from a patch's code (and latent) which object it shows, so harmful objects get codes of their own; 0 = reconstruction only
    polish_steps: int = 300  # decoder-only steps after the VQ stage (codes frozen, so tokens are unchanged)
    polish_lr: float = 3e-4  # decoder-only learning rate
    lm_steps: int = 6000  # language model optimisation steps
    gen_batch: int = 32  # text -> image examples per step
    und_batch: int = 32  # understanding examples per step (half safety questions, half captions)
    contrast_images: int = 0  # understanding-only scenes of `render_contrast_set`; 0 = none, as the shipped model (6000 were tried: docs/experiments/2026-12-06-contrast-lm.md)
    und_fresh: bool = False  # understanding examples rendered fresh at every step (`train_tower.draw_batch`: palette changes, harmful scenes with the harmful object left out, training combinations only) instead of drawn from the fixed training scenes
    lm_lr: float = 2e-3  # peak language model learning rate
    warmup: int = 100  # linear warm-up steps for both stages
    cfg_dropout: float = 0.1  # share of generation examples trained with the prompt blanked out
    tower: TowerTuneConfig = field(default_factory=lambda: TowerTuneConfig(steps=0))  # a last stage, the understanding tower alone (train_tower.py); off (0 steps) in the shipped model: docs/experiments/2026-12-07-understanding-tower.md
    device: str = "cpu"  # "cpu" or "cuda"
    threads: int = 2  # torch CPU threads


def render_dataset(cfg: ToyTrainConfig) -> tuple[np.ndarray, np.ndarray, list[world.SceneSpec], list[str]]:
    """Training images [N, H, W, 3] uint8, their patch labels [N, grid, grid] (what object each
    visual token's patch shows, for `vq_semantic`), scenes and captions."""
    images, patch_labels, specs, captions = [], [], [], []
    for spec, seed, text in world.training_examples(cfg.n_images, cfg.seed, cfg.unsafe_share):
        image, patches = world.render_with_patch_labels(spec, seed, cfg.model.grid_size)
        images.append(image)
        patch_labels.append(patches)
        specs.append(spec)
        captions.append(text)
    return np.stack(images), np.stack(patch_labels), specs, captions


def render_contrast_set(cfg: ToyTrainConfig) -> tuple[np.ndarray, list[bool], list[world.SceneSpec | None]]:
    """Understanding-only images [N, H, W, 3] uint8 meant to tie the safety answer to the harmful
    object's shape: even items are harmful training scenes with every object named in a colour of
    its families (unsafe), odd items are harmful training scenes rendered with the harmful object
    left out (safe: the holder's hand is empty, a placed object's spot is bare), half of them held.
    Returns the images, their unsafe flags and the scene each can be captioned by (None for the
    scenes with an object left out, whose scene no caption describes)."""
    rng = np.random.default_rng(cfg.seed + 3)
    images, unsafe, caption_specs = [], [], []
    while len(images) < cfg.contrast_images:
        spec = world.random_scene(rng, unsafe=True)
        if len(images) % 4 == 1:  # half the left-out scenes are held ones: the raised empty hand
            holdable = [h for h in world.HARMFUL_OBJECTS if h in world.HOLDABLE]
            spec = world.SceneSpec(spec.background, ("person", str(rng.choice(holdable))), "holding")
        if world.is_heldout_combination(spec):
            continue
        seed = int(rng.integers(0, 2**31))
        if len(images) % 2 == 0:
            spec = with_colours(spec, rng, 1.0)
            images.append(world.render(spec, seed))
            unsafe.append(True)
            caption_specs.append(spec)
        else:
            images.append(render_substituted(spec, seed, lambda canvas, slot: None))
            unsafe.append(False)
            caption_specs.append(None)
    return np.stack(images), unsafe, caption_specs


def train_vq(model, images: torch.Tensor, cfg: ToyTrainConfig, log, patch_labels: torch.Tensor | None = None) -> dict:
    """Train the VQ tokenizer. With `cfg.vq_semantic` > 0, `patch_labels` [N, grid, grid] also train
    a linear probe (discarded afterwards) that reads each patch's label from its code row and from its
    encoder latent; codes that serve two objects then cost loss, so objects get codes of their own."""
    vq = model.model.vqmodel
    vq.train()
    params = list(vq.parameters())
    probe = None
    if cfg.vq_semantic > 0:
        if patch_labels is None:
            raise ValueError("vq_semantic > 0 needs the training images' patch labels")
        probe = torch.nn.Linear(vq.quantize.embedding.weight.shape[1], world.BACKGROUND_LABEL + 1).to(cfg.device)
        params += list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.vq_lr, weight_decay=0.0, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    k = vq.quantize.embedding.weight.shape[0]
    usage = torch.zeros(k, device=cfg.device)
    t0 = time.time()
    for step in range(cfg.vq_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.vq_steps, cfg.vq_lr, cfg.warmup)
        rows = torch.randint(len(images), (cfg.vq_batch,), generator=gen)
        pixels = to_pixels(images[rows].to(cfg.device))
        z, flat, q, idx = quantize(vq, pixels)
        commit = (flat - q.detach()).pow(2).sum(-1).mean()
        codebook = (flat.detach() - q).pow(2).sum(-1).mean()
        zq = (flat + (q - flat).detach()).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        recon = vq.decoder(vq.post_quant_conv(zq))
        rec_loss = F.mse_loss(recon, pixels) + 0.5 * F.l1_loss(recon, pixels)
        loss = rec_loss + codebook + cfg.vq_beta * commit
        label_loss = torch.zeros(())
        if probe is not None:
            target = patch_labels[rows].to(cfg.device).reshape(-1)  # row-major patches, as `flat`
            label_loss = F.cross_entropy(probe(q), target) + F.cross_entropy(probe(flat), target)
            loss = loss + cfg.vq_semantic * label_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        usage.mul_(0.99).index_add_(0, idx, torch.full_like(idx, 0.01, dtype=usage.dtype))
        if step % cfg.dead_code_every == 0 and step < cfg.vq_steps * 0.8:
            dead = (usage < cfg.dead_code_usage).nonzero().flatten()
            if len(dead):  # re-seed unused codes on random encoder outputs of this batch
                pick = torch.randint(len(flat), (len(dead),), generator=gen).to(cfg.device)
                with torch.no_grad():
                    noise = 0.01 * torch.randn_like(flat[pick])
                    vq.quantize.embedding.weight[dead] = flat.detach()[pick] + noise
                usage[dead] = 0.01
        if step % 100 == 0 or step == cfg.vq_steps - 1:
            mse = F.mse_loss((recon.clamp(-1, 1) + 1) / 2, (pixels + 1) / 2).item()
            log(
                f"vq step {step + 1}/{cfg.vq_steps} loss {loss.item():.4f} psnr {10 * math.log10(1 / max(mse, 1e-10)):.1f} dB "
                f"codes used {(usage > cfg.dead_code_usage).sum().item()}/{k}"
                + (f" labels {label_loss.item():.3f}" if probe is not None else "") + f" ({time.time() - t0:.0f}s)"
            )
    with torch.no_grad():  # store unit rows: HF's raw-distance encode then agrees with cosine
        w = vq.quantize.embedding.weight
        w.copy_(F.normalize(w, dim=-1))
    vq.eval()
    return {"vq_seconds": time.time() - t0, "codes_used": int((usage > cfg.dead_code_usage).sum())}


def polish_decoder(model, images: torch.Tensor, cfg: ToyTrainConfig, log) -> dict:
    """Fine-tune the VQ decoder alone on the frozen codes: sharper reconstructions, same tokens,
    so it can run before or after the language model stage without invalidating it."""
    vq = model.model.vqmodel
    params = list(vq.decoder.parameters()) + list(vq.post_quant_conv.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.polish_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    t0 = time.time()
    for step in range(cfg.polish_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.polish_steps, cfg.polish_lr, cfg.warmup)
        batch = images[torch.randint(len(images), (cfg.vq_batch,), generator=gen)].to(cfg.device)
        pixels = to_pixels(batch)
        with torch.no_grad():
            _, _, _, idx = quantize(vq, pixels)
        recon = vq.decode(idx.view(len(pixels), -1))
        loss = F.mse_loss(recon, pixels) + 0.5 * F.l1_loss(recon, pixels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == cfg.polish_steps - 1:
            mse = F.mse_loss((recon.detach().clamp(-1, 1) + 1) / 2, (pixels + 1) / 2).item()
            log(f"decoder polish {step + 1}/{cfg.polish_steps} psnr {10 * math.log10(1 / max(mse, 1e-10)):.1f} dB")
    vq.eval()
    return {"polish_seconds": time.time() - t0}


def training_psnr_db(recons: torch.Tensor, images: torch.Tensor, log) -> float:
    """PSNR of the uint8 reconstructions against the training images, logged."""
    err = (recons.float() - images.float()).div(255).pow(2).mean().item()
    psnr = 10 * math.log10(1 / max(err, 1e-10))
    log(f"tokenizer PSNR on training images: {psnr:.2f} dB")
    return psnr


@torch.no_grad()
def tokenize_dataset(model, images: torch.Tensor, device: str, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual codes of every training image, and its reconstruction (uint8)."""
    vq = model.model.vqmodel
    codes, recons = [], []
    for start in range(0, len(images), batch):
        pixels = to_pixels(images[start : start + batch].to(device))
        _, _, _, idx = quantize(vq, pixels)
        idx = idx.view(len(pixels), -1)
        codes.append(idx.cpu())
        rec = vq.decode(idx).clamp(-1, 1)
        recons.append(((rec + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(codes), torch.cat(recons)


def generation_loss(model, seqs: SequenceBuilder, prompts: list[list[int]], codes: torch.Tensor) -> torch.Tensor:
    inner = model.model
    lm = inner.language_model
    ids, mask = left_pad(prompts, seqs.pad)
    ids, mask = ids.to(codes.device), mask.to(codes.device)
    text = lm.embed_tokens(ids)
    image = inner.generation_aligner(inner.generation_embeddings(codes[:, :-1]))
    embeds = torch.cat([text, image], 1)
    mask = torch.cat([mask, torch.ones_like(codes[:, :-1])], 1)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    hidden = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
    logits = inner.generation_head(hidden[:, ids.shape[1] - 1 :])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))


def _fixed_understanding_loss(model, seqs, cfg: ToyTrainConfig, gen, images, recons, unsafe, unsafe_idx, safe_idx,
                              captioned_idx, caption_ids) -> torch.Tensor:
    """Understanding examples drawn from the fixed training scenes (and the contrast set)."""
    # Understanding: half the batch unsafe-balanced safety questions, half captions.
    half = cfg.und_batch // 2
    u_idx = captioned_idx[torch.randint(len(captioned_idx), (cfg.und_batch,), generator=gen)]
    # Balanced yes/no: the safety half of the batch is half unsafe, half safe scenes.
    quarter = cfg.und_batch // 4
    u_idx[:quarter] = unsafe_idx[torch.randint(len(unsafe_idx), (quarter,), generator=gen)]
    u_idx[quarter:half] = safe_idx[torch.randint(len(safe_idx), (half - quarter,), generator=gen)]
    use_recon = torch.rand(cfg.und_batch, generator=gen) < 0.5
    pix = torch.where(use_recon[:, None, None, None], recons[u_idx], images[u_idx])
    pixel_values = to_pixels(pix.to(cfg.device))
    rows = []
    for j, i in enumerate(u_idx.tolist()):
        if j < half:
            rows.append(seqs.understanding(SAFETY_QUESTION, [seqs.yes if unsafe[i] else seqs.no]))
        else:
            rows.append(seqs.understanding(CAPTION_QUESTION, caption_ids[i]))
    return understanding_loss(model, rows, pixel_values, seqs.pad)


def train_lm(model, tokenizer, data: dict, cfg: ToyTrainConfig, log) -> dict:
    inner = model.model
    for p in inner.vqmodel.parameters():
        p.requires_grad_(False)
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lm_lr,
        betas=(0.9, 0.98),
    )
    seqs = SequenceBuilder(tokenizer, model.config.vision_config.num_image_tokens)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    captions, specs = data["captions"], data["specs"]
    n = len(specs)  # generation examples: the training scenes only
    # Understanding examples: the training scenes, then the contrast set (if any).
    caption_specs = list(specs) + list(data.get("contrast_caption_specs", []))
    caption_ids = [seqs.words(world.canonical_caption(s)) if s is not None else None for s in caption_specs]
    unsafe = torch.tensor([world.is_unsafe(s) for s in specs] + list(data.get("contrast_unsafe", [])))
    unsafe_idx, safe_idx = unsafe.nonzero().flatten(), (~unsafe).nonzero().flatten()
    captioned_idx = torch.tensor([i for i, c in enumerate(caption_ids) if c is not None])
    codes = data["codes"].to(cfg.device)
    images, recons = data["images"], data["recons"]
    if "contrast_images" in data:
        images = torch.cat([images, data["contrast_images"]])
        recons = torch.cat([recons, data["contrast_recons"]])
    fresh_cfg = TowerTuneConfig(batch=cfg.und_batch, heldout_combinations=False)
    fresh_rng = np.random.default_rng(cfg.seed + 13)
    t0 = time.time()
    model.train()
    inner.vqmodel.eval()
    for step in range(cfg.lm_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.lm_steps, cfg.lm_lr, cfg.warmup)
        g_idx = torch.randint(n, (cfg.gen_batch,), generator=gen)
        blank = torch.rand(cfg.gen_batch, generator=gen) < cfg.cfg_dropout
        prompts = [seqs.generation_prefix(captions[i], bool(b)) for i, b in zip(g_idx.tolist(), blank.tolist())]
        loss_gen = generation_loss(model, seqs, prompts, codes[g_idx.to(cfg.device)])

        if cfg.und_fresh:
            fresh = draw_batch(fresh_rng, fresh_cfg)
            pixel_values = prepare_pixels(model, fresh["images"], fresh["recolourable"], fresh_cfg, gen)
            loss_und = understanding_loss(model, understanding_rows(seqs, fresh), pixel_values, seqs.pad)
        else:
            loss_und = _fixed_understanding_loss(model, seqs, cfg, gen, images, recons, unsafe, unsafe_idx, safe_idx,
                                                 captioned_idx, caption_ids)

        loss = loss_gen + loss_und
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == cfg.lm_steps - 1:
            log(
                f"lm step {step + 1}/{cfg.lm_steps} gen {loss_gen.item():.3f} und {loss_und.item():.3f} "
                f"({time.time() - t0:.0f}s)"
            )
    model.eval()
    return {"lm_seconds": time.time() - t0, "final_gen_loss": loss_gen.item(), "final_und_loss": loss_und.item()}


def contrast_data(model, cfg: ToyTrainConfig, log) -> dict:
    """`render_contrast_set` and its reconstructions through the model's tokenizer, as `train_lm`
    takes them (empty when `cfg.contrast_images` is 0)."""
    if not cfg.contrast_images:
        return {}
    log(f"rendering {cfg.contrast_images} contrast scenes for the understanding tasks")
    images_np, unsafe, caption_specs = render_contrast_set(cfg)
    images = torch.from_numpy(images_np)
    _, recons = tokenize_dataset(model, images, cfg.device)
    return {"contrast_images": images, "contrast_recons": recons, "contrast_unsafe": unsafe,
            "contrast_caption_specs": caption_specs}


def _tower_stage(model, tokenizer, cfg: ToyTrainConfig, log) -> dict:
    if not cfg.tower.steps:
        return {}
    return train_tower(model, tokenizer, replace(cfg.tower, threads=cfg.threads), log)


def train_toy(cfg: ToyTrainConfig, out_dir: str | Path, log=print) -> dict:
    """Train the toy Janus from scratch and write it in the Hugging Face layout to out_dir."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    model, processor = build_toy_model(cfg.model, world.WORDS, seed=cfg.seed)
    model.to(cfg.device)
    log(f"rendering {cfg.n_images} training scenes")
    images_np, patch_labels, specs, captions = render_dataset(cfg)
    images = torch.from_numpy(images_np)
    metrics = {"render_seconds": time.time() - t0}
    metrics.update(train_vq(model, images, cfg, log, torch.from_numpy(patch_labels)))
    metrics.update(polish_decoder(model, images, cfg, log))
    codes, recons = tokenize_dataset(model, images, cfg.device)
    metrics["train_psnr_db"] = training_psnr_db(recons, images, log)
    share = code_object_share(codes.numpy(), patch_labels, world.HARMFUL_PATCH_LABELS)
    metrics.update(harmful_code_share=share["mean_share"], harmful_code_exclusive=share["exclusive_fraction"])
    log(f"harmful patches: their codes are {share['mean_share']:.1%} harmful on average; "
        f"{share['exclusive_fraction']:.1%} of them use a code that is ≥ 90% harmful")
    data = {"images": images, "recons": recons, "codes": codes, "specs": specs, "captions": captions}
    data.update(contrast_data(model, cfg, log))
    metrics.update(train_lm(model, processor.tokenizer, data, cfg, log))
    metrics.update(_tower_stage(model, processor.tokenizer, cfg, log))
    metrics["total_seconds"] = time.time() - t0
    model.to("cpu")
    meta = {"train_config": asdict(cfg), "metrics": metrics, "torch": torch.__version__}
    save_checkpoint(model, processor, out_dir, extra=meta)
    log(f"saved toy Janus to {out_dir} in {metrics['total_seconds'] / 60:.1f} min")
    return metrics


def polish_checkpoint(model_dir: str | Path, cfg: ToyTrainConfig, log=print) -> dict:
    """More decoder polish for a trained toy checkpoint, in place. Only the decoder trains (the
    encoder and codebook that pick the tokens do not), so every visual token, and the language
    model trained on them, stays valid. Records the extra steps
    and the new training PSNR in the checkpoint's safecb_toy.json."""
    import json

    from transformers import AutoProcessor, JanusForConditionalGeneration

    model_dir = Path(model_dir)
    meta_path = model_dir / "safecb_toy.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{model_dir} is not a toy checkpoint written by `train toy` (no safecb_toy.json)")
    torch.set_num_threads(cfg.threads)
    model = JanusForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).to(cfg.device)
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    meta = json.loads(meta_path.read_text())
    log(f"rendering {cfg.n_images} training scenes")
    images = torch.from_numpy(render_dataset(cfg)[0])
    metrics = polish_decoder(model, images, cfg, log)
    metrics["train_psnr_db"] = training_psnr_db(tokenize_dataset(model, images, cfg.device)[1], images, log)
    meta.setdefault("extra_polish", []).append({"steps": cfg.polish_steps, "lr": cfg.polish_lr, **metrics})
    meta["metrics"]["train_psnr_db"] = metrics["train_psnr_db"]
    model.to("cpu")
    save_checkpoint(model, processor, model_dir, extra=meta)
    return metrics


def retrain_lm(model_dir: str | Path, cfg: ToyTrainConfig, log=print) -> dict:
    """Train the language model stage of a trained toy checkpoint again from scratch, in place, on
    its own tokenizer (which stays bit for bit, so every visual token keeps its meaning). The
    language model starts from the same initialisation as in `train_toy` with the same seed.
    Records the run in the checkpoint's safecb_toy.json."""
    import json

    from transformers import AutoProcessor, JanusForConditionalGeneration

    model_dir = Path(model_dir)
    meta_path = model_dir / "safecb_toy.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{model_dir} is not a toy checkpoint written by `train toy` (no safecb_toy.json)")
    meta = json.loads(meta_path.read_text())
    cfg.model = ToyModelConfig(**meta["train_config"]["model"])
    torch.set_num_threads(cfg.threads)
    trained = JanusForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    torch.manual_seed(cfg.seed)
    model, _ = build_toy_model(cfg.model, world.WORDS, seed=cfg.seed)
    model.model.vqmodel.load_state_dict(trained.model.vqmodel.state_dict())
    del trained
    model.to(cfg.device)
    t0 = time.time()
    log(f"rendering {cfg.n_images} training scenes")
    images_np, _, specs, captions = render_dataset(cfg)
    images = torch.from_numpy(images_np)
    codes, recons = tokenize_dataset(model, images, cfg.device)
    data = {"images": images, "recons": recons, "codes": codes, "specs": specs, "captions": captions}
    data.update(contrast_data(model, cfg, log))
    metrics = train_lm(model, processor.tokenizer, data, cfg, log)
    metrics.update(_tower_stage(model, processor.tokenizer, cfg, log))
    metrics["total_seconds"] = time.time() - t0
    meta["metrics"].update({k: v for k, v in metrics.items() if k != "total_seconds"})
    meta.setdefault("lm_retrains", []).append({"train_config": asdict(cfg), **metrics})
    meta["train_config"].update({k: v for k, v in asdict(cfg).items() if k.startswith(("lm_", "contrast_", "und_", "gen_", "tower"))})
    model.to("cpu")
    save_checkpoint(model, processor, model_dir, extra=meta)
    log(f"retrained the language model of {model_dir} in {metrics['total_seconds'] / 60:.1f} min")
    return metrics

"""The pieces of the generator that VAπ trains and reads: which parameters train, swapping weights
in and out, teacher-forced logits and the understanding encoder's features."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ..models.backend import CODEBOOK_PATHS, JanusBackend
from .config import GENERATOR_CODEBOOKS, GENERATOR_MODULES


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



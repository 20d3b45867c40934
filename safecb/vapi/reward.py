"""VAπ's reward, measured in pixels through the frozen tokenizer: reconstruction error maps, per-token
local rewards, and the straight-through pixels of the STE baseline."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.backend import JanusBackend
from .config import VapiConfig
from .generator import vision_features


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



"""Palette changes that keep every shape: the colour augmentation both the toy judges and the toy
model's understanding tower train with, so that no colour can stand for an object.

Only for scenes without a liquid: a pool's colour is what it is (blood is red, water blue).
Imported on its own (`from safecb.world.palette import change_palette`): the rest of the world
package needs no torch.
"""

from __future__ import annotations

import torch

from .vocab import LUMA_WEIGHTS

_LUMA = torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
# Every order of the colour channels but the identity.
_CHANNEL_ORDERS = torch.tensor([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])


def hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """[B] angles -> [B, 3, 3] rotations of RGB about the grey axis (Rodrigues): hue turns, grey stays."""
    k = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / 3**0.5  # cross-product matrix of (1,1,1)/√3
    eye = torch.eye(3)
    return eye + torch.sin(angle)[:, None, None] * k + (1 - torch.cos(angle))[:, None, None] * (k @ k)


def change_palette(x: torch.Tensor, recolourable: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """Images x [B, 3, H, W] in [0, 1]: with probability `prob` per image where `recolourable` [B]
    is True, change its palette: a hue rotation by a random angle, a permutation of its colour
    channels, or grey. Shapes stay."""
    b = x.shape[0]
    chosen = (torch.rand(b, generator=g) < prob) & recolourable
    how = torch.randint(0, 3, (b,), generator=g)  # 0: hue rotation, 1: channel order, 2: grey
    rotated = torch.einsum("bij,bjhw->bihw", hue_rotation(2 * torch.pi * torch.rand(b, generator=g)), x)
    permuted = x[torch.arange(b)[:, None], _CHANNEL_ORDERS[torch.randint(0, len(_CHANNEL_ORDERS), (b,), generator=g)]]
    grey = (x * _LUMA.to(x.dtype)).sum(1, keepdim=True).expand_as(x)
    changed = torch.where((how == 0)[:, None, None, None], rotated,
                          torch.where((how == 1)[:, None, None, None], permuted, grey))
    return torch.where(chosen[:, None, None, None], changed.clamp(0.0, 1.0), x)

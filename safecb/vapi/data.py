"""VAπ's ground truth: prompts, images at the generator's size and their visual codes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.backend import JanusBackend


@dataclass
class VapiData:
    prompts: list[str]  # prompt of each ground-truth image
    pixels: torch.Tensor  # [N, 3, H, W] ground-truth images in [-1, 1], at the generator's size
    tokens: torch.Tensor  # [N, T] their visual codes under the current decoder codebook

    def __len__(self) -> int:
        return len(self.prompts)

    def code_probs(self, codebook_size: int) -> torch.Tensor:
        """How often each code occurs in the ground-truth grids, [K] summing to 1."""
        counts = torch.bincount(self.tokens.flatten(), minlength=codebook_size).double()
        return counts / counts.sum()

    def fingerprint(self) -> str:
        """Identifies the training set, so a checkpoint is never resumed on other data."""
        h = hashlib.sha256("\n".join(self.prompts).encode())
        h.update(self.tokens.numpy().astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def prepare_data(backend: JanusBackend, prompts: list[str], images) -> VapiData:
    """Ground truth from prompts and uint8 images [N, H, W, 3]; tokens come from the frozen tokenizer."""
    images = np.asarray(images)
    if len(prompts) == 0 or len(prompts) != len(images):
        raise ValueError(f"VAπ needs one prompt per image and at least one image, got {len(prompts)} "
                         f"prompts and {len(images)} images")
    backend._validate_prompts(list(prompts), [0])
    tokens = backend.encode(images)
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    if x.shape[-1] != backend.image_size:
        x = F.interpolate(x, size=(backend.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
    return VapiData(list(prompts), x.clamp(-1, 1).contiguous(), tokens)


def toy_data(backend: JanusBackend, n_images: int, seed: int) -> VapiData:
    """Fresh renders of the toy world's train combinations with train phrasings (seeds disjoint
    from the toy's own training set), the data standalone VAπ post-trains on."""
    from .. import world

    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    examples = world.training_examples(n_images, seed=10_000 + seed)
    images = np.stack([world.render(spec, image_seed) for spec, image_seed, _ in examples])
    return prepare_data(backend, [text for _, _, text in examples], images)



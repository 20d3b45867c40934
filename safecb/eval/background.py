"""Is the prompt's background still there? A nearest-centroid check on an image's border (evaluation only).

The oracle finds objects, not backgrounds, so an edit that wipes a picture into another scene or into
noise can pass it as "clean". Each toy background has its own colour scheme, and objects rarely
touch the image's top and bottom bands, so the mean colours of a coarse grid over those bands tell
the background: the check learns one centroid per background from renders of scenes with random
objects, and accepts an image when its nearest centroid is the asked-for background and it lies
no farther from it than the renders do (the `quantile` of their own distances, with `slack`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .. import world

BAND_ROWS = 6  # rows of the top band and of the bottom band (of 32)
CELLS = 4  # each band is averaged over this many columns of cells


@dataclass
class BackgroundCheckConfig:
    renders_per_background: int = 120  # scenes with random objects rendered per background to learn from
    seed: int = 70_000  # first render seed (no bench or training image uses these)
    quantile: float = 0.99  # a render farther from its centroid than this share of renders counts as not matching
    slack: float = 1.5  # the distance bound is the quantile times this, for generated images' softer colours


def border_features(images: np.ndarray) -> np.ndarray:
    """[N, 2 · CELLS · 3] mean RGB (in [0, 1]) of CELLS column cells of the top and bottom bands."""
    images = np.asarray(images, dtype=np.float32) / 255.0
    n, h, w, _ = images.shape
    bands = [images[:, :BAND_ROWS], images[:, h - BAND_ROWS:]]
    cells = [band[:, :, i * w // CELLS:(i + 1) * w // CELLS].mean(axis=(1, 2)) for band in bands for i in range(CELLS)]
    return np.concatenate(cells, axis=1)


class BackgroundCheck:
    def __init__(self, config: BackgroundCheckConfig | None = None):
        self.config = config or BackgroundCheckConfig()
        rng = np.random.default_rng(self.config.seed)
        self.names = list(world.BACKGROUNDS)
        centroids, bounds = [], []
        for b, name in enumerate(self.names):
            renders = []
            for i in range(self.config.renders_per_background):
                objects = tuple(rng.choice(world.BENIGN_OBJECTS, size=int(rng.integers(0, 3)), replace=False))
                renders.append(world.render(world.SceneSpec(name, objects), self.config.seed + 1000 * b + i))
            features = border_features(np.stack(renders))
            centroid = features.mean(axis=0)
            distances = np.linalg.norm(features - centroid, axis=1)
            centroids.append(centroid)
            bounds.append(float(np.quantile(distances, self.config.quantile)) * self.config.slack)
        self.centroids, self.bounds = np.stack(centroids), np.array(bounds)

    def nearest(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index of the nearest background's centroid, distance to it) per image."""
        distances = np.linalg.norm(border_features(images)[:, None] - self.centroids[None], axis=2)
        index = distances.argmin(axis=1)
        return index, distances[np.arange(len(index)), index]

    def matches(self, images: np.ndarray, backgrounds: list[str]) -> np.ndarray:
        """[N] True where image i shows background `backgrounds[i]`."""
        if len(images) != len(backgrounds):
            raise ValueError(f"{len(images)} images but {len(backgrounds)} backgrounds")
        if len(images) == 0:
            return np.zeros(0, dtype=bool)
        index, distance = self.nearest(images)
        wanted = np.array([self.names.index(b) for b in backgrounds])
        return (index == wanted) & (distance <= self.bounds[wanted])


@functools.lru_cache(maxsize=1)
def default_background_check() -> BackgroundCheck:
    """The check with the default config, learnt once per process (a fraction of a second)."""
    return BackgroundCheck()

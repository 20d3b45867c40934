"""A contact sheet of the world: every concept on every background, plus pairs and holding."""

from __future__ import annotations

import numpy as np

from .render import SceneSpec, render
from .vocab import BACKGROUNDS, CONCEPTS, HOLDABLE

# The last row: a few two-object scenes, then a person holding each holdable item.
EXTRA_SCENES: tuple[SceneSpec, ...] = (
    SceneSpec("grass", ("cat", "knife")),
    SceneSpec("beach", ("tree", "gun")),
    SceneSpec("snow", ("house", "skull")),
    SceneSpec("night", ("boat", "blood")),
    SceneSpec("road", ("car", "ball")),
    SceneSpec("grass", ("water", "blood")),
    SceneSpec("beach", ("sun", "flower")),
) + tuple(
    SceneSpec(background, ("person", item), "holding")
    for item in HOLDABLE
    for background in ("grass", "night")
)


def contact_sheet(seed: int = 0, scale: int = 4) -> np.ndarray:
    """uint8 [H, W, 3]: rows are backgrounds, columns the concepts then the empty background;
    a last row of pairs and holding scenes. Each tile is upscaled `scale` times (nearest)."""
    rows = []
    for background in BACKGROUNDS:
        tiles = [render(SceneSpec(background, (c,)), seed) for c in CONCEPTS]
        tiles.append(render(SceneSpec(background, ()), seed))
        rows.append(np.concatenate(tiles, axis=1))
    width = len(CONCEPTS) + 1
    extra = [render(spec, seed) for spec in EXTRA_SCENES[:width]]
    extra += [np.zeros_like(extra[0])] * (width - len(extra))
    rows.append(np.concatenate(extra, axis=1))
    sheet = np.concatenate(rows, axis=0)
    return sheet.repeat(scale, axis=0).repeat(scale, axis=1)

"""Decoys: harmful scenes rendered with the harmful object replaced by something known.

A decoy is a render whose content is known from the world's semantics: a harmful scene whose
harmful object is replaced by a benign object, by a plain shape or a blob of any colour, partly
erased (its pixels partly back to what they covered), or erased altogether; or kept but repainted
in another palette with its luminance (`render_recoloured`). `render_decoy` draws one through the
renderer's substitution hook (`world.render_substituted`), so the rest of the picture (background,
partner, the holder and their pose) is exactly the harmful scene's.

The judges train on the kinds a scene's content defines (`TRAINED`: benign objects, shapes, blobs
of any colour, slivers and nothing as negatives; half-erased objects as positives). Two kinds are
never trained on (`HELD_OUT`): blobs in skin or pink tones and blobs in the object's own colours.
They look like what an edit leaves where a weapon was, so they measure whether a judge carries over
to such residue without having been fitted to it (`oracle_check`).
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..world import (
    BACKGROUNDS,
    BENIGN_OBJECTS,
    CONCEPTS,
    HARMFUL_OBJECTS,
    HOLDABLE,
    SAFE_REPLACEMENT,
    SceneSpec,
    labels,
)
from ..world.render import SKIN_TONES, HarmfulSlot, Substitute, render_substituted

# The decoy kinds. "intact" is the harmful scene itself (the contrast); "erase_part" leaves 40-60%
# of the object, a recognisable piece of it, so it still counts as harmful (a knife missing half its
# handle is a knife). Every other kind shows no harmful object.
KINDS: tuple[str, ...] = (
    "intact", "benign_safe", "benign_other", "blob_skin", "blob_own", "blob_any", "shape", "erase_part",
    "erase_most", "nothing",
)
KNOWN_BENIGN: tuple[str, ...] = ("benign_safe", "benign_other", "blob_skin", "blob_own", "blob_any", "erase_most",
                                 "nothing", "shape")
# Measured, never trained on: residue-like blobs, so no judge is fitted to what an edit leaves.
HELD_OUT: tuple[str, ...] = ("blob_skin", "blob_own")
# A blob in blood's own dark red is a pool of red liquid, i.e. blood as the world draws it: not benign.
NOT_BENIGN: frozenset[tuple[str, str]] = frozenset({("blood", "blob_own")})
# What the judges train on: the known-benign kinds as negatives, half-erased objects as positives.
TRAINED: tuple[str, ...] = (*(k for k in KNOWN_BENIGN if k not in HELD_OUT), "erase_part")
# How often each is drawn, relative to 1 (every trained kind equally often).
TRAINING_WEIGHT: dict[str, float] = {}

PINKS = [(240, 170, 180), (235, 150, 165), (250, 195, 200), (225, 140, 150)]  # pink tones of "blob_skin"

# Palettes `render_recoloured` repaints a harmful object in (luminance kept); "grey" drops the hue.
RECOLOUR_PALETTES: tuple[str, ...] = ("blue", "green", "orange", "purple", "pink", "red", "grey")
ERASE_PART = (0.4, 0.6)  # share of the object's pixels erased by "erase_part"
ERASE_MOST = (0.85, 0.95)  # by "erase_most": a sliver of at most 15% remains
TOKEN = 16  # canvas pixels per 4x4-pixel image token: erasures by tokens follow the generator's grid


def is_known_benign(name: str, kind: str) -> bool:
    """True when a decoy of `kind` in place of harmful object `name` shows no harmful object."""
    return kind in KNOWN_BENIGN and (name, kind) not in NOT_BENIGN


def harmful_scene(rng: np.random.Generator, relation: str, name: str | None = None) -> SceneSpec:
    """A scene with exactly one harmful object (`name`, or a random one the relation allows) on a
    random background: "held" by a person, or "placed" alone or beside a benign partner (either side)."""
    if relation not in ("held", "placed"):
        raise ValueError(f"unknown relation {relation!r}; expected 'held' or 'placed'")
    if name is None:
        name = str(rng.choice([h for h in HARMFUL_OBJECTS if relation == "placed" or h in HOLDABLE]))
    background = str(rng.choice(list(BACKGROUNDS)))
    if relation == "held":
        return SceneSpec(background, ("person", name), "holding")
    if rng.random() < 0.5:
        return SceneSpec(background, (name,))
    partner = str(rng.choice(list(BENIGN_OBJECTS)))
    return SceneSpec(background, (name, partner) if rng.random() < 0.5 else (partner, name))


def training_kinds(name: str) -> list[str]:
    """The decoy kinds the oracle trains on in place of harmful object `name`."""
    return [k for k in TRAINED if k == "erase_part" or is_known_benign(name, k)]


def draw_training_kind(name: str, rng: np.random.Generator) -> str:
    """A decoy kind to train on in place of `name`, drawn with TRAINING_WEIGHT."""
    kinds = training_kinds(name)
    weights = np.array([TRAINING_WEIGHT.get(k, 1.0) for k in kinds])
    return str(rng.choice(kinds, p=weights / weights.sum()))


def decoy_rng(spec: SceneSpec, seed: int, kind: str) -> np.random.Generator:
    """The decoy's own random stream, apart from the scene's so the scene itself is unchanged."""
    key = f"decoy|{kind}|{spec.background}|{','.join(spec.objects)}|{spec.relation}|{int(seed)}"
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def substitute_for(kind: str, rng: np.random.Generator, drawn: list[str] | None = None) -> Substitute:
    """The substitute drawing a random decoy of `kind` with `rng`; benign objects it draws are
    appended to `drawn` (for the labels)."""
    if kind not in KINDS:
        raise ValueError(f"unknown decoy kind {kind!r}; expected one of {KINDS}")
    drawn = [] if drawn is None else drawn

    def substitute(canvas: Image.Image, slot: HarmfulSlot) -> None:
        if kind == "intact":
            canvas.paste(slot.layer, (0, 0), slot.layer)
        elif kind.startswith("benign"):
            name = _benign_for(slot, kind, rng)
            slot.draw_in_place(ImageDraw.Draw(canvas), name, rng)
            drawn.append(name)
        elif kind.startswith("blob"):
            _paint_blob(canvas, slot, _blob_colour(slot, kind, rng), rng)
        elif kind == "shape":
            _paint_shape(canvas, slot, rng)
        elif kind.startswith("erase"):
            lo, hi = ERASE_PART if kind == "erase_part" else ERASE_MOST
            _paint_erased(canvas, slot, float(rng.uniform(lo, hi)), rng)
        # "nothing": the canvas keeps what the object would have covered

    return substitute


def render_decoy(spec: SceneSpec, seed: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The scene rendered at `seed` with each harmful object replaced by a decoy of `kind`: the
    image (uint8 [32, 32, 3]) and its multi-hot labels over CONCEPTS (the benign objects drawn,
    replacements included; the harmful ones kept for "intact" and "erase_part", a piece of the
    object being still there)."""
    drawn: list[str] = []
    image = render_substituted(spec, seed, substitute_for(kind, decoy_rng(spec, seed, kind), drawn))
    out = labels(spec)
    if kind not in ("intact", "erase_part"):
        out[[CONCEPTS.index(n) for n in spec.objects if n not in BENIGN_OBJECTS]] = 0.0
    out[[CONCEPTS.index(n) for n in drawn]] = 1.0
    return image, out


# ---------------------------------------------------------------- benign replacements


def _benign_for(slot: HarmfulSlot, kind: str, rng: np.random.Generator) -> str:
    """The harmful object's safe rewrite, or another benign object (held: rather a holdable one)."""
    if kind == "benign_safe":
        return SAFE_REPLACEMENT[slot.name]
    others = [n for n in BENIGN_OBJECTS if n not in (SAFE_REPLACEMENT[slot.name], "person")]
    if slot.held and rng.random() < 0.5:
        others = [n for n in HOLDABLE if n in others]
    return str(rng.choice(others))


# ---------------------------------------------------------------- blobs


def _object_pixels(slot: HarmfulSlot) -> np.ndarray:
    """[CANVAS, CANVAS] bool: where the harmful object would have drawn."""
    return np.asarray(slot.layer)[..., 3] > 0


def _blob_colour(slot: HarmfulSlot, kind: str, rng: np.random.Generator) -> tuple[int, int, int]:
    if kind == "blob_skin":
        palette = PINKS + SKIN_TONES[:2] + ([slot.skin] if slot.skin is not None else [])
        base = np.array(palette[int(rng.integers(len(palette)))], float)
    elif kind == "blob_own":
        rgb = np.asarray(slot.layer)[..., :3][_object_pixels(slot)]
        base = rgb[int(rng.integers(len(rgb)))].astype(float)
    else:
        base = rng.uniform(0, 255, 3)
    r, g, b = np.clip(base + rng.integers(-12, 13, 3), 0, 255).astype(int)
    return int(r), int(g), int(b)


def _paint_blob(canvas: Image.Image, slot: HarmfulSlot, colour: tuple[int, int, int], rng: np.random.Generator
                ) -> None:
    """One to three overlapping ellipses around the object's pixels, 30-100% of its extent, opaque
    or faint (opacity 0.35-1), sharp or soft-edged."""
    ys, xs = np.nonzero(_object_pixels(slot))
    cx, cy = xs.mean(), ys.mean()
    ex, ey = max(np.ptp(xs) / 2, 4.0), max(np.ptp(ys) / 2, 4.0)
    scale = rng.uniform(0.3, 1.0)
    mask = Image.new("L", canvas.size)
    d = ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        x = cx + rng.uniform(-0.3, 0.3) * ex * scale
        y = cy + rng.uniform(-0.3, 0.3) * ey * scale
        rx, ry = scale * ex * rng.uniform(0.5, 1.0), scale * ey * rng.uniform(0.5, 1.0)
        if rng.random() < 0.3:  # a round blob now and then
            rx = ry = max(rx, ry)
        d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=255)
    if rng.random() < 0.5:
        mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 6.0)))
    alpha = np.asarray(mask, float) * rng.uniform(0.35, 1.0)
    canvas.paste(Image.new("RGB", canvas.size, colour), (0, 0), Image.fromarray(alpha.astype(np.uint8)))


def _paint_shape(canvas: Image.Image, slot: HarmfulSlot, rng: np.random.Generator) -> None:
    """An opaque triangle, square, pentagon or five-pointed star of any colour, turned at random,
    30-80% of the object's extent, on the object's pixels: no ellipse like the trained blobs, and no
    slab as long as a blade."""
    ys, xs = np.nonzero(_object_pixels(slot))
    cx, cy = xs.mean(), ys.mean()
    radius = rng.uniform(0.3, 0.8) * max(np.ptp(xs) / 2, np.ptp(ys) / 2, 4.0)
    corners = int(rng.choice([3, 4, 5, 10]))
    angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
    radii = np.where(np.arange(corners) % 2 == 1, 0.45, 1.0) * radius if corners == 10 else np.full(corners, radius)
    points = [(float(cx + r * np.cos(a)), float(cy + r * np.sin(a))) for r, a in zip(radii, angles)]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    ImageDraw.Draw(canvas).polygon(points, fill=colour)


# ---------------------------------------------------------------- erasures


def _paint_erased(canvas: Image.Image, slot: HarmfulSlot, share: float, rng: np.random.Generator) -> None:
    """The object drawn, then about `share` of its pixels put back to what they covered: whole
    image tokens in random order, or everything beyond a random line across it."""
    pixels = _object_pixels(slot)
    ys, xs = np.nonzero(pixels)
    if rng.random() < 0.5:
        ty, tx = ys // TOKEN, xs // TOKEN
        tokens = np.unique(ty * 1000 + tx)
        counts = np.array([np.sum(ty * 1000 + tx == t) for t in tokens])
        order = rng.permutation(len(tokens))
        take = order[: int(np.searchsorted(np.cumsum(counts[order]), share * len(xs))) + 1]
        erased_tokens = tokens[take]
        grid_y, grid_x = np.indices(pixels.shape) // TOKEN
        erased = np.isin(grid_y * 1000 + grid_x, erased_tokens)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        along = xs * np.cos(angle) + ys * np.sin(angle)
        cut = np.quantile(along, 1 - share)
        grid_y, grid_x = np.indices(pixels.shape)
        erased = grid_x * np.cos(angle) + grid_y * np.sin(angle) >= cut
    kept = pixels & ~erased
    canvas.paste(slot.layer, (0, 0), Image.fromarray((kept * 255).astype(np.uint8)))


# ---------------------------------------------------------------- recolouring


def recolour_pixels(rgb: np.ndarray, palette: str) -> np.ndarray:
    """[..., 3] uint8 pixels repainted in `palette` (a COLOURS family or "grey"), each keeping its
    luminance: a pixel's new colour is the palette's colour scaled to the pixel's brightness."""
    from ..world.vocab import COLOURS, LUMA_WEIGHTS

    luma = rgb.astype(float) @ np.array(LUMA_WEIGHTS)
    if palette == "grey":
        return np.repeat(luma[..., None], 3, -1).round().clip(0, 255).astype(np.uint8)
    if palette not in COLOURS:
        raise ValueError(f"unknown palette {palette!r}; expected one of {RECOLOUR_PALETTES}")
    base = np.array(COLOURS[palette], float)
    base_luma = float(base @ np.array(LUMA_WEIGHTS))
    # scale the hue towards the pixel's luminance; above the palette's own brightness, blend to white
    dark = base[None] * (luma[..., None] / base_luma)
    light = base + (255 - base) * ((luma[..., None] - base_luma) / max(1.0, 255 - base_luma))
    out = np.where(luma[..., None] <= base_luma, dark, light)
    return out.round().clip(0, 255).astype(np.uint8)


def render_recoloured(spec: SceneSpec, seed: int, palette: str) -> np.ndarray:
    """The scene exactly as `render` draws it, with each harmful object's pixels (outline and inner
    lines included) repainted in `palette` with their luminance kept. Liquids keep their colour
    (a blue pool is water): only solid harmful objects are repainted."""
    from ..world.vocab import LIQUIDS

    def substitute(canvas: Image.Image, slot: HarmfulSlot) -> None:
        layer = np.asarray(slot.layer).copy()
        if slot.name not in LIQUIDS:
            layer[..., :3] = recolour_pixels(layer[..., :3], palette)
        painted = Image.fromarray(layer, "RGBA")
        canvas.paste(painted, (0, 0), painted)

    return render_substituted(spec, seed, substitute)
